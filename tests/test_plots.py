"""Figures and tables of tools/mlic/plots.py: files exist, PNGs decode and show something."""
import json

import cv2
import matplotlib.colors
import matplotlib.pyplot as plt
import numpy as np
import pytest

from mlic import caffe_log, evaluation, netgen, plots


def _fake_log(rng, iterations, start_loss):
    lines = []
    for it in range(0, iterations, 20):
        if it % 100 == 0:
            lines.append('I1121 10:00:00.000000 7 solver.cpp:347] Iteration %d, Testing net (#0)'
                         % it)
            lines.append('I1121 10:00:00.000000 7 solver.cpp:414]     Test net output #0: '
                         'loss = %g (* 1 = %g loss)' % ((start_loss * 0.9 / (1 + it / 100.),) * 2))
        loss = start_loss / (1 + it / 100.) + 0.1 * rng.rand()
        lines.append('I1121 10:00:00.000000 7 solver.cpp:239] Iteration %d (5 iter/s, 4s/20 '
                     'iters), loss = %g' % (it, loss))
    return caffe_log.parse_log_lines(lines)


def _decoded(path):
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert image is not None, path
    return image


def _colour_pixels(image, hex_colour):
    blue_green_red = np.array([int(hex_colour[i:i + 2], 16) for i in (5, 3, 1)])
    return int(np.sum(np.all(np.abs(image.astype(int) - blue_green_red) < 40, axis=2)))


def test_moving_average():
    # Window 2: [1], [1, 3], [3, 5], [5, nan -> skipped].
    assert plots.moving_average([1, 3, 5, np.nan], 2) == pytest.approx([1, 2, 4, 5])
    # Centred: a straight line stays where it is, but for the shortened ends.
    assert plots.moving_average([0, 3, 6, 9, 12], 3) == pytest.approx([1.5, 3, 6, 9, 10.5])


@pytest.mark.parametrize('overlay', [False, True])
def test_training_curves_png(tmp_path, overlay):
    rng = np.random.RandomState(0)
    runs = [('stage 1', _fake_log(rng, 400, 2.0)), ('stage 2', _fake_log(rng, 300, 1.0))]
    path = tmp_path / 'curves.png'
    plots.plot_training_curves(runs, str(path), overlay=overlay)
    image = _decoded(path)
    expected_height = 320 if overlay else 640
    assert image.shape[:2] == (expected_height, 800)
    assert image.std() > 10  # not a blank page
    # The first run's default colour (matplotlib's C0, #1f77b4) draws the curve.
    assert _colour_pixels(image, '#1f77b4') > 200


def test_training_curves_refuses_empty_run(tmp_path):
    with pytest.raises(ValueError, match="run 'empty' has no"):
        plots.plot_training_curves([('empty', caffe_log.parse_log_lines([]))],
                                   str(tmp_path / 'x.png'))


def test_top_k_comparison_png(tmp_path):
    images = []
    for colour in ((40, 40, 200), (200, 120, 30)):
        image = np.full((120, 160, 3), 230, np.uint8)
        cv2.circle(image, (80, 60), 40, colour, -1)
        images.append(image)
    image_path = tmp_path / 'second.png'
    cv2.imwrite(str(image_path), images[1])
    names = ['person', 'dog', 'cat', 'car', 'bicycle']
    targets = np.array([[1, 1, 0, 0, 0], [0, 0, 0, 1, 1]])
    without = np.array([[0.9, 0.2, 0.7, 0.6, 0.1], [0.3, 0.8, 0.1, 0.7, 0.2]])
    with_kd = np.array([[0.95, 0.8, 0.3, 0.6, 0.1], [0.1, 0.2, 0.1, 0.9, 0.8]])
    path = tmp_path / 'top3.png'
    plots.plot_top_k_comparison([images[0], str(image_path)], without, with_kd, targets, names,
                                str(path))
    figure = _decoded(path)
    assert figure.shape[:2] == (560 + 40, 900)  # two rows of 2.8 inches and the legend
    assert figure.std() > 10
    # Both correct (green) and wrong (red) labels are drawn.
    assert _colour_pixels(figure, plots.CORRECT_COLOR) > 100
    assert _colour_pixels(figure, plots.WRONG_COLOR) > 100
    with pytest.raises(ValueError, match=r'targets must be \(num_images, num_classes\)'):
        plots.plot_top_k_comparison(images, without, with_kd, targets[:1], names, str(path))


def _texts(ax):
    """{first word of each text of a label column: its colour as #rrggbb}."""
    return {t.get_text().split()[0]: matplotlib.colors.to_hex(t.get_color())
            for t in ax.texts[1:]}


