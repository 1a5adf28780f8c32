"""Through the sandbox, student code and the grader's objects it calls see the test's grad mode
(issue 10: a greedy_decode without torch.no_grad() got full marks, because a spy model called back
from the worker always ran with gradients off)."""

import torch
import torch.nn as nn


SUBMISSION = '''
import torch

def call_plain(model, ids):
    return model(ids).argmax(-1)

@torch.no_grad()
def call_without_grad(model, ids):
    return model(ids).argmax(-1)
'''


class Spy(nn.Module):
    """Records the grad mode it is called in."""

    def __init__(self):
        super().__init__()
        self.gain = nn.Parameter(torch.ones(()))
        self.modes = []

    def forward(self, ids):
        self.modes.append(torch.is_grad_enabled())
        return torch.nn.functional.one_hot(ids % 5, 5).float() * self.gain


def test_a_callback_runs_in_the_grad_mode_of_student_code(remote):
    ids = torch.tensor([[1, 2, 3]])
    spy = Spy()
    assert torch.equal(remote.student.call_plain(spy, ids), torch.tensor([[1, 2, 3]]))
    assert spy.modes == [True]  # the test's grad mode is on, and student code did not turn it off
    assert torch.equal(remote.student.call_without_grad(spy, ids), torch.tensor([[1, 2, 3]]))
    assert spy.modes == [True, False]
    with torch.no_grad():
        remote.student.call_plain(spy, ids)
    assert spy.modes == [True, False, False]
