"""The assignment file (TOML): which ops to grade, rule weights and visibility, tolerances, time limits."""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from .sandbox import Limits

__all__ = ["Assignment", "AssignmentError", "load_assignment", "matches", "VISIBILITIES", "HOMEWORK_KINDS"]

VISIBILITIES = ("visible", "hidden", "after_due_date", "after_published")
# What a submission is: a scalar Value engine, a NumPy Tensor engine (grading/tensor_kind.py), or layer
# forward/backward functions in NumPy (grading/layers.py).
HOMEWORK_KINDS = ("value", "tensor", "layers")


class AssignmentError(ValueError):
    """The assignment file or a grading option is wrong; the message names the key and the bad value."""


@dataclass(frozen=True)
class Assignment:
    """Everything an instructor can set; the defaults grade every op the engine has.

    >>> a = Assignment(weights={"gradient[*]": 3.0}); a.weight("gradient[pow]", 1.0), a.weight("seed", 1.0)
    (3.0, 1.0)
    """

    name: str = "autodiff engine"
    file: str = "engine.py"          # the submitted file's name (Gradescope)
    cls: str = "Value"
    ops: tuple[str, ...] | None = None  # None: grade the ops the engine has
    examples: int = 40               # Hypothesis examples per rule
    rel: float = 1e-6
    abs: float = 1e-6
    deep_depth: int = 5000
    deep_graph: str = "warn"         # "warn" or "fail" when a deep graph breaks the engine
    extremes: str = "warn"           # "warn" or "fail" when large inputs overflow or give a wrong gradient
    limits: Limits = field(default_factory=Limits)
    weights: dict[str, float] = field(default_factory=dict)      # rule name or glob -> weight
    visibility: dict[str, str] = field(default_factory=dict)     # rule name or glob -> Gradescope visibility
    skip: tuple[str, ...] = ()       # rule names or globs not graded at all
    kind: str = "value"              # one of HOMEWORK_KINDS
    conventions: dict[str, str] = field(default_factory=dict)  # a Tensor engine's declared conventions
    layers: Any = None               # the [layers] table (grading.layers_grade.LayersConfig) of a layers homework

    def weight(self, rule: str, default: float) -> float:
        """The rule's weight: an exact name wins over a glob, a glob over the default."""
        return _lookup(self.weights, rule, default)

    def visible(self, rule: str) -> str:
        """The rule's Gradescope visibility (``visible`` unless the assignment says otherwise)."""
        return _lookup(self.visibility, rule, "visible")

    def skipped(self, rule: str) -> bool:
        return any(matches(rule, pat) for pat in self.skip)


def matches(rule: str, pattern: str) -> bool:
    """True when ``pattern`` names the rule; ``*`` matches anything, brackets are literal.

    >>> matches("gradient[pow]", "gradient[*]"), matches("gradient[pow]", "gradient[pow]"), matches("seed", "s")
    (True, True, False)
    """
    return re.fullmatch(".*".join(re.escape(part) for part in pattern.split("*")), rule) is not None


def _lookup(table: dict, rule: str, default: Any) -> Any:
    if rule in table:
        return table[rule]
    for pat, v in table.items():
        if matches(rule, pat):
            return v
    return default


