"""MultiLabelRoIDataLayer through pycaffe and the real `caffe train`: image values, box scaling
and mirroring as the original's data layer makes them, the label_roi layout, determinism and
errors; the inference paths prepare images as the layer does (one preprocessing module)."""
import math
import os
import re
import signal
import subprocess
import sys
import textwrap
import time

import cv2
import numpy as np
import pytest

from conftest import run_caffe_tool
from mlic.datalist import format_line

C = 6            # image i carries label i only, so a batch row says which image it holds
BBOX_NUM = 3
WIDTH, HEIGHT = 40, 30
MEAN = np.array([10.0, 20.5, 30.0], dtype=np.float32)
# Proposals per image, in resized-image pixels; fractional corners test the truncation.
PROPOSALS = [
    [[0, 0, 39, 29, 0.5], [3.7, 2.2, 20.9, 15.5, 0.9]],
    [[5, 6, 10, 12, 1]],
    [[1, 1, 2, 2, 0.1], [10, 10, 30, 20, 0.7], [0, 5, 38, 28, 0.2], [7.5, 0, 9.5, 3, 0.8]],
    [[12, 3, 12, 3, 1], [0, 0, 0, 0, 0.3], [39, 29, 39, 29, 0.4]],
    [[20, 10, 35, 25, 0.6]],
    [[2.9, 4.1, 37.6, 27.8, 0.33], [0, 0, 1, 1, 0.2]],
]


@pytest.fixture
def dataset(tmp_path):
    """Six images of different sizes and their datalist, paths relative to the root folder."""
    rng = np.random.RandomState(0)
    lines = []
    for i, proposals in enumerate(PROPOSALS):
        image = rng.randint(0, 256, size=(20 + 7 * i, 50 - 3 * i, 3)).astype(np.uint8)
        cv2.imwrite(str(tmp_path / ('img%d.png' % i)), image)
        lines.append(format_line('img%d.png' % i, np.eye(C)[i], proposals))
    (tmp_path / 'list.txt').write_text('\n'.join(lines) + '\n')
    return tmp_path


def param_str(root, **overrides):
    fields = dict(source=str(root / 'list.txt'), root_folder=str(root), batch_size=C,
                  new_width=WIDTH, new_height=HEIGHT, att_num=C, bbox_num=BBOX_NUM,
                  mean_value=list(MEAN), workers=2, prefetch=2)
    fields.update(overrides)
    parts = []
    for key, value in fields.items():
        for v in (value if isinstance(value, list) else [value]):
            if isinstance(v, bool):
                v = 'true' if v else 'false'
            elif isinstance(v, str):
                v = "'%s'" % v
            parts.append('%s: %s' % (key, v))
    return ' '.join(parts)


def net_text(root, **overrides):
    soft = ''.join(' top: "%s"' % top for top, field in (('soft_target', 'soft_targets'),
                                                          ('roi_target', 'roi_targets'),
                                                          ('map_target', 'map_targets'))
                   if overrides.get(field))
    return textwrap.dedent('''
        layer { name: "data" type: "Python" top: "data" top: "label_roi"%s
          python_param { module: "caffe_layers.data_layer" layer: "MultiLabelRoIDataLayer"
                         param_str: "%s" } }
        layer { name: "slice" type: "Slice" bottom: "label_roi" top: "labels" top: "list_roi"
                slice_param { slice_point: %d } }
        layer { name: "roigen" type: "WsdRoigen" bottom: "list_roi" top: "roi" }
    ''') % (soft, param_str(root, **overrides), C)


OPEN_LAYERS = []


@pytest.fixture(autouse=True)
def close_data_layers():
    yield
    while OPEN_LAYERS:
        OPEN_LAYERS.pop().close()


def make_net(caffe, root, phase, **overrides):
    path = root / ('net_%d.prototxt' % len(os.listdir(str(root))))
    path.write_text(net_text(root, **overrides))
    net = caffe.Net(str(path), phase)
    OPEN_LAYERS.append(net.layers[0])
    return net


