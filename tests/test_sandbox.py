"""The sandbox's parts on their own: the wire format, the worker's process, mirrors and callbacks."""
import os
import pathlib
import re
import struct
import time

import pytest
import torch
import torch.nn as nn

from autograder.sandbox import protocol
from autograder.sandbox.process import OUTPUT_LIMIT
from autograder.kit.plugin import STDOUT_LIMIT
from autograder.kit.checks import GradingFailure
from autograder.sandbox.client import RemoteError, WorkerCrash
from autograder.kit.torchkit import strict_device


# ---------------------------------------------------------------------------------------------
# protocol.py: only plain data, and nothing malformed gets through

def roundtrip(value):
    encoder = protocol.Encoder()
    body = encoder.value(value)
    read, write = os.pipe()
    try:
        protocol.send(write, {"v": body}, encoder.blobs)
        message, blobs = protocol.receive(read)
    finally:
        os.close(read), os.close(write)
    return protocol.Decoder(blobs).value(message["v"])


def test_plain_values_survive_the_wire():
    t = torch.arange(6, dtype=torch.float64).reshape(2, 3)
    value = {"t": t, "b": torch.tensor([True, False]), "h": torch.ones(2, dtype=torch.bfloat16), "s": torch.tensor(3),
             "x": (1, 2.5, float("nan"), float("-inf"), "text", None, [True]), "dtype": torch.float16,
             "meta": torch.empty(4, 5, device="meta"), "empty": torch.zeros(0, 3)}
    back = roundtrip(value)
    assert torch.equal(back["t"], t) and back["t"].dtype == torch.float64
    assert back["b"].tolist() == [True, False] and back["h"].dtype == torch.bfloat16 and back["s"].item() == 3
    assert back["x"][:2] == (1, 2.5) and back["x"][2] != back["x"][2]
    assert back["x"][3:] == (float("-inf"), "text", None, [True])
    assert back["dtype"] is torch.float16 and back["meta"].device.type == "meta" and back["empty"].shape == (0, 3)


def test_a_tensor_subclass_arrives_as_a_plain_tensor():
    class Liar(torch.Tensor):
        pass
    back = roundtrip(torch.zeros(3).as_subclass(Liar))
    assert type(back) is torch.Tensor


@pytest.mark.parametrize("bad", [
    {"T": "tensor", "dtype": "float32", "shape": [4], "b": 0},          # 4 floats, 3 bytes
    {"T": "tensor", "dtype": "object", "shape": [1], "b": 0},
    {"T": "tensor", "dtype": "float32", "shape": [-1], "b": 0},
    {"T": "tensor", "dtype": "float32", "shape": [1], "b": 7},
    {"T": "pickle", "v": "gASVAAAAAAAAAAB9lC4="},
    {"T": "ref", "id": 1},                                              # no objects on this side
    [1, 2],
])
def test_malformed_values_are_rejected(bad):
    with pytest.raises(protocol.WireError):
        protocol.Decoder([b"abc"]).value(bad)


def test_numpy_and_pandas_values_survive_the_wire():
    import numpy as np
    import pandas as pd

    frame = pd.DataFrame({"marker": ["guide", "metal"], "ix": [3, 4], "x": [0.5, float("nan")],
                          "t": [torch.ones(2), None]}, index=[10, 20])
    value = {"a": np.arange(6, dtype=np.int32).reshape(2, 3), "f": np.float32(1.5), "d": np.float64(2.5),
             "b": np.bool_(True), "frame": frame, "series": pd.Series([1.0, 2.0], index=["a", "b"], name="s"),
             "empty": np.zeros((0, 2))}
    back = roundtrip(value)
    assert back["a"].dtype == np.int32 and back["a"].tolist() == [[0, 1, 2], [3, 4, 5]] and back["a"].flags.writeable
    assert type(back["f"]) is np.float32 and type(back["d"]) is np.float64 and type(back["b"]) is np.bool_
    assert list(back["frame"].columns) == ["marker", "ix", "x", "t"] and list(back["frame"].index) == [10, 20]
    assert back["frame"]["ix"].dtype == np.int64 and back["frame"]["marker"].tolist() == ["guide", "metal"]
    assert torch.equal(back["frame"]["t"][10], torch.ones(2)) and back["frame"]["t"][20] is None
    assert back["series"].name == "s" and back["series"].to_dict() == {"a": 1.0, "b": 2.0}
    assert back["empty"].shape == (0, 2)


@pytest.mark.parametrize("bad", [
    {"T": "ndarray", "dtype": "float64", "shape": [2], "b": 0},          # 16 bytes wanted, 3 given
    {"T": "ndarray", "dtype": "object", "shape": [1], "b": 0},
    {"T": "ndarray", "dtype": "float64", "shape": [-2], "b": 0},
    {"T": "npscalar", "dtype": "float64", "v": "1.0"},
    {"T": "frame", "columns": ["a"], "index": {"T": "list", "v": [1, 2]}, "data": [{"T": "list", "v": [1]}]},
    {"T": "series", "name": None, "index": {"T": "list", "v": []}, "data": {"T": "list", "v": [1]}},
    {"T": "npscalar", "dtype": "int8", "v": 100000},
])
def test_malformed_arrays_and_frames_are_rejected(bad):
    with pytest.raises(protocol.WireError):
        protocol.Decoder([b"abc"]).value(bad)


