"""``microgradx grade``: grade students' autodiff engines."""

from __future__ import annotations

import argparse
import os
import sys

from ..grading.assignment import HOMEWORK_KINDS


def add_parser(sub) -> None:
    p = sub.add_parser(
        "grade", help="grade students' autodiff engines (property suite, sandbox, reports)",
        description="Grade the micrograd-style Value class in each ENGINE file: every rule (forward values, local "
                    "gradients, numbers on either side, accumulation, order, seed, deep graphs, linear time, "
                    "unchanged inputs) is checked by Hypothesis, each example run in a sandboxed child process. "
                    "With --kind tensor, ENGINE defines a NumPy Tensor instead (each op's gradient, broadcasting, "
                    "accumulation, order, random broadcasting programs). "
                    "With --kind layers each file holds layer forward/backward functions in NumPy (affine_forward, "
                    "conv_backward_naive...), checked against microgradx's Tensor ops and their VJP. "
                    "Exit status: 0 every rule holds (warnings allowed), 1 some rule fails, 2 usage error, "
                    "3 an engine file cannot be graded (syntax error, import error, no class, import timeout).",
        epilog="examples: microgradx grade engine.py --json report.json | microgradx grade submissions/*/engine.py "
               "--jobs 4 --csv grades.csv | microgradx grade --kind layers layers.py | "
               "microgradx grade --make-autograder hw.toml -o autograder.zip")
    p.add_argument("engines", nargs="*", metavar="ENGINE", help="a student's Python file defining Value")
    p.add_argument("--assignment", metavar="TOML", help="assignment file: ops, weights, tolerances, limits")
    p.add_argument("--kind", choices=HOMEWORK_KINDS, help="what each file is: a scalar Value engine (value, the "
                                                           "default), a NumPy Tensor engine (tensor) or layer "
                                                           "forward/backward functions (layers); default: the "
                                                           "assignment file's kind")
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
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import dataclasses
    import json

    from ..grading.assignment import Assignment, AssignmentError, load_assignment

    err = sys.stderr.write
    try:
        if args.make_autograder:
            from ..grading.autograder import make_autograder

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
        if args.kind and args.kind != asg.kind:
            if args.assignment:
                raise AssignmentError(f"--kind {args.kind} contradicts the assignment file's kind {asg.kind!r}")
            asg = dataclasses.replace(asg, kind=args.kind)
        if args.ops and asg.kind == "layers":
            raise AssignmentError("--ops chooses the ops of an engine; the layers kind grades the pairs "
                                  "[layers] pairs lists (or every pair the file defines)")
        if args.examples is not None:
            if args.examples < 1:
                raise AssignmentError(f"--examples must be at least 1, got {args.examples}")
            asg = dataclasses.replace(asg, examples=args.examples)
        ops = [o.strip() for o in args.ops.split(",") if o.strip()] if args.ops else None
        only = [r.strip() for r in args.rules.split(",") if r.strip()] if args.rules else None
        missing = [e for e in args.engines if not os.path.isfile(e)]
        if missing:
            if args.gradescope:  # the student submitted no engine file: that is a zero, not a crash
                from ..grading.report import write_atomic

                why = f"no engine file {missing[0]!r} was submitted (expected {asg.file})"
                write_atomic(args.gradescope, json.dumps({"score": 0, "output": why}))
            err(f"microgradx grade: no such engine file: {', '.join(missing)}\n")
            return 2
        from ..grading.report import write_atomic, write_csv
        from ..grading.runner import grade, grade_many

        if len(args.engines) == 1:
            reports = [grade(args.engines[0], asg, ops=ops, seed=args.seed, only=only)]
        else:
            reports = grade_many(args.engines, asg, ops=ops, seed=args.seed, only=only, jobs=max(1, args.jobs))
    except AssignmentError as e:
        err(f"microgradx grade: {e}\n")
        return 2
    for rep in reports:
        if args.quiet or len(reports) > 1:
            status = "SETUP ERROR" if rep.setup else "pass" if rep.passed else "FAIL"
            print(f"{status} {rep.engine}: {rep.score:g}/{rep.max_score:g}")
        else:
            print(rep.text(), end="")
    if args.json:
        data = reports[0].to_dict() if len(reports) == 1 else [r.to_dict() for r in reports]
        write_atomic(args.json, json.dumps(data, indent=2))
    reports[0].write(gradescope=args.gradescope, junit=args.junit)
    if args.csv:
        write_csv(reports, args.csv)
    # The worst engine decides: a file that cannot be graded (3) before a failed rule (1) before a pass (0).
    return max(r.exit_status for r in reports)
