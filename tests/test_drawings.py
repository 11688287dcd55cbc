"""What a person sees in a drawing, measured: slide frames and label sizes, text inside its boxes under a font
whose metrics we control, one name per node, only known gradients, MLP boxes, paths to highlight, tensor graphs
of the demo networks, the graphviz package's API, stable SVG ids, and output paths."""

from __future__ import annotations

import math
import random
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

import microgradx as mx
from microgradx import Value, paths
from microgradx import render as R
from microgradx.examples import example3, two_paths
from microgradx.scalar_nn import MLP

SVG = "{http://www.w3.org/2000/svg}"
DEMOS = Path(__file__).resolve().parent.parent / "demos"


@pytest.fixture(autouse=True)
def pure(monkeypatch):
    monkeypatch.setenv(R.ENV_VAR, "pure")


def svg_of(d) -> ET.Element:
    return ET.fromstring(d.pipe("svg"))


def frame_scale(root: ET.Element, frame: tuple[int, int]) -> float:
    """Pixels per layout point when the SVG is shown fitted into ``frame`` (as a slide shows an image)."""
    width, height = (float(root.get(k).removesuffix("pt")) for k in ("width", "height"))
    sx = float(re.search(r"scale\(([\d.]+)", root.find(f"{SVG}g").get("transform")).group(1))
    return sx * min(frame[0] / width, frame[1] / height)


def edge_label_sizes(root: ET.Element) -> list[float]:
    return [float(t.get("font-size")) for g in root.iter(f"{SVG}g") if g.get("class") == "edge"
            for t in g.iter(f"{SVG}text")]


# -- slides ------------------------------------------------------------------------------------------------------

def test_readme_lecture_example_fills_a_16_9_frame_with_edge_labels_at_least_24_px_tall():
    ex = example3()
    ex.J.backward()
    d = mx.draw(ex.J, theme="slide", size="16:9", highlight=mx.paths(ex.J, ex.w1))
    root = svg_of(d)
    scale = frame_scale(root, (1920, 1080))
    sizes = edge_label_sizes(root)
    assert len(sizes) >= 12  # z and S*z on each of the six operand edges
    assert min(sizes) * scale >= 24
    width, height = (float(root.get(k).removesuffix("pt")) for k in ("width", "height"))
    assert 1.3 < width / height < 2.4  # a slide, not a strip
    # The PNG is the frame: 1920 x 1080 pixels at most, filling one side.
    import io

    from PIL import Image

    w, h = Image.open(io.BytesIO(d.pipe("png"))).size
    assert max(w / 1920, h / 1080) == pytest.approx(1.0, abs=0.02) and w <= 1930 and h <= 1090


def test_a_12_node_chain_is_cut_into_rows_to_fill_the_frame():
    x = Value(0.3, label="x")
    h = x
    for k in range(6):
        h = h.tanh() if k % 2 else h * 1.5
    h.backward()
    strip = svg_of(mx.draw(h, theme="slide"))
    slide = svg_of(mx.draw(h, theme="slide", size="16:9"))

    def aspect(root):
        return float(root.get("width").removesuffix("pt")) / float(root.get("height").removesuffix("pt"))

    assert aspect(strip) > 6
    assert abs(math.log(aspect(slide) / (16 / 9))) < 0.35
    assert min(edge_label_sizes(slide)) * frame_scale(slide, (1920, 1080)) >= 24
    assert min(edge_label_sizes(strip)) * frame_scale(strip, (1920, 1080)) < 24  # what the rows fix


def test_size_and_dpi_are_checked():
    o, _ = two_paths()
    assert R.frame_pixels("4:3") == (1920, 1440) and R.frame_pixels((800, 600)) == (800, 600)
    with pytest.raises(ValueError, match="size"):
        mx.draw(o, size="wide")
    with pytest.raises(ValueError, match="dpi"):
        mx.draw(o, dpi=0)


# -- text inside its box, measured with DejaVu Sans's own metrics -----------------------------------------------

