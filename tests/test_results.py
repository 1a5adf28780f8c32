import dataclasses

import pytest
import torch

from autograder.grade import results
from autograder.grade.intake import IntakeReport
from autograder.grade.events import Outcome, Run
from autograder.kit import messages

PUBLIC = {"nodeid": "tests_public/transformer/test_a.py::test_x", "file": "tests_public/transformer/test_a.py",
          "name": "test_x", "doc": "x works", "problems": ["causal_mask"]}
HIDDEN = {"nodeid": "tests_hidden/transformer/test_b.py::test_y[T3]", "file": "tests_hidden/transformer/test_b.py",
          "name": "test_y[T3]", "doc": "", "problems": ["causal_mask"]}


DIAGNOSIS = "mask leaves out the diagonal"


def build(manifest, **outcomes):
    run = Run(collected=[PUBLIC, HIDDEN], outcomes={
        PUBLIC["nodeid"]: Outcome(PUBLIC["nodeid"], False, "wrong", "expected 1, got 2", "", 0.0, DIAGNOSIS),
        HIDDEN["nodeid"]: Outcome(HIDDEN["nodeid"], False, "wrong", "expected 3, got 4", "", 0.0, DIAGNOSIS),
    })
    return results.results_json(manifest, run, IntakeReport({}, [], []))


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


def test_partial_credit_and_leaderboard(transformer):
    """A passing test may earn part of its points (the `score` fixture) and post to the leaderboard."""
    board = [{"name": "Accuracy", "value": 0.93, "order": "desc"}]
    run = Run(collected=[PUBLIC, HIDDEN], outcomes={
        PUBLIC["nodeid"]: Outcome(PUBLIC["nodeid"], True, fraction=0.25, note="accuracy 0.86: 25%", leaderboard=board),
        HIDDEN["nodeid"]: Outcome(HIDDEN["nodeid"], False, "wrong", fraction=0.5, leaderboard=[]),
    })
    out = results.results_json(transformer, run, IntakeReport({}, [], []))
    public, hidden = [t for t in out["tests"] if t["tags"] == ["causal_mask"]]
    assert (public["score"], public["status"], public["output"]) == (0.5, "passed", "accuracy 0.86: 25%")
    assert hidden["score"] == 0.0    # a failing test earns nothing, whatever fraction it set
    assert out["leaderboard"] == board
    assert "leaderboard" not in build(transformer)


def test_score_fixture_clamps_and_checks_order():
    from autograder.kit.plugin import Score

    given = Score()
    given.partial(1.7, "too much")
    assert given.fraction == 1.0
    given.partial(-2)
    assert given.fraction == 0.0
    with pytest.raises(ValueError):
        given.leaderboard("x", 1.0, order="up")


def test_names_are_readable_parameters_and_unescaped_ids():
    """Gradescope names show parameters as written (no `\\xe9` escapes, no raw ids like `batch0-3`)."""
    with_params = dict(HIDDEN, nodeid="tests_hidden/t.py::test_y[batch0-3]", name="test_y[batch0-3]",
                       doc="random inputs", params={"batch": "(2,)", "T": "3"})
    assert results.test_name(with_params) == "causal_mask: random inputs (batch=(2,), T=3)"
    escaped = dict(HIDDEN, nodeid="tests_hidden/t.py::test_y[a\\xe9-b\\u0101]", name="test_y[a\\xe9-b\\u0101]")
    assert results.test_name(escaped) == "causal_mask: y [aé-bā]"
    long = dict(with_params, params={"text": "x" * 400})
    assert len(results.test_name(long)) == results.NAME_LIMIT and results.test_name(long).endswith("...")


def test_the_plugin_describes_parameters_for_names():
    from autograder.kit.adapter import describe_param

    assert describe_param("a\xe9") == "a\xe9"
    assert describe_param(torch.float32) == "float32"
    assert describe_param(((5, 6), torch.int64)) == "((5, 6), int64)"
    assert describe_param(torch.zeros(2, 3)) == "float32[2, 3]"
    assert describe_param({"heads": 2, "causal": True}) == "{heads=2, causal=True}"
    assert describe_param((3,)) == "(3,)"


