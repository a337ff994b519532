"""Our patches to BVLC Caffe (tools/setup/caffe_patches) on Debian's source package: they apply
without fuzz, and the cuDNN patch leaves no call to the API that cuDNN 8 removed, makes Caffe's
CMake read cuDNN 9's version, and (where a cuDNN 9 is at hand: the MLIC_GPU=1 set-up's) lets
Caffe's cuDNN layers compile against it."""
import glob
import os
import re
import subprocess

import pytest

from mlic.paths import ROOT

BUILD_CAFFE = os.path.join(ROOT, 'tools', 'setup', 'build_caffe.sh')
PATCHES = sorted(glob.glob(os.path.join(ROOT, 'tools', 'setup', 'caffe_patches', '*.patch')))
# Removed in cuDNN 8 (with their CUDNN_CONVOLUTION_*_SPECIFY_WORKSPACE_LIMIT preferences).
REMOVED_IN_CUDNN_8 = ['cudnnGetConvolutionForwardAlgorithm', 'cudnnGetConvolutionBackwardFilterAlgorithm',
                      'cudnnGetConvolutionBackwardDataAlgorithm']


@pytest.fixture(scope='module')
def source(tmp_path_factory):
    """Debian's Caffe source with our patches, fetched through build_caffe.sh as the build does."""
    work = tmp_path_factory.mktemp('caffe-source')
    result = subprocess.run(['bash', BUILD_CAFFE, '--source', str(work / 'w')], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    assert result.returncode == 0, result.stdout
    with open(str(work / 'w.logs' / 'caffe-unpack.log')) as f:
        log = f.read()
    return str(work / 'w' / 'src'), log


def test_every_patch_applies_without_fuzz_or_offset(source):
    _, log = source
    for patch in PATCHES:
        assert 'applying %s' % os.path.basename(patch) in log
    assert not re.search(r'fuzz|offset|FAILED|rejects|Reversed', log), log


def calls_outside_pre_cudnn7_branches(path, names):
    """Lines calling NAMES that a cuDNN 7+ build compiles: those not in the #else branch of an
    `#if CUDNN_VERSION_MIN(7, 0, 0)` block."""
    found, stack = [], []
    with open(path) as f:
        for number, line in enumerate(f, 1):
            directive = line.strip()
            if directive.startswith('#if'):
                stack.append('v7' if 'CUDNN_VERSION_MIN(7, 0, 0)' in directive else 'other')
            elif directive.startswith('#else') and stack:
                stack[-1] = 'pre-v7' if stack[-1] == 'v7' else stack[-1]
            elif directive.startswith('#endif') and stack:
                stack.pop()
            elif 'pre-v7' not in stack and any(re.search(r'\b%s\s*\(' % n, line) for n in names):
                found.append('%s:%d: %s' % (path, number, line.strip()))
    return found


def test_no_cudnn_call_removed_in_cudnn_8_is_left(source):
    src, _ = source
    files = glob.glob(os.path.join(src, 'src', 'caffe', '**', '*.c*'), recursive=True)
    files += glob.glob(os.path.join(src, 'include', 'caffe', '**', '*.hpp'), recursive=True)
    assert any('cudnn_conv_layer' in f for f in files)
    left = [line for f in files for line in calls_outside_pre_cudnn7_branches(f, REMOVED_IN_CUDNN_8)]
    assert not left, '\n'.join(left)


def test_the_checker_sees_the_unpatched_calls(tmp_path):
    """calls_outside_pre_cudnn7_branches finds a removed call outside the guarded branch."""
    code = tmp_path / 'layer.cpp'
    code.write_text('#if CUDNN_VERSION_MIN(7, 0, 0)\nx = choose();\n#else\n'
                    'cudnnGetConvolutionForwardAlgorithm(h);\n#endif\n'
                    'cudnnGetConvolutionBackwardDataAlgorithm(h);\n')
    found = calls_outside_pre_cudnn7_branches(str(code), REMOVED_IN_CUDNN_8)
    assert len(found) == 1 and 'BackwardDataAlgorithm' in found[0]


def test_caffe_cmake_reads_the_version_of_cudnn_9(source, tmp_path):
    """Caffe's own detect_cuDNN(), run by CMake on a cuDNN laid out as version 9 lays it out
    (the numbers in cudnn_version.h, none in cudnn.h)."""
    src, _ = source
    cudnn = tmp_path / 'cudnn'
    (cudnn / 'include').mkdir(parents=True)
    (cudnn / 'lib').mkdir()
    (cudnn / 'include' / 'cudnn.h').write_text('#include "cudnn_version.h"\n')
    (cudnn / 'include' / 'cudnn_version.h').write_text(
        '#define CUDNN_MAJOR 9\n#define CUDNN_MINOR 28\n#define CUDNN_PATCHLEVEL 1\n')
    (cudnn / 'lib' / 'libcudnn.so').write_text('')
    with open(os.path.join(src, 'cmake', 'Cuda.cmake')) as f:
        text = f.read()
    function = re.search(r'^function\(detect_cuDNN\).*?^endfunction\(\)', text, re.M | re.S).group(0)
    script = tmp_path / 'detect.cmake'
    script.write_text('set(CUDA_CUDART_LIBRARY %s/lib/libcudart.so)\nset(CUDNN_ROOT %s/include)\n%s\n'
                      'detect_cuDNN()\nmessage(STATUS "version=${CUDNN_VERSION} found=${HAVE_CUDNN}")\n'
                      % (cudnn, cudnn, function.replace('set(CUDNN_ROOT "" CACHE PATH "CUDNN root folder")', '')))
    result = subprocess.run(['cmake', '-DCMAKE_FIND_LIBRARY_PREFIXES=lib', '-DCMAKE_FIND_LIBRARY_SUFFIXES=.so',
                             '-P', str(script)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert result.returncode == 0, result.stdout
    assert 'version=9.28.1 found=TRUE' in result.stdout, result.stdout


def cudnn9_include():
    """cuDNN 9 headers of a MLIC_GPU=1 set-up on this machine (tools/setup/setup.sh cuda), if any."""
    cache = os.environ.get('MLIC_CACHE_DIR') or os.path.join(
        os.environ.get('XDG_CACHE_HOME') or os.path.expanduser('~/.cache'), 'mlic-kd-wsd')
    for inc in sorted(glob.glob(os.path.join(cache, 'cuda-*', 'include'))):
        if os.path.isfile(os.path.join(inc, 'cudnn_version.h')) and os.path.isfile(os.path.join(inc, 'cuda_runtime.h')):
            return inc
    return None


def test_cudnn_layers_compile_against_cudnn_9_where_the_gpu_setup_has_it(source, tmp_path):
    include = cudnn9_include()
    if include is None:
        # Nothing to compile against (CI has no CUDA toolkit); the checks above still ran.
        return
    src, _ = source
    with open(os.path.join(include, 'cudnn_version.h')) as f:
        assert re.search(r'#define CUDNN_MAJOR 9\b', f.read())
    proto = tmp_path / 'proto'
    (proto / 'caffe' / 'proto').mkdir(parents=True)
    subprocess.run(['protoc', '--proto_path=%s/src' % src, '--cpp_out=%s' % proto,
                    '%s/src/caffe/proto/caffe.proto' % src], check=True)
    sources = sorted(glob.glob(os.path.join(src, 'src', 'caffe', 'layers', 'cudnn_*.cpp')))
    sources.append(os.path.join(src, 'src', 'caffe', 'util', 'cudnn.cpp'))
    for path in sources:
        # No -std: Caffe's CMake sets none, so g++'s default (C++17, which CUDA 13's Thrust needs).
        result = subprocess.run(['g++', '-fsyntax-only', '-DUSE_CUDNN',
                                 '-I', os.path.join(src, 'include'), '-I', str(proto),
                                 '-I', include, '-I', os.path.join(include, 'cccl'), path],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert result.returncode == 0, '%s:\n%s' % (path, result.stdout[-3000:])
