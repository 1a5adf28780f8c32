"""Read an assignment's manifest, `assignments/<name>/assignment.toml`.

Keys (default in brackets):

    name               the assignment's name; must match its folder           [required]
    title              one line shown at the top of results                   [name]
    submission_files   files a student submits, found at any depth            [required]
    reference          folder of the reference solution                      ["reference/<name>"]
    starter            folder of the generated student stubs                  ["starter/<name>"]
    handout            the student handout (Markdown)                         ["assignments/<name>/README.md"]
    extra_requirements pip requirement lines the grader image also needs      [[]]
    preload            modules the sandbox's zygote imports once, before it   [torch, numpy and
                       forks workers ("module" or "module:Name" for a lazily  each extra
                       loaded class, e.g. "transformers:DistilBertModel")     requirement's module]
    diagnoses_before_publish  name the likely mistake (mutants.toml) in public [true]
                       tests' output, visible at once; hidden tests show it
                       with the rest of their output, once grades are published
    gpu                grading needs a GPU: `regrade` on a Dask cluster asks   [false]
                       for workers with the resource GPU=1 (README.md, "Grade a class")
    [budgets]          training budgets per device, `name = { cpu = 60, cuda = 150 }`  [{}]
                       (steps, epochs): tests read them with kit/devices.py's
                       `budget(name, device)`; a GPU runner may train more, a CPU
                       container still grades in time. `cpu` is required, and
                       other devices fall back to it
    [limits]           (see README.md, "Time budget")
    test_timeout_s     seconds one test may run in grading; a test's own      [30]
                       @pytest.mark.timeout can only shorten it there
    timeouts_per_problem  timeouts a problem may cost; its other tests then   [2]
                       fail at once, unrun (0: no limit)
    total_timeout_s    seconds the whole grading run may take                 [480]
    platform_timeout_s the platform's limit (Gradescope: 600 s by default);   [600]
                       total_timeout_s must stay PLATFORM_MARGIN_S under it
    watchdog_grace_s   seconds past test_timeout_s before the grader kills a  [10]
                       test that pytest-timeout could not stop
    [[tests]]          test folders, each with:
      path             folder of test modules                                 [required]
      public           shipped to students, run by their one-command runner    [false]
      visibility       Gradescope visibility of these tests                  ["visible" if public
                                                                                else "after_published"]
    [problems.<name>]  one per graded problem, with:
      points           points, split over the tests marked with it: equally,  [required]
                       unless `weights` says otherwise
      file             the submitted file that holds it                       [required]
      forbidden        dotted names of functions or nn.Module classes the     [[]]
                       student's code may not call in this problem's tests
      weights          a hidden test's weight in the split of the points,     [{}: each test 1]
                       `{ test_function = 2 }` (each parametrization of it;
                       points split in proportion); a name that is no hidden
                       test of the problem is an error when the tests are
                       collected (build, grading): a public test weighs 1,
                       as the student's run counts it
    [questions.<id>]   written questions (seeds' "why" questions), answered in  [{}]
                       Markdown cells of the handout notebook, graded by hand:
      prompt           the question, in Markdown                              [required]
      points           points graded by hand on Gradescope (a separate       [0]
                       manual question); the autograder's total is unchanged
      after            the problem whose check cell the question follows      [the last problem]

Paths are relative to the repository root (or to /autograder/source in the zip).
"""
from __future__ import annotations

