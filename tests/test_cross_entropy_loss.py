"""CrossEntropyLoss through pycaffe against a NumPy reference written from SPEC section 4.

loss = -(1/N) sum[y log max(p, 1e-4) + (1 - y) log max(1 - p, 1e-4)], N the batch size;
a clamped term passes no gradient; targets equal to ignore_label add nothing.
"""
import textwrap

import numpy as np
import pytest

FLOOR = 1e-4


def reference_loss(p, y, ignore_label=None):
    p = p.reshape(len(p), -1).astype(np.float64)
    y = y.reshape(len(y), -1).astype(np.float64)
    terms = y * np.log(np.maximum(p, FLOOR)) + (1 - y) * np.log(np.maximum(1 - p, FLOOR))
    if ignore_label is not None:
        terms[y == ignore_label] = 0
    return -terms.sum() / len(p)


def reference_gradient(p, y, ignore_label=None, loss_weight=1.0):
    shape = p.shape
    p = p.reshape(len(p), -1).astype(np.float64)
    y = y.reshape(len(y), -1).astype(np.float64)
    positive = np.divide(y, p, out=np.zeros_like(p), where=p > FLOOR)
    negative = np.divide(1 - y, 1 - p, out=np.zeros_like(p), where=1 - p > FLOOR)
    grad = (negative - positive) * loss_weight / len(p)
    if ignore_label is not None:
        grad[y == ignore_label] = 0
    return grad.reshape(shape)


def make_net(caffe, tmp_path, num, classes, param_str='', extra=''):
    """WSDDN's shapes: image_level_score (N, 1, C, 1) against labels (N, C)."""
    net_file = tmp_path / 'net.prototxt'
    net_file.write_text(textwrap.dedent('''
        force_backward: true
        layer { name: "p" type: "Input" top: "prob"
                input_param { shape { dim: %d dim: 1 dim: %d dim: 1 } } }
        layer { name: "y" type: "Input" top: "labels" input_param { shape { dim: %d dim: %d } } }
        layer { name: "loss" type: "CrossEntropyLoss" bottom: "prob" bottom: "labels" top: "loss"
                python_param { param_str: "%s" } %s }
    ''' % (num, classes, num, classes, param_str, extra)))
    return caffe.Net(str(net_file), caffe.TRAIN)


def run(net, p, y):
    net.blobs['prob'].data[...] = p.reshape(net.blobs['prob'].data.shape)
    net.blobs['labels'].data[...] = y
    net.forward()
    net.backward()
    return float(net.blobs['loss'].data), net.blobs['prob'].diff.reshape(y.shape).copy()


def test_reference_gradient_is_the_derivative_of_the_reference_loss():
    rng = np.random.RandomState(0)
    p = rng.uniform(0.05, 0.95, (3, 4))
    y = rng.uniform(0, 1, (3, 4))
    step = 1e-6
    numeric = np.zeros_like(p)
    for i in np.ndindex(p.shape):
        hi, lo = p.copy(), p.copy()
        hi[i] += step
        lo[i] -= step
        numeric[i] = (reference_loss(hi, y) - reference_loss(lo, y)) / (2 * step)
    np.testing.assert_allclose(reference_gradient(p, y), numeric, rtol=1e-5)


@pytest.mark.parametrize('loss_weight', [1.0, 2.5])
def test_loss_and_gradient_match_reference(caffe, tmp_path, loss_weight):
    rng = np.random.RandomState(1)
    p = rng.uniform(0.01, 0.99, (4, 20)).astype(np.float32)
    y = (rng.uniform(size=(4, 20)) < 0.3).astype(np.float32)
    net = make_net(caffe, tmp_path, 4, 20, extra='loss_weight: %g' % loss_weight)
    loss, grad = run(net, p, y)
    # The blob holds the unweighted loss; the weight scales the gradient.
    assert loss == pytest.approx(reference_loss(p, y), rel=1e-5)
    np.testing.assert_allclose(grad, reference_gradient(p, y, loss_weight=loss_weight),
                               rtol=1e-5, atol=1e-7)


