"""Connecting two solutions of any :class:`ramble.core.problem.PathProblem`: legs of Algorithm 1, waypoints, the norm escape.

This is how every network run (LeNet5, one's own torch classifier) and
``ramble align`` join a pair; the TCM backends do the same with their own
legs and training (:func:`ramble.models.tcm_backends.connect`).
"""

from __future__ import annotations

from typing import Callable, Optional

import torch

from ramble.core.checkpoint import Checkpoint
from ramble.core.path import ESCAPE_SCALES, MeasureFn, PathConfig, PathResult, find_path, find_path_with_escape
from ramble.core.problem import PathProblem

__all__ = ["connect", "descend_into_s"]


def descend_into_s(problem: PathProblem, w0: torch.Tensor, lr: float, max_epochs: int) -> Optional[torch.Tensor]:
    """Full-training-set gradient-descent steps of ``lr`` from ``w0`` until every training sample is right; None after ``max_epochs``."""
    w = w0
    for _ in range(max_epochs):
        if problem.contains(w):
            return w
        w = problem.descent_step(w, lr)
    return w if problem.contains(w) else None


def connect(
    problem: PathProblem,
    w_a: torch.Tensor,
    w_b: torch.Tensor,
    config: PathConfig = PathConfig(),
    *,
    measure: Optional[MeasureFn] = None,
    checkpoint: Optional[Checkpoint] = None,
    progress: Optional[Callable[[int, float], None]] = None,
    train_lr: float = 0.1,
    max_epochs: int = 2000,
) -> PathResult:
    """A path from ``w_a`` to ``w_b`` inside S, every segment certified: Algorithm 1 with waypoints, then the norm escape.

    Repair variant only: when a leg stalls, a waypoint is trained from the
    midpoint of the point reached and the leg's target by
    :func:`descend_into_s` (``train_lr``, at most ``max_epochs``), up to
    ``config.max_waypoints``; if the path still fails and ``config.escape``,
    it is drawn again at 1.5x and 2x the endpoints' norms
    (:func:`ramble.core.path.find_path_with_escape`).  The paper variant is
    one leg.  ``measure(w)`` adds per-point metrics (e.g. test error);
    ``checkpoint`` saves and continues the first attempt mid-path.
    """
    repair = config.variant == "repair"

    def leg(start: torch.Tensor, target: torch.Tensor, frame: tuple, cp: Optional[Checkpoint] = None) -> PathResult:
        return find_path(problem, start, target, config, progress=progress, measure=measure, frame=frame, checkpoint=cp)

    def solve(w0: torch.Tensor) -> Optional[torch.Tensor]:
        return descend_into_s(problem, w0, train_lr, max_epochs)

    return find_path_with_escape(
        leg, solve, problem.certify_segment, problem.evaluate, w_a, w_b,
        config.max_waypoints if repair else 0, ESCAPE_SCALES if repair and config.escape else (), checkpoint, measure,
    )
