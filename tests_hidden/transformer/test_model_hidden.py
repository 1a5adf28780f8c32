"""Hidden tests for model.py: CausalSelfAttention, FeedForward, Block, Transformer, lm_loss, greedy_decode.

Modules are compared with the reference after loading the same (randomized) weights by name,
in eval mode and in train mode with dropout=0.0, in float32 and float64. Dropout placement is
checked in train mode by its effect only (which values can be zeroed, the 1/(1-p) rescaling,
statistics over many draws). Device-agnostic code is checked on the `meta` device.
"""
import copy
import itertools
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from autograder.kit.adapter import call, describe
from autograder.kit.checks import assert_close, assert_equal, expect, expect_tensor, fail
from autograder.kit.inplace import leaves_unchanged
from autograder.kit.torchkit import check_structure, copy_parameters, randint, randn, randomize_, strict_device

# A CausalSelfAttention may use attention.py's causal_mask or scaled_dot_product_attention: while its tests run,
# those are the reference's (in model.py too, if it imports them), so a bug there is charged to attention.py only.
ISOLATE_CSA = pytest.mark.isolate("attention", "causal_mask", "scaled_dot_product_attention", imported_by="model")

# (dtype, train mode) runs on the meta device: bfloat16 in eval mode, and dropout's path once. A tensor made
# inside in float32 (the default dtype) or float64 promotes bfloat16, never float64, so bfloat16 catches what
# runs in float32 and float64 would; float64's values are checked on the CPU (DTYPES).
META_RUNS = [(torch.bfloat16, False), (torch.float32, True)]
DTYPES = [pytest.param(torch.float32, id="float32"), pytest.param(torch.float64, id="float64")]


# ---------------------------------------------------------------------------------------------
# helpers (private to this file)

def _sig(name, args):
    return f"{name}({', '.join(repr(a) for a in args)})"


def _dt(dtype):
    return str(dtype).removeprefix("torch.")


def _make(factory, name, args):
    """Construct a student module and check it is an nn.Module."""
    module = factory(*args)
    expect(isinstance(module, nn.Module),
           f"{_sig(name, args)} should be an nn.Module, but it is {describe(module)}.")
    return module


# Submodules that are problems of their own: a composite is BUILT with the reference's classes
# (the `isolate` markers below put them in the student's model.py while the test runs), so that a
# bug in CausalSelfAttention, even a crash or a huge allocation in its __init__, costs points only
# there, and the Block and Transformer tests grade the code of Block and Transformer themselves.
# Their structure is still the student's: check_structure fails a Block repeated num_layers times.
ISOLATE_BLOCK = pytest.mark.isolate("model", "CausalSelfAttention", "FeedForward")
ISOLATE_TRANSFORMER = pytest.mark.isolate("model", "Block")
NOTE = {"Block": " (with the reference's attn and ffn)", "Transformer": " (with the reference's blocks)"}


def _parts(ref, name):
    """Paths of the sub-modules of `ref` that are graded as problems of their own."""
    if name == "Block":
        return ("attn", "ffn")
    if name == "Transformer":
        return tuple(f"blocks.{i}" for i in range(len(ref.blocks)))
    return ()


def _load(stu, ref, name, what):
    """Check the student's structure against the reference's, then load the reference's weights."""
    check_structure(stu, ref, what, parts=_parts(ref, name))
    copy_parameters(stu, ref, what=what)


def _pair(student, reference, name, args, *, seed, dtype=torch.float32, edit=None):
    """(student module, reference module) built with `args`; the reference is randomized
    (then changed by `edit(reference)` if given), the student's structure is checked against
    it and the reference's parameters are loaded into the student by name."""
    ref = randomize_(getattr(reference.model, name)(*args), seed)
    if edit is not None:
        with torch.no_grad():
            edit(ref)
    stu = _make(getattr(student.model, name), name, args)
    _load(stu, ref, name, _sig(name, args))
    return stu.to(dtype), ref.to(dtype)


def _check_eval_value(stu, ref, x, what):
    """In eval mode `stu` returns `ref`'s value on x. Tests of a property (causality, batch rows,
    device, structure) check this first: a property of a wrong result pays nothing."""
    stu.eval(), ref.eval()
    with torch.no_grad():
        expected = ref(x)
    assert_close(call(stu, x), expected, what=f"{what} in eval mode")


def _check_inputs_unchanged(student, reference, name, args, x, *, seed):
    """In eval mode the module returns the reference's value and leaves its input x unchanged."""
    stu, ref = _pair(student, reference, name, args, seed=seed, dtype=torch.float64 if x.is_floating_point()
                     else torch.float32)
    stu.eval(), ref.eval()
    with torch.no_grad():
        expected = ref(x.clone())
    what = f"{_sig(name, args)}.forward(x: {describe(x)}) in eval mode{NOTE.get(name, '')}"
    with leaves_unchanged(what, x=x):
        assert_close(call(stu, x), expected, what=what)


def _compare_with_reference(student, reference, name, args_of, x, *, seed):
    """Eval mode with dropout 0.2 and train mode with dropout 0.0 both equal the reference."""
    dtype = x.dtype
    for mode, p in (("eval", 0.2), ("train", 0.0)):
        args = args_of(p)
        stu, ref = _pair(student, reference, name, args, seed=seed, dtype=dtype)
        stu.train(mode == "train")
        ref.train(mode == "train")
        with torch.no_grad():
            expected = ref(x)
        got = call(stu, x)
        assert_close(got, expected, what=f"{_sig(name, args)}.forward(x: {describe(x)}) in {mode} mode, "
                                         f"parameters in {_dt(dtype)}{NOTE.get(name, '')}")


def _attr(module, owner, attr):
    value = getattr(module, attr, None)
    expect(value is not None, f"{owner} has no attribute `{attr}`, which the contract names.")
    return value


def _check_linear(layer, what, in_features, out_features):
    expect(isinstance(layer, nn.Linear), f"{what} should be an nn.Linear, but it is {describe(layer)}.")
    expect(layer.in_features == in_features and layer.out_features == out_features,
           f"{what} should be nn.Linear({in_features}, {out_features}), "
           f"but it is nn.Linear({layer.in_features}, {layer.out_features}).")
    expect(layer.bias is not None, f"{what} should have a bias.")


def _check_dropout(layer, what, p):
    expect(isinstance(layer, nn.Dropout), f"{what} should be an nn.Dropout, but it is {describe(layer)}.")
    expect(layer.p == p, f"{what} should be nn.Dropout({p}) (the constructor's dropout), but its p is {layer.p}.")


def _check_layernorm(layer, what, size):
    expect(isinstance(layer, nn.LayerNorm), f"{what} should be an nn.LayerNorm, but it is {describe(layer)}.")
    expect(tuple(layer.normalized_shape) == (size,),
           f"{what} should be nn.LayerNorm({size}), but its normalized_shape is {tuple(layer.normalized_shape)}.")


def _check_zero_or_scaled(got, base, p, *, what):
    """Every value of `got` is exactly 0 or base / (1 - p); about a fraction p are zeros."""
    got = expect_tensor(got, what=what, shape=base.shape, dtype=base.dtype)
    expected = torch.where(got == 0, torch.zeros_like(base), base / (1 - p))
    assert_close(got, expected, what=f"{what} (every value should be 0 or its eval-mode value / (1 - p))")
    _check_fraction((got == 0).double().mean().item(), p, base.numel(), what=what, of="values zeroed",
                    got=got, expected=base)


