"""End to end: grade real submissions (reference, starter, mutants, crashing ones) and read results.json."""
import collections
import dataclasses
import json
import os
import pathlib
import zipfile

import pytest

from autograder import catalogue as catalogue_module
from autograder.grade import grade, grade_via_zip
from autograder.grade.results import per_problem
from autograder.kit import messages

TEST_FIELDS = {"name", "number", "score", "max_score", "status", "output", "visibility", "tags"}
VISIBILITIES = {"hidden", "after_due_date", "after_published", "visible"}


def graded_tests(results: dict) -> list[dict]:
    """results.json's tests but the "Written answers" one (0 points: a manifest's [questions] are
    graded by hand; it passes whatever the code does)."""
    return [t for t in results["tests"] if t["name"] != messages.WRITTEN_ANSWERS]


def check_schema(results: dict, manifest) -> None:
    """Gradescope's documented fields, and our own promises about them."""
    json.dumps(results)
    top_level = {"score", "execution_time", "output", "output_format", "visibility", "stdout_visibility", "tests"}
    assert top_level <= set(results)
    assert results["stdout_visibility"] == "hidden"
    numbers = set()
    for test in results["tests"]:
        assert TEST_FIELDS <= set(test), test
        assert test["status"] in {"passed", "failed"}
        assert test["visibility"] in VISIBILITIES
        numbers.add(test["number"])
        if test["name"] == messages.WRITTEN_ANSWERS:   # graded by hand: 0 points here, no problem's tag
            assert test["max_score"] == test["score"] == 0 and test["tags"] == [], test
            continue
        assert test["tags"] and set(test["tags"]) <= set(manifest.problems), test
        assert 0 <= test["score"] <= test["max_score"]
        assert (test["score"] == test["max_score"]) is (test["status"] == "passed")
        if test["status"] == "failed":
            assert test["output"].strip(), f"a failed test needs a message: {test['name']}"
    assert len(numbers) == len(results["tests"])
    assert results["score"] == pytest.approx(sum(t["score"] for t in results["tests"]), abs=1e-3)
    assert sum(t["max_score"] for t in results["tests"]) == pytest.approx(manifest.total_points, abs=1e-3)
    for problem in manifest.problems:
        assert any(problem in t["tags"] for t in results["tests"]), f"no test for {problem}"


@pytest.fixture(scope="module")
def reference_results(tmp_path_factory, transformer):
    out = tmp_path_factory.mktemp("ref") / "results.json"
    grade("transformer", transformer.path(transformer.reference), out)
    return json.loads(out.read_text())


def test_reference_gets_full_marks(reference_results, transformer):
    check_schema(reference_results, transformer)
    failed = [t["name"] + ": " + t["output"] for t in reference_results["tests"] if t["status"] != "passed"]
    assert not failed
    assert reference_results["score"] == pytest.approx(transformer.total_points)


def test_public_and_hidden_visibility(reference_results):
    visibilities = {t["visibility"] for t in reference_results["tests"]}
    assert visibilities == {"visible", "after_published"}


def test_starter_scores_zero(tmp_path, transformer):
    results = grade("transformer", transformer.path(transformer.starter), tmp_path / "r.json")
    check_schema(results, transformer)
    assert results["score"] == 0
    assert all("NotImplementedError" in t["output"] for t in graded_tests(results))
    assert not any("autograder/" in t["output"] or "tests_hidden" in t["output"] for t in results["tests"])


def test_via_zip_gives_the_same_scores(tmp_path, transformer, reference_results):
    buggy = make_submission(tmp_path / "buggy", transformer, "lm-loss-no-shift")
    plain = grade("transformer", buggy, tmp_path / "plain.json")
    zipped = grade_via_zip("transformer", buggy, tmp_path / "zip.json")
    check_schema(zipped, transformer)
    assert [(t["name"], t["score"], t["output"]) for t in zipped["tests"]] == \
        [(t["name"], t["score"], t["output"]) for t in plain["tests"]]
    assert any("Likely mistake: your loss compares position t with token t" in t["output"] for t in zipped["tests"])
    reference_zip = grade_via_zip("transformer", transformer.path(transformer.reference))
    assert reference_zip["score"] == reference_results["score"]


