"""Student code in another process: the grader's side of the sandbox (the worker's is server.py).

With `--sandbox`, the `student` fixture is a `RemoteSubmission`: tests use it exactly as
the in-process `Submission` (`student.model.Block(...)`, `call(block, x)`), but student
code runs in a worker process that

- runs as an unprivileged user when the grader is root (its own user, else `nobody`),
  with limits on memory, CPU time, processes, open files and file size;
- sees a copy of the submission and of the worker's own code, the system and the Python
  packages, and, where the kernel lets root make a mount namespace, nothing else (process.py);
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

Messages are protocol.py's typed requests and answers; what both sides do alike (hook replay,
the backward bridge, module-tree encoding) is common.py. Round trips saved: Reset, Substitute
and Restore ride along with the next request; a function or class looked up by name is asked
for once, until the worker says its name changed. `SandboxClient.traffic` counts what crossed
(`grade --verbose` prints it).
"""
from __future__ import annotations

import collections
import contextlib
import functools
import pathlib
import sys

import torch
import torch.nn as nn
from torch.utils._pytree import tree_flatten, tree_unflatten

from ..kit import adapter, inplace, messages
from . import protocol
from .process import SandboxUnavailable, WorkerProcess, Zygote
from ..kit.checks import GradingFailure
from .common import (HOOK_FIELDS, RemoteCall, backward_kept, decode_tensors, encode_tensors, hook_kinds,
                     outputs_of, plain_attributes, register_relays, relay_request, serve_hooks)

from .process import DEFAULT_LIMITS


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

    def __describe__(self) -> str:
        """How failure messages name it (adapter.describe): as the function it stands for."""
        return self.__name__


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

    def __describe__(self) -> str:
        """How failure messages name it (adapter.describe): by the type of the object it stands
        for (a `Generator` made by the student's code, not a `RemoteObject`)."""
        return self._name


class _Shared:
    """A list given to student code: changes made there are copied back into it."""

    def __init__(self, items: list):
        self.items = items


CONTAINERS = (nn.ModuleList, nn.Sequential, nn.ModuleDict)


def by_value(obj, encoder: protocol.Encoder) -> dict | None:
    """A Hugging Face model, fast tokenizer, `TrainingArguments` or `EvalPrediction`, as what the
    worker needs to build a copy of it.

    These are handed to student code by value, not as stubs: student code calls many of their
    methods (`tokenizer(...)`, `convert_ids_to_tokens`, `model.embeddings.word_embeddings`,
    `set_attn_implementation`) or gives them to `Trainer`, which reads every field, and a copy
    has them all. What student code does to the copy (eval(), another attention implementation)
    stays in the worker.
    """
    if "transformers" not in sys.modules:
        return None
    import transformers

    cls = type(obj)
    if isinstance(obj, transformers.PreTrainedModel) and getattr(transformers, cls.__name__, None) is cls:
        return {"type": "hf_model", "cls": cls.__name__, "config": obj.config.to_json_string(use_diff=False),
                "attn": obj.config._attn_implementation, "training": obj.training,
                "state": encoder.value(dict(obj.state_dict()))}
    if isinstance(obj, transformers.TrainingArguments) and getattr(transformers, cls.__name__, None) is cls:
        return {"type": "hf_args", "cls": cls.__name__, "kwargs": encoder.value(obj.to_dict())}
    if type(obj) is transformers.EvalPrediction:
        return {"type": "hf_eval_prediction", "items": encoder.value(tuple(obj))}
    if isinstance(obj, transformers.PreTrainedTokenizerFast) and getattr(transformers, cls.__name__, None) is cls:
        kwargs = {k: v for k, v in obj.special_tokens_map.items() if isinstance(v, str)}
        kwargs.update(model_max_length=obj.model_max_length, padding_side=obj.padding_side,
                      truncation_side=obj.truncation_side)
        return {"type": "hf_tokenizer", "cls": cls.__name__, "json": obj.backend_tokenizer.to_str(),
                "kwargs": encoder.value(kwargs)}
    return None


