"""The pytest plugin behind every assignment's tests (`-p autograder.testing.plugin`).

It provides the `student` fixture (the submission, see adapter.py) and the `reference`
fixture (grader only), the `problem` marker that ties a test to contract problems,
student-facing failure messages (traceback cut to the student's files, no grader
internals), and, with `--report FILE`, one JSON line per event for the grader:

    {"event": "collected", "tests": [{"nodeid", "file", "name", "problems"}, ...]}
    {"event": "start", "nodeid"}
    {"event": "result", "nodeid", "outcome", "summary", "details", "stdout", "duration",
     "fraction", "note", "leaderboard", "timed_out"}

In grading, no test runs past --max-timeout, and after --timeouts-per-problem timeouts in a
problem its other tests fail at once, unrun (README.md, "Time budget").

A test may earn part of its points and post to Gradescope's leaderboard through the
`score` fixture (`score.partial(0.5, "accuracy 0.87")`, `score.leaderboard("Accuracy", 0.87)`).

Lines are flushed as they happen, so a crash mid-run still leaves what came before.
"""
from __future__ import annotations

import collections
import contextlib
import json
import os
import pathlib
import traceback

import pytest

from . import adapter, messages
from .adapter import GradingFailure

STDOUT_LIMIT = 2000


def pytest_addoption(parser):
    group = parser.getgroup("autograder")
    group.addoption("--submission", default=os.environ.get("AUTOGRADER_SUBMISSION"),
                    help="folder holding the student's files [env AUTOGRADER_SUBMISSION, else the rootdir]")
    group.addoption("--reference", default=os.environ.get("AUTOGRADER_REFERENCE"),
                    help="folder holding the reference solution (grader only) [env AUTOGRADER_REFERENCE]")
    group.addoption("--report", default=None, help="write grading events as JSON lines to this file")
    group.addoption("--only", default=None, help="file listing the node ids to run, one per line")
    group.addoption("--forbidden", default="{}",
                    help='JSON {problem: [dotted names]} of calls student code may not make in that problem\'s tests')
    group.addoption("--diagnoses", default=None,
                    help="JSON file of known wrong variants [{name, diagnosis, edits}] (grader runs, with --reference)")
    group.addoption("--warm-up", action="store_true",
                    help="before the first test, pay the one-time cost of the meta device (grader runs)")
    group.addoption("--sandbox", default=None,
                    help='run student code in a sandboxed worker process (grader runs): JSON '
                         '{"limits": {rlimit name: value}} (see testing/jail.py)')
    group.addoption("--grader-internals", action="store_true",
                    help="show pytest's full tracebacks instead of the student's view")
    group.addoption("--max-timeout", type=float, default=0,
                    help="the most seconds any test may run: longer @pytest.mark.timeout are cut to it (grader runs)")
    group.addoption("--timeouts-per-problem", type=int, default=0,
                    help="after this many timeouts in a problem, its other tests fail at once (0: no limit)")
    group.addoption("--timed-out", default="{}",
                    help="JSON {problem: timeouts} of earlier test processes of this run (the grader's restarts)")


def pytest_configure(config):
    config.addinivalue_line("markers", "problem(*names): the contract problem(s) this test grades")
    config.addinivalue_line("markers", "isolate(module, *names): during this test the student's module uses the "
                                       "reference's names (grader runs only), so their bugs are charged elsewhere")
    config._autograder_report = None
    config._autograder_worker = None
    if config.getoption("--sandbox"):  # start it now: it imports torch while this process does too
        from .jail import DEFAULT_LIMITS, SandboxUnavailable, Worker

        limits = dict(DEFAULT_LIMITS, **json.loads(config.getoption("--sandbox")).get("limits", {}))
        try:
            config._autograder_worker = Worker(_submission_dir(config), limits)
        except SandboxUnavailable:
            pass  # RemoteSubmission tries again and reports why
    config._autograder_forbidden = json.loads(config.getoption("--forbidden"))
    config._autograder_timeouts = collections.Counter(json.loads(config.getoption("--timed-out")))
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
    _cap_timeouts(config, items)
    only = config.getoption("--only")
    if only:
        wanted = set(pathlib.Path(only).read_text(encoding="utf-8").split("\n"))
        items[:] = [item for item in items if item.nodeid in wanted]
    rootdir = pathlib.Path(str(config.rootpath))
    _emit(config, event="collected", tests=[
        {"nodeid": item.nodeid, "file": _relative(item.path, rootdir), "name": item.name,
         "doc": _doc(item), "problems": problems_of(item), "params": _params(item)}
        for item in items])