def test_subclasses_of_plain_containers_arrive_as_the_plain_type():
    import collections

    import numpy as np

    Pair = collections.namedtuple("Pair", "first second")

    class Merges(list):
        pass

    class Lying(dict):  # what it holds travels, whatever its methods say
        def items(self):
            return [("forged", 1)]

        def __iter__(self):
            return iter(["forged"])

    ordered = collections.OrderedDict(a=1, b=2)
    ordered.move_to_end("a")
    value = {"counter": collections.Counter("abca"), "default": collections.defaultdict(int, {("a", "b"): 3}),
             "ordered": ordered, "pair": Pair("l", "o"), "merges": Merges([("l", "o")]), "lying": Lying(x=2),
             "max": torch.tensor([[1.0, 3.0]]).max(-1), "sets": ({1, (2, "b")}, frozenset({"x"})),
             "ints": (2 ** 70, -(3 ** 9000)),
             "numpy_keys": {np.int64(3): np.bool_(True), np.str_("k"): np.float32(0.5)}}
    back = roundtrip(value)
    assert type(back["counter"]) is dict and back["counter"] == {"a": 2, "b": 1, "c": 1}
    assert type(back["default"]) is dict and back["default"] == {("a", "b"): 3}
    assert type(back["ordered"]) is dict and list(back["ordered"]) == ["b", "a"]
    assert type(back["pair"]) is tuple and back["pair"] == ("l", "o")
    assert type(back["merges"]) is list and back["merges"] == [("l", "o")]
    assert back["lying"] == {"x": 2}
    assert type(back["max"]) is tuple and back["max"][0].tolist() == [3.0] and back["max"][1].tolist() == [1]
    assert back["sets"] == ({1, (2, "b")}, frozenset({"x"})) and type(back["sets"][1]) is frozenset
    assert back["ints"] == (2 ** 70, -(3 ** 9000))
    assert back["numpy_keys"] == {3: True, "k": 0.5} and type(next(iter(back["numpy_keys"]))) is np.int64


@pytest.mark.parametrize("bad", [
    {"T": "int", "v": "0xzz"},
    {"T": "int", "v": 12},
    {"T": "set", "v": [{"T": "list", "v": [1]}]},                        # an unhashable item
    {"T": "dict", "k": [{"T": "tuple", "v": [{"T": "list", "v": []}]}], "v": [1]},   # a key that cannot be hashed
    {"T": "dict", "k": [{"T": "tensor", "dtype": "float32", "shape": [0], "b": 0}], "v": [1]},
])
def test_malformed_ints_sets_and_keys_are_rejected(bad):
    with pytest.raises(protocol.WireError):
        protocol.Decoder([b""]).value(bad)


def test_object_arrays_are_refused():
    import numpy as np

    with pytest.raises(protocol.WireError):
        protocol.Encoder().value(np.array([object()]))


def test_oversized_and_broken_messages_are_rejected():
    read, write = os.pipe()
    try:
        os.write(write, struct.pack("<QQ", protocol.MAX_HEADER + 1, 0))
        with pytest.raises(protocol.WireError):
            protocol.receive(read)
        header = b'{"blobs": [5]}'
        os.write(write, struct.pack("<QQ", len(header), 4) + header + b"1234")
        with pytest.raises(protocol.WireError):
            protocol.receive(read)
    finally:
        os.close(read), os.close(write)


# ---------------------------------------------------------------------------------------------
# protocol.py's messages: one schema per request and answer; anything else is a protocol error

def test_every_message_round_trips_through_its_schema():
    for to_worker, table in ((True, protocol.TO_WORKER), (False, protocol.FROM_WORKER)):
        for op, cls in table.items():
            message = cls()
            parsed = protocol.parse(dict(message.header(), blobs=[]), to_worker)
            assert type(parsed) is cls and parsed == message, op
    answer = protocol.WorkerAnswer(error={"kind": "student"}, dropped=3)
    assert protocol.parse(answer.header(), to_worker=False) == answer


@pytest.mark.parametrize("header, to_worker", [
    ({"op": "explode"}, True),                                  # an unknown op
    ({"op": "hook", "id": 1, "kind": "pre", "given": []}, True),  # a worker's request sent to the worker
    ({"op": "reset"}, False),                                   # and the grader's sent to the grader
    ({"op": "import", "module": 3}, True),                      # a field of the wrong type
    ({"op": "call", "grad": 1}, True),                          # 1 is not a bool
    ({"op": "backward", "graph": True}, True),                  # nor True an int
    ({"op": "name", "module": "m", "name": "f", "extra": 1}, True),  # a field the schema lacks
    ({"op": "call", "values": {"target": 1, "evil": 2}}, True),  # a value the request does not carry
    ({"op": "call", "values": [1]}, True),
    ({"op": "call", "id": 1, "shared": []}, False),
    ({"re": True, "op": "call"}, False),
    ({"re": True, "error": "a worker's error is a dict"}, False),
    ({"re": True, "dropped": "many"}, False),
    ([], True),
])
def test_unknown_ops_and_malformed_messages_are_protocol_errors(header, to_worker):
    with pytest.raises(protocol.WireError):
        protocol.parse(header, to_worker)


# ---------------------------------------------------------------------------------------------
# common.py: what both sides do alike

def test_a_module_tree_travels_with_its_tied_weights():
    from autograder.sandbox.common import decode_tensors, encode_tensors

    first, second = nn.Linear(2, 2), nn.Linear(2, 2)
    second.weight = first.weight
    first.register_buffer("count", torch.tensor(3))
    encoder, seen = protocol.Encoder(), {}
    nodes = [encode_tensors(first, encoder, seen, "first."), encode_tensors(second, encoder, seen, "second.")]
    assert nodes[1]["params"]["weight"] == {"T": "tie", "path": "first.weight"}
    decoder, found = protocol.Decoder(encoder.blobs), {}
    first_got, second_got = (decode_tensors(node, decoder, found, path)
                             for node, path in zip(nodes, ("first.", "second.")))
    weight = first_got["params"]["weight"]
    assert isinstance(weight, nn.Parameter) and second_got["params"]["weight"] is weight
    assert torch.equal(weight, first.weight) and torch.equal(second_got["params"]["bias"], second.bias)
    assert first_got["buffers"]["count"].item() == 3 and weight in decoder.leaves.values()  # a leaf of autograd
    with pytest.raises(protocol.WireError):
        decode_tensors({"params": {"w": {"T": "tie", "path": "nowhere"}}}, decoder, found, "")


