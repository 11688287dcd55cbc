"""Every activation of the op table with its derivative (Blain's report, Ajmaldeen's assignment, the
Introduction to Deep Learning unit slides), and Ajmaldeen's printed outputs.

Forward values and derivatives are read from the op rows themselves (``row.forward``, ``row.partials``), so the
pictures show exactly what the engine differentiates.

Run ``python demos/activation_gallery.py [--fast] [--out DIR]``.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from _common import Run, pyplot, save_figure, start, table

import microgradx as mx
from microgradx.ops import FLOAT, Op, numpy_math

NAME = "activation_gallery"


@dataclass(frozen=True)
class Entry:
    """One activation to draw: its op row and the number it is drawn with (parameter or second input)."""

    op: Op
    arg: float | None = None

    @property
    def title(self) -> str:
        """The panel title: the op's name and its parameter, if any."""
        if self.op.param:
            return f"{self.op.name} ({self.op.param} = {self.arg:g})"
        if self.op.arity == 2:
            return f"{self.op.name} (slope = {self.arg:g})"
        return self.op.name

    def args(self, x):
        """The op's inputs at x: x alone, or x and the parameter / second input."""
        return (x,) if self.arg is None else (x, self.arg)


def gallery() -> list[Entry]:
    """The activations drawn, in the order of Ajmaldeen's list, then Blain's and the intro slides' ones and GELU.

    The numbers are the ops' defaults except where a document uses another: Ajmaldeen's linear is 4x and its ELU
    example uses alpha = 0.1; PReLU's learnable slope is drawn at 0.25, PyTorch's initial value.
    """
    ops = mx.OPS

    def default(name: str) -> Entry:
        return Entry(ops[name], ops[name].default)

    return [default("binary_step"), Entry(ops["linear"], 4.0), default("sigmoid"), default("tanh"),
            default("relu"), default("leaky_relu"), Entry(ops["prelu"], 0.25), Entry(ops["elu"], 0.1),
            default("swish"), default("arctan"), default("softsign"), default("softplus"), default("hard_tanh"),
            default("gelu")]


def curves(entries: Sequence[Entry], xs) -> dict[str, tuple]:
    """Each entry's forward values and derivative at the array ``xs``, from its op row (NumPy namespace)."""
    import numpy as np

    F = numpy_math()
    found = {}
    for e in entries:
        args = e.args(xs)
        out = e.op.forward(F, *args)
        d = e.op.partials(F, out, *args)[0]
        # A constant derivative (linear, binary step) comes back as one number: spread it over xs.
        found[e.op.name] = (np.broadcast_to(out, xs.shape), np.broadcast_to(np.asarray(d, dtype=float), xs.shape))
    return found


def plot_gallery(run: Run, entries: Sequence[Entry], xs, found: dict[str, tuple]) -> None:
    """One panel per activation: f in one colour, f' dashed; a grey mark at each kink's chosen subgradient."""
    plt = pyplot()
    cols = 4
    rows = math.ceil(len(entries) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.5 * rows), sharex=True)
    for ax, e in zip(axes.flat, entries):
        y, dy = found[e.op.name]
        ax.plot(xs, y, color="tab:blue", label="f(x)")
        ax.plot(xs, dy, color="tab:red", linestyle="--", label="f'(x)")
        if e.op.kink is not None:
            # The row's kink function is the distance to the nearest kink: mark where it vanishes.
            step = float(xs[1] - xs[0])
            for k in (float(x) for x in xs if e.op.kink(float(x)) < step / 2):
                ax.axvline(k, color="0.8", linewidth=0.8)
        ax.set_title(e.title, fontsize=9)
        ax.axhline(0.0, color="0.6", linewidth=0.5)
        ax.grid(True, alpha=0.3)
    for ax in list(axes.flat)[len(entries):]:
        ax.set_visible(False)
    axes.flat[0].legend(fontsize=8, loc="upper left")
    fig.suptitle("Activations and their derivatives, read from the op table", fontsize=11)
    fig.tight_layout()
    save_figure(run, fig, "gallery")


def sigmoid_family(run: Run, xs, found: dict[str, tuple]) -> dict[str, float]:
    """Blain's report Figs. 7 and 8: the bounded sigmoid-family functions and their derivatives on shared axes.

    Returns each one's largest derivative: a chain of n sigmoid layers scales a gradient by at most 0.25**n.
    """
    import numpy as np

    plt = pyplot()
    family = ("sigmoid", "tanh", "arctan", "softsign")
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    for name in family:
        y, dy = found[name]
        left.plot(xs, y, label=name)
        right.plot(xs, dy, label=f"{name}'")
    for ax, title in ((left, "sigmoid family (Blain's report, Fig. 7)"), (right, "their derivatives (Fig. 8)")):
        ax.set_title(title, fontsize=10)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(run, fig, "sigmoid-family")
    peaks = {name: float(np.max(found[name][1])) for name in family}
    rows = [(name, peaks[name], peaks[name] ** 10) for name in family]
    table(run, "sigmoid-family.txt", ("activation", "max f'(x)", "max f' ** 10 (10 layers)"), rows,
          title="Vanishing gradients (Blain's report): the largest derivative of each bounded activation", digits=6)
    return peaks


def assignment_swish(x: float) -> float:
    """Ajmaldeen's swish code, ``x / (1 - exp(-x))``: a wrong formula, kept only to reproduce its printed output."""
    return x / (1 - math.exp(-x))


