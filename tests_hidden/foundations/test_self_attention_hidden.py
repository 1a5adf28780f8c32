"""Hidden tests for self_attention.py: labels and the model against the reference (weights loaded
by name), and the model trained by the grader on data the student never saw."""
import pytest
import torch
import torch.nn as nn

from autograder.kit.checks import assert_close, assert_equal, expect, expect_tensor
from autograder.kit.inplace import leaves_unchanged
from autograder.kit.torchkit import copy_parameters, randint, randomize_, strict_device
from autograder.kit.training import Budget, binary_accuracy, fit_student_model, scaled_credit, token_logits

# The trained model: grader's loop, seed and data (seeds differ from the public test's).
TRAINING = Budget(epochs=8, seed=7)
TARGET = 0.9             # full points at this validation accuracy (the notebook's ">90%")


@pytest.mark.problem("token_matching_labels")
@pytest.mark.parametrize("vocab,shape", [(4, (16, 10)), (6, (8, 12)), (3, (30, 3)), (10, (3, 30))])
def test_labels_random(student, reference, vocab, shape):
    """random sequences, three to thirty tokens long"""
    x = randint(vocab, *shape, seed=vocab * 100 + shape[1])
    expected = reference.self_attention.token_matching_labels(x.clone())
    what = f"token_matching_labels(x {list(shape)}, values < {vocab})"
    with leaves_unchanged(what, sequences=x):
        got = student.self_attention.token_matching_labels(x)
        assert_equal(got, expected, what=what)   # a long tensor of x's shape, on x's device (the CPU)


@pytest.mark.problem("token_matching_labels")
def test_labels_one_sequence_and_repeats(student, reference):
    """a 1-D sequence with repeated values: predecessor strictly before, successor strictly after; one token alone"""
    x = torch.tensor([2, 2, 3, 3, 4, 4, 1, 2, 3])
    expected = reference.self_attention.token_matching_labels(x.clone())
    with leaves_unchanged(f"token_matching_labels({x.tolist()})", sequences=x):
        assert_equal(student.self_attention.token_matching_labels(x), expected, what=f"token_matching_labels({x.tolist()})")
    single = torch.tensor([[3], [1]])
    assert_equal(student.self_attention.token_matching_labels(single), torch.zeros(2, 1, dtype=torch.long),
                 what="token_matching_labels([[3], [1]]) (sequences of one token)")


def paired_models(student, reference, seed, **kwargs):
    ref = randomize_(reference.self_attention.SelfAttention(**kwargs), seed)
    stu = student.self_attention.SelfAttention(**kwargs)
    copy_parameters(stu, ref, what=f"SelfAttention({', '.join(f'{k}={v}' for k, v in kwargs.items())})")
    return stu, ref


@pytest.mark.problem("SelfAttention")
@pytest.mark.parametrize("kwargs,B,T", [({"vocab_size": 4, "d": 36, "heads": 4, "max_len": 10}, 3, 10),
                                        ({"vocab_size": 10, "d": 16, "heads": 2, "max_len": 32}, 2, 7),
                                        ({"vocab_size": 6, "d": 12, "heads": 1, "max_len": 12}, 4, 12),
                                        ({"vocab_size": 7, "d": 24, "heads": 6, "max_len": 64}, 2, 5),
                                        ({"vocab_size": 5, "d": 8, "heads": 2, "max_len": 8}, 1, 6)])
def test_forward_like_reference(student, reference, kwargs, B, T):
    """reference weights loaded by name: same logits and attention weights (eval mode); a batch of one keeps its
    batch axis (logits (1, T))"""
    stu, ref = paired_models(student, reference, seed=B * T, **kwargs)
    stu.eval(), ref.eval()
    x = randint(kwargs["vocab_size"], B, T, seed=T)
    e_logits, e_weights = ref(x.clone())
    what = f"SelfAttention({kwargs['vocab_size']}, {kwargs['d']}, {kwargs['heads']}, {kwargs['max_len']}) on x {[B, T]}"
    with leaves_unchanged(what, x=x):
        logits, weights = stu(x)
        # assert_close checks the type and shape too, and passes a wrong shape on to name the mistake
        assert_close(weights, e_weights, what=f"weights of {what}")
        assert_close(logits, e_logits, what=f"logits of {what}")


