"""Bound propagation over weight segments (ramble.core.bounds) against dense sampling, and its refusals."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ramble.core.bounds import certify_torch_segment, margin_bounds, point_margins
from ramble.errors import ConfigError

torch.set_num_threads(1)


class TanhMLP(nn.Module):
    """Linear-Tanh-Linear-ReLU-Linear, logits from a final Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(5, 8)
        self.fc2 = nn.Linear(8, 6)
        self.fc3 = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc3(F.relu(self.fc2(torch.tanh(self.fc1(x)))))


class ConvPoolNet(nn.Module):
    """Conv2d-ReLU-MaxPool2d module, Conv2d-ReLU-overlapping padded F.max_pool2d, torch.flatten, Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 3, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(3, 4, 3)
        self.fc = nn.Linear(4 * 3 * 3, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(nn.functional.relu(self.conv1(x)))  # (B, 3, 4, 4)
        x = F.max_pool2d(torch.relu(self.conv2(x)), 2, stride=1, padding=1)  # (B, 4, 3, 3), overlapping windows
        return self.fc(torch.flatten(x, 1))


class AvgSigmoidResidual(nn.Module):
    """Conv2d-Sigmoid-AvgPool2d, view(size(0), -1), a residual add, and logits that are a sum (no final Linear)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3, padding=1)
        self.avg = nn.AvgPool2d(2)
        self.fc = nn.Linear(12, 12)
        self.head = nn.Linear(12, 3)
        self.skip = nn.Linear(12, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.avg(torch.sigmoid(self.conv(x)))  # (B, 3, 2, 2)
        h = h.view(h.size(0), -1)
        h = F.relu(self.fc(h)) + h
        return self.head(h) + self.skip(h)


class FunctionalLinear(nn.Module):
    """F.linear and F.conv2d with the module's own parameters (get_attr nodes), F.avg_pool2d, nn.Flatten."""

    def __init__(self) -> None:
        super().__init__()
        self.kernel = nn.Parameter(torch.randn(2, 1, 3, 3) * 0.5)
        self.weight = nn.Parameter(torch.randn(3, 8) * 0.5)
        self.bias = nn.Parameter(torch.randn(3) * 0.1)
        self.flat = nn.Flatten()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.avg_pool2d(torch.relu(F.conv2d(x, self.kernel, padding=1)), 2)  # (B, 2, 2, 2)
        return F.linear(self.flat(h), self.weight, self.bias)


NETWORKS = {
    "tanh_mlp": (TanhMLP, (5,)),
    "conv_pool": (ConvPoolNet, (1, 8, 8)),
    "avg_sigmoid_residual": (AvgSigmoidResidual, (2, 4, 4)),
    "functional": (FunctionalLinear, (1, 4, 4)),
}


def _flat(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()]).double()


def _params(model: nn.Module, w: torch.Tensor) -> dict[str, torch.Tensor]:
    out, start = {}, 0
    for name, p in model.named_parameters():
        out[name] = w[start:start + p.numel()].view(p.shape)
        start += p.numel()
    return out


def _sampled_margins(model: nn.Module, w0: torch.Tensor, w1: torch.Tensor, x: torch.Tensor, y: torch.Tensor, ts: torch.Tensor) -> torch.Tensor:
    """Float64 margins (len(ts), M) at w0 + t (w1 - w0)."""
    with torch.no_grad():
        return torch.stack([point_margins(model, _params(model, w0 + float(t) * (w1 - w0)), x.double(), y) for t in ts])


def _random_case(name: str, seed: int, step: float):
    """A random network of kind ``name``, a segment of relative length ``step``, 12 inputs with random labels."""
    cls, shape = NETWORKS[name]
    torch.manual_seed(seed)
    model = cls()
    w0 = _flat(model) * 2.0  # larger weights: more units change sign along the segment
    w1 = w0 + step * w0.abs().mean() * torch.randn_like(w0)
    x = torch.randn((12,) + shape)
    y = torch.randint(0, 3, (12,))
    return model, w0, w1, x, y


# ----------------------------------------------------------------------------- soundness against sampling


