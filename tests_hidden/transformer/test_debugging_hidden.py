"""Hidden tests for debugging.py: attach_attention_hook and FixedTransformerEncoderLayer.

The hook is graded on the CPU with grader-provided modules (the reference MultiHeadAttention
and the given BuggyTransformerEncoderLayer). The fixed layer is compared with the reference
after loading the same (randomized) weights by name, and its residual paths are checked by
the gradients they let through.
"""
import pytest
import torch
import torch.nn as nn

from autograder.kit.adapter import SubmissionError, call, describe
from autograder.kit.checks import assert_close, expect, expect_tensor, fail
from autograder.kit.inplace import leaves_unchanged
from autograder.kit.torchkit import check_structure, copy_parameters, randn, randomize_

DTYPES = [pytest.param(torch.float32, id="float32"), pytest.param(torch.float64, id="float64")]


# ---------------------------------------------------------------------------------------------
# helpers (private to this file)

def _sig(name, args):
    return f"{name}({', '.join(repr(a) for a in args)})"


def _attr(module, owner, attr):
    value = getattr(module, attr, None)
    expect(value is not None, f"{owner} has no attribute `{attr}`, which the contract names.")
    return value


def _reference_mha(reference, seed, embed_dim=8, num_heads=2, dtype=torch.float64):
    return randomize_(reference.attention.MultiHeadAttention(embed_dim, num_heads), seed).to(dtype).eval()


def _attach(student, module, storage):
    handle = student.debugging.attach_attention_hook(module, storage)
    expect(hasattr(handle, "remove"),
           f"attach_attention_hook(module, storage) should return the hook's handle (with .remove()), "
           f"but it returned {describe(handle)}.")
    return handle


def _padding_mask(lengths, T):
    """(B, 1, 1, T) mask: 1 for the first `length` keys of each row, 0 for padding."""
    return (torch.arange(T)[None, :] < torch.tensor(lengths)[:, None]).to(torch.long).view(len(lengths), 1, 1, T)


def _two_outputs(result, what):
    expect(isinstance(result, tuple) and len(result) == 2,
           f"{what} should return a tuple (output, weights), but it returned {describe(result)}.")
    return result


HOOK = "attach_attention_hook(mha, storage)"


def _check_stored(stored, weights, *, what):
    """`stored` is the weights the module returned, on the CPU. A tensor of another shape is
    compared too, so that the failure can name the likely mistake (the output stored instead)."""
    if isinstance(stored, torch.Tensor) and tuple(stored.shape) != tuple(weights.shape):
        fail(f"{what} has shape {list(stored.shape)}, expected {list(weights.shape)} (the shape of the weights).",
             got=stored.detach(), expected=weights.detach())
    expect_tensor(stored, what=what, shape=weights.shape, dtype=weights.dtype, device="cpu")
    assert_close(stored, weights, what=f"{what} (the weights the module returned)")


def _hooked(module, *args):
    """Call a grader-provided module with the student's hook attached (recorded for failure messages)."""
    name = f"{type(module).__name__}.forward with your hook attached"
    return _two_outputs(call(module, *args, name=name), name)


# ---------------------------------------------------------------------------------------------
# attach_attention_hook

@pytest.mark.problem("attach_attention_hook")
def test_hook_stores_weights(student, reference):
    """one forward call appends exactly one tensor to storage: the attention weights, on the CPU"""
    mha = _reference_mha(reference, seed=1)
    x = randn(2, 4, 8, seed=2, dtype=torch.float64)
    storage = []
    _attach(student, mha, storage)
    _, weights = _hooked(mha, x)
    expect(len(storage) == 1, f"After {HOOK} and one forward call, storage holds {len(storage)} entries instead of 1.")
    _check_stored(storage[0], weights, what=f"storage[0] after {HOOK} and mha(x)")


