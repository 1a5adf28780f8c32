"""The pytest plugin behind every assignment's tests, as students run them (`-p autograder.kit.plugin`).

It provides the `student` fixture (the submission, see adapter.py), the `problem` marker that
ties a test to contract problems, student-facing failure messages (traceback cut to the
student's files, no grader internals), and, with `--report FILE`, one JSON line per event:

    {"event": "collected", "tests": [{"nodeid", "file", "name", "problems"}, ...]}
    {"event": "start", "nodeid"}
    {"event": "result", "nodeid", "outcome", "summary", "details", "stdout", "duration",
     "fraction", "note", "leaderboard", "timed_out"}

A test may earn part of its points and post to Gradescope's leaderboard through the
`score` fixture (`score.partial(0.5, "accuracy 0.87")`, `score.leaderboard("Accuracy", 0.87)`).

Lines are flushed as they happen, so a crash mid-run still leaves what came before.

Grading adds `autograder.grader.plugin` (never shipped to students). It plugs in through the
hooks in `hookspecs.py`: the `student` fixture's value (the sandboxed submission), and what a
failure the kit does not know means (the sandbox's errors, the likely mistake). The kit never
imports the grader.
"""
from __future__ import annotations

import json
import os
import pathlib
import traceback

import pytest

from . import adapter, fingerprints, hookspecs, messages
from .adapter import GradingFailure

STDOUT_LIMIT = 2000


def pytest_addhooks(pluginmanager):
    pluginmanager.add_hookspecs(hookspecs)


@pytest.hookimpl(trylast=True)
def pytest_autograder_diagnose(got, expected):
    """Without the grader's known wrong variants: the mistake whose fingerprint `got` has (fingerprints.py)."""
    return fingerprints.diagnose(got, expected)


@pytest.hookimpl(trylast=True)
def pytest_autograder_diagnose_exception(exc):
    type_name = getattr(exc, "type_name", type(exc).__name__)  # a RemoteError names the worker's exception
    if type_name == "NotImplementedError":
        return None
    return fingerprints.diagnose_exception(type_name, str(exc))


def pytest_addoption(parser):
    group = parser.getgroup("autograder")
    group.addoption("--submission", default=os.environ.get("AUTOGRADER_SUBMISSION"),
                    help="folder holding the student's files [env AUTOGRADER_SUBMISSION, else the rootdir]")
    group.addoption("--report", default=None, help="write grading events as JSON lines to this file")
    group.addoption("--only", default=None, help="file listing the node ids to run, one per line")
    group.addoption("--budgets", default=None,
                    help="training budgets per device, JSON {name: {device: figure}} (the manifest's [budgets])")
    group.addoption("--given", default=None,
                    help="the handout's own functions and classes in the submitted files, JSON {module: [names]}: "
                         "failure messages never name a call of one as a call into the student's code")
    group.addoption("--grader-internals", action="store_true",
                    help="show pytest's full tracebacks instead of the student's view")


def pytest_configure(config):
    config.addinivalue_line("markers", "problem(*names): the contract problem(s) this test grades")
    config.addinivalue_line("markers", "isolate(module, *names): during this test the student's module uses the "
                                       "reference's names (grader runs only), so their bugs are charged elsewhere; "
                                       "imported_by=file: only if the student's file imports module, and in it too")
    config._autograder_report = None
    if config.getoption("--budgets"):
        from . import devices  # imports torch: only where budgets are given

        devices.set_budgets(json.loads(config.getoption("--budgets")))
    if config.getoption("--given"):
        adapter.set_given(json.loads(config.getoption("--given")))
    if not config.getoption("--grader-internals") and config.option.tbstyle == "auto":
        # the student's view replaces pytest's traceback; building pytest's own costs ~70 ms a failure
        config.option.tbstyle = "native"
    path = config.getoption("--report")
    if path:
        config._autograder_report = open(path, "a", encoding="utf-8")


def pytest_unconfigure(config):
    if getattr(config, "_autograder_report", None):
        config._autograder_report.close()


def _emit(config, **event) -> None:
    stream = getattr(config, "_autograder_report", None)
    if stream is not None:
        stream.write(json.dumps(event) + "\n")
        stream.flush()


