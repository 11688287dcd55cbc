"""The grader: a zoo of broken engines each caught by the expected rule with a shrunk counterexample, a correct
engine and PyPI micrograd passing, the sandbox surviving hostile code, the reports and the command line."""

import importlib.util
import json
import os
import sys
import textwrap
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from hypothesis import given, settings

from microgradx import OPS
from microgradx.cli import main
from microgradx.grading import Assignment, AssignmentError, Limits, Sandbox, build_rules, grade, load_assignment
from microgradx.grading.rules import check, deep_program, diamond_program, wire
from microgradx.strategies import STUDENT_PARAMS, Program, Step, number_programs, pairs, programs, reuse_programs

ENGINES = Path(__file__).parent / "engines"
# The correct student engine lives with the demos (the grading walkthrough submits it with a bug put in).
CORRECT_FILE = Path(__file__).resolve().parents[1] / "demos" / "data" / "student_engine.py"
CORRECT = CORRECT_FILE.read_text()
FAST = Assignment(examples=12)


@dataclass(frozen=True)
class Bug:
    """A broken engine: the ONE rule it must fail (or warn on), a phrase its hint must contain, and the text edits
    (old -> new) that break the correct engine, or, with no edits, a whole file engines/<name>.py (a rewrite that
    a list of edits would only obscure)."""

    name: str
    bug: str
    rule: str
    hint: str
    edits: dict[str, str]
    status: str = "failed"
    warns: tuple[str, ...] = ()  # warnings that are true of this engine too (their own cause, points kept)


# The zoo. Each `old` occurs exactly once in the correct engine (checked), so editing the correct engine cannot
# silently leave a broken engine correct. Every other rule must pass or be blocked by the one that fails.
BUGS = [
    Bug("relu_assign", "relu's backward assigns (`=`) instead of accumulating (`+=`)", "accumulate[relu]",
        "`=` where `+=` is needed in relu's backward", {
            "self.grad += (1.0 if self.data > 0 else 0.0) * out.grad":
            "self.grad = (1.0 if self.data > 0 else 0.0) * out.grad"}),
    Bug("mul_assign", "mul's backward assigns (`=`) instead of accumulating (`+=`), so x*x gets x, not 2x",
        "accumulate[mul]", "`=` where `+=` is needed in mul's backward", {
            "self.grad += other.data * out.grad": "self.grad = other.data * out.grad",
            "other.grad += self.data * out.grad": "other.grad = self.data * out.grad"}),
    Bug("mul_assign_one_side", "mul's backward assigns (`=`) on its first input only, as in the grading "
        "walkthrough: x*x is still right, (x*x)*(x*x) is not", "accumulate[mul]",
        "`=` where `+=` is needed in mul's backward (for its first input)", {
            "self.grad += other.data * out.grad": "self.grad = other.data * out.grad"}),
    Bug("no_visited", "the topological sort has no visited set, so a shared node is processed once per use",
        "accumulate[add]", "visited set", {
            "topo, seen = [], set()": "topo = []",
            "elif v not in seen:\n                seen.add(v)\n": "else:\n",
            "for c in v._prev if c not in seen)": "for c in v._prev)"}),
    Bug("bfs_order", "backward visits nodes breadth-first from the output (each once), which is not a topological "
        "order when paths of different lengths meet", "order", "breadth-first", {
            "        topo, seen = [], set()\n"
            "        stack = [(self, False)]\n"
            "        while stack:\n"
            "            v, done = stack.pop()\n"
            "            if done:\n"
            "                topo.append(v)\n"
            "            elif v not in seen:\n"
            "                seen.add(v)\n"
            "                stack.append((v, True))\n"
            "                stack.extend((c, False) for c in v._prev if c not in seen)\n":
            "        topo, seen = [self], {self}\n"
            "        for v in topo:\n"
            "            for c in v._prev:\n"
            "                if c not in seen:\n"
            "                    seen.add(c)\n"
            "                    topo.append(c)\n",
            "for v in reversed(topo):": "for v in topo:"}),
    Bug("forward_order", "backward walks the topological order forwards (inputs first) instead of in reverse",
        "gradient[mul]", "walk the topological order in reverse", {"for v in reversed(topo):": "for v in topo:"}),
    Bug("pow_k2", "pow's derivative is hard-coded as 2*x, right only for x**2", "gradient[pow]", "not only n = 2", {
        "k * self.data ** (k - 1) * out.grad": "2 * self.data * out.grad"}),
    Bug("pow_exponent", "pow's derivative forgets to lower the exponent: k * x**k", "gradient[pow]",
        "does not lower the exponent", {"k * self.data ** (k - 1)": "k * self.data ** k"}),
    Bug("pow_at_zero", "pow's derivative is computed as k * out / x, which divides by zero at x = 0",
        "gradient[pow]", "raised", {"k * self.data ** (k - 1)": "k * out.data / self.data"}),
    Bug("tanh_derivative", "tanh's derivative is written 1 - t instead of 1 - t**2", "gradient[tanh]",
        "unknown cause", {"(1 - t * t) * out.grad": "(1 - t) * out.grad"}),
    Bug("exp_derivative", "exp's derivative uses the input x instead of exp(x)", "gradient[exp]", "unknown cause",
        {"self.grad += out.data * out.grad": "self.grad += self.data * out.grad"}),
    Bug("log_derivative", "log's derivative divides by the output log(x) instead of the input x", "gradient[log]",
        "raised", {"out.grad / self.data": "out.grad / out.data"}),
    Bug("relu_no_chain", "relu's backward forgets to multiply by the upstream gradient", "gradient[relu]",
        "forgets the chain rule", {
            "(1.0 if self.data > 0 else 0.0) * out.grad": "1.0 if self.data > 0 else 0.0"}),
    Bug("sigmoid_derivative", "sigmoid's derivative is written s * (1 + s)", "gradient[sigmoid]", "unknown cause",
        {"s * (1 - s)": "s * (1 + s)"}),
    Bug("div_sign", "a hand-written division whose derivative for the denominator lacks the minus sign",
        "gradient[div]", "second input has the wrong sign", {
            "        return self * other ** -1\n":
            "        other = other if isinstance(other, Value) else Value(other)\n"
            '        out = Value(self.data / other.data, (self, other), "/")\n'
            "\n"
            "        def _backward():\n"
            "            self.grad += out.grad / other.data\n"
            "            other.grad += self.data / other.data ** 2 * out.grad\n"
            "        out._backward = _backward\n"
            "        return out\n"}),
    Bug("rsub_reversed", "__rsub__ computes self - other, so 2 - x gives x - 2", "numbers[sub]",
        "swaps its operands", {"return other + (-self)": "return self - other"}),
    Bug("rtruediv_reversed", "__rtruediv__ computes self / other, so 2 / x gives x / 2", "numbers[div]",
        "swaps its operands", {"return other * self ** -1": "return self / other"}),
    Bug("no_wrapping", "__add__ does not wrap plain numbers in a Value, so x + 2 fails", "numbers[add]",
        "wrap the plain number", {
            "        other = other if isinstance(other, Value) else Value(other)\n"
            '        out = Value(self.data + other.data, (self, other), "+")\n':
            '        out = Value(self.data + other.data, (self, other), "+")\n'}),
    Bug("no_seed", "backward() forgets to seed the output's gradient with 1, so every gradient is 0", "seed",
        "out.grad = 1", {"        self.grad = 1.0\n": ""}),
    Bug("mutates_data", "backward() also takes a gradient-descent step, changing every node's data",
        "inputs-unchanged", "never .data", {
            "            v._backward()\n":
            "            v._backward()\n"
            "        for v in topo:\n"
            "            v.data -= 0.01 * v.grad\n"}),
    Bug("tanh_overflow", "tanh computed as (e**2x - 1) / (e**2x + 1), as in the micrograd lecture: it overflows "
        "for x > 354", "extremes[tanh]", "overflows", {
            "t = math.tanh(self.data)": "t = (math.exp(2 * self.data) - 1) / (math.exp(2 * self.data) + 1)"},
        status="warning"),
    Bug("path_walking", "backward pushes the gradient down every path recursively, with no topological order: the "
        "gradients are right, but a chain of diamonds takes exponential time", "linear-time",
        "visit each node once", {}, warns=("deep-graph",)),
    Bug("hang", "backward loops forever (a while loop whose condition never changes)", "seed", "infinite loop", {
        "        self.grad = 1.0\n": "        self.grad = 1.0\n        while topo:\n            pass\n"}),
    Bug("os_exit", "backward calls os._exit, killing the process (e.g. left-over debugging code)", "seed",
        "died", {
            "import math\n": "import math\nimport os\n",
            "        self.grad = 1.0\n": "        self.grad = 1.0\n        os._exit(3)\n"}),
]
ZOO = {b.name: b for b in BUGS}


