"""`python -m autograder mutants NAME`: submissions with one known bug (or one other correct style).

`assignments/<name>/mutants.toml` lists them, each made from the reference by text edits:

    [[mutant]]
    name = "self_attention-no-scaling"
    problems = ["self_attention"]     # every problem that must lose points, and only those;
                                      # [] marks a correct variant: it must get full marks
    edits = [{ file = "attention.py", find = "...", replace = "..." }]   # `find` occurs once
    diagnosis = "..."                 # optional: the mistake in one sentence; when a student's
                                      # result matches this variant's, their failure says so

or by replacing whole files (then editing them, if `edits` are given too):

    [[mutant]]
    name = "ok-einsum"
    problems = []
    files = { "attention.py" = "variants/einsum/attention.py" }   # submitted file = a file
                                      # relative to the assignment folder (assignments/<name>/)

Whole files are for submissions written in another style from start to end. Such a mutant
may not carry a `diagnosis`: diagnoses are replayed on variants rebuilt from their `edits`
alone (see grade/runner.py's write_diagnoses and grader/diagnosis.py).
The files are read when a mutant is materialised, not when the catalogue is loaded, so the
catalogue loads without them (the autograder zip ships mutants.toml only).

The top-level `demo` list names the mutants `make demo` combines into its buggy submission.
`make mutants` grades them all in one child process and fails if a wrong variant gets
full marks, loses points outside its problems or does not show its diagnosis, if a correct
variant loses any, or if any variant is shown a diagnosis that is not its own.
"""
from __future__ import annotations

import dataclasses
import pathlib
import shutil
import sys
import tempfile

from .manifest import Manifest, ManifestError, tomllib


@dataclasses.dataclass(frozen=True)
class Edit:
    file: str
    find: str
    replace: str


@dataclasses.dataclass(frozen=True)
class Mutant:
    name: str
    problems: tuple[str, ...]
    edits: tuple[Edit, ...]
    diagnosis: str = ""
    files: tuple[tuple[str, str], ...] = ()  # (submitted file, replacement relative to the assignment folder)

    @property
    def correct(self) -> bool:
        return not self.problems


def load(manifest: Manifest) -> tuple[list[Mutant], list[str]]:
    """(mutants, names used by the demo); empty when the assignment has no mutants.toml."""
    path = manifest.manifest_path.parent / "mutants.toml"
    if not path.is_file():
        return [], []
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    mutants = []
    for entry in data.get("mutant", []):
        mutant = _mutant(entry)
        unknown = set(mutant.problems) - set(manifest.problems)
        files = ({e.file for e in mutant.edits} | {name for name, _ in mutant.files}) - set(manifest.submission_files)
        if unknown or files:
            raise ManifestError(f"{path}: mutant {mutant.name} names unknown problems or files: "
                                f"{sorted(unknown | files)}")
        if mutant.files and mutant.diagnosis:
            raise ManifestError(f"{path}: mutant {mutant.name} replaces whole files, so it cannot carry a diagnosis "
                                "(diagnoses are replayed on variants rebuilt from their edits)")
        if any(pathlib.PurePosixPath(source).is_absolute() or ".." in pathlib.PurePosixPath(source).parts
               for _, source in mutant.files):
            raise ManifestError(f"{path}: mutant {mutant.name}: `files` must name paths inside the assignment folder")
        mutants.append(mutant)
    names = [m.name for m in mutants]
    if len(set(names)) != len(names):
        raise ManifestError(f"{path}: mutant names must be unique")
    return mutants, list(data.get("demo", []))


def _mutant(entry: dict) -> Mutant:
    """One `[[mutant]]` table of mutants.toml."""
    edits = tuple(Edit(e["file"], e["find"], e["replace"]) for e in entry.get("edits", []))
    files = tuple(sorted(entry.get("files", {}).items()))
    return Mutant(entry["name"], tuple(entry["problems"]), edits, entry.get("diagnosis", ""), files)


