"""Caffe training through pycaffe: on the CPU, one GPU, several GPUs of one machine, or GPUs on
many machines, with the caffe tool's conventions.

Why not `caffe train -gpu 0,1`: BVLC Caffe refuses a TRAIN-phase Python layer (our data layer)
when the caffe tool runs several solvers in one process ("PythonLayer does not support CLI
Multi-GPU"): they would share one interpreter lock. Caffe's answer, followed here, is one pycaffe
process per GPU (`caffe.set_multiprocess(True)`), each with its own solver of rank r of N,
joined by NCCL: rank 0's weights are broadcast at the start and every iteration's gradients are
summed over the ranks before each solver applies the same update. The data layer gives every
rank its own share of each epoch's images, so N GPUs train on N different batches per
iteration: the effective batch is N times the net's.

The solver runs one iteration per `step(1)` call, so that between iterations we can act on
signals as the caffe tool does (SIGINT: snapshot and stop; SIGHUP: snapshot and go on), report
progress and stop every rank after the same iteration. One step at a time trains exactly what
`Solver::Solve` trains; only Caffe's own "Iteration N, loss = X" lines then show the iteration's
loss instead of the average over `average_loss` iterations (our progress line shows the
average).

On one machine `train()` starts the ranks as child processes and stays their parent: it takes
the signals, prints the progress and tells the ranks when to stop. Under a cluster launcher
every rank is started by the launcher (`run_rank_from_env`); rank 0 then plays the parent's part
and the stop is posted in a file next to the NCCL id file.
"""
import collections
import math
import multiprocessing
import os
import queue
import signal
import sys
import time

from mlic import distributed

# What a signal asks for, as the caffe tool's -sigint_effect / -sighup_effect name it.
EFFECTS = ('stop', 'snapshot', 'none')
NONE, SNAPSHOT, STOP = 0, 1, 2
EFFECT_CODE = {'none': NONE, 'snapshot': SNAPSHOT, 'stop': STOP}
# How often the parent looks whether a rank died while it waits for news.
POLL_S = 1.0

Outcome = collections.namedtuple('Outcome', 'iteration caffemodel solverstate stopped')


class TrainerError(RuntimeError):
    pass


class Job(collections.namedtuple('Job',
                                 'solver gpus weights snapshot sigint sighup cwd log env')):
    """What every rank needs to know: the solver file, the devices (empty: CPU), the
    .caffemodel files to start from, the .solverstate to resume, the signal effects, the folder
    the solver's paths are relative to, the log file (None: the terminal) and the environment
    of the ranks (None: this process's)."""


def parse_gpus(text):
    """--gpus as the caffe tool's -gpu takes it: '0,1,3' or 'all' (every device nvidia-smi
    lists); '' is the CPU."""
    text = (text or '').strip()
    if not text:
        return ()
    if text == 'all':
        return tuple(range(count_gpus()))
    try:
        gpus = tuple(int(part) for part in text.split(','))
    except ValueError:
        raise TrainerError('--gpus %r: give device numbers separated by commas (0,1) or "all"'
                           % text)
    if any(g < 0 for g in gpus) or len(set(gpus)) != len(gpus):
        raise TrainerError('--gpus %r: device numbers must be distinct and not negative' % text)
    return gpus


def count_gpus():
    import subprocess
    try:
        listing = subprocess.run(['nvidia-smi', '-L'], stdout=subprocess.PIPE,
                                 stderr=subprocess.DEVNULL, text=True, timeout=60).stdout
    except (OSError, subprocess.TimeoutExpired):
        listing = ''
    count = sum(1 for line in listing.splitlines() if line.startswith('GPU '))
    if count == 0:
        raise TrainerError('--gpus all: nvidia-smi lists no GPU on this machine')
    return count


