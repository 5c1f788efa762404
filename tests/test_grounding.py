"""Grounding of free text: parsing formats, normalisation, matching, robustness, real outputs."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pandas as pd
import pytest

from recaudit import grounding
from recaudit.grounding import (Grounding, TitleMatcher, ground, match_entry, normalize_title,
                                parse_list)
from recaudit.grounding.parse import _split_inline_numbering as split_inline_numbering

DATA = Path(__file__).parent / "data"


# ------------------------------------------------------------------ Grounding
def test_grounding_share_and_roundtrip():
    g = Grounding(item_ids=["1", "2"], unmatched=["Nope"], duplicates=1,
                  entries=["A", "B", "A", "Nope"])
    assert g.hallucination_share == 0.25
    assert Grounding().hallucination_share == 0.0
    d = g.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert Grounding.from_dict(d) == g
    assert Grounding.from_dict({}) == Grounding()


# ------------------------------------------------------------------ parse_list
@pytest.mark.parametrize("text, expected", [
    ("1. Heat\n2. Alien\n3. Up", ["Heat", "Alien", "Up"]),
    ("1) Heat\n2) Alien", ["Heat", "Alien"]),
    ("#1: Heat\n#2: Alien", ["Heat", "Alien"]),
    ("1 - Heat\n2 - Alien", ["Heat", "Alien"]),
    ("- Heat\n- Alien", ["Heat", "Alien"]),
    ("* Heat\n* Alien", ["Heat", "Alien"]),
    ("• Heat\n• Alien", ["Heat", "Alien"]),
    ("  1. Heat\n  2. Alien", ["Heat", "Alien"]),
    ('1. "Heat" (1995)\n2. "Alien"', ["Heat (1995)", "Alien"]),
    ("1. **Heat** (1995): A heist thriller.\n2. **Alien**", ["Heat (1995)", "Alien"]),
    ('["Heat", "Alien", "The Matrix"]', ["Heat", "Alien", "The Matrix"]),
    ('[{"title": "Heat", "year": 1995}, {"title": "Alien"}]', ["Heat (1995)", "Alien"]),
    ('[{"name": "Heat"}, {"Name": "Alien"}]', ["Heat", "Alien"]),
    ('Here you go:\n```json\n{"movies": ["Heat", "Alien"]}\n```\nEnjoy!', ["Heat", "Alien"]),
    ('[{"title": "Heat", "year": 1995}, {"title": "Alien", "year": 1979}, {"title": "Up',
     ["Heat (1995)", "Alien (1979)"]),
    ('["Heat", "Alien", "The Mat', ["Heat", "Alien"]),
    ("Heat, Alien, The Matrix, Toy Story", ["Heat", "Alien", "The Matrix", "Toy Story"]),
    ("Here are some: Heat, Alien, Up and The Matrix.", ["Heat", "Alien", "Up", "The Matrix"]),
    ('I think you would enjoy "Heat" and also "Alien".', ["Heat", "Alien"]),
    ("**Heat**\n**Alien**", ["Heat", "Alien"]),
    ("Heat\nAlien\nThe Matrix", ["Heat", "Alien", "The Matrix"]),
    ("Sure! Here are 3 movies you might like:\n\n1. Heat\n2. Alien\n3. Up\n\n"
     "I hope you enjoy these movies! Let me know if you want more.", ["Heat", "Alien", "Up"]),
    ("1. Inception (2010) - A thief who steals corporate secrets through dreams.\n"
     "2. Heat - a heist thriller\n3. Alien: the crew of a ship meets a creature",
     ["Inception (2010)", "Heat", "Alien"]),
    ("1. Star Wars: Episode IV - A New Hope\n2. Léon: The Professional\n"
     "3. Mission: Impossible", ["Star Wars: Episode IV - A New Hope", "Léon: The Professional",
                                "Mission: Impossible"]),
    ("**Action:**\n- Heat\n- Alien\n**Comedy:**\n- Up", ["Heat", "Alien", "Up"]),
    ("1. **Action movies:**\n   - Heat\n   - Alien\n2. **Comedy:**\n   - Up",
     ["Heat", "Alien", "Up"]),
    ("1. Heat\n   - Director: Michael Mann\n   - Year: 1995\n2. Alien\n   - Year: 1979",
     ["Heat", "Alien"]),
    ("Here:\n\n| # | Title | Year |\n|---|-------|------|\n| 1 | Inception | 2010 |\n"
     "| 2 | *Heat* | 1995 |\n\nEnjoy!", ["Inception (2010)", "Heat (1995)"]),
    ("| Movie | Why |\n| --- | --- |\n| The Matrix | mind-bending |", ["The Matrix"]),
    ("- *Inception* (2010)\n- _Heat_\n- M*A*S*H", ["Inception (2010)", "Heat", "M*A*S*H"]),
    ('1. "The Godfather" Part II\n2. "Heat" is a classic', ["The Godfather Part II", "Heat"]),
    ("1. The Princess Bride: The Princess Bride (1987)\n2. Jurassic World: The Lost Planet: "
     "The Lost Planet: The Lost Planet:", ["The Princess Bride (1987)",
                                           "Jurassic World: The Lost Planet"]),
    ("Die Hard: Heat, Alien, Up", ["Die Hard: Heat", "Alien", "Up"]),
    ("```python\ndef f():\n    return [\"Title 1\", \"Title 2\"]\n```", []),
    ("", []),
    ("   \n\n", []),
    ("I cannot recommend movies. As an AI, I have no preferences, sorry about that.", []),
])
def test_parse_list_formats(text, expected):
    assert parse_list(text) == expected


def test_a_table_of_separator_rows_only_parses_to_nothing():
    # found by the hypothesis suite: the unguarded parser raised IndexError (no header row)
    assert grounding.parse_entries("|--|\n|--|") == ([], "none")
    assert grounding.parse_entries("| --- | --- |\n|:--:|---|\nHeat") == (["Heat"], "lines")


def test_parse_list_non_text():
    assert parse_list(None) == []  # type: ignore[arg-type]
    assert parse_list(42) == []  # type: ignore[arg-type]


# ------------------------------------------------------------------ normalize_title
@pytest.mark.parametrize("raw, key", [
    ("The Matrix", "the matrix"),
    ("Matrix, The", "the matrix"),
    ("The Matrix, 1999", "the matrix"),
    ("Blade Runner 2049", "blade runner 2049"),
    ("M*A*S*H", "mash"),
    ("Matrix, The (1999)", "the matrix"),
    ('"The Matrix" (1999)', "the matrix"),
    ("**The Matrix**", "the matrix"),
    ("“The Matrix”", "the matrix"),
    ("THE   MATRIX!", "the matrix"),
    ("Beautiful Mind, A", "a beautiful mind"),
    ("American Tail, An", "an american tail"),
    ("Misérables, Les", "les miserables"),
    ("Jetée, La", "la jetee"),
    ("Mariachi, El", "el mariachi"),
    ("Name der Rose, Der", "der name der rose"),
    ("Atalante, L'", "latalante"),
    ("L'Atalante", "latalante"),
    ("Dumb & Dumber", "dumb and dumber"),
    ("Schindler's List", "schindlers list"),
    ("Schindler’s List", "schindlers list"),
    ("Spider-Man 2", "spider man 2"),
    ("Léon: The Professional", "leon the professional"),
    ("2001: A Space Odyssey", "2001 a space odyssey"),
    ("1917", "1917"),
    ("(500) Days of Summer", "500 days of summer"),
    ("", ""),
])
def test_normalize_title(raw, key):
    assert normalize_title(raw) == key


def test_normalize_article_inversion_is_symmetric():
    for inverted, natural in [("Godfather, The", "The Godfather"),
                              ("Fish Called Wanda, A", "A Fish Called Wanda"),
                              ("Inconvenient Truth, An", "An Inconvenient Truth"),
                              ("Vie en Rose, La", "La Vie en Rose"),
                              ("Boot, Das", "Das Boot"), ("Postino, Il", "Il Postino"),
                              ("Mariachi, El", "El Mariachi"), ("Samouraï, Le", "Le Samouraï")]:
        assert normalize_title(inverted) == normalize_title(natural)


# ------------------------------------------------------------------ TitleMatcher
TITLES = {
    "1": "Matrix, The", "2": "Heat", "3": "Alice in Wonderland", "4": "Alice in Wonderland",
    "5": "Alice in Wonderland", "6": "Toy Story", "7": "Toy Story 2", "8": "Toy Story 3",
    "9": "Seven (a.k.a. Se7en)", "10": "Misérables, Les", "11": "Godfather, The",
    "12": "Star Wars: Episode IV - A New Hope", "13": "Up", "14": "Inception",
    "15": "Léon: The Professional (a.k.a. The Professional) (Léon)",
    "16": "Shawshank Redemption, The", "17": "Godfather: Part II, The",
    "18": "Lion King II: Simba's Pride, The",
    "19": "Star Wars: Episode V - The Empire Strikes Back",
}
YEARS = {"1": 1999, "2": 1995, "3": 1951, "4": 2010, "5": 1933, "6": 1995, "7": 1999,
         "8": 2010, "9": 1995, "10": 1998, "11": 1972, "12": 1977, "13": 2009, "14": 2010,
         "15": 1994, "16": 1994, "17": 1974, "18": 1998, "19": 1980}
POP = {"3": 10, "4": 30, "5": 2, "12": 300, "19": 200}


@pytest.fixture(scope="module")
def matcher() -> TitleMatcher:
    return TitleMatcher(TITLES, years=YEARS, popularity=POP)


@pytest.mark.parametrize("entry, item", [
    ("The Matrix", "1"), ("Matrix, The", "1"), ("the matrix (1999)", "1"), ("MATRIX", "1"),
    ("Les Misérables", "10"), ("Les Miserables", "10"), ("Misérables, Les", "10"),
    ("Se7en", "9"), ("Seven", "9"), ("Leon", "15"), ("The Professional", "15"),
    ("Léon: The Professional", "15"), ("Star Wars: A New Hope", "12"),
    ("Star Wars: Episode IV - A New Hope (1977)", "12"), ("The Godfather Part II", "17"),
    ("Godfather", "11"), ("Up", "13"), ("Toy Story 2", "7"), ("Toy Story", "6"),
    ("The Empire Strikes Back", "19"), ("Star Wars: The Empire Strikes Back", "19"),
    ("The Lion King II", "18"), ("Lion King II", "18"),
    ("Star Wars", "12"),  # prefix key shared by two films: the most popular
    ("Star Wars (1980)", "19"),  # ... unless the year says otherwise
])
def test_matcher_exact_and_aliases(matcher, entry, item):
    assert matcher.match(entry) == item


def test_matcher_year_disambiguation(matcher):
    assert matcher.match("Alice in Wonderland (1951)") == "3"
    assert matcher.match("Alice in Wonderland (1933)") == "5"
    assert matcher.match("Alice in Wonderland (2011)") == "4"  # within one year
    assert matcher.match("Alice in Wonderland") == "4"  # no year: most popular
    assert matcher.match("Alice in Wonderland (1980)") == "4"  # wrong year: most popular
    no_pop = TitleMatcher({"a": "Heat", "b": "Heat"}, years={"a": 1986, "b": 1995})
    assert no_pop.match("Heat") == "a"  # no popularity: catalogue order
    assert no_pop.match("Heat (1995)") == "b"
    # year taken from the title when no years are given
    in_title = TitleMatcher({"a": "Heat (1986)", "b": "Heat (1995)"})
    assert in_title.match("Heat (1995)") == "b" and in_title.match("Heat") == "a"


@pytest.mark.parametrize("entry, item", [
    ("The Godfathr", "11"),             # one typo
    ("Shawshank Redemtion", "16"),      # one dropped letter
    ("The Shawshank Redemption!", "16"),
    ("Redemption, The Shawshank", "16"),  # word order
    ("Inceptoin", None),                # 88.9 < 90: a transposition in a short title
    ("Toy Story 4", None),              # sequel numbers must agree
    ("Toy Story 5", None),
    ("Ip", None),                       # short keys only match exactly
    ("The Matrix Reloaded", None),
    ("Godfather Part III", None),
])
def test_matcher_fuzzy_threshold(matcher, entry, item):
    assert matcher.match(entry) == item


def test_matcher_year_tolerance_strict_mode():
    strict = TitleMatcher(TITLES, years=YEARS, popularity=POP, year_tolerance=2)
    assert strict.match("Heat (1995)") == "2" and strict.match("Heat (1997)") == "2"
    assert strict.match("Heat (2019)") is None  # a remake the catalogue lacks
    assert strict.match("Heat") == "2"
    assert strict.match("Alice in Wonderland (1980)") is None
    assert TitleMatcher(TITLES, years=YEARS).match("Heat (2019)") == "2"  # lenient default


def test_matcher_threshold_and_scorer_parameters():
    loose = TitleMatcher(TITLES, threshold=80.0, years=YEARS)
    assert loose.match("Inceptoin") == "14"
    with pytest.raises(ValueError):
        TitleMatcher(TITLES, scorer="nope")
    wr = TitleMatcher(TITLES, scorer="WRatio")
    assert wr.match("The Godfathr") == "11"
    _, score = wr.match_with_score("The Matrix")
    assert score == 100.0


def test_matcher_cache_and_empty_titles():
    m = TitleMatcher({"a": "Heat", "b": "", "c": None})  # type: ignore[dict-item]
    assert len(m) == 1
    assert m.match("Heat") == "a" and m.match("Heat") == "a"
    assert len(m._cache) == 1
    assert m.match("") is None and m.match(None) is None  # type: ignore[arg-type]
    empty = TitleMatcher({})
    assert empty.match("Heat") is None


# ------------------------------------------------------------------ ground
def test_ground_order_duplicates_unmatched(matcher):
    text = ("Sure! Here are 6 movies:\n1. Heat (1995)\n2. The Matrix\n3. Matrix, The\n"
            "4. A Movie That Does Not Exist\n5. Se7en - a dark thriller about sins.\n"
            "6. Up\nHappy watching!")
    g = ground(text, matcher)
    assert g.item_ids == ["2", "1", "9", "13"]
    assert g.duplicates == 1
    assert g.unmatched == ["A Movie That Does Not Exist"]
    assert g.entries == ["Heat (1995)", "The Matrix", "Matrix, The",
                         "A Movie That Does Not Exist", "Se7en", "Up"]
    assert g.hallucination_share == pytest.approx(1 / 6)


def test_ground_tries_shorter_readings(matcher):
    # the description reads like a subtitle, so the parser keeps it; the matcher retries
    g = ground("1. Heat (1995) - Michael Mann\n2. Inception (directed by Christopher Nolan)\n"
               "3. The Godfather by Francis Ford Coppola\n4. Inception: The Last Dream", matcher)
    assert g.entries[0] == "Heat (1995)"  # a year closes the title
    assert g.item_ids == ["2", "14", "11"]
    # a title-cased text after a colon is a subtitle: an invented sequel is not the original
    assert g.unmatched == ["Inception: The Last Dream"]


def test_ground_rejoins_comma_titles():
    m = TitleMatcher({"g": "Good, the Bad and the Ugly, The", "h": "Heat", "a": "Alien"})
    g = ground("Heat, The Good, the Bad and the Ugly, Alien", m)
    assert g.item_ids == ["h", "g", "a"] and g.unmatched == []


def _random_text(rng: random.Random) -> str:
    kind = rng.random()
    if kind < 0.4:  # arbitrary code points, surrogates and controls included
        return "".join(chr(rng.randrange(0, 0x110000)) for _ in range(rng.randrange(0, 80)))
    pieces = ["1.", "2)", "#3:", "-", "*", "•", "**", "__", "[", "]", "{", "}", '"', "'", ",",
              ":", " - ", "\n", "\r\n", "\t", "(1999)", "(", ")", "```json", "```", "The",
              "Matrix", "Heat", "Toy Story 2", "Alice in Wonderland", "Les", ", The", "&",
              "title", '"title": ', "null", "true", "1e309", "\\", "\u200b", "\ud800", "é",
              "Se7en", "a.k.a.", "0" * 30, "[[[[[[[[", "{{{{{{", "x" * 400]
    return "".join(rng.choice(pieces) + rng.choice(["", " "]) for _ in range(rng.randrange(60)))


def test_ground_never_raises_on_garbage(matcher):
    rng = random.Random(20240607)
    for _ in range(600):
        text = _random_text(rng)
        # the parser and matcher themselves must not raise (ground() also has a last-resort
        # guard, which would hide bugs from this test)
        entries, _ = grounding.parse_entries(text)
        for e in entries:
            match_entry(e, matcher)
        g = ground(text, matcher)
        assert g.entries == entries
        assert isinstance(g, Grounding)
        assert len(g.item_ids) + len(g.unmatched) + g.duplicates == len(g.entries)
        assert len(set(g.item_ids)) == len(g.item_ids)
        assert all(isinstance(e, str) for e in g.entries)
        json.dumps(g.to_dict())
    for odd in (None, 3, b"1. Heat", ["Heat"], "[" * 10_000, "1. " * 5000, "{" * 5000 + "}"):
        g = ground(odd, matcher)  # type: ignore[arg-type]
        assert isinstance(g, Grounding)


# ------------------------------------------------------------------ real SmolLM2 outputs
# tests/data/smollm2_outputs.json: real greedy outputs of SmolLM2-135M-Instruct (regenerate with
# tests/data/collect_smollm2_outputs.py); tests/data/smollm2_grounding_expected.json: hand labels,
# per record the entries a reader sees and, per entry, the MovieLens title it names (or null).
@pytest.fixture(scope="module")
def movielens():
    from recaudit.catalog import Catalog

    return Catalog.from_movielens()


def _load_real():
    outputs = json.loads((DATA / "smollm2_outputs.json").read_text(encoding="utf-8"))["records"]
    labels = json.loads((DATA / "smollm2_grounding_expected.json").read_text(encoding="utf-8"))
    return outputs, labels["labels"]


def _precision_recall(cat, matcher: TitleMatcher) -> tuple[float, float, dict]:
    """Per-entry precision/recall of matching against the labels (entries from the labels)."""
    outputs, labels = _load_real()
    tp = fp = fn = 0
    errors = {}
    for o in outputs:
        lab = labels[o["id"]]
        for entry, title in zip(lab["entries"], lab["titles"]):
            item = match_entry(entry, matcher)
            pred = None if item is None else cat.title(item)
            ok = pred is not None and title is not None and \
                normalize_title(pred) == normalize_title(title)
            if ok:
                tp += 1
                continue
            if pred is not None:
                fp += 1
            if title is not None:
                fn += 1
            if pred is not None or title is not None:
                errors[f"{o['id']}: {entry}"] = (pred, title)
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    return precision, recall, errors


def test_real_outputs_fixture_shape(movielens):
    outputs, labels = _load_real()
    assert len(outputs) >= 30
    assert [o["id"] for o in outputs] == list(labels)
    for o in outputs:
        lab = labels[o["id"]]
        assert len(lab["entries"]) == len(lab["titles"])
        assert o["output"].strip()
    # every labelled title is a real MovieLens title (catches typos in the labels)
    known = set(movielens.items["title"].dropna())
    assert {t for lab in labels.values() for t in lab["titles"] if t} <= known
    n_lists = sum(1 for lab in labels.values() if lab["entries"])
    assert n_lists >= 20


def test_real_outputs_parse_exactly():
    outputs, labels = _load_real()
    wrong = {o["id"]: parse_list(o["output"]) for o in outputs
             if parse_list(o["output"]) != labels[o["id"]]["entries"]}
    assert wrong == {}


def test_real_outputs_grounding_precision_recall(movielens):
    precision, recall, errors = _precision_recall(movielens, movielens.matcher)
    assert precision >= 0.95, errors
    assert recall >= 0.90, errors
    # ground() end to end agrees with the per-entry matching
    outputs, labels = _load_real()
    for o in outputs:
        g = movielens.ground(o["output"])
        assert g.entries == labels[o["id"]]["entries"]


def test_real_outputs_token_sort_beats_wratio(movielens):
    """The measurement behind the default scorer (see TitleMatcher's docstring)."""
    m = movielens.matcher
    titles = {i: t for i, t in zip(movielens.items.index, movielens.items["title"])
              if isinstance(t, str)}
    years = {i: int(y) for i, y in zip(movielens.items.index, movielens.items["year"])
             if not pd.isna(y)}
    pop = movielens.items["popularity"].to_dict()
    wratio = TitleMatcher(titles, 90.0, years=years, popularity=pop, scorer="WRatio")
    p_ts, r_ts, _ = _precision_recall(movielens, m)
    p_wr, r_wr, _ = _precision_recall(movielens, wratio)
    assert p_ts > p_wr
    assert r_ts >= r_wr - 0.02


def test_garbage_against_movielens(movielens):
    rng = random.Random(7)
    for _ in range(60):
        text = _random_text(rng)
        entries, _ = grounding.parse_entries(text)
        for e in entries:  # the matcher itself never raises and only returns catalog ids
            item = match_entry(e, movielens.matcher)
            assert item is None or item in movielens
        g = movielens.ground(text)
        assert all(i in movielens for i in g.item_ids)
        assert len(g.item_ids) + len(g.unmatched) + g.duplicates == len(g.entries)


# ------------------------------------------------------------------ formats large models use
# Each grounded to no item before (the entries kept "1." / "**", one entry per line, or the
# sentence's lead-in "I recommend"); TITLES ids: 1 Matrix, 2 Heat, 13 Up, 14 Inception,
# 16 Shawshank Redemption, 11 Godfather, 9 Se7en.
@pytest.mark.parametrize("text, entries, ids", [
    ("**1. The Matrix** - a hacker learns the truth.\n**2. Heat** - a heist thriller.\n"
     "**3. Up (2009)** - a flying house.",
     ["The Matrix", "Heat", "Up (2009)"], ["1", "2", "13"]),
    ("Here are my picks:\n\n**1. The Shawshank Redemption (1994)** – Hope.\n"
     "**2. The Godfather** - Family.", ["The Shawshank Redemption (1994)", "The Godfather"],
     ["16", "11"]),
    ("**1.** The Matrix - a hacker\n**2.** Heat - a heist", ["The Matrix", "Heat"], ["1", "2"]),
    ("1. **The Matrix** – a hacker learns\n2. **Heat**: a heist thriller",
     ["The Matrix", "Heat"], ["1", "2"]),
    ("* **The Matrix** (1999) - a hacker\n* **Heat** (1995) - a heist\n"
     "* **Inception** (2010) – dreams", ["The Matrix (1999)", "Heat (1995)", "Inception (2010)"],
     ["1", "2", "14"]),
])
def test_markdown_bold_numbering_with_dash_descriptions(matcher, text, entries, ids):
    assert parse_list(text) == entries
    g = ground(text, matcher)
    assert g.item_ids == ids and g.unmatched == []


@pytest.mark.parametrize("text, entries", [
    ("Sure! 1. The Matrix 2. Heat 3. Up", ["The Matrix", "Heat", "Up"]),
    ("Sure! Here are 3 movies: 1. The Matrix (1999) 2. Heat (1995) 3. Up (2009). Enjoy!",
     ["The Matrix (1999)", "Heat (1995)", "Up (2009)"]),
    ("My picks: 1) Heat 2) Se7en 3) Inception", ["Heat", "Se7en", "Inception"]),
    # a number inside a title breaks the run 1, 2, 3 and does not split
    ("1. Apollo 13. 2. Heat 3. Up", ["Apollo 13", "Heat", "Up"]),
])
def test_inline_numbering_on_one_line(text, entries):
    assert parse_list(text) == entries


def test_inline_numbering_grounds(matcher):
    g = ground("Sure! 1. The Matrix 2. Heat 3. Up 4. Se7en", matcher)
    assert g.item_ids == ["1", "2", "13", "9"] and g.unmatched == []
    # one marker only, or numbers that do not run 1, 2, ...: a single entry, as before
    assert split_inline_numbering("1. Ocean's 11") == ["1. Ocean's 11"]
    assert split_inline_numbering("Top 5. Heat 7. Up") == ["Top 5. Heat 7. Up"]


@pytest.mark.parametrize("text, entries", [
    ("I recommend The Matrix, Heat, and Up.", ["The Matrix", "Heat", "Up"]),
    ("You might enjoy Inception, The Godfather, and Se7en.", ["Inception", "The Godfather",
                                                             "Se7en"]),
    ("Sure! I recommend The Matrix, Heat, and Up. Enjoy!", ["The Matrix", "Heat", "Up"]),
    ("Based on your taste, I'd suggest Inception, Heat, or Up.", ["Inception", "Heat", "Up"]),
    ("I think you would love Dr. Strangelove, The Godfather, and Mr. Smith Goes to "
     "Washington.", ["Dr. Strangelove", "The Godfather", "Mr. Smith Goes to Washington"]),
    ("I recommend The Matrix, Heat and Up, which are all great.", ["The Matrix", "Heat", "Up"]),
    # no lead-in: the titles are left alone
    ("The Matrix, Heat, and Up", ["The Matrix", "Heat", "Up"]),
])
def test_prose_list_with_oxford_and(text, entries):
    assert parse_list(text) == entries


def test_prose_list_grounds(matcher):
    g = ground("I recommend The Matrix, Heat, and Up.", matcher)
    assert g.item_ids == ["1", "2", "13"] and g.unmatched == []
