"""Grading a student's engine: ``microgradx.grading.grade`` on a submitted file with a classic bug (relu's backward
assigns with ``=`` where ``+=`` is needed), the shrunk counterexample and the hint it prints, then the one-line fix
and the same grading again, which passes. Then a second classic bug, mul's backward with ``=``: one rule fails, and the
rules that need a working ``*`` are reported as blocked by it rather than as sixteen more failures.

The submission is ``demos/data/student_engine.py`` with that one line broken, as a student would hand it in; it
and the fixed copy are written to the output folder. Fast mode
grades the ops add, mul and relu on a few rules; the full run grades every op the engine has on every rule, as
``microgradx grade engine.py`` would.

Run ``python demos/grading_walkthrough.py [--fast] [--out DIR]``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

from _common import DEMOS, Run, start, table

from microgradx.grading import grade

NAME = "grading_walkthrough"
ENGINE = DEMOS / "data" / "student_engine.py"
BUG = "self.grad = (1.0 if self.data > 0 else 0.0) * out.grad"
FIX = "self.grad += (1.0 if self.data > 0 else 0.0) * out.grad"
FAST_OPS = ("add", "mul", "relu")
FAST_RULES = ("forward[relu]", "gradient[relu]", "accumulate[relu]", "accumulate[mul]", "order")
MUL_FIX = "self.grad += other.data * out.grad"
MUL_BUG = "self.grad = other.data * out.grad"


def grade_and_show(run: Run, engine: Path, stem: str, fast: bool) -> dict:
    """Grade ``engine``, print the terminal report, and save it as text and JSON."""
    # Fast mode grades three ops; the second submission gets every rule for them, to show what is blocked.
    only = FAST_RULES if fast and stem != "report-mul" else None
    report = grade(engine, ops=FAST_OPS if fast else None, only=only)
    text = report.text()
    run.path(f"{stem}.txt").write_text(text)
    run.path(f"{stem}.json").write_text(json.dumps(report.to_dict(), indent=2, default=str) + "\n")
    run.say(text)
    return {"report": report, "passed": report.passed, "score": report.score, "max_score": report.max_score,
            "failed": [r.name for r in report.results if r.status == "failed"],
            "findings": {r.name: r.finding for r in report.results if r.finding}}


def main(argv: Sequence[str] | None = None) -> dict:
    """Run the demo; returns both grading results and the path of the fixed engine."""
    run = start(NAME, "grade a buggy engine, read the counterexample and the hint, fix it, grade again", argv)
    correct = ENGINE.read_text()
    if correct.count(FIX) != 1:
        raise RuntimeError(f"{ENGINE.name} should contain relu's backward line once: {FIX}")
    source = correct.replace(FIX, BUG)
    line = next(i for i, text in enumerate(source.splitlines(), 1) if BUG in text)
    submitted = run.path("engine.py")
    submitted.write_text(source)
    run.say(f"1. Grading the submitted engine ({submitted}):\n")
    before = grade_and_show(run, submitted, "report-before", run.fast)
    fixed = run.path("engine_fixed.py")
    fixed.write_text(source.replace(BUG, FIX))
    run.say(f"2. The hint points at relu's backward. The fix, line {line} of the engine:\n"
            f"   - {BUG}\n   + {FIX}\n")
    run.say("3. Grading the fixed engine:\n")
    after = grade_and_show(run, fixed, "report-after", run.fast)
    run.say("4. Another submission: mul's backward assigns with `=`. Every rule runs; the ones that need a working "
            "`*` are blocked by the one that fails:\n")
    mul_engine = run.path("engine_mul.py")
    mul_engine.write_text(correct.replace(MUL_FIX, MUL_BUG, 1))
    cascade = grade_and_show(run, mul_engine, "report-mul", run.fast)
    cascade["blocked"] = [r.name for r in cascade["report"].results if r.status == "blocked"]
    table(run, "summary.txt", ("engine", "score", "rules failed"),
          [("submitted", f"{before['score']:g}/{before['max_score']:g}", ", ".join(before["failed"]) or "none"),
           ("fixed", f"{after['score']:g}/{after['max_score']:g}", ", ".join(after["failed"]) or "none"),
           ("mul with =", f"{cascade['score']:g}/{cascade['max_score']:g}",
            f"{', '.join(cascade['failed'])} ({len(cascade['blocked'])} blocked by it)")],
          title="Before and after the one-line fix")
    counter = before["findings"].get("accumulate[relu]") or {}
    run.say(f"Key numbers: submitted {before['score']:g}/{before['max_score']:g} (fails "
            f"{', '.join(before['failed'])}); counterexample {counter.get('formula')}; fixed "
            f"{after['score']:g}/{after['max_score']:g}, passed: {after['passed']}; mul with `=` fails "
            f"{', '.join(cascade['failed'])} only, {len(cascade['blocked'])} "
            f"rule{'s' * (len(cascade['blocked']) != 1)} blocked by it")
    run.finish()
    return {"before": before, "after": after, "cascade": cascade, "submitted": submitted, "fixed": fixed,
            "line": line}


if __name__ == "__main__":
    main(sys.argv[1:])
