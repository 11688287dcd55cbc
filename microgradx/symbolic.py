"""Check gradients against SymPy: the graph as a SymPy expression and back, layered exact cross-checks, LaTeX.

Every op's SymPy form comes from its row in the op table (``Op.sym``); nothing about an op is re-declared here.
"""

from __future__ import annotations

import functools
import html
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import mpmath
import numpy as np
import sympy as sp

from . import graph
from .ops import FLOAT, OPS, MicrogradxError, Op
from .text import node_name
from .value import Value

__all__ = [
    "to_sympy", "from_sympy", "leaf_symbols", "check_with_sympy", "latex", "derivative_latex",
    "compare_formula", "SymbolicCheck", "Row", "EdgeCheck", "FormulaComparison", "TranslationError",
    "EDGES", "ACCUMULATION", "WHOLE",
]

#: Layer names, in the order they run.
EDGES, ACCUMULATION, WHOLE = "per-edge", "accumulation", "whole-expression"
# The whole-expression layer also refuses graphs whose expression, written out without sharing, is larger than
# this many times ``max_nodes``: SymPy's diff walks the written-out tree, so chains with sharing blow up.
_TREE_FACTOR = 40
# Budgets of the whole-expression layer. SymPy's diff cannot be interrupted, so the size of the expression it is
# given is bounded BEFORE it runs: its written-out size (SymPy's forms swell: gelu_tanh(x) writes x twice, so seven
# nested gelu_tanh are 18,578 nodes from an 8-node graph) may be at most _WHOLE_SIZE_FACTOR * max_nodes. Measured:
# four nested gelu_tanh (680 nodes) take 2.8 s to differentiate to order 2, three (222 nodes) 0.65 s. The time
# budget is checked between SymPy's steps, as a second line of defence.
_WHOLE_SIZE_FACTOR = 10


class TranslationError(MicrogradxError, ValueError):
    """A SymPy expression holds a function that no op of the table computes, or a symbol without a value."""


# ---------------------------------------------------------------------------------------------------------
# Each op's SymPy forward and exact local derivatives, built once per (op, parameter)
# ---------------------------------------------------------------------------------------------------------

def _exact(x: float) -> sp.Rational:
    """The exact SymPy number that a float's shortest repr spells: 0.1 -> 1/10, 2.0 -> 2."""
    return sp.Rational(repr(float(x)))


def _tidy(expr: sp.Expr) -> sp.Expr:
    # NOTE: the table's formulas write 1.0 and 0.5 so that they work on floats; in SymPy those short decimals
    # are the exact numbers they spell. Long ones (sqrt(2/pi) in gelu) stay Floats.
    floats = {f: _exact(float(f)) for f in expr.atoms(sp.Float) if len(repr(float(f))) <= 10}
    return expr.xreplace(floats) if floats else expr


def _no_delta(expr: sp.Expr) -> sp.Expr:
    # NOTE: DiracDelta only appears at a kink, and edges at kinks are skipped, so away from them it is 0.
    return expr.replace(sp.DiracDelta, lambda *a: sp.S.Zero) if expr.has(sp.DiracDelta) else expr


class _Local:
    """One op with a fixed parameter: its SymPy forward on dummy inputs and its exact derivatives."""

    def __init__(self, op: Op, arg: Any) -> None:
        self.op = op
        self.syms = tuple(sp.Dummy(f"u{k}", real=True) for k in range(op.arity))
        self.param = None if op.param is None else _exact(arg)
        self.forward = _tidy(op.sym(*self.syms, param=self.param))
        self.first = tuple(_no_delta(sp.diff(self.forward, s)) for s in self.syms)
        # The forward written out as a tree: its size, and how many times each input appears in it.
        written = list(sp.preorder_traversal(self.forward))
        self.size = len(written)
        self.uses = tuple(sum(1 for t in written if t == u) for u in self.syms)
        self._first_fns: list | None = None
        self._second: list | None = None

    def apply(self, inputs: Sequence[sp.Expr]) -> sp.Expr:
        """The forward with the inputs put in for the dummies."""
        return self.forward.xreplace(dict(zip(self.syms, inputs, strict=True)))

    def first_fns(self) -> list:
        if self._first_fns is None:
            self._first_fns = [_numeric(self.syms, d) for d in self.first]
        return self._first_fns

    def second_fns(self) -> list:
        """[[d2 f / du_k du_l]] as evaluators."""
        if self._second is None:
            self._second = [[_numeric(self.syms, _no_delta(sp.diff(d, s))) for s in self.syms] for d in self.first]
        return self._second


@functools.lru_cache(maxsize=4096)
def _local(op: Op, arg: Any) -> _Local:
    return _Local(op, arg)


def _numeric(syms: tuple, expr: sp.Expr) -> tuple[Callable, Callable]:
    """A NumPy evaluator and an mpmath one (for the points where floats overflow) of ``expr``."""
    # NOTE: SciPy first, so that erf is scipy.special.erf on arrays (NumPy has none; SymPy falls back to math.erf)
    return sp.lambdify(syms, expr, ["scipy", "numpy"]), sp.lambdify(syms, expr, "mpmath")


def _evaluate(fns: tuple[Callable, Callable], columns: list[np.ndarray], n: int) -> np.ndarray:
    np_fn, mp_fn = fns
    with np.errstate(all="ignore"):
        out = np.array(np.broadcast_to(np.asarray(np_fn(*columns), dtype=float), (n,)))
    bad = np.flatnonzero(~np.isfinite(out))
    if bad.size:
        # Floats overflow in SymPy's form (exp(800)/(1 + exp(800))**2) where the exact value is finite.
        with mpmath.workdps(40):
            for i in bad:
                try:
                    out[i] = float(mp_fn(*(mpmath.mpf(float(c[i])) for c in columns)))
                except (TypeError, ValueError, ZeroDivisionError, OverflowError):
                    out[i] = math.nan
    return out


