"""Detection metrics for the WSDDN teacher: per-class NMS, VOC 2007 AP and CorLoc.

Boxes are (x1, y1, x2, y2) in pixels, 0-based and inclusive, so a box covers
(x2 - x1 + 1) x (y2 - y1 + 1) pixels, as in the VOC devkit and the datalist
(docs/original-method.md).

Detection inputs, per image i: `boxes[i]` (B_i, 4) and `scores[i]` (B_i, C), e.g. the rows of
WSDDN's proposal_class_score. Ground truth, per image: a list of
(class_index, x1, y1, x2, y2, difficult) tuples.

AP follows the VOC 2007 devkit: detections of a class, over all images, are taken by descending
score (ties keep image order, then box order); each is matched to the ground-truth box of its
class and image with which it has the largest IoU, when that IoU is >= 0.5. A match to a
"difficult" box counts neither as true nor false positive; a second detection of an already
matched box is a false positive (no fall-back to the next best box, as in the devkit);
difficult boxes are not counted among the positives.
The default is VOC 2007's 11-point interpolated AP; `use_07_metric=False` gives the area under
the monotone precision/recall curve (VOC 2010 and later).
"""
import numpy as np


def _as_boxes(boxes, what):
    boxes = np.asarray(boxes, dtype=np.float64)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError('%s must be (num_boxes, 4) x1 y1 x2 y2; got shape %s'
                         % (what, boxes.shape))
    return boxes


def box_areas(boxes):
    boxes = _as_boxes(boxes, 'boxes')
    return (boxes[:, 2] - boxes[:, 0] + 1.0) * (boxes[:, 3] - boxes[:, 1] + 1.0)


def iou_matrix(boxes_a, boxes_b):
    """(len(a), len(b)) intersection over union of inclusive pixel boxes."""
    a = _as_boxes(boxes_a, 'boxes_a')
    b = _as_boxes(boxes_b, 'boxes_b')
    width = (np.minimum(a[:, None, 2], b[None, :, 2])
             - np.maximum(a[:, None, 0], b[None, :, 0]) + 1.0)
    height = (np.minimum(a[:, None, 3], b[None, :, 3])
              - np.maximum(a[:, None, 1], b[None, :, 1]) + 1.0)
    intersection = np.maximum(width, 0.0) * np.maximum(height, 0.0)
    union = box_areas(a)[:, None] + box_areas(b)[None, :] - intersection
    return intersection / union


def nms(boxes, scores, iou_threshold):
    """Indices of the boxes kept by greedy NMS, best first.

    A box is dropped when its IoU with a higher-scoring kept box is > iou_threshold.
    Equal scores keep the lower index first.
    """
    boxes = _as_boxes(boxes, 'boxes')
    scores = np.asarray(scores, dtype=np.float64)
    if scores.shape != (len(boxes),):
        raise ValueError('nms: %d scores for %d boxes' % (scores.size, len(boxes)))
    return _greedy_nms(iou_matrix(boxes, boxes), scores, iou_threshold)


def _greedy_nms(overlaps, scores, iou_threshold):
    keep = []
    suppressed = np.zeros(len(scores), dtype=bool)
    for index in np.argsort(-scores, kind='stable'):
        if suppressed[index]:
            continue
        keep.append(int(index))
        suppressed |= overlaps[index] > iou_threshold
    return np.array(keep, dtype=np.int64)


def nms_per_class(boxes, scores, iou_threshold=0.3, score_threshold=None):
    """NMS of one image for every class.

    boxes (B, 4), scores (B, C); returns a list of C arrays (K_c, 5): x1 y1 x2 y2 score, best
    first. Boxes scoring below score_threshold (when given) are dropped before NMS. The default
    IoU threshold 0.3 is Fast R-CNN's test setting.
    """
    boxes = _as_boxes(boxes, 'boxes')
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2 or scores.shape[0] != len(boxes):
        raise ValueError('scores must be (num_boxes=%d, num_classes); got shape %s'
                         % (len(boxes), scores.shape))
    overlaps = iou_matrix(boxes, boxes)  # once per image, shared by the classes
    detections = []
    for c in range(scores.shape[1]):
        candidates = np.arange(len(boxes))
        if score_threshold is not None:
            candidates = candidates[scores[:, c] >= score_threshold]
        kept = candidates[_greedy_nms(overlaps[np.ix_(candidates, candidates)],
                                      scores[candidates, c], iou_threshold)]
        detections.append(np.hstack([boxes[kept], scores[kept, c][:, None]]))
    return detections


