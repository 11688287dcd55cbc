"""The tensor grader (``--kind tensor``): a zoo of broken NumPy Tensor engines, each caught by exactly its
expected rule with the right hint; a correct engine passing with no warning; conventions that differ without
being mistakes; hostile engines; the reports, the command line and the autograder bundle."""

import json
import zipfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings

from microgradx.cli import main
from microgradx.grading import Assignment, AssignmentError, grade, load_assignment
from microgradx.grading.sandbox import EngineCrash, validate_reply
from microgradx.grading.tensor_kind import FIELDS, build_tensor_rules, central, reference, sizes
from microgradx.grading.tensor_protocol import TENSOR_OPS
from microgradx.strategies import TensorProgram, TensorStep, tensor_programs

CORRECT_FILE = Path(__file__).resolve().parents[1] / "demos" / "data" / "student_tensor.py"
CORRECT = CORRECT_FILE.read_text()
# A reduced Hypothesis budget: the examples tried first (non-square shapes) find every zoo bug on their own.
FAST = Assignment(kind="tensor", examples=8)


@dataclass(frozen=True)
class Bug:
    """A broken Tensor engine: the ONE rule it must fail, a phrase its hint must contain, the cause the grader
    must name, and the text edits (old -> new) that break the correct engine."""

    name: str
    bug: str
    rule: str
    hint: str
    cause: str
    edits: dict[str, str]


