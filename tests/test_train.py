"""Tests for the training loop: fit, evaluate, History, callbacks, schedules, parameter files, plots and the
``microgradx train`` command (run as a subprocess)."""

from __future__ import annotations

import gzip
import json
import math
import statistics
import struct
import subprocess
import sys
import xml.etree.ElementTree as ET

import numpy as np
import pytest

import microgradx
from microgradx import nn, optim, schedules
from microgradx.data import DataLoader
from microgradx.losses import cross_entropy
from microgradx.train import (
    CheckpointError,
    History,
    evaluate,
    fit,
    load_parameters,
    mlp,
    plot_histories,
    rolling_variance,
    save_parameters,
)


def regression_data(n=40, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    y = X @ np.array([1.5, -2.0, 0.5]) + 0.25 + rng.normal(0, 0.1, n)
    return X, y


def classification_data(n=120, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    X = rng.normal(size=(n, 4)) + 2.0 * np.eye(3, 4)[y]
    return X, y


def numpy_cross_entropy(z, y):
    """-log softmax(z)[y], averaged; written out independently of the library's fused node."""
    z = np.asarray(z, dtype=np.float64)
    m = z.max(axis=1, keepdims=True)
    lse = m[:, 0] + np.log(np.exp(z - m).sum(axis=1))
    return float(np.mean(lse - z[np.arange(len(y)), y]))


# ---------------------------------------------------------------------------------------------------------
# fit and History
# ---------------------------------------------------------------------------------------------------------

def test_full_batch_gradient_descent_reaches_least_squares():
    X, y = regression_data()
    net = nn.Linear(3, 1, dtype=np.float64, rng=0)
    h = fit(net, "mse", optim.SGD(net.parameters(), lr=0.3), (X, y), epochs=300, batch_size=None, seed=0)
    A = np.c_[X, np.ones(len(X))]
    coef, *_ = np.linalg.lstsq(A, y, rcond=None)
    np.testing.assert_allclose(net.weight.data[0], coef[:3], atol=1e-8)
    np.testing.assert_allclose(net.bias.data, coef[3:], atol=1e-8)
    assert h.loss[-1] == pytest.approx(np.mean((A @ coef - y) ** 2), rel=1e-8)


def test_one_output_column_is_lined_up_with_flat_targets():
    # A (N, 1) prediction against (N,) targets must not broadcast to (N, N).
    X, y = regression_data(8)
    net = nn.Linear(3, 1, dtype=np.float64, rng=1)
    pred = X @ net.weight.data[0] + net.bias.data[0]
    got = evaluate(net, "mse", (X, y), metrics=["mae", "rmse"])
    assert got["loss"] == pytest.approx(np.mean((pred - y) ** 2), rel=1e-12)
    assert got["mae"] == pytest.approx(np.mean(np.abs(pred - y)), rel=1e-12)
    assert got["rmse"] == pytest.approx(math.sqrt(np.mean((pred - y) ** 2)), rel=1e-12)


def test_history_records_batches_epochs_seconds_and_rates():
    X, y = classification_data(50)
    net = mlp([4, 8, 3], rng=0)
    h = fit(net, cross_entropy, optim.Adam(net.parameters(), lr=0.01), (X, y), epochs=3, batch_size=16, seed=0,
            metrics=["accuracy"], label="adam")
    per_epoch = math.ceil(50 / 16)
    assert len(h.batch_loss) == 3 * per_epoch and h.batch_epoch == [e for e in range(3) for _ in range(per_epoch)]
    sizes = [16, 16, 16, 2]
    for e in range(3):
        batch = h.batch_loss[e * per_epoch:(e + 1) * per_epoch]
        assert h.loss[e] == pytest.approx(np.dot(batch, sizes) / 50, rel=1e-9)
    assert h.epochs == 3 and len(h.seconds) == 3 and all(s > 0 for s in h.seconds)
    assert h.lr == [0.01] * 3 and h["accuracy"] == h.metrics["accuracy"] and h.label == "adam"
    assert all(0 <= a <= 1 for a in h["accuracy"])
    back = History.from_dict(json.loads(json.dumps(h.to_dict())))
    assert back == h
    assert "batch_loss" not in h.to_dict(batches=False)
    with pytest.raises(KeyError, match="val_loss"):
        h["val_loss"]


def test_training_accuracy_is_the_mean_over_the_epoch_batches():
    X, y = classification_data(40)
    net = mlp([4, 3], rng=0)
    seen = []

    class Spy:
        def on_batch_end(self, batch, loss):
            seen.append(batch)

    outputs = []
    original = net.forward

    def recording(x):
        out = original(x)
        outputs.append(out.data.copy())
        return out
    net.forward = recording
    h = fit(net, "cross_entropy", optim.SGD(net.parameters(), lr=0.1), (X, y), epochs=1, batch_size=8, seed=3,
            metrics=["accuracy"], callbacks=[Spy()])
    order = np.random.default_rng(3).permutation(40)  # DataLoader's documented order for this seed
    labels = y[order]
    right = sum(int((o.argmax(axis=1) == labels[i * 8:(i + 1) * 8]).sum()) for i, o in enumerate(outputs))
    assert h["accuracy"][0] == pytest.approx(right / 40)
    assert seen == list(range(5))


def test_same_seed_same_run_other_seed_other_order():
    X, y = classification_data(60)

    def run(seed):
        net = mlp([4, 6, 3], rng=0)
        return fit(net, cross_entropy, optim.SGD(net.parameters(), lr=0.1), (X, y), epochs=2, batch_size=10,
                   seed=seed).batch_loss
    assert run(1) == run(1)
    assert run(1) != run(2)


def test_dataloader_is_accepted_and_batch_size_conflicts_are_refused():
    X, y = classification_data(30)
    net = mlp([4, 3], rng=0)
    loader = DataLoader(X.astype(np.float32), y, batch_size=7, seed=0)
    h = fit(net, cross_entropy, optim.SGD(net.parameters(), lr=0.1), loader, epochs=2, batch_size=None)
    assert len(h.batch_loss) == 2 * 5
    with pytest.raises(ValueError, match="batch_size 7"):
        fit(net, cross_entropy, optim.SGD(net.parameters(), lr=0.1), loader, epochs=1, batch_size=32)


@pytest.mark.parametrize("kwargs, message", [
    (dict(epochs=0), "epochs must be an integer >= 1"),
    (dict(metrics=["f1"]), "unknown metric 'f1'"),
    (dict(loss="hinge"), "unknown loss 'hinge'"),
])
def test_bad_arguments_are_named(kwargs, message):
    X, y = classification_data(10)
    net = mlp([4, 3], rng=0)
    args = dict(loss=cross_entropy, epochs=1)
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        fit(net, args.pop("loss"), optim.SGD(net.parameters(), lr=0.1), (X, y), **args)


def test_optimizer_by_name_and_lazy_exports():
    X, y = classification_data(20)
    net = mlp([4, 3], rng=0)
    h = microgradx.fit(net, "cross_entropy", "adam", (X, y), epochs=1)
    assert h.lr == [1e-3]  # Adam's default rate
    assert microgradx.evaluate is evaluate and microgradx.train.fit is fit


# ---------------------------------------------------------------------------------------------------------
# Modes: training for fit, evaluation for evaluate
# ---------------------------------------------------------------------------------------------------------

class ModeSpy(nn.Module):
    """Identity layer that records the mode it was called in."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def forward(self, x):
        self.calls.append(self.training)
        return x


def test_fit_trains_in_training_mode_and_validates_in_evaluation_mode():
    X, y = classification_data(24)
    spy = ModeSpy()
    net = nn.Sequential(nn.Linear(4, 3, rng=0), spy)
    net.eval()
    fit(net, cross_entropy, optim.SGD(net.parameters(), lr=0.1), (X, y), epochs=2, batch_size=12,
        validation=(X[:10], y[:10]))
    # per epoch: two training batches, then one validation pass
    assert spy.calls == [True, True, False, True, True, False]
    assert net.training is False  # left in the mode it had


def test_evaluate_turns_dropout_off_and_restores_the_mode():
    X, y = classification_data(30)
    net = nn.Sequential(nn.Linear(4, 16, rng=0), nn.ReLU(), nn.Dropout(0.5, rng=0), nn.Linear(16, 3, rng=1))
    plain = nn.Sequential(net[0], net[1], net[3])  # the same layers without dropout
    z = plain(X.astype(np.float32)).data
    got = evaluate(net, cross_entropy, (X, y), ["accuracy"], batch_size=7)
    assert got["loss"] == pytest.approx(numpy_cross_entropy(z, y), rel=1e-5)
    assert got["accuracy"] == pytest.approx(np.mean(z.argmax(axis=1) == y))
    assert net.training is True and net[2].training is True


def test_validation_numbers_equal_evaluate_after_the_epoch():
    X, y = classification_data(60)
    net = mlp([4, 8, 3], rng=0)
    h = fit(net, cross_entropy, optim.Adam(net.parameters(), lr=0.01), (X[:40], y[:40]), epochs=1, batch_size=10,
            seed=0, metrics=["accuracy"], validation=(X[40:], y[40:]))
    z = net(X[40:].astype(np.float32)).data
    assert h["val_loss"][0] == pytest.approx(numpy_cross_entropy(z, y[40:]), rel=1e-5)
    assert h["val_accuracy"][0] == pytest.approx(np.mean(z.argmax(axis=1) == y[40:]))


# ---------------------------------------------------------------------------------------------------------
# Callbacks and schedules
# ---------------------------------------------------------------------------------------------------------

def test_early_stopping_stops_when_the_loss_stalls():
    X, y = classification_data(20)
    net = mlp([4, 3], rng=0)
    stop = schedules.EarlyStopping("loss", patience=2, min_delta=1e-4)
    # lr = 0: the weights never change, so the loss never improves after the first epoch
    h = fit(net, cross_entropy, optim.SGD(net.parameters(), lr=0.0), (X, y), epochs=10, batch_size=None,
            callbacks=[stop])
    assert h.epochs == 3 and h.stopped_epoch == 2 and stop.best_epoch == 0
    again = fit(net, cross_entropy, optim.SGD(net.parameters(), lr=0.0), (X, y), epochs=10, batch_size=None,
                callbacks=[stop])
    assert again.epochs == 3  # the same object starts afresh in a new run


def test_early_stopping_on_a_validation_metric_and_function_callbacks():
    X, y = classification_data(40)
    net = mlp([4, 3], rng=0)
    stop = schedules.EarlyStopping("val_accuracy", patience=1, min_delta=2.0)  # nothing improves by 2
    h = fit(net, cross_entropy, optim.SGD(net.parameters(), lr=0.1), (X, y), epochs=10, metrics=["accuracy"],
            validation=(X, y), callbacks=[stop])
    assert h.epochs == 2 and stop.mode == "max"
    logs_seen = []
    h = fit(net, cross_entropy, optim.SGD(net.parameters(), lr=0.1), (X, y), epochs=10,
            callbacks=[lambda epoch, logs: logs_seen.append(logs) or epoch == 3])
    assert h.epochs == 4 and [lg["loss"] for lg in logs_seen] == h.loss
    with pytest.raises(ValueError, match="no 'val_loss'"):
        fit(net, cross_entropy, optim.SGD(net.parameters(), lr=0.1), (X, y), epochs=2,
            callbacks=[schedules.EarlyStopping("val_loss")])


def test_step_decay_sets_each_epochs_rate():
    X, y = classification_data(20)
    net = mlp([4, 3], rng=0)
    opt = optim.SGD(net.parameters(), lr=0.2)
    h = fit(net, cross_entropy, opt, (X, y), epochs=5, schedule=schedules.StepDecay(opt, factor=0.5, every=2))
    assert h.lr == [0.2 * 0.5 ** (t // 2) for t in range(5)]


def test_function_schedule_and_plateau_schedule_gets_the_monitored_value():
    X, y = classification_data(30)
    net = mlp([4, 3], rng=0)
    opt = optim.SGD(net.parameters(), lr=1.0)
    h = fit(net, cross_entropy, opt, (X, y), epochs=3, schedule=lambda t: 0.1 / (t + 1))
    assert h.lr == pytest.approx([0.1, 0.05, 0.1 / 3])

    class Recording(schedules.ReduceLROnPlateau):
        def step(self, metric=None):
            self.seen = [*getattr(self, "seen", []), metric]
            return super().step(metric)
    plateau = Recording(opt, patience=1, factor=0.5)
    h = fit(net, cross_entropy, opt, (X, y), epochs=3, validation=(X[:10], y[:10]), schedule=plateau)
    assert plateau.seen == h["val_loss"]
    plateau = Recording(opt, patience=1, factor=0.5)
    h = fit(net, cross_entropy, opt, (X, y), epochs=2, schedule=plateau)
    assert plateau.seen == h.loss  # no validation data: the training loss


def test_rolling_variance_matches_the_sample_variance_of_each_window():
    rng = np.random.default_rng(0)
    x = rng.exponential(size=30).tolist()
    got = rolling_variance(x, 5)
    assert len(got) == 26
    np.testing.assert_allclose(got, [statistics.variance(x[i:i + 5]) for i in range(26)], rtol=1e-12)
    h = History(batch_loss=x)
    np.testing.assert_allclose(h.rolling_variance(5), got)
    assert rolling_variance(x[:3], 5).size == 0
    with pytest.raises(ValueError, match="window"):
        rolling_variance(x, 1)


# ---------------------------------------------------------------------------------------------------------
# Progress bar
# ---------------------------------------------------------------------------------------------------------

def test_progress_bar_only_when_asked_or_on_a_terminal(capsys):
    X, y = classification_data(20)
    net = mlp([4, 3], rng=0)
    fit(net, cross_entropy, optim.SGD(net.parameters(), lr=0.1), (X, y), epochs=2, batch_size=5)
    assert capsys.readouterr().err == ""  # stderr is not a terminal under pytest
    fit(net, cross_entropy, optim.SGD(net.parameters(), lr=0.1), (X, y), epochs=2, batch_size=5, progress=True)
    err = capsys.readouterr().err
    assert "epoch 2/2" in err and "8/8" in err
    fit(net, cross_entropy, optim.SGD(net.parameters(), lr=0.1), (X, y), epochs=1, progress=False)
    assert capsys.readouterr() == ("", "")


# ---------------------------------------------------------------------------------------------------------
# Parameter files
# ---------------------------------------------------------------------------------------------------------

def test_save_load_round_trip(tmp_path):
    a, b = mlp([4, 5, 3], rng=0), mlp([4, 5, 3], rng=1)
    path = save_parameters(a, tmp_path / "net")
    assert path.endswith("net.npz")
    with np.load(path, allow_pickle=False) as f:
        assert sorted(f.files) == ["0.bias", "0.weight", "2.bias", "2.weight"]
        assert f["0.weight"].shape == (5, 4)
    load_parameters(b, path)
    X = np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32)
    np.testing.assert_array_equal(a(X).data, b(X).data)


def test_load_refuses_files_that_do_not_fit(tmp_path):
    net = mlp([4, 5, 3], rng=0)
    state = net.state_dict()

    def write(name, **arrays):
        p = tmp_path / name
        np.savez(p, **arrays)
        return p
    wrong_shape = write("shape.npz", **{**state, "2.weight": np.zeros((3, 6), np.float32)})
    with pytest.raises(CheckpointError, match=r"2\.weight has shape \(3, 6\).*\(3, 5\)"):
        load_parameters(net, wrong_shape)
    missing = write("missing.npz", **{k: v for k, v in state.items() if k != "0.bias"})
    with pytest.raises(CheckpointError, match=r"missing \['0\.bias'\]"):
        load_parameters(net, missing)
    extra = write("extra.npz", **state, **{"4.weight": np.zeros(2)})
    with pytest.raises(CheckpointError, match=r"unexpected \['4\.weight'\]"):
        load_parameters(net, extra)
    pickled = write("object.npz", **{**state, "0.bias": np.array([{"x": 1}] * 5, dtype=object)})
    with pytest.raises(CheckpointError, match="not a parameter file"):
        load_parameters(net, pickled)
    text = tmp_path / "text.npz"
    text.write_text("hello")
    with pytest.raises(CheckpointError, match="not a parameter file"):
        load_parameters(net, text)
    with pytest.raises(CheckpointError, match="no such file"):
        load_parameters(net, tmp_path / "absent.npz")
    nonfinite = write("nan.npz", **{**state, "0.bias": np.full(5, np.nan, np.float32)})
    with pytest.raises(CheckpointError, match="non-finite"):
        load_parameters(net, nonfinite)
    before = net.state_dict()
    for k, v in net.state_dict().items():  # no failed load changed anything
        np.testing.assert_array_equal(v, before[k])
        np.testing.assert_array_equal(v, state[k])


# ---------------------------------------------------------------------------------------------------------
# Plots
# ---------------------------------------------------------------------------------------------------------

def two_histories():
    X, y = classification_data(60)
    out = []
    for name in ("sgd", "adam"):
        net = mlp([4, 8, 3], rng=0)
        out.append(fit(net, cross_entropy, optim.__dict__[{"sgd": "SGD", "adam": "Adam"}[name]](
            net.parameters(), lr=0.05), (X, y), epochs=4, batch_size=8, seed=0, metrics=["accuracy"],
            validation=(X[:20], y[:20]), label=name))
    return out


def test_plots_are_written_and_decodable(tmp_path):
    import matplotlib.image

    hs = two_histories()
    png = plot_histories(hs, tmp_path / "sub" / "cmp.png", window=5, title="comparison")
    img = matplotlib.image.imread(png)
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100
    assert img[..., :3].std() > 0.01  # not a blank canvas
    svg = plot_histories(hs[0], tmp_path / "one.svg", panels=["loss", "lr"])
    root = ET.parse(svg).getroot()
    assert root.tag.endswith("svg")
    text = open(svg).read()
    assert "learning rate" in text and "sgd" in text
    with pytest.raises(ValueError, match="unknown panel"):
        plot_histories(hs, tmp_path / "x.png", panels=["weights"])
    with pytest.raises(ValueError, match="rolling_variance"):
        plot_histories(hs, tmp_path / "x.png", panels=["rolling_variance"], window=1000)


# ---------------------------------------------------------------------------------------------------------
# The command line
# ---------------------------------------------------------------------------------------------------------

def cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "microgradx.cli", "train", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=120)


def test_cli_digits_default_reaches_97_percent(tmp_path):
    """The default digits configuration: 64-128-10 ReLU, Adam lr 3e-3, batch 32, 30 epochs, pixels / 16, seed 0."""
    out = tmp_path / "m.json"
    r = cli("--dataset", "digits", "--optimizer", "adam", "--epochs", "30", "--seed", "0", "--metrics-json", str(out),
            "--plot", str(tmp_path / "loss.png"), "--save", str(tmp_path / "p.npz"))
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""  # no progress bar without a terminal
    m = json.loads(out.read_text())
    assert m["layers"] == [64, 128, 10] and m["epochs"] == 30 and m["seconds"] > 0
    assert m["test_accuracy"] >= 0.97
    assert m["n_test"] == 451 and len(m["history"]["loss"]) == 30
    # the reported accuracy is the saved network's accuracy on the test split, recomputed here
    from microgradx.train import prepare
    data = prepare("digits", seed=0)
    net = mlp([64, 128, 10], rng=0)
    load_parameters(net, tmp_path / "p.npz")
    assert np.mean(net(data.X_test).data.argmax(axis=1) == data.y_test) == pytest.approx(m["test_accuracy"])
    assert (tmp_path / "loss.png").stat().st_size > 1000


def write_idx(path, array, gz=False):
    """An IDX file written from the format's description: 0, 0, type 0x08, ndim, big-endian dims, bytes."""
    raw = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()
    with (gzip.open if gz else open)(path, "wb") as f:
        f.write(raw)


def test_cli_mnist_path_on_a_small_synthetic_idx_set(tmp_path):
    rng = np.random.default_rng(0)

    def images(n):
        labels = rng.integers(0, 10, n).astype(np.uint8)
        x = rng.integers(0, 40, (n, 28, 28)).astype(np.uint8)
        for i, k in enumerate(labels):  # digit k: a bright bar in rows 2k..2k+2
            x[i, 2 * k:2 * k + 3, 4:24] = 255
        return x, labels
    (xtr, ytr), (xte, yte) = images(300), images(60)
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", xtr, gz=True)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", ytr, gz=True)
    write_idx(tmp_path / "t10k-images-idx3-ubyte", xte)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", yte)
    out = tmp_path / "m.json"
    r = cli("--dataset", "mnist", "--mnist-dir", str(tmp_path), "--epochs", "3", "--metrics-json", str(out))
    assert r.returncode == 0, r.stderr
    m = json.loads(out.read_text())
    assert m["layers"] == [784, 128, 10] and m["optimizer"] == "sgd"
    assert (m["n_train"], m["n_test"], m["epochs"]) == (300, 60, 3)
    assert m["test_accuracy"] >= 0.9


def test_cli_wine_csv_regression(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 11))
    y = X[:, 0] - X[:, 1] + 6
    lines = [";".join(f'"f{i}"' for i in range(11)) + ';"quality"']
    lines += [";".join(f"{v:.6f}" for v in row) + f";{t:.6f}" for row, t in zip(X, y)]
    (tmp_path / "wine.csv").write_text("\n".join(lines) + "\n")
    out = tmp_path / "m.json"
    r = cli("--dataset", "wine", "--csv", str(tmp_path / "wine.csv"), "--epochs", "5", "--patience", "2",
            "--metrics-json", str(out))
    assert r.returncode == 0, r.stderr
    m = json.loads(out.read_text())
    assert (m["n_train"], m["n_test"], m["layers"]) == (60, 20, [11, 128, 1])
    assert m["test_rmse"] == pytest.approx(math.sqrt(m["test_loss"])) and "test_accuracy" not in m


