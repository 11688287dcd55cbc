"""microgradx: automatic differentiation you can see, step through and check.

>>> from microgradx import Value
>>> x = Value(2.0, label="x"); y = x.tanh() * x
>>> y.backward(); round(x.grad, 6)
1.105329
"""

from __future__ import annotations

import importlib
from typing import Any

from .graph import (
    Event,
    GradientCheck,
    Node,
    Path,
    PathLimitError,
    backprop,
    check_gradients,
    count_paths,
    grad,
    jvp,
    paths,
    topological_order,
    zero_grad,
)
from .ops import OPS, DivisionByZeroError, DomainError, MicrogradxError, Op
from .value import Value

__version__ = "0.1.0"

__all__ = [
    "Value", "OPS", "Op", "grad", "backprop", "jvp", "paths", "count_paths", "Path", "Event", "Node",
    "check_gradients", "GradientCheck", "TENSOR_OPS", "fast",
    "topological_order", "zero_grad", "MicrogradxError", "DomainError", "DivisionByZeroError",
    "PathLimitError", "MLP", "Layer", "Neuron", "__version__",
    "draw", "Drawing", "RenderError", "step", "Stepper", "parse", "ParseError", "grade",
    "optim", "schedules", "data", "grading",
    "Tensor", "no_grad", "nn", "losses", "init",
    "fit", "evaluate", "train",
    "to_sympy", "from_sympy", "check_with_sympy", "latex", "derivative_latex", "compare_formula", "symbolic",
    "functional",
]

# Names and submodules that pull in heavier code load on first use, so `import microgradx` stays fast.
_LAZY = {
    "MLP": "scalar_nn", "Layer": "scalar_nn", "Neuron": "scalar_nn",
    "draw": "render", "Drawing": "render", "RenderError": "render",
    "step": "stepper", "Stepper": "stepper",
    "parse": "symbolic_parse", "ParseError": "symbolic_parse",
    "grade": "grading",
    "Tensor": "tensor", "TENSOR_OPS": "tensor", "no_grad": "tensor",
    "fit": "train", "evaluate": "train",
    "to_sympy": "symbolic", "from_sympy": "symbolic", "check_with_sympy": "symbolic", "latex": "symbolic",
    "derivative_latex": "symbolic", "compare_formula": "symbolic",
}
_SUBMODULES = {"scalar_nn", "examples", "cli", "render", "stepper", "symbolic_parse", "optim", "schedules", "data",
               "grading", "tensor", "fast", "nn", "losses", "init", "train", "symbolic", "functional"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'microgradx' has no attribute {name!r}")
