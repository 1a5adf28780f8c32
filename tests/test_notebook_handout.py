"""The handout notebook (build/notebook.py) and its checker in the student's kernel (kit/jupyter.py).

The heavy tests execute the transformer notebook headless (nbclient, the python3 kernel): with the
reference's code in its cells (every check passes, check_all() shows the public tests' full
points; then a screenshot in headless Chromium, saved to dist/artifacts/), and untouched (it runs
top to bottom, every check says "not implemented yet"). foundations and training get a cheaper
check: their notebooks are generated and validated, and their graded cells, cut into files by
kit/notebook.assemble, are the starter's code, or the reference's once filled.
"""
from __future__ import annotations

import ast
import base64
import importlib
import io
import json
import os
import pathlib
import subprocess
import sys
import types
import zipfile

import nbformat
import pytest

from autograder import manifest as manifest_module
from autograder.build import notebook as notebook_module
from autograder.build import student_files
from autograder.kit import jupyter, messages
from autograder.kit import notebook as cells_module

ROOT = manifest_module.ROOT
ARTIFACTS = ROOT / "dist" / "artifacts"
CHROMIUM = pathlib.Path("/usr/bin/chromium")


@pytest.fixture(scope="module")
def handout():
    manifest = manifest_module.load("transformer")
    files = student_files(manifest)
    return manifest, files, notebook_module.generate(manifest, files)


@pytest.fixture(scope="module")
def executed_reference(handout, tmp_path_factory):
    manifest, _, nb = handout
    filled = notebook_module.fill(nb, notebook_module.reference_sources(manifest))
    return notebook_module.execute(filled, tmp_path_factory.mktemp("reference-notebook"))


def _payload(nb) -> dict[str, bytes]:
    setup = nb.cells[[c.cell_type for c in nb.cells].index("code")].source
    data = base64.b64decode(setup.split('PAYLOAD = "', 1)[1].split('"', 1)[0])
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def _statements(code: str) -> dict[str, str]:
    """{name: ast dump} of a file's top-level functions and classes."""
    return {node.name: ast.dump(node) for node in ast.parse(code).body
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}


def _code_cells(nb) -> list[dict]:
    return [c for c in nb.cells if c.cell_type == "code"]


# ---- the generated notebook ----

def test_notebook_is_reproducible_valid_and_laid_out(handout):
    manifest, files, nb = handout
    again = notebook_module.generate(manifest, files)
    assert notebook_module.to_bytes(nb) == notebook_module.to_bytes(again)
    nbformat.validate(nbformat.reads(notebook_module.to_bytes(nb).decode(), as_version=4))
    setup = _code_cells(nb)[0]
    assert setup.source.startswith("#@title") and setup.metadata["jupyter"] == {"source_hidden": True}
    checks = [c.source for c in nb.cells if "check" in c.metadata.get("tags", [])]
    assert checks == [f'check("{p}")' for p in manifest.problems] + ["check_all()"]
    answers = [cells_module.answer_id(c) for c in nb.cells if cells_module.answer_id(c)]
    assert answers == sorted(manifest.questions, key=answers.index) and set(answers) == set(manifest.questions)
    for cell in nb.cells:
        tagged = [t for t in cell.metadata.get("tags", []) if t.startswith(cells_module.FILE_TAG)]
        if tagged:  # the tag and the marker line agree, so an editor that drops metadata loses nothing
            assert cell.source.startswith(f"# file: {tagged[0][len(cells_module.FILE_TAG):]}\n")
    # a problem's check follows its own cell
    order = [c.source for c in nb.cells if c.cell_type == "code"]
    stub = next(i for i, s in enumerate(order) if s.startswith("# file: attention.py\ndef causal_mask("))
    assert order[stub + 1] == 'check("causal_mask")'


def test_payload_is_the_student_zip_support_files(handout):
    manifest, files, nb = handout
    payload = _payload(nb)
    top = manifest.name + "/"
    expected = {n[len(top):] for n in files} - {"README.md", *manifest.submission_files}
    assert set(payload) == expected | {jupyter.LAYOUT_FILE}
    assert {"run_tests.py", "conftest.py", "problems.json", "fingerprints.json", "requirements.txt",
            "autograder/kit/jupyter.py", "autograder/kit/notebook.py"} <= set(payload)
    assert all(payload[n] == files[top + n] for n in expected)
    layout = json.loads(payload[jupyter.LAYOUT_FILE])
    assert [c["source"] for c in layout["cells"]] == [c.source for c in nb.cells if cells_module.cell_file(c)]


