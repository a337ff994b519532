"""Classification metrics of tools/mlic/evaluation.py: hand-worked examples and scikit-learn."""
import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from mlic import evaluation


def test_average_precision_hand_worked():
    # Ranked: 0.9(+) 0.8(-) 0.7(+) 0.6(-) 0.5(+); precision at the positives 1/1, 2/3, 3/5.
    # AP = (1 + 2/3 + 3/5) / 3 = 34/45.
    ap = evaluation.average_precision([0.9, 0.8, 0.7, 0.6, 0.5], [1, 0, 1, 0, 1])
    assert ap == pytest.approx(34.0 / 45.0)


def test_average_precision_drops_ignored_entries():
    # Image 1 (score 0.8) is ignored; ranked 0.9(+) 0.7(+) 0.6(-) 0.5(+):
    # precisions 1/1, 2/2, 3/4 -> AP = (1 + 1 + 0.75) / 3 = 11/12.
    ap = evaluation.average_precision([0.9, 0.8, 0.7, 0.6, 0.5], [1, -1, 1, 0, 1])
    assert ap == pytest.approx(11.0 / 12.0)


def test_average_precision_tie_group_shares_precision():
    # 0.9(-), then the tie group {0.5(+), 0.5(-)} read as one threshold: precision after it 1/3;
    # then 0.1(+): 2/4. AP = (1/3 + 1/2) / 2 = 5/12, whatever the order of the tied images.
    for scores, targets in (([0.9, 0.5, 0.5, 0.1], [0, 1, 0, 1]),
                            ([0.9, 0.5, 0.5, 0.1], [0, 0, 1, 1])):
        assert evaluation.average_precision(scores, targets) == pytest.approx(5.0 / 12.0)


def test_average_precision_without_positives_is_nan():
    assert np.isnan(evaluation.average_precision([0.3, 0.2], [0, -1]))


@pytest.mark.parametrize('seed', range(5))
def test_average_precision_matches_sklearn(seed):
    rng = np.random.RandomState(seed)
    num_images = 200
    targets = (rng.rand(num_images) < 0.3).astype(int)
    tie_free = rng.rand(num_images)
    tied = np.round(rng.rand(num_images), 1)  # many ties: sklearn groups them as we do
    for scores in (tie_free, tied):
        assert evaluation.average_precision(scores, targets) == pytest.approx(
            average_precision_score(targets, scores), abs=1e-12)


def test_map_matches_sklearn_with_ignored_entries():
    rng = np.random.RandomState(7)
    scores = rng.rand(150, 6)
    targets = (rng.rand(150, 6) < 0.25).astype(int)
    targets[rng.rand(150, 6) < 0.1] = -1
    result = evaluation.evaluate(scores, targets)
    expected = [average_precision_score(targets[targets[:, c] != -1, c] == 1,
                                        scores[targets[:, c] != -1, c]) for c in range(6)]
    assert result['per_class_ap'] == pytest.approx(expected, abs=1e-12)
    assert result['mAP'] == pytest.approx(np.mean(expected), abs=1e-12)


# Three images, four classes; class 2 has no positive, class 3 is never predicted.
SCORES = np.array([[0.9, 0.6, 0.2, 0.1],
                   [0.4, 0.7, 0.55, 0.2],
                   [0.8, 0.3, 0.1, 0.3]])
TARGETS = np.array([[1, 0, 0, 0],
                    [1, 1, 0, 0],
                    [0, 1, 0, 1]])


def test_evaluate_hand_worked():
    result = evaluation.evaluate(SCORES, TARGETS)
    # AP: class 0 ranks 0.9(+) 0.8(-) 0.4(+) -> (1 + 2/3)/2 = 5/6; class 1 ranks 0.7(+) 0.6(-)
    # 0.3(+) -> 5/6; class 2 has no positive (left out); class 3: 0.3(+) first -> 1.
    # mAP = (5/6 + 5/6 + 1) / 3 = 8/9.
    assert result['per_class_ap'][2] is None
    assert result['per_class_ap'][3] == pytest.approx(1.0)
    assert result['mAP'] == pytest.approx(8.0 / 9.0)
    assert result['num_classes_evaluated'] == 3
    assert result['num_classes_without_positives'] == 1
    # Predicted (>= 0.5): image 0 {0, 1}, image 1 {1, 2}, image 2 {0}.
    # Per class (Nc, Np, Ng): c0 (1, 2, 2), c1 (1, 2, 2), c2 (0, 1, 0), c3 (0, 0 -> 1, 1).
    # CP = mean(1/2, 1/2, 0/1) = 1/3 and CR = mean(1/2, 1/2, 0/1) = 1/3 over classes with
    # positives; F1-C = 1/3. OP = 2 / (2+2+1+0) = 2/5, OR = 2 / (2+2+0+1) = 2/5, F1-O = 2/5.
    expected = {'CP': 1 / 3., 'CR': 1 / 3., 'F1-C': 1 / 3., 'OP': 0.4, 'OR': 0.4, 'F1-O': 0.4}
    for name, value in expected.items():
        assert result['all'][name] == pytest.approx(value), name


