"""Public tests for embeddings.py, on a tiny randomly initialised DistilBERT and a WordPiece
tokenizer trained on a few sentences (nothing is downloaded; see autograder/kit/tiny_hf.py).

The real `distilbert-base-uncased` behaves the same way, with 6 layers of width 768.
"""
import numpy as np
import pandas as pd
import pytest
import torch

from autograder.kit.checks import assert_close, expect, expect_array, expect_tensor
from autograder.kit.inplace import leaves_unchanged
from autograder.kit.tiny_hf import tiny_distilbert, wordpiece_tokenizer

SENTENCES = ["The captain will lead the team to victory.", "Lead is a toxic heavy metal.",
             "She played the lead in the school play.", "The detective followed a promising lead."]


@pytest.fixture(scope="module")
def tokenizer():
    return wordpiece_tokenizer(SENTENCES)


def expected_states(tokenizer, sentence):
    """What the model computes for one sentence, in eval mode: (word embeddings (T, dim), hidden states)."""
    model = tiny_distilbert(len(tokenizer)).eval()
    encoded = tokenizer(sentence, return_tensors="pt")
    with torch.no_grad():
        states = model(**encoded, output_hidden_states=True).hidden_states
        return model.embeddings.word_embeddings(encoded["input_ids"])[0], states


def as_layers(entry, what):
    """embeddings[ix] as an (n_layers + 1, dim) tensor."""
    if isinstance(entry, (list, tuple)):
        expect(all(isinstance(e, torch.Tensor) for e in entry), f"{what} should hold tensors.")
        entry = torch.stack(list(entry))
    return expect_tensor(entry, what=what)


@pytest.mark.problem("process_sentences")
def test_process_sentences_table(student, tokenizer):
    """one row per token, with df's columns then ix, sentence_ix (df's index labels, 7 and 3), token_ix, token"""
    df = pd.DataFrame({"marker": ["guide", "metal"], "sentence": SENTENCES[:2]}, index=[7, 3])
    with leaves_unchanged("process_sentences(df, model, tokenizer)", df=df):
        out, embeddings = student.embeddings.process_sentences(df, tiny_distilbert(len(tokenizer)), tokenizer)
    tokens = [tokenizer.convert_ids_to_tokens(tokenizer(s)["input_ids"]) for s in SENTENCES[:2]]
    expect(isinstance(out, pd.DataFrame), f"process_sentences should return a DataFrame first, not {type(out).__name__}.")
    expect(list(out.columns) == ["marker", "sentence", "ix", "sentence_ix", "token_ix", "token"],
           f"the columns are {list(out.columns)}, expected ['marker', 'sentence', 'ix', 'sentence_ix', 'token_ix', 'token'].")
    expect(list(out["token"]) == tokens[0] + tokens[1], f"the tokens are {list(out['token'])}, expected {tokens[0] + tokens[1]}.")
    n0, n1 = len(tokens[0]), len(tokens[1])
    expect(list(out["ix"]) == list(range(n0 + n1)), "ix should count the tokens 0, 1, 2, ... over all sentences.")
    expect(list(out["sentence_ix"]) == [7] * n0 + [3] * n1,
           f"sentence_ix is {list(out['sentence_ix'])}; it should be each sentence's index label in df (7, then 3).")
    expect(list(out["token_ix"]) == list(range(n0)) + list(range(n1)), f"token_ix is {list(out['token_ix'])}.")
    expect(list(out["marker"]) == ["guide"] * n0 + ["metal"] * n1, "each token row should keep its sentence's columns.")
    expect(len(embeddings) == n0 + n1, f"embeddings has {len(embeddings)} entries, expected one per token ({n0 + n1}).")


@pytest.mark.problem("process_sentences")
def test_process_sentences_layers(student, tokenizer):
    """embeddings[ix] has n_layers + 1 rows: the word embedding, then each layer's output (eval mode)"""
    df = pd.DataFrame({"sentence": [SENTENCES[2]]})
    model = tiny_distilbert(len(tokenizer))            # built in training mode, like a model you train
    _, embeddings = student.embeddings.process_sentences(df, model, tokenizer)
    word, states = expected_states(tokenizer, SENTENCES[2])
    for ix in (0, 4):
        got = as_layers(embeddings[ix], what=f"embeddings[{ix}]")
        expect(tuple(got.shape) == (3, 32), f"embeddings[{ix}] has shape {list(got.shape)}, expected [3, 32] "
               "(n_layers + 1 = 3 rows: word embedding, layer 1, layer 2).")
        assert_close(got[0], word[ix], what=f"embeddings[{ix}][0] (the word embedding)")
        for layer in (1, 2):
            assert_close(got[layer], states[layer][0, ix], what=f"embeddings[{ix}][{layer}] (the output of layer {layer})")


@pytest.mark.problem("cosine_similarity_matrix")
def test_cosine_by_hand(student):
    """rows (1, 0), (1, 1), (0, 2), (0, 0): cosines 1, 1/sqrt2, 0 ...; the zero row gives 0 (not nan); X unchanged"""
    X = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 2.0], [0.0, 0.0]])
    c = 1 / np.sqrt(2)
    expected = np.array([[1, c, 0, 0], [c, 1, c, 0], [0, c, 1, 0], [0, 0, 0, 0]])
    with leaves_unchanged("cosine_similarity_matrix(X)", X=X):
        assert_close(student.embeddings.cosine_similarity_matrix(X), expected, what="cosine_similarity_matrix(X)")


@pytest.mark.problem("pca_2d")
def test_pca_points_on_a_plane(student):
    """points on a plane in 5-d (spreads 6 and 2 along two axes): centered, their plane coordinates, each column up to its sign"""
    coords = np.array([[3.0, 1.0], [-3.0, 1.0], [3.0, -1.0], [-3.0, -1.0], [0.0, 2.0], [0.0, -2.0]])
    # the columns are centered and orthogonal, the first with the larger spread: the principal components
    basis = np.linalg.qr(np.random.default_rng(0).normal(size=(5, 2)))[0]    # (5, 2) orthonormal columns
    X = coords @ basis.T + 7.0                                                # in 5-d, shifted
    with leaves_unchanged("pca_2d(X)", X=X):
        got = student.embeddings.pca_2d(X)
        expect_array(got, what="pca_2d(X) for X (6, 5)", shape=(6, 2))
        assert_close(got.mean(axis=0), np.zeros(2), what="the column means of pca_2d(X) (center X's columns first)")
        signs = np.where(np.sum(got * coords, axis=0) < 0, -1.0, 1.0)        # either sign of a column is right
        assert_close(got * signs, coords, what="pca_2d(X) (each column compared up to its sign)")
