"""What both sides of the sandbox do alike, written once: replaying hooks across the wire, the
backward bridge (autograd through a call the other side answers), and the encoding of a module
tree (parameters, buffers with tied weights, plain attributes).

Imported by server.py (the worker) and client.py (the grader's test process); imports only torch
and `protocol`.
"""
from __future__ import annotations

import sys
import warnings
from collections.abc import Callable, Iterable

import torch
import torch.nn as nn
from torch.utils._pytree import tree_flatten, tree_unflatten

from . import protocol

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


def relay_request(kind: str, hook_args: tuple, name_of: Callable[[torch.Tensor], int]) -> tuple[dict, list]:
    """What a relay hook of `kind` sends: the hook's values, and `given`, the names (`name_of`) of
    the hooked tensors here, so that one handed back unchanged comes back as this very tensor."""
    values = hook_values(kind, hook_args)
    return values, [name_of(t) for t in protocol.tensors_in(hooked_inputs(kind, values))]


def serve_hooks(module, kind, values: dict, given, ref_for: Callable[[int], object]) -> dict:
    """Run `module`'s hooks of `kind` for a relay of the other side (see relay_request); a tensor
    handed back unchanged goes back as `ref_for(its name there)`."""
    if not isinstance(module, nn.Module) or kind not in HOOK_FIELDS:
        raise protocol.WireError("malformed hook request")
    tensors = protocol.tensors_in(hooked_inputs(kind, values))
    known = {id(t): ref_for(name) for t, name in zip(tensors, given if isinstance(given, list) else [])
             if type(name) is int}
    return {"result": same_objects(run_hooks(module, kind, values), known)}


# ---------------------------------------------------------------------------------------------
# the backward bridge: autograd through a call the other side answers
#
# The asking side sends the call with its inputs (tensors that require grad are the graph's
# leaves, named by their place among what was sent); the answering side runs it with
# autograd on and keeps the graph; backward here asks the other side to run backward there
# with the outputs' gradients, and gets back the leaves' gradients.

def outputs_of(result) -> list[torch.Tensor]:
    """The tensors of a call's result, in the order both sides name them."""
    return [o for o in tree_flatten(result)[0] if isinstance(o, torch.Tensor)]


class _Bridge(torch.autograd.Function):
    """One node in the asking side's graph for the whole remote call."""

    @staticmethod
    def forward(ctx, call: RemoteCall, *leaves):
        outputs = call.run()
        ctx.call = call
        ctx.mark_non_differentiable(*[o for o, rg in zip(outputs, call.rg) if not rg])
        return tuple(outputs)

    @staticmethod
    def backward(ctx, *grads):
        return (None, *ctx.call.backward(list(grads)))


class RemoteCall:
    """A call the other side answers, with autograd through it.

    `send()` sends the call and returns the answer's values (`result`; `graph`, the token of the
    graph kept there; `rg`, which output tensors require grad); `send_backward(graph, grads)`
    returns the leaves' gradients by key (their place in `leaves`); `malformed(text)` is the
    exception for a malformed gradient."""

    def __init__(self, leaves: list[torch.Tensor], send: Callable[[], dict],
                 send_backward: Callable[[object, list], dict], malformed=protocol.WireError):
        self.leaves, self._send, self._send_backward, self._malformed = leaves, send, send_backward, malformed
        self.outputs, self.spec, self.graph, self.rg = [], None, None, []

    def __call__(self):
        """The result, its tensors in the graph (one node, `_Bridge`, for the remote part)."""
        results = iter(_Bridge.apply(self, *self.leaves))
        outputs = [next(results) if isinstance(o, torch.Tensor) else o for o in self.outputs]
        return tree_unflatten(outputs, self.spec)

    def run(self) -> list[torch.Tensor]:
        answer = self._send()
        self.outputs, self.spec = tree_flatten(answer["result"])
        tensors = [o for o in self.outputs if isinstance(o, torch.Tensor)]
        flags = answer.get("rg") if isinstance(answer.get("rg"), list) else []
        self.graph = answer.get("graph")
        self.rg = [bool(f) and (t.dtype.is_floating_point or t.dtype.is_complex) for f, t in zip(flags, tensors)]
        self.rg += [False] * (len(tensors) - len(self.rg))
        return [t.detach() for t in tensors]

    def backward(self, grads: list) -> list:
        found = self._send_backward(self.graph, grads)
        found = found if isinstance(found, dict) else {}
        out = []
        for key, leaf in enumerate(self.leaves):
            grad = found.get(key)
            if grad is not None and (not isinstance(grad, torch.Tensor) or grad.shape != leaf.shape):
                raise self._malformed("the other side sent a malformed gradient")
            out.append(None if grad is None else grad.to(device=leaf.device, dtype=leaf.dtype))
        return out