def expected_image(root, i, scale, mirror):
    image = cv2.imread(str(root / ('img%d.png' % i)))
    image = cv2.resize(image, (WIDTH, HEIGHT))
    if scale != 1:
        image = cv2.resize(image, (math.floor(WIDTH * scale), math.floor(HEIGHT * scale)))
    if mirror:
        image = cv2.flip(image, 1)
    return image.transpose(2, 0, 1).astype(np.float32) - MEAN.reshape(3, 1, 1)


def expected_proposals(i, scale, mirror):
    """The original's rule by hand: corners truncated to int when touched, scaled, then x
    mirrored in the scaled width; bbox_num rows, the best-scoring kept, padding rows (-1)
    after."""
    rows = sorted(PROPOSALS[i], key=lambda r: -r[4])[:BBOX_NUM]
    rows = [r for r in PROPOSALS[i] if r in rows]
    width = math.floor(WIDTH * scale)
    out = []
    for x1, y1, x2, y2, s in rows:
        if scale != 1:
            x1, y1, x2, y2 = [int(int(v) * scale) for v in (x1, y1, x2, y2)]
        if mirror:
            x1, x2 = width - 1 - int(x2), width - 1 - int(x1)
            y1, y2 = int(y1), int(y2)
        out.append([x1, y1, x2, y2, s])
    out += [[-1] * 5] * (BBOX_NUM - len(out))
    return np.array(out, dtype=np.float32)


def test_transform_proposals_truncates_scales_and_mirrors_as_the_original():
    from mlic.preprocess import transform_proposals
    proposals = np.array([[10.7, 3.2, 671, 500.9, 0.5], [-1, -1, -1, -1, -1]], dtype=np.float32)
    scale = 0.714286
    width = 480  # int(672 * 0.714286)
    out = transform_proposals(proposals, scale, True, width)
    f = np.float32(scale)
    x1, y1 = int(np.float32(10) * f), int(np.float32(3) * f)
    x2, y2 = int(np.float32(671) * f), int(np.float32(500) * f)
    assert (x1, y1, x2, y2) == (7, 2, 479, 357)
    np.testing.assert_array_equal(out[0], np.float32([width - 1 - x2, y1, width - 1 - x1, y2,
                                                      0.5]))
    np.testing.assert_array_equal(out[1], [-1, -1, -1, -1, -1])
    np.testing.assert_array_equal(transform_proposals(proposals, 1, False, 672), proposals)


def test_scaled_sizes_of_the_released_factors():
    from mlic.preprocess import scaled_size
    factors = [0.714286, 0.857143, 1, 1.095239, 1.238096]
    assert [scaled_size(672, s) for s in factors] == [480, 576, 672, 736, 832]


def test_train_batches_are_scaled_mirrored_and_laid_out(caffe, dataset):
    net = make_net(caffe, dataset, caffe.TRAIN, shuffle=True, seed=1, mirror=True,
                   scale_factors=[0.75, 1.5])
    seen_scales, seen_mirrors = set(), set()
    for _ in range(5):
        net.forward()
        data, label_roi = net.blobs['data'].data, net.blobs['label_roi'].data
        scale = data.shape[3] / WIDTH
        assert data.shape == (C, 3, math.floor(HEIGHT * scale), math.floor(WIDTH * scale))
        assert label_roi.shape == (C, C + 5 * BBOX_NUM)
        images = [int(np.argmax(row[:C])) for row in label_roi]
        assert sorted(images) == list(range(C))  # one epoch per batch, shuffled
        for n, i in enumerate(images):
            np.testing.assert_array_equal(label_roi[n, :C], np.eye(C)[i])
            mirror = not np.array_equal(data[n], expected_image(dataset, i, scale, False))
            np.testing.assert_allclose(data[n], expected_image(dataset, i, scale, mirror),
                                       atol=1e-4)
            np.testing.assert_allclose(label_roi[n, C:].reshape(BBOX_NUM, 5),
                                       expected_proposals(i, scale, mirror), atol=1e-6)
            seen_mirrors.add(mirror)
        seen_scales.add(scale)
        np.testing.assert_array_equal(net.blobs['labels'].data, label_roi[:, :C])
        roi = net.blobs['roi'].data
        np.testing.assert_array_equal(roi[:, 0], np.repeat(np.arange(C), BBOX_NUM))
        np.testing.assert_array_equal(roi[:, 1:], label_roi[:, C:].reshape(-1, 5))
    assert seen_scales == {0.75, 1.5} and seen_mirrors == {False, True}


