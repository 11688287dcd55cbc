"""The layers grader: a zoo of realistic mistakes each caught by exactly its rule with its hint, a correct file
passing with no warning, the template's conventions never becoming false alarms, the reference checked against
central differences, the sandbox's reply check, the reports, the command line and the autograder bundle."""

import json
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from microgradx.cli import main
from microgradx.grading import Assignment, AssignmentError, grade, grade_many, load_assignment, make_autograder
from microgradx.grading.layers import PAIRS, Conventions, central, expected
from microgradx.grading.layers_grade import LayersConfig, build_layer_rules, validate_layers_reply
from microgradx.grading.sandbox import EngineCrash

LAYERS = Path(__file__).parent / "engines" / "layers"
REFERENCE_FILE = LAYERS / "reference.py"
REFERENCE = REFERENCE_FILE.read_text()
FAST = Assignment(kind="layers", examples=8)


@dataclass(frozen=True)
class Bug:
    """A realistic mistake: the ONE rule it must fail, a phrase its hint must contain, and the edits (old -> new)
    that put it into the correct file."""

    name: str
    rule: str
    hint: str
    edits: dict[str, str]


BUGS = [
    Bug("affine_db_not_summed", "backward[affine]", "summed over the batch",
        {"db = np.sum(dout, axis=0)\n    return dx, dw, db": "db = dout\n    return dx, dw, db"}),
    Bug("affine_dw_transposed", "backward[affine]", "dw is transposed",
        {"dw = x.reshape(x.shape[0], -1).T.dot(dout)": "dw = dout.T.dot(x.reshape(x.shape[0], -1))"}),
    Bug("affine_dx_not_reshaped", "backward[affine]", "dx must have x's shape",
        {"dx = dout.dot(w.T).reshape(x.shape)": "dx = dout.dot(w.T)"}),
    Bug("relu_mask_from_output", "backward[relu]", "take it from the input",
        {"return dout * (x > 0)": "return dout * (np.maximum(0, x) >= 0)"}),
    Bug("relu_mask_at_zero", "zero[relu]", "not x >= 0", {"return dout * (x > 0)": "return dout * (x >= 0)"}),
    Bug("sigmoid_caches_input", "backward[sigmoid]", "of the OUTPUT",
        {"out = 1.0 / (1.0 + np.exp(-x))\n    return out, out": "out = 1.0 / (1.0 + np.exp(-x))\n    return out, x"}),
    Bug("tanh_caches_input", "backward[tanh]", "of the OUTPUT",
        {"out = np.tanh(x)\n    return out, out": "out = np.tanh(x)\n    return out, x"}),
    Bug("softmax_not_averaged", "forward[softmax]", "divided by N", {
        "loss = -np.sum(log_probs[np.arange(N), y]) / N": "loss = -np.sum(log_probs[np.arange(N), y])",
        "dx[np.arange(N), y] -= 1\n    dx /= N": "dx[np.arange(N), y] -= 1"}),
    Bug("softmax_no_shift", "large[softmax]", "subtract each row's maximum",
        {"shifted = x - np.max(x, axis=1, keepdims=True)": "shifted = x"}),
    Bug("softmax_no_onehot", "backward[softmax]", "subtract 1", {"    dx[np.arange(N), y] -= 1\n": ""}),
    Bug("svm_counts_correct_class", "forward[svm]", "own margin", {"    margins[np.arange(N), y] = 0\n": ""}),
    Bug("svm_dx_not_averaged", "backward[svm]", "divide dx by N",
        {"dx[np.arange(N), y] -= num_pos\n    dx /= N": "dx[np.arange(N), y] -= num_pos"}),
    Bug("batchnorm_no_mean_term", "backward[batchnorm]", "path through the mean",
        {"dx = (N * dxhat - dxhat.sum(axis=0) - xhat": "dx = (N * dxhat - xhat"}),
    Bug("batchnorm_no_variance_term", "backward[batchnorm]", "path through the variance",
        {"dx = (N * dxhat - dxhat.sum(axis=0) - xhat * (dxhat * xhat).sum(axis=0)) / (N * std)":
         "dx = (N * dxhat - dxhat.sum(axis=0)) / (N * std)"}),
    Bug("batchnorm_test_no_gamma_beta", "test[batchnorm]", "scale by gamma", {
        "out = gamma * (x - running_mean) / np.sqrt(running_var + eps) + beta":
        "out = (x - running_mean) / np.sqrt(running_var + eps)"}),
    Bug("batchnorm_test_batch_stats", "test[batchnorm]", "not the batch's own", {
        "out = gamma * (x - running_mean) / np.sqrt(running_var + eps) + beta":
        "out = gamma * (x - x.mean(axis=0)) / np.sqrt(x.var(axis=0) + eps) + beta"}),
    Bug("batchnorm_momentum_swapped", "running[batchnorm]", "the other way round", {
        "running_mean = momentum * running_mean + (1 - momentum) * mu":
        "running_mean = (1 - momentum) * running_mean + momentum * mu",
        "running_var = momentum * running_var + (1 - momentum) * var":
        "running_var = (1 - momentum) * running_var + momentum * var"}),
    Bug("batchnorm_unbiased_variance", "forward[batchnorm]", "biased variance",
        {"        var = x.var(axis=0)\n": "        var = x.var(axis=0, ddof=1)\n"}),
    Bug("layernorm_no_mean_term", "backward[layernorm]", "path through the mean",
        {"dx = (D * dxhat - dxhat.sum(axis=1, keepdims=True) - xhat": "dx = (D * dxhat - xhat"}),
    Bug("dropout_backward_not_rescaled", "backward[dropout]", "scale like forward", {
        "mask = (np.random.rand(*x.shape) < p) / p\n        out = x * mask":
        "mask = np.random.rand(*x.shape) < p\n        out = x * mask / p"}),
    Bug("dropout_forward_not_rescaled", "forward[dropout]", "divides the kept units", {
        "mask = (np.random.rand(*x.shape) < p) / p\n        out = x * mask":
        "mask = (np.random.rand(*x.shape) < p) / p\n        out = x * (mask > 0)"}),
    Bug("dropout_mask_shared_across_batch", "mask[dropout]", "not for one row",
        {"mask = (np.random.rand(*x.shape) < p) / p": "mask = (np.random.rand(x.shape[1]) < p) / p"}),
    Bug("dropout_test_scaled", "test[dropout]", "returns x unchanged", {"    else:\n        out = x\n":
                                                                        "    else:\n        out = x * p\n"}),
    Bug("conv_kernel_flipped", "backward[conv]", "kernel flipped",
        {"+= w[f] * dout[n, f, i, j]": "+= w[f, :, ::-1, ::-1] * dout[n, f, i, j]"}),
    Bug("conv_db_per_image", "backward[conv]", "summed over the batch",
        {"db = dout.sum(axis=(0, 2, 3))": "db = dout.sum(axis=(2, 3))"}),
    Bug("conv_pad0_slice", "pad0[conv]", "EMPTY",
        {"dx = dxp[:, :, pad:pad + H, pad:pad + W]": "dx = dxp[:, :, pad:-pad, pad:-pad]"}),
    Bug("conv_backward_ignores_stride", "stride2[conv]", "stride 2",
        {"hs, ws = i * stride, j * stride": "hs, ws = i, j"}),
    Bug("conv_width_from_kernel_height", "nonsquare[conv]", "non-square",
        {"W_out = 1 + (W + 2 * pad - WW) // stride\n    xp": "W_out = 1 + (W + 2 * pad - HH) // stride\n    xp"}),
    Bug("pool_backward_overwrites", "overlap[maxpool]", "accumulate",
        {"dx[n, c, i * stride + r, j * stride + q] += dout[n, c, i, j]":
         "dx[n, c, i * stride + r, j * stride + q] = dout[n, c, i, j]"}),
    Bug("pool_all_ties", "ties[maxpool]", "EVERY tied maximum", {
        "r, q = np.unravel_index(np.argmax(window), window.shape)\n"
        "                    dx[n, c, i * stride + r, j * stride + q] += dout[n, c, i, j]":
        "dx[n, c, i * stride:i * stride + ph, j * stride:j * stride + pw] += (window == window.max()) * "
        "dout[n, c, i, j]"}),
    Bug("pool_index_swapped", "nonsquare[maxpool]", "sides swapped",
        {"np.unravel_index(np.argmax(window), window.shape)": "np.unravel_index(np.argmax(window), (pw, ph))"}),
    Bug("groupnorm_per_channel", "forward[groupnorm]", "per channel",
        {"xg = x.reshape(N, G, -1)\n    mu": "xg = x.reshape(N, C, -1)\n    mu"}),
    Bug("rnn_db_not_summed", "backward[rnn]", "summed over the batch",
        {"da.dot(Wh.T), x.T.dot(da), prev_h.T.dot(da), da.sum(axis=0)\n":
         "da.dot(Wh.T), x.T.dot(da), prev_h.T.dot(da), da\n"}),
    Bug("rnn_tanh_of_input", "backward[rnn]", "not from its input", {
        "next_h = np.tanh(x.dot(Wx) + prev_h.dot(Wh) + b)\n    return next_h, (x, prev_h, Wx, Wh, next_h)":
        "a = x.dot(Wx) + prev_h.dot(Wh) + b\n    return np.tanh(a), (x, prev_h, Wx, Wh, a)"}),
    Bug("lstm_torch_gate_order", "forward[lstm]", "PyTorch's order", {
        "i, f, o = sigmoid(a[:, :H]), sigmoid(a[:, H:2 * H]), sigmoid(a[:, 2 * H:3 * H])\n"
        "    g = np.tanh(a[:, 3 * H:])":
        "i, f, o = sigmoid(a[:, :H]), sigmoid(a[:, H:2 * H]), sigmoid(a[:, 3 * H:])\n"
        "    g = np.tanh(a[:, 2 * H:3 * H])"}),
    Bug("lstm_lost_next_h_path", "backward[lstm]", "depends on next_c too",
        {"dc = dnext_c + dnext_h * o * (1 - t ** 2)": "dc = dnext_c"}),
    Bug("embedding_repeats_overwrite", "repeats[embedding]", "np.add.at", {"np.add.at(dW, x, dout)": "dW[x] += dout"}),
]


