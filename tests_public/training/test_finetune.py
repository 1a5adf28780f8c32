"""Public tests for finetune.py (fine-tuning with Hugging Face's Trainer; a few seconds on a laptop CPU).

Nothing is downloaded: the tokenizer (WordPiece) and the tiny DistilBERT classifier are built locally
(autograder/kit/tiny_hf.py), on a small synthetic set of labelled reviews. `Trainer` picks the device
(a GPU when there is one).
"""
import math
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")   # nothing may reach the hub (set before transformers is imported)

import numpy as np
import pytest
import torch
from transformers import EvalPrediction, TrainingArguments

from autograder.kit.checks import assert_equal, assert_scalar_close, expect
from autograder.kit.tiny_hf import (classifier_logits, encode_reviews, review_tokenizer,
                                    synthetic_reviews, tiny_classifier)

MAX_LENGTH = 12
BUDGET = {"epochs": 3, "batch_size": 16, "learning_rate": 5e-3, "seed": 0}
FLOOR = 0.75           # the accuracy fine_tune must reach (the reference: 0.95 to 1.0 over 20 seeds)
OUTPUT_DIR = "finetune-output"   # relative: in the grader's sandbox, the worker's own folder


def word_ids(tokenizer, text: str) -> list[int]:
    return tokenizer.convert_tokens_to_ids(text.split())


def plain(column) -> list:
    """A column of tokenize_batch's result as Python lists: tensors and arrays (return_tensors="pt" or "np")
    read as the lists they hold."""
    return column.tolist() if hasattr(column, "tolist") else column


def columns(result, what: str) -> dict:
    """tokenize_batch's result (a BatchEncoding or a dict) as a plain dict of lists."""
    expect(hasattr(result, "keys") and hasattr(result, "__getitem__"),
           f"{what} should return the tokenizer's BatchEncoding (a dict of lists), got {type(result).__name__}.")
    return {key: [list(map(int, row)) if isinstance(row, (list, tuple)) else row for row in plain(result[key])]
            for key in result.keys()}


@pytest.mark.problem("tokenize_batch")
def test_tokenize_batch_truncates_and_pads(student):
    """three reviews, max_length 12: the long one cut to [CLS] 10 words [SEP], the short ones filled up with [PAD]; labels kept"""
    tokenizer = review_tokenizer()
    texts = ["the plot was great and the cast was wonderful and the ending felt dull",
             "boring film", "a very charming movie with superb music"]
    what = "tokenize_batch(tokenizer, {'text': [3 reviews], 'label': [1, 0, 1]}, max_length=12)"
    got = columns(student.finetune.tokenize_batch(tokenizer, {"text": texts, "label": [1, 0, 1]}, MAX_LENGTH), what)
    cls, sep, pad = tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id
    ids = [word_ids(tokenizer, text)[:MAX_LENGTH - 2] for text in texts]
    expected_ids = [[cls, *row, sep] + [pad] * (MAX_LENGTH - 2 - len(row)) for row in ids]
    expected_mask = [[1] * (len(row) + 2) + [0] * (MAX_LENGTH - 2 - len(row)) for row in ids]
    for key in ("input_ids", "attention_mask", "labels"):
        expect(key in got, f"{what} should hold {key!r}; it holds {sorted(got)}.")
    lengths = [len(row) for row in got["input_ids"]]
    expect(lengths == [MAX_LENGTH] * 3, f"{what}: every row should have exactly 12 tokens (truncation=True, "
                                         f"padding='max_length', max_length=12); the rows have {lengths}.")
    assert_equal(torch.tensor(got["input_ids"]), torch.tensor(expected_ids), what=f"input_ids of {what}")
    assert_equal(torch.tensor(got["attention_mask"]), torch.tensor(expected_mask), what=f"attention_mask of {what}")
    assert_equal(torch.tensor(got["labels"]), torch.tensor([1, 0, 1]), what=f"labels of {what} (batch['label'])")


@pytest.mark.problem("compute_metrics")
def test_compute_metrics(student):
    """accuracy of the argmax over the classes: 5 examples, 2 and 3 classes, a tuple and an EvalPrediction"""
    logits = np.array([[2.0, -1.0], [0.5, 1.5], [-3.0, -2.0], [1.0, 0.0], [-1.0, -4.0]], dtype=np.float32)
    labels = np.array([0, 1, 0, 0, 1])
    three = np.array([[0.1, 2.0, -1.0], [3.0, 0.0, 0.5], [-1.0, -2.0, -0.5], [0.2, 0.1, 0.3], [1.0, 2.0, 3.0]],
                     dtype=np.float32)
    three_labels = np.array([1, 0, 1, 2, 2])
    for eval_pred, expected, what in [((logits, labels), 0.6, "compute_metrics((logits [5, 2], labels [5]))"),
                                      (EvalPrediction(three, three_labels), 0.8,
                                       "compute_metrics(EvalPrediction(logits [5, 3], labels [5]))")]:
        got = student.finetune.compute_metrics(eval_pred)
        expect(isinstance(got, dict) and "accuracy" in got, f"{what} should return {{'accuracy': ...}}, got {got!r}.")
        value = got["accuracy"]
        expect(isinstance(value, (float, np.floating)) or type(value) is int,
               f"{what}['accuracy'] should be a float, got {type(value).__name__}.")
        expect(math.isclose(float(value), expected, abs_tol=1e-9),
               f"{what}['accuracy'] is {float(value)}, expected {expected} (the fraction of argmax(logits, -1) == labels).")


