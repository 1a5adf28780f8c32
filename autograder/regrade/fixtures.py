"""A generated class, for tests, `make demo` and `make bench`: submissions made from the reference
and the mutant catalogue, laid out as a Gradescope "Export Submissions" folder or zip (with its
submission_metadata.yml) or as a plain folder of submissions.

Kinds, in a repeating pattern of 10 (`pattern`): the reference, catalogued buggy mutants (those
with a diagnosis first, so the report has "Likely mistake" lines to count), a crash (attention.py
kills its own process at import), and one broken submission in turn: an empty one, a corrupt zip,
wrong files only, a hostile one (its debugging.py kills its parent at import and reads
/etc/shadow). `small_class` is the six the tests use: reference, two mutants, a crash, an empty
and a corrupt zip.
"""
from __future__ import annotations

import pathlib
import random
import shutil
import zipfile

from .. import catalogue
from .sources import METADATA

PATTERN = ["reference", "mutant", "mutant", "mutant", "crash", "reference", "mutant", "mutant", "mutant", "broken"]
BROKEN = ["empty", "corrupt", "wrong-files", "hostile"]
SMALL = ["reference", "mutant", "mutant", "crash", "empty", "corrupt"]
CRASH = "\nimport os as _os\n_os.kill(_os.getpid(), 9)  # fixture: a crash at import\n"
HOSTILE = ("\nimport os as _os\ntry:\n    open('/etc/shadow').read()\nexcept OSError:\n    pass\n"
           "_os.kill(_os.getppid(), 9)  # fixture: kill whatever started me\n")
FIRST = ["Ada", "Alan", "Grace", "Edsger", "Barbara", "Donald", "Frances", "John", "Margaret", "Ken"]
LAST = ["Lovelace", "Turing", "Hopper", "Dijkstra", "Liskov", "Knuth", "Allen", "Backus", "Hamilton", "Thompson"]


def pattern(size: int) -> list[str]:
    """The kinds of a class of `size`: PATTERN repeated, its broken slot taking BROKEN in turn."""
    kinds, broken = [], 0
    for k in range(size):
        kind = PATTERN[k % len(PATTERN)]
        if kind == "broken":
            kind = BROKEN[broken % len(BROKEN)]
            broken += 1
        kinds.append(kind)
    return kinds


def buggy_mutants(manifest) -> list:
    """The catalogue's buggy mutants, those with a diagnosis first."""
    mutants, _ = catalogue.load(manifest)
    buggy = [m for m in mutants if not m.correct]
    return [m for m in buggy if m.diagnosis] + [m for m in buggy if not m.diagnosis]


def _write_kind(manifest, kind: str, folder: pathlib.Path, mutant=None) -> None:
    """The files of one submission of `kind` into `folder` (made here)."""
    folder.mkdir(parents=True, exist_ok=True)
    if kind in ("reference", "crash", "hostile"):
        catalogue.materialise(manifest, [], folder)
    elif kind == "mutant":
        catalogue.materialise(manifest, [mutant], folder)
    elif kind == "wrong-files":
        (folder / "notes.txt").write_text("I could not finish, sorry.\n")
        (folder / "solution.py").write_text("print('hello')\n")
    if kind == "crash":
        with open(folder / manifest.submission_files[0], "a", encoding="utf-8") as stream:
            stream.write(CRASH)
    if kind == "hostile":
        with open(folder / manifest.submission_files[-1], "a", encoding="utf-8") as stream:
            stream.write(HOSTILE)


def _zip_folder(folder: pathlib.Path, path: pathlib.Path) -> pathlib.Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for file in sorted(folder.rglob("*")):
            if file.is_file():
                archive.write(file, file.relative_to(folder).as_posix())
    return path


def make_class(manifest, destination: pathlib.Path, kinds: list[str] | None = None, *, size: int = 6,
               layout: str = "export", zipped: bool = False, seed: int = 0) -> pathlib.Path:
    """A class of `kinds` (default: pattern(size)) under `destination`: a Gradescope export
    (`layout="export"`: a folder, or its zip when `zipped`) or a plain folder (`layout="plain"`:
    folders and zips). Returns the path to pass to `regrade`."""
    kinds = kinds or pattern(size)
    mutants = buggy_mutants(manifest)
    rng = random.Random(seed)
    top = destination / ("assignment_4242_export" if layout == "export" else "submissions")
    top.mkdir(parents=True, exist_ok=True)
    metadata, used = {}, 0
    for k, kind in enumerate(kinds):
        mutant = None
        if kind == "mutant":
            mutant = mutants[used % len(mutants)]
            used += 1
        name = f"{FIRST[k % len(FIRST)]} {LAST[(k // len(FIRST) + k) % len(LAST)]}"
        key = f"submission_{100000 + k}" if layout == "export" else f"{k:03d}-{kind}"
        folder = top / key
        if kind == "corrupt":
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "submission.zip").write_bytes(b"PK\x03\x04 this is not a zip " + bytes(rng.randrange(256)
                                                                                        for _ in range(64)))
        elif kind == "empty":
            folder.mkdir(parents=True, exist_ok=True)
        else:
            _write_kind(manifest, kind, folder, mutant)
        if layout == "plain" and kind in ("mutant", "empty", "corrupt"):  # plain folders also hold zips
            zip_path = top / f"{key}.zip"
            if kind == "corrupt":
                shutil.move(folder / "submission.zip", zip_path)
            elif kind == "empty":
                zipfile.ZipFile(zip_path, "w").close()
            else:
                _zip_folder(folder, zip_path)
            shutil.rmtree(folder)
        metadata[key] = {":submitters": [{":name": name, ":sid": str(1000 + k),
                                          ":email": f"{name.split()[0].lower()}.{k}@example.edu"}],
                         ":created_at": f"2026-11-30 23:{k % 60:02d}:07.000000000 -08:00",
                         ":score": float(manifest.total_points if kind == "reference" else rng.randrange(0, 90)),
                         ":status": "processed", "kind": kind}
    if layout == "export":
        _write_metadata(top / METADATA, metadata)
        if zipped:
            archive = _zip_folder_with_top(top, destination / f"{top.name}.zip")
            shutil.rmtree(top)
            return archive
    return top


def _write_metadata(path: pathlib.Path, metadata: dict) -> None:
    """submission_metadata.yml as Gradescope writes it: Ruby symbol keys, unquoted."""
    lines = []
    for key, entry in metadata.items():
        lines.append(f"{key}:")
        lines.append("  :submitters:")
        for student in entry[":submitters"]:
            lines.append(f"  - :name: {student[':name']}")
            lines.append(f"    :sid: '{student[':sid']}'")
            lines.append(f"    :email: {student[':email']}")
        lines.append(f"  :created_at: {entry[':created_at']}")
        lines.append(f"  :score: {entry[':score']}")
        lines.append(f"  :status: {entry[':status']}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _zip_folder_with_top(folder: pathlib.Path, path: pathlib.Path) -> pathlib.Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for file in sorted(folder.rglob("*")):  # folders too: an empty submission keeps its folder
            archive.write(file, file.relative_to(folder.parent).as_posix())
    return path
