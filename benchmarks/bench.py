"""`make bench`: the cost of grading, each figure next to its target (issue 12's table).

Times are ratios to a floor measured in the same run (this machine is shared and noisy): for
`transformer` the floor is `python -c "import torch"`, for `foundations` importing torch,
pandas and transformers' DistilBERT (what its tests need). CPU seconds are user + sys of the
whole process tree (os.wait4 of the command: every process it started and waited for, the
sandbox's zygote and its workers included). Peak memory is the proportional set size (PSS:
each shared page split between the processes that map it, so torch's libraries count once, as
in a container's memory limit) of the whole tree, summed every 20 ms from /proc.

Figures and targets:
- `transformer` graded through the zip, sandboxed: wall <= 2.0x the floor;
- `foundations` graded: wall <= 2.5x its floor; `training` graded: wall <= 4x its floor (issue 13:
  importing torch and transformers' Trainer, and building the tiny DistilBERT classifier of its
  fine-tuning tests);
- the sandbox's overhead, sandboxed / --no-sandbox: wall and CPU seconds <= 1.15x each
  (medians of --repeat paired runs);
- `transformer` graded with one CPU (`taskset -c 0`) / the floor on that CPU: <= 2.5x;
- peak PSS of all processes: `transformer` <= 500 MB, `foundations` <= 768 MB (Gradescope's
  default container), `training` <= 1 GB;
- a worker restart after a crash (a submission whose every function kills its process; the
  grader's log gives each restart's time, from the old worker's kill to the new one's first
  answer): median <= 0.3 s.

Usage: python benchmarks/bench.py [transformer] [foundations] [training] [--repeat N]. The exit status is 1
when a target is missed (every figure is printed first).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PY = sys.executable

FLOORS = {"transformer": "import torch",
          "foundations": "import torch, pandas; from transformers import DistilBertModel",
          "training": "import torch; from transformers import Trainer, DistilBertConfig, "
                      "DistilBertForSequenceClassification as C; C(DistilBertConfig(vocab_size=95, dim=32, "
                      "n_layers=2, n_heads=4, hidden_dim=64))"}
GRADE_TARGET = {"transformer": 2.0, "foundations": 2.5, "training": 4.0}   # x the floor, wall (issues 12, 13)
PSS_TARGET_MB = {"transformer": 500, "foundations": 768, "training": 1024}
SANDBOX_OVERHEAD = 1.15   # sandboxed / --no-sandbox, wall and CPU
ONE_CPU_TARGET = 2.5      # transformer graded under taskset -c 0 / the floor under taskset -c 0
RESTART_TARGET_S = 0.3

CRASHER = '''

# ---- bench: every function and class of this file kills its process when called ----
import inspect as _inspect
import os as _os
import signal as _signal


def _crash(*args, **kwargs):
    _os.kill(_os.getpid(), _signal.SIGKILL)


for _name, _value in list(globals().items()):
    if getattr(_value, "__module__", None) != __name__ or _name.startswith("_"):
        continue
    if _inspect.isfunction(_value):
        globals()[_name] = _crash
    elif _inspect.isclass(_value):
        _value.__init__ = _crash
'''


@dataclasses.dataclass
class Measure:
    wall: float
    cpu: float
    peak_mb: float
    output: str


def _tree_pss_kb(pid: int) -> int:
    total, stack, seen = 0, [pid], set()
    while stack:
        p = stack.pop()
        if p in seen:
            continue
        seen.add(p)
        try:
            with open(f"/proc/{p}/smaps_rollup") as rollup:
                for line in rollup:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1])
                        break
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as children:
                    stack.extend(int(c) for c in children.read().split())
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return total


def run(command: list[str], cwd=None, memory: bool = False) -> Measure:
    """Run `command` once: wall seconds, CPU seconds of its whole tree, peak PSS (if `memory`)."""
    with tempfile.TemporaryFile() as output:
        start = time.monotonic()
        process = subprocess.Popen(command, cwd=cwd, stdout=output, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL)
        peak = 0
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            if memory:
                peak = max(peak, _tree_pss_kb(process.pid))
            time.sleep(0.02)
        wall = time.monotonic() - start
        process.returncode = os.waitstatus_to_exitcode(status)
        output.seek(0)
        text = output.read().decode(errors="replace")
    if process.returncode != 0:
        raise SystemExit(f"failed ({process.returncode}): {' '.join(command)}\n{text[-3000:]}")
    return Measure(wall, usage.ru_utime + usage.ru_stime, peak / 1024, text)


def full_marks(path: pathlib.Path) -> None:
    """A reference's grading run must give full marks, or its figures measure something broken."""
    results = json.loads(path.read_text(encoding="utf-8"))
    most = sum(test.get("max_score", 0) for test in results.get("tests", []))
    if not most or abs(results.get("score", 0) - most) > 1e-6:
        raise SystemExit(f"{path}: the reference scored {results.get('score')} of {most}")


