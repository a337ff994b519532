"""The classic distillation baselines (FitNets, attention transfer) and the equal training
budget: the generated nets in pycaffe, the attention loss against NumPy and finite differences,
the budget arithmetic, the config keys and the seed's steps."""
import copy
import os

import numpy as np
import pytest
from caffe.proto import caffe_pb2

from conftest import toy_config
from mlic import budget, netgen, pipeline, seed_steps, sources, steps
from mlic.paths import ROOT
from mlic.run_config import ConfigError

DEMO_TOML = os.path.join(ROOT, 'tools', 'demo.toml')


def instantiate(caffe, tmp_path, net_param):
    from google.protobuf import text_format
    known = set(caffe.layer_type_list())
    missing = sorted(set(layer.type for layer in net_param.layer) - known)
    assert not missing, 'layer types not in this build: %s' % ', '.join(missing)
    path = tmp_path / (net_param.name + '.prototxt')
    path.write_text(text_format.MessageToString(net_param))
    return caffe.Net(str(path), caffe.TRAIN)


def layer(net_param, name):
    return [l for l in net_param.layer if l.name == name][0]


@pytest.mark.parametrize('kind', sorted(netgen.BASELINE_NETS))
def test_small_baseline_nets_run_forward_and_backward(caffe, tmp_path, kind):
    cfg = toy_config()
    net = instantiate(caffe, tmp_path, netgen.baseline_net(cfg, kind, None, inputs=True))
    rng = np.random.RandomState(0)
    net.blobs['data'].data[...] = rng.uniform(-50, 50, net.blobs['data'].data.shape)
    labels = net.blobs['label_roi'].data
    labels[...] = 0
    labels[:, :cfg['num_classes']] = rng.randint(0, 2, (labels.shape[0], cfg['num_classes']))
    side = netgen.conv_map_size(cfg, cfg['image_size'])
    assert side == cfg['image_size'] // 4 == net.blobs['conv_wsd_3_1'].data.shape[-1]
    out = net.forward()
    if kind == 'fitnets_hint':
        assert net.blobs['hint_aligned'].data.shape == net.blobs['conv_wsd_3_1'].data.shape
        assert net.blobs['conv3_1'].data.shape[-1] == cfg['student_size'] // 4
        assert set(out) == {'loss_hint'} and np.isfinite(out['loss_hint'])
    else:
        assert net.blobs['attention_student_normalized'].data.shape == \
            net.blobs['attention_teacher_normalized'].data.shape == (4, 1, side, side)
        assert set(out) == {'loss_attention', 'loss_sig'}
    net.backward()
    # The teacher is frozen: nothing flows into its layers; the student learns.
    assert not net.blobs['conv_wsd_3_1'].diff.any()
    assert net.params['conv1_1'][0].diff.any()


def test_full_baseline_nets_have_the_teachers_and_the_students_shapes(caffe, tmp_path):
    cfg = copy.deepcopy(netgen.FULL)
    cfg['batch_size'] = {net: (1, 1) for net in netgen.NETS}
    for kind in sorted(netgen.BASELINE_NETS):
        param = netgen.baseline_net(cfg, kind, None, inputs=True)
        for l in param.layer:  # constant fillers keep VGG16's set-up quick
            for sub in ('convolution_param', 'inner_product_param'):
                if l.HasField(sub):
                    getattr(l, sub).weight_filler.type = 'constant'
        net = instantiate(caffe, tmp_path, param)
        shapes = {name: tuple(blob.data.shape) for name, blob in net.blobs.items()}
        assert shapes['conv_wsd_5_3'] == (1, 512, 42, 42) and shapes['conv5_3'] == \
            (1, 512, 14, 14)
        if kind == 'fitnets_hint':
            assert shapes['hint_aligned'] == (1, 512, 42, 42)
            assert net.params['hint_regressor'][0].data.shape == (512, 512, 1, 1)
            assert layer(param, 'loss_hint').loss_weight[0] == pytest.approx(1.0 / 42 ** 2)
        else:
            assert shapes['attention_student_normalized'] == (1, 1, 42, 42)
            assert shapes['fc8_mscoco'] == (1, 80)
            assert layer(param, 'loss_attention').loss_weight[0] == pytest.approx(1000.0 / 42 ** 2)
        del net