def _source(bug: Bug) -> str:
    src = REFERENCE
    for old, new in bug.edits.items():
        assert src.count(old) == 1, f"{bug.name}: {old!r} must occur exactly once in the correct file"
        src = src.replace(old, new)
    return src


def _write(tmp_path: Path, name: str, source: str) -> Path:
    path = tmp_path / name
    path.mkdir()
    f = path / "layers.py"
    f.write_text(source)
    return f


@pytest.fixture(scope="module")
def reference_report():
    return grade(REFERENCE_FILE, FAST)


def test_the_correct_file_passes_every_rule_with_no_warning(reference_report):
    rep = reference_report
    assert rep.passed and not rep.setup and rep.notes == [] and rep.not_graded == []
    assert {r.status for r in rep.results} == {"passed"}
    assert rep.score == rep.max_score == sum(r.weight for r in build_layer_rules(rep.ops, FAST))
    assert set(rep.ops) == {p.name for p in PAIRS}


@pytest.mark.parametrize("bug", BUGS, ids=[b.name for b in BUGS])
def test_each_mistake_fails_exactly_its_rule_with_its_hint(bug, tmp_path):
    pair = bug.rule.split("[")[1].rstrip("]")
    rep = grade(_write(tmp_path, bug.name, _source(bug)), FAST, only=[f"*[{pair}]"])
    failed = [r for r in rep.results if r.status == "failed"]
    assert [r.name for r in failed] == [bug.rule], rep.text()
    assert bug.hint in failed[0].hint, failed[0].hint
    assert failed[0].finding.get("cause") == CAUSES.get(bug.name), failed[0].finding.get("cause")
    assert all(r.status in ("passed", "blocked") for r in rep.results if r.name != bug.rule)
    # The counterexample is shrunk and says how to reproduce it.
    assert failed[0].finding["formula"].startswith(pair) and "seed" in failed[0].finding["formula"]


