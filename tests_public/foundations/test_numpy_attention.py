"""Public tests for numpy_attention.py: the notebook's examples and values you can work out by hand.

Run them with `python run_tests.py -k numpy` (student zip). Hidden tests compare with a
reference solution on many more inputs (batches, large scores, other shapes).
"""
import numpy as np
import pytest

from autograder.kit.checks import assert_close, expect_array
from autograder.kit.inplace import leaves_unchanged


def rand(*shape, seed):
    return np.random.default_rng(seed).random(shape)


@pytest.mark.problem("softmax")
def test_softmax_rows(student):
    """softmax([[0, log 2, log 3], [1, 1, 1]]) along the last axis"""
    x = np.array([[0.0, np.log(2), np.log(3)], [1.0, 1.0, 1.0]])
    expected = np.array([[1 / 6, 2 / 6, 3 / 6], [1 / 3, 1 / 3, 1 / 3]])
    with leaves_unchanged("softmax(x)", x=x):
        assert_close(student.numpy_attention.softmax(x), expected, what="softmax(x)")


@pytest.mark.problem("softmax")
def test_softmax_large_scores(student):
    """scores of +-1000 give finite weights (subtract the max before exp); x is left unchanged"""
    x = np.array([[1000.0, 0.0, -1000.0], [1000.0, 1000.0, 0.0]])
    expected = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0]])
    with leaves_unchanged("softmax(x)", x=x):
        assert_close(student.numpy_attention.softmax(x), expected, what="softmax([[1000, 0, -1000], [1000, 1000, 0]])")


@pytest.mark.problem("softmax")
def test_softmax_axis0(student):
    """softmax(x, axis=0) normalises each column"""
    x = np.array([[0.0, 1.0], [np.log(3), 1.0]])
    expected = np.array([[0.25, 0.5], [0.75, 0.5]])
    with leaves_unchanged("softmax(x, axis=0)", x=x):
        assert_close(student.numpy_attention.softmax(x, axis=0), expected, what="softmax(x, axis=0)")


def notebook_attention(Q, K, V):
    """The notebook's scaled dot-product attention (its plain softmax is fine for these small scores)."""
    scores = Q @ K.T / np.sqrt(K.shape[-1])
    weights = np.exp(scores) / np.exp(scores).sum(axis=-1, keepdims=True)
    return weights @ V, weights


@pytest.mark.problem("scaled_dot_product_attention")
@pytest.mark.isolate("numpy_attention", "softmax")
def test_sdpa_notebook_example(student):
    """the notebook's example: Q, K, V of shape (3, 4) give output (3, 4) and weights (3, 3), as its formula computes"""
    Q, K, V = rand(3, 4, seed=0), rand(3, 4, seed=1), rand(3, 4, seed=2)
    expected_out, expected_weights = notebook_attention(Q, K, V)
    with leaves_unchanged("scaled_dot_product_attention(Q, K, V)", Q=Q, K=K, V=V):
        out, weights = student.numpy_attention.scaled_dot_product_attention(Q, K, V)
        expect_array(out, what="output of scaled_dot_product_attention(Q, K, V)", shape=(3, 4))
        expect_array(weights, what="weights of scaled_dot_product_attention(Q, K, V)", shape=(3, 3))
        assert_close(weights, expected_weights, what="weights of scaled_dot_product_attention(Q, K, V)")
        assert_close(out, expected_out, what="output of scaled_dot_product_attention(Q, K, V)")


@pytest.mark.problem("scaled_dot_product_attention")
@pytest.mark.isolate("numpy_attention", "softmax")
def test_sdpa_by_hand(student):
    """two keys: weights = softmax(q.k / sqrt(2)), output = weighted values"""
    Q = np.array([[1.0, 1.0]])
    K = np.array([[1.0, 1.0], [0.0, 0.0]])
    V = np.array([[2.0, 0.0], [0.0, 4.0]])
    a = 1 / (1 + np.exp(-2 / np.sqrt(2)))   # softmax([2/sqrt2, 0])[0]
    out, weights = student.numpy_attention.scaled_dot_product_attention(Q, K, V)
    assert_close(weights, np.array([[a, 1 - a]]), what="weights of scaled_dot_product_attention(Q, K, V)")
    assert_close(out, np.array([[2 * a, 4 * (1 - a)]]), what="output of scaled_dot_product_attention(Q, K, V)")


def notebook_multi_head(X, W_q, W_k, W_v):
    """The notebook's loop over heads, in NumPy."""
    outputs, weights = [], []
    for h in range(W_q.shape[0]):
        Q, K, V = X @ W_q[h].T, X @ W_k[h].T, X @ W_v[h].T
        scores = Q @ K.T / np.sqrt(W_q.shape[1])
        w = np.exp(scores) / np.exp(scores).sum(axis=-1, keepdims=True)
        outputs.append(w @ V)
        weights.append(w)
    return np.concatenate(outputs, axis=-1), np.stack(weights)


@pytest.mark.problem("multi_head_attention")
@pytest.mark.isolate("numpy_attention", "softmax", "scaled_dot_product_attention")
def test_multi_head_notebook(student):
    """the notebook's example: 3 tokens of width 8, 2 heads of width 4, as its loop computes"""
    X = rand(3, 8, seed=3)
    W_q, W_k, W_v = rand(2, 4, 8, seed=4), rand(2, 4, 8, seed=5), rand(2, 4, 8, seed=6)
    expected_out, expected_weights = notebook_multi_head(X, W_q, W_k, W_v)
    what = "multi_head_attention(X (3, 8), W_q, W_k, W_v (2, 4, 8))"
    with leaves_unchanged(what, X=X, W_q=W_q, W_k=W_k, W_v=W_v):
        out, weights = student.numpy_attention.multi_head_attention(X, W_q, W_k, W_v)
        expect_array(out, what=f"output of {what}", shape=(3, 8))
        expect_array(weights, what=f"weights of {what}", shape=(2, 3, 3))
        assert_close(weights, expected_weights, what=f"weights of {what}")
        assert_close(out, expected_out, what=f"output of {what}")


@pytest.mark.problem("multi_head_attention")
@pytest.mark.isolate("numpy_attention", "softmax", "scaled_dot_product_attention")
def test_multi_head_three_heads(student):
    """3 heads of width 2 on 8-d tokens (the exercise's wording): output (3, 6)"""
    X = rand(3, 8, seed=7)
    W_q, W_k, W_v = rand(3, 2, 8, seed=8), rand(3, 2, 8, seed=9), rand(3, 2, 8, seed=10)
    out, weights = student.numpy_attention.multi_head_attention(X, W_q, W_k, W_v)
    expected_out, expected_weights = notebook_multi_head(X, W_q, W_k, W_v)
    assert_close(out, expected_out, what="output of multi_head_attention(X (3, 8), W_* (3, 2, 8))")
    assert_close(weights, expected_weights, what="weights of multi_head_attention(X (3, 8), W_* (3, 2, 8))")
