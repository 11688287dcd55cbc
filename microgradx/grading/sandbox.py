"""The sandbox: a long-lived child process that runs the student's engine under resource limits, in Linux
namespaces (bubblewrap) where available and as an unprivileged user when the grader is root, spoken to by JSON
lines on two private pipes; the parent validates every reply and kills every process of the sandbox after use.
"""

from __future__ import annotations

import functools
import json
import os
import re
import select
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Limits", "Sandbox", "EngineCrash", "Confinement", "confinement", "validate_reply", "decode_reply",
           "check_fields", "malformed", "sandbox_uid",
           "kill_user", "MAX_REPLY_BYTES", "MAX_NESTING", "MAX_TEXT"]

_GRADING = Path(__file__).resolve().parent
_PACKAGE = _GRADING.parent
# The files the child needs from the grader: every kind's worker and the standard-library (and NumPy) modules
# they import; the Sandbox's ``worker`` names the one the child runs.
_WORKER_FILES = ("worker.py", "protocol.py", "layers_worker.py", "tensor_worker.py", "tensor_protocol.py")
_MB = 1024 * 1024

MAX_REPLY_BYTES = _MB   # one reply line; legitimate ones are a few hundred bytes plus a clipped source line
MAX_NESTING = 3         # brackets deep: a reply is an object holding lists of numbers
MAX_TEXT = 400          # characters kept of any string the child sends


@dataclass(frozen=True)
class Limits:
    """Resource limits of the child and wall-clock timeouts in seconds: ``Limits(example=1.0)``."""

    memory_mb: int = 1024      # RLIMIT_AS
    cpu_seconds: int = 300     # RLIMIT_CPU over the child's life
    processes: int = 64        # RLIMIT_NPROC (of the sandbox's own user when the grader is root)
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


# ---------------------------------------------------------------------------------------------------------
# Replies: nothing the child sends is trusted
# ---------------------------------------------------------------------------------------------------------

def _number(x: Any) -> bool:
    return type(x) in (int, float)


def _numbers(x: Any) -> bool:
    return type(x) is list and all(_number(v) for v in x)


def _text(x: Any) -> bool:
    return type(x) is str


def _texts(x: Any) -> bool:
    return type(x) is list and all(_text(v) for v in x)


def _text_map(x: Any) -> bool:
    # a small table of names to sentences (the greeting's missing protocol pieces and near-miss method names)
    return type(x) is dict and len(x) <= 64 and all(_text(k) and _text(v) for k, v in x.items())


def _true(x: Any) -> bool:
    return x is True


def _false(x: Any) -> bool:
    return x is False


# Every message the worker sends, as key -> check of its value. A reply to a program also carries "id". To add a
# field to the protocol, add it here (and, for a list whose length the request fixes, to _LENGTHS).
REPLY_FIELDS: dict[str, dict[str, Callable[[Any], bool]]] = {
    "greeting": {"ok": _true, "methods": _texts, "module": _text, "missing": _text_map, "near": _text_map},
    "failure": {"ok": _false, "stage": _text, "error": _text, "where": _text},
    "forward": {"ok": _true, "data": _number},
    "backward": {"ok": _true, "data": _number, "seconds": _number, "grad_out": _number, "grads": _numbers,
                 "before": _numbers, "after": _numbers},
}
# Lists whose length must equal the number of engine values (inputs that are not plain numbers) in the request.
_LENGTHS = ("grads", "before", "after")

_SPECIAL = re.compile(rb'[\[\]{}"\\]')


def _nesting_exceeds(line: bytes, limit: int) -> bool:
    """True when brackets outside strings nest deeper than ``limit``; stops at the first level too deep."""
    depth, in_string, skip = 0, False, -1
    for m in _SPECIAL.finditer(line):
        i = m.start()
        if i == skip:
            continue
        c = line[i]
        if in_string:
            if c == 0x5C:  # a backslash escapes the next character
                skip = i + 1
            elif c == 0x22:
                in_string = False
        elif c == 0x22:
            in_string = True
        elif c in (0x5B, 0x7B):
            depth += 1
            if depth > limit:
                return True
        elif c in (0x5D, 0x7D):
            depth -= 1
    return False


def _clip(s: str) -> str:
    return s if len(s) <= MAX_TEXT else s[:MAX_TEXT - 30] + f"... ({len(s) - MAX_TEXT + 30} more characters)"


