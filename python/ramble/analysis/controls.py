"""Controls for the claim that a point of a LeNet5 path generalises better than both SGD solutions (C15).

The path's best test error is reached after many GD epochs beyond the point
where SGD stopped (a solution stops at 100 % training accuracy).  So a lower
test error on the path may just be *more training*.  Two controls, per
endpoint, both continuing the endpoint's own training (``descent_step`` at the
run's training learning rate: full-batch GD up to 1,000 images, an SGD pass
above):

* **converged**: train on until the training loss is at most the loss the
  path has at its best point (capped at ``max_epochs``; ``reached`` says
  whether it got there);
* **matched epochs**: train on for as many GD epochs as the path spent
  before its best point (``(iteration + 1) * N_epochs``).

Both are points of one trajectory per endpoint, so it is run once, to the
later of the two.  Test error is measured along it at ``evaluations``
geometrically spaced epochs plus both stopping points.  Stored under
``/paths/<i>-<j>/controls`` (not covered by the path's checksum, like
``linear/``); the report's C15 row reads it.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch

from ramble.errors import ConfigError, RambleError
from ramble.storage.io import ControlRecord, PathRecord, load, update

log = logging.getLogger("ramble")

ENDPOINTS = ("source", "target")


@dataclass(frozen=True)
class ControlConfig:
    """``max_epochs``: cap of the converged control (epochs after the endpoint); ``evaluations``: test evaluations along each trajectory."""

    max_epochs: int = 20_000
    evaluations: int = 40

    def __post_init__(self) -> None:
        if self.max_epochs < 1:
            raise ConfigError(f"--max-epochs must be >= 1, got {self.max_epochs}")
        if self.evaluations < 2:
            raise ConfigError(f"--evaluations must be >= 2, got {self.evaluations}")


@dataclass(frozen=True)
class PathBest:
    """The recorded point of lowest test error: its row, the GD epochs the path spent before it, its training loss and test error."""

    row: int
    epochs: int
    train_loss: float
    test_error: float


def path_best(p: PathRecord, n_epochs: int) -> PathBest:
    """The path's best test point; ``n_epochs``: GD epochs per iteration of the path."""
    if p.test_error is None:
        raise RambleError(f"path {p.name} has no test metrics; controls need them (a LeNet5 run records them)")
    k = int(np.argmin(p.test_error))
    epochs = max(0, int(p.iteration[k]) + 1) * int(n_epochs)
    return PathBest(row=k, epochs=epochs, train_loss=float(p.train_loss[k]), test_error=float(p.test_error[k]))


def evaluation_epochs(stops: list[int], n: int) -> list[int]:
    """0, about ``n`` geometrically spaced epochs up to the last stop, and every stop itself; sorted, unique."""
    last = max(stops)
    grid = np.unique(np.round(np.geomspace(1, max(1, last), n)).astype(int)) if last > 0 else np.array([], int)
    return sorted({0, *map(int, grid), *stops})


@dataclass
class Trajectory:
    """Training continued from one endpoint: test metrics at ``epoch`` (n,), and where each control stopped."""

    epoch: np.ndarray
    train_loss: np.ndarray
    test_error: np.ndarray
    test_loss: np.ndarray
    matched_epochs: int
    converged_epochs: int
    converged_reached: bool


def continue_training(
    step: Callable[[torch.Tensor], tuple[float, torch.Tensor]],
    test: Callable[[torch.Tensor], tuple[float, float]],
    w: torch.Tensor,
    matched_epochs: int,
    loss_target: float,
    cfg: ControlConfig,
    tick: Optional[Callable[[int], None]] = None,
) -> Trajectory:
    """Both controls from ``w``: ``step(w)`` gives (training loss at w, w after one epoch); ``test(w)`` (test loss, test error)."""
    checkpoints = set(evaluation_epochs([matched_epochs, cfg.max_epochs], cfg.evaluations))
    epoch, reached_at = 0, None
    rows: list[tuple[int, float, float, float]] = []
    while True:
        loss, w_next = step(w)
        if reached_at is None and loss <= loss_target:
            reached_at = epoch
        if epoch in checkpoints or epoch == matched_epochs or epoch == reached_at:
            tl, te = test(w)
            rows.append((epoch, loss, te, tl))
        if epoch >= matched_epochs and (reached_at is not None or epoch >= cfg.max_epochs):
            break
        w, epoch = w_next, epoch + 1
        if tick is not None:
            tick(epoch)
    epochs, loss_at, test_err, test_loss = (np.asarray(c) for c in zip(*rows))
    return Trajectory(epoch=epochs.astype(np.int64), train_loss=loss_at, test_error=test_err, test_loss=test_loss, matched_epochs=matched_epochs,
                      converged_epochs=reached_at if reached_at is not None else epoch, converged_reached=reached_at is not None)


def _at(t: Trajectory, epoch: int) -> float:
    return float(t.test_error[int(np.flatnonzero(t.epoch == epoch)[0])])


def control_summary(t: Trajectory) -> dict[str, Any]:
    """Test error of both controls (fractions) and the lowest one seen along the trajectory."""
    return {
        "matched_epochs": int(t.matched_epochs),
        "matched_test_error": _at(t, t.matched_epochs),
        "converged_epochs": int(t.converged_epochs),
        "converged_reached": bool(t.converged_reached),
        "converged_test_error": _at(t, t.converged_epochs),
        "start_test_error": float(t.test_error[0]),
        "min_test_error_along": float(t.test_error.min()),
    }


