"""`python -m autograder regrade-demo [NAME]` (the end of `make demo`): regrade a small generated
class into dist/demo-regrade/, then change one hidden test's points in a copy of the assignment
(its weight in the split of its problem's points: [problems.X] weights in the manifest),
regrade with --previous, and print the diff.
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
WEIGHT = 3   # the changed hidden test's weight (the others of its problem weigh 1)


def _copy_assignment(manifest, destination: pathlib.Path) -> pathlib.Path:
    """What the autograder zip is built from (the manifest, mutants, reference, tests), copied."""
    for folder in {f"assignments/{manifest.name}", manifest.reference, *[t.path for t in manifest.tests]}:
        shutil.copytree(manifest.root / folder, destination / folder, ignore=shutil.ignore_patterns("__pycache__"))
    return destination


def _hidden_test(manifest, outcome) -> tuple[str, str, str]:
    """(problem, test function, its name in results) of a hidden test that some graded submissions
    fail and others pass, in a problem with other tests (a new weight then moves scores)."""
    from ..build import collect
    from ..grade.results import test_name

    collected = collect(manifest)
    failed, passed = set(), set()
    for row in outcome.rows:
        graded = (row.results or {}).get("tests") or [] if row.status == "graded" else []
        for test in graded:
            if test.get("visibility") == "after_published":
                (failed if test["status"] == "failed" else passed).add(test["name"])
    candidates = []
    for test in collected:
        problem = next((p for p in test["problems"] if p in manifest.problems), None)
        hidden = not (manifest.folder_of(test["file"]) or manifest_module.NO_FOLDER).public
        if problem and hidden and sum(problem in t["problems"] for t in collected) > 1:
            name = test_name(test)
            candidates.append((name not in failed or name not in passed, problem, test["name"].split("[")[0], name))
    if not candidates:
        raise SystemExit(f"regrade-demo: {manifest.name} has no hidden test in a problem with other tests")
    _, problem, function, name = min(candidates, key=lambda c: c[0])
    return problem, function, name


def _weigh(copy: pathlib.Path, name: str, problem: str, function: str, weight: float) -> None:
    """In the copy's manifest, give hidden test `function` of `problem` the weight `weight`
    ([problems.X] weights: the problem's points are split in proportion)."""
    toml = copy / "assignments" / name / "assignment.toml"
    text = toml.read_text(encoding="utf-8")
    pattern = re.compile(rf"^({re.escape(problem)} = \{{ )", re.M)
    if pattern.search(text) is None:
        raise SystemExit(f"regrade-demo: cannot find the table of {problem} in {toml}")
    toml.write_text(pattern.sub(lambda m: f'{m.group(1)}weights = {{ "{function}" = {weight:g} }}, ', text, count=1),
                    encoding="utf-8")


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
    problem, function, test = _hidden_test(manifest, first)
    copy = _copy_assignment(manifest, base / "assignment-copy")
    _weigh(copy, name, problem, function, WEIGHT)
    print(f"\n== regrade again: the hidden test {function} of {problem} now weighs {WEIGHT:g} in the split "
          f"of the problem's points (a copy of the assignment), with --previous ==")
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
