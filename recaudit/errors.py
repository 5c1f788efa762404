"""Errors a user can cause, each mapped to a documented exit code.

Exit codes (README, ``recaudit --help``):

* 0 -- success, every gate passed
* 1 -- a gate failed
* 2 -- usage or input error (config, catalog, model path, endpoint, results file)
* 3 -- runtime failure (a model that exists could not be loaded or run, every request failed)
* 4 -- a probe ended in ``error``, or could not be fed (no eligible unit), and the config does
  not mark it ``optional: true``; results.json is written before the exit

A skip that is a property of the setup (the model cannot serve the probe; a catalog-free audit)
is not a failure (:class:`recaudit.results.SkipKind`). When several codes apply, ``audit`` exits
with the first of 2, 3, 4, 1.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_GATE_FAILED = 1
EXIT_USAGE = 2
EXIT_RUNTIME = 3
EXIT_PROBE_FAILED = 4
#: the budget ran out before every gate was decided (recaudit.adaptive)
EXIT_BUDGET = 5


def first_line(exc: BaseException) -> str:
    """``"TypeName: first line of the message"`` of an exception (just the type when empty)."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


class RecauditError(Exception):
    """Base class: a one-line, user-facing message and an exit code."""

    exit_code = EXIT_USAGE


class ConfigError(RecauditError):
    """The audit config (YAML or flags) is invalid; the message names the key path and file."""


class DataError(RecauditError):
    """A catalog, interactions file or results file is missing or malformed."""


class ModelSpecError(RecauditError):
    """A model spec is malformed, its path is missing, or it needs a permission not given."""


class EndpointError(RecauditError):
    """An OpenAI-compatible endpoint is unreachable or keeps failing after retries."""


class ModelRuntimeError(RecauditError):
    """A model that exists failed to load or to run."""

    exit_code = EXIT_RUNTIME


class OutputError(RecauditError):
    """The output directory cannot be created or written to."""


class GateSpecError(RecauditError):
    """A gate names a metric, attribute or bound that does not exist or has the wrong type."""


class ProbeCannotRun(Exception):
    """A probe cannot be fed (no eligible user, too few candidates, no catalog data).

    Raised by a probe's ``plan`` (through :mod:`recaudit.probes.sampling`); the audit records it
    as a probe-level status with ``reason`` and goes on: it is never an audit abort. Not a
    :class:`RecauditError` on purpose (those stop the audit).
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
