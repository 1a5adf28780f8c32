"""PyTorch helpers for tests: weights by name, seeded inputs, device checks op by op."""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib
import sys
import types

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten, tree_unflatten

from .checks import fail


def randomize_(module: torch.nn.Module, seed: int, scale: float = 0.5) -> torch.nn.Module:
    """Fill every parameter with seeded normal noise (so LayerNorm weights, biases... all matter)."""
    generator = torch.Generator().manual_seed(seed)
    norm_gains = {id(m.weight) for m in module.modules() if isinstance(m, torch.nn.LayerNorm)}
    with torch.no_grad():
        for _, p in sorted(module.named_parameters()):
            noise = torch.randn(p.shape, generator=generator, dtype=torch.float64) * scale
            if p.dim() == 1 and p.shape[0] > 0 and id(p) in norm_gains:
                noise = noise + 1.0  # keep norm gains around 1
            p.copy_(noise.to(p.dtype))
    return module


STRUCTURE_HINT = "Build each sub-module and parameter the handout names once, in __init__, with its own weights."


def _within(name: str, parts) -> str | None:
    """The part (a module path of `parts`) that `name` lies strictly inside, or None."""
    for part in parts:
        if name.startswith(part + "."):
            return part
    return None


def _owns_parameters(module: torch.nn.Module) -> bool:
    return next(module.parameters(), None) is not None


def _check_modules(student, reference, what: str, parts) -> None:
    """Sub-modules with parameters that are distinct in the reference are distinct in the student
    (and shared ones shared): a module built once and used twice shares its weights."""
    got = dict(student.named_modules(remove_duplicate=False))
    student_first: dict[int, str] = {}  # id of a student module -> the first path it was met at
    reference_first: dict[int, str] = {}
    for path, ref_module in reference.named_modules(remove_duplicate=False):
        if not path or _within(path, parts) or path not in got or not _owns_parameters(ref_module):
            continue
        mine = got[path]
        seen_mine, seen_ref = student_first.get(id(mine)), reference_first.get(id(ref_module))
        if seen_mine is not None and seen_mine != seen_ref:
            fail(f"{what}: {path} is the same module as {seen_mine}, so they share their weights; "
                 f"the contract asks for separate ones. {STRUCTURE_HINT}")
        if seen_ref is not None and seen_mine != seen_ref:
            fail(f"{what}: {path} should be the same module as {seen_ref}, as in the contract.")
        student_first.setdefault(id(mine), path)
        reference_first.setdefault(id(ref_module), path)


def _names(names, limit: int = 6) -> str:
    names = list(names)
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _parameter_names(module, parts) -> dict[str, torch.Tensor]:
    """Every parameter by name, shared ones under each of their names; those inside `parts` are left out."""
    return {name: p for name, p in module.named_parameters(remove_duplicate=False) if not _within(name, parts)}


def _check_sharing(student, reference, what: str, parts) -> None:
    """No parameter tensor shared where the reference shares none, and shared where it shares.

    Sharing wholly inside one of `parts` is that part's own business (graded with its problem)."""
    ref_params = dict(reference.named_parameters(remove_duplicate=False))
    groups: dict[int, list[str]] = {}
    for name, p in student.named_parameters(remove_duplicate=False):
        groups.setdefault(id(p), []).append(name)
    for names in groups.values():
        names = [n for n in names if n in ref_params]
        regions = {_within(n, parts) for n in names}
        if len(names) < 2 or (len(regions) == 1 and None not in regions):
            continue
        for other in names[1:]:
            if ref_params[other] is not ref_params[names[0]]:
                fail(f"{what}: parameter {other} is the same tensor as {names[0]}; the contract asks for "
                     f"separate ones. {STRUCTURE_HINT}")
    got = dict(student.named_parameters(remove_duplicate=False))
    ref_groups: dict[int, list[str]] = {}
    for name, p in ref_params.items():
        ref_groups.setdefault(id(p), []).append(name)
    for names in ref_groups.values():
        names = [n for n in names if n in got]
        for other in names[1:]:
            if got[other] is not got[names[0]]:
                fail(f"{what}: parameter {other} should be the same tensor as {names[0]} (tied), as in the contract.")


def _part_parameters(module, part: str):
    found = dict(module.named_modules(remove_duplicate=False)).get(part)
    return [] if found is None else list(found.parameters())


