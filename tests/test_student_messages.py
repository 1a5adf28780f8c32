"""Failure messages a student reads: NumPy shown as NumPy, one-element tuples, long dicts cut between
entries, and the "Last call" line naming the method that crashed."""
import numpy as np
import pytest
import torch

from autograder.kit import adapter, checks, messages, plugin


def test_numpy_results_are_shown_as_numpy():
    with pytest.raises(checks.GradingFailure) as caught:
        checks.assert_close(np.ones((2, 3)), np.zeros((2, 3)), what="softmax(x)")
    assert "array([[" in caught.value.details and "tensor(" not in caught.value.details
    assert "torch." not in caught.value.details
    with pytest.raises(checks.GradingFailure) as caught:
        checks.assert_equal(np.array([1, 2]), np.array([1, 3]), what="labels")
    assert "array([1, 3])" in caught.value.details and "tensor(" not in caught.value.details
    with pytest.raises(checks.GradingFailure) as caught:  # a torch problem still shows tensors
        checks.assert_close(torch.ones(2), torch.zeros(2), what="out")
    assert "tensor(" in caught.value.details


def test_one_element_tuple_keeps_its_comma():
    assert adapter.describe(("x",)) == "('x',)"
    assert adapter.describe(("x", 1)) == "('x', 1)"
    assert adapter.describe_call("f", (("a",),), {}) == "f(('a',))"


def test_long_dicts_are_cut_between_entries_and_say_how_many_were_left_out():
    value = {(chr(97 + k), "b"): k for k in range(26)}
    text = checks.shown(value, 100)
    assert text.startswith("{('a', 'b'): 0, ") and text.endswith(" more entries}")
    kept = text[1:].split(", ... ")[0].split(", (")
    assert all(entry.rstrip().split(": ")[-1].isdigit() for entry in kept)  # every entry whole
    left = int(text.rsplit("... ", 1)[1].split()[0])
    assert left + len(kept) == 26
    assert checks.shown({"a": 1}) == "{'a': 1}"
    assert checks.shown(list(range(100)), 30).endswith("more entries]")
    assert checks.shown(tuple(range(100)), 30).endswith("more entries)")


def test_last_call_names_the_method_that_crashed(tmp_path):
    (tmp_path / "model.py").write_text(
        "import torch\n"
        "class Broken(torch.nn.Module):\n"
        "    def __init__(self, d):\n"
        "        super().__init__()\n"
        "        self.linear = torch.nn.Linear(d, d)\n"
        "    def forward(self, x):\n"
        "        return self.linear(x.T)\n")
    adapter.reset_last_call()
    student = adapter.Submission(tmp_path)
    module = student.model.Broken(4)
    built = adapter.last_call()
    with pytest.raises(RuntimeError) as caught:
        module(torch.zeros(2, 4))
    summary, _, _ = plugin.student_message(caught, tmp_path)
    assert messages.LAST_CALL.format(call="Broken.forward(float32[2, 4])") in summary
    assert adapter.last_call() is built  # diagnosis.py groups module calls by the call that built the module
    with pytest.raises(TypeError) as caught:  # a crash in the constructor still names the constructor
        student.model.Broken("four")
    summary, _, _ = plugin.student_message(caught, tmp_path)
    assert messages.LAST_CALL.format(call="Broken('four')") in summary


def test_a_call_of_the_handouts_own_helper_is_not_the_last_call_into_the_students_code(tmp_path):
    (tmp_path / "training.py").write_text(
        "def train_step(x):\n"
        "    return x + 1\n"
        "def snapshot(x):  # given: the tests read results back with it\n"
        "    return {'x': x}\n")
    student = adapter.Submission(tmp_path)
    seen = []
    adapter.call_listeners.append(lambda obj, name, args, kwargs: seen.append(name))
    try:
        adapter.set_given({"training": ["snapshot"]})
        adapter.reset_last_call()
        assert student.training.snapshot(student.training.train_step(1)) == {"x": 2}
        assert adapter.last_call_shown() == "train_step(1)"
        assert adapter.last_student_call()[1] == "train_step"   # what diagnosis replays
        assert seen == ["train_step", "snapshot"]               # the public audit still sees every call
        adapter.set_given({})
        student.training.snapshot(3)
        assert adapter.last_call_shown() == "snapshot(3)"
    finally:
        adapter.set_given({})
        adapter.call_listeners.pop()


