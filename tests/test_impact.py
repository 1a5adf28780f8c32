"""The mutant checks' shortcut (autograder/impact.py): which tests a change can affect."""
import json
import os
import pathlib
import subprocess
import sys
import textwrap

import pytest

from autograder import manifest as manifest_module
from autograder import impact
from autograder.grade.runner import child_env, pytest_command

ROOT = pathlib.Path(__file__).resolve().parent.parent
MODULES = {"attention", "model", "debugging"}


def reached(tmp_path, source: str):
    path = tmp_path / "test_x.py"
    path.write_text(textwrap.dedent(source))
    return impact.modules_reached(path, MODULES)


def test_attributes_of_student_name_modules(tmp_path):
    assert reached(tmp_path, """
        def test_a(student):
            student.attention.causal_mask(3)
            getattr(student.model, "Block")
    """) == {"attention", "model"}


def test_student_given_to_a_function_of_the_file_is_followed(tmp_path):
    assert reached(tmp_path, """
        def _pair(sub, reference, name):
            return getattr(sub.model, name)
        def test_a(student, reference):
            _pair(student, reference, "Block")
    """) == {"model"}


def test_isolate_markers_and_module_calls_count(tmp_path):
    assert reached(tmp_path, """
        import pytest
        @pytest.mark.isolate("debugging", "MultiHeadAttention")
        def test_a(student):
            student.module("attention")
    """) == {"attention", "debugging"}


@pytest.mark.parametrize("use", ["getattr(student, name)", "helper_elsewhere(student)", "keep = student",
                                 "student.module(name)", "pytest.mark.isolate(name)"])
def test_any_other_use_may_reach_every_module(tmp_path, use):
    assert reached(tmp_path, f"""
        import pytest
        def test_a(student, name):
            {use}
    """) is impact.EVERY_MODULE


def test_imports_are_followed_in_both_folders(tmp_path):
    ref, mutant = tmp_path / "ref", tmp_path / "mutant"
    ref.mkdir(), mutant.mkdir()
    (ref / "model.py").write_text("import torch\n")
    (mutant / "model.py").write_text("from attention import causal_mask\n")
    (ref / "attention.py").write_text("import debugging\n")
    assert impact.import_closure({"model"}, [ref, mutant], MODULES) == {"model", "attention", "debugging"}


def test_only_test_files_that_reach_a_changed_file_are_affected(tmp_path):
    ref, mutant, tests = tmp_path / "ref", tmp_path / "mutant", tmp_path / "tests"
    for folder in (ref, mutant, tests):
        folder.mkdir()
    for name in ("attention.py", "model.py"):
        (ref / name).write_text("x = 1\n")
        (mutant / name).write_text("x = 1\n")
    (tests / "test_a.py").write_text("def test_a(student):\n    student.attention.x\n")
    (tests / "test_m.py").write_text("def test_m(student):\n    student.model.x\n")
    files = ("attention.py", "model.py")
    test_files = sorted(tests.glob("test_*.py"))
    assert impact.affected_test_files(test_files, ref, mutant, files) == []
    (mutant / "attention.py").write_text("x = 2\n")
    assert impact.affected_test_files(test_files, ref, mutant, files) == [tests / "test_a.py"]
    (mutant / "model.py").write_text("from attention import x\n")  # model now reaches attention too
    assert impact.affected_test_files(test_files, ref, mutant, files) == test_files


RECORDER = '''
import pytest
from autograder.kit import adapter

SEEN = {}
_module = adapter.Submission.module

def module(self, name):
    test = getattr(pytest, "_impact_current", None)
    if test is not None and self._record:  # the student's submission (the reference records no calls)
        SEEN.setdefault(test, set()).add(name)
    return _module(self, name)

adapter.Submission.module = module

@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item, nextitem):
    pytest._impact_current = str(item.path)

def pytest_sessionfinish(session):
    import json, os
    with open(os.environ["IMPACT_OUT"], "w") as out:
        json.dump({k: sorted(v) for k, v in SEEN.items()}, out)
'''


@pytest.mark.parametrize("assignment", ["transformer", "foundations", "training"])
def test_static_reading_covers_what_the_tests_really_import(assignment, tmp_path):
    """Graded on the reference, each test file touches only modules its static reading (with imports) names."""
    manifest = manifest_module.load(assignment)
    reference = manifest.path(manifest.reference)
    (tmp_path / "impact_recorder.py").write_text(RECORDER)
    command = pytest_command(manifest, sys.executable, tmp_path / "events.jsonl", None, sandbox=False)
    command += ["-p", "impact_recorder", "--submission", str(reference), "-p", "no:xdist"]
    env = child_env(manifest, reference)
    env.update(PYTHONPATH=f"{tmp_path}{os.pathsep}{env['PYTHONPATH']}", IMPACT_OUT=str(tmp_path / "seen.json"))
    done = subprocess.run(command, cwd=manifest.root, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:]
    seen = json.loads((tmp_path / "seen.json").read_text())
    modules = {pathlib.PurePath(name).stem for name in manifest.submission_files}
    test_files = {str(p) for t in manifest.tests for p in manifest.path(t.path).rglob("test_*.py")}
    assert set(seen) == test_files, "the recorder did not see every test file reach the submission"
    for test_file, names in seen.items():
        static = impact.modules_reached(pathlib.Path(test_file), modules)
        if static is impact.EVERY_MODULE:
            continue
        assert set(names) <= impact.import_closure(static, [reference], modules), test_file


# --- Function level ----------------------------------------------------------------------------