def mutate(edits: dict[str, str], source: str = CORRECT) -> str:
    """`source` with each `old` replaced by its `new`; every `old` must occur exactly once in `source` and in
    the text edited so far, so that no edit can silently miss or hit two places."""
    text = source
    for old, new in edits.items():
        if source.count(old) != 1 or text.count(old) != 1:
            raise ValueError(f"{old!r} occurs {source.count(old)} times in the correct engine and "
                             f"{text.count(old)} times after the previous edits; an edit must hit exactly one place")
        text = text.replace(old, new)
    return text


def engine_text(bug: Bug) -> str:
    """The broken engine's source: the correct engine edited, opening with a docstring that names the bug."""
    body = mutate(bug.edits).split('"""', 2)[2]  # drop the correct engine's docstring
    return f'"""Bug: {bug.bug}."""{body}'


@pytest.fixture(scope="session")
def zoo_files(tmp_path_factory):
    """Every zoo engine's file by name (the edited ones written to a temporary folder), plus 'correct'."""
    folder = tmp_path_factory.mktemp("engines")
    paths = {"correct": CORRECT_FILE}
    for bug in BUGS:
        paths[bug.name] = folder / f"{bug.name}.py" if bug.edits else ENGINES / f"{bug.name}.py"
        if bug.edits:
            paths[bug.name].write_text(engine_text(bug))
    return paths


@pytest.fixture(scope="module")
def zoo(zoo_files):
    """Every zoo engine and the correct one graded on every rule, two at a time."""
    with ProcessPoolExecutor(max_workers=2) as pool:
        futures = {name: pool.submit(grade, path, FAST) for name, path in zoo_files.items()}
        return {name: f.result() for name, f in futures.items()}


