"""Shared fixtures: the repository paths, pycaffe with our layers, and the wrapped caffe tool."""
import importlib.util
import os
import subprocess

import pytest

from mlic.paths import CAFFE_TOOL, ROOT, TOOLS


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