import dataclasses
import pathlib
import re

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11 (e.g. Ubuntu 22.04's python3)
    import tomli as tomllib

ROOT = pathlib.Path(__file__).resolve().parent.parent
VISIBILITIES = ("hidden", "after_due_date", "after_published", "visible")
# Seconds the grading run leaves to the platform's limit: starting Python, intake, writing
# results.json and run_autograder's own steps, on a slow machine (Gradescope's 0.5 vCPU).
PLATFORM_MARGIN_S = 60


class ManifestError(ValueError):
    """The manifest is missing a key or has a wrong value."""


@dataclasses.dataclass(frozen=True)
class TestFolder:
    """A [[tests]] folder: public tests ship to students; `visibility` is Gradescope's."""
    path: str
    public: bool
    visibility: str


NO_FOLDER = TestFolder(path="", public=False, visibility="hidden")  # a test file in no [[tests]] folder


@dataclasses.dataclass(frozen=True)
class Problem:
    name: str
    points: float
    file: str
    forbidden: tuple[str, ...] = ()
    weights: dict[str, float] = dataclasses.field(default_factory=dict, hash=False)  # test function -> weight (1)


@dataclasses.dataclass(frozen=True)
class Question:
    """A written question, answered in a Markdown cell of the notebook and graded by hand."""
    name: str
    prompt: str
    points: float = 0
    after: str | None = None


@dataclasses.dataclass(frozen=True)
class Manifest:
    name: str
    title: str
    root: pathlib.Path
    submission_files: tuple[str, ...]
    reference: str
    starter: str
    handout: str
    extra_requirements: tuple[str, ...]
    diagnoses_before_publish: bool
    test_timeout_s: float
    total_timeout_s: float
    watchdog_grace_s: float
    tests: tuple[TestFolder, ...]
    problems: dict[str, Problem]
    timeouts_per_problem: int = 2
    platform_timeout_s: float = 600
    preload: tuple[str, ...] = ("torch", "numpy")
    gpu: bool = False
    budgets: dict[str, dict[str, float]] = dataclasses.field(default_factory=dict)
    questions: dict[str, Question] = dataclasses.field(default_factory=dict)

    def path(self, relative: str) -> pathlib.Path:
        return self.root / relative

    @property
    def manifest_path(self) -> pathlib.Path:
        return self.root / "assignments" / self.name / "assignment.toml"

    @property
    def forbidden(self) -> dict[str, list[str]]:
        return {p.name: list(p.forbidden) for p in self.problems.values() if p.forbidden}

    @property
    def total_points(self) -> float:
        return sum(p.points for p in self.problems.values())

    def weighted_tests(self, problem: str, collected: list[dict]) -> list[tuple[str, float]]:
        """(node id, weight) of each collected test of `problem` ({"nodeid", "name", "file",
        "problems"}, as the plugin lists them), in their order; raises ManifestError for a weight
        that names no hidden test of the problem."""
        weights = self.problems[problem].weights
        mine = [t for t in collected if problem in t["problems"]]
        hidden = {t["name"].split("[")[0] for t in mine if not (self.folder_of(t["file"]) or NO_FOLDER).public}
        wrong = sorted(set(weights) - hidden)
        if wrong:
            raise ManifestError(f"{self.manifest_path}: [problems.{problem}] weights name "
                                f"{', '.join(wrong)}, which {'is' if len(wrong) == 1 else 'are'} no hidden test "
                                f"of {problem} (its hidden tests: {', '.join(sorted(hidden)) or 'none'})")
        return [(t["nodeid"], weights.get(t["name"].split("[")[0], 1)) for t in mine]

    def visibility_of(self, test_file: str) -> str:
        folder = self.folder_of(test_file)
        return folder.visibility if folder else "hidden"

    def folder_of(self, test_file: str) -> TestFolder | None:
        """The [[tests]] folder that holds `test_file` (a path relative to the root)."""
        parts = pathlib.PurePosixPath(test_file).parts
        for folder in self.tests:
            prefix = pathlib.PurePosixPath(folder.path).parts
            if parts[: len(prefix)] == prefix:
                return folder
        return None


def _require(table: dict, key: str, where: str):
    if key not in table:
        raise ManifestError(f"{where}: missing key {key!r}")
    return table[key]


def _default_preload(requirements) -> list[str]:
    """torch, numpy and the module of each extra requirement ("scikit-learn>=1" -> "scikit_learn")."""
    names = [re.split(r"[\s\[<>=!~;@]", str(line).strip(), maxsplit=1)[0] for line in requirements]
    return ["torch", "numpy", *[n.lower().replace("-", "_") for n in names if n]]


def load(name: str, root: pathlib.Path | str = ROOT) -> Manifest:
    """Load and check `assignments/<name>/assignment.toml` under `root`."""
    root = pathlib.Path(root)
    path = root / "assignments" / name / "assignment.toml"
    if not path.is_file():
        known = sorted(p.name for p in (root / "assignments").glob("*") if (p / "assignment.toml").is_file())
        raise ManifestError(f"no assignment {name!r} (no {path}); known: {', '.join(known) or 'none'}")
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    where = str(path)
    if _require(data, "name", where) != name:
        raise ManifestError(f"{where}: name {data['name']!r} does not match its folder {name!r}")
    limits = data.get("limits", {})
    tests = []
    for entry in _require(data, "tests", where):
        public = bool(entry.get("public", False))
        visibility = entry.get("visibility", "visible" if public else "after_published")
        if visibility not in VISIBILITIES:
            raise ManifestError(f"{where}: visibility {visibility!r} is not one of {VISIBILITIES}")
        tests.append(TestFolder(path=_require(entry, "path", where), public=public, visibility=visibility))
    files = tuple(_require(data, "submission_files", where))
    problems = {}
    for pname, table in _require(data, "problems", where).items():
        problem = Problem(pname, float(_require(table, "points", f"{where} [problems.{pname}]")),
                          _require(table, "file", f"{where} [problems.{pname}]"),
                          tuple(table.get("forbidden", ())), _weights(table.get("weights", {}), f"{where} "
                                                                       f"[problems.{pname}]"))
        if problem.file not in files:
            raise ManifestError(f"{where}: problem {pname} is in {problem.file}, which is not a submission file")
        problems[pname] = problem
    manifest = Manifest(
        name=name,
        title=data.get("title", name),
        root=root,
        submission_files=files,
        reference=data.get("reference", f"reference/{name}"),
        starter=data.get("starter", f"starter/{name}"),
        handout=data.get("handout", f"assignments/{name}/README.md"),
        extra_requirements=tuple(data.get("extra_requirements", ())),
        diagnoses_before_publish=bool(data.get("diagnoses_before_publish", True)),
        test_timeout_s=float(limits.get("test_timeout_s", 30)),
        total_timeout_s=float(limits.get("total_timeout_s", 480)),
        watchdog_grace_s=float(limits.get("watchdog_grace_s", 10)),
        tests=tuple(tests),
        problems=problems,
        timeouts_per_problem=int(limits.get("timeouts_per_problem", 2)),
        platform_timeout_s=float(limits.get("platform_timeout_s", 600)),
        preload=tuple(str(n) for n in data.get("preload", _default_preload(data.get("extra_requirements", ())))),
        gpu=bool(data.get("gpu", False)),
        budgets=_budgets(data.get("budgets", {}), where),
        questions=_questions(data.get("questions", {}), problems, where),
    )
    _check_limits(manifest, where)
    return manifest


def _weights(table, where: str) -> dict[str, float]:
    """[problems.X] weights: `{ test_function = 2 }`, each a number > 0 (the tests are checked when collected)."""
    if not isinstance(table, dict) or not all(
            isinstance(w, (int, float)) and not isinstance(w, bool) and w > 0 for w in table.values()):
        raise ManifestError(f"{where}: weights must be a table of numbers > 0 per test function "
                            "(e.g. { test_causal_mask_blocks_the_future = 2 })")
    return dict(table)


def _budgets(table: dict, where: str) -> dict[str, dict[str, float]]:
    """[budgets]: each name maps devices ('cpu' required, 'cuda', ...) to a number."""
    budgets = {}
    for name, per_device in table.items():
        if not isinstance(per_device, dict) or "cpu" not in per_device \
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in per_device.values()):
            raise ManifestError(f"{where}: [budgets] {name} must be a table of numbers per device, "
                                f"with `cpu` (e.g. {{ cpu = 60, cuda = 150 }})")
        budgets[name] = dict(per_device)
    return budgets


