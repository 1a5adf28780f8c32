"""Public tests for attention.py: the notebook's shape checks and small values you can work out by hand.

Run them with `python run_tests.py` (student zip). Hidden tests compare with a reference
solution on many more inputs.
"""
import math

import pytest
import torch

from autograder.kit.checks import assert_close, assert_equal, expect, expect_tensor
from autograder.kit.inplace import leaves_unchanged
from autograder.kit.torchkit import randn, strict_device

# A composite is graded on its own (README, "Exact grading"): while its tests run, the functions of
# attention.py it may be built from are the reference's, so a bug in the student's self_attention does not
# cost a multi_head_attention made of self_attention calls too.
MH_PARTS = ("self_attention", "scaled_dot_product_attention")
CAUSAL_MH_PARTS = ("causal_mask", "self_attention", "scaled_dot_product_attention")


def _attention(Q, K, V, mask=None):
    """The handout's attention: softmax(Q Kᵀ / sqrt(d_k)) over the keys, keys where mask == 0 hidden."""
    scores = Q @ K.transpose(-2, -1) / math.sqrt(Q.shape[-1])
    if mask is not None:
        scores = torch.where(mask == 0, -1e9, scores)
    return torch.softmax(scores, dim=-1) @ V


def _heads(S, W_Q, W_K, W_V, W_O, num_heads, causal=False):
    """The handout's multi-head attention, one head at a time: head h uses columns h*dh:(h+1)*dh."""
    dh, T = S.shape[-1] // num_heads, S.shape[1]
    mask = torch.ones(T, T).tril() if causal else None
    heads = [_attention(S @ W_Q[:, h * dh:(h + 1) * dh], S @ W_K[:, h * dh:(h + 1) * dh],
                        S @ W_V[:, h * dh:(h + 1) * dh], mask) for h in range(num_heads)]
    return torch.cat(heads, dim=-1) @ W_O


@pytest.mark.problem("self_attention")
def test_self_attention_shape(student):
    """output shape (1, 13, 2) for the notebook's example; with W_Q = 0 each row is the mean of V"""
    S = torch.rand(1, 13, 3)
    W_Q, W_K, W_V = torch.zeros(3, 2), torch.rand(3, 2), torch.rand(3, 2)
    out = student.attention.self_attention(S, W_Q, W_K, W_V)
    expect_tensor(out, what="self_attention(S, W_Q, W_K, W_V)", shape=(1, 13, 2), dtype=torch.float32)
    assert_close(out, (S @ W_V).mean(dim=1, keepdim=True).expand(1, 13, 2), what="self_attention(S, W_Q=0, W_K, W_V)")


@pytest.mark.problem("self_attention")
def test_self_attention_uniform_weights(student):
    """with W_Q = 0 every weight is 1/T, so each output row is the mean of V"""
    S = randn(2, 5, 3, seed=1)
    W_Q, W_K, W_V = torch.zeros(3, 4), randn(3, 4, seed=2), randn(3, 4, seed=3)
    out = student.attention.self_attention(S, W_Q, W_K, W_V)
    expected = (S @ W_V).mean(dim=1, keepdim=True).expand(2, 5, 4)
    assert_close(out, expected, what="self_attention(S, W_Q=0, W_K, W_V)")


@pytest.mark.problem("self_attention")
def test_self_attention_two_tokens(student):
    """a 2-token example computed by hand: scores scaled by 1/sqrt(d_k), softmax over keys"""
    S = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    I = torch.eye(2)
    out = student.attention.self_attention(S, I, I, I)
    # scores = I / sqrt(2); row 0 weights = softmax([1/sqrt2, 0])
    a = 1 / (1 + math.exp(-1 / math.sqrt(2)))
    expected = torch.tensor([[[a, 1 - a], [1 - a, a]]])
    assert_close(out, expected, what="self_attention(S, I, I, I)")


@pytest.mark.problem("self_attention")
def test_self_attention_formula(student):
    """a batch of 2, 4 tokens, d_in = 3 and d_k = 2, in float64: softmax(Q Kᵀ / sqrt(d_k)) over the keys, times V"""
    S = randn(2, 4, 3, seed=30, dtype=torch.float64)
    W_Q, W_K, W_V = (randn(3, 2, seed=s, dtype=torch.float64, scale=2.0) for s in (31, 32, 33))
    out = student.attention.self_attention(S, W_Q, W_K, W_V)
    assert_close(out, _attention(S @ W_Q, S @ W_K, S @ W_V),
                 what="self_attention(S, W_Q, W_K, W_V) with d_in = 3, d_k = 2 (float64: scale by a Python float)")


