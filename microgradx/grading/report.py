"""Grading reports, all written by the trusted parent: terminal text, JSON, Gradescope results, JUnit XML, CSV."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import tempfile
from dataclasses import asdict, dataclass, field
from typing import Any
from xml.sax.saxutils import escape, quoteattr

__all__ = ["RuleResult", "Report", "write_csv", "write_atomic", "MAX_LINE"]

MAX_LINE = 2000  # characters of one report line; the longer ones hold student-controlled text, clipped


def _clip(line: str) -> str:
    return line if len(line) <= MAX_LINE else line[:MAX_LINE - 40] + f"... ({len(line) - MAX_LINE + 40} more)"


def write_atomic(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path``, then rename it over ``path``: a reader sees the old
    file or the whole new one, never half of it, and a grader killed midway leaves the old file.

    >>> import pathlib, tempfile
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "r.json"; write_atomic(out, "{}\\n"); out.read_text()
    '{}\\n'
    """
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".mgx-", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _num(x: Any) -> str:
    if isinstance(x, float):
        if x.is_integer() and abs(x) < 1e15:
            return str(int(x))
        return f"{x:.10g}" if math.isfinite(x) else str(x)
    return "-" if x is None else str(x)


@dataclass
class RuleResult:
    """One rule's result: ``status`` is passed, failed, warning (a warning keeps the points) or blocked (not run
    because a rule it needs failed; no points)."""

    name: str
    title: str
    weight: float
    score: float
    status: str
    visibility: str = "visible"
    hint: str = ""
    finding: dict | None = None
    examples: int = 0
    seconds: float = 0.0

    def explanation(self) -> str:
        """The counterexample, expected vs got per variable, and the hint, as plain text."""
        f = self.finding
        if f is None:
            return f"{self.title}: holds ({self.examples} example{'s' * (self.examples != 1)})"
        if self.status == "blocked":
            return f"{self.title}: not run, {f['problem']} (fix that first)"
        lines = [f"{self.title}: {f['problem']}"]
        if f.get("formula"):
            how = ("shrunk by Hypothesis to a smallest failing case" if f.get("shrunk")
                   else "not shrunk: the engine crashed, hung or ran out of time" if not f.get("note")
                   else f["note"])
            lines.append(f"counterexample ({how}):")
            lines.append(f"  {f['formula']}")
        for row in f.get("rows", ()):
            mark = "  <- wrong" if row.get("wrong") else ""
            cd = f"   (central difference {_num(row['central'])})" if row.get("central") is not None else ""
            lines.append(f"  {row['name']}: expected {_num(row['expected'])}, got {_num(row['got'])}{cd}{mark}")
        if self.hint:
            lines.append(f"hint: {self.hint}")
        return "\n".join(_clip(line) for line in lines)


