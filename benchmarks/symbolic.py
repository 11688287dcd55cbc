"""Benchmark of ``check_with_sympy``: a 1000-node random graph with sharing, and the whole-expression layer's reach.

Run: ``python benchmarks/symbolic.py [--quick]``. Prints medians; the baseline is the engine's own backward pass
(``microgradx.grad``) on the same graph, measured in the same run.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

from microgradx import Value, grad, topological_order
from microgradx import symbolic as sym

_UNARY = ("tanh", "sin", "cos", "sigmoid", "swish", "arctan", "softsign", "gelu", "relu", "elu", "leaky_relu")


def random_graph(n_nodes: int, seed: int, n_inputs: int = 8) -> Value:
    """A graph of about ``n_nodes`` nodes over ``n_inputs`` inputs; each new node takes its parents among the
    last 12 nodes or, one time in three, anywhere, so subexpressions are shared (fan-out) all along. The nodes
    nothing uses yet are summed at the end, so every node counts."""
    rng = random.Random(seed)
    nodes = [Value(rng.uniform(-1.5, 1.5), label=f"x{i}") for i in range(n_inputs)]
    unused = dict.fromkeys(nodes)  # insertion-ordered set (nodes hash by identity)

    def pick() -> Value:
        return rng.choice(nodes if rng.random() < 1 / 3 else nodes[-12:])

    def keep(node: Value) -> None:
        for p in node.parents:
            unused.pop(p, None)
        unused[node] = None
        nodes.append(node)

    while len(nodes) + len(unused) - 1 < n_nodes:
        r = rng.random()
        if r < 0.3:
            keep(pick() + pick())
        elif r < 0.55:
            keep(pick() * pick())
        elif r < 0.6:
            keep(pick() - pick())
        else:
            keep(getattr(pick(), rng.choice(_UNARY))())
        if abs(nodes[-1].data) > 50:  # keep values moderate
            keep(nodes[-1].tanh())
    out, *rest = unused
    for node in rest:
        out = out + node
    return out


def _median_time(fn, repeat: int, before=None) -> float:
    times = []
    for _ in range(repeat):
        if before:
            before()
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def scaling(quick: bool) -> None:
    print("Per-edge + independent accumulation (whole-expression layer off), 8 inputs")
    print(f"  {'nodes':>7}  {'edges':>7}  {'backward':>9}  {'check, cold':>11}  {'check, warm':>11}  "
          f"{'warm/backward':>13}")
    for n in (1000,) if quick else (1000, 10_000, 100_000):
        out = random_graph(n, seed=1)
        leaves = [v for v in topological_order(out) if not v.parents]
        repeat = 5 if n <= 10_000 else 3
        base = _median_time(lambda: grad(out, leaves), repeat)  # noqa: B023 -- called within this iteration
        cold = _median_time(lambda: sym.check_with_sympy(out, max_nodes=0), repeat,  # noqa: B023
                            before=sym._local.cache_clear)
        report = sym.check_with_sympy(out, max_nodes=0)
        assert report.ok, str(report)
        warm = _median_time(lambda: sym.check_with_sympy(out, max_nodes=0), repeat)  # noqa: B023
        print(f"  {report.nodes:>7}  {report.edges:>7}  {base:>8.4f}s  {cold:>10.3f}s  {warm:>10.3f}s  "
              f"{warm / base:>12.1f}x")
    print("  goal for 1000 nodes: < 2 s (cold: includes differentiating and compiling each op once)")


def whole_expression_reach(quick: bool) -> None:
    print("\nWhole-expression layer alone (SymPy diff of the whole expression + cse), 8 inputs, 3 graphs per size")
    print(f"  {'nodes':>6}  {'median':>8}")
    best = 0
    for n in (20, 40, 60) if quick else (20, 30, 40, 50, 60, 70, 80, 100, 120, 150, 200):
        times: list[float] = []
        seed = 100
        while len(times) < 3:
            out = random_graph(n, seed=seed)
            seed += 1
            t = time.perf_counter()
            report = sym.check_with_sympy(out, max_nodes=10**9)
            with_whole = time.perf_counter() - t
            assert report.ok, str(report)
            if report.kinks:  # a relu of a relu of a negative number sits at a kink: the layer skips such graphs
                continue
            if report.layers[sym.WHOLE].startswith("skipped: SymPy"):  # past the layer's own time/size budget
                print(f"  {n:>6}  skipped: {report.layers[sym.WHOLE][len('skipped: '):]}")
                break
            assert report.layers[sym.WHOLE].startswith("ran"), str(report)
            times.append(with_whole - _median_time(lambda: sym.check_with_sympy(out, max_nodes=0), 1))  # noqa: B023
        if len(times) < 3:
            break
        median = statistics.median(times)
        print(f"  {n:>6}  {median:>7.3f}s")
        if median <= 1.0:
            best = n
        if median > 5.0:
            break
    print(f"  largest size checked within 1 s: {best} nodes (default max_nodes is 60)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes only (a smoke run)")
    args = parser.parse_args()
    scaling(args.quick)
    whole_expression_reach(args.quick)


if __name__ == "__main__":
    main()
