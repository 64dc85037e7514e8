"""The one experiment driver (ramble.experiments.driver): routing of a failed pair for every model, and routing over weights kept at a stride.

A pair is made to fail by wrapping the model's own ``connect`` (the second
pair drawn, 0-2, is marked failed); the driver must then route it through
solution 1 with the stored paths 0-1 and 1-2, write it, and count it.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ramble.core.path import PathResult, reversed_path, route_through, weight_points_only
from ramble.experiments.driver import pair_list
from ramble.experiments.network_run import NetworkRun
from ramble.experiments.tcm_experiment import TCMExperimentConfig, TCMRun, run_tcm_experiment
from ramble.storage.io import load


def fail_second_pair(monkeypatch, run_class) -> None:
    """Make ``run_class.connect`` report the second pair it draws (0-2 of three solutions) as stalled."""
    original = run_class.connect
    calls = []

    def connect(self, w_a, w_b, progress, checkpoint):
        r = original(self, w_a, w_b, progress, checkpoint)
        calls.append(1)
        if len(calls) == 2:
            r.status, r.reason = "failed", "stalled (made up for the test)"
        return r

    monkeypatch.setattr(run_class, connect.__name__, connect)


def check_routed(e, contains) -> None:
    """Path 0-2 goes through solution 1, from solution 0 to solution 2, every kept point in S, distance 0 -> 1."""
    p = e.paths["0-2"]
    assert p.complete and list(p.attrs["via"]) == [1]
    np.testing.assert_array_equal(p.weights[0], e.solutions[0])
    np.testing.assert_array_equal(p.weights[-1], e.solutions[2])
    assert p.distance[0] == pytest.approx(0.0) and p.distance[-1] == pytest.approx(1.0)
    assert all(contains(row) for row in p.weights)
    assert e.attrs["paths_complete"] == 3


def test_a_failed_tcm_pair_is_routed_through_the_third_solution(monkeypatch, tmp_path):
    from ramble.models.patterns import Patterns
    from ramble.models.tcm import TCMProblem

    fail_second_pair(monkeypatch, TCMRun)
    out = run_tcm_experiment(TCMExperimentConfig(n_inputs=30, n_hidden=3, n_patterns=40, n_solutions=3, backend="python"), tmp_path / "t.h5", show_progress=False)
    e = load(out)
    prob = TCMProblem(Patterns(e.data["train_inputs"], e.data["train_labels"], 0), 3)
    check_routed(e, lambda row: prob.contains(torch.from_numpy(row)))
    # every vertex kept: the routed path is the two stored paths joined at solution 1
    assert len(e.paths["0-2"].weights) == len(e.paths["0-1"].weights) + len(e.paths["1-2"].weights) - 1


def test_a_failed_network_pair_is_routed_over_weights_kept_at_a_stride(monkeypatch, tmp_path):
    from sklearn.datasets import load_digits

    import ramble
    from ramble.experiments.torch_experiment import TorchExperimentConfig

    fail_second_pair(monkeypatch, NetworkRun)
    x, y = load_digits(return_X_y=True)
    d = {"train_inputs": (x[:60] / 16).astype(np.float32), "train_labels": y[:60], "test_inputs": (x[-100:] / 16).astype(np.float32), "test_labels": y[-100:]}
    cfg = TorchExperimentConfig(n_solutions=3, points=20, weight_rows=10, linear_points=3, train_lr=0.5, device="cpu", path=ramble.PathConfig(gamma=0.05, lr=0.05))
    out = ramble.run(lambda: torch.nn.Sequential(torch.nn.Linear(64, 12), torch.nn.ReLU(), torch.nn.Linear(12, 10)), d["train_inputs"], d["train_labels"], tmp_path / "n.h5",
                     test_inputs=d["test_inputs"], test_labels=d["test_labels"], config=cfg)
    e = load(out)
    assert "weight_index" in e.paths["0-1"].extra  # the legs kept weights at a stride
    problem = ramble.TorchClassifierProblem(torch.nn.Sequential(torch.nn.Linear(64, 12), torch.nn.ReLU(), torch.nn.Linear(12, 10)),
                                            torch.from_numpy(d["train_inputs"]), torch.from_numpy(d["train_labels"]))
    check_routed(e, lambda row: problem.contains(torch.from_numpy(row)))
    p = e.paths["0-2"]
    assert "weight_index" not in p.extra and len(p.distance) == len(p.weights)  # only the legs' points with weights
    assert np.isfinite(p.test_error).all()


def strided_path(n: int, stride: int) -> PathResult:
    """A made-up complete straight path of ``n`` recorded points in R^3, weights kept at every ``stride``-th point and the last."""
    t = np.linspace(0.0, 1.0, n)
    w = np.outer(1 - t, [1.0, 0.0, 0.0]) + np.outer(t, [0.0, 2.0, 1.0])
    keep = np.unique(np.r_[np.arange(0, n, stride), n - 1])
    return PathResult(
        status="complete", reason="", weights=w[keep], iteration=np.arange(-1, n - 1), distance=t.copy(), train_loss=t + 1, train_error=0 * t,
        decisions=np.ones(n - 1, np.int8), gd_refused=np.zeros(n - 1, np.int8), iterations=n - 1, elastic_accepted=n - 1, elastic_repaired=0,
        elastic_refused=0, gd_accepted=0, gd_refused_total=0, segment_checks=n - 1, wall_time=0.0, weight_index=keep if len(keep) < n else None,
        extra={"test_error": 2 * t}, arclength=t * np.linalg.norm(w[-1] - w[0]),
    )


def test_weight_points_only_keeps_the_rows_with_weights_and_their_metrics():
    r = strided_path(10, 3)
    s = weight_points_only(r)
    keep = r.weight_index
    assert s.weight_index is None and len(s.iteration) == len(s.weights) == len(keep)
    for name in ("iteration", "distance", "train_loss", "train_error", "arclength"):
        np.testing.assert_array_equal(getattr(s, name), getattr(r, name)[keep])
    np.testing.assert_array_equal(s.extra["test_error"], r.extra["test_error"][keep])
    np.testing.assert_array_equal(s.decisions, r.decisions)  # per iteration, unchanged
    assert weight_points_only(s) is s


def test_a_strided_path_reverses_and_routes_with_exact_distances():
    there = strided_path(10, 3)
    back = reversed_path(there)
    np.testing.assert_array_equal(back.weights, there.weights[::-1])
    np.testing.assert_allclose(back.distance, 1.0 - np.linalg.norm(back.weights - back.weights[-1], axis=1) / np.linalg.norm(back.weights[0] - back.weights[-1]))
    frame = (torch.from_numpy(there.weights[0]), torch.from_numpy(there.weights[0] + 1e-3))
    loop = route_through(there, back, 1, frame)
    assert loop.weight_index is None and len(loop.weights) == 2 * len(there.weights) - 1
    a, b = (f.numpy() for f in frame)
    np.testing.assert_allclose(loop.distance, 1.0 - np.linalg.norm(loop.weights - b, axis=1) / np.linalg.norm(b - a))


def test_pair_lists():
    assert pair_list(3, "all") == [(0, 1), (0, 2), (1, 2)]
    assert pair_list(3, "chain") == [(0, 1), (1, 2)]
    assert pair_list(3, "star") == [(0, 1), (0, 2)]


TOY_MODEL_FILE = '''"""A toy model added to ramble as one file: an MLP on 60 of scikit-learn's 8x8 digits."""
import numpy as np
import torch
from sklearn.datasets import load_digits

