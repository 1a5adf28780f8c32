"""'Likely mistake' on the student's laptop, from the student zip's fingerprints.json (issue 11).

The hashing (robust to float noise, telling different results apart), the table the build
makes (no result close to the reference's, variants with one result pooled), the lookup; then
the real thing: the unpacked student zip's `run_tests.py` names catalogued mistakes, and the zip
holds no reference line, no hidden-test line and no hash of the reference's results.
"""
import json
import pathlib
import re
import subprocess
import sys
import textwrap
import zipfile

import numpy as np
import pytest
import torch

from autograder import build as build_module
from autograder import manifest as manifest_module
from autograder import catalogue as catalogue_module
from autograder.build import fingerprints as build_fingerprints
from autograder.kit import fingerprints, messages

ROOT = manifest_module.ROOT


# ---- hashing ----

def matches(value, reference_value, test="t.py::t", call="f(x)") -> bool:
    """Does `value` match the fingerprint of `reference_value` on some grid?"""
    step = fingerprints.quantum(fingerprints.canonical(reference_value)[2])
    wanted = set(fingerprints.value_hashes(test, call, reference_value, step))
    return bool(set(fingerprints.value_hashes(test, call, value, step)) & wanted)


@pytest.mark.parametrize("size", [1, 4, 16, 64, 648])
def test_float_noise_and_negative_zero_do_not_change_a_fingerprint(size):
    """The same result computed another way (float32 instead of float64, relative noise up to
    1e-6, -0.0 for 0.0) matches, in every one of 200 draws."""
    rng = np.random.default_rng(size)
    for _ in range(200):
        x = rng.normal(size=size) * rng.choice([1e-3, 1.0, 50.0])
        x[rng.random(size) < 0.1] = 0.0
        noisy = x * (1 + 1e-6 * rng.uniform(-1, 1, size=size))
        noisy[x == 0] = -0.0
        assert matches(torch.tensor(noisy, dtype=torch.float32), x)
        assert matches(noisy.astype(np.float32).reshape(size, 1)[:, 0], x)


@pytest.mark.parametrize("size", [1, 16, 64, 648])
def test_a_different_result_has_another_fingerprint(size):
    rng = np.random.default_rng(size)
    for _ in range(100):
        x = rng.normal(size=size)
        changed = x.copy()
        changed[rng.integers(size)] += 0.01 * np.abs(x).max()
        assert not matches(changed, x)
    assert matches(x, x)
    assert not matches(x.reshape(1, size), x)                     # another shape
    step = fingerprints.quantum(x)
    assert not set(fingerprints.value_hashes("t.py::t", "f(x)", x, step)) & set(
        fingerprints.value_hashes("t.py::u", "f(x)", x, step))     # another test
    assert not set(fingerprints.value_hashes("t.py::t", "f(x)", x, step)) & set(
        fingerprints.value_hashes("t.py::t", "g(x)", x, step))     # another call


def test_integers_and_booleans_match_exactly():
    mask = torch.tensor([[True, False], [True, True]])
    assert matches(mask.clone(), mask)
    assert not matches(torch.tensor([[True, True], [True, True]]), mask)
    assert not matches(mask.long(), mask)  # another kind
    assert fingerprints.value_hashes("t", "c", "a string", None) == []


# ---- the table ----

def value_record(test, call, got, expected=None, kind="value"):
    record = {"kind": kind, "test": test, "call": call, "got": fingerprints.canonical(got)}
    if kind == "value":
        record["expected"] = fingerprints.canonical(expected) if expected is not None else None
    return record


RIGHT = np.array([0.25, 0.5, 0.25, 1.0])
WRONG_A = np.array([0.1, 0.8, 0.1, 2.0])
WRONG_B = np.array([0.5, 0.0, 0.5, -1.0])


@pytest.fixture
def table_state():
    """Restore the fingerprints module's state after a test that loads a table or sets a test."""
    saved = dict(fingerprints._state)
    yield fingerprints._state
    fingerprints._state.clear()
    fingerprints._state.update(saved)


def lookup(state, table, test, got, call="f(x)"):
    """What the student's runner says for `got` at `test` and `call` with `table` loaded."""
    from autograder.kit import adapter

    state.update(table=json.loads(json.dumps(table)), test=test, records=None)
    adapter.reset_last_call()
    adapter._state.last_call = call
    return fingerprints.diagnose(got, None)


