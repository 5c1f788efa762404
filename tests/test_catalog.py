"""Catalog: construction, errors, popularity, head/tail split, time split, grounding, identity."""

from __future__ import annotations

import pandas as pd
import pytest

from recaudit.catalog import Catalog
from recaudit.errors import DataError, EXIT_USAGE
from recaudit.grounding import Grounding
from recaudit.metrics.popularity import head_tail_split


# ------------------------------------------------------------------ tiny hand-made catalogues
def _items(ids=("a", "b", "c", "d", "e")) -> pd.DataFrame:
    titles = {"a": "Matrix, The", "b": "Heat", "c": "Alien", "d": "Up", "e": "Fargo"}
    genres = {"a": "Action|Sci-Fi", "b": "Action|Crime", "c": "Horror|Sci-Fi", "d": "Animation",
              "e": "Crime|Drama"}
    return pd.DataFrame({"id": list(ids), "name": [titles[i] for i in ids],
                         "yr": [1999, 1995, 1979, 2009, 1996][:len(ids)],
                         "tags": [genres[i] for i in ids],
                         "studio": ["WB", "WB", "Fox", "Pixar", "Gramercy"][:len(ids)]})


def _cat(pops: dict[str, int], order=None) -> Catalog:
    ids = order or list(pops)
    df = _items(ids)
    df["pop"] = [pops[i] for i in ids]
    return Catalog.from_dataframe(df, "id", "name", popularity_col="pop")


# ------------------------------------------------------------------ head / tail (METRICS §4)
def test_head_tail_crossing_item_included():
    # total 10, 80% = 8: a (5) -> 5, b (2) -> 7, c (2) -> 9 crosses 8 and is included
    head, tail = _cat({"a": 5, "b": 2, "c": 2, "d": 1, "e": 0}).head_tail(0.8)
    assert head == {"a", "b", "c"}
    assert tail == {"d", "e"}


def test_head_tail_exactly_reaching_share_stops_there():
    # a (5) -> 5, b (3) -> 8 == 80% exactly: b is the crossing item, c is tail
    head, tail = _cat({"a": 5, "b": 3, "c": 1, "d": 1, "e": 0}).head_tail(0.8)
    assert head == {"a", "b"} and tail == {"c", "d", "e"}
    # 0.7 * 10 is 7.000000000000001 in floating point: still b (cum 8) crosses, not c
    assert _cat({"a": 5, "b": 3, "c": 1, "d": 1, "e": 0}).head_tail(0.7)[0] == {"a", "b"}


def test_head_tail_ties_keep_catalogue_order():
    # 90% of 10 = 9: a 5, b 8, then the tied 1s: the first in catalogue order crosses
    pops = {"a": 5, "b": 3, "c": 1, "d": 1, "e": 0}
    assert _cat(pops, order=["a", "b", "c", "d", "e"]).head_tail(0.9)[0] == {"a", "b", "c"}
    assert _cat(pops, order=["a", "b", "d", "c", "e"]).head_tail(0.9)[0] == {"a", "b", "d"}


def test_head_tail_zero_popularity_is_tail_even_at_share_one():
    head, tail = _cat({"a": 5, "b": 3, "c": 1, "d": 1, "e": 0}).head_tail(1.0)
    assert head == {"a", "b", "c", "d"} and tail == {"e"}


def test_head_tail_uses_the_metrics_split_and_returns_sets_of_ids():
    pops = {"a": 5, "b": 3, "c": 1, "d": 1, "e": 0}
    cat = _cat(pops)
    for share in (0.3, 0.5, 0.8, 0.81, 1.0):
        head, tail = cat.head_tail(share, split="all")
        assert type(head) is set and type(tail) is set
        assert (head, tail) == tuple(head_tail_split(cat.items["popularity"], share))


