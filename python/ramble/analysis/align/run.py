"""``ramble align FILE``: align a stored pair's second solution to its first and hold the result against S.

For a pair (i, j) of a LeNet5 or generic torch file:

1. the permutation structure of the file's network (:mod:`ramble.analysis.align.spec`),
   W_j matched to W_i by weight or activation matching (:mod:`ramble.analysis.align.matching`);
2. pi(W_j) checked to compute the same function as W_j: the same logits, to
   float64 rounding, on every training and test input (refused otherwise);
3. the straight line W_i -> pi(W_j) on the unaligned line's t grid (training
   and test loss and error), the fraction of its points outside S, its worst
   training error, where it leaves S (bisection on the membership test) and,
   when every sampled point is inside S, a certificate
   (:func:`ramble.core.bounds.certify_torch_segment`) that the whole segment is;
4. ramble's path W_i -> pi(W_j) with the file's stored path settings and the
   run's own driver, next to the stored unaligned path;
5. all of it committed at once under ``/paths/<i>-<j>/align/<method>`` (docs/format.md).
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

import numpy as np
import torch
from torch import nn

from ramble.analysis.align.matching import Matching, activation_matching, apply_permutation, traced_with, unflatten, weight_matching
from ramble.analysis.align.spec import PermSpec, permutation_spec
from ramble.errors import ConfigError, RambleError
from ramble.models.registry import model_spec
from ramble.storage.io import Experiment, PathRecord, load, write_align

log = logging.getLogger("ramble")

METHODS = ("weights", "activations")
Measure = Callable[[torch.Tensor], Mapping[str, float]]

#: Logits of W_j and pi(W_j) (float64) may differ by this much times (1 + the largest |logit|): summation order only.
LOGIT_RTOL = 1e-9
#: Where the aligned line leaves S is located to this accuracy in t.
LEAVE_T_TOL = 1e-4


# ----------------------------------------------------------------- the file's network
@dataclass
class FileNetwork:
    """What alignment needs from a file: the module, its training problem, the solutions, test inputs and metrics, the run's training settings."""

    module: nn.Module
    problem: Any
    solutions: dict[int, torch.Tensor]
    measure: Optional[Measure]
    test_x: Optional[torch.Tensor]
    train_lr: float
    max_epochs: int
    device: str
    dtype: str


def network_of(e: Experiment, data_dir: Optional[str] = None, device: str = "auto") -> FileNetwork:
    """Rebuild the classifier of a file (LeNet5, generic torch); one-line errors for models that cannot be aligned (the TCM) and for missing data."""
    refusal = model_spec(e.model).align_refusal(e.path)
    if refusal is not None:
        raise RambleError(refusal)
    train_lr, max_epochs = float(e.config.get("train_lr", 0.1)), int(e.config.get("max_epochs", 2000))
    from ramble.analysis.curves import problem_from_file  # every model through its spec

    fp = problem_from_file(e, data_dir=data_dir, device=device)
    module = getattr(fp.problem, "model", None)
    if not isinstance(module, nn.Module):
        raise RambleError(f"{e.path}: model {e.model!r} gives no torch module to align")
    test_x = fp.test_x
    if test_x is None and e.data.get("test_inputs") is not None:
        test_x = torch.as_tensor(np.asarray(e.data["test_inputs"]))
    return FileNetwork(module, fp.problem, fp.solutions, fp.measure, test_x, train_lr, max_epochs, fp.device, fp.dtype)


# ----------------------------------------------------------------- steps
def match(method: str, module: nn.Module, spec: PermSpec, w_a: np.ndarray, w_b: np.ndarray, x: torch.Tensor, seed: int = 0) -> Matching:
    """W_b's units matched to W_a's by ``method`` ("weights" or "activations" on inputs ``x``)."""
    if method == "weights":
        return weight_matching(spec, w_a, w_b, seed=seed)
    if method == "activations":
        return activation_matching(module, spec, w_a, w_b, x.detach().cpu())
    raise ConfigError(f"--method {method!r} unknown: use one of {', '.join(METHODS)}")


