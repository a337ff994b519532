#!/usr/bin/env -S sh -c 'exec "$(dirname "$0")/../.venv/bin/python" "$0" "$@"'
"""Top labels of images with a trained deploy net (pycaffe); for the WSDDN teacher also the best
box of each of those labels.

  tools/predict.py --net prototxt/kd/student_deploy.prototxt --weights S.caffemodel \\
      --classes datalists/coco/classes.txt photo1.jpg photo2.jpg
  tools/predict.py --net prototxt/wsddn/deploy.prototxt --weights T.caffemodel \\
      --classes datalists/coco/classes.txt --datalist datalists/coco/test.txt [image ...]

The teacher needs each image's proposals, so its images come from a datalist (all of it, or the
ones named). Boxes are printed in the pixels of the original image.
"""
import argparse
import os
import sys

import numpy as np


def top_labels(scores, k):
    order = np.argsort(-scores, kind='stable')[:k]
    return [(int(c), float(scores[c])) for c in order]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--net', required=True, help='deploy prototxt (teacher or student)')
    parser.add_argument('--weights', required=True, help='.caffemodel')
    parser.add_argument('--classes', help='class names, one per line (default: class indices)')
    parser.add_argument('--top', type=int, default=3, help='labels per image (default 3)')
    parser.add_argument('--datalist', help='teacher: the datalist holding the images\' proposals')
    parser.add_argument('--root-folder', default='')
    parser.add_argument('images', nargs='*')
    args = parser.parse_args(argv)

    import caffe
    import cv2
    from mlic import deploy, inference
    caffe.set_mode_cpu()
    try:
        cfg = deploy.describe(args.net)
        names = None
        if args.classes:
            from mlic.evaluation import read_class_names
            names = read_class_names(args.classes)
            if len(names) != cfg['num_classes']:
                raise ValueError('%s has %d names, the net %d classes'
                                 % (args.classes, len(names), cfg['num_classes']))
        if cfg['kind'] == 'teacher':
            if not args.datalist:
                raise ValueError('the teacher needs proposals: give --datalist')
            test = inference.read_datalist(args.datalist, cfg['num_classes'],
                                           cfg['num_proposals'], args.root_folder)
            if args.images:
                wanted = [os.path.abspath(p) for p in args.images]
                rows = {os.path.abspath(p): i for i, p in enumerate(test.images)}
                missing = [p for p in args.images if os.path.abspath(p) not in rows]
                if missing:
                    raise ValueError('%s is not in %s' % (missing[0], args.datalist))
                keep = [rows[p] for p in wanted]
                test.images = [test.images[i] for i in keep]
                test.proposals = test.proposals[keep]
            out = inference.predict_teacher(args.net, args.weights, test, cfg)
            scores = out['scores']
        else:
            if not args.images:
                raise ValueError('no images given')
            test = inference.TestSet.__new__(inference.TestSet)
            test.images = list(args.images)
            scores = inference.predict_student(args.net, args.weights, test, cfg)
    except (ValueError, IOError) as error:
        sys.stderr.write('predict: %s\n' % error)
        return 1
    for i, path in enumerate(test.images):
        print(path)
        if cfg['kind'] == 'teacher':
            height, width = cv2.imread(path).shape[:2]
            scale = np.array([width, height, width, height], dtype=np.float64) / cfg['image_size']
        for c, score in top_labels(scores[i], args.top):
            line = '  %-20s %.3f' % (names[c] if names else c, score)
            if cfg['kind'] == 'teacher' and len(out['boxes'][i]):
                best = int(np.argmax(out['proposal_scores'][i][:, c]))
                box = out['boxes'][i][best] * scale
                line += '  box %d %d %d %d' % tuple(np.round(box).astype(int))
            print(line)
    return 0


if __name__ == '__main__':
    # Caffe's set-up log of every net it builds in this process (glog INFO) would bury the
    # output; errors still show. GLOG_minloglevel=0 brings it back.
    os.environ.setdefault('GLOG_minloglevel', '2')
    sys.exit(main())
