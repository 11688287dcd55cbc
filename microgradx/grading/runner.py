"""Grade one engine (every rule, in one sandbox) or many in parallel processes."""

from __future__ import annotations

import multiprocessing as mp
import multiprocessing.connection as mp_connection
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..strategies import STUDENT_OPS, spelling
from .assignment import Assignment, AssignmentError, matches
from .report import Report, RuleResult
from .rules import Outcome, Rule, build_rules, explain, run_rule
from .sandbox import EngineCrash, Sandbox, confinement, kill_user, sandbox_uid

__all__ = ["grade", "grade_many", "REQUIRED_OPS", "OPTIONAL_OPS"]

REQUIRED_OPS = tuple(o for o in STUDENT_OPS if not spelling(o).startswith("."))
OPTIONAL_OPS = tuple(o for o in STUDENT_OPS if spelling(o).startswith("."))


def _result(rule: Rule, outcome: Outcome, asg: Assignment) -> RuleResult:
    score = 0.0 if outcome.status == "failed" else rule.weight
    return RuleResult(rule.name, rule.title, rule.weight, score, outcome.status, asg.visible(rule.name),
                      explain(rule, outcome.finding) if outcome.finding else "", outcome.finding,
                      outcome.examples, outcome.seconds)


def grade(engine: str | os.PathLike, assignment: Assignment | None = None, *, ops: Sequence[str] | None = None,
          seed: int | None = None, only: Sequence[str] | None = None,
          progress: Callable[[RuleResult], None] | None = None) -> Report:
    """Grade the ``Value`` class in a student's file against every rule for its ops; never raises for
    anything the student's code does (crashes, hangs, exits are failed rules in the report).

    ``ops`` (else ``assignment.ops``, else the methods the engine has) chooses the ops graded; ``only`` (rule
    names or globs such as ``gradient[*]``) runs a subset of the rules.

    >>> import pathlib, tempfile
    >>> src = pathlib.Path(tempfile.mkdtemp()) / "engine.py"
    >>> _ = src.write_text("x = 1 / 0\\n")
    >>> report = grade(src, ops=["add"]); report.passed, report.results[0].finding["problem"]
    (False, 'import raised ZeroDivisionError: division by zero at engine.py:1 in <module>: x = 1 / 0')
    """
    assignment = assignment or Assignment()
    path = Path(engine)
    if not path.is_file():
        raise AssignmentError(f"no such engine file: {engine}")
    for o in ops or ():
        if o not in STUDENT_OPS:
            raise AssignmentError(f"unknown op {o!r} in --ops; the student protocol has {', '.join(STUDENT_OPS)}")
    with _hypothesis_home():
        return _grade(path, engine, assignment, ops, seed, only, progress)


@contextmanager
def _hypothesis_home() -> Iterator[None]:
    """Hypothesis keeps a cache folder (``.hypothesis``) in the current directory: grading puts it in a temporary
    folder of its own, deleted afterwards, so a grader run leaves nothing where it was started."""
    from hypothesis import configuration

    before = vars(configuration).get("__hypothesis_home_directory")
    tmp = tempfile.mkdtemp(prefix="mgx-hypothesis-")
    configuration.set_hypothesis_home_dir(tmp)
    try:
        yield
    finally:
        configuration.set_hypothesis_home_dir(before)
        shutil.rmtree(tmp, ignore_errors=True)


