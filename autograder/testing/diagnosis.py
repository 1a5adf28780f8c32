"""Name the classic mistake behind a wrong result.

When a check fails, the grader replays the last reference call (same function, same
arguments) on each known wrong variant of the reference (the mutants that carry a
`diagnosis` in mutants.toml). If a variant's result matches the student's while differing
from the reference's, the failure names that variant's mistake in one sentence. When the
student's code raised, the student's last call is replayed instead: a variant raising the
same error names the mistake.
Grader runs only: the variants are built from the reference, which students never see.
"""
from __future__ import annotations

import json
import pathlib
import shutil

import torch

from . import adapter

_variants: list[tuple[str, set[str], adapter.Submission]] = []  # (diagnosis, problems, variant)


def configure(mutants_file: str | pathlib.Path, reference: str | pathlib.Path, workdir: pathlib.Path) -> None:
    """Build every variant of `mutants_file` (JSON: [{name, diagnosis, problems, edits}]) under `workdir`."""
    _variants.clear()
    reference = pathlib.Path(reference)
    for entry in json.loads(pathlib.Path(mutants_file).read_text(encoding="utf-8")):
        folder = workdir / entry["name"]
        folder.mkdir(parents=True)
        for source in reference.glob("*.py"):
            shutil.copy(source, folder / source.name)
        for edit in entry["edits"]:
            path = folder / edit["file"]
            path.write_text(path.read_text(encoding="utf-8").replace(edit["find"], edit["replace"], 1), encoding="utf-8")
        _variants.append((entry["diagnosis"], set(entry["problems"]),
                          adapter.Submission(folder, record_calls=None)))


def _close(a, b) -> bool:
    if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)) or a.shape != b.shape:
        return False
    if a.device.type == "meta" or b.device.type == "meta":
        return False
    if a.dtype in (torch.bool, torch.int64, torch.int32) or b.dtype in (torch.bool, torch.int64, torch.int32):
        return a.dtype == b.dtype and bool((a.cpu() == b.cpu()).all())
    a64, b64 = a.detach().cpu().double(), b.detach().cpu().double()
    return bool(torch.allclose(a64, b64, rtol=1e-3, atol=1e-4, equal_nan=True))


def _tensors(value) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (tuple, list)):
        return [v for v in value if isinstance(v, torch.Tensor)]
    return []


def _candidates(name: str):
    """Variants whose bug is in the problem `name` names (a function or class of the contract)."""
    return [(sentence, variant) for sentence, problems, variant in _variants if name in problems]


def diagnose(got, expected) -> str | None:
    """The mistake whose variant reproduces `got` on the last reference call, if exactly known."""
    call = adapter.last_reference_call()
    if call is None or not _variants or not isinstance(got, torch.Tensor):
        return None
    module, name, args, kwargs = call
    for sentence, variant in _candidates(name):
        try:
            with torch.no_grad():
                result = getattr(variant.module(module), name)(*args, **kwargs)
        except Exception:  # noqa: BLE001 - a variant that fails on this input explains nothing
            continue
        for candidate in _tensors(result):
            if _close(candidate, got) and not _close(candidate, expected):
                return sentence
    return None


def diagnose_exception(exc: BaseException) -> str | None:
    """The mistake whose variant raises the same error on the student's last call, if any."""
    call = adapter.last_student_call()
    type_name = getattr(exc, "type_name", type(exc).__name__)  # a RemoteError names the worker's exception
    if call is None or not _variants or type_name == "NotImplementedError":
        return None
    module, name, args, kwargs = call
    for sentence, variant in _candidates(name):
        try:
            with torch.no_grad():
                getattr(variant.module(module), name)(*args, **kwargs)
        except Exception as raised:  # noqa: BLE001 - the error is what is compared
            if type(raised).__name__ == type_name and str(raised) == str(exc):
                return sentence
    return None
