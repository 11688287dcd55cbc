"""The PyTorch-style tensor ops (stack, split, shape changes, var/std/norm, cumsum, prod, einsum, pad, flip,
tile/repeat, masked_fill, index_put/scatter_add, integer index tensors, the new elementwise rows and GELU's two
forms): each against float64 central differences, forward mode against reverse mode, the per-node gradient
check, drawings and the stepper, and PyTorch (when installed) for values and gradients; then errors and the
autograd switches (no_grad, detach, requires_grad_, item)."""

from __future__ import annotations

import math

import numpy as np
import pytest

import microgradx as mgx
from microgradx import MicrogradxError, Tensor, graph
from microgradx.tensor import TENSOR_OPS, ShapeError, einsum, no_grad, pad, stack

H = 1e-6


def _torch():
    try:
        import torch
    except ImportError:
        pytest.skip("PyTorch is not installed (it is the oracle here: pip install 'microgradx[torch]')")
    return torch


# name: (microgradx build, PyTorch build (None: PyTorch has no such op), input shapes, input sampler)
# The samplers keep inputs away from kinks and ties, where central differences say nothing.
def _uniform(rng, shape):
    return rng.uniform(-2.0, 2.0, size=shape)


def _positive(rng, shape):
    return rng.uniform(0.3, 2.0, size=shape)


def _with_zeros(rng, shape):   # prod at zeros: one zero in row 0, two in row 1
    x = rng.uniform(-2.0, 2.0, size=shape)
    x[0, 1] = 0.0
    x[1, 0] = x[1, 2] = 0.0
    return x


def _distinct(rng, shape):     # no ties, so argmax-like picks are stable
    return rng.permutation(np.arange(math.prod(shape), dtype=float)).reshape(shape) / 3.0 - 1.0


IDX = np.array([[2, 0, 1, 2], [0, 0, 2, 1]])
MASK = np.array([[True, False, False, True], [False, False, True, False], [True, True, False, False]])

