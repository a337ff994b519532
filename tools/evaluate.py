#!/usr/bin/env -S sh -c 'exec "$(dirname "$0")/../.venv/bin/python" "$0" "$@"'
"""Classification metrics of a score file against a datalist's labels.

  .venv/bin/python tools/evaluate.py --scores student_scores.npy --datalist data/val.txt \
      --classes data/coco_classes.txt [--per-class] [--json results.json] [--logits]

Scores: a .npy (num_images, C) array or a text/CSV file with one image per line (optionally
starting with the image path), in datalist order. Prints mAP and CP/CR/F1-C/OP/OR/F1-O for all
labels and for the top 3 (docs/original-method.md, "Metrics"), in percent.
"""
import argparse
import json
import sys

import numpy as np

from mlic import evaluation


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--scores', required=True,
                        help='.npy or CSV of per-image class probabilities')
    parser.add_argument('--datalist', required=True, help='datalist with the labels')
    parser.add_argument('--classes', required=True, help='class names, one per line')
    parser.add_argument('--json', help='write the results here')
    parser.add_argument('--per-class', action='store_true', help='also print per-class AP')
    parser.add_argument('--logits', action='store_true',
                        help='scores are logits (e.g. fc8 outputs): apply the sigmoid first')
    parser.add_argument('--threshold', type=float, default=0.5,
                        help='a label is predicted when its probability is >= this')
    parser.add_argument('--top-k', type=int, default=3,
                        help='labels per image allowed in the top-k metrics')
    parser.add_argument('--name', default='Model', help='row name in the table')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    class_names = evaluation.read_class_names(args.classes)
    image_paths, targets = evaluation.read_datalist_labels(args.datalist, len(class_names))
    scores = evaluation.read_scores(args.scores, image_paths)
    if scores.shape != targets.shape:
        raise ValueError('%s holds scores of shape %s; the datalist %s and %s need %s'
                         % (args.scores, scores.shape, args.datalist, args.classes,
                            targets.shape))
    if args.logits:
        scores = 1.0 / (1.0 + np.exp(-scores))
    elif scores.min() < 0 or scores.max() > 1:
        raise ValueError('%s: scores outside [0, 1] (min %g, max %g); pass --logits if they are '
                         'logits' % (args.scores, scores.min(), scores.max()))
    result = evaluation.evaluate(scores, targets, args.threshold, args.top_k)

    print('%d images, %d classes (%d without positives, left out of mAP, CP and CR)'
          % (result['num_images'], result['num_classes'],
             result['num_classes_without_positives']))
    sys.stdout.write(evaluation.format_warnings(
        evaluation.warnings([(args.name, result)], class_names)))
    print(evaluation.format_header(args.top_k))
    print(evaluation.format_row(result, args.name))
    if args.per_class:
        print()
        print(evaluation.format_per_class(result, class_names))
    if args.json:
        with open(args.json, 'w', encoding='utf-8') as out:
            json.dump(dict(result, name=args.name, class_names=class_names, scores=args.scores,
                           datalist=args.datalist), out, indent=2)
            out.write('\n')
    return 0


if __name__ == '__main__':
    try:
        sys.exit(main())
    except (ValueError, OSError) as error:
        sys.exit('evaluate.py: %s' % error)
