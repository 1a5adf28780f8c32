"""Public tests for debugging.py: the attention hook and the fixed encoder layer."""
import pytest
import torch
import torch.nn as nn

from autograder.kit.adapter import call
from autograder.kit.checks import assert_close, expect, expect_tensor
from autograder.kit.torchkit import randn


class TwoOutputs(nn.Module):
    """Stands in for MultiHeadAttention: returns (x * 2, fixed weights)."""

    def forward(self, x, mask=None):
        B, T, _ = x.shape
        return x * 2, torch.full((B, 1, T, T), 1.0 / T) + 0 * x.sum()  # weights need grad when x does


def ISOLATE_MHA(test):
    """In grading, the layer is built with the reference's MultiHeadAttention (graded on its own)."""
    return pytest.mark.isolate("attention", "MultiHeadAttention")(
        pytest.mark.isolate("debugging", "MultiHeadAttention")(test))


@pytest.mark.problem("attach_attention_hook")
def test_hook_captures_weights(student):
    """one forward call stores one tensor: the weights, detached; the module's output is unchanged"""
    module, storage = TwoOutputs(), []
    handle = student.debugging.attach_attention_hook(module, storage)
    x = torch.ones(2, 3, 4, requires_grad=True)
    output, returned = module(x)
    expect(len(storage) == 1, f"after one forward call storage should hold 1 tensor, it holds {len(storage)}.")
    assert_close(output, x.detach() * 2, what="the module's output with the hook attached (it must not change)")
    expect(returned.requires_grad, "with the hook attached the module returned detached weights: "
                                   "the hook must not change the module's outputs (store a detached copy only).")
    weights = expect_tensor(storage[0], what="storage[0]", shape=(2, 1, 3, 3))
    assert_close(weights, torch.full((2, 1, 3, 3), 1 / 3), what="storage[0] (the attention weights)")
    expect(not storage[0].requires_grad, "the stored weights should be detached (.detach()).")
    expect(hasattr(handle, "remove"), "attach_attention_hook should return the hook's handle.")


@pytest.mark.problem("attach_attention_hook")
def test_hook_remove(student):
    """after handle.remove() nothing more is stored"""
    module, storage = TwoOutputs(), []
    handle = student.debugging.attach_attention_hook(module, storage)
    module(torch.ones(1, 2, 4))
    expect(len(storage) == 1, f"after one forward call storage should hold 1 tensor, it holds {len(storage)}.")
    assert_close(storage[0], torch.full((1, 1, 2, 2), 1 / 2), what="storage[0] (the attention weights)")
    handle.remove()
    module(torch.ones(1, 2, 4))
    expect(len(storage) == 1, f"storage should hold 1 tensor after remove(), it holds {len(storage)}.")


@pytest.mark.problem("FixedTransformerEncoderLayer")
@ISOLATE_MHA
def test_fixed_layer_shapes(student):
    """forward returns (x (B, T, d), weights (B, H, T, T)): norm1(x + attn), then norm2(x + ffn(x))"""
    layer = student.debugging.FixedTransformerEncoderLayer(16, 4, 32).eval()
    x = randn(2, 5, 16, seed=1)
    with torch.no_grad():
        out, weights = call(layer, x)
        attention, expected_weights = layer.mha(x)
        h = layer.norm1(x + attention)
        expected = layer.norm2(h + layer.ffn(h))
    expect_tensor(out, what="FixedTransformerEncoderLayer(16, 4, 32)(x)[0]", shape=(2, 5, 16))
    expect_tensor(weights, what="FixedTransformerEncoderLayer(16, 4, 32)(x)[1]", shape=(2, 4, 5, 5))
    assert_close(out, expected, what="FixedTransformerEncoderLayer(16, 4, 32)(x)[0] in eval mode")
    assert_close(weights, expected_weights, what="FixedTransformerEncoderLayer(16, 4, 32)(x)[1] (mha's weights)")


@pytest.mark.problem("FixedTransformerEncoderLayer")
@ISOLATE_MHA
def test_fixed_layer_keeps_the_input(student):
    """with attention and feed-forward outputs zeroed, the output is norm2(norm1(x)): the residuals carry x"""
    layer = student.debugging.FixedTransformerEncoderLayer(8, 2, 16).eval()
    with torch.no_grad():
        for linear in (layer.mha.W_o, layer.ffn[2]):
            linear.weight.zero_()
            linear.bias.zero_()
        x = randn(2, 4, 8, seed=2)
        out, weights = call(layer, x)
        expected = layer.norm2(layer.norm1(x))
        _, expected_weights = layer.mha(x)
    assert_close(out, expected, what="FixedTransformerEncoderLayer(x) with mha.W_o and ffn[2] set to zero")
    assert_close(weights, expected_weights, what="the weights FixedTransformerEncoderLayer(x) returns (mha's)")
