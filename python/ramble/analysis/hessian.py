"""Hessian spectra of the training loss along a path (paper Sect. 3, Figs. 2 and 4).

Everything here is generic over the model: it sees a *loss closure*
``loss_fn(w) -> 0-d tensor`` of a flat parameter vector ``w`` (shape (P,), the
layout of :mod:`ramble.core.problem`), the mean training loss in nats.  The Hessian
is never formed for big models; it is reached through Hessian-vector products
(HVPs) by double backprop, counted one per vector.

Main entry points (see docs/hessian.md):

* :func:`hvp_operator` -- a symmetric operator ``v -> H v`` at ``w``;
* :func:`top_eigenpairs` -- k extreme eigenpairs by a thick-restart (block)
  Lanczos of our own that stays on ``w``'s device, with warm starts;
* :func:`hutchinson_trace` -- stochastic trace with Rademacher probes;
* :func:`dense_hessian`, :func:`full_spectrum`, :func:`count_nonzero` -- exact
  spectra of small models (the TCM);
* :func:`select_points`, :func:`along_path` -- spectra at chosen path rows.

Conventions: eigenvalues are returned in **descending** algebraic order;
``which="LA"`` asks for the k largest algebraic eigenvalues, ``"LM"`` for the
k largest in magnitude (what PyHessian's power iteration returns).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Optional, Protocol, Sequence, Union

import numpy as np
import torch

from ramble.threads import free_cores

LossFn = Callable[[torch.Tensor], torch.Tensor]
"""A loss closure: flat weights (P,) -> 0-d tensor (mean training loss, nats)."""

LossTerms = Sequence[tuple[float, LossFn]]
"""A loss given as a weighted sum of closures, e.g. mean over data chunks."""

Which = Literal["LA", "LM"]
WHICH: tuple[str, ...] = ("LA", "LM")

# Pairs whose |Ritz value| is below SMALL_REL * max|Ritz value| are judged on
# absolute error (see _thresholds); without it a zero eigenvalue could never
# meet a relative tolerance.
SMALL_REL = 1e-4
# Residuals below NOISE_EPS * eps(op dtype) * max|theta| are HVP round-off: a
# float32 HVP cannot be more accurate than that, so no pair is asked to be.
NOISE_EPS = 100.0
# A second Gram-Schmidt pass is needed only where the first one kept less than
# this fraction of a vector's norm (DGKS criterion, 1/sqrt(2)).
DGKS_KEEP = 1 / math.sqrt(2)
# Default tolerance of count_nonzero, relative to the largest |eigenvalue|.
NONZERO_RTOL = 1e-8


# ----------------------------------------------------------------------------- operators


class SymmetricOperator(Protocol):
    """What the eigensolvers need: a symmetric (P, P) linear map on a device."""

    shape: tuple[int, int]
    dtype: torch.dtype
    device: torch.device
    n_products: int
    """Matrix-vector products done so far (a (P, b) block counts b)."""

    def matmat(self, v: torch.Tensor) -> torch.Tensor:
        """H @ v for v of shape (P, b) in ``dtype`` on ``device``; returns (P, b)."""
        ...


class DenseOperator:
    """A dense symmetric matrix seen as a :class:`SymmetricOperator` (tests, small models)."""

    def __init__(self, h: torch.Tensor) -> None:
        if h.ndim != 2 or h.shape[0] != h.shape[1]:
            raise ValueError(f"need a square matrix, got shape {tuple(h.shape)}")
        self.h = h
        self.shape = (int(h.shape[0]), int(h.shape[1]))
        self.dtype = h.dtype
        self.device = h.device
        self.n_products = 0

    def matmat(self, v: torch.Tensor) -> torch.Tensor:
        self.n_products += int(v.shape[1])
        return self.h @ v

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        return self.matmat(v.reshape(-1, 1)).reshape(-1)


class HVPOperator:
    """Hessian-vector products of a loss closure at a fixed ``w``, by double backprop.

    ``loss`` is a closure or a weighted sum of closures (``[(weight, fn), ...]``,
    e.g. the mean over chunks of a big data set: H = sum weight_i * Hess fn_i).
    With ``retain_graph=True`` (default) the gradient graph of every term is
    built once and each product is one backward pass through it (the same
    work per product as PyHessian); with ``retain_graph=False`` each product
    rebuilds every term's gradient graph, one term at a time, so memory stays
    at one term's graph (slower: one extra forward + backward per term).

    ``batched=True`` runs a (P, b) block as one vmapped backward
    (``is_grads_batched``); on one CPU thread this measured no faster than a
    loop (benchmarks/bench_hessian.py prints both); it is meant for GPUs.

    Products are done in ``w``'s dtype on ``w``'s device; ``n_products``
    counts vectors (a (P, b) block counts b).  Attributes ``loss`` (float,
    the loss at ``w``) and ``grad`` ((P,), detached) come for free.
    """

    def __init__(self, loss: Union[LossFn, LossTerms], w: torch.Tensor, *, retain_graph: bool = True,
                 batched: bool = False) -> None:
        if w.ndim != 1:
            raise ValueError(f"w must be a flat 1-D tensor, got shape {tuple(w.shape)}")
        self.terms: list[tuple[float, LossFn]] = [(1.0, loss)] if callable(loss) else [(float(a), f) for a, f in loss]
        if not self.terms:
            raise ValueError("the loss has no terms")
        self.w = w.detach().clone().requires_grad_(True)
        self.shape = (int(w.numel()), int(w.numel()))
        self.dtype = w.dtype
        self.device = w.device
        self.retain_graph = bool(retain_graph)
        self.batched = bool(batched)
        self.n_products = 0
        self._graphs: list[tuple[float, Optional[torch.Tensor]]] = []
        loss_sum, grad_sum = 0.0, torch.zeros_like(self.w, requires_grad=False)
        for a, fn in self.terms:
            value, g = self._grad_graph(fn)
            loss_sum += a * float(value.detach())
            grad_sum += a * g.detach()
            if self.retain_graph:
                self._graphs.append((a, g))
        self.loss = loss_sum
        self.grad = grad_sum

    def _grad_graph(self, fn: LossFn) -> tuple[torch.Tensor, torch.Tensor]:
        """(loss, gradient with its graph) of one term at ``self.w``."""
        value = fn(self.w)
        if value.ndim != 0:
            raise ValueError(f"the loss closure must return a 0-d tensor, got shape {tuple(value.shape)}")
        (g,) = torch.autograd.grad(value, self.w, create_graph=True, allow_unused=True)
        if g is None:  # the loss does not depend on w
            g = torch.zeros_like(self.w)
        return value, g

    def _hvp_term(self, g: torch.Tensor, v: torch.Tensor, retain: bool) -> torch.Tensor:
        """Hess(term) @ v for v (b, P) -> (b, P), through the term's gradient graph ``g``."""
        if not g.requires_grad:  # gradient constant in w: that term's Hessian is zero
            return torch.zeros_like(v)
        if self.batched and v.shape[0] > 1:
            (hv,) = torch.autograd.grad(g, self.w, v, retain_graph=retain, is_grads_batched=True, allow_unused=True)
            return torch.zeros_like(v) if hv is None else hv
        rows = []
        for i in range(v.shape[0]):
            (hv,) = torch.autograd.grad(g, self.w, v[i], retain_graph=retain or i + 1 < v.shape[0], allow_unused=True)
            rows.append(torch.zeros_like(v[i]) if hv is None else hv)
        return rows[0].unsqueeze(0) if len(rows) == 1 else torch.stack(rows)

    def matmat(self, v: torch.Tensor) -> torch.Tensor:
        """H @ v for v of shape (P, b); the result has v's shape, dtype and device."""
        if v.ndim != 2 or v.shape[0] != self.shape[0]:
            raise ValueError(f"need a (P, b) block with P={self.shape[0]}, got {tuple(v.shape)}")
        vt = v.t().to(dtype=self.dtype, device=self.device).contiguous()
        if self.retain_graph and len(self._graphs) == 1 and self._graphs[0][0] == 1.0:
            out = self._hvp_term(self._graphs[0][1], vt, retain=True)  # one plain term: no sum to form
        elif self.retain_graph:
            out = torch.zeros_like(vt)
            for a, g in self._graphs:
                out += a * self._hvp_term(g, vt, retain=True)
        else:
            out = torch.zeros_like(vt)
            for a, fn in self.terms:
                _, g = self._grad_graph(fn)
                out += a * self._hvp_term(g, vt, retain=False)
        self.n_products += int(v.shape[1])
        return out.t().to(dtype=v.dtype)

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        """H @ v for v of shape (P,)."""
        return self.matmat(v.reshape(-1, 1)).reshape(-1)

    def as_linear_operator(self) -> Any:
        """A ``scipy.sparse.linalg.LinearOperator`` (float64 NumPy in and out) over the same products."""
        from scipy.sparse.linalg import LinearOperator

        def mm(x: np.ndarray) -> np.ndarray:
            x2 = np.asarray(x, dtype=np.float64).reshape(self.shape[0], -1)
            y = self.matmat(torch.from_numpy(x2).to(self.device))
            return y.detach().cpu().numpy().astype(np.float64).reshape(np.shape(x))

        return LinearOperator(self.shape, matvec=mm, matmat=mm, rmatvec=mm, dtype=np.float64)