BUGS = [
    Bug("add_unreduced", "add's backward adds the broadcast result's gradient into each operand as it is",
        "broadcast[add]", "sum it down to each operand's shape", "unreduced-error", {
            "            self.grad += unbroadcast(out.grad, self.data.shape)\n"
            "            other.grad += unbroadcast(out.grad, other.data.shape)":
            "            self.grad += out.grad\n            other.grad += out.grad"}),
    Bug("mul_unreduced", "mul's backward keeps the broadcast shape (grad = grad + ..., so it grows)",
        "broadcast[mul]", "sum the gradient over the axes broadcasting added", "unreduced", {
            "            self.grad += unbroadcast(other.data * out.grad, self.data.shape)\n"
            "            other.grad += unbroadcast(self.data * out.grad, other.data.shape)":
            "            self.grad = self.grad + other.data * out.grad\n"
            "            other.grad = other.grad + self.data * out.grad"}),
    Bug("sum_axis", "sum(axis=)'s backward broadcasts the gradient without putting the summed axis back",
        "gradient[sum]", "np.expand_dims(g, axis)", "sum-axis", {
            "            g = out.grad\n            if axis is not None and not keepdims:\n"
            "                g = np.expand_dims(g, axis)\n"
            "            self.grad += np.broadcast_to(g, self.data.shape)\n"
            "        out._backward = _backward\n        return out\n\n    def mean":
            "            self.grad += np.broadcast_to(out.grad, self.data.shape)\n"
            "        out._backward = _backward\n        return out\n\n    def mean"}),
    Bug("matmul_swapped", "@'s backward computes B's gradient as g.T @ A (its transpose)", "gradient[matmul]",
        "B.grad += A.T @ g", "matmul-swapped", {
            "other.grad += self.data.T @ out.grad": "other.grad += out.grad.T @ self.data"}),
    Bug("assign", "add's and mul's backward assign (`=`) instead of accumulating (`+=`)", "accumulate",
        "`=` where `+=` is needed", "overwrite", {
            "            self.grad += unbroadcast(out.grad, self.data.shape)\n"
            "            other.grad += unbroadcast(out.grad, other.data.shape)":
            "            self.grad = unbroadcast(out.grad, self.data.shape)\n"
            "            other.grad = unbroadcast(out.grad, other.data.shape)",
            "            self.grad += unbroadcast(other.data * out.grad, self.data.shape)\n"
            "            other.grad += unbroadcast(self.data * out.grad, other.data.shape)":
            "            self.grad = unbroadcast(other.data * out.grad, self.data.shape)\n"
            "            other.grad = unbroadcast(self.data * out.grad, other.data.shape)"}),
    Bug("dfs_order", "backward() walks the graph depth first from the output (each node once) without a "
        "topological sort", "order", "topological order", "order", {
            "        topo, visited = [], set()\n\n        def build(v):\n            if v not in visited:\n"
            "                visited.add(v)\n                for child in v._prev:\n                    build(child)\n"
            "                topo.append(v)\n        build(self)\n        self.grad = np.ones_like(self.data)\n"
            "        for v in reversed(topo):\n            v._backward()":
            "        self.grad = np.ones_like(self.data)\n        stack, seen = [self], {id(self)}\n"
            "        while stack:\n            v = stack.pop()\n            v._backward()\n"
            "            for child in v._prev:\n                if id(child) not in seen:\n"
            "                    seen.add(id(child))\n                    stack.append(child)"}),
    Bug("exp_input", "exp's backward multiplies by the input instead of the output", "gradient[exp]",
        "exp's derivative is exp(x)", "exp-input", {
            "            self.grad += out.data * out.grad\n        out._backward = _backward\n        return out\n\n"
            "    def log":
            "            self.grad += self.data * out.grad\n        out._backward = _backward\n        return out\n\n"
            "    def log"}),
    Bug("log_sign", "log's backward has the sign flipped", "gradient[log]", "log's derivative is +1/x", "log-sign", {
        "self.grad += out.grad / self.data": "self.grad -= out.grad / self.data"}),
    Bug("mean_not_divided", "mean's backward forgets to divide by the number of elements", "gradient[mean]",
        "divide the gradient by the number of elements", "mean-divide", {
            "self.grad += np.broadcast_to(g, self.data.shape) / n":
            "self.grad += np.broadcast_to(g, self.data.shape)"}),
    Bug("pow_rule", "pow's backward uses p * x**p (the - 1 is missing)", "gradient[pow]", "the - 1 is missing",
        "pow-minus-one", {
            "self.grad += p * self.data ** (p - 1) * out.grad": "self.grad += p * self.data ** p * out.grad"}),
    Bug("relu_mask", "relu's mask is taken from the output with >= (true everywhere)", "gradient[relu]",
        "only where x > 0", "relu-mask", {
            "self.grad += (self.data > 0) * out.grad": "self.grad += (out.data >= 0) * out.grad"}),
    Bug("reshape_back", "reshape's backward does not reshape the gradient back", "gradient[reshape]",
        "out.grad.reshape(x.shape)", "reshape-back", {
            "self.grad += out.grad.reshape(self.data.shape)": "self.grad = self.grad + out.grad"}),
    Bug("transpose_back", "transpose's backward does not transpose the gradient back", "gradient[transpose]",
        "transpose the gradient back", "transpose-back", {
            "self.grad += out.grad.T": "self.grad = self.grad + out.grad"}),
    Bug("sub_sign", "sub's backward gives y +g instead of -g", "gradient[sub]", "the wrong sign", "sign", {
        "other.grad += unbroadcast(-out.grad, other.data.shape)":
        "other.grad += unbroadcast(out.grad, other.data.shape)"}),
    Bug("div_no_chain", "div's backward forgets to multiply x's local derivative by out.grad", "gradient[div]",
        "multiply the local derivative by the upstream gradient", "no-chain", {
            "self.grad += unbroadcast(out.grad / other.data, self.data.shape)":
            "self.grad += unbroadcast(1 / other.data, self.data.shape)"}),
    Bug("no_seed", "backward() never seeds the output's gradient with ones", "seed", "np.ones_like(out.data)",
        "no-seed", {"        build(self)\n        self.grad = np.ones_like(self.data)\n": "        build(self)\n"}),
]