def materialise(manifest: Manifest, mutants: list[Mutant], destination: pathlib.Path) -> pathlib.Path:
    """Copy the reference's submitted files to `destination`, then replace the whole files and
    apply every edit of `mutants`."""
    destination.mkdir(parents=True, exist_ok=True)
    reference = manifest.path(manifest.reference)
    for name in manifest.submission_files:
        shutil.copy(reference / name, destination / name)
    for mutant in mutants:
        for name, source in mutant.files:
            path = manifest.manifest_path.parent / source
            if not path.is_file():
                raise ManifestError(f"mutant {mutant.name}: {source} (for {name}) is not a file of "
                                    f"{manifest.manifest_path.parent}")
            shutil.copy(path, destination / name)
        for edit in mutant.edits:
            path = destination / edit.file
            text = path.read_text(encoding="utf-8")
            if text.count(edit.find) != 1:
                raise ManifestError(f"mutant {mutant.name}: its `find` text occurs {text.count(edit.find)} "
                                    f"times in {edit.file}")
            path.write_text(text.replace(edit.find, edit.replace), encoding="utf-8")
    return destination


@dataclasses.dataclass
class Verdict:
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
    from .kit import messages

    prefix = messages.DIAGNOSIS.format(diagnosis="")
    return {line.removeprefix(prefix) for test in graded["tests"] for line in test["output"].splitlines()
            if line.startswith(prefix)}


def check_all(manifest: Manifest, names: list[str] | None = None, every_test: bool = False) -> list[Verdict]:
    """Grade every mutant (or those named) and compare what they lost with what they should.

    A mutant runs only the test files its changed files can affect (grade/impact.py) and takes
    the reference's results for the others; `every_test` runs every test on every mutant."""
    from .grade import batch, impact, results

    catalogue, _ = load(manifest)
    chosen = [m for m in catalogue if names is None or m.name in names]
    reference = manifest.path(manifest.reference)
    with tempfile.TemporaryDirectory(prefix="mutants-") as tmp:
        tmp = pathlib.Path(tmp)
        folders = {f"m{i}": materialise(manifest, [m], tmp / f"m{i}") for i, m in enumerate(chosen)}
        test_files = None
        if not every_test:
            all_files = sorted(p for t in manifest.tests for p in manifest.path(t.path).rglob("test_*.py"))
            test_files = {label: impact.affected_test_files(all_files, reference, folder, manifest.submission_files)
                          for label, folder in folders.items()}
            folders["reference"], test_files["reference"] = reference, None
        runs = batch.run_batch(manifest, folders, tmp, test_files=test_files)
    verdicts = []
    for i, mutant in enumerate(chosen):
        run = runs[f"m{i}"] if every_test else _with_reference_results(runs[f"m{i}"], runs["reference"])
        if run.collected is None:
            raise RuntimeError(f"the tests could not be collected for mutant {mutant.name}")
        graded = results.build(manifest, run, _no_intake())
        lost = {p: round(total - score, 4) for p, (score, total) in results.per_problem(graded).items()
                if score < total}
        shown = _diagnoses_shown(graded)
        diagnosed = not mutant.diagnosis or mutant.diagnosis in shown
        verdicts.append(Verdict(mutant, lost, diagnosed, tuple(sorted(shown - {mutant.diagnosis}))))
    return verdicts


def _with_reference_results(run, reference):
    """`run` (some test files) completed with the reference's results for the tests it did not run."""
    from .grade.runner import Run

    merged = Run()
    merged.collected = reference.collected
    merged.outcomes = {**reference.outcomes, **run.outcomes}
    return merged


def _no_intake():
    from .grade.intake import Intake

    return Intake(found={}, missing=[], notes=[])


def report(verdicts: list[Verdict], file=sys.stdout) -> bool:
    width = max(len(v.mutant.name) for v in verdicts)
    print(f"{'mutant':<{width}}  {'ok':<4}  expected to lose        lost", file=file)
    for v in verdicts:
        expected = ", ".join(v.mutant.problems) or "nothing (correct variant)"
        shown = "" if not v.mutant.diagnosis else ("  [diagnosed]" if v.diagnosed else "  [NOT DIAGNOSED]")
        shown += "".join(f"  [WRONG DIAGNOSIS: {d}]" for d in v.misdiagnosed)
        print(f"{v.mutant.name:<{width}}  {'ok' if v.ok else 'FAIL':<4}  {expected:<22}  {v.problems}{shown}", file=file)
    bad = [v for v in verdicts if not v.ok]
    print(f"\n{len(verdicts) - len(bad)} of {len(verdicts)} mutants graded as expected.", file=file)
    return not bad