def test_zoo_has_at_least_15_distinct_bugs():
    files = {p.stem for p in ENGINES.glob("*.py")} - {"conftest"}
    assert files == {b.name for b in BUGS if not b.edits}
    texts = [engine_text(b) if b.edits else (ENGINES / f"{b.name}.py").read_text() for b in BUGS]
    assert len(ZOO) == len(BUGS) >= 15 and len(set(texts)) == len(texts) and CORRECT not in texts


@pytest.mark.parametrize("bug", [b for b in BUGS if b.edits], ids=lambda b: b.name)
def test_zoo_edits_each_hit_one_place_and_leave_valid_python(bug):
    for old, new in bug.edits.items():
        assert CORRECT.count(old) == 1 and old != new, old
    compile(engine_text(bug), f"{bug.name}.py", "exec")  # a syntax error would fail every rule for no reason


def test_a_zoo_edit_that_misses_or_hits_twice_is_an_error():
    with pytest.raises(ValueError, match="occurs 0 times"):
        mutate({"no such line": "x"})
    with pytest.raises(ValueError, match="occurs 2 times"):
        mutate({"other = other if isinstance(other, Value) else Value(other)": "pass"})


@pytest.mark.parametrize("bug", BUGS, ids=lambda b: b.name)
def test_each_zoo_engine_fails_exactly_its_one_rule_with_the_right_hint(zoo, bug):
    report = zoo[bug.name]
    by = {r.name: r for r in report.results}
    r = by[bug.rule]
    assert r.status == bug.status, report.text()
    assert bug.hint in r.hint, r.explanation()
    assert r.finding["problem"] and "hint:" in r.explanation()
    assert (r.score == 0) == (bug.status == "failed")
    others = {name: x.status for name, x in by.items() if name != bug.rule and name not in bug.warns}
    assert set(others.values()) <= {"passed", "blocked"}, report.text()
    assert all(by[w].status == "warning" for w in bug.warns)
    # A blocked rule names the rule that failed, not a cascade of its own.
    for x in report.results:
        if x.status == "blocked":
            assert x.finding["blocked_by"] == bug.rule and x.score == 0 and not x.hint
    assert report.max_score == zoo["correct"].max_score  # comparable: every rule counts, run or blocked


@pytest.mark.parametrize("name", ["relu_assign", "mul_assign", "tanh_derivative", "relu_no_chain", "div_sign",
                                  "exp_derivative", "no_visited", "bfs_order"])
def test_wrong_gradients_come_with_a_shrunk_counterexample_both_oracles_agree_on(zoo, name):
    r = next(r for r in zoo[name].results if r.name == ZOO[name].rule)
    f = r.finding
    assert f["shrunk"] and f["problem"] == "gradients differ"
    assert f["steps"] <= 4  # a minimal expression
    wrong = [row for row in f["rows"] if row["wrong"]]
    assert wrong
    for row in wrong:
        assert row["central"] == pytest.approx(row["expected"], rel=1e-4, abs=1e-5)
        assert row["got"] != pytest.approx(row["expected"], rel=1e-6, abs=1e-6)
    # Only inputs the program uses are listed: each one named after the `;` appears in the formula before it.
    body, _, inputs = f["formula"].rpartition("; ")
    for name_ in [part.split(" = ")[0] for part in inputs.split(", ")]:
        assert name_ in body, f["formula"]
    assert "counterexample (shrunk by Hypothesis" in r.explanation()


def test_blocked_rules_in_every_report_format(zoo):
    rep = zoo["mul_assign"]
    blocked = [r for r in rep.results if r.status == "blocked"]
    assert blocked and all(r.score == 0 for r in blocked)
    assert rep.junit().count("<skipped message=\"blocked by accumulate[mul]\"/>") == len(blocked)
    gs = rep.gradescope()
    tests = {t["name"].split(":")[0]: t for t in gs["tests"]}
    for r in blocked:
        t = tests[r.name]
        assert t["status"] == "failed" and t["score"] == 0 and "blocked by accumulate[mul]" in t["output"]
    assert f"1 of {len(rep.results)} rules failed, {len(blocked)} blocked by them." in gs["output"]
    assert "graded ops: add, mul, sub, neg, div, pow" in gs["output"]
    assert rep.text().count("(blocked by accumulate[mul])") == len(blocked)


def test_relu_assign_counterexample_reuses_relu_and_hint_names_plus_equals(zoo):
    r = next(r for r in zoo["relu_assign"].results if r.name == "accumulate[relu]")
    assert r.finding["formula"].count("relu(") >= 1 and "+=" in r.hint


def test_pow_counterexample_uses_an_exponent_other_than_2(zoo):
    r = next(r for r in zoo["pow_k2"].results if r.name == "gradient[pow]")
    assert r.finding["param"] != 2 and "not only n = 2" in r.hint and "n*x**(n - 1)" in r.hint


def test_pow_is_tried_at_exponents_0_and_1_and_at_x_0(zoo):
    # x**1 at 0: the derivative k * out / x divides by zero there and only there.
    r = next(r for r in zoo["pow_at_zero"].results if r.name == "gradient[pow]")
    assert "ZeroDivisionError" in r.finding["problem"] and "v0 = 0" in r.finding["formula"]


def test_crashes_hangs_and_exits_are_reported_not_raised(zoo):
    def problem(name):
        return next(r for r in zoo[name].results if r.name == ZOO[name].rule).finding["problem"]
    assert "did not finish within" in problem("hang")
    assert "exited with status 3" in problem("os_exit")
    assert "did not finish within 2 s" in problem("path_walking")


