"""Logged rankings (``rankings:PATH``, ``recaudit audit --rankings FILE``): bad input is one line
and exit 2; a JSONL and a CSV log audit end to end with no model and no config, and the report's
impact-ratio table holds their numbers."""

from __future__ import annotations

import csv
import json

import pytest

from recaudit.cli import main
from recaudit.recommenders import load_recommender
from recaudit.recommenders.base import Request
from recaudit.recommenders.rankings import logged_request, read_rankings

#: (request id, [(candidate id, name, race, sex)] in input order, ranking)
LOG = [
    ("r1", [("c1", "Emily", "White", "female"), ("c2", "Jamal", "African-American", "male"),
            ("c3", "Greg", "White", "male"), ("c4", "Lakisha", "African-American", "female")],
     ["c1", "c3", "c2", "c4"]),
    ("r2", [("c5", "Tyrone", "African-American", "male"), ("c6", "Anne", "White", "female"),
            ("c7", "Aisha", "African-American", "female"), ("c8", "Brad", "White", "male")],
     ["c6", "c5", "c8"]),
    ("r3", [("c9", "Neil", "White", "male"), ("c10", "Ebony", "African-American", "female"),
            ("c11", "Jill", "White", "female"), ("c12", "Hakim", "African-American", "male")],
     ["c11", "c10", "c9", "c12"]),
]


def _jsonl(path, rows=LOG, text_for=("r3",)):
    with path.open("w", encoding="utf-8") as fh:
        for rid, cands, ranking in rows:
            rec = {"request_id": rid, "candidates": [
                {"id": c, "name": n, "groups": {"race": r, "sex": s}} for c, n, r, s in cands]}
            if rid in text_for:  # the raw answer, parsed by the probe
                names = {c: n for c, n, *_ in cands}
                rec["text"] = "My ranking: " + " > ".join(names[c] for c in ranking)
            else:
                rec["ranking"] = ranking
            fh.write(json.dumps(rec) + "\n")
    return path


def _csv(path, rows=LOG):
    with path.open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["request_id", "candidate_id", "name", "position", "group.race", "group.sex",
                    "rank"])
        for rid, cands, ranking in rows:
            for pos, (c, n, r, s) in reversed(list(enumerate(cands))):  # any row order
                w.writerow([rid, c, n, pos, r, s, ranking.index(c) + 1 if c in ranking else ""])
    return path


def _audit(capsys, path, tmp_path):
    code = main(["audit", "--rankings", str(path), "--out", str(tmp_path / "out"),
                 "--no-progress", "--format", "json,html"])
    return code, capsys.readouterr()


def _one_line_error(capsys, path, tmp_path, *expected) -> str:
    """Audit ``path``; check exit 2, one line holding ``expected``, no results; return it."""
    code, out = _audit(capsys, path, tmp_path)
    lines = out.err.strip().splitlines()
    assert code == 2 and len(lines) == 1, out.err
    for text in expected:
        assert text in lines[0], lines[0]
    assert not (tmp_path / "out" / "results.json").exists()
    return lines[0]


def _lines(path, *objs):
    path.write_text("".join((o if isinstance(o, str) else json.dumps(o)) + "\n" for o in objs),
                    encoding="utf-8")
    return path


GOOD = {"request_id": "r1", "candidates": [{"id": "a", "group": "x"}, {"id": "b", "group": "y"}],
        "ranking": ["b", "a"]}


@pytest.mark.parametrize(("objs", "expected"), [
    ([GOOD, "{not json"], ("log.jsonl:2: not valid JSON",)),
    ([{"candidates": GOOD["candidates"], "ranking": ["a"]}],
     ("log.jsonl:1: missing 'request_id'",)),
    ([{**GOOD, "candidates": [{"id": "a", "group": "x"}, {"id": "b"}]}],
     ("log.jsonl:1: candidate 'b' has no group",)),
    ([{**GOOD, "ranking": ["b", "zz"]}], ("ranking names 'zz'", "no candidate of request 'r1'")),
    ([{k: v for k, v in GOOD.items() if k != "ranking"}], ("needs either 'ranking'",)),
    ([GOOD, GOOD], ("log.jsonl:2: request 'r1' again (first at", "log.jsonl:1")),
    ([GOOD, {**GOOD, "request_id": "r2", "candidates": [
        {"id": "a", "groups": {"race": "x"}}, {"id": "b", "groups": {"race": "y"}}]}],
     ("log.jsonl:2: candidate 'a' has no 'group' group", "the candidates of this log have group")),
])
def test_a_bad_jsonl_log_is_one_line_and_exit_2(capsys, tmp_path, objs, expected):
    line = _one_line_error(capsys, _lines(tmp_path / "log.jsonl", *objs), tmp_path, *expected)
    assert line.startswith("recaudit: error: ") and "Traceback" not in line


def test_an_empty_or_missing_log_is_one_line_and_exit_2(capsys, tmp_path):
    empty = tmp_path / "log.jsonl"
    empty.write_text("\n\n", encoding="utf-8")
    line = _one_line_error(capsys, empty, tmp_path, "holds no logged request (empty file)")
    assert line.startswith("recaudit: error: rankings log ") and str(empty) in line
    line = _one_line_error(capsys, tmp_path / "absent.jsonl", tmp_path,
                           "absent.jsonl does not exist")
    assert line.startswith("recaudit: error: ")


