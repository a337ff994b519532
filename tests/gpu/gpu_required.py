"""The fixture of the GPU check's tests (tools/gpu_check.sh), which tests/conftest.py collects only
when tests/gpu is named on the command line: they fail, not skip, where there is no GPU."""
import pytest

from mlic import gpu_check


@pytest.fixture(scope='session', autouse=True)
def gpu(caffe):
    """The GPUs nvidia-smi lists, with a Caffe built for them; the test fails without."""
    try:
        gpus = gpu_check.query_gpus()
    except gpu_check.NoGpu as e:
        pytest.fail('tests/gpu needs an NVIDIA GPU: %s' % e, pytrace=False)
    try:
        caffe.set_mode_gpu()
        caffe.set_device(0)
    except Exception as e:  # a CPU-only Caffe cannot run a GPU mode
        pytest.fail('this Caffe cannot use the GPU (%s); build it with MLIC_GPU=1 '
                    'tools/setup/setup.sh' % e, pytrace=False)
    finally:
        caffe.set_mode_cpu()
    return gpus