@pytest.mark.problem("multi_head_attention")
@pytest.mark.isolate("attention", *MH_PARTS)
def test_multi_head_attention_shape(student):
    """output shape (1, 13, 8) for the notebook's example, 4 heads by default; with W_Q = 0 heads average"""
    S = torch.rand(1, 13, 8)
    W_Q, W_K, W_V, W_O = torch.zeros(8, 8), *(torch.rand(8, 8) for _ in range(3))
    out = student.attention.multi_head_attention(S, W_Q, W_K, W_V, W_O)
    expect_tensor(out, what="multi_head_attention(S, W_Q, W_K, W_V, W_O)", shape=(1, 13, 8), dtype=torch.float32)
    assert_close(out, ((S @ W_V).mean(dim=1, keepdim=True) @ W_O).expand(1, 13, 8),
                 what="multi_head_attention(S, W_Q=0, W_K, W_V, W_O)")


@pytest.mark.problem("multi_head_attention")
@pytest.mark.isolate("attention", *MH_PARTS)
def test_multi_head_attention_uniform_weights(student):
    """with W_Q = 0 every head averages its values: output = mean_t(S W_V) W_O"""
    S = randn(2, 6, 8, seed=4)
    W_V, W_O = randn(8, 8, seed=5), randn(8, 8, seed=6)
    out = student.attention.multi_head_attention(S, torch.zeros(8, 8), randn(8, 8, seed=7), W_V, W_O, num_heads=2)
    expected = ((S @ W_V).mean(dim=1, keepdim=True) @ W_O).expand(2, 6, 8)
    assert_close(out, expected, what="multi_head_attention(S, W_Q=0, W_K, W_V, W_O, num_heads=2)")


@pytest.mark.problem("multi_head_attention")
@pytest.mark.isolate("attention", *MH_PARTS)
def test_multi_head_attention_one_head_is_self_attention(student):
    """with one head and W_O = I, multi-head attention is self_attention (scale 1/sqrt(d))"""
    S = randn(2, 4, 6, seed=8)
    W_Q, W_K, W_V = randn(6, 6, seed=9), randn(6, 6, seed=10), randn(6, 6, seed=11)
    Q, K, V = S @ W_Q, S @ W_K, S @ W_V
    expected = torch.softmax(Q @ K.transpose(1, 2) / math.sqrt(6), dim=-1) @ V
    out = student.attention.multi_head_attention(S, W_Q, W_K, W_V, torch.eye(6), num_heads=1)
    assert_close(out, expected, what="multi_head_attention(S, W_Q, W_K, W_V, I, num_heads=1)")


@pytest.mark.problem("multi_head_attention")
@pytest.mark.isolate("attention", *MH_PARTS)
def test_multi_head_attention_heads_formula(student):
    """a batch of 2, 3 tokens, d = 8: 4 heads by default, then 2 heads; head h uses columns h*dh:(h+1)*dh, scale 1/sqrt(dh)"""
    S = randn(2, 3, 8, seed=34)
    W_Q, W_K, W_V, W_O = (randn(8, 8, seed=s) for s in (35, 36, 37, 38))
    out = student.attention.multi_head_attention(S, W_Q, W_K, W_V, W_O)
    assert_close(out, _heads(S, W_Q, W_K, W_V, W_O, 4), what="multi_head_attention(S, W_Q, W_K, W_V, W_O) (4 heads)")
    S = randn(2, 3, 8, seed=49)  # other tokens for the 2-head call
    out = student.attention.multi_head_attention(S, W_Q, W_K, W_V, W_O, num_heads=2)
    assert_close(out, _heads(S, W_Q, W_K, W_V, W_O, 2), what="multi_head_attention(S, ..., num_heads=2)")


@pytest.mark.problem("causal_mask")
def test_causal_mask_3(student):
    """causal_mask(3) is lower-triangular and boolean"""
    expected = torch.tensor([[True, False, False], [True, True, False], [True, True, True]])
    assert_equal(student.attention.causal_mask(3), expected, what="causal_mask(3)")


@pytest.mark.problem("causal_mask")
def test_causal_mask_1(student):
    """causal_mask(1) lets the only token see itself"""
    assert_equal(student.attention.causal_mask(1), torch.ones(1, 1, dtype=torch.bool), what="causal_mask(1)")


