"""The ``microgradx`` command: one module per subcommand, each with ``add_parser(sub)`` and ``run(args)``.

``microgradx tour`` walks through backpropagation on a worked example; ``microgradx grade`` grades students'
autodiff engines; ``microgradx train`` trains an MLP on a data set."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import check, draw, grade, paths, step, tour, train
from ._common import add_at_option, parse_at

__all__ = ["main", "build_parser", "parse_at", "add_at_option"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand (``microgradx --help``)."""
    from .. import __version__

    parser = argparse.ArgumentParser(
        prog="microgradx",
        description="Automatic differentiation you can see, step through and check.",
        epilog="example: microgradx tour",
    )
    parser.add_argument("--version", action="version", version=f"microgradx {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in (tour, draw, step, paths, check, grade, train):
        command.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 1 a check failed, 2 usage error, 130 Ctrl-C)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from ..ops import MicrogradxError

    try:
        return args.func(args)
    except MicrogradxError as e:
        # NOTE: errors about the user's input (a bad expression, log of a negative) are usage errors (2); a
        # drawing that cannot be rendered is a failure of this machine's setup (1).
        from ..render import RenderError

        print(f"microgradx {args.command}: error: {e}", file=sys.stderr)
        return 1 if isinstance(e, RenderError) else 2
    except BrokenPipeError:
        # NOTE: the reader of our output went away (`microgradx tour | head`): stop quietly, as Unix tools do, and
        # point stdout at /dev/null so that the interpreter's final flush does not complain either.
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (ValueError, OSError) as e:  # a bad option value, a missing or unreadable file: one line, no traceback
        print(f"microgradx {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C: the conventional status 128 + SIGINT, and no traceback
        print(f"microgradx {args.command}: interrupted", file=sys.stderr)
        return 130