CASES = {
    "stack axis 0": (lambda a, b: stack([a, b]), lambda t, a, b: t.stack([a, b]), [(3, 4), (3, 4)]),
    "stack axis -1": (lambda a, b: stack([a, b], axis=-1), lambda t, a, b: t.stack([a, b], dim=-1),
                      [(3, 4), (3, 4)]),
    "split sizes": (lambda x: x.split([1, 3], axis=1)[1] * x.split(2)[1].sum(),
                    lambda t, x: x.split([1, 3], dim=1)[1] * x.split(2)[1].sum(), [(3, 4)]),
    "chunk": (lambda x: x.chunk(3, axis=1)[0] * 2.0 + x.chunk(3, axis=1)[1],
              lambda t, x: x.chunk(3, dim=1)[0] * 2.0 + x.chunk(3, dim=1)[1], [(3, 4)]),
    "squeeze unsqueeze": (lambda x: x.unsqueeze(1).unsqueeze(-1).squeeze(axis=3) * x.unsqueeze(1),
                          lambda t, x: x.unsqueeze(1).unsqueeze(-1).squeeze(3) * x.unsqueeze(1), [(3, 4)]),
    "squeeze all": (lambda x: x.squeeze(), lambda t, x: x.squeeze(), [(3, 1, 4, 1)]),
    "view flatten": (lambda x: x.view(4, -1).flatten() * x.flatten(1).flatten(),
                     lambda t, x: x.view(4, -1).flatten() * x.flatten(1).flatten(), [(2, 3, 2)]),
    "expand": (lambda x: x.expand(2, 3, -1), lambda t, x: x.expand(2, 3, -1), [(3, 1)]),
    "expand new axes": (lambda x: x.expand(5, 2, 4) * 1.5, lambda t, x: x.expand(5, 2, 4) * 1.5, [(4,)]),
    "var": (lambda x: x.var(), lambda t, x: x.var(), [(3, 4)]),
    "var axis ddof 0": (lambda x: x.var(axis=1, ddof=0), lambda t, x: x.var(dim=1, correction=0), [(3, 4)]),
    "var axes keepdims": (lambda x: x.var(axis=(0, 2), keepdims=True, correction=2),
                          lambda t, x: x.var(dim=(0, 2), keepdim=True, correction=2), [(2, 3, 4)]),
    "std": (lambda x: x.std(axis=0), lambda t, x: x.std(dim=0), [(3, 4)]),
    "std all ddof 0": (lambda x: x.std(ddof=0), lambda t, x: x.std(correction=0), [(3, 4)]),
    "norm": (lambda x: x.norm(), lambda t, x: t.linalg.vector_norm(x), [(3, 4)]),
    "norm axis keepdims": (lambda x: x.norm(axis=1, keepdims=True),
                           lambda t, x: t.linalg.vector_norm(x, dim=1, keepdim=True), [(3, 4)]),
    "norm 1": (lambda x: x.norm(1, axis=0), lambda t, x: t.linalg.vector_norm(x, ord=1, dim=0), [(3, 4)],
               _distinct),
    "norm inf": (lambda x: x.norm(math.inf, axis=1), lambda t, x: t.linalg.vector_norm(x, ord=math.inf, dim=1),
                 [(3, 4)], _distinct),
    "cumsum axis": (lambda x: x.cumsum(axis=1), lambda t, x: x.cumsum(dim=1), [(3, 4)]),
    "cumsum axis 0": (lambda x: x.cumsum(axis=0), lambda t, x: x.cumsum(dim=0), [(3, 4)]),
    "cumsum flat": (lambda x: x.cumsum(), lambda t, x: x.flatten().cumsum(dim=0), [(3, 4)]),
    "prod": (lambda x: x.prod(), lambda t, x: x.prod(), [(2, 3)]),
    "prod axis": (lambda x: x.prod(axis=1), lambda t, x: x.prod(dim=1), [(3, 4)]),
    "prod axes keepdims": (lambda x: x.prod(axis=(0, 2), keepdims=True),
                           lambda t, x: x.prod(dim=2, keepdim=True).prod(dim=0, keepdim=True), [(2, 3, 2)]),
    "prod with zeros": (lambda x: x.prod(axis=1), lambda t, x: x.prod(dim=1), [(2, 4)], _with_zeros),
    "einsum matmul": (lambda a, b: einsum("ij,jk->ik", a, b), lambda t, a, b: t.einsum("ij,jk->ik", a, b),
                      [(3, 4), (4, 2)]),
    "einsum implicit": (lambda a, b: einsum("ij,kj", a, b), lambda t, a, b: t.einsum("ij,kj", a, b),
                        [(3, 4), (2, 4)]),
    "einsum trace": (lambda a: einsum("ii->", a), lambda t, a: t.einsum("ii->", a), [(3, 3)]),
    "einsum diagonal": (lambda a: einsum("ii->i", a), lambda t, a: t.einsum("ii->i", a), [(4, 4)]),
    "einsum outer": (lambda a, b: einsum("i,j->ij", a, b), lambda t, a, b: t.einsum("i,j->ij", a, b),
                     [(3,), (4,)]),
    "einsum batched sum": (lambda a, b: einsum("bij,bjk->bi", a, b), lambda t, a, b: t.einsum("bij,bjk->bi", a, b),
                           [(2, 3, 4), (2, 4, 5)]),
    "einsum three operands": (lambda a, b, c: einsum("i,ij,j->", a, b, c),
                              lambda t, a, b, c: t.einsum("i,ij,j->", a, b, c), [(3,), (3, 4), (4,)]),
    "einsum transpose": (lambda a: einsum("ijk->kji", a), lambda t, a: t.einsum("ijk->kji", a), [(2, 3, 4)]),
    "einsum batched ellipsis": (lambda a, b: einsum("...ij,...jk->...ik", a, b),
                                lambda t, a, b: t.einsum("...ij,...jk->...ik", a, b), [(2, 3, 4), (2, 4, 5)]),
    "einsum ellipsis broadcast": (lambda a, b: einsum("...ij,...jk", a, b),
                                  lambda t, a, b: t.einsum("...ij,...jk", a, b), [(1, 3, 4), (5, 4, 2)]),
    "einsum ellipsis summed": (lambda a: einsum("...ij->j", a), lambda t, a: t.einsum("...ij->j", a), [(2, 3, 4)]),
    "einsum ellipsis diagonal": (lambda a: einsum("...ii->...i", a), lambda t, a: t.einsum("...ii->...i", a),
                                 [(2, 3, 3)]),
    "pad": (lambda x: pad(x, ((1, 0), (2, 3)), value=0.5), lambda t, x: t.nn.functional.pad(x, (2, 3, 1, 0),
                                                                                         value=0.5), [(3, 4)]),
    "pad int": (lambda x: pad(x, 1), lambda t, x: t.nn.functional.pad(x, (1, 1, 1, 1)), [(3, 4)]),
    "flip": (lambda x: x.flip(axis=1), lambda t, x: x.flip(1), [(3, 4)]),
    "flip all": (lambda x: x.flip() * x, lambda t, x: x.flip((0, 1)) * x, [(3, 4)]),
    "tile": (lambda x: x.tile(2, 3), lambda t, x: x.repeat(2, 3), [(3, 4)]),
    "tile more axes": (lambda x: x.tile((2, 1, 2)), lambda t, x: x.repeat(2, 1, 2), [(3, 4)]),
    "tile fewer reps": (lambda x: x.tile(2), lambda t, x: t.tile(x, (2,)), [(3, 4)]),
    "repeat": (lambda x: x.repeat(2, axis=0), lambda t, x: x.repeat_interleave(2, dim=0), [(3, 4)]),
    "repeat counts flat": (lambda x: x.repeat([1, 0, 3, 2, 1, 1]),
                           lambda t, x: x.flatten().repeat_interleave(t.tensor([1, 0, 3, 2, 1, 1])), [(2, 3)]),
    "masked_fill": (lambda x: x.masked_fill(MASK, -1.5), lambda t, x: x.masked_fill(t.from_numpy(MASK), -1.5),
                    [(3, 4)]),
    "masked_fill tensor value": (lambda x, v: x.masked_fill(MASK[0], v), lambda t, x, v: x.masked_fill(
        t.from_numpy(MASK[0]), v), [(3, 4), ()]),
    "index_put": (lambda x, v: x.index_put((np.array([0, 2]), np.array([1, 3])), v),
                  lambda t, x, v: x.index_put((t.tensor([0, 2]), t.tensor([1, 3])), v), [(3, 4), (2,)]),
    "index_put broadcast rows": (lambda x, v: x.index_put(np.array([2, 0]), v),
                                 lambda t, x, v: x.index_put((t.tensor([2, 0]),), v.expand(2, 4)), [(3, 4), (4,)]),
    "index_put accumulate": (lambda x, v: x.index_put(np.array([1, 1, 0]), v, accumulate=True),
                             lambda t, x, v: x.index_put((t.tensor([1, 1, 0]),), v, accumulate=True),
                             [(3, 4), (3, 4)]),
    "scatter_add axis 0": (lambda x, s: x.scatter_add(0, IDX, s),
                           lambda t, x, s: x.scatter_add(0, t.from_numpy(IDX), s), [(3, 4), (2, 4)]),
    "scatter_add axis 1": (lambda x, s: x.scatter_add(1, IDX.T[:3, :2] % 4, s),
                           lambda t, x, s: x.scatter_add(1, t.from_numpy(IDX.T[:3, :2] % 4), s), [(3, 4), (3, 2)]),
    "index tensor repeats": (lambda x: x[Tensor([2.0, 0.0, 2.0, 2.0], requires_grad=False)],
                             lambda t, x: x[t.tensor([2, 0, 2, 2])], [(3, 4)]),
    "index tensor pairs": (lambda x: x[Tensor([0.0, 2.0, 0.0]), Tensor([1.0, 3.0, 1.0])],
                           lambda t, x: x[t.tensor([0, 2, 0]), t.tensor([1, 3, 1])], [(3, 4)]),
    "index by argmax": (lambda x: x[np.arange(3), x.argmax(axis=1)],
                        lambda t, x: x[t.arange(3), x.argmax(dim=1)], [(3, 4)], _distinct),
    "log1p": (lambda x: x.log1p(), lambda t, x: x.log1p(), [(3, 4)], _positive),
    "expm1": (lambda x: x.expm1(), lambda t, x: x.expm1(), [(3, 4)]),
    "erf": (lambda x: x.erf(), lambda t, x: x.erf(), [(3, 4)]),
    "sign": (lambda x: x.sign() * x, lambda t, x: x.sign() * x, [(3, 4)], _positive),
    "gelu": (lambda x: x.gelu(), lambda t, x: t.nn.functional.gelu(x), [(3, 4)]),
    "gelu tanh": (lambda x: x.gelu(approximate="tanh"), lambda t, x: t.nn.functional.gelu(x, approximate="tanh"),
                  [(3, 4)]),
}

