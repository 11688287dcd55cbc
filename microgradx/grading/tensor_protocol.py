"""The NumPy ``Tensor`` student protocol, standard library and NumPy only: how a program's step is spelled on a
student's ``Tensor``, which conventions its class follows (``.data`` or ``.value``, ``sum(axis=)`` or
``sum(dim=)``, ``.T`` or ``transpose()``...), and which pieces it lacks. Shared by the sandboxed tensor worker
(which must not import microgradx) and the grader.

>>> import numpy as np
>>> call("sum", [np.arange(6.0).reshape(2, 3)], [0, False], CONVENTIONS)
array([3., 5., 7.])
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

__all__ = ["TENSOR_OPS", "SPELLINGS", "CONVENTIONS", "CHOICES", "DATA_NAMES", "call", "detect", "check"]

# The graded ops in the order their rules run (simplest first), each with how it is written on a Tensor.
SPELLINGS: dict[str, str] = {"add": "+", "mul": "*", "sub": "-", "div": "/", "sum": ".sum", "mean": ".mean",
                             "matmul": "@", "pow": "**", "reshape": ".reshape", "transpose": ".T", "exp": ".exp",
                             "log": ".log", "relu": ".relu"}
TENSOR_OPS: tuple[str, ...] = tuple(SPELLINGS)
_DUNDERS = {"+": "__add__", "-": "__sub__", "*": "__mul__", "/": "__truediv__", "@": "__matmul__", "**": "__pow__"}
# Where engines differ, the default (microgradx's and NumPy's spelling) first, then the others seen in homework.
CHOICES: dict[str, tuple[str, ...]] = {
    "data": ("data", "value", "val", "array", "values"),   # the attribute holding the ndarray
    "grad": ("zeros", "none"),                            # .grad before backward(): zeros or None
    "seed": ("implicit", "explicit"),                     # backward() seeds ones, or needs backward(ones)
    "axis": ("axis", "dim", "axes", "positional"),        # sum(axis=0) / sum(dim=0) / sum(0)
    "keepdims": ("keepdims", "keepdim", "keep_dims"),
    "transpose": ("T", "transpose"),                      # x.T property or x.transpose() method
    "reshape": ("tuple", "star"),                         # x.reshape((2, 3)) or x.reshape(2, 3)
    "dtype": ("float64", "float32"),
}
CONVENTIONS: dict[str, str] = {k: v[0] for k, v in CHOICES.items()}
DATA_NAMES = CHOICES["data"]


def _reduce(a: Any, op: str, param: Sequence[Any] | None, conv: dict[str, str]) -> Any:
    axis, keepdims = (None, False) if param is None else (param[0], bool(param[1]))
    method = getattr(a, op)
    args: list = []
    kw: dict = {}
    if axis is not None:
        if conv["axis"] == "positional":
            args.append(axis)
        else:
            kw[conv["axis"]] = axis
    if keepdims:
        kw[conv["keepdims"]] = True
    return method(*args, **kw)


def call(op: str, args: Sequence[Any], param: Any, conv: dict[str, str]) -> Any:
    """Apply one step to a student's tensors through plain Python, spelled the way ``conv`` says.

    ``param`` is the exponent of ``pow``, ``[axis, keepdims]`` of ``sum``/``mean`` and the new shape of
    ``reshape``.

    >>> import numpy as np
    >>> call("reshape", [np.arange(6.0)], [2, 3], CONVENTIONS).shape, call("pow", [3.0], 2.0, {})
    ((2, 3), 9.0)
    """
    a = args[0]
    if op == "add":
        return a + args[1]
    if op == "sub":
        return a - args[1]
    if op == "mul":
        return a * args[1]
    if op == "div":
        return a / args[1]
    if op == "matmul":
        return a @ args[1]
    if op == "pow":
        return a ** param
    if op in ("sum", "mean"):
        return _reduce(a, op, param, conv)
    if op == "reshape":
        shape = tuple(int(n) for n in param)
        # NOTE: to shape () a star-style reshape(*shape) would get no argument at all; NumPy takes ((),) too.
        return a.reshape(*shape) if conv["reshape"] == "star" and shape else a.reshape(shape)
    if op == "transpose":
        return a.T if conv["transpose"] == "T" else a.transpose()
    return getattr(a, op)()


def _parameters(fn: Any) -> list[inspect.Parameter]:
    try:
        return list(inspect.signature(fn).parameters.values())[1:]  # without self
    except (TypeError, ValueError):
        return []


def _names(fn: Any) -> set[str]:
    return {p.name for p in _parameters(fn)}


def detect(cls: type, make: Any) -> tuple[dict[str, str], dict[str, str]]:
    """The conventions the class follows, read off its signatures and a small tensor ``make()`` builds; and
    each protocol piece it lacks, by its name, with a sentence saying what is wrong.

    >>> import numpy as np
    >>> class T:
    ...     def __init__(self, value): self.value, self.grad = np.asarray(value, dtype=float), None
    ...     def sum(self, dim=None, keepdim=False): pass
    ...     def backward(self, grad): pass
    ...     def transpose(self): pass
    >>> conv, missing = detect(T, lambda: T(np.array([1.5, -2.0])))
    >>> conv["data"], conv["grad"], conv["axis"], conv["keepdims"], conv["seed"], conv["transpose"]
    ('value', 'none', 'dim', 'keepdim', 'explicit', 'transpose')
    >>> sorted(missing)[:4]
    ['*', '**', '+', '-']
    """
    import numpy as np

    conv = dict(CONVENTIONS)
    missing: dict[str, str] = {}
    try:
        t = make()
    except BaseException as e:  # noqa: BLE001 - anything the constructor raises is the student's bug
        return conv, {"Tensor(data)": f"{cls.__name__}(np.array([1.5, -2.0])) raised {type(e).__name__}: {e}"[:300]}
    for name in DATA_NAMES:
        try:
            x = getattr(t, name)
        except BaseException:  # noqa: BLE001 - a property may raise anything
            continue
        if isinstance(x, np.ndarray):
            conv["data"] = name
            conv["dtype"] = "float32" if x.dtype == np.float32 else "float64"
            break
    else:
        missing[".data"] = (f"{cls.__name__}(np.array([1.5, -2.0])) keeps no NumPy array in any of "
                            f".{', .'.join(DATA_NAMES)}")
    try:
        g = t.grad
        conv["grad"] = "none" if g is None else "zeros"
    except BaseException:  # noqa: BLE001
        missing[".grad"] = f"{cls.__name__}(np.array([1.5, -2.0])) has no attribute .grad"
    backward = getattr(cls, "backward", None)
    if not callable(backward):
        missing["backward()"] = "the class has no method backward()"
    else:
        required = [p for p in _parameters(backward) if p.default is p.empty and
                    p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        conv["seed"] = "explicit" if required else "implicit"
    for symbol, dunder in _DUNDERS.items():
        if not callable(getattr(cls, dunder, None)):
            missing[symbol] = f"the class has no {dunder}, so `x {symbol} y` does not work"
    for op in ("sum", "mean"):
        names = _names(getattr(cls, op, None))
        for axis in CHOICES["axis"][:3]:
            if axis in names:
                conv["axis"] = axis
                break
        else:
            if names and not any(p.kind == p.VAR_KEYWORD for p in _parameters(getattr(cls, op))):
                conv["axis"] = "positional"
        for keep in CHOICES["keepdims"]:
            if keep in names:
                conv["keepdims"] = keep
                break
    if not isinstance(inspect.getattr_static(cls, "T", None), property) and callable(getattr(cls, "transpose", None)):
        conv["transpose"] = "transpose"
    reshape = getattr(cls, "reshape", None)
    if any(p.kind == p.VAR_POSITIONAL for p in _parameters(reshape)):
        conv["reshape"] = "star"
    return conv, missing


def check(cls: type, ops: Sequence[str]) -> dict[str, str]:
    """The graded method ops the class lacks: ``{".log": "the class has no method log()"}``.

    >>> check(type("T", (), {"exp": lambda self: self}), ["exp", "log", "add", "transpose"])
    {'.log': 'the class has no method log()', '.T': 'the class has no property T and no method transpose()'}
    """
    out: dict[str, str] = {}
    for op in ops:
        s = SPELLINGS[op]
        if op == "transpose":
            # NOTE: getattr_static, so that looking for the property does not run the student's code.
            if inspect.getattr_static(cls, "T", None) is None and not callable(getattr(cls, "transpose", None)):
                out[s] = "the class has no property T and no method transpose()"
        elif s.startswith(".") and not callable(getattr(cls, s[1:], None)):
            out[s] = f"the class has no method {s[1:]}()"
    return out
