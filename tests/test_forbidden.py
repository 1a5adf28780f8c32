"""Forbidden calls: every alias of a forbidden computation is caught, the grader's own calls are not.

Calls made in this file count as student code (`is_student` is `filename == __file__`).
"""
import functools

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from autograder import manifest
from autograder.kit.checks import GradingFailure
from autograder.kit.torchkit import COMPUTATIONS, ForbiddenCalls, computation_of, resolve

NAMES = {"p": ["torch.nn.functional.scaled_dot_product_attention", "torch.nn.MultiheadAttention"]}
SOFTMAX = {"p": ["torch.softmax"]}
X = torch.randn(2, 3, 4, generator=torch.Generator().manual_seed(0))


def mine(filename):
    return filename == __file__


def caught(names, call):
    """The message of the failure `call()` raises under the guard (None if it is not caught)."""
    with ForbiddenCalls(names, mine) as guard:
        try:
            call()
        except GradingFailure as exc:
            assert guard.violations == [str(exc)]
            return str(exc)
    return guard.violations[0] if guard.violations else None


def test_an_aliased_function_is_caught():
    from torch.nn.functional import scaled_dot_product_attention as fast

    q = torch.ones(1, 2, 4)
    with ForbiddenCalls(NAMES, mine) as guard:
        with pytest.raises(GradingFailure, match="scaled_dot_product_attention, which is not allowed"):
            fast(q, q, q)
    assert len(guard.violations) == 1


def test_a_forbidden_module_class_is_caught():
    layer = torch.nn.MultiheadAttention(4, 2, batch_first=True)
    x = torch.ones(1, 2, 4)
    with ForbiddenCalls(NAMES, mine):
        with pytest.raises(GradingFailure, match="MultiheadAttention"):
            layer(x, x, x)


def test_calls_from_grader_code_are_allowed():
    q = torch.ones(1, 2, 4)
    with ForbiddenCalls(dict(NAMES, s=["torch.softmax"]), lambda filename: False) as guard:
        torch.nn.functional.scaled_dot_product_attention(q, q, q)
        torch.softmax(q, -1)
        q.softmax(-1)
        torch.ops.aten._softmax(q, -1, False)
        nn.MultiheadAttention(4, 2, batch_first=True).forward(q, q, q)
    assert guard.violations == []


SOFTMAX_ALIASES = {
    "torch.softmax": lambda: torch.softmax(X, -1),
    "a method": lambda: X.softmax(-1),
    "an unbound method": lambda: torch.Tensor.softmax(X, -1),
    "torch.special.softmax": lambda: torch.special.softmax(X, -1),
    "F.softmax": lambda: F.softmax(X, dim=-1),
    "nn.Softmax": lambda: nn.Softmax(dim=-1)(X),
    "nn.Softmax's forward": lambda: nn.Softmax(dim=-1).forward(X),
    "torch._softmax": lambda: torch._softmax(X, -1, False),
    "torch.ops.aten._softmax": lambda: torch.ops.aten._softmax(X, -1, False),
    "torch.ops.aten.softmax.int": lambda: torch.ops.aten.softmax.int(X, -1),
    "log_softmax, then exp": lambda: torch.log_softmax(X, -1).exp(),
    "F.softmin of -x": lambda: F.softmin(-X, dim=-1),
    "functools.partial": lambda: functools.partial(torch.softmax, dim=-1)(X),
    "torch.distributions": lambda: torch.distributions.Categorical(logits=X).probs,
    "inside another library function (seen as the operator)":
        lambda: nn.MultiheadAttention(4, 2, batch_first=True)(X, X, X),
}


@pytest.mark.parametrize("how", SOFTMAX_ALIASES)
def test_every_alias_of_softmax_is_caught(how):
    message = caught(SOFTMAX, SOFTMAX_ALIASES[how])
    assert message is not None and "softmax" in message and "which is not allowed" in message, message


