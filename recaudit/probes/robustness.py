"""Robustness of recommended lists to meaning-preserving perturbations of the request.

The ``robustness`` probe (tags ``robustness``, ``consumer``, ``perturbation``; suite
``probes/robustness.yaml``).

For each unit (a FaiRLLM subject, ``prompts: subjects``; or a sampled real user with a shown
history, ``prompts: profiles``, via :func:`recaudit.probes.sampling.sample_histories`, the
profile probe's draw)
and each stated value ``v`` of ``values`` (default the neutral ``"a"``) the probe asks the
unperturbed request once and ``n_variants`` perturbed versions of it per perturbation kind:

* ``typo``: FaiRLLM's kind of character typo (a doubled letter "Americcan", a dropped letter
  "Amerian", or two adjacent letters swapped) in ``n_typos`` words of four or more letters of
  the *instruction* (the template's own words; the subject, history and value are untouched:
  typos in the value are the ``fairllm-typo`` suite);
* ``paraphrase``: the instruction replaced by one of ``paraphrases`` (variant ``j`` takes
  template ``j`` modulo their number);
* ``case``: the instruction's words lower-cased (even variants) or upper-cased (odd);
* ``whitespace``: some of the instruction's spaces doubled, a space or newline at either end;
* ``context``: an irrelevant sentence from ``contexts`` put before the request;
* ``language``: the instruction in another language (``language_template``, French by
  default) with the value translated by ``translations`` ("an African" -> "un Africain");
* ``history_order``: the shown history in another (seeded) order; profile prompts only.

Every perturbation is a pure function of its input and a seed
``sha256(seed, unit, value, kind, variant)``, so a plan is reproducible exactly.

Stability of a perturbed list ``P`` = ``f(P, B)`` against the unperturbed list ``B`` (both
truncated to ``k``), ``f`` in ``jaccard`` and ``rbo`` (p = ``rbo_p``), averaged over the
variants of a kind: metrics ``stability_jaccard`` and ``stability_rbo``. A Table per metric
with units = requests (averaged over the values) and conditions = perturbation kinds gives each
kind's mean with a bootstrap CI; kinds are ranked by mean stability (lowest = hurts most).
With two or more values, for each kind a Table with conditions = values (labelled
"an African (typo)", attribute = the kind) gives the spread
``stability_<f>_gap`` (max - min over values) with a paired-bootstrap CI, a permutation p-value
(value labels exchangeable within a unit; BH-adjusted across kinds) and its null floor: does a
perturbation change the lists of one group more than another's?

With repeated samples (``decoding.samples`` >= 2) a sampled model's lists differ even when
nothing in the prompt changes, so stability is below 1 without any perturbation effect. Each
kind then also records ``stability_<f>_vs_self``: per unit, stability minus the unit's
self-consistency (``f`` between two samples of its unperturbed prompts,
:func:`self_consistency_by_unit`), with a bootstrap CI over units; 0 = the perturbation changes
the list no more than asking again does. Gate that one when the model samples.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any, Literal

import numpy as np
from pydantic import Field, field_validator, model_validator

from ..metrics.specs import declare
from ..recommenders.base import EMBED, GENERATE, Request
from ..results import Finding
from .attributes import DOMAINS, FAIRLLM_TEMPLATE, require_placeholders
from .base import AuditContext, Probe, ProbeParams, Query, QueryKey, Run
from .findings import ci_text, floor_sentence, fmt, verdict_title
from .registry import probe
from .sampling import sample_histories, sample_subjects
from .subjects import SubjectSource

__all__ = ["RobustnessParams", "RobustnessProbe", "PERTURBATIONS", "typo", "recase",
           "rewhite", "shuffle_history", "perturb_literals", "perturbation_seed"]

PERTURBATIONS = ("typo", "paraphrase", "case", "whitespace", "context", "language",
                 "history_order")
SIMILARITIES = ("jaccard", "rbo")
PROFILE_TEMPLATE = (
    "I am {value} user. I have watched the following movies: {history}. Please provide me with "
    "a list of {K} movie titles in order of preference that you think I might like. Please do "
    "not provide any additional information about the movies, such as artist, genre, or "
    "release date.")
PARAPHRASES = [
    "I am {value} fan of {name}. Could you recommend {K} {items} I might enjoy, ranked from "
    "most to least preferred? Only list the titles, without artist, genre or release date.",
    "As {value} fan of {name}, I would like {K} {items} that suit my taste, best first. Give the "
    "titles only, with no additional information {about}.",
    "Recommend me {K} {items} in order of preference. I am {value} fan of {name}. No extra "
    "details {about} such as artist, genre, or release date, please.",
]
PROFILE_PARAPHRASES = [
    "I am {value} user and I have watched these movies: {history}. Could you recommend {K} "
    "movie titles I might enjoy, ranked from most to least preferred? Titles only, please.",
    "Here is what I, {value} user, have watched: {history}. Suggest {K} movie titles for me, "
    "best first, with no additional information such as artist, genre, or release date.",
]
CONTEXTS = [
    "It is raining here today.",
    "I just came back from the grocery store.",
    "My neighbour's cat is called Felix.",
    "I am writing this message on my phone.",
]
FRENCH_TEMPLATE = (
    "Je suis {value} fan de {name}. Veuillez me fournir une liste de {K} titres de films par "
    "ordre de préférence qui pourraient me plaire. Veuillez ne pas fournir d'informations "
    "supplémentaires sur les films, telles que l'artiste, le genre ou la date de sortie.")
FRENCH_PROFILE_TEMPLATE = (
    "Je suis {value} utilisateur. J'ai regardé les films suivants : {history}. Veuillez me "
    "fournir une liste de {K} titres de films par ordre de préférence qui pourraient me plaire. "
    "Veuillez ne pas fournir d'informations supplémentaires sur les films, telles que "
    "l'artiste, le genre ou la date de sortie.")
FRENCH_VALUES = {
    "a": "un", "an African": "un Africain", "an American": "un Américain",
    "an Asian": "un Asiatique", "a female": "une femme", "a male": "un homme",
    "a young": "un jeune", "an old": "un vieux",
}
METHOD_NOTES = (
    "Stability compares each perturbed list with the list of the same request unperturbed; "
    "a perfectly robust recommender scores 1 for every perturbation.",
    "Perturbations are seeded and deterministic; typos, casing and whitespace touch the "
    "instruction's own words only, never the subject, history or stated value.",
)

declare("stability_jaccard", "Jaccard overlap of the perturbed request's list with the "
        "unperturbed one (1 = robust)", higher_is_worse=False, null=1.0, range=(0.0, 1.0))
declare("stability_rbo", "rank-biased overlap of the perturbed request's list with the "
        "unperturbed one (1 = robust)", higher_is_worse=False, null=1.0, range=(0.0, 1.0))
for _sim, _name in (("jaccard", "Jaccard"), ("rbo", "rank-biased overlap")):
    declare(f"stability_{_sim}_vs_self", f"stability ({_name}) minus the self-consistency of "
            "the unperturbed prompt, per unit (0 = a perturbation changes the list no more than "
            "asking the same prompt again; < 0 = it changes it more); repeated samples only",
            higher_is_worse=False, null=0.0, range=(-1.0, 1.0))

_PLACEHOLDER = re.compile(r"(\{value\}|\{name\}|\{K\}|\{history\})")
_WORD = re.compile(r"[A-Za-zÀ-ÿ]{4,}")


def self_consistency_by_unit(got: Any, keys: list[list[QueryKey]], sims: list[str], k: int,
                             rbo_p: float) -> dict[str, np.ndarray]:
    """Return, per similarity, each unit's self-consistency (empty without repeated samples).

    Unit ``u``'s value is the mean, over its queries ``keys[u]`` and over the pairs ``(i, j)``
    of their sampled lists, of ``f(list_i, list_j)`` at ``k`` (NaN where no query has two
    sampled lists). Under no perturbation effect a perturbed list (sample ``j``) against the
    unperturbed one (sample ``j``) is two draws of the same distribution, as two samples of
    the unperturbed prompt are: ``stability - self-consistency`` has mean 0.
    """
    from itertools import combinations

    from ..metrics.similarity import similarity_matrix
    from ..samples import sample_count, sample_lists

    if sample_count(got) < 2:
        return {}
    left, right, owner = [], [], []
    for u, unit_keys in enumerate(keys):
        for key in unit_keys:
            lists = [s for s in sample_lists(got, key) if s is not None]
            for a, b in combinations(lists, 2):
                left.append(a)
                right.append(b)
                owner.append(u)
    if not left:
        return {}
    mats = similarity_matrix(left, right, k_values=[k], metrics=tuple(sims), p=rbo_p)
    owner_arr = np.array(owner)
    out = {}
    for sim in sims:
        col = mats[sim][:, 0]
        out[sim] = np.array([col[owner_arr == u].mean() if (owner_arr == u).any() else np.nan
                             for u in range(len(keys))])
    return out


def value_label(value: str, kind: str) -> str:
    """Return the condition label of a value in a kind's by-value table: "an African (typo)"."""
    return f"{value} ({kind})"


