"""Contextual embeddings of a Hugging Face encoder, and two helpers to compare them.

`model` is an encoder such as `DistilBertModel` and `tokenizer` its fast tokenizer; any
model whose forward accepts `output_hidden_states=True` and that has
`model.embeddings.word_embeddings` works.
"""
import numpy as np
import pandas as pd
import torch


@torch.no_grad()
def process_sentences(df: pd.DataFrame, model, tokenizer) -> tuple[pd.DataFrame, list[torch.Tensor]]:
    """Run each sentence of `df["sentence"]` through `model`; one output row per token.

    Returns (df_out, embeddings):
    - df_out: one row per token, sentences in df's order and tokens in sentence order, with
      df's columns followed by `ix` (0, 1, 2, ... over all tokens), `sentence_ix` (the
      sentence's index label in df), `token_ix` (position in its sentence, 0 for [CLS]) and
      `token` (`tokenizer.convert_ids_to_tokens`); a fresh 0..n-1 index.
    - embeddings: a list indexed by `ix`; embeddings[ix] is a CPU float tensor of shape
      (n_layers + 1, dim) without grad: row 0 is the token's word embedding
      (`model.embeddings.word_embeddings`, before positions are added), row l >= 1 the
      output of layer l (`hidden_states[l]`).
    Each sentence is tokenized alone, special tokens included, and the model runs in eval
    mode (no dropout).
    """
    raise NotImplementedError("process_sentences: not implemented yet")


def cosine_similarity_matrix(X: np.ndarray) -> np.ndarray:
    """Cosine similarity of every pair of rows of X (n, d): an (n, n) array.

    A row of zeros has similarity 0 with every row (itself included), as in scikit-learn.
    """
    raise NotImplementedError("cosine_similarity_matrix: not implemented yet")


def pca_2d(X: np.ndarray) -> np.ndarray:
    """Project the rows of X (n, d) on their first two principal components: (n, 2).

    Center the columns (subtract each column's mean), then project on the two right
    singular vectors of the centered matrix with the largest singular values, the largest
    first. The sign of each column is free (either is accepted).
    """
    raise NotImplementedError("pca_2d: not implemented yet")