def test_collected_tests_carry_readable_parameters(tmp_path):
    """The plugin's "collected" event gives each parametrized test's parameters, as names show them."""
    import json
    import os
    import subprocess
    import sys

    from autograder.manifest import ROOT

    (tmp_path / "test_p.py").write_text(
        "import pytest\n"
        "@pytest.mark.problem('causal_mask')\n"
        "@pytest.mark.parametrize('word, shape', [('caf\\xe9', (2, 3))])\n"
        "def test_p(word, shape):\n"
        "    '''a word and a shape'''\n")
    report = tmp_path / "report.jsonl"
    subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "autograder.kit.plugin",
                    "-p", "no:cacheprovider", "--rootdir", str(tmp_path), "--report", str(report), str(tmp_path)],
                   cwd=tmp_path, capture_output=True, check=True, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    test, = json.loads(report.read_text().splitlines()[0])["tests"]
    assert results.test_name(test) == "causal_mask: a word and a shape (word=caf\xe9, shape=(2, 3))"


def test_table_shows_no_grader_noise_unless_verbose(tmp_path, transformer):
    """`grade --table` prints the table only; the test children's exits and pytest's report need --verbose."""
    import os
    import subprocess
    import sys

    from autograder.manifest import ROOT

    command = [sys.executable, "-m", "autograder", "grade", "transformer", str(transformer.path(transformer.starter)),
               "-o", str(tmp_path / "r.json"), "--table", "--no-sandbox"]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    quiet = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=env)
    assert quiet.returncode == 0, quiet.stderr[-2000:]
    assert "total" in quiet.stderr and "self_attention" in quiet.stderr
    assert "child 0" not in quiet.stderr and "stop None" not in quiet.stderr and "FAILED" not in quiet.stderr
    verbose = subprocess.run(command + ["--verbose"], cwd=ROOT, capture_output=True, text=True,
                             env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert "child 0: exit" in verbose.stderr and "total" in verbose.stderr


def test_the_always_visible_summary_tells_the_visible_tests_points_only(transformer):
    """Before grades are published a student sees the top-level `output` but not the hidden tests:
    the text gives the visible tests' points; the total `score` is Gradescope's to hide."""
    run = Run(collected=[PUBLIC, HIDDEN], outcomes={
        PUBLIC["nodeid"]: Outcome(PUBLIC["nodeid"], True), HIDDEN["nodeid"]: Outcome(HIDDEN["nodeid"], True)})
    out = results.results_json(transformer, run, IntakeReport({}, [], []))
    assert out["score"] == 4.0    # causal_mask's two tests; every other problem has none here (0, visible)
    visible_total = transformer.total_points - 2
    assert out["output"].startswith(f"**{transformer.title}**: " + messages.VISIBLE_PART.format(
        score="2", total=f"{visible_total:g}", rest="2"))
    assert "4 /" not in out["output"]
    visible = [dataclasses.replace(t, visibility="visible") for t in transformer.tests]
    shown = dataclasses.replace(transformer, tests=visible)
    out = results.results_json(shown, run, IntakeReport({}, [], []))
    assert f"4 / {transformer.total_points:g} points." in out["output"]


def _weighted(manifest, problem, weights):
    spec = dataclasses.replace(manifest.problems[problem], weights=weights)
    return dataclasses.replace(manifest, problems={**manifest.problems, problem: spec})


def test_weights_split_a_problems_points_in_proportion(transformer):
    """[problems.X] weights: a hidden test (each parametrization) weighs more; the points still add up."""
    other = dict(HIDDEN, nodeid="tests_hidden/transformer/test_b.py::test_z", name="test_z")
    collected = [PUBLIC, HIDDEN, other]
    assert list(results.points_per_test(transformer, collected).values()) == [1.3334, 1.3333, 1.3333]  # equal
    shares = results.points_per_test(_weighted(transformer, "causal_mask", {"test_y": 3}), collected)
    assert list(shares.values()) == [0.8, 2.4, 0.8]                                # 4 points over 1 + 3 + 1
    shares = results.points_per_test(_weighted(transformer, "causal_mask", {"test_y": 2, "test_z": 4}), collected)
    assert list(shares.values()) == [0.5714, 1.1429, 2.2857] and sum(shares.values()) == pytest.approx(4)


@pytest.mark.parametrize("weights, message", [
    ({"test_nope": 2}, "test_nope, which is no hidden test of causal_mask"),
    ({"test_x": 2}, "test_x, which is no hidden test"),   # public: the student's run counts it as 1
])
def test_a_weight_that_names_no_hidden_test_is_an_error(transformer, weights, message):
    from autograder.manifest import ManifestError

    with pytest.raises(ManifestError, match=message):
        results.points_per_test(_weighted(transformer, "causal_mask", weights), [PUBLIC, HIDDEN])
