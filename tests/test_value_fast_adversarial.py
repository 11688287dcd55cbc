"""The scalar fast path attacked where its speed tricks could show: an interrupt at any bytecode of the pass, grads
that are not floats, data set by hand, gradients that overflow only when added to an earlier backward's, and the
second derivatives built on the kernels. Oracles: ``fast.reference_only()``, bit for bit, and PyTorch."""

from __future__ import annotations

import sys

import pytest

from microgradx import DomainError, Value, fast, graph, topological_order


def bits(x):
    """A float as its exact bits (so 0.0 and -0.0 differ), with its type; anything else as itself."""
    return x.hex() if type(x) is float else x

# ---------------------------------------------------------------------------------------------------------
# An interrupt (Ctrl-C) anywhere in the fast pass leaves every grad as it was
# ---------------------------------------------------------------------------------------------------------

# The functions an interrupt is injected into: the fast pass, its helpers, and the reference it re-runs to raise
# its error.
_INTERRUPTIBLE = {f.__code__ for f in (fast.value_backward, fast._order_marking, fast.value_order, fast._give_back,
                                       graph.backprop, graph.topological_order)}


def _interrupt_at(k: int):
    """A trace function raising KeyboardInterrupt at the ``k``-th bytecode run inside ``_INTERRUPTIBLE``: once, and
    only while no other exception is on its way (an interrupt during the clean-up after an error is a second
    exception, which no Python code can promise to survive)."""
    count = [0]

    def local(frame, event, arg):
        if event == "exception":
            count[0] = -sys.maxsize
        elif event == "opcode":
            count[0] += 1
            if count[0] == k:
                raise KeyboardInterrupt
        return local

    def enter(frame, event, arg):
        if frame.f_code in _INTERRUPTIBLE:
            frame.f_trace_opcodes, frame.f_trace_lines = True, False
            return local
        return None
    return enter


def _chain_with_shared_nodes(x, w):
    return (x * w + x).tanh() * w + (x * w).relu()


def _overflowing(x, w):
    u = x * 1e300
    return u + u * w  # backward with seed 1e10: the contributions overflow, the reference raises


@pytest.mark.parametrize("build, seed", [(_chain_with_shared_nodes, 1.0), (_overflowing, 1e10),
                                         (lambda x, w: x, 2.0)])  # a root that is a leaf
@pytest.mark.parametrize("call", ["backward", "value_order"])
def test_an_interrupt_at_any_bytecode_leaves_every_grad_as_it_was(build, seed, call):
    def fresh():
        x, w = Value(0.5, label="x"), Value(-1.5, label="w")
        y = build(x, w)
        order = topological_order(y)
        earlier = [0.0, -0.0, 0.25, None, 0.0, 3]  # fresh, signed zero, an earlier sum, cleared, ...
        for k, n in enumerate(order):
            n.grad = earlier[k % len(earlier)]
        return y, order, [bits(n.grad) for n in order]

    def run(y):
        if call == "value_order":
            return fast.value_order(y)
        try:
            y.backward(seed)
        except DomainError as e:
            return str(e)
    y, order, before = fresh()
    with fast.reference_only():
        completed = run(y), [bits(n.grad) for n in order]
    y, order, before = fresh()
    interrupted = 0
    for k in range(1, 100_000):
        y, order, before = fresh()
        sys.settrace(_interrupt_at(k))
        try:
            result = run(y)
        except KeyboardInterrupt:
            result = KeyboardInterrupt
        finally:
            sys.settrace(None)
        after = [bits(n.grad) for n in order]
        if result is KeyboardInterrupt:  # all or nothing: as before, or (interrupted on returning) as completed
            interrupted += 1
            assert after == before or (call == "backward" and after == completed[1]), f"interrupted at bytecode {k}"
            continue
        if call == "value_order":
            assert after == before and [id(n) for n in result] == [id(n) for n in order]
        elif isinstance(result, str):  # the reference's error, every grad as it was
            assert (result, after) == (completed[0], before)
        else:
            assert (result, after) == completed
        break
    assert interrupted > 50  # the trace reached the pass
