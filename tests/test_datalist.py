"""The datalist reader and validator: original lines load unchanged (what the original accepts
is accepted with one warning), short lines stay short, long lines are cut to their best-scoring
proposals, every unusable line is named with its field, every unusable image with its reason,
and the reader streams into compact arrays with the same entries as a plain reading."""
import logging
import os
import re
import subprocess
import sys

import cv2
import numpy as np
import pytest

from mlic.datalist import (Datalist, DatalistError, PADDING_ROW, check_datalist, check_images,
                           format_line, scan_datalist, validate_datalist)
from mlic.paths import ROOT

C = 3
SIZE = 100  # images are resized to SIZE x SIZE; boxes must lie in [0, SIZE - 1]
GOOD_BOXES = '0 0 10 10 0.5 20 30 99 99 0.9'


def write(tmp_path, lines, name='list.txt'):
    path = tmp_path / name
    path.write_text(''.join(line + '\n' for line in lines))
    return str(path)


def images(tmp_path, *names):
    """Small real PNG files."""
    pixels = np.random.RandomState(0).randint(0, 256, (12, 16, 3)).astype(np.uint8)
    for name in names:
        cv2.imwrite(str(tmp_path / name), pixels)


def test_original_lines_load_unchanged(tmp_path):
    proposals = np.array([[0, 0, 10, 10, 0.5], [20, 30, 99, 99, 0.25]], dtype=np.float32)
    path = write(tmp_path, [format_line('a.jpg', [1, 0, -1], proposals),
                            format_line('b.jpg', [0, 1, 0], proposals[::-1])])
    datalist = Datalist(path, C, bbox_num=2)
    assert len(datalist) == 2 and datalist.lines_cut == 0
    first = datalist[0]
    assert first.image_path == 'a.jpg' and first.line_number == 1
    np.testing.assert_array_equal(first.labels, [1, 0, -1])
    assert first.labels.dtype == np.float32 and first.proposals.shape == (2, 5)
    np.testing.assert_array_equal(first.proposals, proposals)
    np.testing.assert_array_equal(datalist[1].proposals, proposals[::-1])


def test_original_padded_lines_load(tmp_path):
    """A line padded to bbox_num the original way (sentinel rows) is good as it is."""
    path = write(tmp_path, ['a.jpg 1 0 0 ' + GOOD_BOXES + ' -1 -1 -1 -1 -1'])
    assert validate_datalist(path, C, SIZE, SIZE) == []
    np.testing.assert_array_equal(Datalist(path, C, 3)[0].proposals[2], PADDING_ROW)


def test_short_lines_stay_short_for_the_data_layer_to_pad(tmp_path):
    path = write(tmp_path, ['a.jpg 1 0 0 ' + GOOD_BOXES])
    datalist = Datalist(path, C, bbox_num=500)
    assert datalist[0].proposals.shape == (2, 5) and datalist.lines_cut == 0


def test_long_lines_keep_their_best_scoring_proposals_logged_once(tmp_path, caplog):
    scores = [0.3, 0.9, 0.1, 0.8]
    boxes = ' '.join('%d 0 %d 5 %g' % (i, i + 1, s) for i, s in enumerate(scores))
    path = write(tmp_path, ['a.jpg 1 0 0 ' + boxes, 'b.jpg 0 1 0 ' + boxes,
                            'c.jpg 0 0 1 ' + GOOD_BOXES])
    with caplog.at_level(logging.WARNING):
        datalist = Datalist(path, C, bbox_num=2)
    assert datalist.lines_cut == 2
    # The two best (0.9 at x1 = 1, 0.8 at x1 = 3) in their original order.
    np.testing.assert_array_almost_equal(datalist[0].proposals,
                                         [[1, 0, 2, 5, 0.9], [3, 0, 4, 5, 0.8]])
    assert datalist[2].proposals.shape == (2, 5)
    cut_messages = [r.getMessage() for r in caplog.records if 'bbox_num' in r.getMessage()]
    assert len(cut_messages) == 1
    assert '2 of 3 lines' in cut_messages[0]