# The rows these ops add to the table; every one is reached by a case above.
NEW_ROWS = {"stack", "broadcast_to", "var", "std", "norm", "cumsum", "prod", "einsum", "pad", "tile", "index_put"}


def _case(name):
    build, torch_build, shapes, *sampler = CASES[name]
    rng = np.random.default_rng(sum(map(ord, name)))
    arrays = [(sampler[0] if sampler else _uniform)(rng, s) for s in shapes]
    return build, torch_build, arrays, rng


def _rows(out):
    return {n.op.name for n in graph.topological_order(out) if n.op is not None}


@pytest.mark.parametrize("name", list(CASES))
def test_gradients_match_central_differences(name):
    build, _, arrays, rng = _case(name)
    ts = [Tensor(a.copy()) for a in arrays]
    out = build(*ts)
    W = rng.normal(size=out.shape)
    (out * Tensor(W, requires_grad=False)).sum().backward()

    def f(arrs):
        return float((build(*(Tensor(a, requires_grad=False) for a in arrs)).data * W).sum())
    for k, t in enumerate(ts):
        expected = np.zeros_like(arrays[k])
        for i in np.ndindex(arrays[k].shape):
            up = [a.copy() for a in arrays]
            down = [a.copy() for a in arrays]
            up[k][i] += H
            down[k][i] -= H
            expected[i] = (f(up) - f(down)) / (2 * H)
        np.testing.assert_allclose(t.grad, expected, rtol=1e-6, atol=1e-7, err_msg=f"input {k}")


