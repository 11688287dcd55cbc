"""The tensor engine's fast paths attacked where their assumptions are thinnest: the bound the backward pass hands
to the optimizer, learning rates and gradients at the edges of each float type, parameters the step cannot
write, gradients whose sums overflow, labels that change or do not fit, each against the reference path
(``fast.reference_only()``), the rule written out, or PyTorch."""

from __future__ import annotations

import contextlib
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from microgradx import DomainError, Tensor, fast, optim
from microgradx.tensor import linear

PATHS = pytest.mark.parametrize("reference", [False, True], ids=["fast", "reference"])


def _path(reference: bool):
    """The reference path (``fast.reference_only()``) or the fast one, as a context."""
    return fast.reference_only() if reference else contextlib.nullcontext()


# ---------------------------------------------------------------------------------------------------------
# The optimizer step
# ---------------------------------------------------------------------------------------------------------

@PATHS
def test_a_learning_rate_beyond_float32_is_refused_even_with_a_backward_bound(reference):
    # 1e39 rounds to inf in float32, so lr * g is inf (or NaN where g is 0) whatever the bound on |g| says;
    # the step must be refused naming the parameter, and the parameter left as it was.
    with _path(reference):
        W = Tensor(np.full((3, 200), 1e-25, np.float32), label="W")
        opt = optim.SGD([W], lr=1e39)  # made before backward, as in a training loop: the bound reaches the step
        linear(np.full((4000, 200), 1e-20, np.float32), W).sum().backward()
        assert W._grad_bound is not None or reference
        before = W.data.copy()
        with pytest.raises(DomainError, match=r"SGD\.step: parameter 0 \('W'\) would become non-finite"):
            opt.step()
        np.testing.assert_array_equal(W.data, before)


# Every update rule, plain and with state (the fast SGD loop, the shared fast add, the reference step).
RULES = {"SGD": lambda p: optim.SGD(p, lr=0.1), "SGD momentum": lambda p: optim.SGD(p, lr=0.1, momentum=0.9),
         "Adam": lambda p: optim.Adam(p, lr=0.1), "RMSprop": lambda p: optim.RMSprop(p, lr=0.1),
         "AdaGrad": lambda p: optim.AdaGrad(p, lr=0.1)}


@PATHS
@pytest.mark.parametrize("rule", list(RULES))
def test_a_read_only_parameter_is_refused_by_name_before_any_state_changes(rule, reference):
    # An array the step cannot write (a Tensor shares the array it was given, and np.load(mmap_mode="r") or a
    # broadcast view are read-only): a clear error naming the parameter, the optimizer's state untouched, so
    # that after a writable copy is put in place the step is the first one.
    data = np.array([1.0, -2.0, 3.0])
    data.flags.writeable = False
    a, w = Tensor([0.5, 0.5], label="a"), Tensor(data, label="w")
    opt = RULES[rule]([a, w])
    a.grad, w.grad = np.ones(2), np.array([0.5, -0.5, 1.0])
    with _path(reference):
        with pytest.raises(ValueError, match=r"step: parameter 1 \('w'\) has read-only data"):
            opt.step()
        assert opt.state[1] == {}
        w.data = data.copy()
        opt.step()
    twin = Tensor(data.copy())
    fresh = RULES[rule]([twin])
    twin.grad = np.array([0.5, -0.5, 1.0])
    fresh.step()
    np.testing.assert_array_equal(w.data, twin.data)
    assert opt.state[1]["step"] == 1


@PATHS
@pytest.mark.parametrize("rule", list(RULES))
def test_a_float64_gradient_beyond_a_float32_parameters_range_is_a_domain_error(rule, reference):
    # The step converts the gradient to the parameter's dtype; 1e39 does not fit float32: NumPy's bare
    # FloatingPointError from the cast must not escape, and nothing may change.
    p = Tensor(np.ones(3, np.float32), label="p")
    opt = RULES[rule]([p])
    p.grad = np.array([1e39, 0.0, 1.0])
    match = (r"step: the gradient of parameter 0 \('p'\) \(largest \|g\| 1e\+39\) does not fit the parameter's dtype "
            "float32")
    with _path(reference), pytest.raises(DomainError, match=match):
        opt.step()
    np.testing.assert_array_equal(p.data, np.ones(3, np.float32))
    assert opt.state[0] == {}


