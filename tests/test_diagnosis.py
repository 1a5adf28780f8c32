"""Mistake diagnosis for modules and hooks, in process: a student's module call replayed on the
catalogued variants (autograder/grader/diagnosis.py), without a grading run."""
import json

import pytest
import torch

from autograder import catalogue as catalogue_module
from autograder.grade.runner import write_diagnoses
from autograder.grader import diagnosis
from autograder.kit import adapter
from autograder.kit.adapter import call
from autograder.kit.torchkit import copy_parameters, randint, randn, randomize_


@pytest.fixture
def catalogue(transformer):
    return {m.name: m for m in catalogue_module.load(transformer)[0]}


@pytest.fixture
def diagnosed(tmp_path, transformer):
    """Diagnosis configured with the catalogue's variants, as in a grader run; undone afterwards."""
    adapter.reset_last_call()
    diagnosis.configure(write_diagnoses(transformer, tmp_path), transformer.path(transformer.reference),
                        tmp_path / "variants")
    yield adapter.Submission(transformer.path(transformer.reference), record_calls=False)
    diagnosis._recorder.uninstall()
    diagnosis._variants.clear()
    adapter.reset_last_call()


def submission_with(tmp_path, transformer, *mutants):
    folder = catalogue_module.materialise(transformer, list(mutants), tmp_path / "student")
    return adapter.Submission(folder)


def student_block(student, reference, args=(8, 2, 0.0, 4), seed=5):
    """A student Block holding a randomized reference Block's weights, in eval mode."""
    ref = randomize_(reference.model.Block(*args), seed).double().eval()
    stu = student.model.Block(*args)  # recorded: how the student's class was built
    copy_parameters(stu, ref, what="Block")
    return stu.double().eval(), ref


def test_a_module_mistake_is_named(tmp_path, transformer, catalogue, diagnosed):
    student = submission_with(tmp_path, transformer, catalogue["block-post-norm"])
    stu, ref = student_block(student, diagnosed)
    x = randn(2, 4, 8, seed=6, dtype=torch.float64)
    with torch.no_grad():
        expected = ref(x)
    got = call(stu, x)
    assert diagnosis.diagnose(got, expected) == catalogue["block-post-norm"].diagnosis


def test_a_correct_module_or_a_stale_call_names_nothing(tmp_path, transformer, diagnosed):
    student = adapter.Submission(transformer.path(transformer.reference))
    stu, ref = student_block(student, diagnosed)
    x = randn(2, 4, 8, seed=6, dtype=torch.float64)
    got = call(stu, x)
    assert diagnosis.diagnose(got, got + 1) is None
    adapter.reset_last_call()  # a new test: the calls of the last one are never replayed
    assert diagnosis._recorder.recent() == []


def test_variants_that_agree_on_the_input_name_nothing(tmp_path, transformer, catalogue, diagnosed):
    """With attn and ffn zeroed, a block missing either residual returns 0: which one is unknown."""
    student = submission_with(tmp_path, transformer, catalogue["block-no-ffn-residual"])
    stu, _ = student_block(student, diagnosed)
    with torch.no_grad():
        for p in (stu.attn.out_proj.weight, stu.attn.out_proj.bias, stu.ffn.fc2.weight, stu.ffn.fc2.bias):
            p.zero_()
    x = randn(2, 4, 8, seed=7, dtype=torch.float64)
    got = call(stu, x)
    assert diagnosis.diagnose(got, x) is None


def test_dropout_misplaced_is_named_from_the_same_random_state(tmp_path, transformer, catalogue, diagnosed):
    student = submission_with(tmp_path, transformer, catalogue["ffn-dropout-after-relu"])
    ref = randomize_(diagnosed.model.FeedForward(8, 0.5), 8).double()
    stu = student.model.FeedForward(8, 0.5)
    copy_parameters(stu, ref, what="FeedForward")
    stu.double().train()
    x = randn(50, 3, 8, seed=9, dtype=torch.float64)
    before = torch.random.get_rng_state()
    got = call(stu, x)
    after = torch.random.get_rng_state()
    assert diagnosis.diagnose(got, ref.eval()(x)) == catalogue["ffn-dropout-after-relu"].diagnosis
    assert torch.equal(diagnosis._recorder.calls[id(stu)].rng, before)
    assert torch.equal(torch.random.get_rng_state(), after)  # the replays leave the random state as they found it