def test_notebook_holds_no_reference_code_and_no_hidden_test(handout):
    manifest, _, nb = handout
    solution, given = set(), set()
    for path in manifest.path(manifest.reference).glob("*.py"):
        inside = False
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip() in ("# BEGIN SOLUTION", "# END SOLUTION"):
                inside = line.strip() == "# BEGIN SOLUTION"
            elif len(line.strip()) > 25:
                (solution if inside else given).add(line.strip())
    public, hidden = ({line.strip() for path in (ROOT / kind / manifest.name).rglob("*.py")
                       for line in path.read_text(encoding="utf-8").splitlines() if len(line.strip()) > 40}
                      for kind in ("tests_public", "tests_hidden"))
    cell_lines = {line.strip() for cell in nb.cells for line in cell.source.splitlines()}
    payload_lines = {line.strip() for data in _payload(nb).values()
                     for line in data.decode("utf-8", "replace").splitlines()}
    assert solution - given and hidden - public
    assert not ((solution - given) | (hidden - public)) & (cell_lines | payload_lines)


@pytest.mark.parametrize("name", ["transformer", "foundations", "training"])
def test_graded_cells_make_the_starter_and_the_reference(name):
    """The cheap check of every assignment: the handout's tagged cells, cut by kit/notebook.assemble
    as the grader cuts a submission, are the starter's code; filled, the reference's."""
    manifest = manifest_module.load(name)
    starters = {f: (manifest.path(manifest.starter) / f).read_bytes() for f in manifest.submission_files}
    files = {f"{name}/{f}": data for f, data in starters.items()}
    files[f"{name}/README.md"] = manifest.path(manifest.handout).read_bytes()
    nb = notebook_module.generate(manifest, files)
    assembled = cells_module.assemble(nb.cells, manifest.submission_files)
    assert set(assembled.files) == set(manifest.submission_files)
    assert [n for n in assembled.notes if not n.startswith("cells not part")] == []
    for file, data in starters.items():
        assert ast.dump(ast.parse(assembled.files[file])) == ast.dump(ast.parse(data))
    filled = cells_module.assemble(notebook_module.fill(nb, notebook_module.reference_sources(manifest)).cells,
                                   manifest.submission_files)
    for file, code in notebook_module.reference_sources(manifest).items():
        assert _statements(filled.files[file]) == _statements(code), file
    assert {c.source for c in nb.cells if "check" in c.metadata.get("tags", [])} >= {
        f'check("{p}")' for p in manifest.problems}
    assert {cells_module.answer_id(c) for c in nb.cells} - {None} == set(manifest.questions)


# ---- executed headless ----

def test_reference_notebook_passes_every_check(executed_reference, handout):
    manifest = handout[0]
    checks = notebook_module.check_cells(executed_reference)
    for code, output in checks[:-1]:
        table = notebook_module.parse_table(output)
        assert len(table) == 1 and all(r["status"] == "passed" and r["passed"] == r["run"] > 0
                                       for r in table.values()), (code, output)
    final = notebook_module.parse_table(checks[-1][1])
    assert list(final) == list(manifest.problems)
    assert all(r["status"] == "passed" and r["earned"] == r["share"] > 0 for r in final.values()), checks[-1][1]
    pictures = [c for c in executed_reference.cells if "picture" in c.metadata.get("tags", [])]
    assert pictures and all(any("image/png" in o.get("data", {}) for o in c.outputs) for c in pictures)


def test_untouched_handout_runs_and_says_not_implemented(handout, tmp_path):
    manifest, _, nb = handout
    executed = notebook_module.execute(nbformat.from_dict(json.loads(json.dumps(nb))), tmp_path)
    assert not [o for c in _code_cells(executed) for o in c.outputs if o.output_type == "error"]
    checks = notebook_module.check_cells(executed)
    assert len(checks) == len(manifest.problems) + 1
    for code, output in checks:
        table = notebook_module.parse_table(output)
        assert table and all(r["status"] == messages.NB_NOT_IMPLEMENTED for r in table.values()), (code, output)
    for cell in executed.cells:
        if "picture" in cell.metadata.get("tags", []):
            assert "not implemented yet" in notebook_module.text_outputs(cell)
    assert (tmp_path / "transformer-notebook" / "tests").is_dir()  # unpacked beside the notebook


