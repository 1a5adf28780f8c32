"""A fixed training loop for tests that grade what a model *learns*.

The grader, not the student, trains: the same data, seed, optimiser and number of steps
for every submission, so a score depends on the model alone and is the same on every run.
The budget is a number of epochs (deterministic), not seconds; a model too slow to finish
it is stopped by the test's time limit (`@pytest.mark.timeout(...)`). Students get this
file too, so `run_tests.py` trains exactly as the grader does, and prints one line per
epoch (loss, and accuracy on the training batches) as it goes, through pytest's terminal
reporter: visible without `-s`.
"""
from __future__ import annotations

import contextlib
import dataclasses
from typing import Callable

import torch


@dataclasses.dataclass
class Budget:
    """How the grader trains: AdamW on mini-batches of a shuffled training set."""
    epochs: int = 5
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-3
    seed: int = 0


EPOCH_LINE = "training: epoch {epoch}/{epochs}: loss {loss:.4f}"
ACCURACY_PART = ", accuracy {accuracy:.3f} (training batches)"


def progress(line: str) -> None:
    """Show `line` at once: through pytest's terminal reporter during a test (past output
    capture, so students see it without `-s`), else on stdout."""
    config = None
    with contextlib.suppress(Exception):
        from .plugin import _CONFIG

        config = _CONFIG.get("config")
    reporter = config.pluginmanager.get_plugin("terminalreporter") if config is not None else None
    if reporter is None:
        print(line, flush=True)
        return
    capture = config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture is not None else contextlib.nullcontext():
        reporter.ensure_newline()
        reporter.write_line(line)
        reporter.flush()


def rounding_noise(moments: dict, ratio: float = 1e-6) -> set:
    """Names of the parameters whose optimiser moments (name -> tensor) are only rounding noise: at most
    `ratio` times the largest moment.

    A key projection's bias gets no gradient (softmax ignores a constant added to a row of scores), only
    rounding noise, which Adam turns into steps of about lr in the noise's sign: a correct submission that
    adds its loss up in another order moves such a parameter elsewhere. Compare their gradients and
    moments, not their values.
    """
    sizes = {name: float(m.detach().abs().max()) for name, m in moments.items() if m.numel()}
    largest = max(sizes.values(), default=0.0)
    return {name for name, size in sizes.items() if size <= ratio * largest}


def token_logits(out) -> torch.Tensor:
    """The logits (B, T) of a token classifier's `(logits, weights)`, for `fit`'s `output`.

    Logits of shape (B, T, 1) (the classifier's last dimension kept) are read as (B, T): that
    shape is the model's mistake, graded by the tests of its forward; a test of what the model
    learns should not lose its points to it too.
    """
    logits = out[0]
    if logits.dim() == 3 and logits.shape[-1] == 1:
        return logits.squeeze(-1)
    return logits


def batch_binary_accuracy(prediction: torch.Tensor, targets: torch.Tensor) -> float:
    """Fraction of `logit > 0` matching the 0/1 targets in one batch (for `fit`'s `metric`)."""
    return ((prediction.detach() > 0).long() == targets.long()).float().mean().item()


