"""Training and evaluating the debugging practical's review classifier (Parts A and B): the
notebook's `train(model, loader, optimizer, criterion)` and its evaluation, on the runner's device.

The classifier itself (the notebook's MultiHeadAttention in a fixed encoder layer) is given in
the section "Given" at the end, which the tests use: do not change it. A loader is any iterable
of `(ids, labels)` batches (a `torch.utils.data.DataLoader`, or a list), already on the model's
device; `model(ids)` returns `(logits, attention_weights)`.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def train(model: nn.Module, loader, optimizer: torch.optim.Optimizer, criterion) -> float:
    """One epoch over `loader` in train mode (zero the gradients, forward, loss, backward, step for
    each batch); returns the mean loss over the epoch's examples, as a float."""
    # BEGIN SOLUTION
    model.train()
    total_loss, total_examples = 0.0, 0
    for ids, labels in loader:
        optimizer.zero_grad()
        logits, _ = model(ids)
        loss = criterion(logits, labels)
        loss.backward()
        optimizer.step()
        total_examples += labels.size(0)
        total_loss += (loss.item() - total_loss) * labels.size(0) / total_examples
    return total_loss
    # END SOLUTION


def evaluate_classifier(model: nn.Module, loader) -> float:
    """The fraction of the loader's examples whose predicted class (the argmax of the logits) is
    their label, in eval mode and without gradients; the model's mode is restored afterwards."""
    # BEGIN SOLUTION
    was_training = model.training
    model.eval()
    correct, total = 0, 0
    with torch.no_grad():
        for ids, labels in loader:
            logits = model(ids)[0]
            predicted = logits.cpu().numpy().argmax(axis=1)
            correct += int((predicted == labels.cpu().numpy()).sum())
            total += len(labels)
    model.train(was_training)
    return correct / total
    # END SOLUTION


def train_classifier(model: nn.Module, train_loader, val_loader, optimizer: torch.optim.Optimizer, criterion,
                     epochs: int) -> list:
    """`epochs` epochs of `train`, each followed by `evaluate_classifier` on `val_loader`; returns the
    history, one `(train_loss, val_accuracy)` pair of floats per epoch."""
    # BEGIN SOLUTION
    history = []
    for _ in range(epochs):
        loss = train(model, train_loader, optimizer, criterion)
        history.append((loss, evaluate_classifier(model, val_loader)))
    return history
    # END SOLUTION


# ---------------------------------------------------------------------------------------------
# Given: the classifier, and what the tests use to build it and read results back (do not change).

def scaled_dot_product_attention(Q, K, V, mask=None):
    """softmax(Q K^T / sqrt(d_k)) V, with -1e9 where `mask` is 0; returns (output, weights)."""
    scores = torch.matmul(Q, K.transpose(-2, -1)) / math.sqrt(Q.size(-1))
    if mask is not None:
        scores = scores.masked_fill(mask == 0, -1e9)
    weights = F.softmax(scores, dim=-1)
    return torch.matmul(weights, V), weights


class MultiHeadAttention(nn.Module):
    """The notebook's Part A module: forward(x, mask) returns (context, attention weights)."""

    def __init__(self, embed_dim: int, num_heads: int):
        super().__init__()
        assert embed_dim % num_heads == 0, "Embedding dimension must be divisible by num_heads"
        self.embed_dim, self.num_heads, self.head_dim = embed_dim, num_heads, embed_dim // num_heads
        self.W_q = nn.Linear(embed_dim, embed_dim)
        self.W_k = nn.Linear(embed_dim, embed_dim)
        self.W_v = nn.Linear(embed_dim, embed_dim)
        self.W_o = nn.Linear(embed_dim, embed_dim)

    def split_heads(self, x, batch_size):
        return x.view(batch_size, -1, self.num_heads, self.head_dim).transpose(1, 2)

    def forward(self, x, mask=None):
        batch_size = x.size(0)
        Q = self.split_heads(self.W_q(x), batch_size)
        K = self.split_heads(self.W_k(x), batch_size)
        V = self.split_heads(self.W_v(x), batch_size)
        context, weights = scaled_dot_product_attention(Q, K, V, mask)
        context = context.transpose(1, 2).contiguous().view(batch_size, -1, self.embed_dim)
        return self.W_o(context), weights


class EncoderLayer(nn.Module):
    """The notebook's Part B layer, fixed: a residual connection around attention and around the
    feed-forward network, each followed by LayerNorm."""

    def __init__(self, embed_dim: int, num_heads: int, ffn_dim: int, dropout: float = 0.1):
        super().__init__()
        self.mha = MultiHeadAttention(embed_dim, num_heads)
        self.ffn = nn.Sequential(nn.Linear(embed_dim, ffn_dim), nn.ReLU(), nn.Linear(ffn_dim, embed_dim))
        self.norm1, self.norm2 = nn.LayerNorm(embed_dim), nn.LayerNorm(embed_dim)
        self.dropout1, self.dropout2 = nn.Dropout(dropout), nn.Dropout(dropout)

    def forward(self, x, mask=None):
        attn_output, weights = self.mha(x, mask)
        x = self.norm1(x + self.dropout1(attn_output))
        x = self.norm2(x + self.dropout2(self.ffn(x)))
        return x, weights


