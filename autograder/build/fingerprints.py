"""fingerprints.json of the student zip: "Likely mistake" on a laptop, without the reference.

For every diagnosed wrong variant of mutants.toml (a `diagnosis` and at least one problem), the
public tests of its problems run on it, as a student runs them (no reference, no isolation, in
one process, trusted code), and kit/fingerprints.py records, at each failing check, the test,
the last call into student code and the result (`got`), or the error the variant raised. The
public tests also run twice on the reference, recording what every check compares. Then:

- a test whose checks compared different values in the two runs gets no fingerprint: its inputs
  change from run to run, so a student's inputs would not be the variants' (`unstable_tests`);

- a variant's result too close to the right one is dropped: close to the check's `expected` or
  to the reference's own result at that test and call (within the grader's diagnosis tolerance or
  two rounding steps), so that no shipped hash is a hash of a right result;
- variants with different mistakes whose results at one test and call are that close to each
  other share their mistakes (a student matching one matches the other: no diagnosis), as the
  grader names a mistake only when every matching variant agrees;
- what is left is hashed (kit/fingerprints.py says how) and written with the diagnoses.

Nothing else goes in: no result of the reference, no input, no hidden test. The child process
(`python -m autograder.build.fingerprints NAME OUT`) does the work; the table is cached under
dist/.cache/, keyed by a digest of everything it depends on, so rebuilding costs nothing.
"""
from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import typing

from .. import manifest as manifest_module
from .. import starter

if typing.TYPE_CHECKING:  # imported where used: `build` from a cached table needs none of them (nor numpy, nor pytest)
    from .. import catalogue, impact

PACKAGE = pathlib.Path(__file__).resolve().parent.parent
CLOSE_STEPS = 2                 # results within this many rounding steps count as the same
GRADER_RTOL, GRADER_ATOL = 1e-3, 1e-4   # what diagnosis.py counts as the same result


# ---- the parent: cached, computed in a child process ----

def fingerprints_json(manifest: manifest_module.Manifest) -> bytes:
    """The bytes of the student zip's fingerprints.json for `manifest`."""
    cache = manifest.root / "dist" / ".cache" / f"fingerprints-{manifest.name}-{inputs_digest(manifest)}.json"
    if cache.is_file():
        return cache.read_bytes()
    cache.parent.mkdir(parents=True, exist_ok=True)
    with locked(cache.parent / f"fingerprints-{manifest.name}.lock"):
        if not cache.is_file():  # another build may have made it while this one waited
            data = _compute_in_child(manifest)
            partial = cache.with_suffix(f".{os.getpid()}.tmp")
            partial.write_bytes(data)
            os.replace(partial, cache)
            for stale in cache.parent.glob(f"fingerprints-{manifest.name}-*.json"):
                if stale != cache:  # made from older inputs
                    stale.unlink(missing_ok=True)
    return cache.read_bytes()


