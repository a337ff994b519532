#!/usr/bin/env -S sh -c 'exec "$(dirname "$0")/../.venv/bin/python" "$0" "$@"'
"""Has stage 1 transferred anything? The student's RoI features against the teacher's, next to
two predictors that ignore the image: zero and the teacher's mean feature.

  tools/stage1_fit.py --net prototxt/kd/stage1_train.prototxt \\
      --weights snapshots/stage1_iter_30000.caffemodel [--batches 20]

--net is the stage-1 training net (its TRAIN-phase data layer supplies the batches; its dropout
is left out, so the student's own features are measured); --weights
a stage-1 snapshot, or the stage-1 init (tools/net_surgery.py stage1) for the starting point.
Prints the mean 1/2 squared distance per real proposal (the stage-1 loss per RoI) of each.
A student above the teacher's mean feature has learned none of its structure.
"""
import argparse
import os
import sys

# pycaffe's INFO lines would bury the table.
os.environ.setdefault('GLOG_minloglevel', '2')


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--net', required=True, help='the stage-1 training net')
    parser.add_argument('--weights', required=True, help='a stage-1 .caffemodel')
    parser.add_argument('--batches', type=int, default=20, help='forward passes (default 20)')
    parser.add_argument('--gpu', type=int, help='GPU id (default: CPU)')
    args = parser.parse_args(argv)
    if args.batches < 1:
        parser.error('--batches must be at least 1')

    from mlic import feature_fit, inference
    for path, what in ((args.net, '--net'), (args.weights, '--weights')):
        if not os.path.isfile(path):
            sys.stderr.write('stage1_fit: %s: %s does not exist\n' % (what, path))
            return 1
    inference.use_device(args.gpu)
    try:
        summary = feature_fit.roi_feature_fit(args.net, args.weights, args.batches)
    except feature_fit.FeatureFitError as error:
        sys.stderr.write('stage1_fit: %s\n' % error)
        return 1
    print(feature_fit.format_fit(summary))
    return 0


if __name__ == '__main__':
    sys.exit(main())
