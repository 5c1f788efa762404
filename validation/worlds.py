"""Every probe's validation world, in report order (one ``validation/world_<probe>.py`` each)."""

from __future__ import annotations

from .harness import World
from .world_candidates import WORLD as CANDIDATES
from .world_counterfactual import WORLD as COUNTERFACTUAL
from .world_leakage import WORLD as LEAKAGE
from .world_exposure import WORLD as EXPOSURE
from .world_position import SCORE_WORLD as POSITION_SCORE
from .world_position import WORLD as POSITION
from .world_popularity import WORLD as POPULARITY
from .world_profile import WORLD as PROFILE
from .world_robustness import SAMPLED_WORLD as ROBUSTNESS_SAMPLED
from .world_robustness import WORLD as ROBUSTNESS

WORLDS: list[World] = [COUNTERFACTUAL]
WORLDS += [EXPOSURE, POSITION, POSITION_SCORE, ROBUSTNESS, ROBUSTNESS_SAMPLED]
WORLDS += [PROFILE, LEAKAGE, POPULARITY, CANDIDATES]
