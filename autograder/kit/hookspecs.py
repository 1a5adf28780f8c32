"""The hooks through which grading plugs into the kit's plugin (plugin.py); the grader's plugin
(autograder/grader/plugin.py) implements them. Students' runs implement none: then the
`student` fixture imports their files in the test process, and failures are explained by
the kit alone."""
import pytest

hookspec = pytest.hookspec


@hookspec(firstresult=True)
def pytest_autograder_submission(config):
    """The `student` fixture's value (an adapter.Submission, or what stands for one), or None
    for the default: the files in --submission, imported in this process."""


@hookspec(firstresult=True)
def pytest_autograder_explain(exc, submission):
    """(summary, diagnosis) for a failure that only the implementer knows how to explain (an
    error raised in the sandboxed worker, a worker that crashed), or None."""


@hookspec(firstresult=True)
def pytest_autograder_diagnose_exception(exc):
    """The likely mistake behind an exception raised by student code, or None."""


@hookspec(firstresult=True)
def pytest_autograder_diagnose(got, expected):
    """The likely mistake behind a wrong result `got` (where `expected` was right), or None."""