def soft_targets_file(root, targets):
    path = root / 'soft_targets.npy'
    np.save(str(path), np.asarray(targets, dtype=np.float32))
    return str(path)


def test_soft_targets_give_each_image_the_row_of_its_side(caffe, dataset):
    # Line i, side m: values that say both, e.g. 0.31 for line 3 mirrored.
    targets = (np.arange(C)[:, None, None] * 0.1 + np.array([0.0, 0.01])[None, :, None]
               + np.zeros((1, 1, C))).astype(np.float32)
    targets[0, 0, 0] = np.nextafter(np.float32(1), np.float32(2))  # a sum that rounded past 1
    net = make_net(caffe, dataset, caffe.TRAIN, shuffle=True, seed=3, mirror=True,
                   soft_targets=soft_targets_file(dataset, targets))
    sides = set()
    for _ in range(4):
        net.forward()
        data, label_roi = net.blobs['data'].data, net.blobs['label_roi'].data
        soft = net.blobs['soft_target'].data
        assert label_roi.shape == (C, C + 5 * BBOX_NUM) and soft.shape == (C, C)
        for n in range(C):
            i = int(np.argmax(label_roi[n, :C]))
            mirror = not np.array_equal(data[n], expected_image(dataset, i, 1, False))
            np.testing.assert_array_equal(soft[n], targets[i, int(mirror)])
            np.testing.assert_allclose(label_roi[n, C:].reshape(BBOX_NUM, 5),
                                       expected_proposals(i, 1, mirror), atol=1e-6)
            sides.add(mirror)
    assert sides == {False, True}


@pytest.mark.parametrize('targets,overrides,message', [
    (np.zeros((C - 1, 2, C)), {},
     r'.*soft_targets.npy has shape \(5, 2, 6\); .*list.txt needs \(6, 2, 6\)'),
    (np.zeros((C, 2, C)), dict(scale_factors=[1.0, 0.5]),
     r'.*at one scale: leave scale_factors empty'),
    (np.full((C, 2, C), 0.5) + np.eye(C)[:, None, :] * [[0], [0.7]], {},
     r'.*soft_targets.npy: the scores of line 1 of .*list.txt are not probabilities'),
    (None, {}, r'cannot read .*missing.npy'),
])
def test_bad_soft_targets_name_the_field_and_file(caffe, dataset, targets, overrides, message):
    path = (soft_targets_file(dataset, targets) if targets is not None
            else str(dataset / 'missing.npy'))
    with pytest.raises(RuntimeError, match='MultiLabelRoIDataLayer: soft_targets: ' + message):
        make_net(caffe, dataset, caffe.TRAIN, soft_targets=path, **overrides)


def test_test_phase_neither_scales_nor_mirrors(caffe, dataset):
    net = make_net(caffe, dataset, caffe.TEST, batch_size=4, mirror=True,
                   scale_factors=[0.75, 1.5])
    order = []
    for _ in range(3):
        net.forward()
        assert net.blobs['data'].data.shape == (4, 3, HEIGHT, WIDTH)
        for n, row in enumerate(net.blobs['label_roi'].data):
            i = int(np.argmax(row[:C]))
            order.append(i)
            np.testing.assert_array_equal(net.blobs['data'].data[n],
                                          expected_image(dataset, i, 1, False))
            np.testing.assert_allclose(row[C:].reshape(BBOX_NUM, 5),
                                       expected_proposals(i, 1, False), atol=1e-6)
    assert order == [0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 5]  # datalist order, wrapping around


def test_scale_multiplies_the_mean_subtracted_pixels(caffe, dataset):
    net = make_net(caffe, dataset, caffe.TRAIN, batch_size=4, mirror=True, shuffle=True,
                   scale_factors=[0.75], scale=0.125)
    for _ in range(2):
        net.forward()
        for n, row in enumerate(net.blobs['label_roi'].data):
            i = int(np.argmax(row[:C]))
            mirror = not np.allclose(net.blobs['data'].data[n],
                                     0.125 * expected_image(dataset, i, 0.75, False))
            np.testing.assert_allclose(net.blobs['data'].data[n],
                                       0.125 * expected_image(dataset, i, 0.75, mirror),
                                       atol=1e-5)


