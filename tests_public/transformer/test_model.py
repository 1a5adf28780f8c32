"""Public tests for model.py: the notebook's shape checks and properties you can reason about."""
import math

import pytest
import torch
import torch.nn as nn

from autograder.testing.adapter import call
from autograder.testing.checks import assert_close, assert_equal, assert_scalar_close, expect, expect_tensor
from autograder.testing.torchkit import randint, randn


@pytest.mark.problem("CausalSelfAttention")
def test_causal_self_attention_shape(student):
    """the notebook's example: (1, 3, 8) in, (1, 3, 8) out"""
    attention = student.model.CausalSelfAttention()
    out = call(attention, torch.rand(1, 3, 8))
    expect_tensor(out, what="CausalSelfAttention()(x)", shape=(1, 3, 8))


@pytest.mark.problem("CausalSelfAttention")
def test_causal_self_attention_layers(student):
    """q_proj, k_proj, v_proj, out_proj are Linear(hidden, hidden); two nn.Dropout(dropout)"""
    attention = student.model.CausalSelfAttention(hidden_size=16, num_heads=4, dropout=0.2, seq_len=6)
    for name in ("q_proj", "k_proj", "v_proj", "out_proj"):
        layer = getattr(attention, name, None)
        expect(isinstance(layer, nn.Linear) and tuple(layer.weight.shape) == (16, 16) and layer.bias is not None,
               f"CausalSelfAttention.{name} should be nn.Linear(16, 16) with a bias.")
    for name in ("attn_dropout", "resid_dropout"):
        layer = getattr(attention, name, None)
        expect(isinstance(layer, nn.Dropout) and layer.p == 0.2, f"CausalSelfAttention.{name} should be nn.Dropout(0.2).")


@pytest.mark.problem("CausalSelfAttention")
def test_causal_self_attention_ignores_the_future(student):
    """in eval mode, changing the last token does not change earlier outputs"""
    attention = student.model.CausalSelfAttention(hidden_size=8, num_heads=2, dropout=0.1, seq_len=5).eval()
    x = randn(2, 5, 8, seed=1)
    changed = x.clone()
    changed[:, -1] += 10
    with torch.no_grad():
        out, out_changed = call(attention, x), call(attention, changed)
    expect_tensor(out, what="CausalSelfAttention(8, 2, 0.1, 5)(x)", shape=(2, 5, 8))
    assert_close(out_changed[:, :-1], out[:, :-1],
                 what="outputs at positions 0..3 after changing token 4 (they must not see it)")


@pytest.mark.problem("FeedForward")
def test_feed_forward(student):
    """fc1: Linear(C, 4C), ReLU, fc2: Linear(4C, C); output shape (..., C)"""
    ffn = student.model.FeedForward(8, 0.0)
    expect(isinstance(getattr(ffn, "fc1", None), nn.Linear) and tuple(ffn.fc1.weight.shape) == (32, 8),
           "FeedForward.fc1 should be nn.Linear(8, 32).")
    expect(isinstance(getattr(ffn, "fc2", None), nn.Linear) and tuple(ffn.fc2.weight.shape) == (8, 32),
           "FeedForward.fc2 should be nn.Linear(32, 8).")
    x = randn(2, 3, 8, seed=2)
    with torch.no_grad():
        out = call(ffn, x)
        expected = ffn.fc2(torch.relu(ffn.fc1(x)))
    assert_close(out, expected, what="FeedForward(8, 0.0)(x)")


@pytest.mark.problem("Block")
def test_block_shape(student):
    """the notebook's example: Block()(x) keeps the shape (1, 3, 8)"""
    block = student.model.Block()
    out = call(block, torch.rand(1, 3, 8))
    expect_tensor(out, what="Block()(x)", shape=(1, 3, 8))
    for name, kind in (("ln1", nn.LayerNorm), ("ln2", nn.LayerNorm)):
        expect(isinstance(getattr(block, name, None), kind), f"Block.{name} should be an nn.LayerNorm.")


@pytest.mark.problem("Block")
@pytest.mark.isolate("model", "CausalSelfAttention", "FeedForward")
def test_block_is_residual(student):
    """with attention and feed-forward outputs zeroed, a pre-norm Block returns its input"""
    block = student.model.Block(hidden_size=8, num_heads=2, dropout=0.0, seq_len=4).eval()
    with torch.no_grad():
        for linear in (block.attn.out_proj, block.ffn.fc2):
            linear.weight.zero_()
            linear.bias.zero_()
        x = randn(2, 4, 8, seed=3)
        out = call(block, x)
    assert_close(out, x, what="Block(x) with attn.out_proj and ffn.fc2 set to zero")


