"""A correct attention.py in another style: Python loops over the heads (and over the batch
for single-head attention), masks through torch.where.

Kept as a whole file so that `make mutants` checks that a submission written this way gets
full marks (see mutants.toml, `ok-file-head-loop`).
"""
import math

import torch
import torch.nn as nn


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, visible: torch.Tensor | None = None) -> torch.Tensor:
    """One head on one or more rows: (..., T, dh) each; `visible` (T, T) is True where allowed."""
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if visible is not None:
        scores = torch.where(visible, scores, float("-inf"))
    return torch.softmax(scores, dim=-1) @ v


def self_attention(S: torch.Tensor, W_Q: torch.Tensor, W_K: torch.Tensor, W_V: torch.Tensor) -> torch.Tensor:
    """Single-head self-attention, one batch row at a time."""
    rows = [_attend(s @ W_Q, s @ W_K, s @ W_V) for s in S.unbind(0)]
    return torch.stack(rows, dim=0)


def _multi_head(S, W_Q, W_K, W_V, W_O, num_heads, causal):
    T, d = S.shape[1], S.shape[2]
    dh = d // num_heads
    visible = causal_mask(T, device=S.device) if causal else None
    heads = []
    for h in range(num_heads):
        columns = slice(h * dh, (h + 1) * dh)
        heads.append(_attend(S @ W_Q[:, columns], S @ W_K[:, columns], S @ W_V[:, columns], visible))
    return torch.cat(heads, dim=-1) @ W_O


def multi_head_attention(S: torch.Tensor, W_Q: torch.Tensor, W_K: torch.Tensor, W_V: torch.Tensor,
                         W_O: torch.Tensor, num_heads: int = 4) -> torch.Tensor:
    """Multi-head self-attention, one head at a time."""
    return _multi_head(S, W_Q, W_K, W_V, W_O, num_heads, causal=False)


def causal_mask(T: int, device=None) -> torch.Tensor:
    """(T, T), True where key j <= query i."""
    return torch.ones(T, T, device=device).tril().bool()


def causal_multi_head_attention(S: torch.Tensor, W_Q: torch.Tensor, W_K: torch.Tensor, W_V: torch.Tensor,
                                W_O: torch.Tensor, num_heads: int = 4) -> torch.Tensor:
    """As multi_head_attention, but query i attends only to keys j <= i."""
    return _multi_head(S, W_Q, W_K, W_V, W_O, num_heads, causal=True)


def scaled_dot_product_attention(Q: torch.Tensor, K: torch.Tensor, V: torch.Tensor,
                                 mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """softmax(Q K^T / sqrt(dk)) V, scores set to -1e9 where mask == 0; returns (output, weights)."""
    scores = torch.matmul(Q, K.transpose(-2, -1)) / math.sqrt(K.shape[-1])
    if mask is not None:
        scores = torch.where(mask == 0, -1e9, scores)
    weights = torch.softmax(scores, dim=-1)
    return torch.matmul(weights, V), weights


class MultiHeadAttention(nn.Module):
    """Multi-head attention with learned projections, attending one head at a time."""

    def __init__(self, embed_dim: int, num_heads: int):
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError("embed_dim must be a multiple of num_heads")
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.W_q = nn.Linear(embed_dim, embed_dim)
        self.W_k = nn.Linear(embed_dim, embed_dim)
        self.W_v = nn.Linear(embed_dim, embed_dim)
        self.W_o = nn.Linear(embed_dim, embed_dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        B, T, C = x.shape
        H = self.num_heads
        q = self.W_q(x).view(B, T, H, self.head_dim).transpose(1, 2)
        k = self.W_k(x).view(B, T, H, self.head_dim).transpose(1, 2)
        v = self.W_v(x).view(B, T, H, self.head_dim).transpose(1, 2)
        masks = [None] * H if mask is None else torch.broadcast_to(mask, (B, H, T, T)).unbind(1)
        contexts, weights = [], []
        for h in range(H):
            context, w = scaled_dot_product_attention(q[:, h], k[:, h], v[:, h], masks[h])
            contexts.append(context)
            weights.append(w)
        return self.W_o(torch.cat(contexts, dim=-1)), torch.stack(weights, dim=1)
