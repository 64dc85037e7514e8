"""LeNet5, flat parameters, and LeNetProblem against the PathProblem contract."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from ramble.errors import ConfigError, RambleError
from ramble.models.lenet import (
    LeNet5,
    LeNetProblem,
    evaluate_on,
    flatten,
    init_xavier,
    load_flat,
    param_spec,
    resolve_device,
    train_solution,
    xavier_flat,
)
from ramble.models.mnist import load_mnist

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "mnist"

SPEC = [
    ("conv1.weight", (6, 1, 5, 5)), ("conv1.bias", (6,)),
    ("conv2.weight", (16, 6, 5, 5)), ("conv2.bias", (16,)),
    ("fc1.weight", (120, 400)), ("fc1.bias", (120,)),
    ("fc2.weight", (84, 120)), ("fc2.bias", (84,)),
    ("fc3.weight", (10, 84)), ("fc3.bias", (10,)),
]


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def data():
    return load_mnist(FIXTURE, train_size=100, test_size=1000)


@pytest.fixture(scope="module")
def problem(data):
    return LeNetProblem.from_data(data)


@pytest.fixture(scope="module")
def solution(data):
    """An MNIST-100 solution (full-batch GD, lr 0.1, seed 0) and its info."""
    return train_solution(data, seed=0)


def _module_margin_grad(w: torch.Tensor, x: torch.Tensor, y: int) -> torch.Tensor:
    """Gradient of one sample's margin by plain autograd through an nn.Module (independent path)."""
    model = LeNet5().to(w.dtype)
    load_flat(model, w)
    logits = model(x[None])[0]
    other = torch.cat([logits[:y], logits[y + 1:]]).max()
    (logits[y] - other).backward()
    return torch.cat([p.grad.reshape(-1) for p in model.parameters()])


# --------------------------------------------------------------------------- the network


def test_parameter_count_and_spec():
    model = LeNet5()
    assert sum(p.numel() for p in model.parameters()) == 61_706
    assert param_spec(model) == SPEC
    assert model(torch.zeros(3, 1, 28, 28)).shape == (3, 10)


def test_groups_partition_the_flat_vector(problem):
    assert problem.n_params == 61_706 and len(problem.groups) == len(SPEC)
    stops = [0] + [g.stop for g in problem.groups]
    assert [g.start for g in problem.groups] == stops[:-1]
    assert [g.stop - g.start for g in problem.groups] == [math.prod(s) for _, s in SPEC]


def test_flatten_load_flat_round_trip(data):
    a, b = init_xavier(LeNet5(), 1), init_xavier(LeNet5(), 2)
    w = flatten(a)
    assert w.shape == (61_706,)
    assert torch.equal(w[:150], a.conv1.weight.reshape(-1))  # named_parameters order, C order
    assert torch.equal(w[-10:], a.fc3.bias)
    load_flat(b, w)
    assert torch.equal(flatten(b), w)
    x = data.train_x[:4]
    assert torch.equal(a(x), b(x))
    with pytest.raises(ValueError):
        load_flat(b, w[:-1])


def test_xavier_init_is_reproducible_and_bounded():
    a, b, c = (flatten(init_xavier(LeNet5(), s)) for s in (7, 7, 8))
    assert torch.equal(a, b) and not torch.equal(a, c)
    model = init_xavier(LeNet5(), 7)
    for name, p in model.named_parameters():
        if name.endswith("bias"):
            assert torch.count_nonzero(p) == 0
        else:
            fan_in = p[0].numel()
            fan_out = p.shape[0] * (p[0, 0].numel() if p.ndim == 4 else 1)
            bound = math.sqrt(6 / (fan_in + fan_out))
            assert float(p.detach().abs().max()) <= bound
    fc1 = model.fc1.weight.detach()  # 48,000 draws: uniform std is bound / sqrt(3)
    assert abs(float(fc1.std()) - math.sqrt(6 / 520) / math.sqrt(3)) < 0.01 * float(fc1.std())
    assert torch.equal(xavier_flat(7), a)


# --------------------------------------------------------------------------- loss, gradients, margins


def test_loss_and_grad_against_finite_differences(data):
    p64 = LeNetProblem(data.train_x[:8], data.train_y[:8], dtype=torch.float64)
    gen = torch.Generator().manual_seed(0)
    # Non-zero biases so that their gradients are exercised away from the init.
    w = p64.init_weights(3) + 0.05 * torch.randn(p64.n_params, generator=gen, dtype=torch.float64)
    loss, g = p64.loss_and_grad(w)
    model = LeNet5().double()
    load_flat(model, w)
    with torch.no_grad():
        assert loss == pytest.approx(float(F.cross_entropy(model(p64.x), p64.y)), rel=1e-12)
    coords = [int(torch.randint(s.start, s.stop, (1,), generator=gen)) for s in p64.groups]
    eps = 1e-6
    for i in coords:
        e = torch.zeros_like(w)
        e[i] = eps
        fd = (p64.loss_and_grad(w + e)[0] - p64.loss_and_grad(w - e)[0]) / (2 * eps)
        assert fd == pytest.approx(float(g[i]), rel=1e-5, abs=1e-9), f"coordinate {i}"


