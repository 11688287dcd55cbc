"""The backprop page as a file (self-contained, every node found in the drawing), and the frames, GIF, PDF and
LaTeX exports checked for content: one frame per event, and the last frame's totals are the gradients."""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ET

import pytest

from microgradx import Value, draw, step, topological_order
from microgradx.examples import example3, two_paths
from microgradx.page import annotate_svg

SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture(autouse=True)
def _renderer(monkeypatch):
    monkeypatch.setenv("MICROGRADX_DOT", os.environ.get("MICROGRADX_DOT", "auto"))


def example():
    """sigmoid(x*w1)*w2 with a shared input: x is used twice, so paths and totals are non-trivial."""
    x, w1, w2 = Value(2.0, label="x"), Value(0.75, label="w1"), Value(0.5, label="w2")
    out = (x * w1).sigmoid() * w2 + x * x * 0.1
    out.label = "out"
    return out, [x, w1, w2]


def numeric_gradients(h=1e-6):
    """d out / d leaf by central differences (float64), independent of the graph engine's backward."""
    def f(x, w1, w2):
        return 1 / (1 + math.exp(-x * w1)) * w2 + x * x * 0.1
    base = [2.0, 0.75, 0.5]
    grads = []
    for k in range(3):
        up, down = list(base), list(base)
        up[k] += h
        down[k] -= h
        grads.append((f(*up) - f(*down)) / (2 * h))
    return grads


def test_page_is_one_self_contained_file():
    out, _ = example()
    page = step(out).to_html()
    assert page.startswith("<!DOCTYPE html>") and page._repr_html_() in page
    # Nothing is fetched: no external script, style, image, font or frame; the only URLs are XML namespaces.
    assert not re.search(r"<(link|iframe|img)\b|\bsrc\s*=|@import|url\(", page)
    assert set(re.findall(r"https?://[^\s\"'<>)]+", page)) <= {"http://www.w3.org/2000/svg",
                                                              "http://www.w3.org/1999/xlink"}
    assert "<svg" in page and "microgradxPage(" in page


def test_the_page_finds_every_node_and_edge_of_the_drawing():
    # The page marks the drawing's SVG by graph position; a drawing whose names it cannot read would leave
    # the page without highlights, so this contract with draw() is checked on graphs with shared inputs.
    for out in (example()[0], example3().J, two_paths()[0]):
        order = topological_order(out)
        _, found = annotate_svg(draw(out).svg(), order)
        assert found["values"] == len(order)
        assert found["ops"] == sum(1 for n in order if n.parents)
        assert found["edges"] == sum(len(n.parents) for n in order)


def test_stepper_to_html_leaves_the_graph_gradients_alone(tmp_path):
    out, leaves = example()
    s = step(out)
    written = s.to_html(tmp_path / "b.html")
    assert (tmp_path / "b.html").read_text(encoding="utf-8") == written
    assert all(leaf.grad == 0.0 for leaf in leaves) and not s.events


def test_drawing_to_html_inlines_the_svg(tmp_path):
    o, _ = two_paths()
    page = draw(o).to_html(tmp_path / "d.html")
    assert "<svg" in page and "<?xml" not in page and (tmp_path / "d.html").exists()


def last_frame_totals(svg_text, order):
    """{topological index: the grad the frame prints} read from a frame's SVG."""
    root = ET.fromstring(re.sub(r"<!DOCTYPE[^>]*>", "", svg_text).encode())
    shown = {}
    for g in root.iter(f"{SVG}g"):
        title = g.find(f"{SVG}title")
        if g.get("class") != "node" or title is None or not re.fullmatch(r"v\d+", title.text or ""):
            continue
        for t in g.iter(f"{SVG}text"):
            m = re.match(r"grad (\S+)", (t.text or "").replace("\u2212", "-"))
            if m:
                shown[int(title.text[1:])] = float(m.group(1))
    return shown


def test_frames_one_per_event_and_the_last_shows_the_gradients(tmp_path):
    out, leaves = example()
    s = step(out)
    frames = s.save_frames(tmp_path / "frames")
    order = topological_order(out)
    assert len(frames) == len(order) == len(list(step(example()[0])))
    assert [p.name for p in frames] == [f"step-{k:03d}.svg" for k in range(1, len(order) + 1)]
    last = last_frame_totals(frames[-1].read_text(), order)
    for leaf, expect in zip(leaves, numeric_gradients(), strict=True):
        assert math.isclose(last[order.index(leaf)], expect, rel_tol=1e-3)
    first = last_frame_totals(frames[0].read_text(), order)
    # After one event only the output's S and its parents' first totals (S * z = 1 * 1 through the sum) are known.
    assert first == {len(order) - 1: 1.0, **{order.index(p): 1.0 for p in out.parents}}
    assert all(leaf.grad == 0.0 for leaf in leaves)  # the exports replay on the side


