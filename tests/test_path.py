"""Algorithm 1 (ramble.path): invariants of complete paths, variants, failures."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ramble.errors import ConfigError
from ramble.path import NormConstraint, PathConfig, find_path, straight_line


def check_complete_path(prob, r, w_a, w_b):
    assert r.status == "complete", r.reason
    ws = torch.from_numpy(r.weights)
    assert torch.equal(ws[0], w_a) and torch.equal(ws[-1], w_b)
    assert all(prob.contains(w) for w in ws)
    nc = NormConstraint(w_a, w_b, prob.groups)
    assert max(nc.violation(w) for w in ws) < 1e-9
    assert r.distance[0] == pytest.approx(0.0) and r.distance[-1] == pytest.approx(1.0)
    assert np.all(r.train_error == 0.0)
    assert len(r.decisions) == r.iterations
    assert r.elastic_accepted + r.elastic_repaired + r.elastic_refused == r.iterations


def test_repair_variant_arrives_inside_S(small_tcm):
    prob, (w_a, w_b) = small_tcm
    r = find_path(prob, w_a, w_b, PathConfig())
    check_complete_path(prob, r, w_a, w_b)
    # non-trivial: the straight line leaves S on this pair
    line = straight_line(prob, w_a, w_b, 101)
    assert line["train_error"].max() > 0


def test_reverse_direction_also_arrives(small_tcm):
    prob, (w_a, w_b) = small_tcm
    check_complete_path(prob, find_path(prob, w_b, w_a, PathConfig()), w_b, w_a)


def test_paper_variant_fails_with_reason_or_arrives(small_tcm):
    prob, (w_a, w_b) = small_tcm
    r = find_path(prob, w_a, w_b, PathConfig.paper(max_iterations=3000, patience=1000))
    if r.complete:
        check_complete_path(prob, r, w_a, w_b)
    else:
        assert r.reason
        assert all(prob.contains(torch.from_numpy(w)) for w in r.weights)


def test_iteration_limit_is_a_clear_failure(small_tcm):
    prob, (w_a, w_b) = small_tcm
    r = find_path(prob, w_a, w_b, PathConfig(gamma=1e-4, max_iterations=50))
    assert r.status == "failed" and "iteration limit 50" in r.reason
    assert r.iterations == 50


def test_identical_endpoints_give_a_one_point_path(small_tcm):
    prob, (w_a, _) = small_tcm
    r = find_path(prob, w_a, w_a.clone(), PathConfig())
    assert r.complete and len(r.weights) == 1


def test_endpoint_outside_S_is_refused(small_tcm):
    prob, (w_a, w_b) = small_tcm
    with pytest.raises(ConfigError, match="W_b is not a solution"):
        find_path(prob, w_a, torch.zeros_like(w_b), PathConfig())
    with pytest.raises(ConfigError, match="shapes"):
        find_path(prob, w_a, w_b[:-1], PathConfig())


@pytest.mark.parametrize(
    "kw",
    [dict(gamma=0.0), dict(gamma=1.5), dict(gamma=-0.1), dict(lr=-1.0), dict(n_epochs=-1), dict(tol=0.0), dict(variant="nope"), dict(max_iterations=0)],
)
def test_bad_path_config(kw):
    with pytest.raises(ConfigError):
        PathConfig(**kw)


def test_norm_constraint_is_exact_and_preserves_direction():
    g = torch.Generator().manual_seed(0)
    w_a, w_b = torch.randn(50, generator=g, dtype=torch.float64), 2 * torch.randn(50, generator=g, dtype=torch.float64)
    nc = NormConstraint(w_a, w_b, [slice(0, 20), slice(20, 50)])
    assert nc.violation(w_a) < 1e-12 and nc.violation(w_b) < 1e-12
    x = 0.5 * (w_a + w_b) + 0.1 * torch.randn(50, generator=g, dtype=torch.float64)
    y = nc.apply(x)
    assert nc.violation(y) < 1e-10
    for s in nc.groups:
        cos = torch.dot(x[s], y[s]) / (x[s].norm() * y[s].norm())
        assert cos == pytest.approx(1.0, abs=1e-12)


def test_straight_line_endpoints(small_tcm):
    prob, (w_a, w_b) = small_tcm
    line = straight_line(prob, w_a, w_b, 11)
    assert line["alpha"][0] == 0 and line["alpha"][-1] == 1 and len(line["alpha"]) == 11
    assert line["train_error"][0] == 0 and line["train_error"][-1] == 0


def test_reversed_path_is_the_same_path_backwards(small_tcm):
    from ramble.path import reversed_path

    prob, (w_a, w_b) = small_tcm
    r = find_path(prob, w_a, w_b, PathConfig())
    b = reversed_path(r)
    assert np.array_equal(b.weights[0], r.weights[-1]) and np.array_equal(b.weights[-1], r.weights[0])
    assert b.distance[0] == pytest.approx(0.0) and b.distance[-1] == pytest.approx(1.0)
    np.testing.assert_allclose(b.distance, 1 - np.linalg.norm(b.weights - w_a.numpy(), axis=1) / float((w_b - w_a).norm()), atol=1e-12)


def test_straight_leg_refuses_a_segment_leaving_S(small_tcm):
    from ramble.path import straight_leg

    prob, (w_a, w_b) = small_tcm
    # the straight line between these two solutions leaves S (test above)
    assert straight_leg(prob.contains, prob.evaluate, w_a, w_b) is None
    leg = straight_leg(prob.contains, prob.evaluate, w_a, 1.2 * w_a)
    if leg is not None:  # scaling up keeps this solution in S
        assert len(leg.weights) == 11 and np.all(leg.train_error == 0)
        assert all(prob.contains(torch.from_numpy(w)) for w in leg.weights)