def _check_parameter_names(student, reference, what: str, parts) -> None:
    expected, got = _parameter_names(reference, parts), _parameter_names(student, parts)
    missing = sorted(expected.keys() - got.keys())
    known = {id(got[name]) for name in expected.keys() & got.keys()}
    known |= {id(p) for part in parts for p in _part_parameters(student, part)}
    # a second name for a parameter the contract names (self.attention = self.attn) adds nothing
    extra = sorted(name for name in got.keys() - expected.keys() if id(got[name]) not in known)
    if missing or extra:
        found = []
        if missing:
            found.append(f"missing parameter(s) {_names(missing)}")
        if extra:
            found.append(f"unexpected parameter(s) {_names(extra)}")
        fail(f"{what} does not have the parameters the contract names: {'; '.join(found)}. "
             "Use exactly the attribute names of the handout, and nn.ModuleList (not a Python list) for a list "
             "of modules.")
    for name, p in expected.items():
        if tuple(got[name].shape) != tuple(p.shape):
            fail(f"{what}: parameter {name} has shape {list(got[name].shape)}, expected {list(p.shape)}.")


def check_structure(student: torch.nn.Module, reference: torch.nn.Module, what: str, parts=()) -> None:
    """The student's module has the reference's structure: the same parameter names and shapes
    (shared ones counted under each name), distinct sub-modules and parameter tensors where the
    reference has distinct ones, shared where it shares. A mismatch fails naming it.

    `parts`: paths of sub-modules graded as problems of their own (a Block's `attn`, a
    Transformer's `blocks.0`): what lies inside them is not compared, only that each is a
    module of its own and shares nothing with the rest.
    """
    parts = tuple(parts)
    got = dict(student.named_modules(remove_duplicate=False))
    missing = [part for part in parts if part not in got]
    if missing:
        fail(f"{what} has no sub-module {', '.join(missing)} registered, which the contract names. "
             "Use exactly the attribute names of the handout, and nn.ModuleList (not a Python list) for a list "
             "of modules.")
    _check_modules(student, reference, what, parts)
    _check_parameter_names(student, reference, what, parts)
    _check_sharing(student, reference, what, parts)


def copy_parameters(dst: torch.nn.Module, src: torch.nn.Module, *, what: str) -> None:
    """Load `src`'s parameters into `dst` by name (named_parameters); buffers are ignored.

    Strict: `dst` must have the structure of `src` (check_structure: every name, shape and
    sharing of tensors); a missing, unexpected, wrongly shaped or wrongly shared parameter is a
    contract violation naming it.
    """
    check_structure(dst, src, what)
    got = dict(dst.named_parameters(remove_duplicate=False))
    with torch.no_grad():
        for name, p in src.named_parameters():
            got[name].copy_(p)


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def randn(*shape, seed: int, dtype=torch.float32, device="cpu", scale: float = 1.0) -> torch.Tensor:
    """Seeded normal tensor, drawn in float64 on the CPU so every dtype and device sees the same values."""
    x = torch.randn(shape, generator=seeded(seed), dtype=torch.float64) * scale
    return x.to(device=device, dtype=dtype)


def randint(high: int, *shape, seed: int, device="cpu") -> torch.Tensor:
    return torch.randint(high, shape, generator=seeded(seed)).to(device)


class DeviceMismatch(AssertionError):
    pass


DEVICE_HINT = ("Tensors created inside your code must go on the device of the inputs, "
               "e.g. torch.arange(T, device=x.device), or be registered buffers of the module.")
TRANSFER_OPS = {"aten::_to_copy", "aten::copy_", "aten::to", "aten::_copy_from", "aten::lift_fresh"}


