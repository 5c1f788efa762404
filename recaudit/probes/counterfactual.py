"""Consumer-side counterfactual fairness probe (FaiRLLM; Zhang et al., RecSys 2023).

For each neutral instruction I_m (subject m, value "a") take the top-K list N_m; inject each value
``a`` of a sensitive attribute to get S_m^a; ``Sim(a) = mean_m f(S_m^a, N_m)`` for each
similarity ``f`` (jaccard, serp_star [FaiRLLM normaliser], serp_star_normalized, prag_star,
rbo) and every truncation k = 1..K; ``SNSR = max_a Sim(a) - min_a Sim(a)`` and
``SNSV = std_a Sim(a)`` (ddof=0). Every mean carries a seeded bootstrap CI over instructions;
SNSR/SNSV carry a paired-bootstrap CI, and at k = K a paired permutation p-value of SNSR
(:func:`recaudit.stats.permutation_test_values`; null: value labels are exchangeable within an
instruction), Benjamini-Hochberg adjusted across attributes.
The hallucination share (list entries that matched no catalog item) and the empty-list share
(refusals or unparseable answers: no catalog item at all; two empty lists count as Jaccard 1, so
this share says how much of a similarity is agreement on refusing) are reported per value.

Matched control (``control:``, off by default and in the FaiRLLM suites): a control attribute's
values (e.g. a favourite colour, :data:`~recaudit.probes.attributes.CONTROL_ATTRIBUTES`) fill
``{value}`` of the same template for the same instructions; its records carry the attribute
label ``"<name> (control)"`` (their own BH families), and each sensitive attribute's SNSR / SNSV
is compared with the control's by ``snsr_<sim>_vs_control`` / ``snsv_<sim>_vs_control``
(:mod:`recaudit.probes.control`: paired bootstrap CI, paired permutation p-value).

In a catalog-free audit with FaiRLLM's parse (``catalog: {source: none, parse: fairllm}``,
:class:`recaudit.catalog.OpenCatalog` with ``empty_pair_policy == "skip"``) a pair where either
list is empty is left out of every mean (a NaN cell), as the FaiRLLM notebook does, and the
number skipped is a warning; the records' convention names the parse and the policy.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import Field, field_validator, model_validator

from ..recommenders.base import EMBED, GENERATE, Request
from ..registry import unknown_name_message
from ..results import MetricRecord, ProbeResult
from .attributes import (CONTROL_ATTRIBUTES, DOMAINS, FAIRLLM_ATTRIBUTES, FAIRLLM_TEMPLATE,
                         ControlAttributes, attributes_shape, require_placeholders,
                         resolve_attributes, subject_queries)
from .base import NEUTRAL, AuditContext, Probe, ProbeParams, Query, QueryKey, Run
from .control import compare_with_controls, control_label
from .findings import ci_text, control_sentence, floor_sentence, fmt, verdict_title
from .registry import probe
from .sampling import sample_subjects
from .subjects import SubjectSource

__all__ = ["CounterfactualParams", "CounterfactualProbe", "FAIRLLM_ATTRIBUTES",
           "FAIRLLM_TEMPLATE", "DOMAINS", "SIMILARITIES"]

SIMILARITIES = ("jaccard", "serp_star", "serp_star_normalized", "prag_star", "rbo")
CONVENTIONS = {"serp_star": "fairllm", "serp_star_normalized": "normalized"}
METHOD_NOTES = (
    "Sensitive attributes are stated in the prompt (counterfactual probing); they are not "
    "inferred about real people. A lack of significant differences is not proof of fairness.",
    "SNSR and SNSV are positive under noise alone: compare them with their null floor (what an "
    "attribute-blind model scores with this many instructions), not with zero.",
)


class CounterfactualParams(ProbeParams):
    """Parameters of the counterfactual probe: the prompt, the list length and what is varied.

    ``attributes`` are stated values; ``groups`` are implicit cues (attribute -> group ->
    member strings), each group's Sim the mean over its members.
    """

    domain: Literal["movie", "music"] = "movie"
    system: str | None = Field(None, description="default: 'You are a {kind} recommendation "
                                                 "system.'")
    template: str = FAIRLLM_TEMPLATE
    k: int = Field(20, ge=1, le=200)
    neutral: str = "a"
    attributes: dict[str, list[str]] | list[str] = Field(
        default_factory=lambda: [a for a in FAIRLLM_ATTRIBUTES if a != "typo"])
    groups: dict[str, dict[str, list[str]]] = Field(
        default_factory=dict, description="implicit cues: attribute -> group -> member strings "
        "(first names, pronouns); Sim(group) is the mean over its members")
    member_phrase: str = Field("{member}", description="how a group member fills {value}")
    subjects: SubjectSource = Field(default_factory=SubjectSource)
    similarities: list[str] = Field(default_factory=lambda: list(SIMILARITIES))
    rbo_p: float = Field(0.9, gt=0.0, lt=1.0)
    n_examples: int = Field(5, ge=0)
    control: ControlAttributes = Field(
        default_factory=dict, description="matched control: attributes whose values are "
        "irrelevant to the recommendation (a mapping name -> values, or names of bundled ones: "
        f"{', '.join(CONTROL_ATTRIBUTES)}); each attribute's spread is compared with theirs")

    @field_validator("template")
    @classmethod
    def _placeholders(cls, v: str) -> str:
        return require_placeholders(v, ("{value}", "{name}", "{K}"))

    @field_validator("similarities")
    @classmethod
    def _known_sims(cls, v: list[str]) -> list[str]:
        bad = [s for s in v if s not in SIMILARITIES]
        if bad or not v:
            raise ValueError(unknown_name_message("similarity", bad[0] if bad else "(none)",
                                                  SIMILARITIES))
        return v

    @field_validator("attributes", mode="before")
    @classmethod
    def _attributes_shape(cls, v: Any) -> Any:
        return attributes_shape(v)

    @field_validator("attributes")
    @classmethod
    def _attributes(cls, v: dict[str, list[str]] | list[str]) -> dict[str, list[str]]:
        return {} if v == {} else resolve_attributes(v)

    @field_validator("groups")
    @classmethod
    def _groups(cls, v: dict[str, dict[str, list[str]]]) -> dict[str, dict[str, list[str]]]:
        for attr, groups in v.items():
            resolve_attributes({attr: list(groups)})  # group names: non-empty, distinct
            for group, members in groups.items():
                resolve_attributes({f"{attr}.{group}": members})  # members: the same rules
        return v

    @field_validator("member_phrase")
    @classmethod
    def _phrase(cls, v: str) -> str:
        return require_placeholders(v, ("{member}",))

    @model_validator(mode="after")
    def _something_to_vary(self) -> "CounterfactualParams":
        if not self.attributes and not self.groups:
            raise ValueError("no attributes given (set attributes or groups)")
        clash = set(self.attributes) & set(self.groups)
        if clash:
            raise ValueError(f"{sorted(clash)[0]!r} is both an attribute and a group attribute")
        return self

    def conditions(self) -> dict[str, list[str]]:
        """Map each attribute to its conditions: the explicit values, or the implicit-cue groups."""
        return {**self.attributes, **{a: list(g) for a, g in self.groups.items()}}

    def controls(self) -> dict[str, list[str]]:
        """Map each control's label (``"colour (control)"``) to its values."""
        return {control_label(name): values for name, values in self.control.items()}

    def system_prompt(self) -> str | None:
        """Return the system message; ``system: ""`` in the config sends none at all."""
        if self.system is not None:
            return self.system or None
        return f"You are a {DOMAINS[self.domain]['kind']} recommendation system."

    def prompt(self, value: str, name: str) -> str:
        """Fill the template with the domain's words, K, the subject ``name`` and ``value``."""
        d = DOMAINS[self.domain]
        return (self.template.replace("{items}", d["items"]).replace("{about}", d["about"])
                .replace("{K}", str(self.k)).replace("{name}", name).replace("{value}", value))