# ---------------------------------------------------------------------------------------------------------
# Graph -> SymPy
# ---------------------------------------------------------------------------------------------------------

def _symbols(nodes: Sequence[Any], symbolic: Callable[[Any], bool]) -> dict[Any, sp.Symbol]:
    """Leaf -> real Symbol. Labels name symbols; a second leaf with a label already used gets ``label_2``;
    unlabelled leaves for which ``symbolic(leaf)`` holds get ``v0``, ``v1``, ... in topological order."""
    leaves = [n for n in nodes if not n.parents]
    taken = {leaf.label for leaf in leaves if leaf.label}
    used: set[str] = set()
    next_k: dict[str, int] = {}

    def fresh(stem: str, start: int) -> str:
        k = next_k.get(stem, start)
        while f"{stem}{k}" in taken or f"{stem}{k}" in used:
            k += 1
        next_k[stem] = k + 1
        return f"{stem}{k}"

    result = {}
    for leaf in leaves:
        if leaf.label:
            text = leaf.label if leaf.label not in used else fresh(f"{leaf.label}_", 2)
        elif symbolic(leaf):
            text = fresh("v", 0)
        else:
            continue
        used.add(text)
        result[leaf] = sp.Symbol(text, real=True)
    return result


def _expressions(nodes: Sequence[Any], symbols: Mapping[Any, sp.Symbol]) -> dict[Any, sp.Expr]:
    # One SymPy object per node, reused by every child: shared subexpressions stay shared objects.
    expr: dict[Any, sp.Expr] = {}
    for node in nodes:
        if node.parents:
            expr[node] = _local(node.op, node.arg).apply([expr[p] for p in node.parents])
        else:
            expr[node] = symbols[node] if node in symbols else _exact(node.data)
    return expr


def leaf_symbols(out: Any, inputs: Iterable[Any] = ()) -> dict[Any, sp.Symbol]:
    """The SymPy symbol ``to_sympy`` gives each leaf that is not a plain number, as {leaf: Symbol}.

    >>> from microgradx import Value
    >>> x = Value(2.0, label="x"); c = Value(3.0)
    >>> sorted(str(s) for s in leaf_symbols(x * c + 1, inputs=[c]).values())
    ['v0', 'x']
    """
    wanted = set(map(id, inputs))
    return _symbols(graph.topological_order(out), lambda leaf: id(leaf) in wanted)


def to_sympy(out: Any, inputs: Iterable[Any] = ()) -> sp.Expr:
    """The graph behind ``out`` as a SymPy expression in real symbols named by the leaves' labels.

    An unlabelled leaf is a constant and becomes the exact number its float spells (0.1 -> 1/10), unless it is
    one of ``inputs``: then it gets a generated name ``v0``, ``v1``, ... (see ``leaf_symbols``). Each node is
    translated once, so shared subexpressions are shared objects in the result.

    >>> from microgradx import Value
    >>> x = Value(2.0, label="x"); to_sympy((x * 3).tanh() + 0.5)
    tanh(3*x) + 1/2
    """
    nodes = graph.require_scalar(out, "to_sympy", "A Tensor graph has no single formula; build it from Values.")
    wanted = set(map(id, inputs))
    return _expressions(nodes, _symbols(nodes, lambda leaf: id(leaf) in wanted))[out]


# ---------------------------------------------------------------------------------------------------------
# SymPy -> graph
# ---------------------------------------------------------------------------------------------------------

def _as_node(v: Any) -> Value:
    return v if isinstance(v, Value) else Value(v)


def _fold(values: Sequence[Any], combine: Callable[[Any, Any], Any]) -> Any:
    acc = values[0]
    for v in values[1:]:
        acc = combine(acc, v)
    return acc


@functools.lru_cache(maxsize=1)
def _functions() -> dict[Any, Op]:
    # {SymPy function: row} for the rows whose SymPy form is one SymPy function of their inputs (exp, atan, Max,
    # ...), read off the op table, so a new row of that kind translates back with no edit here.
    found = {}
    for op in OPS.values():
        if op.methods and not op.param:
            xs = sp.symbols(f"x0:{op.arity}", real=True)
            f = op.sym(*xs)
            if f.args == xs:
                found[f.func] = op
    return found


@functools.lru_cache(maxsize=1)
def _patterns() -> list[tuple[Op, sp.Expr, tuple, Any]]:
    # Ops whose SymPy form is a Piecewise (relu, hard_tanh, ...) are found again by matching their row's forward.
    found = []
    for op in OPS.values():
        if not op.methods:
            continue
        wilds = tuple(sp.Wild(f"w{k}") for k in range(op.arity))
        p = sp.Wild("p", properties=[lambda k: k.is_Number]) if op.param else None
        # Expanded, because SymPy distributes a parameter over a sum: alpha*(exp(x) - 1) -> alpha*exp(x) - alpha.
        pattern = sp.expand(_tidy(op.sym(*wilds, param=p)))
        if isinstance(pattern, sp.Piecewise):
            found.append((op, pattern, wilds, p))
    return found