def voc_ap(recall, precision, use_07_metric=True):
    """AP from a precision/recall curve (arrays in detection order)."""
    recall = np.asarray(recall, dtype=np.float64)
    precision = np.asarray(precision, dtype=np.float64)
    if use_07_metric:
        # Mean over recall levels 0, 0.1, ..., 1 of the best precision at recall >= level; the
        # tolerance lets a recall of exactly 3/10 reach the level 0.3 despite rounding.
        ap = 0.0
        for level in np.linspace(0.0, 1.0, 11):
            reached = precision[recall >= level - 1e-12]
            ap += (reached.max() if reached.size else 0.0) / 11.0
        return float(ap)
    recall = np.r_[0.0, recall, 1.0]
    precision = np.r_[0.0, precision, 0.0]
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    steps = np.nonzero(recall[1:] != recall[:-1])[0]
    return float(np.sum((recall[steps + 1] - recall[steps]) * precision[steps + 1]))


def _check_ground_truth(ground_truth, num_images, num_classes):
    if len(ground_truth) != num_images:
        raise ValueError('ground truth lists %d images, detections %d'
                         % (len(ground_truth), num_images))
    per_image = []
    for i, objects in enumerate(ground_truth):
        rows = np.zeros((len(objects), 6))
        for j, obj in enumerate(objects):
            if len(obj) != 6:
                raise ValueError('ground truth of image %d, object %d: expected (class_index, x1, '
                                 'y1, x2, y2, difficult); got %r' % (i, j, tuple(obj)))
            rows[j] = obj
            if not (0 <= rows[j, 0] < num_classes and rows[j, 0] == int(rows[j, 0])):
                raise ValueError('ground truth of image %d, object %d: class index %g not in '
                                 '[0, %d)' % (i, j, rows[j, 0], num_classes))
            if rows[j, 3] < rows[j, 1] or rows[j, 4] < rows[j, 2]:
                raise ValueError('ground truth of image %d, object %d: box %s has x2 < x1 or '
                                 'y2 < y1' % (i, j, rows[j, 1:5].tolist()))
        per_image.append(rows)
    return per_image


def class_average_precision(detections, ground_truth, class_index, iou_threshold=0.5,
                            use_07_metric=True):
    """VOC AP of one class.

    detections: list per image of (K, 5) arrays x1 y1 x2 y2 score of this class (e.g. from
    nms_per_class); ground_truth: per image (G, 6) rows class x1 y1 x2 y2 difficult.
    Returns (ap, recall, precision); ap is NaN when the class has no non-difficult box.
    """
    gt_boxes, gt_difficult = [], []
    for rows in ground_truth:
        mine = rows[rows[:, 0] == class_index]
        gt_boxes.append(mine[:, 1:5])
        gt_difficult.append(mine[:, 5] != 0)
    num_positives = int(sum((~d).sum() for d in gt_difficult))

    image_of, score_of, box_of = [], [], []
    for i, dets in enumerate(detections):
        dets = np.asarray(dets, dtype=np.float64).reshape(-1, 5)
        image_of.extend([i] * len(dets))
        score_of.extend(dets[:, 4])
        box_of.extend(dets[:, :4])
    order = np.argsort(-np.asarray(score_of), kind='stable')
    matched = [np.zeros(len(b), dtype=bool) for b in gt_boxes]
    true_positive = np.zeros(len(order))
    false_positive = np.zeros(len(order))
    for rank, d in enumerate(order):
        i = image_of[d]
        if len(gt_boxes[i]) == 0:
            false_positive[rank] = 1
            continue
        overlaps = iou_matrix(np.asarray(box_of[d])[None, :], gt_boxes[i])[0]
        best = int(np.argmax(overlaps))
        if overlaps[best] < iou_threshold:
            false_positive[rank] = 1
        elif gt_difficult[i][best]:
            continue
        elif matched[i][best]:
            false_positive[rank] = 1
        else:
            matched[i][best] = True
            true_positive[rank] = 1
    # Ignored (difficult) detections have neither flag and leave the curve unchanged.
    counted = (true_positive + false_positive) > 0
    tp = np.cumsum(true_positive[counted])
    fp = np.cumsum(false_positive[counted])
    if num_positives == 0:
        return float('nan'), tp * 0.0, tp * 0.0
    recall = tp / num_positives
    precision = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    return voc_ap(recall, precision, use_07_metric), recall, precision