def attention_net(caffe, tmp_path, shape, beta=netgen.ATTENTION_BETA):
    """Student and teacher features as inputs, their maps and the loss as the nets build them."""
    cfg = toy_config(block_channels=[8, 16, shape[1]])
    net = netgen.Net('attention_only')
    net.add('inputs', 'Input', top=['student', 'teacher'],
            input_param={'shape': [{'dim': list(shape)}, {'dim': list(shape)}]})
    a_s = netgen.attention_map(net, cfg, 'attention_student', 'student', frozen=False)
    a_t = netgen.attention_map(net, cfg, 'attention_teacher', 'teacher', frozen=True)
    side = shape[2] * shape[3]
    net.add('loss_attention', 'EuclideanLoss', [a_s, a_t], propagate_down=[True, False],
            loss_weight=beta / side)
    net.param.force_backward = True
    return instantiate(caffe, tmp_path, net.param)


def numpy_attention_loss(student, teacher, beta=1000.0):
    """Zagoruyko & Komodakis' loss as their code computes it: beta/2 x the mean over images
    and positions of the squared difference of the L2-normalised channel means of F^2."""
    def attention(features):
        a = (features.astype(np.float64) ** 2).mean(axis=1).reshape(len(features), -1)
        return a / np.linalg.norm(a, axis=1, keepdims=True)
    return beta / 2 * ((attention(student) - attention(teacher)) ** 2).mean()


def test_attention_loss_matches_numpy(caffe, tmp_path):
    shape = (3, 6, 5, 4)
    net = attention_net(caffe, tmp_path, shape)
    rng = np.random.RandomState(1)
    student, teacher = rng.randn(*shape), rng.randn(*shape)
    net.blobs['student'].data[...] = student
    net.blobs['teacher'].data[...] = teacher
    # The net's output is the unweighted EuclideanLoss; the solver minimises it x loss_weight.
    loss = float(net.forward()['loss_attention']) * netgen.ATTENTION_BETA / (5 * 4)
    expected = numpy_attention_loss(student, teacher)
    assert expected > 1  # random maps differ: the test can fail
    # float32 sums of a few dozen terms: relative error of order 1e-6.
    assert loss == pytest.approx(expected, rel=1e-4)
    maps = net.blobs['attention_student_normalized'].data.reshape(shape[0], -1)
    np.testing.assert_allclose(np.linalg.norm(maps, axis=1), 1, rtol=1e-5)


def test_attention_loss_gradient_matches_finite_differences(caffe, tmp_path):
    shape = (2, 4, 3, 3)
    net = attention_net(caffe, tmp_path, shape)
    rng = np.random.RandomState(2)
    student = rng.uniform(0.5, 1.5, shape) * rng.choice([-1, 1], shape)
    teacher = rng.randn(*shape)
    net.blobs['teacher'].data[...] = teacher

    def loss_at(values):
        net.blobs['student'].data[...] = values
        return float(net.forward()['loss_attention']) * netgen.ATTENTION_BETA / (3 * 3)
    loss_at(student)
    net.backward()  # (force_backward: the frozen teacher's side is checked in the real nets)
    analytic = net.blobs['student'].diff.copy()
    step = 1e-2
    numeric = np.zeros(shape)
    for index in np.ndindex(*shape):
        plus, minus = student.copy(), student.copy()
        plus[index] += step
        minus[index] -= step
        numeric[index] = (loss_at(plus) - loss_at(minus)) / (2 * step)
    # Central differences in float32 with step 1e-2: error of order step^2 x curvature plus
    # 1e-7 x loss / step; both well under 2% of the largest gradient.
    scale = np.abs(numeric).max()
    assert scale > 0.1
    np.testing.assert_allclose(analytic, numeric, atol=0.02 * scale)


def small_cfg(**solver_changes):
    cfg = netgen.small_config(batch_size={'wsddn': (4, 4), 'stage1': (4, 4), 'stage2': (4, 4),
                                          'student': (8, 8)})
    for net in ('stage1', 'stage2', 'student'):
        cfg['solver'][net].update(max_iter=20, stepsize=20)
    for net, fields in solver_changes.items():
        cfg['solver'][net].update(fields)
    return cfg


def test_schedules_budget_keeps_every_solver():
    cfg = small_cfg()
    schedules = budget.row_schedules(cfg, 'schedules')
    assert budget.step_solvers(cfg, 'schedules', list(budget.ROW_TRAININGS)) == {}
    assert [s.max_iter for s in schedules['stage1_only']] == [20, 20]
    assert budget.budget_text(schedules['stage2']) == '20 x 4 + 20 x 4 = 160 images'
    assert budget.budget_text(schedules['student']) == '20 x 8 = 160 images'


