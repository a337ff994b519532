"""The real `caffe train` through tools/caffe and mlic.caffe_train: snapshots, resume, NaN stop."""
import os
import textwrap

import numpy as np
import pytest

from mlic import caffe_train

NET = textwrap.dedent('''
    layer { name: "data" type: "DummyData" top: "x" top: "lists"
      dummy_data_param {
        shape { dim: 4 dim: 6 } shape { dim: 4 dim: 10 }
        data_filler { type: "gaussian" std: 1 } data_filler { type: "uniform" min: 0 max: 20 } } }
    layer { name: "roi" type: "WsdRoigen" bottom: "lists" top: "roi" }
    layer { name: "silence" type: "Silence" bottom: "roi" }
    layer { name: "fc" type: "InnerProduct" bottom: "x" top: "y"
      inner_product_param { num_output: 6 weight_filler { type: "gaussian" std: 0.1 } } }
    layer { name: "loss" type: "EuclideanLoss" bottom: "y" bottom: "x" top: "loss" }
''')


def write_solver(tmp_path, max_iter=20, base_lr=0.05, snapshot=10):
    (tmp_path / 'net.prototxt').write_text(NET)
    solver = tmp_path / 'solver.prototxt'
    solver.write_text(textwrap.dedent('''
        net: "net.prototxt"
        base_lr: %g  lr_policy: "fixed"  momentum: 0.9
        max_iter: %d  display: 1  snapshot: %d  snapshot_prefix: "snap/tiny"
        solver_mode: CPU  random_seed: 1
    ''' % (base_lr, max_iter, snapshot)))
    (tmp_path / 'snap').mkdir(exist_ok=True)
    return str(solver)


def test_train_writes_snapshots_and_returns_final_weights(tmp_path):
    solver = write_solver(tmp_path)
    log = tmp_path / 'train.log'
    final = caffe_train.train(solver, str(log), progress=False, cwd=str(tmp_path))
    assert final == str(tmp_path / 'snap' / 'tiny_iter_20.caffemodel')
    assert os.path.getsize(final) > 0
    assert (tmp_path / 'snap' / 'tiny_iter_10.solverstate').exists()
    losses = [float(m.group(2)) for m in caffe_train.ITERATION_LOSS.finditer(log.read_text())]
    assert len(losses) >= 20 and all(np.isfinite(losses))
    assert np.mean(losses[-5:]) < np.mean(losses[:5])  # it learns the identity


def test_interrupted_training_resumes_from_the_newest_snapshot(tmp_path):
    solver = write_solver(tmp_path, max_iter=10, snapshot=4)
    caffe_train.train(solver, str(tmp_path / 'a.log'), progress=False, cwd=str(tmp_path))
    # As if the run had been killed at iteration 9: the iteration-8 snapshot is the newest.
    for suffix in ('caffemodel', 'solverstate'):
        os.remove(tmp_path / 'snap' / ('tiny_iter_10.' + suffix))
    log = tmp_path / 'b.log'
    final = caffe_train.train(solver, str(log), progress=False, cwd=str(tmp_path))
    text = log.read_text()
    assert '-snapshot %s' % (tmp_path / 'snap' / 'tiny_iter_8.solverstate') in text
    iterations = [int(m.group(1)) for m in caffe_train.ITERATION_LOSS.finditer(text)]
    assert min(iterations) >= 8  # continued, did not start over
    assert os.path.exists(final)


def test_diverging_loss_stops_with_iteration_and_log(tmp_path):
    solver = write_solver(tmp_path, max_iter=200, base_lr=1e6)
    with pytest.raises(caffe_train.TrainingError, match=r'loss became (nan|inf|-nan).*iteration \d+'):
        caffe_train.train(solver, str(tmp_path / 'nan.log'), progress=False, cwd=str(tmp_path))


def test_failing_net_names_solver_and_log(tmp_path):
    solver = write_solver(tmp_path)
    (tmp_path / 'net.prototxt').write_text(NET.replace('"WsdRoigen"', '"NoSuchLayer"'))
    with pytest.raises(caffe_train.TrainingError, match='failed.*nope.log'):
        caffe_train.train(solver, str(tmp_path / 'nope.log'), progress=False, cwd=str(tmp_path))


def test_a_quiet_glog_setting_of_the_caller_does_not_hide_the_iterations(tmp_path, monkeypatch):
    monkeypatch.setenv('GLOG_minloglevel', '2')
    solver = write_solver(tmp_path, max_iter=4)
    log = tmp_path / 'quiet.log'
    caffe_train.train(solver, str(log), progress=False, cwd=str(tmp_path))
    assert len(list(caffe_train.ITERATION_LOSS.finditer(log.read_text()))) >= 4
