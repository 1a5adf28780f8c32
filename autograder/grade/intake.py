"""IntakeReport: copy exactly the files the manifest names out of a submission folder or zip.

Students upload the files, a folder of them, or a zip of either, at any depth. Each named
file is taken from the shallowest place it appears (ties: the first in sorted order);
everything else is left behind and listed in the notes. Folders that are never part of a
submission (virtual environments, caches, notebook checkpoints, version control) are skipped
without being read, and the notes say which. Text is normalised: a UTF-8 byte-order mark is
dropped and CRLF line ends become LF.

A notebook (`.ipynb`, alone or beside `.py` files) gives the files its tagged cells make
(grade/notebooks.py; the tag and marker convention is kit/notebook.py's). Which wins:
- a `.py` file and a notebook both give a file: as between two copies of a file, the shallower is
  graded, and at the same depth the `.py` file (so a notebook beside `.py` files never changes
  how they grade, and the files a handout notebook's checks write into the folder beside it
  never override the notebook); when they differ, a note says which was graded;
- several notebooks: the one that gives the most of the submission's files is graded (ties: the
  shallowest, then the first in sorted order); the notes name the others. At most MAX_NOTEBOOKS
  (the shallowest) are read, one at a time (a zip's notebooks too);
- a notebook that cannot be read (not JSON, not a valid notebook, over MAX_NOTEBOOK_BYTES) is
  named in the notes with the reason; when nothing else gives any file, the report's `error`
  says why and grading stops there (results.json: every problem failed, score 0).
The chosen notebook's written answers (Markdown answer cells) are kept for the human grader.
"""
from __future__ import annotations

import dataclasses
import os
import pathlib
import zipfile

from ..kit import messages
from ..kit import notebook as convention
from . import notebooks
from .notebooks import MAX_NOTEBOOK_BYTES

MAX_FILE_BYTES = 1_000_000
NOTEBOOK_SUFFIX = ".ipynb"
MAX_NOTEBOOKS = 10   # notebooks read in one submission (the shallowest): each may cost seconds
# Folders skipped whole: a virtual environment in the assignment folder would otherwise be read (1 GB or more).
# So is any folder holding a pyvenv.cfg (a virtual environment, whatever its name).
IGNORED_PARTS = {"__MACOSX", "__pycache__", ".git", ".ipynb_checkpoints", ".venv", "venv", "site-packages",
                 ".pytest_cache"}
VENV_MARKER = "pyvenv.cfg"
SKIPPED_FOLDERS = "Skipped folders that are not part of a submission: {folders}."
# Files that would change how Python or pytest load code, were they used: never copied, named in the output.
LOADER_FILES = {"conftest.py", "pytest.ini", "tox.ini", "setup.cfg", "pyproject.toml", "sitecustomize.py",
                "usercustomize.py"}
# Libraries the grader and the tests import: a file named like one would shadow it.
SHADOWED = {"torch", "numpy", "pytest", "_pytest", "pluggy", "autograder", "transformers", "tokenizers",
            "nltk", "safetensors", "math", "json", "os", "sys", "typing", "copy", "random", "functools"}


@dataclasses.dataclass
class IntakeReport:
    """What intake found in a submission: the files taken, those missing, notes for the student."""
    found: dict[str, str]          # submitted file name -> where it was found (relative path)
    missing: list[str]
    notes: list[str]
    answers: dict[str, str] = dataclasses.field(default_factory=dict)  # written question id -> answer (Markdown)
    error: str = ""                # nothing could be taken, and why (a notebook that cannot be read)


def _skipped_part(relative: str) -> str | None:
    """The first folder of `relative` that intake skips, as a path (e.g. "hw/.venv"), or None."""
    parts = pathlib.PurePosixPath(relative).parts
    for k, part in enumerate(parts[:-1]):
        if part in IGNORED_PARTS:
            return "/".join(parts[: k + 1])
    return None


def _candidates(submission: pathlib.Path, skipped: set[str]) -> dict[str, Candidate]:
    """Every file of the submission, by relative POSIX path: bytes (a zip's `.py` file), a path, a
    ZipMember (a zip's notebook, read when needed) or None (a zip's notebook over MAX_NOTEBOOK_BYTES).
    Skipped folders (IGNORED_PARTS) are not walked; their paths are added to `skipped`."""
    files: dict[str, Candidate] = {}
    if submission.is_file():
        if zipfile.is_zipfile(submission):
            files.update(_zip_members(submission, "", skipped))
        else:
            files[submission.name] = submission
        return files
    for folder, subfolders, names in os.walk(submission):
        base = pathlib.Path(folder)
        skip = {sub for sub in subfolders if sub in IGNORED_PARTS or (base / sub / VENV_MARKER).is_file()}
        skipped.update((base / sub).relative_to(submission).as_posix() for sub in skip)
        subfolders[:] = sorted(set(subfolders) - skip)
        for name in sorted(names):
            path = base / name
            relative = path.relative_to(submission).as_posix()
            if path.is_symlink() or not path.is_file():
                continue
            if path.suffix == ".zip" and zipfile.is_zipfile(path):
                files.update(_zip_members(path, relative + "/", skipped))
            else:
                files[relative] = path
    return dict(sorted(files.items()))