def _plan(e: sp.Expr, leaf: Callable[[str], Value]) -> tuple[list, Callable[..., Any]]:
    """What ``e`` needs built first and how to combine those into its node."""
    if e.is_Symbol:
        return [], lambda: leaf(e.name)
    if e.is_number:
        v = complex(e.evalf())
        if v.imag or not math.isfinite(v.real):
            raise TranslationError(f"from_sympy: the constant {e} is not a finite real number")
        return [], lambda: v.real
    if e.is_Add:
        pos = [t for t in e.args if not t.could_extract_minus_sign()]
        neg = [-t for t in e.args if t.could_extract_minus_sign()]

        def add(*vs: Any) -> Any:
            ps, ns = vs[:len(pos)], vs[len(pos):]
            acc = _fold(ps, lambda a, b: a + b) if ps else -_as_node(ns[0])
            for v in ns[0 if ps else 1:]:
                acc = acc - v
            return acc
        return pos + neg, add
    if e.is_Mul:
        c, rest = e.as_coeff_Mul()
        factors = sp.Mul.make_args(rest)
        num = [f for f in factors if not (f.is_Pow and f.exp.is_number and f.exp < 0)]
        den = [sp.Pow(f.base, -f.exp) for f in factors if f.is_Pow and f.exp.is_number and f.exp < 0]

        # A rational coefficient p/q stays exact: (p * rest) / q, not rest * float(p/q).
        p, q = (int(c.p), int(c.q)) if c.is_Rational else (float(c), 1)

        def mul(*vs: Any) -> Any:
            ups, downs = list(vs[:len(num)]), list(vs[len(num):])
            if abs(p) != 1 or not ups:
                ups.insert(0, float(abs(p)))
            if q != 1:
                downs.append(float(q))
            r = _fold(ups, lambda a, b: a * b)
            r = r / _fold(downs, lambda a, b: a * b) if downs else r
            return -r if p < 0 else r
        return num + den, mul
    if e.is_Pow:
        base, ex = e.args
        if not ex.is_number:
            return [base, ex], lambda b, x: _as_node(b) ** x
        if ex == -1:
            return [base], lambda b: 1.0 / b
        if ex == sp.S.Half:
            return [base], lambda b: b.sqrt()
        return [base], lambda b: b ** float(ex)
    op = _functions().get(e.func)
    if op is not None and (len(e.args) == op.arity or op.arity == 2):
        method = op.methods[0]
        if op.arity == 1:
            return [e.args[0]], lambda a: getattr(a, method)()
        # SymPy merges Max(Max(a, b), c) into Max(a, b, c): fold it back into two-input nodes.
        return list(e.args), lambda *vs: _fold(vs, lambda a, b: getattr(_as_node(a), method)(b))
    expanded = sp.expand(e) if isinstance(e, sp.Piecewise) else e
    for op, pattern, wilds, p in _patterns():
        m = expanded.match(pattern)
        if m is not None and all(w in m for w in wilds):
            return [m[w] for w in wilds], _op_builder(op, float(m.get(p, op.default)) if op.param else None)
    supported = "+, -, *, /, **, sqrt, " + ", ".join(f.__name__ for f in _functions()) + \
        " and the Piecewise forms of " + ", ".join(op.name for op, *_ in _patterns())
    raise TranslationError(f"from_sympy: no op computes {e.func.__name__} (in {e}); supported: {supported}")


def _op_builder(op: Op, arg: float | None) -> Callable[..., Value]:
    method = op.methods[0]
    if op.param:
        return lambda a: getattr(_as_node(a), method)(arg)
    return lambda a, *b: getattr(_as_node(a), method)(*b)


def from_sympy(expr: Any, values: Mapping[Any, float] | None = None) -> tuple[Value, dict[str, Value]]:
    """Build a Value graph from a SymPy expression; returns ``(out, {name: leaf})`` with one leaf per symbol.

    ``values`` gives each symbol's number (keys are names or Symbols). Sums, products, powers and the functions
    of the op table map to their ops (``a + (-b)`` becomes ``a - b``, ``a * b**-1`` becomes ``a / b``); equal
    subexpressions become one shared node. Anything else raises ``TranslationError``.

    >>> import sympy
    >>> x = sympy.Symbol("x", real=True)
    >>> out, leaves = from_sympy(sympy.tanh(x) * x - 1, {"x": 0.5})
    >>> round(out.data, 6), sorted(leaves)
    (-0.768941, ['x'])
    """
    if isinstance(expr, str) or not isinstance(expr, (sp.Basic, int, float)):
        raise TypeError(f"from_sympy: needs a SymPy expression, got {type(expr).__name__} (text is never evaluated)")
    e = sp.S(expr) if not isinstance(expr, sp.Basic) else expr
    given = {str(k): float(v) for k, v in (values or {}).items()}
    leaves: dict[str, Value] = {}

    def leaf(text: str) -> Value:
        if text not in leaves:
            if text not in given:
                raise TranslationError(f"from_sympy: no value for the symbol {text!r}; pass values={{{text!r}: ...}}")
            leaves[text] = Value(given[text], label=text)
        return leaves[text]

    # Iterative post-order over the distinct subexpressions, so deep expressions cannot exhaust the stack.
    built: dict[sp.Expr, Any] = {}
    plans: dict[sp.Expr, tuple[list, Callable[..., Any]]] = {}
    stack = [e]
    while stack:
        top = stack[-1]
        if top in built:
            stack.pop()
            continue
        if top not in plans:
            plans[top] = _plan(top, leaf)
        deps, make = plans[top]
        missing = [d for d in deps if d not in built]
        if missing:
            stack.extend(missing)
            continue
        built[top] = make(*(built[d] for d in deps))
        stack.pop()
    return _as_node(built[e]), leaves