@pytest.mark.problem("SelfAttention")
def test_gradients_like_reference(student, reference):
    """the loss's gradient reaches every parameter as in the reference"""
    kwargs = {"vocab_size": 5, "d": 16, "heads": 4, "max_len": 10}
    stu, ref = paired_models(student, reference, seed=3, **kwargs)
    x = randint(5, 3, 8, seed=4)
    target = randint(2, 3, 8, seed=5).float()
    for model in (ref, stu):
        model.eval()
        with leaves_unchanged("SelfAttention(...)(x)", x=x):
            nn.functional.binary_cross_entropy_with_logits(model(x)[0], target).backward()
    got = dict(stu.named_parameters())
    for name, p in ref.named_parameters():
        expect(got[name].grad is not None, f"SelfAttention: parameter {name} got no gradient from the loss.")
        assert_close(got[name].grad, p.grad, what=f"the gradient of {name}")


@pytest.mark.problem("SelfAttention")
def test_device_agnostic(student, reference):
    """like the reference on the CPU, then the same model runs on the device of its parameters (checked on 'meta')"""
    kwargs = {"vocab_size": 4, "d": 16, "heads": 2, "max_len": 10}
    stu, ref = paired_models(student, reference, seed=11, **kwargs)
    stu.eval(), ref.eval()
    x = randint(4, 2, 10, seed=12)
    e_logits, e_weights = ref(x.clone())
    logits, weights = stu(x)
    assert_close(expect_tensor(logits, what="logits of SelfAttention(4, 16, 2, 10)", shape=e_logits.shape), e_logits,
                 what="logits of SelfAttention(4, 16, 2, 10) on the CPU")
    assert_close(expect_tensor(weights, what="weights of SelfAttention(4, 16, 2, 10)", shape=e_weights.shape), e_weights,
                 what="weights of SelfAttention(4, 16, 2, 10) on the CPU")
    model = stu.to("meta")
    with strict_device("meta"):
        logits, weights = model(torch.zeros(2, 10, dtype=torch.long, device="meta"))
    expect(logits.device.type == "meta" and tuple(logits.shape) == (2, 10),
           f"logits on meta should have shape [2, 10], got {list(logits.shape)} on {logits.device}.")
    expect(weights.device.type == "meta" and tuple(weights.shape) == (2, 2, 10, 10),
           f"weights on meta should have shape [2, 2, 10, 10], got {list(weights.shape)} on {weights.device}.")


def token_matching_data(reference, n, seed):
    sequences = randint(4, n, 10, seed=seed)
    return sequences, reference.self_attention.token_matching_labels(sequences)


@pytest.mark.problem("token_matching_training")
@pytest.mark.timeout(600)
def test_trained_accuracy(student, reference, score):
    """trained by the grader (8 epochs on 2400 new sequences): validation accuracy, points scaled up to 0.9"""
    train_x, train_y = token_matching_data(reference, 2400, seed=1001)
    val_x, val_y = token_matching_data(reference, 1000, seed=1002)
    floor = 1 - val_y.float().mean().item()     # always predicting 0
    output = token_logits                        # the logits of (logits, weights)
    torch.manual_seed(TRAINING.seed)
    model = student.self_attention.SelfAttention(vocab_size=4, d=36, heads=4, max_len=10)
    untrained = binary_accuracy(model, val_x, val_y, output=output)
    expect(untrained < TARGET, f"the untrained model already has accuracy {untrained:.3f}: "
           "its predictions must come from the learned weights, not from the rule.")
    fit_student_model(student, model, train_x, train_y.float(), "bce_with_logits", TRAINING, output="token_logits")
    accuracy = binary_accuracy(model, val_x, val_y, output=output)
    score.leaderboard("Token matching accuracy", round(accuracy, 4))
    expect(accuracy > floor, f"validation accuracy {accuracy:.3f} after training is no better than always "
           f"predicting 0 ({floor:.3f}).")
    credit = scaled_credit(accuracy, floor, TARGET)
    score.partial(credit, f"Validation accuracy {accuracy:.3f}: {credit:.0%} of the points "
                          f"(0% at {floor:.3f}, always predicting 0; 100% at {TARGET}).")
