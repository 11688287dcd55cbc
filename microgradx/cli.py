"""The ``microgradx`` command: ``microgradx tour`` walks through backpropagation on seed 001's Example 3."""

from __future__ import annotations

import argparse
import math
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


def _parse_at(values: list[str]) -> dict[str, float]:
    """``--at`` values (repeatable, comma-separated ``name=number`` pairs) as a dict: ``{'x': 0.3, 'y': 1.7}``.

    >>> _parse_at(["x=0.3,y=1.7", "z=-2"])
    {'x': 0.3, 'y': 1.7, 'z': -2.0}
    """
    result: dict[str, float] = {}
    for item in values:
        for pair in item.split(","):
            key, sep, text = pair.partition("=")
            key = key.strip()
            if not sep or not key.isidentifier():
                raise ValueError(f"--at: expected name=number, got {pair!r}")
            if key in result:
                raise ValueError(f"--at: {key} is given twice")
            try:
                number = float(text)
            except ValueError:
                raise ValueError(f"--at: {key} needs a number, got {text.strip()!r}") from None
            if not math.isfinite(number):
                raise ValueError(f"--at: {key} must be finite, got {text.strip()!r}")
            result[key] = number
    return result


def _add_check_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("check", help="check an expression's gradients against SymPy",
                       description="Build EXPR at the given point, differentiate it by backpropagation and check "
                                   "every local derivative and every gradient against SymPy. Exit status: 0 when "
                                   "everything agrees, 1 when something does not, 2 on usage errors.",
                       epilog="example: microgradx check 'x*y + sin(x)' --at x=0.3,y=1.7 --latex")
    p.add_argument("expr", metavar="EXPR", help="the expression, e.g. 'tanh(x*w + b)'")
    p.add_argument("--at", action="append", default=[], metavar="NAME=VALUE[,NAME=VALUE...]",
                   help="the point (repeatable)")
    p.add_argument("--latex", action="store_true", help="also print the expression and its derivatives as LaTeX")
    p.add_argument("--order", type=int, choices=(1, 2), default=1, help="2 also checks second derivatives")
    p.add_argument("--max-nodes", type=int, default=60, metavar="N",
                   help="largest graph for the whole-expression layer (default 60)")
    p.set_defaults(func=_check)


def _check(args: argparse.Namespace) -> int:
    from .ops import MicrogradxError
    from .symbolic import check_with_sympy, derivative_latex, latex

    def usage_error(message: str) -> int:
        print(f"microgradx check: error: {message}", file=sys.stderr)
        return 2

    try:
        at = _parse_at(args.at)
    except ValueError as e:
        return usage_error(str(e))
    try:
        from .parse import parse
    except ImportError as e:
        return usage_error(f"the expression parser is not available ({e})")
    try:
        out, leaves = parse(args.expr, **at)
    except (MicrogradxError, ValueError, TypeError) as e:
        return usage_error(str(e))
    report = check_with_sympy(out, list(leaves.values()), order=args.order, max_nodes=args.max_nodes)
    print(report)
    if args.latex:
        print(f"\nLaTeX\n  f = {latex(out)}")
        for leaf in leaves.values():
            print(f"  {derivative_latex(out, leaf)}")
    return 0 if report.ok else 1


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
    p.set_defaults(func=_tour)
    _add_check_parser(sub)
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
