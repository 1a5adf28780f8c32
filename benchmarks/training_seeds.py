"""The `training` reference over 20 seeds: do its trainings clear the tests' floors with margin?

- overfitting one batch: the reference's `overfit_one_batch` on the public and hidden tests' settings
  (model, batch shape, AdamW lr 1e-2, CPU budget) with 20 model seeds and 20 batch seeds: the final
  loss's min and max next to the floor (0.5);
- the review classifier (classifier.py) as both its tests train it (`train` once per epoch, or
  `train_classifier`: the same computation; then `evaluate_classifier` on the 120 validation reviews)
  with 20 seeds (model, dropout and shuffling), 12 epochs (the CPU budget), against the floor 0.8, and
  the bag-of-words baseline (autograder/kit/reviews.py) on the same split;
- fine-tuning (finetune.py): the reference's `fine_tune` (Trainer, 3 epochs of 256 synthetic reviews, the
  tiny DistilBERT of autograder/kit/tiny_hf.py) on the public and hidden tests' data, with 20 seeds of the
  model and of `TrainingArguments.seed`: the evaluation accuracy's min and max next to the floor (0.75)
  and the hidden test's target (0.85).

`python benchmarks/training_seeds.py [overfit] [classifier] [fine_tune]` (a few minutes on 2 CPU cores)."""
import os
import pathlib
import sys

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "reference" / "training"))
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

import classifier  # noqa: E402
import training  # noqa: E402

sys.path.insert(0, str(ROOT))
from autograder import manifest  # noqa: E402
from autograder.kit import reviews  # noqa: E402

BUDGETS = manifest.load("training").budgets  # the CPU's: what a Gradescope container trains
STEPS = BUDGETS["overfit_steps"]["cpu"]

FLOOR = 0.5
SETTINGS = {  # name: (config, batch shape, padding per row, steps on the CPU)
    "public": ({"vocab_size": 11, "hidden_size": 16, "num_heads": 2, "dropout": 0.0, "seq_len": 6, "num_layers": 2},
               (4, 6), [0, 1, 3, 2], STEPS),
    "hidden": ({"vocab_size": 13, "hidden_size": 16, "num_heads": 2, "dropout": 0.0, "seq_len": 8, "num_layers": 2},
               (4, 8), [0, 2, 4, 1], STEPS),
}


def final_loss(config, shape, pads, steps, seed: int) -> float:
    model = training.build_model(config, seed=seed)
    batch = torch.randint(1, config["vocab_size"], shape, generator=torch.Generator().manual_seed(1000 + seed))
    for row, n in enumerate(pads):
        if n:
            batch[row, shape[1] - n:] = 0
    training.overfit_one_batch(model, batch, training.plain_adamw(model, lr=1e-2), pad_token_id=0, steps=steps)
    with torch.no_grad():
        return training.lm_loss(model.eval()(batch), batch, 0).item()


FINE_TUNE_FLOOR, FINE_TUNE_TARGET = 0.75, 0.85
FINE_TUNE_DATA = {"public": (1, 2, 128), "hidden": (11, 12, 160)}  # train seed, evaluation seed and size


def fine_tune_accuracy(train_seed: int, eval_seed: int, eval_size: int, seed: int) -> float:
    """The reference's fine_tune with the tests' budget, model seed and Trainer seed `seed`."""
    import contextlib
    import io
    import tempfile

    import finetune
    from autograder.kit.tiny_hf import encode_reviews, review_tokenizer, synthetic_reviews, tiny_classifier

    tokenizer = review_tokenizer()
    train = encode_reviews(tokenizer, synthetic_reviews(256, seed=train_seed), 32)
    evaluation = encode_reviews(tokenizer, synthetic_reviews(eval_size, seed=eval_seed), 32)
    with tempfile.TemporaryDirectory() as output_dir, contextlib.redirect_stdout(io.StringIO()):
        args = finetune.training_arguments(output_dir, epochs=3, batch_size=16, learning_rate=5e-3, seed=seed)
        metrics, _ = finetune.fine_tune(tiny_classifier(len(tokenizer), seed=seed), args, train, evaluation)
    return metrics["eval_accuracy"]


CLASSIFIER_FLOOR = 0.8
CLASSIFIER_EPOCHS = BUDGETS["classifier_epochs"]["cpu"]  # the CPU budget of both tests
CLASSIFIER_CONFIG = {"embed_dim": 32, "num_heads": 4, "ffn_dim": 64, "dropout": 0.1}


def classifier_accuracy(seed: int, epochs: int = CLASSIFIER_EPOCHS) -> float:
    """The validation accuracy the reference reaches as the tests train it (model, dropout and shuffling
    seeded with `seed`)."""
    data = reviews.review_tensors(str(reviews.LOCAL_ROOT))
    model = classifier.build_classifier(dict(CLASSIFIER_CONFIG, vocab_size=data["vocab_size"]), seed=seed)
    classifier.seed_everything(seed)
    train_loader = reviews.batches(*data["train"], 32, seed=seed)
    val_loader = reviews.batches(*data["test"], 64)
    optimizer, criterion = classifier.plain_adam(model, lr=1e-2), classifier.cross_entropy()
    return classifier.train_classifier(model, train_loader, val_loader, optimizer, criterion, epochs)[-1][1]


def overfit() -> None:
    for name, (config, shape, pads, steps) in SETTINGS.items():
        losses = [final_loss(config, shape, pads, steps, seed) for seed in range(20)]
        print(f"{name}: loss after {steps} steps over 20 seeds: min {min(losses):.3f}, max {max(losses):.3f} "
              f"(floor {FLOOR}; margin {FLOOR - max(losses):.3f})")


def classify() -> None:
    accuracies = [classifier_accuracy(seed) for seed in range(20)]
    print(f"classifier: validation accuracy after {CLASSIFIER_EPOCHS} epochs over 20 seeds: min {min(accuracies):.3f}, "
          f"max {max(accuracies):.3f} (floor {CLASSIFIER_FLOOR}; margin {min(accuracies) - CLASSIFIER_FLOOR:.3f})",
          flush=True)
    data = reviews.review_tensors(str(reviews.LOCAL_ROOT))
    baseline = [reviews.bag_of_words_accuracy(data, seed=seed) for seed in range(20)]
    print(f"bag of words (logistic regression on counts) over 20 seeds: test accuracy min "
          f"{min(b[1] for b in baseline):.3f}, max {max(b[1] for b in baseline):.3f}; train accuracy max "
          f"{max(b[0] for b in baseline):.3f} (floor {CLASSIFIER_FLOOR})")


def fine_tune() -> None:
    for name, data in FINE_TUNE_DATA.items():
        accuracies = [fine_tune_accuracy(*data, seed) for seed in range(20)]
        print(f"{name}: fine_tune's evaluation accuracy over 20 seeds: min {min(accuracies):.3f}, "
              f"max {max(accuracies):.3f} (floor {FINE_TUNE_FLOOR}, target {FINE_TUNE_TARGET}; margin "
              f"{min(accuracies) - FINE_TUNE_TARGET:+.3f} over the target)")


def main(parts: list[str]) -> None:
    torch.set_num_threads(1)
    for part in parts or ["overfit", "classifier", "fine_tune"]:
        {"overfit": overfit, "classifier": classify, "fine_tune": fine_tune}[part]()


if __name__ == "__main__":
    main(sys.argv[1:])
