"""MultiLabelRoIDataLayer: the original's HumanAttData data layer as a pycaffe Python layer.

Tops: `data` (N, 3, H, W) float32 BGR minus mean_value, times scale, and `label_roi`
(N, C + 5B): the C labels then bbox_num proposal rows x1 y1 x2 y2 s (short lists padded with the
padding row), the layout a Slice at C and WsdRoigen expect. With soft_targets one more top,
(N, C): the teacher's precomputed image-level scores of each image, of its mirrored side when it
was mirrored; with roi_targets one more (the last), (N * B, D): the teacher's precomputed RoI
features of each image's proposals, of the side it was given; with map_targets one more (the
last), (N, C, H, W): the teacher's precomputed map of each image (the classic baselines'
attention map or last conv features), of the side it was given. Parameters: the text of
mlic.MultiLabelRoIDataParameter (caffe_layers/proto/mlic_layers.proto) in
python_param.param_str.

Every image is read as 8-bit BGR and resized to new_width x new_height. In TRAIN one scale factor
per batch rescales images and boxes (sizes and coordinates truncated to int, as the original
does) and each image is mirrored with probability 1/2 (x1' = W-1-x2, x2' = W-1-x1); padding rows
are left alone. TEST changes neither scale nor side.

Batches are made ahead by `workers` forked processes into `prefetch` shared-memory slots.
Processes, not threads: the caffe tool and pycaffe hold the GIL while the net computes, so
Python threads would only make progress while the solver waits for data. The order of images,
scales and mirrors is drawn in the main process from one generator seeded by `seed`, so batches
do not depend on which worker made them.
"""
import functools
import logging
import mmap
import multiprocessing
import os
import queue
import signal
import sys
import time
import weakref

import numpy as np
from google.protobuf import text_format

import caffe
import caffe_layers  # noqa: F401  (puts mlic_layers_pb2 on sys.path)
import mlic_layers_pb2
from mlic import distributed
from mlic.datalist import Datalist, DatalistError, pad_proposals
from mlic.preprocess import (ImageError, Pixels, read_image, rescale, scaled_size, to_planes,
                             transform_proposals)

LAYER = 'MultiLabelRoIDataLayer'
# How often a waiting process looks whether its peer is still alive, and how long the layer
# waits for one batch before it gives up (a stuck file system, a worker in an endless loop).
POLL_S = 1.0
BATCH_TIMEOUT_S = 600.0

log = logging.getLogger(__name__)


class DataLayerError(RuntimeError):
    def __init__(self, field, reason):
        super().__init__('%s: %s: %s' % (LAYER, field, reason))


def _embedded_in_caffe():
    """True inside the caffe tool (not pycaffe): there a Python layer's exception ends in an
    abort ("terminate called after ... error_already_set") that never shows its message."""
    try:
        exe = os.path.basename(os.readlink('/proc/self/exe'))
    except OSError:
        return False
    return not exe.startswith('python')


def _say_why(method):
    """Writes the exception's message to stderr before it reaches the caffe tool."""
    @functools.wraps(method)
    def wrapper(self, *args):
        try:
            return method(self, *args)
        except Exception as e:
            if _embedded_in_caffe():
                sys.stderr.write('%s\n' % e if isinstance(e, DataLayerError) else
                                 '%s: %s: %s\n' % (LAYER, type(e).__name__, e))
                sys.stderr.flush()
            raise
    return wrapper


def parse_param(param_str):
    param = mlic_layers_pb2.MultiLabelRoIDataParameter()
    try:
        text_format.Parse(param_str, param)
    except text_format.ParseError as e:
        raise DataLayerError('python_param.param_str', 'cannot parse it as %s: %s'
                             % (param.DESCRIPTOR.full_name, e))
    return param


