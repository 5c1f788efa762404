"""Data files shipped with recaudit (read through :mod:`importlib.resources`).

* ``names_bertrand_mullainathan_2004.json``: the 36 first names of Bertrand & Mullainathan
  (2004), Table A1, by perceived race and sex (used by the ``candidate_groups`` probe).
"""
