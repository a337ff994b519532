"""MLIC_GPU=1 turns the Caffe build into a CUDA build, checked against a stand-in CUDA toolkit
(no GPU or full toolkit is needed to see which flags Caffe's CMake would get)."""
import os
import stat
import subprocess

from mlic.paths import ROOT

BUILD_CAFFE = os.path.join(ROOT, 'tools', 'setup', 'build_caffe.sh')


def fake_toolkit(tmp_path, archs, release='12.4', cudnn_major=None):
    root = tmp_path / 'cuda'
    (root / 'bin').mkdir(parents=True, exist_ok=True)
    (root / 'include').mkdir(exist_ok=True)
    (root / 'include' / 'cuda_runtime.h').write_text('')
    if cudnn_major is not None:
        (root / 'include' / 'cudnn_version.h').write_text('#define CUDNN_MAJOR %d\n' % cudnn_major)
    nvcc = root / 'bin' / 'nvcc'
    nvcc.write_text('#!/bin/sh\ncase "$1" in\n'
                    '  --list-gpu-arch) printf "compute_%%s\\n" %s ;;\n'
                    '  --version) echo "Cuda compilation tools, release %s" ;;\nesac\n'
                    % (' '.join(archs), release))
    nvcc.chmod(nvcc.stat().st_mode | stat.S_IEXEC)
    return root


def build_caffe(arg, toolkit=None, gpu=True):
    env = dict(os.environ)
    env.pop('MLIC_GPU', None)
    if gpu:
        env['MLIC_GPU'] = '1'
    if toolkit is not None:
        env['PATH'] = str(toolkit / 'bin') + os.pathsep + env['PATH']
    result = subprocess.run(['bash', BUILD_CAFFE, arg], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
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
    for flag in ['-DCPU_ONLY=OFF', '-DUSE_CUDNN=OFF', '-DCUDA_ARCH_NAME=Manual',
                 '-DCUDA_ARCH_BIN=70;75;80;86', '-DCUDA_ARCH_PTX=86',
                 '-DCUDA_TOOLKIT_ROOT_DIR=%s' % toolkit]:
        assert flag in flags


def test_cudnn_only_up_to_version_7(tmp_path):
    old = fake_toolkit(tmp_path / 'old', ['75'], cudnn_major=7)
    new = fake_toolkit(tmp_path / 'new', ['75'], cudnn_major=9)
    assert '-DUSE_CUDNN=ON' in build_caffe('--cmake-flags', old)
    assert '-DUSE_CUDNN=OFF' in build_caffe('--cmake-flags', new)


def test_gpu_build_has_its_own_cache_key_per_nvcc_version(tmp_path):
    cpu, = build_caffe('--key', gpu=False)
    cuda12, = build_caffe('--key', fake_toolkit(tmp_path, ['75'], release='12.4'))
    cuda13, = build_caffe('--key', fake_toolkit(tmp_path, ['75'], release='13.0'))
    assert not cpu.startswith('cuda-')
    assert cuda12.startswith('cuda-') and cuda13.startswith('cuda-')
    assert len({cpu, cuda12[5:], cuda13[5:]}) == 3
