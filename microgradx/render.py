"""Graphviz drawings of a graph: values with data and grad, ops, and edges labelled with their local derivatives.

``draw(out)`` returns a ``Drawing``, a ``graphviz.Digraph``: customise it with the ``graphviz`` package's own API
(``d.attr(size=...)``, ``d.node(...)``), render it with ``.pipe()``/``.render()``/``.save("g.png")``, or let
Jupyter show it. The ``dot`` program behind those calls is the system Graphviz when installed, else the bundled
``graphviz-pure``. Scalar (``Value``) and ``Tensor`` graphs are both drawn.
"""

from __future__ import annotations

import html
import math
import os
import re
import shutil
import threading
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path as FilePath
from typing import Any

import graphviz

from .graph import Path, backprop, run, topological_order
from .ops import MicrogradxError
from .text import node_name, op_label

__all__ = ["draw", "Drawing", "Theme", "THEMES", "RenderError", "Renderer", "find_renderer", "render",
           "display_values", "nth_path", "path_nodes", "ENV_VAR", "FONT"]

ENV_VAR = "MICROGRADX_DOT"
"""Which ``dot`` renders: ``system``, ``pure``, a path to a dot executable, or unset/``auto`` for the first found."""

FONT = "DejaVu Sans"
"""The font every drawing names: free, installed with most Linux systems and matplotlib, and known by name to
both Graphviz and graphviz-pure, so boxes are sized with the widths a browser or rsvg will draw."""

FORMATS = {".svg": "svg", ".png": "png", ".pdf": "pdf", ".dot": "dot", ".gv": "dot"}

_INSTALL_HINT = ("install Graphviz so that `dot` is on PATH (Debian/Ubuntu: apt-get install graphviz; macOS: "
                 "brew install graphviz), or install the bundled renderer with `pip install graphviz-pure`")


class RenderError(MicrogradxError, RuntimeError):
    """No ``dot`` program could render a drawing, or the one found failed; the message says what to install."""


# ---------------------------------------------------------------------------------------------------------
# Which dot: the graphviz package runs it; we only choose the executable
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
    for name in ("graphviz-pure", "graphviz-pure.exe"):
        exe = FilePath(sysconfig.get_path("scripts")) / name
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


_DOT_LOCK = threading.RLock()


@contextmanager
def _dot_program(fmt: str) -> Iterator[Renderer]:
    """Point the graphviz package at the chosen dot for one call, and turn its errors into ``RenderError``.

    graphviz-pure takes dot's command line, so the package runs it exactly as it runs Graphviz's ``dot``.
    """
    from graphviz.backend import dot_command

    renderer = find_renderer()
    if fmt not in renderer.formats:
        raise RenderError(f"cannot write {fmt.upper()} with graphviz-pure ({renderer.exe}): PDF needs the system "
                          f"Graphviz `dot` (apt-get install graphviz / brew install graphviz, then {ENV_VAR}=system "
                          "or unset); save as .svg or .png instead")
    with _DOT_LOCK:
        saved = dot_command.DOT_BINARY
        dot_command.DOT_BINARY = FilePath(renderer.exe)
        try:
            yield renderer
        except graphviz.ExecutableNotFound:
            raise RenderError(f"cannot run {renderer.exe}; {_INSTALL_HINT}") from None
        except graphviz.CalledProcessError as e:
            err = (e.stderr or b"").decode(errors="replace") if isinstance(e.stderr, bytes) else str(e.stderr or "")
            raise RenderError(f"{renderer.exe} -T{fmt} failed (exit {e.returncode}): "
                              f"{err.strip() or 'no output'}") from None
        finally:
            dot_command.DOT_BINARY = saved


def render(source: str, fmt: str = "svg") -> bytes:
    """Run dot on DOT ``source`` and return the ``fmt`` output (svg, png, pdf) as bytes.

    >>> render("digraph { a -> b }", "svg").lstrip().startswith(b"<?xml")
    True
    """
    if fmt == "dot":
        return source.encode()
    with _dot_program(fmt):
        return graphviz.pipe("dot", fmt, source.encode(), quiet=True)


# ---------------------------------------------------------------------------------------------------------
# Themes
# ---------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Theme:
    """Fonts, sizes and colours of a drawing; ``THEMES`` holds ``default``, ``slide`` and ``compact``."""

    name: str
    font: str = FONT
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
    # Sized so that a 12-node chain cut into rows for a 16:9 frame shows edge labels over 24 px tall at 1080p.
    "slide": Theme("slide", fontsize=26, edge_fontsize=26, penwidth=2.2, color="#000000",
                   edge_label_color="#000000", op_fill="#d9d9d9", leaf_fill="#ffffff", highlight="#c00000",
                   highlight_fill="#ffd6d6", current_fill="#ffe14d", highlight_penwidth=5.0, nodesep=0.2,
                   ranksep=0.3, cellpadding=6),
    "compact": Theme("compact", fontsize=8, edge_fontsize=7, penwidth=0.8, nodesep=0.12, ranksep=0.25,
                     cellpadding=1, op_shape="plaintext"),
}


