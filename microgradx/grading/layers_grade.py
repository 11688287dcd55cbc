"""Grade the layers homework (``microgradx grade --kind layers layers.py``): the rules of each function pair in
``layers.PAIRS`` run in order, each call drawn by Hypothesis in this process and run on the student's functions
in the sandbox; microgradx's Tensor reference, its VJP and central differences decide.

>>> [r.name for r in build_layer_rules(("relu",))]
['forward[relu]', 'backward[relu]', 'zero[relu]']
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .assignment import Assignment, AssignmentError, check_rule_patterns, matches
from .layers import (
    PAIR_NAMES,
    PAIRS_BY_NAME,
    Case,
    Conventions,
    Edge,
    Pair,
    central,
    diagnose,
    expected,
    keep_probability,
)
from .report import Report, RuleResult
from .sandbox import REPLY_FIELDS, EngineCrash, Sandbox, check_fields, decode_reply, malformed

__all__ = ["LayersConfig", "parse_layers", "build_layer_rules", "grade_layers", "crashed_layers",
           "validate_layers_reply", "request", "LayerRule"]

UNKNOWN = "unknown cause (none of the usual mistakes reproduces these numbers)"
MAX_DIMS = 8
RATE_TOLERANCE = 0.06


@dataclass(frozen=True)
class LayersConfig:
    """The ``[layers]`` table of an assignment file: which pairs are graded, the file's names for the template's
    functions, the functions the course provides (never graded) and the template's conventions.

    >>> LayersConfig(names={"affine_forward": "fc_forward"}).name("affine_forward")
    'fc_forward'
    """

    pairs: tuple[str, ...] | None = None     # None: every pair the file defines
    names: dict[str, str] = field(default_factory=dict)
    provided: tuple[str, ...] = ()
    conventions: Conventions = Conventions()

    def name(self, template: str) -> str:
        """The file's name for the template's function ``template``."""
        return self.names.get(template, template)


def parse_layers(table: dict, where: str) -> LayersConfig:
    """The ``[layers]`` table read and checked; unknown keys, pairs and functions are errors, not ignored.

    >>> parse_layers({"pairs": ["conv"], "dropout_p": "drop"}, "hw.toml").conventions.dropout_p
    'drop'
    """
    known = {"pairs", "names", "provided", "dropout_p", "groupnorm_gamma", "conv_param", "pool_param"}
    for key in table:
        if key not in known:
            raise AssignmentError(f"{where}: unknown key layers.{key} (known: {', '.join(sorted(known))})")
    functions = {f for p in PAIRS_BY_NAME.values() for f in p.functions()}

    def names_list(key: str, allowed: set[str] | tuple[str, ...]) -> tuple[str, ...]:
        value = table[key]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise AssignmentError(f"{where}: layers.{key} must be a list of names, got {value!r}")
        bad = [v for v in value if v not in allowed]
        if bad:
            raise AssignmentError(f"{where}: layers.{key}: unknown {bad}; known: {', '.join(sorted(allowed))}")
        return tuple(value)

    kw: dict[str, Any] = {}
    if "pairs" in table:
        kw["pairs"] = names_list("pairs", PAIR_NAMES)
    if "provided" in table:
        kw["provided"] = names_list("provided", functions)
    if "names" in table:
        names = table["names"]
        if not isinstance(names, dict) or not all(isinstance(v, str) and v.isidentifier() for v in names.values()):
            raise AssignmentError(f"{where}: [layers.names] maps template names to the file's function names")
        bad = [k for k in names if k not in functions]
        if bad:
            raise AssignmentError(f"{where}: layers.names: unknown template function(s) {bad}")
        kw["names"] = dict(names)
    conv: dict[str, Any] = {}
    if "dropout_p" in table:
        if table["dropout_p"] not in ("keep", "drop"):
            raise AssignmentError(f"{where}: layers.dropout_p must be 'keep' or 'drop', got {table['dropout_p']!r}")
        conv["dropout_p"] = table["dropout_p"]
    if "groupnorm_gamma" in table:
        shapes = {"(1, C, 1, 1)": "1C11", "(C,)": "C"}
        if table["groupnorm_gamma"] not in shapes:
            raise AssignmentError(f"{where}: layers.groupnorm_gamma must be \"(1, C, 1, 1)\" or \"(C,)\", got "
                                  f"{table['groupnorm_gamma']!r}")
        conv["groupnorm_gamma"] = shapes[table["groupnorm_gamma"]]
    for key in ("conv_param", "pool_param"):
        if key in table:
            want = getattr(Conventions(), key)
            order = table[key]
            if not isinstance(order, list) or sorted(order) != sorted(want):
                raise AssignmentError(f"{where}: layers.{key} must order the keys {list(want)}, got {order!r}")
            conv[key] = tuple(order)
    kw["conventions"] = Conventions(**conv)
    return LayersConfig(**kw)


# ---------------------------------------------------------------------------------------------------------
# The wire: requests and the validation of replies
# ---------------------------------------------------------------------------------------------------------

def _encode(v: Any) -> list:
    if isinstance(v, np.ndarray):
        kind = "i" if v.dtype.kind in "iu" else "f"
        return ["array", list(v.shape), [int(a) if kind == "i" else float(a) for a in v.ravel()], kind]
    if isinstance(v, dict):
        return ["dict", [[k, _encode(x)] for k, x in v.items()]]
    if isinstance(v, str):
        return ["str", v]
    if v is None:
        return ["none"]
    return ["num", v]


def _ordered(param: dict, pair: Pair, conv: Conventions) -> dict:
    """The dict argument built in the template's key order (some files unpack ``conv_param.values()``)."""
    order = {"conv": conv.conv_param, "maxpool": conv.pool_param}.get(pair.name)
    return {k: param[k] for k in order} if order else dict(param)


