"""CrossEntropyLoss through pycaffe against NumPy references.

loss = -(1/N) sum[y log max(p, 1e-4) + (1 - y) log max(1 - p, 1e-4)], N the batch size;
gradient (the original fork's rule, also where the loss is clamped)
  (loss_weight/N) [-y/max(p, 1e-4) + (1 - y)/max(1 - p, 1e-4)];
targets equal to loss_param.ignore_label add no loss and get no gradient (N stays the batch size).

Against the original fork: `original_gradient` repeats, in float32 and in the same order, the
operations of the fork's Backward_cpu (caffe-MLIC, cross_entropy_loss_layer.cpp); each is one
correctly rounded IEEE operation, so ours must equal it exactly, the clamped region included
(test_gradient_equals_the_originals_float32_operations).
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
    """The original's rule in float64: the loss's derivative where no clamp is active, and the
    clamped denominators' quotient where one is."""
    shape = p.shape
    p = p.reshape(len(p), -1).astype(np.float64)
    y = y.reshape(len(y), -1).astype(np.float64)
    grad = (-y / np.maximum(p, FLOOR) + (1 - y) / np.maximum(1 - p, FLOOR)) * loss_weight / len(p)
    if ignore_label is not None:
        grad[y == ignore_label] = 0
    return grad.reshape(shape)


def original_gradient(p, y, loss_weight=1.0):
    """The fork's Backward_cpu step by step in float32: t / max(p, 1e-4) plus
    (1 - t) / min(p - 1, -1e-4), scaled by -loss_weight / num."""
    f = np.float32
    p = p.reshape(len(p), -1).astype(f)
    y = y.reshape(len(y), -1).astype(f)
    neg_target = y * f(-1) + f(1)
    neg_prediction = np.minimum(p + f(-1), f(-0.0001))
    prediction_safe = np.maximum(p, f(0.0001))
    total = y / prediction_safe + neg_target / neg_prediction
    return total * (-f(loss_weight) / f(len(p)))


def make_net(caffe, tmp_path, num, classes, ignore_label=None, extra=''):
    """WSDDN's shapes: image_level_score (N, 1, C, 1) against labels (N, C)."""
    if ignore_label is not None:
        extra += ' loss_param { ignore_label: %d }' % ignore_label
    net_file = tmp_path / 'net.prototxt'
    net_file.write_text(textwrap.dedent('''
        force_backward: true
        layer { name: "p" type: "Input" top: "prob"
                input_param { shape { dim: %d dim: 1 dim: %d dim: 1 } } }
        layer { name: "y" type: "Input" top: "labels" input_param { shape { dim: %d dim: %d } } }
        layer { name: "loss" type: "CrossEntropyLoss" bottom: "prob" bottom: "labels" top: "loss"
                %s }
    ''' % (num, classes, num, classes, extra)))
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


def test_clamp_bounds_the_loss_and_the_gradient_follows_the_original(caffe, tmp_path):
    # Columns: confidently wrong at 0 and at 1, inside the clamp at both ends, right at 0 and
    # at 1, and a soft target at 0.
    p = np.array([[0, 1, 5e-5, 1 - 5e-5, 0, 1, 0]], np.float32)
    y = np.array([[1, 0, 1, 0, 0, 1, 0.25]], np.float32)
    net = make_net(caffe, tmp_path, 1, 7)
    loss, grad = run(net, p, y)
    assert np.isfinite(loss)
    assert loss == pytest.approx(reference_loss(p, y), rel=1e-5)
    wrong = -4 * np.log(FLOOR)  # the four wrong ones, clamped
    assert loss == pytest.approx(wrong - 0.25 * np.log(FLOOR), rel=1e-4)
    # The clamped terms keep the original's gradient: +-1/1e-4, not 0.
    np.testing.assert_allclose(grad[0, :4], [-1e4, 1e4, -1e4, 1e4], rtol=1e-5)
    assert grad[0, 4] == pytest.approx(1.0) and grad[0, 5] == pytest.approx(-1.0)
    assert grad[0, 6] == pytest.approx(-0.25e4 + 0.75, rel=1e-5)
    np.testing.assert_allclose(grad, reference_gradient(p, y), rtol=1e-5)


