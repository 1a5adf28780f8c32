"""The public tests' setup: the course's pytest plugin, and what `run_tests.py` adds to it.

The plugin (autograder/kit/plugin.py) gives the `student` fixture (your files in this
folder), the `problem` marker, and failure messages that show your own code only. This file:

- runs the tests in the handout's problem order (problems.json, written with this zip);
- `--problem NAME` (several allowed) keeps the tests of those problems only, and `-k NAME`
  matches a problem's name as well as a test's;
- ends every run with a table: each problem, its public tests passed, and the points they earn;
- names the likely mistake behind a failure, as the grader does, when your result matches a
  fingerprint of a known wrong solution's result on that test (fingerprints.json: hashes only,
  written with this zip; see autograder/kit/fingerprints.py).
"""
from __future__ import annotations

import json
import pathlib
import textwrap

import pytest

pytest_plugins = ["autograder.kit.fingerprints", "autograder.kit.plugin"]  # this order: the plugin imports fingerprints

HERE = pathlib.Path(__file__).resolve().parent
_CONFIG: dict = {}  # the session's config, for hooks that get none
PROBLEMS_FILE = HERE / "problems.json"
FINGERPRINTS_FILE = HERE / "fingerprints.json"
NOTE_HIDDEN = ("Points: what your public tests earn / the problem's points. Each problem's points are "
               "split equally over its public and hidden tests; the hidden tests, run by the grader "
               "after you submit, decide the rest.")
CARRY = "Here the public tests carry {public} of these {points} points."
NOT_RUN = "{count} problem(s) not run this time: {names}."


def load_problems(path: pathlib.Path = PROBLEMS_FILE) -> list[dict]:
    """[{name, points, file, public_tests, hidden_tests}] in the handout's order ([] if absent)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))["problems"]
    except (OSError, ValueError, KeyError):
        return []


def pytest_addoption(parser):
    parser.getgroup("autograder").addoption(
        "--problem", action="append", default=[], metavar="NAME",
        help="run only the tests of this problem (repeat it, or separate names with commas)")


def _problems_of(item) -> list[str]:
    return [name for mark in item.iter_markers("problem") for name in mark.args]


def selected_problems(config) -> list[str]:
    return [name.strip() for value in config.getoption("--problem") for name in value.split(",") if name.strip()]


def load_budgets(path: pathlib.Path = PROBLEMS_FILE) -> dict:
    """The assignment's training budgets per device ({} if absent), for kit/devices.py."""
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("budgets", {})
    except (OSError, ValueError, AttributeError):
        return {}


def load_given(path: pathlib.Path = PROBLEMS_FILE) -> dict:
    """The handout's own functions and classes in your files ({} if absent): a failure message
    never names a call of one as the last call into your code."""
    try:
        return dict(json.loads(path.read_text(encoding="utf-8")).get("given", {}))
    except (OSError, ValueError, AttributeError, TypeError):
        return {}


def pytest_configure(config):
    from autograder.kit import adapter, fingerprints

    fingerprints.load(FINGERPRINTS_FILE)
    if not config.getoption("--given"):
        adapter.set_given(load_given())
    budgets = load_budgets()
    if budgets and not config.getoption("--budgets"):
        from autograder.kit import devices

        devices.set_budgets(budgets)
    config._student_problems = load_problems()
    config._student_outcomes = {}
    known = [p["name"] for p in config._student_problems]
    unknown = [name for name in selected_problems(config) if known and name not in known]
    if unknown:
        raise pytest.UsageError(f"no problem named {', '.join(unknown)}; the problems are: {', '.join(known)}")