def check_param(param):
    """Raises DataLayerError for the first unusable field."""
    if not param.source:
        raise DataLayerError('source', 'must name the datalist file')
    for name in ('att_num', 'bbox_num'):
        if not param.HasField(name) or getattr(param, name) == 0:
            raise DataLayerError(name, 'must be set to a positive number')
    if param.new_width == 0 or param.new_height == 0:
        raise DataLayerError('new_width' if param.new_width == 0 else 'new_height',
                             'new_width and new_height must both be positive (every image is '
                             'resized to them and the boxes refer to that size)')
    if param.batch_size == 0:
        raise DataLayerError('batch_size', 'must be positive')
    for scale in param.scale_factors:
        if not np.isfinite(scale) or scale <= 0 or \
                min(scaled_size(param.new_width, scale), scaled_size(param.new_height, scale)) < 1:
            raise DataLayerError('scale_factors', '%g gives no image; factors must be positive'
                                 % scale)
    if len(param.mean_value) not in (0, 1, 3):
        raise DataLayerError('mean_value', 'give 1 value or 3 (B, G, R), not %d'
                             % len(param.mean_value))
    if not np.isfinite(param.scale) or param.scale <= 0:
        raise DataLayerError('scale', 'must be a positive number, got %g' % param.scale)
    if param.workers == 0:
        raise DataLayerError('workers', 'must be at least 1')
    if param.prefetch == 0:
        raise DataLayerError('prefetch', 'must be at least 1')
    if param.soft_targets and param.scale_factors:
        raise DataLayerError('soft_targets', 'the teacher\'s scores are computed at one scale: '
                             'leave scale_factors empty')
    if param.roi_targets and param.scale_factors:
        raise DataLayerError('roi_targets', 'the teacher\'s RoI features are computed at one '
                             'scale: leave scale_factors empty')
    if param.map_targets and param.scale_factors:
        raise DataLayerError('map_targets', 'the teacher\'s maps are computed at one scale: '
                             'leave scale_factors empty')


def extra_tops(param):
    """(top name, loader) of the tops after data and label_roi that param asks for, in top
    order."""
    return [(name, load) for name, field, load in (
        ('soft_target', 'soft_targets', load_soft_targets),
        ('roi_target', 'roi_targets', load_roi_targets),
        ('map_target', 'map_targets', load_map_targets)) if getattr(param, field)]


def target_top_shape(targets, batch):
    """The top's shape for `batch` images of a (lines, 2, ...) targets array: RoI features
    (lines, 2, B, D) give (N * B, D) rows, the rest (N,) + the per-image shape."""
    if targets.ndim == 4:
        return (batch * targets.shape[2], targets.shape[3])
    return (batch,) + tuple(targets.shape[2:])


def load_soft_targets(param, num_images):
    """The (num_images, 2, att_num) float32 array of param.soft_targets, checked."""
    try:
        targets = np.load(param.soft_targets)
    except (OSError, ValueError) as e:
        raise DataLayerError('soft_targets', 'cannot read %s: %s' % (param.soft_targets, e))
    expected = (num_images, 2, param.att_num)
    if targets.shape != expected:
        raise DataLayerError('soft_targets', '%s has shape %s; %s needs %s (one row per line, '
                             'as read and mirrored, att_num scores each)'
                             % (param.soft_targets, targets.shape, param.source, expected))
    targets = targets.astype(np.float32)
    # WSDDN's image score, a sum over proposals, can pass 1 by a rounding step; the teacher
    # inside stage 2 hands it on as it is, and so do we.
    slack = 1e-4
    bad = ~np.isfinite(targets) | (targets < -slack) | (targets > 1 + slack)
    if bad.any():
        line = int(np.argwhere(bad)[0][0])
        raise DataLayerError('soft_targets', '%s: the scores of line %d of %s are not '
                             'probabilities in [0, 1]: %s'
                             % (param.soft_targets, line + 1, param.source, targets[line]))
    return targets


