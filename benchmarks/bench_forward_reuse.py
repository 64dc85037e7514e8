"""One forward pass for membership and the next gradient (LeNet5, one-chunk training sets): time and identity.

A path (and training) tests a candidate's membership, then takes the next GD
step from it.  ``LeNetProblem.contains`` keeps its forward pass for
``loss_and_grad`` at the same point.  This times ``--steps`` GD steps with a
membership test each, with the reuse and without it (the problem told its
training set is not one chunk), in turn, ``--repeats`` times, and checks the
two end points are identical.  One torch thread.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_forward_reuse.py --data-dir ../shared/mnist
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from ramble.models.lenet import LeNetProblem, train_solution
from ramble.models.mnist import load_mnist


def gd_with_membership(problem: LeNetProblem, w0: torch.Tensor, steps: int, lr: float) -> tuple[float, torch.Tensor]:
    """Seconds for ``steps`` GD steps, each kept only if its end is in S; the end point."""
    w = w0.clone()
    t = time.perf_counter()
    for _ in range(steps):
        cand = problem.descent_step(w, lr)
        if problem.contains(cand):
            w = cand
    return time.perf_counter() - t, w


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    torch.set_num_threads(1)
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
