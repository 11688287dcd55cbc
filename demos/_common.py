"""What every demo shares: ``--fast``/``--out`` arguments, the output folder, text tables, figures and drawings.

A demo's ``main(argv)`` calls ``start`` for its options and folder, writes tables with ``table`` and figures with
``save_figure``, and returns its key numbers as a dict (what the tests check).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEMOS = Path(__file__).resolve().parent
"""The demos' folder (a notebook has no ``__file__``, so the demos find their data files from here)."""

__all__ = ["DEMOS", "Run", "start", "show", "table", "fmt", "pyplot", "save_figure", "save_drawing", "timed",
           "one_blas_thread"]


@dataclass
class Run:
    """One run of a demo: its ``name``, whether ``fast``, its output folder ``out`` and the files it wrote."""

    name: str
    fast: bool
    out: Path
    written: list[Path] = field(default_factory=list)
    args: argparse.Namespace = field(default_factory=argparse.Namespace)

    def path(self, filename: str) -> Path:
        """A file in the output folder, remembered as written."""
        p = self.out / filename
        self.written.append(p)
        return p

    def say(self, text: str = "") -> None:
        """Print a line of the demo's report (one place, so the tests can capture it)."""
        print(text, flush=True)

    def finish(self) -> None:
        """Print how many files went where (a drawing that could not be rendered is not counted)."""
        n = len({p for p in self.written if p.exists()})
        self.say(f"\n{n} file(s) written to {self.out}")


def start(name: str, description: str, argv: Sequence[str] | None = None,
          options: Callable[[argparse.ArgumentParser], Any] | None = None) -> Run:
    """Parse ``--fast`` and ``--out`` for the demo ``name`` and create its output folder.

    The default folder is ``./demo-output/<name>/`` under the current directory. ``options(parser)`` adds a
    demo's own arguments; their values are in ``run.args``.
    """
    import os
    import shlex
    import sys

    from microgradx.train import in_notebook

    if in_notebook() and (argv is None or list(argv) == sys.argv[1:]):
        # NOTE: in a notebook sys.argv is the kernel's command line; the demo's own arguments (--fast, --out)
        # come from MICROGRADX_DEMO_ARGS instead, and without it the notebook is the full run.
        argv = shlex.split(os.environ.get("MICROGRADX_DEMO_ARGS", ""))
    parser = argparse.ArgumentParser(prog=f"{name}.py", description=description)
    parser.add_argument("--fast", action="store_true",
                        help="a smaller run that takes a few seconds (used by the tests)")
    parser.add_argument("--out", type=Path, default=None,
                        help=f"output folder (default: ./demo-output/{name}/)")
    if options is not None:
        options(parser)
    args = parser.parse_args(argv)
    out = args.out if args.out is not None else Path.cwd() / "demo-output" / name
    out.mkdir(parents=True, exist_ok=True)
    run = Run(name, args.fast, out, args=args)
    run.say(f"== {name}{' (fast mode)' if args.fast else ''}: {description}")
    return run


def fmt(x: Any, digits: int = 5) -> str:
    """A number for a table: floats with ``digits`` decimals (``%g`` when very large or small), else ``str``."""
    if isinstance(x, float):
        if x != 0 and not 1e-4 <= abs(x) < 1e6:
            return f"{x:.{digits}g}"
        return f"{x:.{digits}f}"
    return str(x)


def table(run: Run, filename: str, headers: Sequence[str], rows: Iterable[Sequence[Any]], *,
          title: str | None = None, digits: int = 5) -> str:
    """Write an aligned text table to ``filename`` in the output folder, print it, and return its text."""
    cells = [[str(h) for h in headers]] + [[fmt(x, digits) for x in row] for row in rows]
    widths = [max(len(r[c]) for r in cells) for c in range(len(headers))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    text = (f"{title}\n" if title else "") + "\n".join(lines) + "\n"
    run.path(filename).write_text(text)
    run.say(text)
    return text


def pyplot():
    """matplotlib's pyplot on the non-interactive Agg backend (imported here so demos start fast)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def show(obj: Any) -> None:
    """In a notebook, show ``obj`` inline (a figure, a drawing, a table, a page); in a script, do nothing."""
    from microgradx.train import in_notebook

    if in_notebook():
        from IPython.display import Image, display

        if hasattr(obj, "savefig"):  # a matplotlib figure: as PNG, whichever backend the demo chose
            import io

            buf = io.BytesIO()
            obj.savefig(buf, format="png", dpi=80)
            obj = Image(data=buf.getvalue())
        display(obj)


def save_figure(run: Run, fig: Any, stem: str) -> list[Path]:
    """Save a matplotlib figure as ``stem.png`` (and ``stem.svg`` in full mode), show it in a notebook, close it."""
    plt = pyplot()
    show(fig)
    saved = []
    for ext in ("png",) if run.fast else ("png", "svg"):
        p = run.path(f"{stem}.{ext}")
        # NOTE: a tight bounding box costs a second layout pass; fast mode (CI) skips it.
        dpi = (80 if run.fast else 110) if ext == "png" else None
        fig.savefig(p, dpi=dpi, bbox_inches=None if run.fast else "tight")
        saved.append(p)
    plt.close(fig)
    return saved


def save_drawing(run: Run, drawing: Any, stem: str) -> Path:
    """Save a ``microgradx.draw`` drawing as ``stem.svg`` (and ``stem.png`` in full mode); show it in a notebook.

    Without a renderer it saves ``stem.dot`` instead and says so.
    """
    from microgradx.render import RenderError

    show(drawing)
    try:
        saved = drawing.save(run.path(f"{stem}.svg"))
        if not run.fast:
            drawing.save(run.path(f"{stem}.png"))
        return saved
    except RenderError as e:
        p = drawing.save(run.path(f"{stem}.dot"))
        run.say(f"(could not render {stem}: {e}; saved the DOT text as {p.name})")
        return p


def timed(fn: Callable[[], Any], repeat: int = 3) -> tuple[float, Any]:
    """The best wall time of ``repeat`` calls of ``fn`` in seconds, and the last call's result."""
    best, result = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def one_blas_thread() -> Any:
    """A context in which NumPy's BLAS uses one thread: the matrices of these small networks are too small for
    threads to pay off, and on a busy machine extra threads make training several times slower."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1)