def text_width(text: str, size: float, bold: bool) -> float:
    from matplotlib import font_manager
    from matplotlib.ft2font import FT2Font

    path = font_manager.findfont(font_manager.FontProperties(family="DejaVu Sans",
                                                             weight="bold" if bold else "normal"))
    assert "DejaVuSans" in path
    font = FT2Font(path)
    font.set_size(size, 72)
    font.set_text(text)
    return font.get_width_height()[0] / 64


def overflowing(root: ET.Element) -> list[str]:
    """Texts of node boxes that DejaVu Sans would draw wider than their box (with 1 pt of slack)."""
    bad = []
    for g in root.iter(f"{SVG}g"):
        if g.get("class") != "node":
            continue
        xs = []
        for shape in g:
            if shape.tag == f"{SVG}polygon":
                xs += [float(p.split(",")[0]) for p in shape.get("points").split()]
            elif shape.tag == f"{SVG}ellipse":
                cx, rx = float(shape.get("cx")), float(shape.get("rx"))
                xs += [cx - rx, cx + rx]
        if not xs:
            continue
        left, right = min(xs), max(xs)
        for t in g.iter(f"{SVG}text"):
            w = text_width(t.text or "", float(t.get("font-size")), t.get("font-weight") == "bold")
            x = float(t.get("x"))
            lo, hi = {"start": (x, x + w), "end": (x - w, x)}.get(t.get("text-anchor"), (x - w / 2, x + w / 2))
            if lo < left - 1 or hi > right + 1:
                bad.append(f"{t.text!r}: {lo:.1f}..{hi:.1f} outside {left:.1f}..{right:.1f}")
    return bad


@pytest.mark.parametrize("theme", ["default", "slide", "compact"])
def test_every_label_fits_its_box_in_dejavu_sans(theme):
    ex = example3()
    ex.J.backward()
    for d in (mx.draw(ex.J, theme=theme), mx.draw(ex.J, theme=theme, highlight=paths(ex.J, ex.w1), size="16:9"),
              mx.draw(MLP(2, [3, 1], seed=0)([0.5, -1.0]), theme=theme, collapse=2)):
        assert overflowing(svg_of(d)) == []


def test_the_measure_catches_boxes_laid_out_with_helvetica_widths():
    # The drawings of the past named Helvetica: a renderer drawing DejaVu Sans runs out of those boxes.
    from dataclasses import replace

    ex = example3()
    ex.J.backward()
    old = replace(R.THEMES["default"], font="Helvetica")
    assert overflowing(svg_of(mx.draw(ex.J, theme=old)))
    fonts = {t.get("font-family") for t in svg_of(mx.draw(ex.J)).iter(f"{SVG}text")}
    assert fonts == {"DejaVu Sans"}


# -- names and what is known ---------------------------------------------------------------------------------------

def test_intermediate_nodes_are_named_with_the_one_naming_function():
    out, leaves = mx.parse("sigmoid(x*w1)*w2", x=2.0, w1=0.75, w2=0.5)
    from microgradx.text import node_name

    src = mx.draw(out).source

    assert [node_name(n) for n in mx.topological_order(out) if n.parents] == [
        "x * w1", "sigmoid(x * w1)", "sigmoid(x * w1) * w2"]
    assert "<i>sigmoid(x * w1)</i>" in src


def test_forward_only_and_partial_drawings_show_only_known_gradients():
    o, w = two_paths()
    assert "<td>grad" not in mx.draw(o).source  # not backpropagated: no "grad 0" anywhere
    assert "S*z" not in mx.draw(o).source
    o.backward()
    assert mx.draw(o).source.count("<td>grad ") == 5
    src = mx.draw(o, grads={o: 1.0}).source
    assert src.count("<td>grad ") == 1 and not re.search(r"<td>grad\s*(&#160;|\s)*</td>", src)


# -- MLPs -------------------------------------------------------------------------------------------------------

