"""Every probe's validation world, in report order (one ``validation/world_<probe>.py`` each)."""

from __future__ import annotations

from .harness import World
from .world_counterfactual import WORLD as COUNTERFACTUAL

WORLDS: list[World] = [COUNTERFACTUAL]