@pytest.mark.problem("attach_attention_hook")
def test_hook_stores_detached(student, reference):
    """the stored weights are detached: no grad, no graph, even when the input requires grad"""
    mha = _reference_mha(reference, seed=3)
    x = randn(2, 3, 8, seed=4, dtype=torch.float64).requires_grad_()
    storage = []
    _attach(student, mha, storage)
    _, weights = _hooked(mha, x)
    expect(len(storage) == 1, f"After {HOOK} and one forward call, storage holds {len(storage)} entries instead of 1.")
    _check_stored(storage[0], weights.detach(), what=f"storage[0] after {HOOK} and mha(x)")
    stored = storage[0]
    expect(isinstance(stored, torch.Tensor), f"storage[0] should be a tensor, but it is {describe(stored)}.")
    expect(not stored.requires_grad and stored.grad_fn is None,
           f"storage[0] after {HOOK} and mha(x) with x.requires_grad=True still belongs to the autograd graph; "
           "store weights.detach().cpu().")


@pytest.mark.problem("attach_attention_hook")
def test_hook_keeps_outputs(student, reference):
    """the hook does not change what the module returns: same values, and gradients still flow"""
    mha = _reference_mha(reference, seed=5)
    x = randn(2, 4, 8, seed=6, dtype=torch.float64)
    r_ctx, r_w = randn(2, 4, 8, seed=7, dtype=torch.float64), randn(2, 2, 4, 4, seed=8, dtype=torch.float64)

    def run(forward):
        xg = x.clone().requires_grad_()
        result = forward(xg)
        return result, xg

    (ctx0, w0), x0 = run(mha)
    ((ctx0 * r_ctx).sum() + (w0 * r_w).sum()).backward()
    storage = []
    _attach(student, mha, storage)
    result, x1 = run(lambda x: _hooked(mha, x))
    what = f"mha(x) after {HOOK}"
    ctx1, w1 = _two_outputs(result, what)
    expect(len(storage) == 1, f"After {HOOK} and one forward call, storage holds {len(storage)} entries instead of 1.")
    _check_stored(storage[0], w0.detach(), what=f"storage[0] after {HOOK} and mha(x)")
    assert_close(ctx1, ctx0.detach(), what=f"the context returned by {what}")
    assert_close(w1, w0.detach(), what=f"the weights returned by {what}")
    expect(ctx1.requires_grad and w1.requires_grad,
           f"{what} returned outputs cut from the autograd graph: the hook must not change the module's outputs "
           "(return nothing from it).")
    ((ctx1 * r_ctx).sum() + (w1 * r_w).sum()).backward()
    assert_close(x1.grad, x0.grad, what=f"the gradient of x through {what}")


@pytest.mark.problem("attach_attention_hook")
def test_hook_remove_stops_capture(student, reference):
    """the returned handle's remove() stops the capture"""
    mha = _reference_mha(reference, seed=9)
    x = randn(2, 3, 8, seed=10, dtype=torch.float64)
    storage = []
    handle = _attach(student, mha, storage)
    _, weights = _hooked(mha, x)
    expect(len(storage) == 1, f"After {HOOK} and one forward call, storage holds {len(storage)} entries instead of 1.")
    _check_stored(storage[0], weights, what=f"storage[0] after {HOOK} and mha(x)")
    handle.remove()
    _hooked(mha, x)
    _hooked(mha, x)
    expect(len(storage) == 1, f"After {HOOK}, one forward call, handle.remove() and two more forward calls, "
                              f"storage holds {len(storage)} entries instead of 1.")


@pytest.mark.problem("attach_attention_hook")
def test_hook_appends_every_forward(student, reference):
    """each forward call appends its own weights; earlier entries are kept unchanged"""
    mha = _reference_mha(reference, seed=11)
    x1, x2 = randn(2, 3, 8, seed=12, dtype=torch.float64), randn(3, 5, 8, seed=13, dtype=torch.float64)
    storage = []
    _attach(student, mha, storage)
    _, w1 = _hooked(mha, x1)
    _, w2 = _hooked(mha, x2)
    expect(len(storage) == 2, f"After {HOOK} and two forward calls, storage holds {len(storage)} entries instead of 2.")
    _check_stored(storage[0], w1, what=f"storage[0] after {HOOK}, mha(x1) and mha(x2)")
    _check_stored(storage[1], w2, what=f"storage[1] after {HOOK}, mha(x1) and mha(x2)")


