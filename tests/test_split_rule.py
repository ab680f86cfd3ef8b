"""The IR split rule against hand-computed cases (METHODS.md §1 and our own edge cases)."""
import numpy as np
import pytest

from revtune.errors import RevtuneError
from revtune.selection.options import SplitOptions
from revtune.selection.rules import (SENTINEL, VarianceSplitRule, parse_layer_list, split_costs,
                                     variance_split)

SPREAD = [0.9, 0.1, 0.5, 0.3, 0.8, 0.2, 0.7, 0.4, 0.6, 1.0]
STEP = [1.0] * 5 + [5.0] * 5


@pytest.mark.parametrize("scores, splits, expected", [
    (SPREAD, 1, [0, 2, 4, 6, 8, 9]),
    (SPREAD, 2, [0, 4, 6, 9]),
    (STEP, 1, [4, 5, 6, 7, 8, 9]),
    (STEP, 2, [7, 8, 9]),
])
def test_methods_examples(scores, splits, expected):
    assert VarianceSplitRule(SplitOptions(split_num=splits)).choose(np.array(scores)) == expected


def test_costs_by_hand():
    # sorted [1, 2, 4]: k=1 -> 0 + var(2,4)=1 ; k=2 -> var(1,2)=0.25 + 0
    assert split_costs([1.0, 2.0, 4.0]).tolist() == pytest.approx([1.0, 0.25])


def test_exact_boundary_keeps_one_layer_fewer():
    reference = variance_split(SPREAD)
    exact = variance_split(SPREAD, boundary="exact")
    assert len(reference) == len(exact) + 1 and set(exact) < set(reference)
    assert sorted(set(reference) - set(exact)) == [2]  # score 0.5 sits on the boundary


def test_ties_are_broken_by_layer_index():
    # All equal: every cost is 0, j* = the first index (0), so the reference keeps every layer.
    assert variance_split([3.0] * 6) == list(range(6))
    assert variance_split([3.0] * 6, boundary="exact") == list(range(1, 6))


def test_minimum_outside_window_is_ignored():
    # The global minimum cut (after the first layer) lies below the window, so the window's own
    # minimum decides: n=10, window V[3..6].
    scores = [0.0] + [10.0 + i for i in range(9)]
    costs = split_costs(sorted(scores))
    assert int(np.argmin(costs)) == 0
    kept = variance_split(scores)
    j_star = 3 + int(np.argmin(costs[3:7]))
    assert kept == list(range(j_star, 10))


def test_tiny_inputs_keep_everything():
    assert variance_split([0.4]) == [0]
    assert variance_split([0.4, 0.1]) == [0, 1]
    assert variance_split({7: 1.0, 3: 2.0}) == [3, 7]


def test_low_side_for_cosine():
    # Low similarity = the layer changes its input most; keep L_0..L_{j*-1}.
    kept = variance_split(STEP, keep="low", q2_offset=-1)
    assert kept == [0, 1, 2, 3]
    assert variance_split(STEP, keep="low", q2_offset=-1, boundary="exact") == [0, 1, 2, 3, 4]


def test_sentinel_scores_are_replaced_by_seeded_random_draws():
    rule = VarianceSplitRule()
    first = rule.stand_in(np.full(8, SENTINEL), np.random.default_rng(3))
    again = rule.stand_in(np.full(8, SENTINEL), np.random.default_rng(3))
    assert np.all(first < 1) and first.tolist() == again.tolist()
    partly = np.array([SENTINEL] * 7 + [0.5])
    assert rule.stand_in(partly, np.random.default_rng(3)) is partly


def test_rule_validates_its_fields():
    with pytest.raises(RevtuneError, match="split_num"):
        SplitOptions(split_num=3)
    with pytest.raises(RevtuneError, match="window"):
        SplitOptions(window=(0.7, 0.3))


@pytest.mark.parametrize("spec, expected", [
    ("0-3", [0, 1, 2, 3]), ("-1", [9]), ("-3--1", [7, 8, 9]), ("top2,0", [0, 8, 9]),
    ("mid4", [3, 4, 5, 6]), ("bottom3", [0, 1, 2]), ("5, 5 ,1", [1, 5]),
])
def test_layer_lists(spec, expected):
    assert parse_layer_list(spec, 10) == expected


@pytest.mark.parametrize("spec, message", [
    ("10", "outside the model's layers 0-9"), ("-11", "outside"), ("top11", "asks for 11 of 10"),
    ("first", "bad layer 'first'"), ("", "selects no layer"),
])
def test_layer_list_errors(spec, message):
    with pytest.raises(RevtuneError, match=message):
        parse_layer_list(spec, 10)
