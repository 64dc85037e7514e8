"""Tree Committee Machine in PyTorch float64 (paper Eq. 7): the Python backend.

The network has N inputs and K hidden units; unit k sees only inputs
``k*N/K .. (k+1)*N/K - 1`` through its own N/K weights.  With the flat weight
vector ``w`` (length N, unit k's weights at entries ``k*N/K .. (k+1)*N/K - 1``,
aligned with its inputs):

    h_k(xi)  = sum_j w[k*n + j] * xi[k*n + j]            (n = N/K)
    S(xi)    = sum_k htanh(h_k(xi))                      in [-K, K]
    yhat(xi) = tanh(S(xi))                               (Eq. 7)

Classification is ``sign(S)``; a pattern is correct iff its margin
``sigma * S > 0`` (a zero committee sum counts as an error).

Loss: binary cross-entropy on ``p = (1 + yhat) / 2`` with target
``(1 + sigma) / 2``, averaged over the M patterns.  Since
``(1 + tanh S) / 2 = logistic(2 S)`` this equals, exactly,

    L(w) = mean_mu log(1 + exp(-2 sigma_mu S_mu))

which is how it is computed (no log of 0 when tanh saturates).

The derivative of htanh is taken as 1 on the open interval (-1, 1) and 0
elsewhere, the kinks included (PyTorch's convention, and the Julia backend's):
the kinks have measure zero and a finite-difference check never lands on one.

Gradients and Hessians here come from autograd on purpose: the Julia backend
uses the analytic derivatives, and the cross-check holds one against the other.
"""

from __future__ import annotations

import time
from typing import Optional, Sequence, TypeVar

import numpy as np
import torch
import torch.nn.functional as F

from ramble.core.problem import Evaluation, SegmentCertificate
from ramble.errors import ConfigError
from ramble.models.patterns import Patterns

EPS = float(np.finfo(np.float64).eps)

POLYLINE_CHUNK = 128
"""Segments whose fields and minimum margins :meth:`TCMProblem.certify_polyline` holds at once (about 8 M K float64 each).

128 was the fastest of 32..1024 at the paper's size (M=620, K=3: a chunk fits in cache)."""


def check_shape(n_inputs: int, n_hidden: int) -> None:
    """Raise ConfigError unless N and K are positive and K divides N."""
    if n_inputs < 1:
        raise ConfigError(f"N must be a positive integer, got {n_inputs}")
    if n_hidden < 1:
        raise ConfigError(f"K must be a positive integer, got {n_hidden}")
    if n_inputs % n_hidden != 0:
        raise ConfigError(f"K={n_hidden} must divide N={n_inputs} (each hidden unit sees N/K inputs)")


