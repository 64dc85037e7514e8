"""The two TCM backends behind one interface: Julia (default) and Python.

Both take the same NumPy data and initial weights and return NumPy arrays and
:class:`ramble.core.path.PathResult` objects, so the experiment driver, the HDF5
writer and the cross-check never care which language ran.
"""

from __future__ import annotations

from typing import Optional, Protocol

import numpy as np
import torch

from ramble.core.checkpoint import Checkpoint
from ramble.core.path import ESCAPE_SCALES, PathConfig, PathResult, ProgressFn, find_path, find_path_with_escape, straight_line
from ramble.core.problem import Evaluation, SegmentCertificate
from ramble.errors import ConfigError
from ramble.models.patterns import Patterns
from ramble.models.tcm import TCMProblem
from ramble.models.tcm_training import SolveOutcome, TrainConfig, gd_solve

BACKENDS: tuple[str, ...] = ("julia", "python")


class TCMBackend(Protocol):
    """A TCM implementation bound to one training set and K."""

    name: str

    def loss_and_grad(self, w: np.ndarray) -> tuple[float, np.ndarray]:
        """Mean BCE at ``w`` (N,) and its gradient (N,)."""
        ...

    def margins(self, w: np.ndarray) -> np.ndarray:
        """sigma * S per pattern, (M,)."""
        ...

    def gd_solve(self, w0: np.ndarray, cfg: TrainConfig) -> SolveOutcome:
        """Gradient descent from ``w0`` until S (and polishing), see :func:`ramble.models.tcm_training.gd_solve`."""
        ...

    def find_path(
        self, w_a: np.ndarray, w_b: np.ndarray, cfg: PathConfig, progress: Optional[ProgressFn] = None,
        frame: Optional[tuple[np.ndarray, np.ndarray]] = None, checkpoint: Optional[Checkpoint] = None,
    ) -> PathResult:
        """Algorithm 1 from ``w_a`` to ``w_b``; ``distance`` measured against ``frame`` (default the endpoints); ``checkpoint``: mid-path state, where the backend can save it."""
        ...

    def certify_segment(self, w0: np.ndarray, w1: np.ndarray) -> SegmentCertificate:
        """Exact certificate of the segment ``w0 -> w1`` (:meth:`ramble.models.tcm.TCMProblem.certify_segment`)."""
        ...

    def straight_line(self, w_a: np.ndarray, w_b: np.ndarray, n_points: int) -> dict[str, np.ndarray]:
        """Train loss/error along Eq. 2 at ``n_points`` evenly spaced alphas."""
        ...

    def hessian(self, w: np.ndarray) -> np.ndarray:
        """Exact Hessian of the mean BCE at ``w``, (N, N)."""
        ...


class PythonTCM:
    """The PyTorch float64 TCM (:mod:`ramble.models.tcm`) as a backend."""

    name = "python"

    def __init__(self, patterns: Patterns, n_hidden: int) -> None:
        self.problem = TCMProblem(patterns, n_hidden)

    def _t(self, w: np.ndarray) -> torch.Tensor:
        arr = np.ascontiguousarray(w, dtype=np.float64)
        if arr.ndim != 1 or arr.shape[0] != self.problem.n_inputs:
            # the same check and message as the Julia backend's
            raise ConfigError(f"weights must be a flat vector of length N={self.problem.n_inputs}, got shape {arr.shape}")
        return torch.from_numpy(arr)

    def loss_and_grad(self, w: np.ndarray) -> tuple[float, np.ndarray]:
        loss, grad = self.problem.loss_and_grad(self._t(w))
        return loss, grad.numpy()

    def margins(self, w: np.ndarray) -> np.ndarray:
        return self.problem.margins(self._t(w)).numpy()

    def gd_solve(self, w0: np.ndarray, cfg: TrainConfig) -> SolveOutcome:
        return gd_solve(self.problem, w0, cfg)

    def find_path(
        self, w_a: np.ndarray, w_b: np.ndarray, cfg: PathConfig, progress: Optional[ProgressFn] = None,
        frame: Optional[tuple[np.ndarray, np.ndarray]] = None, checkpoint: Optional[Checkpoint] = None,
    ) -> PathResult:
        ref = None if frame is None else (self._t(frame[0]), self._t(frame[1]))
        return find_path(self.problem, self._t(w_a), self._t(w_b), cfg, progress, frame=ref, checkpoint=checkpoint)

    def certify_segment(self, w0: np.ndarray, w1: np.ndarray) -> SegmentCertificate:
        return self.problem.certify_segment(self._t(w0), self._t(w1))

    def straight_line(self, w_a: np.ndarray, w_b: np.ndarray, n_points: int) -> dict[str, np.ndarray]:
        return straight_line(self.problem, self._t(w_a), self._t(w_b), n_points)

    def hessian(self, w: np.ndarray) -> np.ndarray:
        return self.problem.hessian(self._t(w)).numpy()


def make_backend(name: str, patterns: Patterns, n_hidden: int) -> TCMBackend:
    """Backend ``name`` ("julia" or "python") bound to ``patterns`` and K."""
    if name == "python":
        return PythonTCM(patterns, n_hidden)
    if name == "julia":
        from ramble.julia.backend import JuliaTCM

        return JuliaTCM(patterns, n_hidden)
    raise ConfigError(f"unknown backend {name!r}; expected one of: {', '.join(BACKENDS)}")


def connect(
    backend: TCMBackend,
    w_a: np.ndarray,
    w_b: np.ndarray,
    path_cfg: PathConfig,
    train_cfg: TrainConfig,
    progress: Optional[ProgressFn] = None,
    checkpoint: Optional[Checkpoint] = None,
) -> PathResult:
    """The path from ``w_a`` to ``w_b`` on any backend, through waypoints when a leg stalls.

    Waypoints are trained by the backend's ``gd_solve`` (as solutions are),
    starting from the midpoint; ``path_cfg.max_waypoints`` bounds them.  If
    that fails, the norm escape of :func:`ramble.core.path.find_path_with_escape`
    (``path_cfg.escape``).  The paper variant uses neither.  ``checkpoint``
    saves and continues the first attempt mid-path on the Python backend; a
    Julia leg is one call (0.04 s median at the paper's size), so a Julia path
    restarts from its start, and draws the same path again.
    """
    max_wp = path_cfg.max_waypoints if path_cfg.variant == "repair" else 0

    def leg(start: torch.Tensor, target: torch.Tensor, frame: tuple, cp: Optional[Checkpoint] = None) -> PathResult:
        return backend.find_path(start.numpy(), target.numpy(), path_cfg, progress, frame=(frame[0].numpy(), frame[1].numpy()), checkpoint=cp)

    def solve(w0: torch.Tensor) -> Optional[torch.Tensor]:
        out = backend.gd_solve(w0.numpy(), train_cfg)
        return torch.from_numpy(out.w) if out.solved else None

    def certify(w0: torch.Tensor, w1: torch.Tensor) -> SegmentCertificate:
        return backend.certify_segment(w0.numpy(), w1.numpy())

    def evaluate(w: torch.Tensor) -> Evaluation:
        loss, _ = backend.loss_and_grad(w.numpy())
        return Evaluation(loss=loss, error=float((backend.margins(w.numpy()) <= 0).mean()))

    scales = ESCAPE_SCALES if path_cfg.variant == "repair" and path_cfg.escape else ()
    wa = torch.from_numpy(np.asarray(w_a, np.float64))
    wb = torch.from_numpy(np.asarray(w_b, np.float64))
    return find_path_with_escape(leg, solve, certify, evaluate, wa, wb, max_wp, scales, checkpoint)
