"""The backward pass for the lecture hall: a self-contained HTML page, frames, a GIF, a PDF handout and LaTeX.

Every export replays the core's ``backprop`` generator on the side (the graph's ``.grad`` slots are not touched)
and reads its events through ``stepper.view``. The page is one file: the drawing's SVG inline (from ``draw``),
the CSS and the script of ``page.css`` / ``page.js`` inline, the events as JSON; it loads nothing from anywhere.
"""

from __future__ import annotations

import html
import json
import os
import re
import secrets
import xml.etree.ElementTree as ET
from importlib import resources
from pathlib import Path as FilePath
from typing import Any

from .graph import Event, PathLimitError, count_paths, paths, topological_order
from .ops import MicrogradxError
from .stepper import Stepper, _draw_state, chain_lines, node_name, quantity, where

__all__ = ["Page", "backprop_page", "drawing_page", "latex_derivation", "save_frames", "save_gif", "save_pdf"]

_SVG = "http://www.w3.org/2000/svg"
ET.register_namespace("", _SVG)
ET.register_namespace("xlink", "http://www.w3.org/1999/xlink")


class Page(str):
    """An HTML page (a str holding the whole document) that Jupyter shows inline; ``save(path)`` writes it."""

    fragment: str

    def __new__(cls, fragment: str, title: str) -> Page:
        doc = (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
               f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
               f"<title>{html.escape(title)}</title>\n</head>\n<body>\n{fragment}\n</body>\n</html>\n")
        self = super().__new__(cls, doc)
        self.fragment = fragment
        return self

    def _repr_html_(self) -> str:
        return self.fragment

    def __repr__(self) -> str:
        return f"<Page: {len(self)} characters of HTML; .save('backprop.html')>"

    def save(self, path: str | os.PathLike[str]) -> FilePath:
        """Write the page (UTF-8) and return its path."""
        target = writable(path)
        target.write_text(str(self), encoding="utf-8")
        return target


def writable(path: str | os.PathLike[str]) -> FilePath:
    """``path`` as a Path whose folder exists (a clear error otherwise: no folder is created on a typo); the
    drawings' own rule, ``render.check_output_path``.

    >>> writable("/no/such/folder/page.html")
    Traceback (most recent call last):
    ...
    microgradx.render.OutputPathError: cannot write /no/such/folder/page.html: the folder ... does not exist ...
    """
    from .render import check_output_path

    return check_output_path(path)


def _asset(name: str) -> str:
    return resources.files("microgradx").joinpath(name).read_text(encoding="utf-8")


def _json(data: Any) -> str:
    # NOTE: "</" would end the <script> element early; "<\/" is the same string to JSON.
    return json.dumps(data, separators=(",", ":")).replace("</", "<\\/")


def _float(x: Any) -> float | None:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else None


# ---------------------------------------------------------------------------------------------------------
# Reading the drawing's SVG
# ---------------------------------------------------------------------------------------------------------