ATTENTION_ALIASES = {
    "F.scaled_dot_product_attention": lambda: F.scaled_dot_product_attention(X, X, X),
    "torch.ops.aten.scaled_dot_product_attention": lambda: torch.ops.aten.scaled_dot_product_attention(X, X, X),
    "the math kernel": lambda: torch._scaled_dot_product_attention_math(X, X, X),
    "the CPU kernel": lambda: torch._scaled_dot_product_flash_attention_for_cpu(X[None], X[None], X[None]),
    "nn.MultiheadAttention": lambda: nn.MultiheadAttention(4, 2, batch_first=True)(X, X, X),
    "nn.MultiheadAttention's forward": lambda: nn.MultiheadAttention(4, 2, batch_first=True).forward(X, X, X),
    "F.multi_head_attention_forward": lambda: F.multi_head_attention_forward(
        X.transpose(0, 1), X.transpose(0, 1), X.transpose(0, 1), 4, 2, torch.randn(12, 4), torch.zeros(12),
        None, None, False, 0.0, torch.randn(4, 4), torch.zeros(4)),
    "nn.TransformerEncoderLayer (fast path)": lambda: nn.TransformerEncoderLayer(4, 2, 8, batch_first=True).eval()(X),
    "nn.TransformerEncoderLayer's forward": lambda: nn.TransformerEncoderLayer(4, 2, 8, batch_first=True).forward(X),
}


@pytest.mark.parametrize("how", ATTENTION_ALIASES)
def test_every_alias_of_library_attention_is_caught(how):
    with torch.no_grad():
        message = caught(NAMES, ATTENTION_ALIASES[how])
    assert message is not None and "which is not allowed" in message, message


@pytest.fixture(scope="module")
def distilbert_attention():
    from autograder.kit.tiny_hf import tiny_distilbert

    attn = tiny_distilbert(50).eval().transformer.layer[0].attention
    hidden = torch.randn(2, 5, 32, generator=torch.Generator().manual_seed(1))
    return attn, hidden


def _eager(attn, hidden):
    from transformers.models.distilbert.modeling_distilbert import eager_attention_forward

    q = attn.q_lin(hidden).view(2, 5, 4, 8).transpose(1, 2)
    k = attn.k_lin(hidden).view(2, 5, 4, 8).transpose(1, 2)
    return eager_attention_forward(attn, q, k, k, None, scaling=8 ** -0.5)


DISTILBERT_ALIASES = {
    "the module": lambda attn, hidden: attn(hidden),
    "its forward": lambda attn, hidden: attn.forward(hidden),
    "the class's forward": lambda attn, hidden: type(attn).forward(attn, hidden),
    "a partial of its forward": lambda attn, hidden: functools.partial(attn.forward)(hidden),
    "eager_attention_forward": _eager,
}


@pytest.mark.parametrize("how", DISTILBERT_ALIASES)
def test_every_alias_of_distilbert_attention_is_caught(how, distilbert_attention):
    attn, hidden = distilbert_attention
    names = {"by_hand": ["transformers.models.distilbert.modeling_distilbert.DistilBertSelfAttention"]}
    with torch.no_grad():
        message = caught(names, lambda: DISTILBERT_ALIASES[how](attn, hidden))
    assert message is not None and "by_hand" in message and "which is not allowed" in message, message


def test_distilbert_projections_are_allowed(distilbert_attention):
    """What the handout asks for (q_lin, k_lin, a softmax) is not forbidden."""
    attn, hidden = distilbert_attention
    names = {"by_hand": ["transformers.models.distilbert.modeling_distilbert.DistilBertSelfAttention"]}
    with torch.no_grad(), ForbiddenCalls(names, mine) as guard:
        torch.softmax(attn.q_lin(hidden) @ attn.k_lin(hidden).transpose(1, 2), -1)
    assert guard.violations == []


def test_the_profile_hook_is_restored(distilbert_attention):
    import sys

    names = {"by_hand": ["transformers.models.distilbert.modeling_distilbert.DistilBertSelfAttention"]}
    before = sys.getprofile()
    with ForbiddenCalls(names, mine):
        assert sys.getprofile() is not before
    assert sys.getprofile() is before


def test_every_name_in_the_alias_table_resolves():
    for computation in COMPUTATIONS:
        for name in computation.names:
            assert resolve(name) is not None, name
        for op in computation.ops:
            assert op.startswith("aten::"), op


@pytest.mark.parametrize("assignment", ["transformer", "foundations", "training"])
def test_every_forbidden_name_of_the_manifests_has_its_aliases(assignment):
    """A manifest names one member of a computation; the table supplies the others."""
    for problem, names in manifest.load(assignment).forbidden.items():
        for name in names:
            found = computation_of(name)
            assert found is not None, f"{assignment}/{problem}: {name} is in no computation of torchkit.COMPUTATIONS"
            assert len(found.names) > 1, name