def test_head_tail_split_function_and_edge_cases():
    assert head_tail_split({"x": 0, "y": 0}) == (set(), {"x", "y"})
    assert head_tail_split(pd.Series({"x": 1})) == ({"x"}, set())
    with pytest.raises(ValueError):
        head_tail_split({"x": 1}, 0.0)
    with pytest.raises(ValueError):
        head_tail_split({"x": 1}, 1.5)
    with pytest.raises(ValueError):
        head_tail_split({"x": -1}, 0.5)


# ------------------------------------------------------------------ interactions and splits
def _interactions() -> pd.DataFrame:
    # u1: a(t=3) b(t=1) c(t=2) a again (t=4)   -> time order b, c, a, a
    # u2: a(t=5) d(t=5) e(t=1)                  -> e, then a/d tie on t=5: file order a, d
    # u3: b(t=9)
    return pd.DataFrame({
        "uid": ["u1", "u1", "u2", "u1", "u2", "u3", "u1", "u2"],
        "iid": ["a", "b", "a", "c", "d", "b", "a", "e"],
        "stars": [5, 4, 3, 2, 1, 5, 4, 3],
        "when": [3, 1, 5, 2, 5, 9, 4, 1],
    })


def _cat_with_interactions(holdout: int = 1) -> Catalog:
    return Catalog.from_dataframe(_items(), "id", "name", year_col="yr", genres_col="tags",
                                  group_cols=["studio"], interactions=_interactions(),
                                  user_col="uid", item_col="iid", rating_col="stars",
                                  timestamp_col="when", holdout=holdout)


def test_popularity_counts_distinct_users():
    cat = _cat_with_interactions()
    # a: u1 (twice) and u2 -> 2; b: u1, u3; c: u1; d: u2; e: u2
    assert cat.items["popularity"].to_dict() == {"a": 2, "b": 2, "c": 1, "d": 1, "e": 1}
    assert cat.items["popularity"].dtype == "int64"


def test_time_split_per_user():
    cat = _cat_with_interactions(holdout=1)
    assert cat.user_ids() == ["u1", "u2", "u3"]
    assert cat.history("u1", "all")["item_id"].tolist() == ["b", "c", "a", "a"]
    assert cat.history("u1")["item_id"].tolist() == ["b", "c", "a"]
    assert cat.history("u1", "test")["item_id"].tolist() == ["a"]
    # ties on the timestamp keep the file order: a before d, so d is the last one
    assert cat.history("u2", "train")["item_id"].tolist() == ["e", "a"]
    assert cat.history("u2", "test")["item_id"].tolist() == ["d"]
    # a user with <= holdout interactions has an empty train split
    assert cat.history("u3", "train").empty
    assert cat.history("u3", "test")["item_id"].tolist() == ["b"]
    h = cat.history("u1")
    assert list(h.columns) == ["user_id", "item_id", "rating", "timestamp"]
    assert h["rating"].tolist() == [4.0, 2.0, 5.0]
    with pytest.raises(DataError, match="unknown user"):
        cat.history("nobody")
    with pytest.raises(ValueError):
        cat.history("u1", "validation")


def test_holdout_two_and_zero():
    cat = _cat_with_interactions(holdout=2)
    assert cat.history("u1", "test")["item_id"].tolist() == ["a", "a"]
    assert cat.history("u2", "train")["item_id"].tolist() == ["e"]
    cat0 = _cat_with_interactions(holdout=0)
    assert cat0.history("u1", "test").empty
    assert len(cat0.split("train")) == 8


def test_train_popularity_ignores_held_out_items():
    cat = _cat_with_interactions(holdout=1)
    # train: u1 b,c,a ; u2 e,a ; u3 nothing -> a 2, b 1, c 1, d 0, e 1
    assert cat.train_popularity().to_dict() == {"a": 2, "b": 1, "c": 1, "d": 0, "e": 1}
    # head/tail on the train split: total 5, 80% = 4 -> a (2), b (3), c (4) crosses
    assert cat.head_tail(0.8) == ({"a", "b", "c"}, {"d", "e"})
    # on all interactions (a 2, b 2, c 1, d 1, e 1; total 7, 5.6): a, b, c (5), d (6) crosses
    assert cat.head_tail(0.8, split="all") == ({"a", "b", "c", "d"}, {"e"})
    assert cat.most_popular(2, split="train") == ["a", "b"]


