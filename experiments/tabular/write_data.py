"""Write scikit-learn's breast cancer data (569 x 30 real-valued features, 2 classes) as .npy files.

Usage: python experiments/tabular/write_data.py OUT_DIR   ->  OUT_DIR/x.npy, OUT_DIR/y.npy
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from sklearn.datasets import load_breast_cancer


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    data = load_breast_cancer()
    np.save(out / "x.npy", data.data)  # raw: areas in the hundreds, smoothness around 0.1
    np.save(out / "y.npy", data.target)
    print(f"wrote {out / 'x.npy'} {data.data.shape} and {out / 'y.npy'} (classes {np.bincount(data.target).tolist()})")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "runs/tabular"))
