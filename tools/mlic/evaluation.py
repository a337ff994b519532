"""Multi-label classification metrics: mAP and the thresholded CP/CR/F1-C, OP/OR/F1-O.

Inputs are `scores`, an (num_images, C) array of probabilities, and `targets`, an array of the
same shape with 1 (positive), 0 (negative) or -1 (ignore, e.g. a VOC label held only by
"difficult" objects). Ignored entries take no part in any count.

Conventions (docs/original-method.md, "Metrics"):
- AP of a class is the non-interpolated average precision: the mean, over the class's positives,
  of the precision at the positive's rank. Images are ranked by descending score. Tied scores form
  one threshold: every positive of a tie group gets the precision measured after the whole group.
  This is what scikit-learn's average_precision_score computes, and it makes AP independent of
  the order of the images; on data without ties it is the plain rank-by-rank definition.
- A class without any positive has no AP; it is left out of the mean (and of CP and CR, which
  would be undefined or meaningless for it) and counted in `num_classes_without_positives`.
- A label is predicted when its score is >= threshold (0.5). Per class k: Nc correct positives,
  Np predicted positives (taken as 1 when 0), Ng ground-truth positives.
  CP = mean_k Nc/Np, CR = mean_k Nc/Ng, F1-C = 2 CP CR / (CP + CR),
  OP = sum Nc / sum Np, OR = sum Nc / sum Ng, F1-O = 2 OP OR / (OP + OR); an F1 is 0 when both
  its precision and recall are 0. OP and OR sum over every class, so false positives on a class
  without positives still lower OP.
- Top-k: per image only the k highest-scoring labels may be predicted, each still >= threshold.
  The k labels are chosen among all C scores, ignored ones included (the classifier does not know
  which labels are ignored); ties in the k-th place are broken towards the lower class index.

Every value is a fraction in [0, 1]; `format_row` prints percentages as the paper does.
"""
import numpy as np

SET_METRICS = ('CP', 'CR', 'F1-C', 'OP', 'OR', 'F1-O')

# (heading, key in the result dict, key of the metric) for table printing.
TABLE_COLUMNS = (
    [('mAP', None, 'mAP')]
    + [(name, 'all', name) for name in SET_METRICS]
    + [('top3 ' + name, 'top3', name) for name in SET_METRICS])


def _check_inputs(scores, targets):
    scores = np.asarray(scores, dtype=np.float64)
    targets = np.asarray(targets)
    if scores.ndim != 2:
        raise ValueError('scores must be (num_images, num_classes); got shape %s'
                         % (scores.shape,))
    if targets.shape != scores.shape:
        raise ValueError('targets shape %s differs from scores shape %s'
                         % (targets.shape, scores.shape))
    if not np.all(np.isfinite(scores)):
        bad = np.argwhere(~np.isfinite(scores))[0]
        raise ValueError('scores[%d, %d] is not finite' % tuple(bad))
    bad = ~np.isin(targets, (-1, 0, 1))
    if np.any(bad):
        row, col = np.argwhere(bad)[0]
        raise ValueError('targets[%d, %d] = %r; expected 1, 0 or -1 (ignore)'
                         % (row, col, targets[row, col].item()))
    return scores, targets.astype(np.int64)


def average_precision(scores, targets):
    """AP of one class; `scores`, `targets` are (num_images,); NaN when no positive is kept."""
    scores = np.asarray(scores, dtype=np.float64)
    targets = np.asarray(targets)
    kept = targets != -1
    scores, positive = scores[kept], targets[kept] == 1
    num_positives = int(positive.sum())
    if num_positives == 0:
        return float('nan')
    order = np.argsort(-scores, kind='stable')
    scores, positive = scores[order], positive[order]
    true_positives = np.cumsum(positive)
    # Index of the last member of each tie group: where the next score is different.
    group_end = np.r_[np.nonzero(np.diff(scores))[0], len(scores) - 1]
    group_true_positives = true_positives[group_end]
    group_precision = group_true_positives / (group_end + 1.0)
    new_positives = np.diff(np.r_[0, group_true_positives])
    return float(np.sum(new_positives * group_precision) / num_positives)


def _set_metrics(predicted, targets):
    """CP, CR, F1-C, OP, OR, F1-O of a boolean prediction matrix; classes need Ng > 0 for C*."""
    counted = targets != -1
    positive = (targets == 1) & counted
    predicted = predicted & counted
    correct = (predicted & positive).sum(axis=0).astype(np.float64)
    num_predicted = predicted.sum(axis=0).astype(np.float64)
    num_ground_truth = positive.sum(axis=0).astype(np.float64)
    has_positive = num_ground_truth > 0
    cp = np.mean(correct[has_positive] / np.maximum(num_predicted[has_positive], 1.0))
    cr = np.mean(correct[has_positive] / num_ground_truth[has_positive])
    op = correct.sum() / max(num_predicted.sum(), 1.0)
    orr = correct.sum() / num_ground_truth.sum()
    return {'CP': float(cp), 'CR': float(cr), 'F1-C': _f1(cp, cr),
            'OP': float(op), 'OR': float(orr), 'F1-O': _f1(op, orr)}