def test_a_counterexample_is_shrunk_to_the_smallest_shape(tmp_path):
    bug = next(b for b in BUGS if b.name == "conv_kernel_flipped")
    rep = grade(_write(tmp_path, "flip", _source(bug)), FAST, only=["*[conv]"])
    f = next(r for r in rep.results if r.status == "failed").finding
    # The smallest case where flipping the kernel changes dx: one image, one channel, one filter of 3x3.
    assert f["formula"].startswith("conv: x (1, 1, "), f["formula"]
    assert "w (1, 1, 3, 3)" in f["formula"] and f["shrunk"]
    row = f["rows"][0]
    # The report shows microgradx's VJP and central differences agreeing, and the file's number differing.
    assert row["name"].startswith("dx[") and abs(row["central"] - row["expected"]) < 1e-5
    assert abs(row["got"] - row["expected"]) > 1e-3


def test_the_other_dropout_convention_is_said_once_instead_of_failing(tmp_path):
    src = REFERENCE.replace("mask = (np.random.rand(*x.shape) < p) / p",
                            "mask = (np.random.rand(*x.shape) >= p) / (1 - p)")
    path = _write(tmp_path, "drop", src)
    rep = grade(path, FAST, only=["*[dropout]"])
    assert rep.passed, rep.text()
    assert len(rep.notes) == 1 and "DROP probability" in rep.notes[0]
    declared = replace(FAST, layers=LayersConfig(conventions=Conventions(dropout_p="drop")))
    rep = grade(path, declared, only=["*[dropout]"])
    assert rep.passed and rep.notes == []
    # Declared "drop", a file keeping p of the units is the one that follows the other convention.
    rep = grade(REFERENCE_FILE, declared, only=["*[dropout]"])
    assert rep.passed and "KEEP probability" in rep.notes[0]


