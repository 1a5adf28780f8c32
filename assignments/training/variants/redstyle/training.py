"""Training a small GPT-style language model: optimiser, schedule, training step, evaluation,
overfitting one batch, and sampling (PW2, second half).

The model, `lm_loss` and `greedy_decode` come from model.py (given). Every function here must
work on whatever device the model and the batches are on (CPU or CUDA): create nothing on a
fixed device. The section "Given" at the end is used by the tests: do not change it.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from model import Transformer, lm_loss


def configure_optimizer(model: nn.Module, lr: float = 3e-4, weight_decay: float = 0.1,
                        betas: tuple = (0.9, 0.95)) -> torch.optim.AdamW:
    """AdamW with two parameter groups: the weights of every nn.Linear with `weight_decay`,
    every other parameter (biases, LayerNorm, embeddings) with weight decay 0.0."""
    # BEGIN SOLUTION
    linear_names = {f"{name}.weight" if name else "weight" for name, m in model.named_modules()
                    if isinstance(m, torch.nn.Linear)}
    params = dict(model.named_parameters())
    decay = [p for n, p in params.items() if n in linear_names]
    no_decay = [p for n, p in params.items() if n not in linear_names]
    groups = [{"params": decay, "weight_decay": weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=betas)
    # END SOLUTION


def lr_at(step: int, *, max_lr: float, min_lr: float, warmup_steps: int, total_steps: int) -> float:
    """The learning rate at `step` (0-based): linear warm-up to max_lr, then cosine decay to min_lr."""
    # BEGIN SOLUTION
    import numpy as np
    if step < warmup_steps:
        return float(max_lr * min(1.0, (step + 1) / warmup_steps))
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return float(min_lr + (max_lr - min_lr) * (1 + np.cos(np.pi * progress)) / 2)
    # END SOLUTION


def train_step(model: nn.Module, batch: torch.Tensor, optimizer: torch.optim.Optimizer, step: int, *,
               pad_token_id: int, max_norm: float = 1.0, schedule: dict | None = None) -> float:
    """One optimisation step on `batch` (B, T); returns the loss before the update, as a float."""
    # BEGIN SOLUTION
    model.train()
    optimizer.zero_grad(set_to_none=True)
    logits = model(batch)
    loss = lm_loss(logits, batch, pad_token_id)
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    total_norm = torch.sqrt(sum((g.detach().float() ** 2).sum() for g in grads))
    factor = torch.clamp(max_norm / (total_norm + 1e-6), max=1.0)
    for g in grads:
        g.mul_(factor.to(g.dtype))
    if schedule is not None:
        lr = lr_at(step, **schedule)
        for group in optimizer.param_groups:
            group["lr"] = lr
    optimizer.step()
    return loss.item()
    # END SOLUTION


def evaluate(model: nn.Module, loader, *, pad_token_id: int) -> tuple:
    """(mean loss over every non-padding target of the loader, its perplexity), without gradients,
    in eval mode; the model's mode is restored afterwards."""
    # BEGIN SOLUTION
    was_training = model.training
    model.eval()
    losses, counts = [], []
    with torch.inference_mode():
        for batch in loader:
            losses.append(lm_loss(model(batch), batch, pad_token_id).item())
            counts.append((batch[:, 1:] != pad_token_id).sum().item())
    model.train(was_training)
    import numpy as np
    mean_loss = float(np.average(losses, weights=counts))
    return mean_loss, math.exp(mean_loss)
    # END SOLUTION


def overfit_one_batch(model: nn.Module, batch: torch.Tensor, optimizer: torch.optim.Optimizer, *,
                      pad_token_id: int, steps: int, max_norm: float = 1.0) -> list:
    """Train on the same batch for `steps` steps (the notebook's sanity check); returns the loss
    of each step, before its update, as floats."""
    # BEGIN SOLUTION
    model.train()
    losses = []
    step = 0
    while step < steps:
        loss = lm_loss(model(batch), batch, pad_token_id)
        optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), max_norm)
        optimizer.step()
        losses += [float(loss)]
        step += 1
    return losses
    # END SOLUTION


@torch.no_grad()
def sample(model: nn.Module, input_ids: torch.Tensor, max_new_tokens: int = 32, *, temperature: float = 1.0,
           top_k: int | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """Append max_new_tokens sampled tokens to every row of input_ids (B, T0); temperature 0 is greedy."""
    # BEGIN SOLUTION
    for _ in range(max_new_tokens):
        context = input_ids[:, -model.seq_len:]  # the window rule of greedy_decode
        logits = model(context)[:, -1, :]  # (B, V)
        if temperature == 0:
            next_ids = logits.argmax(dim=-1, keepdim=True)
        else:
            logits = logits / temperature
            if top_k is not None:
                ordered, _ = torch.sort(logits, dim=-1, descending=True)
                kth = ordered[:, min(top_k, logits.size(-1)) - 1].unsqueeze(-1)
                logits = torch.where(logits < kth, torch.full_like(logits, float("-inf")), logits)
            probs = F.softmax(logits, dim=-1)
            next_ids = torch.multinomial(probs, num_samples=1, generator=generator)  # (B, 1)
        input_ids = torch.cat((input_ids, next_ids), dim=1)
    return input_ids
    # END SOLUTION


# ---------------------------------------------------------------------------------------------
# Given: the tests use these to build models and read results back (do not change them).

def build_model(config: dict, *, seed: int, device: str = "cpu", training: bool = True) -> Transformer:
    """`Transformer(**config)` initialised from `seed`, on `device`, in train mode (or eval mode
    with training=False). Each forward call is recorded in `model.calls` as (training mode,
    gradients recorded, input length)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Transformer(**config)
    model.to(device).train(training)
    model.calls = []
    model.register_forward_hook(lambda m, args, out: m.calls.append(
        (m.training, torch.is_grad_enabled(), int(args[0].shape[-1]))))
    return model


def plain_adamw(model: nn.Module, lr: float = 1e-3) -> torch.optim.AdamW:
    """One parameter group, no weight decay: the optimiser the tests give train_step."""
    return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)


def new_generator(seed: int, device: str = "cpu") -> torch.Generator:
    """A torch.Generator on `device`, seeded."""
    return torch.Generator(device=device).manual_seed(seed)


def snapshot(model: nn.Module, optimizer: torch.optim.Optimizer | None = None) -> dict:
    """The model's state as plain data (on the CPU): parameters, gradients, mode, recorded calls;
    with `optimizer`: its type, groups (parameters by name) and first moments by name."""
    names = {id(p): name for name, p in model.named_parameters()}
    result = {"training": model.training, "calls": list(getattr(model, "calls", [])),
              "params": {n: p.detach().cpu().clone() for n, p in model.named_parameters()},
              "grads": {n: None if p.grad is None else p.grad.detach().cpu().clone()
                        for n, p in model.named_parameters()}}
    if optimizer is not None:
        result["optimizer"] = type(optimizer).__name__
        result["groups"] = [{**{k: v for k, v in g.items() if k != "params" and isinstance(v, (int, float, tuple, bool))},
                             "params": [names.get(id(p), "?") for p in g["params"]]} for g in optimizer.param_groups]
        result["exp_avg"] = {names.get(id(p), "?"): s["exp_avg"].detach().cpu().clone()
                             for p, s in optimizer.state.items() if "exp_avg" in s}
    return result
