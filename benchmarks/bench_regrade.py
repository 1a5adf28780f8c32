"""`make bench` (second part), `make bench-regrade`: the throughput of `regrade` (issue 14).

A generated class (autograder/regrade/fixtures.py: the reference, catalogued mutants, crashes and
broken submissions, in proportion) is regraded on a LocalCluster of 2 workers, then of 1, each
into a fresh output folder. Figures and targets:

- throughput with 2 workers, in submissions/s, cluster start included: >= 0.5 (issue 14, for 200
  `transformer` submissions on 2 cores), next to 1 / (the wall time of one `grade` of the
  reference, measured alone in the same run): the speed-up over grading one by one. The
  target is in submissions/s, but this machine's speed drifts by a third over a day (the same
  code measured 0.46 and 0.62 submission/s, hours apart): the floor, bench.py's (`python -c
  "import torch"` for `transformer`; best of 3, before and after the class), is printed too,
  and the class's time in floors compares runs made at different times;
- memory stays flat: the resident set size (RSS) of the Dask worker processes and their warm
  launchers (the processes that live through the class; each grade's own test process and
  sandbox come and go), summed, sampled every 0.5 s, in the last quarter of the run against the
  first: growth <= 50 MB. RSS is what a leak in these processes grows. Their proportional and
  unique set sizes (PSS, USS) are printed too, but they are no measure of a leak here: a warm
  launcher shares its pages with the test processes it forks (copy on write), so its PSS and USS
  drop while one runs and rise when none does, and a class whose last minutes grade one slow
  submission on one worker, the other idle, shows "growth" with no byte leaked;
- scaling from 1 to 2 workers on 2 cores: the 1-worker time / the 2-worker time: >= 1.6x, else
  README explains why.

Usage: python benchmarks/bench_regrade.py [--size N] [--assignment NAME] [--skip-one-worker] [--cold-too].
The exit status is 1 when a target is missed (every figure is printed first).
"""
from __future__ import annotations

import argparse
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

THROUGHPUT_TARGET = 0.5      # submissions/s with 2 workers on 2 cores
MEMORY_GROWTH_MB = 50        # workers' PSS, last quarter - first quarter
SCALING_TARGET = 1.6


def floor_seconds(assignment: str, repeat: int = 3) -> float:
    """The best wall time of bench.py's floor for `assignment` (`python -c "import torch"` for `transformer`)."""
    from bench import FLOORS, PY, best  # benchmarks/bench.py, beside this file

    return best([PY, "-c", FLOORS[assignment]], repeat).wall


def one_grade_seconds(assignment: str, submission: pathlib.Path) -> float:
    """The wall time of one `python -m autograder grade` (what grading one by one costs)."""
    with tempfile.TemporaryDirectory() as tmp:
        start = time.monotonic()
        subprocess.run([sys.executable, "-m", "autograder", "grade", assignment, str(submission), "-o",
                        f"{tmp}/r.json"], cwd=ROOT, check=True, capture_output=True)
        return time.monotonic() - start


def _long_lived(workers: list[int]) -> list[int]:
    """The Dask workers and their warm launchers (regrade/warm.py: a direct child whose command
    line names __warm__; the test processes it forks are its children, not the worker's)."""
    import psutil

    pids = list(workers)
    for pid in workers:
        try:
            pids += [c.pid for c in psutil.Process(pid).children() if "__warm__" in " ".join(c.cmdline())]
        except psutil.Error:
            continue
    return pids


def _memory_mb(pids: list[int]) -> tuple[float, float, float]:
    """(RSS, PSS, USS) of the long-lived processes, summed, in MB."""
    import psutil

    rss = pss = uss = 0
    for pid in _long_lived(pids):
        try:
            info = psutil.Process(pid).memory_full_info()
        except (psutil.Error, AttributeError):
            continue
        rss, pss, uss = rss + info.rss, pss + info.pss, uss + info.uss
    return rss / 2**20, pss / 2**20, uss / 2**20


def timed_regrade(assignment: str, submissions: pathlib.Path, out: pathlib.Path, workers: int,
                  warm: bool = True) -> dict:
    """Regrade on a new LocalCluster of `workers` (its start counted), sampling its workers' memory."""
    from distributed import Client, LocalCluster

    from autograder.regrade import regrade

    start = time.monotonic()
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                           memory_limit=0)
    client = Client(cluster)
    pids = list(client.run(os.getpid).values())
    samples, result, stop = [], {}, threading.Event()

    def run():
        result["outcome"] = regrade(assignment, submissions, out, scheduler=cluster.scheduler_address,
                                    progress=True, echo=lambda line: None, warm=warm)
        stop.set()

    thread = threading.Thread(target=run)
    thread.start()
    while not stop.wait(0.5):
        done = len(list((out / "state").glob("*.json"))) if (out / "state").is_dir() else 0
        samples.append((done, *_memory_mb(pids)))
    thread.join()
    seconds = time.monotonic() - start
    client.close()
    cluster.close()
    return {"seconds": seconds, "outcome": result["outcome"], "samples": samples}


