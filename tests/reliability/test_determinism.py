"""Two runs of one config (fresh caches) and a run on a warm cache write the same results.json.

The config runs every probe a ``python:`` recommender can serve (counterfactual, profile,
leakage, popularity, exposure, robustness, position by scoring) on the bundled MovieLens sample,
and three mitigation rerankers (one with a sweep). Each run is its own process with its own
``PYTHONHASHSEED`` (set and str iteration orders differ between them); the two cold runs run
side by side in two directories with the same layout. Compared: the whole file as JSON text in
file order (key order counts too), without the wall-clock fields, the file's digest and the
cache-use counts (``audit_runs.comparable``); the counts are checked on their own.

Not run here: the tiny random Llama of ``tests/support/tiny_lm.py`` (three runs took 44 s plus
14 s to build it on 2 shared cores, over this suite's budget; its greedy answers were one
constant text). Batched generation equal to one at a time is tested in ``tests/recommenders``.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from . import audit_runs

TITLES = [  # the 40 most popular titles of the MovieLens sample, and two it does not have
    "Forrest Gump", "Pulp Fiction", "Shawshank Redemption, The", "Silence of the Lambs, The",
    "Star Wars: Episode IV - A New Hope", "Jurassic Park", "Matrix, The", "Toy Story",
    "Terminator 2: Judgment Day", "Schindler's List",
    "Star Wars: Episode V - The Empire Strikes Back", "Braveheart", "Back to the Future",
    "Fargo", "American Beauty", "Star Wars: Episode VI - Return of the Jedi",
    "Raiders of the Lost Ark", "Independence Day (a.k.a. ID4)", "Fugitive, The", "Aladdin",
    "Apollo 13", "Dances with Wolves", "Usual Suspects, The", "Fight Club", "Godfather, The",
    "Lord of the Rings: The Fellowship of the Ring, The", "Lion King, The", "Seven",
    "Batman", "True Lies", "Twelve Monkeys", "Saving Private Ryan", "Sixth Sense, The",
    "Men in Black", "Lord of the Rings: The Two Towers, The", "Beauty and the Beast", "Speed",
    "Shrek", "Lord of the Rings: The Return of the King, The", "Ace Ventura: Pet Detective",
    "An Invented Film", "Another Invented Film",
]

RECOMMENDER = '''\
import random

__recaudit_version__ = "1"
TITLES = {titles!r}


def recommend(requests):
    return [random.Random(req.key()).sample(TITLES, min(req.k, 20)) for req in requests]


def score(messages, candidates):
    prompt = "".join(m["content"] for m in messages)
    return [random.Random(prompt + c).random() for c in candidates]


recommend.batched = True
recommend.score = score
'''

CONFIG = """\
name: determinism
model: python:rec.py:recommend
catalog: {source: movielens}
engine: {cache: cache.sqlite, progress: false, batch_size: 8}
stats: {n_bootstrap: 50, n_permutations: 99, seed: 0, min_group_size: 3}
probes:
  - {probe: counterfactual, suite: fairllm,
     params: {k: 10, attributes: [gender, age], subjects: {source: catalog_popular, n: 3}}}
  - {probe: profile, suite: cfairllm, params: {n_users: 3, history_items: 5, k: 10}}
  - {probe: leakage, suite: leakage,
     params: {k: 10, subjects: {source: catalog_popular, n: 6}, n_folds: 3, n_permutations: 19}}
  - {probe: popularity, suite: popularity, params: {n_users: 4, history_items: 5, k: 10}}
  - {probe: exposure, suite: exposure,
     params: {k: 10, subjects: {source: catalog_popular, n: 3}, skew_ks: [5]}}
  - {probe: robustness, suite: robustness,
     params: {k: 10, values: [an African, an American], subjects: {source: catalog_popular, n: 2},
              perturbations: [typo, case, context]}}
  - {probe: position, suite: position,
     params: {n_users: 2, n_shuffles: 2, history_items: 5, mode: score}}
mitigation:
  - {reranker: fair, params: {protected: "head_tail=tail", p: 0.5, alpha: 0.1}, k: 5,
     probes: ["exposure:exposure", "popularity:popularity"], sweep: [0.7]}
  - {reranker: consensus, probes: ["counterfactual:fairllm"], sweep: []}
  - {reranker: xquad, probes: ["popularity:popularity"], sweep: []}
out: out
"""


def write_run(run_dir: Path) -> Path:
    run_dir.mkdir(parents=True)
    (run_dir / "rec.py").write_text(RECOMMENDER.format(titles=TITLES), encoding="utf-8")
    (run_dir / "audit.yaml").write_text(CONFIG, encoding="utf-8")
    return run_dir


def start(run_dir: Path, hash_seed: str) -> subprocess.Popen:
    env = {**audit_runs.audit_env(run_dir, run_dir / "unused.log"), "PYTHONHASHSEED": hash_seed}
    return subprocess.Popen(audit_runs.audit_command(), cwd=run_dir, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen, run_dir: Path) -> tuple[str, dict]:
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    results, use = audit_runs.comparable(audit_runs.load_results(run_dir))
    return json.dumps(results, ensure_ascii=False, indent=1), use


def test_cold_cold_and_warm_runs_write_the_same_results(tmp_path):
    first, second = write_run(tmp_path / "a"), write_run(tmp_path / "b")
    cold = [start(first, "1"), start(second, "2")]
    (text, use), (other_text, other_use) = (finish(cold[0], first), finish(cold[1], second))
    warm_text, warm_use = finish(start(first, "3"), first)

    results = json.loads(text)
    assert [p["status"] for p in results["probes"]] == ["ok"] * 7, results["probes"]
    assert len(results["probes"][3]["tradeoffs"]) == 2  # fair and xquad on popularity
    n = use["computed"]
    assert n > 100 and use == other_use == {"cached": 0, "computed": n}
    assert warm_use == {"cached": n, "computed": 0}
    assert other_text == text
    assert warm_text == text
