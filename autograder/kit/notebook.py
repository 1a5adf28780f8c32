"""Which cells of a notebook make which submitted file: one convention for the handout notebook
(build writes it), its check cells (the student's kernel) and notebook submissions (intake).

A code cell belongs to a submitted file when its metadata tags hold ``file:<name>.py`` or,
for editors that drop metadata, when its first line is the marker comment ``# file: <name>.py``
(its second line under a cell magic such as ``%%time``). A file is its cells' code joined in
notebook order; untagged cells (exploration, plots) are never part of it. A marker line further
down a cell, at the top level, starts a part of that file (cells of two files merged into one),
an untouched stub (only ``raise NotImplementedError``) below an earlier definition of the
same name is left out, and a cell that only imports, below cells using what it imports, is put
first (the kernel ran it first); notes say so. A Markdown cell tagged ``answer:<id>`` (or whose first line is
``<!-- answer: <id> -->``) holds the answer to the written question <id>.

IPython-only lines (``%magic``, ``!shell``, ``x = !cmd``, ``%%cell`` magics) are not Python:
they are replaced by ``pass`` (keeping the indentation, so a block stays valid) and listed.
A cell that parses as Python is kept whole (``!= b`` or ``% n`` on a continuation line, a
docstring line starting with ``!``, are Python).
The handout's own cells never hold one.

Standard library only: this module ships to students (in the notebook's setup payload) and the
grader reads submissions with it, so both sides cut a notebook into files the same way.
"""
from __future__ import annotations

import ast
import dataclasses
import re

FILE_TAG = "file:"        # a code cell's tag: "file:attention.py"
ANSWER_TAG = "answer:"    # a Markdown cell's tag: "answer:why_scale"
FILE_MARKER = re.compile(r"#\s*file:\s*(?P<name>[\w.-]+\.py)\s*")
ANSWER_MARKER = re.compile(r"<!--\s*answer:\s*(?P<name>[\w.-]+)\s*-->\s*")
# A line IPython rewrites before Python sees it: a magic, a shell escape, `x = !cmd` / `x = %magic`.
IPYTHON_LINE = re.compile(r"\s*(?:[%!]|[\w.,\s]+=\s*[%!])")
# Cell magics whose body is still Python (timing, capturing output); any other (%%bash,
# %%writefile, %%html ...) makes the whole cell not Python.
PYTHON_CELL_MAGICS = {"time", "timeit", "capture", "prun"}

REMOVED_LINE = "cell {cell}: removed the IPython line `{line}` (not Python; it does not run in grading)"
REMOVED_CELL = "cell {cell}: the `%%{magic}` cell is not Python; it is not part of {file}"
DUPLICATE = ("{name} is defined in cells {cells} of {file}; the last one counts, as when Python runs the "
             "file top to bottom")
UNTAGGED = "cells not part of any submitted file (not graded, never run by the grader): {cells}"
NEAR_MARKER = ("cell {cell}: its first line `{line}` is not the marker line `# file: {file}` (exactly that, "
               "alone on its line), so the cell is not graded")
WRITEFILE = ("cell {cell} writes {file} with `%%writefile`, which the grader does not run: replace that line "
             "with `# file: {file}` to grade the cell")
# A first line meant as a marker: "# File: attention.py", "# file: `attention.py`", "# file: attention.py <- mine".
LOOKS_LIKE_MARKER = re.compile(r"#\s*file\s*:.*?(?P<name>[\w.-]+\.py)", re.IGNORECASE)
WRITEFILE_MAGIC = re.compile(r"%%writefile\s+(?:-a\s+)?(?P<name>[\w./-]*?(?P<file>[\w.-]+\.py))\s*")
UNMARKED = ("cell {cell} defines {names}, as {file} does, but its first line is not `# file: {file}`: it is not "
            "graded (your code in it is not part of {file})")
HOISTED = ("cell {cell} only imports, and cells above it in {file} use what it imports: it is graded at the top "
           "of {file}, as you must have run it first (move it up in your notebook)")
MARKER_ONLY = ("cell {cell} holds the marker of {file} and no code: only the code in the marked cell itself is "
               "graded (a cell split below its marker? merge it with the next one)")
STUB_LEFT = ("cell {cell} holds only the starter's stub of {names} (raise NotImplementedError), which {file} "
             "defines above it: the stub is left out and your own code is graded; delete that cell")


