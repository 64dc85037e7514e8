"""The TCM's exact segment certifier (ramble.models.tcm.TCMProblem.certify_segment) and its Julia twin."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ramble.models.patterns import Patterns, random_patterns
from ramble.models.tcm import TCMProblem, rounding_slack


def dense_min(prob: TCMProblem, w0: torch.Tensor, w1: torch.Tensor, n: int) -> float:
    """Smallest margin over n + 1 evenly spaced points of the segment (an independent check)."""
    ts = torch.linspace(0.0, 1.0, n + 1, dtype=torch.float64)
    return min(float(prob.margins(w0 + float(t) * (w1 - w0)).min()) for t in ts)


def crosses_a_kink(prob: TCMProblem, w0: torch.Tensor, w1: torch.Tensor) -> bool:
    h0, h1 = prob.fields(w0), prob.fields(w1)
    return bool((((h0 - 1) * (h1 - 1)) < 0).any() or (((h0 + 1) * (h1 + 1)) < 0).any())


@pytest.fixture(scope="module")
def prob():
    return TCMProblem(random_patterns(30, 40, 9), 3)


def random_segments(n: int, seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        w0 = 0.6 * torch.randn(30, generator=g, dtype=torch.float64)
        step = 0.05 if i % 3 == 0 else None  # short segments too, near one point
        w1 = w0 + step * torch.randn(30, generator=g, dtype=torch.float64) if step else 0.6 * torch.randn(30, generator=g, dtype=torch.float64)
        out.append((w0, w1))
    return out


def test_exact_minimum_matches_dense_sampling_through_kinks(prob):
    segments = random_segments(60, 0)
    assert sum(crosses_a_kink(prob, a, b) for a, b in segments) >= 30
    for w0, w1 in segments:
        c = prob.certify_segment(w0, w1)
        d = dense_min(prob, w0, w1, 2000)
        assert c.margin_bound <= d + 1e-12  # the minimum is below every sample
        assert d - c.margin_bound < 0.02  # and a fine grid comes close to it
        assert c.pieces >= 2 * prob.n_samples
        slack = rounding_slack(float(w0.abs().sum()), float(w1.abs().sum()), prob.n_per_unit, prob.n_hidden)
        assert c.certified == (c.margin_bound > slack)


def test_minimum_at_a_kink_is_found_exactly():
    # one pattern, K = 3 units of one input each: margin = sum_k htanh(w_k)
    prob = TCMProblem(Patterns(inputs=np.ones((1, 3), dtype=np.int8), labels=np.ones(1, dtype=np.int8), seed=0), 3)
    w0 = torch.tensor([1.0, -5.0, 0.5], dtype=torch.float64)
    w1 = torch.tensor([-5.0, 1.0, 0.5], dtype=torch.float64)  # margin 0.5 at both ends, -1.5 at t = 1/3
    assert prob.contains(w0) and prob.contains(w1)
    c = prob.certify_segment(w0, w1)
    assert not c.certified
    assert c.margin_bound == pytest.approx(-1.5, abs=1e-12)
    assert prob.certify_segment(w0, torch.tensor([1.0, -4.0, 0.5], dtype=torch.float64)).certified


def test_julia_certifier_makes_the_same_decisions():
    from ramble.julia import backend as jb

    p = random_patterns(30, 40, 9)
    py = TCMProblem(p, 3)
    jl = jb.JuliaTCM(p, 3)
    for w0, w1 in random_segments(40, 1):
        cp = py.certify_segment(w0, w1)
        cj = jl.certify_segment(w0.numpy(), w1.numpy())
        assert cp.certified == cj.certified and cp.pieces == cj.pieces
        assert cj.margin_bound == pytest.approx(cp.margin_bound, rel=1e-12, abs=1e-12)
    one = Patterns(inputs=np.ones((1, 3), dtype=np.int8), labels=np.ones(1, dtype=np.int8), seed=0)
    cj = jb.JuliaTCM(one, 3).certify_segment(np.array([1.0, -5.0, 0.5]), np.array([-5.0, 1.0, 0.5]))
    assert not cj.certified and cj.margin_bound == pytest.approx(-1.5)
