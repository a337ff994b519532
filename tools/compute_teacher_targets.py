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
import os
import sys
import tempfile
import time


OUTPUTS = [('--soft-targets', 'the .npy of stage 2\'s soft targets to write'),
           ('--roi-targets', 'the .npy of stage 1\'s RoI features to write')]


def main(argv=None):
    from mlic import inference
    parser = inference.targets_parser(__doc__, 'stage2_teacher_deploy.prototxt',
                                      'the KD nets\' train datalist', OUTPUTS)
    args, outputs = inference.targets_arguments(parser, argv, OUTPUTS)

    from mlic import surgery
    inference.use_device(args.gpu)
    start = time.time()
    try:
        cfg, train = inference.targets_inputs(
            args, 'stage2_teacher', 'the KD nets\' teacher (kd/stage2_teacher_deploy.prototxt)')
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
