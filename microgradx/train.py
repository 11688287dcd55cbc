"""The training loop for ``nn`` modules: ``fit`` (mini-batches, schedules, callbacks, metrics, a progress bar),
``evaluate``, a ``History`` of every epoch and mini-batch, plots of histories, and parameters saved as ``.npz``.
"""

from __future__ import annotations

import functools
import math
import os
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .data import DataLoader
from .ops import MicrogradxError
from .tensor import Tensor

__all__ = ["fit", "evaluate", "in_notebook", "History", "Metric", "METRICS", "save_parameters", "load_parameters",
           "CheckpointError", "plot_histories", "make_optimizer", "rolling_variance", "TrainingInterrupted"]

# ---------------------------------------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Metric:
    """A metric as a per-sample mean: ``per_sample(outputs, targets)`` gives one number per row, the epoch's
    value is ``finish(mean over all rows)``, so it does not depend on how the rows were cut into batches."""

    name: str
    per_sample: Callable[[np.ndarray, np.ndarray], np.ndarray]
    finish: Callable[[float], float] = float


def _predicted_class(out: np.ndarray) -> np.ndarray:
    # (N, C) logits with C >= 2: the arg max; one logit per row (N,) or (N, 1): positive means class 1.
    if out.ndim == 2 and out.shape[1] > 1:
        return out.argmax(axis=1)
    return (out.reshape(len(out)) > 0).astype(np.int64)


def _accuracy(out: np.ndarray, y: np.ndarray) -> np.ndarray:
    return (_predicted_class(out) == y.reshape(len(y))).astype(np.float64)


def _errors(out: np.ndarray, y: np.ndarray) -> np.ndarray:
    y = y.reshape(out.shape) if y.size == out.size else y
    return (out - y).reshape(len(out), -1).astype(np.float64)


METRICS: dict[str, Metric] = {
    "accuracy": Metric("accuracy", _accuracy),
    "mse": Metric("mse", lambda out, y: (_errors(out, y) ** 2).mean(axis=1)),
    "mae": Metric("mae", lambda out, y: np.abs(_errors(out, y)).mean(axis=1)),
    "rmse": Metric("rmse", lambda out, y: (_errors(out, y) ** 2).mean(axis=1), math.sqrt),
}
"""The named metrics: ``accuracy`` (arg max of the logits; one logit per row: positive = class 1), ``mse``,
``mae`` and ``rmse`` (the square root of the mean squared error over all rows, not a mean of batch roots)."""


def _metric(m: str | Metric | Callable[[np.ndarray, np.ndarray], float]) -> Metric:
    if isinstance(m, Metric):
        return m
    if isinstance(m, str):
        if m not in METRICS:
            raise ValueError(f"fit: unknown metric {m!r}; choose one of {sorted(METRICS)} or pass a function")
        return METRICS[m]
    if callable(m):
        # A plain function f(outputs, targets) -> number is averaged over the batches, weighted by their size.
        name = getattr(m, "__name__", type(m).__name__)
        return Metric(name, lambda out, y: np.full(len(out), float(m(out, y))))
    raise TypeError(f"fit: a metric is a name, a Metric or a function f(outputs, targets), got {m!r}")


class _Running:
    """Sums of a loss and of per-sample metric values over one pass, for their means at the end."""

    def __init__(self, metrics: Sequence[Metric]) -> None:
        self.metrics = metrics
        self.n = 0
        self.loss = 0.0
        self.sums = [0.0] * len(metrics)

    def add(self, loss: float, out: np.ndarray, y: np.ndarray) -> None:
        k = len(out)
        self.n += k
        self.loss += loss * k
        for i, m in enumerate(self.metrics):
            self.sums[i] += float(np.sum(m.per_sample(out, y)))

    def result(self, prefix: str = "") -> dict[str, float]:
        logs = {f"{prefix}loss": self.loss / self.n}
        for m, s in zip(self.metrics, self.sums):
            logs[f"{prefix}{m.name}"] = m.finish(s / self.n)
        return logs


# ---------------------------------------------------------------------------------------------------------
# History
# ---------------------------------------------------------------------------------------------------------


def rolling_variance(x: Sequence[float] | np.ndarray, window: int) -> np.ndarray:
    """The variance (ddof = 1, as pandas' ``rolling(window).var()``) of each run of ``window`` consecutive values.

    Blain's Figure 6 plots it over the mini-batch losses to show how noisy each optimizer is.

    >>> rolling_variance([1.0, 2.0, 3.0, 5.0], 2).tolist()
    [0.5, 0.5, 2.0]
    """
    x = np.asarray(x, dtype=np.float64)
    if isinstance(window, bool) or not isinstance(window, int) or window < 2:
        raise ValueError(f"rolling_variance: window must be an integer >= 2, got {window!r}")
    if len(x) < window:
        return np.empty(0)
    runs = np.lib.stride_tricks.sliding_window_view(x, window)
    return runs.var(axis=1, ddof=1)


