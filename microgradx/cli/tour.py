"""``microgradx tour``: the worked example of backpropagation, printed step by step, with drawings."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..examples import SOURCE

DRAWING_OPTIONS = ("theme", "direction", "size", "dpi")


def tour(out=None, folder: str | Path | None = None, fmt: str = "svg", **drawing: object) -> None:
    """Print Example 3 of the thesis: forward values, backward node by node, gradients, one descent step.

    With ``folder`` it also writes drawings there (before and after backward, and one path highlighted);
    ``drawing`` passes ``theme``, ``direction``, ``size`` and ``dpi`` on to ``draw``.
    """
    from .. import graph
    from ..examples import example3
    from ..stepper import describe, step
    from ..text import formula, node_name, number

    write = (out or sys.stdout).write
    ex = example3()
    write(f"microgradx tour: Example 3 of {SOURCE}\n")
    write("One input x, one sigmoid neuron per layer, squared error J = (yhat - y)**2.\n\n")
    write("Forward pass\n")
    for node in ex.nodes:
        write(f"  {node_name(node):>6} = {formula(node):<18} = {node.data:.5f}\n")

    write("\nBackward pass, node by node: S(node) = dJ/dnode; S(parent) += S(node) * z(parent, node)\n")
    # The stepper runs the same backward generator as backward(), one event at a time.
    stepper = step(ex.J)
    for ev in stepper:
        write("  " + describe(ev, total=stepper.total).replace("\n", "\n  ") + "\n")

    dw1, dw2 = ex.w1.grad, ex.w2.grad  # the stepper ran the backward pass to the end
    write(f"\nGradients\n  dJ/dw1 = {dw1:.5f}\n  dJ/dw2 = {dw2:.5f}\n")

    found = graph.paths(ex.J, ex.w1)
    write(f"\nPath sums for dJ/dw1: {len(found)} path(s), each the product of its edge derivatives\n")
    for p in found:
        write("  " + " * ".join(number(z) for z in p.derivatives) + f" = {p.product:.5f}\n")

    lr = 1.0
    w1, w2 = ex.w1.data - lr * dw1, ex.w2.data - lr * dw2
    after = example3(w1=w1, w2=w2)
    write(f"\nOne gradient-descent step with learning rate {lr:g}: w <- w - lr * dJ/dw\n")
    write(f"  (w1, w2) = ({ex.w1.data:g}, {ex.w2.data:g}) -> ({w1:.5f}, {w2:.5f})\n")
    write(f"  yhat {ex.yhat.data:.5f} -> {after.yhat.data:.5f}   (target y = {ex.y.data:g})\n")
    write(f"  J    {ex.J.data:.5f} -> {after.J.data:.5f}\n")
    if folder is not None:
        _tour_drawings(write, Path(folder), fmt, drawing)


def _tour_drawings(write, folder: Path, fmt: str, options: dict) -> None:
    from .. import graph
    from ..examples import example3
    from ..render import RenderError, check_output_path, draw, find_renderer

    # The tour's folder is its own output (default ./microgradx-tour/), so it is created; its parent must exist.
    if not folder.is_dir():
        check_output_path(folder)
        folder.mkdir()
    fresh = example3()
    drawings = {"1-forward": draw(fresh.J, title="Example 3: forward pass", **options)}
    fresh.J.backward()
    drawings["2-backward"] = draw(fresh.J, title="Example 3 after backward: z on each edge, S*z its contribution",
                                  **options)
    drawings["3-path-w1"] = draw(fresh.J, highlight=graph.paths(fresh.J, fresh.w1),
                                 title="The one path from w1 to J: dJ/dw1 is the product of its z", **options)
    write(f"\nDrawings (the graph before and after backward, and the path from w1), in {folder}/\n")
    try:
        renderer = find_renderer()
        for stem, d in drawings.items():
            write(f"  {d.save(folder / f'{stem}.{fmt}')}\n")
        write(f"  rendered with {renderer.kind} dot ({renderer.exe})\n")
    except RenderError as e:
        for stem, d in drawings.items():
            write(f"  {d.save(folder / f'{stem}.dot')}\n")
        write(f"  wrote DOT text only: {e}\n")


def run(args: argparse.Namespace) -> int:
    options = {k: getattr(args, k) for k in DRAWING_OPTIONS if getattr(args, k) is not None}
    tour(folder=args.out, fmt=args.format, **options)
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("tour", help="walk through backprop on a worked example (Example 3 of a thesis on "
                                    "gradient descent)",
                       description=f"Rebuild Example 3 of {SOURCE} and print the forward pass, the backward "
                                   "pass node by node, the gradients, the path sums and one gradient-descent step.",
                       epilog="examples:\n  microgradx tour\n  microgradx tour --out slides/ --format png "
                              "--theme slide --size 16:9",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="microgradx-tour", metavar="DIR",
                   help="folder for the drawings (default ./microgradx-tour/; created if missing)")
    p.add_argument("--format", choices=("svg", "png", "pdf", "dot"), default="svg",
                   help="format of the drawings (default svg; pdf needs the system Graphviz)")
    add_drawing_options(p)
    p.set_defaults(func=run)


def add_drawing_options(p: argparse.ArgumentParser) -> None:
    """``--theme``, ``--direction``, ``--size`` and ``--dpi``: how a drawing is laid out (shared with ``draw``)."""
    p.add_argument("--theme", choices=("default", "slide", "compact"), default=None,
                   help="slide: large fonts and high contrast; compact: small")
    p.add_argument("--direction", choices=("LR", "TB"), default=None, help="left-right (LR) or top-down (TB)")
    p.add_argument("--size", metavar="W:H|WxH", default=None,
                   help="fill a frame: an aspect ratio such as 16:9 (1920x1080 pixels) or pixels such as 1280x720; "
                        "long graphs are cut into rows")
    p.add_argument("--dpi", type=float, default=None, help="pixels per inch of PNG output (default 96)")
