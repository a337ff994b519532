"""Runs the real `caffe train` (tools/caffe) with progress, a log file, and resumption.

An interrupted training is resumed from the newest `.solverstate` under the solver's
snapshot_prefix, so nothing already trained is lost. A loss that turns NaN or infinite stops the
run at once with the iteration and the log's path instead of training on garbage.
"""
import glob
import math
import os
import re
import subprocess
import sys
import time

from mlic.paths import CAFFE_TOOL, ROOT

# glog lines of Solver::Step: "Iteration 20 (3.1 iter/s, 6.4s/20 iters), loss = 0.6931"
ITERATION_LOSS = re.compile(r'Iteration (\d+)(?: \([^)]*\))?, loss = (\S+)')


class TrainingError(RuntimeError):
    pass


def read_solver(solver_path):
    from caffe.proto import caffe_pb2
    from google.protobuf import text_format
    solver = caffe_pb2.SolverParameter()
    with open(solver_path) as f:
        text_format.Merge(f.read(), solver)
    return solver


def snapshot_iteration(path):
    """The iteration of a Caffe .solverstate (`<prefix>_iter_N.solverstate`, or .h5), or None."""
    match = re.search(r'_iter_(\d+)\.solverstate(\.h5)?$', path)
    return int(match.group(1)) if match else None


def latest_snapshot(snapshot_prefix):
    """(iteration, path) of the newest .solverstate written under snapshot_prefix, or None."""
    best = None
    for path in glob.glob(snapshot_prefix + '_iter_*.solverstate'):
        iteration = snapshot_iteration(path)
        if iteration is not None and (best is None or iteration > best[0]):
            best = (iteration, path)
    return best


DATA_LAYER_MODULE = 'caffe_layers.data_layer'


def resumed_solver(solver_path, iteration, cwd=ROOT):
    """A copy of the solver (next to it, `<name>.resumed.prototxt`) whose train net has our
    data layer start at batch iteration x iter_size (its start_batch), so that a training resumed
    at `iteration` goes on with the batches an uninterrupted one would have had: Caffe restores
    the weights, the momentum and the iteration from a .solverstate, but not a data layer's
    place in its stream. A solver whose train net has no such layer is returned unchanged."""
    from caffe.proto import caffe_pb2
    from google.protobuf import text_format
    solver = read_solver(solver_path)
    field = 'train_net' if solver.train_net else 'net'
    net_path = getattr(solver, field)
    if not net_path:
        return solver_path
    net_file = os.path.join(cwd, net_path)
    net = caffe_pb2.NetParameter()
    with open(net_file) as f:
        text_format.Merge(f.read(), net)
    start = iteration * max(solver.iter_size, 1)
    changed = False
    for layer in net.layer:
        phases = [rule.phase for rule in layer.include if rule.HasField('phase')]
        if layer.type == 'Python' and layer.python_param.module == DATA_LAYER_MODULE and \
                (not phases or caffe_pb2.TRAIN in phases):
            text = re.sub(r'\bstart_batch\s*:\s*\d+', '', layer.python_param.param_str)
            layer.python_param.param_str = text.rstrip() + ' start_batch: %d' % start
            changed = True
    if not changed:
        return solver_path
    base = os.path.splitext(os.path.abspath(solver_path))[0]
    resumed_net = base + '.resumed_net.prototxt'
    write_whole(resumed_net, '# %s, its data layer from batch %d (a resumed training)\n%s'
                % (net_file, start, text_format.MessageToString(net)))
    setattr(solver, field, resumed_net)
    resumed = base + '.resumed.prototxt'
    write_whole(resumed, text_format.MessageToString(solver))
    return resumed


def write_whole(path, text):
    """Writes `path` under a temporary name, then renames it: the ranks of a cluster training
    each write the same file, and none may read one half-written."""
    temporary = '%s.%d.tmp' % (path, os.getpid())
    with open(temporary, 'w') as f:
        f.write(text)
    os.replace(temporary, path)


