"""The worker's process: an unprivileged user, resource limits, a folder of its own (no torch here).

Used by client.py (in the test process) to start the zygote and fork workers from it
(`Zygote`, `WorkerProcess`; the zygote's own side is zygote.py), and by the grader's runner
to kill whatever a worker's user left running (a `setsid` grandchild escapes a group kill).
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
import socket
import subprocess
import sys
import tempfile
import time
import weakref

from ..kit import messages

WORKER_PACKAGES = ("kit", "sandbox")  # what the worker imports: autograder.kit and autograder.sandbox, whole
# ... but for the data the tests read (kit/data: the reviews corpus, about 600 files: copying and
# removing it cost about 0.2 s a grading run); student code is handed its data, never reads it
NOT_FOR_THE_WORKER = ("kit/data",)
DEFAULT_USER = "autograder-worker"   # made by setup.sh; run_autograder sets AUTOGRADER_WORKER_USER to it
NAMELESS_UID_BASE = 1_500_000_000    # elsewhere the worker's uid is this + the test process's pid
# rlimits of the worker: address space (import torch needs ~0.7 GB with one thread), processes
# (of its user, threads included), file size (its output), open files, core dumps
DEFAULT_LIMITS = {"as": 3 << 30, "nproc": 256, "fsize": 16 << 20, "nofile": 256, "core": 0}
OUTPUT_LIMIT = 1800       # characters of student output passed on per call (under plugin.STDOUT_LIMIT: the
                          # note of how much was cut survives the cut of a test's output)
ZYGOTE_BOOT = ("import sys, json; c = json.loads(sys.argv[2]); sys.path[:0] = c['path']; "
               "from autograder.sandbox.zygote import main; main(sys.argv[1:])")


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
# /dev/shm in the jail: a tmpfs of its own, not the machine's. Files a worker leaves there are
# seen by no other grading (a regrade runs many side by side) and by no grader process, and they
# cannot fill the machine's memory. PyTorch's DataLoader workers pass batches through it.
SHM_OPTIONS = "size=128m,mode=1777"


def _mount(source, target, fstype, flags, data=None) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    enc = lambda v: None if v is None else str(v).encode()  # noqa: E731
    if libc.mount(enc(source), enc(target), enc(fstype), flags, enc(data)) != 0:
        raise OSError(ctypes.get_errno(), f"mount {target}")


def _own_proc(target: str) -> bool:
    """Mount at `target` a procfs of the jail's own that shows each user only its own processes
    (hidepid): a worker cannot read the grader's command lines (its paths) or any other process's
    (the machine's /proc, bound as it is, shows them all). False if the kernel refuses it."""
    MS_NOSUID, MS_NODEV, MS_NOEXEC = 2, 4, 8
    for option in ("hidepid=invisible", "hidepid=2"):  # the first from Linux 5.8
        try:
            _mount("proc", target, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, option)
            return True
        except OSError:
            continue
    return False


def confine(new_root: str, read_only: list[str], writable: list[str], workdir: str) -> bool:
    """Make the filesystem the worker sees hold only `read_only` and `writable` (each at its own
    path) and nothing else: the grader's folders, hidden tests and reference simply are not there.

    A private mount namespace with a tmpfs root, bind mounts and chroot; it needs root and a
    kernel that allows it (CI does; Gradescope's containers may not, and there folder
    permissions keep the worker out). Returns False, changing nothing visible, if it cannot.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    CLONE_NEWNS, MS_RDONLY, MS_NOSUID, MS_NODEV, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = (
        0x00020000, 1, 2, 4, 32, 4096, 16384, 1 << 18)
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
            if path == "/proc" and _own_proc(target):
                continue
            _mount(path, target, None, MS_BIND | MS_REC)
            if not writable_path and path not in ("/dev", "/proc"):
                _mount(None, target, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID)
        if os.path.isdir(new_root + "/dev/shm"):
            _mount("tmpfs", new_root + "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, SHM_OPTIONS)
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


def _not_for_the_worker(package: pathlib.Path):
    """copytree's `ignore`: bytecode caches, and the folders of NOT_FOR_THE_WORKER."""
    skipped = {package / path for path in NOT_FOR_THE_WORKER}

    def ignore(folder: str, names: list[str]) -> set[str]:
        return {n for n in names if n == "__pycache__" or pathlib.Path(folder, n) in skipped}

    return ignore


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


def kill_user_processes(uid: int, keep: tuple[int, ...] = ()) -> None:
    """Kill every process of `uid` (a setsid grandchild escapes a process-group kill) but those
    in `keep` (the zygote, which workers are forked from)."""
    if uid == os.geteuid() or uid == 0:
        return
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) in keep:
            continue
        try:
            if os.stat(entry.path).st_uid == uid:
                os.kill(int(entry.name), signal.SIGKILL)
        except (OSError, ProcessLookupError):
            continue


