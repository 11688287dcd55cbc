"""The ``microgradx`` command: ``microgradx tour`` walks through backpropagation on seed 001's Example 3;
``microgradx grade`` grades students' autodiff engines; ``microgradx train`` trains an MLP on a data set."""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["main", "tour", "parse_at", "add_at_option"]


def tour(out=None, folder: str | Path | None = None, fmt: str = "svg") -> None:
    """Print seed 001's Example 3: forward values, backward node by node, gradients, one descent step.

    With ``folder`` it also writes drawings there (before and after backward, and one path highlighted).
    """
    from . import graph
    from .examples import seed001_example3
    from .stepper import describe, step
    from .text import formula, name, number

    write = (out or sys.stdout).write
    ex = seed001_example3()
    write("microgradx tour: seed 001, Example 3\n")
    write("One input x, one sigmoid neuron per layer, squared error J = (yhat - y)**2.\n\n")
    write("Forward pass\n")
    for node in ex.nodes:
        write(f"  {name(node):>6} = {formula(node):<18} = {node.data:.5f}\n")

    write("\nBackward pass, node by node: S(node) = dJ/dnode; S(parent) += S(node) * z(parent, node)\n")
    # The stepper runs the same backward generator as backward(), one event at a time.
    stepper = step(ex.J)
    for ev in stepper:
        write("  " + describe(ev, total=stepper.total).replace("\n", "\n  ") + "\n")

    dw1, dw2 = ex.w1.grad, ex.w2.grad  # the stepper ran the backward pass to the end
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
    if folder is not None:
        _tour_drawings(write, Path(folder), fmt)


def _tour_drawings(write, folder: Path, fmt: str) -> None:
    from . import graph
    from .examples import seed001_example3
    from .render import RenderError, draw, find_renderer

    fresh = seed001_example3()
    drawings = {"1-forward": draw(fresh.J, grads=False, title="Example 3: forward pass")}
    fresh.J.backward()
    drawings["2-backward"] = draw(fresh.J, title="Example 3 after backward: z on each edge, S*z its contribution")
    drawings["3-path-w1"] = draw(fresh.J, highlight=graph.paths(fresh.J, fresh.w1),
                                 title="The one path from w1 to J: dJ/dw1 is the product of its z")
    write(f"\nDrawings (the graph before and after backward, and the path from w1), in {folder}/\n")
    try:
        renderer = find_renderer()
        for stem, d in drawings.items():
            write(f"  {d.save(folder / f'{stem}.{fmt}')}\n")
        write(f"  rendered with {renderer.kind} dot ({renderer.exe})\n")
    except RenderError as e:
        for stem, d in drawings.items():
            write(f"  {d.save(folder / f'{stem}.dot')}\n")
        write(f"  wrote DOT text only: {e}\n")


def _tour(args: argparse.Namespace) -> int:
    tour(folder=args.out, fmt=args.format)
    return 0


# ---------------------------------------------------------------------------------------------------------
# Expressions on the command line: EXPR --at x=2,y=3
# ---------------------------------------------------------------------------------------------------------

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


def _expression(args: argparse.Namespace):
    from .symbolic_parse import parse

    out, leaves = parse(args.expr, **parse_at(args.at))
    if not out.label and out.parents:
        out.label = "out"  # so that steps, paths and drawings can name it as the printed d out / d w does
    return out, leaves


def _add_expr_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("expr", metavar="EXPR",
                   help="an expression such as 'cos(w**2) + sin(w**2)' (numbers, names, + - * / **, and the op "
                        "table's functions: tanh(x), sigmoid(x), leaky_relu(x, 0.1), max(x, y), ...)")
    add_at_option(p)


def _leaf_names(leaves: dict, names: str, what: str) -> list:
    chosen = []
    for n in (x.strip() for x in names.split(",") if x.strip()):
        if n not in leaves:
            raise ValueError(f"{what} {n!r}: not an input; inputs are {', '.join(leaves) or 'none'} (give them "
                             "with --at)")
        chosen.append(leaves[n])
    return chosen


def _draw(args: argparse.Namespace) -> int:
    from .graph import paths
    from .render import draw

    out, leaves = _expression(args)
    if not args.forward_only:
        out.backward()
    highlight = None
    if args.highlight_paths:
        highlight = [p for w in _leaf_names(leaves, args.highlight_paths, "--highlight-paths")
                     for p in paths(out, w)]
    d = draw(out, grads=not args.no_grads, derivatives=not args.no_derivatives, direction=args.direction,
             theme=args.theme, highlight=highlight, fmt=args.fmt, title=args.title)
    if args.output is None:
        sys.stdout.write(d.source)
    else:
        print(f"wrote {d.save(args.output)}")
    return 0