def test_top_k_ignored_label_has_its_own_colour_and_a_legend_says_which(tmp_path):
    image = np.full((60, 80, 3), 200, np.uint8)
    names = ['person', 'dog', 'cat', 'car']
    targets = np.array([[1, -1, 0, 0]])          # 'dog' is ignored in this image
    scores = np.array([[0.9, 0.8, 0.7, 0.1]])    # top 3: person, dog, cat
    figure = plots.top_k_comparison_figure([image], scores, scores, targets, names)
    try:
        for column in (1, 2):
            assert _texts(figure.axes[column]) == {'person': plots.CORRECT_COLOR,
                                                   'dog': plots.IGNORED_COLOR,
                                                   'cat': plots.WRONG_COLOR}
        assert len({plots.CORRECT_COLOR, plots.WRONG_COLOR, plots.IGNORED_COLOR}) == 3
        legend = figure.legends[0]
        assert [t.get_text() for t in legend.get_texts()] == [text for _, text in plots.LEGEND]
        assert [matplotlib.colors.to_hex(h.get_facecolor()) for h in legend.legend_handles] == \
            [plots.CORRECT_COLOR, plots.WRONG_COLOR, plots.IGNORED_COLOR]
        assert figure.axes[0].get_xlabel() == 'ground truth: person; ignored: dog'
    finally:
        plt.close(figure)
    path = tmp_path / 'top3.png'
    plots.plot_top_k_comparison([image], scores, scores, targets, names, str(path))
    assert _colour_pixels(_decoded(path), plots.IGNORED_COLOR) > 50


def _short_run(losses):
    return caffe_log.parse_log_lines(
        ['I1121 10:00:00.000000 7 solver.cpp:289] Solving %s' % netgen.net_name(netgen.SMALL,
                                                                                'wsddn')]
        + ['I1121 10:00:00.000000 7 solver.cpp:239] Iteration %d, loss = %g' % (10 * i, loss)
           for i, loss in enumerate(losses)])


def test_window_longer_than_the_run_is_clipped_and_the_legend_says_so():
    losses = [4.0, 3.0, 2.0, 1.0]
    figure = plots.training_curves_figure([('teacher', _short_run(losses))], window=10)
    try:
        smoothed = [line for line in figure.axes[0].lines if 'mean' in line.get_label()]
        assert len(smoothed) == 1
        assert smoothed[0].get_label() == ('teacher train (centred mean of 4, the whole run '
                                           '(shorter than the window of 10))')
        assert smoothed[0].get_ydata() == pytest.approx(plots.moving_average(losses, 4))
    finally:
        plt.close(figure)
    figure = plots.training_curves_figure([('teacher', _short_run(losses))], window=3)
    try:
        labels = [line.get_label() for line in figure.axes[0].lines]
        assert 'teacher train (centred mean of 3)' in labels
    finally:
        plt.close(figure)


def test_small_teacher_is_titled_with_its_own_net_name():
    figure = plots.training_curves_figure([('teacher.log', _short_run([2.0, 1.0]))])
    try:
        title = figure.axes[0].get_title()
    finally:
        plt.close(figure)
    assert title == 'teacher.log (net small_wsddn)'
    assert netgen.net_name(netgen.FULL, 'wsddn') == 'VGG16_wsddn'  # the original's name


def _result(rng, quality):
    targets = (rng.rand(60, 4) < 0.4).astype(int)
    targets[0] = 1
    scores = np.clip(targets * quality + rng.rand(60, 4) * (1 - quality), 0, 1)
    return evaluation.evaluate(scores, targets)


def test_results_table_markdown_and_json(tmp_path):
    rng = np.random.RandomState(3)
    teacher = _result(rng, 0.6)
    seeds = [_result(rng, 0.3), _result(rng, 0.35)]
    table = plots.results_table([('Teacher', [teacher]), ('Student w/ KD', seeds)])
    markdown_path, json_path = tmp_path / 'results.md', tmp_path / 'results.json'
    plots.write_results_table(table, str(markdown_path), str(json_path))

    markdown = markdown_path.read_text(encoding='utf-8')
    lines = markdown.splitlines()
    assert lines[0] == '| Model | seeds | mAP | F1-C | F1-O | top-3 F1-C | top-3 F1-O |'
    assert lines[2].startswith('| Teacher | 1 | %.1f | ' % (100 * teacher['mAP']))
    maps = [100 * r['mAP'] for r in seeds]
    cell = '%.1f ± %.1f' % (np.mean(maps), np.std(maps, ddof=1))
    assert lines[3].startswith('| Student w/ KD | 2 | %s | ' % cell)
    f1_o = '%.1f ± %.1f' % (np.mean([100 * r['top3']['F1-O'] for r in seeds]),
                            np.std([100 * r['top3']['F1-O'] for r in seeds], ddof=1))
    assert lines[3].endswith(' %s |' % f1_o)

    assert plots.read_results_table(str(json_path)) == table
    assert json.loads(json_path.read_text(encoding='utf-8'))['rows'][0]['values']['mAP'][
        'std'] is None
    with pytest.raises(ValueError, match="row 'Stage-1 only' has no result"):
        plots.results_table([('Stage-1 only', [])])
