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


def _handout(manifest):
    """The handout notebook as build writes it (its setup payload aside), as plain JSON."""
    import json

    import nbformat

    from autograder.build import notebook as build_notebook

    starters = {f: (manifest.path(manifest.starter) / f).read_bytes() for f in manifest.submission_files}
    files = {f"{manifest.name}/{f}": data for f, data in starters.items()}
    files[f"{manifest.name}/README.md"] = manifest.path(manifest.handout).read_bytes()
    nb = build_notebook.generate(manifest, files)
    filled = build_notebook.fill(nb, build_notebook.reference_sources(manifest))
    return json.loads(nbformat.writes(nb)), json.loads(nbformat.writes(filled))


def _index(cells, first_line_start: str, file: str) -> int:
    return next(i for i, c in enumerate(cells) if f"file:{file}" in c["metadata"].get("tags", [])
                and "".join(c["source"]).split("\n")[1].startswith(first_line_start))


def test_a_correct_colab_notebook_with_the_quirks_students_make_gets_full_marks(tmp_path):
    """The reference pasted into the handout, then saved as students do: cell ids under nbformat 4.4
    (was unreadable: 0 points), Colab's lost tags, `%%time` above a marker (lost causal_mask), the last
    attention.py cell merged with model.py's first (lost model.py), a stub left below its solution (lost
    lm_loss), attention.py's imports cell moved below a function (lost attention.py). Each quirk alone
    cost points before; together they cost none."""
    import json

    from autograder import manifest as manifest_module
    from autograder.grade import grade

    manifest = manifest_module.load("transformer")
    handout, notebook = _handout(manifest)
    cells = notebook["cells"]
    stub = handout["cells"][_index(handout["cells"], "def lm_loss", "model.py")]
    cells.insert(_index(cells, "def lm_loss", "model.py") + 1, stub)
    mask = _index(cells, "def causal_mask", "attention.py")
    cells[mask]["source"] = "%%time\n" + "".join(cells[mask]["source"])
    last, given = _index(cells, "class MultiHeadAttention", "attention.py"), _index(cells, '"""A small GPT', "model.py")
    cells[last]["source"] = "".join(cells[last]["source"]) + "\n\n" + "".join(cells.pop(given)["source"])
    imports = _index(cells, '"""Attention functions', "attention.py")
    cells.insert(imports + 1, cells.pop(imports))   # below the first function, whose annotations need torch
    for cell in cells:
        cell["metadata"].pop("tags", None)
    notebook["nbformat_minor"] = 4
    (tmp_path / "hw.ipynb").write_text(json.dumps(notebook))
    results = grade("transformer", tmp_path / "hw.ipynb", tmp_path / "results.json", quiet=True)
    assert results["score"] == manifest.total_points, [t["output"] for t in results["tests"] if t["status"] != "passed"]
    assert "the starter's stub of lm_loss" in results["output"]
