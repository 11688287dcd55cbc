"""Drawings: DOT structure, edge labels against the recorded and hand-derived z, highlighting, themes, big
graphs, both renderers, PNG validity, and the Jupyter mimebundle with and without a renderer."""

from __future__ import annotations

import math
import random
import re
import shutil
import struct
import xml.etree.ElementTree as ET
import zlib

import pytest

import microgradx
from microgradx import Value, paths
from microgradx import render as R
from microgradx.examples import two_paths

NODE = re.compile(r"^\s*(v\d+(?:_\d+)?|o\d+|g\d+|more) \[(.*)\]$", re.M)
EDGE = re.compile(r"^\s*(\w+) -> (\w+)(?: \[(.*)\])?$", re.M)
HL = R.THEMES["default"].highlight


def nodes_and_edges(source: str) -> tuple[list[str], list[tuple[str, str, str]]]:
    return [m.group(1) for m in NODE.finditer(source)], [(a, b, attrs or "") for a, b, attrs in EDGE.findall(source)]


def op_ids(source: str) -> dict[str, str]:
    """{op label: op node id}, from lines such as ``o2 [label=cos fillcolor=...]``."""
    found = {}
    for m in re.finditer(r"^\s*(o\d+) \[label=(\"[^\"]*\"|\S+)", source, re.M):
        found[m.group(2).strip('"')] = m.group(1)
    return found


def value_id(source: str, label: str) -> str:
    return re.search(rf"^\s*(v\d+) \[.*<b>{re.escape(label)}</b>", source, re.M).group(1)


def edge_numbers(attrs: str, key: str) -> float | None:
    m = re.search(rf"{re.escape(key)} = ([-+0-9.e]+)", attrs)
    return float(m.group(1)) if m else None


@pytest.fixture
def two():
    o, w = two_paths(2.0)
    o.backward()
    return o, w


# -- DOT structure ---------------------------------------------------------------------------------------------

def test_two_paths_has_one_node_per_value_and_op_and_one_edge_per_use(two):
    o, _ = two
    nodes, edges = nodes_and_edges(R.draw(o).source)
    # w, a = w**2, cos(a), sin(a), o: 5 values and 4 ops; 5 operand edges plus 4 op -> result edges.
    assert sum(n.startswith("v") for n in nodes) == 5
    assert sum(n.startswith("o") for n in nodes) == 4
    assert len(edges) == 9
    assert sum(1 for a, b, _ in edges if a.startswith("v")) == 5


def test_edge_labels_are_the_recorded_partials_and_the_hand_derived_ones(two):
    o, w = two
    src = R.draw(o, number_format=".17g").source
    ops = op_ids(src)
    by_edge = {(a, b): attrs for a, b, attrs in nodes_and_edges(src)[1]}
    a = o.parents[0].parents[0]
    expected = {  # z(parent, op) by hand at w = 2, a = 4
        (value_id(src, "w"), ops["**2"]): 2 * 2.0,
        (value_id(src, "a"), ops["cos"]): -math.sin(4.0),
        (value_id(src, "a"), ops["sin"]): math.cos(4.0),
    }
    for edge, z in expected.items():
        assert edge_numbers(by_edge[edge], "z") == pytest.approx(z, rel=1e-15)
    # And each label is exactly the z recorded on the node (17 significant digits round-trip a float).
    recorded = sorted(z for n in microgradx.topological_order(o) for z in n.partials)
    shown = sorted(edge_numbers(attrs, "z") for (s, _), attrs in by_edge.items() if s.startswith("v"))
    assert shown == recorded
    # After backward, S*z on w -> a is S(a) * 2w = (cos 4 - sin 4) * 4 = dO/dw.
    sz = edge_numbers(by_edge[(value_id(src, "w"), ops["**2"])], "S*z")
    assert sz == pytest.approx(4 * (math.cos(4.0) - math.sin(4.0)), rel=1e-12)
    assert w.grad == pytest.approx(sz, rel=1e-15) and a.grad == pytest.approx(math.cos(4) - math.sin(4))


