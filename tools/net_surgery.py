#!/usr/bin/env -S sh -c 'exec "$(dirname "$0")/../.venv/bin/python" "$0" "$@"'
"""Initial weights of the distillation stages (tools/mlic/surgery.py).

  tools/net_surgery.py stage1 --teacher T.caffemodel [--imagenet VGG16.caffemodel] \\
      --net nets/kd/stage1_train.prototxt --out snapshots/stage1_init.caffemodel
  tools/caffe train -solver nets/kd/stage1_solver.prototxt -weights snapshots/stage1_init.caffemodel

  tools/net_surgery.py stage2 --stage1 S1.caffemodel --teacher T.caffemodel \\
      --net nets/kd/stage2_train.prototxt --out snapshots/stage2_init.caffemodel
  tools/caffe train -solver nets/kd/stage2_solver.prototxt -weights snapshots/stage2_init.caffemodel

Every weight layer of the target net is filled, or is one the recipe leaves to its filler on
purpose (listed in the output); a missing layer or a shape mismatch stops with both names.
Without --net the net is the preset's (full VGG16 or small) that the teacher's layer shapes
match, for the teacher's class count; the data settings of a net (lists, proposal count, image
size) change no weight, so its init fits the net you generated with the same preset.
"""
import argparse
import os
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
    one.add_argument('--net', help='the stage-1 training net (default: the preset\'s that '
                                   'the teacher matches)')
    one.add_argument('--out', required=True)
    two = sub.add_parser('stage2', help='stage-1 result + teacher -> stage-2 init')
    two.add_argument('--stage1', required=True, help='the trained stage-1 .caffemodel')
    two.add_argument('--teacher', required=True, help='the trained WSDDN .caffemodel')
    two.add_argument('--net', help='the stage-2 training net (default: the preset\'s that '
                                   'the teacher matches)')
    two.add_argument('--out', required=True)
    args = parser.parse_args(argv)

    import caffe
    import caffe_layers  # noqa: F401  (our layer types, to instantiate the target net)
    from mlic import surgery
    caffe.set_mode_cpu()

    def make(net):
        if args.stage == 'stage1':
            return surgery.stage1_init(args.teacher, net, args.out, args.imagenet)
        return surgery.stage2_init(args.stage1, args.teacher, net, args.out)
    try:
        if args.net:
            report = make(args.net)
        elif not args.teacher:
            raise surgery.SurgeryError('without --teacher, give the stage-1 net with --net (one '
                                       'that reads precomputed RoI targets has no teacher)')
        else:
            report, what = surgery.with_preset_net(args.stage, args.teacher, make)
            print('net: %s (pass --net for another)' % what)
    except surgery.SurgeryError as error:
        message = str(error)
        if args.net and args.teacher and 'shape mismatch' in message:
            try:
                preset = surgery.matching_preset(args.teacher)
                message += ('\n%s has the %s preset\'s shapes: leave out --net to use that '
                            'preset\'s net' % (args.teacher, preset['name']))
            except surgery.SurgeryError:
                pass
        sys.stderr.write('net_surgery: error: %s\n' % message)
        return 1
    for name, source in report.items():
        print('%-22s <- %s' % (name, source))
    print('wrote %s' % args.out)
    return 0


if __name__ == '__main__':
    # Caffe's set-up log of every net it builds in this process (glog INFO) would bury the
    # output; errors still show. GLOG_minloglevel=0 brings it back.
    os.environ.setdefault('GLOG_minloglevel', '2')
    sys.exit(main())
