"""A correct model.py in another style: attention and the loss computed in float64 and cast
back, masks built in forward with torch.where, blocks applied with functools.reduce, a
hand-written cross-entropy and a while loop for decoding.

Kept as a whole file so that `make mutants` checks that a submission written this way gets
full marks (see mutants.toml, `ok-file-float64-internals`).
"""
import functools
import math

import torch
import torch.nn as nn


class CausalSelfAttention(nn.Module):
    """Causal multi-head self-attention; scores and softmax in float64."""

    def __init__(self, hidden_size=8, num_heads=2, dropout=0.1, seq_len=3):
        super().__init__()
        self.num_heads = num_heads
        self.seq_len = seq_len
        self.q_proj = nn.Linear(hidden_size, hidden_size)
        self.k_proj = nn.Linear(hidden_size, hidden_size)
        self.v_proj = nn.Linear(hidden_size, hidden_size)
        self.out_proj = nn.Linear(hidden_size, hidden_size)
        self.attn_dropout = nn.Dropout(dropout)
        self.resid_dropout = nn.Dropout(dropout)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        return x.reshape(B, T, self.num_heads, C // self.num_heads).permute(0, 2, 1, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self._heads(self.q_proj(x)), self._heads(self.k_proj(x)), self._heads(self.v_proj(x))
        scores = q.double() @ k.double().transpose(-1, -2) / math.sqrt(C // self.num_heads)
        visible = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
        scores = torch.where(visible, scores, float("-inf"))
        weights = self.attn_dropout(torch.softmax(scores, dim=-1).to(x.dtype))
        y = (weights @ v).permute(0, 2, 1, 3).reshape(B, T, C)
        return self.resid_dropout(self.out_proj(y))


class FeedForward(nn.Module):
    """Linear(C, 4C) -> ReLU -> Linear(4C, C) -> Dropout."""

    def __init__(self, hidden_size, dropout):
        super().__init__()
        self.fc1 = nn.Linear(hidden_size, 4 * hidden_size)
        self.fc2 = nn.Linear(4 * hidden_size, hidden_size)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = self.fc1(x).clamp_min(0)
        return self.dropout(self.fc2(hidden))


class Block(nn.Module):
    """Pre-norm block."""

    def __init__(self, hidden_size=8, num_heads=2, dropout=0.1, seq_len=3):
        super().__init__()
        self.ln1 = nn.LayerNorm(hidden_size)
        self.attn = CausalSelfAttention(hidden_size, num_heads, dropout, seq_len)
        self.ln2 = nn.LayerNorm(hidden_size)
        self.ffn = FeedForward(hidden_size, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        attended = x + self.attn(self.ln1(x))
        return attended + self.ffn(self.ln2(attended))


class Transformer(nn.Module):
    """Embeddings, blocks, final LayerNorm, LM head."""

    def __init__(self, vocab_size=100, hidden_size=8, num_heads=2, dropout=0.1, seq_len=3, num_layers=2):
        super().__init__()
        self.seq_len = seq_len
        self.token_emb = nn.Embedding(vocab_size, hidden_size)
        self.pos_emb = nn.Embedding(seq_len, hidden_size)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(hidden_size, num_heads, dropout, seq_len) for _ in range(num_layers))
        self.ln_f = nn.LayerNorm(hidden_size)
        self.lm_head = nn.Linear(hidden_size, vocab_size)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        T = input_ids.shape[1]
        positions = self.pos_emb(torch.arange(T, device=input_ids.device)).unsqueeze(0)  # (1, T, C)
        x = self.drop(self.token_emb(input_ids) + positions)
        x = functools.reduce(lambda h, block: block(h), self.blocks, x)
        return self.lm_head(self.ln_f(x))


def lm_loss(logits: torch.Tensor, input_ids: torch.Tensor, pad_token_id: int) -> torch.Tensor:
    """Mean negative log-likelihood of the next tokens that are not padding, computed in float64."""
    log_probs = torch.log_softmax(logits[:, :-1].double(), dim=-1)
    targets = input_ids[:, 1:]
    counted = targets != pad_token_id
    picked = log_probs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    return (-(picked * counted).sum() / counted.sum()).to(logits.dtype)


def greedy_decode(model: nn.Module, input_ids: torch.Tensor, max_new_tokens: int = 32) -> torch.Tensor:
    """Append max_new_tokens argmax tokens, feeding the last model.seq_len tokens each step."""
    sequence = input_ids
    with torch.no_grad():
        while sequence.shape[1] < input_ids.shape[1] + max_new_tokens:
            start = max(sequence.shape[1] - model.seq_len, 0)
            logits = model(sequence[:, start:])
            next_ids = logits[:, -1, :].argmax(dim=-1)
            sequence = torch.cat([sequence, next_ids[:, None]], dim=1)
    return sequence
