"""Notebook submissions (issue 15): intake rebuilds each submitted file from the notebook's cells
tagged for it (grade/notebooks.py, grade/intake.py), so that a notebook grades exactly as the
same code in `.py` files; hostile and broken notebooks cost only what they should.

Full gradings are few (about 9 s of CPU each): the reference of `transformer` as a notebook, three
mutants (one submission), a crash at import, each beside its .py grading, and one run through the
Gradescope zip's run_autograder. The other assignments are proven by their rebuilt sources (the
reference's bytes, plus the marker lines).
"""
import json
import pathlib
import re
import tracemalloc
import zipfile

import nbformat
import pytest
from nbformat import v3, v4
from test_grading import check_schema

from autograder import catalogue
from autograder import manifest as manifest_module
from autograder.grade import grade, grade_via_zip, intake, notebooks
from autograder.kit import messages
from autograder.regrade import sources

ASSIGNMENTS = ["foundations", "training", "transformer"]
MARKER = "# file: {name}"
EXPLORATION = ["!pip install -q torch", "import matplotlib.pyplot as plt\nplt.plot([1, 2])", "model.eval()"]


def chunks(text: str) -> list[str]:
    """A file's top-level chunks: split where two blank lines come before unindented code."""
    return re.split(r"\n\n\n(?=\S)", text)


def notebook_of(files: dict[str, str], *, marker_every: int = 3, exploration=EXPLORATION, answers=None) -> dict:
    """A notebook as a student makes it from `files`: one cell per top-level chunk, tagged
    `file:<name>`, but every `marker_every`-th cell carries only the marker comment (an editor
    dropped its tags); untagged exploration cells between files; answer cells at the end."""
    cells = [v4.new_markdown_cell("# My homework")]
    for name, text in files.items():
        for k, chunk in enumerate(chunks(text)):
            if marker_every and k % marker_every == 1:
                cells.append(v4.new_code_cell(MARKER.format(name=name) + "\n" + chunk))
            else:
                cells.append(v4.new_code_cell(chunk, metadata={"tags": [f"file:{name}"]}))
        cells += [v4.new_code_cell(source) for source in exploration]
    for qid, text in (answers or {}).items():
        cells.append(v4.new_markdown_cell(text, metadata={"tags": [f"answer:{qid}"]}))
    notebook = v4.new_notebook(cells=cells)
    nbformat.validate(notebook)
    return notebook


def write_notebook(notebook, path: pathlib.Path) -> pathlib.Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(nbformat.writes(notebook), encoding="utf-8")
    return path


def reference_files(manifest) -> dict[str, str]:
    folder = manifest.path(manifest.reference)
    return {name: (folder / name).read_text(encoding="utf-8") for name in manifest.submission_files}


def without_markers(text: str, name: str) -> str:
    return "".join(line for line in text.splitlines(keepends=True) if line != MARKER.format(name=name) + "\n")


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_every_reference_rebuilds_from_its_notebook(tmp_path, assignment):
    """Every file comes back as the reference's bytes plus, at the start of the cells an editor
    stripped of their tags, their marker comment line: nothing else changes, so they grade alike."""
    manifest = manifest_module.load(assignment)
    files = reference_files(manifest)
    path = write_notebook(notebook_of(files), tmp_path / "upload" / "hw.ipynb")
    report = intake.take(path.parent, manifest.submission_files, tmp_path / "clean")
    assert report.missing == [] and not report.error
    markers = 0
    for name, text in files.items():
        rebuilt = (tmp_path / "clean" / name).read_text(encoding="utf-8")
        assert without_markers(rebuilt, name) == text, name
        markers += rebuilt.count(MARKER.format(name=name))
        assert report.found[name] == "hw.ipynb"
    assert markers > 0   # the marker fallback was exercised
    untagged = [n for n in report.notes if "not part of any submitted file" in n]
    assert len(untagged) == 1 and untagged[0].startswith("hw.ipynb: ")