def backward_kept(outputs: list, leaves: dict, grads) -> dict:
    """Backward through a kept graph (`outputs`) with the asking side's `grads`; the gradients of
    `leaves` (key -> tensor), by key."""
    grads = grads if isinstance(grads, list) else []
    pairs = [(o, g) for o, g in zip(outputs, grads) if isinstance(g, torch.Tensor) and isinstance(o, torch.Tensor)
             and o.requires_grad and g.shape == o.shape]
    if pairs:
        torch.autograd.backward([o for o, _ in pairs], [g.to(o.dtype) for o, g in pairs])
    return {key: leaf.grad for key, leaf in leaves.items()}


# ---------------------------------------------------------------------------------------------
# module trees: parameters and buffers (with tied weights), plain attributes
#
# A module tree travels as nested nodes {"params": {name: tensor}, "buffers": {...},
# "children": {name: node}, ...}; the worker describes its modules this way (the grader
# builds mirrors), and the grader sends its mirror's state this way before a forward. A tensor
# met a second time in the walk (params, then buffers, then children, depth first) travels
# as a tie, {"T": "tie", "path": "where.it.was.first"}, and arrives as the same tensor.

TABLES = (("params", "_parameters"), ("buffers", "_buffers"))

MODULE_INTERNALS = {"training", "_parameters", "_buffers", "_non_persistent_buffers_set", "_modules",
                    "_backward_pre_hooks", "_backward_hooks", "_is_full_backward_hook", "_forward_hooks",
                    "_forward_hooks_with_kwargs", "_forward_hooks_always_called", "_forward_pre_hooks",
                    "_forward_pre_hooks_with_kwargs", "_state_dict_hooks", "_state_dict_pre_hooks",
                    "_load_state_dict_pre_hooks", "_load_state_dict_post_hooks", "_compiled_call_impl"}


def is_torch_class(cls: type) -> bool:
    """A module class of torch.nn itself (rebuilt as the real class on the grader's side)."""
    return cls.__module__.startswith("torch.nn.modules.") and getattr(nn, cls.__name__, None) is cls


def encode_tensors(module: nn.Module, encoder: protocol.Encoder, seen: dict, path: str) -> dict:
    """`module`'s own parameters and buffers: {"params": {name: encoded}, "buffers": {...}}; `seen`
    maps id(tensor) -> path for the walk so far (a tensor seen before travels as a tie)."""
    node = {}
    for kind, attr in TABLES:
        table = node[kind] = {}
        for name, tensor in getattr(module, attr).items():
            if tensor is None:
                table[name] = None
            elif id(tensor) in seen:
                table[name] = {"T": "tie", "path": seen[id(tensor)]}
            else:
                seen[id(tensor)] = f"{path}{name}"
                table[name] = encoder.value(tensor)
    return node


def decode_tensors(node: dict, decoder: protocol.Decoder, found: dict, path: str) -> dict:
    """The inverse of encode_tensors: {"params": {name: Parameter or None}, "buffers": {name: tensor
    or None}}; `found` maps path -> tensor for the walk so far (what ties name). A parameter
    sent as a leaf of autograd is the leaf (in decoder.leaves)."""
    tables = {}
    for kind, _ in TABLES:
        entries = node.get(kind) or {}
        if not isinstance(entries, dict):
            raise protocol.WireError("malformed module tree")
        table = tables[kind] = {}
        for name, e in entries.items():
            if isinstance(e, dict) and e.get("T") == "tie":
                if e.get("path") not in found:
                    raise protocol.WireError("malformed tie")
                table[name] = found[e["path"]]
                continue
            tensor = None if e is None else decoder.value(e)
            if tensor is not None and not isinstance(tensor, torch.Tensor):
                raise protocol.WireError("malformed module tree")
            if kind == "params" and tensor is not None:
                tensor = nn.Parameter(tensor.detach(), requires_grad=tensor.requires_grad)
                if tensor.requires_grad and type(e.get("k")) is int:
                    decoder.leaves[e["k"]] = tensor
            table[name] = tensor
            if tensor is not None:
                found[f"{path}{name}"] = tensor
    return tables


def plain_attributes(encoder: protocol.Encoder, items: Iterable[tuple[str, object]]) -> dict:
    """The (name, value) pairs whose value is plain data (ints, floats, strings, tensors, ...), encoded."""
    found = {}
    for name, value in items:
        try:
            found[name] = encoder.plain(value)
        except protocol.WireError:
            continue
    return found


def decode_attributes(decoder: protocol.Decoder, encoded) -> dict:
    """Attributes from plain_attributes: the names that are strings, with what could be decoded."""
    found = {}
    for name, value in (encoded or {}).items() if isinstance(encoded, dict) else ():
        if isinstance(name, str):
            try:
                found[name] = decoder.value(value)
            except protocol.WireError:
                continue
    return found
