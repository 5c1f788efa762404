"""The one seeded sampler of users, subjects and candidate items, with one policy.

Policy: a probe that cannot be fed (the catalog has no user histories, no user qualifies, too
few candidates, no subjects in the catalog) raises :class:`recaudit.errors.ProbeCannotRun`
with the reason; the audit records it as the probe's status and goes on. It is never a
:class:`~recaudit.errors.DataError` (which stops the whole audit) nor a bare ``ValueError``.

Seeding: :class:`UserSampler` owns one ``numpy.random.default_rng(seed)``. Users are drawn
from the eligible ones in :func:`~recaudit.probes.histories.user_sort_key` order, either as a
sample without replacement (:meth:`UserSampler.pick`, then each user's shown history from the
same generator) or as a seeded order to walk (:meth:`UserSampler.order`), so a probe that keeps
drawing from ``sampler.rng`` (popularity's swaps, position's negatives) stays reproducible.
Two probes with the same settings draw the same users and histories.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from ..errors import DataError, ProbeCannotRun
from .histories import history_ids, select_history, user_sort_key

__all__ = ["ProbeCannotRun", "SampledUser", "UserSampler", "draw_candidates", "require",
           "sample_histories", "sample_subjects"]


def require(condition: Any, reason: str) -> None:
    """Raise :class:`~recaudit.errors.ProbeCannotRun` with ``reason`` unless ``condition``."""
    if not condition:
        raise ProbeCannotRun(reason)


@dataclass
class SampledUser:
    """One sampled user: the shown training items, the held-out ids and the split frames."""

    user_id: str
    history: list[str]
    held_out: list[str]
    train: Any = field(default=None, repr=False)  # pandas.DataFrame of training interactions
    test: Any = field(default=None, repr=False)


class UserSampler:
    """Users with at least ``min_train`` training and ``min_test`` held-out interactions.

    Parameters
    ----------
    catalog
        A :class:`~recaudit.catalog.Catalog` with interactions.
    min_train, min_test
        The eligibility rule (interactions in the train and the test split).
    seed
        Seeds :attr:`rng`, the one generator of every later draw.
    knob
        The parameter named in the reason when no user qualifies ("lower <knob>").

    Raises
    ------
    ProbeCannotRun
        The catalog has no user histories, or no user qualifies.
    """

    def __init__(self, catalog: Any, *, min_train: int, seed: int, min_test: int = 1,
                 knob: str = "history_items") -> None:
        self.catalog = catalog
        self.min_train, self.min_test = int(min_train), int(min_test)
        if getattr(catalog, "interactions", None) is None:
            raise ProbeCannotRun(
                f"catalog {getattr(catalog, 'name', '?')!r} has no interactions; the probe needs "
                "user histories (use catalog source movielens or give an interactions file)")
        try:
            self.eligible = self._eligible()
        except DataError as err:  # a catalog without histories
            raise ProbeCannotRun(str(err)) from None
        held = "a held-out item" if self.min_test == 1 else f">= {self.min_test} held-out items"
        require(self.eligible, f"no user has >= {self.min_train} training interactions and "
                               f"{held}; lower {knob}")
        self.rng = np.random.default_rng(seed)

    def _eligible(self) -> list[Any]:
        catalog = self.catalog
        users = sorted(catalog.user_ids(), key=user_sort_key)
        if hasattr(catalog, "split"):  # count both splits at once instead of per user
            n_train = catalog.split("train")["user_id"].astype(str).value_counts()
            n_test = catalog.split("test")["user_id"].astype(str).value_counts()
            return [u for u in users if n_train.get(str(u), 0) >= self.min_train
                    and n_test.get(str(u), 0) >= self.min_test]
        return [u for u in users if len(catalog.history(u, split="train")) >= self.min_train
                and len(catalog.history(u, split="test")) >= self.min_test]

    def pick(self, n: int) -> list[Any]:
        """``min(n, eligible)`` users drawn without replacement (``rng.choice``)."""
        idx = self.rng.choice(len(self.eligible), size=min(n, len(self.eligible)), replace=False)
        return [self.eligible[int(i)] for i in idx]

    def order(self) -> Iterator[Any]:
        """Every eligible user once, in a seeded random order (``rng.permutation``)."""
        for i in self.rng.permutation(len(self.eligible)):
            yield self.eligible[int(i)]

    def user(self, user_id: Any, history_items: int, sampling: str = "random") -> SampledUser:
        """Return one user's shown history and held-out items.

        The history is chosen by :func:`~recaudit.probes.histories.select_history`, drawn from
        :attr:`rng`.
        """
        train = self.catalog.history(user_id, split="train")
        test = self.catalog.history(user_id, split="test")
        try:
            shown = select_history(train, history_items, sampling, self.rng)
        except ValueError as err:  # e.g. top_rated without ratings: the data cannot feed it
            raise ProbeCannotRun(str(err)) from None
        return SampledUser(user_id=str(user_id), history=shown, held_out=history_ids(test),
                           train=train, test=test)

    def histories(self, n: int, history_items: int, sampling: str = "random"
                  ) -> Iterator[SampledUser]:
        """Yield :meth:`pick` of ``n`` users, then each one's :meth:`user`, lazily.

        Lazily, so a caller may draw from :attr:`rng` between two users and stay reproducible.
        """
        for u in self.pick(n):
            yield self.user(u, history_items, sampling)


def sample_histories(catalog: Any, *, n_users: int, history_items: int, seed: int,
                     sampling: str = "random") -> list[SampledUser]:
    """Sample ``n_users`` users, each with ``history_items`` shown items.

    Users need >= ``history_items`` training items and a held-out item (the profile probe's
    users; seeded by ``seed``).
    """
    sampler = UserSampler(catalog, min_train=history_items, seed=seed)
    return list(sampler.histories(n_users, history_items, sampling))


def draw_candidates(rng: np.random.Generator, pool: Sequence[Any], n: int,
                    accept: Callable[[Any, list[Any]], bool], picked: list[Any] | None = None
                    ) -> list[Any]:
    """Walk ``pool`` in a seeded random order, keeping items ``accept(item, picked)`` allows.

    Stops when ``n`` are picked (fewer when the pool runs out; the caller decides what that
    means).
    """
    picked = [] if picked is None else picked
    for j in rng.permutation(len(pool)):
        if len(picked) >= n:
            break
        item = pool[int(j)]
        if accept(item, picked):
            picked.append(item)
    return picked


def sample_subjects(source: Any, catalog: Any) -> list[str]:
    """Return the subjects of a :class:`~recaudit.probes.subjects.SubjectSource`.

    A catalog source with no catalog data to draw from raises
    :class:`~recaudit.errors.ProbeCannotRun`.
    """
    try:
        return source.resolve(catalog)
    except DataError as err:
        raise ProbeCannotRun(f"subjects: {err}") from None
