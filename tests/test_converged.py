"""The validation split and the converged schedule (mlic.converged): the split is deterministic,
disjoint from train' and never reads or changes the test list; the stopping rule on synthetic
validation-mAP sequences; the config's checks; and a toy pipeline run that trains each student
in chunks, keeps its best snapshot by validation mAP and says so under the table."""
import json
import os

import numpy as np
import pytest

from conftest import TOY_PIPELINE_BBOX_NUM, TOY_PIPELINE_NETS, TOY_PIPELINE_SIZE, load_tool, \
    toy_pipeline_lists
from mlic import converged, run_config, sources
from mlic.steps import Workspace

run_pipeline = load_tool('run_pipeline')


# ---- the split

def random_labels(count, classes, seed=0):
    rng = np.random.RandomState(seed)
    labels = (rng.rand(count, classes) < 0.3).astype(int)
    labels[labels.sum(axis=1) == 0, 0] = 1
    return labels


def test_split_is_deterministic_disjoint_and_covers_every_image():
    labels = random_labels(200, 6)
    train, val = converged.split_indices(labels, 0.1, seed=3)
    assert (train, val) == converged.split_indices(labels, 0.1, seed=3)
    assert not set(train) & set(val)
    assert sorted(train + val) == list(range(200))
    assert 15 <= len(val) <= 25  # about a tenth, group by group
    other_train, other_val = converged.split_indices(labels, 0.1, seed=4)
    assert other_val != val  # the seed draws the images


def test_split_holds_out_images_of_a_rare_class():
    labels = np.zeros((100, 3), dtype=int)
    labels[:, 0] = 1
    labels[:10, 2] = 1  # class 2 on ten images: the stratification draws one of them
    train, val = converged.split_indices(labels, 0.1, seed=0)
    assert any(labels[i, 2] for i in val) and any(labels[i, 2] for i in train)


def test_split_refuses_a_fraction_that_leaves_nothing():
    with pytest.raises(ValueError, match='for validation'):
        converged.split_indices(np.ones((1, 2), dtype=int), 0.1, seed=0)


def write_datalist(path, labels):
    """A datalist of `labels` with one proposal per line (image files are not read)."""
    with open(path, 'w') as f:
        for index, row in enumerate(labels):
            f.write('img%03d.png %s 0 0 10 10 1\n' % (index, ' '.join(str(v) for v in row)))


def test_split_step_writes_train_and_val_lists_and_leaves_the_test_list(tmp_path):
    labels = random_labels(40, 3, seed=1)
    train_list, test_list = str(tmp_path / 'train.txt'), str(tmp_path / 'test.txt')
    write_datalist(train_list, labels)
    write_datalist(test_list, labels[:5])
    test_before = open(test_list).read()
    classes = tmp_path / 'classes.txt'
    classes.write_text('a\nb\nc\n')
    dataset = sources.Dataset('key', {'train': train_list, 'test': test_list}, str(classes),
                              None, '')
    work = Workspace(str(tmp_path / 'run'), progress=False)
    config = {'validation': 0.25, 'validation_seed': 0}
    split = converged.split_dataset(work, dataset, config)
    assert split.datalists['test'] == test_list and open(test_list).read() == test_before
    assert split.key != dataset.key
    train_lines = open(split.datalists['train']).read().splitlines()
    val_lines = open(split.datalists['val']).read().splitlines()
    original = open(train_list).read().splitlines()
    assert not set(train_lines) & set(val_lines)
    assert sorted(train_lines + val_lines) == sorted(original)
    assert len(val_lines) == 10
    # again: the same lists (and the step is done already)
    again = converged.split_dataset(work, dataset, config)
    assert open(again.datalists['val']).read().splitlines() == val_lines
    # another fraction: another key
    assert converged.split_dataset(work, dataset, dict(config, validation=0.5)).key != split.key


# ---- the stopping rule