@pytest.mark.parametrize("name", sorted(NETWORKS))
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bound_below_every_sampled_margin(name, seed):
    model, w0, w1, x, y = _random_case(name, seed, step=0.3)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(3):
        a, b = sorted(torch.randint(0, 65, (2,), generator=gen).tolist())
        a, b = a / 64, max(b, a + 1) / 64  # dyadic sub-interval of [0, 1]
        bound = margin_bounds(model, w0, w1, x, y, a, b)
        sampled = _sampled_margins(model, w0, w1, x, y, torch.linspace(a, b, 257))
        assert bound.shape == (12,) and bound.dtype == torch.float64
        assert bool((sampled >= bound).all()), (name, seed, a, b, float((sampled - bound).min()))


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_bound_is_tight_on_short_pieces(name):
    """Not vacuous: on a piece of length 1e-6 the bound is within 1e-4 of the sampled minimum."""
    model, w0, w1, x, y = _random_case(name, 5, step=0.3)
    bound = margin_bounds(model, w0, w1, x, y, 0.5, 0.5 + 2.0 ** -20)
    sampled = _sampled_margins(model, w0, w1, x, y, torch.linspace(0.5, 0.5 + 2.0 ** -20, 17)).amin(0)
    assert bool((sampled >= bound).all())
    assert float((sampled - bound).max()) < 1e-4


def test_relu_kinks_inside_the_piece_are_bounded():
    """A piece over which many ReLUs change sign still bounds every sampled margin (the relaxation, not luck)."""
    model, w0, w1, x, y = _random_case("conv_pool", 7, step=3.0)
    bound = margin_bounds(model, w0, w1, x, y)
    sampled = _sampled_margins(model, w0, w1, x, y, torch.linspace(0, 1, 1025))
    assert bool((sampled >= bound).all())
    h0 = F.conv2d(x.double(), _params(model, w0)["conv1.weight"], _params(model, w0)["conv1.bias"], padding=1)
    h1 = F.conv2d(x.double(), _params(model, w1)["conv1.weight"], _params(model, w1)["conv1.bias"], padding=1)
    assert int(((h0 > 0) != (h1 > 0)).sum()) > 50  # many first-layer units cross their kink


# ----------------------------------------------------------------------------- the certificate


def test_certifies_a_segment_with_positive_margins_and_bounds_its_minimum():
    model, w0, w1, x, _ = _random_case("tanh_mlp", 3, step=0.05)
    with torch.no_grad():
        logits = torch.func.functional_call(model, _params(model, w0), (x.double(),))
    y = logits.argmax(1)
    sampled = _sampled_margins(model, w0, w1, x, y, torch.linspace(0, 1, 513))
    keep = sampled.amin(0) > 0.05  # samples classified with room along the whole segment
    assert int(keep.sum()) >= 4
    c = certify_torch_segment(model, w0, w1, x[keep], y[keep])
    assert c.certified, c
    assert 0 < c.margin_bound <= float(sampled[:, keep].min())
    assert c.pieces >= 1 and (c.pieces - 1) % 2 == 0 and c.seconds > 0


class StopAfter:
    """A stop request that comes true after ``n`` checks; counts the checks."""

    def __init__(self, n: float) -> None:
        self.n, self.checks = n, 0

    def __call__(self) -> bool:
        self.checks += 1
        return self.checks > self.n


def test_a_stop_request_abandons_a_certificate_between_batches():
    """Inside ``abandonable``, a certificate checks for a stop between batches of samples (a piece over whole
    MNIST takes tens of seconds); without a request it gives the same certificate as outside."""
    from ramble.core.stopping import MoveAbandoned, abandonable

    model, w0, w1, x, y = _random_case("tanh_mlp", 3, step=0.05)
    plain = certify_torch_segment(model, w0, w1, x, y, batch=2)
    never = StopAfter(math.inf)
    with abandonable(never):
        quiet = certify_torch_segment(model, w0, w1, x, y, batch=2)
    assert (quiet.certified, quiet.margin_bound, quiet.pieces) == (plain.certified, plain.margin_bound, plain.pieces)
    assert never.checks >= len(y) // 2, "a check per batch of 2 samples at least"
    soon = StopAfter(3)
    with abandonable(soon), pytest.raises(MoveAbandoned):
        certify_torch_segment(model, w0, w1, x, y, batch=2)
    assert soon.checks == 4, "abandoned at the first check after the request"


