"""tools/stage1_fit.py and mlic.feature_fit: the stage-1 student's RoI features against the
teacher's, zero and the teacher's mean, on hand-worked numbers and on the real small stage-1 net."""
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import toy_config
from mlic.paths import ROOT
from test_training import write_dataset

from mlic import feature_fit, netgen

TOOL = os.path.join(ROOT, 'tools', 'stage1_fit.py')


def test_fit_summary_on_hand_worked_features():
    teacher = [[1.0, 0.0], [3.0, 0.0]]
    student = [[1.0, 0.0], [1.0, 0.0]]
    summary = feature_fit.fit_summary(teacher, student)
    # 1/2 mean of squared distances: student (0 + 4) / 2 / 2, zero (1 + 9) / 2 / 2, and the
    # teacher's mean (2, 0): (1 + 1) / 2 / 2.
    assert summary == {'student': 1.0, 'zero': 2.5, 'teacher_mean': 0.5, 'rois': 2}
    with pytest.raises(ValueError, match='one shape'):
        feature_fit.fit_summary(teacher, [[1.0, 0.0]])


def test_format_fit_reads_the_student_against_the_mean_predictor():
    worse = feature_fit.format_fit({'student': 3.0, 'zero': 2.5, 'teacher_mean': 0.5, 'rois': 2})
    assert 'farther from the teacher than the teacher\'s mean feature (2 RoIs)' in worse
    assert '| the student\'s | 3.000 |' in worse
    better = feature_fit.format_fit({'student': 0.25, 'zero': 2.5, 'teacher_mean': 0.5,
                                     'rois': 2})
    assert 'explains 50% of the teacher\'s feature variance over 2 RoIs' in better


@pytest.fixture(scope='module')
def stage1(tmp_path_factory, caffe):
    root = tmp_path_factory.mktemp('fit')
    cfg = toy_config()
    lists = {split: write_dataset(str(root / split), cfg, 4, seed)
             for seed, split in enumerate(('train', 'test'))}
    paths = netgen.write_nets(str(root / 'nets'), cfg, datalists=lists)
    weights = str(root / 'fillers.caffemodel')
    net = caffe.Net(paths['stage1_train'], caffe.TRAIN)
    net.save(weights)
    del net
    return {'net': paths['stage1_train'], 'weights': weights, 'cfg': cfg,
            'stage2': paths['stage2_train'], 'train': lists['train']}


def test_roi_feature_fit_leaves_out_padding_and_matches_the_nets_loss(stage1):
    summary = feature_fit.roi_feature_fit(stage1['net'], stage1['weights'], batches=3)
    cfg = stage1['cfg']
    # Every image of the dataset has num_proposals - 1 real proposals and one padding row.
    batch = cfg['batch_size']['stage1'][0]
    assert summary['rois'] == 3 * batch * (cfg['num_proposals'] - 1)
    # With as many real proposals in every image, the per-image mean of RoIDistillationLoss is
    # the mean over all RoIs.
    assert summary['student'] == pytest.approx(summary['loss'], rel=1e-4)
    assert 0 < summary['teacher_mean'] <= summary['zero']


def test_roi_feature_fit_measures_the_student_without_dropout(stage1):
    # The small stage-1 net trains the student's fc6/fc7 with dropout after them; measured
    # through dropout, two runs over the same batches would draw different masks.
    with open(stage1['net']) as f:
        assert 'type: "Dropout"' in f.read()
    first = feature_fit.roi_feature_fit(stage1['net'], stage1['weights'], batches=2)
    second = feature_fit.roi_feature_fit(stage1['net'], stage1['weights'], batches=2)
    assert first['student'] == second['student']
    assert first['teacher_mean'] == second['teacher_mean']


def test_tool_prints_the_table_and_names_a_net_without_the_loss(stage1):
    done = subprocess.run([sys.executable, TOOL, '--net', stage1['net'], '--weights',
                           stage1['weights'], '--batches', '2'], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [line for line in done.stdout.splitlines() if line.startswith('| the')]
    assert len(rows) == 3 and 'RoIs' in done.stdout
    values = [float(line.split('|')[2]) for line in rows[1:]]
    assert all(np.isfinite(values))
    wrong = subprocess.run([sys.executable, TOOL, '--net', stage1['stage2'], '--weights',
                            stage1['weights']], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, timeout=300)
    assert wrong.returncode == 1
    assert stage1['stage2'] in wrong.stderr and 'RoIDistillationLoss' in wrong.stderr
    missing = subprocess.run([sys.executable, TOOL, '--net', stage1['net'], '--weights',
                              stage1['weights'] + '.missing'], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, timeout=60)
    assert missing.returncode == 1 and '--weights' in missing.stderr


def test_a_stage1_net_reading_precomputed_roi_targets_measures_the_same(stage1, tmp_path):
    """roi_targets: the teacher's features come from the file; the fit is the online net's."""
    from mlic import inference
    cfg = stage1['cfg']
    train = stage1['train']
    roi_path = str(tmp_path / 'roi_targets.npy')
    paths = netgen.write_nets(str(tmp_path / 'nets'), dict(cfg, roi_targets=roi_path),
                              datalists={'train': train, 'test': train})
    # The stage-1 weights hold the teacher under the KD names, as the stage-2 teacher reads it.
    inference.teacher_targets(paths['stage2_teacher_deploy'], stage1['weights'],
                              inference.read_datalist(train, cfg['num_classes'],
                                                      cfg['num_proposals']),
                              cfg, roi_path=roi_path)
    online = feature_fit.roi_feature_fit(stage1['net'], stage1['weights'], batches=3)
    precomputed = feature_fit.roi_feature_fit(paths['stage1_train'], stage1['weights'],
                                              batches=3)
    assert precomputed['rois'] == online['rois']
    for key in ('student', 'teacher_mean', 'zero', 'loss'):
        assert precomputed[key] == pytest.approx(online[key], rel=1e-4), key
