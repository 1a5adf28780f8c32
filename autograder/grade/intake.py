"""IntakeReport: copy exactly the files the manifest names out of a submission folder or zip.

Students upload the files, a folder of them, or a zip of either, at any depth. Each named
file is taken from the shallowest place it appears (ties: the first in sorted order);
everything else is left behind and listed in the notes. Folders that are never part of a
submission (virtual environments, caches, notebook checkpoints, version control) are skipped
without being read, and the notes say which. Text is normalised: a UTF-8 byte-order mark is
dropped and CRLF line ends become LF.
"""
from __future__ import annotations

import dataclasses
import os
import pathlib
import zipfile

MAX_FILE_BYTES = 1_000_000
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


def _skipped_part(relative: str) -> str | None:
    """The first folder of `relative` that intake skips, as a path (e.g. "hw/.venv"), or None."""
    parts = pathlib.PurePosixPath(relative).parts
    for k, part in enumerate(parts[:-1]):
        if part in IGNORED_PARTS:
            return "/".join(parts[: k + 1])
    return None


def _candidates(submission: pathlib.Path, skipped: set[str]) -> dict[str, bytes | pathlib.Path]:
    """Every file of the submission, by relative POSIX path: bytes (from a zip) or a path.
    Skipped folders (IGNORED_PARTS) are not walked; their paths are added to `skipped`."""
    files: dict[str, bytes | pathlib.Path] = {}
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


def _zip_members(path: pathlib.Path, prefix: str, skipped: set[str]) -> dict[str, bytes]:
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
            if info.is_dir() or info.file_size > MAX_FILE_BYTES or not info.filename.endswith(".py"):
                continue
            members[prefix + info.filename] = archive.read(info)
    return members


def normalise(data: bytes) -> bytes:
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    return data.replace(b"\r\n", b"\n")


def _changes_loading(path: pathlib.PurePosixPath) -> bool:
    return (path.name in LOADER_FILES or path.suffix == ".pth"
            or (path.suffix == ".py" and path.stem in SHADOWED) or path.parts[0] in SHADOWED)


def take(submission: str | pathlib.Path, wanted: list[str] | tuple[str, ...],
         destination: pathlib.Path) -> IntakeReport:
    """Copy the `wanted` files from `submission` into the clean folder `destination`."""
    submission = pathlib.Path(submission)
    destination.mkdir(parents=True, exist_ok=True)
    skipped: set[str] = set()
    candidates = _candidates(submission, skipped) if submission.exists() else {}
    found, notes = {}, []
    for name in wanted:
        matches = [rel for rel in candidates
                   if pathlib.PurePosixPath(rel).name == name
                   and not IGNORED_PARTS.intersection(pathlib.PurePosixPath(rel).parts)]
        if not matches:
            continue
        chosen = min(matches, key=lambda rel: (rel.count("/"), rel))
        source = candidates[chosen]
        data = source if isinstance(source, bytes) else source.read_bytes()[: MAX_FILE_BYTES + 1]
        if len(data) > MAX_FILE_BYTES:
            notes.append(f"{chosen} is larger than {MAX_FILE_BYTES} bytes and was not graded.")
            continue
        (destination / name).write_bytes(normalise(data))
        found[name] = chosen
        if len(matches) > 1:
            others = ", ".join(sorted(m for m in matches if m != chosen))
            notes.append(f"Several files are named {name}; graded {chosen}, ignored {others}.")
    missing = [name for name in wanted if name not in found]
    used = set(found.values())
    ignored = sorted(rel for rel in candidates
                     if rel not in used and not IGNORED_PARTS.intersection(pathlib.PurePosixPath(rel).parts))
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
    return IntakeReport(found=found, missing=missing, notes=notes)
