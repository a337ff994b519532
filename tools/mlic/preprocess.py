"""How an image and its proposals become a net's input: the one definition used by the data
layer's workers (training and TEST phases) and by every inference path.

  read_image        decode as 8-bit BGR (refusing images above a pixel limit before decoding)
                    and resize to the datalist's new_width x new_height
  scaled_size, rescale  a side after a multi-scale factor (the original multiplies in float
                    and truncates), the image resized to it
  transform_proposals   boxes after that factor and a mirror
  to_planes         BGR image -> (3, H, W) float32 planes, mirrored or not, minus the mean,
                    times the pixel scale

The mean and the pixel scale are a `Pixels` value taken from a net's config (`from_config`) or
from the data layer's parameters (`from_param`); DEFAULT_MEAN_BGR is the original's mean,
defined here only.
"""
import collections
import errno
import os
import stat

import numpy as np

# The original's per-channel means (B, G, R), subtracted from 8-bit pixels.
DEFAULT_MEAN_BGR = (103.52, 116.28, 123.675)

# Images with more pixels than this are refused before they are decoded: a few-KB file whose
# header claims 20000 x 20000 decodes to gigabytes on every read. 50 megapixels is above any
# camera photo of the datasets we know (MS-COCO, VOC and NUS-WIDE images are under 1 MP); raise
# it with the data layer's max_pixels or tools/validate_datalist.py --max-pixels.
DEFAULT_MAX_PIXELS = 50 * 1000 * 1000


class ImageError(IOError):
    """An image that cannot be used; str() is the reason, without the path."""


class Pixels(collections.namedtuple('Pixels', 'mean scale')):
    """mean: (3,) float32 B, G, R subtracted from the pixels; scale: multiplies the result."""

    @classmethod
    def make(cls, mean=DEFAULT_MEAN_BGR, scale=1.0):
        mean = [float(m) for m in mean] or [0.0]
        if len(mean) == 1:
            mean = mean * 3
        if len(mean) != 3:
            raise ValueError('a mean is 1 value or 3 (B, G, R), not %d' % len(mean))
        return cls(np.asarray(mean, dtype=np.float32), float(scale))

    @classmethod
    def from_config(cls, cfg):
        """The pixels a net's data layer makes (netgen's config keys mean_value and
        input_scale)."""
        return cls.make(cfg.get('mean_value', DEFAULT_MEAN_BGR), cfg.get('input_scale', 1.0))

    @classmethod
    def for_deploy(cls, cfg):
        """The pixels a deploy net takes: mean-subtracted as in training, but not scaled, since
        netgen's deploy nets start with their own Power layer of input_scale (they take the
        original's input)."""
        return cls.make(cfg.get('mean_value', DEFAULT_MEAN_BGR), 1.0)

    @classmethod
    def from_param(cls, param):
        """The pixels of a MultiLabelRoIDataParameter (no mean_value: none subtracted)."""
        return cls.make(list(param.mean_value) or [0.0], param.scale)


def scaled_size(size, scale):
    """Image side after scaling; the original multiplies in float and truncates."""
    return int(np.float32(size) * np.float32(scale))


def transform_proposals(proposals, scale, mirror, width):
    """Boxes of a (B, 5) array after scaling by `scale` and, with mirror, flipping in an image
    `width` pixels wide (the scaled width). Touched coordinates are truncated to int, as the
    original stores them in ints; padding rows (x1 < 0) and scores are left alone."""
    out = np.array(proposals, dtype=np.float32)
    real = out[:, 0] >= 0
    boxes = out[real, :4]
    if scale != 1:
        boxes = np.trunc(np.trunc(boxes) * np.float32(scale))
    if mirror:
        boxes = np.trunc(boxes)
        x1 = boxes[:, 0].copy()
        boxes[:, 0] = width - 1 - boxes[:, 2]
        boxes[:, 2] = width - 1 - x1
    out[real, :4] = boxes
    return out


# --- Reading image files ---------------------------------------------------------------------

def file_problem(path):
    """Why `path` is not a readable regular file, or None when it is one."""
    try:
        info = os.stat(path)
    except OSError as e:
        if e.errno == errno.ELOOP:
            return 'is a symbolic link loop'
        if e.errno == errno.ENOENT and os.path.islink(path):
            return 'is a symbolic link to %s, which does not exist' % os.readlink(path)
        if e.errno == errno.ENOENT:
            return 'does not exist'
        if e.errno == errno.EACCES:
            return 'cannot be reached (permission denied on a folder of its path)'
        return 'cannot be read: %s' % (e.strerror or e)
    if stat.S_ISDIR(info.st_mode):
        return 'is a directory'
    if not stat.S_ISREG(info.st_mode):
        return 'is not a regular file (%s)' % file_kind(info.st_mode)
    if info.st_size == 0:
        return 'is an empty file (0 bytes)'
    if not os.access(path, os.R_OK):
        return 'is not readable (permission denied)'
    return None


