"""The sandbox: a long-lived child process that runs the student's engine under resource limits, spoken to
by JSON lines on two private pipes (never stdout), killed with its whole session on a timeout.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Limits", "Sandbox", "EngineCrash"]

_WORKER = Path(__file__).with_name("worker.py")
_MB = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    """Resource limits of the child and wall-clock timeouts in seconds: ``Limits(example=1.0)``."""

    memory_mb: int = 1024      # RLIMIT_AS
    cpu_seconds: int = 300     # RLIMIT_CPU over the child's life
    processes: int = 64        # RLIMIT_NPROC (not enforced for root: the timeout and killpg still hold)
    file_mb: int = 10          # RLIMIT_FSIZE
    open_files: int = 64       # RLIMIT_NOFILE
    start: float = 10.0        # importing the student's file
    example: float = 1.0       # one program, forward and backward
    deep: float = 10.0         # the deep-graph program
    linear: float = 2.0        # the 40-level diamond chain
    rule: float = 30.0         # one rule, every example and shrinking
    total: float = 300.0       # one engine, every rule


class EngineCrash(Exception):
    """The child died, hung or garbled the protocol; ``reason`` says which in words for the report."""

    def __init__(self, reason: str, *, timeout: bool = False):
        super().__init__(reason)
        self.reason, self.timeout = reason, timeout


def _preexec(limits: Limits):
    def apply() -> None:
        import resource

        def cap(which: int, value: int) -> None:
            _, hard = resource.getrlimit(which)
            value = value if hard == resource.RLIM_INFINITY else min(value, hard)
            resource.setrlimit(which, (value, value if which != resource.RLIMIT_CPU else value + 5))

        cap(resource.RLIMIT_CPU, limits.cpu_seconds)
        cap(resource.RLIMIT_AS, limits.memory_mb * _MB)
        cap(resource.RLIMIT_NPROC, limits.processes)
        cap(resource.RLIMIT_FSIZE, limits.file_mb * _MB)
        cap(resource.RLIMIT_NOFILE, limits.open_files)
        # A core dump of a memory bomb would be written into the working directory: none.
        cap(resource.RLIMIT_CORE, 0)
    return apply


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "stopped answering"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        why = {"SIGXCPU": " (CPU time limit)", "SIGSEGV": " (segmentation fault: a C stack overflow?)",
               "SIGKILL": " (killed)", "SIGXFSZ": " (file size limit)"}.get(name, "")
        return f"was killed by {name}{why}"
    return f"exited with status {code} (sys.exit or os._exit in the engine?)"


class Sandbox:
    """One student engine in a child process: ``request(program)`` returns its reply or raises EngineCrash.

    The child runs ``python -I`` in a fresh temporary directory with a minimal environment; the parent never
    reads anything the child writes there, and deletes it on ``close``.

    >>> import pathlib, tempfile
    >>> src = pathlib.Path(tempfile.mkdtemp()) / "engine.py"
    >>> _ = src.write_text("class Value:\\n    def __init__(self, data):\\n        self.data = data\\n")
    >>> with Sandbox(src, probes=["relu"]) as box:
    ...     box.hello["methods"], box.request({"inputs": [2.0], "steps": [], "backward": False})["data"]
    ([], 2.0)
    """

    def __init__(self, engine: str | os.PathLike, *, cls: str = "Value", probes: list[str] = (),
                 limits: Limits = Limits()):
        self.engine, self.cls, self.probes, self.limits = Path(engine), cls, list(probes), limits
        self.proc: subprocess.Popen | None = None
        self.hello: dict = {}
        self._ids = 0
        self._buf = b""
        self.start()

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def start(self) -> None:
        """Start (or restart) the child and read its greeting: the import result and the methods found."""
        self.close()
        self.tmp = tempfile.mkdtemp(prefix="mgx-grade-")
        # Siblings too, so a submission split over a few modules still imports; the parent never reads them back.
        for sib in self.engine.parent.glob("*.py"):
            if sib.is_file():
                shutil.copyfile(sib, Path(self.tmp) / sib.name)
        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()
        env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": self.tmp, "TMPDIR": self.tmp,
               "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        argv = [sys.executable, "-I", str(_WORKER), str(to_child_r), str(from_child_w),
                str(Path(self.tmp) / self.engine.name), self.cls, ",".join(self.probes)]
        self.proc = subprocess.Popen(argv, cwd=self.tmp, env=env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     pass_fds=(to_child_r, from_child_w), start_new_session=True,
                                     preexec_fn=_preexec(self.limits))
        os.close(to_child_r)
        os.close(from_child_w)
        os.set_blocking(self._to_child, False)  # a hung child must not block the parent on a full pipe
        self._buf = b""
        self.hello = self._read(self.limits.start, "importing the engine")

    def request(self, program: dict, timeout: float | None = None) -> dict:
        """Send one program, wait at most ``timeout`` seconds (``limits.example``) for the reply."""
        if self.proc is None or not self.hello.get("ok"):
            raise EngineCrash("the engine is not running")
        self._ids += 1
        line = json.dumps({**program, "id": self._ids}).encode() + b"\n"
        timeout = self.limits.example if timeout is None else timeout
        deadline = time.monotonic() + timeout
        try:
            written = _write_all(self._to_child, line, deadline)
        except OSError:
            raise EngineCrash(self._dead("before reading the program")) from None
        if not written:
            self.kill()
            raise EngineCrash(f"did not read the program within {timeout:g} s (an infinite loop?)", timeout=True)
        reply = self._read(max(deadline - time.monotonic(), 0.0), "running a program", shown=timeout)
        if reply.get("id") != self._ids:
            self.kill()
            raise EngineCrash("the engine wrote something else on the grader's private pipe")
        return reply

    def _read(self, timeout: float, doing: str, shown: float | None = None) -> dict:
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            ready = select.select([self._from_child], [], [], max(left, 0))[0] if left > 0 else []
            if not ready:
                self.kill()
                limit = timeout if shown is None else shown
                raise EngineCrash(f"did not finish within {limit:g} s while {doing} (an infinite loop?)",
                                  timeout=True)
            chunk = os.read(self._from_child, 1 << 16)
            if not chunk:
                raise EngineCrash(self._dead(f"while {doing}"))
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        try:
            reply = json.loads(line)
        except ValueError:
            self.kill()
            raise EngineCrash("the engine wrote something else on the grader's private pipe") from None
        if not isinstance(reply, dict):
            self.kill()
            raise EngineCrash("the engine wrote something else on the grader's private pipe")
        return reply

    def _dead(self, when: str) -> str:
        code = None
        if self.proc is not None:
            try:
                code = self.proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                pass
        self.kill()
        return f"the engine process {_describe_exit(code)} {when}"

    def kill(self) -> None:
        """Kill the child's whole session (its forks too) and reap it."""
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        for fd in (self._to_child, self._from_child):
            try:
                os.close(fd)
            except OSError:
                pass
        self.proc = None

    def close(self) -> None:
        """Stop the child (and anything it forked) and delete its working directory."""
        self.kill()
        tmp = getattr(self, "tmp", None)
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
            self.tmp = None


def _write_all(fd: int, data: bytes, deadline: float) -> bool:
    """Write everything to a non-blocking fd before ``deadline``; False when the reader stopped reading."""
    view = memoryview(data)
    while view:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([], [fd], [], left)[1]:
            return False
        try:
            n = os.write(fd, view)
        except BlockingIOError:
            continue
        view = view[n:]
    return True