def test_given_names_are_the_reference_definitions_without_a_solution_region(tmp_path):
    from autograder import manifest as manifest_module
    from autograder import starter

    source = ("def helper():\n    return 1\n\n"
              "def stub(x):\n    # BEGIN SOLUTION\n    return x\n    # END SOLUTION\n\n"
              "class Given:\n    pass\n\n"
              "class Task:\n    def forward(self):\n        # BEGIN SOLUTION\n        pass\n        # END SOLUTION\n\n"
              "def _private():\n    pass\n")
    assert starter.given_in(source) == ["helper", "Given"]
    given = starter.given_names(manifest_module.load("training"))
    assert {"build_model", "snapshot", "new_generator", "plain_adamw"} <= set(given["training"])
    assert "train_step" not in given["training"] and "Transformer" in given["model"]


def test_long_lists_are_described_by_their_first_items_and_length():
    dataset = [{"input_ids": list(range(32)), "attention_mask": [1] * 32, "labels": i % 2} for i in range(256)]
    text = adapter.describe_call("fine_tune", ("model", dataset, dataset[:160]), {})
    assert "... 256 items]" in text and "... 160 items]" in text and "... 32 items]" in text
    assert len(text) < 500
    assert adapter.describe([1, 2, 3, 4, 5, 6]) == "[1, 2, 3, 4, 5, 6]"
    assert adapter.describe(tuple(range(7))) == "(0, 1, ... 7 items)"



# ---- red1: tracebacks of endless recursion and syntax errors, a module's dtype ----

def test_endless_recursion_shows_the_repeated_line_three_times_then_counts_the_rest(tmp_path):
    """A RecursionError's 1000 identical frames were cut to the message limit mid-line, and said nothing else."""
    (tmp_path / "attention.py").write_text("def f(n):\n    return f(n + 1)\n")
    module = adapter.Submission(tmp_path).module("attention")
    with pytest.raises(RecursionError) as caught:
        module.f(0)
    text = adapter.format_student_traceback(caught.value, tmp_path)
    assert text.count('File "attention.py", line 2, in f') == 3
    assert "[Previous line repeated" in text and "more times]" in text
    assert text.endswith("RecursionError: maximum recursion depth exceeded")
    assert len(text) < 500


def test_a_syntax_error_names_the_file_once_without_the_graders_folder(tmp_path):
    (tmp_path / "debugging.py").write_text("def attach(module, storage:\n    pass\n")
    with pytest.raises(adapter.StudentImportError) as caught:
        adapter.Submission(tmp_path).module("debugging")
    text = str(caught.value)
    assert str(tmp_path) not in text
    assert text.count('File "debugging.py", line 1') == 1
    assert "def attach(module, storage:" in text and "SyntaxError" in text


def test_a_wrong_dtype_names_the_parameters_too():
    """A Transformer's logits take the parameters' dtype; its input_ids are int64."""
    with pytest.raises(checks.GradingFailure) as caught:
        checks.expect_tensor(torch.zeros(2), what="logits", dtype=torch.float64)
    assert caught.value.summary == messages.WRONG_DTYPE.format(what="logits", got=torch.float32,
                                                               expected=torch.float64)
    assert "parameters" in caught.value.summary


def test_an_import_of_a_package_the_grader_lacks_says_so(tmp_path):
    """matplotlib left at the top of debugging.py imports on a laptop, not on the grader: say why it failed there."""
    (tmp_path / "debugging.py").write_text("import no_such_plotting_package.pyplot as plt\n")
    with pytest.raises(adapter.StudentImportError) as caught:
        adapter.Submission(tmp_path).module("debugging")
    assert messages.MISSING_PACKAGE.format(package="no_such_plotting_package", file="debugging.py") in str(caught.value)


def test_the_missing_package_is_charged_to_the_file_that_imports_it(tmp_path):
    """model.py imports attention.py, which imports the package: the import to remove is in attention.py."""
    (tmp_path / "attention.py").write_text("import no_such_package\n")
    (tmp_path / "model.py").write_text("import attention\n")
    with pytest.raises(adapter.StudentImportError) as caught:
        adapter.Submission(tmp_path).module("model")
    assert messages.MISSING_PACKAGE.format(package="no_such_package", file="attention.py") in str(caught.value)


def test_an_error_on_the_meta_device_says_why_the_test_used_it():
    with pytest.raises(RuntimeError) as caught:
        bool(torch.ones(2, device="meta").any())
    assert plugin.error_note(str(caught.value)) == "\n" + messages.META_VALUE
    assert plugin.error_note("index 3 is out of bounds") == ""