@pytest.mark.problem("attach_attention_hook")
def test_hook_with_mask(student, reference):
    """with a padding mask the stored weights are the masked weights the module returned"""
    mha = _reference_mha(reference, seed=14)
    x = randn(3, 5, 8, seed=15, dtype=torch.float64)
    mask = _padding_mask([5, 3, 1], 5)
    storage = []
    _attach(student, mha, storage)
    _, weights = _hooked(mha, x, mask)
    expect(len(storage) == 1, f"After {HOOK} and mha(x, mask), storage holds {len(storage)} entries instead of 1.")
    _check_stored(storage[0], weights, what=f"storage[0] after {HOOK} and mha(x, mask)")


@pytest.mark.problem("attach_attention_hook")
def test_hook_on_encoder_layer(student, reference):
    """works on any module returning (output, weights), e.g. the given BuggyTransformerEncoderLayer"""
    layer = randomize_(reference.debugging.BuggyTransformerEncoderLayer(8, 2, 16), 16).double().eval()
    x = randn(2, 4, 8, seed=17, dtype=torch.float64)
    storage = []
    _attach(student, layer, storage)
    _, weights = _hooked(layer, x)
    expect(len(storage) == 1, f"After attach_attention_hook(layer, storage) and layer(x), storage holds "
                              f"{len(storage)} entries instead of 1.")
    _check_stored(storage[0], weights, what="storage[0] after attach_attention_hook(BuggyTransformerEncoderLayer, "
                                            "storage) and layer(x)")


# ---------------------------------------------------------------------------------------------
# FixedTransformerEncoderLayer

FIXED = "FixedTransformerEncoderLayer"
# mha is graded with MultiHeadAttention (attention.py): the layer is BUILT with the reference's class
# (the isolate markers put it in the student's debugging.py and attention.py while the test runs), so
# these tests grade the layer's own code only, and a crash in MultiHeadAttention.__init__ costs
# MultiHeadAttention alone.
NOTE = " (with the reference's mha)"
ISOLATE_FIXED = [pytest.mark.isolate("debugging", "MultiHeadAttention"),
                 pytest.mark.isolate("attention", "MultiHeadAttention")]


def _isolated(test):
    for marker in ISOLATE_FIXED:
        test = marker(test)
    return test


def _fixed_pair(student, reference, args, *, seed, dtype=torch.float64, edit=None):
    """(student layer, reference layer) with the reference's randomized weights loaded by name."""
    ref = randomize_(reference.debugging.FixedTransformerEncoderLayer(*args), seed)
    if edit is not None:
        with torch.no_grad():
            edit(ref)
    stu = student.debugging.FixedTransformerEncoderLayer(*args)
    expect(isinstance(stu, nn.Module), f"{_sig(FIXED, args)} should be an nn.Module, but it is {describe(stu)}.")
    _attr(stu, _sig(FIXED, args), "mha")
    check_structure(stu, ref, _sig(FIXED, args), parts=("mha",))
    copy_parameters(stu, ref, what=_sig(FIXED, args))
    return stu.to(dtype), ref.to(dtype)


def _check_eval_value(stu, ref, x, *, what):
    """In eval mode the layer returns the reference's (x, weights): checked before a property of it."""
    stu.eval(), ref.eval()
    with torch.no_grad():
        expected_x, expected_w = ref(x)
    got_x, got_w = _two_outputs(call(stu, x), what)
    assert_close(got_x, expected_x, what=f"the output x of {what} in eval mode")
    assert_close(got_w, expected_w, what=f"the attention weights of {what} in eval mode")


def _compare_fixed(student, reference, args_of, x, mask, *, seed):
    for mode, p in (("eval", 0.2), ("train", 0.0)):
        args = args_of(p)
        stu, ref = _fixed_pair(student, reference, args, seed=seed, dtype=x.dtype)
        stu.train(mode == "train")
        ref.train(mode == "train")
        with torch.no_grad():
            expected_x, expected_w = ref(x, mask)
        with_mask = "x" if mask is None else "x, mask"
        what = f"{_sig(FIXED, args)}.forward({with_mask}) in {mode} mode, {describe(x)}{NOTE}"
        got_x, got_w = _two_outputs(call(stu, x, mask), what)
        assert_close(got_x, expected_x, what=f"the output x of {what}")
        assert_close(got_w, expected_w, what=f"the attention weights of {what}")


