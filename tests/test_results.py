import dataclasses

import pytest

from autograder.grade import results
from autograder.grade.intake import Intake
from autograder.grade.runner import Outcome, Run
from autograder.testing import messages

PUBLIC = {"nodeid": "tests_public/transformer/test_a.py::test_x", "file": "tests_public/transformer/test_a.py",
          "name": "test_x", "doc": "x works", "problems": ["causal_mask"]}
HIDDEN = {"nodeid": "tests_hidden/transformer/test_b.py::test_y[T3]", "file": "tests_hidden/transformer/test_b.py",
          "name": "test_y[T3]", "doc": "", "problems": ["causal_mask"]}


def build(manifest, **outcomes):
    run = Run(collected=[PUBLIC, HIDDEN], outcomes={
        PUBLIC["nodeid"]: Outcome(PUBLIC["nodeid"], False, "wrong", "expected 1, got 2", "", 0.0, "mask leaves out the diagonal"),
        HIDDEN["nodeid"]: Outcome(HIDDEN["nodeid"], False, "wrong", "expected 3, got 4", "", 0.0, "mask leaves out the diagonal"),
    })
    return results.build(manifest, run, Intake({}, [], []))


def test_points_split_exactly_and_problems_without_tests_still_count(transformer):
    out = build(transformer)
    mask = [t for t in out["tests"] if t["tags"] == ["causal_mask"]]
    assert [t["max_score"] for t in mask] == [2.0, 2.0]
    assert sum(t["max_score"] for t in out["tests"]) == pytest.approx(transformer.total_points)
    assert {t["name"] for t in mask} == {"causal_mask: x works", "causal_mask: y [T3]"}


def test_details_only_for_public_tests_and_diagnoses_as_configured(transformer):
    shown = {t["visibility"]: t["output"] for t in build(transformer)["tests"] if t["tags"] == ["causal_mask"]}
    assert "expected 1, got 2" in shown["visible"] and "expected 3" not in shown["after_published"]
    diagnosis = messages.DIAGNOSIS.format(diagnosis="mask leaves out the diagonal")
    assert diagnosis in shown["visible"] and diagnosis in shown["after_published"]
    later = dataclasses.replace(transformer, diagnoses_before_publish=False)
    shown = {t["visibility"]: t["output"] for t in build(later)["tests"] if t["tags"] == ["causal_mask"]}
    assert diagnosis not in shown["visible"] and diagnosis in shown["after_published"]
