"""`training`'s finetune.py (Hugging Face's Trainer) in the harness: what the sandbox must carry for it
(a BatchEncoding back as a dict, TrainingArguments and EvalPrediction handed over by value, Trainer
importable in a worker whose zygote preloaded transformers), and the reference's fine-tuning: no network,
nothing written outside its output folder, the same data in every run."""
import os
import socket
import textwrap

import numpy as np
import pytest

from autograder.kit import tiny_hf

SUBMISSION = '''
import numpy as np


def encode(tokenizer, texts):
    return tokenizer(texts, truncation=True, padding="max_length", max_length=6)


def describe_args(args):
    import torch._dynamo  # noqa: F401 - Trainer needs the real module

    from transformers import Trainer, TrainingArguments
    return (type(args).__name__, isinstance(args, TrainingArguments), args.num_train_epochs,
            args.eval_strategy.value, args.save_strategy.value, args.output_dir, Trainer.__name__)


def describe_prediction(eval_pred):
    logits, labels = eval_pred
    return type(eval_pred).__name__, eval_pred.predictions.tolist(), eval_pred.label_ids.tolist(), labels.tolist()


def call_metric(metric):
    from transformers import EvalPrediction
    return metric(EvalPrediction(predictions=np.array([[0.0, 1.0], [2.0, 0.0]]), label_ids=np.array([1, 1])))
'''

PRELOAD = ["torch", "numpy", "tokenizers", "accelerate", "transformers:Trainer", "transformers:TrainingArguments",
           "transformers:PreTrainedTokenizerFast"]


@pytest.fixture(scope="module")
def worker(tmp_path_factory):
    """SUBMISSION in a sandboxed worker whose zygote preloaded transformers' Trainer (as `training` does)."""
    from autograder.sandbox.client import RemoteSubmission

    folder = tmp_path_factory.mktemp("submission")
    (folder / "student.py").write_text(textwrap.dedent(SUBMISSION))
    submission = RemoteSubmission(folder, preload=PRELOAD)
    yield submission
    submission.sandbox.stop()


def test_batch_encoding_comes_back_as_a_dict(worker):
    tokenizer = tiny_hf.review_tokenizer()
    got = worker.student.encode(tokenizer, ["great film", "the plot was dull and the ending was boring"])
    assert type(got) is dict
    assert got == dict(tokenizer(["great film", "the plot was dull and the ending was boring"], truncation=True,
                                 padding="max_length", max_length=6))


def test_training_arguments_are_handed_over_by_value(worker):
    """the worker gets a real TrainingArguments (Trainer reads every field) and can import Trainer and
    torch._dynamo: the zygote's preload of transformers imported torch._dynamo whole"""
    from transformers import TrainingArguments

    args = TrainingArguments(output_dir="somewhere", num_train_epochs=2, eval_strategy="epoch", save_strategy="no")
    assert worker.student.describe_args(args) == ("TrainingArguments", True, 2, "epoch", "no", "somewhere", "Trainer")


def test_eval_prediction_is_handed_over_by_value_and_comes_back_as_a_tuple(worker):
    from transformers import EvalPrediction

    kind, predictions, label_ids, labels = worker.student.describe_prediction(
        EvalPrediction(predictions=np.array([[1.0, 2.0]]), label_ids=np.array([1])))
    assert (kind, predictions, label_ids, labels) == ("EvalPrediction", [[1.0, 2.0]], [1], [1])
    seen = []

    def metric(eval_pred):  # a grader function (an isolated reference's compute_metrics) called by student code
        seen.append(eval_pred)
        logits, labels = eval_pred
        return {"accuracy": float((np.argmax(logits, axis=-1) == labels).mean())}

    assert worker.student.call_metric(metric) == {"accuracy": 0.5}
    assert type(seen[0]) is tuple and [type(x) for x in seen[0]] == [np.ndarray, np.ndarray]


def test_synthetic_reviews_are_the_same_in_every_run():
    first, again = tiny_hf.synthetic_reviews(64, seed=5), tiny_hf.synthetic_reviews(64, seed=5)
    assert first == again and first != tiny_hf.synthetic_reviews(64, seed=6)
    assert 20 <= sum(first["label"]) <= 44
    tokenizer = tiny_hf.review_tokenizer()
    assert tokenizer.unk_token_id not in {i for row in tokenizer(first["text"])["input_ids"] for i in row}
    assert max(len(row) for row in tokenizer(first["text"])["input_ids"]) <= 27


def test_reference_fine_tune_uses_no_network_and_writes_only_its_output_dir(tmp_path, monkeypatch):
    """the reference's fine-tuning, in-process, with every socket refused: it trains, and leaves the
    working folder and its output folder empty (no checkpoint, no report, no cache)"""
    import importlib.util

    from autograder import manifest

    training = manifest.load("training")
    path = training.path(training.reference) / "finetune.py"
    spec = importlib.util.spec_from_file_location("finetune_reference", path)
    finetune = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(finetune)

    def refuse(*args, **kwargs):
        raise AssertionError("fine-tuning tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)
    tokenizer = tiny_hf.review_tokenizer()
    train = tiny_hf.encode_reviews(tokenizer, tiny_hf.synthetic_reviews(256, seed=1), 32)
    evaluation = tiny_hf.encode_reviews(tokenizer, tiny_hf.synthetic_reviews(64, seed=2), 32)
    args = finetune.training_arguments("out", epochs=3, batch_size=16, learning_rate=5e-3, seed=0)
    metrics, model = finetune.fine_tune(tiny_hf.tiny_classifier(len(tokenizer), seed=0), args, train, evaluation)
    assert metrics["epoch"] == 3 and metrics["eval_accuracy"] >= 0.8
    assert [p.name for p in tmp_path.iterdir()] in ([], ["out"])
    assert not os.path.exists("out") or os.listdir("out") == []
