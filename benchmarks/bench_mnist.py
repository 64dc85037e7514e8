"""Time the LeNet5 experiment: MNIST-100 end to end, or the whole-set path, on CPU or CUDA.

    # MNIST-100 (paper settings: gamma 0.001, N_epochs 5), two solutions, path, test metrics
    python benchmarks/bench_mnist.py --train-size 100 --device cpu --threads 2
    # the whole training set on a CUDA GPU (paper: gamma 0.1, N_epochs 5) + membership throughput
    python benchmarks/bench_mnist.py --train-size 60000 --device cuda

Counts forward and backward passes by wrapping the problem's methods, so the
path's cost per accepted step is reported in passes over the training set,
independent of the machine.  Prints a markdown table (and JSON with --json).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections import Counter

import torch

from ramble.core.path import find_path
from ramble.experiments.driver import solution_seed
from ramble.experiments.mnist_experiment import paper_path_config
from ramble.experiments.network_run import strided
from ramble.models.lenet import LeNetProblem, resolve_device, train_solution
from ramble.models.mnist import load_mnist


def instrument(problem: LeNetProblem, counts: Counter) -> None:
    """Count passes over the training set (fwd = forward only, fwd+bwd = with a gradient)."""
    m = problem.n_samples

    def wrap(name: str, kind: str, per_call) -> None:
        orig = getattr(problem, name)

        def f(*a, **k):
            counts[kind] += per_call(a)
            return orig(*a, **k)

        setattr(problem, name, f)

    wrap("loss_and_grad", "fwd+bwd", lambda a: 1.0)
    wrap("margins", "fwd", lambda a: 1.0)
    wrap("contains", "fwd", lambda a: 1.0)
    wrap("margin_grads", "per-sample grads (samples)", lambda a: float(len(a[1])) / m)
    if not problem.full_batch:
        # one descent_step = one epoch of mini-batch steps = one fwd+bwd pass over the set
        wrap("descent_step", "fwd+bwd", lambda a: 1.0)


def membership_throughput(problem: LeNetProblem, w: torch.Tensor, repeats: int = 3) -> tuple[float, float]:
    """Images per second of the membership test and of a plain forward pass over the training set."""
    def sync():
        if problem.device.type == "cuda":
            torch.cuda.synchronize()

    problem.contains(w)
    sync()
    t = time.perf_counter()
    for _ in range(repeats):
        problem.contains(w)
    sync()
    member = repeats * problem.n_samples / (time.perf_counter() - t)
    with torch.inference_mode():
        t = time.perf_counter()
        for _ in range(repeats):
            for i in range(0, problem.n_samples, problem.eval_batch_size):
                problem.logits(w, problem.x[i : i + problem.eval_batch_size])
        sync()
    forward = repeats * problem.n_samples / (time.perf_counter() - t)
    return member, forward


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train-size", type=int, default=100)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--points", type=int, default=100)
    ap.add_argument("--max-iterations", type=int, default=None, help="Stop the path early (timing only).")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    dev = resolve_device(args.device)
    t0 = time.perf_counter()
    data = load_mnist(args.data_dir, args.train_size)
    problem = LeNetProblem.from_data(data, device=dev)
    test_x, test_y = data.test_x.to(dev), data.test_y.to(dev)
    t_load = time.perf_counter() - t0
    sols, t_train = [], []
    for i in range(2):
        t = time.perf_counter()
        w, info = train_solution(problem, solution_seed(0, i))
        t_train.append(time.perf_counter() - t)
        sols.append(w)
    member, forward = membership_throughput(problem, sols[0])
    cfg = paper_path_config(args.train_size)
    if args.max_iterations:
        from dataclasses import replace

        cfg = replace(cfg, max_iterations=args.max_iterations)
    cfg = strided(cfg, args.points, args.points)
    counts: Counter = Counter()
    instrument(problem, counts)

    def measure(w):
        ev = problem.evaluate_on(w, test_x, test_y)
        return {"test_loss": ev.loss, "test_error": ev.error}

    t = time.perf_counter()
    r = find_path(problem, sols[0], sols[1], cfg, measure=measure)
    t_path = time.perf_counter() - t
    steps = r.elastic_accepted + r.elastic_repaired + r.gd_accepted
    res = {
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads, device {dev}"
        + (f" ({torch.cuda.get_device_name(0)})" if dev.type == "cuda" else ""),
        "torch": torch.__version__,
        "train_size": args.train_size,
        "load_s": round(t_load, 2),
        "train_s": [round(x, 2) for x in t_train],
        "membership_img_per_s": round(member),
        "forward_img_per_s": round(forward),
        "path_status": r.status,
        "path_iterations": r.iterations,
        "path_points_with_test_metrics": int(len(r.distance)),
        "path_s": round(t_path, 1),
        "total_s": round(time.perf_counter() - t0, 1),
        "passes": {k: round(v, 1) for k, v in counts.items()},
        "accepted_steps": steps,
        "passes_per_accepted_step": round(sum(counts.values()) / max(1, steps), 2),
    }
    print("| quantity | value |\n|---|---|")
    for k, v in res.items():
        print(f"| {k} | {v} |")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(res, fh, indent=1)


if __name__ == "__main__":
    main()
