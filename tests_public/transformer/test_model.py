"""Public tests for model.py: the notebook's shape checks and properties you can reason about."""
import math

import pytest
import torch
import torch.nn as nn

from autograder.kit.adapter import call
from autograder.kit.checks import assert_close, assert_equal, assert_scalar_close, expect, expect_tensor
from autograder.kit.inplace import leaves_unchanged
from autograder.kit.torchkit import randint, randn, randomize_, strict_device

# A CausalSelfAttention may use attention.py's causal_mask or scaled_dot_product_attention: while its tests run,
# those are the reference's (in model.py too, if it imports them), so a bug there is charged to attention.py only.
ISOLATE_CSA = pytest.mark.isolate("attention", "causal_mask", "scaled_dot_product_attention", imported_by="model")


def _expect_parameters(module, names, what):
    """`module`'s parameter names are exactly `names` (none missing, none extra, none shared)."""
    got = sorted(name for name, _ in module.named_parameters())
    expect(got == sorted(names), f"{what} should have the parameters {sorted(names)} (no other, none shared); "
                                 f"it has {got}.")


def _linear(*names):
    return [f"{name}.{kind}" for name in names for kind in ("weight", "bias")]


def _averaging_output(attention, x):
    """Zero k_proj, so every score is 0: in eval mode position t then averages v_proj(x) over
    positions 0..t (the ones it may see), in every head. Returns that expected output."""
    with torch.no_grad():
        attention.k_proj.weight.zero_()
        attention.k_proj.bias.zero_()
        values = attention.v_proj(x)
        seen = torch.arange(1, x.shape[1] + 1, dtype=x.dtype).view(1, -1, 1)  # positions 0..t
        return attention.out_proj(values.cumsum(dim=1) / seen)


def _check_averaging(attention, x, what):
    """With k_proj = 0 the (eval-mode) output is the running mean of the values, through out_proj."""
    expected = _averaging_output(attention, x)
    with torch.no_grad():
        out = call(attention, x)
    assert_close(out, expected, what=f"{what} with k_proj = 0 (each position averages the values of "
                                     "positions 0..t, then out_proj)")


@pytest.mark.problem("CausalSelfAttention")
@ISOLATE_CSA
def test_causal_self_attention_shape(student):
    """the notebook's example: (1, 3, 8) in, (1, 3, 8) out; with k_proj = 0, position t averages values 0..t"""
    attention = student.model.CausalSelfAttention().eval()
    x = torch.rand(1, 3, 8)
    with torch.no_grad():
        out = call(attention, x)
    expect_tensor(out, what="CausalSelfAttention()(x)", shape=(1, 3, 8))
    _check_averaging(attention, x, "CausalSelfAttention()(x)")


@pytest.mark.problem("CausalSelfAttention")
@ISOLATE_CSA
def test_causal_self_attention_layers(student):
    """q_proj, k_proj, v_proj, out_proj are Linear(hidden, hidden), the only parameters; two nn.Dropout(dropout)"""
    attention = student.model.CausalSelfAttention(hidden_size=16, num_heads=4, dropout=0.2, seq_len=6)
    for name in ("q_proj", "k_proj", "v_proj", "out_proj"):
        layer = getattr(attention, name, None)
        expect(isinstance(layer, nn.Linear) and tuple(layer.weight.shape) == (16, 16) and layer.bias is not None,
               f"CausalSelfAttention.{name} should be nn.Linear(16, 16) with a bias.")
    for name in ("attn_dropout", "resid_dropout"):
        layer = getattr(attention, name, None)
        expect(isinstance(layer, nn.Dropout) and layer.p == 0.2, f"CausalSelfAttention.{name} should be nn.Dropout(0.2).")
    _expect_parameters(attention, _linear("q_proj", "k_proj", "v_proj", "out_proj"), "CausalSelfAttention(16, 4, 0.2, 6)")
    _check_averaging(attention.eval(), randn(2, 6, 16, seed=6), "CausalSelfAttention(16, 4, 0.2, 6)(x) in eval mode")


@pytest.mark.problem("CausalSelfAttention")
@ISOLATE_CSA
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
    _check_averaging(attention, x, "CausalSelfAttention(8, 2, 0.1, 5)(x)")


