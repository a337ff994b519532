"""WsdRoigenSingleScale through pycaffe against NumPy: v' = floor(single_scale * v / origin)."""
import textwrap

import numpy as np
import pytest

from test_roi_pooling import roi_pool_reference


def roigen_single_scale_reference(lists, single_scale, origin_x, origin_y):
    """(N, 5B) lists -> (N*B, 6) rows; float32 arithmetic in the layer's order."""
    num_images = lists.shape[0]
    proposals = lists.reshape(-1, 5).astype(np.float32)
    rows = np.zeros((len(proposals), 6), np.float32)
    rows[:, 0] = np.repeat(np.arange(num_images), len(proposals) // num_images)
    rows[:, 1:] = proposals
    real = proposals[:, 0] >= 0
    origins = np.float32([origin_x, origin_y, origin_x, origin_y])
    rows[real, 1:5] = np.floor(np.float32(single_scale) * proposals[real, :4] / origins)
    return rows


def roigen_net(caffe, tmp_path, lists_shape, param_str, image_shape=None):
    image_input = image_bottom = ''
    if image_shape is not None:
        image_input = ('layer { name: "image" type: "Input" top: "image" '
                       'input_param { shape { %s } } }'
                       % ' '.join('dim: %d' % d for d in image_shape))
        image_bottom = 'bottom: "image"'
    net_file = tmp_path / 'roigen.prototxt'
    net_file.write_text(textwrap.dedent('''
        layer { name: "lists" type: "Input" top: "lists"
                input_param { shape { dim: %d dim: %d } } }
        %s
        layer { name: "roi_224" type: "WsdRoigenSingleScale" bottom: "lists" %s top: "roi"
                python_param { param_str: "%s" } }
    ''' % (lists_shape[0], lists_shape[1], image_input, image_bottom, param_str)))
    return caffe.Net(str(net_file), caffe.TEST)


def random_lists(rng, num_images, num_proposals, image_w, image_h):
    """Integer boxes as the data layer writes them, with trailing padding rows per image."""
    boxes = np.zeros((num_images, num_proposals, 5), np.float32)
    for n in range(num_images):
        x = np.sort(rng.randint(0, image_w, size=(num_proposals, 2)), axis=1)
        y = np.sort(rng.randint(0, image_h, size=(num_proposals, 2)), axis=1)
        boxes[n] = np.column_stack([x[:, 0], y[:, 0], x[:, 1], y[:, 1],
                                    rng.uniform(0, 1, num_proposals)])
        boxes[n, rng.randint(0, num_proposals + 1):] = -1
    return boxes.reshape(num_images, -1)


@pytest.mark.parametrize('seed', range(4))
@pytest.mark.parametrize('single_scale, origin_scale', [(224, 672), (224, 832), (0.37, 3.0)])
def test_origin_scale_matches_reference(caffe, tmp_path, seed, single_scale, origin_scale):
    rng = np.random.RandomState(seed)
    lists = random_lists(rng, 3, 7, 832, 832)
    net = roigen_net(caffe, tmp_path, lists.shape,
                     'single_scale: %r origin_scale: %r' % (single_scale, origin_scale))
    net.blobs['lists'].data[...] = lists
    net.forward()
    expected = roigen_single_scale_reference(lists, single_scale, origin_scale, origin_scale)
    np.testing.assert_array_equal(net.blobs['roi'].data, expected)


@pytest.mark.parametrize('seed', range(4))
def test_image_bottom_gives_the_origin_per_axis(caffe, tmp_path, seed):
    rng = np.random.RandomState(seed)
    height, width = rng.choice([480, 576, 672, 736, 832], size=2)
    lists = random_lists(rng, 2, 9, width, height)
    net = roigen_net(caffe, tmp_path, lists.shape, 'single_scale: 224',
                     image_shape=(2, 3, height, width))
    net.blobs['lists'].data[...] = lists
    net.forward()
    expected = roigen_single_scale_reference(lists, 224, width, height)
    np.testing.assert_array_equal(net.blobs['roi'].data, expected)
    assert np.all(expected[expected[:, 1] >= 0, 1:5] < 224)


@pytest.mark.parametrize('single_scale, origin_scale', [(224, 672), (1344, 672)])
def test_padding_rows_are_copied_unchanged(caffe, tmp_path, single_scale, origin_scale):
    """Also when scaling up, where mapping -1 would give -2."""
    lists = np.float32([[300, 0, 671, 671, 0.5] + [-1] * 5 + [-1] * 5])
    net = roigen_net(caffe, tmp_path, lists.shape,
                     'single_scale: %r origin_scale: %r' % (single_scale, origin_scale))
    net.blobs['lists'].data[...] = lists
    net.forward()
    first = [0] + [np.floor(single_scale * v / origin_scale) for v in (300, 0, 671, 671)] + [0.5]
    np.testing.assert_array_equal(net.blobs['roi'].data, [
        first, [0, -1, -1, -1, -1, -1], [0, -1, -1, -1, -1, -1]])


def test_feeds_roi_pooling_as_in_stage_one(caffe, tmp_path):
    """lists (672 px) -> WsdRoigenSingleScale 224/672 -> ROIPooling 1/16 of a 14 x 14 map."""
    rng = np.random.RandomState(9)
    lists = random_lists(rng, 2, 6, 672, 672)
    features = rng.standard_normal((2, 3, 14, 14)).astype(np.float32)
    net_file = tmp_path / 'stage1_roi.prototxt'
    net_file.write_text(textwrap.dedent('''
        layer { name: "lists" type: "Input" top: "lists" input_param { shape { dim: 2 dim: 30 } } }
        layer { name: "conv5_3" type: "Input" top: "conv5_3"
                input_param { shape { dim: 2 dim: 3 dim: 14 dim: 14 } } }
        layer { name: "roi_224" type: "WsdRoigenSingleScale" bottom: "lists" top: "roi_224"
                python_param { param_str: "single_scale: 224 origin_scale: 672" } }
        layer { name: "roi_pool5" type: "ROIPooling" bottom: "conv5_3" bottom: "roi_224"
                top: "pool5"
                python_param { param_str: "pooled_h: 7 pooled_w: 7 spatial_scale: 0.0625" } }
    '''))
    net = caffe.Net(str(net_file), caffe.TEST)
    net.blobs['lists'].data[...] = lists
    net.blobs['conv5_3'].data[...] = features
    net.forward()
    rois = roigen_single_scale_reference(lists, 224, 672, 672)
    expected, _ = roi_pool_reference(features, rois, 7, 7, 0.0625)
    np.testing.assert_allclose(net.blobs['pool5'].data, expected, rtol=1e-6, atol=1e-6)
