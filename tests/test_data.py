"""Data: mini-batch loader, datasets, split, scalers, and the MNIST IDX and CSV readers on files written here."""

from __future__ import annotations

import gzip
import math
import struct

import numpy as np
import pytest

from microgradx import data

# -- DataLoader -------------------------------------------------------------------------------------------------

X10 = np.arange(20.0).reshape(10, 2)
Y10 = np.arange(10)


def epoch(loader):
    return [(xb.copy(), yb.copy()) for xb, yb in loader]


@pytest.mark.parametrize("batch_size, sizes", [(None, [10]), (1, [1] * 10), (4, [4, 4, 2]), (10, [10])])
def test_each_epoch_visits_every_sample_once(batch_size, sizes):
    loader = data.DataLoader(X10, Y10, batch_size, seed=3)
    for _ in range(2):
        batches = epoch(loader)
        assert [len(yb) for _, yb in batches] == sizes
        ys = np.concatenate([yb for _, yb in batches])
        assert sorted(ys.tolist()) == list(range(10))
        for xb, yb in batches:  # rows stay paired with their targets
            np.testing.assert_array_equal(xb, X10[yb])


def test_drop_last():
    loader = data.DataLoader(X10, Y10, 4, seed=0, drop_last=True)
    batches = epoch(loader)
    assert len(loader) == 2 and [len(yb) for _, yb in batches] == [4, 4]


def test_seeded_shuffling_is_reproducible_and_changes_between_epochs():
    a, b = data.DataLoader(X10, Y10, 3, seed=7), data.DataLoader(X10, Y10, 3, seed=7)
    ea1, ea2 = epoch(a), epoch(a)
    eb1, eb2 = epoch(b), epoch(b)
    for (x1, y1), (x2, y2) in zip(ea1 + ea2, eb1 + eb2, strict=True):
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1, y2)
    order1 = np.concatenate([y for _, y in ea1])
    order2 = np.concatenate([y for _, y in ea2])
    assert not np.array_equal(order1, order2)
    assert not np.array_equal(order1, np.arange(10))


def test_no_shuffle_keeps_the_order():
    assert [yb.tolist() for _, yb in data.DataLoader(X10, Y10, 4, shuffle=False)] == [[0, 1, 2, 3], [4, 5, 6, 7],
                                                                                      [8, 9]]


def test_loader_errors():
    with pytest.raises(ValueError, match="X has 10 samples but y has 9"):
        data.DataLoader(X10, Y10[:9])
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
        data.DataLoader(X10, Y10, 0)
    with pytest.raises(ValueError, match="no batch"):
        data.DataLoader(X10, Y10, 11, drop_last=True)


# -- datasets ---------------------------------------------------------------------------------------------------

def test_digits_and_diabetes_are_bundled():
    X, y = data.load_digits()
    assert X.shape == (1797, 64) and X.dtype == np.float64 and X.min() == 0 and X.max() == 16
    assert np.bincount(y).tolist() == [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]
    X, y = data.load_diabetes()
    assert X.shape == (442, 10) and y.shape == (442,)
    assert y.min() == 25.0 and y.max() == 346.0


def test_moons_lie_on_their_half_circles():
    X, y = data.make_moons(101, noise=0.0, seed=1)
    a, b = X[y == 0], X[y == 1]
    assert len(a) == 50 and len(b) == 51
    np.testing.assert_allclose(a[:, 0] ** 2 + a[:, 1] ** 2, 1.0, atol=1e-12)
    assert np.all(a[:, 1] >= -1e-12)
    np.testing.assert_allclose((b[:, 0] - 1) ** 2 + (b[:, 1] - 0.5) ** 2, 1.0, atol=1e-12)
    assert np.all(b[:, 1] <= 0.5 + 1e-12)
    X2, y2 = data.make_moons(101, noise=0.1, seed=1)
    X3, y3 = data.make_moons(101, noise=0.1, seed=1)
    np.testing.assert_array_equal(X2, X3)
    np.testing.assert_array_equal(y2, y3)