# ---------------------------------------------------------------------------------------------------------
# Cross-entropy labels
# ---------------------------------------------------------------------------------------------------------

# Signed and unsigned, little- and big-endian ('>i4': labels read from a big-endian file).
LABEL_DTYPES = [np.dtype(s) for s in dict.fromkeys(np.dtype(f"{order}{kind}{size}").str for kind in "iu"
                                                   for size in (1, 2, 4, 8) for order in "<>")]


@PATHS
@pytest.mark.parametrize("dtype", LABEL_DTYPES, ids=lambda d: d.str)
@pytest.mark.parametrize("classes", [2, 127, 128, 129, 300])
def test_labels_of_every_integer_dtype_are_checked_and_read_as_pytorch_reads_them(dtype, classes, reference, torch):
    # A negative label is refused whatever the class count (int8 -1 read as unsigned is 255, which passed as a
    # class index once there were more than 255 classes); labels in range, up to the last class, give
    # PyTorch's loss and gradient.
    from microgradx import losses
    rng = np.random.default_rng(classes)
    Z = rng.normal(size=(3, classes))
    top = min(classes - 1, int(np.iinfo(dtype).max))  # the last class, or the largest label the dtype holds
    good = np.array([0, top, top // 2]).astype(dtype)
    with _path(reference):
        z = Tensor(Z)
        loss = losses.cross_entropy(z, good)
        loss.backward()
        if dtype.kind == "i":
            with pytest.raises(ValueError, match=rf"label -1 is not a class index in \[0, {classes}\)"):
                losses.cross_entropy(Tensor(Z), np.array([0, -1, 1]).astype(dtype))
            with pytest.raises(ValueError, match=r"label -2 is not a class index"):
                losses.nll_loss(Tensor(Z), np.array([0, 1, -2]).astype(dtype))
    tz = torch.tensor(Z, requires_grad=True)
    want = torch.nn.functional.cross_entropy(tz, torch.tensor(good.astype(np.int64)))
    want.backward()
    assert loss.item() == pytest.approx(want.item(), rel=1e-12)
    np.testing.assert_allclose(z.grad, tz.grad.numpy(), rtol=1e-10, atol=1e-15)


@PATHS
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_labels_refilled_between_forward_and_backward_do_not_change_the_gradient(dtype, reference):
    # A data loader that reuses one label buffer refills it with the next batch; the loss already computed
    # belongs to the labels it was given (the reference keeps its one-hot target, so must the fast kernel).
    from microgradx import losses
    rng = np.random.default_rng(7)
    Z = rng.normal(size=(5, 4)).astype(dtype)
    labels = np.array([0, 3, 1, 2, 3])
    want = Z.astype(np.float64)
    want = np.exp(want - want.max(axis=1, keepdims=True))
    want /= want.sum(axis=1, keepdims=True)
    want[np.arange(5), labels] -= 1.0
    want /= 5  # (softmax - onehot) / N, written out
    with _path(reference):
        z = Tensor(Z)
        loss = losses.cross_entropy(z, labels)
        labels[:] = [3, 3, 3, 3, 9]  # the next batch's labels, one not even a class
        loss.backward()
    np.testing.assert_allclose(z.grad, want, rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-7)


@PATHS
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.filterwarnings("error")
def test_an_empty_batch_has_loss_zero_and_an_empty_gradient_without_a_warning(dtype, reference):
    from microgradx import losses
    with _path(reference):
        z = Tensor(np.zeros((0, 3), dtype))
        loss = losses.cross_entropy(z, np.zeros(0, np.int64))
        loss.backward()
    assert loss.item() == 0.0 and loss.data.dtype == dtype
    assert z.grad.shape == (0, 3) and z.grad.dtype == dtype


# ---------------------------------------------------------------------------------------------------------
# The backward pass: sums of gradients
# ---------------------------------------------------------------------------------------------------------

def _overflowing_sums(case: str):
    """A graph whose every vjp result is finite but where two of them add up past float32's largest float."""
    w = Tensor(np.full(2, 3e38, np.float32), requires_grad=False)
    x = Tensor(np.array([1e-10, -2e-10], np.float32), label="x")
    other = Tensor(np.array([0.5, 0.25], np.float32), label="other")
    if case == "intermediate":  # two uses of t: S(t) overflows, and tanh's bounded vjp would pass the inf on
        t = x.tanh() * other
        t.label = "t"
        return (t * w).sum() + (t * w).sum(), (x, other), r"reaching t, summed over its uses, is inf at index \(0,\)"
    if case == "leaf":
        return (x * w).sum() + (x * w).sum() + (other * 1.0).sum(), (x, other), \
            r"reaching x, summed over its uses, is inf at index \(0,\)"
    x.grad = np.full(2, 3e38, np.float32)  # a gradient held from an earlier pass, not zeroed
    return (x * w).sum() + (other * 1.0).sum(), (x, other), \
        r"reaching x, added to the \.grad it already held .*, is inf at index \(0,\)"


@pytest.mark.filterwarnings("ignore:overflow encountered")  # pytest resets the package's own filter
@pytest.mark.parametrize("case", ["intermediate", "leaf", "held"])
def test_gradients_whose_sum_overflows_are_refused_by_both_passes_naming_the_tensor(case):
    # Each vjp's own result is finite, so no row's check sees anything: the sum is where inf appears, and a
    # bounded vjp after it (tanh) or a parameter's .grad would carry it on silently. Both passes must refuse
    # at the same point, leaving the same .grad on every tensor.
    results = []
    for reference in (False, True):
        out, leaves, match = _overflowing_sums(case)
        held = [None if t.grad is None else t.grad.copy() for t in leaves]
        with _path(reference), pytest.raises(DomainError, match=r"^backward: the gradient " + match) as info:
            out.backward()
        results.append((str(info.value), [t.grad for t in leaves]))
        for t, before in zip(leaves, held, strict=True):  # nothing was written after the refusal ...
            if before is not None:
                np.testing.assert_array_equal(t.grad, before)
    (fast_error, fast_grads), (ref_error, ref_grads) = results
    assert fast_error == ref_error
    for f, r in zip(fast_grads, ref_grads, strict=True):  # ... and what was written before it is the same
        assert (f is None) == (r is None)
        if r is not None:
            np.testing.assert_array_equal(f, r)


# ---------------------------------------------------------------------------------------------------------
# einsum against torch.einsum
# ---------------------------------------------------------------------------------------------------------

def _random_einsum(seed: int, sizes: dict[str, int]) -> tuple[str, list[tuple[int, ...]]]:
    """A random einsum: 1-3 operands of 0-3 letters (repeats make diagonals; an axis may be of size 1, broadcast
    against its letter's size elsewhere), some with "..." whose axes are of size 0, 1 (broadcast) or more, lined
    up from the right; an implicit output or an explicit one."""
    rnd = random.Random(seed)
    ell = [rnd.choice([0, 2, 3]) for _ in range(rnd.randint(0, 3))]
    subs, shapes = [], []
    for _ in range(rnd.randint(1, 3)):
        letters = [rnd.choice("abcd") for _ in range(rnd.randint(0, 3))]
        broadcast = {c for c in letters if rnd.random() < 0.2}  # size 1 here, broadcast against the others
        shape = [1 if c in broadcast else sizes[c] for c in letters]
        sub = "".join(letters)
        if ell and rnd.random() < 0.6:
            width = rnd.randint(0, len(ell))
            under = [1 if rnd.random() < 0.3 else n for n in ell[len(ell) - width:]]
            at = rnd.randint(0, len(letters))
            sub = sub[:at] + "..." + sub[at:]
            shape = shape[:at] + under + shape[at:]
        subs.append(sub)
        shapes.append(tuple(shape))
    spec = ",".join(subs)
    if rnd.random() < 0.7:
        used = sorted(set(spec) - {".", ","})
        out = "".join(rnd.sample(used, rnd.randint(0, len(used))))
        if "..." in spec and rnd.random() < 0.7:
            at = rnd.randint(0, len(out))
            out = out[:at] + "..." + out[at:]
        spec += "->" + out
    return spec, shapes


def _einsum_agrees_with_torch(torch, spec: str, shapes: list[tuple[int, ...]]) -> None:
    from microgradx.tensor import einsum
    rng = np.random.default_rng(0)
    arrays = [rng.normal(size=s) for s in shapes]
    theirs = [torch.tensor(a, requires_grad=True) for a in arrays]
    want = torch.einsum(spec, *theirs)
    g = rng.normal(size=tuple(want.shape))
    want.backward(torch.tensor(g))
    ours = [Tensor(a) for a in arrays]
    got = einsum(spec, *ours)
    assert got.data.shape == tuple(want.shape), spec
    np.testing.assert_allclose(got.data, want.detach().numpy(), rtol=1e-10, atol=1e-12, err_msg=spec)
    got.backward(g)
    for t, theirs_t in zip(ours, theirs, strict=True):
        their_grad = np.zeros(t.shape) if theirs_t.grad is None else theirs_t.grad.numpy()
        assert t.grad.shape == t.shape, spec
        np.testing.assert_allclose(t.grad, their_grad, rtol=1e-10, atol=1e-12, err_msg=spec)


@pytest.mark.parametrize("spec, shapes", [
    ("...,...", [(1,), (0,)]),                      # a size-1 axis under "..." broadcasts against size 0
    ("b...,db...", [(3, 1, 0), (1, 3, 1, 1)]),
    ("...dbb,ab...->...d", [(1, 1, 3, 3), (2, 3, 0)]),
])
def test_einsum_broadcasts_size_one_against_size_zero_under_the_ellipsis(spec, shapes, torch):
    _einsum_agrees_with_torch(torch, spec, shapes)


@pytest.mark.parametrize("spec, shapes", [
    ("dbc,d->bc", [(2, 3, 0), (1,)]),               # a letter's size-1 axis broadcasts, as in PyTorch
    ("ab,b", [(2, 1), (3,)]),
    ("ab,b->ab", [(2, 1), (3,)]),
    ("dd,d->d", [(1, 1), (2,)]),                    # a broadcast diagonal
    ("c...,,bc->...", [(1, 0), (), (3, 0)]),
])
def test_einsum_broadcasts_a_letters_size_one_axis_as_pytorch(spec, shapes, torch):
    _einsum_agrees_with_torch(torch, spec, shapes)


def test_einsum_refuses_a_diagonal_of_different_sizes_and_letters_that_do_not_broadcast():
    from microgradx.tensor import ShapeError, einsum
    with pytest.raises(ShapeError, match=r"letter 'd' is repeated in operand 0 \(shape \(1, 2\)\) with different"):
        einsum("dd,d->d", Tensor(np.ones((1, 2))), Tensor(np.ones(2)))
    with pytest.raises(ShapeError, match=r"letter 'b' is size 3 in one place and 2 in operand 1"):
        einsum("ab,b->a", Tensor(np.ones((2, 3))), Tensor(np.ones(2)))


@settings(max_examples=80, deadline=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from([{"a": 2, "b": 3, "c": 4, "d": 2}, {"a": 2, "b": 3, "c": 0, "d": 1}]))
def test_einsum_agrees_with_torch_on_random_subscripts_with_ellipses_diagonals_and_empty_axes(seed, sizes):
    torch = pytest.importorskip("torch", reason="PyTorch (the test extra) is the oracle of einsum")
    _einsum_agrees_with_torch(torch, *_random_einsum(seed, sizes))


@pytest.mark.parametrize("value", [[1.0, 2.0], 3.0, (1.0, 2.0)])
def test_a_gradient_that_is_not_an_array_is_refused_by_name_and_the_old_one_kept(value):
    # As PyTorch refuses it; the setter read value.base and failed with a bare AttributeError.
    w = Tensor([1.0, 2.0], label="w")
    w.grad = np.array([0.5, 0.5])
    with pytest.raises(TypeError, match=r"grad of w: expected a NumPy array \(or None\), got"):
        w.grad = value
    np.testing.assert_array_equal(w.grad, [0.5, 0.5])


def test_a_numpy_scalar_gradient_becomes_an_owned_zero_d_array():
    # einsum summing to a number hands a NumPy scalar to a 0-d operand; the fast SGD step needs an array.
    from microgradx.tensor import einsum
    s = Tensor(np.array(2.0, np.float32), label="s")
    opt = optim.SGD([s], lr=0.5)
    einsum(",i->", s, Tensor(np.array([1.0, 3.0], np.float32), requires_grad=False)).backward()
    assert type(s.grad) is np.ndarray and s.grad.shape == () and s.grad.dtype == np.float32 and s.grad == 4.0
    opt.step()
    assert s.data == np.float32(0.0)


@PATHS
def test_a_float_parameter_with_a_zero_d_array_gradient_takes_the_reference_step(reference):
    # A Value's data is a float; a 0-d array set as its gradient reached the fast SGD kernel, which read
    # theta.dtype off the float (a bare AttributeError). Oracle: the rule written out.
    from microgradx import Value
    v = Value(1.0, label="v")
    opt = optim.SGD([v], lr=0.1)
    v.grad = np.array(2.0)
    with _path(reference):
        opt.step()
    assert type(v.data) is float and v.data == 1.0 - 0.1 * 2.0


@PATHS
@pytest.mark.parametrize("options", [{}, {"reduction": "sum"}, {"weight": [1.0, 2.0, 0.5]}, {"ignore_index": 2}])
@pytest.mark.filterwarnings("ignore:overflow encountered")  # the package's own filter (set at import)
def test_logits_further_apart_than_the_float_range_give_pytorchs_loss(options, reference, torch):
    # 3e38 - (-3e38) overflows float32, so the smallest class's log-probability is -inf; where the target gives
    # that class no weight it adds nothing (0 log 0 = 0), so the loss is finite, as PyTorch's, not NaN.
    from microgradx import losses
    Z = np.array([[3e38, -3e38, 0.0], [0.0, 1.0, -1.0]], np.float32)
    y = np.array([0, 1])
    with _path(reference):
        z = Tensor(Z)
        loss = losses.cross_entropy(z, y, **options)
        loss.backward()
    tz = torch.tensor(Z, requires_grad=True)
    topts = {**options, **({"weight": torch.tensor(options["weight"])} if "weight" in options else {})}
    want = torch.nn.functional.cross_entropy(tz, torch.tensor(y), **topts)
    want.backward()
    assert loss.item() == pytest.approx(want.item(), rel=1e-6)
    np.testing.assert_allclose(z.grad, tz.grad.numpy(), rtol=1e-6, atol=1e-7)
    with _path(reference), pytest.raises(DomainError, match=r"cross_entropy\(.*\): gives inf"):
        losses.cross_entropy(Tensor(Z), np.array([1, 1]), **options)  # -log p = 6e38 does not fit float32


@PATHS
@pytest.mark.parametrize("root", ["leaf", "retained", "seed tensor", "retained through an add"])
def test_the_seed_array_is_no_tensors_gradient(root, reference):
    # PyTorch copies: changing the seed array after backward (a buffer refilled for the next call) must not
    # change a gradient, nor may a Tensor given as the seed share its data with one.
    w = Tensor([1.0, 2.0], label="w")
    m = (w * 3.0).retain_grad()
    y = w if root == "leaf" else m + 0.0 if root == "retained through an add" else m
    kept = w if root == "leaf" else m  # the tensor whose .grad the seed reaches unchanged
    seed_tensor = Tensor([1.0, -1.0], label="seed")
    seed = seed_tensor if root == "seed tensor" else np.array([1.0, -1.0])
    with _path(reference):
        y.backward(seed)
    (seed_tensor.data if root == "seed tensor" else seed)[0] = 99.0
    np.testing.assert_array_equal(kept.grad, [1.0, -1.0])
    if root != "leaf":
        np.testing.assert_array_equal(w.grad, [3.0, -3.0])


def test_load_state_dict_refuses_float64_values_beyond_a_float32_models_range_and_changes_nothing():
    # A float64 state (saved from a float64 model, say) copied into float32 parameters: 1e39 is finite in
    # float64 and inf in float32, which the fast SGD step would then carry on (it trusts parameters finite).
    from microgradx import nn
    model = nn.Sequential(nn.Linear(2, 3, dtype=np.float32), nn.Linear(3, 2, dtype=np.float32))
    before = {k: v.copy() for k, v in model.state_dict().items()}
    state = {k: v.astype(np.float64) for k, v in before.items()}
    state["0.weight"] = state["0.weight"] * 2.0
    state["1.weight"][1, 2] = 1e39
    with pytest.raises(ValueError, match=r"load_state_dict: 1\.weight holds values beyond the largest float32"):
        model.load_state_dict(state)
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, before[k])
        assert v.dtype == np.float32
    state["1.weight"][1, 2] = 3e38  # the largest float32 is about 3.4e38: this one fits
    model.load_state_dict(state)
    assert model.state_dict()["1.weight"][1, 2] == np.float32(3e38)


@PATHS
@pytest.mark.parametrize("rule", list(RULES))
def test_parameter_data_replaced_by_integers_is_refused_by_name_not_truncated(rule, reference):
    # The constructor checks the dtype; data replaced afterwards was stepped as int64: the gradient truncated
    # (0.5 -> 0) and the update cut back to integers, silently.
    w = Tensor([1.0, 2.0], label="w")
    opt = RULES[rule]([w])
    w.data = np.array([1, 2])
    w.grad = np.array([0.5, 3.0])
    with _path(reference), pytest.raises(TypeError, match=r"step: parameter 0 \('w'\) has int64 data; a parameter "
                                                          r"needs float data"):
        opt.step()
    np.testing.assert_array_equal(w.data, [1, 2])
    assert opt.state[0] == {}


# ---------------------------------------------------------------------------------------------------------
# Fast twins against their references on what the existing agreement tests do not draw
# ---------------------------------------------------------------------------------------------------------

def _weight_in_layout(W: np.ndarray, layout: str) -> np.ndarray:
    """The same numbers in another memory layout: C, Fortran, every other column of a wider array, reversed."""
    if layout == "F":
        return np.asfortranarray(W)
    if layout == "strided":
        wide = np.zeros((W.shape[0], 2 * W.shape[1]), W.dtype)
        wide[:, ::2] = W
        return wide[:, ::2]
    if layout == "reversed":
        return np.ascontiguousarray(W[::-1, ::-1])[::-1, ::-1]
    return np.ascontiguousarray(W)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from([(4,), (3, 4), (2, 3, 4), (0, 4)]),
       st.sampled_from([None, "relu", "tanh", "softplus", "sin", "abs", "hard_tanh", "softsign", "arctan"]),
       st.booleans(), st.sampled_from(["C", "F", "strided", "reversed"]), st.sampled_from([np.float32, np.float64]),
       st.sampled_from([1.0, 1e-20, 1e15, 1e150]))
