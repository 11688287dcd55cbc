"""Graphviz drawings of a graph: values with data and grad, ops, and edges labelled with their local derivatives.

``draw(out)`` returns a ``Drawing`` (DOT text in ``.source``; ``.save("g.svg")``; inline SVG in Jupyter). The
``dot`` program that renders it is the system Graphviz when installed, else the bundled ``graphviz-pure``.
"""

from __future__ import annotations

import html
import os
import shutil
import subprocess
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from pathlib import Path as FilePath
from typing import Any

from .graph import Path, topological_order
from .ops import MicrogradxError

__all__ = ["draw", "Drawing", "Theme", "THEMES", "RenderError", "Renderer", "find_renderer", "render",
           "display_values", "ENV_VAR"]

ENV_VAR = "MICROGRADX_DOT"
"""Which ``dot`` renders: ``system``, ``pure``, a path to a dot executable, or unset/``auto`` for the first found."""

FORMATS = {".svg": "svg", ".png": "png", ".pdf": "pdf", ".dot": "dot", ".gv": "dot"}

_INSTALL_HINT = ("install Graphviz so that `dot` is on PATH (Debian/Ubuntu: apt-get install graphviz; macOS: "
                 "brew install graphviz), or install the bundled renderer with `pip install graphviz-pure`")


class RenderError(MicrogradxError, RuntimeError):
    """No ``dot`` program could render a drawing, or the one found failed; the message says what to install."""


# ---------------------------------------------------------------------------------------------------------
# Finding and running dot
# ---------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Renderer:
    """A dot-compatible program: ``kind`` is ``system``, ``pure`` or ``path``; ``exe`` is the executable."""

    kind: str
    exe: str

    @property
    def formats(self) -> frozenset[str]:
        """The output formats this renderer can write (graphviz-pure has no PDF)."""
        base = {"svg", "png", "dot"}
        return frozenset(base if self.kind == "pure" else base | {"pdf"})


def _pure_exe() -> str | None:
    """The ``graphviz-pure`` binary: it ships no Python code, only a script-directory executable in its RECORD."""
    import importlib.metadata as md
    import sysconfig

    try:
        dist = md.distribution("graphviz-pure")
    except md.PackageNotFoundError:
        dist = None
    if dist is not None:
        for f in dist.files or ():
            if f.name in ("graphviz-pure", "graphviz-pure.exe"):
                exe = FilePath(str(dist.locate_file(f))).resolve()
                if exe.is_file() and os.access(exe, os.X_OK):
                    return str(exe)
    for d in (sysconfig.get_path("scripts"),):
        for name in ("graphviz-pure", "graphviz-pure.exe"):
            exe = FilePath(d) / name
            if exe.is_file() and os.access(exe, os.X_OK):
                return str(exe)
    return shutil.which("graphviz-pure")


def find_renderer() -> Renderer:
    """The dot program to use, chosen by ``MICROGRADX_DOT`` (``system``, ``pure``, a path) or found automatically.

    Raises ``RenderError`` naming both ways to get one when nothing is found.

    >>> find_renderer().kind in {"system", "pure", "path"}
    True
    """
    choice = os.environ.get(ENV_VAR, "").strip()
    if choice in ("", "auto"):
        system = shutil.which("dot")
        if system:
            return Renderer("system", system)
        pure = _pure_exe()
        if pure:
            return Renderer("pure", pure)
        raise RenderError(f"cannot render: no Graphviz `dot` on PATH and graphviz-pure is not installed; "
                          f"{_INSTALL_HINT}. Drawings can still be saved as .dot text.")
    if choice == "system":
        system = shutil.which("dot")
        if not system:
            raise RenderError(f"{ENV_VAR}=system but no `dot` is on PATH; {_INSTALL_HINT}, "
                              f"or set {ENV_VAR}=pure")
        return Renderer("system", system)
    if choice == "pure":
        pure = _pure_exe()
        if not pure:
            raise RenderError(f"{ENV_VAR}=pure but graphviz-pure is not installed (pip install graphviz-pure); "
                              f"or set {ENV_VAR}=system to use Graphviz's own `dot`")
        return Renderer("pure", pure)
    exe = shutil.which(choice) or (choice if os.path.isfile(choice) and os.access(choice, os.X_OK) else None)
    if not exe:
        raise RenderError(f"{ENV_VAR}={choice!r} is not an executable dot program; set it to `system`, `pure` "
                          f"or the path of a dot executable; {_INSTALL_HINT}")
    return Renderer("path", exe)