def test_x_times_x_draws_two_edges_each_labelled():
    x = Value(3.0, label="x")
    y = x * x
    _, edges = nodes_and_edges(R.draw(y).source)
    operand = [attrs for a, b, attrs in edges if a.startswith("v")]
    assert len(operand) == 2 and all(edge_numbers(e, "z") == 3.0 for e in operand)


def test_options_hide_grads_derivatives_and_contributions(two):
    o, _ = two
    assert "grad " not in R.draw(o, grads=False).source
    assert "<z = " not in R.draw(o, derivatives=False).source and "<S*z = " in R.draw(o, derivatives=False).source
    assert "S*z" not in R.draw(o, contributions=False).source
    fresh, _ = two_paths()
    assert "S*z" not in R.draw(fresh).source  # not backpropagated yet: no contributions to show
    assert "rankdir=TB" in R.draw(o, direction="TB").source
    assert "rankdir=LR" in R.draw(o, direction="left-right").source
    assert "data 2.00</td>" in R.draw(o, number_format=".2f").source
    with pytest.raises(ValueError, match="number_format 'png'.*file extension"):
        R.draw(o, number_format="png")
    with pytest.warns(DeprecationWarning, match="number_format"):
        assert "data 2.00</td>" in R.draw(o, fmt=".2f").source
    with pytest.raises(ValueError, match="direction"):
        R.draw(o, direction="diagonal")
    with pytest.raises(ValueError, match="theme"):
        R.draw(o, theme="neon")


def test_themes_change_font_sizes(two):
    o, _ = two
    assert "fontsize=26" in R.draw(o, theme="slide").source
    assert "fontsize=8" in R.draw(o, theme="compact").source


def test_highlighting_a_path_colours_exactly_its_edges(two):
    o, w = two
    found = paths(o, w)
    via_cos = next(p for p in found if any(n.op and n.op.name == "cos" for n in p.nodes))
    src = R.draw(o, highlight=via_cos).source
    ops = op_ids(src)
    hot = {(a, b) for a, b, attrs in nodes_and_edges(src)[1] if f'color="{HL}"' in attrs and a.startswith("v")}
    cos_value = next(b for a, b, _ in nodes_and_edges(src)[1] if a == ops["cos"])
    assert hot == {(value_id(src, "w"), ops["**2"]), (value_id(src, "a"), ops["cos"]), (cos_value, ops["+"])}
    # Every node on the path is drawn highlighted; sin(a) is not.
    assert src.count(f'color="{HL}"><tr>') == 4


def test_highlighting_a_set_of_nodes(two):
    o, w = two
    a = o.parents[0].parents[0]
    src = R.draw(o, highlight={w, a}).source
    assert src.count(f'color="{HL}"><tr>') == 2
    assert re.search(rf'{value_id(src, "w")} -> o\d+ \[.*color="{HL}"', src)


def test_labels_are_escaped_and_still_render(monkeypatch):
    monkeypatch.setenv(R.ENV_VAR, "pure")
    x = Value(1.0, label='<b>&"{x|y}"</b>')
    d = R.draw(x.tanh())
    assert "&lt;b&gt;&amp;&quot;{x|y}&quot;&lt;/b&gt;" in d.source
    ET.fromstring(d.pipe("svg"))  # well-formed SVG: the label did not break the DOT


# -- big graphs -----------------------------------------------------------------------------------------------

def mlp(sizes=(2, 16, 16, 1), seed=0):
    """A tanh MLP written out by hand, parameters labelled L<layer>.n<neuron>.<name>."""
    rng = random.Random(seed)
    h = [Value(rng.uniform(-1, 1), label=f"x{i}") for i in range(sizes[0])]
    for layer, (nin, nout) in enumerate(zip(sizes, sizes[1:], strict=False), start=1):
        outs = []
        for j in range(nout):
            acc = Value(rng.uniform(-1, 1), label=f"L{layer}.n{j}.b")
            for i in range(nin):
                acc = acc + Value(rng.uniform(-1, 1), label=f"L{layer}.n{j}.w{i}") * h[i]
            outs.append(acc.tanh() if layer < len(sizes) - 1 else acc)
        h = outs
    loss = (h[0] - 1.0) ** 2
    loss.label = "loss"
    return loss


