"""ROIPooling through pycaffe against a NumPy reference written from its definition
(docs/original-method.md, "The layers")."""
import textwrap

import numpy as np
import pytest

PADDING = [-1, -1, -1, -1, -1]


def round_half_away(values):
    return np.sign(values) * np.floor(np.abs(values) + 0.5)


def roi_pool_reference(features, rois, pooled_h, pooled_w, spatial_scale,
                       score_scale=1.0, score_bias=0.0):
    """Returns (pooled, argmax): argmax[r, c, ph, pw] is the flat index h * W + w of the
    maximum in its feature plane (first in row-major order), -1 for an empty bin or padding."""
    _, channels, height, width = features.shape
    pooled = np.zeros((len(rois), channels, pooled_h, pooled_w), np.float64)
    argmax = np.full(pooled.shape, -1, np.int64)
    for r, (batch, x1, y1, x2, y2, score) in enumerate(rois):
        if x1 < 0:
            continue
        # The layer multiplies in its own precision (float32 here) before rounding.
        corners = np.float32([x1, y1, x2, y2]) * np.float32(spatial_scale)
        start_w, start_h, end_w, end_h = round_half_away(corners).astype(int)
        roi_w = max(end_w - start_w + 1, 1)
        roi_h = max(end_h - start_h + 1, 1)
        factor = np.float32(score_scale) * np.float32(score) + np.float32(score_bias)
        image = features[int(batch)]
        for ph in range(pooled_h):
            # floor(ph * h / PH) and ceil((ph + 1) * h / PH) in exact integer arithmetic
            h0 = min(max(start_h + ph * roi_h // pooled_h, 0), height)
            h1 = min(max(start_h - (-(ph + 1) * roi_h // pooled_h), 0), height)
            for pw in range(pooled_w):
                w0 = min(max(start_w + pw * roi_w // pooled_w, 0), width)
                w1 = min(max(start_w - (-(pw + 1) * roi_w // pooled_w), 0), width)
                if h1 <= h0 or w1 <= w0:
                    continue
                region = image[:, h0:h1, w0:w1].reshape(channels, -1)
                best = region.argmax(axis=1)
                pooled[r, :, ph, pw] = factor * region.max(axis=1)
                argmax[r, :, ph, pw] = (h0 + best // (w1 - w0)) * width + w0 + best % (w1 - w0)
    return pooled, argmax


def roi_pool_backward_reference(features_shape, rois, argmax, top_diff, score_scale, score_bias):
    """Each output's diff times its RoI's score factor, added at its argmax input."""
    num_images, channels, height, width = features_shape
    bottom_diff = np.zeros((num_images, channels, height * width), np.float64)
    for r, roi in enumerate(rois):
        if roi[1] < 0:
            continue
        factor = np.float32(score_scale) * np.float32(roi[5]) + np.float32(score_bias)
        for c in range(channels):
            index = argmax[r, c].ravel()
            keep = index >= 0
            np.add.at(bottom_diff[int(roi[0]), c], index[keep],
                      factor * top_diff[r, c].ravel()[keep])
    return bottom_diff.reshape(features_shape)


def roi_pool_net(caffe, tmp_path, features_shape, num_rois, param_str):
    net_file = tmp_path / 'roi_pool.prototxt'
    dims = ' '.join('dim: %d' % d for d in features_shape)
    net_file.write_text(textwrap.dedent('''
        force_backward: true
        layer { name: "features" type: "Input" top: "features" input_param { shape { %s } } }
        layer { name: "rois" type: "Input" top: "rois"
                input_param { shape { dim: %d dim: 6 } } }
        layer { name: "roi_pool" type: "ROIPooling" bottom: "features" bottom: "rois"
                top: "pooled" python_param { param_str: "%s" } }
    ''' % (dims, num_rois, param_str)))
    return caffe.Net(str(net_file), caffe.TEST)


def check_against_reference(caffe, tmp_path, features, rois, pooled_h, pooled_w, spatial_scale,
                            score_scale=1.0, score_bias=0.0, seed=0):
    """Forward and backward of the layer equal the reference; returns the layer's output."""
    rois = np.asarray(rois, np.float32).reshape(-1, 6)
    param_str = 'pooled_h: %d pooled_w: %d spatial_scale: %r score_scale: %r score_bias: %r' % (
        pooled_h, pooled_w, spatial_scale, score_scale, score_bias)
    net = roi_pool_net(caffe, tmp_path, features.shape, len(rois), param_str)
    net.blobs['features'].data[...] = features
    net.blobs['rois'].data[...] = rois
    net.forward()
    expected, argmax = roi_pool_reference(features, rois, pooled_h, pooled_w, spatial_scale,
                                          score_scale, score_bias)
    pooled = net.blobs['pooled'].data.copy()
    np.testing.assert_allclose(pooled, expected, rtol=1e-6, atol=1e-6)

    top_diff = np.random.RandomState(seed).standard_normal(pooled.shape).astype(np.float32)
    net.blobs['pooled'].diff[...] = top_diff
    net.blobs['features'].diff[...] = np.nan  # the layer must overwrite every input's gradient
    net.backward()
    expected_diff = roi_pool_backward_reference(features.shape, rois, argmax, top_diff,
                                                score_scale, score_bias)
    np.testing.assert_allclose(net.blobs['features'].diff, expected_diff, rtol=1e-5, atol=1e-5)
    return pooled


def distinct_features(rng, shape):
    """Values without ties, all >= 1 so that an output of 0 can only come from an empty bin."""
    return (1 + rng.permutation(int(np.prod(shape))) / 7.0).reshape(shape).astype(np.float32)


def random_rois(rng, num_rois, num_images, image_w, image_h):
    """Boxes in input pixels, some running past the image, some mirrored, some padding."""
    rows = []
    for _ in range(num_rois):
        kind = rng.randint(6)
        if kind == 0:
            rows.append([rng.randint(num_images)] + PADDING)
            continue
        x1, x2 = sorted(rng.randint(0, int(image_w * 1.3) + 1, size=2))
        y1, y2 = sorted(rng.randint(0, int(image_h * 1.3) + 1, size=2))
        if kind == 1:  # mirrored as the data layer flips an image
            x1, x2 = image_w - 1 - x2, image_w - 1 - x1
            if x1 < 0:
                x1 = 0
        rows.append([rng.randint(num_images), x1, y1, x2, y2, rng.uniform(0, 1)])
    return np.array(rows, np.float32)


@pytest.mark.parametrize('seed', range(8))
def test_random_cases_match_reference(caffe, tmp_path, seed):
    rng = np.random.RandomState(seed)
    num_images, channels = rng.randint(1, 4), rng.randint(1, 4)
    height, width = rng.randint(3, 13, size=2)
    spatial_scale = [1.0, 0.5, 0.25, 0.0625, 1 / 3.0][seed % 5]
    features = rng.standard_normal((num_images, channels, height, width)).astype(np.float32)
    rois = random_rois(rng, rng.randint(1, 13), num_images,
                       int(width / spatial_scale), int(height / spatial_scale))
    check_against_reference(caffe, tmp_path, features, rois, rng.randint(1, 5), rng.randint(1, 5),
                            spatial_scale, score_scale=rng.uniform(0, 10),
                            score_bias=rng.uniform(-1, 1), seed=seed)


def test_rois_partly_and_wholly_outside_the_map(caffe, tmp_path):
    features = distinct_features(np.random.RandomState(1), (2, 3, 5, 6))
    rois = [[0, 3, 2, 20, 30, 0.5],    # runs past the right and bottom edges
            [1, 0, 0, 200, 3, 1.0],     # far past the right edge
            [1, 6, 5, 9, 9, 0.5],       # starts just outside (x 6 of a 6 wide map)
            [0, 40, 40, 80, 80, 1.0]]   # wholly outside
    pooled = check_against_reference(caffe, tmp_path, features, rois, 3, 3, 1.0, 10, 1)
    assert np.all(pooled[2:] == 0)
    assert np.any(pooled[0] == 0) and np.all(pooled[0, :, 0, 0] > 0)


def test_degenerate_and_single_cell_boxes(caffe, tmp_path):
    features = distinct_features(np.random.RandomState(2), (1, 2, 6, 7))
    rois = [[0, 4, 3, 4, 3, 1.0],     # one cell
            [0, 5, 4, 1, 2, 1.0],     # x2 < x1 and y2 < y1: one cell at (x1, y1)
            [0, 0, 0, 0, 5, 1.0]]     # one column
    pooled = check_against_reference(caffe, tmp_path, features, rois, 2, 3, 1.0)
    np.testing.assert_allclose(pooled[0], np.broadcast_to(features[0, :, 3:4, 4:5], (2, 2, 3)))
    np.testing.assert_allclose(pooled[1], np.broadcast_to(features[0, :, 4:5, 5:6], (2, 2, 3)))


def test_corners_round_half_away_from_zero(caffe, tmp_path):
    """At spatial_scale 1/2 odd corners land on exact halves: 1 -> 0.5 -> 1 and 5 -> 2.5 -> 3
    (round half to even would give 0 and 2, cells 0..2 whose maximum is 15, not 22)."""
    features = np.arange(1, 37, dtype=np.float32).reshape(1, 1, 6, 6)
    pooled = check_against_reference(caffe, tmp_path, features, [[0, 1, 1, 5, 5, 1.0]], 1, 1, 0.5)
    assert pooled[0, 0, 0, 0] == 22
    check_against_reference(caffe, tmp_path, features, [[0, 8, 8, 24, 40, 1.0]], 2, 2, 0.0625)


def test_bins_outside_the_map_are_empty_and_zero(caffe, tmp_path):
    features = distinct_features(np.random.RandomState(4), (1, 2, 4, 4))
    # Columns 2..5 of a 4 wide map: of 4 one-column bins, the last two lie outside.
    pooled = check_against_reference(caffe, tmp_path, features, [[0, 2, 0, 5, 3, 0.5]],
                                      1, 4, 1.0, 10, 1)
    assert np.all(pooled[0, :, :, 2:] == 0) and np.all(pooled[0, :, :, :2] > 0)


def test_all_padding_gives_zeros_and_no_gradient(caffe, tmp_path):
    features = distinct_features(np.random.RandomState(5), (2, 2, 4, 5))
    rois = [[0] + PADDING, [1] + PADDING, [1] + PADDING]
    pooled = check_against_reference(caffe, tmp_path, features, rois, 2, 2, 1.0, 10, 1)
    assert np.all(pooled == 0)


def test_one_proposal(caffe, tmp_path):
    features = distinct_features(np.random.RandomState(6), (1, 4, 14, 14))
    check_against_reference(caffe, tmp_path, features, [[0, 10, 30, 200, 180, 0.7]], 7, 7,
                            0.0625, 10, 1)


def boxes_inside(rng, num_rois, image_w, image_h):
    """Real boxes whose columns lie inside the image (rows may run past it)."""
    x1, x2 = np.sort(rng.randint(0, image_w, size=(2, num_rois)), axis=0)
    y1, y2 = np.sort(rng.randint(0, image_h + 3, size=(2, num_rois)), axis=0)
    return np.stack([np.zeros(num_rois), x1, y1, x2, y2, rng.uniform(0, 1, num_rois)], axis=1)


def mirror(rois, image_w):
    mirrored = rois.copy()
    mirrored[:, 1], mirrored[:, 3] = image_w - 1 - rois[:, 3], image_w - 1 - rois[:, 1]
    return mirrored


def test_mirrored_boxes_pool_the_mirrored_image(caffe, tmp_path):
    """At spatial_scale 1 the bins are symmetric: flipping the map and mirroring each box
    (x1' = W - 1 - x2, as the data layer does) flips the pooled output left to right."""
    rng = np.random.RandomState(7)
    features = distinct_features(rng, (1, 3, 7, 9))
    rois = boxes_inside(rng, 10, 9, 7)
    pooled = check_against_reference(caffe, tmp_path, features, rois, 3, 4, 1.0)
    pooled_mirrored = check_against_reference(caffe, tmp_path, features[..., ::-1].copy(),
                                              mirror(rois, 9), 3, 4, 1.0)
    np.testing.assert_allclose(pooled_mirrored, pooled[..., ::-1])


def test_mirrored_boxes_at_conv5_scale(caffe, tmp_path):
    rng = np.random.RandomState(8)
    features = distinct_features(rng, (1, 2, 6, 6))
    rois = boxes_inside(rng, 12, 96, 96)
    check_against_reference(caffe, tmp_path, features, rois, 3, 3, 0.0625, 10, 1)
    check_against_reference(caffe, tmp_path, features, mirror(rois, 96), 3, 3, 0.0625, 10, 1)
