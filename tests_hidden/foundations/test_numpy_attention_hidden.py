"""Hidden tests for numpy_attention.py: the student's results against the reference's, on many shapes
and in both float dtypes; every test also checks that the inputs are left as they were."""
import numpy as np
import pytest

from autograder.kit.checks import assert_close, expect, expect_array
from autograder.kit.inplace import copy_of, expect_unchanged


def rand(*shape, seed, scale=1.0, dtype=np.float64):
    return (np.random.default_rng(seed).normal(size=shape) * scale).astype(dtype)


def both(student, reference, name, *args, **kwargs):
    """The student's and the reference's results; then the student's call must have left `args` as they were
    (checked by the caller once the results are compared: see `inputs_unchanged`)."""
    copies = [copy_of(a) for a in args]
    got = getattr(student.numpy_attention, name)(*args, **kwargs)
    expected = getattr(reference.numpy_attention, name)(*[copy_of(c) for c in copies], **kwargs)
    return got, expected, lambda: inputs_unchanged(name, args, copies)


def inputs_unchanged(name, args, copies):
    for i, (arg, before) in enumerate(zip(args, copies)):
        expect_unchanged(arg, before, what=f"argument {i + 1} of {name}")


@pytest.mark.problem("softmax")
@pytest.mark.parametrize("shape,axis,dtype", [((5,), -1, np.float64), ((4, 7), -1, np.float64), ((4, 7), 0, np.float64),
                                               ((2, 3, 5), 1, np.float64), ((2, 3, 5), -1, np.float32)])
def test_softmax_random(student, reference, shape, axis, dtype):
    """softmax of random scores along several axes (float32: float32 or float64 results, float32's tolerance)"""
    x = rand(*shape, seed=sum(shape), scale=3.0, dtype=dtype)
    got, expected, unchanged = both(student, reference, "softmax", x, axis=axis)
    expect_array(got, what=f"softmax(x {list(shape)}, axis={axis})", shape=shape)
    assert_close(got, expected, what=f"softmax(x {list(shape)} {np.dtype(dtype)}, axis={axis})")
    unchanged()


@pytest.mark.problem("softmax")
def test_softmax_huge_scores(student, reference):
    """scores around +-1e4 stay finite and exact"""
    x = rand(3, 6, seed=11, scale=1e4)
    got, expected, unchanged = both(student, reference, "softmax", x)
    expect(isinstance(got, np.ndarray) and np.all(np.isfinite(got)),
           "softmax(x) with scores around 1e4 has inf or nan: subtract the maximum along `axis` first "
           "(np.max(x, axis=axis, keepdims=True)); one maximum for the whole array leaves rows far below it at 0 / 0.")
    assert_close(got, expected, what="softmax(x) with scores around 1e4")
    unchanged()


@pytest.mark.problem("scaled_dot_product_attention")
@pytest.mark.isolate("numpy_attention", "softmax")
@pytest.mark.parametrize("batch,T_q,T_k,d_k,d_v,dtype", [((), 3, 3, 4, 4, np.float64), ((), 2, 5, 3, 6, np.float64),
                                                         ((2,), 4, 4, 8, 2, np.float64), ((2, 3), 5, 2, 4, 3, np.float64),
                                                         ((2,), 3, 4, 5, 2, np.float32)])
def test_sdpa_random(student, reference, batch, T_q, T_k, d_k, d_v, dtype):
    """random Q, K, V with T_q != T_k, d_k != d_v, leading batch dimensions, float64 and float32"""
    Q, K, V = (rand(*batch, T_q, d_k, seed=1, dtype=dtype), rand(*batch, T_k, d_k, seed=2, dtype=dtype),
               rand(*batch, T_k, d_v, seed=3, dtype=dtype))
    (out, weights), (e_out, e_weights), unchanged = both(student, reference, "scaled_dot_product_attention", Q, K, V)
    what = f"scaled_dot_product_attention(Q {list(Q.shape)}, K {list(K.shape)}, V {list(V.shape)}, {np.dtype(dtype)})"
    expect_array(weights, what=f"weights of {what}", shape=e_weights.shape)
    assert_close(weights, e_weights, what=f"weights of {what}")
    expect_array(out, what=f"output of {what}", shape=e_out.shape)
    assert_close(out, e_out, what=f"output of {what}")
    unchanged()


@pytest.mark.problem("scaled_dot_product_attention")
@pytest.mark.isolate("numpy_attention", "softmax")
def test_sdpa_large_scores(student, reference):
    """large queries and keys: weights stay finite"""
    Q, K, V = rand(4, 16, seed=4, scale=30), rand(4, 16, seed=5, scale=30), rand(4, 16, seed=6)
    (out, weights), (e_out, e_weights), unchanged = both(student, reference, "scaled_dot_product_attention", Q, K, V)
    assert_close(weights, e_weights, what="weights of scaled_dot_product_attention(Q, K, V) with scores in the hundreds")
    assert_close(out, e_out, what="output of scaled_dot_product_attention(Q, K, V) with scores in the hundreds")
    unchanged()


@pytest.mark.problem("multi_head_attention")
@pytest.mark.isolate("numpy_attention", "softmax", "scaled_dot_product_attention")
@pytest.mark.parametrize("batch,T,d_model,H,d_k,d_v,dtype", [((), 3, 8, 2, 4, 4, np.float64), ((), 5, 6, 3, 2, 5, np.float64),
                                                              ((), 4, 8, 1, 8, 8, np.float64), ((2,), 4, 6, 2, 3, 3, np.float64),
                                                              ((), 4, 6, 3, 2, 2, np.float32)])
def test_multi_head_random(student, reference, batch, T, d_model, H, d_k, d_v, dtype):
    """random X and per-head projections, d_v != d_k, one head, a batch, float32"""
    X = rand(*batch, T, d_model, seed=7, dtype=dtype)
    W_q, W_k, W_v = (rand(H, d_k, d_model, seed=8, dtype=dtype), rand(H, d_k, d_model, seed=9, dtype=dtype),
                     rand(H, d_v, d_model, seed=10, dtype=dtype))
    (out, weights), (e_out, e_weights), unchanged = both(student, reference, "multi_head_attention", X, W_q, W_k, W_v)
    what = (f"multi_head_attention(X {list(X.shape)}, W_q {list(W_q.shape)}, W_k {list(W_k.shape)}, W_v {list(W_v.shape)}, "
            f"{np.dtype(dtype)})")
    expect_array(weights, what=f"weights of {what}", shape=e_weights.shape)
    assert_close(weights, e_weights, what=f"weights of {what}")
    expect_array(out, what=f"output of {what}", shape=e_out.shape)
    assert_close(out, e_out, what=f"output of {what}")
    unchanged()


@pytest.mark.problem("multi_head_attention")
@pytest.mark.isolate("numpy_attention", "softmax", "scaled_dot_product_attention")
def test_multi_head_large_scores(student, reference):
    """large projections: stable softmax in every head"""
    X = rand(4, 8, seed=13, scale=10)
    W = [rand(2, 4, 8, seed=s, scale=5) for s in (14, 15, 16)]
    (out, weights), (e_out, e_weights), unchanged = both(student, reference, "multi_head_attention", X, *W)
    assert_close(weights, e_weights, what="weights of multi_head_attention(X, W_q, W_k, W_v) with large scores")
    assert_close(out, e_out, what="output of multi_head_attention(X, W_q, W_k, W_v) with large scores")
    unchanged()
