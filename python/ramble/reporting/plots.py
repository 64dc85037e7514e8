"""Figures drawn only from experiment files, so they can be redrawn at any time.

Per path:

* :func:`plot_path` / :func:`fig3_mnist_path` — loss (a) and error in % (b)
  along a path against the normalised distance, with the straight line
  W_a -> W_b for comparison (paper Figs. 3 and 5; train and, when stored,
  test; the best test error on the path is marked);
* :func:`fig2_tcm_hessian` — TCM: the largest Hessian eigenvalues along the
  path with the band of all non-zero ones (a), the trace and the training
  loss (b), and the number of non-zero eigenvalues (c) (paper Fig. 2);
* :func:`fig4_mnist_hessian` — LeNet5: the top-k (20) eigenvalues along the
  path (a), with the training loss and the trace (b) (paper Fig. 4);
* :func:`plot_hessian` — whichever of the two fits the file's model;
* :func:`fig_curves` — ramble's path, the straight line and the trained
  Bezier curve (``ramble curves``) held against S: training error, where
  each leaves S, test error (LeNet5);
* :func:`fig_align` — the straight line and ramble's path before and after
  aligning W_j's hidden units to W_i's (``ramble align``): training and
  test error.

Over many files:

* :func:`fig_tcm_summary` — one row per TCM pair (data set x pair): path
  found or not and waypoints used, the straight line's largest training
  error, iterations;
* :func:`fig_tcm_trace_vs_loss` — trace of the Hessian against the training
  loss at every Hessian point of every TCM path (is the trace proportional
  to the loss?);
* :func:`fig_sweep_success` — a sweep (:mod:`ramble.experiments.sweep`): success rate
  of the paths over gamma and N_epochs, per variant (docs/sweeps.md).

Every function takes a ``stem`` (a path without suffix) and returns the
files it wrote, one per format (PNG and PDF by default).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ramble.errors import RambleError  # noqa: E402
from ramble.models.registry import model_spec  # noqa: E402
from ramble.storage.io import Experiment, PathRecord, load, make_folder  # noqa: E402

FORMATS = ("png", "pdf")
XLABEL = "normalised distance from $W_a$ (0) to $W_b$ (1)"
#: LeNet5 Fig. 4 shows this many eigenvalues; TCM Fig. 2 draws this many lines.
TOP_LENET = 20
TOP_TCM = 10


# ----------------------------------------------------------------- helpers
def _save(fig: plt.Figure, stem: Path, formats: Iterable[str]) -> list[Path]:
    stem = Path(stem)
    out = []
    try:
        make_folder(stem.parent, "figure folder")
        for ext in formats:
            p = stem.with_name(stem.name + "." + ext)
            try:
                fig.savefig(p, dpi=150, bbox_inches="tight")
            except OSError as e:  # unwritable folder, full disk: one line, not a traceback
                raise RambleError(f"cannot write figure {p}: {e.strerror or e}") from None
            out.append(p)
    finally:
        plt.close(fig)
    return out


def model_name(e: Experiment) -> str:
    """The network's name for titles: "TCM", "LeNet5", or a torch file's factory name (its spec's :meth:`figure_name`)."""
    return model_spec(e.model).figure_name(e)


def data_label(e: Experiment) -> str:
    """Short description of the file's problem: sizes and seed (TCM), training images (MNIST); its spec's :meth:`data_label`."""
    return model_spec(e.model).data_label(e)


def _title(e: Experiment, p: PathRecord) -> str:
    status = "" if p.complete else f" [{p.status}]"
    wp = int(p.attrs.get("waypoints", 0) or 0)
    via = f", {wp} waypoint(s)" if wp else ""
    return f"{model_name(e)} {data_label(e)}: path {p.source}\u2192{p.target}{via}{status}"


def recorded_rows(p: PathRecord) -> np.ndarray:
    """For every row of ``weights``, the recorded point (index into ``distance``) it is."""
    wi = p.extra.get("weight_index")
    if wi is not None:
        return np.asarray(wi, dtype=int)
    return np.arange(len(p.distance))


def hessian_points(p: PathRecord) -> tuple[np.ndarray, np.ndarray]:
    """(recorded-point index, normalised distance) of each Hessian point of ``p``.

    ``hessian/index`` counts rows of ``weights``; when weights are kept at a
    stride, ``weight_index`` maps them to recorded points.
    """
    h = p.hessian or {}
    idx = np.asarray(h.get("index", []), dtype=int)
    rows = recorded_rows(p)
    if len(idx) and idx.max() < len(rows):
        rec = rows[idx]
        if rec.max() < len(p.distance):
            return rec, np.asarray(p.distance)[rec]
    return idx, np.linspace(0.0, 1.0, len(idx))


def hessian_loss(p: PathRecord) -> np.ndarray:
    """Training loss at the Hessian points: ``hessian/loss`` when stored, else ``train_loss`` there."""
    h = p.hessian or {}
    if "loss" in h:
        return np.asarray(h["loss"], dtype=float)
    rec, _ = hessian_points(p)
    return np.asarray(p.train_loss, dtype=float)[rec]


def n_nonzero(p: PathRecord) -> Optional[np.ndarray]:
    """Stored non-zero eigenvalue counts (TCM, full spectrum), or None."""
    h = p.hessian or {}
    if "n_nonzero" not in h:
        return None
    n = np.asarray(h["n_nonzero"], dtype=int)
    return None if (n < 0).any() else n


def pearson_text(x: np.ndarray, y: np.ndarray) -> str:
    """"Pearson r = 0.96 (95 % CI 0.52 to 1.00, n = 5)": the interval from Fisher's z, so a statistic of few points says so."""
    n = len(x)
    if n < 3 or np.std(x) == 0 or np.std(y) == 0:
        return f"Pearson r undefined (n = {n})"
    r = float(np.corrcoef(x, y)[0, 1])
    if n < 4 or abs(r) >= 1:
        return f"Pearson r = {r:.2f} (n = {n}, too few for an interval)"
    z, half = math.atanh(r), 1.959964 / math.sqrt(n - 3)
    return f"Pearson r = {r:.2f} (95 % CI {math.tanh(z - half):.2f} to {math.tanh(z + half):.2f}, n = {n})"


def path_x(p: PathRecord, x_axis: str = "distance") -> np.ndarray:
    """x of every recorded point: the paper's normalised distance, or arc length / |W_a - W_b| (``"arclength"``)."""
    if x_axis == "distance":
        return np.asarray(p.distance, dtype=float)
    if x_axis != "arclength":
        raise RambleError(f"x axis must be 'distance' or 'arclength', got {x_axis!r}")
    if p.arclength is None or not np.isfinite(p.line_length) or p.line_length <= 0:
        raise RambleError(f"path {p.name}: no arc length to plot against ({p.arclength_source or 'the straight line has no length'}); use --x distance")
    return np.asarray(p.arclength, dtype=float) / p.line_length


def length_note(p: PathRecord) -> str:
    """"path length 3.39x the straight line", or "" when unknown."""
    r = p.length_ratio
    return f"path length {r:.2f}x the straight line" if np.isfinite(r) else ""


def _mark_best_test(ax, p: PathRecord, x: Optional[np.ndarray] = None) -> None:
    te = p.extra.get("test_error")
    if te is None or not len(te):
        return
    x = np.asarray(p.extra.get("test_distance", p.distance)) if x is None else x
    k = int(np.argmin(te))
    ax.plot([x[k]], [100 * te[k]], marker="*", ms=13, color="C1", mec="k", ls="none", zorder=5, label=f"best test error {100 * te[k]:.1f}% at {x[k]:.2f}")


# ----------------------------------------------------------------- per path
def plot_path(e: Experiment, p: PathRecord, stem: Path, formats: Iterable[str] = FORMATS, x_axis: str = "distance") -> list[Path]:
    """Loss (a) and error in % (b) along the path and the straight line; returns the files written.

    ``x_axis``: ``"distance"`` (the paper's normalised distance, default) or
    ``"arclength"`` (length travelled along the path in units of
    |W_a - W_b|; the straight line runs from 0 to 1, the path to its length
    ratio).  Waypoints (when a leg stalled and the path went through a
    freshly trained solution) are marked on the path: where the stalled leg
    stopped, and where the waypoint was reached.
    """
    px = path_x(p, x_axis)
    fig, (ax_l, ax_e) = plt.subplots(1, 2, figsize=(12, 4.4))
    has_test = "test_loss" in p.extra
    mk = dict(marker=".", ms=3) if len(p.distance) <= 150 else {}
    ax_l.plot(px, p.train_loss, color="C0", label="path $\\Omega_{ab}$, train", **mk)
    ax_e.plot(px, 100 * np.asarray(p.train_error), color="C0", label="path $\\Omega_{ab}$, train", **mk)
    if has_test:
        x = px if x_axis == "arclength" else p.extra.get("test_distance", p.distance)
        ax_l.plot(x, p.extra["test_loss"], color="C1", label="path $\\Omega_{ab}$, test", **mk)
        ax_e.plot(x, 100 * np.asarray(p.extra["test_error"]), color="C1", label="path $\\Omega_{ab}$, test", **mk)
    if p.linear is not None:
        ax_l.plot(p.linear.alpha, p.linear.train_loss, color="C0", ls="--", alpha=0.6, label="straight line $l_{ab}$, train")
        ax_e.plot(p.linear.alpha, 100 * np.asarray(p.linear.train_error), color="C0", ls="--", alpha=0.6, label="straight line $l_{ab}$, train")
        if "test_loss" in p.linear.extra:
            ax_l.plot(p.linear.alpha, p.linear.extra["test_loss"], color="C1", ls="--", alpha=0.6, label="straight line $l_{ab}$, test")
            ax_e.plot(p.linear.alpha, 100 * np.asarray(p.linear.extra["test_error"]), color="C1", ls="--", alpha=0.6, label="straight line $l_{ab}$, test")
    _mark_best_test(ax_e, p, px if x_axis == "arclength" else None)
    reached, stalled = waypoint_rows(p)
    for rows, marker, lab in ((stalled, "X", "leg stalled (next: a waypoint)"), (reached, "D", "waypoint reached")):
        if len(rows):
            ax_l.plot(px[rows], p.train_loss[rows], ls="none", marker=marker, ms=7, mfc="none", mec="k", label=lab)
            ax_e.plot(px[rows], 100 * np.asarray(p.train_error)[rows], ls="none", marker=marker, ms=7, mfc="none", mec="k")
    xlabel = XLABEL if x_axis == "distance" else "arc length along the path / $|W_a - W_b|$ (straight line: 0 to 1)"
    ax_l.set_xlabel(xlabel)
    ax_e.set_xlabel(xlabel)
    loss_unit = model_spec(e.model).loss_label
    sets = "training and test set" if has_test else "training set"
    ax_l.set_ylabel(f"loss ({loss_unit})")
    ax_e.set_ylabel("error [%]")
    ax_l.set_title(f"(a) loss on {sets}")
    ax_e.set_title(f"(b) error [%] on {sets}")
    for ax in (ax_l, ax_e):
        ax.grid(alpha=0.3)
        ax.set_xlim(min(0.0, float(np.min(px))) - 0.02, max(1.0, float(np.max(px))) + 0.02)
    handles, labels = ax_l.get_legend_handles_labels()
    for h, lab in zip(*ax_e.get_legend_handles_labels()):
        if lab not in labels:
            handles.append(h)
            labels.append(lab)
    fig.legend(handles, labels, loc="lower center", ncol=min(4, len(labels)), fontsize=9, bbox_to_anchor=(0.5, -0.02), frameon=False)
    fig.suptitle(_title(e, p) + (f"; {length_note(p)}" if length_note(p) else ""))
    fig.tight_layout(rect=(0, 0.1 if len(labels) <= 4 else 0.14, 1, 1))
    return _save(fig, stem, formats)


def waypoint_rows(p: PathRecord) -> tuple[np.ndarray, np.ndarray]:
    """Recorded points where a waypoint was reached, and where a stalled leg stopped."""
    leg = p.extra.get("leg")
    if leg is None or len(np.unique(leg)) < 2:
        return np.empty(0, int), np.empty(0, int)
    starts = np.flatnonzero(np.diff(np.asarray(leg)) != 0)  # last point of each leg but the final one
    wp_iter = set(int(i) for i in np.atleast_1d(p.attrs.get("waypoint_iterations", [])))
    it = np.asarray(p.iteration)
    reached = np.array([k for k in starts if int(it[k]) in wp_iter or int(it[min(k + 1, len(it) - 1)]) in wp_iter], dtype=int)
    stalled = np.array([k for k in starts if k not in set(reached.tolist())], dtype=int)
    return reached, stalled


def fig3_mnist_path(e: Experiment, p: PathRecord, stem: Path, formats: Iterable[str] = FORMATS) -> list[Path]:
    """Paper Figs. 3 and 5: LeNet5 loss (a) and error in % (b) on train and test along the path, with the straight line."""
    return plot_path(e, p, stem, formats)


fig5_mnist_path = fig3_mnist_path


def fig2_tcm_hessian(e: Experiment, p: PathRecord, stem: Path, formats: Iterable[str] = FORMATS, top: int = TOP_TCM) -> list[Path]:
    """Paper Fig. 2: TCM Hessian eigenvalues, trace, training loss and non-zero count along the path."""
    h = p.hessian
    if h is None:
        return []
    ev = np.asarray(h["eigenvalues"], dtype=float)
    _, x = hessian_points(p)
    nnz = n_nonzero(p)
    rtol = float(h.get("attrs", {}).get("nonzero_rtol", 1e-8))
    if nnz is None:
        scale = np.abs(ev).max(axis=1, keepdims=True)
        nnz = (np.abs(ev) > rtol * scale).sum(axis=1)
    ntop = int(min(top, ev.shape[1], max(1, nnz.min())))
    fig, (ax, axt, axn) = plt.subplots(3, 1, figsize=(8, 9.5), sharex=True, gridspec_kw={"height_ratios": [3, 2, 1.3]})
    # (a) eigenvalues: the band of every non-zero one, the top few as lines
    lo = np.array([ev[r, max(0, nnz[r] - 1)] for r in range(len(ev))])
    ax.fill_between(x, np.maximum(lo, 1e-300), ev[:, 0], color="0.85", label=f"range of all non-zero eigenvalues ({nnz.min()}\u2013{nnz.max()} of them)")
    cols = plt.cm.viridis(np.linspace(0, 0.9, ntop))
    for k in range(ntop):
        ax.plot(x, ev[:, k], marker="o", ms=3, lw=1.2, color=cols[k], label=f"$\\lambda_{{{k + 1}}}$" if k in (0, ntop - 1) else None)
    ax.set_yscale("log")
    ax.set_ylabel("Hessian eigenvalue (log scale)")
    ax.set_title(f"(a) the {ntop} largest eigenvalues (lines, $\\lambda_1$ on top) and all non-zero ones (band)")
    ax.legend(fontsize=8, loc="center", ncol=3)  # inside the band: hides nothing but grey
    ax.grid(alpha=0.3, which="both")
    # (b) trace and training loss, each on its own axis
    tr = np.asarray(h["trace"], dtype=float)
    loss_pts = hessian_loss(p)
    axt.plot(x, tr, color="C3", marker="s", ms=4, label="trace of the Hessian (left)")
    axt.set_ylabel("trace", color="C3")
    axt.tick_params(axis="y", colors="C3")
    axl = axt.twinx()
    axl.plot(p.distance, p.train_loss, color="k", lw=1, label="training loss (right)")
    axl.plot(x, loss_pts, color="k", marker="o", ms=3, ls="none")
    axl.set_ylabel("training loss (nats)")
    ratio = tr / loss_pts
    axt.set_title(f"(b) trace and training loss: {pearson_text(tr, loss_pts)}; trace/loss {ratio.min():.3g}\u2013{ratio.max():.3g}", fontsize=10)
    handles = axt.get_legend_handles_labels()[0] + axl.get_legend_handles_labels()[0]
    axt.legend(handles=handles, fontsize=8, loc="best")
    axt.grid(alpha=0.3)
    # (c) the number of non-zero eigenvalues
    K = int(e.model_info.get("K", e.config.get("n_hidden", 0)) or 0)
    # markers only: the count is known at the Hessian points, not between them
    axn.plot(x, nnz, color="C2", marker="o", ms=5, ls="none", label=f"measured at {len(x)} points (|$\\lambda$| > {rtol:.0e} $\\cdot$ max |$\\lambda$|)")
    if K:
        axn.axhline(K, color="C3", ls="--", lw=1, label=f"paper: K = {K}")
    axn.set_ylabel("non-zero\neigenvalues")
    axn.set_ylim(0, max(nnz.max(), K) * 1.15 + 1)
    axn.set_title("(c) number of non-zero eigenvalues")
    axn.legend(fontsize=8, loc="lower right")
    axn.grid(alpha=0.3)
    axn.set_xlabel(XLABEL)
    fig.suptitle(_title(e, p) + f"\nexact Hessian of the training loss at {len(x)} points", fontsize=11)
    fig.tight_layout()
    return _save(fig, stem, formats)


def fig4_mnist_hessian(e: Experiment, p: PathRecord, stem: Path, formats: Iterable[str] = FORMATS, top: int = TOP_LENET) -> list[Path]:
    """Paper Fig. 4: the top-k Hessian eigenvalues along a LeNet5 path, with the loss and the trace (exact or Hutchinson's, as stored)."""
    h = p.hessian
    if h is None:
        return []
    ev = np.asarray(h["eigenvalues"], dtype=float)[:, :top]
    k = ev.shape[1]
    _, x = hessian_points(p)
    fig, (ax, axt) = plt.subplots(2, 1, figsize=(8, 8), sharex=True, gridspec_kw={"height_ratios": [3, 2]})
    cmap = plt.cm.viridis
    for j in range(k):
        ax.plot(x, ev[:, j], marker="o", ms=3, lw=1, color=cmap(j / max(1, k - 1)))
    conv = h.get("converged")
    if conv is not None:
        bad = ~np.asarray(conv, dtype=bool)[:, :k]
        if bad.any():
            rr, cc = np.nonzero(bad)
            ax.plot(x[rr], ev[rr, cc], ls="none", marker="x", color="C3", ms=7, label="not converged")
            ax.legend(fontsize=8)
    pos = ev[ev > 0]
    if len(pos) == ev.size and pos.max() / pos.min() < 30:
        ax.set_ylabel("Hessian eigenvalue")
    elif len(pos) == ev.size:
        ax.set_yscale("log")
        ax.set_ylabel("Hessian eigenvalue (log scale)")
    else:
        ax.set_yscale("symlog", linthresh=max(1e-3, float(np.abs(ev).max()) * 1e-3))
        ax.axhline(0, color="k", lw=0.8)
        ax.set_ylabel("Hessian eigenvalue (symlog scale)")
    sm = plt.cm.ScalarMappable(cmap=cmap, norm=plt.Normalize(1, k))
    cb = fig.colorbar(sm, ax=ax, pad=0.01)
    cb.set_label("rank (1 = largest)")
    cb.set_ticks(sorted({1, *range(5, k + 1, 5), k}))
    a = h.get("attrs", {})
    sub = a.get("subset_size")
    ax.set_title(f"(a) top-{k} eigenvalues ({a.get('which', 'LA')}, Lanczos tol {a.get('tol', '?')}" + (f", over {sub} training images)" if sub else ")") + f"; smallest {ev.min():.3g}")
    ax.grid(alpha=0.3, which="both")
    tr = np.asarray(h.get("trace", np.full(len(x), np.nan)), dtype=float)
    se = np.asarray(h.get("trace_se", np.zeros(len(x))), dtype=float)
    how = "exact" if str(a.get("trace_method", "")).startswith("exact") else "Hutchinson, \u00b1 s.e."
    axt.errorbar(x, tr, yerr=se, color="C3", marker="s", ms=4, capsize=3, label=f"trace ({how}; left)")
    axt.set_ylabel("trace", color="C3")
    axt.tick_params(axis="y", colors="C3")
    axl = axt.twinx()
    axl.plot(p.distance, p.train_loss, color="k", lw=1, label="training loss (right)")
    axl.plot(x, hessian_loss(p), color="k", marker="o", ms=3, ls="none")
    axl.set_ylabel("training loss (nats)")
    handles = axt.get_legend_handles_labels()[0] + axl.get_legend_handles_labels()[0]
    axt.legend(handles=handles, fontsize=8, loc="best")
    axt.set_title("(b) trace of the Hessian and training loss")
    axt.grid(alpha=0.3)
    axt.set_xlabel(XLABEL)
    fig.suptitle(_title(e, p) + f"\nHessian of the training loss at {len(x)} points", fontsize=11)
    fig.tight_layout()
    return _save(fig, stem, formats)


def plot_hessian(e: Experiment, p: PathRecord, stem: Path, formats: Iterable[str] = FORMATS, top: Optional[int] = None) -> list[Path]:
    """The Hessian figure that fits the model: :func:`fig2_tcm_hessian` for full spectra (its spec's ``exact_hessians``), else :func:`fig4_mnist_hessian`."""
    if p.hessian is None:
        return []
    if model_spec(e.model).exact_hessians:
        return fig2_tcm_hessian(e, p, stem, formats, top=top or TOP_TCM)
    return fig4_mnist_hessian(e, p, stem, formats, top=top or TOP_LENET)


# ----------------------------------------------------------------- over files
def _as_experiments(files: Sequence) -> list[Experiment]:
    return [f if isinstance(f, Experiment) else load(f, weights=False) for f in files]


def fig_tcm_summary(tcm_files: Sequence, stem: Path, formats: Iterable[str] = FORMATS) -> list[Path]:
    """One row per TCM pair: found or not (waypoints), the straight line's max training error, iterations."""
    exps = _as_experiments(tcm_files)
    rows = []
    boundaries = []
    for e in exps:
        if rows:
            boundaries.append(len(rows))
        for p in e.iter_paths():
            line = float(np.max(p.linear.train_error)) if p.linear is not None else float("nan")
            rows.append((f"seed {e.config.get('seed')}  {p.source}\u2192{p.target}", p.complete, int(p.attrs.get("waypoints", 0) or 0), line, int(p.attrs.get("iterations", 0) or 0), float(np.max(p.train_error)) if len(p.train_error) else float("nan")))
    n = len(rows)
    if n == 0:
        return []
    fig, (ax_s, ax_l, ax_i) = plt.subplots(1, 3, figsize=(12, 1.6 + 0.28 * n), sharey=True, gridspec_kw={"width_ratios": [1.2, 2, 2]})
    y = np.arange(n)[::-1]
    labels = [r[0] for r in rows]
    for yy, (_, ok, wp, _, _, _perr) in zip(y, rows):
        if ok:
            ax_s.plot(0, yy, marker="o", color="C2", ms=9, ls="none")
        else:
            ax_s.plot(0, yy, marker="X", color="C3", ms=10, ls="none")
        txt = ("found" if ok else "not found") + (f", {wp} waypoint{'s' if wp != 1 else ''}" if wp else "")
        ax_s.text(0.25, yy, txt, va="center", fontsize=8)
    ax_s.set_xlim(-0.3, 2.2)
    ax_s.set_xticks([])
    ax_s.set_yticks(y)
    ax_s.set_yticklabels(labels, fontsize=8)
    n_ok = sum(r[1] for r in rows)
    ax_s.set_title(f"(a) path in S: {n_ok}/{n} found")
    lines = np.array([r[3] for r in rows])
    cols = ["C3" if v > 0 else "C2" for v in lines]
    ax_l.barh(y, 100 * lines, color=cols, height=0.7)
    ax_l.set_xlabel("largest training error on the straight line $l_{ab}$ [%]")
    ax_l.set_title(f"(b) straight line leaves S: {int((lines > 0).sum())}/{n}")
    ax_l.grid(alpha=0.3, axis="x")
    its = np.array([r[4] for r in rows])
    ax_i.barh(y, its, color=["C0" if r[1] else "C3" for r in rows], height=0.7)
    ax_i.set_xlabel("iterations of the path algorithm")
    ax_i.set_title(f"(c) iterations (median {int(np.median(its))})")
    ax_i.grid(alpha=0.3, axis="x")
    ax_s.set_ylim(-0.7, n - 0.3)
    for b in boundaries:
        for ax in (ax_s, ax_l, ax_i):
            ax.axhline(n - b - 0.5, color="0.6", lw=0.6)
    sizes = sorted({data_label(e).split(", seed")[0] for e in exps})
    fig.suptitle(f"TCM ({'; '.join(sizes)}): {len(exps)} data set(s), {n} pairs", fontsize=11)
    fig.tight_layout()
    return _save(fig, stem, formats)


def fig_tcm_trace_vs_loss(tcm_files: Sequence, stem: Path, formats: Iterable[str] = FORMATS) -> list[Path]:
    """Trace of the Hessian against the training loss at every Hessian point of every TCM path."""
    exps = _as_experiments(tcm_files)
    pts = []
    for fi, e in enumerate(exps):
        for p in e.iter_paths():
            if p.hessian is None or "trace" not in p.hessian:
                continue
            pts.append((fi, f"seed {e.config.get('seed')}", hessian_loss(p), np.asarray(p.hessian["trace"], dtype=float)))
    if not pts:
        return []
    fig, ax = plt.subplots(figsize=(7.5, 5.5))
    cmap = plt.cm.tab10
    seen = set()
    for fi, lab, lo, tr in pts:
        col = cmap(fi % cmap.N)
        n_paths = sum(q[0] == fi for q in pts)
        ax.plot(lo, tr, marker="o", ms=4, lw=0.8, color=col, label=None if fi in seen else f"{lab} ({n_paths} path{'s' if n_paths != 1 else ''})")
        seen.add(fi)
        ax.plot(lo[[0, -1]], tr[[0, -1]], ls="none", marker="s", ms=8, mfc="none", mec=col)
    pts = [(lab, lo, tr) for _, lab, lo, tr in pts]
    allx = np.concatenate([q[1] for q in pts])
    ally = np.concatenate([q[2] for q in pts])
    c = float(np.dot(allx, ally) / np.dot(allx, allx))
    xx = np.linspace(0, allx.max() * 1.05, 10)
    ax.plot(xx, c * xx, color="k", ls="--", lw=1, label=f"proportional fit: trace = {c:.3g} \u00d7 loss")
    r = float(np.corrcoef(allx, ally)[0, 1])
    ax.set_xlabel("training loss (mean, nats)")
    ax.set_ylabel("trace of the Hessian")
    ax.set_xlim(left=0)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.set_title(f"TCM: trace vs training loss at {len(allx)} Hessian points of {len(pts)} paths (pooled r = {r:.3f})\none colour per data set, lines along each path; squares: endpoints (the SGD solutions)", fontsize=10)
    ax.legend(fontsize=8, ncol=2 if len(exps) > 6 else 1, loc="lower right")
    return _save(fig, stem, formats)


def fig_connectivity(e: Experiment, stem: Path, formats: Iterable[str] = FORMATS) -> list[Path]:
    """Solutions as nodes (placed by classical MDS of their distances), paths as edges (docs/connectivity.md).

    Edge colour and style: the path's outcome (green solid: complete,
    orange dashed: routed through another solution, red dotted: failed);
    edge width and label: the straight line's largest training error.
    Nodes are coloured by connected component.  Pairs never attempted have no edge.
    """
    import textwrap

    from matplotlib.lines import Line2D

    from ramble.analysis.connectivity import DIRECT, FAILED, ROUTED, analyse, classical_mds, edge_table, solution_distances

    if len(e.solutions) < 2:
        return []
    keys = sorted(e.solutions)
    pos_of = {k: r for r, k in enumerate(keys)}
    xy, kept = classical_mds(solution_distances(e.solutions))
    conn = analyse(e)
    edges = edge_table(e)
    errs = np.array([float(x["line_max_error"]) for x in edges], dtype=float)
    top = float(np.nanmax(errs)) if np.isfinite(errs).any() and np.nanmax(errs) > 0 else 0.0

    def width(err: float) -> float:
        return 1.5 if not np.isfinite(err) or top == 0 else 1.0 + 7.0 * err / top

    style = {DIRECT: ("C2", "-", "complete path"), ROUTED: ("C1", "--", "complete, routed through another solution"), FAILED: ("C3", ":", "failed")}
    fig, ax = plt.subplots(figsize=(8, 7))
    label_edges = len(keys) <= 8
    for x in edges:
        a, b = xy[pos_of[int(x["i"])]], xy[pos_of[int(x["j"])]]
        col, ls, _ = style[int(x["outcome"])]
        err = float(x["line_max_error"])
        ax.plot([a[0], b[0]], [a[1], b[1]], color=col, ls=ls, lw=width(err), alpha=0.8, zorder=1, solid_capstyle="round")
        if label_edges:
            txt = ("n/a" if not np.isfinite(err) else f"{100 * err:.1f}%") + (f"\nvia {','.join(map(str, x['via']))}" if x["via"] else "")
            m = (a + b) / 2
            ax.text(m[0], m[1], txt, fontsize=7, ha="center", va="center", zorder=2, bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.8))
    comp_of = {s: c for c, g in enumerate(conn.components) for s in g}
    cmap = plt.cm.tab10
    for k in keys:
        p = xy[pos_of[k]]
        ax.scatter([p[0]], [p[1]], s=420, color=cmap(comp_of.get(k, 0) % 10), edgecolor="k", zorder=3)
        ax.text(p[0], p[1], str(k), ha="center", va="center", fontsize=10, fontweight="bold", color="white", zorder=4)
    counts = conn.counts()
    handles = [Line2D([], [], color=c, ls=ls, lw=2.5, label=f"{lab} ({counts[key]})") for (c, ls, lab), key in ((style[DIRECT], "direct"), (style[ROUTED], "routed"), (style[FAILED], "failed")) if counts[key] or key == "direct"]
    if counts["not_attempted"]:
        handles.append(Line2D([], [], ls="none", label=f"no edge: pair not attempted ({counts['not_attempted']})"))
    if top > 0:
        for v in (top / 4, top / 2, top):
            handles.append(Line2D([], [], color="0.4", lw=width(v), label=f"straight line's max train error {100 * v:.1f}%"))
    if len(conn.components) > 1:
        for c, g in enumerate(conn.components):
            handles.append(Line2D([], [], ls="none", marker="o", ms=10, mfc=cmap(c % 10), mec="k", label=f"component {c + 1}: {{{','.join(map(str, g))}}}"))
    ax.legend(handles=handles, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    ax.set_aspect("equal", adjustable="datalim")
    ax.margins(0.15)
    ax.set_xlabel("MDS coordinate 1 (Euclidean weight distance)")
    ax.set_ylabel("MDS coordinate 2")
    ax.grid(alpha=0.3)
    ax.set_title(f"solutions placed by classical MDS of their pairwise distances ({100 * kept:.0f}% of the distance variance in 2-D)\nedge labels: the straight line's largest training error", fontsize=9)
    fig.suptitle(f"{model_name(e)} {data_label(e)}\n" + "\n".join(textwrap.wrap(conn.statement(), 95)), fontsize=10)
    fig.tight_layout()
    return _save(fig, stem, formats)


def curve_series(p: PathRecord) -> list[dict]:
    """The curves of ``p`` held against S, in drawing order: ramble's path, the straight line, the Bezier curve.

    Each: ``name`` (plain text), ``label`` (with TeX), ``x`` (position 0..1: the stored normalised distance for
    the path, t for the others), ``train_error`` (fraction), ``test_x`` and
    ``test_error`` (None without a test set), ``outside`` (fraction of points
    with training error > 0), ``worst`` (largest training error), ``n``
    (points).  Empty when ``ramble curves`` has not been run on ``p``.
    """
    if not p.curves:
        return []
    out = []
    te = p.extra.get("test_error")
    series = [("ramble path", "ramble path $\\Omega_{ab}$", np.asarray(p.distance), p.train_error, np.asarray(p.extra.get("test_distance", p.distance)) if te is not None else None, te)]
    for key, name, label in (("linear", "straight line", "straight line $l_{ab}$"), ("bezier", "Bezier curve", "Bezier curve (Garipov et al.)")):
        c = p.curves.get(key)
        if c is not None:
            series.append((name, label, np.asarray(c.t), c.train_error, np.asarray(c.t) if "test_error" in c.extra else None, c.extra.get("test_error")))
    for name, label, x, tr, tx, tt in series:
        tr = np.asarray(tr, dtype=float)
        out.append({"name": name, "label": label, "x": x, "train_error": tr, "test_x": tx, "test_error": None if tt is None else np.asarray(tt, dtype=float),
                    "outside": float(np.mean(tr > 0)), "worst": float(np.max(tr)), "n": int(len(tr))})
    return out


def bezier_settings_text(config: Any) -> str:
    """The Bezier curve's training settings in words ("1000 SGD steps, lr 0.05, momentum 0.9, ..."), from the stored JSON."""
    try:
        c = json.loads(config) if isinstance(config, str) else dict(config or {})
    except (TypeError, ValueError):
        return ""
    parts = [f"{c['steps']} SGD steps" if "steps" in c else "", f"lr {c['lr']:g}" if "lr" in c else "", f"momentum {c['momentum']:g}" if "momentum" in c else "",
             f"weight decay {c['weight_decay']:g}" if c.get("weight_decay") else "", f"{c['t_samples']} t per step" if c.get("t_samples", 1) != 1 else "", f"seed {c['seed']}" if "seed" in c else ""]
    return ", ".join(x for x in parts if x)


def fig_curves(e: Experiment, p: PathRecord, stem: Path, formats: Iterable[str] = FORMATS) -> list[Path]:
    """Ramble's path, the straight line and the trained Bezier curve held against S.

    (a) training error [%] against the position along each curve, (b) where
    each curve is outside S (training error > 0), (c) test error [%] (LeNet5;
    the TCM has no test set, which the panel says).  The legend gives each
    curve's fraction of points outside S and its worst training error.
    Returns [] when the path has no stored curves.
    """
    series = curve_series(p)
    if not series:
        return []
    styles = [dict(color="C0", lw=1.6), dict(color="C3", ls="--", lw=1.4), dict(color="C2", lw=1.4)]
    has_test = any(s["test_error"] is not None for s in series)
    if has_test:
        fig, (ax_tr, ax_out, ax_te) = plt.subplots(3, 1, figsize=(9, 8.2), sharex=True, gridspec_kw={"height_ratios": [3, 1, 3]})
    else:  # no test set (the TCM): no panel for it
        fig, (ax_tr, ax_out) = plt.subplots(2, 1, figsize=(9, 5.6), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
        ax_te = ax_out
    n = len(series)
    for k, (s, st) in enumerate(zip(series, styles)):
        lab = f"{s['label']}: outside S at {100 * s['outside']:.1f}% of {s['n']} points, worst train error {100 * s['worst']:.2f}%"
        ax_tr.plot(s["x"], 100 * s["train_error"], label=lab, **st)
        bad = s["train_error"] > 0
        ax_out.plot(s["x"][bad], np.full(int(bad.sum()), n - 1 - k), ls="none", marker="|", ms=9, color=st["color"])
        if s["test_error"] is not None:
            ax_te.plot(s["test_x"], 100 * s["test_error"], label=s["label"], **st)
    ax_tr.set_ylabel("training error [%]")
    ax_tr.set_title("(a) training error along each curve (0 everywhere = inside S)")
    # headroom above the highest curve, so the legend (the point of the figure) hides none of them
    top = max(float(np.max(100 * s["train_error"])) for s in series)
    ax_tr.set_ylim(-0.05 * max(top, 1e-3), 1.7 * max(top, 1e-3))
    ax_tr.legend(fontsize=8, loc="upper center")
    ax_out.set_yticks(range(n))
    ax_out.set_yticklabels([s["name"] for s in series][::-1], fontsize=8)
    ax_out.set_ylim(-0.6, n - 0.4)
    ax_out.set_title("(b) points outside S (training error > 0)", fontsize=10)
    if has_test:
        ax_te.set_ylabel("test error [%]")
        ax_te.set_title("(c) test error along each curve")
        ax_te.legend(fontsize=8)
    for ax in {ax_tr, ax_out, ax_te}:
        ax.grid(alpha=0.3)
    ax_te.set_xlabel("position along the curve: normalised distance (ramble path), t (straight line, Bezier curve)")
    settings = bezier_settings_text(p.curves["bezier"].attrs.get("config", "")) if "bezier" in p.curves else ""
    fig.suptitle(_title(e, p) + "\nother methods' curves held against S" + (f"; Bezier curve: {settings}" if settings else ""), fontsize=9)
    fig.tight_layout()
    return _save(fig, stem, formats)


def align_series(p: PathRecord, method: str) -> list[dict]:
    """The unaligned and the aligned straight line and ramble path of ``p`` (``ramble align``), in drawing order.

    Each: ``name``, ``x`` (t for the lines, normalised distance for the
    paths), ``train_error`` and ``test_error`` (fractions; test None when
    not stored).  Empty when ``p`` has no alignment by ``method``.
    """
    a = p.align.get(method)
    if a is None:
        return []
    out = []
    if p.linear is not None:
        out.append({"name": "straight line $W_i \\to W_j$", "x": p.linear.alpha, "train_error": p.linear.train_error, "test_error": p.linear.extra.get("test_error")})
    out.append({"name": "aligned straight line $W_i \\to \\pi(W_j)$", "x": a.line.t, "train_error": a.line.train_error, "test_error": a.line.extra.get("test_error")})
    out.append({"name": "ramble path $W_i \\to W_j$", "x": p.distance, "train_error": p.train_error, "test_error": p.extra.get("test_error")})
    if "distance" in a.path:
        out.append({"name": "ramble path $W_i \\to \\pi(W_j)$", "x": a.path["distance"], "train_error": a.path["train_error"], "test_error": a.path.get("test_error")})
    return out


def fig_align(e: Experiment, p: PathRecord, method: str, stem: Path, formats: Iterable[str] = FORMATS) -> list[Path]:
    """Before and after aligning W_j's hidden units to W_i's: training error (a) and test error (b) along both lines and both ramble paths.

    Returns [] when ``p`` has no alignment by ``method``.
    """
    series = align_series(p, method)
    if not series:
        return []
    a = p.align[method]
    styles = [dict(color="C3", ls="--", lw=1.3), dict(color="C1", lw=1.6), dict(color="C0", ls=":", lw=1.4), dict(color="C2", lw=1.4)]
    has_test = any(s["test_error"] is not None for s in series)
    fig, axes = plt.subplots(2 if has_test else 1, 1, figsize=(8.5, 7 if has_test else 4), sharex=True, squeeze=False)
    for s, st in zip(series, styles):
        tr = 100 * np.asarray(s["train_error"], dtype=float)
        axes[0, 0].plot(s["x"], tr, label=f"{s['name']}: outside S at {np.mean(tr > 0) * 100:.1f}% of {len(tr)} points, worst {tr.max():.2f}%", **st)
        if has_test and s["test_error"] is not None:
            axes[1, 0].plot(s["x"], 100 * np.asarray(s["test_error"], dtype=float), label=s["name"], **st)
    axes[0, 0].set_ylabel("training error [%]")
    axes[0, 0].set_title("(a) training error (0 = inside S)", fontsize=10)
    top = max(100 * float(np.max(s["train_error"])) for s in series)
    axes[0, 0].set_ylim(-0.05 * max(top, 1e-3), 1.5 * max(top, 1e-3))  # headroom: the legend hides no curve
    axes[0, 0].legend(fontsize=7.5, loc="upper center")
    if has_test:
        axes[1, 0].set_ylabel("test error [%]")
        axes[1, 0].set_title("(b) test error", fontsize=10)
        axes[1, 0].legend(fontsize=7.5)
    for ax in axes[:, 0]:
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("t (lines), normalised distance (ramble paths)")
    d0, d1 = float(a.attrs.get("distance_before", float("nan"))), float(a.attrs.get("distance_after", float("nan")))
    fig.suptitle(_title(e, p) + f"\nhidden units aligned by {method} matching (Git Re-Basin): $|W_i - W_j|$ {d0:.4g} \u2192 {d1:.4g}", fontsize=9)
    fig.tight_layout()
    return _save(fig, stem, formats)


def fig_sweep_success(cells: Sequence, stem: Path, formats: Iterable[str] = FORMATS, title: str = "") -> list[Path]:
    """Success rate of the paths of a sweep over gamma (x, log) and N_epochs (y), one panel per (variant, path lr).

    ``cells``: :class:`ramble.experiments.sweep.SuccessCell` objects (``Sweep.success()``).
    Each cell is annotated with complete/paths and the failed paths by
    reason ("GD left S" is the paper's "eta, gamma not properly set"); cells
    without paths stay grey.
    """
    cells = list(cells)
    panels = sorted({(c.variant, c.lr) for c in cells})
    if not panels:
        return []
    gammas = sorted({c.gamma for c in cells})
    epochs = sorted({c.n_epochs for c in cells})
    lg = np.log10(gammas)
    mids = (lg[1:] + lg[:-1]) / 2
    half = (lg[1] - lg[0]) / 2 if len(lg) > 1 else 0.5
    edges = 10 ** np.concatenate([[lg[0] - (mids[0] - lg[0] if len(lg) > 1 else half)], mids, [lg[-1] + (lg[-1] - mids[-1] if len(lg) > 1 else half)]])
    short = {"GD step left S": "GD left S", "stalled": "stalled", "iteration limit": "iter. limit", "other": "other"}
    ncols = min(2, len(panels))
    nrows = -(-len(panels) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.6 + 1.25 * len(gammas) * ncols, 0.3 + (1.1 + 0.8 * len(epochs)) * nrows), squeeze=False, sharey=True, layout="constrained")
    cmap = plt.get_cmap("RdYlGn").with_extremes(bad="0.92")
    mesh = None
    flat = axes.ravel()
    for ax in flat[len(panels):]:
        ax.set_visible(False)
    for ax, (variant, lr) in zip(flat, panels):
        rate = np.full((len(epochs), len(gammas)), np.nan)
        n_ok = n_all = 0
        for c in cells:
            if (c.variant, c.lr) != (variant, lr):
                continue
            i, j = epochs.index(c.n_epochs), gammas.index(c.gamma)
            n_ok, n_all = n_ok + c.complete, n_all + c.paths
            if c.paths:
                rate[i, j] = c.complete / c.paths
            lines = [f"{c.complete}/{c.paths}" if c.paths else "no paths"]
            for kind, k in sorted(c.failures.items(), key=lambda kv: -kv[1]):
                lines.append(f"{short.get(kind, kind)} {k}")
            if c.task_errors:
                lines.append(f"{c.task_errors} run error{'s' if c.task_errors != 1 else ''}")
            dark = c.paths and not (0.25 < rate[i, j] < 0.8)
            ax.text(gammas[j], i, "\n".join(lines), ha="center", va="center", fontsize=7.5, color="white" if dark else "black")
        mesh = ax.pcolormesh(edges, np.arange(len(epochs) + 1) - 0.5, np.ma.masked_invalid(rate), cmap=cmap, vmin=0.0, vmax=1.0, edgecolors="white", linewidth=1.0)
        ax.set_xscale("log")
        ax.set_xticks(gammas)
        ax.set_xticklabels([f"{g:g}" for g in gammas], fontsize=8)
        ax.minorticks_off()
        ax.set_xlabel(r"elastic constant $\gamma$")
        ax.set_title(f"{variant} variant, path lr {lr:g}: {n_ok}/{n_all} paths", fontsize=9)
    for row in axes:
        row[0].set_yticks(range(len(epochs)))
        row[0].set_yticklabels([str(e) for e in epochs])
        row[0].set_ylabel(r"$N_\mathrm{epochs}$")
    fig.colorbar(mesh, ax=flat.tolist(), label="success rate (complete / paths)", fraction=0.04, pad=0.02)
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, stem, formats)


