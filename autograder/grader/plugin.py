"""The grading half of the pytest plugin (`-p autograder.grader.plugin`; it loads the kit's,
autograder/kit/plugin.py, and is never shipped to students).

It adds what only grading has: the `reference` fixture, `isolate` markers applied, forbidden
calls watched (the manifest's `forbidden`), the likely mistake named from the catalogue's
wrong variants (diagnosis.py), and with `--sandbox` student code run in a worker process
(autograder/sandbox/): it implements the kit's hooks (kit/hookspecs.py) for the `student`
fixture and for the sandbox's failures.

In grading, no test runs past --max-timeout, and after --timeouts-per-problem timeouts in a
problem its other tests fail at once, unrun (README.md, "Time budget").
"""
from __future__ import annotations

import collections
import contextlib
import gc
import json
import os
import pathlib

import pytest

from ..kit import adapter, messages
from ..kit.adapter import GradingFailure
from ..kit.plugin import error_note, is_timeout, problems_of, submission_dir
from . import diagnosis

pytest_plugins = ["autograder.kit.plugin"]


def pytest_addoption(parser):
    group = parser.getgroup("autograder")
    group.addoption("--reference", default=os.environ.get("AUTOGRADER_REFERENCE"),
                    help="folder holding the reference solution (grader only) [env AUTOGRADER_REFERENCE]")
    group.addoption("--forbidden", default="{}",
                    help='JSON {problem: [dotted names]} of calls student code may not make in that problem\'s tests')
    group.addoption("--diagnoses", default=None,
                    help="JSON file of known wrong variants [{name, diagnosis, edits}] (grader runs, with --reference)")
    group.addoption("--warm-up", action="store_true",
                    help="before the first test, pay the one-time cost of the meta device (grader runs)")
    group.addoption("--sandbox", default=None,
                    help='run student code in a sandboxed worker process (grader runs): JSON '
                         '{"limits": {rlimit name: value}, "preload": [modules the zygote imports]} '
                         '(see autograder/sandbox/process.py)')
    group.addoption("--max-timeout", type=float, default=0,
                    help="the most seconds any test may run: longer @pytest.mark.timeout are cut to it (grader runs)")
    group.addoption("--timeouts-per-problem", type=int, default=0,
                    help="after this many timeouts in a problem, its other tests fail at once (0: no limit)")
    group.addoption("--timed-out", default="{}",
                    help="JSON {problem: timeouts} of earlier test processes of this run (the grader's restarts)")
    group.addoption("--files", default=None,
                    help="JSON {problem: submitted file}: run the tests grouped by the file they grade (grader runs)")


def pytest_configure(config):
    config._autograder_zygote = _zygote(config) if config.getoption("--sandbox") else None
    config._autograder_forbidden = json.loads(config.getoption("--forbidden"))
    config._autograder_timeouts = collections.Counter(json.loads(config.getoption("--timed-out")))


def _zygote(config):
    """The sandbox's zygote: the one sandbox/launch.py forked before this process began (it shares our
    imports), else a new process, started now so that it imports torch while this process collects."""
    from ..sandbox import process

    options = json.loads(config.getoption("--sandbox"))
    limits = dict(process.DEFAULT_LIMITS, **options.get("limits", {}))
    preload = [str(name) for name in options.get("preload", ())]
    launched, process.LAUNCHED = process.LAUNCHED, None
    if launched is not None:
        if (launched.source, launched.limits, launched.preload) == (submission_dir(config).resolve(), limits, preload):
            return launched
        launched.close()
    try:
        return process.Zygote(submission_dir(config), limits, preload)
    except process.SandboxUnavailable:
        return None  # RemoteSubmission tries again and reports why


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(session, config, items):
    _cap_timeouts(config, items)
    _group_by_file(config, items)


def _cap_timeouts(config, items) -> None:
    """In grading no test runs longer than --max-timeout, whatever its own marker says (the time budget)."""
    cap = config.getoption("--max-timeout")
    if not cap:
        return
    for item in items:
        marker = item.get_closest_marker("timeout")
        wanted = (marker.args[0] if marker is not None and marker.args
                  else marker.kwargs.get("timeout") if marker else None)
        if isinstance(wanted, (int, float)) and wanted > cap:
            item.add_marker(pytest.mark.timeout(cap), append=False)


