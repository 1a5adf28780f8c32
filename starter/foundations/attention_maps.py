"""Attention weights of a Hugging Face encoder (DistilBERT), read out and recomputed by hand."""
import math

import torch


@torch.no_grad()
def attention_maps(model, tokenizer, sentence: str) -> tuple[list[str], torch.Tensor]:
    """The tokens of `sentence` and the attention weights of every layer and head.

    Returns (tokens, weights): tokens as `tokenizer.convert_ids_to_tokens` gives them,
    special tokens included (T of them), and a CPU float tensor (n_layers, n_heads, T, T)
    without grad, in eval mode: weights[l, h, i, j] is how much token i attends to token j
    in head h of layer l.

    Recent transformers versions build models with the "sdpa" attention implementation,
    which returns no weights: switch the model to "eager" first
    (`model.set_attn_implementation("eager")`).
    """
    raise NotImplementedError("attention_maps: not implemented yet")


def attention_weights_by_hand(model, layer: int, hidden_states: torch.Tensor,
                              attention_mask: torch.Tensor) -> torch.Tensor:
    """Layer `layer`'s attention weights, computed from its query and key projections.

    `model` is a DistilBertModel; `hidden_states` (B, T, dim) is the input of that layer and
    `attention_mask` (B, T) is 1 for real tokens and 0 for padding. With
    `attn = model.transformer.layer[layer].attention`: q = attn.q_lin(hidden_states),
    k = attn.k_lin(hidden_states), each split into `model.config.n_heads` heads of width
    dh = dim // n_heads; scores = q k^T / sqrt(dh); padded keys get weight 0 (mask their
    scores with the dtype's minimum, or -inf); softmax over the keys. Returns (B, n_heads, T, T).
    Do not call the attention module itself (the grader forbids it here).
    """
    raise NotImplementedError("attention_weights_by_hand: not implemented yet")