@dataclass(repr=False)
class History:
    """What ``fit`` recorded: per epoch the training ``loss``, the ``metrics`` (training ones by name, validation
    ones as ``val_<name>``, and ``val_loss``), the ``seconds`` it took and the learning rate ``lr`` it trained
    with; per mini-batch the loss (``batch_loss``, with ``batch_epoch`` the epoch of each).

    >>> h = History(label="sgd"); h.add_epoch({"loss": 0.5, "accuracy": 0.8}, seconds=1.0, lr=0.1)
    >>> h["loss"], h["accuracy"], h.epochs
    ([0.5], [0.8], 1)
    """

    label: str = ""
    loss: list[float] = field(default_factory=list)
    metrics: dict[str, list[float]] = field(default_factory=dict)
    seconds: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    batch_loss: list[float] = field(default_factory=list)
    batch_epoch: list[int] = field(default_factory=list)
    stopped_epoch: int | None = None

    @property
    def epochs(self) -> int:
        """The number of epochs trained."""
        return len(self.loss)

    def add_epoch(self, logs: Mapping[str, float], seconds: float, lr: float) -> None:
        """Append one epoch's logs (``loss`` and any metrics), its duration and its learning rate."""
        self.loss.append(float(logs["loss"]))
        for k, v in logs.items():
            if k != "loss":
                self.metrics.setdefault(k, []).append(float(v))
        self.seconds.append(float(seconds))
        self.lr.append(float(lr))

    def __getitem__(self, name: str) -> list[float]:
        if name in ("loss", "seconds", "lr", "batch_loss"):
            return getattr(self, name)
        if name in self.metrics:
            return self.metrics[name]
        raise KeyError(f"History has no {name!r}; it has loss, seconds, lr, batch_loss and {sorted(self.metrics)}")

    def logs(self, epoch: int = -1) -> dict[str, float]:
        """One epoch's numbers as a dict (default: the last epoch), as callbacks receive them."""
        out = {"loss": self.loss[epoch]}
        out.update({k: v[epoch] for k, v in self.metrics.items()})
        out.update(seconds=self.seconds[epoch], lr=self.lr[epoch])
        return out

    def __repr__(self) -> str:
        if not self.epochs:
            return f"<History {self.label!r}: no epoch yet>"
        last = ", ".join(f"{k} {v:.4g}" for k, v in self.logs().items() if k not in ("seconds", "lr"))
        stop = f", stopped at epoch {self.stopped_epoch + 1}" if self.stopped_epoch is not None else ""
        return (f"<History {self.label!r}: {self.epochs} epochs, loss {self.loss[0]:.4g} -> {self.loss[-1]:.4g}; "
                f"last epoch: {last}{stop}>")

    def _repr_html_(self) -> str:
        # In a notebook: the first and last epochs as a table, then the curves (PNG inline, no file written).
        import base64
        import html
        import io

        if not self.epochs:
            return f"<p>{html.escape(repr(self))}</p>"
        keys = ["loss", *self.metrics, "seconds", "lr"]
        shown = list(range(self.epochs)) if self.epochs <= 6 else [0, 1, 2, -3, -2, -1]
        head = "".join(f"<th>{html.escape(k)}</th>" for k in ["epoch", *keys])
        body = []
        for i, e in enumerate(shown):
            if self.epochs > 6 and i == 3:
                body.append(f"<tr><td colspan='{len(keys) + 1}'>...</td></tr>")
            row = self.logs(e)
            cells = "".join(f"<td>{row[k]:.4g}</td>" for k in keys)
            body.append(f"<tr><td>{e % self.epochs + 1}</td>{cells}</tr>")
        buf = io.BytesIO()
        plot_histories(self).savefig(buf, format="png", dpi=72)
        img = base64.b64encode(buf.getvalue()).decode()
        return (f"<div><p>{html.escape(repr(self))}</p><table><tr>{head}</tr>{''.join(body)}</table>"
                f"<img alt='training curves' src='data:image/png;base64,{img}'/></div>")

    def rolling_variance(self, window: int = 50) -> np.ndarray:
        """The rolling variance of the mini-batch losses over ``window`` batches (see ``rolling_variance``)."""
        return rolling_variance(self.batch_loss, window)

    def to_dict(self, batches: bool = True) -> dict[str, Any]:
        """Plain lists and numbers (for JSON); ``batches=False`` leaves out the per-batch losses."""
        d: dict[str, Any] = {"label": self.label, "epochs": self.epochs, "loss": list(self.loss),
                             "metrics": {k: list(v) for k, v in self.metrics.items()},
                             "seconds": list(self.seconds), "lr": list(self.lr), "stopped_epoch": self.stopped_epoch}
        if batches:
            d.update(batch_loss=list(self.batch_loss), batch_epoch=list(self.batch_epoch))
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> History:
        """The inverse of ``to_dict``."""
        return cls(label=d.get("label", ""), loss=list(d["loss"]),
                   metrics={k: list(v) for k, v in d["metrics"].items()},
                   seconds=list(d["seconds"]), lr=list(d["lr"]), batch_loss=list(d.get("batch_loss", [])),
                   batch_epoch=list(d.get("batch_epoch", [])), stopped_epoch=d.get("stopped_epoch"))


