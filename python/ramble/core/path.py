"""Algorithm 1 of the paper: a path from W_a to W_b whose every segment is certified inside S.

Written once, generic over the model: everything model-specific goes through
a :class:`ramble.core.problem.PathProblem`.  The Julia module ``Ramble`` holds the
same algorithm, step for step, for the TCM (``julia/src/path.jl``); the
cross-check compares their decisions.

A path is a polyline.  Every move of the survey network ``w`` (a GD epoch,
an elastic step, a repaired elastic step, the final segment to W_b) is
accepted only if the problem certifies its straight segment from the current
point (:meth:`ramble.core.problem.PathProblem.certify_segment`: exactly for the
TCM, by bound propagation for networks); a move that cannot be certified is
refused exactly like a move that leaves S.  The accepted points are the
polyline's vertices, so every segment between consecutive vertices is
certified.  With ``chord_iterations > 1`` (networks) moves are first taken
on the membership test alone and the chord from the last vertex over up to
that many iterations is certified as one segment; a refused chord is split,
and where one iteration's chord is refused that iteration is replayed
certifying every move (:class:`_PathSearch`).  The points inside a
certified chord are then not on the path.  With ``record_every == 1`` (the
default) every vertex is a recorded point, tagged with the iteration that
reached it; with ``record_every > 1`` only the point at the end of every
``record_every``-th iteration is (always a vertex).

One iteration, from the survey network ``w`` (always inside S):

1. ``n_epochs`` gradient-descent epochs on the training set, each candidate
   normalised by Eq. 4.  An uncertified candidate ends the run as failed in the
   ``paper`` variant (Algorithm 1, line 8: "eta, gamma not properly set"); in
   the ``repair`` variant the step is first made tangent to the Eq. 4 surface,
   loses any part pointing away from W_b and is capped at the elastic step's
   length (:meth:`NormConstraint.tangent`, :func:`forward_limited`), and a
   uncertified candidate is refused, ending this iteration's epochs.
2. The elastic step of Eq. 3, ``w + gamma * (w_b - w)``, normalised by Eq. 4.
   Line 9 of the printed Algorithm 1 reads ``W_x - gamma (W_b - W_x)``, which
   moves *away* from W_b; we follow Eq. 3.  If its segment is not certified it
   is refused (``paper``), or first repaired (``repair``, see :func:`repair`)
   and refused unless the segment from ``w`` to the repaired point is certified.

Arrival ("W_x = W_b"): once ``|w - w_b| <= tol * |w_a - w_b|`` the segment
from ``w`` to ``w_b`` is certified; if it is, ``w_b`` is appended and the path
is complete.  A run that reaches ``max_iterations``, or whose best distance has
not improved by 1 % in ``patience`` iterations, ends as failed with the reason.

Invariant (tested): on a complete path every segment between consecutive
vertices is certified inside S, every vertex satisfies Eq. 4, the first is
W_a and the last is W_b.
"""

from __future__ import annotations

import contextlib
import math
import signal
import threading
import time
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Callable, Literal, NoReturn, Optional, Sequence

import numpy as np
import torch

