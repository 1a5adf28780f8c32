"""`python -m autograder build NAME`: the Gradescope autograder zip and the student handout zip.

dist/NAME-autograder.zip (what Gradescope unpacks into /autograder/source):

    setup.sh, run_autograder        from autograder/templates/, at the root
    requirements.txt                the grader's pins, plus the manifest's extra_requirements
    fallback_results.json           every problem failed: used if the grader cannot even start
    autograder/                     this harness
    assignments/NAME/assignment.toml (and mutants.toml), the reference folder, every test folder

dist/NAME-student.zip, all under NAME/:

    README.md (the handout), the starter files, tests/ (public tests only),
    autograder/kit/ (what the tests import), conftest.py, run_tests.py,
    problems.json (the problems in the handout's order, their points and how many tests,
    public and hidden, share them: the runner's order, `--problem` and its points table),
    requirements.txt (the student pins plus the manifest's extra_requirements),
    fingerprints.json (hashes of the diagnosed wrong variants' results on the public tests, with
    their diagnoses: "Likely mistake" on the student's laptop; see build/fingerprints.py)

dist/NAME-student.ipynb: the same handout as a notebook, generated from the same files
(build/notebook.py): stub cells, check cells, the support files embedded in its setup cell.

Both are reproducible: entries sorted, fixed timestamps and permissions, so the same
inputs give the same bytes. The student zip never holds reference code or hidden tests.
"""
from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import tempfile
import zipfile

from .. import manifest as manifest_module
from .. import starter as starter_module
from ..gradescope import failed_run
from . import notebook as notebook_module
from .fingerprints import fingerprints_json

PACKAGE = pathlib.Path(__file__).resolve().parent.parent
TEMPLATES = PACKAGE / "templates"
FIXED_TIME = (2020, 1, 1, 0, 0, 0)
EXECUTABLE = {"setup.sh", "run_autograder", "run_tests.py"}


def _pin(requirements: str, package: str) -> str:
    for line in requirements.splitlines():
        if line.split("==")[0].strip() == package:
            return line.split("==")[1].split(";")[0].strip()
    raise ValueError(f"{package} is not pinned")