@pytest.mark.problem("FixedTransformerEncoderLayer")
@_isolated
def test_fixed_attributes(student, reference):
    """mha is your MultiHeadAttention, ffn is Sequential(Linear, ReLU, Linear), norm1/2 LayerNorm, dropout1/2 Dropout(p)"""
    args = (12, 3, 20, 0.3)
    what = _sig(FIXED, args)
    m = student.debugging.FixedTransformerEncoderLayer(*args)
    mha = _attr(m, what, "mha")
    try:  # the reference's class, put in its place
        expected_class = student.attention.MultiHeadAttention.raw
    except SubmissionError:  # attention.py cannot be imported: the reference's stood in for it
        expected_class = reference.attention.MultiHeadAttention.raw
    expect(isinstance(mha, expected_class),
           f"{what}.mha should be your MultiHeadAttention from attention.py, but it is {describe(mha)}.")
    ffn = _attr(m, what, "ffn")
    expect(isinstance(ffn, nn.Sequential) and len(ffn) == 3,
           f"{what}.ffn should be nn.Sequential(Linear, ReLU, Linear), but it is {describe(ffn)}"
           + (f" of length {len(ffn)}." if isinstance(ffn, nn.Sequential) else "."))
    for i, (cls, shape) in enumerate(((nn.Linear, (12, 20)), (nn.ReLU, None), (nn.Linear, (20, 12)))):
        expect(isinstance(ffn[i], cls), f"{what}.ffn[{i}] should be an nn.{cls.__name__}, but it is {describe(ffn[i])}.")
        if shape is not None:
            expect((ffn[i].in_features, ffn[i].out_features) == shape and ffn[i].bias is not None,
                   f"{what}.ffn[{i}] should be nn.Linear{shape} with a bias.")
    for name in ("norm1", "norm2"):
        norm = _attr(m, what, name)
        expect(isinstance(norm, nn.LayerNorm) and tuple(norm.normalized_shape) == (12,),
               f"{what}.{name} should be nn.LayerNorm(12), but it is {describe(norm)}.")
    for name in ("dropout1", "dropout2"):
        drop = _attr(m, what, name)
        expect(isinstance(drop, nn.Dropout) and drop.p == 0.3,
               f"{what}.{name} should be nn.Dropout(0.3) (the constructor's dropout), but it is {describe(drop)}"
               + (f" with p={drop.p}." if isinstance(drop, nn.Dropout) else "."))
    ref = reference.debugging.FixedTransformerEncoderLayer(*args)
    ref = randomize_(ref, 19)
    check_structure(m, ref, what, parts=("mha",))  # no extra parameters, nothing shared
    copy_parameters(m, ref, what=what)
    _check_eval_value(m, ref, randn(2, 4, 12, seed=20), what=f"{what}.forward(x){NOTE}")


@pytest.mark.problem("FixedTransformerEncoderLayer")
@_isolated
def test_fixed_default_dropout(student, reference):
    """dropout defaults to 0.1 (dropout1 and dropout2); the layer equals the reference's"""
    m, ref = _fixed_pair(student, reference, (8, 2, 16), seed=18)
    _check_eval_value(m, ref, randn(2, 3, 8, seed=19, dtype=torch.float64), what=f"{FIXED}(8, 2, 16).forward(x){NOTE}")
    for name in ("dropout1", "dropout2"):
        drop = _attr(m, f"{FIXED}(8, 2, 16)", name)
        expect(isinstance(drop, nn.Dropout) and drop.p == 0.1,
               f"{FIXED}(8, 2, 16).{name} should be nn.Dropout(0.1), but it is {describe(drop)}.")


@pytest.mark.problem("FixedTransformerEncoderLayer")
@_isolated
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("E, H, F, B, T, seed", [
    pytest.param(8, 2, 16, 2, 4, 21, id="E8-H2-F16"),
    pytest.param(12, 3, 10, 3, 5, 22, id="E12-H3-F10"),
])
def test_fixed_matches_reference(student, reference, E, H, F, B, T, seed, dtype):
    """same output and weights as the reference (eval mode, and train mode with dropout=0)"""
    x = randn(B, T, E, seed=seed + 100, dtype=dtype)
    _compare_fixed(student, reference, lambda p: (E, H, F, p), x, None, seed=seed)


@pytest.mark.problem("FixedTransformerEncoderLayer")
@_isolated
@pytest.mark.parametrize("dtype", DTYPES)
def test_fixed_matches_reference_with_mask(student, reference, dtype):
    """with a padding mask (B, 1, 1, T): same output and weights as the reference"""
    x = randn(3, 5, 8, seed=23, dtype=dtype)
    _compare_fixed(student, reference, lambda p: (8, 2, 16, p), x, _padding_mask([5, 2, 4], 5), seed=24)


