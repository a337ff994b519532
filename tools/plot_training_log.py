#!/usr/bin/env -S sh -c 'exec "$(dirname "$0")/../.venv/bin/python" "$0" "$@"'
"""Training curves (loss per iteration, raw and smoothed, test losses as dots) from caffe logs.

  .venv/bin/python tools/plot_training_log.py runs/stage1.log runs/stage2.log -o curves.png \
      [--labels "stage 1" "stage 2"] [--overlay] [--window 10] [--log-y]

A log is what `caffe train` wrote to stderr (e.g. `tools/caffe train ... 2> stage1.log`).
"""
import argparse
import os
import sys

from mlic import caffe_log, plots


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('logs', nargs='+', help='caffe training logs')
    parser.add_argument('-o', '--output', required=True, help='PNG to write')
    parser.add_argument('--labels', nargs='+', help='one label per log (default: file names)')
    parser.add_argument('--overlay', action='store_true', help='all runs on one panel')
    parser.add_argument('--window', type=int, default=10,
                        help='logged values averaged for the smoothed curve (a run with fewer '
                             'is averaged whole, as its legend says)')
    parser.add_argument('--log-y', action='store_true', help='logarithmic loss axis')
    args = parser.parse_args(argv)
    labels = args.labels or [os.path.basename(path) for path in args.logs]
    if len(labels) != len(args.logs):
        parser.error('%d labels for %d logs' % (len(labels), len(args.logs)))
    if args.window < 1:
        parser.error('--window must be at least 1')
    runs = [(label, caffe_log.parse_log(path)) for label, path in zip(labels, args.logs)]
    plots.plot_training_curves(runs, args.output, overlay=args.overlay, window=args.window,
                               log_y=args.log_y)
    for label, parsed in runs:
        print('%s: %d train and %d test records' % (label, len(parsed['train']),
                                                     len(parsed['test'])))
    print('wrote %s' % args.output)
    return 0


if __name__ == '__main__':
    try:
        sys.exit(main())
    except (ValueError, OSError) as error:
        sys.exit('plot_training_log.py: %s' % error)
