#!/usr/bin/env -S sh -c 'exec "$(dirname "$0")/../.venv/bin/python" "$0" "$@"'
"""Time and peak memory of reading a COCO-train-sized datalist (prints figures; not a test).

Writes a datalist of --lines lines (default 82,783, MS-COCO train2014) with 80 labels and
--proposals proposals each (default 500, about 1 GB) into a temporary folder, then reads it
as the data layer does (mlic.datalist.Datalist: checked, corners clipped to 672 x 672) in a
fresh process and prints the seconds and that process's peak resident memory (targets: under
15 s and under 1.2 GB). The proposals are random boxes with scores of 6 decimals, as
tools/compute_proposals.py writes them.
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

NUM_CLASSES = 80
SIZE = 672
# Distinct line bodies; the lines cycle through them with their own image names.
BODIES = 64

READ = '''
import resource, sys, time
start_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
from mlic.datalist import Datalist
start = time.time()
datalist = Datalist(sys.argv[1], %d, int(sys.argv[2]), %d, %d)
seconds = time.time() - start
usage = resource.getrusage(resource.RUSAGE_SELF)
print(len(datalist), datalist.proposals.nbytes, seconds, usage.ru_maxrss * 1024,
      start_rss * 1024, usage.ru_utime + usage.ru_stime)
''' % (NUM_CLASSES, SIZE, SIZE)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--lines', type=int, default=82783)
    parser.add_argument('--proposals', type=int, default=500)
    return parser.parse_args()


def line_bodies(proposals):
    rng = np.random.RandomState(0)
    bodies = []
    for _ in range(BODIES):
        labels = ' '.join(str(v) for v in (rng.rand(NUM_CLASSES) < 0.04).astype(int))
        x1, y1 = rng.randint(0, SIZE // 2, (2, proposals))
        w, h = rng.randint(0, SIZE // 2, (2, proposals))
        scores = np.round(rng.rand(proposals), 6)
        boxes = ' '.join('%d %d %d %d %s' % (a, b, a + c, b + d, repr(float(s)))
                         for a, b, c, d, s in zip(x1, y1, w, h, scores))
        bodies.append(labels + ' ' + boxes)
    return bodies


def write_list(path, lines, proposals):
    bodies = line_bodies(proposals)
    with open(path, 'w') as f:
        for i in range(lines):
            f.write('train2014/COCO_train2014_%012d.jpg %s\n' % (i, bodies[i % BODIES]))


def main():
    args = parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, 'train.txt')
        start = time.time()
        write_list(path, args.lines, args.proposals)
        size = os.path.getsize(path)
        print('datalist: %d lines x %d proposals, %.2f GB (written in %.0f s)'
              % (args.lines, args.proposals, size / 1e9, time.time() - start))
        done = subprocess.run([sys.executable, '-c', READ, path, str(args.proposals)],
                              stdout=subprocess.PIPE, check=True, text=True)
        count, nbytes, seconds, peak, base, cpu = done.stdout.split()
        print('read as the data layer does: %s images in %.1f s (target < 15 s; %.1f s of CPU, '
              'the figure on a busy machine), peak memory %.2f GB (target < 1.2 GB; the '
              'interpreter and numpy %.2f GB, the proposals %.2f GB), load average %.1f on %d '
              'cores' % (count, float(seconds), float(cpu), int(peak) / 1e9, int(base) / 1e9,
                         int(nbytes) / 1e9, os.getloadavg()[0], os.cpu_count()))


if __name__ == '__main__':
    main()
