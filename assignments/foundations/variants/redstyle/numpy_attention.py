"""Scaled dot-product and multi-head attention in NumPy (no torch here).

Shapes: T tokens, d_k query/key width, d_v value width, H heads. Inputs and outputs
are `np.ndarray`. Results have the inputs' floating dtype (float64 results are accepted for
float32 inputs too: see the handout); inputs are left unchanged.
"""
import numpy as np


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Softmax of `x` along `axis`, numerically stable: scores like 1000 or -1000 must
    give finite weights (subtract the maximum along `axis` before exponentiating)."""
    # BEGIN SOLUTION
    shifted = x - np.max(x, axis=axis, keepdims=True)
    e = np.exp(shifted)
    return e / np.sum(e, axis=axis, keepdims=True)
    # END SOLUTION


def scaled_dot_product_attention(Q: np.ndarray, K: np.ndarray, V: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """softmax(Q K^T / sqrt(d_k)) V, the softmax over the keys.

    Q is (..., T_q, d_k), K is (..., T_k, d_k), V is (..., T_k, d_v); leading dimensions
    broadcast. Returns (output (..., T_q, d_v), weights (..., T_q, T_k)).
    """
    # BEGIN SOLUTION
    d_k = Q.shape[-1]
    scores = np.einsum("...qd,...kd->...qk", Q, K) / np.sqrt(d_k)
    scores = scores.astype(np.result_type(Q, K), copy=False)   # np.sqrt(d_k) is a float64 scalar: keep the dtype
    weights = softmax(scores, axis=-1)
    return weights @ V, weights
    # END SOLUTION


def multi_head_attention(X: np.ndarray, W_q: np.ndarray, W_k: np.ndarray,
                         W_v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Multi-head self-attention with separate per-head projections (the notebook's version).

    X is (T, d_model) or (..., T, d_model). W_q, W_k are (H, d_k, d_model) and W_v is
    (H, d_v, d_model): head h projects with X @ W_q[h].T (and likewise K, V), then runs
    scaled dot-product attention with its own scale 1/sqrt(d_k). Returns (the heads'
    outputs concatenated in head order, (..., T, H * d_v), weights (..., H, T, T)).
    """
    # BEGIN SOLUTION
    Q = np.einsum("...td,hkd->...htk", X, W_q)
    K = np.einsum("...td,hkd->...htk", X, W_k)
    V = np.einsum("...td,hkd->...htk", X, W_v)
    out, weights = scaled_dot_product_attention(Q, K, V)   # (..., H, T, d_v), (..., H, T, T)
    H, T, d_v = out.shape[-3:]
    out = np.moveaxis(out, -3, -2)             # (..., T, H, d_v)
    return out.reshape(*out.shape[:-2], H * d_v), weights
    # END SOLUTION
