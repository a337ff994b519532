"""The synthetic dataset: reproducible, consistent labels and boxes, co-occurring classes."""
import json
import os

import cv2
import numpy as np
import pytest

from mlic import synthetic
from mlic.converters import read_classes


def read_split(paths, split):
    with open(paths[split + '_datalist']) as f:
        lines = [line.split() for line in f]
    with open(paths[split + '_boxes']) as f:
        boxes = json.load(f)
    return lines, boxes


@pytest.fixture(scope='module')
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp('synthetic')
    paths = synthetic.generate(str(out), num_classes=8, image_size=64, object_size=(10, 24),
                               objects_per_image=(2, 4), num_train=400, num_test=30, seed=3)
    return paths


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    settings = dict(num_classes=6, image_size=64, num_train=12, num_test=4)
    runs = [synthetic.generate(str(tmp_path / name), seed=seed, **settings)
            for name, seed in (('a', 5), ('b', 5), ('c', 6))]
    for split in synthetic.SPLITS:
        contents = []
        for paths in runs:
            lines, boxes = read_split(paths, split)
            images = [open(line[0], 'rb').read() for line in lines]
            labels = [line[1:] for line in lines]
            contents.append((images, labels, [(i['boxes'], i['classes']) for i in boxes['images']]))
        assert contents[0] == contents[1]
        assert contents[0][0] != contents[2][0]
        assert contents[0][2] != contents[2][2]


def test_labels_match_boxes_and_parameters_are_honoured(dataset):
    names = read_classes(dataset['classes'])
    assert len(names) == 8 and len(set(names)) == 8
    assert read_classes(dataset['train_datalist'] + '.classes') == names
    counts = []
    for split, number in (('train', 400), ('test', 30)):
        lines, boxes = read_split(dataset, split)
        assert len(lines) == number == len(boxes['images'])
        for line, image in zip(lines, boxes['images']):
            assert image['image'] == line[0] and os.path.isfile(line[0])
            labels = np.array([int(v) for v in line[1:]])
            assert labels.shape == (8,) and set(labels) <= {0, 1} and labels.sum() >= 1
            assert set(np.nonzero(labels)[0]) == set(image['classes'])
            pixels = cv2.imread(line[0])
            assert pixels.shape == (64, 64, 3) and (image['width'], image['height']) == (64, 64)
            box = np.array(image['boxes'])
            assert (box[:, :2] >= 0).all() and (box[:, 2:] <= 63).all()
            assert (box[:, 2] >= box[:, 0]).all() and (box[:, 3] >= box[:, 1]).all()
            sides = np.maximum(box[:, 2] - box[:, 0], box[:, 3] - box[:, 1]) + 1
            assert (sides <= 24).all() and (sides >= 5).all()
            counts.append(len(box))
    assert max(counts) <= 4 and min(counts) >= 1 and np.mean(counts) >= 2
    # Several instances of one class do occur.
    _, boxes = read_split(dataset, 'train')
    assert any(len(set(i['classes'])) < len(i['classes']) for i in boxes['images'])


def test_classes_co_occur_in_groups(dataset):
    with open(dataset['info']) as f:
        groups = json.load(f)['groups']
    lines, _ = read_split(dataset, 'train')
    labels = np.array([[int(v) for v in line[1:]] for line in lines])
    prior = labels.mean(0)
    group_of = {k: g for g, members in enumerate(groups) for k in members}
    within, across = [], []
    for a in range(labels.shape[1]):
        for b in range(a + 1, labels.shape[1]):
            lift = (labels[:, a] * labels[:, b]).mean() / (prior[a] * prior[b])
            (within if group_of[a] == group_of[b] else across).append(lift)
    assert len(within) >= 4
    assert np.mean(within) > 1.5 and np.mean(within) > 2 * np.mean(across)
    # Every class occurs.
    assert (prior > 0.05).all()


def test_no_class_is_told_by_the_mean_colour(dataset):
    lines, _ = read_split(dataset, 'train')
    labels = np.array([[int(v) for v in line[1:]] for line in lines], float)
    colours = np.array([cv2.imread(line[0]).reshape(-1, 3).mean(0) for line in lines])
    for k in range(labels.shape[1]):
        for c in range(3):
            assert abs(np.corrcoef(labels[:, k], colours[:, c])[0, 1]) < 0.3


@pytest.mark.parametrize('kwargs, message', [
    (dict(num_classes=0), 'num_classes'),
    (dict(num_classes=33), 'num_classes'),
    (dict(object_size=(2, 10)), 'object_size'),
    (dict(object_size=(10, 100)), 'object_size'),
    (dict(objects_per_image=(3, 2)), 'objects_per_image'),
    (dict(image_format='gif'), 'image_format'),
])
def test_bad_parameters_are_named(tmp_path, kwargs, message):
    settings = dict(image_size=64, num_train=1, num_test=1)
    settings.update(kwargs)
    with pytest.raises(ValueError, match=message):
        synthetic.generate(str(tmp_path), **settings)


def test_pretraining_set_is_object_centric_balanced_and_reproducible(tmp_path):
    from mlic import datalist
    classes = synthetic.pretraining_classes()
    assert len(classes) == len(set(classes)) == 48
    assert set(synthetic.class_table(10)) < set(classes)
    path = synthetic.generate_pretraining(str(tmp_path / 'a'), image_size=32,
                                          object_size=(8, 28), count=96, seed=3)
    lines = open(path).read().split('\n')[:-1]
    assert len(lines) == 96
    counts = np.zeros(48)
    for line in lines:
        fields = line.split()
        labels = np.array([float(v) for v in fields[1:49]])
        assert labels.sum() == 1
        counts += labels
        np.testing.assert_array_equal([float(v) for v in fields[49:]], [0, 0, 31, 31, 1])
        img = cv2.imread(fields[0])
        assert img.shape == (32, 32, 3) and img.std() > 0
    assert counts.min() == 2 and counts.max() == 2
    assert read_classes(path + '.classes') == ['%s_%s' % pair for pair in classes]
    # The data layer's own validator takes it as it is.
    assert datalist.validate_datalist(path, 48, 32, 32) == []
    again = synthetic.generate_pretraining(str(tmp_path / 'b'), image_size=32,
                                           object_size=(8, 28), count=4, seed=3)
    first = cv2.imread(lines[0].split()[0])
    np.testing.assert_array_equal(cv2.imread(open(again).readline().split()[0]), first)


@pytest.mark.parametrize('kwargs, message', [
    ({'object_size': (2, 20)}, 'object_size'), ({'object_size': (8, 40)}, 'object_size'),
    ({'count': 0}, 'count')])
def test_pretraining_bad_parameters_are_named(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        synthetic.generate_pretraining(str(tmp_path), image_size=32, **kwargs)


def test_images_are_stored_without_deflate(dataset, tmp_path):
    """Every training decodes every image on each pass: stored PNGs decode 3-4 times faster than
    deflated ones. A stored PNG holds every row's bytes (and a filter byte) uncompressed."""
    train, _ = read_split(dataset, 'train')
    root = os.path.dirname(dataset['train_datalist'])
    objects = synthetic.generate_pretraining(str(tmp_path), image_size=32, object_size=(8, 28),
                                             count=4, seed=3)
    paths = [os.path.join(root, line[0]) for line in train[:5]]
    paths += [os.path.join(os.path.dirname(objects), line.split()[0])
              for line in open(objects).read().split('\n')[:-1]]
    for path in paths:
        height, width = cv2.imread(path).shape[:2]
        assert os.path.getsize(path) >= height * (3 * width + 1), path
