"""A safe parser from expression text to a graph: ``parse("cos(w**2) + sin(w**2)", w=2.0)``.

The text goes through Python's ``ast`` and a whitelist (numbers, names, ``+ - * / **``, unary signs, calls of
the op table's functions); nothing is ever ``eval``ed. Identical subexpressions become one shared node.
"""

from __future__ import annotations

import ast
import math
import numbers
import operator
import unicodedata
import warnings
from typing import Any

from .ops import DomainError, MicrogradxError, Op, method_names
from .value import Value

__all__ = ["parse", "ParseError", "FUNCTIONS", "CONSTANTS", "MAX_LENGTH", "MAX_NODES", "MAX_DEPTH",
           "MAX_EXPONENT"]

MAX_LENGTH = 2000
MAX_NODES = 500
MAX_DEPTH = 60
MAX_EXPONENT = 100.0

CONSTANTS = {"pi": math.pi, "e": math.e}
_BINOPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
           ast.Pow: operator.pow}

# Function names come from the op table rows' methods; dunder names such as __abs__ are not callable here.
FUNCTIONS: dict[str, Op] = method_names()

_ALLOWED = (ast.Expression, ast.BinOp, ast.UnaryOp, ast.Call, ast.Name, ast.Constant, ast.Load, ast.UAdd,
            ast.USub, *_BINOPS)
_HINTS = {
    ast.BitXor: "use ** for powers (^ is not a power)",
    ast.Attribute: "attributes (a.b) are not allowed",
    ast.Subscript: "subscripts (a[i]) are not allowed",
    ast.Lambda: "lambda is not allowed",
    ast.Compare: "comparisons are not allowed",
    ast.keyword: "keyword arguments are not allowed: pass parameters by position, e.g. leaky_relu(x, 0.1)",
}


class ParseError(MicrogradxError, ValueError):
    """An expression string that does not parse or uses something that is not allowed; says what and where."""


def _where(node: ast.AST, text: str) -> str:
    col = getattr(node, "col_offset", None)
    if col is None:
        return ""
    piece = ast.get_source_segment(text, node) or ""
    piece = piece if len(piece) <= 40 else piece[:37] + "..."
    return f" at column {col + 1} ({piece!r})" if piece else f" at column {col + 1}"


def _check(tree: ast.Expression, text: str) -> None:
    count = 0
    depth = {id(tree): 0}
    for node in ast.walk(tree):
        count += 1
        if count > MAX_NODES:
            raise ParseError(f"parse: expression has more than {MAX_NODES} syntax nodes")
        if not isinstance(node, _ALLOWED):
            hint = next((h for t, h in _HINTS.items() if isinstance(node, t)), None)
            what = type(node).__name__
            raise ParseError(f"parse: {hint or f'{what} is not allowed'}{_where(node, text)}; allowed are "
                             "numbers, names, + - * / **, unary +/- and calls such as tanh(x)")
        d = depth[id(node)]
        if d > MAX_DEPTH:
            raise ParseError(f"parse: expression is nested more than {MAX_DEPTH} levels deep")
        for child in ast.iter_child_nodes(node):
            depth[id(child)] = d + 1
        if isinstance(node, ast.Name) and "__" in node.id:
            raise ParseError(f"parse: names with double underscores are not allowed{_where(node, text)}")
        if isinstance(node, ast.Constant) and (isinstance(node.value, bool)
                                               or not isinstance(node.value, (int, float))):
            raise ParseError(f"parse: only real numbers are allowed as constants, got {node.value!r}"
                             f"{_where(node, text)}")
        if isinstance(node, ast.Call):
            if node.keywords:
                raise ParseError(f"parse: {_HINTS[ast.keyword]}{_where(node, text)}")
            if not isinstance(node.func, ast.Name):
                raise ParseError(f"parse: only calls of plain function names are allowed{_where(node, text)}")
            if any(isinstance(a, ast.Starred) for a in node.args):
                raise ParseError(f"parse: *arguments are not allowed{_where(node, text)}")