# ---------------------------------------------------------------------------------------------------------
# fit and evaluate
# ---------------------------------------------------------------------------------------------------------


def _loss_fn(loss: str | Callable[..., Tensor]) -> Callable[..., Tensor]:
    if callable(loss):
        return loss
    from . import losses

    if isinstance(loss, str) and loss in losses.LOSSES:
        return getattr(losses, loss)
    raise ValueError(f"fit: unknown loss {loss!r}; pass a function or one of {list(losses.LOSSES)}")


def make_optimizer(name: str, params: Iterable[Any], lr: float | None = None, **options: Any) -> Any:
    """An optimizer of ``microgradx.optim`` by name, case-insensitively (``"adam"``, ``"sgd"``, ``"rmsprop"``...).

    ``lr=None`` keeps the optimizer's default rate (SGD, which has none, gets 0.01, as Keras).

    >>> from microgradx import nn
    >>> make_optimizer("adam", nn.Linear(2, 1, rng=0).parameters()).lr
    0.001
    """
    from . import optim

    classes = {n.lower(): getattr(optim, n) for n in optim.__all__
               if isinstance(getattr(optim, n), type) and n != "Optimizer"}
    cls = classes.get(name.lower())
    if cls is None:
        raise ValueError(f"unknown optimizer {name!r}; choose one of {sorted(classes)}")
    if lr is None and cls is optim.SGD:
        lr = 0.01
    return cls(params, **options) if lr is None else cls(params, lr=lr, **options)


def _param_dtype(model: Any) -> np.dtype | None:
    params = getattr(model, "parameters", None)
    dtypes = {p.data.dtype for p in params()} if callable(params) else set()
    return dtypes.pop() if len(dtypes) == 1 else None


def _arrays(where: str, data: Any, dtype: np.dtype | None) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(data, DataLoader):
        return data.X, data.y
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        raise TypeError(f"{where}: data must be a pair (X, y) or a DataLoader, got {type(data).__name__}")
    X, y = np.asarray(data[0]), np.asarray(data[1])
    if len(X) != len(y):
        raise ValueError(f"{where}: X has {len(X)} samples but y has {len(y)}")
    if len(X) == 0:
        raise ValueError(f"{where}: the data set is empty")
    # NOTE: converted once here rather than per batch inside linear(): float64 data for a float32 model would
    # otherwise be cast on every step.
    if dtype is not None and X.dtype != dtype and X.dtype.kind in "fiub":
        X = X.astype(dtype)
    return X, y


def _targets(out: Tensor, y: np.ndarray) -> np.ndarray:
    # One output per row, (N, 1), against targets of shape (N,): line them up instead of letting (N, 1) - (N,)
    # broadcast to an (N, N) matrix, a classic silent bug in regression.
    if y.ndim == 1 and out.data.ndim == 2 and out.data.shape[1] == 1 and y.dtype.kind == "f":
        return y[:, None]
    return y


def _batches(X: np.ndarray, y: np.ndarray, size: int) -> Iterable[tuple[np.ndarray, np.ndarray]]:
    for start in range(0, len(X), size):
        yield X[start:start + size], y[start:start + size]


def evaluate(model: Any, loss: str | Callable[..., Tensor], data: Any,
             metrics: Sequence[str | Metric | Callable] = (), batch_size: int = 1024) -> dict[str, float]:
    """The mean loss and metrics of ``model`` over ``data`` ((X, y) or a DataLoader), in evaluation mode.

    Dropout is off during the pass; the model goes back to the mode it was in. No graph is kept: the rows
    are run ``batch_size`` at a time and the result is the mean over all rows.

    >>> from microgradx import nn
    >>> net = nn.Linear(1, 1, rng=0); net.weight.data[:] = 2.0; net.bias.data[:] = 0.0
    >>> evaluate(net, "mse", (np.array([[1.0], [2.0]]), np.array([2.0, 5.0])), metrics=["mae"])
    {'loss': 0.5, 'mae': 0.5}
    """
    loss_fn = _loss_fn(loss)
    ms = [_metric(m) for m in metrics]
    X, y = _arrays("evaluate", data, _param_dtype(model))
    was_training = getattr(model, "training", False)
    if hasattr(model, "eval"):
        model.eval()
    try:
        run = _Running(ms)
        for xb, yb in _batches(X, y, max(1, int(batch_size))):
            out = model(xb)
            run.add(loss_fn(out, _targets(out, yb)).item(), out.data, yb)
        return run.result()
    finally:
        if was_training and hasattr(model, "train"):
            model.train()


class _Progress:
    """A tqdm bar over all mini-batches, or nothing: off with ``progress=False`` and, by default, on only on a
    terminal or in a Jupyter kernel (a widget there), so logs and CI output stay clean."""

    def __init__(self, enabled: bool | None, total: int | None, epochs: int) -> None:
        kernel = in_notebook()
        if enabled is None:
            enabled = kernel or sys.stderr.isatty()
        self.bar = None
        self.epochs = epochs
        if enabled:
            self.bar = _tqdm(kernel)(total=total, unit="batch", leave=True, dynamic_ncols=True, file=sys.stderr)

    def epoch(self, epoch: int) -> None:
        if self.bar is not None:
            self.bar.set_description(f"epoch {epoch + 1}/{self.epochs}")

    def batch(self, loss: float) -> None:
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix_str(f"loss {loss:.4g}", refresh=False)

    def logs(self, logs: Mapping[str, float]) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(", ".join(f"{k} {v:.4g}" for k, v in logs.items() if k != "seconds"))

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def in_notebook() -> bool:
    """True inside a Jupyter kernel (an IPython shell with a kernel attached), where rich output renders.

    >>> in_notebook()
    False
    """
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None and hasattr(ipython, "get_ipython") else None
    return shell is not None and getattr(shell, "kernel", None) is not None