def _check_fraction(fraction, p, n, *, what, of, got=None, expected=None):
    """`fraction` of n Bernoulli(p) draws is within 5 standard deviations (and 0.02) of p.
    `got` and `expected` (the output and its eval-mode value), if given, help name the mistake."""
    allowed = 5 * math.sqrt(p * (1 - p) / n) + 0.02
    if abs(fraction - p) > allowed:
        fail(f"{what}: {fraction:.1%} of {of} over {n} draws, but dropout with p={p} should give about {p:.0%}.",
             got=got, expected=expected)


def _check_mean(samples, expected, *, what):
    """The mean over dim 0 of `samples` is within 5 standard errors of `expected`, elementwise."""
    n = samples.shape[0]
    mean = samples.double().mean(0)
    allowed = 5 * samples.double().std(0) / math.sqrt(n) + 1e-6
    bad = (mean - expected.double()).abs() > allowed
    if bad.any():
        fail(f"{what}: averaged over {n} draws, {int(bad.sum())} of {bad.numel()} values are far from the "
             "eval-mode output; dropout should keep the mean (rescale kept values by 1/(1-p)).",
             got=samples, expected=expected.expand_as(samples))


def _causal_attention_parts(ref, x, H):
    """Attention weights (1, H, T, T) and values (1, H, T, dh) of CausalSelfAttention `ref` (H heads) on x (1, T, C)."""
    _, T, C = x.shape
    dh = C // H
    q = F.linear(x, ref.q_proj.weight, ref.q_proj.bias).view(1, T, H, dh).transpose(1, 2)
    k = F.linear(x, ref.k_proj.weight, ref.k_proj.bias).view(1, T, H, dh).transpose(1, 2)
    v = F.linear(x, ref.v_proj.weight, ref.v_proj.bias).view(1, T, H, dh).transpose(1, 2)
    scores = q @ k.transpose(-2, -1) / math.sqrt(dh)
    scores = scores.masked_fill(~torch.tril(torch.ones(T, T, dtype=torch.bool)), float("-inf"))
    return torch.softmax(scores, dim=-1), v


def _run_on_meta(module, x, dtype, *, what, shape):
    """Run `module` (moved to meta, `dtype`) on meta input `x` under the strict device check."""
    with strict_device("meta"):
        out = call(module, x)
    expect_tensor(out, what=what, shape=shape, dtype=dtype, device="meta")


# ---------------------------------------------------------------------------------------------
# CausalSelfAttention

CSA_CASES = [  # (hidden, heads, seq_len, B, T, seed)
    pytest.param(8, 2, 3, 2, 3, 11, id="C8-H2-T3"),
    pytest.param(12, 3, 6, 3, 5, 12, id="C12-H3-T5of6"),
    pytest.param(16, 4, 8, 2, 8, 13, id="C16-H4-T8"),
]


@pytest.mark.problem("CausalSelfAttention")
@ISOLATE_CSA
def test_csa_attributes(student, reference):
    """q_proj, k_proj, v_proj, out_proj are Linear(C, C) with bias; attn_dropout, resid_dropout are Dropout(p)"""
    args = (12, 3, 0.25, 5)
    what = _sig("CausalSelfAttention", args)
    m = _make(student.model.CausalSelfAttention, "CausalSelfAttention", args)
    for name in ("q_proj", "k_proj", "v_proj", "out_proj"):
        _check_linear(_attr(m, what, name), f"{what}.{name}", 12, 12)
    for name in ("attn_dropout", "resid_dropout"):
        _check_dropout(_attr(m, what, name), f"{what}.{name}", 0.25)
    ref = randomize_(reference.model.CausalSelfAttention(*args), 14)
    copy_parameters(m, ref, what=what)  # no extra parameters, nothing shared
    _check_eval_value(m, ref, randn(2, 5, 12, seed=15), f"{what}.forward(x)")


@pytest.mark.problem("CausalSelfAttention")
@ISOLATE_CSA
def test_csa_defaults(student, reference):
    """CausalSelfAttention() uses the notebook's defaults (hidden 8, 2 heads, dropout 0.1, seq_len 3)"""
    m = _make(student.model.CausalSelfAttention, "CausalSelfAttention", ())
    _check_linear(_attr(m, "CausalSelfAttention()", "q_proj"), "CausalSelfAttention().q_proj", 8, 8)
    _check_dropout(_attr(m, "CausalSelfAttention()", "attn_dropout"), "CausalSelfAttention().attn_dropout", 0.1)
    stu, ref = _pair(student, reference, "CausalSelfAttention", (), seed=3)
    stu.eval(), ref.eval()
    x = randn(2, 3, 8, seed=4)
    assert_close(call(stu, x), ref(x), what="CausalSelfAttention().forward(x) in eval mode, float32")


@pytest.mark.problem("CausalSelfAttention")
@ISOLATE_CSA
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("C, H, S, B, T, seed", CSA_CASES)
def test_csa_matches_reference(student, reference, C, H, S, B, T, seed, dtype):
    """same output as the reference with the same weights (eval mode, and train mode with dropout=0)"""
    x = randn(B, T, C, seed=seed + 100, dtype=dtype)
    _compare_with_reference(student, reference, "CausalSelfAttention", lambda p: (C, H, p, S), x, seed=seed)


@pytest.mark.problem("CausalSelfAttention")
@ISOLATE_CSA
def test_csa_shorter_sequences(student, reference):
    """T < seq_len works: the mask is cut to T x T and the output equals the reference for every T"""
    stu, ref = _pair(student, reference, "CausalSelfAttention", (8, 2, 0.1, 6), seed=21, dtype=torch.float64)
    stu.eval(), ref.eval()
    x = randn(3, 6, 8, seed=22, dtype=torch.float64)
    for T in range(1, 7):
        assert_close(call(stu, x[:, :T]), ref(x[:, :T]),
                     what=f"CausalSelfAttention(8, 2, 0.1, 6).forward(x: {describe(x[:, :T])}) in eval mode")


@pytest.mark.problem("CausalSelfAttention")
@ISOLATE_CSA
def test_csa_causal(student, reference):
    """changing future positions never changes earlier outputs (query i sees only keys j <= i)"""
    stu, ref = _pair(student, reference, "CausalSelfAttention", (8, 2, 0.1, 5), seed=23, dtype=torch.float64)
    x = randn(2, 5, 8, seed=24, dtype=torch.float64)
    _check_eval_value(stu, ref, x, "CausalSelfAttention(8, 2, 0.1, 5).forward(x)")
    out = expect_tensor(call(stu, x), what="CausalSelfAttention.forward(x)", shape=(2, 5, 8))
    for t in range(4):
        x2 = x.clone()
        x2[:, t + 1:] = randn(2, 4 - t, 8, seed=25 + t, dtype=torch.float64) * 3
        out2 = call(stu, x2)
        assert_close(out2[:, : t + 1], out[:, : t + 1],
                     what=f"CausalSelfAttention.forward(x)[:, :{t + 1}] after changing x[:, {t + 1}:] (eval mode)")


