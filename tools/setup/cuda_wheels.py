"""Unpacks NVIDIA's CUDA wheels into one directory laid out like a CUDA toolkit.

    cuda_wheels.py WHEEL_DIR DEST

The wheels keep the toolkit in nvidia/cu13/ (nvcc, runtime, cuBLAS, cuRAND; cu12 for CUDA 12)
and cuDNN and NCCL in nvidia/cudnn/ and nvidia/nccl/, each with bin/, include/ and lib/. They
all go into DEST/bin, DEST/include, DEST/lib (and DEST/nvvm for nvcc's back end), which CMake's
FindCUDA and the compilers know as a toolkit root. The wheels ship only versioned shared
libraries (libcudnn.so.9); the linker looks for the unversioned name, so each gets its link.
"""
import glob
import os
import re
import stat
import sys
import zipfile

PACKAGE_DIR = re.compile(r'^nvidia/(cu1[0-9]|cudnn|nccl)/')


def unpack(wheel, dest):
    with zipfile.ZipFile(wheel) as zf:
        members = [m for m in zf.infolist()
                   if PACKAGE_DIR.match(m.filename) and not m.is_dir()
                   and '/.metadata/' not in m.filename]
        if not members:
            sys.exit('%s has nothing under nvidia/cu1x, nvidia/cudnn or nvidia/nccl' % wheel)
        for m in members:
            target = os.path.join(dest, PACKAGE_DIR.sub('', m.filename))
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with zf.open(m) as src, open(target, 'wb') as out:
                out.write(src.read())
            # Zip entries keep the Unix mode in the high bits: nvcc, ptxas and others are
            # executables.
            mode = (m.external_attr >> 16) & 0o777
            if mode & stat.S_IXUSR:
                os.chmod(target, 0o755)


def link_unversioned(lib):
    for path in sorted(glob.glob(os.path.join(lib, 'lib*.so.*'))):
        name = os.path.basename(path)
        plain = os.path.join(lib, name[:name.index('.so.') + 3])
        if not os.path.lexists(plain):
            os.symlink(name, plain)


def main(wheel_dir, dest):
    wheels = sorted(glob.glob(os.path.join(wheel_dir, '*.whl')))
    if not wheels:
        sys.exit('no wheels in %s' % wheel_dir)
    for wheel in wheels:
        unpack(wheel, dest)
    lib = os.path.join(dest, 'lib')
    link_unversioned(lib)
    if not os.path.lexists(os.path.join(dest, 'lib64')):
        os.symlink('lib', os.path.join(dest, 'lib64'))


if __name__ == '__main__':
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(*sys.argv[1:])
