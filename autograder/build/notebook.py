"""dist/NAME-student.ipynb: the handout as a notebook, generated from the student zip's sources.

Never edited by hand: `python -m autograder build NAME` writes it from the same sources as the
student zip (the handout README, the starter files, the public tests and support files), so the
notebook and the `.py` workflow grade the same. Its cells, in order:

- the README's title and introduction, a "how to work in this notebook" cell, then the setup
  cell (first code cell; hidden: Colab's `#@title` form, Jupyter's `source_hidden`): the support
  files as a base64 zip (kit/, tests/, conftest.py, run_tests.py, problems.json,
  fingerprints.json, requirements.txt, and notebook.json: the layout below), unpacked beside the
  notebook into NAME-notebook/, then kit/jupyter.setup (Colab: installs what is missing);
- the README's sections; a section whose heading names a submitted file (`attention.py`) is
  followed by that file's cells, its numbered items (`1. **`name`**`, `### `name``) each put
  before the cell they describe;
- a file's cells, cut from its starter: a "given" cell for each run of top-level code with no
  stub (imports, helpers, given classes), one cell per stub function or class; each tagged
  `file:NAME.py` and starting with the marker line `# file: NAME.py` (kit/notebook.py);
- after the cell of each problem, a `check("problem")` cell; after some, a picture
  (assignments/NAME/notebook/*.py, first line `# after: PROBLEM`: the student's own attention
  as a heat-map, the embeddings' PCA scatter) and the written questions of the manifest's
  [questions] (a prompt, then a Markdown answer cell tagged `answer:ID`);
- a `check_all()` cell at the end.

`fill(nb, sources)` puts other code (the reference's) into the stub cells: tests and `make demo`
execute the handout with it (`execute`, nbclient with the python3 kernel).
"""
from __future__ import annotations

import ast
import base64
import io
import json
import pathlib
import re
import zipfile

from .. import manifest as manifest_module
from .. import starter as starter_module
from ..kit import jupyter, notebook as cells_module

FIXED_TIME = (2020, 1, 1, 0, 0, 0)
STUB = re.compile(r'NotImplementedError\("[\w.]+: not implemented yet"\)')
ITEM = re.compile(r"^(?:\d+\.\s+\*\*`|#{3,4}\s+(?:\d+\.\s+)?`)(?P<name>\w+)")
QUESTIONS_HEADING = re.compile(r"^##\s+Written questions", re.I)
FILE_IN_HEADING = re.compile(r"`(?P<file>[\w.-]+\.py)`")
PICTURE_AFTER = re.compile(r"#\s*after:\s*(?P<problem>\w+)")
KERNEL = {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
          "language_info": {"name": "python"}, "colab": {"provenance": [], "toc_visible": True}}

HOW_TO = """## Working in this notebook

Run the **setup cell** below first (on Colab: *Runtime > Run all* works too). Then, for each problem:

1. edit the code cell that starts with `# file: ...`: it is the function or class of that file;
2. run it (Shift+Enter), then run the `check("...")` cell after it: it runs the public tests of that
   problem on your code in a separate process and shows what passed, with the tests' messages;
3. `check_all()` at the end shows the points the public tests give, problem by problem.

Only the cells that start with `# file: NAME.py` are graded: they make up {files}. Keep that first
line, and keep the names and signatures; add a helper function in a cell with the same first line
if you need one. Other cells (your experiments, plots, `!pip`) are never graded. Written answers go
in the Markdown cells that start with `<!-- answer: ... -->`.

**Submit** this notebook (`File > Download > .ipynb` on Colab) to Gradescope, alone or with your
`.py` files. Hidden tests run there after you submit."""

SETUP = '''#@title Setup: run this cell first (it unpacks the tests and the checker; on Colab, installs what lacks)
FOLDER = "{folder}"  # beside this notebook: the public tests, the checker and your files as .py
PAYLOAD = "{payload}"
import base64, io, pathlib, sys, zipfile
folder = pathlib.Path(FOLDER).resolve()
with zipfile.ZipFile(io.BytesIO(base64.b64decode(PAYLOAD))) as archive:
    for name in archive.namelist():
        data, target = archive.read(name), folder / name
        if not target.is_file() or target.read_bytes() != data:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
for module in [m for m in sys.modules if m == "autograder" or m.startswith("autograder.")]:
    del sys.modules[module]  # a re-run loads this payload's checker
if str(folder) not in sys.path:
    sys.path.insert(0, str(folder))
from autograder.kit.jupyter import setup, check, check_all
setup(folder)'''


def _nbformat():
    import nbformat  # only where a notebook is written or read

    return nbformat


# ---- cutting a file into cells ----

