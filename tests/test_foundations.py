"""The second assignment, `foundations`, end to end: it was added by writing an assignment only.

Grading the reference (sandboxed), the starter, a buggy submission through the zip, every
catalogued mutant, the student zip, and the harness features it uses: NumPy and pandas values,
Hugging Face models and tokenizers handed to student code, partial credit and the leaderboard.
"""
import json
import subprocess
import sys
import zipfile

import pytest

from autograder import manifest as manifest_module
from autograder import catalogue as catalogue_module
from autograder import starter as starter_module
from autograder.build import build_student_zip
from autograder.grade import grade, grade_via_zip
from autograder.grade.results import per_problem

from test_grading import VISIBILITIES, graded_tests, make_submission

ROOT = manifest_module.ROOT


@pytest.fixture(scope="module")
def reference_results(tmp_path_factory, foundations):
    out = tmp_path_factory.mktemp("ref") / "results.json"
    grade("foundations", foundations.path(foundations.reference), out)
    return json.loads(out.read_text())


def lost(results: dict) -> set[str]:
    return {p for p, (score, total) in per_problem(results).items() if score < total}


def test_committed_starter_matches_the_reference(foundations):
    assert starter_module.stale(foundations) == []


def test_reference_gets_full_marks_and_a_leaderboard_entry(reference_results, foundations):
    tests = reference_results["tests"]
    assert [t["name"] + ": " + t["output"] for t in tests if t["status"] != "passed"] == []
    assert reference_results["score"] == pytest.approx(foundations.total_points)
    assert {t["visibility"] for t in tests} <= VISIBILITIES
    assert {p for t in tests for p in t["tags"]} == set(foundations.problems)
    [entry] = reference_results["leaderboard"]
    assert entry["name"] == "Token matching accuracy" and entry["order"] == "desc" and entry["value"] >= 0.9
    trained = [t for t in tests if t["tags"] == ["token_matching_training"] and t["visibility"] != "visible"]
    assert trained and all("Validation accuracy" in t["output"] for t in trained)


def test_starter_scores_zero(tmp_path, foundations):
    results = grade("foundations", foundations.path(foundations.starter), tmp_path / "r.json")
    assert results["score"] == 0
    assert all("not implemented yet" in t["output"] for t in graded_tests(results)), \
        [t["output"] for t in graded_tests(results) if "not implemented yet" not in t["output"]][:3]
    assert "leaderboard" not in results


def test_via_zip_gives_the_same_scores(tmp_path, foundations):
    buggy = make_submission(tmp_path / "buggy", foundations, *catalogue_module.load(foundations)[1])
    plain = grade("foundations", buggy, tmp_path / "plain.json")
    zipped = grade_via_zip("foundations", buggy, tmp_path / "zip.json")
    assert [(t["name"], t["score"]) for t in zipped["tests"]] == [(t["name"], t["score"]) for t in plain["tests"]]
    assert lost(plain) == {"learn_bpe", "softmax", "process_sentences", "attention_maps"}


def test_student_zip(tmp_path, foundations):
    path = build_student_zip(foundations, tmp_path)
    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
        requirements = archive.read("foundations/requirements.txt").decode()
        archive.extractall(tmp_path)
    assert {"foundations/tokenization.py", "foundations/self_attention.py", "foundations/README.md",
            "foundations/tests/test_embeddings.py", "foundations/autograder/kit/training.py",
            "foundations/autograder/kit/tiny_hf.py"} <= names
    assert not any("reference" in n or "hidden" in n for n in names)
    assert "pandas==" in requirements and "sentencepiece==" in requirements
    folder = tmp_path / "foundations"
    for name in foundations.submission_files:
        (folder / name).write_bytes((foundations.path(foundations.reference) / name).read_bytes())
    result = subprocess.run([sys.executable, "run_tests.py", "-q"], cwd=folder, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:]


def test_tokenizer_cases_are_the_same_in_every_process(foundations):
    """The hidden compare_tokenizers cases must not depend on the process (WordPiece's trainer breaks
    some ties at random), or a student's worker could disagree with the grader's reference."""
    script = f"""
import json, sys
sys.path[:0] = [{str(ROOT / 'tests_hidden/foundations')!r}, {str(foundations.path(foundations.reference))!r}]
import tokenization
from test_tokenization_hidden import TEXTS, TOKENIZER_CASES
print(json.dumps([tokenization.compare_tokenizers(corpus, TEXTS, size) for _, corpus, size in TOKENIZER_CASES]))
"""
    outputs = {subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                              cwd=ROOT).stdout for _ in range(4)}
    assert len(outputs) == 1
