"""`make bench`: wall time and peak memory of grading, next to `python -c "import torch"`.

Each command runs as a child; its whole process tree's proportional set size (PSS: each
shared page split between the processes that map it, so torch's libraries count once, as
in the container's memory limit) is summed every 10 ms from /proc (Linux), and the peak is
reported. Times are compared with a floor measured in the same run, because this machine
is shared and noisy: for `transformer` the floor is `python -c "import torch"`, for
`foundations` importing torch, transformers' DistilBERT and pandas (what its grader and
its worker each import). Targets: a `transformer` grading run within 3x its floor and its
public tests within 2x; a `foundations` grading run (which trains a model) within 4x its
floor and its public tests within 3x; a `training` grading run (which trains small models) within
4x `import torch` and its public tests within 3x; peak memory of all processes together within
Gradescope's default 768 MB; the sandbox (student code in a worker process) costing at
most 30% more than grading in one process.
"""
from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import tempfile
import time
import zipfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PY = sys.executable
MEMORY_BUDGET_MB = 768
SANDBOX_OVERHEAD = 1.3   # wall time of grading with the sandboxed worker / without


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
            with open(f"/proc/{p}/task/{p}/children") as children:
                stack.extend(int(c) for c in children.read().split())
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return total


def measure(command: list[str], cwd=None, repeat: int = 3) -> tuple[float, float]:
    """(best wall seconds, peak MB of the process tree) over `repeat` runs."""
    best, peak = float("inf"), 0
    for _ in range(repeat):
        start = time.monotonic()
        process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while process.poll() is None:
            peak = max(peak, _tree_pss_kb(process.pid))
            time.sleep(0.01)
        best = min(best, time.monotonic() - start)
        if process.returncode != 0:
            raise SystemExit(f"failed ({process.returncode}): {' '.join(command)}")
    return best, peak / 1024


def student_folder(manifest, tmp: pathlib.Path) -> pathlib.Path:
    """The student zip unpacked, with the reference's files in place of the stubs."""
    from autograder.build import build_student_zip

    with zipfile.ZipFile(build_student_zip(manifest, tmp)) as archive:
        archive.extractall(tmp / "student")
    student = tmp / "student" / manifest.name
    for name in manifest.submission_files:
        (student / name).write_bytes((manifest.path(manifest.reference) / name).read_bytes())
    return student


def grade_command(name: str, submission, out: pathlib.Path, *flags: str) -> list[str]:
    return [PY, "-m", "autograder", "grade", name, str(submission), "-o", str(out), *flags]


def bench_assignment(name: str, floor_code: str, tmp: pathlib.Path) -> dict[str, tuple[float, float]]:
    from autograder import manifest as manifest_module

    manifest = manifest_module.load(name)
    reference, starter = manifest.path(manifest.reference), manifest.path(manifest.starter)
    tmp = tmp / name
    tmp.mkdir()
    student = student_folder(manifest, tmp)
    return {
        f"{name}: floor (python -c \"{floor_code}\")": measure([PY, "-c", floor_code]),
        f"{name}: grade --via-zip (reference)": measure(grade_command(name, reference, tmp / "a.json", "--via-zip"), cwd=ROOT),
        f"{name}: grade (reference)": measure(grade_command(name, reference, tmp / "b.json"), cwd=ROOT),
        f"{name}: grade --no-sandbox (reference)": measure(grade_command(name, reference, tmp / "c.json", "--no-sandbox"), cwd=ROOT),
        f"{name}: grade (starter: every test fails)": measure(grade_command(name, starter, tmp / "d.json"), cwd=ROOT),
        f"{name}: public tests (python run_tests.py)": measure([PY, "run_tests.py", "-q"], cwd=student),
    }


# assignment: (floor, target for a grading run, target for the public tests), in multiples of the floor
ASSIGNMENTS = {"transformer": ("import torch", 3, 2),
               "foundations": ("import torch, pandas; from transformers import DistilBertModel", 4, 3),
               "training": ("import torch", 4, 3)}


def main() -> int:
    ok = True
    print(f"{'command':<75} {'wall s':>7} {'x floor':>8} {'target':>7} {'peak MB':>8}")
    for name, (floor_code, grade_target, public_target) in ASSIGNMENTS.items():
        with tempfile.TemporaryDirectory() as tmp:
            rows = bench_assignment(name, floor_code, pathlib.Path(tmp))
        floor = next(iter(rows.values()))[0]
        for label, (wall, mb) in rows.items():
            target = public_target if "public" in label else grade_target if "grade" in label and "no-sandbox" not in label else None
            within = (target is None or wall / floor <= target) and mb <= MEMORY_BUDGET_MB
            ok &= within
            print(f"{label:<75} {wall:7.2f} {wall / floor:8.2f} {('<= %dx' % target) if target else '':>7} "
                  f"{mb:8.0f} {'' if within else '  OVER TARGET'}")
        overhead = rows[f"{name}: grade (reference)"][0] / rows[f"{name}: grade --no-sandbox (reference)"][0]
        ok &= overhead <= SANDBOX_OVERHEAD
        print(f"{name}: sandbox overhead: grading with the worker takes {overhead:.2f}x the in-process run "
              f"(target <= {SANDBOX_OVERHEAD}x){'' if overhead <= SANDBOX_OVERHEAD else '  OVER TARGET'}")
    print(f"memory budget: {MEMORY_BUDGET_MB} MB for all processes together (Gradescope's default container)")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
