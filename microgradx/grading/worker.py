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
from typing import Any

__all__ = ["run_program"]


def _load_protocol() -> Any:
    """The protocol module next to this file (``python -I`` keeps this folder off ``sys.path``)."""
    try:
        from . import protocol
        return protocol
    except ImportError:
        path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "protocol.py")
        spec = importlib.util.spec_from_file_location("_microgradx_protocol", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module


protocol = _load_protocol()


def _real(x: Any, what: str) -> float:
    """A student's number as a float, or a ValueError saying what it was."""
    if isinstance(x, complex):
        raise ValueError(f"{what} is a complex number {x!r}")
    try:
        return float(x)
    except BaseException as e:  # noqa: BLE001 - anything a student's __float__ raises is their bug
        raise ValueError(f"{what} is not a number: {type(x).__name__} {protocol._short(x)}") from e


def _where(e: BaseException, engine: str) -> str:
    """The innermost line of the submission's files in a traceback: ``engine.py:12 in _backward: ...``."""
    name = os.path.basename(engine)
    if isinstance(e, SyntaxError) and e.lineno:
        text = (e.text or "").rstrip("\n")
        caret = " " * max((e.offset or 1) - 1 - (len(text) - len(text.lstrip())), 0) + "^"
        return f"{os.path.basename(e.filename or name)}:{e.lineno}: {text.strip()}\n{caret}"
    # The submission's own files: the submitted one and the sibling modules copied next to it.
    folder = os.path.dirname(os.path.abspath(engine))
    frames = [f for f in traceback.extract_tb(e.__traceback__)
              if os.path.dirname(os.path.abspath(f.filename)) == folder]
    if not frames:
        return ""
    f = frames[-1]
    return f"{os.path.basename(f.filename)}:{f.lineno} in {f.name}: {(f.line or '').strip()}"


def _error(e: BaseException, engine: str, stage: str) -> dict:
    if isinstance(e, SystemExit):
        text = f"called sys.exit({e.code!r})"
    elif isinstance(e, RecursionError):
        text = "RecursionError: maximum recursion depth exceeded"
    elif isinstance(e, SyntaxError):
        text = f"SyntaxError: {e.msg}"
    else:
        text = f"{type(e).__name__}: {e}"[:300]
    return {"ok": False, "stage": stage, "error": text, "where": _where(e, engine)}


def run_program(value: Any, req: dict, engine: str) -> dict:
    """Build ``req``'s program on ``value``, call backward() on each node of ``backward_on`` (the output by
    default), and report the output's data and grad and each leaf's data before and after and grad."""
    numbers = set(req.get("numbers", ()))
    stage = "forward"
    try:
        nodes: list = [x if k in numbers else value(x) for k, x in enumerate(req["inputs"])]
        leaves = [n for k, n in enumerate(nodes) if k not in numbers]
        for spelling, args, param in req["steps"]:
            nodes.append(protocol.call(spelling, [nodes[i] for i in args], param))
        out = nodes[-1]
        reply: dict = {"ok": True, "data": _real(out.data, "the output's .data")}
        if req.get("backward", True):
            calls = req.get("backward_on") or [len(nodes) - 1]
            reply["before"] = [_real(leaf.data, f"v{k}.data") for k, leaf in enumerate(leaves)]
            stage = "backward"
            start = time.perf_counter()
            for k in calls:
                out = nodes[k]
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
    # A submission split over several modules imports its siblings (copied next to it by the parent), and
    # they may import the submitted file by its own name: it is loaded under that name, so they share one
    # module and one class.
    sys.path.insert(0, os.path.dirname(engine))
    name = os.path.splitext(os.path.basename(engine))[0]
    try:
        spec = importlib.util.spec_from_file_location(name, engine)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    except BaseException as e:  # noqa: BLE001
        return None, _error(e, engine, "import")
    value = getattr(module, cls, None)
    if not isinstance(value, type):
        found = "nothing" if value is None else f"a {type(value).__name__}"
        return None, {"ok": False, "stage": "import", "where": "",
                      "error": f"the file defines no class {cls!r} (found {found}); "
                               f"{protocol.suggest_class(module, cls)}"}
    methods = [m for m in probes if callable(getattr(value, m, None))]
    return value, {"ok": True, "methods": methods, "module": value.__module__, "missing": protocol.check(value),
                   "near": protocol.near_methods(value, probes)}


def serve(argv: list[str], load: Any, answer: Any) -> None:
    """The child's loop, for every kind of homework: greet the parent with what ``load(engine, cls, probes)``
    returns (the thing to grade, or None after an import failure, and the greeting), then answer each request line
    with ``answer(thing, request, engine)`` until the parent closes the pipe."""
    fd_in, fd_out, engine, cls, probes = int(argv[0]), int(argv[1]), argv[2], argv[3], argv[4]
    reader = os.fdopen(fd_in, "r", encoding="utf-8")
    writer = os.fdopen(fd_out, "w", encoding="utf-8")

    def send(obj: dict) -> None:
        writer.write(json.dumps(obj) + "\n")
        writer.flush()

    thing, hello = load(engine, cls, [p for p in probes.split(",") if p])
    send(hello)
    if thing is None:
        return
    for line in reader:
        req = json.loads(line)
        reply = answer(thing, req, engine)
        reply["id"] = req["id"]
        send(reply)  # NOTE: NaN and infinities travel as JSON's NaN/Infinity tokens, which json.loads reads


def main(argv: list[str]) -> None:
    """Serve programs until the parent closes the pipe."""
    serve(argv, _load, run_program)


if __name__ == "__main__":
    main(sys.argv[1:])