@pytest.mark.problem("CausalSelfAttention")
@ISOLATE_CSA
def test_causal_self_attention_heads_formula(student):
    """a batch of 2, 4 tokens, 2 heads of width 4: per head softmax(q kᵀ / sqrt(4)) over keys j <= i, then out_proj"""
    attention = student.model.CausalSelfAttention(hidden_size=8, num_heads=2, dropout=0.1, seq_len=4).eval()
    x = randn(2, 4, 8, seed=7)
    with torch.no_grad():
        out = call(attention, x)
        q, k, v = attention.q_proj(x), attention.k_proj(x), attention.v_proj(x)
        heads = []
        for h in range(2):  # head h uses features h*4:(h+1)*4
            scores = q[..., h * 4:(h + 1) * 4] @ k[..., h * 4:(h + 1) * 4].transpose(1, 2) / 2.0
            scores = scores.masked_fill(torch.ones(4, 4).tril() == 0, float("-inf"))
            heads.append(torch.softmax(scores, dim=-1) @ v[..., h * 4:(h + 1) * 4])
        expected = attention.out_proj(torch.cat(heads, dim=-1))
    assert_close(out, expected, what="CausalSelfAttention(8, 2, 0.1, 4)(x) in eval mode")


@pytest.mark.problem("CausalSelfAttention")
@ISOLATE_CSA
def test_causal_self_attention_dropout_places(student):
    """train mode, p = 0.5, one token, out_proj = identity with a bias b: attn_dropout on the weights, resid_dropout after out_proj"""
    attention = student.model.CausalSelfAttention(hidden_size=8, num_heads=2, dropout=0.5, seq_len=1).eval()
    b = torch.linspace(0.5, 1.5, 8)
    x = randn(1, 1, 8, seed=11)
    with torch.no_grad():
        attention.out_proj.weight.copy_(torch.eye(8))
        attention.out_proj.bias.copy_(b)
        v = attention.v_proj(x)[0, 0]
        # one token: its only attention weight is 1, so in eval mode the output is v + b
        assert_close(call(attention, x)[0, 0], v + b, what="CausalSelfAttention(8, 2, 0.5, 1)(x) in eval mode with "
                                                              "out_proj = identity and bias b (one token: v + b)")
        out = call(attention.train(), x.expand(400, 1, 8))[:, 0]
    # attn_dropout keeps the weight (x 2) or drops it (0): v * 2 + b or b; resid_dropout then gives 0 or twice that
    allowed = torch.stack([torch.zeros(8), 2 * b, 2 * (2 * v + b)])  # (3, 8)
    near = (out[:, None, :] - allowed[None]).abs() <= 1e-4 * (1 + allowed.abs())
    expect(bool(near.any(dim=1).all()), "in train mode each output value should be 0 (resid_dropout), 2b (the "
                                        "attention weight dropped by attn_dropout) or 2(2v + b): resid_dropout acts "
                                        "after out_proj, attn_dropout on the weights after the softmax.")
    zero = near[:, 0].double().mean().item()
    dropped = near[:, 1].double().sum().item() / max(1.0, (~near[:, 0]).double().sum().item())
    expect(abs(zero - 0.5) < 0.1, f"{zero:.2f} of the output values are 0; resid_dropout (p = 0.5) should zero about half.")
    expect(abs(dropped - 0.5) < 0.1, f"{dropped:.2f} of the other values show a dropped attention weight; attn_dropout "
                                     "(p = 0.5, after the softmax) should drop about half.")


@pytest.mark.problem("FeedForward")
def test_feed_forward(student):
    """fc1: Linear(C, 4C), ReLU, fc2: Linear(4C, C), the only parameters; output shape (..., C)"""
    ffn = student.model.FeedForward(8, 0.0)
    expect(isinstance(getattr(ffn, "fc1", None), nn.Linear) and tuple(ffn.fc1.weight.shape) == (32, 8),
           "FeedForward.fc1 should be nn.Linear(8, 32).")
    expect(isinstance(getattr(ffn, "fc2", None), nn.Linear) and tuple(ffn.fc2.weight.shape) == (8, 32),
           "FeedForward.fc2 should be nn.Linear(32, 8).")
    _expect_parameters(ffn, _linear("fc1", "fc2"), "FeedForward(8, 0.0)")
    x = randn(2, 3, 8, seed=2)
    with torch.no_grad():
        out = call(ffn, x)
        expected = ffn.fc2(torch.relu(ffn.fc1(x)))
    assert_close(out, expected, what="FeedForward(8, 0.0)(x)")