def cell_numbers(numbers: list[int], limit: int = 20) -> str:
    """Cell numbers as a student reads them: runs of three or more as ranges ("3, 5-9, 11, 12"), at
    most `limit` items."""
    runs: list[list[int]] = []
    for number in numbers:
        if runs and number == runs[-1][1] + 1:
            runs[-1][1] = number
        else:
            runs.append([number, number])
    items = [item for a, b in runs for item in ([f"{a}-{b}"] if b > a + 1 else map(str, range(a, b + 1)))]
    more = f" and {len(items) - limit} more" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


def source_of(cell: dict) -> str:
    """A cell's source as one string (nbformat stores either a string or a list of lines)."""
    source = cell.get("source") or ""
    return "".join(source) if isinstance(source, list) else str(source)


def _tags(cell: dict) -> list[str]:
    tags = (cell.get("metadata") or {}).get("tags") or []
    return [t for t in tags if isinstance(t, str)]


def _first_line(source: str) -> str:
    return source.lstrip("\n").split("\n", 1)[0]


def _marker_line(source: str) -> str:
    """The line a code cell's marker is on: the first, or the second under a cell magic (`%%time`
    must open its cell, so a student timing a graded cell writes the marker below it)."""
    lines = source.lstrip("\n").split("\n", 2)
    return lines[1] if len(lines) > 1 and lines[0].lstrip().startswith("%%") else lines[0]


def _label(cell: dict, cell_type: str, tag_prefix: str, marker) -> str | None:
    """What a cell of `cell_type` is labelled with: its tag `<tag_prefix>X`, else its marker line, or None."""
    if cell.get("cell_type") != cell_type:
        return None
    for tag in _tags(cell):
        if tag.startswith(tag_prefix):
            return tag[len(tag_prefix):].strip()
    source = source_of(cell)
    match = marker.fullmatch(_marker_line(source) if cell_type == "code" else _first_line(source))
    return match["name"] if match else None


def cell_file(cell: dict) -> str | None:
    """The submitted file a code cell belongs to (its tag, else its marker line), or None."""
    return _label(cell, "code", FILE_TAG, FILE_MARKER)


def answer_id(cell: dict) -> str | None:
    """The written question a Markdown cell answers (its tag, else its marker line), or None."""
    return _label(cell, "markdown", ANSWER_TAG, ANSWER_MARKER)


def python_of(source: str) -> tuple[str | None, list[str]]:
    """A code cell's Python: IPython lines become `pass`; None when a cell magic makes it not Python.
    Returns (code or None, the removed lines)."""
    lines = source.split("\n")
    body = [line for line in lines if line.strip()]
    if body and body[0].lstrip().startswith("%%"):
        magic = body[0].strip()[2:].split()[0] if body[0].strip()[2:] else ""
        if magic not in PYTHON_CELL_MAGICS:
            return None, [body[0].strip()]
        first = lines.index(body[0])
        return "\n".join(lines[:first] + ["pass"] + lines[first + 1:]), [body[0].strip()]
    if _parses(source):   # pure Python: a line starting with % or ! continues an expression, or is in a string
        return source, []
    code, removed = [], []
    for line in lines:
        if IPYTHON_LINE.match(line) and not _is_python(line):
            indent = line[: len(line) - len(line.lstrip())]
            code.append(f"{indent}pass  # removed: IPython line")
            removed.append(line.strip())
        else:
            code.append(line)
    return "\n".join(code), removed


def _parses(code: str) -> bool:
    try:
        ast.parse(code)
    except (SyntaxError, ValueError):   # ValueError: a null byte (Python < 3.11.4)
        return False
    return True


def _is_python(line: str) -> bool:
    """Whether a line that looks like IPython is Python after all (`x = a % b` is not a magic)."""
    stripped = line.strip()
    return not stripped.startswith(("%", "!")) and _parses(stripped)


def parts_of(source: str) -> list[str]:
    """A code cell's text cut before each marker line that follows code (two cells merged into one):
    [the cell up to its second marker, from there to the third, ...]. Only a marker line at the top
    level cuts (one inside a function or a string does not); a cell that does not parse is not cut."""
    lines = source.split("\n")
    started, marks = False, []
    for number, line in enumerate(lines):
        if FILE_MARKER.fullmatch(line):
            if started:
                marks.append(number)
        elif line.strip() and not line.lstrip().startswith("%%"):
            started = True
    if not marks:
        return [source]
    code, _ = python_of(source)
    try:
        tree = ast.parse(code or "")
    except (SyntaxError, ValueError):   # ValueError: a null byte (Python < 3.11.4)
        return [source]
    inside = {n for node in tree.body for n in range(node.lineno - 1, node.end_lineno)}
    bounds = [0, *(m for m in marks if m not in inside), len(lines)]
    return ["\n".join(lines[a:b]) for a, b in zip(bounds, bounds[1:])]