@pytest.mark.problem("CausalSelfAttention")
@ISOLATE_CSA
def test_csa_batch_independence(student, reference):
    """each batch row is processed independently: forward(x)[i] == forward(x[i:i+1])[0]"""
    stu, ref = _pair(student, reference, "CausalSelfAttention", (12, 3, 0.1, 4), seed=27, dtype=torch.float64)
    x = randn(4, 4, 12, seed=28, dtype=torch.float64)
    _check_eval_value(stu, ref, x, "CausalSelfAttention(12, 3, 0.1, 4).forward(x)")
    out = expect_tensor(call(stu, x), what="CausalSelfAttention.forward(x)", shape=(4, 4, 12))
    for i in range(4):
        assert_close(call(stu, x[i:i + 1]), out[i:i + 1],
                     what=f"CausalSelfAttention.forward(x[{i}:{i + 1}]) compared with forward(x)[{i}:{i + 1}]")


@pytest.mark.problem("CausalSelfAttention")
@ISOLATE_CSA
def test_csa_does_not_modify_inputs(student, reference):
    """returns the reference's value and leaves its input x unchanged"""
    _check_inputs_unchanged(student, reference, "CausalSelfAttention", (8, 2, 0.1, 4),
                            randn(2, 4, 8, seed=26, dtype=torch.float64), seed=25)


@pytest.mark.problem("CausalSelfAttention")
@ISOLATE_CSA
@pytest.mark.parametrize("p", [0.5, 0.25], ids=["p0.5", "p0.25"])
def test_csa_resid_dropout_after_out_proj(student, reference, p):
    """train mode: resid_dropout acts on the output of out_proj (values are 0 or out_proj(y) / (1 - p))"""
    def values_zero(ref):  # v = 0, so the context is 0 and out_proj(context) is out_proj's (nonzero) bias
        ref.v_proj.weight.zero_()
        ref.v_proj.bias.zero_()
        ref.out_proj.bias.copy_(torch.linspace(0.5, 1.5, 8, dtype=torch.float64))

    args = (8, 2, p, 4)
    stu, ref = _pair(student, reference, "CausalSelfAttention", args, seed=31, dtype=torch.float64, edit=values_zero)
    x = randn(100, 4, 8, seed=32, dtype=torch.float64)
    stu.train()
    torch.manual_seed(33)
    out = call(stu, x)
    base = ref.out_proj.bias.expand(100, 4, 8)
    _check_zero_or_scaled(out, base, p, what=f"{_sig('CausalSelfAttention', args)}.forward(x) in train mode "
                                             "with v_proj = 0")


@pytest.mark.problem("CausalSelfAttention")
@ISOLATE_CSA
def test_csa_attention_weights_dropout(student, reference):
    """train mode: attn_dropout zeroes whole attention weights (shared by a head's values) and rescales the rest"""
    C, H, S, T, B, p = 8, 2, 4, 4, 200, 0.5
    dh = C // H

    def identity_out(ref):
        ref.out_proj.weight.copy_(torch.eye(C))
        ref.out_proj.bias.copy_(torch.linspace(0.5, 1.5, C, dtype=torch.float64))

    args = (C, H, p, S)
    what = f"{_sig('CausalSelfAttention', args)}.forward(x) in train mode with out_proj = identity and a bias b"
    stu, ref = _pair(student, reference, "CausalSelfAttention", args, seed=35, dtype=torch.float64, edit=identity_out)
    x1 = randn(1, T, C, seed=36, dtype=torch.float64)
    bias = ref.out_proj.bias.detach().clone()  # b as stored (set in float32, then made float64)
    with torch.no_grad():
        a, v = _causal_attention_parts(ref, x1, H)  # (1, H, T, T), (1, H, T, dh)
    stu.train()
    torch.manual_seed(37)
    out = expect_tensor(call(stu, x1.expand(B, T, C).contiguous()), what=what, shape=(B, T, C), dtype=torch.float64)
    scale = 1 / (1 - p)
    eval_out = ((a @ v).transpose(1, 2).reshape(1, T, C) + bias).expand(B, T, C)  # what train mode scatters around
    _check_fraction((out == 0).double().mean().item(), p, out.numel(), what=what, of="values zeroed by resid_dropout",
                    got=out, expected=eval_out)
    kept = (out != 0).view(B, T, H, dh)  # not zeroed by resid_dropout
    y = (out / scale - bias).view(B, T, H, dh)  # the context before out_proj, where kept
    for t in range(T):
        # context of head h at position t: scale * sum_j d_j a[h, t, j] v[h, j], with d_j in {0, 1}
        combos = torch.tensor(list(itertools.product((0.0, 1.0), repeat=t + 1)), dtype=torch.float64)
        parts = a[0, :, t, : t + 1, None] * v[0, :, : t + 1, :]  # (H, t+1, dh)
        candidates = scale * torch.einsum("kj,hjd->khd", combos, parts)  # (K, H, dh)
        diff = (y[:, t, None] - candidates[None]).abs()  # (B, K, H, dh)
        diff = torch.where(kept[:, t, None], diff, torch.zeros_like(diff))
        bad = diff.amax(-1).amin(1) > 1e-8  # (B, H): no dropout pattern explains this head's values
        if bad.any():
            fail(f"{what}: at position {t}, {int(bad.sum())} of {B * H} (row, head) outputs are not "
                 "out_proj(dropout(attention weights) @ v) followed by resid_dropout. attn_dropout should act on "
                 "the softmax weights (after masking), so each weight is 0 or rescaled by 1/(1-p).",
                 got=out, expected=eval_out)
    # position 0 sees only key 0: per head its context is 0 (weight dropped) or v0 / (1 - p)
    blocks = kept[:, 0].any(-1)  # (B, H) heads with at least one value not zeroed by resid_dropout
    dropped = ((y[:, 0].abs() < 1e-8) | ~kept[:, 0]).all(-1) & blocks
    _check_fraction(dropped.sum().item() / blocks.sum().item(), p, int(blocks.sum()), what=what,
                    of="position-0 attention weights dropped", got=out, expected=eval_out)
    _check_mean(out, eval_out[0], what=what)


@pytest.mark.problem("CausalSelfAttention")
@ISOLATE_CSA
def test_csa_device_and_dtype(student, reference):
    """equals the reference on the CPU, works on any device (checked on meta) and keeps float32, float64 and bfloat16"""
    stu, ref = _pair(student, reference, "CausalSelfAttention", (8, 2, 0.1, 4), seed=29)
    _check_eval_value(stu, ref, randn(2, 3, 8, seed=30), "CausalSelfAttention(8, 2, 0.1, 4).forward(x) on the CPU")
    for dtype, training in META_RUNS:
        m = _make(student.model.CausalSelfAttention, "CausalSelfAttention", (8, 2, 0.1, 4))
        m.to(device="meta", dtype=dtype).train(training)
        x = torch.empty(2, 3, 8, device="meta", dtype=dtype)
        _run_on_meta(m, x, dtype, shape=(2, 3, 8), what=f"CausalSelfAttention(8, 2, 0.1, 4).forward(x: "
                     f"{describe(x)}) in {'train' if training else 'eval'} mode")


# ---------------------------------------------------------------------------------------------
# FeedForward

@pytest.mark.problem("FeedForward")
def test_ffn_attributes(student, reference):
    """fc1 is Linear(C, 4C), fc2 is Linear(4C, C), both with bias; dropout is Dropout(p)"""
    args = (12, 0.3)
    what = _sig("FeedForward", args)
    m = _make(student.model.FeedForward, "FeedForward", args)
    _check_linear(_attr(m, what, "fc1"), f"{what}.fc1", 12, 48)
    _check_linear(_attr(m, what, "fc2"), f"{what}.fc2", 48, 12)
    _check_dropout(_attr(m, what, "dropout"), f"{what}.dropout", 0.3)
    ref = randomize_(reference.model.FeedForward(*args), 40)
    copy_parameters(m, ref, what=what)  # no extra parameters, nothing shared
    _check_eval_value(m, ref, randn(2, 3, 12, seed=41), f"{what}.forward(x)")