def test_the_backward_bridge_carries_gradients_back():
    from autograder.sandbox.common import RemoteCall, backward_kept

    w, kept = torch.randn(3, requires_grad=True), {}

    def send():  # the other side (here in the bridge's forward: grad mode is off): its own leaf and graph
        there = w.detach().clone().requires_grad_()
        with torch.enable_grad():
            out = (there * 2).sum()
        kept.update(outputs=[out], leaves={0: there})
        return {"result": (out.detach(), "plain"), "graph": 1, "rg": [True]}

    result, text = RemoteCall([w], send, lambda graph, grads: backward_kept(kept["outputs"], kept["leaves"], grads))()
    (result * 3).backward()
    assert text == "plain" and torch.equal(w.grad, torch.full((3,), 6.0))
    with pytest.raises(protocol.WireError, match="malformed gradient"):
        out, _ = RemoteCall([w], send, lambda graph, grads: {0: torch.zeros(2)})()
        out.backward()


def test_the_worker_side_imports_only_the_kit_the_protocol_and_the_shared_code():
    """server.py and common.py run in the worker: nothing of the grader's (client.py included)."""
    import ast

    import autograder.sandbox as package

    allowed = {"server.py": {"kit", "protocol", "common"}, "common.py": {"protocol"}}
    for name, imports in allowed.items():
        tree = ast.parse((pathlib.Path(package.__file__).parent / name).read_text())
        relative = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level:
                relative |= {f"{node.module}".split(".")[0]} if node.module else {a.name for a in node.names}
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                module = node.module if isinstance(node, ast.ImportFrom) else node.names[0].name
                assert not module.startswith("autograder"), (name, module)
        assert relative <= imports, (name, relative - imports)


def test_the_server_answers_a_malformed_request_with_an_error(tmp_path):
    from autograder.sandbox.server import RequestServer

    (tmp_path / "student.py").write_text("VALUE = 7\n")
    to_server, to_client = os.pipe(), os.pipe()
    server = RequestServer(to_server[0], to_client[1], str(tmp_path))
    try:
        riding = {"op": "name", "module": "student", "name": "VALUE"}
        for header, error in (({"op": "explode", "values": {}}, "unknown request 'explode'"),
                              ({"op": "name", "module": "student", "name": 7}, "field 'name'"),
                              (dict(riding, before=[{"op": "import", "module": "x"}]), "'import' request cannot ride"),
                              (dict(riding, before=[{"op": "reset", "before": [{"op": "reset"}]}]), "cannot ride"),
                              (dict(riding, before=[{"op": "reset", "bad": 1}]), "field 'bad'")):
            server.serve(header, [])
            answer = protocol.parse(protocol.receive(to_client[0])[0], to_worker=False)
            assert answer.error["type"] == "WireError" and error in answer.error["message"]
        server.serve(dict(riding, before=[{"op": "reset"}, {"op": "restore"}]), [])
        answer = protocol.parse(protocol.receive(to_client[0])[0], to_worker=False)
        assert answer.error is None and answer.values == {"value": 7}
    finally:
        for fd in (*to_server, *to_client):
            os.close(fd)


# ---------------------------------------------------------------------------------------------
# the worker, on a small submission

class Scaled(nn.Module):
    """forward(x, scale=1.0) = x * scale; raises on a negative first element."""

    def forward(self, x, scale=1.0):
        if x.reshape(-1)[0] < 0:
            raise ValueError("negative input")
        return x * scale


