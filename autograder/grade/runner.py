"""Run an assignment's tests on one submission in a child pytest process, surviving its crashes.

The child writes grading events (see autograder/kit/plugin.py) to a file as it goes.
The grader watches it: a test that runs past its limit is killed by a watchdog (beyond
pytest-timeout's own signal), a child that dies mid-test (segfault, os._exit, ...) costs
that test only, and a new child runs the tests that are left.

The time budget (README.md, "Time budget"): no test runs past the manifest's test_timeout_s;
a problem may cost `timeouts_per_problem` timeouts, then its other tests fail at once (the
child counts them; the counts go on to a restarted child); the whole run stops at
total_timeout_s, which leaves a margin under the platform's limit.
"""
from __future__ import annotations

import collections
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

from ..catalogue import load as load_catalogue
from ..kit import messages
from ..manifest import Manifest
from ..sandbox import launch
from ..sandbox.process import describe_exit as _describe_exit
from .. import starter
from .events import Outcome, Run, outcome_of, read_events

MAX_RESTARTS = 5          # child processes started after a crash, at most
POLL_S = 0.02


def child_env(manifest: Manifest, submission: pathlib.Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "PYTEST", "AUTOGRADER"))}
    env.update(
        PYTHONPATH=str(manifest.root),
        PYTHONDONTWRITEBYTECODE="1",
        PYTHONHASHSEED="0",
        PYTEST_DISABLE_PLUGIN_AUTOLOAD="1",  # only the plugins named on the command line (see pytest_command)
        AUTOGRADER_SUBMISSION=str(submission),
        AUTOGRADER_REFERENCE=str(manifest.path(manifest.reference)),
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        MALLOC_ARENA_MAX="2",
    )
    return env


def write_diagnoses(manifest: Manifest, workdir: pathlib.Path) -> pathlib.Path | None:
    """The known wrong variants that name a mistake, for the plugin (see grader/diagnosis.py)."""
    variants = [{"name": m.name, "diagnosis": m.diagnosis, "problems": list(m.problems),
                 "edits": [{"file": e.file, "find": e.find, "replace": e.replace} for e in m.edits]}
                for m in load_catalogue(manifest)[0] if m.diagnosis]
    if not variants:
        return None
    path = workdir / "diagnoses.json"
    path.write_text(json.dumps(variants), encoding="utf-8")
    return path


def pytest_command(manifest: Manifest, python: str, report: pathlib.Path, only: pathlib.Path | None,
                   diagnoses: pathlib.Path | None = None, sandbox: bool = True,
                   timed_out: dict[str, int] | None = None, paths: list[str] | None = None) -> list[str]:
    """The child's command line; with `sandbox`, student code runs in a worker (autograder/sandbox/).
    `timed_out`: the timeouts each problem already cost in this run (earlier children).
    `paths`: the test files to run (default: every test folder of the manifest).

    Plugins: only those named here load (child_env turns off setuptools autoloading, so a plugin
    installed in the grader's image cannot change grading); pytest's unraisableexception plugin is
    off, as its end-of-run garbage collections cost about 0.3 s and student code runs elsewhere."""
    if paths is None:
        paths = [str(manifest.path(t.path)) for t in manifest.tests]
    command = [python, "-m", "pytest", *paths,
               "-p", "pytest_timeout", "-p", "autograder.kit.plugin", "-p", "autograder.grader.plugin",
               "-p", "no:cacheprovider", "-p", "no:logging", "-p", "no:unraisableexception",
               "-c", os.devnull, "--rootdir", str(manifest.root), "--confcutdir", str(manifest.root),
               "-q", "--no-header", "-rN",
               "--timeout", f"{manifest.test_timeout_s:g}", "--timeout-method", "signal",
               "--max-timeout", f"{manifest.test_timeout_s:g}",
               "--timeouts-per-problem", str(manifest.timeouts_per_problem), "--timed-out", json.dumps(timed_out or {}),
               "--report", str(report), "--warm-up", "--forbidden", json.dumps(manifest.forbidden),
               "--given", json.dumps(starter.given_names(manifest)),
               "--files", json.dumps({name: problem.file for name, problem in manifest.problems.items()})]
    if manifest.budgets:
        command += ["--budgets", json.dumps(manifest.budgets)]
    if only is not None:
        command += ["--only", str(only)]
    if diagnoses is not None:
        command += ["--diagnoses", str(diagnoses)]
    if sandbox:
        command += ["--sandbox", json.dumps(sandbox_options(manifest))]
    return command


def sandbox_options(manifest: Manifest) -> dict:
    """The --sandbox option: the worker's limits, and what its zygote imports once."""
    return {"limits": {"cpu": int(manifest.total_timeout_s) + 30}, "preload": list(manifest.preload)}


