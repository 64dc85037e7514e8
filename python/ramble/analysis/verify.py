"""``ramble verify``: recompute a file's claims from its stored data.

A file says that each complete path runs from one solution to another
through S (every training sample classified correctly) on the Eq. 4 norm
surface.  :func:`verify_file` checks this from the stored data alone (TCM:
the training set in ``/data/train``; LeNet5: the MNIST files ``/data``
refers to), recomputes each path's ``sha256`` checksum
(:func:`ramble.storage.io.datasets_sha256`), and certifies the straight segment
between every two consecutive stored weight rows (TCM exactly, networks by
bound propagation: :mod:`ramble.core.bounds`).  With ``replay=True`` it reruns
each LeNet5 path on the CPU from the stored config and endpoints, every
move certified, and compares the stored rows bit for bit.
``docs/verify.md`` lists the checks and their tolerances.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Optional, Sequence, Union

import numpy as np
import torch

from ramble.errors import RambleError
from ramble.models.registry import PolylineCertifier, Replayer, SegmentCertifier, VerifySetup, model_spec
from ramble.storage.views import Handle, StoredFile, StoredPath, as_stored, open_stored

EQ4_RTOL = {np.dtype(np.float64): 1e-6, np.dtype(np.float32): 1e-4}
"""Largest relative deviation of a layer norm from Eq. 4, by the dtype of the stored weights."""


@dataclass
class Check:
    """One check: ``ok`` False means the file fails it.

    ``skipped`` checks were not made (``detail`` says why); ``warning``
    checks were made and found something the file does not claim (e.g. a
    stored segment that could not be certified in a file written before
    certification).  Neither fails the file, and the summary counts both.
    """

    name: str
    ok: bool
    detail: str = ""
    skipped: bool = False
    warning: bool = False

    @property
    def result(self) -> str:
        if not self.ok:
            return "FAIL"
        return "skip" if self.skipped else ("warn" if self.warning else "ok")


@dataclass
class VerifyReport:
    """Every check made on one file, in order; ``segments_checked``/``segments_certified`` over all paths."""

    file: str
    checks: list[Check] = field(default_factory=list)
    segments_checked: int = 0
    segments_certified: int = 0

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]

    def add(self, name: str, ok: bool, detail: str = "", skipped: bool = False, warning: bool = False) -> Check:
        c = Check(name, bool(ok), detail, skipped, warning)
        self.checks.append(c)
        return c

    def skip(self, name: str, why: str) -> Check:
        return self.add(name, True, why, skipped=True)

    def warn(self, name: str, detail: str) -> Check:
        return self.add(name, True, detail, warning=True)

    def summary(self) -> str:
        """One line: how many checks passed, were skipped, warned and failed ("all passed" only when all did)."""
        counts = {result: sum(c.result == result for c in self.checks) for result in ("ok", "skip", "warn", "FAIL")}
        n = len(self.checks)
        if counts["ok"] == n:
            return f"{n} checks, all passed"
        parts = [f"{counts['ok']} passed", f"{counts['skip']} skipped", f"{counts['warn']} warned", f"{counts['FAIL']} failed"]
        return f"{n} checks: " + ", ".join(parts)

    def format(self) -> str:
        """A plain-text table: check, result (ok / FAIL / skip / warn), detail; then the summary lines."""
        w = max([len("check")] + [len(c.name) for c in self.checks])
        lines = [f"verify {self.file}", f"{'check':<{w}}  result  detail", f"{'-' * w}  ------  ------"]
        lines += [f"{c.name:<{w}}  {c.result:<6}  {c.detail}".rstrip() for c in self.checks]
        if self.segments_checked:
            lines.append(f"segments between stored rows: {self.segments_checked} checked, {self.segments_certified} certified inside S")
        lines.append(self.summary())
        return "\n".join(lines)


# ----------------------------------------------------------------------------- helpers


def _rows_list(rows: Sequence[int], limit: int = 5) -> str:
    rows = list(rows)
    s = ", ".join(str(r) for r in rows[:limit])
    return s + (f", ... ({len(rows)} rows)" if len(rows) > limit else "")


def _sample(n_rows: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """``k`` sorted row indices out of ``n_rows``, always including the first and the last."""
    if k >= n_rows or n_rows <= 2:
        return np.arange(n_rows)
    middle = rng.choice(np.arange(1, n_rows - 1), size=max(k - 2, 0), replace=False)
    return np.unique(np.concatenate([[0, n_rows - 1], middle])).astype(np.int64)


def stored_path_config(config: dict) -> Any:
    """The PathConfig a run stored (its strides included); keys this version does not know are left out."""
    from dataclasses import fields

    from ramble.core.path import PathConfig

    known = {fd.name for fd in fields(PathConfig)}
    return PathConfig(**{k: v for k, v in config.get("path", {}).items() if k in known})


# ----------------------------------------------------------------------------- the checks


def verify_file(
    path: str | os.PathLike,
    *,
    sample_rows: int = 20,
    seed: int = 0,
    data_dir: Optional[str] = None,
    device: str = "cpu",
    segments: bool = True,
    max_pieces: int = 200,
    replay: bool = False,
) -> VerifyReport:
    """Check FILE against its own claims; see docs/verify.md.

    ``sample_rows``: LeNet5 rows (both endpoints included) whose training
    accuracy is recomputed, drawn with ``seed`` (the TCM checks every row).
    ``data_dir``: the MNIST folder if it moved since the run.  ``segments``:
    certify the segment between every two consecutive stored weight rows
    (networks: at most ``max_pieces`` bounded pieces a segment).
    ``replay``: rerun every LeNet5 path from its stored config and endpoints
    on ``device`` and compare the stored rows bit for bit.  Raises
    :class:`ramble.errors.FormatError` when the file is not a ramble file.
    """
    report = VerifyReport(str(path))
    with open_stored(path) as f:
        model = str(f.attrs.get("model", ""))
        report.add("format", True, f"ramble format {f.attrs['format_version']}, model {model}, backend {f.attrs.get('backend', '?')}")
        status = str(f.attrs.get("status", ""))
        if status == "complete":
            report.add("status", True, "complete")
        else:
            err = f.attrs.get("error", "")
            report.add("status", False, f"status is {status!r}" + (f": {err}" if err else "") + " (only complete files are trustworthy)")
        try:
            _verify_paths(f, model, report, sample_rows, seed, data_dir, device, segments, max_pieces)
            if replay:
                replay_paths(f, model, report, data_dir, device)
        except (KeyError, OSError) as e:
            report.add("file", False, f"damaged ramble file ({e})")
    return report


def _verify_paths(f: StoredFile, model: str, report: VerifyReport, sample_rows: int, seed: int, data_dir: Optional[str], device: str, segments: bool, max_pieces: int) -> None:
    solutions = f.solutions()
    names = f.path_names()
    if not names:
        report.skip("paths", "the file holds no paths")
        return
    any_complete = any(f.path(n).attrs.get("status", "") == "complete" for n in names)
    try:
        spec = model_spec(model)
        setup = spec.verify_setup(f, data_dir=data_dir, device=device, segments=segments, max_pieces=max_pieces, any_complete=any_complete)
    except RambleError as e:
        report.add("model", False, str(e))
        return
    for name, ok, detail in setup.checks:
        report.add(name, ok, detail)
    vertex_rows = _every_vertex_recorded(f)
    rng = np.random.default_rng(seed)
    for name in names:
        p = f.path(name)
        _verify_path(p, setup, solutions, report, sample_rows, rng)
        if setup.certifier is None and setup.polyline_certifier is None:
            report.skip(f"path {name} segments", setup.no_certifier)
        else:
            _verify_segments(p, setup, vertex_rows, report)


def _every_vertex_recorded(f: StoredFile) -> bool:
    """True when the run recorded every vertex of its polylines (path ``record_every`` 1 in the stored config)."""
    config = json.loads(f.attrs.get("config", "{}") or "{}")
    return int(config.get("path", {}).get("record_every", 1)) == 1


SEGMENT_BLOCK = 4096
"""Stored rows read at once when a polyline certifier certifies a path's segments (the block's last row starts the next block)."""


def _verify_segments(g: StoredPath, setup: VerifySetup, vertex_rows: bool, report: VerifyReport) -> None:
    """Certify the segment between every two consecutive stored weight rows of one path.

    A segment joins two consecutive vertices of the path's polyline when every
    vertex was recorded and the two rows are consecutive recorded points; in a
    file that records certification (path attribute ``segments_certified``)
    each of those must be certified, else the check fails.  Other segments
    (chords over rows kept at a stride) are certified where possible and
    the rest listed; in a file written before certification nothing between
    stored points is claimed, so what is not certified is a warning.
    """
    check = f"path {g.name} segments"
    n_rows = int(g.weights.shape[0])
    if n_rows < 2:
        report.skip(check, f"{n_rows} stored row(s): no segment")
        return
    kept = g.get("weight_index")
    points = np.asarray(kept if kept is not None else np.arange(n_rows))
    gaps = np.diff(points)  # recorded points from each stored row to the next
    if setup.polyline_certifier is not None:
        certified, bounds = _certify_in_blocks(g, setup.polyline_certifier)
    else:
        certified, bounds = _certify_one_by_one(g, setup.certifier, ~(vertex_rows & (gaps == 1)))
    report.segments_checked += len(certified)
    report.segments_certified += int(certified.sum())
    _report_segments(check, certified, bounds, gaps, vertex_rows, "segments_certified" in g.attrs, report)


def _certify_in_blocks(g: StoredPath, certify: PolylineCertifier) -> tuple[np.ndarray, np.ndarray]:
    """(certified bool, margin bound float64) of each of a path's n stored segments, shape (n,), :data:`SEGMENT_BLOCK` rows read at a time."""
    weights = g.weights
    n = int(weights.shape[0]) - 1
    parts = [certify(weights[s : min(s + SEGMENT_BLOCK, n) + 1]) for s in range(0, n, SEGMENT_BLOCK)]
    return np.concatenate([c for c, _ in parts]).astype(bool), np.concatenate([b for _, b in parts]).astype(np.float64)