def fit(model: torch.nn.Module, inputs: torch.Tensor, targets: torch.Tensor, loss_fn: Callable,
        budget: Budget, output: Callable = lambda out: out, metric: Callable | None = None,
        log: Callable[[str], None] | None = progress) -> list[float]:
    """Train `model` in place on (inputs, targets); returns the mean loss of each epoch.

    `output` picks the prediction from what the model returns (e.g. `lambda out: out[0]`
    for a model returning `(logits, weights)`). Parameters are initialised by the caller
    (seed it before building the model); this seeds the shuffling only. After each epoch
    `log` (None: silent) gets a line with the epoch's mean loss and, with `metric(prediction,
    targets)` (e.g. `batch_binary_accuracy`), its mean over the epoch's batches; neither
    changes the training.
    """
    generator = torch.Generator().manual_seed(budget.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=budget.lr, weight_decay=budget.weight_decay)
    losses = []
    for epoch in range(budget.epochs):
        model.train()
        order = torch.randperm(len(inputs), generator=generator)
        total = correct = 0.0
        for start in range(0, len(inputs), budget.batch_size):
            batch = order[start:start + budget.batch_size]
            prediction = output(model(inputs[batch]))
            loss = loss_fn(prediction, targets[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(batch)
            if metric is not None:
                with torch.no_grad():
                    correct += metric(prediction, targets[batch]) * len(batch)
        losses.append(total / len(inputs))
        if log is not None:
            line = EPOCH_LINE.format(epoch=epoch + 1, epochs=budget.epochs, loss=losses[-1])
            log(line + (ACCURACY_PART.format(accuracy=correct / len(inputs)) if metric is not None else ""))
    return losses


@torch.no_grad()
def binary_accuracy(model: torch.nn.Module, inputs: torch.Tensor, targets: torch.Tensor,
                    output: Callable = lambda out: out) -> float:
    """Fraction of positions where `logit > 0` matches the 0/1 target, in eval mode."""
    model.eval()
    predictions = (output(model(inputs)) > 0).long()
    return (predictions == targets.long()).float().mean().item()


# ---- fit() where the student's model runs ----

RUNS_IN_WORKER = ("fit_by_name", "adamw_in_groups")  # what a test may run in the worker (Submission.kit_function)
LOSSES = {"bce_with_logits": torch.nn.BCEWithLogitsLoss}
METRICS = {"batch_binary_accuracy": batch_binary_accuracy}
OUTPUTS = {"token_logits": token_logits}


def fit_by_name(model: torch.nn.Module, inputs: torch.Tensor, targets: torch.Tensor, loss: str, budget: dict,
                output: str | None = None, metric: str | None = None, start: dict | None = None,
                log: bool = True) -> tuple[list[float], dict]:
    """`fit`, given only what crosses the sandbox's wire (names and plain data): the loss, the
    output (what picks the prediction from what the model returns) and the metric by their names
    in LOSSES, OUTPUTS and METRICS, the budget's fields, the weights to start from (`start`, by
    name). Returns the epochs' losses and the trained weights (`model.state_dict()`)."""
    if start is not None:
        copy_weights(model, start)
    losses = fit(model, inputs, targets, LOSSES[loss](), Budget(**budget),
                 output=(lambda out: out) if output is None else OUTPUTS[output],
                 metric=None if metric is None else METRICS[metric], log=progress if log else None)
    return losses, model.state_dict()


def fit_student_model(submission, model: torch.nn.Module, inputs: torch.Tensor, targets: torch.Tensor, loss: str,
                      budget: Budget, output: str | None = None, metric: str | None = None) -> list[float]:
    """`fit` of a model the student's `submission` built, run where the submission's code runs.

    Grading runs student code in the sandbox's worker: there the whole loop is one call, where a
    loop here would send the weights, the outputs and the gradients across at every step (a
    thousand round trips, 80 MB, for `foundations`' training test). On a student's laptop it runs
    here. The same data, seed, optimiser and steps either way; `model` ends with the trained
    weights. Epoch lines are shown only here (in the worker they would land in the test's output)."""
    from . import adapter

    local = isinstance(submission, adapter.Submission)
    run = submission.kit_function("training", "fit_by_name")
    losses, trained = run(model, inputs, targets, loss, dataclasses.asdict(budget), output, metric,
                          None if local else model.state_dict(), local)
    if not local:
        copy_weights(model, trained)
    return losses


def adamw_in_groups(model: torch.nn.Module, lr: float = 1e-3, groups: int = 2) -> torch.optim.AdamW:
    """AdamW without weight decay, the parameters split between `groups` parameter groups (every
    other one, for 2), as a configure_optimizer's are: for a test of what a function does to every
    group. Built where the student's model lives (`submission.kit_function`), as the starter's
    Given `plain_adamw` is, whatever version of the starter the student has."""
    params = list(model.parameters())
    return torch.optim.AdamW([{"params": params[i::groups]} for i in range(groups)], lr=lr, weight_decay=0.0)


@torch.no_grad()
def copy_weights(model: torch.nn.Module, state: dict) -> None:
    """Copy `state`'s tensors into `model`'s parameters and buffers of the same names."""
    own = {**dict(model.named_buffers()), **dict(model.named_parameters())}
    for name, value in state.items():
        if name in own and isinstance(value, torch.Tensor) and value.shape == own[name].shape:
            own[name].copy_(value)
    missing = [name for name, _ in model.named_parameters() if name not in state]
    if missing:
        raise RuntimeError(f"the trained weights lack {', '.join(missing[:5])}")


def scaled_credit(value: float, floor: float, target: float) -> float:
    """0 at or below `floor`, 1 at or above `target`, linear in between."""
    if target <= floor:
        raise ValueError("target must be above floor")
    return min(1.0, max(0.0, (value - floor) / (target - floor)))