def _scalar_lengths(reply: dict, asked: dict) -> str | None:
    want = len(asked.get("inputs", ())) - len(set(asked.get("numbers", ())))
    for key in _LENGTHS:
        if len(reply[key]) != want:
            return f"{key} has {len(reply[key])} numbers, the program has {want} engine values"
    return None


def validate_reply(line: bytes, asked: dict | None = None, probes: Sequence[str] = (),
                   fields: dict[str, dict[str, Callable[[Any], bool]]] | None = None,
                   sizes: Callable[[dict, dict], str | None] | None = None) -> dict:
    """The child's message ``line`` decoded and checked, or EngineCrash saying what is wrong with it.

    Contract: ``asked`` is the request the reply answers (``None`` for the greeting, sent unasked after import;
    ``probes`` are then the method names the parent asked about). The line is refused before decoding when it is
    longer than ``MAX_REPLY_BYTES`` or nests brackets deeper than ``MAX_NESTING``; after decoding it must be an
    object with exactly the keys of one entry of ``REPLY_FIELDS`` (plus ``id`` equal to ``asked["id"]``), each
    value of the right type; ``grads``, ``before`` and ``after`` have one number per engine value of the request;
    a greeting's ``methods`` are among ``probes``. Another kind of engine passes its own ``fields`` table and
    ``sizes`` check (the reply and the request in, a sentence out when a length is wrong). Every string is
    clipped to ``MAX_TEXT`` characters. The caller treats the EngineCrash as the engine's crash (a failed rule),
    never as the grader's.

    >>> validate_reply(b'{"ok": true, "data": 2.0, "id": 1}', {"id": 1, "inputs": [2.0], "backward": False})
    {'ok': True, 'data': 2.0, 'id': 1}
    >>> validate_reply(b"[" * 200000, {"id": 1})
    Traceback (most recent call last):
    ...
    microgradx.grading.sandbox.EngineCrash: the engine sent a malformed reply on the grader's private pipe: \
brackets nested deeper than 3
    """
    reply = decode_reply(line, asked)
    return check_fields(reply, asked, REPLY_FIELDS if fields is None else fields, probes, sizes)


def malformed(why: str) -> EngineCrash:
    """The EngineCrash of a reply that breaks the protocol, saying ``why``."""
    return EngineCrash(f"the engine sent a malformed reply on the grader's private pipe: {why}")


def decode_reply(line: bytes, asked: dict | None) -> dict:
    """The child's line as a JSON object without its ``id``, or EngineCrash: refused before decoding when longer
    than ``MAX_REPLY_BYTES`` or nested deeper than ``MAX_NESTING``; an ``id`` other than ``asked["id"]`` is
    refused too. Shared by every worker's reply check.

    >>> decode_reply(b'{"ok": true, "id": 3}', {"id": 3})
    {'ok': True}
    """
    bad = malformed
    if len(line) > MAX_REPLY_BYTES:
        raise bad(f"{len(line)} bytes, more than {MAX_REPLY_BYTES}")
    if _nesting_exceeds(line, MAX_NESTING):
        raise bad(f"brackets nested deeper than {MAX_NESTING}")
    try:
        reply = json.loads(line)
    except (ValueError, RecursionError):
        raise bad("not JSON") from None
    if type(reply) is not dict:
        raise bad(f"a JSON {type(reply).__name__}, not an object")
    if asked is not None:
        if reply.get("id") != asked.get("id") or type(reply.get("id")) is not int:
            raise bad(f"answers request {_clip(repr(reply.get('id')))}, not {asked.get('id')}")
        reply = {k: v for k, v in reply.items() if k != "id"}
    return reply


