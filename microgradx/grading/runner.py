"""Grade one engine (every rule, in one sandbox) or many in parallel processes."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from ..strategies import STUDENT_OPS, spelling
from .assignment import Assignment, AssignmentError, matches
from .report import Report, RuleResult
from .rules import Outcome, Rule, build_rules, explain, run_rule
from .sandbox import EngineCrash, Sandbox

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


def _grade_one(args: tuple) -> Report:
    engine, assignment, ops, seed, only = args
    return grade(engine, assignment, ops=ops, seed=seed, only=only)


def grade_many(engines: Sequence[str], assignment: Assignment | None = None, *, ops: Sequence[str] | None = None,
               seed: int | None = None, only: Sequence[str] | None = None, jobs: int = 1) -> list[Report]:
    """Grade several engines, ``jobs`` at a time in separate processes; reports come back in input order."""
    work = [(e, assignment, ops, seed, only) for e in engines]
    if jobs <= 1 or len(engines) == 1:
        return [_grade_one(w) for w in work]
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        return list(pool.map(_grade_one, work))
