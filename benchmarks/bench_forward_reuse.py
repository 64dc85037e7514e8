"""One forward pass for membership and the next gradient (LeNet5 on one-chunk training sets; the TCM): time and identity.

A path (and training) tests a candidate's membership, then takes the next GD
step from it.  ``LeNetProblem.contains`` keeps its forward pass for
``loss_and_grad`` at the same point.  This times ``--steps`` GD steps with a
membership test each, with the reuse and without it (the problem told its
training set is not one chunk), in turn, ``--repeats`` times, and checks the
two end points are identical.  One torch thread.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_forward_reuse.py --data-dir ../shared/mnist

With ``--tcm SEED``: the TCM at the paper's size (N = 300, K = 3, M = 620,
data seed SEED) instead; ``TCMProblem.contains`` and ``margins`` keep their
committee pass for the gradient at the same point.  This times whole Python
paths between two solutions (default settings), with the reuse and without
it, in turn, and checks the two paths are identical.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from ramble.core.path import PathConfig, find_path
from ramble.models.lenet import LeNetProblem, train_solution
from ramble.models.mnist import load_mnist
from ramble.models.patterns import random_patterns
from ramble.models.tcm import TCMProblem, gaussian_init
from ramble.models.tcm_training import TrainConfig, gd_solve, solve_with_restarts


def gd_with_membership(problem: LeNetProblem, w0: torch.Tensor, steps: int, lr: float) -> tuple[float, torch.Tensor]:
    """Seconds for ``steps`` GD steps, each kept only if its end is in S; the end point."""
    w = w0.clone()
    t = time.perf_counter()
    for _ in range(steps):
        cand = problem.descent_step(w, lr)
        if problem.contains(cand):
            w = cand
    return time.perf_counter() - t, w


class UnkeptTCM(TCMProblem):
    """The TCM as it was before the reuse: every pass computed afresh."""

    def _committee_kept(self, w: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.committee(w)


def tcm_paths(seed: int, repeats: int) -> None:
    """Whole Python TCM paths at the paper's size, with and without the kept pass, alternated."""
    cfg = TrainConfig()
    p = random_patterns(300, 620, seed)
    scale = cfg.init_scale / (300 // 3) ** 0.5
    reuse, plain = TCMProblem(p, 3), UnkeptTCM(p, 3)
    w_a, w_b = (torch.from_numpy(solve_with_restarts(lambda w0: gd_solve(reuse, w0, cfg), lambda s: gaussian_init(300, scale, s), seed, i, cfg).w)
                for i in range(2))
    print(f"load average before: {os.getloadavg()}")
    for _ in range(repeats):
        new, old = find_path(reuse, w_a, w_b, PathConfig()), find_path(plain, w_a, w_b, PathConfig())
        same = all(np.array_equal(getattr(new, f), getattr(old, f)) for f in ("weights", "iteration", "decisions", "gd_refused"))
        print(f"path ({new.status}, {new.iterations} iterations): reuse {new.wall_time:.2f} s, without {old.wall_time:.2f} s, "
              f"{old.wall_time / new.wall_time:.2f}x, identical paths: {same}")
    print(f"load average after: {os.getloadavg()}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--tcm", type=int, default=None, metavar="SEED", help="time Python TCM paths on this data seed instead")
    a = ap.parse_args()
    torch.set_num_threads(1)
    if a.tcm is not None:
        tcm_paths(a.tcm, a.repeats)
        return
    data = load_mnist(a.data_dir, 100, 100)
    w0 = train_solution(data, 0)[0]
    reuse, plain = LeNetProblem.from_data(data), LeNetProblem.from_data(data)
    plain._one_chunk = lambda: False  # the chunked route: no kept forward pass
    print(f"load average before: {os.getloadavg()}")
    for _ in range(a.repeats):
        t_new, w_new = gd_with_membership(reuse, w0, a.steps, 0.01)
        t_old, w_old = gd_with_membership(plain, w0, a.steps, 0.01)
        print(f"reuse {t_new:.2f} s, without {t_old:.2f} s, {t_old / t_new:.2f}x, identical end point: {torch.equal(w_new, w_old)}")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
