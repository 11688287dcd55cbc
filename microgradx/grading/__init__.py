"""Grade students' autodiff engines: a table of rules checked by Hypothesis in this process, each example
evaluated on the student's ``Value`` in a sandboxed child, with shrunk counterexamples, hints and reports.

>>> from microgradx.grading import KINDS
>>> [k.name for k in KINDS if k.name.startswith("a")]
['accumulate']
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["grade", "grade_many", "Assignment", "AssignmentError", "load_assignment", "Limits", "Report",
           "RuleResult", "Rule", "build_rules", "KINDS", "make_autograder", "Sandbox", "EngineCrash"]

_WHERE = {"grade": "runner", "grade_many": "runner", "Assignment": "assignment", "AssignmentError": "assignment",
          "load_assignment": "assignment", "Limits": "sandbox", "Sandbox": "sandbox", "EngineCrash": "sandbox",
          "Report": "report", "RuleResult": "report", "Rule": "rules", "build_rules": "rules",
          "KINDS": "rules", "make_autograder": "autograder"}


def __getattr__(name: str) -> Any:
    # NOTE: lazy, so that the stdlib-only worker module can be imported without pulling in Hypothesis.
    if name in _WHERE:
        return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module 'microgradx.grading' has no attribute {name!r}")