def test_table_names_each_mistake_at_its_own_test_and_call(table_state):
    table = build_fingerprints.tabulate(
        [("mistake A", [value_record("t.py::t", "f(x)", WRONG_A, RIGHT)]),
         ("mistake B", [value_record("t.py::t", "f(x)", WRONG_B, RIGHT)])],
        [value_record("t.py::t", "f(x)", RIGHT, kind="seen")])
    assert table["mistakes"] == ["mistake A", "mistake B"]
    assert lookup(table_state, table, "t.py::t", torch.tensor(WRONG_A, dtype=torch.float32)) == "mistake A"
    assert lookup(table_state, table, "t.py::t", WRONG_B) == "mistake B"
    assert lookup(table_state, table, "t.py::t", WRONG_A * 1.1) is None          # another mistake
    assert lookup(table_state, table, "t.py::other", WRONG_A) is None            # another test
    assert lookup(table_state, table, "t.py::t", WRONG_A, call="g(x)") is None   # another call


def test_table_drops_results_close_to_the_right_one():
    """A variant's result that is the reference's (to the diagnosis tolerance), or the check's
    expected value, is not fingerprinted: no hash of a right result is shipped."""
    near_right = RIGHT * (1 + 5e-4)
    observed = [("close to the reference", [value_record("t.py::t", "f(x)", near_right, WRONG_B)]),
                ("close to expected", [value_record("t.py::u", "f(x)", WRONG_B, WRONG_B * (1 + 1e-5))]),
                ("kept", [value_record("t.py::t", "f(x)", WRONG_A, RIGHT)])]
    table = build_fingerprints.tabulate(observed, [value_record("t.py::t", "f(x)", RIGHT, kind="seen")])
    assert table["mistakes"] == ["kept"]
    assert list(table["tests"]) == ["t.py::t"]


def test_variants_with_the_same_result_pool_their_mistakes(table_state):
    """Two mistakes that give the same result here (to float noise) cannot be told apart: a
    student whose result is that one is told neither, as the grader does."""
    observed = [("mistake A", [value_record("t.py::t", "f(x)", WRONG_A, RIGHT)]),
                ("mistake B", [value_record("t.py::t", "f(x)", WRONG_A * (1 + 1e-7), RIGHT)]),
                ("mistake C", [value_record("t.py::t", "f(x)", WRONG_B, RIGHT)]),
                ("mistake C", [value_record("t.py::u", "f(x)", WRONG_A, RIGHT)])]
    table = build_fingerprints.tabulate(observed, [])
    assert lookup(table_state, table, "t.py::t", WRONG_A) is None
    assert lookup(table_state, table, "t.py::t", WRONG_B) == "mistake C"
    assert lookup(table_state, table, "t.py::u", WRONG_A) == "mistake C"
    pooled = [row for row in table["tests"]["t.py::t"]["f(x)"] if len(row["mistakes"]) == 2]
    assert pooled and all(set(table["mistakes"][k] for k in row["mistakes"]) == {"mistake A", "mistake B"}
                          for row in pooled)


def test_tests_whose_inputs_change_between_runs_get_no_fingerprint():
    """A test whose checks saw other values in a second run of the reference (its inputs are drawn
    anew: a tokenizer trained with ties broken at random) is left out: a student would not get
    the inputs the variants got."""
    first = [value_record("t.py::t", "f(x)", RIGHT, kind="seen"), value_record("t.py::u", "f(x)", RIGHT, kind="seen")]
    second = [value_record("t.py::t", "f(x)", RIGHT, kind="seen"),
              value_record("t.py::u", "f(x)", RIGHT * 2, kind="seen"),
              value_record("t.py::v", "f(x)", RIGHT, kind="seen")]
    unstable = build_fingerprints.unstable_tests(first, second)
    assert unstable == {"t.py::u", "t.py::v"}
    observed = [("mistake A", [value_record("t.py::t", "f(x)", WRONG_A, RIGHT)]),
                ("mistake B", [value_record("t.py::u", "f(x)", WRONG_B, RIGHT)])]
    table = build_fingerprints.tabulate(observed, first, unstable)
    assert list(table["tests"]) == ["t.py::t"] and table["mistakes"] == ["mistake A"]


def test_errors_are_matched_by_type_and_message(table_state):
    record = {"kind": "error", "test": "t.py::t", "call": "f(x)", "error": ["RuntimeError", "shapes differ"]}
    table = build_fingerprints.tabulate([("mistake E", [record])], [])
    table_state.update(table=table, test="t.py::t", records=None)
    from autograder.kit import adapter

    adapter.reset_last_call()
    adapter._state.last_call = "f(x)"
    assert fingerprints.diagnose_exception("RuntimeError", "shapes differ") == "mistake E"
    assert fingerprints.diagnose_exception("RuntimeError", "other shapes") is None
    assert fingerprints.diagnose_exception("ValueError", "shapes differ") is None