@pytest.mark.problem("FeedForward")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("C, shape, seed", [
    pytest.param(8, (2, 3), 41, id="C8-3d"),
    pytest.param(12, (5,), 42, id="C12-2d"),
    pytest.param(16, (2, 2, 3), 43, id="C16-4d"),
])
def test_ffn_matches_reference(student, reference, C, shape, seed, dtype):
    """same output as the reference for inputs (..., C) (eval mode, and train mode with dropout=0)"""
    x = randn(*shape, C, seed=seed + 100, dtype=dtype)
    _compare_with_reference(student, reference, "FeedForward", lambda p: (C, p), x, seed=seed)


@pytest.mark.problem("FeedForward")
@pytest.mark.parametrize("p", [0.5, 0.2], ids=["p0.5", "p0.2"])
def test_ffn_dropout_on_output(student, reference, p):
    """train mode: dropout acts on the output (every value is 0 or eval value / (1 - p)), mean kept over draws"""
    args = (8, p)
    what = f"{_sig('FeedForward', args)}.forward(x) in train mode"
    stu, ref = _pair(student, reference, "FeedForward", args, seed=45, dtype=torch.float64)
    x1 = randn(1, 3, 8, seed=46, dtype=torch.float64)
    _check_eval_value(stu, ref, x1, f"{_sig('FeedForward', args)}.forward(x)")
    base = expect_tensor(call(stu, x1), what=f"{_sig('FeedForward', args)}.forward(x) in eval mode", shape=(1, 3, 8))
    stu.train()
    torch.manual_seed(47)
    out = call(stu, x1.expand(200, 3, 8).contiguous())
    _check_zero_or_scaled(out, base.expand(200, 3, 8), p, what=what)
    _check_mean(out, base[0], what=what)


@pytest.mark.problem("FeedForward")
def test_ffn_does_not_modify_inputs(student, reference):
    """returns the reference's value and leaves its input x unchanged"""
    _check_inputs_unchanged(student, reference, "FeedForward", (8, 0.1), randn(2, 3, 8, seed=38, dtype=torch.float64),
                            seed=37)


@pytest.mark.problem("FeedForward")
def test_ffn_eval_is_deterministic(student, reference):
    """eval mode applies no dropout: two calls give the same values, equal to the reference's"""
    stu, ref = _pair(student, reference, "FeedForward", (8, 0.5), seed=48, dtype=torch.float64)
    stu.eval(), ref.eval()
    x = randn(4, 3, 8, seed=49, dtype=torch.float64)
    first = call(stu, x)
    assert_close(call(stu, x), first, what="FeedForward(8, 0.5).forward(x) called twice in eval mode")
    assert_close(first, ref(x), what="FeedForward(8, 0.5).forward(x) in eval mode")


@pytest.mark.problem("FeedForward")
def test_ffn_device_and_dtype(student, reference):
    """equals the reference on the CPU, works on any device (checked on meta) and keeps float32, float64 and bfloat16"""
    stu, ref = _pair(student, reference, "FeedForward", (8, 0.1), seed=44)
    _check_eval_value(stu, ref, randn(2, 3, 8, seed=43), "FeedForward(8, 0.1).forward(x) on the CPU")
    for dtype, training in META_RUNS:
        m = _make(student.model.FeedForward, "FeedForward", (8, 0.1)).to(device="meta", dtype=dtype)
        m.train(training)
        x = torch.empty(2, 3, 8, device="meta", dtype=dtype)
        _run_on_meta(m, x, dtype, shape=(2, 3, 8),
                     what=f"FeedForward(8, 0.1).forward(x: {describe(x)}) in {'train' if training else 'eval'} mode")


# ---------------------------------------------------------------------------------------------
# Block

BLOCK_CASES = [  # (hidden, heads, seq_len, B, T, seed)
    pytest.param(8, 2, 3, 2, 3, 51, id="C8-H2-T3"),
    pytest.param(12, 3, 6, 3, 4, 52, id="C12-H3-T4of6"),
    pytest.param(16, 4, 5, 2, 5, 53, id="C16-H4-T5"),
]


@pytest.mark.problem("Block")
@ISOLATE_BLOCK
def test_block_attributes(student, reference):
    """ln1, ln2 are LayerNorm(C); attn is a CausalSelfAttention and ffn a FeedForward, both with the dropout p"""
    args = (12, 3, 0.3, 5)
    what = _sig("Block", args)
    m = _make(student.model.Block, "Block", args)
    _check_layernorm(_attr(m, what, "ln1"), f"{what}.ln1", 12)
    _check_layernorm(_attr(m, what, "ln2"), f"{what}.ln2", 12)
    attn, ffn = _attr(m, what, "attn"), _attr(m, what, "ffn")
    expect(isinstance(attn, student.model.CausalSelfAttention.raw),
           f"{what}.attn should be your CausalSelfAttention, but it is {describe(attn)}.")
    expect(isinstance(ffn, student.model.FeedForward.raw),
           f"{what}.ffn should be your FeedForward, but it is {describe(ffn)}.")
    _check_dropout(_attr(attn, f"{what}.attn", "attn_dropout"), f"{what}.attn.attn_dropout", 0.3)
    _check_dropout(_attr(ffn, f"{what}.ffn", "dropout"), f"{what}.ffn.dropout", 0.3)
    ref = randomize_(reference.model.Block(*args), 50)
    _load(m, ref, "Block", what)  # no extra parameters, nothing shared
    _check_eval_value(m, ref, randn(2, 5, 12, seed=49), f"{what}.forward(x){NOTE['Block']}")


@pytest.mark.problem("Block")
@ISOLATE_BLOCK
def test_block_defaults(student, reference):
    """Block() uses the notebook's defaults (hidden 8, 2 heads, dropout 0.1, seq_len 3)"""
    m = _make(student.model.Block, "Block", ())
    _check_layernorm(_attr(m, "Block()", "ln1"), "Block().ln1", 8)
    _check_dropout(_attr(_attr(m, "Block()", "ffn"), "Block().ffn", "dropout"), "Block().ffn.dropout", 0.1)
    stu, ref = _pair(student, reference, "Block", (), seed=54)
    stu.eval(), ref.eval()
    x = randn(2, 3, 8, seed=55)
    assert_close(call(stu, x), ref(x), what="Block().forward(x) in eval mode, float32" + NOTE["Block"])


@pytest.mark.problem("Block")
@ISOLATE_BLOCK
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("C, H, S, B, T, seed", BLOCK_CASES)
def test_block_matches_reference(student, reference, C, H, S, B, T, seed, dtype):
    """same output as the reference with the same weights (eval mode, and train mode with dropout=0)"""
    x = randn(B, T, C, seed=seed + 100, dtype=dtype)
    _compare_with_reference(student, reference, "Block", lambda p: (C, H, p, S), x, seed=seed)


