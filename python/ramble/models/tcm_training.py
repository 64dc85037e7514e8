"""Finding solutions of the TCM by gradient descent on the BCE (paper Sect. 3.1).

The core, :func:`gd_solve`, is full-batch gradient descent from a given
start, with a least-action correction of the remaining errors whenever GD
stalls (docs/solutions.md says why and what it costs): it stops at the first
epoch whose weights classify every pattern, then keeps descending until the
smallest margin reaches ``polish_margin``, so that the path algorithm does not
start on the frontier of S.  The Julia backend implements the same function (``Ramble.gd_solve``);
the restart policy lives in Python (:func:`solve_with_restarts`) and is shared
by both backends, so they see the same starting points.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Callable, Optional

import numpy as np
import torch

from ramble.errors import ConfigError


@dataclass(frozen=True)
class TrainConfig:
    """How solutions are trained.

    ``lr``: GD learning rate on the mean BCE.  ``init_scale``: standard
    deviation of the Gaussian initial weights, in units of 1/sqrt(N/K) (so 1.0
    gives hidden fields of unit variance).  ``kick_after``: GD epochs before
    the first least-action correction; ``kick_every``: epochs between later
    ones; ``max_epochs``: GD epochs per attempt in all.  ``restarts``: attempts
    per solution, each from a fresh Gaussian draw.  ``polish_margin``: after
    reaching S, continue GD until every margin sigma*S is at least this (0
    disables), for at most ``polish_epochs``.
    """

    lr: float = 0.1
    init_scale: float = 0.5
    kick_after: int = 5_000
    kick_every: int = 1_000
    max_epochs: int = 40_000
    restarts: int = 10
    polish_margin: float = 0.1
    polish_epochs: int = 20_000

    def __post_init__(self) -> None:
        if not (self.lr > 0.0) or not np.isfinite(self.lr):
            raise ConfigError(f"training learning rate must be a finite number > 0, got {self.lr}")
        if not (self.init_scale > 0.0) or not np.isfinite(self.init_scale):
            raise ConfigError(f"init scale must be a finite number > 0, got {self.init_scale}")
        if self.max_epochs < 1:
            raise ConfigError(f"max epochs must be >= 1, got {self.max_epochs}")
        if self.kick_after < 1 or self.kick_every < 1:
            raise ConfigError(f"kick_after and kick_every must be >= 1, got {self.kick_after} and {self.kick_every}")
        if self.restarts < 1:
            raise ConfigError(f"restarts must be >= 1, got {self.restarts}")
        if not (self.polish_margin >= 0.0):  # NaN too
            raise ConfigError(f"polish margin must be >= 0, got {self.polish_margin}")
        if self.polish_epochs < 0:
            raise ConfigError(f"polish epochs must be >= 0, got {self.polish_epochs}")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class SolveOutcome:
    """Result of one GD attempt: final weights (N,), whether they are in S,
    GD epochs spent reaching S (or all of them), least-action kicks,
    polishing epochs, final errors, smallest margin."""

    w: np.ndarray
    solved: bool
    epochs: int
    kicks: int
    polish_epochs: int
    errors: int
    min_margin: float


KICK_FIELD = 0.5
"""Field (times sigma) a least-action kick gives the unit it moves."""


def least_action_kick(problem, w: torch.Tensor) -> torch.Tensor:
    """One least-action correction (Nilsson; Mitchison & Durbin 1989) of every misclassified pattern.

    For each pattern mu with margin <= 0 (fields h taken before any change),
    the hidden unit voting against sigma_mu with the smallest |h_k| (any unit
    if none votes against) gets ``w_k += (c sigma_mu - h_k) xi_k / (N/K)``,
    which sets that field to exactly ``c sigma_mu`` (|xi_k|^2 = N/K for +-1
    inputs), c = KICK_FIELD = 0.5: across zero, inside htanh's linear range so
    GD keeps acting on it, and off its kink at 1, where rounding would decide
    the slope and the two backends could part.  GD alone stalls with a few
    errors whose units are all saturated (htanh' = 0, so no gradient reaches
    them); this moves the least committed unit across.
    """
    h = problem.fields(w)
    sigma = problem.sigma
    m = sigma * torch.nn.functional.hardtanh(h).sum(dim=1)
    out = w.clone().view(problem.n_hidden, problem.n_per_unit)
    for mu in torch.nonzero(m <= 0).flatten().tolist():
        wrong = torch.nonzero(sigma[mu] * h[mu] < 0).flatten()
        cands = wrong if len(wrong) > 0 else torch.arange(problem.n_hidden)
        k = int(cands[torch.argmin(h[mu, cands].abs())])
        out[k] += (KICK_FIELD * float(sigma[mu]) - float(h[mu, k])) / problem.n_per_unit * problem.xi[mu, k]
    return out.reshape(-1)


def gd_solve(problem, w0: np.ndarray, cfg: TrainConfig) -> SolveOutcome:
    """Full-batch GD from ``w0`` on ``problem`` (a :class:`ramble.models.tcm.TCMProblem`) until S, then polishing.

    Every epoch is one GD step on the mean BCE followed by a membership test.
    If S is not reached after ``kick_after`` epochs, and again every
    ``kick_every`` epochs, :func:`least_action_kick` corrects the remaining
    errors and GD resumes; at most ``max_epochs`` GD epochs in all.
    """
    w = torch.from_numpy(np.asarray(w0, dtype=np.float64)).clone()
    epochs = 0
    kicks = 0
    next_kick = cfg.kick_after
    m = problem.margins(w)
    while not bool((m > 0).all()) and epochs < cfg.max_epochs:
        if epochs == next_kick:
            w = least_action_kick(problem, w)
            kicks += 1
            next_kick += cfg.kick_every
        w = problem.descent_step(w, cfg.lr)
        epochs += 1
        m = problem.margins(w)
    solved = bool((m > 0).all())
    polish = 0
    if solved:
        # Keep descending; the returned point is the in-S iterate with the
        # largest smallest margin (GD on the mean BCE does not raise the
        # smallest margin monotonically, and may briefly leave S).
        best_w, best_m = w, m
        while float(best_m.min()) < cfg.polish_margin and polish < cfg.polish_epochs:
            w = problem.descent_step(w, cfg.lr)
            m = problem.margins(w)
            polish += 1
            if float(m.min()) > float(best_m.min()):
                best_w, best_m = w, m
        w, m = best_w, best_m
    return SolveOutcome(
        w=w.numpy().copy(),
        solved=solved,
        epochs=epochs,
        kicks=kicks,
        polish_epochs=polish,
        errors=int((m <= 0).sum()),
        min_margin=float(m.min()),
    )


def attempt_seed(base_seed: int, solution: int, attempt: int) -> int:
    """Seed of the initial weights of attempt ``attempt`` of solution ``solution``.

    Distinct for every (solution, attempt) pair and independent of the data seed
    stream (the data uses ``base_seed`` itself).
    """
    return int(np.random.SeedSequence([base_seed, 1 + solution, attempt]).generate_state(1)[0])


SolveFn = Callable[[np.ndarray], SolveOutcome]


@dataclass
class Solution:
    """A trained solution and its cost: weights (N,), the attempt that
    succeeded (0-based), total epochs over all attempts, seconds."""

    w: np.ndarray
    seed: int
    attempts: int
    epochs: int
    kicks: int
    polish_epochs: int
    min_margin: float
    seconds: float


def solve_with_restarts(
    solve: SolveFn,
    init: Callable[[int], np.ndarray],
    base_seed: int,
    index: int,
    cfg: TrainConfig,
    log: Optional[Callable[[str], None]] = None,
) -> Solution:
    """Try up to ``cfg.restarts`` initial draws until ``solve`` reaches S.

    ``init(seed)`` draws initial weights.  Raises RambleError when every
    attempt fails, naming the best error count reached.
    """
    from ramble.errors import RambleError

    start = time.perf_counter()
    total = 0
    best = None
    for attempt in range(cfg.restarts):
        seed = attempt_seed(base_seed, index, attempt)
        out = solve(init(seed))
        total += out.epochs + out.polish_epochs
        if out.solved:
            return Solution(
                w=out.w,
                seed=seed,
                attempts=attempt + 1,
                epochs=total,
                kicks=out.kicks,
                polish_epochs=out.polish_epochs,
                min_margin=out.min_margin,
                seconds=time.perf_counter() - start,
            )
        best = out.errors if best is None else min(best, out.errors)
        if log:
            log(f"solution {index}: attempt {attempt + 1} stopped with {out.errors} errors after {out.epochs} epochs")
    raise RambleError(
        f"no solution found for solution {index} in {cfg.restarts} attempts of {cfg.max_epochs} epochs "
        f"(best: {best} training errors); raise --restarts or --max-epochs"
    )
