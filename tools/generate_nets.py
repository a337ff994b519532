#!/usr/bin/env -S sh -c 'exec "$(dirname "$0")/../.venv/bin/python" "$0" "$@"'
"""Writes the nets and solvers (tools/mlic/netgen.py) for the full-size or a small config.

  tools/generate_nets.py                  # rewrite the checked-in prototxt/ and prototxt/small/
  tools/generate_nets.py --out DIR --small --num-classes 20 --train-list L --test-list L2
"""
import argparse
import os
import sys

from mlic import netgen


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--out', help='output folder (default: rewrite the checked-in files)')
    parser.add_argument('--small', action='store_true', help='the small config (default: full)')
    parser.add_argument('--num-classes', type=int)
    parser.add_argument('--num-proposals', type=int)
    parser.add_argument('--train-list', help='training datalist')
    parser.add_argument('--test-list', help='test datalist')
    parser.add_argument('--root-folder', default='', help='prefix of the image paths in the lists')
    parser.add_argument('--snapshot-dir', help='where the solvers write snapshots')
    parser.add_argument('--soft-targets', help='stage 2 reads the teacher\'s scores from this .npy '
                        '(tools/compute_teacher_targets.py) instead of running the teacher')
    parser.add_argument('--roi-targets', help='stage 1 reads the teacher\'s RoI features from '
                        'this .npy (tools/compute_teacher_targets.py) instead of running the '
                        'teacher')
    parser.add_argument('--relative-to', default=os.getcwd(),
                        help='folder caffe is run from; paths in the files are relative to it '
                             '(default: the current folder)')
    args = parser.parse_args(argv)
    if args.out is None:
        for small in (False, True):
            out_dir, cfg, kwargs = netgen.checked_in(small)
            for path in sorted(netgen.write_nets(out_dir, cfg, **kwargs).values()):
                print(path)
        return 0
    cfg = netgen.small_config() if args.small else dict(netgen.FULL)
    if args.num_classes:
        cfg['num_classes'] = args.num_classes
    if args.num_proposals:
        cfg['num_proposals'] = args.num_proposals
    if args.soft_targets:
        cfg['soft_targets'] = args.soft_targets
    if args.roi_targets:
        cfg['roi_targets'] = args.roi_targets
    datalists = {}
    if args.train_list:
        datalists['train'] = args.train_list
    if args.test_list:
        datalists['test'] = args.test_list
    paths = netgen.write_nets(args.out, cfg, datalists=datalists, root_folder=args.root_folder,
                              snapshot_dir=args.snapshot_dir, relative_to=args.relative_to)
    for path in sorted(paths.values()):
        print(path)
    return 0


if __name__ == '__main__':
    sys.exit(main())