def test_path_walking_gets_right_gradients_only_slowly(zoo, zoo_files):
    by = {r.name: r.status for r in zoo["path_walking"].results}
    assert by["linear-time"] == "failed"
    report = grade(zoo_files["path_walking"], FAST, only=["order", "accumulate[mul]"])
    assert report.passed, report.text()


def test_correct_engine_passes_every_rule(zoo):
    rep = zoo["correct"]
    assert rep.passed and rep.score == rep.max_score, rep.text()
    assert {r.status for r in rep.results} == {"passed"}, rep.text()


def test_correct_engine_and_micrograd_pass_every_rule_across_seeds():
    import micrograd.engine

    with ProcessPoolExecutor(max_workers=2) as pool:
        correct = [pool.submit(grade, CORRECT_FILE, FAST, seed=s) for s in (1, 2)]
        mg = pool.submit(grade, micrograd.engine.__file__, FAST)
        reports = [f.result() for f in correct]
        mg = mg.result()
    for rep in reports:
        assert rep.passed and rep.score == rep.max_score, rep.text()
        assert not [r for r in rep.results if r.status != "passed"]
        assert rep.ops == ("add", "mul", "sub", "neg", "div", "pow", "relu", "tanh", "exp", "log", "sigmoid")
    assert mg.ops == ("add", "mul", "sub", "neg", "div", "pow", "relu")
    assert mg.passed and mg.score == mg.max_score, mg.text()
    statuses = {r.name: r.status for r in mg.results}
    # micrograd's recursive sort and its inner grads kept between backward() calls: warnings, points kept.
    warned = {name for name, st in statuses.items() if st == "warning"}
    assert warned == {"deep-graph", "backward-twice", "shared-node"}, mg.text()
    assert set(statuses.values()) == {"passed", "warning"}
    for r in mg.results:
        if r.status == "warning":
            assert r.hint and "unknown cause" not in r.hint


def test_deep_graph_fails_micrograd_when_the_assignment_says_so():
    import micrograd.engine

    rep = grade(micrograd.engine.__file__, Assignment(deep_graph="fail"), only=["deep-graph"])
    r = rep.results[0]
    assert r.status == "failed" and "RecursionError" in r.finding["problem"] and not rep.passed


def test_extremes_fail_when_the_assignment_says_so(zoo_files):
    rep = grade(zoo_files["tanh_overflow"], replace(FAST, extremes="fail"), only=["extremes[*]"])
    by = {r.name: r.status for r in rep.results}
    assert by == {"extremes[tanh]": "failed", "extremes[exp]": "passed", "extremes[sigmoid]": "passed"}


def test_reports_are_reproducible_with_a_seed(zoo_files):
    a = grade(zoo_files["tanh_derivative"], FAST, seed=7, only=["gradient[tanh]"])
    b = grade(zoo_files["tanh_derivative"], FAST, seed=7, only=["gradient[tanh]"])
    assert a.results[0].finding == b.results[0].finding


# ---------------------------------------------------------------------------------------------------------
# The sandbox against hostile engines (written here, each bounded so it cannot harm the machine)
# ---------------------------------------------------------------------------------------------------------

def engine(tmp_path, extra_import="", backward_extra="", module_extra="", name="engine.py"):
    text = mutate({
        "import math\n": "import math\nimport os\nimport sys\nimport time\n" + extra_import,
        "        self.grad = 1.0\n":
        "        self.grad = 1.0\n" + textwrap.indent(textwrap.dedent(backward_extra), " " * 8),
    }) + textwrap.dedent(module_extra)
    path = tmp_path / name
    path.write_text(text)
    return path


def test_student_output_and_fake_result_files_do_not_confuse_the_grader(tmp_path, monkeypatch):
    fake = '{"score": 1000, "max_score": 1, "tests": []}'
    path = engine(tmp_path, backward_extra=f"""
        print('{{"id": 1, "ok": true, "data": 0}}')
        print("noise", file=sys.stderr)
        open("results.json", "w").write({fake!r})
        open("grades.csv", "w").write("engine,score\\n")
        """, module_extra=f"""
        print("imported!")
        open("results.json", "w").write({fake!r})
        """)
    out = tmp_path / "out"
    out.mkdir()
    monkeypatch.chdir(out)
    status = main(["grade", str(path), "--rules", "gradient[*],seed", "--examples", "8",
                   "--gradescope", "results.json"])
    assert status == 0
    res = json.loads((out / "results.json").read_text())
    assert res["score"] == res["max_score"] == sum(r.weight for r in build_rules(
        tuple(OPS_STUDENT), Assignment()) if r.name.startswith("gradient[") or r.name == "seed")
    assert sorted(p.name for p in out.iterdir()) == ["results.json"]
    assert not (tmp_path / "grades.csv").exists()


OPS_STUDENT = ("add", "mul", "sub", "neg", "div", "pow", "relu", "tanh", "exp", "log", "sigmoid")


def test_sys_exit_in_backward_is_a_failed_rule(tmp_path):
    rep = grade(engine(tmp_path, backward_extra="sys.exit(0)\n"), FAST, only=["seed"])
    assert "called sys.exit(0)" in rep.results[0].finding["problem"]


# ---------------------------------------------------------------------------------------------------------
# Files that cannot be graded: one setup error, its own exit status, a zero on Gradescope with the message once
# ---------------------------------------------------------------------------------------------------------