def file_kind(mode):
    for test, name in ((stat.S_ISFIFO, 'a FIFO'), (stat.S_ISSOCK, 'a socket'),
                       (stat.S_ISCHR, 'a character device'), (stat.S_ISBLK, 'a block device')):
        if test(mode):
            return name
    return 'not a file'


def image_dimensions(path):
    """(width, height) from the image file's header, without decoding it; None when the
    header is not one PIL knows (OpenCV may still read the file)."""
    from PIL import Image
    # PIL refuses sizes above its own bomb limit at open; ours is checked by the caller.
    limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
    try:
        with Image.open(path) as image:
            return image.size
    except Exception:  # PIL raises many kinds for what it cannot identify; OpenCV decides
        return None
    finally:
        Image.MAX_IMAGE_PIXELS = limit


def check_pixels(path, max_pixels):
    """Raises ImageError when the header of `path` says it has more than max_pixels pixels
    (0 or None: no limit)."""
    if not max_pixels:
        return
    size = image_dimensions(path)
    if size and size[0] * size[1] > max_pixels:
        raise ImageError('%d x %d pixels is more than the limit of %d (%g megapixels); raise '
                         'max_pixels if the image is meant to be that large'
                         % (size[0], size[1], max_pixels, max_pixels / 1e6))


def read_image(path, width, height, max_pixels=DEFAULT_MAX_PIXELS):
    """8-bit BGR image resized to width x height; ImageError (the reason) when it cannot be."""
    import cv2  # here, not at the top: reading a datalist needs file_problem, not OpenCV
    check_pixels(path, max_pixels)
    image = cv2.imread(path, cv2.IMREAD_COLOR)
    if image is None:
        raise ImageError(file_problem(path) or 'OpenCV cannot decode it (not an image, or a '
                                               'format OpenCV does not read)')
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)


def rescale(image, width, height):
    """A resized image at a multi-scale factor's size (scaled_size of each side)."""
    import cv2
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)


def truncation(path):
    """Why a JPEG or PNG file is cut short (its end marker missing), or None. OpenCV decodes a
    truncated JPEG without an error, filling the rest with grey."""
    with open(path, 'rb') as f:
        head = f.read(8)
        f.seek(0, os.SEEK_END)
        size = f.tell()
        f.seek(max(0, size - 4096))
        tail = f.read()
    if head.startswith(b'\xff\xd8'):
        # Entropy-coded data never holds FF D9 (an FF there is followed by 00 or a restart
        # marker), so an end-of-image marker near the end means the file is whole; some
        # writers append bytes after it.
        if b'\xff\xd9' not in tail:
            return 'truncated JPEG (no end-of-image marker)'
    elif head.startswith(b'\x89PNG\r\n\x1a\n'):
        if b'IEND' not in tail[-512:]:
            return 'truncated PNG (no IEND chunk)'
    return None


def check_image(path, max_pixels=DEFAULT_MAX_PIXELS):
    """Why the data layer could not use the image file `path` (it is decoded in full), or
    None."""
    import cv2
    problem = file_problem(path)
    if problem:
        return problem
    try:
        check_pixels(path, max_pixels)
        problem = truncation(path)
        if problem:
            return problem
        if cv2.imread(path, cv2.IMREAD_COLOR) is None:
            return 'OpenCV cannot decode it (not an image, or a format OpenCV does not read)'
    except ImageError as e:
        return str(e)
    except OSError as e:
        return 'cannot be read: %s' % (e.strerror or e)
    return None


# --- Images to net input ---------------------------------------------------------------------

def to_planes(image, pixels, mirror=False, out=None):
    """(3, H, W) float32: the BGR uint8 image (H, W, 3), mirrored when asked, minus
    pixels.mean, times pixels.scale; written into `out` when given."""
    import cv2
    if mirror:
        image = cv2.flip(image, 1)
    if out is None:
        out = np.empty((3,) + image.shape[:2], dtype=np.float32)
    # Contiguous planes first: subtracting from strided HWC channel views costs twice as much.
    for c, plane in enumerate(cv2.split(image)):
        np.subtract(plane, pixels.mean[c], out=out[c], dtype=np.float32)
    if pixels.scale != 1:
        out *= np.float32(pixels.scale)
    return out


def load_blob(paths, width, height, pixels, mirror=False, max_pixels=DEFAULT_MAX_PIXELS):
    """(N, 3, height, width) float32 blob of image files, as the data layer makes them at one
    scale (its TEST phase; its TRAIN phase's mirror side with mirror=True). IOError naming the
    image when one cannot be read."""
    blob = np.empty((len(paths), 3, height, width), dtype=np.float32)
    for i, path in enumerate(paths):
        try:
            image = read_image(path, width, height, max_pixels)
        except ImageError as e:
            raise IOError('cannot read image %s: %s' % (path, e))
        to_planes(image, pixels, mirror, out=blob[i])
    return blob