def _shaped(name: str, value: np.ndarray, pair: Pair, conv: Conventions) -> np.ndarray:
    """A parameter in the shape the template declares: group norm's gamma and beta are (1, C, 1, 1) or (C,)."""
    if pair.name == "groupnorm" and name in ("gamma", "beta") and conv.groupnorm_gamma == "1C11":
        return value.reshape(1, -1, 1, 1)
    return value


def request(case: Case, cfg: LayersConfig, backward: bool = True, conv: Conventions | None = None,
            signature: str | None = None) -> dict:
    """The call as the worker reads it: function names, encoded arguments, upstream gradients, what to read back.
    ``signature`` is the forward function's parameter names (``"x,w,b,conv_param"``), as the file defines it.

    >>> c = Case("relu", {"x": np.ones((1, 1))}, None, (np.ones((1, 1)),), 0)
    >>> r = request(c, LayersConfig()); r["forward"], r["backward"], r["args"][0][:2]
    ('relu_forward', 'relu_backward', ['array', [1, 1]])
    """
    conv = conv or cfg.conventions
    pair = PAIRS_BY_NAME[case.pair]
    args = [_encode(_shaped(k, case.arrays[k], pair, conv)) for k in pair.inputs]
    args += [_encode(v) for v in (case.numbers or {}).values()]
    state: list = []
    kwargs: list = []
    params = (signature or "").split(",")
    if case.param is not None and case.param and pair.param not in params and all(k in params for k in case.param):
        # A signature such as conv_forward(x, w, b, stride=1, pad=0): the dict's entries as keyword arguments.
        kwargs = [[k, _encode(v)] for k, v in _ordered(case.param, pair, conv).items()]
    elif case.param is not None:
        args.append(_encode(_ordered(case.param, pair, conv)))
        if case.mode == "train":
            state = [[len(args) - 1, k] for k in pair.state if k in case.param]
    back = backward and not pair.loss
    req = {"forward": cfg.name(pair.forward), "args": args, "kwargs": kwargs, "outputs": len(pair.outputs),
           "names": list(pair.outputs),
           "state": state, "cache": not pair.loss, "backward": cfg.name(pair.backward) if back else None}
    if back:
        req.update(douts=[_encode(d) for d in case.douts], grads=len(pair.grads), grad_names=list(pair.grads))
    return req


def _shapes(x: Any) -> bool:
    return type(x) is list and all(type(s) is list and len(s) <= MAX_DIMS and all(type(d) is int and d >= 0 for d in s)
                                   for s in x)


def _value_lists(x: Any) -> bool:
    number = REPLY_FIELDS["forward"]["data"]
    return type(x) is list and all(type(v) is list and all(number(a) for a in v) for v in x)


def _counts(x: Any) -> bool:
    return type(x) is list and len(x) == 3 and all(type(c) is int and c >= 0 for c in x)


_RESULT = {"ok": REPLY_FIELDS["forward"]["ok"], "shapes": _shapes, "values": _value_lists, "counts": _counts,
           "seconds": REPLY_FIELDS["forward"]["data"]}