def test_mlp_2_16_16_1_collapses_to_one_box_per_neuron_inside_layer_clusters():
    loss = mlp()
    loss.backward()
    assert len(microgradx.topological_order(loss)) > 900
    src = R.draw(loss).source
    nodes, edges = nodes_and_edges(src)
    assert sum(n.startswith("g") for n in nodes) == 16 + 16 + 1
    assert len(nodes) < 50
    for layer in ("L1", "L2", "L3"):
        assert f"label={layer}" in src  # a cluster per layer
    # Neuron L1.n0 holds b, w0, w1, two products, two sums and tanh: 8 nodes, 3 parameters.
    assert "<b>L1.n0</b></td></tr><tr><td>8 nodes, 3 params" in src
    layers = R.draw(loss, collapse=1)
    assert sum(n.startswith("g") for n in nodes_and_edges(layers.source)[0]) == 3


def test_custom_group_function_and_clusters_without_collapse():
    loss = mlp((2, 2, 1))
    src = R.draw(loss, group="prefix", max_nodes=10_000).source
    assert "subgraph cluster_" in src and not re.search(r"^\s*g\d+ \[", src, re.M)
    by_sign = R.draw(loss, group=lambda n: ("pos",) if n.data > 0 else None, collapse=1, max_nodes=10_000)
    assert '<b>pos</b>' in by_sign.source


def test_node_limit_draws_the_nodes_nearest_the_output_and_a_summary():
    loss = mlp((2, 4, 1))
    total = len(microgradx.topological_order(loss))
    src = R.draw(loss, group=False, max_nodes=12).source
    nodes, edges = nodes_and_edges(src)
    assert sum(n.startswith("v") for n in nodes) == 12
    assert f"{total - 12} more nodes not drawn" in src
    assert any(a == "more" for a, _, _ in edges)
    assert value_id(src, "loss")


# -- renderers --------------------------------------------------------------------------------------------------

RENDERERS = ["pure", pytest.param("system", marks=pytest.mark.skipif(shutil.which("dot") is None,
                                                                    reason="no system Graphviz dot on PATH"))]


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    length, kind = struct.unpack(">I4s", data[8:16])
    assert kind == b"IHDR" and length == 13
    body = data[16:16 + 13]
    (crc,) = struct.unpack(">I", data[29:33])
    assert zlib.crc32(kind + body) == crc
    width, height = struct.unpack(">II", body[:8])
    return width, height


@pytest.mark.parametrize("which", RENDERERS)
def test_render_svg_and_png_with_each_renderer(which, monkeypatch, tmp_path, two):
    monkeypatch.setenv(R.ENV_VAR, which)
    assert R.find_renderer().kind == which
    o, _ = two
    d = R.draw(o)
    root = ET.fromstring(d.save(tmp_path / "g.svg").read_bytes())
    groups = [g.get("class") for g in root.iter("{http://www.w3.org/2000/svg}g")]
    assert groups.count("node") == d.nodes == 9 and groups.count("edge") == d.edges == 9
    w, h = png_size(d.save(tmp_path / "g.png").read_bytes())
    assert w > 100 and h > 20


def test_png_decodes_with_matplotlib_when_installed(monkeypatch, two):
    image = pytest.importorskip("matplotlib.image")
    import io

    monkeypatch.setenv(R.ENV_VAR, "pure")
    data = R.draw(two[0]).pipe("png")
    assert image.imread(io.BytesIO(data), format="png").shape[0] == png_size(data)[1]


@pytest.mark.skipif(shutil.which("dot") is None, reason="no system Graphviz dot on PATH")
def test_pdf_with_the_system_dot(monkeypatch, tmp_path, two):
    monkeypatch.setenv(R.ENV_VAR, "system")
    assert R.draw(two[0]).save(tmp_path / "g.pdf").read_bytes().startswith(b"%PDF")


def test_pdf_with_graphviz_pure_says_it_needs_the_system_dot(monkeypatch, two):
    monkeypatch.setenv(R.ENV_VAR, "pure")
    with pytest.raises(R.RenderError, match="PDF needs the system Graphviz"):
        R.draw(two[0]).pipe("pdf")


