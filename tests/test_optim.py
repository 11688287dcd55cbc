"""Optimizers against their update rules written out independently here, step by step, on small arrays."""

from __future__ import annotations

import contextlib
import math

import hypothesis.extra.numpy as hnp
import hypothesis.strategies as st
import numpy as np
import pytest
from hypothesis import event, given, settings

from microgradx import DomainError, Value, fast, optim

A = np.array([[3.0, 0.5, 0.0], [0.5, 1.0, -0.2], [0.0, -0.2, 0.4]])
B = np.array([1.0, -2.0, 0.3])
START = np.array([0.7, -1.2, 2.0])
STEPS = 8


class P:
    """Stand-in parameter: exactly the optimizer protocol, an array ``data`` and its ``grad``."""

    def __init__(self, data) -> None:
        self.data = np.array(data, dtype=np.float64)
        self.grad = None


def grad_of(x):
    """Gradient of the quadratic 1/2 x^T A x - B^T x."""
    return A @ x - B


def run(opt_factory, steps=STEPS, lrs=None):
    p = P(START)
    opt = opt_factory([p])
    path = []
    for k in range(steps):
        if lrs is not None:
            opt.lr = lrs[k]
        p.grad = grad_of(p.data)
        opt.step()
        path.append(p.data.copy())
    return np.array(path)


def reference(rule, steps=STEPS):
    """Iterate ``theta = rule(theta, g, t, state)`` from START; ``state`` is a dict the rule keeps."""
    theta, state, path = START.copy(), {}, []
    for t in range(1, steps + 1):
        theta = rule(theta, grad_of(theta), t, state)
        path.append(theta.copy())
    return np.array(path)


def close(a, b):
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)


# -- SGD ------------------------------------------------------------------------------------------------------

def test_plain_sgd_is_theta_minus_lr_g():
    close(run(lambda p: optim.SGD(p, lr=0.1)), reference(lambda th, g, t, s: th - 0.1 * g))


def test_sgd_pytorch_momentum_seed003():
    # seed 003: gamma <- mu gamma + grad;  Theta <- Theta - eps gamma  (buffer starts as the first gradient)
    def rule(th, g, t, s):
        s["b"] = g.copy() if t == 1 else 0.9 * s["b"] + g
        return th - 0.05 * s["b"]
    close(run(lambda p: optim.SGD(p, lr=0.05, momentum=0.9)), reference(rule))


def test_sgd_velocity_momentum_seed004():
    # seed 004: V <- beta V - alpha dL/dW;  W <- W + V  (V starts at 0)
    def rule(th, g, t, s):
        s["V"] = 0.8 * s.get("V", 0.0) - 0.05 * g
        return th + s["V"]
    close(run(lambda p: optim.SGD(p, lr=0.05, momentum=0.8, momentum_form="velocity")), reference(rule))


def test_velocity_nesterov_is_seed004_lookahead():
    # seed 004: V <- beta V - alpha grad L(w + beta V);  w <- w + V.  The optimizer holds phi = w + beta V and
    # gets the gradient at phi, so its iterates must equal w_t + beta V_t of the look-ahead recursion.
    beta, alpha = 0.7, 0.05
    w, V, expected = START.copy(), np.zeros(3), []
    w = w - beta * V  # phi_0 = w_0 + beta V_0 = START, and V_0 = 0
    for _ in range(STEPS):
        V = beta * V - alpha * grad_of(w + beta * V)
        w = w + V
        expected.append(w + beta * V)
    got = run(lambda p: optim.SGD(p, lr=alpha, momentum=beta, nesterov=True, momentum_form="velocity"))
    close(got, np.array(expected))


def test_pytorch_nesterov():
    def rule(th, g, t, s):
        s["b"] = g.copy() if t == 1 else 0.9 * s["b"] + g
        return th - 0.05 * (g + 0.9 * s["b"])
    close(run(lambda p: optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True)), reference(rule))


def test_momentum_forms_agree_at_constant_lr_and_differ_when_lr_changes():
    pytorch = lambda p: optim.SGD(p, lr=0.05, momentum=0.9)
    velocity = lambda p: optim.SGD(p, lr=0.05, momentum=0.9, momentum_form="velocity")
    close(run(pytorch), run(velocity))
    lrs = [0.05, 0.05, 0.01, 0.01, 0.01, 0.002, 0.002, 0.002]

    def rule_v(th, g, t, s):
        s["V"] = 0.9 * s.get("V", 0.0) - lrs[t - 1] * g
        return th + s["V"]

    def rule_b(th, g, t, s):
        s["b"] = g.copy() if t == 1 else 0.9 * s["b"] + g
        return th - lrs[t - 1] * s["b"]
    close(run(velocity, lrs=lrs), reference(rule_v))
    close(run(pytorch, lrs=lrs), reference(rule_b))
    assert np.max(np.abs(reference(rule_v) - reference(rule_b))) > 1e-3


def test_coupled_weight_decay_seed003_and_dampening():
    # seed 003: d_p <- d_p + weight_decay * p  before the update
    def rule(th, g, t, s):
        g = g + 0.1 * th
        s["b"] = g.copy() if t == 1 else 0.5 * s["b"] + (1 - 0.25) * g
        return th - 0.05 * s["b"]
    close(run(lambda p: optim.SGD(p, lr=0.05, momentum=0.5, dampening=0.25, weight_decay=0.1)), reference(rule))


# -- adaptive rates -----------------------------------------------------------------------------------------

def test_adagrad():
    def rule(th, g, t, s):
        s["G"] = s.get("G", 0.0) + g ** 2
        return th - 0.3 * g / (np.sqrt(s["G"]) + 1e-10)
    close(run(lambda p: optim.AdaGrad(p, lr=0.3)), reference(rule))


