"""Algorithm 1 of the paper: a path from W_a to W_b that never leaves S.

Written once, generic over the model: everything model-specific goes through
a :class:`ramble.problem.PathProblem`.  The Julia module ``Ramble`` holds the
same algorithm, step for step, for the TCM (``julia/src/path.jl``); the
cross-check compares their decisions.

One iteration, from the survey network ``w`` (always inside S):

1. ``n_epochs`` gradient-descent epochs on the training set, each candidate
   normalised by Eq. 4.  A candidate outside S ends the run as failed in the
   ``paper`` variant (Algorithm 1, line 8: "eta, gamma not properly set"); in
   the ``repair`` variant the step first loses any part pointing away from W_b
   and is capped at the elastic step's length (:func:`forward_limited`), and a
   candidate outside S is refused, ending this iteration's epochs.
2. The elastic step of Eq. 3, ``w + gamma * (w_b - w)``, normalised by Eq. 4.
   Line 9 of the printed Algorithm 1 reads ``W_x - gamma (W_b - W_x)``, which
   moves *away* from W_b; we follow Eq. 3.  If the candidate is outside S it is
   refused (``paper``), or first repaired (``repair``, see :func:`repair`) and
   refused only if the repair fails.
3. Record ``w`` (every ``record_every`` iterations).

Arrival ("W_x = W_b"): once ``|w - w_b| <= tol * |w_a - w_b|`` the straight
segment from ``w`` to ``w_b`` is checked inside S at points spaced at most half
the median recent step; if it is, ``w_b`` is appended and the path is
complete.  A run that reaches ``max_iterations``, or whose best distance has
not improved by 1 % in ``patience`` iterations, ends as failed with the reason.

Invariant (tested): on a complete path every recorded point is inside S and
satisfies Eq. 4; the first is W_a and the last is W_b.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Literal, Optional, Sequence

import numpy as np
import torch

from .errors import ConfigError
from .problem import PathProblem

Variant = Literal["paper", "repair"]
VARIANTS: tuple[str, ...] = ("paper", "repair")

# Per-iteration decision codes stored in ``PathResult.decisions``.
ELASTIC_REFUSED = 0
ELASTIC_ACCEPTED = 1
ELASTIC_REPAIRED = 2


@dataclass(frozen=True)
class PathConfig:
    """Settings of the path algorithm.  Distances are Euclidean in weight space.

    ``gamma``: elastic constant of Eq. 3, in (0, 1].  ``n_epochs``: GD epochs
    per iteration.  ``lr``: learning rate of those epochs (>= 0; 0 disables
    them).  ``margin_target``: the repair lifts every sample whose margin is
    below it up to it (model margin units).  ``repair_steps``: projection
    rounds per refused elastic step.  ``tol``: arrival radius as a fraction of
    |W_a - W_b|.  ``record_every``: iterations between recorded points.
    """

    variant: Variant = "repair"
    gamma: float = 0.01
    n_epochs: int = 1
    lr: float = 0.01
    margin_target: float = 0.1
    repair_steps: int = 10
    tol: float = 1e-3
    max_iterations: int = 20_000
    patience: int = 3_000
    record_every: int = 1
    max_segment_checks: int = 10_000

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ConfigError(f"path variant must be one of {', '.join(VARIANTS)}, got {self.variant!r}")
        if not (0.0 < self.gamma <= 1.0):
            raise ConfigError(f"gamma must be in (0, 1], got {self.gamma}")
        if self.n_epochs < 0:
            raise ConfigError(f"N_epochs must be >= 0, got {self.n_epochs}")
        if not (self.lr >= 0.0) or math.isinf(self.lr):
            raise ConfigError(f"path learning rate must be a finite number >= 0, got {self.lr}")
        if not (self.margin_target > 0.0):
            raise ConfigError(f"margin target must be > 0, got {self.margin_target}")
        if self.repair_steps < 0:
            raise ConfigError(f"repair steps must be >= 0, got {self.repair_steps}")
        if not (0.0 < self.tol < 1.0):
            raise ConfigError(f"arrival tolerance must be in (0, 1), got {self.tol}")
        if self.max_iterations < 1:
            raise ConfigError(f"max iterations must be >= 1, got {self.max_iterations}")
        if self.patience < 1:
            raise ConfigError(f"patience must be >= 1, got {self.patience}")
        if self.record_every < 1:
            raise ConfigError(f"record_every must be >= 1, got {self.record_every}")

    @classmethod
    def paper(cls, gamma: float = 0.001, n_epochs: int = 5, lr: float = 0.1, **kw: object) -> "PathConfig":
        """Algorithm 1 as printed (with Eq. 3's sign): the reference variant."""
        return cls(variant="paper", gamma=gamma, n_epochs=n_epochs, lr=lr, **kw)  # type: ignore[arg-type]

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class PathResult:
    """A path and how it was obtained.

    ``weights``: (T, P) recorded points, first W_a, last W_b when complete.
    ``iteration``: (T,) iteration after which each point was recorded (-1 for
    W_a; ``iterations`` for the appended W_b).  ``distance``: (T,) normalised
    position ``1 - |w - w_b| / |w_a - w_b|`` (0 at W_a, 1 at W_b), the x axis of
    the paper's figures.  ``train_loss``/``train_error``: (T,).
    ``decisions``: (iterations,) int8 elastic-step outcome per iteration
    (0 refused, 1 accepted, 2 accepted after repair); ``gd_refused``: (iterations,)
    int8 count of refused GD epochs per iteration.
    """

    status: str
    reason: str
    weights: np.ndarray
    iteration: np.ndarray
    distance: np.ndarray
    train_loss: np.ndarray
    train_error: np.ndarray
    decisions: np.ndarray
    gd_refused: np.ndarray
    iterations: int
    elastic_accepted: int
    elastic_repaired: int
    elastic_refused: int
    gd_accepted: int
    gd_refused_total: int
    segment_checks: int
    wall_time: float
    config: dict = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return self.status == "complete"


def group_norms(w: torch.Tensor, groups: Sequence[slice]) -> torch.Tensor:
    """Frobenius norm of each group (layer) of the flat vector ``w``."""
    return torch.stack([w[g].norm() for g in groups])


class NormConstraint:
    """Eq. 4: layer l of W_x has norm |W_b^l| - s_l |W_b^l - W_x^l|, s_l = (|W_b^l| - |W_a^l|) / |W_b^l - W_a^l|.

    :meth:`apply` rescales each layer by the factor c that puts it *exactly* on
    that surface: with x the layer, |c x| = |b| - s |b - c x| is a quadratic in
    c.  (A single rescale to the norm Eq. 4 gives at the unscaled point is not
    enough: when |W_a| > |W_b| each GD step that grows the weights then leaves
    a residual outward drift, and the survey network walks away from W_b.)
    A layer where W_a and W_b coincide keeps norm |W_b^l|.  The rescaling
    preserves each layer's direction, so a purely radial move is undone.
    """

    def __init__(self, w_a: torch.Tensor, w_b: torch.Tensor, groups: Sequence[slice]) -> None:
        self.groups = list(groups)
        self.w_b = w_b
        self.nb = group_norms(w_b, self.groups)
        na = group_norms(w_a, self.groups)
        dab = group_norms(w_b - w_a, self.groups)
        safe = torch.where(dab > 0, dab, torch.ones_like(dab))
        # |s| <= 1 by the triangle inequality; clamp the rounding.
        self.slope = torch.where(dab > 0, (self.nb - na) / safe, torch.zeros_like(dab)).clamp(-1.0, 1.0)

    def target(self, w: torch.Tensor) -> torch.Tensor:
        """Eq. 4 norm of every layer at ``w``."""
        return self.nb - self.slope * group_norms(self.w_b - w, self.groups)

    def scale(self, x: torch.Tensor, b: torch.Tensor, nb: float, s: float) -> Optional[float]:
        """Factor c > 0 with |c x| = nb - s |b - c x| (closest to 1), or None if there is none."""
        r2 = float(torch.dot(x, x))
        if r2 == 0.0:
            return None
        r = math.sqrt(r2)
        if s == 0.0:
            return nb / r
        bx = float(torch.dot(b, x))
        a = r2 * (1.0 - s * s)
        bb = r * nb - s * s * bx
        c0 = nb * nb * (1.0 - s * s)
        if a <= 1e-12 * r2:
            return None
        disc = bb * bb - a * c0
        if disc < 0.0:
            return None
        sq = math.sqrt(disc)
        best = None
        for c in ((bb - sq) / a, (bb + sq) / a):
            # squaring admitted roots of |c x| = nb + s |b - c x| too: keep the right sign
            if c > 0.0 and (c * r - nb) * s <= 1e-12 * nb * abs(s) and (best is None or abs(c - 1.0) < abs(best - 1.0)):
                best = c
        return best

    def apply(self, w: torch.Tensor) -> Optional[torch.Tensor]:
        """``w`` with every layer on the Eq. 4 surface; None if some layer cannot be."""
        out = w.clone()
        for g, nb, s in zip(self.groups, self.nb.tolist(), self.slope.tolist()):
            c = self.scale(w[g], self.w_b[g], nb, s)
            if c is None:
                return None
            out[g] = w[g] * c
        return out

    def violation(self, w: torch.Tensor) -> float:
        """Largest relative deviation of a layer norm from Eq. 4."""
        target = self.target(w)
        return float(((group_norms(w, self.groups) - target).abs() / target.abs()).max())


def repair(
    problem: PathProblem,
    w: torch.Tensor,
    norm: NormConstraint,
    margin_target: float,
    steps: int,
) -> Optional[torch.Tensor]:
    """Move a candidate outside S back into S by projecting onto its active constraints.

    Each round takes the samples whose margin is below ``margin_target`` (the
    broken ones and those about to break), linearises their margins
    ``m + G d`` and takes the minimum-norm step ``d`` that lifts them all to
    the target, ``d = G^T (G G^T)^+ (target - m)``, then re-applies Eq. 4.
    Returns the first candidate inside S, or None after ``steps`` rounds (or
    if a broken sample has a zero margin gradient, e.g. all TCM units
    saturated, so no local step can lift it).
    """
    c = w
    for _ in range(steps):
        m = problem.margins(c)
        if bool((m > 0).all()):
            return c
        idx = torch.nonzero(m < margin_target).flatten()
        g = problem.margin_grads(c, idx)
        gg = g @ g.T
        if bool((torch.diagonal(gg)[m[idx] <= 0] == 0).any()):
            return None
        rhs = (margin_target - m[idx]).to(g.dtype)
        coef = torch.linalg.lstsq(gg.double().cpu(), rhs.double().cpu().unsqueeze(1), driver="gelsd").solution
        step = g.T @ coef.squeeze(1).to(g.dtype).to(g.device)
        nxt = norm.apply(c + step)
        if nxt is None:
            return None
        c = nxt
    return c if problem.contains(c) else None


ProgressFn = Callable[[int, float], None]


def find_path(
    problem: PathProblem,
    w_a: torch.Tensor,
    w_b: torch.Tensor,
    config: PathConfig = PathConfig(),
    progress: Optional[ProgressFn] = None,
) -> PathResult:
    """Draw a path from ``w_a`` to ``w_b`` inside S (Algorithm 1, module docstring).

    Both endpoints must be in S and have the same shape; a ConfigError says
    which is not.  ``progress(iteration, distance)`` is called after every
    iteration when given.
    """
    if w_a.shape != w_b.shape or w_a.dim() != 1:
        raise ConfigError(f"endpoints must be flat vectors of one length, got shapes {tuple(w_a.shape)} and {tuple(w_b.shape)}")
    if not problem.contains(w_a):
        raise ConfigError("W_a is not a solution: it misclassifies training samples")
    if not problem.contains(w_b):
        raise ConfigError("W_b is not a solution: it misclassifies training samples")
    start = time.perf_counter()
    cfg = config
    norm = NormConstraint(w_a, w_b, problem.groups)
    d_ab = float((w_b - w_a).norm())

    points: list[torch.Tensor] = []
    rec_iter: list[int] = []
    decisions = np.zeros(cfg.max_iterations, dtype=np.int8)
    gd_ref = np.zeros(cfg.max_iterations, dtype=np.int8)
    counts = dict(acc=0, rep=0, ref=0, gd_acc=0, gd_ref=0, seg=0)
    recent_steps: list[float] = []

    def record(w: torch.Tensor, it: int) -> None:
        points.append(w.detach().clone())
        rec_iter.append(it)

    def finish(status: str, reason: str, n_iter: int) -> PathResult:
        ws = torch.stack(points)
        dist = 1.0 - (ws - w_b).norm(dim=1) / d_ab if d_ab > 0 else torch.ones(len(points), dtype=ws.dtype)
        evals = [problem.evaluate(p) for p in points]
        return PathResult(
            status=status,
            reason=reason,
            weights=ws.cpu().numpy(),
            iteration=np.asarray(rec_iter, dtype=np.int64),
            distance=dist.double().cpu().numpy(),
            train_loss=np.array([e.loss for e in evals]),
            train_error=np.array([e.error for e in evals]),
            decisions=decisions[:n_iter].copy(),
            gd_refused=gd_ref[:n_iter].copy(),
            iterations=n_iter,
            elastic_accepted=counts["acc"],
            elastic_repaired=counts["rep"],
            elastic_refused=counts["ref"],
            gd_accepted=counts["gd_acc"],
            gd_refused_total=counts["gd_ref"],
            segment_checks=counts["seg"],
            wall_time=time.perf_counter() - start,
            config=cfg.to_dict(),
        )

    w = w_a.clone()
    record(w, -1)
    if d_ab == 0.0:
        return finish("complete", "", 0)

    best = 1.0
    best_iter = 0
    last_failed_check = math.inf
    for it in range(cfg.max_iterations):
        before = w
        # 1. gradient descent
        for _ in range(cfg.n_epochs):
            if cfg.lr == 0.0:
                break
            delta = problem.descent_step(w, cfg.lr) - w
            if cfg.variant == "repair":
                delta = forward_limited(delta, w_b - w, cfg.gamma)
            cand = norm.apply(w + delta)
            if cand is not None and problem.contains(cand):
                w = cand
                counts["gd_acc"] += 1
                continue
            if cfg.variant == "paper":
                record(w, it)
                return finish("failed", f"a gradient-descent step left S at iteration {it} (paper: eta, gamma not properly set)", it + 1)
            counts["gd_ref"] += 1
            gd_ref[it] += 1
            break
        # 2. elastic step toward W_b (Eq. 3; the printed line 9 has the sign reversed)
        cand = norm.apply(w + cfg.gamma * (w_b - w))
        if cand is not None and problem.contains(cand):
            w = cand
            decisions[it] = ELASTIC_ACCEPTED
            counts["acc"] += 1
        else:
            fixed = None
            if cfg.variant == "repair" and cand is not None and cfg.repair_steps > 0:
                fixed = repair(problem, cand, norm, cfg.margin_target, cfg.repair_steps)
            if fixed is not None:
                w = fixed
                decisions[it] = ELASTIC_REPAIRED
                counts["rep"] += 1
            else:
                decisions[it] = ELASTIC_REFUSED
                counts["ref"] += 1
        step = float((w - before).norm())
        if step > 0:
            recent_steps.append(step)
            if len(recent_steps) > 100:
                recent_steps.pop(0)
        if (it + 1) % cfg.record_every == 0:
            record(w, it)
        rel = float((w - w_b).norm()) / d_ab
        if progress is not None:
            progress(it, 1.0 - rel)
        # 3. arrival
        if rel <= cfg.tol and rel <= 0.5 * last_failed_check:
            if segment_inside(problem, w, w_b, recent_steps, cfg.max_segment_checks, counts):
                if rec_iter[-1] != it:
                    record(w, it)
                record(w_b, it + 1)
                return finish("complete", "", it + 1)
            last_failed_check = rel
        if rel < best * 0.99:
            best, best_iter = rel, it
        elif it - best_iter >= cfg.patience:
            if rec_iter[-1] != it:
                record(w, it)
            return finish("failed", f"stalled: no 1% progress toward W_b in {cfg.patience} iterations, {rel:.3g} of the distance left", it + 1)
    if rec_iter[-1] != cfg.max_iterations - 1:
        record(w, cfg.max_iterations - 1)
    rel = float((w - w_b).norm()) / d_ab
    return finish("failed", f"iteration limit {cfg.max_iterations} reached, {rel:.3g} of the distance left", cfg.max_iterations)


def forward_limited(delta: torch.Tensor, toward: torch.Tensor, gamma: float) -> torch.Tensor:
    """The repair variant's GD step: no part pointing away from W_b, and no longer than the elastic step.

    GD never stops pulling (the BCE has no zero), so plain GD and the elastic
    pull settle where ``lr |grad L| = gamma |w_b - w|``, short of W_b.  With the
    backward part removed and the length capped at ``gamma |w_b - w|``, a GD
    step can add at most ``gamma^2 |w_b - w| / 2`` to the distance (sideways),
    far less than the elastic step takes off, so the survey network keeps
    closing in even near W_b or between nearly identical solutions.
    """
    dot = torch.dot(delta, toward)
    if dot < 0:
        delta = delta - (dot / torch.dot(toward, toward)) * toward
    cap = gamma * float(toward.norm())
    size = float(delta.norm())
    if size > cap:
        delta = delta * (cap / size)
    return delta


def segment_inside(
    problem: PathProblem,
    w: torch.Tensor,
    w_b: torch.Tensor,
    recent_steps: list[float],
    max_checks: int,
    counts: dict,
) -> bool:
    """True if the straight segment w -> w_b lies in S at a resolution of half the median recent step."""
    length = float((w_b - w).norm())
    spacing = 0.5 * float(np.median(recent_steps)) if recent_steps else length
    n = min(max_checks, max(1, math.ceil(length / spacing)))
    for t in np.linspace(0.0, 1.0, n + 1)[1:-1]:
        counts["seg"] += 1
        if not problem.contains(w + float(t) * (w_b - w)):
            return False
    return True


def straight_line(problem: PathProblem, w_a: torch.Tensor, w_b: torch.Tensor, n_points: int = 101) -> dict[str, np.ndarray]:
    """Train loss and error along l_ab(t) = W_a + t (W_b - W_a) (Eq. 2) at ``n_points`` evenly spaced t in [0, 1]."""
    if n_points < 2:
        raise ConfigError(f"the straight line needs at least 2 points, got {n_points}")
    alpha = np.linspace(0.0, 1.0, n_points)
    evals = [problem.evaluate(w_a + float(a) * (w_b - w_a)) for a in alpha]
    return {
        "alpha": alpha,
        "train_loss": np.array([e.loss for e in evals]),
        "train_error": np.array([e.error for e in evals]),
    }
