"""Hidden tests for attention.py: comparison with the reference on random inputs, and properties.

Every function and module is compared with the reference solution in float32 and float64 on
several seeded shapes, checked in bfloat16 against the reference run in float32, run on the
`meta` device under `strict_device` (nothing may be created on a fixed device), and checked
for batch independence. Inputs are kept small (T <= 8, d <= 16): the 90 tests take about half a
second, plus strict_device's one-time start-up. Projection weights are drawn with scale
1/sqrt(d_in) so that attention scores are of order 1: the softmax is then far from one-hot and
every scaling or masking mistake shows.
"""
import pytest
import torch

from autograder.kit.adapter import call
from autograder.kit.checks import assert_close, assert_equal, expect, expect_tensor, fail
from autograder.kit.inplace import leaves_unchanged
from autograder.kit.torchkit import copy_parameters, randint, randn, randomize_, strict_device

# A composite is graded on its own (README, "Exact grading"): while its tests run, the functions of
# attention.py it may be built from are the reference's, so a bug in the student's self_attention does not
# cost multi_head_attention too (red1: a multi_head_attention made of self_attention calls lost 6.4 of 8).
MH_PARTS = ("self_attention", "scaled_dot_product_attention")
CAUSAL_MH_PARTS = ("causal_mask", "self_attention", "scaled_dot_product_attention")

FLOATS = [pytest.param(torch.float32, id="float32"), pytest.param(torch.float64, id="float64")]
F64 = torch.float64

# bfloat16: the student's code runs on bfloat16 inputs; the reference runs in float32 on the very
# same (bfloat16-rounded) values, so the only difference left is the rounding of intermediates
# (projections, scores, weights, output) to bfloat16's 8-bit mantissa. Calibrated on 160 random
# inputs per function (shapes of these tests, seeds 0..39) and 10 correct styles (matmul, einsum,
# per-head loop with torch.cat, manual softmax, scaling Q first, torch.where masks, float64
# internals cast back, ...): the worst error seen was 0.0155 x (1 + |expected|), 0.023 absolute.
# Allowing 0.05 + 0.05 x |expected| leaves a margin of 3x; output in the wrong dtype, a crash on
# bfloat16, or a wrong formula (errors of order 0.1 to 1 at these input scales) still fail.
BF16_RTOL = BF16_ATOL = 5e-2


