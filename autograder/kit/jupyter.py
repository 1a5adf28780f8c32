"""The handout notebook's checker, in the student's kernel (Jupyter or Colab).

The notebook's setup cell unpacks the student zip's support files (this kit, the public tests,
run_tests.py, conftest.py, problems.json, fingerprints.json, requirements.txt) and notebook.json
(the handout's cells: which file each belongs to, the names it defines, its starter text) into a
folder beside the notebook, then calls `setup(folder)`:

- on Colab it pip-installs the student requirements that are missing; torch never (Colab has its
  own: a different version is reported, not replaced). Locally it installs nothing;
- it registers two IPython hooks. After a cell whose first line is the marker `# file: NAME.py`
  runs (kit/notebook.py; Colab does not show cell metadata to the kernel), the recorder keeps
  its text, keyed by the handout cell it stands for: the one defining the same functions and
  classes (ast). Before a cell that imports a submitted module (`from attention import ...`),
  the files are written out and the module is forgotten, so the import reads the notebook's code;
- on Linux it starts a warm test server: a process that imports torch and pytest once and forks
  a fresh child for every check (elsewhere each check starts a new Python).

`check(problem)` rebuilds the submitted files (the handout's cells in order: the latest version
run of each, the starter's text for a cell never run, cut into files by kit/notebook.assemble as
the grader cuts a submitted notebook), writes them into the folder and runs that problem's public
tests (run_tests.py --problem) in that fresh process, with a time limit: a crash, os._exit or an
endless loop in student code never reaches the kernel. It returns a `Report`, shown as a compact
table (HTML in Jupyter, text elsewhere) with the public tests' own messages. `check_all()` runs
every problem and shows the points table.

Standard library only at import: the kernel imports this before anything is installed.
"""
from __future__ import annotations

import ast
import dataclasses
import html
import importlib
import importlib.util
import json
import os
import pathlib
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from . import messages, notebook

LAYOUT_FILE = "notebook.json"
STUB_MESSAGE = re.compile(r"NotImplementedError: ([\w.]+): not implemented yet")
EXTRA_S = 30          # a check's time limit beyond its tests' own (starting pytest, collecting)
SERVER_START_S = 120  # the warm server's first import of torch (a cold Colab disk is slow)
_STATE: dict = {}     # the kernel's checker: {"folder", "layout", "recorder", "runner"}


# ---- what a cell defines ----

def defined_names(source: str) -> tuple[set[str], set[str]]:
    """(functions and classes, every other top-level name: imports, assignments) a cell defines."""
    code, _ = notebook.python_of(source)
    defs: set[str] = set()
    other: set[str] = set()
    try:
        tree = ast.parse(code or "")
    except SyntaxError:  # still recognise the cell by its def/class lines
        defs = set(re.findall(r"^(?:async\s+def|def|class)\s+(\w+)", code or "", flags=re.M))
        return defs, other
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            defs.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            other.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            other.update(n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name))
    return defs, other


def marked_file(source: str) -> str | None:
    """The submitted file a cell's first line names (`# file: attention.py`), or None."""
    return notebook.cell_file({"cell_type": "code", "source": source, "metadata": {}})


def imported_modules(source: str) -> set[str]:
    """Top-level module names a cell imports."""
    code, _ = notebook.python_of(source)
    try:
        tree = ast.parse(code or "")
    except SyntaxError:
        return set()
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module.split(".")[0])
    return found


# ---- the recorder: the latest version of each handout cell ----