def _tqdm(kernel: bool) -> Any:
    # NOTE: tqdm.auto picks the widget bar in a kernel but, without ipywidgets, falls back to text with a
    # TqdmWarning; the text bar is chosen here instead, quietly, and the widget whenever it can render.
    if kernel:
        try:
            import ipywidgets  # noqa: F401
            from tqdm.notebook import tqdm as bar
            return bar
        except ImportError:
            pass
    from tqdm.std import tqdm as text_bar
    return text_bar


def _call(cb: Any, method: str, *args: Any) -> Any:
    f = getattr(cb, method, None)
    return f(*args) if f is not None else None


def fit(model: Any, loss: str | Callable[..., Tensor], optimizer: Any, data: Any, epochs: int = 10,
        batch_size: int | None = 32, *, schedule: Any = None, callbacks: Sequence[Any] = (),
        metrics: Sequence[str | Metric | Callable] = (), validation: Any = None, seed: int | None = None,
        progress: bool | None = None, label: str = "", monitor: str | None = None) -> History:
    """Train ``model`` on ``data`` for ``epochs`` epochs of mini-batches; return the ``History``.

    - ``loss``: a function ``loss(outputs, targets) -> Tensor`` or a name in ``microgradx.losses``
      ("cross_entropy", "mse", ...). ``optimizer``: an optimizer on ``model.parameters()`` (or on parameter
      groups of them), or its name (then built with its default rate by ``make_optimizer``); an ``LBFGS`` is
      stepped with a closure that recomputes the batch's loss (use it full batch: ``batch_size=None``).
    - ``data``: (X, y) arrays, cut into shuffled mini-batches of ``batch_size`` (None = full batch) in an
      order fixed by ``seed``; or a ``DataLoader`` (then ``batch_size`` must be None).
    - ``schedule``: a ``schedules`` object on the optimizer (``ExponentialDecay``, ``StepDecay``, ...), stepped
      at the end of each epoch; ``ReduceLROnPlateau`` gets the ``monitor`` value (default ``val_loss`` when
      there is validation data, else ``loss``); a function ``epoch -> lr`` works too.
    - ``callbacks``: ``EarlyStopping`` objects (their ``update(logs)`` returning True stops training), objects
      with any of ``on_train_begin(history)``, ``on_epoch_end(epoch, logs)`` (True stops),
      ``on_batch_end(batch, loss)``, ``on_train_end(history)``, or functions ``f(epoch, logs)`` (True stops).
    - ``metrics``: names of ``METRICS`` or functions; training values are means over the epoch's batches
      (recorded while the weights change, as Keras does), validation values are computed after the epoch
      with ``evaluate`` on ``validation=(X_val, y_val)`` and logged as ``val_<name>``.
    - ``progress``: a tqdm bar; None (default) shows it only when stderr is a terminal.
    - Ctrl-C raises ``TrainingInterrupted`` (a ``KeyboardInterrupt``) whose ``history`` has the epochs done.

    The model is in training mode while it trains (dropout on) and in evaluation mode for validation; it is
    left in the mode it had before.

    >>> from microgradx import nn, optim
    >>> X = np.linspace(-1, 1, 32)[:, None]; y = 3 * X[:, 0] - 1
    >>> net = nn.Linear(1, 1, rng=0)
    >>> h = fit(net, "mse", optim.SGD(net.parameters(), lr=0.5), (X, y), epochs=40, batch_size=8, seed=0)
    >>> round(h.loss[-1], 6), net.weight.data.round(3).tolist(), len(h.batch_loss)
    (0.0, [[3.0]], 160)
    """
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"fit: epochs must be an integer >= 1, got {epochs!r}")
    loss_fn = _loss_fn(loss)
    if isinstance(optimizer, str):
        optimizer = make_optimizer(optimizer, model.parameters())
    ms = [_metric(m) for m in metrics]
    if isinstance(data, DataLoader):
        if batch_size not in (None, data.batch_size):
            raise ValueError(f"fit: the DataLoader has batch_size {data.batch_size}; leave fit's batch_size as None")
        loader = data
    else:
        X, y = _arrays("fit", data, _param_dtype(model))
        loader = DataLoader(X, y, batch_size, shuffle=True, seed=seed)
    if validation is not None:
        validation = _arrays("fit: validation", validation, _param_dtype(model))
    if schedule is not None and not hasattr(schedule, "step") and callable(schedule):
        from .schedules import ManualSchedule

        schedule = ManualSchedule(optimizer, lrs=schedule)
    monitor = monitor or ("val_loss" if validation is not None else "loss")
    from .optim import LBFGS

    closure_step = isinstance(optimizer, LBFGS)

    history = History(label=label)
    for cb in callbacks:
        if hasattr(cb, "update") and hasattr(cb, "reset"):  # EarlyStopping: a new run starts from scratch
            cb.reset()
        _call(cb, "on_train_begin", history)
    was_training = getattr(model, "training", True)
    bar = _Progress(progress, epochs * len(loader), epochs)
    batch_no = 0
    try:
        for epoch in range(epochs):
            bar.epoch(epoch)
            lr = optimizer.lr
            model.train()
            run = _Running(ms)
            t0 = time.perf_counter()
            for xb, yb in loader:
                optimizer.zero_grad()
                out = model(xb)
                value = loss_fn(out, _targets(out, yb))
                value.backward()
                if closure_step:  # L-BFGS evaluates the batch's loss several times per step
                    optimizer.step(functools.partial(_batch_loss, model, loss_fn, optimizer, xb, yb))
                else:
                    optimizer.step()
                lv = value.item()
                run.add(lv, out.data, yb)
                history.batch_loss.append(lv)
                history.batch_epoch.append(epoch)
                bar.batch(lv)
                for cb in callbacks:
                    _call(cb, "on_batch_end", batch_no, lv)
                batch_no += 1
            logs = run.result()
            if validation is not None:
                logs.update({f"val_{k}": v for k, v in evaluate(model, loss_fn, validation, ms).items()})
            history.add_epoch(logs, time.perf_counter() - t0, lr)
            epoch_logs = history.logs()
            bar.logs(epoch_logs)
            if schedule is not None:
                if _wants_metric(schedule):
                    if monitor not in epoch_logs:
                        raise ValueError(f"fit: the schedule monitors {monitor!r}, which is not among the logs "
                                         f"{sorted(epoch_logs)}")
                    schedule.step(epoch_logs[monitor])
                else:
                    schedule.step()
            if _stop(callbacks, epoch, epoch_logs):
                history.stopped_epoch = epoch
                break
    except KeyboardInterrupt:
        raise TrainingInterrupted(history) from None  # Ctrl-C: the caller still gets the epochs done
    finally:
        bar.close()
        model.train(was_training)
    for cb in callbacks:
        _call(cb, "on_train_end", history)
    return history


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped ``fit``; ``history`` holds every epoch finished before it (and the batches of the
    interrupted one), so a caller can still plot and save them.

    >>> e = TrainingInterrupted(History(label="adam")); e.history.epochs, isinstance(e, KeyboardInterrupt)
    (0, True)
    """

    def __init__(self, history: History) -> None:
        super().__init__(f"training interrupted after {history.epochs} finished epoch"
                         f"{'s' if history.epochs != 1 else ''}")
        self.history = history


def _batch_loss(model: Any, loss_fn: Callable[..., Tensor], optimizer: Any, xb: Any, yb: Any) -> Tensor:
    """The closure a closure-based optimizer (L-BFGS) calls: zero the gradients, the batch's loss, backward."""
    optimizer.zero_grad()
    out = model(xb)
    value = loss_fn(out, _targets(out, yb))
    value.backward()
    return value