def test_no_renderer_at_all_names_both_options(monkeypatch, two):
    monkeypatch.delenv(R.ENV_VAR, raising=False)
    monkeypatch.setattr(R.shutil, "which", lambda name: None)
    monkeypatch.setattr(R, "_pure_exe", lambda: None)
    with pytest.raises(R.RenderError) as info:
        R.draw(two[0]).svg()
    assert "apt-get install graphviz" in str(info.value) and "pip install graphviz-pure" in str(info.value)
    assert isinstance(info.value, microgradx.MicrogradxError)


def test_bad_env_var_and_unknown_extension(monkeypatch, tmp_path, two):
    monkeypatch.setenv(R.ENV_VAR, str(tmp_path / "no-such-dot"))
    d = R.draw(two[0])
    with pytest.raises(R.RenderError, match="MICROGRADX_DOT"):
        d.svg()
    assert d.save(tmp_path / "g.dot").read_text() == d.source  # .dot needs no renderer
    with pytest.raises(R.RenderError, match=r"\.svg"):
        d.save(tmp_path / "g.jpg")


def fake_dot(tmp_path, body: str) -> str:
    exe = tmp_path / "fake-dot"
    exe.write_text("#!/bin/sh\n" + body + "\n")
    exe.chmod(0o755)
    return str(exe)


def test_a_failing_dot_gives_a_clear_error(monkeypatch, tmp_path, two):
    monkeypatch.setenv(R.ENV_VAR, fake_dot(tmp_path, "echo 'syntax error in line 1' >&2; exit 3"))
    with pytest.raises(R.RenderError, match="exit 3.*syntax error in line 1"):
        R.draw(two[0]).svg()


def test_graphviz_pure_binary_is_found_from_its_package_metadata():
    exe = R._pure_exe()
    assert exe is not None and "graphviz-pure" in exe


# -- Jupyter --------------------------------------------------------------------------------------------------

def test_mimebundle_is_svg_with_a_renderer(monkeypatch, two):
    monkeypatch.setenv(R.ENV_VAR, "pure")
    bundle = R.draw(two[0])._repr_mimebundle_()
    assert ET.fromstring(bundle["image/svg+xml"]).tag.endswith("svg")


def test_mimebundle_is_the_dot_text_without_a_renderer(monkeypatch, tmp_path, two):
    monkeypatch.setenv(R.ENV_VAR, str(tmp_path / "missing"))
    bundle = R.draw(two[0])._repr_mimebundle_()
    assert set(bundle) == {"text/plain"} and bundle["text/plain"].startswith("digraph")


def test_values_display_as_drawings_only_when_asked(monkeypatch, two):
    monkeypatch.setenv(R.ENV_VAR, "pure")
    o, _ = two
    assert not hasattr(o, "_repr_mimebundle_")
    R.display_values(True)
    try:
        bundle = o._repr_mimebundle_()
        assert bundle["text/plain"] == repr(o) and "<svg" in bundle["image/svg+xml"]
    finally:
        R.display_values(False)
    assert not hasattr(o, "_repr_mimebundle_")


def test_highlighting_one_path_of_x_times_x_colours_only_its_edge():
    import microgradx as mx

    x = mx.Value(3.0, label="x")
    y = x * x
    source = mx.draw(y, highlight=mx.paths(y, x)[1]).source
    edges = [line for line in source.splitlines() if "v0 -> o1" in line]
    assert len(edges) == 2
    assert ["color=" in line for line in edges] == [False, True]


def test_render_works_as_graphviz_render_for_users_who_know_graphviz(tmp_path):
    # Drawing is a graphviz.Digraph: render(filename, format=...) writes the DOT source and the picture, as
    # graphviz's does, although Drawing.save takes a single path.
    o, _ = two_paths()
    out = R.draw(o).render(tmp_path / "g", format="svg")
    assert str(out).endswith("g.svg") and (tmp_path / "g.svg").read_text().lstrip().startswith("<?xml")
    assert (tmp_path / "g").read_text().startswith("digraph")