def test_set_metrics_skip_ignored_entries():
    targets = TARGETS.copy()
    targets[2, 0] = -1  # the false positive of class 0 becomes ignored
    result = evaluation.evaluate(SCORES, targets)
    # c0 is now (Nc, Np, Ng) = (1, 1, 2): CP = mean(1, 1/2, 0) = 1/2, CR unchanged 1/3,
    # F1-C = 2 (1/2)(1/3) / (5/6) = 2/5. OP = 2/4, OR = 2/5, F1-O = 2 (1/2)(2/5) / (9/10) = 4/9.
    assert result['all']['CP'] == pytest.approx(0.5)
    assert result['all']['CR'] == pytest.approx(1 / 3.)
    assert result['all']['F1-C'] == pytest.approx(0.4)
    assert result['all']['OP'] == pytest.approx(0.5)
    assert result['all']['OR'] == pytest.approx(0.4)
    assert result['all']['F1-O'] == pytest.approx(4.0 / 9.0)


def test_top3_hand_worked():
    scores = np.array([[0.9, 0.8, 0.7, 0.6, 0.1],
                       [0.2, 0.55, 0.3, 0.95, 0.5]])
    targets = np.array([[1, 0, 0, 1, 0],
                        [0, 1, 0, 1, 1]])
    result = evaluation.evaluate(scores, targets)
    # All labels >= 0.5: image 0 {0, 1, 2, 3}, image 1 {1, 3, 4}.
    # (Nc, Np, Ng): c0 (1,1,1) c1 (1,2,1) c2 (0,1,0: left out of CP/CR) c3 (2,2,2) c4 (1,1,1).
    # CP = mean(1, 1/2, 1, 1) = 7/8, CR = 1, F1-C = 2 (7/8) / (15/8) = 14/15.
    # OP = 5/7, OR = 5/5, F1-O = 2 (5/7) / (12/7) = 5/6.
    expected_all = {'CP': 7 / 8., 'CR': 1.0, 'F1-C': 14 / 15., 'OP': 5 / 7., 'OR': 1.0,
                    'F1-O': 5 / 6.}
    # Top-3: image 0 keeps {0, 1, 2} (class 3 at 0.6 is 4th), image 1 keeps {3, 1, 4} (0.5 is
    # still >= 0.5). c3 becomes (1, 1, 2): CP = 7/8, CR = mean(1, 1, 1/2, 1) = 7/8, F1-C = 7/8.
    # OP = 4/6, OR = 4/5, F1-O = 2 (2/3)(4/5) / (22/15) = 8/11.
    expected_top3 = {'CP': 7 / 8., 'CR': 7 / 8., 'F1-C': 7 / 8., 'OP': 2 / 3., 'OR': 0.8,
                     'F1-O': 8 / 11.}
    for name in evaluation.SET_METRICS:
        assert result['all'][name] == pytest.approx(expected_all[name]), name
        assert result['top3'][name] == pytest.approx(expected_top3[name]), name


def test_top3_needs_threshold_too():
    # Only one score reaches 0.5, so top-3 predicts one label.
    mask = evaluation.top_k_mask([[0.1, 0.6, 0.3, 0.2]], 3)
    assert mask.tolist() == [[False, True, True, True]]
    result = evaluation.evaluate([[0.1, 0.6, 0.3, 0.2]], [[1, 1, 0, 0]])
    # Predicted {1}: OP = 1/1, OR = 1/2.
    assert result['top3']['OP'] == pytest.approx(1.0)
    assert result['top3']['OR'] == pytest.approx(0.5)


