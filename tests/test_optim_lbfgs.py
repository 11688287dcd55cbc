"""L-BFGS against torch.optim.LBFGS trajectories (float64, a quadratic and the Rosenbrock function, with and
without the strong-Wolfe line search), against the exact line search of Slettevold's Example 1, and its errors."""

from __future__ import annotations

import numpy as np
import pytest

from microgradx import DomainError, Value, optim
from microgradx.tensor import Tensor

A = np.array([[50.0, 2.0, 0.0, 0.0], [2.0, 5.0, 1.0, 0.0], [0.0, 1.0, 1.0, 0.3], [0.0, 0.0, 0.3, 2.0]])
B = np.array([1.0, -2.0, 0.5, 3.0])


def quadratic(x):
    """1/2 x^T A x - b^T x, condition number ~ 60; works on our Tensors and on torch tensors."""
    return 0.5 * (x * (A_of(x) @ x)).sum() - (B_of(x) * x).sum()


def rosenbrock(x):
    """The Rosenbrock function in 4 dimensions: sum 100 (x[i+1] - x[i]^2)^2 + (1 - x[i])^2, minimum at 1."""
    a, b = x[:-1], x[1:]
    return (100.0 * (b - a * a) * (b - a * a) + (1.0 - a) * (1.0 - a)).sum()


def A_of(x):
    return _const(x, A)


def B_of(x):
    return _const(x, B)


def _const(x, array):
    if isinstance(x, Tensor):
        return array
    import torch

    return torch.tensor(array)


PROBLEMS = {"quadratic": (quadratic, np.array([1.0, -1.0, 2.0, 0.5])),
            "rosenbrock": (rosenbrock, np.array([-1.2, 1.0, -0.5, 0.8]))}

# (label, keyword arguments, steps): each step runs up to max_iter iterations
SETTINGS = [
    ("plain lr 0.01", dict(lr=0.01, max_iter=1), 200),
    ("plain history 3", dict(lr=0.005, max_iter=4, history_size=3), 50),
    ("strong wolfe", dict(line_search_fn="strong_wolfe", max_iter=1), 120),
    # (Rosenbrock amplifies the last-digit differences of the two libraries' dot products: 1e-16 grows to
    # ~1e-9 after 15 such steps, so this one runs 10)
    ("strong wolfe history 2", dict(line_search_fn="strong_wolfe", max_iter=3, history_size=2), 10),
    ("strong wolfe defaults", dict(line_search_fn="strong_wolfe"), 5),
]


def lbfgs_path(x, opt, f, steps):
    """The iterates of ``steps`` closure steps of ``opt`` on f(x): the same loop for either library."""
    def closure():
        opt.zero_grad()
        loss = f(x)
        loss.backward()
        return loss

    path = []
    for _ in range(steps):
        opt.step(closure)
        path.append(np.array(x.data if isinstance(x, Tensor) else x.detach().numpy(), copy=True))
    return np.array(path), opt


def ours_path(f, x0, kwargs, steps):
    x = Tensor(x0.copy())
    return lbfgs_path(x, optim.LBFGS([x], **kwargs), f, steps)


def torch_path(torch, f, x0, kwargs, steps):
    x = torch.tensor(x0.copy(), requires_grad=True)
    return lbfgs_path(x, torch.optim.LBFGS([x], **kwargs), f, steps)


@pytest.mark.parametrize("problem", list(PROBLEMS))
@pytest.mark.parametrize("label, kwargs, steps", SETTINGS, ids=[s[0] for s in SETTINGS])
def test_lbfgs_follows_torch_optim_lbfgs(problem, label, kwargs, steps):
    torch = pytest.importorskip("torch", reason="PyTorch (the `test` extra) is the oracle of this check")
    f, x0 = PROBLEMS[problem]
    ours, opt = ours_path(f, x0, kwargs, steps)
    theirs, topt = torch_path(torch, f, x0, kwargs, steps)
    np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-10)
    tstate = topt.state[topt._params[0]]
    assert (opt.state["func_evals"], opt.state["n_iter"]) == (tstate["func_evals"], tstate["n_iter"])
    assert np.abs(ours[-1] - x0).max() > 1e-3  # it went somewhere


def test_lbfgs_with_strong_wolfe_solves_both_problems():
    for f, x0, expected in ((quadratic, PROBLEMS["quadratic"][1], np.linalg.solve(A, B)),
                            (rosenbrock, PROBLEMS["rosenbrock"][1], np.ones(4))):
        path, _ = ours_path(f, x0, dict(line_search_fn="strong_wolfe", tolerance_grad=1e-12,
                                        tolerance_change=1e-14), 10)
        np.testing.assert_allclose(path[-1], expected, atol=1e-7)


