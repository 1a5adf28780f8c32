"""Hidden tests for attention_maps.py against the reference, on tiny DistilBERTs of several shapes."""
import pytest
import torch

from autograder.kit.checks import assert_close, expect, expect_tensor
from autograder.kit.inplace import leaves_unchanged
from autograder.kit.tiny_hf import tiny_distilbert, wordpiece_tokenizer
from autograder.kit.torchkit import randn

SENTENCES = ["I wanted to have a party.", "I bought a cake for it.", "I was going to play at the park.",
             "I was going to a play in the park.", "Jaime Salazar is running for election."]


@pytest.fixture(scope="module")
def tokenizer():
    return wordpiece_tokenizer(SENTENCES, vocab_size=140)


@pytest.mark.problem("attention_maps")
@pytest.mark.parametrize("sentence,model_args", [(SENTENCES[0], {}), (SENTENCES[2], {"n_layers": 3, "n_heads": 2, "seed": 3}),
                                                 (SENTENCES[4], {"dropout": 0.5, "seed": 4})])
def test_attention_maps_like_reference(student, reference, tokenizer, sentence, model_args):
    """tokens and weights equal the reference's; the model comes in training mode with "sdpa" attention"""
    tokens, weights = student.attention_maps.attention_maps(tiny_distilbert(len(tokenizer), **model_args), tokenizer, sentence)
    e_tokens, e_weights = reference.attention_maps.attention_maps(tiny_distilbert(len(tokenizer), **model_args), tokenizer, sentence)
    what = f"attention_maps(model, tokenizer, {sentence!r})"
    expect(list(tokens) == list(e_tokens), f"{what}: tokens {list(tokens)}, expected {list(e_tokens)}.")
    needs_grad = isinstance(weights, torch.Tensor) and weights.requires_grad   # before expect_tensor detaches it
    weights = expect_tensor(weights, what=f"{what} weights", shape=e_weights.shape)
    assert_close(weights, e_weights, what=f"{what} weights")
    expect(not needs_grad, f"{what}: the weights require grad; compute them under torch.no_grad().")


def by_hand_case(tokenizer, n_layers, n_heads, seed):
    model = tiny_distilbert(len(tokenizer), n_layers=n_layers, n_heads=n_heads, seed=seed).eval()
    encoded = tokenizer(SENTENCES[:3], return_tensors="pt", padding=True)
    B, T = encoded["input_ids"].shape
    hidden = randn(B, T, 32, seed=seed)
    return model, hidden, encoded["attention_mask"]


@pytest.mark.problem("attention_weights_by_hand")
@pytest.mark.parametrize("layer,n_layers,n_heads,seed", [(0, 2, 4, 0), (1, 2, 4, 1), (2, 3, 2, 2), (0, 1, 8, 3)])
def test_by_hand_like_reference(student, reference, tokenizer, layer, n_layers, n_heads, seed):
    """random layer inputs, padded batch of three: the reference's weights"""
    model, hidden, mask = by_hand_case(tokenizer, n_layers, n_heads, seed)
    expected = reference.attention_maps.attention_weights_by_hand(model, layer, hidden.clone(), mask.clone())
    what = f"attention_weights_by_hand(model with {n_heads} heads, layer={layer}, hidden {list(hidden.shape)}, mask)"
    with leaves_unchanged(what, hidden_states=hidden, attention_mask=mask):
        got = student.attention_maps.attention_weights_by_hand(model, layer, hidden, mask)
        got = expect_tensor(got, what=what, shape=expected.shape)
        assert_close(got, expected, what=what)


@pytest.mark.problem("attention_weights_by_hand")
def test_by_hand_no_padding(student, reference, tokenizer):
    """an all-ones mask, batch of one"""
    model, hidden, mask = by_hand_case(tokenizer, 2, 4, 5)
    hidden, mask = hidden[:1].clone(), torch.ones_like(mask[:1])
    expected = reference.attention_maps.attention_weights_by_hand(model, 1, hidden.clone(), mask.clone())
    what = "attention_weights_by_hand(model, 1, hidden (1, T, 32), ones)"
    with leaves_unchanged(what, hidden_states=hidden, attention_mask=mask):
        got = student.attention_maps.attention_weights_by_hand(model, 1, hidden, mask)
        assert_close(expect_tensor(got, what=what, shape=expected.shape), expected, what=what)


@pytest.mark.problem("attention_weights_by_hand")
def test_by_hand_matches_model(student, tokenizer):
    """inside the real model: layer 0's weights equal output_attentions[0] (eager, eval)"""
    model = tiny_distilbert(len(tokenizer), seed=6).eval()
    model.set_attn_implementation("eager")
    encoded = tokenizer(SENTENCES[2:], return_tensors="pt", padding=True)
    with torch.no_grad():
        out = model(**encoded, output_attentions=True, output_hidden_states=True)
    hidden, mask = out.hidden_states[0], encoded["attention_mask"]
    what = "attention_weights_by_hand(model, 0, hidden_states[0], mask)"
    with leaves_unchanged(what, hidden_states=hidden, attention_mask=mask):
        got = student.attention_maps.attention_weights_by_hand(model, 0, hidden, mask)
        assert_close(expect_tensor(got, what=what, shape=out.attentions[0].shape), out.attentions[0], what=what)
