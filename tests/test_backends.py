"""Ray backend on a local cluster started here: joins it by address, answers as the local backend,
caches every batch once, and survives an actor killed mid-run (its batch re-run on the other)."""

from __future__ import annotations

import os
import signal
import socket
import time

import pytest

from recaudit.backends import parse_ray_address
from recaudit.config import parse_config
from recaudit.engine import Engine
from recaudit.errors import ConfigError, EndpointError, ModelRuntimeError
from recaudit.recommenders.base import GENERATE, Recommender, Request, Response

ray = pytest.importorskip("ray", reason="the ray extra is not installed")


class EchoRecommender(Recommender):
    """Answers ``1. <prompt>``; meta: the answering process and the Ray cluster it belongs to."""

    capabilities = frozenset({GENERATE})

    def __init__(self, spec: str = "echo") -> None:
        super().__init__(spec=spec)

    def fingerprint(self) -> str:
        return "echo"

    def recommend(self, requests):
        import ray as worker_ray
        cluster = (worker_ray.get_runtime_context().gcs_address
                   if worker_ray.is_initialized() else None)
        return [Response(text=f"1. {r.messages[-1].content}",
                         meta={"pid": os.getpid(), "cluster": cluster}) for r in requests]


class KillSecondBatch(EchoRecommender):
    """The first actor to start its second batch writes its pid to ``marker`` and SIGKILLs
    itself, so exactly one actor dies with a batch in flight, after answering one."""

    def __init__(self, marker) -> None:
        super().__init__()
        self.marker, self.calls = str(marker), 0

    def recommend(self, requests):
        self.calls += 1
        if self.calls == 2:
            try:
                fd = os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                pass
            else:
                os.write(fd, str(os.getpid()).encode())
                os.close(fd)
                os.kill(os.getpid(), signal.SIGKILL)
        return super().recommend(requests)


class KillEveryBatch(EchoRecommender):
    """Every actor dies on its first batch (a pid file per death in ``deaths``)."""

    def __init__(self, deaths) -> None:
        super().__init__()
        self.deaths = str(deaths)

    def recommend(self, requests):
        open(os.path.join(self.deaths, str(os.getpid())), "w").close()
        os.kill(os.getpid(), signal.SIGKILL)


class Failing(EchoRecommender):
    """Raises ``error`` (a model error, not an actor death); logs each call to ``log``."""

    def __init__(self, error: Exception, log) -> None:
        super().__init__()
        self.error, self.log = error, str(log)

    def recommend(self, requests):
        with open(self.log, "a") as f:
            f.write(f"{os.getpid()}\n")
        raise self.error


class Unloadable(EchoRecommender):
    """Cannot be rebuilt in an actor (as a model whose module the cluster lacks)."""

    def __setstate__(self, state):
        raise ModuleNotFoundError("No module named 'mymodel'")


@pytest.fixture(scope="module")
def cluster():
    """One local Ray cluster (head node, 2 CPUs) for the module; torn down at the end."""
    from ray.cluster_utils import Cluster

    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "include_dashboard": False})
    yield c
    if ray.is_initialized():
        ray.shutdown()
    c.shutdown()


@pytest.fixture
def connected(cluster):
    """This process joined to ``cluster`` (kept across tests: connecting costs seconds)."""
    if not ray.is_initialized():
        ray.init(address=cluster.address, include_dashboard=False, log_to_driver=False,
                 configure_logging=False)
    return cluster


def _requests(n: int = 12) -> list[Request]:
    return [Request.from_prompt(f"title {i}") for i in range(n)]


def _texts(answers) -> dict:
    return {k: (a.response.text, a.response.error) for k, a in answers.items()}


def _local_texts(tmp_path, reqs) -> dict:
    engine = Engine(EchoRecommender(), cache_path=tmp_path / "local.sqlite", batch_size=2,
                    progress=False)
    try:
        return _texts(engine.run(reqs))
    finally:
        engine.close()


def _dead(pid: int, within_s: float = 10.0) -> bool:
    """Whether process ``pid`` is gone (or a zombie) within ``within_s`` seconds."""
    import psutil

    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.1)
    return False


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens once the socket is closed


def test_joins_cluster_by_address_and_matches_local(cluster, tmp_path):
    if ray.is_initialized():
        ray.shutdown()  # make the engine join by itself
    reqs = _requests()
    engine = Engine(EchoRecommender(), cache_path=tmp_path / "ray.sqlite", batch_size=2,
                    progress=False, backend="ray", ray_workers=2, ray_address=cluster.address)
    answers = engine.run(reqs)
    assert _texts(answers) == _local_texts(tmp_path, reqs)
    assert {a.response.meta["cluster"] for a in answers.values()} == {cluster.address}
    pids = {a.response.meta["pid"] for a in answers.values()}
    assert os.getpid() not in pids and len(pids) == 2  # really two actor processes
    assert engine.cache.count("echo") == 12
    assert (engine.stats.computed, engine.stats.retried) == (12, 0)
    assert not ray.is_initialized()  # the pool disconnects what it connected
    engine.close()