def _group_by_file(config, items) -> None:
    """Run the tests grouped by the submitted file they grade (--files), public and hidden together,
    and each file after the sibling files it imports. The sandbox forks a fresh worker whenever a
    test needs a file that does not import all the worker has imported (client.py, `_isolate`): in
    the order of the test folders that is one per switch (attention, debugging, model, then again
    for the hidden ones); grouped, only the switches between unrelated files are left. Results are
    reported in the manifest's order whatever the order the tests ran in (grade/results.py)."""
    files = json.loads(config.getoption("--files") or "{}")
    if not files:
        return
    try:
        order = file_order(submission_dir(config), list(dict.fromkeys(files.values())))
    except Exception:  # noqa: BLE001 - the order only saves forks: the folders' order grades the same
        return
    rank = {name: i for i, name in enumerate(order)}

    def key(item) -> int:
        ranks = [rank[files[p]] for p in problems_of(item) if files.get(p) in rank]
        return min(ranks, default=len(rank))
    items.sort(key=key)  # stable: within a file, the folders' order


def file_order(folder: pathlib.Path, files: list[str]) -> list[str]:
    """`files` (e.g. "attention.py") in chains: each file that no other imports, in the given order,
    right after the files of `folder` it imports (read from their syntax trees). With debugging.py
    importing attention.py: model.py, attention.py, debugging.py; the sandbox then forks one fresh
    worker (for attention.py), not two."""
    siblings = {path.stem for path in folder.glob("*.py")}
    imports = {name: [f"{stem}.py" for stem in adapter.sibling_imports(folder / name, siblings)
                      if f"{stem}.py" in files] for name in files}
    imported = {dependency for name in files for dependency in imports[name]}
    order: list[str] = []

    def visit(name: str, path: tuple) -> None:
        if name in order or name in path:  # path: an import cycle
            return
        for dependency in imports[name]:
            visit(dependency, path + (name,))
        order.append(name)
    for name in [f for f in files if f not in imported] + files:  # then what import cycles left out
        visit(name, ())
    return order


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    """A test of a problem that has used up its timeouts fails at once, unrun (the time budget)."""
    limit = item.config.getoption("--timeouts-per-problem")
    counts = item.config._autograder_timeouts
    spent = [p for p in problems_of(item) if limit and counts[p] >= limit]
    if spent:
        adapter.reset_last_call()
        raise GradingFailure(messages.NOT_RUN_TIMEOUTS.format(count=counts[spent[0]], problem=spent[0]))


def _remote(config):
    """The sandboxed submission of a `--sandbox` run (started early: the worker imports torch
    while pytest collects), or None."""
    if not config.getoption("--sandbox"):
        return None
    remote = getattr(config, "_autograder_remote", None)
    if remote is None:
        from ..sandbox.client import RemoteSubmission

        options = json.loads(config.getoption("--sandbox"))
        remote = RemoteSubmission(submission_dir(config), options.get("limits"), zygote=config._autograder_zygote,
                                  stand_ins=_stand_ins(config), preload=options.get("preload", ()))
        config._autograder_remote = remote
    return remote


def pytest_autograder_submission(config):
    """With --sandbox, the `student` fixture is the sandboxed submission; in grading, a file that
    cannot be imported has the reference's names stand in for it in the other files' imports."""
    remote = _remote(config)
    if remote is not None:
        return remote
    stand_ins = _stand_ins(config)
    return adapter.Submission(submission_dir(config), stand_ins=stand_ins) if stand_ins is not None else None


def pytest_autograder_explain(exc, submission):
    from ..sandbox.client import RemoteError, WorkerCrash
    from ..sandbox.process import SandboxUnavailable

    if isinstance(exc, RemoteError):  # raised by student code in the sandboxed worker
        summary = (messages.RAISED.format(exc=exc.type_name) + ":\n" + (exc.student_traceback or exc.message)
                   + error_note(exc.message))
        return summary, diagnosis.diagnose_exception(exc) or ""
    if isinstance(exc, WorkerCrash):
        return messages.WORKER_CRASH.format(how=str(exc)), ""
    if isinstance(exc, SandboxUnavailable):
        return messages.SANDBOX_UNAVAILABLE.format(why=str(exc)), ""
    return None


def pytest_autograder_diagnose_exception(exc):
    return diagnosis.diagnose_exception(exc) if diagnosis.configured() else None