def test_an_error_in_a_module_is_named(tmp_path, transformer, catalogue, diagnosed):
    student = submission_with(tmp_path, transformer, catalogue["transformer-positions-not-sliced"])
    stu = student.model.Transformer(20, 8, 2, 0.0, 6, 1).eval()
    with pytest.raises(RuntimeError) as raised:
        call(stu, randint(20, 2, 4, seed=10))
    assert diagnosis.diagnose_exception(raised.value) == catalogue["transformer-positions-not-sliced"].diagnosis


def test_a_hook_storing_the_output_is_named(tmp_path, transformer, catalogue, diagnosed):
    student = submission_with(tmp_path, transformer, catalogue["hook-stores-output"])
    mha = randomize_(diagnosed.attention.MultiHeadAttention(8, 2), 11).double().eval()
    storage = []
    student.debugging.attach_attention_hook(mha, storage)
    _, weights = call(mha, randn(2, 4, 8, seed=12, dtype=torch.float64), name="MultiHeadAttention.forward")
    assert diagnosis.diagnose(storage[0], weights) == catalogue["hook-stores-output"].diagnosis
    assert len(storage) == 1  # the replay ran on an unhooked copy


def test_watching_modules_changes_nothing(diagnosed):
    """The hooks see every outermost call but never change inputs, outputs or gradients."""
    layer = randomize_(torch.nn.Linear(3, 2), 13)
    x = randn(4, 3, seed=14).requires_grad_()
    out = call(layer, x)
    out.sum().backward()
    assert torch.equal(out, torch.nn.functional.linear(x, layer.weight, layer.bias))
    assert x.grad is not None and diagnosis._recorder.depth == 0
    with pytest.raises(RuntimeError):
        call(layer, randn(4, 5, seed=15))
    assert diagnosis._recorder.depth == 0 and diagnosis._recorder.recent()[-1].raised


def test_diagnosis_json_carries_whole_files(tmp_path, transformer):
    """Variants rebuilt for diagnosis may replace whole files (paths given absolute)."""
    variant = tmp_path / "model.py"
    variant.write_text((transformer.path(transformer.reference) / "model.py").read_text()
                       .replace("x = x + self.ffn(self.ln2(x))", "x = self.ffn(self.ln2(x))"))
    entry = {"name": "whole", "diagnosis": "whole-file variant", "problems": ["Block"], "edits": [],
             "files": {"model.py": str(variant)}}
    (tmp_path / "d.json").write_text(json.dumps([entry]))
    try:
        diagnosis.configure(tmp_path / "d.json", transformer.path(transformer.reference), tmp_path / "v")
        assert not (tmp_path / "v" / "whole").exists()  # written when a replay first needs it, not before
        built = diagnosis._variants[0][2].module("model")
        assert "x = self.ffn(self.ln2(x))" in open(built.__file__).read()
    finally:
        diagnosis._recorder.uninstall()
        diagnosis._variants.clear()


def test_a_sampling_mistake_is_replayed_from_the_students_random_state(tmp_path, transformer, catalogue, diagnosed):
    """Sampling in place of argmax: the variant draws the numbers the student's call drew."""
    student = submission_with(tmp_path, transformer, catalogue["decode-samples"])
    model = randomize_(diagnosed.model.Transformer(30, 8, 2, 0.0, 4, 1), 16).eval()
    ids = randint(30, 3, 2, seed=17)
    expected = diagnosed.model.greedy_decode(model, ids.clone(), 6)
    torch.manual_seed(18)
    got = student.model.greedy_decode(model, ids.clone(), 6)
    assert not torch.equal(got, expected)
    torch.manual_seed(19)  # the random state moved on since the student's call
    assert diagnosis.diagnose(got, expected) == catalogue["decode-samples"].diagnosis


def test_a_mistake_in_plain_data_is_named(tmp_path, transformer, diagnosed):
    """Dicts, lists and strings (a tokenizer's counts or merges) are compared exactly, floats to 1e-9."""
    variant = tmp_path / "model.py"
    variant.write_text((transformer.path(transformer.reference) / "model.py").read_text()
                       + "\n\ndef counts(words):\n    return {w: len(w) for w in words}\n")
    entry = {"name": "plain", "diagnosis": "counts letters", "problems": ["counts"], "edits": [],
             "files": {"model.py": str(variant)}}
    (tmp_path / "d.json").write_text(json.dumps([entry]))
    diagnosis.configure(tmp_path / "d.json", transformer.path(transformer.reference), tmp_path / "v")
    words = ["ab", "abc"]
    adapter._state.reference_call = adapter._state.student_call = ("model", "counts", (words,), {})
    adapter.record_call("counts", (words,))
    assert diagnosis.diagnose({"ab": 2, "abc": 3}, {"ab": 1, "abc": 1}) == "counts letters"
    assert diagnosis.diagnose({"ab": 2.0 + 1e-12, "abc": 3}, {"ab": 1, "abc": 1}) == "counts letters"
    assert diagnosis.diagnose({"ab": 2, "abc": 4}, {"ab": 1, "abc": 1}) is None
    assert diagnosis.diagnose([("ab", 2), ("abc", 3)], {"ab": 1, "abc": 1}) is None
    assert diagnosis.diagnose({"ab": 2, "abc": 3}, {"ab": 2, "abc": 3}) is None  # the variant is right here