@pytest.mark.parametrize("args, message", [
    (["--dataset", "cifar"], "invalid choice: 'cifar'"),
    (["--dataset", "mnist"], "needs --mnist-dir"),
    (["--dataset", "mnist", "--mnist-dir", "no-such-dir"], "load_mnist: none of"),
    (["--dataset", "wine"], "needs --csv"),
    (["--dataset", "csv", "--csv", "absent.csv"], "No such file"),
    (["--dataset", "moons", "--epochs", "0"], "--epochs must be a positive integer"),
    (["--dataset", "moons", "--hidden", "12,x"], "--hidden needs positive layer sizes"),
    (["--dataset", "moons", "--optimizer", "lion"], "unknown optimizer 'lion'"),
    (["--dataset", "moons", "--lr", "-1"], "lr must be >= 0"),
    (["--dataset", "moons", "--threads", "-1"], "--threads must be 0"),
])
def test_cli_usage_errors_exit_2_without_traceback(tmp_path, args, message):
    r = cli(*args, cwd=tmp_path)
    assert r.returncode == 2
    assert message in r.stderr and "Traceback" not in r.stderr


def test_cli_help_shows_examples():
    r = cli("--help")
    assert r.returncode == 0
    assert "microgradx train --dataset digits --optimizer adam --epochs 30 --seed 0" in r.stdout
    assert "--mnist-dir" in r.stdout and "--metrics-json" in r.stdout