def hvp_operator(loss_fn: Union[LossFn, LossTerms], w: torch.Tensor, *, retain_graph: bool = True,
                 batched: bool = False) -> HVPOperator:
    """The Hessian of ``loss_fn`` at ``w`` as a product-counting operator (see :class:`HVPOperator`).

    Works in ``w``'s dtype (float32 or float64) on ``w``'s device (CPU or CUDA).
    """
    return HVPOperator(loss_fn, w, retain_graph=retain_graph, batched=batched)


# ----------------------------------------------------------------------------- losses of classifiers


def subset_indices(n_total: int, size: Optional[int], seed: Optional[int] = None) -> np.ndarray:
    """A fixed, documented subset of a training set for Hessian work: sorted int64 row indices.

    ``size=None`` or ``size >= n_total``: every row.  ``seed=None``: the first
    ``size`` rows (official order; MNIST-100 is rows 0..99).  An integer seed:
    ``size`` distinct rows drawn by ``numpy.random.default_rng(seed).choice``
    without replacement, sorted.  Store ``size`` and ``seed`` with the result.
    """
    if size is None or size >= n_total:
        return np.arange(n_total, dtype=np.int64)
    if size < 1:
        raise ValueError(f"subset size must be >= 1, got {size}")
    if seed is None:
        return np.arange(size, dtype=np.int64)
    return np.sort(np.random.default_rng(seed).choice(n_total, size=size, replace=False)).astype(np.int64)


def classification_loss(logits_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], x: torch.Tensor,
                        y: torch.Tensor, *, chunk_size: Optional[int] = None) -> Union[LossFn, LossTerms]:
    """Mean cross-entropy of ``logits_fn(w, x) -> (B, C)`` over images ``x`` (M, ...) and labels ``y`` (M,).

    ``chunk_size=None``: one closure over all M samples.  Otherwise a list of
    ``(n_c / M, closure_c)`` terms over consecutive chunks, whose weighted sum
    is the same mean; give it to :func:`hvp_operator` with
    ``retain_graph=False`` to bound memory on big sets.  ``x`` and ``y`` must
    already be on the device of the weights.  ``LeNetProblem.logits`` fits.
    """
    import torch.nn.functional as F

    m = int(x.shape[0])
    if m == 0 or y.shape[0] != m:
        raise ValueError(f"need M >= 1 images and M labels, got {tuple(x.shape)} and {tuple(y.shape)}")

    def make(xs: torch.Tensor, ys: torch.Tensor) -> LossFn:
        return lambda w: F.cross_entropy(logits_fn(w, xs), ys)

    if chunk_size is None or chunk_size >= m:
        return make(x, y)
    return [((min(i + chunk_size, m) - i) / m, make(x[i:i + chunk_size], y[i:i + chunk_size]))
            for i in range(0, m, chunk_size)]


# ----------------------------------------------------------------------------- eigensolver


@dataclass
class Spectrum:
    """k extreme eigenpairs of a symmetric operator.

    ``eigenvalues`` (k,) float64, descending; ``eigenvectors`` (P, k) unit
    columns (operator's dtype, at least float32, on its device; None unless asked for),
    column i belongs to eigenvalue i; ``residuals`` (k,) the norms
    ||H v_i - lambda_i v_i|| (same units as the eigenvalues), computed
    explicitly from the stored products; ``converged`` (k,) whether each met
    the tolerance (see docs/hessian.md); ``products`` the Hessian-vector
    products spent (one per vector); ``which``/``tol`` as asked; ``seconds``
    wall time.  ``warm_vectors`` (P, k + guard) are the tracked Ritz vectors,
    the warm start for a nearby point (same dtype and device).
    ``subspace`` (P, m) is the solver's final orthonormal basis V (Lanczos
    only, None for ARPACK) and ``subspace_trace`` = tr(V^T H V) (float64,
    from the stored products): the deflation that
    :func:`hutchinson_trace` uses to cut its variance at no extra product.
    """

    eigenvalues: np.ndarray
    residuals: np.ndarray
    converged: np.ndarray
    products: int
    which: str
    tol: float
    seconds: float
    method: str = "lanczos"
    eigenvectors: Optional[torch.Tensor] = None
    warm_vectors: Optional[torch.Tensor] = field(default=None, repr=False)
    restarts: int = 0
    subspace: Optional[torch.Tensor] = field(default=None, repr=False)
    subspace_trace: float = float("nan")


def _rank(theta: np.ndarray, which: str) -> np.ndarray:
    """Indices of Ritz values, most wanted first (LA: largest value; LM: largest |value|)."""
    key = -theta if which == "LA" else -np.abs(theta)
    return np.argsort(key, kind="stable")


def _thresholds(theta: np.ndarray, tol: np.ndarray, scale: float, eps: float) -> np.ndarray:
    """Residual bound per pair: tol * max(|theta|, SMALL_REL * scale), floored at HVP round-off.

    ``scale`` is max |Ritz value|, a lower bound of ||H||_2.  Since
    |lambda - theta| <= ||r|| for a unit Ritz vector, meeting the bound means
    a relative eigenvalue error <= tol (absolute tol*SMALL_REL*scale for
    eigenvalues below SMALL_REL*scale), and usually far less (the error is
    ~ ||r||^2 / gap).
    """
    return np.maximum(tol * np.maximum(np.abs(theta), SMALL_REL * scale), NOISE_EPS * eps * scale)