class Recorder:
    """The handout's cells (notebook.json's "cells": {"file", "defs", "names", "source"}) and
    the latest text run for each; a marked cell that stands for none of them (a helper of the
    student's own) is kept too, after the handout cell of its file run last before it."""

    def __init__(self, cells: list[dict], files: list[str]):
        self.cells = cells
        self.files = list(files)
        self.latest: dict[int, str] = {}
        self.extra: list[tuple[int, str, str]] = []  # (anchor cell, key, source)

    def match(self, file: str, source: str) -> int | None:
        """The handout cell `source` stands for: same file, sharing a function or class (or,
        for a cell without any, most of the given cell's imported names); None if none."""
        defs, other = defined_names(source)
        best, score = None, 0
        for index, cell in enumerate(self.cells):
            if cell["file"] != file:
                continue
            shared = len(defs & set(cell["defs"]))
            if shared:
                points = 1000 * shared
            elif not defs and cell["names"] and 2 * len(other & set(cell["names"])) >= len(cell["names"]):
                points = len(other & set(cell["names"]))
            else:
                points = 0
            if points > score:
                best, score = index, points
        return best

    def record(self, source: str) -> int | None:
        """Keep a cell that just ran, if it is marked for a submitted file (each part of a cell
        that merged cells of several files: notebook.parts_of); its (first part's) handout index."""
        indexes = [self._record_part(part) for part in notebook.parts_of(source)]
        return indexes[0]

    def _record_part(self, source: str) -> int | None:
        file = marked_file(source)
        if file is None or file not in self.files:
            return None
        index = self.match(file, source)
        if index is not None:
            self.latest[index] = source
            return index
        defs, _ = defined_names(source)
        key = f"{file}:{','.join(sorted(defs))}" if defs else f"{file}:{source}"
        kept = [e for e in self.extra if e[1] == key]
        if kept:
            self.extra = [(a, k, source if k == key else s) for a, k, s in self.extra]
        else:
            self.extra.append((self._anchor(file), key, source))
        return None

    def _anchor(self, file: str) -> int:
        ran = [i for i in self.latest if self.cells[i]["file"] == file]
        return max(ran) if ran else min(i for i, c in enumerate(self.cells) if c["file"] == file)

    def sources(self) -> list[str]:
        """Every cell's text in handout order: the latest run, else the starter's; extras after
        their anchor."""
        out = []
        for index, cell in enumerate(self.cells):
            out.append(self.latest.get(index, cell["source"]))
            out.extend(source for anchor, _, source in self.extra if anchor == index)
        return out

    def files_now(self) -> dict[str, str]:
        cells = [{"cell_type": "code", "source": s, "metadata": {}} for s in self.sources()]
        return notebook.assemble(cells, self.files).files

    def never_run(self, problem: str) -> list[str]:
        """The cells of `problem` (the stubs defining its name) that were never run."""
        return [", ".join(c["defs"]) for i, c in enumerate(self.cells)
                if c.get("stub") and problem in c["defs"] and i not in self.latest]


# ---- running the public tests in a fresh process ----

def serve() -> None:
    """The warm test server (Linux): import torch, pytest and the manifest's `preload` once (the
    assignment's own heavy imports, from notebook.json), then for each request (a JSON
    line on stdin: {"args", "log", "timeout"}) fork a child that runs run_tests.py's main, and
    answer {"rc", "signal", "timed_out"} when it ends or is killed at its time limit."""
    try:
        preload = json.loads(pathlib.Path(LAYOUT_FILE).read_text(encoding="utf-8")).get("preload", [])
    except (OSError, ValueError):
        preload = []
    for entry in ("torch", "numpy", "pytest", "autograder.kit.plugin", "autograder.kit.fingerprints", *preload):
        module, _, attribute = entry.partition(":")  # "transformers:Trainer": a lazily loaded class
        try:
            loaded = importlib.import_module(module)
            if attribute:
                getattr(loaded, attribute)
        except Exception:  # noqa: BLE001 - what fails to preload fails again, and is reported, in the check
            pass
    from importlib import metadata

    for entry in metadata.entry_points(group="pytest11"):  # pytest loads these plugins at every start
        try:
            entry.load()
        except Exception:  # noqa: BLE001 - a plugin that fails here fails the same way in the child
            pass
    import run_tests  # the folder's runner: cwd and sys.path are the folder

    print("ready", flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        print(json.dumps(_fork_run(run_tests.main, request)), flush=True)


def _fork_run(main, request: dict) -> dict:
    with open(request["log"], "wb") as log:
        pid = os.fork()
        if pid == 0:  # the child: its output goes to the log, never to the server's answers
            code = 1
            try:
                os.dup2(log.fileno(), 1)
                os.dup2(log.fileno(), 2)
                code = main(request["args"])
            except BaseException:  # noqa: BLE001 - the child must end with os._exit whatever happens
                import traceback

                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code if isinstance(code, int) else 1)
    deadline = time.monotonic() + request["timeout"]
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return {"rc": None, "signal": signal.SIGKILL, "timed_out": True}
        time.sleep(0.02)
    if os.WIFSIGNALED(status):
        return {"rc": None, "signal": os.WTERMSIG(status), "timed_out": False}
    return {"rc": os.WEXITSTATUS(status), "signal": None, "timed_out": False}