def _wants_metric(schedule: Any) -> bool:
    from .schedules import ReduceLROnPlateau

    return isinstance(schedule, ReduceLROnPlateau)


def _stop(callbacks: Sequence[Any], epoch: int, logs: Mapping[str, float]) -> bool:
    stop = False
    for cb in callbacks:  # every callback sees every epoch, even when an earlier one already asked to stop
        if hasattr(cb, "update") and hasattr(cb, "should_stop"):
            stop |= bool(cb.update(logs))
        elif hasattr(cb, "on_epoch_end"):
            stop |= bool(cb.on_epoch_end(epoch, dict(logs)))
        elif callable(cb):
            stop |= bool(cb(epoch, dict(logs)))
    return stop


# ---------------------------------------------------------------------------------------------------------
# Saving and loading parameters
# ---------------------------------------------------------------------------------------------------------


class CheckpointError(MicrogradxError, ValueError):
    """A parameter file that does not fit the model (names, shapes, dtypes) or is not a parameter file."""


def save_parameters(model: Any, path: str | os.PathLike) -> str:
    """Write the model's parameters to an ``.npz`` file, one array per parameter name; return the path.

    Plain numeric arrays only, so ``load_parameters`` reads them back with ``allow_pickle=False``.

    >>> import tempfile, os
    >>> from microgradx import nn
    >>> with tempfile.TemporaryDirectory() as d:
    ...     path = save_parameters(nn.Linear(3, 2, rng=0), os.path.join(d, "layer"))
    ...     os.path.basename(path), sorted(np.load(path, allow_pickle=False).files)
    ('layer.npz', ['bias', 'weight'])
    """
    state = model.state_dict()
    path = os.fspath(path)
    if not path.endswith(".npz"):
        path += ".npz"  # np.savez would add it anyway; return the name that is really written
    np.savez(path, **state)
    return path


