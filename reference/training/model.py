"""Given: the small GPT-style Transformer of the `transformer` assignment, with its LM loss and decoding.

Nothing to implement here. You may replace this file with your own `model.py` from the
`transformer` assignment if it keeps that contract (attribute names, `lm_loss`, `seq_len`);
the tests of `training.py` build their models from this file.

Shapes: B batch, T sequence length, C = hidden_size, H heads, V vocabulary.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention with dropout on the weights and on the output."""

    def __init__(self, hidden_size=8, num_heads=2, dropout=0.1, seq_len=3):
        super().__init__()
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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.size()
        H = self.num_heads
        # (B, T, C) -> (B, H, T, C // H)
        q = self.q_proj(x).view(B, T, H, C // H).transpose(1, 2)
        k = self.k_proj(x).view(B, T, H, C // H).transpose(1, 2)
        v = self.v_proj(x).view(B, T, H, C // H).transpose(1, 2)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))  # (B, H, T, T)
        att = att.masked_fill(~self.mask[:, :, :T, :T], float("-inf"))
        att = F.softmax(att, dim=-1)
        att = self.attn_dropout(att)
        y = att @ v  # (B, H, T, C // H)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # heads side by side
        return self.resid_dropout(self.out_proj(y))


class FeedForward(nn.Module):
    """Linear(C, 4C) -> ReLU -> Linear(4C, C) -> Dropout."""

    def __init__(self, hidden_size, dropout):
        super().__init__()
        self.fc1 = nn.Linear(hidden_size, 4 * hidden_size)
        self.fc2 = nn.Linear(4 * hidden_size, hidden_size)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.fc2(F.relu(self.fc1(x))))


class Block(nn.Module):
    """Pre-norm Transformer block: x + attn(ln1(x)), then x + ffn(ln2(x))."""

    def __init__(self, hidden_size=8, num_heads=2, dropout=0.1, seq_len=3):
        super().__init__()
        self.ln1 = nn.LayerNorm(hidden_size)
        self.attn = CausalSelfAttention(hidden_size, num_heads, dropout, seq_len)
        self.ln2 = nn.LayerNorm(hidden_size)
        self.ffn = FeedForward(hidden_size, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        x = x + self.ffn(self.ln2(x))
        return x


class Transformer(nn.Module):
    """Token + position embeddings, a stack of Blocks, a final LayerNorm and an LM head."""

    def __init__(self, vocab_size=100, hidden_size=8, num_heads=2, dropout=0.1, seq_len=3, num_layers=2):
        super().__init__()
        self.seq_len = seq_len
        self.token_emb = nn.Embedding(vocab_size, hidden_size)
        self.pos_emb = nn.Embedding(seq_len, hidden_size)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList([Block(hidden_size, num_heads, dropout, seq_len) for _ in range(num_layers)])
        self.ln_f = nn.LayerNorm(hidden_size)
        self.lm_head = nn.Linear(hidden_size, vocab_size)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        B, T = input_ids.size()
        positions = torch.arange(T, device=input_ids.device)  # (T,)
        x = self.drop(self.token_emb(input_ids) + self.pos_emb(positions))  # (B, T, C)
        for block in self.blocks:
            x = block(x)
        return self.lm_head(self.ln_f(x))  # (B, T, V)


def lm_loss(logits: torch.Tensor, input_ids: torch.Tensor, pad_token_id: int) -> torch.Tensor:
    """Next-token cross-entropy: position t predicts input_ids[:, t + 1]; padding targets are left out."""
    B, T, V = logits.size()
    predictions = logits[:, :-1].reshape(B * (T - 1), V)  # positions 0..T-2
    targets = input_ids[:, 1:].reshape(B * (T - 1))  # the next token of each
    return F.cross_entropy(predictions, targets, ignore_index=pad_token_id)


@torch.no_grad()
def greedy_decode(model: nn.Module, input_ids: torch.Tensor, max_new_tokens: int = 32) -> torch.Tensor:
    """Append max_new_tokens argmax tokens to every row, feeding the last model.seq_len tokens each step."""
    for _ in range(max_new_tokens):
        context = input_ids[:, -model.seq_len:]  # (B, min(T, seq_len))
        logits = model(context)  # (B, T', V)
        next_ids = logits[:, -1].argmax(dim=-1, keepdim=True)  # (B, 1)
        input_ids = torch.cat((input_ids, next_ids), dim=1)  # (B, T + 1)
    return input_ids
