"""Hidden tests for finetune.py: each function against the reference on other batches, logits, budgets
and data, and the model fine-tuned by the student's `fine_tune` (with the reference's compute_metrics and
TrainingArguments, so a mistake there costs its own problem only): its accuracy, for partial credit and
the leaderboard."""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")   # nothing may reach the hub (set before transformers is imported)

import numpy as np
import pytest
import torch
from transformers import EvalPrediction

from autograder.kit.checks import assert_scalar_close, expect, fail
from autograder.kit.tiny_hf import (classifier_logits, encode_reviews, review_tokenizer,
                                    synthetic_reviews, tiny_classifier)
from autograder.kit.training import scaled_credit

OUTPUT_DIR = "finetune-output"   # relative: in the grader's sandbox, the worker's own folder
BUDGET = {"epochs": 3, "batch_size": 16, "learning_rate": 5e-3, "seed": 3}
FLOOR = 0.75     # fails below (a model that learned nothing scores about 0.5)
TARGET = 0.85    # full points from here (the reference: 0.906 to 1.0 over 20 seeds, benchmarks/training_seeds.py)
ARGUMENT_KEYS = ("output_dir", "num_train_epochs", "per_device_train_batch_size", "per_device_eval_batch_size",
                 "learning_rate", "seed", "eval_strategy", "save_strategy", "report_to", "max_steps",
                 "gradient_accumulation_steps", "weight_decay", "warmup_steps", "lr_scheduler_type", "optim",
                 "max_grad_norm", "dataloader_num_workers", "load_best_model_at_end", "use_cpu")


def plain(column) -> list:
    """A column of tokenize_batch's result as Python lists: tensors and arrays (return_tensors="pt" or "np")
    read as the lists they hold."""
    return column.tolist() if hasattr(column, "tolist") else column


def columns(result, what: str, keys=("input_ids", "attention_mask", "labels")) -> dict:
    expect(hasattr(result, "keys") and hasattr(result, "__getitem__"),
           f"{what} should return the tokenizer's BatchEncoding (a dict of lists), got {type(result).__name__}.")
    missing = [key for key in keys if key not in result.keys()]
    expect(not missing, f"{what} should hold {missing}; it holds {sorted(result.keys())}.")
    return {key: [list(map(int, row)) if isinstance(row, (list, tuple)) else int(row)
                 for row in plain(result[key])]
            for key in keys}


BATCHES = {
    "long reviews, max_length 8": (synthetic_reviews(4, seed=21), 8),
    "the longest review shorter than max_length 40": (synthetic_reviews(5, seed=22), 40),
    "one review, max_length 16": (synthetic_reviews(1, seed=23), 16),
    "mixed lengths, max_length 16": ({"text": ["dull", "a moving film and a superb cast with great music in it",
                                               "it was the film of the second half"], "label": [0, 1, 1]}, 16),
}


@pytest.mark.problem("tokenize_batch")
@pytest.mark.parametrize("case", list(BATCHES))
def test_tokenize_batch_like_reference(student, reference, case):
    """input_ids, attention_mask and labels as the reference's"""
    data, max_length = BATCHES[case]
    tokenizer = review_tokenizer()
    what = f"tokenize_batch(tokenizer, batch of {len(data['text'])} ({case}), max_length={max_length})"
    expected = columns(reference.finetune.tokenize_batch(tokenizer, {k: list(v) for k, v in data.items()},
                                                         max_length), "the reference")
    got = columns(student.finetune.tokenize_batch(tokenizer, {k: list(v) for k, v in data.items()}, max_length), what)
    if got != expected:  # the whole result, so that a catalogued mistake can be named
        lengths = sorted({len(row) for row in got["input_ids"]})
        key = next(k for k in expected if got[k] != expected[k])
        row = next(i for i, (a, b) in enumerate(zip(got[key], expected[key])) if a != b) if key != "labels" else 0
        fail(f"{what}: {key} differs from the expected" + (f" (rows of lengths {lengths}; every row should have "
             f"exactly {max_length} tokens)." if lengths != [max_length] else f", first at row {row}."),
             f"expected {key} {expected[key]}, got {got[key]}.", got=got, expected=expected)


def logits_case(seed: int, n: int, classes: int):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, classes)).astype(np.float32), rng.integers(0, classes, size=n)


METRIC_CASES = {"7 examples, 2 classes": (1, 7, 2), "9 examples, 4 classes": (2, 9, 4),
                "3 examples, 3 classes": (3, 3, 3), "40 examples, 2 classes": (4, 40, 2)}


