"""The datalist: one image per line, `path l_1 .. l_C (x1 y1 x2 y2 s)*B` (SPEC 2).

Box corners are 0-based inclusive pixels of the image after it is resized to the datalist's
new_width x new_height; `s` is the proposal's score. Lines may carry fewer than `bbox_num`
proposals: they are padded with PADDING_ROW, which every plugin layer skips (a proposal whose x1
is negative is padding; see caffe_layers/proto/mlic_layers.proto).
"""
import numpy as np

PADDING_ROW = (-1.0, -1.0, -1.0, -1.0, -1.0)


def is_padding(proposals):
    """Boolean mask of padding rows of a (B, 5) proposal array."""
    return np.asarray(proposals)[:, 0] < 0


def format_number(value):
    """Shortest text that reads back as the same float32 value (ints without a decimal point)."""
    value = float(value)
    if value.is_integer():
        return str(int(value))
    return np.format_float_positional(np.float32(value), unique=True, trim='-')


def format_line(image_path, labels, proposals):
    """One datalist line. labels: C numbers; proposals: (B, 5) rows x1 y1 x2 y2 s."""
    if any(c.isspace() for c in image_path):
        raise ValueError('image path %r contains white space, which the datalist format cannot '
                         'hold' % image_path)
    fields = [image_path]
    fields += [format_number(v) for v in labels]
    fields += [format_number(v) for v in np.asarray(proposals, dtype=np.float64).reshape(-1)]
    return ' '.join(fields)


def pad_proposals(proposals, bbox_num):
    """(B, 5) -> (bbox_num, 5): padding rows appended, or the bbox_num best-scoring rows kept
    (in their original order). Returns (array, number_cut)."""
    proposals = np.asarray(proposals, dtype=np.float32).reshape(-1, 5)
    real = proposals[~is_padding(proposals)]
    cut = max(0, len(real) - bbox_num)
    if cut:
        keep = np.sort(np.argsort(-real[:, 4], kind='stable')[:bbox_num])
        real = real[keep]
    out = np.tile(np.asarray(PADDING_ROW, dtype=np.float32), (bbox_num, 1))
    out[:len(real)] = real
    return out, cut