def read_solver(path):
    from caffe.proto import caffe_pb2
    from google.protobuf import text_format
    solver = caffe_pb2.SolverParameter()
    try:
        with open(path) as f:
            text_format.Merge(f.read(), solver)
    except OSError as e:
        raise TrainerError('cannot read the solver %s: %s' % (path, e))
    except text_format.ParseError as e:
        raise TrainerError('%s: %s' % (path, e))
    return solver


def default_gpus(solver_param):
    """The caffe tool's rule when no -gpu is given: a solver that says solver_mode: GPU runs on
    its device_id (0 when unset); otherwise the CPU."""
    if solver_param.HasField('solver_mode') and \
            solver_param.solver_mode == solver_param.GPU:
        return (solver_param.device_id,)
    return ()


def check_job(job):
    """The mistakes that can be named before any process starts."""
    if not os.path.isfile(job.solver):
        raise TrainerError('the solver %s does not exist' % job.solver)
    if job.snapshot and job.weights:
        raise TrainerError('give either --snapshot (resume) or --weights (start from), not both; '
                           'the caffe tool refuses that too')
    for path in list(job.weights) + ([job.snapshot] if job.snapshot else []):
        if not os.path.isfile(os.path.join(job.cwd or '', path)):
            raise TrainerError('%s does not exist' % path)
    for name, effect in (('sigint', job.sigint), ('sighup', job.sighup)):
        if effect not in EFFECTS:
            raise TrainerError('--%s-effect %r: choose one of %s' % (name, effect,
                                                                     ', '.join(EFFECTS)))


def with_resumed_data(job):
    """The job with, when it resumes a snapshot, a solver whose data layer starts at the
    snapshot's batch (caffe_train.resumed_solver): the ranks go on with the batches an
    uninterrupted run would have had."""
    from mlic import caffe_train
    iteration = caffe_train.snapshot_iteration(job.snapshot) if job.snapshot else None
    if iteration is None:
        return job
    return job._replace(solver=caffe_train.resumed_solver(job.solver, iteration,
                                                          job.cwd or os.getcwd()))


def snapshot_paths(prefix, iteration, snapshot_format=0):
    """The .caffemodel and .solverstate Caffe writes at `iteration`; snapshot_format HDF5 (0)
    adds .h5 to both, BINARYPROTO (1, the default) does not."""
    suffix = '.h5' if snapshot_format == 0 else ''
    return ('%s_iter_%d.caffemodel%s' % (prefix, iteration, suffix),
            '%s_iter_%d.solverstate%s' % (prefix, iteration, suffix))


# ---- what the ranks share -------------------------------------------------------------------

class LocalBoard(object):
    """Requests and the stop, between the parent and its ranks, in shared memory."""

    def __init__(self, context):
        self._request = context.Value('i', NONE)
        self._stop_at = context.Value('l', -1)

    def request(self, action):  # the parent's signal handler
        with self._request.get_lock():
            self._request.value = max(self._request.value, action)

    def take_request(self):  # rank 0, between iterations
        with self._request.get_lock():
            action, self._request.value = self._request.value, NONE
        return action

    def post_stop(self, iteration, seconds_per_iteration, count):
        # Shared memory is seen at once. Alone, stop now; with other ranks, after the next
        # iteration: none of them can be past it (it needs rank 0's gradients), and one that
        # looked before this was posted is at most inside it.
        self._stop_at.value = iteration + (1 if count > 1 else 0)

    def stop_at(self):
        value = self._stop_at.value
        return None if value < 0 else value


