"""`regrade`: a whole class graded on a real Dask LocalCluster (two worker processes), as `grade`
grades each submission; resumable; broken submissions cost only their own row; a worker killed
mid-run; a scheduler given by address; report.html rendered in headless Chromium.

The class is small (fixtures.SMALL: the reference, two mutants, a crash, an empty submission and
a corrupt zip) and graded once for the module; each grade costs a few seconds of both cores.
"""
from __future__ import annotations

import csv
import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import zipfile

import pytest

from autograder import manifest as manifest_module
from autograder.grade import grade
from autograder.regrade import outputs, regrade, sources, worker
from autograder.regrade.fixtures import SMALL, make_class

CHROMIUM = pathlib.Path("/usr/bin/chromium")


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """The small class as a Gradescope export zip, graded with two local workers."""
    manifest = manifest_module.load("transformer")
    base = tmp_path_factory.mktemp("regrade")
    export_zip = make_class(manifest, base / "zipped", SMALL, zipped=True)
    folder = make_class(manifest, base / "unzipped", SMALL)  # the same class, unpacked (the byte-for-byte check)
    out = base / "out"
    lines = []
    outcome = regrade("transformer", export_zip, out, workers=2, progress=False, echo=lines.append)
    return {"manifest": manifest, "zip": export_zip, "folder": folder, "out": out, "outcome": outcome,
            "lines": lines, "base": base}


def _csv(path):
    with open(path, newline="", encoding="utf-8") as stream:
        return list(csv.DictReader(stream))


def test_every_submission_gets_results_and_one_row(small):
    out, outcome = small["out"], small["outcome"]
    assert outcome.graded_now == len(SMALL) and not outcome.interrupted
    assert sorted(p.stem for p in (out / "results").glob("*.json")) == [f"submission_{100000 + k}"
                                                                          for k in range(len(SMALL))]
    rows = {r["Submission"]: r for r in _csv(out / "scores.csv")}
    assert len(rows) == len(SMALL)
    reference, crash = rows["submission_100000"], rows["submission_100003"]
    assert (reference["Name"], reference["Email"], reference["SID"]) == ("Ada Lovelace", "ada.0@example.edu", "1000")
    assert float(reference["Total Score"]) == 100 and reference["Status"] == "graded"
    # the crash at attention.py's import costs attention.py's problems only
    assert crash["Status"] == "graded" and float(crash["self_attention"]) == 0 and float(crash["lm_loss"]) == 8
    for key in ("submission_100001", "submission_100002"):  # the mutants lose points, are graded
        assert rows[key]["Status"] == "graded" and 0 < float(rows[key]["Total Score"]) < 100
    assert rows["submission_100004"]["Reason"] == worker.EMPTY
    assert "corrupt zip" in rows["submission_100005"]["Reason"]
    assert all(rows[k]["Status"] == "failed" and float(rows[k]["Total Score"]) == 0
               for k in ("submission_100004", "submission_100005"))
    problems = list(small["manifest"].problems)
    assert list(rows["submission_100000"])[:4 + len(problems)] == ["Name", "SID", "Email", "Total Score", *problems]


def test_summary_counts_mean_median_failures_and_diff(small):
    text = "\n".join(small["outcome"].lines)
    assert f"{len(SMALL)} submissions: {len(SMALL)} graded now, 0 already graded, 2 failed to grade" in text
    assert re.search(r"total: mean \d+\.\d\d, median \d+\.\d\d / 100", text)
    assert "diff: " in text and "changed" in text   # against the export's scores


def _without_time(text: str) -> str:
    return re.sub(r'"execution_time": [0-9.]+', '"execution_time": T', text)


def test_results_are_what_grade_writes_byte_for_byte(small, tmp_path):
    """A sample (a mutant: its results hold failures, diagnoses and notes): `grade` on the unpacked
    submission writes the same bytes as regrade's worker did, apart from the time."""
    key = "submission_100001"
    grade("transformer", small["folder"] / key, tmp_path / "direct.json", quiet=True)
    direct = (tmp_path / "direct.json").read_text(encoding="utf-8")
    regraded = (small["out"] / "results" / f"{key}.json").read_text(encoding="utf-8")
    assert "Likely mistake" in regraded
    assert _without_time(regraded) == _without_time(direct)


