"""report.html: one self-contained page about a graded class, for instructors (opens offline).

It holds a histogram of the totals, a small histogram per problem, each test's share of
submissions that fail it, the "Likely mistake" lines counted (the class's most common mistakes),
the submissions that could not be graded, and, given earlier scores (`--previous OUT/`, or the
scores of a Gradescope export), the diff: who changed, by how much, and which tests caused it,
biggest change first. Plots are matplotlib PNGs embedded as base64 `data:` URIs; the page loads
nothing (no script, no font, no link to fetch).
"""
from __future__ import annotations

import base64
import collections
import html
import io
import pathlib
import statistics

from ..kit import messages
from .outputs import Change, Row, who

DIAGNOSIS_PREFIX = messages.DIAGNOSIS.split("{")[0]   # "Likely mistake: "
MAX_TESTS_PLOTTED = 40

STYLE = """
body { font-family: sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; font-size: 0.9em; } td, th { padding: 2px 8px; border-bottom: 1px solid #eee; }
th { text-align: left; } td.n { text-align: right; font-variant-numeric: tabular-nums; }
.up { color: #1a7f37; } .down { color: #cf222e; } img { max-width: 100%; }
.small { color: #666; font-size: 0.85em; }
"""


def _png(figure) -> str:
    """The figure as an <img> with a base64 data: URI (closed afterwards)."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(figure)
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img class="plot" alt="plot" src="data:image/png;base64,{data}">'


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def totals_plot(scores: list[float], maximum: float) -> str:
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(7, 3))
    axes.hist(scores, bins=min(20, max(5, len(set(scores)))), range=(0, maximum or 1), color="#4472c4",
              edgecolor="white")
    axes.set_xlabel(f"total score (out of {maximum:g})")
    axes.set_ylabel("submissions")
    return _png(figure)


def problems_plot(rows: list[Row], problems: dict) -> str:
    plt = _pyplot()
    names = list(problems)
    columns = 4
    lines = (len(names) + columns - 1) // columns
    figure, grid = plt.subplots(lines, columns, figsize=(10, 1.9 * lines), squeeze=False)
    for k, name in enumerate(names):
        axes = grid[k // columns][k % columns]
        values = [r.problems.get(name, (0.0, 0.0))[0] for r in rows if r.results is not None]
        axes.hist(values, bins=8, range=(0, problems[name].points or 1), color="#70ad47", edgecolor="white")
        axes.set_title(f"{name} (/{problems[name].points:g})", fontsize=8)
        axes.tick_params(labelsize=7)
    for k in range(len(names), lines * columns):
        grid[k // columns][k % columns].axis("off")
    figure.tight_layout()
    return _png(figure)


def failure_shares(rows: list[Row]) -> list[tuple[str, float, int]]:
    """(test name, share of the graded submissions failing it, how many), most failed first; a
    submission that could not be graded (empty, corrupt, ...) fails every test and is left out."""
    graded = [r for r in rows if r.results is not None and r.status == "graded"]
    failed, seen = collections.Counter(), collections.Counter()
    for row in graded:
        for test in row.results.get("tests") or []:
            seen[test["name"]] += 1
            failed[test["name"]] += test.get("status") == "failed"
    shares = [(name, failed[name] / seen[name], failed[name]) for name in seen]
    return sorted(shares, key=lambda t: (-t[1], t[0]))


def failures_plot(shares: list[tuple[str, float, int]]) -> str:
    plt = _pyplot()
    shown = [s for s in shares if s[2]][:MAX_TESTS_PLOTTED] or shares[:1]
    figure, axes = plt.subplots(figsize=(10, 0.25 * len(shown) + 0.8))
    labels = [name if len(name) <= 70 else name[:67] + "..." for name, _, _ in shown]
    axes.barh(range(len(shown)), [share * 100 for _, share, _ in shown], color="#c00000")
    axes.set_yticks(range(len(shown)), labels, fontsize=7)
    axes.invert_yaxis()
    axes.set_xlim(0, 100)
    axes.set_xlabel("% of graded submissions that fail the test (those that could not be graded left out)")
    return _png(figure)


def mistakes(rows: list[Row]) -> list[tuple[str, int]]:
    """The "Likely mistake" lines of every test output, counted once per submission."""
    counts = collections.Counter()
    for row in rows:
        if row.results is None:
            continue
        lines = {line.strip() for test in row.results.get("tests") or []
                 for line in (test.get("output") or "").splitlines() if line.strip().startswith(DIAGNOSIS_PREFIX)}
        counts.update(lines)
    return counts.most_common()


def _table(header: list[str], body: list[list[str]], numeric: set[int] = frozenset()) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    rows = "".join("<tr>" + "".join(f'<td class="n">{c}</td>' if k in numeric else f"<td>{c}</td>"
                                    for k, c in enumerate(cells)) + "</tr>" for cells in body)
    return f"<table><tr>{head}</tr>{rows}</table>"


def diff_section(changes: list[Change] | None, previous, export: bool) -> str:
    if changes is None:
        return "<p>No earlier scores: run with <code>--previous OLD_OUT/</code> (or regrade a Gradescope export).</p>"
    source = f"the results in {html.escape(str(previous))}" if previous else "the scores in the Gradescope export"
    if not changes:
        return f"<p>No score changed against {source}.</p>"
    body = []
    for change in changes:
        cls = "up" if change.delta > 0 else "down"
        tests = "; ".join(f"{html.escape(name)} ({delta:+g})" for name, delta in change.tests[:8])
        if len(change.tests) > 8:
            tests += f"; and {len(change.tests) - 8} more"
        body.append([html.escape(who(change.students, change.key)), html.escape(change.key), f"{change.before:g}",
                     f"{change.after:g}", f'<span class="{cls}">{change.delta:+g}</span>',
                     tests or '<span class="small">(totals only)</span>'])
    up = sum(1 for c in changes if c.delta > 0)
    return (f"<p>{len(changes)} submissions changed against {source} ({up} up, {len(changes) - up} down), "
            "biggest change first.</p>"
            + _table(["who", "submission", "before", "after", "change", "tests that caused it"], body, {2, 3, 4}))


def render(manifest, rows: list[Row], changes: list[Change] | None, previous=None, export: bool = False) -> str:
    graded = [r for r in rows if r.results is not None]
    scores = [r.score for r in graded]
    failed = [r for r in rows if r.status in ("failed", "rejected", "pending")]
    title = f"Regrade of {manifest.name}: {manifest.title}"
    parts = [f"<h1>{html.escape(title)}</h1>",
             f"<p>{len(rows)} submissions, {len(graded)} with results, {len(failed)} failed to grade or not graded."]
    if scores:
        parts.append(f" Total: mean {statistics.mean(scores):.2f}, median {statistics.median(scores):.2f}, "
                     f"out of {manifest.total_points:g}.</p>")
        parts += ["<h2>Totals</h2>", totals_plot(scores, manifest.total_points),
                  "<h2>Problems</h2>", problems_plot(rows, manifest.problems)]
        shares = failure_shares(rows)
        parts += ["<h2>Tests failed</h2>", failures_plot(shares),
                  "<details><summary>every test</summary>"
                  + _table(["test", "failed by", "share"],
                           [[html.escape(n), str(k), f"{s:.0%}"] for n, s, k in shares], {1, 2}) + "</details>"]
    else:
        parts.append("</p>")
    found = mistakes(rows)
    parts.append("<h2>Most common mistakes</h2>")
    parts.append(_table(["submissions", "diagnosis"], [[str(n), html.escape(line)] for line, n in found], {0})
                 if found else "<p>No diagnosed mistake.</p>")
    parts += ["<h2>What changed</h2>", diff_section(changes, previous, export)]
    parts.append("<h2>Not graded</h2>")
    parts.append(_table(["submission", "who", "status", "reason"],
                        [[html.escape(r.key), html.escape(who(r.students, r.key)), r.status, html.escape(r.reason)]
                         for r in failed]) if failed else "<p>Every submission was graded.</p>")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>\n"
            + "\n".join(parts) + "\n</body></html>\n")


def write_report(path: pathlib.Path, manifest, rows: list[Row], changes, previous=None,
                 export: bool = False) -> pathlib.Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(manifest, rows, changes, previous, export), encoding="utf-8")
    return path
