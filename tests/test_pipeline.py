"""The pipeline's step scheduler (mlic.pipeline.run_graph), its `jobs` and `soft_targets`
settings."""
import threading
import time

import pytest

from mlic import pipeline


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
    done = pipeline.run_graph(graph, ['c', 'b'], jobs=1)
    assert done == {'a': 'A', 'b': 'B', 'c': 'AB'}
    assert [entry[:2] for entry in log] == [('start', 'a'), ('end', 'a'), ('start', 'b'),
                                            ('end', 'b'), ('start', 'c')]
    assert log[-1][2] == {'a': 'A', 'b': 'B'}


def test_one_job_starts_ready_steps_in_the_given_order():
    log = []
    graph = {name: ((), recorder(log, name)) for name in ('x', 'y', 'z')}
    rank = {'z': 0, 'x': 1, 'y': 2}
    pipeline.run_graph(graph, ['x', 'y', 'z'], jobs=1, order=rank.get)
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
    done = pipeline.run_graph(graph, ['after', 'student'], jobs=2)
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
    pipeline.run_graph(graph, list(graph), jobs=3)
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
        pipeline.run_graph(graph, list(graph), jobs=2, order=rank.get)
    assert ('end', 'slow') in log
    assert not any(entry[1] in ('later', 'needs_broken') for entry in log)


def test_an_unknown_step_or_a_cycle_is_an_error():
    with pytest.raises(KeyError, match='nothing'):
        pipeline.run_graph({'a': (('nothing',), lambda done: 1)}, ['a'])
    graph = {'a': (('b',), lambda done: 1), 'b': (('a',), lambda done: 2), 'c': ((), lambda d: 3)}
    with pytest.raises(ValueError, match='need each other: a, b'):
        pipeline.run_graph(graph, ['a', 'c'], jobs=2)


@pytest.mark.parametrize('jobs', [0, -1, 1.5, 'two', True])
def test_jobs_must_be_a_whole_number_of_at_least_one(tmp_path, jobs):
    config = pipeline.load_config(pipeline.os.path.join(pipeline.caffe_train.ROOT, 'tools',
                                                        'demo.toml'), quick=True)
    config['jobs'] = jobs
    with pytest.raises(pipeline.ConfigError, match='jobs'):
        pipeline.Pipeline(config, str(tmp_path))


def test_each_training_gets_its_share_of_the_cores(tmp_path, monkeypatch):
    config = pipeline.load_config(pipeline.os.path.join(pipeline.caffe_train.ROOT, 'tools',
                                                        'demo.toml'), quick=True)
    for name in ('OPENBLAS_NUM_THREADS', 'OMP_NUM_THREADS'):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(pipeline.os, 'sched_getaffinity', lambda pid: set(range(8)))
    config['jobs'] = 2
    assert pipeline.Pipeline(config, str(tmp_path)).training_env()['OPENBLAS_NUM_THREADS'] == '4'
    config['jobs'] = 16
    assert pipeline.Pipeline(config, str(tmp_path)).training_env()['OMP_NUM_THREADS'] == '1'
    config['jobs'] = 1
    assert 'OPENBLAS_NUM_THREADS' not in pipeline.Pipeline(config, str(tmp_path)).training_env()
    monkeypatch.setenv('OPENBLAS_NUM_THREADS', '3')
    config['jobs'] = 2
    assert pipeline.Pipeline(config, str(tmp_path)).training_env()['OPENBLAS_NUM_THREADS'] == '3'


def demo_config(**nets):
    """The quick demo's config with `nets` over its [nets] table, checked as a file's."""
    return pipeline.load_config(pipeline.os.path.join(pipeline.caffe_train.ROOT, 'tools',
                                                      'demo.toml'), quick=True,
                                overrides={'nets': nets})


