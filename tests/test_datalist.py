"""The datalist reader and validator: original lines load unchanged, short lines stay short, long
lines are cut to their best-scoring proposals, and every bad line is named with its field."""
import logging
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT
from mlic.datalist import (Datalist, DatalistError, PADDING_ROW, check_datalist, format_line,
                           validate_datalist)

C = 3
SIZE = 100  # images are resized to SIZE x SIZE; boxes must lie in [0, SIZE - 1]
GOOD_BOXES = '0 0 10 10 0.5 20 30 99 99 0.9'


def write(tmp_path, lines, name='list.txt'):
    path = tmp_path / name
    path.write_text(''.join(line + '\n' for line in lines))
    return str(path)


def images(tmp_path, *names):
    for name in names:
        (tmp_path / name).write_bytes(b'')


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
    ('box_right_of_image', ['a.jpg 1 0 0 0 0 100 10 1'], 1, r'proposals\[0\]\.x2',
     r'100 is outside the 100x100 resized image \(largest pixel 99\)'),
    ('box_below_image', ['a.jpg 1 0 0 0 0 10 10 1 5 5 8 120 1'], 1, r'proposals\[1\]\.y2',
     r'120 is outside'),
    ('x1_after_x2', ['a.jpg 1 0 0 30 0 10 10 1'], 1, r'proposals\[0\]', r'x1 30 > x2 10'),
    ('y1_after_y2', ['a.jpg 1 0 0 0 30 10 10 1'], 1, r'proposals\[0\]', r'y1 30 > y2 10'),
    ('negative_y_on_real_box', ['a.jpg 1 0 0 0 -2 10 10 1'], 1, r'proposals\[0\]\.y1',
     r'negative coordinate -2 on a non-padding row'),
    ('padding_not_sentinel', ['a.jpg 1 0 0 ' + GOOD_BOXES + ' -1 0 5 5 0.3'], 1,
     r'proposals\[2\]', r'must be exactly -1 -1 -1 -1 -1, got -1 0 5 5 0.3'),
    ('no_real_proposal', ['a.jpg 1 0 0 -1 -1 -1 -1 -1'], 1, 'proposals', r'none that is real'),
    ('duplicate_image', ['a.jpg 1 0 0 ' + GOOD_BOXES, 'b.jpg 1 0 0 ' + GOOD_BOXES,
                         'a.jpg 0 1 0 ' + GOOD_BOXES], 3, 'image',
     r'a\.jpg is a duplicate of line 1'),
    ('missing_image', ['a.jpg 1 0 0 ' + GOOD_BOXES, 'gone.jpg 1 0 0 ' + GOOD_BOXES], 2, 'image',
     r'gone\.jpg does not exist'),
    ('empty_file', ['', '  '], 1, 'datalist', r'empty file'),
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
    assert re.match(re.escape(missing) + r':0: file: cannot read', validate_datalist(missing, C)[0])


def test_every_bad_line_is_reported_and_good_lines_are_not(tmp_path):
    images(tmp_path, 'a.jpg', 'b.jpg', 'c.jpg', 'd.jpg', 'e.jpg')
    path = write(tmp_path, ['a.jpg 1 0 0 ' + GOOD_BOXES,
                            'b.jpg 1 0',
                            'c.jpg 1 0 0 ' + GOOD_BOXES,
                            'd.jpg 1 0 7 ' + GOOD_BOXES,
                            '',
                            'e.jpg 1 0 0 0 0 200 10 1'])
    problems = validate_datalist(path, C, SIZE, SIZE, str(tmp_path))
    assert [int(p.split(':')[1]) for p in problems] == [2, 4, 6]


def test_many_problems_on_one_line_are_summarised(tmp_path):
    boxes = ' '.join(['0 0 500 500 1'] * 20)
    path = write(tmp_path, ['a.jpg 1 0 0 ' + boxes])
    problems = validate_datalist(path, C, SIZE, SIZE)
    assert len(problems) == 4
    assert problems[-1].endswith('line: and 37 more problems on this line')


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
    assert '1 images, good; with bbox_num 4, 1 lines are padded' in ok.stderr
    failed = subprocess.run([sys.executable, tool, bad] + common, capture_output=True, text=True)
    assert failed.returncode == 1
    assert failed.stdout.splitlines() == [
        bad + ':2: fields: 2 numbers after the image path; expected C + 5k (C = 3 labels, then k '
              'proposals of 5: x1 y1 x2 y2 s)',
        bad + ':3: image: %s does not exist' % os.path.join(str(tmp_path), 'b.jpg')]
    assert '2 bad lines' in failed.stderr
