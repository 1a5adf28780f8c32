"""Fixtures for the harness's own tests."""
import pathlib
import shutil
import textwrap

import pytest

from autograder import manifest as manifest_module

ROOT = manifest_module.ROOT


@pytest.fixture(scope="session")
def transformer():
    return manifest_module.load("transformer")


@pytest.fixture(scope="session")
def foundations():
    return manifest_module.load("foundations")


@pytest.fixture(scope="module")
def remote(request, tmp_path_factory):
    """The test module's SUBMISSION (the text of a `student.py`) in a sandboxed worker."""
    from autograder.sandbox.client import RemoteSubmission

    folder = tmp_path_factory.mktemp("submission")
    (folder / "student.py").write_text(textwrap.dedent(request.module.SUBMISSION))
    submission = RemoteSubmission(folder)
    yield submission
    submission.sandbox.stop()


@pytest.fixture
def copy_root():
    return _copy_root


def _copy_root(destination: pathlib.Path, assignment: str = "transformer", **limits) -> pathlib.Path:
    """A copy of the repository parts grading needs, with the manifest's [limits] changed."""
    manifest = manifest_module.load(assignment)
    for folder in ["autograder", f"assignments/{assignment}", manifest.reference, manifest.starter,
                   *[t.path for t in manifest.tests]]:
        shutil.copytree(ROOT / folder, destination / folder, ignore=shutil.ignore_patterns("__pycache__"))
    toml = destination / "assignments" / assignment / "assignment.toml"
    text = toml.read_text()
    for key, value in limits.items():
        text = text.replace("[limits]\n", f"[limits]\n{key} = {value}\n", 1)
        lines = [line for line in text.splitlines()
                 if not (line.startswith(f"{key} =") and not line.endswith(f"= {value}"))]
        text = "\n".join(lines) + "\n"
    toml.write_text(text)
    return destination