def _mlp_benchmark():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "mlp.py"
    spec = importlib.util.spec_from_file_location("mlp_benchmark", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


def test_the_mlp_benchmark_engines_do_the_same_work():
    """benchmarks/mlp.py compares engines on one workload: from the same weights and batches, the hand-written
    NumPy MLPs (both weight layouts) and microgradx (nn layers, raw tensor ops, the finiteness rule off) must
    follow the same trajectory."""
    from microgradx import fast, tensor

    bench = _mlp_benchmark()
    X, y = bench.make_data(256)
    plan = bench.batches(256, 32, np.random.default_rng(0))
    engines = [bench.numpy_engine, bench.numpy_in_out_engine, bench.microgradx_engine, bench.microgradx_optim_engine,
               bench.raw_ops_engine, bench.unchecked_engine]
    checks = fast.all_finite, tensor._all_finite, fast._products_finite
    epochs = [make(X, y, 0.1) for make in engines]
    losses = [[epoch(plan) for _ in range(3)] for epoch in epochs]
    assert losses[0][-1] < losses[0][0]  # the shared trajectory does learn
    for other in losses[1:]:
        np.testing.assert_allclose(other, losses[0], rtol=1e-4)
    assert (fast.all_finite, tensor._all_finite, fast._products_finite) == checks  # the rule is back on


def test_the_mlp_benchmark_pytorch_engines_do_the_same_work_too():
    """When PyTorch is installed, both of its engines (plain update and torch.optim.SGD) follow the hand-written
    NumPy MLP's trajectory too, so the benchmark's ratios compare the same work."""
    pytest.importorskip("torch")
    bench = _mlp_benchmark()
    X, y = bench.make_data(256)
    plan = bench.batches(256, 32, np.random.default_rng(0))
    engines = [bench.numpy_engine, bench.torch_engine, bench.torch_optim_engine]
    epochs = [make(X, y, 0.1) for make in engines]
    losses = [[epoch(plan) for _ in range(3)] for epoch in epochs]
    for other in losses[1:]:
        np.testing.assert_allclose(other, losses[0], rtol=1e-4)


def _npz_bytes(members):
    """A zip of raw members {name: bytes}, as np.savez would lay it out."""
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, raw in members.items():
            z.writestr(name, raw)
    return buf.getvalue()


def test_load_refuses_hostile_parameter_files_with_a_checkpoint_error(tmp_path):
    import io

    net = mlp([4, 5, 3], rng=0)
    state = net.state_dict()
    good = save_parameters(net, tmp_path / "good.npz")
    single = tmp_path / "single.npy"
    np.save(single, state["0.weight"])
    with pytest.raises(CheckpointError, match=r"single\.npy.*a single \.npy array, not an \.npz"):
        load_parameters(net, single)
    text_member = tmp_path / "text.npz"
    text_member.write_bytes(_npz_bytes({"0.weight.npy": b"hello, not an array"}))
    with pytest.raises(CheckpointError, match="not a parameter file"):
        load_parameters(net, text_member)
    other = tmp_path / "other.npz"
    other.write_bytes(_npz_bytes({"notes.txt": b"hi"}))
    with pytest.raises(CheckpointError, match=r"member 'notes\.txt' is not an \.npy array"):
        load_parameters(net, other)
    truncated = tmp_path / "truncated.npz"
    raw = open(good, "rb").read()
    truncated.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(CheckpointError, match="not a parameter file"):
        load_parameters(net, truncated)
    # A header claiming 10**10 float64 elements over a few bytes of data: refused before any allocation.
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False, "shape": (10**5, 10**5)})
    liar = tmp_path / "liar.npz"
    liar.write_bytes(_npz_bytes({"0.weight.npy": header.getvalue() + b"\0" * 64}))
    with pytest.raises(CheckpointError, match=r"0\.weight claims shape \(100000, 100000\).*truncated or corrupt"):
        load_parameters(net, liar)
    for k, v in net.state_dict().items():  # no refused file changed anything
        np.testing.assert_array_equal(v, state[k])


