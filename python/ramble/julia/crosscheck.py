"""Julia vs Python: the same TCM computations in both languages, compared.

:func:`crosscheck` builds one training set (:func:`ramble.models.patterns.random_patterns`)
and hands it to both backends, :class:`ramble.models.tcm_backends.PythonTCM` (PyTorch
float64, autograd derivatives) and :class:`ramble.julia.backend.JuliaTCM`
(analytic derivatives), then compares

1. loss, gradient and margins at several weight vectors (Gaussian draws at the
   training scale, one at 4x that scale with many saturated units, and the two
   trained solutions);
2. the exact Hessian at those points;
3. training: both backends run :func:`ramble.models.tcm_training.solve_with_restarts` for
   two solutions from the same seeds (attempts, GD epochs, kicks, polishing
   epochs must agree; weights to rounding);
4. the path between the Python backend's two solutions, drawn by
   :func:`ramble.models.tcm_backends.connect` (one :meth:`find_path` per leg, waypoints
   trained by the backend's ``gd_solve`` when a leg stalls) with the same
   :class:`ramble.core.path.PathConfig`: the same elastic decision and refused-GD
   count at every iteration (else the first iteration where they diverge),
   the same status, reason and waypoints, and the recorded weights to
   rounding; the same number of certified segments and certifier pieces;
5. the exact segment certificates (:meth:`ramble.models.tcm.TCMProblem.certify_segment`
   and Julia's ``certify_segment``) on segments between the evaluation points,
   the straight line between the two solutions, and short steps from each
   solution: the same verdict and pieces on every segment, margin bounds to
   rounding.

The tolerances are the module constants below; ``CrossCheckReport.ok`` is
False as soon as one is exceeded.  The defaults run in a few seconds.

``perturb`` is a self-test of the checker: the Julia backend then receives
every weight vector multiplied by ``1 + perturb``, so a value far above the
tolerances (e.g. 1e-6) must make the report fail.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np

from ramble.core.path import PathConfig, PathResult
from ramble.errors import ConfigError, RambleError
from ramble.models.patterns import random_patterns
from ramble.models.tcm import check_shape, gaussian_init
from ramble.models.tcm_backends import PythonTCM, connect
from ramble.models.tcm_training import Solution, TrainConfig, attempt_seed, solve_with_restarts

#: Loss: |L_julia - L_python| / |L_python| (both in float64; ~1e-16 expected).
LOSS_RTOL = 1e-12
#: Gradient: max |g_julia - g_python| / max |g_python|.
GRAD_RTOL = 1e-12
#: Margins: max |m_julia - m_python| / max(1, max |m_python|); their signs must agree exactly.
MARGIN_RTOL = 1e-12
#: Hessian: max |H_julia - H_python| / max |H_python| (autograd vs analytic).
HESSIAN_RTOL = 1e-10
#: Trained solutions: max |w_julia - w_python| / max |w_python| after thousands of GD
#: steps, which accumulate rounding differences.
SOLVE_RTOL = 1e-8
#: Path: max |w_julia - w_python| over the common recorded points, relative to |W_a - W_b|,
#: may reach max(PATH_RTOL, PATH_NOISE_FACTOR * noise), where noise is the same measure between
#: two Python runs whose W_a differs in one bit.  The path amplifies rounding (Eq. 4's
#: rescaling is ill-conditioned near W_b, where its quadratic's two roots merge), so the
#: two languages legitimately drift apart by about as much as one bit of W_a makes Python
#: drift from itself.
PATH_RTOL = 1e-6
PATH_NOISE_FACTOR = 100.0

#: Default problem size of the check: small enough for a few seconds on one core.
DEFAULT_SIZE = dict(n_inputs=30, n_hidden=3, n_patterns=36)


@dataclass
class Row:
    """One line of the report: what was compared, the measured value, the bound, the verdict."""

    name: str
    value: str
    tolerance: str
    ok: bool


@dataclass
class CrossCheckReport:
    """Outcome of :func:`crosscheck`; :meth:`format` renders it as a table.

    Relative differences are NaN when the comparison could not run (see
    ``errors``).  ``path_first_divergence`` is the first iteration whose
    elastic decision or refused-GD count differs (None if none does, over the
    iterations both runs made); ``path_weight_rel`` compares the recorded
    points both paths have (the first ``path_common_points``).
    """

    seed: int
    n_inputs: int
    n_hidden: int
    n_patterns: int
    perturb: float
    loss_rel: float = math.nan
    grad_rel: float = math.nan
    margin_rel: float = math.nan
    margin_sign_mismatches: int = -1
    hessian_rel: float = math.nan
    n_points: int = 0
    solve_python: list[dict] = field(default_factory=list)
    solve_julia: list[dict] = field(default_factory=list)
    solve_weight_rel: float = math.nan
    path_status: tuple[str, str] = ("", "")
    path_reason: tuple[str, str] = ("", "")
    path_iterations: tuple[int, int] = (-1, -1)
    path_waypoints: tuple[list, list] = ([], [])
    path_first_divergence: Optional[int] = None
    path_weight_rel: float = math.nan
    path_noise_rel: float = math.nan
    path_common_points: int = 0
    path_certified: tuple[int, int] = (-1, -1)
    path_cert_pieces: tuple[int, int] = (-1, -1)
    cert_segments: int = 0
    cert_verdict_mismatches: int = -1
    cert_pieces_mismatches: int = -1
    cert_bound_rel: float = math.nan
    cert_certified: int = 0
    seconds: dict[str, float] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    rows: list[Row] = field(default_factory=list)
    ok: bool = False

    def format(self) -> str:
        """A readable table, one row per comparison, and the verdict."""
        head = (
            f"ramble cross-check, Julia vs Python TCM: seed {self.seed}, N={self.n_inputs} K={self.n_hidden} "
            f"M={self.n_patterns}" + (f", Julia weights perturbed by {self.perturb:g}" if self.perturb else "")
        )
        w0 = max([len("comparison")] + [len(r.name) for r in self.rows])
        w1 = max([len("value")] + [len(r.value) for r in self.rows])
        w2 = max([len("tolerance")] + [len(r.tolerance) for r in self.rows])
        lines = [head, "", f"{'comparison':<{w0}}  {'value':<{w1}}  {'tolerance':<{w2}}  ok"]
        lines.append("-" * (w0 + w1 + w2 + 8))
        for r in self.rows:
            lines.append(f"{r.name:<{w0}}  {r.value:<{w1}}  {r.tolerance:<{w2}}  {'yes' if r.ok else 'NO'}")
        for e in self.errors:
            lines.append(f"error: {e}")
        for n in self.notes:
            lines.append(f"note: {n}")
        if self.seconds:
            lines.append("")
            lines.append("path wall time: " + ", ".join(f"{k} {v:.3f} s" for k, v in self.seconds.items())
                         + " (Julia's includes compiling its code on first use)")
        lines.append("")
        lines.append("verdict: " + ("the backends agree" if self.ok else "the backends DISAGREE"))
        return "\n".join(lines)


def _rel(a: np.ndarray, b: np.ndarray, floor: float = 0.0) -> float:
    """max |a - b| / max(|b|, floor)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        return math.inf
    scale = max(float(np.max(np.abs(b))) if b.size else 0.0, floor)
    diff = float(np.max(np.abs(a - b))) if a.size else 0.0
    if scale == 0.0:
        return 0.0 if diff == 0.0 else math.inf
    return diff / scale