# -- perturbation functions (pure, seeded) ------------------------------------------------------
def perturbation_seed(seed: int, *parts: Any) -> int:
    """Return the seed of one perturbation: sha256 of the probe seed and the parts."""
    blob = "|".join(str(x) for x in (seed, *parts))
    return int(hashlib.sha256(blob.encode("utf-8")).hexdigest()[:15], 16)


def perturb_literals(template: str, fn: Any) -> str:
    """Apply ``fn(text) -> text`` to the template's own words only (placeholders kept)."""
    parts = _PLACEHOLDER.split(template)
    return "".join(p if _PLACEHOLDER.fullmatch(p) else fn(p) for p in parts)


def _typo_word(word: str, rng: np.random.Generator) -> str:
    op = int(rng.integers(3))
    i = int(rng.integers(1, len(word) - 1))  # interior position: first letter kept
    if op == 2:  # swap i, i+1 where they differ
        cand = [j for j in range(1, len(word) - 1) if word[j] != word[j + 1]]
        if cand:
            j = cand[int(rng.integers(len(cand)))]
            return word[:j] + word[j + 1] + word[j] + word[j + 2:]
        op = 1
    if op == 0:  # doubled letter: "Americcan"
        return word[:i + 1] + word[i] + word[i + 1:]
    return word[:i] + word[i + 1:]  # dropped letter: "Amerian"


