#!/usr/bin/env -S sh -c 'exec "$(dirname "$0")/../.venv/bin/python" "$0" "$@"'
"""Times each plugin layer's forward and backward pass through pycaffe on the CPU.

Two size sets: the original's (conv5_3 512 x 42 x 42, 500 RoIs per image, 7 x 7 bins, 80
classes, fc7 4096) and the demo's small ones (conv5 128 x 12 x 12, 48 RoIs, 3 x 3 bins, 10
classes). Where stock Caffe layers do the same job (Softmax with axis 1 for ProposalSoftmax,
EuclideanLoss for RoIDistillationLoss without padding) they are timed on the same input and the
ratio ours / stock is printed. Layer types missing from this build are listed, never skipped
silently. Prints figures; asserts nothing.

With the demo's teacher net (prototxt/small/wsddn/train.prototxt, written by
tools/generate_nets.py) it also times one training forward-backward pass of that net, layer by
layer, with random images and proposals in place of its data layer, and prints the plugin
layers' share of it (the target: under 10%).

    python tools/benchmark_layers.py [--runs 5] [--original-batch 2] [--demo-batch 8]
                                     [--teacher-net prototxt/small/wsddn/train.prototxt]
"""
import argparse
import os
import tempfile
import time

import numpy as np
from google.protobuf import text_format

os.environ.setdefault('GLOG_minloglevel', '2')  # keep Caffe's net set-up log out of the table

import caffe  # noqa: E402
import caffe_layers  # noqa: E402,F401  (registers the plugin's layer types)
from caffe.proto import caffe_pb2  # noqa: E402
import mlic_layers_pb2  # noqa: E402  (generated with the plugin; on the path after caffe_layers)
from mlic import openblas  # noqa: E402
from mlic.paths import ROOT  # noqa: E402
DATA_LAYER = 'MultiLabelRoIDataLayer'

# Every layer type the plugin is meant to provide (mlic_layers.proto).
PLUGIN_TYPES = ['WsdRoigen', 'WsdRoigenSingleScale', 'ROIPooling', 'ProposalSoftmax',
                'CrossEntropyLoss', 'Interp', 'RoIDistillationLoss']

ORIGINAL = dict(name='original', conv=(512, 42, 42), rois=500, bins=7, classes=80, fc7=4096,
                image=672, student_image=224)
DEMO = dict(name='demo', conv=(128, 12, 12), rois=48, bins=3, classes=10, fc7=256,
            image=192, student_image=64)


def proposal_lists(rng, n, b, image):
    """(N, 5B) lists [x1 y1 x2 y2 s]*B of boxes inside an image x image picture."""
    x1 = rng.uniform(0, image / 2, size=(n, b))
    y1 = rng.uniform(0, image / 2, size=(n, b))
    x2 = np.minimum(x1 + rng.uniform(16, image / 2, size=(n, b)), image - 1)
    y2 = np.minimum(y1 + rng.uniform(16, image / 2, size=(n, b)), image - 1)
    return np.stack([x1, y1, x2, y2, rng.uniform(size=(n, b))], axis=2).reshape(n, 5 * b)


def roi_rows(rng, n, b, image):
    lists = proposal_lists(rng, n, b, image).reshape(n * b, 5)
    return np.concatenate([np.repeat(np.arange(n), b)[:, None], lists], axis=1)


def cases(sizes, n, rng):
    """(layer type, layer text, {input blob: array}) for each benchmarked layer, ours and stock."""
    b, c, k = sizes['rois'], sizes['classes'], sizes['bins']
    image = sizes['image']
    rois = roi_rows(rng, n, b, image)
    lists = proposal_lists(rng, n, b, image)
    scores = rng.normal(size=(n, b, c, 1))
    teacher = rng.normal(size=(n * b, sizes['fc7']))
    student = rng.normal(size=(n * b, sizes['fc7']))
    prob = rng.uniform(0.01, 0.99, size=(n, c))
    labels = (rng.uniform(size=(n, c)) < 0.3).astype(np.float64)
    student_in = sizes['student_image']
    return [
        ('WsdRoigen', '', {'lists': lists}, None),
        ('WsdRoigenSingleScale', 'single_scale: %d origin_scale: %d' % (student_in, image),
         {'lists': lists}, None),
        ('ROIPooling', 'pooled_h: %d pooled_w: %d spatial_scale: 0.0625' % (k, k),
         {'conv': rng.normal(size=(n,) + sizes['conv']), 'rois': rois}, None),
        ('ProposalSoftmax', '', {'scores': scores, 'rois': rois},
         ('Softmax', 'softmax_param { axis: 1 }', {'scores': scores})),
        ('CrossEntropyLoss', '', {'prob': prob, 'labels': labels}, None),
        ('Interp', 'height: %d width: %d' % (student_in, student_in),
         {'data': rng.normal(size=(n, 3, image, image))}, None),
        ('RoIDistillationLoss', '', {'teacher': teacher, 'student': student, 'rois': rois},
         ('EuclideanLoss', '', {'teacher': teacher, 'student': student})),
    ]


