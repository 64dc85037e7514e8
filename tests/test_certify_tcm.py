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


# ----------------------------------------------------------------------------- a whole polyline at once (verify)


def random_polyline(n_rows: int, seed: int, n: int = 30) -> torch.Tensor:
    """Rows (n_rows, n): short steps (near one point) mixed with long jumps, so many segments cross kinks."""
    g = torch.Generator().manual_seed(seed)
    rows = [0.6 * torch.randn(n, generator=g, dtype=torch.float64)]
    for i in range(n_rows - 1):
        step = 0.05 if i % 3 else 0.6
        rows.append(rows[-1] + step * torch.randn(n, generator=g, dtype=torch.float64) if i % 5 else 0.6 * torch.randn(n, generator=g, dtype=torch.float64))
    return torch.stack(rows)


def assert_same_as_one_by_one(prob: TCMProblem, rows: torch.Tensor, chunk: int) -> tuple[torch.Tensor, torch.Tensor]:
    """certify_polyline(rows) against certify_segment on each segment: same decisions, bounds equal to 1e-12."""
    certified, bound = prob.certify_polyline(rows, chunk)
    assert certified.shape == bound.shape == (len(rows) - 1,) and certified.dtype == torch.bool and bound.dtype == torch.float64
    for r in range(len(rows) - 1):
        c = prob.certify_segment(rows[r], rows[r + 1])
        assert bool(certified[r]) == c.certified, r
        assert float(bound[r]) == pytest.approx(c.margin_bound, rel=1e-12, abs=1e-12), r
    return certified, bound


@pytest.mark.parametrize("chunk", [1, 7, 128])
def test_polyline_certifier_makes_certify_segments_decisions_through_kinks(prob, chunk):
    rows = random_polyline(150, 2)  # 149 segments: several chunks of 7, one more than a chunk of 128
    assert sum(crosses_a_kink(prob, rows[r], rows[r + 1]) for r in range(len(rows) - 1)) >= 50
    assert_same_as_one_by_one(prob, rows, chunk)


@pytest.mark.parametrize("chunk", [7, 128])
def test_polyline_certifier_certifies_and_refuses_as_certify_segment_does(small_tcm, chunk):
    """Rows scattered around a solution: some segments stay in S, some leave it."""
    prob, (w_a, _) = small_tcm
    g = torch.Generator().manual_seed(5)
    rows = torch.stack([w_a + 0.02 * torch.randn(len(w_a), generator=g, dtype=torch.float64) for _ in range(150)])
    assert sum(crosses_a_kink(prob, rows[r], rows[r + 1]) for r in range(len(rows) - 1)) >= 20
    certified, _ = assert_same_as_one_by_one(prob, rows, chunk)
    assert 20 < int(certified.sum()) < len(certified) - 20  # both decisions are made: the comparison is not vacuous


def dense_mins(prob: TCMProblem, rows: torch.Tensor, n: int) -> torch.Tensor:
    """Smallest margin over n + 1 evenly spaced points of each segment between consecutive rows, shape (R - 1,) (no kinks involved)."""
    ts = torch.linspace(0.0, 1.0, n + 1, dtype=torch.float64).view(1, -1, 1)
    points = rows[:-1].unsqueeze(1) + ts * (rows[1:] - rows[:-1]).unsqueeze(1)  # (R - 1, n + 1, N)
    fields = torch.einsum("mkn,pkn->pmk", prob.xi, points.reshape(-1, prob.n_hidden, prob.n_per_unit))
    margins = prob.sigma * torch.nn.functional.hardtanh(fields).sum(dim=2)
    return margins.view(len(rows) - 1, -1).min(dim=1).values


def test_polyline_minimum_matches_dense_sampling(prob):
    rows = random_polyline(40, 3)
    _, bound = prob.certify_polyline(rows, 16)
    d = dense_mins(prob, rows, 2000)
    assert float(dense_min(prob, rows[5], rows[6], 2000)) == pytest.approx(float(d[5]), abs=1e-12)  # the two samplings agree
    assert bool((bound <= d + 1e-12).all())  # the minimum is below every sample
    assert bool((d - bound < 0.02).all())  # and a fine grid comes close to it


def test_polyline_segment_through_the_wall_with_both_ends_in_s(small_tcm):
    """The line between two solutions leaves S though both ends are in it: refused, alone or among certified steps, on any chunk boundary."""
    prob, (w_a, w_b) = small_tcm
    steps = torch.stack([w_a + (float(s) / 400) * (w_b - w_a) * 0.01 for s in range(300)])  # 299 short steps near w_a
    rows = torch.cat([steps, w_b.unsqueeze(0), w_a.unsqueeze(0)])  # then the jump to w_b and back
    assert prob.contains(w_a) and prob.contains(w_b) and prob.contains(steps[-1])
    assert not prob.certify_segment(steps[-1], w_b).certified and not prob.certify_segment(w_b, w_a).certified
    assert dense_min(prob, w_a, w_b, 200) < 0  # the line really leaves S
    for chunk in (10, 128, 299, 300, 301):  # the wall segments start a chunk, end one, or sit inside one
        certified, bound = assert_same_as_one_by_one(prob, rows, chunk)
        assert bool(certified[:299].all()) and not bool(certified[299]) and not bool(certified[300])
        assert float(bound[299]) < 0 and float(bound[300]) < 0


def test_polyline_minimum_at_a_kink_and_short_polylines():
    prob = TCMProblem(Patterns(inputs=np.ones((1, 3), dtype=np.int8), labels=np.ones(1, dtype=np.int8), seed=0), 3)
    rows = torch.tensor([[1.0, -4.0, 0.5], [1.0, -5.0, 0.5], [-5.0, 1.0, 0.5]], dtype=torch.float64)
    certified, bound = prob.certify_polyline(rows)
    assert certified.tolist() == [True, False]
    assert float(bound[1]) == pytest.approx(-1.5, abs=1e-12)  # at t = 1/3, inside the segment
    for n in (0, 1):
        c, b = prob.certify_polyline(rows[:n])
        assert c.shape == b.shape == (0,)
    with pytest.raises(ValueError, match="chunk"):
        prob.certify_polyline(rows, 0)