def test_screenshot_of_check_table_and_heat_map(executed_reference, tmp_path):
    """Not a pixel test: the rendered check table and heat-map, saved for a person to look at."""
    from nbconvert import HTMLExporter

    cells = executed_reference.cells
    start = next(i for i, c in enumerate(cells) if c.source == 'check("attach_attention_hook")')
    shown = nbformat.v4.new_notebook(cells=[cells[start], cells[start + 1], cells[-1]],
                                     metadata=executed_reference.metadata)
    html, _ = HTMLExporter().from_notebook_node(shown)
    assert "<table>" in html and "data:image/png;base64," in html
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page, png = ARTIFACTS / "transformer-notebook.html", ARTIFACTS / "transformer-notebook.png"
    page.write_text(html, encoding="utf-8")
    png.unlink(missing_ok=True)
    if not CHROMIUM.is_file():
        pytest.fail(f"{CHROMIUM} is missing: `make setup` installs Debian's chromium (apt-get install -y chromium)")
    subprocess.run([str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--hide-scrollbars",
                    f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1100,1500", f"--screenshot={png}",
                    page.as_uri()], capture_output=True, timeout=120)
    import matplotlib.image

    pixels = matplotlib.image.imread(png)
    assert png.stat().st_size > 20_000 and pixels.shape[:2] == (1500, 1100) and pixels.std() > 0.05


# ---- the checker, without a kernel ----

def _set_up(handout, tmp_path, warm: bool):
    """The setup cell's work: the payload unpacked, the checker set up (no IPython here: cells are
    recorded by hand)."""
    for name, data in _payload(handout[2]).items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(data)
    saved_path = list(sys.path)
    jupyter.setup(tmp_path, colab=False, warm=warm)
    try:
        yield tmp_path
    finally:
        jupyter._STATE["runner"].stop()
        # setup() put the folder first on sys.path, as in a kernel; left there, its `autograder`
        # (the kit alone) is what processes this one spawns import (a Dask LocalCluster's workers)
        sys.path[:] = saved_path


@pytest.fixture
def folder(handout, tmp_path):
    yield from _set_up(handout, tmp_path, warm=False)


@pytest.fixture
def warm_folder(handout, tmp_path):
    """With the warm test server (Linux: checks run in children it forks)."""
    yield from _set_up(handout, tmp_path, warm=True)


def test_a_crash_or_an_endless_loop_never_reaches_the_kernel(warm_folder):
    """A check runs student code in a child of the warm server: os._exit and `while True` end there."""
    pid = os.getpid()
    jupyter.record("# file: attention.py\nimport os\n\ndef causal_mask(T, device=None):\n    os._exit(3)")
    crashed = jupyter.check("causal_mask")
    assert jupyter._STATE["runner"].ready  # the warm server ran it
    assert os.getpid() == pid and crashed.problems[0].status == "failed"
    assert crashed.notes and "died" in crashed.notes[0] and crashed.problems[0].tests[0].status == "crashed"
    limit, jupyter._STATE["layout"]["test_timeout_s"] = jupyter._STATE["layout"]["test_timeout_s"], 1
    jupyter.record("# file: attention.py\ndef causal_mask(T, device=None):\n    while True:\n        pass")
    looping = jupyter.check("causal_mask")
    assert {t.status for t in looping.problems[0].tests} == {"timed out"}, looping.text()
    jupyter._STATE["layout"]["test_timeout_s"] = limit
    jupyter.record("# file: attention.py\nimport torch\n\ndef causal_mask(T, device=None):\n"
                   "    return torch.tril(torch.ones(T, T, dtype=torch.bool, device=device))")
    fixed = jupyter.check("causal_mask")
    assert fixed.problems[0].status == "passed", fixed.text()
    files = jupyter.write_files()
    assert "while True" not in files["attention.py"] and "def self_attention" in files["attention.py"]


def test_a_cell_that_imports_a_submitted_file_gets_the_notebook_code(folder):
    """`from attention import ...` in a later cell (debugging.py's given cell) reads the cells as last run;
    a check without the warm server (no fork: macOS, Windows) runs in a new Python."""
    try:
        for value in (1, 2):
            jupyter.record(f"# file: attention.py\ndef causal_mask(T, device=None):\n    return {value}")
            jupyter._pre_run_cell(types.SimpleNamespace(raw_cell="from attention import causal_mask"))
            assert importlib.import_module("attention").causal_mask(3) == value
    finally:
        sys.modules.pop("attention", None)
    wrong = jupyter.check("causal_mask")  # where there is no fork: a new Python per check
    assert wrong.problems[0].status == "failed" and not wrong.notes and wrong.problems[0].tests[0].message


