"""The reliability suite prints its size at the end of the run (see ``tally.py``)."""

from __future__ import annotations

from . import tally


def pytest_terminal_summary(terminalreporter, exitstatus, config):  # noqa: ARG001
    if sum(tally.counts.values()):
        terminalreporter.write_line(tally.line())