def test_a_number_is_named_only_when_the_variant_reproduces_its_error(tmp_path, transformer, diagnosed):
    """A wrong number (as assert_scalar_close reports it) is named by a variant that reproduces it, not by
    one merely within the tensors' tolerance of it (lr_at's cosine one step short is not 'decays to 0')."""
    variant = tmp_path / "model.py"
    variant.write_text((transformer.path(transformer.reference) / "model.py").read_text()
                       + "\n\ndef rate(step):\n    return 0.997\n")
    entry = {"name": "number", "diagnosis": "a rate short by 0.003", "problems": ["rate"], "edits": [],
             "files": {"model.py": str(variant)}}
    (tmp_path / "d.json").write_text(json.dumps([entry]))
    diagnosis.configure(tmp_path / "d.json", transformer.path(transformer.reference), tmp_path / "v")

    def diagnose(got):
        adapter._state.reference_call = adapter._state.student_call = ("model", "rate", (3,), {})
        adapter.record_call("rate", (3,))
        return diagnosis.diagnose(torch.tensor(got, dtype=torch.float64), torch.tensor(1.0, dtype=torch.float64))

    assert diagnose(0.997) == "a rate short by 0.003"
    assert diagnose(0.997 + 1e-8) == "a rate short by 0.003"   # float32 noise
    assert diagnose(0.996) is None   # within 1e-3 of the variant's, but its error is 0.004, not 0.003


def test_a_name_whose_failures_match_no_known_mistake_stops_being_replayed(tmp_path, transformer, diagnosed):
    """After GIVE_UP_AFTER replays of a name that named nothing (and none that named a mistake), its later
    failures are not replayed: a submission wrong everywhere does not pay every variant at every check."""
    variant = tmp_path / "model.py"
    variant.write_text((transformer.path(transformer.reference) / "model.py").read_text()
                       + "\n\nREPLAYS = []\n\ndef counts(words):\n    REPLAYS.append(1)\n"
                       + "    return {w: len(w) for w in words}\n")
    entry = {"name": "plain", "diagnosis": "counts letters", "problems": ["counts"], "edits": [],
             "files": {"model.py": str(variant)}}
    (tmp_path / "d.json").write_text(json.dumps([entry]))
    words, right = ["ab", "abc"], {"ab": 1, "abc": 1}

    def diagnose(got):
        adapter._state.reference_call = adapter._state.student_call = ("model", "counts", (words,), {})
        adapter.record_call("counts", (words,))
        return diagnosis.diagnose(got, right)

    def replays():
        return len(diagnosis._variants[0][2].module("model").REPLAYS)

    for run in range(2):
        diagnosis.configure(tmp_path / "d.json", transformer.path(transformer.reference), tmp_path / f"v{run}")
        if run == 1:  # a name some replay explained is replayed at every failure
            assert diagnose({"ab": 2, "abc": 3}) == "counts letters"
        for _ in range(diagnosis.GIVE_UP_AFTER):
            assert diagnose({"ab": 7, "abc": 7}) is None
        before = replays()
        named = diagnose({"ab": 2, "abc": 3})
        assert (named, replays() - before) == ((None, 0) if run == 0 else ("counts letters", 1))


@pytest.mark.parametrize("a, b, same", [
    ({("a", "b"): 1}, {("a", "b"): 1}, True),
    ([("a", "b")], [("a", "b")], True),
    ([("a", "b")], [["a", "b"]], False),      # a list is not a tuple
    ({"x": 0.1 + 0.2}, {"x": 0.3}, True),    # floats to 1e-9
    ({"x": 1.0}, {"x": 1.001}, False),
    ({"x": True}, {"x": 1.0}, False),
    (["a", "b"], ["b", "a"], False),
])
def test_plain_values_compare_exactly(a, b, same):
    assert diagnosis._same_plain(a, b) is same