class FileBoard(object):
    """Requests from this process's own signals (rank 0 under a launcher) and the stop posted in
    a file on shared storage: `<nccl id file>.stop`, holding the run's key and the iteration."""

    # A network file system may show a new file to another node only after some seconds: the
    # stop is posted that far ahead (at least two iterations).
    VISIBLE_AFTER_S = 10.0

    def __init__(self, id_file, key):
        self.path = id_file + '.stop'
        self.key = key
        self._request = NONE
        self._stop_at = None

    def request(self, action):
        self._request = max(self._request, action)

    def take_request(self):
        action, self._request = self._request, NONE
        return action

    def post_stop(self, iteration, seconds_per_iteration, count):
        ahead = max(2, int(math.ceil(self.VISIBLE_AFTER_S / max(seconds_per_iteration, 1e-3))))
        self._stop_at = iteration + ahead
        temporary = '%s.tmp.%d' % (self.path, os.getpid())
        with open(temporary, 'w') as f:
            f.write('%s %d\n' % (self.key, self._stop_at))
        os.replace(temporary, self.path)

    def stop_at(self):
        if self._stop_at is None:
            try:
                with open(self.path) as f:
                    key, at = f.read().split()
                if key == self.key:
                    self._stop_at = int(at)
            except (OSError, ValueError):
                pass
        return self._stop_at

    def clear(self):  # rank 0 at the start: an earlier run's stop is not ours
        try:
            os.remove(self.path)
        except OSError:
            pass


# ---- one rank ---------------------------------------------------------------------------------

class LossMeter(object):
    """The training loss of each iteration as Solver::Step computes it (the loss-weighted sum of
    the net's outputs, averaged over iter_size forward passes), read from the net after every
    forward pass."""

    def __init__(self, net, iter_size):
        self.iter_size = max(iter_size, 1)
        weights = net.blob_loss_weights
        self.blobs = [(net.blobs[name], w) for name, w in weights.items() if w != 0]
        self.passes = []
        last = len(net.layers) - 1
        net.after_forward(lambda layer: self.passes.append(self.current()) if layer == last
                          else None)

    def current(self):
        return sum(float(w) * float(blob.data.sum()) for blob, w in self.blobs)

    def take(self):
        """The last iteration's loss."""
        passes, self.passes = self.passes[-self.iter_size:], []
        return sum(passes) / max(len(passes), 1)


def _make_solver(caffe, job, param, rank, count, device, uid):
    if device is None:
        caffe.set_mode_cpu()
    else:
        caffe.set_device(device)
        caffe.set_mode_gpu()
    caffe.set_solver_count(count)
    caffe.set_solver_rank(rank)
    # One process per solver: lets TRAIN-phase Python layers run when there are several.
    caffe.set_multiprocess(True)
    solver = caffe.get_solver(job.solver)
    if job.snapshot:
        solver.restore(job.snapshot)
    for weights in job.weights:
        # As the caffe tool's -weights: every net of the solver, layers matched by name.
        solver.net.copy_from(weights)
        for net in solver.test_nets:
            net.copy_from(weights)
    if count > 1:
        if not hasattr(caffe.NCCL, 'new_uid'):
            raise TrainerError('this Caffe was built without NCCL (USE_NCCL): it trains on one '
                               'GPU only; rebuild it with MLIC_GPU=1 tools/setup/setup.sh')
        nccl = caffe.NCCL(solver, uid)
        nccl.bcast()  # every rank starts from rank 0's weights
        solver.add_callback(nccl)  # gradients summed over the ranks before each update
        if param.layer_wise_reduce:
            solver.net.after_backward(nccl)
    return solver


def _test(caffe, solver, param, log):
    """Solver::TestAll for the iteration Solve ends on (Step tests at the start of an
    iteration, so the last one is Solve's): every test net, test_iter passes, the mean of each
    output."""
    for k, net in enumerate(solver.test_nets):
        net.share_with(solver.net)
        iters = param.test_iter[k] if k < len(param.test_iter) else param.test_iter[-1]
        sums = collections.OrderedDict()
        for _ in range(iters):
            outputs = net.forward()
            for name, value in outputs.items():
                sums[name] = sums.get(name, 0) + value.astype('float64')
        for name, total in sums.items():
            for i, value in enumerate((total / max(iters, 1)).ravel()):
                log('Test net #%d output %s[%d] = %g' % (k, name, i, value))


