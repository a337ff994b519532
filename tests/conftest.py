"""Shared fixtures: the repository paths, pycaffe with our layers, and the wrapped caffe tool."""
import importlib.util
import os
import re
import subprocess

import pytest

from mlic.paths import CAFFE_TOOL, ROOT, TOOLS


# The toy nets of the unit tests (what the small preset was before it became the demo's nets):
# three one-conv blocks of 8-32 channels, a 64 px teacher and a 32 px student, no BatchNorm,
# narrow gaussian fillers, batches of 4. Quick to build and run, with every layer kind; trained
# from scratch they do not learn to classify (tests of learning use netgen.small_config()).
TOY_NETS = dict(num_classes=5, num_proposals=8, image_size=64, student_size=32,
                block_channels=[8, 16, 32], block_convs=[1, 1, 1], fc_size=64, pooled_size=4,
                batch_norm=False, input_scale=1.0, conv_filler={'type': 'gaussian', 'std': 0.01},
                head_filler={'type': 'gaussian', 'std': 0.01}, head_params=[[10, 10], [20, 0]])


# The same toy nets as a pipeline config's [nets] tables (the small preset made tiny, every
# solver 4 iterations), and the toy datalists such a run reads: 64 px, 8 proposals.
TOY_PIPELINE_SIZE, TOY_PIPELINE_BBOX_NUM = 64, 8
TOY_PIPELINE_NETS = '''
[nets]
preset = "small"
student_size = 32
block_channels = [8, 16, 32]
block_convs = [1, 1, 1]
fc_size = 16
pooled_size = 4

[nets.batch_size]
wsddn = [4, 4]
stage1 = [4, 4]
stage2 = [4, 4]
student = [4, 4]
''' + ''.join('''
[nets.solver.%s]
max_iter = 4
stepsize = 4
snapshot = 4
''' % net for net in ('wsddn', 'stage1', 'stage2', 'student'))


# What stock Caffe built with CUDA prints when it starts on a machine without a GPU (the GPU
# image run on a CPU host): glog's pre-init notice and the cuBLAS/cuRAND handles it could not
# make. Tests that check a tool's whole stderr leave exactly these lines out.
CUDA_WITHOUT_GPU_NOISE = re.compile(
    r'^(WARNING: Logging before InitGoogleLogging\(\) is written to STDERR|'
    r'E\d{8} [\d:.]+ +\d+ common\.cpp:\d+\] Cannot create (Cublas handle|Curand generator)\..*)\n',
    re.M)


def without_cuda_startup_noise(stderr):
    return CUDA_WITHOUT_GPU_NOISE.sub('', stderr)


def toy_pipeline_lists(root, num_classes, num_train, num_test, seed):
    """Complete toy datalists made by the project's own tools, as a user would make them:
    {'train', 'test', 'test_boxes', 'classes'} paths under `root` (a pathlib.Path)."""
    from mlic import proposals, synthetic
    size, bbox_num = TOY_PIPELINE_SIZE, TOY_PIPELINE_BBOX_NUM
    paths = synthetic.generate(str(root / 'raw'), num_classes=num_classes, image_size=size,
                               num_train=num_train, num_test=num_test, seed=seed)
    method = proposals.proposal_settings('edgeboxes', max_boxes=bbox_num)
    lists = {}
    for split in ('train', 'test'):
        lists[split] = str(root / (split + '.txt'))
        proposals.complete_datalist(paths[split + '_datalist'], lists[split], method,
                                    str(root / 'cache'), new_width=size, new_height=size,
                                    bbox_num=bbox_num, progress=False)
    lists['test_boxes'] = paths['test_boxes']
    lists['classes'] = lists['train'] + '.classes'
    return lists


def toy_config(**overrides):
    """netgen.small_config() with TOY_NETS (batches of 4, base_lr 0.01, clipping at 1) and
    `overrides`."""
    from mlic import netgen
    settings = dict(TOY_NETS, batch_size={net: (4, 4) for net in netgen.NETS},
                    solver={net: dict(netgen.SMALL['solver'][net], base_lr=0.01,
                                      clip_gradients=1.0) for net in netgen.NETS})
    settings.update(overrides)
    return netgen.small_config(**settings)


@pytest.fixture(scope='session')
def caffe():
    import caffe as caffe_module
    import caffe_layers  # noqa: F401  (registers the plugin's layer types)
    caffe_module.set_mode_cpu()
    return caffe_module


def pytest_ignore_collect(collection_path, config):
    """tests/gpu needs a GPU: it is collected only when named on the command line (as
    tools/gpu_check.sh does), never by a plain `pytest tests`."""
    gpu_tests = os.path.join(ROOT, 'tests', 'gpu')
    if str(collection_path) != gpu_tests:
        return None
    named = [os.path.abspath(str(arg).split('::')[0]) for arg in config.args]
    return None if any(arg.startswith(gpu_tests) for arg in named) else True


def train_with_caffe_tool(root, solver, weights=None, iterations=1):
    """`tools/caffe train -solver solver [-weights weights]` in `root`; asserts it ran at least
    `iterations` iterations with finite losses and returns the loss of every iteration."""
    import math
    from mlic.caffe_train import ITERATION_LOSS
    args = ['train', '-solver', solver] + (['-weights', weights] if weights else [])
    done = run_caffe_tool(args, cwd=str(root))
    assert done.returncode == 0, done.stdout[-3000:]
    losses = [float(m.group(2)) for m in ITERATION_LOSS.finditer(done.stdout)]
    assert len(losses) >= iterations, done.stdout[-3000:]
    assert all(math.isfinite(loss) for loss in losses), losses
    return losses


def run_caffe_tool(args, cwd, timeout=600):
    """Runs tools/caffe; returns the CompletedProcess with stdout and stderr joined."""
    return subprocess.run([CAFFE_TOOL] + list(args), cwd=cwd, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=timeout)


def load_tool(name):
    """The command-line tool tools/<name>.py as a module, to call its main() in this process
    (loaded from its file: tools/ is a folder of scripts, not a package on the path)."""
    spec = importlib.util.spec_from_file_location(name, os.path.join(TOOLS, name + '.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