@pytest.mark.filterwarnings("ignore:overflow encountered")
def test_fast_linear_agrees_with_the_reference_on_input_ranks_layouts_activations_and_magnitudes(
        seed, x_shape, act, bias, layout, dtype, scale):
    # Oracle: the reference kernel (fast.reference_only()) on identical data: the same output and gradients to
    # rounding, of the same dtype and shape, or the same error where a magnitude overflows.
    from microgradx.tensor import FUSABLE_ACTIVATIONS
    assert act is None or act in {op.name for op in FUSABLE_ACTIVATIONS}
    rng = np.random.default_rng(seed)
    scale = min(scale, 1e30) if dtype == np.float32 else scale
    X = (rng.normal(size=x_shape) * scale).astype(dtype)
    W0 = rng.normal(size=(3, 4)).astype(dtype)
    b0 = rng.normal(size=3).astype(dtype)
    g = rng.normal(size=x_shape[:-1] + (3,)).astype(dtype)
    results = []
    for reference in (False, True):
        W = Tensor(_weight_in_layout(W0, layout), label="W")
        b = Tensor(b0.copy(), label="b") if bias else None
        x = Tensor(X.copy(), label="x")
        with _path(reference):
            try:
                y = linear(x, W, b, activation=act)
                y.backward(g)
            except DomainError as e:
                results.append(str(e))
                continue
        results.append([y.data, x.grad, W.grad] + ([b.grad] if bias else []))
    fast_result, ref_result = results
    assert type(fast_result) is type(ref_result)
    if isinstance(ref_result, str):
        assert fast_result == ref_result
        return
    tol = {"rtol": 1e-5, "atol": 1e-30} if dtype == np.float32 else {"rtol": 1e-12, "atol": 1e-300}
    for f, r in zip(fast_result, ref_result, strict=True):
        assert f.shape == r.shape and f.dtype == r.dtype == dtype
        np.testing.assert_allclose(f, r, rtol=tol["rtol"], atol=tol["atol"] + tol["rtol"] * np.abs(r).max(initial=0))