SERVE = "from autograder.kit import jupyter; jupyter.serve()"


class Runner:
    """Runs run_tests.py with arguments in a fresh process: a child forked by the warm server
    where there is fork (Linux), else a new Python."""

    def __init__(self, folder: pathlib.Path, warm: bool | None = None):
        self.folder = folder
        self.warm = sys.platform.startswith("linux") if warm is None else warm
        self.server: subprocess.Popen | None = None
        self.ready = False

    def _env(self) -> dict:
        env = dict(os.environ, PYTHONPATH=str(self.folder))
        env.pop("PYTHONDONTWRITEBYTECODE", None)  # the tests' rewritten bytecode is kept: faster checks
        env.pop("MPLBACKEND", None)  # the kernel's inline backend means nothing in a test process
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            env.setdefault(name, "1")
        return env

    def start(self) -> None:
        if self.warm and (self.server is None or self.server.poll() is not None):
            self.server = subprocess.Popen([sys.executable, "-c", SERVE], cwd=self.folder, env=self._env(),
                                           stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                           stderr=subprocess.DEVNULL, text=True)
            self.ready = False

    def _readline(self, timeout: float) -> str | None:
        ready, _, _ = select.select([self.server.stdout], [], [], max(0.0, timeout))
        return self.server.stdout.readline() if ready else None

    def run(self, args: list[str], log: pathlib.Path, timeout: float) -> dict:
        if not self.warm:
            return self._run_cold(args, log, timeout)
        self.start()
        if not self.ready:
            if self._readline(SERVER_START_S) != "ready\n":
                self.stop()
                return self._run_cold(args, log, timeout)
            self.ready = True
        try:
            self.server.stdin.write(json.dumps({"args": args, "log": str(log), "timeout": timeout}) + "\n")
            self.server.stdin.flush()
            answer = self._readline(timeout + EXTRA_S)
        except OSError:
            answer = None
        if not answer:  # the server itself is gone or stuck: a new one next time
            self.stop()
            return {"rc": None, "signal": None, "timed_out": True}
        return json.loads(answer)

    def _run_cold(self, args: list[str], log: pathlib.Path, timeout: float) -> dict:
        with open(log, "wb") as out:
            try:
                done = subprocess.run([sys.executable, str(self.folder / "run_tests.py"), *args], cwd=self.folder,
                                      env=self._env(), stdout=out, stderr=subprocess.STDOUT, timeout=timeout)
            except subprocess.TimeoutExpired:
                return {"rc": None, "signal": None, "timed_out": True}
        if done.returncode < 0:
            return {"rc": None, "signal": -done.returncode, "timed_out": False}
        return {"rc": done.returncode, "signal": None, "timed_out": False}

    def stop(self) -> None:
        if self.server is not None:
            if self.server.poll() is None:
                self.server.kill()
            self.server.wait()
            self.server = None
            self.ready = False


# ---- results ----

@dataclasses.dataclass
class TestRow:
    name: str
    doc: str
    problems: list[str]
    status: str          # passed, failed, not implemented yet, timed out, crashed, not run
    message: str = ""
    fraction: float = 1.0


@dataclasses.dataclass
class ProblemRow:
    name: str
    points: float
    public: int
    hidden: int
    tests: list[TestRow]

    @property
    def passed(self) -> int:
        return sum(t.status == "passed" for t in self.tests)

    @property
    def share(self) -> float:
        """The points the public tests carry (points are split over public and hidden tests)."""
        return self.points * self.public / max(1, self.public + self.hidden)

    @property
    def earned(self) -> float:
        return self.points * sum(t.fraction for t in self.tests if t.status == "passed") / max(
            1, self.public + self.hidden)

    @property
    def status(self) -> str:
        if self.tests and all(t.status == "passed" for t in self.tests):
            return "passed"
        if any(t.status == messages.NB_NOT_IMPLEMENTED for t in self.tests):
            return messages.NB_NOT_IMPLEMENTED
        return "failed" if self.tests else "no public test"