def test_load_refuses_a_small_file_that_unpacks_to_a_huge_member_before_unpacking(tmp_path):
    import zipfile

    net = mlp([4, 5, 3], rng=0)
    bomb = tmp_path / "bomb.npz"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as z, z.open("junk.npy", "w", force_zip64=True) as m:
        np.lib.format.write_array_header_1_0(m, {"descr": "|u1", "fortran_order": False, "shape": (40 * 2**20,)})
        zeros = bytes(2**20)
        for _ in range(40):
            m.write(zeros)
    assert bomb.stat().st_size < 200_000
    with pytest.raises(CheckpointError, match=r"unpack to 41,943,\d+ bytes, more than .*; not read"):
        load_parameters(net, bomb)


def test_ctrl_c_in_fit_raises_training_interrupted_with_the_epochs_done():
    from microgradx.train import TrainingInterrupted

    X, y = regression_data()
    net = nn.Linear(3, 1, rng=0)
    seen = []

    def on_batch_end(batch, loss):
        seen.append(batch)
        if batch == 12:  # during the third epoch (5 batches of 8 per epoch)
            raise KeyboardInterrupt

    cb = type("Stopper", (), {"on_batch_end": staticmethod(on_batch_end)})()
    with pytest.raises(TrainingInterrupted) as info:
        fit(net, "mse", optim.SGD(net.parameters(), lr=0.05), (X, y), epochs=10, batch_size=8, callbacks=[cb])
    h = info.value.history
    assert isinstance(info.value, KeyboardInterrupt)
    assert h.epochs == 2 and len(h.batch_loss) == 13 and h.batch_epoch[-1] == 2
    assert net.training  # the model's mode is restored


