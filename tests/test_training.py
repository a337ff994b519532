"""The small nets train with the real `caffe train -solver`: teacher, stage 1, stage 2 and the
labels-only student, with finite falling losses, and a teacher that distillation leaves intact."""
import math
import os

import cv2
import numpy as np
import pytest

from conftest import run_caffe_tool, toy_config, train_with_caffe_tool

from mlic import datalist, netgen, surgery
from mlic.caffe_train import ITERATION_LOSS

# Every test here trains (or needs) small nets with the real caffe tool.
pytestmark = pytest.mark.e2e

ITERATIONS = 30
COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255)]


def write_dataset(folder, cfg, count, seed):
    """Images with coloured squares (one colour per class), their boxes among the proposals."""
    rng = np.random.RandomState(seed)
    size, classes, bbox_num = cfg['image_size'], cfg['num_classes'], cfg['num_proposals']
    os.makedirs(folder, exist_ok=True)
    lines = []
    for index in range(count):
        image = rng.randint(90, 130, (size, size, 3)).astype(np.uint8)
        present = rng.choice(classes, rng.randint(1, 3), replace=False)
        labels = np.zeros(classes)
        proposals = []
        for k in present:
            side = rng.randint(size // 4, size // 2)
            x, y = rng.randint(0, size - side, 2)
            image[y:y + side, x:x + side] = COLOURS[k % len(COLOURS)]
            labels[k] = 1
            proposals.append((x, y, x + side - 1, y + side - 1, 1.0))
        while len(proposals) < bbox_num - 1:  # the last row stays padding
            x1, y1 = rng.randint(0, size // 2, 2)
            x2, y2 = x1 + rng.randint(8, size // 2), y1 + rng.randint(8, size // 2)
            proposals.append((x1, y1, x2, y2, round(rng.uniform(0.1, 1), 3)))
        path = os.path.join(folder, '%03d.png' % index)
        cv2.imwrite(path, image)
        padded, _ = datalist.pad_proposals(proposals, bbox_num)
        lines.append(datalist.format_line(path, labels, padded))
    with open(os.path.join(folder, 'list.txt'), 'w') as f:
        f.write('\n'.join(lines) + '\n')
    return os.path.join(folder, 'list.txt')


class TrainedModels:
    """The small nets' trained models, each trained the first time a test asks for it (with
    what it needs first), so that every test passes alone and in any order."""

    def __init__(self, small):
        self.small = small
        self.models = {}
        self.inits = {}
        self.losses = {}

    def __getitem__(self, kind):
        if kind not in self.models:
            self.models[kind], self.losses[kind] = getattr(self, '_train_' + kind)()
        return self.models[kind]

    def _train_wsddn(self):
        return train(self.small, 'wsddn')

    def _train_student(self):
        return train(self.small, 'student')

    def _train_stage1(self):
        self.inits['stage1'] = stage1_init_with_fillers(self.small, self['wsddn'])
        return train(self.small, 'stage1', self.inits['stage1'])

    def _train_stage2(self):
        init = self.inits['stage2'] = str(self.small['root'] / 'stage2_init.caffemodel')
        surgery.stage2_init(self['stage1'], self['wsddn'], self.small['paths']['stage2_train'],
                            init)
        return train(self.small, 'stage2', init)


@pytest.fixture(scope='module')
def small(tmp_path_factory):
    root = tmp_path_factory.mktemp('small')
    cfg = toy_config()
    for settings in cfg['solver'].values():
        settings.update(max_iter=ITERATIONS, snapshot=ITERATIONS, test_interval=ITERATIONS,
                        test_iter=1, display=1, average_loss=1, stepsize=1000)
    # As many training images as a batch: a few iterations then visibly fit them.
    lists = {'train': write_dataset(str(root / 'train'), cfg, 4, 0),
             'test': write_dataset(str(root / 'test'), cfg, 4, 1)}
    paths = netgen.write_nets(str(root / 'nets'), cfg, datalists=lists)
    return {'root': root, 'paths': paths, 'cfg': cfg}


@pytest.fixture(scope='module')
def models(small):
    return TrainedModels(small)


def train(small, kind, weights=None):
    """Trains with `caffe train`; returns the final model and the loss of every iteration."""
    losses = train_with_caffe_tool(small['root'], small['paths'][kind + '_solver'], weights,
                                   ITERATIONS)
    assert np.mean(losses[-5:]) < np.mean(losses[:5]), losses
    model = os.path.join(str(small['root']), 'nets', 'snapshots',
                         'small_%s_iter_%d.caffemodel' % (kind, ITERATIONS))
    assert os.path.exists(model)
    return model, losses


def stage1_init_with_fillers(small, teacher):
    """The stage-1 init (surgery: the teacher under its KD names), saved with the values the
    student's fillers give it, so that a test can see what training changed."""
    import caffe
    import caffe_layers  # noqa: F401  (the plugin's layers)
    caffe.set_mode_cpu()
    surgery_out = str(small['root'] / 'stage1_surgery.caffemodel')
    surgery.stage1_init(teacher, small['paths']['stage1_train'], surgery_out)
    caffe.set_random_seed(5)
    net = caffe.Net(small['paths']['stage1_train'], caffe.TRAIN, weights=surgery_out)
    init = str(small['root'] / 'stage1_init.caffemodel')
    net.save(init)
    net.layers[0].close()
    return init


def assert_teacher_unchanged(init_model, trained_model):
    init, trained = surgery.weights(init_model), surgery.weights(trained_model)
    teacher = [name for name in trained if surgery.is_teacher_layer(name) and name in init]
    assert 'fc_wsd_7' in teacher and 'conv_wsd_1_1' in teacher
    for name in teacher:
        for before, after in zip(init[name], trained[name]):
            assert before.tobytes() == after.tobytes(), name


def share_student_weights(online, precomputed):
    """The precomputed net's weights (the student's) set to the online net's fillers."""
    for name, blobs in precomputed.params.items():
        for mine, theirs in zip(blobs, online.params[name]):
            mine.data[...] = theirs.data


def rerun_with_targets(caffe, net, top, values):
    """The net's forward pass again after its data layer, with the data layer's `top` set to
    `values` and forward_alike's dropout masks, then its backward pass; returns the outputs."""
    net.blobs[top].data[...] = values.reshape(net.blobs[top].data.shape)
    caffe.set_random_seed(11)
    outputs = net.forward(start=net._layer_names[1])
    net.backward()
    return outputs


def forward_alike(caffe, nets):
    """One forward pass of each net with the same dropout masks; checks they read one batch."""
    outputs = []
    for net in nets:
        caffe.set_random_seed(11)
        outputs.append(net.forward())
    np.testing.assert_array_equal(nets[0].blobs['data'].data, nets[1].blobs['data'].data)
    return outputs


def assert_trained(models, kind):
    """Finite losses that fall from the first iterations to the last."""
    assert os.path.exists(models[kind])
    losses = models.losses[kind]
    assert len(losses) >= ITERATIONS and all(math.isfinite(loss) for loss in losses), losses
    assert np.mean(losses[-5:]) < np.mean(losses[:5]), losses


# float32's unit roundoff: a sum of n terms, in any order, is within n * EPS32 * sum |term| of
# the exact sum (to first order; Higham, Accuracy and Stability of Numerical Algorithms, 3.1).
EPS32 = float(np.finfo(np.float32).eps) / 2


def float32_sum_tolerance(cfg, magnitude):
    """How far two float32 forward passes of the small teacher that differ only in their BLAS
    kernels' summation order (thread count, CPU) can be apart, for outputs of the given
    magnitude (the sum of |weight * input| of their last layer, which carries the scale of the
    layers before): each pass within n * EPS32 * magnitude of the exact value, n the longest
    reduction in the net (fc6 over the pooled conv features), twice that for the two passes,
    and twice again for the error the earlier layers pass on through ReLU and max pooling.
    Elementwise for an array of magnitudes."""
    longest = cfg['block_channels'][-1] * cfg['pooled_size'] ** 2
    return 4 * longest * EPS32 * np.asarray(magnitude, np.float64)


def assert_within(actual, expected, tolerance):
    """|actual - expected| <= tolerance everywhere (tolerance broadcast elementwise)."""
    excess = np.abs(np.float64(actual) - np.float64(expected)) - tolerance
    worst = np.unravel_index(np.argmax(excess), excess.shape)
    assert excess[worst] <= 0, ('at %s: %r and %r differ by more than the float32 bound %g'
                                % (worst, actual[worst], expected[worst],
                                   np.broadcast_to(tolerance, excess.shape)[worst]))


def fc7_magnitude(caffe, paths, teacher, train_set, cfg, folder):
    """sum_i |W_ji| x_i + |b_j| of the teacher's fc7 for every proposal, image and side: the
    targets recomputed with |fc7| (its input, ReLU's output, is never negative)."""
    from mlic import inference
    net = caffe.Net(paths['stage2_teacher_deploy'], caffe.TEST, weights=teacher)
    for blob in net.params['fc_wsd_7']:
        blob.data[...] = np.abs(blob.data)
    absolute = os.path.join(folder, 'kd_teacher_abs_fc7.caffemodel')
    net.save(absolute)
    _, magnitude = inference.teacher_targets(paths['stage2_teacher_deploy'], absolute,
                                             train_set, cfg, roi=True)
    return magnitude


def test_teacher_trains(models):
    assert_trained(models, 'wsddn')


def test_stage1_distils_features_from_a_frozen_teacher(models):
    trained = models['stage1']
    assert_trained(models, 'stage1')
    init = models.inits['stage1']
    assert_teacher_unchanged(init, trained)
    # The student learnt: its conv1_1 moved away from the filler values of the init net.
    before = surgery.weights(init)['conv1_1'][0]
    after = surgery.weights(trained)['conv1_1'][0]
    assert np.abs(after - before).max() > 0.1 * np.abs(before).max()


def test_stage2_distils_predictions_from_a_frozen_teacher(small, models):
    trained = models['stage2']
    assert_trained(models, 'stage2')
    assert_teacher_unchanged(models.inits['stage2'], trained)
    weights = surgery.weights(trained)
    # The teacher's temperature layers (fillers, not in the init) stay at 2.
    assert (weights['temp_branch1_learn'][0] == small['cfg']['teacher_scale']).all()
    stage1 = surgery.weights(models['stage1'])
    assert not np.array_equal(weights['conv1_1'][0], stage1['conv1_1'][0])


def test_student_without_distillation_trains(models):
    assert_trained(models, 'student')


def run_tool(name, *args):
    import subprocess
    import sys
    from mlic.paths import ROOT
    return subprocess.run([sys.executable, os.path.join(ROOT, 'tools', name)] + list(args),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_deploy_scripts_with_the_trained_nets(small, models, tmp_path):
    import json
    paths, test_list = small['paths'], str(small['root'] / 'test' / 'list.txt')
    out = str(tmp_path / 'teacher')
    done = run_tool('run_deploy.py', '--net', paths['wsddn_deploy'], '--weights',
                    models['wsddn'], '--datalist', test_list, '--out', out)
    assert done.returncode == 0, done.stderr
    scores = np.load(out + '.npy')
    assert scores.shape == (4, small['cfg']['num_classes'])
    assert ((scores >= 0) & (scores <= 1 + 1e-5)).all()  # sums of proposal x class softmaxes
    assert 0 <= json.load(open(out + '.json'))['mAP'] <= 1
    assert '| teacher |' in done.stdout

    out = str(tmp_path / 'student')
    done = run_tool('run_deploy.py', '--net', paths['student_deploy'], '--weights',
                    models['stage2'], '--datalist', test_list, '--out', out)
    assert done.returncode == 0, done.stderr
    assert np.load(out + '.npy').shape == (4, small['cfg']['num_classes'])
    assert open(out + '.txt').read().split() == [
        line.split()[0] for line in open(test_list)]

    images = sorted(str(p) for p in (small['root'] / 'test').glob('*.png'))[:2]
    done = run_tool('predict.py', '--net', paths['student_deploy'], '--weights',
                    models['stage2'], '--top', '2', *images)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == images[0] and len(lines) == 6
    done = run_tool('predict.py', '--net', paths['wsddn_deploy'], '--weights',
                    models['wsddn'], '--datalist', test_list, images[1])
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == images[1] and done.stdout.count(' box ') == 3
    done = run_tool('predict.py', '--net', paths['wsddn_deploy'], '--weights',
                    models['wsddn'], images[1])
    assert done.returncode == 1 and 'needs proposals' in done.stderr


def test_precomputed_soft_targets_are_the_scores_of_the_teacher_inside_stage2(small, models,
                                                                            caffe):
    """The stage-2 net with soft_targets (the teacher's scores computed once) trains on exactly
    the numbers the released stage-2 net computes with its teacher inside, batch by batch."""
    from mlic import inference
    root, cfg = small['root'], small['cfg']
    targets_path = str(root / 'soft_targets.npy')
    lists = {'train': str(root / 'train' / 'list.txt'), 'test': str(root / 'test' / 'list.txt')}
    paths = netgen.write_nets(str(root / 'nets_precomputed'), dict(cfg, soft_targets=targets_path),
                              datalists=lists)
    teacher = str(root / 'stage2_teacher.caffemodel')
    surgery.stage2_init(None, models['wsddn'], paths['stage2_teacher_deploy'], teacher)
    train_set = inference.read_datalist(lists['train'], cfg['num_classes'], cfg['num_proposals'])
    targets, roi = inference.teacher_targets(paths['stage2_teacher_deploy'], teacher, train_set,
                                             cfg, targets_path)
    assert targets.shape == (4, 2, cfg['num_classes']) and roi is None
    assert np.abs(targets[:, 0] - targets[:, 1]).max() > 1e-4  # the side matters
    # The command-line tool, from the WSDDN weights as they come out of training.
    tool_out = str(root / 'tool' / 'soft_targets.npy')
    done = run_tool('compute_teacher_targets.py', '--net', paths['stage2_teacher_deploy'],
                    '--teacher', models['wsddn'], '--datalist', lists['train'],
                    '--soft-targets', tool_out)
    assert done.returncode == 0, done.stdout + done.stderr
    np.testing.assert_array_equal(np.load(tool_out), targets)
    assert os.listdir(str(root / 'tool')) == ['soft_targets.npy']
    wrong = run_tool('compute_teacher_targets.py', '--net', paths['wsddn_deploy'], '--teacher',
                     models['wsddn'], '--datalist', lists['train'],
                     '--soft-targets', tool_out)
    assert wrong.returncode == 1 and "not the KD nets' teacher" in wrong.stderr
    nothing = run_tool('compute_teacher_targets.py', '--net', paths['stage2_teacher_deploy'],
                       '--teacher', models['wsddn'], '--datalist', lists['train'])
    assert nothing.returncode == 2 and '--soft-targets, --roi-targets or both' in nothing.stderr
    # The pipeline's max_pixels reaches it as the data layer's reaches the training.
    refused = run_tool('compute_teacher_targets.py', '--net', paths['stage2_teacher_deploy'],
                       '--teacher', models['wsddn'], '--datalist', lists['train'],
                       '--soft-targets', str(root / 'refused' / 'soft_targets.npy'),
                       '--max-pixels', '10')
    assert refused.returncode == 1 and 'more than the limit of 10 ' in refused.stderr

    init = str(root / 'stage2_online_init.caffemodel')
    surgery.stage2_init(None, models['wsddn'], small['paths']['stage2_train'], init)
    online = caffe.Net(small['paths']['stage2_train'], caffe.TRAIN, weights=init)
    precomputed = caffe.Net(paths['stage2_train'], caffe.TRAIN, weights=init)
    assert not any(name.startswith(('conv_wsd', 'fc_wsd')) for name in precomputed._layer_names)
    share_student_weights(online, precomputed)
    sides = set()
    for _ in range(3):
        outputs = forward_alike(caffe, (online, precomputed))
        scores = online.blobs['image_level_score'].data.reshape(4, -1)
        given = precomputed.blobs['soft_target'].data
        assert_within(given, scores, float32_sum_tolerance(cfg, 2.0))
        for row in given:
            sides.add(int(np.unravel_index(np.abs(targets - row).max(axis=2).argmin(),
                                           targets.shape[:2])[1]))
        # Given the very scores of the teacher inside, the precomputed net's losses and
        # gradients are those of the online net to the bit: the same student layers, shapes
        # and kernels.
        online.backward()
        again = rerun_with_targets(caffe, precomputed, 'soft_target', scores)
        for loss in ('loss_soft', 'loss_sig'):
            assert again[loss] == outputs[0][loss], loss
        for name in ('conv1_1', 'fc8_mscoco', 'fc8_mscoco_soft'):
            np.testing.assert_array_equal(precomputed.params[name][0].diff,
                                          online.params[name][0].diff)
    assert sides == {0, 1}
    for net in (online, precomputed):
        net.layers[0].close()


def test_precomputed_roi_targets_are_the_features_of_the_teacher_inside_stage1(small, models,
                                                                              caffe):
    """The stage-1 net with roi_targets (the teacher's RoI features computed once) trains on the
    numbers the released stage-1 net computes with its teacher inside, batch by batch; the
    caffe tool trains it, and stage 2 starts from its result."""
    from mlic import inference
    root, cfg = small['root'], small['cfg']
    bbox_num = cfg['num_proposals']
    lists = {'train': str(root / 'train' / 'list.txt'), 'test': str(root / 'test' / 'list.txt')}
    roi_path = str(root / 'targets' / 'roi_targets.npy')
    paths = netgen.write_nets(str(root / 'nets_roi'), dict(cfg, roi_targets=roi_path),
                              datalists=lists)
    # The command-line tool writes both files, as the pipeline asks for them.
    soft_path = str(root / 'targets' / 'soft_targets.npy')
    done = run_tool('compute_teacher_targets.py', '--net', paths['stage2_teacher_deploy'],
                    '--teacher', models['wsddn'], '--datalist', lists['train'],
                    '--soft-targets', soft_path, '--roi-targets', roi_path, '--workers', '2')
    assert done.returncode == 0, done.stdout + done.stderr
    assert sorted(os.listdir(str(root / 'targets'))) == ['roi_targets.npy', 'soft_targets.npy']
    targets = np.load(roi_path)
    assert targets.shape == (4, 2, bbox_num, cfg['fc_size']) and targets.dtype == np.float32
    teacher = str(root / 'kd_teacher.caffemodel')
    surgery.stage2_init(None, models['wsddn'], paths['stage2_teacher_deploy'], teacher)
    train_set = inference.read_datalist(lists['train'], cfg['num_classes'], bbox_num)
    # The tool computes what the library does with the same two workers, to the bit.
    soft2, roi2 = inference.teacher_targets(paths['stage2_teacher_deploy'], teacher, train_set,
                                            cfg, roi=True, workers=2)
    np.testing.assert_array_equal(roi2, targets)
    np.testing.assert_array_equal(soft2, np.load(soft_path))
    # One process gives the same numbers up to rounding: BLAS kernels may sum in an order that
    # depends on their thread count (OpenBLAS's AVX-512 and Zen kernels do), and the forked
    # workers run one thread each. So the bound is what float32 sums guarantee.
    soft, roi = inference.teacher_targets(paths['stage2_teacher_deploy'], teacher, train_set,
                                          cfg, roi=True)
    magnitude = fc7_magnitude(caffe, paths, teacher, train_set, cfg, str(root))
    assert_within(roi, targets, float32_sum_tolerance(cfg, magnitude))
    # Soft targets are sums over proposals of products of softmax probabilities: at most 1,
    # and they move by at most about twice the error of the logits (of order one here).
    np.testing.assert_allclose(soft2, soft, rtol=0, atol=float32_sum_tolerance(cfg, 2.0))
    assert np.abs(roi2[:2]).sum() > 0 and np.abs(roi2[2:]).sum() > 0
    padding = train_set.proposals[:, :, 0] < 0
    assert padding.any() and not targets[:, 0][padding].any() and targets[:, 0][~padding].any()
    assert np.abs(targets[:, 0] - targets[:, 1]).max() > 1e-4  # the side matters

    online_init = str(root / 'stage1_online_init.caffemodel')
    surgery.stage1_init(models['wsddn'], small['paths']['stage1_train'], online_init)
    init = str(root / 'stage1_roi_init.caffemodel')
    report = surgery.stage1_init(None, paths['stage1_train'], init)
    assert report and not [name for name in report if surgery.is_teacher_layer(name)]
    online = caffe.Net(small['paths']['stage1_train'], caffe.TRAIN, weights=online_init)
    precomputed = caffe.Net(paths['stage1_train'], caffe.TRAIN, weights=init)
    assert not any('_wsd_' in name for name in precomputed._layer_names)
    share_student_weights(online, precomputed)
    for _ in range(3):
        outputs = forward_alike(caffe, (online, precomputed))
        real = online.blobs['roi'].data[:, 1] >= 0
        assert_within(precomputed.blobs['roi_target'].data[real],
                      online.blobs['fc_wsd_7'].data[real],
                      float32_sum_tolerance(cfg, magnitude.max()))
        # Given the very features of the teacher inside, the same loss and gradients to the bit.
        online.backward()
        again = rerun_with_targets(caffe, precomputed, 'roi_target',
                                   online.blobs['fc_wsd_7'].data)
        assert again['loss_euclid'] == outputs[0]['loss_euclid']
        for name in ('conv1_1', 'fc6'):
            np.testing.assert_array_equal(precomputed.params[name][0].diff,
                                          online.params[name][0].diff)
    for net in (online, precomputed):
        net.layers[0].close()

    done = run_caffe_tool(['train', '-solver', paths['stage1_solver'], '-weights', init],
                          cwd=str(root))
    assert done.returncode == 0, done.stdout[-3000:]
    losses = [float(m.group(2)) for m in ITERATION_LOSS.finditer(done.stdout)]
    assert len(losses) >= ITERATIONS and all(math.isfinite(loss) for loss in losses)
    assert np.mean(losses[-5:]) < np.mean(losses[:5]), losses
    assert 'Test net output' not in done.stdout  # no test net: no targets for the test images
    trained = str(root / 'nets_roi' / 'snapshots' / ('small_stage1_iter_%d.caffemodel'
                                                     % ITERATIONS))
    report = surgery.stage2_init(trained, models['wsddn'], paths['stage2_train'],
                                 str(root / 'stage2_from_roi_init.caffemodel'))
    assert report['conv1_1'].startswith(trained) and report['fc_wsd_7'].startswith(
        models['wsddn'])
