"""Red-team of notebook submissions (rednb): top-level notebook habits left in a graded cell run when
the grader imports the rebuilt file; the failure says which habit and what to do."""
import pytest

from autograder.kit import adapter, messages


@pytest.mark.parametrize("line, name", [("display(x)", "display"), ("get_ipython().run_line_magic('time', '')",
                                                                      "get_ipython")])
def test_an_ipython_only_name_at_import_says_it_exists_only_in_a_notebook(tmp_path, line, name):
    (tmp_path / "attention.py").write_text(f"x = 1\n{line}\n")
    with pytest.raises(adapter.StudentImportError) as caught:
        adapter.Submission(tmp_path).module("attention")
    assert messages.NOTEBOOK_ONLY_NAME.format(name=name, file="attention.py") in str(caught.value)


def test_input_at_import_says_nobody_answers_in_grading(tmp_path, monkeypatch):
    monkeypatch.setattr("sys.stdin", open("/dev/null"))   # the grader's stdin: nothing to read
    (tmp_path / "model.py").write_text("name = input('Your name: ')\n")
    with pytest.raises(adapter.StudentImportError) as caught:
        adapter.Submission(tmp_path).module("model")
    assert messages.INPUT_AT_IMPORT.format(file="model.py") in str(caught.value)


def test_another_name_error_gets_no_notebook_hint(tmp_path):
    (tmp_path / "attention.py").write_text("undefined_thing\n")
    with pytest.raises(adapter.StudentImportError) as caught:
        adapter.Submission(tmp_path).module("attention")
    assert "exists only in a notebook" not in str(caught.value) and "NameError" in str(caught.value)


def test_a_name_used_above_its_import_says_to_move_the_import_up(tmp_path):
    """The handout's imports cell moved below a stub cell: the notebook ran (the student ran the imports
    first), the rebuilt file does not. The failure says which line binds the name too late."""
    (tmp_path / "attention.py").write_text("# file: attention.py\ndef f(x: torch.Tensor):\n    return x\n\n"
                                           "# file: attention.py\nimport torch\n")
    with pytest.raises(adapter.StudentImportError) as caught:
        adapter.Submission(tmp_path).module("attention")
    assert messages.USED_BEFORE_BOUND.format(name="torch", used=2, file="attention.py", bound=6) in str(caught.value)
