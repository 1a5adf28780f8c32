"""The one way tests reach student code: `Submission`, behind the `student` fixture.

`student.attention.self_attention(...)` imports `attention.py` from the submission folder
on first use (so an import error costs only the tests that need that file), checks the
name exists, and records each call so that failure messages can say what was called
with which shapes. Test modules never import a submission themselves.
"""
from __future__ import annotations

import ast
import contextlib
import functools
import importlib
import pathlib
import sys
import threading
import traceback
import weakref

from . import messages


class GradingFailure(AssertionError):
    """A check failed; `summary` is for every student, `details` only for public tests,
    `diagnosis` names the likely mistake (shown as the manifest says)."""

    def __init__(self, summary: str, details: str = "", diagnosis: str = ""):
        super().__init__(summary + (f"\n{details}" if details else ""))
        self.summary, self.details, self.diagnosis = summary, details, diagnosis


class SubmissionError(Exception):
    """A problem with the submission itself, with a message meant for the student."""


class MissingFileError(SubmissionError):
    pass


class ContractError(SubmissionError, AttributeError):
    """A name or attribute the contract asks for is missing or wrong."""


class StudentImportError(SubmissionError):
    """A submitted file could not be imported; `timed_out` when its import ran out of time."""

    def __init__(self, message: str, timed_out: bool = False):
        super().__init__(message)
        self.timed_out = timed_out


def timeout_seconds(exc: BaseException) -> float | None:
    """The limit, if `exc` is pytest-timeout's failure, "Timeout (>10.0s) from pytest-timeout." (else None)."""
    import re

    if type(exc).__name__ != "Failed":
        return None
    text = str(getattr(exc, "msg", "") or exc)
    if not text.startswith("Timeout"):
        return None
    found = re.match(r"Timeout \(?>\s*([0-9.]+)\s*s", text)
    return float(found.group(1)) if found else 0.0


def sibling_imports(path: pathlib.Path, siblings: set[str]) -> list[str]:
    """The sibling modules `path` imports at its top level (`import attention`, `from attention import x`).

    Read from its syntax tree, never run; a file that does not parse imports nothing here."""
    try:
        text = pathlib.Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    stem = pathlib.Path(path).stem
    return [name for name in _imported_names(text) if name in siblings and name != stem]


@functools.lru_cache(maxsize=64)
def _imported_names(text: str) -> tuple[str, ...]:
    """The top-level module names that the source `text` imports, in order, each once (parsed once
    per text: every test of a grading run asks about the same files)."""
    import ast

    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return ()
    found: dict[str, None] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(dict.fromkeys(alias.name.split(".")[0] for alias in node.names))
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            found[node.module.split(".")[0]] = None
    return tuple(found)


def public_names(module) -> dict:
    """The functions and classes `module` defines itself (what a stand-in for it offers)."""
    import inspect

    return {name: value for name, value in vars(module).items()
            if not name.startswith("_") and (inspect.isfunction(value) or inspect.isclass(value))
            and getattr(value, "__module__", None) == module.__name__}


def stand_in_module(name: str, names: dict):
    """A module `name` holding only `names`, put where the student's own file could not be imported."""
    import types

    module = types.ModuleType(name, f"Stand-in for {name}.py, which could not be imported (grading only).")
    module.__dict__.update(names)
    return module


# The last call into student code in this test, as text (reset by the plugin before each test).
_state = threading.local()


def last_call() -> str | None:
    return getattr(_state, "last_call", None)


def last_call_shown() -> str | None:
    """The last call into student code as a failure message shows it: a module's forward when the
    test called a module it built after building it (`Block.forward(float32[2, 3, 8])`), else
    `last_call()`. (`last_call()` itself stays the call that built the module: diagnosis.py groups
    the module calls it replays by it.)"""
    call = last_call()
    forward = getattr(_state, "last_forward", None)
    return forward[1] if forward is not None and forward[0] is call else call


def reset_last_call() -> None:
    _state.last_call = None
    _state.last_forward = None
    _state.last_name = None
    _state.reference_call = None
    _state.reference_generators = []
    _state.student_call = None
    _state.student_rng = None


def last_student_call() -> tuple | None:
    """(module, name, args, kwargs) of the last recorded call into student code."""
    return getattr(_state, "student_call", None)


