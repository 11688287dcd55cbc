"""Data for the NumPy training path: a seeded mini-batch loader, offline datasets, MNIST IDX and CSV readers,
a train/test split and feature scalers. Everything returns plain NumPy arrays.
"""

from __future__ import annotations

import csv
import gzip
import math
import numbers
import os
import zlib
from collections.abc import Iterator
from typing import Any

import numpy as np

from .ops import MicrogradxError
from .validation import integer as _size

__all__ = [
    "DataLoader", "load_digits", "load_diabetes", "make_moons", "make_spirals", "make_polynomial",
    "SEED001_POLYNOMIAL", "make_housing", "HOUSING_FEATURES", "train_test_split", "read_idx", "load_mnist",
    "read_csv", "StandardScaler", "MinMaxScaler", "DataFileError", "IDX_MAX_BYTES",
]


def _xy(where: str, X: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    X, y = np.asarray(X), np.asarray(y)
    if X.ndim == 0 or y.ndim == 0:
        raise ValueError(f"{where}: X and y need a first (sample) axis, got shapes {X.shape} and {y.shape}")
    if len(X) != len(y):
        raise ValueError(f"{where}: X has {len(X)} samples but y has {len(y)}")
    return X, y


# ---------------------------------------------------------------------------------------------------------
# Mini-batches
# ---------------------------------------------------------------------------------------------------------

class DataLoader:
    """Yield (X_batch, y_batch) pairs over one epoch per iteration; shuffled by a seeded generator.

    ``batch_size=None`` is full-batch gradient descent, ``1`` is stochastic gradient descent (Slettevold's
    Algorithms 5-7); each new ``for`` loop is a new epoch with a new order, and the whole sequence of orders
    is fixed by ``seed``. ``drop_last`` drops a final batch smaller than ``batch_size``.

    >>> X, y = np.arange(10.0).reshape(5, 2), np.arange(5)
    >>> [yb.tolist() for _, yb in DataLoader(X, y, batch_size=2, shuffle=False)]
    [[0, 1], [2, 3], [4]]
    >>> len(DataLoader(X, y, batch_size=2, drop_last=True))
    2
    """

    def __init__(self, X: Any, y: Any, batch_size: int | None = None, *, shuffle: bool = True,
                 seed: int | None = None, drop_last: bool = False) -> None:
        self.X, self.y = _xy("DataLoader", X, y)
        n = len(self.X)
        if n == 0:
            raise ValueError("DataLoader: the dataset is empty")
        self.batch_size = n if batch_size is None else _size("DataLoader", "batch_size", batch_size)
        self.shuffle, self.drop_last = bool(shuffle), bool(drop_last)
        self.rng = np.random.default_rng(seed)
        if drop_last and self.batch_size > n:
            raise ValueError(f"DataLoader: batch_size {self.batch_size} > {n} samples with drop_last leaves no batch")

    def __len__(self) -> int:
        n, b = len(self.X), self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        n, b = len(self.X), self.batch_size
        order = self.rng.permutation(n) if self.shuffle else np.arange(n)
        for start in range(0, len(self) * b, b):
            idx = order[start:start + b]
            yield self.X[idx], self.y[idx]


# ---------------------------------------------------------------------------------------------------------
# Datasets
# ---------------------------------------------------------------------------------------------------------

def _sklearn_datasets():
    try:
        from sklearn import datasets
    except ImportError as e:  # pragma: no cover - scikit-learn is a dependency
        raise ImportError("microgradx.data needs scikit-learn for its bundled datasets: pip install scikit-learn") \
            from e
    return datasets


def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled 8x8 digits (offline): X (1797, 64) float pixel values 0-16, y (1797,) labels 0-9.

    >>> X, y = load_digits(); X.shape, y.shape, int(X.max()), sorted(set(y.tolist())) == list(range(10))
    ((1797, 64), (1797,), 16, True)
    """
    d = _sklearn_datasets().load_digits()
    return d.data.astype(np.float64), d.target.astype(np.int64)


def load_diabetes() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled diabetes regression (offline): X (442, 10) scaled features, y (442,) progression.

    >>> X, y = load_diabetes(); X.shape, y.shape
    ((442, 10), (442,))
    """
    d = _sklearn_datasets().load_diabetes()
    return d.data.astype(np.float64), d.target.astype(np.float64)


def make_moons(n: int = 200, noise: float = 0.1, seed: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Two interleaving half circles: class 0 on (cos t, sin t), class 1 on (1 - cos t, 1/2 - sin t), t in [0, pi],
    plus Gaussian noise of standard deviation ``noise``; rows in a seeded random order.

    >>> X, y = make_moons(100, seed=0); X.shape, int(y.sum())
    ((100, 2), 50)
    """
    n = _size("make_moons", "n", n, 2)
    rng = np.random.default_rng(seed)
    n0 = n // 2
    t0, t1 = np.linspace(0, math.pi, n0), np.linspace(0, math.pi, n - n0)
    X = np.concatenate([np.c_[np.cos(t0), np.sin(t0)], np.c_[1 - np.cos(t1), 0.5 - np.sin(t1)]])
    y = np.r_[np.zeros(n0, np.int64), np.ones(n - n0, np.int64)]
    X = X + rng.normal(0.0, noise, X.shape)
    order = rng.permutation(n)
    return X[order], y[order]


def make_spirals(n: int = 300, classes: int = 3, noise: float = 0.2,
                 seed: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Interleaved spiral arms, one per class: for class k, radius r from 0 to 1 and angle 4k + 4r + noise,
    point (r sin angle, r cos angle) (the classic CS231n toy set). Rows grouped by class.

    >>> X, y = make_spirals(90, classes=3, seed=0); X.shape, np.bincount(y).tolist()
    ((90, 2), [30, 30, 30])
    """
    n = _size("make_spirals", "n", n, 1)
    classes = _size("make_spirals", "classes", classes, 1)
    rng = np.random.default_rng(seed)
    counts = [n // classes + (k < n % classes) for k in range(classes)]
    Xs, ys = [], []
    for k, m in enumerate(counts):
        r = np.linspace(0.0, 1.0, m)
        angle = np.linspace(4.0 * k, 4.0 * (k + 1), m) + rng.normal(0.0, noise, m)
        Xs.append(np.c_[r * np.sin(angle), r * np.cos(angle)])
        ys.append(np.full(m, k, np.int64))
    return np.concatenate(Xs), np.concatenate(ys)


SEED001_POLYNOMIAL = (0.000017, -0.001133, 0.029241, -0.36691, 2.234115, -5.510020, 4.722197)
"""Slettevold's Figure 1 polynomial, highest power first (for ``np.polyval``): local minima near x = 2.10 and
x = 20.52, a local maximum near x = 7.22."""


def make_polynomial(n: int = 100, coefficients: tuple[float, ...] = SEED001_POLYNOMIAL,
                    x_range: tuple[float, float] = (0.0, 23.0), noise: float = 0.0,
                    seed: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Samples of a polynomial (default: Slettevold's 6th-degree one): X (n, 1) uniform in ``x_range``, sorted,
    y = polyval(coefficients, x) + Gaussian noise.

    >>> X, y = make_polynomial(3, coefficients=(1.0, 0.0, -1.0), x_range=(2.0, 2.0)); y.tolist()
    [3.0, 3.0, 3.0]
    """
    n = _size("make_polynomial", "n", n, 1)
    lo, hi = x_range
    if not lo <= hi:
        raise ValueError(f"make_polynomial: x_range must be (low, high) with low <= high, got {x_range!r}")
    rng = np.random.default_rng(seed)
    x = np.sort(rng.uniform(lo, hi, n))
    y = np.polyval(np.asarray(coefficients, dtype=np.float64), x)
    if noise:
        y = y + rng.normal(0.0, noise, n)
    return x[:, None], y


HOUSING_FEATURES = ("MedInc", "HouseAge", "AveRooms", "AveBedrms", "Population", "AveOccup", "Latitude",
                    "Longitude")

_CITIES = np.array([[34.05, -118.25], [37.77, -122.42]])  # two coastal centres, as Los Angeles and San Francisco


def make_housing(n: int = 20640, seed: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A SYNTHETIC housing regression with the 8 features of the California housing data (``HOUSING_FEATURES``),
    for Blain's optimizer comparison offline. It is not the real data (that download is not available
    here); its columns are drawn as follows (N = normal, U = uniform, LN = log-normal):

        MedInc     ~ LN(log 3.5, 0.45) clipped to [0.5, 15]
        HouseAge   ~ U{1, ..., 52}
        AveRooms   = 4.5 + 0.35 (MedInc - 3.5) + N(0, 0.6), at least 1.5
        AveBedrms  = 1 + 0.05 (AveRooms - 4.5) + N(0, 0.05), at least 0.5
        Population ~ round(LN(log 1200, 0.7))
        AveOccup   ~ LN(log 2.9, 0.25)
        (Latitude, Longitude): with probability 0.7 near a coastal centre, N(centre, 0.5 degrees), the centre
            (34.05, -118.25) or, with probability 0.4, (37.77, -122.42); else U([32.5, 42] x [-124.3, -114.3])
        dist = min(distance to the nearest centre in degrees, 4)
        y = 0.6 + 0.42 MedInc + 0.01 HouseAge + 0.05 (AveRooms - 4.5) - 0.25 (AveBedrms - 1)
            - 0.15 log(AveOccup / 2.9) - 0.35 dist + N(0, 0.35),   clipped to [0.15, 5.0]   (in $100,000)

    >>> X, y = make_housing(1000, seed=0); X.shape, bool(0.15 <= y.min() and y.max() <= 5.0)
    ((1000, 8), True)
    """
    n = _size("make_housing", "n", n, 1)
    rng = np.random.default_rng(seed)
    inc = np.clip(rng.lognormal(math.log(3.5), 0.45, n), 0.5, 15.0)
    age = rng.integers(1, 53, n).astype(np.float64)
    rooms = np.maximum(4.5 + 0.35 * (inc - 3.5) + rng.normal(0.0, 0.6, n), 1.5)
    beds = np.maximum(1.0 + 0.05 * (rooms - 4.5) + rng.normal(0.0, 0.05, n), 0.5)
    pop = np.round(rng.lognormal(math.log(1200.0), 0.7, n))
    occ = rng.lognormal(math.log(2.9), 0.25, n)
    near = rng.random(n) < 0.7
    centre = _CITIES[(rng.random(n) < 0.4).astype(int)]
    spread = np.c_[rng.uniform(32.5, 42.0, n), rng.uniform(-124.3, -114.3, n)]
    loc = np.where(near[:, None], centre + rng.normal(0.0, 0.5, (n, 2)), spread)
    dist = np.minimum(np.min(np.linalg.norm(loc[:, None, :] - _CITIES[None], axis=2), axis=1), 4.0)
    y = (0.6 + 0.42 * inc + 0.01 * age + 0.05 * (rooms - 4.5) - 0.25 * (beds - 1.0) - 0.15 * np.log(occ / 2.9)
         - 0.35 * dist + rng.normal(0.0, 0.35, n))
    X = np.c_[inc, age, rooms, beds, pop, occ, loc]
    return X, np.clip(y, 0.15, 5.0)


# ---------------------------------------------------------------------------------------------------------
# Splitting and scaling
# ---------------------------------------------------------------------------------------------------------

def train_test_split(X: Any, y: Any, test_size: float | int = 0.25, *, seed: int | None = None,
                     shuffle: bool = True, stratify: bool = False) -> tuple[np.ndarray, ...]:
    """Split into X_train, X_test, y_train, y_test; ``test_size`` a fraction or a count (ceil(fraction * n)).

    ``shuffle=False`` takes the last rows as the test set (Slettevold's wine split: first 75% train).
    ``stratify`` keeps each class's share in both parts (each class gives round(its count * test fraction)).

    >>> X, y = np.arange(8.0).reshape(8, 1), np.arange(8)
    >>> [a.ravel().tolist() for a in train_test_split(X, y, 0.25, shuffle=False)][2:]
    [[0, 1, 2, 3, 4, 5], [6, 7]]
    """
    X, y = _xy("train_test_split", X, y)
    n = len(X)
    if isinstance(test_size, numbers.Integral) and not isinstance(test_size, bool):
        n_test = int(test_size)
    elif isinstance(test_size, numbers.Real) and 0 < test_size < 1:
        n_test = math.ceil(test_size * n)
    else:
        raise ValueError(f"train_test_split: test_size must be a fraction in (0, 1) or a count, got {test_size!r}")
    if not 0 < n_test < n:
        raise ValueError(f"train_test_split: test_size {test_size!r} leaves {n_test} of {n} samples for testing")
    rng = np.random.default_rng(seed)
    if stratify:
        if not shuffle:
            raise ValueError("train_test_split: stratify needs shuffle=True")
        test_idx = []
        for c in np.unique(y):
            members = rng.permutation(np.flatnonzero(y == c))
            test_idx.append(members[:round(len(members) * n_test / n)])
        test = np.sort(np.concatenate(test_idx))
        mask = np.ones(n, bool)
        mask[test] = False
        train = rng.permutation(np.flatnonzero(mask))
        test = rng.permutation(test)
    else:
        order = rng.permutation(n) if shuffle else np.arange(n)
        train, test = order[:n - n_test], order[n - n_test:]
    return X[train], X[test], y[train], y[test]


def _features(where: str, X: Any, n_features: int | None = None) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(f"{where}: X must be 2-D (samples, features), got shape {X.shape}")
    if n_features is not None and X.shape[1] != n_features:
        raise ValueError(f"{where}: X has {X.shape[1]} features, the scaler was fitted on {n_features}")
    if not np.all(np.isfinite(X)):
        raise ValueError(f"{where}: X has non-finite values (first at row {np.argwhere(~np.isfinite(X))[0][0]})")
    return X


class _Scaler:
    """fit on the training set, then transform any set with the same numbers: x' = (x - offset) / scale."""

    offset: np.ndarray | None = None
    scale: np.ndarray | None = None

    def _fitted(self, where: str, X: Any) -> np.ndarray:
        if self.scale is None:
            raise ValueError(f"{type(self).__name__}.{where}: call fit(X_train) first")
        return _features(f"{type(self).__name__}.{where}", X, len(self.scale))

    def transform(self, X: Any) -> np.ndarray:
        """Apply the fitted offset and scale column by column."""
        return (self._fitted("transform", X) - self.offset) / self.scale

    def inverse_transform(self, X: Any) -> np.ndarray:
        """Undo ``transform``."""
        return self._fitted("inverse_transform", X) * self.scale + self.offset

    def fit_transform(self, X: Any) -> np.ndarray:
        """``fit(X)`` then ``transform(X)``."""
        return self.fit(X).transform(X)


class StandardScaler(_Scaler):
    """Standardise each feature: x' = (x - mean) / std, mean and std (ddof 0) from the training set.
    A constant feature keeps scale 1 (it is only centred).

    >>> s = StandardScaler().fit([[1.0, 5.0], [3.0, 5.0]]); s.transform([[2.0, 5.0], [5.0, 6.0]]).tolist()
    [[0.0, 0.0], [3.0, 1.0]]
    """

    def fit(self, X: Any) -> StandardScaler:
        """Learn each column's mean and standard deviation from ``X`` (the training set)."""
        X = _features("StandardScaler.fit", X)
        self.mean, std = X.mean(axis=0), X.std(axis=0)
        self.offset, self.scale = self.mean, np.where(std > 0, std, 1.0)
        return self


class MinMaxScaler(_Scaler):
    """Scale each feature linearly so the training set's min and max land on ``feature_range`` (default [0, 1]).

    >>> s = MinMaxScaler().fit([[0.0], [4.0]]); s.transform([[1.0], [8.0]]).ravel().tolist()
    [0.25, 2.0]
    """

    def __init__(self, feature_range: tuple[float, float] = (0.0, 1.0)) -> None:
        lo, hi = feature_range
        if not lo < hi:
            raise ValueError(f"MinMaxScaler: feature_range must be (low, high) with low < high, got {feature_range!r}")
        self.feature_range = (float(lo), float(hi))

    def fit(self, X: Any) -> MinMaxScaler:
        """Learn each column's minimum and maximum from ``X`` (the training set)."""
        X = _features("MinMaxScaler.fit", X)
        lo, hi = self.feature_range
        self.data_min, self.data_max = X.min(axis=0), X.max(axis=0)
        span = np.where(self.data_max > self.data_min, self.data_max - self.data_min, 1.0)
        # x' = lo + (x - min) (hi - lo) / span, written as (x - offset) / scale
        self.scale = span / (hi - lo)
        self.offset = self.data_min - lo * self.scale
        return self


# ---------------------------------------------------------------------------------------------------------
# File readers
# ---------------------------------------------------------------------------------------------------------

_IDX_TYPES = {0x08: np.dtype(np.uint8), 0x09: np.dtype(np.int8), 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
              0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


# The largest array read_idx unpacks unless told otherwise: MNIST's training images are 47 MB (EMNIST's largest
# file, about 550 MB, needs a larger max_bytes).
IDX_MAX_BYTES = 1 << 28


class DataFileError(MicrogradxError, ValueError):
    """A data file that is not what its reader expects (format, size, encoding, a cell that is not a number)."""


def read_idx(path: str | os.PathLike, *, max_bytes: int = IDX_MAX_BYTES) -> np.ndarray:
    """Read one IDX file (the MNIST format), gzipped or not (told apart by the gzip magic bytes, not the name).

    The header is two zero bytes, a type code (0x08 = unsigned byte, ...), the number of dimensions, then each
    dimension as a big-endian 32-bit integer; the data follow in C order. The size the header declares is
    checked against ``max_bytes`` BEFORE the data are unpacked, so a small gzip file cannot inflate to gigabytes.
    """
    name = os.fspath(path)
    with open(path, "rb") as f:
        gzipped = f.read(2) == b"\x1f\x8b"
    try:
        with (gzip.open(path, "rb") if gzipped else open(path, "rb")) as f:
            head = f.read(4)
            if len(head) < 4 or head[:2] != b"\x00\x00" or head[2] not in _IDX_TYPES:
                raise DataFileError(f"read_idx: {name!r} is not an IDX file (header {head!r})")
            dtype, ndim = _IDX_TYPES[head[2]], head[3]
            dims = f.read(4 * ndim)
            if len(dims) < 4 * ndim:
                raise DataFileError(f"read_idx: {name!r} is truncated inside its header")
            shape = tuple(int(d) for d in np.frombuffer(dims, ">u4"))
            header, nbytes = 4 + 4 * ndim, math.prod(shape) * dtype.itemsize
            if nbytes > max_bytes:
                raise DataFileError(f"read_idx: {name!r} declares shape {shape} ({nbytes:,} bytes), more than "
                                    f"max_bytes={max_bytes:,}; not unpacked")
            body = f.read(nbytes)
            extra = len(f.read(1))
    except (EOFError, OSError, zlib.error) as e:
        if isinstance(e, FileNotFoundError | PermissionError):
            raise
        raise DataFileError(f"read_idx: {name!r} is truncated or corrupt ({e})") from None
    if len(body) != nbytes or extra:
        has = f"more than {header + nbytes}" if extra else str(header + len(body))
        raise DataFileError(f"read_idx: {name!r} declares shape {shape} ({header + nbytes} bytes) but has {has} "
                            "bytes")
    return np.frombuffer(body, dtype).reshape(shape).astype(dtype.newbyteorder("="))


_MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                "t10k-labels-idx1-ubyte")


def _find_mnist(directory: str | os.PathLike, stem: str) -> str:
    # the standard names, gzipped or not, and the common variant with a dot before "idx"
    dotted = stem.replace("-idx", ".idx")
    candidates = [stem, stem + ".gz", dotted, dotted + ".gz"]
    for name in candidates:
        path = os.path.join(directory, name)
        if os.path.isfile(path):
            return path
    raise FileNotFoundError(f"load_mnist: none of {candidates} is in {os.fspath(directory)!r}")


def load_mnist(directory: str | os.PathLike, *, flatten: bool = False,
               scale: bool = False) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Read the four standard MNIST IDX files from ``directory``: ((X_train, y_train), (X_test, y_test)).

    Images come as uint8 arrays (n, 28, 28), as Keras's ``mnist.load_data()`` gives them (Slettevold's thesis);
    ``flatten`` makes them (n, 784) and ``scale`` floats in [0, 1] (pixel / 255).
    """
    arrays = [read_idx(_find_mnist(directory, stem)) for stem in _MNIST_FILES]
    for images, labels, which in ((arrays[0], arrays[1], "train"), (arrays[2], arrays[3], "t10k")):
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise ValueError(f"load_mnist: the {which} files disagree: images {images.shape}, labels {labels.shape}")
    out = []
    for images, labels in ((arrays[0], arrays[1]), (arrays[2], arrays[3])):
        X: np.ndarray = images
        if flatten:
            X = X.reshape(len(X), -1)
        if scale:
            X = X.astype(np.float64) / 255.0
        out.append((X, labels.astype(np.int64)))
    return out[0], out[1]


def _first_non_utf8(path: str | os.PathLike) -> str:
    with open(path, "rb") as f:
        raw = f.read()
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        return f"byte {raw[e.start]:#04x} on line {line}"
    return "an invalid byte"


def read_csv(path: str | os.PathLike, sep: str = ";") -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Read a numeric CSV with a header row, like UCI's ``winequality-white.csv`` (Slettevold's thesis): the ``sep``
    separator (default ";"), quoted column names, the last column the target. Returns (X, y, feature_names).

    UTF-8 (a byte-order mark is dropped); every cell must be a finite number (nan, inf and 1e999 are refused);
    errors give the file's line number as an editor shows it.
    """
    where = f"read_csv({os.fspath(path)!r})"
    if not isinstance(sep, str) or len(sep) != 1 or sep in "\r\n\"":
        raise ValueError(f"{where}: sep must be one character (not a quote or a line break), got {sep!r}")
    rows: list[tuple[int, list[str]]] = []
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f, delimiter=sep)
        start = 1  # the line a row starts on (a quoted field may span lines)
        try:
            for row in reader:
                if row:
                    rows.append((start, row))
                start = reader.line_num + 1
        except csv.Error as e:  # a field longer than the csv module's limit, a NUL byte, ...
            raise DataFileError(f"{where}: line {start}: {e}") from None
        except UnicodeDecodeError:
            raise DataFileError(f"{where}: not UTF-8 text ({_first_non_utf8(path)}): save the file as UTF-8 "
                                "(it may be Latin-1)") from None
    if not rows:
        raise DataFileError(f"{where}: the file is empty")
    (_, header), body = rows[0], rows[1:]
    names = [h.strip() for h in header]
    if len(names) < 2:
        raise DataFileError(f"{where}: the header has {len(names)} column; is the separator {sep!r} right?")
    if not body:
        raise DataFileError(f"{where}: the file has a header but no data rows")
    values = np.empty((len(body), len(names)))
    for r, (line, row) in enumerate(body):
        if len(row) != len(names):
            raise DataFileError(f"{where}: line {line} has {len(row)} fields, the header has {len(names)}")
        for c, cell in enumerate(row):
            try:
                values[r, c] = v = float(cell)
            except ValueError:
                raise DataFileError(f"{where}: line {line}, column {names[c]!r}: {cell!r} is not a number") from None
            if not math.isfinite(v):
                raise DataFileError(f"{where}: line {line}, column {names[c]!r}: {cell.strip()!r} is not a finite "
                                    "number")
    return values[:, :-1], values[:, -1], names[:-1]