# ----------------------------------------------------------------- one file
def plot_file(path: str | Path, out_dir: str | Path, formats: Iterable[str] = FORMATS, x_axis: str = "distance") -> list[Path]:
    """Every figure for every path of one experiment file, into ``out_dir``; ``x_axis`` of the path figures: ``distance`` or ``arclength``."""
    e = load(path)
    out_dir = Path(out_dir)
    make_folder(out_dir, "figure folder")
    formats = tuple(formats)
    written: list[Path] = []
    base = Path(path).stem
    for p in e.iter_paths():
        written += plot_path(e, p, out_dir / (f"{base}_path_{p.name}" + ("_arclength" if x_axis == "arclength" else "")), formats, x_axis=x_axis)
        written += plot_hessian(e, p, out_dir / f"{base}_hessian_{p.name}", formats)
        written += fig_curves(e, p, out_dir / f"{base}_curves_{p.name}", formats)
        for method in sorted(p.align):
            written += fig_align(e, p, method, out_dir / f"{base}_align_{method}_{p.name}", formats)
    if e.model == "tcm" and e.paths:  # paper-specific: the summary figure of the paper's TCM experiment (Sect. 3.1)
        written += fig_tcm_summary([e], out_dir / f"{base}_summary", formats)
    if len(e.solutions) >= 3:
        written += fig_connectivity(e, out_dir / f"{base}_connectivity", formats)
    return written
