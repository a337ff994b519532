"""The pipeline's report: the paper's table over seeds (results.md, results.json), the training
curves and the top-3 figure of the first seed, the teacher's detection line and the step times."""
import os

import numpy as np

TRAININGS = ('teacher', 'stage1', 'stage2', 'student', 'stage1_only', 'stage2_only')
STUDENT_ROWS = (('student', 'Student w/o KD'), ('stage1_only', 'Stage 1 only'),
                ('stage2_only', 'Stage 2 only'), ('stage2', 'Student w/ KD'))
# The classic distillation rows (config key baselines): row step and label, and the trainings
# of each, in order.
BASELINE_ROWS = (('fitnets', 'FitNets'), ('attention', 'Attention transfer'))
BASELINE_TRAININGS = {'fitnets': ('fitnets_hint', 'fitnets'), 'attention': ('attention',)}


def student_rows(names=None):
    """(row step, label) of the table's student rows: the method's and its ablations, with the
    baselines among `names` (default none) before the KD student's row."""
    baselines = [row for row in BASELINE_ROWS if names is not None and row[0] in names]
    return STUDENT_ROWS[:-1] + tuple(baselines) + STUDENT_ROWS[-1:]


def write_report(folder, seeds, per_seed, test, classes, timings=(), config_path='config',
                 budgets=None):
    """Writes the report of `per_seed` (the evaluate step's results of each seed in `seeds`, in
    order) into `folder`, prints the Markdown and returns the table. test: the test split
    (inference.TestSet) the students were evaluated on; timings: (step folder, seconds) of the
    steps run this time; budgets: (budget name, {row step: text}) of mlic.budget, noted under
    the table."""
    from mlic import caffe_log, evaluation, plots
    first = per_seed[0]
    students = student_rows(first)
    rows = [('Teacher (WSDDN)', [r['teacher'] for r in per_seed])]
    rows += [(label, [r[name] for r in per_seed]) for name, label in students]
    table = plots.results_table(rows)
    markdown = os.path.join(folder, 'results.md')
    plots.write_results_table(table, markdown, os.path.join(folder, 'results.json'))
    warnings = table_warnings(seeds, per_seed, classes)
    if warnings:
        with open(markdown) as f:
            text = f.read()
        with open(markdown, 'w') as f:
            f.write(evaluation.format_warnings(warnings, markdown=True) + '\n' + text)
    plots.plot_training_curves(
        [(name, caffe_log.parse_log(log)) for name, log in first['logs'].items()],
        os.path.join(folder, 'training_curves.png'))
    lines = []
    if budgets:
        name, texts = budgets
        lines += ['', 'Training budget per row (budget "%s"; iterations x train batch, images '
                  'through the student):' % name, '']
        lines += ['- %s: %s' % (label, texts[row]) for row, label in students if row in texts]
    lines += validation_notes(seeds, per_seed, students)
    top3_figure(first, test, classes, os.path.join(folder, 'top3_examples.png'))
    if 'teacher_detection' in first:
        lines += ['', 'Teacher detection on the test split (seed %d): VOC07 mAP@0.5 %.1f, '
                 'CorLoc %.1f' % (seeds[0], 100 * first['teacher_detection']['mAP'],
                                  100 * first['teacher_corloc']['mean_corloc'])]
    else:
        lines += ['', 'Teacher detection: not measured (no ground-truth boxes of the test '
                 'split; set datalists.test_boxes in %s to measure mAP@0.5 and CorLoc)'
                 % config_path]
    if timings:
        lines += ['', 'Steps run this time:', '', '| step | seconds |', '|---|---|']
        lines += ['| %s | %.0f |' % (os.path.relpath(d, folder), t) for d, t in timings]
    with open(markdown, 'a') as f:
        f.write('\n'.join(lines) + '\n')
    with open(markdown) as f:
        print(f.read())
    return table


def validation_notes(seeds, per_seed, students):
    """Under the table: each student row's snapshot and its validation mAP per seed (a run with
    a validation split; docs/converged.md)."""
    if not any('validation' in results for results in per_seed):
        return []
    lines = ['', 'Snapshots by validation mAP (the validation split is held out of the train '
             'list; iteration kept, its validation mAP, how the training stopped; under the '
             'converged schedule a row\'s last training ran until it stopped, not for the '
             'budget above):', '']
    for row, label in students:
        parts = []
        for seed, results in zip(seeds, per_seed):
            summary = results.get('validation', {}).get(row)
            if not summary:
                continue
            history = summary['mAP']
            picked = summary['picked']
            if picked is None:  # fixed schedule: the last snapshot is the one tested
                picked = max(int(i) for i in history)
            text = 'seed %d: iteration %d, val mAP %.1f' % (seed, picked,
                                                           100 * history[str(picked)])
            if summary.get('stopped'):
                text += ' (%s)' % summary['stopped']
            parts.append(text)
        if parts:
            lines.append('- %s: %s' % (label, '; '.join(parts)))
    return lines


def table_warnings(seeds, per_seed, classes):
    """evaluation.warnings of every model of every seed (models whose scores ignore the image,
    a tiny test split, classes without positives), each sentence once: they go above the
    table."""
    from mlic import evaluation
    warnings = []
    for seed, results in zip(seeds, per_seed):
        models = [('%s (seed %d)' % (label, seed), results[name]) for name, label
                  in (('teacher', 'Teacher (WSDDN)'),) + student_rows(results)]
        warnings += [w for w in evaluation.warnings(models, classes) if w not in warnings]
    return warnings


def top3_figure(results, test, classes, path, count=6):
    """The top-3 labels of the student without and with KD on the first `count` test images."""
    from mlic import plots
    without = np.load(os.path.join(results['folder'], 'student_scores.npy'))
    with_kd = np.load(os.path.join(results['folder'], 'stage2_scores.npy'))
    plots.plot_top_k_comparison(test.images[:count], without[:count], with_kd[:count],
                                test.labels[:count], classes, path)