def _number(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".")


@dataclasses.dataclass
class Report:
    """What a check found: one row per problem, each with its public tests; `notes` first."""
    problems: list[ProblemRow]
    notes: list[str]
    full: bool  # check_all: the points table of every problem

    def text(self) -> str:
        lines = list(self.notes)
        width = max([len("problem"), *(len(p.name) for p in self.problems)]) + 2
        lines.append(f"{'problem':<{width}}{'tests':>8}  {'points':>13}  {'of':>5}  status")
        for p in self.problems:
            lines.append(f"{p.name:<{width}}{p.passed:>4} / {len(p.tests):<2}  {_number(p.earned):>6} / "
                         f"{_number(p.share):<5}  {_number(p.points):>5}  {p.status}")
            if not self.full:
                for t in p.tests:
                    mark = "ok  " if t.status == "passed" else "FAIL"
                    lines.append(f"  {mark} {t.name}" + ("" if t.status == "passed" else f": {t.status}"))
                    if t.message and t.status != "passed":
                        lines.extend("         " + m for m in t.message.splitlines())
        if self.full:
            earned, share = sum(p.earned for p in self.problems), sum(p.share for p in self.problems)
            points = sum(p.points for p in self.problems)
            passed, run = sum(p.passed for p in self.problems), sum(len(p.tests) for p in self.problems)
            lines.append(f"{'total':<{width}}{passed:>4} / {run:<2}  {_number(earned):>6} / {_number(share):<5}  "
                         f"{_number(points):>5}")
            lines.append(messages.NB_POINTS_NOTE)
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.text()

    def _repr_html_(self) -> str:
        e = html.escape
        notes = "".join(f"<p style='color:#a15c00'>{e(n)}</p>" for n in self.notes)
        rows = []
        for p in self.problems:
            color = {"passed": "#1a7f37", messages.NB_NOT_IMPLEMENTED: "#6e7781"}.get(p.status, "#cf222e")
            rows.append(f"<tr><td><b>{e(p.name)}</b></td><td>{p.passed} / {len(p.tests)}</td>"
                        f"<td>{_number(p.earned)} / {_number(p.share)}</td><td>{_number(p.points)}</td>"
                        f"<td style='color:{color}'>{e(p.status)}</td></tr>")
            if not self.full:
                for t in p.tests:
                    mark = "&#10004;" if t.status == "passed" else "&#10008;"
                    message = f"<pre style='margin:0;white-space:pre-wrap'>{e(t.message)}</pre>" if (
                        t.message and t.status != "passed") else ""
                    rows.append(f"<tr><td colspan=5 style='text-align:left;padding-left:1.5em'>{mark} "
                                f"{e(t.doc or t.name)}{'' if t.status == 'passed' else ': ' + e(t.status)}"
                                f"{message}</td></tr>")
        if self.full:
            rows.append(f"<tr><td><b>total</b></td><td>{sum(p.passed for p in self.problems)} / "
                        f"{sum(len(p.tests) for p in self.problems)}</td>"
                        f"<td>{_number(sum(p.earned for p in self.problems))} / "
                        f"{_number(sum(p.share for p in self.problems))}</td>"
                        f"<td>{_number(sum(p.points for p in self.problems))}</td><td></td></tr>")
        note = f"<p style='font-size:smaller'>{e(messages.NB_POINTS_NOTE)}</p>" if self.full else ""
        return (f"{notes}<table><tr><th>problem</th><th>public tests</th><th>points</th><th>of</th>"
                f"<th>status</th></tr>{''.join(rows)}</table>{note}")


