"""Engine: dedup, cache hits, resumability after a crash or a kill, max-requests, dry-run."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import pytest

from recaudit.engine import Engine, ResponseCache
from recaudit.errors import ModelRuntimeError
from recaudit.recommenders.base import GENERATE, Recommender, Request, Response


class CountingRecommender(Recommender):
    capabilities = frozenset({GENERATE})

    def __init__(self, fail_after_batches: int | None = None, tag: str = "v1") -> None:
        super().__init__(spec="counting")
        self.calls: list[str] = []
        self.batches = 0
        self.fail_after = fail_after_batches
        self.tag = tag

    def fingerprint(self) -> str:
        return f"counting-{self.tag}"

    def recommend(self, requests):
        if self.fail_after is not None and self.batches >= self.fail_after:
            raise RuntimeError("simulated crash")
        self.batches += 1
        out = []
        for r in requests:
            self.calls.append(r.key())
            out.append(Response(text=f"1. Movie {r.messages[-1].content}"))
        return out


def _requests(n: int) -> list[Request]:
    return [Request.from_prompt(f"prompt {i}", k=5) for i in range(n)]


def test_dedup_and_cache_hits(tmp_path):
    rec = CountingRecommender()
    reqs = _requests(10) + _requests(10)  # every request twice
    eng = Engine(rec, cache_path=tmp_path / "c.sqlite", batch_size=3, progress=False)
    answers = eng.run(reqs)
    assert len(answers) == 10 and len(rec.calls) == 10
    assert eng.stats.estimate.unique == 10 and eng.stats.computed == 10
    again = Engine(rec, cache_path=tmp_path / "c.sqlite", progress=False).run(reqs)
    assert len(rec.calls) == 10  # nothing recomputed
    assert all(a.cached for a in again.values())
    assert {k: a.response.text for k, a in again.items()} == \
        {k: a.response.text for k, a in answers.items()}


def test_other_model_or_decoding_is_a_cache_miss(tmp_path):
    reqs = _requests(4)
    Engine(CountingRecommender(), cache_path=tmp_path / "c.sqlite", progress=False).run(reqs)
    other = CountingRecommender(tag="v2")
    Engine(other, cache_path=tmp_path / "c.sqlite", progress=False).run(reqs)
    assert len(other.calls) == 4
    rec = CountingRecommender()
    rec.decoding = type(rec.decoding)(max_new_tokens=17)
    Engine(rec, cache_path=tmp_path / "c.sqlite", progress=False).run(reqs)
    assert len(rec.calls) == 4


def test_crash_mid_run_keeps_finished_batches(tmp_path):
    reqs = _requests(10)
    crashing = CountingRecommender(fail_after_batches=2)
    with pytest.raises(ModelRuntimeError, match="simulated crash"):
        Engine(crashing, cache_path=tmp_path / "c.sqlite", batch_size=3, progress=False).run(reqs)
    assert len(crashing.calls) == 6
    rerun = CountingRecommender()
    answers = Engine(rerun, cache_path=tmp_path / "c.sqlite", batch_size=3,
                     progress=False).run(reqs)
    assert len(answers) == 10
    assert len(rerun.calls) == 4  # only the unfinished ones
    assert not set(rerun.calls) & set(crashing.calls)


def test_max_requests_and_dry_run(tmp_path):
    reqs = _requests(7)
    rec = CountingRecommender()
    dry = Engine(rec, cache_path=tmp_path / "c.sqlite", dry_run=True, progress=False)
    assert dry.run(reqs) == {} and rec.calls == []
    assert dry.stats.estimate.to_run == 0 and dry.stats.estimate.capped == 7
    capped = Engine(rec, cache_path=tmp_path / "c.sqlite", max_requests=3, progress=False)
    assert len(capped.run(reqs)) == 3
    assert capped.stats.estimate.capped == 4
    full = Engine(rec, cache_path=tmp_path / "c.sqlite", progress=False).run(reqs)
    assert len(full) == 7 and len(rec.calls) == 7


def test_failed_responses_are_not_cached(tmp_path):
    class Flaky(CountingRecommender):
        def recommend(self, requests):
            return [Response(error="boom") for _ in requests]

    reqs = _requests(3)
    Engine(Flaky(), cache_path=tmp_path / "c.sqlite", progress=False).run(reqs)
    cache = ResponseCache(tmp_path / "c.sqlite")
    assert cache.count() == 0


KILL_SCRIPT = textwrap.dedent('''
    import sys, time
    from recaudit.engine import Engine
    from recaudit.recommenders.base import GENERATE, Recommender, Request, Response

    class Slow(Recommender):
        capabilities = frozenset({GENERATE})
        def fingerprint(self):
            return "slow"
        def recommend(self, requests):
            time.sleep(0.3)
            with open(sys.argv[2], "a") as fh:
                for r in requests:
                    fh.write(r.key() + "\\n")
            return [Response(text="x") for _ in requests]

    reqs = [Request.from_prompt(f"p{i}") for i in range(int(sys.argv[3]))]
    Engine(Slow(spec="slow"), cache_path=sys.argv[1], batch_size=2, progress=False).run(reqs)
''')


def test_killed_process_resumes_without_recomputing(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(KILL_SCRIPT)
    cache, log = tmp_path / "c.sqlite", tmp_path / "calls.log"
    proc = subprocess.Popen([sys.executable, str(script), str(cache), str(log), "30"])
    deadline = time.time() + 60
    while time.time() < deadline and (not log.exists() or len(log.read_text().split()) < 6):
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    first = log.read_text().split()
    assert 6 <= len(first) < 30
    with sqlite3.connect(cache) as db:
        cached = {row[0] for row in db.execute("SELECT request_key FROM responses")}
    log.unlink()
    subprocess.run([sys.executable, str(script), str(cache), str(log), "30"], check=True)
    second = log.read_text().split()
    assert not set(second) & cached  # nothing that was cached is recomputed
    assert len(cached) + len(second) == 30


# -- answers land one by one; scores are checked where they enter ---------------------------------
class OneByOne(CountingRecommender):
    """Answers each request of a batch as it finishes, then crashes after ``fail_after``."""

    def recommend_each(self, requests):
        for i, r in enumerate(requests):
            if self.fail_after is not None and len(self.calls) >= self.fail_after:
                raise RuntimeError("simulated crash mid-batch")
            self.calls.append(r.key())
            yield i, Response(text=f"1. Movie {r.messages[-1].content}")


def test_each_answer_is_cached_as_it_lands_not_per_batch(tmp_path):
    reqs = _requests(8)
    crashing = OneByOne(fail_after_batches=5)  # 5 answers of one batch of 8, then a crash
    with pytest.raises(ModelRuntimeError, match="simulated crash mid-batch"):
        Engine(crashing, cache_path=tmp_path / "c.sqlite", batch_size=8, progress=False).run(reqs)
    cache = ResponseCache(tmp_path / "c.sqlite")
    assert cache.count() == 5  # per batch, the five finished answers were lost
    cache.close()
    rerun = OneByOne()
    Engine(rerun, cache_path=tmp_path / "c.sqlite", batch_size=8, progress=False).run(reqs)
    assert sorted(rerun.calls) == sorted(r.key() for r in reqs if r.key() not in crashing.calls)


class Scorer(Recommender):
    """Scores candidates by their length; ``bad`` maps a candidate to the score it gets."""

    capabilities = frozenset({"score"})

    def __init__(self, bad: dict[str, float] | None = None) -> None:
        super().__init__(spec="scorer")
        self.bad = bad or {}

    def fingerprint(self) -> str:
        return f"scorer-{sorted(self.bad.items())}"

    def score(self, requests):
        return [[self.bad.get(c, -float(len(c))) for c in r.candidates] for r in requests]


def _scoring(*candidate_lists: list[str]) -> list[Request]:
    return [Request([{"role": "user", "content": "rank these"}], k=len(c), candidates=c)
            for c in candidate_lists]


@pytest.mark.parametrize("value, shown", [(float("nan"), "nan"), (float("inf"), "inf"),
                                          (-float("inf"), "-inf")])
def test_non_finite_scores_fail_their_request_only(tmp_path, value, shown):
    reqs = _scoring(["Heat", "Alien"], ["Fargo", "Jaws"])
    eng = Engine(Scorer(bad={"Alien": value}), cache_path=tmp_path / "c.sqlite", progress=False)
    answers = eng.run(reqs)
    bad, good = answers[reqs[0].key()], answers[reqs[1].key()]
    assert bad.response.error == (f"score returned {shown} for 1 of 2 candidates (first: "
                                  "'Alien'); scores must be finite")
    assert bad.response.scores is None  # never ranked
    assert good.ok and good.response.scores == [-5.0, -4.0]
    assert eng.stats.failed == 1 and eng.cache.count() == 1  # the failure is not cached
    eng.close()


def test_a_cached_nan_score_is_recomputed_never_served(tmp_path, capsys):
    reqs = _scoring(["Heat", "Alien"])
    eng = Engine(Scorer(), cache_path=tmp_path / "c.sqlite", progress=False)
    eng.run(reqs)
    eng.close()
    db = sqlite3.connect(tmp_path / "c.sqlite")  # a row an older recaudit wrote
    db.execute("UPDATE responses SET response = replace(response, '-5.0', 'NaN')")
    db.commit()
    db.close()
    eng = Engine(Scorer(), cache_path=tmp_path / "c.sqlite", progress=False)
    answer = eng.run(reqs)[reqs[0].key()]
    assert answer.ok and not answer.cached and answer.response.scores == [-4.0, -5.0]
    err = capsys.readouterr().err
    assert "1 cached responses" in err and "are unreadable and will be recomputed" in err
    eng.close()


def test_a_row_keyed_before_samples_existed_answers_sample_zero(tmp_path):
    """A cache row keyed by the old formula (sha256 of messages, k, candidates) is sample 0 of
    an audit with samples: 3; only samples 1 and 2 are computed."""
    import hashlib
    import json

    req = Request.from_prompt("prompt 0", k=5)
    old_key = hashlib.sha256(json.dumps(
        {"messages": [{"role": "user", "content": "prompt 0"}], "k": 5, "candidates": None},
        sort_keys=True, ensure_ascii=False).encode()).hexdigest()
    rec = CountingRecommender()
    db = sqlite3.connect(tmp_path / "c.sqlite")
    db.execute("CREATE TABLE responses (model TEXT NOT NULL, decoding TEXT NOT NULL, "
               "request_key TEXT NOT NULL, request TEXT NOT NULL, response TEXT NOT NULL, "
               "created REAL NOT NULL, PRIMARY KEY (model, decoding, request_key))")
    db.execute("INSERT INTO responses VALUES (?,?,?,?,?,?)",
               (rec.fingerprint(), rec.decoding.key(), old_key, "{}",
                json.dumps(Response(text="1. Old answer").to_dict()), 0.0))
    db.commit()
    db.close()
    eng = Engine(rec, cache_path=tmp_path / "c.sqlite", samples=3, progress=False)
    answers = eng.run([req])
    eng.close()
    assert eng.stats.computed == 2 and rec.calls == [req.with_sample(j).key() for j in (1, 2)]
    samples = answers[old_key].samples
    assert samples[0].response.text == "1. Old answer" and samples[0].cached
    assert [s.response.text for s in samples[1:]] == ["1. Movie prompt 0"] * 2


# -- adapters that schedule their own concurrency get streams, not batches ------------------------
class Streaming(Recommender):
    """Records each call's size; reports a made-up concurrency per stream."""

    capabilities = frozenset({GENERATE, "score"})

    def __init__(self, streams: bool) -> None:
        super().__init__(spec="streaming")
        self.streams = streams
        self.calls: list[tuple[str, int]] = []

    def fingerprint(self) -> str:
        return "streaming"

    def recommend_each(self, requests):
        self.calls.append(("list", len(requests)))
        yield from ((i, Response(text=f"1. {r.messages[-1].content}"))
                    for i, r in enumerate(requests))

    def score_each(self, requests):
        self.calls.append(("score", len(requests)))
        yield from ((i, [-1.0] * len(r.candidates)) for i, r in enumerate(requests))

    def stream_stats(self):
        if not self.streams:
            return None
        n = self.calls[-1][1]  # a stream of n requests: n in flight for n seconds, say
        return {"limit": 8, "mean_in_flight": float(n), "max_in_flight": n, "window": n,
                "min_window": n, "backoffs": 1, "seconds": float(n)}