def logits_difference(module: nn.Module, spec: PermSpec, w: np.ndarray, w_perm: np.ndarray, inputs: list[torch.Tensor], chunk: int = 1000) -> tuple[float, float]:
    """(largest |logits(w) - logits(w_perm)|, largest |logits(w)|) over every input, both networks in float64 on the CPU."""
    net, net_perm = traced_with(module, unflatten(w, spec)), traced_with(module, unflatten(w_perm, spec))
    diff = scale = 0.0
    with torch.no_grad():
        for x in inputs:
            for s in range(0, int(x.shape[0]), chunk):
                xb = x[s:s + chunk].detach().cpu().to(torch.float64)
                a, b = net(xb), net_perm(xb)
                diff = max(diff, float((a - b).abs().max()))
                scale = max(scale, float(a.abs().max()))
    return diff, scale


def leaves_at(contains: Callable[[torch.Tensor], bool], point: Callable[[float], torch.Tensor], t_in: float, t_out: float, tol: float = LEAVE_T_TOL) -> float:
    """Bisection between a t inside S and a t outside: the first t found outside, within ``tol`` of where the line leaves (from t_in's side)."""
    while t_out - t_in > tol:
        mid = 0.5 * (t_in + t_out)
        if contains(point(mid)):
            t_in = mid
        else:
            t_out = mid
    return t_out


def line_attrs(problem: Any, module: nn.Module, w_a: torch.Tensor, w_b: torch.Tensor, t: np.ndarray, train_error: np.ndarray, certify: bool) -> dict[str, Any]:
    """The aligned line held against S: sampled fraction outside, where it first leaves, and a certificate when every sample is inside."""
    from ramble.analysis.curves import line_point

    outside = train_error > 0
    out: dict[str, Any] = {"outside_fraction": float(np.mean(outside)), "max_train_error": float(np.max(train_error)), "points": int(len(t))}
    if outside.any():
        k = int(np.argmax(outside))
        out["membership"] = "outside S (a sampled point misclassifies a training sample)"
        out["inside_S"] = "no"
        out["leaves_at_t"] = leaves_at(problem.contains, lambda s: line_point(w_a, w_b, s), float(t[k - 1]), float(t[k])) if k > 0 else float(t[0])
        return out
    out["membership"] = f"inside S at all {len(t)} sampled points"
    out["inside_S"] = "sampled"
    if certify:
        from ramble.core.bounds import certify_torch_segment

        cert = certify_torch_segment(module, w_a, w_b, problem.x, problem.y)
        out.update(certified=bool(cert.certified), certificate_margin_bound=float(cert.margin_bound), certificate_pieces=int(cert.pieces), certificate_seconds=float(cert.seconds))
        if cert.certified:
            out["inside_S"] = "yes"
            out["membership"] = "inside S: certified for every t in [0, 1] (ramble.core.bounds)"
        else:
            out["membership"] += "; the certificate could not prove the segments between them"
    return out


def path_length(arclength: Optional[np.ndarray], weights: np.ndarray) -> tuple[float, str]:
    """(length of a path in weight space, how it was measured): the run's summed steps when stored, else the polyline through the kept weights."""
    if arclength is not None and len(arclength):
        return float(arclength[-1]), "stored (every iteration's step summed)"
    if len(weights) >= 2:
        return float(np.linalg.norm(np.diff(np.asarray(weights, dtype=np.float64), axis=0), axis=1).sum()), "polyline through the kept weight rows (a lower bound)"
    return float("nan"), "unknown"