def test_spiral_points_follow_their_arms():
    X, y = data.make_spirals(61, classes=3, noise=0.0, seed=0)
    assert np.bincount(y).tolist() == [21, 20, 20]
    for k in range(3):
        pts = X[y == k]
        r = np.hypot(pts[:, 0], pts[:, 1])
        np.testing.assert_allclose(r, np.linspace(0, 1, len(pts)), atol=1e-12)
        angle = np.arctan2(pts[:, 0], pts[:, 1])
        expected = 4 * k + 4 * r
        diff = np.angle(np.exp(1j * (angle - expected)))[1:]  # the centre point has no angle
        np.testing.assert_allclose(diff, 0.0, atol=1e-9)


def test_polynomial_is_seed001s():
    X, y = data.make_polynomial(50, seed=0)
    x = X[:, 0]
    f = (0.000017 * x ** 6 - 0.001133 * x ** 5 + 0.029241 * x ** 4 - 0.36691 * x ** 3 + 2.234115 * x ** 2
         - 5.510020 * x + 4.722197)
    np.testing.assert_allclose(y, f, rtol=1e-12, atol=1e-12)
    assert np.all(np.diff(x) >= 0) and x.min() >= 0 and x.max() <= 23
    # its two local minima (the valleys of seed 001's Figure 1) are near 2.10 and 20.52
    fp = lambda t: np.polyval(np.polyder(data.SEED001_POLYNOMIAL), t)
    for m in (2.103, 20.523):
        assert fp(m - 0.01) < 0 < fp(m + 0.01)
    _, noisy = data.make_polynomial(50, noise=0.5, seed=0)
    assert 0.3 < np.std(noisy - y) < 0.7


def test_housing_follows_its_documented_formula():
    X, y = data.make_housing(20000, seed=0)
    assert X.shape == (20000, 8) and len(data.HOUSING_FEATURES) == 8
    inc, age, rooms, beds, pop, occ, lat, lon = X.T
    assert inc.min() >= 0.5 and set(np.unique(age)) <= set(range(1, 53)) and rooms.min() >= 1.5
    assert np.all(pop == np.round(pop)) and np.all(occ > 0)
    assert 32 < np.median(lat) < 38 and -124.5 < lon.min() and lon.max() < -113
    centres = [(34.05, -118.25), (37.77, -122.42)]
    dist = np.minimum(np.min([np.hypot(lat - a, lon - b) for a, b in centres], axis=0), 4.0)
    mean = (0.6 + 0.42 * inc + 0.01 * age + 0.05 * (rooms - 4.5) - 0.25 * (beds - 1) - 0.15 * np.log(occ / 2.9)
            - 0.35 * dist)
    np.testing.assert_array_equal(y, np.clip(y, 0.15, 5.0))
    keep = (mean > 0.15 + 5 * 0.35) & (mean < 5.0 - 5 * 0.35)  # where the clipping is out of reach
    assert keep.sum() > 5000
    noise = (y - mean)[keep]
    assert abs(noise.mean()) < 0.01 and 0.34 < noise.std() < 0.36
    for column in (inc, age, rooms, beds, occ, dist):  # the noise is independent of every feature
        assert abs(np.corrcoef(noise, column[keep])[0, 1]) < 0.03


# -- split -------------------------------------------------------------------------------------------------------

def test_split_sizes_disjoint_and_reproducible():
    X, y = np.arange(30.0).reshape(15, 2), np.arange(15)
    Xtr, Xte, ytr, yte = data.train_test_split(X, y, 0.25, seed=1)
    assert len(yte) == math.ceil(0.25 * 15) and len(ytr) == 15 - len(yte)
    assert sorted(np.r_[ytr, yte].tolist()) == list(range(15))
    np.testing.assert_array_equal(Xtr, X[ytr])
    again = data.train_test_split(X, y, 0.25, seed=1)
    np.testing.assert_array_equal(again[3], yte)
    assert len(data.train_test_split(X, y, 4, seed=1)[3]) == 4