@pytest.mark.parametrize(("header", "rows", "expected"), [
    (["request_id", "candidate_id", "group", "rank"], [["r1", "a", "x", "1"]],
     ("log.csv:1: missing column 'position'",)),
    (["request_id", "candidate_id", "position", "group", "rank"],
     [["r1", "a", "0", "x", "1"], ["r1", "b", "1", "", "2"]], ("log.csv:3: candidate 'b' has no",)),
    (["request_id", "candidate_id", "position", "group", "rank", "text"], [["r1", "a", "0", "x",
                                                                           "1", ""]],
     ("needs either a 'rank' or a 'text' column, not both",)),
    (["request_id", "candidate_id", "position", "group", "rank"], [], ("empty file",)),
])
def test_a_bad_csv_log_is_one_line_and_exit_2(capsys, tmp_path, header, rows, expected):
    path = tmp_path / "log.csv"
    with path.open("w", encoding="utf-8", newline="") as fh:
        csv.writer(fh).writerows([header, *rows])
    line = _one_line_error(capsys, path, tmp_path, *expected)
    assert line.startswith("recaudit: error: ") and "Traceback" not in line


def test_audit_needs_a_config_or_rankings_but_not_both(capsys, tmp_path):
    assert main(["audit"]) == 2
    assert "give an audit YAML file (or --rankings FILE)" in capsys.readouterr().err
    log = _jsonl(tmp_path / "log.jsonl")
    assert main(["audit", "some.yaml", "--rankings", str(log)]) == 2
    assert "takes no config file" in capsys.readouterr().err


def test_the_adapter_answers_each_logged_request_by_its_id(tmp_path):
    path = _jsonl(tmp_path / "log.jsonl")
    records = read_rankings(path)
    rec = load_recommender(f"rankings:{path}")
    answers = rec.recommend([logged_request(r) for r in records]
                            + [Request.from_prompt("Logged request r9. Rank ...")])
    assert answers[0].item_ids == ["c1", "c3", "c2", "c4"] and answers[1].item_ids == LOG[1][2]
    assert answers[2].item_ids is None and answers[2].text.startswith("My ranking: Jill > ")
    assert answers[3].error == "no logged ranking for this request"
    assert "1 request(s) have no logged ranking" in rec.missing_report()
    before = rec.fingerprint()
    _jsonl(path, text_for=())
    assert load_recommender(f"rankings:{path}").fingerprint() != before


def _numbers(results_path):
    data = json.loads(results_path.read_text(encoding="utf-8"))
    probe = next(p for p in data["probes"] if p["probe"] == "candidate_groups")
    return probe, {(m["metric"], m["attribute"], m["value"], m["k"]): m["estimate"]
                   for m in probe["metrics"]}


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_a_logged_audit_runs_end_to_end_with_the_ll144_table(capsys, tmp_path, fmt):
    path = (_jsonl if fmt == "jsonl" else _csv)(tmp_path / f"log.{fmt}")
    code, out = _audit(capsys, path, tmp_path)
    assert code == 0, out.err
    probe, nums = _numbers(tmp_path / "out" / "results.json")
    assert probe["status"] == "ok" and probe["n_failed"] == 0
    assert [r["ranking"] for r in probe["records"]] == [x[2] for x in LOG]
    assert [r["input_order"] for r in probe["records"]] == [[0, 1, 2, 3]] * 3
    # top 1: White names first in r1, r2, r3 (3 of 6 shown); top 3: White 6 of 6, Black 3 of 6
    assert nums[("selection_rate_at_1", "race", "White", 1)] == pytest.approx(0.5)
    assert nums[("selection_rate_at_1", "race", "African-American", 1)] == 0.0
    assert nums[("selection_rate_at_k", "race", "White", 3)] == pytest.approx(1.0)
    assert nums[("selection_rate_at_k", "race", "African-American", 3)] == pytest.approx(0.5)
    assert nums[("impact_ratio_min_max", "race", None, 3)] == pytest.approx(0.5)
    # the intersection: African-American female in the top 3 once (r3) of 3 shown
    assert nums[("selection_rate_at_k", "race×sex", "African-American female", 3)] == \
        pytest.approx(1 / 3)
    ratio = next(m for m in probe["metrics"] if (m["metric"], m["attribute"], m["value"],
                                                  m["k"]) == ("impact_ratio", "race",
                                                              "African-American", 3))
    floor = ratio["null_p05"]
    assert 0.0 <= floor <= ratio["null_mean"] <= 1.0
    page = (tmp_path / "out" / "index.html").read_text(encoding="utf-8")
    table = page[page.index("Impact ratios (NYC LL144 shape)"):]
    table = table[:table.index("</table>")]
    row = table[table.index("<td>selection_rate_at_k</td><td>race</td><td>African-American</td>"):]
    row = row[:row.index("</tr>")]
    assert '<td class="num">3</td><td class="num">3</td><td class="num">0.500</td>' in row
    assert f"{floor:.3f}" in row and "0.500 &#9660;" in row  # impact ratio 0.5, below 0.8
    assert "Selection rates and impact ratios per category" in page


def test_jsonl_and_csv_logs_of_the_same_rankings_give_the_same_numbers(capsys, tmp_path):
    got = []
    for fmt, write in (("jsonl", lambda p: _jsonl(p, text_for=())), ("csv", _csv)):
        out = tmp_path / fmt
        out.mkdir()
        path = write(out / f"log.{fmt}")
        assert main(["audit", "--rankings", str(path), "--out", str(out / "res"),
                     "--no-progress", "--format", "json"]) == 0
        capsys.readouterr()
        got.append(_numbers(out / "res" / "results.json")[1])
    assert got[0].keys() == got[1].keys()
    for key, value in got[0].items():
        assert got[1][key] == pytest.approx(value, nan_ok=True), key
