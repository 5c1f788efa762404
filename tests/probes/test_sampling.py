"""The one sampler (recaudit/probes/sampling.py): the same seed draws the same users as the
probes drew before it, and a probe that cannot be fed gets ProbeCannotRun with the reason (a
probe status), never an audit abort."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recaudit.audit import run_audit
from recaudit.catalog import Catalog
from recaudit.config import parse_config
from recaudit.errors import ProbeCannotRun
from recaudit.probes.histories import history_ids, select_history, user_sort_key
from recaudit.probes.sampling import (UserSampler, draw_candidates, require, sample_histories,
                                      sample_subjects)
from recaudit.probes.subjects import SubjectSource

from .synthetic_catalog import synthetic_catalog


@pytest.fixture(scope="module")
def catalog():
    return synthetic_catalog()


def _drawn_before(catalog, n_users, history_items, sampling, seed):
    """The draw profile.py made before the sampler existed (its code, inlined)."""
    candidates = sorted(catalog.user_ids(), key=user_sort_key)
    n_train = catalog.split("train")["user_id"].astype(str).value_counts()
    n_test = catalog.split("test")["user_id"].astype(str).value_counts()
    eligible = [u for u in candidates if n_train.get(str(u), 0) >= history_items
                and n_test.get(str(u), 0) >= 1]
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(eligible), size=min(n_users, len(eligible)), replace=False)
    out = []
    for i in pick:
        u = eligible[int(i)]
        train = catalog.history(u, split="train")
        out.append((str(u), select_history(train, history_items, sampling, rng),
                    history_ids(catalog.history(u, split="test"))))
    return out


@pytest.mark.parametrize("sampling", ["random", "top_rated", "recent"])
@pytest.mark.parametrize("seed", [0, 5])
def test_same_seed_same_users_as_before(catalog, sampling, seed):
    users = sample_histories(catalog, n_users=6, history_items=5, seed=seed, sampling=sampling)
    assert [(u.user_id, u.history, u.held_out) for u in users] == _drawn_before(
        catalog, 6, 5, sampling, seed)
    again = sample_histories(catalog, n_users=6, history_items=5, seed=seed, sampling=sampling)
    assert [u.user_id for u in again] == [u.user_id for u in users]


def test_another_seed_draws_other_users(catalog):
    a = [u.user_id for u in sample_histories(catalog, n_users=6, history_items=5, seed=0)]
    b = [u.user_id for u in sample_histories(catalog, n_users=6, history_items=5, seed=1)]
    assert a != b and len(set(a)) == 6


def test_order_walks_every_eligible_user_in_a_seeded_permutation(catalog):
    s = UserSampler(catalog, min_train=3, seed=4)
    expected = [s.eligible[int(i)] for i in np.random.default_rng(4).permutation(
        len(s.eligible))]
    assert list(s.order()) == expected and len(expected) == 24


def test_draws_between_users_share_one_generator(catalog):
    """A probe drawing from ``sampler.rng`` between two users (popularity's swaps) gets the
    draw it got when it owned the generator."""
    s = UserSampler(catalog, min_train=5, seed=2)
    got = []
    for user in s.histories(3, 5):
        got.append((user.user_id, user.history, int(s.rng.integers(1000))))
    rng = np.random.default_rng(2)
    pick = rng.choice(len(s.eligible), size=3, replace=False)
    want = []
    for i in pick:
        u = s.eligible[int(i)]
        hist = select_history(catalog.history(u, split="train"), 5, "random", rng)
        want.append((u, hist, int(rng.integers(1000))))
    assert got == want


def test_draw_candidates_stops_at_n_and_honours_accept():
    rng = np.random.default_rng(0)
    order = np.random.default_rng(0).permutation(10)
    picked = draw_candidates(rng, list(range(10)), 3, lambda item, picked: item % 2 == 0,
                             picked=[99])
    assert picked == [99] + [int(i) for i in order if i % 2 == 0][:2]
    assert draw_candidates(np.random.default_rng(0), [1, 3], 5, lambda i, p: True) != []
    assert len(draw_candidates(np.random.default_rng(0), [1, 3], 5, lambda i, p: True)) == 2


# -- cannot feed: ProbeCannotRun with the reason ---------------------------------------------------
def test_no_interactions():
    items = pd.DataFrame({"item_id": ["a"], "title": ["A (1990)"]})
    with pytest.raises(ProbeCannotRun) as err:
        UserSampler(Catalog.from_dataframe(items, name="bare"), min_train=1, seed=0)
    assert err.value.reason == ("catalog 'bare' has no interactions; the probe needs user "
                                "histories (use catalog source movielens or give an "
                                "interactions file)")


def test_no_eligible_user_names_the_knob(catalog):
    with pytest.raises(ProbeCannotRun) as err:
        UserSampler(catalog, min_train=99, seed=0, knob="min_history")
    assert err.value.reason == ("no user has >= 99 training interactions and a held-out item; "
                                "lower min_history")
    with pytest.raises(ProbeCannotRun, match=">= 4 held-out items; lower history_items"):
        UserSampler(catalog, min_train=1, min_test=4, seed=0)


class _UnratedCatalog:
    """A duck-typed catalog whose interactions have no rating column (and no ``split``)."""

    interactions = pd.DataFrame({"user_id": ["u"] * 4, "item_id": list("abcd"),
                                 "timestamp": [1, 2, 3, 4]})

    def user_ids(self):
        return ["u"]

    def history(self, user_id, split="train"):
        rows = self.interactions
        return (rows.iloc[:3] if split == "train" else rows.iloc[3:]).reset_index(drop=True)


def test_top_rated_without_ratings():
    users = sample_histories(_UnratedCatalog(), n_users=1, history_items=2, seed=0)
    assert users[0].history in (["a", "b"], ["a", "c"], ["b", "c"])  # random: fine
    with pytest.raises(ProbeCannotRun, match="sampling 'top_rated' needs ratings"):
        sample_histories(_UnratedCatalog(), n_users=1, history_items=2, seed=0,
                         sampling="top_rated")


def test_a_catalog_source_with_nothing_to_draw(catalog):
    with pytest.raises(ProbeCannotRun, match="source 'catalog_genres' yielded no subjects"):
        sample_subjects(SubjectSource(source="catalog_genres"), catalog)  # no genres


def test_a_catalog_without_data_for_subjects():
    from recaudit.catalog import OpenCatalog

    with pytest.raises(ProbeCannotRun, match="subjects: popular items needs a catalog"):
        sample_subjects(SubjectSource(), OpenCatalog())


def test_require():
    require(True, "never")
    with pytest.raises(ProbeCannotRun, match="too few candidates"):
        require([], "too few candidates")


def test_a_probe_that_cannot_be_fed_is_skipped_and_the_audit_goes_on(catalog, tmp_path):
    """Before, popularity raised DataError here, which stopped the whole audit."""
    cfg = parse_config({
        "model": "python:tests.probes.synthetic_recommenders:ignore",
        "engine": {"cache": str(tmp_path / "c.sqlite"), "progress": False},
        "stats": {"n_bootstrap": 50, "n_permutations": 99, "min_group_size": 2},
        "probes": [{"probe": "popularity", "params": {"history_items": 99}},
                   {"probe": "profile", "params": {"n_users": 3, "history_items": 4, "k": 3,
                                                   "intersection": False}}]})
    result = run_audit(cfg, catalog=catalog, progress=False)
    skipped, ran = result.probe("popularity"), result.probe("profile")
    assert skipped.status == "skipped" and skipped.skip_kind == "no_data"
    assert skipped.error.endswith("no user has >= 99 training interactions and a held-out "
                                  "item; lower history_items")
    assert ran.status == "ok", ran.error
