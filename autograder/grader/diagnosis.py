"""Name the classic mistake behind a wrong result.

When a check fails, the grader replays what the student's code was last asked to do on each
known wrong variant of the reference (the mutants that carry a `diagnosis` in mutants.toml)
whose problems include the function or class concerned. If a variant's result matches the
student's while differing from the reference's, the failure names that variant's mistake in
one sentence. Three kinds of calls are replayed:

- functions (`self_attention`, `lm_loss`, ...): the last reference call, with the same
  arguments, when it was to the function the student was last asked for (and the student's
  call with its own arguments, when they differ: a default the test left out), from the random
  state the student's call started from (so a variant that samples draws the same numbers);
  its result is compared with the student's (`got`) and the reference's (`expected`): tensors
  and NumPy arrays within a tolerance, plain data (dicts, lists, strings, numbers: a tokenizer's
  merges, say) exactly, floats to 1e-9.
- modules (`Block`, `FeedForward`, ...): the last forward call the test made to a student
  module. Each variant's class is built with the arguments the student's was built with
  (the last call into student code, as the adapter recorded it), given the student module's
  parameters by name, its train/eval mode and the random state the call started from, and
  run on the same inputs. Its output is compared with the student's output, and with the
  output of the reference's class rebuilt the same way. Only the outermost module calls
  are seen, through global forward hooks that `configure` installs (grader runs only); a
  student module the test calls directly is one, so is a sandbox's mirror of one.
- functions that hook a module (`attach_attention_hook(module, storage)`): the variant's
  function is given an unhooked copy of the module and fresh lists, and the copy is run on
  the module's last inputs; what lands in the lists is compared with `got` and `expected`.

When the student's code raised, the same replays (on the student's last call, or on the
student module's last forward call) must raise the same error instead.
Grader runs only: the variants are built from the reference, which students never see. On a
student's laptop, `diagnose` and `diagnose_exception` look the result up in the fingerprints of
the variants' results on the public tests instead (fingerprints.py).
"""
from __future__ import annotations

import collections
import collections.abc
import contextlib
import copy
import dataclasses
import json
import math
import pathlib
import shutil

import numpy as np
import torch
from torch.nn.modules.module import register_module_forward_hook, register_module_forward_pre_hook

from ..kit import adapter, fingerprints

_variants: list[tuple[str, set[str], adapter.Submission]] = []  # (diagnosis, problems, variant)
_reference: list[adapter.Submission] = []                        # the reference, imported for replays
_grader_folders: set[pathlib.Path] = set()                        # the reference's and the variants' folders
_unexplained: collections.Counter = collections.Counter()          # name -> replays that named nothing
_explained: dict[str, str] = {}                                    # name -> the mistake a replay last named
GIVE_UP_AFTER = 3  # replays of a name that named nothing (and none that did) before its later failures are not replayed


class _Variant(adapter.Submission):
    """A known wrong variant: the reference's files with its edits, written to its folder only
    when a replay first imports from it (a grading run that diagnoses nothing writes none)."""

    def __init__(self, folder: pathlib.Path, reference: pathlib.Path, entry: dict):
        super().__init__(folder, record_calls=None)
        self._source, self._entry, self._built = reference, entry, False

    def _build(self) -> None:
        if self._built:
            return
        self.directory.mkdir(parents=True)
        for source in self._source.glob("*.py"):
            shutil.copy(source, self.directory / source.name)
        for name, source in self._entry.get("files", {}).items():
            shutil.copy(source, self.directory / name)
        for edit in self._entry["edits"]:
            path = self.directory / edit["file"]
            text = path.read_text(encoding="utf-8")
            path.write_text(text.replace(edit["find"], edit["replace"], 1), encoding="utf-8")
        self._built = True

    def module(self, name: str):
        self._build()
        return super().module(name)


def configure(mutants_file: str | pathlib.Path, reference: str | pathlib.Path, workdir: pathlib.Path) -> None:
    """Know every variant of `mutants_file` (JSON: [{name, diagnosis, problems, edits}], each
    entry optionally with `files`: {submitted file: absolute path of its replacement}), each to be
    built under `workdir` when first replayed, and start watching module calls."""
    _variants.clear()
    _unexplained.clear(), _explained.clear()
    reference = pathlib.Path(reference).resolve()
    _reference[:] = [adapter.Submission(reference, record_calls=None)]
    _grader_folders.clear()
    _grader_folders.add(reference)
    for entry in json.loads(pathlib.Path(mutants_file).read_text(encoding="utf-8")):
        variant = _Variant(pathlib.Path(workdir).resolve() / entry["name"], reference, entry)
        _variants.append((entry["diagnosis"], set(entry["problems"]), variant))
        _grader_folders.add(variant.directory)
    _recorder.install()


