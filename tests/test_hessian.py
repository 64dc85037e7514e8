"""Hessian spectra (ramble.analysis.hessian) against dense float64 eigendecompositions on small networks.

Parametrised over three small models, in the spirit of curvlinops' tests: a
tanh MLP, a ReLU/max-pool CNN, and the TCM of ramble.models.tcm (N=30, K=3, M=40).
"""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ramble.analysis.hessian import (
    DenseOperator,
    Spectrum,
    along_path,
    classification_loss,
    count_nonzero,
    dense_hessian,
    free_cores,
    full_spectrum,
    gauss_newton_trace,
    hutchinson_trace,
    hvp_operator,
    lanczos,
    select_points,
    set_threads_to_free_cores,
    subset_indices,
    top_eigenpairs,
    warm_v0,
)
from ramble.analysis.spectra import frozen_pattern_loss, patch_gemm_logits
from ramble.models.lenet import LeNetProblem
from ramble.models.mnist import load_mnist
from ramble.models.patterns import random_patterns
from ramble.models.tcm import TCMProblem, gaussian_init

LossFn = Callable[[torch.Tensor], torch.Tensor]


# ----------------------------------------------------------------------------- small models (float64)


def _unflatten(w: torch.Tensor, shapes: list[tuple[int, ...]]) -> list[torch.Tensor]:
    out, i = [], 0
    for s in shapes:
        n = math.prod(s)
        out.append(w[i:i + n].view(s))
        i += n
    return out


