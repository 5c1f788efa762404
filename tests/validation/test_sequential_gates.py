"""Sequential gates (adaptive audits): the section of docs/VALIDATION.md that
``python -m validation.sequential`` writes holds, and is current."""

from __future__ import annotations

from pathlib import Path

import pytest

from validation.sequential import (CAP, KINDS, MULTIPLES, RUNS, SECTION, render_section,
                                   run_kind, section_rows, slack)

DOC = Path(__file__).resolve().parents[2] / "docs" / "VALIDATION.md"


@pytest.fixture(scope="module")
def rows() -> dict[tuple[str, str], tuple[int, int, int]]:
    text = DOC.read_text(encoding="utf-8")
    assert SECTION in text, "run `python -m validation.sequential`"
    got = section_rows(text)
    assert set(got) == {(k.name, f"{m:g}") for k in KINDS for m in MULTIPLES}
    return got


def test_no_false_fail_at_no_effect_and_no_false_pass_at_the_bound(rows):
    for kind in KINDS:
        fails, _, _ = rows[(kind.name, "0")]
        _, passes, _ = rows[(kind.name, "1")]
        assert fails / RUNS <= slack(RUNS), (kind.name, fails)
        assert passes / RUNS <= slack(RUNS), (kind.name, passes)


def test_clear_effects_are_failed_and_paired_spreads_save_half_the_calls(rows):
    for kind in KINDS:
        fails, _, _ = rows[(kind.name, "4")]
        assert fails == RUNS, kind.name  # 4x the bound: always failed before the cap
    text = DOC.read_text(encoding="utf-8").split(SECTION)[1]
    line = next(x for x in text.splitlines() if x.startswith("| spread (2 values) | 2 |"))
    assert line.rstrip().endswith("| ok |")  # <= 50% of the fixed plan's calls at 2x


def test_the_section_is_current_on_two_rows():
    """A fresh run of two rows (same seeds) gives the document's counts."""
    fresh = render_section([run_kind(KINDS[0], 0.0), run_kind(KINDS[0], 2.0)])
    assert f"a fixed plan (the cap) of {CAP} units" in fresh
    text = DOC.read_text(encoding="utf-8")
    prose = [x for x in text[text.index(SECTION):].splitlines() if not x.startswith("| ")]
    assert prose == [x for x in fresh.splitlines() if not x.startswith("| ")], (
        "the section's text is stale: run `python -m validation.sequential`")
    written = section_rows(text)
    for key, counts in section_rows(SECTION + "\n" + fresh.split("\n", 1)[1]).items():
        assert all(abs(a - b) <= 2 for a, b in zip(counts, written[key], strict=True)), key


def test_where_the_2x_target_is_missed_walds_bound_says_no_test_could_meet_it():
    """Position and AUC miss the 50% target at 2x; Wald's bound for any valid sequential test
    lies above half the cap, and the observed calls lie above the bound (a lower bound)."""
    from validation.sequential import auc_wald_floor, position_wald_floor

    text = DOC.read_text(encoding="utf-8").split(SECTION)[1]
    for name, floor in (("position", position_wald_floor(2.0)), ("AUC (leakage)",
                                                                 auc_wald_floor(2.0))):
        line = next(x for x in text.splitlines() if x.startswith(f"| {name} | 2 |"))
        calls = float(line.split("|")[6].strip().rstrip("%")) / 100
        assert 0.5 * CAP < floor <= calls * CAP, (name, floor, calls)
    # the bound shrinks as the effect grows (4x: far below the cap)
    assert position_wald_floor(4.0) < 0.2 * CAP and auc_wald_floor(4.0) < 0.2 * CAP
