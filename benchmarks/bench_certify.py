"""Cost of the LeNet5 segment certificate on the moves of real MNIST-100 paths.

Trains the two solutions of ``ramble mnist run`` (same seeds), draws the path
between them with the run's driver (:func:`ramble.core.connect.connect`),
and records every certificate the path algorithm asks for: seconds, pieces
(bisections = (pieces - 1) / 2), certified or refused, margin bound.

    OMP_NUM_THREADS=1 PYTHONPATH=python .venv/bin/python benchmarks/bench_certify.py \
        --data-dir ../shared/mnist --gamma 0.1 --json benchmarks/results/bench_certify.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np
import torch

from ramble.core.connect import connect
from ramble.core.problem import SegmentCertificate
from ramble.experiments.driver import solution_seed
from ramble.experiments.mnist_experiment import paper_path_config
from ramble.models.lenet import LeNetProblem, train_solution
from ramble.models.mnist import load_mnist


class RecordingProblem(LeNetProblem):
    """LeNetProblem that keeps every certificate it hands out."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.certificates: list[SegmentCertificate] = []
        self.log = None

    def certify_segment(self, w0: torch.Tensor, w1: torch.Tensor) -> SegmentCertificate:
        c = super().certify_segment(w0, w1)
        self.certificates.append(c)
        if self.log is not None:
            print(f"{len(self.certificates)} {int(c.certified)} {c.pieces} {c.seconds:.3f} {c.margin_bound:.3g}", file=self.log, flush=True)
        return c


def summary(certs: list[SegmentCertificate]) -> dict:
    sec = np.array([c.seconds for c in certs])
    pieces = np.array([c.pieces for c in certs])
    ok = np.array([c.certified for c in certs])
    bis = (pieces - 1) // 2
    return {
        "segments": len(certs),
        "certified": int(ok.sum()),
        "refused": int((~ok).sum()),
        "seconds_total": float(sec.sum()),
        "seconds_median": float(np.median(sec)),
        "seconds_p90": float(np.quantile(sec, 0.9)),
        "seconds_max": float(sec.max()),
        "seconds_median_certified": float(np.median(sec[ok])) if ok.any() else None,
        "seconds_median_refused": float(np.median(sec[~ok])) if (~ok).any() else None,
        "bisections_median": float(np.median(bis)),
        "bisections_mean": float(bis.mean()),
        "bisections_max": int(bis.max()),
        "one_piece_fraction": float((pieces == 1).mean()),
        "smallest_certified_bound": float(min(c.margin_bound for c in certs if c.certified)) if ok.any() else None,
    }


def piece_cost(problem: LeNetProblem, w: torch.Tensor, repeats: int = 10) -> dict:
    """Seconds of one GD epoch, one float32 margins pass and one bounded piece (no bisection) at ``w``, side by side."""
    from ramble.core.bounds import margin_bounds

    w1 = problem.descent_step(w, 0.1)

    def timed(fn) -> float:
        fn()
        start = time.perf_counter()
        for _ in range(repeats):
            fn()
        return (time.perf_counter() - start) / repeats

    gd = timed(lambda: problem.descent_step(w, 0.1))
    fwd = timed(lambda: problem.margins(w))
    piece = timed(lambda: margin_bounds(problem.model, w, w1, problem.x, problem.y))
    return {"gd_epoch_s": gd, "margins_s": fwd, "piece_s": piece, "piece_per_gd_epoch": piece / gd, "piece_per_forward": piece / fwd}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default="../shared/mnist")
    ap.add_argument("--train-size", type=int, default=100)
    ap.add_argument("--gamma", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--max-iterations", type=int, default=20_000)
    ap.add_argument("--json", default=None)
    ap.add_argument("--piece-cost", action="store_true", help="only time one bounded piece against a GD epoch and a forward pass, 3 times")
    ap.add_argument("--log", default=None, help="append one line per certificate: index certified pieces seconds bound")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    data = load_mnist(args.data_dir, args.train_size, 1)
    problem = RecordingProblem(data.train_x, data.train_y, device="cpu")
    problem.log = open(args.log, "a") if args.log else None
    sols = [train_solution(problem, solution_seed(args.seed, i))[0] for i in range(2)]
    if args.piece_cost:
        for _ in range(3):
            print(json.dumps(piece_cost(problem, sols[0])))
        return
    cfg = paper_path_config(args.train_size)
    from dataclasses import replace

    cfg = replace(cfg, gamma=args.gamma, max_iterations=args.max_iterations)
    started = time.perf_counter()
    result = connect(problem, sols[0], sols[1], cfg, train_lr=0.1, max_epochs=2000)
    wall = time.perf_counter() - started
    out = {
        "command": "benchmarks/bench_certify.py " + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if v is not None),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f} at the end, torch {torch.__version__}, {args.threads} thread(s)",
        "path": {"status": result.status, "reason": result.reason, "iterations": result.iterations, "wall_s": wall},
        "certificates": summary(problem.certificates),
    }
    print(json.dumps(out, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