def last_student_rng():
    """The CPU random state when the last recorded call into student code began (a sampling
    mistake is replayed from it), or None."""
    return getattr(_state, "student_rng", None)


def last_reference_call() -> tuple | None:
    """(module, name, args, kwargs) of the last call into the reference, if it was to the
    same function as the last call into student code (what diagnosis replays on variants)."""
    call = getattr(_state, "reference_call", None)
    if call is None or call[1] != getattr(_state, "last_name", None):
        return None
    return call


def last_reference_generators() -> list:
    """(generator, its state when the last reference call began) for each torch.Generator that
    call was given: a replay restores them, so a variant draws what the reference drew."""
    return getattr(_state, "reference_generators", [])


def _generator_states(args: tuple, kwargs: dict) -> list:
    import torch

    return [(g, g.get_state()) for g in (*args, *kwargs.values()) if isinstance(g, torch.Generator)]


def describe(value) -> str:
    """A short description of a value for messages: shapes and dtypes, never contents of big tensors."""
    import torch

    if isinstance(value, torch.Tensor):
        dtype = str(value.dtype).removeprefix("torch.")
        where = "" if value.device.type == "cpu" else f" on {value.device}"
        return f"{dtype}{list(value.shape)}{where}"
    if isinstance(value, torch.nn.Module):
        return type(value).__name__
    if isinstance(value, torch.dtype):
        return str(value).removeprefix("torch.")
    kind = type(value).__module__.split(".")[0]
    if kind == "numpy" and hasattr(value, "shape") and value.shape:
        return f"ndarray {value.dtype}{list(value.shape)}"
    if kind == "pandas" and hasattr(value, "shape"):
        columns = list(getattr(value, "columns", []))[:6]
        return f"{type(value).__name__} {list(value.shape)}" + (f" columns {columns}" if columns else "")
    if isinstance(value, dict) and len(value) <= 6:
        return "{" + ", ".join(f"{describe(k)}: {describe(v)}" for k, v in value.items()) + "}"
    if isinstance(value, dict):
        return f"dict of {len(value)} items"
    if isinstance(value, (list, tuple)):  # a long one: its first items and its length (a dataset of dicts stays short)
        shown = value if len(value) <= 6 else value[:2]
        inner = ", ".join(describe(v) for v in shown) + (f", ... {len(value)} items" if len(value) > 6 else "")
        if isinstance(value, list):
            return f"[{inner}]"
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    if isinstance(value, (bool, int, float, str)) or value is None:
        return repr(value) if not isinstance(value, str) or len(value) < 40 else repr(value[:37] + "...")
    described = getattr(type(value), "__describe__", None)  # a stand-in for an object elsewhere (the sandbox's)
    if callable(described):
        return str(described(value))[:200]
    return type(value).__name__


def describe_param(value) -> str:
    """A test parameter for a test's name: plain values as written (text unescaped, cut at 40
    characters), other values described (`float32[2, 3, 4]`)."""
    if isinstance(value, str):
        return value if len(value) <= 40 else value[:37] + "..."
    if isinstance(value, (bool, int, float)) or value is None:
        return repr(value)
    if isinstance(value, (list, tuple)) and len(value) <= 8 and all(
            isinstance(v, (bool, int, float, str, tuple)) or v is None or type(v).__name__ == "dtype" for v in value):
        return "(" + ", ".join(describe_param(v) for v in value) + ("," if len(value) == 1 else "") + ")"
    if isinstance(value, dict) and len(value) <= 4 and all(
            isinstance(v, (bool, int, float, str)) or v is None for v in value.values()):
        return "{" + ", ".join(f"{k}={describe_param(v)}" for k, v in value.items()) + "}"
    if type(value).__name__ == "dtype":  # torch.float32 -> float32
        return str(value).removeprefix("torch.")
    if callable(value) and hasattr(value, "__name__"):
        return value.__name__
    return describe(value)


def describe_call(name: str, args: tuple, kwargs: dict) -> str:
    parts = [describe(a) for a in args] + [f"{k}={describe(v)}" for k, v in kwargs.items()]
    return f"{name}({', '.join(parts)})"


