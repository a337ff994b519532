"""Proposals: inside the resized image, scored, at most bbox_num, cached, reproducible."""
import io
import os

import cv2
import numpy as np
import pytest

from conftest import load_tool
from mlic import proposals, synthetic
from mlic.datalist import is_padding, validate_datalist

compute_proposals = load_tool('compute_proposals')
make_datalist = load_tool('make_datalist')

NEW_WIDTH, NEW_HEIGHT, BBOX_NUM, NUM_CLASSES = 200, 150, 30, 5


@pytest.fixture(scope='module')
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp('proposals_data')
    return synthetic.generate(str(out), num_classes=NUM_CLASSES, image_size=96, num_train=6,
                              num_test=1, seed=11)


def read_output(path):
    lines = []
    with open(path) as f:
        for line in f:
            fields = line.split()
            numbers = np.array([float(v) for v in fields[1:]])
            assert (len(numbers) - NUM_CLASSES) % 5 == 0
            lines.append((fields[0], numbers[:NUM_CLASSES],
                          numbers[NUM_CLASSES:].reshape(-1, 5)))
    return lines


def check_proposals(dataset, out):
    given = open(dataset['train_datalist']).read().split('\n')[:-1]
    lines = read_output(out)
    assert len(lines) == len(given)
    for (image, labels, boxes), source in zip(lines, given):
        assert source.split() == [image] + ['%d' % v for v in labels]
        assert 1 <= len(boxes) <= BBOX_NUM
        assert np.isfinite(boxes).all()
        assert (boxes[:, 0] >= 0).all() and (boxes[:, 1] >= 0).all()
        assert (boxes[:, 0] <= boxes[:, 2]).all() and (boxes[:, 1] <= boxes[:, 3]).all()
        assert (boxes[:, 2] <= NEW_WIDTH - 1).all() and (boxes[:, 3] <= NEW_HEIGHT - 1).all()
        assert (boxes[:, :4] == np.round(boxes[:, :4])).all()
        assert (np.diff(boxes[:, 4]) <= 0).all()
    assert open(out + '.classes').read() == open(dataset['train_datalist'] + '.classes').read()
    # The datalist reader of the data layer finds nothing wrong, images included.
    assert validate_datalist(out, NUM_CLASSES, NEW_WIDTH, NEW_HEIGHT, root_folder='') == []
    return lines


@pytest.mark.parametrize('method', proposals.METHODS)
def test_proposals_inside_the_resized_image_and_cached(dataset, tmp_path, method, capsys):
    settings = proposals.proposal_settings(method, max_boxes=BBOX_NUM, max_side=96)
    cache, out = str(tmp_path / 'cache'), str(tmp_path / 'out.txt')
    run = lambda workers: proposals.complete_datalist(
        dataset['train_datalist'], out, settings, cache, NEW_WIDTH, NEW_HEIGHT, BBOX_NUM,
        workers=workers)
    counts = run(2)
    assert counts['images'] == 6 and counts['computed'] == 6
    first = open(out).read()
    lines = check_proposals(dataset, out)
    assert '6/6' in capsys.readouterr().err
    again = run(1)
    assert again['computed'] == 0 and again['images'] == 6
    assert open(out).read() == first
    # A lost cache file is recomputed alone; the output does not change.
    cached = [os.path.join(d, f) for d, _, files in os.walk(cache) for f in files]
    assert len(cached) == 6
    os.remove(cached[0])
    assert run(1)['computed'] == 1
    assert open(out).read() == first
    # An image rewritten at the same path (a regenerated dataset) gets its own proposals.
    image_file = first.split()[0]
    original = open(image_file, 'rb').read()
    try:
        cv2.imwrite(image_file, np.ascontiguousarray(cv2.imread(image_file)[::-1, ::-1]))
        assert run(1)['computed'] == 1
        assert open(out).read() != first
    finally:
        open(image_file, 'wb').write(original)
    assert run(1)['computed'] == 0 and open(out).read() == first
    # The scores are the method's: EdgeBoxes' own, or 1 - rank / count.
    scores = np.concatenate([boxes[:, 4] for _, _, boxes in lines])
    assert (scores > 0).all() and (scores <= 1).all()
    if method == 'selective_search':
        assert all(boxes[0, 4] == 1 for _, _, boxes in lines)