def run_rank(job, rank, count, device, uid, board, report, parent_pid=None):
    """Trains as rank `rank` of `count` until max_iter or the posted stop; returns the
    Outcome. report(kind, *values) is rank 0's channel to whoever shows progress."""
    if job.cwd:
        os.chdir(job.cwd)
    import caffe
    import caffe_layers  # noqa: F401  (our C++ layers)
    param = read_solver(job.solver)
    solver = _make_solver(caffe, job, param, rank, count, device, uid)
    root = rank == 0
    meter = LossMeter(solver.net, param.iter_size) if root else None
    prefix = param.snapshot_prefix
    losses = collections.deque(maxlen=max(param.average_loss, 1))
    start_iter = solver.iter
    if root:
        report('start', start_iter, param.max_iter)
    started = time.time()
    last_snapshot = None
    stopped = False
    while solver.iter < param.max_iter:
        solver.step(1)  # snapshots every `snapshot` iterations, tests, displays as Solve does
        if param.snapshot and solver.iter % param.snapshot == 0:
            last_snapshot = solver.iter
        if root:
            loss = meter.take()
            losses.append(loss)
            report('iteration', solver.iter, loss, sum(losses) / len(losses))
            if not math.isfinite(loss):
                raise TrainerError('the loss became %s at iteration %d' % (loss, solver.iter))
            action = board.take_request()
            if action >= SNAPSHOT and last_snapshot != solver.iter:
                solver.snapshot()
                last_snapshot = solver.iter
                report('snapshot', solver.iter)
            if action == STOP:
                seconds = (time.time() - started) / max(solver.iter - start_iter, 1)
                board.post_stop(solver.iter, seconds, count)
        at = board.stop_at()
        if at is not None and solver.iter >= at:
            stopped = True
            break
        if parent_pid is not None and os.getppid() != parent_pid:
            raise TrainerError('the parent process is gone; rank %d stops' % rank)
    if not root:
        return None
    # Solve's end: a snapshot unless the last iteration wrote one, the final test.
    if param.snapshot_after_train and last_snapshot != solver.iter:
        solver.snapshot()
        last_snapshot = solver.iter
    if not stopped and param.display and solver.iter % param.display == 0:
        # Solve shows the loss of one more forward pass of the final weights.
        solver.net.forward()
        losses.append(meter.take())
        sys.stderr.write('Iteration %d, loss = %g\n' % (solver.iter, sum(losses) / len(losses)))
        sys.stderr.flush()
    if not stopped and param.test_interval and solver.iter % param.test_interval == 0 \
            and solver.test_nets:
        def show(text):  # in Caffe's log and on the progress stream
            sys.stderr.write(text + '\n')
            sys.stderr.flush()
            report('log', text)
        _test(caffe, solver, param, show)
    caffemodel, solverstate = (snapshot_paths(prefix, last_snapshot, param.snapshot_format)
                               if last_snapshot is not None else (None, None))
    return Outcome(solver.iter, caffemodel and os.path.abspath(caffemodel),
                   solverstate and os.path.abspath(solverstate), stopped)


# ---- one machine: the parent and its ranks ----------------------------------------------------

def _output_to(path):
    """This process's stdout and stderr (Caffe's log among them) appended to `path`."""
    out = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.dup2(out, 1)
    os.dup2(out, 2)
    os.close(out)
    sys.stdout = os.fdopen(1, 'w', buffering=1)
    sys.stderr = os.fdopen(2, 'w', buffering=1)


