"""The PathProblem contract (python/ramble/core/problem.py), held by every model ramble has.

One parametrised ``case`` fixture, in the manner of curvlinops's test cases:
the TCM (PyTorch, float64), LeNet5 on the MNIST fixture and a generic torch
MLP on scikit-learn's digits (both in float64 here, so finite differences
are exact enough to compare).  Every case brings the problem, two solutions
and a point outside S, and must satisfy every test below.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch

from ramble.core.problem import PathProblem

FIXTURE = Path(__file__).parent / "fixtures" / "mnist"


@dataclass
class Case:
    """A problem, two of its solutions (inside S) and a weight vector outside S."""

    problem: PathProblem
    w_a: torch.Tensor
    w_b: torch.Tensor
    outside: torch.Tensor


def tcm_case(small_tcm) -> Case:
    problem, (w_a, w_b) = small_tcm
    return Case(problem, w_a, w_b, -w_a)  # the committee's output flips sign with w: every margin negative


def lenet_case() -> Case:
    from ramble.models.lenet import LeNetProblem, train_solution
    from ramble.models.mnist import load_mnist

    data = load_mnist(FIXTURE, 20, 10)
    problem = LeNetProblem(data.train_x, data.train_y, dtype=torch.float64)
    w_a, _ = train_solution(problem, 1, lr=0.1, max_epochs=2000)
    w_b, _ = train_solution(problem, 2, lr=0.1, max_epochs=2000)
    return Case(problem, w_a, w_b, problem.init_weights(3))


def torch_mlp_case() -> Case:
    from sklearn.datasets import load_digits
    from torch import nn

    from ramble.models.torch_classifier import TorchClassifierProblem, train_solution

    d = load_digits()
    x = torch.tensor(d.data[:80] / 16.0)
    y = torch.tensor(d.target[:80])
    model = nn.Sequential(nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10))
    problem = TorchClassifierProblem(model, x, y, dtype=torch.float64)
    w_a, _ = train_solution(problem, 1, lr=0.5)
    w_b, _ = train_solution(problem, 2, lr=0.5)
    return Case(problem, w_a, w_b, problem.init_weights(3))


BUILDERS: dict[str, Callable[..., Case]] = {"tcm": tcm_case, "lenet5": lenet_case, "torch-mlp": torch_mlp_case}


@pytest.fixture(scope="module")
def _cases():
    return {}


@pytest.fixture(params=sorted(BUILDERS))
def case(request, _cases) -> Case:
    name = request.param
    if name not in _cases:
        _cases[name] = BUILDERS[name](request.getfixturevalue("small_tcm")) if name == "tcm" else BUILDERS[name]()
    return _cases[name]


def points(c: Case) -> list[torch.Tensor]:
    """Weight vectors inside and outside S and on the straight line between the solutions."""
    return [c.w_a, c.w_b, c.outside, 0.5 * (c.w_a + c.w_b), c.w_a + 0.3 * (c.outside - c.w_a)]


def test_the_case_is_what_it_claims(case):
    assert case.problem.contains(case.w_a) and case.problem.contains(case.w_b)
    assert not case.problem.contains(case.outside)


def test_contains_agrees_with_margins(case):
    for w in points(case):
        m = case.problem.margins(w)
        assert m.shape == (case.problem.n_samples,)
        assert case.problem.contains(w) == bool((m > 0).all())


def test_groups_partition_the_parameters(case):
    groups = list(case.problem.groups)
    p = case.w_a.shape[0]
    assert groups[0].start == 0 and groups[-1].stop == p
    assert all(g.stop > g.start for g in groups)
    assert all(a.stop == b.start for a, b in zip(groups, groups[1:]))


def test_margin_grads_match_finite_differences(case):
    rng = np.random.default_rng(0)
    w = case.w_a
    v = torch.from_numpy(rng.standard_normal(w.shape[0])).to(w)
    v /= v.norm()
    index = torch.arange(min(5, case.problem.n_samples))
    g = case.problem.margin_grads(w, index)
    assert g.shape == (len(index), w.shape[0])
    h = 1e-6 * float(w.norm())
    fd = (case.problem.margins(w + h * v)[index] - case.problem.margins(w - h * v)[index]) / (2 * h)
    np.testing.assert_allclose((g @ v).numpy(), fd.numpy(), rtol=1e-4, atol=1e-6 * float(fd.abs().max()))


def test_loss_gradient_matches_finite_differences(case):
    rng = np.random.default_rng(1)
    w = case.outside
    v = torch.from_numpy(rng.standard_normal(w.shape[0])).to(w)
    v /= v.norm()
    _, g = case.problem.loss_and_grad(w)
    h = 1e-6 * float(w.norm())
    fd = (case.problem.loss_and_grad(w + h * v)[0] - case.problem.loss_and_grad(w - h * v)[0]) / (2 * h)
    assert float(g @ v) == pytest.approx(fd, rel=1e-4, abs=1e-8)


def test_descent_step_lowers_the_loss_for_a_small_rate(case):
    w = case.outside
    loss, g = case.problem.loss_and_grad(w)
    lr = 1e-3 / max(float(g.norm()), 1e-12)
    w2 = case.problem.descent_step(w, lr)
    assert w2.shape == w.shape and not torch.equal(w2, w)
    assert case.problem.loss_and_grad(w2)[0] < loss


def test_evaluate_agrees_with_margins_and_the_loss(case):
    for w in points(case):
        ev = case.problem.evaluate(w)
        assert ev.error == pytest.approx(float((case.problem.margins(w) <= 0).double().mean()), abs=1e-12)
        assert ev.loss == pytest.approx(case.problem.loss_and_grad(w)[0], rel=1e-9)


def test_certify_never_certifies_a_segment_with_a_sampled_error(case):
    ts = np.linspace(0.0, 1.0, 41)
    segments = [(case.w_a, case.outside), (case.w_a, case.w_b), (case.outside, case.w_b)]
    leaving = 0
    for w0, w1 in segments:
        worst = min(float(case.problem.margins(w0 + float(t) * (w1 - w0)).min()) for t in ts)
        cert = case.problem.certify_segment(w0, w1)
        if worst <= 0:
            leaving += 1
            assert not cert.certified, (worst, cert)
        if cert.certified:
            assert cert.margin_bound <= worst + 1e-9
    assert leaving >= 2  # the segments to and from the point outside S leave S


def test_certify_proves_a_short_segment_inside_s(case):
    w0 = case.w_a
    w1 = case.w_a + 1e-6 * (case.w_b - case.w_a)
    cert = case.problem.certify_segment(w0, w1)
    assert cert.certified, cert
    assert 0 < cert.margin_bound <= float(case.problem.margins(w0).min()) + 1e-9
