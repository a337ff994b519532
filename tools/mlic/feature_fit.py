"""How close stage 1 brings the student's RoI features to the teacher's.

Stage 1's loss alone does not say whether feature-level distillation has transferred anything:
its scale depends on the features. Two predictors that know nothing of the image give it a
scale: zero, and the teacher's mean RoI feature over the same proposals. A student whose
distance to the teacher is above the mean predictor's has learned none of the structure of the
teacher's features, whatever its loss curve did (on the demo's 64 px student it was, see
docs/results-history.md).
"""
import numpy as np


class FeatureFitError(ValueError):
    """A net that cannot be measured: names the file and what is missing."""


def distillation_layer(net_param, where):
    """The net's RoIDistillationLoss layer (bottoms: teacher, student, rois)."""
    layers = [layer for layer in net_param.layer if layer.type == 'RoIDistillationLoss']
    if len(layers) != 1:
        raise FeatureFitError('%s: expected one RoIDistillationLoss layer (the stage-1 net), '
                              'found %d' % (where, len(layers)))
    if len(layers[0].bottom) != 3:
        raise FeatureFitError('%s: layer %s: expected the bottoms teacher, student, rois'
                              % (where, layers[0].name))
    return layers[0]


def half_squared_distance(targets, features):
    """Mean over rows of 1/2 ||targets - features||^2 (the stage-1 loss per RoI)."""
    difference = np.asarray(targets, dtype=np.float64) - features
    return float(0.5 * np.mean(np.sum(difference.reshape(len(difference), -1) ** 2, axis=1)))


def fit_summary(teacher, student):
    """{'student', 'zero', 'teacher_mean', 'rois'}: the mean 1/2 squared distance per RoI of the
    teacher's features (R, D) to the student's, to zero and to their own mean."""
    teacher = np.asarray(teacher, dtype=np.float64).reshape(len(teacher), -1)
    student = np.asarray(student, dtype=np.float64).reshape(len(student), -1)
    if teacher.shape != student.shape or not len(teacher):
        raise ValueError('teacher and student features must be non-empty and of one shape, got '
                         '%s and %s' % (teacher.shape, student.shape))
    return {'student': half_squared_distance(teacher, student),
            'zero': half_squared_distance(teacher, np.zeros_like(teacher)),
            'teacher_mean': half_squared_distance(teacher, teacher.mean(axis=0)),
            'rois': int(len(teacher))}


def without_dropout(net_param):
    """The net with every Dropout layer passing its input on unchanged (ratio 0): the features
    the student has learned, not a random half of them scaled up."""
    for layer in net_param.layer:
        if layer.type == 'Dropout':
            layer.dropout_param.dropout_ratio = 0.0
    return net_param


def roi_feature_fit(net_path, weights, batches=20):
    """Runs the stage-1 training net (TRAIN phase: its data layer, augmentation, seed and batch
    statistics, but no dropout) for `batches` forward passes and returns fit_summary over every
    real (non-padding) proposal, plus 'loss', the mean of the net's own distillation loss."""
    import caffe
    import caffe_layers  # noqa: F401  (the plugin's layers)
    from mlic import surgery
    net_param = surgery.read_net(net_path)
    loss = distillation_layer(net_param, net_path)
    teacher_blob, student_blob, roi_blob = loss.bottom
    net = surgery.net_from_param(without_dropout(net_param), caffe.TRAIN, weights=weights)
    teacher, student, losses = [], [], []
    for _ in range(batches):
        out = net.forward()
        losses.append(float(out[loss.top[0]]))
        real = net.blobs[roi_blob].data[:, 1] >= 0  # padding proposals have x1 = -1
        teacher.append(net.blobs[teacher_blob].data[real].copy())
        student.append(net.blobs[student_blob].data[real].copy())
    summary = fit_summary(np.concatenate(teacher), np.concatenate(student))
    summary['loss'] = float(np.mean(losses))
    return summary


def format_fit(summary):
    """The summary as a Markdown table and a one-line reading."""
    lines = ['| the teacher\'s RoI features against | mean 1/2 squared distance per RoI |',
             '|---|---|',
             '| the student\'s | %.3f |' % summary['student'],
             '| the teacher\'s mean feature | %.3f |' % summary['teacher_mean'],
             '| zero | %.3f |' % summary['zero'], '']
    if summary['student'] < summary['teacher_mean']:
        lines.append('The student explains %.0f%% of the teacher\'s feature variance over %d '
                     'RoIs.' % (100 * (1 - summary['student'] / summary['teacher_mean']),
                                summary['rois']))
    else:
        lines.append('The student is farther from the teacher than the teacher\'s mean feature '
                     '(%d RoIs): its features hold none of the structure of the teacher\'s.'
                     % summary['rois'])
    return '\n'.join(lines)
