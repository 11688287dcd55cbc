"""The ``microgradx`` command through a subprocess: draw, step (with --all and interactively in a pseudo-terminal),
paths and tour, with graphviz-pure and without any renderer."""

from __future__ import annotations

import math
import os
import re
import select
import subprocess
import sys
import time
import xml.etree.ElementTree as ET

import pytest

from microgradx.cli import parse_at

TWO = "cos(w**2) + sin(w**2)"
DW = 2 * 2.0 * (math.cos(4.0) - math.sin(4.0))  # d/dw of cos(w^2) + sin(w^2) at w = 2, by hand


def run(*args: str, env: dict | None = None, cwd=None) -> subprocess.CompletedProcess:
    full = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "microgradx.cli", *args], capture_output=True, text=True,
                          env=full, cwd=cwd, timeout=120, stdin=subprocess.DEVNULL)


PURE = {"MICROGRADX_DOT": "pure"}
NONE = {"MICROGRADX_DOT": "/nonexistent/dot"}


@pytest.mark.parametrize("command", ["draw", "step", "paths", "tour"])
def test_every_command_has_help_with_examples(command):
    done = run(command, "--help")
    assert done.returncode == 0 and "example" in done.stdout and f"microgradx {command}" in done.stdout


def test_at_accepts_commas_and_repeats():
    assert parse_at(["x=2,y=3"]) == parse_at(["x=2", "y=3"]) == {"x": 2.0, "y": 3.0}
    for bad, msg in [(["x"], "NAME=NUMBER"), (["x=a"], "not a number"), (["x=1,x=2"], "twice"),
                     (["x=nan"], "finite"), (["1x=2"], "NAME=NUMBER")]:
        with pytest.raises(ValueError, match=msg):
            parse_at(bad)


