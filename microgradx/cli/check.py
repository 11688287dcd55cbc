"""``microgradx check``: check an expression's gradients against SymPy."""

from __future__ import annotations

import argparse

from ._common import expr_command, expression


def run(args: argparse.Namespace) -> int:
    from ..symbolic import check_with_sympy, derivative_latex, latex

    out, leaves = expression(args)
    report = check_with_sympy(out, list(leaves.values()), order=args.order, max_nodes=args.max_nodes,
                              max_seconds=args.max_seconds)
    print(report)
    if args.latex:
        print(f"\nLaTeX\n  {out.label} = {latex(out)}")
        for leaf in leaves.values():
            print(f"  {derivative_latex(out, leaf)}")
    return 0 if report.ok else 1


def add_parser(sub) -> None:
    p = expr_command(
        sub, "check", "check an expression's gradients against SymPy",
        "Build EXPR at the given inputs, differentiate it by backpropagation and check every local derivative and "
        "every gradient against SymPy. Exit status: 0 when everything agrees, 1 when something does not, 2 on "
        "usage errors.",
        ["'x*y + sin(x)' --at x=0.3,y=1.7 --latex", "'tanh(x)**2 * x' --at x=0.3 --order 2"], run)
    p.add_argument("--latex", action="store_true", help="also print the expression and its derivatives as LaTeX")
    p.add_argument("--order", type=int, choices=(1, 2), default=1, help="2 also checks second derivatives")
    p.add_argument("--max-nodes", type=int, default=60, metavar="N",
                   help="largest graph for the whole-expression layer (default 60); SymPy's form of the "
                        "expression may be at most 10 times as large")
    p.add_argument("--max-seconds", type=float, default=5.0, metavar="S",
                   help="time budget of the whole-expression layer, checked between SymPy's steps (default 5)")