def _statements(source: str) -> list[tuple[ast.stmt, str]]:
    """Each top-level statement with its text: the lines from the end of the previous one (its
    comments and decorators) to its own end; the first also takes the file's opening lines."""
    lines = source.splitlines(keepends=True)
    tree = ast.parse(source)
    out, start = [], 0
    for k, node in enumerate(tree.body):
        end = node.end_lineno if k < len(tree.body) - 1 else len(lines)
        out.append((node, "".join(lines[start:end])))
        start = end
    return out


def _name(node: ast.stmt) -> str | None:
    return node.name if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) else None


def file_cells(file: str, starter: str) -> list[dict]:
    """The cells of a starter file: {"file", "stub", "defs", "names", "source"}, in file order."""
    cells: list[dict] = []
    for node, text in _statements(starter):
        stub = _name(node) is not None and bool(STUB.search(text))
        if not stub and cells and not cells[-1]["stub"]:
            cells[-1]["body"] += text
            continue
        cells.append({"file": file, "stub": stub, "body": text})
    for cell in cells:
        cell["source"] = f"# file: {file}\n" + cell.pop("body").strip("\n")
        defs, names = jupyter.defined_names(cell["source"])
        cell["defs"], cell["names"] = sorted(defs), sorted(names)
    return cells


def _strip_markers(source: str) -> str:
    return "".join(line for line in source.splitlines(keepends=True)
                   if line.strip() not in (starter_module.BEGIN, starter_module.END))


def reference_sources(manifest: manifest_module.Manifest) -> dict[str, str]:
    """{file: the reference's code, without its solution markers}."""
    folder = manifest.path(manifest.reference)
    return {name: _strip_markers((folder / name).read_text(encoding="utf-8")) for name in manifest.submission_files}


def fill(nb, sources: dict[str, str]):
    """A copy of the handout `nb` whose stub cells hold `sources`' code instead (the reference's:
    each stub's definition, with the helpers the starter lacks put before the next stub)."""
    nb = _nbformat().from_dict(json.loads(json.dumps(nb)))
    for file, source in sources.items():
        stubs = {i: c for i, c in enumerate(nb.cells) if cells_module.cell_file(c) == file
                 and "stub" in c.metadata.get("tags", [])}
        by_name = {name: i for i, c in stubs.items() for name in jupyter.defined_names(c.source)[0]}
        given = {text.strip() for c in nb.cells if cells_module.cell_file(c) == file and c.metadata.get("tags")
                 and "stub" not in c.metadata["tags"] for _, text in _statements(_body(c.source))}
        code: dict[int, list[str]] = {i: [] for i in stubs}
        pending: list[str] = []
        for node, text in _statements(source):
            index = by_name.get(_name(node))
            if index is not None:
                code[index] += pending + [text.strip("\n")]
                pending = []
            elif text.strip() not in given:
                pending.append(text.strip("\n"))
        if pending and code:
            code[max(code)] += pending
        for index, parts in code.items():
            if parts:
                nb.cells[index].source = f"# file: {file}\n" + "\n\n".join(parts)
    return nb


def _body(source: str) -> str:
    return source.split("\n", 1)[1] if source.startswith("# file:") else source


# ---- the README ----

def _sections(readme: str) -> list[tuple[str, str]]:
    """[(heading, text)] split at level-2 headings; the first is ("", the title and introduction)."""
    out, heading, lines = [], "", []
    for line in readme.splitlines():
        if line.startswith("## "):
            out.append((heading, "\n".join(lines).strip()))
            heading, lines = line, [line]
        else:
            lines.append(line)
    out.append((heading, "\n".join(lines).strip()))
    return [s for s in out if s[1]]


def _items(text: str) -> tuple[str, list[tuple[str, str]]]:
    """A file section cut at its numbered items: (the text before them, [(name, item text)])."""
    head, items = [], []
    for line in text.splitlines():
        match = ITEM.match(line)
        if match:
            items.append((match["name"], [line]))
        elif items:
            items[-1][1].append(line)
        else:
            head.append(line)
    return "\n".join(head).strip(), [(name, "\n".join(body).strip()) for name, body in items]


# ---- the payload ----

def payload(files: dict[str, bytes]) -> str:
    """The support files as a reproducible zip, base64."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(files):
            info = zipfile.ZipInfo(name, date_time=FIXED_TIME)
            info.external_attr = (0o100000 | 0o644) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, files[name])
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def support_files(manifest: manifest_module.Manifest, student_files: dict[str, bytes],
                  layout: dict) -> dict[str, bytes]:
    """The student zip's files minus the handout and the submitted files, plus notebook.json."""
    top = manifest.name + "/"
    skip = {"README.md", *manifest.submission_files}
    files = {name[len(top):]: data for name, data in student_files.items()
             if name.startswith(top) and name[len(top):] not in skip}
    files[jupyter.LAYOUT_FILE] = (json.dumps(layout, indent=1, sort_keys=True) + "\n").encode()
    return files


