"""Public tests for attention_maps.py, on a tiny randomly initialised DistilBERT (nothing is downloaded)."""
import pytest
import torch

from autograder.kit.checks import assert_close, expect, expect_tensor
from autograder.kit.inplace import leaves_unchanged
from autograder.kit.tiny_hf import tiny_distilbert, wordpiece_tokenizer

SENTENCES = ["Transformers capture contextual relationships.", "The cat sat on the mat.",
             "Alice gave the book to Bob."]


@pytest.fixture(scope="module")
def tokenizer():
    return wordpiece_tokenizer(SENTENCES)


def eager_model(tokenizer):
    model = tiny_distilbert(len(tokenizer)).eval()
    model.set_attn_implementation("eager")
    return model


def expected_attentions(tokenizer, sentence):
    """output_attentions of the same model, eager and in eval mode: (n_layers, n_heads, T, T)."""
    with torch.no_grad():
        attentions = eager_model(tokenizer)(**tokenizer(sentence, return_tensors="pt"), output_attentions=True).attentions
    return torch.stack(attentions, 1)[0]


@pytest.mark.problem("attention_maps")
def test_attention_maps_tokens_and_weights(student, tokenizer):
    """tokens with [CLS] and [SEP]; 2 layers, 4 heads: weights (2, 4, T, T) as output_attentions gives them"""
    tokens, weights = student.attention_maps.attention_maps(tiny_distilbert(len(tokenizer)), tokenizer, SENTENCES[1])
    expected_tokens = tokenizer.convert_ids_to_tokens(tokenizer(SENTENCES[1])["input_ids"])
    expect(list(tokens) == expected_tokens, f"tokens are {tokens}, expected {expected_tokens}.")
    T = len(expected_tokens)
    weights = expect_tensor(weights, what="attention_maps(...) weights", shape=(2, 4, T, T))
    assert_close(weights, expected_attentions(tokenizer, SENTENCES[1]), what="attention_maps(model, tokenizer, sentence) weights")


@pytest.mark.problem("attention_maps")
def test_attention_maps_values(student, tokenizer):
    """equal to output_attentions of the same model in eval mode (the model is given with "sdpa" attention)"""
    model = tiny_distilbert(len(tokenizer))
    _, weights = student.attention_maps.attention_maps(model, tokenizer, SENTENCES[0])
    assert_close(expect_tensor(weights, what="attention_maps(...) weights"), expected_attentions(tokenizer, SENTENCES[0]),
                 what="attention_maps(model, tokenizer, sentence)")


@pytest.mark.problem("attention_weights_by_hand")
def test_by_hand_matches_output_attentions(student, tokenizer):
    """a padded batch of two sentences (9 and 7 tokens: row 1 ends with 2 padding tokens): layer 1's weights equal output_attentions[1]"""
    model = eager_model(tokenizer)
    encoded = tokenizer([SENTENCES[1], SENTENCES[0]], return_tensors="pt", padding=True)
    with torch.no_grad():
        out = model(**encoded, output_attentions=True, output_hidden_states=True)
    B, T = encoded["input_ids"].shape
    what = "attention_weights_by_hand(model, 1, hidden_states[1], mask)"
    hidden, mask = out.hidden_states[1], encoded["attention_mask"]
    with leaves_unchanged(what, hidden_states=hidden, attention_mask=mask):
        with torch.no_grad():
            got = student.attention_maps.attention_weights_by_hand(model, 1, hidden, mask)
        got = expect_tensor(got, what=what, shape=(B, 4, T, T))
        assert_close(got, out.attentions[1], what=what)