def _setup(tmp_path, text, capsys, asg=FAST, name="engine.py"):
    path = tmp_path / name
    path.write_text(text)
    rep = grade(path, asg)
    assert rep.setup and len(rep.results) == 1 and rep.score == 0 and not rep.passed
    # Worth every point of the rules a gradable engine would get, so a zero compares with other scores.
    assert rep.max_score == sum(r.weight for r in build_rules(asg.ops or tuple(OPS_STUDENT[:6]), asg))
    gs = tmp_path / "results.json"
    status = main(["grade", str(path), "--gradescope", str(gs), "--examples", "5"])
    assert status == 3
    res = json.loads(gs.read_text())
    assert res["score"] == 0 and res["tests"] == []
    assert res["output"].count(rep.results[0].finding["problem"].split(" at ")[0]) == 1
    out = capsys.readouterr().out
    assert out.count("SETUP ERROR") == 1 and "FAIL" not in out
    return rep.results[0]


def test_syntax_error_is_one_setup_error_with_the_line(tmp_path, capsys):
    r = _setup(tmp_path, "class Value:\n    def __init__(self, data)\n        self.data = data\n", capsys)
    assert "SyntaxError" in r.finding["problem"] and "engine.py:2" in r.finding["problem"]
    assert "not valid Python" in r.hint


def test_import_error_is_one_setup_error(tmp_path, capsys):
    r = _setup(tmp_path, "import numpy_that_does_not_exist\n", capsys)
    assert "ModuleNotFoundError" in r.finding["problem"] and "standard library" in r.hint


def test_error_in_a_sibling_module_names_the_siblings_line(tmp_path, capsys):
    (tmp_path / "helpers.py").write_text("x = 1\nraise RuntimeError('broken helper')\n")
    r = _setup(tmp_path, "import helpers\n" + CORRECT, capsys)
    assert "RuntimeError: broken helper at helpers.py:2 in <module>" in r.finding["problem"]


def test_sys_exit_at_import_is_one_setup_error(tmp_path, capsys):
    r = _setup(tmp_path, CORRECT + "\nimport sys\nsys.exit('done')\n", capsys)
    assert "sys.exit" in r.finding["problem"] and "__main__" in r.hint


def test_lower_case_value_class_suggests_the_class_setting(tmp_path, capsys):
    text = CORRECT.replace("class Value:", "class value:").replace("Value(", "value(").replace(
        "isinstance(other, Value)", "isinstance(other, value)")
    r = _setup(tmp_path, text, capsys)
    assert r.finding["problem"] == "the file defines no class 'Value' (found nothing)"
    assert 'class = "value"' in r.hint and "rename it to `Value`" in r.hint
    rep = grade(tmp_path / "engine.py", replace(FAST, cls="value"), ops=["add", "mul"], only=["gradient[*]"])
    assert rep.passed and not rep.setup, rep.text()


def test_a_class_with_another_name_is_suggested_by_its_methods(tmp_path, capsys):
    text = CORRECT.replace("class Value:", "class Scalar:").replace("Value(", "Scalar(").replace(
        "isinstance(other, Value)", "isinstance(other, Scalar)")
    r = _setup(tmp_path, text, capsys)
    assert 'class = "Scalar"' in r.hint


def test_training_loop_at_import_is_a_setup_error_that_names_the_main_guard(tmp_path, capsys):
    text = CORRECT + "\n\nfor epoch in range(10 ** 9):\n    loss = Value(1.0) * 2\n"
    asg = replace(FAST, limits=Limits(start=1.0))
    start = time.monotonic()
    path = tmp_path / "engine.py"
    path.write_text(text)
    rep = grade(path, asg)
    assert time.monotonic() - start < 20
    r = rep.results[0]
    assert rep.setup and "did not finish within 1 s while importing" in r.finding["problem"]
    assert "line" in r.hint and "for epoch in range(10 ** 9):" in r.hint and '__name__ == "__main__"' in r.hint


def test_infinite_loop_at_import_without_module_level_code_hint(tmp_path):
    path = tmp_path / "engine.py"
    path.write_text("def spin():\n    while True:\n        pass\n\n\nclass Value:\n    x = spin()\n")
    rep = grade(path, replace(FAST, limits=Limits(start=1.0)))
    assert rep.setup and "infinite loop" in rep.results[0].hint


# ---------------------------------------------------------------------------------------------------------
# The protocol, checked once; near-miss names; engines that are right but unusual
# ---------------------------------------------------------------------------------------------------------

def test_engine_without_mul_reports_it_once_and_blocks_only_what_needs_it(tmp_path):
    text = mutate({"    def __mul__(self, other):": "    def _times(self, other):",
                   "        return self * -1": "        return Value(0.0) - self if False else self._times(-1)",
                   "        return self * other\n": "        return self._times(other)\n",
                   "        return self * other ** -1": "        return self._times(other ** -1)",
                   "        return other * self ** -1": "        return (self ** -1)._times(other)"})
    path = tmp_path / "engine.py"
    path.write_text(text)
    rep = grade(path, FAST)
    by = {r.name: r for r in rep.results}
    failed = [r.name for r in rep.results if r.status == "failed"]
    assert failed == ["protocol"], rep.text()
    assert by["protocol"].finding["missing"] == ["*"] and "__mul__" in by["protocol"].finding["problem"]
    assert rep.text().count("__mul__") == 1
    for name in ("forward[mul]", "gradient[mul]", "accumulate[mul]", "numbers[mul]", "linear-time"):
        assert by[name].status == "blocked", name
    for name in ("gradient[add]", "gradient[tanh]", "accumulate[relu]", "order", "seed"):
        assert by[name].status == "passed", by[name].explanation()


