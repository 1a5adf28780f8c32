"""Debugging an encoder layer with forward hooks.

BuggyTransformerEncoderLayer and BuggyClassifier are given: read them, do not edit them.
Implement attach_attention_hook and FixedTransformerEncoderLayer.
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


def attach_attention_hook(module: nn.Module, storage: list) -> torch.utils.hooks.RemovableHandle:
    """Register a forward hook on `module` (whose forward returns (output, weights)).

    On every forward call the hook appends weights.detach().cpu() to `storage`.
    Returns the handle; handle.remove() stops the capture.
    """
    # BEGIN SOLUTION
    return module.register_forward_hook(lambda m, i, o: storage.append(o[1].detach().to("cpu")))
    # END SOLUTION


class FixedTransformerEncoderLayer(BuggyTransformerEncoderLayer):
    """The encoder layer with both residual connections: post-norm, as in the original Transformer."""

    def __init__(self, embed_dim, num_heads, ffn_dim, dropout=0.1):
        super().__init__(embed_dim, num_heads, ffn_dim, dropout)

    def forward(self, x, mask=None):
        # BEGIN SOLUTION
        attn_output, attn_weights = self.mha(x, mask)
        x = self.norm1(x + self.dropout1(attn_output))  # residual around attention
        x = self.norm2(x + self.dropout2(self.ffn(x)))  # residual around the feed-forward
        return x, attn_weights
        # END SOLUTION
