"""`python -m autograder mutants NAME`: grade every catalogued mutant (autograder/catalogue.py)
and check that each is graded as its entry says.

`make mutants` grades them all in one child process and fails if a wrong variant gets
full marks, loses points outside its problems or does not show its diagnosis, if a correct
variant loses any, or if any variant is shown a diagnosis that is not its own.
"""
from __future__ import annotations

import dataclasses
import os
import pathlib
import shutil
import sys
import tempfile

from .catalogue import Mutant, load, materialise
from . import impact
from .build import fingerprints
from .grade import batch, results
from .grade.events import Run
from .grade.intake import IntakeReport
from .kit import messages
from .manifest import Manifest


@dataclasses.dataclass
class MutantVerdict:
    """How one mutant was graded, next to what its catalogue entry says it should be."""
    mutant: Mutant
    lost: dict[str, float]     # problem -> points lost
    diagnosed: bool = True     # its diagnosis (if it has one) shows in some failed test
    misdiagnosed: tuple[str, ...] = ()  # diagnoses shown that are not its own

    @property
    def problems(self) -> str:
        return ", ".join(f"{p} (-{v:g})" for p, v in self.lost.items()) or "-"

    @property
    def ok(self) -> bool:
        if self.misdiagnosed:
            return False
        if self.mutant.correct:
            return not self.lost
        return set(self.lost) == set(self.mutant.problems) and self.diagnosed


def _diagnoses_shown(graded: dict) -> set[str]:
    """The diagnoses that the graded tests' outputs show."""
    prefix = messages.DIAGNOSIS.format(diagnosis="")
    return {line.removeprefix(prefix) for test in graded["tests"] for line in test["output"].splitlines()
            if line.startswith(prefix)}


def check_all(manifest: Manifest, names: list[str] | None = None, every_test: bool = False) -> list[MutantVerdict]:
    """Grade every mutant (or those named) and compare what they lost with what they should.

    A mutant runs only the tests its changes can affect (autograder/impact.py) and takes the
    reference's results for the others; `every_test` runs every test on every mutant."""
    catalogue, _ = load(manifest)
    chosen = [m for m in catalogue if names is None or m.name in names]
    with tempfile.TemporaryDirectory(prefix="mutants-") as tmp:
        tmp = pathlib.Path(tmp)
        folders = {f"m{i}": materialise(manifest, [m], tmp / f"m{i}") for i, m in enumerate(chosen)}
        if every_test:
            runs = batch.run_batch(manifest, [batch.Entry(label, str(f)) for label, f in folders.items()], tmp)
        else:
            reference, records = reference_run(manifest, tmp)
            copy = materialise(manifest, [], tmp / "reference")
            entries = [affected_tests(manifest, label, copy, folder) for label, folder in folders.items()]
            runs = {**batch.run_batch(manifest, entries, tmp, records=records), "reference": reference}
    verdicts = []
    for i, mutant in enumerate(chosen):
        run = runs[f"m{i}"] if every_test else _with_reference_results(runs[f"m{i}"], runs["reference"])
        if run.collected is None:
            raise RuntimeError(f"the tests could not be collected for mutant {mutant.name}")
        graded = results.results_json(manifest, run, IntakeReport(found={}, missing=[], notes=[]))
        lost = {p: round(total - score, 4) for p, (score, total) in results.per_problem(graded).items()
                if score < total}
        shown = _diagnoses_shown(graded)
        diagnosed = not mutant.diagnosis or mutant.diagnosis in shown
        verdicts.append(MutantVerdict(mutant, lost, diagnosed, tuple(sorted(shown - {mutant.diagnosis}))))
    return verdicts


