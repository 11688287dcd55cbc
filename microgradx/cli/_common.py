"""What the expression subcommands share: ``EXPR --at x=2,y=3``, its parsing, and the inputs it names."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

__all__ = ["parse_at", "add_at_option", "expression", "expr_command", "leaf_names"]


def parse_at(items: Sequence[str] | None) -> dict[str, float]:
    """The inputs of ``--at x=2,y=3`` (repeatable: ``--at x=2 --at y=3``) as {name: value}.

    >>> parse_at(["x=2,y=3", "z=-1e-3"])
    {'x': 2.0, 'y': 3.0, 'z': -0.001}
    """
    import math

    values: dict[str, float] = {}
    for item in items or ():
        for part in item.split(","):
            part = part.strip()
            if not part:
                continue
            key, eq, text = part.partition("=")
            key = key.strip()
            if not eq or not key.isidentifier():
                raise ValueError(f"--at {item!r}: expected NAME=NUMBER pairs such as x=2,y=3")
            try:
                v = float(text)
            except ValueError:
                raise ValueError(f"--at {item!r}: {text.strip()!r} is not a number") from None
            if not math.isfinite(v):
                raise ValueError(f"--at {item!r}: {key} must be a finite number, got {text.strip()}")
            if key in values:
                raise ValueError(f"--at: {key} is given twice")
            values[key] = v
    return values


def add_at_option(p: argparse.ArgumentParser) -> None:
    """Add the shared ``--at NAME=VALUE[,NAME=VALUE...]`` option (repeatable) to a subcommand's parser."""
    p.add_argument("--at", action="append", metavar="NAME=VALUE[,...]", default=[],
                   help="input values, e.g. --at w=2 or --at x=2,y=3 (repeating --at works too)")


def expression(args: argparse.Namespace):
    """The graph of ``EXPR`` at the ``--at`` values and its inputs {name: leaf}; an unused --at name is an error."""
    from ..graph import topological_order
    from ..symbolic_parse import parse

    out, leaves = parse(args.expr, **parse_at(args.at))
    in_graph = {id(node) for node in topological_order(out)}
    unused = [name for name, leaf in leaves.items() if id(leaf) not in in_graph]
    if unused:  # most likely a typo in a name, which would otherwise go unnoticed
        used = [name for name in leaves if name not in unused]
        raise ValueError(f"--at {', '.join(unused)}: not used by the expression {args.expr!r} (its inputs given: "
                         f"{', '.join(used) or 'none'})")
    if not out.label and out.parents:
        out.label = "out"  # so that steps, paths and drawings can name it as the printed d out / d w does
    return out, leaves


def add_expr_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("expr", metavar="EXPR",
                   help="an expression such as 'cos(w**2) + sin(w**2)' (numbers, names, + - * / **, and the op "
                        "table's functions: tanh(x), sigmoid(x), leaky_relu(x, 0.1), max(x, y), ...)")
    add_at_option(p)


def leaf_names(leaves: dict, names: str, what: str) -> list:
    chosen = []
    for n in (x.strip() for x in names.split(",") if x.strip()):
        if n not in leaves:
            raise ValueError(f"{what} {n!r}: not an input; inputs are {', '.join(leaves) or 'none'} (give them "
                             "with --at)")
        chosen.append(leaves[n])
    return chosen



def expr_command(sub, name: str, summary: str, description: str, examples: Sequence[str], run):
    """A subcommand that takes EXPR and --at, with its examples shown by --help."""
    p = sub.add_parser(name, help=summary, description=description,
                       epilog="examples:\n" + "\n".join(f"  microgradx {name} {e}" for e in examples),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_expr_argument(p)
    p.set_defaults(func=run)
    return p