def annotate_svg(svg: str, order: list) -> tuple[str, dict[str, int]]:
    """Mark the drawing's SVG so the page script finds every part by graph position, not by Graphviz names.

    Graphviz writes each node as ``<g class="node"><title>NAME</title>`` and each edge as ``<g class="edge">
    <title>A->B</title>``; ``draw`` names a value node ``v{i}`` and its op ``o{i}`` (``i`` its topological
    index). This function is the one place that knows it: it adds ``data-mgx-value``/``data-mgx-op`` (i),
    ``data-mgx-edge`` ("i_k": parent slot k of node i) and ``data-mgx-out`` (op to value), and classes on the
    texts the page rewrites (``mgx-grad``, ``mgx-contrib``). Returns the SVG and a count of what was found.
    """
    root = ET.fromstring(re.sub(r"<!DOCTYPE[^>]*>", "", svg, count=1).encode())
    title_tag, text_tag, g_tag = f"{{{_SVG}}}title", f"{{{_SVG}}}text", f"{{{_SVG}}}g"
    used: dict[tuple[int, int], set[int]] = {}
    found = {"values": 0, "ops": 0, "edges": 0, "wide": 0}
    box = (root.get("viewBox") or "").split()
    if len(box) == 4 and float(box[3]) > 0:
        found["wide"] = int(float(box[2]) > 2.0 * float(box[3]))
    for g in root.iter(g_tag):
        kind = g.get("class")
        t = g.find(title_tag)
        if kind not in ("node", "edge") or t is None or not t.text:
            continue
        name = t.text.strip()
        texts = list(g.iter(text_tag))
        if kind == "node":
            m = re.fullmatch(r"([vo])(\d+)", name)
            if not m or int(m.group(2)) >= len(order):
                continue
            i = int(m.group(2))
            if m.group(1) == "v":
                g.set("data-mgx-value", str(i))
                found["values"] += 1
                for tx in texts:
                    if (tx.text or "").startswith("grad"):
                        tx.set("class", "mgx-grad")
            else:
                g.set("data-mgx-op", str(i))
                found["ops"] += 1
            continue
        # an edge may leave a copy of value i (v{i}_{c}), drawn beside a far use: it is still value i's edge
        m = re.fullmatch(r"([vo])(\d+)(?:_\d+)?(?::\w+)?->([vo])(\d+)(?::\w+)?", name.replace(" ", ""))
        if not m:
            continue
        a, b = int(m.group(2)), int(m.group(4))
        if m.group(1) == "o" and m.group(3) == "v" and a == b:
            g.set("data-mgx-out", str(b))
            continue
        if m.group(1) != "v" or m.group(3) != "o" or max(a, b) >= len(order):
            continue
        child, parent = order[b], order[a]
        ident = re.fullmatch(rf"e{b}_(\d+)", g.get("id", ""))
        slots = [k for k, p in enumerate(child.parents) if p is parent]
        taken = used.setdefault((a, b), set())
        slot = int(ident.group(1)) if ident else next((k for k in slots if k not in taken), None)
        if slot is None:
            continue
        taken.add(slot)
        g.set("data-mgx-edge", f"{b}_{slot}")
        found["edges"] += 1
        for tx in texts:
            if (tx.text or "").startswith("S"):
                tx.set("class", "mgx-contrib")
    for attr in ("width", "height"):
        # Sized by the page's CSS instead, so the drawing shrinks to a slide or a notebook cell.
        root.attrib.pop(attr, None)
    return ET.tostring(root, encoding="unicode"), found


# ---------------------------------------------------------------------------------------------------------
# The page
# ---------------------------------------------------------------------------------------------------------

def _path_data(out: Any, leaf: Any, index: dict[int, int], grad: Any, digits: int, limit: int) -> dict:
    n = count_paths(out, leaf)
    entry: dict[str, Any] = {"count": n, "grad": quantity(grad, digits), "paths": []}
    if n > limit:
        entry["note"] = (f"{n} paths lead from {node_name(leaf)} to {node_name(out)}: too many to list "
                         f"(limit {limit}); backward sums them in one linear pass")
        return entry
    try:
        found = paths(out, leaf, limit=limit)
    except PathLimitError as e:
        entry["note"] = str(e)
        return entry
    total = 0.0
    for p in found:
        edges = [[index[id(b)], k] for b, k in zip(p.nodes[1:], p.slots, strict=True)]
        zs = " · ".join(quantity(z, digits) for z in p.derivatives)
        names = " → ".join(node_name(x) for x in p.nodes)
        total += p.product
        entry["paths"].append({"nodes": [index[id(x)] for x in p.nodes], "edges": edges,
                               "text": f"{names}:  {zs or '1'} = {quantity(p.product, digits)}",
                               "product": p.product})
    entry["sum"] = quantity(total, digits)
    entry["sumValue"] = total
    return entry