def test_a_rerun_grades_nothing_graded(small):
    lines = []
    again = regrade("transformer", small["zip"], small["out"], workers=2, progress=False, echo=lines.append)
    assert again.graded_now == 0 and again.skipped == len(SMALL)
    assert [r.status for r in again.rows] == [r.status for r in small["outcome"].rows]


def test_a_changed_submission_or_autograder_is_graded_again(small, tmp_path):
    found, _ = sources.read(small["folder"])
    digest = "a" * 64
    out = tmp_path / "out"
    for submission in found:
        outputs.record(out, submission, digest, {"results": "{}\n", "reason": ""})
    assert all(outputs.is_done(out, s, digest) for s in found)
    assert not any(outputs.is_done(out, s, "b" * 64) for s in found)   # another autograder zip
    changed = small["folder"].parent.parent / "changed"
    shutil.copytree(small["folder"], changed)
    with open(changed / "submission_100000" / "model.py", "a") as stream:
        stream.write("\n# edited after the deadline\n")
    again, _ = sources.read(changed)
    assert [outputs.is_done(out, s, digest) for s in again] == [False] + [True] * (len(SMALL) - 1)


def test_sources_read_an_export_zip_its_folder_and_a_plain_folder(small, tmp_path):
    from_zip, export = sources.read(small["zip"], tmp_path)
    from_folder, _ = sources.read(small["folder"])
    assert export and [s.digest for s in from_zip] == [s.digest for s in from_folder]
    assert from_zip[1].previous_score is not None and from_zip[1].students[0].name == "Alan Turing"
    plain = tmp_path / "plain"
    (plain / "ada").mkdir(parents=True)
    (plain / "ada" / "attention.py").write_text("x = 1\n")
    (plain / "ada" / ".venv").mkdir()
    (plain / "ada" / ".venv" / "big.bin").write_bytes(b"0" * 1000)
    zipfile.ZipFile(plain / "bob.zip", "w").close()
    (plain / "carol.ipynb").write_text("{}")
    (plain / "dave.txt").write_text("hi")
    found, export = sources.read(plain)
    assert not export and [s.key for s in found] == ["ada", "bob", "carol", "dave.txt"]
    assert [bool(s.rejected) for s in found] == [False, False, False, True]
    assert (found[2].kind, found[2].filename, found[2].payload) == ("file", "carol.ipynb", b"{}")  # graded by intake
    rebuilt = sources.unpack_folder(found[0].payload, tmp_path / "rebuilt")
    assert (rebuilt / ".venv").is_dir() and not (rebuilt / ".venv" / "big.bin").exists()  # intake still names it


def test_wrong_files_and_a_grader_that_could_not_run_have_reasons(tmp_path, transformer):
    folder = tmp_path / "wrong"
    folder.mkdir()
    (folder / "notes.txt").write_text("sorry\n")
    results = {"tests": [{"name": "t", "status": "failed", "output": "x"}]}
    assert "none of the assignment's files" in worker.reason_for("folder", "", b"", folder, transformer, results)
    not_run = {"tests": [{"name": "self_attention: not graded", "output": "the grader failed\n..."}]}
    assert worker.reason_for("folder", "", b"", folder, transformer, not_run).startswith("the tests did not run")


def test_a_previous_run_gives_the_diff_with_the_tests_that_caused_it(small, tmp_path):
    previous = tmp_path / "old"
    shutil.copytree(small["out"], previous)
    path = previous / "results" / "submission_100000.json"
    old = json.loads(path.read_text())
    old["tests"][0]["score"] = 0.0
    old["score"] = round(old["score"] - old["tests"][0]["max_score"], 4)
    path.write_text(json.dumps(old))
    rows = [outputs.row_of(small["out"], s) for s in sources.read(small["folder"])[0]]
    changes = outputs.diff(rows, outputs.previous_scores(previous))
    assert [c.key for c in changes] == ["submission_100000"]
    assert changes[0].tests == [(old["tests"][0]["name"], old["tests"][0]["max_score"])]
    assert "diff: 1 changed (1 up, 0 down)" in outputs.diff_line(changes)