SUBMISSION = '''
import os, sys, time, torch
import torch.nn as nn

def double(x):
    return x * 2

def scale_in_place(x):
    x.mul_(3)

def shout(text):
    print(text * 5000)
    return len(text)

def flood(n, also_stderr=False):
    print("head" + "x" * n)
    if also_stderr:
        print("e" * n, file=sys.__stderr__)
    return n

def flood_raw(n):
    data = memoryview(b"y" * n)
    while data:                      # as a writer does: until every byte is written
        data = data[os.write(1, data):]
    return n

def many_lines(n):
    for i in range(n):
        print(i)
    return n

def whoami():
    return {"uid": os.getuid(), "root": sorted(os.listdir("/")), "cwd": os.getcwd()}

def oom_score_adj():
    with open("/proc/self/oom_score_adj") as f:
        return int(f.read())

def crash():
    os._exit(7)

def fail():
    raise ValueError("bad shape (2, 3)")

def forge(header):
    """Send the grader a message of one's own, as hostile code in the worker could."""
    import gc
    from autograder.sandbox import protocol
    from autograder.sandbox.server import RequestServer
    server = next(o for o in gc.get_objects() if isinstance(o, RequestServer))
    protocol.send(server.out_fd, header)
    time.sleep(5)

def spawn_daemon(path):
    if os.fork() == 0:
        os.setsid()
        while True:
            time.sleep(0.05)
    return True

def decode(model, x):
    return model(x).argmax(-1), model.seq_len

def hook(module, storage):
    return module.register_forward_hook(lambda m, i, o: storage.append(o.detach()))

# every form of PyTorch's hook API, on a module of the grader's
def hook_with_kwargs(module, storage):
    def record(m, args, kwargs, output):
        storage.append((len(args), sorted(kwargs), output.detach()))
    return module.register_forward_hook(record, with_kwargs=True)

def hooks_in_order(module, storage):
    module.register_forward_hook(lambda m, i, o: storage.append("appended"))
    return module.register_forward_hook(lambda m, i, o: storage.append("prepended"), prepend=True)

def hooks_always_called(module, storage):
    module.register_forward_hook(lambda m, i, o: storage.append("plain"))
    return module.register_forward_hook(lambda m, i, o: storage.append(("always", o)), always_call=True)

def pre_hooks(module, storage):
    def double_input(m, args):
        storage.append(args[0].detach())
        return args[0] * 2              # not a tuple: PyTorch wraps it
    def set_scale(m, args, kwargs):
        storage.append(sorted(kwargs))
        return args, dict(kwargs, scale=3.0)
    module.register_forward_pre_hook(double_input)
    return module.register_forward_pre_hook(set_scale, with_kwargs=True)

def pre_hook_unchanged(module, storage):
    return module.register_forward_pre_hook(lambda m, args, kwargs: (args, kwargs), with_kwargs=True)

def forward_hook_returns_output(module, storage):
    def keep(m, inputs, output):
        storage.append(output.detach())
        return output
    return module.register_forward_hook(keep)

def backward_hooks(module, storage):
    def before(m, grad_output):
        storage.append(("pre", grad_output[0].detach()))
        return (grad_output[0] * 10,)
    def after(m, grad_input, grad_output):
        storage.append(("full", grad_input[0].detach(), grad_output[0].detach()))
        return (grad_input[0] + 1,)
    module.register_full_backward_pre_hook(before)
    return module.register_full_backward_hook(after)

def backward_hook_run_here(module, storage, x):
    module.register_full_backward_hook(lambda m, gi, go: storage.append(go[0].detach()))
    x = x.clone().requires_grad_()
    module(x).sum().backward()
    return x.grad

class Recorder:
    def __init__(self, storage):
        self.storage = storage
    def __call__(self, module, inputs, output):
        self.storage.append(("object", output.detach()))

def record_into(storage, tag, module, inputs, output):
    storage.append((tag, output.detach()))

def hook_object_and_partial(module, storage):
    import functools
    module.register_forward_hook(Recorder(storage))
    return module.register_forward_hook(functools.partial(record_into, storage, "partial"))

class BothHandles:
    """Removes two hooks; also a context manager."""
    def __init__(self, *handles):
        self.handles = handles
    def remove(self):
        for h in self.handles:
            h.remove()
    def __enter__(self):
        return self
    def __exit__(self, *exc):
        self.remove()

def hook_with_own_handle(module, storage):
    return BothHandles(module.register_forward_hook(lambda m, i, o: storage.append(o.detach())),
                       module.register_forward_pre_hook(lambda m, i: None))

def frame_and_array(df, a):
    return df.assign(total=df["x"] + a.sum()), a * 2, type(df).__name__, type(a).__name__

def run_encoder(model, tokenizer, sentence):
    import sys
    model.eval()
    encoded = tokenizer(sentence, return_tensors="pt")
    states = model(**encoded, output_hidden_states=True).hidden_states
    return (tokenizer.convert_ids_to_tokens(encoded["input_ids"][0]), states[-1], model.training,
            type(model).__name__, "autograder.sandbox.client" in sys.modules)

def containers(words):
    import collections
    import numpy as np
    Merge = collections.namedtuple("Merge", "first second")
    class Merges(list):
        pass
    counts = collections.Counter()
    for word, freq in words.items():
        for pair in zip(word, word[1:]):
            counts[pair] += freq
    default = collections.defaultdict(float)
    default[("a", "b")] += 0.5
    return {"counter": counts, "default": default, "ordered": collections.OrderedDict(sorted(counts.items())),
            "merges": Merges([Merge("a", "b")]), "scalars": [np.float64(0.25), np.int64(7), np.bool_(False)],
            "big": 2 ** 80, "arrived": [type(words).__name__, type(next(iter(words))).__name__]}

def libraries_loaded():
    import sys
    return sorted(name for name in ("transformers", "pandas") if name in sys.modules)

def fixed_device(x):
    return x + torch.ones(x.shape)

def new_generator(seed):
    return torch.Generator().manual_seed(seed)

def draw(generator):
    return torch.rand(3, generator=generator)

class Net(nn.Module):
    def __init__(self, d=4):
        super().__init__()
        self.proj = nn.Linear(d, d)
        self.inner = Inner(d)
        self.register_buffer("scale", torch.full((d,), 2.0))
        self.width = d

    def forward(self, x):
        return self.inner(self.proj(x)) * self.scale

class Inner(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.norm = nn.LayerNorm(d)
        self.drop = nn.Dropout(0.5)

    def forward(self, x):
        return self.drop(self.norm(x))

class Scaled(nn.Module):
    def forward(self, x, scale=1.0):
        return x * scale

class Outer(nn.Module):
    def __init__(self):
        super().__init__()
        self.scaled = Scaled()

    def forward(self, x):
        return self.scaled(x, scale=2.0) + 1

def answer():
    return 1

def rebind_answer(value):
    global answer
    answer = lambda: value

class Tied(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(3, 3, bias=False)
        self.b = nn.Linear(3, 3, bias=False)
        self.b.weight = self.a.weight
        self.register_buffer("shift", torch.zeros(3))

    def forward(self, x):
        return self.a(x) + self.b(x) + self.shift

class Drifting(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.ones(3))

    def forward(self, x):
        self.w.data.add_(1)
        return x * self.w
'''


def test_calls_and_in_place_changes(remote):
    x = torch.arange(4.0)
    assert torch.equal(remote.student.double(x), x * 2)
    remote.student.scale_in_place(x)
    assert x.tolist() == [0.0, 3.0, 6.0, 9.0]  # as if the call had run here