def fill_caches(manifests: list[Manifest], jobs: int | None = None) -> None:
    """Compute what dist/.cache lacks for each assignment: the student zip's fingerprints table and
    the mutant checks' reference run, side by side (each in a child process; `jobs` at a time,
    default: the cores). `make test` runs this first, so that no test waits, its core idle, on a
    lock while another test computes a table."""
    from concurrent.futures import ThreadPoolExecutor

    def reference(manifest: Manifest) -> None:
        with tempfile.TemporaryDirectory(prefix="caches-") as tmp:
            reference_run(manifest, pathlib.Path(tmp))

    tasks = [(task, manifest) for manifest in manifests for task in (fingerprints.fingerprints_json, reference)]
    with ThreadPoolExecutor(max_workers=jobs or os.cpu_count() or 1) as pool:
        for done in [pool.submit(task, manifest) for task, manifest in tasks]:
            done.result()


def reference_run(manifest: Manifest, tmp: pathlib.Path) -> tuple[Run, pathlib.Path]:
    """The reference graded with every test's calls recorded (impact.CallRecorder): its Run and
    the records file. Cached under dist/.cache/, keyed by a digest of everything it depends on
    (as the fingerprints are), so that the catalogue's slices and later checks share one run."""
    digest = fingerprints.inputs_digest(manifest, public_only=False)
    cache = manifest.root / "dist" / ".cache" / f"reference-run-{manifest.name}-{digest}"
    cache.parent.mkdir(parents=True, exist_ok=True)
    with fingerprints.locked(cache.parent / f"reference-run-{manifest.name}.lock"):
        if not (cache / "calls.json").is_file():
            work = tmp / "reference-run"
            work.mkdir()
            folder = materialise(manifest, [], work / "reference")
            batch.run_batch(manifest, [batch.Entry("reference", str(folder), record=True)], work)
            shutil.rmtree(cache, ignore_errors=True)
            partial = cache.with_name(f"{cache.name}.{os.getpid()}.tmp")
            partial.mkdir()
            shutil.copy(work / "reference.jsonl", partial / "events.jsonl")
            shutil.copy(work / "reference.calls.json", partial / "calls.json")
            os.replace(partial, cache)
            for stale in cache.parent.glob(f"reference-run-{manifest.name}-*"):
                if stale != cache and stale.is_dir():  # made from older inputs
                    shutil.rmtree(stale, ignore_errors=True)
    return batch.read_run(cache / "events.jsonl"), cache / "calls.json"


def affected_tests(manifest: Manifest, label: str, reference: pathlib.Path, folder: pathlib.Path) -> batch.Entry:
    """A batch entry that runs the tests a mutant's changes can affect: the test files that reach
    a file changed beyond function bodies, and the tests that ran a changed function on the reference."""
    functions, whole = impact.changes(reference, folder, manifest.submission_files)
    all_files = sorted(p for t in manifest.tests for p in manifest.path(t.path).rglob("test_*.py"))
    files = impact.affected_test_files(all_files, reference, folder, tuple(whole)) if whole else []
    return batch.Entry(label, str(folder), tests=[str(p) for p in files], functions=functions)


def _with_reference_results(run: Run, reference: Run) -> Run:
    """`run` (some test files) completed with the reference's results for the tests it did not run."""
    return Run(collected=reference.collected, outcomes={**reference.outcomes, **run.outcomes})


def report(verdicts: list[MutantVerdict], file=sys.stdout) -> bool:
    """Print one line per mutant and a count; True when every mutant was graded as expected."""
    width = max(len(v.mutant.name) for v in verdicts)
    print(f"{'mutant':<{width}}  {'ok':<4}  expected to lose        lost", file=file)
    for v in verdicts:
        expected = ", ".join(v.mutant.problems) or "nothing (correct variant)"
        shown = "" if not v.mutant.diagnosis else ("  [diagnosed]" if v.diagnosed else "  [NOT DIAGNOSED]")
        shown += "".join(f"  [WRONG DIAGNOSIS: {d}]" for d in v.misdiagnosed)
        verdict = "ok" if v.ok else "FAIL"
        print(f"{v.mutant.name:<{width}}  {verdict:<4}  {expected:<22}  {v.problems}{shown}", file=file)
    bad = [v for v in verdicts if not v.ok]
    print(f"\n{len(verdicts) - len(bad)} of {len(verdicts)} mutants graded as expected.", file=file)
    return not bad