def final_weights(solver_path, cwd=ROOT):
    """Path of the .caffemodel that the solver writes at max_iter."""
    solver = read_solver(solver_path)
    return '%s_iter_%d.caffemodel' % (os.path.join(cwd, solver.snapshot_prefix), solver.max_iter)


class Progress(object):
    """One updating line on a terminal, a line every `every` seconds elsewhere (CI logs) or
    when `lines` (trainings running side by side would overwrite each other's line)."""

    def __init__(self, label, total, stream=sys.stderr, every=10.0, lines=False):
        self.label, self.total, self.stream, self.every = label, total, stream, every
        self.tty = not lines and hasattr(stream, 'isatty') and stream.isatty()
        self.start = time.time()
        self.last_print = 0.0

    def update(self, iteration, loss, force=False):
        now = time.time()
        if not (self.tty or force or now - self.last_print >= self.every):
            return
        self.last_print = now
        elapsed = now - self.start
        width = 24
        done = int(width * min(iteration, self.total) / max(self.total, 1))
        text = '%-14s [%s%s] %5d/%d  loss %.4f  %4.0fs' % (
            self.label, '#' * done, '.' * (width - done), iteration, self.total, loss, elapsed)
        self.stream.write(('\r' + text) if self.tty else (text + '\n'))
        self.stream.flush()

    def close(self):
        if self.tty:
            self.stream.write('\n')
            self.stream.flush()


def train(solver_path, log_path, weights=None, label=None, progress=True, cwd=ROOT, env=None,
          gpu=None):
    """Trains with `tools/caffe train`; returns the final .caffemodel.

    cwd: where caffe runs; the solver's relative paths (net, snapshot_prefix) are relative to it,
    as for a user typing the command there (the checked-in prototxts: the repository root).
    weights: list of .caffemodel paths to initialise from (ignored when resuming a snapshot).
    progress: False, True, or 'lines' (a line every 10 s even on a terminal).
    gpu: the GPU id to train on (caffe's -gpu; None: the solver's mode, the CPU by default).
    """
    solver_path = os.path.abspath(solver_path)
    solver = read_solver(solver_path)
    prefix = os.path.join(cwd, solver.snapshot_prefix)
    final = '%s_iter_%d.caffemodel' % (prefix, solver.max_iter)
    if os.path.exists(final):
        return final
    resume = latest_snapshot(prefix)
    if resume:
        solver_path = resumed_solver(solver_path, resume[0], cwd)
    args = [CAFFE_TOOL, 'train', '-solver', solver_path]
    if resume:
        args += ['-snapshot', resume[1]]
    elif weights:
        args += ['-weights', ','.join(os.path.abspath(w) for w in weights)]
    if gpu is not None:
        args += ['-gpu', str(gpu)]
    # The iteration lines are glog INFO: never let a quieter setting of the caller hide them.
    env = dict(os.environ if env is None else env, GLOG_minloglevel='0', GLOG_logtostderr='1')
    bar = (Progress(label or os.path.basename(solver_path), solver.max_iter,
                    lines=progress == 'lines') if progress else None)
    last = []
    os.makedirs(os.path.dirname(os.path.abspath(log_path)), exist_ok=True)
    with open(log_path, 'a') as log:
        log.write('### %s\n' % ' '.join(args))
        log.flush()
        proc = subprocess.Popen(args, cwd=cwd, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, env=env)
        for line in proc.stdout:
            log.write(line)
            last = (last + [line])[-30:]
            match = ITERATION_LOSS.search(line)
            if not match:
                continue
            iteration, loss = int(match.group(1)), float(match.group(2))
            if not math.isfinite(loss):
                proc.kill()
                proc.wait()
                raise TrainingError('%s: the loss became %s at iteration %d; see %s'
                                    % (solver_path, match.group(2), iteration, log_path))
            if bar:
                bar.update(iteration, loss)
        code = proc.wait()
    if bar:
        bar.close()
    if code != 0 or not os.path.exists(final):
        raise TrainingError('caffe train -solver %s failed (exit %d); the log is %s; its end:\n%s'
                            % (solver_path, code, log_path, ''.join(last)))
    return final
