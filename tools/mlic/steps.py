"""The step runner of the pipeline and the fingerprints that decide which steps a rerun redoes.

A step is a folder with a DONE file holding the fingerprint (sha256 of the JSON text) of what the
step was made from; a step whose DONE holds its current fingerprint is complete and skipped. The
graph runner starts every step once the steps it needs are done, up to `jobs` at a time.
"""
import hashlib
import json
import os
import shutil
import sys
import time

from mlic.run_config import ConfigError


def log(message):
    sys.stderr.write('%s %s\n' % (time.strftime('%H:%M:%S'), message))
    sys.stderr.flush()


def run_graph(graph, wanted, jobs=1, order=None):
    """Runs the steps that `wanted` need, each once the steps it needs are done, up to `jobs`
    at a time in threads (a training's work is its caffe process); returns {key: result}.

    graph: {key: (keys it needs, callable(done) -> result)}, where done maps the keys it needs
    to their results. order(key): among the steps ready at once, the smallest starts first.
    A failing step lets the running ones finish (their snapshots resume the next run), starts
    no more and is raised."""
    from concurrent import futures
    needed, stack = set(), list(wanted)
    while stack:
        key = stack.pop()
        if key not in graph:
            raise KeyError('no step %r' % (key,))
        if key not in needed:
            needed.add(key)
            stack.extend(graph[key][0])
    describe = lambda key: ' '.join(map(str, key)) if isinstance(key, tuple) else str(key)  # noqa
    done, running, failure = {}, {}, None
    with futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        while True:
            if failure is None:
                ready = sorted((key for key in needed if key not in done
                                and key not in running.values()
                                and all(need in done for need in graph[key][0])), key=order)
                for key in ready[:jobs - len(running)]:
                    needs, run = graph[key]
                    running[pool.submit(run, {need: done[need] for need in needs})] = key
            if not running:
                break
            finished, _ = futures.wait(running, return_when=futures.FIRST_COMPLETED)
            for future in finished:
                key = running.pop(future)
                if future.exception() is not None:
                    if failure is None:
                        failure = future.exception()
                        if running:
                            log('%s failed; waiting for the %d step(s) still running'
                                % (describe(key), len(running)))
                else:
                    done[key] = future.result()
    if failure is not None:
        raise failure
    stuck = sorted(map(describe, needed - set(done)))
    if stuck:
        raise ValueError('steps that need each other: %s' % ', '.join(stuck))
    return done


def fingerprint(*parts):
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def file_fingerprint(path, cache_path):
    """sha256 of a file's content. A changed file changes it; a file only touched does not. The
    hashes are kept in cache_path by (size, mtime), so an unchanged file is read once."""
    path = os.path.abspath(path)
    stat = os.stat(path)
    cache = {}
    if os.path.exists(cache_path):
        with open(cache_path) as f:
            cache = json.load(f)
    stamp = [stat.st_size, stat.st_mtime_ns]
    if path in cache and cache[path][:2] == stamp:
        return cache[path][2]
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 22), b''):
            digest.update(block)
    cache[path] = stamp + [digest.hexdigest()]
    with open(cache_path + '.tmp', 'w') as f:
        json.dump(cache, f, indent=1)
    os.replace(cache_path + '.tmp', cache_path)
    return cache[path][2]


class Step(object):
    """A step's folder and its completion marker (the fingerprint of what it was made from)."""

    def __init__(self, folder, name, key):
        self.name, self.key = name, key
        self.dir = os.path.join(folder, name)
        self.marker = os.path.join(self.dir, 'DONE')

    def done(self):
        if not os.path.exists(self.marker):
            return False
        with open(self.marker) as f:
            return f.read().strip() == self.key

    def finish(self):
        with open(self.marker, 'w') as f:
            f.write(self.key + '\n')

    def start(self):
        # A step redone from scratch must not pick up stale snapshots of other settings; a step
        # interrupted with the same settings keeps its snapshots and resumes from them.
        stamp = os.path.join(self.dir, 'SETTINGS')
        if os.path.exists(stamp) and open(stamp).read().strip() != self.key:
            shutil.rmtree(self.dir)
        os.makedirs(self.dir, exist_ok=True)
        with open(stamp, 'w') as f:
            f.write(self.key + '\n')


LOCATION = 'LOCATION'


def check_location(folder):
    """Raises ConfigError when the run folder `folder` was made at another path.

    The datalists, nets and solvers a run writes name its files by absolute path, and those
    paths enter the steps' fingerprints: in a moved or copied folder every step would run
    again, replacing trained weights first, and the first training would then fail on images
    that are no longer where its datalist says."""
    stamp = os.path.join(folder, LOCATION)
    if not os.path.exists(stamp):
        return
    with open(stamp) as f:
        made_at = f.read().strip()
    if made_at and os.path.realpath(made_at) != os.path.realpath(folder):
        raise ConfigError(
            '%s: this run folder was made at %s and is now used from %s; the datalists, nets '
            'and solvers in it name files under %s, so every step would run again and replace '
            'what it holds (trained weights included). Move it back to %s, or make the run '
            'in a new folder.' % (stamp, made_at, folder, made_at, made_at))


class Workspace(object):
    """The run folder and the bookkeeping every step shares: its fingerprinted Step folders,
    the progress log, the times of the steps run, the BLAS threads of a training."""

    def __init__(self, folder, jobs=1, progress=True):
        self.folder, self.jobs, self.progress = folder, jobs, progress
        self.timings = []  # (step folder, seconds) of the steps run this time
        os.makedirs(folder, exist_ok=True)
        # Checked by the pipeline before anything is written here (check_location).
        stamp = os.path.join(folder, LOCATION)
        if not os.path.exists(stamp):
            with open(stamp, 'w') as f:
                f.write(folder + '\n')

    def step(self, name, *inputs, folder=None):
        """The Step `name` under `folder` (default: the run folder), its key the fingerprint of
        the name and `inputs`."""
        return Step(folder or self.folder, name, fingerprint(name, *inputs))

    def run_step(self, step, body, describe):
        """Runs body(step) unless the step is done already; logs and times it."""
        if step.done():
            log('%-15s done already (%s)' % (step.name, os.path.relpath(step.dir, self.folder)))
            return
        log('%-15s %s' % (step.name, describe))
        start = time.time()
        step.start()
        body(step)
        step.finish()
        self.timings.append((step.dir, time.time() - start))
        log('%-15s finished in %.0f s' % (step.name, time.time() - start))

    def hash_cache(self):
        """Where file_fingerprint keeps the hashes of the files it read."""
        return os.path.join(self.folder, 'file_hashes.json')

    def file_key(self, path):
        return file_fingerprint(path, self.hash_cache())

    def training_progress(self):
        """caffe_train.train's progress: one line every 10 s when trainings run side by side."""
        return self.progress and ('lines' if self.jobs > 1 else True)

    def training_env(self):
        """The environment of a caffe training: with `jobs` trainings at once each gets its
        share of the cores for BLAS (the small nets gain nothing from a second thread), unless
        the caller chose a thread count."""
        env = dict(os.environ)
        if self.jobs > 1:
            threads = str(max(1, len(os.sched_getaffinity(0)) // self.jobs))
            for name in ('OPENBLAS_NUM_THREADS', 'OMP_NUM_THREADS'):
                env.setdefault(name, threads)
        return env
