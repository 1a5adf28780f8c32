"""`python -m autograder precompile NAME...`: the bytecode grading runs would compile afresh.

Grading runs write no bytecode (runner.child_env sets PYTHONDONTWRITEBYTECODE: nothing beside
the hidden tests or in the submission's folder), and on Gradescope each run starts in a fresh
container, so without this every process of every run compiles the harness, and pytest rewrites
the test modules and plugins, again. setup.sh runs it once, in the image; `make test` runs it
first.
"""
from __future__ import annotations

import compileall
import pathlib
import subprocess
import sys
import tempfile

from ..manifest import Manifest
from . import runner


def precompile(manifest: Manifest) -> None:
    """Compile the harness and the tests (`compileall`; not the reference, a few small files
    that `grade reference/NAME` would then see as a submission with a __pycache__), then collect the tests once
    with the grading run's own command line and bytecode writing on, which keeps pytest's
    rewriting of the test modules and plugins. Python and pytest check each cached file against
    its source's time and size, so a changed source is compiled again."""
    folders = [manifest.root / "autograder", *[manifest.path(t.path) for t in manifest.tests]]
    for folder in folders:
        compileall.compile_dir(str(folder), quiet=1)
    with tempfile.TemporaryDirectory(prefix="precompile-") as tmp:
        command = runner.pytest_command(manifest, sys.executable, pathlib.Path(tmp) / "events.jsonl", None,
                                        sandbox=False) + ["--collect-only"]
        env = runner.child_env(manifest, pathlib.Path(tmp))
        del env["PYTHONDONTWRITEBYTECODE"]
        done = subprocess.run(command, cwd=tmp, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if done.returncode != 0:
            raise SystemExit(f"the tests of {manifest.name} could not be collected:\n"
                             f"{done.stdout[-3000:]}{done.stderr[-3000:]}")
