"""Comparisons that fail with messages a student can act on.

A failure raises `GradingFailure(summary, details)`: `summary` is safe to show for any test
(what was compared, shapes, how far off and where); `details` may hold expected values and
is shown only for public tests.
"""
from __future__ import annotations


import numpy as np
import torch

from . import fingerprints, messages
from .adapter import GradingFailure, describe  # GradingFailure is part of this module's API too

# (rtol, atol) per dtype for comparisons on the CPU; see the contract's "Tolerances".
TOLERANCES = {
    torch.float64: (1e-10, 1e-10),
    torch.float32: (1e-4, 1e-5),
    torch.bfloat16: (2e-2, 2e-2),
    torch.float16: (1e-3, 1e-3),
}
SMALL_TENSOR = 48  # show whole tensors in public details up to this many elements


def fail(summary: str, details: str = "", *, got=None, expected=None):
    """Raise a GradingFailure; with `got` and `expected`, try to name the mistake (see `_diagnose`)."""
    hint = ""
    if got is not None and expected is not None:
        hint = _diagnose(got, expected) or ""
    raise GradingFailure(summary, details, hint)


def _diagnose(got, expected) -> str | None:
    """The likely mistake behind `got`: the grader's diagnosis in grading, else the fingerprints'."""
    from .plugin import current_config  # here, not at the top: the sandboxed worker imports this module too

    config = current_config()
    if config is None:
        return fingerprints.diagnose(got, expected)
    return config.hook.pytest_autograder_diagnose(got=got, expected=expected)


def expect(condition: bool, summary: str, details: str = "") -> None:
    if not condition:
        fail(summary, details)


def expect_tensor(got, *, what: str, shape=None, dtype=None, device=None) -> torch.Tensor:
    """Check `got` is a plain tensor with this shape, dtype and device; return it detached."""
    if not isinstance(got, torch.Tensor):
        fail(f"{what} should be a torch.Tensor, but it is {describe(got)}.")
    if type(got) is not torch.Tensor and not isinstance(got, torch.nn.Parameter):
        fail(f"{what} should be a plain torch.Tensor, but it is a {type(got).__name__}.")
    if shape is not None and tuple(got.shape) != tuple(shape):
        fail(f"{what} has shape {list(got.shape)}, expected {list(shape)}.")
    if dtype is not None and got.dtype != dtype:
        fail(messages.WRONG_DTYPE.format(what=what, got=got.dtype, expected=dtype))
    if device is not None and got.device != torch.device(device):
        fail(f"{what} is on device {got.device}, expected {torch.device(device)} (the device of the inputs).")
    return got.detach()


def tolerance(dtype: torch.dtype, rtol: float | None = None, atol: float | None = None) -> tuple[float, float]:
    default_rtol, default_atol = TOLERANCES.get(dtype, TOLERANCES[torch.float32])
    return (default_rtol if rtol is None else rtol, default_atol if atol is None else atol)


def _index(flat_index: int, shape) -> tuple[int, ...]:
    index = []
    for size in reversed(shape):
        index.append(flat_index % size)
        flat_index //= size
    return tuple(reversed(index))


def expect_array(got, *, what: str, shape=None, dtype=None) -> np.ndarray:
    """Check `got` is a NumPy array (not a tensor, not a list) with this shape and dtype; return it."""
    if not isinstance(got, np.ndarray):
        fail(f"{what} should be a numpy.ndarray, but it is {describe(got)}.")
    if shape is not None and tuple(got.shape) != tuple(shape):
        fail(f"{what} has shape {list(got.shape)}, expected {list(shape)}.")
    if dtype is not None and got.dtype != np.dtype(dtype):
        fail(f"{what} has dtype {got.dtype}, expected {np.dtype(dtype)}.")
    if got.dtype.kind not in "fiub":
        fail(f"{what} should hold numbers, but its dtype is {got.dtype}.")
    return got


def shown(value, limit: int = 300) -> str:
    """`repr(value)` for a message, at most about `limit` characters: a dict, list, tuple or set
    is cut between entries, never inside one, and says how many entries were left out."""
    text = repr(value)
    if len(text) <= limit or not isinstance(value, (dict, list, tuple, set, frozenset)):
        return text if len(text) <= limit else text[: limit - 3] + "..."
    if isinstance(value, dict):
        entries, (opening, closing) = [f"{k!r}: {v!r}" for k, v in value.items()], "{}"
    else:
        entries = [repr(v) for v in (sorted(value, key=repr) if isinstance(value, (set, frozenset)) else value)]
        opening, closing = {list: "[]", tuple: "()"}.get(type(value), "{}")
    kept, size = [], 0
    for entry in entries:
        if kept and size + len(entry) + 2 > limit:
            break
        kept.append(entry)
        size += len(entry) + 2
    left = len(entries) - len(kept)
    more = f", ... {left} more {'entry' if left == 1 else 'entries'}" if left else ""
    return f"{opening}{', '.join(kept)}{more}{closing}"


