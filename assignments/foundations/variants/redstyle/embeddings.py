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
    # BEGIN SOLUTION
    device = next(model.parameters()).device
    model.eval()
    rows, embeddings = [], []
    for sentence_ix, row in df.iterrows():
        encoded = tokenizer(row["sentence"], return_tensors="pt").to(device)
        outputs = model(**encoded, output_hidden_states=True)
        input_ids = encoded["input_ids"]                                   # (1, T)
        word = model.embeddings.word_embeddings(input_ids)[0]              # (T, dim)
        layers = torch.stack([h[0] for h in outputs.hidden_states[1:]], dim=1)  # (T, n_layers, dim)
        per_token = torch.cat([word[:, None], layers], dim=1).cpu()        # (T, n_layers + 1, dim)
        for token_ix, token in enumerate(tokenizer.convert_ids_to_tokens(input_ids[0])):
            rows.append({**row.to_dict(), "ix": len(embeddings), "sentence_ix": sentence_ix,
                         "token_ix": token_ix, "token": token})
            embeddings.append(per_token[token_ix])
    return pd.DataFrame(rows, columns=[*df.columns, "ix", "sentence_ix", "token_ix", "token"]), embeddings
    # END SOLUTION


def cosine_similarity_matrix(X: np.ndarray) -> np.ndarray:
    """Cosine similarity of every pair of rows of X (n, d): an (n, n) array.

    A row of zeros has similarity 0 with every row (itself included), as in scikit-learn.
    """
    # BEGIN SOLUTION
    norms = np.sqrt(np.einsum("ij,ij->i", X, X))
    dots = X @ X.T
    denom = np.outer(norms, norms)
    return np.divide(dots, denom, out=np.zeros_like(dots), where=denom != 0)
    # END SOLUTION


def pca_2d(X: np.ndarray) -> np.ndarray:
    """Project the rows of X (n, d) on their first two principal components: (n, 2).

    Center the columns (subtract each column's mean), then project on the two right
    singular vectors of the centered matrix with the largest singular values, the largest
    first. The sign of each column is free (either is accepted).
    """
    # BEGIN SOLUTION
    centered = X - X.mean(axis=0, keepdims=True)
    cov = centered.T @ centered / (len(X) - 1)
    U, _, _ = np.linalg.svd(cov)
    return centered @ U[:, :2]
    # END SOLUTION
