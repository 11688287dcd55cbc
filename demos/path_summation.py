"""The Introduction to Deep Learning unit slides' path summation: do/dw is the sum over paths of the product of edge
derivatives, and backward is the dynamic program that computes that sum in one linear pass while the number of paths
grows as 2**depth.

Run ``python demos/path_summation.py [--fast] [--out DIR]``.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence

from _common import Run, pyplot, save_drawing, save_figure, start, table, timed

import microgradx as mx
from microgradx.examples import two_paths

NAME = "path_summation"
W0 = 2.0  # the point at which the two-path example is evaluated
# The intro slides: "a network with 10 layers and 2 nodes per layer" has 2**10 = 1024 paths from w to the output.
FULL_DEPTHS = tuple(range(1, 18))
FAST_DEPTHS = tuple(range(1, 11))


def layered(depth: int) -> tuple[mx.Value, mx.Value]:
    """``depth`` layers of 2 tanh nodes, each fed by both nodes below, from one input w = 0.5; returns (o, w).

    Layer 1 is (tanh(0.9 w), tanh(-1.1 w)); each next layer is (tanh(0.8 a + 0.3 b), tanh(-0.5 a + 0.7 b));
    o = a + b. Every node doubles the paths that reach it, so 2**depth paths lead from w to o.
    """
    w = mx.Value(0.5, label="w")
    a, b = (w * 0.9).tanh(), (w * -1.1).tanh()
    for _ in range(depth - 1):
        a, b = (a * 0.8 + b * 0.3).tanh(), (a * -0.5 + b * 0.7).tanh()
    o = a + b
    o.label = "o"
    return o, w


def two_path_example(run: Run) -> dict:
    """The intro slides' o = cos(w**2) + sin(w**2): its two paths, their products, and backward's S table."""
    o, w = two_paths(W0)
    found = mx.paths(o, w)
    rows = [(k + 1, " -> ".join(mx.stepper.node_name(n) for n in p.nodes),
             " * ".join(f"{z:.5g}" for z in p.derivatives), p.product) for k, p in enumerate(found)]
    table(run, "two-paths.txt", ("path", "nodes", "edge derivatives z(i, j)", "product"), rows,
          title=f"o = cos(w**2) + sin(w**2) at w = {W0:g}: every path from w to o")
    path_sum = math.fsum(p.product for p in found)
    stepper = mx.step(o).run()
    run.say("The dynamic program (backward): S(o) = 1, S(i) = sum over children j of S(j) * z(i, j)")
    text = stepper.table()
    run.path("two-paths-dp.txt").write_text(text + "\n")
    run.say(text + "\n")
    run.say(f"sum of path products = {path_sum:.12f}\nbackward's S(w)       = {w.grad:.12f}\n")
    for k, p in enumerate(found):
        save_drawing(run, mx.draw(o, highlight=p, title=f"path {k + 1} of {len(found)}: product {p.product:.5g}"),
                     f"two-paths-{k + 1}")
    return {"two_paths_count": len(found), "two_paths_products": [p.product for p in found],
            "two_paths_sum": path_sum, "two_paths_backward": w.grad}


def scaling(run: Run, depths: Sequence[int]) -> dict:
    """Time path enumeration against backward on ``layered(depth)`` for each depth; table and plot."""
    rows, t_paths, t_backward, sums, grads = [], [], [], [], []
    for depth in depths:
        o, w = layered(depth)
        n = mx.count_paths(o, w)
        repeat = 3 if n <= 4096 else 1
        tp, found = timed(lambda o=o, w=w, n=n: mx.paths(o, w, limit=n), repeat)
        tb, (g,) = timed(lambda o=o, w=w: mx.grad(o, [w]), 3)
        s = math.fsum(p.product for p in found)
        rows.append((depth, n, len(found), tp * 1e3, tb * 1e3, tp / tb, s, g, abs(s - g)))
        t_paths.append(tp)
        t_backward.append(tb)
        sums.append(s)
        grads.append(g)
    table(run, "scaling.txt", ("depth", "paths (DP count)", "paths found", "paths ms", "backward ms",
                               "ratio", "sum of products", "backward do/dw", "|difference|"), rows,
          title="Layers of 2 tanh nodes: path enumeration vs backward (best of 3 wall times; 1 run above 4096 paths)",
          digits=4)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    ax.semilogy(depths, [t * 1e3 for t in t_paths], "o-", label="enumerate every path (microgradx.paths)")
    ax.semilogy(depths, [t * 1e3 for t in t_backward], "s-", label="backward (dynamic program)")
    ax.set_xlabel("depth (layers of 2 nodes)")
    ax.set_ylabel("time (ms, log scale)")
    ax.set_title("do/dw: 2**depth paths vs one linear backward pass")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    save_figure(run, fig, "scaling")
    return {"depths": list(depths), "path_counts": [r[1] for r in rows], "paths_found": [r[2] for r in rows],
            "path_sums": sums, "backward_grads": grads, "time_paths": t_paths, "time_backward": t_backward}


def main(argv: Sequence[str] | None = None) -> dict:
    """Run the demo; returns the two-path numbers and the depth/paths/timing table."""
    run = start(NAME, "the intro slides path summation and its dynamic program", argv)
    results = two_path_example(run)
    results.update(scaling(run, FAST_DEPTHS if run.fast else FULL_DEPTHS))
    k = results["depths"].index(10)
    run.say(f"Key numbers: two-path do/dw at w = 2: {results['two_paths_backward']:.6f} "
            f"(paths {results['two_paths_products'][0]:.6f} + {results['two_paths_products'][1]:.6f}); "
            f"depth 10: {results['path_counts'][k]} paths, enumeration {results['time_paths'][k] * 1e3:.2f} ms "
            f"vs backward {results['time_backward'][k] * 1e3:.3f} ms")
    run.finish()
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