def _same_grading(py: dict, nb: dict, notebook: str = "hw.ipynb") -> None:
    """results.json of a notebook equals that of the .py files, but for times and the notes about
    the notebook (which cells made which file, which were ignored)."""
    assert nb["tests"] == py["tests"]
    assert nb["score"] == py["score"]
    assert [line for line in nb["output"].splitlines() if line and notebook not in line] == \
           [line for line in py["output"].splitlines() if line]
    assert {k: v for k, v in nb.items() if k not in {"execution_time", "output"}} == \
           {k: v for k, v in py.items() if k not in {"execution_time", "output"}}


@pytest.fixture(scope="module")
def reference_py(transformer, tmp_path_factory):
    return grade("transformer", transformer.path(transformer.reference), quiet=True)


def test_the_reference_as_a_notebook_grades_as_the_py_files_and_untagged_cells_never_run(
        transformer, reference_py, tmp_path):
    """Exploration cells that would end the grader or write a file are never run."""
    witness = tmp_path / "untagged-cell-ran"
    hostile = [*EXPLORATION, f"open({str(witness)!r}, 'w').write('ran')", "import os\nos._exit(3)",
               "raise SystemExit(1)"]
    notebook = notebook_of(reference_files(transformer), exploration=hostile)
    path = write_notebook(notebook, tmp_path / "hw.ipynb")
    results = grade("transformer", path, tmp_path / "results.json", quiet=True)
    assert reference_py["score"] == transformer.total_points
    _same_grading(reference_py, results)
    assert not witness.exists()
    attention = len(chunks(reference_files(transformer)["attention.py"]))   # its cells follow the title cell
    gave = messages.NOTEBOOK_GAVE.format(file="attention.py", cells=f"2-{1 + attention}", notebook="hw.ipynb")
    assert f"- {gave}" in results["output"].splitlines()


def _submission(manifest, mutant_names: list[str], folder: pathlib.Path) -> dict[str, str]:
    mutants, _ = catalogue.load(manifest)
    chosen = [m for m in mutants if m.name in mutant_names]
    assert len(chosen) == len(mutant_names)
    catalogue.materialise(manifest, chosen, folder)
    return {name: (folder / name).read_text(encoding="utf-8") for name in manifest.submission_files}


CRASH = "import os\nos._exit(3)"


# Three mutants in one submission (attention.py and model.py: one grading instead of three, for CI time).
@pytest.mark.parametrize("case", [["mask-future", "lm-loss-no-shift", "decode-notebook-argmax"], "crash"],
                         ids=["mutants", "crash"])
def test_mutants_and_a_crash_grade_the_same_from_a_notebook(transformer, tmp_path, case):
    """The same code, as .py files or as a notebook without marker cells (a marker line would
    shift line numbers in tracebacks), grades the same; a tagged cell that ends the process at
    import costs what the same .py file costs."""
    files = _submission(transformer, [] if case == "crash" else case, tmp_path / "py")
    if case == "crash":
        files["attention.py"] = CRASH + "\n\n\n" + files["attention.py"]
        (tmp_path / "py" / "attention.py").write_text(files["attention.py"], encoding="utf-8")
    path = write_notebook(notebook_of(files, marker_every=0), tmp_path / "nb" / "hw.ipynb")
    py = grade("transformer", tmp_path / "py", quiet=True)
    nb = grade("transformer", path, quiet=True)
    assert py["score"] < transformer.total_points
    _same_grading(py, nb)


