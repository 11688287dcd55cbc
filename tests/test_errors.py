"""Every row of the README's bad-input table raises what it says, with the message it shows."""

import re
from pathlib import Path

import pytest

import microgradx
from microgradx import DivisionByZeroError, DomainError, Value

README = Path(__file__).resolve().parents[1] / "README.md"
ROW = re.compile(r"^\| `(?P<expr>[^`]+)` \| `(?P<exc>\w+)` \| `(?P<msg>[^`]+)` \|$")


def error_rows():
    section = README.read_text().split("## Errors", 1)[1].split("\n## ", 1)[0]
    rows = [m.groupdict() for m in map(ROW.match, section.splitlines()) if m]
    assert len(rows) >= 10
    return rows


def write_bad_files(folder: Path) -> None:
    """The files the table's rows read, each broken the way its row says."""
    import gzip
    import zipfile

    import numpy as np

    from microgradx.train import mlp, save_parameters

    np.save(folder / "single.npy", np.zeros(3))
    raw = (folder / save_parameters(mlp([2, 1]), folder / "good.npz")).read_bytes()
    (folder / "truncated.npz").write_bytes(raw[: len(raw) // 2])
    with zipfile.ZipFile(folder / "bomb.npz", "w", zipfile.ZIP_DEFLATED) as z, z.open("junk.npy", "w") as m:
        for _ in range(40):
            m.write(bytes(2**20))
    images = bytes([0, 0, 8, 3]) + np.array([20, 28, 28], ">u4").tobytes() + bytes(20 * 28 * 28)
    (folder / "cut.gz").write_bytes(gzip.compress(images)[:-40])
    (folder / "bomb.gz").write_bytes(gzip.compress(bytes([0, 0, 8, 3]) + np.array([750_000, 28, 28], ">u4").tobytes()))
    (folder / "nan.csv").write_text("a;b\n1;2\n3;nan\n")
    (folder / "latin1.csv").write_bytes("a;b\n\xe9;2\n".encode("latin-1"))
    (folder / "long.csv").write_text("a;b\n" + "1" * 140_000 + ";2\n")
    mnist = folder / "mnist-cut"
    mnist.mkdir()
    labels = bytes([0, 0, 8, 1]) + np.array([20], ">u4").tobytes() + bytes(20)
    for stem, data in (("train-images-idx3-ubyte", images), ("train-labels-idx1-ubyte", labels),
                       ("t10k-images-idx3-ubyte", images), ("t10k-labels-idx1-ubyte", labels)):
        (mnist / (stem + ".gz")).write_bytes(gzip.compress(data))
    (mnist / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(images)[:-40])


@pytest.fixture
def bad_files(tmp_path, monkeypatch):
    write_bad_files(tmp_path)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def names():
    """What the table's expressions may use: constructors, the functions they call, and with_grad."""
    import numpy as np

    from microgradx import optim
    from microgradx.data import DataFileError, read_csv, read_idx
    from microgradx.losses import cross_entropy
    from microgradx.symbolic_parse import ParseError, parse
    from microgradx.tensor import ShapeError, Tensor
    from microgradx.train import CheckpointError, load_parameters, mlp

    def with_grad(g):
        """A one-parameter list whose parameter (ones) has the gradient g."""
        p = Tensor(np.ones(len(g)))
        p.grad = np.array(g, dtype=np.float64)
        return [p]

    scope = {"float": float, "int": int, "Value": Value, "Tensor": Tensor, "np": np, "optim": optim,
             "with_grad": with_grad, "cross_entropy": cross_entropy, "load_parameters": load_parameters, "mlp": mlp,
             "read_idx": read_idx, "read_csv": read_csv, "parse": parse}
    errors = {"DomainError": DomainError, "DivisionByZeroError": DivisionByZeroError, "TypeError": TypeError,
              "ValueError": ValueError, "ShapeError": ShapeError, "CheckpointError": CheckpointError,
              "DataFileError": DataFileError, "ParseError": ParseError}
    return scope, errors


@pytest.mark.parametrize("row", error_rows(), ids=lambda r: r["expr"])
def test_readme_bad_input_table(row, bad_files):
    scope, errors = names()
    with pytest.raises(errors[row["exc"]]) as info:
        # The README is this repository's own text; its expressions only call the names given here.
        eval(row["expr"], {"__builtins__": {}, **scope})  # noqa: S307
    assert str(info.value).startswith(row["msg"])


CLI_ROW = re.compile(r"^\| `microgradx (?P<args>[^`]+)` \| (?P<status>\d+) \| `(?P<stderr>[^`]+)` \|$")


def cli_rows():
    section = README.read_text().split("## Errors", 1)[1].split("\n## ", 1)[0]
    rows = [m.groupdict() for m in map(CLI_ROW.match, section.splitlines()) if m]
    assert len(rows) >= 5
    return rows


@pytest.mark.parametrize("row", cli_rows(), ids=lambda r: r["args"])
def test_readme_command_line_table(row, bad_files, capsys):
    import shlex

    from microgradx.cli import main

    status = main(shlex.split(row["args"]))
    err = capsys.readouterr().err
    assert status == int(row["status"])
    assert err.startswith(row["stderr"]) and err.count("\n") == 1, err


def test_domain_errors_carry_op_value_and_label():
    with pytest.raises(DomainError) as info:
        Value(-1.0, label="neg").log()
    assert (info.value.op, info.value.value, info.value.label) == ("log", (-1.0,), "neg")
    assert isinstance(info.value, ValueError) and isinstance(info.value, microgradx.MicrogradxError)


def test_division_by_zero_is_also_zero_division_error():
    with pytest.raises(ZeroDivisionError):
        1 / Value(0.0)


def test_readme_lists_every_op():
    table = README.read_text().split("## The ops", 1)[1].split("\n## ", 1)[0]
    for name in microgradx.OPS:
        assert re.search(rf"\b{name}\b", table), name
