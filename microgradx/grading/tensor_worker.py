"""The sandboxed child that runs a student's NumPy ``Tensor``: it reads tensor programs as JSON lines on a private
pipe and answers with the output's data and each leaf's gradient as flat lists of floats. Standard library and
NumPy only, so the student's code never sees microgradx.

Run by the grader as ``python -I tensor_worker.py IN_FD OUT_FD ENGINE_FILE CLASS PROBES``; never writes a file.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import time
from typing import Any

__all__ = ["run_program", "as_array"]


def _load(name: str) -> Any:
    """A grader module next to this file (``python -I`` keeps this folder off ``sys.path``)."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"_microgradx_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


protocol = _load("protocol")          # the error and traceback helpers of the scalar worker's protocol
worker = _load("worker")
tensor_protocol = _load("tensor_protocol")


def as_array(x: Any, what: str) -> Any:
    """A student's array as a plain float64 ndarray, or a ValueError saying what it was.

    An ndarray subclass is read through the base class (its own ``tolist``, ``__eq__`` or ``__array__`` is
    never called); anything but an ndarray or a real number is refused.

    >>> import numpy as np
    >>> as_array(np.arange(3, dtype=np.float32), "x").dtype, as_array(2, "y").shape
    (dtype('float64'), ())
    """
    import numpy as np

    if isinstance(x, np.ndarray):
        a = np.ndarray.view(x, np.ndarray)
    elif type(x) in (int, float) or isinstance(x, (np.floating, np.integer)):
        a = np.asarray(x)
    else:
        raise ValueError(f"{what} is a {type(x).__name__}, not a NumPy array")
    if a.dtype.kind not in "fiu":
        raise ValueError(f"{what} has dtype {a.dtype}, not a real floating-point dtype")
    return np.array(a, dtype=np.float64)


def _leaf(value: Any, shape: list, flat: list) -> Any:
    import numpy as np

    return value(np.array(flat, dtype=np.float64).reshape(shape))


def run_program(value: Any, req: dict, engine: str) -> dict:
    """Build ``req``'s program on the Tensor class ``value``, call backward() on its output, and report the
    output's data and each leaf's data before and after and grad (flat, with shapes)."""
    import numpy as np

    conv = req["conv"]
    data = conv["data"]
    stage = "forward"
    try:
        leaves = [_leaf(value, shape, flat) for shape, flat in req["inputs"]]
        nodes = list(leaves)
        for op, args, param in req["steps"]:
            nodes.append(tensor_protocol.call(op, [nodes[i] for i in args], param, conv))
        out = nodes[-1]
        got = as_array(getattr(out, data), f"the output's .{data}")
        reply: dict = {"ok": True, "data": got.ravel().tolist(), "shape": list(got.shape),
                       "dtype": str(np.ndarray.view(getattr(out, data), np.ndarray).dtype)
                       if isinstance(getattr(out, data), np.ndarray) else "number"}
        if req.get("backward", True):
            reply["before"] = [as_array(getattr(leaf, data), f"v{k}.{data}").ravel().tolist()
                               for k, leaf in enumerate(leaves)]
            stage = "backward"
            start = time.perf_counter()
            if conv["seed"] == "explicit":
                out.backward(np.ones_like(got))
            else:
                out.backward()
            reply["seconds"] = time.perf_counter() - start
            stage = "after backward"
            grads, shapes, none = [], [], []
            for k, leaf in enumerate(leaves):
                g = leaf.grad
                if g is None:
                    none.append(k)
                    grads.append([])
                    shapes.append([])
                    continue
                a = as_array(g, f"v{k}.grad")
                grads.append(a.ravel().tolist())
                shapes.append(list(a.shape))
            reply.update(grads=grads, grad_shapes=shapes, none=none,
                         after=[as_array(getattr(leaf, data), f"v{k}.{data}").ravel().tolist()
                                for k, leaf in enumerate(leaves)])
        return reply
    except BaseException as e:  # noqa: BLE001 - sys.exit, KeyboardInterrupt from student code are reported
        return worker._error(e, engine, stage)


def _hello(engine: str, cls: str, probes: list[str]) -> tuple[Any, dict]:
    import numpy as np

    value, hello = worker._load(engine, cls, [])
    if value is None:
        return None, hello
    conv, missing = tensor_protocol.detect(value, lambda: value(np.array([1.5, -2.0])))
    missing.update(tensor_protocol.check(value, [p for p in probes if p in tensor_protocol.SPELLINGS]))
    methods = [p for p in probes if p in tensor_protocol.SPELLINGS and tensor_protocol.SPELLINGS[p] not in missing]
    return value, {"ok": True, "methods": methods, "module": hello["module"], "missing": missing,
                   "conventions": conv}


def _greet(engine: str, cls: str, probes: list[str]) -> tuple[Any, dict]:
    try:
        return _hello(engine, cls, probes)
    except BaseException as e:  # noqa: BLE001 - a class whose inspection itself raises
        return None, worker._error(e, engine, "import")


def main(argv: list[str]) -> None:
    """Serve programs until the parent closes the pipe."""
    worker.serve(argv, _greet, run_program)


if __name__ == "__main__":
    main(sys.argv[1:])
