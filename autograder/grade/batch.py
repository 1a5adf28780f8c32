"""Run an assignment's tests on many trusted submissions in ONE child process (for mutants).

Grading one submission costs a child process, most of it importing torch. Mutants are
made by us from the reference, so they need no crash isolation: one child runs pytest
once per submission and writes one event file each (same format as plain grading).

    python -m autograder.grade.batch NAME EVENTS_DIR LABEL=FOLDER [LABEL=FOLDER ...]
"""
from __future__ import annotations

import os
import pathlib
import subprocess
import sys

from .. import manifest as manifest_module
from .events import Run, outcome_of, read_events
from .runner import child_env, pytest_command, write_diagnoses


def run_batch(manifest: manifest_module.Manifest, submissions: dict[str, pathlib.Path],
              workdir: pathlib.Path, python: str = sys.executable) -> dict[str, Run]:
    """{label: Run} for every submission folder, from one child process."""
    env = child_env(manifest, pathlib.Path(os.devnull))
    command = [python, "-m", "autograder.grade.batch", manifest.name, str(workdir),
               *[f"{label}={folder}" for label, folder in submissions.items()]]
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

    name, events_dir, *pairs = argv
    manifest = manifest_module.load(name)
    diagnoses = write_diagnoses(manifest, pathlib.Path(events_dir))
    for pair in pairs:
        label, folder = pair.split("=", 1)
        report = pathlib.Path(events_dir) / f"{label}.jsonl"
        # mutants are ours, made from the reference: no sandbox needed
        args = pytest_command(manifest, "python", report, None, diagnoses, sandbox=False)[3:]  # drop "python -m pytest"
        pytest.main([*args, "--submission", folder])
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
