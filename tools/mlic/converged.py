"""The validation split and the converged schedule (docs/converged.md).

A run with `validation` set holds a fraction of the train list out of every training (the split
is carved from the train list, never from the test list) and evaluates every snapshot of each
student training on it: the training's folder gets validation.json (iteration -> validation mAP),
validation.md and, where matplotlib is there, validation.png.

With `schedule = "converged"` each student training runs in chunks of `converged_every`
iterations through the real caffe tool (each chunk resumes from the last .solverstate); after
each chunk its new snapshot is evaluated on the validation split, and the training stops when
`stalled` says so at its lowest learning rate, or at its cap. The snapshot with the best
validation mAP becomes the training's final.caffemodel, the one the test table evaluates.
"""
import collections
import json
import os

import numpy as np

from mlic.run_config import ConfigError

# The trainings whose nets end in the student's classifier: their snapshots are evaluated on the
# validation split. stage1 and the FitNets hint stage regress features, they have no classifier
# trained yet.
VALIDATED = ('student', 'stage2', 'stage1_only', 'stage2_only', 'fitnets', 'attention')

Rule = collections.namedtuple('Rule', 'every patience delta max_factor')
Rule.__doc__ = ('The converged schedule\'s rule: evaluate every `every` iterations; stop when '
                'the best validation mAP has not risen by more than `delta` (mAP as a fraction) '
                'for `patience` evaluations in a row; never train past max_factor x the '
                'training\'s own max_iter')


def check(config, where):
    """Refuses a validation fraction outside (0, 1) and a converged schedule without one."""
    fraction = config.get('validation')
    if fraction is not None and not 0 < fraction < 1:
        raise ConfigError('%s: validation: %r is not a fraction between 0 and 1 (the part of '
                          'the train list held out, e.g. 0.1)' % (where, fraction))
    if config.get('schedule') == 'converged' and fraction is None:
        raise ConfigError('%s: schedule = "converged" stops each student by its validation mAP: '
                          'set validation (e.g. validation = 0.1)' % where)
    if config.get('converged_delta', 0) < 0:
        raise ConfigError('%s: converged_delta: %r is negative'
                          % (where, config['converged_delta']))


def rule_of(config):
    """The Rule of a checked config; converged_delta is in mAP points (of 100)."""
    return Rule(config['converged_every'], config['converged_patience'],
                config['converged_delta'] / 100.0, config['converged_cap'])


# ---- the split

def split_indices(labels, fraction, seed):
    """(train indices, validation indices), both sorted, of images with `labels` (N, C; > 0 is
    positive). Stratified by each image's rarest positive class (images without one form their
    own group): every group gives round(fraction x its size) images, at least one of any group
    of two or more, drawn by a generator seeded with `seed`. Deterministic for the same labels,
    fraction and seed."""
    labels = np.asarray(labels)
    count = len(labels)
    positive = labels > 0
    frequency = positive.sum(axis=0)
    # rarest positive class of each image; -1 for an image with no positive label
    rarest = np.where(positive.any(axis=1),
                      np.argmin(np.where(positive, frequency, count + 1), axis=1), -1)
    rng = np.random.RandomState(seed)
    validation = []
    for group in sorted(set(rarest.tolist())):
        members = np.flatnonzero(rarest == group)
        take = int(round(fraction * len(members)))
        if take == 0 and len(members) >= 2:
            take = 1
        take = min(take, len(members) - 1) if len(members) >= 2 else take
        validation += rng.permutation(members)[:take].tolist()
    validation = sorted(validation)
    held = set(validation)
    train = [i for i in range(count) if i not in held]
    if not validation or not train:
        raise ValueError('a validation fraction of %g of %d images leaves %d for validation and '
                         '%d for training' % (fraction, count, len(validation), len(train)))
    return train, validation


def datalist_lines(path):
    """The non-empty lines of a datalist, in order (one per image)."""
    with open(path) as f:
        return [line if line.endswith('\n') else line + '\n' for line in f if line.strip()]


def write_split(train_list, num_classes, fraction, seed, folder):
    """Writes folder/train.txt (the train list less the validation images) and folder/val.txt,
    lines copied as they are; returns {'train': path, 'val': path} and the counts."""
    from mlic.datalist import Datalist
    labels = Datalist(train_list, num_classes, labels_only=True).labels
    lines = datalist_lines(train_list)
    if len(lines) != len(labels):
        raise ValueError('%s: %d non-empty lines but %d images read'
                         % (train_list, len(lines), len(labels)))
    train, validation = split_indices(labels, fraction, seed)
    paths = {'train': os.path.join(folder, 'train.txt'), 'val': os.path.join(folder, 'val.txt')}
    for split, indices in (('train', train), ('val', validation)):
        with open(paths[split], 'w') as f:
            f.writelines(lines[i] for i in indices)
    return paths, {'train': len(train), 'val': len(validation)}


