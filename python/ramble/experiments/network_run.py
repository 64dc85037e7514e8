"""A network's experiment run (LeNet5 on MNIST, one's own torch classifier) for :func:`ramble.experiments.driver.run_experiment`.

Both network models train solutions with the same kind of trainer, connect
pairs with :func:`ramble.core.connect.connect` (waypoints, norm escape,
mid-path checkpoints), keep weights at a stride (:func:`strided`,
:func:`thin_weights`) and measure the straight line with the test metrics;
they differ only in their problem, data and ``/model``, which the model's
own module supplies.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, replace
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch

from ramble.core.checkpoint import Checkpoint
from ramble.core.connect import connect
from ramble.core.path import MeasureFn, PathConfig, PathResult, straight_line
from ramble.errors import ConfigError, FormatError
from ramble.experiments.driver import solution_seed
from ramble.storage.io import Experiment, ExperimentWriter

log = logging.getLogger("ramble")

Trainer = Callable[..., tuple[torch.Tensor, dict]]
"""``train(problem, seed, lr=, max_epochs=, batch_size=, progress=, polish_margin=) -> (w, info)``, e.g. :func:`ramble.models.lenet.train_solution`."""


def strided(cfg: PathConfig, points: int, weight_rows: int) -> PathConfig:
    """``cfg`` with record/weight strides for about ``points`` recorded and at least ``weight_rows`` stored points.

    The weight stride comes from the points the path is expected to record
    (not from ``points``: a short path records fewer), rounded down so that
    at least ``weight_rows`` are kept; :func:`thin_weights` trims a longer
    path back to about ``weight_rows`` afterwards.
    """
    expected = cfg.expected_iterations()
    record_every = max(1, int(expected // points))
    recorded = expected / record_every + 2  # the endpoints
    return cfg.recorded(record_every, max(1, int(recorded // weight_rows)))


def thin_weights(result: PathResult, weight_rows: int) -> PathResult:
    """``result`` keeping the weights of about ``weight_rows`` recorded points, evenly spread, first and last always.

    Rows are chosen among those the path kept, nearest to ``weight_rows``
    evenly spaced recorded points; a path that kept fewer is returned as is.
    """
    n_points = len(result.distance)
    kept = np.arange(n_points) if result.weight_index is None else np.asarray(result.weight_index)
    if len(kept) <= weight_rows:
        return result
    wanted = np.linspace(0, n_points - 1, weight_rows)
    pick = np.unique(np.searchsorted(kept, wanted).clip(0, len(kept) - 1))
    pick = np.unique(np.concatenate([[0], pick, [len(kept) - 1]]))
    index = kept[pick]
    return replace(result, weights=result.weights[pick], weight_index=None if len(index) == n_points else index)


@dataclass
class NetworkRun:
    """:class:`ramble.experiments.driver.ExperimentRun` of a network problem.

    ``settings``: the run's config object (``n_solutions``, ``pairs``,
    ``seed``, ``train_lr``, ``max_epochs``, ``batch_size``,
    ``polish_margin``, ``weight_rows``, ``linear_points``); ``path_cfg``: its
    path config with strides already set (:func:`strided`); ``config``: the
    file's ``config`` attribute.  ``write_data(writer)`` writes ``/data`` and
    ``/model``.  ``given``: solutions to use instead of training (weight
    vectors, modules or state dicts).
    """

    model: str
    config: dict
    settings: Any
    problem: Any
    measure: Optional[MeasureFn]
    path_cfg: PathConfig
    trainer: Trainer
    write_data: Callable[[ExperimentWriter], None]
    show_progress: bool = False
    given: Optional[Sequence[Any]] = None
    backend: str = "torch"

    @property
    def n_solutions(self) -> int:
        return int(self.settings.n_solutions)

    @property
    def pairs(self) -> str:
        return str(self.settings.pairs)

    @property
    def routes(self) -> bool:
        return self.path_cfg.variant == "repair"

    def check_data(self, done: Experiment) -> None:
        """FormatError when the resumed file's network has other parameters than this run's."""
        shapes = [list(s) for _, s in self.problem.spec]
        if json.loads(done.model_info.get("param_shapes", "[]")) != shapes:
            raise FormatError(f"cannot resume {done.path}: its network's parameter shapes differ from this run's ({self.problem.n_params} parameters)")

    def weights_of(self, stored: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(stored).to(device=self.problem.device, dtype=self.problem.dtype)

    def train_solution(self, i: int) -> tuple[torch.Tensor, dict]:
        """Solution ``i``: the caller's ``given[i]`` (checked to be in S), else trained from seed :func:`solution_seed`; with test metrics."""
        s = self.settings
        if self.given is not None:
            w, info = given_solution(self.problem, self.given[i], i), {"source": "given"}
        else:
            seed = solution_seed(s.seed, i)
            w, info = self.trainer(self.problem, seed, lr=s.train_lr, max_epochs=s.max_epochs, batch_size=s.batch_size, progress=self.show_progress, polish_margin=s.polish_margin)
            info = dict(info, init_seed=seed)
        test = self.measure(w) if self.measure is not None else {}
        log.info("solution %d: %s", i, ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in dict(info, **test).items()))
        return w, dict(info, **test)

    def connect(self, w_a: torch.Tensor, w_b: torch.Tensor, progress: Callable[[int, float], None], checkpoint: Optional[Checkpoint]) -> PathResult:
        """:func:`ramble.core.connect.connect` with the run's settings, weights thinned to about ``weight_rows`` rows."""
        s = self.settings
        result = connect(self.problem, w_a, w_b, self.path_cfg, measure=self.measure, checkpoint=checkpoint, progress=progress, train_lr=s.train_lr, max_epochs=s.max_epochs)
        return thin_weights(result, s.weight_rows)

    def straight_line(self, w_a: torch.Tensor, w_b: torch.Tensor) -> dict[str, np.ndarray]:
        return straight_line(self.problem, w_a, w_b, self.settings.linear_points, self.measure, self.show_progress)


def given_solution(problem: Any, s: Any, i: int) -> torch.Tensor:
    """The caller's solution ``i`` (a (P,) vector, an nn.Module or a state dict) as the problem's flat weights; ConfigError unless it is in S."""
    w = s if isinstance(s, torch.Tensor) and s.ndim == 1 else problem.parameters_to_vector(s) if isinstance(s, (torch.nn.Module, dict)) else torch.as_tensor(np.asarray(s))
    w = w.to(device=problem.device, dtype=problem.dtype)
    if w.ndim != 1 or w.shape[0] != problem.n_params:
        raise ConfigError(f"solution {i} has shape {tuple(w.shape)}, the model needs ({problem.n_params},)")
    if not problem.contains(w):
        wrong = int((problem.margins(w) <= 0).sum())
        raise ConfigError(f"solution {i} is not a solution: it misclassifies {wrong} of {problem.n_samples} training samples")
    return w
