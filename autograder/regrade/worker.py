"""What a Dask worker runs: grade one submission, sent as bytes, exactly as `grade` grades it.

The autograder zip reaches each worker once (scattered to every worker; see cluster.py) and is
unpacked once per worker process into a folder laid out like Gradescope's /autograder/source;
`grade` then runs with that folder as its root, so the tests, the reference and the manifest
are the zip's, as on Gradescope. The submission is rebuilt in a temporary folder (sources.py:
the same folder or file the instructor's machine holds) and graded by `grade`, which writes
results.json; its text goes back to the client unchanged, with a reason when the submission
could not really be graded (a corrupt zip, nothing of the assignment's files in it, the tests
not run).

A test process dies with the worker process that grades it, even one killed by SIGKILL (the
scheduler then runs its submission elsewhere): the warm launcher's children die with it
(warm.py); a test process started cold asks for it itself (`cold_spawn`: PR_SET_PDEATHSIG).

Its temporary folders (the unpacked zip, each run's folder, the sandbox's, the bytecode cache) are
made in the Dask worker's own folder (`local_directory`, through TMPDIR): a worker killed by
SIGKILL cannot remove them, and Dask removes a dead worker's folder when the next worker starts on
that machine (the nanny restarts it at once).

Several workers on one machine must not share a sandbox user (a run kills every process of
its user when it ends), so AUTOGRADER_WORKER_USER is dropped here: each grading run then gets
a user of its own (sandbox/process.py, `worker_user`).
"""
from __future__ import annotations

import atexit
import io
import json
import os
import pathlib
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import zipfile

from .. import manifest as manifest_module
from ..grade import grade
from ..grade import intake as intake_module
from . import sources

_UNPACKED: dict[str, pathlib.Path] = {}
_LOCK = threading.Lock()
UNPACKS = 0   # autograder zips unpacked by this process (once per zip: tests check it)

EMPTY = "empty submission: no files"
CORRUPT = "corrupt zip: {why}"
NO_FILES = "none of the assignment's files ({files}) is in the submission"
NOT_RUN = "the tests did not run: {why}"


def unpacked(autograder_zip: bytes, digest: str) -> pathlib.Path:
    """The autograder zip unpacked in this process (once per digest), as /autograder/source."""
    global UNPACKS
    with _LOCK:
        root = _UNPACKED.get(digest)
        if root is None or not root.is_dir():
            root = pathlib.Path(tempfile.mkdtemp(prefix=f"regrade-autograder-{digest[:12]}-"))
            with zipfile.ZipFile(io.BytesIO(autograder_zip)) as archive:
                archive.extractall(root)
            atexit.register(shutil.rmtree, root, True)
            UNPACKS += 1
            _UNPACKED[digest] = root
        return root


def _zip_problem(data: bytes) -> str:
    """Why a submitted zip cannot be read, or ""."""
    if not zipfile.is_zipfile(io.BytesIO(data)):
        return CORRUPT.format(why="not a readable zip file")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            damaged = archive.testzip()
            if damaged is not None:
                return CORRUPT.format(why=f"{damaged} is damaged")
            if not [i for i in archive.infolist() if not i.is_dir()]:
                return EMPTY
    except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError, EOFError) as error:
        return CORRUPT.format(why=str(error) or type(error).__name__)
    return ""


def _rebuild(kind: str, filename: str, payload: bytes, folder: pathlib.Path) -> pathlib.Path:
    """The submission as the instructor's machine holds it, under `folder`."""
    if kind == "folder":
        return sources.unpack_folder(payload, folder / "submission")
    (folder / "upload").mkdir()
    path = folder / "upload" / pathlib.PurePath(filename).name
    path.write_bytes(payload)
    return path


