"""What a notebook shows: the stepper table as a table (and a str that prints), History as a short summary, a
table and curves, plot_histories as a figure, and the progress bar's choice of widget or silence."""

from __future__ import annotations

import html
import re
import sys
import types

import numpy as np

from microgradx import step
from microgradx.examples import two_paths
from microgradx.train import History, _Progress, in_notebook, plot_histories


def test_stepper_table_prints_as_text_and_shows_as_an_html_table():
    o, w = two_paths()
    s = step(o).run()
    table = s.table()
    assert isinstance(table, str) and "\\n" not in repr(table) and repr(table) == str(table)
    lines = str(table).splitlines()
    assert lines[0].split()[:3] == ["step", "node", "S(node)"] and len(lines) == len(table.rows)
    cells = re.findall(r"<td>(.*?)</td>", table._repr_html_())
    assert [html.unescape(c) for c in cells] == [c for r in table.rows[1:] for c in r]
    # The gradient of w appears in the table, as the hand formula gives it: 4 (cos 4 - sin 4).
    assert f"{4 * (np.cos(4) - np.sin(4)):.5g}" in cells


def history():
    h = History(label="sgd", batch_loss=[1.0, 0.8, 0.9, 0.5, 0.4, 0.45])
    for k, (loss, acc) in enumerate([(0.9, 0.5), (0.7, 0.6), (0.5, 0.7), (0.4, 0.8), (0.35, 0.82), (0.3, 0.85),
                                     (0.28, 0.86), (0.27, 0.87)]):
        h.add_epoch({"loss": loss, "accuracy": acc, "val_loss": loss + 0.1}, seconds=0.1, lr=0.1 / (k + 1))
    return h


def test_history_shows_a_summary_a_table_and_its_curves():
    h = history()
    text = repr(h)
    assert text.startswith("<History 'sgd': 8 epochs, loss 0.9 -> 0.27") and "val_loss 0.37" in text
    page = h._repr_html_()
    rows = re.findall(r"<tr>(.*?)</tr>", page)
    assert len(rows) == 1 + 3 + 1 + 3  # header, the first three epochs, "...", the last three
    assert "<td>8</td><td>0.27</td><td>0.87</td>" in page and "<td>1</td><td>0.9</td><td>0.5</td>" in page
    assert "data:image/png;base64," in page
    assert repr(History()) == "<History '': no epoch yet>"


def test_plot_histories_returns_a_figure_without_a_path():
    h = history()
    fig = plot_histories(h)
    from matplotlib.figure import Figure

    assert isinstance(fig, Figure)
    loss_axes = [ax for ax in fig.axes if ax.get_title() == "loss"]
    assert len(loss_axes) == 1
    ys = [list(line.get_ydata()) for line in loss_axes[0].get_lines()]
    assert h.loss in ys and h["val_loss"] in ys


def test_progress_bar_is_a_widget_in_a_kernel_and_silent_in_a_log(monkeypatch):
    assert not in_notebook() and _Progress(None, 10, 1).bar is None  # under pytest: no terminal, no kernel
    fake = types.ModuleType("IPython")
    fake.get_ipython = lambda: types.SimpleNamespace(kernel=object())
    monkeypatch.setitem(sys.modules, "IPython", fake)
    assert in_notebook()
    from microgradx.train import _tqdm

    bar = _tqdm(True)
    try:
        import ipywidgets  # noqa: F401
        from tqdm.notebook import tqdm as widget
        assert bar is widget
    except ImportError:
        from tqdm.std import tqdm as text
        assert bar is text  # without ipywidgets: the plain bar, and no TqdmWarning
    assert _tqdm(False).__module__ == "tqdm.std"
