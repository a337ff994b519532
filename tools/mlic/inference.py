"""Deploy nets over a datalist with pycaffe: the teacher's image-level and per-proposal scores,
the student's label probabilities. Images are prepared by mlic.preprocess, as the data layer's
TEST phase prepares them (resize to the datalist's size, the config's BGR mean subtracted; the
deploy nets apply the config's input_scale themselves), in batches."""
import json
import os

import numpy as np

from mlic import preprocess


class TestSet(object):
    """The images, labels (num_images, C) and padded proposals (num_images, B, 5) of a datalist."""

    def __init__(self, path, num_classes, bbox_num, root_folder=''):
        from mlic.datalist import Datalist
        datalist = Datalist(path, num_classes, bbox_num=bbox_num)
        self.path = path
        self.images = [os.path.join(root_folder, p) for p in datalist.image_paths]
        self.labels = datalist.labels
        self.proposals = datalist.padded_proposals(bbox_num)

    def subset(self, part):
        """The images `part` (a slice) of this set, as a TestSet of the same list."""
        subset = object.__new__(TestSet)
        subset.path = self.path
        subset.images, subset.labels, subset.proposals = (
            self.images[part], self.labels[part], self.proposals[part])
        return subset


def read_datalist(path, num_classes, bbox_num, root_folder=''):
    return TestSet(path, num_classes, bbox_num, root_folder)


def load_images(paths, cfg, mirror=False):
    """(N, 3, S, S) float32 blob of a deploy net's input (S: cfg['image_size']), as the data
    layer makes it at TEST time (mirror: as it mirrors in TRAIN)."""
    size = cfg['image_size']
    return preprocess.load_blob(paths, size, size, preprocess.Pixels.for_deploy(cfg), mirror,
                                cfg.get('max_pixels', preprocess.DEFAULT_MAX_PIXELS))


def _batches(count, batch_size):
    for start in range(0, count, batch_size):
        yield slice(start, min(count, start + batch_size))


def use_device(gpu=None):
    """pycaffe on the CPU (gpu None) or on GPU `gpu` (a CUDA build of Caffe)."""
    import caffe
    if gpu is None:
        caffe.set_mode_cpu()
    else:
        caffe.set_device(gpu)
        caffe.set_mode_gpu()


def open_net(deploy, weights):
    import caffe
    import caffe_layers  # noqa: F401  (the plugin's layers)
    if not os.path.isfile(weights):
        raise IOError('weights file %s does not exist' % weights)
    return caffe.Net(deploy, caffe.TEST, weights=weights)


def predict_student(deploy, weights, test, cfg, batch_size=32):
    """(num_images, C) label probabilities of the student deploy net."""
    net = open_net(deploy, weights)
    scores = np.empty((len(test.images), cfg['num_classes']), dtype=np.float32)
    for part in _batches(len(test.images), batch_size):
        data = load_images(test.images[part], cfg)
        net.blobs['data'].reshape(*data.shape)
        net.blobs['data'].data[...] = data
        out = net.forward()
        scores[part] = out['score'].reshape(len(data), -1)
    return scores


def predict_teacher(deploy, weights, test, cfg, batch_size=8, mirror=False, net=None,
                    features=None):
    """The WSDDN deploy net: {'scores': (num_images, C) image-level scores,
    'boxes': list of (B_i, 4) real proposals, 'proposal_scores': list of (B_i, C)}.
    mirror: of the mirrored images and proposals, as the data layer mirrors them in TRAIN.
    net: an open net instead of deploy and weights.
    features: a (num_images, B, D) array to fill with the net's fc7 (fc_wsd_7 in the KD nets'
    names) of every proposal, rows of padding proposals zero."""
    from mlic.datalist import clip_proposals
    if net is None:
        net = open_net(deploy, weights)
    size, bbox_num, classes = cfg['image_size'], cfg['num_proposals'], cfg['num_classes']
    count = len(test.images)
    scores = np.empty((count, classes), dtype=np.float32)
    boxes, proposal_scores = [], []
    for part in _batches(count, batch_size):
        data = load_images(test.images[part], cfg, mirror)
        proposals = test.proposals[part].copy()
        for p in proposals:  # as the data layer reads the datalist
            clip_proposals(p, size, size)
        if mirror:
            proposals = np.array([preprocess.transform_proposals(p, 1, True, size)
                                  for p in proposals])
        net.blobs['imagedata'].reshape(*data.shape)
        net.blobs['imagedata'].data[...] = data
        net.blobs['proposaldata'].reshape(len(data), 5 * bbox_num, 1, 1)
        net.blobs['proposaldata'].data[...] = proposals.reshape(len(data), -1, 1, 1)
        out = net.forward(blobs=['proposal_class_score'])  # consumed, so not an output
        scores[part] = out['image_level_score'].reshape(len(data), classes)
        per_region = out['proposal_class_score'].reshape(len(data), bbox_num, classes)
        if features is not None:
            fc7 = net.blobs['fc_wsd_7' if 'fc_wsd_7' in net.blobs else 'fc7'].data
            fc7 = fc7.reshape(len(data), bbox_num, -1) * (proposals[:, :, :1] >= 0)
            features[part] = fc7
        for i in range(len(data)):
            real = proposals[i, :, 0] >= 0
            boxes.append(proposals[i, real, :4].copy())
            proposal_scores.append(per_region[i, real].copy())
    return {'scores': scores, 'boxes': boxes, 'proposal_scores': proposal_scores}