def _mlp() -> tuple[LossFn, torch.Tensor]:
    """4 -> 6 tanh -> 3, cross-entropy on 24 random samples; P = 51."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(24, 4, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (24,), generator=g)
    shapes = [(6, 4), (6,), (3, 6), (3,)]

    def loss(w: torch.Tensor) -> torch.Tensor:
        a, b, c, d = _unflatten(w, shapes)
        return F.cross_entropy(torch.tanh(x @ a.T + b) @ c.T + d, y)

    return loss, torch.randn(sum(math.prod(s) for s in shapes), generator=g, dtype=torch.float64)


def _cnn() -> tuple[LossFn, torch.Tensor]:
    """conv 1->2 3x3, ReLU, max-pool 2, linear 8 -> 3 on 16 random 6x6 images; P = 47 (LeNet5's ops)."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(16, 1, 6, 6, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (16,), generator=g)
    shapes = [(2, 1, 3, 3), (2,), (3, 8), (3,)]

    def loss(w: torch.Tensor) -> torch.Tensor:
        k, kb, a, b = _unflatten(w, shapes)
        h = F.max_pool2d(F.relu(F.conv2d(x, k, kb)), 2).flatten(1)
        return F.cross_entropy(h @ a.T + b, y)

    return loss, 0.5 * torch.randn(sum(math.prod(s) for s in shapes), generator=g, dtype=torch.float64)


def _tcm() -> tuple[LossFn, torch.Tensor]:
    """ramble's TCM at N=30, K=3, M=40 at a Gaussian init; P = 30."""
    prob = TCMProblem(random_patterns(30, 40, 3), 3)
    return prob.loss, torch.from_numpy(gaussian_init(30, 0.3, 1))


MODELS = {"mlp_tanh": _mlp, "cnn_relu_pool": _cnn, "tcm": _tcm}


@lru_cache(maxsize=None)
def model(name: str) -> tuple[LossFn, torch.Tensor, torch.Tensor, np.ndarray]:
    """(loss, w, dense Hessian, its eigenvalues descending), cached."""
    loss, w = MODELS[name]()
    h = dense_hessian(loss, w)
    return loss, w, h, full_spectrum(h)


def reference_top(eigs: np.ndarray, k: int, which: str) -> np.ndarray:
    """Top-k of a full spectrum by 'LA' or 'LM', sorted descending."""
    pick = eigs[:k] if which == "LA" else eigs[np.argsort(-np.abs(eigs), kind="stable")[:k]]
    return np.sort(pick)[::-1]


def nearby(w: torch.Tensor, rel: float, seed: int = 9) -> torch.Tensor:
    d = torch.randn(w.numel(), generator=torch.Generator().manual_seed(seed), dtype=w.dtype)
    return w + rel * d * w.norm() / d.norm()


# ----------------------------------------------------------------------------- products


@pytest.mark.parametrize("name", MODELS)
def test_hvp_matches_dense_hessian(name):
    loss, w, h, _ = model(name)
    op = hvp_operator(loss, w)
    v = torch.randn(w.numel(), 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    scale = float(h.abs().max())
    assert torch.allclose(op.matmat(v), h @ v, rtol=0, atol=1e-12 * scale * w.numel())
    assert torch.allclose(op.matvec(v[:, 0]), h @ v[:, 0], rtol=0, atol=1e-12 * scale * w.numel())
    assert op.n_products == 4
    assert op.loss == pytest.approx(float(loss(w)), rel=1e-14)


@pytest.mark.parametrize("name", MODELS)
def test_dense_hessian_matches_forward_over_reverse(name):
    loss, w, h, _ = model(name)
    ref = torch.func.hessian(loss)(w.clone())  # another AD route: jacfwd(jacrev)
    assert torch.allclose(h, ref, rtol=0, atol=1e-12 * float(ref.abs().max()))
    assert torch.equal(h, h.t())


def test_batched_products_equal_loop():
    loss, w, h, _ = model("cnn_relu_pool")
    v = torch.randn(w.numel(), 5, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    a = hvp_operator(loss, w, batched=True).matmat(v)
    b = hvp_operator(loss, w, batched=False).matmat(v)
    assert torch.allclose(a, b, rtol=0, atol=1e-13 * float(h.abs().max()) * w.numel())


@pytest.mark.parametrize("retain", [True, False])
def test_chunked_terms_equal_the_full_loss(retain):
    g = torch.Generator().manual_seed(4)
    x = torch.randn(10, 5, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (10,), generator=g)
    w = torch.randn(15, generator=g, dtype=torch.float64)
    logits = lambda w, xs: xs @ w.view(3, 5).T  # noqa: E731
    full = classification_loss(logits, x, y)
    terms = classification_loss(logits, x, y, chunk_size=3)  # chunks 3, 3, 3, 1: unequal weights
    assert isinstance(terms, list) and len(terms) == 4
    assert sum(a for a, _ in terms) == pytest.approx(1.0)
    v = torch.randn(15, 2, generator=g, dtype=torch.float64)
    op = hvp_operator(terms, w, retain_graph=retain)
    assert torch.allclose(op.matmat(v), dense_hessian(full, w) @ v, atol=1e-13)
    assert op.loss == pytest.approx(float(full(w)), rel=1e-13)
    assert torch.allclose(op.grad, torch.func.grad(full)(w), atol=1e-14)


def test_float32_products_match_float64():
    loss, w, h, _ = model("mlp_tanh")
    v = torch.randn(w.numel(), 2, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    # the closure's data are float64; a float32 operator needs float32 data, so rebuild the MLP in float32
    g = torch.Generator().manual_seed(0)
    x = torch.randn(24, 4, generator=g, dtype=torch.float64).float()
    y = torch.randint(0, 3, (24,), generator=g)
    shapes = [(6, 4), (6,), (3, 6), (3,)]

    def loss32(w32: torch.Tensor) -> torch.Tensor:
        a, b, c, d = _unflatten(w32, shapes)
        return F.cross_entropy(torch.tanh(x @ a.T + b) @ c.T + d, y)

    op = hvp_operator(loss32, w.float())
    hv = op.matmat(v.float())
    assert hv.dtype == torch.float32
    assert torch.allclose(hv.double(), h @ v, rtol=0, atol=1e-5 * float((h @ v).abs().max()))


def test_constant_gradient_has_zero_hessian():
    op = hvp_operator(lambda w: (3.0 * w).sum(), torch.ones(4, dtype=torch.float64))
    assert torch.equal(op.matvec(torch.ones(4, dtype=torch.float64)), torch.zeros(4, dtype=torch.float64))


# ----------------------------------------------------------------------------- Lanczos vs dense


@pytest.mark.parametrize("which", ["LA", "LM"])
@pytest.mark.parametrize("name", MODELS)
def test_lanczos_top_k_matches_dense_spectrum(name, which):
    loss, w, h, eigs = model(name)
    k = 6
    spec = top_eigenpairs(loss, w, k, which, tol=1e-10)
    ref = reference_top(eigs, k, which)
    scale = np.abs(eigs).max()
    assert isinstance(spec, Spectrum) and spec.which == which
    assert spec.eigenvalues.shape == (k,) and np.all(np.diff(spec.eigenvalues) <= 0)  # descending
    assert np.max(np.abs(spec.eigenvalues - ref) / np.abs(ref)) < 1e-8
    assert spec.converged.all()
    # reported residuals are the true ||H v - lambda v|| of unit vectors, and small
    x = spec.eigenvectors.double()
    true_res = torch.linalg.norm(h @ x - x * torch.from_numpy(spec.eigenvalues), dim=0).numpy()
    np.testing.assert_allclose(spec.residuals, true_res, rtol=0, atol=1e-12 * scale)
    assert np.all(true_res <= 1e-9 * scale)
    assert torch.allclose(x.T @ x, torch.eye(k, dtype=torch.float64), atol=1e-10)
    assert 0 < spec.products <= 50 * k + 100


@pytest.mark.parametrize("which", ["LA", "LM"])
def test_lm_and_la_differ_where_the_spectrum_says_so(which):
    # the CNN has a negative eigenvalue (about -2.2) larger in magnitude than its 3rd largest (about 1.4)
    loss, w, _, eigs = model("cnn_relu_pool")
    assert abs(eigs[-1]) > eigs[2]
    spec = top_eigenpairs(loss, w, 3, which, tol=1e-10)
    has_negative = bool((spec.eigenvalues < 0).any())
    assert has_negative == (which == "LM")


@pytest.mark.parametrize("which", ["LA", "LM"])
def test_arpack_cross_check_agrees(which):
    loss, w, _, eigs = model("mlp_tanh")
    a = top_eigenpairs(loss, w, 5, which, tol=1e-12, method="arpack")
    b = top_eigenpairs(loss, w, 5, which, tol=1e-12)
    np.testing.assert_allclose(a.eigenvalues, reference_top(eigs, 5, which), rtol=1e-9)
    np.testing.assert_allclose(a.eigenvalues, b.eigenvalues, rtol=1e-9)
    assert a.method == "arpack" and a.products > 0


def test_loose_tolerance_costs_fewer_products_and_still_bounds_the_error():
    loss, w, _, eigs = model("mlp_tanh")
    tight = top_eigenpairs(loss, w, 5, "LA", tol=1e-10)
    loose = top_eigenpairs(loss, w, 5, "LA", tol=1e-2)
    assert loose.products < tight.products
    ref = eigs[:5]
    # |lambda - theta| <= ||r|| <= tol * |theta| (Sect. "tolerance" of docs/hessian.md)
    assert np.all(np.abs(loose.eigenvalues - ref) <= loose.residuals * (1 + 1e-12))
    assert np.all(loose.residuals <= 1e-2 * np.abs(loose.eigenvalues) + 1e-300)


@pytest.mark.parametrize("block_size", [1, 3, None])
@pytest.mark.parametrize("name", MODELS)
def test_block_lanczos_on_batched_products_matches_dense_spectrum(name, block_size):
    """A block start (block Lanczos; ``None``: whole blocks), each block one batched backward: the dense top-k."""
    loss, w, h, eigs = model(name)
    k = 5
    op = hvp_operator(loss, w, batched=True)
    x0 = torch.randn(w.numel(), 6, generator=torch.Generator().manual_seed(11), dtype=torch.float64)
    spec = lanczos(op, k, "LA", 1e-10, init_vectors=x0, block_size=block_size)
    scale = np.abs(eigs).max()
    assert spec.converged.all()
    assert spec.products == op.n_products >= 6  # the starting block is multiplied whole
    assert np.allclose(spec.eigenvalues, eigs[:k], rtol=0, atol=1e-8 * scale)
    assert spec.eigenvectors is not None
    lam = torch.from_numpy(spec.eigenvalues.copy())
    assert float((h @ spec.eigenvectors - spec.eigenvectors * lam).norm(dim=0).max()) <= 1e-8 * scale


def test_known_spectrum_with_restarts_and_a_cluster():
    # 200 x 200 with a cluster at the top and a dense bulk: forces thick restarts (small basis)
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.normal(size=(200, 200)))
    lam = np.concatenate([[5.0, 5.0 - 1e-3, 4.0, 3.0], rng.uniform(-1, 2, 196)])
    h = torch.from_numpy((q * lam) @ q.T)
    op = DenseOperator(h)
    spec = lanczos(op, 8, "LA", 1e-10, max_basis=20)
    assert spec.restarts > 0
    np.testing.assert_allclose(spec.eigenvalues, np.sort(lam)[::-1][:8], rtol=1e-9)
    assert spec.products == op.n_products


def test_k_larger_than_rank_finds_the_zero_eigenvalues():
    # rank-3 PSD matrix, k = 5: Lanczos must restart in the null space instead of stopping
    rng = np.random.default_rng(1)
    a = rng.normal(size=(40, 3))
    h = torch.from_numpy(a @ a.T)
    spec = lanczos(DenseOperator(h), 5, "LA", 1e-10)
    ref = np.linalg.eigvalsh(h.numpy())[::-1][:5]
    np.testing.assert_allclose(spec.eigenvalues[:3], ref[:3], rtol=1e-10)
    assert np.all(np.abs(spec.eigenvalues[3:]) < 1e-10 * ref[0])
    assert spec.converged.all()


def test_max_products_budget_is_respected_and_reported():
    loss, w, _, _ = model("mlp_tanh")
    spec = top_eigenpairs(loss, w, 5, "LA", tol=1e-12, max_products=8)
    assert spec.products <= 8
    assert not spec.converged.all()


def test_invalid_arguments():
    loss, w, _, _ = model("tcm")
    with pytest.raises(ValueError):
        top_eigenpairs(loss, w, 3, "SA")
    with pytest.raises(ValueError):
        top_eigenpairs(loss, w, 31)
    with pytest.raises(ValueError):
        top_eigenpairs(loss, w, 3, tol=0.0)
    with pytest.raises(ValueError):
        top_eigenpairs(loss, w, 3, method="power")


# ----------------------------------------------------------------------------- warm starts


@pytest.mark.parametrize("name", MODELS)
def test_warm_start_same_values_fewer_products(name):
    loss, w, _, _ = model(name)
    w2 = nearby(w, 1e-4)
    first = top_eigenpairs(loss, w, 5, "LA", tol=1e-6, guard=2)
    cold = top_eigenpairs(loss, w2, 5, "LA", tol=1e-6, guard=2)
    warm = top_eigenpairs(loss, w2, 5, "LA", tol=1e-6, guard=2, v0=warm_v0(first.warm_vectors))
    block = top_eigenpairs(loss, w2, 5, "LA", tol=1e-6, guard=2, init_vectors=first.warm_vectors)
    ref = full_spectrum(dense_hessian(loss, w2))[:5]
    for s in (cold, warm, block):
        assert s.converged.all()
        assert np.max(np.abs(s.eigenvalues - ref) / np.abs(ref)) < 1e-8
    assert warm.products < cold.products
    assert first.warm_vectors.shape == (w.numel(), 7)


def test_block_warm_start_at_the_same_point_needs_one_product_per_vector():
    loss, w, _, _ = model("mlp_tanh")
    first = top_eigenpairs(loss, w, 5, "LA", tol=1e-8, guard=2)
    again = top_eigenpairs(loss, w, 5, "LA", tol=1e-6, guard=2, init_vectors=first.warm_vectors)
    assert again.products == 7  # the floor: one Rayleigh-Ritz on the 7 tracked vectors
    np.testing.assert_allclose(again.eigenvalues, first.eigenvalues, rtol=1e-10)


# ----------------------------------------------------------------------------- trace


@pytest.mark.parametrize("name", MODELS)
def test_hutchinson_within_four_standard_errors(name):
    loss, w, h, _ = model(name)
    exact = float(torch.trace(h))
    est, se, n = hutchinson_trace(loss, w, n_samples=200, seed=0)
    assert n == 200
    assert se > 0
    assert abs(est - exact) < 4 * se


def test_hutchinson_standard_error_shrinks_and_is_reproducible():
    loss, w, _, _ = model("mlp_tanh")
    _, se_small, _ = hutchinson_trace(loss, w, n_samples=25, seed=1)
    _, se_big, _ = hutchinson_trace(loss, w, n_samples=400, seed=1)
    assert se_big < 0.5 * se_small  # ~ 1/sqrt(n): expect a factor 4
    assert hutchinson_trace(loss, w, 30, seed=3) == hutchinson_trace(loss, w, 30, seed=3)
    assert hutchinson_trace(loss, w, 30, seed=3)[0] != hutchinson_trace(loss, w, 30, seed=4)[0]


def test_hutchinson_is_exact_for_a_diagonal_matrix():
    # z_i^2 = 1 for Rademacher probes, so every sample equals the trace of a diagonal H
    h = torch.diag(torch.arange(1.0, 11.0, dtype=torch.float64))
    est, se, n = hutchinson_trace(DenseOperator(h), n_samples=7, seed=0)
    assert est == pytest.approx(55.0, rel=1e-14) and se == pytest.approx(0.0, abs=1e-12) and n == 7


@pytest.mark.parametrize("name", MODELS)
def test_hutchinson_probes_as_one_batched_block(name):
    """All probes in one (P, n) block through one batched backward: the loop's estimate, and the dense float64 one."""
    loss, w, h, _ = model(name)
    n = 12
    batched = hutchinson_trace(hvp_operator(loss, w, batched=True), n_samples=n, seed=3, batch=n)
    looped = hutchinson_trace(hvp_operator(loss, w), n_samples=n, seed=3, batch=n)
    z = (torch.randint(0, 2, (w.numel(), n), generator=torch.Generator().manual_seed(3), dtype=torch.int8) * 2 - 1)
    quad = (z.double() * (h @ z.double())).sum(dim=0)  # the same probes' z^T H z, from the dense Hessian
    tol = 1e-12 * float(h.abs().sum())
    assert batched[2] == looped[2] == n
    assert batched[0] == pytest.approx(looped[0], rel=0, abs=tol)
    assert batched[0] == pytest.approx(float(quad.mean()), rel=0, abs=tol)
    assert batched[1] == pytest.approx(float(quad.std() / math.sqrt(n)), rel=1e-9)


# ----------------------------------------------------------------------------- dense spectra, TCM facts


def test_full_spectrum_descending_and_count_nonzero():
    eigs = full_spectrum(np.diag([0.0, 3.0, -1.0, 1e-12, 2.0]))
    np.testing.assert_array_equal(eigs, [3.0, 2.0, 1e-12, 0.0, -1.0])
    assert count_nonzero(eigs) == 3  # 1e-12 / 3 < 1e-8
    assert count_nonzero(eigs, rtol=1e-14) == 4
    assert count_nonzero(np.zeros(4)) == 0


def test_tcm_dense_hessian_is_psd_with_the_closed_form_trace():
    """With htanh'' = 0, H = mean_mu l''(S_mu) g_mu g_mu^T: PSD, trace = mean l'' |g|^2 (docs/hessian.md)."""
    prob = TCMProblem(random_patterns(30, 40, 3), 3)
    w = torch.from_numpy(gaussian_init(30, 0.5, 2))
    h = dense_hessian(prob.loss, w)
    # independent of autograd's second derivatives: central differences of the gradient; htanh is linear
    # between kinks and no field lies within 1e-6 of one here, so only softplus's O(eps^2) term remains
    eps = 1e-6
    assert float(((prob.fields(w).abs() - 1).abs()).min()) > 10 * eps * float(w.abs().max())
    cols = []
    for j in range(w.numel()):
        e = torch.zeros_like(w)
        e[j] = eps
        cols.append((prob.loss_and_grad(w + e)[1] - prob.loss_and_grad(w - e)[1]) / (2 * eps))
    h_fd = torch.stack(cols, dim=1)
    torch.testing.assert_close(h, (h_fd + h_fd.T) / 2, rtol=0, atol=1e-7 * float(h.abs().max()))
    eigs = full_spectrum(h)
    assert eigs[-1] > -1e-12 * eigs[0]
    s = prob.committee(w)
    p = torch.sigmoid(2 * prob.sigma * s)  # l(S) = softplus(-2 sigma S): l'' = 4 p (1 - p)
    active = (prob.fields(w).abs() < 1).double().sum(dim=1)  # active units per pattern; |xi_k|^2 = N/K
    closed = float((4 * p * (1 - p) * active * prob.n_per_unit).mean())
    assert float(torch.trace(h)) == pytest.approx(closed, rel=1e-12)
    assert count_nonzero(eigs) == np.linalg.matrix_rank(h.numpy())


# ----------------------------------------------------------------------------- path helpers


def test_select_points_n_points():
    d = np.linspace(0, 1, 101)
    idx = select_points(d, n_points=5)
    np.testing.assert_array_equal(idx, [0, 25, 50, 75, 100])
    assert idx.dtype == np.int64


def test_select_points_endpoints_uniqueness_and_short_paths():
    d = np.array([0.0, 0.01, 0.02, 0.5, 0.98, 1.0])
    for n in (1, 2, 3, 4, 50):
        idx = select_points(d, n_points=n)
        assert idx[0] == 0 and idx[-1] == 5
        assert np.all(np.diff(idx) > 0)
    np.testing.assert_array_equal(select_points(d, n_points=50), np.arange(6))
    np.testing.assert_array_equal(select_points(d, n_points=3), [0, 3, 5])
    np.testing.assert_array_equal(select_points(np.array([0.3]), n_points=4), [0])


def test_select_points_every_and_non_monotone_distance():
    np.testing.assert_array_equal(select_points(np.linspace(0, 1, 10), every=4), [0, 4, 8, 9])
    d = np.array([0.0, 0.3, 0.2, 0.62, 0.45, 1.0])  # the path may step back
    np.testing.assert_array_equal(select_points(d, n_points=3), [0, 4, 5])  # 0.45 is nearest to 0.5
    tie = np.array([0.0, 0.3, 0.2, 0.6, 0.4, 1.0])
    np.testing.assert_array_equal(select_points(tie, n_points=3), [0, 3, 5])  # first row on ties
    with pytest.raises(ValueError):
        select_points(d)
    with pytest.raises(ValueError):
        select_points(d, n_points=3, every=2)
    with pytest.raises(ValueError):
        select_points(d, every=0)


def test_subset_indices():
    np.testing.assert_array_equal(subset_indices(10, 3), [0, 1, 2])
    np.testing.assert_array_equal(subset_indices(10, None), np.arange(10))
    a = subset_indices(1000, 20, seed=5)
    assert len(np.unique(a)) == 20 and np.all(np.diff(a) > 0)
    np.testing.assert_array_equal(a, subset_indices(1000, 20, seed=5))


@pytest.mark.parametrize("warm", ["v0", "block", "none"])
def test_along_path_matches_dense_at_every_point(warm):
    prob = TCMProblem(random_patterns(30, 40, 3), 3)
    w0 = gaussian_init(30, 0.3, 1)
    w1 = gaussian_init(30, 0.3, 2)
    weights = np.stack([w0 + t * (w1 - w0) for t in np.linspace(0, 1, 7)])
    idx = select_points(np.linspace(0, 1, 7), n_points=4)
    out = along_path(lambda: prob.loss, weights, idx, k=4, which="LA", tol=1e-9, warm=warm, trace_samples=300)
    assert out["eigenvalues"].shape == (len(idx), 4)
    for j, row in enumerate(idx):
        w = torch.from_numpy(weights[row])
        eigs = full_spectrum(prob.hessian(w))
        np.testing.assert_allclose(out["eigenvalues"][j], eigs[:4], rtol=1e-7)
        # + round-off: the deflating Lanczos basis may span the whole space, making the estimate exact (se 0)
        assert abs(out["trace"][j] - eigs.sum()) < 4 * out["trace_se"][j] + 1e-12 * abs(eigs.sum())
        assert out["loss"][j] == pytest.approx(prob.evaluate(w).loss, rel=1e-12)
    assert out["converged"].all() and np.all(out["products"] > 0)
    assert np.all(out["trace_products"] == 300)
    assert out["attrs"]["warm"] == warm and out["attrs"]["k"] == 4
    dense = along_path(lambda: prob.loss, weights, idx, k=30, method="dense")
    np.testing.assert_allclose(dense["eigenvalues"][:, :4], out["eigenvalues"], rtol=1e-7)
    assert np.all(dense["n_nonzero"] >= 1) and np.all(dense["products"] == 0)
    np.testing.assert_allclose(dense["trace"], dense["eigenvalues"].sum(axis=1), rtol=1e-10)


def test_thread_helper():
    before = torch.get_num_threads()
    try:
        n = set_threads_to_free_cores(max_threads=1)
        assert n == 1 and torch.get_num_threads() == 1
        assert free_cores() >= 1
    finally:
        torch.set_num_threads(before)


# ----------------------------------------------------------------------------- devices


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")
def test_cuda_lanczos_matches_cpu():
    loss_cpu, w, _, eigs = model("mlp_tanh")
    g = torch.Generator().manual_seed(0)
    x = torch.randn(24, 4, generator=g, dtype=torch.float64).cuda()
    y = torch.randint(0, 3, (24,), generator=g).cuda()
    shapes = [(6, 4), (6,), (3, 6), (3,)]

    def loss(wc: torch.Tensor) -> torch.Tensor:
        a, b, c, d = _unflatten(wc, shapes)
        return F.cross_entropy(torch.tanh(x @ a.T + b) @ c.T + d, y)

    spec = top_eigenpairs(loss, w.cuda(), 5, "LA", tol=1e-10)
    assert spec.eigenvectors.is_cuda
    np.testing.assert_allclose(spec.eigenvalues, eigs[:5], rtol=1e-8)


# ----------------------------------------------------------------------------- LeNet5


FIXTURE = Path(__file__).parent / "fixtures" / "mnist"


def test_lenet5_top5_residuals_and_independent_cross_checks():
    data = load_mnist(FIXTURE, train_size=8, test_size=1)
    prob = LeNetProblem(data.train_x, data.train_y, dtype=torch.float64)
    w = prob.init_weights(0)
    loss = classification_loss(prob.logits, prob.x, prob.y)
    spec = top_eigenpairs(loss, w, 5, "LA", tol=1e-8)
    assert spec.converged.all() and np.all(np.diff(spec.eigenvalues) <= 0)
    # residuals recomputed with fresh products, independent of the solver's stored ones
    op = hvp_operator(loss, w)
    x = spec.eigenvectors
    res = torch.linalg.norm(op.matmat(x) - x * torch.from_numpy(spec.eigenvalues), dim=0).numpy()
    assert np.all(res <= 1e-7 * spec.eigenvalues[0])
    # ARPACK (an independent Lanczos) for LA and LM; LeNet5 at init has a negative eigenvalue in its top-5 LM
    for which, ours in (("LA", spec), ("LM", top_eigenpairs(loss, w, 5, "LM", tol=1e-8))):
        arp = top_eigenpairs(loss, w, 5, which, tol=1e-10, method="arpack")
        np.testing.assert_allclose(ours.eigenvalues, arp.eigenvalues, rtol=1e-6)
    assert (ours.eigenvalues < 0).any()
    # plain power iteration converges to the largest-magnitude eigenvalue, here the largest one
    v = torch.randn(w.numel(), 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for _ in range(100):
        v = op.matmat(v)
        v = v / v.norm()
    assert float((v * op.matmat(v)).sum()) == pytest.approx(spec.eigenvalues[0], rel=1e-7)


def test_patch_gemm_logits_is_lenet5():
    """The Hessian's conv1-as-GEMM LeNet5 is the same function as LeNetProblem.logits, with the same HVPs."""
    data = load_mnist(FIXTURE, train_size=8, test_size=1)
    prob = LeNetProblem(data.train_x, data.train_y, dtype=torch.float64)
    fast = patch_gemm_logits(prob)
    for seed in (0, 1):
        w = prob.init_weights(seed)
        ref = prob.logits(w, prob.x)
        torch.testing.assert_close(fast(w, prob.x), ref, rtol=0, atol=1e-12 * float(ref.abs().max()))
        torch.testing.assert_close(fast(w, prob.x[:3]), ref[:3], rtol=0, atol=1e-12 * float(ref.abs().max()))
    v = torch.randn(w.numel(), 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    a = hvp_operator(classification_loss(fast, prob.x, prob.y), w).matmat(v)
    b = hvp_operator(classification_loss(prob.logits, prob.x, prob.y), w).matmat(v)
    assert float((a - b).norm() / b.norm()) < 1e-12


def test_frozen_pattern_loss_has_lenet5s_value_gradient_and_hessian():
    """Frozen ReLU/max-pool patterns: same loss, gradient and HVPs as LeNetProblem.logits at w, float64."""
    data = load_mnist(FIXTURE, train_size=8, test_size=1)
    prob = LeNetProblem(data.train_x, data.train_y, dtype=torch.float64)
    at = frozen_pattern_loss(prob, prob.x, prob.y)
    plain = classification_loss(prob.logits, prob.x, prob.y)
    v = torch.randn(prob.n_params, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for seed in (0, 1):
        w = prob.init_weights(seed)
        fast, ref = hvp_operator(at(w), w), hvp_operator(plain, w)
        assert fast.loss == pytest.approx(ref.loss, rel=1e-13)
        assert float((fast.grad - ref.grad).norm() / ref.grad.norm()) < 1e-12
        a, b = fast.matmat(v), ref.matmat(v)
        assert float((a - b).norm() / b.norm()) < 1e-12
    # built at another point, the closure is another function: the patterns are w's, not the argument's
    w0, w1 = prob.init_weights(0), prob.init_weights(1)
    assert float(at(w0)(w1)) != pytest.approx(float(plain(w1)), rel=1e-3)


def test_frozen_pattern_loss_top_k_matches_the_plain_model():
    """Top-5 by Lanczos through the frozen-pattern products equal those of the plain conv model (float64)."""
    data = load_mnist(FIXTURE, train_size=8, test_size=1)
    prob = LeNetProblem(data.train_x, data.train_y, dtype=torch.float64)
    at = frozen_pattern_loss(prob, prob.x, prob.y)
    weights = torch.stack([prob.init_weights(0), prob.init_weights(1)]).numpy()
    plain = along_path(lambda: classification_loss(prob.logits, prob.x, prob.y), weights, [0, 1], k=5, tol=1e-10,
                       trace_samples=0)
    fast = along_path(None, weights, [0, 1], k=5, tol=1e-10, trace_samples=0, point_loss=at)
    np.testing.assert_allclose(fast["eigenvalues"], plain["eigenvalues"], rtol=1e-8)
    np.testing.assert_allclose(fast["loss"], plain["loss"], rtol=1e-13)
    with pytest.raises(ValueError, match="loss_fn_factory"):
        along_path(None, weights, [0], k=5, method="dense", point_loss=at)


def test_frozen_point_exact_trace_equals_the_gauss_newton_trace_of_the_plain_model():
    """FrozenLeNetPoint.exact_trace (per-sample backprop through the frozen masks) equals gauss_newton_trace
    (vmap of jacrev on the plain conv model, held to the dense Hessian's trace below), float64, at two points."""
    data = load_mnist(FIXTURE, train_size=8, test_size=1)
    prob = LeNetProblem(data.train_x, data.train_y, dtype=torch.float64)
    at = frozen_pattern_loss(prob, prob.x, prob.y)
    for seed in (0, 1):
        w = prob.init_weights(seed)
        ref = gauss_newton_trace(prob.logits, prob.x, prob.y, w)
        assert at(w).exact_trace() == pytest.approx(ref, rel=1e-12)
    # the trace of another point is another number: the frozen point is w's
    assert at(prob.init_weights(0)).exact_trace() != pytest.approx(at(prob.init_weights(1)).exact_trace(), rel=1e-3)


def test_along_path_stores_the_exact_trace_of_frozen_points():
    """trace_method='exact': the stored trace is exact_trace() with standard error 0 and no products; the attrs say so."""
    data = load_mnist(FIXTURE, train_size=8, test_size=1)
    prob = LeNetProblem(data.train_x, data.train_y, dtype=torch.float64)
    at = frozen_pattern_loss(prob, prob.x, prob.y)
    weights = torch.stack([prob.init_weights(0), prob.init_weights(1)]).numpy()
    out = along_path(None, weights, [0, 1], k=3, tol=1e-8, trace_samples=5, point_loss=at, trace_method="exact")
    for j in (0, 1):
        w = torch.from_numpy(weights[j])
        assert out["trace"][j] == pytest.approx(gauss_newton_trace(prob.logits, prob.x, prob.y, w), rel=1e-12)
    assert np.all(out["trace_se"] == 0) and np.all(out["trace_products"] == 0)
    assert out["attrs"]["trace_method"] == "exact-gauss-newton"
    skipped = along_path(None, weights, [0], k=3, tol=1e-8, trace_samples=0, point_loss=at, trace_method="exact")
    assert np.isnan(skipped["trace"][0])
    with pytest.raises(ValueError, match="trace_method='exact' needs point_loss"):
        along_path(lambda: classification_loss(prob.logits, prob.x, prob.y), weights, [0], k=3, trace_method="exact")
    with pytest.raises(ValueError, match="trace_method must be"):
        along_path(None, weights, [0], k=3, point_loss=at, trace_method="hutch")


# ----------------------------------------------------------------------------- exact and deflated traces


def _cnn_logits() -> tuple[Callable, torch.Tensor, torch.Tensor]:
    """The logits of _cnn's model and its data (the same seeds), for gauss_newton_trace."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(16, 1, 6, 6, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (16,), generator=g)
    shapes = [(2, 1, 3, 3), (2,), (3, 8), (3,)]

    def logits(w: torch.Tensor, xs: torch.Tensor) -> torch.Tensor:
        k, kb, a, b = _unflatten(w, shapes)
        return F.max_pool2d(F.relu(F.conv2d(xs, k, kb)), 2).flatten(1) @ a.T + b

    return logits, x, y


def test_gauss_newton_trace_is_the_exact_trace_of_a_relu_pool_cnn():
    loss, w, h, _ = model("cnn_relu_pool")
    logits, x, y = _cnn_logits()
    assert float(F.cross_entropy(logits(w, x), y)) == pytest.approx(float(loss(w)), rel=1e-15)
    assert gauss_newton_trace(logits, x, y, w, chunk=5) == pytest.approx(float(torch.trace(h)), rel=1e-12)


def test_gauss_newton_trace_misses_the_curvature_of_tanh():
    """The identity needs piecewise-linear units: for the tanh MLP the diagonal of the second term is not zero."""
    loss, w, h, _ = model("mlp_tanh")
    g = torch.Generator().manual_seed(0)
    x = torch.randn(24, 4, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (24,), generator=g)
    shapes = [(6, 4), (6,), (3, 6), (3,)]

    def logits(wv: torch.Tensor, xs: torch.Tensor) -> torch.Tensor:
        a, b, c, d = _unflatten(wv, shapes)
        return torch.tanh(xs @ a.T + b) @ c.T + d

    assert float(F.cross_entropy(logits(w, x), y)) == pytest.approx(float(loss(w)), rel=1e-15)
    assert abs(gauss_newton_trace(logits, x, y, w) - float(torch.trace(h))) > 1e-3 * abs(float(torch.trace(h)))


@pytest.mark.parametrize("name", MODELS)
def test_lanczos_subspace_trace_is_the_rayleigh_quotient_trace(name):
    loss, w, h, _ = model(name)
    spec = top_eigenpairs(loss, w, 4, "LA", tol=1e-8)
    v = spec.subspace
    torch.testing.assert_close(v.T @ v, torch.eye(v.shape[1], dtype=v.dtype), rtol=0, atol=1e-10)
    assert spec.subspace_trace == pytest.approx(float(torch.trace(v.T @ h @ v)), rel=1e-10)


def test_deflated_hutchinson_is_exact_with_a_complete_basis():
    loss, w, h, _ = model("mlp_tanh")
    _, vecs = torch.linalg.eigh(h)
    est, se, n = hutchinson_trace(DenseOperator(h), n_samples=5, seed=0, deflate=(vecs, float(torch.trace(h))))
    assert est == pytest.approx(float(torch.trace(h)), rel=1e-12) and se < 1e-12 and n == 5


@pytest.mark.parametrize("name", MODELS)
def test_deflated_hutchinson_unbiased_and_tighter(name):
    loss, w, h, _ = model(name)
    exact = float(torch.trace(h))
    spec = top_eigenpairs(loss, w, 4, "LA", tol=1e-6)
    defl = (spec.subspace, spec.subspace_trace)
    est, se, n = hutchinson_trace(loss, w, n_samples=200, seed=0, deflate=defl)
    _, se_plain, _ = hutchinson_trace(loss, w, n_samples=200, seed=0)
    assert n == 200 and se > 0
    assert abs(est - exact) < 4 * se
    assert se < se_plain
    # unbiased: the mean over 40 seeds of a 5-probe estimate, within 4 of its standard errors
    runs = np.array([hutchinson_trace(loss, w, n_samples=5, seed=s, deflate=defl)[0] for s in range(40)])
    assert abs(runs.mean() - exact) < 4 * runs.std(ddof=1) / math.sqrt(runs.size)


def test_deflation_basis_shape_is_checked():
    _, _, h, _ = model("tcm")
    with pytest.raises(ValueError, match="deflation basis"):
        hutchinson_trace(DenseOperator(h), n_samples=2, deflate=(torch.zeros(3, 2, dtype=h.dtype), 0.0))


# ----------------------------------------------------------------------------- progress (issue 15)


def test_mnist_run_shows_hessian_progress_unless_quiet(tmp_path, monkeypatch):
    """`mnist run --hessian-points` draws a bar over the Hessian points; `-q` silences it (also in `ramble hessian`)."""
    import re

    from click.testing import CliRunner

    from ramble.cli import main

    monkeypatch.setenv("RAMBLE_PROGRESS", "1")  # CliRunner's stderr is not a terminal
    out = tmp_path / "m.h5"
    fast = ["--train-size", "30", "--test-size", "50", "--data-dir", str(FIXTURE), "--device", "cpu", "--gamma", "0.1",
            "--n-epochs", "1", "--points", "20", "--weight-rows", "10", "--linear-points", "3", "--solutions", "2"]
    r = CliRunner().invoke(main, ["mnist", "run", *fast, "--hessian-points", "3", "--out", str(out)], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    bar = re.compile(r"hessian 0-1: +\d+%.*\b3/3\b")  # tqdm's line, not the log line "hessian 0-1: 3 points"
    assert bar.search(r.stderr), r.stderr[-2000:]
    q = CliRunner().invoke(main, ["-q", "hessian", str(out), "--points", "3", "--k", "4"], catch_exceptions=False)
    assert q.exit_code == 0, q.output
    assert "hessian stored for path(s) 0-1" in q.output and not bar.search(q.stderr) and "3/3" not in q.stderr
    loud = CliRunner().invoke(main, ["hessian", str(out), "--points", "3", "--k", "4"], catch_exceptions=False)
    assert loud.exit_code == 0 and bar.search(loud.stderr)
