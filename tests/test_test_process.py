"""The grading run's test process (grade/runner.py, sandbox/launch.py), with and without the sandbox:

- it loads only the pytest plugins its command line names: a plugin installed with an entry
  point (here a fake one, on the test process's path) is not loaded, pytest-timeout is, and
  pytest's unraisable-exception plugin (two gc.collect() at the end) is not;
- it reads no conftest.py above the assignment's root (--confcutdir; nor does it list the
  folders above the root while collecting: /tmp's thousands of entries cost 0.1 s a run);
- its heap is frozen once the warm-up is done (gc.freeze: collections skip torch's objects);
- it ends without the interpreter's teardown (launch.end): atexit handlers run, a module
  global's finaliser does not, and pytest's exit status is the process's; torch's finalizers
  that unregister its operator libraries (about 140) do not run, other weakref finalizers do.
"""
import dataclasses
import json
import textwrap
import types

import pytest

from autograder import manifest as manifest_module
from autograder.grade.runner import run_tests


PROBE = '''
import atexit
import gc
import json
import os
import pathlib

import pytest

OUT = pathlib.Path(os.environ["PROBE_OUT"])


class Finalised:
    """Its finaliser runs when the interpreter tears its modules down (it keeps what it needs:
    by then the module's globals may be None)."""

    def __init__(self):
        self.os, self.path = os, str(OUT / "torn-down")

    def __del__(self):
        self.os.close(self.os.open(self.path, self.os.O_CREAT | self.os.O_WRONLY))


KEEP = Finalised()
atexit.register(lambda: (OUT / "atexit").write_text("atexit handlers ran"))


@pytest.mark.problem("self_attention")
def test_probe(request):
    plugins = request.config.pluginmanager
    (OUT / "probe.json").write_text(json.dumps({
        "frozen": gc.get_freeze_count(),
        "unraisableexception": plugins.has_plugin("unraisableexception"),
        "timeout": any(type(p).__module__ == "pytest_timeout" or getattr(p, "__name__", "") == "pytest_timeout"
                       for p in plugins.get_plugins()),
        "autoloaded": plugins.has_plugin("probe_autoloaded"),
    }))


@pytest.mark.problem("causal_mask")
def test_that_fails():
    assert False
'''

ENTRY_POINT_PLUGIN = '''
import os
import pathlib

(pathlib.Path(os.environ["PROBE_OUT"]) / "autoloaded").write_text("an entry-point plugin was loaded")
'''


@pytest.mark.parametrize("sandbox", [True, False], ids=["sandbox", "no-sandbox"])
def test_the_test_process_loads_named_plugins_freezes_its_heap_and_ends_at_once(tmp_path, copy_root,
                                                                                monkeypatch, sandbox):
    root = copy_root(tmp_path / "root")
    (tmp_path / "conftest.py").write_text("raise SystemExit('a conftest.py above the root was read')\n")
    (root / "tests_probe").mkdir()
    (root / "tests_probe" / "test_probe.py").write_text(textwrap.dedent(PROBE))
    # a plugin installed with an entry point, on the test process's path (PYTHONPATH is the root)
    (root / "probe_autoloaded.py").write_text(ENTRY_POINT_PLUGIN)
    info = root / "probe_autoloaded-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: probe-autoloaded\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[pytest11]\nprobe_autoloaded = probe_autoloaded\n")
    out = tmp_path / "out"
    out.mkdir(mode=0o777)
    monkeypatch.setenv("PROBE_OUT", str(out))
    probe_folder = manifest_module.TestFolder("tests_probe", public=False, visibility="visible")
    manifest = dataclasses.replace(manifest_module.load("transformer", root), tests=(probe_folder,))
    submission = manifest.path(manifest.reference)
    workdir = tmp_path / "work"
    workdir.mkdir()

    run = run_tests(manifest, submission, workdir, sandbox=sandbox)

    assert {nodeid.split("::")[1]: o.passed for nodeid, o in run.outcomes.items()} == \
        {"test_probe": True, "test_that_fails": False}
    probe = json.loads((out / "probe.json").read_text())
    assert probe == {"frozen": probe["frozen"], "unraisableexception": False, "timeout": True, "autoloaded": False}
    assert probe["frozen"] > 0
    assert not (out / "autoloaded").exists()
    assert (out / "atexit").exists()
    assert not (out / "torn-down").exists()
    assert run.log[0].startswith("child 0: exit 1,"), run.log[0][:300]   # pytest's status: a test failed


FINALIZERS = '''
import sys, weakref
import torch
from autograder.sandbox import launch

library = torch.library.Library("probe_finalizers", "DEF")  # torch unregisters it in a finalizer


class Kept:
    pass


kept = Kept()
weakref.finalize(kept, lambda: open(sys.argv[1], "w").write("ran"))  # a finalizer of our own
launch._skip_torch_library_finalizers()
pending = [(info.func.__name__, finalizer.atexit) for finalizer, info in weakref.finalize._registry.items()]
assert ("_del_library", False) in pending and ("_del_library", True) not in pending, pending
assert ("<lambda>", True) in pending, pending
launch.end(3)
'''


