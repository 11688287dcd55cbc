"""Regenerate the drawings in docs/img with microgradx itself: ``python docs/make_images.py``.

They are rendered with graphviz-pure, which writes the same bytes on every platform, unless MICROGRADX_DOT
says otherwise.
"""

from __future__ import annotations

import os
from pathlib import Path

from microgradx import paths
from microgradx.examples import seed001_example3
from microgradx.render import draw

HERE = Path(__file__).resolve().parent / "img"


def main() -> None:
    """Draw seed 001's Example 3 after backward, with the one path from w1 to J highlighted."""
    os.environ.setdefault("MICROGRADX_DOT", "pure")
    ex = seed001_example3()
    ex.J.backward()
    d = draw(ex.J, highlight=paths(ex.J, ex.w1), direction="TB",
             title="Seed 001, Example 3 after backward: z(i, j) and S(j) * z(i, j) on each edge")
    print(d.save(HERE / "example3.svg"))


if __name__ == "__main__":
    main()
