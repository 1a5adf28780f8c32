"""What crosses between the grader and the sandboxed worker: plain data only.

A message is a JSON header followed by raw tensor bytes:

    8 bytes   header length (little-endian unsigned)
    8 bytes   total length of the tensor bytes
    header    UTF-8 JSON: {"blobs": [byte length of each tensor], ...the message...}
    blobs     each tensor's bytes, in order

Values inside a message are JSON with tags for what JSON lacks: tuples, dicts with any
plain keys, sets, floats (exact, as hex, with nan and inf), ints of any size, tensors,
dtypes, devices, NumPy arrays and scalars, pandas DataFrames and Series (columns of numbers
as arrays, other columns as lists of plain values), and references to objects that stay on
the other side (`{"T": "ref", ...}`). Subclasses of the plain containers travel as their
contents, and arrive as the plain type: a `Counter`, `defaultdict` or `OrderedDict` as a
dict, a namedtuple (or `torch.return_types.max`) as a tuple, a list subclass as a list; a
`UserDict` (transformers' `BatchEncoding`) as a dict too. NumPy
and pandas are imported only when such a value comes. Decoding never
unpickles, never imports and never calls anything it read: a tensor is rebuilt from its
dtype (from a fixed list), shape and bytes, and sizes are bounded, so whatever the worker
sends, the grader gets plain tensors and Python values or a WireError.
"""
from __future__ import annotations

import collections
import dataclasses
import functools
import json
import math
import os
import select
import struct
import types
import typing
from typing import ClassVar

import torch

MAX_HEADER = 64 << 20        # bytes of JSON in one message
MAX_BLOBS = 512 << 20        # bytes of tensor data in one message
MAX_DEPTH = 48               # nesting of lists, tuples and dicts
MAX_DIMS = 16
MAX_INT_BITS = 1 << 20       # ints beyond JSON's digit limit travel as hex, up to this size
JSON_INT_BITS = 4000         # under Python's 4300-digit limit for int <-> str

DTYPES = {str(d).removeprefix("torch."): d for d in (
    torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.complex64, torch.complex128,
    torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64, torch.bool)}


NP_DTYPES = ("float16", "float32", "float64", "complex64", "complex128", "uint8", "int8", "int16",
             "int32", "int64", "bool")


class WireError(Exception):
    """A message that is not well formed (from a broken or hostile worker)."""


class Ref:
    """An object that lives on the other side, named by its id there."""

    def __init__(self, id: int, info: dict | None = None):
        self.id, self.info = id, info or {}

    def __repr__(self) -> str:
        return f"Ref({self.id}, {self.info.get('type', '?')})"


def _items(d: dict) -> list:
    """The items a dict (of any subclass) holds, in order, whatever methods the subclass overrides."""
    return list((collections.OrderedDict if isinstance(d, collections.OrderedDict) else dict).items(d))


def tensors_in(value, depth: int = 0) -> list[torch.Tensor]:
    """The tensors in the tuples, lists and dict values of `value`, in order. The same on both
    sides of the wire (what was sent and what arrived), so a tensor can be named by its place."""
    if depth > MAX_DEPTH:
        return []
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, tuple):
        items = list(tuple.__iter__(value))
    elif isinstance(value, list):
        items = list(list.__iter__(value))
    elif isinstance(value, dict):
        items = [x for _, x in _items(value)]
    else:
        return []
    return [t for item in items for t in tensors_in(item, depth + 1)]


def _int(n: int):
    """An int: plain JSON when short, else hex (JSON's int <-> str is limited to 4300 digits)."""
    if n.bit_length() <= JSON_INT_BITS:
        return n
    if n.bit_length() > MAX_INT_BITS:
        raise WireError(f"an int of {n.bit_length()} bits cannot be sent")
    return {"T": "int", "v": hex(n)}


def _float(x: float):
    if math.isfinite(x):
        return {"T": "f", "v": float.hex(x)}
    return {"T": "f", "v": repr(x)}