def problems_of(item) -> list[str]:
    names = []
    for mark in item.iter_markers("problem"):
        names.extend(mark.args)
    return sorted(set(names))


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(session, config, items):
    unmarked = [item.nodeid for item in items if not problems_of(item)]
    if unmarked:
        raise pytest.UsageError("tests without @pytest.mark.problem(...): " + ", ".join(unmarked))
    only = config.getoption("--only")
    if only:
        wanted = set(pathlib.Path(only).read_text(encoding="utf-8").split("\n"))
        items[:] = [item for item in items if item.nodeid in wanted]
    rootdir = pathlib.Path(str(config.rootpath))
    _emit(config, event="collected", tests=[
        {"nodeid": item.nodeid, "file": _relative(item.path, rootdir), "name": item.name,
         "doc": _doc(item), "problems": problems_of(item), "params": _params(item)}
        for item in items])


def _relative(path, rootdir: pathlib.Path) -> str:
    try:
        return pathlib.Path(path).resolve().relative_to(rootdir.resolve()).as_posix()
    except ValueError:
        return pathlib.Path(path).as_posix()


def _params(item) -> dict[str, str]:
    """A parametrized test's parameters, readable (for its name on Gradescope): {argname: text}."""
    callspec = getattr(item, "callspec", None)
    if callspec is None:
        return {}
    try:
        return {name: adapter.describe_param(value) for name, value in callspec.params.items()}
    except Exception:  # noqa: BLE001 - a name must never break collection
        return {}


def _doc(item) -> str:
    doc = getattr(getattr(item, "function", None), "__doc__", None) or ""
    return doc.strip().split("\n")[0]


def submission_dir(config) -> pathlib.Path:
    return pathlib.Path(config.getoption("--submission") or str(config.rootpath)).resolve()


@pytest.fixture(scope="session")
def student(request):
    """The student's submission: `student.attention.self_attention(...)`."""
    config = request.config
    return config.hook.pytest_autograder_submission(config=config) or adapter.Submission(submission_dir(config))


class Score:
    """What a passing test earns, set by the test itself (grader code, never student code).

    `partial(fraction, note)`: the test earns `fraction` (0 to 1) of its points, and `note`
    is shown with it. `leaderboard(name, value, order)`: an entry of Gradescope's leaderboard
    (`order` "desc": higher is better, or "asc"). A failing test earns 0 whatever was set.
    """

    def __init__(self):
        self.fraction, self.note, self.entries = 1.0, "", []

    def partial(self, fraction: float, note: str = "") -> None:
        self.fraction = min(1.0, max(0.0, float(fraction)))
        self.note = note

    def leaderboard(self, name: str, value: float, order: str = "desc") -> None:
        if order not in ("asc", "desc"):
            raise ValueError("order is 'asc' or 'desc'")
        self.entries.append({"name": str(name), "value": float(value), "order": order})


@pytest.fixture
def score(request) -> Score:
    """Partial credit and leaderboard entries for this test (see `Score`)."""
    given = Score()
    _CONFIG.setdefault("scores", {})[request.node.nodeid] = given
    return given


@pytest.fixture(autouse=True)
def _fresh_state(request):
    """Each test starts from the same random state and with no recorded call."""
    import torch

    adapter.reset_last_call()
    # torch.manual_seed(0) would also queue a CUDA seeding, recording a stack trace (~4 ms a test)
    torch.random.default_generator.manual_seed(0)
    if torch.cuda.is_initialized():
        torch.cuda.manual_seed_all(0)
    yield


def pytest_runtest_logstart(nodeid, location):
    config = _CONFIG.get("config")
    if config is not None:
        _emit(config, event="start", nodeid=nodeid)


_CONFIG: dict = {}


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session):
    _CONFIG["config"] = session.config


def current_config():
    """The running session's config, or None outside a pytest session (for code that gets none)."""
    return _CONFIG.get("config")


def error_note(message: str) -> str:
    """What to add under a student's exception whose own message does not say what the test wanted:
    torch's "cannot be called on meta tensors" says nothing of why the test used the meta device."""
    return "\n" + messages.META_VALUE if "meta tensor" in message else ""