# ---------------------------------------------------------------------------------------------------------
# The report
# ---------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class EdgeCheck:
    """One recorded local derivative z(parent, node) compared with SymPy's, or skipped at a kink."""

    node: Any
    index: int          # which parent of ``node``
    op: str
    engine: float       # the recorded partial
    sympy: float | None  # SymPy's derivative of the op at the node's inputs (None when skipped)
    ok: bool
    note: str = ""      # for a skipped edge: the row's subgradient convention

    @property
    def parent(self) -> Any:
        return self.node.parents[self.index]

    def describe(self) -> str:
        """``tanh edge 0 (x -> tanh(x)): engine 1, SymPy 0.786448``."""
        head = f"{self.op} edge {self.index} ({node_name(self.parent)} -> {node_name(self.node)})"
        if self.sympy is None:
            return f"{head}: at a kink, engine {self.engine:.6g} ({self.note})"
        return f"{head}: engine {self.engine:.6g}, SymPy {self.sympy:.6g}"


@dataclass(frozen=True)
class Row:
    """One gradient (or, with ``order=2``, one Hessian entry): autodiff against SymPy."""

    name: str            # the leaf's symbol, or "d2/dx dy" for a Hessian entry
    wrt: tuple           # the leaf, or the two leaves of a Hessian entry
    autodiff: float
    sympy: float         # the most exact SymPy-derived value (whole expression if it ran, else accumulation)
    expression: Any      # SymPy's derivative expression when the whole-expression layer ran, else None
    abs_error: float
    rel_error: float
    ok: bool
    layers: tuple[str, ...]  # the layers that checked this row
    skipped: str = ""        # why the row was not checked (a Hessian entry through a kink), else ""


@dataclass
class SymbolicCheck:
    """The result of ``check_with_sympy``: ``.ok``, per-leaf ``gradients``, ``hessian`` (order 2), the edges that
    failed or were skipped, and what each layer did (``layers``: name -> "ran: ..." or "skipped: why")."""

    ok: bool
    nodes: int
    edges: int
    gradients: list[Row]
    hessian: list[Row] = field(default_factory=list)
    failed_edges: list[EdgeCheck] = field(default_factory=list)
    kinks: list[EdgeCheck] = field(default_factory=list)
    layers: dict[str, str] = field(default_factory=dict)
    rtol: float = 0.0
    atol: float = 0.0

    def _tables(self) -> list[tuple[str, list[Row]]]:
        tables = [("gradients", self.gradients)]
        if self.hessian:
            tables.append(("second derivatives", self.hessian))
        return tables

    def __str__(self) -> str:
        lines = [f"SymPy check: {'ok' if self.ok else 'FAILED'} ({self.nodes} nodes, {self.edges} edges, "
                 f"rtol={self.rtol:g}, atol={self.atol:g})", "layers"]
        lines += [f"  {k:<17} {v}" for k, v in self.layers.items()]
        for title, rows in self._tables():
            width = max([len(r.name) for r in rows] + [4])
            lines.append(title)
            lines.append(f"  {'leaf':<{width}}  {'autodiff':>14}  {'SymPy':>14}  {'abs err':>9}  {'rel err':>9}  ok  "
                         "layers")
            for r in rows:
                if r.skipped:
                    lines.append(f"  {r.name:<{width}}  {r.autodiff:>14.8g}  {'-':>14}  {'-':>9}  {'-':>9}  "
                                 f"--  skipped: {r.skipped}")
                    continue
                lines.append(f"  {r.name:<{width}}  {r.autodiff:>14.8g}  {r.sympy:>14.8g}  {r.abs_error:>9.2e}  "
                             f"{r.rel_error:>9.2e}  {'yes' if r.ok else 'NO ':<3} {', '.join(r.layers)}")
            exprs = [r for r in rows if r.expression is not None]
            for r in exprs:
                lines.append(f"  {r.name}: {_short(str(r.expression))}")
        if self.failed_edges:
            lines.append(f"failed edges ({len(self.failed_edges)})")
            lines += [f"  {e.describe()}" for e in self.failed_edges[:20]]
        if self.kinks:
            lines.append(f"edges skipped at kinks ({len(self.kinks)})")
            lines += [f"  {e.describe()}" for e in self.kinks[:10]]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        esc = html.escape
        colour = "#1a7f37" if self.ok else "#cf222e"
        parts = [f"<div><b style='color:{colour}'>SymPy check: {'ok' if self.ok else 'FAILED'}</b> "
                 f"({self.nodes} nodes, {self.edges} edges, rtol={self.rtol:g}, atol={self.atol:g})<ul>"]
        parts += [f"<li><b>{esc(k)}</b>: {esc(v)}</li>" for k, v in self.layers.items()]
        parts.append("</ul>")
        for title, rows in self._tables():
            parts.append(f"<table><caption>{esc(title)}</caption><tr><th>leaf</th><th>autodiff</th><th>SymPy</th>"
                         "<th>SymPy expression</th><th>abs err</th><th>rel err</th><th>ok</th><th>layers</th></tr>")
            for r in rows:
                if r.skipped:
                    parts.append(f"<tr><td>{esc(r.name)}</td><td>{r.autodiff:.8g}</td><td colspan='6'>skipped: "
                                 f"{esc(r.skipped)}</td></tr>")
                    continue
                expr = "" if r.expression is None else f"${esc(sp.latex(r.expression))}$"
                parts.append(f"<tr><td>{esc(r.name)}</td><td>{r.autodiff:.8g}</td><td>{r.sympy:.8g}</td>"
                             f"<td>{expr}</td><td>{r.abs_error:.2e}</td><td>{r.rel_error:.2e}</td>"
                             f"<td style='color:{'#1a7f37' if r.ok else '#cf222e'}'>{'yes' if r.ok else 'NO'}</td>"
                             f"<td>{esc(', '.join(r.layers))}</td></tr>")
            parts.append("</table>")
        for title, edges in (("failed edges", self.failed_edges[:20]), ("edges skipped at kinks", self.kinks[:10])):
            if edges:
                parts.append(f"<p>{title}</p><ul>" + "".join(f"<li>{esc(e.describe())}</li>" for e in edges) + "</ul>")
        return "".join(parts) + "</div>"


