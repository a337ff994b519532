#!/usr/bin/env -S sh -c 'exec "$(dirname "$0")/../.venv/bin/python" "$0" "$@"'
"""Writes the seeded synthetic multi-label dataset (images, classes, labels-only datalists and
ground-truth boxes of a train and a test split). See tools/mlic/synthetic.py."""
import argparse
import sys

from mlic import synthetic


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('out_dir')
    parser.add_argument('--num-classes', type=int, default=10)
    parser.add_argument('--image-size', type=int, default=128)
    parser.add_argument('--object-size', type=int, nargs=2, metavar=('MIN', 'MAX'),
                        help='object side in pixels (default image_size/8 .. image_size/3)')
    parser.add_argument('--objects-per-image', type=int, nargs=2, metavar=('MIN', 'MAX'),
                        default=(1, 5))
    parser.add_argument('--num-train', type=int, default=1000)
    parser.add_argument('--num-test', type=int, default=300)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--format', choices=('png', 'jpg'), default='png')
    args = parser.parse_args(argv)
    try:
        paths = synthetic.generate(args.out_dir, num_classes=args.num_classes,
                                   image_size=args.image_size, object_size=args.object_size,
                                   objects_per_image=args.objects_per_image,
                                   num_train=args.num_train, num_test=args.num_test,
                                   seed=args.seed, image_format=args.format)
    except ValueError as error:
        sys.exit('make_synthetic.py: error: %s' % error)
    for name in sorted(paths):
        print('%-15s %s' % (name, paths[name]))


if __name__ == '__main__':
    main()
