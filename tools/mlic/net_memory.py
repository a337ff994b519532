"""How much memory a Caffe net needs to train, from its blob shapes, before any training runs.

The net is instantiated on the CPU through pycaffe with its data layer replaced by an Input layer
of the shapes that layer would produce (so no datalist, image or GPU is needed, and nothing is
allocated: Caffe allocates a blob's memory on first use, not when it is shaped). The parts, in
bytes of float32:

  weights       every learnable parameter (shared ones once)
  weight diffs  their gradients (Caffe clears every parameter's diff each iteration)
  history       the solver's per-parameter state (SGD momentum: one copy; Adam: three)
  activations   every blob's data (a blob computed in place counts once)
  act. diffs    the diff of every blob that backward reaches (frozen layers' blobs have none)
  buffers       layers' own blobs: max-pooling and RoI-pooling argmax, dropout masks, our
                loss layers' work arrays
  im2col        the column buffer each Convolution layer keeps with Caffe's own engine (cuDNN's
                workspaces are small and bounded instead)

Blob shapes are affine in the batch size (every blob either has the batch in it or does not), so
the figures at batch N come from the net at batch 1 and 2: `estimate` checks that for every blob
and extrapolates, which keeps the full-size nets (VGG16 at 672 px, 500 proposals) cheap to
measure at any batch.
"""
import collections
import os
import re
import tempfile

FLOAT = 4
# Extra state a solver keeps per parameter, in copies of the parameter.
HISTORY_COPIES = {'SGD': 1, 'Nesterov': 1, 'AdaGrad': 1, 'RMSProp': 1, 'AdaDelta': 2,
                  'Adam': 3}
DATA_LAYER_MODULE = 'caffe_layers.data_layer'
PARTS = ('weights', 'weight_diffs', 'history', 'activations', 'activation_diffs', 'buffers',
         'im2col')


class NetMemoryError(RuntimeError):
    pass


Memory = collections.namedtuple('Memory', PARTS)


def total(memory, engine='CAFFE'):
    """All of it; with cuDNN (engine 'CUDNN') the convolutions keep no column buffers."""
    parts = memory._asdict()
    if engine != 'CAFFE':
        parts.pop('im2col')
    return sum(parts.values())


# ---- the net with its data layer replaced --------------------------------------------------

def _data_layer_tops(layer, batch):
    """(top name, shape) of our MultiLabelRoIDataLayer at `batch` (None: its batch_size), at its
    largest scale."""
    import caffe_layers  # noqa: F401  (puts mlic_layers_pb2 on sys.path)
    import mlic_layers_pb2
    from google.protobuf import text_format
    param = mlic_layers_pb2.MultiLabelRoIDataParameter()
    text_format.Parse(layer.python_param.param_str, param)
    batch = param.batch_size if batch is None else batch
    scale = max(list(param.scale_factors) or [1.0])
    height = int(float(param.new_height) * scale)
    width = int(float(param.new_width) * scale)
    shapes = [(batch, 3, height, width), (batch, param.att_num + 5 * param.bbox_num)]
    if param.soft_targets:
        shapes.append((batch, param.att_num))
    if param.roi_targets:
        import numpy as np
        try:
            dim = np.load(param.roi_targets, mmap_mode='r').shape[-1]
        except (OSError, ValueError) as e:
            raise NetMemoryError('layer %s: the RoI features %s give the width of its last top '
                                 'and cannot be read: %s' % (layer.name, param.roi_targets, e))
        shapes.append((batch * param.bbox_num, dim))
    if param.map_targets:
        import numpy as np
        try:
            shape = np.load(param.map_targets, mmap_mode='r').shape[2:]
        except (OSError, ValueError) as e:
            raise NetMemoryError('layer %s: the teacher\'s maps %s give the shape of its last top '
                                 'and cannot be read: %s' % (layer.name, param.map_targets, e))
        shapes.append((batch,) + tuple(shape))
    return list(zip(layer.top, shapes))


