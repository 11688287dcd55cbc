"""``microgradx train``: train an MLP on a data set and report its test accuracy or loss."""

from __future__ import annotations

import argparse
import math
import sys


def add_parser(sub) -> None:
    from ..train import ACTIVATIONS, RECIPES

    defaults = "\n".join(f"  {name:<8} {r.task}, {r.optimizer} lr {r.lr:g}, {r.epochs} epochs, batch {r.batch_size}: "
                         f"{r.about}" for name, r in RECIPES.items() if name != "csv")
    p = sub.add_parser(
        "train", help="train an MLP on a data set and report test accuracy or loss",
        description="Train a multilayer perceptron (inputs-HIDDEN-outputs) with the NumPy path and report its test "
                    "accuracy (classification) or test loss (regression). Each data set has its own defaults, "
                    "which the options override. Exit status: 0 done, 2 usage error (unknown data set, missing "
                    "file, bad option), 130 interrupted by Ctrl-C (the epochs done are still reported, plotted and "
                    f"saved).\n\ndata sets and their defaults:\n{defaults}\n  csv      the same as wine",
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
                                                             "improving by 1e-4 (Slettevold's early stopping)")
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
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json

    import numpy as np

    from ..schedules import EarlyStopping
    from ..train import (
        RECIPES,
        TrainingInterrupted,
        evaluate,
        fit,
        make_optimizer,
        mlp,
        plot_histories,
        prepare,
        save_parameters,
    )

    err = sys.stderr.write
    recipe = RECIPES[args.dataset]
    items = [h.strip() for h in args.hidden.split(",")]
    if not all(h.isdecimal() and int(h) >= 1 for h in items):  # an empty item (64,,32) is refused too
        err(f"microgradx train: --hidden needs positive layer sizes such as 128 or 128,64, got {args.hidden!r}\n")
        return 2
    hidden = [int(h) for h in items]
    epochs = recipe.epochs if args.epochs is None else args.epochs
    batch_size = recipe.batch_size if args.batch_size is None else args.batch_size
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

    interrupted = False
    with threadpool_limits(limits=args.threads if args.threads > 0 else None):
        try:
            history = fit(model, loss, opt, (data.X_train, data.y_train), epochs, batch_size, metrics=metrics,
                          callbacks=callbacks, seed=args.seed, progress=False if args.no_progress else None,
                          label=f"{opt_name} lr {opt.lr:g}")
        except TrainingInterrupted as e:  # Ctrl-C: report and save the epochs done, then exit 130
            history, interrupted = e.history, True
            err(f"microgradx train: interrupted after {history.epochs} finished epoch"
                f"{'s' if history.epochs != 1 else ''}\n")
            if not history.epochs:
                return 130
        test = evaluate(model, loss, (data.X_test, data.y_test), metrics)
    seconds = float(np.sum(history.seconds))
    layers = "-".join(str(n) for n in [n_in, *hidden, n_out])
    print(f"{args.dataset}: MLP {layers} {args.activation}, {opt_name} lr {opt.lr:g}, batch {batch_size}, seed "
          f"{args.seed}: {history.epochs} epoch{'s' if history.epochs != 1 else ''} in {seconds:.1f} s")
    result = {"dataset": args.dataset, "task": data.task, "layers": [n_in, *hidden, n_out],
              "activation": args.activation, "optimizer": opt_name, "lr": opt.lr, "batch_size": batch_size,
              "seed": args.seed, "epochs": history.epochs, "seconds": seconds, "n_train": len(data.X_train),
              "n_test": len(data.X_test), "train_loss": history.loss[-1], "test_loss": test["loss"],
              "interrupted": interrupted}
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
    return 130 if interrupted else 0
