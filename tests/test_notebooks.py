"""Every demo is also a notebook paired with its script (jupytext, demos/jupytext.toml): the pair is in sync, and
each notebook executes in a real kernel (nbclient) in the demos' fast mode with no cell error, its figures and
drawings inline; the lecture notebook shows a progress bar, a drawing, a stepper table, a page and a plot."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

jupytext = pytest.importorskip("jupytext", reason="jupytext is not installed (pip install 'microgradx[test]')")
nbformat = pytest.importorskip("nbformat", reason="nbformat is not installed (pip install 'microgradx[test]')")
nbclient = pytest.importorskip("nbclient", reason="nbclient is not installed (pip install 'microgradx[test]')")
pytest.importorskip("ipykernel", reason="ipykernel is not installed (pip install 'microgradx[test]')")

DEMOS = Path(__file__).resolve().parent.parent / "demos"
SCRIPTS = sorted(p.stem for p in DEMOS.glob("*.py") if not p.name.startswith("_"))


def test_every_demo_script_has_its_notebook_and_no_notebook_is_orphaned():
    assert SCRIPTS and sorted(p.stem for p in DEMOS.glob("*.ipynb")) == SCRIPTS
    assert 'formats = "ipynb,py:light"' in (DEMOS / "jupytext.toml").read_text()


@pytest.mark.parametrize("name", SCRIPTS)
def test_notebook_and_script_hold_the_same_code(name):
    # What `jupytext --sync` would write from the script must be what the notebook holds (outputs aside).
    from_script = jupytext.read(DEMOS / f"{name}.py", fmt="py:light")
    notebook = nbformat.read(DEMOS / f"{name}.ipynb", as_version=4)
    assert [(c.cell_type, c.source) for c in notebook.cells] == [(c.cell_type, c.source) for c in from_script.cells]
    assert notebook.metadata["kernelspec"]["name"] == "python3"


_RUNS: dict[str, tuple] = {}


@pytest.fixture(scope="module")
def kernel():
    """One kernel for every notebook: each kernel would import NumPy, SymPy, matplotlib and scikit-learn anew,
    which costs more than most fast-mode demos; every notebook still runs all its cells from the top."""
    from jupyter_client.manager import start_new_kernel

    km, kc = start_new_kernel(kernel_name="python3", cwd=str(DEMOS))
    yield km
    kc.stop_channels()
    km.shutdown_kernel(now=True)


def execute(name, kernel, tmp_path_factory):
    """Run the notebook once (the lecture test reads the same run); returns it, its seconds and its folder."""
    if name not in _RUNS:
        out = tmp_path_factory.mktemp(name)
        notebook = nbformat.read(DEMOS / f"{name}.ipynb", as_version=4)
        # sys.argv in a kernel is the kernel's command line: the demo reads its arguments from this variable.
        setup = nbformat.v4.new_code_cell(f"import os\nos.environ['MICROGRADX_DEMO_ARGS'] = '--fast --out {out}'")
        notebook.cells.insert(0, setup)
        client = nbclient.NotebookClient(notebook, timeout=600, km=kernel,
                                         resources={"metadata": {"path": str(DEMOS)}})
        t0 = time.perf_counter()
        client.execute()  # raises CellExecutionError, naming the cell, on any error
        notebook.cells.pop(0)
        _RUNS[name] = (notebook, time.perf_counter() - t0, out)
    return _RUNS[name]


def outputs(notebook):
    return [o for c in notebook.cells if c.cell_type == "code" for o in c.get("outputs", [])]


def mimetypes(notebook):
    return [m for o in outputs(notebook) for m in o.get("data", {})]


@pytest.mark.parametrize("name", SCRIPTS)
def test_notebook_runs_in_fast_mode_with_no_cell_error_and_its_figures_inline(name, kernel, tmp_path_factory):
    if name == "torch_handover":
        pytest.importorskip("torch", reason="the hand-over demo needs PyTorch (pip install 'microgradx[torch]')")
    notebook, seconds, out = execute(name, kernel, tmp_path_factory)
    assert not [o for o in outputs(notebook) if o.get("output_type") == "error"]
    written = sorted(p for p in out.rglob("*") if p.suffix in (".png", ".svg"))
    shown = [m for m in mimetypes(notebook) if m in ("image/png", "image/svg+xml")]
    # Every figure and drawing the demo saves is also shown in the notebook (fast mode saves PNG figures and SVG
    # drawings, one file each).
    assert len(shown) >= len(written), (written, shown)
    text = "".join(o.get("text", "") for o in outputs(notebook))
    assert f"== {name} (fast mode)" in text
    print(f"{name}: {seconds:.1f} s")


def test_lecture_notebook_shows_a_progress_bar_a_drawing_a_stepper_table_a_page_and_a_plot(kernel,
                                                                                             tmp_path_factory):
    notebook, _, _ = execute("backprop_lecture", kernel, tmp_path_factory)
    kinds = mimetypes(notebook)
    assert "application/vnd.jupyter.widget-view+json" in kinds  # tqdm's widget bar, not a text bar
    assert "image/svg+xml" in kinds  # the drawing
    assert "image/png" in kinds  # the training curves
    html = [o["data"]["text/html"] for o in outputs(notebook) if "text/html" in o.get("data", {})]
    assert any('class="microgradx-table"' in h for h in html)  # the stepper table, as a table
    assert any("microgradxPage(" in h for h in html)  # the backprop page, inline
    assert any("<img alt='training curves'" in h for h in html)  # the History: table and curves
    # Slettevold's Example 3 by hand: dJ/dw1 ~ 0.02510, dJ/dw2 ~ 0.13757.
    text = "".join(o.get("text", "") for o in outputs(notebook) if o.get("name") == "stdout")
    assert "dJ/dw1 = 0.02510, dJ/dw2 = 0.13757" in text
    stderr = "".join(o.get("text", "") for o in outputs(notebook) if o.get("name") == "stderr")
    assert "TqdmWarning" not in stderr and "IProgress not found" not in stderr