LAYER_REPLY_FIELDS = {"greeting": {"ok": REPLY_FIELDS["greeting"]["ok"], "functions": REPLY_FIELDS["greeting"]["near"],
                                   "module": REPLY_FIELDS["greeting"]["module"]},
                      "failure": REPLY_FIELDS["failure"], "forward": _RESULT, "backward": _RESULT}


def validate_layers_reply(line: bytes, asked: dict | None = None, probes: Sequence[str] = ()) -> dict:
    """The layers worker's message decoded and checked like the scalar worker's (``sandbox.validate_reply``),
    against ``LAYER_REPLY_FIELDS``; besides, a result has one shape per list of values, exactly as many values
    as its shape holds and the counts of outputs, dict entries and gradients the request asked for; a
    greeting names only functions that were asked about.

    >>> validate_layers_reply(b'{"ok": true, "shapes": [[1]], "values": [[2.0]], "counts": [1, 0, 0], '
    ...                       b'"seconds": 0.1, "id": 4}', {"id": 4, "outputs": 1, "state": [], "backward": None})
    {'ok': True, 'shapes': [[1]], 'values': [[2.0]], 'counts': [1, 0, 0], 'seconds': 0.1, 'id': 4}
    """
    reply = check_fields(decode_reply(line, asked), asked, LAYER_REPLY_FIELDS, probes)
    if asked is None:
        if reply.get("ok") and not set(reply["functions"]) <= set(probes):
            raise malformed("functions that were not asked about")
        return reply
    if not reply.get("ok"):
        return reply
    want = [asked["outputs"], len(asked.get("state", ())), asked.get("grads", 0) if asked.get("backward") else 0]
    if reply["counts"] != want:
        raise malformed(f"counts {reply['counts']}, the call asked for {want}")
    if not len(reply["shapes"]) == len(reply["values"]) == sum(want):
        raise malformed("the shapes and values do not match the counts")
    for shape, values in zip(reply["shapes"], reply["values"]):
        if int(np.prod(shape, dtype=np.int64)) != len(values):
            raise malformed(f"{len(values)} values for shape {shape}")
    return reply


def _unpack(reply: dict, pair: Pair, case: Case) -> dict[str, np.ndarray]:
    """The file's arrays by name (a loss function's second output is its dx)."""
    arrays = [np.array(v, dtype=np.float64).reshape(s) for s, v in zip(reply["shapes"], reply["values"])]
    n_out, n_state, _ = reply["counts"]
    got = dict(zip(pair.outputs, arrays[:n_out]))
    state = [k for k in pair.state if case.param and k in case.param and case.mode == "train"]
    got.update(zip(state, arrays[n_out:n_out + n_state]))
    got.update(zip(pair.grads, arrays[n_out + n_state:]))
    return got


# ---------------------------------------------------------------------------------------------------------
# Rules
# ---------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LayerRule:
    """One graded property of one pair: ``forward[conv]``, ``backward[conv]`` or an edge case ``pad0[conv]``."""

    name: str
    pair: str
    title: str
    weight: float
    needs: tuple[str, ...]
    variant: str = "base"
    compares: tuple[str, ...] = ("forward",)
    edge: Edge | None = None


def _rules_of(pair: Pair) -> list[LayerRule]:
    p = pair.name
    first = [e for e in pair.edges if e.compares == ("rate",)]
    pre = tuple(f"{e.name}[{p}]" for e in first)
    rules = [LayerRule(f"{e.name}[{p}]", p, f"{pair.title}: {e.title}", e.weight, (), e.variant, e.compares, e)
             for e in first]
    what = "the loss" if pair.loss else "forward pass"
    rules.append(LayerRule(f"forward[{p}]", p, f"{pair.title}: {what} ({pair.plain})", 1.0, pre))
    rules.append(LayerRule(f"backward[{p}]", p, f"{pair.title}: {'dx' if pair.loss else 'backward pass'} "
                                                f"({pair.plain})", 2.0, (f"forward[{p}]",), compares=("backward",)))
    for e in pair.edges:
        if e in first:
            continue
        needs = (f"backward[{p}]",) if "backward" in e.compares or e.compares in (("ties",),) else (f"forward[{p}]",)
        rules.append(LayerRule(f"{e.name}[{p}]", p, f"{pair.title}: {e.title}", e.weight, needs, e.variant,
                               e.compares, e))
    return rules


