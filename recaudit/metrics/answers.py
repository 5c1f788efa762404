"""Shares that describe the answers themselves, before any list is compared.

* ``hallucination`` (the name is kept for compatibility; what it measures is "not in
  catalog"): share of a list's entries that matched no catalogue item
  (:attr:`recaudit.grounding.Grounding.hallucination_share`). It mixes invented titles with
  real items the catalogue lacks (a large model names many films MovieLens does not hold);
  ``catalog: {source: none}`` audits without a catalogue, where every named title is an item.
  METRICS.md section 1 asks for it per attribute value, since a value with more entries
  outside the catalogue is itself a finding.
* ``empty_list``: share of answers that grounded to no item at all (refusals, unparseable text);
  two empty lists have Jaccard 1, so this says how much of a similarity is agreement on refusing.
"""

from __future__ import annotations

from .specs import declare

__all__: list[str] = []

declare("hallucination", "not in catalog: share of list entries that matched no catalogue "
        "item; mixes invented titles with real items the catalogue lacks (audit with "
        "catalog: {source: none} to count every named title)",
        higher_is_worse=True, range=(0.0, 1.0), role="answer_quality")
declare("empty_list", "share of answers with no catalogue item at all (refusals, unparseable)",
        higher_is_worse=True, range=(0.0, 1.0), role="answer_quality")
