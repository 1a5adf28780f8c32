# Appended to a correct solution file, after `WRONG_KIND = "..."` and `GRADED = [...]` (the names the
# starter leaves to the student): every graded function, and the forward of every graded module,
# returns a plausible WRONG value of the right type, shape, dtype and device (zeros, an input of the
# same shape, or seeded noise), and a graded function that fills a list argument (a hook's storage)
# fills it with wrong tensors. Constructors stay correct. The grader must give this what it gives the
# stubs: nothing (issue 10, "tests of a property alone pay points to wrong code").
import functools as _functools

import torch as _torch


def _plausible(t, inputs, kind):
    """A candidate wrong value for tensor `t` of the given kind (same shape, dtype, device)."""
    if kind == "input":
        for x in inputs:
            if isinstance(x, _torch.Tensor) and x.shape == t.shape and x.dtype == t.dtype and x.device == t.device:
                return x.detach().clone()
        kind = "scaled"
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


def _wrong(value, inputs):
    """`value` (a result of the correct code) with every tensor in it replaced by a wrong one."""
    if isinstance(value, (tuple, list)):
        return type(value)(_wrong(v, inputs) for v in value)
    if not isinstance(value, _torch.Tensor):
        return value
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