def build_layer_rules(pairs: Sequence[str], assignment: Assignment | None = None) -> list[LayerRule]:
    """The rules for ``pairs``, in the table's order, without those the assignment skips, with its weights.

    >>> [r.name for r in build_layer_rules(("dropout",))][:3]
    ['rate[dropout]', 'forward[dropout]', 'backward[dropout]']
    """
    asg = assignment or Assignment()
    out = []
    for name in PAIR_NAMES:
        if name in pairs:
            for r in _rules_of(PAIRS_BY_NAME[name]):
                if not asg.skipped(r.name):
                    out.append(dataclasses.replace(r, weight=asg.weight(r.name, r.weight)))
    return out


@dataclass
class _State:
    asg: Assignment
    cfg: LayersConfig
    conv: Conventions
    missing: dict[str, str]
    status: dict[str, str] = field(default_factory=dict)
    blocked_by: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    signatures: dict[str, str] = field(default_factory=dict)  # function -> its parameter names, from the greeting


class _Mismatch(Exception):
    def __init__(self, finding: dict, case: Case, got: dict):
        super().__init__(finding["problem"])
        self.finding, self.case, self.got = finding, case, got


class _Abort(BaseException):
    """Stop Hypothesis at once: the file crashed, hung or the rule ran out of time (no shrinking)."""

    def __init__(self, finding: dict, case: Case | None):
        super().__init__(finding["problem"])
        self.finding, self.case = finding, case


def _index(idx: tuple[int, ...]) -> str:
    return "[" + ", ".join(str(i) for i in idx) + "]" if idx else ""


def _same_shape(pair: Pair, name: str, got: np.ndarray, want: np.ndarray) -> bool:
    if got.shape == want.shape:
        return True
    # NOTE: parameters and running statistics stored with extra unit axes ((1, D) for (D,)) hold the same numbers.
    return name in pair.loose and got.size == want.size and np.squeeze(got).shape == np.squeeze(want).shape


def _compare(case: Case, names: Sequence[str], got: dict, want: dict, st: _State) -> tuple[list, list[str]]:
    """The rows of a finding (one per wrong array, at its worst entry) and the names of the wrong arrays."""
    pair = PAIRS_BY_NAME[case.pair]
    rows, wrong = [], []
    for name in names:
        w = np.asarray(want[name])
        g = got.get(name)
        if g is None:
            continue
        if not _same_shape(pair, name, g, w):
            rows.append({"name": f"{name}.shape", "expected": str(tuple(w.shape)), "got": str(tuple(g.shape)),
                         "wrong": True})
            wrong.append(name)
            continue
        g = g.reshape(w.shape)
        bad = ~np.isclose(g, w, rtol=st.asg.rel, atol=st.asg.abs) | ~np.isfinite(g)
        if not bad.any():
            continue
        wrong.append(name)
        err = np.where(bad, np.abs(np.nan_to_num(g - w, nan=np.inf)), -1.0)
        idx = tuple(int(i) for i in np.unravel_index(int(np.argmax(err)), w.shape)) if w.ndim else ()
        cd = central(case, st.conv, name, idx, got) if name in pair.grads and name[1:] in case.arrays and \
            case.arrays[name[1:]].dtype.kind == "f" else None
        rows.append({"name": f"{name}{_index(idx)}", "expected": float(w[idx]), "got": float(g[idx]),
                     "central": cd, "wrong": True, "entries_wrong": int(bad.sum()), "entries": int(bad.size)})
    return rows, wrong


def _finding(case: Case | None, problem: str, rows: list | None = None, **extra: Any) -> dict:
    return {"formula": case.describe() if case is not None else "", "problem": problem, "rows": rows or [], **extra}