@contextlib.contextmanager
def locked(path: pathlib.Path):
    """One build at a time computes a table (parallel test workers wait for the first)."""
    try:
        import fcntl
    except ImportError:  # Windows: no lock, at worst the table is computed twice
        yield
        return
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def inputs_digest(manifest: manifest_module.Manifest, public_only: bool = True) -> str:
    """A digest of everything the table depends on: the harness, the assignment's folder
    (manifest, mutants, variant files), the reference, the public tests (every test, unless
    `public_only`), the library versions."""
    folders = [PACKAGE, manifest.manifest_path.parent, manifest.path(manifest.reference),
               *[manifest.path(t.path) for t in manifest.tests if t.public or not public_only]]
    digest = hashlib.sha256()
    for folder in folders:
        for path in sorted(folder.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                digest.update(str(path.relative_to(folder)).encode() + b"\0" + path.read_bytes() + b"\0")
    for package in ("torch", "numpy", "pytest"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            digest.update(f"{package}=={importlib.metadata.version(package)}".encode())
    digest.update(sys.version.encode())
    return digest.hexdigest()[:20]


def _child_env(manifest: manifest_module.Manifest) -> dict[str, str]:
    """As a student runs the tests: no reference (so no isolation), one thread, fixed hashing."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "PYTEST", "AUTOGRADER"))}
    env.update(PYTHONPATH=str(manifest.root), PYTHONDONTWRITEBYTECODE="1", PYTHONHASHSEED="0",
               OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return env


def _compute_in_child(manifest: manifest_module.Manifest) -> bytes:
    with tempfile.TemporaryDirectory(prefix="fingerprints-") as tmp:
        out = pathlib.Path(tmp) / "fingerprints.json"
        done = subprocess.run([sys.executable, "-m", "autograder.build.fingerprints", manifest.name, str(out),
                               str(manifest.root)], cwd=tmp, env=_child_env(manifest), capture_output=True,
                              text=True, stdin=subprocess.DEVNULL)
        if done.returncode != 0 or not out.is_file():
            raise SystemExit(f"the fingerprints of {manifest.name} could not be computed:\n"
                             f"{done.stdout[-3000:]}{done.stderr[-3000:]}")
        return out.read_bytes()


# ---- the child: run the public tests on the variants and the reference ----

def _pytest_args(manifest: manifest_module.Manifest) -> list[str]:
    return [*[str(manifest.path(t.path)) for t in manifest.tests if t.public],
            "-p", "autograder.kit.fingerprints", "-p", "autograder.kit.plugin",
            "-p", "no:cacheprovider", "-p", "no:logging", "-p", "no:warnings", "-p", "no:xdist", "-c", os.devnull,
            "--rootdir", str(manifest.root), "--confcutdir", str(manifest.root), "-q", "--no-header", "-rN",
            "--timeout", f"{manifest.test_timeout_s:g}", "--timeout-method", "signal",
            "--given", json.dumps(starter.given_names(manifest)),   # as the student zip's conftest.py sets them
            *(["--budgets", json.dumps(manifest.budgets)] if manifest.budgets else [])]


def public_tests(manifest: manifest_module.Manifest) -> list[tuple[str, list[str]]]:
    """(node id, problems) of every public test, collected in this process."""
    import pytest

    from ..kit.plugin import problems_of

    found: list[tuple[str, list[str]]] = []

    class PublicTestCollector:
        def pytest_collection_finish(self, session):
            found.extend((item.nodeid, problems_of(item)) for item in session.items)

    code = pytest.main([*_pytest_args(manifest), "--collect-only"], plugins=[PublicTestCollector()])
    if code != 0 or not found:
        raise SystemExit(f"the public tests of {manifest.name} could not be collected (pytest exit {code})")
    return found


def observe(manifest: manifest_module.Manifest, folder: pathlib.Path, nodeids: list[str],
            workdir: pathlib.Path, every_check: bool = False,
            recorder: impact.CallRecorder | None = None) -> list[dict]:
    """What fails (and, with `every_check`, what every check compares) when the public tests
    `nodeids` run on the files in `folder` (`recorder`: which functions each test runs)."""
    import pytest

    from ..kit import fingerprints

    only = workdir / f"only-{len(list(workdir.glob('only-*')))}.txt"
    only.write_text("\n".join(nodeids), encoding="utf-8")
    records: list[dict] = []
    fingerprints.record(records, every_check)
    try:
        pytest.main([*_pytest_args(manifest), "--submission", str(folder), "--only", str(only)],
                    plugins=[recorder] if recorder is not None else None)
    finally:
        fingerprints.record(None)
    return records


def diagnosed_mutants(manifest: manifest_module.Manifest) -> list[catalogue.Mutant]:
    """The wrong variants that name a mistake (those the grader replays)."""
    from .. import catalogue

    return [m for m in catalogue.load(manifest)[0] if m.diagnosis and m.problems]


def compute(manifest: manifest_module.Manifest, workdir: pathlib.Path) -> dict:
    """The fingerprints table of `manifest` (in this process; see `fingerprints_json`)."""
    from .. import catalogue, impact

    wrong = diagnosed_mutants(manifest)
    if not wrong or not manifest.diagnoses_before_publish:  # the grader would not name them at once either
        return tabulate([], [])
    tests = public_tests(manifest)
    concerned = set().union(*(m.problems for m in wrong))
    checked = [n for n, problems in tests if concerned & set(problems)]
    reference_folder = catalogue.materialise(manifest, [], workdir / "reference")
    recorder = impact.CallRecorder(reference_folder)
    runs = [observe(manifest, reference_folder, checked, workdir, every_check=True, recorder=recorder),
            observe(manifest, reference_folder, checked, workdir, every_check=True)]
    reference, unstable = runs[0], unstable_tests(*runs)
    records = recorder.records()
    observed = []
    for mutant in wrong:
        mine = [n for n, problems in tests if set(mutant.problems) & set(problems)]
        folder = catalogue.materialise(manifest, [mutant], workdir / "variants" / mutant.name)
        functions, whole = impact.changes(reference_folder, folder, manifest.submission_files)
        if not whole:  # a test that runs no changed function passes, as on the reference: nothing to record
            mine = [n for n in impact.tests_running(records, functions) if n in mine]
        if mine:
            observed.append((mutant.diagnosis, observe(manifest, folder, mine, workdir)))
    return tabulate(observed, reference, unstable)


def unstable_tests(first: list[dict], second: list[dict]) -> set[str]:
    """Tests whose checks compared different values in two runs of the reference: their inputs
    change from run to run (a tokenizer trained with ties broken at random, say), so a student's
    run would not see the inputs the variants saw. They get no fingerprints."""
    def values(records):
        found: dict[str, list] = {}
        for record in records:
            if record["kind"] == "seen":
                found.setdefault(record["test"], []).append((record["call"], record["got"]))
        return found

    a, b = values(first), values(second)
    return {test for test in a.keys() | b.keys()
            if len(a.get(test, [])) != len(b.get(test, []))
            or any(x[0] != y[0] or not _same_bits(x[1], y[1]) for x, y in zip(a[test], b[test]))}


def _same_bits(a: tuple | None, b: tuple | None) -> bool:
    import numpy as np

    if a is None or b is None:
        return a is b
    return a[0] == b[0] and a[1] == b[1] and bool(np.array_equal(a[2], b[2], equal_nan=a[0] == "f"))


# ---- the table ----

def _near(a: tuple | None, b: tuple | None, step: float | None) -> bool:
    """Are two canonical values the same result: same kind and shape, and equal (integers,
    booleans) or close (floats: the grader's diagnosis tolerance, or CLOSE_STEPS rounding steps)?"""
    import numpy as np

    if a is None or b is None or a[0] != b[0] or a[1] != b[1]:
        return False
    x, y = a[2], b[2]
    if a[0] != "f":
        return bool(np.array_equal(x, y))
    same_nonfinite = (x == y) | (np.isnan(x) & np.isnan(y))
    with np.errstate(invalid="ignore"):
        gap = np.where(same_nonfinite, 0.0, np.abs(x - y))
    gap = np.nan_to_num(gap, nan=np.inf)
    return bool(np.all(gap <= GRADER_ATOL + GRADER_RTOL * np.abs(y))) or bool(np.all(gap <= CLOSE_STEPS * (step or 0)))


def _entries(observed: list[tuple[str, list[dict]]], reference: list[dict], unstable: set[str]) -> list[dict]:
    """One entry per recorded failure of a wrong variant that is not too close to a right result,
    in a test whose inputs are the same in every run."""
    from ..kit import fingerprints

    right: dict[tuple, list] = {}
    for record in reference:
        if record["kind"] == "seen" and record["got"] is not None:
            right.setdefault((record["test"], record["call"]), []).append(record["got"])
    entries = []
    for sentence, records in observed:
        for record in records:
            where = (record["test"], record["call"])
            if record["test"] is None or record["test"] in unstable:
                continue
            if record["kind"] == "error":
                entries.append({"where": where, "kind": "error", "quantum": None, "got": None, "mistakes": {sentence},
                                "hashes": [fingerprints.error_hash(*where, *record["error"])]})
                continue
            got = record["got"]
            if record["kind"] != "value" or got is None:
                continue
            step = fingerprints.quantum(got[2]) if got[0] == "f" else None
            if any(_near(got, value, step) for value in [record["expected"], *right.get(where, [])]):
                continue  # too close to the right result to be told apart from it
            entries.append({"where": where, "kind": "value", "quantum": step, "got": got, "mistakes": {sentence},
                            "hashes": fingerprints.canonical_hashes(*where, got, step)})
    return entries


def _share_mistakes(entries: list[dict]) -> None:
    """Entries at one test and call whose results are the same (close, or a hash in common) pool
    their mistakes, transitively: a student matching one of them is told nothing if they differ."""
    group = list(range(len(entries)))

    def root(k: int) -> int:
        while group[k] != k:
            group[k] = group[group[k]]
            k = group[k]
        return k

    for i, a in enumerate(entries):
        for j in range(i):
            b = entries[j]
            if a["where"] != b["where"] or a["kind"] != b["kind"]:
                continue
            steps = [s for s in (a["quantum"], b["quantum"]) if s is not None]
            if set(a["hashes"]) & set(b["hashes"]) or _near(a["got"], b["got"], max(steps, default=None)):
                group[root(i)] = root(j)
    pooled: dict[int, set] = {}
    for k, entry in enumerate(entries):
        pooled.setdefault(root(k), set()).update(entry["mistakes"])
    for k, entry in enumerate(entries):
        entry["mistakes"] = pooled[root(k)]


def tabulate(observed: list[tuple[str, list[dict]]], reference: list[dict], unstable: set[str] = frozenset()) -> dict:
    """The fingerprints table from what the wrong variants ((diagnosis, records), ...) and the
    reference (records of every check) did, leaving out the `unstable` tests: {"format",
    "mistakes": [sentences], "tests": {test: {call: [{"kind", "quantum", "hashes", "mistakes": [indices]}]}}}."""
    from ..kit import fingerprints

    entries = _entries(observed, reference, unstable)
    _share_mistakes(entries)
    sentences = sorted({s for entry in entries for s in entry["mistakes"]})
    index = {s: k for k, s in enumerate(sentences)}
    tests: dict[str, dict[str, list]] = {}
    for entry in entries:
        test, call = entry["where"]
        row = {"kind": entry["kind"], "quantum": entry["quantum"], "hashes": entry["hashes"],
               "mistakes": sorted(index[s] for s in entry["mistakes"])}
        calls = tests.setdefault(test, {}).setdefault(call, [])
        if row not in calls:
            calls.append(row)
    for calls in tests.values():
        for rows in calls.values():
            rows.sort(key=lambda row: (row["kind"], row["hashes"]))
    return {"format": fingerprints.FORMAT, "mistakes": sentences, "tests": tests}


def dumps(table: dict) -> bytes:
    return (json.dumps(table, indent=1, sort_keys=True) + "\n").encode()


def main(argv: list[str]) -> int:
    name, out, root = argv
    manifest = manifest_module.load(name, root)
    with tempfile.TemporaryDirectory(prefix="variants-") as tmp:
        table = compute(manifest, pathlib.Path(tmp))
    pathlib.Path(out).write_bytes(dumps(table))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
