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

__all__ = ["step", "Stepper", "describe", "node_name", "quantity", "Table"]


def _is_tensor(node: Any) -> bool:
    return hasattr(getattr(node, "data", None), "shape")


def _op_name(node: Any) -> str:
    # NOTE: a Tensor's op is a table row (with .name) or, in older graphs, the op's name as a string.
    op = getattr(node, "op", None)
    return str(getattr(op, "name", op))


def quantity(v: Any, digits: int = 5) -> str:
    """A gradient as text: a float's digits, an array's shape and norm, or "none" for a missing one.

    >>> import numpy as np
    >>> quantity(0.123456), quantity(np.array([[3.0, 4.0]]))
    ('0.12346', 'shape (1, 2), norm 5')
    """
    if v is None:
        return "none"
    shape = getattr(v, "shape", None)
    if shape is None:
        return number(v, digits)
    if shape == ():
        return number(float(v), digits)
    import numpy as np

    return f"shape {tuple(shape)}, norm {number(float(np.linalg.norm(np.asarray(v, dtype=np.float64))), digits)}"


def node_name(node: Any) -> str:
    """A node's label, else its formula three levels deep (one level when that is too long to read)."""
    if _is_tensor(node):
        if node.label:
            return node.label
        if not node.parents:
            return f"constant {tuple(node.data.shape)}"
        return f"{_op_name(node)}({', '.join(_short(p) for p in node.parents)})"
    text = _text_name(node, 3)
    return text if len(text) <= 32 else _text_name(node, 1)


def _short(node: Any) -> str:
    return node.label or (_op_name(node) if node.parents else "const")


def _formula(node: Any) -> str:
    if _is_tensor(node):
        if not node.parents:
            return "input" if node.label else "constant"
        return f"{_op_name(node)}({', '.join(_short(p) for p in node.parents)})"
    return formula(node)


def _head(v: Event, digits: int) -> tuple[str, str]:
    """The node's name as an event shows it, and its S (a number, or an array's shape and norm)."""
    node = v.node
    if _is_tensor(node):
        return f"{node_name(node)} [{_op_name(node) if node.parents else 'leaf'}, shape {tuple(node.data.shape)}]", \
            quantity(v.grad, digits)
    head = f"{node.label} = {formula(node)}" if node.label and node.parents else node_name(node)
    return head, quantity(v.grad, digits)


def chain_lines(v: Event, digits: int = 5) -> list[str]:
    """The chain rule of one event, one line per parent: ``S(z1) += S(g) · z(z1, g) = 0.084 · 0.149 = 0.0125``.

    >>> from microgradx.examples import two_paths
    >>> o, w = two_paths(); print(chain_lines(next(step(o)))[0])
    S(cos(a)) += S(o) · z(cos(a), o) = 1 · 1 = 1;  S(cos(a)) = 1
    """
    num = lambda x: quantity(x, digits)  # noqa: E731
    me = node_name(v.node)
    lines = []
    for k, (p, c, t) in enumerate(zip(v.parents, v.contributions, v.totals, strict=True)):
        pn = node_name(p)
        if c is None:
            lines.append(f"{pn} takes no gradient")
        elif v.partials is not None:
            lines.append(f"S({pn}) += S({me}) · z({pn}, {me}) = {num(v.grad)} · {num(v.partials[k])} = {num(c)};  "
                         f"S({pn}) = {num(t)}")
        else:
            lines.append(f"S({pn}) += vjp of {_op_name(v.node)} for input {k + 1}: {num(c)};  S({pn}) = {num(t)}")
    return lines


def describe(ev: Event, digits: int = 5, total: int | None = None) -> str:
    """One backward event as text: the node, its S, and per parent z, S*z and the parent's running S.

    >>> from microgradx import Value, backprop
    >>> x = Value(3.0, label="x"); y = x * x; y.label = "y"
    >>> print(describe(next(backprop(y, trace=True))))
    step 1: y = x * x   S = 1
       -> x     z = 3   S*z = 3   S(x) so far = 3
       -> x     z = 3   S*z = 3   S(x) so far = 6
    """
    v = ev

    def num(x: Any) -> str:
        return quantity(x, digits)

    where = f"step {v.index + 1}" + (f" of {total}" if total else "")
    head, S = _head(v, digits)
    if not v.parents:
        return f"{where}: {node_name(v.node)} ({_formula(v.node)})   S = {S}   final gradient"
    lines = [f"{where}: {head}   S = {S}"]
    if v.partials is None:
        rows = [(node_name(p), "", f"contribution {num(c)}", f"S({node_name(p)}) so far = {num(t)}")
                for p, c, t in zip(v.parents, v.contributions, v.totals, strict=True)]
    else:
        rows = [(node_name(p), f"z = {num(z)}", f"S*z = {num(c)}", f"S({node_name(p)}) so far = {num(t)}")
                for p, z, c, t in zip(v.parents, v.partials, v.contributions, v.totals, strict=True)]
    w = [max(len(r[k]) for r in rows) for k in range(3)]
    for n, z, c, t in rows:
        middle = f"{z:<{w[1]}}   " if w[1] else ""
        lines.append(f"   -> {n:<{w[0]}}   {middle}{c:<{w[2]}}   {t}")
    return "\n".join(lines)


