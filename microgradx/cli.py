"""The ``microgradx`` command: ``microgradx tour`` walks through backpropagation on seed 001's Example 3;
``microgradx grade`` grades students' autodiff engines."""

from __future__ import annotations

import argparse
import os
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


def _add_grade_parser(sub) -> None:
    p = sub.add_parser(
        "grade", help="grade students' autodiff engines (property suite, sandbox, reports)",
        description="Grade the micrograd-style Value class in each ENGINE file: every rule (forward values, local "
                    "gradients, numbers on either side, accumulation, order, seed, deep graphs, linear time, "
                    "unchanged inputs) is checked by Hypothesis, each example run in a sandboxed child process. "
                    "Exit status: 0 every rule holds, 1 some rule fails, 2 usage or setup error.",
        epilog="examples: microgradx grade engine.py --json report.json | microgradx grade submissions/*/engine.py "
               "--jobs 4 --csv grades.csv | microgradx grade --make-autograder hw.toml -o autograder.zip")
    p.add_argument("engines", nargs="*", metavar="ENGINE", help="a student's Python file defining Value")
    p.add_argument("--assignment", metavar="TOML", help="assignment file: ops, weights, tolerances, limits")
    p.add_argument("--ops", metavar="OPS", help="comma-separated ops to grade (default: those the engine has)")
    p.add_argument("--rules", metavar="NAMES", help="comma-separated rule names to run; * matches anything")
    p.add_argument("--seed", type=int, help="Hypothesis seed (default: derandomized, the same every run)")
    p.add_argument("--examples", type=int, metavar="N", help="Hypothesis examples per rule")
    p.add_argument("--jobs", type=int, default=1, metavar="N", help="engines graded in parallel (default 1)")
    p.add_argument("--json", metavar="FILE", help="write the report as JSON")
    p.add_argument("--gradescope", metavar="FILE", help="write Gradescope results.json (one engine)")
    p.add_argument("--junit", metavar="FILE", help="write JUnit XML (one engine)")
    p.add_argument("--csv", metavar="FILE", help="write one row of scores per engine")
    p.add_argument("--quiet", action="store_true", help="one summary line per engine")
    p.add_argument("--make-autograder", metavar="TOML", help="build a Gradescope autograder bundle for TOML")
    p.add_argument("-o", "--output", metavar="ZIP", default="autograder.zip", help="bundle path (default: "
                                                                                       "autograder.zip)")
    p.set_defaults(func=_grade)


def _grade(args: argparse.Namespace) -> int:
    import dataclasses
    import json

    from .grading.assignment import Assignment, AssignmentError, load_assignment

    err = sys.stderr.write
    try:
        if args.make_autograder:
            from .grading.autograder import make_autograder

            load_assignment(args.make_autograder)  # refuse a broken file now, not on Gradescope
            path = make_autograder(args.make_autograder, args.output)
            print(f"wrote {path}: upload it as the autograder of a Gradescope programming assignment")
            return 0
        if not args.engines:
            err("microgradx grade: give at least one ENGINE file (or --make-autograder TOML)\n")
            return 2
        if len(args.engines) > 1 and (args.gradescope or args.junit):
            err("microgradx grade: --gradescope and --junit describe one engine; use --csv or --json for many\n")
            return 2
        asg = load_assignment(args.assignment) if args.assignment else Assignment()
        if args.examples is not None:
            if args.examples < 1:
                raise AssignmentError(f"--examples must be at least 1, got {args.examples}")
            asg = dataclasses.replace(asg, examples=args.examples)
        ops = [o.strip() for o in args.ops.split(",") if o.strip()] if args.ops else None
        only = [r.strip() for r in args.rules.split(",") if r.strip()] if args.rules else None
        missing = [e for e in args.engines if not os.path.isfile(e)]
        if missing:
            if args.gradescope:  # the student submitted no engine file: that is a zero, not a crash
                with open(args.gradescope, "w") as f:
                    json.dump({"score": 0, "output": f"no engine file {missing[0]!r} was submitted "
                                                     f"(expected {asg.file})"}, f)
            err(f"microgradx grade: no such engine file: {', '.join(missing)}\n")
            return 2
        from .grading.report import write_csv
        from .grading.runner import grade, grade_many

        if len(args.engines) == 1:
            reports = [grade(args.engines[0], asg, ops=ops, seed=args.seed, only=only)]
        else:
            reports = grade_many(args.engines, asg, ops=ops, seed=args.seed, only=only, jobs=max(1, args.jobs))
    except AssignmentError as e:
        err(f"microgradx grade: {e}\n")
        return 2
    for rep in reports:
        if args.quiet or len(reports) > 1:
            status = "pass" if rep.passed else "FAIL"
            print(f"{status} {rep.engine}: {rep.score:g}/{rep.max_score:g}")
        else:
            print(rep.text(), end="")
    if args.json:
        data = reports[0].to_dict() if len(reports) == 1 else [r.to_dict() for r in reports]
        with open(args.json, "w") as f:
            json.dump(data, f, indent=2)
    reports[0].write(gradescope=args.gradescope, junit=args.junit)
    if args.csv:
        write_csv(reports, args.csv)
    return 0 if all(r.passed for r in reports) else 1


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
    _add_grade_parser(sub)
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