def _short(text: str, limit: int = 100) -> str:
    return text if len(text) <= limit else text[:limit - 3] + "..."


# ---------------------------------------------------------------------------------------------------------
# The layers
# ---------------------------------------------------------------------------------------------------------

def _close(a: float, b: float, scale: float, rtol: float, atol: float) -> bool:
    return abs(a - b) <= atol + rtol * max(abs(a), abs(b), scale)


def _edge_layer(nodes: list, rtol: float, atol: float, kink_tol: float, order: int):
    """Per-edge layer: each recorded partial against SymPy's, evaluated in one NumPy call per (op, parameter).

    Returns z (SymPy's local derivatives per node; the engine's at kinks), second derivatives per node when
    ``order`` is 2, the failed and skipped edges, and the number of edges."""
    groups: dict[tuple, list[int]] = {}
    for j, node in enumerate(nodes):
        if node.parents:
            groups.setdefault((node.op, node.arg), []).append(j)
    z: list[tuple] = [()] * len(nodes)
    z2: list[Any] = [None] * len(nodes)
    failed, kinks, count = [], [], 0
    for (op, arg), idx in groups.items():
        loc = _local(op, arg)
        members = [nodes[j] for j in idx]
        columns = [np.fromiter((m.parents[k].data for m in members), float, len(members)) for k in range(op.arity)]
        engine = [np.fromiter((m.partials[k] for m in members), float, len(members)) for k in range(op.arity)]
        exact = [_evaluate(fns, columns, len(members)) for fns in loc.first_fns()]
        at_kink = np.zeros(len(members), bool)
        if op.kink is not None:
            at_kink = np.fromiter((op.kink(*(p.data for p in m.parents)) <= kink_tol for m in members), bool,
                                  len(members))
        count += op.arity * len(members)
        for k in range(op.arity):
            e, s = engine[k], exact[k]
            with np.errstate(all="ignore"):
                good = np.abs(e - s) <= atol + rtol * np.maximum(np.abs(e), np.abs(s))
            for i in np.flatnonzero(~good & ~at_kink):
                failed.append(EdgeCheck(members[i], k, op.name, float(e[i]), float(s[i]), False))
        for i in np.flatnonzero(at_kink):
            for k in range(op.arity):
                kinks.append(EdgeCheck(members[i], k, op.name, float(engine[k][i]), None, True, op.subgradient))
        # NOTE: at a kink the derivative is a convention (the row's subgradient), so the engine's value is used.
        rows = np.where(at_kink, np.array(engine), np.array(exact)).T
        for i, j in enumerate(idx):
            z[j] = tuple(float(v) for v in rows[i])
        if order == 2:
            second = np.array([[_evaluate(fns, columns, len(members)) for fns in row] for row in loc.second_fns()])
            for i, j in enumerate(idx):
                z2[j] = second[:, :, i]
    return z, z2, failed, kinks, count


def _reverse_sweep(nodes: list, z: list[tuple]) -> tuple[dict, dict]:
    """The accumulation layer: S(i) += S(j) z(i, j) with SymPy's z, in our own reverse sweep; also the sum of
    |S(j) z(i, j)| (the scale that floating-point error is relative to)."""
    index = {node: i for i, node in enumerate(nodes)}
    S = [0.0] * len(nodes)
    A = [0.0] * len(nodes)
    S[-1] = A[-1] = 1.0
    for j in range(len(nodes) - 1, -1, -1):
        s, a = S[j], A[j]
        if not a:
            continue
        for p, zk in zip(nodes[j].parents, z[j], strict=True):
            i = index[p]
            S[i] += s * zk
            A[i] += a * abs(zk)
    return {n: S[i] for i, n in enumerate(nodes)}, {n: A[i] for i, n in enumerate(nodes)}


def _forward_second(nodes: list, wrt: list, z: list[tuple], z2: list) -> tuple[np.ndarray, np.ndarray]:
    """Second-order forward mode with SymPy's first and second local derivatives: each node carries its gradient
    J and Hessian H with respect to ``wrt``; returns the output's H and the matching scale of |terms|."""
    n = len(wrt)
    pos = {leaf: k for k, leaf in enumerate(wrt)}
    uses: dict[Any, int] = {}
    for node in nodes:
        for p in node.parents:
            uses[p] = uses.get(p, 0) + 1
    state: dict[Any, tuple] = {}
    zero_h = np.zeros((n, n))
    for j, node in enumerate(nodes):
        if not node.parents:
            J = np.zeros(n)
            if node in pos:
                J[pos[node]] = 1.0
            state[node] = (J, zero_h, np.abs(J), zero_h)
            continue
        J, H, JA, HA = np.zeros(n), np.zeros((n, n)), np.zeros(n), np.zeros((n, n))
        ps = node.parents
        for k, p in enumerate(ps):
            Jp, Hp, JAp, HAp = state[p]
            J += z[j][k] * Jp
            JA += abs(z[j][k]) * JAp
            H += z[j][k] * Hp
            HA += abs(z[j][k]) * HAp
            for m, q in enumerate(ps):
                d = z2[j][k, m]
                if d:
                    H += d * np.outer(Jp, state[q][0])
                    HA += abs(d) * np.outer(JAp, state[q][2])
        state[node] = (J, H, JA, HA)
        for p in set(ps):  # free what no later node needs
            uses[p] -= ps.count(p)
            if uses[p] == 0:
                del state[p]
    _, H, _, HA = state[nodes[-1]]
    return H, HA