@pytest.mark.problem("Block")
@ISOLATE_BLOCK
def test_block_residuals(student, reference):
    """with attn and ffn outputs zeroed, the block is the identity (both residual connections, pre-norm)"""
    def zero_outputs(ref):
        for p in (ref.attn.out_proj.weight, ref.attn.out_proj.bias, ref.ffn.fc2.weight, ref.ffn.fc2.bias):
            p.zero_()

    stu, _ = _pair(student, reference, "Block", (8, 2, 0.0, 4), seed=56, dtype=torch.float64, edit=zero_outputs)
    stu.eval()
    x = randn(2, 4, 8, seed=57, dtype=torch.float64)
    assert_close(call(stu, x), x, what="Block(8, 2, 0.0, 4).forward(x) with attn.out_proj and ffn.fc2 set to 0" + NOTE["Block"])


@pytest.mark.problem("Block")
@ISOLATE_BLOCK
def test_block_attention_residual_only(student, reference):
    """with ffn zeroed the block is x + attn(ln1(x)): LayerNorm before attention, residual around it"""
    def zero_ffn(ref):
        ref.ffn.fc2.weight.zero_()
        ref.ffn.fc2.bias.zero_()

    stu, ref = _pair(student, reference, "Block", (8, 2, 0.0, 4), seed=58, dtype=torch.float64, edit=zero_ffn)
    stu.eval(), ref.eval()
    x = randn(2, 4, 8, seed=59, dtype=torch.float64)
    with torch.no_grad():
        expected = x + ref.attn(ref.ln1(x))
    assert_close(call(stu, x), expected, what="Block(8, 2, 0.0, 4).forward(x) with ffn.fc2 set to 0" + NOTE["Block"])


@pytest.mark.problem("Block")
@ISOLATE_BLOCK
def test_block_causal_and_batch_independent(student, reference):
    """changing future positions never changes earlier outputs, and batch rows do not interact"""
    stu, ref = _pair(student, reference, "Block", (12, 3, 0.1, 5), seed=60, dtype=torch.float64)
    x = randn(3, 5, 12, seed=61, dtype=torch.float64)
    _check_eval_value(stu, ref, x, f"Block(12, 3, 0.1, 5).forward(x){NOTE['Block']}")
    out = expect_tensor(call(stu, x), what="Block.forward(x)", shape=(3, 5, 12))
    for t in range(4):
        x2 = x.clone()
        x2[:, t + 1:] = randn(3, 4 - t, 12, seed=62 + t, dtype=torch.float64) * 3
        assert_close(call(stu, x2)[:, : t + 1], out[:, : t + 1],
                     what=f"Block.forward(x)[:, :{t + 1}] after changing x[:, {t + 1}:] (eval mode)" + NOTE["Block"])
    for i in range(3):
        assert_close(call(stu, x[i:i + 1]), out[i:i + 1],
                     what=f"Block.forward(x[{i}:{i + 1}]) compared with forward(x)[{i}:{i + 1}]" + NOTE["Block"])


@pytest.mark.problem("Block")
@ISOLATE_BLOCK
def test_block_does_not_modify_inputs(student, reference):
    """returns the reference's value and leaves its input x unchanged (no in-place residual x += ...)"""
    _check_inputs_unchanged(student, reference, "Block", (8, 2, 0.1, 4), randn(2, 4, 8, seed=67, dtype=torch.float64),
                            seed=66)


@pytest.mark.problem("Block")
@ISOLATE_BLOCK
def test_block_device_and_dtype(student, reference):
    """equals the reference on the CPU, works on any device (checked on meta) and keeps float32, float64 and bfloat16"""
    stu, ref = _pair(student, reference, "Block", (8, 2, 0.1, 4), seed=64)
    _check_eval_value(stu, ref, randn(2, 3, 8, seed=63), f"Block(8, 2, 0.1, 4).forward(x) on the CPU{NOTE['Block']}")
    for dtype, training in META_RUNS:
        m, _ = _pair(student, reference, "Block", (8, 2, 0.1, 4), seed=65)
        m.to(device="meta", dtype=dtype)
        m.train(training)
        x = torch.empty(2, 3, 8, device="meta", dtype=dtype)
        _run_on_meta(m, x, dtype, shape=(2, 3, 8),
                     what=f"Block(8, 2, 0.1, 4).forward(x: {describe(x)}) in {'train' if training else 'eval'} mode"
                          + NOTE["Block"])


# ---------------------------------------------------------------------------------------------
# Transformer

TRANSFORMER_CASES = [  # (vocab, hidden, heads, seq_len, layers, B, T, seed)
    pytest.param(20, 8, 2, 4, 2, 2, 4, 71, id="V20-C8-L2-T4"),
    pytest.param(37, 12, 3, 6, 1, 3, 5, 72, id="V37-C12-L1-T5of6"),
    pytest.param(50, 16, 4, 5, 3, 2, 2, 73, id="V50-C16-L3-T2of5"),
]


def _compare_transformer(student, reference, args_of, ids, dtype, seed):
    for mode, p in (("eval", 0.2), ("train", 0.0)):
        args = args_of(p)
        stu, ref = _pair(student, reference, "Transformer", args, seed=seed, dtype=dtype)
        stu.train(mode == "train")
        ref.train(mode == "train")
        with torch.no_grad():
            expected = ref(ids)
        assert_close(call(stu, ids), expected, what=f"{_sig('Transformer', args)}.forward(input_ids: "
                                                     f"{describe(ids)}) in {mode} mode, parameters in {_dt(dtype)}"
                                                     + NOTE["Transformer"])


@pytest.mark.problem("Transformer")
@ISOLATE_TRANSFORMER
def test_transformer_attributes(student, reference):
    """seq_len, token_emb, pos_emb, drop, blocks (ModuleList of num_layers Blocks), ln_f, lm_head as in the contract"""
    args = (30, 12, 3, 0.3, 5, 3)
    what = _sig("Transformer", args)
    m = _make(student.model.Transformer, "Transformer", args)
    seq_len = _attr(m, what, "seq_len")
    expect(type(seq_len) is int and seq_len == 5, f"{what}.seq_len should be the int 5, but it is {seq_len!r}.")
    for name, (n, d) in (("token_emb", (30, 12)), ("pos_emb", (5, 12))):
        emb = _attr(m, what, name)
        expect(isinstance(emb, nn.Embedding), f"{what}.{name} should be an nn.Embedding, but it is {describe(emb)}.")
        expect((emb.num_embeddings, emb.embedding_dim) == (n, d),
               f"{what}.{name} should be nn.Embedding({n}, {d}), "
               f"but it is nn.Embedding({emb.num_embeddings}, {emb.embedding_dim}).")
    _check_dropout(_attr(m, what, "drop"), f"{what}.drop", 0.3)
    blocks = _attr(m, what, "blocks")
    expect(isinstance(blocks, nn.ModuleList), f"{what}.blocks should be an nn.ModuleList, but it is {describe(blocks)}.")
    expect(len(blocks) == 3, f"{what}.blocks should hold num_layers = 3 blocks, but it holds {len(blocks)}.")
    for i, block in enumerate(blocks):
        expect(isinstance(block, student.model.Block.raw),
               f"{what}.blocks[{i}] should be your Block, but it is {describe(block)}.")
    ffn = _attr(blocks[0], f"{what}.blocks[0]", "ffn")
    _check_dropout(_attr(ffn, f"{what}.blocks[0].ffn", "dropout"), f"{what}.blocks[0].ffn.dropout", 0.3)
    _check_layernorm(_attr(m, what, "ln_f"), f"{what}.ln_f", 12)
    _check_linear(_attr(m, what, "lm_head"), f"{what}.lm_head", 12, 30)
    ref = randomize_(reference.model.Transformer(*args), 70)
    _load(m, ref, "Transformer", what)  # no extra parameters, nothing shared
    _check_eval_value(m, ref, randint(30, 2, 5, seed=69), f"{what}.forward(input_ids){NOTE['Transformer']}")


