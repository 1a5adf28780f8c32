# Appended to a correct solution file, after `WRONG_KIND = "..."` and `GRADED = [...]` (the names the
# starter leaves to the student): every graded function, and the forward of every graded module,
# returns a plausible WRONG value of the right type, shape, dtype and device (zeros, an input of the
# same shape, or seeded noise), and a graded function that fills a list argument (a hook's storage)
# fills it with wrong tensors. NumPy arrays, pandas frames, numbers, strings and containers of them
# (the `foundations` results) come back wrong in the same way, with their types and shapes kept. Constructors stay correct. The grader must give this what it gives the
# stubs: nothing (issue 10, "tests of a property alone pay points to wrong code").
import functools as _functools

import torch as _torch


def _plausible(t, inputs, kind):
    """A candidate wrong value for tensor `t` of the given kind (same shape, dtype, device)."""
    if kind == "input":
        for x in inputs:
            if isinstance(x, _torch.Tensor) and x.shape == t.shape and x.dtype == t.dtype and x.device == t.device:
                return x.detach().clone()
        # no input to return: noise (1.5 * t + 0.25 would still be a model that learns, and the
        # training problem rightly pays for a model that learns)
        kind = "random"
    if t.dtype == _torch.bool:
        noise = _torch.randint(0, 2, t.shape, generator=_torch.Generator().manual_seed(0)).bool()
        return {"zeros": _torch.zeros_like(t), "random": noise.to(t.device)}.get(kind, ~t)
    if not t.dtype.is_floating_point:
        noise = _torch.randint(0, 10, t.shape, generator=_torch.Generator().manual_seed(0))
        return {"zeros": _torch.zeros_like(t), "random": noise.to(t.device)}.get(kind, t + 1)
    if kind == "zeros":
        return t * 0  # keeps the autograd graph: a loss stays differentiable
    if kind == "random":
        noise = _torch.randn(t.shape, generator=_torch.Generator().manual_seed(0), dtype=_torch.float64)
        return t * 0 + noise.to(device=t.device, dtype=t.dtype)
    return t * 1.5 + 0.25


def _far_from(candidate, t):
    """Is `candidate` surely wrong, i.e. not within any grading tolerance of the true value `t`?"""
    if t.device.type == "meta":
        return True
    if not t.dtype.is_floating_point:
        return not _torch.equal(candidate.cpu(), t.detach().cpu())
    difference = (candidate.detach().double().cpu() - t.detach().double().cpu()).abs()
    return bool((difference > 0.1 + 0.1 * t.detach().double().cpu().abs()).any())


def _wrong_array(a, inputs, kind):
    """A NumPy array of `a`'s shape and dtype that is surely not `a`."""
    import numpy as np

    if kind == "input":
        same = [x for x in inputs if isinstance(x, np.ndarray) and x.shape == a.shape and x.dtype == a.dtype]
        candidate = same[0].copy() if same else None
    elif kind == "zeros":
        candidate = np.zeros_like(a)
    else:
        candidate = np.random.default_rng(0).normal(size=a.shape).astype(a.dtype) if a.dtype.kind == "f" else None
    if candidate is None or candidate.shape != a.shape or np.array_equal(candidate, a) or (
            a.dtype.kind == "f" and np.allclose(candidate, a, rtol=0.1, atol=0.1)):
        candidate = ~a if a.dtype == bool else (a * 1.5 + 0.25 if a.dtype.kind == "f" else a + 1)
    return candidate.astype(a.dtype)


def _wrong_plain(value, inputs):
    """Plain Python and NumPy/pandas values, wrong but of the same type and shape: numbers moved,
    strings changed, containers with every entry wrong, arrays as _wrong_array makes them."""
    import sys as _sys

    np, pd = _sys.modules.get("numpy"), _sys.modules.get("pandas")
    if np is not None and isinstance(value, np.ndarray):
        return _wrong_array(value, inputs, WRONG_KIND)  # noqa: F821 - set before this file is appended
    if np is not None and isinstance(value, np.generic):
        return value.dtype.type(_wrong_plain(value.item(), inputs))
    if pd is not None and isinstance(value, pd.DataFrame):
        frame = value.copy()
        for column in frame.columns:
            frame[column] = [_wrong_plain(v, inputs) for v in frame[column]]
        return frame
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return value * 1.5 + 0.25
    if isinstance(value, str):
        return value + "#"
    if isinstance(value, dict):
        return {k: _wrong(v, inputs) for k, v in value.items()}
    if isinstance(value, _torch.optim.Optimizer):  # `training`'s configure_optimizer: its class, one group, defaults
        return type(value)([p for group in value.param_groups for p in group["params"]])
    transformers = _sys.modules.get("transformers")
    if transformers is not None and isinstance(value, transformers.BatchEncoding):  # finetune's tokenize_batch
        return type(value)({k: _wrong(v, inputs) for k, v in value.items()})
    if transformers is not None and isinstance(value, transformers.TrainingArguments):  # its class, defaults
        return type(value)(output_dir=value.output_dir)
    return value


def _wrong(value, inputs):
    """`value` (a result of the correct code) with every tensor in it replaced by a wrong one."""
    if isinstance(value, (tuple, list)):
        return type(value)(_wrong(v, inputs) for v in value)
    if not isinstance(value, _torch.Tensor):
        return _wrong_plain(value, inputs)
    candidate = _plausible(value, inputs, WRONG_KIND)  # noqa: F821 - set before this file is appended
    if not _far_from(candidate, value):  # the kind happens to give the right answer here: take another
        candidate = ~value if value.dtype == _torch.bool else value + 1
    return candidate


class _WrongList:
    """Stands in for a list argument: what the correct code appends reaches the list wrong."""

    def __init__(self, target, inputs):
        self._target, self._inputs = target, inputs

    def append(self, item):
        self._target.append(_wrong(item, self._inputs))

    def __getattr__(self, name):
        return getattr(self._target, name)


def _wrong_function(fn):
    @_functools.wraps(fn)
    def wrapper(*args, **kwargs):
        inputs = [*args, *kwargs.values()]
        args = [_WrongList(a, inputs) if isinstance(a, list) else a for a in args]
        return _wrong(fn(*args, **kwargs), inputs)
    return wrapper


def _wrong_module(cls):
    def forward(self, *args, **kwargs):
        return _wrong(cls.forward(self, *args, **kwargs), [*args, *kwargs.values()])
    return type(cls.__name__, (cls,), {"forward": forward, "__module__": cls.__module__,
                                       "__qualname__": cls.__qualname__, "__doc__": cls.__doc__})


for _name in GRADED:  # noqa: F821 - set before this file is appended
    _obj = globals()[_name]
    globals()[_name] = _wrong_module(_obj) if isinstance(_obj, type) else _wrong_function(_obj)