def _expect_dropped(out, base, p, what):
    """Train-mode dropout with rate p on values whose eval-mode value is `base`: each value is 0 or
    base / (1 - p), and about a fraction p of them are 0."""
    zero = out == 0
    kept = torch.where(zero, base / (1 - p), out)
    assert_close(kept, base / (1 - p), what=f"{what}: the values dropout keeps (they should be eval value / (1 - p))")
    fraction = zero.double().mean().item()
    expect(abs(fraction - p) < 0.1, f"{what}: {fraction:.2f} of the values are 0; dropout with p = {p} "
                                    f"should zero about {p} of them.")


@pytest.mark.problem("FeedForward")
def test_feed_forward_dropout_on_the_output(student):
    """train mode, p = 0.5, a batch of 200: dropout acts on the output, after fc2 (each value 0 or eval value x 2)"""
    ffn = student.model.FeedForward(8, 0.5).eval()
    x = randn(1, 3, 8, seed=9)
    with torch.no_grad():
        base = call(ffn, x)
        assert_close(base, ffn.fc2(torch.relu(ffn.fc1(x))), what="FeedForward(8, 0.5)(x) in eval mode (no dropout)")
        out = call(ffn.train(), x.expand(200, 3, 8))
    _expect_dropped(out, base.expand(200, 3, 8), 0.5, "FeedForward(8, 0.5)(x) in train mode")


def _block_formula(block, x):
    """The handout's pre-norm block, computed with the block's own sub-modules (eval mode)."""
    with torch.no_grad():
        h = x + block.attn(block.ln1(x))
        return h + block.ffn(block.ln2(h))


@pytest.mark.problem("Block")
@pytest.mark.isolate("model", "CausalSelfAttention", "FeedForward")
def test_block_shape(student):
    """the notebook's example: Block()(x) keeps the shape (1, 3, 8) and is x + attn(ln1(x)), then + ffn(ln2(.)); its own ln1, ln2"""
    block = student.model.Block().eval()
    for name, kind in (("ln1", nn.LayerNorm), ("ln2", nn.LayerNorm)):
        expect(isinstance(getattr(block, name, None), kind), f"Block.{name} should be an nn.LayerNorm.")
    _expect_parameters(block, _linear("ln1", "ln2") + [f"attn.{n}" for n in _linear("q_proj", "k_proj", "v_proj",
                                                                                   "out_proj")]
                       + [f"ffn.{n}" for n in _linear("fc1", "fc2")], "Block()")
    randomize_(block, seed=8)  # every parameter random, LayerNorm gains and biases too: ln1 and ln2 differ
    x = torch.rand(1, 3, 8)
    with torch.no_grad():
        out = call(block, x)
    expect_tensor(out, what="Block()(x)", shape=(1, 3, 8))
    assert_close(out, _block_formula(block, x), what="Block()(x) in eval mode (x + attn(ln1(x)), then h + ffn(ln2(h)))")


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


def _transformer_formula(model, input_ids):
    """The handout's model, computed with the model's own sub-modules (eval mode)."""
    with torch.no_grad():
        T = input_ids.shape[1]
        x = model.token_emb(input_ids) + model.pos_emb(torch.arange(T))
        for block in model.blocks:
            x = block(x)
        return model.lm_head(model.ln_f(x))


@pytest.mark.problem("Transformer")
@pytest.mark.isolate("model", "Block")
def test_transformer_logits_shape(student):
    """the notebook's example: input_ids (1, 3) give logits (1, 3, 100), lm_head(ln_f(blocks(tok + pos)))"""
    model = student.model.Transformer().eval()
    input_ids = torch.randint(0, 100, (1, 3))
    with torch.no_grad():
        logits = call(model, input_ids)
    expect_tensor(logits, what="Transformer()(input_ids)", shape=(1, 3, 100))
    assert_close(logits, _transformer_formula(model, input_ids), what="Transformer()(input_ids) in eval mode")