def layer_net(layer_type, settings, inputs, plugin):
    """A net of one Input layer feeding the benchmarked layer; returns (net, layer index)."""
    shapes = ' '.join('shape { %s }' % ' '.join('dim: %d' % d for d in a.shape)
                      for a in inputs.values())
    tops = ' '.join('top: "%s"' % name for name in inputs)
    bottoms = ' '.join('bottom: "%s"' % name for name in inputs)
    if plugin:
        settings = 'python_param { param_str: "%s" }' % settings
    text = ('force_backward: true\n'
            'layer { name: "in" type: "Input" %s input_param { %s } }\n'
            'layer { name: "bench" type: "%s" %s top: "out" %s }\n'
            % (tops, shapes, layer_type, bottoms, settings))
    with tempfile.NamedTemporaryFile('w', suffix='.prototxt', delete=False) as f:
        f.write(text)
    try:
        net = caffe.Net(f.name, caffe.TRAIN)
    finally:
        os.unlink(f.name)
    for name, array in inputs.items():
        net.blobs[name].data[...] = array
    return net, list(net._layer_names).index('bench')


def time_layer(net, index, runs):
    """Median forward and backward seconds of layer `index` over `runs` runs after a warm-up."""
    net._forward(0, index)
    out = net.blobs['out']
    if not net.layers[index].type.endswith('Loss'):  # a loss keeps its loss weight as top diff
        out.diff[...] = np.random.RandomState(0).normal(size=out.diff.shape)
    forward, backward = [], []
    for _ in range(runs + 1):
        start = time.perf_counter()
        net._forward(index, index)
        middle = time.perf_counter()
        net._backward(index, index)
        forward.append(middle - start)
        backward.append(time.perf_counter() - middle)
    return np.median(forward[1:]), np.median(backward[1:])


def read_net(path):
    param = caffe_pb2.NetParameter()
    with open(path) as f:
        text_format.Merge(f.read(), param)
    return param


def teacher_net_with_inputs(param, rng):
    """The TRAIN net `param` with its data layer replaced by an Input layer of random data;
    returns the net and {input blob: array}."""
    data = [layer for layer in param.layer if layer.python_param.layer == DATA_LAYER and
            all(rule.phase == caffe_pb2.TRAIN for rule in layer.include)]
    if len(data) != 1:
        raise ValueError('%s: expected one TRAIN %s, found %d' % (param.name, DATA_LAYER,
                                                                     len(data)))
    settings = mlic_layers_pb2.MultiLabelRoIDataParameter()
    text_format.Merge(data[0].python_param.param_str, settings)
    n, b, size = settings.batch_size, settings.bbox_num, settings.new_height
    inputs = {'data': rng.normal(scale=50, size=(n, 3, size, settings.new_width)),
              'label_roi': np.concatenate(
                  [(rng.uniform(size=(n, settings.att_num)) < 0.3).astype(np.float64),
                   proposal_lists(rng, n, b, min(size, settings.new_width))], axis=1)}
    tops = list(data[0].top)
    data[0].Clear()
    data[0].name = 'random_input'
    data[0].type = 'Input'
    data[0].top.extend(tops)
    for top in tops:
        data[0].input_param.shape.add().dim.extend(inputs[top].shape)
    with tempfile.NamedTemporaryFile('w', suffix='.prototxt', delete=False) as f:
        f.write(text_format.MessageToString(param))
    try:
        net = caffe.Net(f.name, caffe.TRAIN)
    finally:
        os.unlink(f.name)
    for name, array in inputs.items():
        net.blobs[name].data[...] = array
    return net, inputs


def time_net_by_layer(net, runs):
    """Median seconds per layer of a forward then backward pass, {layer name: (type, secs)}."""
    names = list(net._layer_names)
    times = {name: [] for name in names}
    for run in range(runs + 1):
        spent = np.zeros(len(names))
        for i in range(len(names)):
            start = time.perf_counter()
            net._forward(i, i)
            spent[i] += time.perf_counter() - start
        for i in reversed(range(len(names))):
            start = time.perf_counter()
            net._backward(i, i)
            spent[i] += time.perf_counter() - start
        if run:  # the first pass is a warm-up
            for name, secs in zip(names, spent):
                times[name].append(secs)
    return {name: (layer.type, np.median(times[name])) for name, layer in zip(names, net.layers)}


