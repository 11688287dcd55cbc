"""Step through the backward pass one node at a time, in a REPL or notebook.

``step(out)`` drives the core's ``graph.backprop(out, trace=True)`` generator: the very code ``backward()`` runs,
one event per ``next``; so after ``run()`` every ``.grad`` is exactly what ``backward()`` gives.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from .graph import Event, backprop, topological_order
from .text import formula, number
from .text import name as _text_name

__all__ = ["step", "Stepper", "describe", "node_name"]


def node_name(node: Any) -> str:
    """A node's label, else its formula three levels deep (one level when that is too long to read)."""
    text = _text_name(node, 3)
    return text if len(text) <= 32 else _text_name(node, 1)


def describe(ev: Event, digits: int = 5, total: int | None = None) -> str:
    """One backward event as text: the node, its S, and per parent z, S*z and the parent's running S.

    >>> from microgradx import Value, backprop
    >>> x = Value(3.0, label="x"); y = x * x; y.label = "y"
    >>> print(describe(next(backprop(y, trace=True))))
    step 1: y = x * x   S = 1
       -> x     z = 3   S*z = 3   S(x) so far = 3
       -> x     z = 3   S*z = 3   S(x) so far = 6
    """
    def num(v: Any) -> str:
        return number(v, digits)

    where = f"step {ev.index + 1}" + (f" of {total}" if total else "")
    if not ev.parents:
        return f"{where}: {node_name(ev.node)} ({formula(ev.node)})   S = {num(ev.grad)}   final gradient"
    head = f"{ev.node.label} = {formula(ev.node)}" if ev.node.label else node_name(ev.node)
    lines = [f"{where}: {head}   S = {num(ev.grad)}"]
    rows = [(node_name(p), num(z), num(c), f"S({node_name(p)}) so far = {num(t)}")
            for p, z, c, t in zip(ev.parents, ev.partials, ev.contributions, ev.totals, strict=True)]
    w = [max(len(r[k]) for r in rows) for k in range(3)]
    for n, z, c, t in rows:
        lines.append(f"   -> {n:<{w[0]}}   z = {z:<{w[1]}}   S*z = {c:<{w[2]}}   {t}")
    return "\n".join(lines)


