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
    raise NotImplementedError("self_attention: not implemented yet")


def multi_head_attention(S: torch.Tensor, W_Q: torch.Tensor, W_K: torch.Tensor, W_V: torch.Tensor,
                         W_O: torch.Tensor, num_heads: int = 4) -> torch.Tensor:
    """Multi-head self-attention with weight matrices.

    S is (B, T, d); each W_* is (d, d). Head h uses columns h*dh:(h+1)*dh of the
    projections and the scale 1/sqrt(dh). Heads are concatenated in order and
    multiplied by W_O. Returns (B, T, d).
    """
    raise NotImplementedError("multi_head_attention: not implemented yet")


def causal_mask(T: int, device=None) -> torch.Tensor:
    """Boolean (T, T) mask, True where key j <= query i (what query i may see)."""
    raise NotImplementedError("causal_mask: not implemented yet")


def causal_multi_head_attention(S: torch.Tensor, W_Q: torch.Tensor, W_K: torch.Tensor, W_V: torch.Tensor,
                                W_O: torch.Tensor, num_heads: int = 4) -> torch.Tensor:
    """As multi_head_attention, but query i attends only to keys j <= i."""
    raise NotImplementedError("causal_multi_head_attention: not implemented yet")


def scaled_dot_product_attention(Q: torch.Tensor, K: torch.Tensor, V: torch.Tensor,
                                 mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """softmax(Q K^T / sqrt(dk)) V, with scores set to -1e9 where mask == 0.

    Q is (..., T_q, dk), K is (..., T_k, dk), V is (..., T_k, dv); mask broadcasts
    to (..., T_q, T_k). Returns (output (..., T_q, dv), weights (..., T_q, T_k)).
    """
    raise NotImplementedError("scaled_dot_product_attention: not implemented yet")


class MultiHeadAttention(nn.Module):
    """Multi-head attention with learned projections W_q, W_k, W_v, W_o.

    forward(x (B, T, embed_dim), mask=None) -> (context (B, T, embed_dim), weights (B, H, T, T)).
    """

    def __init__(self, embed_dim: int, num_heads: int):
        super().__init__()
        raise NotImplementedError("MultiHeadAttention.__init__: not implemented yet")

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError("MultiHeadAttention.forward: not implemented yet")
