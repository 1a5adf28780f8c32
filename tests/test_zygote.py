"""The sandbox's zygote (autograder/sandbox/zygote.py, process.Zygote): workers are forked from
one process that imported torch once; a restart is a fork, workers share nothing but what the
zygote imported, and the zygote dies with the test process."""
import os
import pathlib
import re
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from autograder.sandbox.client import RemoteSubmission, WorkerCrash

SUBMISSION = '''
import os
import signal
import sys

import torch

def pid():
    return os.getpid()

def cwd():
    return os.getcwd()

def write(name):
    with open(name, "w") as stream:
        stream.write("left behind")
    with open(os.path.join(os.environ["TMPDIR"], name + ".tmp"), "w") as stream:
        stream.write("left behind")
    return os.path.abspath(name)

def shm_write(name):
    with open(os.path.join("/dev/shm", name), "w") as stream:
        stream.write("for another submission")

def shm_exists(name):
    return os.path.exists(os.path.join("/dev/shm", name))

def exists(name):
    return os.path.exists(name) or os.path.exists(os.path.join(os.environ["TMPDIR"], name + ".tmp"))

def work(x):
    return torch.mm(x, x.T).sum()

def threads():
    return torch.get_num_threads()

def segfault():
    os.kill(os.getpid(), signal.SIGSEGV)

def crash():
    os._exit(3)

def crash_leaving_a_daemon(seconds):
    if os.fork() == 0:  # a setsid child that holds the worker's pipes, and sleeps
        os.setsid()
        import time
        time.sleep(seconds)
        os._exit(0)
    os._exit(4)

def loaded(name):
    return name in sys.modules

def spin():
    while True:
        pass
'''


@pytest.fixture(scope="module")
def remote(tmp_path_factory):
    folder = tmp_path_factory.mktemp("submission")
    (folder / "student.py").write_text(textwrap.dedent(SUBMISSION))
    submission = RemoteSubmission(folder, preload=["no_such_module_at_all"])
    yield submission
    submission.sandbox.stop()
    if submission.sandbox.zygote is not None:
        submission.sandbox.zygote.close()


def _parent(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("PPid:"))


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as status:
            return "\nState:\tZ" not in status.read()
    except OSError:
        return False


def _import_seconds() -> float:
    start = time.monotonic()
    subprocess.run([sys.executable, "-c", "import torch"], check=True)
    return time.monotonic() - start


def test_a_worker_is_a_child_of_the_zygote_and_a_restart_is_a_fork(remote):
    """The worker after a crash is forked from the same zygote, much faster than an import of torch,
    and finds torch already imported (a preload that cannot be imported was skipped)."""
    first = remote.student.pid()
    zygote = remote.sandbox.zygote.pid
    assert _parent(first) == zygote != os.getpid()
    with pytest.raises(WorkerCrash):
        remote.student.crash()
    start = time.monotonic()
    remote.sandbox.start()
    remote.sandbox.ready()
    restart = time.monotonic() - start
    second = remote.student.pid()
    assert second != first and _parent(second) == zygote == remote.sandbox.zygote.pid
    assert remote.student.loaded("torch") and remote.student.loaded("autograder.sandbox.server")
    floor = _import_seconds()
    assert restart < floor / 3, f"restart took {restart:.2f}s, an import of torch {floor:.2f}s"


def test_the_zygote_survives_a_crash_and_reports_how_the_worker_died(remote):
    zygote = remote.sandbox.zygote.pid
    with pytest.raises(WorkerCrash, match="killed by signal SIGSEGV"):
        remote.student.segfault()
    with pytest.raises(WorkerCrash, match="exit status 3"):
        remote.student.crash()
    assert _alive(zygote) and remote.sandbox.zygote.pid == zygote
    assert remote.student.work(torch.ones(2, 2)).item() == 8.0


def test_a_dead_worker_is_seen_dead_while_a_process_it_started_holds_its_pipe(remote):
    """The end of the worker's pipe never comes while a child it started holds the pipe's other end:
    the worker's own end is what counts (a pidfd), not the pipe's, so the call fails at once instead
    of at the test's time limit."""
    start = time.monotonic()
    with pytest.raises(WorkerCrash, match="exit status 4"):
        remote.student.crash_leaving_a_daemon(30)
    assert time.monotonic() - start < 5
    assert remote.student.work(torch.ones(2, 2)).item() == 8.0