def _kinks_by_inputs(nodes: list, targets: list, kinks: list[EdgeCheck]) -> list[tuple[int, Any]]:
    """(bit mask of the targets a node depends on, node) for every node with an edge at a kink."""
    bit = {id(t): 1 << k for k, t in enumerate(targets)}
    mask: dict[int, int] = {}
    for node in nodes:
        m = bit.get(id(node), 0)
        for p in node.parents:
            m |= mask[id(p)]
        mask[id(node)] = m
    at = {id(e.node): e.node for e in kinks}
    return [(mask[key], node) for key, node in at.items()]


def _tree_size(nodes: list) -> int:
    size: dict[Any, int] = {}
    for node in nodes:
        size[node] = 1 + sum(size[p] for p in node.parents)
    return size[nodes[-1]]


class _OverBudget(Exception):
    """The whole-expression layer ran out of its time budget (the message says after which step)."""


def _written_out_size(nodes: list) -> int:
    """The size of the graph's SymPy expression written out as a tree (each use of an input is a copy of it),
    from each op's SymPy form alone: known BEFORE SymPy builds the expression (which can itself take minutes)."""
    size: dict[int, int] = {}
    for node in nodes:
        if not node.parents:
            size[id(node)] = 1
            continue
        loc = _local(node.op, node.arg)
        size[id(node)] = loc.size + sum(u * (size[id(p)] - 1) for u, p in zip(loc.uses, node.parents, strict=True))
    return size[id(nodes[-1])]


def _whole(expr: sp.Expr, symbols: list[sp.Symbol], point: dict, order: int,
           deadline: float) -> tuple[list, list]:
    """The whole-expression layer: SymPy's derivatives of the whole expression, evaluated with cse at 30 digits.

    Returns (expressions, values): gradients first, then (order 2) the Hessian entries i <= j. Raises
    ``_OverBudget`` when ``time.monotonic()`` passes ``deadline`` between two of SymPy's steps."""
    def within_budget(step: str) -> None:
        if time.monotonic() > deadline:
            raise _OverBudget(step)

    exprs = []
    for s in symbols:
        exprs.append(sp.diff(expr, s))
        within_budget(f"differentiating by {s}")
    if order == 2:
        for i in range(len(symbols)):
            for j in range(i, len(symbols)):
                exprs.append(sp.diff(exprs[i], symbols[j]))
                within_budget(f"the second derivative by {symbols[i]} and {symbols[j]}")
    exprs = [_no_delta(e) for e in exprs]
    keys = sorted(point, key=str)
    fn = sp.lambdify(keys, exprs, "mpmath", cse=True)
    within_budget("compiling the derivatives")
    with mpmath.workdps(30):
        values = fn(*(mpmath.mpf(point[k]) for k in keys))
        return exprs, [float(mpmath.re(v)) for v in values]


