"""The zygote: the process that forks workers (runs in the jail; started by process.Zygote).

It is started exactly as a worker used to be (the worker's user, chroot, resource-free
environment, `python -s -E`, PR_SET_PDEATHSIG), imports what workers need (torch, the
assignment's `preload` list, autograder.sandbox.server), and then waits on its control
socket. It never runs a tensor op, so no thread pool (OpenMP, MKL) exists in it when it
forks: a forked child of a process with threads can hang on a lock one of them held.

Control channel: an AF_UNIX socket pair with the test process. Each message is one JSON
object in one datagram-sized send; file descriptors travel beside it (SCM_RIGHTS):

- zygote -> grader, once: {"ready": true, "preloaded": [...], "threads": n};
- {"op": "fork", "workdir": path} + fds [requests, answers, output] -> {"pid": n} (or {"error"});
  the grader makes the two pipes and the output file and sends the worker's ends, so the
  zygote never holds a pipe end of the grader's: it closes its copies once it has forked;
- {"op": "wait", "pid": n, "timeout": s} -> {"status": exit code as subprocess gives it
  (negative: killed by that signal), or null if the child had not exited in time};
- {"op": "ping"} -> {"alive": true} (the grader asks after a worker imported a student file:
  that import may have killed the zygote).

The child (a worker) starts a session of its own, asks to die with the zygote
(PR_SET_PDEATHSIG is not inherited over fork), puts its output file on 1 and 2, makes
its fresh work folder its home and temporary folder, and serves requests as
server.main does: one thread, warm_up, rlimits, bounded output.

Nothing here is trusted by the grader: a worker runs as the same user and could kill or
disturb the zygote; the grader checks every pid and status it is told, and starts a new
zygote if this one is gone.
"""
from __future__ import annotations

import contextlib
import ctypes
import gc
import importlib
import json
import os
import signal
import socket
import sys
import time

MESSAGE_SIZE = 8192       # bytes of one control message, at most
FDS = 3                   # the worker's request pipe, answer pipe and output file
PR_SET_PDEATHSIG, PR_SET_DUMPABLE = 1, 4
KEPT_STATUSES = 64        # exit statuses of reaped children kept for a later "wait"


def preload(names: list[str]) -> list[str]:
    """Import each of `names` ("module" or "module:Name", the latter for packages such as
    transformers that load a class's module only when it is asked for); return those that
    imported. One that fails is skipped: the worker imports it again, and reports why."""
    done = []
    for name in names:
        module, _, attr = str(name).partition(":")
        try:
            loaded = importlib.import_module(module)
            if attr:
                getattr(loaded, attr)
        except Exception:  # noqa: BLE001 - a missing optional library is the worker's business
            continue
        done.append(name)
    return done


def import_meta_kernels() -> None:
    """Import what torchkit.warm_up's first meta-device op would (symbolic shapes, sympy: ~0.7 s),
    without running it: no tensor op runs in the zygote. Each worker still runs warm_up."""
    from ..kit import torchkit

    torchkit._stand_in_for_dynamo()  # as warm_up does first: the real torch._dynamo is not imported
    with contextlib.suppress(ImportError):
        importlib.import_module("torch.fx.experimental.symbolic_shapes")


def threads() -> int:
    """How many threads this process has (1 before forking: no thread pool exists yet)."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return -1


def _prctl(option: int, value: int) -> None:
    ctypes.CDLL(None, use_errno=True).prctl(option, value)


class Zygote:
    """The zygote's loop: answer fork and wait requests until the grader closes the socket."""

    def __init__(self, control: socket.socket, config: dict):
        self.control, self.config = control, config
        self.statuses: dict[int, int] = {}
        self.children: set[int] = set()

    def reply(self, message: dict) -> None:
        self.control.sendall(json.dumps(message).encode())

    def run(self) -> None:
        while True:
            try:
                data, fds, _, _ = socket.recv_fds(self.control, MESSAGE_SIZE, FDS)
            except (ConnectionError, OSError):
                break
            if not data:
                break
            try:
                request = json.loads(data)
                self.reply(self.handle(request, fds))
            except (ValueError, TypeError, KeyError) as exc:
                self.reply({"error": f"bad request: {exc}"})
            finally:
                for fd in fds:
                    _close(fd)
        self.end_children()

    def end_children(self) -> None:
        """The grader hung up: kill and reap our workers (their CPU time then counts in ours)."""
        for pid in list(self.children):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        for pid in list(self.children):
            with contextlib.suppress(OSError):
                os.waitpid(pid, 0)
        self.children.clear()

    def handle(self, request: dict, fds: list[int]) -> dict:
        if request["op"] == "fork":
            if len(fds) != FDS:
                return {"error": f"a fork needs {FDS} file descriptors, got {len(fds)}"}
            self.reap()  # not after: the grader checks the new worker is our child, even if it died at once
            return {"pid": self.fork(str(request["workdir"]), fds)}
        if request["op"] == "wait":
            return {"status": self.wait(int(request["pid"]), float(request.get("timeout", 1)))}
        if request["op"] == "ping":
            return {"alive": True}
        return {"error": f"unknown op {request['op']!r}"}

    def fork(self, workdir: str, fds: list[int]) -> int:
        sys.stdout.flush(), sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                self.control.close()
                become_worker(workdir, fds, self.config)
                code = 0
            except BaseException as exc:  # noqa: BLE001 - the worker's last words go to its output file
                last_words(exc, self.config["submission"])
            finally:
                with contextlib.suppress(Exception):
                    sys.stdout.flush(), sys.stderr.flush()
                os._exit(code)  # never back into the zygote's loop
        self.children.add(pid)
        return pid

    def reap(self) -> None:
        """Collect the exit status of every child that has ended (no zombie stays)."""
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                self.children.clear()
                return
            if pid == 0:
                return
            self.children.discard(pid)
            self.statuses[pid] = os.waitstatus_to_exitcode(status)
            while len(self.statuses) > KEPT_STATUSES:
                self.statuses.pop(next(iter(self.statuses)))

    def wait(self, pid: int, timeout: float):
        """The exit code of child `pid`, waiting up to `timeout` seconds (at most 10) for it."""
        deadline = time.monotonic() + min(max(timeout, 0.0), 10.0)
        while True:
            self.reap()
            if pid in self.statuses:
                return self.statuses.pop(pid)
            if pid not in self.children or time.monotonic() >= deadline:
                return None
            time.sleep(0.005)


