"""The pipeline's step scheduler (mlic.steps.run_graph), its `jobs`, `gpus` and
`soft_targets` settings, and the keys that decide which steps a rerun redoes."""
import os
import threading
import time

import pytest

from mlic.paths import ROOT
from mlic import devices, pipeline, seed_steps, sources, steps
from mlic.run_config import ConfigError

DEMO_TOML = os.path.join(ROOT, 'tools', 'demo.toml')


def recorder(log, name, result=None, wait=None, fail=False):
    def run(done):
        log.append(('start', name, sorted(done)))
        if wait:
            wait()
        if fail:
            raise RuntimeError('%s broke' % name)
        log.append(('end', name))
        return result if result is not None else name.upper()
    return run


def test_each_step_runs_once_after_what_it_needs_and_gets_their_results():
    log = []
    graph = {
        'a': ((), recorder(log, 'a')),
        'b': (('a',), recorder(log, 'b')),
        'c': (('a', 'b'), lambda done: log.append(('start', 'c', done)) or done['a'] + done['b']),
        'unused': ((), recorder(log, 'unused')),
    }
    done = steps.run_graph(graph, ['c', 'b'], jobs=1)
    assert done == {'a': 'A', 'b': 'B', 'c': 'AB'}
    assert [entry[:2] for entry in log] == [('start', 'a'), ('end', 'a'), ('start', 'b'),
                                            ('end', 'b'), ('start', 'c')]
    assert log[-1][2] == {'a': 'A', 'b': 'B'}


def test_one_job_starts_ready_steps_in_the_given_order():
    log = []
    graph = {name: ((), recorder(log, name)) for name in ('x', 'y', 'z')}
    rank = {'z': 0, 'x': 1, 'y': 2}
    steps.run_graph(graph, ['x', 'y', 'z'], jobs=1, order=rank.get)
    assert [entry[1] for entry in log if entry[0] == 'start'] == ['z', 'x', 'y']


def test_two_jobs_run_independent_steps_at_the_same_time():
    # Each of the two waits until the other has started: they pass only when run side by side.
    barrier = threading.Barrier(2, timeout=10)
    log = []
    graph = {
        'teacher': ((), recorder(log, 'teacher', wait=barrier.wait)),
        'student': ((), recorder(log, 'student', wait=barrier.wait)),
        'after': (('teacher',), recorder(log, 'after')),
    }
    done = steps.run_graph(graph, ['after', 'student'], jobs=2)
    assert done == {'teacher': 'TEACHER', 'student': 'STUDENT', 'after': 'AFTER'}
    assert log.index(('end', 'teacher')) < log.index(('start', 'after', ['teacher']))


def test_never_more_than_jobs_steps_at_once():
    lock, state = threading.Lock(), {'now': 0, 'most': 0}

    def step(done):
        with lock:
            state['now'] += 1
            state['most'] = max(state['most'], state['now'])
        time.sleep(0.05)
        with lock:
            state['now'] -= 1

    graph = {i: ((), step) for i in range(7)}
    steps.run_graph(graph, list(graph), jobs=3)
    assert state['most'] == 3


def test_a_failure_lets_the_running_step_finish_starts_nothing_more_and_is_raised():
    log = []
    started = threading.Event()
    graph = {
        'slow': ((), recorder(log, 'slow', wait=lambda: time.sleep(0.3))),
        'broken': ((), recorder(log, 'broken', wait=started.set, fail=True)),
        'later': ((), recorder(log, 'later')),
        'needs_broken': (('broken',), recorder(log, 'needs_broken')),
    }
    rank = {'slow': 0, 'broken': 1, 'later': 2, 'needs_broken': 3}
    with pytest.raises(RuntimeError, match='broken broke'):
        steps.run_graph(graph, list(graph), jobs=2, order=rank.get)
    assert ('end', 'slow') in log
    assert not any(entry[1] in ('later', 'needs_broken') for entry in log)


def test_an_unknown_step_or_a_cycle_is_an_error():
    with pytest.raises(KeyError, match='nothing'):
        steps.run_graph({'a': (('nothing',), lambda done: 1)}, ['a'])
    graph = {'a': (('b',), lambda done: 1), 'b': (('a',), lambda done: 2), 'c': ((), lambda d: 3)}
    with pytest.raises(ValueError, match='need each other: a, b'):
        steps.run_graph(graph, ['a', 'c'], jobs=2)