def run_controls(
    file: str | Path,
    cfg: ControlConfig = ControlConfig(),
    pair: Optional[str] = None,
    data_dir: Optional[str] = None,
    device: str = "cpu",
    progress: bool = False,
) -> dict[str, dict[str, Any]]:
    """Both controls for every complete path of a LeNet5 file (or ``pair``); stored under ``/paths/<pair>/controls``; returns the summaries."""
    from ramble.experiments.mnist_experiment import run_data
    from ramble.models.lenet import LeNetProblem, resolve_device
    from ramble.progress import progress_bar

    e = load(file, weights=False)
    if e.model != "lenet5":  # paper-specific: the controls are the paper's LeNet5 experiment (Sect. 3.2), on MNIST's test set
        raise RambleError(f"{file}: controls are for LeNet5 files (test errors), this one is {e.model!r}")
    names = [pair] if pair else [p.name for p in e.iter_paths() if p.complete]
    if pair and pair not in e.paths:
        raise RambleError(f"{file} has no path {pair!r} (paths: {', '.join(sorted(e.paths)) or 'none'})")
    if not names:
        raise RambleError(f"{file} has no complete path")
    dev = resolve_device(device)
    data = run_data(e.config, e.data, data_dir, test=True)
    problem = LeNetProblem.from_data(data, device=dev, batch_size=int(e.config.get("batch_size", 128)))
    test_x, test_y = data.test_x.to(dev), data.test_y.to(dev)
    lr = float(e.config.get("train_lr", 0.1))

    def test(w: torch.Tensor) -> tuple[float, float]:
        ev = problem.evaluate_on(w, test_x, test_y)
        return ev.loss, ev.error

    def step(w: torch.Tensor) -> tuple[float, torch.Tensor]:
        if problem.full_batch:  # one gradient gives the loss at w and the step
            loss, g = problem.loss_and_grad(w)
            return loss, w - lr * g
        return problem.evaluate(w).loss, problem.descent_step(w, lr)

    out: dict[str, dict[str, Any]] = {}
    for name in names:
        p = e.paths[name]
        n_epochs = int(json.loads(p.attrs.get("path_config", "{}")).get("n_epochs", 1))
        best = path_best(p, n_epochs)
        trajectories: dict[str, Trajectory] = {}
        for end, index in zip(ENDPOINTS, (p.source, p.target)):
            w = torch.from_numpy(e.solutions[index]).to(device=dev, dtype=problem.dtype)
            bar = progress_bar(total=max(best.epochs, 1), desc=f"controls {name} from solution {index}", unit="epoch", disable=not progress)
            trajectories[end] = continue_training(step, test, w, best.epochs, best.train_loss, cfg, tick=lambda k: bar.update(1) if k <= bar.total else None)
            bar.close()
        summary = {"best_row": best.row, "best_epochs": best.epochs, "best_train_loss": best.train_loss, "best_test_error": best.test_error, "lr": lr,
                   "config": asdict(cfg), **{f"{end}_{k}": v for end, t in trajectories.items() for k, v in control_summary(t).items()}}
        with update(file) as f:
            g = f[f"paths/{name}"]
            if "controls" in g:
                del g["controls"]
            c = g.create_group("controls")
            for end, t in trajectories.items():
                for k in ("epoch", "train_loss", "test_error", "test_loss"):
                    c.create_dataset(f"{end}_{k}", data=getattr(t, k))
            for k, v in summary.items():
                c.attrs[k] = json.dumps(v) if isinstance(v, dict) else v
        log.info("controls %s: %s", name, verdict_line(summary))
        out[name] = summary
    return out


def beats_controls(s: dict[str, Any], n_test: int, noise_samples: int) -> bool:
    """True when the path's best test error is more than ``noise_samples`` test samples below all four controls."""
    worst = min(s[f"{end}_{kind}_test_error"] for end in ENDPOINTS for kind in ("matched", "converged"))
    return (worst - s["best_test_error"]) * n_test > noise_samples


def margin_points(s: dict[str, Any]) -> float:
    """Best control test error minus the path's best test error, in percentage points (> 0: the path is better)."""
    worst = min(s[f"{end}_{kind}_test_error"] for end in ENDPOINTS for kind in ("matched", "converged"))
    return 100.0 * (worst - s["best_test_error"])


def verdict_line(s: dict[str, Any]) -> str:
    """One line: the path's best against both controls from both endpoints (percent)."""
    def pct(x: float) -> str:
        return f"{100 * x:.2f} %"

    parts = []
    for end in ENDPOINTS:
        conv = f"{pct(s[f'{end}_converged_test_error'])} after {s[f'{end}_converged_epochs']} epochs" + ("" if s[f"{end}_converged_reached"] else " (loss target not reached)")
        parts.append(f"{end} {pct(s[f'{end}_start_test_error'])} -> matched {pct(s[f'{end}_matched_test_error'])}, converged {conv}")
    return (f"path best {pct(s['best_test_error'])} after {s['best_epochs']} GD epochs (train loss {s['best_train_loss']:.3g}); "
            + "; ".join(parts) + f"; margin {margin_points(s):+.2f} points")


def read_controls(p: PathRecord) -> Optional[dict[str, Any]]:
    """The stored control summary of a loaded path, or None when ``ramble controls`` has not run on it."""
    c: Optional[ControlRecord] = p.controls
    if c is None:
        return None
    return {k: (json.loads(v) if k == "config" and isinstance(v, str) else v) for k, v in c.attrs.items()}
