#!/usr/bin/env -S sh -c 'exec "$(dirname "$0")/../.venv/bin/python" "$0" "$@"'
"""Writes the nets and solvers (tools/mlic/netgen.py) for your data, with the full-size (VGG16)
or the small config.

  tools/generate_nets.py --out nets --small --datalist train.txt --test-list test.txt
  tools/generate_nets.py --out nets --num-classes 20 --num-proposals 500 --image-size 672 \\
      --train-list train.txt --test-list test.txt
  tools/generate_nets.py --update-checked-in     # developers: rewrite prototxt/ and prototxt/small/

The data's sizes come from the datalist (--datalist, else --train-list): the class count from
its .classes file, the proposal count from its longest line and the image size (the data
layer's new_width = new_height, compute_proposals.py's --new-size) from its largest box corner.
That corner is a lower bound: pass --image-size to be exact. Options given override, and are
checked against the datalist.
"""
import argparse
import copy
import os
import sys

from mlic import netgen
from mlic.datalist import datalist_sizes

CHECKED_IN = os.path.join(netgen.ROOT, 'prototxt')


def inside(path, folder):
    path, folder = os.path.realpath(path), os.path.realpath(folder)
    return path == folder or path.startswith(folder + os.sep)


def data_config(args):
    """The config of the chosen preset with the data's sizes (see the module docstring)."""
    from mlic import converters
    cfg = netgen.small_config() if args.small else copy.deepcopy(netgen.FULL)
    datalist = args.datalist or (args.train_list if args.train_list and
                                 os.path.isfile(args.train_list) else None)
    notes = []
    if datalist:
        classes_file = converters.classes_path(datalist)
        if args.num_classes is None:
            if not os.path.isfile(classes_file):
                raise ValueError('%s: no class list beside the datalist: pass --num-classes'
                                 % classes_file)
            args.num_classes = len(converters.read_classes(classes_file))
        found = datalist_sizes(datalist, args.num_classes)
        notes += ['%s: %d classes, up to %d proposals a line, boxes up to pixel %d'
                 % (datalist, args.num_classes, found['num_proposals'],
                    found['min_image_size'] - 1)]
        if args.num_proposals is None:
            args.num_proposals = found['num_proposals']
        if args.image_size is None:
            args.image_size = found['min_image_size']
            notes.append('image size %d px from the largest box corner (a lower bound: pass '
                         '--image-size with compute_proposals.py\'s --new-size if it differs)'
                         % args.image_size)
        elif args.image_size < found['min_image_size']:
            raise ValueError('%s:%d: a box reaches pixel %d, outside --image-size %d: the list '
                             'was made for larger images (compute_proposals.py --new-size); '
                             'pass that size' % (datalist, found['corner_line'],
                                                 found['min_image_size'] - 1, args.image_size))
    for key in ('num_classes', 'num_proposals', 'image_size'):
        value = getattr(args, key)
        option = '--' + key.replace('_', '-')
        if value is None:
            notes.append('%s %d: the %s preset\'s (no datalist to read it from; pass %s)'
                         % (key, cfg[key], cfg['name'], option))
        elif value < 1:
            raise ValueError('%s must be positive, got %d' % (option, value))
        else:
            cfg[key] = value
    if cfg['image_size'] < cfg['student_size']:
        notes.append('the teacher\'s input (%d px) is smaller than the student\'s (%d px); the '
                     'method has the teacher see the larger images'
                     % (cfg['image_size'], cfg['student_size']))
    for note in notes:
        sys.stderr.write('generate_nets.py: note: %s\n' % note)
    if args.max_pixels is not None:
        if args.max_pixels < 0:
            raise ValueError('--max-pixels must be 0 (no limit) or positive, got %d'
                             % args.max_pixels)
        cfg['max_pixels'] = args.max_pixels
    for key in netgen.TARGET_KEYS:
        if getattr(args, key):
            cfg[key] = getattr(args, key)
    return cfg


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--out', help='output folder (required, unless --update-checked-in)')
    parser.add_argument('--update-checked-in', action='store_true',
                        help='rewrite the shipped prototxt/ and prototxt/small/ from the '
                             'generator (for developers who changed it)')
    parser.add_argument('--small', action='store_true',
                        help='the small config (netgen.SMALL: a 64 px student, BatchNorm; '
                             'default: the full VGG16 nets)')
    parser.add_argument('--datalist', help='the datalist to read the sizes from (default: '
                                           '--train-list)')
    parser.add_argument('--num-classes', type=int, help='default: the datalist\'s .classes')
    parser.add_argument('--num-proposals', type=int,
                        help='bbox_num (default: the datalist\'s longest line)')
    parser.add_argument('--image-size', type=int,
                        help='the teacher\'s input, the data layer\'s new_width = new_height '
                             '(default: from the datalist\'s boxes)')
    parser.add_argument('--max-pixels', type=int,
                        help='the data layer refuses images with more pixels (default %d; 0: no '
                             'limit)' % netgen.FULL['max_pixels'])
    parser.add_argument('--train-list', help='training datalist (default: --datalist)')
    parser.add_argument('--test-list', help='test datalist')
    parser.add_argument('--root-folder', default='', help='prefix of the image paths in the lists')
    parser.add_argument('--snapshot-dir', help='where the solvers write snapshots')
    parser.add_argument('--soft-targets', help='stage 2 reads the teacher\'s scores from this .npy '
                        '(tools/compute_teacher_targets.py) instead of running the teacher')
    parser.add_argument('--roi-targets', help='stage 1 reads the teacher\'s RoI features from '
                        'this .npy (tools/compute_teacher_targets.py) instead of running the '
                        'teacher')
    parser.add_argument('--attention-targets', help='attention transfer reads the teacher\'s '
                        'attention maps from this .npy (tools/compute_baseline_targets.py) '
                        'instead of running the teacher')
    parser.add_argument('--hint-targets', help='FitNets\' hint stage reads the teacher\'s last '
                        'conv features from this .npy (tools/compute_baseline_targets.py) '
                        'instead of running the teacher')
    parser.add_argument('--relative-to', default=os.getcwd(),
                        help='folder caffe is run from; paths in the files are relative to it '
                             '(default: the current folder)')
    args = parser.parse_args(argv)
    if args.update_checked_in:
        if args.out:
            parser.error('--update-checked-in writes prototxt/ and prototxt/small/; it takes '
                         'no --out')
        for small in (False, True):
            out_dir, cfg, kwargs = netgen.checked_in(small)
            for path in sorted(netgen.write_nets(out_dir, cfg, **kwargs).values()):
                print(path)
        return 0
    if not args.out:
        parser.error('--out is required (the folder to write the nets to; the shipped '
                     'prototxt/ is only rewritten with --update-checked-in)')
    if inside(args.out, CHECKED_IN):
        parser.error('--out %s is inside the shipped %s: choose another folder (developers: '
                     '--update-checked-in)' % (args.out, CHECKED_IN))
    try:
        cfg = data_config(args)
    except ValueError as error:
        sys.stderr.write('generate_nets.py: error: %s\n' % error)
        return 1
    datalists = {}
    if args.train_list or args.datalist:
        datalists['train'] = args.train_list or args.datalist
    if args.test_list:
        datalists['test'] = args.test_list
    for split in ('train', 'test'):
        if split not in datalists:
            sys.stderr.write('generate_nets.py: note: no --%s-list: the nets read the preset\'s '
                             '%s\n' % (split, cfg['datalists'][split]))
    paths = netgen.write_nets(args.out, cfg, datalists=datalists, root_folder=args.root_folder,
                              snapshot_dir=args.snapshot_dir, relative_to=args.relative_to)
    for path in sorted(paths.values()):
        print(path)
    return 0


if __name__ == '__main__':
    sys.exit(main())