def test_unshuffled_split_is_seed001s_wine_split():
    n = 4898
    X, y = np.zeros((n, 1)), np.arange(n)
    _, _, ytr, yte = data.train_test_split(X, y, 0.25, shuffle=False)
    train_size = int(n * 0.75)  # seed 001: x_train[0:train_size], x_test[train_size:]
    np.testing.assert_array_equal(ytr, np.arange(train_size))
    np.testing.assert_array_equal(yte, np.arange(train_size, n))


def test_stratified_split_keeps_class_shares():
    y = np.r_[np.zeros(80, int), np.ones(40, int), np.full(20, 2)]
    X = np.arange(len(y), dtype=float)[:, None]
    _, _, ytr, yte = data.train_test_split(X, y, 0.25, seed=0, stratify=True)
    assert np.bincount(yte).tolist() == [20, 10, 5]
    assert np.bincount(ytr).tolist() == [60, 30, 15]


def test_split_errors():
    X, y = np.zeros((4, 1)), np.zeros(4)
    with pytest.raises(ValueError, match="test_size"):
        data.train_test_split(X, y, 1.5)
    with pytest.raises(ValueError, match="leaves 4 of 4"):
        data.train_test_split(X, y, 4)
    with pytest.raises(ValueError, match="stratify needs shuffle"):
        data.train_test_split(X, y, 0.5, shuffle=False, stratify=True)


# -- scalers -----------------------------------------------------------------------------------------------------

TRAIN = np.array([[1.0, 10.0, 3.0], [2.0, 30.0, 3.0], [6.0, 20.0, 3.0]])
TEST = np.array([[0.0, 25.0, 4.0], [3.0, 10.0, 3.0]])