def _fmt(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{x:.2e}"


def first_divergence(a: PathResult, b: PathResult) -> Optional[int]:
    """First iteration where the elastic decision or the refused-GD count differ (None if none does).

    When one run stopped earlier and the common iterations agree, the first
    iteration only one of them made is the divergence.
    """
    n = min(len(a.decisions), len(b.decisions))
    diff = np.nonzero((a.decisions[:n] != b.decisions[:n]) | (a.gd_refused[:n] != b.gd_refused[:n]))[0]
    if len(diff):
        return int(diff[0])
    if len(a.decisions) != len(b.decisions):
        return n
    return None


def _solution_dict(s: Solution) -> dict:
    return {"attempts": s.attempts, "epochs": s.epochs, "kicks": s.kicks, "polish_epochs": s.polish_epochs}


def crosscheck(
    seed: int = 0,
    n_inputs: int = DEFAULT_SIZE["n_inputs"],
    n_hidden: int = DEFAULT_SIZE["n_hidden"],
    n_patterns: int = DEFAULT_SIZE["n_patterns"],
    train_cfg: Optional[TrainConfig] = None,
    path_cfg: Optional[PathConfig] = None,
    n_points: int = 3,
    perturb: float = 0.0,
    julia: Optional[Any] = None,
    log: Optional[Callable[[str], None]] = None,
) -> CrossCheckReport:
    """Run the Julia and Python TCM backends on the same data and weights and compare them.

    ``seed`` draws the data (``random_patterns(n_inputs, n_patterns, seed)``),
    the ``n_points`` random weight vectors and, through
    :func:`ramble.models.tcm_training.attempt_seed`, the training starts.  ``train_cfg``
    and ``path_cfg`` default to :class:`TrainConfig` and :class:`PathConfig`
    defaults.  ``julia`` replaces the Julia backend (anything with the
    ``TCMBackend`` methods; for tests).  ``log`` receives one line per stage.
    Starts Julia if needed (JuliaError if it cannot).
    """
    check_shape(n_inputs, n_hidden)
    if seed < 0:
        raise ConfigError(f"--seed must be >= 0, got {seed}")
    tcfg = train_cfg or TrainConfig()
    pcfg = path_cfg or PathConfig()
    say = log or (lambda _msg: None)
    rep = CrossCheckReport(seed=seed, n_inputs=n_inputs, n_hidden=n_hidden, n_patterns=n_patterns, perturb=perturb)
    patterns = random_patterns(n_inputs, n_patterns, seed)
    py = PythonTCM(patterns, n_hidden)
    if julia is None:
        from ramble.julia.backend import JuliaTCM

        julia = JuliaTCM(patterns, n_hidden)
    pair = _Pair(py, julia, perturb)
    scale = tcfg.init_scale / math.sqrt(n_inputs // n_hidden)
    init = lambda s: gaussian_init(n_inputs, scale, s)  # noqa: E731

    # 3. training first: its solutions are also evaluation points
    say("training two solutions with each backend")
    solved = _compare_training(pair, init, seed, tcfg, rep)
    points = _evaluation_points(init, seed, n_points, solved)
    rep.n_points = len(points)
    say(f"comparing loss, gradient, margins and Hessian at {len(points)} weight vectors")
    _compare_points(pair, points, rep)
    segments = _segments(points, solved)
    say(f"comparing exact certificates on {len(segments)} segments")
    _compare_certificates(pair, segments, rep)
    if len(solved) == 2:
        say(f"drawing the path with each backend ({pcfg.variant} variant)")
        _compare_paths(pair, solved[0].w, solved[1].w, pcfg, tcfg, rep)
    rep.rows.extend(_verdict_rows(rep))
    rep.ok = all(r.ok for r in rep.rows) and not rep.errors
    return rep


@dataclass
class _Pair:
    """The two backends under comparison; Julia sees every weight vector times ``1 + perturb``."""

    py: Any
    jl: Any
    perturb: float

    def to_jl(self, w: np.ndarray) -> np.ndarray:
        """``w`` as handed to the Julia backend (perturbed only when ``perturb`` is non-zero)."""
        return w * (1.0 + self.perturb) if self.perturb else w


def _train_two(name: str, solve: Callable, init: Callable, seed: int, tcfg: TrainConfig, rep: CrossCheckReport) -> list[Solution]:
    """Solutions 0 and 1 of one backend; a training error is recorded in ``rep.errors`` and ends the list early."""
    out: list[Solution] = []
    for idx in range(2):
        try:
            out.append(solve_with_restarts(solve, init, seed, idx, tcfg))
        except RambleError as e:
            rep.errors.append(f"{name} training, solution {idx}: {e}")
            break
    return out


def _compare_training(pair: _Pair, init: Callable, seed: int, tcfg: TrainConfig, rep: CrossCheckReport) -> list[Solution]:
    """Train two solutions with each backend from the same seeds; fill ``rep.solve_*``; return Python's solutions."""
    py, jl = pair.py, pair.jl
    sols: dict[str, list[Solution]] = {}
    for name, b in (("python", py), ("julia", jl)):
        solve = (lambda w0, b=b: b.gd_solve(w0, tcfg)) if b is py else (lambda w0, b=b: b.gd_solve(pair.to_jl(w0), tcfg))
        sols[name] = _train_two(name, solve, init, seed, tcfg, rep)
    rep.solve_python = [_solution_dict(s) for s in sols["python"]]
    rep.solve_julia = [_solution_dict(s) for s in sols["julia"]]
    if len(sols["python"]) == len(sols["julia"]) and sols["python"]:
        rep.solve_weight_rel = max(_rel(j.w, p.w) for p, j in zip(sols["python"], sols["julia"]))
    if (not _same_training(rep) or not rep.solve_weight_rel <= SOLVE_RTOL) and any(
        d["kicks"] for d in rep.solve_python + rep.solve_julia
    ):
        rep.notes.append(
            "training used least-action kicks and the backends parted; a kick puts a hidden field at 0.5 sigma, "
            "off htanh's kinks, so this should not happen: report it"
        )
    return sols["python"]


def _same_training(rep: CrossCheckReport) -> bool:
    """Both backends trained two solutions with the same attempts, epochs, kicks and polishing epochs."""
    return len(rep.solve_python) == 2 and rep.solve_python == rep.solve_julia


def _evaluation_points(init: Callable, seed: int, n_points: int, solved: list[Solution]) -> list[np.ndarray]:
    """``n_points`` Gaussian draws at the training scale, one at 4x that scale (many saturated units), the trained solutions."""
    points = [init(attempt_seed(seed, 1000, i)) for i in range(n_points)]
    points.append(4.0 * init(attempt_seed(seed, 1000, n_points)))
    return points + [s.w for s in solved]


def _compare_points(pair: _Pair, points: list[np.ndarray], rep: CrossCheckReport) -> None:
    """Loss, gradient, margins (and their signs) and the exact Hessian at every point; the worst of each into ``rep``."""
    py, jl, to_jl = pair.py, pair.jl, pair.to_jl
    lr, gr, mr, hr, signs = [], [], [], [], 0
    for w in points:
        lp, gp = py.loss_and_grad(w)
        lj, gj = jl.loss_and_grad(to_jl(w))
        lr.append(abs(lj - lp) / abs(lp) if lp != 0 else abs(lj))
        gr.append(_rel(gj, gp))
        mp, mj = py.margins(w), jl.margins(to_jl(w))
        mr.append(_rel(mj, mp, floor=1.0))
        signs += int(np.sum((mp > 0) != (mj > 0)))
        hr.append(_rel(jl.hessian(to_jl(w)), py.hessian(w)))
    rep.loss_rel, rep.grad_rel, rep.margin_rel, rep.hessian_rel = max(lr), max(gr), max(mr), max(hr)
    rep.margin_sign_mismatches = signs


def _segments(points: list[np.ndarray], solved: list[Solution]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Segments to certify: consecutive points, and with two solutions their straight line and short steps from each."""
    segments = list(zip(points[:-1], points[1:]))
    if len(solved) == 2:
        a, b = solved[0].w, solved[1].w
        segments.append((a, b))
        segments += [(s, s + 0.1 * (q - s)) for s in (a, b) for q in points[:3]]
    return segments


def _compare_certificates(pair: _Pair, segments: list[tuple[np.ndarray, np.ndarray]], rep: CrossCheckReport) -> None:
    """Exact segment certificates of both backends: verdict and piece mismatches, worst margin-bound difference."""
    verdicts, pieces, bounds = 0, 0, []
    for w0, w1 in segments:
        cp = pair.py.certify_segment(w0, w1)
        cj = pair.jl.certify_segment(pair.to_jl(w0), pair.to_jl(w1))
        verdicts += int(cp.certified != cj.certified)
        pieces += int(cp.pieces != cj.pieces)
        bounds.append(abs(cj.margin_bound - cp.margin_bound) / max(1.0, abs(cp.margin_bound)))
        rep.cert_certified += int(cp.certified)
    rep.cert_segments, rep.cert_verdict_mismatches, rep.cert_pieces_mismatches = len(segments), verdicts, pieces
    rep.cert_bound_rel = max(bounds)


def _compare_paths(pair: _Pair, w_a: np.ndarray, w_b: np.ndarray, pcfg: PathConfig, tcfg: TrainConfig, rep: CrossCheckReport) -> None:
    """Draw the path W_a -> W_b with each backend (and Python's once more from W_a +1 bit, the noise floor); fill ``rep.path_*``."""
    py = pair.py
    t = time.perf_counter()
    rp = connect(py, w_a, w_b, pcfg, tcfg)
    rep.seconds["python"] = time.perf_counter() - t
    nudged = w_a.copy()
    nudged[0] = np.nextafter(nudged[0], np.inf)  # one bit: the path's own rounding sensitivity
    rn = connect(py, nudged, w_b, pcfg, tcfg)
    rep.path_noise_rel = _path_diff(rp, rn, w_a, w_b)
    t = time.perf_counter()
    try:
        rj = connect(pair.jl, pair.to_jl(w_a), pair.to_jl(w_b), pcfg, tcfg)
    except RambleError as e:
        rep.errors.append(f"julia path: {e}")
        rj = None
    rep.seconds["julia"] = time.perf_counter() - t
    if rj is not None:
        _record_paths(rp, rj, w_a, w_b, pcfg, rep)


def _record_paths(rp: PathResult, rj: PathResult, w_a: np.ndarray, w_b: np.ndarray, pcfg: PathConfig, rep: CrossCheckReport) -> None:
    """Both paths' outcomes side by side (python, julia), their first divergence and weight difference."""
    rep.path_status = (rp.status, rj.status)
    rep.path_reason = (rp.reason, rj.reason)
    rep.path_iterations = (rp.iterations, rj.iterations)
    rep.path_waypoints = (list(rp.waypoints), list(rj.waypoints))
    rep.path_first_divergence = first_divergence(rp, rj)
    rep.path_common_points = min(len(rp.weights), len(rj.weights))
    rep.path_weight_rel = _path_diff(rp, rj, w_a, w_b)
    rep.path_certified = (rp.segments_certified, rj.segments_certified)
    rep.path_cert_pieces = (rp.cert_pieces, rj.cert_pieces)
    note = _arrival_note(rp, rj, pcfg)
    if note:
        rep.notes.append(note)


def _verdict_rows(rep: CrossCheckReport) -> list[Row]:
    """The report's rows, in order: pointwise values, certificates, training, the path."""
    return [*_pointwise_rows(rep), *_certificate_rows(rep), *_training_rows(rep), *_path_rows(rep)]


def _pointwise_rows(rep: CrossCheckReport) -> list[Row]:
    """Loss, gradient, margins, margin signs, Hessian."""
    return [
        Row(f"loss ({rep.n_points} points)", _fmt(rep.loss_rel), f"{LOSS_RTOL:.0e} rel", rep.loss_rel <= LOSS_RTOL),
        Row("gradient", _fmt(rep.grad_rel), f"{GRAD_RTOL:.0e} rel", rep.grad_rel <= GRAD_RTOL),
        Row("margins", _fmt(rep.margin_rel), f"{MARGIN_RTOL:.0e} rel", rep.margin_rel <= MARGIN_RTOL),
        Row("margin signs differing", str(rep.margin_sign_mismatches), "0", rep.margin_sign_mismatches == 0),
        Row("Hessian", _fmt(rep.hessian_rel), f"{HESSIAN_RTOL:.0e} rel", rep.hessian_rel <= HESSIAN_RTOL),
    ]


def _certificate_rows(rep: CrossCheckReport) -> list[Row]:
    """Certificate verdicts and pieces, certified margin bounds."""
    return [
        Row(f"certificates differing ({rep.cert_segments} segments, {rep.cert_certified} certified)",
            f"{rep.cert_verdict_mismatches} verdicts, {rep.cert_pieces_mismatches} pieces", "0",
            rep.cert_verdict_mismatches == 0 and rep.cert_pieces_mismatches == 0),
        Row("certified margin bounds", _fmt(rep.cert_bound_rel), f"{MARGIN_RTOL:.0e} rel", rep.cert_bound_rel <= MARGIN_RTOL),
    ]


def _training_desc(solutions: list[dict]) -> str:
    """One backend's training effort, solution by solution ("-" for none)."""
    return "; ".join(f"{d['attempts']} att, {d['epochs']} ep, {d['kicks']} kicks, {d['polish_epochs']} polish" for d in solutions) or "-"


def _training_rows(rep: CrossCheckReport) -> list[Row]:
    """Training effort of each backend, trained weights."""
    same = _same_training(rep)
    return [
        Row("training (python)", _training_desc(rep.solve_python), "same as julia", same),
        Row("training (julia)", _training_desc(rep.solve_julia), "same as python", same),
        Row("trained weights", _fmt(rep.solve_weight_rel), f"{SOLVE_RTOL:.0e} rel", rep.solve_weight_rel <= SOLVE_RTOL),
    ]


def _path_rows(rep: CrossCheckReport) -> list[Row]:
    """Path status, iterations, certified segments, waypoints, decisions, rounding noise and weights."""
    it_py, it_jl = rep.path_iterations
    path_ran = it_jl >= 0
    cs_py, cs_jl = rep.path_certified
    pc_py, pc_jl = rep.path_cert_pieces
    wp_py, wp_jl = rep.path_waypoints
    div = rep.path_first_divergence
    noise = rep.path_noise_rel if not math.isnan(rep.path_noise_rel) else 0.0
    path_tol = max(PATH_RTOL, PATH_NOISE_FACTOR * noise)
    return [
        Row("path status (python / julia)", f"{rep.path_status[0] or '-'} / {rep.path_status[1] or '-'}", "equal",
            path_ran and rep.path_status[0] == rep.path_status[1] and rep.path_reason[0] == rep.path_reason[1]),
        Row("path iterations (python / julia)", f"{it_py} / {it_jl}", "equal", path_ran and it_py == it_jl),
        Row("path segments certified, pieces (python / julia)", f"{cs_py}, {pc_py} / {cs_jl}, {pc_jl}", "equal",
            path_ran and rep.path_certified[0] == rep.path_certified[1] and pc_py == pc_jl),
        Row("path waypoints at (python / julia)", f"{wp_py or '-'} / {wp_jl or '-'}", "equal", path_ran and wp_py == wp_jl),
        Row("path decisions, first divergence", "none" if div is None else f"iteration {div}", "none", path_ran and div is None),
        Row("path rounding noise (python, W_a +1 bit)", _fmt(rep.path_noise_rel), "(sets the next bound)", True),
        Row(f"path weights ({rep.path_common_points} common points)", _fmt(rep.path_weight_rel),
            f"{path_tol:.1e} of |Wa-Wb|", rep.path_weight_rel <= path_tol),
    ]


def _arrival_note(rp: PathResult, rj: PathResult, cfg: PathConfig) -> str:
    """Explain a divergence that is only the arrival test straddling its tolerance, else ""."""
    if rp.iterations == rj.iterations or not (rp.complete or rj.complete):
        return ""
    div = first_divergence(rp, rj)
    short = min(rp.iterations, rj.iterations)
    if div != short:
        return ""
    k = short - 1  # the last iteration the shorter run made

    def rel_at(r: PathResult) -> float:
        hit = np.nonzero(r.iteration == k)[0]
        return 1.0 - float(r.distance[hit[0]]) if len(hit) else math.nan

    rel_p, rel_j = rel_at(rp), rel_at(rj)
    return (
        f"the decisions agree until one run arrives: at iteration {k} |w - W_b| / |W_a - W_b| is "
        f"{rel_p:.6g} (python) and {rel_j:.6g} (julia) against the arrival tolerance {cfg.tol:g}; "
        "the runs drifted apart by rounding (Eq. 4's rescaling amplifies it near W_b) and straddle the threshold"
    )


def _path_diff(r1: PathResult, r2: PathResult, w_a: np.ndarray, w_b: np.ndarray) -> float:
    """max |w1 - w2| over the recorded points both paths have, relative to |W_a - W_b| (inf if they record differently)."""
    n = min(len(r1.weights), len(r2.weights))
    if n == 0:
        return math.nan
    if not np.array_equal(_kept_rows(r1)[:n], _kept_rows(r2)[:n]):
        return math.inf
    d_ab = float(np.linalg.norm(w_b - w_a)) or 1.0
    return float(np.max(np.linalg.norm(r1.weights[:n] - r2.weights[:n], axis=1))) / d_ab


def _kept_rows(r: PathResult) -> np.ndarray:
    """Row (recorded point) of each kept weight vector."""
    return np.arange(len(r.iteration)) if r.weight_index is None else np.asarray(r.weight_index)
