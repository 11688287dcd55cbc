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
from .assignment import Assignment, AssignmentError, check_ops, check_rule_patterns, matches
from .report import Report, RuleResult
from .rules import Context, Outcome, Rule, build_rules, needs, run_rule
from .sandbox import EngineCrash, Sandbox, confinement, kill_user, sandbox_uid

__all__ = ["grade", "grade_many", "REQUIRED_OPS", "OPTIONAL_OPS", "setup_hint"]

REQUIRED_OPS = tuple(o for o in STUDENT_OPS if not spelling(o).startswith("."))
OPTIONAL_OPS = tuple(o for o in STUDENT_OPS if spelling(o).startswith("."))


def _result(rule: Rule, outcome: Outcome, asg: Assignment) -> RuleResult:
    score = rule.weight if outcome.status in ("passed", "warning") else 0.0
    return RuleResult(rule.name, rule.title, rule.weight, score, outcome.status, asg.visible(rule.name),
                      outcome.hint, outcome.finding, outcome.examples, outcome.seconds)


def run_rules(rules: list[Rule], ctx: Context, asg: Assignment, deadline: float,
              run: Callable[[Rule], Outcome], progress: Callable[[RuleResult], None] | None = None
              ) -> list[RuleResult]:
    """Each rule's result, in order, for an engine kind whose rules run through ``run``: a rule whose needs
    failed is blocked, one reached after ``deadline`` is not run, and each outcome is recorded in ``ctx`` for
    the rules after it."""
    results = []
    for rule in rules:
        blocker = needs(rule, ctx)
        if blocker is not None:
            outcome = Outcome("blocked", 0, {"formula": "", "rows": [], "problem": f"blocked by {blocker}",
                                             "blocked_by": blocker})
        elif time.monotonic() > deadline:
            outcome = Outcome("failed", 0, {"formula": "", "rows": [], "problem": (
                f"not run: grading this engine exceeded {asg.limits.total:g} s")})
        else:
            outcome = run(rule)
        ctx.record(rule, outcome)
        result = _result(rule, outcome, asg)
        results.append(result)
        if progress:
            progress(result)
    return results


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
    total = sum(r.weight for r in _rules_for(graded, asg))
    finding = {"formula": "", "rows": [], "problem": problem, "shrunk": False}
    result = RuleResult("setup", "the engine file imports and defines the class", total, 0.0, "failed", "visible",
                        hint, finding)
    return Report(engine, asg.name, graded, [result], time.monotonic() - start, None, [], setup=True)


def _rules_for(graded: tuple[str, ...], asg: Assignment) -> list[Rule]:
    """The rules of the assignment's kind of engine."""
    if asg.kind == "tensor":
        from .tensor_kind import build_tensor_rules

        return build_tensor_rules(graded, asg)
    return build_rules(graded, asg)


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
    if asg.kind == "tensor":
        from .tensor_kind import grade_tensor

        return grade_tensor(engine, asg, ops=ops, seed=seed, only=only, progress=progress)
    path = Path(engine)
    if not path.is_file():
        raise AssignmentError(f"no such engine file: {engine}")
    if asg.kind == "layers":
        from .layers_grade import check_layer_rules, grade_layers

        check_layer_rules(only, asg)
        with _hypothesis_home():
            return grade_layers(path, str(engine), asg, seed, only, progress)
    check_ops(ops, STUDENT_OPS, "student protocol")
    if only:
        check_rule_patterns(only, [r.name for r in build_rules(STUDENT_OPS, asg)])
    with _hypothesis_home():
        return _grade(path, engine, asg, ops, seed, only, progress)


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


def _grade(path: Path, engine: str | os.PathLike, asg: Assignment, ops: Sequence[str] | None,
           seed: int | None, only: Sequence[str] | None, progress: Callable[[RuleResult], None] | None) -> Report:
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
        results += run_rules(rules, ctx, asg, deadline, lambda rule: run_rule(rule, box, ctx, seed, deadline),
                             progress)
    finally:
        if box:
            box.close()
    return Report(str(engine), asg.name, graded, results, time.monotonic() - start, seed, notes,
                  not_graded=not_graded)


def _crashed(engine: str, assignment: Assignment | None, ops: Sequence[str] | None, only: Sequence[str] | None,
             problem: str, seconds: float) -> Report:
    """The report of an engine whose grading process died or hung: every rule failed with ``problem``."""
    assignment = assignment or Assignment()
    if assignment.kind == "layers":
        from .layers_grade import crashed_layers

        return crashed_layers(engine, assignment, only, problem, seconds)
    if assignment.kind == "tensor":
        from .tensor_protocol import TENSOR_OPS

        graded = tuple(o for o in TENSOR_OPS if o in (ops or assignment.ops or TENSOR_OPS))
    else:
        graded = tuple(o for o in STUDENT_OPS if o in (ops or assignment.ops or REQUIRED_OPS))
    rules = _rules_for(graded, assignment)
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