@pytest.mark.parametrize('values, patience, delta, stop', [
    ([], 2, 0.0, False),
    ([0.30], 1, 0.0, False),
    ([0.30, 0.40, 0.50], 2, 0.0, False),          # still rising
    ([0.30, 0.40, 0.39, 0.38], 2, 0.0, True),      # two evaluations below the best
    ([0.30, 0.40, 0.39, 0.41], 2, 0.0, False),     # a new best resets the count
    ([0.30, 0.40, 0.401, 0.402], 2, 0.005, True),  # rises smaller than delta do not count
    ([0.30, 0.40, 0.401, 0.41], 2, 0.005, False),  # 0.41 beats 0.401 by more than delta
    ([0.50, 0.10, 0.10, 0.10], 3, 0.0, True),
    ([0.50, 0.10, 0.10], 3, 0.0, False),
])
def test_stalled_on_synthetic_sequences(values, patience, delta, stop):
    assert converged.stalled(values, 0, patience, delta) is stop


def test_best_index_is_the_highest_and_the_earliest_of_ties():
    assert converged.best_index([0.3, 0.5, 0.4]) == 1
    assert converged.best_index([0.3, 0.5, 0.5]) == 1


def test_cap_is_whole_evaluation_intervals():
    rule = converged.Rule(every=200, patience=3, delta=0.002, max_factor=4)
    assert converged.cap_of(500, rule) == 2000
    assert converged.cap_of(550, rule) == 2200


def test_train_converged_stops_by_the_rule_and_keeps_the_best(tmp_path):
    """The chunk loop with a stand-in training that writes the snapshots, and validation mAPs
    given per iteration: a pure check of the loop's bookkeeping (the toy run below uses the real
    caffe tool)."""
    curve = {2: 0.2, 4: 0.5, 6: 0.45, 8: 0.44, 10: 0.9}
    written = []

    class Validation(converged.Validation):
        def evaluate(self, iteration):
            self.history[iteration] = curve[iteration]
            return curve[iteration]
    validation = Validation(str(tmp_path), None, None, None, '', [])

    def write_solver(max_iter, snapshot, lr_scale):
        written.append((max_iter, snapshot))
        assert lr_scale is None  # no drops in its schedule: its own policy

    def run_training():
        max_iter = written[-1][0]
        path = converged.snapshot_path(str(tmp_path), max_iter)
        open(path, 'w').close()
        return path
    rule = converged.Rule(every=2, patience=2, delta=0.0, max_factor=10)
    picked, why, kept = converged.train_converged(write_solver, run_training, validation, 4, rule)
    assert written == [(2, 2), (4, 2), (6, 2), (8, 2)]
    assert picked == 4 and kept == converged.snapshot_path(str(tmp_path), 4)
    assert 'stopped at iteration 8' in why
    summary = json.loads((tmp_path / 'validation.json').read_text())
    assert summary['picked'] == 4 and summary['mAP'] == {'2': 0.2, '4': 0.5, '6': 0.45,
                                                         '8': 0.44}
    assert '| 4 (picked) | 50.00 |' in (tmp_path / 'validation.md').read_text()


def test_train_converged_stops_at_the_cap(tmp_path):
    class Validation(converged.Validation):
        def evaluate(self, iteration):
            self.history[iteration] = iteration / 100.0  # always rising
            return self.history[iteration]
    validation = Validation(str(tmp_path), None, None, None, '', [])
    targets = []

    def run_training():
        path = converged.snapshot_path(str(tmp_path), targets[-1])
        open(path, 'w').close()
    rule = converged.Rule(every=3, patience=1, delta=0.0, max_factor=2)
    picked, why, _ = converged.train_converged(lambda m, s, lr: targets.append(m), run_training,
                                               validation, 4, rule)
    assert targets == [3, 6, 9] and picked == 9 and 'cap of 9 iterations' in why
    # A row's later training: the cap its row leaves it (budget.last_training_caps).
    row_dir = tmp_path / 'row'
    os.makedirs(str(row_dir))
    validation, row_targets = Validation(str(row_dir), None, None, None, '', []), []

    def run_row_training():
        open(converged.snapshot_path(str(row_dir), row_targets[-1]), 'w').close()
    picked, why, _ = converged.train_converged(lambda m, s, lr: row_targets.append(m),
                                               run_row_training, validation, 4, rule,
                                               cap_limit=13)
    assert row_targets == [3, 6, 9, 12, 15] and "cap of 15 iterations (2 x its row's" in why