def mutate(edits: dict[str, str]) -> str:
    """The correct engine with each edit applied; every `old` must occur exactly once."""
    text = CORRECT
    for old, new in edits.items():
        if text.count(old) != 1:
            raise ValueError(f"{old!r} occurs {text.count(old)} times in the correct engine, not once")
        text = text.replace(old, new)
    return text


def engine_text(bug: Bug) -> str:
    body = mutate(bug.edits).split('"""', 2)[2]
    return f'"""Bug: {bug.bug}."""{body}'


ENGINES = Path(__file__).parent / "engines" / "tensor"
CONVENTIONS_FILE = ENGINES / "conventions.py"


@pytest.fixture(scope="session")
def tensor_zoo_files(tmp_path_factory):
    """Every zoo engine's file by name, plus 'correct' and 'conventions'."""
    folder = tmp_path_factory.mktemp("tensor_engines")
    paths = {"correct": CORRECT_FILE, "conventions": CONVENTIONS_FILE}
    for bug in BUGS:
        paths[bug.name] = folder / f"{bug.name}.py"
        paths[bug.name].write_text(engine_text(bug))
    return paths


@pytest.fixture(scope="module")
def tensor_zoo(tensor_zoo_files):
    """Every zoo engine, the correct one and the one in other conventions, graded on every rule, two at a time."""
    with ProcessPoolExecutor(max_workers=2) as pool:
        futures = {name: pool.submit(grade, path, FAST) for name, path in tensor_zoo_files.items()}
        return {name: f.result() for name, f in futures.items()}


def test_the_zoo_has_a_distinct_engine_for_each_classic_mistake():
    texts = [engine_text(b) for b in BUGS]
    assert len(BUGS) >= 15 and len(set(texts)) == len(texts) and CORRECT not in texts
    assert len({b.cause for b in BUGS}) == len(BUGS)  # every bug names its own cause


@pytest.mark.parametrize("bug", BUGS, ids=lambda b: b.name)
def test_zoo_edits_each_hit_one_place_and_leave_valid_python(bug):
    for old, new in bug.edits.items():
        assert CORRECT.count(old) == 1 and old != new, old
    compile(engine_text(bug), f"{bug.name}.py", "exec")


def test_a_zoo_edit_that_misses_is_an_error():
    with pytest.raises(ValueError, match="occurs 0 times"):
        mutate({"no such line": "x"})


def test_the_correct_engine_passes_every_rule_with_no_warning_and_no_note(tensor_zoo):
    report = tensor_zoo["correct"]
    assert report.passed and report.score == report.max_score > 0 and report.notes == []
    assert {r.status for r in report.results} == {"passed"}
    assert {r.name for r in report.results} == {r.name for r in build_tensor_rules(TENSOR_OPS)}
    assert all(r.examples >= 1 for r in report.results)


def test_another_courses_conventions_pass_and_are_said_once(tensor_zoo):
    report = tensor_zoo["conventions"]
    assert report.passed and {r.status for r in report.results} == {"passed"}
    assert len(report.notes) == 1
    note = report.notes[0]
    for said in (".value", "None before backward()", "takes the seed", "dim=", "keepdim=", "transpose()",
                 "float32"):
        assert said in note
    assert report.text().count("conventions:") == 1


@pytest.mark.parametrize("bug", BUGS, ids=lambda b: b.name)
def test_each_zoo_engine_fails_exactly_its_one_rule_with_the_right_hint(tensor_zoo, bug):
    report = tensor_zoo[bug.name]
    failed = [r for r in report.results if r.status in ("failed", "warning")]
    assert [r.name for r in failed] == [bug.rule], report.text()
    result = failed[0]
    assert bug.hint in result.hint and result.finding["cause"] == bug.cause, result.explanation()
    # Every other rule passed, or was not run because the failing one comes first.
    for r in report.results:
        if r.status == "blocked":
            assert r.finding["blocked_by"] == bug.rule