class _Param:
    """A parameter as the optimizer protocol has it: an array ``data`` (any float dtype) and its ``grad``."""

    def __init__(self, data: np.ndarray, grad: np.ndarray) -> None:
        self.data, self.grad, self.label = data, grad, "p"


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from([np.float16, np.float32, np.float64]),
       st.sampled_from([(), (1,), (5,), (2, 3)]), st.sampled_from([0.0, 1e-3, 1.0, 1e2, 3e4, 1e20, 1e38, 1e300]),
       st.sampled_from([0.0, 1e-3, 1.0, 1e2, 3e4, 1e20, 1e38, 1e300]), st.booleans(),
       st.sampled_from([0.0, 1e-3, 0.1, 10.0, 1e5, 1e30, 1e39, 1e300]), st.sampled_from(list(RULES)))
@pytest.mark.filterwarnings("ignore:overflow encountered")
def test_fast_and_reference_steps_agree_on_every_float_dtype_rank_and_magnitude(seed, dtype, shape, theta_scale,
                                                                                 g_scale, g_float64, lr, rule):
    # Oracle: the reference step (fast.reference_only()) on identical parameters, twice in a row: the same new
    # parameters bit for bit, or the same refusal with the parameter left as it was; never a non-finite value.
    rng = np.random.default_rng(seed)
    top = float(np.finfo(dtype).max)
    theta0 = np.asarray(np.clip(rng.normal(size=shape) * theta_scale, -top, top).astype(dtype))
    g0 = np.clip(rng.normal(size=shape) * g_scale, -top, top)
    g0 = np.asarray(g0 if g_float64 else g0.astype(dtype))
    outcomes = []
    for reference in (False, True):
        p = _Param(theta0.copy(), g0.copy())
        opt = {"SGD": optim.SGD, "SGD momentum": optim.SGD, "Adam": optim.Adam, "RMSprop": optim.RMSprop,
               "AdaGrad": optim.AdaGrad}[rule]([p], lr=lr, **({"momentum": 0.9} if rule == "SGD momentum" else {}))
        with _path(reference):
            try:
                opt.step()
                opt.step()
                outcomes.append(("stepped", p.data))
            except DomainError as e:
                outcomes.append((str(e), p.data))
    (fast_what, fast_data), (ref_what, ref_data) = outcomes
    assert fast_what == ref_what
    assert fast_data.dtype == ref_data.dtype == dtype and fast_data.shape == shape
    np.testing.assert_array_equal(fast_data, ref_data)
    assert np.all(np.isfinite(fast_data))


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from([np.float32, np.float64]), st.sampled_from([1.0, 1e-20, 1e15]),
       st.lists(st.sampled_from(["retain", "shared weight", "raw ops", "no_grad branch", "second use", "keep grads"]),
                max_size=4, unique=True))