def test_near_miss_names_are_suggested_and_not_graded(tmp_path):
    text = mutate({"    def relu(self):": "    def reLU(self):",
                   "        self.data = data\n": "        self.val = data\n        self.data = data\n"})
    path = tmp_path / "engine.py"
    path.write_text(text)
    rep = grade(path, FAST, only=["forward[*]"])
    assert "relu" not in rep.ops and any("reLU" in n and "relu" in n for n in rep.not_graded)
    assert "not graded: reLU" in rep.text()
    out = tmp_path / "g.csv"
    from microgradx.grading.report import write_csv
    write_csv([rep], str(out))
    header, row = out.read_text().splitlines()[:2]
    assert "ops" in header.split(",") and "not_graded" in header.split(",") and "reLU" in row
    # With the assignment fixing the ops, the missing method is a protocol problem that names the near miss.
    rep = grade(path, replace(FAST, ops=("add", "relu")), only=["forward[*]"])
    proto = next(r for r in rep.results if r.name == "protocol")
    assert "it has `reLU`" in proto.finding["problem"]
    assert {r.name: r.status for r in rep.results if r.name != "protocol"} == {
        "forward[add]": "passed", "forward[relu]": "blocked"}


@pytest.mark.parametrize("old, new, words", [
    ("        self.data = data\n", "        self.val = data\n", "it has `val`"),
    ("    def backward(self):", "    def backwards(self):", "it has `backwards`"),
])
def test_missing_attribute_suggests_its_near_miss(tmp_path, old, new, words):
    path = tmp_path / "engine.py"
    path.write_text(mutate({old: new}))
    rep = grade(path, FAST, ops=["add"])
    proto = rep.results[0]
    assert proto.name == "protocol" and words in proto.finding["problem"]
    assert [r.status for r in rep.results if r.status == "failed"] == ["failed"]  # the protocol entry only


def test_two_file_submission_importing_itself_by_name_gets_one_class(tmp_path):
    # engine.py imports _activations, which imports engine by name: one module, one Value class.
    (tmp_path / "_activations.py").write_text(
        "import math\n\nfrom engine import Value\n\n\ndef tanh(x):\n    t = math.tanh(x.data)\n"
        "    out = Value(t, (x,), 'tanh')\n\n    def _backward():\n        x.grad += (1 - t * t) * out.grad\n"
        "    out._backward = _backward\n    return out\n")
    text = mutate({"    def tanh(self):\n": "    def tanh(self):\n        return _activations.tanh(self)\n\n"
                                             "    def _unused_tanh(self):\n"}) + "\n\nimport _activations  # noqa\n"
    path = tmp_path / "engine.py"
    path.write_text(text)
    rep = grade(path, FAST, only=["gradient[tanh]", "accumulate[tanh]", "order"])
    assert rep.passed and not rep.notes, rep.text()


def test_float32_engine_has_not_mutated_its_inputs(tmp_path):
    # An engine that rounds every number to float32 on input: its own .data before backward is the reference.
    text = mutate({"import math\n": "import math\nimport struct\n",
                   "        self.data = data\n":
                   "        self.data = struct.unpack('f', struct.pack('f', data))[0]\n"})
    path = tmp_path / "engine.py"
    path.write_text(text)
    rep = grade(path, replace(FAST, rel=1e-4, abs=1e-5), only=["inputs-unchanged", "order", "gradient[*]"])
    assert rep.passed and {r.status for r in rep.results} == {"passed"}, rep.text()


def test_gradient_tolerance_scales_with_the_terms_that_cancel():
    # d(x/x)/dx = 1/x - x/x**2 = 0 adds two terms of size 1/x = 1000. An engine that stores float32 is off by
    # a rounding of a term (float32's ulp at 1000 is 6.1e-5), not of their sum; a missing term is off by 1000.
    rule = next(r for r in build_rules(["div"], Assignment()) if r.name == "gradient[div]")
    program = Program((0.001,), (Step("div", (0, 0)),))
    reply = {"ok": True, "data": 1.0}
    assert check(rule, program, {**reply, "grads": [3.05e-5]}, Assignment()) is None
    found = check(rule, program, {**reply, "grads": [1000.0]}, Assignment())
    assert found and found["problem"] == "gradients differ"
    # Where nothing cancels the tolerance stays relative to the gradient itself.
    square = Program((0.001,), (Step("mul", (0, 0)),))
    assert check(rule, square, {**reply, "data": 1e-6, "grads": [0.002 + 3.05e-5]}, Assignment())


def test_nondeterministic_engine_is_reported_as_such(tmp_path):
    # Every other backward() doubles relu's gradient: the same program gets two different answers.
    text = mutate({"            self.grad += (1.0 if self.data > 0 else 0.0) * out.grad":
                   "            Value.calls = getattr(Value, 'calls', 0) + 1\n"
                   "            self.grad += (1.0 if self.data > 0 else 0.0) * out.grad * (1 + Value.calls % 2)"})
    path = tmp_path / "engine.py"
    path.write_text(text)
    rep = grade(path, FAST, ops=["add", "mul", "relu"], only=["gradient[relu]"])
    r = rep.results[0]
    assert r.status == "failed" and "different answers for the same program" in r.finding["problem"]
    assert "crashed" not in r.explanation() and "randomness" in r.hint


