"""A custom figure from an experiment file, with nothing but ``ramble.storage.io.load``, NumPy and matplotlib.

    python examples/custom_plot.py FILE.h5 OUT.png

For every path in FILE.h5: the training loss along the path against the
straight line W_a -> W_b (dashed), both against the normalised distance
(0 at W_a, 1 at W_b), and the line's training error on a second axis; the
path's own training error is zero by construction (it never leaves S).

``load`` returns an ``Experiment``: ``e.paths`` maps "i-j" to a
``PathRecord`` with NumPy arrays ``distance``, ``arclength``,
``train_loss``, ``train_error``, ``test_loss`` and ``test_error`` (LeNet5;
None for the TCM), the other per-point datasets in ``p.extra`` (``leg``,
``weight_index``), the straight line in ``p.linear`` (``alpha``,
``train_loss``, ``train_error``), the Hessian, when stored, in ``p.hessian``
(a ``HessianRecord``: ``index``, ``eigenvalues``, ``trace``, ``attrs``), and
``p.length_ratio`` (path length / |W_a - W_b|).  ``help(PathRecord)``
describes every field; docs/format.md has the full layout.
"""

from __future__ import annotations

import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ramble.storage.io import load  # noqa: E402


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(f"usage: {argv[0]} FILE.h5 OUT.png", file=sys.stderr)
        return 2
    src, out = argv[1], argv[2]
    e = load(src, weights=False)  # weights are not needed here (and are large for LeNet5)
    paths = list(e.iter_paths())
    if not paths:
        print(f"{src}: no paths stored", file=sys.stderr)
        return 1
    fig, axes = plt.subplots(len(paths), 1, figsize=(7, 3.2 * len(paths)), squeeze=False)
    for ax, p in zip(axes[:, 0], paths):
        ax.plot(p.distance, p.train_loss, color="C0", label=f"path, max train error {100 * np.max(p.train_error):.1f}%")
        if p.linear is not None:
            ax.plot(p.linear.alpha, p.linear.train_loss, color="C0", ls="--", label="straight line")
            ax2 = ax.twinx()
            ax2.fill_between(p.linear.alpha, 100 * p.linear.train_error, color="C3", alpha=0.2, step="mid")
            ax2.set_ylabel("straight line: train error [%]", color="C3")
            ax2.set_ylim(bottom=0)
            ax.set_zorder(ax2.get_zorder() + 1)  # the loss curves above the shaded error
            ax.patch.set_visible(False)
            ax.fill_between([], [], color="C3", alpha=0.2, label="straight line: train error (right)")
        ax.set_xlabel("normalised distance (0: $W_a$, 1: $W_b$)")
        ax.set_ylabel("training loss (nats)")
        ax.set_title(f"{e.model} path {p.source}\u2192{p.target}: {p.status}, {p.attrs.get('iterations', '?')} iterations")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
