"""Bring your own model: a small MLP on scikit-learn's bundled 8x8 digits (offline).

    python examples/own_model.py [OUT_DIR] [--train-size N]

Trains two solutions (every training digit classified correctly), connects
them by a path inside the solution set S, and draws the path against the
straight line between them (training loss and test error against the
normalised distance).  Also writes the run as a ramble file, which every
``ramble`` analysis reads, e.g.::

    ramble verify OUT_DIR/digits.h5 --model examples/own_model.py:build_mlp
    ramble hessian OUT_DIR/digits.h5 --model examples/own_model.py:build_mlp

Writes OUT_DIR/digits.h5 and OUT_DIR/own_model.png (OUT_DIR defaults to
"own_model_out").
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from torch import nn  # noqa: E402

from ramble import PathConfig, TorchClassifierProblem, TorchExperimentConfig, connect, load, run, train_solution  # noqa: E402
from ramble.core.path import straight_line  # noqa: E402


def build_mlp() -> nn.Module:
    """The model: 64 pixels -> 32 ReLU units -> 10 logits (2,410 parameters)."""
    return nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))


def digits(train_size: int, test_size: int = 500) -> tuple[torch.Tensor, ...]:
    """The first ``train_size`` digits for training and the last ``test_size`` for testing; pixels scaled to [0, 1]."""
    d = load_digits()
    x = torch.tensor(d.data / 16.0, dtype=torch.float32)
    y = torch.tensor(d.target, dtype=torch.int64)
    return x[:train_size], y[:train_size], x[-test_size:], y[-test_size:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", nargs="?", default="own_model_out")
    parser.add_argument("--train-size", type=int, default=200)
    args = parser.parse_args()
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    x, y, x_test, y_test = digits(args.train_size)

    # 1. the model and its training set as a PathProblem; two solutions from two seeds
    problem = TorchClassifierProblem(build_mlp(), x, y)
    w_a, info_a = train_solution(problem, seed=1, lr=0.5)
    w_b, info_b = train_solution(problem, seed=2, lr=0.5)
    print(f"solutions: {problem.n_params} parameters, {info_a['epochs']} and {info_b['epochs']} epochs of full-batch GD")

    # 2. a path inside S, with the test error measured along it
    def test_error(w: torch.Tensor) -> dict[str, float]:
        ev = problem.evaluate_on(w, x_test, y_test)
        return {"test_loss": ev.loss, "test_error": ev.error}

    config = PathConfig(gamma=0.05, lr=0.05)
    path = connect(problem, w_a, w_b, config, measure=test_error)
    line = straight_line(problem, w_a, w_b, n_points=41)
    print(f"path: {path.status} after {path.iterations} iterations, max training error {path.train_error.max():.3f}; straight line: max training error {line['train_error'].max():.3f}")

    # 3. the same solutions as a ramble file (paths, straight line, test metrics, connectivity)
    h5 = run(build_mlp, x, y, out_dir / "digits.h5", test_inputs=x_test, test_labels=y_test, solutions=[w_a, w_b], config=TorchExperimentConfig(path=config, points=100, weight_rows=50), force=True)
    stored = next(load(h5).iter_paths())
    print(f"{h5}: path {stored.name} {stored.status}, {len(stored.distance)} recorded points")

    # 4. the figure: path against straight line
    fig, (ax_loss, ax_err) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(path.distance, path.train_loss, label="ramble path (inside S)")
    ax_loss.plot(line["alpha"], line["train_loss"], "--", label="straight line")
    ax_loss.set(xlabel="normalised distance from W_a", ylabel="training loss (nats)")
    ax_err.plot(path.distance, 100 * path.train_error, label="path: training error")
    ax_err.plot(line["alpha"], 100 * line["train_error"], "--", label="line: training error")
    ax_err.plot(path.distance, 100 * np.asarray(path.extra["test_error"]), ":", label="path: test error")
    ax_err.set(xlabel="normalised distance from W_a", ylabel="error [%]")
    for ax in (ax_loss, ax_err):
        ax.legend(fontsize=8)
    fig.suptitle(f"MLP on {len(y)} digits: two solutions joined inside S")
    fig.tight_layout()
    fig.savefig(out_dir / "own_model.png", dpi=120)
    print(out_dir / "own_model.png")


if __name__ == "__main__":
    main()
