"""``ramble torch run`` and the analyses on its files: your own model from FILE.py:FACTORY and data from an .npz.

A tiny MLP on 60 of scikit-learn's 8x8 digits.  Covers: the file records the
factory (file, name, source, sha256) and the data; verify, hessian,
convexity, curves and resume rebuild the model only from a factory given
again (checked against the sha256) or, when asked with --run-stored-code,
from the stored source (refused when that source was altered); bad input
gets one line and exit status 1.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from ramble.cli import main
from ramble.storage.filediff import diff
from ramble.storage.io import load

MODEL_SRC = '''from torch import nn


def build():
    return nn.Sequential(nn.Linear(64, 12), nn.ReLU(), nn.Linear(12, 10))


def not_a_module():
    return "an MLP"


def broken():
    raise RuntimeError("no weights today")
'''
RUN_ARGS = ["--points", "20", "--weight-rows", "10", "--linear-points", "5", "--gamma", "0.05", "--path-lr", "0.05", "--train-lr", "0.5", "--device", "cpu"]
ENV = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
for k in ("RAMBLE_FAULT", "RAMBLE_FAULT_TRACE"):
    ENV.pop(k, None)


def digits(n_train: int = 60, n_test: int = 100) -> dict[str, np.ndarray]:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.data / 16.0).astype(np.float32)
    return {"train_inputs": x[:n_train], "train_labels": d.target[:n_train], "test_inputs": x[-n_test:], "test_labels": d.target[-n_test:]}


def cli(*args: str):
    return CliRunner().invoke(main, ["--quiet", *args], catch_exceptions=False)


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """(folder, model file, data file, result file) of one complete run."""
    d = tmp_path_factory.mktemp("torchrun")
    (d / "mlp.py").write_text(MODEL_SRC)
    np.savez(d / "digits.npz", **digits())
    out = d / "run.h5"
    r = cli("torch", "run", "--model", f"{d / 'mlp.py'}:build", "--data", str(d / "digits.npz"), "--out", str(out), *RUN_ARGS)
    assert r.exit_code == 0, r.output
    return d, d / "mlp.py", d / "digits.npz", out


def test_run_writes_a_complete_file_with_model_reference_and_data(made):
    d, model_file, data_file, out = made
    e = load(out)
    assert (e.model, e.status) == ("torch", "complete")
    p = e.paths["0-1"]
    assert p.complete and p.train_error.max() == 0.0
    assert set(p.extra) >= {"test_loss", "test_error"} and set(p.linear.extra) >= {"test_error"}
    info = e.model_info
    assert info["factory_file"] == str(model_file.resolve()) and info["factory_name"] == "build"
    assert info["factory_source"] == MODEL_SRC
    import hashlib

    assert info["factory_sha256"] == hashlib.sha256(MODEL_SRC.encode()).hexdigest()
    assert np.array_equal(e.data["train_inputs"], digits()["train_inputs"])
    assert np.array_equal(e.data["test_labels"], digits()["test_labels"])
    # one Eq. 4 group per parameter tensor by default: two Linear layers, weight and bias each
    assert info["groups"] == "[[0, 768], [768, 780], [780, 900], [900, 910]]"


def test_verify_needs_the_model_given_again(made):
    d, model_file, _, out = made
    r = cli("verify", str(out))
    assert r.exit_code == 1
    assert "--model" in r.output and "--run-stored-code" in r.output
    r = cli("verify", str(out), "--model", f"{model_file}:build")
    assert r.exit_code == 0, r.output
    assert re.search(r"path 0-1 in S\s+ok", r.output), r.output
    r = cli("verify", str(out), "--run-stored-code")
    assert r.exit_code == 0, r.output


def test_a_changed_model_file_is_refused(made, tmp_path):
    _, _, _, out = made
    other = tmp_path / "mlp.py"
    other.write_text(MODEL_SRC + "\n# edited\n")
    r = cli("verify", str(out), "--model", f"{other}:build")
    assert r.exit_code == 1
    assert "is not the model file" in r.output


def test_altered_stored_code_is_refused(made, tmp_path):
    _, _, _, out = made
    altered = tmp_path / "altered.h5"
    altered.write_bytes(out.read_bytes())
    marker = tmp_path / "ran"
    with h5py.File(altered, "r+") as f:  # code that would leave a trace if it ran
        f["model"].attrs["factory_source"] = MODEL_SRC + f"\nopen({str(marker)!r}, 'w').close()\n"
    r = cli("verify", str(altered), "--run-stored-code")
    assert r.exit_code == 1
    assert "altered" in r.output
    assert not marker.exists()


def test_analyses_run_on_the_file(made, tmp_path):
    _, model_file, _, out = made
    f = tmp_path / "a.h5"
    f.write_bytes(out.read_bytes())
    ref = f"{model_file}:build"
    r = cli("hessian", str(f), "--points", "3", "--k", "4", "--trace-samples", "5", "--model", ref, "--device", "cpu")
    assert r.exit_code == 0, r.output
    h = load(f).paths["0-1"].hessian
    assert np.asarray(h["eigenvalues"]).shape == (3, 4)
    r = cli("convexity", str(f), "--samples", "20", "--model", ref, "--device", "cpu")
    assert r.exit_code == 0, r.output
    assert "solutions:" in r.output
    r = cli("curves", str(f), "--steps", "20", "--points", "5", "--model", ref, "--device", "cpu")
    assert r.exit_code == 0, r.output
    assert set(load(f).paths["0-1"].curves) == {"bezier", "linear"}
    r = cli("verify", str(f), "--model", ref)
    assert r.exit_code == 0, r.output


def test_connectivity_and_info(made):
    _, _, _, out = made
    r = cli("connectivity", str(out))
    assert r.exit_code == 0, r.output
    r = cli("info", str(out))
    assert r.exit_code == 0 and "model torch" in r.output


def _subprocess(args: list[str], env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ramble.cli", "--quiet", *args], env=env, capture_output=True, text=True, timeout=600)


def test_killed_run_resumes_to_the_same_file(made, tmp_path):
    _, model_file, data_file, ref_out = made
    run = ["torch", "run", "--model", f"{model_file}:build", "--data", str(data_file), *RUN_ARGS]
    trace = tmp_path / "trace"
    full = tmp_path / "full.h5"
    r = _subprocess([*run, "--out", str(full)], dict(ENV, RAMBLE_FAULT_TRACE=str(trace)))
    assert r.returncode == 0, r.stderr
    renamed = [i + 1 for i, name in enumerate(trace.read_text().split()) if name == "commit:renamed"]
    assert len(renamed) >= 4  # the file, data and model, two solutions, the path...
    killed = tmp_path / "killed.h5"
    r = _subprocess([*run, "--out", str(killed)], dict(ENV, RAMBLE_FAULT=f"kill@{renamed[2]}"))
    assert r.returncode != 0
    assert load(killed).status == "running"
    r = _subprocess(["resume", str(killed)], ENV)
    assert r.returncode == 1 and "--model" in r.stderr and "Traceback" not in r.stderr
    r = _subprocess(["resume", str(killed), "--model", f"{model_file}:build"], ENV)
    assert r.returncode == 0, r.stderr
    assert diff(full, killed) == []


def bad(tmp_path: Path, **arrays: np.ndarray) -> Path:
    p = tmp_path / "bad.npz"
    np.savez(p, **arrays)
    return p


BAD_INPUT = {
    "missing factory": ("mlp.py:nowhere", None, "defines no 'nowhere'"),
    "no file": ("nofile.py:build", None, "no file"),
    "not an nn.Module": ("mlp.py:not_a_module", None, "expected a torch.nn.Module"),
    "factory raises": ("mlp.py:broken", None, "no weights today"),
    "malformed reference": ("mlp.py", None, "expected FILE.py:FACTORY"),
    "wrong input shape": ("mlp.py:build", {"train_inputs": np.eye(32, dtype=np.float32)[:5], "train_labels": np.arange(5)}, "cannot run on inputs of shape (32,)"),
    "labels out of range": ("mlp.py:build", {"train_inputs": np.eye(64, dtype=np.float32)[:5], "train_labels": np.array([0, 1, 2, 3, 12])}, "in [0, 10)"),
    "labels length": ("mlp.py:build", {"train_inputs": np.zeros((5, 64), np.float32), "train_labels": np.arange(4)}, "must have shape (5,)"),
    "missing key": ("mlp.py:build", {"inputs": np.zeros((5, 64), np.float32)}, "lacks train_inputs, train_labels"),
    "test set without labels": ("mlp.py:build", {"train_inputs": np.eye(64, dtype=np.float32)[:5], "train_labels": np.arange(5), "test_inputs": np.zeros((3, 64), np.float32)}, "give both test_inputs and test_labels"),
    "no solution can fit": ("mlp.py:build", {"train_inputs": np.zeros((4, 64), np.float32), "train_labels": np.array([0, 1, 0, 1])}, "no classifier can fit"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUT))
def test_bad_input_is_one_line(made, tmp_path, case):
    d, _, data_file, _ = made
    ref, arrays, message = BAD_INPUT[case]
    data = bad(tmp_path, **arrays) if arrays is not None else data_file
    r = cli("torch", "run", "--model", str(d / ref), "--data", str(data), "--out", str(tmp_path / "x.h5"), *RUN_ARGS)
    assert r.exit_code == 1, r.output
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.output
    assert message in lines[0], lines[0]


def test_training_that_cannot_finish_is_one_line(made, tmp_path):
    d, _, data_file, _ = made
    r = cli("torch", "run", "--model", f"{d / 'mlp.py'}:build", "--data", str(data_file), "--out", str(tmp_path / "x.h5"), *RUN_ARGS, "--max-epochs", "2")
    assert r.exit_code == 1
    assert r.output.strip().splitlines() == [r.output.strip()] and "did not reach 100% training accuracy in 2 epochs" in r.output


# ----------------------------------------------------------------------------- the Python API


def test_parameter_groups_default_per_tensor_and_can_be_set():
    from ramble.errors import ConfigError
    from ramble.models.torch_classifier import parameter_groups

    spec = [("0.weight", (12, 64)), ("0.bias", (12,)), ("2.weight", (10, 12)), ("2.bias", (10,))]
    assert parameter_groups(spec) == [slice(0, 768), slice(768, 780), slice(780, 900), slice(900, 910)]
    assert parameter_groups(spec, "module") == [slice(0, 780), slice(780, 910)]
    assert parameter_groups(spec, "all") == [slice(0, 910)]
    assert parameter_groups(spec, [["0.weight"], ["0.bias", "2.weight", "2.bias"]]) == [slice(0, 768), slice(768, 910)]
    with pytest.raises(ConfigError, match="consecutive run"):
        parameter_groups(spec, [["0.weight", "2.weight"], ["0.bias", "2.bias"]])
    with pytest.raises(ConfigError, match="leave out"):
        parameter_groups(spec, [["0.weight", "0.bias"]])


def test_api_run_with_a_module_and_given_solutions(tmp_path):
    """run() with a plain nn.Module and solutions trained by the caller: groups as set, no stored source, analyses ask for --model."""
    import torch
    from torch import nn

    from ramble.core.path import PathConfig
    from ramble.experiments.torch_experiment import TorchClassifierProblem, TorchExperimentConfig, run, train_solution

    data = digits()
    x, y = torch.from_numpy(data["train_inputs"]), torch.from_numpy(data["train_labels"])
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 12), nn.ReLU(), nn.Linear(12, 10))
    problem = TorchClassifierProblem(model, x, y, groups="module")
    w_a, _ = train_solution(problem, 1, lr=0.5)
    trained = problem.vector_to_module(train_solution(problem, 2, lr=0.5)[0])
    assert torch.equal(problem.parameters_to_vector(trained), problem.parameters_to_vector(trained.state_dict()))
    out = run(model, x, y, tmp_path / "api.h5", solutions=[w_a, trained], config=TorchExperimentConfig(groups="module", path=PathConfig(gamma=0.05, lr=0.05), points=20, weight_rows=10, linear_points=5, device="cpu"))
    e = load(out)
    assert e.status == "complete" and e.paths["0-1"].complete
    assert e.model_info["groups"] == "[[0, 780], [780, 910]]"
    assert "factory_source" not in e.model_info
    assert np.array_equal(e.solutions[0], w_a.double().numpy())
    r = cli("verify", str(out))
    assert r.exit_code == 1 and "records no model source" in r.output


def test_norm_escape_after_a_failed_first_attempt():
    """connect()'s norm escape: the radial legs and the scaled path, joined, inside S, with the config kept."""
    import torch
    from torch import nn

    from ramble.core.connect import descend_into_s
    from ramble.core.path import PathConfig, escape_at_larger_norms, find_path
    from ramble.experiments.torch_experiment import TorchClassifierProblem, train_solution

    data = digits()
    x, y = torch.from_numpy(data["train_inputs"]), torch.from_numpy(data["train_labels"])
    # no biases: scaling the weights by c scales every logit by c^2, so the radial legs stay in S
    model = nn.Sequential(nn.Linear(64, 12, bias=False), nn.ReLU(), nn.Linear(12, 10, bias=False))
    problem = TorchClassifierProblem(model, x, y, dtype=torch.float64)
    w_a, _ = train_solution(problem, 1, lr=0.5)
    # a solution near w_a (the test is about the joining): GD into S from 10 % of the way to another solution
    w_b = descend_into_s(problem, w_a + 0.1 * (train_solution(problem, 2, lr=0.5)[0] - w_a), 0.5, 2000)
    assert w_b is not None and problem.contains(w_b)
    cfg = PathConfig(gamma=0.05, lr=0.05)

    def leg(start, target, frame, cp=None):
        return find_path(problem, start, target, cfg, frame=frame, checkpoint=cp)

    failed = leg(w_a, w_b, (w_a, w_b))
    failed.status, failed.reason = "failed", "stalled (made up for the test)"
    r = escape_at_larger_norms(leg, lambda w0: descend_into_s(problem, w0, 0.5, 2000), problem.certify_segment, problem.evaluate, w_a, w_b, 0, failed)
    assert r.complete and r.escape_scale == 1.5
    assert r.config == cfg.to_dict()
    assert r.distance[0] == pytest.approx(0.0) and r.distance[-1] == pytest.approx(1.0)
    assert np.array_equal(r.weights[0], w_a.numpy()) and np.array_equal(r.weights[-1], w_b.numpy())
    assert all(problem.contains(torch.from_numpy(row)) for row in r.weights)


def test_torch_run_option_defaults_are_the_config_defaults():
    """Every option of ``ramble torch run`` that sets a TorchExperimentConfig field defaults to that field's default."""
    import dataclasses

    from ramble.experiments.torch_experiment import TorchExperimentConfig

    fields = {f.name: f.default for f in dataclasses.fields(TorchExperimentConfig) if f.default is not dataclasses.MISSING}
    params = {p.name: p.default for p in main.commands["torch"].commands["run"].params}
    shared = sorted(set(fields) & set(params))
    assert len(shared) >= 12, shared
    assert {k: params[k] for k in shared} == {k: fields[k] for k in shared}