def pytest_itemcollected(item):
    """`-k softmax` selects the tests of problem softmax, whatever the tests are called."""
    item.extra_keyword_matches.update(_problems_of(item))


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(session, config, items):
    """Keep the `--problem` tests only, and order tests by their problem's place in the handout."""
    wanted = set(selected_problems(config))
    if wanted:
        kept = [item for item in items if wanted & set(_problems_of(item))]
        dropped = [item for item in items if item not in kept]
        if dropped:
            config.hook.pytest_deselected(items=dropped)
        items[:] = kept
    order = {p["name"]: k for k, p in enumerate(config._student_problems)}
    position = {item.nodeid: k for k, item in enumerate(items)}
    items.sort(key=lambda item: (min((order.get(p, len(order)) for p in _problems_of(item)), default=len(order)),
                                 position[item.nodeid]))


@pytest.hookimpl(tryfirst=True)  # before the plugin, which forgets a test's `score` at its teardown
def pytest_runtest_logreport(report):
    config = _CONFIG.get("config")
    if config is None:
        return
    entry = config._student_outcomes.get(report.nodeid)
    if entry is None:
        return
    if report.failed or report.skipped:
        entry["passed"] = False
    if report.when == "teardown":
        from autograder.kit import plugin

        given = plugin._CONFIG.get("scores", {}).get(report.nodeid)
        if given is not None:
            entry["fraction"] = given.fraction


def pytest_sessionstart(session):
    _CONFIG["config"] = session.config


def pytest_collection_finish(session):
    for item in session.items:
        session.config._student_outcomes[item.nodeid] = {"passed": True, "fraction": 1.0,
                                                         "problems": _problems_of(item), "ran": False}


def pytest_runtest_logstart(nodeid, location):
    config = _CONFIG.get("config")
    if config is not None and nodeid in config._student_outcomes:
        config._student_outcomes[nodeid]["ran"] = True


def summary_rows(problems: list[dict], outcomes: dict) -> list[dict]:
    """Per problem that ran: public tests passed and run, and the points they earn.

    A problem's points are split equally over all its tests, public and hidden (as the grader
    does), so a passing public test earns points / (public + hidden) times its partial credit."""
    rows = []
    for problem in problems:
        name = problem["name"]
        ran = [o for o in outcomes.values() if name in o["problems"] and o.get("ran")]
        if not ran:
            continue
        total = max(1, problem["public_tests"] + problem["hidden_tests"])
        passed = [o for o in ran if o["passed"]]
        earned = problem["points"] * sum(o["fraction"] for o in passed) / total
        public_max = problem["points"] * problem["public_tests"] / total
        rows.append({"name": name, "passed": len(passed), "run": len(ran), "earned": earned,
                     "public_max": public_max, "points": problem["points"]})
    return rows


def _number(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".")


def format_table(rows: list[dict], not_run: list[str]) -> list[str]:
    width = max([len("problem"), *(len(r["name"]) for r in rows)]) + 2
    row = "{:<%d}{:>8} / {:<4}{:>9} / {}" % width
    lines = [f"{'problem':<{width}}{'public tests':>15}{'points':>11}"]
    for r in rows:
        lines.append(row.format(r["name"], r["passed"], r["run"], _number(r["earned"]), _number(r["points"])))
    if rows:
        passed, run = sum(r["passed"] for r in rows), sum(r["run"] for r in rows)
        earned, points = sum(r["earned"] for r in rows), sum(r["points"] for r in rows)
        lines.append(row.format("total", passed, run, _number(earned), _number(points)))
        public_max = sum(r["public_max"] for r in rows)
        note = NOTE_HIDDEN + " " + CARRY.format(public=_number(public_max), points=_number(points))
        lines += ["", *textwrap.wrap(note, 88)]
    if not_run:
        lines += textwrap.wrap(NOT_RUN.format(count=len(not_run), names=", ".join(not_run)), 88)
    return lines


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    problems = getattr(config, "_student_problems", None)
    if not problems:
        return
    rows = summary_rows(problems, config._student_outcomes)
    shown = {r["name"] for r in rows}
    not_run = [p["name"] for p in problems if p["name"] not in shown]
    terminalreporter.write_sep("=", "points of the public tests")
    for line in format_table(rows, not_run):
        terminalreporter.write_line(line)