def _cap_timeouts(config, items) -> None:
    """In grading no test runs longer than --max-timeout, whatever its own marker says (the time budget)."""
    cap = config.getoption("--max-timeout")
    if not cap:
        return
    for item in items:
        marker = item.get_closest_marker("timeout")
        wanted = marker.args[0] if marker is not None and marker.args else marker.kwargs.get("timeout") if marker else None
        if isinstance(wanted, (int, float)) and wanted > cap:
            item.add_marker(pytest.mark.timeout(cap), append=False)


def _timeout_of(item) -> float:
    """The time limit of `item` (its own marker, else --timeout)."""
    marker = item.get_closest_marker("timeout")
    if marker is not None and marker.args and isinstance(marker.args[0], (int, float)):
        return float(marker.args[0])
    return float(item.config.getoption("timeout", 0) or 0)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    """A test of a problem that has used up its timeouts fails at once, unrun (the time budget)."""
    limit = item.config.getoption("--timeouts-per-problem")
    counts = item.config._autograder_timeouts
    spent = [p for p in problems_of(item) if limit and counts[p] >= limit]
    if spent:
        adapter.reset_last_call()
        raise GradingFailure(messages.NOT_RUN_TIMEOUTS.format(count=counts[spent[0]], problem=spent[0]))


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


def _submission_dir(config) -> pathlib.Path:
    return pathlib.Path(config.getoption("--submission") or str(config.rootpath)).resolve()


def _remote(config):
    """The sandboxed submission of a `--sandbox` run (started early: the worker imports torch
    while pytest collects), or None."""
    if not config.getoption("--sandbox"):
        return None
    remote = getattr(config, "_autograder_remote", None)
    if remote is None:
        from .sandbox import RemoteSubmission

        options = json.loads(config.getoption("--sandbox"))
        remote = RemoteSubmission(_submission_dir(config), options.get("limits"), worker=config._autograder_worker,
                                  stand_ins=_stand_ins(config))
        config._autograder_remote = remote
    return remote


@pytest.fixture(scope="session")
def student(request):
    """The student's submission: `student.attention.self_attention(...)`."""
    return _remote(request.config) or adapter.Submission(_submission_dir(request.config),
                                                         stand_ins=_stand_ins(request.config))


def _stand_ins(config):
    """In grading (the reference at hand): for a module name, the reference's functions and classes
    that stand in for a student file that cannot be imported, in the other files' imports. None elsewhere."""
    path = config.getoption("--reference")
    if not path:
        return None
    reference = adapter.Submission(path, record_calls=None)

    def names(module: str) -> dict | None:
        try:
            return adapter.public_names(reference.module(module))
        except adapter.SubmissionError:
            return None
    return names


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


@pytest.fixture(scope="session")
def reference(request) -> adapter.Submission:
    """The reference solution, for hidden tests run by the grader."""
    path = request.config.getoption("--reference")
    if not path:
        pytest.fail(messages.REFERENCE_UNAVAILABLE, pytrace=False)
    return adapter.Submission(path, record_calls=False)


@pytest.fixture(autouse=True)
def _isolated(request):
    """Apply the test's `isolate` markers when the reference is at hand (hidden tests, grader)."""
    markers = list(request.node.iter_markers("isolate"))
    if not markers or not request.config.getoption("--reference"):
        yield
        return
    student, reference = request.getfixturevalue("student"), request.getfixturevalue("reference")
    with contextlib.ExitStack() as stack:
        for marker in markers:
            module, *names = marker.args
            given = {name: getattr(reference.module(module), name) for name in names}
            try:
                stack.enter_context(student.substituted(module, given))
            except adapter.SubmissionError:  # the file cannot be imported: its users get a stand-in, and
                pass                         # the test itself fails where it uses the file
        yield


@pytest.fixture(autouse=True)
def _forbidden_calls(request):
    """Fail a test whose student code calls something its problem forbids (see the manifest)."""
    table = request.config._autograder_forbidden
    names = {p: table[p] for p in problems_of(request.node) if table.get(p)}
    if not names:
        yield
        return
    from .torchkit import ForbiddenCalls

    remote = _remote(request.config)
    if remote is not None:  # the worker watches the calls; it reports them with each answer
        remote.sandbox.forbidden = names
        try:
            yield
        finally:
            remote.sandbox.forbidden = {}
        if remote.sandbox.violations:
            raise GradingFailure(remote.sandbox.violations[0])
        return
    submission = _submission_dir(request.config)
    guard = ForbiddenCalls(names, lambda filename: adapter._in_dir(filename, submission))
    with guard:
        yield
    if guard.violations:  # also when the student's code caught the failure raised at the call
        raise GradingFailure(guard.violations[0])


