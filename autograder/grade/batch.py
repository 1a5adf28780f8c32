"""Run an assignment's tests on many trusted submissions in ONE child process (for mutants).

Grading one submission costs a child process, most of it importing torch. Mutants are
made by us from the reference, so they need no crash isolation: one child runs pytest
once per submission and writes one event file each (same format as plain grading).

    python -m autograder.grade.batch NAME EVENTS_DIR PLAN.json
    (PLAN.json: [{"label", "folder", "tests": [test files] or null for all}])
"""
from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

from .. import manifest as manifest_module
from .events import Run, outcome_of, read_events
from .runner import child_env, pytest_command, write_diagnoses


def run_batch(manifest: manifest_module.Manifest, submissions: dict[str, pathlib.Path],
              workdir: pathlib.Path, python: str = sys.executable,
              test_files: dict[str, list[pathlib.Path]] | None = None) -> dict[str, Run]:
    """{label: Run} for every submission folder, from one child process. `test_files`: for a
    label, the test files to run (default: all); a label given none is not run (an empty Run)."""
    env = child_env(manifest, pathlib.Path(os.devnull))
    plan = [{"label": label, "folder": str(folder),
             "tests": None if (test_files or {}).get(label) is None else [str(p) for p in test_files[label]]}
            for label, folder in submissions.items()]
    plan_path = workdir / "batch-plan.json"
    plan_path.write_text(json.dumps(plan), encoding="utf-8")
    command = [python, "-m", "autograder.grade.batch", manifest.name, str(workdir), str(plan_path)]
    subprocess.run(command, cwd=workdir, env=env, check=True, stdin=subprocess.DEVNULL,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    runs = {}
    for label in submissions:
        run = Run()
        for event in read_events(workdir / f"{label}.jsonl", 0)[0]:
            if event["event"] == "collected":
                run.collected = event["tests"]
            elif event["event"] == "result":
                run.outcomes[event["nodeid"]] = outcome_of(event)
        runs[label] = run
    return runs


def main(argv: list[str]) -> int:
    import pytest

    name, events_dir, plan_path = argv
    manifest = manifest_module.load(name)
    diagnoses = write_diagnoses(manifest, pathlib.Path(events_dir))
    for entry in json.loads(pathlib.Path(plan_path).read_text(encoding="utf-8")):
        if entry["tests"] == []:
            continue
        report = pathlib.Path(events_dir) / f"{entry['label']}.jsonl"
        # mutants are ours, made from the reference: no sandbox needed
        args = pytest_command(manifest, "python", report, None, diagnoses, sandbox=False,
                              paths=entry["tests"])[3:]  # drop "python -m pytest"
        pytest.main([*args, "--submission", entry["folder"]])
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
