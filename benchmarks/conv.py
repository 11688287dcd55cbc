"""Benchmark: forward + backward of one 3x3 convolution on a batch of 28x28 images, microgradx vs PyTorch CPU.

Three layers: a first layer 1 -> 16 channels (no input gradient needed, as for data), a hidden layer 16 -> 32
channels (input gradient included), and the same with stride 2. The engines get the same arrays and the same
upstream gradient and take turns call by call: microgradx (its fast path, ``microgradx.fast``), its readable
reference kernels (``fast.reference_only()``: what the fast path buys), the matrix products alone (what
NumPy's BLAS costs for the same work, a floor for any im2col convolution) and PyTorch. The table shows median
milliseconds and the ratio to PyTorch (measured in the same run; skipped when torch is absent). With one thread
the clock is the process's CPU time, which other jobs on a shared machine do not inflate; with more threads it
is wall time (CPU time would add up the threads). Not a test: it prints figures and never fails for being slow.

    python benchmarks/conv.py               # library thread defaults, wall time
    python benchmarks/conv.py --threads 1   # one BLAS/OpenMP thread for both engines, CPU time
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable

THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")

# The thread count must reach the environment before NumPy loads its BLAS, so --threads is read first.
_early = argparse.ArgumentParser(add_help=False)
_early.add_argument("--threads", type=int, default=None)
_threads = _early.parse_known_args(sys.argv[1:])[0].threads
if _threads is not None:
    for _name in THREAD_VARIABLES:
        os.environ[_name] = str(_threads)
# One thread: CPU time of this process (other jobs' time slices do not count); else wall time.
clock = time.process_time if _threads == 1 else time.perf_counter

import numpy as np  # noqa: E402

from microgradx import fast  # noqa: E402
from microgradx import functional as F  # noqa: E402
from microgradx.tensor import Tensor  # noqa: E402

LAYERS = (("1 -> 16 (first layer)", 1, 16, False, 1), ("16 -> 32 (hidden layer)", 16, 32, True, 1),
          ("16 -> 32, stride 2", 16, 32, True, 2))


def arrays(n: int, cin: int, cout: int, size: int, stride: int, seed: int = 0) -> tuple[np.ndarray, ...]:
    """Input images, weight, bias and the upstream gradient, float32."""
    rng = np.random.default_rng(seed)
    x = rng.random((n, cin, size, size), dtype=np.float32)
    w = (rng.standard_normal((cout, cin, 3, 3)) * np.sqrt(2.0 / (cin * 9))).astype(np.float32)
    b = np.zeros(cout, np.float32)
    out = F.conv_output_size(size, 3, stride, 1)
    g = rng.standard_normal((n, cout, out, out)).astype(np.float32)
    return x, w, b, g


def microgradx_step(x: np.ndarray, w: np.ndarray, b: np.ndarray, g: np.ndarray, input_grad: bool, stride: int,
                    reference: bool = False) -> Callable[[], tuple[float, float]]:
    """One conv2d node (padding 1) and its backward from the upstream gradient g; returns (forward s, backward s).
    With ``reference`` the readable reference kernels run instead of the fast ones."""
    xt = Tensor(x, requires_grad=input_grad)
    wt, bt = Tensor(w), Tensor(b)

    def step() -> tuple[float, float]:
        wt.grad = bt.grad = xt.grad = None
        t0 = clock()
        y = F.conv2d(xt, wt, bt, stride=stride, padding=1)
        t1 = clock()
        y.backward(g)
        return t1 - t0, clock() - t1

    def reference_step() -> tuple[float, float]:
        with fast.reference_only():
            return step()
    return reference_step if reference else step


def blas_floor_step(x: np.ndarray, w: np.ndarray, b: np.ndarray, g: np.ndarray, input_grad: bool,
                    stride: int) -> Callable[[], tuple[float, float]]:
    """Only the matrix products an im2col convolution cannot avoid, on operands prepared beforehand: W @ cols
    (forward), g @ cols.T and W.T @ g (backward), with no window wasted: what NumPy's BLAS alone costs."""
    o, c = w.shape[:2]
    positions = g.shape[0] * g.shape[2] * g.shape[3]
    rng = np.random.default_rng(1)
    cols = rng.random((c * 9, positions), dtype=np.float32)
    g2 = np.ascontiguousarray(g.transpose(1, 0, 2, 3)).reshape(o, positions)
    wm = w.reshape(o, -1)

    def step() -> tuple[float, float]:
        t0 = clock()
        wm @ cols
        t1 = clock()
        g2 @ cols.T
        if input_grad:
            wm.T @ g2
        return t1 - t0, clock() - t1
    return step


