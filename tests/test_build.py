import hashlib
import os
import pathlib
import stat
import subprocess
import sys
import zipfile

import pytest

from autograder import build as build_module

ROOT = pathlib.Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def zips(tmp_path_factory, transformer):
    dist = tmp_path_factory.mktemp("dist")
    return build_module.build_autograder_zip(transformer, dist), build_module.build_student_zip(transformer, dist)


def digest(path):
    return hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()


def test_same_inputs_same_bytes(zips, tmp_path, transformer):
    again = (build_module.build_autograder_zip(transformer, tmp_path),
             build_module.build_student_zip(transformer, tmp_path))
    assert [digest(p) for p in zips] == [digest(p) for p in again]


def test_autograder_zip_layout(zips):
    with zipfile.ZipFile(zips[0]) as archive:
        names = set(archive.namelist())
        for script in ("setup.sh", "run_autograder"):
            assert script in names
            assert stat.S_IMODE(archive.getinfo(script).external_attr >> 16) == 0o755
        assert {"requirements.txt", "fallback_results.json", "autograder/__main__.py",
                "assignments/transformer/assignment.toml", "assignments/transformer/mutants.toml",
                "reference/transformer/model.py"} <= names
        assert any(n.startswith("tests_hidden/transformer/test_") for n in names)
        assert "torch==2.13.0" in archive.read("requirements.txt").decode()
        assert "@" not in archive.read("run_autograder").decode().split("grade ")[1].split()[0]


def test_student_zip_has_no_reference_and_no_hidden_test(zips, transformer):
    reference = transformer.path(transformer.reference)
    solution_lines, given_lines = set(), set()
    for path in reference.glob("*.py"):
        inside = False
        for line in path.read_text().splitlines():
            if line.strip() == "# BEGIN SOLUTION":
                inside = True
            elif line.strip() == "# END SOLUTION":
                inside = False
            elif len(line.strip()) > 25:
                (solution_lines if inside else given_lines).add(line.strip())
    solution_lines -= given_lines  # e.g. the buggy layer's __init__, given to students, equals the fixed one
    hidden_lines = {line.strip() for path in (ROOT / "tests_hidden").rglob("*.py")
                    for line in path.read_text().splitlines() if len(line.strip()) > 40}
    with zipfile.ZipFile(zips[1]) as archive:
        names = archive.namelist()
        assert all(n.startswith("transformer/") for n in names)
        assert not any("reference" in n or "hidden" in n for n in names)
        kit = {f"transformer/autograder/kit/{path.relative_to(ROOT / 'autograder/kit').as_posix()}"
               for path in (ROOT / "autograder/kit").rglob("*") if path.is_file() and "__pycache__" not in path.parts
               and path.suffix in {".py", ".txt", ""}}  # its code, and its data (kit/data/reviews: a small corpus)
        ours = {n for n in names if n.startswith("transformer/autograder/")}
        assert ours == kit | {"transformer/autograder/__init__.py"}  # the kit, whole, and nothing else of ours
        assert {"transformer/attention.py", "transformer/run_tests.py", "transformer/README.md",
                "transformer/tests/test_attention.py", "transformer/autograder/kit/plugin.py"} <= set(names)
        zip_lines = {line.strip() for n in names for line in archive.read(n).decode().splitlines()}
    assert solution_lines and not solution_lines & zip_lines
    public_lines = {line.strip() for path in (ROOT / "tests_public").rglob("*.py")
                    for line in path.read_text().splitlines()}
    assert not (hidden_lines - public_lines) & zip_lines


def run_student_zip(zip_path, tmp_path, replace_with=None):
    with zipfile.ZipFile(zip_path) as archive:
        archive.extractall(tmp_path)
    folder = tmp_path / "transformer"
    if replace_with:
        for name in ("attention.py", "model.py", "debugging.py"):
            (folder / name).write_bytes((replace_with / name).read_bytes())
    return subprocess.run([os.sys.executable, "run_tests.py", "-q"], cwd=folder, capture_output=True, text=True)


def test_student_runner_on_the_starter_fails_everything(zips, tmp_path):
    result = run_student_zip(zips[1], tmp_path)
    assert result.returncode == 1
    assert " passed" not in result.stdout and " failed" in result.stdout
    assert "autograder/" not in result.stdout  # the student sees their own files only


def test_student_runner_passes_on_a_correct_solution(zips, tmp_path, transformer):
    result = run_student_zip(zips[1], tmp_path, transformer.path(transformer.reference))
    assert result.returncode == 0, result.stdout
    assert " failed" not in result.stdout


