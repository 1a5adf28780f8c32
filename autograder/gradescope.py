"""Gradescope's results.json: its top level, and the whole file when no test could run.

Format: https://gradescope-autograders.readthedocs.io/en/latest/specs/ (top level:
score, execution_time, output, output_format, visibility, stdout_visibility, tests;
per test: name, number, score, max_score, status, output, visibility, tags).
grade/results.py makes the test entries of a run; build/ writes `failed_run`'s file into the
autograder zip as fallback_results.json, for a grader that cannot even start.
"""
from __future__ import annotations

from .kit import messages
from .manifest import Manifest

PRECISION = 4  # decimals of every score


def problem_failed(manifest: Manifest, name: str, output: str) -> dict:
    """The entry of a problem that was not graded at all (no test of it ran), with `output`."""
    index = list(manifest.problems).index(name) + 1
    return {"name": f"{name}: not graded", "number": f"{index}.0", "score": 0.0,
            "max_score": manifest.problems[name].points, "status": "failed", "output": output,
            "output_format": "text", "visibility": "visible", "tags": [name]}


def failed_run(manifest: Manifest, why: str, notes: list[str] | tuple[str, ...] = ()) -> dict:
    """results.json when the tests could not run at all: every problem failed, with the reason
    (and `notes` for the top-level output)."""
    entries = [problem_failed(manifest, name, messages.COLLECTION_FAILED.format(why=why, problem=name))
               for name in manifest.problems]
    return top(manifest, entries, list(notes))


def top(manifest: Manifest, entries: list[dict], notes: list[str]) -> dict:
    """results.json from its test entries and notes. Its `output` is always visible to the
    student, so while some tests are not `visible` it tells the visible tests' points only:
    Gradescope hides the total `score` from students as long as any test is hidden, and the text
    must not give it away either."""
    score = round(sum(e["score"] for e in entries), PRECISION)
    total = round(sum(e["max_score"] for e in entries), PRECISION)
    shown = [e for e in entries if e["visibility"] == "visible"]
    if len(shown) == len(entries):
        lines = [f"**{manifest.title}**: {score:g} / {total:g} points.", ""]
    else:
        shown_score = round(sum(e["score"] for e in shown), PRECISION)
        shown_total = round(sum(e["max_score"] for e in shown), PRECISION)
        lines = [f"**{manifest.title}**: " + messages.VISIBLE_PART.format(
            score=f"{shown_score:g}", total=f"{shown_total:g}", rest=f"{round(total - shown_total, PRECISION):g}"), ""]
    lines += [f"- {note}" for note in notes]
    return {
        "score": score,
        "execution_time": 0,
        "output": "\n".join(lines).strip(),
        "output_format": "md",
        "test_output_format": "text",
        "visibility": "visible",
        "stdout_visibility": "hidden",
        "tests": entries,
    }
