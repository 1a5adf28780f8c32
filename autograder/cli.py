"""The command line: a thin layer that forwards to one subpackage per command.

    python -m autograder build NAME [--dist DIR]
    python -m autograder grade NAME SUBMISSION [-o results.json] [--via-zip] [--no-sandbox] [--table] [--verbose]
    python -m autograder precompile NAME [NAME ...] [--caches]
    python -m autograder starter NAME [--check]
    python -m autograder mutants NAME [MUTANT ...]
    python -m autograder demo NAME
    python -m autograder notebook-demo NAME
    python -m autograder regrade NAME SUBMISSIONS -o OUT/ [--workers N] [--scheduler tcp://HOST:8786]
                                 [--previous OLD_OUT/] [--zip AUTOGRADER_ZIP]
    python -m autograder regrade-demo [NAME]
"""
from __future__ import annotations

import argparse
import json
import sys


def _build(args) -> int:
    from .build import build, notebook_path

    for path in build(args.assignment, args.dist):
        print(path)
    print(notebook_path(args.assignment, args.dist))
    return 0


def _grade(args) -> int:
    from .grade import grade, grade_via_zip
    from .grade.results import per_problem

    quiet = not args.verbose  # the child's exit and pytest's own report are for instructors debugging the grader
    if args.via_zip:
        results = grade_via_zip(args.assignment, args.submission, args.output, quiet=quiet)
    else:
        results = grade(args.assignment, args.submission, args.output, sandbox=not args.no_sandbox, quiet=quiet)
    if args.output is None:
        json.dump(results, sys.stdout, indent=2)
        print()
    if args.table:
        from .demo import print_table

        print_table({args.submission: per_problem(results)}, file=sys.stderr)
    return 0


def _starter(args) -> int:
    from . import manifest, starter

    m = manifest.load(args.assignment)
    if args.check:
        stale = starter.stale(m)
        if stale:
            print(f"out of date with the reference: {', '.join(stale)} "
                  f"(run `python -m autograder starter {args.assignment}`)", file=sys.stderr)
            return 1
        print("starter is up to date")
        return 0
    for path in starter.write(m):
        print(path)
    return 0


def _mutants(args) -> int:
    from . import manifest, mutants

    verdicts = mutants.check_all(manifest.load(args.assignment), args.only or None, every_test=args.every_test)
    return 0 if mutants.report(verdicts) else 1


def _demo(args) -> int:
    from .demo import demo

    return demo(args.assignment)


def _notebook_demo(args) -> int:
    from .demo import notebook_demo

    return notebook_demo(args.assignment)


def _regrade(args) -> int:
    from .regrade import regrade

    outcome = regrade(args.assignment, args.submissions, args.output, workers=args.workers, scheduler=args.scheduler,
                      previous=args.previous, zip_path=args.zip, progress=not args.no_progress, warm=not args.cold)
    for line in outcome.lines:
        print(line)
    print(f"wrote {outcome.scores} and {outcome.report}")
    return 130 if outcome.interrupted else 0


def _regrade_demo(args) -> int:
    from .regrade.demo import demo

    return demo(args.assignment)


def _precompile(args) -> int:
    from . import manifest
    from .grade.precompile import precompile

    manifests = [manifest.load(name) for name in args.assignments]
    for loaded in manifests:
        precompile(loaded)
    if args.caches:
        from .mutants import fill_caches

        fill_caches(manifests)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m autograder", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    p = commands.add_parser("build", help="build the Gradescope zip and the student zip into dist/")
    p.add_argument("assignment")
    p.add_argument("--dist", default=None, help="output folder [dist/]")
    p.set_defaults(func=_build)

    p = commands.add_parser("grade", help="grade a submission folder, zip or notebook; write Gradescope's results.json")
    p.add_argument("assignment")
    p.add_argument("submission")
    p.add_argument("-o", "--output", default=None, help="results.json to write [print to stdout]")
    p.add_argument("--via-zip", action="store_true", help="grade through the built zip, as Gradescope would")
    p.add_argument("--no-sandbox", action="store_true",
                   help="run student code in the test process (only for submissions you trust: benchmarks, debugging)")
    p.add_argument("--table", action="store_true", help="also print a per-problem score table")
    p.add_argument("--verbose", action="store_true",
                   help="also print each test child's exit and pytest's report (to stderr), to debug the grader")
    p.set_defaults(func=_grade)

    p = commands.add_parser("precompile", help="write the bytecode grading runs would compile afresh "
                                               "(setup.sh runs it once on Gradescope; make test first)")
    p.add_argument("assignments", nargs="+")
    p.add_argument("--caches", action="store_true",
                   help="also compute dist/.cache's tables (the student zip's fingerprints, the mutant checks' "
                        "reference run), in parallel (make test)")
    p.set_defaults(func=_precompile)

    p = commands.add_parser("starter", help="generate the starter stubs from the reference")
    p.add_argument("assignment")
    p.add_argument("--check", action="store_true", help="only check the committed starter is up to date")
    p.set_defaults(func=_starter)

    p = commands.add_parser("mutants", help="grade every catalogued buggy/correct variant; fail on surprises")
    p.add_argument("assignment")
    p.add_argument("only", nargs="*", help="mutant names [all]")
    p.add_argument("--every-test", action="store_true",
                   help="run every test on every mutant [only the tests its changes can reach: autograder/impact.py]")
    p.set_defaults(func=_mutants)

    p = commands.add_parser("demo", help="build, then grade the reference, the starter and the buggy examples")
    p.add_argument("assignment")
    p.set_defaults(func=_demo)

    p = commands.add_parser("notebook-demo", help="build the handout notebook, execute it with the reference in its "
                                                 "cells (nbclient) and print its check_all() table")
    p.add_argument("assignment")
    p.set_defaults(func=_notebook_demo)

    p = commands.add_parser("regrade", help="grade a whole class (Gradescope export or folder) on a Dask cluster; "
                                           "write results/, scores.csv and report.html")
    p.add_argument("assignment")
    p.add_argument("submissions", help="a Gradescope 'Export Submissions' zip or folder, or a folder with one "
                                       "subfolder or zip per student")
    p.add_argument("-o", "--output", required=True, help="output folder (re-run on it to grade only what changed)")
    p.add_argument("--workers", type=int, default=None, help="local worker processes [one per core]")
    p.add_argument("--scheduler", default=None, help="an existing Dask cluster's scheduler (tcp://host:8786)")
    p.add_argument("--previous", default=None, help="an earlier regrade's output folder: report what changed")
    p.add_argument("--zip", default=None, help="the autograder zip to grade with [built now from the repository]")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--cold", action="store_true",
                   help="start each grade's test process afresh, as `grade` does "
                        "[forked from a warm process per worker: torch imported once]")
    p.set_defaults(func=_regrade)

    p = commands.add_parser("regrade-demo", help="regrade a small generated class, then again after a hidden "
                                                "test's points change; print the diff")
    p.add_argument("assignment", nargs="?", default="transformer")
    p.set_defaults(func=_regrade_demo)

    args = parser.parse_args(argv)
    return args.func(args)