@pytest.mark.parametrize("after_the_kill", ["", "import time\ntime.sleep(5)\n"], ids=["answers", "dies-first"])
def test_an_import_that_kills_the_zygote_is_a_crash_at_import_and_costs_no_second_zygote(
        remote, tmp_path, after_the_kill):
    """A file whose top level kills its parent (the zygote: the worker runs as its user) may still
    answer its import before it dies with it, or die first. The grader asks the zygote after each
    import of a student file, answered or not: a dead zygote makes it a crash at import that says so,
    remembered, so the file's later tests fail at once instead of each starting a new zygote (an
    import of torch) to crash again."""
    from autograder.kit import adapter, messages

    (tmp_path / "killer.py").write_text("import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n"
                                        + after_the_kill + "def f():\n    return 1\n")
    (tmp_path / "student.py").write_text(textwrap.dedent(SUBMISSION))
    submission = RemoteSubmission(tmp_path, preload=[])
    killed = re.escape(messages.ZYGOTE_KILLED)
    try:
        with pytest.raises(adapter.StudentImportError, match=killed):
            submission.killer.f()
        zygote = submission.sandbox.zygote
        pid, forks = zygote.pid, zygote.count
        assert not zygote.alive()
        for _ in range(2):  # later tests of the file
            submission.sandbox.reset()
            with pytest.raises(adapter.StudentImportError, match=killed):
                submission.killer.f()
        assert (zygote.pid, zygote.count) == (pid, forks)  # neither a new zygote nor a new worker
        assert submission.student.work(torch.ones(2, 2)).item() == 8.0  # the other file: a new zygote
        assert zygote.pid != pid and zygote.alive()
    finally:
        submission.sandbox.stop()
        if submission.sandbox.zygote is not None:
            submission.sandbox.zygote.close()
        remote.sandbox.stop()  # its worker ran as the same user, so it went too (see test_dev_shm_...)


def test_a_file_whose_import_kills_the_worker_says_where_to_look(remote, tmp_path):
    from autograder.kit import adapter, messages

    (tmp_path / "exits.py").write_text("import os\nos._exit(3)\ndef f():\n    return 1\n")
    submission = RemoteSubmission(tmp_path, preload=[])
    try:
        with pytest.raises(adapter.StudentImportError) as caught:
            submission.exits.f()
        text = str(caught.value)
        assert text.startswith(messages.IMPORT_FAILED.format(file="exits.py", error="").strip())
        assert "while importing the file (exit status 3" in text and "os._exit, sys.exit" in text
        assert "Grading went on" not in text
    finally:
        submission.sandbox.stop()
        if submission.sandbox.zygote is not None:
            submission.sandbox.zygote.close()


def test_a_file_one_worker_wrote_is_not_seen_by_the_next(remote):
    path = remote.student.write("note.txt")
    assert remote.student.exists("note.txt")
    old_cwd = remote.student.cwd()
    remote.sandbox.stop()  # as after a crash or a timeout
    assert not remote.student.exists("note.txt")
    assert remote.student.cwd() != old_cwd and not os.path.exists(path)


@pytest.mark.skipif(os.geteuid() != 0, reason="the jail (a mount namespace) needs root, as on Gradescope and in CI")
def test_dev_shm_is_the_gradings_own(remote, tmp_path):
    """A file a worker writes in /dev/shm stays in its grading's own tmpfs: the machine's /dev/shm and
    another grading's sandbox (a regrade runs them side by side) do not see it."""
    name = f"autograder-shm-{os.getpid()}"
    remote.student.shm_write(name)
    assert remote.student.shm_exists(name)
    assert not os.path.exists(os.path.join("/dev/shm", name))
    (tmp_path / "student.py").write_text(textwrap.dedent(SUBMISSION))
    other = RemoteSubmission(tmp_path, preload=[])
    try:
        assert not other.student.shm_exists(name)
    finally:
        other.sandbox.stop()
        if other.sandbox.zygote is not None:
            other.sandbox.zygote.close()
        # Both sandboxes run as this test process's user, so stopping `other` killed `remote`'s worker
        # too (gradings side by side have users of their own): start the next test on a new one.
        remote.sandbox.stop()