class DeviceCheckMode(TorchDispatchMode):
    """Fail an op whose tensor inputs sit on different devices, as CUDA would.

    Plain `meta` tensors miss some mixes (an embedding indexed by a CPU tensor) and reject
    a 0-dim CPU scalar that CUDA accepts; this checks each op: its non-scalar tensor
    arguments must share one device, and 0-dim CPU tensors are moved to it silently.
    Work done wholly on the CPU and copies between devices (`.to`, `copy_`) are allowed.
    """

    def __init__(self, device):
        super().__init__()
        self.device = torch.device(device)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func._schema.name in TRANSFER_OPS:
            return func(*args, **kwargs)
        flat, spec = tree_flatten((args, kwargs))
        devices, cpu_scalars = set(), False
        for t in flat:
            if isinstance(t, torch.Tensor):
                if t.dim() == 0 and t.device.type == "cpu":
                    cpu_scalars = True
                else:
                    devices.add(t.device)
        if len(devices) > 1:
            found = ", ".join(sorted(str(d) for d in devices))
            raise DeviceMismatch(f"{func._schema.name} got tensors on different devices ({found}) while the inputs "
                                 f"are on {self.device}. {DEVICE_HINT}")
        if cpu_scalars and devices and next(iter(devices)).type != "cpu":
            target = next(iter(devices))
            flat = [t.to(target) if isinstance(t, torch.Tensor) and t.dim() == 0 and t.device.type == "cpu" else t
                    for t in flat]
            args, kwargs = tree_unflatten(flat, spec)
        return func(*args, **kwargs)


_STRICT_DEVICES: list[torch.device] = []


def active_strict_device() -> torch.device | None:
    """The device of the innermost `strict_device` block (the sandbox checks calls there too)."""
    return _STRICT_DEVICES[-1] if _STRICT_DEVICES else None


@contextlib.contextmanager
def strict_device(device="meta"):
    """Run code under DeviceCheckMode; a mismatch becomes a GradingFailure with a hint."""
    _STRICT_DEVICES.append(torch.device(device))
    try:
        with DeviceCheckMode(device):
            yield
    except DeviceMismatch as exc:
        fail(f"Your code mixes devices: {exc}")
    finally:
        _STRICT_DEVICES.pop()



class _DynamoStandIn(types.ModuleType):
    """Stands in for torch._dynamo until something needs more than `disable`.

    Meta tensors and dispatch modes run Python functions that torch wraps with
    `torch._disable_dynamo`, whose first call imports torch._dynamo (about 2 s, a quarter
    of a grading run) only to mark the function as never compiled. Tests compile nothing,
    so `disable` returns the function as it is; any other attribute (torch.compile in a
    student's code, say) swaps the real module in and answers from it.
    """

    def __init__(self):
        super().__init__("torch._dynamo")

    @staticmethod
    def disable(fn=None, recursive=True, **kwargs):
        return fn

    @staticmethod
    def graph_break(msg=""):
        """What every optimizer.step() calls (twice): outside torch.compile it does nothing."""

    def __getattr__(self, name):
        if sys.modules.get("torch._dynamo") is self:
            del sys.modules["torch._dynamo"]
        if torch.__dict__.get("_dynamo") is self:
            del torch._dynamo
        return getattr(importlib.import_module("torch._dynamo"), name)


class _RealDynamoImportHook:
    """An import hook: before a library that needs the real torch._dynamo while it is half
    imported (transformers, torch.distributed), swap the stand-in for the real module, or the
    stand-in's own swap would happen mid-import, in a circle."""

    NEEDS_DYNAMO = ("transformers", "torch.distributed")

    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name.startswith(cls.NEEDS_DYNAMO) and isinstance(sys.modules.get("torch._dynamo"), _DynamoStandIn):
            del sys.modules["torch._dynamo"]
            torch.__dict__.pop("_dynamo", None)
            importlib.import_module("torch._dynamo")
        return None


def _stand_in_for_dynamo() -> None:
    if "torch._dynamo" not in sys.modules:
        stand_in = _DynamoStandIn()
        sys.modules["torch._dynamo"] = stand_in
        torch._dynamo = stand_in
        if _RealDynamoImportHook not in sys.meta_path:
            sys.meta_path.insert(0, _RealDynamoImportHook)


@functools.lru_cache(maxsize=None)  # once a process (pytest sessions of a mutant batch call it each)
def warm_up() -> None:
    """Pay, once and outside any test's time limit, what the meta device costs on first use
    (the imports behind meta kernels, about 1 s more)."""
    _stand_in_for_dynamo()
    x = torch.ones(2, 2, device="meta")
    with DeviceCheckMode("meta"):
        torch.tril(x + 1).masked_fill(x > 0, float("-inf")).softmax(-1)