class Encoder:
    """Turns a value into JSON-able data plus tensor blobs; `on_object` handles anything else
    (it returns the JSON for a Ref, or raises)."""

    def __init__(self, on_object=None):
        self.blobs: list[bytes] = []
        self.on_object = on_object
        self.leaves: list[torch.Tensor] = []   # tensors sent with requires_grad, by their key "k"

    def plain(self, v):
        """`v` encoded if it is plain data (nothing to name by reference), else WireError, with
        nothing added to the message."""
        blobs, leaves, on_object = len(self.blobs), len(self.leaves), self.on_object
        self.on_object = None
        try:
            return self.value(v)
        except WireError:
            del self.blobs[blobs:], self.leaves[leaves:]
            raise
        finally:
            self.on_object = on_object

    def tensor(self, t: torch.Tensor) -> dict:
        t = t.as_subclass(torch.Tensor) if type(t) not in (torch.Tensor, torch.nn.Parameter) else t
        entry = {"T": "tensor", "dtype": str(t.dtype).removeprefix("torch."), "shape": list(t.shape),
                 "device": str(t.device), "rg": bool(t.requires_grad), "b": -1}
        if entry["dtype"] not in DTYPES:
            raise WireError(f"tensors of dtype {t.dtype} cannot be sent")
        if t.requires_grad:
            entry["k"] = len(self.leaves)
            self.leaves.append(t)
        if t.device.type != "meta":
            data = t.detach().to("cpu").contiguous()
            raw = data.reshape(-1).view(torch.uint8)
            entry["b"] = len(self.blobs)
            self.blobs.append(raw.numpy().tobytes())
        return entry

    def array(self, a) -> dict:
        """A NumPy array of numbers: dtype (from a fixed list), shape and bytes."""
        import numpy as np

        if a.dtype.name not in NP_DTYPES or a.ndim > MAX_DIMS:
            raise WireError(f"numpy arrays of dtype {a.dtype} cannot be sent")
        self.blobs.append(np.ascontiguousarray(a).tobytes())
        return {"T": "ndarray", "dtype": a.dtype.name, "shape": list(a.shape), "b": len(self.blobs) - 1}

    def _library_value(self, v, depth: int):
        """NumPy and pandas values, or None when `v` is neither."""
        library = type(v).__module__.split(".")[0]
        if library == "numpy":
            import numpy as np

            if isinstance(v, np.ndarray):
                return self.array(v)
            if isinstance(v, np.generic) and v.dtype.name in NP_DTYPES:
                return {"T": "npscalar", "dtype": v.dtype.name, "v": self.value(v.item(), depth + 1)}
        if library == "pandas":
            import pandas as pd

            if isinstance(v, pd.DataFrame):
                return {"T": "frame", "columns": [self.value(c, depth + 1) for c in v.columns],
                        "index": self._column(v.index, depth), "data": [self._column(v.iloc[:, i], depth)
                                                                        for i in range(v.shape[1])]}
            if isinstance(v, pd.Series):
                return {"T": "series", "name": self.value(v.name, depth + 1), "index": self._column(v.index, depth),
                        "data": self._column(v, depth)}
        return None

    def _column(self, column, depth: int):
        """A pandas column or index: an array when it holds numbers, else a list of plain values."""
        if column.dtype.kind in "fiub" and column.dtype.name in NP_DTYPES:
            return self.array(column.to_numpy())
        return {"T": "list", "v": [self.value(x, depth + 1) for x in column.tolist()]}

    def value(self, v, depth: int = 0):
        if depth > MAX_DEPTH:
            raise WireError("value nested too deeply")
        if v is None or isinstance(v, (bool, str)) and type(v) in (bool, str):
            return v
        if type(v).__module__.split(".")[0] in ("numpy", "pandas"):
            found = self._library_value(v, depth)
            if found is not None:
                return found
        if isinstance(v, (bool, str)):
            return bool(v) if isinstance(v, bool) else str(v)
        if isinstance(v, int):
            return _int(v if type(v) is int else int(v))
        if isinstance(v, float):
            return _float(float(v))
        if isinstance(v, torch.Tensor):
            return self.tensor(v)
        if isinstance(v, torch.Size):
            return {"T": "tuple", "v": [int(n) for n in v]}
        if isinstance(v, tuple):  # namedtuples and other subclasses too: their items, read as a tuple's
            return {"T": "tuple", "v": [self.value(x, depth + 1) for x in tuple.__iter__(v)]}
        if isinstance(v, list):
            return {"T": "list", "v": [self.value(x, depth + 1) for x in list.__iter__(v)]}
        if isinstance(v, dict):  # Counter, defaultdict, OrderedDict, ...: their items, as a dict's
            items = _items(v)
            return {"T": "dict", "k": [self.value(k, depth + 1) for k, _ in items],
                    "v": [self.value(x, depth + 1) for _, x in items]}
        if isinstance(v, collections.UserDict):  # transformers' BatchEncoding: its items, as a dict's
            items = _items(v.data) if isinstance(v.data, dict) else []
            return {"T": "dict", "k": [self.value(k, depth + 1) for k, _ in items],
                    "v": [self.value(x, depth + 1) for _, x in items]}
        if isinstance(v, (set, frozenset)):
            return {"T": "set", "frozen": isinstance(v, frozenset),
                    "v": [self.value(x, depth + 1)
                          for x in (frozenset if isinstance(v, frozenset) else set).__iter__(v)]}
        if isinstance(v, torch.dtype):
            return {"T": "dtype", "v": str(v).removeprefix("torch.")}
        if isinstance(v, torch.device):
            return {"T": "device", "v": str(v)}
        if isinstance(v, complex):
            return {"T": "complex", "v": [_float(v.real), _float(v.imag)]}
        if self.on_object is not None:
            return self.on_object(v)
        raise WireError(f"a {type(v).__name__} cannot be sent")


