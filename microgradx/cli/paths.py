"""``microgradx paths``: every path from an input to the output, with its product of derivatives."""

from __future__ import annotations

import argparse

from ._common import expr_command, expression, leaf_names


def run(args: argparse.Namespace) -> int:
    from ..graph import grad, paths
    from ..text import node_name, number

    out, leaves = expression(args)
    for w in leaf_names(leaves, args.wrt, "--wrt"):
        found = paths(out, w, limit=args.limit)
        print(f"{len(found)} path(s) from {w.label} to the output; each contributes the product of its edge "
              "derivatives z")
        total = 0.0
        for p in found:
            total += p.product
            print("  " + " -> ".join(node_name(n) for n in p.nodes))
            print("      " + " * ".join(number(z) for z in p.derivatives) + f" = {number(p.product)}")
        (g,) = grad(out, [w])
        print(f"  sum over paths = {number(total)};  backward gives d out / d {w.label} = {number(g)}")
    return 0



def add_parser(sub) -> None:
    p = expr_command(
        sub, "paths", "list every path from an input to the output, with its product of derivatives",
        "List every path from the input(s) named by --wrt to the output, the product of the edge derivatives "
        "along each, and their sum, which equals the gradient backward computes.",
        ["'cos(w**2) + sin(w**2)' --wrt w --at w=2", "'x*y + x' --wrt x,y --at x=2,y=3"], run)
    p.add_argument("--wrt", required=True, metavar="NAME[,NAME]", help="the input(s) to differentiate by")
    p.add_argument("--limit", type=int, default=1000, help="refuse to list more paths than this (default 1000)")
