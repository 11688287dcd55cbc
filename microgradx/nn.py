"""Neural-network modules on Tensors: ``Module``, ``Linear``, activations read from the op table, ``PReLU``,
``Softmax``, inverted ``Dropout`` (Gerald), a residual block (Blain), ``Sequential``; convolution, pooling
and batch-norm layers (ops in ``functional``) and recurrent cells built from existing Tensor ops.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from . import functional as F
from . import init as _init
from .fast import weight_layout
from .ops import OPS, Op, gelu_row
from .tensor import FUSABLE_ACTIVATIONS, ShapeError, Tensor, as_tensor, concatenate, linear, node

__all__ = [
    "Module", "Linear", "Activation", "ReLU", "Tanh", "Sigmoid", "LeakyReLU", "ELU", "GELU", "Swish", "SiLU",
    "Softplus", "Softsign", "HardTanh", "Arctan", "BinaryStep", "LinearActivation", "PReLU", "Softmax",
    "LogSoftmax", "Dropout", "Residual", "Sequential",
]


class Module(ABC):
    """Base of every layer: named parameters, train/eval mode, ``zero_grad`` and a state dict.

    Parameters are the attributes that are Tensors with ``requires_grad=True``; sub-modules are attributes
    that are Modules (or lists of them), found in the order they were assigned.

    >>> class Affine(Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.w = Tensor([2.0]); self.b = Tensor([0.5])
    ...     def forward(self, x):
    ...         return x * self.w + self.b
    >>> m = Affine(); [name for name, _ in m.named_parameters()]
    ['w', 'b']
    """

    training: bool = True

    def __init__(self) -> None:
        self.training = True

    @abstractmethod
    def forward(self, *args: Any) -> Any:
        """The module's computation; subclasses define it."""

    def __call__(self, *args: Any) -> Any:
        return self.forward(*args)

    # -- structure -----------------------------------------------------------------------------------------

    def named_children(self) -> Iterator[tuple[str, Module]]:
        """(name, sub-module) pairs, in assignment order; a list attribute ``blocks`` gives ``blocks.0``, ..."""
        for name, value in vars(self).items():
            if isinstance(value, Module):
                yield name, value
            elif isinstance(value, (list, tuple)):
                for i, item in enumerate(value):
                    if isinstance(item, Module):
                        yield f"{name}.{i}", item

    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, Tensor]]:
        """(dotted name, parameter) pairs, this module's own first, then each child's; shared ones once.

        >>> net = Sequential(Linear(2, 3, rng=0), ReLU(), Linear(3, 1, rng=0))
        >>> [name for name, _ in net.named_parameters()]
        ['0.weight', '0.bias', '2.weight', '2.bias']
        """
        found: dict[int, tuple[str, Tensor]] = {}
        self._collect(prefix, found)
        return iter(found.values())

    def _collect(self, prefix: str, found: dict[int, tuple[str, Tensor]]) -> None:
        # NOTE: a plain recursion filling a dict (keyed by identity, so a shared parameter appears once) is
        # several times cheaper than nested generators, and zero_grad runs it on every training step.
        for name, value in vars(self).items():
            if isinstance(value, Tensor):
                if value.requires_grad and id(value) not in found:
                    found[id(value)] = (prefix + name, value)
        for name, child in self.named_children():
            child._collect(f"{prefix}{name}.", found)

    def parameters(self) -> list[Tensor]:
        """The parameters, in the order of ``named_parameters()`` (what an optimizer updates)."""
        return [p for _, p in self.named_parameters()]

    # Names of array attributes that are state but not parameters (batch norm's running statistics): they are
    # saved and loaded with the parameters, and no optimizer touches them.
    _buffers: tuple[str, ...] = ()

    def named_buffers(self, prefix: str = "") -> Iterator[tuple[str, np.ndarray]]:
        """(dotted name, array) pairs of the non-parameter state, this module's own first, then each child's.

        >>> [name for name, _ in Sequential(Linear(2, 3, rng=0), BatchNorm1d(3)).named_buffers()]
        ['1.running_mean', '1.running_var']
        """
        for name in self._buffers:
            yield prefix + name, getattr(self, name)
        for name, child in self.named_children():
            yield from child.named_buffers(f"{prefix}{name}.")

    def state_arrays(self) -> dict[str, np.ndarray]:
        """{name: the live array} of every parameter and buffer: what ``state_dict`` copies and loading fills."""
        arrays = {name: p.data for name, p in self.named_parameters()}
        arrays.update(self.named_buffers())
        return arrays

    def modules(self) -> Iterator[Module]:
        """This module and every sub-module, depth first."""
        yield self
        for _, child in self.named_children():
            yield from child.modules()

    # -- modes and gradients -------------------------------------------------------------------------------

    def train(self, mode: bool = True) -> Module:
        """Training mode (dropout active) for this module and all sub-modules; returns self."""
        for m in self.modules():
            m.training = mode
        return self

    def eval(self) -> Module:
        """Evaluation mode (dropout off) for this module and all sub-modules; returns self."""
        return self.train(False)

    def zero_grad(self) -> None:
        """Forget every parameter's gradient (``grad = None``), before the next ``backward()``."""
        for _, p in self.named_parameters():
            p.grad = None

    # -- saving and loading --------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, np.ndarray]:
        """{name: copy of each parameter's and buffer's array}: ``net.load_state_dict(net.state_dict())`` is a
        no-op."""
        return {name: a.copy() for name, a in self.state_arrays().items()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Copy arrays into the parameters and buffers (in place, keeping their dtype); names and shapes must
        match.

        >>> a, b = Linear(2, 2, rng=0), Linear(2, 2, rng=1)
        >>> b.load_state_dict(a.state_dict()); bool((a.weight.data == b.weight.data).all())
        True
        """
        targets = self.state_arrays()
        missing = [k for k in targets if k not in state]
        unexpected = [k for k in state if k not in targets]
        if missing or unexpected:
            raise KeyError(f"load_state_dict: missing {missing}, unexpected {unexpected}")
        arrays = {k: np.asarray(v) for k, v in state.items()}
        params = dict(self.named_parameters())
        for k, target in targets.items():
            if arrays[k].shape != target.shape:
                kind = "parameter" if k in params else "buffer"
                raise ShapeError(f"load_state_dict: {k} has shape {arrays[k].shape}, the {kind} {target.shape}")
            if not np.isfinite(arrays[k]).all():
                raise ValueError(f"load_state_dict: {k} holds non-finite values")
            if np.can_cast(arrays[k].dtype, target.dtype, casting="same_kind"):
                with np.errstate(over="ignore"):  # checked just below: float64 1e39 is inf in float32
                    arrays[k] = arrays[k].astype(target.dtype)
                if not np.isfinite(arrays[k]).all():
                    raise ValueError(f"load_state_dict: {k} holds values beyond the largest {target.dtype}, the "
                                     "dtype it is loaded into")
        for k, target in targets.items():
            np.copyto(target, arrays[k], casting="same_kind")

    def extra_repr(self) -> str:
        """The text shown inside the parentheses of ``repr``."""
        return ""

    def __repr__(self) -> str:
        children = list(self.named_children())
        if not children:
            return f"{type(self).__name__}({self.extra_repr()})"
        lines = [f"  ({name}): " + repr(child).replace("\n", "\n  ") for name, child in children]
        return f"{type(self).__name__}(\n" + "\n".join(lines) + "\n)"


def _weights(layer: str, init: str, shape: tuple[int, ...], bias: bool, bias_init: float, dtype: Any,
             rng: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """A layer's (weight, bias or None) for the scheme ``init`` of ``microgradx.init``: the weight first, then a
    bias drawn by the scheme (``init="torch"``) or the constant ``bias_init``."""
    if init not in _init.INITS:
        raise ValueError(f"{layer}: unknown init {init!r}; choose one of {sorted(_init.INITS)}")
    gen = _init.make_rng(rng)
    weight = _init.INITS[init](shape, rng=gen, dtype=dtype)
    if not bias:
        return weight, None
    if init in _init.BIAS_INITS:
        if bias_init != 0.0:
            raise ValueError(f"{layer}: init={init!r} draws the bias itself; bias_init={bias_init!r} would be ignored")
        return weight, _init.BIAS_INITS[init](shape, rng=gen, dtype=dtype)
    return weight, _init.constant((shape[0],), bias_init, dtype=dtype)


class Linear(Module):
    """y = x @ W.T + b with W of shape (out, in) (Gerald's A in R^{m x n}); one fused graph node.

    ``init`` names a scheme of ``microgradx.init`` (default He uniform, U[-sqrt(6/n), sqrt(6/n)], for ReLU
    networks; use ``"xavier_uniform"``, U[-sqrt(6/(m+n)), sqrt(6/(m+n))], for tanh; ``"torch"`` is PyTorch's
    default, weight and bias both U[-1/sqrt(n), 1/sqrt(n)], so a tutorial's loss curve can be matched).
    ``bias_init`` is the constant bias: 0, or Gerald's small 0.01 for ReLU.

    >>> layer = Linear(3, 2, rng=0); layer(np.ones((4, 3))).shape
    (4, 2)
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *, init: str = "he_uniform",
                 bias_init: float = 0.0, dtype: Any = np.float32, rng: Any = None) -> None:
        super().__init__()
        self.in_features, self.out_features = int(in_features), int(out_features)
        weight, b = _weights("Linear", init, (self.out_features, self.in_features), bias, bias_init, dtype, rng)
        # NOTE: stored in the layout the fast linear kernel prefers (any layout gives the same numbers).
        self.weight = Tensor(weight_layout(weight), label="weight")
        self.bias = None if b is None else Tensor(b, label="bias")

    def forward(self, x: Any) -> Tensor:
        """x @ W.T + b."""
        return linear(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}, bias={self.bias is not None}"


def _spelled(layer: str, spellings: Mapping[str, Any], default: Any) -> Any:
    """The one value given under any spelling of an argument (microgradx's or PyTorch's; None = not given),
    else ``default``: ``_spelled("Softmax", {"axis": None, "dim": 1}, -1) == 1``."""
    given = {name: value for name, value in spellings.items() if value is not None}
    if len(given) > 1:
        raise TypeError(f"{layer}: {' and '.join(given)} are spellings of one argument; give one of them")
    return next(iter(given.values()), default)


# Op-table rows whose parameter PyTorch's layer spells differently: row name -> PyTorch's keyword.
TORCH_SPELLINGS: dict[str, str] = {"leaky_relu": "negative_slope"}


class Activation(Module):
    """Any one-input row of the op table as a layer: ``Activation("tanh")``, ``Activation("elu", 0.5)``.

    The parameter is passed positionally, by the row's name for it, or by PyTorch's (``TORCH_SPELLINGS``):
    ``LeakyReLU(0.1)``, ``LeakyReLU(alpha=0.1)`` and ``LeakyReLU(negative_slope=0.1)`` are one layer.

    >>> Activation("leaky_relu", alpha=0.1)(Tensor([-1.0, 2.0])).data.tolist()
    [-0.1, 2.0]
    """

    row: Op | None = None

    def __init__(self, op: Op | str | None = None, param: float | None = None, **kw: Any) -> None:
        super().__init__()
        row = OPS[op] if isinstance(op, str) else (op or type(self).row)
        if row is None or row.arity != 1:
            raise TypeError(f"Activation needs a one-input op-table row, got {op!r}")
        names = () if row.param is None else (row.param, TORCH_SPELLINGS.get(row.name, row.param))
        spellings = {name: kw.pop(name) for name in dict.fromkeys(names) if name in kw}
        if kw:
            raise TypeError(f"{row.name} takes {' or '.join(dict.fromkeys(names)) or 'no parameter'}, got {kw}")
        param = _spelled(row.name, {"the positional parameter": param, **spellings}, None)
        if param is not None and row.param is None:
            raise TypeError(f"{row.name} takes no parameter, got {param!r}")
        self.row = row
        self.param = None if row.param is None else float(row.default if param is None else param)

    def forward(self, x: Tensor) -> Tensor:
        """The row applied elementwise."""
        return node(self.row, (x if isinstance(x, Tensor) else as_tensor(x),), self.param)

    def extra_repr(self) -> str:
        named = type(self).row is self.row  # a PyTorch-named layer shows PyTorch's spelling (negative_slope=)
        shown = "" if named else repr(self.row.name)
        if self.param is not None:
            spelling = TORCH_SPELLINGS.get(self.row.name, self.row.param) if named else self.row.param
            shown += (", " if shown else "") + f"{spelling}={self.param:g}"
        return shown


def _named(class_name: str, op_name: str, note: str = "") -> type[Activation]:
    row = OPS[op_name]

    def __init__(self: Activation, param: float | None = None, **kw: Any) -> None:
        Activation.__init__(self, row, param, **kw)
    arg = f"{TORCH_SPELLINGS.get(op_name, row.param)}={row.default:g}" if row.param else ""
    doc = f"Layer {class_name}({arg}): the op table's ``{op_name}`` row, {row.doc}{note}."
    return type(class_name, (Activation,), {"row": row, "__init__": __init__, "__doc__": doc,
                                            "__module__": __name__})


ReLU = _named("ReLU", "relu")
Tanh = _named("Tanh", "tanh")
Sigmoid = _named("Sigmoid", "sigmoid")
LeakyReLU = _named("LeakyReLU", "leaky_relu")
ELU = _named("ELU", "elu")


class GELU(Activation):
    """Layer GELU(approximate="none"): the op table's exact ``gelu`` row, x Phi(x), as PyTorch's default;
    ``GELU(approximate="tanh")`` is the ``gelu_tanh`` row.

    >>> round(GELU()(Tensor([1.0])).item(), 6), round(GELU(approximate="tanh")(Tensor([1.0])).item(), 6)
    (0.841345, 0.841192)
    """

    row = OPS["gelu"]

    def __init__(self, approximate: str = "none") -> None:
        Activation.__init__(self, gelu_row(approximate))
        self.approximate = approximate

    def extra_repr(self) -> str:
        return "" if self.approximate == "none" else f"approximate={self.approximate!r}"


Swish = _named("Swish", "swish")
SiLU = Swish
Softplus = _named("Softplus", "softplus")
Softsign = _named("Softsign", "softsign")
HardTanh = _named("HardTanh", "hard_tanh")
Arctan = _named("Arctan", "arctan")
BinaryStep = _named("BinaryStep", "binary_step")
LinearActivation = _named("LinearActivation", "linear", " (not the Linear layer)")


class PReLU(Module):
    """Leaky ReLU with a learnable slope per channel (axis 1, as PyTorch; op-table row ``prelu``), initialised
    to ``init``.

    >>> act = PReLU(); y = act(Tensor([-2.0, 1.0], dtype=np.float32)).sum(); y.backward(); act.slope.grad.tolist()
    [-2.0]
    """

    def __init__(self, num_parameters: int = 1, init: float = 0.25, dtype: Any = np.float32) -> None:
        super().__init__()
        self.slope = Tensor(np.full((int(num_parameters),), init, dtype=dtype), label="slope")

    def forward(self, x: Tensor) -> Tensor:
        """x where x > 0, slope * x elsewhere, one slope per channel: axis 1 (N, C, ...), as PyTorch; an input
        of fewer than two axes has no channel axis and takes a single slope."""
        x = x if isinstance(x, Tensor) else as_tensor(x, self.slope.data.dtype)
        c = self.slope.data.shape[0]
        if x.data.ndim < 2:
            if c != 1:
                raise ShapeError(f"PReLU: input of shape {x.data.shape} has no channel axis for {c} slopes")
            return x.prelu(self.slope)
        if c != 1 and x.data.shape[1] != c:
            raise ShapeError(f"PReLU: input of shape {x.data.shape} has {x.data.shape[1]} channels on axis 1, "
                             f"not num_parameters={c}")
        return x.prelu(self.slope.reshape((c,) + (1,) * (x.data.ndim - 2)))

    def extra_repr(self) -> str:
        return f"num_parameters={self.slope.data.shape[0]}"


class Softmax(Module):
    """exp(x) / sum(exp(x)) along ``axis`` (stable); for training prefer logits with ``cross_entropy``.

    ``dim`` is PyTorch's spelling of ``axis``, accepted here only: ``Softmax(dim=1)`` is ``Softmax(axis=1)``.

    >>> Softmax()(Tensor([[0.0, 0.0]])).data.tolist()
    [[0.5, 0.5]]
    """

    def __init__(self, axis: int | None = None, *, dim: int | None = None) -> None:
        super().__init__()
        self.axis = _spelled(type(self).__name__, {"axis": axis, "dim": dim}, -1)

    def forward(self, x: Tensor) -> Tensor:
        """Softmax along the axis."""
        return x.softmax(self.axis)

    def extra_repr(self) -> str:
        return f"axis={self.axis}"


class LogSoftmax(Softmax):
    """x - logsumexp(x) along ``axis`` (stable)."""

    def forward(self, x: Tensor) -> Tensor:
        """Log-softmax along the axis."""
        return x.log_softmax(self.axis)


class Dropout(Module):
    """Inverted dropout (Gerald's lecture): in training m ~ Bernoulli(1 - p) and z' = z * m / (1 - p); in eval z' = z.

    The backward is dz'/dz = m / (1 - p): switched-off units get no gradient. Scaling in training keeps the
    expected activation unchanged, so evaluation needs no rescaling.

    >>> drop = Dropout(0.5, rng=0); x = Tensor(np.ones((2, 4)))
    >>> sorted(set(drop(x).data.ravel().tolist())), drop.eval()(x) is x
    ([0.0, 2.0], True)
    """

    def __init__(self, p: float = 0.5, rng: Any = None) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"Dropout: p is a probability in [0, 1], got {p!r}")
        self.p = float(p)
        self.rng = _init.make_rng(rng)

    def forward(self, x: Tensor) -> Tensor:
        """z * m / (1 - p) in training, z itself in evaluation."""
        if not self.training or self.p == 0.0:
            return x
        dtype = x.data.dtype
        keep = self.rng.random(self._mask_shape(x.data.shape), dtype=np.float32) >= self.p
        if self.p == 1.0:
            scale = np.zeros(keep.shape, dtype=dtype)
        else:
            scale = keep.astype(dtype) * dtype.type(1.0 / (1.0 - self.p))
        return x * Tensor(scale, requires_grad=False)

    def _mask_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """The shape of the mask m, broadcast over the input: one draw per entry."""
        return shape

    def extra_repr(self) -> str:
        return f"p={self.p:g}"


class Residual(Module):
    """A skip connection around ``block``: y = x + block(x) (Blain's report: gradients reach early layers via the +).

    >>> blk = Residual(Linear(2, 2, rng=0)); blk(Tensor(np.zeros((1, 2), np.float32))).shape
    (1, 2)
    """

    def __init__(self, block: Module) -> None:
        super().__init__()
        self.block = block

    def forward(self, x: Tensor) -> Tensor:
        """x + block(x); the block must keep the shape."""
        y = self.block(x)
        if y.shape != x.shape:
            raise ShapeError(f"Residual: the block maps shape {x.shape} to {y.shape}; a skip connection needs "
                             "the same shape")
        return x + y


def _fusable_row(layer: Module) -> Op | None:
    """The op-table row of an activation layer that linear() can apply inside its own node, else None."""
    if type(layer).forward is Activation.forward and layer.param is None and layer.row in FUSABLE_ACTIVATIONS:
        return layer.row
    return None


class Sequential(Module):
    """Modules applied one after another; they are named "0", "1", ...

    A ``Linear`` followed by an activation of ``tensor.FUSABLE_ACTIVATIONS`` (ReLU, Tanh, ...) runs as one
    fused graph node, ``linear(x, W, b, activation=...)``: the same numbers, one node fewer to build and walk
    back, and one array fewer per step.

    >>> net = Sequential(Linear(4, 3, rng=0), ReLU(), Linear(3, 2, rng=1))
    >>> net(np.ones((5, 4))).shape, len(net)
    ((5, 2), 3)
    """

    def __init__(self, *layers: Module) -> None:
        super().__init__()
        for i, layer in enumerate(layers):
            if not isinstance(layer, Module):
                raise TypeError(f"Sequential: item {i} is {type(layer).__name__}, not a Module")
        self.layers = list(layers)

    def named_children(self) -> Iterator[tuple[str, Module]]:
        """("0", first layer), ("1", second layer), ..."""
        for i, layer in enumerate(self.layers):
            yield str(i), layer

    def forward(self, x: Any) -> Any:
        """Each layer applied to the previous one's output."""
        layers = self.layers
        i, n = 0, len(layers)
        while i < n:
            layer = layers[i]
            i += 1
            if type(layer) is Linear and i < n:  # a subclass may compute something else: never fused
                row = _fusable_row(layers[i])
                if row is not None:
                    x = linear(x, layer.weight, layer.bias, activation=row)
                    i += 1
                    continue
            x = layer(x)
        return x

    def __getitem__(self, i: int) -> Module:
        return self.layers[i]

    def __len__(self) -> int:
        return len(self.layers)

    def __iter__(self) -> Iterator[Module]:
        return iter(self.layers)


# ---------------------------------------------------------------------------------------------------------
# Convolution, pooling and batch normalisation (their ops are in microgradx.functional)
# ---------------------------------------------------------------------------------------------------------

__all__ += ["Conv2d", "Conv1d", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d", "GlobalAvgPool2d", "Flatten",
            "BatchNorm1d", "BatchNorm2d", "RNNCell", "LSTMCell", "GRUCell", "Unroll"]


class Conv2d(Module):
    """2-D convolution over NCHW images: weight (out_channels, in_channels / groups, kh, kw), bias (out_channels,).

    PyTorch's arguments: ``stride``, ``padding`` (an int, a pair, ``"valid"`` or ``"same"``), ``dilation``,
    ``groups`` (independent convolutions over as many slices of the channels), ``bias``, ``padding_mode``
    (``"zeros"``, ``"reflect"``, ``"replicate"``, ``"circular"``). ``init`` names a scheme of
    ``microgradx.init``; fan_in = in_channels / groups * kh * kw (default He uniform, for ReLU; ``"torch"`` is
    PyTorch's default, weight and bias both U[-1/sqrt(fan_in), 1/sqrt(fan_in)]).
    Output size per axis: floor((size + 2 padding - dilation (k - 1) - 1) / stride) + 1.

    >>> conv = Conv2d(1, 4, 3, padding=1, rng=0); conv(np.zeros((2, 1, 8, 8), np.float32)).shape
    (2, 4, 8, 8)
    >>> same = Conv2d(4, 4, 3, padding="same", dilation=2, groups=2, padding_mode="reflect", rng=0)
    >>> same(np.zeros((1, 4, 5, 5), np.float32)).shape
    (1, 4, 5, 5)
    """

    dims = 2

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, ...],
                 stride: int | tuple[int, ...] = 1, padding: int | tuple[int, ...] | str = 0,
                 dilation: int | tuple[int, ...] = 1, groups: int = 1, bias: bool = True,
                 padding_mode: str = "zeros", *, init: str = "he_uniform", dtype: Any = np.float32,
                 rng: Any = None) -> None:
        super().__init__()
        name = type(self).__name__
        kernel = _kernel_size(name, kernel_size, self.dims)
        self.in_channels, self.out_channels, self.groups = int(in_channels), int(out_channels), groups
        if not (isinstance(groups, int) and groups >= 1 and self.in_channels % groups == 0
                and self.out_channels % groups == 0):
            raise ValueError(f"{name}: groups={groups!r} must be an integer >= 1 dividing in_channels "
                             f"({in_channels}) and out_channels ({out_channels})")
        if padding_mode not in F.PADDING_MODES:
            raise ValueError(f"{name}: padding_mode must be one of {', '.join(map(repr, F.PADDING_MODES))}, got "
                             f"{padding_mode!r}")
        self.kernel_size, self.stride, self.padding = kernel, stride, padding
        self.dilation, self.padding_mode = dilation, padding_mode
        shape = (self.out_channels, self.in_channels // groups, *kernel)
        weight, b = _weights(name, init, shape, bias, 0.0, dtype, rng)
        self.weight = Tensor(weight, label="weight")
        self.bias = None if b is None else Tensor(b, label="bias")

    def forward(self, x: Any) -> Tensor:
        """conv2d(x, weight, bias, stride, padding, dilation, groups, padding_mode)."""
        conv = F.conv2d if self.dims == 2 else F.conv1d
        return conv(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups,
                    self.padding_mode)

    def extra_repr(self) -> str:
        extra = _options(dilation=(self.dilation, 1), groups=(self.groups, 1), bias=(self.bias is not None, True),
                         padding_mode=(self.padding_mode, "zeros"))
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding!r}{extra}")


