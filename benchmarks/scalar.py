"""Scalar engine benchmark: MLP(2, [16, 16, 1]) forward+backward over 100 samples, against PyPI micrograd.

Two harnesses, each interleaving the engines (a noisy machine slows both alike) and printing the median of the
pairs' ratios:
  1. each library's own MLP class, a block of steps back to back as a training loop runs them: the garbage
     collector runs whenever it decides, so each engine pays for collecting its own garbage (gc.collect()
     between blocks, so that no engine pays for the other's);
  2. the same MLP written out by hand, one code for both engines, one step per timing, gc.collect() before each.
Then bytes per node, the full collections that fell in each engine's timings and the collector's share of its
time (gc.callbacks), and a 10**5- and 10**6-step chain, its time split into build, collector and backward.
Times are the process's CPU time (on a shared machine the wall clock also counts the time other processes hold
the core); ``--clock wall`` uses the wall clock.
Run: python benchmarks/scalar.py [--repeats 7] [--clock cpu|wall]   (micrograd is measured when installed)
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


# -- harness 1: each library's own MLP ------------------------------------------------------------------------

def ours():
    model = MLP(*SIZES, activation="relu", seed=1)

    def loss(X):
        outs = [model(x) for x in X]
        return sum(outs[1:], outs[0])
    return model, loss


def theirs(model_ours):
    from micrograd.nn import MLP as MicroMLP
    model = MicroMLP(*SIZES)
    # Same weights as ours (micrograd also lists a neuron's weights, then its bias), so both compute the same.
    for p, q in zip(model.parameters(), model_ours.parameters()):
        p.data = q.data

    def loss(X):
        outs = [model(x) for x in X]
        return sum(outs[1:], outs[0])
    return model, loss


# -- harness 2: the same MLP written out by hand, one code for both engines -----------------------------------

def hand_layers(value: type, seed: int = 1) -> list[tuple[list[list], list]]:
    """Weights and biases of MLP(2, [16, 16, 1]) as ``value`` leaves: [(W, b)] per layer, the same numbers for
    every engine."""
    rng = random.Random(seed)
    sizes = [SIZES[0], *SIZES[1]]
    return [([[value(rng.uniform(-1, 1)) for _ in range(nin)] for _ in range(nout)], [value(0.0) for _ in range(nout)])
            for nin, nout in zip(sizes, sizes[1:])]


def hand_loss(layers: list, X: list[list[float]]):
    """The sum over samples of the MLP's output: relu on the hidden layers, plain Python on any engine."""
    total = None
    last = len(layers) - 1
    for x in X:
        h = x
        for k, (W, b) in enumerate(layers):
            out = []
            for row, bias in zip(W, b):
                acc = row[0] * h[0]
                for w, hi in zip(row[1:], h[1:]):
                    acc = acc + w * hi
                acc = acc + bias
                out.append(acc.relu() if k < last else acc)
            h = out
        total = h[0] if total is None else total + h[0]
    return total


# -- timing ---------------------------------------------------------------------------------------------------

class Collections:
    """The garbage collector's work while ``on``: full (generation 2) collections counted, every collection's
    CPU time summed (gc.callbacks: the time from each collection's start to its stop)."""

    def __init__(self) -> None:
        self.on, self.full, self.seconds, self._t0 = False, 0, 0.0, 0.0
        gc.callbacks.append(self)

    def start(self) -> None:
        self.full, self.seconds, self.on = 0, 0.0, True

    def __call__(self, phase: str, info: dict) -> None:
        if not self.on:
            return
        if phase == "start":
            self.full += info["generation"] == 2
            self._t0 = time.process_time()
        else:
            self.seconds += time.process_time() - self._t0


GC = Collections()


CLOCK = time.process_time


def timed(loss, X, steps: int, collect: bool) -> tuple[float, int, float]:
    """(seconds per forward + backward step, full collections during the steps, the collector's seconds per step);
    ``collect``: gc.collect() before each step. Each step's graph is released when the next one replaces it, as
    in a training loop."""
    total, full, collector = 0.0, 0, 0.0
    out = None
    for _ in range(steps):
        if collect:
            out = None
            gc.collect()
        GC.start()
        t0 = CLOCK()
        out = loss(X)
        out.backward()
        total += CLOCK() - t0
        GC.on = False
        full += GC.full
        collector += GC.seconds
    return total / steps, full, collector / steps


def interleaved(ours_loss, theirs_loss, X, repeats: int, steps: int, collect: bool) -> dict:
    """Pairs of timings, the engine going first alternating, gc.collect() between; medians, ratios of pairs,
    the full collections that fell in each engine's timings and the collector's share of each engine's time."""
    mine, other, ratios, full_mine, full_other, gc_mine, gc_other = [], [], [], 0, 0, [], []
    for k in range(repeats):
        first, second = (ours_loss, theirs_loss) if k % 2 == 0 else (theirs_loss, ours_loss)
        gc.collect()
        t1 = timed(first, X, steps, collect)
        gc.collect()
        t2 = timed(second, X, steps, collect)
        (a, fa, ga), (b, fb, gb) = (t1, t2) if k % 2 == 0 else (t2, t1)
        mine.append(a)
        other.append(b)
        ratios.append(b / a)
        full_mine += fa
        full_other += fb
        gc_mine.append(ga / a)
        gc_other.append(gb / b)
    return {"ours": statistics.median(mine), "theirs": statistics.median(other), "ratio": statistics.median(ratios),
            "min": min(ratios), "max": max(ratios), "full_ours": full_mine, "full_theirs": full_other,
            "gc_ours": statistics.median(gc_mine), "gc_theirs": statistics.median(gc_other)}


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


