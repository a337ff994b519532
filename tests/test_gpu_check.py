"""The GPU check's parts that run without a GPU: it refuses clearly where there is none, tests/gpu
fails (not skips) there and stays out of the normal suite, nvidia-smi's answers are read, and the
summary table is made from real results (a net timed on the CPU, a real pytest and ctest run)."""
import json
import os
import shutil
import subprocess
import sys

import pytest

from mlic.paths import ROOT
from mlic import gpu_check

PYTHON = sys.executable
REPORT = os.path.join(ROOT, 'tools', 'gpu_check_report.py')
no_gpu = pytest.mark.skipif(shutil.which('nvidia-smi') is not None and
                            subprocess.run(['nvidia-smi', '-L'], stdout=subprocess.DEVNULL,
                                           stderr=subprocess.DEVNULL).returncode == 0,
                            reason='this machine has a GPU: tools/gpu_check.sh runs for real')


@no_gpu
def test_the_check_says_there_is_no_gpu_and_fails(tmp_path):
    result = subprocess.run(['bash', os.path.join(ROOT, 'tools', 'gpu_check.sh')],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            timeout=300, env=dict(os.environ, GPU_CHECK_DIR=str(tmp_path)))
    assert result.returncode == 2
    assert 'no GPU to check on this machine' in result.stderr
    assert os.listdir(str(tmp_path)) == []  # nothing was built or run


@no_gpu
@pytest.mark.e2e  # runs pytest itself, twice
def test_the_gpu_tests_fail_without_a_gpu_and_the_normal_suite_leaves_them_out(tmp_path):
    named = subprocess.run([PYTHON, '-m', 'pytest', os.path.join(ROOT, 'tests', 'gpu'), '-q',
                            '-p', 'no:cacheprovider', '-x'], cwd=ROOT, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, timeout=600)
    assert named.returncode == 1, named.stdout[-2000:]
    assert 'tests/gpu needs an NVIDIA GPU' in named.stdout and 'skipped' not in named.stdout
    listed = subprocess.run([PYTHON, '-m', 'pytest', os.path.join(ROOT, 'tests'),
                             '--collect-only', '-q', '-p', 'no:cacheprovider'], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            timeout=600)
    assert 'test_gpu_vs_cpu' not in listed.stdout and 'test_sharding' in listed.stdout


def test_nvidia_smi_answers_are_read():
    gpus = gpu_check.parse_gpus('0, NVIDIA H200, 9.0, 143771\n1, NVIDIA GeForce RTX 5090, '
                                '12.0, 32607\n')
    assert gpus == [gpu_check.Gpu(0, 'NVIDIA H200', '9.0', 143771),
                    gpu_check.Gpu(1, 'NVIDIA GeForce RTX 5090', '12.0', 32607)]
    assert [gpu_check.cuda_arch(g.compute_cap) for g in gpus] == ['90', '120']
    with pytest.raises(gpu_check.NoGpu, match='cannot read'):
        gpu_check.parse_gpus('No devices were found')


@pytest.mark.e2e  # runs net_time, a pytest test and ctest for real results
def test_the_summary_table_from_real_results(tmp_path):
    results = str(tmp_path / 'results.jsonl')
    timing = str(tmp_path / 'time.json')
    net = os.path.join(ROOT, 'prototxt', 'small', 'wsddn', 'train.prototxt')
    subprocess.run([PYTHON, os.path.join(ROOT, 'tools', 'net_time.py'), net, '--batch', '2',
                    '--cpu', '--engine', 'CAFFE', '--iterations', '1', '--json', timing],
                   check=True, timeout=300, stdout=subprocess.DEVNULL)
    assert json.load(open(timing))['images_per_s'] > 0
    junit = str(tmp_path / 'junit.xml')
    subprocess.run([PYTHON, '-m', 'pytest', '-q', '-p', 'no:cacheprovider',
                    os.path.join(ROOT, 'tests', 'test_sharding.py') + '::test_rank_seeds_differ'
                    '_and_repeat', '--junitxml', junit], cwd=ROOT, check=True, timeout=300,
                   stdout=subprocess.DEVNULL)
    ctest_log = str(tmp_path / 'ctest.log')
    with open(ctest_log, 'w') as log:
        code = subprocess.run(['ctest', '--test-dir', os.path.join(ROOT, 'build', 'plugin'),
                               '-R', 'InterpLayerTest', '--output-on-failure'], stdout=log,
                              stderr=subprocess.STDOUT, timeout=600).returncode
    for args in (['add', results, 'build', 'Caffe + plugin for sm_90', '312 s', '1'],
                 ['ctest', results, ctest_log, '1' if code == 0 else '0'],
                 ['pytest', results, junit],
                 ['speed', results, timing],
                 ['memory', results, timing]):
        subprocess.run([PYTHON, REPORT] + args, check=True, timeout=300)
    summary = subprocess.run([PYTHON, REPORT, 'summary', results], stdout=subprocess.PIPE,
                             text=True, timeout=60)
    lines = summary.stdout.splitlines()
    assert [cell.strip() for cell in lines[0].split('|')[1:5]] == ['part', 'item', 'result',
                                                                  'ok']
    rows = [line for line in lines if line.startswith('| ') and not line.startswith('| part')]
    assert [row.split('|')[1].strip() for row in rows] == [
        'build', 'gradient checks', 'pytest tests/gpu', 'speed', 'GPU memory']
    assert 'images/s forward+backward, our layers' in rows[3]
    if code == 0:
        assert ' passed' in rows[1] and rows[1].rstrip('| ').endswith('yes')
    else:  # a CUDA build's test binary does not start without a GPU (the GPU image, here)
        assert rows[1].rstrip('| ').endswith('NO')
    # The CPU timing has no GPU memory: that row fails, and with it the check.
    assert 'not measured (CPU)' in rows[4] and rows[4].rstrip('| ').endswith('NO')
    assert summary.returncode == 1 and \
        lines[-1] == 'GPU check: %d of 5 parts FAILED' % (1 if code == 0 else 2)