# ---------------------------------------------------------------------------------------------------------
# Slide sizes
# ---------------------------------------------------------------------------------------------------------

FAR_USE = 4
"""A use more than this many ranks (two ops) beyond a node's nearest use reads a dashed copy of its box."""

SLIDE_WIDTH = 1920
"""Pixel width of a frame given only as an aspect ratio (``size="16:9"`` is 1920 x 1080)."""


def frame_pixels(size: str | tuple[int, int]) -> tuple[int, int]:
    """The frame a ``size`` asks for, in pixels: ``"16:9"`` (1920 wide), ``"1280x720"`` or ``(1280, 720)``.

    >>> frame_pixels("16:9"), frame_pixels("4:3"), frame_pixels("1280x720")
    ((1920, 1080), (1920, 1440), (1280, 720))
    """
    if isinstance(size, tuple):
        w, h = size
    else:
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([:x×])\s*(\d+(?:\.\d+)?)\s*", str(size))
        if not m:
            raise ValueError(f"draw: size must be an aspect ratio such as '16:9' or pixels such as '1920x1080', "
                             f"got {size!r}")
        a, sep, b = float(m.group(1)), m.group(2), float(m.group(3))
        if sep == ":":
            w, h = SLIDE_WIDTH, SLIDE_WIDTH * b / a if a > 0 else 0
        else:
            w, h = a, b
    if not (16 <= w <= 20000 and 16 <= h <= 20000):
        raise ValueError(f"draw: size {size!r} gives a {w:g}x{h:g} pixel frame; each side must be 16 to 20000")
    return int(round(w)), int(round(h))


class OutputPathError(MicrogradxError, ValueError):
    """A drawing cannot be saved where asked: the folder is missing, or a file stands where a folder should be."""


def check_output_path(path: str | os.PathLike[str]) -> FilePath:
    """The path, once its folder is known to exist; folders are never created behind the user's back.

    >>> check_output_path("/no/such/folder/g.svg")
    Traceback (most recent call last):
    ...
    microgradx.render.OutputPathError: cannot write /no/such/folder/g.svg: the folder /no/such/folder does not ...
    """
    target = FilePath(path)
    parent = target.parent
    for folder in (parent, *parent.parents):
        if folder.exists() and not folder.is_dir():
            raise OutputPathError(f"cannot write {target}: {folder} is a file, not a folder")
    if not parent.is_dir():
        raise OutputPathError(f"cannot write {target}: the folder {parent} does not exist (create it first)")
    if target.is_dir():
        raise OutputPathError(f"cannot write {target}: it is a folder")
    return target


# ---------------------------------------------------------------------------------------------------------
# The drawing
# ---------------------------------------------------------------------------------------------------------