@pytest.mark.parametrize("name", ["mul_unreduced", "exp_input", "pow_rule"])
def test_counterexamples_are_shrunk_and_checked_by_central_differences(tensor_zoo, name):
    result = next(r for r in tensor_zoo[name].results if r.status == "failed")
    f = result.finding
    assert f["shrunk"] and len(f["formula"]) < 300, f["formula"]
    wrong = [row for row in f["rows"] if row["wrong"]]
    # The second oracle agrees with the first on the counterexample, and the engine agrees with neither.
    assert wrong and all(row["central"] == row["expected"] != row["got"] for row in wrong)
    assert "central difference" in result.explanation()


def test_one_broken_mul_is_reported_once_not_as_broadcast_or_accumulation_failures(tmp_path):
    path = tmp_path / "engine.py"
    path.write_text(mutate({"self.data * out.grad, other.data.shape": "2 * self.data * out.grad, other.data.shape"}))
    report = grade(path, FAST)
    failed = [r.name for r in report.results if r.status == "failed"]
    assert failed == ["gradient[mul]"], report.text()
    blocked = {r.name for r in report.results if r.status == "blocked"}
    assert {"broadcast[mul]", "accumulate", "order", "programs", "gradient[exp]"} <= blocked


# ---------------------------------------------------------------------------------------------------------
# The strategy and the oracles
# ---------------------------------------------------------------------------------------------------------

@settings(max_examples=30, deadline=None)
@given(tensor_programs())
def test_tensor_programs_agree_with_central_differences_and_end_in_a_scalar(p):
    out, grads = reference(p)
    assert out.shape == ()
    for g, c, x in zip(grads, central(p), p.arrays()):
        assert g.shape == c.shape == x.shape
        np.testing.assert_allclose(g, c, rtol=1e-5, atol=1e-5)


def test_tensor_programs_broadcast_and_reuse_values():
    from hypothesis import find

    broadcasting = find(tensor_programs(("add", "mul")),
                        lambda p: len({shape for shape, _ in p.inputs}) > 1 and
                        any(s.op == "add" and len({p.arrays()[i].shape for i in s.args if i < len(p.inputs)}) == 2
                            for s in p.steps))
    assert broadcasting.formula().startswith("v")
    reused = find(tensor_programs(("mul", "exp")), lambda p: any(s.args.count(s.args[0]) == 2 for s in p.steps))
    assert reused.steps


