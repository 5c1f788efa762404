"""Validation of recaudit's verdicts on synthetic models of known behaviour (docs/VALIDATION.md).

:mod:`validation.harness` runs a probe's real analysis on an effect-free and a planted-effect
model; ``validation.world_<probe>`` define each probe's models; :mod:`validation.worlds` lists
them; ``python -m validation`` writes docs/VALIDATION.md; tests/validation checks the rates.
"""
