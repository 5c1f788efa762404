"""Run one bad input through the real ``recaudit`` entry point and check its one-line error.

A case's expected message is a template: ``{path}`` is the file under test, ``<ANY>`` stands for
text a library writes (a parser's own wording); everything else must match exactly.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Sequence

from recaudit.cli import main

from . import tally

ROOT = Path(__file__).resolve().parents[2]


def message_regex(template: str, **paths: Any) -> str:
    """The exact-match regex of an error line template (see the module docstring)."""
    rx = re.escape(template).replace(re.escape("<ANY>"), ".+")
    for name, value in paths.items():
        rx = rx.replace(re.escape("{" + name + "}"), re.escape(str(value)))
    return rx


def assert_line(err: str, template: str, **paths: Any) -> None:
    lines = err.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{err}"
    line = lines[0]
    assert re.fullmatch(message_regex("recaudit: error: " + template, **paths), line), line


def assert_cli_error(capsys: Any, argv: Sequence[str], exit_code: int, template: str,
                     **paths: Any) -> None:
    """``recaudit ARGV`` in-process exits ``exit_code`` with one stderr line matching
    ``template`` and prints nothing on stdout; counts one bad input."""
    tally.add("bad inputs")
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert rc == exit_code, err
    assert_line(err, template, **paths)
    assert out == ""


def assert_subprocess_error(argv: Sequence[str], exit_code: int, template: str,
                            **paths: Any) -> None:
    """The same through a real ``python -m recaudit`` process (exit status, stderr, no stdout)."""
    tally.add("bad inputs")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-m", "recaudit", *map(str, argv)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == exit_code, proc.stderr
    assert_line(proc.stderr, template, **paths)
    assert proc.stdout == ""
