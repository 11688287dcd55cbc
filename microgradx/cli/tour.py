"""``microgradx tour``: the worked example of backpropagation, printed step by step, with drawings."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def tour(out=None, folder: str | Path | None = None, fmt: str = "svg") -> None:
    """Print seed 001's Example 3: forward values, backward node by node, gradients, one descent step.

    With ``folder`` it also writes drawings there (before and after backward, and one path highlighted).
    """
    from .. import graph
    from ..examples import seed001_example3
    from ..stepper import describe, step
    from ..text import formula, name, number

    write = (out or sys.stdout).write
    ex = seed001_example3()
    write("microgradx tour: seed 001, Example 3\n")
    write("One input x, one sigmoid neuron per layer, squared error J = (yhat - y)**2.\n\n")
    write("Forward pass\n")
    for node in ex.nodes:
        write(f"  {name(node):>6} = {formula(node):<18} = {node.data:.5f}\n")

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
    after = seed001_example3(w1=w1, w2=w2)
    write(f"\nOne gradient-descent step with learning rate {lr:g}: w <- w - lr * dJ/dw\n")
    write(f"  (w1, w2) = ({ex.w1.data:g}, {ex.w2.data:g}) -> ({w1:.5f}, {w2:.5f})\n")
    write(f"  yhat {ex.yhat.data:.5f} -> {after.yhat.data:.5f}   (target y = {ex.y.data:g})\n")
    write(f"  J    {ex.J.data:.5f} -> {after.J.data:.5f}\n")
    if folder is not None:
        _tour_drawings(write, Path(folder), fmt)


def _tour_drawings(write, folder: Path, fmt: str) -> None:
    from .. import graph
    from ..examples import seed001_example3
    from ..render import RenderError, draw, find_renderer

    fresh = seed001_example3()
    drawings = {"1-forward": draw(fresh.J, grads=False, title="Example 3: forward pass")}
    fresh.J.backward()
    drawings["2-backward"] = draw(fresh.J, title="Example 3 after backward: z on each edge, S*z its contribution")
    drawings["3-path-w1"] = draw(fresh.J, highlight=graph.paths(fresh.J, fresh.w1),
                                 title="The one path from w1 to J: dJ/dw1 is the product of its z")
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
    tour(folder=args.out, fmt=args.format)
    return 0



def add_parser(sub) -> None:
    p = sub.add_parser("tour", help="walk through backprop on seed 001's Example 3",
                       description="Rebuild seed 001's Example 3 and print the forward pass, the backward pass "
                                   "node by node, the gradients, the path sums and one gradient-descent step.",
                       epilog="examples:\n  microgradx tour\n  microgradx tour --out slides/ --format png",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="microgradx-tour", metavar="DIR",
                   help="folder for the drawings (default ./microgradx-tour/)")
    p.add_argument("--format", choices=("svg", "png", "pdf", "dot"), default="svg",
                   help="format of the drawings (default svg; pdf needs the system Graphviz)")
    p.set_defaults(func=run)
