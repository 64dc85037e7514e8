"""How many weight rows a LeNet5 run keeps (issue 15, bug 3), on the stride logic itself: fast, no MNIST path."""

from __future__ import annotations

import numpy as np
import pytest

from ramble.core.path import PathConfig, find_path
from ramble.experiments.mnist_experiment import expected_iterations
from ramble.experiments.network_run import strided, thin_weights


@pytest.mark.parametrize("gamma,points,rows", [(0.1, 200, 100), (0.1, 200, 50), (0.001, 200, 100), (0.01, 30, 10)])
def test_weight_stride_comes_from_the_points_the_path_records(gamma, points, rows):
    cfg = strided(PathConfig(gamma=gamma), points, rows)
    recorded = expected_iterations(cfg) / cfg.record_every + 2
    kept = recorded / cfg.weight_every
    # at least as many rows as asked (thinned afterwards), never more than twice
    assert kept >= min(rows, recorded) - 1 and kept <= 2 * rows + 2, (cfg.record_every, cfg.weight_every, recorded)


def test_thinning_keeps_about_the_rows_asked_with_both_ends(small_tcm):
    prob, (w_a, w_b) = small_tcm
    r = find_path(prob, w_a, w_b, PathConfig())
    n = len(r.distance)
    assert n > 60
    t = thin_weights(r, 40)
    assert 38 <= len(t.weights) <= 42
    assert t.weight_index[0] == 0 and t.weight_index[-1] == n - 1 and np.all(np.diff(t.weight_index) > 0)
    for row, k in zip(t.weights, t.weight_index):
        np.testing.assert_array_equal(row, r.weights[k])
    assert thin_weights(r, 10 * n) is r  # fewer rows than asked: unchanged