def test_a_notebook_through_run_autograder_shows_its_written_answers(tmp_path, copy_root):
    """The Gradescope zip's run_autograder grades a notebook submission; a manifest whose written
    questions have points adds a test of 0 points that shows the answers, graded by hand."""
    root = copy_root(tmp_path / "root")
    toml = root / "assignments" / "transformer" / "assignment.toml"
    toml.write_text(toml.read_text() + '\n[questions.why_scale]\nprompt = "Why divide by sqrt(d_k)?"\npoints = 2\n'
                    '\n[questions.why_mask]\nprompt = """Why mask\nthe future?"""\npoints = 1\nafter = "causal_mask"\n')
    manifest = manifest_module.load("transformer", root)
    answers = {"why_scale": "The scores' variance grows with d_k;\nthe softmax would saturate.", "extra": "Hello"}
    files = _submission(manifest, ["mask-future"], tmp_path / "py")
    path = write_notebook(notebook_of(files, answers=answers), tmp_path / "upload" / "homework.ipynb")
    results = grade_via_zip("transformer", path, tmp_path / "results.json", root=root, quiet=True)
    check_schema(results, manifest)
    written = [t for t in results["tests"] if t["name"] == messages.WRITTEN_ANSWERS]
    assert len(written) == 1 and written[0]["score"] == written[0]["max_score"] == 0
    assert written[0]["visibility"] == "visible" and written[0]["tags"] == []
    head = messages.WRITTEN_ANSWERS_HEAD.format(points=sum(q.points for q in manifest.questions.values()))
    assert head in written[0]["output"] and head in results["output"]
    for text in (head, "> The scores' variance grows with d_k;\n> the softmax would saturate.",
                 f"**why_mask** (1 point): Why mask the future?\n{messages.WRITTEN_ANSWERS_NONE}",
                 f"**extra** {messages.WRITTEN_ANSWERS_UNKNOWN}\n> Hello"):
        assert text in results["output"], text
    graded = [t for t in results["tests"] if t["name"] != messages.WRITTEN_ANSWERS]
    assert results["score"] == pytest.approx(sum(t["score"] for t in graded))
    assert 0 < results["score"] < manifest.total_points   # the mutant loses points, the answers give none
    assert sum(t["max_score"] for t in results["tests"]) == pytest.approx(manifest.total_points)
    assert "homework.ipynb" in results["output"]


# ---- hostile and broken notebooks: intake only, or a grading that stops before any test runs ----

@pytest.mark.parametrize("data, why", [
    (b'{"nbformat": 4, "cells": [', "not valid JSON (line 1, column 27"),
    (b"\xff\xfe\x00garbage", "not valid JSON"),
    (b"[" * 100_000 + b"]" * 100_000, "not valid JSON"),
    (b"[1, 2, 3]", "JSON but not a Jupyter notebook"),
    (b'{"cells": []}', "JSON but not a Jupyter notebook"),
    (b'{"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [{"cell_type": "code"}]}',
     "not a valid Jupyter notebook"),
    (b'{"nbformat": 99, "nbformat_minor": 0, "metadata": {}, "cells": []}', "not a valid Jupyter notebook"),
    (b'{"nbformat": 3, "nbformat_minor": 0, "worksheets": 5}', "not a valid Jupyter notebook"),
    (b"\n", messages.NOTEBOOK_EMPTY),
    (b"import torch\n\n\ndef causal_mask(T):\n    return torch.ones(T, T).tril().bool()\n",
     messages.NOTEBOOK_IS_PYTHON.format(files="attention.py, model.py, debugging.py")),
])
def test_a_broken_notebook_scores_0_with_a_clear_error_and_no_test_runs(tmp_path, transformer, data, why):
    (tmp_path / "hw.ipynb").write_bytes(data)
    results = grade("transformer", tmp_path / "hw.ipynb", tmp_path / "results.json", quiet=True)
    assert json.loads((tmp_path / "results.json").read_text()) == results
    check_schema(results, transformer)
    assert results["score"] == 0 and results["tests"]
    assert all(t["name"].endswith(": not graded") and t["status"] == "failed" for t in results["tests"])
    reason = messages.NOTEBOOK_UNREADABLE_WHY.format(notebook="hw.ipynb")
    assert reason in results["tests"][0]["output"]
    assert "hw.ipynb could not be read: it is " in results["output"] and why in results["output"]
    assert results["execution_time"] < 5   # no test process was started


def test_a_broken_notebook_beside_good_py_files_is_only_noted(tmp_path, transformer):
    folder = tmp_path / "s"
    catalogue.materialise(transformer, [], folder)
    (folder / "scratch.ipynb").write_text("not json")
    report = intake.take(folder, transformer.submission_files, tmp_path / "clean")
    assert report.missing == [] and not report.error
    assert any(n.startswith("scratch.ipynb could not be read: it is not valid JSON") for n in report.notes)