def load_parameters(model: Any, path: str | os.PathLike) -> None:
    """Load an ``.npz`` written by ``save_parameters`` into ``model`` (in place), after checking that the
    names and shapes match the model's parameters and buffers exactly. Never unpickles anything.

    >>> import tempfile, os
    >>> from microgradx import nn
    >>> a, b = nn.Linear(3, 2, rng=0), nn.Linear(3, 2, rng=1)
    >>> with tempfile.TemporaryDirectory() as d:
    ...     load_parameters(b, save_parameters(a, os.path.join(d, "a.npz")))
    >>> bool((a.weight.data == b.weight.data).all())
    True
    """
    where = f"load_parameters({os.fspath(path)!r})"
    state = _read_npz(where, path, model.state_arrays())
    try:
        model.load_state_dict(state)  # the one place that matches names, shapes and finiteness
    except (KeyError, ValueError, TypeError) as e:
        raise CheckpointError(f"{where}: {e.args[0] if e.args else e}") from None


# Room for one .npy header (NumPy writes 128 bytes, more for long dtype descriptions) in the unpacked size budget.
_NPY_HEADER_ROOM = 4096


def _read_npz(where: str, path: str | os.PathLike, targets: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The arrays of an .npz, read with every size checked BEFORE anything is unpacked or allocated.

    The zip's directory gives each member's unpacked size: together they may not exceed what the model's arrays
    need in float64 (plus header room), so a small file cannot unpack to gigabytes. Each member's .npy header is
    read on its own first: a dtype that is not numbers (objects would need pickle) or a shape claiming more
    bytes than the member holds is refused before the array is allocated.
    """
    import zipfile
    import zlib

    budget = sum(8 * t.size + _NPY_HEADER_ROOM for t in targets.values())
    try:
        with open(path, "rb") as fh:
            magic = fh.read(6)
    except FileNotFoundError:
        raise CheckpointError(f"{where}: no such file") from None
    except OSError as e:
        raise CheckpointError(f"{where}: cannot read it ({e.strerror or e})") from None
    if magic == b"\x93NUMPY":
        raise CheckpointError(f"{where}: a single .npy array, not an .npz of named parameters "
                              "(write one with save_parameters)")
    state: dict[str, np.ndarray] = {}
    try:
        with zipfile.ZipFile(path) as z:
            infos = z.infolist()
            unpacked = sum(info.file_size for info in infos)
            if unpacked > budget:
                raise CheckpointError(f"{where}: its {len(infos)} members unpack to {unpacked:,} bytes, more than "
                                      f"the {budget:,} the model's {len(targets)} arrays can need; not read")
            for info in infos:
                if not info.filename.endswith(".npy"):
                    raise CheckpointError(f"{where}: not a parameter file: member {info.filename!r} is not an "
                                          ".npy array")
                name = info.filename[:-4]
                with z.open(info) as member:
                    version = np.lib.format.read_magic(member)
                    read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                                   else np.lib.format.read_array_header_2_0)
                    shape, _, dtype = read_header(member)
                if dtype.hasobject or dtype.kind not in "fiu":
                    raise CheckpointError(f"{where}: not a parameter file: {name} holds {dtype} data, not numbers "
                                          "(objects would need pickle, which is never used)")
                if math.prod(shape) * dtype.itemsize > info.file_size:
                    raise CheckpointError(f"{where}: {name} claims shape {shape} ({math.prod(shape):,} elements) "
                                          f"but its member holds {info.file_size:,} bytes: truncated or corrupt")
                with z.open(info) as member:
                    state[name] = np.lib.format.read_array(member, allow_pickle=False)
    except CheckpointError:
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError) as e:
        raise CheckpointError(f"{where}: not a parameter file ({e})") from None
    return state


# ---------------------------------------------------------------------------------------------------------
# Plots
# ---------------------------------------------------------------------------------------------------------

PANELS = ("loss", "metrics", "batch_loss", "rolling_variance", "lr")


def plot_histories(histories: History | Sequence[History], path: str | os.PathLike | None = None,
                   panels: Sequence[str] | None = None, *, window: int = 50, title: str | None = None) -> Any:
    """Plot one history or several side by side (one colour each) into an image file and return the path; with
    no ``path``, return the matplotlib ``Figure`` (Jupyter shows it inline).

    Panels: ``loss`` (training solid, validation dashed, per epoch), ``metrics`` (one panel per metric name,
    training and validation), ``batch_loss`` (every mini-batch's loss), ``rolling_variance`` (of the
    mini-batch loss over ``window`` batches, Blain's Figure 6) and ``lr``. The default is every panel
    except ``lr`` that has data. The format comes from the extension (png, svg, pdf); matplotlib's Agg canvas
    draws it, so no display is needed.

    >>> import tempfile, os
    >>> h = History(label="sgd", batch_loss=[1.0, 0.8, 0.9, 0.5])
    >>> h.add_epoch({"loss": 0.9}, seconds=0.1, lr=0.1); h.add_epoch({"loss": 0.7}, seconds=0.1, lr=0.1)
    >>> with tempfile.TemporaryDirectory() as d:
    ...     os.path.getsize(plot_histories(h, os.path.join(d, "h.png"), window=2)) > 0
    True
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    hs = [histories] if isinstance(histories, History) else list(histories)
    if not hs or not all(isinstance(h, History) for h in hs):
        raise TypeError("plot_histories: give a History or a list of them")
    chosen = list(panels) if panels is not None else [p for p in PANELS if p != "lr"]
    unknown = [p for p in chosen if p not in PANELS]
    if unknown:
        raise ValueError(f"plot_histories: unknown panel(s) {unknown}; choose from {list(PANELS)}")
    names = sorted({k[4:] if k.startswith("val_") else k for h in hs for k in h.metrics} - {"loss"})
    boxes: list[tuple[str, str | None]] = []
    for p in chosen:
        if p == "metrics":
            boxes += [("metric", n) for n in names]
            continue
        needed = {"batch_loss": 1, "rolling_variance": window}.get(p, 0)
        if any(len(h.batch_loss) >= needed for h in hs):
            boxes.append((p, None))
        elif panels is not None:  # asked for by name: say why it is missing rather than leave it out
            raise ValueError(f"plot_histories: no history has {needed} mini-batch losses for the {p!r} panel")
    if not boxes:
        raise ValueError("plot_histories: nothing to plot")
    cols = 3 if len(boxes) == 3 else min(len(boxes), 2)
    rows = -(-len(boxes) // cols)
    fig = Figure(figsize=((6.0 if cols < 3 else 5.2) * cols, 3.6 * rows), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    colours = [f"C{i % 10}" for i in range(len(hs))]
    for ax, (kind, name) in zip(axes, boxes):
        drawn: list[np.ndarray] = []
        for h, c in zip(hs, colours):
            tag = h.label or "run"
            ep = np.arange(1, h.epochs + 1)
            if kind in ("loss", "metric"):
                key = "loss" if kind == "loss" else name
                train = h.loss if kind == "loss" else h.metrics.get(key)
                if train:
                    ax.plot(ep, train, color=c, marker="o", ms=3, label=f"{tag} train")
                if h.metrics.get(f"val_{key}"):
                    ax.plot(ep, h.metrics[f"val_{key}"], color=c, ls="--", marker="s", ms=3, label=f"{tag} val")
                ax.set(xlabel="epoch", ylabel=key, title=key)
            elif kind == "batch_loss":
                drawn.append(np.asarray(h.batch_loss))
                ax.plot(np.arange(1, len(h.batch_loss) + 1), h.batch_loss, color=c, lw=0.6, alpha=0.8, label=tag)
                ax.set(xlabel="mini-batch", ylabel="loss", title="mini-batch loss")
            elif kind == "rolling_variance":
                rv = h.rolling_variance(window)
                drawn.append(rv)
                ax.plot(np.arange(window, window + len(rv)), rv, color=c, lw=1.0, label=tag)
                ax.set(xlabel="mini-batch", ylabel="variance",
                       title=f"rolling variance of the mini-batch loss ({window} batches)")
            else:
                ax.step(ep, h.lr, where="post", color=c, label=tag)
                ax.set(xlabel="epoch", ylabel="learning rate", title="learning rate")
        # NOTE: mini-batch losses of different optimizers differ by orders of magnitude: a log axis shows them all.
        if drawn and all(len(d) and d.min() > 0 for d in drawn):
            ax.set_yscale("log")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
    for ax in axes[len(boxes):]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title)
    if path is None:
        return fig
    path = os.fspath(path)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig.savefig(path, dpi=100)
    return path


# ---------------------------------------------------------------------------------------------------------
# Ready-made experiments (the ``microgradx train`` command)
# ---------------------------------------------------------------------------------------------------------

ACTIVATIONS = ("relu", "leaky_relu", "elu", "gelu", "swish", "softplus", "tanh", "sigmoid", "softsign", "arctan",
               "hard_tanh")
_XAVIER = {"tanh", "sigmoid", "softsign", "arctan", "hard_tanh"}  # saturating: Glorot's variance (Gerald's lecture)


def mlp(sizes: Sequence[int], activation: str = "relu", rng: Any = None) -> Any:
    """A multilayer perceptron: ``Linear`` layers of ``sizes`` with ``activation`` between them (not after the
    last), He-initialised for ReLU-like activations and Xavier/Glorot for saturating ones (Gerald's lecture).

    >>> mlp([64, 128, 10], rng=0)
    Sequential(
      (0): Linear(64, 128, bias=True)
      (1): ReLU()
      (2): Linear(128, 10, bias=True)
    )
    """
    from . import nn

    if activation not in ACTIVATIONS:
        raise ValueError(f"mlp: unknown activation {activation!r}; choose one of {list(ACTIVATIONS)}")
    if len(sizes) < 2 or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in sizes):
        raise ValueError(f"mlp: sizes must be at least two positive integers, got {list(sizes)}")
    from .init import make_rng

    rng = make_rng(rng)
    init = "xavier_uniform" if activation in _XAVIER else "he_uniform"
    named = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}
    layers: list[Any] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b, init=init, rng=rng))
        if i < len(sizes) - 2:
            layers.append(named[activation]() if activation in named else nn.Activation(activation))
    return nn.Sequential(*layers)


