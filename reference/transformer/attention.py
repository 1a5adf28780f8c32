"""Attention functions and the MultiHeadAttention module.

Shapes: B batch, T sequence length, d model width, H heads, dh = d // H.
Nothing here may create a tensor on a fixed device: use the inputs' device.
"""
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
    q = (S @ W_Q).view(B, T, num_heads, dh).transpose(1, 2)
    k = (S @ W_K).view(B, T, num_heads, dh).transpose(1, 2)
    v = (S @ W_V).view(B, T, num_heads, dh).transpose(1, 2)
    scores = q @ k.transpose(-2, -1) / math.sqrt(dh)  # (B, H, T, T)
    if causal:
        scores = scores.masked_fill(~causal_mask(T, device=S.device), float("-inf"))
    weights = F.softmax(scores, dim=-1)
    y = weights @ v  # (B, H, T, dh)
    y = y.transpose(1, 2).contiguous().view(B, T, d)  # heads side by side: (B, T, d)
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
    return torch.tril(torch.ones(T, T, dtype=torch.bool, device=device))
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
    scores = Q @ K.transpose(-2, -1) / math.sqrt(d_k)  # (..., T_q, T_k)
    if mask is not None:
        scores = scores.masked_fill(mask == 0, -1e9)
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
        q = self.W_q(x).view(B, T, self.num_heads, self.head_dim).transpose(1, 2)
        k = self.W_k(x).view(B, T, self.num_heads, self.head_dim).transpose(1, 2)
        v = self.W_v(x).view(B, T, self.num_heads, self.head_dim).transpose(1, 2)
        context, weights = scaled_dot_product_attention(q, k, v, mask)  # (B, H, T, dh), (B, H, T, T)
        context = context.transpose(1, 2).contiguous().view(B, T, C)  # (B, T, C)
        return self.W_o(context), weights
        # END SOLUTION
