"""OpenBLAS's kernel choice on CPUs it does not know.

Debian's OpenBLAS (0.3.21) picks its kernels from the CPU model number; on a model newer than it
knows (e.g. a 5th-generation Xeon, family 6 model 207) it falls back to its Prescott (SSE3)
kernels, and Caffe's convolutions run at half speed or less although the CPU has AVX-512. The
setup (tools/setup/openblas_core.py) asks OpenBLAS what it picked, and where that is below what
the CPU's flags support, records the better core in build/openblas.env. `tools/caffe` and every
Python process of the venv (through its .pth file, before anything loads OpenBLAS) then set
OPENBLAS_CORETYPE to it, unless the user has set it already.

Only cores this module ranks are ever overridden: a CPU OpenBLAS knows (AMD's Zen, a Cooperlake)
keeps its own choice. The file also lists the CPU flags the core needs, and the setting applies
only on a CPU that has them: a build folder made on one machine (a Docker image, a shared home)
must not run AVX-512 kernels on another without them.
"""
import os
import sys

ENV_FILE = 'openblas.env'
VARIABLE = 'OPENBLAS_CORETYPE'
NEEDS = 'OPENBLAS_CORETYPE_NEEDS'

# OpenBLAS's x86-64 core names, lower case, by the instruction set their kernels use.
RANK = {'prescott': 1, 'core2': 1, 'penryn': 1, 'dunnington': 1, 'atom': 1, 'nehalem': 2,
        'sandybridge': 3, 'haswell': 4, 'skylakex': 5}
# The best core a CPU flag set supports, best first, as OpenBLAS spells it.
BY_FLAGS = [('SkylakeX', {'avx512f', 'avx512cd', 'avx512bw', 'avx512dq', 'avx512vl'}),
            ('Haswell', {'avx2', 'fma'}),
            ('Sandybridge', {'avx'})]


def cpu_flags(cpuinfo='/proc/cpuinfo'):
    """The first processor's flags (Linux); an empty set where there is no such file."""
    try:
        with open(cpuinfo) as f:
            for line in f:
                if line.startswith('flags'):
                    return set(line.split(':', 1)[1].split())
    except OSError:
        pass
    return set()


def best_core(flags):
    for core, needs in BY_FLAGS:
        if needs <= flags:
            return core
    return None


def override(detected, flags):
    """The core to set instead of OpenBLAS's own choice `detected`, or None to keep it."""
    best = best_core(flags)
    detected = (detected or '').lower()
    if best is None or detected not in RANK:
        return None
    return best if RANK[detected] < RANK[best.lower()] else None


def corename(library, coretype=None):
    """The core OpenBLAS `library` picks in a fresh process, with OPENBLAS_CORETYPE=coretype
    (None: unset)."""
    env = dict(os.environ)
    env.pop(VARIABLE, None)
    if coretype:
        env[VARIABLE] = coretype
    # -S: without the venv's .pth, which would set the variable again; so this file runs as a
    # script (it needs nothing beyond the standard library).
    import subprocess  # here: the module is imported at every start of the venv's Python
    out = subprocess.run([sys.executable, '-S', os.path.abspath(__file__), library], env=env,
                         check=True, stdout=subprocess.PIPE, universal_newlines=True).stdout
    return out.strip()


def loaded_core(library=None):
    """The core of OpenBLAS `library` (loaded by this call), or of the OpenBLAS this process has
    already loaded (import caffe first); None where there is none."""
    import ctypes
    try:
        if library:
            lib = ctypes.CDLL(library)
        else:
            lib = ctypes.CDLL('libopenblas.so.0', mode=getattr(os, 'RTLD_NOLOAD', 4))
        lib.openblas_get_corename.restype = ctypes.c_char_p
    except (OSError, AttributeError):
        return None
    return lib.openblas_get_corename().decode()


def linked_library(binary):
    """The libopenblas a binary loads (from ldd), or None when it links another BLAS."""
    import subprocess
    out = subprocess.run(['ldd', binary], stdout=subprocess.PIPE, universal_newlines=True,
                         check=True).stdout
    for line in out.splitlines():
        parts = line.split('=>')
        if len(parts) == 2 and 'openblas' in parts[0]:
            path = parts[1].split('(')[0].strip()
            if os.path.isfile(path):
                return path
    return None


def choose(binary, flags=None):
    """(core OpenBLAS picks for `binary`, core to record or None)."""
    library = linked_library(binary)
    if library is None:
        return None, None
    detected = corename(library)
    better = override(detected, cpu_flags() if flags is None else flags)
    # An OpenBLAS built without that kernel would ignore the setting: record only what works.
    if better is not None and corename(library, better).lower() != better.lower():
        better = None
    return detected, better


def needs(core):
    """The CPU flags a core of BY_FLAGS needs, as a sorted list."""
    return sorted(dict(BY_FLAGS)[core])


def env_text(core):
    """The lines of build/openblas.env that set `core` (shell syntax: tools/caffe sources it)."""
    return '%s=%s\n%s="%s"\n' % (VARIABLE, core, NEEDS, ' '.join(needs(core)))


def read_env(build_dir):
    """(core, flags it needs) that build/openblas.env records, or (None, None)."""
    values = {}
    try:
        with open(os.path.join(build_dir, ENV_FILE)) as f:
            for line in f:
                if '=' in line and not line.startswith('#'):
                    key, value = line.strip().split('=', 1)
                    values[key] = value.strip('"')
    except OSError:
        pass
    if not values.get(VARIABLE):
        return None, None
    return values[VARIABLE], set(values.get(NEEDS, '').split())


def recorded(build_dir):
    """The core build/openblas.env records, or None."""
    return read_env(build_dir)[0]


def apply(build_dir, flags=None):
    """Sets OPENBLAS_CORETYPE to the recorded core unless it is set already or this CPU lacks
    a flag the core needs. Must run before the process loads OpenBLAS (numpy or caffe): OpenBLAS
    reads it once, when loaded."""
    core, required = read_env(build_dir)
    if core and required <= (cpu_flags() if flags is None else flags):
        os.environ.setdefault(VARIABLE, core)


if __name__ == '__main__':
    # corename()'s fresh process: the core OpenBLAS sys.argv[1] picks.
    print(loaded_core(sys.argv[1]))