def net_at_batch(net_path, batch, phase):
    """The NetParameter of net_path for `phase` at `batch`: our data layer and Input layers
    become Input layers with the batch as their first dimension (None: the net's own)."""
    from caffe.proto import caffe_pb2
    from google.protobuf import text_format
    net = caffe_pb2.NetParameter()
    try:
        with open(net_path) as f:
            text_format.Merge(f.read(), net)
    except (OSError, text_format.ParseError) as e:
        raise NetMemoryError('%s: %s' % (net_path, e))
    out = caffe_pb2.NetParameter()
    out.CopyFrom(net)
    del out.layer[:]
    out.state.phase = phase
    for layer in net.layer:
        if layer.type == 'Python' and layer.python_param.module == DATA_LAYER_MODULE:
            if not _in_phase(layer, phase):
                continue
            tops = _data_layer_tops(layer, batch)
            new = out.layer.add()
            new.name, new.type = layer.name, 'Input'
            for name, shape in tops:
                new.top.append(name)
                new.input_param.shape.add().dim.extend(shape)
        elif layer.type == 'Input' and batch is not None:
            new = out.layer.add()
            new.CopyFrom(layer)
            for shape in new.input_param.shape:
                shape.dim[0] = batch
        else:
            out.layer.add().CopyFrom(layer)
    if net.input_shape or net.input_dim:
        raise NetMemoryError('%s: give the inputs as an Input layer, not as input: fields'
                             % net_path)
    return out


def _in_phase(layer, phase):
    if layer.include:
        return any(rule.phase == phase for rule in layer.include if rule.HasField('phase'))
    return not any(rule.HasField('phase') and rule.phase == phase for rule in layer.exclude)


# ---- blob sizes of an instantiated net ------------------------------------------------------

LayerShapes = collections.namedtuple('LayerShapes', 'name type bottoms tops params')


def layer_shapes(net_param):
    """[LayerShapes] with the bottom and top (name, shape) and the param shapes of every layer,
    from the net instantiated on the CPU."""
    import caffe
    import caffe_layers  # noqa: F401
    caffe.set_mode_cpu()
    with tempfile.NamedTemporaryFile('w', suffix='.prototxt', delete=False) as f:
        f.write(str(net_param))
    try:
        net = caffe.Net(f.name, net_param.state.phase)
    finally:
        os.remove(f.name)
    layers = []
    for i, name in enumerate(net._layer_names):
        layers.append(LayerShapes(
            name, net.layers[i].type,
            [(b, tuple(net.blobs[b].shape)) for b in net.bottom_names[name]],
            [(t, tuple(net.blobs[t].shape)) for t in net.top_names[name]],
            [tuple(p.shape) for p in net.layers[i].blobs]))
    return layers


def _count(shape):
    n = 1
    for d in shape:
        n *= int(d)
    return n


def _im2col(spec, bottom, top):
    conv = spec.convolution_param
    kernel = list(conv.kernel_size) or [conv.kernel_h, conv.kernel_w]
    if len(kernel) == 1:
        kernel = kernel * 2
    stride = list(conv.stride) or [conv.stride_h or 1, conv.stride_w or 1]
    pad = list(conv.pad) or [conv.pad_h, conv.pad_w]
    if kernel == [1, 1] and all(s == 1 for s in stride) and not any(pad):
        return 0  # Caffe multiplies 1x1 convolutions directly
    if spec.type == 'Deconvolution':
        return top[1] * kernel[0] * kernel[1] * _count(bottom[2:])
    return bottom[1] * kernel[0] * kernel[1] * _count(top[2:])


def _buffers(spec, layer):
    """Floats (or ints, the same size) a layer keeps in its own blobs."""
    tops = [shape for _, shape in layer.tops]
    bottoms = [shape for _, shape in layer.bottoms]
    if layer.type == 'Pooling' and spec.pooling_param.pool == spec.pooling_param.MAX \
            and len(tops) == 1:
        return _count(tops[0])  # argmax
    if layer.type == 'ROIPooling':
        return _count(tops[0])  # argmax
    if layer.type == 'Dropout':
        return _count(bottoms[0])  # the mask
    if layer.type == 'RoIDistillationLoss':
        return 2 * _count(bottoms[0]) + bottoms[0][0]  # diff, weighted diff, row weights
    if layer.type == 'CrossEntropyLoss':
        return _count(bottoms[0])
    return 0


def _needs_backward(net_param, layers):
    """Names of the blobs whose diff backward computes: tops of layers that have a learnable
    parameter (lr_mult not 0) or a bottom that needs it, as Caffe's Net decides."""
    specs = {layer.name: layer for layer in net_param.layer}
    needs = set()
    for layer in layers:
        spec = specs.get(layer.name)  # None: a Split layer Caffe inserted
        learns = spec is not None and any(i >= len(spec.param) or spec.param[i].lr_mult != 0
                                          for i in range(len(layer.params)))
        if learns or any(name in needs for name, _ in layer.bottoms):
            needs.update(name for name, _ in layer.tops)
    return needs


