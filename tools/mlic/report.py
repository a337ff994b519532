"""The pipeline's report: the paper's table over seeds (results.md, results.json), the training
curves and the top-3 figure of the first seed, the teacher's detection line and the step times."""
import os

import numpy as np

TRAININGS = ('teacher', 'stage1', 'stage2', 'student', 'stage1_only', 'stage2_only')
STUDENT_ROWS = (('student', 'Student w/o KD'), ('stage1_only', 'Stage 1 only'),
                ('stage2_only', 'Stage 2 only'), ('stage2', 'Student w/ KD'))


def write_report(folder, seeds, per_seed, test, classes, timings=(), config_path='config'):
    """Writes the report of `per_seed` (the evaluate step's results of each seed in `seeds`, in
    order) into `folder`, prints the Markdown and returns the table. test: the test split
    (inference.TestSet) the students were evaluated on; timings: (step folder, seconds) of the
    steps run this time."""
    from mlic import caffe_log, plots
    rows = [('Teacher (WSDDN)', [r['teacher'] for r in per_seed])]
    rows += [(label, [r[name] for r in per_seed]) for name, label in STUDENT_ROWS]
    table = plots.results_table(rows)
    markdown = os.path.join(folder, 'results.md')
    plots.write_results_table(table, markdown, os.path.join(folder, 'results.json'))
    first = per_seed[0]
    plots.plot_training_curves(
        [(name, caffe_log.parse_log(first['logs'][name])) for name in TRAININGS],
        os.path.join(folder, 'training_curves.png'))
    top3_figure(first, test, classes, os.path.join(folder, 'top3_examples.png'))
    if 'teacher_detection' in first:
        lines = ['', 'Teacher detection on the test split (seed %d): VOC07 mAP@0.5 %.1f, '
                 'CorLoc %.1f' % (seeds[0], 100 * first['teacher_detection']['mAP'],
                                  100 * first['teacher_corloc']['mean_corloc'])]
    else:
        lines = ['', 'Teacher detection: not measured (no ground-truth boxes of the test '
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


def top3_figure(results, test, classes, path, count=6):
    """The top-3 labels of the student without and with KD on the first `count` test images."""
    from mlic import plots
    without = np.load(os.path.join(results['folder'], 'student_scores.npy'))
    with_kd = np.load(os.path.join(results['folder'], 'stage2_scores.npy'))
    plots.plot_top_k_comparison(test.images[:count], without[:count], with_kd[:count],
                                test.labels[:count], classes, path)
