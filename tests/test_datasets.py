"""Loaders: bundled MovieLens and IMDb votes, CSV/Parquet readers, column mapping, genre splits."""

from __future__ import annotations

import pandas as pd
import pytest

from recaudit import datasets
from recaudit.errors import DataError


@pytest.fixture(scope="module")
def movielens_frames():
    return datasets.load_movielens_frames()


def test_movielens_frames_counts_and_types(movielens_frames):
    items, inter = movielens_frames
    assert len(items) == 9066 and items["item_id"].is_unique
    assert len(inter) == 100_004
    assert inter["user_id"].nunique() == 671
    assert inter["item_id"].nunique() == 9066
    assert list(items.columns) == ["item_id", "title", "year", "genres"]
    assert list(inter.columns) == list(datasets.INTERACTION_COLUMNS)
    assert str(items["year"].dtype) == "Int64"
    assert inter["timestamp"].dtype == "int64" and inter["rating"].dtype == "float64"
    assert all(isinstance(g, list) for g in items["genres"])
    assert set(inter["item_id"]) == set(items["item_id"])
    # a few movies have no title/year in this sample: kept, as missing
    assert 0 < items["title"].isna().sum() < 10
    assert not any("(no genres listed)" in g for g in items["genres"])
    row = items.set_index("item_id").loc["1"]
    assert row["title"] == "Toy Story" and row["year"] == 1995
    assert row["genres"] == ["Adventure", "Animation", "Children", "Comedy", "Fantasy"]


def test_imdb_votes():
    votes = datasets.imdb_votes()
    assert len(votes) == 58_788
    assert list(votes.columns) == ["title", "year", "votes", "imdb_rating"]
    assert votes["votes"].dtype == "int64"
    assert (votes["votes"] >= 0).all()


def test_split_genres():
    assert datasets.split_genres("A|B") == ["A", "B"]
    assert datasets.split_genres("A; B", ";") == ["A", "B"]
    assert datasets.split_genres("(no genres listed)") == []
    assert datasets.split_genres(float("nan")) == []
    assert datasets.split_genres(None) == []
    assert datasets.split_genres(["A", " B "]) == ["A", "B"]


def test_read_table_errors(tmp_path):
    with pytest.raises(DataError, match="^catalog file not found: "):
        datasets.read_table(tmp_path / "x.csv")
    with pytest.raises(DataError, match="^interactions file not found: "):
        datasets.read_table(tmp_path / "x.csv", what="interactions")
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"")
    with pytest.raises(DataError, match="cannot read"):
        datasets.read_table(bad)
    ok = tmp_path / "ok.csv"
    ok.write_text("a,b\n1,2\n")
    with pytest.raises(DataError, match="unknown table format"):
        datasets.read_table(ok, "xlsx")
    assert datasets.read_table(ok).to_dict("list") == {"a": [1], "b": [2]}


def test_read_interactions_mapping(tmp_path):
    path = tmp_path / "r.csv"
    pd.DataFrame({"u": [1, 2], "i": [10.0, 20.0], "r": [4, 5],
                  "t": ["2020-01-01", "2020-01-02"]}).to_csv(path, index=False)
    out = datasets.read_interactions(path, user_col="u", item_col="i", rating_col="r",
                                     timestamp_col="t")
    assert out["user_id"].tolist() == ["1", "2"]
    assert out["item_id"].tolist() == ["10", "20"]  # integral floats print as ints
    assert out["rating"].tolist() == [4.0, 5.0]
    assert out["timestamp"].tolist() == [1577836800, 1577923200]
    # defaults only used when present
    plain = datasets.read_interactions(pd.DataFrame({"user_id": [1], "item_id": [2]}))
    assert plain["rating"].tolist() == [1.0] and plain["timestamp"].tolist() == [0]
    with pytest.raises(DataError, match="rating column 'score' not found"):
        datasets.read_interactions(path, user_col="u", item_col="i", rating_col="score")
    with pytest.raises(DataError, match="item column 'item_id' not found; available columns: "
                                        "u, i, r, t"):
        datasets.read_interactions(path, user_col="u")
    with pytest.raises(DataError, match="missing user or item ids"):
        datasets.read_interactions(pd.DataFrame({"user_id": [1, None], "item_id": [2, 3]}))
