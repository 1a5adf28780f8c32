"""The sandboxed worker: the only process that runs student code during grading.

Started by the grader's test process (see client.py and process.py) as an unprivileged user, with
resource limits, in a folder that holds a copy of the submission and of this package,
and nothing else of the grader's. It answers requests over two pipes, in protocol.py's plain
format: import a module, look up a name, call a function, construct a class, run a
module's forward on the state (weights, buffers, train mode, replaced children) the
grader sends, run backward on a kept graph. Objects stay here and are named by id; what
goes back is plain data and module *descriptions* (class name, parameters, buffers, plain
attributes, children), from which the grader builds a mirror.

Objects of the grader handed to student code (a model for `greedy_decode`, a module to
hook, a reference sub-module put in place of the student's) become stubs here whose
calls go back to the grader; lists handed in (a hook's `storage`) are sent back when
they change. Nothing here is trusted: the grader checks everything it receives.
"""
from __future__ import annotations

import collections
import contextlib
import importlib
import io
import json
import os
import sys

import torch
import torch.nn as nn

from ..kit import adapter, inplace
from . import protocol
from .common import (HOOK_FIELDS, MODULE_INTERNALS, RemoteCall, backward_kept, decode_attributes, decode_tensors,
                     encode_tensors, hook_kinds, is_torch_class, outputs_of, plain_attributes, register_relays,
                     relay_request, serve_hooks)
from ..kit.checks import GradingFailure
from ..kit.torchkit import DeviceCheckMode, DeviceMismatch, ForbiddenCalls, warm_up

KEPT_GRAPHS = 8          # forward graphs kept for a later backward
MESSAGE_LIMIT = 2000     # characters of an exception's message sent back


class GraderRef:
    """An object of the grader's (a tensor it sent), named by its id there."""

    def __init__(self, gid: int):
        self.gid = gid


class Stub(nn.Module):
    """A module of the grader's, seen from student code: calling it calls the grader."""

    def __init__(self, server: "RequestServer", gid: int, desc: dict):
        super().__init__()
        self._server, self._gid = server, gid
        self.training = bool(desc.get("training", False))
        for name, value in (desc.get("attrs") or {}).items():
            if isinstance(name, str) and not hasattr(nn.Module, name):
                object.__setattr__(self, name, value)

    def forward(self, *args, **kwargs):
        return self._server.callback(self._gid, args, kwargs)


class StubFunction:
    """A function or class of the grader's (e.g. the reference's, put in the student's module
    by an `isolate` marker): calling it calls the grader."""

    def __init__(self, server: "RequestServer", gid: int, name: str):
        self._server, self._gid, self.__name__ = server, gid, name

    def __call__(self, *args, **kwargs):
        return self._server.callback(self._gid, args, kwargs)