class Decoder:
    """The inverse of Encoder, for data from the other side; `on_ref` turns a Ref's JSON into
    a local object (a proxy), `device` maps a device name to where tensors should live."""

    def __init__(self, blobs: list[bytes], on_ref=None, on_device=None, grad: bool = True):
        self.blobs, self.on_ref, self.on_device, self.grad = blobs, on_ref, on_device, grad
        self.leaves: dict[int, torch.Tensor] = {}   # tensors received with requires_grad, by key

    def tensor(self, e: dict) -> torch.Tensor:
        dtype = DTYPES.get(e.get("dtype"))
        shape = e.get("shape")
        if dtype is None or not isinstance(shape, list) or len(shape) > MAX_DIMS \
                or not all(type(n) is int and 0 <= n for n in shape):
            raise WireError("malformed tensor")
        numel = math.prod(shape)
        device = str(e.get("device", "cpu"))
        if device == "meta" or e.get("b", -1) == -1:
            if device != "meta":
                raise WireError("tensor without data")
            t = torch.empty(shape, dtype=dtype, device="meta")
        else:
            index = e["b"]
            if type(index) is not int or not 0 <= index < len(self.blobs):
                raise WireError("malformed tensor")
            raw = self.blobs[index]
            itemsize = torch.empty((), dtype=dtype).element_size()
            if len(raw) != numel * itemsize:
                raise WireError("tensor size does not match its shape")
            if numel == 0:
                t = torch.empty(shape, dtype=dtype)
            else:
                t = torch.frombuffer(bytearray(raw), dtype=torch.uint8).view(dtype).reshape(shape)
            if self.on_device is not None:
                t = self.on_device(t, device)
        if self.grad and e.get("rg") is True and (dtype.is_floating_point or dtype.is_complex):
            t.requires_grad_(True)
            if type(e.get("k")) is int:
                self.leaves[e["k"]] = t
        return t

    def value(self, v, depth: int = 0):
        if depth > MAX_DEPTH:
            raise WireError("value nested too deeply")
        if v is None or isinstance(v, (bool, int, str)):
            return v
        if not isinstance(v, dict):
            raise WireError("malformed value")
        tag = v.get("T")
        if tag == "f":
            text = v.get("v")
            if not isinstance(text, str):
                raise WireError("malformed float")
            return float(text) if text in ("nan", "inf", "-inf") else float.fromhex(text)
        if tag == "tensor":
            return self.tensor(v)
        if tag == "int":
            text = v.get("v")
            if not isinstance(text, str) or len(text) > MAX_INT_BITS // 4 + 3:
                raise WireError("malformed int")
            try:
                return int(text, 16)
            except ValueError:
                raise WireError("malformed int") from None
        if tag in ("tuple", "list"):
            items = v.get("v")
            if not isinstance(items, list):
                raise WireError("malformed sequence")
            out = [self.value(x, depth + 1) for x in items]
            return tuple(out) if tag == "tuple" else out
        if tag == "dict":
            keys, values = v.get("k"), v.get("v")
            if not isinstance(keys, list) or not isinstance(values, list) or len(keys) != len(values):
                raise WireError("malformed dict")
            out = {}
            for k, x in zip(keys, values):
                out[self._key(k, depth)] = self.value(x, depth + 1)
            return out
        if tag == "set":
            items = v.get("v")
            if not isinstance(items, list):
                raise WireError("malformed set")
            out = {self._key(x, depth) for x in items}
            return frozenset(out) if v.get("frozen") is True else out
        if tag == "dtype":
            dtype = DTYPES.get(v.get("v"))
            if dtype is None:
                raise WireError("unknown dtype")
            return dtype
        if tag == "device":
            try:
                return torch.device(str(v.get("v")))
            except RuntimeError:
                raise WireError("unknown device") from None
        if tag == "complex":
            real, imag = (self.value(x, depth + 1) for x in v.get("v", [None, None]))
            return complex(real, imag)
        if tag in ("ndarray", "npscalar", "frame", "series"):
            try:
                return self._library_value(v, tag, depth)
            except (TypeError, ValueError, OverflowError) as exc:   # what numpy or pandas refuse
                raise WireError(f"malformed {tag}") from exc
        if tag == "ref" and self.on_ref is not None:
            if type(v.get("id")) is not int:
                raise WireError("malformed reference")
            return self.on_ref(v)
        raise WireError(f"unknown value tag {tag!r}")


    def _key(self, k, depth: int):
        """A dict key or set item: a hashable plain value (a tuple of such, a NumPy scalar)."""
        key = self.value(k, depth + 1)
        plain = isinstance(key, (str, int, float, bool, complex, tuple, frozenset, type(None))) \
            or (isinstance(k, dict) and k.get("T") == "npscalar")
        try:
            hash(key)
        except TypeError:
            plain = False
        if not plain:
            raise WireError("malformed dict key")
        return key

    def array(self, e: dict):
        import numpy as np

        dtype, shape, index = e.get("dtype"), e.get("shape"), e.get("b")
        if dtype not in NP_DTYPES or not isinstance(shape, list) or len(shape) > MAX_DIMS \
                or not all(type(n) is int and 0 <= n for n in shape) \
                or type(index) is not int or not 0 <= index < len(self.blobs):
            raise WireError("malformed array")
        raw = self.blobs[index]
        if len(raw) != math.prod(shape) * np.dtype(dtype).itemsize:
            raise WireError("array size does not match its shape")
        return np.frombuffer(raw, dtype=dtype).reshape(shape).copy()

    def _column(self, e, depth: int):
        if isinstance(e, dict) and e.get("T") == "ndarray":
            return self.array(e)
        values = self.value(e, depth + 1)
        if not isinstance(values, list):
            raise WireError("malformed column")
        return values

    def _library_value(self, v: dict, tag: str, depth: int):
        if tag == "ndarray":
            return self.array(v)
        if tag == "npscalar":
            import numpy as np

            dtype, item = v.get("dtype"), self.value(v.get("v"), depth + 1)
            if dtype not in NP_DTYPES or not isinstance(item, (bool, int, float, complex)):
                raise WireError("malformed numpy scalar")
            return np.array(item, dtype=dtype)[()]
        import pandas as pd

        index = self._column(v.get("index"), depth)
        if tag == "series":
            data = self._column(v.get("data"), depth)
            if len(data) != len(index):
                raise WireError("malformed series")
            return pd.Series(data, index=index, name=self.value(v.get("name"), depth + 1))
        columns, data = v.get("columns"), v.get("data")
        if not isinstance(columns, list) or not isinstance(data, list) or len(columns) != len(data):
            raise WireError("malformed frame")
        data = [self._column(c, depth) for c in data]
        if any(len(c) != len(index) for c in data):
            raise WireError("malformed frame")
        frame = pd.DataFrame({i: c for i, c in enumerate(data)}, index=index)
        frame.columns = [self.value(c, depth + 1) for c in columns] if columns else frame.columns
        return frame


