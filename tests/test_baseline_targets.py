"""The classic baselines with the teacher's maps computed once (netgen's attention_targets and
hint_targets, tools/compute_baseline_targets.py): the maps the nets read are the ones the
teacher inside the in-net baselines computes for the same batch, and the nets train from them
through the real caffe tool."""
import os

import numpy as np
import pytest

from conftest import run_caffe_tool
from test_training import (ITERATIONS, EPS32, assert_within, forward_alike, models,  # noqa: F401
                           rerun_with_targets, run_tool, share_student_weights, small)

from mlic import inference, netgen, surgery

pytestmark = pytest.mark.e2e


def conv_tolerance(cfg, magnitude):
    """How far two float32 passes of the teacher's conv blocks that differ only in their BLAS
    kernels' summation order can be apart, for features of the given magnitude (their largest
    |value|): each 3x3 convolution sums n = 9 x its input channels products, within n x EPS32 of
    their absolute sum; the error of every earlier layer passes on through ReLU, max pooling and
    the frozen BatchNorm's fixed affine map, so the bound adds up over the conv layers, twice
    for the two passes, and twice again for the absolute sums exceeding the largest value."""
    channels = [3] + [c for c, n in zip(cfg['block_channels'], cfg['block_convs'])
                      for _ in range(n)]
    total = sum(9 * c for c in channels[:-1])
    return 4 * total * EPS32 * magnitude


@pytest.fixture(scope='module')
def maps(small, models):
    """The baseline nets reading both maps, and the maps the tool wrote for them."""
    root, cfg = small['root'], small['cfg']
    lists = {'train': str(root / 'train' / 'list.txt'), 'test': str(root / 'test' / 'list.txt')}
    files = {key: str(root / 'maps' / (key + '.npy')) for key in netgen.BASELINE_TARGET_KEYS}
    paths = netgen.write_nets(str(root / 'nets_maps'), dict(cfg, **files), datalists=lists)
    done = run_tool('compute_baseline_targets.py', '--net', paths['baseline_teacher_deploy'],
                    '--teacher', models['wsddn'], '--datalist', lists['train'],
                    '--attention-targets', files['attention_targets'],
                    '--hint-targets', files['hint_targets'], '--workers', '2')
    assert done.returncode == 0, done.stdout + done.stderr
    assert sorted(os.listdir(str(root / 'maps'))) == ['attention_targets.npy',
                                                      'hint_targets.npy']
    return {'paths': paths, 'files': files, 'lists': lists}


def test_precomputed_maps_are_the_teachers_inside_the_baseline_nets(small, models, maps, caffe):
    """Attention transfer's and FitNets' nets with the teacher's maps computed once train on the
    numbers their in-net versions compute with the teacher inside, batch by batch, side by
    side; given the very same maps, their losses and gradients are the same to the bit."""
    cfg, paths, files = small['cfg'], maps['paths'], maps['files']
    side = netgen.conv_map_size(cfg, cfg['image_size'])
    channels = cfg['block_channels'][-1]
    attention = np.load(files['attention_targets'])
    hint = np.load(files['hint_targets'])
    assert attention.shape == (4, 2, 1, side, side) and attention.dtype == np.float32
    assert hint.shape == (4, 2, channels, side, side) and hint.dtype == np.float32
    # L2-normalised per image and side; the side matters.
    np.testing.assert_allclose(np.linalg.norm(attention.reshape(8, -1), axis=1), 1, rtol=1e-5)
    assert np.abs(hint[:, 0] - hint[:, 1]).max() > 1e-3 * np.abs(hint).max()
    # The attention map is the channel mean of the squared features, normalised.
    energy = (hint.astype(np.float64) ** 2).mean(axis=2).reshape(8, -1)
    np.testing.assert_allclose(attention.reshape(8, -1),
                               energy / np.linalg.norm(energy, axis=1, keepdims=True),
                               rtol=1e-4, atol=1e-6)

    # The library in one process: the same numbers up to the kernels' summation order (the
    # tool's two workers run one BLAS thread each).
    teacher = str(small['root'] / 'baseline_teacher.caffemodel')
    surgery.baseline_init(models['wsddn'], paths['baseline_teacher_deploy'], teacher)
    train_set = inference.read_datalist(maps['lists']['train'], cfg['num_classes'],
                                        cfg['num_proposals'])
    again = {key: str(small['root'] / 'maps_again' / (key + '.npy'))
             for key in netgen.BASELINE_TARGET_KEYS}
    os.makedirs(str(small['root'] / 'maps_again'), exist_ok=True)
    conv_blob = netgen.last_conv_name(cfg, kd_teacher=True)
    inference.baseline_targets(paths['baseline_teacher_deploy'], teacher, train_set, cfg,
                               conv_blob, attention_path=again['attention_targets'],
                               hint_path=again['hint_targets'])
    tolerance = conv_tolerance(cfg, np.abs(hint).max())
    assert_within(np.load(again['hint_targets']), hint, tolerance)
    assert_within(np.load(again['attention_targets']), attention,
                  attention_bound(hint, tolerance))

    for kind, top, teacher_blob in (('attention', 'map_target', 'attention_teacher_normalized'),
                                    ('fitnets_hint', 'map_target', conv_blob)):
        online_init = str(small['root'] / ('%s_online_init.caffemodel' % kind))
        surgery.baseline_init(models['wsddn'], small['paths'][kind + '_train'], online_init)
        init = str(small['root'] / ('%s_maps_init.caffemodel' % kind))
        report = surgery.baseline_init(models['wsddn'], paths[kind + '_train'], init)
        assert not [name for name in report if surgery.is_teacher_layer(name)]
        online = caffe.Net(small['paths'][kind + '_train'], caffe.TRAIN, weights=online_init)
        precomputed = caffe.Net(paths[kind + '_train'], caffe.TRAIN, weights=init)
        assert not any('_wsd_' in name for name in precomputed._layer_names), kind
        share_student_weights(online, precomputed)
        for _ in range(3):
            outputs = forward_alike(caffe, (online, precomputed))
            given = precomputed.blobs[top].data
            # The map of every image of the batch, of the side it was given: the bound of
            # the row of the stored maps it equals most closely.
            stored = attention if kind == 'attention' else hint
            bounds = attention_bound(hint, tolerance) if kind == 'attention' else \
                np.full(hint.shape, tolerance)
            rows = [np.unravel_index(np.abs(stored - map_).reshape(8, -1).max(axis=1).argmin(),
                                     (4, 2)) for map_ in given]
            assert_within(given, online.blobs[teacher_blob].data,
                          np.array([bounds[row] for row in rows]))
            online.backward()
            rerun = rerun_with_targets(caffe, precomputed, top, online.blobs[teacher_blob].data)
            for loss in outputs[0]:
                assert rerun[loss] == outputs[0][loss], (kind, loss)
            for name in ('conv1_1', 'conv3_1'):
                np.testing.assert_array_equal(precomputed.params[name][0].diff,
                                              online.params[name][0].diff)
        for net in (online, precomputed):
            net.layers[0].close()


