"""The OpenBLAS kernel override (tools/mlic/openblas.py): the decision on its own, and that the
setup's choice reaches the caffe tool and the venv's Python processes."""
import os
import subprocess
import sys

import pytest

from mlic import openblas
from mlic.paths import BUILD, ROOT
AVX512 = {'sse3', 'avx', 'avx2', 'fma', 'avx512f', 'avx512cd', 'avx512bw', 'avx512dq', 'avx512vl'}
AVX2 = {'sse3', 'avx', 'avx2', 'fma'}


@pytest.mark.parametrize('detected, flags, expected', [
    ('Prescott', AVX512, 'SkylakeX'),      # a Xeon model newer than OpenBLAS: the case it is for
    ('Prescott', AVX2, 'Haswell'),
    ('Sandybridge', AVX2, 'Haswell'),
    ('Haswell', AVX2, None),               # OpenBLAS chose the best already
    ('SkylakeX', AVX512, None),
    ('Cooperlake', AVX512, None),          # better than we rank: never lowered
    ('Zen', AVX2, None),                   # AMD: OpenBLAS knows it
    ('Prescott', {'sse3', 'avx512f'}, None),  # no complete AVX-512 or AVX2 set: nothing better
    ('Prescott', AVX512 - {'avx512vl'}, 'Haswell'),
])
def test_override(detected, flags, expected):
    assert openblas.override(detected, flags) == expected


def test_cpu_flags_reads_the_first_processor(tmp_path):
    cpuinfo = tmp_path / 'cpuinfo'
    cpuinfo.write_text('processor\t: 0\nflags\t\t: fpu sse3 avx2 fma\n\nprocessor\t: 1\n'
                       'flags\t\t: fpu\n')
    assert openblas.cpu_flags(str(cpuinfo)) == {'fpu', 'sse3', 'avx2', 'fma'}
    assert openblas.cpu_flags(str(tmp_path / 'missing')) == set()


@pytest.fixture
def environ():
    """os.environ restored after the test, after monkeypatch's own undo (ask for it before
    monkeypatch): apply() sets OPENBLAS_CORETYPE itself, and a value left behind gives later
    tests' subprocesses other kernels than their parent process."""
    saved = dict(os.environ)
    yield os.environ
    os.environ.clear()
    os.environ.update(saved)


def test_apply_sets_the_recorded_core_unless_the_user_set_one(tmp_path, environ, monkeypatch):
    monkeypatch.delenv(openblas.VARIABLE, raising=False)
    openblas.apply(str(tmp_path), AVX2)  # no file: nothing set
    assert openblas.VARIABLE not in os.environ
    (tmp_path / openblas.ENV_FILE).write_text('# why\n' + openblas.env_text('Haswell'))
    openblas.apply(str(tmp_path), AVX2)
    assert os.environ[openblas.VARIABLE] == 'Haswell'
    monkeypatch.setenv(openblas.VARIABLE, 'Sandybridge')
    openblas.apply(str(tmp_path), AVX2)
    assert os.environ[openblas.VARIABLE] == 'Sandybridge'
    (tmp_path / openblas.ENV_FILE).write_text('# OpenBLAS picks Haswell itself\n')
    assert openblas.recorded(str(tmp_path)) is None


def test_apply_skips_a_core_this_cpu_cannot_run(tmp_path, environ, monkeypatch):
    """A build folder made on an AVX-512 machine, used on an AVX2 one: OpenBLAS keeps its own."""
    monkeypatch.delenv(openblas.VARIABLE, raising=False)
    (tmp_path / openblas.ENV_FILE).write_text(openblas.env_text('SkylakeX'))
    assert openblas.read_env(str(tmp_path)) == ('SkylakeX', set(openblas.needs('SkylakeX')))
    openblas.apply(str(tmp_path), AVX2)
    assert openblas.VARIABLE not in os.environ
    openblas.apply(str(tmp_path), AVX512)
    assert os.environ[openblas.VARIABLE] == 'SkylakeX'