@dataclasses.dataclass
class Assembly:
    """A notebook cut into submitted files."""
    files: dict[str, str]                   # file name -> its code (cells joined in order)
    cells: dict[str, list[int]]             # file name -> the indexes of its cells
    answers: dict[str, str]                 # question id -> the answer's Markdown (marker line dropped)
    untagged: list[int]                     # code cells that belong to no file
    notes: list[str]
    starts: dict[str, list[tuple[int, int]]] = dataclasses.field(default_factory=dict)  # file -> (cell, first line)


def assemble(cells: list[dict], files: tuple[str, ...] | list[str] | None = None) -> Assembly:
    """Cut a notebook's cells (nbformat dicts, in order) into submitted files.

    `files`, when given, limits which file names count (others' cells are listed as untagged).
    Cell numbers in notes count from 1, as a student counts cells."""
    parts: dict[str, list[str]] = {}
    where: dict[str, list[int]] = {}
    answers: dict[str, str] = {}
    untagged: list[int] = []
    notes: list[str] = []
    defined: dict[str, set[str]] = {}   # file name -> the functions and classes its cells so far define
    bare: list[tuple[int, str]] = []    # (cell, file) of a cell holding its marker and no code
    for index, cell in enumerate(cells):
        qid = answer_id(cell)
        if qid is not None:
            text = source_of(cell)
            first = _first_line(text)
            if ANSWER_MARKER.fullmatch(first):
                text = text.lstrip("\n")[len(first):].lstrip("\n")
            answers[qid] = (answers[qid] + "\n\n" + text) if qid in answers else text
            continue
        if cell.get("cell_type") != "code":
            continue
        name = cell_file(cell)
        if name is None or (files is not None and name not in files):
            untagged.append(index)
            notes.extend(_near_miss(index, source_of(cell), files))
            continue
        code, removed = python_of(source_of(cell))
        if code is None:
            notes.append(REMOVED_CELL.format(cell=index + 1, magic=removed[0][2:].split()[0], file=name))
            continue
        notes.extend(REMOVED_LINE.format(cell=index + 1, line=line) for line in removed)
        for k, part in enumerate(parts_of(code)):
            file = name if k == 0 else FILE_MARKER.fullmatch(part.split("\n", 1)[0])["name"]
            if files is not None and file not in files:
                continue
            known, stubs = defined.setdefault(file, set()), _stub_names(part)
            if stubs and stubs <= known:   # a stub cell left below the student's code
                notes.append(STUB_LEFT.format(cell=index + 1, names=", ".join(sorted(stubs)), file=file))
                continue
            if not any(line.strip() and not line.lstrip().startswith("#") for line in part.split("\n")):
                bare.append((index, file))
            known |= _defined_names(part)
            parts.setdefault(file, []).append(part.rstrip("\n") + "\n")
            where.setdefault(file, []).append(index)
    for name in parts:
        parts[name], where[name], moved = _imports_first(parts[name], where[name])
        notes.extend(HOISTED.format(cell=index + 1, file=name) for index in moved)
    joined = {name: "\n\n".join(codes) for name, codes in parts.items()}
    for name in joined:
        notes.extend(_duplicates(name, parts[name], where[name]))
    notes.extend(_unmarked_definitions(cells, untagged, defined))
    notes.extend(MARKER_ONLY.format(cell=index + 1, file=file) for index, file in bare   # a cell split below
                 if index + 1 not in where[file])                                        # its marker, on Colab
    if untagged:
        notes.append(UNTAGGED.format(cells=cell_numbers([i + 1 for i in untagged])))
    return Assembly(joined, {name: list(dict.fromkeys(found)) for name, found in where.items()}, answers,
                    untagged, notes, {name: _starts(parts[name], where[name]) for name in parts})


def _starts(codes: list[str], indexes: list[int]) -> list[tuple[int, int]]:
    """(cell index, the line of the joined file its code starts on) for each part: "\n\n" joins them."""
    out, line = [], 1
    for code, index in zip(codes, indexes):
        out.append((index, line))
        line += code.count("\n") + 2
    return out