from ramble.core.path import PathConfig
from ramble.experiments.driver import run_experiment
from ramble.experiments.network_run import NetworkRun, strided
from ramble.experiments.torch_experiment import TorchExperimentConfig, TorchSpec, model_attrs
from ramble.models.torch_classifier import TorchClassifierProblem, train_solution


def build():
    return torch.nn.Sequential(torch.nn.Linear(64, 12), torch.nn.ReLU(), torch.nn.Linear(12, 10))


class ToySpec(TorchSpec):
    name = "toy"
    label = "toy MLP"


SPEC = ToySpec()


def run(out):
    x, y = load_digits(return_X_y=True)
    torch.manual_seed(0)
    problem = TorchClassifierProblem(build(), torch.from_numpy((x[:60] / 16).astype(np.float32)), torch.from_numpy(y[:60]))
    cfg = TorchExperimentConfig(points=20, weight_rows=10, linear_points=3, train_lr=0.5, device="cpu", path=PathConfig(gamma=0.05, lr=0.05))
    path_cfg = strided(cfg.path, cfg.points, cfg.weight_rows)

    def write_data(writer):
        writer.write_arrays("data/train", {"inputs": problem.x.numpy(), "labels": problem.y.numpy()})
        writer.set_attrs("data", {"kind": "arrays", "n_train": 60})
        writer.set_attrs("model", model_attrs(problem, None))

    config = dict(cfg.to_dict(), path=path_cfg.to_dict())
    return run_experiment(NetworkRun("toy", config, cfg, problem, None, path_cfg, train_solution, write_data), out, show_progress=False)
'''


def test_a_new_model_is_one_file_that_runs_through_the_driver_and_verifies(tmp_path, monkeypatch):
    """Dropping ``toy_experiment.py`` into ramble.experiments is all it takes: the driver writes its file, info and verify serve it."""
    import importlib
    import sys

    from click.testing import CliRunner

    import ramble.experiments
    from ramble.cli import main
    from ramble.models import registry

    folder = tmp_path / "added"
    folder.mkdir()
    (folder / "toy_experiment.py").write_text(TOY_MODEL_FILE)
    monkeypatch.setattr(ramble.experiments, "__path__", [*ramble.experiments.__path__, str(folder)])
    monkeypatch.setattr(registry, "_registered", {})
    monkeypatch.delitem(sys.modules, "ramble.experiments.toy_experiment", raising=False)
    toy = importlib.import_module("ramble.experiments.toy_experiment")
    out = toy.run(tmp_path / "toy.h5")
    e = load(out)
    assert e.model == "toy" and e.status == "complete" and e.paths["0-1"].complete
    r = CliRunner().invoke(main, ["info", str(out)])
    assert r.exit_code == 0 and "model toy" in r.output, r.output
    r = CliRunner().invoke(main, ["verify", str(out), "--model", f"{folder / 'toy_experiment.py'}:build"])
    assert r.exit_code == 0, r.output
    assert "toy MLP rebuilt" in r.output and "stored segments certified inside S" in r.output and " 0 failed" in r.output, r.output