def test_a_notebook_of_nbformat_3_is_read(tmp_path):
    cells = [v3.new_code_cell(input="# file: one.py\ndef f():\n    return 1"),
             v3.new_code_cell(input="print(f())"),
             v3.new_code_cell(input="def g():\n    return 2", metadata={"tags": ["file:one.py"]})]
    notebook = v3.new_notebook(worksheets=[v3.new_worksheet(cells=cells)])
    (tmp_path / "old.ipynb").write_text(v3.nbjson.writes(notebook))
    assert json.loads((tmp_path / "old.ipynb").read_text())["nbformat"] == 3
    report = intake.take(tmp_path / "old.ipynb", ["one.py"], tmp_path / "clean")
    assert report.missing == []
    expected = "# file: one.py\ndef f():\n    return 1\n\n\ndef g():\n    return 2\n"   # the untagged cell is left out
    assert (tmp_path / "clean" / "one.py").read_text() == expected


def _big_output_notebook(size: int) -> bytes:
    cell = v4.new_code_cell("def f():\n    return 1", metadata={"tags": ["file:one.py"]})
    cell.outputs = [v4.new_output("stream", name="stdout", text="y" * size)]
    return nbformat.writes(v4.new_notebook(cells=[cell])).encode()


def test_a_50_mb_output_cell_is_read_in_bounded_memory_and_its_code_graded(tmp_path):
    """Outputs are never needed: a 50 MB one neither trips the 1 MB limit of a file nor makes
    intake hold more than about three copies of the notebook at once."""
    data = _big_output_notebook(50_000_000)
    (tmp_path / "hw.ipynb").write_bytes(data)
    tracemalloc.start()
    try:
        report = intake.take(tmp_path, ["one.py"], tmp_path / "clean")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert report.missing == [] and not report.error
    assert (tmp_path / "clean" / "one.py").read_text() == "def f():\n    return 1\n"
    assert peak < 3.5 * len(data), f"peak {peak / 1e6:.0f} MB for a {len(data) / 1e6:.0f} MB notebook"


def test_a_notebook_over_its_limit_is_not_read_from_a_folder_or_a_zip(tmp_path, monkeypatch):
    monkeypatch.setattr(intake, "MAX_NOTEBOOK_BYTES", 5_000)
    data = _big_output_notebook(10_000)
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "hw.ipynb").write_bytes(data)
    with zipfile.ZipFile(tmp_path / "hw.zip", "w") as archive:
        archive.writestr("work/hw.ipynb", data)
    for submission, name in ((tmp_path / "s", "hw.ipynb"), (tmp_path / "hw.zip", "work/hw.ipynb")):
        report = intake.take(submission, ["one.py"], tmp_path / "clean")
        assert report.missing == ["one.py"]
        assert messages.NOTEBOOK_TOO_LARGE.format(notebook=name, limit=0) in report.notes
        assert report.error == messages.NOTEBOOK_UNREADABLE_WHY.format(notebook=name)
    monkeypatch.setattr(intake, "MAX_NOTEBOOK_BYTES", 50_000)
    assert intake.take(tmp_path / "hw.zip", ["one.py"], tmp_path / "clean").missing == []


def test_two_cells_with_the_same_function_are_noted_and_the_last_one_is_graded(tmp_path):
    cells = [v4.new_code_cell("def attention(q):\n    return 0", metadata={"tags": ["file:one.py"]}),
             v4.new_code_cell("def attention(q):\n    return q", metadata={"tags": ["file:one.py"]})]
    write_notebook(v4.new_notebook(cells=cells), tmp_path / "hw.ipynb")
    report = intake.take(tmp_path / "hw.ipynb", ["one.py"], tmp_path / "clean")
    namespace: dict = {}
    exec((tmp_path / "clean" / "one.py").read_text(), namespace)
    assert namespace["attention"](5) == 5
    assert any("attention is defined in cells 1, 2 of one.py; the last one counts" in n for n in report.notes)


