"""Student code in another process: the grader's side of the sandbox (the worker is worker.py).

With `--sandbox`, the `student` fixture is a `RemoteSubmission`: tests use it exactly as
the in-process `Submission` (`student.model.Block(...)`, `call(block, x)`), but student
code runs in a worker process that

- runs as an unprivileged user when the grader is root (its own user, else `nobody`),
  with limits on memory, CPU time, processes, open files and file size;
- sees a copy of the submission and of the worker's own code, the system and the Python
  packages, and, where the kernel lets root make a mount namespace, nothing else (jail.py);
  on Gradescope, folder permissions keep it out of /autograder/source as well;
- answers in protocol.py's plain format only: tensors, numbers, strings, lists, dicts and
  descriptions of modules. Every comparison happens here, on plain tensors.

A module built by student code is mirrored here: a module of the same class name with the
same parameters, buffers, plain attributes and children (torch.nn layers are rebuilt as
the real classes), so tests can check `isinstance(m.q_proj, nn.Linear)`, load weights, move
it to a dtype or to `meta`, or put a reference sub-module in place of the student's. Its
forward sends that state and the inputs to the worker; autograd goes through (backward asks
the worker for the gradients). Objects of the grader given to student code (a model to
decode with, a module to hook, reference sub-modules) become stubs in the worker that call
back here. Random state, forbidden calls and the strict device check travel with each call.

If the worker dies (segfault, os._exit, a kill, a timeout), the call raises WorkerCrash,
and the next test starts a new worker.
"""
from __future__ import annotations

import contextlib
import pathlib
import sys

import torch
import torch.nn as nn
from torch.utils._pytree import tree_flatten, tree_unflatten

from ..kit import adapter, inplace, messages
from . import protocol
from .process import SandboxUnavailable, WorkerProcess, Zygote
from ..kit.checks import GradingFailure
from .server import HOOK_FIELDS, hook_kinds, hook_values, hooked_inputs, register_relays, run_hooks, same_objects

from .process import DEFAULT_LIMITS  # noqa: E402


class RemoteError(Exception):
    """Student code raised in the worker; carries its type name and its traceback (student files only)."""

    def __init__(self, type_name: str, message: str, traceback: str):
        super().__init__(message)
        self.type_name, self.message, self.student_traceback = type_name, message, traceback


def remote_error(type_name: str, message: str, traceback: str) -> RemoteError:
    """A RemoteError that is also an instance of the builtin exception the student's code raised
    (so `except ValueError` in a test works as in-process); other types stay plain RemoteError."""
    import builtins

    base = getattr(builtins, type_name, None)
    if not (isinstance(base, type) and issubclass(base, Exception)) or issubclass(base, (OSError, Warning)):
        return RemoteError(type_name, message, traceback)
    cls = _REMOTE_ERRORS.get(type_name)
    if cls is None:
        cls = _REMOTE_ERRORS[type_name] = type(type_name, (RemoteError, base), {"__init__": RemoteError.__init__,
                                                                                "__str__": lambda self: self.message})
    return cls(type_name, message, traceback)


_REMOTE_ERRORS: dict[str, type] = {}


class WorkerCrash(Exception):
    """The worker process died (or was killed) while running student code."""


# ---------------------------------------------------------------------------------------------
# mirrors of the worker's objects

class RemoteModule(nn.Module):
    """Base of the mirrors of student module classes: forward runs in the worker."""

    def forward(self, *args, **kwargs):
        sandbox, wid, epoch = self._sandbox_ref
        return sandbox.forward(self, args, kwargs)


class _RemoteClassMeta(type(nn.Module)):
    def __call__(cls, *args, **kwargs):
        sandbox, wid, epoch = cls._sandbox_class
        return sandbox.call_remote(wid, epoch, args, kwargs)


class RemoteFunction:
    def __init__(self, sandbox, wid: int, epoch: int, name: str):
        self._sandbox, self._wid, self._epoch, self.__name__ = sandbox, wid, epoch, name

    def __call__(self, *args, **kwargs):
        return self._sandbox.call_remote(self._wid, self._epoch, args, kwargs)

    def __repr__(self) -> str:
        return f"<submitted function {self.__name__}>"


class RemoteObject:
    """Any other object of student code: its methods run in the worker."""

    def __init__(self, sandbox, wid: int, epoch: int, name: str):
        self._sandbox, self._wid, self._epoch, self._name = sandbox, wid, epoch, name

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        return lambda *args, **kwargs: self._sandbox.call_method(self, name, args, kwargs)

    def __enter__(self):
        """`with handle:` (a hook's handle removes its hook on exit)."""
        return self._sandbox.call_method(self, "__enter__", (), {})

    def __exit__(self, *exc_info) -> bool:
        self._sandbox.call_method(self, "__exit__", (None, None, None), {})
        return False  # student code never swallows the grader's exceptions

    def __repr__(self) -> str:
        return f"<submitted {self._name}>"


