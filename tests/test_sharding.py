"""Training over several GPUs: the data layer gives each solver rank its own share of every
epoch, through the real layer with Caffe's solver rank and count set as the trainer sets them."""
import collections

import cv2
import numpy as np
import pytest

from mlic import distributed
from mlic.datalist import format_line

IMAGES = 7  # odd: the two ranks' shares differ in size
WIDTH = HEIGHT = 16


@pytest.fixture
def dataset(tmp_path):
    """Seven images; image i carries label i only, so a label row names its image."""
    rng = np.random.RandomState(0)
    lines = []
    for i in range(IMAGES):
        cv2.imwrite(str(tmp_path / ('img%d.png' % i)),
                    rng.randint(0, 256, (HEIGHT, WIDTH, 3)).astype(np.uint8))
        lines.append(format_line('img%d.png' % i, np.eye(IMAGES)[i], [[0, 0, 7, 7, 1]]))
    (tmp_path / 'list.txt').write_text('\n'.join(lines) + '\n')
    return tmp_path


def write_net(root, batch_size, seed=3):
    param = ("source: '%s' root_folder: '%s' batch_size: %d shuffle: true new_width: %d "
             "new_height: %d att_num: %d bbox_num: 2 mirror: true scale_factors: 0.5 "
             "scale_factors: 1 seed: %d workers: 1 prefetch: 2"
             % (root / 'list.txt', root, batch_size, WIDTH, HEIGHT, IMAGES, seed))
    path = root / 'net.prototxt'
    path.write_text('layer { name: "data" type: "Python" top: "data" top: "label_roi" '
                    'python_param { module: "caffe_layers.data_layer" '
                    'layer: "MultiLabelRoIDataLayer" param_str: "%s" } }\n' % param)
    return str(path)


@pytest.fixture
def solver_rank(caffe):
    """Sets Caffe's solver rank and count as one process of a multi-GPU training has them, and
    puts them back."""
    def set_rank(rank, count):
        caffe.set_multiprocess(True)  # else Caffe refuses a TRAIN Python layer with count > 1
        caffe.set_solver_count(count)
        caffe.set_solver_rank(rank)
    yield set_rank
    caffe.set_solver_count(1)
    caffe.set_solver_rank(0)
    caffe.set_multiprocess(False)


def images_seen(caffe, net_path, phase, batches):
    """(image index, mirrored, image width) of every batch row, in order, over `batches`."""
    net = caffe.Net(net_path, phase)
    try:
        seen = []
        for _ in range(batches):
            net.forward()
            label_roi = net.blobs['label_roi'].data
            width = net.blobs['data'].data.shape[3]
            for row in label_roi:
                # Box x1 = 0 becomes W-1-7 when mirrored.
                seen.append((int(np.argmax(row[:IMAGES])), row[IMAGES] != 0, width))
        return seen
    finally:
        net.layers[0].close()


def test_shard_order_splits_an_epoch_into_disjoint_parts():
    order = np.random.RandomState(0).permutation(10)
    parts = [distributed.shard_order(order, r, 3) for r in range(3)]
    assert sorted(np.concatenate(parts).tolist()) == list(range(10))
    assert [len(p) for p in parts] == [4, 3, 3]
    np.testing.assert_array_equal(distributed.shard_order(order, 0, 1), order)
    with pytest.raises(ValueError):
        distributed.shard_order(order, 3, 3)


def test_two_ranks_see_disjoint_images_and_every_image_once_per_epoch(caffe, dataset,
                                                                     solver_rank):
    net = write_net(dataset, batch_size=1)
    shares = {}
    for rank in (0, 1):
        solver_rank(rank, 2)
        # Three epochs of each rank's share (4 and 3 images).
        shares[rank] = images_seen(caffe, net, caffe.TRAIN, 3 * (4 if rank == 0 else 3))
    for epoch in range(3):
        first = [image for image, _, _ in shares[0][4 * epoch:4 * epoch + 4]]
        second = [image for image, _, _ in shares[1][3 * epoch:3 * epoch + 3]]
        assert not set(first) & set(second)
        assert sorted(first + second) == list(range(IMAGES))
    # Each epoch is reshuffled: the ranks' shares change from one epoch to the next.
    assert len({tuple(sorted(i for i, _, _ in shares[0][4 * e:4 * e + 4])) for e in range(3)}) > 1


def test_ranks_draw_their_own_scales_and_mirrors(caffe, dataset, solver_rank):
    net = write_net(dataset, batch_size=3)
    augmentation = {}
    for rank in (0, 1):
        solver_rank(rank, 2)
        augmentation[rank] = [(mirrored, width) for _, mirrored, width
                              in images_seen(caffe, net, caffe.TRAIN, 8)]
    assert augmentation[0] != augmentation[1]
    solver_rank(1, 2)  # the same rank draws the same again
    assert [(m, w) for _, m, w in images_seen(caffe, net, caffe.TRAIN, 8)] == augmentation[1]


def test_one_solver_keeps_the_single_generator_order(caffe, dataset):
    """Rank 0 of 1 draws images, scales and mirrors from one generator seeded by `seed`, in the
    order a plain `caffe train` always has."""
    seen = images_seen(caffe, write_net(dataset, batch_size=3, seed=5), caffe.TRAIN, 5)
    rng = np.random.RandomState(5)
    expected, order, position = [], rng.permutation(IMAGES), 0
    for _ in range(5):
        batch = []
        for _ in range(3):
            if position == IMAGES:
                order, position = rng.permutation(IMAGES), 0
            batch.append(int(order[position]))
            position += 1
        width = int(np.float32(WIDTH) * np.float32([0.5, 1][rng.randint(2)]))
        mirrors = rng.randint(2, size=3).astype(bool)
        expected += [(image, bool(m), width) for image, m in zip(batch, mirrors)]
    assert [(i, bool(m), w) for i, m, w in seen] == expected


def test_the_test_phase_is_not_sharded(caffe, dataset, solver_rank):
    path = write_net(dataset, batch_size=IMAGES)
    solver_rank(1, 2)
    seen = images_seen(caffe, path, caffe.TEST, 1)
    assert sorted(image for image, _, _ in seen) == list(range(IMAGES))


def test_more_ranks_than_images_is_refused(caffe, dataset, solver_rank):
    solver_rank(0, IMAGES + 1)
    with pytest.raises(Exception, match='fewer than the 8 solvers'):
        caffe.Net(write_net(dataset, batch_size=1), caffe.TRAIN)


def test_rank_seeds_differ_and_repeat():
    seeds = collections.Counter(distributed.rank_seed(1, r) for r in range(64))
    assert len(seeds) == 64
    assert distributed.rank_seed(1, 5) == distributed.rank_seed(1, 5)