def test_equal_budget_gives_every_row_the_kd_students_images():
    cfg = small_cfg(stage1={'max_iter': 30, 'stepsize': 24})
    total = 30 * 4 + 20 * 4  # stage 1 + stage 2
    schedules = budget.row_schedules(cfg, 'equal')
    for row, trainings in schedules.items():
        # Whole batches: at most one batch over the KD student's images.
        assert total <= sum(s.images for s in trainings) < total + trainings[-1].batch, row
    solvers = budget.step_solvers(cfg, 'equal', list(budget.ROW_TRAININGS))
    assert solvers['student'] == {'max_iter': 25, 'stepsize': 25}        # 200 / 8
    assert solvers['stage2_only'] == {'max_iter': 50, 'stepsize': 50}    # 200 / 4
    assert solvers['stage1_only'] == {'max_iter': 10, 'stepsize': 10}    # (200 - 120) / 8
    assert solvers['fitnets'] == solvers['stage1_only'] and solvers['attention'] == \
        solvers['student']
    # Stage 1, the hint stage and the KD student keep their schedules.
    assert not {'stage1', 'stage2', 'fitnets_hint'} & set(solvers)


def test_converged_caps_give_every_row_the_same_images_under_the_equal_budget():
    cfg = small_cfg(stage1={'max_iter': 30, 'stepsize': 24})
    rows = list(budget.ROW_TRAININGS)
    caps = budget.last_training_caps(cfg, 'equal', rows, 4)
    schedules = budget.row_schedules(cfg, 'equal', rows)
    total = 30 * 4 + 20 * 4  # the KD student's images: every row's budget
    for row, trainings in schedules.items():
        earlier = sum(s.images for s in trainings[:-1])
        capped = earlier + caps[trainings[-1].step] * trainings[-1].batch
        # 4 x the budget in all, to within one batch of the last training.
        assert 4 * total <= capped < 4 * total + trainings[-1].batch, row
    assert caps['stage2'] == (4 * total - 30 * 4) // 4 == 170  # not 4 x its own 20
    assert caps['student'] == 4 * 25 and caps['stage2_only'] == 4 * 50  # as 4 x max_iter
    # Under "schedules" each row is capped at 4 x its own images.
    own = budget.last_training_caps(cfg, 'schedules', rows, 4)
    assert own['student'] == 80 and own['stage2'] == (4 * 200 - 120) // 4


