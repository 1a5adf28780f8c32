"""A fixed training loop for tests that grade what a model *learns*.

The grader, not the student, trains: the same data, seed, optimiser and number of steps
for every submission, so a score depends on the model alone and is the same on every run.
The budget is a number of epochs (deterministic), not seconds; a model too slow to finish
it is stopped by the test's time limit (`@pytest.mark.timeout(...)`). Students get this
file too, so `run_tests.py` trains exactly as the grader does.
"""
from __future__ import annotations

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


def fit(model: torch.nn.Module, inputs: torch.Tensor, targets: torch.Tensor, loss_fn: Callable,
        budget: Budget, output: Callable = lambda out: out) -> list[float]:
    """Train `model` in place on (inputs, targets); returns the mean loss of each epoch.

    `output` picks the prediction from what the model returns (e.g. `lambda out: out[0]`
    for a model returning `(logits, weights)`). Parameters are initialised by the caller
    (seed it before building the model); this seeds the shuffling only.
    """
    generator = torch.Generator().manual_seed(budget.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=budget.lr, weight_decay=budget.weight_decay)
    losses = []
    for _ in range(budget.epochs):
        model.train()
        order = torch.randperm(len(inputs), generator=generator)
        total = 0.0
        for start in range(0, len(inputs), budget.batch_size):
            batch = order[start:start + budget.batch_size]
            loss = loss_fn(output(model(inputs[batch])), targets[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(batch)
        losses.append(total / len(inputs))
    return losses


@torch.no_grad()
def binary_accuracy(model: torch.nn.Module, inputs: torch.Tensor, targets: torch.Tensor,
                    output: Callable = lambda out: out) -> float:
    """Fraction of positions where `logit > 0` matches the 0/1 target, in eval mode."""
    model.eval()
    predictions = (output(model(inputs)) > 0).long()
    return (predictions == targets.long()).float().mean().item()


def scaled_credit(value: float, floor: float, target: float) -> float:
    """0 at or below `floor`, 1 at or above `target`, linear in between."""
    if target <= floor:
        raise ValueError("target must be above floor")
    return min(1.0, max(0.0, (value - floor) / (target - floor)))
