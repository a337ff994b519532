"""The plugin's .cu sources are compiled whenever nvcc is available, also against a CPU_ONLY Caffe.

Without a GPU (CI) the build compiles them, without CPU_ONLY, into an object library that is
never linked (CMake option MLIC_CUDA_COMPILE_CHECK); with a CUDA Caffe they go into the plugin.
"""
import glob
import os
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
    status = cmake_cache()['MLIC_CUDA_STATUS']
    if nvcc_available():
        assert status.startswith(('compile-check', 'kernels')), status
    else:
        assert status.startswith('off: no nvcc'), status


def test_every_cu_source_was_compiled_as_gpu_code():
    if not nvcc_available():
        assert cmake_cache()['MLIC_CUDA_STATUS'].startswith('off')
        return
    assert CUDA_SOURCES
    status = cmake_cache()['MLIC_CUDA_STATUS']
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
