"""tools/evaluate.py and the file readers it uses."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import load_tool
from mlic import evaluation
from mlic.paths import ROOT

# The hand-worked example of test_evaluation.py: mAP 8/9, CP = CR = 1/3, OP = OR = 2/5.
SCORES = np.array([[0.9, 0.6, 0.2, 0.1],
                   [0.4, 0.7, 0.55, 0.2],
                   [0.8, 0.3, 0.1, 0.3]])
LABELS = [[1, 0, 0, 0], [1, 1, 0, 0], [0, 1, 0, 1]]
PROPOSALS = '0 0 9 9 1 5 5 20 20 0.5'  # two proposals: 10 numbers


@pytest.fixture
def inputs(tmp_path):
    datalist = tmp_path / 'val.txt'
    datalist.write_text(''.join('img%d.jpg %s %s\n' % (i, ' '.join(map(str, row)), PROPOSALS)
                                for i, row in enumerate(LABELS)))
    classes = tmp_path / 'classes.txt'
    classes.write_text('person\ndog\ncat\ncar\n')
    scores = tmp_path / 'scores.npy'
    np.save(str(scores), SCORES)
    return tmp_path, str(datalist), str(classes), str(scores)


def test_cli_prints_table_and_writes_json(inputs, capsys):
    tmp_path, datalist, classes, scores = inputs
    out_json = str(tmp_path / 'result.json')
    evaluate = load_tool('evaluate')
    assert evaluate.main(['--scores', scores, '--datalist', datalist, '--classes', classes,
                          '--per-class', '--json', out_json, '--name', 'Student']) == 0
    printed = capsys.readouterr().out
    assert '3 images, 4 classes (1 without positives' in printed
    assert '| Student | 88.9 | 33.3 | 33.3 | 33.3 | 40.0 | 40.0 | 40.0 |' in printed
    assert '| cat | n/a |' in printed and '| car | 100.0 |' in printed
    saved = json.load(open(out_json))
    assert saved['mAP'] == pytest.approx(8 / 9.)
    assert saved['class_names'] == ['person', 'dog', 'cat', 'car']
    assert saved['per_class_ap'][2] is None


def test_cli_as_a_program_with_csv_by_path_and_logits(inputs):
    tmp_path, datalist, classes, _ = inputs
    logits = np.log(SCORES / (1 - SCORES))
    csv = tmp_path / 'scores.csv'
    # Rows out of order, keyed by image path: the tool puts them in datalist order.
    csv.write_text(''.join('img%d.jpg,%s\n' % (i, ','.join('%.12g' % v for v in logits[i]))
                           for i in (2, 0, 1)))
    done = subprocess.run([sys.executable, os.path.join(ROOT, 'tools', 'evaluate.py'),
                           '--scores', str(csv), '--datalist', datalist, '--classes', classes,
                           '--logits'], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stdout
    assert '| Model | 88.9 | 33.3 |' in done.stdout

    done = subprocess.run([sys.executable, os.path.join(ROOT, 'tools', 'evaluate.py'),
                           '--scores', str(csv), '--datalist', datalist, '--classes', classes],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=60)
    assert done.returncode != 0
    assert 'scores outside [0, 1]' in done.stdout and 'pass --logits' in done.stdout


def test_read_datalist_labels_names_the_bad_line(tmp_path):
    path = tmp_path / 'list.txt'
    path.write_text('a.jpg 1 0 %s\nb.jpg 1 2 %s\n' % (PROPOSALS, PROPOSALS))
    with pytest.raises(ValueError, match=r'list.txt:2: labels\[1\]: 2 is not 0, 1 or -1'):
        evaluation.read_datalist_labels(str(path), 2)
    path.write_text('a.jpg 1 0 -1 %s\n' % PROPOSALS)
    paths, labels = evaluation.read_datalist_labels(str(path), 3)
    assert paths == ['a.jpg'] and labels.tolist() == [[1, 0, -1]]
    # Four classes would leave 9 proposal numbers: not whole proposals.
    with pytest.raises(ValueError, match=r'list.txt:1: fields: 13 numbers after the image path; expected C \+ 5k'):
        evaluation.read_datalist_labels(str(path), 4)


def test_read_scores_errors(tmp_path):
    ragged = tmp_path / 'ragged.csv'
    ragged.write_text('0.1,0.2\n0.3\n')
    with pytest.raises(ValueError, match=r'ragged.csv:2: 1 scores, the first row has 2'):
        evaluation.read_scores(str(ragged))
    keyed = tmp_path / 'keyed.csv'
    keyed.write_text('a.jpg 0.1 0.2\n')
    with pytest.raises(ValueError, match='no scores for 1 listed image'):
        evaluation.read_scores(str(keyed), ['a.jpg', 'b.jpg'])
    assert evaluation.read_scores(str(keyed), ['a.jpg']).tolist() == [[0.1, 0.2]]


def test_shape_mismatch_is_reported(inputs):
    tmp_path, datalist, classes, _ = inputs
    wrong = tmp_path / 'wrong.npy'
    np.save(str(wrong), SCORES[:2])
    evaluate = load_tool('evaluate')
    with pytest.raises(ValueError, match=r'scores of shape \(2, 4\).*need \(3, 4\)'):
        evaluate.main(['--scores', str(wrong), '--datalist', datalist, '--classes', classes])


def _run_tool(name, *args):
    return subprocess.run([sys.executable, os.path.join(ROOT, 'tools', name)] + list(args),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=120)


def test_results_table_tool_from_evaluate_outputs(inputs):
    tmp_path, datalist, classes, scores = inputs
    evaluate = load_tool('evaluate')
    outputs = []
    for seed, name in enumerate(('a.json', 'b.json')):
        noisy = np.clip(SCORES + 0.05 * np.random.RandomState(seed).rand(*SCORES.shape), 0, 1)
        np.save(str(tmp_path / ('s%d.npy' % seed)), noisy)
        outputs.append(str(tmp_path / name))
        evaluate.main(['--scores', str(tmp_path / ('s%d.npy' % seed)), '--datalist', datalist,
                       '--classes', classes, '--json', outputs[-1]])
    evaluate.main(['--scores', scores, '--datalist', datalist, '--classes', classes,
                   '--json', str(tmp_path / 'teacher.json')])
    done = _run_tool('results_table.py', '--row', 'Teacher', str(tmp_path / 'teacher.json'),
                     '--row', 'Student w/ KD', *outputs, '--markdown', str(tmp_path / 't.md'),
                     '--json', str(tmp_path / 't.json'))
    assert done.returncode == 0, done.stdout
    assert '| Teacher | 1 | 88.9 | 33.3 | 40.0 |' in done.stdout
    assert '| Student w/ KD | 2 | ' in done.stdout and ' ± ' in done.stdout
    assert (tmp_path / 't.md').read_text(encoding='utf-8') == done.stdout
    assert json.load(open(str(tmp_path / 't.json')))['rows'][1]['num_seeds'] == 2

    done = _run_tool('results_table.py', '--row', 'Teacher', datalist)
    assert done.returncode != 0 and 'val.txt: not JSON' in done.stdout


def test_plot_training_log_tool(tmp_path):
    log = tmp_path / 'stage1.log'
    log.write_text(''.join('I1121 10:00:%02d.000000 7 solver.cpp:239] Iteration %d (5 iter/s, '
                           '4s/20 iters), loss = %g\n' % (i, 20 * i, 1.0 / (i + 1))
                           for i in range(30)))
    png = tmp_path / 'curves.png'
    done = _run_tool('plot_training_log.py', str(log), '-o', str(png), '--labels', 'stage 1')
    assert done.returncode == 0, done.stdout
    assert 'stage 1: 30 train and 0 test records' in done.stdout
    import cv2
    image = cv2.imread(str(png))
    assert image is not None and image.std() > 10
    done = _run_tool('plot_training_log.py', str(tmp_path / 'missing.log'), '-o', str(png))
    assert done.returncode != 0 and 'missing.log' in done.stdout


def test_plot_top3_tool(inputs):
    tmp_path, datalist, classes, scores = inputs
    import cv2
    for i in range(3):
        cv2.imwrite(str(tmp_path / ('img%d.jpg' % i)),
                    np.full((60, 80, 3), 60 * i, np.uint8))
    png = tmp_path / 'top3.png'
    done = _run_tool('plot_top3.py', '--datalist', datalist, '--classes', classes,
                     '--without', scores, '--with', scores, '--image-root', str(tmp_path),
                     '--indices', '0', '2', '-o', str(png))
    assert done.returncode == 0, done.stdout
    image = cv2.imread(str(png))
    # Two rows of 280 pixels under the 40-pixel legend.
    assert image is not None and image.shape[0] == 2 * 280 + 40 and image.std() > 10
    done = _run_tool('plot_top3.py', '--datalist', datalist, '--classes', classes,
                     '--without', scores, '--with', scores, '--indices', '3', '-o', str(png))
    assert done.returncode != 0 and '--indices: 3 is not a row' in done.stdout


def test_cli_warns_before_the_table(inputs, capsys):
    tmp_path, datalist, classes, _ = inputs
    flat = tmp_path / 'flat.npy'
    np.save(str(flat), np.full(SCORES.shape, 0.4))
    evaluate = load_tool('evaluate')
    assert evaluate.main(['--scores', str(flat), '--datalist', datalist, '--classes',
                          classes, '--name', 'Flat']) == 0
    printed = capsys.readouterr().out
    table = printed.index('| Model |')
    for warning in ('WARNING: Flat: its scores hardly depend on the image',
                    'WARNING: the test split has only 3 images',
                    'WARNING: classes without a positive test image (1 of 4): cat.'):
        assert 0 <= printed.index(warning) < table, warning