def test_the_zygote_has_no_thread_pool_when_it_forks(remote):
    """No thread pool may exist in a process that forks (a child can hang on a lock a thread held):
    the zygote keeps one thread, even after its workers ran tensor ops, and workers run with one."""
    assert remote.student.work(torch.ones(64, 64)).item() == 64.0 ** 3
    assert remote.student.threads() == 1
    assert len(os.listdir(f"/proc/{remote.sandbox.zygote.pid}/task")) == 1


def test_a_busy_worker_dies_with_its_zygote_and_a_new_zygote_follows(remote):
    """A worker in an endless loop reads nothing: only PR_SET_PDEATHSIG (set after the fork) ends it
    when its zygote is killed. The next call starts a new zygote."""
    import threading

    worker = remote.student.pid()
    zygote = remote.sandbox.zygote.pid
    failures = []

    def call():
        try:
            remote.student.spin()
        except WorkerCrash as exc:
            failures.append(exc)

    caller = threading.Thread(target=call)
    caller.start()
    time.sleep(0.5)  # the worker is spinning
    os.kill(zygote, signal.SIGKILL)
    caller.join(timeout=10)
    assert not caller.is_alive() and failures and not _alive(worker)
    assert _parent(remote.student.pid()) == remote.sandbox.zygote.pid != zygote


@pytest.mark.skipif(os.geteuid() != 0, reason="the worker's own user needs root")
def test_the_zygote_runs_as_the_workers_user_in_the_jail(remote):
    zygote = remote.sandbox.zygote.pid
    uid = remote.sandbox.zygote.user[0]
    with open(f"/proc/{zygote}/status") as status:
        assert next(line for line in status if line.startswith("Uid:")).split()[1:] == [str(uid)] * 4
    assert os.readlink(f"/proc/{zygote}/root") != "/"  # chrooted (confine)
    assert os.readlink(f"/proc/{zygote}/root") == os.readlink(f"/proc/{remote.student.pid()}/root")


def test_the_jail_holds_the_workers_code_and_not_the_tests_data(remote):
    """kit/ and sandbox/ are copied whole into the jail, but for kit/data (the tests' corpus)."""
    import autograder.kit

    lib = remote.sandbox.zygote.lib / "autograder"
    kit = pathlib.Path(autograder.kit.__file__).parent
    assert (kit / "data").is_dir()
    assert sorted(p.name for p in (lib / "kit").glob("*.py")) == sorted(p.name for p in kit.glob("*.py"))
    assert (lib / "sandbox" / "server.py").is_file()
    assert not (lib / "kit" / "data").exists()
    assert not list(lib.rglob("__pycache__"))


PARENT = '''
import sys, time, pathlib
from autograder.sandbox.client import RemoteSubmission
remote = RemoteSubmission(pathlib.Path(sys.argv[1]))
print(remote.student.pid(), remote.sandbox.zygote.pid, flush=True)
time.sleep(120)
'''