def test_collapsed_layers_keep_the_loss_outside_and_show_the_model_output():
    model = MLP(2, [3, 1], seed=1)
    pred = model([0.5, -1.0])
    loss = (pred - 1.0) ** 2
    loss.label = "loss"
    loss.backward()
    src = mx.draw(loss, collapse=1).source
    boxes = re.findall(r"<b>(L\d)</b>.*?out ([-0-9.e]+), grad ([-0-9.e]+)", src)
    last = dict((name, (float(o), float(g))) for name, o, g in boxes)["L2"]
    assert last == (pytest.approx(pred.data, abs=1e-4), pytest.approx(pred.grad, rel=1e-3))
    assert pred.grad == pytest.approx(2 * (pred.data - 1.0))  # d loss / d pred, by hand
    assert re.search(r"<b>loss</b>", src)


def test_float_inputs_are_drawn_once_not_once_per_neuron():
    model = MLP(2, [16, 1], seed=0)
    out = model([0.5, -1.0])
    leaves = [n for n in mx.topological_order(out) if not n.parents and not n.label.startswith("L")]
    assert sorted(n.label for n in leaves) == ["x0", "x1"]
    src = mx.draw(out, group=False, max_nodes=10_000).source
    assert len(re.findall(r"<b>x0</b>", src)) == 1


# -- paths to highlight ------------------------------------------------------------------------------------------

def random_graph(seed: int):
    rng = random.Random(seed)
    xs = [Value(rng.uniform(0.5, 1.5), label=f"x{i}") for i in range(3)]
    nodes = list(xs)
    for _ in range(8):
        a, b = rng.choice(nodes), rng.choice(nodes)
        kind = rng.randrange(3)
        nodes.append(a * b if kind == 0 else a + b if kind == 1 else a.tanh())
    return nodes[-1], xs


@pytest.mark.parametrize("seed", range(6))
def test_nth_path_and_path_nodes_agree_with_the_enumeration(seed):
    out, xs = random_graph(seed)
    for w in xs:
        found = paths(out, w)
        assert [R.nth_path(out, w, k + 1) for k in range(len(found))] == found
        on_paths = {id(n) for p in found for n in p.nodes}
        assert {id(n) for n in R.path_nodes(out, w)} == on_paths
        if not found:
            with pytest.raises(ValueError, match="0 path"):
                R.nth_path(out, w, 1)


def test_one_path_of_many_is_found_without_enumerating_them():
    x, y = Value(0.5, label="x"), Value(0.3, label="y")
    h = x
    for _ in range(60):
        h = h * x + h * y
    assert mx.count_paths(h, x) > 10**15
    p = R.nth_path(h, x, 10**15)
    assert p.nodes[0] is x and p.nodes[-1] is h


@pytest.mark.parametrize("shared", ["leaves", "results"])
def test_a_chain_reusing_nodes_at_every_level_draws_far_uses_as_copies_beside_them(shared):
    # dot spends its time on long edges that cross each other; a node used at every level of a 60-op chain
    # would make 2 x 30 of them. Each far use reads a dashed copy drawn beside it: no operand edge is long.
    x, y = Value(0.5, label="x"), Value(0.3, label="y")
    a, b = ((x * y).tanh(), (x * y).tanh() + x) if shared == "results" else (x, y)
    h = x
    for _ in range(30):
        h = h * a + b
    h.backward()
    d = mx.draw(h, max_nodes=1000)
    src = d.source
    assert len(d.node_ids(a)) > 20 and len(d.node_ids(b)) > 20
    for copy in d.node_ids(a)[1:]:
        assert re.search(rf"^\s*{copy} \[label=<<table style=\"dashed\"", src, re.M)
    # Ranks along the drawn edges: every operand edge joins boxes at most three ranks apart.
    rank: dict[str, int] = {}
    edges = re.findall(r"^\s*(\w+) -> (\w+)", src, re.M)
    for _ in range(len(edges)):
        for s_, t in edges:
            rank[t] = max(rank.get(t, 0), rank.get(s_, 0) + 1)
    targets: dict[str, list[int]] = {}
    for s_, t in edges:
        targets.setdefault(s_, []).append(rank[t])
        if s_ in rank:
            assert rank[t] - rank[s_] <= 3
    for s_, ranks in targets.items():
        if s_ not in rank:  # an input box sits before its first use: its other uses must be close too
            assert max(ranks) - min(ranks) <= 3
    root = svg_of(d)  # and it renders, one SVG node per box
    assert sum(g.get("class") == "node" for g in root.iter(f"{SVG}g")) == d.nodes