def _kernel_size(layer: str, k: Any, dims: int) -> tuple[int, ...]:
    """kernel_size as a tuple of ``dims`` positive integers: ``_kernel_size("Conv2d", 3, 2) == (3, 3)``."""
    if dims == 2:
        return F._pair(layer, "kernel_size", k, 1)
    return (F._pair(layer, "kernel_size", k[0] if isinstance(k, (tuple, list)) and len(k) == 1 else k, 1)[0],)


class Conv1d(Conv2d):
    """1-D convolution over (N, C, L) sequences: weight (out_channels, in_channels / groups, k), the arguments
    of ``Conv2d`` with single integers.

    >>> Conv1d(2, 3, 5, padding="same", rng=0)(np.zeros((4, 2, 10), np.float32)).shape
    (4, 3, 10)
    """

    dims = 1


class MaxPool2d(Module):
    """The maximum of each window (stride = the window by default); a tie sends the gradient to the first maximum.

    PyTorch's arguments: ``kernel_size`` (the older spelling ``k=`` is accepted too), ``stride``, ``padding``
    (-inf borders, at most half a window), ``dilation`` and ``ceil_mode`` (keep a last, partial window; by
    keyword, since PyTorch's fifth argument is ``return_indices``).

    >>> MaxPool2d(2)(Tensor(np.arange(16.0).reshape(1, 1, 4, 4))).data[0, 0].tolist()
    [[5.0, 7.0], [13.0, 15.0]]
    >>> MaxPool2d(3, stride=2, padding=1, ceil_mode=True)(Tensor(np.ones((1, 1, 6, 6)))).shape
    (1, 1, 4, 4)
    """

    def __init__(self, kernel_size: int | tuple[int, int] | None = None,
                 stride: int | tuple[int, int] | None = None, padding: int | tuple[int, int] = 0,
                 dilation: int | tuple[int, int] = 1, *, ceil_mode: bool = False,
                 k: int | tuple[int, int] | None = None) -> None:
        super().__init__()
        self.kernel_size = _spelled(type(self).__name__, {"kernel_size": kernel_size, "k": k}, None)
        if self.kernel_size is None:
            raise TypeError(f"{type(self).__name__} needs kernel_size, the window size k")
        self.stride, self.padding, self.dilation, self.ceil_mode = stride, padding, dilation, bool(ceil_mode)

    @property
    def k(self) -> int | tuple[int, int]:
        """The window size: ``kernel_size`` under its older name."""
        return self.kernel_size

    def forward(self, x: Any) -> Tensor:
        """max_pool2d(x, kernel_size, stride, padding, dilation, ceil_mode)."""
        return F.max_pool2d(x, self.kernel_size, self.stride, self.padding, self.dilation, self.ceil_mode)

    def extra_repr(self) -> str:
        return f"{self.kernel_size}" + _options(stride=(self.stride, None), padding=(self.padding, 0),
                                                dilation=(self.dilation, 1),
                                                ceil_mode=(self.ceil_mode, False))