def test_a_module_called_directly_after_both_constructors_is_named(tmp_path, transformer, catalogue, diagnosed):
    """The last calls into the reference and the student both built a Block; the test then calls the
    modules themselves (not through `call`): the student module's forward call is replayed."""
    student = submission_with(tmp_path, transformer, catalogue["block-post-norm"])
    stu, ref = student_block(student, diagnosed)
    x = randn(2, 4, 8, seed=6, dtype=torch.float64)
    with torch.no_grad():
        expected = ref(x)
    got = stu(x)
    assert adapter.last_reference_call() is not None  # what used to end the search
    assert diagnosis.diagnose(got, expected) == catalogue["block-post-norm"].diagnosis


def test_a_wrong_default_is_replayed_with_the_students_own_arguments(tmp_path, transformer, catalogue, diagnosed):
    """The test passes num_heads=4 to the reference and leaves it out for the student: only the
    student's own call shows the variant's default."""
    student = submission_with(tmp_path, transformer, catalogue["default-heads-8"])
    S = randn(2, 6, 8, seed=20, dtype=torch.float64)
    W = [randn(8, 8, seed=21 + i, dtype=torch.float64) for i in range(4)]
    expected = diagnosed.attention.multi_head_attention(S, *W, num_heads=4)
    got = student.attention.multi_head_attention(S, *W)
    assert diagnosis.diagnose(got, expected) == catalogue["default-heads-8"].diagnosis


def test_the_students_own_arguments_explain_nothing_when_the_result_is_right_on_them(tmp_path, transformer,
                                                                                      catalogue, diagnosed):
    """A test that gives the student other inputs than the reference (then compares something else)
    names no variant that is right on the student's inputs."""
    student = submission_with(tmp_path, transformer, catalogue["default-heads-8"])
    S = randn(2, 6, 16, seed=20, dtype=torch.float64)
    W = [randn(16, 16, seed=21 + i, dtype=torch.float64) for i in range(4)]
    expected = diagnosed.attention.multi_head_attention(S, *W, num_heads=4)
    got = student.attention.multi_head_attention(S, *W, num_heads=8)  # right for 8 heads, as the reference is
    assert diagnosis.diagnose(got, expected) is None
    got = student.attention.multi_head_attention(S, *W)  # wrong on its own arguments: named
    assert diagnosis.diagnose(got, expected) == catalogue["default-heads-8"].diagnosis


def test_a_mistake_named_once_is_tried_first_and_alone_at_later_failures(tmp_path, transformer, diagnosed):
    """Once an input told the student's mistake apart (only its variant reproduced it), a later failure
    that this variant reproduces is named after it, even where another variant reproduces it too, and
    without replaying the others: the catalogue's checks and a class's regrade pay one replay, not
    one per variant, at each failure after the first."""
    reference = (transformer.path(transformer.reference) / "model.py").read_text()
    entries = []
    for name, body in [("doubles", "2 * len(w)"), ("squares", "len(w) ** 2")]:
        variant = tmp_path / name / "model.py"
        variant.parent.mkdir()
        variant.write_text(reference + f"\n\nREPLAYS = []\n\ndef counts(words):\n    REPLAYS.append(1)\n"
                           f"    return {{w: {body} for w in words}}\n")
        entries.append({"name": name, "diagnosis": f"counts {name}", "problems": ["counts"], "edits": [],
                        "files": {"model.py": str(variant)}})
    (tmp_path / "d.json").write_text(json.dumps(entries))
    diagnosis.configure(tmp_path / "d.json", transformer.path(transformer.reference), tmp_path / "v")

    def diagnose(words, got):
        adapter._state.reference_call = adapter._state.student_call = ("model", "counts", (words,), {})
        adapter.record_call("counts", (words,))
        return diagnosis.diagnose(got, {w: 1 for w in words})

    def replays():
        return [len(v.module("model").REPLAYS) for _, _, v in diagnosis._variants]

    assert diagnose(["abc"], {"abc": 6}) == "counts doubles"          # 2 * 3 != 3 ** 2: told apart
    assert replays() == [1, 1]
    assert diagnose(["ab"], {"ab": 4}) == "counts doubles"            # 2 * 2 == 2 ** 2: both reproduce it
    assert replays() == [2, 1]                                          # the named one alone was replayed
    assert diagnose(["abcd"], {"abcd": 16}) == "counts squares"       # the named one does not: all are
    assert replays() == [3, 2]