def batches(net, count):
    out = []
    for _ in range(count):
        net.forward()
        out.append((net.blobs['data'].data.copy(), net.blobs['label_roi'].data.copy()))
    return out


def test_a_seed_fixes_the_batches(caffe, dataset):
    settings = dict(shuffle=True, mirror=True, scale_factors=[0.75, 1.5], batch_size=4,
                    workers=2, prefetch=3)
    first = batches(make_net(caffe, dataset, caffe.TRAIN, seed=7, **settings), 4)
    again = batches(make_net(caffe, dataset, caffe.TRAIN, seed=7, **settings), 4)
    other = batches(make_net(caffe, dataset, caffe.TRAIN, seed=8, **settings), 4)
    for (data, label_roi), (data2, label_roi2) in zip(first, again):
        np.testing.assert_array_equal(data, data2)
        np.testing.assert_array_equal(label_roi, label_roi2)
    assert any(a[1].shape != b[1].shape or not np.array_equal(a[1], b[1])
               for a, b in zip(first, other))


def corrupt_third_image(root):
    (root / 'img2.png').write_bytes(b'this is not a PNG')
    return str(root / 'img2.png')


def test_unreadable_image_stops_with_path_and_line(caffe, dataset):
    path = corrupt_third_image(dataset)
    with pytest.raises(RuntimeError, match=r'source: cannot read image %s \(%s line 3\)'
                       % (re.escape(path), re.escape(str(dataset / 'list.txt')))):
        net = make_net(caffe, dataset, caffe.TEST, batch_size=1)
        batches(net, 3)


def test_unreadable_image_can_be_skipped_and_counted(caffe, dataset, caplog):
    path = corrupt_third_image(dataset)
    net = make_net(caffe, dataset, caffe.TEST, batch_size=1, skip_unreadable=True)
    order = [int(np.argmax(label_roi[0, :C])) for _, label_roi in batches(net, 6)]
    assert order == [0, 1, 3, 3, 4, 5]  # line 3 replaced by the next readable line
    skips = [r.getMessage() for r in caplog.records if 'skipped unreadable' in r.getMessage()]
    assert len(skips) == 1
    assert path in skips[0] and 'line 3' in skips[0] and '1 skipped so far' in skips[0]


@pytest.mark.parametrize('overrides,message', [
    (dict(att_num=0), r'att_num: must be set'),
    (dict(new_height=0), r'new_height: new_width and new_height must both be positive'),
    (dict(mean_value=[1.0, 2.0]), r'mean_value: give 1 value or 3'),
    (dict(scale_factors=[-0.5]), r'scale_factors: -0.5 gives no image'),
    (dict(batch_size=0), r'batch_size: must be positive'),
    (dict(scale=0), r'scale: must be a positive number'),
    (dict(colour='yes'), r'python_param.param_str: cannot parse'),
])
def test_bad_parameters_name_layer_and_field(caffe, dataset, overrides, message):
    with pytest.raises(RuntimeError, match='MultiLabelRoIDataLayer: ' + message):
        make_net(caffe, dataset, caffe.TRAIN, **overrides)


def test_bad_datalist_is_reported_at_set_up(caffe, dataset):
    with open(str(dataset / 'list.txt'), 'a') as f:
        f.write('img0.png 1 0 0 0 0 0 0 0 50 10 nan\n')  # a score that is not a number
        f.write('missing.png 1 0 0 0 0 0 0 0 10 10\n')  # 10 numbers: not 6 + 5k
    listing = re.escape(str(dataset / 'list.txt'))
    with pytest.raises(RuntimeError) as error:
        make_net(caffe, dataset, caffe.TRAIN)
    message = str(error.value)
    assert message.startswith('MultiLabelRoIDataLayer: source: the datalist is not usable')
    assert re.search(listing + r':7: proposals\[0\]\.s: nan is not finite', message)
    assert re.search(listing + r':8: fields: 10 numbers', message)


