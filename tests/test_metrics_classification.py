"""Classification metrics against values derived by hand (METHODS.md section 1, "Metrics")."""
import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from revtune.errors import RevtuneError
from revtune.metrics.classification import THRESHOLD_GRID, classification_metrics, tune_threshold

# Single label, 3 classes. Predictions (argmax) [0, 1, 1, 0] against labels [0, 0, 1, 2]:
#   accuracy 2/4.
#   a: predicted {0, 3}, true {0, 1}: P 1/2, R 1/2, F 1/2
#   b: predicted {1, 2}, true {2}:    P 1/2, R 1,   F 2/3
#   c: never predicted, true {3}:     P 0 (0/0 -> 0), R 0, F 0
#   macro P 1/3, R 1/2, F (1/2 + 2/3)/3 = 7/18
# AU-PRC one-vs-rest on the logit columns, items ranked by score:
#   a: col [2, 1, 0, 3] -> 3(neg) 0(pos) 1(pos) 2(neg): AP = (1/2 + 2/3)/2 = 7/12
#   b: col [1, 3, 2, 0] -> 1(neg) 2(pos): AP = 1/2
#   c: col [0, 0, 1, 2] -> 3(pos) first: AP = 1
#   macro (7/12 + 1/2 + 1)/3 = 25/36
LABELS = np.array([0, 0, 1, 2])
LOGITS = np.array([[2.0, 1, 0], [1, 3, 0], [0, 2, 1], [3, 0, 2]])


def test_single_label_by_hand():
    m = classification_metrics(LABELS, LOGITS, ["a", "b", "c"])
    assert m["accuracy"] == pytest.approx(0.5)
    assert m["macro_precision"] == pytest.approx(1 / 3)
    assert m["macro_recall"] == pytest.approx(1 / 2)
    assert m["macro_f1"] == pytest.approx(7 / 18)
    assert m["au_prc"] == pytest.approx(25 / 36)
    assert m["per_class"]["b"] == pytest.approx({"precision": 0.5, "recall": 1.0, "f1": 2 / 3, "support": 1})
    assert m["per_class"]["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert isinstance(m["per_class"]["a"]["support"], int)


def test_single_label_au_prc_agrees_with_sklearn_multiclass_when_all_classes_occur():
    assert classification_metrics(LABELS, LOGITS, ["a", "b", "c"])["au_prc"] == pytest.approx(
        average_precision_score(LABELS, LOGITS, average="macro"))


# A fourth class "d" that is neither a label nor ever predicted (its logits are lowest) is left out
# of the macro averages and of AU-PRC, so every average is unchanged; it still gets a per-class row.
def test_class_absent_from_labels_and_predictions_is_skipped():
    logits = np.hstack([LOGITS, np.full((4, 1), -5.0)])
    m = classification_metrics(LABELS, logits, ["a", "b", "c", "d"])
    assert m["macro_f1"] == pytest.approx(7 / 18)
    assert m["au_prc"] == pytest.approx(25 / 36)
    assert m["per_class"]["d"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}


# A class predicted but absent from the labels counts in the macro P/R/F1 (it is a real mistake)
# but not in AU-PRC (no positive item to rank). Labels [0, 0], predictions [0, 1]:
#   a: P 1, R 1/2, F 2/3; b: P 0, R 0 (0/0), F 0 -> macro F 1/3.  AP(a) on col [2, 0]: 1.
def test_class_predicted_but_absent_from_labels():
    m = classification_metrics([0, 0], [[2.0, 1], [0, 1]], ["a", "b"])
    assert m["macro_f1"] == pytest.approx(1 / 3)
    assert m["macro_precision"] == pytest.approx(1 / 2)
    assert m["au_prc"] == pytest.approx(1.0)


# Multi-label, 2 intents, threshold 0.5 on sigmoid(logits):
#   sigmoids col0 [.88, .62, .05], col1 [.475, .450, .731] -> predictions [[1,0],[1,0],[0,1]]
#   labels [[1,0],[1,1],[0,1]]: exact-match accuracy 2/3 (row 1 misses intent 1)
#   intent 0: P 1, R 1, F 1; intent 1: predicted {2}, true {1, 2}: P 1, R 1/2, F 2/3
#   macro P 1, R 3/4, F 5/6
#   AP intent 0: both positives ranked first -> 1; intent 1: col [-.1, -.2, 1] -> 2(pos) 0(neg) 1(pos):
#   (1 + 2/3)/2 = 5/6 -> macro 11/12
ML_LABELS = np.array([[1, 0], [1, 1], [0, 1]])
ML_LOGITS = np.array([[2.0, -0.1], [0.5, -0.2], [-3.0, 1.0]])


def test_multi_label_by_hand():
    m = classification_metrics(ML_LABELS, ML_LOGITS, ["x", "y"], multi_label=True)
    assert m["accuracy"] == pytest.approx(2 / 3)
    assert m["macro_precision"] == pytest.approx(1.0)
    assert m["macro_recall"] == pytest.approx(3 / 4)
    assert m["macro_f1"] == pytest.approx(5 / 6)
    assert m["au_prc"] == pytest.approx(11 / 12)
    assert m["per_class"]["y"]["support"] == 2


# Threshold 0.4: intent 1 now predicted for every row (.475, .450 >= .4): P 2/3, R 1, F 4/5;
# row 0 becomes wrong, row 1 right -> accuracy still 2/3; macro F (1 + 4/5)/2 = 9/10.
def test_multi_label_threshold():
    m = classification_metrics(ML_LABELS, ML_LOGITS, ["x", "y"], multi_label=True, threshold=0.4)
    assert m["macro_f1"] == pytest.approx(0.9)
    assert m["accuracy"] == pytest.approx(2 / 3)
    assert m["au_prc"] == pytest.approx(11 / 12)


# Macro F by threshold: t <= .45: intent 0 F 1 (row 2's .047 stays below .05), intent 1 F 4/5
# -> 0.9; .5 <= t <= .6: 5/6; higher is worse. Best 0.9 on 0.05..0.45, ties go to the one
# nearest 0.5: 0.45.
def test_tune_threshold_picks_best_macro_f1_nearest_the_default():
    assert tune_threshold(ML_LABELS, ML_LOGITS) == 0.45
    assert THRESHOLD_GRID[0] == 0.05 and THRESHOLD_GRID[-1] == 0.95 and len(THRESHOLD_GRID) == 19


def test_tune_threshold_moves_up_when_high_thresholds_win():
    # Every positive logit is 3 (sigmoid .95), every negative 2 (.88): only t = 0.9 or 0.95 separates
    # them (F 1); 0.9 is nearer 0.5.
    labels = np.array([[1, 0], [0, 1], [1, 1]])
    logits = np.where(labels == 1, 3.0, 2.0)
    assert tune_threshold(labels, logits) == 0.9


@pytest.mark.parametrize("labels, logits, multi, message", [
    ([0, 1], [[1.0, 0], [0, 1], [1, 1]], False, "labels must have shape"),
    ([0, 3], [[1.0, 0], [0, 1]], False, r"class ids 0\.\.1"),
    ([0, 1], [[1.0, 0, 0], [0, 1, 0]], False, r"logits must have shape \(n >= 1, 2\)"),
    ([[0, 2], [1, 0]], [[1.0, 0], [0, 1]], True, "0/1"),
    ([0, 1], [[1.0, 0], [0, 1]], True, "labels must have shape"),
])
def test_bad_shapes_and_labels_raise(labels, logits, multi, message):
    with pytest.raises(RevtuneError, match=message):
        classification_metrics(labels, logits, ["a", "b"], multi_label=multi)
