"""Inputs changed in place: what tests check, and what the sandbox carries back.

In one process, a function that writes into its input (`x -= x.max()` in a softmax, a
`del` in a dict it was given, a column added to a DataFrame) changes the caller's object.
Under the sandbox the student's code gets copies of NumPy arrays, dicts and pandas values,
so the worker takes a copy of each such argument before the call and sends back those that
changed; the grader writes their new contents into its own objects (`apply`). Tensors and
lists have their own ways back (sandbox.py). Tests then see exactly what they would see in
one process, and check inputs with `expect_unchanged`.
"""
from __future__ import annotations

import contextlib
import copy

import numpy as np

from .checks import fail
from .messages import INPUT_CHANGED


def _is_pandas(value) -> bool:
    module = type(value).__module__
    return (module == "pandas" or module.startswith("pandas.")) and type(value).__name__ in ("DataFrame", "Series")


def tracked(value) -> bool:
    """A value the sandbox copies and that can be changed in place."""
    return isinstance(value, (np.ndarray, dict)) or _is_pandas(value)


def copy_of(value):
    """A copy to compare with later (deep: nested lists and arrays are copied too)."""
    if _is_pandas(value):
        return value.copy(deep=True)
    if hasattr(value, "clone") and callable(value.clone):  # a tensor
        return value.detach().clone()
    return copy.deepcopy(value)


def same(before, after) -> bool:
    """Is `after` still what `before` (a copy taken with `copy_of`) was? Unknown cases count as same."""
    try:
        if isinstance(before, np.ndarray):
            return (isinstance(after, np.ndarray) and before.shape == after.shape and before.dtype == after.dtype
                    and bool(np.array_equal(before, after, equal_nan=before.dtype.kind in "fc")))
        if _is_pandas(before):
            return (type(before) is type(after) and before.equals(after) and list(before.index) == list(after.index)
                    and (not hasattr(before, "columns") or list(before.columns) == list(after.columns)))
        if hasattr(before, "clone") and hasattr(before, "shape"):  # a tensor
            import torch

            return (isinstance(after, torch.Tensor) and before.shape == after.shape and before.dtype == after.dtype
                    and bool(torch.equal(before, after.detach()) or (before.dtype.is_floating_point and torch.allclose(
                        before, after.detach(), rtol=0, atol=0, equal_nan=True))))
        return bool(before == after) and type(before) is type(after)
    except Exception:  # noqa: BLE001 - values that cannot be compared (arrays inside dicts, ...)
        return True


def snapshot(args) -> list[tuple[int, object]]:
    """Copies of the positional arguments the sandbox must watch: [(index, copy)]."""
    return [(i, copy_of(a)) for i, a in enumerate(args) if tracked(a)]


def changed(snapshots: list[tuple[int, object]], args) -> dict[int, object]:
    """{index: argument now} for the watched arguments that the call changed."""
    return {i: args[i] for i, before in snapshots if not same(before, args[i])}


def apply(original, value) -> None:
    """Write `value` (an argument the student's code changed in the worker) into the grader's
    `original`, in place, as the change would have happened in one process."""
    if isinstance(original, np.ndarray) and isinstance(value, np.ndarray):
        if not original.flags.writeable:
            return  # in one process the student's write would have failed
        if original.shape != value.shape:
            original.resize(value.shape, refcheck=False)
        np.copyto(original, value, casting="unsafe")
    elif isinstance(original, dict) and isinstance(value, dict):
        original.clear()
        original.update(value)
    elif _is_pandas(original) and type(value) is type(original):
        original._update_inplace(value)


def expect_unchanged(value, before, *, what: str) -> None:
    """Fail if `value` is no longer what `before` (its `copy_of` taken before the call) was."""
    if not same(before, value):
        fail(INPUT_CHANGED.format(what=what))


@contextlib.contextmanager
def leaves_unchanged(call: str, **inputs):
    """Around a call and the checks of its result: then each input must be as it was before.

        with leaves_unchanged("softmax(x)", x=x):
            assert_close(student.numpy_attention.softmax(x), expected, what="softmax(x)")

    A wrong result fails first (the inputs are then not looked at), so this check only
    costs points to code whose result is right. Tensors (values, shape, dtype), NumPy arrays,
    pandas values, dicts and lists are compared; so is anything else that defines ==.
    """
    copies = {name: copy_of(value) for name, value in inputs.items()}
    yield
    for name, value in inputs.items():
        expect_unchanged(value, copies[name], what=f"{name}, its argument in {call},")