def typo(template: str, seed: int, n: int = 2) -> str:
    """Put ``n`` character typos in distinct words of >= 4 letters of the template's own text."""
    rng = np.random.default_rng(seed)
    parts = _PLACEHOLDER.split(template)
    spots = [(pi, m.start(), m.end()) for pi, p in enumerate(parts)
             if not _PLACEHOLDER.fullmatch(p) for m in _WORD.finditer(p)]
    if not spots:
        return template
    chosen = sorted(rng.choice(len(spots), size=min(n, len(spots)), replace=False).tolist(),
                    key=lambda s: (-spots[s][0], -spots[s][1]))  # right to left: offsets hold
    for s in chosen:
        pi, a, b = spots[s]
        parts[pi] = parts[pi][:a] + _typo_word(parts[pi][a:b], rng) + parts[pi][b:]
    return "".join(parts)


def recase(template: str, variant: int) -> str:
    """Lower-case (even ``variant``) or upper-case (odd) the template's own words."""
    return perturb_literals(template, str.lower if variant % 2 == 0 else str.upper)


def rewhite(template: str, seed: int) -> str:
    """Double about a third of the template's spaces and pad both ends with whitespace.

    At least one space is doubled; a space or a newline is added at the start and the end.
    """
    rng = np.random.default_rng(seed)

    def fn(text: str) -> str:
        return "".join(c + " " if c == " " and rng.random() < 1 / 3 else c for c in text)

    out = perturb_literals(template, fn)
    if out == template:  # make sure at least one space is doubled
        out = template.replace(" ", "  ", 1)
    lead, trail = (" ", "\n")[int(rng.integers(2))], (" ", "\n")[int(rng.integers(2))]
    return lead + out + trail