@pytest.mark.problem("causal_mask")
def test_causal_mask_on_the_given_device(student):
    """causal_mask(4) is the lower triangle; causal_mask(4, device="meta") is made on that device (no fixed device)"""
    expected = torch.tensor([[j <= i for j in range(4)] for i in range(4)])
    assert_equal(student.attention.causal_mask(4), expected, what="causal_mask(4)")
    with strict_device("meta"):
        mask = student.attention.causal_mask(4, device="meta")
    expect_tensor(mask, what='causal_mask(4, device="meta")', shape=(4, 4), device="meta")


def _prefix_means(S, W_V, W_O):
    """What causal attention gives when every score is 0: position t averages the values of positions 0..t."""
    values = S @ W_V
    return torch.stack([values[:, : t + 1].mean(dim=1) for t in range(S.shape[1])], dim=1) @ W_O


@pytest.mark.problem("causal_multi_head_attention")
@pytest.mark.isolate("attention", *CAUSAL_MH_PARTS)
def test_causal_multi_head_attention_shape(student):
    """output shape (1, 3, 8) for the notebook's example; with W_Q = 0 position t averages values 0..t"""
    S = torch.rand(1, 3, 8)
    W_Q, W_K, W_V, W_O = torch.zeros(8, 8), *(torch.rand(8, 8) for _ in range(3))
    out = student.attention.causal_multi_head_attention(S, W_Q, W_K, W_V, W_O)
    expect_tensor(out, what="causal_multi_head_attention(S, W_Q, W_K, W_V, W_O)", shape=(1, 3, 8),
                  dtype=torch.float32)
    assert_close(out, _prefix_means(S, W_V, W_O), what="causal_multi_head_attention(S, W_Q=0, W_K, W_V, W_O)")


@pytest.mark.problem("causal_multi_head_attention")
@pytest.mark.isolate("attention", *CAUSAL_MH_PARTS)
def test_causal_first_token_sees_only_itself(student):
    """the first position attends only to itself: its output is (S[:, 0] W_V) W_O"""
    S = randn(2, 5, 8, seed=12)
    W_Q, W_K, W_V, W_O = (randn(8, 8, seed=s) for s in (13, 14, 15, 16))
    out = student.attention.causal_multi_head_attention(S, W_Q, W_K, W_V, W_O)
    expect_tensor(out, what="causal_multi_head_attention(S, ...)", shape=(2, 5, 8))
    assert_close(out[:, 0], S[:, 0] @ W_V @ W_O, what="causal_multi_head_attention(S, ...)[:, 0]")
    out = student.attention.causal_multi_head_attention(S, W_Q, torch.zeros(8, 8), W_V, W_O)
    assert_close(out, _prefix_means(S, W_V, W_O), what="causal_multi_head_attention(S, W_Q, W_K=0, W_V, W_O)")


@pytest.mark.problem("causal_multi_head_attention")
@pytest.mark.isolate("attention", *CAUSAL_MH_PARTS)
def test_causal_last_token_sees_everything(student):
    """the last position sees every token, like multi_head_attention"""
    S = randn(1, 4, 8, seed=17)
    W_V, W_O = randn(8, 8, seed=18), randn(8, 8, seed=19)
    out = student.attention.causal_multi_head_attention(S, torch.zeros(8, 8), torch.zeros(8, 8), W_V, W_O)
    expect_tensor(out, what="causal_multi_head_attention(S, W_Q=0, W_K=0, W_V, W_O)", shape=(1, 4, 8))
    # with zero scores, position t averages the values of positions 0..t
    assert_close(out, _prefix_means(S, W_V, W_O), what="causal_multi_head_attention(S, W_Q=0, W_K=0, W_V, W_O)")


@pytest.mark.problem("causal_multi_head_attention")
@pytest.mark.isolate("attention", *CAUSAL_MH_PARTS)
def test_causal_multi_head_attention_heads_formula(student):
    """a batch of 2, 4 tokens: 4 heads by default, then 2 heads; each head causal with scale 1/sqrt(dh); on meta too"""
    S = randn(2, 4, 8, seed=39)
    W_Q, W_K, W_V, W_O = (randn(8, 8, seed=s) for s in (40, 41, 42, 43))
    out = student.attention.causal_multi_head_attention(S, W_Q, W_K, W_V, W_O)
    assert_close(out, _heads(S, W_Q, W_K, W_V, W_O, 4, causal=True),
                 what="causal_multi_head_attention(S, W_Q, W_K, W_V, W_O) (4 heads)")
    S = randn(2, 4, 8, seed=50)  # other tokens for the 2-head call
    out = student.attention.causal_multi_head_attention(S, W_Q, W_K, W_V, W_O, num_heads=2)
    assert_close(out, _heads(S, W_Q, W_K, W_V, W_O, 2, causal=True),
                 what="causal_multi_head_attention(S, ..., num_heads=2)")
    with strict_device("meta"):  # the mask follows the inputs' device
        out = student.attention.causal_multi_head_attention(*(t.to("meta") for t in (S, W_Q, W_K, W_V, W_O)))
    expect_tensor(out, what="causal_multi_head_attention(S, ...) with every input on the meta device",
                  shape=(2, 4, 8), device="meta")


