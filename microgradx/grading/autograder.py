"""Build a Gradescope autograder bundle (setup.sh, run_autograder, the assignment and this package)."""

from __future__ import annotations

import shlex
import zipfile
from importlib import metadata
from pathlib import Path

__all__ = ["make_autograder"]

_PACKAGE = Path(__file__).resolve().parent.parent

_SETUP = """#!/usr/bin/env bash
# Gradescope runs this once when the autograder image is built.
set -euo pipefail
apt-get update -qq && apt-get install -y -qq python3 python3-pip bubblewrap > /dev/null
python3 -m pip install --quiet {requirements}
"""

_RUN = """#!/usr/bin/env bash
# Gradescope runs this for every submission, as root. A zero result is in place before the student's code runs;
# the grader replaces it atomically with the real one. A grader that dies leaves a zero that says so, never a
# file the student's code wrote, and a non-zero exit status that Gradescope shows.
cd /autograder/source
RESULTS=/autograder/results/results.json
mkdir -p /autograder/results && chmod 755 /autograder/results
zero() {{
    printf '{{"score": 0, "output": "%s"}}\\n' "$1" > "$RESULTS.tmp" && mv -f "$RESULTS.tmp" "$RESULTS"
}}
zero "The grader did not finish; please tell the course staff."
ENGINE=/autograder/submission/{file}
if [ ! -f "$ENGINE" ]; then
    FOUND=$(find /autograder/submission -name {file} -type f | head -n 1)
    ENGINE="${{FOUND:-$ENGINE}}"
fi
status=0
PYTHONPATH=/autograder/source python3 -m microgradx.cli grade "$ENGINE" \\
    --assignment /autograder/source/assignment.toml --gradescope "$RESULTS" || status=$?
if [ "$status" -gt 2 ]; then
    zero "The grader failed (exit status $status); please tell the course staff."
    exit "$status"
fi
"""


def _requirements() -> list[str]:
    """The runtime requirements of microgradx, read from its installed metadata (never re-declared here)."""
    try:
        reqs = metadata.requires("microgradx") or []
    except metadata.PackageNotFoundError:
        reqs = []
    return [r for r in reqs if "extra ==" not in r]


def make_autograder(assignment: str | Path, output: str | Path = "autograder.zip") -> Path:
    """Write a zip Gradescope accepts as an autograder: grading runs this package on Gradescope's machines.

    >>> import pathlib, tempfile, zipfile
    >>> d = pathlib.Path(tempfile.mkdtemp()); _ = (d / "hw.toml").write_text('[assignment]\\nfile = "eng.py"\\n')
    >>> names = zipfile.ZipFile(make_autograder(d / "hw.toml", d / "a.zip")).namelist()
    >>> "setup.sh" in names and "run_autograder" in names and "microgradx/grading/worker.py" in names
    True
    """
    from .assignment import load_assignment

    asg = load_assignment(assignment)
    output = Path(output)
    quoted = " ".join(f"'{r}'" for r in _requirements())
    with zipfile.ZipFile(output, "w", zipfile.ZIP_DEFLATED) as z:
        for name, text in (("setup.sh", _SETUP.format(requirements=quoted)), ("run_autograder",
                                                                               _RUN.format(file=shlex.quote(asg.file)))):
            info = zipfile.ZipInfo(name)
            info.external_attr = 0o755 << 16  # executable, as Gradescope requires
            z.writestr(info, text)
        z.write(assignment, "assignment.toml")
        for path in sorted(_PACKAGE.rglob("*")):
            if path.is_file() and path.suffix in (".py", ".typed") and "__pycache__" not in path.parts:
                z.write(path, f"microgradx/{path.relative_to(_PACKAGE).as_posix()}")
    return output
