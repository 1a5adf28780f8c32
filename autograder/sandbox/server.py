"""The sandboxed worker: the only process that runs student code during grading.

Started by the grader's test process (see sandbox.py) as an unprivileged user, with
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
import io
import json
import os
import sys
import traceback
import warnings

import torch
import torch.nn as nn
from torch.utils._pytree import tree_flatten

from ..kit import adapter, inplace
from . import protocol
from ..kit.checks import GradingFailure
from ..kit.torchkit import DeviceCheckMode, DeviceMismatch, ForbiddenCalls, warm_up

KEPT_GRAPHS = 8          # forward graphs kept for a later backward
MESSAGE_LIMIT = 2000     # characters of an exception's message sent back


def is_torch_class(cls: type) -> bool:
    """A module class of torch.nn itself (rebuilt as the real class on the grader's side)."""
    return cls.__module__.startswith("torch.nn.modules.") and getattr(nn, cls.__name__, None) is cls


MODULE_INTERNALS = {"training", "_parameters", "_buffers", "_non_persistent_buffers_set", "_modules",
                    "_backward_pre_hooks", "_backward_hooks", "_is_full_backward_hook", "_forward_hooks",
                    "_forward_hooks_with_kwargs", "_forward_hooks_always_called", "_forward_pre_hooks",
                    "_forward_pre_hooks_with_kwargs", "_state_dict_hooks", "_state_dict_pre_hooks",
                    "_load_state_dict_pre_hooks", "_load_state_dict_post_hooks", "_compiled_call_impl"}


def plain_attributes(module: nn.Module, encoder: protocol.Encoder, *, private: bool) -> dict:
    """The module's own attributes that are plain data (ints, floats, strings, tensors, ...)."""
    found = {}
    for name, value in vars(module).items():
        if name in MODULE_INTERNALS or (name.startswith("_") and not private):
            continue
        try:
            found[name] = protocol.Encoder().value(value)  # a dry run: is it plain?
        except protocol.WireError:
            continue
        found[name] = encoder.value(value)
    return found


# ---------------------------------------------------------------------------------------------
# hooks across the sandbox: a module on one side, its hooks on the other
#
# Hooks student code puts on a stub run for the grader's module (and the grader's hooks on a
# mirror run for the worker's module) through one relay hook per kind, registered in its most
# general form; the relay sends the hook's arguments over, and the other side runs the
# module's own hooks of that kind as nn.Module.__call__ and autograd would: with_kwargs,
# prepend (the order of the hooks), always_call, forward pre-hooks, full backward hooks and
# full backward pre-hooks, each hook a function, a callable object or a functools.partial.

HOOK_FIELDS = {"pre": ("args", "kwargs"), "forward": ("args", "kwargs", "output"),
               "backward_pre": ("grad_output",), "backward": ("grad_input", "grad_output")}


def hook_kinds(module: nn.Module) -> list[bool]:
    """Which kinds of hooks (HOOK_FIELDS' order) `module` holds; old-style backward hooks are not relayed."""
    return [bool(module._forward_pre_hooks), bool(module._forward_hooks), bool(module._backward_pre_hooks),
            bool(module._backward_hooks) and module._is_full_backward_hook is True]


def hook_values(kind: str, hook_args: tuple) -> dict:
    """What a relay of `kind` got (its arguments after the module), as named values to send."""
    values = dict(zip(HOOK_FIELDS[kind], hook_args))
    if kind == "forward" and values.get("output") is None and sys.exc_info()[0] is not None:
        values["failed"] = True  # called for an always_call hook, after the forward raised
    return values


def hooked_inputs(kind: str, values: dict) -> list:
    """The values a hook of `kind` may hand back unchanged (their tensors keep their identity)."""
    return [values.get(name) for name in HOOK_FIELDS.get(kind, ())]


def register_relays(module: nn.Module, kinds, relay_for) -> list:
    """One relay hook on `module` for each kind wanted; `relay_for(kind)` makes it. Returns the handles."""
    registers = (lambda f: module.register_forward_pre_hook(f, with_kwargs=True),
                 lambda f: module.register_forward_hook(f, with_kwargs=True, always_call=True),
                 module.register_full_backward_pre_hook, module.register_full_backward_hook)
    return [register(relay_for(kind)) for kind, wanted, register in zip(HOOK_FIELDS, kinds, registers) if wanted]


def run_hooks(module: nn.Module, kind: str, values: dict):
    """Run `module`'s own hooks of one kind on `values`, as PyTorch would; return what they put in
    place of the hooked value ((args, kwargs), the output, grad_output or grad_input), or None."""
    if kind == "pre":
        return _run_pre_hooks(module, tuple(values.get("args") or ()), dict(values.get("kwargs") or {}))
    if kind == "forward":
        return _run_forward_hooks(module, tuple(values.get("args") or ()), dict(values.get("kwargs") or {}),
                                  values.get("output"), values.get("failed") is True)
    if kind in ("backward_pre", "backward"):
        grad_output = values.get("grad_output")
        if kind == "backward_pre":
            return _chain(module._backward_pre_hooks.values(), lambda hook, g: hook(module, g), grad_output)
        return _chain(module._backward_hooks.values(), lambda hook, g: hook(module, g, grad_output),
                      values.get("grad_input"))
    raise protocol.WireError(f"unknown kind of hook {kind!r}")


def _chain(hooks, call, value):
    """Each hook may replace `value`; None when none did."""
    changed = False
    for hook in list(hooks):
        result = call(hook, value)
        if result is not None:
            value, changed = result, True
    return value if changed else None


def _run_pre_hooks(module: nn.Module, args: tuple, kwargs: dict):
    changed = False
    for hook_id, hook in list(module._forward_pre_hooks.items()):
        if hook_id in module._forward_pre_hooks_with_kwargs:
            result = hook(module, args, kwargs)
            if result is not None:
                if not (isinstance(result, tuple) and len(result) == 2):
                    raise RuntimeError("forward pre-hook must return None or a tuple of (new_args, new_kwargs), "
                                       f"but got {type(result).__name__}.")
                (args, kwargs), changed = result, True
        else:
            result = hook(module, args)
            if result is not None:
                args, changed = (result if isinstance(result, tuple) else (result,)), True
    return (args, kwargs) if changed else None


def _run_forward_hooks(module: nn.Module, args: tuple, kwargs: dict, output, failed: bool):
    """After a forward that raised (`failed`), only always_call hooks run, and what they raise is a warning."""
    changed = False
    for hook_id, hook in list(module._forward_hooks.items()):
        if failed and hook_id not in module._forward_hooks_always_called:
            continue
        try:
            if hook_id in module._forward_hooks_with_kwargs:
                result = hook(module, args, kwargs, output)
            else:
                result = hook(module, args, output)
        except Exception as exc:
            if not failed:
                raise
            warnings.warn(f"module forward hook with always_call=True raised an exception that was silenced as "
                          f"another error was raised in forward: {exc}", stacklevel=2)
            continue
        if result is not None:
            output, changed = result, True
    return output if changed and not failed else None


def same_objects(value, known: dict, depth: int = 0):
    """`value` with each tensor that is one of `known` (by identity) replaced by its reference
    home: a hook that returns its input unchanged hands back the very tensor, autograd included."""
    if depth > protocol.MAX_DEPTH:
        return value
    if isinstance(value, torch.Tensor):
        return known.get(id(value), value)
    if isinstance(value, (tuple, list)):
        items = [same_objects(v, known, depth + 1) for v in value]
        return items if isinstance(value, list) else tuple(items)
    if isinstance(value, dict):
        return {k: same_objects(v, known, depth + 1) for k, v in value.items()}
    return value


class GraderRef:
    """An object of the grader's (a tensor it sent), named by its id there."""

    def __init__(self, gid: int):
        self.gid = gid


class Stub(nn.Module):
    """A module of the grader's, seen from student code: calling it calls the grader."""

    def __init__(self, worker: "Worker", gid: int, desc: dict):
        super().__init__()
        self._worker, self._gid = worker, gid
        self.training = bool(desc.get("training", False))
        for name, value in (desc.get("attrs") or {}).items():
            if isinstance(name, str) and not hasattr(nn.Module, name):
                object.__setattr__(self, name, value)

    def forward(self, *args, **kwargs):
        return self._worker.callback(self._gid, args, kwargs)


class StubFunction:
    """A function or class of the grader's (e.g. the reference's, put in the student's module
    by an `isolate` marker): calling it calls the grader."""

    def __init__(self, worker: "Worker", gid: int, name: str):
        self._worker, self._gid, self.__name__ = worker, gid, name

    def __call__(self, *args, **kwargs):
        return self._worker.callback(self._gid, args, kwargs)


class _CallbackFunction(torch.autograd.Function):
    """Autograd through a call to the grader: backward asks the grader for the input gradients."""

    @staticmethod
    def forward(ctx, worker, holder, *leaves):
        outputs = holder["run"]()
        ctx.worker, ctx.token, ctx.keys = worker, holder["token"], holder["keys"]
        ctx.mark_non_differentiable(*[o for o, rg in zip(outputs, holder["rg"]) if not rg])
        return tuple(outputs)

    @staticmethod
    def backward(ctx, *grads):
        result = ctx.worker.transact({"op": "backward", "graph": ctx.token}, {"grads": list(grads)})["grads"]
        return (None, None, *[result.get(k) for k in ctx.keys])


class Worker:
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

    # ---- values in and out -------------------------------------------------------------------

    def export(self, obj) -> dict:
        """A reference to an object that stays here (or, for a stub, back to the grader's)."""
        if isinstance(obj, Stub):
            return {"T": "ref", "home": "grader", "id": obj._gid}
        if isinstance(obj, StubFunction):
            return {"T": "ref", "home": "grader", "id": obj._gid}
        if isinstance(obj, GraderRef):
            return {"T": "ref", "home": "grader", "id": obj.gid}
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
        attrs = plain_attributes(module, encoder, private=True)
        torch_class = is_torch_class(cls) and len(attrs) == len(attributes)
        if not torch_class:
            attrs = {n: v for n, v in attrs.items() if not n.startswith("_")}
        desc = {"home": "worker", "id": self._register(module), "training": bool(module.training),
                "cls": cls.__name__[:200], "key": f"{cls.__module__}.{cls.__qualname__}"[:200],
                "torch": torch_class, "params": {}, "buffers": {}, "children": {},
                "nonpersistent": sorted(module._non_persistent_buffers_set)}
        for kind, table in (("params", module._parameters), ("buffers", module._buffers)):
            for name, tensor in table.items():
                key = f"{path}{name}"
                if tensor is None:
                    desc[kind][name] = None
                elif id(tensor) in seen:
                    desc[kind][name] = {"T": "tie", "path": seen[id(tensor)]}
                else:
                    seen[id(tensor)] = key
                    desc[kind][name] = encoder.value(tensor)
        desc["attrs"] = attrs
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
        if ref.get("type") in ("hf_model", "hf_tokenizer"):
            return self._build_copy(ref)
        if gid not in self.stubs:
            if ref.get("type") == "module":
                self.stubs[gid] = self._build_stub(gid, ref.get("desc") or {})
            else:
                self.stubs[gid] = StubFunction(self, gid, str(ref.get("name", "function")))
        return self.stubs[gid]

    def _build_copy(self, ref: dict):
        """A fresh copy of a Hugging Face model or tokenizer the grader handed over by value."""
        import transformers

        cls = getattr(transformers, str(ref.get("cls")), None)
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
        attrs = {}
        for name, value in (desc.get("attrs") or {}).items():
            with contextlib.suppress(protocol.WireError):
                attrs[name] = self._decoder_for_refs.value(value)
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

    def send(self, message: dict, values: dict | None = None) -> None:
        encoder = protocol.Encoder(on_object=self.export)
        self._encoder = encoder
        body = {key: encoder.value(value) for key, value in (values or {}).items()}
        updates = {}
        for gid, (items, fingerprint) in list(self.shared.items()):
            now = self._fingerprint(items)
            if now != fingerprint:
                self.shared[gid] = (items, now)
                updates[str(gid)] = encoder.value(list(items))
        hooks = {str(gid): hook_kinds(s) for gid, s in self.stubs.items() if isinstance(s, nn.Module)}
        for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
            with contextlib.suppress(Exception):  # student code may have put anything there
                stream.flush()
        if message.get("re"):  # an answer: the grader shows what was printed, and how much was cut
            message = dict(message, dropped=OUTPUT.take_dropped())
        protocol.send(self.out_fd, dict(message, values=body, shared=updates, stub_hooks=hooks,
                                    violations=self.violations[-5:]), encoder.blobs)

    def transact(self, request: dict, values: dict | None = None) -> dict:
        """Send a request to the grader and serve its requests until the answer comes."""
        self.send(request, values)
        while True:
            message, blobs = protocol.receive(self.in_fd)
            if message.get("re"):
                decoded = self._decoder(blobs).value
                if "error" in message:
                    raise RuntimeError(str(message["error"])[:MESSAGE_LIMIT])
                return {k: decoded(v) for k, v in (message.get("values") or {}).items()}
            self.serve(message, blobs)

    def callback(self, gid: int, args: tuple, kwargs: dict):
        """Call the grader's object `gid` (autograd goes through, if it is on)."""
        flat, _ = tree_flatten((args, kwargs))
        mode = torch.is_grad_enabled()  # the grader's object runs in student code's grad mode (a spy may check it)
        needs_grad = mode and any(isinstance(t, torch.Tensor) and t.requires_grad for t in flat)
        if not needs_grad:
            with torch.no_grad():
                return self.transact({"op": "call", "id": gid, "grad": False, "grad_mode": mode},
                                     {"args": args, "kwargs": kwargs})["result"]
        leaves = [t for t in flat if isinstance(t, torch.Tensor) and t.requires_grad]
        holder = {}

        def run():
            values = {"args": args, "kwargs": kwargs}
            answer = self.transact({"op": "call", "id": gid, "grad": True}, values)
            outputs, spec = tree_flatten(answer["result"])
            tensors = [o for o in outputs if isinstance(o, torch.Tensor)]
            holder.update(token=answer.get("graph"), keys=list(range(len(leaves))),
                          rg=[bool(r) for r in answer.get("rg", [])] + [False] * len(tensors),
                          outputs=outputs, spec=spec)
            return [t.detach() for t in tensors]

        holder["run"] = run
        results = _CallbackFunction.apply(self, holder, *leaves)
        outputs, it = holder["outputs"], iter(results)
        outputs = [next(it) if isinstance(o, torch.Tensor) else o for o in outputs]
        from torch.utils._pytree import tree_unflatten
        return tree_unflatten(outputs, holder["spec"])

    def run(self) -> None:
        self.send({"re": True, "ok": True}, {"pid": os.getpid()})
        while True:
            try:
                message, blobs = protocol.receive(self.in_fd)
            except EOFError:
                return
            self.serve(message, blobs)

    def serve(self, message: dict, blobs: list[bytes]) -> None:
        try:
            values = self.handle(message, blobs)
        except BaseException as exc:  # noqa: BLE001 - everything the student's code raises goes back
            self.send({"re": True, "error": self.describe_error(exc)})
            return
        self.send({"re": True, "ok": True}, values)

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

    def handle(self, message: dict, blobs: list[bytes]) -> dict:
        op = message.get("op")
        decoder = self._decoder(blobs)
        decode = decoder.value
        values = {k: decode(v) for k, v in (message.get("values") or {}).items()}
        leaves = decoder.leaves
        if op == "reset":
            self.objects.clear(), self.ids.clear(), self.stubs.clear(), self.shared.clear(), self.graphs.clear()
            self.relays.clear()
            self.violations = []
            return {}
        if op == "import":
            self.submission.module(message["module"])
            return {}
        if op == "stand_in":  # stubs of the grader's reference, for the other files' `import module`
            self.submission.use_stand_in(message["module"], values["names"])
            return {}
        if op == "name":
            module = self.submission.module(message["module"])
            name = message["name"]
            if not hasattr(module, name):
                raise adapter.ContractError(adapter.messages.MISSING_NAME.format(file=f"{message['module']}.py", name=name))
            return {"value": getattr(module, name)}
        if op == "substitute":
            module = self.submission.module(message["module"])
            context = self.submission.substituted(message["module"], values["names"])
            context.__enter__()
            self.substitutions.append(context)
            return {}
        if op == "restore":
            while self.substitutions:
                self.substitutions.pop().__exit__(None, None, None)
            return {}
        if op == "call":
            target = values["target"]
            if "state" in message:
                self.apply_state(message["state"], decode, leaves)
            return self.call(target, values, message, leaves)
        if op == "method":
            target = values["target"]
            name = message["name"]
            if name.startswith("_") and name not in ("__enter__", "__exit__"):  # `with handle:` in a test
                raise AttributeError(name)
            return self.call(getattr(target, name), values, message, leaves)
        if op == "backward":
            return self.backward(message["graph"], values["grads"])
        if op == "run_hooks":
            return self.run_stub_hooks(values["target"], message.get("kind"), values, message.get("given"))
        raise protocol.WireError(f"unknown request {op!r}")

    def apply_state(self, state: dict, decode, leaves: dict) -> None:
        """Make the module tree match the grader's mirror: weights, buffers, modes, children."""
        params_by_path: dict[str, nn.Parameter] = {}
        ties = []

        def apply(node: dict, path: str):
            module = self.objects.get(node.get("id"))
            if not isinstance(module, nn.Module):
                raise protocol.WireError("unknown module")
            module.training = bool(node.get("training"))
            for name, e in (node.get("params") or {}).items():
                if isinstance(e, dict) and e.get("T") == "tie":
                    ties.append((module, "_parameters", name, e.get("path")))
                    continue
                tensor = None if e is None else decode(e)
                if tensor is not None:
                    rg = tensor.requires_grad
                    tensor = nn.Parameter(tensor.detach(), requires_grad=rg)
                    if rg:
                        leaves[e["k"]] = tensor
                    params_by_path[f"{path}{name}"] = tensor
                module._parameters[name] = tensor
            for name, e in (node.get("buffers") or {}).items():
                if isinstance(e, dict) and e.get("T") == "tie":
                    ties.append((module, "_buffers", name, e.get("path")))
                    continue
                module._buffers[name] = None if e is None else decode(e)
                if module._buffers[name] is not None:
                    params_by_path[f"{path}{name}"] = module._buffers[name]
            for name, e in (node.get("attrs") or {}).items():
                if is_torch_class(type(module)) and isinstance(name, str) and name in vars(module):
                    object.__setattr__(module, name, decode(e))
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
        for module, table, name, path in ties:
            if path in params_by_path:
                getattr(module, table)[name] = params_by_path[path]

    def _relay_hooks(self, module: nn.Module, hooks) -> None:
        """The hooks the grader put on its mirror of `module` run on the grader's side."""
        for handle in self.relays.pop(id(module), []):
            handle.remove()
        if not isinstance(hooks, dict) or type(hooks.get("id")) is not int or not isinstance(hooks.get("kinds"), list):
            return
        gid, kinds = hooks["id"], [bool(k) for k in hooks["kinds"][:len(HOOK_FIELDS)]]

        def relay_for(kind: str):
            def relay(mod, *hook_args):
                values = hook_values(kind, hook_args)
                given = [self._register(t) for t in protocol.tensors_in(hooked_inputs(kind, values))]
                return self.transact({"op": "hook", "id": gid, "kind": kind, "given": given}, values)["result"]
            return relay

        self.relays[id(module)] = register_relays(module, kinds, relay_for)

    @contextlib.contextmanager
    def context(self, message: dict, rng):
        """The grader's context for one call: grad mode, random state, forbidden calls, device checks."""
        with contextlib.ExitStack() as stack:
            stack.enter_context(torch.set_grad_enabled(bool(message.get("grad_mode", message.get("grad")))))
            if rng is not None:
                torch.set_rng_state(rng)
            forbidden = message.get("forbidden") or {}
            if forbidden:
                guard = ForbiddenCalls(forbidden, lambda filename: adapter._in_dir(filename, self.directory))
                stack.enter_context(guard)
                stack.callback(lambda: self.violations.extend(guard.violations))
            if message.get("device"):
                stack.enter_context(DeviceCheckMode(message["device"]))
            yield

    def call(self, fn, values: dict, message: dict, leaves: dict) -> dict:
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
        if message.get("grad") and leaves:
            outputs = [o for o in tree_flatten(result)[0] if isinstance(o, torch.Tensor)]
            token = self.next_id
            self.next_id += 1
            self.graphs[token] = (outputs, leaves)
            while len(self.graphs) > KEPT_GRAPHS:
                self.graphs.popitem(last=False)
            answer["graph"] = token
            answer["rg"] = [bool(o.requires_grad) for o in outputs]
        return answer

    def backward(self, token: int, grads: list) -> dict:
        if token not in self.graphs:
            raise RuntimeError("this forward's graph is gone (too many forwards since); run backward sooner")
        outputs, leaves = self.graphs[token]
        pairs = [(o, g) for o, g in zip(outputs, grads) if g is not None and isinstance(o, torch.Tensor) and o.requires_grad]
        if pairs:
            torch.autograd.backward([o for o, _ in pairs], [g.to(o.dtype) for o, g in pairs])
        return {"grads": {key: leaf.grad for key, leaf in leaves.items()}}

    def run_stub_hooks(self, stub, kind, values: dict, given) -> dict:
        """Run the hooks student code put on a stub, for a forward (or backward) the grader ran itself.
        A tensor handed back unchanged goes back as the grader's own (`given`: their ids there)."""
        if not isinstance(stub, nn.Module) or kind not in HOOK_FIELDS:
            raise protocol.WireError("malformed hook request")
        tensors = protocol.tensors_in(hooked_inputs(kind, values))
        known = {id(t): GraderRef(gid) for t, gid in zip(tensors, given if isinstance(given, list) else [])
                 if type(gid) is int}
        return {"result": same_objects(run_hooks(stub, kind, values), known)}


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
    Worker(in_fd, out_fd, config["submission"]).run()


if __name__ == "__main__":
    main(sys.argv[1:])