def pack(message: dict, blobs: list[bytes]) -> bytes:
    header = json.dumps(dict(message, blobs=[len(b) for b in blobs]), separators=(",", ":")).encode()
    return struct.pack("<QQ", len(header), sum(len(b) for b in blobs)) + header + b"".join(blobs)


def _read_exactly(fd: int, n: int, alive: int | None = None) -> bytes:
    chunks, left = [], n
    while left:
        if alive is not None:
            _wait_for_data(fd, alive)
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            raise EOFError("the other side closed the connection")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def send(fd: int, message: dict, blobs: list[bytes] = ()) -> None:
    data = memoryview(pack(message, list(blobs)))
    while data:
        written = os.write(fd, data)
        data = data[written:]


def _wait_for_data(fd: int, alive: int) -> None:
    """Wait until `fd` can be read; EOFError if the process behind the pidfd `alive` has ended
    and left nothing more. A process it started may hold the pipe's other end open (a setsid
    child that sleeps): the end of the pipe then never comes, and the sender's death is the end."""
    poller = select.poll()  # (not select.select: it cannot watch a descriptor numbered 1024 or more)
    poller.register(fd, select.POLLIN)
    poller.register(alive, select.POLLIN)
    if fd not in {ready for ready, _ in poller.poll()}:
        poller.unregister(alive)
        if not poller.poll(0):
            raise EOFError("the other side ended")


