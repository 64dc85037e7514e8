"""The interface between a model and the path algorithm.

The path algorithm (:mod:`ramble.core.path`) knows nothing about a network: it
moves a flat parameter vector ``w`` (a 1-D torch tensor of length P) and asks a
:class:`PathProblem` for what it needs.  A TCM and LeNet5 each provide one.

Conventions every implementation keeps:

* ``w`` is a flat, contiguous 1-D tensor of the problem's ``dtype`` on its
  ``device``; methods never modify it in place.
* A training sample ``mu`` is classified correctly iff ``margins(w)[mu] > 0``
  (a zero margin is an error).  ``w`` is in the solution set S iff every
  margin is positive; ``contains`` must agree with ``margins``.
* ``groups`` partition ``range(P)`` into the "layers" of the paper's Eq. 4 norm
  constraint, in flattening order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol, Sequence

import numpy as np
import torch


@dataclass(frozen=True)
class SegmentCertificate:
    """Whether the straight segment w(t) = w0 + t (w1 - w0), t in [0, 1], lies inside S.

    ``certified`` is True only when it is *proved* that every training margin
    is > 0 at every t in [0, 1] (exactly for the TCM; by bound propagation in
    float64 for torch networks).  ``margin_bound``: a lower bound on
    min_t min_mu margin(t) (model margin units); for the TCM it is the exact
    minimum.  ``pieces``: work done (TCM: breakpoints evaluated; networks:
    sub-segments whose bounds were computed, so ``pieces - 1`` bisections at
    most).  ``seconds``: wall time of the certificate.
    """

    certified: bool
    margin_bound: float
    pieces: int
    seconds: float


@dataclass(frozen=True)
class Evaluation:
    """Loss and error of one weight vector on one data set.

    ``loss`` is the mean per-sample loss (nats); ``error`` the fraction of
    misclassified samples in [0, 1].
    """

    loss: float
    error: float


class PathProblem(Protocol):
    """What the path algorithm needs from a model and its training set."""

    groups: Sequence[slice]
    """Slices of the flat vector, one per layer (Eq. 4 is applied per slice)."""

    n_samples: int
    """Number of training samples M."""

    def loss_and_grad(self, w: torch.Tensor) -> tuple[float, torch.Tensor]:
        """Mean training loss at ``w`` and its gradient (shape (P,))."""
        ...

    def descent_step(self, w: torch.Tensor, lr: float) -> torch.Tensor:
        """One "epoch" of gradient descent from ``w`` with step ``lr``.

        Full-batch problems take one step ``w - lr * grad``; a large data set
        may take a pass of mini-batch steps (documented by the problem).
        Returns a new tensor.
        """
        ...

    def margins(self, w: torch.Tensor) -> torch.Tensor:
        """Per-sample margins, shape (M,); sample correct iff margin > 0."""
        ...

    def contains(self, w: torch.Tensor) -> bool:
        """True iff every training sample is classified correctly at ``w``."""
        ...

    def margin_grads(self, w: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """Gradients of the margins of samples ``index`` w.r.t. ``w``: shape (len(index), P).

        A problem may also offer ``margin_products(w, index) -> (u -> G u, a -> G^T a)``
        with G this matrix, never formed: the repair then scales to large training
        sets (:func:`ramble.core.path.repair`; networks have it, the TCM does not need it).
        """
        ...

    def evaluate(self, w: torch.Tensor) -> Evaluation:
        """Training loss and error at ``w``."""
        ...

    def certify_segment(self, w0: torch.Tensor, w1: torch.Tensor) -> SegmentCertificate:
        """Prove (or fail to prove) that the straight segment ``w0 -> w1`` lies inside S.

        Never says ``certified=True`` for a segment on which some training
        sample has margin <= 0 at some t in [0, 1], endpoints included.
        """
        ...


def row_error_counter(problem: PathProblem) -> Callable[[np.ndarray], np.ndarray]:
    """Training errors per weight row, (R, P) numpy -> (R,) int64: margins <= 0 under ``problem``, each row moved to its device and dtype."""

    def count(weights: np.ndarray) -> np.ndarray:
        out = np.empty(len(weights), dtype=np.int64)
        for r, row in enumerate(weights):
            w = torch.from_numpy(np.ascontiguousarray(row)).to(device=problem.device, dtype=problem.dtype)
            out[r] = int((problem.margins(w) <= 0).sum())
        return out

    return count


def flat_groups(shapes: Sequence[Sequence[int]]) -> list[slice]:
    """Consecutive slices of a flat vector holding tensors of ``shapes`` in order."""
    out: list[slice] = []
    start = 0
    for shape in shapes:
        n = 1
        for d in shape:
            n *= int(d)
        out.append(slice(start, start + n))
        start += n
    return out
