"""The sandboxed child that runs a student's engine: it reads programs as JSON lines on a private pipe and
answers with data and gradients. Standard library only, so the student's code never sees microgradx.

Run by the grader as ``python -I worker.py IN_FD OUT_FD ENGINE_FILE CLASS PROBES``; never writes a file.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import time
import traceback
from collections.abc import Sequence
from typing import Any

__all__ = ["call"]


def call(spelling: str, args: Sequence[Any], param: Any = None) -> Any:
    """Apply one op through plain Python: ``"+"``, ``"-"``, ``"*"``, ``"/"``, ``"neg"``, ``"**"`` or
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


def _real(x: Any, what: str) -> float:
    """A student's number as a float, or a ValueError saying what it was."""
    if isinstance(x, complex):
        raise ValueError(f"{what} is a complex number {x!r}")
    try:
        return float(x)
    except BaseException as e:  # noqa: BLE001 - anything a student's __float__ raises is their bug
        raise ValueError(f"{what} is not a number: {type(x).__name__} {_short(x)}") from e


def _short(x: Any) -> str:
    try:
        s = repr(x)
    except BaseException:  # noqa: BLE001
        s = f"<{type(x).__name__}>"
    return s if len(s) <= 80 else s[:77] + "..."


def _where(tb: Any, engine: str) -> str:
    """The innermost line of the student's file in a traceback: ``engine.py:12 in _backward``."""
    frames = [f for f in traceback.extract_tb(tb) if os.path.basename(f.filename) == os.path.basename(engine)]
    if not frames:
        return ""
    f = frames[-1]
    return f"{os.path.basename(f.filename)}:{f.lineno} in {f.name}: {(f.line or '').strip()}"


def _error(e: BaseException, engine: str, stage: str) -> dict:
    if isinstance(e, SystemExit):
        text = f"called sys.exit({e.code!r})"
    elif isinstance(e, RecursionError):
        text = "RecursionError: maximum recursion depth exceeded"
    else:
        text = f"{type(e).__name__}: {e}"[:300]
    return {"ok": False, "stage": stage, "error": text, "where": _where(e.__traceback__, engine)}


def run_program(value: Any, req: dict, engine: str) -> dict:
    """Build ``req``'s program on ``value``, optionally run backward, and report data and gradients."""
    numbers = set(req.get("numbers", ()))
    stage = "forward"
    try:
        nodes: list = [x if k in numbers else value(x) for k, x in enumerate(req["inputs"])]
        leaves = [n for k, n in enumerate(nodes) if k not in numbers]
        for spelling, args, param in req["steps"]:
            nodes.append(call(spelling, [nodes[i] for i in args], param))
        out = nodes[-1]
        reply: dict = {"ok": True, "data": _real(out.data, "the output's .data")}
        if req.get("backward", True):
            stage = "backward"
            start = time.perf_counter()
            out.backward()
            reply["seconds"] = time.perf_counter() - start
            stage = "after backward"
            reply["grad_out"] = _real(out.grad, "the output's .grad")
            reply["grads"] = [_real(leaf.grad, f"v{k}.grad") for k, leaf in enumerate(leaves)]
            reply["after"] = [_real(leaf.data, f"v{k}.data") for k, leaf in enumerate(leaves)]
        return reply
    except BaseException as e:  # noqa: BLE001 - sys.exit, KeyboardInterrupt from student code are reported
        return _error(e, engine, stage)


def _load(engine: str, cls: str, probes: list[str]) -> tuple[Any, dict]:
    # A submission split over several modules imports its siblings (copied next to it by the parent).
    sys.path.insert(0, os.path.dirname(engine))
    try:
        spec = importlib.util.spec_from_file_location("student_engine", engine)
        module = importlib.util.module_from_spec(spec)
        sys.modules["student_engine"] = module
        spec.loader.exec_module(module)
    except BaseException as e:  # noqa: BLE001
        return None, _error(e, engine, "import")
    value = getattr(module, cls, None)
    if not isinstance(value, type):
        found = "nothing" if value is None else type(value).__name__
        return None, {"ok": False, "stage": "import", "where": "",
                      "error": f"the file defines no class {cls!r} (found {found})"}
    methods = [m for m in probes if callable(getattr(value, m, None))]
    return value, {"ok": True, "methods": methods, "module": value.__module__}


def main(argv: list[str]) -> None:
    """Serve programs until the parent closes the pipe."""
    fd_in, fd_out, engine, cls, probes = int(argv[0]), int(argv[1]), argv[2], argv[3], argv[4]
    reader = os.fdopen(fd_in, "r", encoding="utf-8")
    writer = os.fdopen(fd_out, "w", encoding="utf-8")

    def send(obj: dict) -> None:
        writer.write(json.dumps(obj) + "\n")
        writer.flush()

    value, hello = _load(engine, cls, [p for p in probes.split(",") if p])
    send(hello)
    if value is None:
        return
    for line in reader:
        req = json.loads(line)
        reply = run_program(value, req, engine)
        reply["id"] = req["id"]
        send(reply)  # NOTE: NaN and infinities travel as JSON's NaN/Infinity tokens, which json.loads reads


if __name__ == "__main__":
    main(sys.argv[1:])
