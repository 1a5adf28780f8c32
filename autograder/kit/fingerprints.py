"""Likely mistakes named on a student's laptop, without the reference: fingerprints of wrong outputs.

The grader names a mistake by replaying the failing call on the catalogued wrong variants
(diagnosis.py), which are edits of the reference, so the student zip cannot hold them. It holds
`fingerprints.json` instead, written by `python -m autograder build` (build/fingerprints.py):
the public tests were run on each diagnosed wrong variant, and at each failing check the build
kept a hash of what the variant gave there (`got`), under the test and the last call into
student code, with the variant's diagnosis. Only wrong variants' results on public inputs are
hashed: a hash of a wrong result says nothing of the right one, and the build drops any hash
that the reference's own result at that check would also have.

When a public test fails on a student's laptop, `diagnose` hashes the student's result the same
way; if it matches, the failure names that mistake in the grader's words (messages.DIAGNOSIS),
only when every matching variant names the same one (as the grader does). An error the student's
code raised is matched by its type and message, as the grader matches it.

How a value is hashed (`value_hashes`): its kind (float, integer or boolean), its shape and its
values; integers and booleans exactly; floats rounded to a few significant digits of the variant's
largest value (5 for up to 4 values, 4 up to 64, else 3: float32 noise is far below the step,
`quantum`, which is stored with each fingerprint); on four grids a quarter step apart, so that
values that sit on a boundary of one grid (and could round either way) do not spoil the others.
A match on any grid counts. -0.0 is 0.0.
Each hash is salted with the test and the call, so a result can only match where it was made.

Also a pytest plugin (`-p autograder.kit.fingerprints`, loaded by the student zip's
conftest.py): it tells `diagnose` which test is running.
"""
from __future__ import annotations

import hashlib
import json
import math
import pathlib

import numpy as np

FORMAT = 1
GRIDS = (0.0, 0.25, 0.5, 0.75)   # offsets of the rounding grids, in steps
DIGITS = ((4, 5), (64, 4), (math.inf, 3))   # (up to this many values, significant digits kept)
SENTINELS = {"nan": 2 ** 62, "inf": 2 ** 62 + 1, "-inf": -(2 ** 62 + 1)}
LIMIT = 2 ** 61              # rounded values are clipped here (a huge result stays a huge result)

_state: dict = {"test": None, "table": None, "records": None, "checks": False}


def test_key(nodeid: str) -> str:
    """A test's name wherever its folder is: `test_attention.py::test_x[params]`."""
    path, _, rest = nodeid.partition("::")
    return f"{pathlib.PurePosixPath(path).name}::{rest}"


def _call() -> str:
    """The last call into student code, as failure messages show it."""
    from . import adapter

    return adapter.last_call_shown() or ""


# ---- values ----

def canonical(value) -> tuple[str, tuple[int, ...], np.ndarray] | None:
    """(kind "f", "i" or "b", shape, flat values: float64 for floats, int64 otherwise) of a
    tensor or NumPy array of numbers; None for anything else."""
    kind_of = {"f": "f", "i": "i", "u": "i", "b": "b"}
    if type(value).__module__.startswith("torch") and hasattr(value, "detach"):
        if value.device.type == "meta" or value.is_complex():
            return None
        tensor = value.detach().cpu()
        if tensor.is_floating_point():
            array = tensor.double().numpy()
        else:
            array = tensor.numpy()
    elif isinstance(value, np.ndarray):
        array = value
    else:
        return None
    kind = kind_of.get(array.dtype.kind)
    if kind is None:
        return None
    flat = np.ascontiguousarray(array, dtype=np.float64 if kind == "f" else np.int64).reshape(-1)
    return kind, tuple(int(n) for n in array.shape), flat


def digits(size: int) -> int:
    """How finely a float result of `size` values is rounded: the more values, the coarser, so
    that float32 noise seldom moves one of them across a boundary of every grid."""
    return next(d for limit, d in DIGITS if size <= limit)


def quantum(values: np.ndarray) -> float:
    """The rounding step for a float result: a power of ten that keeps `digits(size)` significant
    digits of its largest finite value (1e-12 when all are 0)."""
    finite = np.abs(values[np.isfinite(values)])
    top = float(finite.max()) if finite.size else 0.0
    if top == 0.0:
        return 1e-12
    return float(f"1e{math.floor(math.log10(top)) - digits(values.size) + 1}")


