"""Object proposals with scores for every image of a datalist (docs/original-method.md), cached
per image.

Methods (OpenCV contrib, no downloaded model needed):
  'edgeboxes'  EdgeBoxes (cv2.ximgproc) scored by EdgeBoxes itself. Its edge map is the colour
               gradient magnitude, thinned along the gradient direction; when the user gives a
               structured-edge model file (edge_model) the structured edge detector is used
               instead, as in the original EdgeBoxes.
  'selective_search'  cv2.ximgproc.segmentation, score 1 - rank / count (rank 0 first).

Proposals are computed on the image scaled so that its longer side is at most max_side, cached
in those pixels (one .npz per image, keyed by the image file's content and the settings, written
atomically: an interrupted run resumes where it stopped, and an image rewritten at the same path,
as a regenerated dataset is, gets new proposals), then mapped to the datalist's resized
new_width x new_height pixels, 0-based inclusive corners, clipped inside.
"""
import ctypes
import hashlib
import json
import multiprocessing
import os
import shutil
import sys
import time

import cv2
import numpy as np

from mlic.converters import classes_path, read_classes
from mlic.datalist import Datalist, format_line, pad_proposals

METHODS = ('edgeboxes', 'selective_search')


def proposal_settings(method='edgeboxes', max_boxes=500, max_side=512, edge_model=None,
                      alpha=0.65, beta=0.75, min_score=0.01, min_box_fraction=0.005,
                      mode='fast'):
    """Everything that changes a method's output; it is part of the cache key."""
    if method not in METHODS:
        raise ValueError('unknown proposal method %r (choose from %s)'
                         % (method, ', '.join(METHODS)))
    if max_boxes < 1:
        raise ValueError('max_boxes must be >= 1, got %d' % max_boxes)
    if max_side < 16:
        raise ValueError('max_side must be >= 16, got %d' % max_side)
    settings = {'method': method, 'max_boxes': int(max_boxes), 'max_side': int(max_side)}
    if method == 'edgeboxes':
        if edge_model is not None and not os.path.isfile(edge_model):
            raise ValueError('edge model file %s does not exist' % edge_model)
        settings.update(alpha=float(alpha), beta=float(beta), min_score=float(min_score),
                        min_box_fraction=float(min_box_fraction),
                        edge_model=os.path.abspath(edge_model) if edge_model else None)
    else:
        if mode not in ('fast', 'quality'):
            raise ValueError("selective search mode must be 'fast' or 'quality', got %r" % mode)
        settings['mode'] = mode
    return settings