def _options(**given: tuple[Any, Any]) -> str:
    """", name=value" for each (value, default) pair whose value is not the default."""
    return "".join(f", {name}={value!r}" for name, (value, default) in given.items() if value != default)


class AvgPool2d(MaxPool2d):
    """The mean of each window (stride = the window by default), PyTorch's arguments: ``padding`` (zero borders),
    ``ceil_mode``, ``count_include_pad`` (divide by the entries inside the padded input, or only the input's)
    and ``divisor_override``.

    >>> AvgPool2d(2)(Tensor(np.ones((1, 3, 4, 4)))).shape
    (1, 3, 2, 2)
    """

    def __init__(self, kernel_size: int | tuple[int, int] | None = None,
                 stride: int | tuple[int, int] | None = None, padding: int | tuple[int, int] = 0,
                 ceil_mode: bool = False, count_include_pad: bool = True, divisor_override: int | None = None, *,
                 k: int | tuple[int, int] | None = None) -> None:
        super().__init__(kernel_size, stride, padding, 1, ceil_mode=ceil_mode, k=k)
        self.count_include_pad, self.divisor_override = bool(count_include_pad), divisor_override

    def forward(self, x: Any) -> Tensor:
        """avg_pool2d(x, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override)."""
        return F.avg_pool2d(x, self.kernel_size, self.stride, self.padding, self.ceil_mode, self.count_include_pad,
                            self.divisor_override)

    def extra_repr(self) -> str:
        return f"{self.kernel_size}" + _options(stride=(self.stride, None), padding=(self.padding, 0),
                                                ceil_mode=(self.ceil_mode, False),
                                                count_include_pad=(self.count_include_pad, True),
                                                divisor_override=(self.divisor_override, None))


