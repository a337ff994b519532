"""Interp through pycaffe against a NumPy reference written from DeepLab's definition
(docs/original-method.md, "The layers").

The input is cropped by the non-positive pads, then resized with corner-aligned linear
interpolation along each axis: output i samples input i * (in - 1) / (out - 1) (0 when
out == 1). As a matrix A (out x in) per axis, forward is A_h X A_w^T and backward
A_h^T G A_w.
"""
import textwrap

import numpy as np
import pytest


def interp_matrix(size_in, size_out):
    weights = np.zeros((size_out, size_in))
    ratio = (size_in - 1) / (size_out - 1) if size_out > 1 else 0.0
    for i in range(size_out):
        x = i * ratio
        lo = min(int(np.floor(x)), size_in - 1)
        hi = min(lo + 1, size_in - 1)
        weights[i, lo] += 1 - (x - lo)
        weights[i, hi] += x - lo
    return weights


def reference_size(size_in, height=None, zoom_factor=None, shrink_factor=None, pad_beg=0,
                   pad_end=0):
    if height is not None:
        return height
    size = size_in + pad_beg + pad_end
    if shrink_factor is not None:
        size = (size - 1) // shrink_factor + 1
    if zoom_factor is not None:
        size = size + (size - 1) * (zoom_factor - 1)
    return size


def crop(x, pad_beg, pad_end):
    h, w = x.shape[-2:]
    return x[..., -pad_beg:h + pad_end, -pad_beg:w + pad_end]


def reference_forward(x, out_h, out_w, pad_beg=0, pad_end=0):
    x = crop(x.astype(np.float64), pad_beg, pad_end)
    rows, cols = interp_matrix(x.shape[2], out_h), interp_matrix(x.shape[3], out_w)
    return rows @ x @ cols.T


def reference_backward(top_diff, shape_in, pad_beg=0, pad_end=0):
    grad = np.zeros(shape_in)
    region = crop(grad, pad_beg, pad_end)  # a view: the cropped-away border stays 0
    rows = interp_matrix(region.shape[2], top_diff.shape[2])
    cols = interp_matrix(region.shape[3], top_diff.shape[3])
    region[...] = rows.T @ top_diff.astype(np.float64) @ cols
    return grad


def make_net(caffe, tmp_path, shape, param_str, size_shape=None):
    size_input = ''
    if size_shape is not None:
        size_input = ('layer { name: "s" type: "Input" top: "like" input_param { shape { %s } } }'
                      % ' '.join('dim: %d' % d for d in size_shape))
    net_file = tmp_path / 'net.prototxt'
    net_file.write_text(textwrap.dedent('''
        force_backward: true
        layer { name: "in" type: "Input" top: "maps" input_param { shape { %s } } }
        %s
        layer { name: "resize" type: "Interp" bottom: "maps" %s top: "resized"
                python_param { param_str: "%s" } }
    ''' % (' '.join('dim: %d' % d for d in shape), size_input,
           'bottom: "like"' if size_shape else '', param_str)))
    return caffe.Net(str(net_file), caffe.TRAIN)


MODES = [
    dict(height=9, width=11),                 # upsampling
    dict(height=4, width=3),                  # downsampling
    dict(height=1, width=1),                  # out == 1: the top-left corner
    dict(height=1, width=8),
    dict(height=6, width=7),                  # the identity size
    dict(zoom_factor=3),
    dict(zoom_factor=1),
    dict(shrink_factor=2),
    dict(shrink_factor=4),
    dict(shrink_factor=2, zoom_factor=3),     # shrink first, then zoom
    dict(pad_beg=-1, pad_end=-1, height=5, width=5),
    dict(pad_beg=-2, shrink_factor=2),
    dict(pad_end=-1, zoom_factor=2),
    dict(pad_beg=-2, pad_end=-3, height=3, width=4),  # one row left after cropping
]


@pytest.mark.parametrize('mode', MODES, ids=lambda m: ','.join('%s=%s' % kv for kv in m.items()))
def test_forward_and_backward_match_reference(caffe, tmp_path, mode):
    shape = (2, 3, 6, 7)
    param_str = ' '.join('%s: %d' % kv for kv in mode.items())
    pads = dict(pad_beg=mode.get('pad_beg', 0), pad_end=mode.get('pad_end', 0))
    out_h = reference_size(shape[2], **{k: v for k, v in mode.items() if k != 'width'})
    out_w = reference_size(shape[3], **dict({k: v for k, v in mode.items()
                                              if k not in ('height', 'width')},
                                            height=mode.get('width')))
    net = make_net(caffe, tmp_path, shape, param_str)
    rng = np.random.RandomState(4)
    x = rng.uniform(-1, 1, shape).astype(np.float32)
    net.blobs['maps'].data[...] = x
    net.forward()
    assert net.blobs['resized'].data.shape == (2, 3, out_h, out_w)
    np.testing.assert_allclose(net.blobs['resized'].data,
                               reference_forward(x, out_h, out_w, **pads), rtol=1e-5, atol=1e-6)
    top_diff = rng.uniform(-1, 1, (2, 3, out_h, out_w)).astype(np.float32)
    net.backward(resized=top_diff)
    np.testing.assert_allclose(net.blobs['maps'].diff,
                               reference_backward(top_diff, shape, **pads), rtol=1e-5, atol=1e-6)


def test_same_size_is_the_identity(caffe, tmp_path):
    shape = (2, 3, 5, 8)
    net = make_net(caffe, tmp_path, shape, 'height: 5 width: 8')
    x = np.random.RandomState(5).uniform(-1, 1, shape).astype(np.float32)
    net.blobs['maps'].data[...] = x
    net.forward()
    np.testing.assert_array_equal(net.blobs['resized'].data, x)
    net.backward(resized=2 * x)
    np.testing.assert_array_equal(net.blobs['maps'].diff, 2 * x)


def test_second_bottom_gives_the_output_size(caffe, tmp_path):
    shape = (1, 2, 6, 7)
    net = make_net(caffe, tmp_path, shape, '', size_shape=(1, 5, 4, 10))
    x = np.random.RandomState(6).uniform(-1, 1, shape).astype(np.float32)
    net.blobs['maps'].data[...] = x
    net.forward()
    np.testing.assert_allclose(net.blobs['resized'].data, reference_forward(x, 4, 10),
                               rtol=1e-5, atol=1e-6)
    net.backward(resized=np.ones((1, 2, 4, 10), np.float32))
    np.testing.assert_allclose(net.blobs['maps'].diff,
                               reference_backward(np.ones((1, 2, 4, 10)), shape), rtol=1e-5)


def test_student_resize_672_to_224(caffe, tmp_path):
    """The student's Psi on image-scale values: corners are kept exactly; inside, float32 sample
    positions (up to 671 +- 4e-5) move values by at most ~1e-4 of their range."""
    shape = (1, 3, 672, 672)
    net = make_net(caffe, tmp_path, shape, 'height: 224 width: 224')
    x = np.random.RandomState(7).uniform(-120, 150, shape).astype(np.float32)
    net.blobs['maps'].data[...] = x
    net.forward()
    out = net.blobs['resized'].data
    assert out.shape == (1, 3, 224, 224)
    np.testing.assert_allclose(out, reference_forward(x, 224, 224), rtol=0, atol=0.03)
    np.testing.assert_array_equal(out[..., 0, 0], x[..., 0, 0])
    np.testing.assert_allclose(out[..., -1, -1], x[..., -1, -1], rtol=1e-5)