class _Builder:
    def __init__(self, text: str, leaves: dict[str, Value], share: bool) -> None:
        self.text, self.leaves, self.share = text, leaves, share
        self.cache: dict[str, Any] = {}

    def build(self, node: ast.AST) -> Any:
        key = ast.dump(node) if self.share else None
        if key is not None and key in self.cache:
            return self.cache[key]
        result = self._build(node)
        if key is not None:
            self.cache[key] = result
        return result

    def _build(self, node: ast.AST) -> Any:
        if isinstance(node, ast.Expression):
            return self.build(node.body)
        if isinstance(node, ast.Constant):
            try:
                return _finite(float(node.value), node, self.text)
            except OverflowError:
                raise ParseError(f"parse: number too large for a float{_where(node, self.text)}") from None
        if isinstance(node, ast.Name):
            if node.id in self.leaves:
                return self.leaves[node.id]
            if node.id in CONSTANTS:
                return CONSTANTS[node.id]
            if node.id in FUNCTIONS:
                raise ParseError(f"parse: {node.id} is a function: call it, e.g. {node.id}(x){_where(node, self.text)}")
            given = ", ".join(self.leaves) or "none"
            raise ParseError(f"parse: unknown name {node.id!r}{_where(node, self.text)}; give its value, e.g. "
                             f"{node.id}=1.0 (names given: {given})")
        if isinstance(node, ast.UnaryOp):
            x = self.build(node.operand)
            return x if isinstance(node.op, ast.UAdd) else -x
        if isinstance(node, ast.BinOp):
            return self._binop(node)
        assert isinstance(node, ast.Call)
        return self._call(node)

    def _binop(self, node: ast.BinOp) -> Any:
        a, b = self.build(node.left), self.build(node.right)
        op = type(node.op)
        if op is ast.Pow and isinstance(b, float) and abs(b) > MAX_EXPONENT:
            raise ParseError(f"parse: exponent {b:g} is larger than {MAX_EXPONENT:g} in absolute value"
                             f"{_where(node, self.text)}")
        if isinstance(a, float) and isinstance(b, float):
            # Numbers fold through the op table too, so its domains and overflow checks apply: (-8)**0.5 and
            # 1/0 are refused with the op's own message.
            try:
                return _BINOPS[op](Value(a), b).data
            except DomainError as e:
                what = "division by zero: " if isinstance(e, ZeroDivisionError) else ""
                raise ParseError(f"parse: {what}{e}{_where(node, self.text)}") from None
        try:
            return _BINOPS[op](a, b)
        except DomainError as e:
            raise _located(e, node, self.text) from None

    def _call(self, node: ast.Call) -> Any:
        fname = node.func.id  # type: ignore[attr-defined]
        op = FUNCTIONS.get(fname)
        if op is None:
            raise ParseError(f"parse: unknown function {fname!r}{_where(node, self.text)}; "
                             f"functions are {', '.join(sorted(FUNCTIONS))}")
        args = [self.build(a) for a in node.args]
        if op.arity == 2:
            need = "2 arguments"
            ok = len(args) == 2
        elif op.param:
            need = f"1 argument and optionally the number {op.param} (default {op.default:g})"
            ok = len(args) in (1, 2)
        else:
            need = "1 argument"
            ok = len(args) == 1
        if not ok:
            raise ParseError(f"parse: {fname} takes {need}, got {len(args)}{_where(node, self.text)}")
        if op.arity == 1 and op.param and len(args) == 2 and not isinstance(args[1], float):
            raise ParseError(f"parse: the {op.param} of {fname} must be a number, not an expression of the inputs"
                             f"{_where(node, self.text)}")
        x = args[0] if isinstance(args[0], Value) else Value(args[0])
        try:
            return getattr(x, fname)(*args[1:])
        except DomainError as e:  # log(0): the op's own message, and where it is in the text
            raise _located(e, node, self.text) from None


