"""Lazy chords (``PathConfig.chord_iterations``): certificates and time, move by move against chords.

Runs the first ``--iterations`` iterations of the MNIST-100 path of a
development experiment seed (default 7; the reported seeds are 0-3) at the
paper's settings (``mnist_experiment.paper_path_config``), once per
``--chords`` value, and records: certificates asked for, pieces, the
certifier's seconds, the path's wall time, iterations, vertices.  One torch
thread.  Prints a markdown table; ``--json`` writes it with the command,
machine and load.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_chords.py --data-dir ../shared/mnist \\
        --iterations 150 --chords 1,64 --json benchmarks/results/bench_chords.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from dataclasses import replace

import torch

from ramble.core.path import find_path
from ramble.experiments.driver import solution_seed
from ramble.experiments.mnist_experiment import paper_path_config
from ramble.models.lenet import LeNetProblem, train_solution
from ramble.models.mnist import load_mnist


def run(problem: LeNetProblem, w_a: torch.Tensor, w_b: torch.Tensor, chords: int, iterations: int) -> dict:
    """One truncated path; its certification and time figures."""
    cfg = replace(paper_path_config(problem.n_samples), chord_iterations=chords, max_iterations=iterations, record_every=1)
    r = find_path(problem, w_a, w_b, cfg)
    return {"chord_iterations": chords, "iterations": r.iterations, "vertices": len(r.iteration), "certificates": r.segment_checks,
            "certified": r.segments_certified, "pieces": r.cert_pieces, "cert_s": round(r.cert_seconds, 2), "path_s": round(r.wall_time, 2),
            "distance_reached": round(float(r.distance[-1]), 4)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--seed", type=int, default=7, help="experiment seed (a development seed)")
    ap.add_argument("--iterations", type=int, default=150)
    ap.add_argument("--chords", default="1,64")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    torch.set_num_threads(1)
    data = load_mnist(a.data_dir, 100, 100)
    problem = LeNetProblem.from_data(data)
    w_a, w_b = (train_solution(problem, solution_seed(a.seed, i))[0] for i in range(2))
    rows = [run(problem, w_a, w_b, int(c), a.iterations) for c in a.chords.split(",")]
    keys = list(rows[0])
    print("| " + " | ".join(keys) + " |\n|" + "---|" * len(keys))
    for r in rows:
        print("| " + " | ".join(str(r[k]) for k in keys) + " |")
    if a.json:
        out = {"command": " ".join(sys.argv), "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}",
               "load_average_at_end": os.getloadavg(), "rows": rows}
        with open(a.json, "w") as fh:
            json.dump(out, fh, indent=1)


if __name__ == "__main__":
    main()
