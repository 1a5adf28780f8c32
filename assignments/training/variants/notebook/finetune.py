"""finetune.py written as the notebook's cells would be: a closure-free tokenize function with the
tokenizer's own padding call, a metric in PyTorch, the arguments built from a dict, and a Trainer
kept in a variable (a correct whole-file style: it must get full marks)."""
import torch
from transformers import Trainer, TrainingArguments


def tokenize_batch(tokenizer, batch, max_length):
    texts = [str(text) for text in batch["text"]]
    encoded = tokenizer(texts, max_length=max_length, truncation="longest_first", padding="max_length",
                        return_attention_mask=True)
    return {"input_ids": [list(ids) for ids in encoded["input_ids"]],
            "attention_mask": [list(mask) for mask in encoded["attention_mask"]],
            "labels": [int(label) for label in batch["label"]]}


def compute_metrics(eval_pred):
    logits, labels = eval_pred[0], eval_pred[1]
    logits, labels = torch.as_tensor(logits), torch.as_tensor(labels)
    correct = (logits.argmax(dim=1) == labels).sum().item()
    return {"accuracy": correct / labels.numel()}


def training_arguments(output_dir, *, epochs, batch_size, learning_rate, seed):
    settings = {
        "output_dir": output_dir,
        "eval_strategy": "epoch",
        "save_strategy": "no",
        "report_to": [],
        "num_train_epochs": epochs,
        "learning_rate": learning_rate,
        "per_device_train_batch_size": batch_size,
        "per_device_eval_batch_size": batch_size,
        "seed": seed,
        "logging_strategy": "no",
        "disable_tqdm": True,
    }
    return TrainingArguments(**settings)


def fine_tune(model, args, train_dataset, eval_dataset):
    trainer = Trainer(model, args, train_dataset=train_dataset, eval_dataset=eval_dataset,
                      compute_metrics=compute_metrics)
    trainer.train()
    results = trainer.evaluate(eval_dataset)
    return results, model


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