def test_the_other_groupnorm_parameter_shape_is_said_once_instead_of_failing(tmp_path):
    """A file of the years whose template gives gamma and beta as (C,): it indexes them as gamma[None, :, None, None]
    and returns dgamma of shape (C,)."""
    src = REFERENCE.replace("return gamma * xhat + beta, (xhat, std, gamma, G)",
                            "g4, b4 = gamma[None, :, None, None], beta[None, :, None, None]\n"
                            "    return g4 * xhat + b4, (xhat, std, g4, G)")
    src = src.replace("dgamma = np.sum(dout * xhat, axis=(0, 2, 3), keepdims=True)",
                      "dgamma = np.sum(dout * xhat, axis=(0, 2, 3))")
    src = src.replace("dbeta = np.sum(dout, axis=(0, 2, 3), keepdims=True)", "dbeta = np.sum(dout, axis=(0, 2, 3))")
    path = _write(tmp_path, "c_shape", src)
    rep = grade(path, FAST, only=["*[groupnorm]"])
    assert rep.passed and len(rep.notes) == 1 and "shape (C,)" in rep.notes[0], rep.text()
    declared = replace(FAST, layers=LayersConfig(conventions=Conventions(groupnorm_gamma="C")))
    rep = grade(path, declared, only=["*[groupnorm]"])
    assert rep.passed and rep.notes == []