# ---- the stopping rule

def last_improvement(values, delta):
    """Index of the last evaluation that beat the best before it by more than `delta` (the
    first always counts)."""
    best, index = None, None
    for i, value in enumerate(values):
        if best is None or value > best + delta:
            index = i
        best = value if best is None else max(best, value)
    return index


def best_index(values):
    """Index of the highest validation mAP (the earliest of equal ones)."""
    return int(np.argmax(values))


def cap_of(max_iter, rule, limit=None):
    """The most iterations a converged training runs: `limit` (default max_factor x its
    max_iter; a row's later training gets less, budget.last_training_caps), rounded up to whole
    evaluation intervals."""
    limit = max_iter * rule.max_factor if limit is None else limit
    return -(-limit // rule.every) * rule.every


# ---- the snapshots on the validation split

def snapshot_path(step_dir, iteration):
    return os.path.join(step_dir, 'snap_iter_%d.caffemodel' % iteration)


def snapshot_iterations(step_dir):
    """The iterations of the .caffemodel snapshots in a training's folder, in order."""
    import re
    found = []
    for name in os.listdir(step_dir):
        match = re.match(r'snap_iter_(\d+)\.caffemodel$', name)
        if match:
            found.append(int(match.group(1)))
    return sorted(found)


class Validation(object):
    """Evaluates snapshots of a training in `step_dir` on the validation list `val_list` with
    the student's deploy net; keeps {iteration: mAP} in step_dir/validation.json, so that a
    resumed training does not evaluate a snapshot twice."""

    def __init__(self, step_dir, deploy, val_list, cfg, root_folder, gpus):
        self.dir, self.deploy, self.cfg, self.gpus = step_dir, deploy, cfg, gpus
        self.val_list, self.root_folder = val_list, root_folder
        self.path = os.path.join(step_dir, 'validation.json')
        self.history = {}
        if os.path.exists(self.path):
            with open(self.path) as f:
                self.history = {int(k): v for k, v in json.load(f)['mAP'].items()}
        self._set = None

    def evaluate(self, iteration):
        """The validation mAP (a fraction) of snapshot `iteration`, evaluated once."""
        if iteration not in self.history:
            from mlic import devices, evaluation, inference
            if self._set is None:
                self._set = inference.read_datalist(self.val_list, self.cfg['num_classes'],
                                                    self.cfg['num_proposals'], self.root_folder)
            devices.use_for_inference(self.gpus)
            scores = inference.predict_student(self.deploy, snapshot_path(self.dir, iteration),
                                               self._set, self.cfg)
            self.history[iteration] = evaluation.evaluate(scores, self._set.labels)['mAP']
        return self.history[iteration]

    def evaluate_all(self):
        for iteration in snapshot_iterations(self.dir):
            self.evaluate(iteration)

    def write(self, picked=None, stopped=None):
        """validation.json, validation.md (and validation.png) of the history; picked: the
        iteration whose snapshot the training keeps; stopped: why it stopped."""
        iterations = sorted(self.history)
        summary = {'mAP': {str(i): self.history[i] for i in iterations},
                   'val_list': self.val_list, 'picked': picked, 'stopped': stopped}
        with open(self.path, 'w') as f:
            json.dump(summary, f, indent=1)
        lines = ['| iteration | validation mAP |', '|---|---|']
        lines += ['| %d%s | %.2f |' % (i, ' (picked)' if i == picked else '',
                                       100 * self.history[i]) for i in iterations]
        if stopped:
            lines += ['', stopped]
        with open(os.path.join(self.dir, 'validation.md'), 'w') as f:
            f.write('\n'.join(lines) + '\n')
        plot_history(iterations, [self.history[i] for i in iterations], picked,
                     os.path.join(self.dir, 'validation.png'))
        return summary


def plot_history(iterations, values, picked, path):
    """Validation mAP against iterations; nothing without matplotlib."""
    try:
        import matplotlib
        matplotlib.use('Agg')
        import matplotlib.pyplot as plt
    except ImportError:
        return
    figure, axes = plt.subplots(figsize=(5, 3))
    axes.plot(iterations, [100 * v for v in values], marker='o')
    if picked is not None and picked in iterations:
        axes.axvline(picked, color='gray', linestyle='--', label='picked')
        axes.legend()
    axes.set_xlabel('iteration')
    axes.set_ylabel('validation mAP')
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def lr_drops(solver):
    """The iterations before max_iter at which a solver's own schedule lowers the learning rate
    ("step": every stepsize, "multistep": each stepvalue); none for the other policies."""
    if solver.lr_policy == 'step' and solver.stepsize > 0:
        return list(range(solver.stepsize, solver.max_iter, solver.stepsize))
    if solver.lr_policy == 'multistep':
        return sorted(v for v in solver.stepvalue if v < solver.max_iter)
    return []


def stalled(values, phase_start, patience, delta):
    """Whether the last `patience` evaluations, all at or after index `phase_start` (the first
    evaluation at the current learning rate), failed to beat the best before them by more than
    `delta`."""
    if not values:
        return False
    since = max(last_improvement(values, delta), phase_start - 1)
    return len(values) - 1 - since >= patience


def train_converged(write_solver, run_training, validation, base_max_iter, rule, log=None,
                    drops=(), gamma=0.1, cap_limit=None):
    """Trains in chunks of rule.every iterations, each resuming from the last solverstate,
    until the validation mAP stops rising (rule.patience, rule.delta) at the lowest learning
    rate, or at the cap (cap_of).

    The learning rate follows the validation mAP instead of fixed iterations: a training whose
    own schedule lowers it by `gamma` at `drops` (lr_drops) keeps each rate until the mAP stalls
    at it, but not before that drop's own iteration, then lowers it; after the last drop it
    stops at the next stall, but not before its own max_iter. So it never trains less than its
    fixed schedule, and an early plateau (the students' scores sit at the label prior for a
    while) does not end it. write_solver(max_iter, snapshot, lr_scale) writes the solver
    (lr_scale: None keeps its own policy; a number: a fixed rate, base_lr x lr_scale);
    run_training() runs caffe on it; validation: a Validation; cap_limit: cap_of's limit (None:
    max_factor x base_max_iter). Returns (picked iteration, why it stopped, path of its
    snapshot)."""
    cap = cap_of(base_max_iter, rule, cap_limit)
    drops = list(drops)
    lowered, phase_start, lowered_at = 0, 0, []
    target = rule.every
    while True:
        write_solver(target, rule.every, gamma ** lowered if drops else None)
        run_training()
        # every snapshot so far (an interrupted run may have left some unevaluated)
        validation.evaluate_all()
        iterations = sorted(i for i in validation.history if i <= target)
        values = [validation.history[i] for i in iterations]
        if log:
            log('iteration %d: validation mAP %.2f' % (target, 100 * validation.history[target]))
        flat = stalled(values, phase_start, rule.patience, rule.delta)
        if flat and lowered < len(drops) and target >= drops[lowered]:
            lowered += 1
            lowered_at.append(target)
            phase_start = len(values)
            if log:
                log('iteration %d: validation mAP stalled; learning rate x %g' % (target, gamma))
        elif flat and lowered == len(drops) and target >= base_max_iter:
            why = ('stopped at iteration %d: the best validation mAP did not rise by more than '
                   '%g points in %d evaluation%s' % (target, 100 * rule.delta, rule.patience,
                                                     's' if rule.patience > 1 else ''))
            if lowered_at:
                why += ' after the learning rate was lowered at iteration%s %s' % (
                    's' if len(lowered_at) > 1 else '', ', '.join(map(str, lowered_at)))
            break
        if target >= cap:
            why = 'stopped at the cap of %d iterations (%s) before converging' % (
                cap, '%d x max_iter %d' % (rule.max_factor, base_max_iter) if cap_limit is None
                else "%d x its row's images, less its earlier trainings'" % rule.max_factor)
            break
        target += rule.every
    picked = iterations[best_index(values)]
    validation.write(picked, why)
    return picked, why, snapshot_path(validation.dir, picked)


def split_dataset(work, dataset, config):
    """The step `val_split`: `dataset` (sources.Dataset) with its train list split into
    train' (datalists 'train') and the validation list (datalists 'val'); the test list is
    untouched. Its key chains the dataset's with the fraction and the seed, so that every step
    after it reruns when they change."""
    from mlic import converters
    fraction, seed = config['validation'], config['validation_seed']
    step = work.step('val_split', dataset.key, fraction, seed)
    classes = converters.read_classes(dataset.classes_file)

    def body(step):
        paths, counts = write_split(dataset.datalists['train'], len(classes), fraction, seed,
                                    step.dir)
        with open(os.path.join(step.dir, 'split.json'), 'w') as f:
            json.dump(dict(counts, source=dataset.datalists['train'], fraction=fraction,
                           seed=seed), f, indent=1)
    work.run_step(step, body, 'holding %g of %s out as the validation split'
                  % (fraction, dataset.datalists['train']))
    datalists = dict(dataset.datalists, train=os.path.join(step.dir, 'train.txt'),
                     val=os.path.join(step.dir, 'val.txt'))
    return dataset._replace(key=step.key, datalists=datalists)


def summary_of(step_dir):
    """A training folder's validation.json, or None."""
    path = os.path.join(step_dir, 'validation.json')
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)