def test_adadelta():
    rho, eps = 0.9, 1e-6

    def rule(th, g, t, s):
        s["Eg"] = rho * s.get("Eg", 0.0) + (1 - rho) * g ** 2
        dx = np.sqrt(s.get("Edx", 0.0) + eps) / np.sqrt(s["Eg"] + eps) * g
        s["Edx"] = rho * s.get("Edx", 0.0) + (1 - rho) * dx ** 2
        return th - 0.5 * dx
    close(run(lambda p: optim.AdaDelta(p, lr=0.5, rho=rho, eps=eps)), reference(rule))


def test_rmsprop_seed004():
    def rule(th, g, t, s):
        s["v"] = 0.9 * s.get("v", 0.0) + 0.1 * g ** 2
        return th - 0.01 * g / (np.sqrt(s["v"]) + 1e-8)
    close(run(lambda p: optim.RMSprop(p, lr=0.01, alpha=0.9)), reference(rule))


def test_rmsprop_centered_with_momentum():
    def rule(th, g, t, s):
        s["v"] = 0.9 * s.get("v", 0.0) + 0.1 * g ** 2
        s["gbar"] = 0.9 * s.get("gbar", 0.0) + 0.1 * g
        s["b"] = 0.6 * s.get("b", 0.0) + g / (np.sqrt(s["v"] - s["gbar"] ** 2) + 1e-8)
        return th - 0.01 * s["b"]
    close(run(lambda p: optim.RMSprop(p, lr=0.01, alpha=0.9, momentum=0.6, centered=True)), reference(rule))


def adam_rule(lr, b1, b2, eps, amsgrad=False, l2=0.0, decoupled=0.0):
    def rule(th, g, t, s):
        g = g + l2 * th
        s["m"] = b1 * s.get("m", 0.0) + (1 - b1) * g
        s["v"] = b2 * s.get("v", 0.0) + (1 - b2) * g ** 2
        v = s["v"]
        if amsgrad:
            v = s["vmax"] = np.maximum(s.get("vmax", 0.0), v)
        m_hat = s["m"] / (1 - b1 ** t)
        v_hat = v / (1 - b2 ** t)
        return th - lr * decoupled * th - lr * m_hat / (np.sqrt(v_hat) + eps)
    return rule


def test_adam_seed001_algorithm8():
    close(run(lambda p: optim.Adam(p, lr=0.1)), reference(adam_rule(0.1, 0.9, 0.999, 1e-8)))


def test_adam_amsgrad_and_l2():
    got = run(lambda p: optim.Adam(p, lr=0.1, betas=(0.8, 0.9), amsgrad=True, weight_decay=0.05))
    close(got, reference(adam_rule(0.1, 0.8, 0.9, 1e-8, amsgrad=True, l2=0.05)))


def test_amsgrad_differs_from_adam_when_v_falls():
    # the gradient shrinks, so v falls and the running maximum matters
    adam = run(lambda p: optim.Adam(p, lr=0.1, betas=(0.8, 0.9)), steps=20)
    ams = run(lambda p: optim.Adam(p, lr=0.1, betas=(0.8, 0.9), amsgrad=True), steps=20)
    assert np.max(np.abs(adam - ams)) > 1e-4


def test_adamw_decouples_weight_decay():
    got = run(lambda p: optim.AdamW(p, lr=0.1, weight_decay=0.2))
    close(got, reference(adam_rule(0.1, 0.9, 0.999, 1e-8, decoupled=0.2)))
    coupled = run(lambda p: optim.Adam(p, lr=0.1, weight_decay=0.2))
    assert np.max(np.abs(got - coupled)) > 1e-3


def test_adamax():
    def rule(th, g, t, s):
        s["m"] = 0.9 * s.get("m", 0.0) + 0.1 * g
        s["u"] = np.maximum(0.999 * s.get("u", 0.0), np.abs(g) + 1e-8)
        return th - 0.02 / (1 - 0.9 ** t) * s["m"] / s["u"]
    close(run(lambda p: optim.AdaMax(p, lr=0.02)), reference(rule))


def test_nadam():
    b1, b2, psi, lr = 0.9, 0.999, 4e-3, 0.02

    def rule(th, g, t, s):
        mu_t = b1 * (1 - 0.5 * 0.96 ** (t * psi))
        mu_t1 = b1 * (1 - 0.5 * 0.96 ** ((t + 1) * psi))
        s["P"] = s.get("P", 1.0) * mu_t
        s["m"] = b1 * s.get("m", 0.0) + (1 - b1) * g
        s["v"] = b2 * s.get("v", 0.0) + (1 - b2) * g ** 2
        d = np.sqrt(s["v"] / (1 - b2 ** t)) + 1e-8
        return th - lr * (1 - mu_t) / (1 - s["P"]) * g / d - lr * mu_t1 / (1 - s["P"] * mu_t1) * s["m"] / d
    close(run(lambda p: optim.NAdam(p, lr=lr)), reference(rule))


def test_radam_switches_on_the_adaptive_step_after_rho_exceeds_5():
    b1, b2, lr = 0.9, 0.999, 0.01
    rho_inf = 2 / (1 - b2) - 1
    switched = []

    def rule(th, g, t, s):
        s["m"] = b1 * s.get("m", 0.0) + (1 - b1) * g
        s["v"] = b2 * s.get("v", 0.0) + (1 - b2) * g ** 2
        m_hat = s["m"] / (1 - b1 ** t)
        rho = rho_inf - 2 * t * b2 ** t / (1 - b2 ** t)
        switched.append(rho > 5)
        if rho <= 5:
            return th - lr * m_hat
        r = math.sqrt((rho - 4) * (rho - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho))
        v_hat = s["v"] / (1 - b2 ** t)
        return th - lr * m_hat * r / (np.sqrt(v_hat) + 1e-8 / math.sqrt(1 - b2 ** t))
    close(run(lambda p: optim.RAdam(p, lr=lr), steps=10), reference(rule, steps=10))
    assert switched[:5] == [False] * 5 and all(switched[5:])


