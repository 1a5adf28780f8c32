"""`python -m autograder starter NAME [--check]`: generate student stubs from the reference.

The reference is the one source of truth. Solution code sits between two marker lines:

    # BEGIN SOLUTION
    ...
    # END SOLUTION

An indented region becomes `raise NotImplementedError("<name>: not implemented yet")`,
where <name> is the enclosing def or class (`Class.method` for methods), at the region's
indentation; a region at column 0 (a private helper) is dropped. Everything outside the
markers (imports, signatures, docstrings, given code) is kept as it is.
"""
from __future__ import annotations

import ast
import pathlib
import re

from .. import manifest as manifest_module

BEGIN = "# BEGIN SOLUTION"
END = "# END SOLUTION"
_DEF = re.compile(r"^(\s*)(?:async\s+)?(def|class)\s+(\w+)")


class MarkerError(ValueError):
    pass


def _enclosing_name(lines: list[str], index: int, indent: int) -> str:
    names, level = [], indent
    for line in reversed(lines[:index]):
        match = _DEF.match(line)
        if match and len(match.group(1)) < level:
            names.append(match.group(3))
            level = len(match.group(1))
            if level == 0:
                break
    return ".".join(reversed(names)) or "this"


def strip_solutions(source: str, filename: str = "<source>") -> str:
    """The stub version of a reference file."""
    lines = source.splitlines(keepends=True)
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.strip() == END:
            raise MarkerError(f"{filename}:{i + 1}: {END} without {BEGIN}")
        if line.strip() != BEGIN:
            out.append(line)
            i += 1
            continue
        indent = len(line) - len(line.lstrip())
        start = i
        i += 1
        while i < len(lines) and lines[i].strip() != END:
            if lines[i].strip() == BEGIN:
                raise MarkerError(f"{filename}:{i + 1}: nested {BEGIN}")
            i += 1
        if i == len(lines):
            raise MarkerError(f"{filename}:{start + 1}: {BEGIN} without {END}")
        i += 1  # past END
        if indent:
            name = _enclosing_name(lines, start, indent)
            out.append(" " * indent + f'raise NotImplementedError("{name}: not implemented yet")\n')
        else:
            while i < len(lines) and not lines[i].strip():  # drop the blank lines after a removed helper
                i += 1
    return "".join(out)


def given_in(source: str) -> list[str]:
    """The public top-level functions and classes of a reference file that hold no solution
    region: the handout's own code (a "Given" helper, a file given whole), not the student's."""
    lines = source.splitlines()
    return [node.name for node in ast.parse(source).body
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and not node.name.startswith("_")
            and not any(line.strip() == BEGIN for line in lines[node.lineno - 1:node.end_lineno])]


def given_names(manifest: manifest_module.Manifest) -> dict[str, list[str]]:
    """{module: [given names]} for the submitted files (failure messages never name a call of
    them as a call into the student's code, and diagnosis never replays one: kit/adapter.py)."""
    reference = manifest.path(manifest.reference)
    found = {pathlib.Path(name).stem: given_in((reference / name).read_text(encoding="utf-8"))
             for name in manifest.submission_files}
    return {module: names for module, names in found.items() if names}


def generate(manifest: manifest_module.Manifest) -> dict[str, str]:
    """{filename: stub source} for every submitted file of the assignment."""
    reference = manifest.path(manifest.reference)
    return {name: strip_solutions((reference / name).read_text(encoding="utf-8"), name)
            for name in manifest.submission_files}


def write(manifest: manifest_module.Manifest) -> list[pathlib.Path]:
    starter = manifest.path(manifest.starter)
    starter.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in generate(manifest).items():
        (starter / name).write_text(text, encoding="utf-8")
        written.append(starter / name)
    return written


def stale(manifest: manifest_module.Manifest) -> list[str]:
    """Starter files that differ from what the reference generates (empty when up to date)."""
    starter = manifest.path(manifest.starter)
    return [name for name, text in generate(manifest).items()
            if not (starter / name).is_file() or (starter / name).read_text(encoding="utf-8") != text]