class ReviewClassifier(nn.Module):
    """The notebook's classifier with the fixed layer: word embeddings plus sinusoidal positions, one
    encoder layer whose attention ignores padding (id 0), the mean over the non-padding positions,
    a linear layer to 2 classes. forward(ids (B, T)) returns (logits (B, 2), attention weights
    (B, heads, T, T)). Unlike the notebook: the padding mask keeps the words (the notebook's kept
    the padding), the mean leaves padding out, and the embeddings are not scaled by
    sqrt(embed_dim) (with nn.Embedding's N(0, 1) weights that saturates the softmax, and the model
    learns far slower)."""

    def __init__(self, vocab_size: int, embed_dim: int = 32, num_heads: int = 4, ffn_dim: int = 64,
                 dropout: float = 0.1, max_len: int = 64):
        super().__init__()
        self.embed_dim = embed_dim
        self.embedding = nn.Embedding(vocab_size, embed_dim)
        self.encoder = EncoderLayer(embed_dim, num_heads, ffn_dim, dropout)
        self.classifier = nn.Linear(embed_dim, 2)
        position = torch.arange(max_len).unsqueeze(1)
        frequency = torch.exp(torch.arange(0, embed_dim, 2) * (-math.log(10000.0) / embed_dim))
        table = torch.zeros(max_len, embed_dim)
        table[:, 0::2], table[:, 1::2] = torch.sin(position * frequency), torch.cos(position * frequency)
        self.register_buffer("positions", table, persistent=False)

    def forward(self, x):
        keep = (x != 0)  # (B, T): True at words, False at padding
        h = self.embedding(x) + self.positions[:x.size(1)]
        h, weights = self.encoder(h, mask=keep.unsqueeze(1).unsqueeze(2))
        keep = keep.unsqueeze(-1).to(h.dtype)
        pooled = (h * keep).sum(dim=1) / keep.sum(dim=1).clamp(min=1.0)
        return self.classifier(pooled), weights


def build_classifier(config: dict, *, seed: int, device: str = "cpu", training: bool = True) -> ReviewClassifier:
    """`ReviewClassifier(**config)` initialised from `seed`, on `device`, in train mode (or eval mode
    with training=False). Each forward call is recorded in `model.calls` as (training mode,
    gradients recorded, batch size)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = ReviewClassifier(**config)
    model.to(device).train(training)
    model.calls = []
    model.register_forward_hook(lambda m, args, out: m.calls.append(
        (m.training, torch.is_grad_enabled(), int(args[0].shape[0]))))
    return model


def load_weights(model: nn.Module, params: dict) -> nn.Module:
    """Copy `params` (parameter name -> tensor, as `snapshot` gives them) into `model`, on its device."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(params[name].to(p.device))
    return model


def plain_adam(model: nn.Module, lr: float = 1e-3) -> torch.optim.Adam:
    """The notebook's optimiser: Adam over every parameter."""
    return torch.optim.Adam(model.parameters(), lr=lr)


def cross_entropy() -> nn.CrossEntropyLoss:
    """The notebook's criterion."""
    return nn.CrossEntropyLoss()


def seed_everything(seed: int, device: str = "cpu") -> None:
    """Seed the global random state that dropout draws from (on `device` too, for CUDA)."""
    torch.manual_seed(seed)
    if torch.device(device).type == "cuda":
        torch.cuda.manual_seed_all(seed)


def snapshot(model: nn.Module, optimizer: torch.optim.Optimizer | None = None) -> dict:
    """The model's state as plain data (on the CPU): parameters, gradients, mode, recorded calls;
    with `optimizer`: its step count and first moments, by parameter name."""
    names = {id(p): name for name, p in model.named_parameters()}
    result = {"training": model.training, "calls": list(getattr(model, "calls", [])),
              "params": {n: p.detach().cpu().clone() for n, p in model.named_parameters()},
              "grads": {n: None if p.grad is None else p.grad.detach().cpu().clone()
                        for n, p in model.named_parameters()}}
    if optimizer is not None:
        result["exp_avg"] = {names.get(id(p), "?"): s["exp_avg"].detach().cpu().clone()
                             for p, s in optimizer.state.items() if "exp_avg" in s}
        result["steps"] = {names.get(id(p), "?"): float(s["step"]) for p, s in optimizer.state.items() if "step" in s}
    return result