# -- the protocol ---------------------------------------------------------------------------------------------

ALL = [
    lambda p: optim.SGD(p, lr=0.05), lambda p: optim.SGD(p, lr=0.05, momentum=0.9),
    lambda p: optim.SGD(p, lr=0.05, momentum=0.9, momentum_form="velocity", nesterov=True),
    lambda p: optim.AdaGrad(p, lr=0.3), lambda p: optim.AdaDelta(p), lambda p: optim.RMSprop(p, lr=0.01),
    lambda p: optim.Adam(p, lr=0.05, amsgrad=True), lambda p: optim.AdamW(p, lr=0.05),
    lambda p: optim.AdaMax(p, lr=0.05), lambda p: optim.NAdam(p, lr=0.05), lambda p: optim.RAdam(p, lr=0.05),
]


@pytest.mark.parametrize("make", ALL)
def test_updates_in_place_and_lowers_the_loss(make):
    p = P(START)
    alias = p.data
    opt = make([p])
    loss = lambda x: 0.5 * x @ A @ x - B @ x
    before = loss(p.data)
    for _ in range(30):
        p.grad = grad_of(p.data)
        opt.step()
    assert p.data is alias  # a module holding the array sees the new values
    assert loss(p.data) < before


@pytest.mark.parametrize("make", ALL)
def test_a_float32_parameter_is_updated_in_float32_along_the_float64_path(make):
    # As PyTorch: the update runs in the parameter's dtype, so a float32 model has float32 moment buffers (and
    # pays no float64 round trip per step); the path stays within float32 rounding of the float64 one.
    p64 = P(START)
    p32 = P(START)
    p32.data = np.asfortranarray(np.tile(START.astype(np.float32), (2, 1)))  # column-major, like nn.Linear's W
    alias = p32.data
    opt64, opt32 = make([p64]), make([p32])
    for _ in range(30):
        p64.grad = grad_of(p64.data)
        p32.grad = np.asfortranarray(np.tile(grad_of(p32.data[0].astype(np.float64)).astype(np.float32), (2, 1)))
        opt64.step()
        opt32.step()
    assert p32.data is alias and p32.data.dtype == np.float32 and p32.data.flags.f_contiguous
    buffers = [b for b in opt32.state[0].values() if isinstance(b, np.ndarray)]
    assert all(b.dtype == np.float32 and b.flags.f_contiguous for b in buffers)
    np.testing.assert_allclose(p32.data[0], p64.data, rtol=1e-3, atol=1e-4)
    np.testing.assert_array_equal(p32.data[0], p32.data[1])


@pytest.mark.parametrize("make", ALL)
def test_works_on_scalar_values_like_on_0d_arrays(make):
    w = Value(1.5, label="w")
    arr = P(1.5)
    opt_v, opt_a = make([w]), make([arr])
    for _ in range(5):
        w.grad = 2 * (w.data - 0.3)
        arr.grad = 2 * (arr.data - 0.3)
        opt_v.step()
        opt_a.step()
    assert type(w.data) is float
    assert w.data == pytest.approx(float(arr.data), abs=1e-15)


@pytest.mark.parametrize("make", ALL)
def test_state_dict_round_trip_continues_the_same_trajectory(make):
    p = P(START)
    opt = make([p])
    for _ in range(3):
        p.grad = grad_of(p.data)
        opt.step()
    saved, saved_data = opt.state_dict(), p.data.copy()
    for _ in range(3):
        p.grad = grad_of(p.data)
        opt.step()
    q = P(saved_data)
    other = make([q])
    other.lr = 123.0
    other.load_state_dict(saved)
    for _ in range(3):
        q.grad = grad_of(q.data)
        other.step()
    np.testing.assert_array_equal(q.data, p.data)


def test_state_dict_is_a_copy():
    p = P(START)
    opt = optim.Adam([p], lr=0.1)
    p.grad = grad_of(p.data)
    opt.step()
    saved = opt.state_dict()
    before = saved["state"][0]["exp_avg"].copy()
    p.grad = grad_of(p.data)
    opt.step()
    np.testing.assert_array_equal(saved["state"][0]["exp_avg"], before)


def test_load_state_dict_rejects_mismatches():
    p = P(START)
    opt = optim.Adam([p], lr=0.1)
    p.grad = grad_of(p.data)
    opt.step()
    with pytest.raises(ValueError, match="belongs to 'Adam'"):
        optim.SGD([P(START)], lr=0.1).load_state_dict(opt.state_dict())
    with pytest.raises(ValueError, match="has shape"):
        optim.Adam([P([1.0, 2.0])], lr=0.1).load_state_dict(opt.state_dict())
    with pytest.raises(ValueError, match="2 parameters|has 1 parameters"):
        optim.Adam([P(START), P(START)], lr=0.1).load_state_dict(opt.state_dict())


def test_none_grad_is_skipped_and_step_counts_are_per_parameter():
    a, b = P([1.0]), P([2.0])
    opt = optim.Adam([a, b], lr=0.1)
    a.grad = np.array([1.0])
    opt.step()
    assert b.data[0] == 2.0 and opt.state[1] == {} and opt.state[0]["step"] == 1


def test_zero_grad_uses_the_nodes_reset_else_none():
    w, p = Value(1.0), P([1.0])
    w.grad, p.grad = 3.0, np.array([2.0])
    opt = optim.SGD([w, p], lr=0.1)
    opt.zero_grad()
    assert w.grad == 0.0 and p.grad is None