def _near_miss(index: int, source: str, files) -> list[str]:
    """A note for an unmarked cell that was meant for a submitted file: a first line close to the marker,
    or a `%%writefile` of the file."""
    first = _first_line(source).strip()
    near, magic = LOOKS_LIKE_MARKER.match(first), WRITEFILE_MAGIC.fullmatch(first)
    name = near["name"] if near else magic["file"] if magic else None
    if name is None or (files is not None and name not in files):
        return []
    return [(NEAR_MARKER if near else WRITEFILE).format(cell=index + 1, line=first, file=name)]


def _unmarked_definitions(cells: list[dict], untagged: list[int], defined: dict[str, set[str]]) -> list[str]:
    """A note for each unmarked code cell that defines a function or class a submitted file defines (the
    student's solution written in a new cell without the marker, below the handout's stub, say)."""
    notes = []
    for index in untagged:
        names = _defined_names(python_of(source_of(cells[index]))[0] or "")
        for file, known in defined.items():
            if names & known:
                notes.append(UNMARKED.format(cell=index + 1, names=", ".join(sorted(names & known)), file=file))
                break
    return notes


def _imports_first(codes: list[str], indexes: list[int]) -> tuple[list[str], list[int], list[int]]:
    """A file's parts with each part that only imports (after a docstring), and imports a name an earlier
    part uses before any part binds it, moved to the front (the handout's imports cell moved below a
    function whose annotations need torch: the kernel ran it first). (parts, their cells, the moved cells)."""
    moved, bound, used = [], set(), set()
    for k, code in enumerate(codes):
        nodes = _top_level(code)
        body = nodes[1:] if nodes and isinstance(nodes[0], ast.Expr) and isinstance(nodes[0].value, ast.Constant) \
            else nodes
        names = _bound_names(nodes)
        if k and body and all(isinstance(n, (ast.Import, ast.ImportFrom)) for n in body) and names & (used - bound):
            moved.append(k)
        bound |= names
        used |= {n.id for node in nodes for n in ast.walk(node) if isinstance(n, ast.Name)
                 and isinstance(n.ctx, ast.Load)}
    order = moved + [k for k in range(len(codes)) if k not in moved]
    return [codes[k] for k in order], [indexes[k] for k in order], [indexes[k] for k in moved]


def _bound_names(nodes: list[ast.stmt]) -> set[str]:
    """The names top-level statements bind: imports, functions, classes, assignments."""
    names: set[str] = set()
    for node in nodes:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        else:
            names |= {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
    return names


def _top_level(code: str) -> list[ast.stmt]:
    try:
        return ast.parse(code).body
    except (SyntaxError, ValueError):   # ValueError: a null byte (Python < 3.11.4)
        return []


def _defined_names(code: str) -> set[str]:
    return {node.name for node in _top_level(code)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}


def _is_stub(node: ast.stmt) -> bool:
    """A function whose body (after its docstring) only raises NotImplementedError, or a class of such functions."""
    body = node.body if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) else []
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]   # the docstring
    if isinstance(node, ast.ClassDef):
        return bool(body) and all(_is_stub(child) for child in body)
    if len(body) != 1 or not isinstance(body[0], ast.Raise) or body[0].exc is None:
        return False
    raised = body[0].exc.func if isinstance(body[0].exc, ast.Call) else body[0].exc
    return isinstance(raised, ast.Name) and raised.id == "NotImplementedError"


def _stub_names(code: str) -> set[str]:
    """The names a cell defines when it holds only stubs (the starter's `raise NotImplementedError`), else none."""
    nodes = _top_level(code)
    return {node.name for node in nodes} if nodes and all(_is_stub(node) for node in nodes) else set()


def _duplicates(name: str, sources: list[str], indexes: list[int]) -> list[str]:
    """A note for each top-level function or class defined differently in more than one of a file's cells
    (a cell copied or run twice, unchanged, is not worth a note: the notes a student reads are few)."""
    defined: dict[str, list[int]] = {}
    versions: dict[str, set[str]] = {}
    for source, index in zip(sources, indexes):
        code, _ = python_of(source)
        try:
            tree = ast.parse(code or "")
        except (SyntaxError, ValueError):   # ValueError: a null byte (Python < 3.11.4)
            continue
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                cells = defined.setdefault(node.name, [])
                versions.setdefault(node.name, set()).add(ast.dump(node))
                if index + 1 not in cells:
                    cells.append(index + 1)
    return [DUPLICATE.format(name=n, cells=cell_numbers(c), file=name)
            for n, c in defined.items() if len(c) > 1 and len(versions[n]) > 1]
