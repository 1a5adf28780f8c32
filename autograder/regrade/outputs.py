"""What `regrade` writes in OUT/, besides report.html: results, state records, scores.csv, the diff.

    OUT/results/<key>.json   results.json exactly as `grade` writes it
    OUT/state/<key>.json     what the results were made from: the sha256 of the autograder zip
                             and of the submission (as sent to the worker), the status and its
                             reason, seconds, worker; written after the results, so a record
                             always has its results. A re-run skips a submission whose record
                             has the same two hashes.
    OUT/scores.csv           one row per student (a group submission gives one row per member)

scores.csv's columns: Name, SID, Email (from submission_metadata.yml; a plain folder gives the
folder's name as Name), Total Score, one column per problem (points, summed over its tests),
Max Score, Status (graded / failed / rejected), Reason, Submission (the key).
"""
from __future__ import annotations

import csv
import dataclasses
import json
import os
import pathlib
import statistics

from ..grade.results import per_problem
from .sources import Student, Submission

STATE_VERSION = 1


@dataclasses.dataclass
class Row:
    """One submission's outcome, as scores.csv and report.html show it."""
    key: str
    students: tuple[Student, ...]
    status: str                       # graded, failed (graded, but not really: reason), rejected (not graded)
    reason: str = ""
    results: dict | None = None
    previous_score: float | None = None

    @property
    def score(self) -> float:
        return float(self.results.get("score", 0.0)) if self.results else 0.0

    @property
    def problems(self) -> dict[str, tuple[float, float]]:
        return per_problem(self.results) if self.results else {}


