"""A warm launcher for `regrade --warm`: grading runs whose test process is forked from a process
that imported torch once, instead of a new Python that imports it again (about 3 CPU seconds of
each `transformer` grade).

`grade` starts its test process as sandbox/launch.py describes: `python -s -c BOOT LAUNCH ARGS`
with a bare environment; that process imports torch and the assignment's preload, forks the
sandbox's zygote, then reads pytest's arguments and its real environment and becomes pytest.
Here a server, started once per worker with the same bare environment and the same `python -s
-c`, imports the same modules (zygote.prepare: no tensor op, one thread) and then, for each
grading run, forks a child that starts a session of its own, moves to the run's folder, writes
to the run's log, and runs launch.main with the run's LAUNCH and ARGS: from there on, the test
process of a cold start, with torch already imported. The server has read nothing but the
preload list, as the launcher before its fork; the run's secrets reach the child after its
zygote is forked, as before.

The server freezes its objects (gc.freeze, as the zygote does before it forks workers): a test
process's garbage collections, pytest's at the end of the session among them, then skip the
imported modules' objects (about 7% of a test process's CPU time), and touch none of their pages.

Nothing outlives the grader: when the worker process that started the server dies (even by
SIGKILL: its end of the server's stdin closes, or the server finds a new parent), the server
kills each running child's session and whatever the child's sandbox user still runs, then ends;
each child asks to die with the server (PR_SET_PDEATHSIG, on Linux), its zygote dies with it
(sandbox/process.py) and the sandbox's workers with their zygote (sandbox/zygote.py).

The grader sees a `WarmChild` where it had a subprocess.Popen: its pid (the child's session and
process group, which the runner kills), `poll()` and `wait()`, with the exit status the server
reaps and reports (negative: killed by that signal, as Popen gives it).

This file is run by path (`runpy`), not imported as part of autograder.regrade, so the server
and its children import only the standard library and what launch.main imports.
"""
from __future__ import annotations

import ctypes
import gc
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
import traceback

BOOT = "import runpy, sys; runpy.run_path(sys.argv[1], run_name='__warm__')['serve'](sys.argv[2])"
PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int) -> None:
    """Ask the kernel to SIGKILL this process when its parent (`parent`, single-threaded) ends, and
    end now if it already has. Linux only (prctl); elsewhere the parent's own cleanup is all."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (AttributeError, OSError):
        return
    if os.getppid() != parent:
        os._exit(1)


def _child(request: dict, server: int) -> None:
    """In the forked child: become the grading run's test process (never returns)."""
    code = 1
    try:
        os.setsid()
        die_with_parent(server)
        os.chdir(request["cwd"])
        log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.closerange(3, os.sysconf("SC_OPEN_MAX"))   # as Popen's close_fds: not the server's report pipe
        from autograder.sandbox import launch

        if request.get("pycache"):
            _cache_bytecode_after_the_zygote(launch, request["pycache"])
        launch.main([request["launch"], request["args"]])
        code = 0
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    except BaseException:  # noqa: BLE001 - reported in the run's log, as a crashed child
        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001
                pass
        os._exit(code)


def _cache_bytecode_after_the_zygote(launch, folder: str) -> None:
    """Once launch.main has forked the zygote, let this test process keep the bytecode it compiles
    (pytest's assertion rewriting of the test modules and plugins, the grader's own modules) in
    `folder` (sys.pycache_prefix: nothing is written beside a source), and read it back in the
    next grading run: `grade` compiles them afresh each time (PYTHONDONTWRITEBYTECODE), about half
    a second of each run. The zygote, and the sandbox's workers forked from it, keep this
    process's flags from before: they write no bytecode, as in `grade`."""
    fork_zygote = launch.fork_zygote

    def fork_then_cache(options: dict) -> None:
        fork_zygote(options)
        sys.pycache_prefix, sys.dont_write_bytecode = folder, False

    launch.fork_zygote = fork_then_cache


def import_pytest() -> None:
    """Import pytest and its built-in plugins, as each test process would at its start (about 0.2
    CPU seconds a grading run). Public code, like torch: the zygote that a child forks holds it
    too, as it may hold anything a submission could import itself. Not the plugins that the test
    process names with -p (pytest-timeout, the kit's and the grader's): pytest rewrites their
    asserts when it imports them, and warns about a module already imported."""
    import importlib

    import pytest  # noqa: F401 - imported for the children
    from _pytest.config import builtin_plugins

    for name in sorted(builtin_plugins - {"pytester", "pytester_assertions"}):  # (pytest imports pytester itself)
        importlib.import_module(f"_pytest.{name}")