def test_the_layer_clips_corners_as_the_validator_does(caffe, dataset, caplog):
    """Corners on or past the resized image's edge (the original's lists have them) are
    clipped to it, the same rows the validator's reading gives; a duplicate line is kept."""
    from mlic.datalist import scan_datalist
    lines = (dataset / 'list.txt').read_text().splitlines()
    lines[1] = format_line('img1.png', np.eye(C)[1], [[5, 6, 40, 30, 1], [39.6, 0, 45, 12, 0.5]])
    lines.append(lines[0])
    (dataset / 'list.txt').write_text('\n'.join(lines) + '\n')
    entries, problems = scan_datalist(str(dataset / 'list.txt'), C, WIDTH, HEIGHT, str(dataset))
    assert problems == []
    np.testing.assert_array_equal(entries[1].proposals, [[5, 6, 39, 29, 1], [39, 0, 39, 12, 0.5]])
    net = make_net(caffe, dataset, caffe.TEST, batch_size=len(lines))
    net.forward()
    label_roi = net.blobs['label_roi'].data
    np.testing.assert_array_equal(label_roi[1, C:C + 10].reshape(2, 5), entries[1].proposals)
    np.testing.assert_array_equal(label_roi[-1], label_roi[0])  # the duplicate, kept
    warnings = [r.getMessage() for r in caplog.records if 'accepted as the original' in
                r.getMessage()]
    assert len(warnings) == 1
    assert '2 boxes on 1 line (first: line 2): corners outside the 40x30' in warnings[0]
    assert '1 line (first: line 7): an image listed again' in warnings[0]


def test_images_above_max_pixels_are_refused_before_decoding(caffe, dataset):
    # img0.png is 50 x 20 = 1000 pixels.
    with pytest.raises(RuntimeError, match=r'source: cannot read image %s \(%s line 1\): 50 x 20 '
                       r'pixels is more than the limit of 999'
                       % (re.escape(str(dataset / 'img0.png')),
                          re.escape(str(dataset / 'list.txt')))):
        make_net(caffe, dataset, caffe.TEST, batch_size=1, max_pixels=999, workers=1,
                 prefetch=1).forward()
    net = make_net(caffe, dataset, caffe.TEST, batch_size=1, max_pixels=1000, workers=1,
                   prefetch=1)
    net.forward()  # the first batch, img0.png, at the limit
    assert np.argmax(net.blobs['label_roi'].data[0, :C]) == 0


def test_inference_prepares_images_as_the_test_phase_with_the_configs_mean(caffe, dataset):
    """Training and evaluation share one preprocessing: the student's and teacher's inference
    blobs equal the layer's TEST blob bit for bit, with the config's mean (not a default)."""
    from mlic import inference
    side = 32
    cfg = {'image_size': side, 'mean_value': [1.5, 60.25, 200.0], 'input_scale': 0.5}
    net = make_net(caffe, dataset, caffe.TEST, new_width=side, new_height=side,
                   mean_value=cfg['mean_value'], scale=1.0)
    net.forward()
    paths = [str(dataset / ('img%d.png' % i)) for i in range(C)]
    blob = inference.load_images(paths, cfg)
    np.testing.assert_array_equal(blob, net.blobs['data'].data)
    mirrored = inference.load_images(paths, cfg, mirror=True)
    np.testing.assert_array_equal(mirrored, net.blobs['data'].data[:, :, :, ::-1])


def test_a_dead_worker_stops_training_instead_of_hanging(caffe, dataset):
    net = make_net(caffe, dataset, caffe.TRAIN, batch_size=2, workers=1, prefetch=2)
    layer = net.layers[0]
    for worker in layer.workers:
        os.kill(worker.pid, signal.SIGKILL)
        worker.join()
    with pytest.raises(RuntimeError, match=r'workers: worker process \d+ died'):
        batches(net, 4)


