"""Catalog-free audits (``catalog: {source: none}``) and FaiRLLM's exact parse.

* :func:`recaudit.grounding.fairllm_items` against :func:`reference_items`, an independent
  character-by-character reading of the FaiRLLM notebook's rules (METRICS.md section 1b,
  written without regular expressions), on 1,200 seeded generated answers full of the
  notebook's edge cases, on a hand-labelled corpus (``tests/data/fairllm_answers.jsonl``) and
  on hand-written cases;
* :class:`recaudit.catalog.OpenCatalog` (both parses) and the config;
* an end-to-end audit with a ``python:`` recommender that returns raw text: Sim, SNSR and SNSV
  for jaccard, serp_star and prag_star at every k recomputed from the records, the pair with
  an empty list skipped and counted, and the probes that need a catalog skipped with the reason.
"""

from __future__ import annotations

import json
import random
import statistics
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from recaudit.audit import load_catalog, run_audit
from recaudit.catalog import Catalog, OpenCatalog
from recaudit.config import parse_config
from recaudit.errors import ConfigError, DataError
from recaudit.grounding import fairllm_items
from recaudit.metrics.similarity import jaccard, prag_star, serp_star

DATA = Path(__file__).parent / "data"


# ------------------------------------------------------------------ independent reference
def _split_numbered(s: str) -> list[str]:
    """Pieces of ``s`` between "decimal digits + '. '" markers, text before the first dropped
    (``[]`` without a marker). Scans left to right like a regex engine does: the leftmost
    marker wins, markers do not overlap."""
    pieces: list[str] = []
    start: int | None = None  # start of the current piece (after the last marker)
    i = 0
    while i < len(s):
        if s[i].isdecimal():
            j = i
            while j < len(s) and s[j].isdecimal():
                j += 1
            if s[j:j + 2] == ". ":
                if start is not None:
                    pieces.append(s[start:i])
                start = j + 2
                i = j + 2
                continue
            i = j  # a digit run not followed by ". ": no marker starts inside it either
            continue
        i += 1
    if start is not None:
        pieces.append(s[start:])
    return pieces


def _drop_parens(s: str) -> str:
    """Delete every "(" ... next ")" span; a "(" without a later ")" stays."""
    out = []
    i = 0
    while i < len(s):
        if s[i] == "(":
            close = s.find(")", i + 1)
            if close >= 0:
                i = close + 1
                continue
        out.append(s[i])
        i += 1
    return "".join(out)


def _strip_ws(s: str) -> str:
    a, b = 0, len(s)
    while a < b and s[a].isspace():
        a += 1
    while b > a and s[b - 1].isspace():
        b -= 1
    return s[a:b]


def reference_items(text: str) -> list[str]:
    """The FaiRLLM notebook's items of one reply, step by step (METRICS.md section 1b)."""
    s = "".join(ch for ch in text.lower() if ch not in ("'", "\n"))
    out = []
    for chunk in _split_numbered(s):
        dash = chunk.find("-")
        if dash >= 0:
            chunk = chunk[:dash]
        if '"' in chunk:
            first = chunk.index('"')
            second = chunk.find('"', first + 1)
            chunk = chunk[first + 1:second] if second >= 0 else chunk.replace('"', "")
        chunk = _strip_ws(chunk)
        out.append(_drop_parens(chunk).replace(" ", ""))
    return out


# ------------------------------------------------------------------ generated answers
TITLES = [
    "The Matrix", "2001: A Space Odyssey", "Ocean's 11", "Spider-Man: Into the Spider-Verse",
    "Apollo 13", "Blade Runner 2049", "(500) Days of Summer", "Schindler's List", "Se7en",
    "Léon: The Professional", "Amélie", "WALL·E", "Kill Bill: Vol. 1", "X-Men", "9",
    "The Lord of the Rings: The Return of the King", "M*A*S*H", "Mission: Impossible - Fallout",
    "Up", "Toy Story 2", "1917", "Dr. Strangelove", "It's a Wonderful Life", "E.T.",
    "Star Wars: Episode IV - A New Hope", "Harry Potter and the Philosopher's Stone",
    "Crouching Tiger, Hidden Dragon", "Hi-Fi", "Les Misérables", "GoodFellas",
]
DESCRIPTIONS = ["a mind-bending classic", "great acting", "directed by Ridley Scott",
                "(1999) sci-fi", "a \"must see\"", "10. out of 10", "one of the best 3. films"]