def best(command: list[str], repeat: int, cwd=None) -> Measure:
    runs = [run(command, cwd) for _ in range(repeat)]
    return min(runs, key=lambda m: m.wall)


def grade_command(name: str, submission, out: pathlib.Path, *flags: str) -> list[str]:
    return [PY, "-m", "autograder", "grade", name, str(submission), "-o", str(out), *flags]


def crashing_submission(manifest, tmp: pathlib.Path) -> pathlib.Path:
    """The reference with every function and class made to kill its process when called."""
    folder = tmp / "crashing"
    shutil.copytree(manifest.path(manifest.reference), folder)
    for name in manifest.submission_files:
        path = folder / name
        path.write_text(path.read_text() + CRASHER)
    return folder


class Table:
    """Figures, each with its target; `ok` is False once one misses."""

    def __init__(self):
        self.ok = True
        print(f"{'figure':<74} {'measured':>10} {'target':>10}")

    def row(self, label: str, value: float, target: float | None, unit: str = "x", detail: str = "") -> None:
        within = target is None or value <= target
        self.ok &= within
        shown = (f"{value:.2f}{unit}" if unit == "x" else f"{value:.0f} {unit}" if unit == "MB"
                 else f"{value:.3f} {unit}")
        goal = "" if target is None else (f"<= {target:g}{unit}" if unit == "x" else f"<= {target:g} {unit}")
        print(f"{label:<74} {shown:>10} {goal:>10}{'' if within else '  MISSED'}"
              + (f"\n    {detail}" if detail else ""), flush=True)


def bench_transformer(table: Table, tmp: pathlib.Path, repeat: int) -> None:
    from autograder import manifest as manifest_module

    manifest = manifest_module.load("transformer")
    reference = manifest.path(manifest.reference)
    floor = best([PY, "-c", FLOORS["transformer"]], max(repeat, 2))
    zipped = run(grade_command("transformer", reference, tmp / "a.json", "--via-zip"), ROOT, memory=True)
    full_marks(tmp / "a.json")
    table.row("transformer: grade --via-zip (reference) / floor, wall", zipped.wall / floor.wall,
              GRADE_TARGET["transformer"], detail=f"{zipped.wall:.2f} s against {floor.wall:.2f} s "
              f"(python -c \"{FLOORS['transformer']}\"); CPU {zipped.cpu:.2f} s against {floor.cpu:.2f} s")
    table.row("transformer: peak PSS of all processes (grade --via-zip)", zipped.peak_mb,
              PSS_TARGET_MB["transformer"], unit="MB")
    _overhead(table, "transformer", reference, tmp, repeat)
    one_cpu = ["taskset", "-c", "0"]
    floor_1 = best([*one_cpu, PY, "-c", FLOORS["transformer"]], max(repeat, 2))
    graded_1 = run([*one_cpu, *grade_command("transformer", reference, tmp / "t.json", "--via-zip")], ROOT)
    full_marks(tmp / "t.json")
    table.row("transformer on one CPU (taskset -c 0): grade --via-zip / floor, wall", graded_1.wall / floor_1.wall,
              ONE_CPU_TARGET, detail=f"{graded_1.wall:.2f} s against {floor_1.wall:.2f} s")
    _restarts(table, manifest, tmp)


