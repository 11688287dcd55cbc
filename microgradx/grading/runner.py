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
from .rules import Context, Outcome, Rule, build_rules, needs, run_rule
from .sandbox import EngineCrash, Sandbox

__all__ = ["grade", "grade_many", "REQUIRED_OPS", "OPTIONAL_OPS", "setup_hint"]

REQUIRED_OPS = tuple(o for o in STUDENT_OPS if not spelling(o).startswith("."))
OPTIONAL_OPS = tuple(o for o in STUDENT_OPS if spelling(o).startswith("."))


def _result(rule: Rule, outcome: Outcome, asg: Assignment) -> RuleResult:
    score = rule.weight if outcome.status in ("passed", "warning") else 0.0
    return RuleResult(rule.name, rule.title, rule.weight, score, outcome.status, asg.visible(rule.name),
                      outcome.hint, outcome.finding, outcome.examples, outcome.seconds)


def setup_hint(source: str, problem: str) -> str:
    """What to do about an engine file that cannot be imported, read off the problem and the file itself.

    >>> setup_hint("for epoch in range(10**9):\\n    pass\\n", "did not finish within 10 s")[:61]
    'the file runs code when it is imported (line 1: `for epoch in'
    """
    if "did not finish within" in problem:
        line = _module_level_code(source)
        if line is not None:
            return (f"the file runs code when it is imported (line {line[0]}: `{line[1]}`): put scripts and "
                    f"training loops under `if __name__ == \"__main__\":`, so importing the file only defines "
                    f"the class")
        return "importing the file did not finish: an infinite loop at module level?"
    if problem.startswith("import raised SyntaxError"):
        return "the file is not valid Python: fix the line shown (run `python engine.py` to see the same error)"
    if problem.startswith("the file defines no class"):
        # The worker names the near-miss class after the semicolon.
        return problem.partition("; ")[2] or "the grader looks for the class by the name the assignment gives"
    if "ModuleNotFoundError" in problem or "ImportError" in problem:
        return ("the file imports a module the grader does not have: a submission may use the standard library "
                "and its own sibling files")
    if "sys.exit" in problem:
        return "the file calls sys.exit() when imported: put script code under `if __name__ == \"__main__\":`"
    return "importing the file raised an error: fix the line shown"


def _module_level_code(source: str) -> tuple[int, str] | None:
    """The first loop or call at module level outside an ``if __name__ == "__main__":`` guard."""
    import ast

    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return None
    lines = source.splitlines()
    for node in tree.body:
        if isinstance(node, (ast.For, ast.While, ast.AsyncFor, ast.With)) or \
                (isinstance(node, ast.Expr) and isinstance(node.value, ast.Call)):
            return node.lineno, lines[node.lineno - 1].strip()[:100]
    return None


def _setup_report(path: Path, engine: str, asg: Assignment, graded: tuple[str, ...], problem: str,
                  start: float) -> Report:
    """One entry, worth every point, for an engine file that cannot be graded at all."""
    try:
        source = path.read_text(errors="replace")
    except OSError:
        source = ""
    hint = setup_hint(source, problem)
    problem = problem.partition("; ")[0] if problem.startswith("the file defines no class") else problem
    total = sum(r.weight for r in build_rules(graded, asg))
    finding = {"formula": "", "rows": [], "problem": problem, "shrunk": False}
    result = RuleResult("setup", "the engine file imports and defines the class", total, 0.0, "failed", "visible",
                        hint, finding)
    return Report(engine, asg.name, graded, [result], time.monotonic() - start, None, [], setup=True)


def _methods_missing(graded: tuple[str, ...], hello: dict, cls: str) -> dict[str, str]:
    near = {meant: name for name, meant in (hello.get("near") or {}).items()}
    out = {}
    for o in graded:
        s = spelling(o)
        if s.startswith(".") and s[1:] not in (hello.get("methods") or ()):
            also = f" (it has `{near[s[1:]]}`: rename it to `{s[1:]}`)" if s[1:] in near else ""
            out[s] = f"the class has no method {s[1:]}(){also}"
    return out


