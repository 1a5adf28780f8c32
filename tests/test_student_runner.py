"""The student's loop: `python run_tests.py` run from an unpacked student zip, as a student runs it.

One problem at a time (`--problem`, `-k` by problem name, a file or a test id), the handout's
problem order, and the points table that ends every run.
"""
import json
import os
import re
import subprocess
import sys
import zipfile

import pytest

from autograder import build as build_module
from autograder import manifest as manifest_module

ROOT = manifest_module.ROOT


@pytest.fixture(scope="module")
def unpacked(tmp_path_factory):
    """{assignment: folder} of both student zips, unpacked, with the reference's files in place
    of the starter's (so every public test passes) for foundations."""
    root = tmp_path_factory.mktemp("student")
    folders = {}
    for name in ("foundations", "transformer"):
        manifest = manifest_module.load(name)
        with zipfile.ZipFile(build_module.build_student_zip(manifest, root / "dist")) as archive:
            archive.extractall(root)
        folders[name] = root / name
    foundations = manifest_module.load("foundations")
    for name in ("tokenization.py", "numpy_attention.py"):
        (folders["foundations"] / name).write_bytes((foundations.path(foundations.reference) / name).read_bytes())
    return folders


def run(folder, *args, cwd=None):
    return subprocess.run([sys.executable, str(folder / "run_tests.py"), *args], cwd=cwd or folder,
                          capture_output=True, text=True, timeout=300)


def ran_tests(stdout: str) -> list[str]:
    """Node ids that ran, from `-v` output."""
    return re.findall(r"^(tests/\S+) (?:PASSED|FAILED|ERROR)", stdout, re.MULTILINE)


def table_rows(stdout: str) -> dict[str, tuple[int, int, float, float]]:
    """{problem: (passed, run, earned, points)} from the table that ends the run."""
    table = stdout.split("points of the public tests", 1)[1]
    return {m[0]: (int(m[1]), int(m[2]), float(m[3]), float(m[4]))
            for m in re.findall(r"^(\w+)\s+(\d+) / (\d+)\s+([\d.]+) / ([\d.]+)$", table, re.MULTILINE)}


def problems_json(folder) -> list[dict]:
    return json.loads((folder / "problems.json").read_text())["problems"]


def test_problems_json_lists_the_manifest_problems_in_order_with_test_counts(unpacked):
    for name, folder in unpacked.items():
        manifest = manifest_module.load(name)
        problems = problems_json(folder)
        assert [p["name"] for p in problems] == list(manifest.problems)
        assert [p["points"] for p in problems] == [p.points for p in manifest.problems.values()]
        assert all(p["public_tests"] >= 1 and p["hidden_tests"] >= 1 for p in problems)


def test_problem_option_runs_those_problems_only_with_their_points(unpacked):
    folder = unpacked["foundations"]
    result = run(folder, "--problem", "softmax", "--problem", "pair_counts", "-v")
    assert result.returncode == 0, result.stdout[-3000:]
    ran = ran_tests(result.stdout)
    assert len(ran) == 5
    assert all("test_tokenization.py" in t for t in ran[:2]) and all("test_numpy_attention.py" in t for t in ran[2:])
    rows = table_rows(result.stdout)
    by_name = {p["name"]: p for p in problems_json(folder)}
    assert set(rows) == {"pair_counts", "softmax", "total"}
    for name in ("pair_counts", "softmax"):
        p = by_name[name]
        expected = p["points"] * p["public_tests"] / (p["public_tests"] + p["hidden_tests"])
        assert rows[name][:2] == (p["public_tests"], p["public_tests"])
        assert rows[name][2] == pytest.approx(expected, abs=0.006)
        assert rows[name][3] == p["points"]
    assert rows["total"][3] == by_name["pair_counts"]["points"] + by_name["softmax"]["points"]
    assert "hidden tests" in result.stdout and "decide the rest" in result.stdout
    assert "not run this time" in result.stdout


def test_several_problems_in_one_option_and_unknown_names(unpacked):
    folder = unpacked["foundations"]
    result = run(folder, "--problem", "softmax,apply_bpe", "--collect-only", "-q")
    assert result.returncode == 0, result.stdout[-3000:]
    assert re.search(r"^4(/\d+)? tests collected", result.stdout, re.M), result.stdout[-500:]
    wrong = run(folder, "--problem", "sofmax", "-q")
    assert wrong.returncode != 0
    assert "no problem named sofmax" in wrong.stdout + wrong.stderr
    assert "softmax" in (wrong.stdout + wrong.stderr).split("no problem named sofmax", 1)[1]


def test_keyword_selects_every_problem_by_its_name(unpacked):
    """`-k NAME` selects each problem's public tests, whatever the tests are called (one process:
    the runner's own pytest arguments, collected once per problem)."""
    for name, folder in unpacked.items():
        problems = problems_json(folder)
        script = ("import json, sys, pytest, run_tests\n"
                  "class Count:\n"
                  "    def pytest_collection_finish(self, session):\n"
                  "        counts.append(len(session.items))\n"
                  "counts = []\n"
                  f"for name in {[p['name'] for p in problems]!r}:\n"
                  "    pytest.main(run_tests.pytest_args(['--collect-only', '-q', '-k', name]), plugins=[Count()])\n"
                  "print('COUNTS', json.dumps(counts))")
        out = subprocess.run([sys.executable, "-c", script], cwd=folder, capture_output=True, text=True)
        counts = json.loads(out.stdout.split("COUNTS", 1)[1])
        assert len(counts) == len(problems), out.stdout[-2000:]
        for problem, count in zip(problems, counts):
            assert count >= problem["public_tests"] >= 1, (name, problem["name"], count)