def test_the_test_process_ends_without_unregistering_torchs_libraries_but_runs_other_finalizers(tmp_path):
    import subprocess
    import sys

    out = tmp_path / "finalized"
    done = subprocess.run([sys.executable, "-c", FINALIZERS, str(out)], capture_output=True, text=True,
                          cwd=manifest_module.ROOT)
    assert done.returncode == 3, done.stderr[-2000:]
    assert out.read_text() == "ran"


GROUPED_PROBE = '''
import json
import os
import pathlib

import pytest


def record(request, student, module, name):
    getattr(getattr(student, module), name)  # imports the file in the worker
    worker = request.config._autograder_remote.sandbox.worker
    with open(pathlib.Path(os.environ["PROBE_OUT"]) / "order.jsonl", "a") as out:
        out.write(json.dumps([request.node.name, worker.pid]) + "\\n")


@pytest.mark.problem("causal_mask")
def test_attention_{folder}(request, student):
    record(request, student, "attention", "causal_mask")


@pytest.mark.problem("attach_attention_hook")
def test_debugging_{folder}(request, student):
    record(request, student, "debugging", "attach_attention_hook")


@pytest.mark.problem("lm_loss")
def test_model_{folder}(request, student):
    record(request, student, "model", "lm_loss")
'''


def test_the_tests_run_grouped_by_the_file_they_grade_each_after_the_files_it_imports(tmp_path, copy_root,
                                                                                   monkeypatch):
    """The reference's debugging.py imports attention.py, model.py imports neither: the tests run
    model's (public, then hidden), attention's, debugging's, in two sandbox workers (a fresh one
    when the tests move to a file that does not import what the worker has imported), where the
    folders' order (attention, debugging, model, twice) would take six."""
    root = copy_root(tmp_path / "root")
    folders = []
    for folder, public in [("public", True), ("hidden", False)]:
        (root / f"tests_{folder}_probe").mkdir()
        probe = GROUPED_PROBE.replace("{folder}", folder)
        (root / f"tests_{folder}_probe" / f"test_probe_{folder}.py").write_text(probe)
        folders.append(manifest_module.TestFolder(f"tests_{folder}_probe", public=public, visibility="visible"))
    out = tmp_path / "out"
    out.mkdir(mode=0o777)
    monkeypatch.setenv("PROBE_OUT", str(out))
    manifest = dataclasses.replace(manifest_module.load("transformer", root), tests=tuple(folders))
    workdir = tmp_path / "work"
    workdir.mkdir()

    run = run_tests(manifest, manifest.path(manifest.reference), workdir)

    assert all(o.passed for o in run.outcomes.values()), run.log
    order = [json.loads(line) for line in (out / "order.jsonl").read_text().splitlines()]
    assert [name for name, _ in order] == ["test_model_public", "test_model_hidden", "test_attention_public",
                                           "test_attention_hidden", "test_debugging_public", "test_debugging_hidden"]
    assert len({pid for _, pid in order}) == 2


def test_file_order_puts_each_file_after_the_files_it_imports_and_survives_cycles_and_missing_files(tmp_path):
    from autograder.grader.plugin import file_order

    (tmp_path / "a.py").write_text("import b\n")
    (tmp_path / "b.py").write_text("from a import x\n")         # a cycle: a, b
    (tmp_path / "c.py").write_text("import d\nimport numpy\n")  # d.py is not submitted: c imports no file
    (tmp_path / "e.py").write_text("def broken(:\n")            # imports nothing it can be read to import
    (tmp_path / "f.py").write_text("import e\n")
    assert file_order(tmp_path, ["e.py", "a.py", "c.py", "d.py", "f.py"]) == ["a.py", "c.py", "d.py", "e.py", "f.py"]
    assert file_order(tmp_path, ["b.py", "a.py"]) == ["a.py", "b.py"]


def test_tests_keep_the_folders_order_when_the_files_cannot_be_read_for_their_imports(monkeypatch, tmp_path):
    """The grouping only saves forks: if reading the submitted files fails, the tests run in the
    folders' order, and the grade is the same."""
    from autograder.grader import plugin

    class Config:
        rootpath = tmp_path

        def getoption(self, name):
            return {"--files": json.dumps({"lm_loss": "model.py", "causal_mask": "attention.py"}),
                    "--submission": str(tmp_path)}[name]

    class Item:
        def __init__(self, problem):
            self.problem = problem

        def iter_markers(self, name):
            return [types.SimpleNamespace(args=(self.problem,))] if name == "problem" else []

    def unreadable(folder, files):
        raise RecursionError("a file nested too deeply")

    items = [Item("causal_mask"), Item("lm_loss"), Item("causal_mask")]
    monkeypatch.setattr(plugin, "file_order", unreadable)
    unchanged = list(items)
    plugin._group_by_file(Config(), items)
    assert items == unchanged
    monkeypatch.undo()
    (tmp_path / "model.py").write_text("import attention\n")
    (tmp_path / "attention.py").write_text("")
    plugin._group_by_file(Config(), items)
    assert [item.problem for item in items] == ["causal_mask", "causal_mask", "lm_loss"]