# -- tensor graphs ---------------------------------------------------------------------------------------------

def demo_module(name: str):
    sys.path.insert(0, str(DEMOS))
    try:
        return __import__(name)
    finally:
        sys.path.remove(str(DEMOS))


def test_mlp_tensor_graph_shows_names_shapes_summaries_and_gradient_shapes():
    from microgradx import losses
    from microgradx.train import mlp

    rng = np.random.default_rng(0)
    net = mlp([4, 8, 3], rng=0)
    x = rng.normal(size=(5, 4))
    logits = net(x)
    forward = mx.draw(logits, model=net).source
    assert "<b>0.weight</b>" in forward and "8×4 float" in forward and "norm" not in forward
    loss = losses.cross_entropy(logits, np.array([0, 1, 2, 1, 0]))
    loss.backward()
    src = mx.draw(loss, model=net).source
    w = net.parameters()[0]
    assert f"grad 8×4, norm {float(np.linalg.norm(w.grad)):.4g}" in src
    assert "min " in src and " mean " in src and " max " in src  # 32 numbers: summarised
    edge_labels = re.findall(r"-> o\d+ \[label=<grad ([^>]*)>", src)
    assert "8×4" in edge_labels and "5×3" in edge_labels  # the gradient flowing to W and to the logits
    assert "subgraph cluster_" in src and "label=0" in src
    boxes = mx.draw(loss, model=net, collapse=1).source
    assert "<b>0</b>" in boxes and "<b>2</b>" in boxes
    assert overflowing(svg_of(mx.draw(loss, model=net))) == []


@pytest.mark.parametrize("demo", ["cnn_digits", "lstm_sequence"])
def test_demo_networks_draw_forward_and_after_backward(demo):
    from microgradx import Tensor, losses

    rng = np.random.default_rng(0)
    if demo == "cnn_digits":
        net = demo_module(demo).build()
        out = net(rng.normal(size=(2, 1, 8, 8)))
        loss = losses.cross_entropy(out, np.array([1, 2]))
    else:
        net = demo_module(demo).Adder(4)
        out = net(rng.normal(size=(3, 5, 2)).astype(np.float32))
        loss = ((out - Tensor(np.ones((3, 1), dtype=np.float32))) ** 2).mean()
    assert "digraph" in mx.draw(out, model=net).source
    loss.backward()
    d = mx.draw(loss, model=net, collapse=1)
    root = svg_of(d)
    assert sum(g.get("class") == "node" for g in root.iter(f"{SVG}g")) == d.nodes
    names = {name for name, _ in net.named_parameters()}
    shown = set(re.findall(r"<b>([\w.]+)</b>", mx.draw(loss, model=net, max_nodes=10_000).source))
    assert names <= shown


# -- the graphviz package's API, ids, and files -----------------------------------------------------------------

def test_a_drawing_is_a_graphviz_digraph_and_keeps_standard_svg_with_stable_ids():
    import graphviz

    o, w = two_paths()
    o.backward()
    d = mx.draw(o)
    assert isinstance(d, graphviz.Digraph)
    d.attr(label="customised")
    d.node("note", "a note")
    root = svg_of(d)
    nodes = {g.get("id"): g for g in root.iter(f"{SVG}g") if g.get("class") == "node"}
    for node in mx.topological_order(o):
        g = nodes[d.node_id(node)]
        assert g.find(f"{SVG}title").text == d.node_id(node)
        if node.parents:
            assert d.op_id(node) in nodes
    assert "note" in {g.find(f"{SVG}title").text for g in nodes.values()}
    edges = {g.get("id") for g in root.iter(f"{SVG}g") if g.get("class") == "edge"}
    for node in mx.topological_order(o):
        for k in range(len(node.parents)):
            assert d.edge_id(node, k) in edges
        if node.parents:
            assert "r" + d.op_id(node)[1:] in edges
    assert mx.draw(o).node_id(w) == d.node_id(w)  # the same graph gives the same ids