def make_submission(folder: pathlib.Path, manifest, *names: str, extra: list | None = None) -> pathlib.Path:
    catalogue, _ = catalogue_module.load(manifest)
    chosen = [m for m in catalogue if m.name in names] + list(extra or [])
    return catalogue_module.materialise(manifest, chosen, folder)


def lost(results: dict) -> set[str]:
    return {p for p, (score, total) in per_problem(results).items() if score < total}


def Mutant(file, find, replace, name="case"):
    return catalogue_module.Mutant(name, (), (catalogue_module.Edit(file, find, replace),))


def test_hidden_outputs_show_no_expected_values(tmp_path, transformer):
    submission = make_submission(tmp_path / "s", transformer, "lm-loss-no-shift")
    results = grade("transformer", submission)
    failed = [t for t in results["tests"] if t["status"] == "failed"]
    assert any(t["visibility"] == "after_published" for t in failed)
    for test in failed:
        if test["visibility"] != "visible":  # checks.py puts expected values in `details` only
            assert "\nexpected:\n" not in test["output"] and ": expected " not in test["output"], test["output"]


def test_a_sequential_of_blocks_costs_only_the_attribute_test(tmp_path, transformer):
    """blocks = nn.Sequential(...) works like the contract's nn.ModuleList: the attribute test says so,
    and no behaviour test charges the same deviation again."""
    results = grade("transformer", make_submission(tmp_path / "s", transformer, "transformer-blocks-sequential"))
    failed = [t["name"] for t in graded_tests(results) if t["status"] == "failed"]
    assert len(failed) == 1 and "blocks (ModuleList of num_layers Blocks)" in failed[0], failed


def test_reading_a_tensors_values_on_the_meta_device_is_explained(tmp_path, transformer):
    """torch's "Tensor.item() cannot be called on meta tensors" gets a line saying why the test used meta."""
    results = grade("transformer", make_submission(tmp_path / "s", transformer, "sdpa-reads-mask-values"))
    assert lost(results) == {"scaled_dot_product_attention"}
    outputs = [t["output"] for t in graded_tests(results) if t["status"] == "failed"]
    assert outputs and all(messages.META_VALUE in o for o in outputs)


def test_syntax_error_costs_only_its_file(tmp_path, transformer):
    submission = make_submission(tmp_path / "s", transformer, extra=[
        Mutant("model.py", "class FeedForward(nn.Module):", "class FeedForward(nn.Module)")])
    results = grade("transformer", submission)
    model_problems = {p for p, pr in transformer.problems.items() if pr.file == "model.py"}
    assert lost(results) == model_problems
    outputs = [t["output"] for t in results["tests"] if t["status"] == "failed"]
    assert all("model.py" in o and "SyntaxError" in o for o in outputs)
    assert any("line " in o for o in outputs)


def test_missing_file_is_reported(tmp_path, transformer):
    submission = make_submission(tmp_path / "s", transformer)
    (submission / "debugging.py").unlink()
    results = grade("transformer", submission)
    assert lost(results) == {"attach_attention_hook", "FixedTransformerEncoderLayer"}
    assert "debugging.py" in results["output"]


SCORES = "    scores = Q @ K.transpose(-2, -1) / math.sqrt(d_k)  # (B, T, T)"  # a line of attention.py
CRASHES = [  # (problem, edit): each crashes the worker, or raises what a test process must survive
    ("greedy_decode", Mutant("model.py", "    for _ in range(max_new_tokens):\n",
                             "    if max_new_tokens == 3:\n        import os\n        os._exit(3)\n"
                             "    for _ in range(max_new_tokens):\n")),
    ("FeedForward", Mutant("model.py", "        return self.dropout(self.fc2(F.relu(self.fc1(x))))",
                           "        if x.dim() == 2:\n            import ctypes\n            ctypes.string_at(0)\n"
                           "        return self.dropout(self.fc2(F.relu(self.fc1(x))))")),
    ("causal_mask", Mutant("attention.py", "    return torch.tril(torch.ones(T, T, dtype=torch.bool, device=device))",
                           "    if T == 5:\n        import sys\n        sys.exit(1)\n"
                           "    return torch.tril(torch.ones(T, T, dtype=torch.bool, device=device))")),
    ("lm_loss", Mutant("model.py", "    B, T, V = logits.size()\n",
                       "    B, T, V = logits.size()\n    if T == 6:\n        raise KeyboardInterrupt\n")),
    ("self_attention", Mutant("attention.py", "    d_k = Q.size(-1)\n" + SCORES,
                              "    d_k = Q.size(-1)\n    if d_k == 4:\n"
                              "        hog = [bytearray(1 << 30) for _ in range(64)]\n" + SCORES)),
]


