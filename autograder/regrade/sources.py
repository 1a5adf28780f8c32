"""The submissions of a class: a Gradescope "Export Submissions" zip or folder, or a plain folder.

A Gradescope export holds one folder per submission (`submission_<id>/`, with the files the
student uploaded) and `submission_metadata.yml`, which maps each folder to its submitters and
the score Gradescope gave it (YAML with Ruby symbol keys, as Gradescope writes it):

    submission_123456:
      :submitters:
      - :name: Ada Lovelace
        :sid: '1001'
        :email: ada@example.edu
      :created_at: 2026-11-30 23:41:07.000000000 -08:00
      :score: 87.25
      :status: processed

A plain folder holds one subfolder, zip or `.ipynb` per student (its name is the student's).

Each submission travels to a Dask worker as bytes (`Submission.payload`): a zip of its folder
(files as they are; the contents of folders intake skips are left out but the folders stay, so
intake still names them; files over intake's size limit, MAX_FILE_BYTES or MAX_NOTEBOOK_BYTES
for a notebook, are cut just past it, which intake reads as "too large"), or the bytes of a
submitted file (a zip or a notebook) with its name. The worker rebuilds the same folder
or file and grades it as `grade` grades the original. Its hash is the payload's.
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import pathlib
import tempfile
import zipfile

from ..grade.intake import IGNORED_PARTS, MAX_FILE_BYTES, MAX_NOTEBOOK_BYTES, NOTEBOOK_SUFFIX, VENV_MARKER

METADATA = "submission_metadata.yml"
MAX_PAYLOAD_BYTES = 200 << 20   # one submission, as sent to a worker
FIXED_TIME = (2020, 1, 1, 0, 0, 0)


@dataclasses.dataclass(frozen=True)
class Student:
    name: str = ""
    email: str = ""
    sid: str = ""


@dataclasses.dataclass
class Submission:
    """One submission: its key (results/<key>.json), its students, what travels to the worker."""
    key: str
    students: tuple[Student, ...] = ()
    kind: str = "folder"            # "folder": payload is a zip of it; "file": payload is the file, named `filename`
    filename: str = ""
    payload: bytes = b""
    rejected: str = ""              # not graded at all, and why (one row with this reason)
    previous_score: float | None = None   # the score in the Gradescope export, if any

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.kind.encode() + b"\0" + self.filename.encode() + b"\0" + self.payload).hexdigest()


class SourceError(ValueError):
    """SUBMISSIONS is neither a Gradescope export nor a folder of submissions."""


def _zip_entry(archive: zipfile.ZipFile, name: str, data: bytes) -> None:
    info = zipfile.ZipInfo(name, date_time=FIXED_TIME)
    info.external_attr = (0o100644 << 16) if not name.endswith("/") else (0o40755 << 16)
    info.compress_type = zipfile.ZIP_DEFLATED
    archive.writestr(info, data)


def pack_folder(folder: pathlib.Path) -> bytes:
    """A reproducible zip of `folder` as intake sees it (see the module's docstring)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for base, subfolders, names in os.walk(folder):
            base = pathlib.Path(base)
            relative = base.relative_to(folder).as_posix()
            prefix = "" if relative == "." else relative + "/"
            for sub in sorted(subfolders):
                if sub in IGNORED_PARTS or (base / sub / VENV_MARKER).is_file():
                    _zip_entry(archive, f"{prefix}{sub}/", b"")   # the folder stays, so intake names it
                    if (base / sub / VENV_MARKER).is_file():
                        _zip_entry(archive, f"{prefix}{sub}/{VENV_MARKER}", b"")
            subfolders[:] = sorted(s for s in subfolders
                                   if s not in IGNORED_PARTS and not (base / s / VENV_MARKER).is_file()
                                   and not (base / s).is_symlink())
            for name in sorted(names):
                path = base / name
                if path.is_symlink() or not path.is_file():
                    continue   # intake never reads these either
                limit = MAX_NOTEBOOK_BYTES if path.suffix == NOTEBOOK_SUFFIX else MAX_FILE_BYTES
                with open(path, "rb") as stream:
                    data = stream.read() if path.suffix == ".zip" else stream.read(limit + 1)
                _zip_entry(archive, prefix + name, data)
    return buffer.getvalue()


def unpack_folder(payload: bytes, destination: pathlib.Path) -> pathlib.Path:
    """Rebuild a folder packed by pack_folder (names checked: nothing lands outside `destination`)."""
    destination.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(io.BytesIO(payload)) as archive:
        for info in archive.infolist():
            path = pathlib.PurePosixPath(info.filename)
            if path.is_absolute() or ".." in path.parts:
                raise ValueError(f"unsafe name in a packed submission: {info.filename!r}")
            target = destination.joinpath(*path.parts)
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(archive.read(info))
    return destination


def _from_folder(key: str, folder: pathlib.Path, students=(), previous=None) -> Submission:
    submission = Submission(key, tuple(students), "folder", "", b"", previous_score=previous)
    try:
        submission.payload = pack_folder(folder)
    except OSError as error:
        submission.rejected = f"the submission could not be read: {error}"
    return _check_size(submission)


def _from_file(key: str, path: pathlib.Path, students=(), previous=None) -> Submission:
    submission = Submission(key, tuple(students), "file", path.name, b"", previous_score=previous)
    try:
        if path.stat().st_size > MAX_PAYLOAD_BYTES:
            submission.rejected = f"larger than {MAX_PAYLOAD_BYTES >> 20} MB"
        else:
            submission.payload = path.read_bytes()
    except OSError as error:
        submission.rejected = f"the submission could not be read: {error}"
    return submission


def _check_size(submission: Submission) -> Submission:
    if not submission.rejected and len(submission.payload) > MAX_PAYLOAD_BYTES:
        submission.rejected = f"larger than {MAX_PAYLOAD_BYTES >> 20} MB"
    return submission


def _text(value) -> str:
    return "" if value is None else str(value)


def _plain(value):
    """YAML with Ruby symbol keys (":name") -> plain keys ("name")."""
    if isinstance(value, dict):
        return {str(k).lstrip(":"): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def read_metadata(path: pathlib.Path) -> dict[str, dict]:
    """{submission folder: {"submitters": [...], "score": ...}} from submission_metadata.yml."""
    import yaml

    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict):
        raise SourceError(f"{path}: not a mapping of submission folders")
    return {str(key): _plain(value) or {} for key, value in data.items()}


def _students(entry: dict) -> tuple[Student, ...]:
    return tuple(Student(_text(s.get("name")), _text(s.get("email")), _text(s.get("sid")))
                 for s in entry.get("submitters") or [] if isinstance(s, dict))


def _score(entry: dict) -> float | None:
    try:
        return None if entry.get("score") is None else float(entry["score"])
    except (TypeError, ValueError):
        return None


def _export_root(folder: pathlib.Path) -> pathlib.Path | None:
    """The folder holding submission_metadata.yml: `folder` or its only subfolder (the zip's top)."""
    if (folder / METADATA).is_file():
        return folder
    subfolders = [p for p in folder.iterdir() if p.is_dir() and p.name != "__MACOSX"]
    if len(subfolders) == 1 and (subfolders[0] / METADATA).is_file():
        return subfolders[0]
    return None


def _safe_extract(archive_path: pathlib.Path, destination: pathlib.Path) -> pathlib.Path:
    with zipfile.ZipFile(archive_path) as archive:
        for info in archive.infolist():
            path = pathlib.PurePosixPath(info.filename)
            if path.is_absolute() or ".." in path.parts:
                raise SourceError(f"{archive_path}: unsafe name {info.filename!r}")
        archive.extractall(destination)
    return destination


def _read_export(root: pathlib.Path) -> list[Submission]:
    metadata = read_metadata(root / METADATA)
    submissions = []
    for key, entry in sorted(metadata.items()):
        folder = root / key
        students, previous = _students(entry), _score(entry)
        if not folder.is_dir():
            submissions.append(Submission(key, students, rejected="its folder is missing from the export",
                                          previous_score=previous))
            continue
        files = [p for p in folder.iterdir() if not p.name.startswith(".")]
        if len(files) == 1 and files[0].is_file() and files[0].suffix == ".ipynb":
            submissions.append(_from_file(key, files[0], students, previous))
        else:
            submissions.append(_from_folder(key, folder, students, previous))
    return submissions


def _key(name: str) -> str:
    """A file name for results/<key>.json: the student's folder or file name, without its suffix."""
    stem = name[: -len(pathlib.PurePath(name).suffix)] if pathlib.PurePath(name).suffix in {".zip", ".ipynb"} else name
    return "".join(c if c.isalnum() or c in "-_.@+" else "_" for c in stem) or "_"


def _read_plain(folder: pathlib.Path) -> list[Submission]:
    submissions, seen = [], set()
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or path.name == "__MACOSX":
            continue
        key = _key(path.name)
        while key in seen:
            key += "_"
        seen.add(key)
        student = (Student(name=key),)
        if path.is_dir():
            submissions.append(_from_folder(key, path, student))
        elif path.suffix in {".zip", ".ipynb"}:
            submissions.append(_from_file(key, path, student))
        else:
            submissions.append(Submission(key, student, rejected=f"not a folder, a zip or a notebook: {path.name}"))
    return submissions


def read(source: str | pathlib.Path, scratch: pathlib.Path | None = None) -> tuple[list[Submission], bool]:
    """(the submissions, whether `source` is a Gradescope export). A zip is unpacked into `scratch`."""
    source = pathlib.Path(source)
    if source.is_file() and zipfile.is_zipfile(source):
        scratch = pathlib.Path(scratch or tempfile.mkdtemp(prefix="regrade-export-"))
        source = _safe_extract(source, scratch / "export")
    if not source.is_dir():
        raise SourceError(f"{source}: not a Gradescope export (zip or folder) nor a folder of submissions")
    root = _export_root(source)
    if root is not None:
        return _read_export(root), True
    return _read_plain(source), False
