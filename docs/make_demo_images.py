"""Regenerate the demo pictures in docs/img/demos by running each demo: ``python docs/make_demo_images.py``.

Each demo runs in fast mode (small PNGs; drawings as SVG) into a temporary folder; the pictures that
docs/demos.md shows are copied.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET = ROOT / "docs" / "img" / "demos"
PICTURES = {
    "worked_backprop": ["2-backward.svg"],
    "path_summation": ["two-paths-1.svg", "scaling.png"],
    "activation_gallery": ["gallery.png", "sigmoid-family.png"],
    "learning_rate_1d": ["trajectories.png"],
    "line_search": ["iterates.png"],
    "momentum_zigzag": ["zigzag.png"],
    "insurance_logistic": ["insurance.png"],
    "vanishing_gradients": ["layer-norms.png"],
    "optimizer_comparison": ["optimizers.png"],
    "batch_size_study": ["loss.png"],
    "lr_schedules": ["schedules.png"],
    "regularisation": ["regularisation.png"],
    "mnist_mlp": ["training.png"],
}


def main() -> None:
    """Run every demo in fast mode and copy its pictures to docs/img/demos/<demo>-<picture>."""
    os.environ.setdefault("MICROGRADX_DOT", "pure")  # graphviz-pure draws the same bytes on every platform
    sys.path.insert(0, str(ROOT / "demos"))
    TARGET.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for name, pictures in PICTURES.items():
            out = Path(tmp) / name
            spec = importlib.util.spec_from_file_location(name, ROOT / "demos" / f"{name}.py")
            module = sys.modules[name] = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            module.main(["--fast", "--out", str(out)])
            for picture in pictures:
                print(shutil.copyfile(out / picture, TARGET / f"{name}-{picture}"))


if __name__ == "__main__":
    main()