@pytest.mark.parametrize("name", list(CASES))
def test_forward_mode_equals_reverse_mode_and_the_node_check_passes(name):
    build, _, arrays, rng = _case(name)
    ts = [Tensor(a) for a in arrays]
    out = build(*ts)
    vs = [rng.normal(size=a.shape) for a in arrays]
    g = rng.normal(size=out.shape)
    forward = graph.jvp(out, dict(zip(ts, vs)))
    out.backward(g)
    reverse = sum(float(np.sum(t.grad * v)) for t, v in zip(ts, vs))
    assert float(np.sum(g * forward)) == pytest.approx(reverse, rel=1e-10, abs=1e-10)
    report = graph.check_gradients((out * Tensor(g, requires_grad=False)).sum())
    assert report.ok, str(report)


@pytest.mark.parametrize("name", list(CASES))
def test_values_and_gradients_match_pytorch(name):
    torch = _torch()
    build, torch_build, arrays, rng = _case(name)
    ts = [Tensor(a) for a in arrays]
    pts = [torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in arrays]
    out, pout = build(*ts), torch_build(torch, *pts)
    np.testing.assert_allclose(out.data, pout.detach().numpy(), rtol=1e-12, atol=1e-12)
    g = rng.normal(size=out.shape)
    out.backward(g)
    pout.backward(torch.from_numpy(g))
    for k, (t, p) in enumerate(zip(ts, pts)):
        np.testing.assert_allclose(t.grad, p.grad.numpy(), rtol=1e-10, atol=1e-12, err_msg=f"input {k}")