def _package_files(subfolder: str = "") -> dict[str, bytes]:
    files = {}
    base = PACKAGE / subfolder if subfolder else PACKAGE
    for path in sorted(base.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix in {".py", ".txt", ".sh", ""}:
            files["autograder/" + path.relative_to(PACKAGE).as_posix()] = path.read_bytes()
    return files


def _folder_files(root: pathlib.Path, folder: str, prefix: str | None = None) -> dict[str, bytes]:
    base = root / folder
    prefix = folder if prefix is None else prefix
    return {f"{prefix}/{p.relative_to(base).as_posix()}".lstrip("/"): p.read_bytes()
            for p in sorted(base.rglob("*"))
            if p.is_file() and "__pycache__" not in p.parts and not p.name.startswith(".")}


def write_zip(path: pathlib.Path, files: dict[str, bytes]) -> pathlib.Path:
    """A reproducible zip: sorted names, fixed time, 0755 for scripts and 0644 otherwise."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(files):
            info = zipfile.ZipInfo(name, date_time=FIXED_TIME)
            mode = 0o755 if pathlib.PurePosixPath(name).name in EXECUTABLE else 0o644
            info.external_attr = (0o100000 | mode) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, files[name])
    return path


def autograder_files(manifest: manifest_module.Manifest) -> dict[str, bytes]:
    grader_requirements = (PACKAGE / "requirements-grader.txt").read_text(encoding="utf-8")
    requirements = grader_requirements + "".join(f"{line}\n" for line in manifest.extra_requirements)
    substitutions = {"@ASSIGNMENT@": manifest.name, "@TORCH_VERSION@": _pin(grader_requirements, "torch")}
    files = {}
    for template in ("setup.sh", "run_autograder"):
        text = (TEMPLATES / template).read_text(encoding="utf-8")
        for key, value in substitutions.items():
            text = text.replace(key, value)
        files[template] = text.encode()
    files["requirements.txt"] = requirements.encode()
    fallback = failed_run(manifest, "the grader could not start")
    files["fallback_results.json"] = (json.dumps(fallback, indent=2) + "\n").encode()
    files.update({k: v for k, v in _package_files().items() if "/templates/" not in k})
    files[f"assignments/{manifest.name}/assignment.toml"] = manifest.manifest_path.read_bytes()
    mutants = manifest.manifest_path.parent / "mutants.toml"
    if mutants.is_file():  # its diagnoses name students' mistakes
        files[f"assignments/{manifest.name}/mutants.toml"] = mutants.read_bytes()
    files.update(_folder_files(manifest.root, manifest.reference))
    for folder in manifest.tests:
        files.update(_folder_files(manifest.root, folder.path))
    return files


def student_files(manifest: manifest_module.Manifest) -> dict[str, bytes]:
    top = manifest.name
    files = {f"{top}/{name}": text.encode() for name, text in starter_module.generate(manifest).items()}
    files[f"{top}/README.md"] = manifest.path(manifest.handout).read_bytes()
    for folder in manifest.tests:
        if folder.public:
            files.update(_folder_files(manifest.root, folder.path, f"{top}/tests"))
    files[f"{top}/autograder/__init__.py"] = b'"""The part of the course autograder that the public tests use."""\n'
    for name, data in _package_files("kit").items():  # the kit, whole: it imports nothing else of ours
        files[f"{top}/{name}"] = data
    for name in ("conftest.py", "run_tests.py"):
        files[f"{top}/{name}"] = (TEMPLATES / "student" / name).read_bytes()
    files[f"{top}/problems.json"] = (json.dumps(problem_table(manifest), indent=2) + "\n").encode()
    files[f"{top}/fingerprints.json"] = fingerprints_json(manifest)
    student_requirements = (PACKAGE / "requirements-student.txt").read_text(encoding="utf-8")
    files[f"{top}/requirements.txt"] = (student_requirements + "".join(
        f"{line}\n" for line in manifest.extra_requirements)).encode()
    return files


def collect(manifest: manifest_module.Manifest) -> list[dict]:
    """Every test of every folder, as the plugin's "collected" event lists them
    ({"nodeid", "file", "name", "doc", "problems"}): pytest --collect-only in a child process."""
    with tempfile.TemporaryDirectory(prefix="collect-") as tmp:
        report = pathlib.Path(tmp) / "report.jsonl"
        env = dict(os.environ, PYTHONPATH=str(manifest.root), PYTHONDONTWRITEBYTECODE="1")
        command = [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "autograder.kit.plugin",
                   "-p", "no:cacheprovider", "-c", os.devnull, "--rootdir", str(manifest.root),
                   "--confcutdir", str(manifest.root),
                   "--report", str(report), *[folder.path for folder in manifest.tests]]
        done = subprocess.run(command, cwd=manifest.root, env=env, capture_output=True, text=True)
        lines = report.read_text(encoding="utf-8").splitlines() if report.exists() else []
        collected = [event for event in map(json.loads, lines) if event.get("event") == "collected"]
        if done.returncode != 0 or not collected:
            raise SystemExit(f"the tests of {manifest.name} could not be collected:\n"
                             f"{done.stdout[-3000:]}{done.stderr[-3000:]}")
        return collected[0]["tests"]


def problem_table(manifest: manifest_module.Manifest) -> dict:
    """problems.json of the student zip: each problem in the manifest's (the handout's) order,
    its points, and the number of its public and hidden tests. A problem's points are split
    equally over all its tests, so a public test of problem p is worth points / (public + hidden);
    `hidden_tests` is the hidden tests' total weight where the manifest weighs them (a public test
    weighs 1: the formula holds). Also the manifest's training budgets per device (kit/devices.py
    reads them), and the handout's own functions and classes in the submitted files (`given`:
    the student zip's conftest.py gives them to the plugin, as the grader does)."""
    tests = collect(manifest)
    table = []
    for name, spec in manifest.problems.items():
        mine = [t for t in tests if name in t["problems"]]
        weight = dict(manifest.weighted_tests(name, tests))   # a weight naming no hidden test stops the build
        public = sum(1 for t in mine if (manifest.folder_of(t["file"]) or manifest_module.NO_FOLDER).public)
        table.append({"name": name, "points": spec.points, "file": spec.file,
                      "public_tests": public, "hidden_tests": sum(weight[t["nodeid"]] for t in mine) - public})
    return {"assignment": manifest.name, "title": manifest.title, "problems": table, "budgets": manifest.budgets,
            "given": starter_module.given_names(manifest)}


def build_autograder_zip(manifest: manifest_module.Manifest, dist: pathlib.Path) -> pathlib.Path:
    return write_zip(dist / f"{manifest.name}-autograder.zip", autograder_files(manifest))


def build_student_zip(manifest: manifest_module.Manifest, dist: pathlib.Path) -> pathlib.Path:
    return write_zip(dist / f"{manifest.name}-student.zip", student_files(manifest))


def build(name: str, dist: str | pathlib.Path | None = None,
          root: str | pathlib.Path = manifest_module.ROOT) -> tuple[pathlib.Path, pathlib.Path]:
    """Build both zips of assignment `name` into `dist` (default: ROOT/dist), and the handout
    notebook beside them (`notebook_path`)."""
    manifest = manifest_module.load(name, root)
    stale = starter_module.stale(manifest)
    if stale:
        raise SystemExit(f"starter files out of date with the reference: {', '.join(stale)}; "
                         f"run `python -m autograder starter {name}`")
    dist = pathlib.Path(dist) if dist else manifest.root / "dist"
    files = student_files(manifest)
    student_zip = write_zip(dist / f"{manifest.name}-student.zip", files)
    notebook_module.write(manifest, dist, files)
    return build_autograder_zip(manifest, dist), student_zip


def notebook_path(name: str, dist: str | pathlib.Path | None = None,
                  root: str | pathlib.Path = manifest_module.ROOT) -> pathlib.Path:
    """Where `build` writes the handout notebook."""
    return (pathlib.Path(dist) if dist else pathlib.Path(root) / "dist") / f"{name}-student.ipynb"
