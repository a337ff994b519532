"""MLIC_GPU=1 turns the Caffe build into a CUDA build with cuDNN and NCCL, checked against a
stand-in CUDA toolkit (no GPU or full toolkit is needed to see which flags Caffe's CMake would
get), and setup.sh fetches the CUDA wheels only then."""
import os
import re
import stat
import subprocess

from mlic.paths import ROOT

BUILD_CAFFE = os.path.join(ROOT, 'tools', 'setup', 'build_caffe.sh')
SETUP = os.path.join(ROOT, 'tools', 'setup', 'setup.sh')


def fake_toolkit(tmp_path, archs, release='12.4', cudnn_major=9, nccl=True):
    """A CUDA toolkit root as build_caffe.sh reads it: nvcc answering --list-gpu-arch and
    --version, cuda_runtime.h, and (unless None/False) cuDNN and NCCL headers and libraries."""
    root = tmp_path / 'cuda'
    (root / 'bin').mkdir(parents=True, exist_ok=True)
    (root / 'include').mkdir(exist_ok=True)
    (root / 'lib').mkdir(exist_ok=True)
    (root / 'include' / 'cuda_runtime.h').write_text('')
    if cudnn_major is not None:
        (root / 'include' / 'cudnn_version.h').write_text(
            '#define CUDNN_MAJOR %d\n#define CUDNN_MINOR 2\n#define CUDNN_PATCHLEVEL 1\n' % cudnn_major)
        (root / 'include' / 'cudnn.h').write_text('#include "cudnn_version.h"\n')
        (root / 'lib' / 'libcudnn.so').write_text('')
    if nccl:
        (root / 'include' / 'nccl.h').write_text('#define NCCL_MAJOR 2\n#define NCCL_MINOR 28\n')
        (root / 'lib' / 'libnccl.so').write_text('')
    nvcc = root / 'bin' / 'nvcc'
    nvcc.write_text('#!/bin/sh\ncase "$1" in\n'
                    '  --list-gpu-arch) printf "compute_%%s\\n" %s ;;\n'
                    '  --version) echo "Cuda compilation tools, release %s" ;;\nesac\n'
                    % (' '.join(archs), release))
    nvcc.chmod(nvcc.stat().st_mode | stat.S_IEXEC)
    return root


def run_build_caffe(arg, toolkit=None, gpu=True, **env_vars):
    env = dict(os.environ)
    for name in ('MLIC_GPU', 'MLIC_CUDA_ROOT', 'MLIC_CUDA_LIBS', 'MLIC_CUDA_ARCH', 'MLIC_CUDNN',
                 'MLIC_NCCL'):
        env.pop(name, None)
    if gpu:
        env['MLIC_GPU'] = '1'
    if toolkit is not None:
        env['PATH'] = str(toolkit / 'bin') + os.pathsep + env['PATH']
    env.update({k: str(v) for k, v in env_vars.items()})
    return subprocess.run(['bash', BUILD_CAFFE, arg], env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)


def build_caffe(arg, toolkit=None, gpu=True, **env_vars):
    result = run_build_caffe(arg, toolkit, gpu, **env_vars)
    assert result.returncode == 0, result.stdout
    return result.stdout.split('\n')[:-1]


def test_cpu_build_flags():
    flags = build_caffe('--cmake-flags', gpu=False)
    assert '-DCPU_ONLY=ON' in flags and '-DUSE_CUDNN=OFF' in flags
    assert not [f for f in flags if f.startswith('-DCUDA_')]


def test_gpu_build_targets_the_wanted_architectures_the_toolkit_supports(tmp_path):
    toolkit = fake_toolkit(tmp_path, ['60', '70', '75', '80', '86'])
    flags = build_caffe('--cmake-flags', toolkit)
    assert '-DCPU_ONLY=ON' not in flags
    for flag in ['-DCPU_ONLY=OFF', '-DCUDA_ARCH_NAME=Manual',
                 '-DCUDA_ARCH_BIN=70;75;80;86', '-DCUDA_ARCH_PTX=86',
                 '-DCUDA_TOOLKIT_ROOT_DIR=%s' % toolkit]:
        assert flag in flags


def test_mlic_cuda_arch_narrows_the_architectures(tmp_path):
    toolkit = fake_toolkit(tmp_path, ['75', '80', '86', '90'])
    flags = build_caffe('--cmake-flags', toolkit, MLIC_CUDA_ARCH='90')
    assert '-DCUDA_ARCH_BIN=90' in flags and '-DCUDA_ARCH_PTX=90' in flags
    flags = build_caffe('--cmake-flags', toolkit, MLIC_CUDA_ARCH='80 90')
    assert '-DCUDA_ARCH_BIN=80;90' in flags


def test_gpu_build_uses_cudnn_9_and_nccl_by_path(tmp_path):
    toolkit = fake_toolkit(tmp_path, ['90'], release='13.0', cudnn_major=9)
    flags = build_caffe('--cmake-flags', toolkit)
    for flag in ['-DUSE_CUDNN=ON', '-DCUDNN_INCLUDE=%s/include' % toolkit,
                 '-DCUDNN_LIBRARY=%s/lib/libcudnn.so' % toolkit,
                 '-DUSE_NCCL=ON', '-DNCCL_INCLUDE_DIR=%s/include' % toolkit,
                 '-DNCCL_LIBRARIES=%s/lib/libnccl.so' % toolkit]:
        assert flag in flags, flags