def _grade(path: Path, engine: str | os.PathLike, assignment: Assignment, ops: Sequence[str] | None,
           seed: int | None, only: Sequence[str] | None, progress: Callable[[RuleResult], None] | None) -> Report:
    start = time.monotonic()
    deadline = start + assignment.limits.total
    probes = [spelling(o)[1:] for o in OPTIONAL_OPS]
    notes: list[str] = []
    crash = None
    try:
        box = Sandbox(path, cls=assignment.cls, probes=probes, limits=assignment.limits)
    except EngineCrash as e:
        box, crash = None, f"import failed: {e.reason}"
    try:
        hello = box.hello if box else {}
        if box and not hello.get("ok"):
            where = f" at {hello['where']}" if hello.get("where") else ""
            crash = f"import raised {hello.get('error')}{where}"
        found = REQUIRED_OPS + tuple(o for o in OPTIONAL_OPS if spelling(o)[1:] in hello.get("methods", ()))
        graded = tuple(ops or assignment.ops or found)
        graded = tuple(o for o in STUDENT_OPS if o in graded)
        if hello.get("module") not in (None, "student_engine"):
            notes.append(f"{assignment.cls} is defined in module {hello['module']!r}, not in the submitted file")
        results = []
        rules = build_rules(graded, assignment)
        if only:
            rules = [r for r in rules if any(matches(r.name, pat) for pat in only)]
        for rule in rules:
            if crash is not None:
                outcome = Outcome("failed", 0, {"formula": "", "problem": crash, "rows": []})
            elif time.monotonic() > deadline:
                outcome = Outcome("failed", 0, {"formula": "", "rows": [], "problem": (
                    f"not run: grading this engine exceeded {assignment.limits.total:g} s")})
            else:
                outcome = run_rule(rule, box, assignment, graded, seed, deadline)
            result = _result(rule, outcome, assignment)
            results.append(result)
            if progress:
                progress(result)
    finally:
        if box:
            box.close()
    return Report(str(engine), assignment.name, graded, results, time.monotonic() - start, seed, notes)


def _crashed(engine: str, assignment: Assignment | None, ops: Sequence[str] | None, only: Sequence[str] | None,
             problem: str, seconds: float) -> Report:
    """The report of an engine whose grading process died or hung: every rule failed with ``problem``."""
    assignment = assignment or Assignment()
    graded = tuple(o for o in STUDENT_OPS if o in (ops or assignment.ops or REQUIRED_OPS))
    rules = build_rules(graded, assignment)
    if only:
        rules = [r for r in rules if any(matches(r.name, pat) for pat in only)]
    results = [_result(r, Outcome("failed", 0, {"formula": "", "problem": problem, "rows": []}), assignment)
               for r in rules]
    return Report(str(engine), assignment.name, graded, results, seconds, None, [])


def _grade_child(conn: Any, work: tuple) -> None:
    engine, assignment, ops, seed, only = work
    conn.send(grade(engine, assignment, ops=ops, seed=seed, only=only))
    conn.close()


def grade_many(engines: Sequence[str], assignment: Assignment | None = None, *, ops: Sequence[str] | None = None,
               seed: int | None = None, only: Sequence[str] | None = None, jobs: int = 1) -> list[Report]:
    """Grade several engines, ``jobs`` at a time, each in its own grading process; reports come back in input
    order. A grading process that dies, hangs or answers nothing is that engine's crash, never the batch's."""
    limits = (assignment or Assignment()).limits
    budget = limits.total + limits.start + 60.0
    context = mp.get_context("forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn")
    reports: list[Report | None] = [None] * len(engines)
    waiting = list(enumerate(engines))
    running: dict[int, tuple] = {}  # sentinel -> (index, process, connection, start)
    while waiting or running:
        while waiting and len(running) < max(1, jobs):
            k, engine = waiting.pop(0)
            recv, send = context.Pipe(duplex=False)
            proc = context.Process(target=_grade_child, args=(send, (engine, assignment, ops, seed, only)),
                                   daemon=True)
            proc.start()
            send.close()
            running[proc.sentinel] = (k, proc, recv, time.monotonic())
        waits = [recv for _, _, recv, _ in running.values()] + list(running)
        left = min(start + budget for _, _, _, start in running.values()) - time.monotonic()
        mp_connection.wait(waits, timeout=max(left, 0.0))
        for sentinel, (k, proc, recv, start) in list(running.items()):
            report, problem = None, ""
            if recv.poll():
                try:
                    report = recv.recv()
                except (EOFError, OSError):
                    problem = "the grading process died (killed by the engine?)"
            elif not proc.is_alive():
                problem = f"the grading process died with exit code {proc.exitcode} (killed by the engine?)"
            elif time.monotonic() - start > budget:
                problem = f"grading did not finish within {budget:g} s"
            else:
                continue
            if proc.is_alive() and report is None:
                proc.kill()
            proc.join(5)
            recv.close()
            del running[sentinel]
            if report is None and confinement().drops_root:
                kill_user(sandbox_uid(proc.pid))  # the sandboxes it left behind
            reports[k] = report if isinstance(report, Report) else _crashed(
                engines[k], assignment, ops, only, problem or "the grading process sent no report",
                time.monotonic() - start)
    return [r for r in reports if r is not None]