@pytest.mark.problem("Transformer")
@pytest.mark.isolate("model", "Block")
def test_transformer_shorter_input(student):
    """inputs shorter than seq_len work; positions are 0..T-1 (made on the input's device); only the listed parameters"""
    model = student.model.Transformer(vocab_size=20, hidden_size=8, num_heads=2, dropout=0.0, seq_len=6, num_layers=2)
    expect(getattr(model, "seq_len", None) == 6, "Transformer.seq_len should be the context length (6).")
    block = [f"{n}" for n in _linear("ln1", "ln2", "attn.q_proj", "attn.k_proj", "attn.v_proj", "attn.out_proj",
                                      "ffn.fc1", "ffn.fc2")]
    _expect_parameters(model, ["token_emb.weight", "pos_emb.weight", *_linear("ln_f", "lm_head"),
                               *[f"blocks.{i}.{n}" for i in range(2) for n in block]], "Transformer(20, 8, 2, 0.0, 6, 2)")
    input_ids = randint(20, 2, 4, seed=4)
    with torch.no_grad():
        logits = call(model.eval(), input_ids)
    expect_tensor(logits, what="Transformer(seq_len=6)(input_ids of shape (2, 4))", shape=(2, 4, 20))
    assert_close(logits, _transformer_formula(model, input_ids),
                 what="Transformer(seq_len=6)(input_ids of shape (2, 4)) in eval mode, positions 0..3")
    model.to("meta")
    with strict_device("meta"), torch.no_grad():  # positions follow the input's device
        logits = call(model, input_ids.to("meta"))
    expect_tensor(logits, what="Transformer(seq_len=6) on the meta device (input_ids of shape (2, 4))",
                  shape=(2, 4, 20), device="meta")


@pytest.mark.problem("Transformer")
@pytest.mark.isolate("model", "Block")
def test_transformer_embedding_dropout(student):
    """train mode, p = 0.5, a batch of 64: drop acts on token + position embeddings, the input of blocks[0]"""
    model = student.model.Transformer(vocab_size=20, hidden_size=8, num_heads=2, dropout=0.5, seq_len=4, num_layers=1)
    input_ids = randint(20, 64, 4, seed=10)
    assert_close(call(model.eval(), input_ids[:2]), _transformer_formula(model, input_ids[:2]),
                 what="Transformer(20, 8, 2, 0.5, 4, 1)(input_ids) in eval mode (no dropout)")
    seen = []
    handle = model.blocks[0].register_forward_pre_hook(lambda module, inputs: seen.append(inputs[0].detach().clone()))
    try:
        with torch.no_grad():
            call(model.train(), input_ids)
    finally:
        handle.remove()
    expect(len(seen) == 1, f"blocks[0] should be called once per forward; it was called {len(seen)} times.")
    with torch.no_grad():
        base = model.token_emb(input_ids) + model.pos_emb(torch.arange(4))
    _expect_dropped(seen[0], base, 0.5, "the input of blocks[0] in train mode (drop(token_emb + pos_emb))")


@pytest.mark.problem("lm_loss")
def test_lm_loss_uniform_logits(student):
    """all-zero logits give log(V) whatever the targets"""
    logits = torch.zeros(2, 5, 10, requires_grad=True)
    loss = student.model.lm_loss(logits, randint(10, 2, 5, seed=5), pad_token_id=0)
    loss = expect_tensor(loss, what="lm_loss(zero logits, ...)", shape=())
    assert_scalar_close(float(loss), math.log(10), what="lm_loss with all-zero logits (should be log V)")


# A logit of 2 on one token and 0 on the V - 1 others: the cross-entropy of that token is
# log(e^2 + V - 1) - 2, and of any other token log(e^2 + V - 1).
def _one_hot_loss(V: int, hit: bool) -> float:
    return math.log(math.exp(2) + V - 1) - (2 if hit else 0)