def _orth_svd(x: torch.Tensor, drop: float) -> tuple[torch.Tensor, torch.Tensor]:
    """x (P, b) = Q R with Q (P, r) orthonormal and R (r, b), dropping singular values <= drop.

    Uses the thin SVD (x = U S W^T, Q = U, R = S W^T) so nearly dependent
    columns are dropped instead of blowing up.  The dropped part has norm <= drop.
    """
    if x.shape[1] == 0:
        return x[:, :0], x.new_zeros((0, 0))
    if x.shape[1] == 1:  # the Lanczos case: a norm is 3x cheaper than an SVD of a (P, 1) matrix
        nrm = x.norm()
        return (x / nrm, nrm.reshape(1, 1)) if float(nrm) > drop else (x[:, :0], x.new_zeros((0, 1)))
    u, s, wt = torch.linalg.svd(x, full_matrices=False)
    keep = s > drop
    return u[:, keep], s[keep, None] * wt[keep]


def _project_out(x: torch.Tensor, bases: Sequence[torch.Tensor], sweeps: int = 2) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Remove from x (P, b) its components along orthonormal bases (CGS2); returns x and the coefficients.

    The second pass restores orthogonality lost to cancellation; it is
    skipped when the first kept more than 1/sqrt(2) of every column's norm
    (the Daniel-Gragg-Kaufman-Stewart criterion: without cancellation one
    pass is orthogonal to round-off).  The passes are memory-bound, and on
    LeNet5 they were a third of the solver's time.  ``sweeps=1``: one pass, no check.
    """
    coefs = [b.new_zeros((b.shape[1], x.shape[1])) for b in bases]
    before = x.norm(dim=0)
    for sweep in range(sweeps):
        for i, b in enumerate(bases):
            if b.shape[1] == 1 and x.shape[1] == 1:
                # vector against vector: MKL's GEMM on (1, P) x (P, 1) shapes took 118 us, a dot 8 us
                c = torch.dot(b[:, 0], x[:, 0]).reshape(1, 1)
                x = x - b * c
            elif b.shape[1]:
                c = torch.mv(b.t(), x[:, 0]).unsqueeze(1) if x.shape[1] == 1 else b.t() @ x
                x = torch.addmm(x, b, c, alpha=-1.0)  # x - b c without a temporary
            else:
                continue
            coefs[i] = coefs[i] + c
        if sweep == 0 and bool((x.norm(dim=0) > DGKS_KEEP * before).all()):
            break
    return x, coefs


def _eigh_small(t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigen-decomposition of a small symmetric matrix with torch's LAPACK on the CPU.

    Not NumPy's: its OpenBLAS starts its own threads, which on a shared CPU
    made a 60x60 eigh take 20 ms instead of well under 1 ms.
    """
    vals, vecs = torch.linalg.eigh(torch.from_numpy(t))
    return vals.numpy(), vecs.numpy()