def test_caffe_train_with_the_data_layer(dataset):
    """The real caffe tool trains a small multi-scale net fed by the layer and snapshots it."""
    (dataset / 'train.prototxt').write_text(net_text(
        dataset, batch_size=3, shuffle=True, mirror=True, scale_factors=[0.75, 1.5]) + '''
        layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
                convolution_param { num_output: 4 kernel_size: 3 stride: 2
                                    weight_filler { type: "gaussian" std: 0.01 } } }
        layer { name: "pool" type: "Pooling" bottom: "conv" top: "pool"
                pooling_param { pool: AVE global_pooling: true } }
        layer { name: "score" type: "InnerProduct" bottom: "pool" top: "score"
                inner_product_param { num_output: %d weight_filler { type: "xavier" } } }
        layer { name: "loss" type: "SigmoidCrossEntropyLoss" bottom: "score" bottom: "labels"
                top: "loss" }
        layer { name: "silence" type: "Silence" bottom: "roi" }
    ''' % C)
    (dataset / 'solver.prototxt').write_text(textwrap.dedent('''
        net: "train.prototxt"
        base_lr: 0.00001
        lr_policy: "fixed"
        momentum: 0.9
        max_iter: 4
        display: 1
        snapshot: 4
        snapshot_prefix: "snap/tiny"
        solver_mode: CPU
    '''))
    (dataset / 'snap').mkdir()
    result = run_caffe_tool(['train', '-solver', 'solver.prototxt'], cwd=str(dataset),
                            timeout=300)
    assert result.returncode == 0, result.stdout[-3000:]
    losses = [float(v) for v in re.findall(r'Iteration \d+.*loss = (\S+)', result.stdout)]
    assert len(losses) >= 4 and all(np.isfinite(losses)), result.stdout[-3000:]
    assert (dataset / 'snap' / 'tiny_iter_4.caffemodel').is_file()
    assert (dataset / 'snap' / 'tiny_iter_4.solverstate').is_file()