def test_old_files_are_not_false_alarms(tmp_path):
    """Python 2 integer division where the template's sizes divide exactly, xrange, running statistics kept with
    an extra unit axis, parameters unpacked from conv_param.values() in the template's key order."""
    src = REFERENCE.replace("H_out = 1 + (H + 2 * pad - HH) // stride", "H_out = 1 + (H + 2 * pad - HH) / stride")
    src = src.replace("W_out = 1 + (W + 2 * pad - WW) // stride\n    xp",
                      "W_out = 1 + (W + 2 * pad - WW) / stride\n    xp")
    src = src.replace("H_out, W_out = 1 + (H - ph) // stride, 1 + (W - pw) // stride",
                      "H_out, W_out = 1 + (H - ph) / stride, 1 + (W - pw) / stride")
    src = src.replace("    for n in range(N):\n        for f in range(F):\n            for i in range(H_out):\n"
                      "                for j in range(W_out):\n                    window",
                      "    for n in xrange(N):\n        for f in xrange(F):\n            for i in xrange(H_out):\n"
                      "                for j in xrange(W_out):\n                    window")
    src = src.replace('stride, pad = conv_param["stride"], conv_param["pad"]\n    N, C, H, W = x.shape\n    F, _, HH',
                      'stride, pad = conv_param.values()\n    N, C, H, W = x.shape\n    F, _, HH')
    src = src.replace('bn_param["running_mean"] = running_mean\n',
                      'bn_param["running_mean"] = running_mean.reshape(1, -1)\n')
    assert src.count("/ stride") == 4 and "xrange" in src and ".values()" in src and "reshape(1, -1)" in src
    rep = grade(_write(tmp_path, "old", src), FAST, only=["*[conv]", "*[maxpool]", "*[batchnorm]"])
    assert rep.passed and rep.notes == [], rep.text()
    # A division that is NOT exact keeps Python 3's meaning: 1 / N stays 0.5 for N = 2, not Python 2's 0.
    src = REFERENCE.replace("dx[np.arange(N), y] -= 1\n    dx /= N", "dx[np.arange(N), y] -= 1\n    dx *= 1 / N")
    assert "dx *= 1 / N" in src
    rep = grade(_write(tmp_path, "exact", src), FAST, only=["*[softmax]"])
    assert rep.passed, rep.text()


def test_a_signature_taking_stride_and_pad_as_keywords_gets_them_as_keywords(tmp_path):
    src = REFERENCE.replace("def conv_forward_naive(x, w, b, conv_param):\n    stride, pad = conv_param[\"stride\"], "
                            "conv_param[\"pad\"]\n", "def conv_forward_naive(x, w, b, stride=1, pad=0):\n"
                            "    conv_param = {\"stride\": stride, \"pad\": pad}\n")
    assert "stride=1, pad=0" in src
    rep = grade(_write(tmp_path, "kw", src), FAST, only=["*[conv]"])
    assert rep.passed and rep.notes == [], rep.text()


def test_other_names_provided_functions_and_chosen_pairs_come_from_the_assignment(tmp_path):
    src = REFERENCE.replace("def affine_forward(", "def fc_forward(")
    src = src.replace("def affine_backward(", "def fc_backward(")
    path = _write(tmp_path, "names", src)
    toml = tmp_path / "hw.toml"
    toml.write_text('[assignment]\nkind = "layers"\nexamples = 5\n[layers]\npairs = ["affine", "svm", "softmax"]\n'
                    'provided = ["svm_loss"]\n[layers.names]\naffine_forward = "fc_forward"\n'
                    'affine_backward = "fc_backward"\n[weights]\n"backward[*]" = 5\n')
    asg = load_assignment(toml)
    rep = grade(path, asg)
    assert rep.passed and rep.ops == ("affine", "softmax"), rep.text()
    assert rep.not_graded == ["svm_loss (provided by the course)"]
    assert next(r for r in rep.results if r.name == "backward[affine]").weight == 5
    # Without the names the affine pair is not found: not graded when the file is free to choose its pairs...
    rep = grade(path, FAST, only=["*[affine]", "forward[relu]"])
    assert rep.ops and "affine" not in rep.ops
    # ...and a failed rule naming the missing function when the assignment asks for the pair.
    asked = replace(FAST, layers=LayersConfig(pairs=("affine",)))
    rep = grade(path, asked)
    assert rep.results[0].status == "failed" and "affine_forward" in rep.results[0].finding["problem"]


