"""``microgradx draw``: draw the graph of an expression."""

from __future__ import annotations

import argparse
import sys

from ._common import expr_command, expression, leaf_names
from .tour import add_drawing_options


def _one_path(leaves: dict, spec: str):
    """``w:2`` -> (the input w, 2): path number 2 from w, numbered as ``microgradx paths`` lists them."""
    name, colon, k = spec.partition(":")
    if not colon or not k.strip().isdigit():
        raise ValueError(f"--highlight-path {spec!r}: expected NAME:K such as w:1 (path K from input NAME, "
                         "numbered as `microgradx paths` lists them)")
    (w,) = leaf_names(leaves, name, "--highlight-path")
    return w, int(k)


def run(args: argparse.Namespace) -> int:
    from ..render import check_output_path, draw, nth_path, path_nodes

    if args.fmt is not None:
        print("microgradx draw: note: --fmt is deprecated, use --number-format", file=sys.stderr)
    number_format = args.fmt if args.fmt is not None else args.number_format
    if args.output is not None:
        check_output_path(args.output)  # before any work: a missing folder is refused, never created
    out, leaves = expression(args)
    if not args.forward_only:
        out.backward()
    highlight: list = []
    if args.highlight_paths:
        # Every path from w lights up: the nodes on some path from w, found in linear time (no enumeration).
        for w in leaf_names(leaves, args.highlight_paths, "--highlight-paths"):
            highlight.extend(path_nodes(out, w))
    for spec in args.highlight_path or ():
        w, k = _one_path(leaves, spec)
        highlight.append(nth_path(out, w, k))
    options = {k: getattr(args, k) for k in ("theme", "direction", "size", "dpi") if getattr(args, k) is not None}
    d = draw(out, grads=False if args.no_grads else None, derivatives=not args.no_derivatives,
             highlight=_mixed(highlight), number_format=number_format, title=args.title, **options)
    if args.output is None:
        sys.stdout.write(d.source)
    else:
        print(f"wrote {d.save(args.output)}")
    return 0


def _mixed(items: list):
    """Paths and node sets cannot share one highlight list: a path keeps its own edges, nodes light theirs."""
    from ..graph import Path

    if not items:
        return None
    paths = [p for p in items if isinstance(p, Path)]
    return paths if paths else items


def add_parser(sub) -> None:
    p = expr_command(
        sub, "draw", "draw the graph of an expression (svg, png, pdf or dot)",
        "Build the graph of EXPR at the given inputs, run backward, and draw it: value nodes with their names, "
        "data and grad, op nodes, and each edge labelled with its local derivative z and its contribution S*z. "
        "Without -o the DOT text is printed.",
        ["'cos(w**2) + sin(w**2)' --at w=2 -o graph.svg",
         "'tanh(x*w + b)' --at x=2,w=-0.5,b=1 -o slide.png --theme slide --size 16:9",
         "'cos(w**2) + sin(w**2)' --at w=2 --highlight-paths w -o paths.svg",
         "'cos(w**2) + sin(w**2)' --at w=2 --highlight-path w:2 -o path2.svg"], run)
    p.add_argument("-o", "--output", help="file to write; the format comes from the extension "
                                          "(.svg, .png, .pdf, .dot); its folder must exist")
    add_drawing_options(p)
    p.add_argument("--highlight-paths", metavar="NAME[,NAME]", help="highlight every path from these inputs")
    p.add_argument("--highlight-path", metavar="NAME:K", action="append",
                   help="highlight path K from input NAME, numbered as `microgradx paths` lists them (repeatable)")
    p.add_argument("--forward-only", action="store_true", help="do not run backward first (no gradients shown)")
    p.add_argument("--no-grads", action="store_true", help="hide gradients")
    p.add_argument("--no-derivatives", action="store_true", help="hide the edge derivatives")
    p.add_argument("--number-format", default=".4g", metavar="SPEC",
                   help="format spec of the numbers in the drawing (default .4g; the output format comes from "
                        "the -o extension)")
    p.add_argument("--fmt", default=None, help=argparse.SUPPRESS)  # the former name of --number-format
    p.add_argument("--title", help="a title above the drawing")
