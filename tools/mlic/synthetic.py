"""A seeded synthetic multi-label dataset with what makes the real problem hard, and the
object-centric single-label set that stands in for ImageNet (pretraining).

A class is a (shape, fill pattern) pair, drawn in random colours, so no class can be told by a
global colour statistic: a small CNN has to see shape and texture together. Scenes hold several
small objects at varied scales and places, sometimes several instances of a class, with classes
that come in groups (co-occurrence), over varied backgrounds and clutter: line segments, ellipses,
irregular polygons, and hard negatives, i.e. class shapes with a pattern that makes them no class.

Every image is drawn from its own random stream (seed, split, index), so a split is reproducible
byte for byte and does not depend on the size of the other split.
"""
import json
import os

import cv2
import numpy as np

from mlic import converters

SHAPES = ('disc', 'square', 'triangle', 'diamond', 'cross', 'star', 'ring', 'hourglass')
PATTERNS = ('solid', 'stripes', 'checker', 'dots')
# Never a class: hard-negative fill for class shapes.
CLUTTER_PATTERNS = ('speckle', 'gradient')
SPLITS = ('train', 'test')
# Stored, not deflated: every training decodes every image again on each pass, and a 192 px PNG
# at zlib level 1 took 1.7 ms to decode (0.47 stored, the same pixels), 10 ms of a data worker
# per 8-image batch of a 64 px student whose iteration is 65 ms. 111 KB an image instead of 78.
PNG_ENCODE = [cv2.IMWRITE_PNG_COMPRESSION, 0]


def class_table(num_classes):
    """(shape, pattern) of each class. Consecutive classes differ in shape first, so that small
    class counts still need texture and shape; every pair is used at most once."""
    if not 1 <= num_classes <= len(SHAPES) * len(PATTERNS):
        raise ValueError('num_classes must be in [1, %d], got %d'
                         % (len(SHAPES) * len(PATTERNS), num_classes))
    table = []
    for k in range(num_classes):
        shape = k % len(SHAPES)
        pattern = (shape + k // len(SHAPES)) % len(PATTERNS)
        table.append((SHAPES[shape], PATTERNS[pattern]))
    return table


def class_groups(num_classes, seed):
    """Partition of the classes into co-occurring groups of 2 or 3 (1 only when C is 1)."""
    rng = np.random.default_rng([seed, 1000])
    order = [int(k) for k in rng.permutation(num_classes)]
    groups = []
    while order:
        size = 3 if len(order) in (3, 5) or (len(order) > 3 and rng.random() < 0.4) else 2
        groups.append(sorted(order[:size]))
        order = order[size:]
    return groups


def _shape_polygons(shape, size, angle):
    """Polygons (list of int32 arrays, second one a hole when shape is ring) of a shape that
    fits a size x size box at the origin."""
    r = size / 2.0
    c = np.array([r, r])
    if shape == 'disc':
        t = np.linspace(0, 2 * np.pi, 32, endpoint=False)
        return [np.stack([np.cos(t), np.sin(t)], 1) * r + c]
    if shape == 'ring':
        t = np.linspace(0, 2 * np.pi, 32, endpoint=False)
        unit = np.stack([np.cos(t), np.sin(t)], 1)
        return [unit * r + c, unit * r * 0.55 + c]
    if shape == 'square':
        pts = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) * 0.8
    elif shape == 'diamond':
        pts = np.array([[0, -1], [0.75, 0], [0, 1], [-0.75, 0]])
    elif shape == 'triangle':
        pts = np.array([[0, -1], [0.95, 0.75], [-0.95, 0.75]])
    elif shape == 'cross':
        a, b = 0.33, 1.0
        pts = np.array([[-a, -b], [a, -b], [a, -a], [b, -a], [b, a], [a, a], [a, b], [-a, b],
                        [-a, a], [-b, a], [-b, -a], [-a, -a]])
    elif shape == 'star':
        t = np.arange(10) * np.pi / 5 - np.pi / 2
        rad = np.where(np.arange(10) % 2 == 0, 1.0, 0.42)
        pts = np.stack([np.cos(t) * rad, np.sin(t) * rad], 1)
    elif shape == 'hourglass':
        pts = np.array([[-0.8, -1], [0.8, -1], [0.08, 0], [0.8, 1], [-0.8, 1], [-0.08, 0]])
    else:
        raise ValueError('unknown shape %r' % shape)
    # Small rotations only: a square turned by 45 degrees would be a diamond.
    cos, sin = np.cos(angle), np.sin(angle)
    pts = pts @ np.array([[cos, sin], [-sin, cos]])
    return [pts * r + c]