@pytest.mark.problem("Transformer")
@ISOLATE_TRANSFORMER
def test_transformer_defaults(student, reference):
    """Transformer() uses the notebook's defaults (vocab 100, hidden 8, 2 heads, dropout 0.1, seq_len 3, 2 layers)"""
    m = _make(student.model.Transformer, "Transformer", ())
    seq_len = _attr(m, "Transformer()", "seq_len")
    expect(seq_len == 3, f"Transformer().seq_len should be 3, but it is {seq_len!r}.")
    _check_dropout(_attr(m, "Transformer()", "drop"), "Transformer().drop", 0.1)
    expect(len(_attr(m, "Transformer()", "blocks")) == 2, "Transformer().blocks should hold 2 blocks.")
    stu, ref = _pair(student, reference, "Transformer", (), seed=74)
    stu.eval(), ref.eval()
    ids = randint(100, 2, 3, seed=75)
    assert_close(call(stu, ids), ref(ids), what="Transformer().forward(input_ids: int64[2, 3]) in eval mode" + NOTE["Transformer"])


@pytest.mark.problem("Transformer")
@ISOLATE_TRANSFORMER
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("V, C, H, S, L, B, T, seed", TRANSFORMER_CASES)
def test_transformer_matches_reference(student, reference, V, C, H, S, L, B, T, seed, dtype):
    """same logits as the reference with the same weights (eval mode, and train mode with dropout=0)"""
    ids = randint(V, B, T, seed=seed + 100)
    _compare_transformer(student, reference, lambda p: (V, C, H, p, S, L), ids, dtype, seed)


@pytest.mark.problem("Transformer")
@ISOLATE_TRANSFORMER
def test_transformer_shorter_sequences(student, reference):
    """T < seq_len uses positions 0..T-1: logits equal the reference for every T"""
    args = (20, 8, 2, 0.1, 6, 2)
    stu, ref = _pair(student, reference, "Transformer", args, seed=76, dtype=torch.float64)
    stu.eval(), ref.eval()
    ids = randint(20, 2, 6, seed=77)
    for T in range(1, 7):
        with torch.no_grad():
            expected = ref(ids[:, :T])
        assert_close(call(stu, ids[:, :T]), expected,
                     what=f"{_sig('Transformer', args)}.forward(input_ids: int64[2, {T}]) in eval mode"
                          + NOTE["Transformer"])


@pytest.mark.problem("Transformer")
@ISOLATE_TRANSFORMER
def test_transformer_causal_and_batch_independent(student, reference):
    """changing future tokens never changes earlier logits, and batch rows do not interact"""
    args = (20, 8, 2, 0.1, 5, 2)
    stu, ref = _pair(student, reference, "Transformer", args, seed=78, dtype=torch.float64)
    ids = randint(20, 3, 5, seed=79)
    _check_eval_value(stu, ref, ids, f"{_sig('Transformer', args)}.forward(input_ids){NOTE['Transformer']}")
    out = expect_tensor(call(stu, ids), what=f"{_sig('Transformer', args)}.forward(input_ids)", shape=(3, 5, 20),
                        dtype=torch.float64)
    for t in range(4):
        ids2 = ids.clone()
        ids2[:, t + 1:] = (ids2[:, t + 1:] + 1 + randint(18, 3, 4 - t, seed=80 + t)) % 20
        assert_close(call(stu, ids2)[:, : t + 1], out[:, : t + 1],
                     what=f"Transformer.forward(input_ids)[:, :{t + 1}] after changing input_ids[:, {t + 1}:]"
                          + NOTE["Transformer"])
    for i in range(3):
        assert_close(call(stu, ids[i:i + 1]), out[i:i + 1],
                     what=f"Transformer.forward(input_ids[{i}:{i + 1}]) compared with forward(input_ids)[{i}:{i + 1}]"
                          + NOTE["Transformer"])


@pytest.mark.problem("Transformer")
@ISOLATE_TRANSFORMER
def test_transformer_embedding_dropout(student, reference):
    """train mode: drop acts on token + position embeddings (the first block sees 0 or (tok + pos) / (1 - p))"""
    p = 0.5
    args = (20, 8, 2, p, 4, 2)
    what = f"{_sig('Transformer', args)}: the input of blocks[0] in train mode"
    stu, ref = _pair(student, reference, "Transformer", args, seed=81, dtype=torch.float64)
    _check_eval_value(stu, ref, randint(20, 2, 4, seed=80), f"{_sig('Transformer', args)}.forward(input_ids)"
                      + NOTE["Transformer"])
    blocks = _attr(stu, "Transformer", "blocks")
    # the container's type is test_transformer_attributes' check: here blocks[0] only has to be reachable
    expect(isinstance(blocks, (nn.ModuleList, nn.Sequential)) and len(blocks) == 2,
           "Transformer.blocks should be an nn.ModuleList of num_layers blocks.")
    seen = []
    handle = blocks[0].register_forward_pre_hook(lambda module, inputs: seen.append(inputs[0].detach().clone()))
    ids = randint(20, 32, 4, seed=82)
    stu.train()
    torch.manual_seed(83)
    try:
        call(stu, ids)
    finally:
        handle.remove()
    expect(len(seen) == 1, f"{what}: blocks[0] should be called once per forward, but it was called {len(seen)} times.")
    with torch.no_grad():
        base = ref.token_emb(ids) + ref.pos_emb(torch.arange(4))
    _check_zero_or_scaled(seen[0], base, p, what=what)


@pytest.mark.problem("Transformer")
@ISOLATE_TRANSFORMER
def test_transformer_eval_is_deterministic(student, reference):
    """eval mode applies no dropout: two calls give the same logits, equal to the reference's"""
    args = (20, 8, 2, 0.5, 4, 2)
    stu, ref = _pair(student, reference, "Transformer", args, seed=84, dtype=torch.float64)
    stu.eval(), ref.eval()
    ids = randint(20, 3, 4, seed=85)
    first = call(stu, ids)
    assert_close(call(stu, ids), first, what=f"{_sig('Transformer', args)}.forward(input_ids) twice in eval mode"
                 + NOTE["Transformer"])
    with torch.no_grad():
        assert_close(first, ref(ids), what=f"{_sig('Transformer', args)}.forward(input_ids) in eval mode"
                                          + NOTE["Transformer"])


@pytest.mark.problem("Transformer")
@ISOLATE_TRANSFORMER
def test_transformer_does_not_modify_inputs(student, reference):
    """returns the reference's logits and leaves input_ids unchanged"""
    _check_inputs_unchanged(student, reference, "Transformer", (20, 8, 2, 0.1, 4, 2), randint(20, 2, 4, seed=90),
                            seed=89)