def draw_path(e: Experiment, net: FileNetwork, w_a: torch.Tensor, w_b: torch.Tensor, p: PathRecord, progress: bool) -> Any:
    """ramble's path W_a -> W_b with the stored path's settings and the run's own pair driver."""
    from ramble.core.path import PathConfig
    from ramble.progress import PathProgress

    stored = json.loads(p.attrs.get("path_config", "{}"))
    known = set(PathConfig.__dataclass_fields__)
    cfg = PathConfig(**{k: v for k, v in stored.items() if k in known})
    bar = PathProgress(f"aligned path {p.name}", progress)
    try:
        return model_spec(e.model).connect(net.problem, w_a, w_b, cfg, measure=net.measure, train_lr=net.train_lr, max_epochs=net.max_epochs, progress=bar.callback)
    finally:
        bar.close()


def path_arrays(r: Any) -> dict[str, np.ndarray]:
    """The per-point arrays of a PathResult (and its kept weights) as stored under ``align/<method>/path``."""
    out = {"weights": r.weights, "iteration": r.iteration, "distance": r.distance, "train_loss": r.train_loss, "train_error": r.train_error}
    if r.weight_index is not None:
        out["weight_index"] = r.weight_index
    if getattr(r, "arclength", None) is not None:
        out["arclength"] = r.arclength
    for k, v in r.extra.items():
        out[k] = np.asarray(v)
    return out


# ----------------------------------------------------------------- one pair
@dataclass
class AlignOutcome:
    """What ``ramble align`` did for one pair (the file holds everything; :func:`summary_lines` reads it back)."""

    name: str
    method: str
    distance_before: float
    distance_after: float
    outside_fraction: float
    seconds: float


def align_pair(e: Experiment, net: FileNetwork, p: PathRecord, method: str, *, seed: int = 0, with_path: bool = True, certify: bool = True, progress: bool = False) -> AlignOutcome:
    """Align W_j to W_i for path ``p`` of ``e``, hold the result against S, store it (see the module doc)."""
    from ramble.analysis.curves import evaluate_curve, line_point

    started = time.perf_counter()
    if p.linear is None:
        raise RambleError(f"{e.path}: path {p.name} has no stored straight line to compare with (an incomplete run?)")
    for k in (p.source, p.target):
        if k not in net.solutions:
            raise RambleError(f"{e.path}: path {p.name} joins solutions {p.source} and {p.target}, but the file holds {sorted(net.solutions)}")
    t = np.asarray(p.linear.alpha, dtype=np.float64)
    if not np.allclose(t, np.linspace(0.0, 1.0, len(t)), rtol=0, atol=1e-12):
        raise RambleError(f"{e.path}: path {p.name}'s straight line is not on an even t grid; cannot compare on the same grid")
    x = net.problem.x
    spec = permutation_spec(net.module, x[:1].detach().cpu().to(next(net.module.parameters()).dtype))
    w_a = np.asarray(e.solutions[p.source], dtype=np.float64)
    w_b = np.asarray(e.solutions[p.target], dtype=np.float64)
    m = match(method, net.module, spec, w_a, w_b, x, seed)
    aligned = apply_permutation(w_b, spec, m.perms)
    inputs = [x] + ([net.test_x] if net.test_x is not None else [])
    diff, scale = logits_difference(net.module, spec, w_b, aligned, inputs)
    tol = LOGIT_RTOL * (1.0 + scale)
    if not diff <= tol:
        raise RambleError(f"{e.path}: the permuted W_{p.target} does not compute the same function (logits differ by {diff:.3g} > {tol:.3g}); nothing stored")
    ta = net.solutions[p.source]
    tb = torch.from_numpy(aligned).to(device=ta.device, dtype=ta.dtype)
    line = evaluate_curve(net.problem, lambda s: line_point(ta, tb, s), len(t), net.measure, progress=progress, desc=f"aligned line {p.name}")
    l_attrs = line_attrs(net.problem, net.module, ta, tb, line.t, line.train_error, certify and with_certifier())
    r = draw_path(e, net, ta, tb, p, progress) if with_path else None
    length_after = path_length(getattr(r, "arclength", None), r.weights) if r is not None else (float("nan"), "not drawn")
    length_before = path_length(getattr(p, "arclength", None), p.weights)
    n_inputs = sum(int(v.shape[0]) for v in inputs)
    attrs = {
        "from": int(p.source), "to": int(p.target), "seed": int(seed), "groups": json.dumps([[g.name, g.size] for g in spec.groups]),
        "sweeps": int(m.sweeps), "converged": bool(m.converged), "objective": float(m.objective),
        "distance_before": float(np.linalg.norm(w_b - w_a)), "distance_after": float(np.linalg.norm(aligned - w_a)),
        "logits_max_abs_diff": float(diff), "logits_tolerance": float(tol),
        "logits_checked_on": f"{int(x.shape[0])} training + {n_inputs - int(x.shape[0])} test inputs, float64",
        "moved_units": json.dumps({g.name: int(np.sum(m.perms[g.name] != np.arange(g.size))) for g in spec.groups}),
        "device": net.device, "dtype": net.dtype,
        "unaligned_line_outside_fraction": float(np.mean(np.asarray(p.linear.train_error) > 0)),
        "unaligned_line_max_train_error": float(np.max(p.linear.train_error)),
    }
    arrays = {"t": line.t, "train_loss": line.train_loss, "train_error": line.train_error, **line.extra}
    p_attrs: dict[str, Any] = {}
    if r is not None:
        p_attrs = {
            "status": r.status, "reason": r.reason, "iterations": int(r.iterations), "wall_time": float(r.wall_time),
            "waypoints": len(r.waypoints), "escape_scale": float(getattr(r, "escape_scale", 1.0)), "path_config": json.dumps(r.config, sort_keys=True),
            "length": length_after[0], "length_source": length_after[1],
            "unaligned_status": p.status, "unaligned_iterations": int(p.attrs.get("iterations", -1)), "unaligned_length": length_before[0], "unaligned_length_source": length_before[1],
        }
    attrs["wall_time"] = time.perf_counter() - started
    write_align(e.path, p.name, method, attrs, m.perms, aligned, arrays, l_attrs, path_arrays(r) if r is not None else None, p_attrs)
    return AlignOutcome(p.name, method, attrs["distance_before"], attrs["distance_after"], l_attrs["outside_fraction"], attrs["wall_time"])