def test_recorder_keys_cells_by_what_they_define():
    cells = [{"file": "a.py", "stub": False, "defs": [], "names": ["math", "torch"],
              "source": "# file: a.py\nimport math\nimport torch"},
             {"file": "a.py", "stub": True, "defs": ["f"], "names": [], "source": "# file: a.py\ndef f():\n    raise"},
             {"file": "a.py", "stub": True, "defs": ["g"], "names": [], "source": "# file: a.py\ndef g():\n    raise"}]
    recorder = jupyter.Recorder(cells, ["a.py"])
    assert recorder.record("def f():\n    return 1") is None  # no marker: exploration, never graded
    assert recorder.record("# file: a.py\n@decorated\ndef f():\n    return 2") == 1
    assert recorder.record("# file: a.py\nimport numpy as np") is None   # the student's own cell ...
    assert recorder.record("# file: a.py\ndef helper():\n    return 3") is None
    assert recorder.record("# file: a.py\ndef helper():\n    return 4") is None  # ... replaced when re-run
    assert recorder.record("# file: a.py\nimport math\nimport torch\nimport os") == 0
    assert recorder.never_run("g") == ["g"] and recorder.never_run("f") == []
    sources = recorder.sources()
    assert sources == [cells[0]["source"] + "\nimport os", "# file: a.py\n@decorated\ndef f():\n    return 2",
                       "# file: a.py\nimport numpy as np", "# file: a.py\ndef helper():\n    return 4",
                       cells[2]["source"]]
    assert "return 4" in recorder.files_now()["a.py"]


def test_recorder_cuts_a_cell_that_merges_two_files_cells_as_the_grader_does():
    cells = [{"file": "a.py", "stub": True, "defs": ["f"], "names": [], "source": "# file: a.py\ndef f():\n    raise"},
             {"file": "b.py", "stub": False, "defs": [], "names": ["math"], "source": "# file: b.py\nimport math"},
             {"file": "b.py", "stub": True, "defs": ["g"], "names": [], "source": "# file: b.py\ndef g():\n    raise"}]
    recorder = jupyter.Recorder(cells, ["a.py", "b.py"])
    merged = "# file: a.py\ndef f():\n    return 1\n\n# file: b.py\nimport math\n\ndef g():\n    return math.pi"
    assert recorder.record(merged) == 0
    files = recorder.files_now()   # b.py's part stands for the stub of g, as the grader gives it to b.py
    assert files["a.py"] == "# file: a.py\ndef f():\n    return 1\n"
    namespace: dict = {}
    exec(files["b.py"], namespace)
    assert namespace["g"]() == namespace["math"].pi


def test_colab_setup_pip_installs_what_is_missing(tmp_path, monkeypatch):
    (tmp_path / "requirements.txt").write_text("torch==2.13.0\npytest==9.2.0\npytest-timeout==2.4.0\n")
    monkeypatch.setattr(jupyter, "_version_of", {"torch": "2.13.0", "pytest": "8.3.5"}.get)
    commands = []
    monkeypatch.setattr(jupyter.subprocess, "run", lambda command, **kwargs: commands.append(command))
    assert jupyter.install_missing(tmp_path) == ["pytest-timeout==2.4.0"]
    assert commands == [[sys.executable, "-m", "pip", "install", "--quiet", "pytest-timeout==2.4.0"]]


def test_colab_installs_only_what_is_missing_and_never_torch():
    requirements = "# pins\ntorch==2.13.0\nnumpy==2.4.6\npytest-timeout==2.4.0\nnltk==3.10.4\n"
    have = {"torch": "2.9.0+cu126", "numpy": "2.0.2", "pytest-timeout": None, "nltk": "3.10.4"}
    install, note = jupyter.requirements_to_install(requirements, have.get)
    assert install == ["pytest-timeout==2.4.0"]
    assert note == messages.NB_TORCH_VERSION.format(have="2.9.0+cu126", want="2.13.0")
    assert jupyter.requirements_to_install(requirements, {"torch": "2.13.0+cu126"}.get) == (
        ["numpy==2.4.6", "pytest-timeout==2.4.0", "nltk==3.10.4"], None)
