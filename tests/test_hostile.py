"""Hostile submissions: none may score more than the starter or get a line of the hidden tests
or of the reference into results.json (issue 3).

Each attack (tests/hostile/, one a file) is added to the starter, which scores 0: run at the
import of attention.py, or in place of a function. Student code runs in the sandboxed worker, as its own
user when the tests run as root (as on Gradescope and in CI).
"""
import json
import os
import pathlib

import pytest

from autograder import manifest as manifest_module
from autograder.grade import grade, grade_via_zip
from autograder.kit import messages
from test_grading import graded_tests

ROOT = pathlib.Path(__file__).resolve().parents[1]

HOSTILE = pathlib.Path(__file__).parent / "hostile"  # one attack a file: see hostile/README.md


def attack(name: str) -> str:
    return (HOSTILE / name).read_text(encoding="utf-8")


# Files next to the submission that would change how code is loaded, if they were used.
LOADER_FILES = {
    "conftest.py": "import pytest\n@pytest.hookimpl(hookwrapper=True)\ndef pytest_runtest_makereport(item, call):\n"
                   "    outcome = yield\n    outcome.get_result().outcome = 'passed'\n",
    "sitecustomize.py": "import torch\ntorch.allclose = lambda *a, **k: True\n",
    "usercustomize.py": "import torch\ntorch.equal = lambda *a, **k: True\n",
    "evil.pth": "import os; os._exit(0)\n",
    "torch.py": "raise SystemExit(0)\n",
    "pytest.ini": "[pytest]\naddopts = -p no:autograder.grader.plugin -p no:autograder.kit.plugin\n",
}


def _lines(folder: pathlib.Path) -> set[str]:
    return {line.strip() for path in folder.rglob("*.py") for line in path.read_text(encoding="utf-8").splitlines()}


def secret_lines() -> set[str]:
    """Lines of the hidden tests and of the reference's solutions (not in what students get),
    long enough to be telling."""
    public = _lines(ROOT / "starter") | _lines(ROOT / "tests_public") | _lines(ROOT / "autograder")
    secret = (_lines(ROOT / "tests_hidden") | _lines(ROOT / "reference")) - public
    return {line for line in secret if len(line) >= 30}


def starter_with(tmp_path, transformer, *, prelude: str = "", cheat: bool = False, extra_files=None) -> pathlib.Path:
    """The starter, nested in a folder, with `prelude` run at the import of attention.py and,
    with `cheat`, scaled_dot_product_attention replaced by hostile/cheating_tensors.py's."""
    folder = tmp_path / "submission" / "nested"
    folder.mkdir(parents=True)
    starter = transformer.path(transformer.starter)
    for name in transformer.submission_files:
        text = (starter / name).read_text(encoding="utf-8")
        if name == "attention.py" and prelude:
            text = text.replace("import torch\n", "import torch\n" + prelude, 1)
        if name == "attention.py" and cheat:
            head, tail = text.split("def scaled_dot_product_attention", 1)
            rest = tail.split("\n\n\n", 1)[1]
            text = head + attack("cheating_tensors.py") + "\n\n" + rest
        (folder / name).write_text(text, encoding="utf-8")
    for name, text in (extra_files or {}).items():
        (folder / name).write_text(text, encoding="utf-8")
        (tmp_path / "submission" / name).write_text(text, encoding="utf-8")
    return tmp_path / "submission"


def check_honest(results: dict, secrets: set[str]) -> None:
    assert results["score"] == 0, [t["name"] for t in results["tests"] if t["status"] == "passed"]
    assert all(t["status"] == "failed" for t in graded_tests(results))
    text = json.dumps(results)
    leaked = [line for line in secrets if line in text or json.dumps(line)[1:-1] in text]
    assert not leaked, leaked[:3]


ATTACKS = {
    "read-secrets": dict(prelude=attack("read_secrets.py")),
    "forge-results": dict(prelude=attack("forge_results.py")),
    "forge-and-exit": dict(prelude=attack("forge_and_exit.py")),
    "cheating-tensors": dict(cheat=True),
    "loader-files": dict(extra_files=LOADER_FILES),
}