def test_lr_is_readable_and_settable():
    p = P([1.0])
    opt = optim.SGD([p], lr=0.1)
    assert opt.lr == 0.1
    opt.lr = 0.5
    p.grad = np.array([1.0])
    opt.step()
    assert p.data[0] == 0.5
    with pytest.raises(ValueError, match="lr"):
        opt.lr = -1.0


def test_value_training_loop_drives_a_scalar_model():
    # a one-weight model y = w * x fitted by Adam on Value graphs
    w = Value(0.0, label="w")
    opt = optim.Adam([w], lr=0.1)
    for _ in range(300):
        opt.zero_grad()
        loss = (w * 2.0 - 3.0) ** 2
        loss.backward()
        opt.step()
    assert w.data == pytest.approx(1.5, abs=1e-3)


# -- clipping ------------------------------------------------------------------------------------------------

def test_clip_grad_norm_scales_all_grads_together():
    a, b = P([3.0, 0.0]), P([[4.0]])
    a.grad, b.grad = np.array([3.0, 0.0]), np.array([[4.0]])
    total = optim.clip_grad_norm([a, b], 2.5)
    assert total == 5.0
    close(a.grad, np.array([1.5, 0.0]))
    close(b.grad, np.array([[2.0]]))
    assert optim.clip_grad_norm([a, b], 10.0) == pytest.approx(2.5)
    close(a.grad, np.array([1.5, 0.0]))  # under the bound: unchanged


def test_clip_grad_value():
    a = P([0.0, 0.0, 0.0])
    a.grad = np.array([-5.0, 0.5, 9.0])
    optim.clip_grad_value([a], 1.0)
    close(a.grad, np.array([-1.0, 0.5, 1.0]))


def test_clipping_options_clip_before_the_update():
    p = P([0.0, 0.0])
    opt = optim.SGD([p], lr=1.0, clip_norm=1.0)
    p.grad = np.array([3.0, 4.0])
    opt.step()
    close(p.data, np.array([-0.6, -0.8]))
    q = P([0.0, 0.0])
    opt = optim.SGD([q], lr=1.0, clip_value=0.5)
    q.grad = np.array([3.0, -0.1])
    opt.step()
    close(q.data, np.array([-0.5, 0.1]))


# -- errors --------------------------------------------------------------------------------------------------

def test_non_finite_gradient_names_the_optimizer_and_the_parameter():
    w = Value(1.0, label="w1")
    opt = optim.Adam([w], lr=0.1)
    w.grad = float("nan")
    with pytest.raises(DomainError, match=r"Adam\.step: the gradient of parameter 0 \('w1'\) is not finite"):
        opt.step()
    assert w.data == 1.0


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("make", ALL)
def test_a_non_finite_gradient_is_refused_by_every_rule_leaving_parameter_and_state_unchanged(make, bad):
    import copy

    p = P(START)
    opt = make([p])
    for _ in range(3):  # build up moment buffers first
        p.grad = grad_of(p.data)
        opt.step()
    data, state = p.data.copy(), copy.deepcopy(opt.state)
    p.grad = grad_of(p.data)
    p.grad[1] = bad
    with pytest.raises(DomainError, match=r"step: the gradient of parameter 0 is not finite"):
        opt.step()
    np.testing.assert_array_equal(p.data, data)
    assert opt.state[0].keys() == state[0].keys()
    for key, value in state[0].items():
        np.testing.assert_array_equal(opt.state[0][key], value, err_msg=key)


def test_divergence_is_an_error_not_a_silent_inf():
    p = P([1e300])
    opt = optim.SGD([p], lr=1e10)
    p.grad = np.array([1e300])
    with pytest.raises(DomainError, match="diverged"):
        opt.step()
    assert p.data[0] == 1e300


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("make", ALL)
def test_every_rule_refuses_a_step_that_overflows_leaving_the_parameter_unchanged(make, dtype):
    # A parameter at the largest float and a huge learning rate: every rule's step would overflow it.
    top = np.finfo(dtype).max
    p = P([1.0])
    p.data = np.array([top, -1.0, 0.5], dtype=dtype)
    before = p.data.copy()
    opt = make([p])
    opt.lr = 1e36 if dtype == np.float32 else 1e300
    p.grad = np.array([-1.0, 1.0, 0.5], dtype=dtype)
    with pytest.raises(DomainError, match=r"parameter 0 would become non-finite at step 1 .*diverged"):
        opt.step()
    np.testing.assert_array_equal(p.data, before)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_sgd_refuses_a_step_of_overflowing_size_on_a_small_parameter(dtype, momentum):
    # Parameter and gradient are small, lr * g overflows: plain SGD bounds its step from the gradient's bound
    # (without a pass over the step), and that bound must send the step to the refusal, not the in-place add.
    p = P([1.0])
    p.data = np.array([1.0, -2.0], dtype=dtype)
    p.grad = np.array([-1e10, 1.0], dtype=dtype)
    opt = optim.SGD([p], lr=1e30 if dtype == np.float32 else 1e300, momentum=momentum)
    with pytest.raises(DomainError, match=r"parameter 0 would become non-finite at step 1 .*diverged"):
        opt.step()
    np.testing.assert_array_equal(p.data, np.array([1.0, -2.0], dtype=dtype))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_steps_near_the_top_of_the_float_range_are_taken_exactly(dtype):
    # Above half the largest float the cheap in-place path does not apply; the exact check takes the step.
    top = np.finfo(dtype).max
    p = P([1.0])
    p.data = np.array([top * 0.75, -top * 0.75, 1.0], dtype=dtype)
    g = np.array([1.0, -1.0, 2.0], dtype=dtype)
    expected = p.data - dtype(1e-3) * g
    p.grad = g.copy()
    optim.SGD([p], lr=1e-3).step()
    np.testing.assert_array_equal(p.data, expected)