def _check(rule: LayerRule, case: Case, reply: dict, st: _State) -> tuple[dict | None, dict]:
    """A finding when the file's answer to ``case`` is wrong for ``rule`` (None when right), and its arrays."""
    pair = PAIRS_BY_NAME[case.pair]
    if not reply.get("ok"):
        where = f" at {reply['where']}" if reply.get("where") else ""
        return _finding(case, f"{reply.get('stage', 'forward')} raised {reply.get('error')}{where}",
                        error=str(reply.get("error", ""))), {}
    got = _unpack(reply, pair, case)
    if rule.compares == ("rate",):
        return _check_rate(case, got, st), got
    if rule.compares == ("mask",):
        mask = got["out"] != 0
        same = all((mask[k] == mask[0]).all() for k in range(1, mask.shape[0]))
        return (_finding(case, "every example of the batch has the same dropout mask", cause="dropout-shared-mask")
                if same else None), got
    want = expected(case, st.conv, got)
    groups = []
    if "forward" in rule.compares or rule.compares == ("ties",):
        groups.append(("the forward value is wrong" if not pair.loss else "the loss is wrong", pair.forward_names()))
    if "state" in rule.compares:
        groups.append(("the running statistics are wrong", tuple(k for k in pair.state if k in want)))
    if "backward" in rule.compares:
        groups.append(("gradients differ", pair.grad_names()))
    for problem, names in groups:
        rows, wrong = _compare(case, names, got, want, st)
        if wrong:
            return _finding(case, problem, rows, wrong=wrong), got
    if rule.compares == ("ties",):
        return _check_ties(case, got, st), got
    return None, got


def _check_rate(case: Case, got: dict, st: _State) -> dict | None:
    kept = float((got["out"] != 0).mean())
    keep = keep_probability(case, st.conv)
    # NOTE: 2000 units keep p of them give or take 0.01: 0.06 is six standard deviations, no false alarm.
    if abs(kept - keep) <= RATE_TOLERANCE:
        return None
    if abs(kept - (1.0 - keep)) <= RATE_TOLERANCE:
        other = "drop" if st.conv.dropout_p == "keep" else "keep"
        st.conv = dataclasses.replace(st.conv, dropout_p=other)
        st.notes.append(f"dropout: the file treats dropout_param['p'] as the {other.upper()} probability (it kept "
                        f"{kept:.0%} of the units with p = {case.param['p']}); the assignment's template says "
                        f"{'drop' if other == 'keep' else 'keep'}. Graded by the file's own convention.")
        return None
    return _finding(case, f"the fraction of units kept is {kept:.3f}, expected {keep:g} (p = {case.param['p']} is the "
                          f"{st.conv.dropout_p} probability)",
                    [{"name": "fraction kept", "expected": keep, "got": kept, "wrong": True}])


def _check_ties(case: Case, got: dict, st: _State) -> dict | None:
    """On a tie any ONE maximal entry may take the window's gradient: each window's dx must add up to its dout
    and sit on maximal entries only (the windows of this rule do not overlap)."""
    p, x, d, dx = case.param, case.arrays["x"], case.douts[0], got["dx"]
    ph, pw, s = p["pool_height"], p["pool_width"], p["stride"]
    for i in range(d.shape[2]):
        for j in range(d.shape[3]):
            win = (slice(None), slice(None), slice(i * s, i * s + ph), slice(j * s, j * s + pw))
            part, g = x[win], dx[win]
            top = part == part.max(axis=(2, 3), keepdims=True)
            total = g.sum(axis=(2, 3))
            off = np.abs(np.where(top, 0.0, g)).max()
            bad = ~np.isclose(total, d[:, :, i, j], rtol=st.asg.rel, atol=st.asg.abs)
            if bad.any() or off > st.asg.abs:
                a, b = (int(v) for v in np.argwhere(bad)[0]) if bad.any() else (0, 0)
                return _finding(case, f"the window at output ({i}, {j}) passes back {total[a, b]:.6g}, not its "
                                      f"dout {d[a, b, i, j]:.6g}, or gives gradient to an entry that is not a maximum",
                                [{"name": f"dx window sum [{a}, {b}, {i}, {j}]", "expected": float(d[a, b, i, j]),
                                  "got": float(total[a, b]), "wrong": True}], wrong=["dx"])
    return None


def _hint(rule: LayerRule, finding: dict, case: Case | None, got: dict, st: _State) -> str:
    err = finding.get("error", "")
    problem = finding.get("problem", "")
    if finding.get("cause") == "dropout-shared-mask":
        return ("draw the mask for the whole input, np.random.rand(*x.shape) < p, not for one row (a mask of shape "
                "(D,) is broadcast to every example)")
    if case is not None and got and finding.get("wrong"):
        mistake = diagnose(case, got, finding["wrong"], st.asg.rel, st.asg.abs, rule.variant)
        if mistake is not None:
            finding["cause"] = mistake.kind
            return mistake.text
    edge = rule.edge.hint if rule.edge is not None else ""
    if "float' object cannot be interpreted as an integer" in err:
        return "a size is a float: use integer division (//) for output sizes such as 1 + (H + 2 * pad - HH) // stride"
    if "returned" in err and "expected" in err:
        return "return exactly what the template's docstring lists, in that order"
    if "did not finish within" in problem:
        return "the function did not finish: an infinite loop, or loops over far more than the output's entries?"
    if err or "engine process" in problem or "private pipe" in problem:
        return "the function raised an error or died on this call: the problem line says where" + \
            (f"; {edge}" if edge else "")
    if rule.edge is not None:
        return f"{UNKNOWN}; the plain case passes: {edge or 'look at what ' + rule.edge.title + ' changes'}"
    return UNKNOWN