def with_certifier() -> bool:
    """True when ramble.core.bounds (the segment certifier) is importable."""
    try:
        from ramble.core.bounds import certify_torch_segment  # noqa: F401
    except ImportError:
        return False
    return True


# ----------------------------------------------------------------- a file
def align_file(file: str | Path, pair: Optional[str] = None, method: str = "weights", *, data_dir: Optional[str] = None, device: str = "auto",
               seed: int = 0, with_path: bool = True, certify: bool = True, progress: bool = False) -> list[AlignOutcome]:
    """Align every pair of ``file`` (or ``pair``) by ``method``; each pair's results are committed as soon as they are ready."""
    if method not in METHODS:
        raise ConfigError(f"--method {method!r} unknown: use one of {', '.join(METHODS)}")
    e = load(file, weights=with_path)
    refusal = model_spec(e.model).align_refusal(file)
    if refusal is not None:
        raise RambleError(refusal)
    if e.status != "complete":
        raise RambleError(f"{file} has status {e.status!r}; align needs a complete run (ramble resume {file})")
    names = [q.name for q in e.iter_paths()] if pair is None else [pair]
    if not names:
        raise RambleError(f"{file} holds no paths to align")
    for name in names:
        if name not in e.paths:
            raise RambleError(f"{file} has no pair {name!r}; it has: {', '.join(sorted(e.paths)) or 'none'}")
    net = network_of(e, data_dir, device)
    if net.device == "cpu":
        from ramble.analysis.hessian import set_threads_to_free_cores

        set_threads_to_free_cores(max_threads=torch.get_num_threads())  # oversubscribed threads slow a shared CPU many times over
    out = []
    for name in names:
        o = align_pair(e, net, e.paths[name], method, seed=seed, with_path=with_path, certify=certify, progress=progress)
        log.info("align %s (%s): |W_i - W_j| %.4g -> %.4g; aligned line outside S at %.1f%% of points", name, method, o.distance_before, o.distance_after, 100 * o.outside_fraction)
        out.append(o)
    return out