def test_without_interactions():
    cat = _cat({"a": 5, "b": 3, "c": 1, "d": 1, "e": 0})
    assert cat.train_popularity().to_dict() == {"a": 5, "b": 3, "c": 1, "d": 1, "e": 0}
    with pytest.raises(DataError, match="no interactions"):
        cat.user_ids()
    plain = Catalog.from_dataframe(_items(), "id", "name")
    assert plain.items["popularity"].tolist() == [0, 0, 0, 0, 0]
    assert plain.head_tail() == (set(), {"a", "b", "c", "d", "e"})


# ------------------------------------------------------------------ items API
def test_items_frame_and_accessors():
    cat = _cat_with_interactions()
    assert len(cat) == 5 and "a" in cat and "zz" not in cat
    assert cat.items.index.name == "item_id"
    assert list(cat.items.columns) == ["title", "year", "genres", "popularity", "studio"]
    assert str(cat.items["year"].dtype) == "Int64"
    assert cat.items.at["c", "genres"] == ["Horror", "Sci-Fi"]
    assert cat.title("a") == "Matrix, The"
    assert cat.titles(["b", "c"]) == ["Heat", "Alien"]
    assert cat.most_popular(3, split="all") == ["a", "b", "c"]
    assert cat.most_popular(3) == ["a", "b", "c"]  # train: a 2, b 1, c 1 (ties: catalogue order)
    # Action 2, Crime 2, Sci-Fi 2, then Animation, Drama, Horror (ties alphabetical)
    assert cat.genres() == ["Action", "Crime", "Sci-Fi", "Animation", "Drama", "Horror"]
    assert cat.item_groups("studio") == {"a": "WB", "b": "WB", "c": "Fox", "d": "Pixar",
                                         "e": "Gramercy"}
    assert cat.item_groups("decade")["a"] == "1990s"
    assert cat.item_groups("genre")["d"] == "Animation"
    assert set(cat.item_groups("head_tail").values()) <= {"head", "tail"}
    with pytest.raises(DataError, match="studio"):
        cat.item_groups("nope")
    with pytest.raises(KeyError):
        cat.title("zz")


def test_ground_uses_catalogue_titles():
    cat = _cat_with_interactions()
    g = cat.ground("Sure! Here you go:\n1. The Matrix (1999)\n2. Heat\n3. Heat\n4. Titanic\n")
    assert isinstance(g, Grounding)
    assert g.item_ids == ["a", "b"] and g.unmatched == ["Titanic"] and g.duplicates == 1
    assert cat.matcher is cat.matcher  # built once


def test_year_from_title_when_no_year_column():
    df = pd.DataFrame({"id": [1, 2, 3], "title": ["Heat (1995)", "Heat (1986)", "Alien"]})
    cat = Catalog.from_dataframe(df, "id", "title")
    assert cat.items.index.tolist() == ["1", "2", "3"]
    assert cat.items["year"].tolist()[:2] == [1995, 1986]
    assert pd.isna(cat.items["year"].iloc[2])
    assert cat.ground("Heat (1986)").item_ids == ["2"]


def test_fingerprint_stable_and_sensitive():
    a, b = _cat_with_interactions(), _cat_with_interactions()
    assert a.fingerprint() == b.fingerprint()
    assert len(a.fingerprint()) == 64
    assert a.fingerprint() != _cat_with_interactions(holdout=2).fingerprint()
    inter = _interactions()
    inter.loc[0, "stars"] = 1
    c = Catalog.from_dataframe(_items(), "id", "name", year_col="yr", genres_col="tags",
                               group_cols=["studio"], interactions=inter, user_col="uid",
                               item_col="iid", rating_col="stars", timestamp_col="when",
                               holdout=1)
    assert c.fingerprint() != a.fingerprint()
    df = _items()
    df.loc[1, "name"] = "Heat 2"
    assert Catalog.from_dataframe(df, "id", "name").fingerprint() != \
        Catalog.from_dataframe(_items(), "id", "name").fingerprint()


