"""Hidden tests for embeddings.py: process_sentences against the reference on the tiny DistilBERT,
and the two helpers on random data."""
import numpy as np
import pandas as pd
import pytest
import torch

from autograder.kit.checks import assert_close, expect, expect_array, expect_tensor
from autograder.kit.inplace import copy_of, expect_unchanged, leaves_unchanged
from autograder.kit.tiny_hf import tiny_distilbert, wordpiece_tokenizer

SENTENCES = ["The captain will lead the team to victory.", "They lead him by the hand through the dark corridor.",
             "Lead is a toxic heavy metal.", "She played the lead in the school play.",
             "The detective followed a promising lead.", "Sale lead were distributed to the team."]


@pytest.fixture(scope="module")
def tokenizer():
    return wordpiece_tokenizer(SENTENCES, vocab_size=150)


def run_both(student, reference, tokenizer, df, **model_args):
    """(the student's result, the reference's, a check that the student's call left df as it was)."""
    before = copy_of(df)
    got = student.embeddings.process_sentences(df, tiny_distilbert(len(tokenizer), **model_args), tokenizer)
    expected = reference.embeddings.process_sentences(copy_of(before), tiny_distilbert(len(tokenizer), **model_args), tokenizer)
    expect(isinstance(got, tuple) and len(got) == 2, "process_sentences should return a pair (df_out, embeddings).")
    return got, expected, lambda: expect_unchanged(df, before, what="df (its argument in process_sentences)")


def check_table(got: pd.DataFrame, expected: pd.DataFrame, what: str):
    expect(isinstance(got, pd.DataFrame), f"{what}: the first result should be a DataFrame, not {type(got).__name__}.")
    expect(list(got.columns) == list(expected.columns),
           f"{what}: the columns are {list(got.columns)}, expected {list(expected.columns)}.")
    expect(len(got) == len(expected), f"{what}: {len(got)} rows, expected {len(expected)} (one per token, special tokens included).")
    for column in expected.columns:
        g, e = list(got[column]), list(expected[column])
        if g != e:
            row = next(i for i, (a, b) in enumerate(zip(g, e)) if a != b)
            expect(False, f"{what}: column {column!r} differs first at row {row}: got {g[row]!r}, expected {e[row]!r}.")
    expect(list(got.index) == list(range(len(got))), f"{what}: df_out should have a fresh index 0..{len(got) - 1}.")


def check_embeddings(got, expected, what: str):
    expect(len(got) == len(expected), f"{what}: {len(got)} embeddings, expected {len(expected)} (one per token).")
    for ix in range(len(expected)):
        entry = got[ix]
        if isinstance(entry, (list, tuple)):
            expect(all(isinstance(e, torch.Tensor) for e in entry), f"{what}: embeddings[{ix}] should hold tensors.")
            needs_grad = any(e.requires_grad for e in entry)
            entry = torch.stack(list(entry))
        else:
            needs_grad = isinstance(entry, torch.Tensor) and entry.requires_grad
        entry = expect_tensor(entry, what=f"{what}: embeddings[{ix}]", shape=expected[ix].shape)
        assert_close(entry, expected[ix], what=f"{what}: embeddings[{ix}] (rows: word embedding, layer 1, layer 2)")
        expect(not needs_grad, f"{what}: embeddings[{ix}] requires grad: compute it under torch.no_grad().")


@pytest.mark.problem("process_sentences")
def test_table_with_index_labels(student, reference, tokenizer):
    """a DataFrame with its own index labels and extra columns: sentence_ix is the label"""
    df = pd.DataFrame({"marker": ["guide", "guide", "metal"], "id": [7, 8, 9], "sentence": SENTENCES[:3]},
                      index=[10, 20, 30])
    (out, _), (e_out, _), unchanged = run_both(student, reference, tokenizer, df)
    check_table(out, e_out, "process_sentences(df with index [10, 20, 30])")
    unchanged()


@pytest.mark.problem("process_sentences")
def test_table_six_sentences(student, reference, tokenizer):
    """the six 'lead' sentences: rows and columns as the reference's"""
    df = pd.DataFrame({"marker": ["guide", "guide", "metal", "main", "clue", "clue"], "sentence": SENTENCES})
    (out, _), (e_out, _), unchanged = run_both(student, reference, tokenizer, df)
    check_table(out, e_out, "process_sentences(six sentences)")
    unchanged()