def backprop_page(stepper: Stepper, *, title: str | None = None, theme: str = "default",
                  path_limit: int = 64, keys: str = "auto") -> Page:
    """The page of ``stepper``'s whole pass; see ``Stepper.to_html``. ``keys``: ``page`` listens to arrow keys
    everywhere, ``focus`` only when the page has focus (inside a slide deck), ``auto`` picks by context."""
    if keys not in ("auto", "page", "focus"):
        raise ValueError(f"to_html: keys must be 'auto', 'page' or 'focus', got {keys!r}")
    out, digits = stepper.out, stepper.digits
    order = topological_order(out)
    index = {id(n): i for i, n in enumerate(order)}
    events: list[dict] = []
    final: dict[int, Any] = {}
    for v, _S, _fin in stepper.states():
        final[index[id(v.node)]] = v.grad
        events.append(_event_data(v, index, digits))
    nodes = []
    for i, n in enumerate(order):
        g = final.get(i)
        nodes.append({"name": node_name(n), "data": quantity(n.data, digits), "leaf": not n.parents,
                      "final": quantity(g, digits) if i in final else "", "finalValue": _float(g)})
    path_info = {}
    for i, n in enumerate(order):
        if not n.parents and i in final and _float(final[i]) is not None:
            path_info[str(i)] = _path_data(out, n, index, final[i], digits, path_limit)
    heading = title or f"Backpropagation through {node_name(out)}"
    note = ""
    try:
        grads = {n: final[index[id(n)]] for n in order if index[id(n)] in final}
        drawing = _draw_state(out, grads, set(map(id, grads)), None, theme=theme, contributions=True,
                              number_format=f".{digits}g", max_nodes=max(150, len(order) + 1))
        svg, found = annotate_svg(drawing.svg(), order)
        wide = bool(found["wide"])
    except (MicrogradxError, AttributeError, TypeError) as e:
        # NOTE: a graph the drawing cannot show yet (or no dot renderer) still gets the table and the steps.
        svg, note, wide = "", f"no drawing: {e}", False
    uid = "mgx-" + secrets.token_hex(4)
    data = {"nodes": nodes, "events": events, "paths": path_info, "out": node_name(out), "keys": keys,
            "title": heading}
    rows = "".join(
        f'<tr data-node="{i}"><td class="mgx-name">{html.escape(nodes[i]["name"])}</td>'
        f'<td class="mgx-num">{html.escape(nodes[i]["data"])}</td><td class="mgx-num mgx-s"></td></tr>'
        for i in reversed(range(len(order))) if i in final)
    fragment = (
        f'<div class="mgx-page{" mgx-wide" if wide else ""}" id="{uid}" tabindex="0">'
        f"<style>{_asset('page.css')}</style>"
        f'<div class="mgx-head"><h2 class="mgx-title">{html.escape(heading)}</h2>'
        '<div class="mgx-controls"><button type="button" class="mgx-back" title="back (left arrow)">◀ back</button>'
        '<button type="button" class="mgx-next" title="next (right arrow)">next ▶</button>'
        '<span class="mgx-status"></span></div></div>'
        '<div class="mgx-chain" aria-live="polite"></div>'
        f'<div class="mgx-body"><div class="mgx-drawing">{svg}'
        + (f'<p class="mgx-note">{html.escape(note)}</p>' if note else "")
        + '</div><div class="mgx-side"><table class="mgx-table"><thead><tr><th>node</th><th>value</th>'
        f"<th>S = ∂{html.escape(node_name(out))}/∂node</th></tr></thead><tbody>{rows}</tbody></table>"
        '<div class="mgx-paths"><p class="mgx-hint">Click an input to list its paths to the output.</p></div>'
        "</div></div>"
        f'<script type="application/json" class="mgx-data">{_json(data)}</script>'
        f"<script>{_asset('page.js')}\nmicrogradxPage(document.getElementById({json.dumps(uid)}));</script>"
        "</div>")
    return Page(fragment, heading)


