"""Slettevold's Example 1: steepest descent with an exact line search on f = x1**2 + 2 x2**2 - 2 x1 x2 - 2 x2.

At each iterate the engine gives the gradient (checked against SymPy's), and SymPy solves the step-size
subproblem d/dlambda f(x - lambda grad f(x)) = 0 exactly. From (0, 0): lambda* = 1/4, x1 = (0, 1/2), ... -> (1, 1).

Run ``python demos/line_search.py [--fast] [--out DIR]``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from _common import Run, pyplot, save_figure, start, table

import microgradx as mx

NAME = "line_search"
START = (0, 0)  # Slettevold's thesis: "I'll choose x(0) = (0, 0)"


def f(x1, x2):
    """Slettevold's Example 1 function; plain arithmetic, so it works on floats, Values and SymPy symbols."""
    return x1 * x1 + 2 * x2 * x2 - 2 * x1 * x2 - 2 * x2


def engine_gradient(point) -> tuple[float, float]:
    """The gradient of f at ``point`` from one backward pass of the engine."""
    x1, x2 = mx.Value(float(point[0]), label="x1"), mx.Value(float(point[1]), label="x2")
    g1, g2 = mx.grad(f(x1, x2), [x1, x2])
    return g1, g2


def exact_step(point, g) -> tuple:
    """Solve min over lambda >= 0 of f(point - lambda g) with SymPy; returns (lambda*, f(lambda) as text)."""
    import sympy as sp

    lam = sp.Symbol("lambda", nonnegative=True)
    phi = sp.expand(f(point[0] - lam * g[0], point[1] - lam * g[1]))
    roots = sp.solve(sp.diff(phi, lam), lam)
    if len(roots) != 1 or sp.diff(phi, lam, 2) <= 0:
        raise ValueError(f"line search: f(lambda) = {phi} has no single minimiser over lambda >= 0")
    return roots[0], phi


def iterate(n: int) -> list[dict]:
    """n steps of steepest descent with exact line search from START; each step's numbers, exactly."""
    import sympy as sp

    s1, s2 = sp.symbols("x1 x2")
    symbolic_grad = [sp.diff(f(s1, s2), v) for v in (s1, s2)]
    point = (sp.Integer(START[0]), sp.Integer(START[1]))
    steps = []
    for k in range(n):
        g_engine = engine_gradient(point)
        g_sympy = tuple(d.subs({s1: point[0], s2: point[1]}) for d in symbolic_grad)
        # The iterates are dyadic fractions, so the engine's float gradient must be exact, not just close.
        g = tuple(sp.Rational(v) for v in g_engine)
        if g != g_sympy:
            raise AssertionError(f"engine gradient {g_engine} != SymPy gradient {g_sympy} at {point}")
        lam, phi = exact_step(point, g)
        new = (point[0] - lam * g[0], point[1] - lam * g[1])
        steps.append({"k": k, "x": point, "f": f(*point), "grad": g, "phi": phi, "lambda": lam, "next": new})
        point = new
    steps.append({"k": n, "x": point, "f": f(*point), "grad": engine_gradient(point)})
    return steps


def plot(run: Run, steps: list[dict]) -> None:
    """Contours of f with the zig-zag of exact line-search steps towards (1, 1)."""
    import numpy as np

    plt = pyplot()
    a, b = np.meshgrid(np.linspace(-0.5, 1.6, 200), np.linspace(-0.5, 1.6, 200))
    fig, ax = plt.subplots(figsize=(5.6, 5.0))
    cs = ax.contour(a, b, f(a, b), levels=np.linspace(-1, 3, 17), cmap="viridis", linewidths=0.8)
    ax.clabel(cs, fontsize=6)
    xs = [float(s["x"][0]) for s in steps]
    ys = [float(s["x"][1]) for s in steps]
    ax.plot(xs, ys, "o-", color="tab:red", markersize=4, label="steepest descent, exact line search")
    ax.plot([1], [1], "k*", markersize=12, label="minimum (1, 1)")
    ax.set_xlabel("x1")
    ax.set_ylabel("x2")
    ax.set_aspect("equal")
    ax.set_title("Slettevold's thesis, Example 1: f = x1² + 2x2² − 2x1x2 − 2x2", fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    save_figure(run, fig, "iterates")


def main(argv: Sequence[str] | None = None) -> dict:
    """Run the demo; returns the iterates, step sizes and the SymPy minimiser of f."""
    import sympy as sp

    run = start(NAME, "Slettevold's thesis Example 1: exact line search, step size solved by SymPy", argv)
    steps = iterate(8 if run.fast else 30)
    first = steps[0]
    slope = sp.diff(first["phi"], sp.Symbol("lambda", nonnegative=True))
    run.say(f"k = 0: x = {first['x']}, grad f = {first['grad']} (engine = SymPy), "
            f"f(x - lambda grad) = {first['phi']}, d/dlambda = {slope} = 0 "
            f"-> lambda* = {first['lambda']}, x1 = {first['next']}\n")
    rows = []
    for s in steps:
        lam = s.get("lambda", "")
        rows.append((s["k"], f"({s['x'][0]}, {s['x'][1]})", float(s["x"][0]), float(s["x"][1]), float(s["f"]),
                     f"({float(s['grad'][0]):g}, {float(s['grad'][1]):g})", str(lam),
                     float(max(abs(s["x"][0] - 1), abs(s["x"][1] - 1)))))
    table(run, "iterates.txt", ("k", "x (exact)", "x1", "x2", "f(x)", "grad f (engine)", "lambda*", "max |x - (1,1)|"),
          rows, title="Steepest descent with exact line search from (0, 0)", digits=6)
    s1, s2 = sp.symbols("x1 x2")
    minimiser = sp.solve([sp.diff(f(s1, s2), v) for v in (s1, s2)], [s1, s2], dict=True)[0]
    run.say(f"SymPy's stationary point of f: ({minimiser[s1]}, {minimiser[s2]}), f = {f(minimiser[s1], minimiser[s2])}")
    plot(run, steps)
    last = steps[-1]["x"]
    run.say(f"Key numbers: lambda*_1 = {steps[0]['lambda']}, x(1) = ({steps[1]['x'][0]}, {steps[1]['x'][1]}), "
            f"x({len(steps) - 1}) = ({float(last[0]):.6f}, {float(last[1]):.6f}) -> (1, 1)")
    run.finish()
    return {"lambdas": [s["lambda"] for s in steps[:-1]], "iterates": [s["x"] for s in steps],
            "grads": [s["grad"] for s in steps], "minimiser": (minimiser[s1], minimiser[s2])}


if __name__ == "__main__":
    main(sys.argv[1:])