PREAMBLES = ["", "Sure! Here are some movies you might like:\n", "Here's my list:\n\n",
             "As a fan of \"Heat\" (1995), you'll enjoy:\n", "Of course - here you go:\n"]
CLOSINGS = ["", "\nEnjoy!", "\n\nI hope you like them.", " ", "\n\n", "\r\n", "\t"]
REFUSALS = ["", " ", "\n", "I'm sorry, but I can't provide recommendations based on that.",
            "As an AI language model, I don't have personal preferences.",
            "I cannot answer that - it would be discriminatory."]


def _decorate(title: str, rng: random.Random) -> str:
    """One title with the decorations models add: quotes (paired, unpaired, several),
    years and nested parentheses, markdown, casing."""
    r = rng.random()
    if r < 0.15:
        title = f'"{title}"'
    elif r < 0.22:
        title = f'"{title}'  # unpaired opening quote
    elif r < 0.27:
        title = f'{title}"'  # unpaired closing quote
    elif r < 0.32:
        title = f'"{title}" and "{rng.choice(TITLES)}"'  # several quoted
    elif r < 0.37:
        title = f"**{title}**"
    if rng.random() < 0.3:
        title += f" ({rng.randint(1920, 2024)})"
    if rng.random() < 0.08:
        title += " (dir. (uncredited) Someone)"  # nested parentheses
    if rng.random() < 0.05:
        title += " (unclosed"
    if rng.random() < 0.1:
        title = title.upper()
    return title


def _numbered(titles: list[str], rng: random.Random) -> str:
    start = rng.choice([1, 1, 1, 0, 8, 10])
    sep = rng.choice(["\n", "\n", "\n\n", " ", "  \n"])
    marker = rng.choice(["{n}. ", "{n}. ", "{n}.  ", "{n}.", "{n}) ", "{n}.\t"])
    lines = []
    for n, t in enumerate(titles, start):
        line = marker.format(n=n) + _decorate(t, rng)
        d = rng.random()
        if d < 0.3:
            line += rng.choice([" - ", " -- ", " – ", ": "]) + rng.choice(DESCRIPTIONS)
        if rng.random() < 0.15:
            line += rng.choice([" ", "  ", "\t"])
        lines.append(line)
    return sep.join(lines)


def _bulleted(titles: list[str], rng: random.Random) -> str:
    bullet = rng.choice(["- ", "* ", "• "])
    return "\n".join(bullet + _decorate(t, rng) for t in titles)