def test_magics_in_tagged_cells_are_removed_and_listed(tmp_path):
    cells = [v4.new_code_cell("%matplotlib inline\n!pip install x\nx = 1", metadata={"tags": ["file:one.py"]}),
             v4.new_code_cell("%%bash\nrm -rf /", metadata={"tags": ["file:one.py"]})]
    write_notebook(v4.new_notebook(cells=cells), tmp_path / "hw.ipynb")
    report = intake.take(tmp_path, ["one.py"], tmp_path / "clean")
    code = (tmp_path / "clean" / "one.py").read_text()
    assert "rm -rf" not in code and "pip" not in code and "x = 1" in code
    notes = "\n".join(report.notes)
    for text in ("cell 1: removed the IPython line `%matplotlib inline`", "cell 1: removed the IPython line `!pip",
                 "cell 2: the `%%bash` cell is not Python"):
        assert text in notes


def test_a_notebook_wins_over_deeper_py_files_as_those_its_checks_write(tmp_path):
    """A student zips the folder they worked in: the notebook, and the folder beside it where its
    check cells wrote the files (from the cells last run, maybe older than the saved notebook)."""
    cells = [v4.new_code_cell("x = 'saved'", metadata={"tags": ["file:one.py"]})]
    write_notebook(v4.new_notebook(cells=cells), tmp_path / "work" / "hw.ipynb")
    (tmp_path / "work" / "hw-notebook").mkdir()
    (tmp_path / "work" / "hw-notebook" / "one.py").write_text("x = 'last run'\n")
    with zipfile.ZipFile(tmp_path / "work.zip", "w") as archive:
        for path in sorted((tmp_path / "work").rglob("*")):
            archive.write(path, path.relative_to(tmp_path).as_posix())
    report = intake.take(tmp_path / "work.zip", ["one.py"], tmp_path / "clean")
    assert report.found == {"one.py": "work/hw.ipynb"}
    assert (tmp_path / "clean" / "one.py").read_text() == "x = 'saved'\n"
    assert messages.NOTEBOOK_OVER_FILE.format(path="work/hw-notebook/one.py", file="one.py",
                                              notebook="work/hw.ipynb") in report.notes
    assert not any(n.startswith("Ignored") for n in report.notes)


def test_a_py_file_wins_over_a_notebook_at_its_depth_giving_the_same_file(tmp_path):
    (tmp_path / "one.py").write_text("x = 'py'\n")
    (tmp_path / "two.py").write_text("y = 2\n")
    cells = [v4.new_code_cell("x = 'notebook'", metadata={"tags": ["file:one.py"]}),
             v4.new_code_cell("y = 2", metadata={"tags": ["file:two.py"]}),
             v4.new_code_cell("z = 3", metadata={"tags": ["file:three.py"]})]
    write_notebook(v4.new_notebook(cells=cells), tmp_path / "hw.ipynb")
    report = intake.take(tmp_path, ["one.py", "two.py", "three.py"], tmp_path / "clean")
    assert report.found == {"one.py": "one.py", "two.py": "two.py", "three.py": "hw.ipynb"}
    assert (tmp_path / "clean" / "one.py").read_text() == "x = 'py'\n"
    assert (tmp_path / "clean" / "three.py").read_text() == "z = 3\n"
    assert messages.NOTEBOOK_AND_FILE.format(path="one.py", file="one.py", notebook="hw.ipynb") in report.notes
    assert not any("two.py" in n and "differ" in n for n in report.notes)   # the same code: nothing to say


def test_of_several_notebooks_the_one_giving_most_files_is_read(tmp_path):
    def book(path, names):
        cells = [v4.new_code_cell(f"where = {path.name!r}", metadata={"tags": [f"file:{n}"]}) for n in names]
        write_notebook(v4.new_notebook(cells=cells), path)
    book(tmp_path / "a-scratch.ipynb", ["one.py"])
    book(tmp_path / "deep" / "hw.ipynb", ["one.py", "two.py"])
    book(tmp_path / "hw.ipynb", ["one.py", "two.py"])
    report = intake.take(tmp_path, ["one.py", "two.py"], tmp_path / "clean")
    assert report.found == {"one.py": "hw.ipynb", "two.py": "hw.ipynb"}    # the most files; then the shallowest
    assert messages.NOTEBOOK_SEVERAL.format(chosen="hw.ipynb", others="a-scratch.ipynb, deep/hw.ipynb") in report.notes
    assert (tmp_path / "clean" / "one.py").read_text() == "where = 'hw.ipynb'\n"