@dataclass
class Report:
    """Everything the grader found about one engine; ``passed`` is True when no rule failed."""

    engine: str
    assignment: str
    ops: tuple[str, ...]
    results: list[RuleResult]
    seconds: float
    seed: int | None = None
    notes: list[str] = field(default_factory=list)
    setup: bool = False  # the file could not be graded at all: one ``setup`` result worth every point
    not_graded: list[str] = field(default_factory=list)  # near-miss methods found but not graded

    @property
    def score(self) -> float:
        return sum(r.score for r in self.results)

    @property
    def max_score(self) -> float:
        return sum(r.weight for r in self.results)

    @property
    def passed(self) -> bool:
        return all(r.status != "failed" for r in self.results)

    @property
    def exit_status(self) -> int:
        """0 when every rule holds (warnings allowed), 1 when a rule fails, 3 when the file cannot be graded."""
        return 3 if self.setup else 0 if self.passed else 1

    def text(self, verbose: bool = True) -> str:
        """The terminal report: one line per rule, then an explanation for each failure and warning."""
        out = [f"{self.engine}: {_num(self.score)}/{_num(self.max_score)} points "
               f"({self.assignment}; ops: {', '.join(self.ops) or 'none'}; {self.seconds:.1f} s)"]
        out += [f"  note: {n}" for n in self.notes]
        out += [f"  not graded: {n}" for n in self.not_graded]
        if self.setup:
            r = self.results[0]
            out += [f"  SETUP ERROR: the file could not be graded: {r.finding['problem']}", f"  hint: {r.hint}"]
            return "\n".join(out) + "\n"
        width = max((len(r.name) for r in self.results), default=10)
        for r in self.results:
            tag = {"passed": "ok  ", "failed": "FAIL", "warning": "warn", "blocked": "--  "}[r.status]
            why = f" ({r.finding['problem']})" if r.status == "blocked" else ""
            out.append(f"  {tag} {r.name:<{width}}  {_num(r.score):>3}/{_num(r.weight):<3} {r.title}{why}")
        if verbose:
            for r in self.results:
                if r.status in ("failed", "warning"):
                    out.append("")
                    out.append(f"{'FAIL' if r.status == 'failed' else 'WARNING'} {r.name}")
                    out += ["  " + line for line in r.explanation().splitlines()]
        return "\n".join(out) + "\n"

    def to_dict(self) -> dict:
        """Plain data for ``--json``."""
        return {"engine": self.engine, "assignment": self.assignment, "ops": list(self.ops), "score": self.score,
                "max_score": self.max_score, "passed": self.passed, "setup_error": self.setup,
                "exit_status": self.exit_status, "seconds": round(self.seconds, 3), "seed": self.seed,
                "notes": self.notes, "not_graded": self.not_graded, "rules": [asdict(r) for r in self.results]}

    def gradescope(self) -> dict:
        """The Gradescope autograder results (score, max_score, execution_time, tests[...]); a file that cannot
        be graded gets 0 and its message once."""
        if self.setup:
            r = self.results[0]
            return {"score": 0.0, "max_score": self.max_score, "execution_time": round(self.seconds, 3),
                    "output": f"The file could not be graded: {r.finding['problem']}\nhint: {r.hint}",
                    "visibility": "visible", "stdout_visibility": "hidden", "tests": []}
        tests = []
        for number, r in enumerate(self.results, 1):
            tests.append({"name": f"{r.name}: {r.title}", "number": str(number), "score": r.score,
                          "max_score": r.weight, "status": "failed" if r.status in ("failed", "blocked") else "passed",
                          "visibility": r.visibility,
                          "output": ("warning: " if r.status == "warning" else "") + r.explanation()})
        notes = "".join(f"{n}\n" for n in self.notes) + "".join(f"not graded: {n}\n" for n in self.not_graded)
        notes += f"graded ops: {', '.join(self.ops)}\n"
        return {"score": self.score, "max_score": self.max_score, "execution_time": round(self.seconds, 3),
                "output": notes + f"{sum(r.status == 'failed' for r in self.results)} of {len(self.results)} "
                                  f"rules failed, {sum(r.status == 'blocked' for r in self.results)} blocked by "
                                  f"them.", "visibility": "visible", "stdout_visibility": "hidden",
                "tests": tests}

    def junit(self) -> str:
        """JUnit XML, one testcase per rule (a warning is a passing case with system-out)."""
        fails = sum(r.status == "failed" for r in self.results)
        cases = []
        for r in self.results:
            attrs = f"classname={quoteattr(self.engine)} name={quoteattr(r.name)} time=\"{r.seconds:.3f}\""
            body = ""
            if r.status == "failed":
                body = f"<failure message={quoteattr(r.finding['problem'] if r.finding else 'failed')}>" \
                       f"{escape(r.explanation())}</failure>"
            elif r.status == "warning":
                body = f"<system-out>{escape(r.explanation())}</system-out>"
            elif r.status == "blocked":
                body = f"<skipped message={quoteattr(r.finding['problem'] if r.finding else 'blocked')}/>"
            cases.append(f"    <testcase {attrs}>{body}</testcase>")
        return ("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<testsuites>\n"
                f"  <testsuite name={quoteattr('microgradx grade ' + self.engine)} tests=\"{len(self.results)}\" "
                f"failures=\"{fails}\" errors=\"0\" time=\"{self.seconds:.3f}\">\n"
                + "\n".join(cases) + "\n  </testsuite>\n</testsuites>\n")

    def write(self, json_path: str | None = None, gradescope: str | None = None, junit: str | None = None) -> None:
        """Write the requested report files."""
        if json_path:
            write_atomic(json_path, json.dumps(self.to_dict(), indent=2) + "\n")
        if gradescope:
            write_atomic(gradescope, json.dumps(self.gradescope(), indent=2) + "\n")
        if junit:
            write_atomic(junit, self.junit())


def write_csv(reports: list[Report], path: str) -> None:
    """One row per engine: score, max score, passed, the ops graded and the near-miss methods not graded, then
    each rule's score (a column per rule name; empty where the engine had no such rule)."""
    names: list[str] = []
    for rep in reports:
        names += [r.name for r in rep.results if r.name not in names]
    f = io.StringIO()
    w = csv.writer(f)
    w.writerow(["engine", "score", "max_score", "passed", "setup_error", "ops", "not_graded", "seconds", *names])
    for rep in reports:
        by = {r.name: r.score for r in rep.results}
        w.writerow([rep.engine, _num(rep.score), _num(rep.max_score), rep.passed, rep.setup, " ".join(rep.ops),
                    "; ".join(rep.not_graded), f"{rep.seconds:.1f}", *(_num(by.get(n)) for n in names)])
    write_atomic(path, f.getvalue())
