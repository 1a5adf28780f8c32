"""Start a sandboxed test process whose zygote shares its imports (the grader's runner uses it).

The runner starts `python -s -c BOOT LAUNCH_JSON ARGS_FILE` with a bare environment. This
process imports torch, the assignment's preload and autograder.sandbox (what zygote.prepare
imports; no tensor op, so it has one thread), then forks the zygote (process.Zygote with
`fork_here`: the child drops to the worker's user, enters the jail and waits for fork
requests), and only then reads ARGS_FILE (pytest's arguments and the test process's real
environment) and becomes the test process: `python -m pytest ...`, in this same process.

So torch is imported once for the grader, the zygote and every worker (its pages are shared,
copy on write), and the zygote still never sees grader state: when it is forked, this
process has read nothing but the submission's path and the sandbox's options (LAUNCH_JSON),
and its environment holds nothing of the grader's (no AUTOGRADER_REFERENCE). Hidden tests,
the reference and the diagnoses are read by the test process after the fork.

Once pytest is done (its report written, the sandbox stopped), the process ends with
`os._exit` after the atexit handlers: tearing down an interpreter that imported torch costs
about half a second to a second (module and object finalisation), and nothing is left to do.
`python -m autograder.sandbox.launch ARGS` runs pytest the same way without a zygote
(`grade --no-sandbox`).
"""
from __future__ import annotations

import atexit
import json
import os
import pathlib
import runpy
import sys

BOOT = "import sys; from autograder.sandbox.launch import main; main(sys.argv[1:])"
KEPT = ("PATH", "TMPDIR", "LANG", "LC_ALL", "PYTHONPATH", "PYTHONHASHSEED", "PYTHONDONTWRITEBYTECODE",
        "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MALLOC_ARENA_MAX", "AUTOGRADER_WORKER_USER",
        "AUTOGRADER_WORKER_PYTHON", "TOKENIZERS_PARALLELISM", "HF_HUB_OFFLINE")


def command(python: str, pytest_command: list[str], env: dict[str, str], submission: pathlib.Path,
            sandbox: dict, args_file: pathlib.Path) -> tuple[list[str], dict[str, str]]:
    """The launcher's command line and bare environment for `pytest_command` (`python -m pytest ...`)
    and its environment `env`; those two are written to `args_file` (the grader's only)."""
    if pytest_command[1:3] != ["-m", "pytest"]:
        raise ValueError(f"not a pytest command: {pytest_command[:3]}")
    fd = os.open(args_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as stream:
        json.dump({"argv": ["pytest", *pytest_command[3:]], "env": env}, stream)
    bare = {key: value for key, value in env.items() if key in KEPT}
    bare.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")  # no thread pool before the fork
    launch = {"submission": str(submission), "sandbox": sandbox}
    return [python, "-s", "-c", BOOT, json.dumps(launch), str(args_file)], bare


def fork_zygote(launch: dict) -> None:
    """Import what workers need, then fork the zygote (process.LAUNCHED) if this process has one thread."""
    from . import process, zygote

    options = launch.get("sandbox", {})
    preload = [str(name) for name in options.get("preload", ())]
    zygote.prepare({"preload": preload})
    if zygote.threads() != 1:  # a thread pool already: forking is not safe; the plugin spawns a zygote
        print(f"sandbox: {zygote.threads()} threads after the imports: the zygote is a process of its own",
              file=sys.stderr)
        return
    limits = dict(process.DEFAULT_LIMITS, **options.get("limits", {}))
    try:
        process.LAUNCHED = process.Zygote(pathlib.Path(launch["submission"]), limits, preload, fork_here=True)
    except process.SandboxUnavailable:
        process.LAUNCHED = None  # the plugin tries again, and reports why


def run_pytest(argv: list[str]) -> None:
    """`python -m pytest ARGV` in this process, then end it at once (never returns)."""
    sys.argv[:] = ["pytest", *argv]
    code = 1
    try:
        runpy.run_module("pytest", run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    finally:
        end(code)


def end(code: int) -> None:
    """Exit without the interpreter's teardown: atexit handlers (temporary folders' cleanup
    among them) run, streams are flushed, then os._exit. Torch's finalizers that unregister its
    operator libraries (one per library, about 140) are left out: the process ends anyway."""
    try:
        _skip_torch_library_finalizers()
        atexit._run_exitfuncs()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001 - a closed stream: nothing to flush
                pass
        os._exit(code)


def _skip_torch_library_finalizers() -> None:
    """Let the atexit pass leave out torch.library's `_del_library` finalizers (weakref.finalize's
    registry is the standard library's own, private: anything unexpected and nothing is skipped)."""
    import weakref

    try:
        for finalizer, info in list(weakref.finalize._registry.items()):
            func = info.func
            if getattr(func, "__name__", "") == "_del_library" and getattr(func, "__module__", "").startswith("torch"):
                finalizer.atexit = False
    except Exception:  # noqa: BLE001 - an optimisation only: exit as before
        pass


def main(argv: list[str]) -> None:
    fork_zygote(json.loads(argv[0]))
    spec = json.loads(pathlib.Path(argv[1]).read_text(encoding="utf-8"))
    os.environ.clear()
    os.environ.update(spec["env"])
    if spec["argv"][:1] != ["pytest"]:
        raise ValueError(f"not pytest's arguments: {spec['argv'][:1]}")
    run_pytest(spec["argv"][1:])


if __name__ == "__main__":
    run_pytest(sys.argv[1:])
