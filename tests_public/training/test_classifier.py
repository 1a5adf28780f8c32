"""Public tests for classifier.py (the debugging practical's review classifier; about 5 s on a laptop CPU).

The reviews come from the corpus shipped in autograder/kit/data/reviews/ (read with NLTK's
CategorizedPlaintextCorpusReader, see autograder/kit/reviews.py). Models are built by the given
`build_classifier` of classifier.py and read back with the given `snapshot`: keep the "Given"
section as it is. Tests run on CUDA when your machine has a GPU (TF32 off), else on the CPU.
"""
import numpy as np
import pytest
import torch

from autograder.kit import reviews
from autograder.kit.checks import assert_scalar_close, expect
from autograder.kit.devices import budget, device  # noqa: F401 - `device` is a fixture

FLOOR = 0.8                             # validation accuracy the trained classifier must reach
LR = 1e-2


def data() -> dict:
    return reviews.review_tensors(str(reviews.LOCAL_ROOT))


def config(dropout: float) -> dict:
    return {"vocab_size": data()["vocab_size"], "embed_dim": 32, "num_heads": 4, "ffn_dim": 64, "dropout": dropout}


def small_loader(split: str, device: str) -> list:
    """The first 21 reviews of `split` in batches of 8, 8 and 5 (the last batch is smaller)."""
    ids, labels = data()[split]
    return reviews.batches(ids[:21], labels[:21], 8, device=device)


def expect_float(value, what: str) -> float:
    expect(isinstance(value, (float, int)) and not isinstance(value, bool),
           f"{what} should return a Python float, got {type(value).__name__} (use loss.item()).")
    return float(value)


def accuracy_in_history(value, what: str) -> float:
    """A validation accuracy of train_classifier's history: evaluate_classifier's value, whose type is graded
    with evaluate_classifier (a Python float); here a one-element tensor or NumPy scalar is read as its number."""
    if isinstance(value, torch.Tensor) and value.numel() == 1 or isinstance(value, np.generic):
        value = value.item()
    return expect_float(value, what)


@pytest.mark.problem("train_classifier")
def test_train_two_epochs(student, device):
    """train: two epochs on batches of 8, 8 and 5 from a model in eval mode: the mean loss over the examples of each epoch, one step per batch, in train mode"""
    model = student.classifier.build_classifier(config(0.0), seed=1, device=device, training=False)
    optimizer = student.classifier.plain_adam(model, lr=LR)
    loader = small_loader("train", device)
    expected = [0.7503576704433986, 0.6397721306199119]
    for epoch, want in enumerate(expected):
        loss = student.classifier.train(model, loader, optimizer, student.classifier.cross_entropy())
        assert_scalar_close(expect_float(loss, "train"), want, rtol=1e-4, atol=1e-5,
                            what=f"the mean loss train returned for epoch {epoch + 1} (batches of 8, 8 and 5)")
    got = student.classifier.snapshot(model, optimizer)
    calls = [tuple(c) for c in got["calls"]]
    expect(calls == [(True, True, 8), (True, True, 8), (True, True, 5)] * 2,
           f"train should call the model once per batch, in train mode with gradients recorded; the calls were "
           f"(training, grad enabled, batch size) = {calls}.")
    expect(set(got["steps"].values()) == {6.0}, f"after two epochs of 3 batches the optimiser should have stepped 6 "
                                               f"times; its step counts are {sorted(set(got['steps'].values()))}.")
    expect(got["training"], "train should leave the model in train mode (call model.train() first).")


@pytest.mark.problem("evaluate_classifier")
def test_evaluate_classifier(student, device):
    """evaluate_classifier: accuracy over the examples of batches of 8, 8 and 5, dropout 0.5, in eval mode without gradients, mode restored"""
    model = student.classifier.build_classifier(config(0.5), seed=2, device=device)
    got = student.classifier.evaluate_classifier(model, small_loader("test", device))
    assert_scalar_close(expect_float(got, "evaluate_classifier"), 9 / 21, rtol=1e-6, atol=1e-9,
                        what="the accuracy from evaluate_classifier (correct predictions over all 21 examples)")
    snap = student.classifier.snapshot(model)
    expect(all(not training and not grad for training, grad, _ in snap["calls"]),
           "evaluate_classifier should run the model in eval mode and under torch.no_grad().")
    expect(snap["training"], "the model was in train mode before evaluate_classifier: it should be in train mode after.")


@pytest.mark.problem("train_classifier")
@pytest.mark.timeout(90)
def test_classifier_learns_the_reviews(student, device):
    """train_classifier: 12 epochs (20 on a GPU) on 480 reviews reach a validation accuracy of at least 0.8 on the other 120"""
    epochs = budget("classifier_epochs", device)
    model = student.classifier.build_classifier(config(0.1), seed=0, device=device)
    student.classifier.seed_everything(0, device)
    train_loader = reviews.batches(*data()["train"], 32, device=device, seed=0)
    val_loader = reviews.batches(*data()["test"], 64, device=device)
    history = student.classifier.train_classifier(model, train_loader, val_loader,
                                                  student.classifier.plain_adam(model, lr=LR),
                                                  student.classifier.cross_entropy(), epochs)
    expect(isinstance(history, list) and len(history) == epochs,
           f"train_classifier should return a list of {epochs} (train_loss, val_accuracy) pairs, one per epoch.")
    for entry in history:
        expect(isinstance(entry, (tuple, list)) and len(entry) == 2,
               f"each entry of the history should be a (train_loss, val_accuracy) pair, got {entry!r}.")
        expect_float(entry[0], "train_classifier's train loss")
        accuracy_in_history(entry[1], "train_classifier's validation accuracy")
    expect(history[-1][0] < history[0][0], f"the training loss should fall over {epochs} epochs; it went from "
                                           f"{history[0][0]:.3f} to {history[-1][0]:.3f}.")
    # measured here, not by your evaluate_classifier (a mistake there costs its own problem only)
    accuracy = validation_accuracy(model, student.classifier.snapshot(model)["params"], val_loader)
    expect(accuracy >= FLOOR, f"after {epochs} epochs the validation accuracy is {accuracy:.3f}; it should reach {FLOOR} "
                              f"(your history: {[(round(l, 3), round(float(a), 3)) for l, a in history]}).")


def validation_accuracy(model, params: dict, loader) -> float:
    """The fraction of the loader's examples the model, with the trained `params` (read back with the given
    `snapshot`), classifies right in eval mode."""
    model.eval()
    correct = total = 0
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(params[name].to(p.device))
        for ids, labels in loader:
            logits, _ = model(ids)
            correct += int((logits.argmax(dim=-1) == labels).sum())
            total += len(labels)
    return correct / total