@pytest.mark.problem("lm_loss")
def test_lm_loss_is_shifted(student):
    """logits at position t that point at token t+1: every prediction hits, loss log(e^2 + V - 1) - 2"""
    input_ids = torch.tensor([[1, 2, 3, 4]])
    logits = torch.zeros(1, 4, 6)
    for t in range(3):
        logits[0, t, input_ids[0, t + 1]] = 2.0
    loss = student.model.lm_loss(logits, input_ids, pad_token_id=0)
    loss = expect_tensor(loss, what="lm_loss(logits, [[1, 2, 3, 4]], pad_token_id=0)", shape=())
    assert_scalar_close(float(loss), _one_hot_loss(6, hit=True),
                        what="lm_loss when position t points at token t+1 (position 3 has no target)")


@pytest.mark.problem("lm_loss")
def test_lm_loss_ignores_padding(student):
    """a padded batch of 2: targets equal to pad_token_id are left out of the mean, over both rows"""
    input_ids = torch.tensor([[1, 2, 5, 5], [5, 3, 4, 1]])  # pad_token_id = 5: row 0 ends with padding
    logits = torch.zeros(2, 4, 7)  # V = 7
    logits[0, 0, 2] = 2.0  # row 0, position 0 points at its target, token 2; positions 1, 2 predict padding
    logits[0, 1, 5] = 2.0  # (one hits the pad id, one misses: counting them would change the mean)
    logits[0, 2, 3] = 2.0
    logits[1, :3, 0] = 2.0  # row 1 (its first INPUT is the pad id, but its targets 3, 4, 1 are real): all miss
    loss = student.model.lm_loss(logits, input_ids, pad_token_id=5)
    loss = expect_tensor(loss, what="lm_loss(logits, [[1, 2, 5, 5], [5, 3, 4, 1]], pad_token_id=5)", shape=())
    expected = (_one_hot_loss(7, hit=True) + 3 * _one_hot_loss(7, hit=False)) / 4
    assert_scalar_close(float(loss), expected,
                        what="lm_loss over the 4 real targets (1 hit in row 0, 3 misses in row 1)")


class NextTokenModel(nn.Module):
    """A toy language model: always predicts (last token + 1) % V."""

    def __init__(self, vocab_size=10, seq_len=4):
        super().__init__()
        self.vocab_size, self.seq_len = vocab_size, seq_len

    def forward(self, input_ids):
        return torch.nn.functional.one_hot((input_ids + 1) % self.vocab_size, self.vocab_size).float() * 5


class WindowSumModel(nn.Module):
    """A toy language model whose next token is the sum of the tokens it is fed, mod 10: its
    prediction depends on the whole window. It notes each call's length and grad mode."""

    def __init__(self, seq_len=3):
        super().__init__()
        self.seq_len, self.calls = seq_len, []
        self.gain = nn.Parameter(torch.tensor(1.0))

    def forward(self, input_ids):
        self.calls.append((input_ids.shape[1], torch.is_grad_enabled()))
        return torch.nn.functional.one_hot(input_ids.cumsum(dim=1) % 10, 10).float() * self.gain


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


@pytest.mark.problem("greedy_decode")
def test_greedy_decode_feeds_the_last_window(student):
    """a batch of 2, seq_len 3: each step feeds the last min(T, 3) tokens (not only the newest), no gradients, prompt unchanged"""
    model, prompt = WindowSumModel(seq_len=3), torch.tensor([[1, 2], [3, 0]])
    # row 0: 1+2 = 3; 1+2+3 = 6; 2+3+6 = 11 -> 1; 3+6+1 = 10 -> 0.  row 1: 3; 6; 0+3+6 = 9; 3+6+9 = 18 -> 8
    expected = torch.tensor([[1, 2, 3, 6, 1, 0], [3, 0, 3, 6, 9, 8]])
    with leaves_unchanged("greedy_decode(model, input_ids, max_new_tokens=4)", input_ids=prompt):
        out = student.model.greedy_decode(model, prompt, max_new_tokens=4)
        assert_equal(out, expected, what="greedy_decode(next token = sum of the window mod 10, seq_len=3, "
                                         "[[1, 2], [3, 0]], max_new_tokens=4)")
    lengths = [length for length, _ in model.calls]
    expect(lengths == [2, 3, 3, 3], f"greedy_decode fed the model {lengths} tokens at its 4 steps; "
                                    "it should feed [2, 3, 3, 3] (the last min(T, seq_len)).")
    expect(not any(grad for _, grad in model.calls),
           "greedy_decode called the model with gradient recording on; use torch.no_grad().")
