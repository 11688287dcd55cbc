"""Compare microgradx.optim trajectories with PyTorch's optimizers on a small quadratic and a small regression.

Each optimizer runs the same number of steps from the same start in both libraries, in float64; the script
prints the largest absolute difference between the two parameter trajectories. Needs torch (skips without it).
Run: ``python benchmarks/optim_vs_torch.py [--steps N]``.
"""

from __future__ import annotations

import argparse
import importlib.util

import numpy as np

from microgradx import optim


class Param:
    """The optimizer protocol, nothing more: an array ``data`` and its ``grad``."""

    def __init__(self, data: np.ndarray) -> None:
        self.data, self.grad = data, None


def quadratic_problem():
    """f(x) = 1/2 x^T A x - b^T x with an ill-conditioned A (condition number 50): grad = A x - b."""
    A = np.array([[50.0, 2.0, 0.0], [2.0, 5.0, 1.0], [0.0, 1.0, 1.0]])
    b = np.array([1.0, -2.0, 0.5])

    def grads(ps):
        (x,) = ps
        return [A @ x - b]
    return [np.array([1.0, -1.0, 2.0])], grads


def regression_problem():
    """Mean squared error of a linear model y = X w + c on 32 seeded points, 4 features: grads by hand."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(32, 4))
    y = X @ np.array([1.5, -2.0, 0.5, 3.0]) + 0.7 + 0.1 * rng.normal(size=32)

    def grads(ps):
        w, c = ps
        r = X @ w + c - y
        return [2 * X.T @ r / len(y), np.array(2 * r.mean())]
    return [np.zeros(4), np.array(0.0)], grads


# (label, microgradx constructor, torch class name, torch keyword arguments)
CASES = [
    ("SGD", lambda p: optim.SGD(p, lr=0.01), "SGD", dict(lr=0.01)),
    ("SGD momentum", lambda p: optim.SGD(p, lr=0.01, momentum=0.9), "SGD", dict(lr=0.01, momentum=0.9)),
    ("SGD momentum (velocity form)", lambda p: optim.SGD(p, lr=0.01, momentum=0.9, momentum_form="velocity"),
     "SGD", dict(lr=0.01, momentum=0.9)),
    ("SGD nesterov", lambda p: optim.SGD(p, lr=0.01, momentum=0.9, nesterov=True), "SGD",
     dict(lr=0.01, momentum=0.9, nesterov=True)),
    ("SGD nesterov (velocity form)",
     lambda p: optim.SGD(p, lr=0.01, momentum=0.9, nesterov=True, momentum_form="velocity"), "SGD",
     dict(lr=0.01, momentum=0.9, nesterov=True)),
    ("SGD dampening + weight decay", lambda p: optim.SGD(p, lr=0.01, momentum=0.8, dampening=0.3,
                                                         weight_decay=0.05), "SGD",
     dict(lr=0.01, momentum=0.8, dampening=0.3, weight_decay=0.05)),
    ("AdaGrad", lambda p: optim.AdaGrad(p, lr=0.1), "Adagrad", dict(lr=0.1)),
    ("AdaDelta", lambda p: optim.AdaDelta(p, lr=1.0), "Adadelta", dict(lr=1.0)),
    ("RMSprop", lambda p: optim.RMSprop(p, lr=0.01), "RMSprop", dict(lr=0.01)),
    ("RMSprop centered + momentum", lambda p: optim.RMSprop(p, lr=0.01, momentum=0.5, centered=True),
     "RMSprop", dict(lr=0.01, momentum=0.5, centered=True)),
    ("Adam", lambda p: optim.Adam(p, lr=0.05), "Adam", dict(lr=0.05)),
    ("Adam amsgrad + weight decay", lambda p: optim.Adam(p, lr=0.05, amsgrad=True, weight_decay=0.01), "Adam",
     dict(lr=0.05, amsgrad=True, weight_decay=0.01)),
    ("AdamW", lambda p: optim.AdamW(p, lr=0.05, weight_decay=0.1), "AdamW", dict(lr=0.05, weight_decay=0.1)),
    ("AdaMax", lambda p: optim.AdaMax(p, lr=0.05), "Adamax", dict(lr=0.05)),
    ("NAdam", lambda p: optim.NAdam(p, lr=0.05), "NAdam", dict(lr=0.05)),
    ("RAdam", lambda p: optim.RAdam(p, lr=0.05), "RAdam", dict(lr=0.05)),
]


def run_ours(make, start, grads, steps):
    ps = [Param(x.copy()) for x in start]
    opt = make(ps)
    path = []
    for _ in range(steps):
        for p, g in zip(ps, grads([p.data for p in ps]), strict=True):
            p.grad = g
        opt.step()
        path.append(np.concatenate([p.data.ravel() for p in ps]))
    return np.array(path)


def run_torch(torch, cls, kwargs, start, grads, steps):
    ps = [torch.tensor(x.copy(), dtype=torch.float64, requires_grad=True) for x in start]
    opt = getattr(torch.optim, cls)(ps, **kwargs)
    path = []
    for _ in range(steps):
        for p, g in zip(ps, grads([p.detach().numpy() for p in ps]), strict=True):
            p.grad = torch.from_numpy(np.asarray(g, dtype=np.float64).copy())
        opt.step()
        path.append(np.concatenate([p.detach().numpy().ravel().copy() for p in ps]))
    return np.array(path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args(argv)
    if importlib.util.find_spec("torch") is None:
        print("torch is not installed: skipping the comparison (pip install torch)")
        return
    import torch

    # NOTE: torch keeps some optimizer scalars (NAdam's product of mu_t) in the default dtype: make it float64.
    torch.set_default_dtype(torch.float64)
    problems = {"quadratic": quadratic_problem(), "regression": regression_problem()}
    print(f"max |microgradx - torch| over {args.steps} steps, float64, per optimizer (torch {torch.__version__})")
    print(f"{'optimizer':<32}" + "".join(f"{name:>14}" for name in problems))
    worst = 0.0
    for label, make, cls, kwargs in CASES:
        row = []
        for start, grads in problems.values():
            diff = float(np.max(np.abs(run_ours(make, start, grads, args.steps)
                                       - run_torch(torch, cls, kwargs, start, grads, args.steps))))
            worst = max(worst, diff)
            row.append(diff)
        print(f"{label:<32}" + "".join(f"{d:>14.3g}" for d in row))
    print(f"largest difference: {worst:.3g}")


if __name__ == "__main__":
    main()