class Table(str):
    """A text table that prints as text and shows as an HTML table in Jupyter (``rows`` holds the cells)."""

    rows: list[tuple[str, ...]]

    def __new__(cls, rows: list[tuple[str, ...]], right: frozenset[int] = frozenset()) -> Table:
        widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
        lines = ["  ".join(r[c].rjust(widths[c]) if c in right else r[c].ljust(widths[c])
                           for c in range(len(r))).rstrip() for r in rows]
        self = super().__new__(cls, "\n".join(lines))
        self.rows = rows
        return self

    def __repr__(self) -> str:
        return str(self)

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(str(self))

    def _repr_html_(self) -> str:
        import html

        head = "".join(f"<th>{html.escape(c)}</th>" for c in self.rows[0])
        body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in self.rows[1:])
        return (f'<table class="microgradx-table" style="font-family:monospace"><thead><tr>{head}</tr></thead>'
                f"<tbody>{body}</tbody></table>")


def _apply(v: Event, S: dict, finished: set[int]) -> None:
    """Advance the running state of the pass by one event: the node is final, its parents' totals grow."""
    S[v.node] = v.grad
    finished.add(id(v.node))
    for p, t in zip(v.parents, v.totals, strict=True):
        if t is not None:
            S[p] = t


class Stepper:
    """The backward pass of ``out`` one event at a time; see ``step``."""

    def __init__(self, out: Any, seed: Any = None, digits: int = 5) -> None:
        self.out, self.seed, self.digits = out, _seed(out, seed), digits
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
        _apply(ev, self._S, self._finished)
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
        """How many nodes the backward pass visits (a Tensor that needs no gradient is skipped)."""
        return sum(1 for n in self._order if getattr(n, "requires_grad", True))

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

    def table(self) -> Table:
        """Every step so far as a table (prints as text, shows as HTML in Jupyter): node, S, and per parent z,
        S*z and the parent's running S (for a Tensor node: S and the contributions as shape and norm).

        >>> from microgradx.examples import two_paths
        >>> o, w = two_paths(); print(step(o).next().table())
        step  node  S(node)  parent          z  S*z  S(parent) so far
           1  o           1  cos(a)          1    1                 1
                             sin(a)          1    1                 1
        """
        def num(v: Any) -> str:
            return quantity(v, self.digits)

        rows = [("step", "node", "S(node)", "parent", "z", "S*z", "S(parent) so far")]
        for ev in self.events:
            v = ev
            head = (str(v.index + 1), node_name(v.node), num(v.grad))
            if not v.parents:
                rows.append((*head, f"({_formula(v.node)})", "", "", ""))
            zs = v.partials if v.partials is not None else ("vjp",) * len(v.parents)
            for k, (p, z, c, t) in enumerate(zip(v.parents, zs, v.contributions, v.totals, strict=True)):
                rows.append((*(head if k == 0 else ("", "", "")), node_name(p), z if isinstance(z, str) else num(z),
                             num(c), num(t)))
        return Table(rows, frozenset({0, 2, 4, 5, 6}))

    def states(self) -> Iterator[tuple[Event, dict[Any, Any], set[int]]]:
        """Every event of the whole pass with the state right after it ({node: S so far}, ids of finished
        nodes), computed on the side: the graph's ``.grad`` slots are not touched."""
        S: dict[Any, Any] = {}
        finished: set[int] = set()
        for ev in backprop(self.out, self.seed, accumulate=False, trace=True):
            v = ev
            _apply(v, S, finished)
            yield v, dict(S), set(finished)

    def draw(self, **options: Any) -> Any:
        """A drawing of the graph now: the current node and its edges highlighted, unreached grads blank."""
        options.setdefault("title", self._where())
        return _draw_state(self.out, self._S, self._finished, self.current, **options)

    # -- exporting --------------------------------------------------------------------------------------------

    def to_html(self, path: Any = None, **options: Any) -> Any:
        """The whole pass as one self-contained HTML page (inline SVG, CSS and script): forward values first,
        then next/back (buttons or arrow keys) through every event; clicking an input lists its paths.
        Returns the page (a str that Jupyter shows inline); with ``path`` also writes it there."""
        from .page import backprop_page

        page = backprop_page(self, **options)
        if path is not None:
            page.save(path)
        return page

    def to_latex(self) -> str:
        """The derivation as a LaTeX ``align*`` block: one line per edge, S(parent) += S(node) z(parent, node).

        >>> from microgradx.examples import two_paths
        >>> o, w = two_paths(); print(step(o).to_latex().splitlines()[1])
        S(\\mathrm{o}) &= 1 \\\\
        """
        from .page import latex_derivation

        return latex_derivation(self)

    def save_frames(self, folder: Any, fmt: str = "svg", **options: Any) -> list[Any]:
        """One drawing per event (``fmt`` svg or png) in ``folder``: frame k shows the graph after event k."""
        from .page import save_frames

        return save_frames(self, folder, fmt, **options)

    def save_gif(self, path: Any, *, seconds_per_frame: float = 1.0, **options: Any) -> Any:
        """An animated GIF of the pass, one frame per event (drawn by dot, assembled by Pillow)."""
        from .page import save_gif

        return save_gif(self, path, seconds_per_frame, **options)

    def save_pdf(self, path: Any, **options: Any) -> Any:
        """A handout: one PDF page per event, the drawing above the chain-rule lines (matplotlib)."""
        from .page import save_pdf

        return save_pdf(self, path, **options)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        # In a notebook: the step as text above the drawing of the graph now (text alone without a renderer).
        import html

        from .ops import MicrogradxError

        text = repr(self)
        try:
            svg = self.draw().svg()
        except MicrogradxError:
            return {"text/plain": text}
        return {"text/html": f"<pre>{html.escape(text)}</pre>{svg}", "text/plain": text}

    def _where(self) -> str:
        return where(self.out, len(self.events), self.total, self.done)

    def __repr__(self) -> str:
        if not self.events:
            return (f"<Stepper: {self._where()}; next(s) or s.next() processes {node_name(self.out)} "
                    f"with S = {quantity(self.seed, self.digits)}>")
        text = describe(self.events[-1], self.digits, self.total)
        tail = "done: every .grad now equals backward()'s" if self.done else "s.next(), s.back(), s.run(), s.table()"
        return f"<Stepper: {self._where()}\n{text}\n{tail}>"


