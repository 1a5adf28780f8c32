"""Turn a test run into Gradescope's results.json (its format: autograder/gradescope.py).

Every test entry's `tags` lists the contract problems it grades. Points of a problem
are split equally over its tests (or by the weights the manifest gives hidden tests); a test
marked with several problems gets a share of each.
"""
from __future__ import annotations

import collections
import fractions

from .. import gradescope
from ..gradescope import PRECISION
from ..kit import messages
from ..manifest import NO_FOLDER, Manifest
from .events import Run
from .intake import IntakeReport


def points_per_test(manifest: Manifest, collected: list[dict]) -> dict[str, float]:
    """Each problem's points split over its tests, in proportion to their weights (1 unless the
    manifest says otherwise), in units of 10**-PRECISION that add up exactly: each test gets its
    share rounded down, and the units left go one each to the tests that lost most in the
    rounding (the first tests, when they lost as much)."""
    unit = 10 ** PRECISION
    shares: dict[str, int] = {test["nodeid"]: 0 for test in collected}
    for problem, spec in manifest.problems.items():
        tests = manifest.weighted_tests(problem, collected)
        if not tests:
            continue
        units, total = round(spec.points * unit), sum(fractions.Fraction(w) for _, w in tests)
        exact = [units * fractions.Fraction(w) / total for _, w in tests]
        floors = [int(share) for share in exact]
        first = sorted(range(len(tests)), key=lambda k: (floors[k] - exact[k], k))[:units - sum(floors)]
        for k, (nodeid, _) in enumerate(tests):
            shares[nodeid] += floors[k] + (k in first)
    return {nodeid: units / unit for nodeid, units in shares.items()}


NAME_LIMIT = 200


def _param_id(nodeid: str) -> str:
    """pytest's id of a parametrized test (`[a\\xe9-3]`), its escapes undone (`[aé-3]`)."""
    if "[" not in nodeid:
        return ""
    raw = nodeid[nodeid.index("["):]
    try:
        return raw.encode("latin-1", "backslashreplace").decode("unicode_escape")
    except (UnicodeError, ValueError):
        return raw


def _params(test: dict) -> str:
    """"(heads=3, T=4)" from the plugin's readable parameters, else pytest's id unescaped."""
    params = test.get("params") or {}
    if params:
        return "(" + ", ".join(f"{name}={text}" for name, text in params.items()) + ")"
    return _param_id(test["nodeid"])


def test_name(test: dict) -> str:
    """A test's name on Gradescope: its problems, its docstring's first line (else its function's
    name in words) and, for a parametrized test, its parameters written out."""
    problems = ", ".join(test["problems"])
    label = test.get("doc") or test["name"].split("[")[0].removeprefix("test_").replace("_", " ")
    name = f"{problems}: {label} {_params(test)}".strip()
    return name if len(name) <= NAME_LIMIT else name[: NAME_LIMIT - 3] + "..."


def results_json(manifest: Manifest, run: Run, intake: IntakeReport) -> dict:
    """results.json for a run whose tests were collected (run.collected is not None)."""
    problem_order = list(manifest.problems)
    unknown = sorted({p for t in run.collected for p in t["problems"] if p not in manifest.problems})
    tests = sorted(run.collected, key=lambda t: (
        min(problem_order.index(p) for p in t["problems"] if p in manifest.problems)
        if set(t["problems"]) - set(unknown) else len(problem_order),
        not (manifest.folder_of(t["file"]) or NO_FOLDER).public))
    shares = points_per_test(manifest, tests)
    entries, numbering = [], collections.Counter()
    for test in tests:
        outcome = run.outcomes.get(test["nodeid"])
        folder = manifest.folder_of(test["file"]) or NO_FOLDER
        first = next((p for p in test["problems"] if p in manifest.problems), None)
        index = problem_order.index(first) + 1 if first else 0
        numbering[index] += 1
        max_score = shares[test["nodeid"]]
        passed = outcome is not None and outcome.passed
        output = ""
        if outcome is not None and not passed:
            output = outcome.summary
            if folder.public and outcome.details:
                output += "\n" + outcome.details
            if outcome.diagnosis and (not folder.public or manifest.diagnoses_before_publish):
                output += "\n" + messages.DIAGNOSIS.format(diagnosis=outcome.diagnosis)
        elif outcome is None:
            output = messages.GRADER_ERROR
        else:
            output = outcome.note
        if outcome is not None and outcome.stdout.strip():
            printed = messages.PRINTED.format(limit=len(outcome.stdout), text=outcome.stdout)
            output += ("\n\n" if output else "") + printed
        entries.append({
            "name": test_name(test),
            "number": f"{index}.{numbering[index]}",
            "score": round(max_score * outcome.fraction, PRECISION) if passed else 0.0,
            "max_score": max_score,
            "status": "passed" if passed else "failed",
            "output": output,
            "output_format": "text",
            "visibility": folder.visibility,
            "tags": list(test["problems"]),
        })
    missing_problems = [p for p in manifest.problems if not any(p in t["problems"] for t in tests)]
    for name in missing_problems:  # a problem with no test at all still shows, failed, so points add up
        entries.append(gradescope.problem_failed(manifest, name, messages.GRADER_ERROR))
    notes = intake_notes(intake)
    if unknown:
        notes.append(f"(instructor) tests name unknown problems: {', '.join(unknown)}")
    results = gradescope.top(manifest, entries, notes)
    board = [entry for test in tests for entry in getattr(run.outcomes.get(test["nodeid"]), "leaderboard", [])]
    if board:
        results["leaderboard"] = board
    return results


