"""Attention functions and the MultiHeadAttention module.

Shapes: B batch, T sequence length, d model width, H heads, dh = d // H.
Nothing here may create a tensor on a fixed device: use the inputs' device.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def self_attention(S: torch.Tensor, W_Q: torch.Tensor, W_K: torch.Tensor, W_V: torch.Tensor) -> torch.Tensor:
    """Single-head self-attention.

    S is (B, T, d_in); W_Q, W_K, W_V are (d_in, d_k).
    Returns softmax(Q K^T / sqrt(d_k), dim=-1) @ V, shape (B, T, d_k).
    """
    # BEGIN SOLUTION
    Q, K, V = S @ W_Q, S @ W_K, S @ W_V  # (B, T, d_k) each
    d_k = Q.size(-1)
    scores = Q @ K.transpose(-2, -1) / math.sqrt(d_k)  # (B, T, T)
    weights = F.softmax(scores, dim=-1)
    return weights @ V  # (B, T, d_k)
    # END SOLUTION


# BEGIN SOLUTION
def _multi_head(S, W_Q, W_K, W_V, W_O, num_heads, causal):
    B, T, d = S.size()
    dh = d // num_heads
    # project, then split the last dimension into heads: (B, T, d) -> (B, H, T, dh)
    q = torch.stack((S @ W_Q).chunk(num_heads, dim=-1), dim=1)
    k = torch.stack((S @ W_K).chunk(num_heads, dim=-1), dim=1)
    v = torch.stack(torch.split(S @ W_V, dh, dim=-1), dim=1)
    scores = q @ k.transpose(-2, -1) / math.sqrt(dh)  # (B, H, T, T)
    if causal:
        scores = scores.masked_fill(~causal_mask(T, device=S.device), float("-inf"))
    weights = F.softmax(scores, dim=-1)
    y = weights @ v  # (B, H, T, dh)
    y = torch.cat(y.unbind(dim=1), dim=-1)
    return y @ W_O
# END SOLUTION


def multi_head_attention(S: torch.Tensor, W_Q: torch.Tensor, W_K: torch.Tensor, W_V: torch.Tensor,
                         W_O: torch.Tensor, num_heads: int = 4) -> torch.Tensor:
    """Multi-head self-attention with weight matrices.

    S is (B, T, d); each W_* is (d, d). Head h uses columns h*dh:(h+1)*dh of the
    projections and the scale 1/sqrt(dh). Heads are concatenated in order and
    multiplied by W_O. Returns (B, T, d).
    """
    # BEGIN SOLUTION
    return _multi_head(S, W_Q, W_K, W_V, W_O, num_heads, causal=False)
    # END SOLUTION


def causal_mask(T: int, device=None) -> torch.Tensor:
    """Boolean (T, T) mask, True where key j <= query i (what query i may see)."""
    # BEGIN SOLUTION
    idx = torch.arange(T, device=device)
    return idx[:, None] >= idx[None, :]
    # END SOLUTION


def causal_multi_head_attention(S: torch.Tensor, W_Q: torch.Tensor, W_K: torch.Tensor, W_V: torch.Tensor,
                                W_O: torch.Tensor, num_heads: int = 4) -> torch.Tensor:
    """As multi_head_attention, but query i attends only to keys j <= i."""
    # BEGIN SOLUTION
    return _multi_head(S, W_Q, W_K, W_V, W_O, num_heads, causal=True)
    # END SOLUTION


def scaled_dot_product_attention(Q: torch.Tensor, K: torch.Tensor, V: torch.Tensor,
                                 mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """softmax(Q K^T / sqrt(dk)) V, with scores set to -1e9 where mask == 0.

    Q is (..., T_q, dk), K is (..., T_k, dk), V is (..., T_k, dv); mask broadcasts
    to (..., T_q, T_k). Returns (output (..., T_q, dv), weights (..., T_q, T_k)).
    """
    # BEGIN SOLUTION
    d_k = Q.size(-1)
    scores = torch.matmul(Q, K.transpose(-2, -1))
    if mask is not None:
        scores = torch.where(mask.bool(), scores, torch.finfo(scores.dtype).min)
    scores = scores / d_k ** 0.5
    weights = F.softmax(scores, dim=-1)
    return weights @ V, weights
    # END SOLUTION


class MultiHeadAttention(nn.Module):
    """Multi-head attention with learned projections W_q, W_k, W_v, W_o.

    forward(x (B, T, embed_dim), mask=None) -> (context (B, T, embed_dim), weights (B, H, T, T)).
    """

    def __init__(self, embed_dim: int, num_heads: int):
        super().__init__()
        # BEGIN SOLUTION
        if embed_dim % num_heads != 0:
            raise ValueError(f"embed_dim={embed_dim} is not divisible by num_heads={num_heads}")
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.W_q = nn.Linear(embed_dim, embed_dim)
        self.W_k = nn.Linear(embed_dim, embed_dim)
        self.W_v = nn.Linear(embed_dim, embed_dim)
        self.W_o = nn.Linear(embed_dim, embed_dim)
        # END SOLUTION

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        # BEGIN SOLUTION
        B, T, C = x.size()
        # (B, T, C) -> (B, H, T, dh)
        q, k, v = (self._split(w(x)) for w in (self.W_q, self.W_k, self.W_v))
        context, weights = scaled_dot_product_attention(q, k, v, mask)  # (B, H, T, dh), (B, H, T, T)
        context = context.transpose(1, 2).contiguous().view(B, T, C)  # (B, T, C)
        return self.W_o(context), weights

    def _split(self, t):
        return t.view(t.size(0), -1, self.num_heads, self.head_dim).transpose(1, 2)
        # END SOLUTION
