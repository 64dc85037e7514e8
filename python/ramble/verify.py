"""``ramble verify``: recompute a file's claims from its stored data.

A file says that each complete path runs from one solution to another
through S (every training sample classified correctly) on the Eq. 4 norm
surface.  :func:`verify_file` checks this from the stored data alone (TCM:
the training set in ``/data/train``; LeNet5: the MNIST files ``/data``
refers to), and recomputes each path's ``sha256`` checksum
(:func:`ramble.io.datasets_sha256`).  ``docs/verify.md`` lists the checks and
their tolerances.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

import h5py
import numpy as np
import torch

from .errors import DataError, RambleError
from .io import _decode, datasets_sha256, open_checked

EQ4_RTOL = {np.dtype(np.float64): 1e-6, np.dtype(np.float32): 1e-4}
"""Largest relative deviation of a layer norm from Eq. 4, by the dtype of the stored weights."""

TCM_ROW_CHUNK = 256
LENET_BATCH = 1000


@dataclass
class Check:
    """One check: ``ok`` False means the file fails it; ``skipped`` checks are ok and say why in ``detail``."""

    name: str
    ok: bool
    detail: str = ""
    skipped: bool = False

    @property
    def result(self) -> str:
        return "skip" if self.skipped else ("ok" if self.ok else "FAIL")


@dataclass
class VerifyReport:
    """Every check made on one file, in order."""

    file: str
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]

    def add(self, name: str, ok: bool, detail: str = "", skipped: bool = False) -> Check:
        c = Check(name, bool(ok), detail, skipped)
        self.checks.append(c)
        return c

    def skip(self, name: str, why: str) -> Check:
        return self.add(name, True, why, skipped=True)

    def format(self) -> str:
        """A plain-text table: check, result (ok / FAIL / skip), detail; then a summary line."""
        w = max([len("check")] + [len(c.name) for c in self.checks])
        lines = [f"verify {self.file}", f"{'check':<{w}}  result  detail", f"{'-' * w}  ------  ------"]
        lines += [f"{c.name:<{w}}  {c.result:<6}  {c.detail}".rstrip() for c in self.checks]
        n_fail = len(self.failures)
        lines.append(f"{len(self.checks)} checks, {n_fail} failed" if n_fail else f"{len(self.checks)} checks, all passed")
        return "\n".join(lines)


# ----------------------------------------------------------------------------- helpers


def _rows_list(rows: Sequence[int], limit: int = 5) -> str:
    rows = list(rows)
    s = ", ".join(str(r) for r in rows[:limit])
    return s + (f", ... ({len(rows)} rows)" if len(rows) > limit else "")


def _groups_of(shapes: Sequence[Sequence[int]]) -> list[slice]:
    out, start = [], 0
    for s in shapes:
        n = int(np.prod(s))
        out.append(slice(start, start + n))
        start += n
    return out


def _sample(n_rows: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """``k`` sorted row indices out of ``n_rows``, always including the first and the last."""
    if k >= n_rows or n_rows <= 2:
        return np.arange(n_rows)
    middle = rng.choice(np.arange(1, n_rows - 1), size=max(k - 2, 0), replace=False)
    return np.unique(np.concatenate([[0, n_rows - 1], middle])).astype(np.int64)


ErrorCounter = Callable[[np.ndarray], np.ndarray]
"""Weights (R, P) -> training errors per row (R,) int."""


def tcm_counter(f: h5py.File) -> tuple[ErrorCounter, int]:
    """Training errors per weight row of a TCM file, rebuilt from ``/data/train`` and ``/model`` K (torch float64, rows in chunks)."""
    from .patterns import Patterns
    from .tcm import TCMProblem

    inputs = f["data/train/inputs"][()]
    labels = f["data/train/labels"][()]
    k = int(_decode(f["model"].attrs["K"]))
    problem = TCMProblem(Patterns(inputs=inputs, labels=labels, seed=int(_decode(f["data"].attrs.get("seed", 0)))), k)

    def count(weights: np.ndarray) -> np.ndarray:
        out = []
        for s in range(0, len(weights), TCM_ROW_CHUNK):
            w = torch.from_numpy(np.ascontiguousarray(weights[s : s + TCM_ROW_CHUNK], dtype=np.float64))
            h = torch.einsum("mkn,tkn->tmk", problem.xi, w.view(len(w), problem.n_hidden, problem.n_per_unit))
            margins = problem.sigma * torch.nn.functional.hardtanh(h).sum(dim=2)
            out.append((margins <= 0).sum(dim=1).numpy())
        return np.concatenate(out) if out else np.zeros(0, np.int64)

    return count, problem.n_samples


def _lenet_counter(f: h5py.File, data_dir: Optional[str], device: str, report: VerifyReport) -> Optional[tuple[ErrorCounter, int]]:
    from .lenet import LeNet5, resolve_device
    from .mnist_experiment import rebuild, run_data

    try:
        data = run_data(json.loads(_decode(f.attrs.get("config", "{}"))), {k: _decode(v) for k, v in f["data"].attrs.items()}, data_dir)
    except DataError as e:
        report.add("data", False, str(e))
        return None
    train_size = len(data.train_y)
    folder = data.source.get("folder", data_dir)
    report.add("data", True, f"MNIST first {train_size} training images from {folder}")
    names = json.loads(_decode(f["model"].attrs["param_names"]))
    shapes = json.loads(_decode(f["model"].attrs["param_shapes"]))
    dev = resolve_device(device)
    x = data.train_x.to(dev)
    y = data.train_y.to(dev)

    def count(weights: np.ndarray) -> np.ndarray:
        out = []
        for row in weights:
            net = LeNet5().to(dtype=torch.from_numpy(row[:1]).dtype)
            net.load_state_dict(rebuild(np.asarray(row), names, shapes))
            net.to(dev).eval()
            wrong = 0
            with torch.no_grad():
                for s in range(0, len(y), LENET_BATCH):
                    logits = net(x[s : s + LENET_BATCH].to(next(net.parameters()).dtype))
                    yb = y[s : s + LENET_BATCH]
                    true = logits.gather(1, yb[:, None]).squeeze(1)
                    other = logits.masked_fill(torch.nn.functional.one_hot(yb, logits.shape[1]).bool(), -float("inf")).amax(1)
                    wrong += int((true - other <= 0).sum())
            out.append(wrong)
        return np.asarray(out, dtype=np.int64)

    return count, len(y)


# ----------------------------------------------------------------------------- the checks


def verify_file(path: str | os.PathLike, *, sample_rows: int = 20, seed: int = 0, data_dir: Optional[str] = None, device: str = "cpu") -> VerifyReport:
    """Check FILE against its own claims; see docs/verify.md.

    ``sample_rows``: LeNet5 rows (both endpoints included) whose training
    accuracy is recomputed, drawn with ``seed`` (the TCM checks every row).
    ``data_dir``: the MNIST folder if it moved since the run.  Raises
    :class:`ramble.errors.FormatError` when the file is not a ramble file.
    """
    report = VerifyReport(str(path))
    with open_checked(path) as f:
        model = str(_decode(f.attrs.get("model", "")))
        report.add("format", True, f"ramble format {_decode(f.attrs['format_version'])}, model {model}, backend {_decode(f.attrs.get('backend', '?'))}")
        status = str(_decode(f.attrs.get("status", "")))
        if status == "complete":
            report.add("status", True, "complete")
        else:
            err = _decode(f.attrs.get("error", ""))
            report.add("status", False, f"status is {status!r}" + (f": {err}" if err else "") + " (only complete files are trustworthy)")
        try:
            _verify_paths(f, model, report, sample_rows, seed, data_dir, device)
        except (KeyError, OSError) as e:
            report.add("file", False, f"damaged ramble file ({e})")
    return report


def _verify_paths(f: h5py.File, model: str, report: VerifyReport, sample_rows: int, seed: int, data_dir: Optional[str], device: str) -> None:
    solutions = {int(k): d[()] for k, d in f.get("solutions", {}).items()}
    names = sorted(f.get("paths", {}), key=lambda s: tuple(int(x) for x in s.split("-")))
    if not names:
        report.skip("paths", "the file holds no paths")
        return
    counter: Optional[tuple[ErrorCounter, int]] = None
    if model == "tcm":
        counter = tcm_counter(f)
        groups = None
    elif model == "lenet5":
        if any(_decode(f["paths"][n].attrs.get("status", "")) == "complete" for n in names):
            counter = _lenet_counter(f, data_dir, device, report)
        groups = _groups_of(json.loads(_decode(f["model"].attrs["param_shapes"])))
    else:
        report.add("model", False, f"unknown model {model!r}")
        return
    rng = np.random.default_rng(seed)
    for name in names:
        _verify_path(f["paths"][name], name, model, solutions, counter, groups, report, sample_rows, rng)


def _verify_path(g: h5py.Group, name: str, model: str, solutions: dict[int, np.ndarray], counter: Optional[tuple[ErrorCounter, int]], groups: Optional[list[slice]], report: VerifyReport, sample_rows: int, rng: np.random.Generator) -> None:
    p = f"path {name}"
    a = {k: _decode(v) for k, v in g.attrs.items()}
    complete = a.get("status") == "complete"

    # checksum
    stored = a.get("sha256")
    if stored is None:
        report.skip(f"{p} checksum", "no checksum (file written before checksums were stored)")
    else:
        got = datasets_sha256(g)
        report.add(f"{p} checksum", got == stored, "sha256 matches" if got == stored else f"sha256 mismatch: stored {stored[:12]}..., data give {got[:12]}... (the path's datasets were changed)")

    weights = g["weights"]
    n_rows = int(weights.shape[0])
    src, dst = int(a.get("from", name.split("-")[0])), int(a.get("to", name.split("-")[1]))

    # endpoints
    problems = []
    for label, row, sol in (("first", 0, src), ("last", n_rows - 1, dst)):
        if label == "last" and not complete:
            continue
        if sol not in solutions:
            problems.append(f"solution {sol} is missing")
            continue
        w = weights[row]
        s = solutions[sol]
        if w.shape != s.shape:
            problems.append(f"{label} row has shape {w.shape}, solution {sol} {s.shape}")
        elif not np.array_equal(w, s.astype(w.dtype)):
            problems.append(f"{label} row differs from solution {sol} (max |diff| {float(np.max(np.abs(w.astype(np.float64) - s))):.3g})")
    if n_rows == 0:
        problems = ["no weight rows"]
    report.add(f"{p} endpoints", not problems, "; ".join(problems) if problems else (f"row 0 = solution {src}, row {n_rows - 1} = solution {dst}" if complete else f"row 0 = solution {src} (path failed: last row not checked)"))
    if n_rows == 0:
        return

    # Eq. 4
    waypoints = int(a.get("waypoints", 0) or 0)
    if waypoints > 0:
        report.skip(f"{p} Eq. 4", f"path through {waypoints} waypoint(s): each leg has its own norm frame, not recorded")
    elif src not in solutions or dst not in solutions:
        report.skip(f"{p} Eq. 4", "endpoint solution missing")
    else:
        from .path import NormConstraint

        W = weights[()]
        gr = groups if groups is not None else [slice(0, W.shape[1])]
        rtol = EQ4_RTOL.get(W.dtype, 1e-6)
        nc = NormConstraint(torch.from_numpy(solutions[src].astype(np.float64)), torch.from_numpy(solutions[dst].astype(np.float64)), gr)
        viol = np.array([nc.violation(torch.from_numpy(r.astype(np.float64))) for r in W])
        bad = np.flatnonzero(~(viol <= rtol))
        worst = float(np.nanmax(viol)) if len(viol) else 0.0
        report.add(f"{p} Eq. 4", len(bad) == 0, f"all {len(W)} rows within {rtol:g} (worst {worst:.2g})" if len(bad) == 0 else f"rows {_rows_list(bad)} off the norm surface (worst relative deviation {worst:.3g} > {rtol:g})")

    # membership and stored train_error
    if counter is None:
        why = "no training data" if model == "lenet5" else "no training set"
        report.skip(f"{p} in S", why)
        return
    count, m = counter
    rows = np.arange(n_rows) if model == "tcm" else _sample(n_rows, sample_rows, rng)
    W = weights[()] if model == "tcm" else np.stack([weights[int(r)] for r in rows])
    errors = count(W)
    which = "all" if len(rows) == n_rows else f"{len(rows)} sampled"
    if complete:
        bad = rows[errors > 0]
        report.add(f"{p} in S", len(bad) == 0, f"{which} of {n_rows} rows classify all {m} training samples" if len(bad) == 0 else f"rows {_rows_list(bad)} misclassify training samples (up to {int(errors.max())} of {m}): outside S")
    else:
        report.skip(f"{p} in S", f"path failed ({a.get('reason', '')}): rows not required to be in S")
    point = g["weight_index"][()][rows] if "weight_index" in g else rows
    stored_err = g["train_error"][()][point]
    slack = 0.5 if model == "tcm" else 1.5  # samples: exact count for the TCM, one borderline sample for LeNet5
    off = np.flatnonzero(np.abs(stored_err * m - errors) > slack)
    report.add(
        f"{p} train_error",
        len(off) == 0,
        f"stored values match recomputation at {which} rows" if len(off) == 0 else f"rows {_rows_list(rows[off])}: stored {stored_err[off[0]]:.4g}, recomputed {errors[off[0]] / m:.4g}",
    )


def verify_or_raise(path: str | os.PathLike, echo: Callable[[str], Any] = print, **kwargs: Any) -> VerifyReport:
    """Print the report's table; raise RambleError naming the failed checks, if any."""
    report = verify_file(path, **kwargs)
    echo(report.format())
    if not report.ok:
        names = [c.name for c in report.failures]
        raise RambleError(f"{path}: {len(names)} check(s) failed: {', '.join(names)}")
    return report
