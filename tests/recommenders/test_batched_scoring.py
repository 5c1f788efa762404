"""Candidate scoring batched across requests (issue 13): a request's scores are bit-identical
whichever requests share its forward passes, and within 1e-4 of full-sequence scoring."""

from __future__ import annotations

import pytest

from recaudit.recommenders.base import Decoding, Request
from recaudit.recommenders.hf import HFRecommender

from . import tiny_models as tm

TITLES = ["The Matrix (1999)", "Heat", "Toy Story (1995)", "", "Casablanca and Jaws",
          "Alien (1979), Fargo (1996), Rocky, Psycho, Vertigo", "Fargo"]


def _requests() -> list[Request]:
    """Prompts of different lengths, candidate lists of different sizes (one empty candidate,
    one request without candidates)."""
    reqs = []
    for i in range(5):
        prompt = ("I am a male user who likes horror. " * (i % 3 + 1)) + f"Pick {i + 1} movie."
        cands = TITLES[i % 3:] if i != 2 else [f"{t} {n}" for n in range(3) for t in TITLES[:4]]
        reqs.append(Request(Request.from_prompt(prompt).messages, candidates=cands))
    reqs.append(Request.from_prompt("Recommend movies."))  # no candidates
    return reqs


@pytest.fixture(scope="module")
def rec(tmp_path_factory) -> HFRecommender:
    path = tm.make_causal(tmp_path_factory.mktemp("tiny_scoring") / "causal")
    return HFRecommender(str(path), Decoding(max_new_tokens=4), batch_size=3)


def test_scores_do_not_depend_on_the_other_requests(rec):
    assert rec.exact_batching
    reqs = _requests()
    together = rec.score(reqs)
    alone = [rec.score([r])[0] for r in reqs]
    assert together == alone  # bit for bit
    shuffled = reqs[::-1]
    assert rec.score(shuffled) == alone[::-1]
    assert rec.score(reqs[1:4]) == alone[1:4]
    assert together[-1] == [] and together[0][3] == 0.0  # no candidates; an empty candidate
    for got, ref in zip(together, rec.score_naive(reqs[:3])):
        assert got == pytest.approx(ref, abs=1e-4)
    assert len(set(together[2])) == len(together[2])  # every candidate scored on its own


def test_candidates_of_many_requests_share_forward_passes(rec):
    reqs = [r for r in _requests()[:6] if r.candidates and len(r.candidates) < 10]
    calls: list[tuple[int, int]] = []
    handle = rec.model.model.register_forward_pre_hook(
        lambda mod, args, kwargs: calls.append(tuple(kwargs["input_ids"].shape)),
        with_kwargs=True)
    try:
        rec.score(reqs)
    finally:
        handle.remove()
    n_prompt_groups = -(-len(reqs) // rec.batch_size)
    # one prefill per group of batch_size prompts, then all its candidates in one pass
    assert len(calls) == 2 * n_prompt_groups
    assert max(rows for rows, _ in calls) > rec.batch_size  # candidates of several requests


def test_batch_size_never_changes_scores(rec):
    wide = HFRecommender(rec.path, Decoding(max_new_tokens=4), batch_size=16)
    assert wide.fingerprint() == rec.fingerprint()
    assert wide.score(_requests()) == rec.score(_requests())


# ----------------------------------------------------------------------------- real SmolLM2
@pytest.fixture(scope="module")
def smollm2(tmp_path_factory):
    return tm.load_smollm2(tmp_path_factory, 8)


@pytest.mark.integration
def test_smollm2_batched_scores_are_bit_identical_and_close_to_naive(smollm2):
    rec = smollm2
    assert rec.exact_batching, rec.batch_invariance()
    reqs = [Request(Request.from_prompt(f"I am a fan of {genre} movies. Name one movie.").messages,
                    candidates=TITLES[i:i + 4])
            for i, genre in enumerate(["action", "romantic comedy", "science fiction"])]
    together = rec.score(reqs)
    assert together == [rec.score([r])[0] for r in reqs]
    for got, ref in zip(together, rec.score_naive(reqs)):
        assert got == pytest.approx(ref, abs=1e-4)
