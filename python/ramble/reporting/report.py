"""The reproduction report: figures and a claim-by-claim table, from experiment files only.

:func:`write_report` draws every figure into ``out_dir/figures/`` (PNG and
PDF) and writes ``out_dir/REPORT.md`` (figures embedded by relative links)
and ``out_dir/claims.json``.  The table has one row per claim of the paper:
the claim, the paper's value, the value measured in the files, and whether
it holds (``yes`` / ``no`` / ``partly`` / ``not run``).  Every measured value
and verdict is computed here from the files; nothing is hard-coded but the
paper's own numbers and the thresholds below (docs/report.md explains each
row).

:func:`evaluate_claims` returns the rows as :class:`Claim` objects, and the
``*_stats`` functions the numbers behind them, for callers that want them
without the Markdown.  :func:`sweep_lines` states the success rates of a
sweep (``ramble sweep``, docs/sweeps.md) from its files.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Sequence

import numpy as np

from ramble import __version__
from ramble.reporting.plots import (
    data_label,
    fig2_tcm_hessian,
    fig3_mnist_path,
    fig4_mnist_hessian,
    fig_tcm_summary,
    fig_tcm_trace_vs_loss,
    hessian_loss,
    n_nonzero,
    plot_path,
)
from ramble.storage.io import Experiment, PathRecord, load

HOLDS = ("yes", "no", "partly", "not run", "not established")

# ------------------------------------------------------------ thresholds
#: trace "proportional" to the loss: Pearson r at least this on every path ...
R_PROPORTIONAL = 0.9
#: ... and the ratio trace/loss varying by at most this coefficient of variation (std/mean) on every path.
CV_PROPORTIONAL = 0.10
#: a loss curve reverses direction only when it moves back by more than this fraction of its range.
LOSS_NOISE_FRACTION = 0.01
#: a test-error curve reverses direction only when it moves back by more than this many test samples.
ERROR_NOISE_SAMPLES = 1
#: "away from both SGD solutions": normalised distance within [AWAY, 1 - AWAY].
AWAY = 0.1
#: "at about 0.2" (whole MNIST): within this of 0.2.
PAPER_BEST_AT = 0.2
BEST_AT_TOLERANCE = 0.1

#: The paper's settings (Sect. 3), for the "differs from the paper" notes.
PAPER_SETTINGS = {
    "tcm": {"n_inputs": 300, "n_hidden": 3, "n_patterns": 620, "train lr": 0.1, "gamma": 0.001, "N_epochs": 5, "variant": "paper", "solutions": 3},
    "mnist100": {"train_size": 100, "train lr": 0.1, "gamma": 0.001, "N_epochs": 5, "variant": "paper"},
    "mnist": {"train_size": 60000, "train lr": 0.1, "gamma": 0.1, "N_epochs": 5, "variant": "paper"},
}
PAPER_TCM_DATASETS = 10


@dataclass
class Claim:
    """One row of the report's table."""

    id: str
    claim: str
    paper: str
    measured: str
    holds: str
    note: str = ""
    numbers: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.holds not in HOLDS:
            raise ValueError(f"holds must be one of {HOLDS}, got {self.holds!r}")


# ------------------------------------------------------------ small measures
def direction_changes(y: Sequence[float], threshold: float) -> int:
    """How often ``y`` reverses direction by more than ``threshold`` (hysteresis; 0: monotonic, 1: bi-tonic).

    A reversal is counted when the curve moves back from its running extreme
    by more than ``threshold``; smaller wiggles are noise.
    """
    y = np.asarray(y, dtype=float)
    if len(y) < 3:
        return 0
    trend = 0
    hi = lo = ext = y[0]
    changes = 0
    for v in y[1:]:
        if trend == 0:
            hi, lo = max(hi, v), min(lo, v)
            if hi - lo > threshold:
                trend = 1 if v == hi else -1
                ext = v
        elif trend > 0:
            if v > ext:
                ext = v
            elif ext - v > threshold:
                changes += 1
                trend, ext = -1, v
        else:
            if v < ext:
                ext = v
            elif v - ext > threshold:
                changes += 1
                trend, ext = 1, v
    return changes


def pearson(x: Sequence[float], y: Sequence[float]) -> float:
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    if len(x) < 3 or np.std(x) == 0 or np.std(y) == 0:
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1])


def tally(flags: Sequence[bool]) -> str:
    """yes when all, partly when some, no when none, not run when empty."""
    flags = list(flags)
    if not flags:
        return "not run"
    n = sum(bool(f) for f in flags)
    return "yes" if n == len(flags) else ("no" if n == 0 else "partly")


def n_test_samples(e: Experiment) -> int:
    """Test images used by a LeNet5 file (from ``/data`` ``test_indices`` "a:b", else the config)."""
    ti = e.data.get("test_indices")
    if isinstance(ti, str) and ":" in ti:
        a, b = ti.split(":")[:2]
        try:
            return int(b) - int(a or 0)
        except ValueError:
            pass
    return int(e.config.get("test_size") or 10000)


def in_s(p: PathRecord) -> bool:
    """A found path: status complete and zero training error at every recorded point."""
    return p.complete and len(p.train_error) > 0 and float(np.max(p.train_error)) == 0.0


