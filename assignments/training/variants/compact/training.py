"""Training a small GPT-style language model (a correct submission written another way: module
types for the groups, a closed-form schedule, summed losses, sorting for top-k)."""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from model import Transformer, lm_loss


def configure_optimizer(model, lr=3e-4, weight_decay=0.1, betas=(0.9, 0.95)):
    """Decay the weights of Linear layers; nothing else."""
    decay, other = [], []
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            (decay if isinstance(module, nn.Linear) and name == "weight" else other).append(p)
    return torch.optim.AdamW([dict(params=other, weight_decay=0.0), dict(params=decay, weight_decay=weight_decay)],
                             lr=lr, betas=betas)


def lr_at(step, *, max_lr, min_lr, warmup_steps, total_steps):
    if step < warmup_steps:
        return (step + 1) * max_lr / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_lr + (max_lr - min_lr) * (1 + math.cos(math.pi * progress)) / 2


def train_step(model, batch, optimizer, step, *, pad_token_id, max_norm=1.0, schedule=None):
    model.train()
    if schedule is not None:
        for group in optimizer.param_groups:
            group.update(lr=lr_at(step, **schedule))
    optimizer.zero_grad()
    loss = lm_loss(model(batch), batch, pad_token_id)
    loss.backward()
    torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.grad is not None], max_norm)
    optimizer.step()
    return float(loss)


def evaluate(model, loader, *, pad_token_id):
    mode = model.training
    model.eval()
    loss_sum = torch.zeros((), dtype=torch.float64)
    count = 0
    try:
        with torch.no_grad():
            for batch in loader:
                logits = model(batch)
                flat = logits[:, :-1].flatten(0, 1)
                targets = batch[:, 1:].flatten()
                loss_sum += F.cross_entropy(flat, targets, ignore_index=pad_token_id, reduction="sum").double().cpu()
                count += int(targets.ne(pad_token_id).sum())
    finally:
        model.train(mode)
    mean = loss_sum.item() / count
    return mean, math.exp(mean)


def overfit_one_batch(model, batch, optimizer, *, pad_token_id, steps, max_norm=1.0):
    history = []
    for _ in range(steps):
        model.train()
        for p in model.parameters():
            p.grad = None
        loss = lm_loss(model(batch), batch, pad_token_id)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), max_norm=max_norm)
        optimizer.step()
        history.append(loss.item())
    return history


def sample(model, input_ids, max_new_tokens=32, *, temperature=1.0, top_k=None, generator=None):
    out = input_ids
    with torch.no_grad():
        for _ in range(max_new_tokens):
            logits = model(out[:, -model.seq_len:])[:, -1]
            if temperature == 0:
                choice = logits.argmax(-1)[:, None]
            else:
                if top_k is not None and top_k < logits.size(-1):
                    threshold = logits.sort(dim=-1, descending=True).values[:, top_k - 1:top_k]
                    logits = logits.masked_fill(logits < threshold, -math.inf)
                choice = torch.multinomial(torch.softmax(logits / temperature, dim=-1), 1, generator=generator)
            out = torch.cat([out, choice], dim=-1)
    return out


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
