"""The tensor engine's fast paths attacked where their assumptions are thinnest: the bound the backward pass hands
to the optimizer, learning rates and gradients at the edges of each float type, parameters the step cannot
write, gradients whose sums overflow, labels that change or do not fit, each against the reference path
(``fast.reference_only()``), the rule written out, or PyTorch."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest

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
