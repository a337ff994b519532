"""The plugin's .cu sources are compiled whenever nvcc is available, also against a CPU_ONLY Caffe.

Without a GPU (CI) the build compiles them, without CPU_ONLY, into an object library that is
never linked (CMake option MLIC_CUDA_COMPILE_CHECK); with a CUDA Caffe they go into the plugin.
"""
import glob
import os
import re
import shutil
import subprocess

from mlic.paths import ROOT

BUILD = os.path.join(ROOT, 'build', 'plugin')
CUDA_SOURCES = sorted(glob.glob(os.path.join(ROOT, 'caffe_layers', 'src', '*.cu')))


def cmake_cache():
    entries = {}
    with open(os.path.join(BUILD, 'CMakeCache.txt')) as f:
        for line in f:
            name, sep, value = line.rstrip('\n').partition('=')
            if sep and not line.startswith(('#', '//')):
                entries[name.split(':')[0]] = value
    return entries


def nvcc_available():
    # Where CMake looks for it too.
    return shutil.which('nvcc') is not None


def test_cuda_status_follows_nvcc():
    cache = cmake_cache()
    status = cache['MLIC_CUDA_STATUS']
    if status.startswith('kernels'):
        # A CUDA Caffe: setup.sh hands CMake the nvcc of the toolkit Caffe was built with (the
        # wheels' toolkit is not on PATH).
        assert os.access(cache['CMAKE_CUDA_COMPILER'], os.X_OK), cache['CMAKE_CUDA_COMPILER']
    elif nvcc_available():
        assert status.startswith(('compile-check', 'kernels')), status
    else:
        assert status.startswith('off: no nvcc'), status


def test_every_cu_source_was_compiled_as_gpu_code():
    status = cmake_cache()['MLIC_CUDA_STATUS']
    if status.startswith('off'):
        assert not nvcc_available(), status
        return
    assert CUDA_SOURCES
    target = 'mlic_layers' if status.startswith('kernels') else 'mlic_layers_cuda_check'
    for source in CUDA_SOURCES:
        name = os.path.basename(source)
        obj = os.path.join(BUILD, 'CMakeFiles', target + '.dir', 'caffe_layers', 'src', name + '.o')
        assert os.path.isfile(obj), '%s was not compiled (no %s)' % (name, obj)
        assert os.path.getmtime(obj) >= os.path.getmtime(source), '%s is older than %s' % (obj, name)
        # A .cu compiled with CPU_ONLY would define no *_gpu methods.
        symbols = subprocess.run(['nm', '-C', '--defined-only', obj], stdout=subprocess.PIPE,
                                 text=True, check=True).stdout
        assert '_gpu(' in symbols, '%s defines no Forward_gpu/Backward_gpu' % obj


def shared_libraries(path):
    """ldd's answer for PATH: {soname: resolved path or 'not found'}."""
    out = subprocess.run(['ldd', path], stdout=subprocess.PIPE, text=True, check=True).stdout
    libs = {}
    for line in out.splitlines():
        name, arrow, where = line.strip().partition(' => ')
        if arrow:
            libs[name] = where.split(' (')[0]
    return libs


def test_plugin_links_the_cuda_libraries_only_in_a_cuda_build():
    """With a CUDA Caffe the plugin and libcaffe find the CUDA runtime and cuBLAS (and Caffe its
    cuDNN and NCCL when built with them) through their RPATHs, no LD_LIBRARY_PATH needed; a
    CPU build links none of them."""
    plugin = os.path.join(BUILD, 'lib', 'libmlic_layers.so')
    libs = shared_libraries(plugin)
    cuda = [n for n in libs if n.startswith(('libcudart', 'libcublas', 'libcurand'))]
    if not cmake_cache()['MLIC_CUDA_STATUS'].startswith('kernels'):
        assert not cuda, cuda
        return
    assert {n.split('.so')[0] for n in cuda} >= {'libcudart', 'libcublas', 'libcurand'}, libs
    caffe = [p for n, p in libs.items() if n.startswith('libcaffe')]
    assert caffe, libs
    needed = dict(libs, **shared_libraries(caffe[0]))
    missing = {n: p for n, p in needed.items() if p == 'not found'}
    assert not missing, missing
    with open(os.path.join(BUILD, 'CMakeCache.txt')) as f:
        caffe_dir = re.search(r'^Caffe_DIR:\w+=(.*)$', f.read(), re.M).group(1)
    with open(os.path.join(caffe_dir, 'CaffeConfig.cmake')) as f:
        config = f.read()
    if re.search(r'set\(Caffe_HAVE_CUDNN TRUE\)', config):
        assert any(n.startswith('libcudnn') for n in needed), needed
