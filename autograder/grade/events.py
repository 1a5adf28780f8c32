"""The records of a test run: the grading events the child pytest process writes (one JSON object
a line, see autograder/kit/plugin.py and grader/plugin.py) and what the grader makes of them.

Both ways of running tests read them: grade/runner.py (one submission, crash-isolated) and
grade/batch.py (many trusted submissions in one process); grade/results.py turns a `Run` into
results.json.
"""
from __future__ import annotations

import dataclasses
import json
import pathlib


@dataclasses.dataclass
class Outcome:
    """One test's result, as its "result" event tells it (or as the runner sets it when the test
    never finished: a crash, a timeout)."""
    nodeid: str
    passed: bool
    summary: str = ""
    details: str = ""
    stdout: str = ""
    duration: float = 0.0
    diagnosis: str = ""
    fraction: float = 1.0          # of the test's points, when it passed (the `score` fixture)
    note: str = ""
    leaderboard: list = dataclasses.field(default_factory=list)


def outcome_of(event: dict) -> Outcome:
    """The Outcome a "result" event describes (its fraction clamped to [0, 1])."""
    return Outcome(event["nodeid"], event["outcome"] == "passed", event["summary"], event["details"],
                   event["stdout"], event["duration"], event.get("diagnosis", ""),
                   min(1.0, max(0.0, float(event.get("fraction", 1.0)))), str(event.get("note", "")),
                   list(event.get("leaderboard") or []))


@dataclasses.dataclass
class Run:
    """Everything one submission's test run produced."""
    collected: list[dict] | None = None            # [{"nodeid", "file", "name", "doc", "problems"}]
    outcomes: dict[str, Outcome] = dataclasses.field(default_factory=dict)
    log: list[str] = dataclasses.field(default_factory=list)   # for instructors (stdout), never students


def read_events(path: pathlib.Path, offset: int) -> tuple[list[dict], int]:
    """The complete event lines of `path` from byte `offset` on, and the offset after them: a line
    still being written (no newline yet) is left for the next read."""
    if not path.exists():
        return [], offset
    with open(path, "rb") as stream:
        stream.seek(offset)
        data = stream.read()
    complete = data.rfind(b"\n") + 1
    events = [json.loads(line) for line in data[:complete].splitlines() if line.strip()]
    return events, offset + complete
