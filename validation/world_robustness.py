"""The robustness probe's world: a recommender blind to perturbations, and one that is not.

Two stated values (``VALUES``), so the probe records both stability by perturbation kind
(``stability_jaccard`` / ``stability_rbo``, no effect = 1) and its spread over the values per
kind (``stability_<f>_gap``, no effect = 0). Null: every request of a subject, perturbed or not,
whatever the value, gets the subject's same top-``K`` list (a deterministic, perturbation-blind
model: stability 1 for every kind and value). Planted: a perturbed request (any kind) replaces a
binomial share ``SWAP`` of that list with other catalog items, drawn afresh per request, and
``PLANTED_SWAP`` when it states ``PLANTED_VALUE`` (stability below 1 for every kind, and lower
for that value).

What the null cannot include: sampling noise. A model that ignores the perturbation but samples
its lists (temperature > 0) also scores stability below 1, because stability compares one
sample of each request and has no floor for the model's disagreement with itself (see
``decoding.samples`` and the self-consistency records for that floor).
"""

from __future__ import annotations

import numpy as np

from recaudit.probes.base import Query
from recaudit.recommenders.base import Response

from .harness import World
from .lists import swapped_list

N_ITEMS, K, N_SUBJECTS = 60, 10, 20
SWAP, PLANTED_SWAP = 0.2, 0.5
VALUES = ["a female", "a male"]
#: three of the six default kinds (each kind's records come from the same code; fewer keep a
#: validation run short)
KINDS = ["typo", "paraphrase", "context"]
PLANTED_VALUE = "a female"


def _answer(query: Query, rng: np.random.Generator, share: float) -> Response:
    return Response(item_ids=swapped_list(query.key.unit, rng, share, K, N_ITEMS))


def null(query: Query, rng: np.random.Generator) -> Response:
    """Return the subject's fixed list, whatever the perturbation and the value."""
    return _answer(query, rng, 0.0)


def planted(query: Query, rng: np.random.Generator) -> Response:
    """Perturbed requests swap ``SWAP`` of the list (``PLANTED_SWAP`` for ``PLANTED_VALUE``)."""
    if query.meta.get("kind") is None:  # the unperturbed request
        return _answer(query, rng, 0.0)
    return _answer(query, rng, PLANTED_SWAP if query.key.value == PLANTED_VALUE else SWAP)


WORLD = World(
    name="robustness",
    probe="robustness",
    params={"k": K, "values": VALUES, "n_variants": 1, "perturbations": KINDS,
            "subjects": {"source": "inline", "items": [f"Film {i}" for i in range(N_SUBJECTS)]}},
    null=null,
    planted=planted,
    effect=(f"{N_SUBJECTS} subjects x {len(VALUES)} values, top-{K} of {N_ITEMS} items, "
            f"perturbations {', '.join(KINDS)}; null: one fixed list per subject; planted: a "
            f"perturbed request replaces {SWAP:.0%} of it (binomial count), {PLANTED_SWAP:.0%} for "
            f"'{PLANTED_VALUE}'"),
)

#: the share of a list a sampled model changes when asked the same prompt again
SAMPLING_SWAP = 0.3


def sampled_null(query: Query, rng: np.random.Generator) -> Response:
    """Sample each request's list afresh: ``SAMPLING_SWAP`` swapped, perturbed or not."""
    return _answer(query, rng, SAMPLING_SWAP)


def sampled_planted(query: Query, rng: np.random.Generator) -> Response:
    """As :func:`sampled_null`; perturbed requests swap ``PLANTED_SWAP`` for ``PLANTED_VALUE``."""
    if query.meta.get("kind") is None or query.key.value != PLANTED_VALUE:
        return _answer(query, rng, SAMPLING_SWAP)
    return _answer(query, rng, PLANTED_SWAP)


#: subjects of the sampled world: at 20 the percentile bootstrap CI of the paired difference
#: (skewed: a unit's self-consistency rests on one pair of samples per value) undercovered, and
#: stability_jaccard_vs_self alarmed in 9 of 100 effect-free runs; 2 of 100 at 32
N_SAMPLED_SUBJECTS = 32

SAMPLED_WORLD = World(
    name="robustness-sampled",
    probe="robustness",
    params={**WORLD.params, "subjects": {"source": "inline", "items": [
        f"Film {i}" for i in range(N_SAMPLED_SUBJECTS)]}},
    null=sampled_null,
    planted=sampled_planted,
    samples=2,
    effect=(f"as robustness with {N_SAMPLED_SUBJECTS} subjects and 2 samples per request of a "
            f"model that changes "
            f"{SAMPLING_SWAP:.0%} of a list each time it is asked (binomial count), perturbed or "
            f"not; planted: perturbed requests stating '{PLANTED_VALUE}' change "
            f"{PLANTED_SWAP:.0%}"),
    not_validated={m: "no effect is not 1 for a sampled model (its lists differ from "
                      "themselves); gate stability_*_vs_self, validated here"
                   for m in ("stability_jaccard", "stability_rbo")},
)
