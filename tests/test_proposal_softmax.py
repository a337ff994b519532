"""ProposalSoftmax through pycaffe against a NumPy reference and stock Softmax(axis 1)."""
import textwrap

import numpy as np
import pytest


def proposal_softmax_reference(scores, rois):
    """Softmax over axis 1 of (N, B, C, 1) scores over each image's real proposals only."""
    n, b = scores.shape[:2]
    real = (rois[:, 1] >= 0).reshape(n, b, 1, 1)
    prob = np.zeros(scores.shape, dtype=np.float64)
    for i in range(n):
        keep = real[i, :, 0, 0]
        if keep.any():
            s = scores[i, keep].astype(np.float64)
            e = np.exp(s - s.max(axis=0))
            prob[i, keep] = e / e.sum(axis=0)
    return prob


def proposal_softmax_gradient_reference(prob, prob_diff):
    return prob * (prob_diff - (prob * prob_diff).sum(axis=1, keepdims=True))


def make_rois(n, b, padding=()):
    rng = np.random.RandomState(0)
    rois = np.zeros((n * b, 6), dtype=np.float32)
    rois[:, 0] = np.repeat(np.arange(n), b)
    rois[:, 1:5] = rng.uniform(0, 50, size=(n * b, 4))
    rois[:, 5] = rng.uniform(size=n * b)
    for r in padding:
        rois[r, 1:] = -1
    return rois


def make_net(caffe, tmp_path, n, b, c, stock_softmax=False):
    net_file = tmp_path / 'net.prototxt'
    text = '''
        force_backward: true
        layer {{ name: "in" type: "Input" top: "scores" top: "rois"
                input_param {{ shape {{ dim: {n} dim: {b} dim: {c} dim: 1 }}
                              shape {{ dim: {nb} dim: 6 }} }} }}
        layer {{ name: "softmax_d" type: "ProposalSoftmax" bottom: "scores" bottom: "rois"
                top: "prob" python_param {{ param_str: "" }} }}
    '''.format(n=n, b=b, c=c, nb=n * b)
    if stock_softmax:
        text += '''
        layer { name: "split" type: "Split" bottom: "scores" top: "scores_copy" }
        layer { name: "stock" type: "Softmax" bottom: "scores_copy" top: "stock_prob"
                softmax_param { axis: 1 } }
        '''
    net_file.write_text(textwrap.dedent(text))
    return caffe.Net(str(net_file), caffe.TRAIN)


def run(net, scores, rois, prob_diff):
    net.blobs['scores'].data[...] = scores
    net.blobs['rois'].data[...] = rois
    net.forward()
    net.blobs['prob'].diff[...] = prob_diff
    net.backward()
    return net.blobs['prob'].data.copy(), net.blobs['scores'].diff.copy()


@pytest.mark.parametrize('padding', [(), (1, 2, 7), (4, 5, 6, 7), tuple(range(8))],
                         ids=['none', 'some', 'all-of-image-1', 'everything'])
def test_forward_and_backward_match_numpy(caffe, tmp_path, padding):
    rng = np.random.RandomState(1)
    n, b, c = 2, 4, 5
    net = make_net(caffe, tmp_path, n, b, c)
    scores = rng.normal(scale=3, size=(n, b, c, 1)).astype(np.float32)
    rois = make_rois(n, b, padding)
    prob_diff = rng.normal(size=scores.shape).astype(np.float32)
    prob, scores_diff = run(net, scores, rois, prob_diff)
    expected = proposal_softmax_reference(scores, rois)
    np.testing.assert_allclose(prob, expected, rtol=1e-5, atol=1e-6)
    expected_diff = proposal_softmax_gradient_reference(expected, prob_diff)
    np.testing.assert_allclose(scores_diff, expected_diff, rtol=1e-4, atol=1e-6)
    padded = rois[:, 1].reshape(n, b) < 0
    assert np.all(prob[padded] == 0) and np.all(scores_diff[padded] == 0)
    assert np.all(np.isfinite(prob))


def test_single_real_proposal_gets_probability_one_and_no_gradient(caffe, tmp_path):
    rng = np.random.RandomState(2)
    net = make_net(caffe, tmp_path, 1, 3, 2)
    scores = rng.normal(size=(1, 3, 2, 1)).astype(np.float32)
    prob, scores_diff = run(net, scores, make_rois(1, 3, padding=(0, 2)),
                            rng.normal(size=(1, 3, 2, 1)).astype(np.float32))
    np.testing.assert_allclose(prob[0, :, :, 0], [[0, 0], [1, 1], [0, 0]])
    np.testing.assert_allclose(scores_diff, 0, atol=1e-7)


def test_one_proposal_per_image(caffe, tmp_path):
    net = make_net(caffe, tmp_path, 3, 1, 4)
    scores = np.arange(12, dtype=np.float32).reshape(3, 1, 4, 1)
    prob, _ = run(net, scores, make_rois(3, 1, padding=(1,)), np.zeros_like(scores))
    np.testing.assert_array_equal(prob[:, 0, :, 0], [[1] * 4, [0] * 4, [1] * 4])


def test_padding_with_huge_score_does_not_affect_the_real_proposals(caffe, tmp_path):
    net = make_net(caffe, tmp_path, 1, 3, 1)
    scores = np.array([1000, 1001, 1e30], dtype=np.float32).reshape(1, 3, 1, 1)
    prob, _ = run(net, scores, make_rois(1, 3, padding=(2,)), np.zeros_like(scores))
    e = np.exp([-1.0, 0.0])
    np.testing.assert_allclose(prob.ravel(), list(e / e.sum()) + [0], rtol=1e-5)


def test_without_padding_equals_stock_softmax_over_axis_1(caffe, tmp_path):
    rng = np.random.RandomState(3)
    n, b, c = 3, 6, 4
    net = make_net(caffe, tmp_path, n, b, c, stock_softmax=True)
    scores = rng.normal(scale=4, size=(n, b, c, 1)).astype(np.float32)
    prob_diff = rng.normal(size=scores.shape).astype(np.float32)
    net.blobs['scores'].data[...] = scores
    net.blobs['rois'].data[...] = make_rois(n, b)
    net.forward()
    np.testing.assert_allclose(net.blobs['prob'].data, net.blobs['stock_prob'].data,
                               rtol=1e-5, atol=1e-7)
    net.blobs['prob'].diff[...] = prob_diff
    net.blobs['stock_prob'].diff[...] = 0
    net.backward()
    ours = net.blobs['scores'].diff.copy()
    net.blobs['prob'].diff[...] = 0
    net.blobs['stock_prob'].diff[...] = prob_diff
    net.backward()
    np.testing.assert_allclose(ours, net.blobs['scores'].diff, rtol=1e-4, atol=1e-7)


def test_tied_scores_share_the_probability_equally(caffe, tmp_path):
    net = make_net(caffe, tmp_path, 1, 4, 2)
    scores = np.full((1, 4, 2, 1), 3.5, dtype=np.float32)
    prob, _ = run(net, scores, make_rois(1, 4, padding=(1,)), np.zeros_like(scores))
    np.testing.assert_allclose(prob[0, :, :, 0], [[1 / 3.] * 2, [0] * 2, [1 / 3.] * 2,
                                                  [1 / 3.] * 2], rtol=1e-6)