# ---- the student zip ----

@pytest.fixture(scope="module")
def unpacked(tmp_path_factory):
    """{assignment: (manifest, unpacked folder, zip path)} of every student zip."""
    root = tmp_path_factory.mktemp("student")
    found = {}
    for name in ("transformer", "foundations", "training"):
        manifest = manifest_module.load(name)
        path = build_module.build_student_zip(manifest, root / "dist")
        with zipfile.ZipFile(path) as archive:
            archive.extractall(root)
        found[name] = (manifest, root / name, path)
    return found


def catalogue(manifest) -> dict:
    return {m.name: m for m in catalogue_module.load(manifest)[0]}


def with_mistakes(manifest, folder: pathlib.Path, names: list[str], destination: pathlib.Path) -> pathlib.Path:
    """A copy of the unpacked student folder whose files are the reference with these mistakes."""
    import shutil

    shutil.copytree(folder, destination)
    catalogue_module.materialise(manifest, [catalogue(manifest)[n] for n in names], destination)
    return destination


def run(folder, *args):
    return subprocess.run([sys.executable, str(folder / "run_tests.py"), *args], cwd=folder,
                          capture_output=True, text=True, timeout=600)


def diagnoses_shown(stdout: str) -> set[str]:
    prefix = messages.DIAGNOSIS.format(diagnosis="")
    return {line.removeprefix(prefix) for line in stdout.splitlines() if line.startswith(prefix)}


NOSCALE_OTHER_STYLE = textwrap.dedent('''
    def self_attention(S, W_Q, W_K, W_V):
        """Written another way than the catalogue's variant (einsum, float64, a softmax by hand),
        with its mistake: no 1/sqrt(d_k) scaling."""
        S64 = S.double()
        Q = torch.einsum("btd,dk->btk", S64, W_Q.double())
        K = torch.einsum("btd,dk->btk", S64, W_K.double())
        V = torch.einsum("btd,dk->btk", S64, W_V.double())
        scores = torch.einsum("bqk,btk->bqt", Q, K)
        weights = torch.exp(scores - scores.amax(dim=-1, keepdim=True))
        weights = weights / weights.sum(dim=-1, keepdim=True)
        return (weights @ V).to(S.dtype)
''')


def test_catalogued_mistakes_are_named_when_run_from_the_student_zip(unpacked, tmp_path):
    """A function, a module and a scalar loss with a catalogued mistake each, in the unpacked
    transformer zip: each failing public test prints the grader's "Likely mistake" line."""
    manifest, folder, _ = unpacked["transformer"]
    names = ["noscale-self", "block-post-norm", "lm-loss-no-shift"]
    mine = with_mistakes(manifest, folder, names, tmp_path / "transformer")
    result = run(mine, "-q")
    assert result.returncode == 1, result.stdout[-3000:]
    assert diagnoses_shown(result.stdout) == {catalogue(manifest)[n].diagnosis for n in names}, result.stdout[-4000:]
    failed = re.findall(r"^FAILED (\S+)", result.stdout, re.MULTILINE)
    assert failed and all(re.search(r"test_(self_attention|block|lm_loss)", f) for f in failed), failed


def test_the_same_mistake_written_another_way_is_named(unpacked, tmp_path):
    manifest, folder, _ = unpacked["transformer"]
    mine = with_mistakes(manifest, folder, [], tmp_path / "transformer")
    text = (mine / "attention.py").read_text()
    head, rest = text.split("def self_attention", 1)
    (mine / "attention.py").write_text(head + NOSCALE_OTHER_STYLE.lstrip() + "\n\n" + rest.split("\n\n\n", 1)[1])
    result = run(mine, "-q", "--problem", "self_attention")
    assert result.returncode == 1 and " failed" in result.stdout, result.stdout[-3000:]  # 2 tests: by hand, formula
    assert diagnoses_shown(result.stdout) == {catalogue(manifest)["noscale-self"].diagnosis}, result.stdout[-3000:]


