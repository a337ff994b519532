#!/usr/bin/env -S sh -c 'exec "$(dirname "$0")/../.venv/bin/python" "$0" "$@"'
"""The frozen teacher's outputs computed once, for KD nets that read them instead of running
the teacher on every batch (netgen's soft_targets and roi_targets; the same numbers): for
every image of the train datalist, as read and as mirrored,

  --soft-targets  stage 2's soft targets: a (lines, 2, classes) float32 .npy
  --roi-targets   stage 1's targets, the teacher's fc7 of every proposal: a
                  (lines, 2, bbox_num, fc_size) float32 .npy (4 bytes a value: plan the disk)

  tools/compute_teacher_targets.py --net prototxt/kd/stage2_teacher_deploy.prototxt \\
      --teacher snapshots/wsddn_iter_40000.caffemodel --datalist datalists/coco/train.txt \\
      --soft-targets datalists/coco/soft_targets.npy
  tools/generate_nets.py --out nets --soft-targets datalists/coco/soft_targets.npy ...

--net is the stage-2 teacher deploy net written beside the KD nets (it has stage 2's
temperature, which acts after fc7); --teacher the trained WSDDN .caffemodel (its layers are
renamed as in the KD nets). Rows are in datalist order, [:, 0] as read, [:, 1] mirrored. The
datalist must be the one the KD net trains on, with the same resize.
"""
import argparse
import os
import sys
import tempfile
import time


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--net', required=True, help='stage2_teacher_deploy.prototxt')
    parser.add_argument('--teacher', required=True, help='the WSDDN teacher .caffemodel')
    parser.add_argument('--datalist', required=True, help='the KD nets\' train datalist')
    parser.add_argument('--root-folder', default='', help='prefix of the datalist image paths')
    parser.add_argument('--soft-targets', help='the .npy of stage 2\'s soft targets to write')
    parser.add_argument('--roi-targets', help='the .npy of stage 1\'s RoI features to write')
    parser.add_argument('--gpu', type=int, help='GPU id (default: CPU)')
    parser.add_argument('--max-pixels', type=int, help='images with more pixels are refused, as '
                        'the data layer\'s max_pixels (default: its default; 0: no limit)')
    parser.add_argument('--workers', type=int, default=1,
                        help='processes, each over its share of the images (CPU only; '
                             'default 1)')
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error('--workers must be at least 1')
    if args.workers > 1 and args.gpu is not None:
        parser.error('--workers runs forked CPU processes; with --gpu leave it at 1')
    if not args.soft_targets and not args.roi_targets:
        parser.error('name what to write: --soft-targets, --roi-targets or both')
    for path in (args.soft_targets, args.roi_targets):
        if path and not path.endswith('.npy'):
            parser.error('%s: the outputs are .npy files; name them so' % path)

    from mlic import deploy, inference, surgery
    inference.use_device(args.gpu)
    start = time.time()
    outputs = [path for path in (args.soft_targets, args.roi_targets) if path]
    try:
        cfg = deploy.describe(args.net)
        if args.max_pixels is not None:  # inference.load_images reads it
            cfg['max_pixels'] = args.max_pixels
        if cfg['kind'] != 'stage2_teacher':
            raise ValueError('%s is a %s deploy net, not the KD nets\' teacher '
                             '(kd/stage2_teacher_deploy.prototxt)' % (args.net, cfg['kind']))
        train = inference.read_datalist(args.datalist, cfg['num_classes'],
                                        cfg['num_proposals'], args.root_folder)
        for path in outputs:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        folder = os.path.dirname(os.path.abspath(outputs[0]))
        with tempfile.TemporaryDirectory(dir=folder) as tmp:
            weights = os.path.join(tmp, 'stage2_teacher.caffemodel')
            surgery.stage2_init(None, args.teacher, args.net, weights)
            # Written under temporary names and renamed when complete: an interrupted run
            # leaves no file that looks usable.
            partial = {path: os.path.join(tmp, os.path.basename(path)) for path in outputs}
            soft, roi = inference.teacher_targets(
                args.net, weights, train, cfg, soft_path=partial.get(args.soft_targets),
                roi_path=partial.get(args.roi_targets), workers=args.workers)
            del roi  # the memory map, before its file moves
            for path in outputs:
                os.replace(partial[path], path)
    except (ValueError, IOError, RuntimeError, surgery.SurgeryError) as error:
        sys.stderr.write('compute_teacher_targets: %s\n' % error)
        return 1
    what = []
    if args.soft_targets:
        what.append('%s (%d images x 2 sides x %d classes)'
                    % (args.soft_targets, soft.shape[0], soft.shape[2]))
    if args.roi_targets:
        what.append('%s (%d images x 2 sides x %d proposals x %d features)'
                    % (args.roi_targets, soft.shape[0], cfg['num_proposals'], cfg['fc_size']))
    print('wrote %s in %.0f s' % (' and '.join(what), time.time() - start))
    return 0


if __name__ == '__main__':
    # Caffe's set-up log of every net it builds in this process (glog INFO) would bury the
    # output; errors still show. GLOG_minloglevel=0 brings it back.
    os.environ.setdefault('GLOG_minloglevel', '2')
    sys.exit(main())
