#!/usr/bin/env -S sh -c 'exec "$(dirname "$0")/../.venv/bin/python" "$0" "$@"'
"""Speed of MultiLabelRoIDataLayer (prints figures; not a test).

1. Images per second of the layer at 672 x 672 with the five released scale factors and
   mirroring, against a plain loop of OpenCV decode + resize over the same JPEGs. The ratio is
   the figure (target >= 0.8).
2. The share of a small training iteration spent waiting for data (target < 5%): the time the
   solver spends in the data layer (waiting for and copying batches) over the time of its steps.
The JPEGs (640 x 480, smooth content plus noise, like photographs to the decoder) and their
datalist are made in a temporary folder.
"""
import argparse
import os
import tempfile
import textwrap
import time

import cv2
import numpy as np

import caffe
import caffe_layers  # noqa: F401  (registers our layers)
from mlic import openblas
from mlic.datalist import format_line
from mlic.preprocess import DEFAULT_MEAN_BGR as MEAN

SCALES = [0.714286, 0.857143, 1, 1.095239, 1.238096]
SIZE = 672
NUM_CLASSES = 80
BBOX_NUM = 500


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--images', type=int, default=64)
    parser.add_argument('--batch-size', type=int, default=8)
    parser.add_argument('--batches', type=int, default=24, help='batches timed per measure')
    parser.add_argument('--workers', type=int, default=2)
    parser.add_argument('--prefetch', type=int, default=4)
    parser.add_argument('--conv-channels', type=int, default=16,
                        help='width of the small net trained in the second measure')
    return parser.parse_args()