@probe("counterfactual", tags=["fairness", "consumer", "fairllm", "robustness"])
class CounterfactualProbe(Probe):
    """FaiRLLM: whether the list changes when the user says who they are."""

    whole_params = frozenset({"attributes", "control"})

    Params = CounterfactualParams
    requires = frozenset({GENERATE, EMBED})
    headline = ("snsr_jaccard",)
    method_notes = METHOD_NOTES
    params: CounterfactualParams

    # -- plan -----------------------------------------------------------------------------------
    def plan(self, ctx: AuditContext) -> list[Query]:
        """Plan one neutral query per subject, one per attribute value and one per group member."""
        p = self.params
        subjects = sample_subjects(p.subjects, ctx.catalog)
        queries = subject_queries(subjects, p.attributes, p.prompt, p.k, p.system_prompt(),
                                  neutral=p.neutral)
        for m, name in enumerate(subjects):
            for attr, groups in p.groups.items():
                for group, members in groups.items():
                    for member in members:
                        phrase = p.member_phrase.replace("{member}", member)
                        queries.append(Query(
                            QueryKey(m, attr, group, (member,)),
                            Request.from_prompt(p.prompt(phrase, name), k=p.k,
                                                system=p.system_prompt()),
                            {"unit": m, "subject": name, "attribute": attr, "value": group,
                             "member": member}))
        for q in subject_queries(subjects, p.controls(), p.prompt, p.k, p.system_prompt()):
            q.meta["control"] = True
            queries.append(q)
        return queries

    def _keys(self, unit: int, attr: str, cond: str) -> list[QueryKey]:
        """Return the keys of the queries whose lists make up one (unit, attribute, condition) cell.

        That is the value's query, or one per member of an implicit-cue group.
        """
        if attr in self.params.groups:
            return [QueryKey(unit, attr, cond, (m,)) for m in self.params.groups[attr][cond]]
        return [QueryKey(unit, attr, cond)]

    # -- measure --------------------------------------------------------------------------------
    def measure(self, run: Run) -> dict[str, Any]:
        """Compute each value's similarity to the neutral list and its SNSR / SNSV per attribute."""
        from ..metrics.similarity import similarity_matrix
        from .kit import Table

        p, got, kit, ctx = self.params, run.got, run.summary, run.ctx
        K = p.k
        ks = list(range(1, K + 1))
        unit_ids = sorted({q.meta["unit"] for q in run.queries})  # a subset in adaptive rounds
        n_units = len(unit_ids)
        snsr_jaccard: dict[str, MetricRecord] = {}
        divergent: list[tuple[float, int, str, str]] = []
        # catalog-free FaiRLLM parse: pairs with an empty list are skipped (NaN) and counted
        skip_empty = getattr(ctx.catalog, "empty_pair_policy", "score") == "skip"
        catalog_convention = getattr(ctx.catalog, "convention", None)
        skipped: dict[str, tuple[int, int]] = {}  # attribute -> (pairs skipped, pairs)
        neutral = {m: QueryKey(m, value=NEUTRAL) for m in unit_ids}
        for metric, shares in (("hallucination", got.hallucination), ("empty_list", got.empty)):
            ids = [m for m in unit_ids if neutral[m] in shares]
            kit.means(Table(metric, None, [p.neutral], [str(m) for m in ids],
                            np.array([[shares[neutral[m]]] for m in ids]).reshape(-1, 1)))
        controls = p.controls()
        cells_by: dict[tuple[str, str], tuple[list[int], np.ndarray]] = {}  # (attr, sim) -> x
        for attr, values in [*p.conditions().items(), *controls.items()]:
            is_control = attr in controls
            units = [m for m in unit_ids if got.complete(
                [neutral[m]] + [i for v in values for i in self._keys(m, attr, v)])]
            run.units_complete(attr, len(units), n_units, noun="instructions")
            labels = [str(m) for m in units]
            for metric, shares in (("hallucination", got.hallucination),
                                   ("empty_list", got.empty)):
                x = np.array([[_mean([shares[i] for i in self._keys(m, attr, v)])
                               for v in values] for m in units])
                kit.means(Table(metric, attr, list(values), labels,
                                x.reshape(len(units), len(values))))
            if not units:
                continue
            ids = [(m, v, i) for m in units for v in values for i in self._keys(m, attr, v)]
            s_lists = [got.lists[i] for _, _, i in ids]
            n_lists = [got.lists[neutral[m]] for m, _, _ in ids]
            mats = similarity_matrix(s_lists, n_lists, k_values=ks, metrics=tuple(p.similarities),
                                     p=p.rbo_p)
            empty_pair = np.array([not s or not n for s, n in zip(s_lists, n_lists, strict=True)],
                                  dtype=bool)
            if skip_empty:
                skipped[attr] = (int(empty_pair.sum()), len(ids))
            cells = {(m, v): [] for m in units for v in values}  # rows of mats per cell
            for row, (m, v, _) in enumerate(ids):
                cells[(m, v)].append(row)
            for sim in p.similarities:
                per_query = np.asarray(mats[sim], dtype=float)
                if skip_empty and empty_pair.any():
                    per_query = per_query.copy()
                    per_query[empty_pair, :] = np.nan
                x = np.stack([_mean_rows(per_query, cells[(m, v)], skip_empty) for m in units
                              for v in values]).reshape(len(units), len(values), len(ks))
                table = Table(sim, attr, list(values), labels, x, ks=ks)
                mean_conv = CONVENTIONS.get(sim, f"p={p.rbo_p}" if sim == "rbo" else None)
                kit.means(table, convention=_join(mean_conv, catalog_convention))
                spread_conv = _join(CONVENTIONS.get(sim), catalog_convention)
                cells_by[(attr, sim)] = (units, x[:, :, -1])
                family = {}
                if is_control:  # the control's own tests: a family apart from the attributes'
                    family = {"family": f"{sim} (control)"}
                snsr = kit.spread(table, "snsr", convention=spread_conv, **family)
                kit.spread(table, "snsv", convention=spread_conv, **family)
                if sim == "jaccard" and not is_control:
                    snsr_jaccard[attr] = snsr[K]
                    for ui, m in enumerate(units):
                        for vi, v in enumerate(values):
                            divergent.append((float(x[ui, vi, -1]), m, attr, v))
        if skip_empty:
            n_skip = sum(a for a, _ in skipped.values())
            n_pairs = sum(b for _, b in skipped.values())
            if n_skip:
                per_attr = ", ".join(f"{a}: {k}" for a, (k, _) in skipped.items() if k)
                run.warn(f"{n_skip} of {n_pairs} pairs skipped: an empty parsed list "
                         f"(FaiRLLM's rule; {per_attr})")
        if catalog_convention:
            run.method_notes.append(
                "Catalog-free audit: items are normalised title strings "
                f"({catalog_convention}); serp_star uses FaiRLLM's SERP* normaliser "
                "(2 L_n (L_n + 1)), serp_star_normalized the normalized one.")
        versus = self._versus_control(run, cells_by, catalog_convention)
        return {"snsr": snsr_jaccard, "divergent": divergent, "skip_empty": skip_empty,
                "versus": versus}

    def _versus_control(self, run: Run, cells_by: dict[tuple[str, str], tuple[list[int],
                                                                             np.ndarray]],
                        catalog_convention: str | None) -> dict[tuple[str, str], MetricRecord]:
        """Record each attribute's SNSR / SNSV minus each control's, on their common units.

        See :func:`recaudit.probes.control.compare_with_controls`; returns the Jaccard SNSR
        comparisons by (attribute, control label), for the findings.
        """
        from ..metrics.specs import SPREAD_KINDS
        from .kit import SPREAD_STATISTIC

        p = self.params
        spreads = [(sim, SPREAD_KINDS[kind][0].format(sim), SPREAD_STATISTIC[kind],
                    _join(CONVENTIONS.get(sim), catalog_convention))
                   for sim in p.similarities for kind in ("snsr", "snsv")]
        recs = compare_with_controls(run, cells_by, p.conditions(), p.controls(), spreads,
                                     p.k, "instructions")
        return {(a, c): r for (a, c, spread), r in recs.items() if spread == "snsr_jaccard"}

    # -- say ------------------------------------------------------------------------------------
    def say(self, run: Run, measured: dict[str, Any]) -> None:
        """Write the SNSR findings, the empty-list finding and the most divergent examples."""
        self._findings(run, measured["snsr"], measured.get("versus", {}))
        self._empty_finding(run.result, run.summary, run.got.empty, measured["skip_empty"])
        self._examples(run, measured["divergent"])

    def _findings(self, run: Run, recs: dict[str, MetricRecord],
                  versus: dict[tuple[str, str], MetricRecord]) -> None:
        res, alpha = run.result, run.ctx.stats.alpha
        for attr, rec in sorted(recs.items(), key=lambda kv: -(kv[1].estimate or 0)):
            if rec.p_adjusted is None:
                continue
            sims = {m.value: m.estimate for m in res.metrics if m.metric == "jaccard"
                    and m.attribute == attr and m.k == rec.k and m.value is not None}
            lo_v = min(sims, key=lambda v: sims[v])
            hi_v = max(sims, key=lambda v: sims[v])
            run.summary.finding(
                rec,
                title=verdict_title(rec, alpha, subject=attr,
                                    effect=f"lists differ by user {attr}",
                                    no_effect="no significant difference",
                                    statistic=f"SNSR of Jaccard@{rec.k} = {fmt(rec.estimate)}"),
                detail=(f"Users who say they are {lo_v!r} get lists least like the neutral one "
                        f"(Jaccard {fmt(sims[lo_v])}); {hi_v!r} most alike "
                        f"({fmt(sims[hi_v])}). 95% CI of SNSR {ci_text(rec)}."
                        + floor_sentence(rec, "instructions")
                        + "".join(control_sentence(d, alpha, control=c, spread="SNSR",
                                                   control_estimate=_estimate(res, rec, c))
                                  for (a, c), d in versus.items() if a == attr)),
                alpha=alpha)

    @staticmethod
    def _empty_finding(res: ProbeResult, kit: Any, empty: dict[str, float],
                       skip_empty: bool = False) -> None:
        """Write the empty-list finding: how the share of refusals varies by value.

        Refusals make empty-vs-empty lists count as identical (Jaccard 1), and refusing some
        groups more is itself unequal.
        """
        per_value = {(m.attribute, m.value): m.estimate for m in res.metrics
                     if m.metric == "empty_list" and m.attribute and m.estimate is not None}
        spread = ""
        if per_value:
            lo, hi = min(per_value, key=per_value.get), max(per_value, key=per_value.get)
            spread = (f" By value it ranges from {per_value[lo]:.0%} ({lo[0]} = {lo[1]!r}) to "
                      f"{per_value[hi]:.0%} ({hi[0]} = {hi[1]!r}).")
        consequence = ("Pairs with an empty list are skipped (FaiRLLM's rule), so each Sim(a) "
                       "rests on fewer instructions." if skip_empty else
                       "Two empty lists count as identical (Jaccard 1), so similarity here is "
                       "largely agreement on refusing.")
        share = kit.refusal_finding(empty, consequence + spread)
        if share >= kit.REFUSAL_SHARE:
            res.warnings.append(f"{share:.0%} of answers grounded to an empty list")

    def _examples(self, run: Run, divergent: list[tuple[float, int, str, str]]) -> None:
        res, lists, answers, catalog = run.result, run.got.lists, run.answers, run.ctx.catalog
        subject = {q.meta["unit"]: q.meta["subject"] for q in run.queries}
        seen = set()
        for score, m, attr, v in sorted(divergent, key=lambda t: t[0]):
            if len(res.examples) >= self.params.n_examples:
                break
            if (m, attr) in seen:
                continue
            seen.add((m, attr))
            nid, sid = QueryKey(m, value=NEUTRAL), self._keys(m, attr, v)[0]  # group: 1st member
            res.examples.append({
                "subject": subject.get(m, str(m)),
                "attribute": attr, "value": v, "jaccard": score,
                "neutral": [catalog.title(i) for i in lists[nid]],
                "sensitive": [catalog.title(i) for i in lists[sid]],
                "neutral_text": answers[str(nid)].response.text,
                "sensitive_text": answers[str(sid)].response.text})