def _seed(out: Any, seed: Any) -> Any:
    """S(out) at the start, as ``backward()`` sets it: 1 for a Value; ones of the output's dtype for a Tensor."""
    if not _is_tensor(out):
        return 1.0 if seed is None else seed
    import numpy as np

    from .ops import MicrogradxError

    if not getattr(out, "requires_grad", True):
        raise MicrogradxError(f"step: {node_name(out)} does not require a gradient, so there is no backward pass")
    if seed is None:
        if out.data.size != 1:
            raise MicrogradxError(f"step: {node_name(out)} has shape {out.data.shape}, not a scalar; pass a seed "
                                  "of that shape (step(out, seed=...)), as backward(seed) takes")
        return np.ones_like(out.data)
    s = np.asarray(seed, dtype=out.data.dtype)
    if s.shape != out.data.shape or not np.all(np.isfinite(s)):
        raise MicrogradxError(f"step: the seed must be a finite array of shape {out.data.shape} like "
                              f"{node_name(out)}, got shape {s.shape}")
    return s


def where(out: Any, taken: int, total: int, done: bool) -> str:
    """Where the pass is, as a drawing's title says it: ``backward of o: step 2 of 5``."""
    if not taken:
        return f"backward of {node_name(out)}: {total} steps, none taken yet"
    return f"backward of {node_name(out)}: {'done' if done else f'step {taken} of {total}'}"


def _draw_state(out: Any, S: dict[Any, Any], finished: set[int], current: Any, **options: Any) -> Any:
    from .render import draw

    partial = [n for n in S if id(n) not in finished]
    return draw(out, grads=S, partial=partial, current=current, **options)


def step(out: Any, seed: Any = None, digits: int = 5) -> Stepper:
    """Step through the backward pass of ``out``: ``next(s)`` or ``s.next()``, ``s.back()``, ``s.run()``.

    >>> from microgradx.examples import example3
    >>> ex = example3(); s = step(ex.J)
    >>> ev = next(s); ev.node is ex.J
    True
    >>> s.run().done, round(ex.w1.grad, 5), round(ex.w2.grad, 5)
    (True, 0.0251, 0.13757)
    """
    return Stepper(out, seed, digits)
