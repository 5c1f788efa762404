"""A complete probe on the base: whether lists come back shorter when the user states a mood."""

import numpy as np

from recaudit.metrics.specs import declare
from recaudit.probes.base import Probe, ProbeParams, Query, QueryKey, Run
from recaudit.probes.findings import ci_text, floor_sentence, fmt, verdict_title
from recaudit.probes.kit import Table
from recaudit.probes.registry import probe
from recaudit.probes.sampling import sample_subjects
from recaudit.probes.subjects import SubjectSource
from recaudit.recommenders.base import GENERATE, Request

declare("list_fill", "share of the k slots the list fills", higher_is_worse=False,
        range=(0.0, 1.0))


class MoodParams(ProbeParams):
    moods: list[str] = ["happy", "sad"]
    subjects: SubjectSource = SubjectSource(source="inline", items=["Heat", "Fargo", "Alien"])
    k: int = 3


@probe("mood_fill", tags=["robustness"])
class MoodFillProbe(Probe):
    """Whether lists come back shorter when the user states a mood."""

    Params = MoodParams
    requires = frozenset({GENERATE})
    headline = ("list_fill_gap",)
    method_notes = ("Moods are stated in the prompt, not inferred.",)

    def plan(self, ctx):  # one query per (subject, mood); the key says what it means
        p = self.params
        return [Query(QueryKey(m, "mood", mood),
                      Request.from_prompt(f"I am {mood}. {p.k} movies like {name}?", k=p.k),
                      {"unit": m, "subject": name, "attribute": "mood", "value": mood})
                for m, name in enumerate(sample_subjects(p.subjects, ctx.catalog))
                for mood in p.moods]

    def measure(self, run: Run):  # lists -> a units x moods table -> means and their gap
        p, got = self.params, run.got
        units = sorted({q.key.unit for q in run.queries})
        done = [m for m in units if got.complete(QueryKey(m, "mood", v) for v in p.moods)]
        run.units_complete("mood", len(done), len(units), noun="subjects")
        x = np.array([[len(got.lists[QueryKey(m, "mood", v)]) / p.k for v in p.moods]
                      for m in done]).reshape(len(done), len(p.moods))
        table = Table("list_fill", "mood", list(p.moods), [str(m) for m in done], x)
        run.summary.means(table)
        return run.summary.spread(table, "gap")[None]

    def say(self, run: Run, gap):  # p-values are adjusted by now
        alpha = run.ctx.stats.alpha
        run.summary.finding(gap, alpha=alpha, title=verdict_title(
            gap, alpha, subject="mood", effect="lists fill differently by mood",
            no_effect="no significant difference", statistic=f"gap {fmt(gap.estimate)}"),
            detail=f"95% CI of the gap {ci_text(gap)}." + floor_sentence(gap, "subjects"))