def _shared_array(shape):
    """A float32 array in anonymous shared memory: what forked workers write, the parent sees."""
    import mmap
    size = int(np.prod(shape)) * 4
    return np.frombuffer(mmap.mmap(-1, max(size, 1)), dtype=np.float32,
                         count=int(np.prod(shape))).reshape(shape)


def _fill_teacher_targets(deploy, weights, train, cfg, part, soft, features):
    """Images `part` (a slice) of train: their rows of soft and features, both sides."""
    net = open_net(deploy, weights)
    subset = train.subset(part)
    for side in (0, 1):
        soft[part, side] = predict_teacher(
            None, None, subset, cfg, mirror=bool(side), net=net,
            features=None if features is None else features[part, side])['scores']


def teacher_targets(deploy, weights, train, cfg, soft_path=None, roi_path=None, roi=False,
                    workers=1):
    """The frozen teacher's outputs the KD stages learn from, for every image of `train` (a
    TestSet of the train list) as read and mirrored, by the stage2_teacher_deploy net (the
    teacher with stage 2's temperature, the KD nets' layer names). Returns (soft, roi):
      soft  stage 2's soft targets, (num_images, 2, C) image-level scores; saved to soft_path
      roi   stage 1's targets, (num_images, 2, B, D) fc_wsd_7 rows of every proposal (the
            temperature acts after fc7), padding rows zero; computed with roi_path (written
            as it is filled, a memory-mapped .npy) or roi=True, else None.
    workers: forked processes (CPU only), each over its share of the images with its own net:
    the pass runs alone between the teacher and the KD stages, so one core would idle."""
    count = len(train.images)
    features = None
    if roi_path or roi:
        shape = (count, 2, cfg['num_proposals'], cfg['fc_size'])
        features = (np.lib.format.open_memmap(roi_path, mode='w+', dtype=np.float32,
                                              shape=shape) if roi_path
                    else _shared_array(shape))
    soft = _shared_array((count, 2, cfg['num_classes']))
    _run_workers(lambda part: _fill_teacher_targets(deploy, weights, train, cfg, part, soft,
                                                    features),
                 count, workers, 'teacher_targets of %s' % train.path)
    soft = np.array(soft)
    if soft_path:
        np.save(soft_path, soft)
    if roi_path:
        features.flush()
    return soft, features