def test_caffe_tool_skips_a_core_this_cpu_cannot_run(tmp_path):
    """tools/caffe's own check of the flags (in bash), on a copy of the tools with a recorded
    core that needs a flag no CPU has."""
    for name in ('tools', 'build'):
        (tmp_path / name).mkdir()
    (tmp_path / 'tools' / 'caffe').write_text(open(os.path.join(ROOT, 'tools', 'caffe')).read())
    env = open(os.path.join(BUILD, 'caffe.env')).read()
    (tmp_path / 'build' / 'caffe.env').write_text(env)
    (tmp_path / 'build' / 'plugin' / 'lib').mkdir(parents=True)
    plugin = os.path.join(BUILD, 'plugin', 'lib', 'libmlic_layers.so')
    os.symlink(plugin, str(tmp_path / 'build' / 'plugin' / 'lib' / 'libmlic_layers.so'))
    # Sandybridge: a core OpenBLAS itself picks only on CPUs of 2011-2012, runnable on any CPU
    # with AVX.
    assert 'avx' in openblas.cpu_flags()
    for needs, expected in (('avx', 'Core: Sandybridge'), ('no_cpu_has_this avx', None)):
        (tmp_path / 'build' / openblas.ENV_FILE).write_text(
            'OPENBLAS_CORETYPE=Sandybridge\nOPENBLAS_CORETYPE_NEEDS="%s"\n' % needs)
        out = subprocess.run(['bash', str(tmp_path / 'tools' / 'caffe'), '--version'],
                             env=dict(without_override(), OPENBLAS_VERBOSE='2',
                                      MLIC_PLUGIN=plugin),
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             check=True)
        if expected:
            assert expected in out.stdout
        else:
            assert 'Core: Sandybridge' not in out.stdout and 'Core: ' in out.stdout


def caffe_bin():
    with open(os.path.join(BUILD, 'caffe.env')) as f:
        return dict(line.split('=', 1) for line in f.read().split('\n') if '=' in line)['CAFFE_BIN']


def without_override():
    return {k: v for k, v in os.environ.items() if k not in (openblas.VARIABLE, 'OPENBLAS_VERBOSE')}


def expected_core():
    """The core OpenBLAS should run with here: the setup's choice, else its own."""
    detected, better = openblas.choose(caffe_bin())
    if detected is None:
        pytest.fail('the caffe binary links no OpenBLAS; the setup installs libopenblas-dev')
    assert openblas.recorded(BUILD) == better, 'build/openblas.env is stale: run make setup'
    return better or detected


def test_setup_records_what_this_cpu_needs():
    core = expected_core()
    best = openblas.best_core(openblas.cpu_flags())
    if best is not None and core.lower() in openblas.RANK:
        assert openblas.RANK[core.lower()] >= openblas.RANK[best.lower()]


def test_caffe_tool_runs_with_that_core():
    out = subprocess.run([os.path.join(ROOT, 'tools', 'caffe'), '--version'],
                         env=dict(without_override(), OPENBLAS_VERBOSE='2'),
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=True)
    assert 'Core: %s' % expected_core() in out.stdout


def test_venv_python_runs_pycaffe_with_that_core():
    """A fresh venv process: the .pth sets the core before pycaffe loads OpenBLAS, and
    loaded_core (the benchmarks print it) reads what was loaded."""
    code = 'import caffe; from mlic import openblas; print(openblas.loaded_core())'
    out = subprocess.run([sys.executable, '-c', code], env=without_override(),
                         stdout=subprocess.PIPE, text=True, check=True)
    assert out.stdout.strip().lower() == expected_core().lower()
    # Without caffe nothing has loaded the system OpenBLAS.
    out = subprocess.run([sys.executable, '-c', 'from mlic import openblas; '
                          'print(openblas.loaded_core())'], env=without_override(),
                         stdout=subprocess.PIPE, text=True, check=True)
    assert out.stdout.strip() == 'None'