def attention_bound(hint, tolerance):
    """Elementwise bound on the error of the attention maps (lines, 2, 1, H, W) computed from
    features `hint` (lines, 2, C, H, W) that are within `tolerance`: the channel mean E of F^2
    moves by at most dE = 2 mean_c |F| tolerance + tolerance^2, and a = E / ||E|| by at most
    dE / ||E|| + |a| ||dE|| / ||E|| (first order), plus a's own float32 rounding (|a| <= 1)."""
    features = np.abs(hint.astype(np.float64))
    energy = (features ** 2).mean(axis=2, keepdims=True)
    moved = 2 * features.mean(axis=2, keepdims=True) * tolerance + tolerance ** 2
    norm = np.sqrt((energy ** 2).sum(axis=(2, 3, 4), keepdims=True))
    moved_norm = np.sqrt((moved ** 2).sum(axis=(2, 3, 4), keepdims=True))
    return moved / norm + energy / norm * moved_norm / norm + 1e-6


def test_tool_refuses_other_nets_and_asks_what_to_write(small, models, maps):
    paths, lists = maps['paths'], maps['lists']
    out = str(small['root'] / 'refused' / 'attention_targets.npy')
    wrong = run_tool('compute_baseline_targets.py', '--net', paths['stage2_teacher_deploy'],
                     '--teacher', models['wsddn'], '--datalist', lists['train'],
                     '--attention-targets', out)
    assert wrong.returncode == 1 and "not the baselines' teacher" in wrong.stderr
    nothing = run_tool('compute_baseline_targets.py', '--net', paths['baseline_teacher_deploy'],
                       '--teacher', models['wsddn'], '--datalist', lists['train'])
    assert nothing.returncode == 2 and '--attention-targets, --hint-targets or both' in \
        nothing.stderr
    assert not os.path.exists(out)


@pytest.mark.parametrize('kind', sorted(netgen.BASELINE_NETS))
def test_baseline_nets_train_from_precomputed_maps_with_the_caffe_tool(small, models, maps,
                                                                        kind):
    import math
    from mlic.caffe_train import ITERATION_LOSS
    paths = maps['paths']
    init = str(small['root'] / ('%s_train_maps_init.caffemodel' % kind))
    surgery.baseline_init(models['wsddn'], paths[kind + '_train'], init)
    done = run_caffe_tool(['train', '-solver', paths[kind + '_solver'], '-weights', init],
                          cwd=str(small['root']))
    assert done.returncode == 0, done.stdout[-3000:]
    losses = [float(m.group(2)) for m in ITERATION_LOSS.finditer(done.stdout)]
    assert len(losses) >= ITERATIONS and all(math.isfinite(loss) for loss in losses), losses
    assert np.mean(losses[-5:]) < np.mean(losses[:5]), losses
    snapshot = os.path.join(os.path.dirname(paths[kind + '_train']), os.pardir, 'snapshots',
                            'small_%s_iter_%d.caffemodel' % (kind, ITERATIONS))
    assert os.path.exists(snapshot)
    # The data layer reads the maps from the file named in the net.
    assert 'map_targets' in open(paths[kind + '_train']).read()
    if kind == 'fitnets_hint':  # no test net: no maps of the test images
        assert 'Test net output' not in done.stdout
    else:  # the test net has the labels' loss only
        assert 'Test net output #0: loss_sig' in done.stdout
        assert 'Test net output #1' not in done.stdout
