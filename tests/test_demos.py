"""Every demo in fast mode, its key numbers checked against the seeds' printed values and independent oracles
(formulas and loops written out here, SymPy-free exact fractions, central differences)."""

from __future__ import annotations

import importlib.util
import math
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

DEMOS = Path(__file__).resolve().parent.parent / "demos"


@pytest.fixture
def demo(monkeypatch, tmp_path):
    """Load ``demos/<name>.py`` and run its ``main`` in fast mode into a temporary folder; return its results."""
    monkeypatch.syspath_prepend(str(DEMOS))

    def run(name: str) -> tuple[dict, Path]:
        spec = importlib.util.spec_from_file_location(f"demo_{name}", DEMOS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        monkeypatch.setitem(sys.modules, spec.name, module)  # dataclasses look their module up by name
        spec.loader.exec_module(module)
        out = tmp_path / name
        return module.main(["--fast", "--out", str(out)]), out

    return run


def sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))


# -- 1. worked backprop (seed 001, Example 3) -----------------------------------------------------------------

def test_worked_backprop_reproduces_example3(demo):
    r, out = demo("worked_backprop")
    # The seed's printed numbers, to its 5 decimals.
    assert (round(r["z1"], 5), round(r["g1"], 5), round(r["z2"], 5), round(r["yhat"], 5)) == (
        1.5, 0.81757, 0.40879, 0.60080)
    assert (round(r["dJ/dw1"], 5), round(r["dJ/dw2"], 5)) == (0.02510, 0.13757)
    assert (round(r["w1_new"], 5), round(r["w2_new"], 5)) == (0.72490, 0.36243)
    assert round(r["yhat_new"], 5) == 0.57287
    assert (round(r["z1_rounded"], 5), round(r["z2_rounded"], 5)) == (1.44980, 0.29356)
    # The seed's delta formulas (Ex.1), (Ex.2), written out here, to machine precision.
    g1 = sigmoid(2 * 0.75)
    yhat = sigmoid(g1 * 0.5)
    delta2 = 2 * (yhat - 0.25) * yhat * (1 - yhat)
    assert r["dJ/dw2"] == pytest.approx(delta2 * g1, rel=1e-14)
    assert r["dJ/dw1"] == pytest.approx(delta2 * 0.5 * g1 * (1 - g1) * 2, rel=1e-14)
    assert r["backward_steps"] == 10  # x, y, w1, w2, z1, g1, z2, yhat, yhat - y, J
    for stem in ("1-forward", "2-backward", "3-after-step"):
        assert (out / f"{stem}.svg").exists() or (out / f"{stem}.dot").exists()
    assert "0.70159" in (out / "backward.txt").read_text()  # S(yhat - y) = 2 (yhat - y)
    assert f"{2 * (yhat - 0.25):.5f}" == "0.70159"


