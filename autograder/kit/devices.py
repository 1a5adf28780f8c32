"""The device training tests run on: CUDA when the runner has a GPU, else the CPU.

Tests take the `device` fixture (import it into the test module: `from autograder.kit.devices
import device`). On CUDA, TF32 is turned off for the test, so comparisons with the reference
keep float32's tolerance. `budget(name, device)` picks a per-device figure (steps, say) from
the assignment manifest's [budgets] (`overfit_steps = { cpu = 60, cuda = 150 }`): a GPU runner
may train more, a CPU container still grades within the platform's time limit. The grader
passes them with `--budgets`; a student's run reads them from problems.json, written with the
student zip (`set_budgets`).
"""
from __future__ import annotations

import contextlib

import pytest
import torch


def pick_device() -> str:
    """'cuda' when torch sees a GPU, else 'cpu'."""
    return "cuda" if torch.cuda.is_available() else "cpu"


@contextlib.contextmanager
def tf32_off():
    """TF32 matmuls and convolutions off (exact float32) inside the block, restored after."""
    matmul = torch.backends.cuda.matmul.allow_tf32
    cudnn = torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = matmul
        torch.backends.cudnn.allow_tf32 = cudnn


NO_BUDGET = ("no training budget named {name!r} (the assignment manifest's [budgets]; known: {known}): "
             "run the tests with run_tests.py or the grader, which pass them")
_BUDGETS: dict[str, dict] = {}


def set_budgets(budgets: dict[str, dict]) -> None:
    """The budgets `budget(name, ...)` reads: {name: {device: figure}}, as the manifest gives them."""
    _BUDGETS.clear()
    _BUDGETS.update(budgets)


def budget(name: str | dict, device: str):
    """The figure of budget `name` (or of a table {device: figure}) for `device` ('cuda:0'
    counts as 'cuda'), else its 'cpu' figure."""
    if isinstance(name, str):
        if name not in _BUDGETS:
            raise LookupError(NO_BUDGET.format(name=name, known=", ".join(sorted(_BUDGETS)) or "none"))
        table = _BUDGETS[name]
    else:
        table = name
    kind = torch.device(device).type
    value = table.get(kind, table["cpu"])
    return int(value) if float(value).is_integer() else value


@pytest.fixture
def device() -> str:
    """The device of this test's tensors and models ('cuda' or 'cpu'), with TF32 off."""
    with tf32_off():
        yield pick_device()