def test_crashes_cost_only_the_test_that_hit_them(tmp_path, transformer):
    """os._exit, a segfault, sys.exit, KeyboardInterrupt and MemoryError in student code fail the
    tests that ran into them; the worker is restarted and grading goes on."""
    submission = make_submission(tmp_path / "s", transformer, extra=[edit for _, edit in CRASHES])
    results = grade("transformer", submission)
    check_schema(results, transformer)
    failed = [t for t in results["tests"] if t["status"] == "failed"]
    assert {tag for t in failed for tag in t["tags"]} == {problem for problem, _ in CRASHES}
    outputs = "\n".join(t["output"] for t in failed)
    assert messages.WORKER_CRASH.split("(")[0] in outputs       # os._exit, segfault
    for raised in ("SystemExit", "KeyboardInterrupt", "MemoryError"):
        assert messages.RAISED.format(exc=raised) in outputs
    assert sum(t["status"] == "passed" for t in results["tests"]) > 0.7 * len(results["tests"])


ENDLESS_LOOPS = [
    Mutant("model.py", "    B, T, V = logits.size()\n",
           "    B, T, V = logits.size()\n    while pad_token_id == 5:\n        pass\n"),
    # signals cannot stop this one without the sandbox: the grader's watchdog must
    Mutant("model.py", "        return self.dropout(self.fc2(F.relu(self.fc1(x))))",
           "        if x.dim() == 2:\n            import signal\n"
           "            signal.signal(signal.SIGALRM, signal.SIG_IGN)\n"
           "            while True:\n                pass\n"
           "        return self.dropout(self.fc2(F.relu(self.fc1(x))))"),
    # every call hangs: every test of the problem would
    Mutant("attention.py", "    d_k = Q.size(-1)\n" + SCORES,
           "    while True:\n        pass\n    d_k = Q.size(-1)\n" + SCORES),
]


@pytest.mark.parametrize("sandbox", [True, False], ids=["sandbox", "no-sandbox"])
def test_endless_loop_costs_at_most_two_timeouts_per_problem(tmp_path, transformer, copy_root, sandbox):
    """A hanging function costs its problem two timeouts at most; the problem's other tests then
    fail at once, saying why, and the other problems are graded as usual."""
    root = copy_root(tmp_path / "root", test_timeout_s=2, watchdog_grace_s=1)
    submission = make_submission(tmp_path / "s", transformer, extra=ENDLESS_LOOPS)
    results = grade("transformer", submission, root=root, sandbox=sandbox)
    check_schema(results, transformer)
    failed = [t for t in results["tests"] if t["status"] == "failed"]
    assert lost(results) == {"lm_loss", "FeedForward", "self_attention"}
    timed_out = collections.Counter(t["tags"][0] for t in failed
                                    if t["output"].startswith(messages.TIMEOUT.format(seconds=2)))
    not_run = collections.Counter(t["tags"][0] for t in failed
                                  if t["output"].startswith(messages.NOT_RUN_TIMEOUTS.split("{")[0]))
    assert sum(timed_out.values()) + sum(not_run.values()) == len(failed), [t["output"] for t in failed]
    assert timed_out["self_attention"] == 2 and not_run["self_attention"] > 5
    assert all(count <= transformer.timeouts_per_problem for count in timed_out.values())
    assert messages.NOT_RUN_TIMEOUTS.format(count=2, problem="self_attention") in [t["output"] for t in failed]


def stand_in_case(transformer, folder: pathlib.Path, top: str) -> pathlib.Path:
    """The reference, with `top` run at the import of attention.py (after its imports)."""
    return make_submission(folder, transformer, extra=[
        Mutant("attention.py", "import torch.nn.functional as F\n", "import torch.nn.functional as F\n" + top)])