def receive(fd: int, alive: int | None = None) -> tuple[dict, list[bytes]]:
    """One message from `fd`: (header, blobs). Raises EOFError or WireError. `alive`: a pidfd of
    the sending process (os.pidfd_open), whose end is the end of the connection."""
    header_len, blob_len = struct.unpack("<QQ", _read_exactly(fd, 16, alive))
    if header_len > MAX_HEADER or blob_len > MAX_BLOBS:
        raise WireError("message too large")
    try:
        header = json.loads(_read_exactly(fd, header_len, alive))
    except (ValueError, UnicodeDecodeError):
        raise WireError("malformed message") from None
    sizes = header.get("blobs") if isinstance(header, dict) else None
    if not isinstance(sizes, list) or not all(type(n) is int and n >= 0 for n in sizes) or sum(sizes) != blob_len:
        raise WireError("malformed message")
    data = _read_exactly(fd, blob_len, alive)
    blobs, offset = [], 0
    for n in sizes:
        blobs.append(data[offset:offset + n])
        offset += n
    return header, blobs


# ---------------------------------------------------------------------------------------------
# the messages: one typed schema per request and answer, checked on arrival
#
# A message's header is its fields plus `values` (data encoded by Encoder, decoded by the
# receiver's Decoder, whose references only the receiver can resolve). `parse` turns a header
# into its message class, or raises WireError: an unknown op, a missing, extra or ill-typed
# field, or a value name the message does not carry.

@dataclasses.dataclass
class Message:
    """Fields common to every message."""

    op: ClassVar[str] = ""
    VALUES: ClassVar[frozenset | None] = frozenset()   # the names `values` may hold (None: any)
    values: dict = dataclasses.field(default_factory=dict)

    def header(self) -> dict:
        """The message as JSON-able data (what `send` writes), without fields left at None."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        header = {k: v for k, v in fields.items() if v is not None}
        if self.op:
            header["op"] = self.op
        return header


@dataclasses.dataclass
class Request(Message):
    """A request (to either side); the answer follows before any other request of the asker's."""


@dataclasses.dataclass
class GraderRequest(Request):
    """A request of the grader's. `before`: requests that need no answer of their own (Reset,
    Restore, Substitute: `RIDES_ALONG`) ride along with the next request, as headers whose values
    are in this message; the worker serves them first, in order."""

    before: list | None = None