def test_chunked_loss_equals_one_batch(data):
    one = LeNetProblem(data.train_x[:30], data.train_y[:30], dtype=torch.float64)
    chunked = LeNetProblem(data.train_x[:30], data.train_y[:30], dtype=torch.float64, eval_batch_size=7)
    w = one.init_weights(4)
    (l1, g1), (l2, g2) = one.loss_and_grad(w), chunked.loss_and_grad(w)
    assert l1 == pytest.approx(l2, rel=1e-12) and torch.allclose(g1, g2, rtol=1e-10, atol=1e-14)
    assert torch.allclose(one.margins(w), chunked.margins(w), rtol=1e-12)


def test_margins_agree_with_argmax(problem, solution):
    for w in (problem.init_weights(0), solution[0]):
        m = problem.margins(w)
        assert m.shape == (problem.n_samples,)
        logits = problem.logits(w, problem.x).detach()
        assert torch.equal(m > 0, logits.argmax(1) == problem.y)
        top2 = logits.topk(2, dim=1).values
        correct = m > 0  # for a correct sample the margin is the gap to the runner-up
        assert torch.allclose(m[correct], (top2[:, 0] - top2[:, 1])[correct], atol=1e-5)


def test_contains_agrees_with_margins(problem, solution, data):
    w0, ws = problem.init_weights(0), solution[0]
    assert problem.contains(w0) is False and bool((problem.margins(w0) > 0).all()) is False
    assert problem.contains(ws) is True and bool((problem.margins(ws) > 0).all()) is True
    # One wrong label in the last of 10 chunks: the early exit must not skip it.
    y = data.train_y.clone()
    y[95] = int(problem.logits(ws, problem.x[95:96]).argmin())
    bad = LeNetProblem(data.train_x, y, eval_batch_size=10)
    m = bad.margins(ws)
    assert int((m <= 0).sum()) == 1 and bool(m[95] <= 0)
    assert bad.contains(ws) is False


def test_a_membership_tests_forward_pass_serves_the_next_gradient_bit_for_bit(data, solution):
    """contains(w) keeps its forward pass; loss_and_grad at that same w reuses it and gives exactly the uncached values."""
    reuse, fresh = LeNetProblem.from_data(data), LeNetProblem.from_data(data)
    w = solution[0].clone()
    for _ in range(3):  # a few GD steps, as a path takes them
        assert reuse.contains(w) is True and reuse._kept is not None and reuse._kept[0] is w
        (l1, g1), (l2, g2) = reuse.loss_and_grad(w), fresh.loss_and_grad(w)
        assert reuse._kept is None  # used once
        assert l1 == l2 and torch.equal(g1, g2)
        assert torch.equal(reuse.margins(w), fresh.margins(w))
        w = w - 0.1 * g1
    # a kept pass at another point is not used
    reuse.contains(solution[0])
    other = solution[0] + 1e-3
    assert torch.equal(reuse.loss_and_grad(other)[1], fresh.loss_and_grad(other)[1])


def test_margin_grads_against_autograd(problem, solution):
    w = solution[0]
    index = torch.tensor([0, 5, 99, 5])
    got = problem.margin_grads(w, index)
    assert got.shape == (4, problem.n_params)
    for row, i in enumerate(index.tolist()):
        want = _module_margin_grad(w, problem.x[i], int(problem.y[i]))
        assert torch.allclose(got[row], want, rtol=1e-4, atol=1e-6), f"sample {i}"
    assert problem.margin_grads(w, []).shape == (0, problem.n_params)


def test_matrix_free_margin_products_equal_the_formed_gradients(data, solution):
    """G u and G^T a from jvp/vjp (chunked) against margin_grads' G (k, P), in float64, on chunks of 7 samples."""
    problem = LeNetProblem.from_data(data, dtype=torch.float64, eval_batch_size=7)
    w = solution[0].double()
    index = torch.tensor([3, 0, 50, 99, 17, 8, 61, 42, 5, 77, 23, 90, 31, 64, 11, 2])  # 16 samples: three chunks
    g = problem.margin_grads(w, index)
    times, transposed_times = problem.margin_products(w, index)
    gen = torch.Generator().manual_seed(0)
    u = torch.randn(problem.n_params, generator=gen, dtype=torch.float64)
    a = torch.randn(len(index), generator=gen, dtype=torch.float64)
    assert torch.allclose(times(u), g @ u, rtol=1e-10, atol=1e-10)
    assert torch.allclose(transposed_times(a), g.T @ a, rtol=1e-10, atol=1e-10)