def test_cli_train_ctrl_c_saves_history_plot_and_json_of_the_epochs_done(tmp_path, monkeypatch, capsys):
    from microgradx.cli import main

    calls = {"n": 0}
    real_step = optim.Adam.step

    def step(self):
        calls["n"] += 1
        if calls["n"] == 100:  # digits: 43 batches of 32 per epoch, so Ctrl-C lands inside the third epoch
            raise KeyboardInterrupt
        real_step(self)
    monkeypatch.setattr(optim.Adam, "step", step)
    out = tmp_path / "m.json"
    status = main(["train", "--dataset", "digits", "--optimizer", "adam", "--epochs", "30", "--no-progress",
                   "--metrics-json", str(out), "--plot", str(tmp_path / "p.png")])
    captured = capsys.readouterr()
    assert status == 130
    assert captured.err == "microgradx train: interrupted after 2 finished epochs\n"
    m = json.loads(out.read_text())
    assert m["interrupted"] is True and m["epochs"] == 2 and len(m["history"]["loss"]) == 2
    assert (tmp_path / "p.png").stat().st_size > 1000
    assert "2 epochs in" in captured.out


@pytest.mark.parametrize("args, message", [
    (("--dataset", "moons", "--hidden", "64,,32"), "--hidden needs positive layer sizes"),
    (("--dataset", "moons", "--hidden", "64,"), "--hidden needs positive layer sizes"),
    (("--dataset", "wine", "--csv", "w.csv", "--sep", ";;"), "sep must be one character"),
])
def test_cli_train_refuses_bad_options_in_one_line(tmp_path, args, message):
    (tmp_path / "w.csv").write_text("a;b\n1;2\n3;4\n5;6\n7;8\n")
    r = cli(*args, cwd=tmp_path)
    assert r.returncode == 2 and message in r.stderr
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr


def test_cli_train_mnist_with_a_truncated_gzip_prints_one_line(tmp_path):
    images = np.zeros((20, 28, 28), np.uint8)
    for name, a in (("train-images-idx3-ubyte", images), ("train-labels-idx1-ubyte", np.zeros(20, np.uint8)),
                    ("t10k-images-idx3-ubyte", images), ("t10k-labels-idx1-ubyte", np.zeros(20, np.uint8))):
        write_idx(tmp_path / (name + ".gz"), a, gz=True)
    cut = tmp_path / "train-images-idx3-ubyte.gz"
    cut.write_bytes(cut.read_bytes()[:-40])
    r = cli("--dataset", "mnist", "--mnist-dir", str(tmp_path), "--epochs", "1")
    assert r.returncode == 2 and "Traceback" not in r.stderr and r.stderr.count("\n") == 1
    assert "train-images-idx3-ubyte.gz' is truncated or corrupt" in r.stderr