def become_worker(workdir: str, fds: list[int], config: dict) -> None:
    """In the forked child: become a worker of its own and serve until the grader hangs up."""
    zygote = os.getppid()
    os.setsid()  # a session of its own: the grader kills the worker's group, never the zygote
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != zygote:  # the zygote died before the line above: so do we
        os._exit(1)
    _prctl(PR_SET_DUMPABLE, 1)  # the zygote is not dumpable; a worker is, as before (its /proc is its user's)
    _first_to_go_when_memory_runs_out()
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    requests, answers, output = fds
    os.dup2(output, 1), os.dup2(output, 2)
    _close(output)
    root = config["work_root"]
    if os.path.dirname(os.path.realpath(workdir)) != os.path.realpath(root):
        raise RuntimeError(f"{workdir} is not a folder of {root}")
    os.chdir(workdir)
    os.environ.update(HOME=workdir, TMPDIR=workdir, TORCHINDUCTOR_CACHE_DIR=workdir)
    import tempfile

    tempfile.tempdir = None  # the zygote may have cached its own
    from . import server

    server.main([str(requests), str(answers), json.dumps({
        "submission": config["submission"], "workdir": workdir, "limits": config.get("limits", {}),
        "output_limit": config["output_limit"]})])


OOM_SCORE_ADJ = 1000  # the most: the kernel's out-of-memory killer picks this process before any other


def _first_to_go_when_memory_runs_out() -> None:
    """Make this worker the out-of-memory killer's first choice. Its address-space limit (3 GB)
    is above a small container's memory (Gradescope's default: 768 MB), so student code can fill
    the container before the limit stops it; the kernel then kills the worker (a crash that costs
    its test) rather than the grader, which must write results.json. Raising one's own score needs
    no privilege; where /proc is not writable, this does nothing."""
    with contextlib.suppress(OSError):
        with open("/proc/self/oom_score_adj", "w") as score:
            score.write(str(OOM_SCORE_ADJ))


def last_words(exc: BaseException, submission: str) -> None:
    """Print why the worker ends, its student frames only: the grader's own frames (their paths,
    its code) are not the student's to see."""
    from ..kit import adapter

    try:
        sys.stderr.write(adapter.format_student_traceback(exc, submission) + "\n")
    except BaseException:  # noqa: BLE001 - a hostile __str__: the type alone
        with contextlib.suppress(BaseException):
            sys.stderr.write(f"{type(exc).__name__[:100]}\n")


def _close(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.close(fd)


def main(argv: list[str]) -> None:
    """python -c BOOT CONTROL_FD CONFIG: preload, then serve fork requests."""
    control = socket.socket(fileno=int(argv[0]))
    config = json.loads(argv[1])
    serve(control, config, prepare(config))


def prepare(config: dict) -> list[str]:
    """Import what every worker needs (no tensor op: no thread pool); return the preloads that imported."""
    import tempfile

    # The zygote can write nowhere, so tempfile.gettempdir() would raise, and with it importing
    # torch._dynamo (it makes its cache folder at import), half-way: a worker could then never
    # import it (transformers' Trainer needs it). Existing folders are enough to import; each
    # worker resets both to its own folder.
    tempfile.tempdir = os.getcwd()
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = os.getcwd()
    loaded = preload(["torch", *config.get("preload", [])])
    from . import server  # noqa: F401 - what every worker runs, imported once here

    import_meta_kernels()
    return loaded


def serve(control: socket.socket, config: dict, loaded: list[str]) -> None:
    """Wait for fork requests (the imports are done)."""
    _prctl(PR_SET_DUMPABLE, 0)  # workers run as this user: none may read or write the zygote's memory
    gc.collect()
    gc.freeze()  # what is imported now stays out of the collector's way: fewer pages copied on write
    zygote = Zygote(control, config)
    zygote.reply({"ready": True, "preloaded": loaded, "threads": threads()})
    zygote.run()


def become_zygote(control: socket.socket, config: dict) -> None:
    """In a child forked by launch.py's process (already unprivileged and confined): the imports were
    made before the fork, from the grader's copy of autograder; later ones come from the jail's copy."""
    autograder = sys.modules["autograder"]  # imported by launch.py, whose process this is

    lib = os.path.join(config["path"][0], "autograder")
    sys.path[:] = [*config["path"], *[p for p in sys.path if p not in config["path"]]]
    autograder.__path__[:] = [lib]
    for name in ("kit", "sandbox"):
        package = sys.modules.get(f"autograder.{name}")
        if package is not None:
            package.__path__[:] = [os.path.join(lib, name)]
    sys.argv[:] = ["zygote"]
    serve(control, config, prepare(config))
