"""Tiny python: recommenders used by CLI tests."""


def constant(messages, k):
    return ["Heat", "Toy Story", "Matrix, The"][:k]


def marking(messages, k):
    """Leaves a marker file (path in RECAUDIT_TEST_MARKER) when called: proves a model call."""
    import os
    import pathlib

    pathlib.Path(os.environ["RECAUDIT_TEST_MARKER"]).write_text("called")
    return constant(messages, k)