class SandboxClient:
    """The test process's side of the conversation with one worker at a time (restarted after a
    crash): sends requests (protocol.TO_WORKER), serves the worker's callbacks (protocol.FROM_WORKER)."""

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
        self.closures: dict[str, set[str]] = {}  # module -> it and the sibling files it imports
        self.rng_synced: torch.Tensor | None = None  # the worker's random state, as of the last call
        self.import_crashes: dict[str, str] = {}  # modules whose import killed a worker: the message
        self.stand_ins = stand_ins               # grading: module name -> the reference's names, or None
        self.stood_in: set[tuple[int, str]] = set()  # (epoch, module) replaced by a stand-in in that worker
        self.preparing: set[str] = set()
        self.kept: dict[int, object] = {}        # grader objects of the stand-ins, by id (never forgotten)
        self.queued: list[tuple[int, protocol.Request]] = []  # (epoch, request) to ride along with the next
        self.named: dict[tuple[str, str], tuple[int, object]] = {}  # (module, name) -> (epoch, function or class)
        self.unbound: set[tuple[str, str]] = set()  # names the worker said were rebound
        self.described: set[int] = set()        # grader modules the worker has a stub of, by id
        self.traffic = collections.Counter()     # messages sent and received, by op (`--verbose` prints it)

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

    def messages(self) -> int:
        """How many messages went either way so far."""
        return sum(n for k, n in self.traffic.items() if k.startswith(("sent ", "received ")))

    def traffic_report(self) -> str:
        """What crossed, for instructors (`grade --verbose`): messages by op, requests that rode along
        with another, names asked for no more, tensor bytes sent by op."""
        def part(prefix: str) -> str:
            found = {k.removeprefix(prefix): n for k, n in self.traffic.most_common() if k.startswith(prefix)}
            return f"{sum(found.values())} ({', '.join(f'{k} {n}' for k, n in found.items())})"
        return (f"sandbox messages: {self.messages()} (sent {part('sent ')}, received {part('received ')}); "
                f"requests that rode along: {part('rode along ')}; names known: {self.traffic['names known']}; "
                f"grader modules described: {self.traffic['modules described']}; "
                f"tensor bytes sent: {part('bytes ')}")

    def _forget(self) -> None:
        for _, handles in self.relays.values():
            for handle in handles:
                handle.remove()
        self.objects.clear(), self.gids.clear(), self.graphs.clear(), self.mirrors.clear()
        self.shared.clear(), self.relays.clear(), self.in_callback.clear(), self.described.clear()

    def reset(self) -> None:
        """Between tests: forget this test's objects (the worker keeps its imported modules)."""
        self.violations = []
        if self.dirty and self.worker is not None:
            self.dirty = False
            self._queue(protocol.Reset())
        self._forget()

    # ---- messages ----------------------------------------------------------------------------

    def _receive(self):
        try:
            return protocol.receive(self.worker.from_worker, self.worker.pidfd)
        except EOFError:
            raise WorkerCrash(self.worker.exit_description()) from None
        except protocol.WireError as exc:
            raise WorkerCrash(f"it sent a malformed message ({exc})") from None

    def _encoder(self) -> _Encoder:
        self._current_encoder = _Encoder(on_object=self._export)
        return self._current_encoder

    def _sent(self, encoder: _Encoder) -> None:
        """A message went: the worker now has stubs for the grader modules it described."""
        self.described.update(getattr(encoder, "described", ()))

    def _decoder(self, blobs, grad: bool = True) -> protocol.Decoder:
        self._current_decoder = protocol.Decoder(blobs, on_ref=self._import, on_device=_to_device, grad=grad)
        return self._current_decoder

    def __deepcopy__(self, memo):
        return self  # a copied mirror still names the same worker object

    def __copy__(self):
        return self

    def transact(self, request: protocol.Request, encoder: protocol.Encoder | None = None, grad: bool = True) -> dict:
        """Send a request (its values still to encode); serve the worker's callbacks until its answer
        comes; return the answer's values."""
        encoder = encoder or self._encoder()
        request.values = {k: encoder.value(v) for k, v in request.values.items()}
        return self._send_encoded(request, encoder, grad)

    def _absorb(self, message: protocol.FromWorker, decoder: protocol.Decoder) -> None:
        """What rides along with each of the worker's messages: changed lists, the kinds of hooks on
        its stubs, the forbidden calls it saw."""
        for gid, items in message.shared.items():
            target = self.shared.get(int(gid)) if str(gid).isdigit() else None
            if target is not None:
                target[:] = decoder.value(items)
        self._update_relays(message.stub_hooks)
        for pair in message.unbound:
            if isinstance(pair, list) and len(pair) == 2:
                self.named.pop((str(pair[0]), str(pair[1])), None)
                self.unbound.add((str(pair[0]), str(pair[1])))
        for text in message.violations[:5]:
            if isinstance(text, str) and text not in self.violations:
                self.violations.append(text[:500])

    def _answer(self, message: protocol.WorkerAnswer, blobs, grad: bool) -> dict:
        dropped = message.dropped
        self._print_output(dropped if type(dropped) is int and dropped > 0 else 0)
        decoder = self._decoder(blobs, grad)
        self._absorb(message, decoder)
        if message.error is not None:
            self.described.clear()  # the request may have failed before the worker read them all
            raise self._error(message.error)
        return {k: decoder.value(v) for k, v in message.values.items()}

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
            gid = self._gid(obj)
            if gid in self.described:  # the worker has its stub (the description would go unread)
                return {"T": "ref", "home": "grader", "type": "module", "id": gid}
            self._current_encoder.described.append(gid)
            self.traffic["modules described"] += 1
            return {"T": "ref", "home": "grader", "type": "module", "id": gid, "desc": self._stub_desc(obj)}
        if callable(obj):
            return {"T": "ref", "home": "grader", "type": "function", "id": self._gid(obj),
                    "name": str(getattr(obj, "__name__", type(obj).__name__))}
        raise protocol.WireError(f"a {type(obj).__name__} cannot be given to student code")

    def _stub_desc(self, module: nn.Module) -> dict:
        names = dict.fromkeys([*vars(module), *(n for n in dir(type(module)) if not hasattr(nn.Module, n))])
        names = [n for n in names if not n.startswith("_") and n != "training"]
        attrs = plain_attributes(self._current_encoder, ((n, getattr(module, n, None)) for n in names))
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
        for kind, table in decode_tensors(desc, self._current_decoder, tensors, path).items():
            (module._parameters if kind == "params" else module._buffers).update(table)
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
        state = {"id": ref[1], "training": module.training, **encode_tensors(module, encoder, seen, path),
                 "children": {}}
        if type(module).__module__.startswith("torch.nn."):
            state["attrs"] = plain_attributes(encoder, ((name, value) for name, value in vars(module).items()
                                                        if not name.startswith("_") and name != "training"))
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
        """The test's context for a call in the worker (protocol.CallContext's fields)."""
        from ..kit import torchkit

        device = torchkit.active_strict_device()
        return {"grad_mode": torch.is_grad_enabled(), "forbidden": self.forbidden or None,
                "device": None if device is None else str(device)}

    def _run(self, request: protocol.CallContext, values: dict, state_of: nn.Module | None = None):
        """Run a call in the worker, in the test's context, with autograd through it when the test
        records gradients and some input (a weight of `state_of`, say) requires grad."""
        encoder = self._encoder()
        self._current_encoder = encoder
        state = torch.get_rng_state()
        if self.rng_synced is None or not torch.equal(state, self.rng_synced):
            values = dict(values, rng=state)  # the worker's random state is behind the grader's
        values["args"] = tuple(_Shared(a) if type(a) is list else a for a in values.get("args", ()))
        for name, value in self._context().items():
            setattr(request, name, value)
        if state_of is not None:
            request.state = self._state(state_of, encoder, {}, "", True)
        request.values = {k: encoder.value(v) for k, v in values.items()}  # encodes leaves in order
        leaves = list(encoder.leaves)
        request.grad = request.grad_mode and bool(leaves)  # the graph is kept when autograd must go through
        epoch = self.epoch

        def send() -> dict:
            answer = self._send_encoded(request, encoder, grad=not request.grad)
            self._copy_back(values.get("args", ()), answer.get("changed"))
            rng = answer.get("rng")
            if isinstance(rng, torch.Tensor) and rng.dtype == torch.uint8 and rng.shape == state.shape:
                torch.set_rng_state(rng)
                self.rng_synced = rng
            else:
                self.rng_synced = state
            return answer

        if not request.grad:
            return send()["result"]

        def send_backward(graph, grads: list) -> dict:
            if epoch != self.epoch:
                raise WorkerCrash(messages.WORKER_LOST)
            return self.transact(protocol.Backward(graph=graph, epoch=epoch, values={"grads": grads})).get("grads")

        return RemoteCall(leaves, send, send_backward, malformed=WorkerCrash)()

    @staticmethod
    def _copy_back(args: tuple, changed) -> None:
        """Inputs student code changed in place change here too, as they would in one process."""
        for index, value in (changed if isinstance(changed, dict) else {}).items():
            original = args[index] if isinstance(index, int) and 0 <= index < len(args) else None
            if isinstance(original, torch.Tensor) and isinstance(value, torch.Tensor) \
                    and value.shape == original.shape and original.device.type != "meta":
                with torch.no_grad():
                    original.copy_(value.to(original.dtype))
            elif inplace.tracked(original):
                inplace.apply(original, value)

    def _queue(self, request: protocol.Request) -> None:
        """Send a request that needs no answer (protocol.RIDES_ALONG) with the next one, to this worker."""
        self.queued.append((self.epoch, request))

    def _ride_along(self, request: protocol.Request, encoder: protocol.Encoder) -> None:
        """Put the queued requests for this worker in `request.before`, their values encoded by `encoder`."""
        queued = [r for epoch, r in self.queued if epoch == self.epoch]  # another worker's died with it
        self.queued.clear()
        self._current_encoder = encoder
        for ridden in queued:
            ridden.values = {k: encoder.value(v) for k, v in ridden.values.items()}
            self.traffic["rode along " + ridden.op] += 1
        request.before = [r.header() for r in queued] or None

    def _send_encoded(self, request: protocol.Request, encoder: protocol.Encoder, grad: bool) -> dict:
        """Send a request whose values are encoded (by `encoder`), with the queued requests riding
        along; serve the worker's callbacks until its answer comes (decoded with autograd leaves
        when `grad`)."""
        self._ensure_ready()
        self.dirty = True
        try:
            self._ride_along(request, encoder)
            protocol.send_message(self.worker.to_worker, request, encoder.blobs)
            self._sent(encoder)
            self.traffic["sent " + request.op] += 1
            sent = sum(map(len, encoder.blobs))
            if sent:
                self.traffic["bytes " + request.op + (" with state" if getattr(request, "state", None) else "")] += sent
            while True:
                header, blobs = self._receive()
                message = protocol.parse(header, to_worker=False)
                self.traffic["received " + (message.op or "answer")] += 1
                if isinstance(message, protocol.WorkerAnswer):
                    return self._answer(message, blobs, grad)
                self._serve(message, blobs)
        except BaseException as exc:
            if isinstance(exc, (RemoteError, GradingFailure, adapter.SubmissionError)):
                raise
            self._print_output()
            how = self.worker.exit_description() if isinstance(exc, OSError) and self.worker else "it stopped answering"
            if isinstance(exc, protocol.WireError):
                how = f"it sent a malformed message ({exc})"
            self.stop()
            if isinstance(exc, (OSError, protocol.WireError)):
                raise WorkerCrash(how) from None
            raise

    def call_remote(self, wid: int, epoch: int, args: tuple, kwargs: dict):
        if epoch != self.epoch:
            raise WorkerCrash(messages.WORKER_LOST)
        return self._run(protocol.Call(), {"target": _WorkerRef(wid), "args": args, "kwargs": kwargs})

    def call_method(self, obj: RemoteObject, name: str, args: tuple, kwargs: dict):
        if obj._epoch != self.epoch:
            raise WorkerCrash(messages.WORKER_LOST)
        return self._run(protocol.Method(name=name), {"target": obj, "args": args, "kwargs": kwargs})

    def forward(self, module: RemoteModule, args: tuple, kwargs: dict):
        return self._run(protocol.Call(), {"target": module, "args": args, "kwargs": kwargs}, state_of=module)

    def import_module(self, module: str) -> None:
        """Import `module` of the submission in the worker, once per worker.

        A module whose import kills the worker (os._exit, a segfault at top level) or runs
        out of time is remembered: later tests fail at once instead of starting a worker
        each. In grading, the sibling files `module` imports are imported first, and one that
        cannot be is replaced there by a stand-in for the reference's (`_stand_in`)."""
        if module in self.import_crashes:
            raise adapter.StudentImportError(self.import_crashes[module])
        self._isolate(module)
        if module in self.imported:
            return
        if self.stand_ins is not None:
            self._prepare_siblings(module)
        try:
            self.transact(protocol.Import(module=module))
        except adapter.StudentImportError as exc:
            raise adapter.StudentImportError(self._noted(module, str(exc))) from None
        except WorkerCrash as exc:
            # The worker dies with a zygote the import killed, often before it answers: then it is the kill.
            error = messages.ZYGOTE_KILLED if self._zygote_dead() else messages.IMPORT_CRASH.format(how=exc)
            failed = messages.IMPORT_FAILED.format(file=f"{module}.py", error=error)
            self.import_crashes[module] = self._noted(module, failed)
            raise adapter.StudentImportError(self.import_crashes[module]) from None
        except BaseException as exc:  # pytest-timeout's failure; the worker was stopped on the way
            seconds = adapter.timeout_seconds(exc)
            if seconds is None:
                raise
            self.import_crashes[module] = self._noted(
                module, messages.IMPORT_TIMEOUT.format(file=f"{module}.py", seconds=seconds))
            raise adapter.StudentImportError(self.import_crashes[module], timed_out=True) from None
        if self._zygote_dead():
            # The import killed the zygote (the worker runs as its user), and the worker dies with it:
            # charged to the file as a crash at import, so that the file's other tests do not each
            # pay a new zygote (an import of torch) to crash again.
            self.stop()
            failed = messages.IMPORT_FAILED.format(file=f"{module}.py", error=messages.ZYGOTE_KILLED)
            self.import_crashes[module] = self._noted(module, failed)
            raise adapter.StudentImportError(self.import_crashes[module])
        self.imported.add(module)

    def _zygote_dead(self) -> bool:
        return self.zygote is not None and not self.zygote.alive()

    def _isolate(self, module: str) -> None:
        """At a test's first use of the worker: a worker that imported files `module` does not import
        is replaced by a fresh fork. What another file's top level left behind in it (a gc callback,
        a thread, a patched torch function) then costs that file's problems only, whatever the
        tests' order. Not when the test has queued a request for the worker (a Substitute)."""
        if self.dirty or self.worker is None or self.imported <= self._closure(module) \
                or any(not isinstance(r, (protocol.Reset, protocol.Restore)) for _, r in self.queued):
            return
        self.traffic["fresh workers for another file"] += 1
        self.stop()

    def _closure(self, module: str) -> set[str]:
        """`module` and the sibling files it imports, directly or not (read from their syntax trees)."""
        closure = self.closures.get(module)
        if closure is None:
            siblings = {path.stem for path in self.submission.glob("*.py")}
            closure, todo = set(), [module]
            while todo:
                name = todo.pop()
                if name not in closure:
                    closure.add(name)
                    path = self.submission / f"{name}.py"
                    todo.extend(adapter.sibling_imports(path, siblings) if path.is_file() else ())
            self.closures[module] = closure
        return closure

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
        self.transact(protocol.StandIn(module=module, values={"names": names}))
        for obj in names.values():  # kept past the end of this test, unlike other objects handed over
            gid = self.gids.get(id(obj))
            if gid is not None:
                self.kept[gid] = obj
        self.stood_in.add((self.epoch, module))

    def name(self, module: str, name: str):
        """`module.name` of the submission. A function or class is asked for once: the worker says
        when the name comes to name something else (protocol.Name)."""
        self.import_module(module)
        epoch, known = self.named.get((module, name), (None, None))
        substituted = any(e == self.epoch and isinstance(r, protocol.Substitute) and r.module == module
                          and name in r.values.get("names", ()) for e, r in self.queued)
        if epoch == self.epoch and not substituted:  # (a Substitute waiting to ride along changes the name)
            self.traffic["names known"] += 1
            return known
        self.named.pop((module, name), None)
        self.unbound.discard((module, name))
        self._current_encoder = self._encoder()
        value = self.transact(protocol.Name(module=module, name=name))["value"]
        if isinstance(value, (RemoteFunction, _RemoteClassMeta)) and (module, name) not in self.unbound:
            self.named[module, name] = (self.epoch, value)  # until the worker says the name is unbound
        return value

    def kit_function(self, module: str, name: str) -> RemoteFunction:
        """The worker's `autograder.kit.<module>.<name>` (one the module lists in RUNS_IN_WORKER)."""
        self._ensure_ready()
        self._current_encoder = self._encoder()
        return self.transact(protocol.KitName(module=module, name=name))["value"]

    # ---- the worker's requests ---------------------------------------------------------------

    def _serve(self, message: protocol.Request, blobs) -> None:
        """Serve one of the worker's requests (a callback); what the grader's object raises goes back."""
        try:
            decoder = self._decoder(blobs)
            self._absorb(message, decoder)
            values = {k: decoder.value(v) for k, v in message.values.items()}
            if isinstance(message, protocol.Callback):
                answer = self._serve_call(message, values, decoder.leaves)
            elif isinstance(message, protocol.CallbackBackward):
                answer = self._serve_backward(message, values)
            elif isinstance(message, protocol.Hook):
                answer = self._serve_hook(message, values)
            else:
                raise protocol.WireError(f"unknown request {message.op!r}")
        except (protocol.WireError, WorkerCrash):
            raise
        except Exception as exc:  # noqa: BLE001 - the grader's object raised on the student's input
            text = "".join(__import__("traceback").format_exception_only(type(exc), exc)).strip()
            self._reply(protocol.Answer(error=f"the grader's object raised {text[:1000]}"))
            return
        self._reply(protocol.Answer(ok=True, values=answer))

    def _reply(self, answer: protocol.Answer) -> None:
        encoder = self._encoder()
        answer.values = {k: encoder.value(v) for k, v in answer.values.items()}
        protocol.send_message(self.worker.to_worker, answer, encoder.blobs)
        self._sent(encoder)
        self.traffic["sent answer"] += 1

    def _serve_call(self, message: protocol.Callback, values: dict, leaves: dict) -> dict:
        target = self.objects.get(message.id, self.kept.get(message.id))
        if target is None:
            raise protocol.WireError("unknown grader object")
        self.in_callback.add(message.id)
        try:  # in student code's grad mode ("records no gradients" is graded by what a spy model sees)
            with torch.set_grad_enabled(message.grad or bool(message.grad_mode)):
                result = target(*values.get("args", ()), **values.get("kwargs", {}))
        finally:
            self.in_callback.discard(message.id)
        if not message.grad:  # no graph goes back: the answer is plain values, as before
            flat, spec = tree_flatten(result)
            return {"result": tree_unflatten([t.detach() if isinstance(t, torch.Tensor) else t for t in flat], spec)}
        outputs = outputs_of(result)
        token = self.next_gid
        self.next_gid += 1
        self.graphs[token] = (outputs, leaves, message.id)
        return {"result": result, "graph": token, "rg": [o.requires_grad for o in outputs]}

    def _serve_backward(self, message: protocol.CallbackBackward, values: dict) -> dict:
        outputs, leaves, gid = self.graphs.get(message.graph, (None, None, None))
        if outputs is None:
            raise protocol.WireError("unknown graph")
        self.in_callback.add(gid)  # the stub's backward hooks run in the worker, around this call
        try:
            return {"grads": backward_kept(outputs, leaves, values.get("grads"))}
        finally:
            self.in_callback.discard(gid)

    def _serve_hook(self, message: protocol.Hook, values: dict) -> dict:
        """Run the grader's hooks on its mirror of a worker module, for a forward (or backward) run there."""
        return serve_hooks(self.objects.get(message.id), message.kind, values, message.given, _WorkerRef)

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
                self.relays[gid] = (wanted, register_relays(module, wanted, functools.partial(self._relay, gid)))

    def _relay(self, gid: int, kind: str):
        """A hook on the grader's module `gid` that runs the stub's hooks of `kind` in the worker
        (unless the worker itself is calling the module: there its own call runs them)."""
        def relay(module, *hook_args):
            if gid in self.in_callback:
                return None
            return self._run_stub_hooks(module, kind, hook_args)
        return relay

    def _run_stub_hooks(self, module, kind: str, hook_args: tuple):
        encoder = self._encoder()
        self._current_encoder = encoder
        values, given = relay_request(kind, hook_args, self._gid)
        with torch.no_grad():
            request = protocol.RunHooks(kind=kind, given=given, values=dict(values, target=module))
            request.values = {k: encoder.value(v) for k, v in request.values.items()}
        return self._send_encoded(request, encoder, grad=True)["result"]

    def substituted(self, module: str, replacements: dict):
        @contextlib.contextmanager
        def context():
            self.import_module(module)
            self._current_encoder = self._encoder()
            self._queue(protocol.Substitute(module=module, values={"names": replacements}))
            try:
                yield
            finally:
                self._queue(protocol.Restore())
        return context()


