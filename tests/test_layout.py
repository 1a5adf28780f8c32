"""The house rules of autograder/ (README.md, "Layout"): which code may import which.

Each module of autograder/ stands on a level (LEVELS, top to bottom):

    1  entry points: cli.py, __main__.py, demo.py, mutants.py (the `mutants` command)
    2  grade/ (one grading run: intake, runner, events, results, batch), grader/ (grading
       inside the test process: the plugin's grading half, diagnosis) and regrade/ (a whole
       class on a Dask cluster: the `regrade` command)
    3  sandbox/ (the worker that runs student code: client, process, protocol, server)
    4  catalogue.py (the mutant catalogue), gradescope.py (results.json's format), starter/, build/
    5  kit/ (shipped to students whole, imported by tests), manifest.py, autograder/__init__.py

and the rules are:

- nothing imports a module of a level above its own (a smaller number);
- kit/ imports only kit/ (besides the standard library and third-party packages): the student zip
  ships it whole, with nothing else of ours; so do the student zip's templates
  (templates/student/: conftest.py, run_tests.py);
- sandbox/zygote.py, server.py, common.py and protocol.py (what the zygote and the worker run)
  import only kit/ and each other (zygote -> server -> common -> protocol): the worker holds no
  grader code and no grader state;
- no import cycle between autograder's modules.

Every import counts, absolute (`autograder.x`) or relative, at module level or inside a function
(a function-level import closes a cycle as surely, once the function runs: issue 12's cycle
grade/runner -> mutants -> grade/batch -> grade/runner went through two of them).
So does a pytest plugin a module loads by name (`pytest_plugins = ["autograder.kit.plugin"]`).
`from package import name` counts as importing the submodule `package.name` when there is one,
else `package` itself; importing a submodule does not count as importing the packages above it
(their `__init__.py`, which Python runs first and which often import their own submodules: that
is no cycle to report). Each `__init__.py` is checked as a module of its own.
A new module must be given a level here (the test fails until it is).
"""
from __future__ import annotations

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "autograder"

LEVELS = {
    "autograder.cli": 1, "autograder.__main__": 1, "autograder.demo": 1, "autograder.mutants": 1,
    "autograder.grade": 2, "autograder.grader": 2, "autograder.regrade": 2,
    "autograder.sandbox": 3,
    "autograder.catalogue": 4, "autograder.impact": 4, "autograder.gradescope": 4, "autograder.starter": 4,
    "autograder.build": 4,
    "autograder.kit": 5, "autograder.manifest": 5, "autograder": 5, "autograder.templates": 5,
}
KIT_ONLY = ("autograder.kit", "autograder.templates.student")  # what ships to students
KIT = ("autograder.kit",)
WORKER = {"autograder.sandbox.server": ("autograder.kit", "autograder.sandbox.protocol", "autograder.sandbox.common"),
          "autograder.sandbox.common": ("autograder.kit", "autograder.sandbox.protocol"),
          "autograder.sandbox.zygote": ("autograder.kit", "autograder.sandbox.server"),
          "autograder.sandbox.protocol": ("autograder.kit", "autograder.sandbox.protocol")}


