#!/usr/bin/env -S sh -c 'exec "$(dirname "$0")/../.venv/bin/python" "$0" "$@"'
"""Prints the memory a net needs to train, from its blob shapes (no GPU, no data needed), and
the batch and iter_size that fit a GPU.

  tools/net_memory.py NET.prototxt [NET ...] [--batch N] [--solver S] [--gpu-gb 24,48,80]
                      [--effective-batch 32]

Columns: weights, their gradients, the solver's history, activations and their diffs, layers'
own buffers, Caffe's im2col buffers (absent with cuDNN), and the total with each engine. The
GPU sizes get the largest batch (and iter_size = effective batch / batch) that fits beside a
reserve for the CUDA context and the solver's test net.
"""
import argparse
import os
import sys

os.environ.setdefault('GLOG_minloglevel', '2')  # not Caffe's net-by-net set-up log

from mlic import net_memory  # noqa: E402

GIB = 1024.0 ** 3
# The CUDA context, cuBLAS and cuDNN handles and Caffe's own small allocations.
CONTEXT_BYTES = int(0.75 * GIB)


UNITS = {'GiB': GIB, 'MiB': 1024.0 ** 2}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('nets', nargs='+', metavar='NET', help='train prototxt(s)')
    parser.add_argument('--batch', type=int,
                        help='images per forward pass (default: the data layer\'s batch_size)')
    parser.add_argument('--solver', help='the solver, for its type (history copies); '
                                         'default SGD with momentum')
    parser.add_argument('--gpu-gb', default='24,48,80',
                        help="GPU sizes in GiB (a 24 GB card has 24 GiB) to fit the effective "
                             "batch into")
    parser.add_argument('--unit', choices=sorted(UNITS), default='GiB')
    parser.add_argument('--effective-batch', type=int,
                        help='batch x iter_size to keep (default: the batch)')
    args = parser.parse_args(argv)
    solver_type = net_memory.solver_type_of(args.solver) if args.solver else 'SGD'
    gpus = [float(g) for g in args.gpu_gb.split(',') if g]
    header = ['net', 'batch', 'weights', 'w.diffs', 'history', 'activ.', 'a.diffs', 'buffers',
              'im2col', 'test net', 'total cuDNN', 'total Caffe'] + \
        ['%g GB: batch x iter_size' % g for g in gpus]
    rows = []
    unit = UNITS[args.unit]

    def gib(n):
        return '%.2f' % (n / unit)
    try:
        for net in args.nets:
            batch = args.batch or own_batch(net)
            effective = args.effective_batch or batch
            every = net_memory.estimates(net, sorted(set(range(1, effective + 1)) | {batch}),
                                         solver_type=solver_type)
            memory = every[batch]
            test = net_memory.test_net_activations(net)
            fits = []
            for g in gpus:
                found = net_memory.iter_size_for(every.__getitem__, effective, g * GIB,
                                                 CONTEXT_BYTES + test, engine='CUDNN')
                fits.append('%d x %d' % found if found else 'does not fit')
            rows.append([os.path.relpath(net), str(batch)] + [gib(v) for v in memory] +
                        [gib(test), gib(net_memory.total(memory, 'CUDNN') + test),
                         gib(net_memory.total(memory, 'CAFFE') + test)] + fits)
    except (net_memory.NetMemoryError, OSError) as e:
        sys.stderr.write('tools/net_memory.py: %s\n' % e)
        return 1
    print('%s of float32; the GPU columns fit the effective batch with cuDNN, keeping %.2f GiB '
          'for the CUDA context and the test net beside.' % (args.unit, CONTEXT_BYTES / GIB))
    print(markdown_table(header, rows))
    return 0


def own_batch(net_path):
    """The TRAIN data layer's batch_size, or the first Input's first dimension."""
    import caffe
    net = net_memory.net_at_batch(net_path, None, caffe.TRAIN)
    for layer in net.layer:
        if layer.type == 'Input':
            return layer.input_param.shape[0].dim[0]
    raise net_memory.NetMemoryError('%s has no data layer to take the batch from; give --batch'
                                    % net_path)


def markdown_table(header, rows):
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
    lines = ['| ' + ' | '.join(c.ljust(w) for c, w in zip(row, widths)) + ' |'
             for row in [header] + rows]
    lines.insert(1, '|' + '|'.join('-' * (w + 2) for w in widths) + '|')
    return '\n'.join(lines)


if __name__ == '__main__':
    sys.exit(main())
