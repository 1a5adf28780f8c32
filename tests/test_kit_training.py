"""kit/training.py's helpers for tests of what a model learns and how it steps (red-team findings)."""
import pytest
import torch

from autograder.kit.training import copy_weights, rounding_noise, token_logits


def test_rounding_noise_names_the_parameters_whose_moments_are_noise_next_to_the_largest():
    moments = {"attn.k_proj.bias": torch.full((4,), 1e-12), "attn.q_proj.bias": torch.full((4,), 2e-5),
               "head.weight": torch.full((2, 2), -3e-3), "empty": torch.zeros(0)}
    assert rounding_noise(moments) == {"attn.k_proj.bias"}
    assert rounding_noise({}) == set()


def test_rounding_noise_on_attention_key_bias_after_adam_steps():
    """A key projection's bias gets only rounding noise as gradient: Adam's moments say so."""
    torch.manual_seed(0)
    attention = torch.nn.MultiheadAttention(8, 2, batch_first=True)
    optimizer = torch.optim.Adam(attention.parameters(), lr=1e-2)
    x = torch.randn(3, 5, 8)
    for _ in range(3):
        optimizer.zero_grad()
        attention(x, x, x)[0].pow(2).mean().backward()
        optimizer.step()
    names = {id(p): n for n, p in attention.named_parameters()}
    moments = {names[id(p)]: s["exp_avg"] for p, s in optimizer.state.items()}
    # in_proj_bias packs q, k and v: its key third is noise, the rest is not, so the whole is not noise
    assert rounding_noise(moments) == set()
    key = {"k_bias": moments["in_proj_bias"][8:16], **{n: m for n, m in moments.items() if n != "in_proj_bias"}}
    assert rounding_noise(key) == {"k_bias"}


def test_token_logits_drops_a_trailing_dimension_of_one_only():
    logits, weights = torch.zeros(2, 5, 1), torch.zeros(2, 1, 5, 5)
    assert token_logits((logits, weights)).shape == (2, 5)
    assert token_logits((torch.zeros(2, 5), weights)).shape == (2, 5)
    assert token_logits((torch.zeros(2, 5, 3), weights)).shape == (2, 5, 3)


def test_copy_weights_refuses_trained_weights_that_lack_a_parameter():
    """fit_student_model copies the worker's trained weights into the grader's mirror: one missing is an error,
    not a parameter silently left untrained."""
    model = torch.nn.Linear(2, 2)
    copy_weights(model, {"weight": torch.ones(2, 2), "bias": torch.zeros(2)})
    assert torch.equal(model.weight, torch.ones(2, 2))
    with pytest.raises(RuntimeError, match="lack bias"):
        copy_weights(model, {"weight": torch.ones(2, 2)})