# ---------------------------------------------------------------------------------------------------------
# Running
# ---------------------------------------------------------------------------------------------------------

def _ask(box: Sandbox, case: Case, rule: LayerRule, st: _State) -> dict:
    if box.proc is None:
        box.start()
        if not box.hello.get("ok"):
            raise EngineCrash(f"the file failed to load again: {box.hello.get('error')}")
    backward = any(c in rule.compares for c in ("backward", "ties")) or rule.compares == ("forward", "backward")
    pair = PAIRS_BY_NAME[case.pair]
    return box.request(request(case, st.cfg, backward=backward, conv=st.conv,
                               signature=st.signatures.get(st.cfg.name(pair.forward))))


def _examples(rule: LayerRule, asg: Assignment) -> int:
    # The statistical rules draw a large fixed-shape call: a few seeds show it; more only repeat it.
    return min(asg.examples, 3) if rule.compares in (("rate",), ("mask",)) else asg.examples


def _run(rule: LayerRule, box: Sandbox, st: _State, seed: int | None, deadline: float) -> tuple[str, dict | None,
                                                                                            str, int, float]:
    from hypothesis import HealthCheck, Phase, Verbosity, given, settings
    from hypothesis import seed as with_seed
    from hypothesis import strategies as hst

    pair = PAIRS_BY_NAME[rule.pair]
    start = time.monotonic()
    stop = min(deadline, start + st.asg.limits.rule)
    state: dict[str, Any] = {"examples": 0, "best": None}

    def example(case: Case) -> None:
        if time.monotonic() > stop:
            if state["best"] is not None:
                f, c, g = state["best"]
                raise _Abort({**f, "shrunk": False, "note": "shrinking stopped at the rule's time limit", "_got": g}, c)
            raise _Abort(_finding(case, f"the rule did not finish within {st.asg.limits.rule:g} s "
                                        f"({state['examples']} examples ran): the functions are too slow"), case)
        state["examples"] += 1
        try:
            reply = _ask(box, case, rule, st)
        except EngineCrash as e:
            raise _Abort({**_finding(case, e.reason), "shrunk": False}, case) from None
        finding, got = _check(rule, case, reply, st)
        if finding is not None:
            state["best"] = (finding, case, got)
            raise _Mismatch(finding, case, got)

    strategy = hst.composite(lambda draw: pair.draw(draw, rule.variant))()
    test = settings(max_examples=_examples(rule, st.asg), derandomize=seed is None, database=None, deadline=None,
                    suppress_health_check=list(HealthCheck), report_multiple_bugs=False, verbosity=Verbosity.quiet,
                    print_blob=False, phases=(Phase.generate, Phase.shrink))(given(strategy)(example))
    if seed is not None:
        test = with_seed(seed)(test)
    finding, case, got = None, None, {}
    try:
        test()
    except _Mismatch as m:
        finding, case, got = {**m.finding, "shrunk": True}, m.case, m.got
    except _Abort as a:
        finding, case = a.finding, a.case
        got = finding.pop("_got", {})
    seconds = time.monotonic() - start
    if finding is None:
        return "passed", None, "", state["examples"], seconds
    hint = _hint(rule, finding, case, got, st)
    finding.pop("wrong", None)
    return "failed", finding, hint, state["examples"], seconds