def test_worked_backprop_runs_as_a_script(tmp_path):
    done = subprocess.run([sys.executable, str(DEMOS / "worked_backprop.py"), "--fast", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=120, check=True)
    assert "dJ/dw1 = 0.02510   dJ/dw2 = 0.13757   W = (0.72490, 0.36243)   yhat 0.60080 -> 0.57287" in done.stdout
    assert (tmp_path / "step.txt").exists()


# -- 2. path summation (seed 004) --------------------------------------------------------------------------------

def layered_float(depth: int, w: float) -> float:
    """The demo's layered network, written out on floats."""
    a, b = math.tanh(0.9 * w), math.tanh(-1.1 * w)
    for _ in range(depth - 1):
        a, b = math.tanh(0.8 * a + 0.3 * b), math.tanh(-0.5 * a + 0.7 * b)
    return a + b


def test_path_summation_two_paths_and_exponential_count(demo):
    r, out = demo("path_summation")
    w = 2.0
    through_cos, through_sin = -2 * w * math.sin(w * w), 2 * w * math.cos(w * w)
    assert r["two_paths_count"] == 2
    assert sorted(r["two_paths_products"]) == pytest.approx(sorted([through_cos, through_sin]), rel=1e-14)
    assert r["two_paths_sum"] == pytest.approx(through_cos + through_sin, rel=1e-14)
    assert r["two_paths_backward"] == pytest.approx(through_cos + through_sin, rel=1e-14)
    assert 10 in r["depths"]
    assert r["path_counts"] == [2 ** d for d in r["depths"]]
    assert r["paths_found"] == r["path_counts"]
    assert r["path_counts"][r["depths"].index(10)] == 1024  # seed 004: 10 layers of 2 nodes, 2**10 terms
    h = 1e-6
    for d, s, g in zip(r["depths"], r["path_sums"], r["backward_grads"]):
        central = (layered_float(d, 0.5 + h) - layered_float(d, 0.5 - h)) / (2 * h)
        assert s == pytest.approx(central, abs=1e-8)
        assert g == pytest.approx(s, rel=1e-12, abs=1e-15)
    assert (out / "scaling.png").exists() and (out / "scaling.txt").exists()


# -- 3. activation gallery (seeds 000, 002, 004) -----------------------------------------------------------------

SEED002_PRINTED = {  # seed 002's "Output:" lines
    "binary_step(5)": 1, "binary_step(-1)": 0, "linear_function(4)": 16, "linear_function(-2)": -8,
    "sigmoid_function(7)": 0.9990889488055994, "sigmoid_function(-22)": 2.7894680920908113e-10,
    "tanh_function(0.5)": 0.4621171572600098, "tanh_function(-1)": -0.7615941559557646,
    "relu_function(7)": 7, "relu_function(-7)": 0, "leaky_relu_function(7)": 7, "leaky_relu_function(-7)": -0.07,
    "elu_function(5,": 5, "elu_function(-5,": -0.09932620530009145,
}


def test_activation_gallery_reproduces_seed002_outputs_and_derivatives(demo):
    r, out = demo("activation_gallery")
    got = r["outputs"]
    for call, printed in SEED002_PRINTED.items():
        assert got[call] == pytest.approx(printed, rel=1e-14, abs=1e-300), call
    # Seed 002's swish prints come from its code x / (1 - e**-x) ...
    assert got["swish_function(-67) seed formula"] == pytest.approx(5.349885844610276e-28, rel=1e-14)
    assert got["swish_function(4) seed formula"] == pytest.approx(4.074629441455096, rel=1e-14)
    # ... while swish is x * sigmoid(x).
    assert got["swish_function(4)"] == pytest.approx(4 / (1 + math.exp(-4)), rel=1e-15)
    assert got["swish_function(-67)"] == pytest.approx(-67 * math.exp(-67) / (1 + math.exp(-67)), rel=1e-14)
    # The SymPy check flags the printed formula at every point (value and derivative) and passes x * sigmoid(x).
    seed, correct = r["swish_check"]["seed"], r["swish_check"]["correct"]
    assert not seed.ok and not any(p[-1] for p in seed.points) and correct.ok
    assert (out / "swish-sympy-check.txt").exists()
    assert r["peaks"]["sigmoid"] == pytest.approx(0.25, abs=1e-12)  # xs includes 0: sigmoid'(0) = 1/4
    for name in ("tanh", "arctan", "softsign"):
        assert r["peaks"][name] == pytest.approx(1.0, abs=1e-12)
    assert (out / "gallery.png").exists() and (out / "assignment-swish.txt").exists()
    # The drawn derivatives against central differences of the drawn forward curves.
    xs = r["xs"]
    step = xs[1] - xs[0]
    for name in r["entries"]:
        y, dy = r["curves"][name]
        central = (y[2:] - y[:-2]) / (2 * step)
        inner = xs[1:-1]
        # Away from the kinks (0 for the ReLU family and the step, +-1 for hard tanh) the difference quotient of
        # the drawn forward curve must agree with the drawn derivative.
        smooth = (np.abs(inner) > 2 * step) & (np.abs(np.abs(inner) - 1) > 2 * step)
        assert np.allclose(dy[1:-1][smooth], central[smooth], atol=2e-3, rtol=1e-3), name


# -- 5. learning rate on seed 001's polynomial ----------------------------------------------------------------------

POLY = np.array((0.000017, -0.001133, 0.029241, -0.36691, 2.234115, -5.510020, 4.722197))
DPOLY = np.polyder(POLY)


def fprime(x: float) -> float:
    return float(np.polyval(DPOLY, x))


def test_learning_rate_1d_against_loops_written_here(demo):
    r, out = demo("learning_rate_1d")
    minima = sorted(float(z.real) for z in np.roots(DPOLY)
                    if abs(z.imag) < 1e-9 and np.polyval(np.polyder(DPOLY), z.real) > 0)
    # Small rate from 0: plain x <- x - 0.01 f'(x) reaches the local minimum near 2.10.
    x, steps = 0.0, 0
    while abs(fprime(x)) >= 1e-4 or steps == 0:
        x -= 0.01 * fprime(x)
        steps += 1
    assert r["small"]["status"] == "converged"
    assert r["small"]["steps"] == steps
    assert r["small"]["end"] == pytest.approx(minima[0], abs=1e-3)
    # Large rate: 0 -> 27.5501 -> far away, "diverges drastically after only two iterations".
    x1 = 0.0 - 5.0 * fprime(0.0)
    assert r["large"]["xs"][1] == pytest.approx(x1, rel=1e-12)
    assert r["large"]["xs"][2] == pytest.approx(x1 - 5.0 * fprime(x1), rel=1e-12)
    assert r["large"]["status"].startswith("diverged") and r["large"]["steps"] == 2
    # Momentum (seed 001: dW <- alpha dW - lr grad, W <- W + dW) against its own loop, and faster than plain GD.
    x, v, xs = 23.0, 0.0, [23.0]
    for _ in range(len(r["momentum"]["xs"]) - 1):
        v = 0.4 * v - 0.1 * fprime(x)
        x += v
        xs.append(x)
    assert r["momentum"]["xs"] == pytest.approx(xs, rel=1e-12)
    assert r["momentum"]["steps"] < r["gd_right"]["steps"]
    assert r["momentum"]["end"] == pytest.approx(minima[1], abs=1e-3)
    # Adam (seed 001's Algorithm 8) against its own loop: it reaches the lower minimum near 20.52.
    x, m, s = 0.0, 0.0, 0.0
    for t in range(1, len(r["adam"]["xs"])):
        g = fprime(x)
        m, s = 0.9 * m + 0.1 * g, 0.999 * s + 0.001 * g * g
        x -= 5.0 * (m / (1 - 0.9 ** t)) / (math.sqrt(s / (1 - 0.999 ** t)) + 1e-8)
    assert r["adam"]["end"] == pytest.approx(x, rel=1e-9)
    assert r["adam"]["end"] == pytest.approx(minima[1], abs=1e-3)
    assert np.polyval(POLY, r["adam"]["end"]) < np.polyval(POLY, r["small"]["end"])
    assert (out / "trajectories.png").exists()


# -- 6. exact line search (seed 001, Example 1) ---------------------------------------------------------------------

def test_line_search_iterates_are_the_exact_ones(demo):
    r, out = demo("line_search")
    # Exact steepest descent on f = x^T H x / 2 - (0, 2) x with H = [[2, -2], [-2, 4]]: lambda* = g.g / g.H.g.
    x = (Fraction(0), Fraction(0))
    lambdas, iterates = [], [x]
    for _ in range(len(r["lambdas"])):
        g = (2 * x[0] - 2 * x[1], 4 * x[1] - 2 * x[0] - 2)
        hg = (2 * g[0] - 2 * g[1], -2 * g[0] + 4 * g[1])
        lam = (g[0] ** 2 + g[1] ** 2) / (g[0] * hg[0] + g[1] * hg[1])
        x = (x[0] - lam * g[0], x[1] - lam * g[1])
        lambdas.append(lam)
        iterates.append(x)
    assert [Fraction(str(v)) for v in r["lambdas"]] == lambdas
    assert lambdas[0] == Fraction(1, 4)
    assert [tuple(Fraction(str(c)) for c in p) for p in r["iterates"]] == iterates
    assert iterates[1] == (0, Fraction(1, 2))  # seed 001: x(1) = (0, 1/2)
    assert tuple(int(c) for c in r["minimiser"]) == (1, 1)
    last = iterates[-1]
    assert max(abs(last[0] - 1), abs(last[1] - 1)) < Fraction(1, 10)
    assert (out / "iterates.txt").exists() and (out / "iterates.png").exists()


# -- 7. momentum and Nesterov on L = x^2 + 4y^2 (seed 004) --------------------------------------------------------

def seed004_loop(lr: float, beta: float, nesterov: bool, n: int) -> tuple[list, list]:
    """Seed 004's rules literally: V <- beta V - lr dL(W [+ beta V]), W <- W + V; returns the W and the V."""
    w, v = np.array([-4.0, 1.0]), np.zeros(2)
    ws, vs = [w.copy()], [v.copy()]
    for _ in range(n):
        at = w + beta * v if nesterov else w
        v = beta * v - lr * np.array([2 * at[0], 8 * at[1]])
        w = w + v
        ws.append(w.copy())
        vs.append(v.copy())
    return ws, vs


def test_momentum_zigzag_follows_seed004_rules(demo):
    r, out = demo("momentum_zigzag")
    lr, beta = 0.15, 0.5
    gd = r["paths"]["gradient descent"]
    ws, _ = seed004_loop(lr, 0.0, False, len(gd) - 1)
    assert np.allclose(gd, ws, rtol=1e-12, atol=1e-15)
    assert all(a[1] * b[1] < 0 for a, b in zip(gd[:10], gd[1:11]))  # the zig-zag: y flips sign every step
    mom = r["paths"]["momentum"]
    ws, _ = seed004_loop(lr, beta, False, len(mom) - 1)
    assert np.allclose(mom, ws, rtol=1e-12, atol=1e-15)
    # The optimizer's Nesterov keeps the look-ahead point W + beta V as its parameter.
    nes = r["paths"]["Nesterov"]
    ws, vs = seed004_loop(lr, beta, True, len(nes) - 1)
    assert np.allclose(nes, [w + beta * v for w, v in zip(ws, vs)], rtol=1e-12, atol=1e-15)
    for label, path in r["paths"].items():
        assert math.hypot(*path[-1]) < 1e-3 <= math.hypot(*path[-2]), label
        assert r["steps"][label] == len(path) - 1
    assert r["steps"]["Nesterov"] < r["steps"]["momentum"] < r["steps"]["gradient descent"]
    assert (out / "zigzag.png").exists()


# -- 12. insurance logistic regression (seed 004) -------------------------------------------------------------------

AGE = np.array([22, 25, 47, 52, 46, 56, 55, 60, 62, 61, 18, 28, 27, 29, 49], float)
HAVE = np.array([0, 0, 1, 0, 1, 1, 0, 1, 1, 1, 0, 0, 0, 0, 1], float)


def test_insurance_logistic_against_newton_and_formulas(demo):
    r, out = demo("insurance_logistic")
    assert r["seed_threshold"] == pytest.approx(1.53 / 0.042)
    assert r["seed_correct"] == int(np.sum((0.042 * AGE - 1.53 >= 0) == (HAVE == 1)))
    # Least squares by the normal equations.
    A = np.column_stack([AGE, np.ones_like(AGE)])
    slope, intercept = np.linalg.solve(A.T @ A, A.T @ HAVE)
    assert r["linear_crossing"] == pytest.approx((0.5 - intercept) / slope, rel=1e-10)
    # Maximum-likelihood logistic regression by Newton's method.
    theta = np.zeros(2)
    for _ in range(50):
        p = 1 / (1 + np.exp(-(A @ theta)))
        theta -= np.linalg.solve(A.T @ (A * (p * (1 - p))[:, None]), A.T @ (p - HAVE))
    assert r["fit_slope"] == pytest.approx(theta[0], rel=1e-3)
    assert r["fit_intercept"] == pytest.approx(theta[1], rel=1e-3)
    # Two-feature network at w1 = w2 = 1, b = 0: the seed's gradient formulas, and its highlighted row.
    age2 = AGE[:13]
    afford = np.array([1, 0, 1, 0, 1, 1, 0, 0, 1, 1, 1, 1, 0], float)
    have2 = np.array([0, 0, 1, 0, 1, 1, 0, 1, 1, 1, 0, 0, 0], float)
    z = age2 + afford
    p = 1 / (1 + np.exp(-z))
    expected = (np.mean(age2 * (p - have2)), np.mean(afford * (p - have2)), np.mean(p - have2))
    assert r["grad_engine"] == pytest.approx(expected, rel=1e-12)
    assert r["log_loss"] == pytest.approx(np.mean(np.logaddexp(0, z) - have2 * z), rel=1e-12)
    assert r["z_row0"] == 23
    assert round(r["yhat_row0"], 2) == 1.0 and r["yhat_row0"] == pytest.approx(sigmoid(23), rel=1e-15)
    assert r["error_row0"] == pytest.approx(sigmoid(23) ** 2, rel=1e-15)
    # Decoupled view: dE/da = 2 yhat * yhat (1 - yhat), dE/dw1 = x dE/da.
    for x, key in ((22.0, "age 22 (raw)"), (0.22, "age 0.22 (age / 100)")):
        s = sigmoid(x + 1.0)
        d = r["decoupled"][key]
        assert d["a_grad"] == pytest.approx(2 * s * s * (1 - s), rel=1e-9)
        assert d["w1_grad"] == pytest.approx(x * 2 * s * s * (1 - s), rel=1e-9)
    assert (out / "insurance.png").exists()


# -- 4. vanishing gradients (seeds 000, 003) ------------------------------------------------------------------------

ACT = {"sigmoid": (lambda z: 1 / (1 + np.exp(-z)), lambda a: a * (1 - a)),
       "tanh": (np.tanh, lambda a: 1 - a * a),
       "relu": (lambda z: np.maximum(z, 0), lambda a: (a > 0).astype(float))}


def backprop_by_hand(linears, act, residual, X, y):
    """Forward and backward of the demo's network written out in NumPy: the norms of dL/dW and dL/dz per layer."""
    f, df = ACT[act]
    Ws, bs = [np.asarray(layer.weight.data, float) for layer in linears], [np.asarray(layer.bias.data, float)
                                                                          for layer in linears]
    hs, acts = [X], []
    for k in range(len(Ws) - 1):
        a = f(hs[-1] @ Ws[k].T + bs[k])
        acts.append(a)
        hs.append(hs[-1] + a if residual and k > 0 else a)
    out = hs[-1] @ Ws[-1].T + bs[-1]
    g = 2 * (out - y[:, None]) / out.size            # dL/dz of the last layer
    dW, dz = [None] * len(Ws), [None] * len(Ws)
    dW[-1], dz[-1] = g.T @ hs[-1], g
    gh = g @ Ws[-1]                                   # dL/dh of the last hidden output
    for k in range(len(Ws) - 2, -1, -1):
        gz = gh * df(acts[k])
        dz[k], dW[k] = gz, gz.T @ hs[k]
        gh = gz @ Ws[k] + (gh if residual and k > 0 else 0)
    return [np.linalg.norm(w) for w in dW], [np.linalg.norm(z) for z in dz], Ws


def test_vanishing_gradients_against_hand_backprop_and_the_sigmoid_bound(demo):
    r, out = demo("vanishing_gradients")
    assert len(r["norms"]) == 9
    for label, linears in r["models"].items():
        act = label.split(",")[0]
        w_norms, z_norms, Ws = backprop_by_hand(linears, act, "residual" in label, r["X"], r["y"])
        assert len(w_norms) == 20
        assert r["norms"][label] == pytest.approx(w_norms, rel=1e-9, abs=1e-300), label
        assert r["deltas"][label] == pytest.approx(z_norms, rel=1e-9, abs=1e-300), label
        assert r["ratios"][label] == pytest.approx(w_norms[0] / w_norms[-1], rel=1e-9)
        if act == "sigmoid" and "residual" not in label:
            # Seed 003: every sigmoid layer multiplies the gradient by sigma' <= 1/4 (times the weights).
            for k in range(19):
                assert z_norms[k] <= 0.25 * np.linalg.norm(Ws[k + 1], 2) * z_norms[k + 1] * (1 + 1e-12)
    d = r["delta_ratios"]
    assert d["sigmoid, naive init"] < 1e-12 and d["sigmoid, Xavier init"] < 1e-9   # vanishes either way
    assert d["tanh, naive init"] < 1e-3 < d["tanh, Xavier init"]                    # Xavier fixes tanh
    assert d["relu, naive init"] < 1e-5 < d["relu, He init"]                        # He fixes ReLU
    for act in ("sigmoid", "tanh", "relu"):
        assert d[f"{act}, naive init + residual"] > 1e-2                            # the skips carry it through
    assert (out / "layer-norms.png").exists() and (out / "ratios.txt").exists()


# -- 8. optimizer comparison (seed 000 §3.1) ------------------------------------------------------------------------

def test_optimizer_comparison_sgd_and_adam_against_loops_written_here(demo):
    from microgradx.data import DataLoader

    r, out = demo("optimizer_comparison")
    Xtr, ytr, Xte, yte = (np.asarray(a, np.float64) for a in r["split"])
    assert Xtr.shape[1] == 8
    init = {k: np.asarray(v, np.float64) for k, v in r["init"].items()}
    for name in ("SGD", "Adam"):
        W1, b1, W2, b2 = (init[k].copy() for k in ("0.weight", "0.bias", "2.weight", "2.bias"))
        params = [W1, b1, W2, b2]
        m = [np.zeros_like(p) for p in params]
        v = [np.zeros_like(p) for p in params]
        t, epoch_losses = 0, []
        loader = DataLoader(Xtr.astype(np.float32), ytr.astype(np.float32), 32, seed=0)
        for _ in range(r["epochs"]):
            total = 0.0
            for xb, yb in loader:
                xb, yb = xb.astype(np.float64), yb.astype(np.float64)
                z = xb @ W1.T + b1
                h = np.maximum(z, 0)
                e = (h @ W2.T + b2)[:, 0] - yb
                total += np.mean(e ** 2) * len(yb)
                go = (2 * e / len(yb))[:, None]
                gz = (go @ W2) * (z > 0)
                grads = [gz.T @ xb, gz.sum(0), go.T @ h, go.sum(0)]
                t += 1
                for p, g, mi, vi in zip(params, grads, m, v):
                    if name == "SGD":
                        p -= 0.01 * g
                    else:
                        mi[...] = 0.9 * mi + 0.1 * g
                        vi[...] = 0.999 * vi + 0.001 * g * g
                        p -= 0.001 * (mi / (1 - 0.9 ** t)) / (np.sqrt(vi / (1 - 0.999 ** t)) + 1e-8)
            epoch_losses.append(total / len(ytr))
        h = r["histories"][name]
        assert h.loss == pytest.approx(epoch_losses, rel=2e-4), name
        test_mse = np.mean(((np.maximum(Xte @ W1.T + b1, 0) @ W2.T + b2)[:, 0] - yte) ** 2)
        assert h["val_loss"][-1] == pytest.approx(test_mse, rel=2e-4), name
    for name, h in r["histories"].items():
        assert len(h.batch_loss) == r["epochs"] * math.ceil(len(ytr) / 32)
        windows = np.lib.stride_tricks.sliding_window_view(np.array(h.batch_loss), 50)
        assert h.rolling_variance(50) == pytest.approx(windows.var(axis=1, ddof=1), rel=1e-9)
        assert h.loss[-1] < h.loss[0], name
    assert (out / "optimizers.png").exists() and (out / "optimizers.txt").exists()


# -- 9. batch size study (seed 001 §4.2) ----------------------------------------------------------------------------

def test_batch_size_study_full_batch_is_gradient_descent_and_sgd_prefers_small_batches(demo):
    r, out = demo("batch_size_study")
    data, full, epochs = r["data"], r["full"], r["epochs"]
    X, y = data.X_train.astype(np.float64), data.y_train
    for (_, batch), res in r["results"].items():
        assert res["steps"] == epochs * math.ceil(full / batch)
    # Full-batch SGD is plain gradient descent: the loop written out here from the same initial weights.
    init = {k: np.asarray(v, np.float64) for k, v in r["init"].items()}
    W1, b1, W2, b2 = (init[k].copy() for k in ("0.weight", "0.bias", "2.weight", "2.bias"))
    losses = []
    onehot = np.eye(10)[y]
    for _ in range(epochs):
        z = X @ W1.T + b1
        h = np.maximum(z, 0)
        logits = h @ W2.T + b2
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        losses.append(-np.mean(np.log(p[np.arange(len(y)), y])))
        go = (p - onehot) / len(y)
        gz = (go @ W2) * (z > 0)
        W1, b1, W2, b2 = W1 - 0.01 * gz.T @ X, b1 - 0.01 * gz.sum(0), W2 - 0.01 * go.T @ h, b2 - 0.01 * go.sum(0)
    assert r["histories"]["sgd", full].loss == pytest.approx(losses, rel=1e-4)
    # Seed 001, Figure 21: with the same epochs, SGD's training loss grows with the batch size.
    sgd = [r["results"]["sgd", b]["loss"] for b in r["batches"]]
    assert sgd == sorted(sgd)
    assert r["results"]["adam", r["batches"][0]]["loss"] < r["results"]["sgd", r["batches"][0]]["loss"]
    assert (out / "batch-sizes.txt").exists() and (out / "loss.png").exists()


# -- 10. learning-rate schedules (seed 004) ------------------------------------------------------------------------

def keras_plateau(values, lr, factor=0.1, patience=3):
    """Rates epoch by epoch: x factor after `patience` epochs in a row without a new lowest value."""
    best, wait, rates = math.inf, 0, []
    for v in values:
        rates.append(lr)
        if v < best:
            best, wait = v, 0
        else:
            wait += 1
        if wait >= patience:
            lr, wait = lr * factor, 0
    return rates


def test_lr_schedules_reproduce_seed004_and_follow_the_formulas(demo):
    r, out = demo("lr_schedules")
    rates, epochs = r["rates"], r["epochs"]
    i5, i10 = epochs.index(5), epochs.index(10)
    assert round(rates["exponential (k = 0.01)"][i10], 2) == 0.09      # seed 004: "~ 0.09"
    assert round(rates["inverse (k = 0.01)"][i10], 3) == 0.091          # seed 004: "~ 0.091"
    assert rates["exponential (k = 0.01)"][i10] == pytest.approx(0.1 * math.exp(-0.1), rel=1e-15)
    assert rates["inverse (k = 0.01)"][i10] == pytest.approx(0.1 / 1.1, rel=1e-15)
    assert rates["step (x 0.5 every 5)"][i5] == pytest.approx(0.05) and rates["step (x 0.5 every 5)"][i10] == \
        pytest.approx(0.025)                                             # seed 004: 0.05, 0.025
    # The rate printed after epoch t is the one epoch t + 1 trains with.
    assert r["plateau_rates"] == pytest.approx(keras_plateau(r["plateau_losses"] + [math.inf], 0.1)[1:])
    hs = r["histories"]
    n = hs["constant"].epochs
    t = np.arange(n)
    assert hs["constant"].lr == pytest.approx([0.1] * n)
    assert hs["exponential"].lr == pytest.approx(0.1 * np.exp(-0.1 * t), rel=1e-12)
    assert hs["inverse"].lr == pytest.approx(0.1 / (1 + 0.1 * t), rel=1e-12)
    assert hs["step"].lr == pytest.approx(0.1 * 0.5 ** (t // 5), rel=1e-12)
    assert hs["plateau"].lr == pytest.approx(keras_plateau(hs["plateau"]["val_loss"], 0.1), rel=1e-12)
    # Same weights, batches and rate in epoch 1: every run's first epoch is the same.
    assert len({round(h.loss[0], 6) for h in hs.values()}) == 1
    assert (out / "schedules.png").exists() and (out / "source-rates.txt").exists()


# -- 11. regularisation (seed 003) --------------------------------------------------------------------------------

def linear_regression_loop(X, y, init, optimizer, kind, lam=0.1, lr=0.05, steps=60):
    """Full-batch SGD / Adam / AdamW on MSE of a linear model, the update rules written out."""
    w, b = np.asarray(init["weight"], float)[0].copy(), np.asarray(init["bias"], float).copy()
    m, v, path = np.zeros(6), np.zeros(6), []
    for t in range(1, steps + 1):
        e = X @ w + b - y
        g = np.concatenate([2 * X.T @ e / len(y), [2 * e.mean()]])
        theta = np.concatenate([w, b])
        if kind != "decoupled":
            g = g + lam * theta                      # L2: the gradient of (lam/2) ||theta||^2
        if optimizer == "SGD":
            theta = theta - lr * g - (lr * lam * theta if kind == "decoupled" else 0)
        else:
            m, v = 0.9 * m + 0.1 * g, 0.999 * v + 0.001 * g * g
            step = lr * (m / (1 - 0.9 ** t)) / (np.sqrt(v / (1 - 0.999 ** t)) + 1e-8)
            theta = theta - step - (lr * lam * theta if kind == "decoupled" else 0)
        w, b = theta[:5], theta[5:]
        path.append(theta)
    return np.array(path)


def test_regularisation_decay_forms_dropout_and_overfitting(demo):
    r, out = demo("regularisation")
    l2 = r["l2"]
    for (opt_name, kind), path in l2["paths"].items():
        expected = linear_regression_loop(l2["X"], l2["y"], l2["init"], opt_name, kind)
        assert np.allclose(path, expected, rtol=1e-10, atol=1e-12), (opt_name, kind)
    assert l2["gaps"]["SGD", "loss", "decoupled"] < 1e-12 and l2["gaps"]["SGD", "coupled", "decoupled"] < 1e-12
    assert l2["gaps"]["Adam", "loss", "coupled"] < 1e-12
    assert l2["gaps"]["Adam", "coupled", "decoupled"] > 1e-2
    # Dropout: evaluation = the network without dropout, by hand; training passes differ; their mean -> evaluation.
    d = r["dropout"]
    model = d["model"]
    hidden = np.maximum(d["x"] @ model[0].weight.data.T + model[0].bias.data, 0)
    plain = (hidden @ model[3].weight.data.T + model[3].bias.data)[0]
    assert np.allclose(d["eval_out"], plain, rtol=1e-12, atol=1e-12)
    assert np.allclose(d["expectation"], plain, rtol=1e-12, atol=1e-12)
    assert len({tuple(o) for o in d["train_out"]}) > 1
    assert np.all(np.abs(d["mc_mean"] - plain) < 5 * d["mc_se"])
    # Overfitting: the unregularised test loss rises past its minimum; both regularised runs end lower.
    hs, nets = r["overfit"]["histories"], r["overfit"]["nets"]
    none = hs["no regularisation"]["val_loss"]
    assert none[-1] > 1.3 * min(none)
    for label in ("L2 1e-3 (Adam weight_decay)", "weight decay 0.5 (AdamW)"):
        assert hs[label]["val_loss"][-1] < none[-1]
    _, _, Xte, yte = r["overfit"]["split"]
    net = nets["no regularisation"]
    a = np.maximum(Xte @ net[0].weight.data.T + net[0].bias.data, 0)
    a = np.maximum(a @ net[2].weight.data.T + net[2].bias.data, 0)
    logits = (a @ net[4].weight.data.T + net[4].bias.data).astype(np.float64)
    ce = np.mean(np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1)) + logits.max(1)
                 - logits[np.arange(len(yte)), yte])
    assert none[-1] == pytest.approx(ce, rel=1e-4)
    assert (out / "regularisation.png").exists() and (out / "dropout.txt").exists()


# -- 13. MNIST MLP (seed 001 §3.1), on the digits -----------------------------------------------------------------

def test_mnist_mlp_stops_by_keras_rule_and_accuracy_by_hand(demo):
    r, out = demo("mnist_mlp")
    h = r["history"]
    # Keras's EarlyStopping(monitor='accuracy', min_delta=1e-4, patience=3), written out.
    best, wait, stop_after = -math.inf, 0, None
    for epoch, acc in enumerate(h["accuracy"], 1):
        if acc > best + 1e-4:
            best, wait = acc, 0
        else:
            wait += 1
            if wait >= 3:
                stop_after = epoch
                break
    assert stop_after is not None and h.epochs == stop_after < r["max_epochs"]
    net, data = r["net"], r["data"]
    assert data.X_train.shape[1] == 64  # the digits: the demo says it is not MNIST
    logits = np.maximum(data.X_test @ net[0].weight.data.T + net[0].bias.data, 0) @ net[2].weight.data.T \
        + net[2].bias.data
    assert r["test"]["accuracy"] == pytest.approx(np.mean(logits.argmax(1) == data.y_test), abs=1e-12)
    assert r["test"]["accuracy"] > 0.85
    assert "digits (not MNIST)" in (out / "result.txt").read_text()


# -- 14. grading walkthrough ------------------------------------------------------------------------------------------

def evaluate_formula(formula, Value, v0):
    """Build the grader's printed program 'vK = vA + vB where vB = relu(vA); ...; v0 = 1' on an engine."""
    lhs, _, rest = formula.partition(" where ")
    steps = [lhs] + rest.split("; ")
    env = {"v0": Value(v0)}
    for step in reversed(steps[:-1]):  # the steps are printed last first; the final one sets v0
        name, expr = (s.strip() for s in step.split("="))
        if expr.startswith("relu("):
            env[name] = env[expr[5:-1]].relu()
        else:
            a, op, b = expr.split()
            env[name] = {"+": lambda x, y: x + y, "*": lambda x, y: x * y}[op](env[a], env[b])
    return env[steps[0].split("=")[0].strip()], env["v0"]


def load_engine(path):
    spec = importlib.util.spec_from_file_location(f"engine_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.Value


def test_grading_walkthrough_counterexample_is_real_and_the_fix_passes(demo):
    r, out = demo("grading_walkthrough")
    before, after = r["before"], r["after"]
    assert not before["passed"] and "accumulate[relu]" in before["failed"]
    assert after["passed"] and after["score"] == after["max_score"] and not after["failed"]
    finding = before["findings"]["accumulate[relu]"]
    assert finding["shrunk"] and finding["formula"].endswith("v0 = 1")
    # Rebuild the printed counterexample on both engines, and check it against a central difference.
    buggy, fixed = load_engine(r["submitted"]), load_engine(r["fixed"])
    outputs = {}
    for name, Value in (("buggy", buggy), ("fixed", fixed)):
        o, v0 = evaluate_formula(finding["formula"], Value, 1.0)
        o.backward()
        outputs[name] = v0.grad
    f = lambda x: evaluate_formula(finding["formula"], fixed, x)[0].data  # noqa: E731
    central = (f(1 + 1e-6) - f(1 - 1e-6)) / 2e-6
    row = finding["rows"][0]
    assert row["got"] == outputs["buggy"] and row["expected"] == pytest.approx(central, rel=1e-6)
    assert outputs["fixed"] == pytest.approx(central, rel=1e-6) and outputs["buggy"] != pytest.approx(central)
    assert "+=" in (out / "report-before.txt").read_text()  # the hint names the fix
    assert (out / "report-after.txt").exists()
    # mul's `=` on one side: one failed rule with the hint that names it, the rules needing `*` blocked, not failed.
    cascade = r["cascade"]
    assert cascade["failed"] == ["accumulate[mul]"] and cascade["blocked"]
    assert "`=` where `+=` is needed in mul's backward" in (out / "report-mul.txt").read_text()