def fake_bin(folder: pathlib.Path, name: str, body: str) -> None:
    path = folder / name
    path.write_text("#!/usr/bin/env bash\n" + body + "\n")
    path.chmod(0o755)


@pytest.mark.parametrize("gpu", [False, True])
def test_setup_sh_picks_the_torch_build(zips, tmp_path, gpu):
    """setup.sh installs the CPU build from PyTorch's index without a GPU, the CUDA build with one."""
    root = tmp_path / "ag"
    with zipfile.ZipFile(zips[0]) as archive:
        archive.extractall(root / "source")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "log"
    # a fake python3 whose venv holds a fake python that logs its pip calls
    fake_bin(bin_dir, "python3", f'''
if [ "$1 $2" = "-m venv" ]; then
  [ "${{3:-}}" = "--help" ] && exit 0
  mkdir -p "$3/bin"; printf '#!/usr/bin/env bash\\necho "$@" >> {log}\\n' > "$3/bin/python"
  chmod +x "$3/bin/python"; exit 0
fi
exit 0''')
    if gpu:
        fake_bin(bin_dir, "nvidia-smi", "exit 0")
    fake_bin(bin_dir, "useradd", f'echo useradd "$@" >> {log}')
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "AUTOGRADER_ROOT": str(root), "HOME": str(tmp_path),
           "AUTOGRADER_WORKER_USER": "no-such-user-for-this-test"}
    result = subprocess.run(["bash", str(root / "source" / "setup.sh")], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    calls = log.read_text().splitlines()
    torch_call = next(c for c in calls if "torch==2.13.0" in c)
    assert ("download.pytorch.org/whl/cpu" in torch_call) is (not gpu)
    assert any("-r" in c and "requirements.txt" in c for c in calls)
    assert "-m autograder precompile transformer" in calls   # the image keeps the grading runs' bytecode
    if os.geteuid() == 0:  # as on Gradescope: the worker's user is made, and source/ is closed to it
        assert any(c.startswith("useradd") and c.endswith("no-such-user-for-this-test") for c in calls)
        assert (root / "source").stat().st_mode & 0o777 == 0o700


def test_precompile_writes_the_bytecode_grading_reads(tmp_path, copy_root):
    """`precompile` (setup.sh, make test) leaves the harness's and the tests' bytecode, and
    pytest's rewriting of the test modules, where grading runs (which write none) find them; a
    grading run's collection then compiles none of them."""
    import importlib.util

    from autograder import manifest as manifest_module
    from autograder.grade.precompile import precompile
    from autograder.grade.runner import child_env, pytest_command

    root = copy_root(tmp_path / "root")
    assert not list(root.rglob("*.pyc"))
    manifest = manifest_module.load("transformer", root)
    precompile(manifest)
    for source in [root / "autograder/kit/plugin.py", root / "autograder/grader/plugin.py",
                   root / "autograder/sandbox/launch.py"]:
        assert pathlib.Path(importlib.util.cache_from_source(str(source))).is_file(), source
    assert not list(manifest.path(manifest.reference).rglob("__pycache__"))  # graded as a folder by tests
    for folder in [manifest.path(t.path) for t in manifest.tests]:
        rewritten = {p.name.split(".")[0] for p in folder.glob("__pycache__/*-pytest-*.pyc")}
        assert rewritten == {p.stem for p in folder.glob("test_*.py")}, folder
    before = {p: p.stat().st_mtime_ns for p in root.rglob("*.pyc")}
    # the grading run's own command (collecting only), with a probe that lists what it compiles
    command = pytest_command(manifest, sys.executable, tmp_path / "events.jsonl", None, sandbox=False)
    env = child_env(manifest, tmp_path)
    probe = ("import sys, builtins, runpy; compiled = []; real = builtins.compile\n"
             "def compile(source, filename, *a, **k):\n"
             "    compiled.append(str(filename)); return real(source, filename, *a, **k)\n"
             "builtins.compile = compile\n"
             f"sys.argv = ['pytest', *{command[3:] + ['--collect-only']!r}]\n"
             "try:\n    runpy.run_module('pytest', run_name='__main__')\n"
             "except SystemExit:\n    pass\n"
             f"print('COMPILED', [f for f in compiled if f.startswith({str(root)!r}) or 'pytest_timeout' in f])\n")
    done = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert "COMPILED []" in done.stdout, done.stdout[-2000:] + done.stderr[-2000:]
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*.pyc")} == before


def test_precompile_caches_leaves_no_table_for_a_test_to_compute(tmp_path, monkeypatch):
    """`precompile --caches` (make test, before pytest) computes dist/.cache's tables for each
    assignment; the student zip's fingerprints and the mutant checks' reference run are then read,
    never computed, by the tests (which would otherwise wait for each other on the tables' locks)."""
    from autograder import cli
    from autograder import manifest as manifest_module
    from autograder import mutants
    from autograder.build import fingerprints
    from autograder.grade import batch

    assert cli.main(["precompile", "--caches", "training"]) == 0

    def computed(*args, **kwargs):
        raise AssertionError("a table was computed again")

    monkeypatch.setattr(fingerprints, "_compute_in_child", computed)
    monkeypatch.setattr(batch, "run_batch", computed)
    manifest = manifest_module.load("training")
    assert fingerprints.fingerprints_json(manifest)
    run, calls = mutants.reference_run(manifest, tmp_path)
    assert run.collected and calls.is_file()


def test_fill_caches_computes_both_tables_of_every_assignment(monkeypatch):
    """`mutants.fill_caches` asks for each assignment's fingerprints table and reference run (the
    test above cannot tell, once an earlier run left the tables in dist/.cache)."""
    import threading

    from autograder import manifest as manifest_module
    from autograder import mutants

    asked, lock = [], threading.Lock()

    def recorder(kind):
        def record(manifest, *args):
            with lock:
                asked.append((kind, manifest.name))
        return record

    monkeypatch.setattr(mutants.fingerprints, "fingerprints_json", recorder("fingerprints"))
    monkeypatch.setattr(mutants, "reference_run", recorder("reference run"))
    mutants.fill_caches([manifest_module.load(name) for name in ("transformer", "foundations")], jobs=2)
    assert sorted(asked) == [("fingerprints", "foundations"), ("fingerprints", "transformer"),
                             ("reference run", "foundations"), ("reference run", "transformer")]


def _minimum_python(specifier: str) -> tuple[int, int]:
    """The lowest 3.x minor version a Requires-Python specifier allows, e.g. ">=3.11.0" -> (3, 11)."""
    from packaging.specifiers import SpecifierSet

    allowed = SpecifierSet(specifier)
    return next((3, minor) for minor in range(0, 40) if allowed.contains(f"3.{minor}.99"))


def test_python_version_claims_match_the_pins():
    """The handouts, README, Makefile and pyproject claim the Python that the pinned packages
    (read from their installed metadata, `Requires-Python`) really need: not lower, not higher."""
    import importlib.metadata
    import re

    from autograder import manifest as manifest_module

    lines = (ROOT / "requirements.txt").read_text().splitlines()
    lines += (ROOT / "autograder/requirements-student.txt").read_text().splitlines()
    for name in ("transformer", "foundations", "training"):
        lines += manifest_module.load(name).extra_requirements
    pins = {}
    for line in lines:
        line = line.split("#")[0].strip()
        if "==" in line and ";" not in line:  # a marker (tomli for old Pythons) is no requirement
            package, version = (part.strip() for part in line.split("=="))
            pins[package] = version
    assert {"torch", "numpy", "pandas", "transformers"} <= set(pins)
    needed = {}
    for package, version in pins.items():
        installed = importlib.metadata.distribution(package)
        assert installed.version.split("+")[0] == version, (package, installed.version, version)
        needed[package] = _minimum_python(installed.metadata.get("Requires-Python") or ">=3.0")
    floor = max(needed.values())
    assert floor >= (3, 11), needed  # numpy 2.4, pandas 3.1 and transformers 5 refuse 3.10
    claim = f"{floor[0]}.{floor[1]}"
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert f'requires-python = ">={claim}"' in pyproject
    texts = {path: (ROOT / path).read_text() for path in
             ("README.md", "Makefile", "assignments/transformer/README.md", "assignments/foundations/README.md")}
    for path, text in texts.items():
        claims = set(re.findall(r"Python (3\.\d+)\+|Python (3\.\d+) or newer|(3\.\d+) or newer", text))
        stated = {next(c for c in found if c) for found in claims}
        assert stated == {claim}, (path, stated, claim)
    setup = (ROOT / "autograder/templates/setup.sh").read_text()
    assert f"sys.version_info < ({floor[0]}, {floor[1]})" in setup
