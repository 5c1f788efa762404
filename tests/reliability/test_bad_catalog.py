"""Bad catalogs, through a config (``catalog: {source: csv|parquet, ...}`` and ``recaudit
audit``) and through the Python API (``Catalog.from_csv`` / ``from_parquet``): the same one-line
DataError, exit 2 (recaudit/catalog.py, recaudit/datasets.py). Then what an empty title and a
one-item catalog do."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from recaudit.catalog import Catalog
from recaudit.cli import main
from recaudit.errors import DataError

from . import tally
from .bad_input import assert_cli_error, message_regex

COUNTERFACTUAL = (
    "probes:\n  - probe: counterfactual\n    params:\n      k: 10\n      similarities: [jaccard]\n"
    "      n_examples: 0\n      attributes: {gender: [a female, a male]}\n"
    "      subjects: {source: inline, items: [Alpha Station, Blue Harbor, Cold Summit,"
    " Desert Echo, Ember Road, Frozen Lake]}\n")
HEADER = "model: python:tests.cli_recommenders:constant\nengine: {progress: false}\n" \
         "stats: {n_bootstrap: 100, n_permutations: 99, min_group_size: 5}\n"


def parquet_bytes(frame: pd.DataFrame, tmp_path) -> bytes:
    p = tmp_path / "frame.parquet"
    frame.to_parquet(p)
    return p.read_bytes()


# (case id, file name, content: bytes, or a DataFrame written as Parquet, mapping options,
#  expected message with {path} = the catalog file, {inter} = the interactions file)
CASES = [
    ("duplicate ids", "items.csv", b"item_id,title\n1,Heat\n2,Alien\n1,Jaws\n", {},
     "catalog file {path}: duplicate item ids in column 'item_id': 1"),
    ("missing id", "items.csv", b"item_id,title\n,Heat\n2,Alien\n", {},
     "catalog file {path}: 1 rows have no id in column 'item_id'"),
    ("every title empty", "items.csv", b"item_id,title\n1,\n2,  \n", {},
     "catalog file {path}: every title in column 'title' is empty"),
    ("non-UTF-8 title (Latin-1 file)", "items.csv", b"item_id,title\n1,Am\xe9lie\n2,Heat\n", {},
     "cannot read catalog file {path} as csv: not UTF-8 text (byte 0xe9); save it as UTF-8"),
    ("binary garbage", "items.csv", b"\x00\x01\xff\xfe\x80", {},
     "cannot read catalog file {path} as csv: not UTF-8 text (byte 0xff); save it as UTF-8"),
    ("NaN popularity (empty cell)", "items.csv", b"item_id,title,pop\n1,Heat,\n2,Alien,3\n",
     {"popularity_col": "pop"},
     "catalog file {path}: popularity column 'pop' must hold finite non-negative numbers; "
     "id 1 has 'nan'"),
    ("NaN popularity (written)", "items.csv", b"item_id,title,pop\n1,Heat,4\n2,Alien,NaN\n",
     {"popularity_col": "pop"},
     "catalog file {path}: popularity column 'pop' must hold finite non-negative numbers; "
     "id 2 has 'nan'"),
    ("infinite popularity", "items.csv", b"item_id,title,pop\n1,Heat,inf\n2,Alien,3\n",
     {"popularity_col": "pop"},
     "catalog file {path}: popularity column 'pop' must hold finite non-negative numbers; "
     "id 1 has 'inf'"),
    ("negative popularity", "items.csv", b"item_id,title,pop\n1,Heat,4\n2,Alien,-3\n",
     {"popularity_col": "pop"},
     "catalog file {path}: popularity column 'pop' must hold finite non-negative numbers; "
     "id 2 has '-3'"),
    ("text popularity", "items.csv", b"item_id,title,pop\n1,Heat,many\n2,Alien,3\n",
     {"popularity_col": "pop"},
     "catalog file {path}: popularity column 'pop' must hold finite non-negative numbers; "
     "id 1 has 'many'"),
    ("missing title column", "items.csv", b"item_id,name\n1,Heat\n", {},
     "catalog file {path}: title column 'title' not found; available columns: item_id, name"),
    ("missing popularity column", "items.csv", b"item_id,title\n1,Heat\n",
     {"popularity_col": "votes"},
     "catalog file {path}: popularity column 'votes' not found; available columns: item_id, "
     "title"),
    ("0 items (header only)", "items.csv", b"item_id,title\n", {},
     "catalog file {path}: the catalogue is empty"),
    ("0 bytes", "items.csv", b"", {},
     "cannot read catalog file {path} as csv: No columns to parse from file"),
    ("interactions on unknown items", "items.csv", b"item_id,title\n1,Heat\n",
     {"interactions": b"user_id,item_id,rating,timestamp\nu1,1,5,1\nu1,9,4,2\n"},
     "catalog file {path}: 1 interactions refer to items missing from the catalogue, e.g. 9"),
    ("interactions without timestamps", "items.csv", b"item_id,title\n1,Heat\n",
     {"interactions": b"user_id,item_id,rating,timestamp\nu1,1,5,\n"},
     "interactions file {inter}: timestamp column 'timestamp' has missing values"),
    ("parquet: duplicate ids", "items.parquet",
     pd.DataFrame({"item_id": [1, 1], "title": ["Heat", "Jaws"]}), {},
     "catalog file {path}: duplicate item ids in column 'item_id': 1"),
    ("parquet: non-UTF-8 byte title", "items.parquet",
     pd.DataFrame({"item_id": [1, 2], "title": [b"Am\xe9lie", b"Heat"]}), {},
     "catalog file {path}: the title of item 1 is not UTF-8 text"),
    ("parquet: 0 items", "items.parquet",
     pd.DataFrame({"item_id": pd.Series([], dtype="int64"),
                   "title": pd.Series([], dtype="object")}), {},
     "catalog file {path}: the catalogue is empty"),
    ("parquet: not a parquet file", "items.parquet", b"PAR1 this is not parquet", {},
     "cannot read catalog file {path} as parquet: <ANY>"),
]


def write_case(tmp_path, name, content, options):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else parquet_bytes(content, tmp_path))
    options = dict(options)
    inter = tmp_path / "interactions.csv"
    if "interactions" in options:
        inter.write_bytes(options.pop("interactions"))
        options["interactions"] = str(inter)
    return path, inter, options


@pytest.mark.parametrize("name, content, options, expected", [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_bad_catalog_through_a_config(tmp_path, capsys, name, content, options, expected):
    path, inter, options = write_case(tmp_path, name, content, options)
    source = "parquet" if name.endswith(".parquet") else "csv"
    mapping = ", ".join(f"{k}: {v}" for k, v in options.items())
    cfg = tmp_path / "audit.yaml"
    cfg.write_text(HEADER + f"catalog: {{source: {source}, path: {path}, id_col: item_id"
                   + (f", {mapping}" if mapping else "") + "}\n" + COUNTERFACTUAL,
                   encoding="utf-8")
    assert_cli_error(capsys, ["audit", cfg, "--dry-run"], 2, expected, path=path, inter=inter)


@pytest.mark.parametrize("name, content, options, expected", [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_bad_catalog_through_the_api(tmp_path, name, content, options, expected):
    path, inter, options = write_case(tmp_path, name, content, options)
    load = Catalog.from_parquet if name.endswith(".parquet") else Catalog.from_csv
    tally.add("bad inputs")
    with pytest.raises(DataError) as info:
        load(path, **options)
    assert info.value.exit_code == 2
    assert re.fullmatch(message_regex(expected, path=path, inter=inter), str(info.value)), \
        str(info.value)


def test_missing_catalog_file(tmp_path, capsys):
    path = tmp_path / "nope.csv"
    tally.add("bad inputs")
    with pytest.raises(DataError, match=re.escape(f"catalog file not found: {path}")):
        Catalog.from_csv(path)
    cfg = tmp_path / "audit.yaml"
    cfg.write_text(HEADER + f"catalog: {{source: csv, path: {path}}}\n" + COUNTERFACTUAL,
                   encoding="utf-8")
    assert_cli_error(capsys, ["audit", cfg, "--dry-run"], 2, "catalog file not found: {path}",
                     path=path)


def test_an_item_without_a_title_is_kept_but_never_matched(tmp_path):
    """Decision: an empty title is allowed (MovieLens has five); the item keeps its place and
    its interactions, and no answer can ground to it."""
    path = tmp_path / "items.csv"
    path.write_bytes(b"item_id,title\n1,\n2,Heat\n3,   \n")
    tally.add("bad inputs")
    catalog = Catalog.from_csv(path)
    assert catalog.item_ids == ["1", "2", "3"]
    assert catalog.ground("1. Heat\n2. \n3. Alien").item_ids == ["2"]


def one_item_catalog(tmp_path) -> tuple[str, str]:
    items, inter = tmp_path / "one.csv", tmp_path / "inter.csv"
    items.write_text("item_id,title\n1,Heat\n", encoding="utf-8")
    inter.write_text("user_id,item_id,rating,timestamp\n"
                     + "".join(f"u{u},1,5,{u}\n" for u in range(12)), encoding="utf-8")
    return str(items), str(inter)


def test_one_item_catalog_grounds_and_audits(tmp_path, capsys):
    """Decision: a 1-item catalog works wherever one item makes sense: grounding, and a
    counterfactual audit (every list is that item or nothing)."""
    items, inter = one_item_catalog(tmp_path)
    tally.add("bad inputs")
    catalog = Catalog.from_csv(items, interactions=inter, holdout=1)
    assert catalog.ground("1. Heat (1995)\n2. Toy Story").item_ids == ["1"]
    assert catalog.most_popular(5) == ["1"] and catalog.train_popularity().to_dict() == {"1": 0}
    cfg = tmp_path / "audit.yaml"
    cfg.write_text(HEADER.replace("{progress: false}",
                                  f"{{progress: false, cache: {tmp_path / 'c.sqlite'}}}")
                   + f"catalog: {{source: csv, path: {items}, id_col: item_id}}\n"
                   + COUNTERFACTUAL + f"out: {tmp_path / 'out'}\n", encoding="utf-8")
    assert main(["audit", str(cfg), "--no-progress", "--format", "json"]) == 0
    capsys.readouterr()
    from recaudit.results import AuditResult

    probe = AuditResult.load(tmp_path / "out").probes[0]
    assert probe.status == "ok" and probe.n_failed == 0
    snsr = probe.metric("snsr_jaccard", k=10)
    assert len(snsr) == 1 and snsr[0].estimate == 0.0  # the constant model: one list for all


def test_one_item_catalog_popularity_probe_says_why_not(tmp_path, capsys):
    """A probe that needs user histories of 10 items cannot run on one item: a clear line. It
    is the probe's status (skipped, no_data: exit 4, results.json written), not an abort."""
    items, inter = one_item_catalog(tmp_path)
    cfg = tmp_path / "audit.yaml"
    cfg.write_text(HEADER.replace("{progress: false}",
                                  f"{{progress: false, cache: {tmp_path / 'c.sqlite'}}}")
                   + f"catalog: {{source: csv, path: {items}, id_col: item_id, "
                   f"interactions: {inter}, holdout: 1}}\nprobes: [{{probe: popularity}}]\n"
                   f"out: {tmp_path / 'out'}\n", encoding="utf-8")
    assert main(["audit", str(cfg), "--no-progress", "--format", "json"]) == 4
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and ("popularity skipped (no_data): no user has >= 10 training "
                                "interactions and a held-out item; lower history_items") in err
    from recaudit.results import AuditResult

    probe = AuditResult.load(tmp_path / "out").probes[0]
    assert probe.status == "skipped" and probe.skip_kind == "no_data"