# ------------------------------------------------------------------ files and errors
def test_from_csv_column_mapping(tmp_path):
    items = tmp_path / "items.csv"
    _items().to_csv(items, index=False)
    inter = tmp_path / "ratings.csv"
    _interactions().to_csv(inter, index=False)
    cat = Catalog.from_csv(items, id_col="id", title_col="name", year_col="yr",
                           genres_col="tags", group_cols=["studio"], interactions=inter,
                           user_col="uid", item_col="iid", rating_col="stars",
                           timestamp_col="when", holdout=1)
    assert cat.fingerprint() == _cat_with_interactions().fingerprint()
    assert cat.name == "items.csv"


def test_from_csv_semicolon_genres_and_no_timestamp(tmp_path):
    items = tmp_path / "items.csv"
    pd.DataFrame({"sku": [10, 20], "label": ["Heat", "Alien"],
                  "g": ["Crime;Action", ""]}).to_csv(items, index=False)
    inter = tmp_path / "events.csv"
    pd.DataFrame({"user": [1, 1, 1], "sku": [10, 20, 10]}).to_csv(inter, index=False)
    cat = Catalog.from_csv(items, id_col="sku", title_col="label", genres_col="g",
                           genres_sep=";", interactions=inter, user_col="user", item_col="sku",
                           rating_col=None, timestamp_col=None, holdout=1)
    assert cat.items.at["10", "genres"] == ["Crime", "Action"]
    assert cat.items.at["20", "genres"] == []
    # without timestamps the file order is the time order
    assert cat.history("1", "test")["item_id"].tolist() == ["10"]
    assert cat.history("1")["rating"].tolist() == [1.0, 1.0]


def test_error_missing_file(tmp_path):
    path = tmp_path / "nope.csv"
    with pytest.raises(DataError) as exc:
        Catalog.from_csv(path)
    assert str(exc.value) == f"catalog file not found: {path}"
    assert exc.value.exit_code == EXIT_USAGE


def test_error_missing_interactions_file(tmp_path):
    items = tmp_path / "items.csv"
    _items().to_csv(items, index=False)
    with pytest.raises(DataError, match="interactions file not found"):
        Catalog.from_csv(items, "id", "name", interactions=tmp_path / "missing.csv")


def test_error_missing_title_column_lists_available(tmp_path):
    items = tmp_path / "items.csv"
    _items().to_csv(items, index=False)
    with pytest.raises(DataError) as exc:
        Catalog.from_csv(items, id_col="id", title_col="title")
    msg = str(exc.value)
    assert "'title'" in msg and "id, name, yr, tags, studio" in msg and "\n" not in msg


def test_error_missing_interaction_column():
    with pytest.raises(DataError, match="user column 'user_id'"):
        Catalog.from_dataframe(_items(), "id", "name", interactions=_interactions())
    with pytest.raises(DataError, match="timestamp column 'ts'"):
        Catalog.from_dataframe(_items(), "id", "name", interactions=_interactions(),
                               user_col="uid", item_col="iid", timestamp_col="ts")