def test_a_tensor_program_runs_on_a_student_engine_in_its_own_conventions():
    import importlib.util

    spec = importlib.util.spec_from_file_location("conventions_engine", CONVENTIONS_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    p = TensorProgram((((2, 3), (1.0, 2.0, 3.0, 4.0, 5.0, 6.0)),),
                      (TensorStep("sum", (0,), (1, True)), TensorStep("transpose", (1,)), TensorStep("sum", (2,))))
    out, _ = p.build(module.Tensor, {"data": "value", "axis": "dim", "keepdims": "keepdim",
                                     "transpose": "transpose"})
    assert float(out.value) == 21.0


# ---------------------------------------------------------------------------------------------------------
# Hostile engines and the replies: nothing the engine says is trusted
# ---------------------------------------------------------------------------------------------------------

LIAR = '''

class Liar(np.ndarray):
    """An array that says it equals anything, lists and converts itself as ones, and ignores +=."""

    def __eq__(self, other):
        return True

    def tolist(self):
        return [1.0] * self.size

    def __array__(self, *args, **kwargs):
        return np.ones(self.shape)

    def __float__(self):
        return 1.0

    def __iadd__(self, other):
        return self


_init = Tensor.__init__


def _lying_init(self, *args, **kwargs):
    _init(self, *args, **kwargs)
    self.grad = np.zeros_like(self.data).view(Liar)


Tensor.__init__ = _lying_init
'''


def test_an_array_subclass_that_lies_is_read_through_the_base_class(tmp_path):
    path = tmp_path / "engine.py"
    path.write_text(CORRECT + LIAR)
    report = grade(path, FAST)
    seed = next(r for r in report.results if r.name == "seed")
    assert not report.passed and seed.status == "failed" and seed.finding["cause"] == "no-seed"
    # What the grader saw: the zeros really in the array, not the ones its methods claim.
    assert "0" in seed.finding["rows"][0]["got"] and "1" not in seed.finding["rows"][0]["got"]


def test_a_gradient_that_is_not_an_array_is_refused(tmp_path):
    path = tmp_path / "engine.py"
    path.write_text(mutate({"        for v in reversed(topo):\n            v._backward()":
                            "        for v in reversed(topo):\n            v._backward()\n"
                            "        for v in topo:\n            if not v._prev:\n                v.grad = v"}))
    report = grade(path, FAST)
    seed = next(r for r in report.results if r.name == "seed")
    assert seed.status == "failed" and "v0.grad is a Tensor, not a NumPy array" in seed.finding["problem"]
    assert report.score == sum(r.weight for r in report.results if r.name.startswith("forward["))


def test_the_engine_is_never_told_the_expected_gradients():
    from microgradx.grading.tensor_kind import wire

    p = TensorProgram((((2,), (1.0, 3.0)),), (TensorStep("mul", (0, 0)), TensorStep("sum", (1,))))
    request = wire(p, True, {"data": "data"})
    assert set(request) == {"inputs", "steps", "backward", "conv"}
    assert "2.0" not in json.dumps(request["steps"]) and "6.0" not in json.dumps(request)


def _reply(**change):
    good = {"ok": True, "data": [3.0], "shape": [], "dtype": "float64", "seconds": 0.001, "grads": [[1.0, 1.0]],
            "grad_shapes": [[2]], "none": [], "before": [[1.0, 2.0]], "after": [[1.0, 2.0]], "id": 1}
    return json.dumps({**good, **change}).encode()


ASKED = {"id": 1, "inputs": [[[2], [1.0, 2.0]]], "steps": [["sum", [0], None]], "backward": True}


def test_a_well_formed_tensor_reply_is_accepted():
    assert validate_reply(_reply(), ASKED, (), FIELDS, sizes)["grads"] == [[1.0, 1.0]]


@pytest.mark.parametrize("change, why", [
    ({"grads": [[1.0, 1.0, 1.0]]}, "v0.grad has 3 numbers"),
    ({"grad_shapes": [[-2]]}, "grad_shapes is list"),
    ({"grads": [[[1.0], [1.0]]]}, "brackets nested deeper"),
    ({"grads": [[True, 1.0]]}, "grads is list"),
    ({"grads": [[1.0, 1.0]], "none": [0]}, "v0.grad has 2 numbers, its shape [2] has 0"),
    ({"data": [3.0, 4.0]}, "data has 2 numbers"),
    ({"before": [[1.0]]}, "before[0] has 1 numbers"),
    ({"expected": [[2.0, 2.0]]}, "unexpected ['expected']"),
    ({"id": 2}, "answers request 2"),
])
def test_a_forged_or_malformed_tensor_reply_is_the_engines_crash(change, why):
    with pytest.raises(EngineCrash, match="malformed reply") as e:
        validate_reply(_reply(**change), ASKED, (), FIELDS, sizes)
    assert why in e.value.reason


def test_a_greeting_must_name_known_conventions():
    conv = {"data": "data", "grad": "zeros", "seed": "implicit", "axis": "axis", "keepdims": "keepdims",
            "transpose": "T", "reshape": "tuple", "dtype": "float64"}
    hello = {"ok": True, "methods": ["exp"], "module": "engine", "missing": {}, "conventions": conv}
    assert validate_reply(json.dumps(hello).encode(), None, ["exp"], FIELDS, sizes)["conventions"] == conv
    for bad in ({**conv, "data": "__class__"}, {k: v for k, v in conv.items() if k != "seed"}):
        with pytest.raises(EngineCrash, match="conventions"):
            validate_reply(json.dumps({**hello, "conventions": bad}).encode(), None, ["exp"], FIELDS, sizes)


# ---------------------------------------------------------------------------------------------------------
# Setup errors and missing pieces
# ---------------------------------------------------------------------------------------------------------

def test_a_file_without_the_class_is_a_setup_error_worth_every_point(tmp_path):
    path = tmp_path / "engine.py"
    path.write_text(CORRECT.replace("class Tensor:", "class Tensr:"))
    report = grade(path, FAST)
    assert report.setup and report.exit_status == 3
    assert report.max_score == sum(r.weight for r in build_tensor_rules(TENSOR_OPS))
    assert "Tensr" in report.results[0].hint


def test_a_missing_method_blocks_its_rules_instead_of_failing_them(tmp_path):
    path = tmp_path / "engine.py"
    path.write_text(CORRECT.replace("    def relu(self):", "    def Relu(self):"))
    report = grade(path, replace(FAST, ops=("add", "mul", "sum", "relu")))
    status = {r.name: r.status for r in report.results}
    assert status["protocol"] == "failed" and "no method relu()" in report.results[0].finding["problem"]
    assert status["forward[relu]"] == status["gradient[relu]"] == "blocked"
    assert status["gradient[add]"] == status["accumulate"] == "passed"


# ---------------------------------------------------------------------------------------------------------
# The assignment file, the command line, the reports, --jobs and the autograder bundle
# ---------------------------------------------------------------------------------------------------------

def test_the_assignment_declares_the_kind_and_the_conventions(tmp_path):
    toml = tmp_path / "hw.toml"
    toml.write_text('[assignment]\nkind = "tensor"\nclass = "Tensor"\nops = ["add", "sum"]\n'
                    '[conventions]\ndata = "value"\naxis = "dim"\n')
    asg = load_assignment(toml)
    assert asg.kind == "tensor" and asg.ops == ("add", "sum") and asg.conventions == {"data": "value",
                                                                                      "axis": "dim"}
    for text, why in (('[assignment]\nkind = "tensors"\n', "assignment.kind must be one of"),
                      ('[assignment]\nkind = "tensor"\nops = ["tanh"]\n', "unknown op(s) ['tanh']"),
                      ('[assignment]\nkind = "tensor"\n[conventions]\naxis = "axs"\n', "conventions.axis must be"),
                      ('[conventions]\ndata = "value"\n', "describes a Tensor engine")):
        toml.write_text(text)
        with pytest.raises(AssignmentError, match=why.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
            load_assignment(toml)


def test_declared_conventions_are_said_as_declared(tmp_path):
    toml = tmp_path / "hw.toml"
    toml.write_text('[assignment]\nkind = "tensor"\nexamples = 5\nops = ["add", "mul", "sum"]\n'
                    '[conventions]\naxis = "dim"\nkeepdims = "keepdim"\n')
    report = grade(CONVENTIONS_FILE, load_assignment(toml))
    assert report.passed and "dim= (declared)" in report.notes[0] and ".value (detected)" in report.notes[0]


def test_the_command_line_writes_every_report_for_a_tensor_engine(tmp_path, tensor_zoo_files):
    out = {k: tmp_path / f"r.{k}" for k in ("json", "junit", "gradescope")}
    status = main(["grade", "--kind", "tensor", str(tensor_zoo_files["log_sign"]), "--examples", "5",
                   "--json", str(out["json"]), "--junit", str(out["junit"]), "--gradescope", str(out["gradescope"])])
    assert status == 1
    data = json.loads(out["json"].read_text())
    assert [r["name"] for r in data["rules"] if r["status"] == "failed"] == ["gradient[log]"]
    assert '<testcase classname=' in out["junit"].read_text() and "log's derivative is +1/x" in out["junit"].read_text()
    gs = json.loads(out["gradescope"].read_text())
    assert len(gs["tests"]) == len(data["rules"]) and gs["score"] == data["score"] < gs["max_score"]


def test_jobs_grade_several_tensor_engines_into_one_csv(tmp_path, tensor_zoo_files):
    csv_path = tmp_path / "grades.csv"
    engines = [str(tensor_zoo_files[n]) for n in ("correct", "pow_rule", "no_seed")]
    status = main(["grade", "--kind", "tensor", *engines, "--jobs", "2", "--examples", "5", "--csv", str(csv_path)])
    assert status == 1
    import csv

    rows = list(csv.DictReader(csv_path.open()))
    assert [r["engine"] for r in rows] == engines
    assert rows[0]["passed"] == "True" and rows[1]["gradient[pow]"] == "0" and rows[2]["seed"] == "0"


def test_the_autograder_bundle_grades_a_tensor_engine_from_its_own_files(tmp_path, tensor_zoo_files):
    import os
    import subprocess
    import sys

    toml = tmp_path / "hw.toml"
    toml.write_text('[assignment]\nkind = "tensor"\nfile = "engine.py"\nexamples = 5\n')
    bundle = tmp_path / "autograder.zip"
    assert main(["grade", "--make-autograder", str(toml), "-o", str(bundle)]) == 0
    src = tmp_path / "source"
    with zipfile.ZipFile(bundle) as z:
        z.extractall(src)
    assert (src / "microgradx" / "grading" / "tensor_worker.py").is_file()
    res = tmp_path / "results.json"
    subprocess.run([sys.executable, "-m", "microgradx.cli", "grade", str(tensor_zoo_files["exp_input"]),
                    "--assignment", str(src / "assignment.toml"), "--gradescope", str(res),
                    "--rules", "seed,gradient[mul],gradient[exp],forward[*]"],
                   env={**os.environ, "PYTHONPATH": str(src)}, cwd=tmp_path, check=False, capture_output=True)
    results = json.loads(res.read_text())
    failed = [t["name"] for t in results["tests"] if t["status"] == "failed"]
    assert failed == ["gradient[exp]: gradient (vector-Jacobian product) of .exp, no broadcasting"]


@pytest.mark.parametrize("engine", [CORRECT_FILE, CONVENTIONS_FILE], ids=["correct", "conventions"])
def test_correct_engines_pass_the_random_programs_on_a_full_budget(engine):
    report = grade(engine, replace(FAST, examples=60), only=["programs"], seed=7)
    assert report.passed and report.results[0].examples >= 30, report.text()


def test_a_broadcasting_mistake_still_lets_accumulation_and_order_be_graded(tensor_zoo):
    status = {r.name: r.status for r in tensor_zoo["mul_unreduced"].results}
    assert status["broadcast[mul]"] == "failed" and status["accumulate"] == status["order"] == "passed"
    assert status["programs"] == "blocked"


def test_every_tensor_rule_and_cause_is_documented():
    from microgradx.grading.tensor_kind import CAUSES, TENSOR_KINDS

    doc = (Path(__file__).resolve().parents[1] / "docs" / "grading.md").read_text()
    section = doc.split("## NumPy Tensor engines", 1)[1].split("\n## ", 1)[0]
    for kind in TENSOR_KINDS:
        row = next((line for line in section.splitlines() if line.startswith(f"| `{kind.name}")), None)
        assert row is not None and f"| {kind.weight:g} |" in row, kind.name
    for name in CAUSES:
        assert f"`{name}`" in section, name


def test_a_backward_that_changes_data_is_caught_first_with_its_own_hint(tmp_path):
    path = tmp_path / "engine.py"
    path.write_text(mutate({"        for v in reversed(topo):\n            v._backward()":
                            "        for v in reversed(topo):\n            v._backward()\n"
                            "            v.data = v.data - 0.1 * v.grad"}))
    report = grade(path, FAST)
    failed = [r for r in report.results if r.status == "failed"]
    assert [r.name for r in failed] == ["seed"] and failed[0].finding["cause"] == "data-changed"
    assert "never change .data (v0.data changed)" in failed[0].hint