def demo_config(nets=None, **top):
    """The quick demo's config with `nets` over its [nets] table and `top` over its top-level
    keys, checked as a file's."""
    return pipeline.load_config(DEMO_TOML, ['quick'], overrides=dict(top, nets=nets or {}))


@pytest.mark.parametrize('jobs', [0, -1, 1.5, 'two', True])
def test_jobs_must_be_a_whole_number_of_at_least_one(jobs):
    with pytest.raises(ConfigError, match=r'demo.toml: jobs: .* is not a whole number >= 1'):
        demo_config(jobs=jobs)


def test_each_training_gets_its_share_of_the_cores(tmp_path, monkeypatch):
    for name in ('OPENBLAS_NUM_THREADS', 'OMP_NUM_THREADS'):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(steps.os, 'sched_getaffinity', lambda pid: set(range(8)))
    assert steps.Workspace(str(tmp_path), 2).training_env()['OPENBLAS_NUM_THREADS'] == '4'
    assert steps.Workspace(str(tmp_path), 16).training_env()['OMP_NUM_THREADS'] == '1'
    assert 'OPENBLAS_NUM_THREADS' not in steps.Workspace(str(tmp_path), 1).training_env()
    monkeypatch.setenv('OPENBLAS_NUM_THREADS', '3')
    assert steps.Workspace(str(tmp_path), 2).training_env()['OPENBLAS_NUM_THREADS'] == '3'


def test_gpus_reach_every_step_that_runs_a_net_and_several_need_an_nccl_build(tmp_path):
    assert devices.targets_arguments([], 2) == ['--workers', '2']
    assert devices.targets_arguments([3], 2) == ['--gpu', '3']
    devices.check_gpus([], 'my.toml', has_nccl=lambda: False)
    devices.check_gpus([1], 'my.toml', has_nccl=lambda: False)
    devices.check_gpus([0, 1], 'my.toml', has_nccl=lambda: True)
    with pytest.raises(ConfigError, match=r'my.toml: gpus: \[0, 1\]: training on several GPUs '
                                          'joins one process per GPU by NCCL'):
        devices.check_gpus([0, 1], 'my.toml', has_nccl=lambda: False)
    with pytest.raises(ConfigError, match='each GPU id once'):
        devices.check_gpus([0, 0], 'my.toml', has_nccl=lambda: True)
    # The pipeline asks the Caffe it runs: a CPU build (CI's) refuses before any step.
    if devices.caffe_has_nccl():
        assert pipeline.Pipeline(demo_config(gpus=[0, 1]), str(tmp_path)).config['gpus'] == [0, 1]
    else:
        with pytest.raises(ConfigError, match='gpus: .0, 1.: training on several GPUs'):
            pipeline.Pipeline(demo_config(gpus=[0, 1]), str(tmp_path))
    assert pipeline.Pipeline(demo_config(gpus=[2]), str(tmp_path)).config['gpus'] == [2]


@pytest.mark.parametrize('key', ['soft_targets', 'roi_targets'])
def test_teacher_outputs_are_online_or_precomputed(key):
    assert pipeline.net_config(demo_config({key: 'online'}), 10)[key] is None
    assert pipeline.net_config(demo_config({key: 'precomputed'}), 10)[key] == 'precomputed'
    with pytest.raises(ConfigError, match=r'demo.toml: nets.%s: .later. is not one of '
                                          r'"online", "precomputed"' % key):
        demo_config({key: 'later'})


def seed_graph(config, folder, seed=1):
    """{step: (needs, run)} of one seed of `config` over a dataset that is only named."""
    dataset = sources.Dataset('lists', {'train': 'train.txt', 'test': 'test.txt'},
                              'classes.txt', None, '')
    return seed_steps.SeedSteps(steps.Workspace(str(folder)), config, dataset,
                                sources.Init(None, None), False, ROOT).graph(seed)