# One malformed line each: (lines of the file, line number, field, reason pattern).
MALFORMED = [
    ('too_few_numbers', ['a.jpg 1 0'], 1, 'fields', r'2 numbers after the image path'),
    ('not_c_plus_5k', ['a.jpg 1 0 0 0 0 10 10'], 1, 'fields', r'7 numbers .* C \+ 5k'),
    ('label_not_a_number', ['a.jpg 1 yes 0 ' + GOOD_BOXES], 1, r'labels\[1\]',
     r"'yes' is not a number"),
    ('box_not_a_number', ['a.jpg 1 0 0 0 0 1O 10 0.5'], 1, r'proposals\[0\]\.x2',
     r"'1O' is not a number"),
    ('nan_label', ['a.jpg 1 nan 0 ' + GOOD_BOXES], 1, r'labels\[1\]', r'nan is not finite'),
    ('inf_score', ['a.jpg 1 0 0 0 0 10 10 inf'], 1, r'proposals\[0\]\.s', r'inf is not finite'),
    ('label_two', ['a.jpg 2 0 0 ' + GOOD_BOXES], 1, r'labels\[0\]',
     r'2 is not 0, 1 or -1 \(ignore\)'),
    ('label_fraction', ['a.jpg 0.5 0 0 ' + GOOD_BOXES], 1, r'labels\[0\]', r'0\.5 is not 0, 1'),
    ('padding_not_sentinel', ['a.jpg 1 0 0 ' + GOOD_BOXES + ' -1 0 5 5 0.3'], 1,
     r'proposals\[2\]', r'must be exactly -1 -1 -1 -1 -1, got -1 0 5 5 0.3'),
    ('no_real_proposal', ['a.jpg 1 0 0 -1 -1 -1 -1 -1'], 1, 'proposals', r'none that is real'),
    ('missing_image', ['a.jpg 1 0 0 ' + GOOD_BOXES, 'gone.jpg 1 0 0 ' + GOOD_BOXES], 2, 'image',
     r'gone\.jpg: does not exist'),
    ('empty_file', ['', '  '], 1, 'datalist', r'empty file'),
    ('comment_line', ['# image labels boxes', 'a.jpg 1 0 0 ' + GOOD_BOXES], 1, 'line',
     r'a comment \(starts with #\); datalists have no comments'),
    ('path_with_space', ['my photo.jpg 1 0 0 ' + GOOD_BOXES], 1, 'image',
     r"the path 'my photo.jpg' contains white space"),
    ('tab_separated_bad_count', ['a.jpg\t1\t0\t0\t1'], 1, 'fields', r'4 numbers'),
    ('count_fits_another_c', ['a.jpg 1 0 0 1 ' + GOOD_BOXES], 1, 'fields',
     r'14 numbers .*its first 6 numbers look like labels .* C = 4 would fit the line: is C '
     r'right\?'),
    ('fewer_labels_than_c', ['a.jpg 1 0 ' + GOOD_BOXES + ' 5 5 9 9 1'], 1, 'fields',
     r'17 numbers .*its first 4 numbers look like labels .* C = 2 would fit'),
]


@pytest.mark.parametrize('lines,line_number,field,reason',
                         [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED])
def test_malformed_line_is_named_with_field_and_reason(tmp_path, lines, line_number, field,
                                                       reason):
    images(tmp_path, 'a.jpg', 'b.jpg')
    path = write(tmp_path, lines)
    problems = validate_datalist(path, C, SIZE, SIZE, str(tmp_path))
    pattern = '^%s:%d: %s: .*%s' % (re.escape(path), line_number, field, reason)
    assert any(re.search(pattern, p) for p in problems), problems
    with pytest.raises(DatalistError, match=pattern.lstrip('^')):
        check_datalist(path, C, SIZE, SIZE, str(tmp_path))


def test_unreadable_datalist_file(tmp_path):
    missing = str(tmp_path / 'nope.txt')
    assert validate_datalist(missing, C) == [missing + ':0: file: does not exist']
    assert validate_datalist(str(tmp_path), C) == [str(tmp_path) + ':0: file: is a directory']


