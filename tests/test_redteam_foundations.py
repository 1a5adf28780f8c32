"""Red team of the `foundations` grading (redfound): submissions in styles students use, and single
classic bugs, whose grading was wrong or whose message did not teach (fixed in tests_hidden/foundations).

- a `SelfAttention` whose logits drop the batch axis of a batch of one (`.squeeze()` without a
  dimension) got full marks: no test had a batch of one;
- SentencePiece tokens from `encode(text, out_type=str)` (an unknown character stays itself, not
  `<unk>`) lost points with no word on why;
- `apply_bpe` returning a tuple, or `learn_bpe` lists for pairs, lost points with messages whose
  only clue was the brackets;
- `attention_maps` without `torch.no_grad()` (weights that require grad) got full marks: the test
  looked at `requires_grad` after `expect_tensor` had detached the weights;
- two lists of twenty merges that differ somewhere were shown whole, with no word on where.
"""
import importlib.util

import pytest

from autograder import catalogue as catalogue_module
from autograder import manifest as manifest_module
from autograder.grade import grade
from autograder.kit.adapter import GradingFailure

from test_grading import lost, make_submission

SQUEEZE_ALL = "sa-squeeze-all"
SP_STR_PIECES = "tok-sp-str-pieces"
APPLY_TUPLE = "apply-returns-tuple"
BPE_LISTS = "bpe-merges-as-lists"
GRAD_KEPT = "am-grad-kept"
NAMES = (SQUEEZE_ALL, SP_STR_PIECES, APPLY_TUPLE, BPE_LISTS, GRAD_KEPT)


@pytest.fixture(scope="module")
def graded(tmp_path_factory, foundations):
    """One submission holding the five catalogued mistakes above (in five problems and three files)."""
    tmp = tmp_path_factory.mktemp("redfound")
    folder = make_submission(tmp / "submission", foundations, *NAMES)
    return grade("foundations", folder, tmp / "results.json")


def outputs(results: dict, problem: str) -> str:
    return "\n".join(t["output"] for t in results["tests"] if t["tags"] == [problem] and t["score"] < t["max_score"])


def test_the_catalogue_holds_the_variants(foundations):
    names = {m.name for m in catalogue_module.load(foundations)[0]}
    assert set(NAMES) <= names


def test_each_mistake_costs_its_own_problem_only(graded):
    """a batch of one is tested: `.squeeze()` loses SelfAttention's points (and only those)"""
    assert lost(graded) == {"SelfAttention", "compare_tokenizers", "apply_bpe", "learn_bpe", "attention_maps"}


def test_a_batch_of_one_keeps_its_batch_axis(graded):
    assert "has shape [6], expected [1, 6]" in outputs(graded, "SelfAttention")


def test_sentencepiece_string_pieces_are_explained(graded):
    text = outputs(graded, "compare_tokenizers")
    assert "encode(text, out_type=str)" in text and "id_to_piece" in text


def test_a_tuple_for_a_list_is_named(graded):
    assert "it is a tuple: return a list" in outputs(graded, "apply_bpe")


def test_lists_for_pairs_are_named(graded):
    assert "they are lists: each should be a tuple" in outputs(graded, "learn_bpe")


def test_attention_maps_that_require_grad_fail(graded):
    assert "the weights require grad; compute them under torch.no_grad()" in outputs(graded, "attention_maps")


def hidden_tokenization_tests():
    """tests_hidden/foundations/test_tokenization_hidden.py as a module, for its message helpers."""
    path = manifest_module.ROOT / "tests_hidden" / "foundations" / "test_tokenization_hidden.py"
    spec = importlib.util.spec_from_file_location("redfound_tokenization_hidden", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.filterwarnings("ignore::pytest.PytestUnknownMarkWarning")   # the grader's marks, unregistered here
def test_long_lists_name_their_first_difference():
    """learn_bpe's merges differ somewhere in a line of twenty pairs: the message says where"""
    tests = hidden_tokenization_tests()
    merges = [("a", "b"), ("b", "c"), ("c", "d"), ("ab", "c"), ("a", "bc")]
    with pytest.raises(GradingFailure) as caught:
        tests.expect_same([*merges[:3], ("x", "y"), merges[4]], merges, "learn_bpe(...)")
    assert "They differ first at item 3: got ('x', 'y'), expected ('ab', 'c')." in str(caught.value)
    with pytest.raises(GradingFailure) as caught:
        tests.expect_same(merges[:4], merges, "learn_bpe(...)")
    assert "The first 4 items are right, then yours stops (1 missing)." in str(caught.value)
