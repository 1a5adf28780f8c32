"""Run an assignment's tests on many trusted submissions in ONE child process (for mutants).

Grading one submission costs a child process, most of it importing torch. Mutants are
made by us from the reference, so they need no crash isolation: one child runs pytest
once per submission and writes one event file each (same format as plain grading).

    python -m autograder.grade.batch NAME EVENTS_DIR PLAN.json
    (PLAN.json: {"records": a records file or null, "entries": [`Entry` as a JSON object, ...]})

An entry may record which functions each test runs (autograder/impact.py's CallRecorder; the
mutant checks record the reference's), and a later entry (or a later batch, given the records
file) may then run, beside its test files, only the tests that ran some functions
(`functions`): its changed ones.
"""
from __future__ import annotations

import dataclasses
import gc
import json
import os
import pathlib
import subprocess
import sys

from .. import manifest as manifest_module
from .. import impact
from .events import Run, outcome_of, read_events
from .runner import child_env, pytest_command, write_diagnoses


@dataclasses.dataclass
class Entry:
    """One submission of a batch, and which of the assignment's tests it runs."""
    label: str
    folder: str
    tests: list[str] | None = None    # test files to run; None: every test (unless `functions` is given)
    functions: dict[str, list[str]] | None = None  # also the tests the recording entry saw run these
    record: bool = False              # record the functions each test runs (at most one entry, before the others)


def run_batch(manifest: manifest_module.Manifest, entries: list[Entry], workdir: pathlib.Path,
              python: str = sys.executable, records: pathlib.Path | None = None) -> dict[str, Run]:
    """{label: Run} for every entry, from one child process. An entry given no test to run is not
    run (an empty Run). The recording entry's records are in `workdir/<label>.calls.json`;
    `records`: such a file, from an earlier batch, for entries that come with no recording entry."""
    env = child_env(manifest, pathlib.Path(os.devnull))
    plan_path = workdir / "batch-plan.json"
    plan = {"records": None if records is None else str(records), "entries": [dataclasses.asdict(e) for e in entries]}
    plan_path.write_text(json.dumps(plan), encoding="utf-8")
    command = [python, "-m", "autograder.grade.batch", manifest.name, str(workdir), str(plan_path)]
    subprocess.run(command, cwd=workdir, env=env, check=True, stdin=subprocess.DEVNULL,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return {e.label: read_run(workdir / f"{e.label}.jsonl") for e in entries}


def read_run(events: pathlib.Path) -> Run:
    """The Run an event file tells (empty if there is none)."""
    run = Run()
    for event in read_events(events, 0)[0]:
        if event["event"] == "collected":
            run.collected = event["tests"]
        elif event["event"] == "result":
            run.outcomes[event["nodeid"]] = outcome_of(event)
    return run


def read_records(path: pathlib.Path) -> dict[str, set[tuple[str, str]]]:
    """The records a recording entry wrote (`<label>.calls.json`)."""
    return {nodeid: {tuple(call) for call in calls}
            for nodeid, calls in json.loads(path.read_text(encoding="utf-8")).items()}


def main(argv: list[str]) -> int:
    import pytest

    name, events_dir, plan_path = argv
    events_dir = pathlib.Path(events_dir)
    manifest = manifest_module.load(name)
    diagnoses = write_diagnoses(manifest, events_dir)
    plan = json.loads(pathlib.Path(plan_path).read_text(encoding="utf-8"))
    records = read_records(pathlib.Path(plan["records"])) if plan["records"] else {}
    for entry in (Entry(**e) for e in plan["entries"]):
        paths, only = entry.tests, None
        if entry.functions is not None:  # the whole of `tests`, and the tests that ran `functions`
            if not records:
                raise ValueError(f"{entry.label}: `functions` needs an entry that records, before it")
            whole = {pathlib.Path(p).resolve() for p in entry.tests or ()}
            chosen = [nodeid for nodeid in records if (manifest.root / nodeid.split("::", 1)[0]).resolve() in whole]
            chosen += sorted(set(impact.tests_running(records, entry.functions)) - set(chosen), key=list(records).index)
            paths = sorted({str(manifest.root / nodeid.split("::", 1)[0]) for nodeid in chosen})
            only = events_dir / f"{entry.label}.only.txt"
            only.write_text("\n".join(chosen), encoding="utf-8")
        if paths == []:
            continue
        report = events_dir / f"{entry.label}.jsonl"
        # mutants are ours, made from the reference: no sandbox needed
        args = pytest_command(manifest, "python", report, None, diagnoses, sandbox=False,
                              paths=paths)[3:]  # [3:]: no "python -m pytest"
        recorder = impact.CallRecorder(pathlib.Path(entry.folder)) if entry.record else None
        gc.freeze()  # what earlier sessions left (torch, above all) is never scanned again
        pytest.main([*args, "--submission", entry.folder, *(["--only", str(only)] if only else [])],
                    plugins=[recorder] if recorder else None)
        if recorder is not None:
            records = recorder.records()
            (events_dir / f"{entry.label}.calls.json").write_text(
                json.dumps({k: sorted(v) for k, v in records.items()}), encoding="utf-8")
    return 0


if __name__ == "__main__":
    from ..sandbox.launch import end

    end(main(sys.argv[1:]))  # without the interpreter's teardown (see sandbox/launch.py)
