"""Notebook submissions: read a `.ipynb` with nbformat and cut it into the submitted files.

The cells that make each file follow kit/notebook.py's convention (a `file:<name>.py` tag or a
first-line marker `# file: <name>.py`), the same one the handout notebook's check cells use.
Untagged cells are never part of a file, so they never run; IPython lines are replaced by `pass`
and whole `%%bash`-style cells are dropped (kit/notebook.py says which, the notes list them).

Outputs are never read: they are dropped right after the JSON is parsed (before nbformat
validates the notebook, so an odd output does not make a notebook unreadable). A notebook may
be MAX_NOTEBOOK_BYTES large (plots and long logs make big outputs; reading one costs about three
times its size in memory, for a moment); each file rebuilt from it still obeys intake's limit.
A file that is not valid JSON, or JSON that is not a notebook nbformat can read and validate,
raises NotebookError with a message for the student.
"""
from __future__ import annotations

import ast
import dataclasses
import json

from ..kit import messages
from ..kit import notebook as convention

MAX_NOTEBOOK_BYTES = 100_000_000
MAX_CELLS = 10_000          # the handouts have about 100; reading 10 000 takes about a second
MAX_NOTES = 30              # notes about one notebook shown (a removed IPython line each, ...)
MAX_ANSWER_CHARS = 20_000   # one written answer, as shown to the human grader
MAX_ERROR_CHARS = 300
MAX_PYTHON_BYTES = 1_000_000   # a notebook that is not JSON is parsed as Python up to a submitted file's size


class NotebookError(ValueError):
    """The file is not a notebook that can be read; the message says why, for the student."""


@dataclasses.dataclass
class NotebookFiles:
    """What one notebook gives: submitted files (code as bytes), written answers, notes."""
    files: dict[str, bytes]            # submitted file name -> its code, rebuilt from its cells
    cells: dict[str, list[int]]        # submitted file name -> its cells (numbered from 1)
    answers: dict[str, str]            # written question id -> the answer's Markdown
    notes: list[str]                   # what was ignored or changed (kit/notebook.py's notes)
    starts: dict[str, list[tuple[int, int]]] = dataclasses.field(default_factory=dict)  # file -> (cell, line)


def _short(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 3] + "..."


def _drop_outputs(raw: dict) -> int:
    """Empty every code cell's outputs and drop attachments (nbformat 4 `cells`, 3 `worksheets`);
    the number of cells. Cell ids in a notebook numbered below 4.5 (tools add them without raising
    the number; nbformat would then refuse the notebook) are dropped too: grading never reads them."""
    worksheets = raw.get("worksheets") if isinstance(raw.get("worksheets"), list) else []
    lists = [raw.get("cells")] + [w.get("cells") for w in worksheets if isinstance(w, dict)]
    version = (raw.get("nbformat"), raw.get("nbformat_minor"))
    ids_allowed = not all(isinstance(v, int) for v in version) or version >= (4, 5)
    count = 0
    for cells in lists:
        for cell in cells if isinstance(cells, list) else []:
            count += 1
            if isinstance(cell, dict):
                if "outputs" in cell:
                    cell["outputs"] = []
                cell.pop("attachments", None)
                if not ids_allowed:
                    cell.pop("id", None)
    return count


def _is_python(data: bytes) -> bool:
    """Whether `data` is Python source (a .py file renamed .ipynb): it parses and imports or defines something
    (a stray word such as `not json` parses too)."""
    try:
        body = ast.parse(data.decode("utf-8-sig")).body if len(data) <= MAX_PYTHON_BYTES else []
    except (SyntaxError, ValueError, RecursionError, MemoryError):   # ValueError: not UTF-8, a null byte
        return False
    kinds = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
    return any(isinstance(node, kinds) for node in body)


def read(data: bytes, files: list[str] | tuple[str, ...] = ()):
    """The notebook in `data`, as nbformat 4 (a NotebookNode), validated; outputs emptied.
    Raises NotebookError when it is not JSON, or not a notebook nbformat reads and validates
    (`files`, the submitted files, are named when it is Python code instead)."""
    import nbformat

    if not data.strip():
        raise NotebookError(messages.NOTEBOOK_EMPTY)
    try:
        raw = json.loads(data)
    except json.JSONDecodeError as error:
        if _is_python(data):
            raise NotebookError(messages.NOTEBOOK_IS_PYTHON.format(files=", ".join(files))) from None
        raise NotebookError(messages.NOTEBOOK_NOT_JSON.format(
            error=f"line {error.lineno}, column {error.colno}: {error.msg}")) from None
    except (ValueError, RecursionError) as error:   # not UTF-8 (or 16, 32); nested too deep
        raise NotebookError(messages.NOTEBOOK_NOT_JSON.format(error=_short(error))) from None
    del data
    if not isinstance(raw, dict) or "nbformat" not in raw:
        raise NotebookError(messages.NOTEBOOK_NOT_NOTEBOOK)
    if _drop_outputs(raw) > MAX_CELLS:
        raise NotebookError(messages.NOTEBOOK_TOO_MANY_CELLS.format(limit=MAX_CELLS))
    captured: dict = {}
    try:
        notebook = nbformat.reads(json.dumps(raw), as_version=4, capture_validation_error=captured)
    except Exception as error:  # noqa: BLE001 - nbformat raises many kinds for a malformed notebook
        why = _short(f"{type(error).__name__}: {error}")
        raise NotebookError(messages.NOTEBOOK_INVALID.format(error=why)) from None
    if captured:
        raise NotebookError(messages.NOTEBOOK_INVALID.format(error=_short(captured["ValidationError"].message)))
    return notebook


def cut(data: bytes, wanted: list[str] | tuple[str, ...]) -> NotebookFiles:
    """Read a notebook and rebuild the `wanted` files from its tagged cells (NotebookError if unreadable)."""
    notebook = read(data, wanted)
    assembly = convention.assemble(list(notebook.cells), files=tuple(wanted))
    files = {name: code.replace("\r\n", "\n").encode("utf-8", "backslashreplace")   # a lone surrogate: "\\ud800"
             for name, code in assembly.files.items()}
    cells = {name: [i + 1 for i in indexes] for name, indexes in assembly.cells.items()}
    answers = {qid: _cut_answer(text.strip()) for qid, text in assembly.answers.items()}
    starts = {name: [(i + 1, line) for i, line in found] for name, found in assembly.starts.items()}
    return NotebookFiles(files, cells, answers, _capped(assembly.notes, bool(assembly.untagged)), starts)


def _capped(notes: list[str], untagged: bool) -> list[str]:
    """The first MAX_NOTES notes, and always the last one that lists the untagged cells."""
    last = notes[-1:] if untagged else []
    rest = notes[:-1] if untagged else notes
    if len(rest) <= MAX_NOTES:
        return rest + last
    return rest[:MAX_NOTES] + [messages.NOTEBOOK_MORE_NOTES.format(count=len(rest) - MAX_NOTES)] + last


def _cut_answer(text: str) -> str:
    if len(text) <= MAX_ANSWER_CHARS:
        return text
    return text[:MAX_ANSWER_CHARS] + messages.OUTPUT_CUT.format(count=len(text) - MAX_ANSWER_CHARS)