def _f(x: float, nd: int = 3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    return f"{x:.{nd}f}"


def _g(x: float, nd: int = 3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    return f"{x:.{nd}g}"


def _pct(x: float, nd: int = 1) -> str:
    return f"{100 * x:.{nd}f}%"


# ------------------------------------------------------------ TCM
def tcm_stats(exps: Sequence[Experiment]) -> dict[str, Any]:
    """Every number behind the TCM rows, from the loaded files."""
    paths = [(e, p) for e in exps for p in e.iter_paths()]
    s: dict[str, Any] = {"files": len(exps), "pairs": len(paths)}
    s.update(_found_stats(paths))
    s.update(_line_stats(paths))
    s["iterations"] = [int(p.attrs.get("iterations", 0) or 0) for _, p in paths]
    hp = [(e, p) for e, p in paths if p.hessian is not None and "eigenvalues" in p.hessian]
    s["hessian_paths"] = len(hp)
    if not hp:
        return s
    s["K"] = _one_or_all(int(e.model_info.get("K", e.config.get("n_hidden", 0)) or 0) for e, _ in hp)
    s["N"] = _one_or_all(int(e.model_info.get("N", e.config.get("n_inputs", 0)) or 0) for e, _ in hp)
    s.update(_spectra_stats([_PathSpectrum.of(e, p) for e, p in hp], s["K"]))
    return s


def _found_stats(paths: Sequence[tuple[Experiment, PathRecord]]) -> dict[str, Any]:
    """Complete and found paths, those through waypoints, the largest training error on a complete one."""
    return {
        "complete": sum(p.complete for _, p in paths),
        "found": sum(in_s(p) for _, p in paths),
        "via_waypoints": sum(in_s(p) and int(p.attrs.get("waypoints", 0) or 0) > 0 for _, p in paths),
        "max_train_error_on_found": max([float(np.max(p.train_error)) for _, p in paths if p.complete] or [float("nan")]),
    }


def _line_stats(paths: Sequence[tuple[Experiment, PathRecord]]) -> dict[str, Any]:
    """The straight lines: how many, how many leave S, their largest training errors (median, min, max)."""
    lines = [float(np.max(p.linear.train_error)) for _, p in paths if p.linear is not None]
    return {
        "lines": len(lines),
        "lines_leaving": sum(v > 0 for v in lines),
        "line_max_error_median": float(np.median(lines)) if lines else float("nan"),
        "line_max_error_min": float(min(lines)) if lines else float("nan"),
        "line_max_error_max": float(max(lines)) if lines else float("nan"),
    }


def _one_or_all(values: Iterable[int]) -> int | list[int]:
    """The value when all agree, else the sorted distinct values."""
    distinct = sorted(set(values))
    return distinct[0] if len(distinct) == 1 else distinct


@dataclass
class _PathSpectrum:
    """One path's stored Hessian spectra, reduced to what the TCM rows need.

    ``nnz``: non-zero eigenvalues per Hessian point (|lambda| > rtol * max|lambda|);
    ``ends``: [first point's trace < second's, last's < second last's], [] with fewer than 2 points.
    """

    file: str
    path: str
    rtol: float
    nnz: np.ndarray
    negative_nonzero: int
    most_negative_relative: float
    pearson: float
    ratio_cv: float
    ratio_min: float
    ratio_max: float
    ends: list[bool]
    points: int

    @classmethod
    def of(cls, e: Experiment, p: PathRecord) -> "_PathSpectrum":
        h = p.hessian
        ev = np.asarray(h["eigenvalues"], dtype=float)
        rtol = float(h.get("attrs", {}).get("nonzero_rtol", 1e-8))
        scale = np.abs(ev).max(axis=1, keepdims=True)
        nz_mask = np.abs(ev) > rtol * scale
        nnz = n_nonzero(p)
        if nnz is None:
            nnz = nz_mask.sum(axis=1)
        tr = np.asarray(h["trace"], dtype=float)
        lo = hessian_loss(p)
        ratio = tr / lo
        return cls(
            file=str(e.path),
            path=p.name,
            rtol=rtol,
            nnz=nnz,
            negative_nonzero=int(((ev < 0) & nz_mask).sum()),
            most_negative_relative=float((ev.min(axis=1) / ev.max(axis=1)).min()),
            pearson=pearson(tr, lo),
            ratio_cv=float(np.std(ratio) / np.mean(ratio)),
            ratio_min=float(ratio.min()),
            ratio_max=float(ratio.max()),
            ends=[bool(tr[0] < tr[1]), bool(tr[-1] < tr[-2])] if len(tr) >= 2 else [],
            points=len(ev),
        )

    @property
    def constant(self) -> bool:
        """The number of non-zero eigenvalues is the same at every point."""
        return bool(len(set(self.nnz.tolist())) == 1)

    def summary(self) -> dict[str, Any]:
        """The ``per_path`` entry of :func:`tcm_stats`."""
        return {"file": self.file, "path": self.path, "n_nonzero": [int(v) for v in self.nnz], "pearson": self.pearson, "ratio_cv": self.ratio_cv, "endpoint_minima": self.ends, "points": self.points}


def _spectra_stats(spectra: Sequence[_PathSpectrum], K: int | list[int]) -> dict[str, Any]:
    """The Hessian numbers of :func:`tcm_stats` over all paths with spectra; ``K`` is the hidden units (a list if files differ)."""
    nn = np.asarray([int(v) for sp in spectra for v in sp.nnz])
    r_list = [sp.pearson for sp in spectra]
    cv_list = [sp.ratio_cv for sp in spectra]
    return dict(
        hessian_points=sum(sp.points for sp in spectra),
        nonzero_rtol=sorted({sp.rtol for sp in spectra}),
        nnz_min=int(nn.min()),
        nnz_median=float(np.median(nn)),
        nnz_max=int(nn.max()),
        nnz_equal_K=int((nn == K).sum()) if isinstance(K, int) else 0,
        constant_paths=int(sum(sp.constant for sp in spectra)),
        constant_values=[int(sp.nnz[0]) for sp in spectra if sp.constant],
        negative_nonzero=sum(sp.negative_nonzero for sp in spectra),
        most_negative_relative=float(min(sp.most_negative_relative for sp in spectra)),
        pearson_min=float(np.nanmin(r_list)),
        pearson_median=float(np.nanmedian(r_list)),
        pearson_max=float(np.nanmax(r_list)),
        ratio_cv_median=float(np.median(cv_list)),
        ratio_cv_max=float(np.max(cv_list)),
        ratio_min=float(min(sp.ratio_min for sp in spectra)),
        ratio_max=float(max(sp.ratio_max for sp in spectra)),
        endpoint_minima=sum(sum(sp.ends) for sp in spectra),
        endpoints=sum(len(sp.ends) for sp in spectra),
        per_path=[sp.summary() for sp in spectra],
    )


_HESSIAN_CLAIMS = (
    ("C5", "TCM: number of non-zero Hessian eigenvalues equals K", "3 (= K)"),
    ("C6", "TCM: number of non-zero eigenvalues constant along each path", "constant"),
    ("C7", "TCM: all non-zero eigenvalues positive", "all strictly positive"),
    ("C8", "TCM: training loss proportional to the trace of the Hessian", "proportional"),
    ("C9", "TCM: the solutions (endpoints) are local minima of the trace along the path", "yes"),
)
"""The TCM Hessian rows (id, claim, paper) as shown when they did not run."""


def tcm_claims(exps: Sequence[Experiment]) -> list[Claim]:
    """The TCM rows C1 and C5-C9 from the files (C5-C9 "not run" without stored Hessians)."""
    s = tcm_stats(exps) if exps else {"pairs": 0, "hessian_paths": 0}
    out = [_tcm_c1(s)]
    if not s.get("hessian_paths"):
        why = "no Hessian stored" if s["pairs"] else "no TCM file"
        return out + [Claim(cid, text, paper, why, "not run") for cid, text, paper in _HESSIAN_CLAIMS]
    return out + [row(s) for row in (_tcm_c5, _tcm_c6, _tcm_c7, _tcm_c8, _tcm_c9)]


def _tcm_c1(s: Mapping[str, Any]) -> Claim:
    """C1: a path inside S joins every pair."""
    n = s["pairs"]
    paper_pairs = f"{PAPER_TCM_DATASETS * 3}/{PAPER_TCM_DATASETS * 3} (10 data sets \u00d7 3 pairs)"
    if n:
        m = f"{s['found']}/{n} pairs ({s['files']} data set(s))"
        if s["via_waypoints"]:
            m += f"; {s['via_waypoints']} of them through waypoints (not in the paper's Algorithm 1)"
        m += f"; largest training error on a found path {_pct(s['max_train_error_on_found'])}"
        holds = tally([True] * s["found"] + [False] * (n - s["found"]))
    else:
        m, holds = "no TCM file", "not run"
    return Claim("C1", "TCM: a path inside S joins every pair of solutions", paper_pairs, m, holds, numbers={k: s.get(k) for k in ("found", "pairs", "complete", "via_waypoints", "files")})


def _tcm_c5(s: Mapping[str, Any]) -> Claim:
    """C5: K non-zero Hessian eigenvalues along the path."""
    return Claim(
        "C5",
        "TCM: number of non-zero Hessian eigenvalues equals K",
        "3 (= K) along the path",
        f"min {s['nnz_min']} / median {s['nnz_median']:g} / max {s['nnz_max']} over {s['hessian_points']} points of {s['hessian_paths']} paths "
        f"(|\u03bb| > {', '.join(f'{r:g}' for r in s['nonzero_rtol'])} \u00b7 max|\u03bb|); {s['nnz_equal_K']} points have exactly K = {s['K']}",
        "yes" if s["nnz_equal_K"] == s["hessian_points"] else ("partly" if s["nnz_equal_K"] else "no"),
        numbers={k: s[k] for k in ("nnz_min", "nnz_median", "nnz_max", "hessian_points", "nnz_equal_K", "K")},
    )


def _tcm_c6(s: Mapping[str, Any]) -> Claim:
    """C6: that number constant along each path."""
    hp = s["hessian_paths"]
    return Claim(
        "C6",
        "TCM: number of non-zero eigenvalues constant along each path",
        "constant",
        f"constant on {s['constant_paths']}/{hp} paths"
        + (f" (count there: {', '.join(str(v) for v in s['constant_values'])}; full rank is N = {s.get('N')})" if s["constant_paths"] else ""),
        tally([True] * s["constant_paths"] + [False] * (hp - s["constant_paths"])),
        numbers={"constant_paths": s["constant_paths"], "hessian_paths": hp},
    )


def _tcm_c7(s: Mapping[str, Any]) -> Claim:
    """C7: every non-zero eigenvalue positive."""
    return Claim(
        "C7",
        "TCM: all non-zero Hessian eigenvalues positive",
        "all strictly positive",
        f"{s['negative_nonzero']} negative non-zero eigenvalues; most negative eigenvalue / largest = {_g(s['most_negative_relative'], 2)}",
        "yes" if s["negative_nonzero"] == 0 else "no",
        note="expected for this model: the TCM Hessian is a sum of positive semidefinite terms off htanh's kinks (docs/hessian.md)",
        numbers={"negative_nonzero": s["negative_nonzero"], "most_negative_relative": s["most_negative_relative"]},
    )


def _tcm_c8(s: Mapping[str, Any]) -> Claim:
    """C8: training loss proportional to the Hessian's trace (thresholds R_PROPORTIONAL, CV_PROPORTIONAL)."""
    prop = s["pearson_min"] >= R_PROPORTIONAL and s["ratio_cv_max"] <= CV_PROPORTIONAL
    return Claim(
        "C8",
        "TCM: training loss proportional to the trace of the Hessian along the path",
        "proportional",
        f"Pearson r(trace, loss) per path: min {_f(s['pearson_min'])} / median {_f(s['pearson_median'])} / max {_f(s['pearson_max'])}; "
        f"trace/loss {_g(s['ratio_min'])}\u2013{_g(s['ratio_max'])}, its coefficient of variation per path median {_pct(s['ratio_cv_median'])} / max {_pct(s['ratio_cv_max'])}",
        "yes" if prop else ("partly" if s["pearson_median"] >= R_PROPORTIONAL else "no"),
        note=f"yes: r \u2265 {R_PROPORTIONAL} and CV \u2264 {CV_PROPORTIONAL:.0%} on every path; partly: median r \u2265 {R_PROPORTIONAL}",
        numbers={k: s[k] for k in ("pearson_min", "pearson_median", "pearson_max", "ratio_cv_median", "ratio_cv_max", "ratio_min", "ratio_max")},
    )


def _tcm_c9(s: Mapping[str, Any]) -> Claim:
    """C9: the endpoints are local minima of the trace (one-sided)."""
    return Claim(
        "C9",
        "TCM: the solutions (endpoints) are local minima of the trace along the path",
        "yes",
        f"{s['endpoint_minima']}/{s['endpoints']} path endpoints have a smaller trace than the next Hessian point inward",
        tally([True] * s["endpoint_minima"] + [False] * (s["endpoints"] - s["endpoint_minima"])),
        note="one-sided, at the resolution of the stored Hessian points",
        numbers={"endpoint_minima": s["endpoint_minima"], "endpoints": s["endpoints"]},
    )


# ------------------------------------------------------------ LeNet5 / MNIST
def mnist_stats(e: Experiment) -> dict[str, Any]:
    """Every number behind the MNIST rows for one LeNet5 file."""
    n_test = n_test_samples(e)
    s: dict[str, Any] = {"file": str(e.path), "test_samples": n_test, "paths": []}
    from ramble.analysis.controls import read_controls

    for p in e.iter_paths():
        q: dict[str, Any] = {"path": p.name, "status": p.status, "found": in_s(p), "waypoints": int(p.attrs.get("waypoints", 0) or 0), "seed": e.config.get("seed")}
        q["length_ratio"] = p.length_ratio
        controls = read_controls(p)
        if controls is not None:
            q["controls"] = controls
        q["line_max_train_error"] = float(np.max(p.linear.train_error)) if p.linear is not None else float("nan")
        tl = np.asarray(p.train_loss, dtype=float)
        q["train_loss_changes"] = direction_changes(tl, LOSS_NOISE_FRACTION * float(np.ptp(tl))) if len(tl) else 0
        if "test_loss" in p.extra:
            sl = np.asarray(p.extra["test_loss"], dtype=float)
            se = np.asarray(p.extra["test_error"], dtype=float)
            x = np.asarray(p.extra.get("test_distance", p.distance), dtype=float)
            q["test_loss_changes"] = direction_changes(sl, LOSS_NOISE_FRACTION * float(np.ptp(sl)))
            q["test_error_changes"] = direction_changes(se, (ERROR_NOISE_SAMPLES + 0.5) / n_test)
            q["r_test_loss_error"] = pearson(sl, se)
            k = int(np.argmin(se))
            at_min = np.flatnonzero(se <= se[k] + 0.5 / n_test)
            q.update(
                best_test_error=float(se[k]),
                best_at=float(x[k]),
                best_at_range=[float(x[at_min].min()), float(x[at_min].max())],
                endpoint_test_errors=[float(se[0]), float(se[-1])],
                best_train_loss=float(tl[k]) if k < len(tl) else float("nan"),
                endpoint_train_losses=[float(tl[0]), float(tl[-1])],
            )
            q["better_than_endpoints_by_samples"] = int(round((min(se[0], se[-1]) - se[k]) * n_test))
        if p.hessian is not None and "eigenvalues" in p.hessian:
            ev = np.asarray(p.hessian["eigenvalues"], dtype=float)
            q["hessian_points"] = int(len(ev))
            q["hessian_k"] = int(ev.shape[1])
            q["smallest_top_eigenvalue"] = float(ev.min())
            q["largest_eigenvalue"] = float(ev.max())
            conv = p.hessian.get("converged")
            q["converged"] = int(np.asarray(conv, dtype=bool).sum()) if conv is not None else int(ev.size)
            q["eigenpairs"] = int(ev.size)
            q["hessian_subset"] = p.hessian.get("attrs", {}).get("subset_size")
        s["paths"].append(q)
    return s


def _mnist_found(cid: str, name: str, paper: str, e: Optional[Experiment], s: Optional[dict]) -> Claim:
    if e is None:
        return Claim(cid, f"{name}: a path inside S joins the two SGD solutions", paper, "no file", "not run")
    ps = s["paths"]
    if not ps:
        return Claim(cid, f"{name}: a path inside S joins the two SGD solutions", paper, f"no path stored (file status {e.status})", "not run")
    n_found = sum(q["found"] for q in ps)
    m = f"{n_found}/{len(ps)} pair(s)"
    wp = sum(q["found"] and q["waypoints"] > 0 for q in ps)
    if wp:
        m += f", {wp} through waypoints"
    bad = [f"{q['path']}: {q['status']}" for q in ps if not q["found"]]
    if bad:
        m += " (" + "; ".join(bad) + ")"
    return Claim(cid, f"{name}: a path inside S joins the two SGD solutions", paper, m, tally([q["found"] for q in ps]), numbers={"found": n_found, "pairs": len(ps)})


def _loss_shape(cid: str, name: str, s: Optional[dict]) -> Claim:
    text = f"{name}: training and test loss along the path are neither monotonic nor bi-tonic"
    paper = "more complex than monotonic or bi-tonic"
    if s is None:
        return Claim(cid, text, paper, "no file", "not run")
    ps = [q for q in s["paths"] if "test_loss_changes" in q]
    if not ps:
        return Claim(cid, text, paper, "no test metrics stored", "not run")
    m = "; ".join(f"{q['path']}: train {q['train_loss_changes']}, test {q['test_loss_changes']} direction changes" for q in ps)
    flags = [q["train_loss_changes"] >= 2 and q["test_loss_changes"] >= 2 for q in ps]
    holds = tally(flags)
    if holds == "no" and any(q["train_loss_changes"] >= 2 or q["test_loss_changes"] >= 2 for q in ps):
        holds = "partly"
    return Claim(cid, text, paper, m, holds, note=f"a reversal counts when the curve moves back by more than {LOSS_NOISE_FRACTION:.0%} of its range; 0 = monotonic, 1 = bi-tonic", numbers={"paths": ps})


def _error_shape(cid: str, name: str, s: Optional[dict]) -> Claim:
    text = f"{name}: test error along the path is not monotonic (similar to the test loss, not locally the same)"
    paper = "not monotonic; similar to the test loss"
    if s is None:
        return Claim(cid, text, paper, "no file", "not run")
    ps = [q for q in s["paths"] if "test_error_changes" in q]
    if not ps:
        return Claim(cid, text, paper, "no test metrics stored", "not run")
    m = "; ".join(f"{q['path']}: {q['test_error_changes']} direction changes, r(test loss, test error) = {_f(q['r_test_loss_error'])}" for q in ps)
    holds = tally([q["test_error_changes"] >= 2 for q in ps])
    if holds == "no" and any(q["test_error_changes"] == 1 for q in ps):
        holds = "partly"
    return Claim(cid, text, paper, m, holds, note=f"a reversal counts when the error moves back by more than {ERROR_NOISE_SAMPLES} test sample(s) of {s['test_samples']}; yes: \u2265 2 reversals (neither monotonic nor bi-tonic)", numbers={"paths": ps})


def _best_desc(q: dict) -> str:
    lo, hi = q["best_at_range"]
    where = f"{q['best_at']:.2f}" + (f" (minimum reached on {lo:.2f}\u2013{hi:.2f})" if hi - lo > 0.005 else "")
    ea, eb = q["endpoint_test_errors"]
    return (
        f"{q['path']}: best test error {_pct(q['best_test_error'], 2)} at {where}, endpoints {_pct(ea, 2)} / {_pct(eb, 2)} "
        f"({q['better_than_endpoints_by_samples']} test samples below the better endpoint); training loss there {_g(q['best_train_loss'])}, "
        f"at the endpoints {_g(q['endpoint_train_losses'][0])} / {_g(q['endpoint_train_losses'][1])}"
    )


def _better(q: dict) -> bool:
    return q["better_than_endpoints_by_samples"] > ERROR_NOISE_SAMPLES


def _best_at_02(cid: str, name: str, s: Optional[dict]) -> Claim:
    """Whole MNIST (Sect. 3.2): the best test error at about 0.2, far from both solutions, with a higher training loss."""
    text = f"{name}: the best test error on the path lies at about 0.2, away from both SGD solutions, where the training loss is higher"
    paper = "at about 0.2 of the normalised distance, far from both solutions, higher training loss"
    if s is None:
        return Claim(cid, text, paper, "no file", "not run")
    ps = [q for q in s["paths"] if "best_at" in q and q["found"]]
    if not ps:
        return Claim(cid, text, paper, "no complete path with test metrics", "not run")
    flags, partial = [], []
    for q in ps:
        away = AWAY <= q["best_at"] <= 1 - AWAY
        near = abs(q["best_at"] - PAPER_BEST_AT) <= BEST_AT_TOLERANCE
        higher = q["best_train_loss"] > max(q["endpoint_train_losses"])
        flags.append(_better(q) and away and near and higher)
        partial.append(_better(q) and (away or higher))
    holds = tally(flags)
    if holds == "no" and any(partial):
        holds = "partly"
    note = (
        f"yes: more than {ERROR_NOISE_SAMPLES} test sample(s) below both endpoints, at a normalised distance within \u00b1{BEST_AT_TOLERANCE} of {PAPER_BEST_AT} "
        f"and in [{AWAY}, {1 - AWAY}], with a training loss above both endpoints'; partly: better than both endpoints and either away from them or at a higher training loss"
    )
    return Claim(cid, text, paper, "; ".join(_best_desc(q) for q in ps), holds, note=note, numbers={"paths": ps})


#: Pairs with controls C15 needs before it says yes or no.
MIN_CONTROL_PAIRS = 3


def _control_desc(name: str, q: dict) -> str:
    from ramble.analysis.controls import margin_points

    c = q["controls"]
    ctrl = ", ".join(
        f"{end} {_pct(c[f'{end}_matched_test_error'], 2)} / {_pct(c[f'{end}_converged_test_error'], 2)}" + ("" if c[f"{end}_converged_reached"] else " (loss not reached)")
        for end in ("source", "target")
    )
    return f"{name} seed {q.get('seed')} {q['path']}: path best {_pct(q['best_test_error'], 2)} after {c['best_epochs']} GD epochs; controls (matched epochs / converged) {ctrl}; margin {margin_points(c):+.2f} points"


def _better_than_sgd(cid: str, sets: Sequence[tuple[str, Optional[dict]]]) -> Claim:
    """Sect. 4: SGD alone does not guarantee the best generalisation: some point of the path beats both solutions.

    The path's best point comes after many more GD epochs than SGD's
    solutions got, so "better than the endpoints" alone may be more training.
    The verdict rests on the controls (:mod:`ramble.analysis.controls`): each endpoint
    trained on for as many epochs as the path spent before its best point,
    and until the training loss the path reaches there.  Yes/no/partly only
    with controls on at least MIN_CONTROL_PAIRS pairs; otherwise "not
    established".
    """
    from ramble.analysis.controls import beats_controls, margin_points

    text = "LeNet5: some point of the path has a lower test error than both SGD solutions, also when the solutions are trained on as long as the path (\"SGD alone is not sufficient to guarantee the best generalization\")"
    paper = "yes (whole MNIST, Fig. 5; Sect. 4)"
    plain, flags_plain, controlled, flags, margins = [], [], [], [], []
    for name, s in sets:
        if s is None:
            continue
        for q in (q for q in s["paths"] if "best_at" in q and q["found"]):
            plain.append(f"{name} {_best_desc(q)}")
            flags_plain.append(_better(q))
            if "controls" in q:
                controlled.append(_control_desc(name, q))
                flags.append(beats_controls(q["controls"], s["test_samples"], ERROR_NOISE_SAMPLES))
                margins.append(margin_points(q["controls"]))
    if not flags_plain:
        return Claim(cid, text, paper, "no LeNet5 file with test metrics", "not run")
    uncontrolled = f"below both endpoints (no control) in {sum(flags_plain)}/{len(flags_plain)} pair(s)"
    note = (f"control: each endpoint trained on (its own GD/SGD at the training lr) for as many epochs as the path spent before its best point, and until the training loss the path has there; "
            f"better: more than {ERROR_NOISE_SAMPLES} test sample(s) below all four controls; needs controls on \u2265 {MIN_CONTROL_PAIRS} pairs (`ramble controls FILE`)")
    if len(flags) < MIN_CONTROL_PAIRS:
        measured = (f"controls on {len(flags)} of the {MIN_CONTROL_PAIRS} pairs needed" + (": " + "; ".join(controlled) if controlled else "")
                    + f"; {uncontrolled}: " + "; ".join(plain))
        return Claim(cid, text, paper, measured, "not established", note=note, numbers={"controlled_pairs": len(flags), "better_than_controls": sum(flags), "better_than_endpoints": sum(flags_plain), "pairs": len(flags_plain)})
    spread = f"margin over the best control {np.mean(margins):+.2f} points on average ({min(margins):+.2f} to {max(margins):+.2f})"
    measured = f"path beats all controls in {sum(flags)}/{len(flags)} pair(s); {spread}: " + "; ".join(controlled) + f"; {uncontrolled}"
    return Claim(cid, text, paper, measured, tally(flags), note=note, numbers={"controlled_pairs": len(flags), "better_than_controls": sum(flags), "margins_points": margins, "better_than_endpoints": sum(flags_plain), "pairs": len(flags_plain)})


def _lenet_hessian(cid: str, name: str, s: Optional[dict]) -> Claim:
    text = f"{name}: the top-20 Hessian eigenvalues are positive along the whole path"
    paper = "all positive"
    if s is None:
        return Claim(cid, text, paper, "no file", "not run")
    ps = [q for q in s["paths"] if "smallest_top_eigenvalue" in q]
    if not ps:
        return Claim(cid, text, paper, "no Hessian stored", "not run")
    m = "; ".join(
        f"{q['path']}: smallest of the top-{q['hessian_k']} {_g(q['smallest_top_eigenvalue'])} (largest {_g(q['largest_eigenvalue'])}) at {q['hessian_points']} points, {q['converged']}/{q['eigenpairs']} eigenpairs converged"
        + (f", Hessian over {q['hessian_subset']} training images" if q.get("hessian_subset") else "")
        for q in ps
    )
    return Claim(cid, text, paper, m, tally([q["smallest_top_eigenvalue"] > 0 for q in ps]), numbers={"paths": ps})


def _lines(tcm: Optional[dict], mnist: Sequence[tuple[str, Optional[dict]]]) -> Claim:
    parts, leave, total = [], 0, 0
    if tcm and tcm.get("lines"):
        parts.append(f"TCM {tcm['lines_leaving']}/{tcm['lines']} (largest training error on the line: min {_pct(tcm['line_max_error_min'])} / median {_pct(tcm['line_max_error_median'])} / max {_pct(tcm['line_max_error_max'])})")
        leave += tcm["lines_leaving"]
        total += tcm["lines"]
    for name, s in mnist:
        if s is None:
            continue
        v = [q["line_max_train_error"] for q in s["paths"] if math.isfinite(q["line_max_train_error"])]
        if v:
            k = sum(x > 0 for x in v)
            parts.append(f"{name} {k}/{len(v)} (largest training error on the line {', '.join(_pct(x) for x in v)})")
            leave += k
            total += len(v)
    holds = tally([True] * leave + [False] * (total - leave))
    return Claim("C4", "The straight line W_a \u2192 W_b leaves S (training error > 0 somewhere on it)", "typically yes (error on l_ab > 0)", "; ".join(parts) or "no straight line stored", holds, numbers={"leaving": leave, "lines": total})


def evaluate_claims(tcm: Sequence[Experiment], mnist100: Optional[Experiment] = None, full_mnist: Optional[Experiment] = None, control_files: Sequence[Experiment] = ()) -> list[Claim]:
    """The table's rows, in order, computed from loaded files; ``control_files``: more LeNet5 MNIST-100 runs (other seeds) whose controls C15 counts."""
    ts = tcm_stats(tcm) if tcm else None
    s100 = mnist_stats(mnist100) if mnist100 is not None else None
    sfull = mnist_stats(full_mnist) if full_mnist is not None else None
    tc = tcm_claims(tcm)
    rows = [tc[0]]
    rows.append(_mnist_found("C2", "LeNet5 MNIST-100", "found (always)", mnist100, s100))
    rows.append(_mnist_found("C3", "LeNet5 whole MNIST", "found", full_mnist, sfull))
    rows.append(_lines(ts, [("MNIST-100", s100), ("whole MNIST", sfull)]))
    rows += tc[1:]
    rows.append(_lenet_hessian("C10", "LeNet5 MNIST-100", s100))
    rows.append(_loss_shape("C11", "LeNet5 MNIST-100", s100))
    rows.append(_error_shape("C12", "LeNet5 MNIST-100", s100))
    rows.append(_error_shape("C13", "LeNet5 whole MNIST", sfull))
    rows.append(_best_at_02("C14", "LeNet5 whole MNIST", sfull))
    more = [(f"MNIST-100 ({c.path.name})", mnist_stats(c)) for c in control_files]
    rows.append(_better_than_sgd("C15", [("MNIST-100", s100), ("whole MNIST", sfull), *more]))
    return rows


# ------------------------------------------------------------ settings
def _settings(e: Experiment) -> dict[str, Any]:
    c = e.config
    path = c.get("path", {}) or {}
    d: dict[str, Any] = {"model": e.model, "backend": e.backend, "seed": c.get("seed")}
    if e.model == "tcm":  # paper-specific: the paper's TCM settings (Sect. 3.1) against everything run on data sets
        d.update(n_inputs=c.get("n_inputs"), n_hidden=c.get("n_hidden"), n_patterns=c.get("n_patterns"))
        d["train lr"] = (c.get("train") or {}).get("lr")
    else:
        d.update(train_size=c.get("train_size"), test_size=n_test_samples(e), device=c.get("resolved_device", c.get("device")))
        d["train lr"] = c.get("train_lr")
    d.update(solutions=c.get("n_solutions"), pairs=c.get("pairs"), variant=path.get("variant"), gamma=path.get("gamma"), N_epochs=path.get("n_epochs"))
    d["path lr"] = path.get("lr")
    return d


def _paper_key(e: Experiment) -> str:
    if e.model == "tcm":  # paper-specific: which of the paper's experiments the file is compared with
        return "tcm"
    return "mnist" if int(e.config.get("train_size") or 0) >= 60000 else "mnist100"


def deviations(e: Experiment) -> list[str]:
    """Settings of the file that differ from the paper's (Sect. 3)."""
    d = _settings(e)
    out = []
    for k, v in PAPER_SETTINGS[_paper_key(e)].items():
        if k in d and d[k] is not None and d[k] != v:
            if k == "variant":
                out.append(f"path algorithm variant '{d[k]}' (paper: Algorithm 1 as printed, ramble's 'paper' variant)")
            else:
                out.append(f"{k} = {d[k]} (paper: {v})")
    return out


# ------------------------------------------------------------ markdown
def certification_cell(p: PathRecord) -> str:
    """Whether a path is certified inside S as a continuous polyline, or only at its stored points.

    Files written since segment certification record ``segments_certified``:
    on a complete path each of its moves was certified before it was accepted
    (docs/certification.md).  Older files checked stored points only.
    """
    if "segments_certified" not in p.attrs:
        return "stored points only (file written before segment certification)"
    if not p.complete:
        return "n/a (incomplete)"
    bound = float(p.attrs.get("cert_min_margin", float("nan")))
    return f"every segment ({int(p.attrs['segments_certified'])} moves certified, smallest margin bound {_g(bound)})"


def _md_cell(s: Any) -> str:
    return str(s).replace("|", "\\|").replace("\n", " ")


def _rel(p: Path, base: Path) -> str:
    return str(Path(p).relative_to(base)).replace("\\", "/")


def _fmt_meta(meta: Mapping[str, Any], indent: int = 0) -> list[str]:
    lines = []
    for k, v in meta.items():
        pad = "  " * indent
        if isinstance(v, Mapping) and not v:
            lines.append(f"{pad}- **{k}**: none")
        elif isinstance(v, Mapping):
            lines.append(f"{pad}- **{k}**:")
            lines += _fmt_meta(v, indent + 1)
        elif isinstance(v, float):
            lines.append(f"{pad}- **{k}**: {v:.4g}")
        else:
            lines.append(f"{pad}- **{k}**: {v}")
    return lines


def solution_space_lines(exps: Sequence[Experiment], fig_dir: Optional[Path] = None, out_dir: Optional[Path] = None, formats: Sequence[str] = ("png",)) -> list[str]:
    """Markdown: per file, whether its solutions form one connected set inside S, and the stored convexity probe (docs/connectivity.md).

    The statement is computed from the paths; the convexity numbers are read
    from ``/convexity`` (``ramble convexity FILE``).  With ``fig_dir``, files
    with >= 3 solutions get their connectivity figure embedded.
    """
    from ramble.analysis.connectivity import analyse
    from ramble.analysis.convexity import format_line, read_convexity
    from ramble.errors import RambleError
    from ramble.reporting.plots import fig_connectivity

    if not exps:
        return []
    L = ["## Connectivity and convexity of the solutions", ""]
    for e in exps:
        L.append(f"- `{e.path.name}` ({data_label(e)}): {analyse(e).statement()}")
        try:
            conv = read_convexity(e.path)
        except RambleError:
            conv = {}
        if not conv:
            L.append("  - convexity probe: not run (`ramble convexity FILE`)")
        seeds = sorted({str(a.get("seed")) for a in conv.values()})
        if conv:
            L.append(f"  - convexity probe (seed {', '.join(seeds)}):")
        for kind, a in conv.items():
            L.append(f"    - {format_line(kind, a)}")
        if fig_dir is not None and out_dir is not None and len(e.solutions) >= 3:
            w = next((q for q in fig_connectivity(e, fig_dir / f"connectivity_{e.path.stem}", formats) if q.suffix == ".png"), None)
            if w:
                L += ["", f"  ![Connectivity: {data_label(e)}]({_rel(w, out_dir)})"]
    L.append("")
    return L


def curves_lines(exps: Sequence[Experiment], fig_dir: Optional[Path] = None, out_dir: Optional[Path] = None, formats: Sequence[str] = ("png",)) -> list[str]:
    """Markdown: per path with stored curves (``ramble curves FILE``), the fraction of ramble's path, the straight line and the Bezier curve outside S, and their worst training error.

    Everything is computed from the stored per-point training errors
    (:func:`ramble.reporting.plots.curve_series`); with ``fig_dir`` each path's
    :func:`ramble.reporting.plots.fig_curves` is drawn and embedded.
    """
    from ramble.reporting.plots import curve_series, fig_curves

    if not exps:
        return []
    L = ["## Other methods' paths held against S", ""]
    rows = []
    for e in exps:
        for p in e.iter_paths():
            for s in curve_series(p):
                te = s["test_error"]
                test = f"{_pct(float(np.min(te)))}\u2013{_pct(float(np.max(te)))}" if te is not None else "no test set"
                rows.append(f"| `{e.path.name}` | {p.name} | {s['name']} | {s['n']} | **{_pct(s['outside'])}** | {_pct(s['worst'], 2)} | {test} |")
    if not rows:
        return L + ["Not run (`ramble curves FILE` trains the Bezier curve of Garipov et al. between each pair and evaluates it and the straight line; docs/curves.md).", ""]
    L.append("Fraction of each curve's points outside S (training error > 0), its worst training error and its test error range, from the files (docs/curves.md). The TCM has random labels, so no test set.")
    L.append("")
    L.append("| file | path | curve | points | outside S | worst train error | test error |")
    L.append("|---|---|---|---|---|---|---|")
    L += rows
    L.append("")
    for e in exps:
        for p in e.iter_paths():
            b = p.curves.get("bezier")
            if b is not None:
                L.append(f"- `{e.path.name}` {p.name}: Bezier settings {b.attrs.get('config', '')}; expected training loss {_g(float(p.curves['linear'].attrs.get('expected_loss', float('nan')))) if 'linear' in p.curves else 'n/a'} on the straight line, {_g(float(b.attrs.get('expected_loss', float('nan'))))} on the trained curve; {_f(float(b.attrs.get('train_seconds', float('nan'))), 1)} s of training")
            if fig_dir is not None and out_dir is not None and p.curves:
                w = next((q for q in fig_curves(e, p, fig_dir / f"curves_{e.path.stem}_{p.name}", formats) if q.suffix == ".png"), None)
                if w:
                    L += ["", f"  ![Curves against S: {data_label(e)}, path {p.name}]({_rel(w, out_dir)})", ""]
    L.append("")
    return L


def _pct_or_na(x: Any) -> str:
    return "n/a" if x is None or not math.isfinite(float(x)) else _pct(float(x))


def _inside_cell(line: Mapping[str, Any]) -> str:
    """The stored answer of an aligned line (``inside_S``: yes / no / sampled) as a table cell."""
    v = str(line.get("inside_S", "sampled"))
    if v == "yes":
        return "**yes**, certified for every t"
    if v == "no":
        return f"**no**, leaves S at t = {float(line['leaves_at_t']):.4f}" if "leaves_at_t" in line else "**no**"
    return "at every sampled point, not certified"


def _model_and_data(e: Experiment) -> str:
    """E.g. "LeNet5 MNIST-100", "build_mlp on 200 training samples": which network on which data."""
    from ramble.reporting.plots import model_name

    return f"{model_name(e)} {data_label(e)}"


def align_table(found: Sequence[tuple[Experiment, PathRecord, str]]) -> list[str]:
    """Markdown table: every aligned pair side by side (distances, the unaligned and aligned lines against S, the answer, both ramble paths)."""
    L = [
        "| file | model | pair | matching | \\|W_i − W_j\\| → \\|W_i − π(W_j)\\| | straight line: outside S, worst training error | aligned line: outside S, worst | aligned line inside S? | ramble path iterations: to W_j / to π(W_j) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for e, p, m in found:
        a = p.align[m]
        line = a.line.attrs
        q = a.path_attrs
        paths = f"{q['unaligned_iterations']} / {q['iterations']} ({q['status']})" if q else f"{p.attrs.get('iterations', 'n/a')} / not drawn"
        L.append(
            f"| `{e.path.name}` | {_md_cell(_model_and_data(e))} | {p.name} | {m} | {float(a.attrs['distance_before']):.4g} → {float(a.attrs['distance_after']):.4g} | "
            f"{_pct_or_na(a.attrs.get('unaligned_line_outside_fraction'))}, {_pct_or_na(a.attrs.get('unaligned_line_max_train_error'))} | "
            f"{_pct_or_na(line.get('outside_fraction'))}, {_pct_or_na(line.get('max_train_error'))} | {_inside_cell(line)} | {paths} |"
        )
    return L


def align_lines(exps: Sequence[Experiment], fig_dir: Optional[Path] = None, out_dir: Optional[Path] = None, formats: Sequence[str] = ("png",), not_run: Sequence[str] = ()) -> list[str]:
    """Markdown: the aligned pairs (``ramble align FILE``) side by side, then per pair one sentence answering "is the aligned straight line inside S?" with its numbers, and the details.

    Read from ``/paths/<i>-<j>/align/<method>`` (docs/align.md); with
    ``fig_dir`` each alignment's :func:`ramble.reporting.plots.fig_align` is drawn and embedded.
    ``not_run``: experiments whose alignment was not run, each "what: why", listed as such.
    """
    from ramble.analysis.align.run import answer, detail_lines
    from ramble.reporting.plots import fig_align

    if not exps and not not_run:
        return []
    L = ["## Aligned solutions (Git Re-Basin) held against S", ""]
    found = [(e, p, m) for e in exps for p in e.iter_paths() for m in sorted(p.align)]
    skipped = [f"- Not run: {why}." for why in not_run]
    if not found:
        return L + ["Not run (`ramble align FILE` permutes W_j's hidden units to match W_i's and holds the straight line and ramble's path between them against S; docs/align.md).", *skipped, ""]
    L.append("Entezari et al. (2022) conjecture that solutions are linearly connected once the permutation symmetry of hidden units is removed; Git Re-Basin measures the loss barrier. Here: is the aligned straight line inside S, the zero-error set?")
    L.append("")
    L += align_table(found)
    L.append("")
    for e, p, m in found:
        L.append(f"- `{e.path.name}`: {answer(p, m)}.")
        L += [f"  - {line}" for line in detail_lines(p, m)]
        if fig_dir is not None and out_dir is not None:
            w = next((q for q in fig_align(e, p, m, fig_dir / f"align_{m}_{e.path.stem}_{p.name}", formats) if q.suffix == ".png"), None)
            if w:
                L += ["", f"  ![Aligned pair: {_model_and_data(e)}, path {p.name}, {m} matching]({_rel(w, out_dir)})", ""]
    L += skipped
    L.append("")
    return L


def write_report(
    out_dir: str | Path,
    tcm_files: Iterable[str | Path],
    mnist100_file: Optional[str | Path] = None,
    full_mnist_file: Optional[str | Path] = None,
    meta: Optional[Mapping[str, Any]] = None,
    formats: Sequence[str] = ("png", "pdf"),
    beyond_files: Iterable[str | Path] = (),
    control_files: Iterable[str | Path] = (),
    align_files: Iterable[str | Path] = (),
    align_not_run: Sequence[str] = (),
) -> Path:
    """Draw every figure into ``out_dir/figures/``, write ``out_dir/REPORT.md`` and ``claims.json``; return REPORT.md's path.

    ``beyond_files``: experiments beyond the paper's (e.g. many solutions on
    one data set); they appear in the connectivity, convexity and curve
    sections only, never in the paper's claim rows.  ``control_files``:
    more MNIST-100 runs (other seeds) with controls, counted by C15 only.
    ``align_files``: files (e.g. the examples' MLP) that only the alignment
    section reports, after the others; ``align_not_run``: alignments that
    did not run, each "what: why", which that section lists.
    """
    out_dir = Path(out_dir)
    fig_dir = out_dir / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    tcm = [load(f, weights=False) for f in tcm_files]
    m100 = load(mnist100_file, weights=False) if mnist100_file else None
    full = load(full_mnist_file, weights=False) if full_mnist_file else None
    controls = [load(f, weights=False) for f in control_files]
    claims = evaluate_claims(tcm, m100, full, controls)
    r = _ReportInput(out_dir, fig_dir, _with_png(formats), tcm, m100, full, claims, meta, beyond_files, align_files, align_not_run)
    r.figs = _draw_figures(r)
    lines = [line for section in _SECTIONS for line in section(r)]
    report = out_dir / "REPORT.md"
    report.write_text("\n".join(lines))
    (out_dir / "claims.json").write_text(json.dumps(_clean([asdict(c) for c in claims]), indent=1, default=_json_default))
    return report


@dataclass
class _ReportInput:
    """What the report's sections read: the loaded files, the claims, where figures go and those drawn.

    ``figs``: figure group ("summary", "fig2", "tcm_path", "fig3", "fig4",
    "fig5") -> (caption, PNG) per figure, filled by :func:`_draw_figures`.
    """

    out_dir: Path
    fig_dir: Path
    formats: tuple[str, ...]
    tcm: list[Experiment]
    m100: Optional[Experiment]
    full: Optional[Experiment]
    claims: list[Claim]
    meta: Optional[Mapping[str, Any]]
    beyond_files: Iterable[str | Path]
    align_files: Iterable[str | Path]
    align_not_run: Sequence[str]
    figs: dict[str, list[tuple[str, Path]]] = field(default_factory=dict)

    @cached_property
    def exps(self) -> list[Experiment]:
        """The paper's experiments: the TCM files, MNIST-100, whole MNIST."""
        return [*self.tcm, *([self.m100] if self.m100 else []), *([self.full] if self.full else [])]

    @cached_property
    def beyond(self) -> list[Experiment]:
        """The experiments beyond the paper's, loaded when the first section needing them runs (after the figures)."""
        return [load(f, weights=False) for f in self.beyond_files]


def _with_png(formats: Sequence[str]) -> tuple[str, ...]:
    """The figure formats, PNG put first when missing: the report embeds PNGs."""
    formats = tuple(formats)
    return formats if "png" in formats else ("png",) + formats


# -------- figures
def _png(paths: list[Path]) -> Optional[Path]:
    """The PNG among one figure's files (None if it drew none)."""
    return next((q for q in paths if q.suffix == ".png"), None)


def _keep(items: list[tuple[str, Path]], paths: list[Path], caption: str) -> None:
    """Add the figure's PNG to ``items`` under ``caption``, if it drew one."""
    w = _png(paths)
    if w:
        items.append((caption, w))


def _keep_path_figure(items: list[tuple[str, Path]], paths: list[Path], e: Experiment, p: PathRecord) -> None:
    """Add one path's figure to ``items``, captioned with the data and the pair (computed only if a PNG was drawn)."""
    w = _png(paths)
    if w:
        items.append((f"{data_label(e)}, path {p.source}\u2192{p.target}", w))


def _draw_figures(r: _ReportInput) -> dict[str, list[tuple[str, Path]]]:
    """Draw the paper's figures and the TCM summaries into ``r.fig_dir``; (caption, PNG) per figure group."""
    figs: dict[str, list[tuple[str, Path]]] = {"summary": [], "fig2": [], "fig3": [], "fig4": [], "fig5": [], "tcm_path": []}
    if r.tcm:
        _keep(figs["summary"], fig_tcm_summary(r.tcm, r.fig_dir / "tcm_summary", r.formats), "All TCM pairs: path found, the straight line's largest training error, iterations")
        _keep(figs["summary"], fig_tcm_trace_vs_loss(r.tcm, r.fig_dir / "tcm_trace_vs_loss", r.formats), "TCM: trace of the Hessian against the training loss at every Hessian point")
    for e in r.tcm:
        for p in e.iter_paths():
            tag = f"{e.path.stem}_{p.name}"
            _keep_path_figure(figs["fig2"], fig2_tcm_hessian(e, p, r.fig_dir / f"fig2_tcm_hessian_{tag}", r.formats), e, p)
            _keep_path_figure(figs["tcm_path"], plot_path(e, p, r.fig_dir / f"tcm_path_{tag}", r.formats), e, p)
    for e, key in ((r.m100, "fig3"), (r.full, "fig5")):
        if e is None:
            continue
        for p in e.iter_paths():
            tag = f"{e.path.stem}_{p.name}"
            _keep_path_figure(figs[key], fig3_mnist_path(e, p, r.fig_dir / f"{key}_mnist_path_{tag}", r.formats), e, p)
            _keep_path_figure(figs["fig4"], fig4_mnist_hessian(e, p, r.fig_dir / f"fig4_mnist_hessian_{tag}", r.formats), e, p)
    return figs


# -------- the report's sections, in order; each returns its Markdown lines
def _header_lines(r: _ReportInput) -> list[str]:
    """Title, the paper, where the numbers come from, and a warning naming files that are not complete."""
    L = [
        "# ramble: reproduction report",
        "",
        "Tartaglione & Grangetto, *Take a Ramble into Solution Spaces for Classification Problems in Neural Networks* (ICIAP 2019), Sect. 3.",
        f"Everything below is computed from the experiment files listed under *Settings and provenance* by `ramble.reporting.report` (ramble {__version__}); docs/report.md says how each row is measured.",
        "",
    ]
    not_complete = [f"{e.path} (status {e.status})" for e in r.exps if e.status != "complete"]
    if not_complete:
        L += ["**Warning: files not complete (their numbers are not trustworthy):** " + "; ".join(not_complete), ""]
    return L


def _claims_lines(r: _ReportInput) -> list[str]:
    """The claim table: one row per claim of the paper."""
    L = ["## Claims of the paper", "", "| # | claim | paper | measured | holds |", "|---|---|---|---|---|"]
    for c in r.claims:
        measured = c.measured + (f" *({c.note})*" if c.note else "")
        L.append(f"| {c.id} | {_md_cell(c.claim)} | {_md_cell(c.paper)} | {_md_cell(measured)} | **{c.holds}** |")
    L.append("")
    return L


def _disagreement_lines(r: _ReportInput) -> list[str]:
    """Rows that do not hold, are not established or did not run; settings that differ from the paper's."""
    claims = r.claims
    L = ["## Where the measurements disagree with the paper", ""]
    dis = [c for c in claims if c.holds in ("no", "partly")]
    if dis:
        L += [f"- **{c.id}** ({c.holds}): {c.claim}. Paper: {c.paper}. Measured: {c.measured}." for c in dis]
    else:
        L.append("- None of the rows that were run disagrees with the paper.")
    L += [f"- **{c.id}** (not established): {c.claim}. Measured: {c.measured}." for c in claims if c.holds == "not established"]
    nr = [c.id for c in claims if c.holds == "not run"]
    if nr:
        L.append(f"- Not run (no file or no data for them): {', '.join(nr)}.")
    devs = [(e, d) for e, d in ((e, deviations(e)) for e in r.exps) if d]
    if devs:
        L.append("- Settings that differ from the paper's:")
        L += [f"  - `{e.path.name}`: {'; '.join(d)}" for e, d in devs]
    if r.tcm and len(r.tcm) != PAPER_TCM_DATASETS:
        L.append(f"- The paper used {PAPER_TCM_DATASETS} TCM data sets; this report has {len(r.tcm)}.")
    L.append("")
    return L


def _solution_space_section(r: _ReportInput) -> list[str]:
    """Connectivity and convexity, over the paper's files and those beyond it."""
    return solution_space_lines([*r.exps, *r.beyond], r.fig_dir, r.out_dir, r.formats)


def _curves_section(r: _ReportInput) -> list[str]:
    """Curves between solutions, over the paper's files and those beyond it."""
    return curves_lines([*r.exps, *r.beyond], r.fig_dir, r.out_dir, r.formats)


def _align_section(r: _ReportInput) -> list[str]:
    """Aligned solutions, over every file, the alignment-only ones last."""
    return align_lines([*r.exps, *r.beyond, *(load(f, weights=False) for f in r.align_files)], r.fig_dir, r.out_dir, r.formats, r.align_not_run)


#: (title, figure group, caption prefix, show all or only the first with links to the rest), in the report's order.
_FIGURE_SECTIONS = (
    ("All TCM paths", "summary", "Summary", True),
    ("Fig. 2: TCM Hessian eigenvalues along the path", "fig2", "Fig. 2", False),
    ("TCM: training loss and error along the path and the straight line", "tcm_path", "TCM path", False),
    ("Fig. 3: LeNet5 MNIST-100, loss and error along the path", "fig3", "Fig. 3", True),
    ("Fig. 4: LeNet5 top-20 Hessian eigenvalues along the path", "fig4", "Fig. 4", True),
    ("Fig. 5: LeNet5 whole MNIST, loss and error along the path", "fig5", "Fig. 5", True),
)


def _figures_lines(r: _ReportInput) -> list[str]:
    """The figures drawn, embedded by relative links, group by group."""
    L = ["## Figures", ""]
    for title, key, what, all_ in _FIGURE_SECTIONS:
        L += _embed_lines(title, r.figs[key], what, r.out_dir, all_)
    if r.full is None:
        L += ["### Fig. 5: LeNet5 whole MNIST", "", "Not run (no whole-MNIST file given).", ""]
    L += ["Every figure is also stored as PDF next to its PNG in `figures/`.", ""]
    return L


def _embed_lines(title: str, items: list[tuple[str, Path]], what: str, out_dir: Path, all_: bool) -> list[str]:
    """One figure group: every figure (``all_``) or the first, the others as links; nothing when the group is empty."""
    if not items:
        return []
    L = [f"### {title}", ""]
    shown = items if all_ else items[:1]
    for cap, w in shown:
        L += [f"![{what}: {cap}]({_rel(w, out_dir)})", "", f"*{what}: {cap}.*", ""]
    rest = items[len(shown) :]
    if rest:
        L += ["Other paths: " + ", ".join(f"[{cap}]({_rel(w, out_dir)})" for cap, w in rest), ""]
    return L


def _provenance_lines(r: _ReportInput) -> list[str]:
    """Settings and provenance: software, files, paths, solutions, each file's full configuration."""
    exps = r.exps
    return ["## Settings and provenance", "", *_software_lines(r.meta), *_files_lines(exps), *_paths_lines(exps), *_solutions_lines(exps), *_configuration_lines(exps)]


_SECTIONS = (_header_lines, _claims_lines, _disagreement_lines, _solution_space_section, _curves_section, _align_section, _figures_lines, _provenance_lines)
"""REPORT.md's sections, in order; they run in this order too (the later ones draw figures and load more files)."""


# -------- settings and provenance
def _software_lines(meta: Optional[Mapping[str, Any]]) -> list[str]:
    """The caller's run information (software, machine, job times) and this ramble's version."""
    L = ["### Software and machine", ""]
    L += _fmt_meta(meta) if meta else ["- (no run information given by the caller)"]
    L += [f"- **report written by**: ramble {__version__}", ""]
    return L


def _files_lines(exps: Sequence[Experiment]) -> list[str]:
    """One table row per file: model, backend, status, settings, run time."""
    L = [
        "### Files",
        "",
        "Times: *run* is the whole `ramble ... run` (training, paths, straight lines, Hessians); *path search* is one path's algorithm alone; *job* times under *Software and machine* add the process start and the analyses (convexity, curves, controls).",
        "",
        "| file | model | backend | status | seed | sizes | solutions | train lr | variant | gamma | N_epochs | path lr | ramble | run [s] |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    L += [_file_row(e) for e in exps]
    L.append("")
    return L


def _file_row(e: Experiment) -> str:
    d = _settings(e)
    sizes = f"N={d.get('n_inputs')}, K={d.get('n_hidden')}, M={d.get('n_patterns')}" if "n_inputs" in d else f"train {d.get('train_size')}, test {d.get('test_size')}, {d.get('device')}"
    wt = e.attrs.get("wall_time")
    return f"| `{e.path}` | {e.model} | {e.backend} | {e.status} | {d.get('seed')} | {sizes} | {d.get('solutions')} ({d.get('pairs')}) | {d.get('train lr')} | {d.get('variant')} | {d.get('gamma')} | {d.get('N_epochs')} | {d.get('path lr')} | {e.attrs.get('ramble_version', '?')} | {_f(float(wt), 1) if wt is not None else 'n/a'} |"


def _paths_lines(exps: Sequence[Experiment]) -> list[str]:
    """One table row per path, then the complete paths' lengths against their straight lines."""
    L = [
        "### Paths",
        "",
        "| file | path | status | certified inside S | iterations | waypoints | recorded points | length / straight line | path search [s] | Hessian points | Hessian time [s] |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    L += [_path_row(e, p) for e in exps for p in e.iter_paths()]
    ratios = [p.length_ratio for e in exps for p in e.iter_paths() if p.complete and math.isfinite(p.length_ratio)]
    if ratios:
        L += ["", f"Path length against the straight line |W_a - W_b| (complete paths): median {np.median(ratios):.2f}x, {min(ratios):.2f}x to {max(ratios):.2f}x over {len(ratios)} path(s); `ramble plot --x arclength` draws a path against its length."]
    L.append("")
    return L


def _path_row(e: Experiment, p: PathRecord) -> str:
    h = p.hessian or {}
    hs = h.get("seconds")
    return (
        f"| `{e.path.name}` | {p.name} | {p.status}{' (' + _md_cell(p.reason) + ')' if p.reason else ''} | {certification_cell(p)} | {p.attrs.get('iterations', '')} | {p.attrs.get('waypoints', 0)} | {len(p.distance)} | {_f(p.length_ratio, 2) + 'x' if math.isfinite(p.length_ratio) else 'n/a'} | "
        f"{_f(float(p.attrs.get('wall_time', float('nan'))), 2)} | {len(h.get('index', [])) if h else 0} | {_f(float(np.sum(hs)), 2) if hs is not None else 'n/a'} |"
    )


def _solutions_lines(exps: Sequence[Experiment]) -> list[str]:
    """One table row per solution: its seed, training effort, margin, test error."""
    L = ["### Solutions", "", "| file | solution | init seed | epochs | seconds | min margin | test error |", "|---|---|---|---|---|---|---|"]
    for e in exps:
        for i in sorted(e.solution_attrs):
            a = e.solution_attrs[i]
            te = a.get("test_error")
            L.append(f"| `{e.path.name}` | {i} | {a.get('init_seed', '')} | {a.get('epochs', '')} | {_f(float(a.get('seconds', a.get('wall_s', float('nan')))), 2)} | {_g(float(a.get('min_margin', float('nan'))))} | {_pct(te, 2) if te is not None else ''} |")
    L.append("")
    return L


def _configuration_lines(exps: Sequence[Experiment]) -> list[str]:
    """Each file's whole configuration as JSON, folded."""
    L = ["### Full configuration of each file", ""]
    for e in exps:
        L += [
            f"<details><summary><code>{e.path}</code> (created {e.attrs.get('created', '?')}, finished {e.attrs.get('finished', '?')})</summary>",
            "",
            "```json",
            json.dumps(e.config, indent=1, sort_keys=True),
            "```",
            "",
            "</details>",
            "",
        ]
    return L


def sweep_lines(folder_or_index: str | Path) -> list[str]:
    """Markdown lines stating a sweep's success rates, per (variant, path lr): N_epochs x gamma tables.

    Computed from the experiment files the index lists (:func:`ramble.experiments.sweep.load_sweep`
    with ``from_files=True``), not from the index's summary of them.
    """
    from ramble.experiments.sweep import FAILURE_KINDS, load_sweep

    sw = load_sweep(folder_or_index, from_files=True)
    fx, cells = sw.fixed, sw.success()
    done = [t for t in sw.tasks if t.status == "done"]
    n_ok, n_all = sum(p.complete for p in sw.paths), len(sw.paths)
    seeds = sorted({t.seed for t in sw.tasks})
    L = [
        f"# Sweep in {sw.folder}",
        "",
        f"TCM N={fx.get('n_inputs')}, K={fx.get('n_hidden')}, M={fx.get('n_patterns')}; {fx.get('n_solutions')} solutions per data set "
        f"({fx.get('pairs')} pairs); backend {fx.get('backend')}; data sets (seeds) {', '.join(map(str, seeds))}. "
        f"{len(done)}/{len(sw.tasks)} experiments done; **{n_ok}/{n_all} paths complete**.",
        "",
    ]
    gammas = sorted({c.gamma for c in cells})
    epochs = sorted({c.n_epochs for c in cells})
    for variant, lr in sorted({(c.variant, c.lr) for c in cells}):
        mine = {(c.n_epochs, c.gamma): c for c in cells if (c.variant, c.lr) == (variant, lr)}
        ok, tot = sum(c.complete for c in mine.values()), sum(c.paths for c in mine.values())
        L += [f"## {variant} variant, path lr {lr:g}: {ok}/{tot} paths complete", ""]
        L += ["| N_epochs \\ gamma | " + " | ".join(f"{g:g}" for g in gammas) + " |", "|---|" + "---|" * len(gammas)]
        for e in epochs:
            row = []
            for g in gammas:
                c = mine.get((e, g))
                row.append("–" if c is None or not c.paths else f"{c.complete}/{c.paths} ({100 * c.rate:.0f} %)")
            L.append(f"| {e} | " + " | ".join(row) + " |")
        fails = {k: sum(c.failures.get(k, 0) for c in mine.values()) for k in FAILURE_KINDS}
        why = ", ".join(f"{k}: {v}" for k, v in fails.items() if v) or "none"
        note = ' ("GD step left S" is the paper\'s "eta, gamma not properly set")' if fails["GD step left S"] else ""
        L += ["", f"Failed paths by reason: {why}{note}.", ""]
    errors = [t for t in sw.tasks if t.status == "failed"]
    if errors:
        L += [f"{len(errors)} experiment(s) failed without paths:", ""] + [f"* `{t.file}`: {t.error}" for t in errors] + [""]
    pending = [t for t in sw.tasks if t.status not in ("done", "failed")]
    if pending:
        L += [f"{len(pending)} experiment(s) not run yet (rerun the sweep to finish them).", ""]
    return L


def _clean(o: Any) -> Any:
    """NaN and infinities as null, so claims.json is strict JSON."""
    if isinstance(o, dict):
        return {k: _clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_clean(v) for v in o]
    if isinstance(o, float) and not math.isfinite(o):
        return None
    return o


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, float) and not math.isfinite(o):
        return None
    return str(o)