def _chromium(*args, tmp_path):
    if not CHROMIUM.is_file():
        pytest.fail(f"{CHROMIUM} is missing: `make setup` installs Debian's chromium (apt-get install -y chromium)")
    return subprocess.run([str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                           "--no-first-run", "--disable-background-networking", "--disable-component-update",
                           "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}", *args],
                          capture_output=True, text=True, timeout=120)


def _page_requests(report: pathlib.Path, tmp_path: pathlib.Path) -> set[str]:
    """The URLs the page asked the network for while Chromium rendered it (its net log: requests
    the page initiated; the browser's own background requests have no origin)."""
    netlog = tmp_path / f"{report.stem}-net.json"
    _chromium(f"--log-net-log={netlog}", f"--screenshot={tmp_path / 'ignored.png'}", report.as_uri(),
              tmp_path=tmp_path)
    events = json.loads(netlog.read_text(errors="replace")).get("events", [])
    return {e["params"]["url"] for e in events
            if "url" in e.get("params", {}) and e["params"].get("initiator", "not an origin") != "not an origin"}


def test_report_renders_offline_in_chromium_with_its_plots(small, tmp_path):
    import matplotlib.image

    report = small["out"] / "report.html"
    text = report.read_text(encoding="utf-8")
    assert text.count("data:image/png;base64,") >= 3 and "Likely mistake" in text
    assert not re.search(r"(src|href)=\"(?!data:)", text)   # nothing to fetch
    shot = tmp_path / "shot.png"
    done = _chromium("--window-size=1200,2600", f"--screenshot={shot}", report.as_uri(), tmp_path=tmp_path)
    assert shot.is_file(), done.stderr[-2000:]
    pixels = (matplotlib.image.imread(shot)[..., :3] * 255).round().astype(int)
    colours = {tuple(p) for p in pixels.reshape(-1, 3)[::7]}
    for plot, rgb in {"totals": (0x44, 0x72, 0xc4), "problems": (0x70, 0xad, 0x47), "failures": (0xc0, 0, 0)}.items():
        assert any(max(abs(a - b) for a, b in zip(c, rgb)) <= 3 for c in colours), f"the {plot} plot is not drawn"
    dom = _chromium("--dump-dom", report.as_uri(), tmp_path=tmp_path).stdout
    assert dom.count("<img") >= 3 and "What changed" in dom
    assert _page_requests(report, tmp_path) == set()
    fetching = tmp_path / "fetching.html"   # the check sees a page that fetches something
    fetching.write_text(text.replace("</body>", '<img src="http://127.0.0.1:9/x.png"></body>'), encoding="utf-8")
    assert _page_requests(fetching, tmp_path) == {"http://127.0.0.1:9/x.png"}


def _unpacks() -> int:
    from autograder.regrade import worker as worker_module

    return worker_module.UNPACKS