def test_a_finite_gradient_whose_sum_of_squares_overflows_is_not_refused():
    p = P([1.0])
    p.data = np.array([1.0, 2.0], dtype=np.float32)
    p.grad = np.array([3e20, -3e20], dtype=np.float32)  # each square overflows float32, each entry is finite
    optim.SGD([p], lr=1e-21).step()
    np.testing.assert_allclose(p.data, [0.7, 2.3], rtol=1e-6)


@settings(max_examples=200)
@given(hnp.arrays(st.sampled_from([np.float32, np.float64]), hnp.array_shapes(max_dims=3, max_side=6),
                  elements={"allow_subnormal": True}), st.booleans())
def test_max_abs_bound_bounds_every_entry_or_reports_a_non_finite_one(a, transpose):
    a = a.T if transpose else a  # column-major arrays are read in memory order too
    with np.errstate(over="ignore"):
        bound = fast.max_abs_bound(a)
    if not np.isfinite(a).all():
        assert not bound < math.inf
        return
    largest = np.abs(a.astype(np.float64)).max(initial=0.0)
    if bound < math.inf:
        assert largest <= bound
    if largest < 1e15:  # no square can overflow: the bound is finite, and no looser than the 2-norm needs
        assert bound <= (math.sqrt(a.size) * largest + math.sqrt(a.size * float(np.finfo(a.dtype).tiny))) * 1.001


@pytest.mark.parametrize("bad, match", [
    (lambda: optim.SGD([], lr=0.1), "empty"),
    (lambda: optim.SGD([P([1.0])], lr=-0.1), "lr must be >= 0"),
    (lambda: optim.SGD([P([1.0])], lr=0.1, momentum=1.5), "momentum must be in"),
    (lambda: optim.SGD([P([1.0])], lr=0.1, nesterov=True), "nesterov needs momentum"),
    (lambda: optim.SGD([P([1.0])], lr=0.1, momentum_form="keras"), "momentum_form"),
    (lambda: optim.Adam([P([1.0])], betas=(0.9, 1.0)), "beta2"),
    (lambda: optim.Adam([P([1.0])], lr=float("nan")), "finite"),
    (lambda: optim.SGD([P([1.0])], lr=0.1, clip_norm=0.0), "clip_norm"),
])
def test_bad_hyperparameters_are_named(bad, match):
    with pytest.raises(ValueError, match=match):
        bad()


def test_bad_parameters_are_named():
    with pytest.raises(TypeError, match="no .data/.grad"):
        optim.SGD([object()], lr=0.1)
    p = P([1.0])
    with pytest.raises(ValueError, match="appears twice"):
        optim.SGD([p, p], lr=0.1)
    q = P([1.0])
    q.data = np.array([1, 2])
    with pytest.raises(TypeError, match="int64 data"):
        optim.SGD([q], lr=0.1)
    r = P([1.0, 2.0])
    opt = optim.SGD([r], lr=0.1)
    r.grad = np.array([1.0])
    with pytest.raises(ValueError, match=r"shape \(2,\) but a gradient of shape \(1,\)"):
        opt.step()


def test_trajectories_match_torch_optim():
    """The other engine as oracle: the benchmark's cases, fewer steps, must agree with torch.optim to 1e-12."""
    torch = pytest.importorskip("torch")
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "optim_vs_torch.py"
    spec = importlib.util.spec_from_file_location("optim_vs_torch", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        for label, make, cls, kwargs in bench.CASES:
            for start, grads in (bench.quadratic_problem(), bench.regression_problem()):
                ours = bench.run_ours(make, start, grads, 30)
                theirs = bench.run_torch(torch, cls, kwargs, start, grads, 30)
                assert np.max(np.abs(ours - theirs)) < 1e-12, label
    finally:
        torch.set_default_dtype(previous)


def test_clipping_keeps_a_float32_gradient_float32():
    from microgradx import Tensor

    w = Tensor(np.ones(3, np.float32))
    (w * w).sum().backward()
    optim.clip_grad_norm([w], 0.1)
    assert w.grad.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(w.grad), 0.1, rtol=1e-6)


# -- extreme but finite gradients ------------------------------------------------------------------------------

def _snapshot(opt, p):
    import copy

    return p.data.copy(), copy.deepcopy(opt.state)


def _assert_unchanged(opt, p, snap):
    data, state = snap
    np.testing.assert_array_equal(p.data, data)
    assert opt.state[0].keys() == state[0].keys()
    for key, value in state[0].items():
        np.testing.assert_array_equal(opt.state[0][key], value, err_msg=key)


def _assert_finite(opt, p):
    assert np.isfinite(p.data).all()
    for key, value in opt.state[0].items():
        if value is not None:
            assert np.isfinite(value).all(), key


@pytest.mark.parametrize("dtype, huge", [(np.float32, 3e20), (np.float64, 1e160)])
@pytest.mark.parametrize("make", ALL)
def test_a_huge_finite_gradient_never_puts_inf_into_the_state(make, dtype, huge):
    # g**2 overflows the dtype: either the step is taken with finite state (and moves the parameter) or it is
    # refused naming the parameter, with parameter and state exactly as before.
    p = P([1.0])
    p.data = START.astype(dtype)
    opt = make([p])
    for _ in range(2):
        p.grad = grad_of(p.data).astype(dtype)
        opt.step()
    snap = _snapshot(opt, p)
    p.grad = np.array([huge, -huge, 1.0], dtype=dtype)
    try:
        opt.step()
    except DomainError as e:
        assert "parameter 0 would become non-finite at step 3" in str(e) and "left unchanged" in str(e)
        _assert_unchanged(opt, p, snap)
    else:
        _assert_finite(opt, p)
        assert not np.array_equal(p.data, snap[0])
    assert np.isfinite(opt.state_dict()["state"][0].get("exp_avg_sq", 0.0)).all()


