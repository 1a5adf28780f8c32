"""`python -m autograder grade NAME SUBMISSION -o results.json [--via-zip]`.

Plain `grade` takes the manifest's files out of the submission (intake: from `.py` files or
a notebook's tagged cells), runs the public and hidden tests on them in a child pytest
process, and writes results.json, whatever happens (written in a `finally`). `--via-zip`
builds the Gradescope zip, lays out a temporary root like /autograder (source/, submission/,
results/), runs the zip's own run_autograder there and copies its results.json out: what
Gradescope would do.
"""
from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
import zipfile

from .. import gradescope
from .. import manifest as manifest_module
from . import intake as intake_module
from . import results as results_module
from .runner import run_tests


def write_json(data: dict, path: str | pathlib.Path) -> None:
    path = pathlib.Path(path)
    if path.exists() and not path.is_file():  # /dev/stdout, /dev/null: write through, never replace
        path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


class GraderStopped(Exception):
    """SIGTERM: run_autograder's guard stops a grader about to pass the platform's time limit."""


def _stop_on_sigterm():
    """Turn SIGTERM into GraderStopped while grading (so the test process is killed and results are
    written); returns what puts the old handler back."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def stop(signum, frame):
        raise GraderStopped()
    previous = signal.signal(signal.SIGTERM, stop)
    return lambda: signal.signal(signal.SIGTERM, previous)


def _run_and_score(manifest, taken, tmp: pathlib.Path, *, python, sandbox, spawn, quiet) -> dict:
    """Run the tests on the files intake took (tmp/submission); results.json, with the written answers."""
    run = run_tests(manifest, tmp / "submission", tmp, python=python, sandbox=sandbox, spawn=spawn)
    for entry in [] if quiet else run.log:  # for instructors; Gradescope hides it from students
        print(entry, file=sys.stderr)
    if run.collected is None:
        results = gradescope.failed_run(manifest, "the tests could not be collected",
                                        results_module.intake_notes(taken))
    else:
        results = results_module.results_json(manifest, run, taken)
    results_module.add_written_answers(results, manifest, taken, graded=run.collected is not None)
    return results


def grade(assignment: str, submission: str | pathlib.Path, output: str | pathlib.Path | None = None, *,
          root: str | pathlib.Path = manifest_module.ROOT, python: str = sys.executable,
          quiet: bool = False, sandbox: bool = True, spawn=None) -> dict:
    """Grade one submission (folder, zip, notebook or file); write and return results.json.

    The child's own output (pytest's report, for instructors) goes to stderr unless `quiet`.
    Student code runs in a sandboxed worker unless `sandbox` is False (trusted code only).
    `spawn`: how the test process starts (runner.run_tests; `regrade --warm`).
    """
    start = time.monotonic()
    results = None
    manifest = None
    stopped = _stop_on_sigterm()
    try:
        manifest = manifest_module.load(assignment, root)
        with tempfile.TemporaryDirectory(prefix="grade-") as tmp:
            tmp = pathlib.Path(tmp)
            taken = intake_module.take(submission, manifest.submission_files, tmp / "submission")
            if taken.error:  # nothing could be taken (a notebook that cannot be read): score 0, and why
                results = gradescope.failed_run(manifest, taken.error, results_module.intake_notes(taken))
            else:
                results = _run_and_score(manifest, taken, tmp, python=python, sandbox=sandbox, spawn=spawn,
                                         quiet=quiet)
    except GraderStopped:
        if manifest is not None:
            results = gradescope.failed_run(manifest, "the grader was stopped at the time limit")
    except Exception:  # noqa: BLE001 - results.json must be written whatever went wrong
        traceback.print_exc()
        if manifest is not None:
            results = gradescope.failed_run(manifest, "the grader failed")
    finally:
        stopped()
        if results is None:
            results = {"score": 0, "output": "The autograder failed; please tell your instructor.",
                       "visibility": "visible", "stdout_visibility": "hidden", "tests": []}
        results["execution_time"] = round(time.monotonic() - start, 2)
        if output is not None:
            write_json(results, output)
    return results


def grade_via_zip(assignment: str, submission: str | pathlib.Path, output: str | pathlib.Path | None = None, *,
                  root: str | pathlib.Path = manifest_module.ROOT, python: str = sys.executable,
                  zip_path: str | pathlib.Path | None = None, quiet: bool = False) -> dict:
    """Grade through the Gradescope zip, as Gradescope would, in a temporary /autograder."""
    from ..build import build_autograder_zip

    manifest = manifest_module.load(assignment, root)
    submission = pathlib.Path(submission)
    with tempfile.TemporaryDirectory(prefix="autograder-root-") as ag_root:
        ag_root = pathlib.Path(ag_root)
        if zip_path is None:
            zip_path = build_autograder_zip(manifest, ag_root / "dist")
        with zipfile.ZipFile(zip_path) as archive:
            archive.extractall(ag_root / "source")
        if submission.is_dir():
            shutil.copytree(submission, ag_root / "submission", symlinks=True)
        else:
            (ag_root / "submission").mkdir()
            if submission.exists():
                shutil.copy2(submission, ag_root / "submission" / submission.name)
        (ag_root / "results").mkdir()
        env = dict(os.environ, AUTOGRADER_ROOT=str(ag_root), AUTOGRADER_PYTHON=python)
        sink = subprocess.DEVNULL if quiet else None
        subprocess.run(["bash", str(ag_root / "source" / "run_autograder")], cwd=ag_root, env=env,
                       stdin=subprocess.DEVNULL, stdout=sink, stderr=sink,
                       timeout=manifest.total_timeout_s + 120, check=False)
        results = json.loads((ag_root / "results" / "results.json").read_text(encoding="utf-8"))
    if output is not None:
        write_json(results, output)
    return results