@pytest.mark.problem("scaled_dot_product_attention")
def test_sdpa_shapes(student):
    """returns (output, weights) with shapes (B, H, T_q, dv) and (B, H, T_q, T_k); Q = 0 gives uniform weights"""
    Q, K, V = torch.zeros(2, 3, 4, 5), torch.rand(2, 3, 6, 5), torch.rand(2, 3, 6, 7)
    result = student.attention.scaled_dot_product_attention(Q, K, V)
    expect(isinstance(result, tuple) and len(result) == 2,
           "scaled_dot_product_attention(Q, K, V) should return a tuple (output, weights).")
    output, weights = result
    expect_tensor(output, what="output", shape=(2, 3, 4, 7))
    expect_tensor(weights, what="weights", shape=(2, 3, 4, 6))
    assert_close(weights, torch.full((2, 3, 4, 6), 1 / 6), what="weights with Q = 0 (every score is 0)")
    assert_close(output, V.mean(dim=2, keepdim=True).expand(2, 3, 4, 7), what="output with Q = 0 (the mean of V)")


@pytest.mark.problem("scaled_dot_product_attention")
def test_sdpa_masked_keys_get_no_weight(student):
    """keys where mask == 0 get (almost) zero weight; the others share it by score"""
    Q, K, V = torch.zeros(1, 1, 2, 4), randn(1, 1, 3, 4, seed=20), randn(1, 1, 3, 2, seed=21)
    mask = torch.tensor([1, 1, 0]).view(1, 1, 1, 3)
    output, weights = student.attention.scaled_dot_product_attention(Q, K, V, mask)
    expected_weights = torch.tensor([0.5, 0.5, 0.0]).expand(1, 1, 2, 3)
    assert_close(weights, expected_weights, what="weights with mask [1, 1, 0] and Q = 0")
    assert_close(output, V[:, :, :2].mean(dim=2, keepdim=True).expand(1, 1, 2, 2),
                 what="output with mask [1, 1, 0] and Q = 0")


@pytest.mark.problem("scaled_dot_product_attention")
@pytest.mark.parametrize("mask_dtype", [torch.int64, torch.bool])
def test_sdpa_padding_formula(student, mask_dtype):
    """a padded batch of 2 in float64, 2 heads, T_q = 3 queries, T_k = 5 keys, dv = 3 != dk = 4; inputs left unchanged"""
    Q, K = randn(2, 2, 3, 4, seed=44, dtype=torch.float64), randn(2, 2, 5, 4, seed=45, dtype=torch.float64)
    V = randn(2, 2, 5, 3, seed=46, dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]).view(2, 1, 1, 5).to(mask_dtype)  # row 1: 2 padded keys
    expected_weights = _attention(Q, K, torch.eye(5, dtype=torch.float64), mask)
    with leaves_unchanged("scaled_dot_product_attention(Q, K, V, mask)", Q=Q, K=K, V=V, mask=mask):
        output, weights = student.attention.scaled_dot_product_attention(Q, K, V, mask)
        assert_close(weights, expected_weights, what="weights: softmax(Q Kᵀ / sqrt(dk)), -1e9 where mask == 0")
        assert_close(output, expected_weights @ V, what="output: weights @ V")


def _expect_parameters(module, linears, what):
    """The module's parameters are exactly the weight and bias of each of `linears`, none shared."""
    expected = sorted(f"{name}.{kind}" for name in linears for kind in ("weight", "bias"))
    got = sorted(name for name, _ in module.named_parameters())
    expect(got == expected, f"{what} should have the parameters {expected} (no other, none shared); it has {got}.")


def _check_averaging(mha, x, what):
    """With W_q = 0 every score is 0: the weights are uniform and the context is W_o(mean over T of W_v(x))."""
    with torch.no_grad():
        mha.W_q.weight.zero_()
        mha.W_q.bias.zero_()
        context, weights = mha(x)
        B, T, E = x.shape
        expected = mha.W_o(mha.W_v(x).mean(dim=1, keepdim=True)).expand(B, T, E)
    assert_close(weights, torch.full(tuple(weights.shape), 1 / T), what=f"the weights of {what} with W_q = 0")
    assert_close(context, expected, what=f"the context of {what} with W_q = 0 (W_o of the mean of W_v(x))")


