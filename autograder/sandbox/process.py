"""The worker's process: an unprivileged user, resource limits, a folder of its own (no torch here).

Used by sandbox.py (in the test process) to start workers, and by the grader's runner to
kill whatever a worker's user left running (a `setsid` grandchild escapes a group kill).
"""
from __future__ import annotations

import contextlib
import ctypes
import json
import os
import pathlib
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile

from ..kit import messages

WORKER_PACKAGES = ("kit", "sandbox")  # what the worker imports: autograder.kit and autograder.sandbox, whole
DEFAULT_USER = "autograder-worker"   # made by setup.sh; run_autograder sets AUTOGRADER_WORKER_USER to it
NAMELESS_UID_BASE = 1_500_000_000    # elsewhere the worker's uid is this + the test process's pid
# rlimits of the worker: address space (import torch needs ~0.7 GB with one thread), processes
# (of its user, threads included), file size (its output), open files, core dumps
DEFAULT_LIMITS = {"as": 3 << 30, "nproc": 256, "fsize": 16 << 20, "nofile": 256, "core": 0}
OUTPUT_LIMIT = 1800       # characters of student output passed on per call (under plugin.STDOUT_LIMIT: the
                          # note of how much was cut survives the cut of a test's output)
BOOT = ("import sys, json; c = json.loads(sys.argv[3]); sys.path[:0] = c['path']; "
        "from autograder.sandbox.server import main; main(sys.argv[1:])")


class SandboxUnavailable(Exception):
    """The worker could not be started: a problem on the grader's side."""


def worker_user(test_pid: int | None = None) -> tuple[int, int] | None:
    """(uid, gid) the worker runs as, or None to keep the grader's (when not root).

    With AUTOGRADER_WORKER_USER (set by run_autograder on Gradescope, where setup.sh made the
    user), that user. Otherwise a user with no name and no files, of its own for this test
    process (NAMELESS_UID_BASE + its pid): killing "every process of the worker's user" then
    never touches another grading run on the same machine.
    """
    if os.geteuid() != 0:
        return None
    name = os.environ.get("AUTOGRADER_WORKER_USER")
    if name:
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            raise SandboxUnavailable(f"the user {name!r} (AUTOGRADER_WORKER_USER) does not exist") from None
        if entry.pw_uid == 0:
            raise SandboxUnavailable(f"the user {name!r} is root")
        return entry.pw_uid, entry.pw_gid
    uid = NAMELESS_UID_BASE + (os.getpid() if test_pid is None else test_pid)
    return uid, uid


def _open_to_others(path: str) -> bool:
    """Can a user other than the owner reach and run `path` (o+x on it and each parent folder)?"""
    path = os.path.realpath(path)
    parts = pathlib.Path(path).parents
    try:
        return all(os.stat(p).st_mode & 0o001 for p in [path, *parts])
    except OSError:
        return False


def worker_python(dropping: bool) -> str:
    """An interpreter the worker's user can run: ours, else a system Python of the same version."""
    configured = os.environ.get("AUTOGRADER_WORKER_PYTHON")
    if configured:
        return configured
    if not dropping:
        return sys.executable
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    for candidate in (sys.executable, f"/usr/bin/python{version}", f"/usr/local/bin/python{version}"):
        if os.path.exists(candidate) and _open_to_others(candidate):
            return candidate
    raise SandboxUnavailable(f"no Python {version} that an unprivileged user can run")


SYSTEM_PATHS = ("/usr", "/bin", "/lib", "/lib32", "/lib64", "/etc", "/dev", "/proc", "/sys")


def _mount(source, target, fstype, flags, data=None) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    enc = lambda v: None if v is None else str(v).encode()  # noqa: E731
    if libc.mount(enc(source), enc(target), enc(fstype), flags, enc(data)) != 0:
        raise OSError(ctypes.get_errno(), f"mount {target}")


def confine(new_root: str, read_only: list[str], writable: list[str], workdir: str) -> bool:
    """Make the filesystem the worker sees hold only `read_only` and `writable` (each at its own
    path) and nothing else: the grader's folders, hidden tests and reference simply are not there.

    A private mount namespace with a tmpfs root, bind mounts and chroot; it needs root and a
    kernel that allows it (CI does; Gradescope's containers may not, and there folder
    permissions keep the worker out). Returns False, changing nothing visible, if it cannot.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    CLONE_NEWNS, MS_RDONLY, MS_NOSUID, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = (
        0x00020000, 1, 2, 32, 4096, 16384, 1 << 18)
    if libc.unshare(CLONE_NEWNS) != 0:
        return False
    try:
        _mount("none", "/", None, MS_REC | MS_PRIVATE)
        _mount("tmpfs", new_root, "tmpfs", MS_NOSUID, "size=64k,mode=755")
        for path, writable_path in [*((p, False) for p in read_only), *((p, True) for p in writable)]:
            if not os.path.exists(path):
                continue
            if os.path.islink(path) and os.path.dirname(path) == "/":  # /bin -> usr/bin on merged-/usr systems
                os.symlink(os.readlink(path), new_root + path)
            target = new_root + os.path.realpath(path)
            if os.path.isdir(path):
                os.makedirs(target, exist_ok=True)
            else:
                os.makedirs(os.path.dirname(target), exist_ok=True)
                open(target, "a").close()
            _mount(path, target, None, MS_BIND | MS_REC)
            if not writable_path and path not in ("/dev", "/proc"):
                _mount(None, target, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID)
        _mount(None, new_root, None, MS_REMOUNT | MS_RDONLY | MS_NOSUID)
    except OSError:
        return False
    os.chroot(new_root)
    os.chdir(workdir)
    return True


def _preexec(user, confinement: dict | None):
    def run():
        if user is not None:
            if confinement:
                try:
                    confine(**confinement)
                except Exception:  # noqa: BLE001 - permissions still keep the worker out on Gradescope
                    pass
            os.setgroups([])
            os.setgid(user[1])
            os.setuid(user[0])
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: die with the test process
    return run


def describe_exit(code: int | None) -> str:
    """A process's exit status in words: "exit status 3", "killed by signal SIGSEGV"."""
    if code is None:
        return "no exit status"
    if code < 0:
        try:
            return f"killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"