class AdaptiveAvgPool2d(Module):
    """(N, C, H, W) -> (N, C, *output_size): the mean over output_size bins per axis, for any input size
    (None keeps an axis). ``AdaptiveAvgPool2d(1)`` is a global average that keeps the 1 x 1 axes.

    >>> AdaptiveAvgPool2d((2, None))(Tensor(np.ones((1, 3, 5, 7)))).shape
    (1, 3, 2, 7)
    """

    def __init__(self, output_size: int | None | tuple[int | None, int | None]) -> None:
        super().__init__()
        self.output_size = output_size

    def forward(self, x: Any) -> Tensor:
        """adaptive_avg_pool2d(x, output_size)."""
        return F.adaptive_avg_pool2d(x, self.output_size)

    def extra_repr(self) -> str:
        return f"{self.output_size!r}"


class GlobalAvgPool2d(Module):
    """(N, C, H, W) -> (N, C): each channel's mean over the image.

    >>> GlobalAvgPool2d()(Tensor(np.ones((2, 3, 4, 4)))).shape
    (2, 3)
    """

    def forward(self, x: Any) -> Tensor:
        """global_avg_pool2d(x)."""
        return F.global_avg_pool2d(x)


class Flatten(Module):
    """(N, d1, d2, ...) -> (N, d1 * d2 * ...), keeping the batch axis (a ``reshape`` node).

    >>> Flatten()(Tensor(np.ones((2, 3, 4, 4)))).shape
    (2, 48)
    """

    def forward(self, x: Any) -> Tensor:
        """x.reshape(N, -1)."""
        t = as_tensor(x)
        if t.ndim == 0:
            raise ShapeError("Flatten: input needs a batch axis, got a scalar")
        return t.reshape(t.shape[0], -1)


