"""Benchmark of ``paths`` on a single-path chain: the time per node should not grow with the chain's length.

Run: ``python benchmarks/paths.py [--quick]``. Prints the median time per node at each length, interleaved,
and the ratio of the longest to the shortest (about 1 when the walk is linear per path found; the baseline is
the shortest chain measured in the same run).
"""

from __future__ import annotations

import argparse
import statistics
import time

from microgradx import Value, paths


def chain(n: int) -> tuple[Value, Value]:
    """x -> x * c -> ... : n multiplications, exactly one path from x to the end."""
    x = Value(1.0, label="x")
    y = x
    for _ in range(n):
        y = y * 1.0000001
    return y, x


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="shorter chains and fewer repeats")
    args = ap.parse_args()
    lengths = (2_000, 20_000) if args.quick else (10_000, 100_000)
    graphs = {n: chain(n) for n in lengths}
    per_node: dict[int, list[float]] = {n: [] for n in lengths}
    for _ in range(3 if args.quick else 5):
        for n in lengths:  # interleaved, so machine noise hits every length alike
            out, x = graphs[n]
            t0 = time.perf_counter()
            found = paths(out, x)
            per_node[n].append((time.perf_counter() - t0) / n)
            assert len(found) == 1 and len(found[0].nodes) == n + 1
    for n in lengths:
        print(f"chain of {n:>7} nodes: {statistics.median(per_node[n]) * 1e6:.2f} us per node")
    lo, hi = lengths[0], lengths[-1]
    print(f"ratio per node, {hi} vs {lo}: {statistics.median(per_node[hi]) / statistics.median(per_node[lo]):.2f} "
          "(1 = linear)")


if __name__ == "__main__":
    main()