def test_a_notebook_without_tagged_cells_says_how_to_tag_them(tmp_path):
    write_notebook(v4.new_notebook(cells=[v4.new_code_cell("def f(): pass")]), tmp_path / "hw.ipynb")
    report = intake.take(tmp_path, ["one.py"], tmp_path / "clean")
    assert report.missing == ["one.py"] and not report.error
    assert messages.NOTEBOOK_NO_CELLS.format(notebook="hw.ipynb", files="one.py") in report.notes


def test_cell_ids_in_a_notebook_numbered_below_4_5_do_not_make_it_unreadable(tmp_path):
    """Editors add cell ids without raising nbformat_minor to 5; nbformat then refuses the notebook
    ("'id' was unexpected") and a correct submission scored 0. Grading never reads the ids."""
    cells = [v4.new_code_cell("def f():\n    return 1", metadata={"tags": ["file:one.py"]})]
    raw = json.loads(nbformat.writes(v4.new_notebook(cells=cells)))
    raw["nbformat_minor"] = 4
    assert "id" in raw["cells"][0]
    (tmp_path / "hw.ipynb").write_text(json.dumps(raw))
    report = intake.take(tmp_path / "hw.ipynb", ["one.py"], tmp_path / "clean")
    assert report.missing == [] and not report.error, report.notes


def test_a_note_says_which_line_of_the_rebuilt_file_each_cell_starts_on(tmp_path):
    """A traceback names `one.py, line 7`: the student finds the cell from the note."""
    sources = ["# file: one.py\nimport math", "# file: one.py\n%%time\ndef f():\n    return math.pi\n\n\n",
               "print('explore')", "# file: one.py\ndef g():\n    return 1 / 0"]
    write_notebook(v4.new_notebook(cells=[v4.new_code_cell(s) for s in sources]), tmp_path / "hw.ipynb")
    report = intake.take(tmp_path / "hw.ipynb", ["one.py"], tmp_path / "clean")
    lines = (tmp_path / "clean" / "one.py").read_text().splitlines()
    assert lines[5 - 1] == lines[11 - 1] == "# file: one.py" and lines[12 - 1] == "def g():"
    starts = "cell 1 at line 1, cell 2 at line 5, cell 4 at line 11"
    assert messages.NOTEBOOK_LINES.format(file="one.py", notebook="hw.ipynb", starts=starts) in report.notes


def test_read_drops_outputs_so_an_odd_output_does_not_make_a_notebook_unreadable():
    cell = v4.new_code_cell("x = 1", metadata={"tags": ["file:one.py"]})
    raw = json.loads(nbformat.writes(v4.new_notebook(cells=[cell])))
    raw["cells"][0]["outputs"] = [{"output_type": "made-up", "data": 1}]
    assert notebooks.read(json.dumps(raw).encode()).cells[0].outputs == []


def test_regrade_takes_a_notebook_per_student_whole(tmp_path):
    """A plain folder of one `.ipynb` per student, or a notebook in a student's folder (over intake's
    1 MB limit for a file, within the notebook's), travels to the worker whole."""
    data = _big_output_notebook(2_000_000)
    (tmp_path / "class" / "bob").mkdir(parents=True)
    (tmp_path / "class" / "ada.ipynb").write_bytes(data)
    (tmp_path / "class" / "bob" / "hw.ipynb").write_bytes(data)
    found, export = sources.read(tmp_path / "class")
    assert not export and [(s.key, s.kind, s.rejected) for s in found] == [("ada", "file", ""), ("bob", "folder", "")]
    assert found[0].payload == data and found[0].filename == "ada.ipynb"
    rebuilt = sources.unpack_folder(found[1].payload, tmp_path / "rebuilt")
    assert (rebuilt / "hw.ipynb").read_bytes() == data