def _child(job, rank, count, device, uid_queue, board, messages, parent_pid):
    """A rank started by train(): in its own process group, so that Ctrl-C reaches the parent
    (which asks the ranks to stop together) and not the ranks or their data workers."""
    os.setpgid(0, 0)
    if job.env is not None:  # before Caffe and its libraries read it
        os.environ.clear()
        os.environ.update(job.env)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    if job.log:
        _output_to(job.log)
    try:
        uid = None
        if count > 1:
            import caffe
            if not hasattr(caffe.NCCL, 'new_uid'):
                raise TrainerError('this Caffe was built without NCCL (USE_NCCL): it trains on '
                                   'one GPU only; rebuild it with MLIC_GPU=1 '
                                   'tools/setup/setup.sh')
            if rank == 0:
                uid = bytes(caffe.NCCL.new_uid())
                for _ in range(count - 1):
                    uid_queue.put(uid)
            else:
                uid = uid_queue.get(timeout=600)
        outcome = run_rank(job, rank, count, device, uid, board,
                           lambda *message: messages.put((rank,) + message), parent_pid)
        messages.put((rank, 'done', outcome))
    except BaseException as e:  # the parent reports it and stops the other ranks
        import traceback
        traceback.print_exc()
        sys.stderr.flush()
        messages.put((rank, 'error', '%s: %s' % (type(e).__name__, e)))
        os._exit(1)


class Progress(object):
    """A line with the iteration, the loss averaged as Caffe's display does, the speed and the
    time left; on a terminal it updates in place, elsewhere (or with lines, when trainings run
    side by side) a line every `every` seconds."""

    def __init__(self, label, stream=sys.stderr, every=10.0, lines=False):
        self.label, self.stream, self.every = label, stream, every
        self.tty = not lines and hasattr(stream, 'isatty') and stream.isatty()
        self.last_print = 0.0
        self.first = self.total = None
        self.start = time.time()

    def begin(self, iteration, total):
        self.first, self.total, self.start = iteration, total, time.time()

    def text(self, iteration, smoothed, now):
        done = iteration - self.first
        rate = done / max(now - self.start, 1e-9)
        left = (self.total - iteration) / rate if rate > 0 else float('inf')
        return '%s %d/%d  loss %.4f  %.2f it/s  ETA %s' % (
            self.label, iteration, self.total, smoothed, rate, format_duration(left))

    def update(self, iteration, smoothed, force=False):
        now = time.time()
        if not (force or self.tty or now - self.last_print >= self.every):
            return
        self.last_print = now
        line = self.text(iteration, smoothed, now)
        self.stream.write(('\r%-79s' % line) if self.tty else line + '\n')
        self.stream.flush()

    def say(self, line):
        self.stream.write(('\r%-79s\n' % line) if self.tty else line + '\n')
        self.stream.flush()


