"""Probes: each turns (config, catalog) into queries and analyses the answers.

Built-in probes: ``counterfactual`` (FaiRLLM), ``profile`` (CFaiRLLM), ``leakage`` (UP5-style),
``popularity``, ``exposure``, ``position`` (LLMRank) and ``robustness``. A probe is built on
:class:`Probe` (:mod:`recaudit.probes.base`) and registered with :func:`probe`.
"""

from .registry import (AuditContext, Probe, ProbeParams, Query, QueryKey, get_probe, probe,
                       registry)

__all__ = ["AuditContext", "Probe", "ProbeParams", "Query", "QueryKey", "get_probe", "probe",
           "registry"]
