"""ROC AUC helpers (METRICS.md section 3) against sklearn and hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from recaudit.metrics import auc_binary, auc_macro_ovr


def test_auc_helpers_match_sklearn():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 60)
    s = np.round(rng.random(60), 1)  # ties
    assert auc_binary(y == 1, s) == pytest.approx(roc_auc_score(y, s))
    y3 = np.tile([0, 1, 2], 20)
    p3 = rng.dirichlet(np.ones(3), 60)
    assert auc_macro_ovr(y3, p3) == pytest.approx(
        roc_auc_score(y3, p3, multi_class="ovr", average="macro"))
    # weighted (bootstrap counts) = the AUC of the data with rows repeated
    w = rng.integers(0, 3, (4, 60))
    got = auc_macro_ovr(y3, p3, w.astype(float))
    for b in range(4):
        idx = np.repeat(np.arange(60), w[b])
        assert got[b] == pytest.approx(
            roc_auc_score(y3[idx], p3[idx], multi_class="ovr", average="macro"))
    assert np.isnan(auc_binary(np.ones(5, bool), np.arange(5)))


def test_auc_binary_by_hand_ties_and_degenerate_weights():
    # pairs (0.9, 0.4) (0.9, 0.1) (0.4, 0.1) correct, (0.4, 0.4) a tie: 3.5 / 4
    assert auc_binary([True, True, False, False], [0.9, 0.4, 0.4, 0.1]) == 0.875
    assert auc_binary([True, False], [0.0, 1.0]) == 0.0
    w = np.array([[1.0, 1.0, 1.0, 1.0],    # the unweighted AUC
                  [2.0, 0.0, 1.0, 0.0],    # only (0.9, 0.4): correct
                  [0.0, 0.0, 1.0, 1.0]])   # no positive weight: NaN
    got = auc_binary([True, True, False, False], [0.9, 0.4, 0.4, 0.1], w)
    assert got[:2].tolist() == [0.875, 1.0] and np.isnan(got[2])
    assert np.isnan(auc_binary([False, False], [0.1, 0.2], w[:, :2])).all()


def test_auc_macro_ovr_two_classes_is_the_binary_auc_of_the_second_column():
    y = np.array([0, 1, 1, 0])
    proba = np.array([[0.8, 0.2], [0.3, 0.7], [0.6, 0.4], [0.5, 0.5]])
    assert auc_macro_ovr(y, proba) == auc_binary(y == 1, proba[:, 1]) == 0.75
    assert auc_macro_ovr(np.array([0, 1, 2]), np.eye(3)) == 1.0


def test_leakage_probe_uses_these_helpers():
    from recaudit.probes import leakage

    assert leakage.auc_binary is auc_binary and leakage.auc_macro_ovr is auc_macro_ovr