def _shape_mask(shape, size, angle):
    mask = np.zeros((size, size), np.uint8)
    polys = [np.round(p * 16).astype(np.int32) for p in _shape_polygons(shape, size - 1, angle)]
    cv2.fillPoly(mask, [polys[0]], 255, cv2.LINE_AA, shift=4)
    if len(polys) > 1:
        cv2.fillPoly(mask, [polys[1]], 0, cv2.LINE_AA, shift=4)
    return mask


def _random_colour(rng):
    hsv = np.uint8([[[rng.integers(0, 180), rng.integers(120, 256), rng.integers(90, 256)]]])
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0].astype(np.float32)


def _two_colours(rng):
    first = _random_colour(rng)
    while True:
        second = _random_colour(rng)
        if np.abs(first - second).sum() > 150:
            return first, second


def _texture(pattern, size, rng):
    """size x size x 3 float image of a fill pattern in random colours."""
    first, second = _two_colours(rng)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    period = max(4.0, size / rng.uniform(3.0, 5.0))
    if pattern == 'solid':
        select = np.ones((size, size), bool)
    elif pattern == 'stripes':
        theta = rng.uniform(0, np.pi)
        select = ((xx * np.cos(theta) + yy * np.sin(theta)) / period) % 1.0 < 0.5
    elif pattern == 'checker':
        cell = period / 2
        select = ((np.floor(xx / cell) + np.floor(yy / cell)) % 2) == 0
    elif pattern == 'dots':
        cell = period
        dx = (xx % cell) - cell / 2
        dy = (yy % cell) - cell / 2
        select = dx * dx + dy * dy > (cell * 0.3) ** 2
    elif pattern == 'speckle':
        select = rng.random((size, size)) < 0.5
    elif pattern == 'gradient':
        t = (xx + yy) / max(1, 2 * size - 2)
        return first * (1 - t[..., None]) + second * t[..., None]
    else:
        raise ValueError('unknown pattern %r' % pattern)
    return np.where(select[..., None], first, second)


def _background(size, rng):
    kind = rng.integers(0, 4)
    base = _random_colour(rng) * rng.uniform(0.3, 0.9)
    if kind == 0:
        img = np.tile(base, (size, size, 1))
    elif kind == 1:
        other = _random_colour(rng) * rng.uniform(0.3, 0.9)
        theta = rng.uniform(0, 2 * np.pi)
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
        t = np.clip(0.5 + (xx - 0.5) * np.cos(theta) + (yy - 0.5) * np.sin(theta), 0, 1)
        img = base * (1 - t[..., None]) + other * t[..., None]
    elif kind == 2:
        cells = int(rng.integers(3, 8))
        coarse = rng.uniform(0, 255, (cells, cells, 3)).astype(np.float32)
        img = cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC) * 0.6
    else:
        img = np.tile(base, (size, size, 1))
        period = rng.uniform(size / 12, size / 4)
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
        theta = rng.uniform(0, np.pi)
        wave = np.sin(2 * np.pi * (xx * np.cos(theta) + yy * np.sin(theta)) / period)
        img = img * (1 + 0.2 * wave[..., None])
    return img


