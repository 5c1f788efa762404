"""A fake installed distribution for entry-point plugin tests: modules and a ``*.dist-info``
with ``entry_points.txt`` in a folder that the test puts on ``sys.path``."""

from __future__ import annotations

import sys
import textwrap
import uuid
from pathlib import Path


def fake_distribution(root: Path, entry_points: dict[str, dict[str, str]],
                      modules: dict[str, str]) -> str:
    """Write ``modules`` (``{dotted.name: source}``) and a distribution declaring
    ``entry_points`` (``{group: {name: value}}``) under ``root``; return the distribution's name.

    The caller puts ``root`` on ``sys.path`` (``monkeypatch.syspath_prepend``), after which
    ``importlib.metadata.entry_points(group=...)`` lists the entries.
    """
    dist = f"fakeplugin_{uuid.uuid4().hex[:8]}"
    for dotted, source in modules.items():
        parts = dotted.split(".")
        folder = root.joinpath(*parts[:-1])
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(1, len(parts)):
            init = root.joinpath(*parts[:i], "__init__.py")
            if not init.exists():
                init.write_text("", encoding="utf-8")
        (folder / f"{parts[-1]}.py").write_text(textwrap.dedent(source), encoding="utf-8")
    info = root / f"{dist}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n",
                                   encoding="utf-8")
    (info / "entry_points.txt").write_text(
        "".join(f"[{group}]\n" + "".join(f"{n} = {v}\n" for n, v in eps.items()) + "\n"
                for group, eps in entry_points.items()), encoding="utf-8")
    return dist


def forget_modules(prefix: str) -> None:
    """Drop the modules named ``prefix`` or ``prefix.*`` from ``sys.modules``."""
    for name in [m for m in sys.modules if m == prefix or m.startswith(prefix + ".")]:
        del sys.modules[name]
