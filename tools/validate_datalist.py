#!/usr/bin/env python3
"""Checks a datalist and prints every problem as `file:line: field: reason`.

Exits 0 when the datalist is good, 1 when it has problems. Example (MS-COCO, 500 proposals per
image at 672 x 672, images under datalists/coco/):
  tools/validate_datalist.py datalists/coco/train.txt --att-num 80 --bbox-num 500 \
      --new-width 672 --new-height 672 --root-folder datalists/coco/
"""
import argparse
import sys

from mlic.datalist import scan_datalist


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('datalist')
    parser.add_argument('--att-num', type=int, required=True,
                        help='number of classes C (labels per line)')
    parser.add_argument('--bbox-num', type=int,
                        help='proposals per image the nets use: reports how many lines are padded '
                             'or cut to it')
    parser.add_argument('--new-width', type=int, default=672,
                        help='width the images are resized to; boxes must lie inside')
    parser.add_argument('--new-height', type=int, default=672)
    parser.add_argument('--root-folder', default='',
                        help='folder the image paths are relative to')
    parser.add_argument('--no-file-check', action='store_true',
                        help='do not look whether the image files exist')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    entries, problems = scan_datalist(args.datalist, args.att_num, args.new_width,
                                      args.new_height,
                                      None if args.no_file_check else args.root_folder)
    for problem in problems:
        print(problem)
    if problems:
        bad_lines = len({p.split(': ', 1)[0] for p in problems})
        print('%s: %d bad lines' % (args.datalist, bad_lines), file=sys.stderr)
        return 1
    summary = '%s: %d images, good' % (args.datalist, len(entries))
    if args.bbox_num:
        counts = [len(e.proposals) for e in entries]
        summary += ('; with bbox_num %d, %d lines are padded and %d cut to their best-scoring '
                    'proposals' % (args.bbox_num, sum(c < args.bbox_num for c in counts),
                                   sum(c > args.bbox_num for c in counts)))
    print(summary, file=sys.stderr)
    return 0


if __name__ == '__main__':
    sys.exit(main())