def kill_leftovers(test_pid: int) -> None:
    """Kill whatever the sandbox's user of test process `test_pid` still runs (a `setsid`
    grandchild of a worker, say), once that test process has ended."""
    try:
        user = worker_user(test_pid)
    except SandboxUnavailable:
        return
    if user is not None:
        kill_user_processes(user[0])


def _real_uid(pid: int) -> int | None:
    """The real uid of process `pid` (its /proc folder is root's when it is not dumpable)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("Uid:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(user + system CPU seconds of process `pid`, of its children it has reaped), from /proc."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0, 0.0
    tick = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / tick, (int(fields[13]) + int(fields[14])) / tick


def _parent(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("PPid:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def _resume_if_stopped(pid: int) -> None:
    """Send SIGCONT to process `pid` (the zygote) if it is stopped: a worker, as its user, may stop
    it, and every later test would then wait on it until its time ran out."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            state = stat.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return
    if state in ("T", "t"):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGCONT)


def worker_env(home: str) -> dict:
    """The environment of the zygote and its workers: nothing of the grader's."""
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": home, "TMPDIR": home, "LANG": "C.UTF-8",
            "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MALLOC_ARENA_MAX": "2",
            "PYTHONDONTWRITEBYTECODE": "1", "PYTHONHASHSEED": "0",
            "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}