@pytest.mark.problem("compute_metrics")
@pytest.mark.parametrize("case", list(METRIC_CASES))
def test_compute_metrics_like_reference(student, reference, case):
    """the accuracy of random logits, as a tuple and as Trainer's EvalPrediction"""
    logits, labels = logits_case(*METRIC_CASES[case])
    expected = float(reference.finetune.compute_metrics((logits.copy(), labels.copy()))["accuracy"])
    for eval_pred, kind in [((logits.copy(), labels.copy()), "(logits, labels)"),
                            (EvalPrediction(predictions=logits.copy(), label_ids=labels.copy()), "EvalPrediction")]:
        what = f"compute_metrics({kind}) ({case})"
        got = student.finetune.compute_metrics(eval_pred)
        expect(isinstance(got, dict) and "accuracy" in got, f"{what} should return {{'accuracy': ...}}, got {got!r}.")
        expect(isinstance(got["accuracy"], (float, np.floating)) or type(got["accuracy"]) is int,
               f"{what}['accuracy'] should be a float, got {type(got['accuracy']).__name__}.")
        if abs(float(got["accuracy"]) - expected) > 1e-9:  # the whole result, so that a mistake can be named
            fail(f"{what}['accuracy'] is {float(got['accuracy']):.6g}, not the fraction of argmax(logits, -1) == labels.",
                 f"expected {expected:.6g}.", got={"accuracy": float(got["accuracy"])}, expected={"accuracy": expected})


@pytest.mark.problem("training_arguments")
@pytest.mark.parametrize("budget", [{"epochs": 1, "batch_size": 4, "learning_rate": 3e-4, "seed": 11},
                                    {"epochs": 5, "batch_size": 32, "learning_rate": 2e-2, "seed": 0}])
def test_training_arguments_like_reference(student, reference, budget):
    """the contract's fields (budget, evaluation every epoch, no checkpoints, no reporting, defaults) as the reference's"""
    call = f"training_arguments('runs/ft', {', '.join(f'{k}={v}' for k, v in budget.items())})"
    expected = reference.finetune.training_arguments("runs/ft", **budget).to_dict()
    got = student.finetune.training_arguments("runs/ft", **budget).to_dict()
    wrong = {key: got.get(key, "(missing)") for key in ARGUMENT_KEYS if got.get(key, "(missing)") != expected[key]}
    expect(not wrong, f"{call}: " + "; ".join(f"{key} is {value!r}, expected {expected[key]!r}"
                                              for key, value in wrong.items()) + ".")


@pytest.mark.problem("fine_tune")
@pytest.mark.isolate("finetune", "compute_metrics")   # the reference's compute_metrics: eval_accuracy is checked below
@pytest.mark.timeout(120)
def test_fine_tune_accuracy(student, reference, score, tmp_path, monkeypatch):
    """3 epochs on 256 new reviews: trainer.evaluate()'s metrics match the returned model; accuracy, points scaled 0.75 to 0.85"""
    monkeypatch.chdir(tmp_path)
    tokenizer = review_tokenizer()
    train = encode_reviews(tokenizer, synthetic_reviews(256, seed=11), 32)
    evaluation = encode_reviews(tokenizer, synthetic_reviews(160, seed=12), 32)
    args = reference.finetune.training_arguments(OUTPUT_DIR, **BUDGET)
    result = student.finetune.fine_tune(tiny_classifier(len(tokenizer), seed=BUDGET["seed"]), args, train, evaluation)
    expect(isinstance(result, tuple) and len(result) == 2, "fine_tune should return (trainer.evaluate(), trainer.model).")
    metrics, trained = result
    expect(isinstance(metrics, dict) and {"eval_accuracy", "eval_loss"} <= set(metrics),
           "fine_tune's metrics should be trainer.evaluate()'s, with 'eval_loss' and 'eval_accuracy' (give Trainer "
           f"compute_metrics); got {sorted(metrics) if isinstance(metrics, dict) else type(metrics).__name__}.")
    expect(metrics.get("epoch") == BUDGET["epochs"], f"the metrics say epoch {metrics.get('epoch')}: train for the "
                                                     f"{BUDGET['epochs']} epochs of args, then evaluate.")
    expect(hasattr(trained, "state_dict"), f"fine_tune should return (metrics, model); the second item is a "
                                           f"{type(trained).__name__}.")
    model = tiny_classifier(len(tokenizer), seed=99)
    model.load_state_dict({k: v.detach().cpu() for k, v in trained.state_dict().items()})
    logits = classifier_logits(model, evaluation)
    labels = np.array([e["labels"] for e in evaluation])
    accuracy = reference.finetune.compute_metrics((logits.numpy(), labels))["accuracy"]
    loss = torch.nn.functional.cross_entropy(logits, torch.from_numpy(labels)).item()
    what = "of trainer.evaluate() on the evaluation set, against the returned model's"
    assert_scalar_close(float(metrics["eval_loss"]), loss, what=f"eval_loss {what}", rtol=1e-3, atol=1e-4)
    assert_scalar_close(float(metrics["eval_accuracy"]), accuracy, what=f"eval_accuracy {what} (what "
                        "compute_metrics gives)", rtol=0, atol=1e-6)
    score.leaderboard("Fine-tuning accuracy", round(accuracy, 4))
    expect(accuracy >= FLOOR, f"after fine-tuning the accuracy on the evaluation set is {accuracy:.3f}; it should "
                              f"reach {FLOOR}.")
    credit = 0.5 + 0.5 * scaled_credit(accuracy, FLOOR, TARGET)
    score.partial(credit, f"Evaluation accuracy {accuracy:.3f}: {credit:.0%} of the points (50% at {FLOOR}, "
                          f"100% from {TARGET}).")
