"""Julia vs Python TCM backends: the cross-check, and the agreements it rests on.

These run the Julia backend for real (Julia is required).
"""

from __future__ import annotations

import numpy as np
import pytest

from ramble.core.path import PathConfig
from ramble.julia import crosscheck as cc
from ramble.julia.backend import JuliaTCM
from ramble.models.patterns import Patterns, random_patterns
from ramble.models.tcm_backends import PythonTCM
from ramble.models.tcm_training import TrainConfig


@pytest.fixture(scope="module")
def pair():
    p = random_patterns(30, 36, 1)
    return PythonTCM(p, 3), JuliaTCM(p, 3)


def two_solutions(py: PythonTCM, n_inputs: int) -> list:
    """The first two starts (seeded, std init_scale / sqrt(N/K)) that GD takes into S."""
    cfg = TrainConfig()
    rng = np.random.default_rng(11)
    out = []
    while len(out) < 2:
        s = py.gd_solve(rng.normal(0.0, cfg.init_scale / np.sqrt(n_inputs // 3), n_inputs), cfg)
        if s.solved:
            out.append(s.w)
    return out


@pytest.fixture(scope="module")
def solutions(pair):
    return two_solutions(pair[0], 30)


def test_crosscheck_passes_at_a_small_size():
    report = cc.crosscheck(seed=1)
    assert report.ok, report.format()
    assert report.path_first_divergence is None
    assert report.path_status == ("complete", "complete")
    assert report.loss_rel <= cc.LOSS_RTOL and report.hessian_rel <= cc.HESSIAN_RTOL
    text = report.format()
    assert "verdict: the backends agree" in text
    for row in report.rows:
        assert row.name in text


def test_paper_variant_agrees_decision_by_decision():
    report = cc.crosscheck(seed=3, path_cfg=PathConfig.paper(max_iterations=600, patience=200))
    assert report.ok, report.format()
    assert report.path_iterations[0] == report.path_iterations[1] > 0


def test_perturbed_input_is_reported_as_a_disagreement():
    report = cc.crosscheck(seed=1, perturb=1e-6)
    assert not report.ok
    failed = {r.name.split(" (")[0] for r in report.rows if not r.ok}
    assert {"loss", "gradient", "margins", "Hessian"} <= failed
    assert "the backends DISAGREE" in report.format()


class _WrongGradient:
    """A Julia backend whose gradient is off in one component: the check must notice."""

    def __init__(self, inner: JuliaTCM) -> None:
        self.inner = inner
        self.name = "julia-wrong"

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def loss_and_grad(self, w):
        loss, g = self.inner.loss_and_grad(w)
        g = g.copy()
        g[0] *= 1.0 + 1e-9
        return loss, g


def test_a_backend_difference_fails_the_check(pair):
    _, jl = pair
    report = cc.crosscheck(seed=1, julia=_WrongGradient(jl))
    assert not report.ok
    assert [r.name for r in report.rows if not r.ok] == ["gradient"]


def test_loss_gradient_hessian_agree_including_the_kinks():
    # N/K = 8: weights xi/8 put a hidden field at exactly +1, on the kink,
    # where both backends take htanh' = 0.
    p = random_patterns(24, 20, 5)
    py, jl = PythonTCM(p, 3), JuliaTCM(p, 3)
    rng = np.random.default_rng(2)
    kink = rng.normal(0.0, 0.3, 24)
    kink[0:8] = p.inputs[0, 0:8] / 8.0
    assert py.problem.fields(__import__("torch").from_numpy(kink))[0, 0].item() == 1.0
    for w in (rng.normal(0.0, 0.3, 24), rng.normal(0.0, 2.0, 24), kink):
        lp, gp = py.loss_and_grad(w)
        lj, gj = jl.loss_and_grad(w)
        assert abs(lj - lp) <= cc.LOSS_RTOL * abs(lp)
        assert np.max(np.abs(gj - gp)) <= cc.GRAD_RTOL * np.max(np.abs(gp))
        hp, hj = py.hessian(w), jl.hessian(w)
        assert np.max(np.abs(hj - hp)) <= cc.HESSIAN_RTOL * np.max(np.abs(hp))
        ev = jl.hessian_spectrum(w)
        assert np.allclose(ev, np.linalg.eigvalsh(hp), atol=1e-12 * np.max(np.abs(ev)))


@pytest.mark.parametrize("cfg", [TrainConfig(), TrainConfig(kick_after=20, kick_every=10)], ids=["default", "early-kicks"])
def test_training_agrees(pair, cfg):
    # The kick puts a field at 0.5*sigma, off htanh's kink, so training with
    # kicks agrees too (a kick onto the kink let rounding pick the slope).
    py, jl = pair
    for seed in range(3):
        w0 = np.random.default_rng(seed).normal(0.0, cfg.init_scale / np.sqrt(10), 30)
        a, b = py.gd_solve(w0, cfg), jl.gd_solve(w0, cfg)
        assert (a.solved, a.epochs, a.kicks, a.polish_epochs, a.errors) == (b.solved, b.epochs, b.kicks, b.polish_epochs, b.errors)
        assert a.kicks > 0 or cfg.kick_after > 1000
        assert np.max(np.abs(a.w - b.w)) <= cc.SOLVE_RTOL * np.max(np.abs(a.w))
        assert abs(a.min_margin - b.min_margin) <= 1e-12


def test_least_action_kick_agrees(pair):
    # The kick on its own, to rounding.
    import torch

    from ramble.julia import bridge as julia_bridge
    from ramble.models.tcm_training import least_action_kick

    py, jl = pair
    bridge = julia_bridge.get_bridge()
    for seed in range(5):
        w = np.random.default_rng(seed).normal(0.0, 0.5, 30)
        assert (py.margins(w) <= 0).sum() > 5
        expected = least_action_kick(py.problem, torch.from_numpy(w)).numpy()
        out = np.zeros(30)
        bridge.eval(
            f"let m = Ramble.Bridge.MODELS[{jl._handle}]; "
            f"w = unsafe_wrap(Array, Ptr{{Float64}}({w.ctypes.data}), 30); "
            f"o = unsafe_wrap(Array, Ptr{{Float64}}({out.ctypes.data}), 30); Ramble.least_action_kick!(o, m, w); 0 end"
        )
        assert np.max(np.abs(out - expected)) <= 1e-14


def test_straight_line_and_evaluation_agree(pair, solutions):
    py, jl = pair
    lp, lj = py.straight_line(*solutions, 21), jl.straight_line(*solutions, 21)
    assert np.array_equal(lp["alpha"], lj["alpha"])
    assert np.array_equal(lp["train_error"], lj["train_error"])
    assert np.allclose(lp["train_loss"], lj["train_loss"], rtol=1e-13, atol=0)


def test_repair_variant_paths_agree(pair, solutions):
    py, jl = pair
    cfg = PathConfig(gamma=0.05)
    rp, rj = py.find_path(*solutions, cfg), jl.find_path(*solutions, cfg)
    assert cc.first_divergence(rp, rj) is None
    assert (rp.status, rp.reason, rp.iterations) == (rj.status, rj.reason, rj.iterations)
    assert (rp.elastic_accepted, rp.elastic_repaired, rp.elastic_refused, rp.gd_accepted, rp.gd_refused_total,
            rp.segment_checks) == (rj.elastic_accepted, rj.elastic_repaired, rj.elastic_refused, rj.gd_accepted,
                                   rj.gd_refused_total, rj.segment_checks)
    assert np.array_equal(rp.iteration, rj.iteration)
    d_ab = np.linalg.norm(solutions[1] - solutions[0])
    assert np.max(np.linalg.norm(rp.weights - rj.weights, axis=1)) <= cc.PATH_RTOL * d_ab
    assert np.allclose(rp.train_loss, rj.train_loss, rtol=1e-9)



@pytest.fixture(scope="module")
def hard_pair():
    """A TCM (N=90, M=180) whose elastic steps at gamma 0.5 are refused: halvings matter there."""
    p = random_patterns(90, 180, 1)
    py = PythonTCM(p, 3)
    return py, JuliaTCM(p, 3), two_solutions(py, 90)


def test_elastic_halvings_agree_decision_by_decision(hard_pair):
    py, jl, (w_a, w_b) = hard_pair
    cfg = PathConfig(gamma=0.5, elastic_halvings=4, max_iterations=120, patience=100)
    rp, rj = py.find_path(w_a, w_b, cfg), jl.find_path(w_a, w_b, cfg)
    assert cc.first_divergence(rp, rj) is None
    assert (rp.status, rp.iterations, rp.elastic_repaired, rp.elastic_refused, rp.segment_checks) == (
        rj.status, rj.iterations, rj.elastic_repaired, rj.elastic_refused, rj.segment_checks)
    # not vacuous: without halvings every elastic step of this pair is refused
    plain = py.find_path(w_a, w_b, PathConfig(gamma=0.5, max_iterations=120, patience=100))
    assert plain.elastic_accepted + plain.elastic_repaired == 0
    assert rp.elastic_accepted + rp.elastic_repaired > 0
def test_first_divergence_helper():
    from ramble.core.path import PathResult

    def result(dec, gdr):
        n = len(dec)
        z = np.zeros(1)
        return PathResult("complete", "", z.reshape(1, 1), z, z, z, z, np.array(dec, dtype=np.int8),
                          np.array(gdr, dtype=np.int8), n, 0, 0, 0, 0, 0, 0, 0.0)

    assert cc.first_divergence(result([1, 2, 0], [0, 0, 1]), result([1, 2, 0], [0, 0, 1])) is None
    assert cc.first_divergence(result([1, 2, 0], [0, 0, 1]), result([1, 1, 0], [0, 0, 1])) == 1
    assert cc.first_divergence(result([1, 2, 0], [0, 0, 1]), result([1, 2, 0], [0, 1, 1])) == 1
    assert cc.first_divergence(result([1, 2], [0, 0]), result([1, 2, 0], [0, 0, 1])) == 2


def test_same_data_reaches_both_backends():
    p = random_patterns(12, 10, 8)
    weird = Patterns(inputs=p.inputs.astype(np.int64), labels=p.labels.astype(np.float32), seed=8)
    w = np.random.default_rng(1).normal(0.0, 0.4, 12)
    assert np.array_equal(JuliaTCM(weird, 3).margins(w), JuliaTCM(p, 3).margins(w))