def record_call(name: str, args: tuple = (), kwargs: dict | None = None) -> None:
    _state.last_call = describe_call(name, args, kwargs or {})
    _state.last_name = name


def record_loop_call(name: str, args: tuple, sentence: str) -> None:
    """Record a call of the grader's own loop `name` (run where student code runs) as the last one,
    described by `sentence` (with `{call}` for the call itself), as a failure's messages show it."""
    record_call(name, args)
    _state.last_call = sentence.format(call=_state.last_call)


# Functions called as `listener(obj, name, args, kwargs)` on every recorded call into student code
# (`obj` is the function, class or module called). Empty when grading; the harness's own tests
# (tests/test_public_audit.py) add one to see which inputs each public test really gives.
call_listeners: list = []


def _notify(obj, name: str, args: tuple, kwargs: dict) -> None:
    for listener in call_listeners:
        try:
            listener(obj, name, args, kwargs)
        except Exception:  # noqa: BLE001 - an observer must never change a test's outcome
            pass


def call(fn, *args, name: str | None = None, **kwargs):
    """Call `fn` (e.g. a student module instance) and record the call for failure messages."""
    if name is None:
        name = f"{type(fn).__name__}.forward" if hasattr(fn, "forward") else getattr(fn, "__name__", "function")
    record_call(name, args, kwargs)
    _notify(fn, name, args, kwargs)
    return fn(*args, **kwargs)


# Modules the tests built from student classes: their forward calls are named in failure messages.
_built_modules: "weakref.WeakSet" = weakref.WeakSet()
_forward_hook = []


def _watch_forward(obj) -> None:
    """Name `obj`'s forward calls in failure messages if it is a module (one global hook, which
    changes nothing: no hook is added to the student's module)."""
    import torch

    if not isinstance(obj, torch.nn.Module):
        return
    try:
        _built_modules.add(obj)
    except TypeError:
        return
    if not _forward_hook:
        _forward_hook.append(torch.nn.modules.module.register_module_forward_pre_hook(_note_forward))


def _note_forward(module, args):
    try:
        if module in _built_modules and last_call() is not None:
            _state.last_forward = (last_call(), describe_call(f"{type(module).__name__}.forward", args, {}))
            _notify(module, f"{type(module).__name__}.forward", args, {})
    except Exception:  # noqa: BLE001 - a message must never break a test
        pass
    return None


@contextlib.contextmanager
def torch_defaults_kept():
    """Put torch's process-wide defaults back as they were after the block: student code that
    calls torch.set_default_dtype or torch.set_default_device (at import, or in a function) must
    not change how the tests' and other problems' code runs after it (a float64 default dtype set
    by attention.py made every module of model.py float64: a cascade into problems it is not in).
    Nothing to do while torch is not imported; if the block imports it, the defaults are torch's own."""
    torch = sys.modules.get("torch")
    before = (torch.get_default_dtype(), torch.get_default_device()) if torch is not None else None
    try:
        yield
    finally:
        torch = sys.modules.get("torch")
        if torch is not None:
            dtype, device = before if before is not None else (torch.float32, torch.device("cpu"))
            if torch.get_default_dtype() != dtype:
                torch.set_default_dtype(dtype)
            if torch.get_default_device() != device:
                torch.set_default_device(None if device == torch.device("cpu") else device)


def _rng_state():
    """torch's CPU random state, if torch is imported (it is whenever tests run)."""
    torch = sys.modules.get("torch")
    return torch.random.get_rng_state() if torch is not None else None


def _as_given(value):
    """The tensors and arrays in a call's arguments copied as they are before the call: student code
    may change its inputs in place, and diagnosis must replay the call on what it was given."""
    torch, np = sys.modules.get("torch"), sys.modules.get("numpy")
    if torch is not None and isinstance(value, torch.Tensor):
        return value.detach().clone()
    if np is not None and isinstance(value, np.ndarray):
        return value.copy()
    if type(value) in (list, tuple):
        return type(value)(_as_given(v) for v in value)
    if type(value) is dict:
        return {k: _as_given(v) for k, v in value.items()}
    return value


# The handout's own functions and classes in the submitted files ({(module, name)}: "Given" helpers,
# a file given whole), set by the plugin (--given, or the student zip's problems.json): a call of
# one is not a call into the student's code, for failure messages and for diagnosis alike.
_given: set[tuple[str, str]] = set()