def _message(event: dict) -> tuple[str, str]:
    """(status, message) of a failed test's result event."""
    summary = event.get("summary") or ""
    stub = STUB_MESSAGE.search(summary)
    if stub:
        return messages.NB_NOT_IMPLEMENTED, f"{stub.group(1)}: {messages.NB_NOT_IMPLEMENTED}"
    parts = [summary, event.get("details") or ""]
    if event.get("diagnosis"):
        parts.append(messages.DIAGNOSIS.format(diagnosis=event["diagnosis"]))
    status = "timed out" if event.get("timed_out") else "failed"
    return status, "\n".join(p for p in parts if p)


def read_report(path: pathlib.Path, problems: list[dict], outcome: dict, output: str, timeout: float) -> Report:
    """The run's report (the plugin's JSON lines) as a Report over `problems` (problems.json's rows)."""
    events = []
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                events.append(json.loads(line))
            except ValueError:
                continue  # a line cut by a crash
    collected = next((e["tests"] for e in events if e.get("event") == "collected"), [])
    results = {e["nodeid"]: e for e in events if e.get("event") == "result"}
    started = {e["nodeid"] for e in events if e.get("event") == "start"}
    notes = []
    lost = started - set(results)  # a test that began and never ended: the process died in it
    if outcome.get("timed_out"):
        notes.append(messages.NB_CHECK_TIMEOUT.format(seconds=timeout))
    elif outcome.get("signal") or not collected or lost:
        how = f"signal {outcome['signal']}" if outcome.get("signal") else f"exit code {outcome.get('rc')}"
        notes.append(messages.NB_CHECK_CRASHED.format(how=how, output=output[-3000:].strip()))
    rows = []
    for problem in problems:
        tests = []
        for test in collected:
            if problem["name"] not in test["problems"]:
                continue
            event = results.get(test["nodeid"])
            row = TestRow(test["name"], test.get("doc") or "", test["problems"], "passed")
            if event is None:
                row.status = ("timed out" if outcome.get("timed_out") else "crashed") if test["nodeid"] in started \
                    else "not run"
                row.message = messages.NB_TEST_CRASHED if row.status == "crashed" else ""
            elif event["outcome"] != "passed":
                row.status, row.message = _message(event)
            row.fraction = float(event.get("fraction", 1.0)) if event else 0.0
            tests.append(row)
        rows.append(ProblemRow(problem["name"], problem["points"], problem["public_tests"], problem["hidden_tests"],
                               tests))
    return Report(rows, notes, full=len(problems) > 1)


# ---- the kernel side ----

def load_layout(folder: pathlib.Path) -> dict:
    return json.loads((folder / LAYOUT_FILE).read_text(encoding="utf-8"))


def requirements_to_install(requirements: str, version_of) -> tuple[list[str], str | None]:
    """(pip requirement lines to install, a note on torch) for Colab: a pinned package that is not
    installed at all is installed; one installed in another version is kept; torch is never
    installed, only its version compared. `version_of(name)` gives a distribution's version or None."""
    install, note = [], None
    for line in requirements.splitlines():
        line = line.split("#")[0].strip()
        if not line:
            continue
        name, _, want = line.partition("==")
        name, want = name.strip(), want.split(";")[0].strip()
        have = version_of(name)
        if name == "torch":
            if have is not None and want and have.split("+")[0] != want:
                note = messages.NB_TORCH_VERSION.format(have=have, want=want)
        elif have is None:
            install.append(line)
    return install, note


