"""Where instruction subjects (the ``{name}`` of a FaiRLLM prompt) come from.

Sources: ``inline`` (a list in the config), ``file`` (one subject per line, ``#`` comments),
``catalog_popular`` (the ``n`` most popular catalog items, titles shown naturally: "Matrix, The
(1999)" -> "The Matrix"), ``catalog_genres`` (the catalog's ``n`` most frequent genres).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..errors import ConfigError, ProbeCannotRun

_INVERTED = re.compile(r"^(?P<body>.+), (?P<art>The|A|An|Les|La|Le|L'|Il|Das|Die|Der|El)$")
_YEAR = re.compile(r"\s*\(\d{4}\)\s*$")


def natural_title(title: str) -> str:
    """'Matrix, The (1999)' -> 'The Matrix': how a person would write the title in a prompt."""
    t = _YEAR.sub("", str(title)).strip()
    m = _INVERTED.match(t)
    if m:
        art = m.group("art")
        t = f"{art}{'' if art.endswith(chr(39)) else ' '}{m.group('body')}"
    return t


class SubjectSource(BaseModel):
    """Where a probe's subjects come from: inline, a file, or the catalog (popular items, genres).

    ``n`` caps how many are used; :meth:`resolve` gives them.
    """

    model_config = ConfigDict(extra="forbid")

    source: Literal["inline", "file", "catalog_popular", "catalog_genres"] = "catalog_popular"
    items: list[str] = Field(default_factory=list)
    path: str | None = None
    n: int = Field(100, ge=1)

    def resolve(self, catalog: Any) -> list[str]:
        """Return the subject strings, de-duplicated in order.

        Raises ConfigError when an inline or file source yields none, and
        :class:`~recaudit.errors.ProbeCannotRun` when a catalog source does.
        """
        if self.source == "inline":
            subjects = [s.strip() for s in self.items]
        elif self.source == "file":
            if not self.path or not Path(self.path).is_file():
                raise ConfigError(f"subjects.path: subject file not found: {self.path}")
            lines = Path(self.path).read_text(encoding="utf-8").splitlines()
            subjects = [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]
        elif self.source == "catalog_popular":
            subjects = [natural_title(catalog.title(i)) for i in catalog.most_popular(self.n)]
        else:
            subjects = list(catalog.genres())[: self.n]
        out = list(dict.fromkeys(s for s in subjects if s))
        if self.source in ("inline", "file"):
            out = out[: self.n] if self.n else out
        if not out and self.source in ("inline", "file"):
            raise ConfigError(f"subjects: source {self.source!r} yielded no subjects")
        if not out:  # the catalog has nothing to draw from: the probe cannot be fed
            raise ProbeCannotRun(f"subjects: source {self.source!r} yielded no subjects (the "
                                 "catalog has no items or genres to draw from)")
        return out
