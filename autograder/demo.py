"""`python -m autograder demo NAME`: build both zips, then grade, through the Gradescope zip,
the reference (full marks), the starter (zero) and a buggy submission (points lost only
where its bugs are), and print a per-problem table.
"""
from __future__ import annotations

import pathlib
import sys
import tempfile

from . import manifest as manifest_module
from . import catalogue
from .build import build
from .grade import grade_via_zip
from .grade.results import per_problem


def print_table(columns: dict[str, dict[str, tuple[float, float]]], file=sys.stdout) -> None:
    names = list(columns)
    problems = list(next(iter(columns.values())))
    width = max(len(p) for p in problems + ["problem", "total"])
    header = f"{'problem':<{width}}  " + "  ".join(f"{n:>14}" for n in names)
    print(header, file=file)
    print("-" * len(header), file=file)
    for p in problems:
        cells = [f"{columns[n][p][0]:g} / {columns[n][p][1]:g}" for n in names]
        print(f"{p:<{width}}  " + "  ".join(f"{c:>14}" for c in cells), file=file)
    totals = [f"{sum(v[0] for v in columns[n].values()):g} / {sum(v[1] for v in columns[n].values()):g}"
              for n in names]
    print(f"{'total':<{width}}  " + "  ".join(f"{c:>14}" for c in totals), file=file)


def demo(name: str) -> int:
    manifest = manifest_module.load(name)
    autograder_zip, student_zip = build(name)
    print(f"built {autograder_zip.relative_to(manifest.root)} and {student_zip.relative_to(manifest.root)}")
    mutants, demo_names = catalogue.load(manifest)
    with tempfile.TemporaryDirectory(prefix="demo-") as tmp:
        submissions = {"reference": manifest.path(manifest.reference), "starter": manifest.path(manifest.starter)}
        if demo_names:
            chosen = [m for m in mutants if m.name in demo_names]
            submissions["buggy"] = catalogue.materialise(manifest, chosen, pathlib.Path(tmp) / "buggy")
            print("buggy = reference with: " + ", ".join(m.name for m in chosen))
        columns, boards = {}, {}
        for label, folder in submissions.items():
            results = grade_via_zip(name, folder, pathlib.Path(tmp) / f"{label}.json", zip_path=autograder_zip,
                                    quiet=True)
            columns[label] = per_problem(results)
            boards[label] = results.get("leaderboard") or []
            print(f"graded {label} through the zip in {results['execution_time']} s")
    print()
    print_table(columns)
    for label, board in boards.items():
        for entry in board:
            print(f"leaderboard ({label}): {entry['name']} = {entry['value']:g}")
    ok = (sum(v[0] for v in columns["reference"].values()) == manifest.total_points
          and sum(v[0] for v in columns["starter"].values()) == 0)
    if not ok:
        print("\nUNEXPECTED: the reference should get full marks and the starter zero.")
    return 0 if ok else 1


def notebook_demo(name: str) -> int:
    """Build the handout notebook, fill its stub cells with the reference's code, execute it headless
    (nbclient, python3 kernel) and print its check_all() table: full marks expected."""
    from .build import notebook as notebook_module
    from .build import notebook_path

    manifest = manifest_module.load(name)
    build(name)
    path = notebook_path(name)
    nb = notebook_module.fill(notebook_module.read(path), notebook_module.reference_sources(manifest))
    with tempfile.TemporaryDirectory(prefix="notebook-demo-") as tmp:
        notebook_module.execute(nb, pathlib.Path(tmp))
    checks = notebook_module.check_cells(nb)
    print(f"executed {path.relative_to(manifest.root)} with the reference in its cells: "
          f"{len(checks) - 1} check cells, then check_all():\n")
    print(checks[-1][1])
    table = notebook_module.parse_table(checks[-1][1])
    full = (list(table) == list(manifest.problems)
            and all(row["status"] == "passed" and row["earned"] == row["share"] for row in table.values()))
    if not full:
        print("\nUNEXPECTED: the reference should pass every public test of the notebook.")
    return 0 if full else 1