@pytest.mark.problem("Transformer")
def test_transformer_logits_shape(student):
    """the notebook's example: input_ids (1, 3) give logits (1, 3, 100)"""
    model = student.model.Transformer()
    logits = call(model, torch.randint(0, 100, (1, 3)))
    expect_tensor(logits, what="Transformer()(input_ids)", shape=(1, 3, 100))


@pytest.mark.problem("Transformer")
def test_transformer_shorter_input(student):
    """inputs shorter than seq_len work; positions are 0..T-1"""
    model = student.model.Transformer(vocab_size=20, hidden_size=8, num_heads=2, dropout=0.0, seq_len=6, num_layers=1)
    expect(getattr(model, "seq_len", None) == 6, "Transformer.seq_len should be the context length (6).")
    logits = call(model, randint(20, 2, 4, seed=4))
    expect_tensor(logits, what="Transformer(seq_len=6)(input_ids of shape (2, 4))", shape=(2, 4, 20))


@pytest.mark.problem("lm_loss")
def test_lm_loss_uniform_logits(student):
    """all-zero logits give log(V) whatever the targets"""
    logits = torch.zeros(2, 5, 10, requires_grad=True)
    loss = student.model.lm_loss(logits, randint(10, 2, 5, seed=5), pad_token_id=0)
    loss = expect_tensor(loss, what="lm_loss(zero logits, ...)", shape=())
    assert_scalar_close(float(loss), math.log(10), what="lm_loss with all-zero logits (should be log V)")


@pytest.mark.problem("lm_loss")
def test_lm_loss_is_shifted(student):
    """logits at position t that point at token t+1 give a loss near 0"""
    input_ids = torch.tensor([[1, 2, 3, 4]])
    logits = torch.full((1, 4, 6), -20.0)
    for t in range(3):
        logits[0, t, input_ids[0, t + 1]] = 20.0
    loss = student.model.lm_loss(logits, input_ids, pad_token_id=0)
    loss = expect_tensor(loss, what="lm_loss(logits, [[1, 2, 3, 4]], pad_token_id=0)", shape=())
    expect(float(loss) < 1e-3, f"lm_loss should be ~0 when position t predicts token t+1 perfectly, got {float(loss):.4g}.")


@pytest.mark.problem("lm_loss")
def test_lm_loss_ignores_padding(student):
    """targets equal to pad_token_id are left out of the mean"""
    input_ids = torch.tensor([[1, 2, 5, 5]])  # pad_token_id = 5
    logits = torch.zeros(1, 4, 6)
    logits[0, 0, 2] = 20.0  # position 0 predicts token 2 perfectly; positions 1, 2 predict padding
    loss = student.model.lm_loss(logits, input_ids, pad_token_id=5)
    loss = expect_tensor(loss, what="lm_loss(logits, [[1, 2, 5, 5]], pad_token_id=5)", shape=())
    expect(float(loss) < 1e-3, f"only position 0 has a real target, predicted perfectly: the loss should be ~0, "
                               f"got {float(loss):.4g}.")


class NextTokenModel(nn.Module):
    """A toy language model: always predicts (last token + 1) % V."""

    def __init__(self, vocab_size=10, seq_len=4):
        super().__init__()
        self.vocab_size, self.seq_len = vocab_size, seq_len

    def forward(self, input_ids):
        return torch.nn.functional.one_hot((input_ids + 1) % self.vocab_size, self.vocab_size).float() * 5


@pytest.mark.problem("greedy_decode")
def test_greedy_decode_counts(student):
    """a model that predicts last + 1 continues 1, 2 with 3, 4, 5"""
    out = student.model.greedy_decode(NextTokenModel(), torch.tensor([[1, 2]]), max_new_tokens=3)
    assert_equal(out, torch.tensor([[1, 2, 3, 4, 5]]), what="greedy_decode(model, [[1, 2]], max_new_tokens=3)")


@pytest.mark.problem("greedy_decode")
def test_greedy_decode_batch_and_long(student):
    """batch of 2, decoding past the model's context length"""
    out = student.model.greedy_decode(NextTokenModel(seq_len=3), torch.tensor([[0, 1], [7, 8]]), max_new_tokens=5)
    expected = torch.tensor([[0, 1, 2, 3, 4, 5, 6], [7, 8, 9, 0, 1, 2, 3]])
    assert_equal(out, expected, what="greedy_decode(model with seq_len=3, [[0, 1], [7, 8]], max_new_tokens=5)")