def _event_data(v: Event, index: dict[int, int], digits: int) -> dict:
    parents = []
    for k, (p, c, t) in enumerate(zip(v.parents, v.contributions, v.totals, strict=True)):
        parents.append({"node": index[id(p)], "slot": k, "contrib": quantity(c, digits),
                        "total": None if t is None else quantity(t, digits), "totalValue": _float(t)})
    lines = chain_lines(v, digits)
    if not v.parents:
        lines = [f"S({node_name(v.node)}) = {quantity(v.grad, digits)} is final: an input has no parents to "
                 "pass it on to"]
    return {"node": index[id(v.node)], "S": quantity(v.grad, digits), "value": _float(v.grad),
            "parents": parents, "lines": lines}


def drawing_page(drawing: Any, title: str = "microgradx drawing") -> Page:
    """A drawing as a self-contained HTML page (its SVG inline, no script): ``draw(o).to_html()``."""
    svg = re.sub(r"<!DOCTYPE[^>]*>", "", re.sub(r"<\?xml[^>]*\?>", "", drawing.svg(), count=1), count=1)
    uid = "mgx-" + secrets.token_hex(4)
    fragment = (f'<div class="mgx-page mgx-static" id="{uid}"><style>{_asset("page.css")}</style>'
                f'<div class="mgx-drawing">{svg.strip()}</div></div>')
    return Page(fragment, title)


# ---------------------------------------------------------------------------------------------------------
# LaTeX, frames, GIF, PDF
# ---------------------------------------------------------------------------------------------------------

_TEX_SPECIAL = {"\\": r"\backslash{}", "{": r"\{", "}": r"\}", "_": r"\_", "^": r"\^{}", "#": r"\#",
                "%": r"\%", "&": r"\&", "$": r"\$", "~": r"\sim{}", " ": r"\ ", "*": r"\ast{}"}


def tex_name(name: str) -> str:
    """A node's name in maths mode: upright as one word, so ``out`` is not read as o·u·t.

    >>> tex_name("w1"), tex_name("(x * w1) + b")
    ('\\\\mathrm{w1}', '\\\\mathrm{(x\\\\ \\\\ast{}\\\\ w1)\\\\ +\\\\ b}')
    """
    return r"\mathrm{" + "".join(_TEX_SPECIAL.get(c, c) for c in name) + "}"


def _tex_num(x: Any, digits: int) -> str:
    text = quantity(x, digits)
    if _float(x) is None:
        return r"\mathrm{" + "".join(_TEX_SPECIAL.get(c, c) for c in text) + "}"
    return text


def _tex_factor(x: Any, digits: int) -> str:
    text = _tex_num(x, digits)
    return f"({text})" if text.startswith("-") else text


def latex_derivation(stepper: Stepper) -> str:
    """The pass as a LaTeX ``align*`` block; see ``Stepper.to_latex``."""
    digits = stepper.digits
    lines = [r"\begin{align*}"]
    states = list(stepper.states())
    if states:
        first = states[0][0]
        lines.append(f"S({tex_name(node_name(first.node))}) &= {_tex_num(first.grad, digits)} \\\\")
    for v, _S, _fin in states:
        me = tex_name(node_name(v.node))
        for k, (p, c, t) in enumerate(zip(v.parents, v.contributions, v.totals, strict=True)):
            if c is None:
                continue
            pn = tex_name(node_name(p))
            if v.partials is not None:
                rhs = (rf"S({me})\,z({pn}, {me}) = {_tex_factor(v.grad, digits)} \cdot "
                       rf"{_tex_factor(v.partials[k], digits)} = {_tex_num(c, digits)}")
            else:
                rhs = rf"\mathrm{{vjp}}_{{{k + 1}}}(S({me})) = {_tex_num(c, digits)}"
            lines.append(rf"S({pn}) &\mathrel{{+}}= {rhs}, \quad S({pn}) = {_tex_num(t, digits)} \\")
    lines.append(r"\end{align*}")
    return "\n".join(lines)


