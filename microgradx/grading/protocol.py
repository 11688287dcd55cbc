"""The student protocol, standard library only: how a program's step is applied to a micrograd-style ``Value``,
which pieces every engine must have, and the near-miss names students use instead. Shared by the sandboxed
worker (which must not import microgradx) and the grading rules.

>>> call("+", [2.0, 3.0]), sorted(OPERATORS)[:3]
(5.0, ['*', '**', '+'])
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from typing import Any

__all__ = ["call", "OPERATORS", "ATTRIBUTES", "NEAR_MISS_METHODS", "check", "near_methods", "suggest_class"]

# Each operator of the protocol and the method Python looks up for it on the left operand.
OPERATORS: dict[str, str] = {"+": "__add__", "-": "__sub__", "*": "__mul__", "/": "__truediv__",
                             "neg": "__neg__", "**": "__pow__"}
# Attributes every engine needs, with the names students give them instead.
ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "data": ("val", "value", "v", "x", "item", "number", "num"),
    "grad": ("gradient", "g", "grads", "dx", "derivative"),
    "backward": ("backwards", "backprop", "back_prop", "backpropagate", "Backward", "back"),
}
# Optional methods of the protocol, with the misspellings and synonyms seen in real homework.
NEAR_MISS_METHODS: dict[str, tuple[str, ...]] = {
    "relu": ("reLU", "ReLU", "Relu", "RELU", "reLu"),
    "tanh": ("Tanh", "TanH", "TANH", "tanH"),
    "exp": ("Exp", "EXP", "exponential"),
    "log": ("ln", "Log", "LOG", "Ln", "log_"),
    "sigmoid": ("sigmod", "Sigmoid", "sigm", "sigmoide", "sig"),
}


def call(spelling: str, args: Sequence[Any], param: Any = None) -> Any:
    """Apply one step through plain Python: ``"+"``, ``"-"``, ``"*"``, ``"/"``, ``"neg"``, ``"**"`` or
    ``".method"``; ``param`` is the number exponent of ``**`` or a method's number argument.

    >>> call("-", [5.0, 2.0]), call("**", [3.0], 2), call(".conjugate", [2.0])
    (3.0, 9.0, 2.0)
    """
    a = args[0]
    if spelling == "+":
        return a + args[1]
    if spelling == "-":
        return a - args[1]
    if spelling == "*":
        return a * args[1]
    if spelling == "/":
        return a / args[1]
    if spelling == "neg":
        return -a
    if spelling == "**":
        return a ** (args[1] if len(args) > 1 else param)
    method = getattr(a, spelling[1:])
    return method(*args[1:]) if param is None else method(param)


def _short(x: Any) -> str:
    try:
        s = repr(x)
    except BaseException:  # noqa: BLE001 - a student's __repr__ may raise anything
        s = f"<{type(x).__name__}>"
    return s if len(s) <= 80 else s[:77] + "..."


def _instead(names: Sequence[str], candidates: Sequence[str]) -> str:
    """`` (it has `.val`: rename it)`` when one of ``candidates`` is among ``names``."""
    found = [c for c in candidates if c in names]
    return f" (it has `{found[0]}`: is that it? rename it)" if found else ""


def check(value: type) -> dict[str, str]:
    """Each protocol piece the class lacks, by its name (``.data``, ``*``), with a sentence saying what is wrong.

    >>> class V:
    ...     def __init__(self, data): self.val, self.grad = data, 0.0
    ...     def backward(self): pass
    ...     def __add__(self, o): return self
    >>> sorted(check(V))
    ['*', '**', '-', '.data', '/', 'neg']
    >>> check(V)[".data"]
    'Value(2.0) has no attribute .data (it has `val`: is that it? rename it)'
    """
    missing: dict[str, str] = {}
    try:
        v = value(2.0)
    except BaseException as e:  # noqa: BLE001 - anything the constructor raises is the student's bug
        return {"Value(data)": f"{value.__name__}(2.0) raised {type(e).__name__}: {e}"[:300]}
    try:
        names = sorted(set(dir(v)))
    except BaseException:  # noqa: BLE001
        names = []
    for attr in ("data", "grad"):
        try:
            x = getattr(v, attr)
        except BaseException:  # noqa: BLE001 - a property may raise anything
            missing[f".{attr}"] = f"Value(2.0) has no attribute .{attr}{_instead(names, ATTRIBUTES[attr])}"
            continue
        try:
            number = float(x)
        except BaseException:  # noqa: BLE001
            missing[f".{attr}"] = f"Value(2.0).{attr} is not a number: {_short(x)}"
            continue
        want = 2.0 if attr == "data" else 0.0
        if abs(number - want) > 1e-6:
            missing[f".{attr}"] = f"Value(2.0).{attr} is {number!r}, not {want!r}"
    if not callable(getattr(value, "backward", None)):
        missing["backward()"] = f"the class has no method backward(){_instead(names, ATTRIBUTES['backward'])}"
    for symbol, dunder in OPERATORS.items():
        if not callable(getattr(value, dunder, None)):
            missing[symbol] = f"the class has no {dunder}, so `{'-x' if symbol == 'neg' else 'x ' + symbol + ' y'}` " \
                              f"does not work"
    return missing


def near_methods(value: type, wanted: Sequence[str]) -> dict[str, str]:
    """Methods of the class named like a protocol method it lacks: ``{"reLU": "relu"}``.

    >>> class V:
    ...     def reLU(self): pass
    ...     def tanh(self): pass
    >>> near_methods(V, ["relu", "tanh"])
    {'reLU': 'relu'}
    """
    have = [n for n in dir(value) if not n.startswith("__")]
    out: dict[str, str] = {}
    for name in wanted:
        if callable(getattr(value, name, None)):
            continue
        guesses = [n for n in NEAR_MISS_METHODS.get(name, ()) if n in have]
        guesses += [n for n in have if n.lower() == name.lower() and n not in guesses]
        for n in guesses:
            if callable(getattr(value, n, None)):
                out[n] = name
    return out


def suggest_class(module: Any, cls: str) -> str:
    """What to say when the module has no class ``cls``: the classes it has whose names come close.

    >>> import types
    >>> m = types.ModuleType("engine"); m.value = type("value", (), {"__module__": "engine"})
    >>> suggest_class(m, "Value")
    'it defines class `value`: rename it to `Value`, or set `class = "value"` in the assignment file'
    """
    classes = [n for n, obj in vars(module).items()
               if isinstance(obj, type) and getattr(obj, "__module__", None) == module.__name__]
    close = [n for n in classes if n.lower() == cls.lower()]
    close += [n for n in difflib.get_close_matches(cls, classes, n=3, cutoff=0.6) if n not in close]
    # A class with the protocol's methods is the engine whatever its name (Scalar, Node, Var).
    close += [n for n in classes if n not in close and callable(getattr(vars(module)[n], "backward", None))]
    if not close:
        return f"it defines {'no classes' if not classes else 'classes ' + ', '.join(classes)}"
    name = close[0]
    return f"it defines class `{name}`: rename it to `{cls}`, or set `class = \"{name}\"` in the assignment file"
