"""One name per node: the same text in drawings, paths, the CLI, checks and LaTeX."""

from __future__ import annotations

import re

import pytest

import microgradx as mx
from microgradx.cli import main
from microgradx.text import node_name, op_label


@pytest.mark.parametrize("expr, names", [
    ("cos(w**2) + sin(w**2)", ["w**2", "cos(w**2)", "sin(w**2)", "cos(w**2) + sin(w**2)"]),
    ("sigmoid(x*w1)*w2", ["x * w1", "sigmoid(x * w1)", "sigmoid(x * w1) * w2"]),
    ("(x - y)**2", ["x - y", "(x - y)**2"]),
    ("x - (y - x)", ["y - x", "x - (y - x)"]),
    ("leaky_relu(x*y, 0.1)", ["x * y", "leaky_relu(x * y, 0.1)"]),
])
def test_names_are_the_formula_as_written(expr, names):
    out, _ = mx.parse(expr, x=0.5, y=1.5, w=2.0, w1=0.75, w2=0.5)
    assert [node_name(n) for n in mx.topological_order(out) if n.parents] == names
    # Each name is itself an expression the parser reads back to the same value.
    for n in mx.topological_order(out):
        if n.parents:
            again, _ = mx.parse(node_name(n), x=0.5, y=1.5, w=2.0, w1=0.75, w2=0.5)
            assert again.data == pytest.approx(n.data, rel=1e-12)


def test_long_names_are_shortened_but_keep_their_outer_op():
    x = mx.Value(0.3, label="x")
    h = x
    for _ in range(200):
        h = (h * x).tanh()
    name = node_name(h)
    assert len(name) <= 40 and name.startswith("tanh(") and "…" in name


def test_paths_print_the_same_names_as_the_drawing(capsys):
    assert main(["paths", "cos(w**2) + sin(w**2)", "--wrt", "w", "--at", "w=2"]) == 0
    text = capsys.readouterr().out
    assert "w -> w**2 -> cos(w**2) -> out" in text and "pow" not in text
    out, leaves = mx.parse("cos(w**2) + sin(w**2)", w=2.0)
    assert repr(mx.paths(out, leaves["w"])[0]).startswith("Path(w -> w**2 -> cos(w**2) -> cos(w**2) + sin(w**2);")
    src = mx.draw(out).source
    assert "<i>cos(w**2)</i>" in src and "<i>w**2</i>" in src


def test_op_label_reads_rows_and_strings():
    from microgradx import Tensor

    x = mx.Value(2.0)
    assert op_label(x ** 2) == "**2" and op_label(x.tanh()) == "tanh" and op_label(x) == ""
    t = Tensor([[1.0, 2.0]])
    # Tensor nodes carry their row: the accessor shows the row's own label (the tables, not a copy, are the oracle).
    from microgradx.tensor import TENSOR_OPS

    assert op_label(t @ Tensor([[1.0], [1.0]])) == TENSOR_OPS["matmul"].label and op_label(t.tanh()) == "tanh"


def test_latex_sets_multi_letter_names_upright():
    out, leaves = mx.parse("x*y + sin(x)", x=0.3, y=1.7)
    out.label = "out"
    from microgradx.symbolic import derivative_latex

    tex = derivative_latex(out, leaves["x"])
    assert tex.startswith(r"\frac{\partial \mathrm{out}}{\partial x} = ")
    assert not re.search(r"\\partial out", tex)


def test_cli_draw_highlights_one_numbered_path_or_all(tmp_path, capsys):
    assert main(["draw", "cos(w**2) + sin(w**2)", "--at", "w=2", "--highlight-path", "w:2"]) == 0
    one = capsys.readouterr().out
    hot = mx.render.THEMES["default"].highlight
    out, leaves = mx.parse("cos(w**2) + sin(w**2)", w=2.0)
    second = mx.paths(out, leaves["w"])[1]
    assert any(mx.text.op_label(n) == "sin" for n in second.nodes)
    hot_edges = [line for line in one.splitlines() if "->" in line and f'color="{hot}"' in line and "[label=<z" in line]
    assert len(hot_edges) == 3 and any("-0.6536" in line for line in hot_edges)  # w->**2, a->sin, sin->+
    assert main(["draw", "cos(w**2) + sin(w**2)", "--at", "w=2", "--highlight-paths", "w"]) == 0
    every = capsys.readouterr().out
    assert len([line for line in every.splitlines() if "[label=<z" in line and f'color="{hot}"' in line]) == 5
    assert main(["draw", "cos(w**2)", "--at", "w=2", "--highlight-path", "w:3"]) == 2
    assert "numbered 1 to 1" in capsys.readouterr().err


def test_cli_draw_number_format_and_its_old_name(capsys):
    assert main(["draw", "x*y", "--at", "x=2,y=3", "--number-format", ".2f"]) == 0
    assert "data 6.00" in capsys.readouterr().out
    assert main(["draw", "x*y", "--at", "x=2,y=3", "--fmt", ".2f"]) == 0
    done = capsys.readouterr()
    assert "data 6.00" in done.out and "--fmt is deprecated" in done.err
    assert main(["draw", "x*y", "--at", "x=2,y=3", "--number-format", "png"]) == 2
    assert "file extension" in capsys.readouterr().err
    assert main(["draw", "x*y", "--at", "x=2,y=3", "--forward-only"]) == 0
    assert "<td>grad" not in capsys.readouterr().out


def test_cli_draw_output_folders_are_checked(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MICROGRADX_DOT", "pure")
    blocker = tmp_path / "a.pdf"
    blocker.write_text("")
    assert main(["draw", "x*y", "--at", "x=2,y=3", "-o", str(blocker / "x.svg")]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
    assert main(["draw", "x*y", "--at", "x=2,y=3", "-o", str(tmp_path / "no" / "dir" / "a.png")]) == 2
    assert "does not exist" in capsys.readouterr().err and not (tmp_path / "no").exists()
    assert main(["draw", "x*y", "--at", "x=2,y=3", "-o", str(tmp_path / "s.png"), "--size", "16:9",
                 "--theme", "slide", "--dpi", "48"]) == 0
    from PIL import Image

    assert max(Image.open(tmp_path / "s.png").size) <= 962  # 16:9 at 48 dpi: 960 x 540


def test_tour_writes_slide_sized_images(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MICROGRADX_DOT", "pure")
    assert main(["tour", "--out", str(tmp_path / "t"), "--format", "png", "--theme", "slide", "--size", "16:9"]) == 0
    from PIL import Image

    for name in ("1-forward.png", "2-backward.png", "3-path-w1.png"):
        w, h = Image.open(tmp_path / "t" / name).size
        assert w <= 1930 and h <= 1090 and max(w / 1920, h / 1080) > 0.98
    assert "seed 00" not in capsys.readouterr().out


def test_op_label_reads_a_row_object_with_name_and_label():
    # Tensor ops are becoming rows with .name and .label: the accessor reads those as it reads strings.
    from types import SimpleNamespace

    node = SimpleNamespace(op=SimpleNamespace(name="matmul", label="@"), parents=(), label=None)
    assert op_label(node) == "@"
    node.op.label = None
    assert op_label(node) == "matmul"
    from microgradx import Tensor

    t = Tensor([1.0, 2.0], label="t")
    assert op_label(t ** 2) == op_label(mx.Value(1.0) ** 2) and node_name(t ** 2) == "t**2"  # as on Values
