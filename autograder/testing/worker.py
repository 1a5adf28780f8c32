"""The sandboxed worker: the only process that runs student code during grading.

Started by the grader's test process (see sandbox.py) as an unprivileged user, with
resource limits, in a folder that holds a copy of the submission and of this package,
and nothing else of the grader's. It answers requests over two pipes, in wire.py's plain
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
import json
import os
import sys
import traceback

import torch
import torch.nn as nn
from torch.utils._pytree import tree_flatten

from . import adapter, inplace, wire
from .checks import GradingFailure
from .torchkit import DeviceCheckMode, DeviceMismatch, ForbiddenCalls, warm_up

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


def plain_attributes(module: nn.Module, encoder: wire.Encoder, *, private: bool) -> dict:
    """The module's own attributes that are plain data (ints, floats, strings, tensors, ...)."""
    found = {}
    for name, value in vars(module).items():
        if name in MODULE_INTERNALS or (name.startswith("_") and not private):
            continue
        try:
            found[name] = wire.Encoder().value(value)  # a dry run: is it plain?
        except wire.WireError:
            continue
        found[name] = encoder.value(value)
    return found


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
                raise wire.WireError("unknown object")
            return self.objects[gid]
        if ref.get("type") == "list":
            items = self._decoder_for_refs.value(ref.get("items"))
            if not isinstance(items, list):
                raise wire.WireError("malformed list")
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
                raise wire.WireError("not a fast tokenizer class")
            from tokenizers import Tokenizer

            kwargs = self._decoder_for_refs.value(ref.get("kwargs"))
            return cls(tokenizer_object=Tokenizer.from_str(str(ref.get("json"))), **kwargs)
        if not (isinstance(cls, type) and issubclass(cls, transformers.PreTrainedModel)):
            raise wire.WireError("not a model class")
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
            with contextlib.suppress(wire.WireError):
                attrs[name] = self._decoder_for_refs.value(value)
        stub = Stub(self, gid, dict(desc, attrs=attrs))
        for name, child in children.items():
            stub._modules[name] = self.resolve(child)
        return stub

    @staticmethod
    def _fingerprint(items: list) -> tuple:
        return tuple(id(x) for x in items)

    def _decoder(self, blobs):
        decoder = wire.Decoder(blobs, on_ref=self.resolve)
        self._decoder_for_refs = decoder
        return decoder

    # ---- the conversation --------------------------------------------------------------------

    def send(self, message: dict, values: dict | None = None) -> None:
        encoder = wire.Encoder(on_object=self.export)
        self._encoder = encoder
        body = {key: encoder.value(value) for key, value in (values or {}).items()}
        updates = {}
        for gid, (items, fingerprint) in list(self.shared.items()):
            now = self._fingerprint(items)
            if now != fingerprint:
                self.shared[gid] = (items, now)
                updates[str(gid)] = encoder.value(list(items))
        hooks = {str(gid): [len(s._forward_pre_hooks), len(s._forward_hooks)]
                 for gid, s in self.stubs.items() if isinstance(s, Stub)}
        sys.stdout.flush()
        sys.stderr.flush()
        wire.send(self.out_fd, dict(message, values=body, shared=updates, stub_hooks=hooks,
                                    violations=self.violations[-5:]), encoder.blobs)

    def transact(self, request: dict, values: dict | None = None) -> dict:
        """Send a request to the grader and serve its requests until the answer comes."""
        self.send(request, values)
        while True:
            message, blobs = wire.receive(self.in_fd)
            if message.get("re"):
                decoded = self._decoder(blobs).value
                if "error" in message:
                    raise RuntimeError(str(message["error"])[:MESSAGE_LIMIT])
                return {k: decoded(v) for k, v in (message.get("values") or {}).items()}
            self.serve(message, blobs)

    def callback(self, gid: int, args: tuple, kwargs: dict):
        """Call the grader's object `gid` (autograd goes through, if it is on)."""
        flat, _ = tree_flatten((args, kwargs))
        needs_grad = torch.is_grad_enabled() and any(isinstance(t, torch.Tensor) and t.requires_grad for t in flat)
        if not needs_grad:
            with torch.no_grad():
                return self.transact({"op": "call", "id": gid, "grad": False}, {"args": args, "kwargs": kwargs})["result"]
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
                message, blobs = wire.receive(self.in_fd)
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
            if name.startswith("_"):
                raise AttributeError(name)
            return self.call(getattr(target, name), values, message, leaves)
        if op == "backward":
            return self.backward(message["graph"], values["grads"])
        if op == "run_hooks":
            return self.run_stub_hooks(values["target"], message["kind"], values)
        raise wire.WireError(f"unknown request {op!r}")

    def apply_state(self, state: dict, decode, leaves: dict) -> None:
        """Make the module tree match the grader's mirror: weights, buffers, modes, children."""
        params_by_path: dict[str, nn.Parameter] = {}
        ties = []

        def apply(node: dict, path: str):
            module = self.objects.get(node.get("id"))
            if not isinstance(module, nn.Module):
                raise wire.WireError("unknown module")
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

    def _relay_hooks(self, module: nn.Module, gid) -> None:
        """Forward hooks the grader put on its mirror of `module` run on the grader's side."""
        for handle in self.relays.pop(id(module), []):
            handle.remove()
        if gid is None:
            return

        def pre(mod, inputs):
            return self.transact({"op": "hook", "id": gid, "kind": "pre"}, {"inputs": inputs})["result"]

        def post(mod, inputs, output):
            return self.transact({"op": "hook", "id": gid, "kind": "forward"}, {"inputs": inputs, "output": output})["result"]

        self.relays[id(module)] = [module.register_forward_pre_hook(pre), module.register_forward_hook(post)]

    @contextlib.contextmanager
    def context(self, message: dict, rng):
        """The grader's context for one call: grad mode, random state, forbidden calls, device checks."""
        with contextlib.ExitStack() as stack:
            stack.enter_context(torch.set_grad_enabled(bool(message.get("grad"))))
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

    def run_stub_hooks(self, stub, kind: str, values: dict) -> dict:
        """Run the hooks student code put on a stub, for a forward the grader ran itself."""
        changed = False
        if kind == "pre":
            inputs = values["inputs"]
            for hook in list(stub._forward_pre_hooks.values()):
                result = hook(stub, inputs)
                if result is not None:
                    inputs, changed = (result if isinstance(result, tuple) else (result,)), True
            return {"result": inputs if changed else None}
        output = values["output"]
        for hook in list(stub._forward_hooks.values()):
            result = hook(stub, values["inputs"], output)
            if result is not None:
                output, changed = result, True
        return {"result": output if changed else None}


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
    os.chdir(config["workdir"])
    Worker(in_fd, out_fd, config["submission"]).run()


if __name__ == "__main__":
    main(sys.argv[1:])