def _questions(table: dict, problems: dict, where: str) -> dict[str, Question]:
    """[questions]: `id = { prompt = "...", points = 2, after = "problem" }`."""
    questions = {}
    for qid, entry in table.items():
        if not re.fullmatch(r"[A-Za-z_][\w.-]*", qid) or not isinstance(entry, dict):
            raise ManifestError(f"{where}: [questions] {qid!r} must be a table named with letters, digits, _ . -")
        points = entry.get("points", 0)
        if isinstance(points, bool) or not isinstance(points, (int, float)) or points < 0:
            raise ManifestError(f"{where}: [questions.{qid}] points must be a number >= 0")
        after = entry.get("after")
        if after is not None and after not in problems:
            raise ManifestError(f"{where}: [questions.{qid}] after = {after!r} is not a problem")
        questions[qid] = Question(qid, str(_require(entry, "prompt", f"{where} [questions.{qid}]")),
                                  float(points), after)
    return questions


def _check_limits(manifest: Manifest, where: str) -> None:
    """The time limits fit in each other: a test in the run, the run in the platform's limit."""
    if min(manifest.test_timeout_s, manifest.total_timeout_s, manifest.watchdog_grace_s) <= 0 \
            or manifest.timeouts_per_problem < 0:
        raise ManifestError(f"{where}: [limits] must be positive")
    if manifest.test_timeout_s + manifest.watchdog_grace_s >= manifest.total_timeout_s:
        raise ManifestError(f"{where}: test_timeout_s + watchdog_grace_s must be under total_timeout_s")
    if manifest.total_timeout_s + PLATFORM_MARGIN_S > manifest.platform_timeout_s:
        raise ManifestError(
            f"{where}: total_timeout_s = {manifest.total_timeout_s:g} leaves less than {PLATFORM_MARGIN_S} s "
            f"under platform_timeout_s = {manifest.platform_timeout_s:g} (Gradescope's limit, 600 s unless "
            "raised in the assignment's settings): the platform could stop the run before results.json is written")
