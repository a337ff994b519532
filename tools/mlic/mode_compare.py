"""Runs a net, or one layer, forward and backward in two Caffe modes (CPU, GPU) on the same
inputs and weights, and says where the results differ.

The GPU check (tests/gpu) compares CPU with GPU; the normal test suite runs the same code CPU
against CPU, where the results must be identical.

A whole net runs in its TEST phase: the data layer then reads the same first batch every time
and dropout is off, so nothing random separates the two runs; backward still runs (Caffe's
backward does not look at the phase). A single layer gets the bottoms that the net's forward
pass gave it; the bottoms backward goes to pass through a Scale layer of weight 1 first, so that
Caffe asks the layer for their gradient and not for the others' (labels, RoIs).
"""
import collections
import os
import tempfile

import numpy as np

# Our layers, and which of their bottoms take a gradient.
PLUGIN_LAYERS = {
    'CrossEntropyLoss': (0,),
    'Interp': (0,),
    'ProposalSoftmax': (0,),
    'RoIDistillationLoss': (0, 1),
    'ROIPooling': (0,),
    'WsdRoigen': (),
    'WsdRoigenSingleScale': (),
}

LOSSES = ('CrossEntropyLoss', 'RoIDistillationLoss')

Difference = collections.namedtuple('Difference', 'what largest scale')


def set_mode(caffe, mode, device=0):
    if mode == 'GPU':
        caffe.set_device(device)
        caffe.set_mode_gpu()
    else:
        caffe.set_mode_cpu()


def _close_data_layers(net):
    for layer in net.layers:
        if hasattr(layer, 'close'):
            layer.close()


def run_net(caffe, net_path, weights, mode):
    """{name: array} of every blob's data and diff and every param's diff after one forward
    and backward of the TEST-phase net in `mode`."""
    set_mode(caffe, mode)
    net = caffe.Net(net_path, caffe.TEST)
    try:
        net.copy_from(weights)
        net.forward()
        for name in net.blob_loss_weights:  # backward from the losses as Caffe's solver does
            if net.blob_loss_weights[name]:
                net.blobs[name].diff[...] = net.blob_loss_weights[name]
        net.backward()
        out = collections.OrderedDict()
        for name, blob in net.blobs.items():
            out['data ' + name] = blob.data.copy()
            out['diff ' + name] = blob.diff.copy()
        for name, params in net.params.items():
            for i, param in enumerate(params):
                out['param diff %s[%d]' % (name, i)] = param.diff.copy()
        return out
    finally:
        _close_data_layers(net)


def net_weights(caffe, net_path, folder):
    """A .caffemodel of the net's initial weights (its fillers, drawn once on the CPU)."""
    caffe.set_mode_cpu()
    net = caffe.Net(net_path, caffe.TEST)
    try:
        path = os.path.join(folder, os.path.basename(net_path) + '.caffemodel')
        net.save(path)
        return path
    finally:
        _close_data_layers(net)


def plugin_layer_cases(caffe, net_path, weights):
    """[(layer prototxt text, {bottom name: array}, type)] of every layer of ours in the
    TEST-phase net, with the bottoms its forward pass gave it (computed on the CPU)."""
    from caffe.proto import caffe_pb2
    from google.protobuf import text_format
    caffe.set_mode_cpu()
    net = caffe.Net(net_path, caffe.TEST)
    try:
        net.copy_from(weights)
        net.forward()
        param = caffe_pb2.NetParameter()
        with open(net_path) as f:
            text_format.Merge(f.read(), param)
        specs = {layer.name: layer for layer in param.layer}
        cases = []
        for i, name in enumerate(net._layer_names):
            kind = net.layers[i].type
            if kind not in PLUGIN_LAYERS:
                continue
            spec = caffe_pb2.LayerParameter()
            spec.CopyFrom(specs[name])
            del spec.include[:]
            del spec.exclude[:]
            bottoms = collections.OrderedDict(
                (b, net.blobs[b].data.copy()) for b in net.bottom_names[name])
            # Split layers Caffe inserted feed the layer: name the bottoms as it sees them.
            del spec.bottom[:]
            spec.bottom.extend(bottoms)
            cases.append((spec, bottoms, kind))
        return cases
    finally:
        _close_data_layers(net)


def layer_net_text(spec, bottoms, kind):
    """A net of Input layers for `bottoms`, a Scale of weight 1 before each bottom that takes a
    gradient, and the layer; a layer that is not a loss gets a loss weight on its tops, so that
    Caffe runs its backward (the diffs are then set by hand)."""
    from caffe.proto import caffe_pb2
    net = caffe_pb2.NetParameter()
    net.name = 'one_' + spec.name
    layer_spec = caffe_pb2.LayerParameter()
    layer_spec.CopyFrom(spec)
    del layer_spec.bottom[:]
    del layer_spec.propagate_down[:]  # every gradient the layer has, checked
    for k, (name, array) in enumerate(bottoms.items()):
        source = 'in_%d' % k
        layer = net.layer.add(name=source, type='Input', top=[source])
        layer.input_param.shape.add().dim.extend(array.shape)
        if k in PLUGIN_LAYERS[kind]:
            scaled = 'scaled_%d' % k
            scale = net.layer.add(name=scaled, type='Scale', bottom=[source], top=[scaled])
            scale.scale_param.num_axes = 0
            scale.scale_param.filler.type = 'constant'
            scale.scale_param.filler.value = 1
            layer_spec.bottom.append(scaled)
        else:
            layer_spec.bottom.append(source)
    if kind not in LOSSES:
        del layer_spec.loss_weight[:]
        layer_spec.loss_weight.extend([1.0] * len(layer_spec.top))
    net.layer.add().CopyFrom(layer_spec)
    return str(net)


def run_layer(caffe, spec, bottoms, kind, mode, top_diff_seed=0):
    """{name: array} of the layer's tops and the gradients of its differentiable bottoms after
    one forward and backward in `mode`; a top that is not a loss gets a fixed random diff."""
    set_mode(caffe, mode)
    with tempfile.NamedTemporaryFile('w', suffix='.prototxt', delete=False) as f:
        f.write(layer_net_text(spec, bottoms, kind))
    try:
        net = caffe.Net(f.name, caffe.TEST)
    finally:
        os.remove(f.name)
    for k, array in enumerate(bottoms.values()):
        net.blobs['in_%d' % k].data[...] = array
    net.forward()
    rng = np.random.RandomState(top_diff_seed)
    tops = list(spec.top)
    for top in tops:
        net.blobs[top].diff[...] = net.blob_loss_weights[top] if kind in LOSSES else \
            rng.uniform(-1, 1, net.blobs[top].diff.shape)
    net.backward()
    out = collections.OrderedDict(('top ' + t, net.blobs[t].data.copy()) for t in tops)
    for k in PLUGIN_LAYERS[kind]:
        out['bottom diff %d' % k] = net.blobs['scaled_%d' % k].diff.copy()
    return out


def differences(first, second, rtol=1e-3, atol_scale=1e-4):
    """[Difference] of the entries where |a - b| > atol_scale * max|a| + rtol * |a| (float32
    results of two implementations that sum in different orders)."""
    found = []
    for what, a in first.items():
        b = second[what]
        if a.shape != b.shape:
            found.append(Difference(what, float('inf'), 0.0))
            continue
        if a.size == 0:
            continue
        scale = float(np.max(np.abs(a)))
        gap = np.abs(a.astype(np.float64) - b)
        if not np.all(np.isfinite(b)) or np.any(gap > atol_scale * scale + rtol * np.abs(a)):
            found.append(Difference(what, float(np.max(gap)), scale))
    return found
