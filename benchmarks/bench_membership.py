"""Throughput of the LeNet5 membership test (``LeNetProblem.contains``) on the full MNIST training set.

    PYTHONPATH=python .venv/bin/python benchmarks/bench_membership.py [--data-dir DIR] \
        [--batch-sizes 100,250,500,1000,5000] [--devices cpu,cuda] [--threads 1] [--repeats 3]

For each device and chunk size it times, over all 60,000 training images:

* ``forward``:  a plain ``nn.Module`` forward pass under ``inference_mode`` (the floor);
* ``contains``: the full membership test at a weight vector that classifies
  every image correctly, so no early exit happens;
* ``margins``:  the per-sample margins (what the path algorithm reads);
* ``reject``:   ``contains`` at a vector that misclassifies some image of the
  first chunk (early exit), in milliseconds.

Give ``--weights FILE`` (a ``torch.save``'d flat vector of a full-MNIST
solution) to time a real solution.  Without it, since a 100%-accurate LeNet5
takes minutes to train, the labels are replaced by the network's own
predictions at a Xavier-initialised ``w``: the images and the arithmetic are
the real ones, and ``w`` is then in S of that relabelled problem.  Best of ``--repeats`` runs; images per second.
"""

from __future__ import annotations

import argparse
import platform
import time
from typing import Callable

import torch

from ramble.models.lenet import LeNet5, LeNetProblem, load_flat, resolve_device, xavier_flat
from ramble.models.mnist import load_mnist


def _timer(device: torch.device, fn: Callable[[], object], repeats: int) -> float:
    """Best wall time of ``fn`` over ``repeats`` runs, after one warm-up run (seconds)."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", default=None, help="folder with the official MNIST files (default: ramble's search order)")
    ap.add_argument("--batch-sizes", default="100,250,500,1000,5000", help="comma-separated chunk sizes")
    ap.add_argument("--devices", default="cpu,cuda", help="comma-separated; cuda is skipped when absent")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--train-size", type=int, default=60_000)
    ap.add_argument("--weights", default=None,
                    help="torch.save'd flat weight vector of a real solution (e.g. from train_solution); "
                         "default: relabel the images at a Xavier init")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    data = load_mnist(args.data_dir, train_size=args.train_size, test_size=1)
    n = data.train_x.shape[0]
    sizes = [int(s) for s in args.batch_sizes.split(",")]
    devices = []
    for name in args.devices.split(","):
        if name.strip() == "cuda" and not torch.cuda.is_available():
            print("# cuda: not available here, skipped")
            continue
        devices.append(resolve_device(name.strip()))

    print(f"# torch {torch.__version__}, {platform.processor() or platform.machine()}, "
          f"threads={args.threads}, images={n}, best of {args.repeats}")
    header = f"{'device':<7} {'batch':>6} {'forward img/s':>14} {'contains img/s':>15} {'vs fwd':>6} {'margins img/s':>14} {'reject ms':>10}"
    print(header)
    print("-" * len(header))
    for device in devices:
        probe = LeNetProblem(data.train_x, data.train_y, device=device, eval_batch_size=max(sizes))
        if args.weights:
            w = torch.load(args.weights, map_location=device).to(torch.float32)
            own = probe.y  # a real solution: keep the true labels
        else:
            w = xavier_flat(0, device=device)
            with torch.inference_mode():
                own = torch.cat([probe.logits(w, probe.x[i:i + 5000]).argmax(1) for i in range(0, n, 5000)])
        model = LeNet5().to(device)
        load_flat(model, w)
        model.eval()
        for bs in sizes:
            p = LeNetProblem(data.train_x, own, device=device, eval_batch_size=bs)
            if not p.contains(w):  # relabelled: a tie between two logits makes a zero margin
                print(f"{device.type:<7} {bs:>6}  (w is not in S of this problem; skipped)")
                continue
            wrong = LeNetProblem(data.train_x, data.train_y, device=device, eval_batch_size=bs)
            if args.weights:  # make image 0 wrong so that the first chunk fails
                wrong.y[0] = int(wrong.logits(w, wrong.x[:1]).argmin())

            def forward() -> None:
                with torch.inference_mode():
                    for i in range(0, n, bs):
                        model(p.x[i:i + bs])

            t_fwd = _timer(device, forward, args.repeats)
            t_con = _timer(device, lambda: p.contains(w), args.repeats)
            t_mar = _timer(device, lambda: p.margins(w), args.repeats)
            t_rej = _timer(device, lambda: wrong.contains(w), args.repeats)
            print(f"{device.type:<7} {bs:>6} {n / t_fwd:>14,.0f} {n / t_con:>15,.0f} {t_fwd / t_con:>6.2f} "
                  f"{n / t_mar:>14,.0f} {1000 * t_rej:>10.1f}")


if __name__ == "__main__":
    main()
