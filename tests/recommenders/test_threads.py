"""``model_options.threads`` (issue 21): torch threads from the cores free at load, where that
changes no output bit (checked on the model's weights), else all of them."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from recaudit.errors import ModelSpecError
from recaudit.recommenders.base import Decoding, Request
from recaudit.recommenders.hf import HFRecommender
from recaudit.recommenders.hf import threads as th

from . import tiny_models as tm


@pytest.fixture(scope="module")
def causal_dir(tmp_path_factory) -> Path:
    return tm.make_causal(tmp_path_factory.mktemp("tiny_threads") / "causal")


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    yield before
    torch.set_num_threads(before)


def test_the_choice_follows_the_free_cores_and_the_users_word(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert th.choose_threads("auto", usable=8, busy=3).threads == 5
    assert th.choose_threads("auto", usable=2, busy=9).threads == 1  # never below one
    assert th.choose_threads("auto", usable=4, busy=0).reason == "auto: 4 of 4 cores free at load"
    assert th.choose_threads(3, usable=8, busy=0).threads == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert th.choose_threads("auto", usable=8, busy=0).describe() == "threads 2 (OMP_NUM_THREADS)"


def test_busy_cores_reads_the_runnable_tasks_less_this_process(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    seen = iter([3, 9, 3, 4, 3])
    monkeypatch.setattr(th, "_runnable_now", lambda: next(seen))
    assert th.busy_cores(samples=5, gap=0) == 2  # median 3, less this process
    monkeypatch.setattr(th, "_runnable_now", lambda: None)
    assert th.busy_cores(samples=3, gap=0) is None
    assert th.choose_threads("auto", usable=4).reason == "auto: all 4 cores, load unknown"


def test_a_loaded_machine_gets_fewer_threads_only_where_the_outputs_stay_bitwise(
        causal_dir, monkeypatch, restore_threads):
    full = restore_threads
    if full < 2:
        pytest.skip("one thread: nothing to choose")
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    quiet = HFRecommender(str(causal_dir), Decoding(max_new_tokens=6), batch_size=2)
    assert quiet.threads is None and "threads" not in quiet.batch_invariance()
    ids = [quiet.prompt_ids(Request.from_prompt(p)) for p in ("a b c", "romance movies please")]
    expected = quiet.generate_ids(ids)
    # what this machine does: the model's own probe at 1 thread and at all of them
    same = th.threads_keep_outputs(quiet._thread_probe, 1, full)
    monkeypatch.setattr(th, "busy_cores", lambda: full + 5)  # every core busy
    loaded = HFRecommender(str(causal_dir), Decoding(max_new_tokens=6), batch_size=2)
    if same:  # the same bits at 1 thread: the loaded machine runs on one
        assert torch.get_num_threads() == 1
        assert loaded.threads.describe() == f"threads 1 (auto: 1 of {full} cores free at load)"
    else:  # other bits (CPU SDPA on a 2-core EPYC): all threads stay, and the reason is said
        assert torch.get_num_threads() == full
        assert loaded.threads.describe() == (f"threads {full} (all {full}: 1 changes this "
                                             "model's numbers on this machine)")
    assert loaded.generate_ids(ids) == expected  # either way not one bit moved
    assert loaded.threads.describe() in loaded.batch_invariance()
    assert loaded.fingerprint() == quiet.fingerprint()


def test_the_check_compares_the_models_own_outputs_and_restores_the_count(restore_threads):
    seen = []

    def run():
        seen.append(torch.get_num_threads())
        return [([1, 2], [float(torch.get_num_threads())])]  # differs with the count

    assert th.threads_keep_outputs(run, 1, 2) is False and seen == [2, 1]
    assert torch.get_num_threads() == restore_threads
    assert th.threads_keep_outputs(lambda: [([1], [0.5])], 1, 2) is True
    assert th.threads_keep_outputs(run, 2, 2) is True  # nothing to compare


def test_a_threads_option_that_is_not_a_count_is_refused(causal_dir):
    for bad in (0, "many", True):
        with pytest.raises(ModelSpecError, match="model_options.threads must be auto or"):
            HFRecommender(str(causal_dir), Decoding(max_new_tokens=2), threads=bad)