def test_fresh_cache_gives_the_same_proposals_in_this_process_or_spawned_workers(dataset,
                                                                                 tmp_path):
    for method in proposals.METHODS:
        settings = proposals.proposal_settings(method, max_boxes=BBOX_NUM, max_side=96)
        outputs = []
        for name, workers in (('a', 1), ('b', 2)):
            out = str(tmp_path / (method + name))
            proposals.complete_datalist(dataset['train_datalist'], out, settings,
                                        str(tmp_path / ('cache' + name)), NEW_WIDTH,
                                        NEW_HEIGHT, BBOX_NUM, progress=False, workers=workers)
            outputs.append(open(out).read())
        assert outputs[0] == outputs[1]


def test_cli_pads_to_exactly_bbox_num(dataset, tmp_path):
    out = str(tmp_path / 'padded.txt')
    compute_proposals.main([dataset['train_datalist'], out, '--bbox-num', '400', '--new-size',
                            str(NEW_WIDTH), str(NEW_HEIGHT), '--cache', str(tmp_path / 'c'),
                            '--workers', '1', '--pad', '--max-side', '96',
                            '--method', 'selective_search'])
    padded = 0
    for _, _, boxes in read_output(out):
        assert len(boxes) == 400
        padding = is_padding(boxes)
        real = np.count_nonzero(~padding)
        assert real >= 1 and not padding[:real].any() and (boxes[real:] == -1).all()
        padded += real < 400
    assert padded > 0
    assert validate_datalist(out, NUM_CLASSES, NEW_WIDTH, NEW_HEIGHT) == []


def test_to_resized_maps_pixel_spans():
    boxes = np.array([[0, 0, 99, 49, 0.5], [10, 20, 19, 29, 1.0], [99, 49, 99, 49, 0.1]])
    resized = proposals.to_resized(boxes, (100, 50), 200, 25)
    np.testing.assert_array_equal(resized[:, :4], [[0, 0, 199, 24], [20, 10, 39, 14],
                                                   [198, 24, 199, 24]])
    np.testing.assert_array_equal(resized[:, 4], np.float32(boxes[:, 4]))
    np.testing.assert_array_equal(proposals.to_resized(boxes, (100, 50), 100, 50),
                                  np.float32(boxes))


def test_gradient_edges_are_thin_and_oriented():
    image = np.zeros((40, 40, 3), np.uint8)
    image[:, 20:] = 200
    edges, orientation = proposals.gradient_edges(image)
    assert edges.dtype == np.float32 and edges.min() >= 0 and edges.max() == 1
    row = edges[20]
    assert np.count_nonzero(row > 0.5) <= 2 and row[19:21].max() == 1
    # A vertical edge's normal is horizontal.
    assert abs(np.sin(orientation[20, 19:21])).max() < 1e-3