def process_gone(pid, timeout=15):
    """True when the process ends (or is left a zombie) within timeout seconds."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with open('/proc/%d/stat' % pid) as f:
                if f.read().rsplit(')', 1)[1].split()[0] == 'Z':
                    return True
        except OSError:
            return True
        time.sleep(0.1)
    return False


def test_closing_stops_workers_with_batches_in_flight(caffe, dataset):
    # Batches bigger than a pipe's buffer, none of them read.
    net = make_net(caffe, dataset, caffe.TEST, bbox_num=5000, prefetch=3)
    layer = net.layers[0]
    time.sleep(0.5)
    layer.close()
    assert all(process_gone(w.pid) for w in layer.workers)


def test_workers_of_a_process_that_dies_exit_too(dataset):
    """The caffe tool never finalises Python: workers must notice their parent is gone."""
    script = dataset / 'orphan.py'
    script.write_text(textwrap.dedent('''
        import os, sys
        import caffe, caffe_layers
        net = caffe.Net(sys.argv[1], caffe.TEST)
        print(' '.join(str(w.pid) for w in net.layers[0].workers), flush=True)
        os._exit(0)
    '''))
    (dataset / 'net.prototxt').write_text(net_text(dataset, bbox_num=5000, prefetch=3))
    out = subprocess.run([sys.executable, str(script), str(dataset / 'net.prototxt')],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, timeout=60)
    pids = [int(p) for p in out.stdout.split()]
    assert len(pids) == 2
    gone = [process_gone(pid) for pid in pids]
    for pid in (p for p, ended in zip(pids, gone) if not ended):
        os.kill(pid, signal.SIGKILL)  # leave nothing behind when the test fails
    assert all(gone)


def test_caffe_tool_shows_why_the_data_layer_failed(dataset):
    """The caffe tool aborts on a Python layer's exception without its message; the layer
    prints it first, so a bad datalist is named with its line."""
    bad = dataset / 'bad.txt'
    bad.write_text('missing_image.png' + ' 0' * C + '\n')
    text = net_text(dataset, batch_size=1, source=str(bad))
    (dataset / 'bad_net.prototxt').write_text(text + '''
        layer { name: "silence" type: "Silence" bottom: "data" bottom: "labels" bottom: "roi" }
    ''')
    (dataset / 'bad_solver.prototxt').write_text(
        'net: "bad_net.prototxt"\nbase_lr: 0.1\nlr_policy: "fixed"\nmax_iter: 1\n'
        'solver_mode: CPU\n')
    result = run_caffe_tool(['train', '-solver', 'bad_solver.prototxt'], cwd=str(dataset),
                            timeout=120)
    assert result.returncode != 0
    assert 'MultiLabelRoIDataLayer: source:' in result.stdout, result.stdout[-3000:]
    assert '%s:1:' % bad in result.stdout, result.stdout[-3000:]


ROI_D = 3


def roi_targets_file(root, targets, dtype=np.float32):
    path = root / 'roi_targets.npy'
    np.save(str(path), np.asarray(targets, dtype=dtype))
    return str(path)


def test_roi_targets_give_each_proposal_the_row_of_its_image_and_side(caffe, dataset):
    """With soft targets beside them (both tops, in proto order), from a memory map."""
    # Line i, side m, proposal b, feature d: 1000 i + 100 m + 10 b + d.
    i, m, b, d = np.meshgrid(np.arange(C), np.arange(2), np.arange(BBOX_NUM), np.arange(ROI_D),
                             indexing='ij')
    roi_targets = (1000 * i + 100 * m + 10 * b + d).astype(np.float32)
    soft = np.zeros((C, 2, C), dtype=np.float32) + np.array([0.0, 0.5])[None, :, None]
    net = make_net(caffe, dataset, caffe.TRAIN, shuffle=True, seed=5, mirror=True,
                   soft_targets=soft_targets_file(dataset, soft),
                   roi_targets=roi_targets_file(dataset, roi_targets))
    assert list(net.top_names['data']) == ['data', 'label_roi', 'soft_target', 'roi_target']
    sides = set()
    for _ in range(4):
        net.forward()
        data, label_roi = net.blobs['data'].data, net.blobs['label_roi'].data
        given = net.blobs['roi_target'].data
        assert given.shape == (C * BBOX_NUM, ROI_D)
        for n in range(C):
            image = int(np.argmax(label_roi[n, :C]))
            mirror = not np.array_equal(data[n], expected_image(dataset, image, 1, False))
            np.testing.assert_array_equal(given[n * BBOX_NUM:(n + 1) * BBOX_NUM],
                                          roi_targets[image, int(mirror)])
            assert net.blobs['soft_target'].data[n, 0] == 0.5 * mirror
            sides.add(mirror)
    assert sides == {False, True}


@pytest.mark.parametrize('shape,dtype,overrides,message', [
    ((C, 2, BBOX_NUM + 1, ROI_D), np.float32, {},
     r'.*roi_targets.npy has shape \(6, 2, 4, 3\); .*list.txt needs \(6, 2, 3\) \+ \(D,\)'),
    ((C, 2, BBOX_NUM), np.float32, {}, r'.*has shape \(6, 2, 3\)'),
    ((C, 2, BBOX_NUM, ROI_D), np.float64, {}, r'.*roi_targets.npy holds float64; it must be '
                                                r'float32'),
    ((C, 2, BBOX_NUM, ROI_D), np.float32, dict(scale_factors=[1.0, 0.5]),
     r'.*at one scale: leave scale_factors empty'),
    ('nan', np.float32, {}, r'.*roi_targets.npy: the features of line 5 of .*list.txt are not '
                            r'finite'),
    (None, np.float32, {}, r'cannot read .*missing.npy'),
])
def test_bad_roi_targets_name_the_field_and_file(caffe, dataset, shape, dtype, overrides,
                                                 message):
    if shape is None:
        path = str(dataset / 'missing.npy')
    elif shape == 'nan':
        targets = np.zeros((C, 2, BBOX_NUM, ROI_D))
        targets[4, 1, 2, 0] = np.nan
        path = roi_targets_file(dataset, targets)
    else:
        path = roi_targets_file(dataset, np.zeros(shape), dtype)
    with pytest.raises(RuntimeError, match='MultiLabelRoIDataLayer: roi_targets: ' + message):
        make_net(caffe, dataset, caffe.TRAIN, roi_targets=path, **overrides)


def test_a_missing_roi_target_top_is_named(caffe, dataset):
    path = roi_targets_file(dataset, np.zeros((C, 2, BBOX_NUM, ROI_D)))
    text = net_text(dataset, roi_targets=path).replace(' top: "roi_target"', '')
    (dataset / 'short.prototxt').write_text(text)
    with pytest.raises(RuntimeError, match=r'MultiLabelRoIDataLayer: top: takes 3 top blobs '
                                           r'\(data, label_roi, roi_target\), got 2'):
        caffe.Net(str(dataset / 'short.prototxt'), caffe.TRAIN)


def map_targets_file(root, targets, dtype=np.float32):
    path = root / 'map_targets.npy'
    np.save(str(path), np.asarray(targets, dtype=dtype))
    return str(path)


MAP_SHAPE = (2, 3, 4)  # channels, height, width of the teacher's map


def test_map_targets_give_each_image_the_map_of_its_side(caffe, dataset):
    """The baselines' teacher maps, (N, C, H, W), after the RoI features when both are set."""
    # Line i, side m, entry (c, y, x): 1000 i + 100 m + 16 c + 4 y + x.
    i, m = np.meshgrid(np.arange(C), np.arange(2), indexing='ij')
    maps = (1000 * i + 100 * m)[:, :, None, None, None] + \
        np.arange(int(np.prod(MAP_SHAPE))).reshape(MAP_SHAPE)
    roi = np.zeros((C, 2, BBOX_NUM, ROI_D), dtype=np.float32)
    net = make_net(caffe, dataset, caffe.TRAIN, shuffle=True, seed=6, mirror=True,
                   roi_targets=roi_targets_file(dataset, roi),
                   map_targets=map_targets_file(dataset, maps))
    assert list(net.top_names['data']) == ['data', 'label_roi', 'roi_target', 'map_target']
    sides = set()
    for _ in range(4):
        net.forward()
        data, label_roi = net.blobs['data'].data, net.blobs['label_roi'].data
        given = net.blobs['map_target'].data
        assert given.shape == (C,) + MAP_SHAPE
        for n in range(C):
            image = int(np.argmax(label_roi[n, :C]))
            mirror = not np.array_equal(data[n], expected_image(dataset, image, 1, False))
            np.testing.assert_array_equal(given[n], maps[image, int(mirror)])
            sides.add(mirror)
    assert sides == {False, True}


