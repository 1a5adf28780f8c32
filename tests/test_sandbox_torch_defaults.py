"""Student code that changes torch's process-wide defaults (torch.set_default_dtype,
torch.set_default_device) at import or in a call does not change how later code runs: a
correct attention.py that set a float64 default at import lost points in every module problem
of model.py and debugging.py (their parameters became float64), a cascade into problems it is
not in (red-team, mutants `ok-default-dtype-set-at-import`, `ok-default-dtype-set-in-a-call`)."""

import textwrap

import torch

from autograder.kit import adapter


SUBMISSION = '''
import torch

torch.set_default_dtype(torch.float64)  # at import


def made():
    """The dtypes and device of what this call creates with the defaults."""
    return [str(torch.zeros(1).dtype), str(torch.nn.Linear(2, 2).weight.dtype), str(torch.zeros(1).device)]


def spoil():
    """Changes the defaults in a call; what it creates there follows them."""
    torch.set_default_dtype(torch.float64)
    torch.set_default_device("meta")
    return [str(torch.zeros(1).dtype), str(torch.zeros(1).device)]
'''


def test_a_default_dtype_set_at_import_does_not_reach_the_calls(remote):
    assert remote.student.made() == ["torch.float32", "torch.float32", "cpu"]
    assert torch.get_default_dtype() == torch.float32


def test_defaults_set_in_a_call_hold_in_it_and_are_put_back_after_it(remote):
    assert remote.student.spoil() == ["torch.float64", "meta"]
    assert remote.student.made() == ["torch.float32", "torch.float32", "cpu"]


def test_an_import_in_the_test_process_puts_the_defaults_back(tmp_path):
    """Without the sandbox (grade --no-sandbox, students' own runs) the import is guarded too."""
    (tmp_path / "student.py").write_text(textwrap.dedent(SUBMISSION))
    try:
        module = adapter.Submission(tmp_path).module("student")
        assert torch.get_default_dtype() == torch.float32
        assert torch.get_default_device() == torch.device("cpu")
        assert module.made() == ["torch.float32", "torch.float32", "cpu"]
    finally:
        torch.set_default_dtype(torch.float32)
        torch.set_default_device(None)


def test_torch_defaults_kept_restores_dtype_and_device():
    try:
        with adapter.torch_defaults_kept():
            torch.set_default_dtype(torch.bfloat16)
            torch.set_default_device("meta")
        assert torch.get_default_dtype() == torch.float32
        assert torch.zeros(1).device == torch.device("cpu")
    finally:
        torch.set_default_dtype(torch.float32)
        torch.set_default_device(None)