def check_with_sympy(out: Any, wrt: Sequence[Any] | None = None, order: int = 1, *, rtol: float = 1e-7,
                     atol: float = 1e-10, max_nodes: int = 60, kink_tol: float = 1e-12,
                     max_seconds: float = 5.0) -> SymbolicCheck:
    """Check the gradients of ``out`` (and with ``order=2`` its Hessian) against SymPy, in layers.

    * per-edge (any size): every recorded local derivative against SymPy's derivative of that op's forward;
    * accumulation (any size): the leaves' gradients recomputed from SymPy's local derivatives in a separate
      reverse sweep (order 2: a second-order forward sweep), so neither the engine's partials nor its backward
      are trusted;
    * whole-expression (graphs up to ``max_nodes`` nodes): SymPy's derivative of the whole expression; skipped,
      with the reason in ``layers``, when the expression written out has more than 10 * ``max_nodes`` nodes
      (checked before SymPy differentiates) or SymPy takes more than ``max_seconds``.

    ``wrt`` defaults to every leaf (unlabelled ones get generated names such as ``v0``); with an explicit ``wrt``,
    unlabelled leaves outside it are the constants they hold. Edges whose kink
    distance is at most ``kink_tol`` are skipped and listed with the row's subgradient convention; so are the
    Hessian entries d2/dxi dxj that a node at a kink depending on both xi and xj enters (``Row.skipped`` says
    which node). A value passes
    when ``|autodiff - sympy| <= atol + rtol * scale``, scale being the larger of the two and the sum of the
    absolute values of the terms that were added up.

    >>> from microgradx import Value
    >>> x = Value(0.5, label="x"); y = Value(-1.5, label="y")
    >>> report = check_with_sympy((x * y).tanh() + x.exp())
    >>> report.ok, [r.name for r in report.gradients]
    (True, ['x', 'y'])
    """
    if order not in (1, 2):
        raise ValueError(f"check_with_sympy: order must be 1 or 2, got {order!r}")
    nodes = graph.require_scalar(out, "check_with_sympy", "For a Tensor graph, microgradx.check_gradients(out) "
                                 "checks each node's vjp (and its op-table rows against SymPy).")
    leaves = [n for n in nodes if not n.parents]
    targets = list(leaves if wrt is None else wrt)
    for w in targets:
        if getattr(w, "parents", ()):
            raise ValueError(f"check_with_sympy: wrt must be leaves (nodes without parents), got {node_name(w)}")
    wanted = None if wrt is None else set(map(id, targets))
    in_graph = set(map(id, leaves))
    extra = [w for w in targets if id(w) not in in_graph]  # leaves that out does not depend on
    symbols = _symbols(nodes + extra, lambda leaf: wanted is None or id(leaf) in wanted)
    names = [str(symbols[w]) for w in targets]

    z, z2, failed, kinks, n_edges = _edge_layer(nodes, rtol, atol, kink_tol, order)
    layers = {EDGES: f"ran: {n_edges} edges, {len(failed)} failed, {len(kinks)} skipped at kinks"}
    S, A = _reverse_sweep(nodes, z)
    layers[ACCUMULATION] = "ran: reverse sweep over SymPy's local derivatives"
    if order == 2:
        H_ref, H_scale = _forward_second(nodes, targets, z, z2)
        layers[ACCUMULATION] += "; second-order forward sweep for the Hessian"

    whole_exprs: list | None = None
    tree = _tree_size(nodes)
    if len(nodes) > max_nodes:
        layers[WHOLE] = f"skipped: {len(nodes)} nodes > max_nodes={max_nodes}"
    elif tree > _TREE_FACTOR * max_nodes:
        layers[WHOLE] = (f"skipped: written out without sharing the expression has {tree} nodes "
                         f"> {_TREE_FACTOR} * max_nodes={max_nodes}")
    elif kinks:
        layers[WHOLE] = f"skipped: {len(kinks)} edge(s) at kinks, where SymPy's convention may differ"
    else:
        point = {s: leaf.data for leaf, s in symbols.items()}
        started = time.monotonic()
        try:
            written = _written_out_size(nodes)
            if written > _WHOLE_SIZE_FACTOR * max_nodes:
                layers[WHOLE] = (f"skipped: SymPy's form of the expression written out has {written} nodes "
                                 f"> {_WHOLE_SIZE_FACTOR} * max_nodes={max_nodes} (SymPy would take too long)")
            else:
                expr = _expressions(nodes, symbols)[out]
                whole_exprs, whole_values = _whole(expr, [symbols[w] for w in targets], point, order,
                                                   started + max_seconds)
        except _OverBudget as e:
            layers[WHOLE] = f"skipped: SymPy took more than max_seconds={max_seconds:g} ({e})"
        except Exception as e:  # SymPy's own limits (e.g. nested Piecewise conditions)
            layers[WHOLE] = f"skipped: SymPy could not differentiate the whole expression ({type(e).__name__}: {e})"
        else:
            if whole_exprs is not None:
                layers[WHOLE] = f"ran: {len(whole_exprs)} derivative(s) of an expression over {len(nodes)} nodes"

    def row(label: str, key: tuple, auto: float, refs: list[tuple[str, float]], scale: float, expression: Any) -> Row:
        errs = [abs(auto - v) for _, v in refs]
        best = refs[-1][1]
        ok = all(_close(auto, v, scale, rtol, atol) for _, v in refs)
        rel = max(errs) / abs(best) if best else (0.0 if max(errs) == 0 else math.inf)
        return Row(label, key, auto, best, expression, max(errs), rel, ok, (EDGES,) + tuple(n for n, _ in refs))

    auto = graph.grad(out, targets)
    gradients = []
    for k, w in enumerate(targets):
        refs = [(ACCUMULATION, S.get(w, 0.0))]
        if whole_exprs is not None:
            refs.append((WHOLE, whole_values[k]))
        expression = None if whole_exprs is None else whole_exprs[k]
        gradients.append(row(names[k], (w,), float(auto[k]), refs, A.get(w, 0.0), expression))

    hessian = []
    if order == 2:
        first = graph.grad(out, targets, create_graph=True)
        n, entry = len(targets), len(targets)
        kinked = _kinks_by_inputs(nodes, targets, kinks)
        for i in range(n):
            second = graph.grad(first[i], targets)
            for j in range(i, n):
                label = f"d2/d{names[i]}d{names[j]}"
                at = next((node for mask, node in kinked if mask >> i & 1 and mask >> j & 1), None)
                if at is not None:  # the second derivative there is a convention, not SymPy's to check
                    hessian.append(Row(label, (targets[i], targets[j]), float(second[j]), math.nan, None, 0.0, 0.0,
                                       True, (), f"{node_name(at)} is at a kink and depends on {names[i]} and "
                                                f"{names[j]}"))
                    entry += 1
                    continue
                refs = [(ACCUMULATION, float(H_ref[i, j]))]
                if whole_exprs is not None:
                    refs.append((WHOLE, whole_values[entry]))
                hessian.append(row(label, (targets[i], targets[j]), float(second[j]), refs, float(H_scale[i, j]),
                                   whole_exprs[entry] if whole_exprs is not None else None))
                entry += 1

    ok = not failed and all(r.ok for r in gradients) and all(r.ok for r in hessian)
    return SymbolicCheck(ok, len(nodes), n_edges, gradients, hessian, failed, kinks, layers, rtol, atol)


# ---------------------------------------------------------------------------------------------------------
# LaTeX
# ---------------------------------------------------------------------------------------------------------

def latex(out: Any, *, simplify: bool = False, inputs: Iterable[Any] = ()) -> str:
    """The expression behind ``out`` as LaTeX, for slides (``simplify`` runs ``sympy.simplify`` first).

    >>> from microgradx import Value
    >>> x = Value(0.5, label="x"); latex(x.sigmoid() * x)
    '\\\\frac{x}{1 + e^{- x}}'
    """
    e = to_sympy(out, inputs)
    e = sp.simplify(e) if simplify else e
    return sp.latex(e, symbol_names=_upright(e.free_symbols))