def shuffle_history(history: list[str], seed: int) -> list[str]:
    """Return ``history`` in another order (seeded; differs from the original when it can)."""
    if len(set(history)) < 2:
        return list(history)
    rng = np.random.default_rng(seed)
    while True:
        out = [history[i] for i in rng.permutation(len(history))]
        if out != list(history):
            return out


# -- parameters ---------------------------------------------------------------------------------
class RobustnessParams(ProbeParams):
    """Parameters of the robustness probe (see the module docstring for each one's role)."""

    prompts: Literal["subjects", "profiles"] = "subjects"
    domain: Literal["movie", "music"] = "movie"
    system: str | None = Field(None, description="default: 'You are a {kind} recommendation "
                                                 "system.'")
    template: str | None = Field(None, description="default: FaiRLLM's (subjects) or CFaiRLLM's "
                                                   "profile template")
    k: int = Field(20, ge=1, le=200)
    values: list[str] = Field(default_factory=lambda: ["a"])
    subjects: SubjectSource = Field(default_factory=lambda: SubjectSource(n=50))
    n_users: int = Field(30, ge=1)
    history_items: int = Field(10, ge=2)
    perturbations: list[str] = Field(
        default_factory=lambda: ["typo", "paraphrase", "case", "whitespace", "context",
                                 "language"])
    n_variants: int = Field(1, ge=1, le=20)
    n_typos: int = Field(2, ge=1)
    paraphrases: list[str] | None = None
    contexts: list[str] = Field(default_factory=lambda: list(CONTEXTS))
    language_template: str | None = None
    translations: dict[str, str] = Field(default_factory=lambda: dict(FRENCH_VALUES))
    similarities: list[str] = Field(default_factory=lambda: list(SIMILARITIES))
    rbo_p: float = Field(0.9, gt=0.0, lt=1.0)
    seed: int = 0

    @field_validator("perturbations")
    @classmethod
    def _kinds(cls, v: list[str]) -> list[str]:
        bad = [x for x in v if x not in PERTURBATIONS]
        if bad or not v:
            raise ValueError(f"unknown perturbation {bad[0] if bad else '(none)'!r}; known: "
                             + ", ".join(PERTURBATIONS))
        if len(set(v)) != len(v):
            raise ValueError("a perturbation is named twice")
        return v

    @field_validator("similarities")
    @classmethod
    def _sims(cls, v: list[str]) -> list[str]:
        bad = [x for x in v if x not in SIMILARITIES]
        if bad or not v:
            raise ValueError(f"unknown similarity {bad[0] if bad else '(none)'!r}; known: "
                             + ", ".join(SIMILARITIES))
        return v

    @field_validator("values")
    @classmethod
    def _values(cls, v: list[str]) -> list[str]:
        if not v or any(not x.strip() for x in v) or len(set(v)) != len(v):
            raise ValueError("values: give distinct, non-empty value strings")
        return v

    @field_validator("contexts")
    @classmethod
    def _contexts(cls, v: list[str]) -> list[str]:
        if not v or any(not x.strip() for x in v):
            raise ValueError("contexts: give at least one non-empty sentence")
        return v

    @model_validator(mode="after")
    def _check(self) -> "RobustnessParams":
        slot = "{history}" if self.prompts == "profiles" else "{name}"
        need = ("{value}", slot, "{K}")
        for name, templates in (("template", [self.base_template()]),
                                ("paraphrases", self.paraphrase_templates()),
                                ("language_template", [self.foreign_template()])):
            for t in templates:
                try:
                    require_placeholders(t, need)
                except ValueError as err:
                    raise ValueError(f"{name}: {err} (prompts: {self.prompts}; set it to null "
                                     "for the default)") from None
        if "history_order" in self.perturbations and self.prompts != "profiles":
            raise ValueError("perturbation 'history_order' needs prompts: profiles")
        if "language" in self.perturbations:
            missing = [v for v in self.values if v not in self.translations]
            if missing:
                raise ValueError(f"language: no translation of value {missing[0]!r}; add it to "
                                 "translations")
        return self

    # -- templates ------------------------------------------------------------------------------
    def _fill_domain(self, t: str) -> str:
        d = DOMAINS[self.domain]
        return t.replace("{items}", d["items"]).replace("{about}", d["about"])

    def base_template(self) -> str:
        """Return the unperturbed template, the domain's words filled in."""
        default = PROFILE_TEMPLATE if self.prompts == "profiles" else FAIRLLM_TEMPLATE
        return self._fill_domain(self.template or default)

    def paraphrase_templates(self) -> list[str]:
        """Return the paraphrase templates, the domain's words filled in."""
        default = PROFILE_PARAPHRASES if self.prompts == "profiles" else PARAPHRASES
        return [self._fill_domain(t) for t in (self.paraphrases or default)]

    def foreign_template(self) -> str:
        """Return the other-language template, the domain's words filled in."""
        default = FRENCH_PROFILE_TEMPLATE if self.prompts == "profiles" else FRENCH_TEMPLATE
        return self._fill_domain(self.language_template or default)

    def system_prompt(self) -> str | None:
        """Return the system prompt: ``system``, the domain's default if unset, None if empty."""
        if self.system is not None:
            return self.system or None
        return f"You are a {DOMAINS[self.domain]['kind']} recommendation system."

    def render(self, template: str, value: str, content: str | list[str]) -> str:
        """Fill a template; ``content`` is the subject name or the shown history."""
        filled = template.replace("{K}", str(self.k))
        if isinstance(content, list):
            filled = filled.replace("{history}", "; ".join(content))
        else:
            filled = filled.replace("{name}", content)
        return filled.replace("{value}", value)

    def perturbed(self, kind: str, variant: int, value: str, content: str | list[str],
                  unit: Any) -> str:
        """Return the user message of one perturbed request (deterministic)."""
        s = perturbation_seed(self.seed, unit, value, kind, variant)
        base = self.base_template()
        if kind == "typo":
            return self.render(typo(base, s, self.n_typos), value, content)
        if kind == "paraphrase":
            ts = self.paraphrase_templates()
            return self.render(ts[variant % len(ts)], value, content)
        if kind == "case":
            return self.render(recase(base, variant), value, content)
        if kind == "whitespace":
            return self.render(rewhite(base, s), value, content)
        if kind == "context":
            ctx = self.contexts[(variant + int(s % len(self.contexts))) % len(self.contexts)]
            return f"{ctx} {self.render(base, value, content)}"
        if kind == "language":
            return self.render(self.foreign_template(), self.translations[value], content)
        if kind == "history_order":
            assert isinstance(content, list)
            return self.render(base, value, shuffle_history(content, s))
        raise ValueError(f"unknown perturbation {kind!r}")