@pytest.mark.problem("process_sentences")
def test_embeddings_all_layers(student, reference, tokenizer):
    """every token's word embedding and layer outputs, model given in training mode (dropout on)"""
    df = pd.DataFrame({"sentence": SENTENCES[2:5]})
    (_, emb), (_, e_emb), unchanged = run_both(student, reference, tokenizer, df, dropout=0.3)
    check_embeddings(emb, e_emb, "process_sentences(three sentences)")
    unchanged()


@pytest.mark.problem("process_sentences")
def test_embeddings_three_layers(student, reference, tokenizer):
    """a model with 3 layers and 2 heads: 4 rows per token"""
    df = pd.DataFrame({"sentence": SENTENCES[:2]})
    (_, emb), (_, e_emb), unchanged = run_both(student, reference, tokenizer, df, n_layers=3, n_heads=2, seed=5)
    check_embeddings(emb, e_emb, "process_sentences(3-layer model)")
    unchanged()


@pytest.mark.problem("cosine_similarity_matrix")
@pytest.mark.parametrize("n,d", [(5, 3), (8, 16), (2, 4)])
def test_cosine_random(student, reference, n, d):
    """random rows, some long, some short"""
    X = np.random.default_rng(n * d).normal(size=(n, d)) * np.linspace(0.1, 10, n)[:, None]
    expected = reference.embeddings.cosine_similarity_matrix(copy_of(X))
    with leaves_unchanged(f"cosine_similarity_matrix(X {[n, d]})", X=X):
        got = student.embeddings.cosine_similarity_matrix(X)
        expect_array(got, what=f"cosine_similarity_matrix(X {[n, d]})", shape=(n, n))
        assert_close(got, expected, what=f"cosine_similarity_matrix(X {[n, d]})")


@pytest.mark.problem("cosine_similarity_matrix")
def test_cosine_zero_row(student, reference):
    """a row of zeros has similarity 0 with every row"""
    X = np.array([[1.0, 2.0], [0.0, 0.0], [-3.0, 1.0]])
    expected = reference.embeddings.cosine_similarity_matrix(copy_of(X))
    with leaves_unchanged("cosine_similarity_matrix(X with a zero row)", X=X):
        assert_close(student.embeddings.cosine_similarity_matrix(X), expected, what="cosine_similarity_matrix(X with a zero row)")


def same_up_to_sign(got, expected, what):
    expect_array(got, what=what, shape=expected.shape)
    signs = np.where(np.sum(got * expected, axis=0) < 0, -1.0, 1.0)
    assert_close(got * signs, expected, what=f"{what} (each column compared up to its sign)")


def spread_out(X, ratio=1.3):
    """X, once checked to have well separated leading singular values (s1/s2 and s2/s3 at least `ratio`):
    then the two components are unique up to their signs, whatever the method (SVD, eigh, float32)."""
    s = np.linalg.svd(X - X.mean(axis=0), compute_uv=False)
    assert s[0] >= ratio * s[1] and (len(s) < 3 or s[1] >= ratio * s[2]), s[:3]   # grader check of the test data
    return X


def pca_case(student, reference, X, what):
    expected = reference.embeddings.pca_2d(copy_of(X))
    with leaves_unchanged(what, X=X):
        same_up_to_sign(student.embeddings.pca_2d(X), expected, what)


@pytest.mark.problem("pca_2d")
@pytest.mark.parametrize("n,d", [(10, 5), (7, 32), (30, 3)])
def test_pca_random(student, reference, n, d):
    """random points with well separated spreads along each axis, shifted"""
    rng = np.random.default_rng(n + d)
    X = spread_out(rng.normal(size=(n, d)) * 6.0 * 0.55 ** np.arange(d) + rng.normal(size=d) * 10)
    pca_case(student, reference, X, f"pca_2d(X {[n, d]})")


@pytest.mark.problem("pca_2d")
def test_pca_of_embeddings(student, reference, tokenizer):
    """the layer-2 embeddings of every token of two sentences, stretched along two directions (float32 input)"""
    _, emb = reference.embeddings.process_sentences(pd.DataFrame({"sentence": SENTENCES[:2]}),
                                                    tiny_distilbert(len(tokenizer)), tokenizer)
    X = torch.stack([e[2] for e in emb]).numpy()
    rng = np.random.default_rng(3)
    directions = np.linalg.qr(rng.normal(size=(X.shape[1], 2)))[0]
    stretch = rng.normal(size=(len(X), 2)) * np.array([12.0, 6.0])      # a clear first and second component
    X = spread_out((X + stretch @ directions.T).astype(np.float32))
    pca_case(student, reference, X, "pca_2d(layer-2 embeddings, float32)")   # float32 tolerance