def set_given(given: dict[str, list[str]]) -> None:
    """Set the given names, {module: [name, ...]} (see starter.given_names)."""
    _given.clear()
    _given.update((module, name) for module, names in given.items() for name in names)


class StudentCallable:
    """A student function or class: calling it records the call; `.raw` is the object itself."""

    def __init__(self, name: str, obj, record: bool, module: str = ""):
        self.name, self.raw, self._record, self._module = name, obj, record, module

    def __call__(self, *args, **kwargs):
        if (self._module, self.name) in _given:  # the handout's helper: the last call stays the student's
            if self._record:
                _notify(self.raw, self.name, args, kwargs)
            return self.raw(*args, **kwargs)
        if self._record:
            record_call(self.name, args, kwargs)
            _state.student_call = (self._module, self.name, _as_given(args), _as_given(kwargs))
            _state.student_rng = _rng_state()
            _notify(self.raw, self.name, args, kwargs)
        elif self._record is False:  # the reference: remember the call, to replay it on wrong variants
            _state.reference_call = (self._module, self.name, args, kwargs)
            _state.reference_generators = _generator_states(args, kwargs)
        result = self.raw(*args, **kwargs)
        if self._record:
            _watch_forward(result)
        return result

    def __repr__(self) -> str:
        return f"<submitted {self.name}>"

    def __describe__(self) -> str:
        """How failure messages name it when a test passes it on (describe): by its name."""
        return self.name


class ModuleView:
    """A submitted module: attribute access checks the contract's names exist."""

    def __init__(self, module, filename: str, record: bool):
        self._module, self._filename, self._record = module, filename, record
        self._name = filename.removesuffix(".py")

    def __getattr__(self, name: str):
        try:
            obj = getattr(self._module, name)
        except AttributeError:
            raise ContractError(messages.MISSING_NAME.format(file=self._filename, name=name)) from None
        if callable(obj):
            return StudentCallable(name, obj, self._record, self._name)
        return obj


def format_student_traceback(exc: BaseException, directory: pathlib.Path) -> str:
    """The traceback of `exc`, keeping only frames in `directory` (the student's own files).

    As in Python's own tracebacks, a line repeated more than 3 times in a row (endless recursion)
    is shown 3 times, then counted; a SyntaxError names its file without the grader's folder."""
    directory = pathlib.Path(directory).resolve()
    lines, previous, repeats = [], None, 0
    for frame in traceback.extract_tb(exc.__traceback__):
        if not _in_dir(frame.filename, directory):
            continue
        key = (frame.filename, frame.lineno, frame.name)
        if key == previous:
            repeats += 1
            if repeats >= RECURSION_SHOWN:
                continue
        else:
            lines.extend(_repeated(repeats))
            previous, repeats = key, 0
        lines.append(f'  File "{pathlib.Path(frame.filename).name}", line {frame.lineno}, in {frame.name}')
        if frame.line:
            lines.append(f"    {frame.line.strip()}")
    lines.extend(_repeated(repeats))
    summary = "".join(traceback.format_exception_only(type(exc), exc)).strip("\n")
    if isinstance(exc, SyntaxError) and exc.filename:  # its summary shows the file, the line and a caret
        summary = summary.replace(f'"{exc.filename}"', f'"{pathlib.Path(exc.filename).name}"', 1)
        lines.append("")
    else:
        summary = summary.strip()
    head = "Traceback (your files only):\n" if lines else ""
    return head + "\n".join(lines) + ("\n" if lines and lines[-1] else "") + summary


IPYTHON_NAMES = {"display", "get_ipython"}  # builtins of a notebook's kernel that a plain import lacks
RECURSION_SHOWN = 3  # times a repeated traceback line is shown (Python's traceback._RECURSIVE_CUTOFF)


def _repeated(repeats: int) -> list[str]:
    """The line that says how many more times the last frame repeated, if it was cut."""
    more = repeats - (RECURSION_SHOWN - 1)
    return [messages.FRAME_REPEATED.format(count=more, s="s" if more > 1 else "")] if more > 0 else []