def _estimate(res: ProbeResult, rec: MetricRecord, attribute: str) -> float | None:
    """Return the estimate of ``rec``'s metric at its k and variant for another attribute."""
    return next((m.estimate for m in res.metrics if m.metric == rec.metric and m.k == rec.k
                 and m.attribute == attribute and m.variant == rec.variant), None)


def _mean(values: list[float]) -> float:
    """Return a cell's value: the one query's, or the mean over an implicit-cue group's members."""
    return values[0] if len(values) == 1 else float(np.mean(values))


def _mean_rows(mat: np.ndarray, rows: list[int], skip_nan: bool = False) -> np.ndarray:
    """Mean of the similarity rows of a cell's queries (a single row unchanged, bit for bit).

    ``skip_nan``: skipped pairs (NaN rows) are left out of a group's mean; NaN when all are.
    """
    if len(rows) == 1:
        return mat[rows[0]]
    if not skip_nan:
        return mat[rows].mean(axis=0)
    sub = mat[rows]
    observed = ~np.isnan(sub)
    counts = observed.sum(axis=0)
    out = np.full(sub.shape[1:], np.nan)
    np.divide(np.where(observed, sub, 0.0).sum(axis=0), counts, out=out, where=counts > 0)
    return out


def _join(*parts: str | None) -> str | None:
    """Convention strings joined with "; " (None when there are none)."""
    kept = [x for x in parts if x]
    return "; ".join(kept) if kept else None
