"""Probes: each turns (config, catalog) into queries and analyses the answers.

Built-in probes: ``counterfactual`` (FaiRLLM), ``profile`` (CFaiRLLM), ``leakage`` (UP5-style).
Register new ones with :func:`probe`.
"""

from .registry import AuditContext, Probe, ProbeParams, Query, get_probe, probe, registry

__all__ = ["AuditContext", "Probe", "ProbeParams", "Query", "get_probe", "probe", "registry"]