def test_cudnn_and_nccl_from_their_own_directory(tmp_path):
    """setup.sh's cuda step with MLIC_CUDA_ROOT: the toolkit in one place, cuDNN and NCCL from
    their wheels in another."""
    toolkit = fake_toolkit(tmp_path / 'tk', ['90'], cudnn_major=None, nccl=False)
    libs = fake_toolkit(tmp_path / 'libs', ['90'])
    flags = build_caffe('--cmake-flags', MLIC_CUDA_ROOT=toolkit, MLIC_CUDA_LIBS=libs)
    assert '-DCUDA_TOOLKIT_ROOT_DIR=%s' % toolkit in flags
    assert '-DCUDNN_LIBRARY=%s/lib/libcudnn.so' % libs in flags
    assert '-DNCCL_LIBRARIES=%s/lib/libnccl.so' % libs in flags


def test_switches_turn_cudnn_and_nccl_off(tmp_path):
    toolkit = fake_toolkit(tmp_path, ['90'])
    flags = build_caffe('--cmake-flags', toolkit, MLIC_CUDNN=0)
    assert '-DUSE_CUDNN=OFF' in flags and '-DUSE_NCCL=ON' in flags
    assert not [f for f in flags if f.startswith('-DCUDNN_')]
    flags = build_caffe('--cmake-flags', toolkit, MLIC_NCCL=0)
    assert '-DUSE_NCCL=OFF' in flags and '-DUSE_CUDNN=ON' in flags


def test_missing_or_too_old_cudnn_is_an_error_that_names_the_switch(tmp_path):
    missing = fake_toolkit(tmp_path / 'missing', ['90'], cudnn_major=None)
    result = run_build_caffe('--cmake-flags', missing)
    assert result.returncode != 0 and 'MLIC_CUDNN=0' in result.stdout, result.stdout
    old = fake_toolkit(tmp_path / 'old', ['90'], cudnn_major=6)
    result = run_build_caffe('--cmake-flags', old)
    assert result.returncode != 0 and 'cuDNN 7 or newer' in result.stdout, result.stdout
    no_nccl = fake_toolkit(tmp_path / 'no_nccl', ['90'], nccl=False)
    result = run_build_caffe('--cmake-flags', no_nccl)
    assert result.returncode != 0 and 'MLIC_NCCL=0' in result.stdout, result.stdout


def test_gpu_build_has_its_own_cache_key_per_toolkit_and_libraries(tmp_path):
    cpu, = build_caffe('--key', gpu=False)
    cuda12, = build_caffe('--key', fake_toolkit(tmp_path / 'a', ['75'], release='12.4'))
    cuda13, = build_caffe('--key', fake_toolkit(tmp_path / 'b', ['75'], release='13.0'))
    cudnn8, = build_caffe('--key', fake_toolkit(tmp_path / 'c', ['75'], release='13.0', cudnn_major=8))
    nocudnn, = build_caffe('--key', fake_toolkit(tmp_path / 'b', ['75'], release='13.0'), MLIC_CUDNN=0)
    sm90, = build_caffe('--key', fake_toolkit(tmp_path / 'b', ['75', '90'], release='13.0'), MLIC_CUDA_ARCH=90)
    assert not cpu.startswith('cuda-')
    keys = [cuda12, cuda13, cudnn8, nocudnn, sm90]
    assert all(k.startswith('cuda-') for k in keys)
    assert len({cpu} | {k[5:] for k in keys}) == 6


def setup_check(tmp_path, step, **env_vars):
    env = dict(os.environ, MLIC_CACHE_DIR=str(tmp_path / 'cache'))
    for name in ('MLIC_GPU', 'MLIC_CUDA_ROOT', 'CAFFE_ROOT'):
        env.pop(name, None)
    env.update({k: str(v) for k, v in env_vars.items()})
    return subprocess.run(['bash', SETUP, '--check', step], env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)


def test_setup_fetches_the_cuda_wheels_only_for_a_gpu_build(tmp_path):
    cpu = setup_check(tmp_path, 'cuda')
    assert cpu.returncode == 0 and 'not needed' in cpu.stdout, cpu.stdout
    gpu = setup_check(tmp_path, 'cuda', MLIC_GPU=1)
    assert gpu.returncode == 1, gpu.stdout
    assert 'cuda (none in %s/cuda-13.0-' % (tmp_path / 'cache') in gpu.stdout, gpu.stdout


def test_setup_with_a_users_cuda_12_fetches_cudnn_and_nccl_for_cuda_12(tmp_path):
    toolkit = fake_toolkit(tmp_path, ['80'], release='12.8', cudnn_major=None, nccl=False)
    gpu = setup_check(tmp_path, 'cuda', MLIC_GPU=1, MLIC_CUDA_ROOT=toolkit)
    assert gpu.returncode == 1 and 'cuda (none in %s/cuda-libs-' % (tmp_path / 'cache') in gpu.stdout, gpu.stdout
    text = open(SETUP).read()
    wheels12 = re.search(r'^CUDA_LIBRARY_WHEELS_12=\((.*)\)$', text, re.M).group(1).split()
    assert sorted(w.split('==')[0] for w in wheels12) == ['nvidia-cudnn-cu12', 'nvidia-nccl-cu12']
