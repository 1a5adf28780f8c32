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
    # BEGIN SOLUTION
    model.set_attn_implementation("eager")
    model.eval()
    device = next(model.parameters()).device
    encoded = tokenizer(sentence, return_tensors="pt").to(device)
    outputs = model(**encoded, output_attentions=True)
    tokens = tokenizer.convert_ids_to_tokens(encoded["input_ids"][0])
    weights = torch.cat([a.detach() for a in outputs.attentions], dim=0)
    return tokens, weights.cpu()
    # END SOLUTION


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
    # BEGIN SOLUTION
    attn = model.transformer.layer[layer].attention
    B, T, C = hidden_states.size()
    H = model.config.n_heads
    dh = C // H
    q = attn.q_lin(hidden_states).view(B, T, H, dh).transpose(1, 2)   # (B, H, T, dh)
    k = attn.k_lin(hidden_states).view(B, T, H, dh).transpose(1, 2)   # (B, H, T, dh)
    scores = q @ k.transpose(-2, -1) / math.sqrt(dh)                  # (B, H, T, T)
    padded = (attention_mask == 0)[:, None, None, :]                  # (B, 1, 1, T)
    scores = scores.masked_fill(padded, torch.finfo(scores.dtype).min)
    return torch.softmax(scores, dim=-1)
    # END SOLUTION