def converged_with_curve(tmp_path, curve, base_max_iter, rule, drops=()):
    """train_converged with a stand-in training and validation mAPs given per iteration;
    returns (what it wrote: (max_iter, lr_scale) per chunk, picked, why)."""
    written = []

    class Validation(converged.Validation):
        def evaluate(self, iteration):
            self.history[iteration] = curve[iteration]
            return curve[iteration]

    def run_training():
        open(converged.snapshot_path(str(tmp_path), written[-1][0]), 'w').close()
    picked, why, _ = converged.train_converged(
        lambda max_iter, snapshot, lr_scale: written.append((max_iter, lr_scale)), run_training,
        Validation(str(tmp_path), None, None, None, '', []), base_max_iter, rule, drops=drops,
        gamma=0.1)
    return written, picked, why


def test_an_early_plateau_does_not_stop_a_training_before_its_own_schedule(tmp_path):
    # The students' scores sit at the label prior for a while, then rise.
    curve = {2: 0.3, 4: 0.3, 6: 0.3, 8: 0.3, 10: 0.5, 12: 0.6, 14: 0.6, 16: 0.6, 18: 0.6}
    rule = converged.Rule(every=2, patience=2, delta=0.0, max_factor=10)
    written, picked, why = converged_with_curve(tmp_path, curve, 10, rule)
    assert [w[0] for w in written] == [2, 4, 6, 8, 10, 12, 14, 16]
    assert picked == 12 and 'stopped at iteration 16' in why


def test_the_learning_rate_drops_when_the_map_stalls_then_the_training_stops(tmp_path):
    curve = {2: 0.3, 4: 0.3, 6: 0.3, 8: 0.5, 10: 0.5, 12: 0.5, 14: 0.9}
    rule = converged.Rule(every=2, patience=2, delta=0.0, max_factor=10)
    written, picked, why = converged_with_curve(tmp_path, curve, 8, rule, drops=[4])
    # Stalled at 6 (past the schedule's own drop at 4): x 0.1 from the next chunk on; stalled
    # again at 12, past max_iter 8: stop.
    assert written == [(2, 1.0), (4, 1.0), (6, 1.0), (8, 0.1), (10, 0.1), (12, 0.1)]
    assert picked == 8
    assert 'stopped at iteration 12' in why and 'lowered at iteration 6' in why
    # Not before the schedule's own drop: with it at 10, the stall at 6 changes nothing and
    # the rate drops at the next stall, at 12.
    late = tmp_path / 'late'
    late.mkdir()
    written, _, why = converged_with_curve(late, {**curve, 14: 0.5, 16: 0.5}, 8, rule,
                                           drops=[10])
    assert [scale for _, scale in written] == [1.0] * 6 + [0.1] * 2
    assert 'stopped at iteration 16' in why and 'lowered at iteration 12' in why


def test_lr_drops_of_the_solver_policies():
    from caffe.proto import caffe_pb2
    solver = caffe_pb2.SolverParameter(lr_policy='step', stepsize=1350, max_iter=2700)
    assert converged.lr_drops(solver) == [1350]
    solver = caffe_pb2.SolverParameter(lr_policy='multistep', stepvalue=[100, 300, 900],
                                       max_iter=500)
    assert converged.lr_drops(solver) == [100, 300]
    assert converged.lr_drops(caffe_pb2.SolverParameter(lr_policy='fixed', max_iter=9)) == []


# ---- the config

def test_config_defaults_change_nothing_and_converged_needs_validation(tmp_path):
    path = tmp_path / 'c.toml'
    path.write_text('folder = "x"\n')
    config = run_config.load_config(str(path))
    assert config.get('validation') is None and config['schedule'] == 'fixed'
    converged.check(config, 'c.toml')
    with pytest.raises(run_config.ConfigError, match='c.toml: schedule = "converged".*validation'):
        converged.check(dict(config, schedule='converged'), 'c.toml')
    with pytest.raises(run_config.ConfigError, match='c.toml: validation: 1.5 is not a fraction'):
        converged.check(dict(config, validation=1.5), 'c.toml')
    path.write_text('folder = "x"\nschedule = "slow"\n')
    with pytest.raises(run_config.ConfigError, match='schedule'):
        run_config.load_config(str(path))


