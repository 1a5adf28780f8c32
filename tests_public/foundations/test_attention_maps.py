"""Public tests for attention_maps.py, on a tiny randomly initialised DistilBERT (nothing is downloaded)."""
import pytest
import torch

from autograder.testing.checks import assert_close, expect, expect_tensor
from autograder.testing.tiny_hf import tiny_distilbert, wordpiece_tokenizer

SENTENCES = ["Transformers capture contextual relationships.", "The cat sat on the mat.",
             "Alice gave the book to Bob."]


@pytest.fixture(scope="module")
def tokenizer():
    return wordpiece_tokenizer(SENTENCES)


def eager_model(tokenizer):
    model = tiny_distilbert(len(tokenizer)).eval()
    model.set_attn_implementation("eager")
    return model


@pytest.mark.problem("attention_maps")
def test_attention_maps_shape(student, tokenizer):
    """2 layers, 4 heads: weights (2, 4, T, T) whose rows sum to 1, tokens with [CLS] and [SEP]"""
    tokens, weights = student.attention_maps.attention_maps(tiny_distilbert(len(tokenizer)), tokenizer, SENTENCES[1])
    expected_tokens = tokenizer.convert_ids_to_tokens(tokenizer(SENTENCES[1])["input_ids"])
    expect(list(tokens) == expected_tokens, f"tokens are {tokens}, expected {expected_tokens}.")
    T = len(expected_tokens)
    weights = expect_tensor(weights, what="attention_maps(...) weights", shape=(2, 4, T, T))
    assert_close(weights.sum(-1), torch.ones(2, 4, T), what="the row sums of the attention weights")


@pytest.mark.problem("attention_maps")
def test_attention_maps_values(student, tokenizer):
    """equal to output_attentions of the same model in eval mode (the model is given with "sdpa" attention)"""
    model = tiny_distilbert(len(tokenizer))
    _, weights = student.attention_maps.attention_maps(model, tokenizer, SENTENCES[0])
    with torch.no_grad():
        expected = eager_model(tokenizer)(**tokenizer(SENTENCES[0], return_tensors="pt"), output_attentions=True).attentions
    assert_close(expect_tensor(weights, what="attention_maps(...) weights"), torch.stack(expected, 1)[0],
                 what="attention_maps(model, tokenizer, sentence)")


@pytest.mark.problem("attention_weights_by_hand")
def test_by_hand_matches_output_attentions(student, tokenizer):
    """a padded batch of two sentences: layer 1's weights equal output_attentions[1]"""
    model = eager_model(tokenizer)
    encoded = tokenizer(SENTENCES[1:], return_tensors="pt", padding=True)
    with torch.no_grad():
        out = model(**encoded, output_attentions=True, output_hidden_states=True)
        got = student.attention_maps.attention_weights_by_hand(model, 1, out.hidden_states[1], encoded["attention_mask"])
    B, T = encoded["input_ids"].shape
    got = expect_tensor(got, what="attention_weights_by_hand(model, 1, hidden_states[1], mask)", shape=(B, 4, T, T))
    assert_close(got, out.attentions[1], what="attention_weights_by_hand(model, 1, hidden_states[1], mask)")