@pytest.mark.parametrize('key', ['soft_targets', 'roi_targets'])
def test_teacher_outputs_are_online_or_precomputed(key):
    assert pipeline.net_config(demo_config(**{key: 'online'}), 10)[key] is None
    assert pipeline.net_config(demo_config(**{key: 'precomputed'}), 10)[key] == 'precomputed'
    with pytest.raises(pipeline.ConfigError,
                       match=r'demo.toml: nets.%s: .later. is not one of "online", '
                             r'"precomputed"' % key):
        demo_config(**{key: 'later'})


def test_precomputed_teacher_outputs_add_a_step_that_the_nets_reading_them_wait_for(tmp_path):
    both = pipeline.Pipeline(demo_config(soft_targets='precomputed', roi_targets='precomputed'),
                             str(tmp_path))
    steps = both.seed_steps(1)
    assert 'teacher_targets' in both.step_names()
    assert steps['teacher_targets'][0] == ('nets', 'teacher')
    for name in ('stage1', 'stage2', 'stage2_only'):
        assert 'teacher_targets' in steps[name][0], name
    soft = pipeline.Pipeline(demo_config(soft_targets='precomputed', roi_targets='online'),
                             str(tmp_path))
    assert soft.precomputed() == ['soft_targets']
    assert 'teacher_targets' not in soft.seed_steps(1)['stage1'][0]
    assert 'teacher_targets' in soft.seed_steps(1)['stage2'][0]
    roi = pipeline.Pipeline(demo_config(soft_targets='online', roi_targets='precomputed'),
                            str(tmp_path))
    assert 'teacher_targets' in roi.seed_steps(1)['stage1'][0]
    assert 'teacher_targets' not in roi.seed_steps(1)['stage2_only'][0]
    online = pipeline.Pipeline(demo_config(soft_targets='online', roi_targets='online'),
                               str(tmp_path))
    assert 'teacher_targets' not in online.step_names()
    assert 'teacher_targets' not in online.seed_steps(1)
    assert 'teacher_targets' not in online.seed_steps(1)['stage2'][0]


def test_the_teacher_is_evaluated_when_no_training_is_left_to_start(tmp_path):
    # Its own step, after the targets (one process per job), ranked after every training: with
    # two jobs it runs beside the last student instead of adding to the end of the run.
    for soft in ('precomputed', 'online'):
        config = demo_config(soft_targets=soft, roi_targets=soft)
        steps = pipeline.Pipeline(config, str(tmp_path)).seed_steps(1)
        precomputed = ('teacher_targets',) if soft == 'precomputed' else ()
        assert steps['teacher_eval'][0] == ('nets', 'teacher') + precomputed
        assert 'teacher_eval' in steps['evaluate'][0]
    rank = pipeline.SEED_STEPS.index
    assert all(rank('teacher_eval') > rank(name) for name in pipeline.TRAININGS)
    assert rank('teacher_eval') < rank('evaluate')


def test_the_number_of_proposal_workers_is_not_part_of_the_proposals_key(tmp_path):
    keys = {}
    for workers, bbox_num in ((1, 16), (2, 16), (1, 24)):
        config = demo_config()
        config['proposals'].update(workers=workers, bbox_num=bbox_num)
        demo = pipeline.Pipeline(config, str(tmp_path))
        demo.data_key, demo.data_dir = 'the data', str(tmp_path)
        demo.run_step = lambda step, body, describe: keys.setdefault((workers, bbox_num),
                                                                      step.key)
        demo.proposals()
    assert keys[(1, 16)] == keys[(2, 16)] != keys[(1, 24)]