def _process(pid: int) -> tuple[int, str, int] | None:
    """(parent pid, state, start time) of a process from /proc, None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[1]), fields[0], int(fields[19])


def _descendants(root: int) -> dict[int, tuple[int, int]]:
    """Every living descendant of `root`: {pid: (generation, start time)} (children: generation 1)."""
    table = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            info = _process(int(entry))
            if info is not None and info[1] != "Z":
                table[int(entry)] = info
    found, frontier, generation = {}, {root}, 0
    while frontier:
        generation += 1
        frontier = {pid for pid, (parent, _, _) in table.items() if parent in frontier and pid not in found}
        found.update({pid: (generation, table[pid][2]) for pid in frontier})
    return found


def _alive(processes: dict[int, tuple[int, int]]) -> list[int]:
    """Those of `processes` still running (not a zombie, and not a new process that reuses the pid)."""
    return [pid for pid, (_, started) in processes.items()
            if (info := _process(pid)) is not None and info[1] != "Z" and info[2] == started]


def test_a_worker_killed_mid_run_loses_nothing_and_counts_nothing_twice(tmp_path, transformer):
    """An existing cluster, given by its scheduler's address; one of its two workers is killed
    (SIGKILL) while it grades, when its test process, zygote and sandbox worker run (generations
    2, 3 and 4 below it: the warm launcher is the first): every process below it dies with it, at
    once; its submission runs again on a worker, every submission has one result."""
    from distributed import Client, LocalCluster

    plain = make_class(transformer, tmp_path / "class", ["reference", "mutant", "mutant"], layout="plain")
    (plain / "zz-notes.txt").write_text("{}")   # neither a folder, a zip nor a notebook
    scratch = tmp_path / "scratch"   # the workers' own folders (Dask's local_directory)
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, memory_limit=0,
                           local_directory=str(scratch))
    client = Client(cluster)
    outcome, lines, below, left = {}, [], {}, []
    try:
        thread = threading.Thread(target=lambda: outcome.setdefault("it", regrade(
            "transformer", plain, tmp_path / "out", scheduler=cluster.scheduler_address, progress=False,
            echo=lines.append)))
        thread.start()
        deadline = time.monotonic() + 120
        busy = {}
        while time.monotonic() < deadline and not busy:
            busy = {w: tasks for w, tasks in client.processing().items() if tasks}
            time.sleep(0.2)
        assert busy, "no worker started grading"
        victim = next(iter(busy))
        pid = client.run(os.getpid, workers=[victim])[victim]
        below = {}
        while time.monotonic() < deadline and max((g for g, _ in below.values()), default=0) < 4:
            below = _descendants(pid)
            time.sleep(0.1)
        assert max(g for g, _ in below.values()) >= 4, f"no sandbox worker below the worker: {below}"
        left = _grading_folders(scratch)   # what the victim cannot remove: in its Dask folder
        assert {p.name.split("-")[0] for p in left} >= {"regrade", "grade", "sandbox"}, left
        os.kill(pid, signal.SIGKILL)
        killed = time.monotonic()
        while _alive(below) and time.monotonic() - killed < 5:
            time.sleep(0.05)
        assert not _alive(below), f"{len(_alive(below))} processes outlived the worker: {_alive(below)}"
        thread.join(timeout=400)
        assert not thread.is_alive()
        unpacks = client.run(_unpacks)   # the autograder zip reached each worker once, not per submission
        assert unpacks and all(n <= 1 for n in unpacks.values()) and sum(unpacks.values()) >= 1, unpacks
    finally:
        for leftover in _alive(below):   # a failed check leaves nothing running
            os.kill(leftover, signal.SIGKILL)
        client.close()
        cluster.close()
    assert not [p for p in left if p.exists()], "the killed worker's folders outlived the cluster"
    assert not _grading_folders(scratch)
    result = outcome["it"]
    assert result.graded_now == 3 and not result.interrupted
    rows = _csv(tmp_path / "out" / "scores.csv")
    assert sorted(r["Submission"] for r in rows) == ["000-reference", "001-mutant", "002-mutant", "zz-notes.txt"]
    statuses = {r["Submission"]: r["Status"] for r in rows}
    assert statuses == {"000-reference": "graded", "001-mutant": "graded", "002-mutant": "graded",
                        "zz-notes.txt": "rejected"}
    assert len(list((tmp_path / "out" / "results").glob("*.json"))) == 3
    finished_by = [json.loads(p.read_text())["worker"] for p in (tmp_path / "out" / "state").glob("*.json")]
    assert len(finished_by) == 3 and not any(w.endswith(f":{pid}") for w in finished_by)  # re-run elsewhere


def _grading_folders(scratch: pathlib.Path) -> list[pathlib.Path]:
    """The grading runs' folders under `scratch` (os.walk: folders may go while it looks)."""
    return [pathlib.Path(top, name) for top, names, _ in os.walk(scratch) for name in names
            if name.startswith(("regrade-", "grade-", "sandbox-"))]


class _FakeFuture:
    def __init__(self, value):
        self.value = value

    def result(self):
        return self.value


class _FakeClient:
    """Enough of distributed.Client for grade_all: tasks run at once; Ctrl-C comes after the first result."""
    def __init__(self):
        self.cancelled, self.priorities = [], {}

    def scatter(self, data, broadcast=False, hash=True):
        assert broadcast
        return "zip"

    def submit(self, function, *args, key=None, pure=None, resources=None, priority=0):
        _, digest, assignment, key_, kind, filename, payload, warm = args
        self.priorities[key_] = priority
        return _FakeFuture({"key": key_, "results": json.dumps({"score": 1.0, "tests": []}) + "\n",
                            "reason": "", "seconds": 0.1, "worker": "fake"})

    def cancel(self, futures):
        self.cancelled += futures