def our_chain(n: int) -> tuple[float, float, float, int]:
    """Build y = x * 1.0 * 1.0 * ... (n multiplications, 2n + 1 nodes) and backpropagate: (seconds in all, of
    which the backward pass, of which the collector, full collections)."""
    gc.collect()
    x = Value(1.0)
    y = x
    GC.start()
    t0 = CLOCK()
    for _ in range(n):
        y = y * 1.0
    t1 = CLOCK()
    y.backward()
    t2 = CLOCK()
    GC.on = False
    return t2 - t0, t2 - t1, GC.seconds, GC.full


def main() -> None:
    global CLOCK
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--steps", type=int, default=3, help="steps per timing in harness 1 (default 3)")
    parser.add_argument("--clock", choices=("cpu", "wall"), default="cpu")
    args = parser.parse_args()
    CLOCK = time.process_time if args.clock == "cpu" else time.perf_counter
    X = dataset()
    model, loss = ours()
    out = loss(X)
    n_ours = len(topological_order(out))
    del out
    bpn_ours = bytes_per_node(loss, X, lambda o: len(topological_order(o)))
    print(f"workload: MLP(2, [16, 16, 1]) relu, forward+backward over {len(X)} samples, "
          f"{args.repeats} interleaved pairs, {args.clock} time; Python {sys.version.split()[0]}")
    try:
        from micrograd.engine import Value as MicroValue
    except ImportError:
        t, _ = timed(loss, X, 1, True)
        print(f"microgradx: {t:.3f} s, {n_ours} nodes, {bpn_ours[1]:.0f} bytes per node after backward")
        print("micrograd is not installed (pip install micrograd): no ratio")
        return
    m_model, m_loss = theirs(model)
    assert abs(m_loss(X).data - loss(X).data) < 1e-9 * max(1.0, abs(loss(X).data)), "the two engines disagree"
    own = interleaved(loss, m_loss, X, args.repeats, args.steps, collect=False)
    layers_ours, layers_theirs = hand_layers(Value), hand_layers(MicroValue)
    assert abs(hand_loss(layers_ours, X).data - hand_loss(layers_theirs, X).data) < 1e-9, "the two engines disagree"
    hand = interleaved(lambda X: hand_loss(layers_ours, X), lambda X: hand_loss(layers_theirs, X), X, args.repeats,
                       1, collect=True)
    m_out = m_loss(X)
    n_theirs = micrograd_nodes(m_out)
    del m_out
    bpn_theirs = bytes_per_node(m_loss, X, micrograd_nodes)
    print(f"{'engine':<12}{'seconds':>10}{'by hand':>10}{'nodes':>9}{'nodes/s':>12}{'B/node fwd':>12}"
          f"{'B/node +grad':>14}{'deepest chain':>15}")
    print(f"{'microgradx':<12}{own['ours']:>10.3f}{hand['ours']:>10.3f}{n_ours:>9}{n_ours / own['ours']:>12,.0f}"
          f"{bpn_ours[0]:>12.0f}{bpn_ours[1]:>14.0f}{'>= 1,000,000':>15}")
    print(f"{'micrograd':<12}{own['theirs']:>10.3f}{hand['theirs']:>10.3f}{n_theirs:>9}"
          f"{n_theirs / own['theirs']:>12,.0f}{bpn_theirs[0]:>12.0f}{bpn_theirs[1]:>14.0f}"
          f"{deepest_micrograd_chain():>15,}")
    for name, r in ((f"1, own MLP classes, {args.steps} steps per timing", own),
                    ("2, MLP by hand, gc.collect() before each step", hand)):
        print(f"speed-up over micrograd (harness {name}): median {r['ratio']:.1f}x over {args.repeats} pairs "
              f"(min {r['min']:.1f}x, max {r['max']:.1f}x; goal >= 10x); full collections in the timings: "
              f"{r['full_ours']} microgradx, {r['full_theirs']} micrograd; the collector's share of the time: "
              f"{r['gc_ours']:.0%} microgradx, {r['gc_theirs']:.0%} micrograd")
    (t_small, *_), (t_big, t_back, t_gc, full) = our_chain(100_000), our_chain(1_000_000)
    print(f"chain build + backward: 10^5 {t_small:.2f} s, 10^6 {t_big:.2f} s (ratio {t_big / t_small:.1f}, "
          f"linear = 10; goal <= 3 s); of the 10^6 s: backward {t_back:.2f} s, the collector {t_gc:.2f} s "
          f"({full} full collections), the engine's own build {t_big - t_back - t_gc:.2f} s")


if __name__ == "__main__":
    main()