def _rounded(values: np.ndarray, step: float, offset: float) -> np.ndarray:
    """Each value's cell on the grid of `step` shifted by `offset` steps (-0.0 and 0.0 alike)."""
    with np.errstate(over="ignore", invalid="ignore"):
        cells = np.floor(np.clip(values / step + offset, -LIMIT, LIMIT))
    cells = np.where(np.isfinite(values), cells, 0).astype("<i8")
    cells[np.isnan(values)] = SENTINELS["nan"]
    cells[np.isposinf(values)] = SENTINELS["inf"]
    cells[np.isneginf(values)] = SENTINELS["-inf"]
    return cells


def _digest(salt: str, data: bytes) -> str:
    return hashlib.sha256(salt.encode() + b"\0" + data).hexdigest()[:24]


def _salt(test: str, call: str, kind: str, shape: tuple) -> str:
    return json.dumps([test, call, kind, list(shape)])


def value_hashes(test: str, call: str, value, step: float | None) -> list[str]:
    """The hashes of `value` at this test and call: one for integers and booleans (exact), one
    per grid of `step` (default: `quantum` of the value) for floats; [] for a value that is not numbers."""
    found = canonical(value)
    return [] if found is None else canonical_hashes(test, call, found, step)


def canonical_hashes(test: str, call: str, found: tuple, step: float | None) -> list[str]:
    """`value_hashes` of a value already made `canonical`."""
    kind, shape, flat = found
    salt = _salt(test, call, kind, shape)
    if kind != "f":
        return [_digest(salt, flat.astype("<i8").tobytes())]
    if step is None:
        step = quantum(flat)
    return [_digest(f"{salt} {step!r} {offset}", _rounded(flat, step, offset).tobytes()) for offset in GRIDS]


def error_hash(test: str, call: str, type_name: str, message: str) -> str:
    return _digest(json.dumps([test, call, "error", type_name]), message.encode())


# ---- the student's side: the table shipped in the zip ----

def load(path: str | pathlib.Path) -> bool:
    """Use the fingerprints of `path` (fingerprints.json) from now on; False if there are none."""
    try:
        table = json.loads(pathlib.Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if table.get("format") != FORMAT:
        return False
    _state["table"] = table
    return True


def _named(entries: list[dict], matches) -> str | None:
    """The one mistake of the entries that `matches`; None if none does or they disagree."""
    table = _state["table"]
    found = {table["mistakes"][k] for entry in entries if matches(entry) for k in entry["mistakes"]}
    return found.pop() if len(found) == 1 else None


def _entries(kind: str) -> list[dict]:
    table, test = _state["table"], _state["test"]
    if table is None or test is None:
        return []
    return [e for e in table["tests"].get(test, {}).get(_call(), []) if e["kind"] == kind]


def _lookup(got) -> str | None:
    test, call = _state["test"], _call()

    def matches(entry: dict) -> bool:
        return bool(set(value_hashes(test, call, got, entry.get("quantum"))) & set(entry["hashes"]))

    entries = _entries("value")
    return _named(entries, matches) if entries and canonical(got) is not None else None


def diagnose(got, expected) -> str | None:
    """The mistake whose fingerprint the student's result `got` has at this check (when a table
    is loaded), or None. While the build records (`record`), remembers `got` and `expected`."""
    if _state["records"] is not None:
        _remember("value", got=canonical(got), expected=canonical(expected))
        return None
    try:
        return _lookup(got)
    except Exception:  # noqa: BLE001 - a hint must never break a test
        return None


def diagnose_exception(type_name: str, message: str) -> str | None:
    """The mistake whose variant raised the same error at this call, or None."""
    if _state["records"] is not None:
        _remember("error", error=[type_name, message])
        return None
    try:
        wanted = error_hash(_state["test"] or "", _call(), type_name, message)
        return _named(_entries("error"), lambda entry: wanted in entry["hashes"])
    except Exception:  # noqa: BLE001 - a hint must never break a test
        return None


def seen(got) -> None:
    """A check is comparing `got` (recorded only while the build records every check)."""
    if _state["records"] is not None and _state["checks"]:
        _remember("seen", got=canonical(got))


# ---- the build's side: recording what happens at checks ----

def record(records: list | None, every_check: bool = False) -> None:
    """Append to `records` what fails from now on (and, with `every_check`, every value a check
    compares); None stops recording."""
    _state["records"], _state["checks"] = records, every_check


def _remember(kind: str, **what) -> None:
    try:
        _state["records"].append(dict(kind=kind, test=_state["test"], call=_call(), **what))
    except Exception:  # noqa: BLE001 - recording must never break a test
        pass


# ---- pytest plugin ----

def pytest_runtest_setup(item):
    _state["test"] = test_key(item.nodeid)


def pytest_runtest_logfinish(nodeid, location):
    _state["test"] = None