def _paste(img, patch, mask, x, y):
    h, w = mask.shape
    alpha = (mask.astype(np.float32) / 255.0)[..., None]
    region = img[y:y + h, x:x + w]
    img[y:y + h, x:x + w] = region * (1 - alpha) + patch * alpha


def _overlap(a, b):
    """Intersection over the smaller box: bounding it keeps every object mostly visible, even
    a small one under a large one drawn later."""
    iw = min(a[2], b[2]) - max(a[0], b[0]) + 1
    ih = min(a[3], b[3]) - max(a[1], b[1]) + 1
    if iw <= 0 or ih <= 0:
        return 0.0
    area = lambda r: (r[2] - r[0] + 1) * (r[3] - r[1] + 1)
    return iw * ih / float(min(area(a), area(b)))


def _draw_clutter(img, rng, table, object_size):
    size = img.shape[0]
    used = set(table)
    spare = [(s, p) for s in SHAPES for p in PATTERNS + CLUTTER_PATTERNS if (s, p) not in used]
    for _ in range(int(rng.integers(1, 5))):
        kind = rng.integers(0, 4)
        colour = tuple(float(v) for v in _random_colour(rng))
        if kind == 0:
            p = rng.integers(0, size, (2, 2))
            cv2.line(img, tuple(int(v) for v in p[0]), tuple(int(v) for v in p[1]), colour,
                     int(rng.integers(1, 4)), cv2.LINE_AA)
        elif kind == 1:
            # Elongated (axis ratio >= 2) so that it never looks like a disc.
            half = max(4, int(rng.integers(object_size[0], object_size[1] + 1)) // 2)
            axes = (half, max(2, int(half * rng.uniform(0.15, 0.45))))
            centre = tuple(int(v) for v in rng.integers(0, size, 2))
            cv2.ellipse(img, centre, axes, float(rng.uniform(0, 180)), 0, 360, colour, -1,
                        cv2.LINE_AA)
        elif kind == 2:
            centre = rng.uniform(0, size, 2)
            n = int(rng.integers(5, 9))
            t = np.sort(rng.uniform(0, 2 * np.pi, n))
            rad = rng.uniform(0.3, 1.0, n) * rng.uniform(object_size[0], object_size[1]) / 2
            pts = np.stack([np.cos(t) * rad, np.sin(t) * rad], 1) + centre
            cv2.fillPoly(img, [np.round(pts).astype(np.int32)], colour, cv2.LINE_AA)
        else:
            shape, pattern = spare[int(rng.integers(0, len(spare)))]
            side = int(rng.integers(object_size[0], object_size[1] + 1))
            x, y = (int(v) for v in rng.integers(0, size - side + 1, 2))
            mask = _shape_mask(shape, side, rng.uniform(-0.25, 0.25))
            _paste(img, _texture(pattern, side, rng), mask, x, y)


def _scene_classes(rng, groups, num_classes, max_objects):
    """The classes present in one scene: one or two groups, each member kept with probability
    0.75 (at least one), and now and then a class from outside them."""
    chosen = rng.choice(len(groups), size=min(len(groups), 1 + int(rng.random() < 0.4)),
                        replace=False)
    present = []
    for g in chosen:
        members = [k for k in groups[g] if rng.random() < 0.75]
        present += members or [groups[g][int(rng.integers(0, len(groups[g])))]]
    if rng.random() < 0.25:
        extra = int(rng.integers(0, num_classes))
        if extra not in present:
            present.append(extra)
    order = rng.permutation(len(present))
    return [present[i] for i in order[:max_objects]]


def render_image(rng, table, groups, image_size, object_size, objects_per_image):
    """One scene: (BGR uint8 image, list of (class, [x1, y1, x2, y2]) objects)."""
    min_objects, max_objects = objects_per_image
    img = _background(image_size, rng)
    _draw_clutter(img, rng, table, object_size)
    present = _scene_classes(rng, groups, len(table), max_objects)
    count = int(rng.integers(max(min_objects, len(present)), max_objects + 1))
    instances = list(present)
    while len(instances) < count:
        instances.append(present[int(rng.integers(0, len(present)))])
    objects = []  # the first always fits: every image has a label
    for k in instances:
        shape, pattern = table[k]
        for _ in range(30):
            side = int(round(np.exp(rng.uniform(np.log(object_size[0]),
                                                np.log(object_size[1])))))
            x, y = (int(v) for v in rng.integers(0, image_size - side + 1, 2))
            mask = _shape_mask(shape, side, rng.uniform(-0.25, 0.25))
            ys, xs = np.nonzero(mask > 127)
            box = [x + int(xs.min()), y + int(ys.min()), x + int(xs.max()), y + int(ys.max())]
            if all(_overlap(box, other) < 0.3 for _, other in objects):
                _paste(img, _texture(pattern, side, rng), mask, x, y)
                objects.append((k, box))
                break
    noise = rng.normal(0, rng.uniform(2, 10), img.shape).astype(np.float32)
    return np.clip(img + noise, 0, 255).astype(np.uint8), objects


def generate(out_dir, num_classes=10, image_size=128, object_size=None,
             objects_per_image=(1, 5), num_train=1000, num_test=300, seed=0,
             image_format='png'):
    """Writes the dataset under out_dir and returns a dict of the paths written:
    'classes' (names, one per line), 'info' (settings and co-occurrence groups), and per split
    '<split>_datalist' (labels-only datalist with absolute image paths, with its '.classes' file
    beside it) and '<split>_boxes' (ground-truth box JSON, see converters.write_boxes_json).
    object_size: (min, max) side in pixels, default (image_size // 8, image_size // 3)."""
    if object_size is None:
        object_size = (max(8, image_size // 8), max(9, image_size // 3))
    object_size = (int(object_size[0]), int(object_size[1]))
    if not 4 <= object_size[0] <= object_size[1] <= image_size:
        raise ValueError('object_size must satisfy 4 <= min <= max <= image_size, got %r'
                         % (object_size,))
    objects_per_image = (int(objects_per_image[0]), int(objects_per_image[1]))
    if not 1 <= objects_per_image[0] <= objects_per_image[1]:
        raise ValueError('objects_per_image must satisfy 1 <= min <= max, got %r'
                         % (objects_per_image,))
    if image_format not in ('png', 'jpg'):
        raise ValueError("image_format must be 'png' or 'jpg', got %r" % image_format)
    out_dir = os.path.abspath(out_dir)
    table = class_table(num_classes)
    groups = class_groups(num_classes, seed)
    names = ['%s_%s' % pair for pair in table]
    os.makedirs(out_dir, exist_ok=True)
    paths = {'classes': os.path.join(out_dir, 'classes.txt'),
             'info': os.path.join(out_dir, 'synthetic.json')}
    converters.write_classes(paths['classes'], names)
    with open(paths['info'], 'w') as f:
        json.dump({'num_classes': num_classes, 'image_size': image_size,
                   'object_size': list(object_size),
                   'objects_per_image': list(objects_per_image), 'seed': seed,
                   'num_train': num_train, 'num_test': num_test, 'image_format': image_format,
                   'classes': names, 'groups': groups}, f, indent=1)
    encode = PNG_ENCODE if image_format == 'png' else [cv2.IMWRITE_JPEG_QUALITY, 92]
    for split_index, (split, count) in enumerate(zip(SPLITS, (num_train, num_test))):
        image_dir = os.path.join(out_dir, 'images', split)
        os.makedirs(image_dir, exist_ok=True)
        entries = []
        for i in range(count):
            rng = np.random.default_rng([seed, split_index, i])
            img, objects = render_image(rng, table, groups, image_size, object_size,
                                        objects_per_image)
            path = os.path.join(image_dir, '%s_%06d.%s' % (split, i, image_format))
            if not cv2.imwrite(path, img, encode):
                raise IOError('cannot write image %s' % path)
            labels = [0] * num_classes
            for k, _ in objects:
                labels[k] = 1
            entries.append(converters.Entry(
                image=path, labels=labels, width=image_size, height=image_size,
                boxes=[box for _, box in objects], box_classes=[k for k, _ in objects],
                difficult=[0] * len(objects)))
        paths[split + '_datalist'] = os.path.join(out_dir, split + '.txt')
        paths[split + '_boxes'] = os.path.join(out_dir, split + '_boxes.json')
        converters.write_labels_datalist(paths[split + '_datalist'], names, entries)
        converters.write_boxes_json(paths[split + '_boxes'], names, entries)
    return paths


def pretraining_classes():
    """Every (shape, pattern) pair, clutter patterns included: the pretraining classes cover the
    scene classes and more, as ImageNet's 1000 cover MS-COCO's 80."""
    return [(shape, pattern) for shape in SHAPES for pattern in PATTERNS + CLUTTER_PATTERNS]


def render_object(rng, shape, pattern, image_size, object_size):
    """One object-centric image: a single object of side in object_size (log-uniform) at a random
    place over a background. Returns (BGR uint8 image, [x1, y1, x2, y2])."""
    img = _background(image_size, rng)
    side = int(round(np.exp(rng.uniform(np.log(object_size[0]), np.log(object_size[1])))))
    x, y = (int(v) for v in rng.integers(0, image_size - side + 1, 2))
    mask = _shape_mask(shape, side, rng.uniform(-0.25, 0.25))
    _paste(img, _texture(pattern, side, rng), mask, x, y)
    ys, xs = np.nonzero(mask > 127)
    box = [x + int(xs.min()), y + int(ys.min()), x + int(xs.max()), y + int(ys.max())]
    noise = rng.normal(0, rng.uniform(2, 10), img.shape).astype(np.float32)
    return np.clip(img + noise, 0, 255).astype(np.uint8), box


def generate_pretraining(out_dir, image_size=64, object_size=None, count=6000, seed=0):
    """The ImageNet stand-in: `count` object-centric images, one object each, its class one of
    pretraining_classes(), balanced. Writes images/, classes.txt and train.txt, a complete
    datalist (one-hot labels, one proposal: the whole image, so that the data layer reads it);
    returns the datalist's path. object_size: (min, max) side, default (image_size // 4,
    image_size - 4)."""
    if object_size is None:
        object_size = (max(4, image_size // 4), max(4, image_size - 4))
    if not 4 <= object_size[0] <= object_size[1] <= image_size:
        raise ValueError('object_size must satisfy 4 <= min <= max <= image_size, got %r'
                         % (tuple(object_size),))
    if count < 1:
        raise ValueError('count must be >= 1, got %d' % count)
    from mlic import datalist
    table = pretraining_classes()
    out_dir = os.path.abspath(out_dir)
    image_dir = os.path.join(out_dir, 'images')
    os.makedirs(image_dir, exist_ok=True)
    names = ['%s_%s' % pair for pair in table]
    converters.write_classes(os.path.join(out_dir, 'classes.txt'), names)
    whole_image = np.array([[0, 0, image_size - 1, image_size - 1, 1]])
    lines = []
    for i in range(count):
        rng = np.random.default_rng([seed, 2, i])
        k = i % len(table)
        img, _ = render_object(rng, table[k][0], table[k][1], image_size, object_size)
        path = os.path.join(image_dir, 'object_%06d.png' % i)
        if not cv2.imwrite(path, img, PNG_ENCODE):
            raise IOError('cannot write image %s' % path)
        labels = [0] * len(table)
        labels[k] = 1
        lines.append(datalist.format_line(path, labels, whole_image))
    path = os.path.join(out_dir, 'train.txt')
    with open(path, 'w') as f:
        f.write('\n'.join(lines) + '\n')
    converters.write_classes(converters.classes_path(path), names)
    return path