def pictures(manifest: manifest_module.Manifest) -> dict[str, list[str]]:
    """{problem: [picture cells' code]} from assignments/NAME/notebook/*.py (first line `# after: P`)."""
    folder = manifest.manifest_path.parent / "notebook"
    out: dict[str, list[str]] = {}
    for path in sorted(folder.glob("*.py")) if folder.is_dir() else []:
        text = path.read_text(encoding="utf-8")
        match = PICTURE_AFTER.match(text)
        if not match or match["problem"] not in manifest.problems:
            raise SystemExit(f"{path}: the first line must be `# after: PROBLEM` (a problem of the manifest)")
        out.setdefault(match["problem"], []).append(text.split("\n", 1)[1].strip("\n"))
    return out


# ---- the notebook ----

class _Cells:
    """Cells with reproducible ids."""

    def __init__(self):
        self.nbf = _nbformat()
        self.cells: list = []

    def _add(self, cell, kind: str):
        cell["id"] = f"{kind}-{len(self.cells)}"
        self.cells.append(cell)
        return cell

    def markdown(self, text: str, tags: list[str] | None = None):
        cell = self.nbf.v4.new_markdown_cell(text)
        if tags:
            cell.metadata["tags"] = tags
        return self._add(cell, "md")

    def code(self, text: str, tags: list[str] | None = None, **metadata):
        cell = self.nbf.v4.new_code_cell(text)
        if tags:
            cell.metadata["tags"] = tags
        cell.metadata.update(metadata)
        return self._add(cell, "code")


def _file_order(manifest: manifest_module.Manifest) -> list[str]:
    order = []
    for problem in manifest.problems.values():
        if problem.file not in order:
            order.append(problem.file)
    return order + [f for f in manifest.submission_files if f not in order]


def _problem_cells(manifest, file: str, cells: list[dict]) -> dict[int, list[str]]:
    """{index of a file's cell: the problems checked after it}: a problem after the stub of its own
    name, else after the file's last stub."""
    out: dict[int, list[str]] = {}
    stubs = [i for i, c in enumerate(cells) if c["stub"]] or [len(cells) - 1]
    for name, problem in manifest.problems.items():
        if problem.file != file:
            continue
        own = [i for i, c in enumerate(cells) if c["stub"] and name in c["defs"]]
        out.setdefault(own[0] if own else stubs[-1], []).append(name)
    return out


def _question(out: _Cells, number: int, question: manifest_module.Question) -> None:
    graded = (f"{question.points:g} point{'s' if question.points != 1 else ''}, graded by hand"
              if question.points else "not graded")
    out.markdown(f"**Written question {number}** ({graded}). {question.prompt.strip()}\n\n"
                 f"*Answer in the Markdown cell below (double-click it to edit).*", tags=["question"])
    out.markdown(f"<!-- answer: {question.name} -->\n*Your answer here.*",
                 tags=[f"{cells_module.ANSWER_TAG}{question.name}"])


def layout_of(manifest: manifest_module.Manifest, by_file: dict[str, list[dict]]) -> dict:
    cells = [c for file in _file_order(manifest) for c in by_file[file]]
    return {"assignment": manifest.name, "files": list(manifest.submission_files), "cells": cells,
            "problems": {name: p.file for name, p in manifest.problems.items()},
            "test_timeout_s": manifest.test_timeout_s, "preload": list(manifest.preload)}