class RequestServer:
    """The worker's side of the conversation: serves the grader's requests (protocol.TO_WORKER)
    on the objects it keeps, and sends the grader requests of its own (callbacks) on the way."""

    def __init__(self, in_fd: int, out_fd: int, submission: str):
        self.in_fd, self.out_fd = in_fd, out_fd
        self.submission = adapter.Submission(submission, record_calls=None)
        self.directory = self.submission.directory
        self.objects: dict[int, object] = {}
        self.ids: dict[int, int] = {}
        self.stubs: dict[int, object] = {}
        self.shared: dict[int, tuple[list, tuple]] = {}
        self.graphs: collections.OrderedDict[int, tuple] = collections.OrderedDict()
        self.relays: dict[int, list] = {}
        self.next_id = 1
        self.guard: ForbiddenCalls | None = None
        self.violations: list[str] = []
        self.substitutions: list = []
        self.named: dict[tuple[str, str], tuple] = {}  # (module, name) -> (module, function or class): kept past Reset

    # ---- values in and out -------------------------------------------------------------------

    def export(self, obj) -> dict:
        """A reference to an object that stays here (or, for a stub, back to the grader's)."""
        if isinstance(obj, (Stub, StubFunction)):
            return {"T": "ref", "home": "grader", "id": obj._gid}
        if isinstance(obj, GraderRef):
            return {"T": "ref", "home": "grader", "id": obj.gid}
        if type(obj).__name__ == "EvalPrediction" and type(obj).__module__.startswith("transformers."):
            return self._encoder.value(tuple(obj))  # what `Trainer` gives compute_metrics: plain arrays
        wid = self._register(obj)
        kind = ("module" if isinstance(obj, nn.Module) else "class" if isinstance(obj, type)
                else "function" if callable(obj) else "object")
        ref = {"T": "ref", "home": "worker", "id": wid, "type": kind,
               "name": str(getattr(obj, "__name__", type(obj).__name__))[:200]}
        if kind == "class":
            ref["key"] = f"{obj.__module__}.{obj.__qualname__}"[:200]
        if kind == "module":
            ref["desc"] = self.describe(obj)
        return ref

    def _register(self, obj) -> int:
        wid = self.ids.get(id(obj))
        if wid is None:
            wid, self.next_id = self.next_id, self.next_id + 1
            self.objects[wid], self.ids[id(obj)] = obj, wid
        return wid

    def describe(self, module: nn.Module, encoder=None, seen=None, path="") -> dict:
        """What the grader needs to mirror `module`: class, parameters, buffers, attributes, children."""
        encoder = encoder or self._encoder
        seen = {} if seen is None else seen
        if isinstance(module, Stub):
            return {"home": "grader", "id": module._gid}
        cls = type(module)
        attributes = [n for n in vars(module) if n not in MODULE_INTERNALS]
        attrs = plain_attributes(encoder, ((n, vars(module)[n]) for n in attributes))
        torch_class = is_torch_class(cls) and len(attrs) == len(attributes)
        if not torch_class:
            attrs = {n: v for n, v in attrs.items() if not n.startswith("_")}
        desc = {"home": "worker", "id": self._register(module), "training": bool(module.training),
                "cls": cls.__name__[:200], "key": f"{cls.__module__}.{cls.__qualname__}"[:200],
                "torch": torch_class, **encode_tensors(module, encoder, seen, path), "children": {},
                "nonpersistent": sorted(module._non_persistent_buffers_set), "attrs": attrs}
        for name, child in module._modules.items():
            desc["children"][name] = None if child is None else self.describe(child, encoder, seen, f"{path}{name}.")
        return desc

    def resolve(self, ref: dict):
        gid, home = ref["id"], ref.get("home")
        if home == "worker":
            if gid not in self.objects:
                raise protocol.WireError("unknown object")
            return self.objects[gid]
        if ref.get("type") == "list":
            items = self._decoder_for_refs.value(ref.get("items"))
            if not isinstance(items, list):
                raise protocol.WireError("malformed list")
            self.shared[gid] = (items, self._fingerprint(items))
            return items
        if ref.get("type") in ("hf_model", "hf_tokenizer", "hf_args", "hf_eval_prediction"):
            return self._build_copy(ref)
        if gid not in self.stubs:
            if ref.get("type") == "module":
                if not isinstance(ref.get("desc"), dict):  # described once, the first time it is handed over
                    raise protocol.WireError("a grader module handed over without its description")
                self.stubs[gid] = self._build_stub(gid, ref["desc"])
            else:
                self.stubs[gid] = StubFunction(self, gid, str(ref.get("name", "function")))
        return self.stubs[gid]

    def _build_copy(self, ref: dict):
        """A fresh copy of a Hugging Face model, tokenizer, `TrainingArguments` or `EvalPrediction`
        the grader handed over by value."""
        import transformers

        if ref["type"] == "hf_eval_prediction":
            items = self._decoder_for_refs.value(ref.get("items"))
            if not (isinstance(items, tuple) and 2 <= len(items) <= 4):
                raise protocol.WireError("malformed EvalPrediction")
            return transformers.EvalPrediction(*items)
        cls = getattr(transformers, str(ref.get("cls")), None)
        if ref["type"] == "hf_args":
            kwargs = self._decoder_for_refs.value(ref.get("kwargs"))
            if not (isinstance(cls, type) and issubclass(cls, transformers.TrainingArguments)
                    and isinstance(kwargs, dict) and all(isinstance(k, str) for k in kwargs)):
                raise protocol.WireError("malformed TrainingArguments")
            return cls(**kwargs)
        if ref["type"] == "hf_tokenizer":
            if not (isinstance(cls, type) and issubclass(cls, transformers.PreTrainedTokenizerFast)):
                raise protocol.WireError("not a fast tokenizer class")
            from tokenizers import Tokenizer

            kwargs = self._decoder_for_refs.value(ref.get("kwargs"))
            return cls(tokenizer_object=Tokenizer.from_str(str(ref.get("json"))), **kwargs)
        if not (isinstance(cls, type) and issubclass(cls, transformers.PreTrainedModel)):
            raise protocol.WireError("not a model class")
        config = cls.config_class.from_dict(json.loads(str(ref.get("config"))))
        config._attn_implementation = str(ref.get("attn"))
        model = cls(config)
        model.load_state_dict(self._decoder_for_refs.value(ref.get("state")))
        return model.train(bool(ref.get("training")))

    def _build_stub(self, gid: int, desc: dict) -> nn.Module:
        container = desc.get("container")
        children = desc.get("children") or {}
        if container in ("ModuleList", "Sequential", "ModuleDict"):
            built = {name: self.resolve(child) for name, child in children.items()}
            if container == "ModuleDict":
                return nn.ModuleDict(built)
            if container == "ModuleList":
                return nn.ModuleList(built.values())
            return nn.Sequential(*built.values())
        attrs = decode_attributes(self._decoder_for_refs, desc.get("attrs"))
        stub = Stub(self, gid, dict(desc, attrs=attrs))
        for name, child in children.items():
            stub._modules[name] = self.resolve(child)
        return stub

    @staticmethod
    def _fingerprint(items: list) -> tuple:
        return tuple(id(x) for x in items)

    def _decoder(self, blobs):
        decoder = protocol.Decoder(blobs, on_ref=self.resolve)
        self._decoder_for_refs = decoder
        return decoder

    # ---- the conversation --------------------------------------------------------------------

    def send(self, message: protocol.Message) -> None:
        """Send a message whose `values` are still to be encoded, with what rides along with each
        (protocol.FromWorker): changed lists, the kinds of hooks on stubs, forbidden calls seen."""
        encoder = protocol.Encoder(on_object=self.export)
        self._encoder = encoder
        message.values = {key: encoder.value(value) for key, value in message.values.items()}
        message.shared = {}
        for gid, (items, fingerprint) in list(self.shared.items()):
            now = self._fingerprint(items)
            if now != fingerprint:
                self.shared[gid] = (items, now)
                message.shared[str(gid)] = encoder.value(list(items))
        message.stub_hooks = {str(gid): hook_kinds(s) for gid, s in self.stubs.items() if isinstance(s, nn.Module)}
        message.violations = self.violations[-5:]
        message.unbound = self._unbound()
        for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
            with contextlib.suppress(Exception):  # student code may have put anything there
                stream.flush()
        if isinstance(message, protocol.WorkerAnswer):  # the grader shows what was printed, and how much was cut
            message.dropped = OUTPUT.take_dropped()
        protocol.send_message(self.out_fd, message, encoder.blobs)

    def transact(self, request: protocol.FromWorker) -> dict:
        """Send a request to the grader and serve its requests until the answer comes."""
        self.send(request)
        while True:
            header, blobs = protocol.receive(self.in_fd)
            message = protocol.parse(header, to_worker=True)
            if isinstance(message, protocol.Answer):
                decoded = self._decoder(blobs).value
                if message.error is not None:
                    raise RuntimeError(message.error[:MESSAGE_LIMIT])
                return {k: decoded(v) for k, v in message.values.items()}
            self.serve(message, blobs)

    def callback(self, gid: int, args: tuple, kwargs: dict):
        """Call the grader's object `gid` (autograd goes through, if it is on)."""
        flat = protocol.tensors_in((args, kwargs))
        mode = torch.is_grad_enabled()  # the grader's object runs in student code's grad mode (a spy may check it)
        leaves = [t for t in flat if t.requires_grad] if mode else []
        if not leaves:
            with torch.no_grad():
                return self.transact(protocol.WorkerCallback(id=gid, grad=False, grad_mode=mode,
                                                             values={"args": args, "kwargs": kwargs}))["result"]

        def send() -> dict:
            return self.transact(protocol.WorkerCallback(id=gid, grad=True, values={"args": args, "kwargs": kwargs}))

        def send_backward(graph, grads: list) -> dict:
            return self.transact(protocol.WorkerCallbackBackward(graph=graph, values={"grads": grads}))["grads"]

        return RemoteCall(leaves, send, send_backward)()

    def run(self) -> None:
        self.send(protocol.WorkerAnswer(ok=True, values={"pid": os.getpid()}))
        while True:
            try:
                header, blobs = protocol.receive(self.in_fd)
            except EOFError:
                return
            self.serve(header, blobs)

    def serve(self, message: protocol.Message | dict, blobs: list[bytes]) -> None:
        try:
            if isinstance(message, dict):
                message = protocol.parse(message, to_worker=True)
            values = self.handle(message, blobs)
        except BaseException as exc:  # noqa: BLE001 - everything the student's code raises goes back
            self.send(protocol.WorkerAnswer(error=self.describe_error(exc)))
            return
        try:
            self.send(protocol.WorkerAnswer(ok=True, values=values))
        except BaseException as exc:  # noqa: BLE001 - describing the value ran student code (a hostile __getattribute__)
            self.send(protocol.WorkerAnswer(error=self.describe_error(exc)))

    def describe_error(self, exc: BaseException) -> dict:
        if isinstance(exc, GradingFailure):
            return {"kind": "failure", "summary": exc.summary[:MESSAGE_LIMIT], "details": exc.details[:MESSAGE_LIMIT]}
        if isinstance(exc, DeviceMismatch):
            return {"kind": "failure", "summary": f"Your code mixes devices: {exc}"[:MESSAGE_LIMIT], "details": ""}
        if isinstance(exc, adapter.SubmissionError):
            return {"kind": "submission", "type": type(exc).__name__, "message": str(exc)[:4 * MESSAGE_LIMIT]}
        try:
            message = str(exc)
        except BaseException:  # noqa: BLE001 - a hostile __str__
            message = "(the message could not be shown)"
        return {"kind": "student", "type": type(exc).__name__[:100], "message": message[:MESSAGE_LIMIT],
                "traceback": adapter.format_student_traceback(exc, self.directory)[-4 * MESSAGE_LIMIT:]}

    # ---- requests ----------------------------------------------------------------------------

    def handle(self, message: protocol.Request, blobs: list[bytes]) -> dict:
        """Serve one of the grader's requests; the answer's values."""
        decoder = self._decoder(blobs)
        for header in message.before or ():  # requests that ride along (Reset, Restore, Substitute), first
            ridden = protocol.parse(header, to_worker=True)
            if not isinstance(ridden, protocol.RIDES_ALONG) or ridden.before:
                raise protocol.WireError(f"a {ridden.op!r} request cannot ride along")
            self._serve(ridden, decoder)
        return self._serve(message, decoder)

    def _serve(self, message: protocol.Request, decoder: protocol.Decoder) -> dict:
        serve = getattr(self, f"_serve_{message.op}", None)
        if not isinstance(message, tuple(protocol.TO_WORKER.values())) or serve is None:
            raise protocol.WireError(f"unknown request {message.op!r}")
        return serve(message, {k: decoder.value(v) for k, v in message.values.items()}, decoder)

    def _serve_reset(self, message: protocol.Reset, values: dict, decoder) -> dict:
        """Forget the last test's objects, except the functions and classes the grader looked up by name."""
        named = {id(obj) for _, obj in self.named.values()}
        self.objects = {wid: obj for wid, obj in self.objects.items() if id(obj) in named}
        self.ids = {id(obj): wid for wid, obj in self.objects.items()}
        self.stubs.clear(), self.shared.clear(), self.graphs.clear()
        self.relays.clear()
        self.violations = []
        return {}

    def _serve_import(self, message: protocol.Import, values: dict, decoder) -> dict:
        self.submission.module(message.module)
        return {}

    def _serve_stand_in(self, message: protocol.StandIn, values: dict, decoder) -> dict:
        """Stubs of the grader's reference, for the other files' `import module`."""
        self.submission.use_stand_in(message.module, values["names"])
        return {}

    def _serve_name(self, message: protocol.Name, values: dict, decoder) -> dict:
        module = self.submission.module(message.module)
        if not hasattr(module, message.name):
            raise adapter.ContractError(adapter.messages.MISSING_NAME.format(file=f"{message.module}.py",
                                                                             name=message.name))
        value = getattr(module, message.name)
        if isinstance(value, type) or (callable(value) and not isinstance(value, (nn.Module, Stub, StubFunction))):
            self.named[message.module, message.name] = (module, value)
        return {"value": value}

    def _serve_kit_name(self, message: protocol.KitName, values: dict, decoder) -> dict:
        """A kit function that runs here (kit modules list them in RUNS_IN_WORKER), from the
        worker's copy of the kit: what student code did to that copy is its own business."""
        if not message.module.isidentifier():
            raise protocol.WireError("malformed kit module name")
        module = importlib.import_module(f".{message.module}", adapter.__package__)  # autograder.kit
        if message.name not in getattr(module, "RUNS_IN_WORKER", ()):
            raise AttributeError(f"autograder.kit.{message.module}.{message.name} does not run in the worker")
        return {"value": getattr(module, message.name)}

    def _unbound(self) -> list:
        """The names looked up that no longer name what they named (student code rebound them, a
        Substitute or Restore did): the grader asks again."""
        gone = []
        for (module_name, name), (module, value) in list(self.named.items()):
            if vars(module).get(name, None) is not value:
                del self.named[module_name, name]
                gone.append([module_name, name])
        return gone

    def _serve_substitute(self, message: protocol.Substitute, values: dict, decoder) -> dict:
        self.submission.module(message.module)
        context = self.submission.substituted(message.module, values["names"])
        context.__enter__()
        self.substitutions.append(context)
        return {}

    def _serve_restore(self, message: protocol.Restore, values: dict, decoder) -> dict:
        while self.substitutions:
            self.substitutions.pop().__exit__(None, None, None)
        return {}

    def _serve_call(self, message: protocol.Call, values: dict, decoder) -> dict:
        if message.state is not None:
            self.apply_state(message.state, decoder)
        return self.call(values["target"], values, message, decoder.leaves)

    def _serve_method(self, message: protocol.Method, values: dict, decoder) -> dict:
        name = message.name
        if name.startswith("_") and name not in ("__enter__", "__exit__"):  # `with handle:` in a test
            raise AttributeError(name)
        return self.call(getattr(values["target"], name), values, message, decoder.leaves)

    def _serve_backward(self, message: protocol.Backward, values: dict, decoder) -> dict:
        if message.graph not in self.graphs:
            raise RuntimeError("this forward's graph is gone (too many forwards since); run backward sooner")
        outputs, leaves = self.graphs[message.graph]
        return {"grads": backward_kept(outputs, leaves, values.get("grads"))}

    def _serve_run_hooks(self, message: protocol.RunHooks, values: dict, decoder) -> dict:
        """Run the hooks student code put on a stub, for a forward (or backward) the grader ran itself.
        A tensor handed back unchanged goes back as the grader's own (`given`: their ids there)."""
        return serve_hooks(values.pop("target", None), message.kind, values, message.given, GraderRef)

    def apply_state(self, state: dict, decoder: protocol.Decoder) -> None:
        """Make the module tree match the grader's mirror: weights, buffers, modes, children."""
        found: dict[str, torch.Tensor] = {}

        def apply(node: dict, path: str):
            module = self.objects.get(node.get("id"))
            if not isinstance(module, nn.Module):
                raise protocol.WireError("unknown module")
            module.training = bool(node.get("training"))
            for kind, table in decode_tensors(node, decoder, found, path).items():
                getattr(module, "_parameters" if kind == "params" else "_buffers").update(table)
            for name, e in (node.get("attrs") or {}).items():
                if is_torch_class(type(module)) and isinstance(name, str) and name in vars(module):
                    object.__setattr__(module, name, decoder.value(e))
            self._relay_hooks(module, node.get("hooks"))
            for name, child in (node.get("children") or {}).items():
                if child is None:
                    module._modules[name] = None
                elif child.get("T") == "ref":
                    module._modules[name] = self.resolve(child)
                else:
                    apply(child, f"{path}{name}.")
                    module._modules[name] = self.objects[child["id"]]

        apply(state, "")

    def _relay_hooks(self, module: nn.Module, hooks) -> None:
        """The hooks the grader put on its mirror of `module` run on the grader's side."""
        for handle in self.relays.pop(id(module), []):
            handle.remove()
        if not isinstance(hooks, dict) or type(hooks.get("id")) is not int or not isinstance(hooks.get("kinds"), list):
            return
        gid, kinds = hooks["id"], [bool(k) for k in hooks["kinds"][:len(HOOK_FIELDS)]]

        def relay_for(kind: str):
            def relay(mod, *hook_args):
                values, given = relay_request(kind, hook_args, self._register)
                return self.transact(protocol.WorkerHook(id=gid, kind=kind, given=given, values=values))["result"]
            return relay

        self.relays[id(module)] = register_relays(module, kinds, relay_for)

    @contextlib.contextmanager
    def context(self, message: protocol.CallContext, rng):
        """The grader's context for one call: grad mode, random state, forbidden calls, device checks;
        torch's default dtype and device are put back after it."""
        with contextlib.ExitStack() as stack:
            stack.enter_context(torch.set_grad_enabled(message.grad_mode))
            if rng is not None:
                torch.set_rng_state(rng)
            if message.forbidden:
                guard = ForbiddenCalls(message.forbidden, lambda filename: adapter._in_dir(filename, self.directory))
                stack.enter_context(guard)
                stack.callback(lambda: self.violations.extend(guard.violations))
            if message.device:
                stack.enter_context(DeviceCheckMode(message.device))
            stack.enter_context(adapter.torch_defaults_kept())  # innermost: a default device's mode exits first
            yield

    def call(self, fn, values: dict, message: protocol.CallContext, leaves: dict) -> dict:
        rng = values.get("rng")
        args, kwargs = values.get("args", ()), values.get("kwargs", {})
        inputs = [(i, t, t._version) for i, t in enumerate(args) if type(t) is torch.Tensor]
        copies = inplace.snapshot(args)  # arrays, dicts, DataFrames: copies here, changes go back too
        before = rng if isinstance(rng, torch.Tensor) else torch.get_rng_state()
        with self.context(message, rng if isinstance(rng, torch.Tensor) else None):
            result = fn(*args, **kwargs)
        answer = {"result": result}
        if not torch.equal(torch.get_rng_state(), before):
            answer["rng"] = torch.get_rng_state()  # student code drew random numbers (dropout, say)
        changed = {i: t.detach() for i, t, version in inputs if t._version != version}
        changed.update(inplace.changed(copies, args))
        if changed:  # changed in place: the grader's tensors change too, as they would in one process
            answer["changed"] = changed
        if message.grad and leaves:
            outputs = outputs_of(result)
            token = self.next_id
            self.next_id += 1
            self.graphs[token] = (outputs, leaves)
            while len(self.graphs) > KEPT_GRAPHS:
                self.graphs.popitem(last=False)
            answer["graph"] = token
            answer["rg"] = [bool(o.requires_grad) for o in outputs]
        return answer


