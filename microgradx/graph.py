"""The graph core: the node protocol, topological order, the one backward pass, path sums and forward mode.

Backpropagation is the dynamic program S(out) = seed, S(i) = sum over children j of S(j) * z(i, j), run once in
reverse topological order. Every reader (``Value.backward``, ``grad``, the stepper, ``Tensor.backward``) runs
the same generator, ``backprop``; the stepper simply asks it for one event at a time. (``Value.backward`` runs
its twin in ``fast``, which gives the same gradients bit for bit; ``fast.reference_only()`` runs this one.)
Every reader is written against ``Node``, the protocol both ``Value`` and ``Tensor`` satisfy.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass
from math import isfinite as _isfinite
from typing import Any, Protocol, runtime_checkable

from .ops import DomainError, MicrogradxError

__all__ = [
    "Node", "topological_order", "backprop", "run", "grad", "zero_grad", "Event",
    "Path", "paths", "count_paths", "PathLimitError", "jvp", "require_scalar", "check_gradients", "GradientCheck",
    "GradientFailure",
]


@runtime_checkable
class Node(Protocol):
    """What every reader needs of a graph node; ``Value`` and ``Tensor`` both satisfy it.

    ``parents``: the op's inputs, an ordered tuple (``x * x`` has ``x`` twice); empty for a leaf.
    ``op``: the row that made the node (an ``Op`` of the op table, or a ``TensorOp``); None for a leaf. Its
    label for drawings is ``node.op.display(node.arg)``; ``arg`` holds the row's non-tensor arguments.
    ``data``: the forward value (a float, an ndarray). ``grad``: the gradient slot; ``keeps_grad``: whether
    backward adds S to it (always for a Value; for a Tensor only leaves and ``retain_grad()`` results).
    ``partials``: the local derivatives z(parent, node), one float per parent, for a scalar node; None for a
    tensor node (its edges carry vector-Jacobian products instead).
    ``vjp(g, create_graph)``: one contribution per parent (None for a parent that takes no gradient).
    ``jvp(tangents)``: the node's tangent from one tangent per parent (None for zero).
    ``as_tangent(v)``: ``v`` checked as a tangent for this node (None: the zero tangent).
    """

    label: str | None
    data: Any
    grad: Any
    keeps_grad: bool

    @property
    def parents(self) -> tuple: ...

    @property
    def op(self) -> Any: ...

    @property
    def arg(self) -> Any: ...

    @property
    def partials(self) -> tuple | None: ...

    def vjp(self, g: Any, create_graph: bool = False) -> tuple: ...

    def jvp(self, tangents: Sequence[Any]) -> Any: ...

    def as_tangent(self, v: Any, what: str = "jvp tangent") -> Any: ...

    def reset_grad(self) -> None: ...


def require_scalar(out: Any, reader: str, instead: str) -> list:
    """The nodes behind ``out`` in topological order, or a MicrogradxError if one is not a scalar node (its
    edges carry no per-edge scalar derivative): ``reader`` names the function, ``instead`` what to use."""
    order = topological_order(out)
    for n in order:
        if n.partials is None:
            raise MicrogradxError(f"{reader} works on scalar (Value) graphs, where every edge carries one number; "
                                  f"{_kind(n)} is a {type(n).__name__}. {instead}")
    return order


def _kind(n: Any) -> str:
    label = getattr(n, "label", None)
    return f"node {label!r}" if label else "a node"


def topological_order(root: Any) -> list:
    """Every node ``root`` depends on, parents before children (iterative: a 10**6-deep chain is fine).

    >>> from microgradx import Value
    >>> x = Value(2.0, label="x"); y = x * x + x
    >>> [n.label or n.op.name for n in topological_order(y)]
    ['x', 'mul', 'add']
    """
    # Depth-first post-order with an explicit stack instead of recursion. A leaf is finished as soon as it is
    # reached (what pushing and at once popping it would do), which saves a stack round per leaf.
    if not isinstance(getattr(root, "parents", None), tuple):
        raise MicrogradxError(f"expected a graph node (a Value or a Tensor), got {type(root).__name__}: {root!r}")
    order: list = []
    visited = {root}
    add, finish = visited.add, order.append
    stack = [(root, iter(root.parents))]
    while stack:
        node, it = stack[-1]
        for p in it:
            if p not in visited:
                add(p)
                pp = p.parents
                if pp:
                    stack.append((p, iter(pp)))
                    break
                finish(p)
        else:
            stack.pop()
            finish(node)
    return order


@dataclass(frozen=True)
class Event:
    """One step of the backward pass: ``node`` is finished with gradient ``grad`` (its S) and passes
    ``contributions[k]`` (= ``grad * partials[k]`` on a Value; the vjp, an array or None, on a Tensor) to
    ``parents[k]``; ``totals[k]`` is that parent's running total right after its contribution (so the two uses
    of ``x`` in ``x * x`` show the total growing). ``partials`` is None for a tensor node, which has no
    per-edge scalars."""

    index: int
    node: Any
    grad: Any
    parents: tuple
    partials: tuple | None
    contributions: tuple
    totals: tuple


def backprop(root: Any, seed: Any = 1.0, *, create_graph: bool = False, accumulate: bool = True,
             trace: bool = False) -> Generator[Event, None, dict]:
    """The backward pass as a generator; it yields an ``Event`` per node when ``trace`` and returns {node: S}.

    With ``accumulate`` each node's ``.grad`` gets its S added when the node is finished; with
    ``create_graph`` the S are graph nodes themselves, so they can be differentiated again.

    >>> from microgradx import Value
    >>> x = Value(3.0); y = x * x
    >>> S = run(backprop(y, accumulate=False)); S[x]
    6.0
    """
    order = topological_order(root)
    # NOTE: nodes are keys by identity (no node class overrides __eq__/__hash__).
    S: dict[Any, Any] = {root: seed}
    get = S.get
    for index, node in enumerate(reversed(order)):
        s = get(node)
        if s is None:  # only nodes that take no gradient (a Tensor with requires_grad=False) get here
            continue
        if accumulate and node.keeps_grad:
            g0 = node.grad
            if node.partials is None:  # a tensor: add_grads refuses a sum that overflows, naming the tensor
                # NOTE: the seed is the caller's array (or another tensor's data): a .grad gets its own copy
                node.grad = (s.copy() if s is seed else s) if g0 is None else node.add_grads(g0, s, True)
            else:
                total = s if g0 is None else g0 + s
                if isinstance(total, float) and not _isfinite(total) and _isfinite(s):  # S is fine, the sum is not
                    raise accumulated_gradient_error(node, g0, s)
                node.grad = total
        parents = node.parents
        if not parents:
            if type(s) is float and not _isfinite(s):  # the sum over a leaf's uses overflowed
                raise leaf_gradient_error(node, s)
            if trace:
                yield Event(index, node, s, (), () if node.partials is not None else None, (), ())
            continue
        contributions = node.vjp(s, create_graph)
        # NOTE: a tensor node (partials None) adds its gradients with add_grads, which refuses a sum that overflows.
        if not trace:
            for p, c in zip(parents, contributions):
                if c is not None:
                    prev = get(p)
                    S[p] = c if prev is None else prev + c if p.partials is not None else p.add_grads(prev, c)
            continue
        totals = []
        for p, c in zip(parents, contributions):
            if c is not None:
                prev = get(p)
                S[p] = c if prev is None else prev + c if p.partials is not None else p.add_grads(prev, c)
            totals.append(get(p))
        # NOTE: only scalar nodes have local derivatives as numbers; a tensor node's event carries its VJPs alone.
        yield Event(index, node, s, parents, getattr(node, "partials", ()), tuple(contributions), tuple(totals))
    return S


def leaf_gradient_error(node: Any, s: float) -> DomainError:
    """The error for a leaf whose gradient, summed over its uses, is ``s``, not a finite float."""
    return DomainError(f"backward: the gradient reaching {_kind(node)} ({node.data!r}) sums to {s}, not a finite "
                       "float", "backward", s, node.label)


def accumulated_gradient_error(node: Any, g0: Any, s: float) -> DomainError:
    """The error for a node whose grad from before this backward, ``g0``, plus this pass's ``s`` is not a finite
    float (gradients accumulate over backward calls; an earlier grad can also have been set by hand)."""
    return DomainError(f"backward: the grad of {_kind(node)} ({node.data!r}) would be {g0 + s}: {g0!r} from before "
                       f"this backward plus {s!r} from it, not a finite float; gradients add up over backward calls, "
                       "zero_grad(out) starts them from 0", "backward", g0 + s, node.label)


def run(gen: Generator[Any, None, Any]) -> Any:
    """Exhaust a generator and return its return value: ``run(backprop(y))`` is an untraced backward."""
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            return stop.value


def grad(out: Any, wrt: Sequence[Any], *, create_graph: bool = False, seed: Any = None) -> list:
    """d out / d w for each w in ``wrt``, leaving every ``.grad`` untouched (JAX-style, no side effects).

    With ``create_graph`` the results are graph nodes, so they can be differentiated again.

    >>> from microgradx import Value
    >>> x = Value(3.0); grad(x * x * x, [x])
    [27.0]
    >>> g, = grad(x * x * x, [x], create_graph=True); grad(g, [x])
    [18.0]
    """
    zero: Any = 0.0
    if not isinstance(getattr(out, "parents", None), tuple):
        raise MicrogradxError(f"grad: out must be a graph node (a Value or a Tensor), got {type(out).__name__}: "
                              f"{out!r}")
    if create_graph:
        cls = type(out)
        seed = cls(1.0) if seed is None else seed if isinstance(seed, cls) else cls(seed)
        zero = None
    elif seed is not None:
        seed = out.as_tangent(seed, "grad seed")  # validated like data: a finite number (an array of out's shape)
    S = run(backprop(out, 1.0 if seed is None else seed, create_graph=create_graph, accumulate=False))
    results = []
    for w in wrt:
        s = S.get(w, zero)
        if create_graph and not hasattr(s, "parents"):
            s = type(out)(0.0 if s is None else s)
        results.append(s)
    return results


def zero_grad(out: Any) -> None:
    """Reset ``.grad`` on every node of the graph behind ``out``: ``zero_grad(loss)`` before a new backward."""
    for node in topological_order(out):
        node.reset_grad()


# ---------------------------------------------------------------------------------------------------------
# Path sums: the same gradient, the exponential way
# ---------------------------------------------------------------------------------------------------------

_TENSOR_PATHS = ("A path's product of edge derivatives is a number only when every edge carries one; on a "
                 "Tensor graph the edges carry vector-Jacobian products, so build the same computation from "
                 "Values (microgradx.Value) to list its paths, or use grad() / jvp() on the Tensor graph.")


class PathLimitError(MicrogradxError):
    """There are more paths than the limit; the message states how many (counted by dynamic programming)."""


@dataclass(frozen=True)
class Path:
    """One path from ``wrt`` to ``out``: its ``nodes``, the edge derivatives along it and their product.

    ``slots[k]`` says which parent position of ``nodes[k + 1]`` the edge enters, so the two paths through the
    two edges of ``x * x`` stay apart.
    """

    nodes: tuple
    derivatives: tuple
    slots: tuple = ()

    @property
    def product(self) -> float:
        """The product of the edge derivatives z(i, j) along the path."""
        p = 1.0
        for z in self.derivatives:
            p *= z
        return p

    def __repr__(self) -> str:
        from .text import node_name  # the one naming function (text reads graph, so imported when used)

        names = " -> ".join(node_name(n) for n in self.nodes)
        return f"Path({names}; product={self.product:.6g})"


def count_paths(out: Any, wrt: Any) -> int:
    """Number of paths from ``wrt`` to ``out``, by the same dynamic program as backward (linear time).

    Each use of a parent is its own edge, so ``x * x`` has two paths to ``x``.

    >>> from microgradx import Value
    >>> x = Value(1.0); count_paths(x * x, x)
    2
    """
    return _path_counts(out, wrt).get(id(out), 0)


def _path_counts(out: Any, wrt: Any) -> dict[int, int]:
    # {id(node): number of paths from wrt to node}; a node reaches wrt exactly when its count is positive.
    count = {id(wrt): 1}
    for node in require_scalar(out, "paths", _TENSOR_PATHS):
        if node is not wrt:
            count[id(node)] = sum(count.get(id(p), 0) for p in node.parents)
    return count


def paths(out: Any, wrt: Any, *, limit: int = 10_000) -> list[Path]:
    """Every path from ``wrt`` to ``out`` with its edge derivatives; their products sum to d out / d wrt.

    Paths are counted first and refused above ``limit``: their number grows exponentially with depth
    (the Unit 1 lecture: 10 layers of 2 nodes give 1024 paths) while backward stays linear.

    >>> from microgradx import Value
    >>> w = Value(2.0, label="w"); a = w * w
    >>> o = a.cos() + a.sin()
    >>> len(paths(o, w))
    4
    """
    require_scalar(out, "paths", _TENSOR_PATHS)
    count = _path_counts(out, wrt)
    n = count.get(id(out), 0)
    if n > limit:
        raise PathLimitError(f"paths: {n} paths lead from {wrt!r} to {out!r}, more than limit={limit}; "
                             "backward computes the same sum in one linear pass")
    found: list[Path] = []
    if out is wrt:
        return [Path((out,), (), ())]
    # Depth-first from out towards wrt with ONE path under construction (push on the way down, pop on the way
    # back): each edge step is O(1), so the work is linear in the nodes visited plus the length of each path
    # found (copying the path is the only per-path cost).
    nodes: list[Any] = [out]
    zs: list[Any] = []
    slots: list[int] = []
    edges = [_edges_towards(out, count)]
    while edges:
        edge = next(edges[-1], None)
        if edge is None:  # every edge of the head is done: step back
            edges.pop()
            nodes.pop()
            if zs:
                zs.pop()
                slots.pop()
            continue
        k, p, z = edge
        if p is wrt:
            found.append(Path(tuple(reversed(nodes + [p])), tuple(reversed(zs + [z])),
                              tuple(reversed(slots + [k]))))
            continue
        nodes.append(p)
        zs.append(z)
        slots.append(k)
        edges.append(_edges_towards(p, count))
    return found


def _edges_towards(node: Any, count: dict[int, int]) -> Generator[tuple[int, Any, Any], None, None]:
    # (slot, parent, partial) for each parent edge of node that lies on a path to wrt, in parent order.
    return ((k, p, z) for k, (p, z) in enumerate(zip(node.parents, node.partials)) if count.get(id(p), 0))


def jvp(out: Any, tangents: Mapping[Any, Any]) -> Any:
    """Forward-mode derivative of ``out`` along ``tangents`` ({leaf: direction}) on the recorded graph.

    T(leaf) = tangent, T(j) = the node's jvp of its parents' tangents (on a Value: sum over parents i of
    z(i, j) * T(i)); equals reverse mode's directional derivative. Works on Value and Tensor graphs; a Tensor's
    direction is an array of its shape.

    >>> from microgradx import Value
    >>> x, y = Value(2.0), Value(3.0)
    >>> jvp(x * y, {x: 1.0})
    3.0
    """
    if not isinstance(tangents, Mapping):
        raise TypeError(f"jvp: tangents must be a dict {{leaf node: direction}}, got {type(tangents).__name__}")
    T: dict[int, Any] = {}
    for k, v in tangents.items():
        if not isinstance(getattr(k, "parents", None), tuple):
            raise TypeError(f"jvp: the keys of tangents must be graph nodes (Values or Tensors), got "
                            f"{type(k).__name__}: {k!r}")
        T[id(k)] = k.as_tangent(v)
    for node in topological_order(out):
        if node.parents and id(node) not in T:
            ts = [T.get(id(p)) for p in node.parents]
            if any(t is not None for t in ts):
                T[id(node)] = node.jvp(ts)
    t = T.get(id(out))
    return out.as_tangent(None) if t is None else t


# ---------------------------------------------------------------------------------------------------------
# Gradient checks: every node's local derivative against an independent oracle
# ---------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class GradientFailure:
    """One node whose derivative disagrees with the oracle: its ``row``, the ``parent`` slot, both numbers."""

    row: str
    node: Any
    parent: int
    engine: float
    expected: float
    oracle: str

    def __str__(self) -> str:
        label = f" {self.node.label!r}" if getattr(self.node, "label", None) else ""
        return (f"row {self.row!r} (node{label}, parent {self.parent}): the engine gives {self.engine:.10g}, "
                f"{self.oracle} gives {self.expected:.10g}")


@dataclass(frozen=True)
class GradientCheck:
    """What ``check_gradients`` found: how many nodes it checked and the failures, first one first."""

    checked: int
    failures: tuple[GradientFailure, ...]

    @property
    def ok(self) -> bool:
        """True when every checked node agrees with its oracle."""
        return not self.failures

    @property
    def first(self) -> str | None:
        """The name of the first row (in topological order) whose derivative is wrong, or None."""
        return self.failures[0].row if self.failures else None

    def __str__(self) -> str:
        if self.ok:
            return f"gradient check: all {self.checked} nodes agree with their oracles"
        lines = [f"gradient check: {len(self.failures)} of {self.checked} nodes disagree; first wrong row: "
                 f"{self.first!r}"]
        lines += [f"  {f}" for f in self.failures]
        return "\n".join(lines)


def _sympy_partials(op: Any, point: tuple, param: Any) -> list[tuple[float, float]] | None:
    """[(SymPy's derivative, the row's partial)] per input of ``op`` at ``point``, both exact then rounded;
    None at a kink or outside the row's domain, where the row's choice of subgradient is a convention."""
    import sympy as sp

    from .ops import sympy_math

    if any(not d.contains(x) for d, x in zip(op.domains(param), point)):
        return None
    args = (*point, param) if op.param else point
    if op.kink is not None and op.kink(*args) < 1e-9:
        return None
    xs = sp.symbols(f"x0:{op.arity}", real=True)
    at = {s: sp.Rational(repr(float(x))) for s, x in zip(xs, point)}
    f = op.sym(*xs, param=param)
    zs = op.partials(sympy_math(), f, *((*xs, param) if op.param else xs))
    # NOTE: a row's partial may come back as a plain number (mul's partials of constants): a SymPy Float then.
    exprs = [z if isinstance(z, sp.Basic) else sp.Float(z) for z in zs]
    return [(float(sp.N(sp.diff(f, s).subs(at), 30)), float(sp.N(z.subs(at), 30))) for s, z in zip(xs, exprs)]


def check_gradients(out: Any, *, seed: int = 0, rtol: float = 1e-6) -> GradientCheck:
    """Check every node's local derivative: Value edges and the op-table rows of a Tensor graph exactly against
    SymPy; each Tensor node's vjp against float64 central differences of that node's own forward.

    The result names the first row (in topological order) whose derivative is wrong.

    >>> from microgradx import Value
    >>> x = Value(0.5, label="x"); check_gradients((x * x).tanh()).ok
    True
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    failures: list[GradientFailure] = []
    checked = 0
    for n in topological_order(out):
        if not n.parents:
            continue
        checked += 1
        row = n.op
        if n.partials is not None:  # a Value: its recorded partials against SymPy at its inputs
            ref = _sympy_partials(row, tuple(p.data for p in n.parents), n.arg)
            for k, (want, _) in enumerate(ref or ()):
                got = n.partials[k]
                if not abs(got - want) <= rtol * (1.0 + abs(want)):
                    failures.append(GradientFailure(row.name, n, k, float(got), want, "SymPy"))
            continue
        from .ops import Op
        from .tensor import vjp_mismatches

        if type(row) is Op:  # the row's partials against SymPy at a few of the node's entries
            datas = np.broadcast_arrays(*(p.data for p in n.parents))
            for i in range(min(3, datas[0].size)):
                point = tuple(float(d.reshape(-1)[i]) for d in datas)
                for k, (want, got) in enumerate(_sympy_partials(row, point, n.arg) or ()):
                    if not abs(got - want) <= rtol * (1.0 + abs(want)):
                        failures.append(GradientFailure(row.name, n, k, got, want, "SymPy"))
        failures += [GradientFailure(row.name, n, k, got, want, "central differences")
                     for k, got, want in vjp_mismatches(n, rng, rtol=rtol)]
    return GradientCheck(checked, tuple(failures))