def intake_notes(intake: IntakeReport) -> list[str]:
    """What the top-level output tells the student about their files (missing ones, intake's notes)."""
    notes = []
    if intake.missing:
        notes.append("Missing from your submission: " + ", ".join(intake.missing)
                     + ". The problems in these files score 0.")
    return notes + intake.notes


def per_problem(results: dict) -> dict[str, tuple[float, float]]:
    """{problem: (score, max_score)} summed over the tests tagged with it (first tag)."""
    table: dict[str, list[float]] = {}
    for entry in results["tests"]:
        for tag in entry["tags"][:1]:
            row = table.setdefault(tag, [0.0, 0.0])
            row[0] += entry["score"]
            row[1] += entry["max_score"]
    return {k: (round(v[0], 2), round(v[1], 2)) for k, v in table.items()}


PROMPT_CHARS = 150   # of a question's prompt, shown above its answer


def _quoted(text: str) -> str:
    return "\n".join("> " + line if line.strip() else ">" for line in text.splitlines())


def written_answers(manifest: Manifest, answers: dict[str, str]) -> str:
    """The written answers as Markdown for the human grader: each question of the manifest (its
    points, the start of its prompt) with its answer quoted, then answers to unknown questions."""
    points = sum(q.points for q in manifest.questions.values())
    lines = [messages.WRITTEN_ANSWERS_HEAD.format(points=points) if points else messages.WRITTEN_ANSWERS_NO_POINTS]
    for qid, question in manifest.questions.items():
        prompt = " ".join(question.prompt.split())   # a prompt over several lines, as one
        prompt = prompt if len(prompt) <= PROMPT_CHARS else prompt[: PROMPT_CHARS - 3] + "..."
        worth = f"{question.points:g} point" + ("" if question.points == 1 else "s")
        lines += ["", f"**{qid}** ({worth}): {prompt}".rstrip(),
                  _quoted(answers[qid]) if answers.get(qid, "").strip() else messages.WRITTEN_ANSWERS_NONE]
    for qid in sorted(set(answers) - set(manifest.questions)):
        lines += ["", f"**{qid}** {messages.WRITTEN_ANSWERS_UNKNOWN}", _quoted(answers[qid])]
    return "\n".join(lines)


def add_written_answers(results: dict, manifest: Manifest, intake: IntakeReport, graded: bool = True) -> None:
    """Show the written answers (a notebook's answer cells) in results.json's top-level output;
    when the manifest gives its questions points and tests ran (`graded`), also a test of 0 points
    that says they are graded by hand and shows the answers."""
    if not manifest.questions and not intake.answers:
        return
    section = written_answers(manifest, intake.answers)
    results["output"] = (results["output"] + "\n\n" + section).strip()
    points = sum(q.points for q in manifest.questions.values())
    if points > 0 and graded:
        results["tests"].append({
            "name": messages.WRITTEN_ANSWERS,
            "number": f"{len(manifest.problems) + 1}.1",
            "score": 0.0,
            "max_score": 0.0,
            "status": "passed",
            "output": section,
            "output_format": "md",
            "visibility": "visible",
            "tags": [],
        })