def test_a_fifo_as_datalist_is_refused_without_waiting(tmp_path):
    """Opening a FIFO for reading waits for a writer for ever; the validator must not."""
    fifo = str(tmp_path / 'list.txt')
    os.mkfifo(fifo)
    tool = os.path.join(ROOT, 'tools', 'validate_datalist.py')
    done = subprocess.run([sys.executable, tool, fifo, '--att-num', '3'], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 1
    assert done.stdout == fifo + ':0: file: is not a regular file (a FIFO)\n'


def test_a_byte_that_is_not_utf8_is_named_with_its_line(tmp_path):
    path = tmp_path / 'list.txt'
    path.write_bytes(('a.jpg 1 0 0 %s\n' % GOOD_BOXES).encode() + b'caf\xe9.jpg 1 0 0 '
                     + GOOD_BOXES.encode() + b'\n')
    assert validate_datalist(str(path), C) == [
        '%s:2: line: byte 0xe9 at column 4 is not UTF-8 text (datalists are UTF-8; re-save the '
        'file as UTF-8)' % path]


def test_a_directory_and_a_symlink_loop_as_images_have_their_own_reason(tmp_path):
    (tmp_path / 'folder.jpg').mkdir()
    os.symlink('loop.jpg', str(tmp_path / 'loop.jpg'))
    os.symlink('gone.png', str(tmp_path / 'dangling.jpg'))
    path = write(tmp_path, ['%s 1 0 0 %s' % (name, GOOD_BOXES)
                            for name in ('folder.jpg', 'loop.jpg', 'dangling.jpg')])
    root = str(tmp_path)
    assert validate_datalist(path, C, SIZE, SIZE, root) == [
        '%s:1: image: %s/folder.jpg: is a directory' % (path, root),
        '%s:2: image: %s/loop.jpg: is a symbolic link loop' % (path, root),
        '%s:3: image: %s/dangling.jpg: is a symbolic link to gone.png, which does not exist'
        % (path, root)]


def test_label_like_proposals_on_most_lines_are_refused_as_a_wrong_c(tmp_path):
    """A 10-label line read with C = 5 would give the proposal `0 0 1 0 1` without a word."""
    labels = '1 0 0 1 0 0 0 1 0 1'
    path = write(tmp_path, ['a.jpg %s %s' % (labels, GOOD_BOXES),
                            'b.jpg %s %s' % (labels, GOOD_BOXES)])
    problems = validate_datalist(path, 5, SIZE, SIZE)
    assert problems == ['%s:%d: labels: the line starts with 12 values that look like labels '
                        '(0, 1, -1) but C = 5, so its first proposal would be read from labels; '
                        'is C right? (C = 10 fits the line)' % (path, n) for n in (1, 2)]
    assert validate_datalist(path, 10, SIZE, SIZE) == []


def test_a_label_that_is_a_box_coordinate_suggests_the_c_that_fits(tmp_path):
    path = write(tmp_path, ['a.jpg 1 0 ' + GOOD_BOXES])  # 2 labels, read with C = 7
    assert validate_datalist(path, 7)[0] == (
        '%s:1: labels[4]: 10 is not 0, 1 or -1 (ignore); the line has 4 label-like numbers '
        '(0, 1, -1) before it, and C = 2 would fit the line: is C right?' % path)


def test_a_few_corner_boxes_of_0_and_1_are_accepted_and_counted(tmp_path):
    lines = ['a.jpg 1 0 0 0 0 1 1 1 ' + GOOD_BOXES] + [
        '%s.jpg 0 1 0 %s' % (name, GOOD_BOXES) for name in 'bcd']
    entries, problems = scan_datalist(write(tmp_path, lines), C, SIZE, SIZE)
    assert problems == [] and len(entries) == 4
    assert entries.quirks.lines('label_like') == 1
    assert '1 line (first: line 1): more 0/1 values at the start than the C = 3 labels' \
        in entries.warning


def test_every_bad_line_is_reported_and_good_lines_are_not(tmp_path):
    images(tmp_path, 'a.jpg', 'b.jpg', 'c.jpg', 'd.jpg', 'e.jpg')
    path = write(tmp_path, ['a.jpg 1 0 0 ' + GOOD_BOXES,
                            'b.jpg 1 0',
                            'c.jpg 1 0 0 ' + GOOD_BOXES,
                            'd.jpg 1 0 7 ' + GOOD_BOXES,
                            '',
                            'e.jpg 1 0 0 0 0 10 10 nan'])
    problems = validate_datalist(path, C, SIZE, SIZE, str(tmp_path))
    assert [int(p.split(':')[1]) for p in problems] == [2, 4, 6]


def test_many_problems_on_one_line_are_summarised(tmp_path):
    boxes = ' '.join(['-1 0 5 5 1'] * 20)
    path = write(tmp_path, ['a.jpg 1 0 0 ' + boxes])
    problems = validate_datalist(path, C, SIZE, SIZE)
    assert len(problems) == 4
    assert problems[-1].endswith('line: and 18 more problems on this line')


def test_cli_exit_status_and_output(tmp_path):
    images(tmp_path, 'a.jpg')
    good = write(tmp_path, ['a.jpg 1 0 0 ' + GOOD_BOXES], 'good.txt')
    bad = write(tmp_path, ['a.jpg 1 0 0 ' + GOOD_BOXES, 'a.jpg 1 0', 'b.jpg 1 0 0 ' + GOOD_BOXES],
                'bad.txt')
    tool = os.path.join(ROOT, 'tools', 'validate_datalist.py')
    common = ['--att-num', '3', '--bbox-num', '4', '--new-width', '100', '--new-height', '100',
              '--root-folder', str(tmp_path)]
    ok = subprocess.run([sys.executable, tool, good] + common, capture_output=True, text=True)
    assert ok.returncode == 0 and ok.stdout == ''
    assert '1 images, good (every image decoded); with bbox_num 4, 1 lines are padded' \
        in ok.stderr
    failed = subprocess.run([sys.executable, tool, bad] + common, capture_output=True, text=True)
    assert failed.returncode == 1
    assert failed.stdout.splitlines() == [
        bad + ':2: fields: 2 numbers after the image path; expected C + 5k (C = 3 labels, then k '
              'proposals of 5: x1 y1 x2 y2 s); its first 2 numbers look like labels (0, 1, -1), '
              'and C = 2 would fit the line: is C right?',
        bad + ':3: image: %s: does not exist' % os.path.join(str(tmp_path), 'b.jpg')]
    assert '2 bad lines' in failed.stderr


# --- What the original accepts: taken, counted in one warning --------------------------------

# (lines, kind counted, warning text, the first line's proposals as stored)
ACCEPTED = [
    ('corner_at_the_size', ['a.jpg 1 0 0 0 0 100 10 1'], 'clipped',
     '1 box on 1 line (first: line 1): corners outside the 100x100 resized image, clipped',
     [[0, 0, 99, 10, 1]]),
    ('fractional_corner_past_the_last_pixel', ['a.jpg 1 0 0 0 0 99.4 99.4 1'], 'clipped',
     '1 box on 1 line', [[0, 0, 99, 99, 1]]),
    ('negative_y_on_a_real_box', ['a.jpg 1 0 0 0 -2 10 10 1 5 5 8 120 1'], 'clipped',
     '2 boxes on 1 line', [[0, 0, 10, 10, 1], [5, 5, 8, 99, 1]]),
    ('x1_after_x2', ['a.jpg 1 0 0 30 0 10 10 1'], 'inverted',
     '1 box on 1 line (first: line 1): x1 > x2 or y1 > y2, kept', [[30, 0, 10, 10, 1]]),
    ('y1_after_y2', ['a.jpg 1 0 0 0 30 10 10 1'], 'inverted', 'x1 > x2 or y1 > y2, kept',
     [[0, 30, 10, 10, 1]]),
    ('duplicate_image', ['a.jpg 1 0 0 0 0 10 10 1', 'b.jpg 1 0 0 ' + GOOD_BOXES,
                         'a.jpg 0 1 0 ' + GOOD_BOXES], 'duplicate',
     '1 line (first: line 3): an image listed again, kept', [[0, 0, 10, 10, 1]]),
]


@pytest.mark.parametrize('lines,kind,warning,stored', [a[1:] for a in ACCEPTED],
                         ids=[a[0] for a in ACCEPTED])
def test_what_the_original_accepts_is_accepted_with_a_warning(tmp_path, caplog, lines, kind,
                                                              warning, stored):
    images(tmp_path, 'a.jpg', 'b.jpg')
    path = write(tmp_path, lines)
    assert validate_datalist(path, C, SIZE, SIZE, str(tmp_path)) == []
    with caplog.at_level(logging.WARNING):
        datalist = Datalist(path, C, 4, SIZE, SIZE, str(tmp_path))
    assert len(datalist) == len(lines)
    assert list(datalist.quirks.counts) == [kind]
    np.testing.assert_array_equal(datalist[0].proposals, np.float32(stored))
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1 and warning in messages[0], messages
    assert messages[0].startswith(path + ': accepted as the original does: ')


def test_one_warning_counts_every_kind(tmp_path, caplog):
    path = write(tmp_path, ['a.jpg 1 0 0 0 0 100 100 1 0 0 100 5 1',
                            'b.jpg 1 0 0 30 0 10 10 1 0 30 5 10 1 0 0 100 5 1',
                            'a.jpg 1 0 0 ' + GOOD_BOXES])
    with caplog.at_level(logging.WARNING):
        Datalist(path, C, 4, SIZE, SIZE)
    assert [r.getMessage() for r in caplog.records] == [
        '%s: accepted as the original does: 3 boxes on 2 lines (first: line 1): corners '
        'outside the 100x100 resized image, clipped to it; 2 boxes on 1 line (first: line 2): '
        'x1 > x2 or y1 > y2, kept (the RoI layers give such a box one pixel); 1 line (first: '
        'line 3): an image listed again, kept (it is drawn twice as often)' % path]


# --- Streaming into compact arrays -----------------------------------------------------------

def plain_reading(path, num_classes):
    """The entries as a plain reader makes them: float() of every field, float32 arrays."""
    entries = []
    with open(path) as f:
        for number, line in enumerate(f, 1):
            tokens = line.split()
            if tokens:
                values = np.array([float(t) for t in tokens[1:]])
                entries.append((tokens[0], values[:num_classes].astype(np.float32),
                                values[num_classes:].astype(np.float32).reshape(-1, 5), number))
    return entries


def test_streaming_compact_reading_gives_the_entries_of_a_plain_reading(tmp_path):
    rng = np.random.RandomState(3)
    lines = []
    for i in range(300):
        count = rng.randint(1, 40)
        x1, y1 = rng.uniform(0, 50, count), rng.uniform(0, 50, count)
        boxes = np.stack([x1, y1, x1 + rng.uniform(0, 49, count), y1 + rng.uniform(0, 49, count),
                          rng.rand(count)], axis=1)
        # Scores and corners with many digits: float32 rounding of each field must match.
        fields = ['%.9g' % v for v in boxes.reshape(-1)]
        separator = '\t' if i % 7 == 0 else (' ' * (1 + i % 2))
        labels = [str(v) for v in rng.choice([0, 1, -1], C)]
        lines.append(separator.join(['img%d.jpg' % i] + labels + fields))
        if i % 50 == 0:
            lines.append('')
    path = write(tmp_path, lines)
    expected = plain_reading(path, C)
    entries, problems = scan_datalist(path, C, SIZE, SIZE)
    assert problems == [] and entries.warning is None
    assert entries.proposals.dtype == np.float32 and entries.proposals.ndim == 2
    assert entries.offsets[-1] == len(entries.proposals) == sum(len(e[2]) for e in expected)
    assert len(entries) == len(expected)
    for got, (image, labels, proposals, number) in zip(entries, expected):
        assert got.image_path == image and got.line_number == number
        np.testing.assert_array_equal(got.labels, labels)
        np.testing.assert_array_equal(got.proposals, proposals)


# --- Images decoded up front -----------------------------------------------------------------

def bad_images(folder):
    """{name: reason pattern} of files the data layer could not use, written into folder."""
    pixels = np.random.RandomState(1).randint(0, 256, (40, 50, 3)).astype(np.uint8)
    cv2.imwrite(str(folder / 'good.png'), pixels)
    cv2.imwrite(str(folder / 'good.jpg'), pixels)
    png = (folder / 'good.png').read_bytes()
    jpeg = (folder / 'good.jpg').read_bytes()
    (folder / 'empty.jpg').write_bytes(b'')
    (folder / 'cut.png').write_bytes(png[:len(png) // 2])
    (folder / 'cut.jpg').write_bytes(jpeg[:len(jpeg) // 2])
    (folder / 'text.jpg').write_text('this is not a JPEG\n')
    (folder / 'folder.jpg').mkdir()
    return {'empty.jpg': r'is an empty file \(0 bytes\)',
            'cut.png': r'truncated PNG \(no IEND chunk\)',
            'cut.jpg': r'truncated JPEG \(no end-of-image marker\)',
            'text.jpg': r'OpenCV cannot decode it',
            'folder.jpg': r'is a directory'}


def test_the_validator_decodes_every_image_and_names_each_bad_one(tmp_path):
    reasons = bad_images(tmp_path)
    names = ['good.png', 'good.jpg'] + list(reasons)
    path = write(tmp_path, ['%s 1 0 0 %s' % (name, GOOD_BOXES) for name in names])
    tool = os.path.join(ROOT, 'tools', 'validate_datalist.py')
    done = subprocess.run([sys.executable, tool, path, '--att-num', '3', '--new-width', '100',
                           '--new-height', '100', '--root-folder', str(tmp_path) + '/',
                           '--workers', '2'], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    printed = done.stdout.splitlines()
    assert len(printed) == len(reasons), printed
    for line_number, name in enumerate(names[2:], 3):
        pattern = r'^%s:%d: image: %s: %s' % (re.escape(path), line_number,
                                               re.escape(str(tmp_path / name)), reasons[name])
        assert any(re.match(pattern, p) for p in printed), (pattern, printed)
    assert 'images decoded 5/5, 3 bad' in done.stderr  # the two caught before decoding aside
    skipped = subprocess.run([sys.executable, tool, path, '--att-num', '3', '--new-width', '100',
                              '--new-height', '100', '--root-folder', str(tmp_path) + '/',
                              '--no-decode'], capture_output=True, text=True, timeout=120)
    assert len(skipped.stdout.splitlines()) == 2  # the empty file and the directory only


def test_an_image_without_read_permission_is_named(tmp_path):
    """Run as an unprivileged user when the tests run as root (root reads any file)."""
    import multiprocessing
    import tempfile
    folder = tempfile.mkdtemp(prefix='mlic-perm-')
    try:
        os.chmod(folder, 0o755)
        image = os.path.join(folder, 'secret.png')
        cv2.imwrite(image, np.zeros((8, 8, 3), np.uint8))
        os.chmod(image, 0o000)

        def check(queue):
            if os.getuid() == 0:
                os.setgid(65534)
                os.setuid(65534)
            from mlic.preprocess import check_image
            queue.put(check_image(image))
        context = multiprocessing.get_context('fork')
        queue = context.Queue()
        child = context.Process(target=check, args=(queue,))
        child.start()
        reason = queue.get(timeout=60)
        child.join()
        assert reason == 'is not readable (permission denied)'
    finally:
        os.chmod(image, 0o644)
        import shutil
        shutil.rmtree(folder)


def big_header_jpeg(path, width, height):
    """A small JPEG whose header claims width x height (a decompression bomb)."""
    import struct
    ok, encoded = cv2.imencode('.jpg', np.full((16, 16, 3), 128, np.uint8))
    data = bytearray(encoded.tobytes())
    sof = data.index(b'\xff\xc0')
    data[sof + 5:sof + 9] = struct.pack('>HH', height, width)
    path.write_bytes(bytes(data))


def test_images_above_the_pixel_limit_are_refused_before_decoding(tmp_path):
    big_header_jpeg(tmp_path / 'bomb.jpg', 20000, 20000)
    images(tmp_path, 'small.png')  # 16 x 12
    path = write(tmp_path, ['bomb.jpg 1 0 0 ' + GOOD_BOXES, 'small.png 1 0 0 ' + GOOD_BOXES])
    entries, problems = scan_datalist(path, C, SIZE, SIZE, str(tmp_path))
    assert problems == []
    assert check_images(entries, str(tmp_path), workers=1) == [
        '%s:1: image: %s: 20000 x 20000 pixels is more than the limit of 50000000 (50 '
        'megapixels); raise max_pixels if the image is meant to be that large'
        % (path, tmp_path / 'bomb.jpg')]
    low = check_images(entries, str(tmp_path), max_pixels=100, workers=1)
    assert [p.split(': ')[0] for p in low] == ['%s:1' % path, '%s:2' % path]
    assert '16 x 12 pixels is more than the limit of 100' in low[1]


def test_the_pixel_limits_of_validator_and_data_layer_agree():
    import caffe_layers  # noqa: F401
    import mlic_layers_pb2
    from mlic.preprocess import DEFAULT_MAX_PIXELS
    assert mlic_layers_pb2.MultiLabelRoIDataParameter().max_pixels == DEFAULT_MAX_PIXELS


def test_the_class_count_comes_from_the_classes_file_beside_the_list(tmp_path):
    images(tmp_path, 'a.jpg')
    path = write(tmp_path, ['a.jpg 1 0 0 ' + GOOD_BOXES])
    tool = os.path.join(ROOT, 'tools', 'validate_datalist.py')
    args = [sys.executable, tool, path, '--new-width', '100', '--new-height', '100',
            '--root-folder', str(tmp_path)]
    missing = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert missing.returncode != 0 and 'give --att-num' in missing.stderr
    (tmp_path / 'list.txt.classes').write_text('cat\ndog\nbird\n')
    found = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert found.returncode == 0, found.stdout + found.stderr
    assert '%s: 3 classes (from %s.classes)' % (path, path) in found.stderr
    (tmp_path / 'list.txt.classes').write_text('cat\ndog\n')
    wrong = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert wrong.returncode == 1 and ':1: fields: ' in wrong.stdout


def test_the_compact_arrays_grow_past_their_first_size():
    from mlic.datalist import Growing
    rows = Growing(5, capacity=4)
    for start in range(0, 100000, 1000):
        rows.extend(np.arange(start * 5, (start + 1000) * 5, dtype=np.float32).reshape(-1, 5))
    array = rows.finish()
    assert array.shape == (100000, 5)
    np.testing.assert_array_equal(array.reshape(-1), np.arange(500000, dtype=np.float32))


def test_the_validator_prints_the_one_warning_and_accepts_the_list(tmp_path):
    images(tmp_path, 'a.jpg')
    path = write(tmp_path, ['a.jpg 1 0 0 0 0 100 10 1', 'a.jpg 0 1 0 ' + GOOD_BOXES])
    tool = os.path.join(ROOT, 'tools', 'validate_datalist.py')
    done = subprocess.run([sys.executable, tool, path, '--att-num', '3', '--new-width', '100',
                           '--new-height', '100', '--root-folder', str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout == ''
    warnings = [line for line in done.stderr.splitlines() if line.startswith('warning: ')]
    assert warnings == ['warning: %s: accepted as the original does: 1 box on 1 line (first: '
                        'line 1): corners outside the 100x100 resized image, clipped to it; 1 '
                        'line (first: line 2): an image listed again, kept (it is drawn twice '
                        'as often)' % path]
    assert '2 images, good' in done.stderr
