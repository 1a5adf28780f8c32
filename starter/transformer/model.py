"""A small GPT-style Transformer: causal self-attention, feed-forward, blocks, LM loss, decoding.

Shapes: B batch, T sequence length, C = hidden_size, H heads, V vocabulary.
Attribute names are part of the contract: the graders load weights by name.
You may import from attention.py if you want to reuse your functions.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention with dropout on the weights and on the output."""

    def __init__(self, hidden_size=8, num_heads=2, dropout=0.1, seq_len=3):
        super().__init__()
        raise NotImplementedError("CausalSelfAttention.__init__: not implemented yet")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError("CausalSelfAttention.forward: not implemented yet")


class FeedForward(nn.Module):
    """Linear(C, 4C) -> ReLU -> Linear(4C, C) -> Dropout."""

    def __init__(self, hidden_size, dropout):
        super().__init__()
        raise NotImplementedError("FeedForward.__init__: not implemented yet")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError("FeedForward.forward: not implemented yet")


class Block(nn.Module):
    """Pre-norm Transformer block: x + attn(ln1(x)), then x + ffn(ln2(x))."""

    def __init__(self, hidden_size=8, num_heads=2, dropout=0.1, seq_len=3):
        super().__init__()
        raise NotImplementedError("Block.__init__: not implemented yet")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError("Block.forward: not implemented yet")


class Transformer(nn.Module):
    """Token + position embeddings, a stack of Blocks, a final LayerNorm and an LM head."""

    def __init__(self, vocab_size=100, hidden_size=8, num_heads=2, dropout=0.1, seq_len=3, num_layers=2):
        super().__init__()
        raise NotImplementedError("Transformer.__init__: not implemented yet")

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError("Transformer.forward: not implemented yet")


def lm_loss(logits: torch.Tensor, input_ids: torch.Tensor, pad_token_id: int) -> torch.Tensor:
    """Next-token cross-entropy: position t predicts input_ids[:, t + 1]; padding targets are left out."""
    raise NotImplementedError("lm_loss: not implemented yet")


@torch.no_grad()
def greedy_decode(model: nn.Module, input_ids: torch.Tensor, max_new_tokens: int = 32) -> torch.Tensor:
    """Append max_new_tokens argmax tokens to every row, feeding the last model.seq_len tokens each step."""
    raise NotImplementedError("greedy_decode: not implemented yet")
