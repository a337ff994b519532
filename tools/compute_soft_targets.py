#!/usr/bin/env python3
"""Stage 2's soft targets computed once: the frozen teacher's image-level scores of every image
of the train datalist, as read and as mirrored, for a stage-2 net that reads them instead of
running the teacher on every batch (netgen's soft_targets; the same numbers).

  tools/compute_soft_targets.py --net prototxt/kd/stage2_teacher_deploy.prototxt \\
      --teacher snapshots/wsddn_iter_40000.caffemodel --datalist datalists/coco/train.txt \\
      --out datalists/coco/soft_targets.npy
  tools/generate_nets.py --out nets --soft-targets datalists/coco/soft_targets.npy ...

--net is the stage-2 teacher deploy net written beside the KD nets (it has stage 2's
temperature); --teacher the trained WSDDN .caffemodel (its layers are renamed as in stage 2).
Writes a (lines, 2, classes) float32 .npy, rows in datalist order, [:, 0] as read, [:, 1]
mirrored. The datalist must be the one the stage-2 net trains on, with the same resize.
"""
import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--net', required=True, help='stage2_teacher_deploy.prototxt')
    parser.add_argument('--teacher', required=True, help='the WSDDN teacher .caffemodel')
    parser.add_argument('--datalist', required=True, help='the stage-2 train datalist')
    parser.add_argument('--root-folder', default='', help='prefix of the datalist image paths')
    parser.add_argument('--out', required=True, help='the .npy to write')
    parser.add_argument('--gpu', type=int, help='GPU id (default: CPU)')
    args = parser.parse_args(argv)

    from mlic import deploy, inference, surgery
    inference.use_device(args.gpu)
    start = time.time()
    try:
        cfg = deploy.describe(args.net)
        if cfg['kind'] != 'stage2_teacher':
            raise ValueError('%s is a %s deploy net, not stage 2\'s teacher '
                             '(kd/stage2_teacher_deploy.prototxt)' % (args.net, cfg['kind']))
        train = inference.read_datalist(args.datalist, cfg['num_classes'],
                                        cfg['num_proposals'], args.root_folder)
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with tempfile.TemporaryDirectory(dir=os.path.dirname(os.path.abspath(args.out))) as tmp:
            weights = os.path.join(tmp, 'stage2_teacher.caffemodel')
            surgery.stage2_init(None, args.teacher, args.net, weights)
            targets = inference.soft_targets(args.net, weights, train, cfg, args.out)
    except (ValueError, IOError, surgery.SurgeryError) as error:
        sys.stderr.write('compute_soft_targets: %s\n' % error)
        return 1
    print('wrote %s: %d images x 2 sides x %d classes in %.0f s'
          % (args.out, targets.shape[0], targets.shape[2], time.time() - start))
    return 0


if __name__ == '__main__':
    sys.exit(main())