class _RemoteForward(torch.autograd.Function):
    """Autograd through the worker: forward runs there; backward asks it for the gradients."""

    @staticmethod
    def forward(ctx, sandbox, holder, *leaves):
        outputs = holder["run"]()
        ctx.sandbox, ctx.holder = sandbox, holder
        ctx.mark_non_differentiable(*[o for o, rg in zip(outputs, holder["rg"]) if not rg])
        return tuple(outputs)

    @staticmethod
    def backward(ctx, *grads):
        holder = ctx.holder
        if holder["epoch"] != ctx.sandbox.epoch:
            raise WorkerCrash(messages.WORKER_LOST)
        result = ctx.sandbox.transact({"op": "backward", "graph": holder["graph"], "epoch": holder["epoch"]},
                                      {"grads": list(grads)})
        found = result.get("grads") or {}
        out = []
        for key, leaf in enumerate(holder["leaves"]):
            grad = found.get(key)
            if grad is not None and (not isinstance(grad, torch.Tensor) or grad.shape != leaf.shape):
                raise WorkerCrash("the worker sent a malformed gradient")
            out.append(None if grad is None else grad.to(device=leaf.device, dtype=leaf.dtype))
        return (None, None, *out)


class _Shared:
    """A list given to student code: changes made there are copied back into it."""

    def __init__(self, items: list):
        self.items = items


CONTAINERS = (nn.ModuleList, nn.Sequential, nn.ModuleDict)


def by_value(obj, encoder: protocol.Encoder) -> dict | None:
    """A Hugging Face model or fast tokenizer, as what the worker needs to build a copy of it.

    These are handed to student code by value, not as stubs: student code calls many of their
    methods (`tokenizer(...)`, `convert_ids_to_tokens`, `model.embeddings.word_embeddings`,
    `set_attn_implementation`), and a copy has them all. What student code does to the copy
    (eval(), another attention implementation) stays in the worker.
    """
    if "transformers" not in sys.modules:
        return None
    import transformers

    cls = type(obj)
    if isinstance(obj, transformers.PreTrainedModel) and getattr(transformers, cls.__name__, None) is cls:
        return {"type": "hf_model", "cls": cls.__name__, "config": obj.config.to_json_string(use_diff=False),
                "attn": obj.config._attn_implementation, "training": obj.training,
                "state": encoder.value(dict(obj.state_dict()))}
    if isinstance(obj, transformers.PreTrainedTokenizerFast) and getattr(transformers, cls.__name__, None) is cls:
        kwargs = {k: v for k, v in obj.special_tokens_map.items() if isinstance(v, str)}
        kwargs.update(model_max_length=obj.model_max_length, padding_side=obj.padding_side,
                      truncation_side=obj.truncation_side)
        return {"type": "hf_tokenizer", "cls": cls.__name__, "json": obj.backend_tokenizer.to_str(),
                "kwargs": encoder.value(kwargs)}
    return None


