"""`python -m autograder regrade NAME SUBMISSIONS -o OUT/`: grade (again) a whole class.

SUBMISSIONS is a Gradescope "Export Submissions" zip or folder, or a folder with one subfolder,
zip or notebook per student (sources.py). Every submission is graded by `grade`, through the
assignment's autograder zip, on the workers of a Dask cluster (cluster.py; worker.py): a
LocalCluster of `workers` processes unless `scheduler` gives an existing one. OUT/ receives
results/<key>.json, state/<key>.json, scores.csv (outputs.py) and report.html (report.py); a
summary goes to the terminal. A re-run on the same OUT/ grades only what changed: a new
submission, new bytes, or another autograder zip.
"""
from __future__ import annotations

import dataclasses
import hashlib
import pathlib
import io
import tempfile
import time
import zipfile

from .. import manifest as manifest_module
from . import outputs, sources


@dataclasses.dataclass
class Outcome:
    """What a regrade did: its rows (every submission), the diff, and the summary's lines."""
    rows: list[outputs.Row]
    changes: list[outputs.Change] | None
    graded_now: int
    skipped: int
    interrupted: bool
    lines: list[str]
    scores: pathlib.Path
    report: pathlib.Path


def autograder_zip_bytes(manifest, zip_path: str | pathlib.Path | None = None) -> bytes:
    """The assignment's Gradescope zip: `zip_path` (what was uploaded), else built now from its root."""
    if zip_path is not None:
        return pathlib.Path(zip_path).read_bytes()
    from ..build import build_autograder_zip

    with tempfile.TemporaryDirectory(prefix="regrade-build-") as tmp:
        return build_autograder_zip(manifest, pathlib.Path(tmp)).read_bytes()


def zip_manifest(assignment: str, zip_bytes: bytes):
    """The manifest inside an autograder zip (loaded from a temporary copy of its assignments/ folder)."""
    with tempfile.TemporaryDirectory(prefix="regrade-manifest-") as tmp:
        with zipfile.ZipFile(io.BytesIO(zip_bytes)) as archive:
            for name in archive.namelist():
                if name.startswith(f"assignments/{assignment}/") and name.endswith(".toml"):
                    archive.extract(name, tmp)
        return manifest_module.load(assignment, tmp)


def check_weights(assignment: str, zip_bytes: bytes, manifest) -> None:
    """Raise ManifestError when a manifest weight names no hidden test of its problem (as `build`
    does), before any grading: every grade would fail on it. Collects the zip's tests only when
    the manifest gives weights."""
    if not any(problem.weights for problem in manifest.problems.values()):
        return
    from ..build import collect

    with tempfile.TemporaryDirectory(prefix="regrade-weights-") as tmp:
        with zipfile.ZipFile(io.BytesIO(zip_bytes)) as archive:
            archive.extractall(tmp)
        unpacked = manifest_module.load(assignment, tmp)
        tests = collect(unpacked)
        for problem in unpacked.problems:
            unpacked.weighted_tests(problem, tests)


def regrade(assignment: str, submissions: str | pathlib.Path, out: str | pathlib.Path, *,
            workers: int | None = None, scheduler: str | None = None, previous: str | pathlib.Path | None = None,
            root: str | pathlib.Path = manifest_module.ROOT, zip_path: str | pathlib.Path | None = None,
            progress: bool = True, echo=print, warm: bool = True) -> Outcome:
    """Grade every submission in `submissions` that OUT/ does not hold yet; write OUT/'s files."""
    from .cluster import connect, grade_all
    from .report import write_report

    start = time.monotonic()
    out = pathlib.Path(out)
    zip_bytes = autograder_zip_bytes(manifest_module.load(assignment, root), zip_path)
    digest = hashlib.sha256(zip_bytes).hexdigest()
    manifest = zip_manifest(assignment, zip_bytes)   # the problems and points the workers grade with
    check_weights(assignment, zip_bytes, manifest)
    old = outputs.previous_scores(pathlib.Path(previous)) if previous else None
    with tempfile.TemporaryDirectory(prefix="regrade-source-") as scratch:
        found, is_export = sources.read(submissions, pathlib.Path(scratch))
    keys = [s.key for s in found]
    if len(set(keys)) != len(keys):
        raise sources.SourceError("two submissions have the same name")
    todo = [s for s in found if not s.rejected and not outputs.is_done(out, s, digest)]
    skipped = sum(1 for s in found if not s.rejected) - len(todo)
    (out / "results").mkdir(parents=True, exist_ok=True)
    echo(f"{len(found)} submissions in {submissions}" + (" (Gradescope export)" if is_export else "")
         + f": {len(todo)} to grade, {skipped} already graded, {sum(bool(s.rejected) for s in found)} rejected")
    graded_now, interrupted = 0, False
    if todo:
        with connect(workers, scheduler) as client:
            graded_now, interrupted = grade_all(client, manifest, todo, zip_bytes, digest, out,
                                                progress=progress, echo=echo, local=scheduler is None, warm=warm,
                                                seconds=outputs.seconds_taken(out, previous))
    rows = [outputs.row_of(out, s) for s in found]
    changes = outputs.diff(rows, old) if (old is not None or is_export) else None
    scores = outputs.write_scores(out / "scores.csv", rows, manifest)
    report = write_report(out / "report.html", manifest, rows, changes, previous=previous, export=is_export)
    lines = outputs.summary_lines(rows, manifest, graded_now, skipped, changes, time.monotonic() - start)
    if interrupted:
        lines.insert(0, f"interrupted: {graded_now} graded and kept; run the same command again to grade the rest")
    return Outcome(rows, changes, graded_now, skipped, interrupted, lines, scores, report)
