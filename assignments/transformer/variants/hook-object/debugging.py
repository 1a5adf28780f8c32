"""A correct debugging.py in another style: the hook is a callable object, and the fixed
layer names its two residual steps.

Kept as a whole file so that `make mutants` checks that a submission written this way gets
full marks (see mutants.toml, `ok-file-hook-object`). The given classes are the starter's.
"""
import math

import torch
import torch.nn as nn

from attention import MultiHeadAttention


class BuggyTransformerEncoderLayer(nn.Module):
    """Given (read only): an encoder layer that runs but fails to learn."""

    def __init__(self, embed_dim, num_heads, ffn_dim, dropout=0.1):
        super().__init__()
        self.mha = MultiHeadAttention(embed_dim, num_heads)
        self.ffn = nn.Sequential(
            nn.Linear(embed_dim, ffn_dim),
            nn.ReLU(),
            nn.Linear(ffn_dim, embed_dim),
        )
        self.norm1 = nn.LayerNorm(embed_dim)
        self.norm2 = nn.LayerNorm(embed_dim)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)

    def forward(self, x, mask=None):
        attn_output, attn_weights = self.mha(x, mask)
        x = self.dropout1(attn_output)
        x = self.norm1(x)  # <--- HINT: Something is missing here!

        ffn_output = self.ffn(x)
        x = x + self.dropout2(ffn_output)  # <--- And something is wrong here!
        x = self.norm2(x)
        return x, attn_weights


class BuggyClassifier(nn.Module):
    """Given (read only): embeddings, one buggy encoder layer, mean pooling, a linear classifier."""

    def __init__(self, vocab_size, embed_dim, num_heads, ffn_dim):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed_dim)
        self.encoder = BuggyTransformerEncoderLayer(embed_dim, num_heads, ffn_dim)
        self.classifier = nn.Linear(embed_dim, 2)
        self.embed_dim = embed_dim

    def forward(self, x):
        padding_mask = (x == 0).unsqueeze(1).unsqueeze(2)  # (B, 1, 1, T), as in the notebook
        x = self.embedding(x) * math.sqrt(self.embed_dim)
        x, attn_weights = self.encoder(x, mask=padding_mask)
        x = x.mean(dim=1)
        return self.classifier(x), attn_weights


class WeightsRecorder:
    """A forward hook that appends the second output (the attention weights) to a list."""

    def __init__(self, storage: list):
        self.storage = storage

    def __call__(self, module, inputs, outputs):
        weights = outputs[1]
        self.storage.append(weights.detach().to("cpu"))


def attach_attention_hook(module: nn.Module, storage: list) -> torch.utils.hooks.RemovableHandle:
    """Record module's attention weights into storage on every forward call; returns the handle."""
    handle = module.register_forward_hook(WeightsRecorder(storage))
    return handle


class FixedTransformerEncoderLayer(nn.Module):
    """The encoder layer with both residual connections (post-norm)."""

    def __init__(self, embed_dim, num_heads, ffn_dim, dropout=0.1):
        super().__init__()
        self.mha = MultiHeadAttention(embed_dim, num_heads)
        self.ffn = nn.Sequential(nn.Linear(embed_dim, ffn_dim), nn.ReLU(), nn.Linear(ffn_dim, embed_dim))
        self.norm1 = nn.LayerNorm(embed_dim)
        self.norm2 = nn.LayerNorm(embed_dim)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)

    @staticmethod
    def _add_and_norm(x, sublayer_output, dropout, norm):
        return norm(x + dropout(sublayer_output))

    def forward(self, x, mask=None):
        attn_output, attn_weights = self.mha(x, mask)
        x = self._add_and_norm(x, attn_output, self.dropout1, self.norm1)
        x = self._add_and_norm(x, self.ffn(x), self.dropout2, self.norm2)
        return x, attn_weights
