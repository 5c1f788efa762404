"""Errors a user can cause, each mapped to a documented exit code.

Exit codes (README, ``recaudit --help``):

* 0 -- success, every gate passed
* 1 -- a gate failed
* 2 -- usage or input error (config, catalog, model path, endpoint, results file)
* 3 -- runtime failure (a model that exists could not be loaded or run)
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_GATE_FAILED = 1
EXIT_USAGE = 2
EXIT_RUNTIME = 3


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