def _toml(path: Path) -> dict:
    if sys.version_info >= (3, 11):
        import tomllib
    else:
        import tomli as tomllib
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except OSError as e:
        raise AssignmentError(f"cannot read the assignment file {path}: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise AssignmentError(f"{path} is not valid TOML: {e}") from None


def _check(where: str, value: Any, kind: type | tuple, positive: bool = False) -> Any:
    if isinstance(value, bool) or not isinstance(value, kind):
        raise AssignmentError(f"{where} must be {getattr(kind, '__name__', 'a number')}, got {value!r}")
    if positive and value <= 0:
        raise AssignmentError(f"{where} must be > 0, got {value!r}")
    return value


def check_rule_patterns(only: Sequence[str] | None, names: Sequence[str]) -> None:
    """Refuse a ``--rules`` pattern that matches none of the rule ``names`` (every kind of homework).

    >>> check_rule_patterns(["gradient[*]"], ["gradient[add]", "seed"])
    >>> check_rule_patterns(["nomatch"], ["seed"])
    Traceback (most recent call last):
    ...
    microgradx.grading.assignment.AssignmentError: --rules 'nomatch' matches no rule; the rules are seed
    """
    for pat in only or ():
        if not any(matches(name, pat) for name in names):
            raise AssignmentError(f"--rules {pat!r} matches no rule; the rules are {', '.join(names)}")


def check_ops(ops: Sequence[str] | None, known: Sequence[str], protocol: str) -> None:
    """Refuse an ``--ops`` entry that is not among the ``known`` ops of the kind's ``protocol``."""
    for o in ops or ():
        if o not in known:
            raise AssignmentError(f"unknown op {o!r} in --ops; the {protocol} has {', '.join(known)}")


def load_assignment(path: str | Path) -> Assignment:
    """Read an assignment TOML file (format in docs/grading.md); unknown keys are errors, not ignored.

    >>> import pathlib, tempfile
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "hw.toml"
    >>> _ = p.write_text('[assignment]\\nops = ["add", "mul"]\\n[time]\\nexample = 2\\n')
    >>> a = load_assignment(p); a.ops, a.limits.example
    (('add', 'mul'), 2.0)
    """
    from ..strategies import STUDENT_OPS

    path = Path(path)
    data = _toml(path)
    known = {"assignment", "tolerance", "time", "limits", "weights", "visibility", "conventions", "layers"}
    for key in data:
        if key not in known:
            raise AssignmentError(f"{path}: unknown table [{key}] (known: {', '.join(sorted(known))})")
    top = dict(data.get("assignment", {}))
    kw: dict[str, Any] = {}
    simple = {"name": str, "file": str, "class": str, "examples": int, "deep_depth": int, "deep_graph": str,
              "extremes": str, "ops": list, "skip": list, "kind": str}
    for key, value in top.items():
        if key not in simple:
            raise AssignmentError(f"{path}: unknown key assignment.{key} (known: {', '.join(sorted(simple))})")
        _check(f"assignment.{key}", value, simple[key], positive=simple[key] is int)
        kw["cls" if key == "class" else key] = value
    if kw.get("kind", "value") not in HOMEWORK_KINDS:
        raise AssignmentError(f"assignment.kind must be one of {', '.join(HOMEWORK_KINDS)}, got {kw['kind']!r}")
    protocol_ops = STUDENT_OPS
    if kw.get("kind") == "tensor":
        from .tensor_protocol import TENSOR_OPS as protocol_ops
    if "ops" in kw:
        bad = [o for o in kw["ops"] if o not in protocol_ops]
        if bad:
            raise AssignmentError(f"assignment.ops: unknown op(s) {bad}; the student protocol has "
                                  f"{', '.join(protocol_ops)}")
        kw["ops"] = tuple(kw["ops"])
    if "skip" in kw:
        kw["skip"] = tuple(kw["skip"])
    if "layers" in data:
        from .layers_grade import parse_layers

        if kw.get("kind") != "layers":
            raise AssignmentError(f"{path}: a [layers] table needs kind = \"layers\" in [assignment]")
        kw["layers"] = parse_layers(data["layers"], str(path))
    if kw.get("kind") == "layers":
        kw.setdefault("file", "layers.py")  # the template's file name
    for key in ("deep_graph", "extremes"):
        if kw.get(key, "warn") not in ("warn", "fail"):
            raise AssignmentError(f"assignment.{key} must be 'warn' or 'fail', got {kw[key]!r}")
    for key, value in data.get("tolerance", {}).items():
        if key not in ("rel", "abs"):
            raise AssignmentError(f"{path}: unknown key tolerance.{key} (known: abs, rel)")
        kw[key] = float(_check(f"tolerance.{key}", value, (int, float)))
    limits = {}
    numeric = {f.name: f.type for f in fields(Limits)}
    for table, keys in (("time", ("start", "example", "deep", "linear", "rule", "total")),
                        ("limits", ("memory_mb", "cpu_seconds", "processes", "file_mb", "open_files"))):
        for key, value in data.get(table, {}).items():
            if key not in keys:
                raise AssignmentError(f"{path}: unknown key {table}.{key} (known: {', '.join(keys)})")
            kind = int if numeric[key] == "int" else (int, float)
            limits[key] = _check(f"{table}.{key}", value, kind, positive=True)
            if kind is not int:
                limits[key] = float(limits[key])
    kw["limits"] = replace(Limits(), **limits)
    kw["weights"] = {k: float(_check(f"weights.{k}", v, (int, float))) for k, v in data.get("weights", {}).items()}
    vis: dict[str, str] = {}
    for level, names in data.get("visibility", {}).items():
        if level not in VISIBILITIES:
            raise AssignmentError(f"{path}: unknown visibility {level!r} (known: {', '.join(VISIBILITIES)})")
        for name in _check(f"visibility.{level}", names, list):
            vis[name] = level
    kw["visibility"] = vis
    if "conventions" in data:
        from .tensor_protocol import CHOICES

        if kw.get("kind") != "tensor":
            raise AssignmentError(f"{path}: [conventions] describes a Tensor engine: set assignment.kind = "
                                  f"\"tensor\"")
        conv = {}
        for key, value in data["conventions"].items():
            if key not in CHOICES:
                raise AssignmentError(f"{path}: unknown key conventions.{key} (known: {', '.join(CHOICES)})")
            if value not in CHOICES[key]:
                raise AssignmentError(f"conventions.{key} must be one of {', '.join(CHOICES[key])}, got {value!r}")
            conv[key] = value
        kw["conventions"] = conv
    return Assignment(**kw)
