"""Figures drawn only from experiment files, so they can be redrawn at any time.

* :func:`plot_path` — loss (a) and error in % (b) along a path against the
  normalised distance, with the straight line W_a -> W_b for comparison
  (paper Figs. 3 and 5; train and, when stored, test);
* :func:`plot_hessian` — eigenvalues along a path (paper Figs. 2 and 4), with
  the training loss and the trace on a second axis when stored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Optional

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .io import Experiment, PathRecord, load  # noqa: E402

FORMATS = ("png", "pdf")


def _save(fig: plt.Figure, stem: Path, formats: Iterable[str]) -> list[Path]:
    out = []
    for ext in formats:
        p = stem.with_suffix("." + ext)
        fig.savefig(p, dpi=150, bbox_inches="tight")
        out.append(p)
    plt.close(fig)
    return out


def _title(e: Experiment, p: PathRecord) -> str:
    model = {"tcm": "TCM", "lenet5": "LeNet5"}.get(e.model, e.model)
    size = ""
    if e.model == "tcm":
        c = e.config
        size = f" N={c.get('n_inputs')}, K={c.get('n_hidden')}, M={c.get('n_patterns')}, seed {c.get('seed')}"
    elif "train_size" in e.config:
        size = f" MNIST, {e.config['train_size']} training images"
    status = "" if p.complete else f" [{p.status}]"
    return f"{model}{size}: path {p.source}\u2192{p.target}{status}"


def plot_path(e: Experiment, p: PathRecord, stem: Path, formats: Iterable[str] = FORMATS) -> list[Path]:
    """Loss and error along the path and the straight line; returns the files written."""
    fig, (ax_l, ax_e) = plt.subplots(1, 2, figsize=(11, 4))
    has_test = "test_loss" in p.extra
    ax_l.plot(p.distance, p.train_loss, color="C0", label="path, train")
    ax_e.plot(p.distance, 100 * p.train_error, color="C0", label="path, train")
    if has_test:
        x = p.extra.get("test_distance", p.distance)
        ax_l.plot(x, p.extra["test_loss"], color="C1", label="path, test")
        ax_e.plot(x, 100 * p.extra["test_error"], color="C1", label="path, test")
    if p.linear is not None:
        ax_l.plot(p.linear.alpha, p.linear.train_loss, color="C0", ls="--", alpha=0.7, label="straight line, train")
        ax_e.plot(p.linear.alpha, 100 * p.linear.train_error, color="C0", ls="--", alpha=0.7, label="straight line, train")
        if "test_loss" in p.linear.extra:
            ax_l.plot(p.linear.alpha, p.linear.extra["test_loss"], color="C1", ls="--", alpha=0.7, label="straight line, test")
            ax_e.plot(p.linear.alpha, 100 * p.linear.extra["test_error"], color="C1", ls="--", alpha=0.7, label="straight line, test")
    ax_l.set_xlabel("normalised distance from $W_a$ (0) to $W_b$ (1)")
    ax_e.set_xlabel("normalised distance from $W_a$ (0) to $W_b$ (1)")
    ax_l.set_ylabel("loss (mean, nats)")
    ax_e.set_ylabel("error [%]")
    ax_l.set_title("(a) loss")
    ax_e.set_title("(b) error")
    for ax in (ax_l, ax_e):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(_title(e, p))
    return _save(fig, stem, formats)


def plot_hessian(e: Experiment, p: PathRecord, stem: Path, formats: Iterable[str] = FORMATS, top: Optional[int] = None) -> list[Path]:
    """Eigenvalues at the stored Hessian points against distance, with the loss and trace when stored."""
    h = p.hessian
    if h is None:
        return []
    idx = np.asarray(h["index"], dtype=int)
    ev = np.asarray(h["eigenvalues"])
    if top is not None:
        ev = ev[:, :top]
    x = p.distance[idx] if len(p.distance) > int(idx.max(initial=0)) else np.linspace(0, 1, len(idx))
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for k in range(ev.shape[1]):
        ax.plot(x, ev[:, k], marker=".", lw=1, color=plt.cm.viridis(k / max(1, ev.shape[1] - 1)))
    ax.set_xlabel("normalised distance from $W_a$ (0) to $W_b$ (1)")
    ax.set_ylabel("Hessian eigenvalue")
    ax.grid(alpha=0.3)
    ax2 = ax.twinx()
    ax2.plot(p.distance, p.train_loss, color="k", ls=":", label="train loss")
    if "trace" in h:
        ax2.plot(x, np.asarray(h["trace"]), color="C3", ls="--", label="trace")
    ax2.set_ylabel("train loss / trace")
    ax2.legend(loc="upper right", fontsize=8)
    ax.set_title(_title(e, p) + f": top {ev.shape[1]} eigenvalues")
    return _save(fig, stem, formats)


def plot_file(path: str | Path, out_dir: str | Path, formats: Iterable[str] = FORMATS) -> list[Path]:
    """Every figure for every path of one experiment file, into ``out_dir``."""
    e = load(path)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    base = Path(path).stem
    for p in e.iter_paths():
        written += plot_path(e, p, out_dir / f"{base}_path_{p.name}", formats)
        written += plot_hessian(e, p, out_dir / f"{base}_hessian_{p.name}", formats)
    return written