def test_the_zygote_and_its_workers_die_with_the_test_process(tmp_path):
    (tmp_path / "student.py").write_text(textwrap.dedent(SUBMISSION))
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    parent = subprocess.Popen([sys.executable, "-c", PARENT, str(tmp_path)], stdout=subprocess.PIPE, text=True,
                              cwd=root, env=dict(os.environ, PYTHONPATH=root))
    try:
        worker, zygote = map(int, parent.stdout.readline().split())
        assert _alive(worker) and _alive(zygote)
        parent.send_signal(signal.SIGKILL)  # no clean-up runs: only PR_SET_PDEATHSIG
        parent.wait()
        deadline = time.monotonic() + 10
        while (_alive(worker) or _alive(zygote)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(zygote) and not _alive(worker)
    finally:
        parent.kill()
        parent.wait()


PROBE = '''
import os

import pytest

MARK = os.environ["ZYGOTE_TEST_MARK"].encode()


def parent(pid):
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("PPid:"))


def copies_in_memory(pid):
    """How many times MARK is in the writable memory of process `pid` (read as root)."""
    found = 0
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb", 0) as mem:
        for line in maps:
            span, perms = line.split()[:2]
            if not perms.startswith("rw"):
                continue
            start, end = (int(x, 16) for x in span.split("-"))
            try:
                mem.seek(start)
                found += mem.read(end - start).count(MARK)
            except (OSError, OverflowError, ValueError):
                continue
    return found


@pytest.mark.problem("probe")
def test_probe(student):
    worker = student.probe.pid()
    zygote = student.sandbox.zygote.pid
    assert parent(zygote) == os.getpid() and parent(worker) == zygote
    assert b"autograder.sandbox.launch" in open(f"/proc/{zygote}/cmdline", "rb").read()  # forked, not run anew
    assert copies_in_memory(os.getpid()) > 0   # the test process holds the grader's options and environment
    assert copies_in_memory(zygote) == 0       # the zygote was forked before it read them
    assert copies_in_memory(worker) == 0
    with open(os.environ["ZYGOTE_TEST_OUT"], "w") as out:
        out.write(f"{worker} {zygote}")


@pytest.mark.problem("probe")
def test_then_the_test_process_dies():
    os.kill(os.getpid(), 9)  # no clean-up runs: the zygote and its worker must die all the same
'''


@pytest.mark.skipif(os.geteuid() != 0, reason="reading another user's memory needs root")
def test_in_grading_the_zygote_is_forked_from_the_test_process_before_it_reads_grader_state(tmp_path):
    """sandbox/launch.py: the zygote shares the test process's imports, no byte of the test
    process's arguments or environment (a marker in --reference and in an environment variable)
    is in the zygote's or a worker's memory, and both die with the test process."""
    import json

    from autograder.sandbox import launch

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    submission, tests = tmp_path / "submission", tmp_path / "tests"
    submission.mkdir(), tests.mkdir()
    (submission / "probe.py").write_text("import os\n\ndef pid():\n    return os.getpid()\n")
    (tests / "test_probe.py").write_text(PROBE)
    mark = "grader-secret-" + os.urandom(8).hex()
    options = {"limits": {}, "preload": ["numpy"]}
    command = [sys.executable, "-m", "pytest", str(tests / "test_probe.py"), "-p", "autograder.grader.plugin",
               "-p", "no:cacheprovider", "-c", os.devnull, "--rootdir", str(tmp_path), "-q",
               "--submission", str(submission), "--sandbox", json.dumps(options), "--reference", str(tmp_path / mark)]
    env = dict(os.environ, PYTHONPATH=root, ZYGOTE_TEST_MARK=mark, PYTHONDONTWRITEBYTECODE="1",
               ZYGOTE_TEST_OUT=str(tmp_path / "pids.txt"))
    command, bare = launch.command(sys.executable, command, env, submission, options, tmp_path / "args.json")
    assert mark not in " ".join(command) + json.dumps(bare)
    done = subprocess.run(command, env=bare, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == -signal.SIGKILL and (tmp_path / "pids.txt").exists(), done.stdout[-3000:]
    worker, zygote = map(int, (tmp_path / "pids.txt").read_text().split())
    deadline = time.monotonic() + 10
    while (_alive(worker) or _alive(zygote)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(zygote) and not _alive(worker)  # PR_SET_PDEATHSIG, set after the fork


def test_the_preload_comes_from_the_manifest():
    from autograder import manifest
    from autograder.grade.runner import sandbox_options

    assert manifest._default_preload(["pandas==3.1.1", "scikit-learn>=1.4", "tokenizers"]) == [
        "torch", "numpy", "pandas", "scikit_learn", "tokenizers"]
    foundations = manifest.load("foundations")
    assert "transformers:DistilBertModel" in foundations.preload
    assert sandbox_options(foundations)["preload"] == list(foundations.preload)
    assert manifest.load("transformer").preload == ("torch", "numpy")
