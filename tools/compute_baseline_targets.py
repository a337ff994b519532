#!/usr/bin/env -S sh -c 'exec "$(dirname "$0")/../.venv/bin/python" "$0" "$@"'
"""The frozen teacher's maps that the classic baselines learn from, computed once, for baseline
nets that read them instead of running the teacher on every batch (netgen's attention_targets
and hint_targets; the same numbers): for every image of the train datalist, as read and as
mirrored,

  --attention-targets  attention transfer's L2-normalised attention map of the teacher's last
                       conv layer: a (lines, 2, 1, H, W) float32 .npy
  --hint-targets       FitNets' hint, the teacher's last conv features: a
                       (lines, 2, C, H, W) float32 .npy (4 bytes a value: plan the disk)

  tools/compute_baseline_targets.py --net nets/baselines/teacher_deploy.prototxt \\
      --teacher snapshots/wsddn_iter_40000.caffemodel --datalist datalists/coco/train.txt \\
      --attention-targets datalists/coco/attention_targets.npy
  tools/generate_nets.py --out nets --attention-targets datalists/coco/attention_targets.npy ...

--net is the baselines' teacher deploy net written beside the baseline nets (the train net
beside it gives the datalist's sizes and the mean); --teacher the trained WSDDN .caffemodel.
Rows are in datalist order, [:, 0] as read, [:, 1] mirrored. The datalist must be the one the
baseline nets train on, with the same resize.
"""
import os
import sys
import tempfile
import time


OUTPUTS = [('--attention-targets', 'the .npy of the attention maps to write'),
           ('--hint-targets', 'the .npy of the last conv features to write')]


def main(argv=None):
    from mlic import inference
    parser = inference.targets_parser(__doc__, 'baselines/teacher_deploy.prototxt',
                                      'the baseline nets\' train datalist', OUTPUTS)
    args, outputs = inference.targets_arguments(parser, argv, OUTPUTS)

    from mlic import netgen, surgery
    inference.use_device(args.gpu)
    start = time.time()
    try:
        cfg, train = inference.targets_inputs(
            args, 'baseline_teacher',
            'the baselines\' teacher (baselines/teacher_deploy.prototxt)')
        conv_blob = [layer.name for layer in surgery.read_net(args.net).layer
                     if layer.type == 'Convolution' and netgen.teacher_layer_name(layer.name)
                     != layer.name][-1]
        for path in outputs:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        folder = os.path.dirname(os.path.abspath(outputs[0]))
        with tempfile.TemporaryDirectory(dir=folder) as tmp:
            weights = os.path.join(tmp, 'baseline_teacher.caffemodel')
            surgery.baseline_init(args.teacher, args.net, weights)
            # Written under temporary names and renamed when complete: an interrupted run
            # leaves no file that looks usable.
            partial = {path: os.path.join(tmp, os.path.basename(path)) for path in outputs}
            inference.baseline_targets(
                args.net, weights, train, cfg, conv_blob,
                attention_path=partial.get(args.attention_targets),
                hint_path=partial.get(args.hint_targets), workers=args.workers)
            for path in outputs:
                os.replace(partial[path], path)
    except (IOError, OSError, ValueError, RuntimeError, surgery.SurgeryError) as e:
        sys.stderr.write('compute_baseline_targets.py: error: %s\n' % e)
        return 1
    for path in outputs:
        import numpy as np
        shape = np.load(path, mmap_mode='r').shape
        print('wrote %s: %s float32 (%.1f MB)' % (path, ' x '.join(map(str, shape)),
                                                  os.path.getsize(path) / 1e6))
    print('%d images, both sides, in %.1f s' % (len(train.images), time.time() - start))
    return 0


if __name__ == '__main__':
    # Caffe's set-up log of every net it builds in this process (glog INFO) would bury the
    # output; errors still show. GLOG_minloglevel=0 brings it back.
    os.environ.setdefault('GLOG_minloglevel', '2')
    sys.exit(main())