class Sandbox:
    """The test process's connection to one worker at a time (restarted after a crash)."""

    def __init__(self, submission: pathlib.Path, limits: dict | None = None, zygote: Zygote | None = None,
                 stand_ins=None, preload: list[str] | tuple[str, ...] = ()):
        self.submission = pathlib.Path(submission)
        self.limits = dict(DEFAULT_LIMITS, **(limits or {}))
        self.preload = tuple(preload)
        self.zygote: Zygote | None = zygote    # already started, perhaps: workers are forked from it
        self.worker: WorkerProcess | None = None
        self.epoch = 0
        self.objects: dict[int, object] = {}     # grader objects student code holds, by id
        self.gids: dict[int, int] = {}
        self.graphs: dict[int, tuple] = {}       # callback graphs kept for the worker's backward
        self.mirrors: dict[int, nn.Module] = {}  # by worker id
        self.classes: dict[str, type] = {}
        self.shared: dict[int, list] = {}
        self.relays: dict[int, list] = {}
        self.in_callback: set[int] = set()
        self.forbidden: dict = {}
        self.violations: list[str] = []
        self.device: str | None = None
        self.dirty = False
        self.next_gid = 1
        self.imported: set[str] = set()          # modules the current worker imported
        self.rng_synced: torch.Tensor | None = None  # the worker's random state, as of the last call
        self.import_crashes: dict[str, str] = {}  # modules whose import killed a worker: the message
        self.stand_ins = stand_ins               # grading: module name -> the reference's names, or None
        self.stood_in: set[tuple[int, str]] = set()  # (epoch, module) replaced by a stand-in in that worker
        self.preparing: set[str] = set()
        self.kept: dict[int, object] = {}        # grader objects of the stand-ins, by id (never forgotten)

    # ---- process -----------------------------------------------------------------------------

    def start(self) -> None:
        """Fork a worker from the zygote (started first if none runs)."""
        if self.worker is None:
            if self.zygote is None:
                self.zygote = Zygote(self.submission, self.limits, self.preload)
            self.worker = self.zygote.fork()

    def ready(self) -> None:
        """Start the worker if none runs, and wait until it answers (it is ready to serve)."""
        self._ensure_ready()

    def _ensure_ready(self) -> None:
        self.start()
        if not self.worker.started:
            try:
                message, blobs = self._receive()
            except WorkerCrash as exc:
                log = self.worker.output()
                self.stop()
                raise SandboxUnavailable(f"the worker did not start: {exc}\n{log[-2000:]}") from None
            if not message.get("ok"):
                raise SandboxUnavailable("the worker did not start")
            self.worker.mark_started()

    def stop(self) -> None:
        if self.worker is not None:
            self.worker.kill()
            self.worker = None
            self.epoch += 1  # objects of that worker are gone with it
            self.imported.clear()
            self.rng_synced = None
        self._forget()

    def _forget(self) -> None:
        for _, handles in self.relays.values():
            for handle in handles:
                handle.remove()
        self.objects.clear(), self.gids.clear(), self.graphs.clear(), self.mirrors.clear()
        self.shared.clear(), self.relays.clear(), self.in_callback.clear()

    def reset(self) -> None:
        """Between tests: forget this test's objects (the worker keeps its imported modules)."""
        self.violations = []
        if self.dirty and self.worker is not None:
            self.dirty = False
            self.transact({"op": "reset"})
        self._forget()

    # ---- messages ----------------------------------------------------------------------------

    def _receive(self):
        try:
            return protocol.receive(self.worker.from_worker)
        except EOFError:
            raise WorkerCrash(self.worker.exit_description()) from None
        except protocol.WireError as exc:
            raise WorkerCrash(f"it sent a malformed message ({exc})") from None

    def _encoder(self) -> protocol.Encoder:
        self._current_encoder = protocol.Encoder(on_object=self._export)
        return self._current_encoder

    def _decoder(self, blobs, grad: bool = True) -> protocol.Decoder:
        self._current_decoder = protocol.Decoder(blobs, on_ref=self._import, on_device=_to_device, grad=grad)
        return self._current_decoder

    def __deepcopy__(self, memo):
        return self  # a copied mirror still names the same worker object

    def __copy__(self):
        return self

    def transact(self, request: dict, values: dict | None = None, encoder: protocol.Encoder | None = None,
                 grad: bool = True) -> dict:
        """Send a request; serve the worker's callbacks until its answer comes; return the answer's values."""
        encoder = encoder or self._encoder()
        body = {k: encoder.value(v) for k, v in (values or {}).items()}
        return self._send_encoded(request, body, encoder, grad)

    def _answer(self, message: dict, blobs, grad: bool) -> dict:
        dropped = message.get("dropped")
        self._print_output(dropped if type(dropped) is int and dropped > 0 else 0)
        decoder = self._decoder(blobs, grad)
        for gid, items in (message.get("shared") or {}).items():
            target = self.shared.get(int(gid)) if str(gid).isdigit() else None
            if target is not None:
                target[:] = decoder.value(items)
        self._update_relays(message.get("stub_hooks") or {})
        violations = message.get("violations") or []
        for text in violations[:5]:
            if isinstance(text, str) and text not in self.violations:
                self.violations.append(text[:500])
        if "error" in message:
            raise self._error(message["error"])
        return {k: decoder.value(v) for k, v in (message.get("values") or {}).items()}

    def _error(self, error) -> Exception:
        if not isinstance(error, dict):
            return WorkerCrash("it sent a malformed error")
        kind = error.get("kind")
        text = lambda key: str(error.get(key, ""))[:8000]  # noqa: E731
        if kind == "failure":
            return GradingFailure(text("summary"), text("details"))
        if kind == "submission":
            cls = {"MissingFileError": adapter.MissingFileError, "ContractError": adapter.ContractError,
                   "StudentImportError": adapter.StudentImportError}.get(text("type"), adapter.SubmissionError)
            return cls(text("message"))
        return remote_error(text("type")[:100] or "Exception", text("message"), text("traceback"))

    def _print_output(self, dropped: int = 0) -> None:
        if self.worker is not None:
            printed = self.worker.output(dropped)
            if printed:
                sys.stdout.write(printed)

    # ---- values ------------------------------------------------------------------------------

    def _gid(self, obj) -> int:
        gid = self.gids.get(id(obj))
        if gid is None:
            gid, self.next_gid = self.next_gid, self.next_gid + 1
            self.objects[gid], self.gids[id(obj)] = obj, gid
        return gid

    def _export(self, obj) -> dict:
        """How an object of the grader's is named to the worker."""
        if isinstance(obj, _WorkerRef):
            return {"T": "ref", "home": "worker", "id": obj.wid}
        ref = getattr(obj, "_sandbox_ref", None)
        if ref is not None and ref[0] is self and ref[2] == self.epoch:
            return {"T": "ref", "home": "worker", "id": ref[1]}
        if isinstance(obj, (RemoteFunction, RemoteObject)) and obj._epoch == self.epoch:
            return {"T": "ref", "home": "worker", "id": obj._wid}
        if isinstance(obj, adapter.StudentCallable):
            return self._export(obj.raw)
        if isinstance(obj, _RemoteClassMeta) and obj._sandbox_class[2] == self.epoch:
            return {"T": "ref", "home": "worker", "id": obj._sandbox_class[1]}
        if ref is not None or isinstance(obj, (RemoteFunction, RemoteObject, _RemoteClassMeta)):
            raise WorkerCrash(messages.WORKER_LOST)
        if isinstance(obj, _Shared):
            gid = self._gid(obj.items)
            self.shared[gid] = obj.items
            return {"T": "ref", "home": "grader", "type": "list", "id": gid,
                    "items": self._current_encoder.value(list(obj.items))}
        copied = by_value(obj, self._current_encoder)
        if copied is not None:
            return dict(copied, T="ref", home="grader", id=self._gid(obj))
        if isinstance(obj, nn.Module):
            return {"T": "ref", "home": "grader", "type": "module", "id": self._gid(obj), "desc": self._stub_desc(obj)}
        if callable(obj):
            return {"T": "ref", "home": "grader", "type": "function", "id": self._gid(obj),
                    "name": str(getattr(obj, "__name__", type(obj).__name__))}
        raise protocol.WireError(f"a {type(obj).__name__} cannot be given to student code")

    def _stub_desc(self, module: nn.Module) -> dict:
        attrs = {}
        names = [n for n in vars(module)] + [n for n in dir(type(module)) if not hasattr(nn.Module, n)]
        for name in names:
            if name.startswith("_") or name == "training" or name in attrs:
                continue
            value = getattr(module, name, None)
            with contextlib.suppress(protocol.WireError):
                protocol.Encoder().value(value)
                attrs[name] = self._current_encoder.value(value)
        desc = {"training": module.training, "attrs": attrs,
                "children": {name: self._export(child) for name, child in module._modules.items() if child is not None}}
        if isinstance(module, CONTAINERS):
            desc["container"] = type(module).__name__
        return desc

    def _import(self, ref: dict):
        """A local object for a reference the worker sent."""
        gid, home = ref["id"], ref.get("home")
        if home == "grader":
            if gid not in self.objects:
                raise protocol.WireError("unknown grader object")
            return self.objects[gid]
        kind, name = ref.get("type"), str(ref.get("name", "object"))[:200]
        if kind == "module":
            return self._mirror(ref.get("desc") or {}, {}, "")
        if kind == "class":
            return self._mirror_class(str(ref.get("key", name)), name, gid)
        if kind == "function":
            return RemoteFunction(self, gid, self.epoch, name)
        return RemoteObject(self, gid, self.epoch, name)

    def _mirror_class(self, key: str, name: str, wid: int | None = None) -> type:
        cls = self.classes.get(key)
        if cls is None:
            cls = _RemoteClassMeta(name, (RemoteModule,), {"__module__": "submission", "__qualname__": name})
            self.classes[key] = cls
        if wid is not None:
            cls._sandbox_class = (self, wid, self.epoch)
        return cls

    def _mirror(self, desc: dict, tensors: dict, path: str) -> nn.Module:
        """Build (or find) the mirror of a worker module from its description."""
        if desc.get("home") == "grader":
            return self._import({"home": "grader", "id": desc.get("id")})
        wid = desc.get("id")
        if wid in self.mirrors:
            return self.mirrors[wid]
        name = str(desc.get("cls", "Module"))
        cls = getattr(nn, name, None) if desc.get("torch") else None
        torch_class = isinstance(cls, type) and issubclass(cls, nn.Module) and cls.__module__.startswith("torch.nn.")
        if not torch_class:
            cls = self._mirror_class(str(desc.get("key", name)), name)
        decode = self._current_decoder.value
        module = cls.__new__(cls)
        nn.Module.__init__(module)
        for attr, value in (desc.get("attrs") or {}).items():
            if not isinstance(attr, str) or attr in ("training",) or attr.startswith("__"):
                continue
            if not torch_class and (attr.startswith("_") or hasattr(nn.Module, attr)):
                continue
            object.__setattr__(module, attr, decode(value))
        for kind, table in (("params", module._parameters), ("buffers", module._buffers)):
            for pname, value in (desc.get(kind) or {}).items():
                if isinstance(value, dict) and value.get("T") == "tie":
                    table[pname] = tensors.get(value.get("path"))
                    continue
                value = None if value is None else decode(value)
                if value is not None and not isinstance(value, torch.Tensor):
                    raise protocol.WireError("malformed module description")
                if kind == "params" and value is not None:
                    value = nn.Parameter(value.detach(), requires_grad=value.requires_grad)
                table[pname] = value
                tensors[f"{path}{pname}"] = value
        module._non_persistent_buffers_set = {n for n in desc.get("nonpersistent") or [] if n in module._buffers}
        module.training = bool(desc.get("training"))
        object.__setattr__(module, "_sandbox_ref", (self, wid, self.epoch))
        self.mirrors[wid] = module
        for cname, child in (desc.get("children") or {}).items():
            module._modules[cname] = None if child is None else self._mirror(child, tensors, f"{path}{cname}.")
        return module

    def _state(self, module: nn.Module, encoder: protocol.Encoder, seen: dict, path: str, root: bool) -> dict:
        """The mirror's current state, for the worker to apply before a forward."""
        ref = module._sandbox_ref
        if ref[2] != self.epoch:
            raise WorkerCrash(messages.WORKER_LOST)
        state = {"id": ref[1], "training": module.training, "params": {}, "buffers": {}, "children": {}}
        for kind, table in (("params", module._parameters), ("buffers", module._buffers)):
            for name, tensor in table.items():
                if tensor is not None and id(tensor) in seen:
                    state[kind][name] = {"T": "tie", "path": seen[id(tensor)]}
                    continue
                if tensor is not None:
                    seen[id(tensor)] = f"{path}{name}"
                state[kind][name] = encoder.value(tensor)
        if type(module).__module__.startswith("torch.nn."):
            attrs = {}
            for name, value in vars(module).items():
                if name in ("training", "_sandbox_ref") or name.startswith("_"):
                    continue
                with contextlib.suppress(protocol.WireError):
                    protocol.Encoder().value(value)
                    attrs[name] = encoder.value(value)
            state["attrs"] = attrs
        if not root and any(hook_kinds(module)):  # the grader's hooks on a part of a student's module
            state["hooks"] = {"id": self._gid(module), "kinds": hook_kinds(module)}
        for name, child in module._modules.items():
            if child is None:
                state["children"][name] = None
            elif getattr(child, "_sandbox_ref", (None,))[0] is self:
                state["children"][name] = self._state(child, encoder, seen, f"{path}{name}.", False)
            else:
                state["children"][name] = encoder.value(child)
        return state

    # ---- calls -------------------------------------------------------------------------------

    def _context(self) -> dict:
        from ..kit import torchkit

        context = {"grad": torch.is_grad_enabled()}
        if self.forbidden:
            context["forbidden"] = self.forbidden
        device = torchkit.active_strict_device()
        if device is not None:
            context["device"] = str(device)
        return context

    def _run(self, request: dict, values: dict, state_of: nn.Module | None = None):
        encoder = self._encoder()
        self._current_encoder = encoder
        state = torch.get_rng_state()
        if self.rng_synced is None or not torch.equal(state, self.rng_synced):
            values = dict(values, rng=state)  # the worker's random state is behind the grader's
        values["args"] = tuple(_Shared(a) if type(a) is list else a for a in values.get("args", ()))
        request = dict(request, **self._context())
        if state_of is not None:
            request["state"] = self._state(state_of, encoder, {}, "", True)
        body = {k: encoder.value(v) for k, v in values.items()}  # encodes leaves in order
        leaves = list(encoder.leaves)
        grad = bool(request["grad"]) and bool(leaves)
        request["grad_mode"] = bool(request["grad"])  # student code runs in the test's grad mode, as in one process
        request["grad"] = grad                         # and its graph is kept when autograd must go through

        def send():
            answer = self._send_encoded(request, body, encoder, grad=not grad)
            args = values.get("args", ())
            for index, value in (answer.get("changed") or {}).items():
                original = args[index] if isinstance(index, int) and 0 <= index < len(args) else None
                if isinstance(original, torch.Tensor) and isinstance(value, torch.Tensor) \
                        and value.shape == original.shape and original.device.type != "meta":
                    with torch.no_grad():
                        original.copy_(value.to(original.dtype))
                elif inplace.tracked(original):
                    inplace.apply(original, value)
            rng = answer.get("rng")
            if isinstance(rng, torch.Tensor) and rng.dtype == torch.uint8 and rng.shape == state.shape:
                torch.set_rng_state(rng)
                self.rng_synced = rng
            else:
                self.rng_synced = state
            return answer

        if not grad:
            return send()["result"]
        holder = {"leaves": leaves, "epoch": self.epoch}

        def run():
            answer = send()
            outputs, spec = tree_flatten(answer["result"])
            tensors = [o for o in outputs if isinstance(o, torch.Tensor)]
            flags = answer.get("rg") if isinstance(answer.get("rg"), list) else []
            holder.update(graph=answer.get("graph"), outputs=outputs, spec=spec,
                          rg=[bool(f) and t.dtype.is_floating_point for f, t in zip(flags, tensors)] + [False] * len(tensors))
            return tensors

        holder["run"] = run
        results = iter(_RemoteForward.apply(self, holder, *leaves))
        outputs = [next(results) if isinstance(o, torch.Tensor) else o for o in holder["outputs"]]
        return tree_unflatten(outputs, holder["spec"])

    def _send_encoded(self, request: dict, body: dict, encoder: protocol.Encoder, grad: bool) -> dict:
        self._ensure_ready()
        self.dirty = True
        try:
            protocol.send(self.worker.to_worker, dict(request, values=body), encoder.blobs)
            while True:
                message, blobs = self._receive()
                if message.get("re"):
                    return self._answer(message, blobs, grad)
                self._serve(message, blobs)
        except BaseException as exc:
            if isinstance(exc, (RemoteError, GradingFailure, adapter.SubmissionError)):
                raise
            self._print_output()
            how = self.worker.exit_description() if isinstance(exc, OSError) and self.worker else "it stopped answering"
            self.stop()
            if isinstance(exc, (OSError, protocol.WireError)):
                raise WorkerCrash(how) from None
            raise

    def call_remote(self, wid: int, epoch: int, args: tuple, kwargs: dict):
        if epoch != self.epoch:
            raise WorkerCrash(messages.WORKER_LOST)
        return self._run({"op": "call"}, {"target": _WorkerRef(wid), "args": args, "kwargs": kwargs})

    def call_method(self, obj: RemoteObject, name: str, args: tuple, kwargs: dict):
        if obj._epoch != self.epoch:
            raise WorkerCrash(messages.WORKER_LOST)
        return self._run({"op": "method", "name": name}, {"target": obj, "args": args, "kwargs": kwargs})

    def forward(self, module: RemoteModule, args: tuple, kwargs: dict):
        return self._run({"op": "call"}, {"target": module, "args": args, "kwargs": kwargs}, state_of=module)

    def import_module(self, module: str) -> None:
        """Import `module` of the submission in the worker, once per worker.

        A module whose import kills the worker (os._exit, a segfault at top level) or runs
        out of time is remembered: later tests fail at once instead of starting a worker
        each. In grading, the sibling files `module` imports are imported first, and one that
        cannot be is replaced there by a stand-in for the reference's (`_stand_in`)."""
        if module in self.import_crashes:
            raise adapter.StudentImportError(self.import_crashes[module])
        if module in self.imported:
            return
        if self.stand_ins is not None:
            self._prepare_siblings(module)
        try:
            self.transact({"op": "import", "module": module})
        except adapter.StudentImportError as exc:
            raise adapter.StudentImportError(self._noted(module, str(exc))) from None
        except WorkerCrash as exc:
            how = messages.WORKER_CRASH.format(how=str(exc)).split(" Grading went on")[0]
            self.import_crashes[module] = self._noted(module, messages.IMPORT_FAILED.format(file=f"{module}.py", error=how))
            raise adapter.StudentImportError(self.import_crashes[module]) from None
        except BaseException as exc:  # pytest-timeout's failure; the worker was stopped on the way
            seconds = adapter.timeout_seconds(exc)
            if seconds is None:
                raise
            self.import_crashes[module] = self._noted(
                module, messages.IMPORT_TIMEOUT.format(file=f"{module}.py", seconds=seconds))
            raise adapter.StudentImportError(self.import_crashes[module], timed_out=True) from None
        self.imported.add(module)

    def _noted(self, module: str, text: str) -> str:
        if self.stand_ins is None or messages.STAND_IN.format(file=f"{module}.py") in text:
            return text
        return text + "\n" + messages.STAND_IN.format(file=f"{module}.py")

    def _prepare_siblings(self, module: str) -> None:
        """Import the sibling files `module` imports (read from its syntax tree, here) before it, so a
        sibling's failure is charged to the sibling; one that fails gets a stand-in in the worker."""
        siblings = {path.stem for path in self.submission.glob("*.py")}
        self.preparing.add(module)
        try:
            for sibling in adapter.sibling_imports(self.submission / f"{module}.py", siblings):
                if sibling in self.imported or sibling in self.preparing or (self.epoch, sibling) in self.stood_in:
                    continue
                try:
                    self.import_module(sibling)
                except adapter.StudentImportError:
                    self._stand_in(sibling)
        finally:
            self.preparing.discard(module)

    def _stand_in(self, module: str) -> None:
        """Other files' `import module` gets, in the worker, a module of stubs that call the reference's
        functions and classes here: no line of the reference reaches the worker."""
        names = self.stand_ins(module)
        if names is None:
            return
        self.transact({"op": "stand_in", "module": module}, {"names": names})
        for obj in names.values():  # kept past the end of this test, unlike other objects handed over
            gid = self.gids.get(id(obj))
            if gid is not None:
                self.kept[gid] = obj
        self.stood_in.add((self.epoch, module))

    def name(self, module: str, name: str):
        """`module.name` of the submission."""
        self.import_module(module)
        self._current_encoder = self._encoder()
        return self.transact({"op": "name", "module": module, "name": name})["value"]

    # ---- the worker's requests ---------------------------------------------------------------

    def _serve(self, message: dict, blobs) -> None:
        op = message.get("op")
        try:
            decoder = self._decoder(blobs)
            values = {k: decoder.value(v) for k, v in (message.get("values") or {}).items()}
            if op == "call":
                answer = self._serve_call(message, values, decoder.leaves)
            elif op == "backward":
                answer = self._serve_backward(message, values)
            elif op == "hook":
                answer = self._serve_hook(message, values)
            else:
                raise protocol.WireError(f"unknown request {op!r}")
        except (protocol.WireError, WorkerCrash):
            raise
        except Exception as exc:  # noqa: BLE001 - the grader's object raised on the student's input
            text = "".join(__import__("traceback").format_exception_only(type(exc), exc)).strip()
            protocol.send(self.worker.to_worker, {"re": True, "error": f"the grader's object raised {text[:1000]}"})
            return
        encoder = self._encoder()
        self._current_encoder = encoder
        body = {k: encoder.value(v) for k, v in answer.items()}
        protocol.send(self.worker.to_worker, {"re": True, "ok": True, "values": body}, encoder.blobs)

    def _serve_call(self, message: dict, values: dict, leaves: dict) -> dict:
        gid = message.get("id")
        target = self.objects.get(gid, self.kept.get(gid))
        if target is None:
            raise protocol.WireError("unknown grader object")
        grad = bool(message.get("grad"))
        self.in_callback.add(gid)
        try:  # in student code's grad mode ("records no gradients" is graded by what a spy model sees)
            with torch.set_grad_enabled(grad or bool(message.get("grad_mode"))):
                result = target(*values.get("args", ()), **values.get("kwargs", {}))
        finally:
            self.in_callback.discard(gid)
        if not grad:  # no graph goes back: the answer is plain values, as before
            flat, spec = tree_flatten(result)
            result = tree_unflatten([t.detach() if isinstance(t, torch.Tensor) else t for t in flat], spec)
        answer = {"result": result}
        if grad:
            outputs = [o for o in tree_flatten(result)[0] if isinstance(o, torch.Tensor)]
            token = self.next_gid
            self.next_gid += 1
            self.graphs[token] = (outputs, leaves, gid)
            answer.update(graph=token, rg=[o.requires_grad for o in outputs])
        return answer

    def _serve_backward(self, message: dict, values: dict) -> dict:
        outputs, leaves, gid = self.graphs.get(message.get("graph"), (None, None, None))
        if outputs is None:
            raise protocol.WireError("unknown graph")
        grads = values.get("grads") or []
        pairs = [(o, g) for o, g in zip(outputs, grads)
                 if isinstance(g, torch.Tensor) and o.requires_grad and g.shape == o.shape]
        if pairs:
            self.in_callback.add(gid)  # the stub's backward hooks run in the worker, around this call
            try:
                torch.autograd.backward([o for o, _ in pairs], [g.to(o.dtype) for o, g in pairs])
            finally:
                self.in_callback.discard(gid)
        return {"grads": {key: leaf.grad for key, leaf in leaves.items()}}

    def _serve_hook(self, message: dict, values: dict) -> dict:
        """Run the grader's hooks on its mirror of a worker module, for a forward (or backward) run there."""
        node, kind = self.objects.get(message.get("id")), message.get("kind")
        if not isinstance(node, nn.Module) or kind not in HOOK_FIELDS:
            raise protocol.WireError("unknown module")
        given = message.get("given") if isinstance(message.get("given"), list) else []
        tensors = protocol.tensors_in(hooked_inputs(kind, values))
        known = {id(t): _WorkerRef(wid) for t, wid in zip(tensors, given) if type(wid) is int}
        return {"result": same_objects(run_hooks(node, kind, values), known)}

    def _update_relays(self, kinds_by_id: dict) -> None:
        """Hooks student code put on a stub also run when the test calls the grader's module itself."""
        for key, kinds in kinds_by_id.items():
            if not str(key).isdigit() or not isinstance(kinds, list):
                continue
            gid = int(key)
            module = self.objects.get(gid)
            if not isinstance(module, nn.Module):
                continue
            wanted = tuple(bool(k) for k in kinds[:len(HOOK_FIELDS)])
            current = self.relays.get(gid)
            if current is not None and current[0] == wanted:
                continue
            if current is not None:
                for handle in current[1]:
                    handle.remove()
                del self.relays[gid]
            if any(wanted):
                self.relays[gid] = (wanted, register_relays(module, wanted, lambda kind: self._relay(gid, kind)))

    def _relay(self, gid: int, kind: str):
        """A hook on the grader's module `gid` that runs the stub's hooks of `kind` in the worker
        (unless the worker itself is calling the module: there its own call runs them)."""
        def relay(module, *hook_args):
            if gid in self.in_callback:
                return None
            return self._run_stub_hooks(module, kind, hook_values(kind, hook_args))
        return relay

    def _run_stub_hooks(self, module, kind: str, values: dict):
        encoder = self._encoder()
        self._current_encoder = encoder
        given = [self._gid(t) for t in protocol.tensors_in(hooked_inputs(kind, values))]
        with torch.no_grad():
            body = {k: encoder.value(v) for k, v in dict(values, target=module).items()}
        return self._send_encoded({"op": "run_hooks", "kind": kind, "given": given}, body, encoder,
                                  grad=True)["result"]

    def substituted(self, module: str, replacements: dict):
        @contextlib.contextmanager
        def context():
            self.import_module(module)
            self._current_encoder = self._encoder()
            self.transact({"op": "substitute", "module": module}, {"names": replacements},
                          encoder=self._current_encoder)
            try:
                yield
            finally:
                if self.worker is not None:
                    with contextlib.suppress(Exception):
                        self.transact({"op": "restore"})
        return context()


