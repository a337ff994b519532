#!/usr/bin/env python3
"""The GPU check's bookkeeping (tools/gpu_check.sh); runs with any Python 3, before the venv.

  gpu_check_report.py gpus                  the GPUs, one line each: index arch name MiB;
                                            exit 2 and the reason when there is none
  gpu_check_report.py add RESULTS PART ITEM RESULT OK      one result row (OK: 1 or 0)
  gpu_check_report.py pytest RESULTS JUNIT_XML             a row per test module
  gpu_check_report.py ctest RESULTS CTEST_LOG OK           the gradient checks' row
  gpu_check_report.py speed RESULTS NET_TIME_JSON...       a row per measurement
  gpu_check_report.py memory RESULTS NET_TIME_JSON...      measured against estimated memory
  gpu_check_report.py summary RESULTS       the table; exit 1 when a row failed
"""
import json
import os
import re
import sys
import xml.etree.ElementTree as ElementTree

from mlic import gpu_check

MIB = 1024.0 ** 2


def add(results, part, item, result, ok):
    with open(results, 'a') as f:
        f.write(json.dumps({'part': part, 'item': item, 'result': result, 'ok': bool(ok)}) + '\n')


def pytest_rows(results, junit):
    root = ElementTree.parse(junit).getroot()
    modules = {}
    for case in root.iter('testcase'):
        module = case.get('classname', '').split('.')[-1] or '?'
        failed = case.find('failure') is not None or case.find('error') is not None
        skipped = case.find('skipped') is not None
        counts = modules.setdefault(module, [0, 0, 0])
        counts[1 if failed else 2 if skipped else 0] += 1
    if not modules:
        add(results, 'pytest tests/gpu', 'no test ran', 'see the log', False)
    for module, (passed, failed, skipped) in sorted(modules.items()):
        add(results, 'pytest tests/gpu', module,
            '%d passed, %d failed, %d skipped' % (passed, failed, skipped),
            failed == 0 and skipped == 0)


def ctest_row(results, log, ok):
    text = open(log, errors='replace').read()
    match = re.search(r'(\d+)% tests passed, (\d+) tests? failed out of (\d+)', text)
    result = ('%s of %s passed' % (int(match.group(3)) - int(match.group(2)), match.group(3))
              if match else 'no ctest summary in %s' % log)
    add(results, 'gradient checks', 'ctest (CPU and GPU typed tests)', result,
        ok == '1' and match is not None and match.group(2) == '0')


def load(paths):
    out = []
    for path in paths:
        with open(path) as f:
            out.append(json.load(f))
    return out


def speed_rows(results, paths):
    for r in load(paths):
        add(results, 'speed', '%s %s batch %d' % (os.path.basename(os.path.dirname(r['net'])) +
                                                  '/' + os.path.basename(r['net']),
                                                  r['engine'], r['batch']),
            '%.2f images/s forward+backward, our layers %.1f %%'
            % (r['images_per_s'], 100 * r['our_layers_share']), True)


def memory_rows(results, paths):
    from mlic import net_memory
    runs = load(paths)
    by_net = {}
    for r in runs:
        by_net.setdefault(r['net'], []).append(r)
    for net, rs in by_net.items():
        estimated = net_memory.estimates(net, sorted({r['batch'] for r in rs}))
        for r in sorted(rs, key=lambda r: r['batch']):
            total = net_memory.total(estimated[r['batch']], r['engine'])
            measured = r['gpu_memory_mib']
            add(results, 'GPU memory', '%s %s batch %d' % (
                os.path.relpath(net), r['engine'], r['batch']),
                '%s, estimated %.0f MiB' % (
                    'measured %.0f MiB (CUDA context included)' % measured
                    if measured is not None else 'not measured (%s)' % r['device'],
                    total / MIB), measured is not None)


def main(argv):
    command = argv[1] if len(argv) > 1 else ''
    if command == 'gpus':
        try:
            gpus = gpu_check.query_gpus()
        except gpu_check.NoGpu as e:
            sys.stderr.write('%s\n' % e)
            return 2
        for g in gpus:
            print('%d %s %s %d' % (g.index, gpu_check.cuda_arch(g.compute_cap),
                                   g.name.replace(' ', '_'), g.memory_mib))
        return 0
    if command == 'add':
        add(argv[2], argv[3], argv[4], argv[5], argv[6] == '1')
    elif command == 'pytest':
        pytest_rows(argv[2], argv[3])
    elif command == 'ctest':
        ctest_row(argv[2], argv[3], argv[4])
    elif command == 'speed':
        speed_rows(argv[2], argv[3:])
    elif command == 'memory':
        memory_rows(argv[2], argv[3:])
    elif command == 'summary':
        rows = gpu_check.read_results(argv[2])
        print(gpu_check.summary(rows))
        return 0 if rows and all(r['ok'] for r in rows) else 1
    else:
        sys.stderr.write(__doc__)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
