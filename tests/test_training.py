"""The third assignment, `training`, end to end: grading the reference (sandboxed), the starter, the demo's
buggy submission plain and through the zip, the student zip, and what the assignment promises: at least
three wrong variants per problem and every test on the runner's device."""
import collections
import json
import subprocess
import sys
import zipfile

import pytest

from autograder import catalogue as catalogue_module
from autograder import manifest as manifest_module
from autograder import starter as starter_module
from autograder.build import build_student_zip
from autograder.grade import grade, grade_via_zip
from autograder.grade.results import per_problem

from test_grading import VISIBILITIES, graded_tests, make_submission


@pytest.fixture(scope="module")
def training():
    return manifest_module.load("training")


@pytest.fixture(scope="module")
def reference_results(tmp_path_factory, training):
    out = tmp_path_factory.mktemp("ref") / "results.json"
    grade("training", training.path(training.reference), out)
    return json.loads(out.read_text())


def lost(results: dict) -> set[str]:
    return {p for p, (score, total) in per_problem(results).items() if score < total}


def test_committed_starter_matches_the_reference(training):
    assert starter_module.stale(training) == []


def _code_after_docstring(path) -> list[str]:
    """A model file's lines from its imports on, without solution markers."""
    lines = [line for line in path.read_text(encoding="utf-8").splitlines()
             if line.strip() not in ("# BEGIN SOLUTION", "# END SOLUTION")]
    return lines[lines.index("import math"):]


def test_given_model_is_the_transformer_reference(training):
    """training's given model.py is the `transformer` assignment's reference model, unchanged (a copy
    kept in step: when one changes, change both)."""
    transformer = manifest_module.load("transformer")
    given = training.path(training.reference) / "model.py"
    assert _code_after_docstring(given) == _code_after_docstring(transformer.path(transformer.reference) / "model.py")


def test_reference_gets_full_marks(reference_results, training):
    tests = reference_results["tests"]
    assert [t["name"] + ": " + t["output"] for t in tests if t["status"] != "passed"] == []
    assert reference_results["score"] == pytest.approx(training.total_points)
    assert {t["visibility"] for t in tests} <= VISIBILITIES
    assert {p for t in tests for p in t["tags"]} == set(training.problems)


def test_starter_scores_zero(tmp_path, training):
    results = grade("training", training.path(training.starter), tmp_path / "r.json")
    assert results["score"] == 0
    assert all("not implemented yet" in t["output"] for t in graded_tests(results)), \
        [t["output"] for t in graded_tests(results) if "not implemented yet" not in t["output"]][:3]


def test_via_zip_gives_the_same_scores(tmp_path, training):
    buggy = make_submission(tmp_path / "buggy", training, *catalogue_module.load(training)[1])
    plain = grade("training", buggy, tmp_path / "plain.json")
    zipped = grade_via_zip("training", buggy, tmp_path / "zip.json")
    assert [(t["name"], t["score"]) for t in zipped["tests"]] == [(t["name"], t["score"]) for t in plain["tests"]]
    assert lost(plain) == {"lr_at", "train_step"}
    # the tests read the results back with the handout's helpers: the last call shown is still the student's
    last_calls = {line.split("(")[0] for t in plain["tests"] for line in t["output"].splitlines()
                  if line.startswith("Last call into your code: ")}
    assert "Last call into your code: train_step" in last_calls
    assert not last_calls & {"Last call into your code: snapshot", "Last call into your code: build_model"}


def test_every_problem_has_three_wrong_variants_and_a_correct_style(training):
    catalogue, _ = catalogue_module.load(training)
    wrong = collections.Counter(p for m in catalogue for p in m.problems)
    assert {p: wrong[p] for p in training.problems if wrong[p] < 3} == {}
    assert sum(1 for m in catalogue if m.correct and not m.files) >= 5
    assert any(m.correct and m.files for m in catalogue)


def test_student_zip_runs_the_public_tests(tmp_path, training):
    path = build_student_zip(training, tmp_path)
    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
        archive.extractall(tmp_path)
    assert {"training/training.py", "training/model.py", "training/classifier.py", "training/README.md",
            "training/tests/test_training.py", "training/tests/test_classifier.py",
            "training/autograder/kit/devices.py", "training/autograder/kit/reviews.py"} <= names
    assert len([n for n in names if n.startswith("training/autograder/kit/data/reviews/")]) == 600  # the corpus
    assert not any("reference" in n or "hidden" in n for n in names)
    folder = tmp_path / "training"
    for name in training.submission_files:
        (folder / name).write_bytes((training.path(training.reference) / name).read_bytes())
    result = subprocess.run([sys.executable, "run_tests.py", "-q"], cwd=folder, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:]


def test_fine_tune_puts_its_accuracy_on_the_leaderboard(reference_results):
    """finetune.py's hidden test adds a leaderboard entry: the reference's evaluation accuracy, higher is better"""
    entries = {entry["name"]: entry for entry in reference_results.get("leaderboard", [])}
    assert entries["Fine-tuning accuracy"]["order"] == "desc"
    assert 0.9 <= entries["Fine-tuning accuracy"]["value"] <= 1.0
