"""RoIDistillationLoss through pycaffe against a NumPy reference and stock EuclideanLoss."""
import textwrap

import numpy as np
import pytest


def distillation_reference(teacher, student, rois, top_k=0):
    """Loss and d loss / d student of the stage-1 loss, written from its definition
    (docs/original-method.md, "The paper's formulas and the released nets")."""
    rows = len(rois)
    n_images = int(rois[:, 0].max()) + 1
    per_image = rows // n_images
    loss = 0.0
    grad = np.zeros(student.shape, dtype=np.float64)
    diff = student.astype(np.float64) - teacher
    for n in range(n_images):
        image_rows = range(n * per_image, (n + 1) * per_image)
        real = [r for r in image_rows if rois[r, 1] >= 0]
        # Highest score first, the lower row first among equal scores.
        selected = sorted(real, key=lambda r: (-rois[r, 5], r))
        if top_k:
            selected = selected[:top_k]
        for r in selected:
            loss += (diff[r] ** 2).sum() / (2 * n_images * len(selected))
            grad[r] = diff[r] / (n_images * len(selected))
    return loss, grad


def make_rois(n, b, scores=None, padding=()):
    rng = np.random.RandomState(0)
    rois = np.zeros((n * b, 6), dtype=np.float32)
    rois[:, 0] = np.repeat(np.arange(n), b)
    rois[:, 1:5] = rng.uniform(0, 50, size=(n * b, 4))
    rois[:, 5] = rng.uniform(size=n * b) if scores is None else scores
    for r in padding:
        rois[r, 1:] = -1
    return rois


def make_net(caffe, tmp_path, rows, feature_shape, top_k=0, euclidean=False):
    dims = ' '.join('dim: %d' % d for d in (rows,) + feature_shape)
    # force_backward: the inputs need a gradient; it overrides propagate_down, so the teacher
    # gets one too (the layer's honest one: the student's negated).
    text = '''
        force_backward: true
        layer {{ name: "in" type: "Input" top: "teacher" top: "student" top: "rois"
                input_param {{ shape {{ {dims} }} shape {{ {dims} }}
                              shape {{ dim: {rows} dim: 6 }} }} }}
        layer {{ name: "feat_loss" type: "RoIDistillationLoss"
                bottom: "teacher" bottom: "student" bottom: "rois" top: "loss"
                python_param {{ param_str: "top_k: {top_k}" }} }}
    '''.format(dims=dims, rows=rows, top_k=top_k)
    if euclidean:
        text += '''
        layer { name: "euclidean" type: "EuclideanLoss" bottom: "teacher" bottom: "student"
                top: "euclidean_loss" loss_weight: 0 }
        '''
    net_file = tmp_path / 'net.prototxt'
    net_file.write_text(textwrap.dedent(text))
    return caffe.Net(str(net_file), caffe.TRAIN)


def run(net, teacher, student, rois):
    net.blobs['teacher'].data[...] = teacher
    net.blobs['student'].data[...] = student
    net.blobs['rois'].data[...] = rois
    loss = float(net.forward()['loss'])
    net.backward()
    return loss, net.blobs['student'].diff.copy()


def features(rows, shape, seed):
    rng = np.random.RandomState(seed)
    return (rng.normal(size=(rows,) + shape).astype(np.float32),
            rng.normal(size=(rows,) + shape).astype(np.float32))


@pytest.mark.parametrize('padding,top_k', [
    ((), 0), ((1, 5, 6), 0), ((1, 5, 6), 2), ((), 3), ((4, 5, 6, 7), 0), ((0, 2), 10),
], ids=['all', 'padding', 'padding-top2', 'top3', 'image-all-padding', 'top-k-over-available'])
def test_loss_and_student_gradient_match_numpy(caffe, tmp_path, padding, top_k):
    n, b, shape = 2, 4, (3, 2, 2)
    teacher, student = features(n * b, shape, seed=len(padding) + top_k)
    rois = make_rois(n, b, padding=padding)
    net = make_net(caffe, tmp_path, n * b, shape, top_k=top_k)
    loss, grad = run(net, teacher, student, rois)
    expected_loss, expected_grad = distillation_reference(teacher, student, rois, top_k)
    assert expected_loss > 0
    np.testing.assert_allclose(loss, expected_loss, rtol=1e-5)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-4, atol=1e-7)
    np.testing.assert_array_equal(net.blobs['teacher'].diff, -grad)


