"""Public tests for self_attention.py: the notebook's examples, the model's shapes, and training
with the grader's own loop (autograder/kit/training.py), as the hidden test does."""
import pytest
import torch

from autograder.kit.checks import assert_close, assert_equal, expect, expect_tensor
from autograder.kit.inplace import leaves_unchanged
from autograder.kit.torchkit import randint
from autograder.kit.training import Budget, binary_accuracy, fit_student_model, token_logits


@pytest.mark.problem("token_matching_labels")
def test_labels_notebook_examples(student):
    """5 3 4 1 5 6 -> 0 0 1 0 1 0 and 1 2 3 2 3 -> 0 1 0 1 0 (the tables of the notebook)"""
    x = torch.tensor([[5, 3, 4, 1, 5, 6]])
    with leaves_unchanged("token_matching_labels(sequences)", sequences=x):
        got = student.self_attention.token_matching_labels(x)
        assert_equal(got, torch.tensor([[0, 0, 1, 0, 1, 0]]), what="token_matching_labels([[5, 3, 4, 1, 5, 6]])")
    got = student.self_attention.token_matching_labels(torch.tensor([1, 2, 3, 2, 3]))
    assert_equal(got, torch.tensor([0, 1, 0, 1, 0]), what="token_matching_labels([1, 2, 3, 2, 3])")


def handout_weights(model, x, heads):
    """The attention weights the handout's forward computes, head by head, from the model's own layers."""
    with torch.no_grad():
        h = model.pos(model.embed(x))
        q, k = model.q(h), model.k(h)
        dh = q.shape[-1] // heads
        per_head = [torch.softmax(q[..., i * dh:(i + 1) * dh] @ k[..., i * dh:(i + 1) * dh].transpose(-2, -1) / dh ** 0.5, -1)
                    for i in range(heads)]
    return torch.stack(per_head, dim=1)


def handout_logits(model, x, heads):
    """The logits of the handout's forward, from the model's own layers: each head's weights times its
    values (features i*dh:(i+1)*dh), the heads side by side, then norm(h + out(...)) and the classifier."""
    weights = handout_weights(model, x, heads)
    with torch.no_grad():
        h = model.pos(model.embed(x))
        v = model.v(h)
        dh = v.shape[-1] // heads
        heads_out = torch.cat([weights[:, i] @ v[..., i * dh:(i + 1) * dh] for i in range(heads)], dim=-1)
        return model.classifier(model.norm(h + model.out(heads_out)))[..., 0]


@pytest.mark.problem("SelfAttention")
def test_self_attention_shapes_and_weights(student):
    """SelfAttention(vocab_size=4, d=36, heads=4, max_len=10) on (3, 10) ids: logits (3, 10), weights (3, 4, 10, 10) as the handout computes them"""
    torch.manual_seed(0)
    model = student.self_attention.SelfAttention(vocab_size=4, d=36, heads=4, max_len=10).eval()
    x = randint(4, 3, 10, seed=1)
    expected = handout_weights(model, x.clone(), heads=4)
    with leaves_unchanged("SelfAttention(...)(x)", x=x):
        logits, weights = model(x)
        expect_tensor(logits, what="logits of SelfAttention(4, 36, 4, 10)(x)", shape=(3, 10), dtype=torch.float32)
        weights = expect_tensor(weights, what="weights of SelfAttention(4, 36, 4, 10)(x)", shape=(3, 4, 10, 10))
        assert_close(weights, expected, what="weights of SelfAttention(4, 36, 4, 10)(x) (softmax(q k^T / sqrt(dh)) of each head)")


@pytest.mark.problem("SelfAttention")
def test_self_attention_logits_three_heads(student):
    """SelfAttention(4, 36, heads=3, 10) on a batch of 2: logits = classifier(norm(h + out(heads))), each head of width 12; every layer gets gradients"""
    torch.manual_seed(0)
    model = student.self_attention.SelfAttention(vocab_size=4, d=36, heads=3, max_len=10).eval()
    x = randint(4, 2, 10, seed=2)
    expected = handout_logits(model, x.clone(), heads=3)
    logits, weights = model(x)
    logits = expect_tensor(logits, what="logits of SelfAttention(4, 36, 3, 10)(x)", shape=(2, 10))
    assert_close(weights.detach(), handout_weights(model, x.clone(), heads=3),
                 what="weights of SelfAttention(4, 36, 3, 10)(x) (3 heads of width 12)")
    assert_close(logits.detach(), expected, what="logits of SelfAttention(4, 36, 3, 10)(x): classifier(norm(h + out(heads)))")
    model(x)[0].sum().backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None or not bool(p.grad.abs().sum() > 0)]
    expect(not missing, f"after backward() these parameters get no gradient, so they would never learn: {missing}.")


def token_matching_data(n, seed):
    sequences = randint(4, n, 10, seed=seed)
    return sequences, student_free_labels(sequences)


def student_free_labels(sequences):
    """The task's rule, written plainly (so this test does not depend on your labels)."""
    labels = torch.zeros_like(sequences)
    for b, row in enumerate(sequences.tolist()):
        for i, t in enumerate(row):
            labels[b, i] = int(t - 1 in row[:i] and t + 1 in row[i + 1:])
    return labels


@pytest.mark.problem("token_matching_training")
@pytest.mark.timeout(300)
def test_training_reaches_90_percent(student):
    """trained by the grader's loop (5 epochs on 2400 sequences), accuracy >= 0.9 on 600 new ones (and < 0.9 untrained)"""
    train_x, train_y = token_matching_data(2400, seed=42)
    val_x, val_y = token_matching_data(600, seed=43)
    torch.manual_seed(0)
    model = student.self_attention.SelfAttention(vocab_size=4, d=36, heads=4, max_len=10)
    untrained = binary_accuracy(model, val_x, val_y, output=token_logits)
    expect(untrained < 0.9, f"the untrained model already has accuracy {untrained:.3f}: its predictions must come "
                            "from the learned weights, not from the rule.")
    fit_student_model(student, model, train_x, train_y.float(), "bce_with_logits", Budget(epochs=5),
                      output="token_logits", metric="batch_binary_accuracy")
    accuracy = binary_accuracy(model, val_x, val_y, output=token_logits)
    expect(accuracy >= 0.9, f"validation accuracy {accuracy:.3f} after 5 epochs, expected at least 0.9 "
           f"(always predicting 0 gives {1 - val_y.float().mean().item():.3f}).")