def test_equal_budget_scales_the_learning_rate_steps_in_proportion():
    cfg = copy.deepcopy(netgen.FULL)
    solvers = budget.step_solvers(cfg, 'equal', ['student', 'stage2_only'])
    images = 30000 * 32 + 30000 * 28
    assert solvers['student']['max_iter'] == -(-images // 28) == 64286
    assert solvers['student']['stepsize'] == round(20000 * 64286 / 30000.0)
    assert solvers['stage2_only']['max_iter'] == 64286
    multistep = dict(cfg['solver']['student'], lr_policy='multistep', stepvalue=[10000, 20000])
    del multistep['stepsize']
    scaled = budget.scaled_solver(multistep, 60000)
    assert scaled == {'max_iter': 60000, 'stepvalue': [20000, 40000]}
    with pytest.raises(ValueError, match='budget'):
        budget.row_schedules(cfg, 'longest')


def demo_config(**top):
    return pipeline.load_config(DEMO_TOML, ['quick'], overrides=top)


def seed_graph(config, folder):
    dataset = sources.Dataset('lists', {'train': 'train.txt', 'test': 'test.txt'},
                              'classes.txt', None, '')
    return seed_steps.SeedSteps(steps.Workspace(str(folder)), config, dataset,
                                sources.Init(None, None), False, ROOT).graph(1)


ONLINE_MAPS = {'attention_targets': 'online', 'hint_targets': 'online'}


def test_baselines_add_their_steps_and_rows(tmp_path):
    graph = seed_graph(demo_config(baselines=['fitnets', 'attention'], nets=ONLINE_MAPS),
                       tmp_path)
    assert graph['fitnets_hint'][0] == ('nets', 'teacher')
    assert graph['fitnets'][0] == ('nets', 'fitnets_hint')
    assert graph['attention'][0] == ('nets', 'teacher')
    assert {'fitnets_hint', 'fitnets', 'attention'} <= set(graph['evaluate'][0])
    plain = seed_graph(demo_config(baselines=[]), tmp_path)
    assert not {'fitnets_hint', 'fitnets', 'attention'} & set(plain)
    names = pipeline.Pipeline(demo_config(baselines=['attention']), str(tmp_path)).step_names()
    assert 'attention' in names and 'fitnets' not in names
    from mlic import report
    assert [label for _, label in report.student_rows({'fitnets': 1, 'attention': 1})] == [
        'Student w/o KD', 'Stage 1 only', 'Stage 2 only', 'FitNets', 'Attention transfer',
        'Student w/ KD']


def test_bad_baselines_and_budget_are_refused_naming_the_key():
    with pytest.raises(ConfigError, match=r'demo.toml: baselines: .*"fitnets", "attention"'):
        demo_config(baselines=['hinton'])
    with pytest.raises(ConfigError, match=r'demo.toml: budget: .*"schedules", "equal"'):
        demo_config(budget='longer')


def test_command_line_options_set_baselines_and_budget():
    import argparse
    parser = argparse.ArgumentParser()
    pipeline.add_run_arguments(parser)
    args = parser.parse_args(['--baselines', 'fitnets,attention', '--budget', 'equal'])
    assert pipeline.run_overrides(args) == {'baselines': ['fitnets', 'attention'],
                                            'budget': 'equal'}
    none = pipeline.run_overrides(parser.parse_args(['--baselines', '']))
    config = pipeline.load_config(DEMO_TOML, overrides=none)
    assert config['baselines'] == [] and config['budget'] == 'equal'  # the full demo's
    own = pipeline.run_overrides(parser.parse_args(['--budget', 'schedules']))
    assert pipeline.load_config(DEMO_TOML, overrides=own)['budget'] == 'schedules'


def test_the_demo_computes_the_baselines_maps_once_in_a_step_of_their_own(tmp_path):
    config = demo_config(baselines=['fitnets', 'attention'])
    assert config['nets']['attention_targets'] == config['nets']['hint_targets'] == \
        'precomputed'
    graph = seed_graph(config, tmp_path)
    # After the KD stages' targets when both run (each runs one process per job); the baselines
    # wait for their maps; the KD stages do not (their keys do not chain it).
    assert graph['baseline_targets'][0] == ('nets', 'teacher', 'teacher_targets')
    assert graph['fitnets_hint'][0] == ('nets', 'teacher', 'baseline_targets')
    assert graph['attention'][0] == ('nets', 'teacher', 'baseline_targets')
    assert graph['fitnets'][0] == ('nets', 'fitnets_hint')
    for name in ('stage1', 'stage2', 'stage2_only', 'student'):
        assert 'baseline_targets' not in graph[name][0], name
    names = pipeline.Pipeline(config, str(tmp_path)).step_names()
    assert names.index('teacher_targets') < names.index('baseline_targets') < \
        names.index('fitnets_hint')
    # Only for the baselines the run trains, and only when asked for.
    only_attention = seed_graph(demo_config(baselines=['attention']), tmp_path)
    assert 'baseline_targets' in only_attention['attention'][0]
    hint_online = seed_graph(demo_config(baselines=['fitnets', 'attention'],
                                         nets={'hint_targets': 'online'}), tmp_path)
    assert 'baseline_targets' not in hint_online['fitnets_hint'][0]
    assert 'baseline_targets' in hint_online['attention'][0]
    for quiet in (demo_config(baselines=[]), demo_config(baselines=['attention'],
                                                        nets=ONLINE_MAPS)):
        assert 'baseline_targets' not in seed_graph(quiet, tmp_path)
        assert 'baseline_targets' not in pipeline.Pipeline(quiet, str(tmp_path)).step_names()


def test_the_nets_read_the_maps_of_the_baselines_run_only(tmp_path):
    """Precomputed maps go into the nets of the baselines trained; the other baseline's net and
    every KD net are as without them (their trainings keep their keys)."""
    lists = tmp_path / 'lists'
    lists.mkdir()
    (lists / 'classes.txt').write_text('\n'.join('c%d' % k for k in range(10)) + '\n')

    def nets(config):
        dataset = sources.Dataset(str(lists), {'train': str(lists / 'train.txt'),
                                               'test': str(lists / 'test.txt')},
                                  str(lists / 'classes.txt'), None, '')
        seed = seed_steps.SeedSteps(steps.Workspace(str(tmp_path / 'run')), config, dataset,
                                    sources.Init(None, None), False, ROOT)
        made = seed.nets(1)
        return made.cfg, {kind: open(path).read() for kind, path in made.files.items()}
    cfg, texts = nets(demo_config(baselines=['attention']))
    assert cfg['attention_targets'].endswith(os.path.join('seed1', 'baseline_targets',
                                                          'attention_targets.npy'))
    assert cfg['hint_targets'] is None  # FitNets is not run
    assert "map_targets: '%s'" % cfg['attention_targets'] in texts['attention_train']
    assert 'map_targets' not in texts['fitnets_hint_train']
    _, online = nets(demo_config(baselines=['attention'], nets=ONLINE_MAPS))
    assert online['attention_train'] != texts['attention_train']
    for kind in ('wsddn_train', 'stage1_train', 'stage2_train', 'student_train',
                 'stage2_teacher_deploy', 'student_deploy', 'baseline_teacher_deploy'):
        assert online[kind] == texts[kind], kind


@pytest.mark.parametrize('kind', sorted(netgen.BASELINE_NETS))
def test_precomputed_baseline_nets_read_the_map_instead_of_running_the_teacher(caffe, tmp_path,
                                                                              kind):
    key = {net: key for key, net in netgen.BASELINE_TARGET_KEYS.items()}[kind]
    cfg = toy_config(**{key: str(tmp_path / 'maps.npy')})
    param = netgen.baseline_net(cfg, kind, {'train': 'train.txt', 'test': 'test.txt'})
    assert not [l.name for l in param.layer if '_wsd_' in l.name]
    data = [l for l in param.layer if l.type == 'Python']
    train = [l for l in data if l.include[0].phase == caffe_pb2.TRAIN][0]
    test = [l for l in data if l.include[0].phase == caffe_pb2.TEST][0]
    assert list(train.top) == ['data', 'label_roi', 'map_target']
    assert "map_targets: '%s'" % (tmp_path / 'maps.npy') in train.python_param.param_str
    assert 'scale_factors' not in train.python_param.param_str  # one size: exact
    assert list(test.top) == ['data', 'label_roi'] and 'map_targets' not in \
        test.python_param.param_str
    loss = layer(param, 'loss_hint' if kind == 'fitnets_hint' else 'loss_attention')
    assert [rule.phase for rule in loss.include] == [caffe_pb2.TRAIN]
    assert loss.bottom[1] == 'map_target'
    assert [rule.phase for rule in layer(param, 'silence_test').include] == [caffe_pb2.TEST]
    # With Input layers (the tools' shape checks) the map is an input of the teacher's shape.
    net = instantiate(caffe, tmp_path, netgen.baseline_net(cfg, kind, None, inputs=True))
    side = netgen.conv_map_size(cfg, cfg['image_size'])
    channels = 1 if kind == 'attention' else cfg['block_channels'][-1]
    assert net.blobs['map_target'].data.shape == (4, channels, side, side)
    assert netgen.baseline_map_shape(cfg, kind) == (channels, side, side)
    assert np.isfinite(net.forward()['loss_hint' if kind == 'fitnets_hint' else
                                     'loss_attention'])
    solver = netgen.solver_param(cfg, kind, 'net.prototxt', 'snap')
    # FitNets' hint stage has no test net loss left: no testing; attention keeps the labels'.
    assert bool(solver.test_iter) == (kind == 'attention')


def test_maps_that_the_disk_cannot_hold_are_refused_before_the_teacher_runs(tmp_path,
                                                                            monkeypatch):
    train = tmp_path / 'train.txt'
    train.write_text('a.png 1\n' * 82783)
    usage = seed_steps.shutil.disk_usage(str(tmp_path))
    monkeypatch.setattr(seed_steps.shutil, 'disk_usage',
                        lambda path: usage._replace(free=int(100e9)))
    full = copy.deepcopy(netgen.FULL)
    # VGG16 on MS-COCO: conv5_3 at 42 x 42 x 512 per image and side.
    with pytest.raises(ConfigError, match=r'my.toml: nets.hint_targets = "precomputed": the '
                       r"teacher's last conv features of 82783 images x 2 sides x 512 x 42 x 42 "
                       r'values take 598.1 GB, and .* has 100.0 GB free; use "online"'):
        seed_steps.check_map_targets_room('hint_targets', str(train),
                                          netgen.baseline_map_shape(full, 'fitnets_hint'),
                                          str(tmp_path), 'my.toml')
    # The attention maps of the same images take 1.2 GB.
    seed_steps.check_map_targets_room('attention_targets', str(train),
                                      netgen.baseline_map_shape(full, 'attention'),
                                      str(tmp_path), 'my.toml')
