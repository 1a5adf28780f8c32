import pytest
import torch

from autograder.testing.checks import GradingFailure
from autograder.testing.torchkit import ForbiddenCalls

NAMES = {"p": ["torch.nn.functional.scaled_dot_product_attention", "torch.nn.MultiheadAttention"]}


def test_an_aliased_function_is_caught():
    from torch.nn.functional import scaled_dot_product_attention as fast

    q = torch.ones(1, 2, 4)
    with ForbiddenCalls(NAMES, lambda filename: filename == __file__) as guard:
        with pytest.raises(GradingFailure, match="scaled_dot_product_attention, which is not allowed"):
            fast(q, q, q)
    assert len(guard.violations) == 1


def test_a_forbidden_module_class_is_caught():
    layer = torch.nn.MultiheadAttention(4, 2, batch_first=True)
    x = torch.ones(1, 2, 4)
    with ForbiddenCalls(NAMES, lambda filename: filename == __file__):
        with pytest.raises(GradingFailure, match="MultiheadAttention"):
            layer(x, x, x)


def test_calls_from_grader_code_are_allowed():
    q = torch.ones(1, 2, 4)
    with ForbiddenCalls(NAMES, lambda filename: False) as guard:
        torch.nn.functional.scaled_dot_product_attention(q, q, q)
        torch.softmax(q, -1)
    assert guard.violations == []
