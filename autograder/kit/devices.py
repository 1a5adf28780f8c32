"""The device training tests run on: CUDA when the runner has a GPU, else the CPU.

Tests take the `device` fixture (import it into the test module: `from autograder.kit.devices
import device`). On CUDA, TF32 is turned off for the test, so comparisons with the reference
keep float32's tolerance. `budget(table, device)` picks a per-device figure (steps, say) from
a table such as `{"cpu": 60, "cuda": 200}`: a GPU runner may train more, a CPU container still
grades within the platform's time limit.
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


def budget(table: dict, device: str):
    """The entry of `table` for `device` ('cuda:0' counts as 'cuda'), else its 'cpu' entry."""
    kind = torch.device(device).type
    return table.get(kind, table["cpu"])


@pytest.fixture
def device() -> str:
    """The device of this test's tensors and models ('cuda' or 'cpu'), with TF32 off."""
    with tf32_off():
        yield pick_device()