@pytest.mark.filterwarnings("ignore:overflow encountered")
def test_every_gradient_bound_left_on_a_tensor_covers_its_gradient_and_the_steps_match_the_reference(
        seed, dtype, scale, twists):
    # The optimizer trusts Tensor._grad_bound instead of a pass over the gradient. Oracle: the gradient's own
    # largest magnitude (in float64), after two training steps of a small network whose graph reuses a weight,
    # keeps an intermediate gradient, mixes fused layers with raw ops, and may accumulate over two backward
    # passes; and the parameters the reference path (no bounds at all) ends with.
    from microgradx import losses
    from microgradx.tensor import no_grad
    finals = []
    for reference in (False, True):
        rng = np.random.default_rng(seed)
        W1 = Tensor((rng.normal(size=(100, 300)) * scale).astype(dtype), label="W1")
        W2 = Tensor(rng.normal(size=(100, 100)).astype(dtype), label="W2")
        b = Tensor(rng.normal(size=100).astype(dtype), label="b")
        params = [W1, W2, b]
        opt = optim.SGD(params, lr=0.01)
        with _path(reference):
            for _step in range(2):
                for _ in range(2 if "keep grads" in twists else 1):  # gradients accumulated over two passes
                    X = rng.normal(size=(16, 300)).astype(dtype)  # W1's gradient: proved from norms
                    h = linear(X, W1, b, activation="relu")
                    if "retain" in twists:
                        h.retain_grad()
                    out = h @ W2.T + b if "raw ops" in twists else linear(h, W2, b)
                    if "shared weight" in twists:
                        out = out + linear(h, W2)
                    if "no_grad branch" in twists:
                        with no_grad():
                            frozen = out * 0.5
                        out = out + frozen
                    if "second use" in twists:
                        out = out + (out * 0.25).tanh()
                    loss = losses.cross_entropy(out, rng.integers(0, 100, size=16))
                    loss.backward()
                for p in params:
                    if p._grad_bound is not None:
                        assert p._grad_bound >= float(np.max(np.abs(p._grad.astype(np.float64)))), p.label
                opt.step()
                opt.zero_grad()
        finals.append([p.data for p in params])
    for f, r in zip(*finals, strict=True):
        rtol = 1e-4 if dtype == np.float32 else 1e-10
        np.testing.assert_allclose(f, r, rtol=rtol, atol=rtol * np.abs(r).max())