def test_errors_name_the_datalist_line_or_setting(dataset, tmp_path):
    bad = tmp_path / 'bad.txt'
    bad.write_text(open(dataset['train_datalist']).read().split('\n')[0] + '\n'
                   + str(tmp_path / 'none.png') + ' 1 0 0 0 0\n')
    (tmp_path / 'bad.txt.classes').write_text('a\nb\nc\nd\ne\n')
    settings = proposals.proposal_settings('edgeboxes', max_boxes=5)
    with pytest.raises(IOError, match=r'bad.txt line 2: cannot read image .*none.png'):
        proposals.complete_datalist(str(bad), str(tmp_path / 'o.txt'), settings,
                                    str(tmp_path / 'c'), progress=False)
    for text, message in (('x.png 1 0 0\n', ':1: fields: 3 numbers after the image path'),
                          ('x.png 1 0 0 2 0\n', ':1: labels.3.: 2 is not 0, 1 or -1')):
        bad.write_text(text)
        with pytest.raises(ValueError, match='bad.txt' + message):
            proposals.complete_datalist(str(bad), str(tmp_path / 'o.txt'), settings,
                                        str(tmp_path / 'c'), progress=False)
    with pytest.raises(ValueError, match='edge model file .*missing.yml.gz does not exist'):
        proposals.proposal_settings('edgeboxes', edge_model=str(tmp_path / 'missing.yml.gz'))
    with pytest.raises(ValueError, match="unknown proposal method 'mcg'"):
        proposals.proposal_settings('mcg')


def test_relative_image_paths_not_found_name_the_resolved_path_and_root_folder(dataset,
                                                                              tmp_path,
                                                                              monkeypatch,
                                                                              capsys):
    image = open(dataset['train_datalist']).readline().split()[0]
    relative = tmp_path / 'relative.txt'
    relative.write_text(os.path.basename(image) + ' 1 0 0 0 0\n')
    (tmp_path / 'relative.txt.classes').write_text('a\nb\nc\nd\ne\n')
    elsewhere = tmp_path / 'elsewhere'
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    args = [str(relative), str(tmp_path / 'out.txt'), '--cache', str(tmp_path / 'c'),
            '--workers', '1', '--max-side', '96']
    with pytest.raises(SystemExit) as exit_:
        compute_proposals.main(args)
    message = str(exit_.value.code)
    assert ('relative.txt line 1: cannot read image %s'
            % os.path.join(str(elsewhere), os.path.basename(image))) in message
    assert 'relative to the root folder, here %s' % elsewhere in message
    assert '--root-folder' in message
    # With the images' folder given, the same list goes through.
    compute_proposals.main(args + ['--root-folder', os.path.dirname(image)])
    assert 'wrote %s: 1 images' % (tmp_path / 'out.txt') in capsys.readouterr().out


def test_convert_then_proposals_in_one_command(dataset, tmp_path):
    image_dir = os.path.dirname(open(dataset['train_datalist']).readline().split()[0])
    (tmp_path / 'labels.csv').write_text('filename,labels\ntrain_000000.png,cat\n'
                                         'train_000001.png,cat;dog\n')
    labels_only, final = str(tmp_path / 'list.txt'), str(tmp_path / 'final.txt')
    make_datalist.main(['csv', '--csv', str(tmp_path / 'labels.csv'), '--images', image_dir,
                        '--path-prefix', '', labels_only, '--proposals', final,
                        '--root-folder', image_dir, '--bbox-num', '7', '--cache',
                        str(tmp_path / 'c'), '--workers', '1'])
    with open(final) as f:
        lines = [line.split() for line in f]
    assert [line[:3] for line in lines] == [['train_000000.png', '1', '0'],
                                            ['train_000001.png', '1', '1']]
    assert all(0 < len(line) - 3 <= 35 and (len(line) - 3) % 5 == 0 for line in lines)
    assert open(final + '.classes').read().split() == ['cat', 'dog']


def test_unreadable_cache_file_is_named(tmp_path):
    broken = tmp_path / 'x.npz'
    broken.write_bytes(b'not a zip')
    with pytest.raises(IOError, match='cache file .*x.npz is unreadable'):
        proposals.load_cached(str(broken))


def test_progress_in_a_log_file_is_one_line_per_tenth():
    stream = io.StringIO()
    bar = proposals.Progress(25, stream)
    for i in range(25):
        bar.update(cached=i < 5)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 10 and '\r' not in stream.getvalue()
    assert lines[-1].startswith('proposals [%s] 25/25 (5 cached)' % ('#' * 30))