@pytest.mark.parametrize("text, message", [
    ('[assignment]\nkind = "layers"\n[layers]\ndropout_p = "maybe"\n', "dropout_p must be 'keep' or 'drop'"),
    ('[assignment]\nkind = "layers"\n[layers]\npairs = ["convolution"]\n', "unknown ['convolution']"),
    ('[assignment]\nkind = "layers"\n[layers]\nconv_param = ["pad"]\n', "must order the keys"),
    ('[assignment]\nkind = "layers"\n[layers]\ncolour = 1\n', "unknown key layers.colour"),
    ('[layers]\npairs = ["conv"]\n', 'needs kind = "layers"'),
    ('[assignment]\nkind = "tensors"\n', "assignment.kind must be one of"),
])
def test_a_broken_layers_table_is_refused_with_the_key_named(tmp_path, text, message):
    toml = tmp_path / "hw.toml"
    toml.write_text(text)
    with pytest.raises(AssignmentError, match=message.replace("[", r"\[").replace("(", r"\(")):
        load_assignment(toml)


def _cases(variant_filter=lambda pair, v: True):
    options = [(p, v) for p in PAIRS for v in ("base", *(e.variant for e in p.edges)) if variant_filter(p, v)]
    return st.sampled_from(options).flatmap(lambda pv: st.composite(lambda draw: pv[0].draw(draw, pv[1]))())


@settings(max_examples=60, deadline=None)
@given(_cases(lambda p, v: v not in ("zero", "ties", "large")))
def test_the_reference_vjp_agrees_with_central_differences(case):
    """The oracle itself, against an independent one: every gradient entry of microgradx's VJP equals the float64
    central difference of the reference's forward (kinks at 0 and ties are drawn only by their own rules)."""
    conv = Conventions()
    want = expected(case, conv, {"out": case.arrays["x"]} if case.pair == "dropout" else None)
    for name, arr in want.items():
        if not name.startswith("d") or name[1:] not in case.arrays:
            continue
        for idx in list(np.ndindex(arr.shape))[:6]:
            cd = central(case, conv, name, idx, {"out": case.arrays["x"]} if case.pair == "dropout" else None)
            assert abs(cd - arr[idx]) <= 1e-5 * max(1.0, abs(cd)), (case.describe(), name, idx)


# The mistake of the table each zoo file must be diagnosed as (the others get their edge case's hint).
CAUSES = {
    "affine_db_not_summed": "db-not-summed", "affine_dw_transposed": "dw-transposed",
    "affine_dx_not_reshaped": "dx-not-reshaped", "relu_mask_from_output": "relu-mask-everything",
    "relu_mask_at_zero": "relu-mask-at-zero", "sigmoid_caches_input": "sigmoid-derivative-of-input",
    "tanh_caches_input": "tanh-derivative-of-input", "softmax_not_averaged": "softmax-not-averaged",
    "softmax_no_onehot": "softmax-no-onehot", "svm_counts_correct_class": "svm-counts-correct-class",
    "svm_dx_not_averaged": "svm-dx-not-averaged", "batchnorm_no_mean_term": "batchnorm-no-mean-term",
    "batchnorm_no_variance_term": "batchnorm-no-variance-term",
    "batchnorm_test_no_gamma_beta": "batchnorm-test-no-scale-shift",
    "batchnorm_test_batch_stats": "batchnorm-test-batch-stats", "batchnorm_momentum_swapped":
    "batchnorm-momentum-swapped", "batchnorm_unbiased_variance": "batchnorm-unbiased-variance",
    "layernorm_no_mean_term": "layernorm-no-mean-term", "dropout_backward_not_rescaled":
    "dropout-backward-not-rescaled", "dropout_forward_not_rescaled": "dropout-forward-not-rescaled",
    "dropout_mask_shared_across_batch": "dropout-shared-mask", "dropout_test_scaled": "dropout-test-scaled",
    "conv_kernel_flipped": "conv-kernel-flipped", "conv_db_per_image": "conv-db-per-image",
    "conv_pad0_slice": "conv-pad0-slice", "pool_backward_overwrites": "pool-overwrite",
    "pool_all_ties": "pool-all-ties",
    "groupnorm_per_channel": "groupnorm-per-channel", "rnn_db_not_summed": "rnn-db-not-summed",
    "rnn_tanh_of_input": "rnn-tanh-of-input", "lstm_torch_gate_order": "lstm-gate-order",
    "lstm_lost_next_h_path": "lstm-lost-next-h-path", "embedding_repeats_overwrite": "embedding-repeats-overwrite",
}
# Mistakes of the table no zoo file is diagnosed as: each is the same mistake as a tested one in another pair or
# form, or (pool-index-swapped) one whose file crashes on the smallest case, where the edge case's hint says it.
UNTESTED = {"softmax-dx-not-averaged", "svm-not-averaged", "svm-no-correct-gradient",
            "batchnorm-no-mean-or-variance-term", "batchnorm-params-not-summed", "batchnorm-unbiased-running-var",
            "layernorm-unbiased-variance", "layernorm-no-variance-term", "layernorm-no-mean-or-variance-term",
            "layernorm-params-not-summed", "conv-db-not-summed", "conv-padding-not-cropped", "pool-overwrite-window",
            "pool-index-swapped"}


