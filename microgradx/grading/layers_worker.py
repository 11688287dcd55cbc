"""The sandboxed child that runs a student's layer functions (``affine_forward``, ``affine_backward``...): it
reads calls as JSON lines on a private pipe and answers with the arrays they return. Standard library and NumPy
only, so the student's code never sees microgradx.

Run by the grader as ``python -I layers_worker.py IN_FD OUT_FD LAYERS_FILE - NAMES``; never writes a file.
"""

from __future__ import annotations

import ast
import importlib.util
import inspect
import numbers
import os
import sys
import time
from typing import Any

import numpy as np

__all__ = ["decode", "run_call", "py2_division"]

MAX_ENTRIES = 200_000  # numbers in one reply: far above any drawn case, far below the reply's byte limit


def _load_worker() -> Any:
    """The scalar worker next to this file, for its error and traceback formatting (one place for both)."""
    try:
        from . import worker
        return worker
    except ImportError:
        path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "worker.py")
        spec = importlib.util.spec_from_file_location("_microgradx_worker", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module


worker = _load_worker()


def decode(arg: Any) -> Any:
    """One argument of a call from its JSON form: ``["array", shape, flat, "f"|"i"]``, ``["dict", [[key, arg],
    ...]]`` (keys in the template's order), ``["num", x]``, ``["str", s]``, ``["none"]``.

    >>> decode(["dict", [["stride", ["num", 2]], ["pad", ["num", 0]]]])
    {'stride': 2, 'pad': 0}
    >>> decode(["array", [2], [1, 2], "i"]).dtype.kind
    'i'
    """
    tag = arg[0]
    if tag == "array":
        return np.array(arg[2], dtype=np.int64 if arg[3] == "i" else np.float64).reshape(arg[1])
    if tag == "dict":
        return {k: decode(v) for k, v in arg[1]}
    if tag == "num":
        return arg[1]
    if tag == "str":
        return arg[1]
    return None


def _div(a: Any, b: Any) -> Any:
    """``a / b``, but an exact division of two integers stays an integer: Python 2's ``/`` in an old file gives
    the same number as Python 3's, and a shape like ``(H - HH) / stride + 1`` stays usable as an array size."""
    if isinstance(a, numbers.Integral) and isinstance(b, numbers.Integral) and not isinstance(a, bool) \
            and not isinstance(b, bool) and b != 0 and a % b == 0:
        return a // b
    return a / b


class _Division(ast.NodeTransformer):
    def visit_BinOp(self, node: ast.BinOp) -> ast.AST:
        self.generic_visit(node)
        if isinstance(node.op, ast.Div):
            call = ast.Call(ast.Name("__microgradx_div__", ast.Load()), [node.left, node.right], [])
            return ast.copy_location(call, node)
        return node


def py2_division(source: str, filename: str) -> Any:
    """The file compiled with every ``a / b`` read as ``__microgradx_div__(a, b)`` (see ``_div``); line numbers
    are kept, so tracebacks still point at the student's lines.

    >>> ns = {"__microgradx_div__": _div}; exec(py2_division("h = (7 - 3) / 2 + 1\\nr = 1 / 4\\n", "f"), ns)
    >>> ns["h"], ns["r"]
    (3, 0.25)
    """
    tree = _Division().visit(ast.parse(source, filename))
    return compile(ast.fix_missing_locations(tree), filename, "exec")


def _array(x: Any, what: str) -> np.ndarray:
    """A student's result as a float64 array, or a ValueError saying what it was."""
    if isinstance(x, (bool, np.bool_)) or x is None or isinstance(x, (str, bytes, dict)):
        raise ValueError(f"{what} is {type(x).__name__} {worker.protocol._short(x)}, not an array")
    try:
        a = np.asarray(x)
    except BaseException as e:  # noqa: BLE001 - anything a student's object raises is their bug
        raise ValueError(f"{what} is not an array: {type(x).__name__}") from e
    if a.dtype.kind == "c":
        raise ValueError(f"{what} holds complex numbers")
    if a.dtype.kind not in "fiub":
        raise ValueError(f"{what} is not an array of numbers (dtype {a.dtype})")
    if a.size > MAX_ENTRIES:
        raise ValueError(f"{what} has {a.size} entries, more than {MAX_ENTRIES}")
    return a.astype(np.float64)


def _results(got: Any, want: int, name: str, what: str) -> tuple:
    if want == 1 and not isinstance(got, tuple):
        return (got,)
    if not isinstance(got, (tuple, list)) or len(got) != want:
        n = len(got) if isinstance(got, (tuple, list)) else 1
        raise ValueError(f"{name} returned {n} value{'s' * (n != 1)}, expected {want} ({what})")
    return tuple(got)


def run_call(funcs: dict, req: dict, engine: str) -> dict:
    """Call the forward function on ``req``'s arguments, read the entries of its dict arguments it was asked to
    report, then call the backward function on the upstream gradients and the cache; answer every array."""
    stage = "forward"
    try:
        args = [decode(a) for a in req["args"]]
        kwargs = {k: decode(v) for k, v in req.get("kwargs", [])}
        fwd = funcs[req["forward"]]
        n_out = req["outputs"]
        backward = req.get("backward")
        start = time.perf_counter()
        got = fwd(*args, **kwargs)
        cache = bool(req.get("cache"))
        shape = "(" + ", ".join(req.get("names", ["out"])) + (", cache)" if cache else ")")
        got = _results(got, n_out + cache, req["forward"], shape)
        arrays = [_array(g, f"{req['forward']}'s {req.get('names', ['out'] * n_out)[k]}")
                  for k, g in enumerate(got[:n_out])]
        state = []
        for index, key in req.get("state", []):
            holder = args[index] if isinstance(index, int) else kwargs.get(index)
            if not isinstance(holder, dict) or key not in holder:
                raise ValueError(f"{req['forward']} did not store {key!r} in its parameter dict")
            state.append(_array(holder[key], f"the parameter dict's {key!r}"))
        grads = []
        if backward:
            stage = "backward"
            douts = [decode(d) for d in req["douts"]]
            back = _results(funcs[backward](*douts, got[-1]), req["grads"], backward,
                            "(" + ", ".join(req["grad_names"]) + ")")
            grads = [_array(g, f"{backward}'s {req['grad_names'][k]}") for k, g in enumerate(back)]
        seconds = time.perf_counter() - start
        every = arrays + state + grads
        return {"ok": True, "shapes": [list(a.shape) for a in every],
                "values": [[float(v) for v in a.ravel()] for a in every],
                "counts": [len(arrays), len(state), len(grads)], "seconds": seconds}
    except BaseException as e:  # noqa: BLE001 - sys.exit, KeyboardInterrupt from student code are reported
        return worker._error(e, engine, stage)


def _signature(f: Any) -> str:
    try:
        return ",".join(inspect.signature(f).parameters)
    except (TypeError, ValueError):
        return "*"


def _load(engine: str, names: list[str]) -> tuple[dict | None, dict]:
    sys.path.insert(0, os.path.dirname(engine))
    name = os.path.splitext(os.path.basename(engine))[0]
    try:
        with open(engine, encoding="utf-8", errors="replace") as f:
            source = f.read()
        code = py2_division(source, engine)
        spec = importlib.util.spec_from_file_location(name, engine)
        module = importlib.util.module_from_spec(spec)
        # Old (Python 2) homework: xrange and integer division keep working where the numbers make them exact.
        module.__dict__.update({"__microgradx_div__": _div, "xrange": range})
        sys.modules[name] = module
        exec(code, module.__dict__)
    except BaseException as e:  # noqa: BLE001
        return None, worker._error(e, engine, "import")
    funcs = {n: getattr(module, n) for n in names if callable(getattr(module, n, None))}
    return funcs, {"ok": True, "functions": {n: _signature(f) for n, f in funcs.items()}, "module": name}


def main(argv: list[str]) -> None:
    """Serve calls until the parent closes the pipe (the class-name argument is unused: functions are graded)."""
    worker.serve(argv, lambda engine, cls, names: _load(engine, names), run_call)


if __name__ == "__main__":
    main(sys.argv[1:])