def test_a_numpy_mistake_is_named_and_nothing_without_the_fingerprints(unpacked, tmp_path):
    manifest, folder, _ = unpacked["foundations"]
    mine = with_mistakes(manifest, folder, ["sdpa-noscale"], tmp_path / "foundations")
    result = run(mine, "-q", "--problem", "scaled_dot_product_attention")
    assert result.returncode == 1, result.stdout[-3000:]
    assert diagnoses_shown(result.stdout) == {catalogue(manifest)["sdpa-noscale"].diagnosis}, result.stdout[-3000:]
    (mine / "fingerprints.json").unlink()
    again = run(mine, "-q", "--problem", "scaled_dot_product_attention")
    assert again.returncode == 1 and not diagnoses_shown(again.stdout), again.stdout[-3000:]


def _lines(folder: pathlib.Path) -> set[str]:
    return {line.strip() for path in folder.rglob("*.py") for line in path.read_text(encoding="utf-8").splitlines()}


def test_student_zips_hold_no_reference_line_and_no_hidden_test_line(unpacked):
    """Nothing in either zip, fingerprints.json included, is a line of the reference's solution
    or of a hidden test (as tests/test_hostile.py's secret_lines)."""
    given = _lines(ROOT / "starter") | _lines(ROOT / "tests_public") | _lines(ROOT / "autograder")
    secret = {line for line in (_lines(ROOT / "tests_hidden") | _lines(ROOT / "reference")) - given if len(line) >= 30}
    assert secret
    for name, (_, _, path) in unpacked.items():
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            assert f"{name}/fingerprints.json" in names
            assert not any("reference" in n or "hidden" in n for n in names)
            shipped = {line.strip() for n in names for line in archive.read(n).decode().splitlines()}
        assert not secret & shipped, (name, sorted(secret & shipped)[:5])


REFERENCE_HASHES = '''
import json, pathlib, sys, tempfile
from autograder import manifest as manifest_module
from autograder.build import fingerprints as build_fingerprints
from autograder.kit import fingerprints

name, table_path, out = sys.argv[1:]
manifest = manifest_module.load(name)
table = json.loads(pathlib.Path(table_path).read_text())
tests = build_fingerprints.public_tests(manifest)
with tempfile.TemporaryDirectory() as tmp:
    seen = build_fingerprints.observe(manifest, manifest.path(manifest.reference), [n for n, _ in tests],
                                      pathlib.Path(tmp), every_check=True)
steps = {row["quantum"] for calls in table["tests"].values() for rows in calls.values() for row in rows}
places = {(test, call) for test, calls in table["tests"].items() for call in calls}
hashes = set()
for record in seen:
    if record["kind"] == "seen" and record["got"] is not None:
        for test, call in places | {(record["test"], record["call"])}:   # its own place, and every other
            for step in steps:
                hashes.update(fingerprints.canonical_hashes(test, call, record["got"], step))
pathlib.Path(out).write_text(json.dumps({
    "hashes": sorted(hashes), "checks": sum(r["kind"] == "seen" for r in seen),
    "public": sorted(fingerprints.test_key(n) for n, _ in tests)}))
'''


@pytest.mark.parametrize("name", ["transformer", "foundations", "training"])
def test_fingerprints_hold_no_hash_of_a_reference_result_and_name_public_tests_only(unpacked, tmp_path, name):
    """The reference's result at every check of every public test, hashed the same way (with every
    step the table uses, at every test and call it names), is not in the table; the table names
    public tests only, and the catalogue's diagnoses only."""
    manifest, folder, _ = unpacked[name]
    table = json.loads((folder / "fingerprints.json").read_text())
    out = tmp_path / "reference.json"
    done = subprocess.run([sys.executable, "-c", REFERENCE_HASHES, name, str(folder / "fingerprints.json"), str(out)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600,
                          env={**build_fingerprints._child_env(manifest)})
    assert done.returncode == 0 and out.is_file(), done.stdout[-3000:] + done.stderr[-3000:]
    reference = json.loads(out.read_text())
    shipped = {h for calls in table["tests"].values() for rows in calls.values() for row in rows for h in row["hashes"]}
    assert table["tests"] and shipped and reference["checks"] > 20 and reference["hashes"]
    assert not shipped & set(reference["hashes"])
    assert set(table["tests"]) <= set(reference["public"])
    hidden = {f"{path.name}::{line.split('def ', 1)[1].split('(')[0]}"
              for folder in manifest.tests if not folder.public for path in manifest.path(folder.path).glob("test_*.py")
              for line in path.read_text().splitlines() if line.startswith("def test_")}
    assert hidden and not {key.split("[")[0] for key in table["tests"]} & (hidden - set(reference["public"]))
    assert set(table["mistakes"]) <= {m.diagnosis for m in catalogue(manifest).values() if m.diagnosis and m.problems}