class Stepper:
    """The backward pass of ``out`` one event at a time; see ``step``."""

    def __init__(self, out: Any, seed: float = 1.0, digits: int = 5) -> None:
        self.out, self.seed, self.digits = out, seed, digits
        self._order = topological_order(out)
        # Grads before the first step: back() restores them and replays, so undo is exact.
        self._saved = [(n, n.grad) for n in self._order]
        self._start()

    def _start(self) -> None:
        self._gen = backprop(self.out, self.seed, trace=True)
        self.events: list[Event] = []
        self._S: dict[Any, Any] = {}
        self._finished: set[int] = set()
        self._exhausted = False

    # -- moving ---------------------------------------------------------------------------------------------

    def __iter__(self) -> Iterator[Event]:
        return self

    def __next__(self) -> Event:
        if self._exhausted:
            raise StopIteration
        try:
            ev = next(self._gen)
        except StopIteration:
            self._exhausted = True
            raise
        self.events.append(ev)
        self._S[ev.node] = ev.grad
        self._finished.add(id(ev.node))
        for p, t in zip(ev.parents, ev.totals, strict=True):
            self._S[p] = t
        return ev

    def next(self) -> Stepper:
        """Process one more node (the REPL then shows where you are); at the end it does nothing."""
        next(self, None)
        return self

    def back(self) -> Stepper:
        """Undo one step: restore the grads saved at the start and replay one step fewer."""
        k = len(self.events) - 1
        if k < 0:
            return self
        for node, g in self._saved:
            node.grad = g
        self._start()
        for _ in range(k):
            next(self)
        return self

    def run(self) -> Stepper:
        """Finish the backward pass; afterwards every ``.grad`` equals what ``backward()`` gives."""
        for _ in self:
            pass
        return self

    # -- looking ----------------------------------------------------------------------------------------------

    @property
    def total(self) -> int:
        """How many nodes the backward pass visits."""
        return len(self._order)

    @property
    def done(self) -> bool:
        """True once every node has been processed."""
        return self._exhausted or len(self.events) >= self.total

    @property
    def current(self) -> Any:
        """The node processed by the last step (None before the first)."""
        return self.events[-1].node if self.events else None

    @property
    def gradients(self) -> dict[Any, Any]:
        """S so far for every node reached: final for processed nodes, a running total for the others."""
        return dict(self._S)

    def table(self) -> str:
        """Every step so far as a text table: node, S, and per parent z, S*z and the parent's running S.

        >>> from microgradx.examples import two_paths
        >>> o, w = two_paths(); print(step(o).next().table())
        step  node  S(node)  parent          z  S*z  S(parent) so far
           1  o           1  cos(a)          1    1                 1
                             sin(a)          1    1                 1
        """
        def num(v: Any) -> str:
            return number(v, self.digits)

        rows = [("step", "node", "S(node)", "parent", "z", "S*z", "S(parent) so far")]
        for ev in self.events:
            head = (str(ev.index + 1), node_name(ev.node), num(ev.grad))
            if not ev.parents:
                rows.append((*head, f"({formula(ev.node)})", "", "", ""))
            for k, (p, z, c, t) in enumerate(zip(ev.parents, ev.partials, ev.contributions, ev.totals, strict=True)):
                rows.append((*(head if k == 0 else ("", "", "")), node_name(p), num(z), num(c), num(t)))
        widths = [max(len(r[c]) for r in rows) for c in range(7)]
        right = {0, 2, 4, 5, 6}
        out = []
        for r in rows:
            cells = [r[c].rjust(widths[c]) if c in right else r[c].ljust(widths[c]) for c in range(7)]
            out.append("  ".join(cells).rstrip())
        return "\n".join(out)

    def draw(self, **options: Any) -> Any:
        """A drawing of the graph now: the current node and its edges highlighted, unreached grads blank."""
        from .render import draw

        partial = [n for n in self._S if id(n) not in self._finished]
        options.setdefault("title", self._where())
        return draw(self.out, grads=self._S, partial=partial, current=self.current, **options)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        # In a notebook: the step as text above the drawing of the graph now (text alone without a renderer).
        import html

        from .render import RenderError

        text = repr(self)
        try:
            svg = self.draw().svg()
        except RenderError:
            return {"text/plain": text}
        return {"text/html": f"<pre>{html.escape(text)}</pre>{svg}", "text/plain": text}

    def _where(self) -> str:
        if not self.events:
            return f"backward of {node_name(self.out)}: {self.total} steps, none taken yet"
        state = "done" if self.done else f"step {len(self.events)} of {self.total}"
        return f"backward of {node_name(self.out)}: {state}"

    def __repr__(self) -> str:
        if not self.events:
            return (f"<Stepper: {self._where()}; next(s) or s.next() processes {node_name(self.out)} "
                    f"with S = {number(self.seed, self.digits)}>")
        text = describe(self.events[-1], self.digits, self.total)
        tail = "done: every .grad now equals backward()'s" if self.done else "s.next(), s.back(), s.run(), s.table()"
        return f"<Stepper: {self._where()}\n{text}\n{tail}>"


def step(out: Any, seed: float = 1.0, digits: int = 5) -> Stepper:
    """Step through the backward pass of ``out``: ``next(s)`` or ``s.next()``, ``s.back()``, ``s.run()``.

    >>> from microgradx.examples import seed001_example3
    >>> ex = seed001_example3(); s = step(ex.J)
    >>> ev = next(s); ev.node is ex.J
    True
    >>> s.run().done, round(ex.w1.grad, 5), round(ex.w2.grad, 5)
    (True, 0.0251, 0.13757)
    """
    return Stepper(out, seed, digits)
