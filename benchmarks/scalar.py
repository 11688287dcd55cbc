"""Scalar engine benchmark: MLP(2, [16, 16, 1]) forward+backward over 100 samples, against PyPI micrograd.

Prints medians over repeats, nodes per second, bytes per node and the deepest chain each engine backprops.
Run: python benchmarks/scalar.py [--repeats 7]   (micrograd is measured when it is installed)
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import sys
import time
import tracemalloc

from microgradx import Value, topological_order
from microgradx.scalar_nn import MLP

SIZES = (2, [16, 16, 1])


def dataset(n: int = 100, seed: int = 0) -> list[list[float]]:
    rng = random.Random(seed)
    return [[rng.uniform(-1, 1), rng.uniform(-1, 1)] for _ in range(n)]


def ours():
    model = MLP(*SIZES, activation="relu", seed=1)

    def loss(X):
        outs = [model(x) for x in X]
        return sum(outs[1:], outs[0])
    return model, loss


def theirs(model_ours):
    from micrograd.nn import MLP as MicroMLP
    model = MicroMLP(*SIZES)
    # Same weights as ours, so both engines compute the same numbers.
    for p, q in zip(model.parameters(), _micrograd_order(model_ours)):
        p.data = q.data

    def loss(X):
        outs = [model(x) for x in X]
        return sum(outs[1:], outs[0])
    return model, loss


def _micrograd_order(model: MLP) -> list[Value]:
    # micrograd lists a neuron's weights then its bias, like ours.
    return model.parameters()


def time_fwd_bwd(loss, X, repeats: int) -> tuple[float, object]:
    times = []
    out = None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = loss(X)
        out.backward()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def bytes_per_node(loss, X, count_nodes) -> tuple[float, float]:
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    out = loss(X)
    after_forward = tracemalloc.get_traced_memory()[0] - before
    out.backward()
    after_backward = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    n = count_nodes(out)
    return after_forward / n, after_backward / n


def micrograd_nodes(out) -> int:
    seen, stack = {id(out)}, [out]
    while stack:
        for p in stack.pop()._prev:
            if id(p) not in seen:
                seen.add(id(p))
                stack.append(p)
    return len(seen)


def deepest_micrograd_chain() -> int:
    from micrograd.engine import Value as MicroValue
    lo, hi = 1, 200_000
    while lo < hi:  # the longest chain whose backward does not raise RecursionError
        mid = (lo + hi + 1) // 2
        x = MicroValue(1.0)
        y = x
        for _ in range(mid):
            y = y * 1.0
        try:
            y.backward()
            lo = mid
        except RecursionError:
            hi = mid - 1
    return lo


def our_chain(n: int) -> float:
    x = Value(1.0)
    y = x
    t0 = time.perf_counter()
    for _ in range(n):
        y = y * 1.0
    y.backward()
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    X = dataset()
    model, loss = ours()
    t_ours, out = time_fwd_bwd(loss, X, args.repeats)
    n_ours = len(topological_order(out))
    bpn_ours = bytes_per_node(loss, X, lambda o: len(topological_order(o)))
    print(f"workload: MLP(2, [16, 16, 1]) relu, forward+backward over {len(X)} samples, "
          f"median of {args.repeats}; Python {sys.version.split()[0]}")
    print(f"{'engine':<12}{'seconds':>10}{'nodes':>9}{'nodes/s':>12}{'B/node fwd':>12}{'B/node +grad':>14}"
          f"{'deepest chain':>15}")
    t_small, t_big = our_chain(100_000), our_chain(1_000_000)
    print(f"{'microgradx':<12}{t_ours:>10.3f}{n_ours:>9}{n_ours / t_ours:>12,.0f}{bpn_ours[0]:>12.0f}"
          f"{bpn_ours[1]:>14.0f}{'>= 1,000,000':>15}")
    try:
        import micrograd  # noqa: F401
    except ImportError:
        print("micrograd is not installed (pip install micrograd): no ratio")
        return
    m_model, m_loss = theirs(model)
    # Interleave the two engines so that a noisy machine slows both alike; the ratio is a median of pairs.
    ratios, ours_t, theirs_t = [], [], []
    for _ in range(args.repeats):
        a, _ = time_fwd_bwd(loss, X, 1)
        b, m_out = time_fwd_bwd(m_loss, X, 1)
        ours_t.append(a)
        theirs_t.append(b)
        ratios.append(b / a)
    t_theirs = statistics.median(theirs_t)
    assert abs(m_out.data - out.data) < 1e-9 * max(1.0, abs(out.data)), "the two engines disagree"
    n_theirs = micrograd_nodes(m_out)
    bpn_theirs = bytes_per_node(m_loss, X, micrograd_nodes)
    print(f"{'micrograd':<12}{t_theirs:>10.3f}{n_theirs:>9}{n_theirs / t_theirs:>12,.0f}{bpn_theirs[0]:>12.0f}"
          f"{bpn_theirs[1]:>14.0f}{deepest_micrograd_chain():>15,}")
    print(f"speed-up over micrograd: median {statistics.median(ratios):.1f}x over {args.repeats} interleaved pairs "
          f"(min {min(ratios):.1f}x, max {max(ratios):.1f}x; goal >= 8x)")
    print(f"chain of 10^5: {t_small:.2f} s, of 10^6: {t_big:.2f} s (ratio {t_big / t_small:.1f}, linear = 10)")


if __name__ == "__main__":
    main()