def test_adam_takes_a_float32_step_where_v_over_its_bias_correction_would_overflow():
    # v = 1e-3 g**2 fits float32 but v / (1 - b2) does not; sqrt(v) / sqrt(1 - b2) does. Oracle: the update
    # at step 1 computed exactly in 50-digit arithmetic (mpmath), m_hat / sqrt(v_hat) = sign(g).
    import mpmath

    mpmath.mp.dps = 50
    g, lr, eps = mpmath.mpf(3e20), mpmath.mpf(0.05), mpmath.mpf(1e-8)
    m_hat = (1 - mpmath.mpf(0.9)) * g / (1 - mpmath.mpf(0.9))
    v_hat = (1 - mpmath.mpf(0.999)) * g * g / (1 - mpmath.mpf(0.999))
    expected = 1 - lr * m_hat / (mpmath.sqrt(v_hat) + eps)
    p = P([1.0])
    p.data = np.array([1.0], dtype=np.float32)
    p.grad = np.array([3e20], dtype=np.float32)
    optim.Adam([p], lr=0.05).step()
    assert p.data.dtype == np.float32 and p.data[0] == pytest.approx(float(expected), rel=1e-6)


def test_load_state_dict_refuses_a_non_finite_buffer():
    p = P(START)
    opt = optim.Adam([p], lr=0.1)
    p.grad = grad_of(p.data)
    opt.step()
    saved = opt.state_dict()
    saved["state"][0]["exp_avg_sq"][1] = np.inf
    with pytest.raises(ValueError, match="'exp_avg_sq' of parameter 0 holds non-finite"):
        optim.Adam([P(START)], lr=0.1).load_state_dict(saved)


@settings(max_examples=150, deadline=None)
@given(st.integers(0, len(ALL) - 1), st.sampled_from([np.float32, np.float64]),
       st.lists(st.tuples(st.sampled_from([-1.0, 1.0]), st.integers(-320, 310)), min_size=1, max_size=6))
def test_extreme_gradient_magnitudes_give_finite_state_or_a_clear_error(k, dtype, exponents):
    """Every step of every rule, fed gradients from 1e-320 to 1e310 (cast to the dtype: overflowing ones
    become inf), ends with finite parameters and state, or a MicrogradxError that leaves both unchanged."""
    from microgradx import MicrogradxError

    p = P([1.0])
    p.data = START.astype(dtype)
    opt = ALL[k]([p])
    for sign, e in exponents:
        with np.errstate(over="ignore"):
            p.grad = (grad_of(p.data.astype(np.float64)) * sign * 10.0 ** min(e, 308) * (10.0 if e > 308 else 1.0)
                      ).astype(dtype)
        snap = _snapshot(opt, p)
        try:
            opt.step()
        except MicrogradxError:
            _assert_unchanged(opt, p, snap)
        else:
            _assert_finite(opt, p)


def test_clip_grad_norm_refuses_a_non_finite_gradient_naming_it_and_changes_nothing():
    a, b = Value(0.0, label="a"), Value(0.0, label="b")
    a.grad, b.grad = 3.0, float("nan")
    with pytest.raises(DomainError, match=r"clip_grad_norm: the gradient of parameter 1 \('b'\) is not finite"):
        optim.clip_grad_norm([a, b], 1.0)
    assert a.grad == 3.0


@settings(max_examples=100)
@given(st.lists(st.floats(-1e300, 1e300, allow_subnormal=True), min_size=1, max_size=8))
def test_global_grad_norm_scales_before_squaring(values):
    # Oracle: math.hypot, which computes the Euclidean norm without overflow or underflow.
    params = []
    for v in values:
        q = P([0.0])
        q.grad = np.array([v])
        params.append(q)
    expected = math.hypot(*values)
    got = optim.global_grad_norm(params)
    if math.isinf(expected):
        with pytest.raises(DomainError, match="exceeds the largest float"):
            optim.clip_grad_norm(params, 1.0)
    else:
        assert got == pytest.approx(expected, rel=1e-12, abs=0)


# -- the fast path and the reference path of a step ------------------------------------------------------------

def _run_steps(k, dtype, start, grads, lr_exp, reference):
    """Steps of ALL[k] from ``start``; (parameter, state, outcome of each step: None or the refusal's message)."""
    import contextlib
    import copy

    p = P([1.0])
    p.data = start.astype(dtype)
    opt = ALL[k]([p])
    if lr_exp is not None:
        opt.lr = 10.0 ** lr_exp
    outcomes = []
    with fast.reference_only() if reference else contextlib.nullcontext():
        for g in grads:
            with np.errstate(over="ignore"):
                p.grad = g.astype(dtype)
            try:
                opt.step()
                outcomes.append(None)
            except DomainError as e:
                outcomes.append(str(e))
    return p.data, copy.deepcopy(opt.state), outcomes


def _magnitudes(dtype_exp):
    """Arrays of 4 entries of sign * mantissa * 10**e, e up to the dtype's largest exponent (and a little past)."""
    def build(m, e):
        with np.errstate(over="ignore"):
            return m * 10.0 ** np.minimum(e, 308)
    return st.builds(build,
                     hnp.arrays(np.float64, 4, elements=st.floats(-9.9, 9.9)),
                     hnp.arrays(np.int64, 4, elements=st.integers(-dtype_exp, dtype_exp)))