def pytest_autograder_diagnose(got, expected):
    return diagnosis.diagnose(got, expected) if diagnosis.configured() else None


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
            importer = marker.kwargs.get("imported_by")
            if importer is not None and not _imports(request.config, importer, module):
                continue  # the student's `importer` does not use `module`: nothing to replace, nothing to import
            given = {name: getattr(reference.module(module), name) for name in names}
            try:
                if importer is not None:  # imported first, so that its aliases of `names` exist to be replaced
                    _load(student, importer)
                stack.enter_context(student.substituted(module, given))
            except adapter.SubmissionError:  # the file cannot be imported: its users get a stand-in, and
                pass                         # the test itself fails where it uses the file
        yield


def _load(student, module: str) -> None:
    """Import the student's `module` (in the worker, under the sandbox)."""
    if isinstance(student, adapter.Submission):
        student.module(module)
    else:  # a RemoteSubmission (an adapter.Submission's attributes would be submitted files)
        student.sandbox.import_module(module)


def _imports(config, importer: str, module: str) -> bool:
    """Whether the submitted `importer`.py imports the submitted `module` (read from its source, never run)."""
    folder = submission_dir(config)
    return module in adapter.sibling_imports(folder / f"{importer}.py", {p.stem for p in folder.glob("*.py")})


@pytest.fixture(autouse=True)
def _forbidden_calls(request):
    """Fail a test whose student code calls something its problem forbids (see the manifest)."""
    table = request.config._autograder_forbidden
    names = {p: table[p] for p in problems_of(request.node) if table.get(p)}
    if not names:
        yield
        return
    from ..kit.torchkit import ForbiddenCalls

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
    submission = submission_dir(request.config)
    guard = ForbiddenCalls(names, lambda filename: adapter._in_dir(filename, submission))
    with guard:
        yield
    if guard.violations:  # also when the student's code caught the failure raised at the call
        raise GradingFailure(guard.violations[0])


@pytest.fixture(autouse=True)
def _fresh_worker(request):
    """Each test's worker starts with no recorded call (the kit's `_fresh_state` does the rest)."""
    remote = _remote(request.config)
    if remote is not None:
        remote.sandbox.reset()
    yield


def pytest_terminal_summary(terminalreporter, config):
    """For instructors (the grader's log): how many workers were forked, and how long a restart took."""
    zygote = getattr(config, "_autograder_remote", None) and config._autograder_remote.sandbox.zygote
    if zygote is None or not zygote.count:
        return
    from ..sandbox.process import cpu_seconds

    own, reaped = cpu_seconds(zygote.pid)
    remote = config._autograder_remote.sandbox
    current = cpu_seconds(remote.worker.pid)[0] if remote.worker is not None else 0.0
    restarts = sorted(zygote.restarts)
    line = (f"sandbox: {zygote.count} workers forked from the zygote; CPU seconds: zygote {own:.2f}, "
            f"workers {reaped + current:.2f}, this process {sum(os.times()[:2]):.2f}")
    if restarts:
        line += (f"; {len(restarts)} restarts (after a crash, a timeout, or for another file's tests): "
                 f"median {restarts[len(restarts) // 2]:.3f} s, max {restarts[-1]:.3f} s")
    terminalreporter.write_line(line)


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session):
    diagnoses, reference = session.config.getoption("--diagnoses"), session.config.getoption("--reference")
    if diagnoses and reference:
        import tempfile

        session.config._autograder_variants = tempfile.TemporaryDirectory(prefix="variants-")
        diagnosis.configure(diagnoses, reference, pathlib.Path(session.config._autograder_variants.name))
    _remote(session.config)  # its zygote, started in pytest_configure, imports meanwhile; the first test forks
    if session.config.getoption("--warm-up"):
        from ..kit.torchkit import warm_up

        warm_up()
    gc.freeze()  # what is imported by now lives to the end: later collections need not walk it


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
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:  # seen with `grade --verbose`
            reporter.write_line(remote.sandbox.traffic_report())


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Count each problem's timeouts (--timeouts-per-problem)."""
    outcome = yield
    report = outcome.get_result()
    if call.excinfo is not None and report.failed and is_timeout(call.excinfo.value):
        for problem in problems_of(item):
            item.config._autograder_timeouts[problem] += 1