def test_deep_graph_keeps_its_point_only_for_recursion(tmp_path):
    path = engine(tmp_path, backward_extra="""
        if len(topo) > 1000:
            raise NotImplementedError("too big")
        """)
    rep = grade(path, FAST, only=["deep-graph"])
    r = rep.results[0]
    assert r.status == "failed" and r.score == 0 and "NotImplementedError" in r.finding["problem"]


def test_rules_that_match_nothing_are_a_usage_error(capsys):
    with pytest.raises(AssignmentError, match="matches no rule"):
        grade(CORRECT_FILE, FAST, only=["nomatch"])
    assert main(["grade", str(CORRECT_FILE), "--rules", "nomatch"]) == 2
    assert "matches no rule" in capsys.readouterr().err


def test_every_rule_kind_is_documented_with_its_weight():
    from microgradx.grading import KINDS

    doc = (Path(__file__).resolve().parents[1] / "docs" / "grading.md").read_text()
    for kind in KINDS:
        row = next((line for line in doc.splitlines() if line.startswith(f"| `{kind.name}")), None)
        assert row is not None, kind.name
        assert f"| {kind.weight:g} |" in row, row


def test_memory_bomb_is_stopped_by_the_address_space_limit(tmp_path):
    path = engine(tmp_path, backward_extra="""
        hoard = []
        while True:
            hoard.append(bytearray(50 * 1024 * 1024))
        """)
    asg = replace(FAST, limits=Limits(memory_mb=256, example=20.0))
    rep = grade(path, asg, only=["seed"])
    assert "MemoryError" in rep.results[0].finding["problem"]


def test_sandbox_protocol_and_restart(tmp_path):
    path = engine(tmp_path)
    with Sandbox(path, probes=["tanh", "cosh"]) as box:
        assert box.hello["methods"] == ["tanh"]
        reply = box.request(wire(Program((3.0,), (Step("mul", (0, 0)),))))
        assert reply["ok"] and reply["data"] == 9.0 and reply["grads"] == [6.0] and reply["grad_out"] == 1.0
        box.kill()
        box.start()
        assert box.request(wire(deep_program(10)))["grads"] == [1.0, 10.0]


# ---------------------------------------------------------------------------------------------------------
# Rules, assignment, reports, command line
# ---------------------------------------------------------------------------------------------------------

def test_fixed_programs_have_the_gradients_their_docstrings_promise():
    out, (x, w1, w2) = diamond_program(10).build()
    out.backward()
    assert x.grad == pytest.approx((0.5 + 0.5) ** 10)
    out, (a, b) = deep_program(50).build()
    out.backward()
    assert (a.grad, b.grad) == (1.0, 50.0)


def test_check_compares_with_the_oracles():
    rule = next(r for r in build_rules(("mul",)) if r.name == "accumulate[mul]")
    p = Program((3.0,), (Step("mul", (0, 0)),))
    ok = {"ok": True, "data": 9.0, "grad_out": 1.0, "grads": [6.0], "after": [3.0]}
    assert check(rule, p, ok, Assignment()) is None
    bad = check(rule, p, {**ok, "grads": [3.0]}, Assignment())
    assert bad["rows"][0]["expected"] == 6.0 and bad["rows"][0]["got"] == 3.0 and bad["rows"][0]["wrong"]
    err = check(rule, p, {"ok": False, "stage": "backward", "error": "TypeError: x", "where": ""}, Assignment())
    assert err["problem"] == "backward raised TypeError: x"


def test_assignment_file(tmp_path):
    path = tmp_path / "hw.toml"
    path.write_text(textwrap.dedent("""
        [assignment]
        name = "HW 3"
        ops = ["add", "mul", "relu"]
        examples = 12
        deep_graph = "fail"
        skip = ["linear-time"]
        [tolerance]
        rel = 1e-5
        [time]
        example = 2
        [limits]
        memory_mb = 512
        [weights]
        "gradient[*]" = 3
        "gradient[relu]" = 5
        [visibility]
        hidden = ["order"]
        after_due_date = ["accumulate[*]"]
        """))
    a = load_assignment(path)
    assert (a.name, a.ops, a.examples, a.deep_graph, a.rel) == ("HW 3", ("add", "mul", "relu"), 12, "fail", 1e-5)
    assert a.limits.example == 2.0 and a.limits.memory_mb == 512
    rules = {r.name: r for r in build_rules(a.ops, a)}
    assert "linear-time" not in rules
    assert rules["gradient[add]"].weight == 3 and rules["gradient[relu]"].weight == 5 and rules["seed"].weight == 1
    assert a.visible("order") == "hidden" and a.visible("accumulate[mul]") == "after_due_date"
    assert a.visible("seed") == "visible"