class _Encoder(protocol.Encoder):
    """An encoder that notes the grader modules it described to the worker."""

    def __init__(self, on_object=None):
        super().__init__(on_object)
        self.described: list[int] = []


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

    def __init__(self, sandbox: SandboxClient, name: str, record: bool):
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
        self.sandbox = SandboxClient(self.directory, limits, zygote, stand_ins, preload)

    def __repr__(self) -> str:
        return f"RemoteSubmission({str(self.directory)!r})"

    def substituted(self, module_name: str, replacements: dict):
        return self.sandbox.substituted(module_name, replacements)

    def kit_function(self, module: str, name: str):
        """adapter.Submission.kit_function, run in the worker: one call for the whole loop. When it
        does not return (a timeout, a crash, an exception), the failure names it as the last call into
        student code: the calls of student code it made are not seen here, and the last one seen may
        have returned long before (a forward on a slow student model timed out the grader's training
        loop, named as `SelfAttention.forward(int64[1000, 10])`, the model's first call)."""
        remote = self.sandbox.kit_function(module, name)

        def run(*args, **kwargs):
            try:
                return remote(*args, **kwargs)
            except BaseException:
                adapter.record_loop_call(name, args[:1], messages.KIT_CALL)
                raise

        return adapter.StudentCallable(name, run, None, module)

    def __getattr__(self, name: str) -> RemoteModuleView:
        if name.startswith("_"):
            raise AttributeError(name)
        return RemoteModuleView(self.sandbox, name, True)