def _pct(x: Any) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * float(x):.1f}%"


def _range(a: Any) -> str:
    return f"{_pct(float(np.min(a)))}-{_pct(float(np.max(a)))}" if a is not None and len(a) else "n/a"


def answer(p: PathRecord, method: str) -> str:
    """One sentence from the stored alignment of ``p``: is the aligned straight line inside S?"""
    a = p.align[method]
    line = a.line.attrs
    verdict = {"yes": "yes, certified for every t in [0, 1]", "no": "no", "sampled": "inside S at every sampled point, not certified between them"}[str(line.get("inside_S", "sampled"))]
    where = f", it leaves S at t = {float(line['leaves_at_t']):.4f}" if "leaves_at_t" in line else ""
    return (f"pair {p.name} ({method} matching): is the aligned straight line W_{p.source} -> pi(W_{p.target}) inside S? **{verdict}**{where}; "
            f"outside S at {_pct(line['outside_fraction'])} of {int(line['points'])} points, worst training error {_pct(line['max_train_error'])} "
            f"(unaligned line: {_pct(a.attrs.get('unaligned_line_outside_fraction'))}, worst {_pct(a.attrs.get('unaligned_line_max_train_error'))}); "
            f"|W_{p.source} - W_{p.target}| {float(a.attrs['distance_before']):.4g} -> {float(a.attrs['distance_after']):.4g} after alignment")


def detail_lines(p: PathRecord, method: str) -> list[str]:
    """The rest of the stored alignment of ``p``: groups, the function check, test error along the line, both ramble paths."""
    a = p.align[method]
    groups = ", ".join(f"{n} ({k})" for n, k in json.loads(a.attrs.get("groups", "[]")))
    lines = [f"groups {groups}; {a.attrs.get('sweeps')} sweep(s); logits of W_j and pi(W_j) differ by at most {float(a.attrs['logits_max_abs_diff']):.2g} "
             f"on {a.attrs.get('logits_checked_on')}; {float(a.attrs.get('wall_time', float('nan'))):.1f} s"]
    if "test_error" in a.line.extra:
        lines.append(f"test error along the aligned line {_range(a.line.extra['test_error'])} (unaligned {_range(p.linear.extra.get('test_error') if p.linear else None)})")
    if "certified" in a.line.attrs:
        lines.append(f"certificate: {'proved' if a.line.attrs['certified'] else 'not proved'} (margin bound {float(a.line.attrs['certificate_margin_bound']):.3g}, {a.line.attrs['certificate_pieces']} pieces, {float(a.line.attrs['certificate_seconds']):.1f} s)")
    q = a.path_attrs
    if q:
        lines.append(f"ramble path W_i -> pi(W_j): {q['status']} after {q['iterations']} iterations, length {float(q['length']):.4g}, test error {_range(a.path.get('test_error'))}")
        lines.append(f"ramble path W_i -> W_j (stored): {q['unaligned_status']} after {q['unaligned_iterations']} iterations, length {float(q['unaligned_length']):.4g}, test error {_range(p.extra.get('test_error'))}"
                     f" (lengths: {q['length_source']})")
    return lines


def summary_lines(file: str | Path, names: list[str], method: str) -> list[str]:
    """Per pair, read back from ``file``: the answer, then the details indented."""
    e = load(file, weights=False)
    out = []
    for name in names:
        p = e.paths[name]
        out.append(answer(p, method).replace("**", ""))
        out += ["  " + line for line in detail_lines(p, method)]
    return out
