"""Grade many submissions on a Dask cluster: a LocalCluster of worker processes by default, or an
existing cluster given by its scheduler's address. Both take the same path (`grade_all`).

The autograder zip is scattered to every worker once (`broadcast=True`); each task carries its
submission's bytes (no shared filesystem). A worker that dies mid-task has its tasks run again
elsewhere by the scheduler; a submission whose grading kills workers again and again
(`distributed.scheduler.allowed-failures`) ends as a failed row, never a stopped run. Results
are kept as they arrive (outputs.record), so Ctrl-C loses only what was running.
"""
from __future__ import annotations

import contextlib
import logging
import os
import sys
import uuid

from . import outputs
from .worker import grade_one

LOST = "its grading killed the worker {n} times (the scheduler gave up)"

# Dask settings for the LocalCluster (its scheduler, nannies and workers all read them when they
# start). Each of Dask's own defaults here serves the dashboard, which a LocalCluster of `regrade`
# does not open, and together they cost an idle 2-worker cluster about 155 ms of CPU a second
# (8% of 2 cores, taken from the grades): 15 ms with these (benchmarks/RESULTS.md, session 13).
LOCAL_CLUSTER_CONFIG = {
    "distributed.worker.profile.enabled": False,       # [True] the workers' sampling profiler, every 10 ms
    "distributed.admin.tick.interval": "1s",           # [20ms] each event loop's "blocked for N s" watchdog
    "distributed.admin.system-monitor.interval": "5s",  # [500ms] CPU and memory plots for the dashboard
}
RAISED = "grading raised {error}"


@contextlib.contextmanager
def connect(workers: int | None = None, scheduler: str | None = None):
    """A dask.distributed Client: on the cluster at `scheduler`, else on a new LocalCluster of
    `workers` single-threaded worker processes (default: one per core)."""
    from distributed import Client, LocalCluster

    if scheduler:
        client = Client(scheduler, timeout="60s")
        try:
            yield client
        finally:
            client.close()
        return
    from dask import config

    with config.set(LOCAL_CLUSTER_CONFIG):
        cluster = LocalCluster(n_workers=workers or os.cpu_count() or 1, threads_per_worker=1, processes=True,
                               dashboard_address=None, memory_limit=0, silence_logs=logging.ERROR)
    client = Client(cluster)
    try:
        yield client
    finally:
        client.close()
        cluster.close()


def gpu_resources(client, manifest, echo=print) -> dict | None:
    """{"GPU": 1} for an assignment whose manifest asks for a GPU (warned when no worker offers one)."""
    if not manifest.gpu:
        return None
    workers = client.scheduler_info().get("workers", {}).values()
    if not any(w.get("resources", {}).get("GPU") for w in workers):
        echo("warning: the assignment asks for a GPU and no worker offers the resource GPU yet "
             "(start workers with `--resources GPU=1`); the tasks wait for one")
    return {"GPU": 1}


def grade_all(client, manifest, todo: list, autograder_zip: bytes, digest: str, out, *, progress: bool = True,
              echo=print, local: bool = False, warm: bool = True,
              seconds: dict[str, float] | None = None) -> tuple[int, bool]:
    """Grade `todo` (sources.Submission) on `client`'s workers, keeping each result in `out` as it
    comes; returns (how many were graded, whether Ctrl-C stopped the run). `seconds`: what each
    submission's grading took last time (outputs.seconds_taken); the slowest are given the
    scheduler's highest priority (outputs.slowest_first)."""
    from distributed import as_completed
    from tqdm import tqdm

    if not todo:
        return 0, False
    resources = None if local else gpu_resources(client, manifest, echo)
    shared = client.scatter(autograder_zip, broadcast=True, hash=False)
    run = uuid.uuid4().hex[:8]
    futures = {}
    order = outputs.slowest_first(todo, seconds or {})
    for rank, submission in enumerate(order):
        future = client.submit(grade_one, shared, digest, manifest.name, submission.key, submission.kind,
                               submission.filename, submission.payload, warm, key=f"regrade-{run}-{submission.key}",
                               pure=False, resources=resources, priority=len(order) - rank)
        futures[future] = submission
    done, failures = 0, 0
    bar = tqdm(total=len(todo), unit="submission", desc=f"regrade {manifest.name}", disable=not progress,
               file=sys.stderr, dynamic_ncols=True)
    try:
        for future in as_completed(futures):
            submission = futures.pop(future)
            reason = _keep(future, submission, out, digest)
            done += 1
            failures += bool(reason)
            bar.set_postfix(failed=failures, refresh=False)
            bar.update(1)
    except KeyboardInterrupt:
        client.cancel(list(futures))
        return done, True
    finally:
        bar.close()
    return done, False


def _keep(future, submission, out, digest) -> str:
    """Record one finished task; returns the submission's failure reason ("" when it was graded)."""
    from distributed.scheduler import KilledWorker

    try:
        graded = future.result()
    except KilledWorker:
        from dask import config

        reason = LOST.format(n=config.get("distributed.scheduler.allowed-failures") + 1)
    except Exception as error:  # noqa: BLE001 - one submission's failure is its row, not the run's end
        reason = RAISED.format(error=f"{type(error).__name__}: {error}")
    else:
        outputs.record(out, submission, digest, graded)
        return graded["reason"]
    outputs.record_failure(out, submission, digest, reason)
    return reason