def _version_of(name: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def install_missing(folder: pathlib.Path) -> list[str]:
    """On Colab: pip-install the requirements Colab lacks; report torch's version."""
    requirements = (folder / "requirements.txt").read_text(encoding="utf-8")
    install, note = requirements_to_install(requirements, _version_of)
    if note:
        print(note)
    if install:
        print(messages.NB_INSTALLING.format(names=", ".join(install)))
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", *install], check=False)
        importlib.invalidate_caches()
    return install


def _shell():
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    return get_ipython()


def setup(folder, *, colab: bool | None = None, warm: bool | None = None) -> None:
    """Install what Colab lacks, then register the recorder hooks and start the test server."""
    folder = pathlib.Path(folder).resolve()
    if colab if colab is not None else "google.colab" in sys.modules:
        install_missing(folder)
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
    layout = load_layout(folder)
    old = _STATE.get("runner")
    if old is not None:
        old.stop()
    recorder = Recorder(layout["cells"], layout["files"])
    runner = Runner(folder, warm)
    _STATE.update(folder=folder, layout=layout, recorder=recorder, runner=runner)
    shell = _shell()
    if shell is not None:
        for event, callback in getattr(shell, "_autograder_hooks", []):
            try:
                shell.events.unregister(event, callback)
            except ValueError:
                pass
        shell._autograder_hooks = [("pre_run_cell", _pre_run_cell), ("post_run_cell", _post_run_cell)]
        for event, callback in shell._autograder_hooks:
            shell.events.register(event, callback)
    runner.start()  # torch loads while the student reads
    print(f"Ready: {len(layout['files'])} files, {len(layout['problems'])} problems. Edit and run the cells "
          f"marked `# file: ...`, then run the check cells.")


def _raw_cell(info) -> str:
    return getattr(info, "raw_cell", None) or ""


def _pre_run_cell(info) -> None:
    """Before a cell imports a submitted module: write the files, forget the module."""
    source = _raw_cell(info)
    modules = {f[:-3] for f in _STATE["layout"]["files"]} & imported_modules(source)
    if modules:
        write_files()
        for name in modules:
            sys.modules.pop(name, None)
        importlib.invalidate_caches()


def _post_run_cell(result) -> None:
    _STATE["recorder"].record(_raw_cell(getattr(result, "info", None)))


def record(source: str) -> int | None:
    """Record a cell's text as if it had just run (where there is no IPython)."""
    return _STATE["recorder"].record(source)


def write_files() -> dict[str, str]:
    """Write the submitted files into the folder; drop their bytecode (a file rewritten within the
    same second with the same size would pass for unchanged)."""
    shutil.rmtree(_STATE["folder"] / "__pycache__", ignore_errors=True)
    files = _STATE["recorder"].files_now()
    for name, code in files.items():
        path = _STATE["folder"] / name
        if not path.is_file() or path.read_text(encoding="utf-8") != code:
            path.write_text(code, encoding="utf-8")
    return files


def _run(names: list[str]) -> Report:
    layout, runner, folder = _STATE["layout"], _STATE["runner"], _STATE["folder"]
    problems = [p for p in json.loads((folder / "problems.json").read_text(encoding="utf-8"))["problems"]
                if p["name"] in names]
    write_files()
    timeout = layout["test_timeout_s"] * max(1, sum(p["public_tests"] for p in problems)) + EXTRA_S
    with tempfile.TemporaryDirectory(prefix="check-") as tmp:
        report, log = pathlib.Path(tmp) / "report.jsonl", pathlib.Path(tmp) / "output.txt"
        args = ["-q", "-p", "no:warnings", "--report", str(report), *(a for n in names for a in ("--problem", n))]
        if importlib.util.find_spec("pytest_timeout") is not None:
            args += ["--timeout", str(layout["test_timeout_s"])]
        outcome = runner.run(args, log, timeout)
        output = log.read_text(encoding="utf-8", errors="replace") if log.exists() else ""
        result = read_report(report, problems, outcome, output, timeout)
    result.full = len(names) > 1
    if len(names) == 1 and _STATE["recorder"].never_run(names[0]):
        result.notes.append(messages.NB_NEVER_RUN.format(name=names[0], file=layout["problems"][names[0]]))
    return result


def check(problem: str) -> Report:
    """Run one problem's public tests on the notebook's code: a table of its tests and messages."""
    if "layout" not in _STATE:
        raise RuntimeError(messages.NB_NO_SETUP)
    known = list(_STATE["layout"]["problems"])
    if problem not in known:
        raise ValueError(messages.NB_UNKNOWN_PROBLEM.format(name=problem, names=", ".join(known)))
    return _run([problem])


def check_all() -> Report:
    """Run every problem's public tests: the points table."""
    if "layout" not in _STATE:
        raise RuntimeError(messages.NB_NO_SETUP)
    return _run(list(_STATE["layout"]["problems"]))
