"""tools/train.py on the GPU: on one GPU the losses of `caffe train -gpu 0` for the same solver
and seed; on two GPUs the weights of one process that accumulates the same images
(iter_size 2), since NCCL averages the two ranks' gradients."""
import re

import numpy as np
import pytest

from mlic import netgen, trainer

from conftest import toy_config
from gpu_required import gpu  # noqa: F401  (autouse: fails without a GPU)
from test_trainer import ITERATIONS, assert_same_losses, caffe_tool_losses, log_losses, \
    write_toy_lists


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp('gpu_trainer')
    cfg = toy_config()
    lists = write_toy_lists(root, cfg)
    return root, lists


def solver(data, folder, **changes):
    root, lists = data
    cfg = toy_config()
    for settings in cfg['solver'].values():
        settings.update(max_iter=ITERATIONS, snapshot=ITERATIONS, test_interval=ITERATIONS,
                        test_iter=1, display=1, average_loss=1, **changes.get('solver', {}))
    paths = netgen.write_nets(str(root / folder), cfg, datalists=lists,
                              snapshot_dir=str(root / folder / 'snapshots'))
    return paths['wsddn_solver'], str(root / folder / 'snapshots' / 'small_wsddn')


def test_one_gpu_gives_caffe_train_gpu_losses(data, tmp_path):
    path, _ = solver(data, 'tool')
    theirs = caffe_tool_losses(path, str(tmp_path), '-gpu', '0')
    path, _ = solver(data, 'ours')
    log = tmp_path / 'one.log'
    trainer.train(path, gpus=(0,), log=str(log), progress=False, cwd=str(tmp_path))
    # cuDNN's and Caffe's GPU kernels sum in a fixed order per run, but not always the same
    # order: rounding differences compound over the iterations.
    ours = log_losses(str(log))
    assert sorted(ours) == sorted(theirs)
    for iteration in theirs:
        assert ours[iteration] == pytest.approx(theirs[iteration], rel=1e-3), iteration


def weights_of(caffe, net_path, caffemodel):
    caffe.set_mode_cpu()
    net = caffe.Net(net_path, caffemodel, caffe.TEST)
    try:
        return {name: [p.data.copy() for p in params] for name, params in net.params.items()}
    finally:
        for layer in net.layers:
            if hasattr(layer, 'close'):
                layer.close()


def fixed_images(solver_path):
    """The solver's train net without shuffling, mirroring, scales or dropout: every run sees
    the same images in the same order, and nothing random differs between ranks."""
    from caffe.proto import caffe_pb2
    from google.protobuf import text_format
    net_path = solver_path.replace('solver.prototxt', 'train.prototxt')
    net = caffe_pb2.NetParameter()
    with open(net_path) as f:
        text_format.Merge(f.read(), net)
    layers = [layer for layer in net.layer if layer.type != 'Dropout']
    del net.layer[:]
    for layer in layers:
        if layer.type == 'Python' and 'shuffle' in layer.python_param.param_str:
            text = layer.python_param.param_str
            for field in ('shuffle', 'mirror'):
                text = text.replace(field + ': true', field + ': false')
            layer.python_param.param_str = re.sub(r'scale_factors: \S+ ?', '', text)
        net.layer.add().CopyFrom(layer)
    with open(net_path, 'w') as f:
        f.write(str(net))
    return net_path


def test_two_gpus_train_what_one_process_with_iter_size_2_trains(data, tmp_path, caffe, gpu):
    if len(gpu) < 2:
        pytest.fail('this machine has %d GPU; the two-GPU training needs 2' % len(gpu),
                    pytrace=False)
    # 8 images, batch 4: each iteration of either run takes all 8 (one process: two batches
    # in a row; two ranks: every other image each).
    one, one_prefix = solver(data, 'one', solver={'iter_size': 2})
    two, two_prefix = solver(data, 'two')
    net = fixed_images(one)
    fixed_images(two)
    trainer.train(one, gpus=(0,), log=str(tmp_path / 'one.log'), progress=False,
                  cwd=str(tmp_path))
    trainer.train(two, gpus=(0, 1), log=str(tmp_path / 'two.log'), progress=False,
                  cwd=str(tmp_path))
    a = weights_of(caffe, net, one_prefix + '_iter_%d.caffemodel' % ITERATIONS)
    b = weights_of(caffe, net, two_prefix + '_iter_%d.caffemodel' % ITERATIONS)
    for name in a:
        for x, y in zip(a[name], b[name]):
            np.testing.assert_allclose(y, x, rtol=1e-3, atol=1e-4 * np.abs(x).max(),
                                       err_msg=name)