from ramble.core.checkpoint import Checkpoint, NestedCheckpoint
from ramble.core.problem import Evaluation, PathProblem, SegmentCertificate
from ramble.core.stopping import MoveAbandoned, abandonable, check_stop
from ramble.errors import ConfigError, Interrupted

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
    |W_a - W_b|.  ``record_every``: 1 records every vertex of the polyline
    (each accepted move); r > 1 records the point reached at the end of every
    r-th iteration (all vertices are still certified).
    ``weight_every``: keep the weights of every this-many-th recorded point
    (and always of the first and last); metrics are kept for all of them.
    ``max_waypoints``: solutions the path may go through when a leg stalls
    (:func:`find_path_with_waypoints`; 0 = never, always 0 for ``paper``).
    ``escape``: when that fails, retry at larger norms
    (:func:`find_path_with_escape`; every model; never for ``paper``).
    ``elastic_halvings``: a refused elastic step is retried at half the pull
    this many times (0: never; networks pulled with a large gamma need it,
    since the segment to a repaired point then often leaves S).
    ``chord_iterations``: 1 certifies every move as it is made; c > 1
    certifies lazily: the moves of up to c iterations are taken on the
    membership test alone and their chord from the last vertex is certified
    as one segment (its end becomes the vertex; the points in between are not
    on the path).  The chord starts at 1 iteration and doubles after each
    certified chord up to c; a refused chord is undone and its iterations are
    replayed certifying every move, then the chord length halves.  Networks
    use it (a certificate costs several GD epochs); the TCM's exact
    certificate is cheap, and the Julia backend supports only 1.
    """

    variant: Variant = "repair"
    gamma: float = 0.01
    n_epochs: int = 1
    lr: float = 0.01
    margin_target: float = 0.2
    repair_steps: int = 10
    tol: float = 1e-3
    max_iterations: int = 20_000
    patience: int = 1000
    record_every: int = 1
    weight_every: int = 1
    max_waypoints: int = 10
    escape: bool = True
    elastic_halvings: int = 0
    chord_iterations: int = 1

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
        if self.max_waypoints < 0:
            raise ConfigError(f"max waypoints must be >= 0, got {self.max_waypoints}")
        if self.weight_every < 1:
            raise ConfigError(f"weight_every must be >= 1, got {self.weight_every}")
        if self.elastic_halvings < 0:
            raise ConfigError(f"elastic halvings must be >= 0, got {self.elastic_halvings}")
        if self.chord_iterations < 1:
            raise ConfigError(f"chord iterations must be >= 1, got {self.chord_iterations}")

    @classmethod
    def paper(cls, gamma: float = 0.001, n_epochs: int = 5, lr: float = 0.1, **kw: object) -> "PathConfig":
        """Algorithm 1 as printed (with Eq. 3's sign): the reference variant."""
        kw.setdefault("max_waypoints", 0)
        return cls(variant="paper", gamma=gamma, n_epochs=n_epochs, lr=lr, **kw)  # type: ignore[arg-type]

    def to_dict(self) -> dict:
        return asdict(self)

    def expected_iterations(self) -> float:
        """Iterations a path needs when every elastic step is taken: ln(1/tol) / -ln(1 - gamma)."""
        return math.log(1.0 / self.tol) / -math.log1p(-self.gamma) if self.gamma < 1 else 1.0

    def recorded(self, record_every: int, weight_every: int) -> "PathConfig":
        """This config recording every ``record_every``-th iteration and keeping every ``weight_every``-th point's weights.

        A lazy chord spans at most ``record_every`` iterations, so a short path
        still records about the points asked for (its vertices, when
        ``record_every`` is 1).
        """
        return replace(self, record_every=record_every, weight_every=weight_every, chord_iterations=min(self.chord_iterations, record_every))

    @classmethod
    def from_dict(cls, d: dict) -> "PathConfig":
        """The config stored as ``to_dict()``, also from files written before a field was removed."""
        unknown = set(d) - set(cls.__dataclass_fields__) - REMOVED_FIELDS
        if unknown:
            raise ConfigError(f"stored path config has unknown field(s) {', '.join(sorted(unknown))}; written by a newer ramble?")
        return cls(**{k: v for k, v in d.items() if k not in REMOVED_FIELDS})


REMOVED_FIELDS = frozenset({"max_segment_checks"})
"""PathConfig fields of older files that no longer mean anything (the arrival segment is now certified exactly)."""


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
    int8 count of refused GD epochs per iteration.  ``weight_index``: when
    weights are kept at a stride, the recorded point (row of the (T,) arrays)
    of each row of ``weights``; None when every point's weights are kept.
    ``extra``: (T,) arrays from the ``measure`` callback (e.g. test metrics).

    Certification: ``segment_checks`` segments were submitted to the
    certifier, ``segments_certified`` of them certified and accepted (the
    polyline's segments), ``cert_pieces`` pieces evaluated (TCM: margin
    evaluations; networks: sub-segments bounded), ``cert_min_margin`` the
    smallest certified margin bound of an accepted segment (inf if none),
    ``cert_seconds`` the certifier's wall time.  ``arclength``: (T,)
    cumulative Euclidean length of the polyline over all its vertices (not
    only the recorded ones) at each recorded point; None for files written
    before certification.
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
    weight_index: Optional[np.ndarray] = None
    extra: dict = field(default_factory=dict)
    waypoints: list = field(default_factory=list)
    waypoints_trained: int = 0
    escape_scale: float = 1.0
    via: list = field(default_factory=list)
    arclength: Optional[np.ndarray] = None
    segments_certified: int = 0
    cert_pieces: int = 0
    cert_min_margin: float = math.inf
    cert_seconds: float = 0.0

    @property
    def complete(self) -> bool:
        return self.status == "complete"


def result_to_state(r: PathResult) -> dict:
    """A :class:`PathResult` as a state dict (arrays as tensors, under ``__np__`` keys)."""
    out = {}
    for f in fields(r):
        v = getattr(r, f.name)
        if isinstance(v, np.ndarray):
            out["__np__" + f.name] = torch.from_numpy(np.ascontiguousarray(v))
        elif f.name == "extra":
            out["extra"] = {k: torch.from_numpy(np.ascontiguousarray(a)) for k, a in v.items()}
        else:
            out[f.name] = v
    return out


def result_from_state(d: dict) -> PathResult:
    """Inverse of :func:`result_to_state`."""
    kw = {}
    for k, v in d.items():
        if k.startswith("__np__"):
            kw[k[6:]] = v.numpy()
        elif k == "extra":
            kw[k] = {n: a.numpy() for n, a in v.items()}
        else:
            kw[k] = v
    return PathResult(**kw)


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
        # float64 whatever the weights' dtype: a float32 |W_b^l| a rounding below the true norm leaves
        # no point of the surface on rays close to W_b (the quadratic in scale() has no real root), so
        # every step near W_b of a float32 network was refused (MNIST-100 paths stalled at 0.98)
        a64, b64 = w_a.double(), w_b.double()
        self.nb = group_norms(b64, self.groups)
        na = group_norms(a64, self.groups)
        dab = group_norms(b64 - a64, self.groups)
        safe = torch.where(dab > 0, dab, torch.ones_like(dab))
        # |s| <= 1 by the triangle inequality; clamp the rounding.
        self.slope = torch.where(dab > 0, (self.nb - na) / safe, torch.zeros_like(dab)).clamp(-1.0, 1.0)

    def target(self, w: torch.Tensor) -> torch.Tensor:
        """Eq. 4 norm of every layer at ``w``."""
        return self.nb - self.slope * group_norms(self.w_b - w, self.groups)

    def scale(self, x: torch.Tensor, b: torch.Tensor, nb: float, s: float) -> Optional[float]:
        """Factor c > 0 with |c x| = nb - s |b - c x| (closest to 1), or None if there is none.

        In float64 whatever the weights' dtype: near W_b the discriminant is
        a small difference of nearly equal terms.
        """
        x, b = x.double(), b.double()
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

    def tangent(self, w: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
        """``delta`` without its component normal to the Eq. 4 surface at ``w``, layer by layer.

        The surface of layer l is phi(x) = |x| + s |b - x| - |b| = 0, normal
        grad phi = x/|x| - s (b - x)/|b - x|.  Near-identical endpoints that
        differ mostly in norm give |s| close to 1, and then rescaling a step
        back onto the surface amplifies its normal part many times over; a
        tangent step needs almost no rescaling.
        """
        out = delta.clone()
        for g, s in zip(self.groups, self.slope.tolist()):
            x = w[g]
            nx = float(x.norm())
            if nx == 0.0:
                continue
            n = x / nx
            to_b = self.w_b[g] - x
            d = float(to_b.norm())
            if d > 0.0 and s != 0.0:
                n = n - s * to_b / d
            nn = float(torch.dot(n, n))
            if nn > 0.0:
                out[g] = delta[g] - (torch.dot(delta[g], n) / nn) * n
        return out

    def violation(self, w: torch.Tensor) -> float:
        """Largest relative deviation of a layer norm from Eq. 4."""
        target = self.target(w)
        return float(((group_norms(w, self.groups) - target).abs() / target.abs()).max())


DENSE_REPAIR_BYTES = 4 * 2**30
"""Most memory a repair round may use to form G (k x P) and G G^T (k x k, float64); above it, matrix-free LSMR.

Measured on whole MNIST (benchmarks/bench_repair.py, LeNet5, one thread):
forming G took 4, 9, 26 and 119 s for 500, 1,000, 2,000 and 4,000 active
samples, LSMR (about 200 products) 108, 160 and 374 s for the first three:
14-27x slower.  Dense grows as k^2, so they would meet near 10,000-15,000
samples; the matrix-free step is the fallback that lets a round run at all
where G would not fit (LeNet5: above about 13,000 active samples), not a
speed-up.  MNIST-100 and the TCM always stay dense."""
REPAIR_LSMR_ITERATIONS = 200
"""Most LSMR iterations (one G u and one G^T a each) of a matrix-free repair round."""


def dense_repair_bytes(k: int, w: torch.Tensor) -> int:
    """Bytes of G (k x P, ``w``'s dtype) and G G^T (k x k, float64) for ``k`` active samples."""
    return int(k) * w.numel() * w.element_size() + 8 * int(k) ** 2


def min_norm_step_dense(problem: PathProblem, w: torch.Tensor, idx: torch.Tensor, rhs: torch.Tensor, broken: torch.Tensor) -> Optional[torch.Tensor]:
    """``d = G^T (G G^T)^+ rhs`` with G the margin gradients of samples ``idx`` (k, P), formed; None when a
    ``broken`` sample has a zero gradient (no local step can lift it)."""
    g = problem.margin_grads(w, idx)
    gg = g @ g.T
    if bool((torch.diagonal(gg)[broken] == 0).any()):
        return None
    coef = torch.linalg.lstsq(gg.double().cpu(), rhs.to(g.dtype).double().cpu().unsqueeze(1), driver="gelsd").solution
    return g.T @ coef.squeeze(1).to(g.dtype).to(g.device)


def min_norm_step_matrix_free(problem: PathProblem, w: torch.Tensor, idx: torch.Tensor, rhs: torch.Tensor) -> Optional[torch.Tensor]:
    """The same minimum-norm ``d`` with ``G d = rhs``, by LSMR from 0 (scipy) on ``problem.margin_products``.

    LSMR started at zero converges to the minimum-norm solution of a
    consistent system; each iteration is one ``G u`` and one ``G^T a``, so
    neither G nor G G^T is formed.  At most :data:`REPAIR_LSMR_ITERATIONS`
    iterations (the round's result is checked, and the next round corrects
    what is left); None when G^T rhs is 0 (nothing can lift the samples).
    """
    from scipy.sparse.linalg import LinearOperator, lsmr

    times, transposed_times = problem.margin_products(w, idx)
    p = int(w.numel())

    def matvec(u: np.ndarray) -> np.ndarray:
        return times(torch.from_numpy(np.ascontiguousarray(u, dtype=np.float64)).to(w.device)).double().cpu().numpy()

    def rmatvec(a: np.ndarray) -> np.ndarray:
        return transposed_times(torch.from_numpy(np.ascontiguousarray(a, dtype=np.float64)).to(w.device)).double().cpu().numpy()

    op = LinearOperator((int(idx.numel()), p), matvec=matvec, rmatvec=rmatvec, dtype=np.float64)
    d = lsmr(op, rhs.double().cpu().numpy(), atol=1e-6, btol=1e-6, maxiter=REPAIR_LSMR_ITERATIONS)[0]
    if not np.any(d):
        return None
    return torch.from_numpy(d).to(device=w.device, dtype=w.dtype)


def repair(
    problem: PathProblem,
    w: torch.Tensor,
    norm: NormConstraint,
    margin_target: float,
    steps: int,
    first_round: int = 0,
    after_round: Optional[Callable[[int, torch.Tensor], None]] = None,
) -> Optional[torch.Tensor]:
    """Move a candidate outside S back into S by projecting onto its active constraints.

    Each round takes the samples whose margin is below ``margin_target`` (the
    broken ones and those about to break), linearises their margins
    ``m + G d`` and takes the minimum-norm step ``d`` that lifts them all to
    the target, ``d = G^T (G G^T)^+ (target - m)``, then re-applies Eq. 4.
    G is formed (:func:`min_norm_step_dense`) while it fits in
    :data:`DENSE_REPAIR_BYTES`; beyond, when the problem has
    ``margin_products``, LSMR finds the same step from products alone
    (:func:`min_norm_step_matrix_free`).
    Returns the first candidate inside S, or None after ``steps`` rounds (or
    if a broken sample has a zero margin gradient, e.g. all TCM units
    saturated, so no local step can lift it).
    ``after_round(r, c)`` is called after round ``r`` (1-based) with its
    candidate ``c``; ``repair(..., c, first_round=r)`` continues from there
    exactly as the uninterrupted loop would (a checkpoint inside a step).
    """
    c = w
    for r in range(first_round, steps):
        check_stop()
        m = problem.margins(c)
        if bool((m > 0).all()):
            return c
        idx = torch.nonzero(m < margin_target).flatten()
        rhs = margin_target - m[idx]
        if dense_repair_bytes(idx.numel(), c) > DENSE_REPAIR_BYTES and hasattr(problem, "margin_products"):
            step = min_norm_step_matrix_free(problem, c, idx, rhs)
        else:
            step = min_norm_step_dense(problem, c, idx, rhs, broken=m[idx] <= 0)
        if step is None:
            return None
        nxt = norm.apply(c + step)
        if nxt is None:
            return None
        c = nxt
        if after_round is not None:
            after_round(r + 1, c)
    return c if problem.contains(c) else None


ProgressFn = Callable[[int, float], None]
MeasureFn = Callable[[torch.Tensor], dict[str, float]]
"""``measure(w)``: metrics of a point beyond the training loss and error (e.g. ``test_loss``, ``test_error``), kept in ``PathResult.extra``."""


class StopRequest:
    """Set by SIGTERM/SIGINT while a checkpointed path runs: the path commits its state at the next iteration and stops."""

    def __init__(self) -> None:
        self.signal: Optional[str] = None

    def handle(self, signum: int, _frame: object) -> None:
        self.signal = signal.Signals(signum).name


@contextlib.contextmanager
def stop_on_signals(enabled: bool):
    """Within the block, SIGTERM and SIGINT (a scheduler's preemption, Ctrl-C) set a :class:`StopRequest` instead of killing.

    Only in the main thread (where Python delivers signals) and when
    ``enabled``; otherwise yields None and changes nothing.  The previous
    handlers are restored on exit.
    """
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield None
        return
    stop = StopRequest()
    old = {s: signal.signal(s, stop.handle) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield stop
    finally:
        for s, h in old.items():
            signal.signal(s, h)


@dataclass
class _State:
    """The search state at the end of an iteration (``it``: the next iteration): what a refused chord rolls back to.

    O(1) to keep: the recorded points are never in it, since points are
    recorded only at vertices, in order, and a rollback never passes the last vertex.
    """

    w: torch.Tensor
    it: int
    best: float
    best_iter: int
    last_failed_check: float
    counts: dict
    dirty: bool

    def to_saved(self) -> dict:
        """This state for a checkpoint (tensors on the CPU)."""
        return dict(asdict(self), w=self.w.cpu(), counts=dict(self.counts))

    @classmethod
    def from_saved(cls, d: dict, like: torch.Tensor) -> "_State":
        """Inverse of :meth:`to_saved`, ``w`` on the device and dtype of ``like``."""
        return cls(**dict(d, w=d["w"].to(like.device, like.dtype)))


@dataclass
class _Cursor:
    """How far the running iteration got, so that a checkpoint can fall inside it (a whole-MNIST iteration takes minutes).

    Fresh (all zero) at an iteration's start.  The moves already made are
    in the search state; on resume the iteration continues after them.
    """

    epochs: int = 0  # GD epochs done; n_epochs once step 1 is over (also when it stopped early)
    tries: int = 0  # elastic tries refused so far (each later try pulls half as far)
    pull: float = 0.0  # the running elastic try's pull (0: not started)
    rounds: int = 0  # repair rounds done on the running try
    candidate: Optional[torch.Tensor] = None  # that try's point after those rounds

    @property
    def fresh(self) -> bool:
        return self.epochs == 0 and self.pull == 0.0

    def to_saved(self) -> dict:
        """For a checkpoint (tensors on the CPU)."""
        return dict(asdict(self), candidate=None if self.candidate is None else self.candidate.cpu())

    @classmethod
    def from_saved(cls, d: Optional[dict], like: torch.Tensor) -> "_Cursor":
        """Inverse of :meth:`to_saved`, ``candidate`` on the device and dtype of ``like``; None (a checkpoint at an iteration's start) gives a fresh cursor."""
        if d is None:
            return cls()
        c = d["candidate"]
        return cls(**dict(d, candidate=None if c is None else c.to(like.device, like.dtype)))


class _PathSearch:
    """One run of Algorithm 1 (see :func:`find_path`); its methods are the algorithm's steps.

    Moves are certified one at a time (``chord_iterations == 1``) or lazily:
    up to ``block`` iterations of moves are taken on the membership test
    alone (their end states kept in ``pending``) and their chord from the
    last vertex (``anchor``) is certified as one segment.  A certified chord
    makes its end a vertex and doubles ``block`` (up to ``chord_iterations``).
    A refused one is split at the middle iteration end, recursively, so its
    longest certifiable prefixes become vertices; where a single iteration's
    chord is refused, the search returns to that iteration's start (a vertex)
    and replays it certifying every move (``strict_until``), and ``block``
    halves.  Either way every segment between consecutive vertices is
    certified, and the run is deterministic.
    """

    def __init__(self, problem: PathProblem, w_a: torch.Tensor, w_b: torch.Tensor, cfg: PathConfig,
                 progress: Optional[ProgressFn], measure: Optional[MeasureFn],
                 frame: Optional[tuple[torch.Tensor, torch.Tensor]]) -> None:
        self.problem, self.w_a, self.w_b, self.cfg = problem, w_a, w_b, cfg
        self.progress, self.measure = progress, measure
        self.start = time.perf_counter()
        self.norm = NormConstraint(w_a, w_b, problem.groups)
        self.d_ab = float((w_b - w_a).norm())
        self.ref_a, self.ref_b = frame if frame is not None else (w_a, w_b)
        self.ref_d = float((self.ref_b - self.ref_a).norm())
        self.kept: list[torch.Tensor] = []
        self.kept_rows: list[int] = []
        self.rec: dict[str, list[float]] = {"rec_iter": [], "dists": [], "arcs": [], "losses": [], "errors": []}
        self.extras: dict[str, list[float]] = {}
        self.last_w = w_a
        self.decisions = np.zeros(cfg.max_iterations, dtype=np.int8)
        self.gd_ref = np.zeros(cfg.max_iterations, dtype=np.int8)
        self.counts = dict(acc=0, rep=0, ref=0, gd_acc=0, gd_ref=0, seg=0, cert=0, pieces=0)
        # arc: polyline length up to the anchor; dirty: the current point is not recorded yet
        self.run = dict(arc=0.0, dirty=False, cert_s=0.0, min_bound=math.inf)
        self.vertex_rows = cfg.record_every == 1
        self.w = w_a.clone()
        self.best, self.best_iter, self.last_failed_check = 1.0, 0, math.inf
        self.block, self.strict_until = 1, 0
        self.open = False  # moves taken since the last vertex, not yet certified
        self.anchor: Optional[_State] = None
        self.pending: list[_State] = []
        self.cursor = _Cursor()
        self.checkpoint: Optional[Checkpoint] = None
        self.stop: Optional[StopRequest] = None

    # -- the polyline

    def record(self, w: torch.Tensor, it: int) -> None:
        """Append ``w`` (a vertex) as a recorded point after iteration ``it``."""
        row = len(self.rec["rec_iter"])
        self.rec["rec_iter"].append(it)
        self.rec["dists"].append(1.0 - float((w - self.ref_b).norm()) / self.ref_d if self.ref_d > 0 else 1.0)
        self.rec["arcs"].append(self.run["arc"])
        ev = self.problem.evaluate(w)
        self.rec["losses"].append(ev.loss)
        self.rec["errors"].append(ev.error)
        if self.measure is not None:
            for k, v in self.measure(w).items():
                self.extras.setdefault(k, []).append(float(v))
        if row % self.cfg.weight_every == 0:
            self.kept.append(w.detach().clone())
            self.kept_rows.append(row)
        self.last_w = w
        self.run["dirty"] = False

    def certified(self, w_from: torch.Tensor, w_to: torch.Tensor) -> bool:
        """Certify the segment w_from -> w_to; count it either way."""
        c = self.problem.certify_segment(w_from, w_to)
        self.counts["seg"] += 1
        self.counts["pieces"] += c.pieces
        self.run["cert_s"] += c.seconds
        if c.certified:
            self.counts["cert"] += 1
            self.run["min_bound"] = min(self.run["min_bound"], c.margin_bound)
        return c.certified

    def strict(self, it: int) -> bool:
        """True when iteration ``it`` certifies each move as it is made."""
        return self.cfg.chord_iterations == 1 or it < self.strict_until

    def admissible(self, w_from: torch.Tensor, w_to: torch.Tensor, it: int) -> bool:
        """May the move w_from -> w_to (its end already in S) be taken?  Certified now, or later as part of a chord."""
        return self.certified(w_from, w_to) if self.strict(it) else True

    def moved(self, w_from: torch.Tensor, w_to: torch.Tensor, it: int) -> torch.Tensor:
        """Take the move w_from -> w_to; in strict mode its end is a new vertex (recorded when every vertex is)."""
        self.run["dirty"] = True
        if self.strict(it):
            self.run["arc"] += float((w_to - w_from).norm())
            if self.vertex_rows:
                self.record(w_to, it)
        else:
            self.open = True
        return w_to

    def state(self, next_it: int) -> _State:
        """The current search state, before iteration ``next_it``."""
        return _State(self.w, next_it, self.best, self.best_iter, self.last_failed_check, dict(self.counts), self.run["dirty"])

    def end_iteration(self, it: int) -> None:
        """After iteration ``it``: its end is the new anchor if it is a vertex, else a pending chord point."""
        if self.open:
            self.pending.append(self.state(it + 1))
        else:
            self.anchor, self.pending = self.state(it + 1), []

    def vertex(self, w_from: torch.Tensor, w_to: torch.Tensor, it: int) -> None:
        """``w_to``, reached in iteration ``it``, ends a certified chord from the vertex ``w_from``."""
        self.run["arc"] += float((w_to - w_from).norm())
        self.run["dirty"] = True
        if self.vertex_rows:
            self.record(w_to, it)

    def rollback(self, to: _State, dirty: bool) -> None:
        """Return to the vertex ``to`` (recorded points and arc length up to it stay); certification counters are kept."""
        cert = {k: self.counts[k] for k in ("seg", "cert", "pieces")}
        self.w, self.best, self.best_iter, self.last_failed_check = to.w, to.best, to.best_iter, to.last_failed_check
        self.counts = dict(to.counts, **cert)
        self.decisions[to.it:] = 0
        self.gd_ref[to.it:] = 0
        self.run["dirty"] = dirty
        self.anchor, self.pending, self.open = _State(to.w, to.it, to.best, to.best_iter, to.last_failed_check, dict(to.counts), dirty), [], False
        self.cursor = _Cursor()
        self.strict_until = to.it + 1
        self.block = max(1, self.block // 2)

    def close_chord(self, it: int) -> bool:
        """Make the current point (end of iteration ``it``) a vertex; False if the search rolled back (continue at ``anchor.it``).

        The chord from the anchor is certified; if refused, it is split at
        the middle pending iteration end, and so on (see the class doc).
        """
        if not self.open:
            return True
        points = [self.anchor, *self.pending, self.state(it + 1)]
        lo, hi, whole = 0, len(points) - 1, True
        while lo < hi:
            m = hi
            while not self.certified(points[lo].w, points[m].w):
                whole = False
                if m == lo + 1:
                    self.rollback(points[lo], points[lo].dirty if lo == 0 else not self.vertex_rows)
                    return False
                m = lo + (m - lo) // 2
            self.vertex(points[lo].w, points[m].w, points[m].it - 1)
            lo = m
        self.open, self.pending = False, []
        self.block = min(2 * self.block, self.cfg.chord_iterations) if whole else max(1, self.block // 2)
        return True

    def chord_due(self, it: int) -> bool:
        """Must the current point be a vertex after iteration ``it``?  (End of a block, or a point to record.)"""
        if self.strict(it):
            return True
        return it + 1 - self.anchor.it >= self.block or (not self.vertex_rows and (it + 1) % self.cfg.record_every == 0)

    # -- one iteration

    def gradient_epochs(self, it: int) -> Optional[str]:
        """Step 1: up to ``n_epochs`` GD epochs; a failure reason ends the run (``paper``), else None."""
        cfg, norm = self.cfg, self.norm
        for epoch in range(self.cursor.epochs, cfg.n_epochs):
            if cfg.lr == 0.0:
                break
            w = self.w
            delta = self.problem.descent_step(w, cfg.lr) - w
            if cfg.variant == "repair":
                delta = forward_limited(norm.tangent(w, delta), self.w_b - w, cfg.gamma)
            cand = norm.apply(w + delta)
            if cand is not None and self.problem.contains(cand) and self.admissible(w, cand, it):
                self.w = self.moved(w, cand, it)
                self.counts["gd_acc"] += 1
                self.cursor.epochs = epoch + 1
                self.pause(it)
                continue
            if cfg.variant == "paper":
                return f"a gradient-descent step left S at iteration {it} (paper: eta, gamma not properly set)"
            self.counts["gd_ref"] += 1
            self.gd_ref[it] += 1
            break
        self.cursor.epochs = cfg.n_epochs
        return None

    def elastic_move(self, w_from: torch.Tensor, pull: float, it: int) -> tuple[int, Optional[torch.Tensor]]:
        """The elastic step w_from + pull (w_b - w_from) on Eq. 4: (decision code, point reached or None)."""
        cfg, cur = self.cfg, self.cursor
        if cur.rounds == 0:  # else resumed inside this try's repair: its candidate was neither in S nor admissible
            cand = self.norm.apply(w_from + pull * (self.w_b - w_from))
            if cand is not None and self.problem.contains(cand) and self.admissible(w_from, cand, it):
                return ELASTIC_ACCEPTED, cand
        else:
            cand = cur.candidate
        if cfg.variant == "repair" and cand is not None and cfg.repair_steps > 0:
            fixed = repair(self.problem, cand, self.norm, cfg.margin_target, cfg.repair_steps,
                           first_round=cur.rounds, after_round=lambda r, c: self.paused_in_repair(it, r, c))
            if fixed is not None and self.admissible(w_from, fixed, it):
                return ELASTIC_REPAIRED, fixed
        return ELASTIC_REFUSED, None

    def paused_in_repair(self, it: int, rounds: int, candidate: torch.Tensor) -> None:
        """After a repair round of iteration ``it``: a checkpoint may fall here."""
        self.cursor.rounds, self.cursor.candidate = rounds, candidate
        self.pause(it)

    def elastic_step(self, it: int) -> None:
        """Step 2: Eq. 3 toward W_b (the printed line 9 has the sign reversed).

        A refused step is retried at half the pull, up to ``elastic_halvings``
        times: a shorter pull breaks fewer samples, so the segment to its
        repaired point is more often certifiable (networks pulled with a large gamma).
        """
        cur = self.cursor
        if cur.pull == 0.0:
            cur.pull = self.cfg.gamma
        for tries in range(cur.tries, self.cfg.elastic_halvings + 1):
            code, reached = self.elastic_move(self.w, cur.pull, it)
            if code != ELASTIC_REFUSED:
                break
            cur.tries, cur.pull, cur.rounds, cur.candidate = tries + 1, cur.pull * 0.5, 0, None
        self.cursor = _Cursor()  # the iteration's moves are made
        self.decisions[it] = code
        if code == ELASTIC_REFUSED:
            self.counts["ref"] += 1
        else:
            self.w = self.moved(self.w, reached, it)
            self.counts["acc" if code == ELASTIC_ACCEPTED else "rep"] += 1

    def arrive(self, it: int) -> bool:
        """Step 3: the certified last segment to W_b, appended; False if not certified."""
        if not self.certified(self.w, self.w_b):
            return False
        if self.run["dirty"]:
            self.record(self.w, it)
        self.run["arc"] += float((self.w_b - self.w).norm())
        self.record(self.w_b, it + 1)
        return True

    # -- the run

    def stop_requested(self) -> bool:
        """True once SIGTERM or SIGINT came while a checkpointed path runs."""
        return self.checkpoint is not None and self.stop is not None and self.stop.signal is not None

    def moves(self, it: int) -> Optional[str]:
        """Steps 1 and 2 of iteration ``it``; a failure reason ends the run (``paper``), else None.

        A stop requested during a move abandons it (its certificate can take
        minutes on whole MNIST): the state from before the move is committed,
        with the cursor of the moves made, and the run stops.
        """
        try:
            with abandonable(self.stop_requested):
                failure = self.gradient_epochs(it)
                if failure is None:
                    self.elastic_step(it)
                return failure
        except MoveAbandoned:
            self.commit_and_stop(it)

    def commit_and_stop(self, it: int) -> NoReturn:
        """Save the state (iteration ``it`` and its cursor) and end the run with :class:`ramble.errors.Interrupted`."""
        self.checkpoint.save(self.snapshot(it))
        raise Interrupted(f"stopped by {self.stop.signal} at iteration {it} of a path; its state is committed to the file: continue with `ramble resume FILE`")

    def pause(self, it: int) -> None:
        """Between two moves inside iteration ``it``: commit the state if a stop was requested (then stop) or the time is due."""
        if self.stop_requested():
            self.commit_and_stop(it)
        if self.checkpoint is not None and self.checkpoint.due(within_iteration=True):
            self.checkpoint.save(self.snapshot(it))

    def finish(self, status: str, reason: str, n_iter: int) -> PathResult:
        """The result; the current point must be a vertex."""
        if self.run["dirty"]:
            self.record(self.w, n_iter - 1)
        if self.kept_rows[-1] != len(self.rec["rec_iter"]) - 1:
            self.kept.append(self.last_w.detach().clone())
            self.kept_rows.append(len(self.rec["rec_iter"]) - 1)
        c, r = self.counts, self.rec
        return PathResult(
            status=status, reason=reason, weights=torch.stack(self.kept).cpu().numpy(),
            iteration=np.asarray(r["rec_iter"], dtype=np.int64), distance=np.asarray(r["dists"], dtype=np.float64),
            train_loss=np.asarray(r["losses"], dtype=np.float64), train_error=np.asarray(r["errors"], dtype=np.float64),
            decisions=self.decisions[:n_iter].copy(), gd_refused=self.gd_ref[:n_iter].copy(), iterations=n_iter,
            elastic_accepted=c["acc"], elastic_repaired=c["rep"], elastic_refused=c["ref"],
            gd_accepted=c["gd_acc"], gd_refused_total=c["gd_ref"], segment_checks=c["seg"],
            wall_time=time.perf_counter() - self.start, config=self.cfg.to_dict(),
            weight_index=None if len(self.kept_rows) == len(r["rec_iter"]) else np.asarray(self.kept_rows, dtype=np.int64),
            extra={k: np.asarray(v) for k, v in self.extras.items()}, arclength=np.asarray(r["arcs"], dtype=np.float64),
            segments_certified=c["cert"], cert_pieces=c["pieces"], cert_min_margin=self.run["min_bound"], cert_seconds=self.run["cert_s"],
        )

    def snapshot(self, next_it: int) -> dict:
        """The state for a checkpoint (``next_it``: the iteration to continue with, or the running one when the cursor is not fresh)."""
        n = next_it if self.cursor.fresh else next_it + 1  # the running iteration's decisions so far
        return {
            "iteration": next_it, "w": self.w.cpu(), "best": self.best, "best_iter": self.best_iter, "last_failed_check": self.last_failed_check,
            "counts": dict(self.counts), "run": dict(self.run), "chord_block": self.block, "strict_until": self.strict_until,
            "chord": {"pending": [p.to_saved() for p in self.pending]} if self.open else None,
            "anchor": self.anchor.to_saved() if self.anchor is not None else None,
            "cursor": None if self.cursor.fresh else self.cursor.to_saved(),
            "decisions": torch.from_numpy(self.decisions[:n].copy()), "gd_refused": torch.from_numpy(self.gd_ref[:n].copy()),
            **{k: list(v) for k, v in self.rec.items()},
            "extras": {k: list(v) for k, v in self.extras.items()}, "kept": torch.stack(self.kept).cpu(), "kept_rows": list(self.kept_rows),
            "last_w": self.last_w.cpu(), "elapsed": time.perf_counter() - self.start,
        }

    def restore(self, saved: dict) -> int:
        """Continue from a checkpoint's :meth:`snapshot`; the iteration to continue with."""
        dev, dt = self.w_a.device, self.w_a.dtype
        self.w = saved["w"].to(dev, dt)
        first_it = int(saved["iteration"])
        self.best, self.best_iter, self.last_failed_check = float(saved["best"]), int(saved["best_iter"]), float(saved["last_failed_check"])
        self.block, self.strict_until = int(saved.get("chord_block", 1)), int(saved.get("strict_until", 0))
        chord = saved.get("chord")
        # the last vertex, where a refused chord returns (a version-2 state kept it only with an open chord)
        anchor = saved["anchor"] if "anchor" in saved else (chord or {}).get("anchor")
        if anchor is not None:
            self.anchor = _State.from_saved(anchor, self.w_a)
        if chord is not None:  # saved with a chord open: its pending iteration ends
            self.pending = [_State.from_saved(p, self.w_a) for p in chord["pending"]]
            self.open = True
        self.cursor = _Cursor.from_saved(saved.get("cursor"), self.w_a)
        self.counts.update(saved["counts"])
        self.run.update(saved["run"])
        decisions, gd_refused = saved["decisions"].numpy(), saved["gd_refused"].numpy()
        self.decisions[:len(decisions)] = decisions
        self.gd_ref[:len(gd_refused)] = gd_refused
        for k in self.rec:
            self.rec[k][:] = saved[k]
        self.extras.update({k: list(v) for k, v in saved["extras"].items()})
        self.kept[:] = [row.to(dev, dt) for row in saved["kept"]]
        self.kept_rows[:] = saved["kept_rows"]
        self.last_w = saved["last_w"].to(dev, dt)
        self.start -= float(saved["elapsed"])
        return first_it

    def iterate(self, first_it: int, checkpoint: Optional[Checkpoint], stop: Optional[StopRequest] = None) -> PathResult:
        """Iterations from ``first_it`` until arrival, a stall or the limit (Algorithm 1's loop).

        With ``checkpoint``, the state is saved at the start of an iteration
        whenever it is due, after any move inside one (a GD epoch, a repair
        round) once its time is due, and at the next of these when ``stop``
        was requested (then :class:`ramble.errors.Interrupted` is raised); a
        move whose certificate or repair is running then is abandoned
        (:meth:`moves`).
        """
        cfg, it = self.cfg, first_it
        self.checkpoint, self.stop = checkpoint, stop
        if self.anchor is None:
            self.anchor = self.state(first_it)
        while it < cfg.max_iterations:
            if self.cursor.fresh:
                if self.stop_requested():
                    self.commit_and_stop(it)
                if checkpoint is not None and it > first_it and checkpoint.due():
                    checkpoint.save(self.snapshot(it))
            failure = self.moves(it)
            if failure is not None:
                if self.close_chord(it):  # in lazy mode the failing step left S at its end point
                    return self.finish("failed", failure, it + 1)
                it = self.anchor.it
                continue
            rel = float((self.w - self.w_b).norm()) / self.d_ab
            arriving = rel <= cfg.tol and rel <= 0.5 * self.last_failed_check
            stalled = rel >= self.best * 0.99 and it - self.best_iter >= cfg.patience
            if (self.chord_due(it) or arriving or stalled or it + 1 == cfg.max_iterations) and not self.close_chord(it):
                it = self.anchor.it
                continue
            if not self.vertex_rows and (it + 1) % cfg.record_every == 0:
                self.record(self.w, it)
            if self.progress is not None:
                self.progress(it, 1.0 - rel)
            if arriving:
                if self.arrive(it):
                    return self.finish("complete", "", it + 1)
                self.last_failed_check = rel
            if rel < self.best * 0.99:
                self.best, self.best_iter = rel, it
            elif stalled:
                return self.finish("failed", f"stalled: no 1% progress toward W_b in {cfg.patience} iterations, {rel:.3g} of the distance left", it + 1)
            self.end_iteration(it)
            it += 1
        rel = float((self.w - self.w_b).norm()) / self.d_ab
        return self.finish("failed", f"iteration limit {cfg.max_iterations} reached, {rel:.3g} of the distance left", cfg.max_iterations)


def find_path(
    problem: PathProblem,
    w_a: torch.Tensor,
    w_b: torch.Tensor,
    config: PathConfig = PathConfig(),
    progress: Optional[ProgressFn] = None,
    measure: Optional[MeasureFn] = None,
    frame: Optional[tuple[torch.Tensor, torch.Tensor]] = None,
    checkpoint: Optional[Checkpoint] = None,
) -> PathResult:
    """Draw a path from ``w_a`` to ``w_b`` inside S (Algorithm 1, module docstring).

    Both endpoints must be in S and have the same shape; a ConfigError says
    which is not.  ``progress(iteration, distance)`` is called after every
    iteration when given; ``measure(w)`` at every recorded point, its values
    returned in ``PathResult.extra``.  ``frame=(W_A, W_B)`` measures
    ``distance`` against another pair of endpoints (a leg of a longer path).
    ``checkpoint`` (:mod:`ramble.storage.checkpoint`): the run continues from its
    saved state if it has one, and saves its state whenever it is due (at a
    vertex); the result is the same as without interruption.
    """
    check_endpoints(problem, w_a, w_b)
    for name, w in (("W_a", w_a), ("W_b", w_b)):
        if not problem.contains(w):
            wrong = int((~(problem.margins(w) > 0)).sum())  # NaN margins count as wrong
            raise ConfigError(f"{name} is not a solution: it misclassifies {wrong} of {problem.n_samples} training samples")
    search = _PathSearch(problem, w_a, w_b, config, progress, measure, frame)
    saved = checkpoint.load() if checkpoint is not None else None
    if saved is not None:
        first_it = search.restore(saved)
    else:
        first_it = 0
        search.record(search.w, -1)
        if search.d_ab == 0.0:
            return search.finish("complete", "", 0)
    with stop_on_signals(checkpoint is not None) as stop:
        result = search.iterate(first_it, checkpoint, stop)
    if stop is not None and stop.signal is not None:  # it came in the last iteration: honour it now, with the usual handler
        signal.raise_signal(signal.Signals[stop.signal])
    return result


def check_endpoints(problem: PathProblem, w_a: torch.Tensor, w_b: torch.Tensor) -> None:
    """ConfigError unless ``w_a`` and ``w_b`` are flat vectors of the problem's parameter count."""
    n = max((g.stop for g in problem.groups), default=0)
    if w_a.dim() != 1 or w_b.dim() != 1 or w_a.shape != w_b.shape or w_a.shape[0] != n:
        raise ConfigError(f"endpoints must be flat vectors of the model's {n} parameters, got shapes {tuple(w_a.shape)} and {tuple(w_b.shape)}")


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


def straight_line(problem: PathProblem, w_a: torch.Tensor, w_b: torch.Tensor, n_points: int = 101, measure: Optional[MeasureFn] = None,
                  progress: bool = False) -> dict[str, np.ndarray]:
    """Train loss and error along l_ab(t) = W_a + t (W_b - W_a) (Eq. 2) at ``n_points`` evenly spaced t in [0, 1].

    Returns ``alpha``, ``train_loss``, ``train_error`` and ``measure``'s
    columns (e.g. ``test_error``), each (n_points,); ``progress``: a bar.
    """
    from ramble.progress import progress_bar

    if n_points < 2:
        raise ConfigError(f"the straight line needs at least 2 points, got {n_points}")
    check_endpoints(problem, w_a, w_b)
    alpha = np.linspace(0.0, 1.0, n_points)
    rows = []
    for a in progress_bar(alpha, desc="straight line", unit="point", disable=not progress):
        w = w_a + float(a) * (w_b - w_a)
        ev = problem.evaluate(w)
        rows.append({"train_loss": ev.loss, "train_error": ev.error, **(measure(w) if measure is not None else {})})
    return {"alpha": alpha, **{k: np.array([r[k] for r in rows]) for k in rows[0]}}


SolveFn = Callable[[torch.Tensor], Optional[torch.Tensor]]
LegFn = Callable[..., PathResult]
"""``leg(start, target, frame, checkpoint=None) -> PathResult``: one leg, e.g. :func:`find_path` on some backend."""
CertifyFn = Callable[[torch.Tensor, torch.Tensor], SegmentCertificate]
"""``certify(w0, w1)``: :meth:`ramble.core.problem.PathProblem.certify_segment` of some backend."""


def find_path_with_waypoints(
    leg: LegFn,
    solve: SolveFn,
    w_a: torch.Tensor,
    w_b: torch.Tensor,
    max_waypoints: int,
    checkpoint: Optional[Checkpoint] = None,
    frame: Optional[tuple[torch.Tensor, torch.Tensor]] = None,
) -> PathResult:
    """Algorithm 1 with waypoints: when a leg stalls, go through a new solution.

    ``leg(start, target, frame, checkpoint)`` runs :func:`find_path` (any
    backend) from ``start`` to ``target`` measuring distance in ``frame``
    (default ``(w_a, w_b)``; the norm escape passes the outer pair).  When a
    leg ends "stalled" (the survey network is held at a
    wall of S that the greedy pull toward the target cannot get around) and
    fewer than ``max_waypoints`` were used, the point reached, ``w_s``, is
    kept, a waypoint is trained from the midpoint of ``w_s`` and the target by
    ``solve`` (gradient descent into S, the way solutions are found), and the
    path continues ``w_s -> waypoint -> target``; this recurses.  Each leg
    keeps Eq. 4 between its own endpoints.  The merged result's ``extra``
    holds ``leg`` (T,), the leg of every recorded point, and ``waypoints``
    lists the iteration at which each waypoint was reached.  With
    ``checkpoint``, the legs done so far and the running leg's state are
    saved together, and a saved state is continued from.
    """

    legs: list[PathResult] = []
    targets = [w_b]
    start = w_a
    used = 0
    frame = frame if frame is not None else (w_a, w_b)
    leg_state = None
    saved = checkpoint.load() if checkpoint is not None else None
    if saved is not None:
        legs = [result_from_state(d) for d in saved["legs"]]
        targets = [t.to(w_a.device, w_a.dtype) for t in saved["targets"]]
        start = saved["start"].to(w_a.device, w_a.dtype)
        used = int(saved["used"])
        leg_state = saved.get("leg")

    def driver_state() -> dict:
        return {"legs": [result_to_state(r) for r in legs], "targets": [t.cpu() for t in targets], "start": start.cpu(), "used": used}

    while targets:
        target = targets[-1]
        view = NestedCheckpoint(checkpoint, driver_state, leg_state) if checkpoint is not None else None
        leg_state = None
        r = leg(start, target, frame, view)
        legs.append(r)
        if r.complete:
            start = target
            targets.pop()
            continue
        if not r.reason.startswith("stalled") or used >= max_waypoints:
            return in_frame(merge_legs(legs, "failed", r.reason + (f" (after {used} waypoint(s))" if used else ""), used), frame)
        w_s = torch.as_tensor(r.weights[-1], dtype=w_a.dtype, device=w_a.device)
        waypoint = solve(0.5 * (w_s + target))
        if waypoint is None:
            return in_frame(merge_legs(legs, "failed", r.reason + "; no waypoint solution could be trained from the midpoint", used), frame)
        used += 1
        start = w_s
        targets.append(waypoint)
    return in_frame(merge_legs(legs, "complete", "", used), frame)


ESCAPE_SCALES: tuple[float, ...] = (1.5, 2.0)
"""Norm scales tried by :func:`find_path_with_escape` when the path at the endpoints' own norms fails."""


def straight_leg(
    certify: CertifyFn,
    evaluate: Callable[[torch.Tensor], "Evaluation"],
    w_from: torch.Tensor,
    w_to: torch.Tensor,
    frame: Optional[tuple[torch.Tensor, torch.Tensor]] = None,
    measure: Optional[MeasureFn] = None,
) -> Optional[PathResult]:
    """The straight segment ``w_from -> w_to`` as a one-segment leg, if ``certify`` proves it inside S; else None.

    Its two vertices are recorded, with ``measure``'s metrics (e.g. test
    error) in ``extra`` as the other legs have them; ``distance`` is measured
    in ``frame`` (default ``(w_from, w_to)``).
    """
    c = certify(w_from, w_to)
    if not c.certified:
        return None
    ref_a, ref_b = frame if frame is not None else (w_from, w_to)
    d = float((ref_b - ref_a).norm())
    pts = [w_from, w_to]
    evs = [evaluate(w) for w in pts]
    return PathResult(
        status="complete", reason="", weights=torch.stack(pts).detach().cpu().numpy(),
        iteration=np.full(2, -1, dtype=np.int64),
        distance=np.array([1.0 - float((w - ref_b).norm()) / d if d > 0 else 1.0 for w in pts]),
        train_loss=np.array([e.loss for e in evs]), train_error=np.array([e.error for e in evs]),
        decisions=np.zeros(0, dtype=np.int8), gd_refused=np.zeros(0, dtype=np.int8), iterations=0,
        elastic_accepted=0, elastic_repaired=0, elastic_refused=0, gd_accepted=0, gd_refused_total=0,
        segment_checks=1, wall_time=c.seconds, arclength=np.array([0.0, float((w_to - w_from).norm())]),
        segments_certified=1, cert_pieces=c.pieces, cert_min_margin=c.margin_bound, cert_seconds=c.seconds,
        extra=measured(measure, pts),
    )


def measured(measure: Optional[MeasureFn], points: Sequence[torch.Tensor]) -> dict[str, np.ndarray]:
    """``measure``'s metrics at ``points`` as (len(points),) arrays by name; {} without a measure."""
    if measure is None:
        return {}
    rows = [measure(w) for w in points]
    return {k: np.array([r[k] for r in rows]) for k in rows[0]}


def find_path_with_escape(
    leg: LegFn,
    solve: SolveFn,
    certify: CertifyFn,
    evaluate: Callable[[torch.Tensor], "Evaluation"],
    w_a: torch.Tensor,
    w_b: torch.Tensor,
    max_waypoints: int,
    scales: Sequence[float] = ESCAPE_SCALES,
    checkpoint: Optional[Checkpoint] = None,
    measure: Optional[MeasureFn] = None,
) -> PathResult:
    """:func:`find_path_with_waypoints` (saving and continuing from ``checkpoint``), and if it fails, the same path at a larger norm.

    Norm escape: for each c in ``scales``, if the radial segments
    ``w_a -> c w_a`` and ``c w_b -> w_b`` are certified inside S, the path
    ``c w_a -> c w_b`` is drawn (with waypoints) and the three are joined.
    Why: the greedy pull can stall near a local minimum
    of the distance to W_b within S (docs/path-algorithm.md, seed 108), while
    at a larger norm the same pair connects; scaling a TCM's weights by c is
    clipping htanh at 1/c.  The merged result's ``escape_scale`` says which
    c was used (1.0: none); the radial legs have iteration -1.  Every leg
    measures ``distance`` against ``(w_a, w_b)``; ``measure`` adds the radial
    legs' metrics that ``leg`` adds to its points.
    """
    r = find_path_with_waypoints(leg, solve, w_a, w_b, max_waypoints, checkpoint=checkpoint)
    if r.complete or not scales:
        return r
    return escape_at_larger_norms(leg, solve, certify, evaluate, w_a, w_b, max_waypoints, r, scales, measure)


def escape_at_larger_norms(
    leg: LegFn,
    solve: SolveFn,
    certify: CertifyFn,
    evaluate: Callable[[torch.Tensor], Evaluation],
    w_a: torch.Tensor,
    w_b: torch.Tensor,
    max_waypoints: int,
    failed: PathResult,
    scales: Sequence[float] = ESCAPE_SCALES,
    measure: Optional[MeasureFn] = None,
) -> PathResult:
    """The norm escape of :func:`find_path_with_escape` after a first attempt ``failed`` (returned, reason extended, if every scale fails)."""
    frame = (w_a, w_b)
    tried = []
    for c in scales:
        up = straight_leg(certify, evaluate, w_a, c * w_a, frame, measure)
        down = straight_leg(certify, evaluate, c * w_b, w_b, frame, measure) if up is not None else None
        if up is None or down is None:
            tried.append(f"{c:g} (radial segment not certified inside S)")
            continue
        mid = find_path_with_waypoints(leg, solve, c * w_a, c * w_b, max_waypoints, frame=frame)
        if not mid.complete:
            tried.append(f"{c:g} ({mid.reason})")
            continue
        merged = in_frame(merge_legs([up, mid, down], "complete", "", mid.waypoints_trained), frame)
        merged.waypoints = list(mid.waypoints)  # the radial legs take no iterations
        merged.escape_scale = float(c)
        merged.config = dict(mid.config)
        return merged
    failed.reason += "; norm escape failed at scale " + ", ".join(tried)
    return failed


def weight_points_only(r: PathResult) -> PathResult:
    """``r`` restricted to its recorded points that kept weights, so that every point's weights are kept; ``r`` itself if they all did.

    Routing measures a joined path against a new pair of endpoints, which
    needs the weights of every point it keeps.  Per-iteration arrays
    (``decisions``, ``gd_refused``) and the waypoint iterations are unchanged.
    """
    if r.weight_index is None:
        return r
    idx = np.asarray(r.weight_index)
    return replace(
        r, iteration=r.iteration[idx], distance=r.distance[idx], train_loss=r.train_loss[idx], train_error=r.train_error[idx],
        extra={k: np.asarray(v)[idx] for k, v in r.extra.items()}, arclength=None if r.arclength is None else r.arclength[idx], weight_index=None,
    )


def reversed_path(r: PathResult) -> PathResult:
    """The same complete path walked backwards; iterations count down.  A path kept at a weight stride keeps only its points with weights (:func:`weight_points_only`)."""
    r = weight_points_only(r)
    n = r.iterations
    w = r.weights[::-1].astype(np.float64)
    d = np.linalg.norm(w[-1] - w[0])
    arc = None if r.arclength is None else (r.arclength[-1] - r.arclength[::-1])
    return PathResult(
        status=r.status, reason=r.reason, weights=r.weights[::-1].copy(),
        iteration=np.where(r.iteration[::-1] >= 0, n - 1 - r.iteration[::-1], -1),
        distance=1.0 - np.linalg.norm(w - w[-1], axis=1) / d if d > 0 else np.ones(len(w)), train_loss=r.train_loss[::-1].copy(), train_error=r.train_error[::-1].copy(),
        decisions=r.decisions[::-1].copy(), gd_refused=r.gd_refused[::-1].copy(), iterations=n,
        elastic_accepted=r.elastic_accepted, elastic_repaired=r.elastic_repaired, elastic_refused=r.elastic_refused,
        gd_accepted=r.gd_accepted, gd_refused_total=r.gd_refused_total, segment_checks=r.segment_checks,
        wall_time=r.wall_time, config=r.config, extra={k: np.asarray(v)[::-1].copy() for k, v in r.extra.items()},
        waypoints=[n - w for w in r.waypoints][::-1], waypoints_trained=r.waypoints_trained, escape_scale=r.escape_scale, via=list(r.via)[::-1],
        arclength=arc, segments_certified=r.segments_certified, cert_pieces=r.cert_pieces,
        cert_min_margin=r.cert_min_margin, cert_seconds=r.cert_seconds,
    )


def route_through(first: PathResult, second: PathResult, k: int, frame: tuple[torch.Tensor, torch.Tensor]) -> PathResult:
    """W_i -> W_k -> W_j from two complete paths sharing the solution ``k``; legs kept at a weight stride keep only their points with weights."""
    first, second = weight_points_only(first), weight_points_only(second)
    merged = in_frame(merge_legs([first, second], "complete", "", first.waypoints_trained + second.waypoints_trained), frame)
    merged.via = list(first.via) + [int(k)] + list(second.via)
    merged.waypoints = list(first.waypoints) + [first.iterations + w for w in second.waypoints]
    merged.escape_scale = max(first.escape_scale, second.escape_scale)
    return merged


def in_frame(r: PathResult, frame: tuple[torch.Tensor, torch.Tensor]) -> PathResult:
    """Recompute ``distance`` against ``frame = (w_a, w_b)`` when every point's weights are kept.

    With weights kept at a stride the legs must already measure in ``frame``
    (:func:`find_path_with_waypoints` passes it to every leg).
    """
    if r.weight_index is None and len(r.weights):
        a = frame[0].detach().cpu().double().numpy()
        b = frame[1].detach().cpu().double().numpy()
        d = np.linalg.norm(b - a)
        if d > 0:
            r.distance = 1.0 - np.linalg.norm(r.weights.astype(np.float64) - b, axis=1) / d
    return r


def merged_arclength(legs: list[PathResult]) -> Optional[np.ndarray]:
    """Arc length of consecutive legs joined (each later leg's first point dropped), or None if a leg has none."""
    if any(r.arclength is None for r in legs):
        return None
    parts, offset = [], 0.0
    for n, r in enumerate(legs):
        parts.append(r.arclength[0 if n == 0 else 1:] + offset)
        offset += float(r.arclength[-1]) if len(r.arclength) else 0.0
    return np.concatenate(parts)


def merge_legs(legs: list[PathResult], status: str, reason: str, trained: int = 0) -> PathResult:
    """One PathResult from consecutive legs (each leg's first point is the previous leg's last).

    ``trained``: waypoints trained (``waypoints`` lists those actually reached).
    The config is the first leg's that has one (a straight radial leg of the
    norm escape has none).
    """
    if len(legs) == 1:
        r = legs[0]
        r.status, r.reason = status, reason
        r.waypoints_trained = trained
        r.extra = dict(r.extra, leg=np.zeros(len(r.iteration), dtype=np.int64))
        return r
    weights, rows, iters, dist, loss, err, leg_of = [], [], [], [], [], [], []
    extra: dict[str, list[np.ndarray]] = {}
    # per-point extras kept only where every leg has them (a straight radial leg has none)
    common = set.intersection(*(set(r.extra) for r in legs)) - {"leg"}
    offset_rows = 0
    offset_iter = 0
    waypoints = []
    for n, r in enumerate(legs):
        skip = 0 if n == 0 else 1  # the joint point is already recorded
        t = len(r.iteration)
        idx = np.arange(t) if r.weight_index is None else r.weight_index
        keep_w = idx >= skip
        weights.append(r.weights[keep_w])
        rows.append(idx[keep_w] - skip + offset_rows)
        it = r.iteration[skip:].copy()
        iters.append(np.where(it >= 0, it + offset_iter, offset_iter - 1))
        dist.append(r.distance[skip:])
        loss.append(r.train_loss[skip:])
        err.append(r.train_error[skip:])
        leg_of.append(np.full(t - skip, n, dtype=np.int64))
        for k in common:
            extra.setdefault(k, []).append(np.asarray(r.extra[k])[skip:])
        offset_rows += t - skip
        offset_iter += r.iterations
        if n < len(legs) - 1 and legs[n].complete:
            waypoints.append(offset_iter)
    all_rows = np.concatenate(rows)
    merged = PathResult(
        status=status,
        reason=reason,
        weights=np.concatenate(weights),
        iteration=np.concatenate(iters),
        distance=np.concatenate(dist),
        train_loss=np.concatenate(loss),
        train_error=np.concatenate(err),
        decisions=np.concatenate([r.decisions for r in legs]),
        gd_refused=np.concatenate([r.gd_refused for r in legs]),
        iterations=offset_iter,
        elastic_accepted=sum(r.elastic_accepted for r in legs),
        elastic_repaired=sum(r.elastic_repaired for r in legs),
        elastic_refused=sum(r.elastic_refused for r in legs),
        gd_accepted=sum(r.gd_accepted for r in legs),
        gd_refused_total=sum(r.gd_refused_total for r in legs),
        segment_checks=sum(r.segment_checks for r in legs),
        wall_time=sum(r.wall_time for r in legs),
        config=next((r.config for r in legs if r.config), {}),
        weight_index=None if len(all_rows) == offset_rows else all_rows,
        extra={k: np.concatenate(v) for k, v in extra.items()},
        arclength=merged_arclength(legs),
        segments_certified=sum(r.segments_certified for r in legs),
        cert_pieces=sum(r.cert_pieces for r in legs),
        cert_min_margin=min(r.cert_min_margin for r in legs),
        cert_seconds=sum(r.cert_seconds for r in legs),
    )
    merged.extra["leg"] = np.concatenate(leg_of)
    merged.waypoints = waypoints
    merged.waypoints_trained = trained
    return merged
