#!/usr/bin/env -S sh -c 'exec "$(dirname "$0")/../.venv/bin/python" "$0" "$@"'
"""Runs a deploy net (the WSDDN teacher or the student) over a datalist with pycaffe.

  tools/run_deploy.py --net prototxt/kd/student_deploy.prototxt \\
      --weights snapshots/stage2_iter_30000.caffemodel --datalist datalists/coco/test.txt \\
      --out results/student
writes results/student.npy (num_images, C) scores in datalist order, results/student.txt (the
image paths) and results/student.json (mAP, CP/CR/F1-C, OP/OR/F1-O, top-3: tools/mlic/evaluation.py),
and prints the metrics. For the teacher the scores are image_level_score and
results/<name>_proposals.npz also holds each image's proposal boxes and per-class scores.
Images are prepared as the data layer's TEST phase does (resize, BGR mean subtraction).
"""
import argparse
import json
import os
import sys

import numpy as np


class StudentSet(object):
    """The images and labels of a datalist (the student needs no proposals)."""

    def __init__(self, images, labels):
        self.images, self.labels = images, labels


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--net', required=True, help='deploy prototxt (teacher or student)')
    parser.add_argument('--weights', required=True, help='.caffemodel')
    parser.add_argument('--datalist', required=True, help='datalist (labels, and proposals for '
                                                          'the teacher)')
    parser.add_argument('--root-folder', default='', help='prefix of the datalist image paths')
    parser.add_argument('--out', required=True, help='output path without extension')
    parser.add_argument('--batch-size', type=int, default=8)
    parser.add_argument('--gpu', type=int, help='GPU id (default: CPU)')
    args = parser.parse_args(argv)

    from mlic import deploy, evaluation, inference
    inference.use_device(args.gpu)
    try:
        cfg = deploy.describe(args.net)
        if cfg['kind'] == 'teacher':
            test = inference.read_datalist(args.datalist, cfg['num_classes'],
                                           cfg['num_proposals'], args.root_folder)
            out = inference.predict_teacher(args.net, args.weights, test, cfg, args.batch_size)
            scores = out['scores']
            np.savez_compressed(args.out + '_proposals.npz',
                                boxes=np.array(out['boxes'], dtype=object),
                                scores=np.array(out['proposal_scores'], dtype=object))
        else:
            paths, labels = evaluation.read_datalist_labels(args.datalist, cfg['num_classes'])
            test = StudentSet([os.path.join(args.root_folder, p) for p in paths], labels)
            scores = inference.predict_student(args.net, args.weights, test, cfg, args.batch_size)
    except (ValueError, IOError) as error:
        sys.stderr.write('run_deploy: %s\n' % error)
        return 1
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    np.save(args.out + '.npy', scores)
    with open(args.out + '.txt', 'w') as f:
        f.write('\n'.join(test.images) + '\n')
    metrics = evaluation.evaluate(scores, test.labels)
    with open(args.out + '.json', 'w') as f:
        json.dump(metrics, f, indent=1)
    print(evaluation.format_header())
    print(evaluation.format_row(metrics, cfg['kind']))
    print('wrote %s.npy, %s.txt, %s.json' % (args.out, args.out, args.out))
    return 0


if __name__ == '__main__':
    # Caffe's set-up log of every net it builds in this process (glog INFO) would bury the
    # output; errors still show. GLOG_minloglevel=0 brings it back.
    os.environ.setdefault('GLOG_minloglevel', '2')
    sys.exit(main())