def _located(e: DomainError, node: ast.AST, text: str) -> DomainError:
    """The same error (same class, op, value and label) with the column of ``node`` added to its message."""
    return type(e)(f"{e}{_where(node, text)}", e.op, e.value, e.label)


def _refuse_folded_characters(text: str, what: str) -> None:
    # Python reads identifiers in NFKC form: 'ｘ' (fullwidth) and '𝐱' (bold) would silently become x. Such
    # characters are refused; ones NFKC keeps (Greek letters such as α) are allowed.
    for i, c in enumerate(text):
        if not c.isascii() and unicodedata.normalize("NFKC", c) != c:
            folded = unicodedata.normalize("NFKC", c)
            raise ParseError(f"parse: {what} has {c!r} ({unicodedata.name(c, 'a compatibility character')}) at "
                             f"column {i + 1}, which Python would silently read as {folded!r}: write {folded!r}")


def _finite(x: float, node: ast.AST, text: str) -> float:
    if not math.isfinite(x):
        raise ParseError(f"parse: number {ast.get_source_segment(text, node)!r} is not a finite float"
                         f"{_where(node, text)}")
    return x


def parse(text: str, share: bool = True, **values: float) -> tuple[Value, dict[str, Value]]:
    """Build the graph of ``text`` with a leaf Value per name given; returns ``(out, {name: leaf})``.

    Function names are the op table's (``tanh``, ``leaky_relu(x, 0.1)``, ``max(x, y)``, ...); ``pi`` and
    ``e`` are constants. With ``share`` identical subexpressions are one node, as in a hand-drawn graph.

    >>> out, leaves = parse("cos(w**2) + sin(w**2)", w=2.0)
    >>> out.backward(); round(leaves["w"].grad, 6)
    0.412635
    >>> parse("__import__('os')")
    Traceback (most recent call last):
    ...
    microgradx.symbolic_parse.ParseError: parse: names with double underscores are not allowed ...
    """
    if not isinstance(text, str):
        raise ParseError(f"parse: the expression must be a string, got {type(text).__name__}")
    if len(text) > MAX_LENGTH:
        raise ParseError(f"parse: expression is {len(text)} characters long, more than {MAX_LENGTH}")
    if not text.strip():
        raise ParseError("parse: the expression is empty")
    leaves: dict[str, Value] = {}
    for key, v in values.items():
        _refuse_folded_characters(key, f"input name {key!r}")
        if not key.isidentifier() or "__" in key or key in FUNCTIONS:
            raise ParseError(f"parse: {key!r} cannot be an input name (it must be an identifier that is not a "
                             "function name and has no double underscores)")
        if isinstance(v, Value):
            leaves[key] = v
        elif isinstance(v, numbers.Real) and not isinstance(v, bool):
            try:
                v = float(v)
            except OverflowError:  # an int such as 10**400
                raise ParseError(f"parse: input {key} is too large for a float") from None
            leaves[key] = Value(v, label=key)
        else:
            raise ParseError(f"parse: input {key} needs a number, got {type(v).__name__}: {v!r}")
    _refuse_folded_characters(text.strip(), "the expression")
    try:
        with warnings.catch_warnings():
            # NOTE: "1and x" or "1if x" make Python print a SyntaxWarning; as errors they become our ParseError.
            warnings.simplefilter("error")
            tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as e:
        col = f" at column {e.offset}" if e.offset else ""
        raise ParseError(f"parse: not a valid expression{col}: {e.msg}") from None
    except (RecursionError, MemoryError, ValueError) as e:
        raise ParseError(f"parse: expression cannot be parsed ({type(e).__name__})") from None
    _check(tree, text.strip())
    out = _Builder(text.strip(), leaves, share).build(tree)
    if not isinstance(out, Value):
        out = Value(out)
    return out, leaves