@dataclass(frozen=True)
class Recipe:
    """A data set's defaults for ``microgradx train``: the task, optimizer, learning rate, epochs and batch size."""

    task: str
    optimizer: str
    lr: float
    epochs: int
    batch_size: int
    about: str


RECIPES: dict[str, Recipe] = {
    "digits": Recipe("classification", "adam", 3e-3, 30, 32,
                     "scikit-learn's 8x8 digits; pixels / 16; 25% stratified test split"),
    "moons": Recipe("classification", "adam", 1e-2, 50, 32, "make_moons(1000, noise 0.2); standardised; 25% test"),
    "spirals": Recipe("classification", "adam", 1e-2, 100, 32,
                      "make_spirals(900, 3 classes, noise 0.2); standardised; 25% stratified test"),
    "diabetes": Recipe("regression", "adam", 1e-3, 100, 32,
                       "scikit-learn's diabetes; features and target standardised; 25% test"),
    "housing": Recipe("regression", "adam", 1e-3, 10, 32,
                      "synthetic California-housing stand-in (make_housing, 20640 rows); features standardised, "
                      "target in $100,000; 25% test"),
    "mnist": Recipe("classification", "sgd", 0.1, 20, 32,
                    "the four MNIST IDX files from --mnist-dir; 784 pixels / 255; the official 10,000 test images"),
    "wine": Recipe("regression", "sgd", 0.01, 50, 32,
                   "a semicolon CSV from --csv (UCI winequality-white); last column the target; features "
                   "standardised; first 75% of the rows train (Slettevold's thesis)"),
}
RECIPES["csv"] = RECIPES["wine"]


