#!/usr/bin/env -S sh -c 'exec "$(dirname "$0")/../../.venv/bin/python" "$0" "$@"'
"""Records in build/openblas.env the OpenBLAS core to use where OpenBLAS's own choice is below
what the CPU supports (tools/mlic/openblas.py says why). Run by tools/setup/setup.sh.

Usage: openblas_core.py CAFFE_BIN OUT_FILE [--check]
  --check  write nothing; exit 1 when OUT_FILE would change.
"""
import argparse
import os
import sys

from mlic import openblas


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('caffe_bin')
    parser.add_argument('out_file')
    parser.add_argument('--check', action='store_true')
    args = parser.parse_args()
    detected, better = openblas.choose(args.caffe_bin)
    if detected is None:
        text = '# %s links no OpenBLAS: nothing to set\n' % args.caffe_bin
        said = 'caffe links no OpenBLAS'
    elif better is None:
        text = '# OpenBLAS picks its %s kernels itself here: nothing to set\n' % detected
        said = 'OpenBLAS uses its %s kernels' % detected
    else:
        text = ('# OpenBLAS picks %s on this CPU, whose flags support %s (tools/mlic/openblas.py);\n'
                '# applied only on a CPU with the flags listed\n' % (detected, better)
                + openblas.env_text(better))
        said = 'OpenBLAS would pick %s on this CPU; %s=%s recorded' % (
            detected, openblas.VARIABLE, better)
    old = open(args.out_file).read() if os.path.exists(args.out_file) else None
    if args.check:
        print(said)
        return 0 if old == text else 1
    if old != text:
        with open(args.out_file, 'w') as f:
            f.write(text)
    print(said)
    return 0


if __name__ == '__main__':
    sys.exit(main())