def test_clamp_at_zero_and_one(caffe, tmp_path):
    # Columns: confidently wrong at 0 and at 1, inside the clamp, and right at 0 and at 1.
    p = np.array([[0, 1, 5e-5, 1 - 5e-5, 0, 1]], np.float32)
    y = np.array([[1, 0, 1, 0, 0, 1]], np.float32)
    net = make_net(caffe, tmp_path, 1, 6)
    loss, grad = run(net, p, y)
    assert np.isfinite(loss)
    assert loss == pytest.approx(reference_loss(p, y), rel=1e-5)
    assert loss == pytest.approx(-4 * np.log(FLOOR), rel=1e-4)  # the four wrong ones, clamped
    np.testing.assert_array_equal(grad[0, :4], 0)
    np.testing.assert_allclose(grad, reference_gradient(p, y), rtol=1e-5)
    assert grad[0, 4] == pytest.approx(1.0) and grad[0, 5] == pytest.approx(-1.0)


def test_ignore_label_adds_nothing_and_keeps_batch_normalisation(caffe, tmp_path):
    rng = np.random.RandomState(2)
    p = rng.uniform(0.01, 0.99, (3, 8)).astype(np.float32)
    y = (rng.uniform(size=(3, 8)) < 0.5).astype(np.float32)
    y[0, 1] = y[1, 5] = y[2, 0] = y[2, 7] = -1
    net = make_net(caffe, tmp_path, 3, 8, param_str='ignore_label: -1')
    loss, grad = run(net, p, y)
    kept = y != -1
    expected = -np.sum((y * np.log(p) + (1 - y) * np.log(1 - p))[kept]) / 3
    assert loss == pytest.approx(expected, rel=1e-5)
    assert loss == pytest.approx(reference_loss(p, y, ignore_label=-1), rel=1e-5)
    np.testing.assert_array_equal(grad[~kept], 0)
    np.testing.assert_allclose(grad, reference_gradient(p, y, ignore_label=-1), rtol=1e-5)


def test_soft_targets_use_the_formula(caffe, tmp_path):
    rng = np.random.RandomState(3)
    p = rng.uniform(0.01, 0.99, (2, 10)).astype(np.float32)
    y = rng.uniform(0, 1, (2, 10)).astype(np.float32)
    net = make_net(caffe, tmp_path, 2, 10)
    loss, grad = run(net, p, y)
    assert loss == pytest.approx(reference_loss(p, y), rel=1e-5)
    np.testing.assert_allclose(grad, reference_gradient(p, y), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize('param_str, target, message', [
    ('', 2.0, r'target 2 \(image 1, value 3\) is not a probability in \[0, 1\]'),
    ('', -1.0, r'target -1 .*set ignore_label'),
    ('ignore_label: -1', -2.0, r'target -2 .*nor ignore_label -1'),
    ('', np.nan, r'target nan'),
])
def test_bad_target_is_an_error_naming_layer_and_value(caffe, tmp_path, param_str, target,
                                                       message):
    net = make_net(caffe, tmp_path, 2, 5, param_str=param_str)
    y = np.zeros((2, 5), np.float32)
    y[1, 3] = target
    net.blobs['labels'].data[...] = y
    with pytest.raises(RuntimeError, match=r'layer "loss" \(CrossEntropyLoss\): bottom\[1\]: '
                       + message):
        net.forward()


def test_targets_of_another_size_are_an_error_naming_both_shapes(caffe, tmp_path):
    net_file = tmp_path / 'net.prototxt'
    net_file.write_text(textwrap.dedent('''
        layer { name: "p" type: "Input" top: "prob"
                input_param { shape { dim: 2 dim: 1 dim: 20 dim: 1 } } }
        layer { name: "y" type: "Input" top: "labels" input_param { shape { dim: 2 dim: 80 } } }
        layer { name: "wsddn_loss" type: "CrossEntropyLoss" bottom: "prob" bottom: "labels" }
    '''))
    with pytest.raises(RuntimeError, match=r'layer "wsddn_loss" \(CrossEntropyLoss\): '
                       r'bottom\[1\]: the targets \(shape 2 80 \(160\)\).*'
                       r'probabilities bottom\[0\] \(shape 2 1 20 1 \(40\)\)'):
        caffe.Net(str(net_file), caffe.TRAIN)


def test_gradient_to_the_targets_is_an_error(caffe, tmp_path):
    net = make_net(caffe, tmp_path, 2, 3, extra='propagate_down: true propagate_down: true')
    net.blobs['prob'].data[...] = 0.5
    net.forward()
    with pytest.raises(RuntimeError, match=r'propagate_down: cannot back-propagate to the targets'):
        net.backward()