@pytest.mark.parametrize("text, words", [
    ("[assignment]\nopz = 1\n", "unknown key assignment.opz"),
    ("[assignment]\nops = ['cosh']\n", "unknown op"),
    ("[time]\nexample = -1\n", "must be > 0"),
    ("[visibility]\nsecret = ['x']\n", "unknown visibility"),
    ("[assignment\n", "not valid TOML"),
    ("[assignment]\ndeep_graph = 'maybe'\n", "deep_graph"),
])
def test_bad_assignment_files_are_usage_errors(tmp_path, text, words, capsys):
    path = tmp_path / "hw.toml"
    path.write_text(text)
    with pytest.raises(AssignmentError, match=words):
        load_assignment(path)
    assert main(["grade", str(CORRECT_FILE), "--assignment", str(path)]) == 2
    assert words.split()[0] in capsys.readouterr().err


def test_exit_status_reports_and_csv(tmp_path, capsys, zoo_files):
    correct, broken = str(zoo_files["correct"]), str(zoo_files["rsub_reversed"])
    args = ["--rules", "numbers[*]", "--examples", "10"]
    assert main(["grade", correct, *args, "--json", str(tmp_path / "r.json"),
                 "--junit", str(tmp_path / "j.xml")]) == 0
    assert json.loads((tmp_path / "r.json").read_text())["passed"] is True
    assert main(["grade", broken, *args, "--gradescope", str(tmp_path / "gs.json")]) == 1
    gs = json.loads((tmp_path / "gs.json").read_text())
    assert gs["score"] == 3 and gs["max_score"] == 4 and {"score", "max_score", "execution_time", "tests"} <= set(gs)
    failed = [t for t in gs["tests"] if t["status"] == "failed"]
    assert [t["name"].split(":")[0] for t in failed] == ["numbers[sub]"]
    assert {"name", "number", "score", "max_score", "status", "visibility", "output"} <= set(failed[0])
    assert "2 - x" in failed[0]["output"]
    assert main(["grade", correct, broken, *args, "--jobs", "2", "--csv", str(tmp_path / "g.csv")]) == 1
    rows = (tmp_path / "g.csv").read_text().splitlines()
    assert rows[0].startswith("engine,score,max_score,passed") and len(rows) == 3
    assert main(["grade", "no-such-engine.py"]) == 2
    assert main(["grade"]) == 2
    assert main(["grade", correct, broken, "--gradescope", "x.json"]) == 2
    assert main(["grade", correct, "--ops", "cosh"]) == 2
    capsys.readouterr()


def test_gradescope_result_for_a_missing_submission(tmp_path):
    out = tmp_path / "results.json"
    assert main(["grade", str(tmp_path / "engine.py"), "--gradescope", str(out)]) == 2
    assert json.loads(out.read_text())["score"] == 0


def test_make_autograder_bundle_grades_from_its_own_files(tmp_path, zoo_files):
    import subprocess
    import zipfile

    toml = tmp_path / "hw.toml"
    toml.write_text('[assignment]\nfile = "engine.py"\nexamples = 5\nops = ["add"]\n')
    bundle = tmp_path / "autograder.zip"
    assert main(["grade", "--make-autograder", str(toml), "-o", str(bundle)]) == 0
    src = tmp_path / "source"
    with zipfile.ZipFile(bundle) as z:
        z.extractall(src)
        assert z.getinfo("run_autograder").external_attr >> 16 & 0o111
    assert "microgradx.cli grade" in (src / "run_autograder").read_text()
    assert "hypothesis" in (src / "setup.sh").read_text()
    res = tmp_path / "results.json"
    env = {**os.environ, "PYTHONPATH": str(src)}
    subprocess.run([sys.executable, "-m", "microgradx.cli", "grade", str(zoo_files["rsub_reversed"]),
                    "--assignment", str(src / "assignment.toml"), "--gradescope", str(res), "--rules", "numbers[*]"],
                   env=env, cwd=tmp_path, check=False, capture_output=True)
    assert json.loads(res.read_text())["score"] == 1


# ---------------------------------------------------------------------------------------------------------
# The new strategies
# ---------------------------------------------------------------------------------------------------------

@given(number_programs("div"))
def test_number_programs_put_a_plain_number_beside_an_engine_value(p):
    assert p.numbers == frozenset({0}) and 0 in p.steps[0].args and p.steps[0].args != (0, 0)
    assert all(0 not in s.args for s in p.steps[1:])
    out, leaves = p.build()
    assert len(leaves) == len(p.inputs) - 1


@given(reuse_programs("tanh"))
def test_reuse_programs_use_one_value_twice(p):
    uses = [i for s in p.steps for i in s.args]
    twice = any(uses.count(i) > 1 for i in set(uses))
    repeated_step = len({(s.op, s.args) for s in p.steps}) < len(p.steps)
    assert twice or repeated_step


@settings(max_examples=20)
@given(programs(("add", "pow", "sigmoid"), params=STUDENT_PARAMS))
def test_student_params_select_exponents_and_fix_the_sigmoid_slope(p):
    for s in p.steps:
        if OPS[s.op].param:
            assert s.param in STUDENT_PARAMS[s.op]


@settings(max_examples=20)
@given(pairs(programs(("add", "mul", "tanh")), importlib.util and __import__("microgradx").Value))
def test_pairs_build_the_same_program_twice(pair):
    program, (a, la), (b, lb) = pair
    assert a is not b and a.data == b.data and len(la) == len(lb) == len(program.inputs)


def test_instructor_demo_runs():
    spec = importlib.util.spec_from_file_location(
        "instructor_demo", Path(__file__).parent.parent / "demos" / "grading" / "test_instructor_example.py")
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    for name in dir(demo):
        if name.startswith("test_"):
            getattr(demo, name)()