def _probe_groupnorm(box: Sandbox, st: _State) -> None:
    """Group norm's gamma and beta are (1, C, 1, 1) in some years' templates and (C,) in others: when a file gets
    the forward wrong in the declared shape and right in the other, it follows the other template (said once)."""
    rng = np.random.default_rng(0)
    case = Case("groupnorm", {"x": rng.standard_normal((2, 4, 2, 3)), "gamma": rng.uniform(0.5, 2.0, 4),
                              "beta": rng.standard_normal(4)}, {}, (rng.standard_normal((2, 4, 2, 3)),), 0,
                numbers={"G": 2})
    want = expected(case, st.conv)["out"]

    def right(conv: Conventions) -> bool:
        try:
            if box.proc is None:
                box.start()
            reply = box.request(request(case, st.cfg, backward=False, conv=conv))
        except EngineCrash:
            return False
        if not reply.get("ok"):
            return False
        got = _unpack(reply, PAIRS_BY_NAME["groupnorm"], case)["out"]
        return got.shape == want.shape and bool(np.allclose(got, want, rtol=st.asg.rel, atol=st.asg.abs))

    if right(st.conv):
        return
    other = dataclasses.replace(st.conv, groupnorm_gamma="C" if st.conv.groupnorm_gamma == "1C11" else "1C11")
    if right(other):
        st.conv = other
        shape = {"C": "(C,)", "1C11": "(1, C, 1, 1)"}
        st.notes.append(f"group norm: the file takes gamma and beta of shape {shape[other.groupnorm_gamma]}; the "
                        f"assignment's template says {shape[st.cfg.conventions.groupnorm_gamma]}. Graded in the "
                        f"file's own shape.")


# Conventions a file's answers reveal, probed once before the first rule of the pair.
PROBES: dict[str, Callable[[Sandbox, _State], None]] = {"groupnorm": _probe_groupnorm}


def _result(rule: LayerRule, status: str, finding: dict | None, hint: str, examples: int, seconds: float,
            asg: Assignment) -> RuleResult:
    score = rule.weight if status in ("passed", "warning") else 0.0
    return RuleResult(rule.name, rule.title, rule.weight, score, status, asg.visible(rule.name), hint, finding,
                      examples, seconds)


def _blocker(rule: LayerRule, st: _State) -> str | None:
    pair = PAIRS_BY_NAME[rule.pair]
    fn = st.cfg.name(pair.forward)
    if fn in st.missing:
        return f"function:{fn}"
    back = pair.backward and st.cfg.name(pair.backward)
    if back in st.missing and any(c in rule.compares for c in ("backward", "ties")):
        return f"function:{back}"
    for need in rule.needs:
        if need in st.status and st.status[need] not in ("passed", "warning"):
            return st.blocked_by.get(need, need)
    return None


def _pairs_of(cfg: LayersConfig, functions: Sequence[str]) -> tuple[str, ...]:
    """The graded pairs: the assignment's list, else every pair whose forward function the file defines; never
    a pair the course provides."""
    provided = set(cfg.provided)
    chosen = cfg.pairs if cfg.pairs is not None else tuple(
        p for p in PAIR_NAMES if cfg.name(PAIRS_BY_NAME[p].forward) in functions)
    return tuple(p for p in PAIR_NAMES if p in chosen and not set(PAIRS_BY_NAME[p].functions()) <= provided
                 and PAIRS_BY_NAME[p].forward not in provided)


def _probes(cfg: LayersConfig) -> list[str]:
    return sorted({cfg.name(f) for p in PAIRS_BY_NAME.values() for f in p.functions()})