def _f1(precision, recall):
    if precision + recall == 0:
        return 0.0
    return float(2.0 * precision * recall / (precision + recall))


def top_k_mask(scores, k):
    """Boolean (num_images, C): True for each image's k highest scores (lower index wins ties)."""
    scores = np.asarray(scores, dtype=np.float64)
    k = min(k, scores.shape[1])
    order = np.argsort(-scores, axis=1, kind='stable')[:, :k]
    mask = np.zeros(scores.shape, dtype=bool)
    np.put_along_axis(mask, order, True, axis=1)
    return mask


def evaluate(scores, targets, threshold=0.5, top_k=3):
    """All metrics as a plain dict.

    Keys: 'mAP', 'per_class_ap' (list, None for classes without positives),
    'num_classes', 'num_classes_evaluated', 'num_classes_without_positives', 'num_images',
    'threshold', 'top_k', 'all' and 'top3' (dicts of CP, CR, F1-C, OP, OR, F1-O).
    The key 'top3' keeps its name whatever top_k is, so tables can rely on it.
    For `warnings`: 'positives_per_class' (list of counts of positive test images) and
    'score_spread' (score_spread()).
    """
    scores, targets = _check_inputs(scores, targets)
    num_classes = scores.shape[1]
    per_class_ap = np.array([average_precision(scores[:, c], targets[:, c])
                             for c in range(num_classes)])
    evaluated = ~np.isnan(per_class_ap)
    if not np.any(evaluated):
        raise ValueError('no class has a positive target: nothing to evaluate')
    predicted = scores >= threshold
    return {
        'mAP': float(np.mean(per_class_ap[evaluated])),
        'per_class_ap': [float(ap) if ok else None for ap, ok in zip(per_class_ap, evaluated)],
        'num_images': int(scores.shape[0]),
        'num_classes': int(num_classes),
        'num_classes_evaluated': int(evaluated.sum()),
        'num_classes_without_positives': int(num_classes - evaluated.sum()),
        'threshold': float(threshold),
        'top_k': int(top_k),
        'all': _set_metrics(predicted, targets),
        'top3': _set_metrics(predicted & top_k_mask(scores, top_k), targets),
        'positives_per_class': [int(n) for n in (targets == 1).sum(axis=0)],
        'score_spread': score_spread(scores),
    }


# ---- Is the table worth reading? Checks run before any results table is shown.

# A model whose every class score varies across the test images by less than this (standard
# deviation, in probability) has learned nothing from the images: its scores are a constant
# (the label prior) plus rounding, and its AP ranks images by that noise. Nets whose classifier
# is cut off from the image (dead ReLUs after fc6) were seen at a spread of at most 4e-4; a net
# whose features reach the classifier, even untrained, spreads its scores by 1e-2 or more.
# 1e-3 lies between the two and far above float32 rounding of probabilities (1e-7).
MIN_SCORE_SPREAD = 1e-3
# Below this many test images one image is more than 1 % of the split and a class's AP rests on
# a handful of positives: rows a few mAP points apart are not different.
MIN_TEST_IMAGES = 100
# A class with n positive test images changes its AP by up to 1/n when one of them moves from the
# top to the bottom of the ranking: 20 points and more below 5.
MIN_CLASS_POSITIVES = 5


