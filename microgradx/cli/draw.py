"""``microgradx draw``: draw the graph of an expression."""

from __future__ import annotations

import argparse
import sys

from ._common import expr_command, expression, leaf_names


def run(args: argparse.Namespace) -> int:
    from ..graph import paths
    from ..render import draw

    out, leaves = expression(args)
    if not args.forward_only:
        out.backward()
    highlight = None
    if args.highlight_paths:
        highlight = [p for w in leaf_names(leaves, args.highlight_paths, "--highlight-paths")
                     for p in paths(out, w)]
    d = draw(out, grads=not args.no_grads, derivatives=not args.no_derivatives, direction=args.direction,
             theme=args.theme, highlight=highlight, fmt=args.fmt, title=args.title)
    if args.output is None:
        sys.stdout.write(d.source)
    else:
        print(f"wrote {d.save(args.output)}")
    return 0



def add_parser(sub) -> None:
    p = expr_command(
        sub, "draw", "draw the graph of an expression (svg, png, pdf or dot)",
        "Build the graph of EXPR at the given inputs, run backward, and draw it: value nodes with data and grad, op "
        "nodes, and each edge labelled with its local derivative z and its contribution S*z. Without -o the DOT "
        "text is printed.",
        ["'cos(w**2) + sin(w**2)' --at w=2 -o graph.svg",
         "'tanh(x*w + b)' --at x=2,w=-0.5,b=1 -o slide.png --theme slide",
         "'cos(w**2) + sin(w**2)' --at w=2 --highlight-paths w -o paths.svg"], run)
    p.add_argument("-o", "--output", help="file to write; the format comes from the extension "
                                          "(.svg, .png, .pdf, .dot)")
    p.add_argument("--theme", choices=("default", "slide", "compact"), default="default",
                   help="slide: large fonts and high contrast; compact: small")
    p.add_argument("--highlight-paths", metavar="NAME[,NAME]", help="highlight every path from these inputs")
    p.add_argument("--direction", choices=("LR", "TB"), default="LR", help="left-right (LR) or top-down (TB)")
    p.add_argument("--forward-only", action="store_true", help="do not run backward first")
    p.add_argument("--no-grads", action="store_true", help="hide gradients")
    p.add_argument("--no-derivatives", action="store_true", help="hide the edge derivatives")
    p.add_argument("--fmt", default=".4g", help="number format spec (default .4g)")
    p.add_argument("--title", help="a title above the drawing")