def test_every_hint_of_the_table_is_reached_by_a_zoo_file():
    """Each mistake of the table is what some zoo file is diagnosed as, or is listed as the twin of one that is."""
    every = {m.kind for p in PAIRS for m in p.mistakes}
    assert set(CAUSES.values()) - {"dropout-shared-mask"} <= every
    assert every - set(CAUSES.values()) == UNTESTED


def _reply(**kw):
    base = {"ok": True, "shapes": [[2]], "values": [[1.0, 2.0]], "counts": [1, 0, 0], "seconds": 0.0, "id": 1}
    base.update(kw)
    return json.dumps(base).encode()


ASKED = {"id": 1, "outputs": 1, "state": [], "backward": None}


@pytest.mark.parametrize("line, why", [
    (_reply(values=[[1.0]]), "1 values for shape [2]"),
    (_reply(values=[["1"]]), "values is list"),
    (_reply(counts=[1, 0, 1]), "counts [1, 0, 1]"),
    (_reply(shapes=[[-2]]), "shapes is list"),
    (_reply(id=2), "answers request 2"),
    (_reply(extra=1), "unexpected ['extra']"),
    (b'{"ok": true, "shapes": [[[1]]], "values": [], "counts": [1,0,0], "seconds": 0, "id": 1}', "nested deeper"),
])
def test_nothing_the_layers_worker_sends_is_trusted(line, why):
    with pytest.raises(EngineCrash, match=why.replace("[", r"\[").replace("]", r"\]")):
        validate_layers_reply(line, ASKED)
    with pytest.raises(EngineCrash, match="not asked about"):
        validate_layers_reply(b'{"ok": true, "functions": {"evil": "x"}, "module": "m"}', None, ["relu_forward"])


def test_a_hanging_or_lying_file_fails_its_rules_and_the_grader_carries_on(tmp_path):
    src = REFERENCE.replace("    return dout * (x > 0)\n", "    while True:\n        pass\n")
    fast = replace(FAST, limits=replace(FAST.limits, example=1.0))
    rep = grade(_write(tmp_path, "hang", src), fast, only=["*[relu]", "forward[affine]"])
    by = {r.name: r for r in rep.results}
    assert by["backward[relu]"].status == "failed" and "did not finish" in by["backward[relu]"].finding["problem"]
    assert by["forward[affine]"].status == "passed"  # the sandbox restarted after the hang
    # A file writing its own answer on the grader's pipe at import time gets a setup error, not points.
    liar = "import os, sys\nos.write(int(sys.argv[2]), b'{\"ok\": true, \"functions\": {}, \"module\": \"x\"}\\n')\n"
    rep = grade(_write(tmp_path, "liar", liar + REFERENCE), FAST)
    assert rep.setup and rep.score == 0, rep.text()