def test_every_new_row_is_reached_and_each_case_can_be_drawn_and_stepped():
    seen = set()
    for name in CASES:
        build, _, arrays, _ = _case(name)
        out = build(*(Tensor(a, label=f"x{k}") for k, a in enumerate(arrays))).sum()
        seen |= _rows(out)
        assert "digraph" in mgx.draw(out).source
        s = mgx.step(out)
        for _ in s:
            pass
        assert s.done
    assert NEW_ROWS <= set(TENSOR_OPS) and NEW_ROWS <= seen, NEW_ROWS - seen


def test_einsum_drawing_shows_the_subscripts():
    a = Tensor(np.ones((2, 2)), label="a")
    d = mgx.draw(einsum("ij,jk->ik", a, a).sum())
    assert "einsum ij,jk->ik" in d.source


# ---------------------------------------------------------------------------------------------------------
# What the ops promise beyond their derivatives
# ---------------------------------------------------------------------------------------------------------

def test_prod_gradient_is_the_product_of_the_others_at_zeros():
    x = Tensor([[2.0, 0.0, 3.0], [0.0, 5.0, 0.0], [1.0, 2.0, 4.0]])
    x.prod(axis=1).sum().backward()
    assert x.grad.tolist() == [[0.0, 6.0, 0.0], [0.0, 0.0, 0.0], [8.0, 4.0, 2.0]]


def test_var_defaults_to_the_sample_variance_and_ddof_is_numpys_name_for_correction():
    a = np.array([1.0, 2.0, 4.0, 7.0])
    x = Tensor(a)
    assert x.var().item() == pytest.approx(np.var(a, ddof=1), rel=1e-15)
    assert x.var(ddof=0).item() == x.var(correction=0).item() == pytest.approx(np.var(a), rel=1e-15)
    assert x.std(axis=0, keepdims=True).shape == (1,)


def test_norm_at_zero_has_gradient_zero_as_pytorch():
    x = Tensor(np.zeros((2, 3)))
    x.norm(axis=1).sum().backward()
    assert x.grad.tolist() == [[0.0] * 3] * 2


def test_argmax_and_argmin_are_integer_arrays_without_a_graph():
    x = Tensor([[1.0, 5.0, 5.0], [7.0, -2.0, 0.0]])
    assert x.argmax().tolist() == 3 and x.argmin().tolist() == 4
    assert x.argmax(axis=1).tolist() == [1, 0] and x.argmin(axis=0, keepdims=True).tolist() == [[0, 1, 1]]
    assert x.argmax(axis=1).dtype.kind == "i"
    assert x[0, x.argmax(axis=1)[0]].item() == 5.0


def test_split_and_chunk_give_pytorchs_pieces():
    x = Tensor(np.arange(10.0))
    assert [p.shape for p in x.split(4)] == [(4,), (4,), (2,)]
    assert [p.shape for p in x.split([3, 0, 7])] == [(3,), (0,), (7,)]
    assert [p.shape for p in x.chunk(3)] == [(4,), (4,), (2,)]
    assert [p.shape for p in x.chunk(6)] == [(2,)] * 5     # torch.chunk gives at most 6, here 5


def test_integer_index_tensors_accumulate_on_repeats():
    x = Tensor([1.0, 2.0, 3.0])
    idx = Tensor([0.0, 0.0, 2.0], requires_grad=False)
    x[idx].sum().backward()
    assert x.grad.tolist() == [2.0, 0.0, 1.0]


def test_no_grad_records_nothing_and_restores_recording():
    w = Tensor([1.0, 2.0])
    with no_grad():
        y = (w * w).sum()
        assert not mgx.tensor.is_grad_enabled()
    assert not y.requires_grad and y.parents == () and mgx.tensor.is_grad_enabled()
    with pytest.raises(MicrogradxError, match=r"does not require a gradient .* or inside no_grad\(\)"):
        y.backward()

    @no_grad()
    def evaluate(t):
        return t.exp()
    assert not evaluate(w).requires_grad and (w.exp()).requires_grad
    with pytest.raises(RuntimeError), no_grad():
        raise RuntimeError("inside")
    assert mgx.tensor.is_grad_enabled()