def kill_user_processes(uid: int) -> None:
    """Kill every process of `uid` (a setsid grandchild escapes a process-group kill)."""
    if uid == os.geteuid() or uid == 0:
        return
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            if os.stat(entry.path).st_uid == uid:
                os.kill(int(entry.name), signal.SIGKILL)
        except (OSError, ProcessLookupError):
            continue


class Worker:
    """One worker process and its folder."""

    def __init__(self, submission: pathlib.Path, limits: dict):
        self.user = worker_user()
        python = worker_python(self.user is not None)
        self.root = pathlib.Path(tempfile.mkdtemp(prefix="sandbox-"))
        os.chmod(self.root, 0o755)
        lib = self.root / "lib" / "autograder"
        lib.mkdir(parents=True)
        (lib / "__init__.py").write_text('"""The parts of the autograder that the sandboxed worker runs."""\n')
        package = pathlib.Path(__file__).resolve().parent.parent
        for name in WORKER_PACKAGES:
            shutil.copytree(package / name, lib / name, ignore=shutil.ignore_patterns("__pycache__"))
        copy = self.root / "submission"
        copy.mkdir()
        for path in pathlib.Path(submission).glob("*.py"):
            shutil.copy(path, copy / path.name)
        work = self.root / "work"
        work.mkdir(mode=0o700)
        for path in [self.root / "lib", *(self.root / "lib").rglob("*"), copy, *copy.iterdir()]:
            os.chmod(path, 0o755 if path.is_dir() else 0o644)
        if self.user is not None:
            os.chown(work, *self.user)
        self.output_path = self.root / "output.txt"
        output = open(self.output_path, "ab")
        from_grader, to_worker = os.pipe()
        from_worker, to_grader = os.pipe()
        site = [p for p in sys.path if p and ("site-packages" in p or "dist-packages" in p)]
        config = {"path": [str(self.root / "lib"), *site], "submission": str(copy), "workdir": str(work),
                  "limits": limits, "output_limit": OUTPUT_LIMIT}
        confinement = None
        if self.user is not None:
            (self.root / "fs").mkdir()
            runtime = [os.path.dirname(os.path.realpath(python)), sys.base_prefix if python == sys.executable else None]
            confinement = {"new_root": str(self.root / "fs"), "workdir": str(work),
                           "read_only": [*SYSTEM_PATHS, *[p for p in runtime if p], *site, str(self.root / "lib"),
                                         str(copy)],
                           "writable": [str(work)]}
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(work), "TMPDIR": str(work), "LANG": "C.UTF-8",
               "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MALLOC_ARENA_MAX": "2",
               "PYTHONDONTWRITEBYTECODE": "1", "PYTHONHASHSEED": "0",
               "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
        self.process = subprocess.Popen(
            [python, "-s", "-E", "-c", BOOT, str(from_grader), str(to_grader), json.dumps(config)],
            pass_fds=(from_grader, to_grader), stdin=subprocess.DEVNULL, stdout=output, stderr=output,
            cwd=str(work), env=env, start_new_session=True, preexec_fn=_preexec(self.user, confinement))
        output.close()
        os.close(from_grader), os.close(to_grader)
        self.to_worker, self.from_worker = to_worker, from_worker
        self.started = False

    def output(self, dropped: int = 0) -> str:
        """What student code printed since the last call: its head, then how much more there was
        (`dropped`: what the worker itself did not write). The file starts again empty, so the
        worker's file size limit applies to one call's output, never to the sum."""
        try:
            size = self.output_path.stat().st_size
        except OSError:
            size = 0
        text = ""
        if size:
            with open(self.output_path, "rb") as stream:
                data = stream.read(OUTPUT_LIMIT)
            with contextlib.suppress(OSError):
                os.truncate(self.output_path, 0)  # the worker appends (O_APPEND): it writes at the new end
            text = data.decode("utf-8", "replace")
            dropped += size - len(data)
        return text + (messages.OUTPUT_CUT.format(count=dropped) if dropped > 0 else "")

    def exit_description(self) -> str:
        try:  # the pipe closes a moment before the exit status can be read
            code = self.process.wait(timeout=1)
        except subprocess.TimeoutExpired:
            code = None
        return "it stopped answering" if code is None else describe_exit(code)

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()
        if self.user is not None:
            kill_user_processes(self.user[0])
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=5)
        for fd in (self.to_worker, self.from_worker):
            with contextlib.suppress(OSError):
                os.close(fd)
        shutil.rmtree(self.root, ignore_errors=True)