def slettevold_closure(x1, x2, opt):
    def closure():
        opt.zero_grad()
        f = x1 * x1 + 2 * x2 * x2 - 2 * x1 * x2 - 2 * x2
        f.backward()
        return f
    return closure


def test_the_first_strong_wolfe_step_is_slettevolds_exact_line_search_step():
    """Example 1 of Slettevold's thesis: from (0, 0) the exact line search gives lambda* = 1/4, x(1) = (0, 1/2).
    On a quadratic the cubic interpolation is exact, so the strong-Wolfe search lands on the same step; where
    steepest descent zig-zags for 30 steps to (0.999969, 0.999969), L-BFGS's curvature estimate reaches the
    minimum (1, 1) at the third iteration."""
    x1, x2 = Value(0.0), Value(0.0)
    opt = optim.LBFGS([x1, x2], line_search_fn="strong_wolfe", max_iter=1, max_eval=10)  # one iteration a step
    closure = slettevold_closure(x1, x2, opt)
    assert opt.step(closure) == 0.0
    assert (x1.data, x2.data) == (0.0, 0.5)
    # the step along d = -g = (0, 2) was t = 1/4: lambda*_1 of the thesis
    assert opt.state["t"] == 0.25
    opt.step(closure)
    opt.step(closure)
    assert x1.data == pytest.approx(1.0, abs=1e-12) and x2.data == pytest.approx(1.0, abs=1e-12)


def test_a_non_finite_loss_is_refused_and_the_parameters_go_back():
    x = Tensor(np.array([1.0, 2.0]))
    opt = optim.LBFGS([x], lr=1e3, max_iter=5)

    def closure():  # a loss that overflows once a step goes far
        opt.zero_grad()
        loss = (x * x).sum()
        loss.backward()
        return loss.item() if np.abs(x.data).max() < 10 else float("inf")

    with pytest.raises(DomainError, match="LBFGS.step: the loss is inf at the point tried; the parameters are left"):
        opt.step(closure)
    assert x.data.tolist() == [1.0, 2.0] and opt.state["n_iter"] == 0


def test_a_non_finite_gradient_names_the_parameter():
    w = Value(1.0, label="w")
    opt = optim.LBFGS([w])

    def closure():
        w.grad = float("nan")
        return 1.0

    with pytest.raises(DomainError, match=r"LBFGS.step: the gradient of parameter 0 \('w'\) is not finite \(nan"):
        opt.step(closure)
    assert w.data == 1.0


@pytest.mark.parametrize("call, error, match", [
    (lambda: optim.LBFGS([Value(1.0)]).step(), TypeError, "LBFGS.step.. missing 1 required positional argument"),
    (lambda: optim.LBFGS([Value(1.0)]).step(None), TypeError, "LBFGS.step needs a closure"),
    (lambda: optim.LBFGS([Value(1.0)], line_search_fn="armijo"), ValueError,
     "line_search_fn must be None or 'strong_wolfe', got 'armijo'"),
    (lambda: optim.LBFGS([{"params": [Value(1.0)]}, {"params": [Value(2.0)]}]), ValueError,
     r"LBFGS: takes one parameter group \(as PyTorch\), got 2"),
    (lambda: optim.LBFGS([Value(1.0)], history_size=0), ValueError, "history_size"),
    (lambda: optim.LBFGS([Value(1.0)], lr=-1.0), ValueError, "LBFGS: lr must be >= 0"),
])
def test_bad_settings_are_named(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_state_dict_round_trip_continues_the_same_path():
    f, x0 = PROBLEMS["rosenbrock"]
    full, _ = ours_path(f, x0, dict(line_search_fn="strong_wolfe", max_iter=2, history_size=4), 8)
    half, opt = ours_path(f, x0, dict(line_search_fn="strong_wolfe", max_iter=2, history_size=4), 4)
    x = Tensor(half[-1].copy())
    other = optim.LBFGS([x])
    other.load_state_dict(opt.state_dict())
    assert other.param_groups[0]["history_size"] == 4

    def closure():
        other.zero_grad()
        loss = f(x)
        loss.backward()
        return loss

    for k in range(4, 8):
        other.step(closure)
        np.testing.assert_array_equal(x.data, full[k])


def test_fit_steps_lbfgs_with_a_closure_on_each_batch():
    from microgradx import nn
    from microgradx.train import fit

    rng = np.random.default_rng(3)
    X = rng.normal(size=(40, 2))
    y = X @ np.array([2.0, -1.0]) + 0.5
    net = nn.Linear(2, 1, rng=0)
    h = fit(net, "mse", optim.LBFGS(net.parameters(), line_search_fn="strong_wolfe"), (X, y[:, None]), epochs=3,
            batch_size=None, seed=0)
    assert h.loss[-1] < 1e-6 < h.loss[0]  # least squares: solved within the first full-batch steps