def test_error_empty_catalogue(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_text("id,name\n")
    with pytest.raises(DataError, match="empty"):
        Catalog.from_csv(path, "id", "name")
    blank = tmp_path / "blank.csv"
    blank.write_text("")
    with pytest.raises(DataError, match="cannot read"):
        Catalog.from_csv(blank, "id", "name")


def test_error_duplicate_ids():
    df = pd.DataFrame({"id": [1, 2, 1], "name": ["Heat", "Alien", "Up"]})
    with pytest.raises(DataError, match="duplicate item ids.*: 1"):
        Catalog.from_dataframe(df, "id", "name")


def test_error_interactions_on_unknown_items():
    inter = pd.DataFrame({"user_id": [1], "item_id": ["zz"]})
    with pytest.raises(DataError, match="missing from the catalogue, e.g. zz"):
        Catalog.from_dataframe(_items(), "id", "name", interactions=inter)


def test_error_bad_popularity_column():
    df = _items()
    df["pop"] = [1, -2, 3, 4, 5]
    with pytest.raises(DataError, match="popularity column 'pop'"):
        Catalog.from_dataframe(df, "id", "name", popularity_col="pop")


def test_from_parquet(tmp_path):
    path = tmp_path / "items.parquet"
    with pytest.raises(DataError, match="catalog file not found"):
        Catalog.from_parquet(tmp_path / "missing.parquet", "id", "name")
    path.write_bytes(b"PAR1")
    with pytest.raises(DataError):
        Catalog.from_parquet(path, "id", "name")
    _items().to_parquet(path)
    cat = Catalog.from_parquet(path, "id", "name", year_col="yr")
    assert cat.title("a") == "Matrix, The"


# ------------------------------------------------------------------ MovieLens
@pytest.fixture(scope="module")
def movielens() -> Catalog:
    return Catalog.from_movielens()


def test_movielens_counts(movielens):
    cat = movielens
    assert len(cat) == 9066
    assert len(cat.interactions) == 100_004
    assert len(cat.user_ids()) == 671
    assert cat.items["popularity"].sum() == \
        len(cat.interactions.drop_duplicates(["user_id", "item_id"]))
    assert cat.title("2571") == "Matrix, The"
    assert cat.items.at["2571", "year"] == 1999
    assert "Sci-Fi" in cat.items.at["2571", "genres"]
    assert cat.genres()[0] == "Drama"


def test_movielens_split_and_popularity(movielens):
    cat = movielens
    assert len(cat.split("test")) == 671 * 5
    assert len(cat.split("train")) == 100_004 - 671 * 5
    u = cat.user_ids()[0]
    train, test = cat.history(u), cat.history(u, "test")
    assert len(test) == 5
    assert train["timestamp"].max() <= test["timestamp"].min()
    tp = cat.train_popularity()
    assert (tp <= cat.items["popularity"]).all()
    assert tp.sum() < cat.items["popularity"].sum()
    head, tail = cat.head_tail()
    assert head.isdisjoint(tail) and len(head) + len(tail) == 9066
    # the head holds >= 80% of training interactions, and is only just enough
    ordered = tp.sort_values(ascending=False, kind="stable")
    assert tp[list(head)].sum() >= 0.8 * tp.sum()
    assert tp[list(head)].sum() - ordered.iloc[len(head) - 1] < 0.8 * tp.sum()
    assert cat.most_popular(1) == ["356"]  # Forrest Gump
    assert cat.most_popular(1, split="all") == ["356"]


def test_movielens_ground_and_fingerprint(movielens):
    cat = movielens
    g = cat.ground("1. The Matrix (1999)\n2. Forrest Gump\n3. Se7en\n4. Totally Invented Film")
    assert cat.titles(g.item_ids) == ["Matrix, The", "Forrest Gump", "Seven (a.k.a. Se7en)"]
    assert g.unmatched == ["Totally Invented Film"]
    fp = cat.fingerprint()
    again = Catalog(cat.items.copy(), cat.interactions.copy(), holdout=5)
    assert again.fingerprint() == fp


def test_movielens_with_imdb_votes(movielens):
    cat = movielens.with_imdb_votes()
    votes = cat.items["imdb_votes"]
    assert votes.dtype == "int64" and len(cat) == 9066
    assert votes["2571"] > 100_000  # The Matrix, joined on normalised title + year
    assert (votes > 0).sum() > 4000  # IMDb sample ends in 2005: many later films get 0
    assert "imdb_votes" not in movielens.items.columns  # a copy
    head, _ = head_tail_split(votes)
    assert "2571" in head
