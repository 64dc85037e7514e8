"""One repair round's step on whole MNIST: dense (G and G G^T formed) against matrix-free LSMR.

    OMP_NUM_THREADS=1 PYTHONPATH=python .venv/bin/python benchmarks/bench_repair.py --data-dir ../shared/mnist \
        [--dense 500 1000 2000 4000] [--free 500 1000 2000 4000 8000 16000] [--out benchmarks/results/bench_repair.json]

LeNet5 (float32, CPU, one thread) at a solution of the first 1,000 training
images (full-batch GD, seed 0) moved by 0.03 x a Gaussian direction, so that
many of the 60,000 samples have margins below the repair target 0.2, as after
an elastic step at gamma 0.1.  For k active samples (the k lowest margins)
the step d = G^T (G G^T)^+ (0.2 - m) is computed both ways
(``ramble.core.path.min_norm_step_dense`` / ``min_norm_step_matrix_free``);
recorded: seconds, LSMR products, and the relative difference of the steps
where both ran.  The machine's load is recorded before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch

from ramble.core import path as path_mod
from ramble.models.lenet import LeNetProblem, train_solution
from ramble.models.mnist import load_mnist


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--dense", type=int, nargs="*", default=[500, 1000, 2000, 4000])
    ap.add_argument("--free", type=int, nargs="*", default=[500, 1000, 2000, 4000, 8000, 16000])
    ap.add_argument("--out", default="benchmarks/results/bench_repair.json")
    a = ap.parse_args()
    torch.set_num_threads(1)
    load_before = os.getloadavg()
    data = load_mnist(a.data_dir, train_size=60000, test_size=100)
    w0, _ = train_solution(load_mnist(a.data_dir, train_size=1000, test_size=100), seed=0)
    problem = LeNetProblem.from_data(data)
    w = w0 + 0.03 * w0.abs().mean() * torch.randn(w0.shape, generator=torch.Generator().manual_seed(0))
    m = problem.margins(w)
    order = torch.argsort(m)
    rows = []
    for k in sorted(set(a.dense) | set(a.free)):
        idx = order[:k]
        rhs = 0.2 - m[idx]
        row = {"k": k, "broken_in_k": int((m[idx] <= 0).sum())}
        calls = {"n": 0}
        times, transposed = problem.margin_products(w, idx)

        def counted_products(*_a, _t=times, _tt=transposed):
            def t(u):
                calls["n"] += 1
                return _t(u)
            return t, _tt

        steps = {}
        if k in a.free:
            problem.margin_products = counted_products  # count G u products (one per LSMR iteration)
            t0 = time.perf_counter()
            steps["free"] = path_mod.min_norm_step_matrix_free(problem, w, idx, rhs)
            row["free_s"] = time.perf_counter() - t0
            row["lsmr_iterations"] = calls["n"]
            del problem.margin_products
        if k in a.dense:
            t0 = time.perf_counter()
            steps["dense"] = path_mod.min_norm_step_dense(problem, w, idx, rhs, broken=m[idx] <= 0)
            row["dense_s"] = time.perf_counter() - t0
        if len(steps) == 2 and all(s is not None for s in steps.values()):
            row["relative_difference"] = float(torch.linalg.norm(steps["free"] - steps["dense"]) / torch.linalg.norm(steps["dense"]))
        print(json.dumps(row), flush=True)
        rows.append(row)
    out = {"command": "benchmarks/bench_repair.py " + " ".join(f"--{k} {v}" for k, v in vars(a).items()),
           "machine": f"{platform.node()} {os.cpu_count()} cores", "load_before": load_before, "load_after": os.getloadavg(),
           "samples_below_target": int((m < 0.2).sum()), "rows": rows, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    Path(a.out).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
