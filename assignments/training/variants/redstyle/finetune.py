"""Fine-tuning a Hugging Face sequence classifier with `Trainer` (the debugging practical's Part C:
"the same problem with Hugging Face").

Four functions: a tokenize function for a batch of examples (truncation and padding), the metric
(`compute_metrics`), the `TrainingArguments`, and the fine-tuning itself with `Trainer`. The
section "Given" at the end is for your own experiments; the tests do not use it.
"""
import numpy as np
from transformers import Trainer, TrainingArguments
from transformers.trainer_utils import IntervalStrategy, SaveStrategy


def tokenize_batch(tokenizer, batch: dict, max_length: int):
    """Tokenize `batch["text"]` (a list of strings) cut to, and padded to, exactly `max_length`
    tokens; the result also holds the labels under "labels" (from `batch["label"]`)."""
    # BEGIN SOLUTION
    encoding = tokenizer(list(batch["text"]), truncation="longest_first", padding="max_length",
                         max_length=max_length, return_attention_mask=True)
    encoding["labels"] = [int(label) for label in batch["label"]]
    return encoding
    # END SOLUTION


def compute_metrics(eval_pred) -> dict:
    """`eval_pred` is `(logits, labels)` (NumPy arrays (N, C) and (N,)): returns {"accuracy": float}."""
    # BEGIN SOLUTION
    logits, labels = eval_pred
    predictions = np.argmax(logits, axis=-1)
    return {"accuracy": float((predictions == labels).mean())}
    # END SOLUTION


def training_arguments(output_dir: str, *, epochs: int, batch_size: int, learning_rate: float,
                       seed: int) -> TrainingArguments:
    """The `TrainingArguments` of the contract: evaluation after every epoch, no checkpoints, no
    reporting to any service, the budget given."""
    # BEGIN SOLUTION
    return TrainingArguments(
        output_dir=output_dir,
        num_train_epochs=epochs,
        per_device_train_batch_size=batch_size,
        per_device_eval_batch_size=batch_size,
        learning_rate=learning_rate,
        seed=seed,
        eval_strategy=IntervalStrategy.EPOCH,
        save_strategy=SaveStrategy.NO,
        logging_strategy="epoch",
        report_to="none",
        load_best_model_at_end=False,
        dataloader_num_workers=0,
    )
    # END SOLUTION


def fine_tune(model, args: TrainingArguments, train_dataset, eval_dataset) -> tuple:
    """Train `model` with a `Trainer` (with `compute_metrics`) on `train_dataset`, then evaluate it
    on `eval_dataset`; returns `(the evaluation's metrics, the trained model)`."""
    # BEGIN SOLUTION
    trainer = Trainer(model=model, args=args, train_dataset=train_dataset, eval_dataset=eval_dataset,
                      compute_metrics=compute_metrics)
    trainer.train()
    return trainer.evaluate(), trainer.model
    # END SOLUTION


# ---------------------------------------------------------------------------------------------
# Given: the notebook's flow end to end, for your own experiments (the tests do not use it).

def as_examples(encoding) -> list:
    """The columns of `tokenize_batch`'s result as a list of examples (one dict per text): a
    dataset `Trainer` takes, as `datasets`' `Dataset.map(tokenize_fn, batched=True)` would give."""
    columns = {key: list(values) for key, values in dict(encoding).items()}
    return [dict(zip(columns, row)) for row in zip(*columns.values())]


def demo(epochs: int = 3, max_length: int = 32, seed: int = 0) -> dict:
    """Fine-tune the grader's tiny DistilBERT on the grader's synthetic reviews; returns the metrics."""
    import tempfile

    from autograder.kit.tiny_hf import review_tokenizer, synthetic_reviews, tiny_classifier

    tokenizer = review_tokenizer()
    train = as_examples(tokenize_batch(tokenizer, synthetic_reviews(256, seed=1), max_length))
    evaluation = as_examples(tokenize_batch(tokenizer, synthetic_reviews(128, seed=2), max_length))
    with tempfile.TemporaryDirectory() as output_dir:
        args = training_arguments(output_dir, epochs=epochs, batch_size=16, learning_rate=5e-3, seed=seed)
        metrics, _ = fine_tune(tiny_classifier(len(tokenizer), seed=seed), args, train, evaluation)
    return metrics