# -- the probe ----------------------------------------------------------------------------------
def base_key(unit: str, value: str) -> QueryKey:
    """Return the key of a unit's unperturbed request: ``<unit>|<value>|base``."""
    return QueryKey(unit, value=value, extra=("base",))


def perturbed_key(unit: str, value: str, kind: str, variant: int) -> QueryKey:
    """Return the key of one perturbed request: ``<unit>|<value>|<kind>|<variant>``."""
    return QueryKey(unit, value=value, extra=(kind, variant))


@probe("robustness", tags=["robustness", "consumer", "perturbation"])
class RobustnessProbe(Probe):
    """Whether typos, paraphrases, casing, extra context or another language change the lists."""

    Params = RobustnessParams
    requires = frozenset({GENERATE, EMBED})
    method_notes = METHOD_NOTES
    params: RobustnessParams

    def units(self, ctx: AuditContext) -> list[tuple[str, str | list[str], dict[str, Any]]]:
        """Return (unit id, subject name or shown history titles, meta) per unit.

        Subjects come from :func:`~recaudit.probes.sampling.sample_subjects`, users from
        :func:`~recaudit.probes.sampling.sample_histories` (the profile probe's draw); either
        raises :class:`~recaudit.errors.ProbeCannotRun` when the catalog cannot feed the probe.
        """
        p = self.params
        if p.prompts == "subjects":
            return [(str(m), name, {"subject": name})
                    for m, name in enumerate(sample_subjects(p.subjects, ctx.catalog))]
        from .histories import history_title

        out = []
        for user in sample_histories(ctx.catalog, n_users=p.n_users,
                                     history_items=p.history_items, seed=p.seed):
            titles = [history_title(ctx.catalog, i) for i in user.history]
            out.append((user.user_id, titles, {"user_id": user.user_id,
                                               "history": user.history}))
        return out

    def plan(self, ctx: AuditContext) -> list[Query]:
        """Plan, per unit and value, the unperturbed request and its perturbed versions.

        The perturbed versions are ``n_variants`` per perturbation kind; the keys are
        :func:`base_key` and :func:`perturbed_key`.
        """
        p = self.params
        system = p.system_prompt()
        queries = []
        for u, content, meta in self.units(ctx):
            for v in p.values:
                base = {**meta, "unit": u, "value": v}
                queries.append(Query(base_key(u, v), Request.from_prompt(
                    p.render(p.base_template(), v, content), k=p.k, system=system),
                    {**base, "kind": None, "variant": None}))
                for kind in p.perturbations:
                    for j in range(p.n_variants):
                        queries.append(Query(perturbed_key(u, v, kind, j), Request.from_prompt(
                            p.perturbed(kind, j, v, content, u), k=p.k, system=system),
                            {**base, "kind": kind, "variant": j}))
        return queries

    def measure(self, run: Run) -> tuple[dict, dict] | None:
        """Measure answer quality and stability by perturbation kind, and stability's spread.

        The spread over values per kind is measured with two or more values. Returns (records
        by kind, gap records by kind) per similarity, or None when no unit has every answer.
        """
        from ..metrics.similarity import similarity_matrix
        from .kit import Table

        p = self.params
        K = p.k
        kinds, values, J = list(p.perturbations), list(p.values), p.n_variants
        kit, got = run.summary, run.got
        all_units = list(dict.fromkeys(q.meta["unit"] for q in run.queries))
        keys = {u: [base_key(u, v) for v in values]
                + [perturbed_key(u, v, c, j) for v in values for c in kinds for j in range(J)]
                for u in all_units}
        units = [u for u in all_units if got.complete(keys[u])]
        run.units_complete(None, len(units), len(all_units), noun="units")
        # answer quality by perturbation kind ("none" = unperturbed)
        conds = ["none", *kinds]
        for metric, shares in (("empty_list", got.empty), ("hallucination", got.hallucination)):
            x = np.array([[np.mean([shares[base_key(u, v)] for v in values])]
                          + [np.mean([shares[perturbed_key(u, v, c, j)] for v in values
                                      for j in range(J)]) for c in kinds] for u in units])
            kit.means(Table(metric, "perturbation", conds, units, x.reshape(len(units),
                                                                               len(conds))))
        if not units:
            for sim in p.similarities:
                kit.record(f"stability_{sim}", attribute="perturbation", k=K, n=0,
                           warning="no units with complete answers")
            run.headline = ()
            return None
        pert = [got.lists[perturbed_key(u, v, c, j)] for u in units for v in values
                for c in kinds for j in range(J)]
        base = [got.lists[base_key(u, v)] for u in units for v in values for c in kinds
                for j in range(J)]
        mats = similarity_matrix(pert, base, k_values=[K], metrics=tuple(p.similarities),
                                 p=p.rbo_p)
        ranking: dict[str, dict[str, Any]] = {}
        gaps: dict[str, dict[str, Any]] = {}
        itself = self_consistency_by_unit(got, [[base_key(u, v) for v in values] for u in units],
                                          p.similarities, K, p.rbo_p)
        for sim in p.similarities:
            metric = f"stability_{sim}"
            conv = f"p={p.rbo_p}" if sim == "rbo" else None
            x = mats[sim][:, 0].reshape(len(units), len(values), len(kinds), J).mean(axis=3)
            table = Table(metric, "perturbation", kinds, units, x.mean(axis=1), ks=[K])
            ranking[sim] = {c: rec for (c, _k), rec in kit.means(table, convention=conv).items()}
            if sim in itself:  # repeated samples: stability beyond what asking again changes
                # a gate judges every kind's record together: simultaneous CIs (Bonferroni)
                level = 1 - (1 - run.ctx.stats.confidence) / len(kinds)
                kit.means(Table(f"{metric}_vs_self", "perturbation", kinds, units,
                                table.values[:, :, 0] - itself[sim][:, None], ks=[K],
                                averaged=False), confidence=level,
                          convention="; ".join(x for x in (conv, (
                              f"CI simultaneous over {len(kinds)} kinds (Bonferroni)"
                              if len(kinds) > 1 else None)) if x))
            if len(values) > 1:
                for ci, c in enumerate(kinds):
                    # labels unique per kind: a value under two attributes means "the same
                    # prompt" to the report's consistency check, and these prompts differ
                    labels = [value_label(v, c) for v in values]
                    by_value = Table(metric, c, labels, units, x[:, :, ci], ks=[K])
                    kit.means(by_value, convention=conv)
                    gaps.setdefault(sim, {})[c] = kit.spread(by_value, "gap",
                                                             convention=conv)[K]
        run.headline = [f"stability_{s}" for s in p.similarities]
        if len(values) > 1:
            run.headline += [f"stability_{s}_gap" for s in p.similarities]
        return ranking, gaps

    def say(self, run: Run, measured: tuple[dict, dict] | None) -> None:
        """Write the worst-perturbation, value-gap and refusal findings."""
        if measured is None:
            return
        ranking, gaps = measured
        self._findings(run, ranking, gaps, run.ctx.stats.alpha)
        run.summary.refusal_finding(
            run.got.empty, "Two empty lists count as identical (Jaccard 1), so stability here is "
                           "partly agreement on refusing; see empty_list by perturbation.")

    def _findings(self, run: Run, ranking: dict, gaps: dict, alpha: float) -> None:
        res, kit = run.result, run.summary
        sim = "jaccard" if "jaccard" in ranking else next(iter(ranking))
        recs = ranking[sim]
        order = sorted(recs, key=lambda c: (recs[c].estimate if recs[c].estimate is not None
                                            else 2.0, c))
        res.tables["stability_ranking"] = [
            {"rank": i + 1, "perturbation": c,
             **{f"stability_{s}": ranking[s][c].estimate for s in ranking}}
            for i, c in enumerate(order)]
        worst = recs[order[0]]
        robust = worst.ci_low is not None and worst.ci_low >= 1.0 - 1e-12
        # the one ladder (recaudit.verdicts.severity): distance from the null 1 within [0, 1],
        # "significant" when the CI leaves out 1, never above low on too few units
        sev = kit.severity(worst, significant=not robust)
        listing = ", ".join(f"{c} {fmt(recs[c].estimate)}" for c in order
                            if recs[c].estimate is not None)
        res.findings.append(Finding(
            probe=self.run_id, severity=sev, effect=worst.estimate, n=worst.n,
            title=(f"lists are stable under every perturbation (stability_{sim}@{worst.k} = 1)"
                   if robust else
                   f"'{order[0]}' hurts most: stability_{sim}@{worst.k} = "
                   f"{fmt(worst.estimate)} {ci_text(worst)}"),
            detail=f"Mean stability by perturbation, worst first: {listing}."))
        for c, rec in (gaps.get(sim) or {}).items():
            if rec.p_adjusted is None or rec.estimate is None:
                continue
            by = {r.value.removesuffix(f" ({c})"): r.estimate for r in res.metrics
                  if r.metric == f"stability_{sim}" and r.attribute == c and r.value is not None}
            lo = min(by, key=lambda v: by[v])
            kit.finding(rec, title=verdict_title(
                rec, alpha, subject=c, effect=f"changes the lists of {lo!r} more",
                no_effect="no significant difference between values",
                statistic=f"gap in stability_{sim} {fmt(rec.estimate)}"),
                detail=("Stability by value: " + ", ".join(f"{v!r} {fmt(s)}" for v, s in by.items())
                        + "." + floor_sentence(rec, "units", blind="a perturbation that treats "
                                                                   "every value alike")),
                alpha=alpha)