def check_fields(reply: dict, asked: dict | None, table: dict[str, dict[str, Callable[[Any], bool]]],
                 probes: Sequence[str] = (), sizes: Callable[[dict, dict], str | None] | None = None) -> dict:
    """``reply`` checked against ``table`` (``greeting``, ``failure`` and the entry named by ``asked["backward"]``,
    ``backward`` or ``forward``): exactly the keys of its entry, each value passing its check; every string
    clipped to ``MAX_TEXT``; the ``id`` put back. ``sizes`` checks a backward reply's lengths (the reply and the
    request in, a sentence out when one is wrong); the scalar lengths are checked where their keys exist."""
    bad = malformed
    if reply.get("ok") is False:
        kind = "failure"
    elif asked is None:
        kind = "greeting"
    else:
        kind = "backward" if asked.get("backward", True) else "forward"
    fields = table[kind]
    if set(reply) != set(fields):
        missing, extra = sorted(set(fields) - set(reply)), sorted(set(reply) - set(fields))
        raise bad(_clip(f"keys missing {missing}, unexpected {extra}"))
    for key, ok in fields.items():
        if not ok(reply[key]):
            raise bad(_clip(f"{key} is {type(reply[key]).__name__} {reply[key]!r}"))
    if kind == "backward" and (sizes or "grads" in fields):
        wrong = (sizes or _scalar_lengths)(reply, asked)
        if wrong:
            raise bad(_clip(wrong))
    if kind == "greeting" and "methods" in fields and not set(reply["methods"]) <= set(probes):
        raise bad("methods that were not asked about")
    clipped = {k: _clip(v) if type(v) is str else [_clip(s) if type(s) is str else s for s in v]
               if type(v) is list else {_clip(a): _clip(b) for a, b in v.items()} if type(v) is dict else v
               for k, v in reply.items()}
    return clipped if asked is None else {**clipped, "id": asked["id"]}


# ---------------------------------------------------------------------------------------------------------
# Confinement: what this machine allows
# ---------------------------------------------------------------------------------------------------------

# Run inside the sandbox as the child's first code: drop root for the sandbox's user (inside the namespaces, where
# bubblewrap left the two capabilities this needs), then run the worker named on the command line from
# the grader's read-only copy.
_BOOT = """\
import os, sys
uid, grader = sys.argv[1], sys.argv[2]
if uid != "-":
    os.setgroups([])
    os.setgid(int(uid))
    os.setuid(int(uid))
import json, math, runpy
if grader == "-":
    raise SystemExit(0)
sys.modules["microgradx"] = None
sys.path.insert(0, grader)
sys.argv = [os.path.join(grader, sys.argv[3]), *sys.argv[4:]]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


@dataclass(frozen=True)
class Confinement:
    """How a child is confined on this machine (see docs/grading.md, The sandbox): ``confinement().summary``."""

    namespaces: bool   # bubblewrap: PID, network, IPC namespaces; read-only file system; private /proc and /tmp
    drops_root: bool   # the grader is root and the child runs as the sandbox's own unprivileged user
    missing: str       # what is missing for the strongest confinement, in words ("" when nothing)

    @property
    def summary(self) -> str:
        """One line for reports and ``--help`` readers."""
        parts = ["namespaces (bubblewrap)" if self.namespaces else "no namespaces",
                 "unprivileged user" if self.drops_root else "the grader's user"]
        return ", ".join(parts) + (f"; {self.missing}" if self.missing else "")


def sandbox_uid(pid: int | None = None) -> int:
    """The user id the sandboxes of grader process ``pid`` run as when the grader is root: one per process, so
    that no two concurrent graders share a user (and RLIMIT_NPROC and ``kill_user`` see only one grader's child).

    >>> 61000 <= sandbox_uid(12345) < 65000
    True
    """
    return 61000 + (os.getpid() if pid is None else pid) % 4000


def _reveal(paths: Sequence[str]) -> list[str]:
    """bubblewrap arguments that make ``paths`` reachable to an unprivileged user when a folder above them is not
    (a Python under /root): an empty tmpfs over that folder, then each path bound read-only inside it."""
    args: list[str] = []
    hidden: set[str] = set()
    for p in sorted(set(paths), key=len):
        if any(p == q or p.startswith(q.rstrip("/") + "/") for q in _bound(args)):
            continue
        parts = Path(p).parts
        for k in range(2, len(parts)):
            above = str(Path(*parts[:k]))
            try:
                if os.stat(above).st_mode & stat.S_IXOTH:
                    continue
            except OSError:
                break
            if above not in hidden:
                hidden.add(above)
                args += ["--perms", "0755", "--tmpfs", above]
            for j in range(k + 1, len(parts)):
                args += ["--perms", "0755", "--dir", str(Path(*parts[:j]))]
            args += ["--ro-bind", p, p]
            break
    return args


def _bound(args: list[str]) -> list[str]:
    return [args[i + 1] for i, a in enumerate(args) if a == "--ro-bind"]


def _python_paths() -> list[str]:
    """The folders this Python needs: its prefixes, the folder of its executable, and its import path."""
    paths = {os.path.dirname(os.path.realpath(sys.executable)), sys.prefix, sys.base_prefix, sys.exec_prefix,
             sys.base_exec_prefix, *(p for p in sys.path if p)}
    return sorted({os.path.realpath(p) for p in paths if os.path.isdir(p)} | {p for p in paths if os.path.isdir(p)})


def _bwrap_argv(drop: bool, grader: str, work: str, status_fd: int | None) -> list[str]:
    """The bubblewrap command line: new PID, network, IPC and UTS namespaces; the file system read-only with a
    private /tmp holding the grader's files (read-only) and the work folder (writable); microgradx hidden."""
    argv = [shutil.which("bwrap") or "bwrap", "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts",
            "--unshare-cgroup-try", "--die-with-parent", "--new-session",
            "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp", "--tmpfs", "/var/tmp",
            "--tmpfs", "/dev/shm", "--tmpfs", "/run"]
    if drop:
        argv += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID", *_reveal(_python_paths())]
    else:
        argv += ["--unshare-user"]
    argv += ["--tmpfs", str(_PACKAGE), "--ro-bind", grader, "/tmp/grader", "--bind", work, "/tmp/work",
             "--chdir", "/tmp/work"]
    if status_fd is not None:
        argv += ["--json-status-fd", str(status_fd)]
    return argv + ["--"]


def _probe(namespaces: bool, drop: bool) -> bool:
    """Does a child start this way here (and, dropping root, can the sandbox's user still run this Python)?"""
    with tempfile.TemporaryDirectory(prefix="mgx-probe-") as tmp:
        os.chmod(tmp, 0o755)
        argv = [sys.executable, "-I", "-c", _BOOT, str(sandbox_uid()) if drop else "-", "-"]
        if namespaces:
            argv = _bwrap_argv(drop, tmp, tmp, None) + argv
        try:
            done = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL, timeout=20, cwd=tmp, env=_env("/tmp"))
        except (OSError, subprocess.SubprocessError):
            return False
        return done.returncode == 0