class Submission:
    """Modules of one submission folder, imported lazily under isolation from other folders.

    The submission's modules are imported with its folder first on sys.path, then removed
    from sys.modules again, so a reference and a student folder with the same module names
    can live in one process. `import attention` inside `model.py` gets this folder's file.
    """

    def __init__(self, directory: str | pathlib.Path, record_calls: bool | None = True, stand_ins=None):
        """record_calls: True for the student (calls described in messages), False for the
        reference (its last call kept for diagnosis), None for neither. stand_ins (grading
        only): `stand_ins(name)` gives the names a module that cannot be imported is replaced
        by in the other files' imports (the reference's), or None."""
        self.directory = pathlib.Path(directory).resolve()
        self._record = record_calls
        self._loaded: dict[str, object] = {}
        self._failed: dict[str, str] = {}
        self._stand_in_source = stand_ins
        self.stand_ins: dict[str, object] = {}   # module name: the module other files import in its place

    def __repr__(self) -> str:
        return f"Submission({str(self.directory)!r})"

    def _siblings(self) -> set[str]:
        return {p.stem for p in self.directory.glob("*.py")}

    def kit_function(self, module: str, name: str):
        """`autograder.kit.<module>.<name>`, where this submission's code runs: here; in the sandbox's
        worker for a sandboxed submission (sandbox/client.RemoteSubmission), so that a loop over a
        student's model (kit/training.py's `fit_by_name`) costs one call, not a round trip a step."""
        return getattr(importlib.import_module(f".{module}", __package__), name)

    def module(self, name: str):
        """The imported module `name` (raises SubmissionError with a student-facing message)."""
        if name in self._loaded:
            return self._loaded[name]
        if name in self._failed:
            raise StudentImportError(self._failed[name])
        filename = f"{name}.py"
        if not (self.directory / filename).is_file():
            raise MissingFileError(messages.MISSING_FILE.format(file=filename))
        siblings = self._siblings()
        if self._stand_in_source is not None:
            self._prepare_siblings(name, siblings)
        saved = {n: sys.modules.pop(n) for n in siblings if n in sys.modules}
        sys.modules.update({n: m for n, m in self.stand_ins.items() if n not in self._loaded and n != name})
        sys.modules.update(self._loaded)
        sys.path.insert(0, str(self.directory))
        importlib.invalidate_caches()
        try:
            with torch_defaults_kept():
                module = importlib.import_module(name)
        except BaseException as exc:  # any failure at import is the student's to see
            if isinstance(exc, KeyboardInterrupt) and not _is_student_exception(exc, self.directory):
                raise
            seconds = timeout_seconds(exc)
            if seconds is not None:
                text = messages.IMPORT_TIMEOUT.format(file=filename, seconds=seconds)
            else:
                text = messages.IMPORT_FAILED.format(file=filename, error=format_student_traceback(exc, self.directory))
                if isinstance(exc, ModuleNotFoundError) and exc.name and exc.name.split(".")[0] not in siblings:
                    text += "\n" + messages.MISSING_PACKAGE.format(package=exc.name.split(".")[0],
                                                                   file=_importing_file(exc, self.directory, filename))
                elif isinstance(exc, NameError) and getattr(exc, "name", None) in IPYTHON_NAMES:
                    text += "\n" + messages.NOTEBOOK_ONLY_NAME.format(name=exc.name, file=filename)
                elif isinstance(exc, NameError) and (late := _bound_below(exc, self.directory)):
                    text += "\n" + messages.USED_BEFORE_BOUND.format(name=exc.name, **late)
                elif isinstance(exc, EOFError):
                    text += "\n" + messages.INPUT_AT_IMPORT.format(file=filename)
            if self._stand_in_source is not None:
                text += "\n" + messages.STAND_IN.format(file=filename)
            self._failed[name] = text
            raise StudentImportError(text, timed_out=seconds is not None) from None
        finally:
            sys.path.remove(str(self.directory))
            for n in siblings:
                loaded = sys.modules.pop(n, None)
                if loaded is not None and _defined_in(loaded, self.directory):
                    self._loaded.setdefault(n, loaded)
            sys.modules.update(saved)
        self._loaded[name] = module
        return module

    def _prepare_siblings(self, name: str, siblings: set[str]) -> None:
        """Import first the sibling files `name` imports; one that fails gets a stand-in (grading only),
        so its failure is charged to its own problems, not to every file that imports it."""
        preparing = self.__dict__.setdefault("_preparing", set())
        preparing.add(name)
        try:
            for sibling in sibling_imports(self.directory / f"{name}.py", siblings):
                if sibling in self._loaded or sibling in self.stand_ins or sibling in preparing:
                    continue  # (files that import each other are imported as Python would)
                try:
                    self.module(sibling)
                except StudentImportError:
                    self.use_stand_in(sibling, self._stand_in_source(sibling))
        finally:
            preparing.discard(name)

    def use_stand_in(self, name: str, names: dict | None) -> None:
        """Other files' `import name` gets a module of `names` (None: no stand-in)."""
        if names is not None:
            self.stand_ins[name] = stand_in_module(name, names)

    @contextlib.contextmanager
    def substituted(self, module_name: str, replacements: dict):
        """Within this block, `module_name`'s globals `replacements` replace the student's own.

        Used to grade a composite on its own: the student's causal_multi_head_attention
        calling the reference's causal_mask is not charged for a bug in their causal_mask.
        The other imported files' aliases of the replaced names (`from attention import
        causal_mask` in model.py) are replaced too, and only those: a name of theirs that is
        not the very object replaced stays as it is.
        """
        namespace = self.module(module_name).__dict__
        missing = object()
        saved = {name: namespace.get(name, missing) for name in replacements}
        aliases = [(vars(other), alias, name, value) for other_name, other in self._loaded.items()
                   if other_name != module_name for alias, value in list(vars(other).items())
                   for name, original in saved.items() if original is not missing and value is original]
        namespace.update(replacements)
        for other, alias, name, _ in aliases:
            other[alias] = replacements[name]
        try:
            yield
        finally:
            for other, alias, _, value in aliases:
                other[alias] = value
            for name, value in saved.items():
                if value is missing:
                    namespace.pop(name, None)
                else:
                    namespace[name] = value

    def __getattr__(self, name: str) -> ModuleView:
        if name.startswith("_"):
            raise AttributeError(name)
        return ModuleView(self.module(name), f"{name}.py", self._record)


