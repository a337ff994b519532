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


DATA_NET = textwrap.dedent('''
    layer { name: "data" type: "Python" top: "data" top: "label_roi"
      include { phase: TRAIN }
      python_param { module: "caffe_layers.data_layer" layer: "MultiLabelRoIDataLayer"
        param_str: "source: '%(source)s' root_folder: '' batch_size: 2 shuffle: true new_width: %(size)d new_height: %(size)d scale_factors: 0.75 scale_factors: 1 att_num: 3 bbox_num: %(bbox)d mirror: true scale: 0.00390625 seed: 3 workers: 1" } }
    layer { name: "slice" type: "Slice" bottom: "label_roi" top: "labels" top: "rois"
      slice_param { axis: 1 slice_point: 3 } }
    layer { name: "silence" type: "Silence" bottom: "rois" }
    layer { name: "pool" type: "Pooling" bottom: "data" top: "pooled"
      pooling_param { pool: AVE global_pooling: true } }
    layer { name: "fc" type: "InnerProduct" bottom: "pooled" top: "y"
      inner_product_param { num_output: 3 weight_filler { type: "gaussian" std: 0.1 } } }
    layer { name: "loss" type: "EuclideanLoss" bottom: "y" bottom: "labels" top: "loss" }
''')


def test_a_resumed_training_goes_on_with_the_batches_of_an_uninterrupted_one(tmp_path):
    """Caffe restores weights, momentum and iteration from a .solverstate, not our data layer's
    place in its stream: the resumed run starts the layer at batch `iteration` (start_batch),
    so interrupted and uninterrupted runs end with the same weights (the same kernels on the
    same machine do the same arithmetic). Without it the resumed run would replay batches 0..,
    and the weights differ (checked below, so the test can fail)."""
    from conftest import TOY_PIPELINE_BBOX_NUM, TOY_PIPELINE_SIZE, toy_pipeline_lists
    import caffe
    lists = toy_pipeline_lists(tmp_path / 'lists', num_classes=3, num_train=10, num_test=2,
                               seed=2)

    def run(folder, resume_at=None, fast_forward=True):
        folder.mkdir()
        (folder / 'net.prototxt').write_text(DATA_NET % dict(
            source=lists['train'], size=TOY_PIPELINE_SIZE, bbox=TOY_PIPELINE_BBOX_NUM))
        solver = folder / 'solver.prototxt'
        solver.write_text(textwrap.dedent('''
            net: "net.prototxt"
            base_lr: 0.05  lr_policy: "fixed"  momentum: 0.9
            max_iter: 8  display: 1  snapshot: 3  snapshot_prefix: "snap/tiny"
            solver_mode: CPU  random_seed: 1
        '''))
        (folder / 'snap').mkdir()
        if resume_at:  # the first part, then "killed": the snapshots after resume_at removed
            caffe_train.train(str(solver), str(folder / 'a.log'), progress=False, cwd=str(folder))
            for path in folder.glob('snap/tiny_iter_*'):
                if int(path.name.split('_')[2].split('.')[0]) > resume_at:
                    os.remove(str(path))
            if not fast_forward:
                saved = caffe_train.resumed_solver
                caffe_train.resumed_solver = lambda path, iteration, cwd: path
        try:
            final = caffe_train.train(str(solver), str(folder / 'b.log'), progress=False,
                                      cwd=str(folder))
        finally:
            if resume_at and not fast_forward:
                caffe_train.resumed_solver = saved
        net = caffe.Net(str(folder / 'net.prototxt'), final, caffe.TRAIN)
        weights = net.params['fc'][0].data.copy()
        net.layers[0].close()
        return weights

    straight = run(tmp_path / 'straight')
    resumed = run(tmp_path / 'resumed', resume_at=3)
    resumed_net = (tmp_path / 'resumed' / 'solver.resumed_net.prototxt').read_text()
    assert 'start_batch: 3' in resumed_net
    assert '-snapshot %s' % (tmp_path / 'resumed' / 'snap' / 'tiny_iter_3.solverstate') in \
        (tmp_path / 'resumed' / 'b.log').read_text()
    np.testing.assert_array_equal(resumed, straight)
    replayed = run(tmp_path / 'replayed', resume_at=3, fast_forward=False)
    assert not np.array_equal(replayed, straight)


def test_resumed_solver_replaces_a_start_batch_already_there(tmp_path):
    (tmp_path / 'net.prototxt').write_text(
        DATA_NET.replace("workers: 1", "workers: 1 start_batch: 7")
        % dict(source='x.txt', size=32, bbox=4))
    (tmp_path / 'solver.prototxt').write_text('net: "net.prototxt"\niter_size: 2\n')
    resumed = caffe_train.resumed_solver(str(tmp_path / 'solver.prototxt'), 5, str(tmp_path))
    assert resumed == str(tmp_path / 'solver.resumed.prototxt')
    net = (tmp_path / 'solver.resumed_net.prototxt').read_text()
    assert net.count('start_batch') == 1 and 'start_batch: 10' in net  # 5 x iter_size 2
    # A net without our data layer: the solver as it is.
    (tmp_path / 'plain.prototxt').write_text('net: "other.prototxt"\n')
    (tmp_path / 'other.prototxt').write_text(NET)
    assert caffe_train.resumed_solver(str(tmp_path / 'plain.prototxt'), 5, str(tmp_path)) == \
        str(tmp_path / 'plain.prototxt')