def _step(args: argparse.Namespace) -> int:
    from .stepper import describe, step

    out, leaves = _expression(args)
    s = step(out)
    if args.all:
        for ev in s:
            print(describe(ev, total=s.total))
        _print_gradients(leaves)
        return 0
    print(f"Backward pass of {args.expr}: {s.total} steps.  Enter = next, b = back, t = table, r = run to the "
          "end, q = quit")
    shown_done = False
    while True:
        try:
            cmd = input("step> ").strip().lower()
        except EOFError:
            print()
            break
        if cmd in ("q", "quit", "exit"):
            break
        if cmd in ("", "n", "next"):
            if s.done:
                print("already at the end: b = back, q = quit")
                continue
            s.next()
            print(describe(s.events[-1], total=s.total))
        elif cmd in ("b", "back"):
            s.back()
            print(describe(s.events[-1], total=s.total) if s.events else "back at the start: no step taken")
            shown_done = False
        elif cmd in ("t", "table"):
            print(s.table() if s.events else "no step taken yet")
        elif cmd in ("r", "run"):
            for ev in s:
                print(describe(ev, total=s.total))
        else:
            print(f"unknown command {cmd!r}: Enter = next, b = back, t = table, r = run, q = quit")
            continue
        if s.done and not shown_done:
            shown_done = True
            print("done: the backward pass is complete")
            _print_gradients(leaves)
    return 0


def _print_gradients(leaves: dict) -> None:
    for key, leaf in leaves.items():
        print(f"  d out / d {key} = {leaf.grad:.6g}")


def _paths(args: argparse.Namespace) -> int:
    from .graph import grad, paths
    from .stepper import node_name
    from .text import number

    out, leaves = _expression(args)
    for w in _leaf_names(leaves, args.wrt, "--wrt"):
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


