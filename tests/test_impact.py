"""The mutant checks' shortcut (autograder/grade/impact.py): which test files a changed file affects."""
import json
import os
import pathlib
import subprocess
import sys
import textwrap

import pytest

from autograder import manifest as manifest_module
from autograder.grade import impact
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