class Zygote:
    """The process workers are forked from: one per sandboxed submission (so one per test process
    in grading), started as a worker used to be (the worker's user, the jail, its environment,
    PR_SET_PDEATHSIG), that imports torch and the assignment's `preload` once and then only forks
    (autograder/sandbox/zygote.py). A worker restart after a crash or a timeout is a fork, not an
    import of torch.

    The folder (`root`): `lib/` (autograder.kit and autograder.sandbox), `submission/` (a copy of
    the student's files, read-only to workers), `work/` (one fresh folder per worker, removed with
    it: a file one worker wrote is never seen by the next), and each worker's output file.

    The test process makes each worker's pipes and output file and hands the worker's ends to the
    zygote over the control socket (SCM_RIGHTS); the zygote forks, closes its copies, and reports
    the pid and, when asked, the exit status (the worker is its child, not ours). The zygote is
    as untrusted as a worker (same user): every pid it reports is checked, and a zygote that is
    gone is started again.
    """

    START_TIMEOUT = 300  # seconds the zygote may take to import (Gradescope's 0.5 vCPU is slow)
    REPLY_TIMEOUT = 30
    POLL_S = 0.2  # how often a wait for the zygote checks that it was not stopped

    def __init__(self, submission: pathlib.Path, limits: dict, preload: list[str] | tuple[str, ...] = (), *,
                 fork_here: bool = False):
        """Start the zygote: a new process (`python -s -E -c ZYGOTE_BOOT`), or with `fork_here` a fork
        of this process, which must have imported nothing but torch, the preload and
        autograder.kit/sandbox, and must have one thread (see launch.py)."""
        self.source = pathlib.Path(submission).resolve()
        self.user = worker_user()
        self.python = worker_python(self.user is not None)
        self.limits, self.preload = dict(limits), [str(name) for name in preload]
        self.root = pathlib.Path(tempfile.mkdtemp(prefix="sandbox-"))
        os.chmod(self.root, 0o755)
        self.lib, self.submission, self.work = self._lay_out(submission)
        self.count = 0
        self.restarts: list[float] = []  # seconds from a worker's kill to its successor's first answer
        self.killed_at: float | None = None
        self.process: subprocess.Popen | None = None
        self.control: socket.socket | None = None
        self.started = False
        if fork_here:
            self._fork_here()
        else:
            self._spawn()
        self._finalizer = weakref.finalize(self, _close_zygote, self.process, self.control, self.root)
        _LIVE.add(self)

    def _lay_out(self, submission) -> tuple[pathlib.Path, pathlib.Path, pathlib.Path]:
        lib = self.root / "lib" / "autograder"
        lib.mkdir(parents=True)
        (lib / "__init__.py").write_text('"""The parts of the autograder that the sandboxed worker runs."""\n')
        package = pathlib.Path(__file__).resolve().parent.parent
        for name in WORKER_PACKAGES:
            shutil.copytree(package / name, lib / name, ignore=_not_for_the_worker(package))
        copy = self.root / "submission"
        copy.mkdir()
        for path in pathlib.Path(submission).glob("*.py"):
            shutil.copy(path, copy / path.name)
        work = self.root / "work"
        work.mkdir()
        os.chmod(work, 0o711)  # a worker reaches its own folder, and cannot list the others
        for path in [self.root / "lib", *(self.root / "lib").rglob("*"), copy, *copy.iterdir()]:
            os.chmod(path, 0o755 if path.is_dir() else 0o644)
        return self.root / "lib", copy, work

    def _spawn(self) -> None:
        """Start the zygote process (it imports in the background; `fork` waits for it)."""
        config, confinement = self._config(), self._confinement(self.python)
        self.control, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        with open(self.root / "zygote.txt", "ab") as log:
            self.process = subprocess.Popen(
                [self.python, "-s", "-E", "-c", ZYGOTE_BOOT, str(theirs.fileno()), json.dumps(config)],
                pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                cwd=str(self.work), env=worker_env(str(self.work)), start_new_session=True,
                preexec_fn=_preexec(self.user, confinement))
        theirs.close()
        self.started = False

    def _config(self) -> dict:
        site = [p for p in sys.path if p and ("site-packages" in p or "dist-packages" in p)]
        return {"path": [str(self.lib), *site], "submission": str(self.submission), "work_root": str(self.work),
                "limits": self.limits, "output_limit": OUTPUT_LIMIT, "preload": self.preload}

    def _confinement(self, python: str) -> dict | None:
        """What the jail holds: the system, the Python runtime of `python` and the packages, the lib and
        the submission read-only, the work folder writable."""
        if self.user is None:
            return None
        site = [p for p in sys.path if p and ("site-packages" in p or "dist-packages" in p)]
        (self.root / "fs").mkdir(exist_ok=True)
        runtime = [os.path.dirname(os.path.realpath(python)), sys.base_prefix if python == sys.executable else None]
        return {"new_root": str(self.root / "fs"), "workdir": str(self.work),
                "read_only": [*SYSTEM_PATHS, *[p for p in runtime if p], *site, str(self.lib), str(self.submission)],
                "writable": [str(self.work)]}

    def _fork_here(self) -> None:
        """Fork the zygote from this process: it shares the imports already paid for (see launch.py)."""
        from . import zygote

        config, confinement = self._config(), self._confinement(sys.executable)  # this interpreter, already running
        self.control, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        log = os.open(self.root / "zygote.txt", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        sys.stdout.flush(), sys.stderr.flush()
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                os.dup2(log, 1), os.dup2(log, 2)
                null = os.open(os.devnull, os.O_RDONLY)
                os.dup2(null, 0)
                os.closerange(3, theirs.fileno())
                os.closerange(theirs.fileno() + 1, 1 << 16)
                os.setsid()
                os.chdir(self.work)
                _preexec(self.user, confinement)()
                if os.getppid() != parent:  # the test process died before PR_SET_PDEATHSIG: so do we
                    os._exit(1)
                os.environ.clear()
                os.environ.update(worker_env(str(self.work)))
                zygote.become_zygote(theirs, config)
                code = 0
            except BaseException:  # noqa: BLE001 - its last words go to its log
                import traceback

                traceback.print_exc()
            finally:
                os._exit(code)
        os.close(log)
        theirs.close()
        self.process = ForkedProcess(pid)
        self.started = False

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        try:
            return (self.root / "zygote.txt").read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    def _receive(self, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        try:
            while True:  # in slices: a worker (same user) may stop the zygote (SIGSTOP) at any time
                _resume_if_stopped(self.process.pid)
                self.control.settimeout(max(0.0, min(self.POLL_S, deadline - time.monotonic())))
                try:
                    data = self.control.recv(8192)
                    break
                except socket.timeout:
                    if time.monotonic() >= deadline:
                        raise
        except (OSError, socket.timeout) as exc:
            raise EOFError(str(exc)) from None
        if not data:
            raise EOFError("the zygote hung up")
        try:
            message = json.loads(data)
        except ValueError:
            raise EOFError("the zygote sent a malformed message") from None
        if not isinstance(message, dict):
            raise EOFError("the zygote sent a malformed message")
        return message

    def _request(self, message: dict, fds: tuple[int, ...] = ()) -> dict:
        try:
            socket.send_fds(self.control, [json.dumps(message).encode()], list(fds))
        except OSError as exc:
            raise EOFError(str(exc)) from None
        return self._receive(self.REPLY_TIMEOUT)

    def _await_ready(self) -> None:
        if self.started:
            return
        try:
            message = self._receive(self.START_TIMEOUT)
        except EOFError as exc:
            self.process.kill()
            raise SandboxUnavailable(f"the zygote did not start ({exc}; "
                                     f"{describe_exit(self.process.poll())})\n{self.log()}") from None
        if message.get("ready") is not True:
            raise SandboxUnavailable(f"the zygote did not start: {message}")
        self.started = True

    def fork(self) -> "WorkerProcess":
        """A new worker (its own pipes, output file and empty work folder), forked from the zygote;
        a zygote that has died (a worker may kill it: same user) is started again, once."""
        try:
            return self._fork()
        except EOFError:
            self._restart()
        try:
            return self._fork()
        except EOFError as exc:
            raise SandboxUnavailable(f"the zygote stopped answering ({exc})\n{self.log()}") from None

    def _restart(self) -> None:
        _close_zygote(self.process, self.control, None)
        self._spawn()
        self._finalizer.detach()
        self._finalizer = weakref.finalize(self, _close_zygote, self.process, self.control, self.root)

    def _fork(self) -> "WorkerProcess":
        self._await_ready()
        self.count += 1
        workdir = self.work / f"w{self.count}"
        shutil.rmtree(workdir, ignore_errors=True)
        workdir.mkdir(mode=0o700)
        if self.user is not None:
            os.chown(workdir, *self.user)
        output_path = self.root / f"output-{self.count}.txt"
        output = open(output_path, "ab")  # O_APPEND: after output() truncates it, the worker writes at 0
        from_grader, to_worker = os.pipe()
        from_worker, to_grader = os.pipe()
        try:
            answer = self._request({"op": "fork", "workdir": str(workdir)}, (from_grader, to_grader, output.fileno()))
        except EOFError:
            for fd in (to_worker, from_worker):
                os.close(fd)
            raise
        finally:
            output.close()
            os.close(from_grader), os.close(to_grader)
        pid = answer.get("pid")
        if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0 or _parent(pid) != self.pid:
            for fd in (to_worker, from_worker):
                os.close(fd)
            raise SandboxUnavailable(f"the zygote did not fork a worker: {str(answer)[:300]}\n{self.log()}")
        return WorkerProcess(self, pid, to_worker, from_worker, output_path, workdir)

    def exit_code(self, pid: int, timeout: float) -> int | None:
        """Worker `pid`'s exit code (negative: the signal that killed it), None if unknown yet."""
        try:
            status = self._request({"op": "wait", "pid": pid, "timeout": timeout}).get("status")
        except EOFError:
            return None
        return status if isinstance(status, int) and not isinstance(status, bool) else None

    def alive(self) -> bool:
        """Does the zygote still answer? A worker runs as its user and may have killed it; a zygote
        with SIGKILL pending never answers again, so the answer is certain once the kill was sent."""
        if not self.started:
            return True
        try:
            return self._request({"op": "ping"}).get("alive") is True
        except EOFError:
            return False

    def close(self) -> None:
        """Stop the zygote (its workers die with it: PR_SET_PDEATHSIG) and remove its folder."""
        self._finalizer()


class ForkedProcess:
    """A child of this process made by os.fork, with the part of Popen's interface Zygote uses."""

    def __init__(self, pid: int):
        self.pid, self.returncode = pid, None

    def poll(self) -> int | None:
        if self.returncode is None:
            with contextlib.suppress(ChildProcessError):
                pid, status = os.waitpid(self.pid, os.WNOHANG)
                if pid:
                    self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(str(self.pid), timeout)
            time.sleep(0.005)
        return self.returncode

    def kill(self) -> None:
        if self.returncode is None:
            os.kill(self.pid, signal.SIGKILL)


LAUNCHED: "Zygote | None" = None  # the zygote launch.py forked before this test process began, if any

_LIVE: "weakref.WeakSet[Zygote]" = weakref.WeakSet()


def live_zygotes() -> tuple[int, ...]:
    """The pids of this process's zygotes (killing a worker's leftovers spares them)."""
    return tuple(z.process.pid for z in list(_LIVE) if z.process is not None and z.process.poll() is None)


def _close_zygote(process: subprocess.Popen | None, control: socket.socket | None, root: pathlib.Path | None) -> None:
    """Hang up (the zygote then kills and reaps its workers, and ends), then make sure it has."""
    if control is not None:
        control.close()
    if process is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=2)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=5)
    if root is not None:
        shutil.rmtree(root, ignore_errors=True)