class _BatchNorm(Module):
    """Shared by BatchNorm1d and BatchNorm2d: gamma (``weight``), beta (``bias``) and the running statistics.

    ``affine=False`` (PyTorch's spelling) drops gamma and beta: the output is the normalised input itself.
    """

    shapes: dict[int, str] = {2: "(N, C)"}
    _buffers = ("running_mean", "running_var")

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1, affine: bool = True,
                 dtype: Any = np.float32) -> None:
        super().__init__()
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"{type(self).__name__}: momentum must be in [0, 1], got {momentum!r}")
        self.num_features, self.eps, self.momentum = int(num_features), float(eps), float(momentum)
        self.affine = bool(affine)
        # NOTE: without affine, gamma = 1 and beta = 0 are constants of the node, not parameters.
        self.weight = Tensor(np.ones(self.num_features, dtype=dtype), label="weight", requires_grad=self.affine)
        self.bias = Tensor(np.zeros(self.num_features, dtype=dtype), label="bias", requires_grad=self.affine)
        # NOTE: plain arrays, not parameters: the optimizer must not update them, only forward() in training.
        self.running_mean = np.zeros(self.num_features, dtype=dtype)
        self.running_var = np.ones(self.num_features, dtype=dtype)

    def forward(self, x: Any) -> Tensor:
        """Normalise with the batch's statistics (training) or the running ones (evaluation)."""
        shape = np.shape(x.data if isinstance(x, Tensor) else x)
        if len(shape) not in self.shapes:
            raise ShapeError(f"{type(self).__name__}: input must have shape {' or '.join(self.shapes.values())}, "
                             f"got {shape}")
        return F.batch_norm(x, self.weight, self.bias, self.running_mean, self.running_var, self.training,
                            self.momentum, self.eps)

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps:g}, momentum={self.momentum:g}" + \
            ("" if self.affine else ", affine=False")


class BatchNorm1d(_BatchNorm):
    """Batch normalisation of (N, C) features or (N, C, L) sequences: y = gamma (x - mu) / sqrt(var + eps) + beta,
    per feature C (statistics over N, and L when there is one).

    Training uses the batch's mean and biased variance and moves ``running_mean``/``running_var`` towards them
    by ``momentum`` (the running variance takes the unbiased batch variance, as PyTorch); ``eval()`` uses the
    running statistics. They are plain arrays, not parameters: buffers, saved by ``state_dict`` with gamma and beta.

    >>> bn = BatchNorm1d(2); y = bn(Tensor(np.array([[1.0, 2.0], [3.0, 6.0]], np.float32)))
    >>> y.data.round(3).tolist(), bn.running_mean.astype(float).round(3).tolist()
    ([[-1.0, -1.0], [1.0, 1.0]], [0.2, 0.4])
    """

    shapes = {2: "(N, C)", 3: "(N, C, L)"}


class BatchNorm2d(_BatchNorm):
    """Batch normalisation of (N, C, H, W) images per channel, statistics over N, H and W (see BatchNorm1d).

    >>> BatchNorm2d(3)(Tensor(np.random.default_rng(0).normal(size=(2, 3, 4, 4)).astype(np.float32))).shape
    (2, 3, 4, 4)
    """

    shapes = {4: "(N, C, H, W)"}


# ---------------------------------------------------------------------------------------------------------
# Recurrent cells: compositions of linear, getitem and the table's sigmoid, tanh, mul and add rows
# ---------------------------------------------------------------------------------------------------------

class _Cell(Module):
    """Parameters shared by the cells: weight_ih (G H, I), weight_hh (G H, H), bias_ih and bias_hh (G H,), for
    G gates, all drawn from U[-1/sqrt(H), 1/sqrt(H)] as PyTorch does; ``bias=False`` leaves both biases out."""

    gates = 1

    def __init__(self, input_size: int, hidden_size: int, dtype: Any = np.float32, rng: Any = None, *,
                 bias: bool = True) -> None:
        super().__init__()
        self.input_size, self.hidden_size = int(input_size), int(hidden_size)
        if self.input_size < 1 or self.hidden_size < 1:
            raise ValueError(f"{type(self).__name__}: sizes must be >= 1, got {input_size!r}, {hidden_size!r}")
        gen = _init.make_rng(rng)
        bound = 1.0 / np.sqrt(self.hidden_size)
        rows = self.gates * self.hidden_size

        def draw(shape: tuple[int, ...], label: str) -> Tensor:
            return Tensor(gen.uniform(-bound, bound, size=shape).astype(dtype), label=label)
        self.weight_ih = draw((rows, self.input_size), "weight_ih")
        self.weight_hh = draw((rows, self.hidden_size), "weight_hh")
        self.bias_ih = draw((rows,), "bias_ih") if bias else None
        self.bias_hh = draw((rows,), "bias_hh") if bias else None

    def _zeros(self, x: Any) -> Tensor:
        n = np.shape(x.data if isinstance(x, Tensor) else x)[0]
        return Tensor(np.zeros((n, self.hidden_size), dtype=self.weight_ih.data.dtype), requires_grad=False)

    def _gate(self, z: Tensor, k: int) -> Tensor:
        h = self.hidden_size
        return z[:, k * h:(k + 1) * h]

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}"


class RNNCell(_Cell):
    """Elman cell: h' = act(x W_ih^T + b_ih + h W_hh^T + b_hh), act a one-input op-table row (tanh default).

    Called as ``cell(x, h) -> h'`` with x (N, input_size); h (N, hidden_size) or None for zeros.

    >>> cell = RNNCell(3, 5, rng=0); cell(np.ones((2, 3), np.float32)).shape
    (2, 5)
    """

    def __init__(self, input_size: int, hidden_size: int, nonlinearity: str = "tanh", dtype: Any = np.float32,
                 rng: Any = None, *, bias: bool = True) -> None:
        row = OPS.get(nonlinearity)
        if row is None or row.arity != 1:
            raise ValueError(f"RNNCell: nonlinearity must be a one-input op-table row, got {nonlinearity!r}")
        super().__init__(input_size, hidden_size, dtype, rng, bias=bias)
        self.nonlinearity = nonlinearity

    def forward(self, x: Any, h: Tensor | None = None) -> Tensor:
        """One step: the new hidden state."""
        h = self._zeros(x) if h is None else h
        return (linear(x, self.weight_ih, self.bias_ih) + linear(h, self.weight_hh, self.bias_hh)).apply(
            self.nonlinearity)


class LSTMCell(_Cell):
    """LSTM cell (Hochreiter & Schmidhuber 1997; gate order i, f, g, o as PyTorch):

    z = x W_ih^T + b_ih + h W_hh^T + b_hh, split into four blocks of H;
    i = sigmoid(z_i), f = sigmoid(z_f), g = tanh(z_g), o = sigmoid(z_o);
    c' = f c + i g, h' = o tanh(c').

    Called as ``cell(x, (h, c)) -> (h', c')``; a state of None means zeros.

    >>> cell = LSTMCell(3, 4, rng=0); h, c = cell(np.ones((2, 3), np.float32)); h.shape, c.shape
    ((2, 4), (2, 4))
    """

    gates = 4

    def forward(self, x: Any, state: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, Tensor]:
        """One step: the new (h, c)."""
        h, c = (self._zeros(x), self._zeros(x)) if state is None else state
        z = linear(x, self.weight_ih, self.bias_ih) + linear(h, self.weight_hh, self.bias_hh)
        i, f = self._gate(z, 0).sigmoid(), self._gate(z, 1).sigmoid()
        g, o = self._gate(z, 2).tanh(), self._gate(z, 3).sigmoid()
        c2 = f * c + i * g
        return o * c2.tanh(), c2


class GRUCell(_Cell):
    """GRU cell (Cho et al. 2014; gate order r, z, n as PyTorch):

    r = sigmoid(x W_ir^T + b_ir + h W_hr^T + b_hr), u = sigmoid(x W_iz^T + b_iz + h W_hz^T + b_hz),
    n = tanh(x W_in^T + b_in + r (h W_hn^T + b_hn)), h' = (1 - u) n + u h.

    Called as ``cell(x, h) -> h'``; h of None means zeros.

    >>> GRUCell(3, 4, rng=0)(np.ones((2, 3), np.float32)).shape
    (2, 4)
    """

    gates = 3

    def forward(self, x: Any, h: Tensor | None = None) -> Tensor:
        """One step: the new hidden state."""
        h = self._zeros(x) if h is None else h
        gi = linear(x, self.weight_ih, self.bias_ih)
        gh = linear(h, self.weight_hh, self.bias_hh)
        r = (self._gate(gi, 0) + self._gate(gh, 0)).sigmoid()
        u = (self._gate(gi, 1) + self._gate(gh, 1)).sigmoid()
        n = (self._gate(gi, 2) + r * self._gate(gh, 2)).tanh()
        return (1.0 - u) * n + u * h


