"""The GPU check's parts that need no GPU: finding the GPUs (nvidia-smi), the architecture to
build for, the GPU memory a process holds, and the summary table of the check's results.

The check (tools/gpu_check.sh) records each result as one JSON object per line in a results
file: {"part": ..., "item": ..., "result": ..., "ok": true/false}; `summary` makes the table.
"""
import collections
import json
import subprocess
import xml.etree.ElementTree as ElementTree

Gpu = collections.namedtuple('Gpu', 'index name compute_cap memory_mib')


class NoGpu(RuntimeError):
    pass


def parse_gpus(text):
    """[Gpu] from `nvidia-smi --query-gpu=index,name,compute_cap,memory.total
    --format=csv,noheader,nounits` output."""
    gpus = []
    for line in text.splitlines():
        if not line.strip():
            continue
        parts = [p.strip() for p in line.split(',')]
        if len(parts) != 4:
            raise NoGpu('cannot read nvidia-smi\'s line %r' % line)
        index, name, cap, memory = parts
        try:
            gpus.append(Gpu(int(index), name, cap, int(float(memory))))
        except ValueError:
            raise NoGpu('cannot read nvidia-smi\'s line %r' % line)
    return gpus


def query_gpus(smi='nvidia-smi'):
    """The GPUs the driver sees; NoGpu saying why there are none."""
    try:
        result = subprocess.run([smi, '--query-gpu=index,name,compute_cap,memory.total',
                                 '--format=csv,noheader,nounits'], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, timeout=120)
    except FileNotFoundError:
        raise NoGpu('nvidia-smi is not installed: no NVIDIA driver on this machine')
    except subprocess.TimeoutExpired:
        raise NoGpu('nvidia-smi did not answer in 120 s')
    if result.returncode != 0:
        first = (result.stdout.strip().splitlines() or ['(no output)'])[0]
        raise NoGpu('nvidia-smi finds no GPU: %s' % first)
    gpus = parse_gpus(result.stdout)
    if not gpus:
        raise NoGpu('nvidia-smi lists no GPU')
    return gpus


def cuda_arch(compute_cap):
    """nvcc's architecture number of a compute capability: '9.0' -> '90', '12.0' -> '120'."""
    major, _, minor = compute_cap.partition('.')
    if not (major.isdigit() and minor.isdigit()):
        raise NoGpu('cannot read the compute capability %r' % compute_cap)
    return major + minor


def memory_used_mib(index, smi='nvidia-smi'):
    """MiB in use on GPU `index` (every process's; the check runs alone on its GPU)."""
    result = subprocess.run([smi, '--query-gpu=memory.used', '--format=csv,noheader,nounits',
                             '-i', str(index)], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, timeout=120)
    return int(float(result.stdout.strip().splitlines()[0]))


def junit_counts(path):
    """(passed, failed, skipped) of a pytest --junitxml file."""
    root = ElementTree.parse(path).getroot()
    suites = [root] if root.tag == 'testsuite' else root.findall('testsuite')
    tests = failed = skipped = 0
    for suite in suites:
        tests += int(suite.get('tests', 0))
        failed += int(suite.get('failures', 0)) + int(suite.get('errors', 0))
        skipped += int(suite.get('skipped', 0))
    return tests - failed - skipped, failed, skipped


def read_results(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def summary(rows):
    """The Markdown table of result rows, in the order given; a last line counts failures."""
    header = ['part', 'item', 'result', 'ok']
    cells = [[str(r['part']), str(r['item']), str(r['result']), 'yes' if r['ok'] else 'NO']
             for r in rows]
    widths = [max(len(c[i]) for c in [header] + cells) for i in range(4)]
    lines = ['| ' + ' | '.join(c.ljust(w) for c, w in zip(row, widths)) + ' |'
             for row in [header] + cells]
    lines.insert(1, '|' + '|'.join('-' * (w + 2) for w in widths) + '|')
    failed = sum(1 for r in rows if not r['ok'])
    lines.append('')
    lines.append('GPU check: %s' % ('all %d parts passed' % len(rows) if not failed
                                    else '%d of %d parts FAILED' % (failed, len(rows))))
    return '\n'.join(lines)