def report_teacher_net(path, runs, registered):
    if not os.path.exists(path):
        print('NOT MEASURED: the plugin layers\' share of the demo teacher\'s forward-backward '
              'pass: %s does not exist (tools/generate_nets.py writes it)' % path)
        return
    param = read_net(path)
    unknown = sorted(set(layer.type for layer in param.layer) - registered - set(['Python']))
    if unknown:
        print('NOT MEASURED: the plugin layers\' share of the demo teacher\'s forward-backward '
              'pass: layer types of %s not in this build: %s' % (path, ', '.join(unknown)))
        return
    net, inputs = teacher_net_with_inputs(param, np.random.RandomState(0))
    per_layer = time_net_by_layer(net, runs)
    total = sum(secs for _, secs in per_layer.values())
    ours = [(name, layer_type, secs) for name, (layer_type, secs) in per_layer.items()
            if layer_type in PLUGIN_TYPES]
    print('demo teacher net %s, input %s: forward-backward %.2f ms (median of %d, CPU)' % (
        os.path.relpath(path, ROOT), size_text(inputs), 1e3 * total, runs))
    for name, layer_type, secs in ours:
        print('  %-22s %-22s %8.2f ms %6.2f%%' % (name, layer_type, 1e3 * secs, 100 * secs / total))
    share = sum(secs for _, _, secs in ours) / total
    print('  plugin layers together: %.2f%% of the pass (target < 10%%: %s)' % (
        100 * share, 'met' if share < 0.1 else 'NOT met'))


def size_text(inputs):
    return ', '.join('x'.join(str(d) for d in a.shape) for a in inputs.values())


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--runs', type=int, default=5, help='timed runs per layer (median)')
    parser.add_argument('--original-batch', type=int, default=2,
                        help='images per batch at the original sizes (released nets: 32)')
    parser.add_argument('--demo-batch', type=int, default=8, help='images per batch, demo sizes')
    parser.add_argument('--teacher-net', default=os.path.join(ROOT, 'prototxt', 'small', 'wsddn',
                                                             'train.prototxt'),
                        help='the demo teacher\'s train net (default: %(default)s)')
    args = parser.parse_args()
    caffe.set_mode_cpu()
    registered = set(caffe.layer_type_list())
    missing = [t for t in PLUGIN_TYPES if t not in registered]

    header = '%-8s %-22s %-32s %10s %10s %10s  %-14s %10s %7s' % (
        'sizes', 'layer', 'inputs', 'fwd ms', 'bwd ms', 'total ms', 'stock', 'stock ms',
        'ratio')
    print('CPU, OpenBLAS kernels: %s' % openblas.loaded_core())
    print(header)
    print('-' * len(header))
    failures = []
    for sizes, n in ((ORIGINAL, args.original_batch), (DEMO, args.demo_batch)):
        for layer_type, settings, inputs, stock in cases(sizes, n, np.random.RandomState(0)):
            if layer_type in missing:
                continue
            try:
                net, index = layer_net(layer_type, settings, inputs, plugin=True)
                forward, backward = time_layer(net, index, args.runs)
                ours = forward + backward
                row = '%-8s %-22s %-32s %10.2f %10.2f %10.2f' % (
                    sizes['name'], layer_type, size_text(inputs), 1e3 * forward, 1e3 * backward,
                    1e3 * ours)
                del net
                if stock:
                    stock_type, stock_settings, stock_inputs = stock
                    net, index = layer_net(stock_type, stock_settings, stock_inputs, plugin=False)
                    theirs = sum(time_layer(net, index, args.runs))
                    row += '  %-14s %10.2f %7.2f' % (stock_type, 1e3 * theirs, ours / theirs)
                    del net
            except RuntimeError as error:  # a layer rejecting the sizes is a finding, not a crash
                failures.append('%s %s: %s' % (sizes['name'], layer_type, error))
                continue
            print(row)
    print()
    print('batch: %d images at the original sizes, %d at the demo sizes; median of %d runs, '
          'CPU, pycaffe' % (args.original_batch, args.demo_batch, args.runs))
    print('ratio = our total / the stock composition\'s total on the same input')
    if missing:
        print('NOT MEASURED, layer types not in this build: ' + ', '.join(missing))
    for failure in failures:
        print('FAILED ' + failure)
    print()
    report_teacher_net(args.teacher_net, args.runs, registered)


if __name__ == '__main__':
    main()