class Unroll(Module):
    """Unroll a cell over time: input (N, T, F); output the last hidden state (N, H), or every step's
    (N, T, H) with ``return_sequences=True``. An LSTM cell's state is (h, c); h is the output.
    ``RNN(cell, return_sequences)`` builds one too (its older name); ``RNN(input_size, hidden_size, ...)``,
    ``LSTM`` and ``GRU`` are PyTorch's multi-layer, bidirectional layers.

    The graph is the cell's graph repeated T times with shared parameters, so backward is backpropagation
    through time.

    >>> rnn = Unroll(LSTMCell(2, 3, rng=0), return_sequences=True); rnn(np.ones((4, 5, 2), np.float32)).shape
    (4, 5, 3)
    """

    def __init__(self, cell: _Cell, return_sequences: bool = False) -> None:
        super().__init__()
        if not isinstance(cell, _Cell):
            raise TypeError(f"Unroll needs a recurrent cell (RNNCell, LSTMCell, GRUCell), got {type(cell).__name__}")
        self.cell = cell
        self.return_sequences = bool(return_sequences)

    def forward(self, x: Any, state: Any = None) -> Tensor:
        """Run the cell over the time axis, starting from ``state`` (None: zeros)."""
        shape = np.shape(x.data if isinstance(x, Tensor) else x)
        if len(shape) != 3 or shape[2] != self.cell.input_size:
            raise ShapeError(f"Unroll: input must have shape (N, T, {self.cell.input_size}), got {shape}")
        # A data input is sliced as an array (no graph); a Tensor that needs a gradient through getitem nodes.
        steps = x if isinstance(x, Tensor) and x.requires_grad else np.asarray(x.data if isinstance(x, Tensor)
                                                                                  else x)
        outputs = []
        for t in range(shape[1]):
            state = self.cell(steps[:, t], state)
            outputs.append(state[0] if isinstance(state, tuple) else state)
        if not self.return_sequences:
            return outputs[-1]
        n, hidden = shape[0], self.cell.hidden_size
        return concatenate([h.reshape(n, 1, hidden) for h in outputs], axis=1)

    def extra_repr(self) -> str:
        return f"return_sequences={self.return_sequences}"


# ---------------------------------------------------------------------------------------------------------
# PyTorch's multi-layer, bidirectional recurrent layers: the cells above, stacked and run both ways
# ---------------------------------------------------------------------------------------------------------

__all__ += ["RNN", "LSTM", "GRU"]


class _Recurrent(Module):
    """Shared by RNN, LSTM and GRU: ``num_layers`` stacked cells per direction, PyTorch's arguments and names.

    Layer k of direction d is a cell whose parameters are this module's ``weight_ih_l{k}``, ``weight_hh_l{k}``,
    ``bias_ih_l{k}``, ``bias_hh_l{k}`` (``..._l{k}_reverse`` for the backward direction), PyTorch's names, drawn
    from U[-1/sqrt(H), 1/sqrt(H)] like PyTorch's default. Layer k > 0 reads layer k - 1's output, both
    directions concatenated (D H features); ``dropout`` is applied to it in training, as PyTorch does.
    """

    cell_type: type[_Cell] = RNNCell

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False, *,
                 dtype: Any = np.float32, rng: Any = None, **cell_kw: Any) -> None:
        super().__init__()
        name = type(self).__name__
        if isinstance(num_layers, bool) or not isinstance(num_layers, int) or num_layers < 1:
            raise ValueError(f"{name}: num_layers must be an integer >= 1, got {num_layers!r}")
        if not 0.0 <= dropout <= 1.0:
            raise ValueError(f"{name}: dropout is a probability in [0, 1], got {dropout!r}")
        self.input_size, self.hidden_size, self.num_layers = int(input_size), int(hidden_size), num_layers
        self.bias, self.batch_first, self.bidirectional = bool(bias), bool(batch_first), bool(bidirectional)
        self.dropout = float(dropout)
        self.drop = Dropout(self.dropout, rng=rng)
        gen = _init.make_rng(rng)
        # NOTE: kept in a dict, which named_children does not walk, so the parameters are named once, here.
        self._cells: dict[tuple[int, int], _Cell] = {}
        directions = 2 if self.bidirectional else 1
        for k in range(num_layers):
            for d in range(directions):
                inputs = self.input_size if k == 0 else directions * self.hidden_size
                cell = self.cell_type(inputs, self.hidden_size, dtype=dtype, rng=gen, bias=self.bias, **cell_kw)
                self._cells[k, d] = cell
                suffix = f"_l{k}" + ("_reverse" if d else "")
                for weight in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                    if getattr(cell, weight) is not None:
                        getattr(cell, weight).label = weight + suffix
                        setattr(self, weight + suffix, getattr(cell, weight))

    def named_children(self) -> Iterator[tuple[str, Module]]:
        """None: as in PyTorch, the layer owns its parameters directly (its cells and dropout are internal)."""
        return iter(())

    @property
    def directions(self) -> int:
        """2 for a bidirectional layer, else 1 (PyTorch's D)."""
        return 2 if self.bidirectional else 1

    def _initial(self, state: Any, n: int) -> list[Any]:
        """The given initial state as one entry per (layer, direction), or None (zeros) for each."""
        count = self.num_layers * self.directions
        if state is None:
            return [None] * count
        parts = state if isinstance(state, tuple) else (state,)
        want = (count, n, self.hidden_size)
        for part in parts:
            got = np.shape(part.data if isinstance(part, Tensor) else part)
            if got != want:
                raise ShapeError(f"{type(self).__name__}: initial state must have shape (num_layers * directions, "
                                 f"N, hidden_size) = {want}, got {got}")
        parts = tuple(p if isinstance(p, Tensor) else as_tensor(p, self.weight_ih_l0.data.dtype) for p in parts)
        return [tuple(p[i] for p in parts) if isinstance(state, tuple) else parts[0][i] for i in range(count)]

    def forward(self, x: Any, state: Any = None) -> tuple[Tensor, Any]:
        """(output, final state): output (T, N, D H), or (N, T, D H) with ``batch_first``; the final state
        (num_layers D, N, H), a pair (h_n, c_n) for an LSTM. ``state`` is the initial one (None: zeros). One
        sequence (T, input_size) gives output (T, D H) and states (num_layers D, H), as PyTorch."""
        data = x.data if isinstance(x, Tensor) else np.asarray(x)
        if data.ndim == 2 and data.shape[1] == self.input_size:
            return self._unbatched(x, state)
        if data.ndim != 3 or data.shape[2] != self.input_size:
            order = "(N, T, input_size)" if self.batch_first else "(T, N, input_size)"
            raise ShapeError(f"{type(self).__name__}: input must have shape {order} (or one sequence, (T, "
                             f"input_size)) with input_size = {self.input_size}, got {data.shape}")
        n, steps = (data.shape[0], data.shape[1]) if self.batch_first else (data.shape[1], data.shape[0])
        # A data input is sliced as an array (no graph); a Tensor that needs a gradient through getitem nodes.
        seq = x if isinstance(x, Tensor) and x.requires_grad else data
        inputs = [seq[:, t] if self.batch_first else seq[t] for t in range(steps)]
        initial = self._initial(state, n)
        finals = []
        for k in range(self.num_layers):
            outputs = []
            for d in range(self.directions):
                cell, s = self._cells[k, d], initial[k * self.directions + d]
                hs: list[Any] = [None] * steps
                for t in (reversed(range(steps)) if d else range(steps)):
                    s = cell(inputs[t], s)
                    hs[t] = s[0] if isinstance(s, tuple) else s
                finals.append(s)
                outputs.append(hs)
            inputs = [concatenate([out[t] for out in outputs], axis=1) if self.directions == 2 else outputs[0][t]
                      for t in range(steps)]
            if k < self.num_layers - 1 and self.training and self.dropout > 0.0:
                inputs = [self.drop(h) for h in inputs]
        width = self.directions * self.hidden_size
        at = (n, 1, width) if self.batch_first else (1, n, width)
        output = concatenate([h.reshape(*at) for h in inputs], axis=1 if self.batch_first else 0)
        return output, self._stack(finals, n)

    def _unbatched(self, x: Any, state: Any) -> tuple[Tensor, Any]:
        """One sequence (T, input_size) and states (num_layers D, H), as PyTorch allows: run as a batch of one,
        then drop the batch axis again."""
        dtype = self.weight_ih_l0.data.dtype
        x = x if isinstance(x, Tensor) else as_tensor(np.asarray(x, dtype=dtype))
        steps, width = x.data.shape[0], self.directions * self.hidden_size
        count = self.num_layers * self.directions

        def batch_of_one(s: Any) -> Tensor:
            s = s if isinstance(s, Tensor) else as_tensor(np.asarray(s, dtype=dtype))
            if s.data.shape != (count, self.hidden_size):
                raise ShapeError(f"{type(self).__name__}: for one sequence the initial state must have shape "
                                 f"(num_layers * directions, hidden_size) = {(count, self.hidden_size)}, got "
                                 f"{s.data.shape}")
            return s.reshape(count, 1, self.hidden_size)
        if state is not None:
            state = tuple(map(batch_of_one, state)) if isinstance(state, tuple) else batch_of_one(state)
        output, final = self.forward(x.reshape(1, steps, -1) if self.batch_first else x.reshape(steps, 1, -1), state)
        if isinstance(final, tuple):
            final = tuple(f.reshape(count, self.hidden_size) for f in final)
        else:
            final = final.reshape(count, self.hidden_size)
        return output.reshape(steps, width), final

    def _stack(self, finals: list[Any], n: int) -> Any:
        """The last states of every (layer, direction) as one (num_layers D, N, H) tensor (a pair for LSTM)."""
        def stacked(hs: list[Tensor]) -> Tensor:
            return concatenate([h.reshape(1, n, self.hidden_size) for h in hs], axis=0)
        if isinstance(finals[0], tuple):
            return stacked([s[0] for s in finals]), stacked([s[1] for s in finals])
        return stacked(finals)

    def extra_repr(self) -> str:
        shown = f"{self.input_size}, {self.hidden_size}"
        for key, default in (("num_layers", 1), ("bias", True), ("batch_first", False), ("dropout", 0.0),
                             ("bidirectional", False)):
            if getattr(self, key) != default:
                shown += f", {key}={getattr(self, key)}"
        return shown


