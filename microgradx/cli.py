"""The ``microgradx`` command: ``microgradx tour`` walks through backpropagation on seed 001's Example 3."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

__all__ = ["main", "tour"]


def tour(out=None) -> None:
    """Print seed 001's Example 3: forward values, backward node by node, gradients, one descent step."""
    from . import graph
    from .examples import seed001_example3
    from .text import formula, name, number

    write = (out or sys.stdout).write
    ex = seed001_example3()
    write("microgradx tour: seed 001, Example 3\n")
    write("One input x, one sigmoid neuron per layer, squared error J = (yhat - y)**2.\n\n")
    write("Forward pass\n")
    for node in ex.nodes:
        write(f"  {name(node):>6} = {formula(node):<18} = {node.data:.5f}\n")

    write("\nBackward pass, node by node: S(node) = dJ/dnode; S(parent) += S(node) * z(parent, node)\n")
    for ev in graph.backprop(ex.J, trace=True):
        if not ev.parents:
            continue
        write(f"  {name(ev.node):>6}  S = {number(ev.grad)}\n")
        for p, z, c, t in zip(ev.parents, ev.partials, ev.contributions, ev.totals):
            write(f"         -> {name(p):<10} z = {number(z):<9}  S*z = {number(c):<11}  S({name(p)}) = "
                  f"{number(t)}\n")

    dw1, dw2 = graph.grad(ex.J, [ex.w1, ex.w2])
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


def _tour(args: argparse.Namespace) -> int:
    tour()
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand (``microgradx --help``)."""
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="microgradx",
        description="Automatic differentiation you can see, step through and check.",
        epilog="example: microgradx tour",
    )
    parser.add_argument("--version", action="version", version=f"microgradx {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    p = sub.add_parser("tour", help="walk through backprop on seed 001's Example 3",
                       description="Rebuild seed 001's Example 3 and print the forward pass, the backward pass "
                                   "node by node, the gradients, the path sums and one gradient-descent step.",
                       epilog="example: microgradx tour")
    p.add_argument("--out", metavar="DIR", default="microgradx-tour",
                   help="folder for the tour's drawings (default: ./microgradx-tour)")
    p.set_defaults(func=_tour)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 1 a check failed, 2 usage error)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