@pytest.mark.parametrize('loss_weight', [1.0, 0.5])
def test_gradient_equals_the_originals_float32_operations(caffe, tmp_path, loss_weight):
    """Ordinary and clamped probabilities, hard and soft targets: the fork's float32 result."""
    rng = np.random.RandomState(4)
    p = np.concatenate([rng.uniform(0, 1, (4, 12)),
                        rng.choice([0, 1e-6, 5e-5, 1e-4, 1 - 1e-4, 1 - 5e-5, 1], (4, 12))],
                       axis=1).astype(np.float32)
    y = np.where(rng.uniform(size=(4, 24)) < 0.5, (rng.uniform(size=(4, 24)) < 0.5),
                 rng.uniform(0, 1, (4, 24))).astype(np.float32)
    net = make_net(caffe, tmp_path, 4, 24, extra='loss_weight: %g' % loss_weight)
    _, grad = run(net, p, y)
    np.testing.assert_array_equal(grad, original_gradient(p, y, loss_weight))
    np.testing.assert_allclose(grad, reference_gradient(p, y, loss_weight=loss_weight),
                               rtol=1e-5)


def test_ignore_label_adds_nothing_and_keeps_batch_normalisation(caffe, tmp_path):
    rng = np.random.RandomState(2)
    p = rng.uniform(0.01, 0.99, (3, 8)).astype(np.float32)
    p[2, 0] = 0  # an ignored target whose probability is in the clamp: no gradient either
    y = (rng.uniform(size=(3, 8)) < 0.5).astype(np.float32)
    y[0, 1] = y[1, 5] = y[2, 0] = y[2, 7] = -1
    net = make_net(caffe, tmp_path, 3, 8, ignore_label=-1)
    loss, grad = run(net, p, y)
    kept = y != -1
    # The -1 entries removed: the loss of the rest, still divided by N = 3 images.
    p_kept, y_kept = p[kept].astype(np.float64), y[kept]
    expected = -np.sum(y_kept * np.log(p_kept) + (1 - y_kept) * np.log(1 - p_kept)) / 3
    assert loss == pytest.approx(expected, rel=1e-5)
    assert loss == pytest.approx(reference_loss(p, y, ignore_label=-1), rel=1e-5)
    np.testing.assert_array_equal(grad[~kept], 0)
    np.testing.assert_allclose(grad[kept], reference_gradient(p, y)[kept], rtol=1e-5)
    # The same as a net that never saw the ignored entries (their p and y replaced by values
    # that add nothing: y = 1 at p = 1).
    p_removed, y_removed = p.copy(), y.copy()
    p_removed[~kept], y_removed[~kept] = 1, 1
    plain_loss, plain_grad = run(make_net(caffe, tmp_path, 3, 8), p_removed, y_removed)
    assert loss == pytest.approx(plain_loss, rel=1e-6)
    np.testing.assert_array_equal(grad[kept], plain_grad[kept])


def test_soft_targets_use_the_formula(caffe, tmp_path):
    rng = np.random.RandomState(3)
    p = rng.uniform(0.01, 0.99, (2, 10)).astype(np.float32)
    y = rng.uniform(0, 1, (2, 10)).astype(np.float32)
    net = make_net(caffe, tmp_path, 2, 10)
    loss, grad = run(net, p, y)
    assert loss == pytest.approx(reference_loss(p, y), rel=1e-5)
    np.testing.assert_allclose(grad, reference_gradient(p, y), rtol=1e-4, atol=1e-6)


def test_nan_target_is_an_error_naming_layer_and_value(caffe, tmp_path):
    """The other bad targets' messages are tested in the layer's gtest suite."""
    net = make_net(caffe, tmp_path, 2, 5)
    y = np.zeros((2, 5), np.float32)
    y[1, 3] = np.nan
    net.blobs['labels'].data[...] = y
    with pytest.raises(RuntimeError, match=r'layer "loss" \(CrossEntropyLoss\): bottom\[1\]: '
                       r'target nan \(image 1, value 3\)'):
        net.forward()