@pytest.mark.problem("training_arguments")
def test_training_arguments(student):
    """the budget given, evaluation every epoch, no checkpoints, no reporting; everything else left at its default"""
    args = student.finetune.training_arguments(OUTPUT_DIR, epochs=2, batch_size=8, learning_rate=0.01, seed=3)
    got = args.to_dict()
    expected = {"output_dir": OUTPUT_DIR, "num_train_epochs": 2, "per_device_train_batch_size": 8,
                "per_device_eval_batch_size": 8, "learning_rate": 0.01, "seed": 3, "eval_strategy": "epoch",
                "save_strategy": "no", "report_to": []}
    defaults = TrainingArguments(output_dir=OUTPUT_DIR).to_dict()
    for key in ("max_steps", "gradient_accumulation_steps", "weight_decay", "warmup_steps", "lr_scheduler_type",
                "optim", "max_grad_norm", "dataloader_num_workers", "load_best_model_at_end", "use_cpu"):
        expected[key] = defaults[key]
    wrong = {key: got.get(key, "(missing)") for key, value in expected.items() if got.get(key, "(missing)") != value}
    expect(not wrong, "training_arguments('finetune-output', epochs=2, batch_size=8, learning_rate=0.01, seed=3): "
           + "; ".join(f"{key} is {value!r}, expected {expected[key]!r}" for key, value in wrong.items()) + ".")


def trained_copy(trained, vocab_size: int):
    """A fresh classifier of the same configuration with the weights fine_tune returned."""
    expect(hasattr(trained, "state_dict"), f"fine_tune should return (metrics, model); the second item is a "
                                           f"{type(trained).__name__}.")
    model = tiny_classifier(vocab_size, seed=99)
    model.load_state_dict({k: v.detach().cpu() for k, v in trained.state_dict().items()})
    return model


@pytest.mark.problem("fine_tune")
@pytest.mark.isolate("finetune", "compute_metrics")   # in grading, with the reference's compute_metrics
@pytest.mark.timeout(120)
def test_fine_tune(student, tmp_path, monkeypatch):
    """3 epochs on 256 reviews: the metrics of trainer.evaluate() on the evaluation set, the trained model, accuracy >= 0.75"""
    monkeypatch.chdir(tmp_path)
    tokenizer = review_tokenizer()
    train = encode_reviews(tokenizer, synthetic_reviews(256, seed=1), 32)
    evaluation = encode_reviews(tokenizer, synthetic_reviews(128, seed=2), 32)
    args = TrainingArguments(output_dir=OUTPUT_DIR, num_train_epochs=BUDGET["epochs"], seed=BUDGET["seed"],
                             per_device_train_batch_size=BUDGET["batch_size"], learning_rate=BUDGET["learning_rate"],
                             per_device_eval_batch_size=BUDGET["batch_size"], eval_strategy="epoch",
                             save_strategy="no", report_to="none", disable_tqdm=True,
                             dataloader_pin_memory=False)
    result = student.finetune.fine_tune(tiny_classifier(len(tokenizer), seed=0), args, train, evaluation)
    expect(isinstance(result, tuple) and len(result) == 2, "fine_tune should return (trainer.evaluate(), trainer.model).")
    metrics, trained = result
    expect(isinstance(metrics, dict) and {"eval_accuracy", "eval_loss"} <= set(metrics),
           "fine_tune's metrics should be trainer.evaluate()'s, with 'eval_loss' and 'eval_accuracy' (give Trainer "
           f"compute_metrics); got the keys {sorted(metrics) if isinstance(metrics, dict) else type(metrics).__name__}.")
    expect(metrics.get("epoch") == BUDGET["epochs"], f"the metrics say epoch {metrics.get('epoch')}: train for the "
                                                     f"{BUDGET['epochs']} epochs of args before evaluating.")
    logits = classifier_logits(trained_copy(trained, len(tokenizer)), evaluation)
    labels = torch.tensor([e["labels"] for e in evaluation])
    accuracy = (logits.argmax(-1) == labels).float().mean().item()
    loss = torch.nn.functional.cross_entropy(logits, labels).item()
    what = "of trainer.evaluate() on the evaluation set, against the returned model's"
    assert_scalar_close(float(metrics["eval_loss"]), loss, what=f"eval_loss {what}", rtol=1e-3, atol=1e-4)
    assert_scalar_close(float(metrics["eval_accuracy"]), accuracy, what=f"eval_accuracy {what}", rtol=0, atol=1e-6)
    expect(accuracy >= FLOOR, f"after fine-tuning the accuracy on the evaluation set is {accuracy:.3f}; it should "
                              f"reach {FLOOR}.")
    leftovers = sorted(p.name for p in tmp_path.iterdir() if p.name != OUTPUT_DIR)
    expect(not leftovers, f"fine_tune wrote {leftovers} outside args.output_dir.")