class BoundedOutput(io.TextIOBase):
    """The worker's sys.stdout and sys.stderr: what student code prints reaches the output file up
    to a budget per answer (shared by both); the rest is only counted, and the grader says how much
    was cut. Nothing here raises in student code: not a flood, nor the file size limit."""

    def __init__(self, stream, budget: "OutputBudget"):
        super().__init__()
        self._stream, self._budget = stream, budget

    def write(self, text) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        budget = self._budget
        kept = text if len(text) <= budget.left else text[:max(budget.left, 0)]
        budget.left -= len(kept)
        budget.dropped += len(text) - len(kept)
        if kept:
            try:
                self._stream.write(kept)
            except (OSError, ValueError):  # the file size limit, a closed stream
                budget.dropped += len(kept)
        return len(text)

    def flush(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self._stream.flush()

    def fileno(self) -> int:
        return self._stream.fileno()

    def isatty(self) -> bool:
        return False

    def writable(self) -> bool:
        return True

    @property
    def encoding(self):
        return self._stream.encoding

    @property
    def errors(self):
        return self._stream.errors

    @property
    def buffer(self):
        return self._stream.buffer


class OutputBudget:
    """Characters student code may still print before the next answer, and how many were cut."""

    def __init__(self, limit: int):
        self.limit, self.left, self.dropped = limit, limit, 0

    def take_dropped(self) -> int:
        """How many characters were cut since the last answer; the budget starts again."""
        dropped, self.left, self.dropped = self.dropped, self.limit, 0
        return dropped


OUTPUT = OutputBudget(4000)


def bound_output(limit: int) -> None:
    """Put BoundedOutput in place of the worker's standard streams."""
    OUTPUT.limit = OUTPUT.left = int(limit)
    for name in ("stdout", "stderr"):
        stream = BoundedOutput(getattr(sys, f"__{name}__"), OUTPUT)
        setattr(sys, name, stream)
        setattr(sys, f"__{name}__", stream)


def limit_resources(limits: dict) -> None:
    import resource

    for name, value in limits.items():
        which = getattr(resource, f"RLIMIT_{name.upper()}", None)
        if which is None or value is None:
            continue
        soft, hard = resource.getrlimit(which)
        value = int(value) if hard == resource.RLIM_INFINITY else min(int(value), hard)
        resource.setrlimit(which, (value, value))


def main(argv: list[str]) -> None:
    import json

    in_fd, out_fd = int(argv[0]), int(argv[1])
    config = json.loads(argv[2])
    torch.set_num_threads(1)
    warm_up()
    limit_resources(config.get("limits", {}))
    bound_output(config.get("output_limit", OUTPUT.limit))
    os.chdir(config["workdir"])
    RequestServer(in_fd, out_fd, config["submission"]).run()


if __name__ == "__main__":
    main(sys.argv[1:])
