"""Which test files a change to some submitted files can affect (the mutant checks' shortcut).

A catalogued mutant differs from the reference in one or two files. A test file whose tests
reach only other files gives the mutant exactly the reference's results, so the mutant
checks (`mutants.check_all`) run only the affected test files and take the reference's
results for the rest. This is sound when we know every submitted module a test file can
reach, so what is known is read from the test file's syntax tree, and anything unclear
counts as "every module":

- `student.attention` (an attribute of the `student` fixture that names a submitted module),
  `student.module("attention")`, and `@pytest.mark.isolate("attention", ...)` reach `attention`;
- `student` given to a function of the same file is followed into it (its parameter's uses
  count the same way); any other use (given to a function of another module, `getattr(student,
  name)`, stored) may reach any module;
- a module reaches what it imports, transitively (`model.py` importing `attention.py`),
  in the reference's files and in the changed ones alike.

tests/test_impact.py checks the reading against the modules the reference's tests really
import when graded, so a test file that outgrows these rules is caught.
"""
from __future__ import annotations

import ast
import pathlib

from ..kit.adapter import sibling_imports

EVERY_MODULE = None   # what a test file reaches when its use of `student` cannot be read


def modules_reached(test_file: pathlib.Path, modules: set[str]) -> set[str] | None:
    """The submitted modules (names without .py) `test_file` reaches directly, or EVERY_MODULE."""
    tree = ast.parse(pathlib.Path(test_file).read_text(encoding="utf-8"))
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    holders = _student_names(tree)
    reached: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and _is_isolate_marker(node.func) and node.args:
            first = node.args[0]
            if not (isinstance(first, ast.Constant) and first.value in modules):
                return EVERY_MODULE
            reached.add(first.value)
        if not (isinstance(node, ast.Name) and node.id in holders):
            continue
        parent = parents.get(node)
        if isinstance(parent, ast.Attribute) and parent.attr in modules:
            reached.add(parent.attr)
        elif isinstance(parent, ast.Attribute) and parent.attr == "module":
            name = _constant_call_arg(parents, parent, modules)  # student.module("attention")
            if name is None:
                return EVERY_MODULE
            reached.add(name)
        elif not _passed_to_own_function(node, parent, tree):
            return EVERY_MODULE
    return reached


def _own_functions(tree: ast.Module) -> dict[str, ast.FunctionDef]:
    return {node.name: node for node in tree.body if isinstance(node, ast.FunctionDef)}


def _student_names(tree: ast.Module) -> set[str]:
    """`student`, and the parameters of this file's own functions that are given it (`_pair(student, ...)`)."""
    functions, names, grown = _own_functions(tree), {"student"}, True
    while grown:
        grown = False
        for call in (n for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)):
            function = functions.get(call.func.id)
            if function is None:
                continue
            params = [a.arg for a in function.args.posonlyargs + function.args.args]
            given = [params[i] for i, a in enumerate(call.args)
                     if i < len(params) and isinstance(a, ast.Name) and a.id in names]
            given += [k.arg for k in call.keywords if isinstance(k.value, ast.Name) and k.value.id in names and k.arg]
            for name in given:
                if name not in names:
                    names.add(name)
                    grown = True
    return names


def _passed_to_own_function(node: ast.Name, parent, tree: ast.Module) -> bool:
    """Is `node` an argument of a call to a function of this file (whose parameter is then followed)?"""
    if isinstance(parent, ast.keyword):
        return False  # followed only when its keyword names a parameter: kept simple, counted as unclear
    return (isinstance(parent, ast.Call) and node in parent.args and isinstance(parent.func, ast.Name)
            and parent.func.id in _own_functions(tree)
            and parent.args.index(node) < len(_own_functions(tree)[parent.func.id].args.args))


def _is_isolate_marker(func: ast.expr) -> bool:
    return isinstance(func, ast.Attribute) and func.attr == "isolate"


def _constant_call_arg(parents: dict, attribute: ast.Attribute, modules: set[str]) -> str | None:
    call = parents.get(attribute)
    if isinstance(call, ast.Call) and call.func is attribute and len(call.args) == 1:
        arg = call.args[0]
        if isinstance(arg, ast.Constant) and arg.value in modules:
            return arg.value
    return None


def import_closure(reached: set[str], folders: list[pathlib.Path], modules: set[str]) -> set[str]:
    """`reached` and every submitted module they import, directly or not, in any of `folders`."""
    closure, stack = set(), list(reached)
    while stack:
        name = stack.pop()
        if name in closure:
            continue
        closure.add(name)
        for folder in folders:
            path = folder / f"{name}.py"
            if path.is_file():
                stack.extend(sibling_imports(path, modules))
    return closure


def changed_modules(reference: pathlib.Path, folder: pathlib.Path, files: tuple[str, ...]) -> set[str]:
    """The submitted files (module names) whose bytes differ between `reference` and `folder`."""
    changed = set()
    for name in files:
        a, b = reference / name, folder / name
        if a.is_file() != b.is_file() or (a.is_file() and a.read_bytes() != b.read_bytes()):
            changed.add(pathlib.PurePath(name).stem)
    return changed


def affected_test_files(test_files: list[pathlib.Path], reference: pathlib.Path, folder: pathlib.Path,
                        files: tuple[str, ...]) -> list[pathlib.Path]:
    """The test files whose results may differ between the submissions `reference` and `folder`."""
    modules = {pathlib.PurePath(name).stem for name in files}
    changed = changed_modules(reference, folder, files)
    if not changed:
        return []
    affected = []
    for test_file in test_files:
        reached = modules_reached(test_file, modules)
        if reached is EVERY_MODULE or import_closure(reached, [reference, folder], modules) & changed:
            affected.append(test_file)
    return affected