def _kill(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    process.wait()


def run_tests(manifest: Manifest, submission: pathlib.Path, workdir: pathlib.Path,
              python: str = sys.executable, sandbox: bool = True, spawn=None) -> Run:
    """Run every test folder of `manifest` on the files in `submission`.

    `spawn(command, bare_env, cwd, log_path)`, if given, starts a sandboxed run's test process
    instead of subprocess.Popen (`regrade --warm`: forked from a process that imported torch
    once, regrade/warm.py), returning a handle with `pid`, `poll()`, `wait()` and `returncode`,
    or None to start it as usual."""
    run = Run()
    deadline = time.monotonic() + manifest.total_timeout_s
    only: pathlib.Path | None = None
    diagnoses = write_diagnoses(manifest, workdir)
    timeouts: collections.Counter = collections.Counter()  # per problem, over every child of the run
    for attempt in range(MAX_RESTARTS + 1):
        report = workdir / f"events-{attempt}.jsonl"
        log = open(workdir / f"child-{attempt}.log", "wb")
        command = pytest_command(manifest, python, report, only, diagnoses, sandbox, dict(timeouts))
        env = child_env(manifest, submission)
        if sandbox:  # the zygote shares the test process's imports, forked before it reads anything of ours
            command, env = launch.command(python, command, env, submission, sandbox_options(manifest),
                                          workdir / f"child-{attempt}.json")
        else:  # the same pytest, ended as launch.end ends it
            command = [python, "-m", "autograder.sandbox.launch", *command[3:]]
        process = spawn(command, env, workdir, workdir / f"child-{attempt}.log") if sandbox and spawn else None
        if process is None:
            process = subprocess.Popen(command, cwd=workdir,
                                       env=env, stdout=log, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, start_new_session=True)
        offset, current, started = 0, None, 0.0
        stop_reason, progressed = None, False
        try:  # stopped from outside (run_autograder's guard: SIGTERM), the child goes too
            while True:
                events, offset = read_events(report, offset)
                for event in events:
                    if event["event"] == "collected" and run.collected is None:
                        run.collected = event["tests"]
                    elif event["event"] == "start":
                        current, started, progressed = event["nodeid"], time.monotonic(), True
                    elif event["event"] == "result":
                        run.outcomes[event["nodeid"]] = outcome_of(event)
                        current = None
                        if event.get("timed_out"):
                            timeouts.update(_problems(run, event["nodeid"]))
                if process.poll() is not None:
                    break
                now = time.monotonic()
                if now > deadline:
                    stop_reason = "total"
                elif current is not None and now - started > manifest.test_timeout_s + manifest.watchdog_grace_s:
                    stop_reason = "test"
                if stop_reason:
                    _kill(process)
                    events, offset = read_events(report, offset)  # nothing new can matter now
                    break
                time.sleep(POLL_S)
        except BaseException:
            _kill(process)
            _kill_worker_leftovers(process.pid)
            raise
        log.close()
        _kill_worker_leftovers(process.pid)
        run.log.append(f"child {attempt}: exit {process.returncode}, stop {stop_reason}\n"
                       + (workdir / f"child-{attempt}.log").read_text(errors="replace")[-4000:])
        if run.collected is None:
            return run  # the tests could not even be collected: a grader problem, reported as such
        if current is not None and current not in run.outcomes:
            if stop_reason == "total":
                summary = messages.NOT_RUN_TOTAL_TIMEOUT.format(seconds=manifest.total_timeout_s)
            elif stop_reason == "test":
                summary = messages.TIMEOUT.format(seconds=manifest.test_timeout_s)
                timeouts.update(_problems(run, current))
            else:
                summary = messages.CRASH.format(how=_describe_exit(process.returncode))
            run.outcomes[current] = Outcome(current, False, summary)
        remaining = [t["nodeid"] for t in run.collected if t["nodeid"] not in run.outcomes]
        if not remaining:
            return run
        if stop_reason == "total":
            break
        if not progressed:  # the child ran no test at all: restarting it would not help
            for nodeid in remaining:
                run.outcomes[nodeid] = Outcome(nodeid, False, messages.GRADER_ERROR)
            return run
        only = workdir / f"only-{attempt + 1}.txt"
        only.write_text("\n".join(remaining), encoding="utf-8")
    reason = (messages.NOT_RUN_TOTAL_TIMEOUT.format(seconds=manifest.total_timeout_s)
              if time.monotonic() > deadline else messages.NOT_RUN_CRASHES)
    for test in run.collected:
        run.outcomes.setdefault(test["nodeid"], Outcome(test["nodeid"], False, reason))
    return run


def _problems(run: Run, nodeid: str) -> list[str]:
    """The problems test `nodeid` grades (from the collected list)."""
    return next((list(t["problems"]) for t in run.collected or [] if t["nodeid"] == nodeid), [])


def _kill_worker_leftovers(test_pid: int) -> None:
    """Whatever the sandbox's user still runs (a `setsid` grandchild of the worker, say) is killed."""
    from ..sandbox.process import kill_leftovers

    kill_leftovers(test_pid)
