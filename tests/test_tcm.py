"""The Python TCM's maths: Eq. 7, the BCE, its gradient and Hessian."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import SMALL
from ramble.errors import ConfigError
from ramble.models.patterns import random_patterns
from ramble.models.tcm import TCMProblem, gaussian_init


def make(n=30, k=3, m=40, seed=3):
    return TCMProblem(random_patterns(n, m, seed), k)


def test_forward_matches_eq7_by_loops():
    prob = make()
    w = torch.from_numpy(gaussian_init(30, 0.3, 1))
    xi = prob.xi.reshape(40, 30).numpy()
    s_ref = []
    for mu in range(40):
        s = 0.0
        for k in range(3):
            h = sum(w[k * 10 + j].item() * xi[mu, k * 10 + j] for j in range(10))
            s += max(-1.0, min(1.0, h))
        s_ref.append(s)
    np.testing.assert_allclose(prob.committee(w).numpy(), s_ref, rtol=1e-12, atol=1e-12)
    # BCE on p = (1 + tanh S)/2 with targets (1 + sigma)/2 equals the softplus form used.
    yhat = np.tanh(np.array(s_ref))
    p = (1 + yhat) / 2
    t = (1 + prob.sigma.numpy()) / 2
    bce = -np.mean(t * np.log(p) + (1 - t) * np.log(1 - p))
    assert prob.evaluate(w).loss == pytest.approx(bce, rel=1e-10)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gradient_matches_finite_differences(seed):
    prob = make(seed=seed)
    w = torch.from_numpy(gaussian_init(30, 0.3, seed))
    _, g = prob.loss_and_grad(w)
    eps = 1e-6
    for i in range(0, 30, 3):
        e = torch.zeros(30, dtype=torch.float64)
        e[i] = eps
        fd = (prob.evaluate(w + e).loss - prob.evaluate(w - e).loss) / (2 * eps)
        assert g[i].item() == pytest.approx(fd, rel=1e-5, abs=1e-9)


def test_hessian_matches_analytic_gauss_newton_form():
    # htanh'' = 0 a.e., so H = sum_mu 4 s(1-s)/M g_mu g_mu^T with g_mu = dS_mu/dw.
    prob = make()
    w = torch.from_numpy(gaussian_init(30, 0.3, 5))
    h = prob.hessian(w)
    s = torch.sigmoid(2 * prob.sigma * prob.committee(w))
    idx = torch.arange(40)
    g = prob.margin_grads(w, idx) * prob.sigma.view(-1, 1)
    ref = (g.T * (4 * s * (1 - s) / 40)) @ g
    torch.testing.assert_close(h, ref, rtol=1e-10, atol=1e-12)
    assert torch.allclose(h, h.T)


def test_margin_grads_match_autograd():
    prob = make()
    w = torch.from_numpy(gaussian_init(30, 0.3, 9))
    idx = torch.tensor([0, 5, 17])
    g = prob.margin_grads(w, idx)
    for row, mu in zip(g, idx):
        x = w.clone().requires_grad_(True)
        (prob.sigma[mu] * torch.nn.functional.hardtanh(prob.fields(x)[mu]).sum()).backward()
        torch.testing.assert_close(row, x.grad)


def test_zero_committee_sum_is_an_error():
    prob = make()
    w = torch.zeros(30, dtype=torch.float64)
    assert prob.evaluate(w).error == 1.0
    assert not prob.contains(w)


@pytest.mark.parametrize("n,k", [(30, 4), (0, 3), (30, 0)])
def test_bad_shapes_are_refused(n, k):
    with pytest.raises(ConfigError):
        TCMProblem(random_patterns(max(n, 1), 10, 0), k) if n else random_patterns(n, 10, 0)


def test_patterns_are_pm1_and_reproducible():
    a, b = random_patterns(50, 20, 4), random_patterns(50, 20, 4)
    assert a.inputs.dtype == np.int8 and set(np.unique(a.inputs)) == {-1, 1}
    assert set(np.unique(a.labels)) <= {-1, 1}
    np.testing.assert_array_equal(a.inputs, b.inputs)
    assert not np.array_equal(a.inputs, random_patterns(50, 20, 5).inputs)


def test_a_membership_tests_fields_serve_the_next_gradient_bit_for_bit(small_tcm):
    """contains(w) keeps its forward pass; loss_and_grad at that same w reuses it and gives exactly the uncached values."""
    prob, (w, _) = small_tcm
    p = random_patterns(prob.n_inputs, prob.n_samples, 5)
    reuse, fresh = TCMProblem(p, prob.n_hidden), TCMProblem(p, prob.n_hidden)
    w = w.clone()
    for _ in range(3):  # a few GD steps, as a path takes them
        reuse.contains(w)
        assert reuse._kept is not None and reuse._kept[0] is w
        (l1, g1), (l2, g2) = reuse.loss_and_grad(w), fresh.loss_and_grad(w)
        assert reuse._kept is None  # used once
        assert l1 == l2 and torch.equal(g1, g2)
        assert reuse.contains(w) == bool((fresh.margins(w) > 0).all())
        w = w - 0.1 * g1
    reuse.contains(w)  # a kept pass at another point is not used
    other = w + 1e-3
    assert torch.equal(reuse.loss_and_grad(other)[1], fresh.loss_and_grad(other)[1])


def test_a_path_with_kept_fields_is_the_path_without_them_in_fewer_passes(small_tcm):
    """The reuse changes no decision: the same path bit for bit, with fewer committee passes."""
    from ramble.core.path import PathConfig, find_path

    class Counting(TCMProblem):
        def __init__(self, patterns, k, keep):
            super().__init__(patterns, k)
            self.keep, self.passes = keep, 0

        def committee(self, w):
            self.passes += 1
            return super().committee(w)

        def _committee_kept(self, w):
            if self.keep:
                return super()._committee_kept(w)
            with torch.no_grad():
                return self.committee(w)

    prob, (w_a, w_b) = small_tcm
    p = random_patterns(SMALL["n_inputs"], SMALL["n_patterns"], SMALL["seed"])
    on, off = Counting(p, 3, keep=True), Counting(p, 3, keep=False)
    assert torch.equal(on.margins(w_a), prob.margins(w_a)), "the patterns are the fixture's"
    cfg = PathConfig(max_iterations=300)
    r_on, r_off = find_path(on, w_a, w_b, cfg), find_path(off, w_a, w_b, cfg)
    for f in ("weights", "iteration", "distance", "train_loss", "decisions", "gd_refused"):
        np.testing.assert_array_equal(getattr(r_on, f), getattr(r_off, f), err_msg=f)
    # nearly every iteration's gradient is taken where the last membership test (the elastic move's) was:
    # 298 of 300 on this pair (not the first: W_b, not W_a, was tested last)
    assert r_on.elastic_refused == 0 and off.passes - on.passes >= r_on.iterations - 2, (on.passes, off.passes, r_on.iterations)
