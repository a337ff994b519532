#!/usr/bin/env -S sh -c 'exec "$(dirname "$0")/../.venv/bin/python" "$0" "$@"'
"""Figure of test images with the top-3 labels of two models side by side (like the paper's).

  .venv/bin/python tools/plot_top3.py --datalist data/val.txt --classes data/coco_classes.txt \
      --without student_plain.npy --with student_kd.npy --image-root data/coco \
      --indices 0 5 17 -o top3.png

Labels in the ground truth are green, others red, ignored ones (-1 in the datalist) grey, as
the legend says; the ground truth and any ignored label are listed under each image.
Score files are read as by tools/evaluate.py (probabilities, datalist order or keyed by path).
"""
import argparse
import os
import sys

from mlic import evaluation, plots


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--datalist', required=True)
    parser.add_argument('--classes', required=True)
    parser.add_argument('--without', required=True, help='scores of the model without KD')
    parser.add_argument('--with', dest='with_kd', required=True, help='scores with KD')
    parser.add_argument('--image-root', default='', help='prefix of the datalist image paths')
    parser.add_argument('--indices', type=int, nargs='+', default=[0, 1, 2, 3],
                        help='datalist rows (0-based) to show')
    parser.add_argument('--top-k', type=int, default=3)
    parser.add_argument('-o', '--output', required=True, help='PNG to write')
    args = parser.parse_args(argv)
    class_names = evaluation.read_class_names(args.classes)
    image_paths, targets = evaluation.read_datalist_labels(args.datalist, len(class_names))
    scores = []
    for path in (args.without, args.with_kd):
        loaded = evaluation.read_scores(path, image_paths)
        if loaded.shape != targets.shape:
            raise ValueError('%s holds scores of shape %s; the datalist needs %s'
                             % (path, loaded.shape, targets.shape))
        scores.append(loaded)
    for index in args.indices:
        if not 0 <= index < len(image_paths):
            raise ValueError('--indices: %d is not a row of %s (%d images)'
                             % (index, args.datalist, len(image_paths)))
    images = [os.path.join(args.image_root, image_paths[i]) for i in args.indices]
    plots.plot_top_k_comparison(images, scores[0][args.indices], scores[1][args.indices],
                                targets[args.indices], class_names, args.output, k=args.top_k)
    print('wrote %s' % args.output)
    return 0


if __name__ == '__main__':
    try:
        sys.exit(main())
    except (ValueError, OSError) as error:
        sys.exit('plot_top3.py: %s' % error)