ATTENTION_PROBLEMS = {"self_attention", "multi_head_attention", "causal_mask", "causal_multi_head_attention",
                      "scaled_dot_product_attention", "MultiHeadAttention"}


def check_charged_to_attention_only(results: dict, transformer) -> None:
    """Only attention.py's problems lose points (debugging.py imports attention.py)."""
    check_schema(results, transformer)
    assert {p for p, pr in transformer.problems.items() if pr.file == "attention.py"} == ATTENTION_PROBLEMS
    assert lost(results) == ATTENTION_PROBLEMS
    attention_outputs = [t["output"] for t in results["tests"] if set(t["tags"]) & ATTENTION_PROBLEMS]
    assert all(messages.STAND_IN.format(file="attention.py") in o for o in attention_outputs)


@pytest.mark.parametrize("sandbox", [True, False], ids=["sandbox", "no-sandbox"])
def test_a_file_that_cannot_be_imported_is_replaced_for_the_others(tmp_path, transformer, sandbox):
    """sys.exit() or a raise at the top of attention.py costs attention.py's problems only: debugging.py,
    which imports it, is graded with a stand-in for the reference's attention.py."""
    top = "import sys\nsys.exit(3)\n" if sandbox else "raise RuntimeError('broken at import')\n"
    results = grade("transformer", stand_in_case(transformer, tmp_path / "s", top), sandbox=sandbox)
    check_charged_to_attention_only(results, transformer)
    outputs = [t["output"] for t in results["tests"] if t["status"] == "failed"]
    assert all(o.startswith(messages.IMPORT_FAILED.split("{")[0]) for o in outputs), outputs[:3]


def test_hang_at_import_costs_one_timeout_through_the_zip(tmp_path, transformer):
    """An endless loop at the import of attention.py costs one test timeout: the file then counts as
    failed to import, debugging.py gets a stand-in, and the whole run stays under 120 s."""
    results = grade_via_zip("transformer", stand_in_case(transformer, tmp_path / "s", "while True:\n    pass\n"))
    check_charged_to_attention_only(results, transformer)
    timeout = messages.IMPORT_TIMEOUT.format(file="attention.py", seconds=transformer.test_timeout_s)
    failed = [t for t in results["tests"] if t["status"] == "failed"]
    assert all(t["output"].startswith(timeout) for t in failed), [t["output"] for t in failed][:3]
    assert results["execution_time"] < 120  # one timeout (10 s); without the rule, one per test: 480 s
    assert results["execution_time"] < 60 + transformer.test_timeout_s


STAND_IN_PROBE = """
import inspect as _inspect
import attention as _attention
_names, _found = [], 0
for _name in sorted(vars(_attention)):
    _names.append(_name)
    for _look in (_inspect.getsource, _inspect.getsourcefile, _inspect.getfile,
                  lambda o: o.__code__, lambda o: o.__wrapped__):
        try:
            _text = str(_look(getattr(_attention, _name)))
            _found += 1
            print("FOUND", _name, _text[:300])
        except BaseException:
            pass
try:
    print("FOUND module", _inspect.getsource(_attention)[:300])
    _found += 1
except BaseException:
    pass
print("PROBE names=" + ",".join(n for n in _names if not n.startswith("__")), "found=" + str(_found))
"""


def test_no_reference_line_reaches_a_stand_in(tmp_path, transformer):
    """The stand-in in the worker holds stubs that call the grader: a hostile file that reads it
    (inspect, code objects) finds no source, and no line of the reference reaches results.json."""
    from test_hostile import secret_lines

    submission = make_submission(tmp_path / "s", transformer, extra=[
        Mutant("attention.py", "import torch.nn.functional as F\n",
               "import torch.nn.functional as F\nraise ImportError('no')\n"),
        Mutant("debugging.py", "from attention import MultiHeadAttention\n",
               "from attention import MultiHeadAttention\n" + STAND_IN_PROBE)])
    results = grade("transformer", submission)
    text = json.dumps(results)
    probe = next(line for t in results["tests"] for line in t["output"].splitlines() if line.startswith("PROBE"))
    assert "MultiHeadAttention" in probe and "causal_mask" in probe and probe.endswith("found=0"), probe
    assert "FOUND" not in text
    leaked = [line for line in secret_lines() if line in text or json.dumps(line)[1:-1] in text]
    assert not leaked, leaked[:3]