def test_precomputed_teacher_outputs_add_a_step_that_the_nets_reading_them_wait_for(tmp_path):
    both = demo_config({'soft_targets': 'precomputed', 'roi_targets': 'precomputed'})
    graph = seed_graph(both, tmp_path)
    assert 'teacher_targets' in pipeline.Pipeline(both, str(tmp_path)).step_names()
    assert graph['teacher_targets'][0] == ('nets', 'teacher')
    for name in ('stage1', 'stage2', 'stage2_only'):
        assert 'teacher_targets' in graph[name][0], name
    soft = demo_config({'soft_targets': 'precomputed', 'roi_targets': 'online'})
    assert seed_steps.precomputed(soft) == ['soft_targets']
    assert 'teacher_targets' not in seed_graph(soft, tmp_path)['stage1'][0]
    assert 'teacher_targets' in seed_graph(soft, tmp_path)['stage2'][0]
    roi = demo_config({'soft_targets': 'online', 'roi_targets': 'precomputed'})
    assert 'teacher_targets' in seed_graph(roi, tmp_path)['stage1'][0]
    assert 'teacher_targets' not in seed_graph(roi, tmp_path)['stage2_only'][0]
    online = demo_config({'soft_targets': 'online', 'roi_targets': 'online'})
    assert 'teacher_targets' not in pipeline.Pipeline(online, str(tmp_path)).step_names()
    assert 'teacher_targets' not in seed_graph(online, tmp_path)
    assert 'teacher_targets' not in seed_graph(online, tmp_path)['stage2'][0]


def test_the_teacher_is_evaluated_when_no_training_is_left_to_start(tmp_path):
    # Its own step, after the targets (one process per job), ranked after every training: with
    # two jobs it runs beside the last student instead of adding to the end of the run.
    for soft in ('precomputed', 'online'):
        graph = seed_graph(demo_config({'soft_targets': soft, 'roi_targets': soft}), tmp_path)
        precomputed = ('teacher_targets',) if soft == 'precomputed' else ()
        # (the quick demo's baselines read the teacher's maps, computed once too)
        assert graph['teacher_eval'][0] == ('nets', 'teacher') + precomputed + (
            'baseline_targets',)
        assert 'teacher_eval' in graph['evaluate'][0]
    rank = pipeline.SEED_STEPS.index
    assert all(rank('teacher_eval') > rank(name) for name in pipeline.TRAININGS)
    assert rank('teacher_eval') < rank('evaluate')


def test_every_step_is_in_the_help_in_the_order_of_a_run(tmp_path):
    names = [name for name, _ in pipeline.STEP_HELP]
    for config in (demo_config(), demo_config({'soft_targets': 'online',
                                               'roi_targets': 'online'})):
        known = pipeline.Pipeline(config, str(tmp_path)).step_names()
        assert set(known) <= set(names)
        assert known == [name for name in names if name in known]
    listed = pipeline.steps_help()
    assert all('  %s ' % name in listed for name in names)
    assert 'teacher_eval' in pipeline.steps_help('user') and 'pretrain' not in \
        pipeline.steps_help('user')


def test_the_number_of_proposal_workers_is_not_part_of_the_proposals_key(tmp_path):
    data = steps.Step(str(tmp_path), 'data', 'the data')
    keys = {}
    for workers, bbox_num in ((1, 16), (2, 16), (1, 24)):
        config = demo_config(proposals={'workers': workers, 'bbox_num': bbox_num})
        demo = sources.DemoData(config, steps.Workspace(str(tmp_path)))
        keys[(workers, bbox_num)] = demo.proposals_step(data).key
    assert keys[(1, 16)] == keys[(2, 16)] != keys[(1, 24)]


def test_roi_targets_that_the_disk_cannot_hold_are_refused_before_the_teacher_runs(
        tmp_path, monkeypatch):
    train = tmp_path / 'train.txt'
    train.write_text('a.png 1\n' * 1000)
    usage = seed_steps.shutil.disk_usage(str(tmp_path))
    monkeypatch.setattr(seed_steps.shutil, 'disk_usage',
                        lambda path: usage._replace(free=int(1e9)))
    with pytest.raises(ConfigError, match=r'my.toml: nets.roi_targets = "precomputed": the '
                       r"teacher's RoI features of 1000 images x 2 sides x 500 proposals x 4096 "
                       r'values take 16.4 GB, and .* has 1.0 GB free; use "online"'):
        seed_steps.check_roi_targets_room(str(train), 500, 4096, str(tmp_path), 'my.toml')
    seed_steps.check_roi_targets_room(str(train), 48, 256, str(tmp_path), 'my.toml')  # 98 MB