def load_mapped_targets(field, path, source, leading, ndim, layout, what):
    """The float32 array of teacher outputs at `path` (field `field`), memory-mapped (they can
    be large) and checked: its shape starts with `leading` and has `ndim` dimensions, none
    empty; it is float32 (it is read in place); every value is finite (a full read, some lines
    at a time: a NaN would otherwise surface as a NaN loss thousands of iterations later).
    layout (the shape needed, in words) and what (e.g. 'the map of line %d of %s is') word the
    errors."""
    try:
        targets = np.load(path, mmap_mode='r')
    except (OSError, ValueError) as e:
        raise DataLayerError(field, 'cannot read %s: %s' % (path, e))
    if targets.ndim != ndim or targets.shape[:len(leading)] != tuple(leading) or \
            0 in targets.shape:
        raise DataLayerError(field, '%s has shape %s; %s needs %s'
                             % (path, targets.shape, source, layout))
    if targets.dtype != np.float32:
        raise DataLayerError(field, '%s holds %s; it must be float32 (it is read in place)'
                             % (path, targets.dtype))
    line_floats = int(np.prod(targets.shape[1:]))
    lines_at_once = max(1, (1 << 22) // line_floats)
    for start in range(0, len(targets), lines_at_once):
        chunk = targets[start:start + lines_at_once]
        finite = np.isfinite(chunk).reshape(len(chunk), line_floats).all(axis=1)
        if not finite.all():
            line = start + int(np.argmin(finite))
            raise DataLayerError(field, '%s: %s not finite' % (path, what % (line + 1, source)))
    return targets


def load_roi_targets(param, num_images):
    """The (num_images, 2, bbox_num, D) float32 array of param.roi_targets, memory-mapped and
    checked."""
    return load_mapped_targets(
        'roi_targets', param.roi_targets, param.source, (num_images, 2, param.bbox_num), 4,
        '(%d, 2, %d) + (D,) (one row per line, as read and mirrored, bbox_num features of D '
        'values each)' % (num_images, param.bbox_num), 'the features of line %d of %s are')


def load_map_targets(param, num_images):
    """The (num_images, 2, C, H, W) float32 array of param.map_targets (the FitNets hint
    features are large), memory-mapped and checked."""
    return load_mapped_targets(
        'map_targets', param.map_targets, param.source, (num_images, 2), 5,
        '(%d, 2, C, H, W) (one map per line, as read and mirrored)' % num_images,
        'the map of line %d of %s is')


class BatchPlan(object):
    """Which images each batch takes, its scale and which images are mirrored, drawn in order
    from one generator: batches run on across epoch ends and each epoch reshuffles.

    In a training over several GPUs (rank of count solvers) every rank draws the same epoch
    orders and takes its own share of each (mlic.distributed.shard_order), so the ranks train on
    disjoint images that together make the epoch; scales and mirrors come from a generator of
    the rank's own. One solver (count 1) draws everything from one generator, as before."""

    def __init__(self, num_images, batch_size, shuffle, seed, scale_factors, mirror,
                 rank=0, count=1):
        self.num_images = num_images
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.scale_factors = list(scale_factors)
        self.mirror = mirror
        self.rank, self.count = rank, count
        self.rng = np.random.RandomState(seed)
        self.augment_rng = (self.rng if count == 1 else
                            np.random.RandomState(distributed.rank_seed(seed, rank)))
        self.order = self.new_epoch_order()
        self.position = 0

    def skip(self, batches):
        """Draws `batches` plans without making them: the stream then goes on where a run
        that had trained on them would be (a resumed training's start_batch)."""
        for _ in range(batches):
            self.next_batch()

    def new_epoch_order(self):
        order = self.rng.permutation(self.num_images) if self.shuffle else \
            np.arange(self.num_images)
        return distributed.shard_order(order, self.rank, self.count)

    def next_batch(self):
        indices = []
        for _ in range(self.batch_size):
            if self.position == len(self.order):
                self.order = self.new_epoch_order()
                self.position = 0
            indices.append(int(self.order[self.position]))
            self.position += 1
        scale = 1.0
        if self.scale_factors:
            scale = self.scale_factors[self.augment_rng.randint(len(self.scale_factors))]
        mirrors = np.zeros(self.batch_size, dtype=bool)
        if self.mirror:
            mirrors = self.augment_rng.randint(2, size=self.batch_size).astype(bool)
        return indices, scale, mirrors


class BatchMaker(object):
    """Makes one batch from a plan entry: the image blob into a given array, the label_roi rows
    returned. Runs in the worker processes."""

    def __init__(self, param, datalist):
        self.param = param
        self.datalist = datalist
        self.root_folder = param.root_folder
        self.pixels = Pixels.from_param(param)

    def image_path(self, entry):
        return os.path.join(self.root_folder, entry.image_path)

    def read_entry(self, index):
        """(index of the entry read, entry, image, unreadable entries passed over to get it)."""
        skipped = []
        for step in range(len(self.datalist)):
            read = (index + step) % len(self.datalist)
            entry = self.datalist[read]
            try:
                image = read_image(self.image_path(entry), self.param.new_width,
                                   self.param.new_height, self.param.max_pixels)
                return read, entry, image, skipped
            except ImageError as e:
                reason = str(e)
            if not self.param.skip_unreadable:
                raise DataLayerError('source', 'cannot read image %s (%s line %d): %s'
                                     % (self.image_path(entry), self.datalist.path,
                                        entry.line_number, reason))
            skipped.append((self.image_path(entry), entry.line_number, reason))
        raise DataLayerError('source', 'no image of %s can be read' % self.datalist.path)

    def make(self, plan, data):
        """Writes the (N, 3, H, W) image blob (H, W: the batch's scaled size) to the start of
        the flat array `data`; returns (its shape, label_roi, the datalist index each image was
        read from, unreadable images skipped)."""
        indices, scale, mirrors = plan
        p = self.param
        height, width = scaled_size(p.new_height, scale), scaled_size(p.new_width, scale)
        label_roi = np.empty((len(indices), p.att_num + 5 * p.bbox_num), dtype=np.float32)
        reads = []
        data = data[:len(indices) * 3 * height * width].reshape(len(indices), 3, height, width)
        skipped = []
        for i, index in enumerate(indices):
            read, entry, image, passed_over = self.read_entry(index)
            reads.append(read)
            skipped += passed_over
            if scale != 1:
                image = rescale(image, width, height)
            to_planes(image, self.pixels, mirrors[i], out=data[i])
            proposals, _ = pad_proposals(entry.proposals, p.bbox_num)
            label_roi[i, :p.att_num] = entry.labels
            label_roi[i, p.att_num:] = transform_proposals(proposals, scale, mirrors[i],
                                                           width).reshape(-1)
        return data.shape, label_roi, reads, skipped


def worker_loop(maker, tasks, results, slots, parent_pid):
    """A worker process: make the batches asked for until told to stop or orphaned (the caffe
    tool never finalises Python, so nobody would stop us)."""
    # Exit without flushing batches nobody will read: with the parent gone, a full pipe would
    # block the exit forever.
    results.cancel_join_thread()
    # Ctrl-C reaches the whole process group; the trainer (or the caffe tool's -sigint_effect)
    # decides what it means, and it needs the workers for the iterations up to its snapshot.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while True:
        try:
            task = tasks.get(timeout=POLL_S)
        except queue.Empty:
            if os.getppid() != parent_pid:
                return
            continue
        if task is None:
            return
        batch_index, slot, plan = task
        try:
            shape, label_roi, reads, skipped = maker.make(plan, slots[slot])
            sides = (np.asarray(reads), np.asarray(plan[2], dtype=int))
            results.put((batch_index, slot, shape, label_roi, sides, skipped, None))
        except Exception as e:  # the main process raises it, with the worker's message
            message = str(e) if isinstance(e, DataLayerError) else \
                '%s: worker failed: %s: %s' % (LAYER, type(e).__name__, e)
            results.put((batch_index, slot, None, None, None, None, message))


def stop_workers(workers, tasks):
    for _ in workers:
        tasks.put(None)
    for worker in workers:
        worker.join(timeout=5)
        if worker.is_alive():
            worker.terminate()
            worker.join()


class MultiLabelRoIDataLayer(caffe.Layer):

    @_say_why
    def setup(self, bottom, top):
        if len(bottom) != 0:
            raise DataLayerError('bottom', 'takes no bottom blobs, got %d' % len(bottom))
        self.param = param = parse_param(self.param_str)
        check_param(param)
        extra = extra_tops(param)
        names = ['data', 'label_roi'] + [name for name, _ in extra]
        if len(top) != len(names):
            raise DataLayerError('top', 'takes %d top blobs (%s), got %d'
                                 % (len(names), ', '.join(names), len(top)))
        train = self.phase == caffe.TRAIN
        try:
            self.datalist = Datalist(param.source, param.att_num, param.bbox_num,
                                     param.new_width, param.new_height, param.root_folder)
        except DatalistError as e:
            raise DataLayerError('source', 'the datalist is not usable:\n%s' % e)
        # Training over several GPUs: this solver's share of the images (TEST: all of them,
        # only the root solver tests).
        rank, count = (caffe.solver_rank(), caffe.solver_count()) if train else (0, 1)
        if len(self.datalist) < count:
            raise DataLayerError('source', '%s has %d images, fewer than the %d solvers that '
                                 'share them' % (param.source, len(self.datalist), count))
        self.plan = BatchPlan(len(self.datalist), param.batch_size, param.shuffle, param.seed,
                              param.scale_factors if train else [], param.mirror and train,
                              rank, count)
        if train:
            self.plan.skip(param.start_batch)
        self.skipped = 0
        # The teacher's outputs, per image and side: gathered here, not by the workers, so that
        # a memory-mapped file is read once per batch and not sent through the result queue.
        self.targets = [load(param, len(self.datalist)) for _, load in extra]
        self.start_workers(BatchMaker(param, self.datalist), train)
        self.batch = None
        log.info('%s: %d images from %s, batch %d, %s phase%s', LAYER, len(self.datalist),
                 param.source, param.batch_size, 'TRAIN' if train else 'TEST',
                 ', solver %d of %d' % (rank, count) if count > 1 else '')

    def start_workers(self, maker, train):
        p = self.param
        scales = list(p.scale_factors) if train and p.scale_factors else [1.0]
        largest = max(scaled_size(p.new_height, s) * scaled_size(p.new_width, s) for s in scales)
        slot_floats = p.batch_size * 3 * largest
        # Anonymous shared memory: seen by the forked workers, not limited by /dev/shm's size.
        self.shared = mmap.mmap(-1, p.prefetch * slot_floats * 4)
        all_slots = np.frombuffer(self.shared, dtype=np.float32)
        self.slots = [all_slots[i * slot_floats:(i + 1) * slot_floats] for i in range(p.prefetch)]
        context = multiprocessing.get_context('fork')
        self.tasks = context.Queue()
        self.results = context.Queue()
        self.workers = [context.Process(target=worker_loop, daemon=True,
                                        args=(maker, self.tasks, self.results, self.slots,
                                              os.getpid()))
                        for _ in range(p.workers)]
        for worker in self.workers:
            worker.start()
        self.stop_workers = weakref.finalize(self, stop_workers, self.workers, self.tasks)
        self.ready = {}
        self.data_s = 0.0  # time the net spent waiting for and copying batches
        self.next_to_ask = 0
        self.next_to_use = 0
        for slot in range(p.prefetch):
            self.ask(slot)

    def ask(self, slot):
        self.tasks.put((self.next_to_ask, slot, self.plan.next_batch()))
        self.next_to_ask += 1

    def wait_for_batch(self):
        start = time.time()
        deadline = start + BATCH_TIMEOUT_S
        while self.next_to_use not in self.ready:
            try:
                batch_index, slot, shape, label_roi, sides, skipped, error = \
                    self.results.get(timeout=POLL_S)
            except queue.Empty:
                for worker in self.workers:
                    if not worker.is_alive():
                        raise DataLayerError('workers', 'worker process %d died (exit code %s)'
                                             % (worker.pid, worker.exitcode))
                if time.time() > deadline:
                    raise DataLayerError('workers', 'no batch after %d s' % BATCH_TIMEOUT_S)
                continue
            if error is not None:
                raise RuntimeError(error)
            for path, line_number, reason in skipped:
                self.skipped += 1
                log.warning('%s: skipped unreadable image %s (%s line %d: %s); %d skipped so '
                            'far', LAYER, path, self.param.source, line_number, reason,
                            self.skipped)
            self.ready[batch_index] = (slot, shape, label_roi, sides)
        self.batch = self.ready.pop(self.next_to_use)
        self.next_to_use += 1
        self.data_s += time.time() - start

    @_say_why
    def reshape(self, bottom, top):
        if self.batch is None:
            self.wait_for_batch()
        _, shape, label_roi, _ = self.batch
        top[0].reshape(*shape)
        top[1].reshape(*label_roi.shape)
        for k, targets in enumerate(self.targets):  # pycaffe's top vector does not slice
            top[2 + k].reshape(*target_top_shape(targets, len(label_roi)))

    @_say_why
    def forward(self, bottom, top):
        if self.batch is None:
            self.wait_for_batch()
        start = time.time()
        slot, shape, label_roi, (reads, mirrors) = self.batch
        top[0].data[...] = self.slots[slot][:int(np.prod(shape))].reshape(shape)
        top[1].data[...] = label_roi
        for k, targets in enumerate(self.targets):
            top[2 + k].data[...] = targets[reads, mirrors].reshape(top[2 + k].data.shape)
        self.batch = None
        self.ask(slot)
        self.data_s += time.time() - start

    def backward(self, top, propagate_down, bottom):
        pass

    def close(self):
        """Stops the workers. pycaffe never frees a Python layer (it and its C++ half hold each
        other), so their workers live until the process ends (then they stop themselves): a
        process that builds many nets should close their data layers."""
        self.stop_workers()