@functools.cache
def _detect(mode: str, root: bool, linux: bool) -> Confinement:
    bwrap = linux and mode != "plain" and shutil.which("bwrap") is not None
    if bwrap and _probe(True, root):
        return Confinement(True, root, "")
    why = ("namespaces not requested (MICROGRADX_SANDBOX=plain)" if mode == "plain"
           else "no namespaces on this system" if not linux
           else "bubblewrap is not installed" if not bwrap
           else "bubblewrap cannot create namespaces here (a container without user namespaces?)")
    if root and _probe(False, True):
        return Confinement(False, True, why)
    if root:
        why += "; the child runs as root: this Python is not readable by an unprivileged user"
    return Confinement(False, False, why)


def confinement() -> Confinement:
    """The confinement every sandbox of this process gets: bubblewrap when it works, an unprivileged user when
    the grader is root. ``MICROGRADX_SANDBOX=plain`` turns namespaces off (to compare); the default is ``auto``.
    """
    mode = os.environ.get("MICROGRADX_SANDBOX", "auto")
    if mode not in ("auto", "plain"):
        raise ValueError(f"MICROGRADX_SANDBOX must be auto or plain, not {mode!r}")
    root = hasattr(os, "geteuid") and os.geteuid() == 0
    return _detect(mode, root, sys.platform.startswith("linux"))