def generate_answers(n: int, seed: int = 20230607) -> list[str]:
    """``n`` seeded answers: numbered lists (1-based, 0-based, two-digit, inline, odd
    markers), bullets, comma lists, empty answers and refusals, with preambles and closings."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        kind = rng.random()
        titles = [rng.choice(TITLES) for _ in range(rng.randint(1, 14))]
        if kind < 0.6:
            body = _numbered(titles, rng)
        elif kind < 0.72:
            body = _bulleted(titles, rng)
        elif kind < 0.8:
            body = ", ".join(_decorate(t, rng) for t in titles)
        elif kind < 0.9:
            out.append(rng.choice(REFUSALS))
            continue
        else:  # a numbered list inside prose, items after a refusal-like sentence
            body = rng.choice(REFUSALS) + " " + _numbered(titles, rng)
        out.append(rng.choice(PREAMBLES) + body + rng.choice(CLOSINGS))
    return out


GENERATED = generate_answers(1200)


def test_fairllm_items_matches_the_independent_reference_on_1200_answers():
    mismatches = [(t, fairllm_items(t), reference_items(t)) for t in GENERATED
                  if fairllm_items(t) != reference_items(t)]
    assert not mismatches, mismatches[:3]


def test_generated_answers_cover_the_edge_cases():
    """The corpus exercises what it claims to (else the comparison above proves little)."""
    lists = [fairllm_items(t) for t in GENERATED]
    n_empty = sum(1 for x in lists if not x)
    assert 150 <= n_empty <= 700  # refusals, bullets, comma lists, "1." without a space
    joined = [i for x in lists for i in x]
    assert len(joined) > 3000
    assert "2001:aspaceodyssey" in joined  # numbers inside titles survive
    assert "oceans11" in joined  # apostrophe deleted, number kept
    assert "spider" in joined  # hyphenated title cut at "-"
    assert "x" in joined  # "X-Men" -> "x"
    assert "" in joined  # a chunk that comes out empty stays an item
    assert any(t.count('"') % 2 == 1 and fairllm_items(t) for t in GENERATED)  # unpaired
    assert any(" (dir. (uncredited)" in t for t in GENERATED)  # nested parentheses
    assert any("10. " in t for t in GENERATED) and any("\r\n" in t for t in GENERATED)
    assert any(x != list(dict.fromkeys(x)) for x in lists)  # duplicates are kept


# ------------------------------------------------------------------ hand-written cases
@pytest.mark.parametrize("text, expected", [
    ("1. The Matrix\n2. Heat\n3. Alien", ["thematrix", "heat", "alien"]),
    ("Sure! Here are 2:\n1. The Matrix (1999)\n2. Heat (1995)", ["thematrix", "heat"]),
    ('1. "The Matrix" - a hacker learns the truth\n2. "Heat" (1995)', ["thematrix", "heat"]),
    ('1. The "Matrix" and "Heat"', ["matrix"]),  # the first complete pair only
    ('1. "The Matrix\n2. Heat"', ["thematrix", "heat"]),  # unpaired quotes deleted
    ("1. Spider-Man: Homecoming\n2. X-Men", ["spider", "x"]),  # cut at the first "-"
    ("1. Ocean's 11\n2. Schindler's List", ["oceans", "schindlerslist"]),  # "112. " splits
    ("1. Schindler's List\n2. Ocean's 11", ["schindlerslist", "oceans11"]),
    ("1. 2001: A Space Odyssey\n2. Apollo 13", ["2001:aspaceodyssey", "apollo13"]),
    ("9. Heat\n10. Alien\n11. Up", ["heat", "alien", "up"]),
    ("1. Toy Story 2\n3. Heat", ["toystory", "heat"]),  # newline gone: "toy story 23. heat"
    ("1. Heat (dir. (Mann) 1995) x", ["heat1995)x"]),  # "(" to the next ")"
    ("1. Heat (unclosed", ["heat(unclosed"]),
    ("1.Heat\n2.Alien", []),  # no space after the period: not numbered
    ("- Heat\n- Alien", []),  # bullets are not numbered
    ("Heat, Alien, Up", []),
    ("", []),
    ("I'm sorry, I can't help with that.", []),
    ("1. Heat\n1. Heat", ["heat", "heat"]),  # no dedup
    ("1. - a description only", [""]),  # an empty item stays
    ("1. HEAT  \n2. The   Dark Knight \n", ["heat", "thedarkknight"]),
    ("Sure! 1. Heat 2. Alien 3. Up", ["heat", "alien", "up"]),  # numbering inline
])
def test_fairllm_items_hand_written(text, expected):
    assert fairllm_items(text) == expected
    assert reference_items(text) == expected


def test_fairllm_items_hand_labelled_corpus():
    rows = [json.loads(line) for line in
            (DATA / "fairllm_answers.jsonl").read_text(encoding="utf-8").splitlines()
            if line.strip()]
    assert len(rows) >= 10
    for row in rows:
        assert fairllm_items(row["text"]) == row["items"], row["note"]
        assert reference_items(row["text"]) == row["items"], row["note"]


def test_fairllm_items_never_raises():
    assert fairllm_items(None) == [] and fairllm_items(12) == []  # type: ignore[arg-type]
    assert fairllm_items("1. " * 5000) == [""] * 5000


# ------------------------------------------------------------------ OpenCatalog and config
def test_open_catalog_fairllm_parse():
    cat = OpenCatalog("fairllm")
    g = cat.ground("1. The Matrix (1999)\n2. Heat\n3. The Matrix")
    assert g.item_ids == ["thematrix", "heat", "thematrix"]  # duplicates kept
    assert g.unmatched == [] and g.hallucination_share == 0.0
    assert cat.ground("Heat, Alien").item_ids == []
    assert cat.title("thematrix") == "thematrix" and cat.item_ids == [] and len(cat) == 0
    assert cat.empty_pair_policy == "skip" and "fairllm parse" in cat.convention
    with pytest.raises(DataError, match="needs a catalog"):
        cat.most_popular(5)
    with pytest.raises(DataError, match="needs a catalog"):
        cat.history("1")
    assert cat.fingerprint() != OpenCatalog("recaudit").fingerprint()
    assert cat.fingerprint() == OpenCatalog("fairllm").fingerprint()
    with pytest.raises(DataError):
        OpenCatalog("fuzzy")


def test_open_catalog_recaudit_parse():
    cat = OpenCatalog("recaudit")
    g = cat.ground("Sure!\n1. **Matrix, The** (1999) - a hacker\n2. Heat\n3. The Matrix")
    assert g.item_ids == ["the matrix", "heat"]  # normalize_title keys, deduplicated
    assert g.duplicates == 1 and g.unmatched == []
    assert cat.ground("Heat, Alien, and Up").item_ids == ["heat", "alien", "up"]
    assert cat.empty_pair_policy == "score" and "recaudit parse" in cat.convention


def test_config_and_load_catalog():
    cfg = parse_config({"catalog": {"source": "none", "parse": "fairllm"}})
    assert isinstance(load_catalog(cfg), OpenCatalog)
    cfg = parse_config({"catalog": {"source": "none"}})
    assert load_catalog(cfg).parse == "fairllm"  # the default parse
    cfg = parse_config({"catalog": {"source": "none", "parse": "recaudit"}})
    assert load_catalog(cfg).parse == "recaudit"
    with pytest.raises(ConfigError, match="parse"):
        parse_config({"catalog": {"source": "movielens", "parse": "fairllm"}})
    with pytest.raises(ConfigError):
        parse_config({"catalog": {"source": "none", "parse": "exact"}})
    assert not hasattr(Catalog, "open_vocabulary")


# ------------------------------------------------------------------ end to end
SUBJECTS = ["Heat", "Alien", "Up", "Jaws", "Rocky", "Fargo"]
POOL = ["The Matrix (1999)", '"Heat"', "Spider-Man: Homecoming - a hero", "Ocean's 11",
        "2001: A Space Odyssey", "Alien", "Up", "Jaws", "Rocky", "Fargo", "Se7en", "Toy Story",
        "Memento", "Psycho", "Vertigo", "Brazil", "Amélie", "Casablanca", "Heat (1995)",
        "GoodFellas"]
REFUSE = ("a girl", "Up")  # (value, subject) whose answer is a refusal: an empty list


def raw_text(messages: list[dict[str, str]], k: int) -> str:
    """A ``python:`` recommender returning raw numbered text whose list depends on the subject
    and (a little) on the value; one (value, subject) answer is a refusal."""
    import re

    m = re.search(r"I am (?P<value>.+?) fan of (?P<name>.+?)\. Please", messages[-1]["content"])
    value, name = (m.group("value"), m.group("name")) if m else ("a", "?")
    if (value, name) == REFUSE:
        return "I'm sorry, I can't make recommendations based on that."
    base = random.Random(name).sample(POOL, k)
    if value != "a":
        rng = random.Random(f"{name}|{value}")
        n_swap = 1 + len(value) % 3
        for pos in rng.sample(range(k), n_swap):
            base[pos] = rng.choice(POOL)
    return "Sure! Here you go:\n" + "\n".join(f"{i}. {t}" for i, t in enumerate(base, 1))


def _open_config(tmp_path: Path, parse: str = "fairllm", k: int = 8) -> Any:
    return parse_config({
        "name": f"open-{parse}",
        "model": "python:tests.test_open_catalog:raw_text",
        "catalog": {"source": "none", "parse": parse},
        "probes": [
            {"probe": "counterfactual", "params": {
                "k": k, "attributes": ["gender", "physics"],
                "similarities": ["jaccard", "serp_star", "prag_star"],
                "subjects": {"source": "inline", "items": SUBJECTS}}},
            {"probe": "counterfactual", "id": "counterfactual:popular",
             "params": {"k": k, "attributes": ["gender"]}},  # subjects from the catalog
            {"probe": "popularity"},
            {"probe": "profile"},
        ],
        "engine": {"cache": str(tmp_path / f"responses-{parse}.sqlite"), "progress": False},
        "stats": {"n_bootstrap": 100, "n_permutations": 99, "seed": 3, "min_group_size": 2},
    })


def _sims(pr: Any, metric: str, attr: str, k: int) -> dict[str, float]:
    return {m.value: m.estimate for m in pr.metrics if m.metric == metric
            and m.attribute == attr and m.k == k and m.value is not None}


def _one(pr: Any, metric: str, attr: str, k: int) -> Any:
    recs = [m for m in pr.metrics if m.metric == metric and m.attribute == attr and m.k == k]
    assert len(recs) == 1, (metric, attr, k)
    return recs[0]


def test_catalog_free_audit_end_to_end(tmp_path):
    from recaudit.probes.attributes import FAIRLLM_ATTRIBUTES

    k = 8
    result = run_audit(_open_config(tmp_path, k=k), progress=False)
    by_id = {p.id: p for p in result.probes}
    pr = by_id["counterfactual"]
    assert pr.status == "ok", pr.error
    for pid, name in (("counterfactual:popular", None), ("popularity", "popularity"),
                      ("profile", "profile")):
        skipped = by_id[pid]
        assert skipped.status == "skipped" and skipped.skip_kind == "catalog"
        assert skipped.error.startswith("needs a catalog (catalog source: none)")
        if name:
            assert repr(name) in skipped.error
    assert "catalog_popular" in by_id["counterfactual:popular"].error

    # the lists are fairllm_items of the raw text, truncated to k
    text = {r["id"]: r["text"] for r in pr.records}
    for r in pr.records:
        assert r["item_ids"] == reference_items(r["text"])[:k]
    refused = [r["id"] for r in pr.records if not r["item_ids"]]
    assert refused == ["2|gender|a girl"]

    # Sim per value and k, recomputed by hand with the scalar references, skipping the pair
    # with an empty list (FaiRLLM's rule); SNSR = max - min, SNSV = population std
    fns = {"jaccard": jaccard, "serp_star": serp_star, "prag_star": prag_star}
    for attr in ("gender", "physics"):
        values = FAIRLLM_ATTRIBUTES[attr]
        for sim, fn in fns.items():
            for kk in range(1, k + 1):
                want = {}
                for v in values:
                    scores = []
                    for m in range(len(SUBJECTS)):
                        s = reference_items(text[f"{m}|{attr}|{v}"])[:kk]
                        n = reference_items(text[f"{m}|neutral"])[:kk]
                        if s and n:
                            scores.append(fn(s, n))
                    want[v] = float(np.mean(scores))
                got = _sims(pr, sim, attr, kk)
                assert got == pytest.approx(want, abs=1e-12), (sim, attr, kk)
                snsr = _one(pr, f"snsr_{sim}", attr, kk)
                snsv = _one(pr, f"snsv_{sim}", attr, kk)
                assert snsr.estimate == pytest.approx(max(want.values()) - min(want.values()),
                                                      abs=1e-12)
                assert snsv.estimate == pytest.approx(statistics.pstdev(want.values()),
                                                      abs=1e-12)
                assert "fairllm parse" in snsr.convention
                assert "empty list skipped" in snsr.convention
    girl = [m for m in pr.metrics if m.metric == "jaccard" and m.value == "a girl"
            and m.k == k]
    assert girl[0].n == len(SUBJECTS) - 1  # the skipped pair is not in the mean
    serp = [m for m in pr.metrics if m.metric == "serp_star" and m.k == k and m.value]
    assert all(m.convention.startswith("fairllm; fairllm parse") for m in serp)
    pairs = len(SUBJECTS) * (4 + 2)
    assert f"1 of {pairs} pairs skipped: an empty parsed list (FaiRLLM's rule" in \
        " ".join(pr.warnings)
    assert any("Catalog-free audit" in n and "fairllm parse" in n for n in pr.method_notes)
    assert result.provenance.catalog_sha256 == OpenCatalog("fairllm").fingerprint()


def test_catalog_free_recaudit_parse_scores_empty_pairs(tmp_path):
    """``parse: recaudit`` keeps the project's convention: an empty list is scored (0 against
    a non-empty one), nothing is skipped."""
    k = 6
    result = run_audit(_open_config(tmp_path, parse="recaudit", k=k), progress=False)
    pr = result.probes[0]
    assert pr.status == "ok", pr.error
    assert not any("pairs skipped" in w for w in pr.warnings)
    girl = [m for m in pr.metrics if m.metric == "jaccard" and m.value == "a girl" and m.k == k]
    assert girl[0].n == len(SUBJECTS)
    lists = {r["id"]: r["item_ids"] for r in pr.records}
    assert lists["2|gender|a girl"] == []
    assert "the matrix" in {i for x in lists.values() for i in x}
    want = np.mean([jaccard(lists[f"{m}|gender|a girl"], lists[f"{m}|neutral"])
                    for m in range(len(SUBJECTS))])
    assert girl[0].estimate == pytest.approx(want, abs=1e-12)
    assert "recaudit parse" in girl[0].convention


def test_fairllm_suite_catalog_free_from_recorded_batch_answers(tmp_path):
    """Plan, export, answer elsewhere, replay, audit: the bundled fairllm suite with inline
    subjects, no catalog and FaiRLLM's parse, from an OpenAI Batch output file; Sim, SNSR and
    SNSV of jaccard, serp_star and prag_star come back at every k."""
    import json

    from recaudit.cli import main

    cfg = tmp_path / "a.yaml"
    cfg.write_text(
        "model: replay:" + str(tmp_path / "batch") + "\n"
        "catalog: {source: none, parse: fairllm}\n"
        f"engine: {{cache: {tmp_path / 'c.sqlite'}, progress: false}}\n"
        "stats: {n_bootstrap: 100, n_permutations: 99, min_group_size: 2}\n"
        "probes:\n  - probe: counterfactual\n    suite: fairllm\n    params:\n"
        "      k: 5\n      similarities: [jaccard, serp_star, prag_star]\n"
        f"      subjects: {{source: inline, items: {json.dumps(SUBJECTS)}}}\n"
        f"out: {tmp_path / 'out'}\n", encoding="utf-8")
    (tmp_path / "batch").mkdir()
    batch_in = tmp_path / "batch" / "x.input.jsonl"
    assert main(["export-requests", str(cfg), "--format", "openai-batch",
                 "--out", str(batch_in)]) == 0
    out_lines = []
    for line in batch_in.read_text(encoding="utf-8").splitlines():
        req = json.loads(line)
        text = raw_text(req["body"]["messages"], 5)
        out_lines.append(json.dumps({"id": "r", "custom_id": req["custom_id"], "error": None,
                                     "response": {"status_code": 200, "body": {"choices": [
                                         {"message": {"role": "assistant",
                                                      "content": text}}]}}}))
    (tmp_path / "batch" / "x.output.jsonl").write_text("\n".join(out_lines) + "\n",
                                                       encoding="utf-8")
    assert main(["audit", str(cfg), "--no-progress", "--strict", "--format", "json"]) == 0
    pr = json.loads((tmp_path / "out" / "results.json").read_text())["probes"][0]
    assert pr["status"] == "ok" and pr["n_failed"] == 0
    attrs = {m["attribute"] for m in pr["metrics"] if m["metric"] == "snsr_jaccard"}
    assert len(attrs) == 8  # all of FaiRLLM's attributes
    for sim in ("jaccard", "serp_star", "prag_star"):
        for k in range(1, 6):
            for kind in ("snsr", "snsv"):
                assert any(m["metric"] == f"{kind}_{sim}" and m["k"] == k
                           and m["estimate"] is not None for m in pr["metrics"]), (sim, k)
    assert any("fairllm parse" in (m["convention"] or "") for m in pr["metrics"])
