"""MNIST-100 GD steps with a membership test each, on 1 and 2 torch threads, alternated: seconds and bit identity.

    PYTHONPATH=python .venv/bin/python benchmarks/bench_lenet_threads.py --data-dir ../shared/mnist
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from ramble.models.lenet import LeNetProblem, train_solution
from ramble.models.mnist import load_mnist


def steps(problem: LeNetProblem, w0: torch.Tensor, n: int) -> tuple[float, torch.Tensor]:
    """Seconds for ``n`` GD steps (lr 0.01), each kept if its end is in S; the end point."""
    w = w0.clone()
    t = time.perf_counter()
    for _ in range(n):
        cand = problem.descent_step(w, 0.01)
        if problem.contains(cand):
            w = cand
    return time.perf_counter() - t, w


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--steps", type=int, default=100)
    a = ap.parse_args()
    data = load_mnist(a.data_dir, 100, 100)
    w0 = train_solution(data, 0)[0]
    ends = {}
    print(f"load average before: {os.getloadavg()}")
    for n in (1, 2, 1, 2):
        torch.set_num_threads(n)
        dt, w = steps(LeNetProblem.from_data(data), w0, a.steps)
        print(f"{n} thread(s): {dt:.2f} s")
        ends.setdefault(n, w)
    print(f"identical end points: {torch.equal(ends[1], ends[2])} (max difference {float((ends[1] - ends[2]).abs().max()):.3g})")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