@dataclasses.dataclass
class CallContext(GraderRequest):
    """The grader's context for a call in the worker: grad mode, forbidden calls, the strict device."""

    VALUES: ClassVar[frozenset] = frozenset({"target", "args", "kwargs", "rng"})
    grad: bool = False                 # autograd goes through: the worker keeps the graph
    grad_mode: bool = False            # torch.is_grad_enabled() in the test
    forbidden: dict | None = None      # {problem: [qualified names]} the call may not use
    device: str | None = None          # the strict device check's device
    state: dict | None = None          # a module's state (common.encode_state) for a forward


# ---- the grader's requests, served by the worker (server.RequestServer) ----
# (each may carry `before`: see GraderRequest)

@dataclasses.dataclass
class Reset(GraderRequest):
    """Forget the objects of the last test (the imported modules stay)."""
    op: ClassVar[str] = "reset"


@dataclasses.dataclass
class Import(GraderRequest):
    """Import the submission's `module`."""
    op: ClassVar[str] = "import"
    module: str = ""


@dataclasses.dataclass
class StandIn(GraderRequest):
    """Make `module` a module of stubs of the grader's `names` for the other files' imports."""
    op: ClassVar[str] = "stand_in"
    VALUES: ClassVar[frozenset] = frozenset({"names"})
    module: str = ""


@dataclasses.dataclass
class Name(GraderRequest):
    """`module.name` of the submission (answer: `value`). A function or class stays known to the
    worker past Reset, and the worker says when `module.name` no longer names it (FromWorker's
    `unbound`): until then the grader may use it again without asking."""
    op: ClassVar[str] = "name"
    module: str = ""
    name: str = ""


@dataclasses.dataclass
class KitName(GraderRequest):
    """`autograder.kit.<module>.<name>` of the worker's own copy of the kit (answer: `value`), for a
    test to run a loop where the student's model lives; only the names the module lists in
    `RUNS_IN_WORKER` (kit/training.py's `fit_by_name`: one call in place of a round trip a step)."""
    op: ClassVar[str] = "kit_name"
    module: str = ""
    name: str = ""


@dataclasses.dataclass
class Substitute(GraderRequest):
    """Put the grader's `names` in place of the student's in `module` until the next Restore."""
    op: ClassVar[str] = "substitute"
    VALUES: ClassVar[frozenset] = frozenset({"names"})
    module: str = ""


@dataclasses.dataclass
class Restore(GraderRequest):
    """Undo every Substitute."""
    op: ClassVar[str] = "restore"


@dataclasses.dataclass
class Call(CallContext):
    """Call `target` (a module's forward after applying `state`) on `args`, `kwargs`; answer:
    `result`, and `rng` (random state drawn from), `changed` (inputs changed in place), and with
    `grad`, the kept graph's `graph` token and which outputs require grad (`rg`)."""
    op: ClassVar[str] = "call"


@dataclasses.dataclass
class Method(CallContext):
    """Call the public method `name` of `target` (an object of the worker's)."""
    op: ClassVar[str] = "method"
    name: str = ""


@dataclasses.dataclass
class Backward(GraderRequest):
    """Backward through a kept graph with the outputs' `grads`; answer: `grads` of the leaves, by key."""
    op: ClassVar[str] = "backward"
    VALUES: ClassVar[frozenset] = frozenset({"grads"})
    graph: int = 0
    epoch: int | None = None


HOOK_VALUES = frozenset({"args", "kwargs", "output", "failed", "grad_input", "grad_output"})


@dataclasses.dataclass
class RunHooks(GraderRequest):
    """Run the hooks student code put on the stub `target` for a call the grader ran; `given`: the
    grader's ids of the hooked tensors (one handed back unchanged goes back as the grader's)."""
    op: ClassVar[str] = "run_hooks"
    VALUES: ClassVar[frozenset] = HOOK_VALUES | {"target"}
    kind: str = ""
    given: list = dataclasses.field(default_factory=list)


# ---- the worker's requests, served by the grader (client.SandboxClient) ----

@dataclasses.dataclass
class Callback(Request):
    """Call the grader's object `id` (a stub's forward, a stand-in) on `args`, `kwargs`."""
    op: ClassVar[str] = "call"
    VALUES: ClassVar[frozenset] = frozenset({"args", "kwargs"})
    id: int = 0
    grad: bool = False
    grad_mode: bool | None = None