def _random_block(p: int, b: int, gen: torch.Generator, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """(P, b) Gaussian block drawn on the CPU (same numbers on every device), then moved."""
    return torch.randn(p, b, generator=gen, dtype=torch.float64).to(device=device, dtype=dtype)


@dataclass
class _Settings:
    """A validated :func:`lanczos` call: pairs tracked ``kk``, per-pair tolerances, budget and basis size."""

    which: str
    k: int
    kk: int
    tols: np.ndarray
    max_products: int
    max_basis: int
    block: int


def _settings(n: int, k: int, which: str, tol: float, guard: int, guard_tol: Optional[float],
              max_products: Optional[int], max_basis: Optional[int], block_size: Optional[int]) -> _Settings:
    """Checks :func:`lanczos`'s arguments for an operator of size ``n`` and fills in the defaults."""
    if which not in WHICH:
        raise ValueError(f"which must be one of {WHICH}, got {which!r}")
    if not 1 <= k <= n:
        raise ValueError(f"k={k} must be in [1, P={n}]")
    if not tol > 0:
        raise ValueError(f"tol must be > 0, got {tol}")
    kk = min(k + max(int(guard), 0), n)
    gtol = math.sqrt(tol) if guard_tol is None else float(guard_tol)
    tols = np.array([tol] * k + [max(tol, gtol)] * (kk - k))
    if max_products is None:
        max_products = 50 * kk + 100
    if max_products < 1:
        raise ValueError(f"max_products must be >= 1, got {max_products}")
    if max_basis is None:
        max_basis = max(3 * kk, kk + 40)
    max_basis = min(int(max_basis), n)
    if max_basis < min(kk + 1, n):
        raise ValueError(f"max_basis={max_basis} must exceed k + guard = {kk}")
    block = max_basis if block_size is None else max(1, int(block_size))
    return _Settings(which, k, kk, tols, int(max_products), max_basis, block)


@dataclass
class _Krylov:
    """The Krylov-Schur form H V = V T + Q R of a :func:`lanczos` run, with its Ritz pairs.

    ``vb``/``avb`` (P, max_basis) hold V and H V in columns [:m] (column-major,
    so V[:, :m] is one contiguous block); ``t`` (m, m) float64 = V^T H V;
    ``q`` (P, p) the pending orthonormal directions, ``r`` (p, m);
    ``theta``/``y`` the Ritz values (most wanted first) and T's eigenvectors;
    ``scale`` the largest |Ritz value| seen; ``s_prev`` the width of the last
    block multiplied (0 after a restart).  Work dtype ``bdt`` on ``dev``.
    """

    vb: torch.Tensor
    avb: torch.Tensor
    q: torch.Tensor
    r: torch.Tensor
    dev: torch.device
    bdt: torch.dtype
    eps: float
    small: float
    t: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    m: int = 0
    theta: np.ndarray = field(default_factory=lambda: np.zeros(0))
    y: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    scale: float = 0.0
    s_prev: int = 0
    restarts: int = 0

    def on_dev(self, a: np.ndarray) -> torch.Tensor:
        """A small float64 NumPy array as a work-dtype tensor on the device."""
        return torch.from_numpy(np.ascontiguousarray(a)).to(device=self.dev, dtype=self.bdt)


def _start(op: SymmetricOperator, st: _Settings, v0: Optional[torch.Tensor], init_vectors: Optional[torch.Tensor],
           gen: torch.Generator) -> _Krylov:
    """An empty Krylov-Schur form whose pending directions Q are the orthonormalised starting block (no products)."""
    n = int(op.shape[0])
    # Work vectors in the operator's precision (at least float32): float64
    # orthogonality buys nothing beyond a float32 HVP's own round-off, and the
    # reorthogonalisation is memory-bound, so float32 halves its cost.
    dev, bdt = op.device, torch.promote_types(op.dtype, torch.float32)
    small = math.sqrt(float(torch.finfo(bdt).eps))  # relative rank cut for nearly dependent directions
    starts = []
    if init_vectors is not None:
        iv = init_vectors.reshape(n, -1) if init_vectors.ndim == 1 else init_vectors
        starts.append(iv.to(device=dev, dtype=bdt))
    if v0 is not None:
        starts.append(v0.reshape(n, 1).to(device=dev, dtype=bdt))
    x = torch.cat(starts, dim=1) if starts else _random_block(n, 1, gen, bdt, dev)
    x = x / x.norm(dim=0, keepdim=True).clamp_min(torch.finfo(bdt).tiny)
    q, _ = _orth_svd(x, small)  # relative to unit columns: drops only (numerically) dependent vectors
    if q.shape[1] == 0:
        q, _ = _orth_svd(_random_block(n, 1, gen, bdt, dev), 0.0)
    q = q[:, : st.max_basis - 1] if q.shape[1] >= st.max_basis else q
    r = torch.zeros((q.shape[1], 0), dtype=bdt, device=dev)
    vb = torch.empty((st.max_basis, n), dtype=bdt, device=dev).t()
    avb = torch.empty((st.max_basis, n), dtype=bdt, device=dev).t()
    return _Krylov(vb=vb, avb=avb, q=q, r=r, dev=dev, bdt=bdt, eps=float(torch.finfo(op.dtype).eps), small=small)


def _rayleigh_ritz(kr: _Krylov, st: _Settings) -> Optional[np.ndarray]:
    """Ritz pairs of T and the wanted ones still unconverged (residual ||R y||, no products); None when done."""
    theta, y = _eigh_small(kr.t)
    order = _rank(theta, st.which)
    kr.theta, kr.y = theta[order], y[:, order]
    kr.scale = max(kr.scale, float(np.abs(kr.theta).max()))
    nw = min(st.kk, kr.m)
    rn = torch.linalg.norm(kr.r @ kr.on_dev(kr.y[:, :nw]), dim=0).cpu().numpy() if kr.r.shape[0] else np.zeros(nw)
    unconv = np.flatnonzero(rn > _thresholds(kr.theta[:nw], st.tols[:nw], kr.scale, kr.eps))
    if kr.m >= st.kk and unconv.size == 0:
        return None
    return np.arange(nw) if kr.m < st.kk else unconv  # too few pairs yet: every current one is wanted


def _fresh_direction(kr: _Krylov, gen: torch.Generator) -> bool:
    """Q := a random direction orthogonal to V (an invariant subspace was found); False if none is left."""
    n = kr.vb.shape[0]
    fresh, _ = _project_out(_random_block(n, 1, gen, kr.bdt, kr.dev), [kr.vb[:, :kr.m]])
    q, _ = _orth_svd(fresh / fresh.norm(), kr.small)
    if q.shape[1] == 0:
        return False
    kr.q = q
    kr.r = torch.zeros((q.shape[1], kr.m), dtype=kr.bdt, device=kr.dev)
    return True


def _thick_restart(kr: _Krylov, st: _Settings, s_max: int) -> None:
    """Shrinks V to the best Ritz vectors (V Y, H V Y, T = diag, R Y; no products) to make room for s_max."""
    keep = min(kr.m, st.max_basis - s_max, max(st.kk, (st.max_basis + st.kk) // 2))
    yk = kr.on_dev(kr.y[:, :keep])
    kr.vb[:, :keep] = kr.vb[:, :kr.m] @ yk
    kr.avb[:, :keep] = kr.avb[:, :kr.m] @ yk
    kr.r = kr.r @ yk
    kr.t, kr.theta, kr.y, kr.m = np.diag(kr.theta[:keep]), kr.theta[:keep], np.eye(keep), keep
    kr.restarts += 1
    kr.s_prev = 0  # Ritz vectors now: no recurrence with the last block


def _steer(kr: _Krylov, unconv: np.ndarray, s_max: int) -> int:
    """Rotates Q so its first s columns span the unconverged residuals' directions; returns s."""
    if not kr.m:
        return min(s_max, kr.q.shape[1])
    d = (kr.r @ kr.on_dev(kr.y[:, unconv])).double().cpu().numpy()
    ud, sd, _ = (a.numpy() for a in torch.linalg.svd(torch.from_numpy(d), full_matrices=True))
    s = int(min(s_max, max(1, np.count_nonzero(sd > kr.small * sd[0])))) if sd.size and sd[0] > 0 else 1
    z = kr.on_dev(ud)
    # one pending vector: a sign, no GEMM
    kr.q, kr.r = (kr.q * z, z * kr.r) if z.shape == (1, 1) else (kr.q @ z, z.t() @ kr.r)
    return s


def _expand(kr: _Krylov, op: SymmetricOperator, s: int) -> None:
    """Multiplies Q's first s columns, reorthogonalises the products fully (CGS2) and appends them to V."""
    m, q, r = kr.m, kr.q, kr.r
    qs, qrest, rrest = q[:, :s], q[:, s:], r[s:]
    aq = op.matmat(qs.to(op.dtype)).to(kr.bdt)
    # The three-term recurrence first: one cheap pass against the current and the previous
    # block takes out nearly all of H q, so the full pass over V keeps most of what is left
    # and the DGKS check skips its second pass (V's two reads per pass are the solver's cost).
    lo = max(0, m - kr.s_prev)
    f, (c_loc, d_loc) = _project_out(aq, [kr.vb[:, lo:m], qs], sweeps=1)
    f, (c, dd, e) = _project_out(f, [kr.vb[:, :m], qs, qrest])
    c[lo:m] += c_loc
    dd += d_loc
    kr.s_prev = s
    c_np, d_np = c.double().cpu().numpy(), dd.double().cpu().numpy()
    t_new = np.zeros((m + s, m + s))
    t_new[:m, :m] = kr.t
    t_new[:m, m:] = c_np
    t_new[m:, :m] = c_np.T
    t_new[m:, m:] = (d_np + d_np.T) / 2
    kr.t = t_new
    kr.vb[:, m:m + s] = qs
    kr.avb[:, m:m + s] = aq
    qg, rg = _orth_svd(f, 100 * torch.finfo(kr.bdt).eps * max(kr.scale, float(aq.norm(dim=0).max())))
    kr.r = torch.cat([torch.cat([rrest, e], dim=1),
                      torch.cat([torch.zeros((qg.shape[1], m), dtype=kr.bdt, device=kr.dev), rg], dim=1)], dim=0)
    kr.q = qg if qrest.shape[1] == 0 else torch.cat([qrest, qg], dim=1)
    kr.m = m + s


def _iterate(kr: _Krylov, op: SymmetricOperator, st: _Settings, gen: torch.Generator) -> None:
    """Expands V until the kk wanted pairs converge, the budget is spent or V spans everything."""
    products0 = op.n_products
    n = int(op.shape[0])
    unconv = np.zeros(0, dtype=np.int64)
    while True:
        if kr.m:
            found = _rayleigh_ritz(kr, st)
            if found is None:
                return
            unconv = found
        budget = st.max_products - (op.n_products - products0)
        if budget <= 0 or kr.m >= n:
            return
        if kr.q.shape[1] == 0:  # invariant subspace found before k pairs converged: fresh direction
            if not _fresh_direction(kr, gen):
                return
            continue
        # the starting block is multiplied whole; later steps at most ``block`` vectors
        s_max = min(st.block, kr.q.shape[1], budget, st.max_basis - min(st.kk, kr.m)) if kr.m \
            else min(kr.q.shape[1], budget)
        if kr.m and kr.m + s_max > st.max_basis:
            _thick_restart(kr, st, s_max)
        _expand(kr, op, _steer(kr, unconv, s_max))


def _spectrum(kr: _Krylov, st: _Settings, tol: float, products: int, t_start: float,
              return_vectors: bool) -> Spectrum:
    """The k most wanted pairs, descending, with residuals computed from the stored products."""
    m, theta = kr.m, kr.theta
    nw = min(st.kk, m)
    yw = kr.on_dev(kr.y[:, :nw])
    xw = kr.vb[:, :m] @ yw
    th = kr.on_dev(theta[:nw])
    res_all = torch.linalg.norm(kr.avb[:, :m] @ yw - xw * th, dim=0).double().cpu().numpy()
    ok_all = res_all <= _thresholds(theta[:nw], st.tols[:nw], max(kr.scale, 1e-300), kr.eps)
    kout = min(st.k, nw)
    desc = np.argsort(-theta[:kout], kind="stable")
    return Spectrum(
        eigenvalues=theta[:kout][desc].copy(),
        residuals=res_all[:kout][desc].copy(),
        converged=ok_all[:kout][desc].copy(),
        products=products,
        which=st.which,
        tol=float(tol),
        seconds=time.perf_counter() - t_start,
        eigenvectors=xw[:, :kout][:, torch.from_numpy(desc).to(kr.dev)] if return_vectors else None,
        warm_vectors=xw,
        restarts=kr.restarts,
        subspace=kr.vb[:, :m],
        subspace_trace=float(np.trace(kr.t)) if m else 0.0,
    )


def lanczos(
    op: SymmetricOperator,
    k: int = 20,
    which: str = "LA",
    tol: float = 1e-3,
    *,
    v0: Optional[torch.Tensor] = None,
    init_vectors: Optional[torch.Tensor] = None,
    guard: int = 0,
    guard_tol: Optional[float] = None,
    max_products: Optional[int] = None,
    max_basis: Optional[int] = None,
    block_size: Optional[int] = None,
    seed: int = 0,
    return_vectors: bool = True,
) -> Spectrum:
    """k extreme eigenpairs of a symmetric operator by thick-restart (block) Lanczos.

    The Krylov-Schur form H V = V T + Q R is kept throughout: V (P, m)
    orthonormal with H V stored, T = V^T H V (m, m) symmetric, and Q (P, p)
    the orthonormal "pending" directions that the next products will
    explore, with R (p, m).  Ritz pair (theta, V y) then has residual norm
    ||R y||, so convergence checks cost no products.  Each step multiplies
    the part of span(Q) that the unconverged wanted pairs' residuals point
    along (at most ``block_size`` vectors), reorthogonalises fully (CGS2)
    and, when the basis would exceed ``max_basis`` columns, restarts keeping
    the best Ritz vectors (no products).  Started from a single vector this
    is exactly Lanczos with full reorthogonalisation and thick restarts;
    started from a block (``init_vectors``, e.g. the previous path point's
    eigenvectors) it is a block Lanczos that spends one product per
    unconverged direction.

    Arguments: ``k`` pairs wanted; ``which`` "LA" (largest algebraic) or "LM"
    (largest magnitude); ``tol`` the relative residual tolerance (see
    :func:`_thresholds`); ``v0`` (P,) and/or ``init_vectors`` (P, b) the
    starting block (random Gaussian from ``seed`` when neither); ``guard``
    extra pairs tracked past the k-th, converged to ``guard_tol`` (default
    sqrt(tol)), so that an eigenvalue about to enter the top k at a nearby
    point is already in the warm start; ``max_products`` the budget of
    products (default 50 * (k + guard) + 100); ``max_basis`` columns of V
    (default max(3 (k+guard), k+guard+40), at most P).

    Returns a :class:`Spectrum`; eigenvalues are the k most wanted, sorted
    descending.  Work vectors have the operator's dtype (at least float32)
    and live on its device; only (m, m) matrices go to the CPU.
    """
    t_start = time.perf_counter()
    st = _settings(int(op.shape[0]), k, which, tol, guard, guard_tol, max_products, max_basis, block_size)
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    products0 = op.n_products
    kr = _start(op, st, v0, init_vectors, gen)
    _iterate(kr, op, st, gen)
    return _spectrum(kr, st, tol, op.n_products - products0, t_start, return_vectors)


def arpack_eigenpairs(op: HVPOperator, k: int = 20, which: str = "LA", tol: float = 1e-3, *,
                      v0: Optional[torch.Tensor] = None, max_products: Optional[int] = None,
                      return_vectors: bool = True) -> Spectrum:
    """The same k pairs by SciPy's ARPACK ``eigsh`` on a CPU ``LinearOperator`` (a cross-check).

    ARPACK's ``tol`` is relative to |theta|.  ``residuals`` are computed with
    k extra products, included in ``products``.
    """
    from scipy.sparse.linalg import ArpackNoConvergence, eigsh

    if which not in WHICH:
        raise ValueError(f"which must be one of {WHICH}, got {which!r}")
    t_start = time.perf_counter()
    p0 = op.n_products
    lin = op.as_linear_operator()
    start = None if v0 is None else v0.detach().cpu().double().numpy()
    maxiter = None if max_products is None else max(1, max_products // max(1, 2 * k))
    try:
        vals, vecs = eigsh(lin, k=k, which=which, tol=tol, v0=start, maxiter=maxiter)
    except ArpackNoConvergence as err:  # return what converged
        vals, vecs = err.eigenvalues, err.eigenvectors
    order = np.argsort(-vals)
    vals, vecs = vals[order], vecs[:, order]
    x = torch.from_numpy(np.ascontiguousarray(vecs)).to(op.device)
    hx = op.matmat(x.to(op.dtype)).to(torch.float64)
    res = torch.linalg.norm(hx - x * torch.from_numpy(vals).to(op.device), dim=0).cpu().numpy()
    scale = float(np.abs(vals).max()) if vals.size else 0.0
    ok = res <= _thresholds(vals, np.full(vals.shape, tol), scale, float(torch.finfo(op.dtype).eps))
    return Spectrum(eigenvalues=vals, residuals=res, converged=ok, products=op.n_products - p0, which=which,
                    tol=float(tol), seconds=time.perf_counter() - t_start, method="arpack",
                    eigenvectors=x if return_vectors else None, warm_vectors=x)


def top_eigenpairs(
    loss_fn: Union[LossFn, LossTerms],
    w: torch.Tensor,
    k: int = 20,
    which: str = "LA",
    tol: float = 1e-3,
    v0: Optional[torch.Tensor] = None,
    init_vectors: Optional[torch.Tensor] = None,
    max_products: Optional[int] = None,
    *,
    guard: int = 0,
    method: str = "lanczos",
    seed: int = 0,
    return_vectors: bool = True,
    **kwargs: Any,
) -> Spectrum:
    """The k largest ("LA") or largest-magnitude ("LM") Hessian eigenpairs of ``loss_fn`` at ``w``.

    ``method="lanczos"`` (default): :func:`lanczos` on the HVP operator, on
    ``w``'s device, warm-startable with ``init_vectors`` (P, b) -- pass the
    previous point's ``Spectrum.warm_vectors``.  ``method="arpack"``: SciPy
    ``eigsh`` (CPU) for cross-checks; ignores warm starts except ``v0``.
    Extra keyword arguments go to :func:`lanczos`.  ``seconds`` includes
    building the gradient graph.
    """
    t0 = time.perf_counter()
    op = hvp_operator(loss_fn, w)
    if method == "lanczos":
        spec = lanczos(op, k, which, tol, v0=v0, init_vectors=init_vectors, guard=guard,
                       max_products=max_products, seed=seed, return_vectors=return_vectors, **kwargs)
    elif method == "arpack":
        spec = arpack_eigenpairs(op, k, which, tol, v0=v0, max_products=max_products, return_vectors=return_vectors)
    else:
        raise ValueError(f"method must be 'lanczos' or 'arpack', got {method!r}")
    spec.seconds = time.perf_counter() - t0
    return spec


# ----------------------------------------------------------------------------- trace


def hutchinson_trace(loss_fn: Union[LossFn, LossTerms, SymmetricOperator], w: Optional[torch.Tensor] = None,
                     n_samples: int = 100, seed: int = 0, batch: int = 10, *,
                     deflate: Optional[tuple[torch.Tensor, float]] = None) -> tuple[float, float, int]:
    """Hutchinson's estimate of tr(H) with Rademacher probes: (estimate, standard error, products).

    Plain (``deflate=None``): estimate = mean_i z_i^T H z_i over ``n_samples``
    probes z_i in {-1,+1}^P; unbiased, variance 2 * sum_{i != j} H_ij^2 per probe.

    Deflated (``deflate=(V, tr(V^T H V))``, V (P, m) orthonormal, e.g. a
    Lanczos :attr:`Spectrum.subspace` with its ``subspace_trace``):
    estimate = tr(V^T H V) + mean_i (P z_i)^T H (P z_i) with P = I - V V^T.
    Since tr(P H P) = tr(H) - tr(V^T H V), it is unbiased for any V drawn
    independently of the probes (the Hutch++ estimator of Meyer et al. 2021
    with a Krylov sketch instead of a random one), and its variance is the
    plain one of P H P, which drops the top of the spectrum: on LeNet5 the
    per-probe standard deviation fell by an order of magnitude
    (docs/hessian.md).  V's products are not counted here: they were paid by
    the eigensolver.

    Standard error = sample std (ddof=1) / sqrt(n_samples) (nan for one
    probe); it covers the probe noise, not round-off in tr(V^T H V).
    Probes come from a CPU ``torch.Generator(seed)``, so a seed gives the
    same probes on every device.  ``loss_fn`` may also be an operator (then
    ``w`` is unused); products are done ``batch`` probes at a time.
    """
    if n_samples < 1:
        raise ValueError(f"n_samples must be >= 1, got {n_samples}")
    if hasattr(loss_fn, "matmat"):
        op: Any = loss_fn
    else:
        if w is None:
            raise ValueError("hutchinson_trace needs w with a loss closure")
        op = hvp_operator(loss_fn, w)  # type: ignore[arg-type]
    p0 = op.n_products
    n = int(op.shape[0])
    basis, base = (None, 0.0) if deflate is None else (deflate[0], float(deflate[1]))
    if basis is not None and (basis.ndim != 2 or basis.shape[0] != n):
        raise ValueError(f"the deflation basis must be (P={n}, m), got {tuple(basis.shape)}")
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    samples = []
    for start in range(0, n_samples, batch):
        b = min(batch, n_samples - start)
        z = (torch.randint(0, 2, (n, b), generator=gen, dtype=torch.int8) * 2 - 1).to(op.dtype).to(op.device)
        if basis is not None:
            vb = basis.to(dtype=op.dtype, device=op.device)
            z = z - vb @ (vb.t() @ z)  # P z, the part of the probe outside span(V)
        samples.append((z * op.matmat(z)).sum(dim=0).double().cpu())
    vals = torch.cat(samples).numpy()
    se = float(vals.std(ddof=1) / math.sqrt(n_samples)) if n_samples > 1 else float("nan")
    return base + float(vals.mean()), se, op.n_products - p0


def gauss_newton_trace(logits_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], x: torch.Tensor,
                       y: torch.Tensor, w: torch.Tensor, *, chunk: int = 20) -> float:
    """Exact trace of the Gauss-Newton matrix of the mean cross-entropy: (1/M) sum_i tr(A_i J_i J_i^T).

    J_i (C, P) is the Jacobian of sample i's logits ``logits_fn(w, x[i:i+1])``
    and A_i = diag(p_i) - p_i p_i^T the softmax Hessian.  For a network that
    is piecewise linear in every single parameter (ReLU, max-pool, linear and
    convolution layers, each parameter in one layer: LeNet5) the second
    term of the Hessian, sum_c r_ic d^2 f_ic / dw^2, has a zero diagonal almost
    everywhere, so this is **tr(H) exactly**; the tests check that on a
    ReLU/max-pool CNN against the dense Hessian.  A reference, not a fast
    path: it forms per-sample Jacobians (``chunk`` samples at a time, C * P
    numbers per sample).  Works in ``w``'s dtype; returns float.
    """
    from torch.func import jacrev, vmap

    def one(wv: torch.Tensor, xi: torch.Tensor) -> torch.Tensor:
        return logits_fn(wv, xi[None])[0]

    m = int(x.shape[0])
    total = 0.0
    for s in range(0, m, chunk):
        xs = x[s:s + chunk]
        jac = vmap(jacrev(one), in_dims=(None, 0))(w, xs)  # (b, C, P)
        p = torch.softmax(logits_fn(w, xs).detach(), dim=-1)
        a = torch.diag_embed(p) - p[:, :, None] * p[:, None, :]
        total += float((a * (jac @ jac.transpose(1, 2))).sum())
    return total / m


# ----------------------------------------------------------------------------- dense (small models)


def dense_hessian(loss_fn: LossFn, w: torch.Tensor) -> torch.Tensor:
    """The exact Hessian (P, P) of ``loss_fn`` at ``w``: one backward pass per row (reverse-over-reverse).

    ``torch.autograd.functional.hessian`` without vectorisation: on the TCM
    at N=300 it took 0.085 s against 0.45 s for ``torch.func.hessian`` or
    the vectorised variant (benchmarks/bench_hessian.py).  For small models
    only (P^2 entries).  The result is symmetrised, (H + H^T) / 2, which
    removes only round-off.
    """
    h = torch.autograd.functional.hessian(loss_fn, w.detach().clone())
    return (h + h.t()) / 2


def full_spectrum(h: Union[torch.Tensor, np.ndarray]) -> np.ndarray:
    """All eigenvalues of a symmetric (P, P) matrix, float64, descending (LAPACK ``syevd`` via torch)."""
    a = h.detach().cpu().double() if isinstance(h, torch.Tensor) else torch.from_numpy(np.asarray(h, dtype=np.float64))
    # torch's LAPACK, not NumPy's: under load NumPy's OpenBLAS threads made this 300x300 eigvalsh 0.86 s, not 3 ms
    return torch.linalg.eigvalsh((a + a.T) / 2).numpy()[::-1].copy()


def count_nonzero(eigs: np.ndarray, rtol: float = NONZERO_RTOL) -> int:
    """How many eigenvalues have |lambda| > rtol * max |lambda| (0 for an all-zero spectrum).

    Default ``rtol`` = 1e-8: a float64 Hessian formed by autograd carries
    round-off of order P * eps * ||H|| (~1e-13 relative at P = 300), so
    numerically zero eigenvalues land five decades or more below 1e-8; a
    genuine eigenvalue below 1e-8 relative would need nearly dependent
    gradients, since in the TCM every contributing pattern weighs
    l''(S) >= 4 e^{-2K} / (1 + e^{-2K})^2 (0.0099 at K = 3; docs/hessian.md).
    Store the tolerance with the count, and the spectrum itself.
    """
    a = np.abs(np.asarray(eigs, dtype=np.float64))
    if a.size == 0 or a.max() == 0:
        return 0
    return int(np.count_nonzero(a > rtol * a.max()))


# ----------------------------------------------------------------------------- along a path


def select_points(distance: np.ndarray, n_points: Optional[int] = None, every: Optional[int] = None) -> np.ndarray:
    """Rows of a recorded path at which to compute spectra: sorted unique int64, always with 0 and T-1.

    ``distance`` (T,) is the path's normalised distance (0 at W_i, 1 at W_j).
    ``n_points``: for n targets evenly spaced between distance[0] and
    distance[-1], the nearest recorded row to each (first on ties); duplicates
    collapse, so fewer than n rows may come back; n >= T gives every row.
    ``every``: rows 0, every, 2*every, ... and T-1.  Give exactly one.
    """
    d = np.asarray(distance, dtype=np.float64).reshape(-1)
    t = d.size
    if t == 0:
        raise ValueError("the path has no recorded points")
    if (n_points is None) == (every is None):
        raise ValueError("give exactly one of n_points and every")
    if every is not None:
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        rows = np.arange(0, t, int(every))
    else:
        if n_points is None or n_points < 1:
            raise ValueError(f"n_points must be >= 1, got {n_points}")
        if n_points >= t:
            rows = np.arange(t)
        else:
            targets = np.linspace(d[0], d[-1], int(n_points))
            rows = np.abs(d[None, :] - targets[:, None]).argmin(axis=1)
    return np.unique(np.concatenate([rows, [0, t - 1]])).astype(np.int64)


def warm_v0(vectors: torch.Tensor, seed: int = 0, mix: float = 0.1) -> torch.Tensor:
    """A single Lanczos start vector from a previous point's Ritz vectors (P, b): shape (P,).

    The normalised sum of the columns plus ``mix`` times a unit random vector
    (CPU ``torch.Generator(seed)``).  The Krylov space of the sum holds the
    old invariant subspace after b steps; the random part keeps a direction
    that is orthogonal to all old vectors (an eigenvalue newly entering the
    top k) reachable.  On LeNet5 the mix cost no products (docs/hessian.md).
    """
    v = vectors.sum(dim=1)
    v = v / v.norm().clamp_min(torch.finfo(v.dtype).tiny)
    r = torch.randn(v.shape[0], generator=torch.Generator(device="cpu").manual_seed(int(seed)), dtype=torch.float64)
    return v + mix * (r / r.norm()).to(device=v.device, dtype=v.dtype)


WARM_MODES: tuple[str, ...] = ("v0", "block", "none")


def along_path(
    loss_fn_factory: Optional[Callable[[], Union[LossFn, LossTerms]]],
    weights: Any,
    index: Sequence[int],
    k: int = 20,
    which: str = "LA",
    tol: float = 1e-3,
    *,
    method: str = "lanczos",
    warm: str = "v0",
    guard: Optional[int] = None,
    trace_samples: int = 100,
    trace_deflate: bool = True,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
    device: Union[str, torch.device] = "cpu",
    max_products: Optional[int] = None,
    nonzero_rtol: float = NONZERO_RTOL,
    callback: Optional[Callable[[int, Spectrum], None]] = None,
    point_loss: Optional[Callable[[torch.Tensor], Union[LossFn, LossTerms]]] = None,
    trace_method: str = "hutchinson",
) -> dict[str, Any]:
    """Hessian spectra and traces at rows ``index`` of a path's ``weights``.

    ``loss_fn_factory()`` is called once and returns the loss closure (or
    terms) shared by every point, so the data (e.g. a fixed subset, see
    :func:`subset_indices`) are the same along the path.  ``weights`` is
    anything whose ``weights[i]`` is row i, shape (P,) (a NumPy array or an
    h5py dataset (T, P)); rows are read one at a time and moved to
    ``device`` in ``dtype``.  Points are done in the order of ``index``.

    ``method="lanczos"``: top-k by :func:`lanczos` (``which``, ``tol``);
    ``warm`` = "v0" starts each point from :func:`warm_v0` of the previous
    point's tracked Ritz vectors, "block" from those vectors as a block,
    "none" from a random vector; ``guard`` extra pairs are tracked for the
    warm start (default max(2, k // 5), 0 with warm="none").  The trace
    (``trace_samples`` = 0 skips it): with ``trace_method="hutchinson"``,
    ``trace_samples`` Rademacher probes, the same seed at every point,
    deflated by the point's Lanczos basis with ``trace_deflate`` (default;
    no extra product, ~6x smaller standard error on LeNet5); with "exact",
    ``point_loss(w).exact_trace()`` (``trace_se`` 0, no products; e.g.
    :class:`ramble.analysis.spectra.FrozenLeNetPoint`).
    ``method="dense"`` (small models such as the TCM): the exact Hessian and all P eigenvalues; ``eigenvalues`` keeps the
    top k (k=P for all), ``trace`` is exact (``trace_se`` 0), ``n_nonzero`` counts |lambda| > ``nonzero_rtol`` * max |lambda|.

    Returns arrays: ``index`` (H,) int64, ``eigenvalues`` (H, k) descending,
    ``residuals`` (H, k), ``converged`` (H, k) bool, ``products`` (H,) int64
    (eigensolver products; 0 for dense), ``trace``, ``trace_se`` (H,),
    ``trace_products`` (H,), ``loss`` (H,), ``seconds`` (H,), ``n_nonzero``
    (H,) (dense only, else -1); plus ``attrs``, a dict for the HDF5 group
    (method, which, tol, k, guard, warm, trace_samples, seed, dtype, nonzero_rtol).

    ``point_loss(w)`` (Lanczos only): a loss closure built for the point w, with the shared loss's value,
    gradient and Hessian there, through which w's products go (:func:`ramble.analysis.spectra.frozen_pattern_loss`:
    LeNet5 with frozen ReLU/max-pool patterns); ``loss_fn_factory`` may then be None.
    """
    _check_path_args(method, warm, which, loss_fn_factory, point_loss, trace_method)
    idx = np.asarray(index, dtype=np.int64).reshape(-1)
    if guard is None:
        guard = 0 if warm == "none" or method == "dense" else max(2, k // 5)
    loss = None if loss_fn_factory is None else loss_fn_factory()
    out = _empty_results(idx, k)
    prev: Optional[torch.Tensor] = None
    for j, row in enumerate(idx):
        t0 = time.perf_counter()
        w = torch.as_tensor(np.asarray(weights[int(row)])).to(device=device, dtype=dtype)
        if method == "dense":
            spec = _dense_point(loss, w, k, nonzero_rtol, out, j)  # type: ignore[arg-type]
        else:
            point = loss if point_loss is None else point_loss(w)
            spec = _lanczos_point(point, w, k, which, tol, guard, max_products, seed + j,  # type: ignore[arg-type]
                                  _warm_start(prev, warm, seed + j), out, j, trace_samples, trace_deflate, seed,
                                  exact=trace_method == "exact")
            prev = spec.warm_vectors
        _record(out, j, spec, time.perf_counter() - t0)
        if callback is not None:
            callback(j, spec)
    out["attrs"] = _path_attrs(method, which, tol, k, guard, warm, trace_samples, trace_deflate, seed, dtype,
                               nonzero_rtol, trace_method)
    return out


def _check_path_args(method: str, warm: str, which: str, loss_fn_factory: Any, point_loss: Any, trace_method: str) -> None:
    """:func:`along_path`'s argument checks (one-line errors naming the value)."""
    if method not in ("lanczos", "dense"):
        raise ValueError(f"method must be 'lanczos' or 'dense', got {method!r}")
    if warm not in WARM_MODES:
        raise ValueError(f"warm must be one of {WARM_MODES}, got {warm!r}")
    if which not in WHICH:
        raise ValueError(f"which must be one of {WHICH}, got {which!r}")
    if loss_fn_factory is None and (point_loss is None or method == "dense"):
        raise ValueError("along_path needs loss_fn_factory (or point_loss with method='lanczos')")
    if trace_method not in ("hutchinson", "exact"):
        raise ValueError(f"trace_method must be 'hutchinson' or 'exact', got {trace_method!r}")
    if trace_method == "exact" and (point_loss is None or method == "dense"):
        raise ValueError("trace_method='exact' needs point_loss (closures with exact_trace()) and method='lanczos'")


def _empty_results(idx: np.ndarray, k: int) -> dict[str, Any]:
    """:func:`along_path`'s result arrays for H = len(idx) points, NaN (or 0, -1, False) until filled."""
    h = idx.size
    return {
        "index": idx,
        "eigenvalues": np.full((h, k), np.nan),
        "residuals": np.full((h, k), np.nan),
        "converged": np.zeros((h, k), dtype=bool),
        "products": np.zeros(h, dtype=np.int64),
        "trace": np.full(h, np.nan),
        "trace_se": np.full(h, np.nan),
        "trace_products": np.zeros(h, dtype=np.int64),
        "loss": np.full(h, np.nan),
        "seconds": np.zeros(h),
        "n_nonzero": np.full(h, -1, dtype=np.int64),
    }


def _warm_start(prev: Optional[torch.Tensor], warm: str, seed: int) -> dict[str, torch.Tensor]:
    """:func:`lanczos`'s start arguments from the previous point's tracked Ritz vectors (empty: random start)."""
    if prev is None or warm == "none":
        return {}
    return {"v0": warm_v0(prev, seed=seed)} if warm == "v0" else {"init_vectors": prev}


def _record(out: dict[str, Any], j: int, spec: Spectrum, seconds: float) -> None:
    """Stores point j's eigenvalues, residuals, convergence flags, products and wall time in ``out``."""
    kout = spec.eigenvalues.size
    out["eigenvalues"][j, :kout] = spec.eigenvalues
    out["residuals"][j, :kout] = spec.residuals
    out["converged"][j, :kout] = spec.converged
    out["products"][j] = spec.products
    out["seconds"][j] = seconds


def _lanczos_point(loss: Union[LossFn, LossTerms], w: torch.Tensor, k: int, which: str, tol: float, guard: int,
                   max_products: Optional[int], seed: int, start: dict[str, torch.Tensor], out: dict[str, Any],
                   j: int, trace_samples: int, trace_deflate: bool, trace_seed: int, exact: bool = False) -> Spectrum:
    """Top-k by :func:`lanczos` at one point (for :func:`along_path`), then the trace (``exact``: ``loss.exact_trace()``): fills loss and trace of row j."""
    op = hvp_operator(loss, w)
    spec = lanczos(op, k, which, tol, guard=guard, max_products=max_products, seed=seed, return_vectors=False,
                   **start)  # type: ignore[arg-type]
    out["loss"][j] = op.loss
    if trace_samples > 0 and exact:
        out["trace"][j], out["trace_se"][j], out["trace_products"][j] = loss.exact_trace(), 0.0, 0  # type: ignore[union-attr]
    elif trace_samples > 0:
        deflate = (spec.subspace, spec.subspace_trace) if trace_deflate else None
        tr, se, npr = hutchinson_trace(op, n_samples=trace_samples, seed=trace_seed, deflate=deflate)
        out["trace"][j], out["trace_se"][j], out["trace_products"][j] = tr, se, npr
    return spec


def _path_attrs(method: str, which: str, tol: float, k: int, guard: int, warm: str, trace_samples: int,
                trace_deflate: bool, seed: int, dtype: torch.dtype, nonzero_rtol: float,
                trace_method: str = "hutchinson") -> dict[str, Any]:
    """The settings of an :func:`along_path` run, for its HDF5 group."""
    lanczos_run = method == "lanczos"
    return {
        "method": "lanczos-krylov-schur" if lanczos_run else "dense-eigh",
        "which": which if lanczos_run else "LA",
        "tol": float(tol) if lanczos_run else 0.0,
        "k": int(k),
        "guard": int(guard),
        "warm": warm if lanczos_run else "none",
        "trace_method": "exact" if method == "dense" else "exact-gauss-newton" if trace_method == "exact" else
        "hutchinson-rademacher-krylov-deflated" if trace_deflate else "hutchinson-rademacher",
        "trace_samples": int(trace_samples) if lanczos_run and trace_method == "hutchinson" else 0,
        "seed": int(seed),
        "dtype": str(dtype).replace("torch.", ""),
        "nonzero_rtol": float(nonzero_rtol),
    }


def _dense_point(loss: Union[LossFn, LossTerms], w: torch.Tensor, k: int, rtol: float,
                 out: dict[str, Any], j: int) -> Spectrum:
    """Exact spectrum at one point (for :func:`along_path`): fills loss, trace, n_nonzero of row j."""
    t0 = time.perf_counter()
    terms = [(1.0, loss)] if callable(loss) else list(loss)
    hmat = sum(a * dense_hessian(fn, w) for a, fn in terms)
    eigs = full_spectrum(hmat)
    with torch.no_grad():
        out["loss"][j] = float(sum(a * float(fn(w)) for a, fn in terms))
    out["trace"][j] = float(torch.trace(hmat))
    out["trace_se"][j] = 0.0
    out["n_nonzero"][j] = count_nonzero(eigs, rtol)
    top = eigs[:k]
    return Spectrum(eigenvalues=top, residuals=np.zeros_like(top), converged=np.ones(top.shape, dtype=bool),
                    products=0, which="LA", tol=0.0, seconds=time.perf_counter() - t0, method="dense")


# ----------------------------------------------------------------------------- threads


def set_threads_to_free_cores(max_threads: Optional[int] = None) -> int:
    """Set torch's intra-op threads to :func:`free_cores` (capped by ``max_threads``); returns the count.

    Why: on a shared CPU, more threads than free cores made each
    Hessian-vector product 15-25x slower (threads wait on each other's
    preempted peers).  Call it before a long run; the load average counts
    this process too once it is busy, so call it early.
    """
    n = free_cores()
    if max_threads is not None:
        n = max(1, min(n, int(max_threads)))
    torch.set_num_threads(n)
    return n