def _upright(symbols: Iterable[Any]) -> dict:
    # NOTE: a multi-letter name such as "out" or "yhat" is one word, set upright, not a product of italic letters.
    return {s: rf"\mathrm{{{s.name}}}" for s in symbols
            if len(s.name) > 1 and s.name.isalpha() and sp.latex(s) == s.name}


def derivative_latex(out: Any, wrt: Any, *, simplify: bool = False) -> str:
    """``\\frac{\\partial out}{\\partial wrt} = ...`` as LaTeX: SymPy's derivative of the expression behind ``out``.

    >>> from microgradx import Value
    >>> x = Value(0.5, label="x"); y = x.sin() * x; y.label = "y"
    >>> derivative_latex(y, x)
    '\\\\frac{\\\\partial y}{\\\\partial x} = x \\\\cos{\\\\left(x \\\\right)} + \\\\sin{\\\\left(x \\\\right)}'
    """
    nodes = graph.topological_order(out)
    symbols = _symbols(nodes, lambda leaf: leaf is wrt)
    if wrt not in symbols:
        symbols.update(_symbols([wrt], lambda leaf: True))
    d = sp.diff(_expressions(nodes, symbols)[out], symbols[wrt])
    d = sp.simplify(d) if simplify else d
    lhs = sp.Symbol(out.label) if out.label else sp.Symbol("f")
    names = _upright({lhs, symbols[wrt], *d.free_symbols})
    return (rf"\frac{{\partial {sp.latex(lhs, symbol_names=names)}}}{{\partial "
            rf"{sp.latex(symbols[wrt], symbol_names=names)}}} = {sp.latex(d, symbol_names=names)}")


# ---------------------------------------------------------------------------------------------------------
# A printed formula against an op of the table
# ---------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class FormulaComparison:
    """A formula against an op row at some points: per point (x, formula value, op value, formula derivative,
    op derivative, agree); a value is None where the formula is undefined."""

    formula: Any
    op: str
    points: list[tuple[float, float | None, float, float | None, float, bool]]

    @property
    def ok(self) -> bool:
        return all(p[-1] for p in self.points)

    def __str__(self) -> str:
        def show(v: float | None) -> str:
            return "undefined" if v is None else f"{v:.10g}"
        lines = [f"{self.formula} against op {self.op}: {'agree' if self.ok else 'DIFFER'}",
                 f"  {'x':>8}  {'formula':>17}  {self.op:>17}  {'d formula/dx':>17}  {'d ' + self.op + '/dx':>17}"]
        for x, f, o, df, do, agree in self.points:
            lines.append(f"  {x:>8g}  {show(f):>17}  {show(o):>17}  {show(df):>17}  {show(do):>17}"
                         f"{'' if agree else '  <- differs'}")
        return "\n".join(lines)


def compare_formula(formula: Any, op_name: str, at: Sequence[float] = (-2.0, -0.5, 0.5, 2.0), *,
                    param: float | None = None, rtol: float = 1e-9, var: str = "x") -> FormulaComparison:
    """Compare a formula in one variable with an op row: value and derivative at each point.

    The formula is a SymPy expression, or text in the variable ``var`` read by the safe parser
    (``microgradx.parse``, built at the first point). It is evaluated exactly by SymPy; the op by its row's
    forward and partial (the engine's numbers). Ajmaldeen's assignment prints swish as x / (1 - e^-x); the row computes
    x * sigmoid(x):

    >>> compare_formula("x / (1 - exp(-x))", "swish", at=[4.0]).ok
    False
    >>> import sympy
    >>> x = sympy.Symbol("x", real=True)
    >>> compare_formula(x / (1 + sympy.exp(-x)), "swish", at=[-67.0, 4.0]).ok
    True
    """
    if op_name not in OPS:
        raise ValueError(f"compare_formula: no op named {op_name!r}; ops: {', '.join(OPS)}")
    op = OPS[op_name]
    if op.arity != 1:
        raise ValueError(f"compare_formula: {op_name} takes {op.arity} inputs; only one-input ops can be compared")
    if isinstance(formula, str):
        from .symbolic_parse import parse  # the safe parser: the text is never evaluated

        out, leaves = parse(formula, **{var: float(at[0])})
        e = to_sympy(out, leaves.values())
    elif isinstance(formula, sp.Basic):
        e = formula
    else:
        raise TypeError(f"compare_formula: the formula must be text or a SymPy expression, got "
                        f"{type(formula).__name__}")
    free = sorted(e.free_symbols, key=str)
    if len(free) != 1:
        raise ValueError(f"compare_formula: the formula must have exactly one variable, it has {free}")
    x = free[0]
    value_fn, slope_fn = (sp.lambdify([x], f, "mpmath") for f in (e, sp.diff(e, x)))
    arg = op.default if param is None else param
    points = []
    for a in at:
        a = float(a)
        args = (a,) if op.param is None else (a, arg)
        o = op.forward(FLOAT, *args)
        do = op.partials(FLOAT, o, *args)[0]
        f, df = (_real_or_none(fn, a) for fn in (value_fn, slope_fn))
        agree = f is not None and df is not None and _close(f, o, 0.0, rtol, 0.0) and _close(df, do, 0.0, rtol, 0.0)
        points.append((a, f, float(o), df, float(do), agree))
    return FormulaComparison(e, op_name, points)


def _real_or_none(fn: Callable, a: float) -> float | None:
    with mpmath.workdps(30):
        try:
            v = complex(fn(mpmath.mpf(a)))
        except (ZeroDivisionError, ValueError, TypeError):
            return None
    return v.real if not v.imag and math.isfinite(v.real) else None