def grade_layers(path: Path, engine: str, asg: Assignment, seed: int | None = None,
                 only: Sequence[str] | None = None, progress: Callable[[RuleResult], None] | None = None) -> Report:
    """Grade the layer functions in a student's file; never raises for anything the student's code does.

    >>> import pathlib, tempfile
    >>> src = pathlib.Path(tempfile.mkdtemp()) / "layers.py"
    >>> _ = src.write_text("import numpy as np\\ndef relu_forward(x):\\n    return np.maximum(x, 0), x\\n"
    ...                    "def relu_backward(dout, x):\\n    return dout * (x > 0)\\n")
    >>> rep = grade_layers(src, "layers.py", Assignment(kind="layers", examples=5)); rep.passed, rep.ops
    (True, ('relu',))
    """
    cfg = asg.layers or LayersConfig()
    start = time.monotonic()
    deadline = start + asg.limits.total
    box = None
    try:
        try:
            box = Sandbox(path, cls="-", probes=_probes(cfg), limits=asg.limits, worker="layers_worker.py",
                          validate=validate_layers_reply)
        except EngineCrash as e:
            return _setup(path, engine, asg, f"import: the file {e.reason}", start)
        hello = box.hello
        if not hello.get("ok"):
            where = f" at {hello['where']}" if hello.get("where") else ""
            return _setup(path, engine, asg, f"import raised {hello.get('error')}{where}", start)
        functions = tuple(hello["functions"])
        pairs = _pairs_of(cfg, functions)
        if not pairs:
            return _setup(path, engine, asg, "the file defines none of the graded functions; looked for "
                          + ", ".join(_probes(cfg)), start)
        missing = {}
        for p in pairs:
            for f in PAIRS_BY_NAME[p].functions():
                if cfg.name(f) not in functions and f not in cfg.provided:
                    missing[cfg.name(f)] = f"the file defines no function {cfg.name(f)}()"
        st = _State(asg, cfg, cfg.conventions, missing, signatures=dict(hello["functions"]))
        results: list[RuleResult] = []
        rules = build_layer_rules(pairs, asg)
        if only:
            rules = [r for r in rules if any(matches(r.name, pat) for pat in only)]
        probed: set[str] = set()
        for rule in rules:
            blocker = _blocker(rule, st)
            if blocker is None and rule.pair in PROBES and rule.pair not in probed:
                probed.add(rule.pair)
                PROBES[rule.pair](box, st)
            if blocker is not None and blocker.startswith("function:"):
                fn = blocker.partition(":")[2]
                status, finding, hint, n, secs = "failed", _finding(None, missing[fn]), \
                    f"define {fn}() with the template's signature (or map its name in [layers.names])", 0, 0.0
            elif blocker is not None:
                status, finding, hint, n, secs = "blocked", {"formula": "", "rows": [],
                                                             "problem": f"blocked by {blocker}"}, "", 0, 0.0
                st.blocked_by[rule.name] = blocker
            elif time.monotonic() > deadline:
                status, finding, hint, n, secs = "failed", _finding(None, f"not run: grading this file exceeded "
                                                                          f"{asg.limits.total:g} s"), "", 0, 0.0
            else:
                status, finding, hint, n, secs = _run(rule, box, st, seed, deadline)
            st.status[rule.name] = status
            result = _result(rule, status, finding, hint, n, secs, asg)
            results.append(result)
            if progress:
                progress(result)
    finally:
        if box:
            box.close()
    notes = list(dict.fromkeys(st.notes))
    if hello.get("module") not in (None, path.stem):
        notes.append(f"the functions are loaded from module {hello['module']!r}")
    not_graded = [f"{f} (provided by the course)" for f in cfg.provided if cfg.name(f) in functions]
    return Report(engine, _name(asg), pairs, results, time.monotonic() - start, seed, notes, not_graded=not_graded)


def _name(asg: Assignment) -> str:
    """The assignment's name, or what the homework is when the file gives none."""
    return "layers homework" if asg.name == Assignment().name else asg.name


def _setup(path: Path, engine: str, asg: Assignment, problem: str, start: float) -> Report:
    """One entry, worth every point, for a file that cannot be graded at all."""
    from .runner import setup_hint

    try:
        source = path.read_text(errors="replace")
    except OSError:
        source = ""
    hint = setup_hint(source, problem)
    if problem.startswith("the file defines none"):
        hint = "name the functions as the template does, or map the file's names in [layers.names]"
    pairs = (asg.layers or LayersConfig()).pairs or PAIR_NAMES
    total = sum(r.weight for r in build_layer_rules(pairs, asg))
    result = RuleResult("setup", "the file imports and defines the layer functions", total, 0.0, "failed",
                        "visible", hint, {"formula": "", "rows": [], "problem": problem, "shrunk": False})
    return Report(engine, _name(asg), (), [result], time.monotonic() - start, None, [], setup=True)


def crashed_layers(engine: str, asg: Assignment, only: Sequence[str] | None, problem: str,
                   seconds: float) -> Report:
    """The report of a file whose grading process died or hung: every rule of the graded pairs failed."""
    cfg = asg.layers or LayersConfig()
    pairs = cfg.pairs or PAIR_NAMES
    rules = build_layer_rules(pairs, asg)
    if only:
        rules = [r for r in rules if any(matches(r.name, pat) for pat in only)]
    results = [_result(r, "failed", {"formula": "", "problem": problem, "rows": []}, "", 0, 0.0, asg) for r in rules]
    return Report(engine, _name(asg), tuple(pairs), results, seconds, None, [])


def check_layer_rules(only: Sequence[str] | None, asg: Assignment) -> None:
    """Refuse a ``--rules`` pattern that names no layers rule."""
    check_rule_patterns(only, [r.name for r in build_layer_rules(PAIR_NAMES, asg)])