def format_duration(seconds):
    if not math.isfinite(seconds):
        return '?'
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return ('%d:%02d:%02d' % (hours, rest // 60, rest % 60) if hours
            else '%d:%02d' % (rest // 60, rest % 60))


def _log_tail(path, lines=30):
    if not path:
        return ''
    try:
        with open(path, errors='replace') as f:
            return ''.join(f.readlines()[-lines:])
    except OSError:
        return ''


def train(solver, gpus=(), weights=(), snapshot=None, log=None, progress=True,
          sigint_effect='stop', sighup_effect='snapshot', cwd=None, label=None,
          stream=sys.stderr, env=None):
    """Trains `solver` on the CPU (gpus empty) or on the given GPUs of this machine, one process
    per GPU; returns the Outcome (the iteration reached, the last .caffemodel and .solverstate
    written, whether a signal stopped it early).

    weights: .caffemodel files to start from (like `caffe train -weights a,b`); snapshot: a
    .solverstate to resume. Relative paths (these, and the solver's own) are relative to cwd
    (default: the current folder). log: a file that takes Caffe's output (appended), else it
    goes to stderr. progress: print the progress line to `stream` (True), as separate lines
    ('lines'), or not (False). env: the ranks' environment (default this process's)."""
    job = Job(os.path.abspath(solver), tuple(gpus), tuple(weights), snapshot, sigint_effect,
              sighup_effect, cwd and os.path.abspath(cwd), log and os.path.abspath(log),
              dict(env) if env is not None else None)
    check_job(job)
    job = with_resumed_data(job)
    if job.log:
        os.makedirs(os.path.dirname(job.log), exist_ok=True)
    count = max(len(job.gpus), 1)
    # Fresh interpreters, not forks: the parent may hold state (pycaffe, a CUDA context, locks
    # of threads) that a fork would copy half-made.
    context = multiprocessing.get_context('spawn')
    board = LocalBoard(context)
    messages = context.Queue()
    uid_queue = context.Queue()
    ranks = [context.Process(target=_child, name='caffe-rank-%d' % rank,
                             args=(job, rank, count, job.gpus[rank] if job.gpus else None,
                                   uid_queue, board, messages, os.getpid()))
             for rank in range(count)]
    bar = (Progress(label or os.path.basename(solver), stream, lines=progress == 'lines')
           if progress else None)
    handlers = {}

    def on_signal(signum, frame):
        effect = job.sigint if signum == signal.SIGINT else job.sighup
        board.request(EFFECT_CODE[effect])
        if bar and effect != 'none':
            bar.say('%s: %s at the end of this iteration'
                    % (signal.Signals(signum).name,
                       'snapshot and stop' if effect == 'stop' else 'snapshot'))

    for signum in (signal.SIGINT, signal.SIGHUP):
        try:
            handlers[signum] = signal.signal(signum, on_signal)
        except ValueError:  # not the main thread: signals stay with whoever has them
            pass
    outcome = None
    failure = None
    try:
        for process in ranks:
            process.start()
        waiting = set(range(count))
        while waiting and failure is None:
            try:
                message = messages.get(timeout=POLL_S)
            except queue.Empty:
                for rank, process in enumerate(ranks):
                    if rank in waiting and not process.is_alive():
                        failure = 'rank %d ended (exit code %s) without a word' \
                            % (rank, process.exitcode)
                continue
            rank, kind = message[:2]
            if kind == 'start' and bar:
                bar.begin(*message[2:])
            elif kind == 'iteration' and bar:
                iteration, _, smoothed = message[2:]
                bar.update(iteration, smoothed, force=iteration == bar.total)
            elif kind == 'snapshot' and bar:
                bar.say('snapshot at iteration %d' % message[2])
            elif kind == 'log' and bar:
                bar.say(message[2])
            elif kind == 'done':
                waiting.discard(rank)
                if rank == 0:
                    outcome = message[2]
            elif kind == 'error':
                failure = 'rank %d: %s' % (rank, message[2])
    finally:
        if failure is not None or outcome is None:
            # A rank that failed leaves the others waiting in NCCL forever.
            for process in ranks:
                if process.is_alive():
                    process.terminate()
        for process in ranks:
            process.join(timeout=60)
            if process.is_alive():
                process.kill()
                process.join()
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
    if failure is not None:
        tail = _log_tail(job.log)
        raise TrainerError('training %s failed: %s%s' % (
            solver, failure, ('\nthe end of %s:\n%s' % (job.log, tail)) if tail else ''))
    if bar and outcome is not None:
        bar.say('%s: %s at iteration %d; %s' % (
            bar.label, 'stopped' if outcome.stopped else 'done', outcome.iteration,
            outcome.caffemodel or 'no snapshot'))
    return outcome


def train_to_end(solver, log, gpus=(), weights=(), cwd=None, label=None, progress=True,
                 env=None):
    """For a pipeline: trains `solver` to max_iter and returns the final .caffemodel. A finished
    training is not run again, an interrupted one resumes from its newest snapshot (weights then
    do not apply); a training stopped by a signal raises TrainerError."""
    param = read_solver(solver)
    prefix = os.path.join(cwd or os.getcwd(), param.snapshot_prefix)
    final = snapshot_paths(prefix, param.max_iter, param.snapshot_format)[0]
    if os.path.exists(final):
        return final
    from mlic import caffe_train
    resume = caffe_train.latest_snapshot(prefix)
    outcome = train(solver, gpus, () if resume else tuple(weights or ()),
                    resume[1] if resume else None, log, progress, cwd=cwd, label=label, env=env)
    if outcome.stopped or outcome.caffemodel != os.path.abspath(final):
        raise TrainerError('%s stopped at iteration %d before max_iter %d; run it again to '
                           'resume' % (solver, outcome.iteration, param.max_iter))
    return final


def pipeline_train(solver_path, log_path, gpus, weights=None, label=None, progress=True,
                   cwd=None, env=None):
    """The pipeline's multi-GPU training (mlic.devices.train): caffe_train.train's
    arguments and result, on `gpus`."""
    return train_to_end(solver_path, log_path, tuple(gpus), weights or (), cwd, label, progress,
                        env)


# ---- a cluster: every rank started by the launcher -------------------------------------------

def run_rank_from_env(solver, where, nccl_id_file, gpus=(), weights=(), snapshot=None,
                      log=None, progress=True, sigint_effect='stop', sighup_effect='snapshot',
                      cwd=None, id_timeout_s=300.0, env=None, stream=sys.stderr):
    """This process's part of a training whose ranks a launcher started: `where` is its
    distributed.Rank. Rank 0 makes the NCCL id, writes it to nccl_id_file, shows the progress
    and acts on signals; the others read the id and follow rank 0's stop. Returns rank 0's
    Outcome (None on the other ranks). log: rank 0's Caffe output; rank r's goes to
    <log>.rank<r>."""
    job = Job(os.path.abspath(solver), tuple(gpus), tuple(weights), snapshot, sigint_effect,
              sighup_effect, cwd and os.path.abspath(cwd), log and os.path.abspath(log), None)
    check_job(job)
    job = with_resumed_data(job)
    if not nccl_id_file:
        raise TrainerError('%s started %d ranks: give --nccl-id-file, a path on storage every '
                           'node sees, to hand the NCCL id from rank 0 to the others'
                           % (where.launcher, where.world_size))
    device = distributed.device_for(where.local_rank, job.gpus, env)
    key = distributed.run_key(env)
    board = FileBoard(os.path.abspath(nccl_id_file), key)
    import caffe
    if not hasattr(caffe.NCCL, 'new_uid'):
        raise TrainerError('this Caffe was built without NCCL (USE_NCCL): it trains on one GPU '
                           'only; rebuild it with MLIC_GPU=1 tools/setup/setup.sh')
    root = where.rank == 0
    if root:
        board.clear()
        uid = bytes(caffe.NCCL.new_uid())
        distributed.write_id_file(nccl_id_file, uid, key)
    else:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # rank 0 decides when all stop
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        uid = distributed.read_id_file(nccl_id_file, key, timeout_s=id_timeout_s)

    def report(kind, *values):
        if not bar:
            return
        if kind == 'start':
            bar.begin(*values)
        elif kind == 'iteration':
            bar.update(values[0], values[2], force=values[0] == bar.total)
        elif kind == 'snapshot':
            bar.say('snapshot at iteration %d' % values[0])
        elif kind == 'log':
            bar.say(values[0])

    if job.log:  # after the handshake, whose errors belong on the terminal; rank 0 in the
        # log, rank r beside it in <log>.rank<r>; the progress stays where stderr was
        os.makedirs(os.path.dirname(job.log), exist_ok=True)
        if stream is sys.stderr or stream is sys.__stderr__:
            stream = os.fdopen(os.dup(2), 'w', buffering=1)
        _output_to(job.log if root else '%s.rank%d' % (job.log, where.rank))
    bar = Progress(os.path.basename(solver), stream) if progress and root else None
    if root:
        for signum, effect in ((signal.SIGINT, sigint_effect), (signal.SIGHUP, sighup_effect)):
            signal.signal(signum, lambda s, f, code=EFFECT_CODE[effect]: board.request(code))
    return run_rank(job, where.rank, where.world_size, device, uid, board, report)
