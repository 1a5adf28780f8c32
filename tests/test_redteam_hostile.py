"""Red-team attacks found by `redhost` (hostile values, crashes and tampering in the worker): each
costs only the call that met it, says why, and shows the student nothing of the grader."""
import json
import os
import re
import time

import pytest
import torch

from autograder.sandbox.client import RemoteError, WorkerCrash

SUBMISSION = '''
import os, sys, torch

class Unsendable:
    """An object whose description for the wire raises (its type's name is read there)."""
    def __getattribute__(self, name):
        if name in ("__name__", "__class__"):
            raise RuntimeError("no description for you")
        return object.__getattribute__(self, name)

def unsendable():
    return Unsendable()

def break_the_wire():
    """The worker's own send fails for every answer: the worker dies with an exception."""
    def refuse(*args, **kwargs):
        raise RuntimeError("wire cut by the student")
    sys.modules["autograder.sandbox.protocol"].send_message = refuse

def stop_the_zygote_and_die():
    """SIGSTOP the zygote (the worker's parent, same user), then die: the next call needs a fork."""
    import signal
    os.kill(os.getppid(), signal.SIGSTOP)
    os._exit(3)

def visible_processes():
    return sorted(int(name) for name in os.listdir("/proc") if name.isdigit())

def double(x):
    return x * 2
'''

GRADER_PATHS = re.compile(r"autograder[/\\\\](sandbox|grader|grade)|site-packages|zygote\\.py|server\\.py")


def test_a_value_that_cannot_be_described_costs_the_call_not_the_worker(remote):
    """Describing a returned object ran student code that raised: the call raises, the worker
    lives on (no restart, no traceback through the grader's files)."""
    assert torch.equal(remote.student.double(torch.ones(1)), torch.full((1,), 2.0))
    pid = remote.sandbox.worker.pid
    with pytest.raises(RemoteError, match="no description for you") as info:
        remote.student.unsendable()
    assert not GRADER_PATHS.search(str(info.value) + info.value.student_traceback)
    assert remote.sandbox.worker.pid == pid
    assert torch.equal(remote.student.double(torch.ones(1)), torch.full((1,), 2.0))


def test_a_worker_that_dies_of_an_exception_shows_only_the_students_frames(remote, capsys):
    """The worker's last words (the traceback of what killed it) keep the student's frames only:
    the grader's files (their paths, their code) are not the student's to see."""
    with pytest.raises(WorkerCrash, match="exit status 1"):
        remote.student.break_the_wire()
    printed = capsys.readouterr().out
    assert "wire cut by the student" in printed and "in refuse" in printed
    assert not GRADER_PATHS.search(printed), printed
    assert torch.equal(remote.student.double(torch.ones(1)), torch.full((1,), 2.0))


def test_a_zygote_stopped_by_a_worker_is_resumed(remote):
    """A worker stops its zygote (SIGSTOP; same user) and dies: the next call's fork does not wait on
    the stopped zygote (each test would have waited until its time ran out, every problem lost)."""
    with pytest.raises(WorkerCrash, match="exit status 3"):
        remote.student.stop_the_zygote_and_die()
    start = time.monotonic()
    assert torch.equal(remote.student.double(torch.ones(1)), torch.full((1,), 2.0))
    assert time.monotonic() - start < 5


@pytest.mark.skipif(os.geteuid() != 0, reason="the jail (its own /proc) needs the grader to be root")
def test_the_worker_sees_only_its_users_processes(remote):
    """The jail's /proc shows the worker only its own user's dumpable processes (itself; the zygote
    is not dumpable), not the grader's: their command lines name the grader's folders, the hidden
    tests' among them."""
    assert remote.student.visible_processes() == [remote.sandbox.worker.pid]


BOMB = '''
import gc, os
gc.callbacks.append(lambda phase, info: os._exit(9) if phase == "stop" else None)

def harmless():
    return 1
'''

CLEAN = '''
import gc

def collect_and_double(x):
    gc.collect()
    return x * 2
'''


def test_what_a_files_top_level_leaves_in_the_worker_costs_no_other_files_test(tmp_path):
    """bomb.py's top level leaves a gc callback that kills the worker: a later test of clean.py
    (which does not import bomb.py) gets a fresh worker and passes, whatever the tests' order."""
    from autograder.sandbox.client import RemoteSubmission

    (tmp_path / "bomb.py").write_text(BOMB)
    (tmp_path / "clean.py").write_text(CLEAN)
    submission = RemoteSubmission(tmp_path)
    try:
        assert submission.bomb.harmless() == 1  # a test of bomb.py
        submission.sandbox.reset()               # the next test, of clean.py
        assert torch.equal(submission.clean.collect_and_double(torch.ones(1)), torch.full((1,), 2.0))
        assert submission.sandbox.traffic["fresh workers for another file"] == 1
        submission.sandbox.reset()               # and the next, of clean.py again: the same worker
        pid = submission.sandbox.worker.pid
        assert torch.equal(submission.clean.collect_and_double(torch.ones(1)), torch.full((1,), 2.0))
        assert submission.sandbox.worker.pid == pid
    finally:
        submission.sandbox.stop()


# ---- a whole grading run ----

CAUSAL_MASK_BODY = "    return torch.tril(torch.ones(T, T, dtype=torch.bool, device=device))"


def redteam_edits():
    from test_grading import SCORES, Mutant

    self_attention_body = "    d_k = Q.size(-1)\n" + SCORES  # only in self_attention

    return [
        # the zygote stopped by a correct causal_mask: no test may wait on it
        Mutant("attention.py", CAUSAL_MASK_BODY,
               "    import os, signal\n    os.kill(os.getppid(), signal.SIGSTOP)\n" + CAUSAL_MASK_BODY),
        # self_attention returns an object whose description raises
        Mutant("attention.py", self_attention_body,
               "    class Unsendable:\n        def __getattribute__(self, name):\n"
               "            raise RuntimeError('no description for you')\n"
               "    return Unsendable()\n" + self_attention_body),
        # model.py's top level leaves a gc callback that kills whatever worker imported it
        Mutant("model.py", "import torch\n",
               "import torch\nimport gc, os\n"
               "gc.callbacks.append(lambda phase, info: os._exit(9) if phase == 'stop' else None)\n"),
    ]


@pytest.mark.skipif(os.geteuid() != 0, reason="the sandbox drops to another user only when the grader is root")
def test_a_redteam_submission_costs_only_its_own_problems(tmp_path, transformer):
    """The three attacks at once, in a real grading run: self_attention and model.py's problems lose
    points, attention.py's and debugging.py's others do not; no grader path reaches results.json,
    and the run takes no test's whole time limit per test."""
    from autograder.grade import grade
    from test_grading import check_schema, lost, make_submission

    results = grade("transformer", make_submission(tmp_path / "s", transformer, extra=redteam_edits()))
    check_schema(results, transformer)
    model_problems = {p for p, problem in transformer.problems.items() if problem.file == "model.py"}
    assert lost(results) - model_problems == {"self_attention"}
    assert not GRADER_PATHS.search(json.dumps(results))
    outputs = [t["output"] for t in results["tests"] if "self_attention" in t["tags"] and t["status"] == "failed"]
    assert outputs and all("no description for you" in o for o in outputs), outputs[:2]
    assert results["execution_time"] < 120