# ---------------------------------------------------------------- the methods
def gradient_edges(image):
    """(edges in [0, 1], orientation in [0, pi)) of a BGR uint8 image without any learnt model:
    per pixel the strongest channel's Sobel gradient, its direction (the edge normal, as the
    structured edge detector's orientation), and non-maximum suppression along that normal so
    that EdgeBoxes gets thin edges."""
    smooth = cv2.GaussianBlur(image.astype(np.float32) / 255.0, (0, 0), 1.0)
    gx = cv2.Sobel(smooth, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(smooth, cv2.CV_32F, 0, 1, ksize=3)
    magnitude = gx * gx + gy * gy
    strongest = magnitude.argmax(axis=2)[..., None]
    gx = np.take_along_axis(gx, strongest, 2)[..., 0]
    gy = np.take_along_axis(gy, strongest, 2)[..., 0]
    magnitude = np.sqrt(np.take_along_axis(magnitude, strongest, 2)[..., 0])
    orientation = np.mod(np.arctan2(gy, gx), np.pi).astype(np.float32)
    h, w = magnitude.shape
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    dx, dy = np.cos(orientation), np.sin(orientation)
    keep = np.ones_like(magnitude, bool)
    for sign in (1, -1):
        neighbour = cv2.remap(magnitude, xs + sign * dx, ys + sign * dy, cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REPLICATE)
        keep &= magnitude >= neighbour
    edges = np.where(keep, magnitude, 0)
    edges = np.clip(edges / max(float(edges.max()), 1e-6), 0, 1).astype(np.float32)
    return edges, orientation


_structured_edge_detectors = {}


def structured_edges(image, model_path):
    """Edges and orientation from OpenCV's structured edge detector with a user's model."""
    if model_path not in _structured_edge_detectors:
        _structured_edge_detectors[model_path] = \
            cv2.ximgproc.createStructuredEdgeDetection(model_path)
    detector = _structured_edge_detectors[model_path]
    rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0
    edges = detector.detectEdges(rgb)
    orientation = detector.computeOrientation(edges)
    return detector.edgesNms(edges, orientation, 2, 0, 1, True), orientation


def _xywh_to_corners(rects, width, height):
    rects = np.asarray(rects, dtype=np.float32).reshape(-1, 4)
    x1 = np.clip(rects[:, 0], 0, width - 1)
    y1 = np.clip(rects[:, 1], 0, height - 1)
    x2 = np.clip(rects[:, 0] + rects[:, 2] - 1, x1, width - 1)
    y2 = np.clip(rects[:, 1] + rects[:, 3] - 1, y1, height - 1)
    return np.stack([x1, y1, x2, y2], 1)


def edge_boxes(image, settings):
    if settings['edge_model']:
        edges, orientation = structured_edges(image, settings['edge_model'])
    else:
        edges, orientation = gradient_edges(image)
    # EdgeBoxes' own minimum box area is 1000 pixels whatever the image size (0.5% of a
    # 500 x 400 image); a fraction of the image keeps small objects of small images.
    min_area = settings['min_box_fraction'] * image.shape[0] * image.shape[1]
    detector = cv2.ximgproc.createEdgeBoxes(alpha=settings['alpha'], beta=settings['beta'],
                                            minScore=settings['min_score'],
                                            maxBoxes=settings['max_boxes'],
                                            minBoxArea=float(min_area))
    rects, scores = detector.getBoundingBoxes(edges, orientation)
    if len(rects) == 0:
        return np.zeros((0, 5), np.float32)
    corners = _xywh_to_corners(rects, image.shape[1], image.shape[0])
    return np.hstack([corners, np.asarray(scores, np.float32).reshape(-1, 1)])


_libc = None


def _seed_c_rand():
    """OpenCV's selective search ranks regions with C's rand(): seed it so that a run is
    reproducible (glibc; elsewhere the ranks may vary between runs)."""
    global _libc
    try:
        if _libc is None:
            _libc = ctypes.CDLL(None)
        _libc.srand(0)
    except (OSError, AttributeError):
        pass


def selective_search(image, settings):
    _seed_c_rand()
    search = cv2.ximgproc.segmentation.createSelectiveSearchSegmentation()
    search.setBaseImage(image)
    if settings['mode'] == 'fast':
        search.switchToSelectiveSearchFast()
    else:
        search.switchToSelectiveSearchQuality()
    rects = search.process()
    if len(rects) == 0:
        return np.zeros((0, 5), np.float32)
    count = len(rects)
    rects = rects[:settings['max_boxes']]
    scores = 1.0 - np.arange(len(rects), dtype=np.float32) / count
    corners = _xywh_to_corners(rects, image.shape[1], image.shape[0])
    return np.hstack([corners, scores[:, None]])


def compute_image(image, settings):
    """(K, 5) proposals x1 y1 x2 y2 s of a BGR image in its own pixels, best first, and
    the caller scales the image to max_side first."""
    if settings['method'] == 'edgeboxes':
        return edge_boxes(image, settings)
    return selective_search(image, settings)


# ---------------------------------------------------------------- cache
def image_digest(image_file):
    """SHA-1 of the file's bytes, or None when it cannot be read (the worker then says so)."""
    digest = hashlib.sha1()
    try:
        with open(image_file, 'rb') as f:
            for block in iter(lambda: f.read(1 << 20), b''):
                digest.update(block)
    except OSError:
        return None
    return digest.hexdigest()


def cache_file(cache_dir, image_file, settings):
    # By content, not by path: a path says nothing about what is in the file now.
    content = image_digest(image_file)
    key = json.dumps({'image': content or os.path.abspath(image_file), 'settings': settings},
                     sort_keys=True)
    digest = hashlib.sha1(key.encode('utf-8')).hexdigest()
    return os.path.join(cache_dir, settings['method'], digest[:2], digest + '.npz')


def _compute_to_cache(task):
    """Worker: computes one image into its cache file unless it is there already.
    Returns (index, 'cached' | 'computed' | error message)."""
    index, image_file, settings, path = task
    if os.path.isfile(path):
        return index, 'cached'
    image = cv2.imread(image_file, cv2.IMREAD_COLOR)
    if image is None:
        return index, 'cannot read image %s' % os.path.abspath(image_file)
    height, width = image.shape[:2]
    scale = min(1.0, settings['max_side'] / float(max(height, width)))
    if scale < 1.0:
        image = cv2.resize(image, (max(1, int(round(width * scale))),
                                   max(1, int(round(height * scale)))),
                           interpolation=cv2.INTER_AREA)
    boxes = compute_image(image, settings)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    partial = '%s.%d.tmp.npz' % (path[:-4], os.getpid())
    np.savez(partial, boxes=boxes.astype(np.float32),
             size=np.array([image.shape[1], image.shape[0]], np.int64))
    os.replace(partial, path)
    return index, 'computed'


def load_cached(path):
    """(boxes (K, 5) in the pixels of the image proposals were computed on, (width, height))."""
    try:
        with np.load(path) as data:
            return data['boxes'], tuple(int(v) for v in data['size'])
    except (OSError, ValueError, KeyError) as error:
        raise IOError('proposal cache file %s is unreadable (delete it to recompute): %s'
                      % (path, error))


def to_resized(boxes, size, new_width, new_height):
    """Maps inclusive pixel boxes of an image of size (width, height) to new_width x
    new_height: the pixel span [x1, x2 + 1) scales to [x1 * f, (x2 + 1) * f); the new box is
    the pixels it touches, clipped inside."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 5)
    fx, fy = new_width / float(size[0]), new_height / float(size[1])
    x1 = np.clip(np.floor(boxes[:, 0] * fx), 0, new_width - 1)
    y1 = np.clip(np.floor(boxes[:, 1] * fy), 0, new_height - 1)
    x2 = np.clip(np.ceil((boxes[:, 2] + 1) * fx) - 1, x1, new_width - 1)
    y2 = np.clip(np.ceil((boxes[:, 3] + 1) * fy) - 1, y1, new_height - 1)
    return np.stack([x1, y1, x2, y2, boxes[:, 4]], 1).astype(np.float32)


class Progress(object):
    """A progress bar on stderr: one line redrawn at most 5 times a second on a terminal, a new
    line every tenth of the way in a log file."""

    def __init__(self, total, stream=None, width=30):
        self.total, self.done, self.cached = total, 0, 0
        self.stream = stream if stream is not None else sys.stderr
        self.terminal = hasattr(self.stream, 'isatty') and self.stream.isatty()
        self.width = width
        self.start = self.last = time.time()

    def update(self, cached):
        self.done += 1
        self.cached += int(cached)
        now = time.time()
        if self.terminal:
            due = now - self.last >= 0.2
        else:
            due = self.done * 10 // self.total != (self.done - 1) * 10 // self.total
        if due or self.done == self.total:
            self.last = now
            self.draw(now)

    def draw(self, now):
        fraction = self.done / float(max(self.total, 1))
        filled = int(round(self.width * fraction))
        computed = self.done - self.cached
        rate = computed / max(now - self.start, 1e-6)
        left = (self.total - self.done) / rate if rate > 0 else 0
        self.stream.write('%sproposals [%s%s] %d/%d (%d cached) %.1f img/s, %d s left'
                          % ('\r' if self.terminal else '', '#' * filled,
                             '.' * (self.width - filled), self.done, self.total, self.cached,
                             rate, left))
        if self.done == self.total or not self.terminal:
            self.stream.write('\n')
        self.stream.flush()


def _init_worker():
    cv2.setNumThreads(1)


def compute_all(image_files, settings, cache_dir, workers=1, progress=True, describe=None,
                advise=None):
    """Fills the cache for every image (in parallel with `workers` processes). Returns the
    cache file of each image and the number actually computed. describe(i) names image i in
    error messages; advise(i), when given, adds a hint to an image that cannot be read."""
    describe = describe or (lambda i: image_files[i])
    paths = [cache_file(cache_dir, f, settings) for f in image_files]
    tasks = [(i, f, settings, p) for i, (f, p) in enumerate(zip(image_files, paths))]
    bar = Progress(len(tasks)) if progress and tasks else None
    computed = 0
    # Spawned, not forked: the pipeline computes proposals while another of its threads runs
    # OpenCV and prints (the pretraining), and a fork would copy that thread's held locks into
    # the workers, where nothing would ever release them.
    pool = (multiprocessing.get_context('spawn').Pool(workers, _init_worker) if workers > 1
            else None)
    try:
        results = pool.imap_unordered(_compute_to_cache, tasks, chunksize=4) if pool \
            else map(_compute_to_cache, tasks)
        for index, status in results:
            if status not in ('cached', 'computed'):
                hint = advise(index) if advise else ''
                raise IOError('%s: %s%s' % (describe(index), status, hint and '; ' + hint))
            computed += status == 'computed'
            if bar:
                bar.update(status == 'cached')
    finally:
        if pool:
            pool.terminate()
            pool.join()
    return paths, computed


# ---------------------------------------------------------------- datalists
def read_label_lines(datalist_path, num_classes):
    """[(line number, image path, labels)] of a datalist whose lines hold C labels and maybe
    proposals, which are ignored: they are recomputed. Bad lines raise DatalistError."""
    entries = Datalist(datalist_path, num_classes, labels_only=True)
    return [(e.line_number, e.image_path, [float(v) for v in e.labels]) for e in entries]


def complete_datalist(datalist_path, out_path, settings, cache_dir, new_width=672,
                      new_height=672, bbox_num=500, root_folder='', workers=1, pad=False,
                      num_classes=None, progress=True):
    """Reads a labels-only datalist (class count from `<datalist>.classes` unless given),
    computes the proposals of every image (cache_dir makes reruns free) and writes out_path
    with each image's best bbox_num proposals in new_width x new_height pixels, padded to
    exactly bbox_num rows only when `pad` (the data layer pads by itself). Copies the class
    file beside it. Returns a dict of counts."""
    if new_width < 1 or new_height < 1 or bbox_num < 1:
        raise ValueError('new_width, new_height and bbox_num must be >= 1')
    classes = None
    if num_classes is None:
        if not os.path.isfile(classes_path(datalist_path)):
            raise ValueError('%s: no class file %s beside it; give the number of classes'
                             % (datalist_path, classes_path(datalist_path)))
        classes = read_classes(classes_path(datalist_path))
        num_classes = len(classes)
    items = read_label_lines(datalist_path, num_classes)
    files = [os.path.join(root_folder, image) for _, image, _ in items]
    describe = lambda i: '%s line %d' % (datalist_path, items[i][0])

    def advise(i):
        if os.path.isabs(items[i][1]):
            return ''
        return ('the datalist\'s image paths are relative to the root folder, here %s: give '
                'the folder the images are in with --root-folder'
                % os.path.abspath(root_folder or os.curdir))
    paths, computed = compute_all(files, settings, cache_dir, workers, progress, describe,
                                  advise)
    counts = {'images': len(items), 'computed': computed, 'fewer_than_bbox_num': 0}
    parent = os.path.dirname(os.path.abspath(out_path))
    os.makedirs(parent, exist_ok=True)
    with open(out_path, 'w') as f:
        for (_, image, labels), path in zip(items, paths):
            boxes, size = load_cached(path)
            boxes = to_resized(boxes, size, new_width, new_height)
            order = np.argsort(-boxes[:, 4], kind='stable')[:bbox_num]
            boxes = boxes[order]
            counts['fewer_than_bbox_num'] += len(boxes) < bbox_num
            if pad:
                boxes, _ = pad_proposals(boxes, bbox_num)
            f.write(format_line(image, labels, boxes) + '\n')
    if classes is not None and os.path.abspath(out_path) != os.path.abspath(datalist_path):
        shutil.copyfile(classes_path(datalist_path), classes_path(out_path))
    return counts