def test_ctrl_c_keeps_what_is_graded_and_cancels_the_rest(tmp_path, transformer, monkeypatch):
    import distributed

    from autograder.regrade.cluster import grade_all

    def interrupted(futures):
        yield next(iter(futures))
        raise KeyboardInterrupt

    monkeypatch.setattr(distributed, "as_completed", interrupted)
    todo = [sources.Submission(f"s{k}", kind="file", filename="a.zip", payload=bytes([k])) for k in range(3)]
    client = _FakeClient()
    done, stopped = grade_all(client, transformer, todo, b"zip", "d" * 64, tmp_path, progress=False, local=True)
    assert (done, stopped) == (1, True) and len(client.cancelled) == 2
    assert [outputs.is_done(tmp_path, s, "d" * 64) for s in todo] == [True, False, False]
    rows = [outputs.row_of(tmp_path, s) for s in todo]
    assert [r.status for r in rows] == ["graded", "pending", "pending"]
    assert "interrupted" in outputs.summary_lines(rows, transformer, 1, 0, None, 1.0)[0]


def test_the_slowest_last_time_are_graded_first(tmp_path, transformer, monkeypatch):
    """A regrade gives the scheduler's highest priority to the submissions whose last grading (in OUT/
    itself, graded with an older zip, or in --previous) took longest; one never graded counts as
    the median. No long grading then starts last while the other workers idle."""
    import distributed

    from autograder.regrade.cluster import grade_all

    monkeypatch.setattr(distributed, "as_completed", lambda futures: list(futures))

    def graded_before(out, seconds):
        for key, taken in seconds.items():
            outputs.record(out, sources.Submission(key, kind="file", filename="a.zip", payload=b"old"), "0" * 64,
                           {"results": "{}\n", "reason": "", "seconds": taken, "worker": "w"})

    graded_before(tmp_path / "out", {"quick": 1.0, "hang": 45.0})
    graded_before(tmp_path / "previous", {"middling": 8.0, "quick": 30.0, "slow": 20.0})
    todo = [sources.Submission(key, kind="file", filename="a.zip", payload=key.encode())
            for key in ("quick", "new", "middling", "hang", "slow")]
    seconds = outputs.seconds_taken(tmp_path / "out", tmp_path / "previous")
    assert seconds == {"quick": 1.0, "hang": 45.0, "middling": 8.0, "slow": 20.0}
    client = _FakeClient()
    grade_all(client, transformer, todo, b"zip", "d" * 64, tmp_path / "out", progress=False, local=True,
              seconds=seconds)
    by_priority = sorted(client.priorities, key=client.priorities.get, reverse=True)
    assert by_priority == ["hang", "slow", "new", "middling", "quick"]  # "new": the median, 14 s
    client = _FakeClient()
    grade_all(client, transformer, todo, b"zip", "d" * 64, tmp_path / "fresh", progress=False, local=True)
    assert sorted(client.priorities, key=client.priorities.get, reverse=True) == [s.key for s in todo]


def test_a_submission_that_keeps_killing_workers_is_one_failed_row(tmp_path, transformer, monkeypatch):
    import distributed
    from distributed.scheduler import KilledWorker

    from autograder.regrade.cluster import grade_all

    class Killer(_FakeFuture):
        def result(self):
            raise KilledWorker("regrade-x", "tcp://w", 3)

    client = _FakeClient()
    monkeypatch.setattr(client, "submit", lambda *a, **k: Killer(None))
    monkeypatch.setattr(distributed, "as_completed", lambda futures: list(futures))
    todo = [sources.Submission("bomb", kind="file", filename="a.zip", payload=b"x")]
    assert grade_all(client, transformer, todo, b"zip", "d" * 64, tmp_path, progress=False, local=True) == (1, False)
    row = outputs.row_of(tmp_path, todo[0])
    assert row.status == "failed" and "killed the worker" in row.reason
    assert not outputs.is_done(tmp_path, todo[0], "d" * 64)   # tried again by the next run