def _show(value: torch.Tensor, as_numpy: bool) -> str:
    """A small tensor for public details, as NumPy prints it when the problem works in NumPy."""
    return repr(value.numpy()) if as_numpy else str(value)


def _as_tensors(got, expected: np.ndarray, what: str) -> tuple[torch.Tensor, torch.Tensor]:
    """NumPy arrays compared as tensors of the same dtype (the dtype's tolerance applies)."""
    got = expect_array(got, what=what)
    if got.shape != expected.shape:
        g, e = torch.from_numpy(np.array(got)), torch.from_numpy(np.array(expected))
        fail(f"{what} has shape {list(got.shape)}, expected {list(expected.shape)}.", got=g, expected=e)
    e = torch.from_numpy(np.array(expected))
    return torch.from_numpy(np.array(got)).to(e.dtype), e


def assert_close(got, expected: torch.Tensor | np.ndarray, *, what: str, rtol: float | None = None,
                 atol: float | None = None, check_dtype: bool = True) -> None:
    """`got` equals `expected` within the dtype's tolerance: same shape, dtype and device.

    A NumPy `expected` wants a NumPy `got` of the same shape; values are compared at
    `expected`'s dtype tolerance whatever `got`'s floating dtype is."""
    as_numpy = isinstance(expected, np.ndarray)
    if as_numpy:
        got, expected = _as_tensors(got, expected, what)
    if isinstance(got, torch.Tensor) and tuple(got.shape) != tuple(expected.shape):
        # a wrong shape is often a classic mistake (heads not merged, weights of the wrong axis): name it
        fail(f"{what} has shape {list(got.shape)}, expected {list(expected.shape)}.", got=got, expected=expected)
    got = expect_tensor(got, what=what, shape=expected.shape,
                        dtype=expected.dtype if check_dtype else None, device=expected.device)
    fingerprints.seen(got)
    rtol, atol = tolerance(expected.dtype, rtol, atol)
    g = got.to("cpu", torch.float64)
    e = expected.detach().to("cpu", torch.float64)
    if g.numel() == 0:
        return
    same_nonfinite = (g == e) & ~torch.isfinite(e)
    excess = (g - e).abs() - (atol + rtol * e.abs())
    excess = torch.where(same_nonfinite, torch.zeros_like(excess), excess)
    excess = torch.nan_to_num(excess, nan=float("inf"))
    bad = excess > 0
    if not bad.any():
        return
    flat = int(excess.flatten().argmax())
    where = _index(flat, g.shape)
    err = float((g - e).abs().flatten()[flat])
    n_bad = int(bad.sum())
    summary = (f"{what} is wrong at {n_bad} of {g.numel()} values; the largest error is {err:.3g} "
               f"at index {list(where)} (allowed: {atol:g} + {rtol:g} x |expected|).")
    if not torch.isfinite(g.flatten()[flat]):
        summary += f" Your value there is {float(g.flatten()[flat])}."
    details = f"At index {list(where)}: expected {float(e.flatten()[flat]):.6g}, got {float(g.flatten()[flat]):.6g}."
    if g.numel() <= SMALL_TENSOR:
        shown_e, shown_g = _show(e.to(expected.dtype), as_numpy), _show(g.to(expected.dtype), as_numpy)
        details += f"\nexpected:\n{shown_e}\ngot:\n{shown_g}"
    fail(summary, details, got=got, expected=expected)


def assert_equal(got, expected: torch.Tensor | np.ndarray, *, what: str) -> None:
    """Exact equality of integer or boolean tensors or arrays (same shape, dtype, device)."""
    as_numpy = isinstance(expected, np.ndarray)
    if as_numpy:
        got, expected = _as_tensors(got, expected, what)
    got = expect_tensor(got, what=what, shape=expected.shape, dtype=expected.dtype, device=expected.device)
    fingerprints.seen(got)
    diff = got.cpu() != expected.detach().cpu()
    if diff.any():
        flat = int(diff.flatten().nonzero()[0])
        where = _index(flat, got.shape)
        summary = f"{what} differs at {int(diff.sum())} of {got.numel()} positions, first at index {list(where)}."
        details = (f"At index {list(where)}: expected {expected.flatten()[flat].item()}, "
                   f"got {got.flatten()[flat].item()}.")
        if got.numel() <= SMALL_TENSOR:
            details += f"\nexpected:\n{_show(expected.detach().cpu(), as_numpy)}\ngot:\n{_show(got.cpu(), as_numpy)}"
        fail(summary, details, got=got, expected=expected)


def assert_scalar_close(got: float, expected: float, *, what: str, rtol: float = 1e-4, atol: float = 1e-6) -> None:
    fingerprints.seen(torch.tensor(float(got), dtype=torch.float64))
    if not abs(got - expected) <= atol + rtol * abs(expected):
        fail(f"{what} is off by {abs(got - expected):.3g}.", f"expected {expected:.6g}, got {got:.6g}.",
             got=torch.tensor(float(got), dtype=torch.float64),
             expected=torch.tensor(float(expected), dtype=torch.float64))