# (call as Ajmaldeen's assignment writes it, Value method and argument, the output Ajmaldeen's assignment prints)
ASSIGNMENT_CALLS = (
    ("binary_step(5)", "binary_step", 5.0, None, 1),
    ("binary_step(-1)", "binary_step", -1.0, None, 0),
    ("linear_function(4)  [4x]", "linear", 4.0, 4.0, 16),
    ("linear_function(-2) [4x]", "linear", -2.0, 4.0, -8),
    ("sigmoid_function(7)", "sigmoid", 7.0, None, 0.9990889488055994),
    ("sigmoid_function(-22)", "sigmoid", -22.0, None, 2.7894680920908113e-10),
    ("tanh_function(0.5)", "tanh", 0.5, None, 0.4621171572600098),
    ("tanh_function(-1)", "tanh", -1.0, None, -0.7615941559557646),
    ("relu_function(7)", "relu", 7.0, None, 7),
    ("relu_function(-7)", "relu", -7.0, None, 0),
    ("leaky_relu_function(7)", "leaky_relu", 7.0, 0.01, 7),
    ("leaky_relu_function(-7)", "leaky_relu", -7.0, 0.01, -0.07),
    ("elu_function(5, 0.1)", "elu", 5.0, 0.1, 5),
    ("elu_function(-5, 0.1)", "elu", -5.0, 0.1, -0.09932620530009145),
)
ASSIGNMENT_SWISH = (("swish_function(-67)", -67.0, 5.349885844610276e-28),
                 ("swish_function(4)", 4.0, 4.074629441455096))


def assignment_outputs(run: Run) -> dict[str, float]:
    """Ajmaldeen's example calls recomputed with Value methods, next to the numbers it prints."""
    rows, engine = [], {}
    for call, method, x, arg, printed in ASSIGNMENT_CALLS:
        v = mx.Value(x)
        out = getattr(v, method)() if arg is None else getattr(v, method)(arg)
        out.backward()
        engine[call.split()[0]] = out.data
        rows.append((call, printed, out.data, abs(out.data - printed), v.grad))
    table(run, "assignment-outputs.txt",
          ("Ajmaldeen's call", "Ajmaldeen prints", "engine", "|difference|", "engine f'(x)"),
          rows, title="Ajmaldeen's printed outputs, recomputed by the engine", digits=10)

    run.say("Swish: Ajmaldeen's assignment defines swish as x * sigmoid(x) but codes x / (1 - e**-x), a different "
            "function;")
    run.say("its printed numbers come from that code. The engine's swish is x * sigmoid(x) (also called SiLU).")
    rows = []
    for call, x, printed in ASSIGNMENT_SWISH:
        wrong = assignment_swish(x)
        right = mx.Value(x).swish().data
        engine[call] = right
        engine[f"{call} seed formula"] = wrong
        rows.append((call, printed, wrong, right, x * FLOAT.sigmoid(x)))
    table(run, "assignment-swish.txt", ("call", "Ajmaldeen prints", "x/(1-e**-x)", "engine swish", "x*sigmoid(x)"),
          rows,
          title="Swish: the document's wrong formula next to the correct one", digits=10)
    return engine


def swish_check(run: Run) -> dict:
    """The SymPy check: Ajmaldeen's printed formula differs from the swish row in value and derivative."""
    from microgradx.symbolic import compare_formula

    at = (-2.0, -0.5, 0.5, 2.0, 4.0)
    found = {"seed": compare_formula("x / (1 - exp(-x))", "swish", at=at),
             "correct": compare_formula("x * sigmoid(x)", "swish", at=at)}
    for name, comparison in found.items():
        run.say(f"SymPy check of the {name} formula:")
        run.say(str(comparison))
    (run.out / "swish-sympy-check.txt").write_text("\n\n".join(str(c) for c in found.values()) + "\n")
    return found


def kinks(run: Run, entries: Sequence[Entry]) -> None:
    """Where the derivative does not exist, which subgradient the engine takes (from each op row)."""
    rows = [(e.op.name, e.op.subgradient) for e in entries if e.op.subgradient]
    table(run, "kinks.txt", ("activation", "derivative at the kink"), rows,
          title="Kinks: Ajmaldeen's assignment writes f'(0) = 1 for ReLU and leaky ReLU (x >= 0); the engine "
                "follows PyTorch")


def main(argv: Sequence[str] | None = None) -> dict:
    """Run the demo; returns Ajmaldeen's recomputed outputs, the sigmoid-family peaks and the curves."""
    import numpy as np

    run = start(NAME, "activations and derivatives from the op table; Ajmaldeen's printed outputs", argv)
    entries = gallery()
    xs = np.linspace(-5.0, 5.0, 201 if run.fast else 2001)
    found = curves(entries, xs)
    plot_gallery(run, entries, xs, found)
    peaks = sigmoid_family(run, xs, found)
    outputs = assignment_outputs(run)
    checked = swish_check(run)
    kinks(run, entries)
    run.say(f"Key numbers: sigmoid(7) = {outputs['sigmoid_function(7)']!r}, "
            f"tanh(-1) = {outputs['tanh_function(-1)']!r}, elu(-5, 0.1) = {outputs['elu_function(-5,']!r}; "
            f"swish(4): document's formula "
            f"{outputs['swish_function(4) seed formula']!r}, correct {outputs['swish_function(4)']!r}; "
            f"max sigmoid' = {peaks['sigmoid']:g}; SymPy check of the document's swish formula: "
            f"{'agrees' if checked['seed'].ok else 'differs'}")
    run.finish()
    return {"outputs": outputs, "peaks": peaks, "xs": xs, "curves": found, "entries": [e.op.name for e in entries],
            "swish_check": checked}


if __name__ == "__main__":
    main(sys.argv[1:])