def test_a_file_or_a_test_id_runs_only_that(unpacked, tmp_path):
    folder = unpacked["foundations"]
    result = run(folder, "tests/test_numpy_attention.py", "-v")
    assert result.returncode == 0, result.stdout[-3000:]
    ran = ran_tests(result.stdout)
    assert ran and all(t.startswith("tests/test_numpy_attention.py::") for t in ran)
    assert set(table_rows(result.stdout)) == {"softmax", "scaled_dot_product_attention", "multi_head_attention",
                                              "total"}
    one = run(folder, "tests/test_numpy_attention.py::test_softmax_rows", "-v", cwd=tmp_path)  # from elsewhere
    assert "test_softmax_rows PASSED" in one.stdout and "1 passed" in one.stdout, one.stdout[-2000:]
    short = run(folder, "test_tokenization.py", "-v")  # a file of tests/ by its name
    ran = ran_tests(short.stdout)
    assert ran and all(t.startswith("tests/test_tokenization.py::") for t in ran)


def test_tests_run_in_the_handout_order(unpacked):
    for folder in unpacked.values():
        order = [p["name"] for p in problems_json(folder)]
        script = ("import sys, pytest; sys.path.insert(0, '.'); "
                  "from conftest import _problems_of\n"
                  "class P:\n"
                  "    def pytest_collection_finish(self, session):\n"
                  "        print('ORDER', [min(_problems_of(i), key=" + repr(order) + ".index)\n"
                  "                        for i in session.items])\n"
                  "pytest.main(['tests', '--collect-only', '-q', '-p', 'no:cacheprovider'], plugins=[P()])")
        out = subprocess.run([sys.executable, "-c", script], cwd=folder, capture_output=True, text=True).stdout
        firsts = json.loads(out.split("ORDER", 1)[1].splitlines()[0].replace("'", '"'))
        assert [order.index(p) for p in firsts] == sorted(order.index(p) for p in firsts), firsts
        assert len(set(firsts)) == len(order)


def test_the_starter_earns_nothing_and_the_table_says_so(unpacked):
    folder = unpacked["transformer"]
    result = run(folder, "-q")
    assert result.returncode == 1
    rows = table_rows(result.stdout)
    manifest = manifest_module.load("transformer")
    assert set(rows) == set(manifest.problems) | {"total"}
    assert all(row[0] == 0 and row[2] == 0 for row in rows.values())
    assert rows["total"][3] == manifest.total_points
    assert "not run this time" not in result.stdout


def test_runner_uses_one_thread_unless_told(unpacked, tmp_path):
    folder = unpacked["transformer"]
    probe = tmp_path / "probe"
    probe.mkdir()
    (probe / "test_threads.py").write_text(
        "import os, pytest\n"
        "@pytest.mark.problem('self_attention')\n"
        "def test_threads():\n"
        "    import torch\n"
        "    print('THREADS', os.environ.get('OMP_NUM_THREADS'), torch.get_num_threads())\n")
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    result = subprocess.run([sys.executable, str(folder / "run_tests.py"), str(probe), "-s", "-q"], cwd=folder,
                            capture_output=True, text=True, env=env)
    assert "THREADS 1 1" in result.stdout, result.stdout[-2000:]


def test_training_prints_one_line_per_epoch_through_the_terminal_reporter(tmp_path):
    """Captured output stays hidden, but the training loop's epoch lines show at once (no -s needed)."""
    (tmp_path / "test_fit.py").write_text(
        "import pytest, torch\n"
        "from autograder.kit.training import Budget, batch_binary_accuracy, fit\n"
        "@pytest.mark.problem('p')\n"
        "def test_fit():\n"
        "    print('CAPTURED')\n"
        "    torch.manual_seed(0)\n"
        "    x, y = torch.randn(64, 3), (torch.rand(64) > 0.5).float()\n"
        "    model = torch.nn.Linear(3, 1)\n"
        "    fit(model, x, y, torch.nn.BCEWithLogitsLoss(), Budget(epochs=2), output=lambda o: o[:, 0],\n"
        "        metric=batch_binary_accuracy)\n")
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "autograder.kit.plugin", "-p",
                             "no:cacheprovider", "--rootdir", str(tmp_path), str(tmp_path)],
                            cwd=tmp_path, capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert result.returncode == 0, result.stdout[-2000:]
    lines = re.findall(r"^training: epoch (\d)/2: loss [\d.]+, accuracy [\d.]+ \(training batches\)$",
                       result.stdout, re.MULTILINE)
    assert lines == ["1", "2"], result.stdout
    assert "CAPTURED" not in result.stdout


def test_fit_logs_nothing_when_told_and_trains_the_same(capsys):
    import torch

    from autograder.kit.training import Budget, fit

    def trained(**kwargs):
        torch.manual_seed(0)
        model = torch.nn.Linear(3, 1)
        x, y = torch.randn(40, 3), torch.randn(40, 1)
        return fit(model, x, y, torch.nn.MSELoss(), Budget(epochs=2), **kwargs), model.weight.detach().clone()

    seen = []
    (quiet_losses, quiet_weight), (losses, weight) = trained(log=None), trained(log=seen.append)
    assert quiet_losses == losses and torch.equal(quiet_weight, weight)
    assert [line.split(":")[1] for line in seen] == [" epoch 1/2", " epoch 2/2"]
    assert "accuracy" not in seen[0]