def test_output_paths_are_checked_not_created(tmp_path):
    o, _ = two_paths()
    d = mx.draw(o)
    blocker = tmp_path / "a.pdf"
    blocker.write_text("not a folder")
    with pytest.raises(R.OutputPathError, match="is a file, not a folder"):
        d.save(blocker / "x.svg")
    with pytest.raises(R.OutputPathError, match="does not exist"):
        d.save(tmp_path / "missing" / "dir" / "a.png")
    assert not (tmp_path / "missing").exists()
    assert d.save(tmp_path / "a.svg").read_text().lstrip().startswith("<?xml")


# -- a second renderer: rsvg draws the SVG's text, and no ink may fall outside the boxes ------------------------

def ink_outside_boxes(svg: bytes, tmp_path) -> int:
    """Render only the node texts of ``svg`` with rsvg-convert (DejaVu Sans from the system's fonts) and count
    the inked pixels that fall outside every node's box."""
    import subprocess

    from PIL import Image

    root = ET.fromstring(svg)
    graph = root.find(f"{SVG}g")
    m = re.search(r"scale\(([\d.]+) [\d.]+\) rotate\(0\) translate\(([-\d.]+) ([-\d.]+)\)", graph.get("transform"))
    s, tx, ty = (float(v) for v in m.groups())
    boxes = []
    for g in list(graph):
        if g.get("class") != "node":
            if g.tag == f"{SVG}g" or g.tag == f"{SVG}polygon" or g.tag == f"{SVG}text":
                graph.remove(g)  # edges, clusters, the background and the title
            continue
        xs, ys = [], []
        for shape in list(g):
            if shape.tag == f"{SVG}polygon":
                pts = [tuple(map(float, p.split(","))) for p in shape.get("points").split()]
                xs += [p[0] for p in pts]
                ys += [p[1] for p in pts]
            elif shape.tag == f"{SVG}ellipse":
                cx, cy, rx, ry = (float(shape.get(k)) for k in ("cx", "cy", "rx", "ry"))
                xs += [cx - rx, cx + rx]
                ys += [cy - ry, cy + ry]
            if shape.tag != f"{SVG}text" and shape.tag != f"{SVG}title":
                g.remove(shape)
        for t in g.iter(f"{SVG}text"):
            t.set("fill", "black")
        boxes.append(((min(xs) + tx) * s, (min(ys) + ty) * s, (max(xs) + tx) * s, (max(ys) + ty) * s))
    src, png = tmp_path / "texts.svg", tmp_path / "texts.png"
    src.write_bytes(ET.tostring(root))
    subprocess.run(["rsvg-convert", "--dpi-x", "72", "--dpi-y", "72", "-o", str(png), str(src)], check=True)
    alpha = np.asarray(Image.open(png).convert("RGBA"))[:, :, 3]
    ys_, xs_ = np.nonzero(alpha > 128)
    inside = np.zeros(len(xs_), dtype=bool)
    for x0, y0, x1, y1 in boxes:
        inside |= (xs_ >= x0 - 1) & (xs_ <= x1 + 1) & (ys_ >= y0 - 1) & (ys_ <= y1 + 1)
    assert len(xs_) > 100  # the texts were drawn
    return int((~inside).sum())


@pytest.mark.skipif(__import__("shutil").which("rsvg-convert") is None,
                    reason="rsvg-convert (librsvg2-bin) is not installed: no second SVG renderer")
def test_rsvg_draws_every_text_inside_its_box(tmp_path):
    from dataclasses import replace

    ex = example3()
    ex.J.backward()
    for theme in ("default", "slide"):
        assert ink_outside_boxes(mx.draw(ex.J, theme=theme).pipe("svg"), tmp_path) == 0
    # The oracle can fail: boxes laid out for Helvetica overflow when rsvg draws them in DejaVu Sans.
    helvetica = replace(R.THEMES["default"], font="Helvetica")
    svg = mx.draw(ex.J, theme=helvetica).pipe("svg").replace(b'font-family="Helvetica,sans-Serif"',
                                                               b'font-family="DejaVu Sans"')
    assert ink_outside_boxes(svg, tmp_path) > 0