@settings(max_examples=120, deadline=None)
@given(st.data(), st.integers(0, len(ALL) - 1), st.sampled_from([np.float32, np.float64]),
       st.one_of(st.none(), st.integers(-4, 40)))
def test_the_fast_step_and_the_reference_step_agree_and_refuse_the_same_steps(data, k, dtype, lr_exp):
    # Oracle: the readable step under fast.reference_only() (theta + delta into a new array, then a plain scan).
    # Magnitudes reach the top of the dtype's range, so some steps overflow and both paths must refuse them.
    top = 38 if dtype == np.float32 else 308
    start = data.draw(_magnitudes(top), label="start")
    with np.errstate(over="ignore"):
        start = np.where(np.isfinite(start.astype(dtype)), start, 1.0)
    grads = data.draw(st.lists(_magnitudes(top + 2), min_size=1, max_size=4), label="grads")
    fast_data, fast_state, fast_outcomes = _run_steps(k, dtype, start, grads, lr_exp, reference=False)
    ref_data, ref_state, ref_outcomes = _run_steps(k, dtype, start, grads, lr_exp, reference=True)
    assert fast_outcomes == ref_outcomes
    event(f"refused {sum(o is not None for o in ref_outcomes)} of {len(ref_outcomes)}")
    rtol = 4 * float(np.finfo(dtype).eps)
    np.testing.assert_allclose(fast_data, ref_data, rtol=rtol, atol=0)
    assert fast_data.dtype == ref_data.dtype == dtype
    assert fast_state[0].keys() == ref_state[0].keys()
    for key, value in ref_state[0].items():
        if value is None:
            assert fast_state[0][key] is None
        else:
            np.testing.assert_allclose(fast_state[0][key], value, rtol=rtol, atol=0, err_msg=key)


@pytest.mark.parametrize("kernel, momentum", [("sgd_step", 0.0), ("add_in_place_if_finite", 0.5)])
def test_the_fast_path_writes_the_step_in_place_and_reference_only_turns_it_off(monkeypatch, kernel, momentum):
    # Without this the agreement above could hold because both runs took the reference path. Plain SGD has its
    # own kernel (one dot product over the step); the other rules add their delta with add_in_place_if_finite.
    taken = []
    original = getattr(fast, kernel)
    monkeypatch.setattr(fast, kernel, lambda *a: taken.append(original(*a)) or taken[-1])
    p = P(START)
    opt = optim.SGD([p], lr=0.1, momentum=momentum)
    p.grad = grad_of(p.data)
    opt.step()
    assert taken == [True]
    with fast.reference_only():
        p.grad = grad_of(p.data)
        opt.step()
    assert taken == [True]
    if not momentum:
        close(p.data, reference(lambda th, g, t, s: th - 0.1 * g, steps=2)[-1])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_add_in_place_if_finite_leaves_theta_alone_when_the_bounds_cannot_prove_the_sum_finite(dtype):
    top = np.finfo(dtype).max
    theta = np.array([top * 0.75, 1.0], dtype=dtype)
    with np.errstate(over="ignore"):  # the sum of squares overflows: the bound is inf
        assert not fast.add_in_place_if_finite(theta, np.array([1.0, 1.0], dtype=dtype))
    np.testing.assert_array_equal(theta, np.array([top * 0.75, 1.0], dtype=dtype))
    assert fast.add_in_place_if_finite(theta[1:], np.array([2.0], dtype=dtype))
    assert theta[1] == 3.0


@pytest.mark.parametrize("dtype, big", [(np.float32, 1e19), (np.float64, 1e150)])
def test_sgd_step_writes_a_large_step_onto_the_largest_floats_and_leaves_theta_alone_when_unproved(dtype, big):
    # The oracle is the dtype's own rounding: max + d stays max for |d| below half an ulp of max, which every step
    # whose sum of squares is finite is. A step with a NaN is not proved: theta is left alone for the reference.
    info = np.finfo(dtype)
    d = dtype(big)
    assert info.max + d == info.max and -info.max - d == -info.max
    theta = np.array([info.max, -info.max, 1.0], dtype=dtype)
    assert fast.sgd_step(theta, np.array([-d, d, 0.0], dtype=dtype), 1.0)
    np.testing.assert_array_equal(theta, np.array([info.max, -info.max, 1.0], dtype=dtype))
    assert not fast.sgd_step(theta, np.array([np.nan, 0.0, 0.0], dtype=dtype), 1.0)
    with np.errstate(over="ignore"):
        assert not fast.sgd_step(theta, np.array([info.max, 0.0, 0.0], dtype=dtype), 1.0)  # squares overflow
    np.testing.assert_array_equal(theta, np.array([info.max, -info.max, 1.0], dtype=dtype))


def test_sgd_refuses_a_non_finite_gradient_naming_the_parameter_and_leaves_it_unchanged():
    from microgradx import Tensor

    w = Tensor(np.array([1.0, 2.0], np.float32), label="w")
    opt = optim.SGD([w], lr=0.1)
    w.grad = np.array([0.5, np.nan], np.float32)
    with pytest.raises(DomainError, match=r"SGD.step: the gradient of parameter 0 \('w'\) is not finite"):
        opt.step()
    np.testing.assert_array_equal(w.data, np.array([1.0, 2.0], np.float32))