def test_the_pretraining_needs_neither_the_scenes_nor_their_proposals(tmp_path):
    # So that with two jobs it trains while they are made.
    demo = pipeline.Pipeline(demo_config(), str(tmp_path))
    assert {name: needs for name, (needs, _) in demo.source.steps().items()} == {
        'data': (), 'proposals': ('data',), 'pretrain': ()}
    assert demo.step_names()[:3] == ['data', 'proposals', 'pretrain']
    config = demo_config()
    del config['pretrain']
    assert list(pipeline.Pipeline(config, str(tmp_path)).source.steps()) == ['data', 'proposals']


class KeyRecorder(steps.Workspace):
    """A workspace that runs the nets step and records the keys of the others, unrun."""

    def __init__(self, folder):
        super().__init__(folder)
        self.keys = {}

    def run_step(self, step, body, describe):
        if step.name == 'nets':
            return super().run_step(step, body, describe)
        self.keys[step.name] = step.key


def training_keys(folder, config, init_key='backbone'):
    """{step: key} of one seed's steps up to the trainings, their bodies not run (but the nets'):
    the keys that decide which steps a rerun redoes."""
    (folder / 'classes.txt').write_text(''.join('c%d\n' % k for k in range(
        config['data']['num_classes'])))
    dataset = sources.Dataset('lists', {'train': 'train.txt', 'test': 'test.txt'},
                              str(folder / 'classes.txt'), None, '')
    work = KeyRecorder(str(folder))
    seeds = seed_steps.SeedSteps(work, config, dataset, sources.Init(None, init_key), False,
                                 ROOT)
    pipeline.run_seeds(seeds, [1], targets=pipeline.TRAININGS)
    return work.keys


def test_a_training_is_redone_for_its_own_nets_settings_and_what_it_starts_from(tmp_path):
    keys = training_keys(tmp_path, demo_config())
    assert sorted(keys) == sorted(pipeline.TRAININGS + ('teacher_targets',))
    assert training_keys(tmp_path, demo_config()) == keys

    def redone(config, **inputs):
        changed = training_keys(tmp_path, config, **inputs)
        return {name for name in keys if changed[name] != keys[name]}
    # Stage 1's learning rate: stage 1 and what starts from it; not the teacher, the student,
    # the teacher's outputs or stage 2 only, which never see stage 1.
    assert redone(demo_config({'solver': {'stage1': {'base_lr': 0.123}}})) == {
        'stage1', 'stage2', 'stage1_only'}
    # The teacher's temperature in stage 2: the teacher's outputs and every net that reads them
    # (stage 1 reads the RoI features of the same pass).
    assert redone(demo_config({'teacher_scale': 1.0})) == {
        'teacher_targets', 'stage1', 'stage2', 'stage2_only', 'stage1_only'}
    # The student's schedule: the students that train on it (stage 1 only trains on the
    # student's solver after stage 1).
    assert redone(demo_config({'solver': {'student': {'max_iter': 7}}})) == {'student',
                                                                             'stage1_only'}
    # What every net starts from (init_weights, the datalists): every step.
    assert redone(demo_config(), init_key='other backbone') == set(keys)
    # Where nets run is not what they are made from: the GPUs redo nothing.
    assert redone(demo_config(gpus=[0])) == set()
    assert training_keys(tmp_path, demo_config()) == keys


def test_the_schema_names_every_key_of_the_nets_config():
    from mlic import netgen, run_config
    in_schema = {key.name for key in run_config.SCHEMA['nets']} - {'preset'}
    assert in_schema | {'batch_size', 'solver'} | set(run_config.NET_KEYS_FROM_DATA) == set(
        netgen.FULL)