def test_a_streaming_adapter_gets_every_pending_request_of_a_kind_at_once(tmp_path):
    reqs = _requests(7) + _scoring(*[[f"a{i}", "b"] for i in range(3)])
    rec = Streaming(streams=True)
    eng = Engine(rec, cache_path=tmp_path / "c.sqlite", batch_size=2, progress=False)
    answers = eng.run(reqs)
    eng.close()
    assert rec.calls == [("list", 7), ("score", 3)]  # batch_size 2 does not cut them
    assert len(answers) == 10 and all(a.ok for a in answers.values())
    conc = eng.stats.to_dict()["concurrency"]  # the two streams merged; window: the later one's
    assert conc == {"limit": 8, "mean_in_flight": round((7 * 7 + 3 * 3) / 10, 2),
                    "max_in_flight": 7, "window": 3, "min_window": 3, "backoffs": 2,
                    "seconds": 10.0}


def test_an_in_process_adapter_keeps_its_batches_and_reports_no_concurrency(tmp_path):
    rec = Streaming(streams=False)
    eng = Engine(rec, cache_path=tmp_path / "c.sqlite", batch_size=2, progress=False)
    eng.run(_requests(5))
    eng.close()
    assert rec.calls == [("list", 2), ("list", 2), ("list", 1)]
    assert "concurrency" not in eng.stats.to_dict() and eng.stats.concurrency_line() is None


def test_engine_batch_defaults_to_four_of_the_adapters_own_batches(tmp_path):
    from recaudit.engine import DEFAULT_BATCH_SIZE, auto_engine_batch_size

    rec = CountingRecommender()
    assert not hasattr(rec, "batch_size")
    assert auto_engine_batch_size(rec) == DEFAULT_BATCH_SIZE == 16
    rec.batch_size = 32  # e.g. hf's decode rows on 2 cores
    assert auto_engine_batch_size(rec) == 128
    rec.batch_size = 2
    assert auto_engine_batch_size(rec) == 16  # never below the default
    rec.batch_size = True  # not a size
    assert auto_engine_batch_size(rec) == 16
    rec.batch_size = 32
    assert Engine(rec, cache_path=tmp_path / "a.sqlite", progress=False).batch_size == 128
    assert Engine(rec, cache_path=tmp_path / "b.sqlite", batch_size=5,
                  progress=False).batch_size == 5
    Engine(rec, cache_path=tmp_path / "c.sqlite", progress=False).run(_requests(300))
    assert rec.batches == 3  # 128 + 128 + 44