# ---- comparisons ----

def _close(a, b) -> bool:
    if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)) or a.shape != b.shape:
        return False
    if a.device.type == "meta" or b.device.type == "meta":
        return False
    if a.dtype in (torch.bool, torch.int64, torch.int32) or b.dtype in (torch.bool, torch.int64, torch.int32):
        return a.dtype == b.dtype and bool((a.cpu() == b.cpu()).all())
    a64, b64 = a.detach().cpu().double(), b.detach().cpu().double()
    return bool(torch.allclose(a64, b64, rtol=1e-3, atol=1e-4, equal_nan=True))


def _explains_number(candidate: torch.Tensor, got, expected) -> bool:
    """For one number (a learning rate, a loss), `_close`'s tolerance can exceed the student's error
    itself: a variant's value then 'matches' a student whose mistake is another one. A variant
    explains a wrong number only when it reproduces it to a tenth of the error (or to float32
    noise, 1e-6 relative); tensors of several values keep `_close` alone."""
    if not (isinstance(got, torch.Tensor) and isinstance(expected, torch.Tensor) and got.numel() == 1
            and expected.numel() == 1 and candidate.numel() == 1 and got.is_floating_point()):
        return True
    g, e, c = (float(t.detach().cpu().double().reshape(())) for t in (got, expected, candidate))
    return abs(c - g) <= max(0.1 * abs(g - e), 1e-6 * abs(g))


def _tensors(value) -> list[torch.Tensor]:
    """The tensors (and numeric NumPy arrays, as tensors) of an output or a tuple of outputs."""
    if isinstance(value, np.ndarray) and value.dtype.kind in "fiub":
        return [torch.from_numpy(np.array(value))]
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (float, int)) and not isinstance(value, bool):  # a number, as assert_scalar_close sees it
        return [torch.tensor(float(value), dtype=torch.float64)]
    if isinstance(value, (tuple, list)):
        return [t for v in value if isinstance(v, (torch.Tensor, np.ndarray)) for t in _tensors(v)]
    return []


def _result_values(result) -> list[torch.Tensor]:
    """What a replayed function's result offers to match a wrong value: its tensors, and the numbers
    of a tuple of numbers (a (loss, perplexity) pair, say), as 0-dim float64 tensors."""
    if isinstance(result, (tuple, list)) and result and all(
            isinstance(v, (float, int)) and not isinstance(v, bool) for v in result):
        return [torch.tensor(float(v), dtype=torch.float64) for v in result]
    return _tensors(result)


def _same(a, b) -> bool:
    """Every tensor of output `a` is close to the matching one of output `b` (and there is one)."""
    ta, tb = _tensors(a), _tensors(b)
    return bool(ta) and len(ta) == len(tb) and all(_close(x, y) for x, y in zip(ta, tb))


_PLAIN_LEAVES = (str, bytes, bool, int, float, type(None))