def test_one_gpu_reaches_the_caffe_tool_and_none_leaves_it_on_the_cpu(tmp_path):
    # The real tool, on a solver whose net does not exist: it stops at once, after the
    # command line went to the log.
    from mlic import caffe_train
    solver = tmp_path / 'solver.prototxt'
    solver.write_text('net: "no_such_net.prototxt"\nbase_lr: 0.1\nmax_iter: 1\n'
                      'snapshot_prefix: "snap"\n')
    for gpus, flag in (([], None), ([3], '-gpu 3')):
        log = tmp_path / ('train%d.log' % len(gpus))
        with pytest.raises(caffe_train.TrainingError):
            devices.train(str(solver), str(log), gpus, progress=False, cwd=str(tmp_path))
        command = log.read_text().splitlines()[0]
        assert command.startswith('### ') and ' train -solver ' in command
        assert (flag in command) if flag else ('-gpu' not in command)


class PretrainKey(steps.Workspace):
    """A workspace that records the pretraining's key and runs nothing."""

    def run_step(self, step, body, describe):
        self.key = step.key


def pretrain_key(folder, config):
    work = PretrainKey(str(folder))
    sources.DemoData(config, work).pretrain()
    return work.key


def test_the_pretraining_is_keyed_by_the_effective_nets_it_trains(tmp_path, monkeypatch):
    from mlic import netgen
    key = pretrain_key(tmp_path, demo_config())
    assert pretrain_key(tmp_path, demo_config()) == key
    # What only the nets it initialises use: their solvers, batches, stage-1 choice, the
    # teacher's temperature.
    assert pretrain_key(tmp_path, demo_config({
        'solver': {'student': {'max_iter': 7}}, 'batch_size': {'student': [2, 2]},
        'stage1_fc_frozen': True, 'teacher_scale': 1.0})) == key
    # The student net it trains, set by the config ...
    assert pretrain_key(tmp_path, demo_config({'fc_size': 64})) != key
    # ... or by the preset where the config leaves the key out (demo.toml names no
    # architecture), and the preset's student solver that it trains on.
    monkeypatch.setattr(netgen, 'SMALL', dict(netgen.SMALL, dropout_ratio=0.25))
    assert pretrain_key(tmp_path, demo_config()) != key
    solver = dict(netgen.SMALL['solver'], student=dict(netgen.SMALL['solver']['student'],
                                                        momentum=0.5))
    monkeypatch.setattr(netgen, 'SMALL', dict(netgen.SMALL, dropout_ratio=0.5, solver=solver))
    assert pretrain_key(tmp_path, demo_config()) != key
    monkeypatch.undo()
    assert pretrain_key(tmp_path, demo_config()) == key


def test_the_demo_config_has_no_empty_table():
    import tomllib
    with open(DEMO_TOML, 'rb') as f:
        config = tomllib.load(f)

    def empty_tables(table, name=''):
        for key, value in table.items():
            if isinstance(value, dict) and key not in ('conv_filler', 'head_filler'):
                if not value:
                    yield name + key
                yield from empty_tables(value, name + key + '.')
    assert list(empty_tables(config)) == []


def test_a_moved_run_folder_is_refused_before_any_step_and_keeps_what_it_holds(tmp_path):
    # The run's datalists, nets and solvers name its files by absolute path: used from a new
    # path, every step would run again and replace its trained weights first.
    made = tmp_path / 'made'
    pipeline.Pipeline(demo_config(), str(made))
    assert (made / steps.LOCATION).read_text().strip() == str(made)
    weights = made / 'seed1' / 'teacher' / 'final.caffemodel'
    weights.parent.mkdir(parents=True)
    weights.write_bytes(b'trained')
    moved = tmp_path / 'moved'
    made.rename(moved)
    with pytest.raises(ConfigError) as error:
        pipeline.Pipeline(demo_config(), str(moved))
    message = str(error.value)
    assert str(moved / steps.LOCATION) in message
    assert 'made at %s' % made in message and 'Move it back' in message
    assert weights.name in os.listdir(moved / 'seed1' / 'teacher')
    # Moved back, the same folder is used as before.
    moved.rename(made)
    assert pipeline.Pipeline(demo_config(), str(made)).folder == str(made)


def test_a_run_folder_reached_through_a_link_is_the_same_folder(tmp_path):
    made = tmp_path / 'made'
    pipeline.Pipeline(demo_config(), str(made))
    link = tmp_path / 'link'
    link.symlink_to(made)
    assert pipeline.Pipeline(demo_config(), str(link)).folder == str(link)
