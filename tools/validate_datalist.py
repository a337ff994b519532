#!/usr/bin/env -S sh -c 'exec "$(dirname "$0")/../.venv/bin/python" "$0" "$@"'
"""Checks a datalist and prints every problem as `file:line: field: reason`.

Every line's fields are checked, then every image is decoded as the data layer would decode it
(in parallel, with a progress line; --no-decode skips this), refusing images above
--max-pixels from their header before decoding. What the original reader accepts and we take
too (corners outside the image, clipped; x1 > x2; an image listed twice) is counted in one
warning. Exits 0 when the datalist is usable, 1 when it has problems. Example (MS-COCO, 500
proposals per image at 672 x 672, images under datalists/coco/):
  tools/validate_datalist.py datalists/coco/train.txt --bbox-num 500 \\
      --new-width 672 --new-height 672 --root-folder datalists/coco/
(the class count C comes from datalists/coco/train.txt.classes; --att-num gives it otherwise).
"""
import argparse
import os
import sys

from mlic import converters
from mlic.datalist import check_images, scan_datalist
from mlic.preprocess import DEFAULT_MAX_PIXELS


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('datalist')
    parser.add_argument('--att-num', type=int,
                        help='number of classes C (labels per line); default: the number of '
                             'names in DATALIST.classes (written by make_datalist.py)')
    parser.add_argument('--bbox-num', type=int,
                        help='proposals per image the nets use: reports how many lines are padded '
                             'or cut to it')
    parser.add_argument('--new-width', type=int, default=672,
                        help='width the images are resized to; corners outside are clipped')
    parser.add_argument('--new-height', type=int, default=672)
    parser.add_argument('--root-folder', default='',
                        help='folder the image paths are relative to')
    parser.add_argument('--no-file-check', action='store_true',
                        help='do not look at the image files at all')
    parser.add_argument('--no-decode', action='store_true',
                        help='only look whether the image files exist, do not decode them')
    parser.add_argument('--max-pixels', type=int, default=DEFAULT_MAX_PIXELS,
                        help='refuse images with more pixels than this (default %d, as the '
                             'data layer\'s max_pixels; 0: no limit)' % DEFAULT_MAX_PIXELS)
    parser.add_argument('--workers', type=int, default=os.cpu_count(),
                        help='processes decoding images (default: one per core)')
    return parser.parse_args(argv)


def class_count(args):
    """--att-num, or the length of the class file beside the datalist."""
    if args.att_num is not None:
        return args.att_num
    beside = converters.classes_path(args.datalist)
    if not os.path.isfile(beside):
        sys.exit('validate_datalist.py: error: give --att-num (the number of classes): there is '
                 'no class file %s beside the datalist' % beside)
    try:
        count = len(converters.read_classes(beside))
    except (ValueError, UnicodeDecodeError) as error:
        sys.exit('validate_datalist.py: error: %s: %s' % (beside, error))
    print('%s: %d classes (from %s)' % (args.datalist, count, beside), file=sys.stderr)
    return count


def main(argv=None):
    args = parse_args(argv)
    num_classes = class_count(args)
    files = not args.no_file_check
    entries, problems = scan_datalist(args.datalist, num_classes, args.new_width,
                                      args.new_height, args.root_folder if files else None)
    if entries.warning:
        print('warning: %s' % entries.warning, file=sys.stderr)
    if files and not args.no_decode and len(entries):
        problems += check_images(entries, args.root_folder, args.max_pixels, args.workers,
                                 sys.stderr)
    for problem in problems:
        print(problem)
    if problems:
        bad_lines = len({p.split(': ', 1)[0] for p in problems})
        print('%s: %d bad lines' % (args.datalist, bad_lines), file=sys.stderr)
        return 1
    summary = '%s: %d images, good' % (args.datalist, len(entries))
    if files and not args.no_decode:
        summary += ' (every image decoded)'
    if args.bbox_num:
        counts = entries.proposal_counts()
        summary += ('; with bbox_num %d, %d lines are padded and %d cut to their best-scoring '
                    'proposals' % (args.bbox_num, int((counts < args.bbox_num).sum()),
                                   int((counts > args.bbox_num).sum())))
    print(summary, file=sys.stderr)
    return 0


if __name__ == '__main__':
    sys.exit(main())