@pytest.mark.skipif(os.geteuid() != 0, reason="the sandbox drops to another user only when the grader is root")
@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_hostile_submission_scores_nothing_and_learns_nothing(tmp_path, transformer, attack):
    submission = starter_with(tmp_path, transformer, **ATTACKS[attack])
    out = tmp_path / "results" / "results.json"
    results = grade("transformer", submission, out)
    check_honest(results, secret_lines())
    assert json.loads(out.read_text()) == results  # not overwritten by the daemon either
    if attack == "loader-files":
        assert "conftest.py" in results["output"] and "torch.py" in results["output"]


@pytest.mark.skipif(os.geteuid() != 0, reason="the sandbox drops to another user only when the grader is root")
def test_hostile_submission_through_the_zip(tmp_path, transformer):
    """Through run_autograder in a /autograder-like root: reading, forging, cheating at once."""
    reading = attack("read_secrets.py").replace('raise RuntimeError("\\n".join(loot)[:100000] or "nothing found")', "")
    submission = starter_with(tmp_path, transformer, prelude=attack("forge_results.py") + reading, cheat=True)
    results = grade_via_zip("transformer", submission, quiet=True)
    check_honest(results, secret_lines())


# ---- H3: plausible wrong values (issue 10, section 3) ----

WRONG_KINDS = ["zeros", "input", "random"]


def graded_names(source: str) -> list[str]:
    """Top-level functions and classes of a starter file that leave work to the student (raise NotImplementedError)."""
    import ast

    names = []
    for node in ast.parse(source).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and any(
                isinstance(inner, ast.Raise) and "NotImplementedError" in ast.unparse(inner)
                for inner in ast.walk(node)):
            names.append(node.name)
    return names


def plausible_wrong_submission(tmp_path, transformer, kind: str) -> pathlib.Path:
    """The reference with every name the starter leaves to the student made to return a plausible wrong
    value of the right shape and dtype (hostile/plausible_wrong.py)."""
    folder = tmp_path / "submission"
    folder.mkdir()
    starter, reference = transformer.path(transformer.starter), transformer.path(transformer.reference)
    graded_files = {p.file for p in transformer.problems.values()}
    for name in transformer.submission_files:
        graded = graded_names((starter / name).read_text(encoding="utf-8"))
        text = (reference / name).read_text(encoding="utf-8")
        if name not in graded_files:  # a given file (training's model.py): as it is
            (folder / name).write_text(text, encoding="utf-8")
            continue
        assert graded, f"the starter's {name} leaves nothing to the student?"
        text += f"\n\nWRONG_KIND = {kind!r}\nGRADED = {graded!r}\n" + attack("plausible_wrong.py")
        (folder / name).write_text(text, encoding="utf-8")
    return folder


@pytest.mark.skipif(os.geteuid() != 0, reason="the sandbox drops to another user only when the grader is root")
@pytest.mark.parametrize("assignment", ["transformer", "foundations", "training"])
@pytest.mark.parametrize("kind", WRONG_KINDS)
def test_plausible_wrong_values_score_what_the_stubs_score(tmp_path, assignment, kind):
    """Every function and module returns a wrong value of the right shape, dtype and device (constructors
    are correct): no test may pay for a property (shape, batch rows, purity, device, structure) of it."""
    manifest = manifest_module.load(assignment)
    submission = plausible_wrong_submission(tmp_path, manifest, kind)
    results = grade(assignment, submission, tmp_path / "results.json")
    paid = [f"{t['name']}: {t['score']}" for t in results["tests"] if t["score"] > 0]
    assert results["score"] == 0, paid
    # 0 because the values are wrong, not because nothing could run (a grader that cannot start its
    # worker or import the files scores 0 too)
    broken = [messages.IMPORT_FAILED.split("{")[0], messages.GRADER_ERROR, messages.SANDBOX_UNAVAILABLE.split("{")[0],
              messages.WORKER_CRASH.split("{")[0], messages.CRASH.split("{")[0]]
    assert [t["name"] for t in results["tests"] if any(b in t["output"] for b in broken)] == []