def memory_of(net_param, solver_type='SGD', layers=None):
    """Memory (floats of each part) of net_param as instantiated (layers: its layer_shapes,
    when already known)."""
    layers = layers or layer_shapes(net_param)
    specs = {layer.name: layer for layer in net_param.layer}
    weights = 0
    seen_params = set()
    for layer in layers:
        spec = specs.get(layer.name)
        for i, shape in enumerate(layer.params):
            name = spec.param[i].name if spec is not None and i < len(spec.param) else ''
            if name:
                if name in seen_params:
                    continue
                seen_params.add(name)
            weights += _count(shape)
    # A blob computed in place is one blob. Split tops share their bottom's data and keep their
    # own diffs; Reshape and Flatten tops share both.
    data, diffs = collections.OrderedDict(), collections.OrderedDict()
    for layer in layers:
        for name, shape in layer.tops:
            if layer.type not in ('Split', 'Reshape', 'Flatten'):
                data[name] = _count(shape)
            if layer.type not in ('Reshape', 'Flatten'):
                diffs[name] = _count(shape)
    needs = _needs_backward(net_param, layers)
    buffers = im2col = 0
    for layer in layers:
        spec = specs.get(layer.name)
        if spec is None:
            continue
        buffers += _buffers(spec, layer)
        if layer.type in ('Convolution', 'Deconvolution'):
            im2col += _im2col(spec, layer.bottoms[0][1], layer.tops[0][1])
    return Memory(weights, weights, HISTORY_COPIES.get(solver_type, 1) * weights,
                  sum(data.values()), sum(n for b, n in diffs.items() if b in needs),
                  buffers, im2col)


def _floats_to_bytes(memory):
    return Memory(*(FLOAT * v for v in memory))


def estimate(net_path, batch, phase='TRAIN', solver_type='SGD'):
    """Memory (bytes of each part) that net_path needs at `batch` (see estimates)."""
    return estimates(net_path, [batch], phase, solver_type)[batch]


def estimates(net_path, batches, phase='TRAIN', solver_type='SGD'):
    """{batch: Memory (bytes of each part)} that net_path needs at each of `batches`,
    extrapolated from the net at batch 1 and 2 after checking that every part is affine in the
    batch (each blob, and so each part, is exactly proportional to it or does not depend on
    it)."""
    import caffe
    phase_id = caffe.TRAIN if phase == 'TRAIN' else caffe.TEST
    for batch in batches:
        if batch < 1:
            raise NetMemoryError('the batch must be at least 1, got %d' % batch)
    nets = [net_at_batch(net_path, b, phase_id) for b in (1, 2)]
    shapes = [layer_shapes(net) for net in nets]
    check_affine(net_path, *shapes)
    one, two = (memory_of(net, solver_type, layers) for net, layers in zip(nets, shapes))
    return {batch: _floats_to_bytes(Memory(*(a + (b - a) * (batch - 1)
                                             for a, b in zip(one, two))))
            for batch in batches}


def check_affine(net_path, at_one, at_two):
    """Raises NetMemoryError unless every blob of the net at batch 2 is twice its size at batch 1
    or the same (then every sum of them is affine in the batch)."""
    for one, two in zip(at_one, at_two):
        for (name, a), (_, b) in zip(one.bottoms + one.tops, two.bottoms + two.tops):
            if _count(b) not in (_count(a), 2 * _count(a)):
                raise NetMemoryError('%s: layer %s: blob %s is %s at batch 1 and %s at batch 2; '
                                     'its size does not follow the batch, so it cannot be '
                                     'extrapolated' % (net_path, one.name, name, a, b))


def iter_size_for(memory_at, effective_batch, gpu_bytes, reserve_bytes, engine='CAFFE'):
    """(batch, iter_size) with batch * iter_size == effective_batch, the largest batch whose
    total fits in gpu_bytes - reserve_bytes; memory_at(batch) gives Memory. None when not even
    batch 1 fits."""
    for iter_size in range(1, effective_batch + 1):
        if effective_batch % iter_size:
            continue
        batch = effective_batch // iter_size
        if total(memory_at(batch), engine) + reserve_bytes <= gpu_bytes:
            return batch, iter_size
    return None


def solver_type_of(solver_path):
    """The solver's type (SGD when unset) as HISTORY_COPIES names it."""
    with open(solver_path) as f:
        text = f.read()
    match = re.search(r'^\s*type:\s*"(\w+)"', text, re.M)
    return match.group(1) if match else 'SGD'


def test_net_activations(net_path):
    """Bytes of the TEST-phase net's activations at its own batch: a solver with a test net
    allocates them the first time it tests and keeps them (its weights are the train net's)."""
    import caffe
    net = net_at_batch(net_path, None, caffe.TEST)
    if not any(True for _ in net.layer):
        return 0
    return FLOAT * memory_of(net).activations
