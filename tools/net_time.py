#!/usr/bin/env -S sh -c 'exec "$(dirname "$0")/../.venv/bin/python" "$0" "$@"'
"""Forward-backward speed of a train net, as `caffe time` measures it, without its data: the
data layer becomes an Input of random images and valid proposals at the batch asked for.

  tools/net_time.py NET.prototxt --batch N [--engine CUDNN|CAFFE] [--gpu K | --cpu]
                    [--iterations 5] [--json out.json]

Prints (and writes as JSON) images per second of forward + backward, the share of that time in
our layers, and on a GPU the memory the process holds there (nvidia-smi's memory.used on that
GPU after the run minus before it: the CUDA context included).
"""
import argparse
import json
import os
import sys
import tempfile
import time

os.environ.setdefault('GLOG_minloglevel', '2')

import numpy as np  # noqa: E402

from mlic import gpu_check, mode_compare, net_memory  # noqa: E402

ENGINE_PARAMS = ('convolution_param', 'pooling_param', 'relu_param', 'softmax_param')
OUR_LAYERS = set(mode_compare.PLUGIN_LAYERS) | {'Python'}


def with_engine(net, engine):
    """Sets every layer that has a choice of engine to `engine` (CAFFE or CUDNN)."""
    for layer in net.layer:
        for field in ENGINE_PARAMS:
            if layer.HasField(field) or (field == 'relu_param' and layer.type == 'ReLU') or \
                    (field == 'softmax_param' and layer.type == 'Softmax') or \
                    (field == 'pooling_param' and layer.type == 'Pooling') or \
                    (field == 'convolution_param' and layer.type == 'Convolution'):
                message = getattr(layer, field)
                message.engine = getattr(message, engine)
    return net


def fill_inputs(net, param, rng):
    """Random images, labels with at least one class per image, proposals inside the image, and
    teacher outputs where the net takes them."""
    data = net.blobs['data']
    n, _, height, width = data.shape
    data.data[...] = rng.normal(0, 50, data.shape)
    classes, boxes = param.att_num, param.bbox_num
    label_roi = np.zeros(net.blobs['label_roi'].shape, np.float32)
    labels = (rng.uniform(size=(n, classes)) < 0.2).astype(np.float32)
    labels[np.arange(n), rng.randint(classes, size=n)] = 1
    label_roi[:, :classes] = labels
    x1 = rng.randint(0, width // 2, (n, boxes))
    y1 = rng.randint(0, height // 2, (n, boxes))
    x2 = x1 + rng.randint(16, width // 2, (n, boxes))
    y2 = y1 + rng.randint(16, height // 2, (n, boxes))
    scores = rng.uniform(0.1, 1, (n, boxes))
    label_roi[:, classes:] = np.stack([x1, y1, x2, y2, scores], axis=2).reshape(n, -1)
    net.blobs['label_roi'].data[...] = label_roi
    for name in ('soft_target',):
        if name in net.blobs:
            net.blobs[name].data[...] = rng.uniform(size=net.blobs[name].shape)
    if 'roi_target' in net.blobs:
        net.blobs['roi_target'].data[...] = rng.normal(size=net.blobs['roi_target'].shape)


def data_param(net_path):
    import caffe_layers  # noqa: F401
    import mlic_layers_pb2
    from caffe.proto import caffe_pb2
    from google.protobuf import text_format
    net = caffe_pb2.NetParameter()
    with open(net_path) as f:
        text_format.Merge(f.read(), net)
    for layer in net.layer:
        if layer.type == 'Python' and layer.python_param.module == net_memory.DATA_LAYER_MODULE \
                and net_memory._in_phase(layer, caffe_pb2.TRAIN):
            param = mlic_layers_pb2.MultiLabelRoIDataParameter()
            text_format.Parse(layer.python_param.param_str, param)
            return param
    raise SystemExit('tools/net_time.py: %s has no TRAIN data layer of ours' % net_path)


class WallTimer(object):
    def start(self):
        self.begin = time.perf_counter()

    def stop(self):
        self.ms = 1000.0 * (time.perf_counter() - self.begin)


def measure(net_path, batch, engine, gpu, iterations):
    import caffe
    import caffe_layers  # noqa: F401
    before = gpu_check.memory_used_mib(gpu) if gpu is not None else None
    if gpu is None:
        caffe.set_mode_cpu()
    else:
        caffe.set_device(gpu)
        caffe.set_mode_gpu()
    spec = with_engine(net_memory.net_at_batch(net_path, batch, caffe.TRAIN), engine)
    with tempfile.NamedTemporaryFile('w', suffix='.prototxt', delete=False) as f:
        f.write(str(spec))
    try:
        net = caffe.Net(f.name, caffe.TRAIN)
    finally:
        os.remove(f.name)
    fill_inputs(net, data_param(net_path), np.random.RandomState(0))
    net.forward()  # the first pass allocates
    net.backward()
    total = caffe.Timer() if gpu is not None else WallTimer()
    total.start()
    for _ in range(iterations):
        net.forward()
        net.backward()
    total.stop()
    seconds = total.ms / 1000.0
    # Per layer, as `caffe time` does (timers stop the GPU after each layer: a second run).
    types = [layer.type for layer in net.layers]
    layer_ms = [0.0] * len(types)
    # caffe.Timer: CUDA events on the GPU; on the CPU it counts whole milliseconds only.
    timers = [caffe.Timer() if gpu is not None else WallTimer() for _ in types]

    def stop(i):
        timers[i].stop()
        layer_ms[i] += timers[i].ms
    net.before_forward(lambda i: timers[i].start())
    net.after_forward(stop)
    net.before_backward(lambda i: timers[i].start())
    net.after_backward(stop)
    for _ in range(iterations):
        net.forward()
        net.backward()
    ours = sum(ms for ms, kind in zip(layer_ms, types) if kind in OUR_LAYERS)
    after = gpu_check.memory_used_mib(gpu) if gpu is not None else None
    return {'net': net_path, 'batch': batch, 'engine': engine,
            'device': 'CPU' if gpu is None else 'GPU %d' % gpu, 'iterations': iterations,
            'images_per_s': batch * iterations / seconds,
            'our_layers_share': ours / max(sum(layer_ms), 1e-9),
            'gpu_memory_mib': None if gpu is None else after - before}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('net')
    parser.add_argument('--batch', type=int, required=True)
    parser.add_argument('--engine', choices=('CUDNN', 'CAFFE'), default='CUDNN')
    where = parser.add_mutually_exclusive_group()
    where.add_argument('--gpu', type=int, default=0)
    where.add_argument('--cpu', action='store_true')
    parser.add_argument('--iterations', type=int, default=5)
    parser.add_argument('--json', help='also write the figures here')
    args = parser.parse_args(argv)
    result = measure(args.net, args.batch, args.engine, None if args.cpu else args.gpu,
                     args.iterations)
    print('%s batch %d %s on %s: %.2f images/s, our layers %.1f %% of the time%s' % (
        os.path.relpath(args.net), args.batch, args.engine, result['device'],
        result['images_per_s'], 100 * result['our_layers_share'],
        '' if result['gpu_memory_mib'] is None else
        ', %d MiB of GPU memory' % result['gpu_memory_mib']))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(result, f)
    return 0


if __name__ == '__main__':
    sys.exit(main())