@dataclasses.dataclass(frozen=True)
class ZipMember:
    """A zip's member, read only when needed (a notebook)."""
    archive: pathlib.Path
    name: str

    def read(self, limit: int) -> bytes:
        with zipfile.ZipFile(self.archive) as archive, archive.open(self.name) as stream:
            return stream.read(limit + 1)


Candidate = bytes | pathlib.Path | ZipMember | None


def _zip_members(path: pathlib.Path, prefix: str, skipped: set[str]) -> dict[str, Candidate]:
    members = {}
    with zipfile.ZipFile(path) as archive:
        venvs = {name[: -len(VENV_MARKER)] for name in archive.namelist()
                 if name.endswith("/" + VENV_MARKER)}  # "hw/myenv/" for "hw/myenv/pyvenv.cfg"
        for info in archive.infolist():
            inside = next((v for v in venvs if info.filename.startswith(v)), None)
            if inside is not None:
                skipped.add(prefix + inside.rstrip("/"))
                continue
            folder = _skipped_part(prefix + info.filename)
            if folder is not None:
                skipped.add(folder)
                continue
            if info.is_dir():
                continue
            if info.filename.endswith(NOTEBOOK_SUFFIX):   # read later, one at a time (up to 100 MB each)
                too_large = info.file_size > MAX_NOTEBOOK_BYTES
                members[prefix + info.filename] = None if too_large else ZipMember(path, info.filename)
            elif info.filename.endswith(".py") and info.file_size <= MAX_FILE_BYTES:
                members[prefix + info.filename] = archive.read(info)
    return members


def normalise(data: bytes) -> bytes:
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    return data.replace(b"\r\n", b"\n")


def _changes_loading(path: pathlib.PurePosixPath) -> bool:
    return (path.name in LOADER_FILES or path.suffix == ".pth"
            or (path.suffix == ".py" and path.stem in SHADOWED) or path.parts[0] in SHADOWED)


def _read(source: Candidate, limit: int) -> bytes | None:
    """A candidate's bytes, or None when it is over `limit` (a file is read no further than that)."""
    if source is None or isinstance(source, bytes):
        return source if source is None or len(source) <= limit else None
    if isinstance(source, ZipMember):
        data = source.read(limit)
    else:
        with open(source, "rb") as stream:
            data = stream.read(limit + 1)
    return data if len(data) <= limit else None


def _is_kept(relative: str) -> bool:
    return not IGNORED_PARTS.intersection(pathlib.PurePosixPath(relative).parts)


def take(submission: str | pathlib.Path, wanted: list[str] | tuple[str, ...],
         destination: pathlib.Path) -> IntakeReport:
    """Copy the `wanted` files from `submission` into the clean folder `destination` (from `.py`
    files, else from a notebook's tagged cells: see the module's docstring)."""
    submission = pathlib.Path(submission)
    destination.mkdir(parents=True, exist_ok=True)
    skipped: set[str] = set()
    candidates = _candidates(submission, skipped) if submission.exists() else {}
    found, notes = {}, []
    for name in wanted:
        matches = [rel for rel in candidates if pathlib.PurePosixPath(rel).name == name and _is_kept(rel)]
        if not matches:
            continue
        chosen = min(matches, key=lambda rel: (rel.count("/"), rel))
        data = _read(candidates[chosen], MAX_FILE_BYTES)
        if data is None:
            notes.append(f"{chosen} is larger than {MAX_FILE_BYTES} bytes and was not graded.")
            continue
        (destination / name).write_bytes(normalise(data))
        found[name] = chosen
        if len(matches) > 1:
            others = ", ".join(sorted(m for m in matches if m != chosen))
            notes.append(f"Several files are named {name}; graded {chosen}, ignored {others}.")
    used = set(found.values())   # .py files a notebook overrides are named in its note, not as ignored
    answers, error = _take_notebook(candidates, wanted, destination, found, notes)
    missing = [name for name in wanted if name not in found]
    used |= set(found.values())
    ignored = sorted(rel for rel in candidates
                     if rel not in used and _is_kept(rel) and not rel.endswith(NOTEBOOK_SUFFIX))
    loaders = [rel for rel in ignored if _changes_loading(pathlib.PurePosixPath(rel))]
    if loaders:
        notes.append("Ignored, as they would change how code is loaded: " + ", ".join(loaders[:10]) + ".")
        ignored = [rel for rel in ignored if rel not in loaders]
    if ignored:
        shown = ", ".join(ignored[:10]) + (f" and {len(ignored) - 10} more" if len(ignored) > 10 else "")
        notes.append(f"Ignored (not part of the assignment): {shown}.")
    shown_skipped = sorted(skipped)
    if shown_skipped:
        more = f" and {len(shown_skipped) - 10} more" if len(shown_skipped) > 10 else ""
        notes.append(SKIPPED_FOLDERS.format(folders=", ".join(shown_skipped[:10]) + more))
    return IntakeReport(found=found, missing=missing, notes=notes, answers=answers, error=error)