def test_an_object_that_stays_in_the_worker_is_named_by_its_type_in_messages(remote):
    from autograder.kit.adapter import describe, describe_call

    generator = remote.student.new_generator(5)
    assert describe(generator) == "Generator" and describe(remote.student.double) == "double"
    assert describe_call("draw", (), {"generator": generator}) == "draw(generator=Generator)"
    assert torch.equal(remote.student.draw(generator), torch.rand(3, generator=torch.Generator().manual_seed(5)))


def test_student_exceptions_keep_their_type_and_message(remote):
    with pytest.raises(ValueError, match=r"bad shape \(2, 3\)") as info:
        remote.student.fail()
    assert isinstance(info.value, RemoteError) and 'in fail' in info.value.student_traceback


def test_output_is_cut(remote, capsys):
    assert remote.student.shout("ab") == 2
    printed = capsys.readouterr().out
    assert 0 < len(printed) < 5000 and "output cut" in printed


def cut_count(printed: str) -> int:
    found = re.findall(r"output cut here: (\d+) more characters", printed)
    assert len(found) == 1, printed[-300:]
    return int(found[0])


def test_an_output_flood_is_cut_and_never_raised_in_student_code(remote, capsys):
    """tens of MB in one print (more than the worker's file size limit): the head is shown, with
    how much was cut; the print itself succeeds"""
    for also_stderr in (False, True):
        n = 20_000_000
        assert remote.student.flood(n, also_stderr) == n
        printed = capsys.readouterr().out
        assert printed.startswith("headxxx") and len(printed) < 2 * OUTPUT_LIMIT
        assert cut_count(printed) == (n + 5) + also_stderr * (n + 1) - OUTPUT_LIMIT


def test_raw_writes_to_the_output_count_per_call(remote, capsys):
    """writes past sys.stdout: the file size limit applies to one call's output, not to the sum"""
    n = 10 << 20
    for _ in range(3):
        assert remote.student.flood_raw(n) == n
        assert cut_count(capsys.readouterr().out) == n - OUTPUT_LIMIT


def test_many_small_prints(remote, capsys):
    start = time.monotonic()
    assert remote.student.many_lines(300_000) == 300_000
    assert time.monotonic() - start < 20
    total = sum(len(str(i)) + 1 for i in range(300_000))
    assert cut_count(capsys.readouterr().out) == total - OUTPUT_LIMIT


@pytest.mark.skipif(os.geteuid() != 0, reason="the worker changes user only when the grader is root")
def test_worker_runs_as_another_user_and_sees_little(remote):
    seen = remote.student.whoami()
    assert seen["uid"] != 0
    assert "root" not in seen["root"] and "home" not in seen["root"]
    assert not any(pathlib.Path(__file__).parent.parent.name == name for name in seen["root"])


@pytest.mark.skipif(not pathlib.Path("/proc/self/oom_score_adj").exists(), reason="Linux's /proc only")
def test_the_worker_is_the_first_process_killed_when_memory_runs_out(remote):
    """Student code can fill a small container before the worker's address-space limit stops it:
    the kernel's out-of-memory killer must then take the worker, not the grader."""
    from autograder.sandbox.zygote import OOM_SCORE_ADJ

    assert remote.student.oom_score_adj() == OOM_SCORE_ADJ
    assert int(pathlib.Path("/proc/self/oom_score_adj").read_text()) < OOM_SCORE_ADJ


def test_mirror_of_a_module_tree(remote):
    net = remote.student.Net(4)
    assert isinstance(net, nn.Module) and type(net).__name__ == "Net"
    assert isinstance(net.proj, nn.Linear) and net.proj.in_features == 4
    assert isinstance(net.inner.norm, nn.LayerNorm) and isinstance(net.inner.drop, nn.Dropout) and net.width == 4
    assert isinstance(net, remote.student.Net.raw)
    assert sorted(dict(net.named_parameters())) == ["inner.norm.bias", "inner.norm.weight", "proj.bias", "proj.weight"]
    # the same computation here, with the mirror's (changed) weights and modes
    with torch.no_grad():
        net.proj.weight.fill_(0.1)
    net.eval()
    x = torch.randn(3, 4)
    expected = nn.functional.layer_norm(x @ net.proj.weight.T + net.proj.bias, (4,)) * 2
    assert torch.allclose(net(x), expected, atol=1e-6)


def test_gradients_flow_through_the_worker(remote):
    net = remote.student.Net(4).eval()
    x = torch.randn(3, 4, requires_grad=True)
    net(x).pow(2).sum().backward()
    local = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4))
    local[0].load_state_dict(net.proj.state_dict())
    x2 = x.detach().clone().requires_grad_()
    (local(x2) * 2).pow(2).sum().backward()
    assert torch.allclose(x.grad, x2.grad, atol=1e-5)
    assert torch.allclose(net.proj.weight.grad, local[0].weight.grad, atol=1e-5)


# ---- what each forward runs on: the mirror's weights, however the test changed them --------

def _tied_expected(net, x):
    return x @ net.a.weight.T + x @ net.b.weight.T + net.shift


def _optimizer_step(net):
    optimizer = torch.optim.SGD(net.parameters(), lr=0.5)
    net(torch.randn(2, 3)).pow(2).sum().backward()
    optimizer.step()


WEIGHT_CHANGES = {
    "in place through .data": lambda net: net.a.weight.data.mul_(2),
    "copy_ under no_grad": lambda net: torch.no_grad()(net.b.weight.copy_)(torch.full((3, 3), 0.25)),
    "a buffer in place": lambda net: net.shift.add_(1),
    "an optimizer step": _optimizer_step,
    "load_state_dict": lambda net: net.load_state_dict({"a.weight": torch.eye(3), "b.weight": torch.eye(3),
                                                        "shift": torch.ones(3)}),
    "a new parameter (untied)": lambda net: setattr(net.a, "weight", nn.Parameter(torch.eye(3))),
    ".data replaced": lambda net: setattr(net.b.weight, "data", torch.full((3, 3), -1.0)),
}