def test_standard_scaler_fits_on_train_and_applies_to_test():
    s = data.StandardScaler().fit(TRAIN)
    mean = TRAIN.sum(axis=0) / 3
    std = np.sqrt(((TRAIN - mean) ** 2).sum(axis=0) / 3)
    std[2] = 1.0  # constant column: centred only
    np.testing.assert_allclose(s.transform(TEST), (TEST - mean) / std, atol=1e-12)
    Z = s.fit_transform(TRAIN)
    np.testing.assert_allclose(Z[:, :2].mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(Z[:, :2].std(axis=0), 1.0, atol=1e-12)
    np.testing.assert_allclose(s.inverse_transform(s.transform(TEST)), TEST, atol=1e-12)


def test_minmax_scaler_maps_train_range_onto_feature_range():
    s = data.MinMaxScaler((-1.0, 1.0)).fit(TRAIN)
    lo, hi = TRAIN.min(axis=0), TRAIN.max(axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    expected = -1.0 + (TEST - lo) * 2.0 / span
    np.testing.assert_allclose(s.transform(TEST), expected, atol=1e-12)
    Z = s.transform(TRAIN)
    np.testing.assert_allclose(Z[:, :2].min(axis=0), -1.0, atol=1e-12)
    np.testing.assert_allclose(Z[:, :2].max(axis=0), 1.0, atol=1e-12)
    np.testing.assert_allclose(s.inverse_transform(Z), TRAIN, atol=1e-12)


def test_scaler_errors():
    with pytest.raises(ValueError, match="call fit"):
        data.StandardScaler().transform(TRAIN)
    s = data.MinMaxScaler().fit(TRAIN)
    with pytest.raises(ValueError, match="fitted on 3"):
        s.transform(TRAIN[:, :2])
    with pytest.raises(ValueError, match="non-finite"):
        data.StandardScaler().fit([[1.0], [float("nan")]])
    with pytest.raises(ValueError, match="2-D"):
        data.StandardScaler().fit([1.0, 2.0])
    with pytest.raises(ValueError, match="feature_range"):
        data.MinMaxScaler((1.0, 0.0))


# -- MNIST IDX files ----------------------------------------------------------------------------------------

def idx_bytes(array: np.ndarray, code: int, big_endian: str) -> bytes:
    """The IDX format written from its description: 0, 0, type code, ndim, big-endian dims, big-endian data."""
    header = struct.pack(">BBBB", 0, 0, code, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(big_endian).tobytes()


def write_mnist(directory, gz: bool, dotted: bool, n_train=5, n_test=3):
    rng = np.random.default_rng(0)
    arrays = {"train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28)),
              "train-labels-idx1-ubyte": rng.integers(0, 10, n_train),
              "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28)),
              "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test)}
    for stem, a in arrays.items():
        name = stem.replace("-idx", ".idx") if dotted else stem
        raw = idx_bytes(a, 0x08, "u1")
        if gz:
            (directory / (name + ".gz")).write_bytes(gzip.compress(raw))
        else:
            (directory / name).write_bytes(raw)
    return arrays


@pytest.mark.parametrize("gz, dotted", [(False, False), (True, False), (True, True)])
def test_load_mnist_reads_the_four_files(tmp_path, gz, dotted):
    arrays = write_mnist(tmp_path, gz, dotted)
    (Xtr, ytr), (Xte, yte) = data.load_mnist(tmp_path)
    assert Xtr.dtype == np.uint8 and Xtr.shape == (5, 28, 28)
    np.testing.assert_array_equal(Xtr, arrays["train-images-idx3-ubyte"])
    np.testing.assert_array_equal(ytr, arrays["train-labels-idx1-ubyte"])
    np.testing.assert_array_equal(Xte, arrays["t10k-images-idx3-ubyte"])
    np.testing.assert_array_equal(yte, arrays["t10k-labels-idx1-ubyte"])
    (Xf, _), _ = data.load_mnist(tmp_path, flatten=True, scale=True)
    assert Xf.shape == (5, 784)
    np.testing.assert_allclose(Xf, arrays["train-images-idx3-ubyte"].reshape(5, 784) / 255.0)


@pytest.mark.parametrize("code, dtype", [(0x09, "i1"), (0x0B, ">i2"), (0x0C, ">i4"), (0x0D, ">f4"), (0x0E, ">f8")])
def test_read_idx_other_types(tmp_path, code, dtype):
    a = np.arange(-6, 6).reshape(3, 2, 2)
    path = tmp_path / "a.idx"
    path.write_bytes(idx_bytes(a, code, dtype))
    np.testing.assert_array_equal(data.read_idx(path), a)


def test_idx_and_mnist_errors(tmp_path):
    bad = tmp_path / "bad"
    bad.write_bytes(b"PK\x03\x04rest")
    with pytest.raises(ValueError, match="not an IDX file"):
        data.read_idx(bad)
    short = tmp_path / "short"
    short.write_bytes(idx_bytes(np.zeros((2, 3), np.uint8), 0x08, "u1")[:-1])
    with pytest.raises(ValueError, match=r"declares shape \(2, 3\)"):
        data.read_idx(short)
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte.gz"):
        data.load_mnist(tmp_path)


# -- semicolon CSV ------------------------------------------------------------------------------------------

WINE = '''"fixed acidity";"volatile acidity";"citric acid";"quality"
7;0.27;0.36;6
6.3;0.3;0.34;6

8.1;0.28;0.4;5
'''


def test_read_csv_wine_format(tmp_path):
    path = tmp_path / "winequality-white.csv"
    path.write_text(WINE)
    X, y, names = data.read_csv(path)
    assert names == ["fixed acidity", "volatile acidity", "citric acid"]
    np.testing.assert_array_equal(X, [[7.0, 0.27, 0.36], [6.3, 0.3, 0.34], [8.1, 0.28, 0.4]])
    np.testing.assert_array_equal(y, [6.0, 6.0, 5.0])


def test_read_csv_errors(tmp_path):
    path = tmp_path / "w.csv"
    path.write_text(WINE.replace("0.3;", "abc;"))
    with pytest.raises(ValueError, match=r"line 3, column 'volatile acidity': 'abc' is not a number"):
        data.read_csv(path)
    path.write_text(WINE.replace("6.3;0.3;", "6.3;"))
    with pytest.raises(ValueError, match="line 3 has 3 fields, the header has 4"):
        data.read_csv(path)
    with pytest.raises(ValueError, match="separator ','"):
        data.read_csv(tmp_path / "w.csv", sep=",")


# -- hostile files ----------------------------------------------------------------------------------------------

def test_read_idx_refuses_a_truncated_gzip_with_a_data_file_error(tmp_path):
    raw = gzip.compress(idx_bytes(np.arange(600, dtype=np.uint8).reshape(20, 30), 0x08, "u1"))
    path = tmp_path / "cut.gz"
    path.write_bytes(raw[: len(raw) - 12])
    with pytest.raises(data.DataFileError, match=r"cut\.gz' is truncated or corrupt"):
        data.read_idx(path)


def test_read_idx_checks_the_declared_size_before_unpacking(tmp_path):
    # A gzip whose header declares 588 MB: refused from the header alone (the body is never inflated, so the
    # test does not need to write it all).
    header = b"\x00\x00\x08\x03" + np.array([750_000, 28, 28], ">u4").tobytes()
    path = tmp_path / "bomb-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(header + bytes(1 << 20)))
    with pytest.raises(data.DataFileError, match=r"declares shape \(750000, 28, 28\) \(588,000,000 bytes\), more "
                                                 r"than max_bytes=268,435,456; not unpacked"):
        data.read_idx(path)
    small = tmp_path / "small"
    small.write_bytes(idx_bytes(np.zeros((4, 5), np.uint8), 0x08, "u1"))
    with pytest.raises(data.DataFileError, match=r"\(4, 5\) \(20 bytes\), more than max_bytes=19"):
        data.read_idx(small, max_bytes=19)
    assert data.read_idx(small, max_bytes=20).shape == (4, 5)


@pytest.mark.parametrize("text, match", [
    ('"a";"b"\n1;2\n\n\n"4\n";3\n1;nan\n', r"line 7, column 'b': 'nan' is not a finite number"),
    ("a;b\n1;inf\n", r"line 2, column 'b': 'inf' is not a finite number"),
    ("a;b\n1e999;2\n", r"line 2, column 'a': '1e999' is not a finite number"),
    ("a;b\n1;2\n" + "1" * 140_000 + ";3\n", r"line 3: field larger than field limit"),
    ('a;b\n1;2\n"x\ny";3\n', r"line 3, column 'a': 'x\\ny' is not a number"),
])
def test_read_csv_refuses_bad_cells_naming_the_line_an_editor_shows(tmp_path, text, match):
    path = tmp_path / "t.csv"
    path.write_text(text)
    with pytest.raises(data.DataFileError, match=match):
        data.read_csv(path)


def test_read_csv_names_the_file_of_a_latin1_error_and_drops_a_bom(tmp_path):
    latin = tmp_path / "latin.csv"
    latin.write_bytes("a;b\n1;2\nr\xe9;3\n".encode("latin-1"))
    with pytest.raises(data.DataFileError, match=r"latin\.csv'\): not UTF-8 text \(byte 0xe9 on line 3\)"):
        data.read_csv(latin)
    bom = tmp_path / "bom.csv"
    bom.write_text("alcohol;quality\n9.5;6\n", encoding="utf-8-sig")
    assert bom.read_bytes().startswith(b"\xef\xbb\xbf")
    X, y, names = data.read_csv(bom)
    assert names == ["alcohol"] and X.tolist() == [[9.5]] and y.tolist() == [6.0]


@pytest.mark.parametrize("sep", [";;", "", "\n", '"'])
def test_read_csv_refuses_a_separator_that_is_not_one_character(tmp_path, sep):
    path = tmp_path / "t.csv"
    path.write_text("a;b\n1;2\n")
    with pytest.raises(ValueError, match=r"sep must be one character"):
        data.read_csv(path, sep=sep)