def test_detach_requires_grad_and_item():
    w = Tensor([3.0])
    d = (w * 2.0).detach()
    assert not d.requires_grad and d.parents == () and d.item() == 6.0
    x = Tensor([1.0, 2.0], requires_grad=False).requires_grad_()
    (x * x).sum().backward()
    assert x.grad.tolist() == [2.0, 4.0]
    assert not Tensor([1.0]).requires_grad_(False).requires_grad
    with pytest.raises(MicrogradxError, match=r"requires_grad_: .* not a leaf; use \.detach\(\)"):
        (w * 2.0).requires_grad_(False)
    with pytest.raises(ShapeError, match="item: .* 2 entries"):
        x.item()


def test_gelu_rows_and_the_approximate_spelling():
    from microgradx import Value, nn

    assert Value(1.0).gelu().data == pytest.approx(0.5 * (1 + math.erf(1 / math.sqrt(2))), rel=1e-15)
    tanh_form = 0.5 * (1 + math.tanh(math.sqrt(2 / math.pi) * 1.044715))
    assert Value(1.0).gelu(approximate="tanh").data == pytest.approx(tanh_form, rel=1e-15)
    assert Tensor([1.0]).gelu().op.name == "gelu" and Tensor([1.0]).gelu(approximate="tanh").op.name == "gelu_tanh"
    assert nn.GELU(approximate="tanh")(Tensor([1.0])).item() == pytest.approx(tanh_form, rel=1e-15)
    with pytest.raises(ValueError, match=r"gelu: approximate must be one of \['none', 'tanh'\], got 'erf'"):
        Tensor([1.0]).gelu(approximate="erf")


# ---------------------------------------------------------------------------------------------------------
# Bad input: an error naming the op, the value and the tensor
# ---------------------------------------------------------------------------------------------------------

X = Tensor(np.zeros((2, 3)), label="x")