def test_roi_targets_that_the_disk_cannot_hold_are_refused_before_the_teacher_runs(
        tmp_path, monkeypatch):
    demo = pipeline.Pipeline(demo_config(roi_targets='precomputed'), str(tmp_path))
    (tmp_path / 'train.txt').write_text('a.png 1\n' * 1000)
    demo.datalists = {'train': str(tmp_path / 'train.txt')}
    demo.cfg = {'num_proposals': 500, 'fc_size': 4096}
    pipeline.os.makedirs(demo.seed_folder(1))
    usage = pipeline.shutil.disk_usage(str(tmp_path))
    monkeypatch.setattr(pipeline.shutil, 'disk_usage', lambda path: usage._replace(free=int(1e9)))
    with pytest.raises(pipeline.ConfigError, match=r'nets.roi_targets = "precomputed": the '
                       r"teacher's RoI features of 1000 images x 2 sides x 500 proposals x 4096 "
                       r'values take 16.4 GB, and .* has 1.0 GB free; use "online"'):
        demo.check_roi_targets_room(1)
    demo.cfg = {'num_proposals': 48, 'fc_size': 256}
    demo.check_roi_targets_room(1)  # 98 MB


def test_the_pretraining_needs_neither_the_scenes_nor_their_proposals(tmp_path):
    # So that with two jobs it trains while they are made.
    demo = pipeline.Pipeline(demo_config(), str(tmp_path))
    shared = demo.shared_steps()
    assert {name: needs for name, (needs, _) in shared.items()} == {
        'data': (), 'proposals': ('data',), 'pretrain': ()}
    assert demo.step_names()[:3] == ['data', 'proposals', 'pretrain']
    config = demo_config()
    del config['pretrain']
    assert list(pipeline.Pipeline(config, str(tmp_path)).shared_steps()) == ['data', 'proposals']


def training_keys(folder, config, init_key='backbone'):
    """{step: key} of one seed's steps up to the trainings, their bodies not run (but the nets'):
    the keys that decide which steps a rerun redoes."""
    demo = pipeline.Pipeline(config, str(folder))
    (folder / 'classes.txt').write_text(''.join('c%d\n' % k for k in range(
        config['data']['num_classes'])))
    demo.classes_file, demo.root_folder = str(folder / 'classes.txt'), ''
    demo.datalists = {'train': 'train.txt', 'test': 'test.txt'}
    demo.datalist_key, demo.init_key = 'lists', init_key
    keys, run_step = {}, demo.run_step

    def record(step, body, describe):
        if step.name == 'nets':
            return run_step(step, body, describe)
        keys[step.name] = step.key
    demo.run_step = record
    demo.run_seeds([1], targets=pipeline.TRAININGS)
    return keys


def test_a_training_is_redone_for_its_own_nets_settings_and_what_it_starts_from(tmp_path):
    keys = training_keys(tmp_path, demo_config())
    assert sorted(keys) == sorted(pipeline.TRAININGS + ('teacher_targets',))
    assert training_keys(tmp_path, demo_config()) == keys

    def redone(config, **inputs):
        changed = training_keys(tmp_path, config, **inputs)
        return {name for name in keys if changed[name] != keys[name]}
    # Stage 1's learning rate: stage 1 and what starts from it; not the teacher, the student,
    # the teacher's outputs or stage 2 only, which never see stage 1.
    assert redone(demo_config(solver={'stage1': {'base_lr': 0.123}})) == {
        'stage1', 'stage2', 'stage1_only'}
    # The teacher's temperature in stage 2: the teacher's outputs and every net that reads them
    # (stage 1 reads the RoI features of the same pass).
    assert redone(demo_config(teacher_scale=1.0)) == {'teacher_targets', 'stage1', 'stage2',
                                                      'stage2_only', 'stage1_only'}
    # The student's schedule: the students that train on it (stage 1 only trains on the
    # student's solver after stage 1).
    assert redone(demo_config(solver={'student': {'max_iter': 7}})) == {'student',
                                                                        'stage1_only'}
    # What every net starts from (init_weights, the datalists): every step.
    assert redone(demo_config(), init_key='other backbone') == set(keys)
    assert training_keys(tmp_path, demo_config()) == keys


def test_the_schema_names_every_key_of_the_nets_config():
    from mlic import netgen, run_config
    in_schema = {key.name for key in run_config.SCHEMA['nets']} - {'preset'}
    assert in_schema | {'batch_size', 'solver'} | set(run_config.NET_KEYS_FROM_DATA) == set(
        netgen.FULL)