@dataclasses.dataclass
class CallbackBackward(Request):
    """Backward through a graph the grader kept for a Callback."""
    op: ClassVar[str] = "backward"
    VALUES: ClassVar[frozenset] = frozenset({"grads"})
    graph: int = 0


@dataclasses.dataclass
class Hook(Request):
    """Run the grader's hooks on its mirror `id` of a worker module, for a call run in the worker."""
    op: ClassVar[str] = "hook"
    VALUES: ClassVar[frozenset] = HOOK_VALUES
    id: int = 0
    kind: str = ""
    given: list = dataclasses.field(default_factory=list)


# ---- answers ----

@dataclasses.dataclass
class Answer(Message):
    """The grader's answer to a worker's request: values, or the error its object raised."""
    VALUES: ClassVar[None] = None
    re: bool = True
    ok: bool | None = None
    error: str | None = None


@dataclasses.dataclass
class FromWorker(Message):
    """What rides along with every message of the worker's: the lists it changed (`shared`: id ->
    items), which kinds of hooks are on its stubs (`stub_hooks`), forbidden calls it saw, and the
    names looked up (Name) that now name another object (`unbound`: [module, name] pairs)."""
    shared: dict = dataclasses.field(default_factory=dict)
    stub_hooks: dict = dataclasses.field(default_factory=dict)
    violations: list = dataclasses.field(default_factory=list)
    unbound: list = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class WorkerAnswer(FromWorker):
    """The worker's answer: values, or what went wrong (`error`: kind, type, message, traceback),
    and how many characters of output were cut (`dropped`)."""
    VALUES: ClassVar[None] = None
    re: bool = True
    ok: bool | None = None
    error: dict | None = None
    dropped: int | None = None


@dataclasses.dataclass
class WorkerCallback(Callback, FromWorker):
    pass


@dataclasses.dataclass
class WorkerCallbackBackward(CallbackBackward, FromWorker):
    pass


@dataclasses.dataclass
class WorkerHook(Hook, FromWorker):
    pass


RIDES_ALONG = (Reset, Restore, Substitute)
TO_WORKER = {cls.op: cls
             for cls in (Reset, Import, StandIn, Name, KitName, Substitute, Restore, Call, Method, Backward,
                         RunHooks)}
FROM_WORKER = {cls.op: cls for cls in (WorkerCallback, WorkerCallbackBackward, WorkerHook)}


def _matches(value, annotation) -> bool:
    """Whether a JSON value has the type a schema field names (bool is not an int here)."""
    if isinstance(annotation, types.UnionType):
        return any(_matches(value, a) for a in typing.get_args(annotation))
    if annotation is type(None):
        return value is None
    if annotation is int:
        return type(value) is int
    return isinstance(value, annotation)


@functools.cache
def _schema(cls: type) -> dict:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def parse(header: dict, to_worker: bool) -> Message:
    """The typed message for a received header (from the grader when `to_worker`, else from the
    worker). Raises WireError for an unknown op or a malformed message."""
    if not isinstance(header, dict):
        raise WireError("malformed message")
    fields = {k: v for k, v in header.items() if k not in ("blobs", "op")}
    if header.get("re") is True:
        cls = Answer if to_worker else WorkerAnswer
        if "op" in header:
            raise WireError("malformed answer")
    else:
        cls = (TO_WORKER if to_worker else FROM_WORKER).get(header.get("op"))
        if cls is None:
            raise WireError(f"unknown request {str(header.get('op'))[:50]!r}")
    schema = _schema(cls)
    for name, value in fields.items():
        if name not in schema or not _matches(value, schema[name]):
            raise WireError(f"malformed {cls.op or 'answer'} message: field {name[:50]!r}")
    values = fields.get("values", {})
    if cls.VALUES is not None and not set(values) <= cls.VALUES:
        raise WireError(f"malformed {cls.op or 'answer'} message: values {sorted(set(values) - cls.VALUES)[:5]}")
    return cls(**fields)


def send_message(fd: int, message: Message, blobs: list[bytes] = ()) -> None:
    """Send a typed message (its header) and its tensor bytes."""
    send(fd, message.header(), blobs)
