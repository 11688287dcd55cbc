"""Benchmark: seconds per epoch of an MLP 784-128-10 (ReLU, cross-entropy, plain SGD) on MNIST-shaped data.

The data are generated (random pixels and labels of MNIST's shape): nothing is downloaded. Every engine trains
the same MLP from the same weights, and the engines take turns epoch by epoch in one process, so each ratio is
against a baseline measured in the same run. The baselines are hand-written NumPy MLPs (every derivative written
out by hand), in both memory layouts of the weights; PyTorch joins when installed. microgradx runs as users write
it: nn.Sequential with a plain update p -= lr * grad, the same with optim.SGD (the path ``fit`` runs), the same
MLP from raw tensor ops ((x @ W1 + b1).relu() @ W2 + b2, as a student writes it), and once with the backward
finiteness rule switched off, to show what the rule costs. Not a test: it prints medians, ratios and the goals,
and never fails for being slow.

    python benchmarks/mlp.py --epochs 3 --threads 1  # one BLAS/OpenMP thread for every engine
    python benchmarks/mlp.py                         # the libraries' default threads, plus raw ops at one thread
    python benchmarks/mlp.py --quick                 # a short run on 6,000 rows
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def _threads_from_argv(argv: list[str]) -> str | None:
    """The --threads value; it must reach the environment before NumPy loads its BLAS, hence this early look."""
    for i, arg in enumerate(argv):
        if arg == "--threads" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--threads="):
            return arg.split("=", 1)[1]
    return None


if (_threads := _threads_from_argv(sys.argv[1:])) is not None:
    for _name in THREAD_VARIABLES:
        os.environ[_name] = _threads

import numpy as np  # noqa: E402

import microgradx as mgx  # noqa: E402

IN, HIDDEN, OUT = 784, 128, 10
NUMPY, NUMPY_IN_OUT = "numpy, W (out, in)", "numpy, W (in, out)"
MGX, MGX_OPTIM = "microgradx", "microgradx + optim.SGD"
RAW_OPS = "microgradx raw ops + SGD"
FLOOR = "microgradx kernels, no graph (floor)"
UNCHECKED = "(no finiteness rule)"
TORCH, TORCH_OPTIM = "pytorch", "pytorch + optim.SGD"
# Each engine's PyTorch counterpart updates the weights the same way: a plain p -= lr * grad, or the library's
# SGD optimizer (microgradx's also refuses NaN, infinity and divergence; PyTorch's checks nothing).
TORCH_PAIR = {NUMPY: TORCH, NUMPY_IN_OUT: TORCH, MGX: TORCH, TORCH: TORCH,
              MGX_OPTIM: TORCH_OPTIM, TORCH_OPTIM: TORCH_OPTIM, RAW_OPS: TORCH_OPTIM,
              MGX_OPTIM + " " + UNCHECKED: TORCH_OPTIM, FLOOR: TORCH_OPTIM}
# The goals (issue "Speed where users feel it"): (engine, baseline, batch, largest ratio). The raw-op MLP stores its
# weights (in, out), so its baseline is the hand-written loop with that layout.
GOALS = [(MGX_OPTIM, NUMPY, 32, 1.10), (MGX_OPTIM, NUMPY, 128, 1.05), (RAW_OPS, NUMPY_IN_OUT, 128, 1.15)]


def make_data(rows: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """MNIST-shaped random data: float32 pixels in [0, 1) and integer labels 0..9."""
    rng = np.random.default_rng(seed)
    return rng.random((rows, IN), dtype=np.float32), rng.integers(0, OUT, size=rows)


def initial_weights(seed: int = 1) -> list[np.ndarray]:
    """He-uniform weights (out, in) and zero biases, shared by every engine so they do the same work."""
    rng = np.random.default_rng(seed)
    w1 = mgx.init.he_uniform((HIDDEN, IN), rng=rng)
    w2 = mgx.init.he_uniform((OUT, HIDDEN), rng=rng)
    return [w1, np.zeros(HIDDEN, np.float32), w2, np.zeros(OUT, np.float32)]


def batches(rows: int, batch: int, rng: np.random.Generator):
    """Index arrays of one shuffled epoch."""
    order = rng.permutation(rows)
    return [order[i:i + batch] for i in range(0, rows, batch)]


# ---------------------------------------------------------------------------------------------------------
# The engines: each returns a function that trains one epoch and returns the last loss
# ---------------------------------------------------------------------------------------------------------

def _microgradx_model():
    nn = mgx.nn
    model = nn.Sequential(nn.Linear(IN, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, OUT))
    model.load_state_dict(dict(zip(["0.weight", "0.bias", "2.weight", "2.bias"], initial_weights(), strict=True)))
    return model


def microgradx_engine(X: np.ndarray, y: np.ndarray, lr: float) -> Callable[[list], float]:
    """The model as users write it: nn.Sequential, losses.cross_entropy, backward, then plain SGD over the
    parameter list (clearing .grad as an optimizer's zero_grad does), as the hand-written MLPs update."""
    model = _microgradx_model()
    params = model.parameters()
    cross_entropy = mgx.losses.cross_entropy

    def epoch(index_batches: list) -> float:
        loss = None
        for idx in index_batches:
            loss = cross_entropy(model(X[idx]), y[idx])
            loss.backward()
            for p in params:
                p.data -= lr * p.grad
                p.grad = None
        return loss.item()
    return epoch


def microgradx_optim_engine(X: np.ndarray, y: np.ndarray, lr: float) -> Callable[[list], float]:
    """The same with microgradx.optim.SGD, as fit() trains: its step also proves each gradient and each new
    parameter finite (a dot product over the gradient and one over the parameter: the price of never training
    on silently through NaN, infinity or divergence)."""
    model = _microgradx_model()
    opt = mgx.optim.SGD(model.parameters(), lr=lr)
    cross_entropy = mgx.losses.cross_entropy

    def epoch(index_batches: list) -> float:
        loss = None
        for idx in index_batches:
            loss = cross_entropy(model(X[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        return loss.item()
    epoch.model = model  # type: ignore[attr-defined]
    return epoch


def raw_ops_engine(X: np.ndarray, y: np.ndarray, lr: float) -> Callable[[list], float]:
    """The same MLP as a student writes it from raw tensor ops, weights (in, out): ((x @ W1 + b1).relu() @ W2 +
    b2), losses.cross_entropy and optim.SGD. No fused layer: every op is its own node."""
    w1, b1, w2, b2 = initial_weights()
    Tensor = mgx.Tensor
    W1, B1 = Tensor(np.ascontiguousarray(w1.T), label="W1"), Tensor(b1, label="b1")
    W2, B2 = Tensor(np.ascontiguousarray(w2.T), label="W2"), Tensor(b2, label="b2")
    opt = mgx.optim.SGD([W1, B1, W2, B2], lr=lr)
    cross_entropy = mgx.losses.cross_entropy

    def epoch(index_batches: list) -> float:
        loss = None
        for idx in index_batches:
            logits = (X[idx] @ W1 + B1).relu() @ W2 + B2
            loss = cross_entropy(logits, y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        return loss.item()
    return epoch


@contextlib.contextmanager
def finiteness_rule_off():
    """Every finiteness scan and norm proof of the tensor engine answers "finite" without looking, for the
    benchmark row that measures what the rule costs (never do this in training: NaN would pass silently)."""
    from microgradx import fast, tensor
    saved = fast.all_finite, tensor._all_finite, fast._products_finite, fast._scanned_bound
    fast.all_finite = tensor._all_finite = lambda a: True
    fast._products_finite = lambda *a: True
    fast._scanned_bound = lambda k, grad: None
    try:
        yield
    finally:
        fast.all_finite, tensor._all_finite, fast._products_finite, fast._scanned_bound = saved


def unchecked_engine(X: np.ndarray, y: np.ndarray, lr: float) -> Callable[[list], float]:
    """'microgradx + optim.SGD' with the finiteness rule switched off (its optimizer still checks)."""
    epoch = microgradx_optim_engine(X, y, lr)

    def run(index_batches: list) -> float:
        with finiteness_rule_off():
            return epoch(index_batches)
    return run


def kernels_engine(X: np.ndarray, y: np.ndarray, lr: float) -> Callable[[list], float]:
    """The step of 'microgradx + optim.SGD' as straight calls of the engine's own kernels, with no graph: the
    forward and vjp kernels the nodes run (finiteness checks included), in the order the backward pass runs them,
    and the optimizer's update kernel. Not a way to train (no errors that name a node, no checks of the input);
    it measures the floor under any bookkeeping of a graph, and ends with the same weights as that row."""
    from microgradx import fast
    model = _microgradx_model()
    w1, b1, w2, b2 = (p.data for p in model.parameters())
    relu, one = mgx.ops.OPS["relu"], np.ones((), np.float32)

    def epoch(index_batches: list) -> float:
        loss = None
        for idx in index_batches:
            h, r1 = fast.linear_forward(X[idx], w1, b1, activation=relu)
            z, r2 = fast.linear_forward(h, w2, b2)
            loss, r3 = fast.cross_entropy_forward(z, y[idx])
            (dz,) = fast.cross_entropy_vjp(one, r3, (True,))
            g2 = fast.linear_vjp(dz, r2, (True, True, True))
            g1 = fast.linear_vjp(g2[0], r1, (False, True, True))
            for p, g, bound in ((w1, g1[1], g1.bounds[1]), (b1, g1[2], g1.bounds[2]), (w2, g2[1], g2.bounds[1]),
                                (b2, g2[2], g2.bounds[2])):
                if not fast.sgd_step(p, g, lr, bound):
                    raise RuntimeError("the step could not be proved finite")
        return float(loss)
    epoch.model = model  # type: ignore[attr-defined]
    return epoch


def softmax_cross_entropy(z: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean cross-entropy of logits z (overwritten) and its gradient (softmax - onehot) / n, by hand."""
    n = len(labels)
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    s = e.sum(axis=1, keepdims=True)
    rows = np.arange(n)
    loss = float(np.log(s[:, 0]).sum() - z[rows, labels].sum()) / n
    d = e / s
    d[rows, labels] -= 1.0
    d /= n
    return loss, d


def numpy_engine(X: np.ndarray, y: np.ndarray, lr: float) -> Callable[[list], float]:
    """A hand-written NumPy MLP: the same maths, every derivative written out by hand."""
    w1, b1, w2, b2 = initial_weights()

    def epoch(index_batches: list) -> float:
        nonlocal w1, b1, w2, b2  # updated in place; nonlocal only because -= rebinds the name
        loss = 0.0
        for idx in index_batches:
            xb, yb = X[idx], y[idx]
            h = xb @ w1.T
            h += b1
            np.maximum(h, 0, out=h)
            z = h @ w2.T
            z += b2
            loss, d = softmax_cross_entropy(z, yb)
            gw2 = d.T @ h
            gb2 = d.sum(axis=0)
            dh = d @ w2
            dh *= h > 0
            gw1 = dh.T @ xb
            gb1 = dh.sum(axis=0)
            w1 -= lr * gw1
            b1 -= lr * gb1
            w2 -= lr * gw2
            b2 -= lr * gb2
        return loss
    return epoch


def numpy_in_out_engine(X: np.ndarray, y: np.ndarray, lr: float) -> Callable[[list], float]:
    """The same hand-written MLP with its weights stored transposed, (in, out), as many NumPy tutorials write
    it (h = x @ W1 + b1). The maths is identical; the memory layout is the one nn.Linear uses (a column-major
    (out, in) weight is a row-major (in, out) array), so this row shows what the layout alone is worth."""
    w1, b1, w2, b2 = initial_weights()
    w1, w2 = np.ascontiguousarray(w1.T), np.ascontiguousarray(w2.T)

    def epoch(index_batches: list) -> float:
        nonlocal w1, b1, w2, b2  # updated in place; nonlocal only because -= rebinds the name
        loss = 0.0
        for idx in index_batches:
            xb, yb = X[idx], y[idx]
            h = xb @ w1
            h += b1
            np.maximum(h, 0, out=h)
            z = h @ w2
            z += b2
            loss, d = softmax_cross_entropy(z, yb)
            gw2 = h.T @ d
            gb2 = d.sum(axis=0)
            dh = d @ w2.T
            dh *= h > 0
            gw1 = xb.T @ dh
            gb1 = dh.sum(axis=0)
            w1 -= lr * gw1
            b1 -= lr * gb1
            w2 -= lr * gw2
            b2 -= lr * gb2
        return loss
    return epoch


def configured_torch():
    """The torch module with its intra-op thread count set from --threads, or None when it is not installed."""
    try:
        import torch
    except ImportError:
        return None
    if os.environ.get("OMP_NUM_THREADS"):
        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    return torch


def _torch_model_and_data(X: np.ndarray, y: np.ndarray) -> tuple[Any, Any, Any, Any, Any]:
    """torch, the model (from the shared initial weights), its loss and the data as tensors; None if no torch."""
    torch = configured_torch()
    if torch is None:
        return None, None, None, None, None
    model = torch.nn.Sequential(torch.nn.Linear(IN, HIDDEN), torch.nn.ReLU(), torch.nn.Linear(HIDDEN, OUT))
    with torch.no_grad():
        for p, w in zip(model.parameters(), initial_weights(), strict=True):
            p.copy_(torch.from_numpy(w))
    return torch, model, torch.nn.CrossEntropyLoss(), torch.from_numpy(X), torch.from_numpy(y)


def torch_engine(X: np.ndarray, y: np.ndarray, lr: float, optimizer: bool = False) -> Callable[[list], float] | None:
    """PyTorch on the CPU with the plain update p -= lr * p.grad (as the hand-written MLPs and the 'microgradx'
    row update), or with torch.optim.SGD when ``optimizer``; None when torch is not installed."""
    torch, model, loss_fn, Xt, yt = _torch_model_and_data(X, y)
    if torch is None:
        return None
    params = list(model.parameters())
    opt = torch.optim.SGD(params, lr=lr) if optimizer else None  # its default, multi-tensor update

    def epoch(index_batches: list) -> float:
        loss = None
        for idx in index_batches:
            it = torch.from_numpy(idx)
            loss = loss_fn(model(Xt[it]), yt[it])
            if opt is not None:
                opt.zero_grad()
                loss.backward()
                opt.step()
                continue
            loss.backward()
            with torch.no_grad():
                for p in params:
                    p -= lr * p.grad
                    p.grad = None
        return loss.item()
    return epoch


def torch_optim_engine(X: np.ndarray, y: np.ndarray, lr: float) -> Callable[[list], float] | None:
    """The same model trained with torch.optim.SGD, as PyTorch users train."""
    return torch_engine(X, y, lr, optimizer=True)


# ---------------------------------------------------------------------------------------------------------
# Measuring
# ---------------------------------------------------------------------------------------------------------

def matmul_peak(n: int = 2048, repeats: int = 5) -> float:
    """GFLOP/s of a large float32 matmul (the machine's practical peak for this BLAS)."""
    rng = np.random.default_rng(2)
    a = rng.random((n, n), dtype=np.float32)
    b = rng.random((n, n), dtype=np.float32)
    a @ b  # warm-up: threads and buffers
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t)
    return 2.0 * n ** 3 / min(times) / 1e9


def epoch_flops(rows: int) -> float:
    """Floating-point operations of one epoch's matmuls: forward, weight gradients and the hidden gradient."""
    per_row = 2 * (IN * HIDDEN + HIDDEN * OUT)      # forward
    per_row += 2 * (IN * HIDDEN + HIDDEN * OUT)     # weight gradients
    per_row += 2 * HIDDEN * OUT                     # gradient of the hidden layer (none for the input)
    return float(rows * per_row)


def time_round_robin(epochs: dict[str, Callable[[list], float]], rows: int, batch: int, repeats: int,
                     seed: int) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Wall-clock and CPU seconds per epoch of each engine, the engines taking turns epoch by epoch (so that a
    change in the machine's load hits all of them alike), after an untimed warm-up over 20 batches each.

    CPU time (the process's, all threads) is the steadier figure on a machine shared with other jobs: it leaves
    out the time the process waits for a core. With one thread per engine it is directly comparable."""
    rng = np.random.default_rng(seed)
    warm = batches(rows, batch, rng)[:20]
    for epoch in epochs.values():
        epoch(warm)
    wall: dict[str, list[float]] = {name: [] for name in epochs}
    cpu: dict[str, list[float]] = {name: [] for name in epochs}
    for _ in range(repeats):
        plan = batches(rows, batch, rng)
        for name, epoch in epochs.items():
            c, t = time.process_time(), time.perf_counter()
            loss = epoch(plan)
            wall[name].append(time.perf_counter() - t)
            cpu[name].append(time.process_time() - c)
            if not np.isfinite(loss):
                raise RuntimeError(f"{name}: loss became {loss}")
    return wall, cpu


def thread_settings(with_torch: bool) -> str:
    """What each engine runs on: the BLAS/OpenMP variables NumPy's BLAS reads, and PyTorch's own thread count."""
    env = ", ".join(f"{k}={os.environ[k]}" for k in THREAD_VARIABLES if k in os.environ)
    text = f"numpy/microgradx BLAS: {env or 'library default (one thread per core)'}"
    torch = configured_torch() if with_torch else None
    if torch is not None:
        text += f"; pytorch: {torch.get_num_threads()} intra-op thread(s)"
    return text


def measure(engines: dict[str, Callable], X: np.ndarray, y: np.ndarray, lr: float, batch: int, epochs: int,
            rows: int) -> tuple[dict[str, float], dict[str, float]]:
    """Median wall and CPU seconds per epoch of each engine at one batch size, the engines interleaved."""
    made = {name: make(X, y, lr) for name, make in engines.items()}
    wall, cpu = time_round_robin({k: v for k, v in made.items() if v is not None}, rows, batch, epochs, seed=batch)
    if FLOOR in made and MGX_OPTIM in made:  # the same batches in the same order: the same weights, bit for bit
        for p, q in zip(made[FLOOR].model.parameters(), made[MGX_OPTIM].model.parameters(), strict=True):
            if not np.array_equal(p.data, q.data):
                raise RuntimeError(f"'{FLOOR}' and '{MGX_OPTIM}' ended with different weights")
    return ({name: statistics.median(ts) for name, ts in wall.items()},
            {name: statistics.median(ts) for name, ts in cpu.items()})


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and print the table, then each goal's ratio against its named baseline."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per engine and batch size")
    parser.add_argument("--rows", type=int, default=60_000, help="training rows (MNIST has 60,000)")
    parser.add_argument("--quick", action="store_true", help="1 epoch on 6,000 rows")
    parser.add_argument("--batches", type=int, nargs="+", default=[32, 128], help="batch sizes")
    parser.add_argument("--no-torch", action="store_true", help="skip PyTorch even when it is installed")
    parser.add_argument("--threads", type=int, default=None,
                        help="BLAS/OpenMP threads for every engine (default: the libraries' own defaults)")
    args = parser.parse_args(argv)
    if args.quick:
        args.epochs, args.rows = 1, 6_000
    X, y = make_data(args.rows)
    lr = 0.05
    peak = matmul_peak()
    engines = {NUMPY: numpy_engine, NUMPY_IN_OUT: numpy_in_out_engine, MGX: microgradx_engine,
               MGX_OPTIM: microgradx_optim_engine, MGX_OPTIM + " " + UNCHECKED: unchecked_engine,
               RAW_OPS: raw_ops_engine, FLOOR: kernels_engine}
    if not args.no_torch:
        engines[TORCH] = torch_engine
        engines[TORCH_OPTIM] = torch_optim_engine
    # NOTE: with one thread a process's CPU seconds are its work, steadier than wall seconds on a shared machine;
    # with several threads, idle BLAS threads spin, so wall seconds are the fair figure there.
    on_cpu = args.threads == 1
    flops = epoch_flops(args.rows)
    print(f"MLP {IN}-{HIDDEN}-{OUT}, ReLU, cross-entropy, SGD; {args.rows} rows x {IN} float32 (generated); "
          f"median of {args.epochs} epoch(s), engines interleaved; {os.cpu_count()} CPUs; "
          f"float32 matmul peak {peak:.1f} GFLOP/s")
    print(f"threads: {thread_settings(not args.no_torch)}")
    print(f"ratios are of {'CPU' if on_cpu else 'wall'} seconds (both are shown)")
    header = (f"{'engine':44s} {'batch':>5s} {'s/epoch':>8s} {'cpu s':>7s} {'x numpy':>8s} {'x np i/o':>8s} "
              f"{'x torch':>8s} {'GFLOP/s':>8s} {'% peak':>7s}")
    print(header)
    print("-" * len(header))
    found: dict[tuple[str, str, int], float] = {}
    for batch in args.batches:
        medians, cpus = measure(engines, X, y, lr, batch, args.epochs, args.rows)
        used = cpus if on_cpu else medians
        for name, t in medians.items():
            ratios = [f"{used[name] / used[other]:8.2f}" if other in used else f"{'-':>8s}"
                      for other in (NUMPY, NUMPY_IN_OUT, TORCH_PAIR[name])]
            for other in (NUMPY, NUMPY_IN_OUT):
                found[(name, other, batch)] = used[name] / used[other]
            rate = flops / t / 1e9
            print(f"{name:44s} {batch:5d} {t:8.3f} {cpus[name]:7.3f} {' '.join(ratios)} {rate:8.1f} "
                  f"{100 * rate / peak:6.1f}%")
    one_thread = {}
    if args.threads is None and 128 in args.batches:
        # The raw-op goal holds at one BLAS thread too: measured here in the same run, through threadpoolctl.
        from threadpoolctl import threadpool_limits
        with threadpool_limits(limits=1):
            _, cpus = measure({NUMPY_IN_OUT: numpy_in_out_engine, RAW_OPS: raw_ops_engine}, X, y, lr, 128,
                              args.epochs, args.rows)
        one_thread[(RAW_OPS, NUMPY_IN_OUT, 128)] = cpus[RAW_OPS] / cpus[NUMPY_IN_OUT]
        print(f"{RAW_OPS + ' (1 BLAS thread)':44s} {128:5d} {'':8s} {cpus[RAW_OPS]:7.3f} {'-':>8s} "
              f"{one_thread[(RAW_OPS, NUMPY_IN_OUT, 128)]:8.2f}")
    print(f"\n'x numpy' is against '{NUMPY}' (PyTorch's weight layout), 'x np i/o' against '{NUMPY_IN_OUT}' (the "
          f"layout of nn.Linear's column-major weights and of the raw-op MLP). 'x torch' is against the PyTorch row "
          f"that updates the same way. '{UNCHECKED}' is '{MGX_OPTIM}' with the backward finiteness rule switched "
          f"off: its distance to '{MGX_OPTIM}' is what the rule costs.")
    print("Goals (ratio of seconds per epoch against the named baseline, measured in this run):")
    threads = "1 BLAS thread" if args.threads == 1 else f"{args.threads} threads" if args.threads else \
        "default threads"
    for (engine, baseline, batch, goal) in GOALS:
        for where, table in ((threads, found), ("1 BLAS thread", one_thread)):
            ratio = table.get((engine, baseline, batch))
            if ratio is not None:
                print(f"  {engine!r} at batch {batch}, {where}: {ratio:.3f}x {baseline!r} (goal <= {goal:.2f}x: "
                      f"{'met' if ratio <= goal else 'not met'})")
    if (MGX_OPTIM, NUMPY, 128) in found:
        cost = [found[(MGX_OPTIM, NUMPY, b)] / found[(MGX_OPTIM + " " + UNCHECKED, NUMPY, b)] for b in args.batches]
        print("  the backward finiteness rule costs " + ", ".join(f"{100 * (c - 1):+.1f}% at batch {b}"
                                                                  for c, b in zip(cost, args.batches, strict=True)))
    floor = [(b, found[(FLOOR, NUMPY, b)], found[(MGX_OPTIM, NUMPY, b)]) for b in args.batches
             if (FLOOR, NUMPY, b) in found and (MGX_OPTIM, NUMPY, b) in found]
    if floor:
        print(f"  the floor, '{FLOOR}' (the same step, the same weights, no graph): "
              + ", ".join(f"{f:.3f}x at batch {b} (the graph adds {100 * (m / f - 1):.0f}%)" for b, f, m in floor))


if __name__ == "__main__":
    main()