def _plain(value) -> bool:
    """Is `value` plain data: numbers, strings and None in dicts, lists and tuples (no tensors)?"""
    if isinstance(value, _PLAIN_LEAVES):
        return True
    if isinstance(value, dict):
        return all(_plain(k) and _plain(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return all(_plain(v) for v in value)
    return False


def _same_plain(a, b) -> bool:
    """Plain values `a` and `b` are equal: the same keys, items and order; floats within 1e-9
    relative (the same computation in another order); a dict subclass, or a mapping such as
    transformers' BatchEncoding (what a variant returns in-process), equals a dict."""
    a, b = (dict(x) if isinstance(x, collections.abc.Mapping) and not isinstance(x, dict) else x for x in (a, b))
    if isinstance(a, float) or isinstance(b, float):
        return (isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool)
                and not isinstance(b, bool) and math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same_plain(v, b[k]) for k, v in a.items())
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(_same_plain(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def _same_error(run, type_name: str, message: str) -> bool:
    """Does `run()` raise an exception of this type name and message?"""
    try:
        run()
    except Exception as raised:  # noqa: BLE001 - the error is what is compared
        return type(raised).__name__ == type_name and str(raised) == message
    return False


def _candidates(name: str):
    """Variants whose bug is in the problem `name` names (a function or class of the contract)."""
    return [(sentence, variant) for sentence, problems, variant in _variants if name in problems]


def _named(name: str, matches) -> str | None:
    """The one mistake of the variants of problem `name` for which `matches(variant)` holds;
    None when none does, or when variants with different mistakes do (this input cannot tell
    them apart). `matches` raising counts as no match.

    A known mistake reproduces on any input, so:
    - once a replay of `name` named a mistake in this run, a later failure of `name` that the
      same mistake's variant reproduces is named after it, without replaying the others (an
      input that no other variant reproduced has told them apart already);
    - once GIVE_UP_AFTER replays of `name` named nothing and none named a mistake, the student's
      is not one we know: `name`'s later failures are not replayed (each replay runs every
      variant of the problem; a submission wrong everywhere would pay it at every failed check)."""
    candidates = _candidates(name)
    if not candidates or _given_up(name):
        return None
    known = _explained.get(name)
    if known is not None and any(_matches(matches, variant) for sentence, variant in candidates if sentence == known):
        return known
    found = {sentence for sentence, variant in candidates if sentence != known and _matches(matches, variant)}
    if len(found) == 1:
        _explained[name] = next(iter(found))
        return _explained[name]
    if not found:  # (two mistakes that this input cannot tell apart: another input may)
        _unexplained[name] += 1
    return None


def _matches(matches, variant) -> bool:
    try:
        return bool(matches(variant))
    except Exception:  # noqa: BLE001 - a variant that fails on this input explains nothing
        return False


def _given_up(name: str) -> bool:
    """Have replays of `name` named nothing GIVE_UP_AFTER times in this run, and never a mistake?"""
    return name not in _explained and _unexplained[name] >= GIVE_UP_AFTER


# ---- module calls, as global forward hooks see them ----

@dataclasses.dataclass
class ModuleCall:
    """One outermost forward call: the module, copies of its positional inputs, its mode and
    the random state it started from; then its keyword inputs and output, or that it raised."""
    module: torch.nn.Module
    args: tuple
    training: bool
    rng: torch.Tensor
    kwargs: dict = dataclasses.field(default_factory=dict)
    output: object = None
    raised: bool = False

    @property
    def on_meta(self) -> bool:
        return any(t.device.type == "meta" for t in _tensors(self.args))


def _snapshot(args: tuple) -> tuple:
    """The inputs as they were before the call (student code may change them in place)."""
    return tuple(a.detach().clone() if isinstance(a, torch.Tensor) and a.device.type != "meta" else a for a in args)


def _detached(output):
    if isinstance(output, torch.Tensor):
        return output.detach()
    if isinstance(output, tuple):
        return tuple(o.detach() if isinstance(o, torch.Tensor) else o for o in output)
    return output


class ModuleCallRecorder:
    """Keeps the outermost module calls made since the test's last call into student code.

    Calls are grouped by `adapter.last_call()` (the object, not its text), so what a test did
    before its last call into student code, and what earlier tests did, is never replayed.
    The hooks never raise and never change a module's inputs or outputs.
    """

    LIMIT = 8  # calls kept per group, the newest

    def __init__(self):
        self.depth = 0
        self.pending: ModuleCall | None = None
        self.group = None   # adapter.last_call() when the calls below were made
        self.calls: dict[int, ModuleCall] = {}  # by id(module), oldest first
        self.paused = False
        self.handles: list = []

    def install(self) -> None:
        if not self.handles:
            self.handles = [register_module_forward_pre_hook(self.before),
                            register_module_forward_hook(self.after, with_kwargs=True, always_call=True)]

    def uninstall(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles = []

    def before(self, module, args):
        try:
            if self.paused:
                return None
            group = adapter.last_call()
            if self.depth and group is not self.group:  # a call left by a BaseException (a timeout, say)
                self.depth, self.pending = 0, None
            self.depth += 1
            if self.depth == 1:
                if group is not self.group:
                    self.calls.clear()
                    self.group = group
                self.pending = ModuleCall(module, _snapshot(args), module.training, torch.random.get_rng_state())
        except Exception:  # noqa: BLE001 - watching must never break a test
            pass
        return None

    def after(self, module, args, *rest):
        """(module, args, kwargs, output) after a forward; (module, args, None) after one that raised."""
        try:
            if self.paused or not self.depth:
                return None
            self.depth -= 1
            call, self.pending = (self.pending, None) if self.depth == 0 else (None, self.pending)
            if call is None or call.module is not module:
                return None
            if len(rest) == 2:
                call.kwargs, call.output = dict(rest[0]), _detached(rest[1])
            else:
                call.raised = True
            self.calls.pop(id(module), None)
            self.calls[id(module)] = call
            while len(self.calls) > self.LIMIT:
                self.calls.pop(next(iter(self.calls)))
        except Exception:  # noqa: BLE001 - watching must never break a test
            pass
        return None

    def recent(self) -> list[ModuleCall]:
        """The outermost calls made since the last call into student code, oldest first."""
        group = adapter.last_call()
        if group is None or group is not self.group:
            return []
        return list(self.calls.values())

    @contextlib.contextmanager
    def replaying(self):
        """Build and run a replay unwatched, without autograd, and leave the random state as it was
        (building a module draws its initial weights)."""
        saved, paused = torch.random.get_rng_state(), self.paused
        self.paused = True
        try:
            with torch.no_grad():
                yield
        finally:
            torch.random.set_rng_state(saved)
            self.paused = paused


_recorder = ModuleCallRecorder()


def _graders(cls: type) -> bool:
    """Is `cls` defined in the reference or a variant, judged by the file of its methods?"""
    for value in vars(cls).values():
        code = getattr(value, "__code__", None)
        if code is not None:
            return pathlib.Path(code.co_filename).resolve().parent in _grader_folders
    return False


def _student_module_call() -> tuple[ModuleCall, tuple] | None:
    """(the test's last forward call to a student module, how the student built it), when the
    last call into student code built that module's class and a variant concerns it."""
    built = adapter.last_student_call()
    if built is None:
        return None
    for call in reversed(_recorder.recent()):
        cls = type(call.module)
        if cls.__name__ == built[1] and not _graders(cls) and _candidates(cls.__name__):
            return call, built
    return None


def _load_parameters(module: torch.nn.Module, source: torch.nn.Module) -> None:
    """Give `module` the parameters of `source`, by name (as graders load weights)."""
    theirs = dict(source.named_parameters())
    mine = dict(module.named_parameters())
    if theirs.keys() != mine.keys() or any(p.shape != theirs[n].shape for n, p in mine.items()):
        raise ValueError("the parameters differ")
    if theirs:
        first = next(iter(theirs.values()))
        module.to(device=first.device, dtype=first.dtype if first.is_floating_point() else None)
    with torch.no_grad():
        for name, p in mine.items():
            p.copy_(theirs[name])


def _replay_module(submission: adapter.Submission, built: tuple, call: ModuleCall):
    """`call` replayed on `submission`'s class, built as the student's was, with its parameters."""
    file, name, args, kwargs = built
    with _recorder.replaying():
        module = getattr(submission.module(file), name)(*args, **kwargs)
        _load_parameters(module, call.module)
        module.train(call.training)
        torch.random.set_rng_state(call.rng)
        return module(*call.args, **call.kwargs)


def _diagnose_module() -> str | None:
    found = _student_module_call()
    if found is None or found[0].raised or found[0].on_meta:
        return None
    call, built = found
    if _given_up(built[1]):
        return None
    try:
        expected = _replay_module(_reference[0], built, call)
    except Exception:  # noqa: BLE001 - without the reference's output nothing can be said
        return None

    def matches(variant) -> bool:
        result = _replay_module(variant, built, call)
        return _same(result, call.output) and not _same(result, expected)

    return _named(built[1], matches)


def _unhooked_copy(module: torch.nn.Module) -> torch.nn.Module:
    """A copy of `module` without the hooks anyone registered on it or its children."""
    clone = copy.deepcopy(module)
    for m in clone.modules():
        for name in ("_forward_hooks", "_forward_pre_hooks", "_forward_hooks_with_kwargs",
                     "_forward_hooks_always_called", "_forward_pre_hooks_with_kwargs",
                     "_backward_hooks", "_backward_pre_hooks"):
            hooks = getattr(m, name, None)
            if hooks is not None:
                hooks.clear()
    return clone


def _replay_hook(variant: adapter.Submission, student: tuple, call: ModuleCall) -> list[torch.Tensor]:
    """What the variant's version of the student's last function stores in fresh lists when
    given a copy of `call`'s module and that copy is run on `call`'s inputs."""
    file, name, args, kwargs = student
    module = _unhooked_copy(call.module)
    given = [[] if isinstance(a, list) else module if a is call.module else a for a in args]
    with _recorder.replaying():
        getattr(variant.module(file), name)(*given, **kwargs)
        module.train(call.training)
        torch.random.set_rng_state(call.rng)
        module(*call.args, **call.kwargs)
    return [t for a in given if isinstance(a, list) for t in a if isinstance(t, torch.Tensor)]


def _diagnose_hook(got, expected) -> str | None:
    student = adapter.last_student_call()
    if student is None or not any(isinstance(a, list) for a in student[2]):
        return None
    hooked = [a for a in student[2] if isinstance(a, torch.nn.Module)]
    calls = [c for c in _recorder.recent() if any(c.module is m for m in hooked) and not c.on_meta]
    if not calls:
        return None

    def matches(variant) -> bool:
        return any(_close(t, got) and not _close(t, expected) for t in _replay_hook(variant, student, calls[-1]))

    return _named(student[1], matches)


# ---- entry points (checks.fail and the plugin) ----

def _diagnose_function(call: tuple, got, expected) -> str | None:
    plain = _plain(got) and _plain(expected)
    if not (isinstance(got, torch.Tensor) or plain):
        return None
    module, name, args, kwargs = call
    inputs = [(args, kwargs)]
    student = adapter.last_student_call()
    if student is not None and student[:2] == (module, name) and not _same_objects(student[2:], (args, kwargs)):
        inputs.append(student[2:])  # the student's own arguments (a default the test left out, say)
    rng = adapter.last_student_rng()

    def reproduces(variant, given) -> bool:
        given = copy.deepcopy(given) if plain else given  # a variant may change its arguments
        with _recorder.replaying():
            if rng is not None:  # a variant that samples draws what the student's code drew
                torch.random.set_rng_state(rng)
            for generator, state in adapter.last_reference_generators():  # and from a generator it was given
                generator.set_state(state)
            result = getattr(variant.module(module), name)(*given[0], **given[1])
        if plain:
            return _same_plain(result, got) and not _same_plain(result, expected)
        return any(_close(candidate, got) and not _close(candidate, expected)
                   and _explains_number(candidate, got, expected) for candidate in _result_values(result))

    if len(inputs) > 1 and _quietly(reproduces, _reference[0], inputs[1]):
        inputs.pop()  # on its own arguments the student's result is right: the test compares something else
    return _named(name, lambda variant: any(_quietly(reproduces, variant, given) for given in inputs))


def _same_objects(a: tuple, b: tuple) -> bool:
    """Are calls `a` and `b`, each (args, kwargs), given the very same objects?"""
    (args_a, kwargs_a), (args_b, kwargs_b) = a, b
    return (len(args_a) == len(args_b) and all(x is y for x, y in zip(args_a, args_b))
            and kwargs_a.keys() == kwargs_b.keys() and all(kwargs_a[k] is kwargs_b[k] for k in kwargs_a))


def _quietly(run, *args) -> bool:
    """run(*args), False if it raises (a variant may fail on one input and explain another)."""
    try:
        return run(*args)
    except Exception:  # noqa: BLE001 - a variant that fails on this input explains nothing
        return False


def configured() -> bool:
    """Has `configure` loaded known wrong variants (a grading run)?"""
    return bool(_variants)


def diagnose(got, expected) -> str | None:
    """The mistake whose variant reproduces the student's result, if exactly known (without
    variants, on a student's laptop: the one whose fingerprint it has, see fingerprints.py)."""
    if not _variants:
        return fingerprints.diagnose(got, expected)
    call = adapter.last_reference_call()
    # after building the reference's module and the student's, a test may call them directly: the
    # last calls then name a class, and it is the module's forward call that explains the result
    named = _diagnose_function(call, got, expected) if call is not None else None
    return named or _diagnose_module() or _diagnose_hook(got, expected)


def diagnose_exception(exc: BaseException) -> str | None:
    """The mistake whose variant raises the same error on the student's last call (or on the
    student module's last forward call), if any."""
    type_name = getattr(exc, "type_name", type(exc).__name__)  # a RemoteError names the worker's exception
    if type_name == "NotImplementedError":
        return None
    message = str(exc)
    if not _variants:
        return fingerprints.diagnose_exception(type_name, message)
    call = adapter.last_student_call()
    if call is not None:
        module, name, args, kwargs = call

        def run(variant):
            with _recorder.replaying():
                getattr(variant.module(module), name)(*args, **kwargs)

        sentence = _named(name, lambda variant: _same_error(lambda: run(variant), type_name, message))
        if sentence:
            return sentence
    found = _student_module_call()
    if found is not None and found[0].raised and not found[0].on_meta:
        call, built = found
        return _named(built[1], lambda variant: _same_error(lambda: _replay_module(variant, built, call),
                                                           type_name, message))
    return None