def _dt(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _mats(n: int, d_in: int, d_out: int, *, seed: int, dtype=torch.float32) -> list[torch.Tensor]:
    """n seeded (d_in, d_out) weight matrices with entries of std 1/sqrt(d_in) (scores of order 1)."""
    return [randn(d_in, d_out, seed=seed + 1 + i, dtype=dtype, scale=d_in ** -0.5) for i in range(n)]


def _assert_close_bf16(got, expected: torch.Tensor, *, what: str) -> None:
    """`got` is bfloat16 and close to `expected` (the reference in float32), see BF16_RTOL."""
    expect_tensor(got, what=what, shape=expected.shape, dtype=torch.bfloat16)
    assert_close(got, expected, what=what, rtol=BF16_RTOL, atol=BF16_ATOL, check_dtype=False)


def _pair(result, what: str):
    """A function or module that must return (output, weights): check it is a pair and unpack it."""
    expect(isinstance(result, (tuple, list)) and len(result) == 2,
           f"{what} should return a tuple (output, weights), but it returned "
           f"{type(result).__name__}" + (f" of length {len(result)}." if isinstance(result, (tuple, list)) else "."))
    return result


def _meta(*tensors):
    return [t.to("meta") for t in tensors]


def _random_mask(*shape, seed: int, dtype=torch.bool) -> torch.Tensor:
    """A random 0/1 mask with every query row keeping at least one key (key 0 is always visible)."""
    mask = randint(2, *shape, seed=seed).bool()
    mask[..., 0] = True
    return mask.to(dtype)


def _padding_mask(B: int, T: int, *, seed: int, dtype=torch.bool) -> torch.Tensor:
    """(B, 1, 1, T): row b keeps its first lengths[b] keys; at least one row is padded."""
    lengths = 1 + randint(T, B, seed=seed)
    lengths[-1] = max(1, T // 2)
    mask = torch.arange(T).view(1, T) < lengths.view(B, 1)
    return mask.view(B, 1, 1, T).to(dtype)


# ---------------------------------------------------------------------------------------------
# self_attention
# ---------------------------------------------------------------------------------------------

SELF_CASES = [  # (B, T, d_in, d_k, seed)
    pytest.param((2, 5, 8, 8, 11), id="B2-T5-d8-dk8"),
    pytest.param((3, 7, 6, 4, 12), id="B3-T7-d6-dk4"),
    pytest.param((2, 8, 16, 2, 13), id="B2-T8-d16-dk2"),
]


@pytest.mark.problem("self_attention")
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("case", SELF_CASES)
def test_self_attention_matches_reference(student, reference, case, dtype):
    """matches the reference on random inputs"""
    B, T, d_in, d_k, seed = case
    S = randn(B, T, d_in, seed=seed, dtype=dtype)
    W = _mats(3, d_in, d_k, seed=seed, dtype=dtype)
    expected = reference.attention.self_attention(S, *W)
    out = student.attention.self_attention(S, *W)
    assert_close(out, expected, what=f"self_attention(S, W_Q, W_K, W_V) in {_dt(dtype)}")


@pytest.mark.problem("self_attention")
def test_self_attention_scale_uses_d_k(student, reference):
    """scales by 1/sqrt(d_k), the width of W_Q, even when it differs a lot from d_in"""
    for B, T, d_in, d_k, seed in ((2, 6, 3, 12, 21), (2, 6, 16, 1, 22)):
        S = randn(B, T, d_in, seed=seed, dtype=F64)
        W = _mats(3, d_in, d_k, seed=seed, dtype=F64)
        expected = reference.attention.self_attention(S, *W)
        out = student.attention.self_attention(S, *W)
        assert_close(out, expected, what=f"self_attention(S, W_Q, W_K, W_V) with d_in={d_in}, d_k={d_k}")


@pytest.mark.problem("self_attention")
def test_self_attention_single_token(student):
    """a single token attends only to itself: the output is S W_V"""
    S = randn(3, 1, 5, seed=31, dtype=F64)
    W_Q, W_K, W_V = _mats(3, 5, 4, seed=31, dtype=F64)
    out = student.attention.self_attention(S, W_Q, W_K, W_V)
    assert_close(out, S @ W_V, what="self_attention(S, W_Q, W_K, W_V) with T=1")


@pytest.mark.problem("self_attention")
def test_self_attention_batch_independent(student, reference):
    """each batch row computed alone equals its row of the batched result (which equals the reference's)"""
    S = randn(4, 6, 8, seed=41, dtype=F64)
    W = _mats(3, 8, 4, seed=41, dtype=F64)
    batched = student.attention.self_attention(S, *W)
    assert_close(batched, reference.attention.self_attention(S, *W), what="self_attention(S, W_Q, W_K, W_V)")
    for b in range(4):
        alone = student.attention.self_attention(S[b:b + 1], *W)
        assert_close(alone, batched[b:b + 1],
                     what=f"self_attention(S[{b}:{b + 1}], ...) compared with row {b} of self_attention(S, ...)")


@pytest.mark.problem("self_attention")
def test_self_attention_does_not_modify_inputs(student, reference):
    """returns the reference's value and leaves S, W_Q, W_K and W_V unchanged"""
    S = randn(2, 5, 6, seed=51)
    W = _mats(3, 6, 4, seed=51)
    copies = [t.clone() for t in (S, *W)]
    expected = reference.attention.self_attention(*(t.clone() for t in (S, *W)))
    assert_close(student.attention.self_attention(S, *W), expected, what="self_attention(S, W_Q, W_K, W_V)")
    for name, t, c in zip(("S", "W_Q", "W_K", "W_V"), (S, *W), copies):
        assert_equal(t, c, what=f"{name} after self_attention(S, W_Q, W_K, W_V) (inputs must not be changed)")


@pytest.mark.problem("self_attention")
def test_self_attention_bfloat16(student, reference):
    """works in bfloat16: close to the reference computed in float32 on the same inputs"""
    S = randn(2, 7, 8, seed=61, dtype=torch.bfloat16)
    W = _mats(3, 8, 6, seed=61, dtype=torch.bfloat16)
    expected = reference.attention.self_attention(S.float(), *(w.float() for w in W))
    out = student.attention.self_attention(S, *W)
    _assert_close_bf16(out, expected, what="self_attention(S, W_Q, W_K, W_V) in bfloat16")


@pytest.mark.problem("self_attention")
def test_self_attention_meta_device(student, reference):
    """equals the reference on the CPU, and runs on the meta device: the output is on the inputs' device, with their dtype"""
    inputs = [randn(2, 5, 8, seed=71), *_mats(3, 8, 4, seed=71)]
    assert_close(student.attention.self_attention(*inputs), reference.attention.self_attention(*inputs),
                 what="self_attention(S, W_Q, W_K, W_V) on the CPU")
    S, W_Q, W_K, W_V = _meta(*inputs)
    with strict_device("meta"):
        out = student.attention.self_attention(S, W_Q, W_K, W_V)
    expect_tensor(out, what="self_attention(S, W_Q, W_K, W_V) on the meta device", shape=(2, 5, 4),
                  dtype=torch.float32, device="meta")


# ---------------------------------------------------------------------------------------------
# multi_head_attention and causal_multi_head_attention (same interface)
# ---------------------------------------------------------------------------------------------

MH_CASES = [  # (B, T, d, H, seed)
    pytest.param((2, 5, 8, 2, 101), id="B2-T5-d8-H2"),
    pytest.param((3, 7, 12, 3, 102), id="B3-T7-d12-H3"),
    pytest.param((2, 8, 16, 4, 103), id="B2-T8-d16-H4"),
]


def _mh_inputs(B, T, d, seed, dtype=torch.float32):
    return randn(B, T, d, seed=seed, dtype=dtype), _mats(4, d, d, seed=seed, dtype=dtype)


def _check_mh_matches(student, reference, fn: str, case, dtype):
    B, T, d, H, seed = case
    S, W = _mh_inputs(B, T, d, seed, dtype)
    expected = getattr(reference.attention, fn)(S, *W, num_heads=H)
    out = getattr(student.attention, fn)(S, *W, num_heads=H)
    assert_close(out, expected, what=f"{fn}(S, W_Q, W_K, W_V, W_O, num_heads={H}) in {_dt(dtype)}")


def _check_mh_default_heads(student, reference, fn: str, seed: int):
    for d in (8, 16):
        S, W = _mh_inputs(2, 6, d, seed + d, F64)
        expected = getattr(reference.attention, fn)(S, *W, num_heads=4)
        out = getattr(student.attention, fn)(S, *W)
        assert_close(out, expected,
                     what=f"{fn}(S, W_Q, W_K, W_V, W_O) with num_heads left out (it should default to 4), d={d}")


def _check_mh_heads(student, reference, fn: str, H: int, seed: int):
    S, W = _mh_inputs(2, 6, 8, seed + H, F64)
    expected = getattr(reference.attention, fn)(S, *W, num_heads=H)
    out = getattr(student.attention, fn)(S, *W, num_heads=H)
    assert_close(out, expected, what=f"{fn}(S, W_Q, W_K, W_V, W_O, num_heads={H}) with d=8")


def _check_mh_batch_independent(student, reference, fn: str, seed: int):
    S, W = _mh_inputs(3, 6, 8, seed, F64)
    batched = getattr(student.attention, fn)(S, *W, num_heads=2)
    assert_close(batched, getattr(reference.attention, fn)(S, *W, num_heads=2),
                 what=f"{fn}(S, W_Q, W_K, W_V, W_O, num_heads=2)")
    for b in range(3):
        alone = getattr(student.attention, fn)(S[b:b + 1], *W, num_heads=2)
        assert_close(alone, batched[b:b + 1],
                     what=f"{fn}(S[{b}:{b + 1}], ..., num_heads=2) compared with row {b} of {fn}(S, ...)")


def _check_mh_bfloat16(student, reference, fn: str, seed: int):
    S, W = _mh_inputs(2, 7, 16, seed, torch.bfloat16)
    expected = getattr(reference.attention, fn)(S.float(), *(w.float() for w in W), num_heads=4)
    out = getattr(student.attention, fn)(S, *W, num_heads=4)
    _assert_close_bf16(out, expected, what=f"{fn}(S, W_Q, W_K, W_V, W_O, num_heads=4) in bfloat16")


def _check_mh_meta(student, reference, fn: str, seed: int):
    S, W = _mh_inputs(2, 5, 8, seed)
    assert_close(getattr(student.attention, fn)(S, *W, num_heads=2), getattr(reference.attention, fn)(S, *W, num_heads=2),
                 what=f"{fn}(S, W_Q, W_K, W_V, W_O, num_heads=2) on the CPU")
    S, *W = _meta(S, *W)
    with strict_device("meta"):
        out = getattr(student.attention, fn)(S, *W, num_heads=2)
    expect_tensor(out, what=f"{fn}(S, W_Q, W_K, W_V, W_O, num_heads=2) on the meta device", shape=(2, 5, 8),
                  dtype=torch.float32, device="meta")


def _check_mh_inputs_unchanged(student, reference, fn: str, seed: int):
    S, W = _mh_inputs(2, 5, 8, seed)
    expected = getattr(reference.attention, fn)(S.clone(), *(w.clone() for w in W), num_heads=2)
    what = f"{fn}(S, W_Q, W_K, W_V, W_O, num_heads=2)"
    with leaves_unchanged(what, S=S, W_Q=W[0], W_K=W[1], W_V=W[2], W_O=W[3]):
        assert_close(getattr(student.attention, fn)(S, *W, num_heads=2), expected, what=what)


HEADS = [pytest.param(h, id=f"H{h}") for h in (1, 2, 4, 8)]


@pytest.mark.problem("multi_head_attention")
@pytest.mark.isolate("attention", *MH_PARTS)
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("case", MH_CASES)
def test_multi_head_attention_matches_reference(student, reference, case, dtype):
    """matches the reference on random inputs"""
    _check_mh_matches(student, reference, "multi_head_attention", case, dtype)


@pytest.mark.problem("multi_head_attention")
@pytest.mark.isolate("attention", *MH_PARTS)
def test_multi_head_attention_default_heads(student, reference):
    """uses 4 heads when num_heads is left out"""
    _check_mh_default_heads(student, reference, "multi_head_attention", seed=110)


@pytest.mark.problem("multi_head_attention")
@pytest.mark.isolate("attention", *MH_PARTS)
@pytest.mark.parametrize("H", HEADS)
def test_multi_head_attention_head_counts(student, reference, H):
    """matches the reference for head counts from 1 to d (heads of width d // H)"""
    _check_mh_heads(student, reference, "multi_head_attention", H, seed=120)


@pytest.mark.problem("multi_head_attention")
@pytest.mark.isolate("attention", *MH_PARTS)
def test_multi_head_attention_single_token(student):
    """a single token attends only to itself in every head: the output is S W_V W_O"""
    S, (W_Q, W_K, W_V, W_O) = _mh_inputs(3, 1, 8, 130, F64)
    out = student.attention.multi_head_attention(S, W_Q, W_K, W_V, W_O, num_heads=2)
    assert_close(out, S @ W_V @ W_O, what="multi_head_attention(S, W_Q, W_K, W_V, W_O, num_heads=2) with T=1")


@pytest.mark.problem("multi_head_attention")
@pytest.mark.isolate("attention", *MH_PARTS)
def test_multi_head_attention_batch_independent(student, reference):
    """each batch row computed alone equals its row of the batched result"""
    _check_mh_batch_independent(student, reference, "multi_head_attention", seed=140)


@pytest.mark.problem("multi_head_attention")
@pytest.mark.isolate("attention", *MH_PARTS)
def test_multi_head_attention_does_not_modify_inputs(student, reference):
    """returns the reference's value and leaves S, W_Q, W_K, W_V and W_O unchanged"""
    _check_mh_inputs_unchanged(student, reference, "multi_head_attention", seed=145)


@pytest.mark.problem("multi_head_attention")
@pytest.mark.isolate("attention", *MH_PARTS)
def test_multi_head_attention_bfloat16(student, reference):
    """works in bfloat16: close to the reference computed in float32 on the same inputs"""
    _check_mh_bfloat16(student, reference, "multi_head_attention", seed=150)


@pytest.mark.problem("multi_head_attention")
@pytest.mark.isolate("attention", *MH_PARTS)
def test_multi_head_attention_meta_device(student, reference):
    """runs on the meta device: the output is on the inputs' device, with their dtype"""
    _check_mh_meta(student, reference, "multi_head_attention", seed=160)


# ---------------------------------------------------------------------------------------------
# causal_mask (no dtype to vary: the mask is boolean whatever the model's dtype, so no bfloat16)
# ---------------------------------------------------------------------------------------------


def _mask_values(student, T: int, what: str, **kwargs) -> torch.Tensor:
    """causal_mask(T, **kwargs) as a (T, T) tensor; its dtype is graded separately (test_causal_mask_is_bool)."""
    return expect_tensor(student.attention.causal_mask(T, **kwargs), what=what, shape=(T, T))


def _lower_triangle(T: int, dtype=torch.bool) -> torch.Tensor:
    return torch.tensor([[j <= i for j in range(T)] for i in range(T)], dtype=torch.bool).to(dtype)


@pytest.mark.problem("causal_mask")
@pytest.mark.parametrize("T", [pytest.param(t, id=f"T{t}") for t in (1, 2, 5, 8)])
def test_causal_mask_values(student, reference, T):
    """is True exactly where key j <= query i"""
    mask = _mask_values(student, T, f"causal_mask({T})")
    expected = reference.attention.causal_mask(T).to(mask.dtype)
    assert_equal(expected, _lower_triangle(T, mask.dtype), what="the reference causal_mask (grader self-check)")
    assert_equal(mask, expected, what=f"causal_mask({T})")


@pytest.mark.problem("causal_mask")
def test_causal_mask_is_bool(student):
    """returns a torch.bool tensor (not 0/1 numbers), on the CPU when no device is given"""
    mask = _mask_values(student, 6, "causal_mask(6)")
    assert_equal(mask.to(torch.bool), _lower_triangle(6), what="causal_mask(6)")
    expect(mask.dtype == torch.bool,
           f"causal_mask(6) should return a torch.bool tensor, but its dtype is {mask.dtype}.")
    expect(mask.device.type == "cpu",
           f"causal_mask(6) with no device given should be on the CPU, not on {mask.device}.")


@pytest.mark.problem("causal_mask")
@pytest.mark.parametrize("device", [pytest.param("meta", id="str"), pytest.param(torch.device("meta"), id="device")])
def test_causal_mask_on_meta(student, device):
    """causal_mask(T, device=...) creates the mask on the requested device"""
    what = f"causal_mask(5, device={device!r})"
    assert_equal(_mask_values(student, 5, "causal_mask(5)"), _lower_triangle(5), what="causal_mask(5) on the CPU")
    with strict_device("meta"):
        mask = _mask_values(student, 5, what, device=device)
    expect(mask.device.type == "meta",
           f"{what} is on device {mask.device}: the mask must be created on the device passed as `device`.")


@pytest.mark.problem("causal_mask")
def test_causal_mask_explicit_cpu(student):
    """causal_mask(T, device="cpu") is the lower triangle, on the CPU"""
    mask = _mask_values(student, 7, "causal_mask(7, device='cpu')", device="cpu")
    assert_equal(mask, _lower_triangle(7, mask.dtype), what="causal_mask(7, device='cpu')")


# ---------------------------------------------------------------------------------------------
# causal_multi_head_attention
# ---------------------------------------------------------------------------------------------


@pytest.mark.problem("causal_multi_head_attention")
@pytest.mark.isolate("attention", *CAUSAL_MH_PARTS)
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("case", MH_CASES)
def test_causal_multi_head_attention_matches_reference(student, reference, case, dtype):
    """matches the reference on random inputs"""
    _check_mh_matches(student, reference, "causal_multi_head_attention", case, dtype)


@pytest.mark.problem("causal_multi_head_attention")
@pytest.mark.isolate("attention", *CAUSAL_MH_PARTS)
def test_causal_multi_head_attention_default_heads(student, reference):
    """uses 4 heads when num_heads is left out"""
    _check_mh_default_heads(student, reference, "causal_multi_head_attention", seed=210)


@pytest.mark.problem("causal_multi_head_attention")
@pytest.mark.isolate("attention", *CAUSAL_MH_PARTS)
@pytest.mark.parametrize("H", HEADS)
def test_causal_multi_head_attention_head_counts(student, reference, H):
    """matches the reference for head counts from 1 to d (heads of width d // H)"""
    _check_mh_heads(student, reference, "causal_multi_head_attention", H, seed=220)


@pytest.mark.problem("causal_multi_head_attention")
@pytest.mark.isolate("attention", *CAUSAL_MH_PARTS)
@pytest.mark.parametrize("H", [pytest.param(1, id="H1"), pytest.param(4, id="H4")])
def test_causal_multi_head_attention_ignores_future(student, reference, H):
    """changing the tokens after position t leaves outputs up to t unchanged and changes the later ones"""
    B, T, d = 2, 6, 8
    S, W = _mh_inputs(B, T, d, 230 + H, F64)
    fn = student.attention.causal_multi_head_attention
    base = fn(S, *W, num_heads=H)
    assert_close(base, reference.attention.causal_multi_head_attention(S, *W, num_heads=H),
                 what=f"causal_multi_head_attention(S, ..., num_heads={H})")
    for t in range(T - 1):
        S2 = S.clone()
        S2[:, t + 1:] = randn(B, T - t - 1, d, seed=240 + t, dtype=F64)
        out = expect_tensor(fn(S2, *W, num_heads=H), what=f"causal_multi_head_attention(S, ..., num_heads={H})",
                            shape=(B, T, d))
        where = "position 0" if t == 0 else f"positions 0..{t}"
        assert_close(out[:, :t + 1], base[:, :t + 1],
                     what=f"causal_multi_head_attention(S, ..., num_heads={H}) at {where} after changing the tokens "
                          f"after position {t} (a query may not see later keys)")
        changed = (out[:, t + 1:] - base[:, t + 1:]).abs().amax(dim=-1) > 1e-8  # (B, T - t - 1)
        expect(bool(changed.all()),
               f"causal_multi_head_attention(S, ..., num_heads={H}): after changing the tokens after position {t}, "
               f"the outputs at some later positions did not change, though each position sees its own token.")


@pytest.mark.problem("causal_multi_head_attention")
@pytest.mark.isolate("attention", *CAUSAL_MH_PARTS)
def test_causal_multi_head_attention_prefix(student, reference):
    """running on the first t tokens gives the first t outputs of the whole sequence"""
    S, W = _mh_inputs(2, 7, 8, 250, F64)
    fn = student.attention.causal_multi_head_attention
    full = fn(S, *W, num_heads=2)
    assert_close(full, reference.attention.causal_multi_head_attention(S, *W, num_heads=2),
                 what="causal_multi_head_attention(S, ..., num_heads=2)")
    for t in (1, 3, 6):
        assert_close(fn(S[:, :t], *W, num_heads=2), full[:, :t],
                     what=f"causal_multi_head_attention(S[:, :{t}], ..., num_heads=2) compared with positions "
                          f"0..{t - 1} of causal_multi_head_attention(S, ...)")


@pytest.mark.problem("causal_multi_head_attention")
@pytest.mark.isolate("attention", *CAUSAL_MH_PARTS)
def test_causal_multi_head_attention_batch_independent(student, reference):
    """each batch row computed alone equals its row of the batched result"""
    _check_mh_batch_independent(student, reference, "causal_multi_head_attention", seed=260)


@pytest.mark.problem("causal_multi_head_attention")
@pytest.mark.isolate("attention", *CAUSAL_MH_PARTS)
def test_causal_multi_head_attention_does_not_modify_inputs(student, reference):
    """returns the reference's value and leaves S, W_Q, W_K, W_V and W_O unchanged"""
    _check_mh_inputs_unchanged(student, reference, "causal_multi_head_attention", seed=265)


@pytest.mark.problem("causal_multi_head_attention")
@pytest.mark.isolate("attention", *CAUSAL_MH_PARTS)
def test_causal_multi_head_attention_bfloat16(student, reference):
    """works in bfloat16: close to the reference computed in float32 on the same inputs"""
    _check_mh_bfloat16(student, reference, "causal_multi_head_attention", seed=270)


@pytest.mark.problem("causal_multi_head_attention")
@pytest.mark.isolate("attention", *CAUSAL_MH_PARTS)
def test_causal_multi_head_attention_meta_device(student, reference):
    """runs on the meta device: the mask and the output follow the inputs' device"""
    _check_mh_meta(student, reference, "causal_multi_head_attention", seed=280)


# ---------------------------------------------------------------------------------------------
# scaled_dot_product_attention
# ---------------------------------------------------------------------------------------------

SDPA_CASES = [  # (B, H, T_q, T_k, dk, dv, seed)
    pytest.param((2, 2, 3, 5, 4, 6, 301), id="Tq3-Tk5-dk4-dv6"),
    pytest.param((3, 1, 6, 4, 8, 2, 302), id="Tq6-Tk4-dk8-dv2"),
    pytest.param((2, 4, 8, 8, 2, 5, 303), id="Tq8-Tk8-dk2-dv5"),
]


def _qkv(lead, T_q, T_k, dk, dv, *, seed, dtype=torch.float32):
    return (randn(*lead, T_q, dk, seed=seed, dtype=dtype), randn(*lead, T_k, dk, seed=seed + 1, dtype=dtype),
            randn(*lead, T_k, dv, seed=seed + 2, dtype=dtype))


def _check_sdpa(student, reference, Q, K, V, mask, *, what: str, copy_for_reference: bool = False):
    inputs = [Q, K, V, mask]
    if copy_for_reference:  # the reference gets copies: the student's call alone may change the originals
        inputs = [None if t is None else t.clone() for t in inputs]
    expected_out, expected_w = reference.attention.scaled_dot_product_attention(*inputs)
    out, weights = _pair(student.attention.scaled_dot_product_attention(Q, K, V, mask), what)
    assert_close(weights, expected_w, what=f"weights of {what}")
    assert_close(out, expected_out, what=f"output of {what}")


@pytest.mark.problem("scaled_dot_product_attention")
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("case", SDPA_CASES)
def test_sdpa_matches_reference(student, reference, case, dtype):
    """matches the reference without a mask, with T_q != T_k and dv != dk"""
    B, H, T_q, T_k, dk, dv, seed = case
    Q, K, V = _qkv((B, H), T_q, T_k, dk, dv, seed=seed, dtype=dtype)
    _check_sdpa(student, reference, Q, K, V, None,
                what=f"scaled_dot_product_attention(Q, K, V) in {_dt(dtype)}")


@pytest.mark.problem("scaled_dot_product_attention")
@pytest.mark.parametrize("lead", [pytest.param((3,), id="3d"), pytest.param((2, 2, 2), id="5d")])
def test_sdpa_leading_dims(student, reference, lead):
    """works for inputs with any leading dims: 3-D (B, T, dk) without a head dim, and 5-D"""
    Q, K, V = _qkv(lead, 4, 6, 3, 5, seed=310 + len(lead), dtype=F64)
    _check_sdpa(student, reference, Q, K, V, None, what=f"scaled_dot_product_attention(Q, K, V), {Q.dim()}-D inputs")
    mask = _random_mask(*lead, 1, 6, seed=315, dtype=torch.int64)
    _check_sdpa(student, reference, Q, K, V, mask,
                what=f"scaled_dot_product_attention(Q, K, V, mask), {Q.dim()}-D inputs, int mask {list(mask.shape)}")


@pytest.mark.problem("scaled_dot_product_attention")
@pytest.mark.parametrize("mask_dtype", [pytest.param(d, id=_dt(d)) for d in (torch.bool, torch.int64, torch.int32)])
def test_sdpa_padding_mask(student, reference, mask_dtype):
    """a (B, 1, 1, T_k) padding mask of 0/1 ints or bools hides the padded keys"""
    Q, K, V = _qkv((3, 2), 5, 7, 4, 3, seed=320, dtype=F64)
    mask = _padding_mask(3, 7, seed=321, dtype=mask_dtype)
    _check_sdpa(student, reference, Q, K, V, mask,
                what=f"scaled_dot_product_attention(Q, K, V, mask) with a {_dt(mask_dtype)} padding mask "
                     "(B, 1, 1, T_k)")


MASK_SHAPES = [  # (shape of the mask, its dtype)
    pytest.param(((5, 6), torch.bool), id="Tq-Tk-bool"),
    pytest.param(((2, 1, 5, 6), torch.int64), id="B-1-Tq-Tk-int"),
    pytest.param(((2, 3, 5, 6), torch.bool), id="B-H-Tq-Tk-bool"),
]


@pytest.mark.problem("scaled_dot_product_attention")
@pytest.mark.parametrize("mask_spec", MASK_SHAPES)
def test_sdpa_mask_broadcast(student, reference, mask_spec):
    """a random mask broadcast from (T_q, T_k), (B, 1, T_q, T_k) or (B, H, T_q, T_k)"""
    shape, mask_dtype = mask_spec
    Q, K, V = _qkv((2, 3), 5, 6, 4, 4, seed=330 + len(shape))
    mask = _random_mask(*shape, seed=335 + len(shape), dtype=mask_dtype)
    _check_sdpa(student, reference, Q, K, V, mask,
                what=f"scaled_dot_product_attention(Q, K, V, mask) with a {_dt(mask_dtype)} mask {list(shape)}")


@pytest.mark.problem("scaled_dot_product_attention")
def test_sdpa_weights_are_distributions(student, reference):
    """weights are >= 0, sum to 1 over the keys, and are 0 on masked keys"""
    Q, K, V = _qkv((2, 2), 6, 5, 4, 3, seed=340, dtype=F64)
    mask = _random_mask(2, 2, 6, 5, seed=341)
    what = "scaled_dot_product_attention(Q, K, V, mask)"
    _check_sdpa(student, reference, Q, K, V, mask, what=what)
    _, weights = _pair(student.attention.scaled_dot_product_attention(Q, K, V, mask), what)
    weights = expect_tensor(weights, what=f"weights of {what}", shape=(2, 2, 6, 5), dtype=F64)
    expect(bool((weights >= 0).all()), f"weights of {what} should never be negative.")
    assert_close(weights.sum(dim=-1), torch.ones(2, 2, 6, dtype=F64), what=f"weights of {what} summed over the keys",
                 atol=1e-9)
    assert_close(weights * ~mask, torch.zeros(2, 2, 6, 5, dtype=F64), what=f"weights of {what} on masked keys",
                 atol=1e-9)


@pytest.mark.problem("scaled_dot_product_attention")
def test_sdpa_batch_independent(student, reference):
    """each batch row computed alone equals its row of the batched result"""
    Q, K, V = _qkv((3, 2), 4, 5, 4, 3, seed=350, dtype=F64)
    mask = _padding_mask(3, 5, seed=351)
    what = "scaled_dot_product_attention(Q, K, V, mask)"
    _check_sdpa(student, reference, Q, K, V, mask, what=what)
    out, weights = _pair(student.attention.scaled_dot_product_attention(Q, K, V, mask), what)
    out = expect_tensor(out, what=f"output of {what}", shape=(3, 2, 4, 3))
    weights = expect_tensor(weights, what=f"weights of {what}", shape=(3, 2, 4, 5))
    for b in range(3):
        s = slice(b, b + 1)
        what_b = f"scaled_dot_product_attention(Q[{b}:{b + 1}], K[{b}:{b + 1}], V[{b}:{b + 1}], mask[{b}:{b + 1}])"
        out_b, weights_b = _pair(student.attention.scaled_dot_product_attention(Q[s], K[s], V[s], mask[s]), what_b)
        assert_close(out_b, out[s], what=f"output of {what_b} compared with row {b} of the batched output")
        assert_close(weights_b, weights[s], what=f"weights of {what_b} compared with row {b} of the batched weights")


@pytest.mark.problem("scaled_dot_product_attention")
def test_sdpa_does_not_modify_inputs(student, reference):
    """returns the reference's values and leaves Q, K, V and the mask unchanged"""
    Q, K, V = _qkv((2, 2), 4, 5, 4, 3, seed=360)
    mask = _padding_mask(2, 5, seed=361, dtype=torch.int64)
    copies = [t.clone() for t in (Q, K, V, mask)]
    _check_sdpa(student, reference, Q, K, V, mask, what="scaled_dot_product_attention(Q, K, V, mask)",
                copy_for_reference=True)
    for name, t, c in zip(("Q", "K", "V", "mask"), (Q, K, V, mask), copies):
        assert_equal(t, c,
                     what=f"{name} after scaled_dot_product_attention(Q, K, V, mask) (inputs must not be changed)")


@pytest.mark.problem("scaled_dot_product_attention")
def test_sdpa_bfloat16(student, reference):
    """works in bfloat16 with a mask: close to the reference computed in float32 on the same inputs"""
    Q, K, V = _qkv((2, 2), 5, 7, 4, 6, seed=370, dtype=torch.bfloat16)
    mask = _padding_mask(2, 7, seed=371)
    expected_out, expected_w = reference.attention.scaled_dot_product_attention(Q.float(), K.float(), V.float(), mask)
    what = "scaled_dot_product_attention(Q, K, V, mask) in bfloat16"
    out, weights = _pair(student.attention.scaled_dot_product_attention(Q, K, V, mask), what)
    _assert_close_bf16(weights, expected_w, what=f"weights of {what}")
    _assert_close_bf16(out, expected_out, what=f"output of {what}")


@pytest.mark.problem("scaled_dot_product_attention")
def test_sdpa_meta_device(student, reference):
    """equals the reference on the CPU; on the meta device, with and without a mask, outputs follow the inputs' device and dtype"""
    Q, K, V, mask = *_qkv((2, 2), 5, 7, 4, 6, seed=380), _padding_mask(2, 7, seed=381)
    _check_sdpa(student, reference, Q, K, V, mask, what="scaled_dot_product_attention(Q, K, V, mask) on the CPU")
    Q, K, V, mask = _meta(Q, K, V, mask)
    for m in (None, mask):
        what = f"scaled_dot_product_attention(Q, K, V{'' if m is None else ', mask'}) on the meta device"
        with strict_device("meta"):
            out, weights = _pair(student.attention.scaled_dot_product_attention(Q, K, V, m), what)
        expect_tensor(out, what=f"output of {what}", shape=(2, 2, 5, 6), dtype=torch.float32, device="meta")
        expect_tensor(weights, what=f"weights of {what}", shape=(2, 2, 5, 7), dtype=torch.float32, device="meta")


# ---------------------------------------------------------------------------------------------
# MultiHeadAttention
# ---------------------------------------------------------------------------------------------


def _mha_pair(student, reference, E: int, H: int, seed: int, dtype=torch.float32):
    """(student module, reference module) holding the same seeded weights, in eval mode and `dtype`.

    Weights have std 1/sqrt(E) so that scores stay of order 1 (see the module docstring).
    """
    ref = randomize_(reference.attention.MultiHeadAttention(E, H).to(dtype), seed, scale=E ** -0.5).eval()
    mine = student.attention.MultiHeadAttention(E, H).to(dtype).eval()
    copy_parameters(mine, ref, what=f"MultiHeadAttention({E}, {H})")
    return mine, ref


def _check_mha(mine, ref, x, mask, *, what: str):
    with torch.no_grad():
        expected_ctx, expected_w = ref(x, mask)
        ctx, weights = _pair(call(mine, x, mask, name="MultiHeadAttention.forward"), what)
    assert_close(weights, expected_w, what=f"weights of {what}")
    assert_close(ctx, expected_ctx, what=f"context of {what}")


MHA_CASES = [  # (E, H, B, T, seed)
    pytest.param((16, 4, 2, 5, 401), id="E16-H4-B2-T5"),
    pytest.param((12, 3, 3, 7, 402), id="E12-H3-B3-T7"),
    pytest.param((8, 1, 2, 8, 403), id="E8-H1-B2-T8"),
]


@pytest.mark.problem("MultiHeadAttention")
@pytest.mark.isolate("attention", "scaled_dot_product_attention")
def test_mha_parameters(student, reference):
    """has exactly the parameters W_q, W_k, W_v, W_o (weight and bias) with the contract's shapes"""
    mine, ref = _mha_pair(student, reference, 12, 3, seed=410)
    _check_mha(mine, ref, randn(2, 4, 12, seed=411), None, what="MultiHeadAttention(12, 3)(x)")
    mine = student.attention.MultiHeadAttention(12, 3)
    for name in ("W_q", "W_k", "W_v", "W_o"):
        expect(isinstance(getattr(mine, name, None), torch.nn.Linear),
               f"MultiHeadAttention(12, 3).{name} should be an nn.Linear(12, 12).")


@pytest.mark.problem("MultiHeadAttention")
@pytest.mark.isolate("attention", "scaled_dot_product_attention")
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("case", MHA_CASES)
def test_mha_matches_reference(student, reference, case, dtype):
    """context and weights match the reference without a mask"""
    E, H, B, T, seed = case
    mine, ref = _mha_pair(student, reference, E, H, seed, dtype)
    x = randn(B, T, E, seed=seed + 1, dtype=dtype)
    _check_mha(mine, ref, x, None, what=f"MultiHeadAttention({E}, {H})(x) in {_dt(dtype)}")


MHA_MASKS = [
    pytest.param("padding-bool", id="padding-bool"),
    pytest.param("padding-int", id="padding-int"),
    pytest.param("causal", id="causal"),
]


@pytest.mark.problem("MultiHeadAttention")
@pytest.mark.isolate("attention", "scaled_dot_product_attention")
@pytest.mark.parametrize("kind", MHA_MASKS)
def test_mha_with_mask(student, reference, kind):
    """context and weights match the reference with a (B, 1, 1, T) padding mask or a (T, T) causal mask"""
    E, H, B, T, seed = 16, 4, 3, 6, 420
    mine, ref = _mha_pair(student, reference, E, H, seed, F64)
    x = randn(B, T, E, seed=seed + 1, dtype=F64)
    if kind == "causal":
        mask, desc = torch.ones(T, T, dtype=torch.bool).tril(), "a bool causal mask (T, T)"
    else:
        dtype = torch.bool if kind == "padding-bool" else torch.int64
        mask, desc = _padding_mask(B, T, seed=seed + 2, dtype=dtype), f"a {_dt(dtype)} padding mask (B, 1, 1, T)"
    _check_mha(mine, ref, x, mask, what=f"MultiHeadAttention({E}, {H})(x, mask) with {desc}")


@pytest.mark.problem("MultiHeadAttention")
@pytest.mark.isolate("attention", "scaled_dot_product_attention")
@pytest.mark.parametrize("H", HEADS)
def test_mha_head_counts(student, reference, H):
    """matches the reference for head counts from 1 to embed_dim, with a padding mask"""
    mine, ref = _mha_pair(student, reference, 8, H, 430 + H, F64)
    x = randn(2, 5, 8, seed=435 + H, dtype=F64)
    _check_mha(mine, ref, x, _padding_mask(2, 5, seed=439), what=f"MultiHeadAttention(8, {H})(x, mask)")


@pytest.mark.problem("MultiHeadAttention")
@pytest.mark.isolate("attention", "scaled_dot_product_attention")
def test_mha_rejects_indivisible_embed_dim(student, reference):
    """raises ValueError or AssertionError at construction when embed_dim % num_heads != 0 (and works when it is)"""
    cls = student.attention.MultiHeadAttention  # a missing class fails here, with its own message
    mine, ref = _mha_pair(student, reference, 12, 4, seed=415)
    _check_mha(mine, ref, randn(2, 3, 12, seed=416), None, what="MultiHeadAttention(12, 4)(x)")
    for E, H in ((10, 4), (16, 3)):
        try:
            cls(E, H)
        except (ValueError, AssertionError):
            continue
        except Exception as exc:  # noqa: BLE001 - the student's exception is shown with its traceback
            fail(f"MultiHeadAttention({E}, {H}) should raise ValueError or AssertionError "
                 f"({E} is not divisible by {H}), but it raised {type(exc).__name__}.")
        fail(f"MultiHeadAttention({E}, {H}) should raise ValueError or AssertionError when it is built "
             f"({E} is not divisible by {H}), but it raised nothing.")


@pytest.mark.problem("MultiHeadAttention")
@pytest.mark.isolate("attention", "scaled_dot_product_attention")
def test_mha_weights_are_distributions(student, reference):
    """weights are >= 0, sum to 1 over the keys, and are 0 on padded keys"""
    mine, ref = _mha_pair(student, reference, 8, 2, 440, F64)
    x = randn(3, 6, 8, seed=441, dtype=F64)
    mask = _padding_mask(3, 6, seed=442)
    what = "MultiHeadAttention(8, 2)(x, mask)"
    _check_mha(mine, ref, x, mask, what=what)
    with torch.no_grad():
        _, weights = _pair(call(mine, x, mask, name="MultiHeadAttention.forward"), what)
    weights = expect_tensor(weights, what=f"weights of {what}", shape=(3, 2, 6, 6), dtype=F64)
    expect(bool((weights >= 0).all()), f"weights of {what} should never be negative.")
    assert_close(weights.sum(dim=-1), torch.ones(3, 2, 6, dtype=F64), what=f"weights of {what} summed over the keys",
                 atol=1e-9)
    assert_close(weights * ~mask, torch.zeros(3, 2, 6, 6, dtype=F64), what=f"weights of {what} on padded keys",
                 atol=1e-9)


@pytest.mark.problem("MultiHeadAttention")
@pytest.mark.isolate("attention", "scaled_dot_product_attention")
def test_mha_batch_independent(student, reference):
    """each batch row computed alone equals its row of the batched result"""
    mine, ref = _mha_pair(student, reference, 8, 2, 450, F64)
    x = randn(3, 5, 8, seed=451, dtype=F64)
    mask = _padding_mask(3, 5, seed=452)
    what = "MultiHeadAttention(8, 2)(x, mask)"
    _check_mha(mine, ref, x, mask, what=what)
    with torch.no_grad():
        ctx, weights = _pair(call(mine, x, mask, name="MultiHeadAttention.forward"), what)
        ctx = expect_tensor(ctx, what=f"context of {what}", shape=(3, 5, 8))
        weights = expect_tensor(weights, what=f"weights of {what}", shape=(3, 2, 5, 5))
        for b in range(3):
            s = slice(b, b + 1)
            what_b = f"MultiHeadAttention(8, 2)(x[{b}:{b + 1}], mask[{b}:{b + 1}])"
            ctx_b, weights_b = _pair(call(mine, x[s], mask[s], name="MultiHeadAttention.forward"), what_b)
            assert_close(ctx_b, ctx[s], what=f"context of {what_b} compared with row {b} of the batched context")
            assert_close(weights_b, weights[s],
                         what=f"weights of {what_b} compared with row {b} of the batched weights")


@pytest.mark.problem("MultiHeadAttention")
@pytest.mark.isolate("attention", "scaled_dot_product_attention")
def test_mha_does_not_modify_inputs(student, reference):
    """returns the reference's context and weights and leaves x and the mask unchanged"""
    mine, ref = _mha_pair(student, reference, 8, 2, 455)
    x, mask = randn(3, 5, 8, seed=456), _padding_mask(3, 5, seed=457, dtype=torch.int64)
    what = "MultiHeadAttention(8, 2)(x, mask)"
    with torch.no_grad():
        expected_ctx, expected_w = ref(x.clone(), mask.clone())
    with leaves_unchanged(what, x=x, mask=mask), torch.no_grad():
        ctx, weights = _pair(call(mine, x, mask, name="MultiHeadAttention.forward"), what)
        assert_close(weights, expected_w, what=f"weights of {what}")
        assert_close(ctx, expected_ctx, what=f"context of {what}")


@pytest.mark.problem("MultiHeadAttention")
@pytest.mark.isolate("attention", "scaled_dot_product_attention")
def test_mha_bfloat16(student, reference):
    """works in bfloat16 with a mask: close to the reference computed in float32 on the same weights"""
    E, H, B, T, seed = 16, 4, 2, 7, 460
    # the reference keeps float32 weights equal to the bfloat16-rounded ones the student module gets
    ref = randomize_(reference.attention.MultiHeadAttention(E, H), seed, scale=E ** -0.5).to(torch.bfloat16)
    mine = student.attention.MultiHeadAttention(E, H).to(torch.bfloat16).eval()
    copy_parameters(mine, ref, what=f"MultiHeadAttention({E}, {H})")
    ref = ref.float().eval()
    x = randn(B, T, E, seed=seed + 1, dtype=torch.bfloat16)
    mask = _padding_mask(B, T, seed=seed + 2)
    what = f"MultiHeadAttention({E}, {H})(x, mask) in bfloat16"
    with torch.no_grad():
        expected_ctx, expected_w = ref(x.float(), mask)
        ctx, weights = _pair(call(mine, x, mask, name="MultiHeadAttention.forward"), what)
    _assert_close_bf16(weights, expected_w, what=f"weights of {what}")
    _assert_close_bf16(ctx, expected_ctx, what=f"context of {what}")


@pytest.mark.problem("MultiHeadAttention")
@pytest.mark.isolate("attention", "scaled_dot_product_attention")
def test_mha_meta_device(student, reference):
    """equals the reference on the CPU, and runs on the meta device (module moved with .to("meta")), with and without a mask"""
    mine, ref = _mha_pair(student, reference, 16, 4, 472)
    x, mask = randn(2, 5, 16, seed=470), _padding_mask(2, 5, seed=471)
    _check_mha(mine, ref, x, mask, what="MultiHeadAttention(16, 4)(x, mask) on the CPU")
    mine = mine.to("meta")
    x, mask = _meta(x, mask)
    for m in (None, mask):
        what = f"MultiHeadAttention(16, 4)(x{'' if m is None else ', mask'}) on the meta device"
        with torch.no_grad(), strict_device("meta"):
            ctx, weights = _pair(call(mine, x, m, name="MultiHeadAttention.forward"), what)
        expect_tensor(ctx, what=f"context of {what}", shape=(2, 5, 16), dtype=torch.float32, device="meta")
        expect_tensor(weights, what=f"weights of {what}", shape=(2, 4, 5, 5), dtype=torch.float32, device="meta")