def _expr_command(sub, name: str, summary: str, description: str, examples: Sequence[str], func):
    """A subcommand that takes EXPR and --at, with its examples shown by --help."""
    p = sub.add_parser(name, help=summary, description=description,
                       epilog="examples:\n" + "\n".join(f"  microgradx {name} {e}" for e in examples),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_expr_argument(p)
    p.set_defaults(func=func)
    return p


def _add_draw_parser(sub) -> None:
    p = _expr_command(
        sub, "draw", "draw the graph of an expression (svg, png, pdf or dot)",
        "Build the graph of EXPR at the given inputs, run backward, and draw it: value nodes with data and grad, op "
        "nodes, and each edge labelled with its local derivative z and its contribution S*z. Without -o the DOT "
        "text is printed.",
        ["'cos(w**2) + sin(w**2)' --at w=2 -o graph.svg",
         "'tanh(x*w + b)' --at x=2,w=-0.5,b=1 -o slide.png --theme slide",
         "'cos(w**2) + sin(w**2)' --at w=2 --highlight-paths w -o paths.svg"], _draw)
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


def _add_step_parser(sub) -> None:
    p = _expr_command(
        sub, "step", "step through the backward pass of an expression",
        "Step through the backward pass one node at a time: each step shows the node, its gradient S and, for "
        "each parent, the edge derivative z, the contribution S*z and the parent's running total. Keys: Enter = "
        "next, b = back, t = table, r = run, q = quit.",
        ["'cos(w**2) + sin(w**2)' --at w=2", "'sigmoid(x*w1)*w2' --at x=2,w1=0.75,w2=0.5 --all"], _step)
    p.add_argument("--all", action="store_true", help="print the whole trace without prompting")


def _add_paths_parser(sub) -> None:
    p = _expr_command(
        sub, "paths", "list every path from an input to the output, with its product of derivatives",
        "List every path from the input(s) named by --wrt to the output, the product of the edge derivatives "
        "along each, and their sum, which equals the gradient backward computes.",
        ["'cos(w**2) + sin(w**2)' --wrt w --at w=2", "'x*y + x' --wrt x,y --at x=2,y=3"], _paths)
    p.add_argument("--wrt", required=True, metavar="NAME[,NAME]", help="the input(s) to differentiate by")
    p.add_argument("--limit", type=int, default=1000, help="refuse to list more paths than this (default 1000)")
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


def _add_train_parser(sub) -> None:
    from .train import ACTIVATIONS, RECIPES

    defaults = "\n".join(f"  {name:<8} {r.task}, {r.optimizer} lr {r.lr:g}, {r.epochs} epochs, batch {r.batch_size}: "
                         f"{r.about}" for name, r in RECIPES.items() if name != "csv")
    p = sub.add_parser(
        "train", help="train an MLP on a data set and report test accuracy or loss",
        description="Train a multilayer perceptron (inputs-HIDDEN-outputs) with the NumPy path and report its test "
                    "accuracy (classification) or test loss (regression). Each data set has its own defaults, "
                    "which the options override. Exit status: 0 done, 2 usage error (unknown data set, missing "
                    f"file, bad option).\n\ndata sets and their defaults:\n{defaults}\n  csv      the same as wine",
        epilog="examples:\n"
               "  microgradx train --dataset digits --optimizer adam --epochs 30 --seed 0\n"
               "  microgradx train --dataset housing --optimizer sgd --lr 0.01 --plot housing.png\n"
               "  microgradx train --dataset spirals --hidden 64,64 --activation tanh --metrics-json m.json\n"
               "  microgradx train --dataset mnist --mnist-dir ~/data/mnist --optimizer sgd --lr 0.1 --epochs 20\n"
               "  microgradx train --dataset wine --csv winequality-white.csv --patience 3 --epochs 1000",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", required=True, choices=sorted(RECIPES), help="the data set (see above)")
    p.add_argument("--optimizer", help="sgd, adam, adamw, adagrad, adadelta, rmsprop, adamax, nadam or radam "
                                       "(default: the data set's)")
    p.add_argument("--lr", type=float, help="learning rate (default: the data set's)")
    p.add_argument("--epochs", type=int, help="number of epochs (default: the data set's)")
    p.add_argument("--batch-size", type=int, help="mini-batch size (default: the data set's)")
    p.add_argument("--hidden", default="128", metavar="N[,N...]", help="hidden layer sizes (default 128)")
    p.add_argument("--activation", default="relu", choices=ACTIVATIONS, help="hidden activation (default relu)")
    p.add_argument("--seed", type=int, default=0, help="seed of the split, the initial weights and the "
                                                       "mini-batch order (default 0)")
    p.add_argument("--patience", type=int, metavar="N", help="stop after N epochs without the training loss "
                                                             "improving by 1e-4 (seed 001's early stopping)")
    p.add_argument("--plot", metavar="FILE", help="save loss, metric and mini-batch-loss plots (png, svg, pdf)")
    p.add_argument("--metrics-json", metavar="FILE", help="write the results and per-epoch history as JSON")
    p.add_argument("--save", metavar="FILE.npz", help="save the trained parameters")
    p.add_argument("--mnist-dir", metavar="DIR", help="folder with the four MNIST IDX files (for --dataset mnist)")
    p.add_argument("--csv", metavar="FILE", help="the CSV file (for --dataset wine or csv)")
    p.add_argument("--sep", default=";", help="the CSV separator (default ';')")
    p.add_argument("--threads", type=int, default=1, metavar="N",
                   help="BLAS threads while training (default 1: for small matrices more threads cost more than "
                        "they give; 0 = the library's default)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (it is off anyway without a terminal)")
    p.set_defaults(func=_train)


def _train(args: argparse.Namespace) -> int:
    import json

    import numpy as np

    from .schedules import EarlyStopping
    from .train import RECIPES, evaluate, fit, make_optimizer, mlp, plot_histories, prepare, save_parameters

    err = sys.stderr.write
    recipe = RECIPES[args.dataset]
    try:
        hidden = [int(h) for h in args.hidden.split(",") if h.strip()]
    except ValueError:
        hidden = []
    epochs = recipe.epochs if args.epochs is None else args.epochs
    batch_size = recipe.batch_size if args.batch_size is None else args.batch_size
    if not hidden or min(hidden) < 1:
        err(f"microgradx train: --hidden needs positive layer sizes such as 128 or 128,64, got {args.hidden!r}\n")
        return 2
    for flag, value in (("--epochs", epochs), ("--batch-size", batch_size)):
        if value < 1:
            err(f"microgradx train: {flag} must be a positive integer, got {value}\n")
            return 2
    if args.threads < 0:
        err(f"microgradx train: --threads must be 0 (library default) or positive, got {args.threads}\n")
        return 2
    if args.patience is not None and args.patience < 1:
        err(f"microgradx train: --patience must be at least 1, got {args.patience}\n")
        return 2
    try:
        data = prepare(args.dataset, args.seed, mnist_dir=args.mnist_dir, csv=args.csv, sep=args.sep)
    except OSError as e:  # a missing or unreadable file is the user's to fix: no traceback
        err(f"microgradx train: {e}\n")
        return 2
    n_in, n_out = data.sizes
    model = mlp([n_in, *hidden, n_out], args.activation, rng=args.seed)
    opt_name = args.optimizer or recipe.optimizer
    opt = make_optimizer(opt_name, model.parameters(), args.lr if args.lr is not None else recipe.lr)
    classify = data.task == "classification"
    loss = "cross_entropy" if classify else "mse"
    metrics = ["accuracy"] if classify else []
    callbacks = [EarlyStopping("loss", patience=args.patience, min_delta=1e-4)] if args.patience else []
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=args.threads if args.threads > 0 else None):
        history = fit(model, loss, opt, (data.X_train, data.y_train), epochs, batch_size, metrics=metrics,
                      callbacks=callbacks, seed=args.seed, progress=False if args.no_progress else None,
                      label=f"{opt_name} lr {opt.lr:g}")
        test = evaluate(model, loss, (data.X_test, data.y_test), metrics)
    seconds = float(np.sum(history.seconds))
    layers = "-".join(str(n) for n in [n_in, *hidden, n_out])
    print(f"{args.dataset}: MLP {layers} {args.activation}, {opt_name} lr {opt.lr:g}, batch {batch_size}, seed "
          f"{args.seed}: {history.epochs} epoch{'s' if history.epochs != 1 else ''} in {seconds:.1f} s")
    result = {"dataset": args.dataset, "task": data.task, "layers": [n_in, *hidden, n_out],
              "activation": args.activation, "optimizer": opt_name, "lr": opt.lr, "batch_size": batch_size,
              "seed": args.seed, "epochs": history.epochs, "seconds": seconds, "n_train": len(data.X_train),
              "n_test": len(data.X_test), "train_loss": history.loss[-1], "test_loss": test["loss"]}
    if classify:
        result["test_accuracy"] = test["accuracy"]
        right = round(test["accuracy"] * len(data.X_test))
        print(f"  test accuracy {test['accuracy']:.4f} ({right}/{len(data.X_test)}), test loss {test['loss']:.4f}")
    else:
        result["test_rmse"] = math.sqrt(test["loss"]) * data.target_scale
        print(f"  test loss (MSE) {test['loss']:.4f}, test RMSE {result['test_rmse']:.4f} (target units)")
    if history.stopped_epoch is not None:
        print(f"  stopped early after epoch {history.stopped_epoch + 1}: no improvement of the loss for "
              f"{args.patience} epochs")
    result["history"] = history.to_dict(batches=False)
    if args.plot:
        print(f"  wrote {plot_histories(history, args.plot, title=f'{args.dataset}: MLP {layers}')}")
    if args.metrics_json:
        with open(args.metrics_json, "w") as f:
            json.dump(result, f, indent=2)
        print(f"  wrote {args.metrics_json}")
    if args.save:
        print(f"  wrote {save_parameters(model, args.save)}")
    return 0
def _check(args: argparse.Namespace) -> int:
    from .symbolic import check_with_sympy, derivative_latex, latex

    out, leaves = _expression(args)
    report = check_with_sympy(out, list(leaves.values()), order=args.order, max_nodes=args.max_nodes)
    print(report)
    if args.latex:
        print(f"\nLaTeX\n  {out.label} = {latex(out)}")
        for leaf in leaves.values():
            print(f"  {derivative_latex(out, leaf)}")
    return 0 if report.ok else 1


def _add_check_parser(sub) -> None:
    p = _expr_command(
        sub, "check", "check an expression's gradients against SymPy",
        "Build EXPR at the given inputs, differentiate it by backpropagation and check every local derivative and "
        "every gradient against SymPy. Exit status: 0 when everything agrees, 1 when something does not, 2 on "
        "usage errors.",
        ["'x*y + sin(x)' --at x=0.3,y=1.7 --latex", "'tanh(x)**2 * x' --at x=0.3 --order 2"], _check)
    p.add_argument("--latex", action="store_true", help="also print the expression and its derivatives as LaTeX")
    p.add_argument("--order", type=int, choices=(1, 2), default=1, help="2 also checks second derivatives")
    p.add_argument("--max-nodes", type=int, default=60, metavar="N",
                   help="largest graph for the whole-expression layer (default 60)")


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
                       epilog="examples:\n  microgradx tour\n  microgradx tour --out slides/ --format png",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="microgradx-tour", metavar="DIR",
                   help="folder for the drawings (default ./microgradx-tour/)")
    p.add_argument("--format", choices=("svg", "png", "pdf", "dot"), default="svg",
                   help="format of the drawings (default svg; pdf needs the system Graphviz)")
    p.set_defaults(func=_tour)
    _add_draw_parser(sub)
    _add_step_parser(sub)
    _add_paths_parser(sub)
    _add_grade_parser(sub)
    _add_train_parser(sub)
    _add_check_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 1 a check failed, 2 usage error)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from .ops import MicrogradxError

    try:
        return args.func(args)
    except MicrogradxError as e:
        # NOTE: errors about the user's input (a bad expression, log of a negative) are usage errors (2); a
        # drawing that cannot be rendered is a failure of this machine's setup (1).
        from .render import RenderError

        print(f"microgradx {args.command}: error: {e}", file=sys.stderr)
        return 1 if isinstance(e, RenderError) else 2
    except ValueError as e:
        print(f"microgradx {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