class Drawing(graphviz.Digraph):
    """A drawn graph: a ``graphviz.Digraph`` (``.source``, ``.attr``, ``.node``, ``.pipe``, ``.render``, Jupyter
    display) whose rendering uses the system ``dot`` or graphviz-pure; ``save`` writes svg/png/pdf/dot.

    ``node_id(node)`` is the DOT name of a graph node's box, which is also the ``id`` and the ``<title>`` of its
    ``<g class="node">`` element in the SVG.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("format", "svg")
        super().__init__(*args, **kwargs)
        self.nodes = self.edges = 0
        self.frame: tuple[int, int] | None = None
        self._ids: dict[int, list[str]] = {}
        self._op_ids: dict[int, str] = {}

    def node_id(self, node: Any) -> str:
        """The id of the box that draws ``node`` (its first copy, for a leaf drawn once per use)."""
        try:
            return self._ids[id(node)][0]
        except KeyError:
            raise MicrogradxError(f"draw: {node_name(node)} is not drawn on its own (it is folded into a group box "
                                  "or beyond max_nodes)") from None

    def node_ids(self, node: Any) -> list[str]:
        """Every box id that draws ``node``: one, or one per use for a shared leaf drawn at each use."""
        return list(self._ids.get(id(node), ()))

    def op_id(self, node: Any) -> str | None:
        """The id of the op circle that made ``node`` (None for a leaf or a node not drawn on its own)."""
        return self._op_ids.get(id(node))

    def edge_id(self, node: Any, k: int) -> str | None:
        """The id of the edge from ``node``'s k-th parent into its op (None if that edge is not drawn on its own).

        The edge from the op to ``node`` itself is ``'r' + op_id(node)[1:]``.
        """
        op = self._op_ids.get(id(node))
        return f"e{op[1:]}_{k}" if op is not None and 0 <= k < len(node.parents) else None

    def pipe(self, format: str | None = None, *args: Any, **kwargs: Any) -> Any:  # noqa: A002 (graphviz's name)
        """The drawing rendered to ``format`` (svg, png, pdf or dot) as bytes, like ``graphviz.Digraph.pipe``."""
        fmt = format or self.format
        if fmt == "dot":
            return self.source.encode()
        kwargs.setdefault("quiet", True)
        with _dot_program(fmt) as renderer:
            if renderer.kind == "pure" and fmt == "png" and f'fontname="{FONT}"' in self.source:
                # graphviz-pure knows DejaVu Sans's widths but draws pixels only with its bundled fonts, where the
                # name falls back to a serif; its own sans, Arimo, is laid out and drawn with the same metrics.
                data = self.source.replace(f'fontname="{FONT}"', "fontname=Arimo").encode()
                return graphviz.pipe("dot", fmt, data, quiet=True)
            return super().pipe(fmt, *args, **kwargs)

    def render(self, *args: Any, **kwargs: Any) -> str:
        """Write the DOT source and its rendering to files, like ``graphviz.Digraph.render``; returns the path."""
        fmt = kwargs.get("format") or self.format
        kwargs.setdefault("quiet", True)
        with _dot_program(fmt):
            return super().render(*args, **kwargs)

    def svg(self) -> str:
        """The drawing as SVG text (needs a dot renderer)."""
        return self.pipe("svg").decode()

    def save(self, path: str | os.PathLike[str] | None = None, directory: str | os.PathLike[str] | None = None,
             skip_existing: bool | None = False) -> Any:
        """Write the drawing; the format comes from the extension (.svg, .png, .pdf, .dot/.gv). Returns the path.

        The folder must exist: a missing folder or a file in its place is an ``OutputPathError``.

        >>> import tempfile, os
        >>> from microgradx.examples import two_paths
        >>> o, w = two_paths()
        >>> p = draw(o).save(os.path.join(tempfile.mkdtemp(), "o.dot")); p.read_text().startswith("digraph")
        True
        """
        if path is None or directory is not None or skip_existing is not False:
            # graphviz.Digraph.render writes the DOT source through save(filename, directory=, skip_existing=)
            return super().save(path, directory=directory, skip_existing=skip_existing)
        target = FilePath(path)
        fmt = FORMATS.get(target.suffix.lower())
        if fmt is None:
            raise RenderError(f"cannot save a drawing as {target.name!r}: use one of "
                              f"{', '.join(sorted(FORMATS))}")
        target = check_output_path(target)
        target.write_bytes(self.pipe(fmt))
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
    try:
        format(1.5, spec)
    except (ValueError, TypeError):
        raise ValueError(f"draw: number_format {spec!r} is not a format spec for numbers (such as '.4g' or "
                         "'.3f'); the output format comes from the file extension") from None

    def number(x: Any) -> str:
        if isinstance(x, float):
            s = format(x, spec)
            return "0" if s in ("-0", "-0.0") else s
        return str(x)
    return number


def _prefix_of(label: str | None) -> tuple[str, ...] | None:
    if not label or "." not in label:
        return None
    parts = label.split(".")[:-1]
    return tuple(".".join(parts[:k + 1]) for k in range(len(parts)))


def _prefix_group(node: Any) -> tuple[str, ...] | None:
    return _prefix_of(node.label)


def _groups(order: list, group: Callable[[Any], tuple[str, ...] | None]) -> dict[int, tuple[str, ...]]:
    """Each node's nested groups: from ``group``, else from its operands.

    An unlabelled node joins the group of a grouped parameter it reads (``w * x`` is in ``w``'s neuron); one
    that reads only results joins the latest of their groups (``tanh(acc)``), unless it also reads a value from
    outside every group (a target or a constant: ``yhat - y`` is the loss, not part of the last layer).
    """
    found: dict[int, tuple[str, ...]] = {}
    first_seen: dict[tuple[str, ...], int] = {}
    for i, node in enumerate(order):
        g = group(node)
        if g is None and node.parents and not node.label:
            leafy = [found[id(p)] for p in node.parents if not p.parents and id(p) in found]
            outside = any(not p.parents and id(p) not in found for p in node.parents)
            if leafy:
                g = leafy[0]
            elif not outside:
                cands = [found[id(p)] for p in node.parents if id(p) in found]
                if cands and len(cands) == len(node.parents):
                    g = max(cands, key=lambda c: first_seen[c])
        if g:
            found[id(node)] = g
            first_seen.setdefault(g, i)
    return found


def _natural(name: str) -> list:
    """Sort key that puts L1.n2 before L1.n10."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


# ---------------------------------------------------------------------------------------------------------
# Paths to highlight, found in linear time
# ---------------------------------------------------------------------------------------------------------

def _counts(out: Any, wrt: Any) -> tuple[list, dict[int, int]]:
    order = topological_order(out)
    count = {id(wrt): 1}
    for node in order:
        if node is not wrt:
            count[id(node)] = sum(count.get(id(p), 0) for p in node.parents)
    return order, count


def path_nodes(out: Any, wrt: Any) -> set:
    """The nodes on some path from ``wrt`` to ``out``: highlighting them lights up every path, in linear time.

    >>> from microgradx.examples import two_paths
    >>> o, w = two_paths(); len(path_nodes(o, w))
    5
    """
    order, count = _counts(out, wrt)
    return {n for n in order if count.get(id(n), 0)}


def nth_path(out: Any, wrt: Any, k: int) -> Path:
    """Path number ``k`` (from 1) from ``wrt`` to ``out``, numbered as ``paths(out, wrt)`` lists them.

    Linear in the size of the graph, however many paths there are.

    >>> from microgradx import paths
    >>> from microgradx.examples import two_paths
    >>> o, w = two_paths(); nth_path(o, w, 2) == paths(o, w)[1]
    True
    """
    _, count = _counts(out, wrt)
    total = count.get(id(out), 0)
    if not 1 <= k <= total:
        raise ValueError(f"path {k}: there are {total} path(s) from {node_name(wrt)} to {node_name(out)}, "
                         f"numbered 1 to {total}")
    nodes, zs, slots = [out], [], []
    node = out
    # paths() walks parents in order, depth first: path k goes through the parent whose block of paths holds k.
    while node is not wrt:
        for slot, (p, z) in enumerate(zip(node.parents, node.partials)):
            c = count.get(id(p), 0)
            if k <= c:
                nodes.append(p)
                zs.append(z)
                slots.append(slot)
                node = p
                break
            k -= c
    return Path(tuple(reversed(nodes)), tuple(reversed(zs)), tuple(reversed(slots)))


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


def _esc(s: str) -> str:
    return html.escape(s, quote=True)


def _html(text: str) -> str:
    """A Graphviz HTML-like label (the graphviz package passes ``<...>`` through unquoted)."""
    return f"<{text}>"


def _select(out: Any, order: list, group_fn: Any, collapse: int | None, max_nodes: int
            ) -> tuple[dict[int, tuple[str, ...]], dict[int, str], set[int]]:
    """Which nodes are drawn: returns each node's groups, the collapsed box of each folded node, and the
    nodes left out under ``max_nodes`` (those farthest from the output)."""
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


# ---------------------------------------------------------------------------------------------------------
# What a node shows: scalars and tensors
# ---------------------------------------------------------------------------------------------------------

def _is_tensor(node: Any) -> bool:
    return hasattr(node.data, "shape") and hasattr(node.data, "dtype")


def _shape(a: Any) -> str:
    return "×".join(str(d) for d in a.shape) if a.shape else "scalar"


def _summary(a: Any, num: Callable[[Any], str]) -> str:
    """The array itself when small, else its min, mean and max."""
    import numpy as np

    flat = np.asarray(a, dtype=np.float64).ravel()
    if flat.size == 0:
        return "empty"
    if flat.size <= 4:
        return "[" + ", ".join(num(float(v)) for v in flat) + "]"
    return f"min {num(float(flat.min()))} mean {num(float(flat.mean()))} max {num(float(flat.max()))}"


def _norm(a: Any) -> float:
    import numpy as np

    return float(np.linalg.norm(np.asarray(a, dtype=np.float64).ravel()))


def _tensor_gradients(out: Any, order: list) -> dict[int, Any]:
    """d out / d node for every node of a backpropagated scalar tensor graph, computed without side effects."""
    if not any(n.grad is not None for n in order if not n.parents):
        return {}
    if getattr(out.data, "size", 0) != 1:
        return {id(n): n.grad for n in order if n.grad is not None}
    S = run(backprop(out, 1.0, accumulate=False))
    return {id(n): s for n, s in S.items()}


@dataclass
class _Box:
    """One DOT node being built: its name, attributes, and an estimate of its size in points."""

    name: str
    attrs: dict
    width: float
    height: float
    where: tuple = ()


def _text_w(text: str, size: float) -> float:
    # A generous average for DejaVu Sans (about 0.55 em per character); only used to choose a slide layout.
    return 0.6 * size * len(text)


def _table(rows: list[list[tuple[str, str]]], th: Theme, fill: str, border: str, width: float) -> str:
    body = "".join("<tr>" + "".join(f"<td>{markup}</td>" for markup, _ in row) + "</tr>" for row in rows)
    return (f'<table border="{max(round(width), 1)}" cellborder="0" cellspacing="0" '
            f'cellpadding="{th.cellpadding}" bgcolor="{fill}" color="{border}">{body}</table>')


def _estimate(rows: list[list[tuple[str, str]]], th: Theme) -> tuple[float, float]:
    pad = 2 * th.cellpadding + 4
    width = max(sum(_text_w(plain, th.fontsize) + pad for _, plain in row) for row in rows)
    return width, len(rows) * (th.fontsize * 1.25 + pad)


def _depths(order: list) -> dict[int, int]:
    """Longest distance from an input, counted in drawn ranks (a value and its op are two ranks)."""
    depth: dict[int, int] = {}
    for n in order:
        depth[id(n)] = 2 + max((depth[id(p)] for p in n.parents), default=-2)
    return depth


def _rows(boxes: dict[str, _Box], links: list[tuple[str, str, float, float]], aspect: float, th: Theme,
          ) -> tuple[dict[str, int], dict[str, int]]:
    """Cut a left-to-right layout into rows so that its shape comes near ``aspect`` (width / height).

    ``links`` are (tail, head, label width, label height). A box's rank is its longest distance from an input.
    Each row is drawn as one line of the boxes computed in it, with their inputs in a band above; rows take
    consecutive ranks. Returns each box's row and rank.
    """
    rank: dict[str, int] = {}
    incoming: dict[str, list[str]] = {}
    users: dict[str, list[str]] = {}
    for a, b, _, _ in links:
        incoming.setdefault(b, []).append(a)
        users.setdefault(a, []).append(b)

    for name in boxes:
        stack = [name]
        while stack:
            top = stack[-1]
            todo = [p for p in incoming.get(top, ()) if p not in rank]
            if todo:
                stack.extend(todo)
                continue
            stack.pop()
            rank[top] = 1 + max((rank[p] for p in incoming.get(top, ())), default=-1)
    sources = {n for n in boxes if n not in incoming}
    n_ranks = 1 + max(rank.values(), default=0)
    span = [0.0] * n_ranks  # width a rank adds to its row's line
    chain_h = [0.0] * n_ranks
    band_h = [0.0] * n_ranks  # inputs and edge labels above the line
    for name, box in boxes.items():
        r = rank[name]
        if name in sources:
            band_h[min((rank[u] for u in users.get(name, ())), default=r)] = max(
                band_h[r], box.height + 2 * th.ranksep * 72)
        else:
            span[r] += box.width + th.nodesep * 72
            chain_h[r] = max(chain_h[r], box.height)
    for a, b, lw, lh in links:
        if a in sources:
            band_h[rank[b]] = max(band_h[rank[b]], lh + 2 * th.ranksep * 72)
        else:
            span[rank[b]] += lw
    best, best_cut = math.inf, [0] * n_ranks
    for n_rows in range(1, n_ranks + 1):
        target = sum(span) / n_rows
        cut, acc, row = [], 0.0, 0
        for r in range(n_ranks):
            if acc > 0 and acc + span[r] / 2 > target * (row + 1) and row < n_rows - 1:
                row += 1
            cut.append(row)
            acc += span[r]
        rows = range(row + 1)
        widths = [sum(w for w, c in zip(span, cut) if c == k) for k in rows]
        heights = [max(h for h, c in zip(chain_h, cut) if c == k) + max(h for h, c in zip(band_h, cut) if c == k)
                   + th.ranksep * 72 for k in rows]
        miss = abs(math.log(max(max(widths), 1.0) / max(sum(heights), 1.0)) - math.log(aspect))
        if miss < best - 1e-9:
            best, best_cut = miss, cut
    row_of = {name: best_cut[rank[name]] for name in boxes}
    for name in sources:
        if name in users:
            # An input stands above its first use.
            row_of[name] = min(row_of[u] for u in users[name])
    return row_of, rank


def draw(out: Any, *, grads: bool | Mapping[Any, Any] | None = None, derivatives: bool = True,
         contributions: bool | None = None, direction: str = "LR", highlight: Any = None,
         theme: str | Theme = "default", number_format: str | Callable[[float], str] = ".4g",
         group: str | Callable[[Any], tuple[str, ...] | None] | bool | None = None, collapse: int | None = None,
         max_nodes: int = 150, partial: Collection[Any] = (), current: Any = None,
         title: str | None = None, size: str | tuple[int, int] | None = None, dpi: float = 96,
         model: Any = None, fmt: str | Callable[[float], str] | None = None) -> Drawing:
    """Draw the graph behind ``out``: value nodes (name, data, grad), op nodes, edges labelled z(i, j).

    * ``grads``: show each node's gradient. By default only once ``out`` has been backpropagated, so a
      forward-only drawing shows no gradients; False hides them, True forces them; a mapping {node: S} shows only
      those (nodes in ``partial`` are marked as running totals) and nothing on the others.
      ``derivatives``: label edges with z(i, j). ``contributions``: also show S(j) * z(i, j) (default: when
      gradients are shown).
    * ``direction``: ``"LR"`` (left to right) or ``"TB"`` (top down). ``theme``: ``default``, ``slide``,
      ``compact`` or a ``Theme``. ``number_format``: a format spec (``".4g"``) or a function for the numbers.
    * ``size``: fill a frame, ``"16:9"`` (1920 x 1080 pixels), ``"4:3"`` or ``"1280x720"``; a long left-to-right
      graph is cut into rows so it fills the frame instead of shrinking into a strip. ``dpi``: pixels per inch
      of PNG output; 96 (the default) gives the frame's pixels, 192 the same picture at twice the pixels.
    * ``highlight``: a ``Path`` (``paths(out, w)[k]``, ``nth_path``), a list of them, or a collection of nodes
      (``path_nodes(out, w)`` lights every path from w). ``current``: one node to emphasise (the stepper's).
    * Big graphs: ``group="prefix"`` clusters nodes by label prefix (``L1.n0.w0`` is in ``L1`` and ``L1.n0``)
      or by a function node -> nested group names; ``collapse=k`` draws each level-k group as one box. Above
      ``max_nodes`` nodes, label-prefix groups are collapsed automatically (``group=False`` prevents it); if that
      is not enough only the ``max_nodes`` nodes nearest the output are drawn, with a summary node for the rest.
    * Tensor graphs: ``model=net`` names parameters from ``net.named_parameters()`` (``0.weight``) and groups
      nodes by module, so ``collapse=1`` draws each child of a ``Sequential`` as one box.
    * A node used far (more than two ops) from where it is drawn, such as ``x`` in ``h = h * x + y`` in a loop,
      gets a dashed copy beside each far use, so the layout stays fast; ``Drawing.node_ids(x)`` lists them.

    >>> from microgradx import paths
    >>> from microgradx.examples import two_paths
    >>> o, w = two_paths(); o.backward()
    >>> d = draw(o, highlight=paths(o, w)[0])
    >>> d.nodes, d.edges
    (9, 9)
    """
    if fmt is not None:
        import warnings

        warnings.warn("draw(fmt=...) is deprecated: use number_format=...", DeprecationWarning, stacklevel=2)
        number_format = fmt
    if isinstance(theme, str) and theme not in THEMES:
        raise ValueError(f"draw: unknown theme {theme!r}; choose one of {', '.join(THEMES)}")
    th = THEMES[theme] if isinstance(theme, str) else theme
    if not (isinstance(dpi, (int, float)) and 10 <= dpi <= 1200):
        raise ValueError(f"draw: dpi must be a number from 10 to 1200, got {dpi!r}")
    frame = frame_pixels(size) if size is not None else None
    num = _formatter(number_format)
    rankdir = _rankdir(direction)
    order = topological_order(out)
    index = {id(n): i for i, n in enumerate(order)}
    tensor = _is_tensor(out)
    names: dict[int, str] = {}
    if model is not None:
        names = {id(p): name for name, p in model.named_parameters()}

    def label_of(node: Any) -> str | None:
        return names.get(id(node)) or node.label

    # -- which gradients are known --------------------------------------------------------------------------
    grad_map = grads if isinstance(grads, Mapping) else None
    partial_ids = {id(n) for n in partial}
    if tensor:
        known = _tensor_gradients(out, order) if grads is not False and grad_map is None else {}
        if grad_map is not None:
            known = {id(n): g for n, g in grad_map.items()}
        show_grads = grads is not False and bool(known)
    else:
        backpropagated = isinstance(out.grad, float) and out.grad != 0.0
        show_grads = grad_map is not None or (backpropagated if grads is None else bool(grads))
    if contributions is None:
        contributions = show_grads

    def grad_of(node: Any) -> Any:
        if tensor:
            return known.get(id(node))
        if grad_map is None:
            return node.grad
        return grad_map.get(node)

    hl_nodes, hl_edges = _highlighted(highlight)

    # -- grouping and selection ------------------------------------------------------------------------------
    if group == "prefix" or (group is None and model is not None):
        group_fn: Any = lambda n: _prefix_of(label_of(n))  # noqa: E731
    elif group is None and (collapse is not None or len(order) > max_nodes) and any(map(_prefix_group, order)):
        group_fn = _prefix_group
    else:
        group_fn = group if callable(group) else None
    groups, box_of, hidden = _select(out, order, group_fn, collapse, max_nodes)
    visible = [n for n in order if id(n) not in box_of and id(n) not in hidden]

    # A node used far from where it is drawn pulls a long edge across the layout, and many such edges crossing
    # make dot's ordering step slow (a 60-op chain reusing its inputs at every level took most of a minute).
    # Each far use reads a dashed copy of the box drawn beside it instead. A node's place is just before its
    # nearest use (where dot puts it); "far" is more than two ops beyond that.
    depth = _depths(order)
    drawn = {id(n) for n in visible}
    home: dict[int, int] = {}
    for n in visible:
        for p in n.parents:
            home[id(p)] = min(home.get(id(p), depth[id(n)] - 2), depth[id(n)] - 2)
    proxy_of: dict[tuple[int, int], str] = {}  # (consumer id, slot) -> copy name
    copies_of: dict[int, list[str]] = {}
    for n in visible:
        for k, p in enumerate(n.parents):
            if id(p) not in drawn or id(n) in box_of:
                continue
            if depth[id(n)] - home[id(p)] > FAR_USE:
                names_ = copies_of.setdefault(id(p), [])
                if not (k > 0 and n.parents[k - 1] is p):
                    names_.append(f"v{index[id(p)]}_{len(names_) + 1}")
                proxy_of[(id(n), k)] = names_[-1]

    d = Drawing(name="microgradx")
    d.frame = frame
    graph_attr = dict(rankdir=rankdir, nodesep=str(th.nodesep), ranksep=str(th.ranksep), bgcolor="white",
                      fontname=th.font, fontsize=str(th.fontsize), labelloc="t")
    if title:
        graph_attr["label"] = _html(_esc(title))
    if frame is not None:
        # The frame's pixels are at 96 per inch; dpi then scales the PNG (192 gives the same slide at 2x).
        graph_attr.update(size=f"{frame[0] / 96:.4g},{frame[1] / 96:.4g}!", dpi=f"{dpi:g}",
                          pad="0.2")
    else:
        graph_attr["dpi"] = f"{dpi:g}"
    d.attr("graph", **graph_attr)
    d.attr("node", fontname=th.font, fontsize=str(th.fontsize), color=th.color, fontcolor=th.color,
           penwidth=str(th.penwidth))
    d.attr("edge", fontname=th.font, fontsize=str(th.edge_fontsize), color=th.color,
           fontcolor=th.edge_label_color, penwidth=str(th.penwidth), arrowsize="0.7")

    boxes: dict[str, _Box] = {}
    links: list[tuple[str, str, dict]] = []

    def add(box: _Box) -> None:
        boxes[box.name] = box

    def link(a: str, b: str, **attrs: Any) -> None:
        links.append((a, b, {k: str(v) for k, v in attrs.items() if v is not None}))

    # -- value and op nodes -------------------------------------------------------------------------------------
    def value_rows(node: Any) -> list[list[tuple[str, str]]]:
        label = label_of(node)
        shown_name = label or (node_name(node) if node.parents else None)
        g = grad_of(node) if show_grads else None
        so_far = " <i>so far</i>" if id(node) in partial_ids else ""
        if tensor:
            # An unlabelled result is named by its op node beside it; a formula of tensors would only repeat it.
            rows = [[(f"<b>{_esc(label)}</b>", label)]] if label else []
            a = node.data
            rows.append([(f"{_shape(a)} {a.dtype}", f"{_shape(a)} {a.dtype}")])
            rows.append([(_esc(_summary(a, num)), _summary(a, num))])
            if g is not None:
                import numpy as np

                ga = np.asarray(g)
                text = f"grad {_shape(ga)}, norm {num(_norm(ga))}"
                rows.append([(_esc(text) + so_far, text)])
            return rows
        cells = []
        if label:
            cells.append((f"<b>{_esc(label)}</b>", label))
        elif shown_name:
            cells.append((f"<i>{_esc(shown_name)}</i>", shown_name))
        cells.append((f"data {_esc(num(node.data))}", f"data {num(node.data)}"))
        if g is not None:
            cells.append((f"grad {_esc(num(g))}{so_far}", f"grad {num(g)} so far"))
        return [cells]

    for node in visible:
        i = index[id(node)]
        where = groups.get(id(node), ())
        hot = id(node) in hl_nodes
        is_current = current is not None and node is current
        rows = value_rows(node)
        fill = th.current_fill if is_current else th.highlight_fill if hot else (
            th.leaf_fill if not node.parents else th.value_fill)
        border = th.highlight if (hot or is_current) else th.color
        width = th.highlight_penwidth if (hot or is_current) else th.penwidth
        w, h = _estimate(rows, th)
        label = _html(_table(rows, th, fill, border, width))
        d._ids[id(node)] = [f"v{i}", *copies_of.get(id(node), ())]
        add(_Box(f"v{i}", dict(shape="plain", label=label, id=f"v{i}"), w, h, where))
        for name in copies_of.get(id(node), ()):
            copy = label.replace("<table ", '<table style="dashed" ', 1)
            add(_Box(name, dict(shape="plain", label=copy, id=name), w, h, where))
        if node.parents:
            text = op_label(node)
            # A circle fits a symbol; a word such as "sigmoid" would blow it up, so words get an ellipse.
            shape = th.op_shape if len(text) <= 3 or th.op_shape == "plaintext" else "ellipse"
            name = f"o{i}"
            d._op_ids[id(node)] = name
            attrs = dict(shape=shape, label=text, style="filled", id=name,
                         fillcolor=th.highlight_fill if hot else th.op_fill,
                         color=th.highlight if hot or is_current else None, penwidth=width, margin="0.02",
                         width="0.3", height="0.3")
            add(_Box(name, {k: v for k, v in attrs.items() if v is not None},
                     max(_text_w(text, th.fontsize) * 1.3, th.fontsize * 1.8), th.fontsize * 1.8, where))
            link(name, f"v{i}", color=th.highlight if hot or is_current else None,
                 penwidth=width if hot or is_current else None, id=f"r{i}")

    # -- group boxes (collapsed) ----------------------------------------------------------------------------
    members: dict[str, list] = {}
    for n in order:
        if id(n) in box_of:
            members.setdefault(box_of[id(n)], []).append(n)
    box_ids = {name: f"g{k}" for k, name in enumerate(sorted(members, key=_natural))}
    # A box's outputs are its members used outside it (or the root): one output is shown with its numbers.
    used_outside = {id(p) for n in order for p in n.parents if box_of.get(id(p)) != box_of.get(id(n))}
    for name, gid in box_ids.items():
        inside = members[name]
        params = sum(1 for n in inside if not n.parents and label_of(n))
        outs = [n for n in inside if id(n) in used_outside or n is out]
        hot = any(id(n) in hl_nodes for n in inside)
        rows: list[list[tuple[str, str]]] = [[(f"<b>{_esc(name)}</b>", name)],
                                             [(f"{len(inside)} nodes, {params} params", "00 nodes, 00 params")]]
        if len(outs) == 1:
            o = outs[0]
            g = grad_of(o) if show_grads else None
            if tensor:
                text = f"out {_shape(o.data)}"
                if g is not None:
                    import numpy as np

                    text += f", grad norm {num(_norm(np.asarray(g)))}"
            else:
                text = f"out {num(o.data)}" + (f", grad {num(g)}" if g is not None else "")
            rows.append([(_esc(text), text)])
        table = _table([[c] for row in rows for c in row], th, th.highlight_fill if hot else th.op_fill,
                       th.highlight if hot else th.color, 1)
        w, h = _estimate(rows, th)
        where = tuple(g for g in groups.get(id(inside[-1]), ()) if g != name and name.startswith(g + "."))
        add(_Box(gid, dict(shape="plain", label=_html(table), id=gid), w, h, where))

    # -- edges ----------------------------------------------------------------------------------------------
    seen_box_edges: set[tuple[str, str]] = set()
    summary_targets: list[str] = []
    for node in order:
        nid = id(node)
        if nid in hidden:
            continue
        i = index[nid]
        partials = node.partials if not tensor else (None,) * len(node.parents)
        for k, (p, z) in enumerate(zip(node.parents, partials, strict=True)):
            pid = id(p)
            if pid in hidden:
                target = f"o{i}" if nid not in box_of else box_ids[box_of[nid]]
                if target not in summary_targets:
                    summary_targets.append(target)
                continue
            if (nid, k) in proxy_of:
                src = proxy_of[(nid, k)]
            else:
                src = box_ids[box_of[pid]] if pid in box_of else f"v{index[pid]}"
            if nid in box_of or pid in box_of:
                dst = box_ids[box_of[nid]] if nid in box_of else f"o{i}"
                if src == dst or (src, dst) in seen_box_edges:
                    continue
                seen_box_edges.add((src, dst))
                link(src, dst)
                continue
            lines = []
            if tensor:
                if derivatives and getattr(p, "requires_grad", True):
                    lines.append(f"grad {_shape(p.data)}")
            else:
                if derivatives:
                    lines.append(f"z = {num(z)}")
                s = grad_of(node)
                if contributions and show_grads and s is not None and nid not in partial_ids:
                    lines.append(f"S*z = {num(s * z)}")
            hot = (pid, nid, k) in hl_edges or (nid in hl_nodes and pid in hl_nodes and not hl_edges)
            hot = hot or (current is not None and node is current)
            link(src, f"o{i}", label=_html("<br/>".join(_esc(t) for t in lines)) if lines else None,
                 color=th.highlight if hot else None, fontcolor=th.highlight if hot else None,
                 penwidth=th.highlight_penwidth if hot else None, id=f"e{i}_{k}")
    if hidden:
        add(_Box("more", dict(shape="note", style="dashed",
                              label=f"{len(hidden)} more nodes not drawn (max_nodes={max_nodes})"),
                 _text_w("000 more nodes not drawn (max_nodes=000)", th.fontsize), th.fontsize * 2))
        for t in summary_targets:
            link("more", t, style="dashed")

    # -- rows for a slide, then nested clusters -------------------------------------------------------------
    # A long left-to-right graph is cut into rows read top to bottom: each row is one line (rank=same) of the
    # boxes computed in it, its inputs stand above it, and an invisible heavy edge aligns the rows' first boxes
    # so every row starts at the left.
    row_of: dict[str, int] = {}
    rank_of: dict[str, int] = {}
    if frame is not None and rankdir == "LR" and not any(b.where for b in boxes.values()):
        label_sizes = []
        for a, b, attrs in links:
            text = re.sub(r"<[^>]*>", "\n", attrs.get("label", "")).split("\n")
            label_sizes.append((a, b, max((_text_w(t, th.edge_fontsize) for t in text), default=0.0),
                                th.edge_fontsize * 1.3 * sum(1 for t in text if t)))
        row_of, rank_of = _rows(boxes, label_sizes, frame[0] / frame[1], th)
        if len(set(row_of.values())) < 2:
            row_of = {}

    body: dict[tuple[str, ...], list[tuple[str, dict]]] = {}
    for box in boxes.values():
        body.setdefault(box.where, []).append((box.name, box.attrs))

    def fill(g: graphviz.Digraph, where: tuple[str, ...]) -> None:
        for name, attrs in body.get(where, []):
            g.node(name, **{k: str(v) for k, v in attrs.items()})
        children = dict.fromkeys(w[:len(where) + 1] for w in body if len(w) > len(where) and w[:len(where)] == where)
        for child in children:
            cid = f"cluster_{len(clusters)}"
            clusters.append(cid)
            sub = graphviz.Digraph(name=cid)
            sub.attr("graph", label=child[-1], style="rounded,dashed", color="#999999", fontcolor="#555555")
            fill(sub, child)
            g.subgraph(sub)

    clusters: list[str] = []
    fill(d, ())
    if row_of:
        d.attr("graph", rankdir="TB")
        heads = {b for _, b, _ in links}
        lines: dict[int, list[str]] = {}
        for name in boxes:
            if name in heads:
                lines.setdefault(row_of[name], []).append(name)
        firsts = []
        for k in sorted(lines):
            with d.subgraph() as line:
                line.attr(rank="same")
                for name in lines[k]:
                    line.node(name)
            firsts.append(min(lines[k], key=lambda n: rank_of[n]))
        for a, b in zip(firsts, firsts[1:]):
            d.edge(a, b, style="invis", weight="50")
    for a, b, attrs in links:
        d.edge(a, b, **attrs)
    d.nodes, d.edges = len(boxes), len(links)
    return d


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
