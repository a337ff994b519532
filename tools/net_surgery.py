#!/usr/bin/env -S sh -c 'exec "$(dirname "$0")/../.venv/bin/python" "$0" "$@"'
"""Initial weights of the distillation stages (tools/mlic/surgery.py).

  tools/net_surgery.py stage1 --teacher T.caffemodel [--imagenet VGG16.caffemodel] \\
      --net prototxt/kd/stage1_train.prototxt --out snapshots/stage1_init.caffemodel
  tools/caffe train -solver prototxt/kd/stage1_solver.prototxt -weights snapshots/stage1_init.caffemodel

  tools/net_surgery.py stage2 --stage1 S1.caffemodel --teacher T.caffemodel \\
      --net prototxt/kd/stage2_train.prototxt --out snapshots/stage2_init.caffemodel
  tools/caffe train -solver prototxt/kd/stage2_solver.prototxt -weights snapshots/stage2_init.caffemodel

Every weight layer of the target net is filled, or is one the recipe leaves to its filler on
purpose (listed in the output); a missing layer or a shape mismatch stops with both names.
"""
import argparse
import sys


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest='stage', required=True)
    one = sub.add_parser('stage1', help='teacher (+ ImageNet VGG16) -> stage-1 init')
    one.add_argument('--teacher', help='the trained WSDDN .caffemodel (not for a stage-1 net '
                                       'that reads precomputed RoI features: it has no teacher)')
    one.add_argument('--imagenet', help='ImageNet VGG16 .caffemodel for the student (default: '
                                        'the student starts from its fillers)')
    one.add_argument('--net', default='prototxt/kd/stage1_train.prototxt')
    one.add_argument('--out', required=True)
    two = sub.add_parser('stage2', help='stage-1 result + teacher -> stage-2 init')
    two.add_argument('--stage1', required=True, help='the trained stage-1 .caffemodel')
    two.add_argument('--teacher', required=True, help='the trained WSDDN .caffemodel')
    two.add_argument('--net', default='prototxt/kd/stage2_train.prototxt')
    two.add_argument('--out', required=True)
    args = parser.parse_args(argv)

    import caffe
    import caffe_layers  # noqa: F401  (our layer types, to instantiate the target net)
    from mlic import surgery
    caffe.set_mode_cpu()
    try:
        if args.stage == 'stage1':
            report = surgery.stage1_init(args.teacher, args.net, args.out, args.imagenet)
        else:
            report = surgery.stage2_init(args.stage1, args.teacher, args.net, args.out)
    except surgery.SurgeryError as error:
        sys.stderr.write('net_surgery: %s\n' % error)
        return 1
    for name, source in report.items():
        print('%-22s <- %s' % (name, source))
    print('wrote %s' % args.out)
    return 0


if __name__ == '__main__':
    sys.exit(main())