@pytest.mark.problem("Transformer")
@ISOLATE_TRANSFORMER
def test_transformer_device_and_dtype(student, reference):
    """equals the reference on the CPU, works on any device (checked on meta: positions on the input's device) and keeps the parameters' dtype"""
    stu, ref = _pair(student, reference, "Transformer", (20, 8, 2, 0.1, 4, 2), seed=87)
    _check_eval_value(stu, ref, randint(20, 2, 3, seed=88), "Transformer(20, 8, 2, 0.1, 4, 2).forward(input_ids) "
                      "on the CPU" + NOTE["Transformer"])
    for dtype, training in META_RUNS:
        args = (20, 8, 2, 0.1, 4, 2)
        m, _ = _pair(student, reference, "Transformer", args, seed=86)
        m.to(device="meta", dtype=dtype)
        m.train(training)
        ids = torch.zeros(2, 3, dtype=torch.long, device="meta")
        _run_on_meta(m, ids, dtype, shape=(2, 3, 20), what=f"{_sig('Transformer', args)}.forward(input_ids: "
                     f"{describe(ids)}), parameters in {_dt(dtype)}, {'train' if training else 'eval'} mode"
                     + NOTE["Transformer"])


# ---------------------------------------------------------------------------------------------
# lm_loss

def _lm_inputs(B, T, V, pad, seed, dtype=torch.float32):
    """Random logits and ids without any pad id (the tests place the padding)."""
    logits = randn(B, T, V, seed=seed, dtype=dtype, scale=2.0)
    ids = randint(V, B, T, seed=seed + 1)
    ids = torch.where(ids == pad, (ids + 1) % V, ids)
    return logits, ids


def _check_lm_loss(student, reference, logits, ids, pad, *, what):
    expected = reference.model.lm_loss(logits, ids, pad)
    got = student.model.lm_loss(logits.clone(), ids.clone(), pad)
    expect_tensor(got, what=what, shape=(), dtype=logits.dtype)
    assert_close(got, expected, what=what)


@pytest.mark.problem("lm_loss")
@pytest.mark.parametrize("B, T, V, seed", [
    pytest.param(2, 5, 11, 91, id="B2-T5-V11"),
    pytest.param(3, 2, 7, 92, id="B3-T2-V7"),
    pytest.param(4, 8, 50, 93, id="B4-T8-V50"),
])
def test_lm_loss_no_padding(student, reference, B, T, V, seed):
    """equals the reference when no target is padding (position t predicts token t+1)"""
    logits, ids = _lm_inputs(B, T, V, pad=3, seed=seed)
    _check_lm_loss(student, reference, logits, ids, 3,
                   what=f"lm_loss(logits: {describe(logits)}, input_ids: {describe(ids)}, pad_token_id=3)")


@pytest.mark.problem("lm_loss")
@pytest.mark.parametrize("pad", [0, 6, 16], ids=["pad0", "pad6", "pad16-last-id"])
def test_lm_loss_padding_at_end(student, reference, pad):
    """padding at the end of rows (different lengths) is left out of the mean, for any pad id"""
    logits, ids = _lm_inputs(3, 7, 17, pad, seed=94)
    ids[0, 4:] = pad
    ids[1, 6:] = pad
    _check_lm_loss(student, reference, logits, ids, pad,
                   what=f"lm_loss(logits: {describe(logits)}, input_ids with padding at the end, pad_token_id={pad})")


@pytest.mark.problem("lm_loss")
def test_lm_loss_padding_in_middle(student, reference):
    """pad targets in the middle of a row are left out too (the mask is on targets, not on positions)"""
    logits, ids = _lm_inputs(3, 8, 13, 5, seed=95)
    ids[0, 2] = 5
    ids[1, 3:5] = 5
    ids[2, 1] = 5
    ids[2, 7] = 5
    _check_lm_loss(student, reference, logits, ids, 5,
                   what=f"lm_loss(logits: {describe(logits)}, input_ids with padding in the middle, pad_token_id=5)")


@pytest.mark.problem("lm_loss")
def test_lm_loss_pad_as_first_input(student, reference):
    """a pad id at position 0 is only an input, never a target: its prediction of token 1 counts"""
    logits, ids = _lm_inputs(3, 5, 9, 0, seed=96)
    ids[:, 0] = 0
    _check_lm_loss(student, reference, logits, ids, 0,
                   what=f"lm_loss(logits: {describe(logits)}, input_ids with pad id 0 at position 0, pad_token_id=0)")


@pytest.mark.problem("lm_loss")
def test_lm_loss_float64(student, reference):
    """float64 logits give a float64 loss equal to the reference to 1e-10"""
    logits, ids = _lm_inputs(3, 6, 10, 2, seed=97, dtype=torch.float64)
    ids[0, 4:] = 2
    ids[2, 2] = 2
    _check_lm_loss(student, reference, logits, ids, 2,
                   what=f"lm_loss(logits: {describe(logits)}, input_ids with padding, pad_token_id=2)")


@pytest.mark.problem("lm_loss")
def test_lm_loss_is_zero_dim(student, reference):
    """returns a 0-dim tensor (a scalar loss, not a vector of per-token losses), the reference's"""
    logits, ids = _lm_inputs(2, 4, 8, 1, seed=98)
    _check_lm_loss(student, reference, logits, ids, 1,
                   what=f"lm_loss(logits: {describe(logits)}, input_ids: {describe(ids)}, pad_token_id=1)")


@pytest.mark.problem("lm_loss")
def test_lm_loss_does_not_modify_inputs(student, reference):
    """returns the reference's loss and leaves logits and input_ids unchanged"""
    logits, ids = _lm_inputs(3, 5, 9, 2, seed=100)
    ids[0, 3:] = 2
    expected = reference.model.lm_loss(logits.clone(), ids.clone(), 2)
    what = f"lm_loss(logits: {describe(logits)}, input_ids with padding, pad_token_id=2)"
    with leaves_unchanged(what, logits=logits, input_ids=ids):
        assert_close(student.model.lm_loss(logits, ids, 2), expected, what=what)


@pytest.mark.problem("lm_loss")
def test_lm_loss_device_agnostic(student, reference):
    """the reference's loss on the CPU; on the meta device, a 0-dim loss on the logits' device (nothing made on the CPU)"""
    logits, ids = _lm_inputs(2, 5, 9, 4, seed=101)
    ids[1, 3:] = 4
    _check_lm_loss(student, reference, logits, ids, 4,
                   what=f"lm_loss(logits: {describe(logits)}, input_ids with padding, pad_token_id=4)")
    logits, ids = logits.to("meta"), ids.to("meta")
    what = f"lm_loss(logits: {describe(logits)}, input_ids: {describe(ids)}, pad_token_id=4)"
    try:
        with strict_device("meta"):
            got = student.model.lm_loss(logits, ids, 4)
    except NotImplementedError:
        # boolean-mask indexing (logits[keep]), a correct style, has no meta kernel: its output size
        # depends on the data. The device cannot be checked then; the value was checked above.
        return
    expect_tensor(got, what=what, shape=(), dtype=torch.float32, device="meta")


@pytest.mark.problem("lm_loss")
def test_lm_loss_gradients(student, reference):
    """backward through the loss gives the reference's gradient on the logits"""
    logits, ids = _lm_inputs(3, 6, 12, 4, seed=99, dtype=torch.float64)
    ids[1, 3:] = 4
    ids[0, 0] = 4
    what = f"lm_loss(logits: {describe(logits)}, input_ids with padding, pad_token_id=4)"
    ref_logits = logits.clone().requires_grad_()
    reference.model.lm_loss(ref_logits, ids, 4).backward()
    stu_logits = logits.clone().requires_grad_()
    loss = student.model.lm_loss(stu_logits, ids, 4)
    expect(isinstance(loss, torch.Tensor) and loss.requires_grad,
           f"{what} should be differentiable: the result does not require grad when the logits do.")
    expect(loss.dim() == 0, f"{what} should be a 0-dim tensor, but its shape is {list(loss.shape)}.")
    loss.backward()
    expect(stu_logits.grad is not None, f"{what}: backward() did not reach the logits.")
    assert_close(stu_logits.grad, ref_logits.grad, what=f"the gradient of {what} with respect to the logits")