def serve(preload_json: str) -> None:
    """The server's loop: one JSON request a line on stdin -> "pid N"; each child's end -> "exit N CODE"."""
    from autograder.sandbox import zygote

    zygote.prepare({"preload": json.loads(preload_json)})
    import_pytest()
    out = os.fdopen(os.dup(1), "w", buffering=1)
    if zygote.threads() != 1:
        out.write("cold\n")
        return
    gc.collect()
    gc.freeze()   # what is imported now is never scanned again by a child's collector (nor copied on write)
    out.write("ready\n")
    buffer, children, grader = b"", set(), os.getppid()
    try:
        while True:
            ready, _, _ = select.select([0], [], [], 0.02)
            for pid in list(children):
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    children.discard(pid)
                    out.write(f"exit {pid} {os.waitstatus_to_exitcode(status)}\n")
            if os.getppid() != grader:
                return   # the grader is gone (killed: the stdin pipe may not have closed yet)
            if not ready:
                continue
            data = os.read(0, 65536)
            if not data:
                return   # the grader is gone, or closed the launcher
            buffer += data
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                out.flush()
                server = os.getpid()
                pid = os.fork()
                if pid == 0:
                    _child(json.loads(line), server)
                children.add(pid)
                out.write(f"pid {pid}\n")
    finally:
        kill_children(children)


def kill_children(children: set[int]) -> None:
    """Kill each running child's session (its test process and zygote) and its sandbox user's
    processes (what a worker started in a session of its own), as the runner does after a run."""
    for pid in children:
        for kill, target in ((os.killpg, pid), (os.kill, pid)):
            try:
                kill(target, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
    if not children:
        return
    from autograder.sandbox.process import kill_leftovers

    for pid in children:
        kill_leftovers(pid)


class WarmChild:
    """What the runner holds of a test process forked by the server (Popen's part that it uses)."""

    def __init__(self, launcher: "WarmLauncher", pid: int):
        self.launcher, self.pid, self.returncode = launcher, pid, None

    def poll(self):
        if self.returncode is None:
            self.returncode = self.launcher.status(self.pid)
        return self.returncode

    def wait(self, timeout: float | None = None):
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired("warm child", timeout)
            time.sleep(0.01)
        return self.returncode


class WarmLauncher:
    """The server (started on the first run, with that run's bare environment; started again when
    the environment changes or the server died) and the statuses it reports."""

    def __init__(self):
        self.process = None
        self.key = None
        self.lock = threading.Lock()
        self.statuses: dict[int, int] = {}
        self.pids: list[int] = []
        self.cold = False
        self.spawned = 0   # test processes forked (a run whose child died or hung has several)
        self.pycache: str | None = None   # a private folder where test processes keep their bytecode

    def _start(self, python: str, env: dict, preload: list[str]) -> None:
        self.close()
        self.process = subprocess.Popen([python, "-s", "-c", BOOT, os.path.abspath(__file__), json.dumps(preload)],
                                        env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.DEVNULL, start_new_session=True, cwd="/")
        first = self.process.stdout.readline().decode().strip()
        if first != "ready":
            self.cold = True
            self.close()
            return
        threading.Thread(target=self._read, args=(self.process,), daemon=True).start()

    def _read(self, process) -> None:
        for raw in process.stdout:
            parts = raw.decode().split()
            with self.lock:
                if parts[:1] == ["pid"]:
                    self.pids.append(int(parts[1]))
                elif parts[:1] == ["exit"]:
                    self.statuses[int(parts[1])] = int(parts[2])

    def status(self, pid: int):
        with self.lock:
            if pid in self.statuses:
                return self.statuses.pop(pid)
        if self.process is None or self.process.poll() is not None:
            return -9   # the server is gone, and with it any report: the child is treated as killed
        return None

    def spawn(self, command: list[str], env: dict, cwd, log) -> WarmChild | None:
        """Start a grading run's test process (launch.command's `command` and bare `env`) from the
        server; None when it cannot (the caller then starts it cold)."""
        if self.cold or command[1:4] != ["-s", "-c", self._launch_boot()] or len(command) != 6:
            return None
        preload = json.loads(command[4]).get("sandbox", {}).get("preload", [])
        key = (command[0], tuple(sorted(env.items())), tuple(preload))
        if self.process is None or self.process.poll() is not None or key != self.key:
            self._start(command[0], env, preload)
            self.key = key
            if self.process is None:
                return None
        with self.lock:
            self.pids.clear()
        request = {"cwd": str(cwd), "log": str(log), "launch": command[4], "args": command[5],
                   "pycache": self.pycache}
        self.process.stdin.write((json.dumps(request) + "\n").encode())
        self.process.stdin.flush()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with self.lock:
                if self.pids:
                    self.spawned += 1
                    return WarmChild(self, self.pids.pop())
            if self.process.poll() is not None:
                return None
            time.sleep(0.002)
        return None

    @staticmethod
    def _launch_boot() -> str:
        from autograder.sandbox.launch import BOOT as LAUNCH_BOOT

        return LAUNCH_BOOT

    def close(self) -> None:
        if self.process is not None:
            try:
                self.process.stdin.close()
            except OSError:
                pass
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
            self.process = None
