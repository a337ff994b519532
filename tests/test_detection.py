"""Detection metrics of tools/mlic/detection.py on hand-worked examples."""
import numpy as np
import pytest

from mlic import detection

A = (0, 0, 9, 9)        # 10 x 10 = 100 pixels
B = (5, 0, 14, 9)       # A shifted right by 5
E = (1, 0, 10, 9)       # A shifted right by 1
FAR = (20, 20, 29, 29)


def test_iou_uses_inclusive_pixel_boxes():
    iou = detection.iou_matrix([A], [A, B, E, (9, 9, 18, 18), (10, 10, 19, 19)])[0]
    # A vs A: 1. A vs B: overlap x 5..9 = 5 x 10 = 50, union 100 + 100 - 50 = 150 -> 1/3.
    # A vs E: 9 x 10 = 90 / 110 = 9/11. A vs (9,9,18,18): one shared pixel -> 1 / 199.
    # A vs (10,10,19,19): they only touch corners -> 0.
    assert iou == pytest.approx([1.0, 1 / 3., 9 / 11., 1 / 199., 0.0])
    assert detection.box_areas([A, (3, 4, 3, 4)]) == pytest.approx([100.0, 1.0])


def test_nms_threshold():
    boxes = [A, B, E]
    scores = [0.9, 0.8, 0.7]
    # E overlaps A by 9/11 > 0.5 -> suppressed; B overlaps A by 1/3 <= 0.5 -> kept.
    assert detection.nms(boxes, scores, 0.5).tolist() == [0, 1]
    # At 0.3 B (1/3 > 0.3) goes too.
    assert detection.nms(boxes, scores, 0.3).tolist() == [0]
    # Best first, whatever the input order.
    assert detection.nms([B, FAR, A], [0.2, 0.5, 0.9], 0.5).tolist() == [2, 1, 0]


def test_nms_per_class_is_independent_per_class():
    scores = np.array([[0.9, 0.1],
                       [0.8, 0.7],
                       [0.7, 0.95]])
    dets = detection.nms_per_class([A, B, E], scores, iou_threshold=0.5)
    # Class 0: as above, A and B kept. Class 1: E (0.95) first, suppresses A (9/11); B overlaps
    # E by x 5..10 = 60 / 140 = 3/7 <= 0.5 -> kept.
    assert dets[0].tolist() == [list(A) + [0.9], list(B) + [0.8]]
    assert dets[1].tolist() == [list(E) + [0.95], list(B) + [0.7]]
    dets = detection.nms_per_class([A, B, E], scores, iou_threshold=0.5, score_threshold=0.75)
    assert [len(d) for d in dets] == [2, 1]


# Class 0 ground truth: image 0 has A and FAR (FAR is never detected: a missed object);
# image 1 has A flagged difficult and (40,40,49,49).
GROUND_TRUTH = [[(0,) + A + (0,), (0,) + FAR + (0,)],
                [(0,) + A + (1,), (0, 40, 40, 49, 49, 0)]]
DETECTIONS = [np.array([list(A) + [0.9],                  # true positive
                        list(E) + [0.8],                  # duplicate of A: false positive
                        [50, 50, 59, 59, 0.95]]),          # nothing there: false positive
              np.array([list(A) + [0.7],                  # the difficult box: ignored
                        [40, 40, 49, 49, 0.5]])]          # true positive


def _ground_truth_arrays(ground_truth):
    return [np.array(rows, dtype=float).reshape(-1, 6) for rows in ground_truth]


def test_class_average_precision_hand_worked():
    gt = _ground_truth_arrays(GROUND_TRUTH)
    # 3 positives (the difficult box is not one). By score: 0.95 FP, 0.9 TP, 0.8 FP (duplicate),
    # 0.7 ignored, 0.5 TP. Counted curve: recall 0, 1/3, 1/3, 2/3; precision 0, 1/2, 1/3, 1/2.
    ap, recall, precision = detection.class_average_precision(DETECTIONS, gt, 0)
    assert recall == pytest.approx([0, 1 / 3., 1 / 3., 2 / 3.])
    assert precision == pytest.approx([0, 1 / 2., 1 / 3., 1 / 2.])
    # 11-point: levels 0 .. 0.6 (7 of them) have best precision 1/2 at recall >= level,
    # 0.7 .. 1 have none: AP = 7 * 0.5 / 11 = 7/22.
    assert ap == pytest.approx(7 / 22.)
    # Area: envelope precision 1/2 over recall [0, 2/3], 0 after: AP = 2/3 * 1/2 = 1/3.
    ap_area, _, _ = detection.class_average_precision(DETECTIONS, gt, 0, use_07_metric=False)
    assert ap_area == pytest.approx(1 / 3.)