# ---------------------------------------------------------------------------------------------
# greedy_decode

class _SpyLM(nn.Module):
    """A grader-provided language model: records every input it is fed and whether grad mode was on.

    Its next-token choice depends on the whole window it is fed, so feeding the wrong window
    changes the decoded tokens.
    """

    def __init__(self, vocab_size=11, seq_len=4):
        super().__init__()
        self.seq_len = seq_len
        self.vocab_size = vocab_size
        self.gain = nn.Parameter(torch.ones(()))
        self.calls = []

    def forward(self, input_ids):
        self.calls.append((input_ids.detach().clone(), torch.is_grad_enabled()))
        T = input_ids.shape[1]
        length = torch.arange(1, T + 1, device=input_ids.device)
        nxt = (7 * input_ids.cumsum(1) + 3 * length * length + 1) % self.vocab_size
        return F.one_hot(nxt, self.vocab_size).to(torch.float32) * self.gain


def _decode_model(reference, seed, vocab=20, seq_len=4):
    model = randomize_(reference.model.Transformer(vocab, 8, 2, 0.1, seq_len, 2), seed, scale=1.0)
    return model.eval()


def _check_decode(student, reference, model, ids, max_new):
    what = f"greedy_decode(model, input_ids: {describe(ids)}, max_new_tokens={max_new})"
    expected = reference.model.greedy_decode(model, ids.clone(), max_new)
    got = student.model.greedy_decode(model, ids.clone(), max_new)
    expect_tensor(got, what=what, shape=(ids.shape[0], ids.shape[1] + max_new), dtype=torch.int64)
    assert_equal(got, expected, what=what + " with a grader-provided Transformer (seq_len=4)")


@pytest.mark.problem("greedy_decode")
def test_decode_batch_of_one(student, reference):
    """batch 1: the same tokens as the reference, decoding past the context length"""
    _check_decode(student, reference, _decode_model(reference, 101), randint(20, 1, 2, seed=102), 6)


@pytest.mark.problem("greedy_decode")
def test_decode_batch(student, reference):
    """batch of 3: each row gets its own argmax tokens, as in the reference"""
    _check_decode(student, reference, _decode_model(reference, 103), randint(20, 3, 3, seed=104), 5)


@pytest.mark.problem("greedy_decode")
def test_decode_prompt_longer_than_context(student, reference):
    """a prompt longer than seq_len: only its last seq_len tokens are fed"""
    _check_decode(student, reference, _decode_model(reference, 105), randint(20, 2, 7, seed=106), 3)


@pytest.mark.problem("greedy_decode")
def test_decode_zero_new_tokens(student, reference):
    """max_new_tokens=0 returns the prompt unchanged, int64 (B, T0)"""
    ids = randint(20, 2, 3, seed=107)
    got = student.model.greedy_decode(_decode_model(reference, 108), ids.clone(), 0)
    assert_equal(got, ids, what=f"greedy_decode(model, input_ids: {describe(ids)}, max_new_tokens=0)")


@pytest.mark.problem("greedy_decode")
def test_decode_feeds_last_window(student, reference):
    """every step feeds the model the last min(T, seq_len) tokens (the whole window, not just the newest)"""
    ids = randint(11, 2, 2, seed=109)
    max_new = 6
    what = f"greedy_decode(model, input_ids: {describe(ids)}, max_new_tokens={max_new}) with model.seq_len=4"
    ref_model = _SpyLM()
    expected = reference.model.greedy_decode(ref_model, ids.clone(), max_new)
    spy = _SpyLM()
    got = student.model.greedy_decode(spy, ids.clone(), max_new)
    expect(len(spy.calls) == max_new,
           f"{what} called the model {len(spy.calls)} times; it should call it once per new token.")
    for step, (fed, _) in enumerate(spy.calls):
        T = ids.shape[1] + step
        window = expected[:, max(0, T - 4):T]
        expect(tuple(fed.shape) == tuple(window.shape),
               f"{what}: at step {step} (sequence length {T}) the model was fed {describe(fed)}; it should be fed "
               f"the last min(T, model.seq_len) tokens, shape {list(window.shape)}.")
        assert_equal(fed, window, what=f"{what}: the tokens fed to the model at step {step}")
    assert_equal(got, expected, what=what)


@pytest.mark.problem("greedy_decode")
def test_decode_records_no_gradients(student, reference):
    """the model is called with grad mode off, and the result (the reference's tokens) does not require grad"""
    spy = _SpyLM()
    ids = randint(11, 2, 3, seed=110)
    what = f"greedy_decode(model, input_ids: {describe(ids)}, max_new_tokens=3)"
    got = student.model.greedy_decode(spy, ids.clone(), 3)
    assert_equal(got, reference.model.greedy_decode(_SpyLM(), ids.clone(), 3), what=what)
    expect(len(spy.calls) > 0, f"{what} never called the model.")
    expect(not any(grad for _, grad in spy.calls),
           f"{what} called the model with gradient recording on; use torch.no_grad() (decorator or context manager).")
    expect(isinstance(got, torch.Tensor) and not got.requires_grad, f"{what} should return a tensor without grad.")


@pytest.mark.problem("greedy_decode")
def test_decode_does_not_modify_inputs(student, reference):
    """returns the reference's tokens and leaves input_ids unchanged"""
    model, ids = _decode_model(reference, 114), randint(20, 2, 3, seed=115)
    expected = reference.model.greedy_decode(model, ids.clone(), 4)
    what = f"greedy_decode(model, input_ids: {describe(ids)}, max_new_tokens=4)"
    with leaves_unchanged(what, input_ids=ids):
        assert_equal(student.model.greedy_decode(model, ids, 4), expected, what=what)


@pytest.mark.problem("greedy_decode")
def test_decode_default_max_new_tokens(student, reference):
    """max_new_tokens defaults to 32: the result is int64 (B, T0 + 32), the reference's tokens"""
    ids = randint(11, 2, 3, seed=111)
    got = student.model.greedy_decode(_SpyLM(), ids.clone())
    what = f"greedy_decode(model, input_ids: {describe(ids)})"
    expect_tensor(got, what=what, shape=(2, 35), dtype=torch.int64)
    assert_equal(got[:, :3], ids, what=f"{what}[:, :3] (the prompt)")
    assert_equal(got, reference.model.greedy_decode(_SpyLM(), ids.clone()), what=what)


@pytest.mark.problem("greedy_decode")
def test_decode_device_agnostic(student, reference):
    """the reference's tokens on the CPU; works on any device (checked on meta): int64 (B, T0 + max_new) on that device"""
    _check_decode(student, reference, _decode_model(reference, 112), randint(20, 2, 3, seed=113), 4)
    model = _decode_model(reference, 112).to("meta")
    ids = torch.zeros(2, 3, dtype=torch.long, device="meta")
    what = f"greedy_decode(model on meta, input_ids: {describe(ids)}, max_new_tokens=4)"
    with strict_device("meta"):
        got = student.model.greedy_decode(model, ids, 4)
    expect_tensor(got, what=what, shape=(2, 7), dtype=torch.int64, device="meta")
