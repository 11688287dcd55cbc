"""Plain-text names and formulas of graph nodes, read from the op table (shared by every text reader)."""

from __future__ import annotations

from typing import Any

__all__ = ["name", "formula", "number"]


def number(x: Any, digits: int = 5) -> str:
    """A float shown with ``digits`` significant digits, or a graph node's repr: ``number(0.6007975)``."""
    if isinstance(x, float):
        return f"{x:.{digits}g}"
    return repr(x)


def name(node: Any, depth: int = 2) -> str:
    """A node's label; else its formula (to ``depth`` levels); else its value for a constant.

    >>> from microgradx import Value
    >>> x = Value(2.0, label="x"); name(x * 3 + 1)
    '(x * 3) + 1'
    """
    if node.label:
        return node.label
    if not node.parents:
        return number(node.data)
    if depth <= 0:
        return node.op.name
    return node.op.format(*(_operand(p, depth - 1) for p in node.parents), param=node.arg)


def _operand(node: Any, depth: int) -> str:
    # Parenthesise an unlabelled compound operand so that (yhat - y)**2 does not read as yhat - y**2.
    s = name(node, depth)
    return f"({s})" if node.parents and not node.label and " " in s else s


def formula(node: Any) -> str:
    """How a node was computed, in terms of its parents' names: ``formula(z1)`` is ``'x * w1'``.

    >>> from microgradx import Value
    >>> x = Value(2.0, label="x"); formula(x.tanh())
    'tanh(x)'
    """
    if not node.parents:
        return "input" if node.label else "constant"
    return node.op.format(*(_operand(p, 1) for p in node.parents), param=node.arg)
