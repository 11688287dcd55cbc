"""The graph core: topological order, the one backward pass, path sums and forward mode.

Backpropagation is the dynamic program S(out) = seed, S(i) = sum over children j of S(j) * z(i, j), run once in
reverse topological order. Every reader (``Value.backward``, ``grad``, the stepper, ``Tensor.backward``) runs
the same generator, ``backprop``; the stepper simply asks it for one event at a time.

A node is anything with ``parents`` (an ordered tuple), a ``grad`` slot, ``_keeps_grad`` (whether backward
adds S to that slot: always for a Value, only for leaves and ``retain_grad()`` results for a Tensor, whose
intermediate gradients would only hold memory) and ``_vjps(g, create_graph)``, which returns one contribution
per parent (``None`` for a parent that takes no gradient). Scalar nodes also have ``partials`` (one local
derivative per parent), which the readers below use.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .ops import MicrogradxError

__all__ = [
    "topological_order", "backprop", "run", "grad", "zero_grad", "Event",
    "Path", "paths", "count_paths", "PathLimitError", "jvp",
]


def topological_order(root: Any) -> list:
    """Every node ``root`` depends on, parents before children (iterative: a 10**6-deep chain is fine).

    >>> from microgradx import Value
    >>> x = Value(2.0, label="x"); y = x * x + x
    >>> [n.label or n.op.name for n in topological_order(y)]
    ['x', 'mul', 'add']
    """
    # Depth-first post-order with an explicit stack instead of recursion. A leaf is finished as soon as it is
    # reached (what pushing and at once popping it would do), which saves a stack round per leaf.
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
    ``contributions[k] = grad * partials[k]`` to ``parents[k]``; ``totals[k]`` is that parent's running total
    right after its contribution (so the two uses of ``x`` in ``x * x`` show the total growing)."""

    index: int
    node: Any
    grad: Any
    parents: tuple
    partials: tuple
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
        if accumulate and node._keeps_grad:
            g0 = node.grad
            node.grad = s if g0 is None else g0 + s
        parents = node.parents
        if not parents:
            if trace:
                yield Event(index, node, s, (), (), (), ())
            continue
        contributions = node._vjps(s, create_graph)
        if not trace:
            for p, c in zip(parents, contributions):
                if c is not None:
                    prev = get(p)
                    S[p] = c if prev is None else prev + c
            continue
        totals = []
        for p, c in zip(parents, contributions):
            if c is not None:
                prev = get(p)
                S[p] = c if prev is None else prev + c
            totals.append(get(p))
        # NOTE: only scalar nodes have local derivatives as numbers; a tensor node's event carries its VJPs alone.
        yield Event(index, node, s, parents, getattr(node, "partials", ()), tuple(contributions), tuple(totals))
    return S


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
    if create_graph:
        cls = type(out)
        seed = cls(1.0) if seed is None else seed
        zero = None
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
        node._reset_grad()


# ---------------------------------------------------------------------------------------------------------
# Path sums: the same gradient, the exponential way
# ---------------------------------------------------------------------------------------------------------

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
    for node in topological_order(out):
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


def jvp(out: Any, tangents: Mapping[Any, float]) -> float:
    """Forward-mode derivative of ``out`` along ``tangents`` ({leaf: direction}) on the recorded graph.

    T(leaf) = tangent, T(j) = sum over parents i of z(i, j) * T(i); equals reverse mode's dot product.

    >>> from microgradx import Value
    >>> x, y = Value(2.0), Value(3.0)
    >>> jvp(x * y, {x: 1.0})
    3.0
    """
    T: dict[int, float] = {id(k): float(v) for k, v in tangents.items()}
    for node in topological_order(out):
        if node.parents and id(node) not in T:
            T[id(node)] = sum(z * T.get(id(p), 0.0) for p, z in zip(node.parents, node.partials))
    return T.get(id(out), 0.0)

