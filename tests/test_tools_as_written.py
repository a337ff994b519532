"""The command-line tools run exactly as the README writes them (`tools/x.py ...`) after
`make setup`, from any folder and without an activated venv: each finds the project's
.venv/bin/python itself; and `.venv/bin/python tools/x.py` works as well. The packages are
importable from anywhere, and tools/ is not on the path."""
import glob
import os
import subprocess
import sys

import pytest

from mlic.paths import ROOT, TOOLS

# tools/gpu_check.sh's bookkeeping, run by it with any python3 before the venv exists.
INTERNAL = {'gpu_check_report.py'}
# Every tool a user runs: the scripts of tools/ with a main.
TOOL_SCRIPTS = sorted(p for p in glob.glob(os.path.join(TOOLS, '*.py'))
                      if "if __name__ == '__main__':" in open(p).read()
                      and os.path.basename(p) not in INTERNAL)
# No venv on PATH, no PYTHONPATH, nothing of the test's own environment.
CLEAN_ENV = {'PATH': '/usr/local/bin:/usr/bin:/bin', 'HOME': os.environ.get('HOME', '/tmp')}


def test_every_tool_is_listed():
    assert len(TOOL_SCRIPTS) >= 15
    assert os.path.join(TOOLS, 'make_datalist.py') in TOOL_SCRIPTS


@pytest.mark.parametrize('script', TOOL_SCRIPTS, ids=os.path.basename)
def test_tool_runs_as_written_from_another_folder(script, tmp_path):
    assert os.access(script, os.X_OK), '%s is not executable' % script
    done = subprocess.run([script, '--help'], cwd=str(tmp_path), env=CLEAN_ENV,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stdout
    assert 'usage:' in done.stdout


def test_tool_runs_with_the_venv_python_named():
    done = subprocess.run([sys.executable, os.path.join('tools', 'validate_datalist.py'),
                           '--help'], cwd=ROOT, env=CLEAN_ENV, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=120)
    assert done.returncode == 0, done.stdout
    assert 'usage:' in done.stdout


def test_tool_names_the_missing_venv(tmp_path):
    """A copy of a tool without the project's .venv beside it says which interpreter is missing."""
    (tmp_path / 'tools').mkdir()
    copy = tmp_path / 'tools' / 'evaluate.py'
    copy.write_text(open(os.path.join(TOOLS, 'evaluate.py')).read())
    copy.chmod(0o755)
    done = subprocess.run([str(copy), '--help'], cwd=str(tmp_path), env=CLEAN_ENV,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=60)
    assert done.returncode != 0
    assert os.path.join('.venv', 'bin', 'python') in done.stdout


def venv_python(code, cwd):
    return subprocess.run([sys.executable, '-c', code], cwd=str(cwd), env=CLEAN_ENV,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=120)


def test_packages_import_from_any_folder(tmp_path):
    done = venv_python('import mlic.paths, caffe_layers, caffe; print(mlic.paths.ROOT); '
                       'print(caffe_layers.__file__)', tmp_path)
    assert done.returncode == 0, done.stdout
    root, layers = done.stdout.split()[-2:]
    assert root == ROOT
    assert layers == os.path.join(ROOT, 'caffe_layers', '__init__.py')


def test_tools_folder_is_not_on_the_path(tmp_path):
    """`import evaluate` must not find the command-line script tools/evaluate.py."""
    done = venv_python('import sys; print(repr(sys.path)); import evaluate', tmp_path)
    assert done.returncode != 0
    assert "No module named 'evaluate'" in done.stdout
    assert repr(TOOLS) not in done.stdout