def _pidfd(pid: int) -> int | None:
    """A pidfd of process `pid` (Linux 5.3 and later), or None."""
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


class WorkerProcess:
    """One worker process, forked by a zygote: the test process's handle on it (pipes, output)."""

    def __init__(self, zygote: Zygote, pid: int, to_worker: int, from_worker: int, output_path: pathlib.Path,
                 workdir: pathlib.Path):
        self.zygote, self.pid, self.user = zygote, pid, zygote.user
        self.to_worker, self.from_worker = to_worker, from_worker
        self.output_path, self.workdir = output_path, workdir
        self.started = False
        self.pidfd = _pidfd(pid)  # its end is the end of its pipe (protocol.receive), whoever else holds it

    def mark_started(self) -> None:
        """The worker answered its first message (ready to serve); a restart's time is noted."""
        self.started = True
        if self.zygote.killed_at is not None:
            self.zygote.restarts.append(time.monotonic() - self.zygote.killed_at)
            self.zygote.killed_at = None

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
                os.truncate(self.output_path, 0)  # the worker writes at its offset: the worker appends (O_APPEND)
            text = data.decode("utf-8", "replace")
            dropped += size - len(data)
        return text + (messages.OUTPUT_CUT.format(count=dropped) if dropped > 0 else "")

    def exit_description(self) -> str:
        code = self.zygote.exit_code(self.pid, 1)  # the pipe closes a moment before the exit status can be read
        return "it stopped answering" if code is None else describe_exit(code)

    def _ours(self) -> bool:
        """Is `pid` still this worker's (the zygote's word is checked: it runs as the worker's user)?"""
        return self.user is None or _real_uid(self.pid) == self.user[0]

    def kill(self) -> None:
        self.zygote.killed_at = time.monotonic()
        if self._ours():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
        if self.user is not None:
            kill_user_processes(self.user[0], keep=live_zygotes())
        self.zygote.exit_code(self.pid, 5)  # reaped: no zombie left
        for fd in (self.to_worker, self.from_worker, self.pidfd):
            with contextlib.suppress(OSError, TypeError):
                os.close(fd)
        shutil.rmtree(self.workdir, ignore_errors=True)
        with contextlib.suppress(OSError):
            self.output_path.unlink()