def _overhead(table: Table, name: str, reference, tmp: pathlib.Path, repeat: int) -> None:
    """Medians of `repeat` paired runs, sandboxed then not."""
    walls, cpus = [], []
    for i in range(repeat):
        sandboxed = run(grade_command(name, reference, tmp / f"s{i}.json"), ROOT)
        trusted = run(grade_command(name, reference, tmp / f"n{i}.json", "--no-sandbox"), ROOT)
        full_marks(tmp / f"s{i}.json"), full_marks(tmp / f"n{i}.json")
        walls.append(sandboxed.wall / trusted.wall)
        cpus.append(sandboxed.cpu / trusted.cpu)
        last = (f"last pair: {sandboxed.wall:.2f} s / {trusted.wall:.2f} s wall, "
                f"{sandboxed.cpu:.2f} s / {trusted.cpu:.2f} s CPU")
    table.row(f"{name}: sandbox overhead, wall (grade / grade --no-sandbox, median of {repeat})",
              statistics.median(walls), SANDBOX_OVERHEAD, detail=last)
    table.row(f"{name}: sandbox overhead, CPU seconds of all processes (median of {repeat})",
              statistics.median(cpus), SANDBOX_OVERHEAD)


def _restarts(table: Table, manifest, tmp: pathlib.Path) -> None:
    crashing = crashing_submission(manifest, tmp)
    graded = run(grade_command(manifest.name, crashing, tmp / "c.json", "--verbose"), ROOT)
    if json.loads((tmp / "c.json").read_text(encoding="utf-8")).get("score"):
        raise SystemExit("the crashing submission scored points: it does not crash")
    found = re.findall(r"(\d+) restarts \(after a crash, a timeout, or for another file's tests\): "
                       r"median ([\d.]+) s, max ([\d.]+) s", graded.output)
    if not found:
        table.row(f"{manifest.name}: worker restart after a crash (no restart logged)", float("inf"),
                  RESTART_TARGET_S, unit="s")
        return
    count = sum(int(c) for c, _, _ in found)
    median = max(float(m) for _, m, _ in found)
    longest = max(float(x) for _, _, x in found)
    table.row(f"{manifest.name}: worker restart after a crash (median of {count})", median, RESTART_TARGET_S,
              unit="s", detail=f"longest {longest:.3f} s; the whole crashing run took {graded.wall:.2f} s")


def bench_graded(name: str, table: Table, tmp: pathlib.Path, repeat: int) -> None:
    """`foundations` and `training`: the reference graded (sandboxed) against the floor, and its memory."""
    from autograder import manifest as manifest_module

    manifest = manifest_module.load(name)
    floor = best([PY, "-c", FLOORS[name]], max(repeat, 2))
    graded = run(grade_command(name, manifest.path(manifest.reference), tmp / "f.json"), ROOT, memory=True)
    full_marks(tmp / "f.json")
    table.row(f"{name}: grade (reference) / floor, wall", graded.wall / floor.wall, GRADE_TARGET[name],
              detail=f"{graded.wall:.2f} s against {floor.wall:.2f} s (python -c \"{FLOORS[name]}\"); "
              f"CPU {graded.cpu:.2f} s against {floor.cpu:.2f} s")
    table.row(f"{name}: peak PSS of all processes (grade)", graded.peak_mb, PSS_TARGET_MB[name], unit="MB")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("assignments", nargs="*", help="transformer, foundations, training (default: all)")
    parser.add_argument("--repeat", type=int, default=2, help="paired runs for the sandbox's overhead (median)")
    args = parser.parse_args(argv)
    args.assignments = args.assignments or list(FLOORS)
    unknown = set(args.assignments) - set(FLOORS)
    if unknown:
        parser.error(f"unknown assignment(s): {', '.join(sorted(unknown))}")
    table = Table()
    for name in args.assignments:
        with tempfile.TemporaryDirectory(prefix=f"bench-{name}-") as tmp:
            if name == "transformer":
                bench_transformer(table, pathlib.Path(tmp), args.repeat)
            else:
                bench_graded(name, table, pathlib.Path(tmp), args.repeat)
    print("all targets met" if table.ok else "some targets MISSED")
    return 0 if table.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
