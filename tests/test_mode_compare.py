"""The machinery of the GPU check's CPU-versus-GPU comparison (mlic.mode_compare), run CPU
against CPU: every small net and every layer of ours, forward and backward, must agree exactly,
and a changed value must be found."""
import pytest

from conftest import toy_config
from mlic import mode_compare, netgen

from test_trainer import write_toy_lists


@pytest.fixture(scope='module')
def small_nets(tmp_path_factory):
    root = tmp_path_factory.mktemp('modes')
    cfg = toy_config()
    lists = write_toy_lists(root, cfg)
    return root, netgen.write_nets(str(root / 'nets'), cfg, datalists=lists)


NETS = ['wsddn_train', 'stage1_train', 'stage2_train', 'student_train']


@pytest.mark.parametrize('key', NETS)
def test_a_net_run_twice_on_the_cpu_agrees_exactly(caffe, small_nets, key):
    root, paths = small_nets
    weights = mode_compare.net_weights(caffe, paths[key], str(root))
    first = mode_compare.run_net(caffe, paths[key], weights, 'CPU')
    second = mode_compare.run_net(caffe, paths[key], weights, 'CPU')
    assert any(k.startswith('param diff') and v.any() for k, v in first.items())
    assert mode_compare.differences(first, second, rtol=0, atol_scale=0) == []


def test_every_layer_of_ours_is_covered_and_agrees_with_itself(caffe, small_nets):
    root, paths = small_nets
    seen = set()
    for key in NETS:
        weights = mode_compare.net_weights(caffe, paths[key], str(root))
        for spec, bottoms, kind in mode_compare.plugin_layer_cases(caffe, paths[key], weights):
            seen.add(kind)
            first = mode_compare.run_layer(caffe, spec, bottoms, kind, 'CPU')
            second = mode_compare.run_layer(caffe, spec, bottoms, kind, 'CPU')
            assert mode_compare.differences(first, second, rtol=0, atol_scale=0) == [], kind
            for k in mode_compare.PLUGIN_LAYERS[kind]:  # the gradient reached the bottom
                assert first['bottom diff %d' % k].any(), (kind, k)
    assert seen == set(mode_compare.PLUGIN_LAYERS)


def test_differences_name_what_differs():
    import numpy as np
    a = {'data x': np.ones((2, 3), np.float32), 'diff x': np.zeros(4, np.float32)}
    b = {'data x': a['data x'] * (1 + 1e-6), 'diff x': np.array([0, 0, 0.5, 0], np.float32)}
    found = mode_compare.differences(a, b)
    assert [d.what for d in found] == ['diff x'] and found[0].largest == 0.5