def _wall_crossing_net() -> tuple[nn.Module, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Both ends classify x = 1 as class 0 (margin 1); at t = 1/2 every weight but the bias is 0 (margin -1)."""
    model = nn.Sequential(nn.Linear(1, 2, bias=False), nn.ReLU(), nn.Linear(2, 2))
    hidden = torch.tensor([[1.0], [-1.0]])
    out = torch.tensor([[2.0, -2.0], [0.0, 0.0]])
    bias = torch.tensor([-1.0, 0.0])
    w0 = torch.cat([hidden.reshape(-1), out.reshape(-1), bias]).double()
    w1 = torch.cat([-hidden.reshape(-1), -out.reshape(-1), bias]).double()
    return model, w0, w1, torch.ones(1, 1), torch.zeros(1, dtype=torch.int64)


def test_refuses_a_segment_whose_ends_are_in_s_but_which_crosses_the_wall():
    model, w0, w1, x, y = _wall_crossing_net()
    ends = _sampled_margins(model, w0, w1, x, y, torch.tensor([0.0, 1.0]))
    assert bool((ends == 1.0).all())
    assert float(_sampled_margins(model, w0, w1, x, y, torch.tensor([0.5])).min()) == -1.0
    c = certify_torch_segment(model, w0, w1, x, y)
    assert not c.certified and c.margin_bound <= 0


def test_refuses_a_segment_ending_on_the_wall():
    """Margin exactly 0 at t = 1 (two equal logits): not in S, so never certified."""
    model = nn.Sequential(nn.Linear(1, 2))
    w0 = torch.tensor([1.0, 0.0, 0.0, 0.0]).double()  # logits (1, 0): margin 1
    w1 = torch.tensor([1.0, 1.0, 0.0, 0.0]).double()  # logits (1, 1): margin 0
    c = certify_torch_segment(model, w0, w1, torch.ones(1, 1), torch.zeros(1, dtype=torch.int64))
    assert not c.certified and c.margin_bound <= 0


def test_depth_limit_refuses_what_it_cannot_prove():
    """Margin 2 (1 - 2t)^2 + 0.01 on [0, 1/2]: positive, proved with enough halvings, refused with one."""
    model, w0, w1, x, y = _wall_crossing_net()
    w0[-2] = w1[-2] = 0.01  # bias of class 0: the margin at t = 1/2
    sampled = _sampled_margins(model, w0, w1, x, y, torch.linspace(0, 1, 1025))
    assert abs(float(sampled.min()) - 0.01) < 1e-12
    deep = certify_torch_segment(model, w0, w1, x, y)
    shallow = certify_torch_segment(model, w0, w1, x, y, max_depth=1)
    assert deep.certified and 0 < deep.margin_bound <= 0.01 and deep.pieces > 3
    assert not shallow.certified and shallow.margin_bound <= 0 and shallow.pieces <= 3


# ----------------------------------------------------------------------------- what it refuses to trace


class WithBatchNorm(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)
        self.bn = nn.BatchNorm1d(3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.fc(x))


class WithExp(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.exp(self.fc(x))


class WithControlFlow(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x) if x.sum() > 0 else -self.fc(x)


@pytest.mark.parametrize("cls, needle", [(WithBatchNorm, "BatchNorm1d"), (WithExp, "exp"), (WithControlFlow, "cannot trace")])
def test_unsupported_operation_is_a_one_line_config_error(cls, needle):
    model = cls()
    w = _flat(model)
    with pytest.raises(ConfigError) as e:
        certify_torch_segment(model, w, w, torch.randn(2, 4), torch.zeros(2, dtype=torch.int64))
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_wrong_weight_length_is_a_config_error():
    model = TanhMLP()
    w = _flat(model)
    with pytest.raises(ConfigError, match="needs"):
        certify_torch_segment(model, w, w[:-1], torch.randn(2, 5), torch.zeros(2, dtype=torch.int64))
    assert math.isfinite(float(margin_bounds(model, w, w, torch.randn(2, 5), torch.zeros(2, dtype=torch.int64)).min()))