def reason_for(kind: str, filename: str, payload: bytes, target: pathlib.Path, manifest, results: dict) -> str:
    """Why this submission was not really graded ("" when it was)."""
    if kind == "file" and filename.endswith(".zip"):
        problem = _zip_problem(payload)
        if problem:
            return problem
    tests = results.get("tests") or []
    if tests and all(t.get("name", "").endswith(": not graded") for t in tests):
        return NOT_RUN.format(why=(tests[0].get("output") or "").splitlines()[0] if tests[0].get("output") else "")
    with tempfile.TemporaryDirectory(prefix="regrade-intake-") as scratch:
        try:
            report = intake_module.take(target, manifest.submission_files, pathlib.Path(scratch))
        except Exception as error:  # noqa: BLE001 - grade itself survived it; say why here
            return f"the submission could not be read: {error}"
    if not report.found:
        if kind == "folder" and not any(p.is_file() for p in target.rglob("*")):
            return EMPTY
        for path in sorted(target.rglob("*.zip")) if kind == "folder" else []:
            problem = _zip_problem(path.read_bytes())
            if problem:
                return f"{path.relative_to(target).as_posix()}: {problem}"
        if kind == "file" and not payload:
            return EMPTY
        return NO_FILES.format(files=", ".join(manifest.submission_files))
    return ""


def use_the_dask_workers_folder() -> None:
    """Make this process's and its children's temporary folders in the Dask worker's own folder
    (outside a Dask worker: nothing changes)."""
    try:
        from distributed import get_worker

        folder = get_worker().local_directory
    except (ImportError, ValueError):   # not in a Dask worker
        return
    if tempfile.tempdir != folder:
        tempfile.tempdir = folder
        os.environ["TMPDIR"] = folder


_WARM = None


def warm_launcher():
    """This worker process's warm launcher (warm.py), made on first use, with a private folder
    (mode 0700, removed at exit) for its test processes' bytecode."""
    global _WARM
    if _WARM is None:
        from .warm import WarmLauncher

        _WARM = WarmLauncher()
        _WARM.pycache = tempfile.mkdtemp(prefix="regrade-pycache-")
        atexit.register(shutil.rmtree, _WARM.pycache, True)
        atexit.register(_WARM.close)
    return _WARM


def cold_spawn(command: list[str], env: dict, cwd, log) -> subprocess.Popen:
    """Start a test process as the runner does (subprocess.Popen, a session of its own), asking it
    to die with this worker process. PR_SET_PDEATHSIG watches the thread that starts it: that
    thread is the one grading, which waits for the test process to end before it returns."""
    from .warm import die_with_parent

    parent = os.getpid()
    with open(log, "ab") as stream:
        return subprocess.Popen(command, cwd=cwd, env=env, stdout=stream, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True,
                                preexec_fn=lambda: die_with_parent(parent))


def spawn_warm_or_cold(command: list[str], env: dict, cwd, log):
    """The grading run's test process: forked by the warm launcher, else started cold."""
    return warm_launcher().spawn(command, env, cwd, log) or cold_spawn(command, env, cwd, log)


def grade_one(autograder_zip: bytes, digest: str, assignment: str, key: str, kind: str, filename: str,
              payload: bytes, warm: bool = True) -> dict:
    """Grade one submission on this worker: {"key", "results" (results.json's text), "reason",
    "seconds", "worker"}. Never raises for a bad submission: grade writes results.json whatever happens.
    `warm`: each test process is forked from this worker's warm launcher (torch imported once);
    either way it dies with this worker process."""
    os.environ.pop("AUTOGRADER_WORKER_USER", None)
    use_the_dask_workers_folder()
    start = time.monotonic()
    root = unpacked(autograder_zip, digest)
    manifest = manifest_module.load(assignment, root)
    with tempfile.TemporaryDirectory(prefix="regrade-") as tmp:
        tmp = pathlib.Path(tmp)
        target = _rebuild(kind, filename, payload, tmp)
        output = tmp / "results.json"
        results = grade(assignment, target, output, root=root, quiet=True,
                        spawn=spawn_warm_or_cold if warm else cold_spawn)
        text = output.read_text(encoding="utf-8") if output.is_file() else json.dumps(results, indent=2) + "\n"
        reason = reason_for(kind, filename, payload, target, manifest, results)
    return {"key": key, "results": text, "reason": reason, "seconds": round(time.monotonic() - start, 2),
            "worker": f"{socket.gethostname()}:{os.getpid()}"}