def _run_workers(fill, count, workers, what):
    """fill(part) over `workers` forked processes (one: in this process), each with its share
    (a slice) of `count` images; raises when a worker failed."""
    import multiprocessing
    workers = max(1, min(int(workers), count))
    parts = [slice(k * count // workers, (k + 1) * count // workers) for k in range(workers)]
    if workers == 1:
        fill(parts[0])
        return
    context = multiprocessing.get_context('fork')
    processes = [context.Process(target=fill, args=(part,)) for part in parts]
    for process in processes:
        process.start()
    for process in processes:
        process.join()
    failed = [(part, process.exitcode) for part, process in zip(parts, processes)
              if process.exitcode != 0]
    if failed:
        part, code = failed[0]
        raise RuntimeError('%s: the worker for images %d..%d failed (exit code %s; its error '
                           'is above)' % (what, part.start + 1, part.stop, code))


def baseline_maps(net, data, conv_blob):
    """(attention maps (N, 1, H, W), last conv features (N, C, H, W)) of the
    baseline_teacher_deploy net `net` for the deploy input `data` (N, 3, S, S)."""
    net.blobs['imagedata'].reshape(*data.shape)
    net.blobs['imagedata'].data[...] = data
    out = net.forward(blobs=[conv_blob])
    return out['attention_teacher_normalized'], out[conv_blob]


def baseline_targets(deploy, weights, train, cfg, conv_blob, attention_path=None,
                     hint_path=None, workers=1, batch_size=8):
    """The frozen teacher's maps the classic baselines learn from, for every image of `train`
    (a TestSet of the train list) as read and mirrored, by the baseline_teacher_deploy net (the
    same layers as in the baselines' train nets). Writes, as memory-mapped .npy files filled in
    place:
      attention_path  attention transfer's (num_images, 2, 1, H, W) L2-normalised maps
      hint_path       FitNets' (num_images, 2, C, H, W) last conv features (blob conv_blob)
    workers: forked processes (CPU only), each over its share of the images with its own
    net."""
    count = len(train.images)
    # The maps' shapes from the net as set up (nothing computed here before the workers fork).
    net = open_net(deploy, weights)
    shapes = [net.blobs[blob].data.shape[1:]
              for blob in ('attention_teacher_normalized', conv_blob)]
    del net  # each worker opens its own
    outputs = {}
    for path, shape in zip((attention_path, hint_path), shapes):
        if path:
            outputs[path] = np.lib.format.open_memmap(
                path, mode='w+', dtype=np.float32, shape=(count, 2) + tuple(shape))

    def fill(part):
        net = open_net(deploy, weights)
        for batch in _batches(part.stop - part.start, batch_size):
            rows = slice(part.start + batch.start, part.start + batch.stop)
            for side in (0, 1):
                data = load_images(train.images[rows], cfg, mirror=bool(side))
                maps = baseline_maps(net, data, conv_blob)
                for path, values in zip((attention_path, hint_path), maps):
                    if path:
                        outputs[path][rows, side] = values
    _run_workers(fill, count, workers, 'baseline_targets of %s' % train.path)
    for array in outputs.values():
        array.flush()


def read_ground_truth(boxes_json, image_paths, root_folder='', new_size=None):
    """Per image of image_paths, the (class_index, x1, y1, x2, y2, difficult) tuples of a
    ground-truth box file (converters.write_boxes_json), whose image paths are as in the
    datalist (under root_folder). With new_size (width, height) the boxes are mapped from the
    original image's pixels to the resized image's, as the proposals are."""
    from mlic.proposals import to_resized
    with open(boxes_json) as f:
        content = json.load(f)
    by_image = {}
    for item in content['images']:
        difficult = item.get('difficult') or [0] * len(item['boxes'])
        boxes = np.asarray(item['boxes'], dtype=np.float64).reshape(-1, 4)
        if new_size is not None and len(boxes):
            if not item.get('width') or not item.get('height'):
                raise ValueError('%s: image %s has no width and height, needed to map its boxes '
                                 'to the %dx%d resized image' % ((boxes_json, item['image'])
                                                                  + tuple(new_size)))
            rows = np.hstack([boxes, np.zeros((len(boxes), 1))])
            boxes = to_resized(rows, (item['width'], item['height']), *new_size)[:, :4]
        by_image[os.path.abspath(os.path.join(root_folder, item['image']))] = [
            (int(k), *map(float, box), int(d))
            for k, box, d in zip(item['classes'], boxes, difficult)]
    missing = [p for p in image_paths if os.path.abspath(p) not in by_image]
    if missing:
        raise ValueError('%s has no boxes for %d images, e.g. %s'
                         % (boxes_json, len(missing), missing[0]))
    return [by_image[os.path.abspath(p)] for p in image_paths]


# ---- the command lines of the teacher-output tools (compute_teacher_targets.py,
# compute_baseline_targets.py): the same options and checks, their own outputs and net.

def targets_parser(doc, net_help, datalist_help, outputs):
    """The argparse parser of a teacher-output tool; outputs: [(option, help)] of its .npy."""
    import argparse
    parser = argparse.ArgumentParser(description=doc,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--net', required=True, help=net_help)
    parser.add_argument('--teacher', required=True, help='the WSDDN teacher .caffemodel')
    parser.add_argument('--datalist', required=True, help=datalist_help)
    parser.add_argument('--root-folder', default='', help='prefix of the datalist image paths')
    for option, help_text in outputs:
        parser.add_argument(option, help=help_text)
    parser.add_argument('--gpu', type=int, help='GPU id (default: CPU)')
    parser.add_argument('--max-pixels', type=int, help='images with more pixels are refused, as '
                        'the data layer\'s max_pixels (default: its default; 0: no limit)')
    parser.add_argument('--workers', type=int, default=1,
                        help='processes, each over its share of the images (CPU only; '
                             'default 1)')
    return parser


def targets_arguments(parser, argv, outputs):
    """(args, the output paths given) of a teacher-output tool, its mistakes refused through
    parser.error; outputs as targets_parser's."""
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error('--workers must be at least 1')
    if args.workers > 1 and args.gpu is not None:
        parser.error('--workers runs forked CPU processes; with --gpu leave it at 1')
    options = [option for option, _ in outputs]
    paths = [getattr(args, option[2:].replace('-', '_')) for option in options]
    if not any(paths):
        parser.error('name what to write: %s or both' % ', '.join(options))
    for path in paths:
        if path and not path.endswith('.npy'):
            parser.error('%s: the outputs are .npy files; name them so' % path)
    return args, [path for path in paths if path]


def targets_inputs(args, kind, net_name):
    """(cfg, train) of a teacher-output tool: the deploy net described (refused unless its
    kind is `kind`; net_name names the right one), the datalist read, the output folders made."""
    from mlic import deploy
    cfg = deploy.describe(args.net)
    if args.max_pixels is not None:  # load_images reads it
        cfg['max_pixels'] = args.max_pixels
    if cfg['kind'] != kind:
        raise ValueError('%s is a %s deploy net, not %s' % (args.net, cfg['kind'], net_name))
    train = read_datalist(args.datalist, cfg['num_classes'], cfg['num_proposals'],
                          args.root_folder)
    return cfg, train