def test_the_matrix_free_repair_step_is_the_dense_minimum_norm_step(data, solution):
    """LSMR from zero on the products finds the dense d = G^T (G G^T)^+ r, the repair round's step."""
    from ramble.core.path import min_norm_step_dense, min_norm_step_matrix_free

    problem = LeNetProblem.from_data(data, dtype=torch.float64, eval_batch_size=32)
    w = solution[0].double() + 0.05 * torch.randn(problem.n_params, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    m = problem.margins(w)
    idx = torch.argsort(m)[:40]  # the 40 lowest margins, as a repair round would take
    rhs = 0.2 - m[idx]
    dense = min_norm_step_dense(problem, w, idx, rhs, broken=m[idx] <= 0)
    free = min_norm_step_matrix_free(problem, w, idx, rhs)
    assert dense is not None and free is not None
    assert torch.linalg.norm(free - dense) <= 1e-4 * torch.linalg.norm(dense)
    g = problem.margin_grads(w, idx)
    # it lifts every active margin to the target, to first order (LSMR's tolerance 1e-6 relative)
    assert float((g @ free - rhs).abs().max()) <= 1e-4 * float(rhs.abs().max())


def test_a_repair_round_over_many_samples_goes_matrix_free_and_lands_in_s(data, solution, monkeypatch):
    """When G would not fit in DENSE_REPAIR_BYTES the round never forms it; the repaired point is in S and on Eq. 4."""
    import ramble.core.path as path

    problem = LeNetProblem.from_data(data)
    w_a = solution[0]
    w_b = train_solution(data, seed=1)[0]
    norm = path.NormConstraint(w_a, w_b, problem.groups)
    w = norm.apply(0.5 * (w_a + w_b))  # the midpoint on the Eq. 4 surface: outside S for these two
    assert w is not None and not problem.contains(w)

    def refuse(*_a, **_k):
        raise AssertionError("the dense step was used above the limit")

    monkeypatch.setattr(path, "DENSE_REPAIR_BYTES", path.dense_repair_bytes(5, w))  # more than 5 active samples: matrix-free
    monkeypatch.setattr(path, "min_norm_step_dense", refuse)
    fixed = path.repair(problem, w, norm, margin_target=0.2, steps=10)
    assert fixed is not None and problem.contains(fixed)
    assert norm.violation(fixed) < 1e-5


def test_methods_leave_w_alone(problem):
    w = problem.init_weights(5)
    before = w.clone()
    problem.loss_and_grad(w), problem.descent_step(w, 0.1), problem.margins(w), problem.contains(w)
    problem.margin_grads(w, [1, 2]), problem.evaluate(w)
    assert torch.equal(w, before)


# --------------------------------------------------------------------------- descent steps and evaluation


def test_descent_step_full_batch(problem):
    w = problem.init_weights(1)
    assert problem.full_batch
    assert torch.allclose(problem.descent_step(w, 0.1), w - 0.1 * problem.loss_and_grad(w)[1], atol=1e-7)


def test_descent_step_minibatch_epoch_is_fixed_order(data):
    x, y = data.train_x[:10], data.train_y[:10]
    p = LeNetProblem(x, y, full_batch_max=5, batch_size=4, dtype=torch.float64)
    assert not p.full_batch
    w = p.init_weights(2)
    want = w
    for s in (slice(0, 4), slice(4, 8), slice(8, 10)):  # the last batch is the remainder
        want = want - 0.05 * LeNetProblem(x[s], y[s], dtype=torch.float64).loss_and_grad(want)[1]
    got = p.descent_step(w, 0.05)
    assert torch.allclose(got, want, rtol=1e-12, atol=1e-14)
    assert torch.equal(p.descent_step(w, 0.05), got)  # deterministic


def test_evaluate_and_evaluate_on(problem, solution, data):
    w = solution[0]
    ev = problem.evaluate(w)
    assert ev.error == 0.0
    assert ev.loss == pytest.approx(problem.loss_and_grad(w)[0], rel=1e-5)
    w0 = problem.init_weights(0)
    ev0 = problem.evaluate(w0)
    assert ev0.error == pytest.approx(float((problem.margins(w0) <= 0).double().mean()))
    test = problem.evaluate_on(w, data.test_x, data.test_y)
    logits = LeNetProblem(data.test_x, data.test_y).logits(w, data.test_x).detach()
    assert test.error == pytest.approx(float((logits.argmax(1) != data.test_y).double().mean()))
    assert test.loss == pytest.approx(float(F.cross_entropy(logits, data.test_y)), rel=1e-5)
    assert 0.0 < test.error < 0.5  # an MNIST-100 solution generalises, poorly
    other = evaluate_on(w, data.test_x, data.test_y, batch_size=300)  # module-level, other chunking
    assert other.error == test.error and other.loss == pytest.approx(test.loss, rel=1e-5)


def test_bad_arguments(data):
    with pytest.raises(ConfigError):
        LeNetProblem(data.train_x, data.train_y, batch_size=0)
    p = LeNetProblem(data.train_x[:4], data.train_y[:4])
    with pytest.raises(ValueError):
        p.margins(torch.zeros(10))


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    for bad in ("gpu", "cuda:x", ""):
        with pytest.raises(ConfigError) as exc:
            resolve_device(bad)
        assert "\n" not in str(exc.value) and "cpu" in str(exc.value)


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_resolve_device_cuda_absent():
    with pytest.raises(ConfigError) as exc:
        resolve_device("cuda")
    assert "not available" in str(exc.value)


# --------------------------------------------------------------------------- training solutions


def test_train_solution_mnist100(problem, solution, data):
    w, info = solution
    assert problem.contains(w)
    assert info["train_error"] == 0.0 and info["min_margin"] > 0
    assert info["mode"] == "full-batch" and info["batch_size"] == 100 and info["lr"] == 0.1
    assert 1 <= info["epochs"] < 1000 and info["wall_s"] > 0
    # The same seed gives the same solution; another seed another one.
    w2, info2 = train_solution(problem, seed=0)
    assert torch.equal(w, w2) and info2["epochs"] == info["epochs"]
    w3, _ = train_solution(problem, seed=1)
    assert not torch.allclose(w, w3)


def test_train_solution_polish(problem):
    w, info = train_solution(problem, seed=0, polish_margin=1.0)
    assert info["min_margin"] >= 1.0 and float(problem.margins(w).min()) >= 1.0


def test_train_solution_minibatch(data):
    p = LeNetProblem(data.train_x[:60], data.train_y[:60], full_batch_max=20, batch_size=16)
    w, info = train_solution(p, seed=3, max_epochs=300)
    assert info["mode"] == "mini-batch" and info["batch_size"] == 16
    assert p.contains(w)
    w2, _ = train_solution(p, seed=3, max_epochs=300)
    assert torch.equal(w, w2)


def test_train_solution_gives_up(problem):
    with pytest.raises(RambleError) as exc:
        train_solution(problem, seed=0, max_epochs=2)
    msg = str(exc.value)
    assert "2 epochs" in msg and "\n" not in msg
    with pytest.raises(ConfigError):
        train_solution(problem, seed=0, lr=-1.0)


# --------------------------------------------------------------------------- certified segments (ramble.core.bounds)


def _float64_margins_along(problem, w0, w1, ts):
    """Float64 margins (len(ts), M) at w0 + t (w1 - w0): dense sampling, independent of the bounds."""
    from ramble.core.bounds import point_margins

    model = LeNet5().double()
    out = []
    for t in ts:
        load_flat(model, (w0 + float(t) * (w1 - w0)).double())
        out.append(point_margins(model, dict(model.named_parameters()), problem.x.double(), problem.y))
    return torch.stack(out).detach()


def test_certify_segment_proves_a_descent_step(problem, solution):
    w, _ = solution
    w1 = problem.descent_step(w, 0.1)
    c = problem.certify_segment(w, w1)
    assert c.certified, c
    sampled = _float64_margins_along(problem, w, w1, torch.linspace(0, 1, 33))
    assert 0 < c.margin_bound <= float(sampled.min())
    assert c.pieces >= 1 and c.seconds > 0


def test_certify_segment_refuses_the_line_between_two_solutions(problem, solution, data):
    """Two MNIST-100 solutions from different seeds: the straight line between them leaves S (checked by sampling)."""
    w_a, _ = solution
    w_b, _ = train_solution(data, seed=1)
    assert problem.contains(w_a) and problem.contains(w_b)
    outside = [float(t) for t in torch.linspace(0, 1, 11) if not problem.contains(w_a + float(t) * (w_b - w_a))]
    assert outside, "the fixture's two solutions are linearly connected: pick another seed"
    c = problem.certify_segment(w_a, w_b)
    assert not c.certified and c.margin_bound <= 0


def test_certify_segment_refuses_a_step_out_of_s(problem, solution):
    """From a solution to a point outside S (the last layer's weights flipped): refused, with a margin <= 0 found."""
    w, _ = solution
    w1 = w.clone()
    fc3 = problem.groups[-2]
    w1[fc3] = -w1[fc3]
    assert not problem.contains(w1)
    c = problem.certify_segment(w, w1)
    assert not c.certified and c.margin_bound <= 0
    assert c.pieces <= 3  # found by the check at the first failing piece's ends, not by bisecting to the limit