class RNN(_Recurrent):
    """PyTorch's ``nn.RNN``: Elman layers h_t = act(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh), act tanh or any
    one-input op-table row (``nonlinearity``), stacked ``num_layers`` deep, optionally bidirectional.

    ``rnn(x, h0) -> (output, h_n)``: x (T, N, input_size), or (N, T, input_size) with ``batch_first=True``.
    ``RNN(cell, return_sequences=False)``, given a cell, is the older unroller and builds an ``Unroll``.

    >>> rnn = RNN(3, 5, num_layers=2, bidirectional=True, rng=0)
    >>> out, h_n = rnn(np.ones((7, 2, 3), np.float32)); out.shape, h_n.shape
    ((7, 2, 10), (4, 2, 5))
    """

    cell_type = RNNCell

    def __new__(cls, *args: Any, **kw: Any) -> Any:
        if (args and isinstance(args[0], _Cell)) or "cell" in kw:  # the older RNN(cell, return_sequences)
            return Unroll(*args, **kw)
        return super().__new__(cls)

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, nonlinearity: str = "tanh",
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 *, dtype: Any = np.float32, rng: Any = None) -> None:
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         dtype=dtype, rng=rng, nonlinearity=nonlinearity)
        self.nonlinearity = nonlinearity

    def extra_repr(self) -> str:
        return super().extra_repr() + ("" if self.nonlinearity == "tanh" else f", nonlinearity={self.nonlinearity!r}")


class LSTM(_Recurrent):
    """PyTorch's ``nn.LSTM``: LSTMCell layers stacked ``num_layers`` deep, optionally bidirectional.

    ``lstm(x, (h0, c0)) -> (output, (h_n, c_n))``: x (T, N, input_size), or (N, T, input_size) with
    ``batch_first=True``; output holds every step's top-layer h (both directions side by side).

    >>> lstm = LSTM(3, 4, batch_first=True, rng=0)
    >>> out, (h_n, c_n) = lstm(np.ones((2, 6, 3), np.float32)); out.shape, h_n.shape, c_n.shape
    ((2, 6, 4), (1, 2, 4), (1, 2, 4))
    """

    cell_type = LSTMCell


class GRU(_Recurrent):
    """PyTorch's ``nn.GRU``: GRUCell layers stacked ``num_layers`` deep, optionally bidirectional.

    ``gru(x, h0) -> (output, h_n)``: x (T, N, input_size), or (N, T, input_size) with ``batch_first=True``.

    >>> out, h_n = GRU(3, 4, num_layers=3, rng=0)(np.ones((6, 2, 3), np.float32)); out.shape, h_n.shape
    ((6, 2, 4), (3, 2, 4))
    """

    cell_type = GRUCell


# ---------------------------------------------------------------------------------------------------------
# Containers, lookup, normalisation and channel dropout with PyTorch's names
# ---------------------------------------------------------------------------------------------------------

__all__ += ["Identity", "ModuleList", "Embedding", "LayerNorm", "GroupNorm", "Dropout2d"]


class Identity(Module):
    """y = x: a placeholder layer (PyTorch's ``nn.Identity``; its arguments are accepted and ignored).

    >>> x = Tensor([1.0]); Identity(54, unused="argument")(x) is x
    True
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__()

    def forward(self, x: Any) -> Any:
        """x itself."""
        return x


class ModuleList(Module):
    """A list of modules whose parameters belong to the holder (named "0", "1", ...): index, iterate, append.

    Like PyTorch's it has no forward of its own; the holder's forward calls its modules.

    >>> blocks = ModuleList([Linear(2, 2, rng=0)]); blocks.append(Tanh()); blocks.append(Linear(2, 1, rng=1))
    ModuleList(...)
    >>> len(blocks), [name for name, _ in blocks.named_parameters()]
    (3, ['0.weight', '0.bias', '2.weight', '2.bias'])
    """

    def __init__(self, modules: Any = None) -> None:
        super().__init__()
        self._modules: list[Module] = []
        self.extend(() if modules is None else modules)

    @staticmethod
    def _check(module: Any, where: str) -> Module:
        if not isinstance(module, Module):
            raise TypeError(f"ModuleList: {where} is {type(module).__name__}, not a Module")
        return module

    def named_children(self) -> Iterator[tuple[str, Module]]:
        """("0", first module), ("1", second module), ..."""
        for i, module in enumerate(self._modules):
            yield str(i), module

    def append(self, module: Module) -> ModuleList:
        """Add a module at the end; returns the list, as PyTorch's."""
        self._modules.append(self._check(module, f"item {len(self._modules)}"))
        return self

    def extend(self, modules: Any) -> ModuleList:
        """Add every module of an iterable at the end."""
        for module in modules:
            self.append(module)
        return self

    def insert(self, index: int, module: Module) -> None:
        """Put a module before position ``index``."""
        self._modules.insert(index, self._check(module, "the inserted item"))

    def forward(self, *args: Any) -> Any:
        """Refused: a ModuleList holds modules; call them (``for m in blocks: x = m(x)``) or use Sequential."""
        raise TypeError("ModuleList has no forward: call its modules in your own forward, or use Sequential")

    def __getitem__(self, i: int | slice) -> Any:
        if isinstance(i, slice):
            return ModuleList(self._modules[i])
        return self._modules[i]

    def __setitem__(self, i: int, module: Module) -> None:
        self._modules[i] = self._check(module, f"item {i}")

    def __delitem__(self, i: int | slice) -> None:
        del self._modules[i]

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(self._modules)