def detection_average_precision(boxes, scores, ground_truth, nms_threshold=0.3,
                                iou_threshold=0.5, use_07_metric=True, score_threshold=None):
    """Per-class NMS then VOC AP for every class.

    boxes: list per image of (B_i, 4); scores: list per image of (B_i, C); ground_truth: list per
    image of (class_index, x1, y1, x2, y2, difficult) tuples.
    Returns {'ap': list of C floats (None for classes without non-difficult boxes), 'mAP',
    'num_classes_evaluated', 'use_07_metric'}.
    """
    if len(boxes) != len(scores):
        raise ValueError('%d box arrays for %d score arrays' % (len(boxes), len(scores)))
    if not len(scores):
        raise ValueError('no images to evaluate')
    num_classes = np.asarray(scores[0]).shape[1]
    gt = _check_ground_truth(ground_truth, len(boxes), num_classes)
    per_image = [nms_per_class(b, s, nms_threshold, score_threshold)
                 for b, s in zip(boxes, scores)]
    aps = [class_average_precision([dets[c] for dets in per_image], gt, c, iou_threshold,
                                   use_07_metric)[0] for c in range(num_classes)]
    evaluated = [ap for ap in aps if not np.isnan(ap)]
    return {'ap': [None if np.isnan(ap) else float(ap) for ap in aps],
            'mAP': float(np.mean(evaluated)) if evaluated else float('nan'),
            'num_classes_evaluated': len(evaluated),
            'use_07_metric': bool(use_07_metric)}


def corloc(boxes, scores, ground_truth, image_labels=None, iou_threshold=0.5):
    """Correct localisation per class and its mean.

    For class c, over the positive images (image_labels[i, c] == 1; by default the images with a
    ground-truth box of class c, difficult or not): the fraction whose top-scoring box for c has
    IoU >= iou_threshold with some ground-truth box of class c (difficult ones included).
    Returns {'corloc': list of C floats (None for classes without positive images),
    'mean_corloc', 'num_positive_images': list of C ints}.
    """
    if len(boxes) != len(scores):
        raise ValueError('%d box arrays for %d score arrays' % (len(boxes), len(scores)))
    if not len(scores):
        raise ValueError('no images to evaluate')
    num_classes = np.asarray(scores[0]).shape[1]
    gt = _check_ground_truth(ground_truth, len(boxes), num_classes)
    if image_labels is None:
        image_labels = np.zeros((len(boxes), num_classes), dtype=np.int64)
        for i, rows in enumerate(gt):
            image_labels[i, rows[:, 0].astype(np.int64)] = 1
    image_labels = np.asarray(image_labels)
    if image_labels.shape != (len(boxes), num_classes):
        raise ValueError('image_labels must be (%d, %d); got shape %s'
                         % (len(boxes), num_classes, image_labels.shape))
    hits = np.zeros(num_classes)
    positives = np.zeros(num_classes, dtype=np.int64)
    for i, (image_boxes, image_scores) in enumerate(zip(boxes, scores)):
        image_boxes = _as_boxes(image_boxes, 'boxes of image %d' % i)
        image_scores = np.asarray(image_scores, dtype=np.float64)
        if image_scores.shape != (len(image_boxes), num_classes):
            raise ValueError('scores of image %d must be (%d, %d); got shape %s'
                             % (i, len(image_boxes), num_classes, image_scores.shape))
        for c in np.nonzero(image_labels[i] == 1)[0]:
            positives[c] += 1
            class_boxes = gt[i][gt[i][:, 0] == c, 1:5]
            if len(class_boxes) == 0 or len(image_boxes) == 0:
                continue
            top = image_boxes[int(np.argmax(image_scores[:, c]))]
            if iou_matrix(top[None, :], class_boxes).max() >= iou_threshold:
                hits[c] += 1
    per_class = [float(hits[c] / positives[c]) if positives[c] else None
                 for c in range(num_classes)]
    evaluated = [v for v in per_class if v is not None]
    return {'corloc': per_class,
            'mean_corloc': float(np.mean(evaluated)) if evaluated else float('nan'),
            'num_positive_images': positives.tolist()}
