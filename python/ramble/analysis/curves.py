"""Other methods' paths between two solutions, held against S: a trained Bezier curve and the straight line.

Garipov et al. (2018, "Loss Surfaces, Mode Connectivity, and Fast Ensembling
of DNNs") connect two solutions ``w_a``, ``w_b`` by the quadratic Bezier curve

    phi_theta(t) = (1 - t)^2 w_a + 2 t (1 - t) theta + t^2 w_b,    t in [0, 1]

with a free control point ``theta`` trained to minimise the expected
training loss along the curve, ``E_{t ~ U(0, 1)} L(phi_theta(t))``.  Its
gradient with respect to ``theta`` is ``E_t[2 t (1 - t) grad L(phi_theta(t))]``,
estimated each step from ``t_samples`` values of ``t`` drawn from a seeded
CPU ``torch.Generator`` and followed by SGD with momentum (PyTorch's
convention: ``v <- momentum v + g + weight_decay theta``, ``theta <- theta - lr v``).

``theta`` starts at the midpoint ``(w_a + w_b) / 2``, where the curve *is*
the straight line ``(1 - t) w_a + t w_b``, so training starts from the
straight line and the difference is what training bought.  The curve only
lowers an average loss; nothing in it asks every point to classify every
training sample, which is the question asked here: what fraction of the
curve lies outside S (training error > 0)?

Everything goes through the :class:`ramble.core.problem.PathProblem` methods
``loss_and_grad`` and ``evaluate``, so any model ramble supports works (the
TCM in PyTorch float64, LeNet5 in float32 on CPU or CUDA).  Weight vectors
are flat 1-D tensors of length P in the problem's dtype and device.

Results go into the experiment file under ``/paths/<i>-<j>/curves/``
(``bezier`` and ``linear``; docs/format.md, docs/curves.md).
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

import numpy as np
import torch

from ramble.core.problem import PathProblem
from ramble.errors import ConfigError, RambleError
from ramble.models.registry import model_spec
from ramble.progress import progress_bar
from ramble.storage.io import Experiment, load, update

log = logging.getLogger("ramble")

Measure = Callable[[torch.Tensor], Mapping[str, float]]
"""A weight vector (P,) -> extra metrics at it, e.g. ``{"test_loss": ..., "test_error": ...}``."""

CURVES = ("bezier", "linear")
"""Curve groups stored under ``/paths/<i>-<j>/curves/``."""


# ----------------------------------------------------------------- settings
@dataclass(frozen=True)
class BezierConfig:
    """How the Bezier curve is trained and evaluated.

    ``steps``: SGD steps on theta.  ``lr``, ``momentum``, ``weight_decay``:
    the SGD settings (``weight_decay`` is an L2 pull of theta toward 0, as in
    Garipov et al.'s training; 0 turns it off).  ``t_samples``: values of t
    per step (the gradient is their mean).  ``seed``: seeds the CPU generator
    the t values come from.  ``points``: evenly spaced t in [0, 1], both ends
    included, at which the trained curve and the straight line are
    evaluated.  The defaults were measured on a TCM at the paper's size and
    on MNIST-100 (docs/curves.md).
    """

    steps: int = 1000
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 0.0
    t_samples: int = 1
    seed: int = 0
    points: int = 61

    def __post_init__(self) -> None:
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1:
            raise ConfigError(f"--steps={self.steps!r} is out of range: must be an integer >= 1")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ConfigError(f"--lr={self.lr!r} is out of range: must be a finite number > 0")
        if not (isinstance(self.momentum, (int, float)) and 0 <= self.momentum < 1):
            raise ConfigError(f"--momentum={self.momentum!r} is out of range: must be in [0, 1)")
        if not (isinstance(self.weight_decay, (int, float)) and math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ConfigError(f"--weight-decay={self.weight_decay!r} is out of range: must be a finite number >= 0")
        if isinstance(self.t_samples, bool) or not isinstance(self.t_samples, int) or self.t_samples < 1:
            raise ConfigError(f"--t-samples={self.t_samples!r} is out of range: must be an integer >= 1")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed < 2**63:
            raise ConfigError(f"--seed={self.seed!r} is out of range: must be an integer in [0, 2^63)")
        if isinstance(self.points, bool) or not isinstance(self.points, int) or self.points < 2:
            raise ConfigError(f"--points={self.points!r} is out of range: must be an integer >= 2 (both endpoints)")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ----------------------------------------------------------------- the curves
def bezier_point(w_a: torch.Tensor, theta: torch.Tensor, w_b: torch.Tensor, t: float) -> torch.Tensor:
    """phi_theta(t) = (1-t)^2 w_a + 2t(1-t) theta + t^2 w_b, shape (P,).

    At t = 0 and t = 1 the other coefficients are exactly 0, so the result is
    bit-for-bit ``w_a`` and ``w_b``.
    """
    t = float(t)
    return (1.0 - t) ** 2 * w_a + (2.0 * t * (1.0 - t)) * theta + t * t * w_b


def line_point(w_a: torch.Tensor, w_b: torch.Tensor, t: float) -> torch.Tensor:
    """(1-t) w_a + t w_b, shape (P,) (the paper's Eq. 2); exactly ``w_a``, ``w_b`` at t = 0, 1."""
    t = float(t)
    return (1.0 - t) * w_a + t * w_b


def bezier_objective(problem: PathProblem, w_a: torch.Tensor, theta: torch.Tensor, w_b: torch.Tensor, ts: torch.Tensor) -> tuple[float, torch.Tensor]:
    """Mean training loss over the curve points at ``ts`` and its gradient with respect to ``theta``.

    ``ts``: 1-D tensor of t values in [0, 1].  Returns (mean over t of
    L(phi(t)) in nats, gradient of that mean, shape (P,)): d phi(t) / d theta
    = 2t(1-t) I, so the gradient is the mean of 2t(1-t) grad L(phi(t)).
    """
    loss_sum = 0.0
    grad = torch.zeros_like(theta)
    for t in ts.tolist():
        loss, g = problem.loss_and_grad(bezier_point(w_a, theta, w_b, t))
        loss_sum += loss
        grad += (2.0 * t * (1.0 - t)) * g
    n = len(ts)
    return loss_sum / n, grad / n


@dataclass
class BezierResult:
    """A trained control point and how training went.

    ``theta``: (P,) tensor.  ``loss_history``: (steps,) float64, the
    stochastic objective (mean loss over that step's t values, nats) at each
    step, before its update.  ``seconds``: training wall time.
    """

    theta: torch.Tensor
    config: BezierConfig
    loss_history: np.ndarray
    seconds: float

    def history_summary(self, window: Optional[int] = None) -> dict[str, float]:
        """Mean objective over the first and the last ``window`` steps (default: a tenth of them, 1 to 100)."""
        h = self.loss_history
        k = window or max(1, min(100, len(h) // 10))
        return {"loss_first": float(np.mean(h[:k])), "loss_last": float(np.mean(h[-k:])), "loss_window": int(k)}


def train_bezier(problem: PathProblem, w_a: torch.Tensor, w_b: torch.Tensor, cfg: BezierConfig, *, progress: bool = False, desc: str = "bezier") -> BezierResult:
    """Train theta by SGD with momentum on E_t L(phi_theta(t)), from the midpoint; see the module doc.

    ``w_a``, ``w_b``: (P,) in the problem's dtype and device; not modified.
    The t values come from ``torch.Generator().manual_seed(cfg.seed)`` on the
    CPU, so a seed gives the same t sequence on every device.  Raises
    :class:`RambleError` if the objective stops being finite (lr too large).
    """
    start = time.perf_counter()
    theta = (0.5 * (w_a + w_b)).detach().clone()
    opt = torch.optim.SGD([theta], lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    gen = torch.Generator(device="cpu").manual_seed(cfg.seed)
    history = np.empty(cfg.steps, dtype=np.float64)
    bar = progress_bar(range(cfg.steps), desc=desc, disable=not progress, unit="step")
    for step in bar:
        ts = torch.rand(cfg.t_samples, generator=gen, dtype=torch.float64)
        loss, grad = bezier_objective(problem, w_a, theta, w_b, ts)
        if not math.isfinite(loss) or not bool(torch.isfinite(grad).all()):
            bar.close()
            raise RambleError(f"Bezier training diverged at step {step} (loss {loss}); lower --lr (now {cfg.lr:g})")
        history[step] = loss
        theta.grad = grad
        opt.step()
        if step % 50 == 0:
            bar.set_postfix(loss=f"{loss:.4g}")
    bar.close()
    return BezierResult(theta=theta.detach(), config=cfg, loss_history=history, seconds=time.perf_counter() - start)


# ----------------------------------------------------------------- evaluation
@dataclass
class CurveEvaluation:
    """A curve measured at evenly spaced t.

    ``t``, ``train_loss`` (mean training loss, nats), ``train_error``
    (fraction of training samples misclassified, in [0, 1]): shape (n,).
    ``extra``: what the measure callback returned, e.g. ``test_loss`` and
    ``test_error`` (n,).  ``seconds``: wall time of the evaluation.
    """

    t: np.ndarray
    train_loss: np.ndarray
    train_error: np.ndarray
    extra: dict[str, np.ndarray] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def outside_fraction(self) -> float:
        """Fraction of the evaluated t points outside S (training error > 0), in [0, 1]."""
        return outside_fraction(self.train_error)

    @property
    def max_train_error(self) -> float:
        """Largest training error over the evaluated points (fraction)."""
        return float(np.max(self.train_error))

    @property
    def expected_loss(self) -> float:
        """E_{t ~ U(0,1)} L(phi(t)) by the trapezoid rule on the evaluated points (nats)."""
        return expected_loss(self.t, self.train_loss)


def outside_fraction(train_error: np.ndarray) -> float:
    """Fraction of points whose training error is > 0 (outside S)."""
    e = np.asarray(train_error, dtype=float)
    return float(np.mean(e > 0)) if e.size else float("nan")


def expected_loss(t: np.ndarray, loss: np.ndarray) -> float:
    """Trapezoid estimate of the mean of ``loss`` over t in [t[0], t[-1]] (nats)."""
    t = np.asarray(t, dtype=float)
    y = np.asarray(loss, dtype=float)
    span = t[-1] - t[0]
    return float(np.sum(0.5 * (y[1:] + y[:-1]) * np.diff(t)) / span) if span > 0 else float(y.mean())


def evaluate_curve(problem: PathProblem, point: Callable[[float], torch.Tensor], points: int, measure: Optional[Measure] = None, *, progress: bool = False, desc: str = "evaluate") -> CurveEvaluation:
    """Training loss and error (and ``measure``'s metrics) at ``points`` evenly spaced t in [0, 1].

    ``point(t)`` returns the curve's weight vector (P,) at t.
    """
    start = time.perf_counter()
    t = np.linspace(0.0, 1.0, int(points))
    loss = np.empty(len(t))
    err = np.empty(len(t))
    extra: dict[str, list[float]] = {}
    for k, tk in enumerate(progress_bar(t, desc=desc, disable=not progress)):
        w = point(float(tk))
        ev = problem.evaluate(w)
        loss[k], err[k] = ev.loss, ev.error
        if measure is not None:
            for name, v in measure(w).items():
                extra.setdefault(name, []).append(float(v))
    return CurveEvaluation(t=t, train_loss=loss, train_error=err, extra={k: np.asarray(v) for k, v in extra.items()}, seconds=time.perf_counter() - start)


def evaluate_bezier(problem: PathProblem, w_a: torch.Tensor, theta: torch.Tensor, w_b: torch.Tensor, points: int, measure: Optional[Measure] = None, **kw: Any) -> CurveEvaluation:
    """:func:`evaluate_curve` on the Bezier curve with control point ``theta``."""
    return evaluate_curve(problem, lambda t: bezier_point(w_a, theta, w_b, t), points, measure, **kw)


def evaluate_line(problem: PathProblem, w_a: torch.Tensor, w_b: torch.Tensor, points: int, measure: Optional[Measure] = None, **kw: Any) -> CurveEvaluation:
    """:func:`evaluate_curve` on the straight line w_a -> w_b."""
    return evaluate_curve(problem, lambda t: line_point(w_a, w_b, t), points, measure, **kw)


# ----------------------------------------------------------------- from a file


@dataclass
class FileProblem:
    """A file's training problem rebuilt from the file, with its solutions as tensors.

    ``measure`` gives test metrics (LeNet5: the file's test images), or is
    None with ``no_test`` saying why.  ``test_x``: the test inputs when the
    file's model has them outside ``e.data`` (LeNet5: MNIST's test images).
    """

    problem: Any
    solutions: dict[int, torch.Tensor]
    measure: Optional[Measure]
    no_test: str = ""
    device: str = "cpu"
    dtype: str = "float64"
    test_x: Optional[torch.Tensor] = None


def problem_from_file(e: Experiment, data_dir: Optional[str] = None, device: str = "auto") -> FileProblem:
    """Rebuild the training problem of experiment ``e`` by its model's spec (TCM from ``/data/train``, LeNet5 from the MNIST files it refers to).

    LeNet5 needs the same MNIST files as the run (checked by sha256); the
    test set is the run's test slice.  Raises :class:`DataError` when they
    are missing or differ.
    """
    return model_spec(e.model).file_problem(e, data_dir, device)


def _curve_arrays(ev: CurveEvaluation) -> dict[str, np.ndarray]:
    return {"t": ev.t, "train_loss": ev.train_loss, "train_error": ev.train_error, **ev.extra}


def _curve_attrs(ev: CurveEvaluation) -> dict[str, Any]:
    return {
        "outside_fraction": ev.outside_fraction,
        "max_train_error": ev.max_train_error,
        "expected_loss": ev.expected_loss,
        "points": int(len(ev.t)),
        "eval_seconds": float(ev.seconds),
    }


def store_curves(path: str | Path, name: str, bezier: BezierResult, bez_eval: CurveEvaluation, line_eval: CurveEvaluation, info: Mapping[str, Any]) -> None:
    """Replace ``/paths/<name>/curves`` with the Bezier curve and the straight line (one all-or-nothing update).

    ``info``: attributes common to both (device, dtype, test note, ...).
    """
    with update(path) as f:
        g = f[f"paths/{name}"]
        if "curves" in g:
            del g["curves"]
        c = g.create_group("curves")
        for key, ev in (("bezier", bez_eval), ("linear", line_eval)):
            h = c.create_group(key)
            for k, v in _curve_arrays(ev).items():
                h.create_dataset(k, data=np.asarray(v, dtype=np.float64))
            for k, v in {**_curve_attrs(ev), **info}.items():
                h.attrs[k] = v
        b = c["bezier"]
        b.create_dataset("theta", data=bezier.theta.detach().cpu().numpy())
        b.create_dataset("loss_history", data=bezier.loss_history)
        b.attrs["kind"] = "quadratic Bezier curve (Garipov et al. 2018), control point trained on E_t L(phi(t))"
        b.attrs["config"] = json.dumps(bezier.config.to_dict(), sort_keys=True)
        for k, v in bezier.history_summary().items():
            b.attrs[k] = v
        b.attrs["train_seconds"] = float(bezier.seconds)
        b.attrs["wall_time"] = float(bezier.seconds + bez_eval.seconds)
        lin = c["linear"]
        lin.attrs["kind"] = "straight line (1-t) W_a + t W_b (Eq. 2), the Bezier curve's start (theta at the midpoint)"
        lin.attrs["wall_time"] = float(line_eval.seconds)


@dataclass
class CurvesOutcome:
    """What :func:`run_curves` did for one pair (for the command's summary)."""

    name: str
    bezier: CurveEvaluation
    line: CurveEvaluation
    path_outside: float
    history: dict[str, float]
    train_seconds: float
    seconds: float
    no_test: str = ""


def run_curves(file: str | Path, cfg: BezierConfig, pair: Optional[str] = None, data_dir: Optional[str] = None, device: str = "auto", progress: bool = False) -> list[CurvesOutcome]:
    """Train and evaluate the Bezier curve and the straight line for each path of ``file`` (or ``pair``); store them in the file.

    Only complete files are accepted.  Each pair's results are committed
    with :func:`ramble.storage.io.update` as soon as they are ready.
    """
    e = load(file, weights=False)
    if e.status != "complete":
        raise RambleError(f"{file} has status {e.status!r}; curves are computed on complete runs only")
    names = [q.name for q in e.iter_paths()] if pair is None else [pair]
    for name in names:
        if name not in e.paths:
            raise RambleError(f"{file} has no path {name!r}; it has: {', '.join(sorted(e.paths)) or 'none'}")
    if not names:
        raise RambleError(f"{file} holds no paths")
    fp = problem_from_file(e, data_dir=data_dir, device=device)
    if fp.device == "cpu":
        from ramble.analysis.hessian import set_threads_to_free_cores

        # oversubscribed threads on a shared CPU slow every step many times over (see ramble.analysis.spectra)
        set_threads_to_free_cores(max_threads=torch.get_num_threads())
    out: list[CurvesOutcome] = []
    for name in names:
        p = e.paths[name]
        if p.source not in fp.solutions or p.target not in fp.solutions:
            raise RambleError(f"{file}: path {name} joins solutions {p.source} and {p.target}, but the file holds {sorted(fp.solutions)}")
        w_a, w_b = fp.solutions[p.source], fp.solutions[p.target]
        start = time.perf_counter()
        res = train_bezier(fp.problem, w_a, w_b, cfg, progress=progress, desc=f"bezier {name}")
        bez = evaluate_bezier(fp.problem, w_a, res.theta, w_b, cfg.points, fp.measure, progress=progress, desc=f"bezier {name} eval")
        line = evaluate_line(fp.problem, w_a, w_b, cfg.points, fp.measure, progress=progress, desc=f"line {name} eval")
        info = {"from": int(p.source), "to": int(p.target), "device": fp.device, "dtype": fp.dtype, "has_test": fp.measure is not None, "no_test": fp.no_test}
        store_curves(file, name, res, bez, line, info)
        hist = res.history_summary()
        outcome = CurvesOutcome(name, bez, line, outside_fraction(p.train_error), hist, res.seconds, time.perf_counter() - start, fp.no_test)
        if not bez.expected_loss < line.expected_loss:
            log.warning("curves %s: the trained curve's expected loss %.4g is not below the straight line's %.4g; lower --lr (now %g) or raise --steps (now %d)",
                        name, bez.expected_loss, line.expected_loss, cfg.lr, cfg.steps)
        log.info(
            "curves %s: Bezier %d steps in %.1f s, expected loss %.4g (line %.4g); outside S: Bezier %.3f, line %.3f, ramble path %.3f",
            name, cfg.steps, res.seconds, bez.expected_loss, line.expected_loss, bez.outside_fraction, line.outside_fraction, outcome.path_outside,
        )
        out.append(outcome)
    return out


def summary_lines(outcomes: list[CurvesOutcome]) -> list[str]:
    """One block per pair: the fraction of each curve outside S and its worst training error."""
    lines = []
    for o in outcomes:
        lines.append(f"path {o.name}: Bezier trained in {o.train_seconds:.1f} s ({o.seconds:.1f} s with both evaluations); expected training loss {o.line.expected_loss:.4g} (straight line) -> {o.bezier.expected_loss:.4g} (Bezier)")
        for label, ev in (("Bezier curve", o.bezier), ("straight line", o.line)):
            test = f", test error {100 * ev.extra['test_error'].min():.2f}-{100 * ev.extra['test_error'].max():.2f}%" if "test_error" in ev.extra else ""
            lines.append(f"  {label:<14} outside S at {100 * ev.outside_fraction:5.1f}% of {len(ev.t)} points, worst training error {100 * ev.max_train_error:.2f}%{test}")
        lines.append(f"  {'ramble path':<14} outside S at {100 * o.path_outside:5.1f}% of its recorded points")
        if o.no_test:
            lines.append(f"  ({o.no_test})")
    return lines