def test_format_row_and_per_class():
    result = evaluation.evaluate(SCORES, TARGETS)
    row = evaluation.format_row(result, 'Student')
    assert row.startswith('| Student | 88.9 | 33.3 |')
    assert row.count('|') == len(evaluation.TABLE_COLUMNS) + 2
    assert evaluation.format_header().splitlines()[0].count('|') == row.count('|')
    assert 'top5 F1-O' in evaluation.format_header(5) and 'top3' not in evaluation.format_header(5)
    table = evaluation.format_per_class(result, ['a', 'b', 'c', 'd'])
    assert '| c | n/a |' in table and '| d | 100.0 |' in table


@pytest.mark.parametrize('scores, targets, message', [
    (np.zeros(3), np.zeros(3), 'num_images, num_classes'),
    (np.zeros((2, 3)), np.zeros((3, 2)), 'differs'),
    (np.array([[0.1, np.nan]]), np.array([[1, 0]]), r'scores\[0, 1\]'),
    (np.zeros((1, 2)), np.array([[1, 2]]), r'targets\[0, 1\] = 2'),
    (np.zeros((1, 2)), np.array([[0, -1]]), 'no class has a positive'),
])
def test_bad_input_is_named(scores, targets, message):
    with pytest.raises(ValueError, match=message):
        evaluation.evaluate(scores, targets)


# ---- warnings before a table

def labelled_split(num_images, num_classes, seed=0):
    """Labels with every class positive on about a third of the images (at least once)."""
    rng = np.random.RandomState(seed)
    labels = (rng.uniform(size=(num_images, num_classes)) < 0.35).astype(int)
    labels[np.arange(num_classes) % num_images, np.arange(num_classes)] = 1
    return labels


def test_score_spread_is_the_largest_per_class_std_over_images():
    scores = np.array([[0.2, 0.5], [0.4, 0.5], [0.6, 0.5]])
    assert evaluation.score_spread(scores) == pytest.approx(np.std([0.2, 0.4, 0.6]))
    assert evaluation.score_spread(np.full((5, 3), 0.3)) == 0.0


def test_a_model_whose_scores_ignore_the_image_is_named():
    labels = labelled_split(200, 4)
    rng = np.random.RandomState(1)
    prior = labels.mean(axis=0)
    # The failure seen: the label prior plus a drift of 1e-4 that still ranks the images.
    flat = prior + 1e-4 * rng.uniform(size=labels.shape)
    learned = np.clip(0.6 * labels + 0.4 * rng.uniform(size=labels.shape), 0, 1)
    results = [('Teacher', evaluation.evaluate(flat, labels)),
               ('Student', evaluation.evaluate(learned, labels))]
    found = evaluation.warnings(results, ['a', 'b', 'c', 'd'])
    assert len(found) == 1
    assert found[0].startswith('Teacher: its scores hardly depend on the image')
    assert 'across the 200 test images' in found[0]
    # Noise can still give such a model a respectable-looking mAP: the reason to warn.
    assert results[0][1]['mAP'] > 0.2
    assert evaluation.warnings(results[1:]) == []


def test_a_tiny_split_and_classes_without_or_with_few_positives_are_named():
    labels = labelled_split(30, 4)
    labels[:, 1] = 0
    labels[:2, 1] = -1          # a difficult-only class: ignored, never positive
    labels[:, 3] = 0
    labels[:2, 3] = 1           # two positives
    scores = np.clip(0.5 * labels + 0.5 * np.random.RandomState(2).uniform(size=labels.shape),
                     0, 1)
    result = evaluation.evaluate(scores, labels)
    found = evaluation.warnings([('Model', result)], ['circle', 'square', 'star', 'ring'])
    assert found[0].startswith('the test split has only 30 images (fewer than 100)')
    assert found[1].startswith('classes without a positive test image (1 of 4): square. They '
                               'have no AP and are left out of mAP, CP and CR')
    assert 'mAP is the mean over the other 3' in found[1]
    assert found[2] == ('classes with fewer than 5 positive test images: ring (2). The AP of a '
                        'class with n positives moves by up to 1/n when one image does')
    text = evaluation.format_warnings(found)
    assert text.count('WARNING: ') == 3 and text.endswith('.\n')
    markdown = evaluation.format_warnings(found, markdown=True)
    assert markdown.count('> **WARNING**: ') == 3


def test_results_without_the_new_keys_are_still_checked():
    labels = labelled_split(150, 3)
    labels[:, 2] = 0
    result = evaluation.evaluate(np.random.RandomState(3).uniform(size=labels.shape), labels)
    del result['score_spread'], result['positives_per_class']
    found = evaluation.warnings([('Old', result)], ['x', 'y', 'z'])
    assert len(found) == 1 and found[0].startswith('classes without a positive test image '
                                                   '(1 of 3): z.')