# ---- a toy run

SIZE, BBOX_NUM = TOY_PIPELINE_SIZE, TOY_PIPELINE_BBOX_NUM
TOY_NETS = TOY_PIPELINE_NETS


@pytest.fixture(scope='module')
def toy_lists(tmp_path_factory):
    return toy_pipeline_lists(tmp_path_factory.mktemp('converged_data'), num_classes=3,
                              num_train=16, num_test=6, seed=4)


@pytest.mark.e2e  # trains every net of the method and the baselines at toy size
def test_converged_toy_run_keeps_the_best_snapshot_by_validation(toy_lists, tmp_path, capfd):
    config = tmp_path / 'toy.toml'
    lists = dict(train=toy_lists['train'], test=toy_lists['test'], bbox_num=BBOX_NUM,
                 image_size=SIZE)
    config.write_text(
        'folder = "%s"\nseeds = [1]\nconverged_every = 2\nconverged_patience = 1\n'
        'converged_delta = 0.0\nconverged_cap = 2\n[datalists]\n%s%s'
        % (tmp_path / 'run', ''.join('%s = %s\n' % (k, json.dumps(v)) for k, v in lists.items()),
           TOY_NETS))
    test_before = open(toy_lists['test']).read()
    run = ['--config', str(config), '--schedule', 'converged', '--validation', '0.25',
           '--baselines', 'fitnets,attention']
    assert run_pipeline.main(run) == 0
    err = capfd.readouterr().err
    assert 'until its validation mAP stops rising' in err
    folder = tmp_path / 'run'
    split = json.loads((folder / 'val_split' / 'split.json').read_text())
    assert split['train'] + split['val'] == 16 and 2 <= split['val'] <= 6
    assert split['fraction'] == 0.25
    val_lines = set((folder / 'val_split' / 'val.txt').read_text().splitlines())
    assert not val_lines & set(open(toy_lists['test']).read().splitlines())
    assert open(toy_lists['test']).read() == test_before
    # The nets train on train' only.
    net = (folder / 'seed1' / 'nets' / 'wsddn' / 'train.prototxt').read_text()
    assert str(folder / 'val_split' / 'train.txt') in net
    # ... and their TEST phase during training reads the validation list, not the test list.
    assert str(folder / 'val_split' / 'val.txt') in net and toy_lists['test'] not in net
    picked = {}
    for step in converged.VALIDATED:  # the students, the ablations and the baselines
        summary = json.loads((folder / 'seed1' / step / 'validation.json').read_text())
        history = {int(i): v for i, v in summary['mAP'].items()}
        # every 2 iterations, stopped by the rule (patience 1) or at the cap of 8
        assert sorted(history) == list(range(2, max(history) + 1, 2)) and max(history) <= 8
        assert history[summary['picked']] == max(history.values())
        kept = (folder / 'seed1' / step / 'final.caffemodel').read_bytes()
        assert kept == (folder / 'seed1' / step /
                        ('snap_iter_%d.caffemodel' % summary['picked'])).read_bytes()
        assert (folder / 'seed1' / step / 'validation.md').exists()
        picked[step] = summary['picked']
    # The teacher, stage 1 and the hint stage keep their schedules: no validation of them.
    for step in ('teacher', 'stage1', 'fitnets_hint'):
        assert not (folder / 'seed1' / step / 'validation.json').exists(), step
    markdown = (folder / 'results.md').read_text()
    assert 'Snapshots by validation mAP' in markdown
    for step, label in (('student', 'Student w/o KD'), ('stage2', 'Student w/ KD'),
                        ('fitnets', 'FitNets'), ('attention', 'Attention transfer')):
        assert '- %s: seed 1: iteration %d, val mAP' % (label, picked[step]) in markdown

    # A rerun resumes: every step is done already, no snapshot is evaluated again.
    assert run_pipeline.main(run) == 0
    again = capfd.readouterr().err
    assert 'training' not in again and 'validation mAP' not in again.replace(
        'Snapshots by validation mAP', '')