def test_a_gpu_assignment_asks_the_cluster_for_gpu_workers(tmp_path, transformer, copy_root):
    import dataclasses

    from autograder.regrade.cluster import gpu_resources

    root = copy_root(tmp_path / "root")
    toml = root / "assignments" / "transformer" / "assignment.toml"
    toml.write_text("gpu = true\n" + toml.read_text())
    assert manifest_module.load("transformer", root).gpu and not transformer.gpu

    class Cluster:
        def __init__(self, resources):
            self.resources = resources

        def scheduler_info(self):
            return {"workers": {"tcp://w": {"resources": self.resources}}}

    warned = []
    assert gpu_resources(Cluster({}), transformer, warned.append) is None
    gpu = dataclasses.replace(transformer, gpu=True)
    assert gpu_resources(Cluster({"GPU": 1}), gpu, warned.append) == {"GPU": 1} and not warned
    assert gpu_resources(Cluster({}), gpu, warned.append) == {"GPU": 1} and "GPU=1" in warned[0]


def test_a_warm_test_process_is_polled_killed_and_waited_like_a_popen(tmp_path):
    """The runner's handle on a warm child: its exit status (0, 1), and a kill of its process group
    (the watchdog's) (-9); the child holds none of the launcher's pipes (student code could write
    forged exit statuses to them); the server's objects are frozen for its children's collector; a
    child and its zygote die with the server when it is killed."""
    from autograder.regrade.warm import WarmLauncher
    from autograder.sandbox import launch

    tests = tmp_path / "tests"
    tests.mkdir()
    (tests / "test_a.py").write_text(
        "import gc, os, time\n\n"
        "def test_fds():\n    open(os.environ['FDS'] + '.frozen', 'w').write(str(gc.get_freeze_count()))\n"
        "    links = []\n    for fd in os.listdir('/proc/self/fd'):\n        try:\n"
        "            links.append(os.readlink('/proc/self/fd/' + fd))\n        except OSError:\n            pass\n"
        "    open(os.environ['FDS'], 'w').write('\\n'.join(links))\n\n"
        "def test_mode():\n    mode = os.environ['MODE']\n    assert mode != 'fail'\n"
        "    while mode == 'hang':\n        time.sleep(1)\n")
    submission = tmp_path / "submission"
    submission.mkdir()
    launcher = WarmLauncher()
    children, below = {}, {}
    try:
        for mode in ("pass", "fail", "hang"):
            env = dict(os.environ, MODE=mode, FDS=str(tmp_path / f"{mode}.fds"),
                       PYTHONPATH=str(pathlib.Path(__file__).resolve().parent.parent))
            command, bare = launch.command(sys.executable, [sys.executable, "-m", "pytest", "-q", "-p",
                                                            "no:cacheprovider", str(tests)],
                                           env, submission, {"preload": []}, tmp_path / f"{mode}.json")
            children[mode] = launcher.spawn(command, bare, tmp_path, tmp_path / f"{mode}.log")
            assert children[mode] is not None, (tmp_path / f"{mode}.log").read_text() if (
                tmp_path / f"{mode}.log").exists() else "no log"
        assert children["pass"].wait(timeout=120) == 0, (tmp_path / "pass.log").read_text()
        server_pipes = {os.readlink(f"/proc/{launcher.process.pid}/fd/{fd}") for fd in (0, 1)}
        assert all(link.startswith("pipe:") for link in server_pipes)
        assert not server_pipes & set((tmp_path / "pass.fds").read_text().splitlines())
        assert int((tmp_path / "pass.fds.frozen").read_text()) > 1000   # the server's imports, frozen
        assert children["fail"].wait(timeout=120) == 1
        hang = children["hang"]
        time.sleep(1)
        assert hang.poll() is None
        os.killpg(hang.pid, signal.SIGKILL)
        assert hang.wait(timeout=30) == -signal.SIGKILL
        assert launcher.spawned == 3 and not launcher.cold
        command, bare = launch.command(sys.executable, [sys.executable, "-m", "pytest", "-q", str(tests)],
                                       dict(env, MODE="hang"), submission, {"preload": []}, tmp_path / "orphan.json")
        children["orphan"] = orphan = launcher.spawn(command, bare, tmp_path, tmp_path / "orphan.log")
        while max((g for g, _ in below.values()), default=0) < 2 and orphan.poll() is None:
            below = _descendants(launcher.process.pid)   # the test process and its zygote
            time.sleep(0.05)
        os.kill(launcher.process.pid, signal.SIGKILL)   # the server killed: its children die with it
        deadline = time.monotonic() + 5
        while _alive(below) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(below) >= 2 and not _alive(below), below
        assert orphan.poll() == -signal.SIGKILL
    finally:
        for child in children.values():   # a failed check leaves no test process running
            if child is not None and child.poll() is None:
                os.killpg(child.pid, signal.SIGKILL)
        for leftover in _alive(below):
            os.kill(leftover, signal.SIGKILL)
        launcher.close()


