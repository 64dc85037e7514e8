"""Permutation alignment (ramble.analysis.align, `ramble align`): the structure traced, invariance, recovery, the file round trip, bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from torch import nn

from ramble.analysis.align.matching import activation_matching, apply_permutation, traced_with, unflatten, weight_matching
from ramble.analysis.align.spec import permutation_spec
from ramble.cli import main
from ramble.errors import ConfigError
from ramble.models.lenet import LeNet5, flatten, init_xavier
from ramble.models.mnist import load_mnist
from ramble.storage.io import load

FIXTURE = str(Path(__file__).parent / "fixtures" / "mnist")
METHODS = ("weights", "activations")


def _invoke(args: list[str]):
    return CliRunner().invoke(main, ["--quiet", *args])


class MLP(nn.Module):
    """A small MLP written with functional calls and a view: 20 -> 16 tanh -> 12 relu -> 3."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(20, 16)
        self.b = nn.Linear(16, 12)
        self.c = nn.Linear(12, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.view(x.size(0), -1)
        return self.c(F.relu(self.b(torch.tanh(self.a(x)))))


def _logits(model: nn.Module, spec, w: np.ndarray, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return traced_with(model, unflatten(w, spec))(x.to(torch.float64))


@pytest.fixture(scope="module")
def mnist_images() -> torch.Tensor:
    d = load_mnist(FIXTURE, 100, 200)
    return torch.cat([d.train_x, d.test_x])


def _lenet(seed: int) -> tuple[nn.Module, np.ndarray]:
    m = init_xavier(LeNet5(), seed)
    with torch.no_grad():  # non-zero biases, so that few units are dead on every image
        for name, p in m.named_parameters():
            if name.endswith("bias"):
                p.uniform_(0.0, 0.1, generator=torch.Generator().manual_seed(seed))
    return m, flatten(m).double().numpy()


def _mlp(seed: int) -> tuple[nn.Module, np.ndarray]:
    torch.manual_seed(seed)
    m = MLP()
    return m, torch.cat([p.detach().reshape(-1) for p in m.parameters()]).double().numpy()


def _random_perms(spec, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {g.name: rng.permutation(g.size) for g in spec.groups}


# ----------------------------------------------------------------- the structure
def test_lenet5_structure_is_traced():
    spec = permutation_spec(LeNet5(), torch.zeros(1, 1, 28, 28))
    assert [(g.name, g.size) for g in spec.groups] == [("conv1", 6), ("conv2", 16), ("fc1", 120), ("fc2", 84)]
    conv2 = spec.groups[1]
    # a conv2 channel is 5 x 5 consecutive inputs of fc1 once flattened
    assert ("fc1.weight", 1, 25) in [(a.param, a.axis, a.block) for a in conv2.axes]
    assert all(a.param != "fc3.weight" or a.axis == 1 for g in spec.groups for a in g.axes)  # the logits are never permuted


class Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(8, 8)
        self.b = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(torch.relu(self.a(x)) + x)


@pytest.mark.parametrize("model, example, words", [
    (Residual(), torch.zeros(2, 8), "unsupported operation add"),
    (nn.Sequential(nn.Linear(8, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3)), torch.zeros(2, 8), "BatchNorm1d"),
])
def test_unsupported_graphs_are_refused_in_one_line(model, example, words):
    with pytest.raises(ConfigError) as e:
        permutation_spec(model, example)
    assert words in str(e.value) and "\n" not in str(e.value)


# ----------------------------------------------------------------- invariance and recovery
@pytest.mark.parametrize("build", [_lenet, _mlp], ids=["lenet5", "mlp"])
def test_permuted_network_computes_the_same_logits(build, mnist_images):
    model, w = build(3)
    x = mnist_images if isinstance(model, LeNet5) else torch.randn(300, 20, generator=torch.Generator().manual_seed(0))
    spec = permutation_spec(model, x[:1])
    perms = _random_perms(spec, 1)
    wp = apply_permutation(w, spec, perms)
    assert not np.array_equal(wp, w)
    a, b = _logits(model, spec, w, x), _logits(model, spec, wp, x)
    assert float((a - b).abs().max()) <= 1e-12 * (1 + float(a.abs().max()))


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("build", [_lenet, _mlp], ids=["lenet5", "mlp"])
def test_alignment_recovers_a_known_permutation(build, method, mnist_images):
    model, w = build(5)
    x = mnist_images if isinstance(model, LeNet5) else torch.randn(300, 20, generator=torch.Generator().manual_seed(0))
    spec = permutation_spec(model, x[:1])
    shuffled = apply_permutation(w, spec, _random_perms(spec, 2))
    m = weight_matching(spec, w, shuffled, seed=0) if method == "weights" else activation_matching(model, spec, w, shuffled, x)
    back = apply_permutation(shuffled, spec, m.perms)
    np.testing.assert_array_equal(back, w)  # zero distance: every unit put back exactly
    a, b = _logits(model, spec, w, x), _logits(model, spec, back, x)
    assert torch.equal(a, b)


def test_weight_matching_never_lowers_the_objective():
    model, w_a = _mlp(1)
    _, w_b = _mlp(2)
    spec = permutation_spec(model, torch.zeros(1, 20))
    m = weight_matching(spec, w_a, w_b, seed=0)
    assert m.converged and m.objective >= float(w_a @ w_b) - 1e-12
    assert np.linalg.norm(apply_permutation(w_b, spec, m.perms) - w_a) <= np.linalg.norm(w_b - w_a)


# ----------------------------------------------------------------- files
@pytest.fixture(scope="module")
def mnist_file(shared_mnist_file, tmp_path_factory):
    """A copy of conftest's LeNet5 file (MNIST-100, two solutions, their certified path)."""
    out = tmp_path_factory.mktemp("align") / "m.h5"
    shutil.copy(shared_mnist_file, out)
    return out


@pytest.fixture(scope="module")
def aligned_file(mnist_file, tmp_path_factory):
    f = tmp_path_factory.mktemp("aligned") / "m.h5"
    f.write_bytes(Path(mnist_file).read_bytes())
    # the ramble path W_0 -> pi(W_1) is tested on a torch file below (a LeNet5 path costs minutes)
    r = _invoke(["align", str(f), "--pair", "0-1", "--method", "weights", "--device", "cpu", "--no-path"])
    assert r.exit_code == 0, r.output
    assert "is the aligned straight line W_0 -> pi(W_1) inside S?" in r.output
    return f


def test_file_round_trip(aligned_file):
    e = load(aligned_file)
    p = e.paths["0-1"]
    a = p.align["weights"]
    spec = permutation_spec(LeNet5(), torch.zeros(1, 1, 28, 28))
    # what is stored is pi(W_1) for the stored permutations, and the stored distances are its distances
    np.testing.assert_array_equal(a.aligned, apply_permutation(e.solutions[1], spec, a.perms))
    assert a.attrs["distance_before"] == pytest.approx(np.linalg.norm(e.solutions[1] - e.solutions[0]))
    assert a.attrs["distance_after"] == pytest.approx(np.linalg.norm(a.aligned - e.solutions[0]))
    assert a.attrs["logits_max_abs_diff"] <= a.attrs["logits_tolerance"]
    # the aligned line: same t grid as the stored line, same start; its numbers are its sampled points'
    np.testing.assert_array_equal(a.line.t, p.linear.alpha)
    assert a.line.train_error[0] == p.linear.train_error[0] == 0
    assert a.line.attrs["outside_fraction"] == pytest.approx(np.mean(a.line.train_error > 0))
    assert a.line.attrs["max_train_error"] == pytest.approx(a.line.train_error.max())
    assert set(a.line.extra) >= {"test_loss", "test_error"}
    assert a.line.attrs["inside_S"] in ("yes", "no", "sampled")
    assert a.path == {} and a.path_attrs == {}  # --no-path


MLP_SOURCE = "from torch import nn\n\ndef build():\n    return nn.Sequential(nn.Linear(10, 16), nn.Tanh(), nn.Linear(16, 3))\n"


@pytest.fixture(scope="module")
def torch_file(tmp_path_factory):
    """A generic torch file: an MLP on three Gaussian blobs, two solutions, one path."""
    from ramble.core.path import PathConfig
    from ramble.experiments.torch_experiment import TorchExperimentConfig, run

    folder = tmp_path_factory.mktemp("torch")
    (folder / "mlp.py").write_text(MLP_SOURCE)
    gen = torch.Generator().manual_seed(0)
    centres = 3.0 * torch.randn(3, 10, generator=gen)
    y = torch.arange(90) % 3
    x = centres[y] + torch.randn(90, 10, generator=gen)
    cfg = TorchExperimentConfig(device="cpu", points=30, weight_rows=10, linear_points=11, path=PathConfig(gamma=0.1, lr=0.05))
    out = run(f"{folder / 'mlp.py'}:build", x[:60], y[:60], folder / "mlp.h5", test_inputs=x[60:], test_labels=y[60:], config=cfg)
    return out, f"{folder / 'mlp.py'}:build"


def test_torch_file_aligned_with_its_ramble_path(torch_file):
    f, model = torch_file
    r = _invoke(["align", str(f), "--model", model, "--method", "activations", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    e = load(f)
    p = e.paths["0-1"]
    a = p.align["activations"]
    assert json.loads(a.attrs["groups"]) == [["0", 16]]
    np.testing.assert_array_equal(a.line.t, p.linear.alpha)
    # ramble's path W_0 -> pi(W_1), drawn with the stored path's settings: from W_0 to pi(W_1), inside S at every recorded point
    assert json.loads(a.path_attrs["path_config"])["gamma"] == json.loads(p.attrs["path_config"])["gamma"]
    assert a.path_attrs["status"] == "complete", a.path_attrs["reason"]
    np.testing.assert_array_equal(a.path["weights"][0], e.solutions[0])
    np.testing.assert_allclose(a.path["weights"][-1], a.aligned, rtol=0, atol=1e-6)
    assert np.all(a.path["train_error"] == 0) and len(a.path["test_error"]) == len(a.path["distance"])
    assert a.path_attrs["unaligned_iterations"] == p.attrs["iterations"]
    assert a.path_attrs["length"] >= a.attrs["distance_after"] * (1 - 1e-9)


def test_aligned_line_outside_s_says_where_it_leaves(aligned_file):
    a = load(aligned_file, weights=False).paths["0-1"].align["weights"]
    if a.line.attrs["inside_S"] == "no":
        first_out = a.line.t[np.argmax(a.line.train_error > 0)]
        assert 0 < a.line.attrs["leaves_at_t"] <= first_out
    else:
        assert "leaves_at_t" not in a.line.attrs and np.all(a.line.train_error == 0)


def test_plot_and_report_show_the_alignment(aligned_file, tmp_path):
    from ramble.reporting.report import align_lines

    r = _invoke(["plot", str(aligned_file), "--out", str(tmp_path / "figs"), "--format", "png"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "figs" / "m_align_weights_0-1.png").stat().st_size > 0
    text = "\n".join(align_lines([load(aligned_file, weights=False)], tmp_path / "figs", tmp_path))
    assert "is the aligned straight line W_0 -> pi(W_1) inside S?" in text and "![Aligned pair" in text


# ----------------------------------------------------------------- bad input
def test_unknown_pair_is_refused(mnist_file):
    r = _invoke(["align", str(mnist_file), "--pair", "0-7", "--device", "cpu"])
    assert r.exit_code == 1
    assert r.output.strip() == f"error: {mnist_file} has no pair '0-7'; it has: 0-1"


def test_incomplete_file_is_refused(mnist_file, tmp_path):
    f = tmp_path / "running.h5"
    f.write_bytes(Path(mnist_file).read_bytes())
    with h5py.File(f, "r+") as h:
        h.attrs["status"] = "running"
    r = _invoke(["align", str(f), "--device", "cpu"])
    assert r.exit_code == 1 and len(r.output.strip().splitlines()) == 1
    assert "has status 'running'; align needs a complete run" in r.output


def test_tcm_file_is_refused(tmp_path):
    f = tmp_path / "tcm.h5"
    r = _invoke(["tcm", "run", "--backend", "python", "-N", "30", "-K", "3", "-M", "30", "--seed", "4", "--solutions", "2", "--out", str(f)])
    assert r.exit_code == 0, r.output
    r = _invoke(["align", str(f)])
    assert r.exit_code == 1 and len(r.output.strip().splitlines()) == 1
    assert "TCM file: the tree committee machine has no permutation symmetry that keeps its input blocks fixed" in r.output


def test_unknown_method_is_a_usage_error(mnist_file):
    r = _invoke(["align", str(mnist_file), "--method", "sideways"])
    assert r.exit_code == 2 and "sideways" in r.output


def test_refuses_to_store_a_permutation_that_changes_the_function(mnist_file, tmp_path, monkeypatch):
    import ramble.analysis.align.run as run

    f = tmp_path / "m.h5"
    f.write_bytes(Path(mnist_file).read_bytes())
    before = f.read_bytes()
    real = run.apply_permutation

    def broken(w, spec, perms):  # a permutation applied to one axis only: not the same network
        out = real(w, spec, perms)
        out[:6] = out[:6][::-1] + 1.0
        return out

    monkeypatch.setattr(run, "apply_permutation", broken)
    r = _invoke(["align", str(f), "--device", "cpu", "--no-path"])
    assert r.exit_code == 1 and "does not compute the same function" in r.output
    assert f.read_bytes() == before


def test_reproduce_aligns_the_mnist100_pair(tmp_path):
    from ramble.experiments.reproduce import SCALE_SETTINGS, plan

    def align_args(scale: str) -> tuple[str, ...]:
        jobs = plan(tmp_path, SCALE_SETTINGS[scale], "python", False, None, "cpu")
        mnist = next(j for j in jobs if j.name == "mnist-100")
        return dict(mnist.analyses)["paths/0-1/align/weights"]

    assert align_args("quick")[:5] == ("align", "--pair", "0-1", "--method", "weights") and "--no-path" in align_args("quick")
    assert "--no-path" not in align_args("paper")


def test_reproduce_aligns_the_examples_mlp_with_its_path(tmp_path):
    from ramble.experiments.reproduce import EXAMPLE_JOB, SCALE_SETTINGS, plan

    example = Path(__file__).resolve().parents[1] / "examples" / "own_model.py"
    for scale in ("quick", "paper", "tiny"):
        job = next(j for j in plan(tmp_path, SCALE_SETTINGS[scale], "python", False, None, "cpu") if j.name == EXAMPLE_JOB)
        assert job.skipped == "" and job.args[:4] == ["torch", "run", "--model", f"{example}:build_mlp"]
        align = dict(job.analyses)["paths/0-1/align/weights"]
        # the same factory for the analysis as for the run (checked against the file's sha256), and the aligned ramble path at every scale
        assert align[align.index("--model") + 1] == f"{example}:build_mlp" and "--no-path" not in align
