"""`python -m autograder regrade-demo [NAME]` (the end of `make demo`): regrade a small generated
class into dist/demo-regrade/, then change the points of the problem a hidden test grades in a
copy of the assignment, regrade with --previous, and print the diff.
"""
from __future__ import annotations

import pathlib
import re
import shutil

from .. import manifest as manifest_module
from . import regrade
from .fixtures import make_class
from .outputs import who

SIZE = 6
EXTRA_POINTS = 2


def _copy_assignment(manifest, destination: pathlib.Path) -> pathlib.Path:
    """What the autograder zip is built from (the manifest, mutants, reference, tests), copied."""
    for folder in {f"assignments/{manifest.name}", manifest.reference, *[t.path for t in manifest.tests]}:
        shutil.copytree(manifest.root / folder, destination / folder, ignore=shutil.ignore_patterns("__pycache__"))
    return destination


def _hidden_problem(manifest, outcome) -> str:
    """A problem with a hidden test that some graded submissions fail and others pass."""
    failed, passed = set(), set()
    for row in outcome.rows:
        for test in (row.results or {}).get("tests") or []:
            if test.get("visibility") == "after_published" and row.status == "graded":
                (failed if test["status"] == "failed" else passed).update(test["tags"][:1])
    both = [p for p in manifest.problems if p in failed and p in passed]
    return both[0] if both else next(iter(manifest.problems))


def _raise_points(copy: pathlib.Path, name: str, problem: str, extra: float) -> float:
    """In the copy's manifest, give `problem` `extra` more points; returns the new points."""
    toml = copy / "assignments" / name / "assignment.toml"
    text = toml.read_text(encoding="utf-8")
    pattern = re.compile(rf"^({re.escape(problem)} = \{{ points = )([0-9.]+)", re.M)
    match = pattern.search(text)
    if match is None:
        raise SystemExit(f"regrade-demo: cannot find the points of {problem} in {toml}")
    points = float(match.group(2)) + extra
    toml.write_text(pattern.sub(lambda m: f"{m.group(1)}{points:g}", text, count=1), encoding="utf-8")
    return points


def demo(name: str = "transformer") -> int:
    manifest = manifest_module.load(name)
    base = manifest.root / "dist" / "demo-regrade"
    shutil.rmtree(base, ignore_errors=True)
    submissions = make_class(manifest, base / "class", size=SIZE)
    print(f"\n== regrade: a generated class of {SIZE} ({submissions.relative_to(manifest.root)}) ==")
    first = regrade(name, submissions, base / "out", progress=False)
    for line in first.lines:
        print(line)
    print(f"report: {first.report}")
    problem = _hidden_problem(manifest, first)
    copy = _copy_assignment(manifest, base / "assignment-copy")
    points = _raise_points(copy, name, problem, EXTRA_POINTS)
    print(f"\n== regrade again: {problem} now worth {points:g} points (a copy of the assignment), "
          "with --previous ==")
    second = regrade(name, submissions, base / "out-changed", previous=base / "out", root=copy, progress=False)
    for line in second.lines:
        print(line)
    for change in second.changes or []:
        tests = ", ".join(f"{t[:60]} ({d:+g})" for t, d in change.tests[:2])
        left = len(change.tests) - 2
        more = f" and {left} more test{'s' if left > 1 else ''}" if left > 0 else ""
        print(f"  {who(change.students, change.key)}: {change.before:g} -> {change.after:g} ({change.delta:+g}): "
              f"{tests}{more}")
    print(f"report: {second.report}")
    ok = bool(second.changes) and all(r.status != "pending" for r in second.rows)
    return 0 if ok else 1