def torch_step(x: np.ndarray, w: np.ndarray, b: np.ndarray, g: np.ndarray, input_grad: bool,
               stride: int) -> Callable[[], tuple[float, float]] | None:
    """The same with torch.nn.functional.conv2d, or None when torch is not installed."""
    try:
        import torch
    except ImportError:
        return None
    if os.environ.get("OMP_NUM_THREADS"):
        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    xt = torch.from_numpy(x).requires_grad_(input_grad)
    wt, bt = torch.from_numpy(w).requires_grad_(), torch.from_numpy(b).requires_grad_()
    gt = torch.from_numpy(g)

    def step() -> tuple[float, float]:
        wt.grad = bt.grad = xt.grad = None
        t0 = clock()
        y = torch.nn.functional.conv2d(xt, wt, bt, stride=stride, padding=1)
        t1 = clock()
        y.backward(gt)
        return t1 - t0, clock() - t1
    return step


def check_same(x: np.ndarray, w: np.ndarray, b: np.ndarray, g: np.ndarray, stride: int) -> float:
    """Largest relative difference of the weight gradients of the two engines (a sanity check, not a test)."""
    import torch

    wt = torch.from_numpy(w.astype(np.float64)).requires_grad_()
    torch.nn.functional.conv2d(torch.from_numpy(x.astype(np.float64)), wt, None, stride=stride, padding=1).backward(
        torch.from_numpy(g.astype(np.float64)))
    ours = Tensor(w.astype(np.float64))
    F.conv2d(Tensor(x.astype(np.float64), requires_grad=False), ours, None, stride=stride, padding=1).backward(
        g.astype(np.float64))
    ref = wt.grad.numpy()
    return float(np.abs(ours.grad - ref).max() / np.abs(ref).max())


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64, help="images per batch")
    parser.add_argument("--size", type=int, default=28, help="image height and width")
    parser.add_argument("--repeats", type=int, default=30, help="timed calls per engine")
    parser.add_argument("--threads", type=int, default=None,
                        help="BLAS/OpenMP threads for both engines (default: the libraries' own defaults)")
    parser.add_argument("--no-torch", action="store_true", help="skip PyTorch even when it is installed")
    parser.add_argument("--no-reference", action="store_true", help="skip the reference kernels (the slowest)")
    args = parser.parse_args(argv)
    threads = ", ".join(f"{k}={os.environ[k]}" for k in THREAD_VARIABLES if k in os.environ) or "library defaults"
    torch_threads = ""
    if not args.no_torch:
        try:
            import torch
            torch_threads = f"; torch {torch.__version__} uses {torch.get_num_threads()} thread(s)"
        except ImportError:
            torch_threads = "; torch not installed"
    print(f"conv2d 3x3, padding 1, float32, batch {args.batch} of {args.size}x{args.size}; median of {args.repeats} "
          f"forward+backward calls per engine, engines alternating; "
          f"{'CPU' if clock is time.process_time else 'wall'} time; threads: {threads}{torch_threads}; "
          f"{os.cpu_count()} CPUs; numpy {np.__version__}")
    header = f"{'layer':24s} {'engine':12s} {'forward ms':>10s} {'backward ms':>11s} {'total ms':>9s} {'x torch':>8s}"
    print(header)
    print("-" * len(header))
    for name, cin, cout, input_grad, stride in LAYERS:
        data = arrays(args.batch, cin, cout, args.size, stride)
        steps = {"microgradx": microgradx_step(*data, input_grad, stride)}
        if not args.no_reference:
            steps["reference"] = microgradx_step(*data, input_grad, stride, reference=True)
        steps["BLAS alone"] = blas_floor_step(*data, input_grad, stride)
        made = None if args.no_torch else torch_step(*data, input_grad, stride)
        if made is not None:
            steps["pytorch"] = made
        for step in steps.values():  # warm-up: threads, buffers, first-call costs
            for _ in range(3):
                step()
        times: dict[str, list[tuple[float, float]]] = {k: [] for k in steps}
        for _ in range(args.repeats):
            for engine, step in steps.items():
                times[engine].append(step())
        med = {k: (statistics.median(f for f, _ in v), statistics.median(b for _, b in v),
                   statistics.median(f + b for f, b in v)) for k, v in times.items()}
        base = med.get("pytorch", (0.0, 0.0, 0.0))[2]
        for engine, (fwd, bwd, total) in med.items():
            ratio = f"{total / base:8.2f}" if base else f"{'-':>8s}"
            print(f"{name:24s} {engine:12s} {1e3 * fwd:10.2f} {1e3 * bwd:11.2f} {1e3 * total:9.2f} {ratio}")
        if "pytorch" in steps:
            print(f"{'':24s} (weight gradients agree to {check_same(*data, stride):.1e} relative, float64)")


if __name__ == "__main__":
    main()