@functools.lru_cache(maxsize=None)
def resolve(dotted: str):
    """The object a dotted name such as "torch.nn.functional.scaled_dot_product_attention" names."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attribute in parts[cut:]:
            obj = getattr(obj, attribute)
        return obj
    raise ImportError(dotted)


FORBIDDEN_CALL = ("{problem}: your code called {name}, which is not allowed here: "
                  "the point of this problem is to write it yourself.")
FORBIDDEN_ALIAS = "{called} (the same computation as {name})"


@dataclasses.dataclass(frozen=True)
class ForbiddenComputation:
    """Everything that computes one forbidden thing, however student code reaches it.

    `calls`: functions, methods and `nn.Module` classes (dotted names), seen at run time
    through `__torch_function__` and a global forward pre-hook; `ops`: ATen operators, seen
    by name when called through `torch.ops` and when any path dispatches to them; `code`:
    plain Python functions that reach none of these (watched by code object, so a bound or
    unbound method, `.forward(...)` instead of `module(...)`, or `functools.partial` are seen).
    """
    what: str
    calls: tuple[str, ...]
    ops: tuple[str, ...] = ()
    code: tuple[str, ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        return self.calls + self.code


_DISTILBERT = "transformers.models.distilbert.modeling_distilbert"

# The one place that maps a forbidden name to all its aliases: a manifest that forbids any
# name of a computation forbids every one of them.
COMPUTATIONS = (
    ForbiddenComputation("softmax", calls=(
        "torch.softmax", "torch.nn.functional.softmax", "torch.Tensor.softmax", "torch.special.softmax",
        "torch._softmax", "torch._safe_softmax", "torch._masked_softmax",
        "torch.log_softmax", "torch.nn.functional.log_softmax", "torch.Tensor.log_softmax",
        "torch.special.log_softmax", "torch._log_softmax",
        "torch.nn.functional.softmin", "torch.nn.functional.gumbel_softmax",
        "torch.nn.Softmax", "torch.nn.Softmin", "torch.nn.LogSoftmax", "torch.nn.Softmax2d"),
        ops=("aten::softmax", "aten::_softmax", "aten::_safe_softmax", "aten::_masked_softmax",
             "aten::log_softmax", "aten::_log_softmax", "aten::special_softmax", "aten::special_log_softmax")),
    ForbiddenComputation("scaled dot-product attention", calls=(
        "torch.nn.functional.scaled_dot_product_attention", "torch._scaled_dot_product_attention_math",
        "torch._scaled_dot_product_flash_attention_for_cpu", "torch._scaled_dot_product_flash_attention",
        "torch._scaled_dot_product_efficient_attention", "torch._scaled_dot_product_cudnn_attention",
        "torch._triton_scaled_dot_attention"),
        ops=("aten::scaled_dot_product_attention", "aten::_scaled_dot_product_attention_math",
             "aten::_scaled_dot_product_flash_attention", "aten::_scaled_dot_product_flash_attention_for_cpu",
             "aten::_scaled_dot_product_efficient_attention", "aten::_scaled_dot_product_cudnn_attention",
             "aten::_scaled_dot_product_fused_attention_overrideable", "aten::_efficient_attention_forward",
             "aten::_flash_attention_forward", "aten::_triton_scaled_dot_attention")),
    ForbiddenComputation("multi-head attention", calls=(
        "torch.nn.MultiheadAttention", "torch.nn.functional.multi_head_attention_forward",
        "torch._native_multi_head_attention", "torch._transformer_encoder_layer_fwd",
        "torch._triton_multi_head_attention", "torch.nn.TransformerEncoderLayer", "torch.nn.TransformerDecoderLayer",
        "torch.nn.TransformerEncoder", "torch.nn.TransformerDecoder", "torch.nn.Transformer"),
        ops=("aten::_native_multi_head_attention", "aten::_transformer_encoder_layer_fwd",
             "aten::_triton_multi_head_attention")),
    ForbiddenComputation("DistilBERT's attention", calls=(f"{_DISTILBERT}.DistilBertSelfAttention",),
                code=(f"{_DISTILBERT}.DistilBertSelfAttention.forward", f"{_DISTILBERT}.eager_attention_forward")),
)


def computation_of(name: str) -> ForbiddenComputation | None:
    """The computation a forbidden name belongs to (None: a name of its own, no known alias)."""
    return next((c for c in COMPUTATIONS if name in c.names), None)


def aliases(name: str) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """(calls, ops, code) that a manifest's forbidden `name` stands for."""
    found = computation_of(name)
    if found is None:
        return (name,), (), ()
    return found.calls, found.ops, found.code


