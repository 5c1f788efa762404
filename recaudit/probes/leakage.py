"""Attribute leakage: whether an observer can infer the stated attribute value from the list.

After UP5 (Hua et al., arXiv 2305.12090); METRICS.md section 3.

Queries are FaiRLLM's movie prompts ("I am {value} fan of {name}. Please provide me with a list
of {K} movie titles...") for every subject and every value of each attribute; with the default
template, system prompt and ``k`` they are byte-identical to the ``counterfactual`` probe's, so
an audit running both computes them once (engine dedup / cache).

Per attribute, every list is one sample: features = bag of recommended item ids (binary
presence, ``MultiLabelBinarizer``), label = the stated value. An L2 logistic regression
(``C``) is cross-validated with ``n_folds`` folds *grouped by subject* (all lists of one
subject are in the same fold, so the classifier must generalise to unseen subjects; a
recommender that ignores the value then gets exactly AUC 0.5); the out-of-fold predicted
probabilities give the AUC (``roc_auc`` for two values, the unweighted mean of one-vs-rest
AUCs, sklearn's ``multi_class="ovr", average="macro"``, for more). 0.5 = no leakage, 1 = the
value can be read off the list.

* p-value: permutation test refitting the whole cross-validation on labels shuffled *within
  each subject* (the values are exchangeable within a subject under the null),
  ``p = (1 + #{AUC_perm >= AUC_obs}) / (1 + n_permutations)`` with ties judged by
  :func:`recaudit.stats.permutation_pvalue`; Benjamini-Hochberg across attributes.
* CI: bootstrap over subjects of the AUC of the fixed out-of-fold predictions (it reflects the
  sampling of the evaluated subjects, not refitting variability), bias-corrected as for every
  metric that declares a noise floor, and widened to the refitted permutations' spread
  (:func:`refit_widened`: the permutation test inverted under a shift model), so that it
  covers the refitting's variability too.
* Floor: both AUCs declare ``noise_floor``; the refitted permutations give each record's
  ``null_mean`` / ``null_p95`` (what a model whose lists do not depend on the value scores).
* ``leakage_auc`` per attribute (``value`` empty) with estimate, CI, p, p_adjusted, floor and
  ``n`` = subjects; and ``leakage_auc_ovr`` per value: that value's one-vs-rest AUC with a CI,
  its floor and p-value from the same permutations (BH across the attribute's values; which
  value is recognisable; a separate name so a gate on ``leakage_auc`` selects one record per
  attribute).

Adaptive audits (``AuditContext.arrival``: the round each subject was asked in): the record
also carries ``sequence_table``, the prequential pair kernels of :meth:`LeakageProbe._prequential`
(a classifier fitted on the rounds before scores each later round's subjects two at a time,
:func:`pair_auc_kernel`); their running mean bounds the leakage from below, which is how a leakage
gate can fail before the cap (:func:`recaudit.adaptive.prequential_path`).

Only subjects whose answers for every value of the attribute succeeded are used (the design
stays balanced); the number left out is a warning. Degenerate inputs do not crash: fewer than 2
subjects or only empty lists give ``estimate=None``; identical lists everywhere give AUC 0.5 and
p = 1; fewer subjects than ``n_folds`` reduce the folds; each case carries a warning.
``examples`` lists, per value, the items whose presence differs most from the other values'
lists; ``records`` holds every query's raw text, grounded ids, unmatched entries and error.

Repeated samples (``decoding.samples`` = N): a (subject, value) row stays one observation; its
feature of an item is the share of the row's N sampled lists that hold it
(:func:`sampled_features`, the mean over samples of the binary presence). Folds, within-subject
permutations and the bootstrap are over subjects as above, never over samples.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from pydantic import Field, field_validator

from ..metrics.classification import auc_binary, auc_macro_ovr
from ..samples import sample_count, sample_lists
from ..recommenders.base import EMBED, GENERATE
from ..results import MetricRecord, ProbeResult
from ..stats import permutation_pvalue, tie_tolerance
from .attributes import (DOMAINS, FAIRLLM_TEMPLATE, attributes_shape, require_placeholders,
                         resolve_attributes, subject_queries)
from .base import AuditContext, Probe, ProbeParams, Query, QueryKey, Run
from .findings import ci_text, floor_sentence, fmt, verdict_title
from .registry import probe
from .sampling import sample_subjects
from .subjects import SubjectSource

DEFAULT_ATTRIBUTES: dict[str, list[str]] = {
    "gender": ["a female", "a male"],
    "age": ["a young", "a middle aged", "an old"],
}
_MOVIE = DOMAINS["movie"]
LEAKAGE_TEMPLATE = (FAIRLLM_TEMPLATE.replace("{items}", _MOVIE["items"])
                    .replace("{about}", _MOVIE["about"]))
LEAKAGE_SYSTEM = f"You are a {_MOVIE['kind']} recommendation system."
CONVENTION = "logistic regression on bag of items, CV grouped by subject, macro one-vs-rest AUC"
METHOD_NOTES = (
    "A classifier that reads the stated attribute off the list measures leakage of what the "
    "user said, not of anything inferred about real people.",
    "An AUC is above 0.5 under noise alone in small samples: compare it with its null floor.",
)


class LeakageParams(ProbeParams):
    """Parameters of the leakage probe (see the module docstring for each one's role)."""

    attributes: dict[str, list[str]] | list[str] = Field(
        default_factory=lambda: {a: list(v) for a, v in DEFAULT_ATTRIBUTES.items()})
    subjects: SubjectSource = Field(default_factory=SubjectSource)
    template: str = LEAKAGE_TEMPLATE
    system: str | None = LEAKAGE_SYSTEM
    k: int = Field(20, ge=1, le=200)
    n_folds: int = Field(5, ge=2)
    n_permutations: int = Field(200, ge=1)
    C: float = Field(1.0, gt=0.0)
    n_examples: int = Field(5, ge=0, description="items shown per value in examples")
    seed: int = 0

    @field_validator("template")
    @classmethod
    def _placeholders(cls, v: str) -> str:
        return require_placeholders(v, ("{value}", "{name}", "{K}"))

    @field_validator("attributes", mode="before")
    @classmethod
    def _attributes_shape(cls, v: Any) -> Any:
        return attributes_shape(v)

    @field_validator("attributes")
    @classmethod
    def _attributes(cls, v: dict[str, list[str]] | list[str]) -> dict[str, list[str]]:
        return resolve_attributes(v, min_values=2)

    def prompt(self, value: str, name: str) -> str:
        """Fill the template with K, the subject ``name`` and the stated ``value``."""
        return (self.template.replace("{K}", str(self.k)).replace("{name}", name)
                .replace("{value}", value))


# -- statistics -------------------------------------------------------------------------------
def fit_predict(X_train: Any, y_train: np.ndarray, X_test: Any, n_classes: int, C: float,
                caught: list[str] | None = None) -> np.ndarray:
    """Return the test rows' class probabilities from an L2 logistic regression.

    Fitted on the training rows; a training set with one class predicts it with probability 1.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    proba = np.zeros((X_test.shape[0], n_classes))
    present = np.unique(y_train)
    if present.size == 1:
        proba[:, present] = 1.0
        return proba
    # liblinear is several times faster for two classes (it also penalises the intercept);
    # lbfgs fits the multinomial model for more
    clf = LogisticRegression(C=C, max_iter=2000,
                             solver="liblinear" if present.size == 2 else "lbfgs")
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always", ConvergenceWarning)
        clf.fit(X_train, y_train)
    if caught is not None and any(issubclass(x.category, ConvergenceWarning) for x in w):
        caught.append("logistic regression did not converge in a fold")
    proba[:, clf.classes_] = predict_by_distinct_rows(clf, X_test)
    return proba


def cv_proba(X: Any, y: np.ndarray, folds: np.ndarray, n_classes: int, C: float,
             caught: list[str] | None = None) -> np.ndarray:
    """Out-of-fold predicted probabilities (rows x classes) of an L2 logistic regression."""
    proba = np.zeros((len(y), n_classes))
    for f in np.unique(folds):
        test = folds == f
        proba[test] = fit_predict(X[~test], y[~test], X[test], n_classes, C, caught)
    return proba


def pair_auc_kernel(a: np.ndarray, b: np.ndarray) -> float:
    r"""Return the macro one-vs-rest AUC kernel of two subjects' probability matrices.

    ``a[t, c]``: the probability of class ``c`` given the subject's list of value ``t`` (V x V).

    .. math:: h(a, b) = \frac{1}{V(V-1)} \sum_c \sum_{c' \ne c} \tfrac12 \big[
              s(a_{cc}, b_{c'c}) + s(b_{cc}, a_{c'c}) \big], \quad
              s(x, y) = 1[x > y] + \tfrac12 1[x = y]

    For two independent subjects and a fixed classifier, ``E h`` is the classifier's
    population macro one-vs-rest AUC (a positive list of value c against a list of another
    value, from different subjects, as in :func:`auc_macro_ovr` on balanced data); with V = 2
    it is the binary AUC's kernel.
    """
    V = a.shape[0]
    total = 0.0
    for c in range(V):
        for o in range(V):
            if o != c:
                total += 0.5 * (_beats(a[c, c], b[o, c]) + _beats(b[c, c], a[o, c]))
    return total / (V * (V - 1))


def _beats(x: float, y: float) -> float:
    return 1.0 if x > y else 0.5 if x == y else 0.0


def sampled_features(samples: list[list[list[str] | None]]) -> tuple[np.ndarray, list[bytes]]:
    """Return the features of rows whose lists were sampled N times, and each row's key.

    A row's feature of item ``i`` is the share of its sampled lists that hold ``i`` (the mean
    over samples of the binary presence; missing samples left out), so a row stays one
    (subject, value) observation. The key tells identical rows apart (ties in the AUC).
    """
    from sklearn.preprocessing import MultiLabelBinarizer

    mlb = MultiLabelBinarizer(sparse_output=True)
    mlb.fit([lst for row in samples for lst in row if lst is not None])
    width = len(mlb.classes_)
    X = np.zeros((len(samples), width))
    for r, row in enumerate(samples):
        got = [lst for lst in row if lst is not None]
        if got and width:
            X[r] = np.asarray(mlb.transform(got).mean(axis=0)).ravel()
    return X, [np.ascontiguousarray(row).tobytes() for row in X]


def refit_widened(lo: float, hi: float, estimate: float, refits: Any, confidence: float
                  ) -> tuple[float, float]:
    """Widen a bootstrap CI of a cross-validated AUC to cover the refitting's variability.

    The bootstrap resamples subjects of *fixed* out-of-fold predictions, so it misses how much
    the AUC moves when the classifier is refitted (measured: under no leakage the CV AUC's
    spread is about 1.4 times the bootstrap's, and the bootstrap CI excluded the floor in 10%
    of runs). The refitted permutations ``refits`` hold that whole variability at no leakage;
    inverting the permutation test under a shift model (Lehmann 1963) gives
    ``[estimate - (q_hi - mean), estimate + (mean - q_lo)]``, where ``q_hi`` / ``q_lo`` are the
    ``j``-th largest / smallest of the ``n`` refits with ``j = max(1, floor((1 - confidence) / 2
    * (n + 1)))``: an exchangeable estimate exceeds the ``j``-th largest with probability
    ``j / (n + 1)``, at most ``(1 - confidence) / 2`` from ``n = 39`` on (the interpolated
    97.5% quantile of 49 refits is exceeded with probability 2 / 50). Each end of the CI
    is the farther of that and ``[lo, hi]``, clipped to [0, 1]; without refits ``[lo, hi]`` is
    returned unchanged.
    """
    null = np.sort(np.asarray([] if refits is None else refits, dtype=float))
    null = null[np.isfinite(null)]
    if not null.size or not np.isfinite(estimate):
        return lo, hi
    j = max(1, int(np.floor((1 - confidence) / 2 * (null.size + 1))))
    q_lo, q_hi = null[j - 1], null[-j]
    mean = float(null.mean())
    return (float(max(0.0, min(lo, estimate - (q_hi - mean)))),
            float(min(1.0, max(hi, estimate + (mean - q_lo)))))


def predict_by_distinct_rows(clf: Any, X: Any) -> np.ndarray:
    """Return ``clf.predict_proba`` of ``X``, computed once per distinct row.

    Identical lists must get identical probabilities (a tie in the AUC). Predicting every row
    lets BLAS round a row differently by its position in the matrix, so two identical lists can
    come out one ulp apart and a tied pair counts as ordered (a pinned AUC moved by exactly one
    such pair, 1/(2 |P| |N|), between an Intel Xeon and an AMD EPYC); predicting the distinct
    rows and mapping them back makes the ties exact on every CPU. ``X`` is a dense array or a
    CSR matrix of 0/1 features.
    """
    if hasattr(X, "indptr"):  # CSR: a row is its sorted set of feature indices
        X = X.sorted_indices() if not X.has_sorted_indices else X
        keys = [X.indices[X.indptr[i]:X.indptr[i + 1]].tobytes() for i in range(X.shape[0])]
    else:
        keys = [np.ascontiguousarray(row).tobytes() for row in np.asarray(X)]
    slot: dict[bytes, int] = {}  # row bytes -> its index among the distinct rows
    distinct: list[int] = []  # the first row of each distinct one
    inverse = np.empty(len(keys), dtype=int)
    for i, key in enumerate(keys):
        if key not in slot:
            slot[key] = len(distinct)
            distinct.append(i)
        inverse[i] = slot[key]
    return clf.predict_proba(X[np.asarray(distinct, dtype=int)])[inverse]


@probe("leakage", tags=["fairness", "privacy", "up5"])
class LeakageProbe(Probe):
    """UP5-style leakage: whether a classifier can tell the stated attribute value from the list."""

    whole_params = frozenset({"attributes", "control"})

    Params = LeakageParams
    requires = frozenset({GENERATE, EMBED})
    headline = ("leakage_auc",)
    method_notes = METHOD_NOTES
    params: LeakageParams

    def plan(self, ctx: AuditContext) -> list[Query]:
        """Plan one query per sampled subject and value of each attribute."""
        p = self.params
        return subject_queries(sample_subjects(p.subjects, ctx.catalog), p.attributes, p.prompt,
                               p.k, p.system or None)

    def measure(self, run: Run) -> dict[str, MetricRecord]:
        """Return each attribute's leakage AUC record (cross-validated, with its p-value)."""
        units: list[int] = list(dict.fromkeys(q.meta["unit"] for q in run.queries))
        if sample_count(run.got) > 1:
            run.method_notes.append(
                "Repeated samples: each (subject, value) row's item features are the share of "
                "its sampled lists holding the item; folds, permutations and the bootstrap stay "
                "over subjects.")
        return {attr: self._attribute(run, attr, values, units)
                for attr, values in self.params.attributes.items()}

    def say(self, run: Run, measured: dict[str, MetricRecord]) -> None:
        """Write one finding per attribute with an AUC and an adjusted p-value."""
        alpha, conf = run.ctx.stats.alpha, run.ctx.stats.confidence
        for attr, rec in measured.items():
            if rec.estimate is None or rec.p_adjusted is None:
                continue
            auc = fmt(rec.estimate)
            run.summary.finding(
                rec,
                title=verdict_title(rec, alpha, subject=attr,
                                    effect=f"the stated {attr} can be inferred from the list",
                                    no_effect="no significant leakage", statistic=f"AUC {auc}"),
                detail=(f"Cross-validated classifier over {rec.n} subjects; "
                        f"{int(round(100 * conf))}% CI of the AUC {ci_text(rec)}; 0.5 means no "
                        "leakage." + floor_sentence(rec, "subjects")),
                alpha=alpha)

    def _attribute(self, run: Run, attr: str, values: list[str], units: list[int]
                   ) -> MetricRecord:
        from sklearn.preprocessing import MultiLabelBinarizer

        p = self.params
        kit, res, ctx, lists = run.summary, run.result, run.ctx, run.got.lists
        V = len(values)
        done = [m for m in units if run.got.complete(QueryKey(m, attr, v) for v in values)]
        S = len(done)
        run.units_complete(attr, S, len(units), noun="subjects")
        left_out = ([f"{len(units) - S} of {len(units)} subjects left out (a response failed "
                     "or was not computed)"] if S < len(units) else [])
        notes: list[str] = []  # what else the record's warning says

        def finish(estimate: float | None, ci: tuple = (None, None), pv: float | None = None,
                   null: Any = None, table: str | None = None,
                   sequence: str | None = None) -> MetricRecord:
            for note in notes:
                run.warn(f"{attr}: {note}")
            extra = kit.null_floor(null) if null is not None else {}
            if table is not None:
                extra.update(table=table, statistic="auc_macro_ovr")
            if sequence is not None:
                extra.update(sequence_table=sequence)
            return kit.record("leakage_auc", attribute=attr, k=p.k, estimate=estimate, ci=ci,
                              n=S, convention=CONVENTION,
                              warning="; ".join(left_out + notes) or None,
                              family="leakage_auc", p_value=pv, **extra)

        if S < 2:
            notes.append("fewer than 2 subjects: no classifier can be cross-validated")
            return finish(None)
        rows = [lists[QueryKey(m, attr, v)] for m in done for v in values]  # subject-major
        y = np.tile(np.arange(V), S)
        if sample_count(run.got) > 1:
            X, key = sampled_features([sample_lists(run.got, QueryKey(m, attr, v))
                                       for m in done for v in values])
        else:
            X = MultiLabelBinarizer(sparse_output=True).fit_transform(rows).tocsr()
            key = [tuple(sorted(set(r))) for r in rows]
        if X.shape[1] == 0:
            notes.append("every list is empty: nothing to classify")
            return finish(None)
        if hasattr(X, "toarray") and X.shape[0] * X.shape[1] <= 2_000_000:  # small: dense
            X = X.toarray()
        if len(set(key)) == 1:
            notes.append("every list has the same items: AUC 0.5 by construction")
            return finish(0.5, (0.5, 0.5), 1.0)
        n_splits = min(p.n_folds, S)
        if n_splits < p.n_folds:
            notes.append(f"each value has only {S} lists (< n_folds {p.n_folds}): "
                         f"{n_splits}-fold cross-validation")
        rng = np.random.default_rng(p.seed)
        subject_fold = np.empty(S, dtype=int)
        subject_fold[rng.permutation(S)] = np.arange(S) % n_splits
        folds = np.repeat(subject_fold, V)
        caught: list[str] = []
        null: list[float] = []
        null_ovr: list[list[float]] = []  # per permutation, each value's one-vs-rest AUC
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1):  # many tiny fits: BLAS threads only oversubscribe
            proba = cv_proba(X, y, folds, V, p.C, caught)
            auc = auc_macro_ovr(y, proba)
            sequence = (self._prequential(run, attr, [str(m) for m in done], X, y, V, caught)
                        if run.ctx.arrival else None)
            # permutation p-value: labels shuffled within each subject, the whole CV refitted
            within_same = all(len(set(key[i * V:(i + 1) * V])) == 1 for i in range(S))
            if within_same:  # every within-subject shuffle leaves the data unchanged
                pv = 1.0
            else:
                y_mat = y.reshape(S, V)
                for _ in range(p.n_permutations):
                    yp = rng.permuted(y_mat, axis=1).reshape(-1)
                    pp = cv_proba(X, yp, folds, V, p.C, caught)
                    null.append(auc_macro_ovr(yp, pp))
                    null_ovr.append([auc_binary(yp == c, pp[:, c]) for c in range(V)])
                # ties: the stats rule, at the magnitude of an AUC (1) over len(y) summed terms
                pv = permutation_pvalue(null, auc, tie_tolerance(1.0, len(y)))
        if caught:
            notes.append(f"{caught[0]} ({len(caught)} fits); a smaller C regularises more")
        # bootstrap CI over subjects of the out-of-fold AUC (and per-value one-vs-rest AUCs):
        # resampled subjects enter as row weights (how often each subject was drawn)
        counts = kit.boot_counts(S, "leakage_auc", attr)  # (B, S)
        w = np.repeat(counts, V, axis=1)  # rows are subject-major
        boot = np.column_stack([auc_macro_ovr(y, proba, w)]
                               + [auc_binary(y == c, proba[:, c], w) for c in range(V)])

        def ci(col: np.ndarray, metric: str, estimate: float, refits: Any = None
               ) -> tuple[float | None, float | None]:
            col = col[np.isfinite(col)]
            if not col.size:
                return None, None
            lo, hi = kit.metric_interval(metric, col[:, None], estimate)
            return refit_widened(float(lo[0]), float(hi[0]), estimate, refits,
                                 run.ctx.stats.confidence)

        for c, v in enumerate(values):
            est_c = auc_binary(y == c, proba[:, c])
            floor: dict[str, Any] = {}
            if null_ovr:  # the floor under the same null as the macro AUC's
                col_null = np.asarray(null_ovr)[:, c]
                floor = dict(kit.null_floor(col_null), p_value=permutation_pvalue(
                    col_null, est_c, tie_tolerance(1.0, len(y))))
            elif within_same:
                floor = {"p_value": 1.0}
            kit.record("leakage_auc_ovr", attribute=attr, value=v, k=p.k,
                       estimate=est_c, n=S, ci=ci(boot[:, c + 1], "leakage_auc_ovr", est_c,
                                                  np.asarray(null_ovr)[:, c] if null_ovr
                                                  else None),
                       convention="one-vs-rest AUC of this value",
                       warning="; ".join(left_out + notes) or None,
                       family=f"leakage_auc_ovr:{attr}" if "p_value" in floor else None,
                       **floor)
        # per subject, the out-of-fold probability each of its lists got for each value: what
        # compare needs to re-test the AUC paired by subject
        table = kit.keep_table(
            "leakage_proba", attr, [f"{t} -> {c}" for t in values for c in values],
            [str(m) for m in done], proba.reshape(S, V * V), k=p.k, averaged=False)
        self._examples(res, ctx, attr, values, rows, y)
        return finish(auc, ci(boot[:, 0], "leakage_auc", auc, null or None), pv,
                      np.asarray(null) if null else None, table, sequence)

    def _prequential(self, run: Run, attr: str, subjects: list[str], X: Any, y: np.ndarray,
                     V: int, caught: list[str]) -> str | None:
        """Keep the prequential AUC kernels of an adaptive audit (the ``sequence_table``).

        For each round r after the first, the classifier is fitted on the subjects asked in
        rounds before r and scores the subjects of round r, taken in asking order two at a
        time: each pair gives :func:`pair_auc_kernel` (an odd subject out waits for none).
        Given the earlier rounds, a pair's kernel has mean equal to that classifier's
        population AUC, which is at most the attribute's leakage, so the sequence of kernels
        bounds the leakage from below at any look (:func:`recaudit.adaptive.record_e_path`).
        Returns the table's id (None: no pair yet).
        """
        arrival = run.ctx.arrival or {}
        position = {u: i for i, u in enumerate(arrival)}  # asking order
        rounds = np.array([arrival.get(u, -1) for u in subjects])
        rows = np.arange(len(y)).reshape(len(subjects), V)  # subject-major rows
        units, kernels = [], []
        for r in sorted({int(k) for k in rounds if k > 0}):
            train = np.flatnonzero((rounds >= 0) & (rounds < r))
            test = sorted(np.flatnonzero(rounds == r), key=lambda i: position[subjects[i]])
            if not train.size or len(test) < 2:
                continue
            tr, te = rows[train].ravel(), rows[test].ravel()
            proba = fit_predict(X[tr], y[tr], X[te], V, self.params.C, caught)
            proba = proba.reshape(len(test), V, V)  # subject, stated value, class
            for j in range(0, len(test) - 1, 2):
                units.append(subjects[test[j]])
                kernels.append(pair_auc_kernel(proba[j], proba[j + 1]))
        if not units:
            return None
        return run.summary.keep_table("leakage_auc", attr, ["prequential pair kernel"], units,
                                      np.asarray(kernels)[:, None], k=self.params.k,
                                      averaged=False)

    def _examples(self, res: ProbeResult, ctx: AuditContext, attr: str, values: list[str],
                  rows: list[list[str]], y: np.ndarray) -> None:
        if not self.params.n_examples:
            return
        items = sorted({i for r in rows for i in r})
        col = {i: j for j, i in enumerate(items)}
        present = np.zeros((len(rows), len(items)))
        for r, lst in enumerate(rows):
            present[r, [col[i] for i in set(lst)]] = 1.0
        for c, v in enumerate(values):
            inside = present[y == c].mean(axis=0)
            outside = present[y != c].mean(axis=0)
            diff = inside - outside
            top = [j for j in np.argsort(-diff, kind="stable") if diff[j] > 0]
            res.examples.append({
                "attribute": attr, "value": v,
                "items": [{"item_id": items[j], "title": str(ctx.catalog.title(items[j])),
                           "share_of_lists": float(inside[j]),
                           "share_elsewhere": float(outside[j])}
                          for j in top[: self.params.n_examples]]})

