"""Learning the token-matching task with one multi-head self-attention layer.

Token matching: the token at position i, of value t_i, is labelled 1 when t_i - 1 appears
somewhere before i and t_i + 1 somewhere after i; otherwise 0.
Example: 5 3 4 1 5 6 -> 0 0 1 0 1 0.

Shapes: B batch, T sequence length, d model width, H heads, dh = d // H.
"""
import math

import numpy as np
import torch
import torch.nn as nn


def token_matching_labels(sequences: torch.Tensor) -> torch.Tensor:
    """Labels of the token-matching task for integer `sequences` (B, T) or (T,).

    Returns a long tensor of the same shape and device: 1 where t_i - 1 appears at some
    j < i and t_i + 1 at some j > i, else 0.
    """
    # BEGIN SOLUTION
    a = sequences.detach().cpu().numpy()
    T = a.shape[-1]
    i, j = np.arange(T)[:, None], np.arange(T)[None, :]
    pred = ((a[..., None, :] == a[..., :, None] - 1) & (j < i)).any(-1)
    succ = ((a[..., None, :] == a[..., :, None] + 1) & (j > i)).any(-1)
    return torch.as_tensor(pred & succ, dtype=torch.long).to(sequences.device)
    # END SOLUTION


class PositionalEncoding(nn.Module):
    """Sinusoidal position encodings (given): adds pe[:T] to a (B, T, d) input."""

    def __init__(self, d_model: int, max_len: int = 100):
        super().__init__()
        pe = torch.zeros(max_len, d_model)
        pos = torch.arange(0, max_len, dtype=torch.float).unsqueeze(1)
        div = torch.exp(torch.arange(0, d_model, 2).float() * -(np.log(10000) / d_model))
        pe[:, 0::2] = torch.sin(pos * div)
        pe[:, 1::2] = torch.cos(pos * div)
        self.register_buffer("pe", pe.unsqueeze(0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.pe[:, :x.size(1), :]


class Attention(nn.Module):
    """Scaled dot-product attention (given): returns (softmax(Q K^T / sqrt(d)) V, weights)."""

    def __init__(self, d: int):
        super().__init__()
        self.scale = 1 / np.sqrt(d)

    def forward(self, Q, K, V):
        scores = torch.matmul(Q, K.transpose(-2, -1)) * self.scale
        weights = torch.softmax(scores, dim=-1)
        return torch.matmul(weights, V), weights


class SelfAttention(nn.Module):
    """Token classifier: embeddings, positions, one multi-head self-attention layer, a logit per token.

    Sub-modules, with these names (the grader loads weights by name):
      embed: nn.Embedding(vocab_size, d)       pos: PositionalEncoding(d, max_len)
      q, k, v, out: nn.Linear(d, d)            norm: nn.LayerNorm(d)
      classifier: nn.Linear(d, 1)
    forward(x) with x (B, T) of token ids:
      h = pos(embed(x)); q(h), k(h), v(h) split into `heads` heads of width dh = d // heads
      (head i takes features i*dh:(i+1)*dh); per head softmax(q k^T / sqrt(dh)) v, no mask;
      heads concatenated in order; y = norm(h + out(concatenated));
      returns (logits (B, T) = classifier(y) without its last dimension,
               weights (B, heads, T, T), each row summing to 1 over the keys).
    """

    def __init__(self, vocab_size: int = 10, d: int = 64, heads: int = 4, max_len: int = 64):
        super().__init__()
        # BEGIN SOLUTION
        assert d % heads == 0, "d must be divisible by heads"
        self.heads = heads
        self.embed = nn.Embedding(vocab_size, d)
        self.pos = PositionalEncoding(d, max_len)
        self.q, self.k, self.v = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)
        self.out = nn.Linear(d, d)
        self.norm = nn.LayerNorm(d)
        self.classifier = nn.Linear(d, 1)
        # END SOLUTION

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # BEGIN SOLUTION
        h = self.pos(self.embed(x))                                   # (B, T, d)
        B, T, d = h.size()
        dh = d // self.heads
        # (B, T, d) -> (B, H, T, dh)
        q = self.q(h).view(B, T, self.heads, dh).transpose(1, 2)
        k = self.k(h).view(B, T, self.heads, dh).transpose(1, 2)
        v = self.v(h).view(B, T, self.heads, dh).transpose(1, 2)
        weights = torch.softmax(torch.einsum("bhqd,bhkd->bhqk", q, k) / math.sqrt(dh), dim=-1)
        y = torch.einsum("bhqk,bhkd->bhqd", weights, v)
        y = y.transpose(1, 2).contiguous().view(B, T, d)              # heads side by side
        y = self.norm(h + self.out(y))
        return self.classifier(y).squeeze(-1), weights
        # END SOLUTION