def _op_name(func) -> str | None:
    """"aten::softmax" for torch.ops.aten.softmax (a packet) or torch.ops.aten.softmax.int (an overload)."""
    schema = getattr(func, "_schema", None)
    if schema is not None:
        return getattr(schema, "name", None)
    name = getattr(func, "_qualified_op_name", None)
    return name if isinstance(name, str) else None


class _ForbiddenOps(TorchDispatchMode):
    """The ATen operators a forbidden computation dispatches to, whatever Python name reached them."""

    def __init__(self, guard: "ForbiddenCalls"):
        super().__init__()
        self.guard = guard

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        found = self.guard.ops.get(func._schema.name)
        if found is not None:
            self.guard._violate(*found)
        return func(*args, **(kwargs or {}))


class ForbiddenCalls(TorchFunctionMode):
    """Fail when student code (a frame in `is_student`) computes what a problem forbids, however
    it was imported, aliased or reached: the names of the manifest are expanded through
    `COMPUTATIONS` (torch.softmax stands for F.softmax, Tensor.softmax, nn.Softmax, ...), and calls
    are seen at run time, never by searching the source: torch functions and methods through
    __torch_function__, modules through a global forward pre-hook, ATen operators through a
    dispatch mode, plain Python functions by their code object (sys.setprofile)."""

    def __init__(self, names_by_problem: dict[str, list[str]], is_student):
        super().__init__()
        self.is_student = is_student
        self.functions, self.classes, self.ops, self.code = {}, {}, {}, {}
        for problem, names in names_by_problem.items():
            for name in names:
                calls, ops, code = aliases(name)
                for called in calls:
                    obj = resolve(called)
                    table = self.classes if isinstance(obj, type) else self.functions
                    table.setdefault(obj, (problem, name, called))
                for op in ops:
                    self.ops.setdefault(op, (problem, name, op))
                for called in code:
                    self.code.setdefault(resolve(called).__code__, (problem, name, called))
        self.violations: list[str] = []
        self._handle = None
        self._dispatch = _ForbiddenOps(self) if self.ops else None
        self._profile = None

    def _violate(self, problem: str, name: str, called: str, frame=None, raise_=True) -> None:
        frame = frame or sys._getframe(1)
        while frame is not None and not self.is_student(frame.f_code.co_filename):
            frame = frame.f_back
        if frame is None:
            return  # the grader's own code may call anything
        shown = name if called == name else FORBIDDEN_ALIAS.format(called=called, name=name)
        message = FORBIDDEN_CALL.format(problem=problem, name=shown)
        if message not in self.violations:
            self.violations.append(message)
        if raise_:
            fail(message)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        try:
            found = self.functions.get(func)
        except TypeError:  # an unhashable callable
            found = None
        if found is None and self.ops:
            op = _op_name(func)
            found = self.ops.get(op) if op else None
        if found is not None:
            self._violate(*found)
        return func(*args, **(kwargs or {}))

    def _pre_hook(self, module, args):
        for cls, found in self.classes.items():
            if isinstance(module, cls):
                self._violate(*found)

    def _watch(self, frame, event, arg):
        """sys.setprofile's hook: the start of a watched Python function. Only recorded (an
        exception raised here would turn profiling off); the test fails when the call returns."""
        if event == "call":
            found = self.code.get(frame.f_code)
            if found is not None:
                self._violate(*found, frame=frame, raise_=False)
        if self._profile is not None:
            return self._profile(frame, event, arg)
        return None

    def __enter__(self):
        self._handle = torch.nn.modules.module.register_module_forward_pre_hook(self._pre_hook)
        entered = super().__enter__()
        if self._dispatch is not None:
            self._dispatch.__enter__()
        if self.code:
            self._profile = sys.getprofile()
            sys.setprofile(self._watch)
        return entered

    def __exit__(self, *exc):
        if self.code:
            sys.setprofile(self._profile)
            self._profile = None
        if self._dispatch is not None:
            self._dispatch.__exit__(*exc)
        self._handle.remove()
        return super().__exit__(*exc)
