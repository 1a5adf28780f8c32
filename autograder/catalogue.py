"""The mutant catalogue: submissions with one known bug (or one other correct style), made from
the reference.

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
`autograder/mutants.py` (the `mutants` command) grades them all.
"""
from __future__ import annotations

import dataclasses
import pathlib
import shutil

from .manifest import Manifest, ManifestError, tomllib


@dataclasses.dataclass(frozen=True)
class Edit:
    """Replace the one occurrence of `find` in the submitted file `file` by `replace`."""
    file: str
    find: str
    replace: str


@dataclasses.dataclass(frozen=True)
class Mutant:
    """One `[[mutant]]` of mutants.toml: a variant of the reference, and the problems it must lose points in."""
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