def test_a_file_that_cannot_be_graded_is_one_setup_error(tmp_path):
    rep = grade(_write(tmp_path, "syntax", "def relu_forward(x):\n    return x +\n"), FAST)
    assert rep.setup and rep.exit_status == 3 and "not valid Python" in rep.results[0].hint
    rep = grade(_write(tmp_path, "nothing", "def helper():\n    pass\n"), FAST)
    assert rep.setup and "defines none of the graded functions" in rep.results[0].finding["problem"]


def test_the_command_line_writes_every_report_and_grades_in_parallel(tmp_path, capsys):
    bug = next(b for b in BUGS if b.name == "relu_mask_at_zero")
    bad = _write(tmp_path, "bad", _source(bug))
    out = tmp_path / "out"
    out.mkdir()
    code = main(["grade", "--kind", "layers", str(bad), "--examples", "5", "--rules", "*[relu]",
                 "--json", str(out / "r.json"), "--junit", str(out / "r.xml"), "--gradescope", str(out / "gs.json")])
    assert code == 1
    text = capsys.readouterr().out
    assert "FAIL zero[relu]" in text and "hint: relu's gradient at 0 is 0" in text
    data = json.loads((out / "r.json").read_text())
    assert data["exit_status"] == 1 and [r["name"] for r in data["rules"] if r["status"] == "failed"] == ["zero[relu]"]
    assert "<failure" in (out / "r.xml").read_text()
    gs = json.loads((out / "gs.json").read_text())
    assert gs["score"] == gs["max_score"] - 1
    code = main(["grade", "--kind", "layers", str(bad), str(REFERENCE_FILE), "--examples", "5", "--rules", "*[relu]",
                 "--jobs", "2", "--csv", str(out / "g.csv")])
    assert code == 1
    rows = (out / "g.csv").read_text().splitlines()
    assert rows[0].split(",")[-1] == "zero[relu]" and rows[1].endswith(",0") and rows[2].endswith(",1")
    reports = grade_many([str(bad), str(REFERENCE_FILE)], FAST, only=["*[relu]"], jobs=2)
    assert [r.passed for r in reports] == [False, True]


def test_the_autograder_bundle_carries_the_layers_worker_and_kind(tmp_path):
    toml = tmp_path / "hw.toml"
    toml.write_text('[assignment]\nkind = "layers"\nfile = "layers.py"\n[layers]\ndropout_p = "drop"\n')
    names = zipfile.ZipFile(make_autograder(toml, tmp_path / "a.zip")).namelist()
    assert "microgradx/grading/layers_worker.py" in names and "assignment.toml" in names
    assert load_assignment(toml).layers.conventions.dropout_p == "drop"
    toml.write_text('[assignment]\nkind = "layers"\n')
    assert load_assignment(toml).file == "layers.py"


def test_kind_on_the_command_line_must_agree_with_the_assignment(tmp_path, capsys):
    toml = tmp_path / "hw.toml"
    toml.write_text('[assignment]\nname = "scalar"\n')
    assert main(["grade", "--kind", "layers", "--assignment", str(toml), str(REFERENCE_FILE)]) == 2
    assert "contradicts" in capsys.readouterr().err


def test_every_layers_rule_and_pair_is_documented_with_its_weight():
    doc = (Path(__file__).resolve().parents[1] / "docs" / "grading.md").read_text()
    section = doc[doc.index("## The layers homework"):doc.index("## `microgradx.strategies`")]
    for kind, weight in (("forward[pair]", 1), ("backward[pair]", 2), ("edge[pair]", 1)):
        assert f"| `{kind}` | {weight} |" in section
    for pair in PAIRS:
        row = next((line for line in section.splitlines() if line.startswith("| `")
                    and f"`{pair.name}`" in line.split("|")[1]), None)
        assert row is not None, pair.name
        assert f"`{pair.forward}" in row
        for edge in pair.edges:
            assert f"`{edge.name}`" in row, (pair.name, edge.name)
    assert f"each of its {len(BUGS)} entries" in section