def score_spread(scores):
    """The largest, over classes, standard deviation of a class's score across the images: how
    much the scores depend on the image at all (0 for a model that gives every image the same)."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.shape[0] < 2:
        return 0.0
    return float(scores.std(axis=0).max())


def warnings(results, class_names=None):
    """Warnings, as sentences, about a table of `results`: [(row name, evaluate() result)] of
    models evaluated on one test split. Empty when the table can be read as it is. Results
    written before evaluate() gave 'score_spread' and 'positives_per_class' are checked for
    what they have."""
    if not results:
        return []
    first = results[0][1]
    out = []
    names = list(class_names) if class_names else ['class %d' % k
                                                   for k in range(first['num_classes'])]
    flat = [(name, r['score_spread']) for name, r in results
            if r.get('score_spread') is not None and r['score_spread'] < MIN_SCORE_SPREAD]
    for name, spread in flat:
        out.append('%s: its scores hardly depend on the image (the largest standard deviation '
                   'of a class\'s score across the %d test images is %.1e, below %.0e): it '
                   'gives every image nearly the same scores, and its mAP and F1 measure noise '
                   'between near-equal numbers, not classification. Train it longer or check '
                   'its training log (a loss stuck at the label prior)'
                   % (name, first['num_images'], spread, MIN_SCORE_SPREAD))
    if first['num_images'] < MIN_TEST_IMAGES:
        out.append('the test split has only %d images (fewer than %d): one image moves a '
                   'class\'s AP by several points, so rows a few mAP points apart do not differ'
                   % (first['num_images'], MIN_TEST_IMAGES))
    positives = first.get('positives_per_class')
    if positives is None:
        missing = [k for k, ap in enumerate(first['per_class_ap']) if ap is None]
    else:
        missing = [k for k, n in enumerate(positives) if n == 0]
    if missing:
        out.append('classes without a positive test image (%d of %d): %s. They have no AP and '
                   'are left out of mAP, CP and CR (their false positives still lower OP); mAP '
                   'is the mean over the other %d'
                   % (len(missing), first['num_classes'], ', '.join(names[k] for k in missing),
                      first['num_classes'] - len(missing)))
    if positives is not None:
        few = [k for k, n in enumerate(positives) if 0 < n < MIN_CLASS_POSITIVES]
        if few:
            out.append('classes with fewer than %d positive test images: %s. The AP of a class '
                       'with n positives moves by up to 1/n when one image does'
                       % (MIN_CLASS_POSITIVES,
                          ', '.join('%s (%d)' % (names[k], positives[k]) for k in few)))
    return out


def format_warnings(lines, markdown=False):
    """The warnings as text for the terminal, or as a Markdown block to put above a table."""
    if not lines:
        return ''
    if markdown:
        return ''.join('> **WARNING**: %s.\n>\n' % line for line in lines)[:-2] + '\n'
    return ''.join('WARNING: %s.\n' % line for line in lines)


def format_header(top_k=3):
    """Markdown header (two lines) matching `format_row`."""
    names = ['Model'] + [heading.replace('top3', 'top%d' % top_k)
                         for heading, _, _ in TABLE_COLUMNS]
    return '| ' + ' | '.join(names) + ' |\n|' + '|'.join(['---'] * len(names)) + '|'


def format_row(result, name):
    """One Markdown table row of `result` (from `evaluate`), values in percent, 1 decimal."""
    cells = [name]
    for _, group, metric in TABLE_COLUMNS:
        value = result[metric] if group is None else result[group][metric]
        cells.append('%.1f' % (100.0 * value))
    return '| ' + ' | '.join(cells) + ' |'


def format_per_class(result, class_names):
    """Markdown table of per-class AP in percent; classes without positives show 'n/a'."""
    if len(class_names) != len(result['per_class_ap']):
        raise ValueError('%d class names for %d classes'
                         % (len(class_names), len(result['per_class_ap'])))
    lines = ['| Class | AP |', '|---|---|']
    for name, ap in zip(class_names, result['per_class_ap']):
        lines.append('| %s | %s |' % (name, 'n/a' if ap is None else '%.1f' % (100.0 * ap)))
    return '\n'.join(lines)


# Input files of tools/evaluate.py. Errors name the file and line.

def read_class_names(path):
    """One class name per line; blank lines are skipped."""
    with open(path, encoding='utf-8') as source:
        names = [line.strip() for line in source if line.strip()]
    if not names:
        raise ValueError('%s: no class names' % path)
    return names


def read_datalist_labels(path, num_classes):
    """(image paths, (num_images, C) int labels) of a datalist, read and checked by
    mlic.datalist.Datalist (any bad line raises DatalistError naming file, line and field)."""
    from mlic.datalist import Datalist
    entries = Datalist(path, num_classes)
    return ([e.image_path for e in entries],
            np.array([e.labels for e in entries], dtype=np.int64))


def _is_number(text):
    try:
        float(text)
        return True
    except ValueError:
        return False


def read_scores(path, image_paths=None):
    """(num_images, C) scores from a .npy array or a text/CSV file.

    A text file holds one image per line, values separated by commas or spaces; when its first
    field is not a number it is the image path, and rows are then put in the order of
    `image_paths` (every listed image must have a row). Otherwise rows are in datalist order.
    """
    if path.endswith('.npy'):
        scores = np.load(path)
        if scores.ndim != 2:
            raise ValueError('%s: expected a (num_images, num_classes) array; got shape %s'
                             % (path, scores.shape))
        return scores.astype(np.float64)
    rows, names = [], []
    with open(path, encoding='utf-8') as source:
        for number, line in enumerate(source, 1):
            fields = line.replace(',', ' ').split()
            if not fields:
                continue
            if not _is_number(fields[0]):
                names.append(fields[0])
                fields = fields[1:]
            try:
                rows.append([float(value) for value in fields])
            except ValueError:
                raise ValueError('%s:%d: scores must be numbers' % (path, number))
            if len(rows[-1]) != len(rows[0]):
                raise ValueError('%s:%d: %d scores, the first row has %d'
                                 % (path, number, len(rows[-1]), len(rows[0])))
    if not rows:
        raise ValueError('%s: no scores' % path)
    if names and len(names) != len(rows):
        raise ValueError('%s: some rows start with an image path and some do not' % path)
    scores = np.array(rows)
    if names and image_paths is not None:
        row_of = {name: index for index, name in enumerate(names)}
        missing = [p for p in image_paths if p not in row_of]
        if missing:
            raise ValueError('%s: no scores for %d listed image(s), e.g. %s'
                             % (path, len(missing), missing[0]))
        scores = scores[[row_of[p] for p in image_paths]]
    return scores