@pytest.mark.parametrize("change", list(WEIGHT_CHANGES))
def test_weights_changed_between_calls_are_the_ones_used(remote, change):
    net, x = remote.student.Tied(), torch.randn(4, 3)
    assert net.a.weight is net.b.weight  # tied in the mirror as in the worker
    first = net(x)
    assert torch.allclose(first, _tied_expected(net, x), atol=1e-6)
    WEIGHT_CHANGES[change](net)
    second = net(x)
    assert not torch.allclose(first, second) and torch.allclose(second, _tied_expected(net, x), atol=1e-6)
    assert torch.allclose(net(x), second)  # and again, unchanged


def test_each_forward_runs_on_the_mirrors_weights(remote):
    """Student code that changes its own weights in the worker does not change the mirror's: each
    forward starts from what the grader holds."""
    net, x = remote.student.Drifting(), torch.ones(3)
    assert net(x).tolist() == [2.0] * 3 and net(x).tolist() == [2.0] * 3
    with torch.no_grad():
        net.w.fill_(5.0)
    assert net(x).tolist() == [6.0] * 3 and net.w.tolist() == [5.0] * 3


# ---- round trips the protocol saves -----------------------------------------------------------

def test_a_training_loop_runs_in_the_worker_in_one_call_and_trains_as_it_would_here(remote):
    """kit/training.fit_student_model: a sandboxed model is trained by the worker's copy of the loop,
    in one call where a loop here would take round trips at every step, from the mirror's weights,
    and ends with the weights, the losses and the outputs of the same loop run here."""
    from autograder.kit import adapter
    from autograder.kit.training import Budget, fit_student_model

    inputs = torch.randn(48, 4, generator=torch.Generator().manual_seed(1))
    targets = (inputs > 0).float()
    budget = Budget(epochs=3, batch_size=8, lr=1e-2, seed=2)
    trained, threads = [], torch.get_num_threads()
    torch.set_num_threads(1)  # as in the worker (and in a grading run): the same sums in the same order
    for submission in (adapter.Submission(remote.directory), remote):
        torch.manual_seed(0)
        net = submission.student.Net()
        with torch.no_grad():
            net.proj.bias.fill_(0.5)  # the grader's change to the mirror reaches the worker first
        before = remote.sandbox.messages()
        losses = fit_student_model(submission, net, inputs, targets, "bce_with_logits", budget)
        sent = remote.sandbox.messages() - before
        assert len(losses) == budget.epochs and losses[-1] < losses[0]
        trained.append((losses, {k: v.clone() for k, v in net.state_dict().items()}, net(inputs)))
    torch.set_num_threads(threads)
    steps = budget.epochs * len(inputs) // budget.batch_size
    assert sent <= 4 < steps  # the lookup, the call and their answers
    (here, weights_here, out_here), (there, weights_there, out_there) = trained
    assert here == there
    assert weights_here.keys() == weights_there.keys()
    assert all(torch.equal(weights_here[k], weights_there[k]) for k in weights_here)
    assert torch.equal(out_here, out_there)  # the worker's copy is trained, as the mirror is


def test_only_the_kit_functions_that_say_so_run_in_the_worker(remote):
    from autograder.sandbox.client import RemoteError

    with pytest.raises(RemoteError, match="does not run in the worker"):
        remote.sandbox.kit_function("training", "fit")
    with pytest.raises(RemoteError, match="malformed kit module name"):
        remote.sandbox.kit_function("..sandbox.server", "main")
    assert torch.equal(remote.student.double(torch.ones(2)), torch.full((2,), 2.0))  # the worker goes on


def times_ten(x):
    return x * 10


def test_reset_substitute_and_restore_ride_along_with_the_next_request(remote):
    sandbox, x = remote.sandbox, torch.ones(2)
    assert torch.equal(remote.student.double(x), 2 * x)
    before = sandbox.messages()
    sandbox.reset()
    with remote.substituted("student", {"shout": times_ten}):
        pass
    assert sandbox.messages() == before  # nothing sent yet
    assert torch.equal(remote.student.double(x), 2 * x)
    assert sandbox.messages() == before + 2  # the call and its answer, the others riding along
    with remote.substituted("student", {"double": times_ten}):
        assert torch.equal(remote.student.double(x), 10 * x)  # the grader's function, called here
    assert torch.equal(remote.student.double(x), 2 * x)  # restored


def test_a_function_or_class_is_asked_for_once_until_its_name_changes(remote):
    sandbox = remote.sandbox
    assert remote.student.answer() == 1 and isinstance(remote.student.Net(2), nn.Module)
    before = sandbox.messages()
    _ = remote.student.answer, remote.student.Net
    assert sandbox.messages() == before  # known: no message
    sandbox.reset()
    assert remote.student.answer() == 1  # still known after the test's objects are forgotten
    assert sandbox.messages() == before + 2
    remote.student.rebind_answer(2)  # student code rebinds the name: the worker says so
    assert remote.student.answer() == 2
    remote.student.rebind_answer(3)
    assert remote.student.answer() == 3


def test_a_grader_module_is_described_to_the_worker_once_per_test(remote):
    class Model(nn.Module):
        seq_len = 3

        def forward(self, x):
            return torch.nn.functional.one_hot(x % 5, 5).float()
    model, traffic = Model(), remote.sandbox.traffic
    before = traffic["modules described"]
    for _ in range(3):
        ids, seq_len = remote.student.decode(model, torch.tensor([[1, 7]]))
        assert ids.tolist() == [[1, 2]] and seq_len == 3
    assert traffic["modules described"] == before + 1
    remote.sandbox.reset()  # the next test's worker objects are new: described again
    assert remote.student.decode(model, torch.tensor([[1, 7]]))[1] == 3
    assert traffic["modules described"] == before + 2