def _frames(stepper: Stepper, fmt: str, **options: Any) -> list[bytes]:
    out, total = stepper.out, stepper.total
    frames = []
    for k, (v, S, finished) in enumerate(stepper.states(), start=1):
        opts = dict(options)
        opts.setdefault("title", where(out, k, total, k >= total))
        frames.append(_draw_state(out, S, finished, v.node, **opts).pipe(fmt))
    return frames


def save_frames(stepper: Stepper, folder: str | os.PathLike[str], fmt: str = "svg",
                **options: Any) -> list[FilePath]:
    """One drawing per event in ``folder`` (``step-001.svg`` ...); see ``Stepper.save_frames``."""
    if fmt not in ("svg", "png"):
        raise ValueError(f"save_frames: fmt must be 'svg' or 'png', got {fmt!r}")
    target = FilePath(folder)
    if target.exists() and not target.is_dir():
        raise MicrogradxError(f"cannot write frames into {str(target)!r}: it is a file, not a folder")
    if not target.exists():
        writable(target)  # its parent must exist: no folder tree is created on a typo
        target.mkdir()
    written = []
    for k, data in enumerate(_frames(stepper, fmt, **options), start=1):
        p = target / f"step-{k:03d}.{fmt}"
        p.write_bytes(data)
        written.append(p)
    return written


def _images(stepper: Stepper, **options: Any) -> list[Any]:
    import io

    from PIL import Image

    images = [Image.open(io.BytesIO(b)).convert("RGB") for b in _frames(stepper, "png", **options)]
    # Frames differ in size (texts grow as totals arrive): pad each to the largest on white.
    w = max(im.width for im in images)
    h = max(im.height for im in images)
    padded = []
    for im in images:
        canvas = Image.new("RGB", (w, h), "white")
        canvas.paste(im, ((w - im.width) // 2, (h - im.height) // 2))
        padded.append(canvas)
    return padded


def save_gif(stepper: Stepper, path: str | os.PathLike[str], seconds_per_frame: float = 1.0,
             **options: Any) -> FilePath:
    """An animated GIF, one frame per event (Pillow); see ``Stepper.save_gif``."""
    if not seconds_per_frame > 0:
        raise ValueError(f"save_gif: seconds_per_frame must be positive, got {seconds_per_frame!r}")
    target = writable(path)
    images = _images(stepper, **options)
    images[0].save(target, save_all=True, append_images=images[1:], duration=round(1000 * seconds_per_frame),
                   loop=0)
    return target


def save_pdf(stepper: Stepper, path: str | os.PathLike[str], **options: Any) -> FilePath:
    """A handout, one page per event: the drawing, then the chain-rule lines (matplotlib); see
    ``Stepper.save_pdf``."""
    import matplotlib.pyplot as plt
    from matplotlib.backends.backend_pdf import PdfPages

    target = writable(path)
    images = _images(stepper, **options)
    states = list(stepper.states())
    with PdfPages(target) as pdf:
        for k, (img, (v, _S, _fin)) in enumerate(zip(images, states, strict=True), start=1):
            fig = handout_page(img, v, k, len(states), stepper.digits)
            pdf.savefig(fig)
            plt.close(fig)
    return target


def handout_page(image: Any, v: Event, k: int, total: int, digits: int = 5) -> Any:
    """One handout page (a matplotlib figure, A4 landscape): the drawing after step ``k``, then its chain rule."""
    import matplotlib.pyplot as plt
    import numpy as np

    fig = plt.figure(figsize=(11.69, 8.27))
    ax = fig.add_axes((0.03, 0.32, 0.94, 0.6))
    ax.imshow(np.asarray(image))
    ax.set_axis_off()
    lines = chain_lines(v, digits) or [f"S({node_name(v.node)}) = {quantity(v.grad, digits)} is final"]
    fig.text(0.05, 0.28, f"Step {k} of {total}: {node_name(v.node)}", fontsize=14, weight="bold", va="top")
    fig.text(0.05, 0.22, "\n".join(lines), family="monospace", fontsize=10, va="top")
    return fig