@PATHS
def test_a_gradient_of_another_shape_is_refused_instead_of_broadcast_by_the_next_backward(reference):
    # As PyTorch refuses it. Accepted, a (3, 1) gradient on a (3,) tensor became (3, 3) when backward added the
    # next one to it, and the optimizer then refused a gradient the user never set.
    from microgradx.tensor import ShapeError
    w = Tensor([1.0, 2.0, 3.0], label="w")
    with pytest.raises(ShapeError, match=r"grad of w: shape \(3, 1\) differs from the tensor's shape \(3,\)"):
        w.grad = np.ones((3, 1))
    assert w.grad is None
    with _path(reference):
        (w * w).sum().backward()
    np.testing.assert_array_equal(w.grad, [2.0, 4.0, 6.0])


@pytest.mark.parametrize("reference", [False, True], ids=["fast", "reference"])
@pytest.mark.parametrize(("weight", "bias"), [(np.float32, np.float64), (np.float64, np.float32)])
def test_linear_refuses_a_bias_of_another_dtype_on_both_paths(weight, bias, reference):
    # The fast kernel added a float64 bias into its float32 product (cast down), the reference upcast the output
    # to float64: a bias of another dtype is refused like an input of another dtype, on nn.Linear too.
    from microgradx import nn
    x, w, b = Tensor(np.ones((2, 3), weight)), Tensor(np.ones((4, 3), weight)), Tensor(np.ones(4, bias))
    message = rf"linear: bias dtype {np.dtype(bias)} differs from weight dtype {np.dtype(weight)}"
    layer = nn.Linear(3, 4, rng=0)
    layer.weight.data, layer.bias.data = layer.weight.data.astype(weight), layer.bias.data.astype(bias)
    with fast.reference_only() if reference else contextlib.nullcontext():
        for act in (None, "relu"):
            with pytest.raises(TypeError, match=message):
                linear(x, w, b, activation=act)
        with pytest.raises(TypeError, match=message):
            layer(np.ones((2, 3), weight))