def test_a_cold_test_process_dies_with_the_worker_process(tmp_path):
    """`regrade --cold`: a test process started by the worker (worker.cold_spawn) dies when the
    worker process is killed (SIGKILL: no cleanup of its own runs)."""
    script = ("import os, signal, sys; from autograder.regrade.worker import cold_spawn; "
              "p = cold_spawn(['sleep', '60'], {'PATH': os.environ['PATH']}, sys.argv[1], sys.argv[1] + '/log'); "
              "print(p.pid, flush=True); os.kill(os.getpid(), signal.SIGKILL)")
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, timeout=60,
                          cwd=pathlib.Path(__file__).resolve().parent.parent)
    assert done.returncode == -signal.SIGKILL, done.stderr
    sleeper = int(done.stdout)
    deadline = time.monotonic() + 5
    while (info := _process(sleeper)) is not None and info[1] != "Z" and time.monotonic() < deadline:
        time.sleep(0.05)
    if info is not None and info[1] != "Z":
        os.kill(sleeper, signal.SIGKILL)
        pytest.fail("the test process outlived the worker process")


def test_the_demo_gives_one_hidden_test_a_weight_in_a_copy(tmp_path, transformer, copy_root):
    """regrade-demo's change: one hidden test's weight in the copy's manifest; its problem's points
    move to that test (each parametrization), every other test keeps its points."""
    from autograder.build import collect
    from autograder.grade.results import points_per_test
    from autograder.regrade.demo import _weigh

    collected = collect(transformer)
    hidden = next(t for t in collected if "causal_mask" in t["problems"] and "tests_hidden" in t["file"])
    function = hidden["name"].split("[")[0]
    root = copy_root(tmp_path / "root")
    _weigh(root, "transformer", "causal_mask", function, 3)
    weighed = manifest_module.load("transformer", root)
    assert weighed.problems["causal_mask"].weights == {function: 3}
    assert weighed.problems["causal_mask"].points == transformer.problems["causal_mask"].points
    before, after = points_per_test(transformer, collected), points_per_test(weighed, collected)
    moved = {t["nodeid"] for t in collected if before[t["nodeid"]] != after[t["nodeid"]]}
    mask = [t for t in collected if "causal_mask" in t["problems"]]
    assert moved == {t["nodeid"] for t in mask}
    assert all(after[t["nodeid"]] > before[t["nodeid"]] for t in mask if t["name"].split("[")[0] == function)
    assert sum(after.values()) == pytest.approx(sum(before.values()))


def test_the_warm_launcher_imports_pytest_but_not_the_plugins_the_test_process_names():
    """Its children start with pytest and its built-in plugins imported; the plugins named with -p
    are imported by pytest itself, which rewrites their asserts (and warns of one imported already)."""
    from autograder.regrade import warm

    probe = ("import runpy, sys; runpy.run_path(sys.argv[1], run_name='__warm__')['import_pytest'](); "
             "print(' '.join(m for m in ('pytest', '_pytest.fixtures', '_pytest.python', '_pytest.skipping', "
             "'pytest_timeout', 'autograder.kit.plugin', 'autograder.grader.plugin') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", probe, warm.__file__], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["pytest", "_pytest.fixtures", "_pytest.python", "_pytest.skipping"]


