"""Benchmark: drawing graphs that reuse nodes at every level, with far uses drawn as copies vs one box each.

A chain h = h * a + b of L levels uses a and b at every level. Drawn with one box per node (the baseline,
``FAR_USE`` set beyond the graph's depth) every use is an edge across the whole layout, and Graphviz's crossing
minimisation over those edges dominates; drawn as microgradx does, far uses read a dashed copy beside them.
The two take turns; the table shows median seconds of ``draw(...).pipe("svg")`` and their ratio. Not a test: it
prints figures and never fails for being slow.

    python benchmarks/drawing.py                 # graphviz-pure unless MICROGRADX_DOT says otherwise
    python benchmarks/drawing.py --levels 10 20 30 --repeat 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from microgradx import Value
from microgradx import render as R


def chain(levels: int, shared: str) -> Value:
    """h = h * a + b repeated; a, b are inputs ("leaves") or results computed once ("results")."""
    x, y = Value(0.5, label="x"), Value(0.3, label="y")
    a, b = ((x * y).tanh(), (x * y).tanh() + x) if shared == "results" else (x, y)
    h = x
    for _ in range(levels):
        h = h * a + b
    h.backward()
    return h


def seconds(out: Value, far_use: int) -> float:
    saved = R.FAR_USE
    R.FAR_USE = far_use
    try:
        t0 = time.perf_counter()
        R.draw(out, max_nodes=10_000).pipe("svg")
        return time.perf_counter() - t0
    finally:
        R.FAR_USE = saved


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--levels", type=int, nargs="+", default=[10, 20, 30])
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()
    os.environ.setdefault(R.ENV_VAR, "pure")
    print(f"renderer: {R.find_renderer().kind}")
    print(f"{'graph':<28} {'one box (s)':>12} {'copies (s)':>11} {'speed-up':>9}")
    for shared in ("leaves", "results"):
        for levels in args.levels:
            out = chain(levels, shared)
            base, ours = [], []
            for _ in range(args.repeat):  # interleaved, so drift hits both alike
                base.append(seconds(out, 10**9))
                ours.append(seconds(out, R.FAR_USE))
            b, o = statistics.median(base), statistics.median(ours)
            print(f"{f'{2 * levels} ops, shared {shared}':<28} {b:>12.3f} {o:>11.3f} {b / o:>8.1f}x")


if __name__ == "__main__":
    main()
