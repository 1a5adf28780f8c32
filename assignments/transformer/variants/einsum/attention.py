"""A correct attention.py in another style: every product is a torch.einsum.

Kept as a whole file so that `make mutants` checks that a submission written this way gets
full marks (see mutants.toml, `ok-file-einsum`).
"""
import math

import torch
import torch.nn as nn


def self_attention(S: torch.Tensor, W_Q: torch.Tensor, W_K: torch.Tensor, W_V: torch.Tensor) -> torch.Tensor:
    """softmax(Q K^T / sqrt(d_k)) V with Q = S W_Q, K = S W_K, V = S W_V."""
    Q = torch.einsum("bti,ik->btk", S, W_Q)
    K = torch.einsum("bti,ik->btk", S, W_K)
    V = torch.einsum("bti,ik->btk", S, W_V)
    scores = torch.einsum("bqk,bsk->bqs", Q, K) / math.sqrt(Q.shape[-1])
    return torch.einsum("bqs,bsk->bqk", scores.softmax(dim=-1), V)


def _multi_head(S, W_Q, W_K, W_V, W_O, num_heads, causal):
    B, T, d = S.shape
    dh = d // num_heads
    # (B, T, d) @ (d, d) -> (B, T, H, dh): head h holds columns h*dh:(h+1)*dh
    q = torch.einsum("bti,ie->bte", S, W_Q).reshape(B, T, num_heads, dh)
    k = torch.einsum("bti,ie->bte", S, W_K).reshape(B, T, num_heads, dh)
    v = torch.einsum("bti,ie->bte", S, W_V).reshape(B, T, num_heads, dh)
    scores = torch.einsum("bqhe,bkhe->bhqk", q, k) / math.sqrt(dh)
    if causal:
        scores = scores.masked_fill(~causal_mask(T, device=S.device), float("-inf"))
    y = torch.einsum("bhqk,bkhe->bqhe", scores.softmax(dim=-1), v).reshape(B, T, d)
    return torch.einsum("bti,io->bto", y, W_O)


def multi_head_attention(S: torch.Tensor, W_Q: torch.Tensor, W_K: torch.Tensor, W_V: torch.Tensor,
                         W_O: torch.Tensor, num_heads: int = 4) -> torch.Tensor:
    """Multi-head self-attention with weight matrices; heads are consecutive blocks of columns."""
    return _multi_head(S, W_Q, W_K, W_V, W_O, num_heads, causal=False)


def causal_mask(T: int, device=None) -> torch.Tensor:
    """(T, T), True where key j <= query i."""
    positions = torch.arange(T, device=device)
    return positions[None, :] <= positions[:, None]


def causal_multi_head_attention(S: torch.Tensor, W_Q: torch.Tensor, W_K: torch.Tensor, W_V: torch.Tensor,
                                W_O: torch.Tensor, num_heads: int = 4) -> torch.Tensor:
    """As multi_head_attention, but query i attends only to keys j <= i."""
    return _multi_head(S, W_Q, W_K, W_V, W_O, num_heads, causal=True)


def scaled_dot_product_attention(Q: torch.Tensor, K: torch.Tensor, V: torch.Tensor,
                                 mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """softmax(Q K^T / sqrt(dk)) V, scores set to -1e9 where mask == 0; returns (output, weights)."""
    scores = torch.einsum("...qd,...kd->...qk", Q, K) / math.sqrt(Q.shape[-1])
    if mask is not None:
        scores = scores.masked_fill(mask == 0, -1e9)
    weights = scores.softmax(dim=-1)
    return torch.einsum("...qk,...kv->...qv", weights, V), weights


class MultiHeadAttention(nn.Module):
    """Multi-head attention with learned projections W_q, W_k, W_v, W_o."""

    def __init__(self, embed_dim: int, num_heads: int):
        super().__init__()
        assert embed_dim % num_heads == 0, "embed_dim must be divisible by num_heads"
        self.num_heads = num_heads
        self.W_q = nn.Linear(embed_dim, embed_dim)
        self.W_k = nn.Linear(embed_dim, embed_dim)
        self.W_v = nn.Linear(embed_dim, embed_dim)
        self.W_o = nn.Linear(embed_dim, embed_dim)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        return torch.einsum("bthe->bhte", x.view(B, T, self.num_heads, C // self.num_heads))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        B, T, C = x.shape
        q, k, v = self._split(self.W_q(x)), self._split(self.W_k(x)), self._split(self.W_v(x))
        context, weights = scaled_dot_product_attention(q, k, v, mask)
        context = torch.einsum("bhte->bthe", context).reshape(B, T, C)
        return self.W_o(context), weights