def memory_growth(samples: list[tuple[int, float, float, float]], which: int = 1) -> tuple[float, float, float]:
    """(first quarter's median, last quarter's, growth) in MB, of RSS (`which` 1), PSS (2) or USS (3)."""
    values = [sample[which] for sample in samples if sample[which] > 0]
    if len(values) < 4:
        return 0.0, 0.0, 0.0
    quarter = max(1, len(values) // 4)
    first, last = statistics.median(values[:quarter]), statistics.median(values[-quarter:])
    return first, last, last - first


def main(argv=None) -> int:
    from autograder import manifest as manifest_module
    from autograder.regrade.fixtures import make_class, pattern

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=200, help="submissions in the class [200, as issue 14]")
    parser.add_argument("--assignment", default="transformer")
    parser.add_argument("--skip-one-worker", action="store_true", help="no 1-worker run (no scaling figure)")
    parser.add_argument("--cold-too", action="store_true",
                        help="also regrade with 2 workers and --cold (each test process started afresh)")
    args = parser.parse_args(argv)
    manifest = manifest_module.load(args.assignment)
    missed = []
    with tempfile.TemporaryDirectory(prefix="bench-regrade-") as tmp:
        tmp = pathlib.Path(tmp)
        kinds = pattern(args.size)
        submissions = make_class(manifest, tmp / "class", kinds)
        counts = {k: kinds.count(k) for k in dict.fromkeys(kinds)}
        print(f"class of {args.size} {args.assignment} submissions: "
              + ", ".join(f"{n} {k}" for k, n in counts.items()) + f"; {os.cpu_count()} cores; "
              f"load {os.getloadavg()[0]:.1f}")
        floor_before = floor_seconds(args.assignment)
        single = one_grade_seconds(args.assignment, manifest.path(manifest.reference))
        two = timed_regrade(args.assignment, submissions, tmp / "out-2", 2)
        floor_after = floor_seconds(args.assignment)
        rate = args.size / two["seconds"]
        floor = (floor_before + floor_after) / 2
        floors = two["seconds"] / floor
        print(f"floor (bench.py's for {args.assignment}, best of 3): {floor_before:.2f} s before, {floor_after:.2f} s "
              f"after; the class took {floors:.0f} floors, {floors / args.size:.2f} a submission")
        print(f"one grade (reference, alone): {single:.1f} s -> 1 / that = {1 / single:.3f} submission/s")
        print(f"regrade, 2 workers: {two['seconds']:.1f} s = {rate:.3f} submission/s "
              f"({rate * single:.2f}x grading one by one); target >= {THROUGHPUT_TARGET}: "
              + ("met" if rate >= THROUGHPUT_TARGET else "MISSED"))
        if rate < THROUGHPUT_TARGET:
            missed.append("throughput")
        first, last, growth = memory_growth(two["samples"])
        shared = [memory_growth(two["samples"], which) for which in (2, 3)]
        print(f"workers' RSS: {first:.0f} MB in the first quarter, {last:.0f} MB in the last "
              f"({growth:+.0f} MB); target growth <= {MEMORY_GROWTH_MB} MB: "
              + ("met" if growth <= MEMORY_GROWTH_MB else "MISSED")
              + "".join(f"; {name}: {a:.0f} MB, then {b:.0f} MB ({c:+.0f} MB)"
                        for name, (a, b, c) in zip(("PSS", "USS"), shared)))
        if growth > MEMORY_GROWTH_MB:
            missed.append("memory")
        failed = [r for r in two["outcome"].rows if r.status not in ("graded", "failed", "rejected")]
        if failed:
            missed.append("pending rows")
            print(f"UNEXPECTED: {len(failed)} submissions left ungraded")
        if args.cold_too:
            cold = timed_regrade(args.assignment, submissions, tmp / "out-cold", 2, warm=False)
            print(f"regrade --cold, 2 workers: {cold['seconds']:.1f} s = {args.size / cold['seconds']:.3f} "
                  f"submission/s (warm: {two['seconds'] and cold['seconds'] / two['seconds']:.2f}x faster)")
        if not args.skip_one_worker:
            one = timed_regrade(args.assignment, submissions, tmp / "out-1", 1)
            scaling = one["seconds"] / two["seconds"]
            print(f"regrade, 1 worker: {one['seconds']:.1f} s = {args.size / one['seconds']:.3f} submission/s; "
                  f"1 -> 2 workers: {scaling:.2f}x; target >= {SCALING_TARGET}x: "
                  + ("met" if scaling >= SCALING_TARGET else "MISSED (README, 'Grade a class', explains)"))
            if scaling < SCALING_TARGET:
                missed.append("scaling")
    if missed:
        print("missed: " + ", ".join(missed))
    return 1 if missed else 0


if __name__ == "__main__":
    raise SystemExit(main())
