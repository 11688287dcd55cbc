"""The image data of the MNIST demos: scikit-learn's 8x8 digits by default, the real MNIST files with --mnist-dir.

MNIST needs its four IDX files (a download); the digits ship with scikit-learn, so the demos run offline on them
and say so.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from microgradx.train import Prepared, prepare

__all__ = ["add_mnist_option", "digits_or_mnist"]


def add_mnist_option(parser: argparse.ArgumentParser) -> None:
    """``--mnist-dir DIR``: the four MNIST IDX files (gzipped or not); without it the demo runs on the digits."""
    parser.add_argument("--mnist-dir", type=Path, default=None,
                        help="folder with the four MNIST IDX files; without it: scikit-learn's 8x8 digits")


def digits_or_mnist(mnist_dir: Path | None) -> tuple[Prepared, str]:
    """MNIST (pixels / 255, the official test set) when ``mnist_dir`` is given, else the digits (pixels / 16, 25%
    stratified test split, seed 0); and a sentence saying which."""
    if mnist_dir is not None:
        p = prepare("mnist", mnist_dir=mnist_dir)
        return p, f"MNIST from {mnist_dir}: {len(p.X_train)} training and {len(p.X_test)} test images, 784 pixels / 255"
    p = prepare("digits", seed=0)
    return p, (f"scikit-learn's 8x8 DIGITS, not MNIST (give --mnist-dir for MNIST): {len(p.X_train)} training and "
               f"{len(p.X_test)} test images, 64 pixels / 16")