def test_png_frames_gif_and_pdf_have_one_image_or_page_per_event(tmp_path):
    from PIL import Image

    o, w = two_paths()
    s = step(o)
    n = len(topological_order(o))
    pngs = s.save_frames(tmp_path / "png", "png")
    assert len(pngs) == n and all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    gif = Image.open(s.save_gif(tmp_path / "b.gif"))
    assert gif.n_frames == n
    pdf = s.save_pdf(tmp_path / "h.pdf").read_bytes()
    assert pdf.startswith(b"%PDF") and len(re.findall(rb"/Type\s*/Page\b(?!s)", pdf)) == n


def test_latex_derivation_is_an_align_block_with_one_line_per_edge():
    from matplotlib.mathtext import MathTextParser

    ex = example3()
    tex = step(ex.J).to_latex()
    lines = tex.splitlines()
    assert lines[0] == r"\begin{align*}" and lines[-1] == r"\end{align*}"
    order = topological_order(ex.J)
    body = lines[1:-1]
    assert len(body) == 1 + sum(len(n.parents) for n in order)
    parser = MathTextParser("path")
    for line in body:  # every line is valid maths (mathtext has no \mathrel: read it as plain +=)
        maths = line.rstrip("\\ ").replace("&", "").replace(r"\mathrel{+}=", "+=")
        parser.parse(f"${maths}$")
    # Example 3 of "Gradient Descent Methods for Training Neural Networks" (S. Slettevold): dJ/dw1 ~ 0.02510.
    w1 = next(line for line in body if line.startswith(r"S(\mathrm{w1})"))
    assert w1.endswith(r"S(\mathrm{w1}) = 0.025097 \\")
    assert r"\frac" not in tex and r"\mathrm{out}" not in tex


# -- the command line ---------------------------------------------------------------------------------------------

def cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "microgradx.cli", *args], capture_output=True, text=True,
                          timeout=120, stdin=subprocess.DEVNULL, cwd=cwd)


def test_step_writes_page_frames_gif_pdf_and_latex(tmp_path):
    done = cli("step", "sigmoid(x*w1)*w2", "--at", "x=2,w1=0.75,w2=0.5", "--html", "b.html", "--frames", "f",
               "--gif", "b.gif", "--pdf", "h.pdf", "--latex", "d.tex", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "step>" not in done.stdout and done.stdout.count("wrote ") == 4 + 6
    assert "Backpropagation through sigmoid(x*w1)*w2" in (tmp_path / "b.html").read_text(encoding="utf-8")
    assert len(list((tmp_path / "f").iterdir())) == 6
    assert (tmp_path / "d.tex").read_text().startswith(r"\begin{align*}")
    bad = cli("step", "x*2", "--at", "x=1", "--frames", "b.html", cwd=tmp_path)
    assert bad.returncode == 2 and "is a file" in bad.stderr and "Traceback" not in bad.stderr
    for option, target in [("--html", "no/such/b.html"), ("--gif", "b.html/x.gif"), ("--pdf", "f"),
                           ("--latex", "no/d.tex"), ("--frames", "no/such/f")]:
        bad = cli("step", "x*2", "--at", "x=1", option, target, cwd=tmp_path)
        assert bad.returncode == 2 and "cannot write" in bad.stderr and "Traceback" not in bad.stderr, bad.stderr
    assert not (tmp_path / "no").exists()


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a POSIX pseudo-terminal")
def test_ctrl_c_at_the_step_prompt_ends_cleanly():
    import select
    import signal

    master, slave = os.openpty()
    def as_at_a_terminal():
        # NOTE: a shell's background job starts with SIGINT ignored, and a test runner's thread may have it
        # blocked; the child would inherit either. A user at a terminal has neither, so the child starts so.
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})

    proc = subprocess.Popen([sys.executable, "-m", "microgradx.cli", "step", "x*x", "--at", "x=3"], stdin=slave,
                            stdout=slave, stderr=slave, close_fds=True, preexec_fn=as_at_a_terminal)
    os.close(slave)
    seen = ""
    end = time.monotonic() + 30
    while "step> " not in seen and time.monotonic() < end:
        if select.select([master], [], [], 0.2)[0]:
            seen += os.read(master, 4096).decode(errors="replace")
    assert "step> " in seen
    # SIGINT is what Ctrl-C sends. NOTE: one that lands between the prompt being written and the read starting
    # is noted but does not interrupt the read (a person cannot press that fast); so it is sent again until
    # the session ends.
    code = None
    for _ in range(10):
        proc.send_signal(signal.SIGINT)
        try:
            code = proc.wait(timeout=3)
            break
        except subprocess.TimeoutExpired:
            continue
    if code is None:
        proc.kill()
        raise AssertionError(f"step did not end on SIGINT; it printed:\n{seen}")
    try:
        while select.select([master], [], [], 0.2)[0]:
            seen += os.read(master, 4096).decode(errors="replace")
    except OSError:
        pass
    os.close(master)
    assert code == 130 and "interrupted" in seen and "Traceback" not in seen
