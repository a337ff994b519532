"""Figures and tables of results: training curves, top-3 label comparisons, the results table.

Figures are written as PNG with matplotlib's Agg backend (no display needed). Images passed to
`plot_top_k_comparison` are OpenCV BGR arrays or image paths, as everywhere else in the project.
"""
import json

import matplotlib
matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)
import numpy as np  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from mlic import caffe_log  # noqa: E402

CORRECT_COLOR = '#1a9641'
WRONG_COLOR = '#d7191c'
IGNORED_COLOR = '#7f7f7f'  # a label of -1: neither right nor wrong, left out of the metrics
LEGEND = ((CORRECT_COLOR, 'in the ground truth'), (WRONG_COLOR, 'not in the ground truth'),
          (IGNORED_COLOR, 'ignored (-1) in the ground truth'))
LEGEND_HEIGHT = 0.4  # inches above the rows of plot_top_k_comparison

# Columns of the results table: (heading, group in the evaluate() result, metric).
RESULT_COLUMNS = (('mAP', None, 'mAP'),
                  ('F1-C', 'all', 'F1-C'),
                  ('F1-O', 'all', 'F1-O'),
                  ('top-3 F1-C', 'top3', 'F1-C'),
                  ('top-3 F1-O', 'top3', 'F1-O'))


def moving_average(values, window):
    """Centred mean over `window` values (window // 2 before, the rest after; fewer at the
    ends); NaNs are skipped. Centred, the curve does not lag behind a falling loss."""
    values = np.asarray(values, dtype=np.float64)
    smoothed = np.empty_like(values)
    before = window // 2
    for i in range(len(values)):
        recent = values[max(0, i - before):i - before + window]
        recent = recent[np.isfinite(recent)]
        smoothed[i] = recent.mean() if recent.size else np.nan
    return smoothed


def smoothing_label(window, num_values):
    """(window used, legend text) of the smoothed curve: a window longer than the run is
    clipped to the run's length, and the legend says so."""
    if window <= num_values:
        return window, 'centred mean of %d' % window
    return num_values, ('centred mean of %d, the whole run (shorter than the window of %d)'
                        % (num_values, window))


def _draw_run(axes, label, parsed, window, color):
    iterations, losses = caffe_log.series(parsed['train'], 'loss')
    if not iterations:
        raise ValueError('run %r has no "Iteration N ..., loss = X" line to plot' % label)
    axes.plot(iterations, losses, color=color, alpha=0.3, linewidth=0.8,
              label='%s train (as logged)' % label)
    window, smoothing = smoothing_label(window, len(losses))
    axes.plot(iterations, moving_average(losses, window), color=color, linewidth=1.8,
              label='%s train (%s)' % (label, smoothing))
    tests = [r for r in parsed['test'] if r['weighted_outputs']]
    if tests:
        axes.plot([r['iteration'] for r in tests],
                  [sum(r['weighted_outputs'].values()) for r in tests],
                  'o--', color=color, markersize=4, linewidth=1, label='%s test' % label)


def plot_training_curves(runs, path, overlay=False, window=10, log_y=False):
    """training_curves_figure written as a PNG."""
    _save(training_curves_figure(runs, overlay, window, log_y), path)


def _save(figure, path):
    figure.savefig(path, dpi=100)
    plt.close(figure)


def training_curves_figure(runs, overlay=False, window=10, log_y=False):
    """Loss per iteration of one or more runs, raw (faint) and smoothed (solid).

    runs: list of (label, parsed log from caffe_log.parse_log). One panel per run, titled with
    the label and the net's name from the log, or all runs on one panel with overlay=True.
    Test-net losses (the sum of the weighted loss outputs) are drawn as dots when the log has
    them.
    """
    if not runs:
        raise ValueError('no runs to plot')
    colors = plt.rcParams['axes.prop_cycle'].by_key()['color']
    panels = 1 if overlay else len(runs)
    figure, axes = plt.subplots(panels, 1, figsize=(8, 3.2 * panels), squeeze=False)
    for index, (label, parsed) in enumerate(runs):
        ax = axes[0 if overlay else index, 0]
        try:
            _draw_run(ax, label, parsed, window, colors[index % len(colors)])
        except ValueError:
            plt.close(figure)
            raise
        if not overlay:
            ax.set_title(label if parsed['net'] is None else '%s (net %s)' % (label, parsed['net']))
    for ax in axes[:, 0]:
        ax.set_xlabel('iteration')
        ax.set_ylabel('loss')
        if log_y:
            ax.set_yscale('log')
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    figure.tight_layout()
    return figure


def _load_rgb(image):
    if isinstance(image, str):
        import cv2
        loaded = cv2.imread(image, cv2.IMREAD_COLOR)
        if loaded is None:
            raise ValueError('cannot read image %s' % image)
        image = loaded
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError('images must be H x W x 3 BGR arrays; got shape %s' % (image.shape,))
    return image[:, :, ::-1]


def label_color(target):
    """The colour of a predicted label whose ground truth is `target` (1, 0 or -1)."""
    if target == 1:
        return CORRECT_COLOR
    return IGNORED_COLOR if target == -1 else WRONG_COLOR