def _importing_file(exc: BaseException, directory: pathlib.Path, default: str) -> str:
    """The student's file whose line raised `exc` (the last of their frames), else `default`."""
    directory = pathlib.Path(directory).resolve()
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if _in_dir(f.filename, directory)]
    return pathlib.Path(frames[-1].filename).name if frames else default


def _bound_below(exc: NameError, directory: pathlib.Path) -> dict | None:
    """Where the student's file that raised `exc` imports, defines or assigns the missing name at its top
    level, below the line that used it ({"file", "used", "bound"}); None if it never does."""
    directory = pathlib.Path(directory).resolve()
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if _in_dir(f.filename, directory)]
    if not frames or not getattr(exc, "name", None):
        return None
    try:
        tree = ast.parse(pathlib.Path(frames[-1].filename).read_bytes())
    except (OSError, SyntaxError, ValueError):
        return None
    for node in tree.body:
        if node.lineno <= frames[-1].lineno:
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names = {node.name}
        else:
            names = {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
        if exc.name in names:
            return {"file": pathlib.Path(frames[-1].filename).name, "used": frames[-1].lineno, "bound": node.lineno}
    return None


def _defined_in(module, directory: pathlib.Path) -> bool:
    path = getattr(module, "__file__", None)
    try:
        return path is not None and pathlib.Path(path).resolve().parent == directory
    except OSError:
        return False


def _is_student_exception(exc: BaseException, directory: pathlib.Path) -> bool:
    return any(_in_dir(f.filename, directory) for f in traceback.extract_tb(exc.__traceback__))


NOT_STUDENT_FILES = {"conftest.py", "run_tests.py"}


def _in_dir(filename: str, directory: pathlib.Path) -> bool:
    """Is `filename` one of the student's files: a module directly in the submission folder?"""
    try:
        path = pathlib.Path(filename).resolve()
    except OSError:
        return False
    return path.parent == pathlib.Path(directory).resolve() and path.name not in NOT_STUDENT_FILES