def changed(tmp_path, before: str, after: str):
    (tmp_path / "a.py").write_text(textwrap.dedent(before))
    (tmp_path / "b.py").write_text(textwrap.dedent(after))
    return impact.changed_functions(tmp_path / "a.py", tmp_path / "b.py")


BASE = """
    import math
    SCALE = 2

    def f(x, y=1):
        def inner(z):
            return z + 1
        return inner(x) * y

    class Block:
        size = 3

        def forward(self, x):
            return x * SCALE

        @property
        def width(self):
            return self.size
"""


@pytest.mark.parametrize("edit, expected", [
    (("return inner(x) * y", "return inner(x) + y"), {"f"}),
    (("return z + 1", "return z - 1"), {"f"}),                        # a nested function belongs to f
    (("return x * SCALE", "return x / SCALE"), {"Block.forward"}),
    (("return self.size", "return self.size + 1"), {"Block.width"}),
    (("import math\n", "import math  # a comment\n"), set()),         # the syntax tree is the same
])
def test_a_change_inside_function_bodies_names_those_functions(tmp_path, edit, expected):
    assert changed(tmp_path, BASE, BASE.replace(*edit)) == expected


@pytest.mark.parametrize("edit", [
    ("SCALE = 2", "SCALE = 3"),                   # a module statement
    ("size = 3", "size = 4"),                     # a class statement
    ("def f(x, y=1)", "def f(x, y=2)"),           # a default, seen without calling f
    ("@property\n", "@staticmethod\n"),           # a decorator
    ("import math\n", "import math\n\ndef g():\n    pass\n"),  # a function added
    ("return self.size", "return self.size +"),   # no longer parses
])
def test_any_other_change_is_the_whole_module(tmp_path, edit):
    assert changed(tmp_path, BASE, BASE.replace(*edit)) is impact.WHOLE_MODULE


def test_unit_of_a_code_object():
    assert impact.unit_of("Block.forward") == "Block.forward"
    assert impact.unit_of("f.<locals>.inner") == "f"
    assert impact.unit_of("f.<locals>.<listcomp>") == "f"


RECORDED_TESTS = '''
import pytest
import sub

@pytest.fixture(scope="module")
def built():
    return sub.build()

def test_calls_f():
    assert sub.f(1) == 2

def test_calls_nothing():
    assert 1 + 1 == 2

def test_uses_a_module_fixture(built):
    assert built == 3

def test_in_a_thread():
    import threading
    out = []
    t = threading.Thread(target=lambda: out.append(sub.g()))
    t.start(); t.join()
    assert out == [5]
'''

RECORDED_MODULE = '''
def f(x):
    return x + 1

def g():
    return 5

def build():
    return 3
'''


def test_the_recorder_sees_each_tests_calls_its_wider_fixtures_and_threads(tmp_path):
    folder = tmp_path / "sub_folder"
    folder.mkdir()
    (folder / "sub.py").write_text(RECORDED_MODULE)
    (tmp_path / "test_rec.py").write_text(RECORDED_TESTS)
    recorder = impact.CallRecorder(folder)
    sys.path.insert(0, str(folder))
    try:
        assert pytest.main([str(tmp_path / "test_rec.py"), "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
                            "--rootdir", str(tmp_path), "-c", os.devnull], plugins=[recorder]) == 0
    finally:
        sys.path.remove(str(folder))
        sys.modules.pop("sub", None)
    records = {nodeid.split("::")[1]: {unit for module, unit in calls if module == "sub"}
               for nodeid, calls in recorder.records().items()}
    assert records["test_calls_f"] >= {"f"} and "build" not in records["test_calls_f"]
    assert "f" not in records["test_calls_nothing"]
    assert "build" in records["test_uses_a_module_fixture"]
    assert "g" in records["test_in_a_thread"]
    assert impact.tests_running(recorder.records(), {"sub": ["f"]}) == [
        n for n in recorder.records() if n.endswith("test_calls_f")]


SAMPLE = 4  # mutants per assignment, spread over its catalogue (each runs every test once: seconds each)


@pytest.mark.parametrize("assignment", ["transformer", "foundations", "training"])
def test_pruned_mutant_runs_give_every_test_its_full_run_result(assignment, tmp_path):
    """A sample of catalogued mutants: the tests a mutant runs (its affected tests), completed with
    the reference's results, give exactly what running every test gives."""
    from autograder import catalogue, mutants
    from autograder.grade import batch

    manifest = manifest_module.load(assignment)
    every = catalogue.load(manifest)[0]
    chosen = every[len(every) // (2 * SAMPLE)::len(every) // SAMPLE][:SAMPLE]
    folders = {f"m{i}": catalogue.materialise(manifest, [m], tmp_path / f"m{i}") for i, m in enumerate(chosen)}
    reference_run, records = mutants.reference_run(manifest, tmp_path)  # shared with the catalogue's checks
    reference = catalogue.materialise(manifest, [], tmp_path / "reference")
    entries = [mutants.affected_tests(manifest, label, reference, folder) for label, folder in folders.items()]
    entries += [batch.Entry(f"{label}-all", str(folder)) for label, folder in folders.items()]
    runs = {**batch.run_batch(manifest, entries, tmp_path, records=records), "reference": reference_run}
    pruned_tests = 0
    for label in folders:
        every = runs[f"{label}-all"].outcomes
        pruned = {**runs["reference"].outcomes, **runs[label].outcomes}
        pruned_tests += len(runs[label].outcomes)
        assert {k: (o.passed, o.summary) for k, o in pruned.items()} == {
            k: (o.passed, o.summary) for k, o in every.items()}, chosen[int(label[1:])].name
    assert pruned_tests < len(runs["reference"].outcomes) * len(folders) / 2  # the shortcut saves something