@pytest.fixture(autouse=True)
def _fresh_state(request):
    """Each test starts from the same random state and with no recorded call."""
    import torch

    adapter.reset_last_call()
    remote = _remote(request.config)
    if remote is not None:
        remote.sandbox.reset()
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
    diagnoses, reference = session.config.getoption("--diagnoses"), session.config.getoption("--reference")
    if diagnoses and reference:
        import tempfile

        from . import diagnosis

        session.config._autograder_variants = tempfile.TemporaryDirectory(prefix="variants-")
        diagnosis.configure(diagnoses, reference, pathlib.Path(session.config._autograder_variants.name))
    remote = _remote(session.config)
    if remote is not None:
        remote.sandbox.start()
    if session.config.getoption("--warm-up"):
        from .torchkit import warm_up

        warm_up()


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_protocol(item, nextitem):
    """A worker (re)started after a crash is ready before the test's clock starts: outside
    pytest-timeout's limit (this wrapper runs first) and before the grader's watchdog sees
    the test start."""
    remote = _remote(item.config)
    if remote is not None:
        try:
            remote.sandbox.ready()
        except Exception:  # noqa: BLE001 - the test itself will fail with the reason
            pass
    yield


def pytest_sessionfinish(session):
    remote = getattr(session.config, "_autograder_remote", None)
    if remote is not None:
        remote.sandbox.stop()


def student_message(excinfo, submission: pathlib.Path, timeout: float = 0) -> tuple[str, str, str]:
    """(summary, details, diagnosis) for a failure: what any student may read, what only public
    tests show, and the likely mistake (shown as the manifest says)."""
    exc = excinfo.value
    details = diagnosis = ""
    if isinstance(exc, GradingFailure):
        summary, details, diagnosis = exc.summary, exc.details, exc.diagnosis
        cause = exc.__cause__ or exc.__context__
        if cause is not None and adapter._is_student_exception(cause, submission):
            summary += "\n" + adapter.format_student_traceback(cause, submission)
    elif isinstance(exc, adapter.SubmissionError):
        summary = str(exc)
    elif hasattr(exc, "student_traceback"):  # a RemoteError: raised by student code in the sandboxed worker
        summary = messages.RAISED.format(exc=exc.type_name) + ":\n" + (exc.student_traceback or exc.message)
        from .diagnosis import diagnose_exception

        diagnosis = diagnose_exception(exc) or ""
    elif type(exc).__name__ == "WorkerCrash":
        summary = messages.WORKER_CRASH.format(how=str(exc))
    elif type(exc).__name__ == "SandboxUnavailable":
        summary = messages.SANDBOX_UNAVAILABLE.format(why=str(exc))
    elif excinfo.typename == "Failed" and str(exc).startswith("Timeout"):  # from pytest-timeout
        summary = messages.TIMEOUT.format(seconds=timeout)
    elif adapter._is_student_exception(exc, submission):
        summary = messages.RAISED.format(exc=type(exc).__name__) + ":\n" + adapter.format_student_traceback(exc, submission)
        if isinstance(exc, Exception):
            from .diagnosis import diagnose_exception

            diagnosis = diagnose_exception(exc) or ""
    else:
        summary = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    call = adapter.last_call_shown()
    if call and not isinstance(exc, adapter.SubmissionError):
        summary += "\n" + messages.LAST_CALL.format(call=call)
    return summary, details, diagnosis


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    report.student_summary = report.student_details = report.student_diagnosis = ""
    report.timed_out = False
    if call.excinfo is not None and report.failed and _is_timeout(call.excinfo.value):
        report.timed_out = True
        for problem in problems_of(item):
            item.config._autograder_timeouts[problem] += 1
    if call.excinfo is not None and report.failed:
        try:
            timeout = _timeout_of(item)
            summary, details, diagnosis = student_message(call.excinfo, _submission_dir(item.config), timeout)
        except Exception as exc:  # noqa: BLE001 - a message must never break the run
            summary, details, diagnosis = f"{call.excinfo.typename}: the grader could not describe this failure ({exc!r}).", "", ""
        report.student_summary, report.student_details, report.student_diagnosis = summary, details, diagnosis
        if not item.config.getoption("--grader-internals"):
            report.longrepr = "\n".join(filter(None, [summary, details, diagnosis and messages.DIAGNOSIS.format(diagnosis=diagnosis)]))
    elif report.skipped and call.excinfo is not None:
        reason = str(call.excinfo.value)
        report.student_summary = messages.SKIPPED.format(reason=reason)


def _is_timeout(exc: BaseException) -> bool:
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
