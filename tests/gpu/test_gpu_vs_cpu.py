"""Every layer of ours and every small net, forward and backward, on the GPU and on the CPU with
the same inputs and weights: the results agree to float32 rounding."""
import numpy as np
import pytest

from mlic import mode_compare, netgen

from conftest import toy_config
from gpu_required import gpu  # noqa: F401  (autouse: fails without a GPU)
from test_trainer import write_toy_lists

NETS = ['wsddn_train', 'stage1_train', 'stage2_train', 'student_train']


@pytest.fixture(scope='module')
def small_nets(tmp_path_factory):
    root = tmp_path_factory.mktemp('gpu_vs_cpu')
    cfg = toy_config()
    lists = write_toy_lists(root, cfg)
    paths = netgen.write_nets(str(root / 'nets'), cfg, datalists=lists)
    return root, paths


@pytest.mark.parametrize('key', NETS)
def test_small_net_forward_and_backward_agree(caffe, small_nets, key):
    root, paths = small_nets
    weights = mode_compare.net_weights(caffe, paths[key], str(root))
    cpu = mode_compare.run_net(caffe, paths[key], weights, 'CPU')
    gpu = mode_compare.run_net(caffe, paths[key], weights, 'GPU')
    caffe.set_mode_cpu()
    # The toy nets (no BatchNorm on unset statistics) give every parameter a gradient to compare.
    assert any(np.any(value) for name, value in cpu.items() if name.startswith('param diff'))
    assert mode_compare.differences(cpu, gpu) == []


@pytest.mark.parametrize('kind', sorted(mode_compare.PLUGIN_LAYERS))
def test_layer_forward_and_backward_agree(caffe, small_nets, kind):
    root, paths = small_nets
    cases = 0
    for key in NETS:
        weights = mode_compare.net_weights(caffe, paths[key], str(root))
        for spec, bottoms, found in mode_compare.plugin_layer_cases(caffe, paths[key], weights):
            if found != kind:
                continue
            cases += 1
            cpu = mode_compare.run_layer(caffe, spec, bottoms, kind, 'CPU')
            gpu = mode_compare.run_layer(caffe, spec, bottoms, kind, 'GPU')
            caffe.set_mode_cpu()
            assert mode_compare.differences(cpu, gpu) == [], (key, spec.name)
    assert cases > 0
