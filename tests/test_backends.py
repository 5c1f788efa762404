"""Ray backend: same answers as the local backend, every batch cached as it returns."""

from __future__ import annotations

import pytest

from recaudit.engine import Engine
from recaudit.recommenders.base import GENERATE, Recommender, Request, Response

ray = pytest.importorskip("ray", reason="the ray extra is not installed")


class EchoRecommender(Recommender):
    capabilities = frozenset({GENERATE})

    def fingerprint(self) -> str:
        return "echo"

    def recommend(self, requests):
        import os
        return [Response(text=f"1. {r.messages[-1].content}", meta={"pid": os.getpid()})
                for r in requests]


def test_ray_backend_matches_local(tmp_path):
    reqs = [Request.from_prompt(f"title {i}") for i in range(12)]
    local = Engine(EchoRecommender(spec="echo"), cache_path=tmp_path / "a.sqlite", batch_size=2,
                   progress=False).run(reqs)
    distributed = Engine(EchoRecommender(spec="echo"), cache_path=tmp_path / "b.sqlite",
                         batch_size=2, progress=False, backend="ray", ray_workers=2)
    answers = distributed.run(reqs)
    assert {k: a.response.text for k, a in answers.items()} == \
        {k: a.response.text for k, a in local.items()}
    import os
    pids = {a.response.meta["pid"] for a in answers.values()}
    assert os.getpid() not in pids and len(pids) == 2  # really ran in two worker processes
    assert distributed.cache.count("echo") == 12