@pytest.mark.problem("MultiHeadAttention")
@pytest.mark.isolate("attention", "scaled_dot_product_attention")
def test_mha_module_shapes(student):
    """the notebook's unit test: context (4, 10, 64) and weights (4, 8, 10, 10); W_q = 0 gives uniform weights"""
    mha = student.attention.MultiHeadAttention(embed_dim=64, num_heads=8)
    x = torch.rand(4, 10, 64)
    context, weights = mha(x)
    expect_tensor(context, what="context", shape=(4, 10, 64))
    expect_tensor(weights, what="attention weights", shape=(4, 8, 10, 10))
    assert_close(weights.sum(dim=-1), torch.ones(4, 8, 10), what="attention weights summed over keys")
    _check_averaging(mha, x, "MultiHeadAttention(64, 8)(x)")


@pytest.mark.problem("MultiHeadAttention")
@pytest.mark.isolate("attention", "scaled_dot_product_attention")
def test_mha_module_layers(student):
    """W_q, W_k, W_v, W_o are nn.Linear(embed_dim, embed_dim) with bias, and the only parameters"""
    mha = student.attention.MultiHeadAttention(16, 4)
    for name in ("W_q", "W_k", "W_v", "W_o"):
        layer = getattr(mha, name, None)
        expect(isinstance(layer, torch.nn.Linear), f"MultiHeadAttention.{name} should be an nn.Linear.")
        expect(tuple(layer.weight.shape) == (16, 16) and layer.bias is not None,
               f"MultiHeadAttention.{name} should be nn.Linear(16, 16) with a bias.")
    _expect_parameters(mha, ["W_q", "W_k", "W_v", "W_o"], "MultiHeadAttention(16, 4)")
    _check_averaging(mha, randn(2, 5, 16, seed=22), "MultiHeadAttention(16, 4)(x)")


@pytest.mark.problem("MultiHeadAttention")
@pytest.mark.isolate("attention", "scaled_dot_product_attention")
def test_mha_module_padding_mask(student):
    """a padded batch of 2, 2 heads: padded keys get weight 0; the real tokens' outputs are those without the padding"""
    mha = student.attention.MultiHeadAttention(8, 2).eval()
    x = randn(2, 4, 8, seed=47)
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]]).view(2, 1, 1, 4)  # row 1: its last 2 tokens are padding
    with torch.no_grad():
        context, weights = mha(x, mask)
        alone, alone_weights = mha(x[1:, :2])  # row 1 without its padding
    expect_tensor(weights, what="the weights of MultiHeadAttention(8, 2)(x, mask)", shape=(2, 2, 4, 4))
    assert_close(weights[1, :, :, 2:], torch.zeros(2, 4, 2), what="the weights on row 1's padded keys")
    assert_close(context[1, :2], alone[0], what="row 1's real tokens with the mask, against the same tokens alone")
    assert_close(weights[1, :, :2, :2], alone_weights[0], what="row 1's real tokens' weights on the real keys")
    with torch.no_grad():  # with W_q = 0 each query spreads its weight evenly over the real keys
        mha.W_q.weight.zero_()
        mha.W_q.bias.zero_()
        context, weights = mha(x, mask)
        values = mha.W_v(x)
        means = torch.stack([values[0].mean(dim=0), values[1, :2].mean(dim=0)])  # over the real tokens
        expected = mha.W_o(means).view(2, 1, 8).expand(2, 4, 8)
    real = torch.tensor([[1 / 4] * 4, [1 / 2, 1 / 2, 0, 0]]).view(2, 1, 1, 4).expand(2, 2, 4, 4)
    assert_close(weights, real, what="the weights of MultiHeadAttention(8, 2)(x, mask) with W_q = 0")
    assert_close(context, expected, what="the context with W_q = 0 (W_o of the mean of W_v over the real tokens)")


@pytest.mark.problem("MultiHeadAttention")
@pytest.mark.isolate("attention", "scaled_dot_product_attention")
def test_mha_module_rejects_indivisible_embed_dim(student):
    """MultiHeadAttention(12, 4) works; MultiHeadAttention(10, 4) raises ValueError or AssertionError"""
    _check_averaging(student.attention.MultiHeadAttention(12, 4), randn(2, 3, 12, seed=48), "MultiHeadAttention(12, 4)(x)")
    try:
        student.attention.MultiHeadAttention(10, 4)
    except (ValueError, AssertionError):
        return
    expect(False, "MultiHeadAttention(10, 4) should raise ValueError (or fail an assert): "
                  "embed_dim must be a multiple of num_heads.")