class TCMProblem:
    """A TCM and its training set, as a :class:`ramble.core.problem.PathProblem`.

    Weight vectors are flat float64 tensors of length N (see module docstring).
    """

    _kept: Optional[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = None
    """(w, w with grad, committee sums) of the last membership test (see :meth:`_committee_kept`)."""

    def __init__(self, patterns: Patterns, n_hidden: int) -> None:
        m, n_in = patterns.inputs.shape
        check_shape(n_in, n_hidden)
        self.n_inputs = int(n_in)
        self.n_hidden = int(n_hidden)
        self.n_per_unit = self.n_inputs // self.n_hidden
        self.n_samples = int(m)
        # (M, K, N/K): unit k's receptive field, aligned with w.view(K, N/K).
        self.xi = torch.from_numpy(patterns.inputs.astype(np.float64)).view(m, self.n_hidden, self.n_per_unit)
        self.sigma = torch.from_numpy(patterns.labels.astype(np.float64))
        self.groups: Sequence[slice] = [slice(0, self.n_inputs)]

    # -- forward ---------------------------------------------------------
    def fields(self, w: torch.Tensor) -> torch.Tensor:
        """Hidden-unit fields h, shape (M, K)."""
        return torch.einsum("mkn,kn->mk", self.xi, w.view(self.n_hidden, self.n_per_unit))

    def row_fields(self, rows: torch.Tensor) -> torch.Tensor:
        """Hidden-unit fields of each weight row, rows (R, N) -> (R, M, K), in one einsum.

        The dot products are summed in another order than :meth:`fields`'s,
        so they may differ from it in the last bits (well inside
        :func:`rounding_slack`, which bounds any order).
        """
        return torch.einsum("mkn,rkn->rmk", self.xi, rows.view(len(rows), self.n_hidden, self.n_per_unit))

    def committee(self, w: torch.Tensor) -> torch.Tensor:
        """Committee sums S = sum_k htanh(h_k), shape (M,)."""
        return F.hardtanh(self.fields(w)).sum(dim=1)

    def loss(self, w: torch.Tensor) -> torch.Tensor:
        """Mean BCE as a 0-d tensor (differentiable)."""
        return self.loss_of_sums(self.committee(w))

    def loss_of_sums(self, s: torch.Tensor) -> torch.Tensor:
        """Mean BCE of committee sums ``s`` (M,): mean softplus(-2 sigma_mu S_mu), 0-d."""
        return F.softplus(-2.0 * self.sigma * s).mean()

    def _committee_kept(self, w: torch.Tensor) -> torch.Tensor:
        """Committee sums at ``w`` (M,), with the autograd graph kept for :meth:`loss_and_grad` at this same ``w``.

        A path tests a candidate's membership and, once it is accepted, takes
        the next gradient at that very tensor: the fields (the M x N
        product) are then computed once, not twice.  The kept values are
        those a fresh pass gives, so decisions are unchanged bit for bit.
        (The gain was within noise at the paper's size: benchmarks/README.md.)
        """
        x = w.detach().clone().requires_grad_(True)
        s = self.committee(x)
        self._kept = (w, x, s)
        return s

    # -- PathProblem -----------------------------------------------------
    def loss_and_grad(self, w: torch.Tensor) -> tuple[float, torch.Tensor]:
        kept, self._kept = self._kept, None
        if kept is not None and kept[0] is w:
            _, x, s = kept
        else:
            x = w.detach().clone().requires_grad_(True)
            s = self.committee(x)
        value = self.loss_of_sums(s)
        (grad,) = torch.autograd.grad(value, x)
        return float(value.detach()), grad

    def descent_step(self, w: torch.Tensor, lr: float) -> torch.Tensor:
        """One full-batch gradient-descent step ``w - lr * grad L(w)``."""
        _, grad = self.loss_and_grad(w)
        return w - lr * grad

    def margins(self, w: torch.Tensor) -> torch.Tensor:
        """sigma_mu S_mu, shape (M,); the pass is kept for a gradient at the same ``w`` (a repaired point's last check)."""
        with torch.enable_grad():
            s = self._committee_kept(w)
        return self.sigma * s.detach()

    def contains(self, w: torch.Tensor) -> bool:
        return bool((self.margins(w) > 0).all())

    def margin_grads(self, w: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """d(sigma_mu S_mu)/dw = sigma_mu * htanh'(h_mu,k) * xi_mu,k,j, shape (len(index), N)."""
        xi = self.xi[index]
        h = torch.einsum("mkn,kn->mk", xi, w.view(self.n_hidden, self.n_per_unit))
        active = ((h > -1.0) & (h < 1.0)).to(w.dtype)
        g = (self.sigma[index].view(-1, 1) * active).unsqueeze(-1) * xi
        return g.reshape(len(index), self.n_inputs)

    def evaluate(self, w: torch.Tensor) -> Evaluation:
        with torch.no_grad():
            s = self.committee(w)
            loss = self.loss_of_sums(s)
            err = (self.sigma * s <= 0).double().mean()
        return Evaluation(loss=float(loss), error=float(err))

    def certify_segment(self, w0: torch.Tensor, w1: torch.Tensor) -> SegmentCertificate:
        """Exact certificate of the segment w0 -> w1 (see :func:`segment_min_margins`).

        ``margin_bound`` is the exact minimum margin over the segment, as
        computed in float64; ``certified`` requires it to exceed
        :func:`rounding_slack`, a bound on the float64 rounding of the fields,
        so that a segment is never certified on rounding alone.
        """
        start = time.perf_counter()
        with torch.no_grad():
            low, pieces = segment_min_margins(self.fields(w0), self.fields(w1), self.sigma)
            bound = float(low.min())
            slack = rounding_slack(float(w0.abs().sum()), float(w1.abs().sum()), self.n_per_unit, self.n_hidden)
        return SegmentCertificate(certified=bound > slack, margin_bound=bound, pieces=pieces, seconds=time.perf_counter() - start)

    def certify_polyline(self, rows: torch.Tensor, chunk: int = POLYLINE_CHUNK) -> tuple[torch.Tensor, torch.Tensor]:
        """Exact certificates of the R - 1 segments between consecutive rows (R, N) of a polyline, float64.

        The same decision and bound as :meth:`certify_segment` on each
        segment (:func:`segment_min_margins` over all segments at once, the
        per-segment :func:`rounding_slack`), but each row's fields are
        computed once, by :meth:`row_fields` (their last bits may differ from
        :meth:`fields`'s).  ``chunk`` segments at a time, so memory stays
        bounded whatever R.  Returns ``certified`` bool (R - 1,) and
        ``margin_bound`` float64 (R - 1,).
        """
        if chunk < 1:
            raise ValueError(f"chunk must be a positive number of segments, got {chunk}")
        n_segments = max(len(rows) - 1, 0)
        certified = torch.zeros(n_segments, dtype=torch.bool)
        bound = torch.zeros(n_segments, dtype=torch.float64)
        with torch.no_grad():
            l1 = rows.abs().sum(dim=1)
            for s in range(0, n_segments, chunk):
                e = min(s + chunk, n_segments)
                h = self.row_fields(rows[s : e + 1])  # the rows of segments s..e-1, row e shared with the next chunk
                low, _ = segment_min_margins(h[:-1], h[1:], self.sigma)
                bound[s:e] = low.min(dim=1).values
                certified[s:e] = bound[s:e] > rounding_slack(l1[s:e], l1[s + 1 : e + 1], self.n_per_unit, self.n_hidden)
        return certified, bound

    # -- curvature -------------------------------------------------------
    def hessian(self, w: torch.Tensor) -> torch.Tensor:
        """Exact Hessian of the mean training loss, (N, N), by autograd."""
        return torch.autograd.functional.hessian(self.loss, w.detach().clone())


Scalar = TypeVar("Scalar", float, torch.Tensor)


def rounding_slack(l1_w0: Scalar, l1_w1: Scalar, n_per_unit: int, n_hidden: int) -> Scalar:
    """Bound on the float64 rounding error of a margin along a segment (inputs +-1).

    A field h_k is a dot product of n = N/K terms |w_j|, so its computed value
    is within n eps |w|_1 of the exact one, whatever the order of the sum;
    interpolating between the end fields and summing K clipped fields adds a
    few eps more.  ``l1_w*``: the L1 norms of the endpoints (floats, or
    float64 tensors of one shape: a slack per segment).  Both backends use
    this formula.
    """
    return EPS * ((n_per_unit + 4) * (l1_w0 + l1_w1) + 4.0 * n_hidden)


def committee_in_order(h: torch.Tensor) -> torch.Tensor:
    """sum_k htanh(h[..., k]) added left to right (the Julia backend's order), shape h.shape[:-1]."""
    ht = F.hardtanh(h)
    s = ht[..., 0]
    for k in range(1, h.shape[-1]):
        s = s + ht[..., k]
    return s


def segment_min_margins(h0: torch.Tensor, h1: torch.Tensor, sigma: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Exact minimum over t in [0, 1] of each pattern's margin along a segment.

    ``h0``, ``h1``: (M, K) hidden fields at the segment's ends, or (S, M, K)
    for S segments at once (every operation is elementwise, so each
    segment's minima are those it gets alone).  Along
    w(t) = w0 + t (w1 - w0) each field is h0 + t (h1 - h0), and the margin
    sigma sum_k htanh(h_k(t)) is piecewise linear in t with kinks where some
    field crosses +1 or -1, so its minimum is at t = 0, t = 1 or a kink inside
    (0, 1): 2 + (kinks inside) evaluations per pattern.  The end values are
    the margins at ``h0`` and ``h1`` themselves; a kink is evaluated at
    h0 + t (h1 - h0) with t = (+-1 - h0_k) / (h1_k - h0_k), in that order of
    operations (the Julia backend's ``segment_min_margins!`` does the same).
    Returns the minima, shape (M,) (or (S, M)), and the number of
    evaluations (pieces).
    """
    dh = h1 - h0
    low = torch.minimum(sigma * committee_in_order(h0), sigma * committee_in_order(h1))
    pieces = 2 * h0[..., 0].numel()
    for k in range(h0.shape[-1]):
        for wall in (1.0, -1.0):
            t = (wall - h0[..., k]) / dh[..., k]  # +-inf or NaN where dh is 0: never inside
            inside = (t > 0.0) & (t < 1.0)
            if not bool(inside.any()):
                continue
            at = sigma * committee_in_order(h0 + t.unsqueeze(-1) * dh)
            low = torch.where(inside, torch.minimum(low, at), low)
            pieces += int(inside.sum())
    return low, pieces


def gaussian_init(n_inputs: int, scale: float, seed: int) -> np.ndarray:
    """Initial weights ~ N(0, scale^2), shape (N,), from ``numpy.random.default_rng(seed)``.

    Drawn in NumPy so both backends start from identical numbers.
    """
    if not scale > 0:
        raise ConfigError(f"init scale must be positive, got {scale}")
    return np.random.default_rng(seed).normal(0.0, scale, size=n_inputs)
