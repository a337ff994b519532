"""Parse the glog output of `caffe train` into per-iteration records.

The solver writes, every `display` iterations (solver.cpp / sgd_solver.cpp):
    I1121 04:50:31.894886 155 solver.cpp:239] Iteration 5 (5 iter/s, 1s/5 iters), loss = 1.18
    I1121 04:50:31.894893 155 solver.cpp:258]     Train net output #0: aux = 0.5 (* 0.5 = 0.25 loss)
    I1121 04:50:31.894912 155 sgd_solver.cpp:112] Iteration 5, lr = 0.01
and every `test_interval` iterations:
    I1121 04:50:31.894785 155 solver.cpp:347] Iteration 10, Testing net (#0)
    I1121 04:50:31.894860 155 solver.cpp:414]     Test net output #0: loss = 1.07 (* 1 = 1.07 loss)
The displayed loss is already the solver's running mean over `average_loss` iterations.
Older Caffe writes "Iteration 5, loss = 1.18"; newer glog writes the year in the date
("I20261121 ..."). Both are read.

Only glog lines count: a line must hold a glog prefix ("I1121 04:50:31.894 15155 file.cpp:12] ").
Python layers print to stdout, which is interleaved with glog's stderr when both go to one file;
their lines carry no prefix and are skipped, and a glog line glued to the end of an unterminated
print is still found because the prefix is searched anywhere in the line.
"""
import re

_GLOG = re.compile(r'[IWEF](?:\d{4}|\d{8}) (\d\d):(\d\d):(\d\d\.\d+)\s+\d+ [^\s\]]+:\d+\] (.*)$')
_NUMBER = r'([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[-+]?nan|[-+]?inf)'
_TRAIN_LOSS = re.compile(r'^Iteration (\d+)(?: \(([^)]*)\))?, loss = ' + _NUMBER)
_LEARNING_RATE = re.compile(r'^Iteration (\d+), lr = ' + _NUMBER)
_TESTING = re.compile(r'^Iteration (\d+), Testing net \(#(\d+)\)')
_OUTPUT = re.compile(r'^\s*(Train|Test) net output #(\d+): (\S+) = ' + _NUMBER
                     + r'(?: \(\* ' + _NUMBER + r' = ' + _NUMBER + r' loss\))?')
_SPEED = re.compile(_NUMBER + r' iter/s')
_SOLVING = re.compile(r'^Solving (\S+)')


def parse_log_lines(lines):
    """Records of a caffe training log given as lines of text.

    Returns {'net': name from "Solving NAME" (or None), 'train': [...], 'test': [...]}.
    A train record: {'iteration', 'loss', 'lr' (None until printed), 'iter_per_s' (None when not
    printed), 'seconds' (time since the first glog line), 'outputs': {name: value},
    'weighted_outputs': {name: value * loss_weight, for loss outputs}}.
    A test record: {'iteration', 'test_net', 'seconds', 'outputs', 'weighted_outputs'}.
    A log that restarts (a resumed run) simply continues the lists; iterations then repeat.
    """
    result = {'net': None, 'train': [], 'test': []}
    current = None          # the record the next "net output" lines belong to
    start = None
    previous_clock = None
    day_offset = 0.0
    for line in lines:
        found = _GLOG.search(line)
        if not found:
            continue
        hours, minutes, seconds, message = found.groups()
        clock = int(hours) * 3600 + int(minutes) * 60 + float(seconds)
        if previous_clock is not None and clock < previous_clock - 43200:
            day_offset += 86400.0  # the run went past midnight
        previous_clock = clock
        if start is None:
            start = clock
        elapsed = clock + day_offset - start

        match = _SOLVING.match(message)
        if match and result['net'] is None:
            result['net'] = match.group(1)
            continue
        match = _TRAIN_LOSS.match(message)
        if match:
            speed = _SPEED.search(match.group(2) or '')
            current = {'iteration': int(match.group(1)), 'loss': float(match.group(3)),
                       'lr': None, 'iter_per_s': float(speed.group(1)) if speed else None,
                       'seconds': elapsed, 'outputs': {}, 'weighted_outputs': {}}
            result['train'].append(current)
            continue
        match = _TESTING.match(message)
        if match:
            current = {'iteration': int(match.group(1)), 'test_net': int(match.group(2)),
                       'seconds': elapsed, 'outputs': {}, 'weighted_outputs': {}}
            result['test'].append(current)
            continue
        match = _LEARNING_RATE.match(message)
        if match:
            iteration, rate = int(match.group(1)), float(match.group(2))
            for record in reversed(result['train']):
                if record['iteration'] == iteration:
                    record['lr'] = rate
                    break
            continue
        match = _OUTPUT.match(message)
        if match and current is not None:
            kind, _, name, value, _, weighted = match.groups()
            expected = 'test_net' in current
            if (kind == 'Test') != expected:
                continue  # an output line without its header line: nothing to attach it to
            current['outputs'][name] = float(value)
            if weighted is not None:
                current['weighted_outputs'][name] = float(weighted)
    return result


def parse_log(path):
    """parse_log_lines of the file at `path`."""
    with open(path, errors='replace') as log:
        return parse_log_lines(log)


def series(records, key):
    """(iterations, values) of `key` ('loss', 'lr' or an output name) where records have it."""
    iterations, values = [], []
    for record in records:
        value = record.get(key) if key in ('loss', 'lr') else record['outputs'].get(key)
        if value is not None:
            iterations.append(record['iteration'])
            values.append(value)
    return iterations, values