@dataclass
class Prepared:
    """A data set split and scaled for training: arrays, the task, and the target's unit (``target_scale``:
    a loss on a standardised target times target_scale**2 is in the target's own units)."""

    name: str
    task: str
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    target_scale: float = 1.0

    @property
    def sizes(self) -> tuple[int, int]:
        """(inputs, outputs) of a network for this data: the classes for classification, 1 for regression."""
        n_out = int(max(self.y_train.max(), self.y_test.max())) + 1 if self.task == "classification" else 1
        return self.X_train.shape[1], n_out


def prepare(name: str, seed: int = 0, *, mnist_dir: str | os.PathLike | None = None,
            csv: str | os.PathLike | None = None, sep: str = ";") -> Prepared:
    """Load, split and scale the data set ``name`` of ``RECIPES`` as ``microgradx train`` does (scalers are
    fitted on the training part only).

    >>> p = prepare("digits", seed=0); p.X_train.shape, p.X_test.shape, p.sizes
    ((1346, 64), (451, 64), (64, 10))
    """
    from . import data

    if name not in RECIPES:
        raise ValueError(f"unknown dataset {name!r}; choose one of {sorted(RECIPES)}")
    task = RECIPES[name].task
    target_scale = 1.0
    if name == "mnist":
        if mnist_dir is None:
            raise ValueError("the mnist dataset needs --mnist-dir DIR with the four MNIST IDX files")
        (Xtr, ytr), (Xte, yte) = data.load_mnist(mnist_dir, flatten=True)
        Xtr, Xte = Xtr.astype(np.float32) / np.float32(255), Xte.astype(np.float32) / np.float32(255)
        return Prepared(name, task, Xtr, ytr, Xte, yte)
    if name in ("wine", "csv"):
        if csv is None:
            raise ValueError(f"the {name} dataset needs --csv FILE (a {sep!r}-separated CSV with a header row)")
        X, y, _ = data.read_csv(csv, sep=sep)
        Xtr, Xte, ytr, yte = data.train_test_split(X, y, 0.25, shuffle=False)
    elif name == "digits":
        X, y = data.load_digits()
        Xtr, Xte, ytr, yte = data.train_test_split(X / 16.0, y, 0.25, seed=seed, stratify=True)
        return Prepared(name, task, Xtr, ytr, Xte, yte)
    elif name == "moons":
        X, y = data.make_moons(1000, noise=0.2, seed=seed)
        Xtr, Xte, ytr, yte = data.train_test_split(X, y, 0.25, seed=seed)
    elif name == "spirals":
        X, y = data.make_spirals(900, classes=3, noise=0.2, seed=seed)
        Xtr, Xte, ytr, yte = data.train_test_split(X, y, 0.25, seed=seed, stratify=True)
    elif name == "diabetes":
        X, y = data.load_diabetes()
        Xtr, Xte, ytr, yte = data.train_test_split(X, y, 0.25, seed=seed)
        mean, std = ytr.mean(), ytr.std()
        ytr, yte, target_scale = (ytr - mean) / std, (yte - mean) / std, float(std)
    else:  # housing
        X, y = data.make_housing(seed=seed)
        Xtr, Xte, ytr, yte = data.train_test_split(X, y, 0.25, seed=seed)
    scaler = data.StandardScaler().fit(Xtr)
    return Prepared(name, task, scaler.transform(Xtr), ytr, scaler.transform(Xte), yte, target_scale)