def _write_atomic(path: pathlib.Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def results_path(out: pathlib.Path, key: str) -> pathlib.Path:
    return out / "results" / f"{key}.json"


def state_path(out: pathlib.Path, key: str) -> pathlib.Path:
    return out / "state" / f"{key}.json"


def record(out: pathlib.Path, submission: Submission, autograder_digest: str, graded: dict) -> None:
    """Keep one graded submission: its results.json (the worker's text, unchanged), then its state."""
    _write_atomic(results_path(out, submission.key), graded["results"])
    state = {"version": STATE_VERSION, "key": submission.key, "autograder_sha256": autograder_digest,
             "submission_sha256": submission.digest, "status": "failed" if graded["reason"] else "graded",
             "reason": graded["reason"], "seconds": graded.get("seconds"), "worker": graded.get("worker")}
    _write_atomic(state_path(out, submission.key), json.dumps(state, indent=2) + "\n")


def record_failure(out: pathlib.Path, submission: Submission, autograder_digest: str, reason: str) -> None:
    """A submission whose grading itself failed (its workers died): a state with no results, retried next run."""
    state = {"version": STATE_VERSION, "key": submission.key, "autograder_sha256": autograder_digest,
             "submission_sha256": "", "status": "failed", "reason": reason}
    results_path(out, submission.key).unlink(missing_ok=True)
    _write_atomic(state_path(out, submission.key), json.dumps(state, indent=2) + "\n")


def load_state(out: pathlib.Path, key: str) -> dict | None:
    try:
        return json.loads(state_path(out, key).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def is_done(out: pathlib.Path, submission: Submission, autograder_digest: str) -> bool:
    """Graded already from the same autograder zip and the same submission bytes."""
    state = load_state(out, submission.key)
    return (state is not None and state.get("autograder_sha256") == autograder_digest
            and state.get("submission_sha256") == submission.digest and results_path(out, submission.key).is_file())


def seconds_taken(*folders: pathlib.Path | None) -> dict[str, float]:
    """{key: seconds} that each submission's last grading took, from the state records of earlier
    OUT/ folders (the first folder that knows a key wins)."""
    found: dict[str, float] = {}
    for folder in folders:
        if folder is None:
            continue
        for path in sorted((pathlib.Path(folder) / "state").glob("*.json")):
            state = load_state(pathlib.Path(folder), path.stem) or {}
            seconds = state.get("seconds")
            if path.stem not in found and isinstance(seconds, (int, float)) and not isinstance(seconds, bool):
                found[path.stem] = float(seconds)
    return found


def slowest_first(todo: list[Submission], seconds: dict[str, float]) -> list[Submission]:
    """`todo` with the submissions that took longest last time first, so that no long grading starts
    last while the other workers idle. One never graded counts as the median; ties keep their order."""
    typical = statistics.median(seconds.values()) if seconds else 0.0
    return sorted(todo, key=lambda s: -seconds.get(s.key, typical))


def load_results(path: pathlib.Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def row_of(out: pathlib.Path, submission: Submission) -> Row:
    """The submission's row from what OUT holds (rejected, graded, failed, or not graded yet)."""
    if submission.rejected:
        return Row(submission.key, submission.students, "rejected", submission.rejected,
                   previous_score=submission.previous_score)
    state = load_state(out, submission.key) or {}
    results = load_results(results_path(out, submission.key)) if state else None
    if not state:
        return Row(submission.key, submission.students, "pending", "not graded yet",
                   previous_score=submission.previous_score)
    status = state.get("status", "failed") if results is not None else "failed"
    return Row(submission.key, submission.students, status, state.get("reason", ""), results,
               submission.previous_score)


def problem_names(manifest) -> list[str]:
    return list(manifest.problems)


def write_scores(path: pathlib.Path, rows: list[Row], manifest) -> pathlib.Path:
    """scores.csv: one row per student (see the module's docstring)."""
    problems = problem_names(manifest)
    header = ["Name", "SID", "Email", "Total Score", *problems, "Max Score", "Status", "Reason", "Submission"]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream)
        writer.writerow(header)
        for row in rows:
            cells = row.problems
            scores = [_number(cells[p][0]) if p in cells else ("0" if row.results else "") for p in problems]
            total = _number(row.score) if row.status != "pending" else ""
            for student in row.students or (Student(),):
                writer.writerow([student.name, student.sid, student.email, total, *scores,
                                 _number(manifest.total_points), row.status, row.reason, row.key])
    os.replace(tmp, path)
    return path


def _number(value: float) -> str:
    return f"{round(float(value), 4):g}"


# ---- the diff with an earlier run ----

@dataclasses.dataclass
class Change:
    key: str
    students: tuple[Student, ...]
    before: float
    after: float
    tests: list[tuple[str, float]]   # (test name, change of its score); empty when only totals are known

    @property
    def delta(self) -> float:
        return round(self.after - self.before, 4)


def _test_scores(results: dict) -> dict[str, float]:
    return {t["name"]: float(t.get("score", 0.0)) for t in results.get("tests") or []}


def previous_scores(previous: pathlib.Path) -> dict[str, dict]:
    """{key: results} of an earlier OUT/ (its results/ folder)."""
    folder = previous / "results"
    if not folder.is_dir():
        raise FileNotFoundError(f"{previous}: no results/ folder (not an earlier regrade's OUT/)")
    found = {}
    for path in sorted(folder.glob("*.json")):
        results = load_results(path)
        if results is not None:
            found[path.stem] = results
    return found


def diff(rows: list[Row], previous: dict[str, dict] | None) -> list[Change]:
    """Who changed and by how much, biggest change first; the tests that caused it when the earlier
    results are known (`previous`), else the totals of the Gradescope export."""
    changes = []
    for row in rows:
        if row.results is None:
            continue
        if previous is not None:
            old = previous.get(row.key)
            if old is None:
                continue
            before, now = _test_scores(old), _test_scores(row.results)
            tests = [(name, round(now.get(name, 0.0) - before.get(name, 0.0), 4))
                     for name in list(now) + [n for n in before if n not in now]]
            tests = [(n, d) for n, d in tests if abs(d) > 1e-9]
            change = Change(row.key, row.students, float(old.get("score", 0.0)), row.score, tests)
        elif row.previous_score is not None:
            change = Change(row.key, row.students, row.previous_score, row.score, [])
        else:
            continue
        if abs(change.delta) > 1e-9:
            changes.append(change)
    return sorted(changes, key=lambda c: (-abs(c.delta), c.key))


def who(students: tuple[Student, ...], key: str) -> str:
    names = [s.name or s.email or s.sid for s in students if s.name or s.email or s.sid]
    return ", ".join(names) if names else key


def diff_line(changes: list[Change] | None) -> str:
    if changes is None:
        return "diff: no earlier scores (--previous OUT/ or a Gradescope export's scores)"
    if not changes:
        return "diff: no score changed"
    up = sum(1 for c in changes if c.delta > 0)
    top = changes[0]
    return (f"diff: {len(changes)} changed ({up} up, {len(changes) - up} down); largest {top.delta:+g} "
            f"({who(top.students, top.key)}: {top.before:g} -> {top.after:g})")


def summary_lines(rows: list[Row], manifest, graded_now: int, skipped: int, changes, seconds: float) -> list[str]:
    """The terminal summary: counts, mean, median, failures to grade, the diff in one line."""
    scored = [r.score for r in rows if r.results is not None]
    failed = [r for r in rows if r.status in ("failed", "rejected")]
    pending = sum(1 for r in rows if r.status == "pending")
    lines = [f"{len(rows)} submissions: {graded_now} graded now, {skipped} already graded, "
             f"{len(failed)} failed to grade" + (f", {pending} not graded (interrupted)" if pending else "")
             + f"; {seconds:.1f} s"]
    if scored:
        lines.append(f"total: mean {statistics.mean(scored):.2f}, median {statistics.median(scored):.2f} "
                     f"/ {manifest.total_points:g}")
    for row in failed[:10]:
        lines.append(f"  {row.status}: {row.key}: {row.reason}")
    if len(failed) > 10:
        lines.append(f"  ... and {len(failed) - 10} more (scores.csv, Reason)")
    lines.append(diff_line(changes))
    return lines