def test_draw_prints_dot_and_writes_each_format(tmp_path):
    printed = run("draw", TWO, "--at", "w=2")
    assert printed.returncode == 0 and printed.stdout.startswith("digraph")
    done = run("draw", TWO, "--at", "w=2", "-o", str(tmp_path / "g.svg"), "--theme", "slide",
               "--highlight-paths", "w", env=PURE)
    assert done.returncode == 0, done.stderr
    svg = ET.parse(tmp_path / "g.svg").getroot()
    assert sum(g.get("class") == "node" for g in svg.iter("{http://www.w3.org/2000/svg}g")) == 9
    assert run("draw", TWO, "--at", "w=2", "-o", str(tmp_path / "g.png"), env=PURE).returncode == 0
    assert (tmp_path / "g.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert run("draw", TWO, "--at", "w=2", "-o", str(tmp_path / "g.dot"), env=NONE).returncode == 0
    assert (tmp_path / "g.dot").read_text().startswith("digraph")


def test_draw_several_inputs_both_ways_and_highlight():
    one = run("draw", "x*y + x", "--at", "x=2,y=3", "--highlight-paths", "x,y")
    two = run("draw", "x*y + x", "--at", "x=2", "--at", "y=3", "--highlight-paths", "x,y")
    assert one.returncode == 0 and one.stdout == two.stdout
    assert 'color="#d62728"' in one.stdout


def test_draw_errors_are_clear_and_have_no_traceback(tmp_path):
    pdf = run("draw", TWO, "--at", "w=2", "-o", str(tmp_path / "g.pdf"), env=PURE)
    assert pdf.returncode == 1 and "PDF needs the system Graphviz" in pdf.stderr
    nothing = run("draw", TWO, "--at", "w=2", "-o", str(tmp_path / "g.svg"), env=NONE)
    assert nothing.returncode == 1 and "graphviz-pure" in nothing.stderr
    bad = run("draw", "__import__('os')")
    assert bad.returncode == 2 and "double underscores" in bad.stderr
    missing = run("draw", "w * v", "--at", "w=2")
    assert missing.returncode == 2 and "unknown name 'v'" in missing.stderr
    at = run("draw", TWO, "--at", "w=two")
    assert at.returncode == 2 and "not a number" in at.stderr
    domain = run("draw", "log(w)", "--at", "w=-1")
    assert domain.returncode == 2 and "log" in domain.stderr
    for done in (pdf, nothing, bad, missing, at, domain):
        assert "Traceback" not in done.stderr


def test_step_all_prints_every_step_and_the_gradient():
    done = run("step", TWO, "--at", "w=2", "--all")
    assert done.returncode == 0
    assert re.findall(r"^step (\d) of 5", done.stdout, re.M) == list("12345")
    assert f"d out / d w = {DW:.6g}" in done.stdout


def test_paths_lists_each_path_and_their_sum_equals_the_gradient():
    done = run("paths", TWO, "--wrt", "w", "--at", "w=2")
    assert done.returncode == 0 and "2 path(s)" in done.stdout
    sums = re.search(r"sum over paths = ([-0-9.e]+);  backward gives d out / d w = ([-0-9.e]+)", done.stdout)
    assert float(sums.group(1)) == pytest.approx(DW, rel=1e-4) == float(sums.group(2))
    wrong = run("paths", TWO, "--wrt", "v", "--at", "w=2")
    assert wrong.returncode == 2 and "not an input" in wrong.stderr


def test_tour_prints_the_seed_numbers_and_writes_drawings(tmp_path):
    done = run("tour", "--out", str(tmp_path / "tour"), env=PURE)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    # Seed 001, Example 3's own numbers.
    for text in ("0.60080", "dJ/dw1 = 0.02510", "dJ/dw2 = 0.13757", "(0.72490, 0.36243)", "0.60080 -> 0.57287"):
        assert text in out
    assert "step 1 of 10: J = (yhat - y)**2" in out and "Path sums" in out
    files = sorted(p.name for p in (tmp_path / "tour").iterdir())
    assert files == ["1-forward.svg", "2-backward.svg", "3-path-w1.svg"]
    for name in files:
        ET.parse(tmp_path / "tour" / name)
        assert name in out


def test_tour_without_any_renderer_writes_dot_and_says_so(tmp_path):
    done = run("tour", env=NONE, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "wrote DOT text only" in done.stdout
    files = sorted(p.name for p in (tmp_path / "microgradx-tour").iterdir())
    assert files == ["1-forward.dot", "2-backward.dot", "3-path-w1.dot"]


# -- an interactive session in a pseudo-terminal ----------------------------------------------------------------

class Terminal:
    def __init__(self, *args: str) -> None:
        import pty  # noqa: F401  (POSIX only: the import fails clearly elsewhere)

        self.master, slave = os.openpty()
        self.proc = subprocess.Popen([sys.executable, "-m", "microgradx.cli", *args], stdin=slave, stdout=slave,
                                     stderr=slave, close_fds=True)
        os.close(slave)
        self.seen = ""

    def expect(self, pattern: str, limit: float = 30.0) -> str:
        """Read until ``pattern`` appears (a safety limit, not a speed check); return what came before it."""
        end = time.monotonic() + limit
        while not re.search(pattern, self.seen):
            if time.monotonic() > end:
                raise AssertionError(f"{pattern!r} never appeared; got:\n{self.seen}")
            ready, _, _ = select.select([self.master], [], [], 0.2)
            if ready:
                try:
                    self.seen += os.read(self.master, 4096).decode(errors="replace").replace("\r\n", "\n")
                except OSError:  # the child closed the terminal
                    break
        m = re.search(pattern, self.seen)
        assert m, f"{pattern!r} never appeared; got:\n{self.seen}"
        before, self.seen = self.seen[:m.start()], self.seen[m.end():]
        return before

    def send(self, text: str) -> None:
        os.write(self.master, text.encode())

    def close(self) -> int:
        code = self.proc.wait(timeout=30)
        os.close(self.master)
        return code


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a POSIX pseudo-terminal")
def test_interactive_step_session_next_back_table_quit():
    term = Terminal("step", TWO, "--at", "w=2")
    try:
        term.expect("Enter = next, b = back")
        term.expect("step> ")
        term.send("\n")
        assert "step 1 of 5" in term.expect("step> ")
        term.send("\n")
        assert "step 2 of 5" in term.expect("step> ")
        term.send("b\n")
        assert "step 1 of 5" in term.expect("step> ")
        term.send("t\n")
        table = term.expect("step> ")
        assert "S(parent) so far" in table and "sin" in table
        term.send("b\n")
        assert "back at the start" in term.expect("step> ")
        for k in range(1, 6):
            term.send("\n")
            shown = term.expect("step> ")
            assert f"step {k} of 5" in shown
        assert "done" in shown and f"d out / d w = {DW:.6g}" in shown
        term.send("q\n")
    finally:
        code = term.close()
    assert code == 0


@pytest.mark.parametrize("command", ["draw", "step", "paths", "check"])
def test_an_unused_at_name_is_an_error_naming_it(command):
    extra = {"step": ["--all"], "paths": ["--wrt", "x"]}.get(command, [])
    done = run(command, "x*y", "--at", "x=1,y=2,z=3", *extra)
    assert done.returncode == 2 and "Traceback" not in done.stderr and done.stderr.count("\n") == 1
    assert f"microgradx {command}: error: --at z: not used by the expression 'x*y'" in done.stderr


def test_parse_errors_and_domain_errors_are_one_line():
    for expr, at, message in [("ｘ*2", "x=1", "FULLWIDTH LATIN SMALL LETTER X"), ("1and x", "x=1", "invalid decimal"),
                              ("log(x)", "x=0", "at column 1")]:
        done = run("check", expr, "--at", at)
        assert done.returncode == 2 and message in done.stderr and done.stderr.count("\n") == 1, done.stderr


def test_output_cut_short_by_a_closed_pipe_ends_quietly(tmp_path):
    """`microgradx tour | head -1`: the reader closes the pipe early; no error line, no traceback."""
    proc = subprocess.Popen([sys.executable, "-m", "microgradx.cli", "tour", "--out", str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = proc.stdout.readline()
    proc.stdout.close()  # what head does after its line
    _, err = proc.communicate(timeout=120)
    assert first.startswith(b"microgradx tour")
    assert err == b"", err.decode()