def test_results_written_when_the_tests_cannot_run(tmp_path, transformer, copy_root):
    root = copy_root(tmp_path / "root")
    (root / "tests_public" / "transformer" / "test_attention.py").write_text("import nonexistent_module\n")
    out = tmp_path / "r.json"
    results = grade("transformer", transformer.path(transformer.reference), out, root=root)
    assert json.loads(out.read_text()) == results
    check_schema(results, transformer)
    assert results["score"] == 0
    assert all(t["status"] == "failed" and messages.GRADER_ERROR in t["output"] for t in graded_tests(results))


def test_results_written_for_a_zip_submission_at_depth(tmp_path, transformer):
    reference = transformer.path(transformer.reference)
    archive_path = tmp_path / "upload.zip"
    with zipfile.ZipFile(archive_path, "w") as archive:
        for name in transformer.submission_files:
            archive.write(reference / name, f"homework/final/{name}")
    results = grade("transformer", archive_path, tmp_path / "r.json")
    assert results["score"] == pytest.approx(transformer.total_points)


def test_run_autograder_falls_back_when_python_cannot_start(tmp_path, transformer):
    import os
    import subprocess

    from autograder.build import build_autograder_zip

    root = tmp_path / "ag"
    zip_path = build_autograder_zip(transformer, tmp_path / "dist")
    with zipfile.ZipFile(zip_path) as archive:
        archive.extractall(root / "source")
    (root / "submission").mkdir()
    env = dict(os.environ, AUTOGRADER_ROOT=str(root), AUTOGRADER_PYTHON="/nonexistent/python")
    subprocess.run(["bash", str(root / "source" / "run_autograder")], env=env, check=True, capture_output=True)
    results = json.loads((root / "results" / "results.json").read_text())
    check_schema(results, transformer)
    assert results["score"] == 0


def test_grading_is_deterministic(tmp_path, transformer):
    """20 runs of a submission whose bug shows only through dropout statistics give the same results."""
    from autograder.grade.batch import Entry, run_batch
    from autograder.mutants import affected_tests

    reference = catalogue_module.materialise(transformer, [], tmp_path / "reference")
    submission = make_submission(tmp_path / "s", transformer, "csa-no-attn-dropout")
    affected = affected_tests(transformer, "run", reference, submission)  # the tests that can show the bug
    labels = [f"run{i}" for i in range(20)]
    runs = run_batch(transformer, [Entry("reference", str(reference), record=True)]
                     + [dataclasses.replace(affected, label=label) for label in labels], tmp_path)
    outcomes = [{nodeid: (o.passed, o.summary) for nodeid, o in runs[label].outcomes.items()} for label in labels]
    assert outcomes[0] and all(o == outcomes[0] for o in outcomes)
    assert any(not passed for passed, _ in outcomes[0].values())


def test_a_grader_stopped_by_sigterm_writes_results_and_stops_its_tests(tmp_path, transformer, copy_root):
    """run_autograder's guard stops a grader near the platform's limit with SIGTERM: results.json is
    still written, and the test process and its worker go too."""
    import signal
    import subprocess
    import sys
    import time

    root = copy_root(tmp_path / "root", test_timeout_s=100)
    submission = stand_in_case(transformer, tmp_path / "s", "while True:\n    pass\n")
    out = tmp_path / "r.json"
    command = [sys.executable, "-m", "autograder", "grade", "transformer", str(submission), "-o", str(out)]
    process = subprocess.Popen(command, cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(8)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0
    results = json.loads(out.read_text())
    check_schema(results, transformer)
    assert results["score"] == 0 and all("stopped at the time limit" in t["output"] for t in results["tests"])
    time.sleep(1)
    left = [pid for pid in os.listdir("/proc") if pid.isdigit() and _cmdline_has(pid, str(root))]
    assert not left


def _cmdline_has(pid: str, text: str) -> bool:
    try:
        return text in pathlib.Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False
