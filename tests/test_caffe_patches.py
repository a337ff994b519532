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
    # The source and patches are the same for every build; without MLIC_GPU the script looks for
    # no CUDA toolkit (the GPU image sets MLIC_GPU=1 and its toolkit lives in the cache).
    env = {k: v for k, v in os.environ.items() if k != 'MLIC_GPU'}
    result = subprocess.run(['bash', BUILD_CAFFE, '--source', str(work / 'w')], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env)
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


def setup_cache():
    return os.environ.get('MLIC_CACHE_DIR') or os.path.join(
        os.environ.get('XDG_CACHE_HOME') or os.path.expanduser('~/.cache'), 'mlic-kd-wsd')


def cudnn9_include():
    """cuDNN 9 headers of a MLIC_GPU=1 set-up on this machine (tools/setup/setup.sh cuda), if any."""
    for inc in sorted(glob.glob(os.path.join(setup_cache(), 'cuda-*', 'include'))):
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
    # The layer factory, which picks cuDNN's layers by the mode (caffe_patches/0005).
    sources.append(os.path.join(src, 'src', 'caffe', 'layer_factory.cpp'))
    for path in sources:
        # No -std: Caffe's CMake sets none, so g++'s default (C++17, which CUDA 13's Thrust needs).
        result = subprocess.run(['g++', '-fsyntax-only', '-DUSE_CUDNN',
                                 '-I', os.path.join(src, 'include'), '-I', str(proto),
                                 '-I', include, '-I', os.path.join(include, 'cccl'), path],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert result.returncode == 0, '%s:\n%s' % (path, result.stdout[-3000:])


def cuda_caffe_build():
    """A complete MLIC_GPU=1 build of Caffe with cuDNN in the set-up's cache, if any."""
    for prefix in sorted(glob.glob(os.path.join(setup_cache(), 'caffe-cuda-*'))):
        if os.path.isfile(os.path.join(prefix, '.complete')) and \
                os.path.isfile(os.path.join(prefix, 'include', 'caffe', 'layers', 'cudnn_softmax_layer.hpp')):
            return prefix
    return None


def test_default_engine_is_cudnn_only_in_gpu_mode(source, tmp_path):
    """The patched layer_factory.cpp, compiled into tests/cudnn_engine_choice.cpp in place of the
    factory of a cached CUDA + cuDNN Caffe (no rebuild of Caffe): engine DEFAULT gives Caffe's own
    layers in CPU mode and cuDNN's in GPU mode, an explicit engine is kept, Caffe's own fallbacks
    (dilated convolution, MAX pooling) stay, and a net of these layers runs forward in CPU mode on
    this machine, which needs no GPU for it. Without the patch the CPU-mode lines name cuDNN's
    classes and the forward pass aborts."""
    include, prefix = cudnn9_include(), cuda_caffe_build()
    if include is None or prefix is None:
        # No CUDA build of Caffe here (CI, CPU machines); the factory's compile check above
        # covers what can be checked without one.
        return
    src, _ = source
    toolkit = os.path.dirname(include)
    program = tmp_path / 'engine_choice'
    factory = os.path.join(src, 'src', 'caffe', 'layer_factory.cpp')
    subprocess.run(['g++', '-DUSE_CUDNN', '-DLAYER_FACTORY_CPP="%s"' % factory,
                    '-I', os.path.join(prefix, 'include'), '-I', include, '-I', os.path.join(include, 'cccl'),
                    os.path.join(ROOT, 'tests', 'cudnn_engine_choice.cpp'), '-o', str(program),
                    '-L', os.path.join(prefix, 'lib'), '-L', os.path.join(toolkit, 'lib64'),
                    '-lcaffe', '-lcudart', '-lglog', '-lgflags', '-lprotobuf', '-lboost_system',
                    '-Wl,-rpath,%s:%s' % (os.path.join(prefix, 'lib'), os.path.join(toolkit, 'lib64'))],
                   check=True)
    result = subprocess.run([str(program)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    chosen = {}
    for line in result.stdout.splitlines():
        fields = line.split()
        if fields[0] in ('cpu', 'gpu'):
            chosen[fields[0], fields[1]] = fields[2]
    own = {'conv': 'ConvolutionLayer', 'deconv': 'DeconvolutionLayer', 'pool_ave': 'PoolingLayer',
           'lrn': 'LRNLayer', 'lrn_within': 'LRNLayer', 'relu': 'ReLULayer', 'sigmoid': 'SigmoidLayer',
           'tanh': 'TanHLayer', 'softmax': 'SoftmaxLayer'}
    cudnn = {'conv': 'CuDNNConvolutionLayer', 'deconv': 'CuDNNDeconvolutionLayer',
             'pool_ave': 'CuDNNPoolingLayer', 'lrn': 'CuDNNLRNLayer', 'lrn_within': 'CuDNNLCNLayer',
             'relu': 'CuDNNReLULayer', 'sigmoid': 'CuDNNSigmoidLayer', 'tanh': 'CuDNNTanHLayer',
             'softmax': 'CuDNNSoftmaxLayer'}
    for case in own:
        assert chosen['cpu', case] == 'caffe::%s<float>' % own[case], case
        assert chosen['gpu', case] == 'caffe::%s<float>' % cudnn[case], case
    for mode in ('cpu', 'gpu'):
        assert chosen[mode, 'conv_cudnn'] == 'caffe::CuDNNConvolutionLayer<float>'
        assert chosen[mode, 'relu_cudnn'] == 'caffe::CuDNNReLULayer<float>'
        assert chosen[mode, 'softmax_cudnn'] == 'caffe::CuDNNSoftmaxLayer<float>'
        assert chosen[mode, 'conv_caffe'] == 'caffe::ConvolutionLayer<float>'
        assert chosen[mode, 'conv_dilated'] == 'caffe::ConvolutionLayer<float>'
        assert chosen[mode, 'pool_max'] == 'caffe::PoolingLayer<float>'
    # The Softmax at the end of the CPU-mode net: channels sum to 1 at every position, within
    # float32 rounding of 4 terms.
    worst = float(result.stdout.split('forward ')[1].split()[0])
    assert worst < 1e-6
