"""Group gaps (fairlearn MetricFrame) and between-group inequality (AIF360 definitions)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from recaudit.metrics.fairness import (
    between_group_generalized_entropy,
    between_group_theil_index,
    generalized_entropy_index,
    group_gaps,
)

# A small labelled dataset where AIF360's numbers are easy to get: benefit b = y_pred - y_true + 1.
Y_TRUE = np.array([1, 0, 1, 1, 0, 0, 1, 0, 1, 1, 0, 0])
Y_PRED = np.array([1, 1, 0, 1, 0, 1, 1, 1, 0, 1, 1, 0])
SEX = np.array([0, 0, 0, 1, 1, 1, 1, 0, 1, 1, 0, 0])
RACE = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 2, 1, 0])
BENEFIT = Y_PRED - Y_TRUE + 1


# ------------------------------------------------------------------------------- group gaps


def test_group_gaps_hand_vector():
    values = [1.0, 0.0, 0.5, 0.25, 0.75, 0.9]
    groups = ["f", "f", "m", "m", "x", "x"]
    g = group_gaps(values, groups)
    # means: f 0.5, m 0.375, x 0.825 -> difference 0.45, ratio 0.375 / 0.825.
    assert g.by_group.to_dict() == pytest.approx({"f": 0.5, "m": 0.375, "x": 0.825})
    assert g.counts.to_dict() == {"f": 2, "m": 2, "x": 2}
    assert g.difference == pytest.approx(0.45)
    assert g.ratio == pytest.approx(0.375 / 0.825)
    assert g.by_group_ci is None and g.difference_ci is None


def test_group_gaps_intersectional_groups():
    values = [1.0, 0.0, 0.5, 0.5, 0.2]
    feats = pd.DataFrame({"gender": ["f", "f", "m", "m", "f"],
                          "age": ["young", "old", "young", "young", "young"]})
    g = group_gaps(values, feats)
    # (f, old) 0.0, (f, young) mean(1.0, 0.2) = 0.6, (m, young) 0.5.
    assert g.by_group[("f", "young")] == pytest.approx(0.6)
    assert g.by_group[("f", "old")] == pytest.approx(0.0)
    assert g.counts[("f", "young")] == 2
    # The empty combination (m, old) is reported with 0 units, not dropped.
    assert g.counts[("m", "old")] == 0 and math.isnan(g.by_group[("m", "old")])
    assert g.difference == pytest.approx(0.6)
    assert g.ratio == pytest.approx(0.0)


def test_group_gaps_bootstrap_cis():
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.normal(0.6, 0.1, 60), rng.normal(0.4, 0.1, 60)])
    groups = ["a"] * 60 + ["b"] * 60
    g = group_gaps(values, groups, n_boot=30, random_state=1)
    lo, hi = g.difference_ci
    assert lo <= g.difference <= hi
    assert 0.1 < lo < hi < 0.3
    assert (g.by_group_ci[0] <= g.by_group).all() and (g.by_group <= g.by_group_ci[1]).all()
    assert g.ratio_ci[0] <= g.ratio <= g.ratio_ci[1]
    again = group_gaps(values, groups, n_boot=30, random_state=1)
    assert again.difference_ci == g.difference_ci  # seeded


def test_group_gaps_rejects_nan_and_empty():
    with pytest.raises(ValueError, match="NaN"):
        group_gaps([1.0, float("nan")], ["a", "b"])
    with pytest.raises(ValueError):
        group_gaps([], [])


# -------------------------------------------------------------------- generalized entropy


def test_generalized_entropy_hand_vectors():
    # b = (1, 1, 2, 2): mu = 1.5, r = (2/3, 2/3, 4/3, 4/3).
    b = [1, 1, 2, 2]
    # alpha=2: (mean(r^2) - 1) / 2 = (10/9 - 1) / 2 = 1/18.
    assert generalized_entropy_index(b, alpha=2) == pytest.approx(1 / 18)
    # alpha=1: mean(r ln r) = (2/3 ln(2/3) + 4/3 ln(4/3)) / 2.
    theil = (2 / 3 * math.log(2 / 3) + 4 / 3 * math.log(4 / 3)) / 2
    assert generalized_entropy_index(b, alpha=1) == pytest.approx(theil)
    # alpha=0: -mean(ln r).
    assert generalized_entropy_index(b, alpha=0) == pytest.approx(
        -(math.log(2 / 3) + math.log(4 / 3)) / 2)
    assert generalized_entropy_index([3, 3, 3], alpha=2) == 0.0
    # mu = 1, r = (0, 2): (0 ln 0 + 2 ln 2) / 2 = ln 2.
    assert generalized_entropy_index([0, 2], alpha=1) == pytest.approx(math.log(2))
    assert generalized_entropy_index([0, 2], alpha=0) == math.inf
    assert math.isnan(generalized_entropy_index([0, 0]))
    with pytest.raises(ValueError):
        generalized_entropy_index([-1, 2])


def test_between_group_hand_vector():
    # groups a = (1, 3) -> mean 2, b = (2, 2) -> 2: no between-group inequality.
    assert between_group_generalized_entropy([1, 3, 2, 2], ["a", "a", "b", "b"]) == 0.0
    # a = (0, 2) -> 1, b = (3, 3) -> 3: values (1, 1, 3, 3) -> mu 2, r = (.5, .5, 1.5, 1.5)
    # alpha=2: (mean(r^2) - 1)/2 = ((0.25 + 2.25)/2 - 1)/2 = 0.125.
    assert between_group_generalized_entropy([0, 2, 3, 3], ["a", "a", "b", "b"]) == 0.125


def _aif360_metric():
    from aif360.datasets import BinaryLabelDataset
    from aif360.metrics import ClassificationMetric

    df = pd.DataFrame({"sex": SEX, "label": Y_TRUE})
    truth = BinaryLabelDataset(df=df, label_names=["label"], protected_attribute_names=["sex"])
    pred = truth.copy()
    pred.labels = Y_PRED.reshape(-1, 1).astype(float)
    return ClassificationMetric(truth, pred, unprivileged_groups=[{"sex": 0}],
                                privileged_groups=[{"sex": 1}])


@pytest.mark.parametrize("alpha", [2, 1, 3, 0.5])
def test_matches_aif360_classification_metric(alpha):
    metric = _aif360_metric()
    assert between_group_generalized_entropy(BENEFIT, SEX, alpha=alpha) == pytest.approx(
        metric.between_group_generalized_entropy_index(alpha=alpha), rel=1e-12)
    assert between_group_generalized_entropy(BENEFIT, SEX, alpha=alpha) > 0
    assert generalized_entropy_index(BENEFIT, alpha=alpha) == pytest.approx(
        metric.generalized_entropy_index(alpha=alpha), rel=1e-12)


def test_theil_matches_aif360():
    metric = _aif360_metric()
    assert between_group_theil_index(BENEFIT, SEX) == pytest.approx(
        metric.between_group_theil_index(), rel=1e-12)


def test_alpha_zero_follows_documented_formula_not_aif360_code():
    # AIF360's code for alpha = 0 divides the mean log deviation by mu as well (its docstring
    # does not): ours * (1 / mu) == AIF360's value.
    metric = _aif360_metric()
    mu = BENEFIT.mean()
    ours = between_group_generalized_entropy(BENEFIT, SEX, alpha=0)
    assert ours / mu == pytest.approx(
        metric.between_group_generalized_entropy_index(alpha=0), rel=1e-12)


@pytest.mark.parametrize("alpha", [2, 1])
def test_matches_aif360_sklearn_all_groups(alpha):
    from aif360.sklearn.metrics import between_group_generalized_entropy_error

    y_true = pd.Series(Y_TRUE, index=pd.MultiIndex.from_arrays(
        [np.arange(Y_TRUE.size), RACE], names=["id", "race"]))
    expected = between_group_generalized_entropy_error(y_true, Y_PRED, prot_attr="race",
                                                       alpha=alpha)
    assert between_group_generalized_entropy(BENEFIT, RACE, alpha=alpha) == pytest.approx(
        expected, rel=1e-12)


def test_intersectional_groups_and_validation():
    feats = pd.DataFrame({"sex": SEX, "race": RACE})
    labels = [f"{s}-{r}" for s, r in zip(SEX, RACE)]
    assert between_group_generalized_entropy(BENEFIT, feats) == pytest.approx(
        between_group_generalized_entropy(BENEFIT, labels))
    assert between_group_generalized_entropy(BENEFIT, {"sex": SEX, "race": RACE}) == (
        pytest.approx(between_group_generalized_entropy(BENEFIT, labels)))
    with pytest.raises(ValueError, match="labels"):
        between_group_generalized_entropy([1, 2], ["a"])


def test_group_columns_of_unequal_length_are_refused():
    # A dict of group columns is one table: a column with an extra label used to be truncated
    # silently (zip), so the extra label was ignored; now the ragged table is refused.
    with pytest.raises(ValueError, match="longer"):
        between_group_generalized_entropy([1, 2], {"sex": ["f", "m"], "race": ["a", "b", "c"]})