def student_message(excinfo, submission: pathlib.Path, timeout: float = 0, hook=None) -> tuple[str, str, str]:
    """(summary, details, diagnosis) for a failure: what any student may read, what only public
    tests show, and the likely mistake (shown as the manifest says). `hook` is the session's
    `config.hook`: the grader explains the failures the kit does not know (the sandbox's)."""
    exc = excinfo.value
    details = diagnosis = ""
    explained = hook.pytest_autograder_explain(exc=exc, submission=submission) if hook is not None else None
    if explained is not None:
        summary, diagnosis = explained
    elif isinstance(exc, GradingFailure):
        summary, details, diagnosis = exc.summary, exc.details, exc.diagnosis
        cause = exc.__cause__ or exc.__context__
        if cause is not None and adapter._is_student_exception(cause, submission):
            summary += "\n" + adapter.format_student_traceback(cause, submission)
    elif isinstance(exc, adapter.SubmissionError):
        summary = str(exc)
    elif excinfo.typename == "Failed" and str(exc).startswith("Timeout"):  # from pytest-timeout
        summary = messages.TIMEOUT.format(seconds=timeout)
    elif adapter._is_student_exception(exc, submission):
        summary = (messages.RAISED.format(exc=type(exc).__name__) + ":\n"
                   + adapter.format_student_traceback(exc, submission) + error_note(str(exc)))
        if isinstance(exc, Exception) and hook is not None:
            diagnosis = hook.pytest_autograder_diagnose_exception(exc=exc) or ""
    else:
        summary = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    call = adapter.last_call_shown()
    if call and not isinstance(exc, adapter.SubmissionError):
        summary += "\n" + messages.LAST_CALL.format(call=call)
    return summary, details, diagnosis


def timeout_of(item) -> float:
    """The time limit of `item` (its own marker, else --timeout)."""
    marker = item.get_closest_marker("timeout")
    if marker is not None and marker.args and isinstance(marker.args[0], (int, float)):
        return float(marker.args[0])
    return float(item.config.getoption("timeout", 0) or 0)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    report.student_summary = report.student_details = report.student_diagnosis = ""
    report.timed_out = call.excinfo is not None and report.failed and is_timeout(call.excinfo.value)
    if call.excinfo is not None and report.failed:
        try:
            summary, details, diagnosis = student_message(call.excinfo, submission_dir(item.config), timeout_of(item),
                                                          item.config.hook)
        except Exception as exc:  # noqa: BLE001 - a message must never break the run
            summary = f"{call.excinfo.typename}: the grader could not describe this failure ({exc!r})."
            details = diagnosis = ""
        report.student_summary, report.student_details, report.student_diagnosis = summary, details, diagnosis
        if not item.config.getoption("--grader-internals"):
            named = diagnosis and messages.DIAGNOSIS.format(diagnosis=diagnosis)
            report.longrepr = "\n".join(filter(None, [summary, details, named]))
    elif report.skipped and call.excinfo is not None:
        reason = str(call.excinfo.value)
        report.student_summary = messages.SKIPPED.format(reason=reason)


def is_timeout(exc: BaseException) -> bool:
    """Did the test run out of time (pytest-timeout's failure, or an import that did)?"""
    return adapter.timeout_seconds(exc) is not None or bool(getattr(exc, "timed_out", False))


def pytest_runtest_logreport(report):
    config = _CONFIG.get("config")
    if config is None:
        return
    state = _CONFIG.setdefault("outcomes", {})
    entry = state.setdefault(report.nodeid, {"outcome": "passed", "summary": "", "details": "", "diagnosis": "",
                                             "duration": 0.0, "timed_out": False})
    entry["duration"] += report.duration
    entry["timed_out"] = entry["timed_out"] or bool(getattr(report, "timed_out", False))
    if report.outcome != "passed" and entry["outcome"] == "passed":
        entry.update(outcome=report.outcome, summary=report.student_summary, details=report.student_details,
                     diagnosis=getattr(report, "student_diagnosis", ""))
    if report.when == "teardown":
        stdout = (report.capstdout or "")
        if len(stdout) > STDOUT_LIMIT:
            stdout = stdout[:STDOUT_LIMIT] + messages.OUTPUT_CUT.format(count=len(stdout) - STDOUT_LIMIT)
        given = _CONFIG.setdefault("scores", {}).pop(report.nodeid, None) or Score()
        _emit(config, event="result", nodeid=report.nodeid, stdout=stdout, fraction=given.fraction,
              note=given.note, leaderboard=given.entries, **state.pop(report.nodeid))
