"""Shared fixtures: small TCM problems with solutions, cached per session."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ramble.models.patterns import random_patterns
from ramble.models.tcm import TCMProblem, gaussian_init
from ramble.models.tcm_training import TrainConfig, gd_solve, solve_with_restarts

torch.set_num_threads(1)

SMALL = dict(n_inputs=60, n_hidden=3, n_patterns=100, seed=4)


@pytest.fixture(scope="session")
def small_tcm():
    """(problem, [w_a, w_b]) for N=60, K=3, M=100: two polished solutions, float64 tensors."""
    p = random_patterns(SMALL["n_inputs"], SMALL["n_patterns"], SMALL["seed"])
    prob = TCMProblem(p, SMALL["n_hidden"])
    cfg = TrainConfig()
    scale = cfg.init_scale / np.sqrt(SMALL["n_inputs"] // SMALL["n_hidden"])
    sols = [
        solve_with_restarts(lambda w0: gd_solve(prob, w0, cfg), lambda s: gaussian_init(SMALL["n_inputs"], scale, s), SMALL["seed"], i, cfg)
        for i in range(2)
    ]
    return prob, [torch.from_numpy(s.w) for s in sols]
