"""The safe expression parser: every op-table function, arithmetic against hand-written formulas, shared
subexpressions, and hostile or malformed strings rejected with a clear ParseError."""

from __future__ import annotations

import builtins
import math

import pytest

import microgradx
from microgradx import OPS, MicrogradxError, Value, count_paths, topological_order
from microgradx.symbolic_parse import FUNCTIONS, ParseError, parse

X, Y, P = 0.7, 0.4, 0.3  # inside every op's domain and away from every kink


def calls():
    for op in OPS.values():
        for name in op.methods:
            if name.startswith("_"):
                continue
            if op.arity == 2:
                yield op, name, f"{name}(x, y)", (Y,)
            elif op.param:
                yield op, name, f"{name}(x)", ()
                yield op, name, f"{name}(x, {P})", (P,)
            else:
                yield op, name, f"{name}(x)", ()


@pytest.mark.parametrize(("op", "name", "text", "extra"), list(calls()), ids=lambda v: v if isinstance(v, str) else "")
def test_every_op_table_function_parses_to_its_row(op, name, text, extra):
    out, leaves = parse(text, x=X, y=Y)
    assert out.op is op and out.parents[0] is leaves["x"]
    x = Value(X)
    args = [Value(Y)] if op.arity == 2 else list(extra)
    direct = getattr(x, name)(*args)
    assert out.data == direct.data and out.partials == direct.partials


def test_the_function_list_is_the_op_tables_methods():
    assert set(FUNCTIONS) == {m for op in OPS.values() for m in op.methods if not m.startswith("_")}
    assert "__abs__" not in FUNCTIONS


def test_two_path_example_against_its_formula():
    out, leaves = parse("cos(w**2) + sin(w**2)", w=2.0)
    out.backward()
    assert out.data == pytest.approx(math.cos(4) + math.sin(4), rel=1e-15)
    assert leaves["w"].grad == pytest.approx(2 * 2.0 * (math.cos(4) - math.sin(4)), rel=1e-14)
    # w**2 written twice is one node, as in the seed's drawing: w, a, cos, sin, o.
    assert len(topological_order(out)) == 5 and count_paths(out, leaves["w"]) == 2
    unshared, leaves = parse("cos(w**2) + sin(w**2)", share=False, w=2.0)
    assert len(topological_order(unshared)) == 6 and count_paths(unshared, leaves["w"]) == 2


@pytest.mark.parametrize(("text", "expected"), [
    ("-x + +y * 2 / 4 - 3", -1.5 + 2.5 * 2 / 4 - 3),
    ("x ** 3 - 2 * x * y", 1.5 ** 3 - 2 * 1.5 * 2.5),
    ("x ** y", 1.5 ** 2.5),
    ("2 ** x", 2 ** 1.5),
    ("leaky_relu(-x, 0.1)", -0.15),
    ("max(x, y) - min(x, 2)", 2.5 - 1.5),
    ("sigmoid(x, 2)", 1 / (1 + math.exp(-3.0))),
    ("exp(1) * pi", math.e * math.pi),
    ("tanh(x * y + 1) / (1 + x * x)", math.tanh(1.5 * 2.5 + 1) / (1 + 1.5 * 1.5)),
])
def test_arithmetic_matches_python(text, expected):
    out, _ = parse(text, x=1.5, y=2.5)
    assert out.data == pytest.approx(expected, rel=1e-14)


def test_leaves_are_labelled_inputs_and_numbers_only_expressions_still_give_a_value():
    out, leaves = parse("x * 2", x=3, y=Value(1.0, label="given"))
    assert leaves["x"].label == "x" and leaves["y"].label == "given" and out.data == 6.0
    assert parse("1 + 2")[0].data == 3.0


def balanced_sum(n: int) -> str:
    """x + x + ... as a balanced tree: many syntax nodes but shallow nesting."""
    return "x" if n == 1 else f"{balanced_sum(n // 2)}+({balanced_sum(n - n // 2)})"