def _plain_sgd_run(reference_path, bad=None):
    """Two groups (lr 0.1 and 0.02) of float32/float64 arrays and a Value, three steps of plain SGD; the third
    gradient of parameter ``bad`` is NaN. Returns the parameters' values, step counts and the error, if any."""
    from microgradx import Tensor
    rng = np.random.default_rng(5)
    params = [Tensor(rng.normal(size=(4, 3)).astype(np.float32), label="w"), Tensor(rng.normal(size=3)),
              Value(0.5, label="v"), Tensor(np.asfortranarray(rng.normal(size=(3, 2))), label="f")]
    opt = optim.SGD([{"params": params[:2]}, {"params": params[2:], "lr": 0.02}], lr=0.1)
    error = None
    with fast.reference_only() if reference_path else contextlib.nullcontext():
        for step in range(3):
            for k, p in enumerate(params):
                g = np.cos(np.asarray(p.data, dtype=np.float64) * (step + 1) + k)
                if k == bad and step == 2:
                    g = np.where(g > -2, np.nan, g)
                p.grad = float(g) if isinstance(p, Value) else g.astype(p.data.dtype)
            try:
                opt.step()
            except DomainError as e:
                error = str(e)
    return [np.array(p.data, dtype=np.float64) for p in params], [s.get("step") for s in opt.state], error


@pytest.mark.parametrize("bad", [None, 0, 3])
def test_plain_sgd_fast_loop_agrees_with_the_reference_step_and_refuses_the_same_parameter(bad):
    # Oracle: the reference Optimizer.step (fast.reference_only()); the update is theta - lr * g either way, so the
    # values agree bit for bit; a NaN gradient is refused naming the parameter, which stays unchanged, and the
    # parameters before it in the list are updated, as the reference does.
    fast_values, fast_steps, fast_error = _plain_sgd_run(False, bad)
    ref_values, ref_steps, ref_error = _plain_sgd_run(True, bad)
    for a, b in zip(fast_values, ref_values, strict=True):
        np.testing.assert_array_equal(a, b)
    assert fast_steps == ref_steps
    assert fast_error == ref_error
    if bad is None:
        assert fast_error is None and fast_steps == [3, 3, 3, 3]
    else:
        assert f"parameter {bad}" in fast_error and "not finite" in fast_error
        assert fast_steps[bad] == 2


def _mlp_after_backward(seed=0, lr=0.1):
    """A small MLP, its SGD optimizer (made first, as a training loop does) and one backward pass."""
    from microgradx import losses, nn
    rng = np.random.default_rng(seed)
    model = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))
    for p in model.parameters():
        p.data[...] = rng.normal(size=p.data.shape)
    opt = optim.SGD(model.parameters(), lr=lr)
    x = rng.normal(size=(4, 6)).astype(model.parameters()[0].data.dtype)
    loss = losses.cross_entropy(model(x), np.array([0, 2, 1, 2]))
    loss.backward()
    return model, opt


def test_the_backward_bound_spares_the_step_its_pass_and_gives_the_same_parameters(monkeypatch):
    # Oracle: the same step with every bound forgotten (reading .grad forgets it), which takes the dot product.
    (bounded, bounded_opt), (plain, plain_opt) = _mlp_after_backward(lr=0.3), _mlp_after_backward(lr=0.3)
    passes = []
    original = fast._dot
    monkeypatch.setattr(fast, "_dot", lambda a, b: passes.append(a.size) or original(a, b))
    for p in plain.parameters():
        p.grad  # noqa: B018 -- a read: the array may be changed in place, so its bound is forgotten
    bounded_opt.step()
    assert passes == []
    plain_opt.step()
    assert len(passes) == len(plain.parameters())
    for a, b in zip(bounded.parameters(), plain.parameters(), strict=True):
        np.testing.assert_array_equal(a.data, b.data)


@pytest.mark.parametrize("change", ["nan in place", "overflow in place", "held array", "new array"])
def test_a_gradient_changed_after_backward_is_still_refused_naming_the_parameter(change):
    # The bound the backward pass proved must not outlive the array it describes: however the gradient was
    # changed after backward, a non-finite one is refused and the parameter left unchanged.
    model, opt = _mlp_after_backward()
    w = model.parameters()[0]
    if change == "nan in place":
        w.grad[1, 2] = np.nan
    elif change == "overflow in place":
        with np.errstate(over="ignore"):
            w.grad[...] *= np.float32(3e38) / np.abs(w.grad).max() * 4
    elif change == "held array":
        g = w.grad
        model.zero_grad()
        w.grad = g
        g[0, 0] = np.inf
    else:
        w.grad = np.full_like(w.data, np.nan)
    before = w.data.copy()
    with pytest.raises(DomainError, match=r"SGD\.step: the gradient of parameter 0 .*is not finite"):
        opt.step()
    np.testing.assert_array_equal(w.data, before)


def test_plain_sgd_fast_loop_leaves_a_group_that_maximizes_or_decays_to_the_reference():
    # Oracle: the reference step (fast.reference_only()). maximize and weight_decay are per-group settings, so a
    # group may ascend or decay while the optimizer's defaults are plain.
    results = []
    for reference_path in (False, True):
        a, b = P(START), P(START)
        opt = optim.SGD([{"params": [a], "maximize": True}, {"params": [b], "weight_decay": 0.5}], lr=0.1)
        with fast.reference_only() if reference_path else contextlib.nullcontext():
            for _ in range(2):
                a.grad, b.grad = grad_of(a.data), grad_of(b.data)
                opt.step()
        results.append((a.data.copy(), b.data.copy()))
    (fa, fb), (ra, rb) = results
    np.testing.assert_array_equal(fa, ra)
    np.testing.assert_array_equal(fb, rb)
    assert np.all(fa != START)
    close(fa, reference(lambda th, g, t, s: th + 0.1 * g, steps=2)[-1])


def test_plain_sgd_with_maximize_ascends_on_array_parameters():
    # Oracle: the rule written out, theta + lr * g (maximize negates the gradient, as PyTorch).
    close(run(lambda p: optim.SGD(p, lr=0.1, maximize=True)), reference(lambda th, g, t, s: th + 0.1 * g))