def _draw_label_list(ax, title, scores, targets, class_names, k):
    ax.axis('off')
    ax.text(0.0, 0.95, title, fontsize=11, fontweight='bold', va='top', transform=ax.transAxes)
    for rank, c in enumerate(np.argsort(-scores, kind='stable')[:k]):
        color = label_color(targets[c])
        ax.text(0.0, 0.75 - 0.18 * rank, '%s  %.2f' % (class_names[c], scores[c]), fontsize=11,
                color=color, fontweight='bold', va='top', transform=ax.transAxes)


def plot_top_k_comparison(images, scores_without, scores_with, targets, class_names, path, k=3,
                          titles=('w/o KD', 'w/ KD')):
    """top_k_comparison_figure written as a PNG."""
    _save(top_k_comparison_figure(images, scores_without, scores_with, targets, class_names, k,
                                  titles), path)


def top_k_comparison_figure(images, scores_without, scores_with, targets, class_names, k=3,
                            titles=('w/o KD', 'w/ KD')):
    """One row per image: the image, then its top-k labels by each model with their scores.

    Labels in the ground truth are green, others red, ignored ones (-1) grey, as the legend
    says; the ground truth (and any ignored label) is listed under the image.
    scores_*: (num_images, C); targets: (num_images, C) in {0, 1, -1}.
    """
    scores_without = np.asarray(scores_without, dtype=np.float64)
    scores_with = np.asarray(scores_with, dtype=np.float64)
    targets = np.asarray(targets)
    expected = (len(images), len(class_names))
    for name, array in (('scores_without', scores_without), ('scores_with', scores_with),
                        ('targets', targets)):
        if array.shape != expected:
            raise ValueError('%s must be (num_images, num_classes) = %s; got %s'
                             % (name, expected, array.shape))
    if not images:
        raise ValueError('no images to show')
    figure, axes = plt.subplots(len(images), 3, figsize=(9, 2.8 * len(images) + LEGEND_HEIGHT), squeeze=False,
                                gridspec_kw={'width_ratios': [1.2, 1, 1]})
    for row, image in enumerate(images):
        ax = axes[row, 0]
        ax.imshow(_load_rgb(image))
        ax.set_xticks([])
        ax.set_yticks([])
        truth = [class_names[c] for c in np.nonzero(targets[row] == 1)[0]]
        ignored = [class_names[c] for c in np.nonzero(targets[row] == -1)[0]]
        ax.set_xlabel('ground truth: ' + (', '.join(truth) if truth else '(none)')
                      + ('; ignored: ' + ', '.join(ignored) if ignored else ''), fontsize=9,
                      wrap=True)
        _draw_label_list(axes[row, 1], titles[0], scores_without[row], targets[row],
                         class_names, k)
        _draw_label_list(axes[row, 2], titles[1], scores_with[row], targets[row],
                         class_names, k)
    figure.tight_layout(rect=(0, 0, 1, 1 - LEGEND_HEIGHT / figure.get_figheight()))
    figure.legend(handles=[Patch(color=color, label=text) for color, text in LEGEND],
                  loc='upper center', ncol=len(LEGEND), fontsize=9, frameon=False)
    return figure


def results_table(rows):
    """Table of mean and std over seeds.

    rows: list of (name, list of evaluate() results, one per seed). Values are in percent; std is
    the sample standard deviation (ddof 1) and None for a single seed.
    Returns {'columns': [...], 'rows': [{'name', 'num_seeds', 'values': {column: {'mean',
    'std', 'per_seed'}}}]}: plain JSON-ready data.
    """
    table = {'columns': [heading for heading, _, _ in RESULT_COLUMNS], 'rows': []}
    for name, results in rows:
        if not results:
            raise ValueError('row %r has no result' % name)
        values = {}
        for heading, group, metric in RESULT_COLUMNS:
            per_seed = [100.0 * (r[metric] if group is None else r[group][metric])
                        for r in results]
            values[heading] = {'mean': float(np.mean(per_seed)),
                               'std': float(np.std(per_seed, ddof=1)) if len(per_seed) > 1
                               else None,
                               'per_seed': per_seed}
        table['rows'].append({'name': name, 'num_seeds': len(results), 'values': values})
    return table


def format_cell(value):
    if value['std'] is None:
        return '%.1f' % value['mean']
    return '%.1f ± %.1f' % (value['mean'], value['std'])


def table_to_markdown(table):
    lines = ['| Model | seeds | ' + ' | '.join(table['columns']) + ' |',
             '|---|---|' + '---|' * len(table['columns'])]
    for row in table['rows']:
        cells = [format_cell(row['values'][column]) for column in table['columns']]
        lines.append('| %s | %d | %s |' % (row['name'], row['num_seeds'], ' | '.join(cells)))
    return '\n'.join(lines) + '\n'


def write_results_table(table, markdown_path=None, json_path=None):
    if markdown_path:
        with open(markdown_path, 'w', encoding='utf-8') as out:
            out.write(table_to_markdown(table))
    if json_path:
        with open(json_path, 'w', encoding='utf-8') as out:
            json.dump(table, out, indent=2, ensure_ascii=False)
            out.write('\n')


def read_results_table(json_path):
    with open(json_path, encoding='utf-8') as source:
        table = json.load(source)
    for key in ('columns', 'rows'):
        if key not in table:
            raise ValueError('%s: not a results table (no %r)' % (json_path, key))
    return table
