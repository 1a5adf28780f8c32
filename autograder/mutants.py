"""Submissions with one known bug, made from the reference: `assignments/<name>/mutants.toml`.

Each `[[mutant]]` has `name`, `file` (a submitted file), `problems` (those that must lose
points, and only those), and `find`/`replace`: `find` must occur exactly once in the
reference file. The top-level `demo` list names the mutants `make demo` combines into
its buggy submission.
"""
from __future__ import annotations

import dataclasses
import pathlib
import shutil

from .manifest import Manifest, ManifestError, tomllib


@dataclasses.dataclass(frozen=True)
class Mutant:
    name: str
    file: str
    problems: tuple[str, ...]
    find: str
    replace: str


def load(manifest: Manifest) -> tuple[list[Mutant], list[str]]:
    """(mutants, names used by the demo); empty when the assignment has no mutants.toml."""
    path = manifest.manifest_path.parent / "mutants.toml"
    if not path.is_file():
        return [], []
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    mutants = [Mutant(m["name"], m["file"], tuple(m["problems"]), m["find"], m["replace"])
               for m in data.get("mutant", [])]
    for m in mutants:
        unknown = set(m.problems) - set(manifest.problems)
        if m.file not in manifest.submission_files or unknown:
            raise ManifestError(f"{path}: mutant {m.name} names unknown file or problems")
    return mutants, list(data.get("demo", []))


def materialise(manifest: Manifest, mutants: list[Mutant], destination: pathlib.Path) -> pathlib.Path:
    """Copy the reference's submitted files to `destination` with `mutants` applied."""
    destination.mkdir(parents=True, exist_ok=True)
    reference = manifest.path(manifest.reference)
    for name in manifest.submission_files:
        shutil.copy(reference / name, destination / name)
    for m in mutants:
        path = destination / m.file
        text = path.read_text(encoding="utf-8")
        if text.count(m.find) != 1:
            raise ManifestError(f"mutant {m.name}: its `find` text occurs {text.count(m.find)} times in {m.file}")
        path.write_text(text.replace(m.find, m.replace), encoding="utf-8")
    return destination
