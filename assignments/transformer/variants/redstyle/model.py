"""A small GPT-style Transformer: causal self-attention, feed-forward, blocks, LM loss, decoding.

Shapes: B batch, T sequence length, C = hidden_size, H heads, V vocabulary.
Attribute names are part of the contract: the graders load weights by name.
You may import from attention.py if you want to reuse your functions.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention with dropout on the weights and on the output."""

    def __init__(self, hidden_size=8, num_heads=2, dropout=0.1, seq_len=3):
        super().__init__()
        # BEGIN SOLUTION
        assert hidden_size % num_heads == 0, "hidden_size must be divisible by num_heads"
        self.num_heads = num_heads
        self.q_proj = nn.Linear(hidden_size, hidden_size)
        self.k_proj = nn.Linear(hidden_size, hidden_size)
        self.v_proj = nn.Linear(hidden_size, hidden_size)
        self.out_proj = nn.Linear(hidden_size, hidden_size)
        self.attn_dropout = nn.Dropout(dropout)
        self.resid_dropout = nn.Dropout(dropout)
        # True where query i may see key j <= i; a buffer follows the module to its device
        mask = torch.tril(torch.ones(seq_len, seq_len, dtype=torch.bool))
        self.register_buffer("mask", mask.view(1, 1, seq_len, seq_len), persistent=False)
        # END SOLUTION

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # BEGIN SOLUTION
        B, T, C = x.size()
        H = self.num_heads
        # (B, T, C) -> (B, H, T, C // H)
        q = self.q_proj(x).unflatten(-1, (H, -1))  # (B, T, H, dh)
        k = self.k_proj(x).unflatten(-1, (H, -1))
        v = self.v_proj(x).unflatten(-1, (H, -1)).permute(0, 2, 1, 3)
        att = torch.einsum("bthd,bshd->bhts", q, k) / k.shape[-1] ** 0.5
        att = att.masked_fill(~self.mask[:, :, :T, :T], float("-inf"))
        att = F.softmax(att, dim=-1)
        att = self.attn_dropout(att)
        y = att @ v  # (B, H, T, C // H)
        y = y.permute(0, 2, 1, 3).flatten(2)
        return self.resid_dropout(self.out_proj(y))
        # END SOLUTION


class FeedForward(nn.Module):
    """Linear(C, 4C) -> ReLU -> Linear(4C, C) -> Dropout."""

    def __init__(self, hidden_size, dropout):
        super().__init__()
        # BEGIN SOLUTION
        self.fc1 = nn.Linear(hidden_size, 4 * hidden_size)
        self.fc2 = nn.Linear(4 * hidden_size, hidden_size)
        self.dropout = nn.Dropout(dropout)
        # END SOLUTION

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # BEGIN SOLUTION
        h = self.fc1(x)
        F.relu(h, inplace=True)
        return self.dropout(self.fc2(h))
        # END SOLUTION


class Block(nn.Module):
    """Pre-norm Transformer block: x + attn(ln1(x)), then x + ffn(ln2(x))."""

    def __init__(self, hidden_size=8, num_heads=2, dropout=0.1, seq_len=3):
        super().__init__()
        # BEGIN SOLUTION
        self.ln1 = nn.LayerNorm(hidden_size)
        self.attn = CausalSelfAttention(hidden_size, num_heads, dropout, seq_len)
        self.ln2 = nn.LayerNorm(hidden_size)
        self.ffn = FeedForward(hidden_size, dropout)
        # END SOLUTION

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # BEGIN SOLUTION
        C = x.size(-1)
        x = x + self.attn(F.layer_norm(x, (C,), self.ln1.weight, self.ln1.bias, self.ln1.eps))
        return x + self.ffn(F.layer_norm(x, (C,), self.ln2.weight, self.ln2.bias, self.ln2.eps))
        # END SOLUTION


class Transformer(nn.Module):
    """Token + position embeddings, a stack of Blocks, a final LayerNorm and an LM head."""

    def __init__(self, vocab_size=100, hidden_size=8, num_heads=2, dropout=0.1, seq_len=3, num_layers=2):
        super().__init__()
        # BEGIN SOLUTION
        self.seq_len = seq_len
        self.token_emb = nn.Embedding(vocab_size, hidden_size)
        self.pos_emb = nn.Embedding(seq_len, hidden_size)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList([Block(hidden_size, num_heads, dropout, seq_len) for _ in range(num_layers)])
        self.ln_f = nn.LayerNorm(hidden_size)
        self.lm_head = nn.Linear(hidden_size, vocab_size)
        self.apply(self._init_weights)

    def _init_weights(self, module):
        if isinstance(module, nn.Linear):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                torch.nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)
        # END SOLUTION

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        # BEGIN SOLUTION
        B, T = input_ids.size()
        positions = torch.arange(T, device=input_ids.device)  # (T,)
        x = self.drop(self.token_emb(input_ids) + self.pos_emb(positions))  # (B, T, C)
        for block in self.blocks:
            x = block(x)
        return self.lm_head(self.ln_f(x))  # (B, T, V)
        # END SOLUTION


def lm_loss(logits: torch.Tensor, input_ids: torch.Tensor, pad_token_id: int) -> torch.Tensor:
    """Next-token cross-entropy: position t predicts input_ids[:, t + 1]; padding targets are left out."""
    # BEGIN SOLUTION
    B, T, V = logits.size()
    predictions = logits[:, :-1].reshape(B * (T - 1), V)  # positions 0..T-2
    targets = input_ids[:, 1:].reshape(B * (T - 1))  # the next token of each
    logp = predictions.double().log_softmax(-1)
    keep = targets != pad_token_id
    picked = logp.gather(1, targets.clamp(0, V - 1).unsqueeze(1)).squeeze(1)
    return (-(picked * keep).sum() / keep.sum()).to(logits.dtype)
    # END SOLUTION


torch.manual_seed(42)


@torch.inference_mode()
def greedy_decode(model: nn.Module, input_ids: torch.Tensor, max_new_tokens: int = 32) -> torch.Tensor:
    """Append max_new_tokens argmax tokens to every row, feeding the last model.seq_len tokens each step."""
    # BEGIN SOLUTION
    for _ in range(max_new_tokens):
        context = input_ids[:, -model.seq_len:]  # (B, min(T, seq_len))
        logits = model(context)  # (B, T', V)
        next_ids = logits[:, -1].argmax(dim=-1, keepdim=True)  # (B, 1)
        input_ids = torch.cat((input_ids, next_ids), dim=1)  # (B, T + 1)
    return input_ids
    # END SOLUTION


_demo = Transformer(vocab_size=10, hidden_size=8, num_heads=2, dropout=0.1, seq_len=3, num_layers=2)
print("demo:", greedy_decode(_demo.eval(), torch.zeros(2, 1, dtype=torch.long), 4).tolist())
print(lm_loss(_demo(torch.randint(0, 10, (2, 3))), torch.randint(0, 10, (2, 3)), 0))
