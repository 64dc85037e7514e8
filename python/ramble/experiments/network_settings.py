"""The checks every network run's settings share (LeNet5 on MNIST, one's own torch classifier).

One function, so that ``ramble mnist run`` and ``ramble torch run`` refuse the
same bad values with the same one-line message (:class:`ramble.errors.ConfigError`,
naming the CLI option).
"""

from __future__ import annotations

import math
from typing import Any

from ramble.errors import ConfigError
from ramble.experiments.driver import PAIRINGS

POSITIVE_COUNTS = ("max_epochs", "batch_size", "points", "weight_rows")
"""Settings that are counts of at least 1 in every network run."""


def check_network_run(cfg: Any, extra_counts: tuple[str, ...] = ()) -> None:
    """ConfigError naming the first setting of ``cfg`` out of range (``extra_counts``: more counts >= 1)."""
    if cfg.n_solutions < 1:
        raise ConfigError(f"--solutions must be >= 1, got {cfg.n_solutions}")
    if cfg.pairs not in PAIRINGS:
        raise ConfigError(f"--pairs must be one of {', '.join(PAIRINGS)}, got {cfg.pairs!r}")
    if not (cfg.train_lr > 0) or not math.isfinite(cfg.train_lr):
        raise ConfigError(f"--train-lr must be a finite number > 0, got {cfg.train_lr}")
    for name in (*POSITIVE_COUNTS, *extra_counts):
        if getattr(cfg, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(cfg, name)}")
    if cfg.linear_points < 2:
        raise ConfigError(f"--linear-points must be >= 2, got {cfg.linear_points}")
    if cfg.seed < 0:
        raise ConfigError(f"--seed must be >= 0, got {cfg.seed}")
    if not (cfg.polish_margin >= 0):
        raise ConfigError(f"--polish-margin must be >= 0, got {cfg.polish_margin}")
