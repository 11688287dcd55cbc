"""Plain-text names and formulas of graph nodes, read from the op table (shared by every text reader).

``node_name`` is the one naming function: drawings, the stepper, paths, checks and the command line all call
it, so a node has one name everywhere.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["node_name", "op_label", "name", "formula", "number", "MAX_NAME"]

MAX_NAME = 40
"""Names longer than this are shortened: deep sub-formulas become ``…``."""

_ELIDED = "…"


def number(x: Any, digits: int = 5) -> str:
    """A float shown with ``digits`` significant digits, or a graph node's repr: ``number(0.6007975)``."""
    if isinstance(x, float):
        return f"{x:.{digits}g}"
    return repr(x)


def op_label(node: Any) -> str:
    """The short label of the op that made ``node`` (``'**2'``, ``'tanh'``, ``'matmul'``); ``''`` for a leaf.

    Works whether the op is a table row (``display``/``label``/``name``) or a plain string.

    >>> from microgradx import Value
    >>> op_label(Value(2.0) ** 2), op_label(Value(1.0))
    ('**2', '')
    """
    op = getattr(node, "op", None)
    if op is None:
        return ""
    if isinstance(op, str):
        return op
    display = getattr(op, "display", None)
    if callable(display) and not _param_unknown(node):
        return display(getattr(node, "arg", None))
    if callable(display):
        return op.name
    return getattr(op, "label", None) or op.name


def _param_unknown(node: Any) -> bool:
    # A row with a parameter (pow's exponent) whose node does not record it (a Tensor): name the op instead.
    return bool(getattr(node.op, "param", None)) and not hasattr(node, "arg")


def _constant(node: Any) -> str:
    data = node.data
    if isinstance(data, float):
        return number(data)
    shape = getattr(data, "shape", None)
    if shape is not None and getattr(data, "size", 2) == 1:
        return number(float(data.reshape(())))
    return f"tensor{tuple(shape)}" if shape is not None else repr(data)


def _template(node: Any) -> str | None:
    # An op-table row writes itself with a template ("{0} * {1}", "tanh({0})"); other ops read as calls.
    op = node.op
    template = getattr(op, "template", None)
    if _param_unknown(node):
        return None
    return template if isinstance(template, str) and callable(getattr(op, "format", None)) else None


def _formula(node: Any, args: list[str]) -> str:
    template = _template(node)
    if template is not None:
        return node.op.format(*args, param=getattr(node, "arg", None))
    return f"{op_label(node)}({', '.join(args)})"


def _infix_slot(template: str | None, k: int) -> bool:
    """Whether operand ``k`` stands next to an operator in the template (``{0} * {1}``), not inside a call."""
    if template is None:
        return False
    i = template.find(f"{{{k}}}")
    before, after = template[:i].rstrip()[-1:], template[i + 3:].lstrip()[:1]
    return not (before in ("(", ",") and after in (")", ",", "{"))


def _is_call(node: Any) -> bool:
    template = _template(node)
    return template is None or re.fullmatch(r"\w+\(.*\)", template) is not None


def name(node: Any, depth: int = 2) -> str:
    """A node's label; else its formula to ``depth`` levels (deeper parts shown as ``…``); else a constant.

    >>> from microgradx import Value
    >>> x = Value(2.0, label="x"); name(x * 3 + 1)
    '(x * 3) + 1'
    """
    if node.label:
        return node.label
    if not node.parents:
        return _constant(node)
    if depth <= 0:
        return _ELIDED
    return _formula(node, [_operand(node, k, p, name(p, depth - 1)) for k, p in enumerate(node.parents)])


def _operand(child: Any, k: int, node: Any, s: str) -> str:
    # Parenthesise an unlabelled infix operand in an infix slot, so that (yhat - y)**2 does not read as
    # yhat - y**2, while sigmoid(x * w1) keeps its one pair of brackets.
    if node.label or not node.parents or s == _ELIDED or _is_call(node) or not _infix_slot(_template(child), k):
        return s
    return f"({s})"


def node_name(node: Any, max_len: int = MAX_NAME) -> str:
    """What every reader calls a node: its label, else the formula of its inputs as written, else its value.

    Long formulas are shortened by writing their deepest parts as ``…``; one level is always shown.

    >>> from microgradx import Value
    >>> w = Value(2.0, label="w"); a = w ** 2
    >>> node_name(a.cos() + a.sin())
    'cos(w**2) + sin(w**2)'
    >>> node_name(((w * w + w) * w + w).tanh(), max_len=16)
    'tanh(… + w)'
    """
    if node.label or not node.parents:
        return name(node, 0)
    # Deepen until the text stops growing (fully written out) or gets too long: the cost stays bounded by
    # max_len however deep the graph is.
    best = name(node, 1)
    depth = 2
    while True:
        text = name(node, depth)
        if len(text) > max_len or text == best:
            return best
        best, depth = text, depth + 1


def formula(node: Any) -> str:
    """How a node was computed, in terms of its parents' ``node_name``: ``formula(z1)`` is ``'x * w1'``.

    >>> from microgradx import Value
    >>> x = Value(2.0, label="x"); formula(x.tanh())
    'tanh(x)'
    """
    if not node.parents:
        return "input" if node.label else "constant"
    return _formula(node, [_operand(node, k, p, node_name(p)) for k, p in enumerate(node.parents)])