class Embedding(Module):
    """A lookup table: integer ids of any shape (...) -> vectors (..., embedding_dim), rows of ``weight``.

    ``weight`` (num_embeddings, embedding_dim) starts as N(0, 1), PyTorch's default; ``padding_idx`` names an id
    whose row starts at zero and never receives a gradient (``functional.embedding``, one node).

    >>> emb = Embedding(10, 3, padding_idx=0, rng=0); y = emb(np.array([[0, 4, 4]])); y.shape
    (1, 3, 3)
    >>> y.sum().backward(); emb.weight.grad[[0, 4]].tolist()
    [[0.0, 0.0, 0.0], [2.0, 2.0, 2.0]]
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, padding_idx: int | None = None, *,
                 dtype: Any = np.float32, rng: Any = None) -> None:
        super().__init__()
        self.num_embeddings, self.embedding_dim = int(num_embeddings), int(embedding_dim)
        if self.num_embeddings < 1 or self.embedding_dim < 1:
            raise ValueError(f"Embedding: sizes must be >= 1, got {num_embeddings!r}, {embedding_dim!r}")
        if padding_idx is not None:
            if not -self.num_embeddings <= padding_idx < self.num_embeddings:
                raise ValueError(f"Embedding: padding_idx must be within num_embeddings = {self.num_embeddings}, "
                                 f"got {padding_idx!r}")
            padding_idx = int(padding_idx) % self.num_embeddings  # -1 is the last row, as PyTorch
        self.padding_idx = padding_idx
        weight = _init.make_rng(rng).standard_normal((self.num_embeddings, self.embedding_dim)).astype(dtype)
        if padding_idx is not None:
            weight[padding_idx] = 0.0
        self.weight = Tensor(weight, label="weight")

    def forward(self, indices: Any) -> Tensor:
        """weight[indices]."""
        return F.embedding(indices, self.weight, self.padding_idx)

    def extra_repr(self) -> str:
        pad = "" if self.padding_idx is None else f", padding_idx={self.padding_idx}"
        return f"{self.num_embeddings}, {self.embedding_dim}{pad}"


def _affine_params(layer: Module, shape: tuple[int, ...], affine: bool, dtype: Any) -> None:
    """gamma (``weight``, ones) and beta (``bias``, zeros) of ``shape``; without ``affine`` they are constants
    of the node (1 and 0), not parameters, as batch norm's."""
    layer.weight = Tensor(np.ones(shape, dtype=dtype), label="weight", requires_grad=affine)
    layer.bias = Tensor(np.zeros(shape, dtype=dtype), label="bias", requires_grad=affine)


class LayerNorm(Module):
    """Normalise each example over its last axes (``normalized_shape``), then y = gamma xhat + beta:
    xhat = (x - mean) / sqrt(var + eps), mean and biased variance over those axes (Ba, Kiros & Hinton 2016).

    Unlike batch norm, no statistics cross the batch, so training and evaluation compute the same thing.
    ``elementwise_affine=False`` leaves gamma and beta out. One ``normalize`` node (``functional.normalize``).

    >>> ln = LayerNorm(4); ln(Tensor(np.array([[1.0, 2.0, 3.0, 4.0]], np.float32))).data.astype(float).round(4).tolist()
    [[-1.3416, -0.4472, 0.4472, 1.3416]]
    """

    def __init__(self, normalized_shape: int | tuple[int, ...], eps: float = 1e-5, elementwise_affine: bool = True,
                 *, dtype: Any = np.float32) -> None:
        super().__init__()
        shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
        if not shape or not all(isinstance(n, (int, np.integer)) and n >= 1 for n in shape):
            raise ValueError(f"LayerNorm: normalized_shape must be sizes >= 1, got {normalized_shape!r}")
        self.normalized_shape, self.eps = tuple(int(n) for n in shape), F.positive_eps("LayerNorm", eps)
        self.elementwise_affine = bool(elementwise_affine)
        _affine_params(self, self.normalized_shape, self.elementwise_affine, dtype)

    def forward(self, x: Any) -> Tensor:
        """gamma (x - mean) / sqrt(var + eps) + beta over the last len(normalized_shape) axes."""
        x = x if isinstance(x, Tensor) else as_tensor(x)
        k = len(self.normalized_shape)
        if x.data.shape[x.data.ndim - k:] != self.normalized_shape:
            raise ShapeError(f"LayerNorm: input of shape {x.data.shape} does not end in normalized_shape "
                             f"{self.normalized_shape}")
        return F.normalize(x, self.weight, self.bias, tuple(range(x.data.ndim - k, x.data.ndim)), self.eps)

    def extra_repr(self) -> str:
        return f"{self.normalized_shape}, eps={self.eps:g}, elementwise_affine={self.elementwise_affine}"


class GroupNorm(Module):
    """Split the C channels of (N, C, ...) input into ``num_groups`` groups and normalise each example's group
    over its channels and positions (Wu & He 2018), then y = gamma xhat + beta per channel.

    ``num_groups=1`` normalises each example as a whole; ``num_groups=C`` each channel on its own.

    >>> x = Tensor(np.arange(8.0, dtype=np.float32).reshape(1, 4, 2))   # groups: channels 0-1 and 2-3
    >>> GroupNorm(2, 4)(x).data[0].astype(float).round(3).tolist()
    [[-1.342, -0.447], [0.447, 1.342], [-1.342, -0.447], [0.447, 1.342]]
    """

    def __init__(self, num_groups: int, num_channels: int, eps: float = 1e-5, affine: bool = True, *,
                 dtype: Any = np.float32) -> None:
        super().__init__()
        self.num_groups, self.num_channels = int(num_groups), int(num_channels)
        if self.num_groups < 1 or self.num_channels < 1 or self.num_channels % self.num_groups:
            raise ValueError(f"GroupNorm: num_channels ({num_channels!r}) must be a positive multiple of "
                             f"num_groups ({num_groups!r})")
        self.eps, self.affine = F.positive_eps("GroupNorm", eps), bool(affine)
        _affine_params(self, (self.num_channels,), self.affine, dtype)

    def forward(self, x: Any) -> Tensor:
        """Normalise per (example, group), then scale and shift per channel."""
        x = x if isinstance(x, Tensor) else as_tensor(x)
        shape = x.data.shape
        if len(shape) < 2 or shape[1] != self.num_channels:
            raise ShapeError(f"GroupNorm: input must have shape (N, {self.num_channels}, ...), got {shape}")
        # (N, C, ...) -> (N, groups, C / groups, positions): the statistics are over the last two axes, and
        # gamma, beta (C,) -> (groups, C / groups, 1) line up with the channels they belong to.
        per_group = self.num_channels // self.num_groups
        grouped = x.reshape(shape[0], self.num_groups, per_group, -1)
        gamma, beta = (p.reshape(self.num_groups, per_group, 1) for p in (self.weight, self.bias))
        return F.normalize(grouped, gamma, beta, (2, 3), self.eps).reshape(*shape)

    def extra_repr(self) -> str:
        return f"{self.num_groups}, {self.num_channels}, eps={self.eps:g}, affine={self.affine}"


class Dropout2d(Dropout):
    """Channel dropout: in training each whole channel of (N, C, H, W) input (or (C, H, W)) is zeroed with
    probability p and the others scaled by 1 / (1 - p), as PyTorch's ``nn.Dropout2d``; evaluation is y = x.

    Neighbouring pixels of a feature map are strongly correlated, so dropping single pixels hardly regularises
    a convolution; dropping whole maps does (Tompson et al. 2015).

    >>> y = Dropout2d(0.5, rng=0)(Tensor(np.ones((2, 8, 3, 3)))).data   # each map all 0 or all 2
    >>> sorted({tuple(set(y[n, c].ravel().tolist())) for n in range(2) for c in range(8)})
    [(0.0,), (2.0,)]
    """

    def forward(self, x: Tensor) -> Tensor:
        """x times one mask value per channel (the last two axes share it)."""
        x = x if isinstance(x, Tensor) else as_tensor(x)
        if x.data.ndim not in (3, 4):
            raise ShapeError(f"Dropout2d: input must have shape (N, C, H, W) or (C, H, W), got {x.data.shape}")
        return super().forward(x)

    def _mask_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """One draw per (example, channel), shared by the channel's H x W entries."""
        return shape[:-2] + (1, 1)