ERRORS = [
    (lambda: stack([]), ShapeError, "stack: needs at least one tensor"),
    (lambda: stack([X, X.T]), ShapeError, r"stack: all tensors need one shape, got \(2, 3\), \(3, 2\)"),
    (lambda: stack([X, X], axis=3), ShapeError, r"stack: axis 3 does not fit x of shape \(2, 3\)"),
    (lambda: stack([X, X.astype(np.float32)]), TypeError, "stack: dtypes differ"),
    (lambda: X.split(0), ValueError, "split: the piece size must be an integer >= 1, got 0"),
    (lambda: X.split([1, 2]), ShapeError, r"split: sections \[1, 2\] add up to 3, but x .* has 2 along axis 0"),
    (lambda: X.split(1, axis=2), ShapeError, "split: axis 2 does not fit x"),
    (lambda: X.chunk(0), ValueError, "chunk: chunks must be an integer >= 1"),
    (lambda: X.squeeze(axis=1), ShapeError, r"squeeze: axis 1 of x of shape \(2, 3\) has size 3, not 1"),
    (lambda: X.unsqueeze(4), ShapeError, r"unsqueeze: axis 4 does not fit x .* \[-3, 3\)"),
    (lambda: X.view(4, -1), ShapeError, "reshape: cannot reshape x"),
    (lambda: X.flatten(1, 0), ShapeError, "flatten: start_axis 1 comes after end_axis 0"),
    (lambda: X.expand(2, 4), ShapeError, r"expand: x of shape \(2, 3\) cannot be expanded to \(2, 4\)"),
    (lambda: X.expand(3), ShapeError, r"expand: shape \(3,\) does not fit x"),
    (lambda: X.var(axis=5), ShapeError, "var: axis 5 does not fit x"),
    (lambda: Tensor([1.0], label="one").var(), ShapeError,
     "var: 1 entries of one .* correction=1 leave n - correction = 0"),
    (lambda: X.std(ddof=1, correction=1), TypeError, "std: pass correction .* or ddof .*, not both"),
    (lambda: X.var(correction=-1), ValueError, "var: correction must be a number >= 0, got -1"),
    (lambda: X.norm(3), ValueError, "norm: ord must be 1, 2 or math.inf, got 3"),
    (lambda: Tensor(np.zeros((2, 0)), label="e").argmax(axis=1), ShapeError, "argmax: e .* is empty along axis 1"),
    (lambda: X.argmin(axis=(0, 1)), ShapeError, r"argmin: axis \(0, 1\) does not fit x"),
    (lambda: X.cumsum(axis=2), ShapeError, "cumsum: axis 2 does not fit x"),
    (lambda: X.prod(axis=(0, 3)), ShapeError, "prod: axis .* does not fit x"),
    (lambda: einsum("ij,jk->ik", X, X), ShapeError, "einsum: 'ij,jk->ik': letter 'j' is size 3 in one place and 2"),
    (lambda: einsum("ij->ik", X), ValueError, "einsum: 'ij->ik': each output letter must appear once"),
    (lambda: einsum("i j;", X), ValueError, "einsum: 'i j;' is not of the form .* found ';'"),
    (lambda: einsum("__import__('os')", X), ValueError, "einsum: .* is not of the form"),
    (lambda: einsum("...ij,...jk", Tensor(np.ones((2, 3, 4))), Tensor(np.ones((3, 4, 5)))), ShapeError,
     r"einsum: '...ij,...jk': the axes under '...' do not broadcast: size 2 against 3"),
    (lambda: einsum("...ijk", X), ShapeError, r"einsum: operand 0 has shape \(2, 3\), but '...ijk' gives it at "
     "least 3 axes"),
    (lambda: einsum("i.j", X), ValueError, r"einsum: 'i.j' is not of the form .* found '\.'"),
    (lambda: einsum("...i...", X), ValueError, r"einsum: '...i...': operand 0 has a '.' that is not one"),
    (lambda: einsum("ij,jk", X), ValueError, r"einsum: 'ij,jk' names 2 operand\(s\), got 1"),
    (lambda: einsum("ijk", X), ShapeError, r"einsum: operand 0 has shape \(2, 3\), but 'ijk' gives it 3 axes"),
    (lambda: einsum(3, X), TypeError, "einsum: subscripts must be a string"),
    (lambda: pad(X, -1), ValueError, "pad: pad_width must be whole numbers >= 0, got -1"),
    (lambda: pad(X, ((1, 1), (1, 1), (1, 1))), ShapeError, "pad: pad_width .* does not fit x"),
    (lambda: pad(X, 1, value=math.nan), ValueError, "pad: value must be a finite number, got nan"),
    (lambda: X.flip(axis=2), ShapeError, "flip: axis 2 does not fit x"),
    (lambda: X.tile(-1), ValueError, "tile: each repetition count must be an integer >= 0, got -1"),
    (lambda: X.repeat([1, 2], axis=1), ValueError, r"repeat: repeats must be an integer >= 0 or 3 of them"),
    (lambda: X.masked_fill(np.ones((2, 3)), 0.0), TypeError, "masked_fill: the mask must be boolean"),
    (lambda: X.masked_fill(np.ones((4, 3), bool), 0.0), ShapeError, r"masked_fill: mask of shape \(4, 3\)"),
    (lambda: X.masked_fill(np.ones(3, bool), math.inf), mgx.DomainError, "masked_fill: data must be finite"),
    (lambda: X[Tensor([0.5])], TypeError, r"getitem: an index into x must hold integers, got 0.5 at index \(0,\)"),
    (lambda: X[np.array([1.0, 2.5])], TypeError, "getitem: an index into x must hold integers, got 2.5"),
    (lambda: X[Tensor([2.0])], ShapeError, "getitem: index .* does not fit x .* out of bounds"),
    (lambda: X.index_put(np.array([5]), 1.0), ShapeError, "index_put: index .* does not fit x .* out of bounds"),
    (lambda: X.index_put(np.array([0, 0]), Tensor(np.ones((2, 3)))), ValueError,
     "index_put: the index names a position of x more than once.*accumulate=True"),
    (lambda: X.index_put(0, Tensor(np.ones(2))), ShapeError, r"index_put: values of shape \(2,\) do not fit"),
    (lambda: X.index_put(0, Tensor(np.ones(3, np.float32))), TypeError, "index_put: dtypes differ"),
    (lambda: X.scatter_add(0, np.array([[0.5, 0, 0]]), np.ones((1, 3))), TypeError,
     "scatter_add: an index into x must hold integers, got 0.5"),
    (lambda: X.scatter_add(0, np.array([[2, 0, 0]]), np.ones((1, 3))), ShapeError,
     "scatter_add: index of shape .* does not fit x .* along axis 0"),
    (lambda: X.scatter_add(0, np.array([0, 0]), np.ones(2)), ShapeError, "scatter_add: index must be integers with 2"),
    (lambda: X.scatter_add(1, np.zeros((2, 2), int), np.ones((2, 3))), ShapeError,
     r"scatter_add: src of shape \(2, 3\) differs from index of shape \(2, 2\)"),
    (lambda: (X * 1.0).requires_grad_(False), MicrogradxError, "requires_grad_"),
    (lambda: X.__setitem__(0, 1.0), TypeError, r"x\[0\] = \.\.\.: a Tensor is a graph node .* x\.index_put"),
    (lambda: Tensor([1e200, 1e200]).prod(), mgx.DomainError, "prod.* gives inf"),
    (lambda: Tensor([1.0, -2.0], label="neg").log1p(), mgx.DomainError, r"log1p\(neg\): log1p needs x > -1, got -2.0"),
]


