"""A two-way bridge to PyTorch, the way out when a model outgrows this engine: ``to_torch(module)`` builds the
equivalent ``torch.nn`` module with the same weights, ``load_torch_state_dict(module, state)`` copies a PyTorch
state dict back. PyTorch is an optional extra (``pip install microgradx[torch]``), imported only when needed.

Every difference between the two libraries is mapped once, in the table of ``_Kind`` records below:
constructor arguments, parameter names (``PReLU.slope`` is PyTorch's ``weight``, an unrolled cell's
``cell.weight_ih`` is ``weight_ih_l0``), and state PyTorch keeps but microgradx does not (BatchNorm's
``num_batches_tracked``). A module with no PyTorch equivalent is refused with a ``MicrogradxError``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import nn
from .ops import MicrogradxError

__all__ = ["to_torch", "load_torch_state_dict", "torch_names", "TorchMissingError"]

_INSTALL = "pip install 'microgradx[torch]'"


class TorchMissingError(MicrogradxError, ImportError):
    """PyTorch is not installed; the bridge needs it (``pip install 'microgradx[torch]'``)."""


def _torch() -> Any:
    """The ``torch`` package, imported on first use so that ``import microgradx`` never loads it."""
    try:
        return importlib.import_module("torch")
    except ImportError as e:
        raise TorchMissingError(f"the PyTorch bridge needs PyTorch, which is not installed: {_INSTALL}") from e


# ---------------------------------------------------------------------------------------------------------
# The table: one record per microgradx module class with a PyTorch equivalent
# ---------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Kind:
    """How one microgradx module class maps to PyTorch.

    ``check(module)`` raises a ``MicrogradxError`` for settings PyTorch cannot express (it needs no PyTorch, so
    ``torch_names`` and ``load_torch_state_dict`` refuse the same models ``to_torch`` does).
    ``build(module, torch, children)`` returns the torch module, given the already converted children (in
    ``named_children`` order). ``rename`` maps a microgradx state name of this module (its own or a child's,
    for modules whose children PyTorch does not see) to PyTorch's; unnamed ones are kept. ``torch_only`` names
    state PyTorch keeps and microgradx has no use for (accepted and ignored when loading). ``leaf`` modules own
    all the state below them, children included (their names are all in ``rename``).
    """

    build: Callable[[Any, Any, list[Any]], Any]
    check: Callable[[Any], Any] = lambda module: None
    rename: Mapping[str, str] = field(default_factory=dict)
    torch_only: tuple[str, ...] = ()
    leaf: bool = False


def _attr(module: Any, *names: str) -> Any:
    """The first of ``names`` the module has (constructor spellings: ``kernel_size`` or the older ``k``)."""
    for name in names:
        if hasattr(module, name):
            return getattr(module, name)
    raise MicrogradxError(f"torch_bridge: {type(module).__name__} has none of the attributes {names}")


def _pair_or_int(v: Any) -> Any:
    return tuple(v) if isinstance(v, (list, tuple)) else v


def _conv_options(m: Any) -> dict[str, Any]:
    """The keyword arguments of torch.nn.Conv1d / Conv2d for a microgradx convolution (the same names)."""
    return {"kernel_size": _pair_or_int(m.kernel_size), "stride": _pair_or_int(m.stride),
            "padding": _pair_or_int(m.padding), "dilation": _pair_or_int(m.dilation), "groups": m.groups,
            "bias": m.bias is not None, "padding_mode": m.padding_mode}


def _refuse(module: Any, why: str) -> MicrogradxError:
    return MicrogradxError(f"torch_bridge: {_describe(module)} has no PyTorch equivalent: {why}")


def _describe(module: Any) -> str:
    return f"{type(module).__name__}({module.extra_repr()})" if isinstance(module, nn.Module) else repr(module)


# One-input op-table rows with a torch.nn layer: row name -> (layer, its keyword given the row's parameter).
_ACTIVATIONS: dict[str, tuple[str, str | None]] = {
    "relu": ("ReLU", None), "tanh": ("Tanh", None), "swish": ("SiLU", None), "softsign": ("Softsign", None),
    "hard_tanh": ("Hardtanh", None), "leaky_relu": ("LeakyReLU", nn.TORCH_SPELLINGS["leaky_relu"]),
    "elu": ("ELU", "alpha"), "sigmoid": ("Sigmoid", None), "linear": ("Identity", None), "gelu": ("GELU", None),
    "gelu_tanh": ("GELU", None), "softplus": ("Softplus", None),
}
# NOTE: the gelu_tanh row is PyTorch's GELU(approximate="tanh"). PyTorch's softplus returns
# x itself above `threshold` (default 20: off by log(1 + e^-20) = 2e-9); at 40 the skipped term e^-40 = 4e-18 is
# below float64 rounding, and e^40 cannot overflow.
_FIXED = {"gelu_tanh": {"approximate": "tanh"}, "softplus": {"beta": 1.0, "threshold": 40.0}}


def _activation(module: nn.Activation) -> tuple[str, dict[str, Any]]:
    """The torch.nn layer name and keyword arguments for an activation layer, or a refusal."""
    name, p = module.row.name, module.param
    if name not in _ACTIVATIONS:
        raise _refuse(module, f"PyTorch has no layer for the op-table row {name!r}")
    layer, keyword = _ACTIVATIONS[name]
    if keyword is None and p is not None and p != 1.0:  # sigmoid's slope and linear's factor
        raise _refuse(module, f"torch.nn.{layer} has {module.row.param} = 1, this one {p:g}")
    return layer, {keyword: p} if keyword else dict(_FIXED.get(name, {}))


_CELLS = {nn.RNNCell: "RNN", nn.LSTMCell: "LSTM", nn.GRUCell: "GRU"}


def _recurrent(module: Any, cell: Any) -> tuple[str, dict[str, Any]]:
    """("RNN" | "LSTM" | "GRU", keyword arguments) for a cell (``module`` is the cell or its RNN), or a refusal."""
    kind = _CELLS.get(type(cell))
    if kind is None:
        raise _refuse(module, f"its cell {_describe(cell)} is not one of RNNCell, LSTMCell, GRUCell")
    if kind != "RNN":
        return kind, {}
    if cell.nonlinearity not in ("tanh", "relu"):
        layer = type(module).__name__ if module is cell else "RNN"
        raise _refuse(module, f"torch.nn.{layer} takes tanh or relu, not {cell.nonlinearity!r}")
    return kind, {"nonlinearity": cell.nonlinearity}


def _cell(module: Any, torch: Any, children: list[Any]) -> Any:
    kind, kw = _recurrent(module, module)
    return getattr(torch.nn, f"{kind}Cell")(module.input_size, module.hidden_size, bias=True, **kw)


def _unrolled(module: nn.Unroll, torch: Any, children: list[Any]) -> Any:
    kind, kw = _recurrent(module, module.cell)
    rnn = getattr(torch.nn, kind)(module.cell.input_size, module.cell.hidden_size, batch_first=True, **kw)
    return _torch_classes()["TorchRNN"](rnn, module.return_sequences)


_CELL_NAMES = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")

_KINDS: dict[type, _Kind] = {
    nn.Linear: _Kind(lambda m, torch, c: torch.nn.Linear(m.in_features, m.out_features, bias=m.bias is not None)),
    nn.Conv2d: _Kind(lambda m, torch, c: torch.nn.Conv2d(m.in_channels, m.out_channels, **_conv_options(m))),
    nn.Conv1d: _Kind(lambda m, torch, c: torch.nn.Conv1d(m.in_channels, m.out_channels, **_conv_options(m))),
    nn.MaxPool2d: _Kind(lambda m, torch, c: torch.nn.MaxPool2d(
        _pair_or_int(_attr(m, "kernel_size", "k")), stride=_pair_or_int(m.stride), padding=_pair_or_int(m.padding),
        dilation=_pair_or_int(m.dilation), ceil_mode=m.ceil_mode)),
    nn.AvgPool2d: _Kind(lambda m, torch, c: torch.nn.AvgPool2d(
        _pair_or_int(_attr(m, "kernel_size", "k")), stride=_pair_or_int(m.stride), padding=_pair_or_int(m.padding),
        ceil_mode=m.ceil_mode, count_include_pad=m.count_include_pad, divisor_override=m.divisor_override)),
    nn.AdaptiveAvgPool2d: _Kind(lambda m, torch, c: torch.nn.AdaptiveAvgPool2d(_pair_or_int(m.output_size))),
    # NOTE: PyTorch has no global pooling layer; adaptive pooling to 1 x 1 then flattening is the same mean.
    nn.GlobalAvgPool2d: _Kind(lambda m, torch, c: torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1),
                                                                       torch.nn.Flatten())),
    nn.Flatten: _Kind(lambda m, torch, c: torch.nn.Flatten()),
    # NOTE: both libraries move running statistics by r <- (1 - momentum) r + momentum s, with the unbiased
    # batch variance, so momentum is copied as is. PyTorch also counts batches (used only with momentum=None).
    nn.BatchNorm1d: _Kind(lambda m, torch, c: torch.nn.BatchNorm1d(m.num_features, eps=m.eps, momentum=m.momentum,
                                                                   affine=m.affine),
                          torch_only=("num_batches_tracked",)),
    nn.BatchNorm2d: _Kind(lambda m, torch, c: torch.nn.BatchNorm2d(m.num_features, eps=m.eps, momentum=m.momentum,
                                                                   affine=m.affine),
                          torch_only=("num_batches_tracked",)),
    nn.Dropout: _Kind(lambda m, torch, c: torch.nn.Dropout(m.p)),
    nn.Activation: _Kind(lambda m, torch, c: getattr(torch.nn, _activation(m)[0])(**_activation(m)[1]),
                         check=_activation),
    # NOTE: the slope is called weight in PyTorch; both broadcast it over axis 1 of (N, C) input.
    nn.PReLU: _Kind(lambda m, torch, c: torch.nn.PReLU(num_parameters=m.slope.data.shape[0]),
                    rename={"slope": "weight"}),
    nn.Softmax: _Kind(lambda m, torch, c: torch.nn.Softmax(dim=m.axis)),
    nn.LogSoftmax: _Kind(lambda m, torch, c: torch.nn.LogSoftmax(dim=m.axis)),
    nn.Sequential: _Kind(lambda m, torch, c: torch.nn.Sequential(*c)),
    nn.Residual: _Kind(lambda m, torch, c: _torch_classes()["TorchResidual"](c[0])),
    nn.RNNCell: _Kind(_cell, check=lambda m: _recurrent(m, m)),
    nn.LSTMCell: _Kind(_cell, check=lambda m: _recurrent(m, m)),
    nn.GRUCell: _Kind(_cell, check=lambda m: _recurrent(m, m)),
    # NOTE: PyTorch's multi-step layers name the first layer's weights weight_ih_l0, ...; the wrapper keeps
    # them under .rnn, and returns what microgradx's Unroll returns (not PyTorch's (output, state) pair).
    nn.Unroll: _Kind(_unrolled, check=lambda m: _recurrent(m, m.cell),
                  rename={f"cell.{n}": f"rnn.{n}_l0" for n in _CELL_NAMES}, leaf=True),
}


def _stacked(module: Any, torch: Any, children: list[Any]) -> Any:
    """torch.nn.RNN, LSTM or GRU with the same arguments (the parameter names are PyTorch's already)."""
    kw = {"nonlinearity": module.nonlinearity} if isinstance(module, nn.RNN) else {}
    return getattr(torch.nn, type(module).__name__)(
        module.input_size, module.hidden_size, num_layers=module.num_layers, bias=module.bias,
        batch_first=module.batch_first, dropout=module.dropout, bidirectional=module.bidirectional, **kw)


def _stacked_rnn_check(module: nn.RNN) -> None:
    if module.nonlinearity not in ("tanh", "relu"):
        raise _refuse(module, f"torch.nn.RNN takes tanh or relu, not {module.nonlinearity!r}")


_KINDS.update({
    nn.Identity: _Kind(lambda m, torch, c: torch.nn.Identity()),
    nn.ModuleList: _Kind(lambda m, torch, c: torch.nn.ModuleList(c)),
    nn.Embedding: _Kind(lambda m, torch, c: torch.nn.Embedding(m.num_embeddings, m.embedding_dim,
                                                               padding_idx=m.padding_idx)),
    nn.LayerNorm: _Kind(lambda m, torch, c: torch.nn.LayerNorm(m.normalized_shape, eps=m.eps,
                                                               elementwise_affine=m.elementwise_affine)),
    nn.GroupNorm: _Kind(lambda m, torch, c: torch.nn.GroupNorm(m.num_groups, m.num_channels, eps=m.eps,
                                                               affine=m.affine)),
    nn.Dropout2d: _Kind(lambda m, torch, c: torch.nn.Dropout2d(m.p)),
    # NOTE: the stacked layers already use PyTorch's names (weight_ih_l0, ..._reverse); the Dropout between
    # layers is torch's dropout argument, not a child.
    nn.RNN: _Kind(_stacked, check=_stacked_rnn_check, leaf=True),
    nn.LSTM: _Kind(_stacked, leaf=True),
    nn.GRU: _Kind(_stacked, leaf=True),
})


def _kind(module: Any, where: str) -> _Kind:
    """The table's record for ``module``: found along its class's bases, but only while ``forward`` is the
    recorded class's own (a subclass that computes something else has no known equivalent)."""
    if not isinstance(module, nn.Module):
        raise MicrogradxError(f"torch_bridge: {where or 'the model'} is a {type(module).__name__}, not a microgradx "
                              "nn.Module")
    for cls in type(module).__mro__:
        if cls in _KINDS:
            if type(module).forward is not cls.forward:
                break
            _KINDS[cls].check(module)
            return _KINDS[cls]
    raise MicrogradxError(
        f"torch_bridge: {where or 'the model'}, {_describe(module)}, has no PyTorch equivalent: the bridge converts "
        f"{', '.join(sorted(c.__name__ for c in _KINDS))} and the activations with a torch.nn layer (compose "
        "your layers with Sequential and Residual, or convert the parts one by one)")


# ---------------------------------------------------------------------------------------------------------
# Names: the one walk both directions use
# ---------------------------------------------------------------------------------------------------------

@dataclass
class _Names:
    """microgradx state name -> PyTorch state name, and PyTorch-only names. A sub-module used twice is one
    shared module in PyTorch too, listed under every path: ``aliases`` maps the second path's PyTorch names to
    the first's, ``mx_aliases`` its microgradx names (buffers are listed under every path here as well)."""

    to_torch: dict[str, str] = field(default_factory=dict)
    torch_only: list[str] = field(default_factory=list)
    aliases: dict[str, str] = field(default_factory=dict)
    mx_aliases: dict[str, str] = field(default_factory=dict)
    owners: dict[int, str] = field(default_factory=dict)  # id(array) -> its microgradx name


def _walk(module: Any, mx: str, pt: str, names: _Names, seen: dict[int, tuple[str, str]], where: str) -> None:
    """Fill ``names`` for ``module``, whose state names start with ``mx`` here and ``pt`` in PyTorch."""
    kind = _kind(module, where)
    if id(module) in seen:
        inner = _Names()
        _walk(module, "", "", inner, {}, where)
        first_mx, first_pt = seen[id(module)]
        names.aliases.update({pt + t: first_pt + t for t in (*inner.to_torch.values(), *inner.torch_only)})
        names.mx_aliases.update({mx + m: first_mx + m for m in inner.to_torch})
        return
    seen[id(module)] = (mx, pt)
    children = [] if kind.leaf else list(module.named_children())
    child_prefixes = tuple(f"{name}." for name, _ in children)
    for local, array in module.state_arrays().items():
        if local.startswith(child_prefixes):
            continue
        if id(array) in names.owners:  # one tensor in two different modules: two parameters in PyTorch
            raise MicrogradxError(f"torch_bridge: {mx + local} is the same array as {names.owners[id(array)]} in "
                                  "another module; PyTorch shares whole modules, so share the module instead")
        names.owners[id(array)] = mx + local
        names.to_torch[mx + local] = pt + kind.rename.get(local, local)
    names.torch_only.extend(pt + local for local in kind.torch_only)
    for name, child in children:
        _walk(child, f"{mx}{name}.", f"{pt}{name}.", names, seen, f"{where}.{name}" if where else name)


def _names(module: Any) -> _Names:
    """The name map of ``module``, or a refusal of the first part PyTorch cannot express."""
    names = _Names()
    _walk(module, "", "", names, {}, "")
    return names


def torch_names(module: nn.Module) -> dict[str, str]:
    """{microgradx state name: PyTorch state name} for every parameter and buffer of ``module`` (no PyTorch
    needed).

    >>> names = torch_names(nn.Sequential(nn.Linear(2, 3, rng=0), nn.PReLU(), nn.RNN(nn.GRUCell(3, 2, rng=0))))
    >>> names["1.slope"], names["2.cell.weight_ih"]
    ('1.weight', '2.rnn.weight_ih_l0')
    """
    return dict(_names(module).to_torch)


# ---------------------------------------------------------------------------------------------------------
# microgradx -> PyTorch
# ---------------------------------------------------------------------------------------------------------

_DTYPES = {np.dtype(np.float32): "float32", np.dtype(np.float64): "float64"}


def _build(module: Any, torch: Any, built: dict[int, Any], pairs: list[tuple[Any, Any]], where: str) -> Any:
    if id(module) in built:  # a module used twice stays one (shared) torch module
        return built[id(module)]
    kind = _kind(module, where)
    children = [] if kind.leaf else [_build(child, torch, built, pairs, f"{where}.{name}" if where else name)
                                     for name, child in module.named_children()]
    out = kind.build(module, torch, children)
    built[id(module)] = out
    pairs.append((module, out))
    return out


def to_torch(module: nn.Module) -> Any:
    """The equivalent ``torch.nn`` module: same structure, same weights and buffers (copied, in the parameters'
    dtype), same train/eval mode.

    Example (with PyTorch installed): ``tnet = to_torch(net)``, then ``tnet(torch.from_numpy(x))`` equals
    ``net(x).data`` to rounding, and ``load_torch_state_dict(net, tnet.state_dict())`` brings training back.
    A Residual becomes ``TorchResidual`` and an Unroll ``TorchRNN`` (a batch-first torch.nn.RNN/LSTM/GRU called
    like microgradx's), the two modules PyTorch lacks; everything else becomes a torch.nn layer.
    """
    torch = _torch()
    names = _names(module)  # refuses what cannot be converted before anything is built
    arrays = module.state_arrays()
    dtypes = {a.dtype for a in arrays.values()}
    if len(dtypes) > 1:
        raise MicrogradxError(f"to_torch: the model mixes dtypes {sorted(str(d) for d in dtypes)}; a torch.nn "
                              "module has one (convert the parameters with astype first)")
    dtype = dtypes.pop() if dtypes else np.dtype(np.float32)
    if dtype not in _DTYPES:
        raise MicrogradxError(f"to_torch: parameters of dtype {dtype} have no torch.nn counterpart here; use "
                              "float32 or float64")
    pairs: list[tuple[Any, Any]] = []
    out = _build(module, torch, {}, pairs, "").to(getattr(torch, _DTYPES[dtype]))
    target = out.state_dict()  # tensors sharing storage with the module's parameters and buffers
    expected = set(names.to_torch.values()) | set(names.torch_only) | set(names.aliases)
    if set(target) != expected:
        raise MicrogradxError(f"to_torch: the built module's state {sorted(target)} differs from the mapped names "
                              f"{sorted(expected)}")
    with torch.no_grad():
        for mx_name, pt_name in names.to_torch.items():
            target[pt_name].copy_(torch.from_numpy(np.ascontiguousarray(arrays[mx_name])))
    for mx_module, pt_module in reversed(pairs):  # parents first, so each module ends in its own mode
        pt_module.train(mx_module.training)
    return out


_CLASSES: dict[str, type] = {}


def _torch_classes() -> dict[str, type]:
    """The two torch.nn modules PyTorch lacks, made on first use (they subclass torch.nn.Module, so they can
    only exist once torch is imported); ``microgradx.torch_bridge.TorchResidual`` finds them, so pickling works."""
    if _CLASSES:
        return _CLASSES
    torch = _torch()

    class TorchResidual(torch.nn.Module):
        """x + block(x), like microgradx.nn.Residual."""

        def __init__(self, block: Any) -> None:
            super().__init__()
            self.block = block

        def forward(self, x: Any) -> Any:
            return x + self.block(x)

    class TorchRNN(torch.nn.Module):
        """A batch-first torch.nn.RNN/LSTM/GRU (``.rnn``) called like microgradx.nn.Unroll: ``(N, T, F)`` in, the
        last hidden state ``(N, H)`` out, or every step's ``(N, T, H)`` with ``return_sequences``."""

        def __init__(self, rnn: Any, return_sequences: bool) -> None:
            super().__init__()
            self.rnn, self.return_sequences = rnn, return_sequences

        def forward(self, x: Any, state: Any = None) -> Any:
            if state is not None:  # microgradx's (N, H) states; PyTorch's carry a layer axis
                state = tuple(s.unsqueeze(0) for s in state) if isinstance(state, tuple) else state.unsqueeze(0)
            out, _ = self.rnn(x, state)
            return out if self.return_sequences else out[:, -1]

    for cls in (TorchResidual, TorchRNN):
        cls.__module__ = __name__
        cls.__qualname__ = cls.__name__
        _CLASSES[cls.__name__] = cls
    return _CLASSES


def __getattr__(name: str) -> Any:
    if name in ("TorchResidual", "TorchRNN"):
        return _torch_classes()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ---------------------------------------------------------------------------------------------------------
# PyTorch -> microgradx
# ---------------------------------------------------------------------------------------------------------

def _array(name: str, value: Any) -> np.ndarray:
    """A state-dict entry (a torch tensor or anything array-like) as a NumPy array, without importing torch."""
    try:
        a = np.asarray(value.detach().cpu().numpy() if hasattr(value, "detach") else value)
    except (TypeError, RuntimeError, ValueError) as e:  # bfloat16, a ragged list, ...
        raise MicrogradxError(f"load_torch_state_dict: {name} cannot be read as a NumPy array: {e}") from e
    if a.dtype.kind not in "fiu" or a.dtype == np.float16:
        raise MicrogradxError(f"load_torch_state_dict: {name} has dtype {a.dtype}, not a float32/float64 array")
    return a


def load_torch_state_dict(module: nn.Module, state_dict: Mapping[str, Any] | Any) -> None:
    """Copy a PyTorch state dict (or a torch.nn module's) into ``module``, in place, keeping its dtypes.

    Names follow ``torch_names(module)``; BatchNorm's ``num_batches_tracked`` is accepted and ignored (it is
    absent from microgradx, whose momentum is always a number). Every name and shape is checked, and every
    value must be finite, before anything is copied. PyTorch is not needed when the values are arrays.

    >>> import numpy as np
    >>> from microgradx import nn
    >>> layer = nn.PReLU()
    >>> load_torch_state_dict(layer, {"weight": np.array([0.1])}); layer.slope.data.tolist()
    [0.10000000149011612]
    """
    if not isinstance(state_dict, Mapping) and hasattr(state_dict, "state_dict"):
        state_dict = state_dict.state_dict()
    if not isinstance(state_dict, Mapping):
        raise TypeError(f"load_torch_state_dict: expected a state dict (a mapping of names to tensors), got "
                        f"{type(state_dict).__name__}")
    names = _names(module)
    wanted = set(names.to_torch.values())
    optional = set(names.torch_only) | set(names.aliases)
    missing = sorted(wanted - set(state_dict))
    unexpected = sorted(set(state_dict) - wanted - optional)
    if missing or unexpected:
        raise MicrogradxError(
            f"load_torch_state_dict: the state dict does not fit this {type(module).__name__}: missing {missing}, "
            f"unexpected {unexpected} (the names it expects are torch_names(module).values())")
    params = {name for name, _ in module.named_parameters()}
    targets = module.state_arrays()
    arrays: dict[str, np.ndarray] = {}
    for mx_name, pt_name in names.to_torch.items():
        a = _array(pt_name, state_dict[pt_name])
        if a.shape != targets[mx_name].shape:
            kind = "parameter" if mx_name in params else "buffer"
            raise MicrogradxError(f"load_torch_state_dict: {pt_name} has shape {tuple(a.shape)}, but the {kind} "
                                  f"{mx_name} of {type(module).__name__} has shape {targets[mx_name].shape}")
        if not np.isfinite(a).all():
            raise MicrogradxError(f"load_torch_state_dict: {pt_name} holds non-finite values "
                                  f"(at index {tuple(int(i) for i in np.argwhere(~np.isfinite(a))[0])})")
        arrays[mx_name] = a
    by_torch = {pt: mx for mx, pt in names.to_torch.items()}
    for alias, first in names.aliases.items():
        if alias in state_dict and first in by_torch and not np.array_equal(_array(alias, state_dict[alias]),
                                                                            arrays[by_torch[first]]):
            raise MicrogradxError(f"load_torch_state_dict: {alias} and {first} are one shared module here, but the "
                                  "state dict gives them different values")
    for name in names.torch_only:
        if name in state_dict:
            count = _array(name, state_dict[name])
            if count.shape != () or count.dtype.kind not in "iu" or count < 0:
                raise MicrogradxError(f"load_torch_state_dict: {name} should be a count (an integer >= 0), got "
                                      f"{count!r}")
    for alias, first in names.mx_aliases.items():
        if alias in targets:  # a shared module's buffers, listed under each of its paths
            arrays[alias] = arrays[first]
    module.load_state_dict(arrays)