@pytest.mark.problem("FixedTransformerEncoderLayer")
@_isolated
def test_fixed_does_not_modify_inputs(student, reference):
    """returns the reference's output and weights and leaves x and the mask unchanged"""
    stu, ref = _fixed_pair(student, reference, (8, 2, 16, 0.1), seed=25)
    stu.eval(), ref.eval()
    x, mask = randn(3, 5, 8, seed=26, dtype=torch.float64), _padding_mask([5, 2, 4], 5)
    with torch.no_grad():
        expected_x, expected_w = ref(x.clone(), mask.clone())
    what = f"{_sig(FIXED, (8, 2, 16, 0.1))}.forward(x, mask) in eval mode{NOTE}"
    with leaves_unchanged(what, x=x, mask=mask):
        got_x, got_w = _two_outputs(call(stu, x, mask), what)
        assert_close(got_x, expected_x, what=f"the output x of {what}")
        assert_close(got_w, expected_w, what=f"the attention weights of {what}")


def _input_gradient(layer, x, projection, what):
    xg = x.clone().requires_grad_()
    out, _ = _two_outputs(call(layer, xg), what)
    (out * projection).sum().backward()
    expect(xg.grad is not None, f"backward through {what} did not reach the input x.")
    return xg.grad


def _check_residual_gradient(student, reference, edit, path, seed):
    args = (8, 2, 16, 0.0)
    stu, ref = _fixed_pair(student, reference, args, seed=seed, edit=edit)
    stu.eval(), ref.eval()
    x = randn(2, 4, 8, seed=seed + 1, dtype=torch.float64)
    projection = randn(2, 4, 8, seed=seed + 2, dtype=torch.float64)
    what = f"{_sig(FIXED, args)}.forward(x) with {path} set to 0{NOTE}"
    grad = _input_gradient(stu, x, projection, what)
    expect(grad.abs().max() > 1e-6, f"{what}: the input gets no gradient, so a residual connection is missing "
                                     "(x + sublayer(x) before the LayerNorm).")
    assert_close(grad, _input_gradient(ref, x, projection, what), what=f"the gradient of x through {what}")


@pytest.mark.problem("FixedTransformerEncoderLayer")
@_isolated
def test_fixed_attention_residual_gradient(student, reference):
    """with attention's output zeroed (mha.W_o = 0) the input still gets its gradient through the first residual"""
    def zero_attention(ref):
        ref.mha.W_o.weight.zero_()
        ref.mha.W_o.bias.zero_()

    _check_residual_gradient(student, reference, zero_attention, "mha.W_o", seed=31)


@pytest.mark.problem("FixedTransformerEncoderLayer")
@_isolated
def test_fixed_ffn_residual_gradient(student, reference):
    """with the feed-forward's output zeroed (ffn[2] = 0) the input still gets its gradient through the second residual"""
    def zero_ffn(ref):
        ref.ffn[2].weight.zero_()
        ref.ffn[2].bias.zero_()

    _check_residual_gradient(student, reference, zero_ffn, "ffn[2]", seed=35)


@pytest.mark.problem("FixedTransformerEncoderLayer")
@_isolated
def test_fixed_gradients_match_reference(student, reference):
    """the gradient of the input and of every parameter equals the reference's"""
    args = (8, 2, 16, 0.0)
    stu, ref = _fixed_pair(student, reference, args, seed=41)
    x = randn(2, 5, 8, seed=42, dtype=torch.float64)
    projection = randn(2, 5, 8, seed=43, dtype=torch.float64)
    what = f"{_sig(FIXED, args)}.forward(x){NOTE}"
    stu_grad = _input_gradient(stu, x, projection, what)
    assert_close(stu_grad, _input_gradient(ref, x, projection, what), what=f"the gradient of x through {what}")
    stu_params = dict(stu.named_parameters())
    for name, p in ref.named_parameters():
        got = stu_params[name].grad
        expect(got is not None, f"{what}: parameter {name} gets no gradient.")
        assert_close(got, p.grad, what=f"the gradient of {name} through {what}")