def test_ties_keep_the_lower_row(caffe, tmp_path):
    n, b, shape = 1, 4, (5,)
    teacher, student = features(n * b, shape, seed=7)
    rois = make_rois(n, b, scores=[0.3, 0.8, 0.8, 0.8])
    net = make_net(caffe, tmp_path, n * b, shape, top_k=2)
    loss, grad = run(net, teacher, student, rois)
    diff = student.astype(np.float64) - teacher
    np.testing.assert_allclose(loss, ((diff[1] ** 2).sum() + (diff[2] ** 2).sum()) / 4, rtol=1e-5)
    assert np.all(grad[[0, 3]] == 0) and np.all(grad[[1, 2]] != 0)


def test_every_region_padding_gives_zero_loss_and_gradient(caffe, tmp_path):
    teacher, student = features(6, (4,), seed=8)
    net = make_net(caffe, tmp_path, 6, (4,), top_k=1)
    loss, grad = run(net, teacher, student, make_rois(3, 2, padding=range(6)))
    assert loss == 0 and np.all(grad == 0)


def test_one_proposal_per_image(caffe, tmp_path):
    teacher, student = features(3, (2, 3), seed=9)
    rois = make_rois(3, 1)
    net = make_net(caffe, tmp_path, 3, (2, 3))
    loss, grad = run(net, teacher, student, rois)
    expected_loss, expected_grad = distillation_reference(teacher, student, rois)
    np.testing.assert_allclose(loss, expected_loss, rtol=1e-5)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-4, atol=1e-7)


def test_without_padding_equals_stock_euclidean_loss(caffe, tmp_path):
    n, b, shape = 3, 5, (16, 1, 1)
    teacher, student = features(n * b, shape, seed=10)
    net = make_net(caffe, tmp_path, n * b, shape, euclidean=True)
    loss, _ = run(net, teacher, student, make_rois(n, b))
    np.testing.assert_allclose(loss, float(net.blobs['euclidean_loss'].data), rtol=1e-5)
    # Only our loss is weighted, so this backward pass was ours; then the stock one alone.
    ours = net.blobs['student'].diff.copy()
    net.blobs['loss'].diff[...] = 0
    net.blobs['euclidean_loss'].diff[...] = 1
    net._backward(len(net.layers) - 1, 0)
    np.testing.assert_allclose(ours, net.blobs['student'].diff, rtol=1e-5, atol=1e-8)


def test_propagate_down_0_leaves_the_teacher_alone(caffe, tmp_path):
    """As the distillation nets use it: only the student branch learns from this loss."""
    net_file = tmp_path / 'net.prototxt'
    net_file.write_text(textwrap.dedent('''
        layer { name: "in" type: "Input" top: "t_in" top: "s_in" top: "rois"
                input_param { shape { dim: 4 dim: 3 } shape { dim: 4 dim: 3 }
                              shape { dim: 4 dim: 6 } } }
        layer { name: "t" type: "Scale" bottom: "t_in" top: "teacher"
                scale_param { axis: 0 num_axes: 0 filler { type: "constant" value: 1 } } }
        layer { name: "s" type: "Scale" bottom: "s_in" top: "student"
                scale_param { axis: 0 num_axes: 0 filler { type: "constant" value: 1 } } }
        layer { name: "feat_loss" type: "RoIDistillationLoss" bottom: "teacher" bottom: "student"
                bottom: "rois" top: "loss" propagate_down: 0 propagate_down: 1 propagate_down: 0 }
    '''))
    net = caffe.Net(str(net_file), caffe.TRAIN)
    teacher, student = features(4, (3,), seed=12)
    net.blobs['t_in'].data[...] = teacher
    net.blobs['s_in'].data[...] = student
    net.blobs['rois'].data[...] = make_rois(2, 2, padding=(1,))
    net.forward()
    net.backward()
    assert np.all(net.params['t'][0].diff == 0)
    assert net.params['s'][0].diff != 0