def generate(manifest: manifest_module.Manifest, student_files: dict[str, bytes]):
    """The handout notebook (an nbformat NotebookNode) from the student zip's files."""
    starters = {name: student_files[f"{manifest.name}/{name}"].decode() for name in manifest.submission_files}
    by_file = {file: file_cells(file, starters[file]) for file in manifest.submission_files}
    layout = layout_of(manifest, by_file)
    readme = student_files[f"{manifest.name}/README.md"].decode()
    sections = _sections(readme)
    out = _Cells()
    intro = sections.pop(0)[1] if sections and not sections[0][0] else ""
    files_list = ", ".join(f"`{f}`" for f in manifest.submission_files)
    if intro:
        out.markdown(intro)
    out.markdown(HOW_TO.format(files=files_list))
    out.code(SETUP.format(folder=f"{manifest.name}-notebook",
                          payload=payload(support_files(manifest, student_files, layout))),
             tags=["setup"], jupyter={"source_hidden": True}, cellView="form")
    file_sections: dict[str, list[str]] = {}
    rest = []
    for heading, text in sections:
        named = FILE_IN_HEADING.search(heading)
        if QUESTIONS_HEADING.match(heading):
            continue  # the manifest's [questions] stand for it, each with an answer cell
        elif named and named["file"] in by_file:
            file_sections.setdefault(named["file"], []).append(text)
        else:
            rest.append(text)
    for text in rest:
        out.markdown(text)
    after = {name: [] for name in manifest.problems}
    last = list(manifest.problems)[-1]
    for question in manifest.questions.values():
        after[question.after or last].append(question)
    pics = pictures(manifest)
    number = 0
    for file in _file_order(manifest):
        items: dict[str, str] = {}
        for text in file_sections.get(file, []):
            head, found = _items(text)
            out.markdown(head)
            for name, body in found:
                items[name] = (items[name] + "\n\n" + body) if name in items else body
        cells = by_file[file]
        checks = _problem_cells(manifest, file, cells)
        placed = set()
        for index, cell in enumerate(cells):
            described = [n for n in cell["defs"] if n in items and n not in placed]
            if cell["stub"] and described:
                out.markdown("\n\n".join(items[n] for n in described))
                placed.update(described)
            tags = [f"{cells_module.FILE_TAG}{file}", "stub" if cell["stub"] else "given"]
            out.code(cell["source"], tags=tags)
            for problem in checks.get(index, []):
                if problem in items and problem not in placed:
                    out.markdown(items[problem])
                    placed.add(problem)
                out.code(f'check("{problem}")', tags=["check"])
                for picture in pics.get(problem, []):
                    out.code(picture, tags=["picture"])
                for question in after[problem]:
                    number += 1
                    _question(out, number, question)
        for name, body in items.items():  # items the file's cells did not take, in order
            if name not in placed:
                out.markdown(body)
    out.markdown("## All problems\n\nThe points the public tests give, problem by problem (the hidden tests "
                 "decide the rest, after you submit).")
    out.code("check_all()", tags=["check"])
    nb = out.nbf.v4.new_notebook(cells=out.cells, metadata=KERNEL)
    nb.nbformat, nb.nbformat_minor = 4, 5
    out.nbf.validate(nb)
    return nb


def to_bytes(nb) -> bytes:
    return (_nbformat().writes(nb) + "\n").encode()


def write(manifest: manifest_module.Manifest, dist: pathlib.Path, student_files: dict[str, bytes]) -> pathlib.Path:
    path = pathlib.Path(dist) / f"{manifest.name}-student.ipynb"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(to_bytes(generate(manifest, student_files)))
    return path


# ---- executing it (tests, make demo) ----

def execute(nb, folder: pathlib.Path, timeout: int = 300):
    """Run every cell of `nb` in a fresh python3 kernel whose working folder is `folder`."""
    from nbclient import NotebookClient

    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(folder)}})
    client.execute()
    return nb


def text_outputs(cell) -> str:
    """A cell's outputs as text (streams, text/plain results, errors)."""
    parts = []
    for output in cell.get("outputs", []):
        if output.get("output_type") == "stream":
            parts.append(output.get("text", ""))
        elif output.get("output_type") in ("execute_result", "display_data"):
            parts.append(output.get("data", {}).get("text/plain", ""))
        elif output.get("output_type") == "error":
            parts.append("\n".join(output.get("traceback", [])))
    return "".join(p if isinstance(p, str) else "".join(p) for p in parts)


def check_cells(nb) -> list[tuple[str, str]]:
    """[(the check cell's code, its output as text)] in order."""
    return [(c.source, text_outputs(c)) for c in nb.cells if "check" in c.metadata.get("tags", [])]


ROW = re.compile(r"^(?P<name>\w+)\s+(?P<passed>\d+) / (?P<run>\d+)\s+(?P<earned>[\d.]+) / (?P<share>[\d.]+)\s+"
                 r"(?P<points>[\d.]+)\s+(?P<status>\S.*)$")


def parse_table(text: str) -> dict[str, dict]:
    """A check's text table (kit/jupyter.Report) as {problem: {passed, run, earned, share, points, status}}."""
    rows = {}
    for line in text.splitlines():
        match = ROW.match(line)
        if match and match["name"] != "total":
            rows[match["name"]] = {"passed": int(match["passed"]), "run": int(match["run"]),
                                   "earned": float(match["earned"]), "share": float(match["share"]),
                                   "points": float(match["points"]), "status": match["status"].strip()}
    return rows


def read(path: pathlib.Path):
    return _nbformat().read(str(path), as_version=4)