class _WorkerRef:
    def __init__(self, wid: int):
        self.wid = wid


def _to_device(t: torch.Tensor, device: str) -> torch.Tensor:
    if device.startswith("cuda") and torch.cuda.is_available():
        return t.to(device)
    return t


# ---------------------------------------------------------------------------------------------
# what tests see

class RemoteModuleView:
    """`student.model`: names are looked up in the worker; callables come back wrapped for messages."""

    def __init__(self, sandbox: Sandbox, name: str, record: bool):
        self._sandbox, self._name, self._record = sandbox, name, record

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        obj = self._sandbox.name(self._name, name)
        if callable(obj):
            return adapter.StudentCallable(name, obj, self._record, self._name)
        return obj


class RemoteSubmission:
    """The student's submission, run in a sandboxed worker; used like adapter.Submission."""

    def __init__(self, directory, limits: dict | None = None, zygote: Zygote | None = None, stand_ins=None,
                 preload: list[str] | tuple[str, ...] = ()):
        self.directory = pathlib.Path(directory).resolve()
        self.sandbox = Sandbox(self.directory, limits, zygote, stand_ins, preload)

    def __repr__(self) -> str:
        return f"RemoteSubmission({str(self.directory)!r})"

    def substituted(self, module_name: str, replacements: dict):
        return self.sandbox.substituted(module_name, replacements)

    def __getattr__(self, name: str) -> RemoteModuleView:
        if name.startswith("_"):
            raise AttributeError(name)
        return RemoteModuleView(self.sandbox, name, True)