def _within(module: str, prefixes) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def module_name(path: pathlib.Path, package: pathlib.Path) -> str:
    """autograder/grade/__init__.py -> autograder.grade; autograder/kit/plugin.py -> autograder.kit.plugin."""
    parts = (package.name, *path.relative_to(package).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules_of(package: pathlib.Path) -> dict[str, pathlib.Path]:
    """{module name: file} for every .py file under `package`."""
    return {module_name(path, package): path for path in sorted(package.rglob("*.py"))
            if "__pycache__" not in path.parts}


def _known(name: str, modules) -> str | None:
    """The longest prefix of dotted `name` that is one of `modules` (a.b.c -> a.b when a.b.c is
    a function or class of a.b)."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in modules:
            return candidate
    return None


def imports_of(module: str, path: pathlib.Path, modules) -> list[tuple[int, str]]:
    """(line, imported module) for every import of one of `modules` in `path`, wherever it is."""
    is_package = path.name == "__init__.py"
    here = module.split(".") if is_package else module.split(".")[:-1]  # the package relative imports start from
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, _known(alias.name, modules)) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - (node.level - 1)] if node.level - 1 <= len(here) else []
                base = ".".join(base + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                found.append((node.lineno, submodule if submodule in modules else _known(base, modules)))
        elif isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "pytest_plugins" for t in node.targets):
            names = [c.value for c in ast.walk(node.value) if isinstance(c, ast.Constant) and isinstance(c.value, str)]
            found += [(node.lineno, _known(name, modules)) for name in names]
    return [(line, target) for line, target in found if target is not None and target != module]


def _level(module: str) -> int | None:
    """The level of `module`: that of the longest LEVELS entry holding it ("autograder" is
    autograder/__init__.py alone, so a new top-level module has none)."""
    matches = [p for p in LEVELS if module == p or (p != PACKAGE.name and _within(module, [p]))]
    return LEVELS[max(matches, key=len)] if matches else None


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def violations(package: pathlib.Path) -> list[str]:
    """Every break of the house rules in `package` (an autograder/ folder), one line each."""
    modules = modules_of(package)
    problems, graph = [], {}
    for module, path in modules.items():
        where = path.relative_to(package.parent).as_posix()
        level = _level(module)
        if level is None:
            problems.append(f"{where}: {module} has no level: give it one in tests/test_layout.py's LEVELS "
                            "(and README.md's layout table)")
        for line, target in imports_of(module, path, modules):
            graph.setdefault(module, set()).add(target)
            if _within(module, KIT_ONLY) and not _within(target, KIT):
                problems.append(f"{where}:{line}: {module} ships to students, so it imports only kit/, "
                                f"not {target}")
            if module in WORKER and not _within(target, WORKER[module]):
                problems.append(f"{where}:{line}: {module} runs in the sandbox's worker, so it imports only "
                                f"{' and '.join(WORKER[module])}, not {target}")
            target_level = _level(target)
            if level is not None and target_level is not None and target_level < level:
                problems.append(f"{where}:{line}: {module} (level {level}) imports {target}, "
                                f"a level above it ({target_level})")
    problems += [f"import cycle: {' <-> '.join(cycle)}" for cycle in _cycles(graph)]
    return problems


def test_autograder_keeps_the_house_rules():
    assert violations(PACKAGE) == []


def test_the_rules_see_the_real_imports():
    """The checker reads this package's imports as they are (a checker that found none would pass)."""
    modules = modules_of(PACKAGE)
    runner = dict(imports_of("autograder.grade.runner", modules["autograder.grade.runner"], modules))
    assert {"autograder.catalogue", "autograder.manifest", "autograder.grade.events",
            "autograder.kit.messages", "autograder.sandbox.process"} <= set(runner.values())
    plugin = {t for _, t in imports_of("autograder.grader.plugin", modules["autograder.grader.plugin"], modules)}
    assert "autograder.sandbox.client" in plugin  # a function-level relative import
    assert "autograder.kit.plugin" in plugin  # pytest_plugins
    conftest = modules["autograder.templates.student.conftest"]
    assert "autograder.kit.fingerprints" in {t for _, t in imports_of("autograder.templates.student.conftest",
                                                                        conftest, modules)}


# A small package that keeps every rule; each case below breaks one.
CLEAN = {
    "__init__.py": "",
    "cli.py": "from .grade import run\nfrom . import mutants\n",
    "mutants.py": "from .catalogue import load\n",
    "catalogue.py": "from .manifest import Manifest\n",
    "manifest.py": "import json\n",
    "grade/__init__.py": "",
    "grade/run.py": "from ..sandbox import client\nfrom .. import catalogue\n\n"
                    "def f():\n    from ..kit import checks\n",
    "grader/__init__.py": "",
    "sandbox/__init__.py": "",
    "sandbox/client.py": "from . import protocol, server\n",
    "sandbox/server.py": "import torch\nfrom ..kit import checks\nfrom . import protocol\n",
    "sandbox/protocol.py": "import struct\n",
    "kit/__init__.py": "",
    "kit/checks.py": "import numpy\nfrom .messages import TEXT\nfrom autograder.kit import messages\n",
    "kit/messages.py": "TEXT = ''\n",
    "templates/student/conftest.py": "from autograder.kit import checks\n",
}


def _package(tmp_path, files: dict[str, str]) -> pathlib.Path:
    """An autograder/ folder in tmp_path: CLEAN, with `files` added or replaced."""
    for name, text in {**CLEAN, **files}.items():
        path = tmp_path / "autograder" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path / "autograder"


def test_a_package_that_keeps_the_rules_passes(tmp_path):
    assert violations(_package(tmp_path, {})) == []


def test_a_new_module_in_a_package_with_a_level_needs_nothing_more(tmp_path):
    assert violations(_package(tmp_path, {"grade/other.py": "from .run import f\n"})) == []


@pytest.mark.parametrize("file, text, expected", [
    ("kit/checks.py", "def f():\n    from ..grader import plugin\n",
     "kit/checks.py:2: autograder.kit.checks ships to students, so it imports only kit/, not autograder.grader"),
    ("kit/checks.py", "import autograder.sandbox.client\n", "imports only kit/, not autograder.sandbox.client"),
    ("kit/checks.py", "from autograder import manifest\n", "imports only kit/, not autograder.manifest"),
    ("kit/checks.py", "pytest_plugins = ['autograder.grader.plugin']\n", "imports only kit/, not autograder.grader"),
    ("templates/student/conftest.py", "from autograder.grade import run\n",
     "autograder.templates.student.conftest ships to students, so it imports only kit/, not autograder.grade.run"),
    ("sandbox/server.py", "from . import client\n",
     "sandbox/server.py:1: autograder.sandbox.server runs in the sandbox's worker, so it imports only "
     "autograder.kit and autograder.sandbox.protocol and autograder.sandbox.common, not autograder.sandbox.client"),
    ("sandbox/protocol.py", "from ..manifest import Manifest\n",
     "autograder.sandbox.protocol runs in the sandbox's worker, so it imports only autograder.kit and "
     "autograder.sandbox.protocol, not autograder.manifest"),
    ("catalogue.py", "def f():\n    from .grade.run import x\n",
     "autograder/catalogue.py:2: autograder.catalogue (level 4) imports autograder.grade.run, a level above it (2)"),
    ("sandbox/client.py", "from .. import mutants\n", "autograder.sandbox.client (level 3) imports autograder.mutants"),
    ("grade/run.py", "from ..sandbox import client\nfrom ..cli import main\n",
     "autograder/grade/run.py:2: autograder.grade.run (level 2) imports autograder.cli, a level above it (1)"),
    ("newthing.py", "x = 1\n", "autograder/newthing.py: autograder.newthing has no level"),
    ("mutants.py", "from .catalogue import load\nfrom . import cli\n",
     "import cycle: autograder.cli <-> autograder.mutants"),
    ("grade/run.py", "from ..sandbox import client\nfrom . import batch\n",
     "import cycle: autograder.grade.batch <-> autograder.grade.run"),
])
def test_each_rule_catches_its_break(tmp_path, file, text, expected):
    batch = {"grade/batch.py": "def f():\n    from .run import g\n"}  # half of a cycle through a function
    found = violations(_package(tmp_path, {**batch, file: text}))
    assert any(expected in line for line in found), found