def test_grader_objects_are_called_back(remote):
    class Model(nn.Module):
        seq_len = 3

        def forward(self, x):
            return torch.nn.functional.one_hot(x % 5, 5).float()
    ids, seq_len = remote.student.decode(Model(), torch.tensor([[1, 7]]))
    assert ids.tolist() == [[1, 2]] and seq_len == 3


def test_hooks_on_grader_modules_and_lists_come_back(remote):
    module, storage = nn.Linear(2, 2), []
    handle = remote.student.hook(module, storage)
    out = module(torch.ones(1, 2))
    assert len(storage) == 1 and torch.equal(storage[0], out.detach())
    handle.remove()
    module(torch.ones(1, 2))
    assert len(storage) == 1


def test_forward_hook_with_kwargs(remote):
    module, storage = Scaled(), []
    remote.student.hook_with_kwargs(module, storage)
    x = torch.ones(2)
    out = module(x, scale=3.0)
    assert len(storage) == 1 and storage[0][:2] == (1, ["scale"]) and torch.equal(storage[0][2], out)


def test_forward_hooks_prepend_and_always_call(remote):
    module, storage = Scaled(), []
    remote.student.hooks_in_order(module, storage)
    module(torch.ones(2))
    assert storage == ["prepended", "appended"]
    module, storage = Scaled(), []
    remote.student.hooks_always_called(module, storage)
    with pytest.raises(ValueError, match="negative input"):
        module(-torch.ones(2))
    assert storage == [("always", None)]          # the other hook does not run after a failed forward
    module(torch.ones(2))
    assert storage[1] == "plain" and storage[2][0] == "always" and torch.equal(storage[2][1], torch.ones(2))


def test_forward_pre_hooks_change_inputs(remote):
    module, storage = Scaled(), []
    remote.student.pre_hooks(module, storage)
    x = torch.arange(3.0)
    assert torch.equal(module(x), x * 2 * 3.0)    # doubled, then scale=3 put in kwargs
    assert torch.equal(storage[0], x) and storage[1] == []


def test_hooks_that_hand_back_their_input_keep_the_graph(remote):
    for attach in (remote.student.pre_hook_unchanged, remote.student.forward_hook_returns_output):
        module, storage = Scaled(), []
        attach(module, storage)
        x = torch.ones(3, requires_grad=True)
        out = module(x, scale=2.0)
        out.sum().backward()
        assert torch.equal(x.grad, torch.full((3,), 2.0)), attach


def test_full_backward_hooks(remote):
    module, storage = Scaled(), []
    remote.student.backward_hooks(module, storage)
    x = torch.ones(3, requires_grad=True)
    module(x, scale=2.0).sum().backward()
    assert [entry[0] for entry in storage] == ["pre", "full"]
    assert torch.equal(storage[0][1], torch.ones(3)) and torch.equal(storage[1][2], torch.full((3,), 10.0))
    assert torch.equal(storage[1][1], torch.full((3,), 20.0)) and torch.equal(x.grad, torch.full((3,), 21.0))


def test_backward_hook_on_a_stub_called_in_the_worker_runs_once(remote):
    module, storage = Scaled(), []
    grad = remote.student.backward_hook_run_here(module, storage, torch.ones(2))
    assert torch.equal(grad, torch.ones(2)) and len(storage) == 1 and torch.equal(storage[0], torch.ones(2))


def test_hooks_that_are_objects_or_partials(remote):
    module, storage = Scaled(), []
    handle = remote.student.hook_object_and_partial(module, storage)
    out = module(torch.ones(2))
    assert [tag for tag, _ in storage] == ["object", "partial"] and all(torch.equal(o, out) for _, o in storage)
    handle.remove()
    module(torch.ones(2))
    assert len(storage) == 3


def test_handles_remove_their_hooks_also_as_context_managers(remote):
    for attach in (remote.student.hook, remote.student.hook_with_own_handle):
        module, storage = Scaled(), []
        with attach(module, storage):
            module(torch.ones(2))
        module(torch.ones(2))
        assert len(storage) == 1, attach
        assert not module._forward_hooks and not module._forward_pre_hooks   # the relays are gone too


def test_grader_hooks_on_a_part_of_a_student_module(remote):
    outer = remote.student.Outer()
    seen = []
    outer.scaled.register_forward_pre_hook(
        lambda m, args, kwargs: seen.append(sorted(kwargs)) or (args, {"scale": 5.0}), with_kwargs=True)
    outer.scaled.register_forward_hook(lambda m, args, kwargs, out: seen.append(out.detach()), with_kwargs=True)
    outer.scaled.register_full_backward_hook(lambda m, gi, go: seen.append(("backward", go[0].detach())))
    x = torch.ones(2, requires_grad=True)
    out = outer(x)
    assert torch.equal(out, torch.full((2,), 6.0)) and seen[0] == ["scale"]
    assert torch.equal(seen[1], torch.full((2,), 5.0))
    out.sum().backward()
    assert torch.equal(x.grad, torch.full((2,), 5.0)) and seen[2][0] == "backward"
    assert torch.equal(seen[2][1], torch.ones(2))


def test_device_checks_run_in_the_worker(remote):
    with pytest.raises(GradingFailure, match="mixes devices"):
        with strict_device("meta"):
            remote.student.fixed_device(torch.ones(2, device="meta"))


def test_a_crash_costs_the_call_and_a_new_worker_follows(remote):
    net = remote.student.Net(4)
    with pytest.raises(WorkerCrash, match="exit status 7"):
        remote.student.crash()
    with pytest.raises(WorkerCrash):
        net(torch.ones(1, 4))  # that object died with its worker
    assert torch.equal(remote.student.double(torch.ones(1)), torch.full((1,), 2.0))