def test_survives_an_actor_killed_mid_run(connected, tmp_path, capsys):
    reqs = _requests(16)
    marker = tmp_path / "victim.pid"
    engine = Engine(KillSecondBatch(marker), cache_path=tmp_path / "ray.sqlite", batch_size=2,
                    progress=False, backend="ray", ray_workers=2)
    answers = engine.run(reqs)

    assert _texts(answers) == _local_texts(tmp_path, reqs)
    cached = [row[0] for row in engine.cache.db.execute("SELECT request_key FROM responses")]
    assert sorted(cached) == sorted(answers)  # every request cached, exactly once
    assert engine.stats.computed == 16  # no batch yielded twice
    assert (engine.stats.retried, engine.stats.retries) == (2, 2)  # one batch of 2, re-run once
    victim = int(marker.read_text())
    assert _dead(victim)
    by_pid = [a.response.meta["pid"] for a in answers.values()]
    assert by_pid.count(victim) == 2  # the victim answered its first batch only
    assert len(set(by_pid)) == 2  # the rest, its lost batch included, by the survivor
    err = capsys.readouterr().err
    assert "1 Ray actor(s) died (Actor" in err and "1 batch(es) re-run" in err
    engine.close()


def test_no_actor_left_is_a_runtime_error(connected, tmp_path):
    deaths = tmp_path / "deaths"
    deaths.mkdir()
    engine = Engine(KillEveryBatch(deaths), cache_path=tmp_path / "ray.sqlite", batch_size=2,
                    progress=False, backend="ray", ray_workers=1)
    with pytest.raises(ModelRuntimeError, match=r"no Ray actor left \(1 died, last: Actor") \
            as info:
        engine.run(_requests(4))
    assert info.value.exit_code == 3 and "\n" not in str(info.value)
    dead = [int(p.name) for p in deaths.iterdir()]
    assert len(dead) == 1 and _dead(dead[0])
    assert engine.cache.count("echo") == 0
    engine.close()


def test_retries_per_batch_are_bounded(connected, tmp_path):
    from recaudit.backends import RayPool

    pool = RayPool(KillEveryBatch(tmp_path), n_workers=2, max_retries=0)
    try:
        with pytest.raises(ModelRuntimeError, match="lost 1 Ray actors .*giving up"):
            list(pool.map([("only", _requests(2))]))
        assert (len(pool.lost), len(pool.workers), pool.retried_batches) == (1, 1, 0)
    finally:
        pool.close()


@pytest.mark.parametrize("error, kind, code", [
    (ValueError("no list for you"), ModelRuntimeError, 3),
    (EndpointError("endpoint said 401"), EndpointError, 2),
])
def test_model_errors_surface_without_retry(connected, tmp_path, error, kind, code):
    log = tmp_path / "calls.log"
    engine = Engine(Failing(error, log), cache_path=tmp_path / "ray.sqlite", batch_size=8,
                    progress=False, backend="ray", ray_workers=1)
    with pytest.raises(kind, match=str(error)) as info:
        engine.run(_requests(8))  # one batch
    assert info.value.exit_code == code and "\n" not in str(info.value)
    assert len(log.read_text().splitlines()) == 1  # called once: not retried
    engine.close()


def test_replica_that_cannot_load_is_not_retried(connected, tmp_path):
    engine = Engine(Unloadable(), cache_path=tmp_path / "ray.sqlite", batch_size=2,
                    progress=False, backend="ray", ray_workers=1)
    with pytest.raises(ModelRuntimeError, match="could not be set up on a Ray actor: "
                       "ModuleNotFoundError: No module named 'mymodel'$") as info:
        engine.run(_requests(2))
    assert info.value.exit_code == 3 and "\n" not in str(info.value)
    engine.close()


def test_model_that_cannot_be_pickled_is_a_runtime_error(connected, tmp_path):
    import threading

    rec = EchoRecommender()
    rec.lock = threading.Lock()
    engine = Engine(rec, cache_path=tmp_path / "ray.sqlite", progress=False, backend="ray")
    with pytest.raises(ModelRuntimeError, match="cannot be sent to Ray actors: TypeError: "
                       "cannot pickle '_thread.lock' object") as info:
        engine.run(_requests(2))
    assert info.value.exit_code == 3 and "\n" not in str(info.value)
    engine.close()


def test_unreachable_address_is_a_usage_error(tmp_path, capsys, monkeypatch):
    from recaudit.cli import main
    from tests import gate_recommenders as gr

    if ray.is_initialized():
        ray.shutdown()  # an existing connection would be reused
    port = _closed_port()
    marker = tmp_path / "called"
    monkeypatch.setenv("RECAUDIT_TEST_MARKER", str(marker))
    cfg = gr.write_cli_config(tmp_path, "python:tests.cli_recommenders:marking", "out")
    assert main(["audit", str(cfg), "--ray-address", f"127.0.0.1:{port}"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert f"engine.ray_address '127.0.0.1:{port}': no Ray cluster answers there" in err
    assert not marker.exists() and not ray.is_initialized()


@pytest.mark.parametrize("address, parsed", [
    ("auto", None), ("local", None), ("10.0.0.5:6379", ("10.0.0.5", 6379)),
    ("ray://head:10001", ("head", 10001)), ("[::1]:6379", ("::1", 6379)),
])
def test_parse_ray_address(address, parsed):
    assert parse_ray_address(address) == parsed


@pytest.mark.parametrize("engine, message", [
    ({"backend": "ray", "ray_address": "head"}, "is not auto, local, host:port"),
    ({"backend": "ray", "ray_address": "head:99999"}, "is not auto, local, host:port"),
    ({"ray_address": "auto"}, "ray_address: only with backend: ray"),
])
def test_config_checks_ray_address(engine, message):
    with pytest.raises(ConfigError, match=message):
        parse_config({"model": "smollm2", "engine": engine,
                      "probes": [{"probe": "counterfactual"}]})