@pytest.mark.parametrize('shape,dtype,overrides,message', [
    ((C - 1, 2) + MAP_SHAPE, np.float32, {},
     r'.*map_targets.npy has shape \(5, 2, 2, 3, 4\); .*list.txt needs \(6, 2, C, H, W\)'),
    ((C, 2, 12), np.float32, {}, r'.*has shape \(6, 2, 12\)'),
    ((C, 2) + MAP_SHAPE, np.float64, {}, r'.*map_targets.npy holds float64; it must be float32'),
    ((C, 2) + MAP_SHAPE, np.float32, dict(scale_factors=[1.0, 0.5]),
     r'.*at one scale: leave scale_factors empty'),
    ('inf', np.float32, {}, r'.*map_targets.npy: the map of line 4 of .*list.txt is not finite'),
    (None, np.float32, {}, r'cannot read .*missing.npy'),
])
def test_bad_map_targets_name_the_field_and_file(caffe, dataset, shape, dtype, overrides,
                                                 message):
    if shape is None:
        path = str(dataset / 'missing.npy')
    elif shape == 'inf':
        targets = np.zeros((C, 2) + MAP_SHAPE)
        targets[3, 0, 1, 2, 3] = np.inf
        path = map_targets_file(dataset, targets)
    else:
        path = map_targets_file(dataset, np.zeros(shape), dtype)
    with pytest.raises(RuntimeError, match='MultiLabelRoIDataLayer: map_targets: ' + message):
        make_net(caffe, dataset, caffe.TRAIN, map_targets=path, **overrides)


def test_a_deploy_net_takes_the_mean_of_the_train_net_beside_it(tmp_path):
    """The tools' inference (deploy.describe) uses the mean the net was trained with."""
    import shutil
    from mlic.paths import ROOT
    from mlic import deploy
    from mlic.preprocess import DEFAULT_MEAN_BGR
    deploy_path = str(tmp_path / 'student_deploy.prototxt')
    shutil.copy(os.path.join(ROOT, 'prototxt', 'small', 'kd', 'student_deploy.prototxt'),
                deploy_path)
    assert deploy.describe(deploy_path)['mean_value'] == list(DEFAULT_MEAN_BGR)
    (tmp_path / 'student_train.prototxt').write_text(net_text(tmp_path, mean_value=[1.5, 2, 99]))
    assert deploy.describe(deploy_path)['mean_value'] == [1.5, 2.0, 99.0]