HOSTILE = [
    ("__import__('os')", "double underscores"),
    ("().__class__", "attributes"),
    ("a.__dict__", "attributes"),
    ("9**9**9**9", "exponent"),
    ("lambda: 1", "lambda"),
    ("x" * 1_000_000, "characters"),
    ("tanh(" * 100 + "x" + ")" * 100, "nested"),
    (balanced_sum(300), "syntax nodes"),
    ("[x for x in y]", "ListComp"),
    ("x[0]", "subscripts"),
    ("leaky_relu(x, alpha=0.1)", "keyword"),
    ("exec(x)", "unknown function"),
    ("open", "unknown name"),
    ("x ^ 2", "use \\*\\* for powers"),
    ("'text'", "real numbers"),
    ("1j", "real numbers"),
    ("True", "real numbers"),
    ("x if y else 1", "IfExp"),
    ("f'{x}'", "JoinedStr"),
    ("x; y", "valid expression"),
    ("tanh(*x)", "Starred|\\*arguments"),
    ("(x := 2)", "NamedExpr"),
    ("x < y", "comparisons"),
    ("1e400", "finite"),
    ("10 ** 400", "exponent"),
    ("1 / 0", "division by zero"),
    ("tanh", "is a function"),
    ("max(x)", "takes 2 arguments"),
    ("tanh(x, y)", "takes 1 argument"),
    ("leaky_relu(x, y)", "must be a number"),
    ("q + 1", "unknown name 'q'"),
    ("", "empty"),
]


@pytest.mark.parametrize(("text", "message"), HOSTILE, ids=[t[:20] for t, _ in HOSTILE])
def test_hostile_and_malformed_strings_are_rejected_clearly(text, message):
    with pytest.raises(ParseError, match=message) as info:
        parse(text, x=1.0, y=2.0)
    assert isinstance(info.value, MicrogradxError) and isinstance(info.value, ValueError)
    assert str(info.value).startswith("parse: ") and len(str(info.value)) < 400


def test_domain_errors_from_the_inputs_name_the_op():
    with pytest.raises(microgradx.DomainError, match="log"):
        parse("log(x)", x=-1.0)


def test_bad_input_names_and_values():
    with pytest.raises(ParseError, match="cannot be an input name"):
        parse("x", __class__=1.0)
    with pytest.raises(ParseError, match="cannot be an input name"):
        parse("tanh(tanh)", tanh=1.0)
    with pytest.raises(ParseError, match="needs a number"):
        parse("x", x="1")
    with pytest.raises(ParseError, match="must be a string"):
        parse(b"x", x=1.0)


def test_parse_never_calls_eval_or_exec(monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("eval/exec called")

    monkeypatch.setattr(builtins, "eval", forbidden)
    monkeypatch.setattr(builtins, "exec", forbidden)
    out, _ = parse("tanh(x) * sigmoid(x, 2) + x ** 2", x=0.5)
    assert out.data == pytest.approx(math.tanh(0.5) / (1 + math.exp(-1.0)) + 0.25)


def test_numbers_fold_through_the_op_table_domains():
    import microgradx as mx

    with pytest.raises(mx.ParseError, match="pow"):
        mx.parse("(-8)**0.5 + x", x=1.0)


@pytest.mark.parametrize("text, char", [("ｘ*2", "ｘ"), ("𝐱*2", "𝐱"), ("2*x²", "²"), ("ﬁ + x", "ﬁ")])
def test_characters_python_would_fold_into_other_names_are_refused(text, char):
    """Python reads identifiers in NFKC form, so 'ｘ' and '𝐱' would silently be x: refused, naming the column."""
    import unicodedata

    with pytest.raises(ParseError, match=f"has '{char}' .* at column {text.index(char) + 1}, which Python would "
                                         f"silently read as '{unicodedata.normalize('NFKC', char)}'"):
        parse(text, x=1.0)
    with pytest.raises(ParseError, match="input name"):
        parse("x", **{"ｘ": 1.0})
    out, _ = parse("α * 2", α=1.5)  # letters that NFKC keeps are ordinary names
    assert out.data == 3.0


@pytest.mark.parametrize("text", ["1and x", "1if x else 2", "0x1for x"])
def test_text_python_only_warns_about_is_a_parse_error_and_nothing_is_printed(text, recwarn, capfd):
    with pytest.raises(ParseError, match="not a valid expression at column"):
        parse(text, x=1.0)
    assert not recwarn.list and capfd.readouterr().err == ""


@pytest.mark.parametrize("text, values, cls, column", [
    ("log(0)", {}, microgradx.DomainError, "at column 1 ('log(0)')"),
    ("2 + log(x)", {"x": 0.0}, microgradx.DomainError, "at column 5 ('log(x)')"),
    ("1 + x / y", {"x": 1.0, "y": 0.0}, microgradx.DivisionByZeroError, "at column 5 ('x / y')"),
    ("1/0", {}, ParseError, "at column 1 ('1/0')"),
])
def test_domain_errors_carry_the_column_like_division_by_zero(text, values, cls, column):
    with pytest.raises(cls) as info:
        parse(text, **values)
    assert str(info.value).endswith(column)


def test_an_input_too_large_for_a_float_is_a_parse_error():
    with pytest.raises(ParseError, match="input x is too large for a float"):
        parse("x", x=10**400)