def test_the_bytecode_cache_is_turned_on_only_once_the_zygote_is_forked(tmp_path, monkeypatch):
    """A warm test process keeps its bytecode (warm.py); the zygote it forks first keeps the flags
    of `grade` (no bytecode written), so the sandbox's workers write none either."""
    import types

    from autograder.regrade import warm

    seen = []
    launch = types.SimpleNamespace(fork_zygote=lambda _: seen.append((sys.pycache_prefix, sys.dont_write_bytecode)))
    monkeypatch.setattr(sys, "pycache_prefix", None)
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    warm._cache_bytecode_after_the_zygote(launch, str(tmp_path))
    launch.fork_zygote({"preload": []})
    assert seen == [(None, True)]
    assert (sys.pycache_prefix, sys.dont_write_bytecode) == (str(tmp_path), False)


def test_a_warm_worker_keeps_its_bytecode_and_grades_the_same_with_it(tmp_path, transformer, monkeypatch):
    """Two warm grades of one submission on one worker: the first compiles the test modules (pytest's
    assertion rewriting) into the worker's private folder, the second reads them; same results."""
    import hashlib

    from autograder.regrade import autograder_zip_bytes

    monkeypatch.setattr(worker, "_WARM", None)
    monkeypatch.delenv("AUTOGRADER_WORKER_USER", raising=False)
    zip_bytes = autograder_zip_bytes(transformer)
    digest = hashlib.sha256(zip_bytes).hexdigest()
    [submission], _ = sources.read(make_class(transformer, tmp_path / "class", ["mutant"], layout="plain"))
    graded = []
    try:
        for _ in range(2):
            graded.append(worker.grade_one(zip_bytes, digest, "transformer", submission.key, submission.kind,
                                           submission.filename, submission.payload))
            if len(graded) == 1:
                cached = sorted(p.name for p in pathlib.Path(worker._WARM.pycache).rglob("*-pytest-*.pyc"))
        launcher = worker._WARM
        assert launcher.spawned == 2 and not launcher.cold
    finally:
        if worker._WARM is not None:
            worker._WARM.close()
            shutil.rmtree(worker._WARM.pycache, ignore_errors=True)
    assert any(name.startswith("test_") for name in cached), cached
    assert not list(worker.unpacked(zip_bytes, digest).rglob("__pycache__"))   # nothing beside the sources
    first, second = (json.loads(g["results"]) for g in graded)
    assert 0 < first["score"] < 100 and _without_time(graded[0]["results"]) == _without_time(graded[1]["results"])


def test_a_weight_that_names_no_hidden_test_stops_regrade_before_grading(tmp_path, transformer, copy_root):
    from autograder.regrade.demo import _weigh

    root = copy_root(tmp_path / "root")
    _weigh(root, "transformer", "causal_mask", "test_no_such_test", 2)
    with pytest.raises(manifest_module.ManifestError, match="test_no_such_test, which is no hidden test"):
        regrade("transformer", tmp_path / "nothing-here", tmp_path / "out", root=root, progress=False)
    assert not (tmp_path / "out").exists()


def test_the_local_cluster_starts_without_the_dashboards_periodic_work(monkeypatch):
    """connect() builds its LocalCluster (scheduler, nannies, and through them the workers) under
    cluster.LOCAL_CLUSTER_CONFIG: no sampling profiler, a slow event-loop watchdog and system
    monitor. Dask's defaults cost an idle 2-worker cluster about 8% of 2 cores."""
    import dask
    import distributed

    from autograder.regrade import cluster

    seen = {}

    class Recorded:
        def __init__(self, **kwargs):
            seen.update({key: dask.config.get(key) for key in cluster.LOCAL_CLUSTER_CONFIG})
            seen["workers"] = kwargs["n_workers"]

        def close(self):
            seen["closed"] = True

    monkeypatch.setattr(distributed, "LocalCluster", Recorded)
    monkeypatch.setattr(distributed, "Client", lambda local: Recorded.__new__(Recorded))
    with cluster.connect(2):
        pass
    assert seen == {**cluster.LOCAL_CLUSTER_CONFIG, "workers": 2, "closed": True}
    assert dask.config.get("distributed.worker.profile.enabled") is True  # only while the cluster starts