def test_the_gradescope_image_installs_the_nbformat_intake_reads_with(transformer):
    """The autograder zip's requirements pin nbformat at the version these tests ran with."""
    import importlib.metadata

    from autograder.build import autograder_files

    requirements = autograder_files(transformer)["requirements.txt"].decode().splitlines()
    pins = [line.split("#")[0].strip() for line in requirements if line.startswith("nbformat")]
    assert pins == [f"nbformat=={importlib.metadata.version('nbformat')}"]


def test_written_answers_are_shown_and_a_0_point_test_added_only_for_points_and_a_run(transformer):
    import dataclasses

    from autograder import gradescope
    from autograder.grade import results as results_module

    def added(questions: dict, answers: dict, graded: bool = True) -> dict:
        manifest = dataclasses.replace(transformer, questions=questions)
        results = gradescope.failed_run(manifest, "why")
        report = intake.IntakeReport(found={}, missing=[], notes=[], answers=answers)
        results_module.add_written_answers(results, manifest, report, graded=graded)
        return results

    plain = gradescope.failed_run(dataclasses.replace(transformer, questions={}), "why")
    assert added({}, {}) == plain                                  # nothing asked, nothing answered
    free = manifest_module.Question("free", "Say anything", 0)
    scored = manifest_module.Question("scored", "Explain", 2)
    only_answers = added({}, {"mine": "An answer"})
    assert messages.WRITTEN_ANSWERS_NO_POINTS in only_answers["output"] and "> An answer" in only_answers["output"]
    assert only_answers["tests"] == plain["tests"]
    assert added({"free": free}, {})["tests"] == plain["tests"]   # no points: no test
    assert added({"scored": scored}, {}, graded=False)["tests"] == plain["tests"]   # no test ran: none added
    with_points = added({"free": free, "scored": scored}, {"scored": "Because"})
    assert [t["name"] for t in with_points["tests"][len(plain["tests"]):]] == [messages.WRITTEN_ANSWERS]
    assert "**free** (0 points): Say anything\n" + messages.WRITTEN_ANSWERS_NONE in with_points["output"]


def test_a_notebook_of_too_many_cells_is_not_read_and_notes_stay_few(tmp_path, monkeypatch):
    cells = [v4.new_code_cell(f"!echo {i}\nx{i} = {i}", metadata={"tags": ["file:one.py"]}) for i in range(50)]
    cells += [v4.new_code_cell("print('explore')")]
    data = nbformat.writes(v4.new_notebook(cells=cells)).encode()
    book = notebooks.cut(data, ["one.py"])
    assert len(book.notes) == notebooks.MAX_NOTES + 2
    assert book.notes[-2] == messages.NOTEBOOK_MORE_NOTES.format(count=50 - notebooks.MAX_NOTES)
    assert "not part of any submitted file" in book.notes[-1]   # the untagged cells are always named
    monkeypatch.setattr(notebooks, "MAX_CELLS", 50)
    with pytest.raises(notebooks.NotebookError, match=messages.NOTEBOOK_TOO_MANY_CELLS.format(limit=50)):
        notebooks.cut(data, ["one.py"])


def test_only_the_shallowest_notebooks_are_read_and_a_zips_are_read_one_at_a_time(tmp_path, monkeypatch):
    monkeypatch.setattr(intake, "MAX_NOTEBOOKS", 2)
    with zipfile.ZipFile(tmp_path / "hw.zip", "w") as archive:
        for name in ("a/b/deep.ipynb", "a/mid.ipynb", "top.ipynb"):
            cell = v4.new_code_cell(f"where = {name!r}", metadata={"tags": ["file:one.py"]})
            archive.writestr(name, nbformat.writes(v4.new_notebook(cells=[cell])))
    members = intake._candidates(tmp_path / "hw.zip", set())
    assert all(isinstance(member, intake.ZipMember) for member in members.values())   # not read yet
    report = intake.take(tmp_path / "hw.zip", ["one.py"], tmp_path / "clean")
    assert report.found == {"one.py": "top.ipynb"}
    assert messages.NOTEBOOK_TOO_MANY.format(count=3, limit=2, ignored="a/b/deep.ipynb") in report.notes
    assert messages.NOTEBOOK_SEVERAL.format(chosen="top.ipynb", others="a/mid.ipynb") in report.notes