def _certify_one_by_one(g: StoredPath, certify: SegmentCertifier, chords: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(certified bool, margin bound float64) of each of a path's n stored segments, shape (n,); ``chords`` (n,): segment r is not a path segment."""
    weights = g.weights
    n = int(weights.shape[0]) - 1
    certified = np.zeros(n, dtype=bool)
    bounds = np.zeros(n, dtype=np.float64)
    previous = weights[0]
    for r in range(n):
        current = weights[r + 1]
        c = certify(previous, current, bool(chords[r]))
        certified[r], bounds[r] = c.certified, c.margin_bound
        previous = current
    return certified, bounds


def _report_segments(check: str, certified: np.ndarray, bounds: np.ndarray, gaps: np.ndarray, vertex_rows: bool, claims: bool, report: VerifyReport) -> None:
    """The ``path i-j segments`` check from each stored segment's certificate (n,) and its gap in recorded points (n,).

    ``claims``: the file records certification, so an uncertified path segment fails it.
    """
    n = len(certified)
    uncertified = np.flatnonzero(~certified)
    lowest = float(bounds[certified].min()) if certified.any() else math.inf
    done = f"{n - len(uncertified)} of {n} stored segments certified inside S" + (f" (smallest margin bound {lowest:.3g})" if lowest < math.inf else "")
    if not len(uncertified):
        report.add(check, True, done)
        return
    path_segments = [int(r) for r in uncertified if vertex_rows and gaps[r] == 1]
    if claims and path_segments:
        report.add(check, False, f"{done}; rows {_pairs_list(path_segments)} are consecutive vertices of the path but not certified inside S")
        return
    chords = [int(r) for r in uncertified]
    if claims:
        report.warn(check, f"{done}; not certified: rows {_pairs_list(chords)} (rows kept at a stride, not path segments; verify --replay certifies every segment)")
    else:
        report.warn(check, f"{done}; not certified: rows {_pairs_list(chords)} (file written before certification: its paths are claimed inside S only at their stored points)")


def _pairs_list(rows: Sequence[int], limit: int = 5) -> str:
    pairs = [f"{r}->{r + 1}" for r in rows]
    return ", ".join(pairs[:limit]) + (f", ... ({len(pairs)} segments)" if len(pairs) > limit else "")


def _verify_checksum(g: StoredPath, report: VerifyReport) -> None:
    """The ``path i-j checksum`` check: the stored ``sha256`` against the one the path's datasets give now."""
    check = f"path {g.name} checksum"
    stored = g.attrs.get("sha256")
    if stored is None:
        report.skip(check, "no checksum (file written before checksums were stored)")
        return
    got = g.sha256()
    report.add(check, got == stored, "sha256 matches" if got == stored else f"sha256 mismatch: stored {stored[:12]}..., data give {got[:12]}... (the path's datasets were changed)")


def _verify_path(g: StoredPath, setup: VerifySetup, solutions: dict[int, np.ndarray], report: VerifyReport, sample_rows: int, rng: np.random.Generator) -> None:
    name = g.name
    p = f"path {name}"
    a = g.attrs
    complete = a.get("status") == "complete"
    _verify_checksum(g, report)

    weights = g.weights
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
    leg = g.get("leg")
    legs = len(np.unique(leg)) if leg is not None else 1  # a failed path keeps the legs it tried, waypoints 0
    if waypoints > 0 or legs > 1:
        report.skip(f"{p} Eq. 4", f"path of {legs} legs through {max(waypoints, legs - 1)} waypoint(s): each leg has its own norm frame, not recorded")
    elif src not in solutions or dst not in solutions:
        report.skip(f"{p} Eq. 4", "endpoint solution missing")
    else:
        from ramble.core.path import NormConstraint

        W = weights[()]
        gr = setup.groups if setup.groups is not None else [slice(0, W.shape[1])]
        rtol = EQ4_RTOL.get(W.dtype, 1e-6)
        nc = NormConstraint(torch.from_numpy(solutions[src].astype(np.float64)), torch.from_numpy(solutions[dst].astype(np.float64)), gr)
        viol = np.array([nc.violation(torch.from_numpy(r.astype(np.float64))) for r in W])
        bad = np.flatnonzero(~(viol <= rtol))
        worst = float(np.nanmax(viol)) if len(viol) else 0.0
        report.add(f"{p} Eq. 4", len(bad) == 0, f"all {len(W)} rows within {rtol:g} (worst {worst:.2g})" if len(bad) == 0 else f"rows {_rows_list(bad)} off the norm surface (worst relative deviation {worst:.3g} > {rtol:g})")

    # membership and stored train_error
    if setup.counter is None:
        why = setup.no_counter
        report.skip(f"{p} in S", why if complete else f"path failed ({a.get('reason', '')}): rows not required to be in S")
        return
    count, m = setup.counter
    rows = np.arange(n_rows) if setup.all_rows else _sample(n_rows, sample_rows, rng)
    W = weights[()] if setup.all_rows else np.stack([weights[int(r)] for r in rows])
    errors = count(W)
    which = "all" if len(rows) == n_rows else f"{len(rows)} sampled"
    if complete:
        bad = rows[errors > 0]
        report.add(f"{p} in S", len(bad) == 0, f"{which} of {n_rows} rows classify all {m} training samples" if len(bad) == 0 else f"rows {_rows_list(bad)} misclassify training samples (up to {int(errors.max())} of {m}): outside S")
    else:
        report.skip(f"{p} in S", f"path failed ({a.get('reason', '')}): rows not required to be in S")
    kept = g.get("weight_index")
    point = kept[rows] if kept is not None else rows
    stored_err = g.read("train_error")[point]
    off = np.flatnonzero(np.abs(stored_err * m - errors) > setup.error_slack)
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


# ----------------------------------------------------------------------------- replay


def replay_paths(f: Union[Handle, StoredFile], model: str, report: VerifyReport, data_dir: Optional[str], device: str) -> None:
    """Rerun every path of a file from its stored config and endpoints (its spec's :meth:`replayer`); compare the stored rows bit for bit.

    The path algorithm accepts only certified moves, so a replay that ends
    where the file does, with the same rows, shows that the stored path is
    a polyline of certified segments.  Adds one ``path i-j replay`` check
    per path (FAIL naming the first row that differs).
    """
    f = as_stored(f)
    try:
        replay, why = model_spec(model).replayer(f, data_dir=data_dir, device=device)
    except RambleError as e:  # e.g. missing data, a torch file whose model cannot be rebuilt
        report.add("replay", False, str(e))
        return
    if replay is None:
        report.skip("replay", why)
        return
    config = json.loads(f.attrs.get("config", "{}") or "{}")
    ran_on = str(config.get("resolved_device", "?"))
    threads = int(f.attrs["torch_threads"]) if "torch_threads" in f.attrs else None
    with _torch_threads(threads):
        for p in f.paths():
            _replay_path(p, replay, device, ran_on, threads, report)


@contextlib.contextmanager
def _torch_threads(n: Optional[int]) -> Iterator[None]:
    """torch's CPU thread count set to ``n`` (the run's: float32 sums are split by thread) for the block, then restored."""
    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _replay_path(g: StoredPath, replay: Replayer, device: str, ran_on: str, threads: Optional[int], report: VerifyReport) -> None:
    """One ``path i-j replay`` check."""
    check = f"path {g.name} replay"
    if len(np.atleast_1d(g.attrs.get("via", []))) > 0:
        report.skip(check, "a routed path (joined from other stored paths): replay those")
        return
    i, j = (int(x) for x in g.name.split("-"))
    result = replay(i, j)
    problems = _replay_differences(g, result)
    where = f"replayed on {device}, {torch.get_num_threads()} torch thread(s)"
    if ran_on != "?" and ran_on.split(":")[0] != str(device).split(":")[0]:
        where += f" (the run was on {ran_on}: last bits may differ)"
    if threads is None:
        where += " (the file does not record the run's thread count, on which float32 sums depend)"
    figures = f"{result.segments_certified} moves certified ({result.segment_checks - result.segments_certified} refused), {result.status}"
    if problems:
        report.add(check, False, f"{where}: {'; '.join(problems)}")
    else:
        report.add(check, True, f"{where}: {figures}; all {len(result.weights)} stored rows equal bit for bit")


def _replay_differences(g: StoredPath, result: Any) -> list[str]:
    """What differs between a stored path and its replay: status, row count, kept rows, the first row whose bits differ."""
    out = []
    stored_status = g.attrs.get("status", "")
    if stored_status != result.status:
        out.append(f"status {stored_status!r} stored, {result.status!r} replayed")
    stored = g.weights[()]
    replayed = np.asarray(result.weights)
    if stored.dtype != replayed.dtype:
        out.append(f"weights stored as {stored.dtype}, replayed as {replayed.dtype}")
    stored_index = g.get("weight_index")
    replayed_index = None if result.weight_index is None else np.asarray(result.weight_index)
    if (stored_index is None) != (replayed_index is None) or (stored_index is not None and not np.array_equal(stored_index, replayed_index)):
        out.append("the rows kept (weight_index) differ")
    if stored.shape != replayed.shape:
        out.append(f"{len(stored)} rows stored, {len(replayed)} replayed")
    n = min(len(stored), len(replayed))
    same = [np.array_equal(stored[r].view(np.uint8), replayed[r].astype(stored.dtype).view(np.uint8)) for r in range(n)] if stored.shape[1:] == replayed.shape[1:] else [False] * n
    if not all(same):
        r = same.index(False)
        diff = float(np.max(np.abs(stored[r].astype(np.float64) - replayed[r].astype(np.float64)))) if stored.shape[1:] == replayed.shape[1:] else float("nan")
        out.append(f"row {r} differs from the replay (max |diff| {diff:.3g}; {n - sum(same)} of {n} rows differ)")
    return out
