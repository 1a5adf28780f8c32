"""Inputs changed in place by student code reach the grader's objects through the sandbox, as
they would in one process, and `expect_unchanged` catches them (autograder/kit/inplace.py)."""

import numpy as np
import pandas as pd
import pytest
import torch

from autograder.kit.checks import GradingFailure
from autograder.kit.inplace import copy_of, expect_unchanged, same

SUBMISSION = '''
import numpy as np

def softmax_in_place(x):
    x -= x.max(axis=-1, keepdims=True)
    np.exp(x, out=x)
    x /= x.sum(axis=-1, keepdims=True)
    return x

def softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)

def pop_first(words):
    words.pop(next(iter(words)))
    return len(words)

def add_column(df):
    df["ix"] = range(len(df))
    return len(df)

def sort_merges(merges):
    merges.sort()
    return merges[0]

def look(x, words, df):
    return float(x.sum()) + len(words) + len(df)
'''


def test_an_array_written_into_comes_back(remote):
    x = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    before = copy_of(x)
    got = remote.student.softmax_in_place(x)
    assert np.allclose(got.sum(-1), 1.0)
    assert np.allclose(x, got)  # the grader's x changed, as in one process
    with pytest.raises(GradingFailure, match="changed x in place"):
        expect_unchanged(x, before, what="x")


def test_a_pure_function_leaves_the_array_alone(remote):
    x = np.array([[1.0, 2.0, 3.0]], dtype=np.float32)
    before = copy_of(x)
    remote.student.softmax(x)
    expect_unchanged(x, before, what="x")
    assert x.dtype == np.float32


def test_a_dict_a_frame_and_a_list_changed_in_place_come_back(remote):
    words = {("a", "b"): 2, ("c",): 1}
    df = pd.DataFrame({"sentence": ["a b", "c"]}, index=[10, 20])
    merges = [("b", "c"), ("a", "b")]
    copies = [copy_of(v) for v in (words, df, merges)]
    assert remote.student.pop_first(words) == 1 and words == {("c",): 1}
    assert remote.student.add_column(df) == 2 and list(df.columns) == ["sentence", "ix"]
    assert remote.student.sort_merges(merges) == ("a", "b") and merges == [("a", "b"), ("b", "c")]
    for value, before, what in zip((words, df, merges), copies, ("words", "df", "merges")):
        with pytest.raises(GradingFailure, match=f"changed {what} in place"):
            expect_unchanged(value, before, what=what)


def test_values_only_read_are_not_sent_back(remote):
    x, words, df = np.ones((2, 2)), {("a",): 1}, pd.DataFrame({"a": [1.0, np.nan]})
    ids = (id(x), id(words), id(df))
    copies = [copy_of(v) for v in (x, words, df)]
    assert remote.student.look(x, words, df) == 4 + 1 + 2
    assert (id(x), id(words), id(df)) == ids
    for value, before in zip((x, words, df), copies):
        assert same(before, value)


def test_same_compares_values_dtypes_and_shapes():
    a = np.array([1.0, np.nan])
    assert same(copy_of(a), a)
    assert not same(copy_of(a), a.astype(np.float32))
    assert not same(copy_of(a), a[:1])
    t = torch.tensor([1.0, float("nan")])
    assert same(copy_of(t), t) and not same(copy_of(t), t * 2)
    frame = pd.DataFrame({"a": [1, 2]}, index=[3, 4])
    assert not same(copy_of(frame), frame.reset_index(drop=True))
    assert same({"a": [1]}, {"a": [1]}) and not same({"a": [1]}, {"a": [2]})