@pytest.mark.skipif(os.geteuid() != 0, reason="killing by user needs the worker to have its own user")
@pytest.mark.parametrize("header, why", [({"op": "explode"}, "unknown request 'explode'"),
                                          ({"op": "call", "id": "7"}, "field 'id'"),
                                          ({"re": True, "ok": True, "values": {}, "dropped": "all"},
                                           "field 'dropped'")])
def test_a_malformed_message_from_the_worker_costs_the_call(remote, header, why):
    with pytest.raises(WorkerCrash, match=re.escape("malformed message") + ".*" + re.escape(why)):
        remote.student.forge(header)
    assert torch.equal(remote.student.double(torch.ones(1)), torch.full((1,), 2.0))


def test_a_setsid_daemon_does_not_survive_the_worker(remote):
    assert remote.student.spawn_daemon("x")
    uid = remote.sandbox.worker.user[0]
    zygote = remote.sandbox.zygote.pid  # runs as the worker's user, and outlives its workers
    remote.sandbox.stop()
    deadline = time.monotonic() + 5
    while _running(uid, zygote) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _running(uid, zygote)


def _running(uid: int, zygote: int | None = None) -> list[str]:
    """Processes of `uid` that are not zombies (a zombie runs nothing; its new parent reaps it),
    other than the `zygote`."""
    found = []
    for pid in filter(lambda p: p.isdigit() and p != str(zygote), os.listdir("/proc")):
        try:
            if os.stat(f"/proc/{pid}").st_uid == uid and "\nState:\tZ" not in open(f"/proc/{pid}/status").read():
                found.append(pid)
        except OSError:
            continue
    return found


def test_containers_a_correct_student_may_return_come_back_by_value(remote):
    import collections

    import numpy as np

    Word = collections.namedtuple("Word", "a b c")
    got = remote.student.containers(collections.Counter({Word("a", "b", "a"): 2}))
    assert got["arrived"] == ["dict", "tuple"]       # what the grader sends arrives as plain data too
    assert got["counter"] == {("a", "b"): 2, ("b", "a"): 2} and type(got["counter"]) is dict
    assert got["default"] == {("a", "b"): 0.5} and got["ordered"] == got["counter"]
    assert got["merges"] == [("a", "b")] and type(got["merges"][0]) is tuple and got["big"] == 2 ** 80
    assert [type(x) for x in got["scalars"]] == [np.float64, np.int64, np.bool_] and got["scalars"][0] == 0.25


def test_frames_and_arrays_go_both_ways(remote):
    import numpy as np
    import pandas as pd

    assert remote.student.libraries_loaded() == []   # plain calls import neither pandas nor transformers
    frame, doubled, frame_type, array_type = remote.student.frame_and_array(
        pd.DataFrame({"x": [1.0, 2.0]}, index=[5, 6]), np.arange(3.0))
    assert (frame_type, array_type) == ("DataFrame", "ndarray")
    assert frame["total"].tolist() == [4.0, 5.0] and list(frame.index) == [5, 6] and doubled.tolist() == [0, 2, 4]


def test_hugging_face_models_and_tokenizers_are_copied_into_the_worker(remote):
    from autograder.kit.tiny_hf import tiny_distilbert, wordpiece_tokenizer

    tokenizer = wordpiece_tokenizer(["the cat sat on the mat", "a dog ran in the park"])
    model = tiny_distilbert(len(tokenizer))
    tokens, last, training, name, sees_grader = remote.student.run_encoder(model, tokenizer, "the cat ran")
    with torch.no_grad():
        encoded = tokenizer("the cat ran", return_tensors="pt")
        expected = model.eval()(**encoded).last_hidden_state
    assert tokens == tokenizer.convert_ids_to_tokens(encoded["input_ids"][0]) and tokens[0] == "[CLS]"
    assert torch.allclose(last, expected, atol=1e-6) and name == "DistilBertModel" and not sees_grader
    model.train()
    remote.student.run_encoder(model, tokenizer, "the dog")
    assert model.training                             # the worker's eval() changed its own copy only


FLOOD_TEST = '''
import pytest

@pytest.mark.problem("loud")
def test_loud(student):
    assert student.loud.shout(30_000_000) == 42
'''


@pytest.mark.parametrize("sandbox", [False, True], ids=["in-process", "sandbox"])
def test_a_print_flood_costs_no_points_and_is_reported_cut(tmp_path, sandbox):
    """a graded test whose student code prints 30 MB: it passes, in reasonable time, and its output
    is the head and a note of how much was cut (the note survives the test's own cut)"""
    import json
    import subprocess
    import sys

    (tmp_path / "submission").mkdir()
    (tmp_path / "submission" / "loud.py").write_text("def shout(n):\n    print('x' * n)\n    return 42\n")
    (tmp_path / "test_loud.py").write_text(FLOOD_TEST)
    report = tmp_path / "report.jsonl"
    command = [sys.executable, "-m", "pytest", str(tmp_path / "test_loud.py"), "-p", "autograder.grader.plugin",
               "-p", "no:cacheprovider", "-c", os.devnull, "--rootdir", str(tmp_path), "-q",
               "--report", str(report), "--submission", str(tmp_path / "submission")]
    if sandbox:
        command += ["--sandbox", "{}"]
    start = time.monotonic()
    subprocess.run(command, cwd=tmp_path, env=dict(os.environ, PYTHONPATH=str(pathlib.Path(__file__).parent.parent)),
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=300)
    assert time.monotonic() - start < 120
    result = next(e for e in map(json.loads, report.read_text().splitlines()) if e["event"] == "result")
    assert result["outcome"] == "passed", result
    kept = OUTPUT_LIMIT if sandbox else STDOUT_LIMIT
    assert result["stdout"].startswith("xxxx") and cut_count(result["stdout"]) == 30_000_001 - kept
