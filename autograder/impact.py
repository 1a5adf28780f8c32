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

Most mutants change the body of one function, and most tests never run it. So a change that
is only in function bodies narrows further, to tests: `CallRecorder` records which functions of
the submission each test runs when the reference is graded (in the mutants' own process, so
nothing is run twice), and `changed_functions` names the functions whose bodies alone differ.
A test that never ran a changed function runs exactly as it did on the reference: the two runs
are identical up to the first call of changed code. Anything else that differs (a module or
class statement, a signature, a decorator, a function added) falls back to the file rule.
"""
from __future__ import annotations

import ast
import os
import pathlib
import sys
import threading

import pytest

from .kit.adapter import sibling_imports

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


# --- Function level: which tests run a changed function -------------------------------------

WHOLE_MODULE = None   # what changed in a file when it is more than function bodies


def changed_functions(reference: pathlib.Path, changed: pathlib.Path) -> set[str] | None:
    """The functions and methods (qualified names: `f`, `Class.method`) whose bodies alone differ
    between two versions of a file, or WHOLE_MODULE when anything else differs."""
    try:
        before = ast.parse(pathlib.Path(reference).read_text(encoding="utf-8"))
        after = ast.parse(pathlib.Path(changed).read_text(encoding="utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
        return WHOLE_MODULE
    names: set[str] = set()
    return names if _same_but_bodies(before.body, after.body, "", names) else WHOLE_MODULE


def _same_but_bodies(before: list[ast.stmt], after: list[ast.stmt], prefix: str, names: set[str]) -> bool:
    """Do two statement lists differ only inside function bodies? (Those functions go in `names`.)"""
    if len(before) != len(after):
        return False
    for old, new in zip(before, after):
        if type(old) is not type(new):
            return False
        if isinstance(old, (ast.FunctionDef, ast.AsyncFunctionDef)):
            if _header(old) != _header(new):
                return False  # a signature, default or decorator: seen without calling the function
            if _dump(old.body) != _dump(new.body):
                names.add(prefix + old.name)
        elif isinstance(old, ast.ClassDef):
            if _header(old) != _header(new) or not _same_but_bodies(old.body, new.body, f"{prefix}{old.name}.", names):
                return False
        elif ast.dump(old) != ast.dump(new):
            return False
    return True


def _header(node: ast.AST) -> str:
    """Everything of a def or class but its body."""
    return ast.dump(node.__class__(**{f: getattr(node, f, None) for f in node._fields if f != "body"}))


def _dump(statements: list[ast.stmt]) -> str:
    return "\n".join(ast.dump(s) for s in statements)


def unit_of(qualname: str) -> str:
    """The top-level function or method a code object belongs to (`f.<locals>.g` belongs to `f`)."""
    return qualname.split(".<locals>", 1)[0]


class CallRecorder:
    """A pytest plugin that records, for each test, the functions of the files in `folder` it runs
    (setup, call and teardown), as (module, unit_of(qualname)).

    What a fixture wider than one test runs counts for every test that uses it; what runs outside
    any test (collection, say), for every test. Python calls are seen through sys.settrace (call
    events only: the trace function returns None, so no line is traced), in every thread."""

    def __init__(self, folder: pathlib.Path):
        self.prefix = os.path.join(str(pathlib.Path(folder).resolve()), "")
        self.tests: dict[str, set[tuple[str, str]]] = {}
        self.fixtures: dict[str, set[tuple[str, str]]] = {}
        self.fixturenames: dict[str, list[str]] = {}
        self.outside: set[tuple[str, str]] = set()
        self._bucket = self.outside

    def _trace(self, frame, event, arg):
        code = frame.f_code
        if code.co_filename.startswith(self.prefix):
            self._bucket.add((pathlib.PurePath(code.co_filename).stem, unit_of(code.co_qualname)))
        return None

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionstart(self, session):
        threading.settrace(self._trace)
        sys.settrace(self._trace)

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session):
        sys.settrace(None)
        threading.settrace(None)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_protocol(self, item, nextitem):
        self.fixturenames[item.nodeid] = list(item.fixturenames)
        self._bucket = self.tests.setdefault(item.nodeid, set())
        try:
            return (yield)
        finally:
            self._bucket = self.outside

    @pytest.hookimpl(wrapper=True)
    def pytest_fixture_setup(self, fixturedef, request):
        if fixturedef.scope == "function":
            return (yield)
        previous, self._bucket = self._bucket, self.fixtures.setdefault(fixturedef.argname, set())
        try:
            return (yield)
        finally:
            self._bucket = previous

    def records(self) -> dict[str, set[tuple[str, str]]]:
        """{nodeid: the (module, function) pairs the test ran, its wider fixtures' and the outside's included}."""
        return {nodeid: set().union(calls, self.outside,
                                    *(self.fixtures.get(name, ()) for name in self.fixturenames[nodeid]))
                for nodeid, calls in self.tests.items()}


def changes(reference: pathlib.Path, folder: pathlib.Path,
            files: tuple[str, ...]) -> tuple[dict[str, list[str]], list[str]]:
    """What differs between two submission folders: ({module: functions whose bodies alone
    changed}, [files changed beyond function bodies])."""
    functions, whole = {}, []
    for name in files:
        if not changed_modules(reference, folder, (name,)):
            continue
        changed = changed_functions(reference / name, folder / name)
        if changed is WHOLE_MODULE:
            whole.append(name)
        else:
            functions[pathlib.PurePath(name).stem] = sorted(changed)
    return functions, whole


def tests_running(records: dict[str, set[tuple[str, str]]], functions: dict[str, list[str]]) -> list[str]:
    """The tests (node ids, in recorded order) that ran one of `functions` ({module: names})."""
    wanted = {(module, name) for module, names in functions.items() for name in names}
    return [nodeid for nodeid, calls in records.items() if calls & wanted]