def _read_notebooks(candidates: dict, wanted, notes: list[str]) -> tuple[dict, list[str]]:
    """({notebook: NotebookFiles} of the readable notebooks, the unreadable ones); notes say why."""
    readable, unreadable = {}, []
    books = sorted((rel for rel in candidates if rel.endswith(NOTEBOOK_SUFFIX) and _is_kept(rel)),
                   key=lambda rel: (rel.count("/"), rel))
    if len(books) > MAX_NOTEBOOKS:
        notes.append(messages.NOTEBOOK_TOO_MANY.format(count=len(books), limit=MAX_NOTEBOOKS,
                                                       ignored=", ".join(books[MAX_NOTEBOOKS:][:10])))
    for relative in books[:MAX_NOTEBOOKS]:
        data = _read(candidates[relative], MAX_NOTEBOOK_BYTES)
        if data is None:
            notes.append(messages.NOTEBOOK_TOO_LARGE.format(notebook=relative, limit=MAX_NOTEBOOK_BYTES // 10**6))
            unreadable.append(relative)
            continue
        try:
            readable[relative] = notebooks.cut(data, wanted)
        except notebooks.NotebookError as why:
            notes.append(messages.NOTEBOOK_UNREADABLE.format(notebook=relative, why=why))
            unreadable.append(relative)
        del data
    return readable, unreadable


def _take_notebook(candidates: dict, wanted, destination: pathlib.Path, found: dict[str, str],
                   notes: list[str]) -> tuple[dict[str, str], str]:
    """Write the files the chosen notebook gives (over a `.py` file only when that is deeper: see the
    module's docstring); (its written answers, the error when nothing at all could be taken)."""
    readable, unreadable = _read_notebooks(candidates, wanted, notes)
    if not readable:
        error = messages.NOTEBOOK_UNREADABLE_WHY.format(notebook=unreadable[0]) if unreadable and not found else ""
        return {}, error
    chosen = min(readable, key=lambda rel: (-len(readable[rel].files), rel.count("/"), rel))
    if len(readable) > 1:
        others = ", ".join(rel for rel in readable if rel != chosen)
        notes.append(messages.NOTEBOOK_SEVERAL.format(chosen=chosen, others=others))
    book = readable[chosen]
    for name in wanted:
        if name not in book.files:
            continue
        code = normalise(book.files[name])
        if len(code) > MAX_FILE_BYTES:
            notes.append(f"{name} (from {chosen}) is larger than {MAX_FILE_BYTES} bytes and was not graded.")
            continue
        if name in found and (destination / name).read_bytes() == code:
            continue
        if name in found:   # a .py file of that name too, and they differ: the shallower wins, else the .py file
            path = found[name]
            if path.count("/") <= chosen.count("/"):
                notes.append(messages.NOTEBOOK_AND_FILE.format(path=path, file=name, notebook=chosen))
                continue
            notes.append(messages.NOTEBOOK_OVER_FILE.format(path=path, file=name, notebook=chosen))
        (destination / name).write_bytes(code)
        found[name] = chosen
        notes.append(messages.NOTEBOOK_GAVE.format(file=name, notebook=chosen,
                                                   cells=convention.cell_numbers(book.cells[name])))
        if len(book.starts.get(name, [])) > 1:   # so that a traceback's "line 63" leads to its cell
            notes.append(messages.NOTEBOOK_LINES.format(file=name, notebook=chosen, starts=", ".join(
                f"cell {cell} at line {line}" for cell, line in book.starts[name])))
    notes.extend(f"{chosen}: {note}" for note in book.notes)
    lacking = [name for name in wanted if name not in found]
    if lacking:
        notes.append(messages.NOTEBOOK_NO_CELLS.format(notebook=chosen, files=", ".join(lacking)))
    return book.answers, ""