def grade(engine: str | os.PathLike, assignment: Assignment | None = None, *, ops: Sequence[str] | None = None,
          seed: int | None = None, only: Sequence[str] | None = None,
          progress: Callable[[RuleResult], None] | None = None) -> Report:
    """Grade the ``Value`` class in a student's file against every rule for its ops; never raises for
    anything the student's code does (crashes, hangs, exits are failed rules in the report).

    ``ops`` (else ``assignment.ops``, else the required ops and the optional methods the engine has) chooses
    the ops graded; ``only`` (rule names or globs such as ``gradient[*]``) runs a subset of the rules. A file
    that cannot be imported gets one ``setup`` entry worth every point.

    >>> import pathlib, tempfile
    >>> src = pathlib.Path(tempfile.mkdtemp()) / "engine.py"
    >>> _ = src.write_text("x = 1 / 0\\n")
    >>> report = grade(src, ops=["add"]); report.setup, report.results[0].finding["problem"]
    (True, 'import raised ZeroDivisionError: division by zero at engine.py:1 in <module>: x = 1 / 0')
    """
    asg = assignment or Assignment()
    path = Path(engine)
    if not path.is_file():
        raise AssignmentError(f"no such engine file: {engine}")
    for o in ops or ():
        if o not in STUDENT_OPS:
            raise AssignmentError(f"unknown op {o!r} in --ops; the student protocol has {', '.join(STUDENT_OPS)}")
    if only:
        every = [r.name for r in build_rules(STUDENT_OPS, asg)]
        for pat in only:
            if not any(matches(name, pat) for name in every):
                raise AssignmentError(f"--rules {pat!r} matches no rule; the rules are {', '.join(every)}")
    start = time.monotonic()
    deadline = start + asg.limits.total
    methods = [spelling(o)[1:] for o in OPTIONAL_OPS]
    fixed = tuple(ops or asg.ops or ())
    box = None
    try:
        try:
            box = Sandbox(path, cls=asg.cls, probes=methods, limits=asg.limits)
        except EngineCrash as e:
            return _setup_report(path, str(engine), asg, fixed or REQUIRED_OPS, f"import: the engine {e.reason}",
                                 start)
        hello = box.hello
        if not hello.get("ok"):
            where = f" at {hello['where']}" if hello.get("where") else ""
            error = str(hello.get("error"))
            problem = error if error.startswith("the file defines no class") else f"import raised {error}{where}"
            return _setup_report(path, str(engine), asg, fixed or REQUIRED_OPS, problem, start)
        found = REQUIRED_OPS + tuple(o for o in OPTIONAL_OPS if spelling(o)[1:] in (hello.get("methods") or ()))
        graded = tuple(o for o in STUDENT_OPS if o in (fixed or found))
        notes: list[str] = []
        if hello.get("module") not in (None, path.stem):
            notes.append(f"{asg.cls} is defined in module {hello['module']!r}, not in the submitted file")
        not_graded = [f"{name} (the protocol calls it {meant})"
                      for name, meant in sorted((hello.get("near") or {}).items()) if meant not in graded]
        missing = {str(k): str(v) for k, v in dict(hello.get("missing") or {}).items()}
        missing.update(_methods_missing(graded, hello, asg.cls))
        ctx = Context(graded, asg, missing)
        results = []
        if missing:
            hint = "; ".join(missing.values())
            results.append(RuleResult("protocol", "the class has every piece of the student protocol", 0.0, 0.0,
                                      "failed", "visible", "the rules that need a missing piece are blocked",
                                      {"formula": "", "rows": [], "problem": hint, "missing": sorted(missing)}))
            ctx.status["protocol"] = "failed"
        rules = build_rules(graded, asg)
        if only:
            rules = [r for r in rules if any(matches(r.name, pat) for pat in only)]
        ctx.planned = {r.name for r in rules}
        for rule in rules:
            blocker = needs(rule, ctx)
            if blocker is not None:
                outcome = Outcome("blocked", 0, {"formula": "", "rows": [], "problem": f"blocked by {blocker}",
                                                 "blocked_by": blocker})
            elif time.monotonic() > deadline:
                outcome = Outcome("failed", 0, {"formula": "", "rows": [], "problem": (
                    f"not run: grading this engine exceeded {asg.limits.total:g} s")})
            else:
                outcome = run_rule(rule, box, ctx, seed, deadline)
            ctx.record(rule, outcome)
            result = _result(rule, outcome, asg)
            results.append(result)
            if progress:
                progress(result)
    finally:
        if box:
            box.close()
    return Report(str(engine), asg.name, graded, results, time.monotonic() - start, seed, notes,
                  not_graded=not_graded)


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