def make_dataset(folder, count):
    rng = np.random.RandomState(0)
    y, x = np.mgrid[0:480, 0:640]
    lines = []
    for i in range(count):
        base = np.stack([(x * (i + 1) % 256), (y * 3 + i * 7) % 256, (x + y) % 256], axis=2)
        image = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
        cv2.imwrite(os.path.join(folder, 'img%03d.jpg' % i), image,
                    [cv2.IMWRITE_JPEG_QUALITY, 90])
        x1 = rng.randint(0, SIZE // 2, BBOX_NUM)
        y1 = rng.randint(0, SIZE // 2, BBOX_NUM)
        proposals = np.stack([x1, y1, x1 + rng.randint(0, SIZE // 2, BBOX_NUM),
                              y1 + rng.randint(0, SIZE // 2, BBOX_NUM),
                              rng.rand(BBOX_NUM)], axis=1)
        lines.append(format_line('img%03d.jpg' % i, rng.randint(0, 2, NUM_CLASSES), proposals))
    with open(os.path.join(folder, 'list.txt'), 'w') as f:
        f.write('\n'.join(lines) + '\n')


def data_layer_text(folder, args):
    param = ("source: '%s' root_folder: '%s' batch_size: %d shuffle: true new_width: %d "
             "new_height: %d att_num: %d bbox_num: %d mirror: true workers: %d prefetch: %d "
             % (os.path.join(folder, 'list.txt'), folder, args.batch_size, SIZE, SIZE,
                NUM_CLASSES, BBOX_NUM, args.workers, args.prefetch))
    param += ' '.join('scale_factors: %g' % s for s in SCALES)
    param += ' ' + ' '.join('mean_value: %g' % m for m in MEAN)
    return textwrap.dedent('''
        layer { name: "data" type: "Python" top: "data" top: "label_roi"
          python_param { module: "caffe_layers.data_layer" layer: "MultiLabelRoIDataLayer"
                         param_str: "%s" } }
        layer { name: "slice" type: "Slice" bottom: "label_roi" top: "labels" top: "list_roi"
                slice_param { slice_point: %d } }
        layer { name: "roigen" type: "WsdRoigen" bottom: "list_roi" top: "roi" }
    ''') % (param, NUM_CLASSES)


def cpu_seconds(pid):
    """User + system CPU time of a process so far."""
    with open('/proc/%d/stat' % pid) as f:
        fields = f.read().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


def plain_loop_images_per_s(folder, count, rounds):
    """(images per second, CPU seconds per image)."""
    paths = [os.path.join(folder, 'img%03d.jpg' % i) for i in range(count)]
    start, start_cpu = time.time(), cpu_seconds(os.getpid())
    for _ in range(rounds):
        for path in paths:
            cv2.resize(cv2.imread(path, cv2.IMREAD_COLOR), (SIZE, SIZE))
    images = rounds * count
    return images / (time.time() - start), (cpu_seconds(os.getpid()) - start_cpu) / images


def data_layer_images_per_s(folder, args):
    path = os.path.join(folder, 'data.prototxt')
    with open(path, 'w') as f:
        f.write(data_layer_text(folder, args))
    net = caffe.Net(path, caffe.TRAIN)
    layer = net.layers[0]
    net.forward()  # the first batch waits for the workers to start
    # Batches already made (prefetch) were paid for before the clock starts: count them in.
    pids = [os.getpid()] + [w.pid for w in layer.workers]
    start, start_cpu = time.time(), sum(cpu_seconds(pid) for pid in pids)
    for _ in range(args.batches):
        net.forward()
    images = args.batches * args.batch_size
    cpu = sum(cpu_seconds(pid) for pid in pids) - start_cpu
    layer.close()
    return images / (time.time() - start), cpu / images


def waiting_share(folder, args):
    net_path = os.path.join(folder, 'train.prototxt')
    with open(net_path, 'w') as f:
        f.write(data_layer_text(folder, args) + textwrap.dedent('''
            layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
                    convolution_param { num_output: %d kernel_size: 3 stride: 2
                                        weight_filler { type: "gaussian" std: 0.01 } } }
            layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
            layer { name: "conv2" type: "Convolution" bottom: "conv1" top: "conv2"
                    convolution_param { num_output: %d kernel_size: 3 stride: 2
                                        weight_filler { type: "gaussian" std: 0.01 } } }
            layer { name: "pool" type: "Pooling" bottom: "conv2" top: "pool"
                    pooling_param { pool: AVE global_pooling: true } }
            layer { name: "score" type: "InnerProduct" bottom: "pool" top: "score"
                    inner_product_param { num_output: %d weight_filler { type: "xavier" } } }
            layer { name: "loss" type: "SigmoidCrossEntropyLoss" bottom: "score"
                    bottom: "labels" top: "loss" }
            layer { name: "silence" type: "Silence" bottom: "roi" }
        ''') % (args.conv_channels, args.conv_channels, NUM_CLASSES))
    solver_path = os.path.join(folder, 'solver.prototxt')
    with open(solver_path, 'w') as f:
        f.write('net: "%s"\nbase_lr: 0.00001\nlr_policy: "fixed"\nmomentum: 0.9\n'
                'display: 0\nsnapshot: 0\nsnapshot_prefix: "%s/snap"\n'
                % (net_path, folder))
    solver = caffe.SGDSolver(solver_path)
    layer = solver.net.layers[0]
    solver.step(2)  # warm up: workers started, buffers allocated
    layer.data_s = 0.0
    start = time.time()
    solver.step(args.batches)
    total = time.time() - start
    layer.close()
    return layer.data_s / total, total / args.batches


def main():
    args = parse_args()
    caffe.set_mode_cpu()
    with tempfile.TemporaryDirectory() as folder:
        make_dataset(folder, args.images)
        rounds = max(1, args.batches * args.batch_size // args.images)
        plain_loop_images_per_s(folder, args.images, 1)  # warm the file cache
        plain, plain_cpu = plain_loop_images_per_s(folder, args.images, rounds)
        layer, layer_cpu = data_layer_images_per_s(folder, args)
        print('cores: %d (load average %.1f), OpenBLAS kernels: %s, data layer workers: %d, '
              'prefetch: %d, batch: %d' % (os.cpu_count(), os.getloadavg()[0],
                                            openblas.loaded_core(), args.workers, args.prefetch,
                                            args.batch_size))
        print('plain OpenCV decode + resize to %d: %.1f images/s, %.1f ms CPU per image'
              % (SIZE, plain, 1000 * plain_cpu))
        print('data layer (5 scales, mirror, mean): %.1f images/s, %.1f ms CPU per image '
              '(workers and the net\'s process)' % (layer, 1000 * layer_cpu))
        print('ratio data layer / plain loop: %.2f (target >= 0.8)' % (layer / plain))
        share, step_s = waiting_share(folder, args)
        print('small training iteration: %.3f s; share waiting for data: %.1f%% (target < 5%%)'
              % (step_s, 100 * share))


if __name__ == '__main__':
    main()