def _env(tmp: str) -> dict[str, str]:
    return {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": tmp, "TMPDIR": tmp,
            "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _preexec(limits: Limits) -> Callable[[], None]:
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


# ---------------------------------------------------------------------------------------------------------
# Ending every process of a sandbox
# ---------------------------------------------------------------------------------------------------------

def _processes_of(uid: int) -> list[int]:
    """Live (not zombie) processes whose real user is ``uid``."""
    pids = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            status = Path(entry.path, "status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        if fields.get("Uid", "").split()[:1] == [str(uid)] and not fields.get("State", "").strip().startswith("Z"):
            pids.append(int(entry.name))
    return pids


def _kill_all_of_my_user() -> None:
    os.kill(-1, signal.SIGKILL)  # every process this user may signal: all of the sandbox user's, none else


def kill_user(uid: int) -> None:
    """Kill every process of the sandbox user ``uid`` (daemons that left the session too) and delete what it
    left at the top of the world-writable temporary folders; needs root. Returns when none is left."""
    listed = os.path.isdir("/proc")  # elsewhere (macOS) the processes cannot be listed: kill a few rounds
    for _ in range(100 if listed else 3):
        if listed and not _processes_of(uid):
            break
        subprocess.run(["true"], user=uid, group=uid, extra_groups=[], preexec_fn=_kill_all_of_my_user,
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False,
                       env={"PATH": "/usr/bin:/bin"})
        time.sleep(0.01)
    for folder in ("/tmp", "/var/tmp", "/dev/shm"):
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            try:
                if entry.stat(follow_symlinks=False).st_uid != uid:
                    continue
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path, ignore_errors=True)
                else:
                    os.unlink(entry.path)
            except OSError:
                pass


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
    """One student engine in a child process: ``request(program)`` returns its validated reply or raises
    EngineCrash.

    The child runs ``python -I`` with a minimal environment in a fresh work folder holding copies of the
    submission's files, confined as ``confinement()`` says; the parent never reads anything the child writes
    there, deletes it on ``close``, and ends every process of the sandbox on ``kill``.

    >>> import pathlib, tempfile
    >>> src = pathlib.Path(tempfile.mkdtemp()) / "engine.py"
    >>> _ = src.write_text("class Value:\\n    def __init__(self, data):\\n        self.data = data\\n")
    >>> with Sandbox(src, probes=["relu"]) as box:
    ...     box.hello["methods"], box.request({"inputs": [2.0], "steps": [], "backward": False})["data"]
    ([], 2.0)
    """

    def __init__(self, engine: str | os.PathLike, *, cls: str = "Value", probes: Sequence[str] = (),
                 limits: Limits = Limits(), worker: str = "worker.py",
                 validate: Callable[[bytes, dict | None, Sequence[str]], dict] | None = None):
        self.engine, self.cls, self.probes, self.limits = Path(engine), cls, list(probes), limits
        # The child's program (one of _WORKER_FILES) and the check of its replies: the scalar protocol's by default.
        self.worker, self.validate = worker, validate or validate_reply
        self.proc: subprocess.Popen | None = None
        self.hello: dict = {}
        self.tmp: str | None = None
        self.confinement = confinement()
        self.uid = sandbox_uid() if self.confinement.drops_root else None
        self._init_pid: int | None = None
        self._ids = 0
        self._buf = b""
        self._to_child = self._from_child = self._status = -1
        self.start()

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def start(self) -> None:
        """Start (or restart) the child and read its greeting: the import result and the methods found."""
        self.close()
        try:
            self._spawn()
        except OSError as e:
            self.close()
            raise EngineCrash(f"the sandbox could not start: {e}") from None
        try:
            self.hello = self._read(self.limits.start, "importing the engine", None)
        except EngineCrash:
            self.close()  # nobody else holds this sandbox: its processes and copies go now
            raise

    def _spawn(self) -> None:
        self.tmp = tempfile.mkdtemp(prefix="mgx-grade-")
        os.chmod(self.tmp, 0o755)
        grader, work = os.path.join(self.tmp, "grader"), os.path.join(self.tmp, "work")
        os.mkdir(grader, 0o755)
        os.mkdir(work, 0o700)
        for name in _WORKER_FILES:
            if (_GRADING / name).is_file():
                shutil.copyfile(_GRADING / name, os.path.join(grader, name))
                os.chmod(os.path.join(grader, name), 0o644)
        # Siblings too, so a submission split over a few modules still imports; the parent never reads them back.
        for sib in self.engine.parent.glob("*.py"):
            if sib.is_file():
                shutil.copyfile(sib, os.path.join(work, sib.name))
        if self.uid is not None:
            for path in [work, *(os.path.join(work, n) for n in os.listdir(work))]:
                os.chown(path, self.uid, self.uid)
        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()
        fds = [to_child_r, from_child_w]
        status_r = status_w = None
        inside = (grader, work)
        if self.confinement.namespaces:
            status_r, status_w = os.pipe()
            fds.append(status_w)
            inside = ("/tmp/grader", "/tmp/work")
            argv = _bwrap_argv(self.uid is not None, grader, work, status_w)
        else:
            argv = []
        argv += [sys.executable, "-I", "-c", _BOOT, "-" if self.uid is None else str(self.uid), inside[0],
                 self.worker, str(to_child_r), str(from_child_w), os.path.join(inside[1], self.engine.name), self.cls,
                 ",".join(self.probes)]
        try:
            self.proc = subprocess.Popen(argv, cwd=work, env=_env(inside[1]), stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, pass_fds=fds,
                                         start_new_session=True, preexec_fn=_preexec(self.limits))
        finally:
            for fd in fds:
                os.close(fd)
        os.set_blocking(self._to_child, False)  # a hung child must not block the parent on a full pipe
        self._buf = b""
        if status_r is not None:
            self._init_pid = self._read_init_pid(status_r)

    def _read_init_pid(self, fd: int) -> int | None:
        """The first process inside the PID namespace, from bubblewrap's status line; killing it ends them all."""
        data = b""
        deadline = time.monotonic() + self.limits.start
        # Kept open: bubblewrap writes the exit status there at the end (and dies of SIGPIPE if nobody reads).
        self._status = fd
        while b"\n" not in data and len(data) < 4096:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return None
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            data += chunk
        try:
            pid = json.loads(data.split(b"\n", 1)[0])["child-pid"]
        except (ValueError, KeyError, TypeError):
            return None
        return pid if type(pid) is int else None

    def request(self, program: dict, timeout: float | None = None) -> dict:
        """Send one program, wait at most ``timeout`` seconds (``limits.example``) for the validated reply."""
        if self.proc is None or not self.hello.get("ok"):
            raise EngineCrash("the engine is not running")
        self._ids += 1
        asked = {**program, "id": self._ids}
        line = json.dumps(asked).encode() + b"\n"
        timeout = self.limits.example if timeout is None else timeout
        deadline = time.monotonic() + timeout
        try:
            written = _write_all(self._to_child, line, deadline)
        except OSError:
            raise EngineCrash(self._dead("before reading the program")) from None
        if not written:
            self.kill()
            raise EngineCrash(f"did not read the program within {timeout:g} s (an infinite loop?)", timeout=True)
        return self._read(max(deadline - time.monotonic(), 0.0), "running a program", asked, shown=timeout)

    def _read(self, timeout: float, doing: str, asked: dict | None, shown: float | None = None) -> dict:
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buf:
            if len(self._buf) > MAX_REPLY_BYTES:
                self.kill()
                raise EngineCrash(f"the engine sent a malformed reply on the grader's private pipe: more than "
                                  f"{MAX_REPLY_BYTES} bytes without a line end")
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
            return self.validate(line, asked, self.probes)
        except EngineCrash:
            self.kill()
            raise

    def _dead(self, when: str) -> str:
        code = None
        if self.proc is not None:
            try:
                code = self.proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                pass
            if code is not None and self._status >= 0:
                code = _exit_code(self._status, code)
        self.kill()
        return f"the engine process {_describe_exit(code)} {when}"

    def kill(self) -> None:
        """End every process of the sandbox (forks and daemons too) and reap the child; returns when none is left."""
        if self.proc is None:
            return
        if self._init_pid is not None and _parent_of(self._init_pid) == self.proc.pid:
            try:
                os.kill(self._init_pid, signal.SIGKILL)  # the PID namespace ends with its first process
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        if self.uid is not None:
            kill_user(self.uid)
        for fd in (self._to_child, self._from_child, self._status):
            if fd >= 0:
                os.close(fd)
        self._to_child = self._from_child = self._status = -1
        self.proc = None
        self._init_pid = None

    def close(self) -> None:
        """Stop the child (and anything it forked) and delete its working directory."""
        self.kill()
        if self.tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None


def _exit_code(status_fd: int, code: int) -> int:
    """The engine's own exit status from bubblewrap's last status line (a signal as its negative number, like
    Popen.returncode); ``code`` (bubblewrap's) when there is none."""
    os.set_blocking(status_fd, False)
    data = b""
    try:
        while len(data) < 65536:
            chunk = os.read(status_fd, 4096)
            if not chunk:
                break
            data += chunk
    except BlockingIOError:
        pass
    for line in reversed(data.splitlines()):
        try:
            got = json.loads(line).get("exit-code")
        except (ValueError, AttributeError):
            continue
        if type(got) is int:
            return -(got - 128) if got > 128 else got
    return code


def _parent_of(pid: int) -> int | None:
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat_line.rsplit(")", 1)[1].split()[1])


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