def render(source: str, fmt: str = "svg", *, timeout: float = 60.0) -> bytes:
    """Run dot on DOT ``source`` and return the ``fmt`` output (svg, png, pdf) as bytes.

    >>> render("digraph { a -> b }", "svg").lstrip().startswith(b"<?xml")
    True
    """
    if fmt == "dot":
        return source.encode()
    renderer = find_renderer()
    if fmt not in renderer.formats:
        raise RenderError(f"cannot write {fmt.upper()} with graphviz-pure ({renderer.exe}): PDF needs the system "
                          f"Graphviz `dot` (apt-get install graphviz / brew install graphviz, then {ENV_VAR}=system "
                          "or unset); save as .svg or .png instead")
    try:
        done = subprocess.run([renderer.exe, f"-T{fmt}"], input=source.encode(), capture_output=True,
                              timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise RenderError(f"{renderer.exe} took more than {timeout:g} s to render the {fmt} drawing; "
                          "draw fewer nodes (max_nodes=..., collapse=...)") from None
    except OSError as e:
        raise RenderError(f"cannot run {renderer.exe} ({e}); {_INSTALL_HINT}") from None
    if done.returncode != 0 or not done.stdout:
        err = done.stderr.decode(errors="replace").strip()
        raise RenderError(f"{renderer.exe} -T{fmt} failed (exit {done.returncode}): {err or 'no output'}")
    return done.stdout


# ---------------------------------------------------------------------------------------------------------
# Themes
# ---------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Theme:
    """Fonts, sizes and colours of a drawing; ``THEMES`` holds ``default``, ``slide`` and ``compact``."""

    name: str
    font: str = "Helvetica"
    fontsize: float = 12
    edge_fontsize: float = 10
    penwidth: float = 1.2
    color: str = "#333333"
    edge_label_color: str = "#1f4e99"
    op_fill: str = "#e8e8e8"
    value_fill: str = "#ffffff"
    leaf_fill: str = "#eef5ff"
    highlight: str = "#d62728"
    highlight_fill: str = "#ffe9e6"
    current_fill: str = "#fff2a8"
    highlight_penwidth: float = 3.0
    nodesep: float = 0.3
    ranksep: float = 0.45
    cellpadding: int = 3
    op_shape: str = "circle"


THEMES: dict[str, Theme] = {
    "default": Theme("default"),
    # Large, high-contrast: readable from the back of a lecture hall and on a projector that washes out colour.
    "slide": Theme("slide", fontsize=22, edge_fontsize=18, penwidth=2.2, color="#000000",
                   edge_label_color="#000000", op_fill="#d9d9d9", leaf_fill="#ffffff", highlight="#c00000",
                   highlight_fill="#ffd6d6", current_fill="#ffe14d", highlight_penwidth=5.0, nodesep=0.5,
                   ranksep=0.8, cellpadding=6),
    "compact": Theme("compact", fontsize=8, edge_fontsize=7, penwidth=0.8, nodesep=0.12, ranksep=0.25,
                     cellpadding=1, op_shape="plaintext"),
}


# ---------------------------------------------------------------------------------------------------------
# The drawing
# ---------------------------------------------------------------------------------------------------------

class Drawing:
    """A drawn graph: ``source`` is its DOT text; ``save`` writes svg/png/pdf/dot; Jupyter shows it as SVG."""

    def __init__(self, source: str, *, nodes: int = 0, edges: int = 0) -> None:
        self.source = source
        self.nodes, self.edges = nodes, edges

    def pipe(self, fmt: str = "svg", *, timeout: float = 60.0) -> bytes:
        """The drawing rendered to ``fmt`` (svg, png, pdf or dot) as bytes."""
        return render(self.source, fmt, timeout=timeout)

    def svg(self) -> str:
        """The drawing as SVG text (needs a dot renderer)."""
        return self.pipe("svg").decode()

    def save(self, path: str | os.PathLike[str], *, timeout: float = 60.0) -> FilePath:
        """Write the drawing; the format comes from the extension (.svg, .png, .pdf, .dot/.gv). Returns the path.

        >>> import tempfile, os
        >>> from microgradx.examples import two_paths
        >>> o, w = two_paths()
        >>> p = draw(o).save(os.path.join(tempfile.mkdtemp(), "o.dot")); p.read_text().startswith("digraph")
        True
        """
        target = FilePath(path)
        fmt = FORMATS.get(target.suffix.lower())
        if fmt is None:
            raise RenderError(f"cannot save a drawing as {target.name!r}: use one of "
                              f"{', '.join(sorted(FORMATS))}")
        data = self.pipe(fmt, timeout=timeout)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        return target

    def to_html(self, path: str | os.PathLike[str] | None = None, title: str = "microgradx drawing") -> Any:
        """The drawing as one self-contained HTML page (its SVG inline); with ``path`` also written there."""
        from .page import drawing_page

        page = drawing_page(self, title)
        if path is not None:
            page.save(path)
        return page

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        # NOTE: Jupyter must never show a traceback for a drawing: without a renderer it shows the DOT text.
        try:
            return {"image/svg+xml": self.svg(), "text/plain": repr(self)}
        except RenderError as e:
            return {"text/plain": f"{self.source}\n// not rendered: {e}"}

    def __repr__(self) -> str:
        return f"<Drawing: {self.nodes} nodes, {self.edges} edges; .source, .save('graph.svg')>"


def _formatter(fmt: str | Callable[[float], str]) -> Callable[[Any], str]:
    if callable(fmt):
        return lambda x: fmt(x) if isinstance(x, float) else str(x)
    spec = fmt

    def number(x: Any) -> str:
        if isinstance(x, float):
            s = format(x, spec)
            return "0" if s in ("-0", "-0.0") else s
        return str(x)
    return number


def _prefix_group(node: Any) -> tuple[str, ...] | None:
    label = node.label
    if not label or "." not in label:
        return None
    parts = label.split(".")[:-1]
    return tuple(".".join(parts[:k + 1]) for k in range(len(parts)))


def _groups(order: list, group: Callable[[Any], tuple[str, ...] | None]) -> dict[int, tuple[str, ...]]:
    """Each node's nested groups: from its label, else inherited from a grouped leaf parent (a weight) or, when
    parents disagree, from the group that appeared last (the later layer)."""
    found: dict[int, tuple[str, ...]] = {}
    first_seen: dict[tuple[str, ...], int] = {}
    for i, node in enumerate(order):
        g = group(node)
        # A labelled node outside every group (the loss) stays outside; unlabelled ones go with their operands.
        if g is None and node.parents and not node.label:
            leafy = [found[id(p)] for p in node.parents if not p.parents and id(p) in found]
            if leafy:
                g = leafy[0]
            else:
                cands = [found[id(p)] for p in node.parents if id(p) in found]
                if cands:
                    g = max(cands, key=lambda c: first_seen[c])
        if g:
            found[id(node)] = g
            first_seen.setdefault(g, i)
    return found


def _natural(name: str) -> list:
    """Sort key that puts L1.n2 before L1.n10."""
    import re

    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def _highlighted(highlight: Any) -> tuple[set[int], set[tuple[int, int, int]]]:
    if highlight is None:
        return set(), set()
    items = [highlight] if isinstance(highlight, Path) else list(highlight)
    nodes: set[int] = set()
    edges: set[tuple[int, int, int]] = set()  # (parent id, child id, parent slot)
    for item in items:
        if isinstance(item, Path):
            nodes.update(id(n) for n in item.nodes)
            pairs = list(zip(item.nodes[:-1], item.nodes[1:]))
            for step, (a, b) in enumerate(pairs):
                # A Path built without slots highlights every edge between the two nodes.
                slots = [item.slots[step]] if item.slots else [k for k, p in enumerate(b.parents) if p is a]
                edges.update((id(a), id(b), k) for k in slots)
        else:
            nodes.add(id(item))
    return nodes, edges


def _rankdir(direction: str) -> str:
    d = direction.upper().replace("-", "").replace(" ", "")
    table = {"LR": "LR", "LEFTRIGHT": "LR", "TB": "TB", "TD": "TB", "TOPDOWN": "TB", "BT": "BT", "RL": "RL"}
    if d not in table:
        raise ValueError(f"draw: direction must be 'LR' (left-right) or 'TB' (top-down), got {direction!r}")
    return table[d]


def _attrs(**kw: Any) -> str:
    parts = []
    for k, v in kw.items():
        if v is None:
            continue
        if isinstance(v, _Html):
            parts.append(f"{k}=<{v.text}>")
        else:
            s = str(v).replace("\\", "\\\\").replace('"', '\\"')
            parts.append(f'{k}="{s}"')
    return "[" + " ".join(parts) + "]"


@dataclass(frozen=True)
class _Html:
    text: str


def _esc(s: str) -> str:
    return html.escape(s, quote=True)


def _select(out: Any, order: list, group: Any, collapse: int | None, max_nodes: int
            ) -> tuple[dict[int, tuple[str, ...]], dict[int, str], set[int]]:
    """Which nodes are drawn: returns each node's groups, the collapsed box of each folded node, and the
    nodes left out under ``max_nodes`` (those farthest from the output)."""
    group_fn = _prefix_group if group == "prefix" else group or None
    if group is None and len(order) > max_nodes and any(_prefix_group(n) for n in order):
        group_fn = _prefix_group
    groups = _groups(order, group_fn) if group_fn else {}
    depth = max((len(g) for g in groups.values()), default=0)

    def boxes_at(level: int) -> dict[int, str]:
        return {k: g[level - 1] for k, g in groups.items() if len(g) >= level}

    box_of: dict[int, str] = {}
    if collapse is not None:
        if collapse < 1:
            raise ValueError(f"draw: collapse must be a group level >= 1, got {collapse!r}")
        box_of = boxes_at(min(collapse, depth)) if depth else {}
    elif len(order) > max_nodes and depth:
        # The finest grouping that fits: neurons before layers.
        for level in range(depth, 0, -1):
            box_of = boxes_at(level)
            if len(order) - len(box_of) + len(set(box_of.values())) <= max_nodes:
                break

    visible = [n for n in order if id(n) not in box_of]
    n_boxes = len(set(box_of.values()))
    if len(visible) + n_boxes <= max_nodes:
        return groups, box_of, set()
    # Keep the nodes nearest the output (breadth first from out); a summary node stands for the rest.
    dist = {id(out): 0}
    queue = [out]
    for node in queue:
        for p in node.parents:
            if id(p) not in dist:
                dist[id(p)] = dist[id(node)] + 1
                queue.append(p)
    position = {id(n): i for i, n in enumerate(order)}
    ranked = sorted(visible, key=lambda n: (dist[id(n)], -position[id(n)]))
    return groups, box_of, {id(n) for n in ranked[max(max_nodes - n_boxes, 1):]}


def draw(out: Any, *, grads: bool | Mapping[Any, Any] = True, derivatives: bool = True,
         contributions: bool | None = None, direction: str = "LR", highlight: Any = None,
         theme: str | Theme = "default", fmt: str | Callable[[float], str] = ".4g",
         group: str | Callable[[Any], tuple[str, ...] | None] | bool | None = None, collapse: int | None = None,
         max_nodes: int = 150, partial: Collection[Any] = (), current: Any = None,
         title: str | None = None) -> Drawing:
    """Draw the graph behind ``out``: value nodes (label, data, grad), op nodes, edges labelled z(i, j).

    * ``grads``: show each node's ``.grad`` (False hides them; a mapping {node: S} shows only those, blank
      elsewhere; nodes in ``partial`` are marked as running totals). ``derivatives``: label edges with z(i, j).
      ``contributions``: also show S(j) * z(i, j) (default: when ``out`` has been backpropagated).
    * ``direction``: ``"LR"`` (left to right) or ``"TB"`` (top down). ``theme``: ``default``, ``slide``,
      ``compact`` or a ``Theme``. ``fmt``: a format spec (``".4g"``) or a function for the numbers.
    * ``highlight``: a ``Path`` (from ``microgradx.paths``), a list of them, or a collection of nodes.
      ``current``: one node to emphasise (the stepper's).
    * Big graphs: ``group="prefix"`` clusters nodes by label prefix (``L1.n0.w0`` is in ``L1`` and ``L1.n0``)
      or by a function node -> nested group names (unlabelled nodes join their operands' group);
      ``collapse=k`` draws each level-k group as one box. Above ``max_nodes`` value nodes, label prefixes are
      grouped and collapsed automatically (``group=False`` prevents it); if that is not enough only the
      ``max_nodes`` nodes nearest the output are drawn, with a summary node for the rest.

    >>> from microgradx import paths
    >>> from microgradx.examples import two_paths
    >>> o, w = two_paths(); o.backward()
    >>> d = draw(o, highlight=paths(o, w)[0])
    >>> d.nodes, d.edges
    (9, 9)
    """
    if isinstance(theme, str) and theme not in THEMES:
        raise ValueError(f"draw: unknown theme {theme!r}; choose one of {', '.join(THEMES)}")
    th = THEMES[theme] if isinstance(theme, str) else theme
    num = _formatter(fmt)
    rankdir = _rankdir(direction)
    order = topological_order(out)
    index = {id(n): i for i, n in enumerate(order)}
    grad_map = grads if isinstance(grads, Mapping) else None
    partial_ids = {id(n) for n in partial}
    show_grads = bool(grads) or grad_map is not None
    if contributions is None:
        contributions = grad_map is not None or (isinstance(out.grad, float) and out.grad != 0.0)
    hl_nodes, hl_edges = _highlighted(highlight)

    def grad_of(node: Any) -> Any:
        if grad_map is None:
            return node.grad
        return grad_map.get(node)

    groups, box_of, hidden = _select(out, order, group, collapse, max_nodes)
    visible = [n for n in order if id(n) not in box_of and id(n) not in hidden]

    lines = [
        "digraph microgradx {",
        f"  graph {_attrs(rankdir=rankdir, nodesep=th.nodesep, ranksep=th.ranksep, bgcolor='white', fontname=th.font, fontsize=th.fontsize, label=_Html(_esc(title)) if title else None, labelloc='t')};",  # noqa: E501
        f"  node {_attrs(fontname=th.font, fontsize=th.fontsize, color=th.color, fontcolor=th.color, penwidth=th.penwidth)};",  # noqa: E501
        f"  edge {_attrs(fontname=th.font, fontsize=th.edge_fontsize, color=th.color, fontcolor=th.edge_label_color, penwidth=th.penwidth, arrowsize=0.7)};",  # noqa: E501
    ]
    n_nodes = n_edges = 0
    body: dict[tuple[str, ...], list[str]] = {}

    def emit(where: tuple[str, ...], line: str) -> None:
        body.setdefault(where, []).append(line)

    # -- value and op nodes -----------------------------------------------------------------------------------
    for node in visible:
        i = index[id(node)]
        where = groups.get(id(node), ())
        hot = id(node) in hl_nodes
        is_current = current is not None and node is current
        cells = []
        if node.label:
            cells.append(f"<td><b>{_esc(node.label)}</b></td>")
        cells.append(f"<td>data {_esc(num(node.data))}</td>")
        if show_grads:
            g = grad_of(node)
            if g is None:
                text = "grad &#160;&#160;&#160;&#160;"
            else:
                text = f"grad {_esc(num(g))}" + (" <i>so far</i>" if id(node) in partial_ids else "")
            cells.append(f"<td>{text}</td>")
        fill = th.current_fill if is_current else th.highlight_fill if hot else (
            th.leaf_fill if not node.parents else th.value_fill)
        border = th.highlight if (hot or is_current) else th.color
        width = th.highlight_penwidth if (hot or is_current) else th.penwidth
        table = (f'<table border="{max(round(width), 1)}" cellborder="0" cellspacing="0" '
                 f'cellpadding="{th.cellpadding}" bgcolor="{fill}" color="{border}">'
                 f"<tr>{''.join(cells)}</tr></table>")
        emit(where, f"v{i} {_attrs(shape='plain', label=_Html(table))};")
        n_nodes += 1
        if node.parents:
            text = node.op.display(node.arg)
            # A circle fits a symbol; a word such as "sigmoid" would blow it up, so words get an ellipse.
            shape = th.op_shape if len(text) <= 3 or th.op_shape == "plaintext" else "ellipse"
            emit(where, f"o{i} {_attrs(shape=shape, label=text, style='filled', fillcolor=th.highlight_fill if hot else th.op_fill, color=th.highlight if hot or is_current else None, penwidth=width, margin=0.02, width=0.3, height=0.3, fixedsize='false')};")  # noqa: E501
            emit(where, f"o{i} -> v{i} {_attrs(color=th.highlight if hot or is_current else None, penwidth=width if hot or is_current else None)};")  # noqa: E501
            n_nodes += 1
            n_edges += 1

    # -- group boxes (collapsed) -------------------------------------------------------------------------------
    members: dict[str, list] = {}
    for n in order:
        if id(n) in box_of:
            members.setdefault(box_of[id(n)], []).append(n)
    box_ids = {name: f"g{k}" for k, name in enumerate(sorted(members, key=_natural))}
    # A box's outputs are its members used outside it (or the root): one output is shown with its numbers.
    used_outside = {id(p) for n in order for p in n.parents if box_of.get(id(p)) != box_of.get(id(n))}
    for name, gid in box_ids.items():
        inside = members[name]
        params = sum(1 for n in inside if not n.parents and n.label)
        outs = [n for n in inside if id(n) in used_outside or n is out]
        hot = any(id(n) in hl_nodes for n in inside)
        lines_ = [f"<tr><td><b>{_esc(name)}</b></td></tr>",
                  f"<tr><td>{len(inside)} nodes, {params} params</td></tr>"]
        if len(outs) == 1:
            g = grad_of(outs[0]) if show_grads else None
            lines_.append(f"<tr><td>out {_esc(num(outs[0].data))}"
                          + (f", grad {_esc(num(g))}" if g is not None else "") + "</td></tr>")
        last = inside[-1]
        table = (f'<table border="1" cellborder="0" cellspacing="0" cellpadding="{th.cellpadding}" '
                 f'bgcolor="{th.highlight_fill if hot else th.op_fill}" '
                 f'color="{th.highlight if hot else th.color}">{"".join(lines_)}</table>')
        where = tuple(g for g in groups.get(id(last), ()) if g != name and name.startswith(g + "."))
        emit(where, f"{gid} {_attrs(shape='plain', label=_Html(table))};")
        n_nodes += 1

    # -- edges --------------------------------------------------------------------------------------------------
    seen_box_edges: set[tuple[str, str]] = set()
    summary_targets: list[str] = []
    for node in order:
        nid = id(node)
        if nid in hidden:
            continue
        i = index[nid]
        for k, (p, z) in enumerate(zip(node.parents, node.partials, strict=True)):
            pid = id(p)
            if pid in hidden:
                target = f"o{i}" if nid not in box_of else box_ids[box_of[nid]]
                if target not in summary_targets:
                    summary_targets.append(target)
                continue
            src = box_ids[box_of[pid]] if pid in box_of else f"v{index[pid]}"
            if nid in box_of or pid in box_of:
                dst = box_ids[box_of[nid]] if nid in box_of else f"o{i}"
                if src == dst or (src, dst) in seen_box_edges:
                    continue
                seen_box_edges.add((src, dst))
                emit((), f"{src} -> {dst};")
                n_edges += 1
                continue
            label_lines = []
            if derivatives:
                label_lines.append(f"z = {_esc(num(z))}")
            s = grad_of(node)
            if contributions and show_grads and s is not None and nid not in partial_ids:
                label_lines.append(f"S*z = {_esc(num(s * z))}")
            hot = (pid, nid, k) in hl_edges or (nid in hl_nodes and pid in hl_nodes and not hl_edges)
            hot = hot or (current is not None and node is current)
            emit((), f"{src} -> o{i} {_attrs(label=_Html('<br/>'.join(label_lines)) if label_lines else None, color=th.highlight if hot else None, fontcolor=th.highlight if hot else None, penwidth=th.highlight_penwidth if hot else None, tailport=None, headport=None, id=f'e{i}_{k}')};")  # noqa: E501
            n_edges += 1
    if hidden:
        emit((), f"more {_attrs(shape='note', style='dashed', label=f'{len(hidden)} more nodes not drawn (max_nodes={max_nodes})')};")  # noqa: E501
        n_nodes += 1
        for t in summary_targets:
            emit((), f"more -> {t} {_attrs(style='dashed')};")
            n_edges += 1

    # -- nested clusters -----------------------------------------------------------------------------------------
    cluster_ids: dict[tuple[str, ...], str] = {}

    def write(where: tuple[str, ...], indent: str) -> None:
        for line in body.get(where, []):
            lines.append(indent + line)
        # Child clusters in order of first appearance (dict.fromkeys keeps insertion order).
        children = dict.fromkeys(w[:len(where) + 1] for w in body if len(w) > len(where) and w[:len(where)] == where)
        for child in children:
            cid = cluster_ids.setdefault(child, f"cluster_{len(cluster_ids)}")
            lines.append(f"{indent}subgraph {cid} {{")
            lines.append(f"{indent}  graph {_attrs(label=child[-1], style='rounded,dashed', color='#999999', fontcolor='#555555')};")  # noqa: E501
            write(child, indent + "  ")
            lines.append(f"{indent}}}")

    write((), "  ")
    lines.append("}")
    return Drawing("\n".join(lines) + "\n", nodes=n_nodes, edges=n_edges)


def _value_mimebundle(self: Any, include: Any = None, exclude: Any = None) -> dict[str, str]:
    bundle = draw(self)._repr_mimebundle_(include, exclude)
    bundle["text/plain"] = repr(self)
    return bundle


def display_values(enable: bool = True) -> None:
    """Opt in (or out) to Jupyter showing every ``Value`` as a drawing of its graph.

    >>> display_values(True); display_values(False)
    """
    from .value import Value

    if enable:
        Value._repr_mimebundle_ = _value_mimebundle  # type: ignore[attr-defined]
    elif "_repr_mimebundle_" in Value.__dict__:
        del Value._repr_mimebundle_  # type: ignore[attr-defined]