@pytest.mark.parametrize(("call", "error", "match"), ERRORS, ids=[m[:40] for _, _, m in ERRORS])
def test_bad_input_is_refused_naming_the_op_and_the_value(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_std_of_equal_entries_has_gradient_zero_as_pytorch():
    x = Tensor([[1.0, 1.0], [1.0, 2.0]], label="x")
    s = x.std(axis=1)
    assert s.data.tolist() == [0.0, pytest.approx(math.sqrt(0.5))]
    s.sum().backward()
    assert x.grad[0].tolist() == [0.0, 0.0]                    # the first row's std has no derivative: 0
    assert x.grad[1].tolist() == pytest.approx([-math.sqrt(0.5), math.sqrt(0.5)], rel=1e-14)


def test_std_and_norm_at_their_kinks_match_pytorch():
    torch = _torch()
    a = np.array([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0], [1.0, 2.0, 4.0]])
    for build, torch_build in ((lambda t: t.std(axis=1), lambda t: t.std(dim=1)),
                               (lambda t: t.norm(axis=1), lambda t: t.norm(dim=1))):
        x, p = Tensor(a), torch.tensor(a, requires_grad=True)
        build(x).sum().backward()
        torch_build(p).sum().backward()
        np.testing.assert_allclose(x.grad, p.grad.numpy(), rtol=1e-14, atol=0)


@pytest.mark.parametrize("name", list(CASES))
def test_float32_stays_float32(name):
    build, _, arrays, rng = _case(name)
    ts = [Tensor(a.astype(np.float32)) for a in arrays]
    out = build(*ts)
    assert out.dtype == np.float32
    out.backward(rng.normal(size=out.shape).astype(np.float32))
    assert all(t.grad.dtype == np.float32 for t in ts)


def test_a_layer_evaluated_under_no_grad_gives_data():
    from microgradx import nn

    net = nn.Sequential(nn.Linear(3, 2, rng=0), nn.GELU(), nn.Linear(2, 1, rng=1))
    with mgx.no_grad():
        y = net(np.ones((4, 3), np.float32))
    assert not y.requires_grad and y.parents == ()
    assert net(np.ones((4, 3), np.float32)).requires_grad