def test_class_without_ground_truth_has_no_ap():
    gt = _ground_truth_arrays(GROUND_TRUTH)
    ap, _, _ = detection.class_average_precision(DETECTIONS, gt, 1)
    assert np.isnan(ap)


def test_voc_ap_eleven_point_reaches_exact_levels():
    # Recall exactly 3/10 must count as reaching the level 0.3: levels 0, .1, .2, .3 -> 4/11.
    assert detection.voc_ap([0.1, 0.2, 0.3], [1.0, 1.0, 1.0]) == pytest.approx(4 / 11.)
    assert detection.voc_ap([0.1, 0.2, 0.3], [1.0, 1.0, 1.0], False) == pytest.approx(0.3)


def test_detection_average_precision_applies_nms():
    # Both images hold one class-0 object at A. Image 0 scores A 0.9 and its near copy E 0.8;
    # image 1 scores A 0.7. Class 1 has no ground truth.
    boxes = [np.array([A, E]), np.array([A])]
    scores = [np.array([[0.9, 0.2], [0.8, 0.1]]), np.array([[0.7, 0.3]])]
    gt = [[(0,) + A + (0,)], [(0,) + A + (0,)]]
    # NMS at 0.5 removes E (IoU 9/11): 0.9 TP, 0.7 TP -> AP 1.
    result = detection.detection_average_precision(boxes, scores, gt, nms_threshold=0.5)
    assert result['ap'] == [pytest.approx(1.0), None]
    assert result['mAP'] == pytest.approx(1.0) and result['num_classes_evaluated'] == 1
    # NMS at 0.95 keeps E: 0.9 TP, 0.8 FP, 0.7 TP -> recall 1/2, 1/2, 1, precision 1, 1/2, 2/3.
    # 11-point: levels 0 .. 0.5 (6) best 1, levels 0.6 .. 1 (5) best 2/3 -> (6 + 10/3) / 11.
    result = detection.detection_average_precision(boxes, scores, gt, nms_threshold=0.95)
    assert result['mAP'] == pytest.approx(28 / 33.)


def test_corloc_hand_worked():
    boxes = [np.array([A, FAR])] * 4
    scores = [np.array([[0.9, 0.2], [0.1, 0.8]]),   # class 0 top A: hit
              np.array([[0.3, 0.1], [0.6, 0.9]]),   # class 0 top FAR: miss; class 1 top FAR: hit
              np.array([[0.5, 0.1], [0.5, 0.9]]),   # class 1 top FAR vs B: miss
              np.array([[0.5, 0.1], [0.5, 0.9]])]   # class 1 top FAR vs difficult FAR: hit
    gt = [[(0,) + A + (0,)],
          [(0,) + A + (0,), (1,) + FAR + (0,)],
          [(1,) + B + (0,)],
          [(1,) + FAR + (1,)]]
    result = detection.corloc(boxes, scores, gt)
    # Class 0: positives images 0, 1 -> 1 hit of 2. Class 1: images 1, 2, 3 -> 2 of 3.
    assert result['corloc'] == pytest.approx([1 / 2., 2 / 3.])
    assert result['mean_corloc'] == pytest.approx(7 / 12.)
    assert result['num_positive_images'] == [2, 3]
    # Labels given explicitly: image 2 no longer positive for class 1 -> 2 of 2.
    labels = np.array([[1, 0], [1, 1], [0, 0], [0, 1]])
    result = detection.corloc(boxes, scores, gt, image_labels=labels)
    assert result['corloc'] == pytest.approx([1 / 2., 1.0])


def test_bad_ground_truth_is_named():
    boxes = [np.array([A])]
    scores = [np.array([[0.5, 0.5]])]
    with pytest.raises(ValueError, match='image 0, object 0: class index 2 not in'):
        detection.corloc(boxes, scores, [[(2,) + A + (0,)]])
    with pytest.raises(ValueError, match='x2 < x1'):
        detection.detection_average_precision(boxes, scores, [[(0, 9, 0, 0, 9, 0)]])
    with pytest.raises(ValueError, match='ground truth lists 2 images, detections 1'):
        detection.corloc(boxes, scores, [[], []])
    with pytest.raises(ValueError, match='object 0: expected'):
        detection.corloc(boxes, scores, [[(0,) + A]])
    with pytest.raises(ValueError, match=r'\(num_boxes, 4\)'):
        detection.iou_matrix([[0, 0, 1]], [A])
