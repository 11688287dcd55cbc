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


@pytest.mark.parametrize("row", error_rows(), ids=lambda r: r["expr"])
def test_readme_bad_input_table(row):
    exc = {"DomainError": DomainError, "DivisionByZeroError": DivisionByZeroError, "TypeError": TypeError}
    with pytest.raises(exc[row["exc"]]) as info:
        # The README is this repository's own text; its expressions only build Values.
        eval(row["expr"], {"__builtins__": {"float": float}, "Value": Value})  # noqa: S307
    assert str(info.value).startswith(row["msg"])


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
