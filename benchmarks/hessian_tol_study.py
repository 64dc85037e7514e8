"""Lanczos tolerance and guard against products and accuracy, on development seeds (issue 13).

    OMP_NUM_THREADS=1 PYTHONPATH=python .venv/bin/python benchmarks/hessian_tol_study.py [--seeds 0 1] \
        [--data-dir ../shared/mnist] [--out benchmarks/results/hessian_tol_study_dev.json]

The points of bench_hessian.py (W_a + t (W_b - W_a), t = 0, 0.05, 0.10,
0.15, LeNet5 on the first 100 MNIST training images, float32, one thread),
but from the development seeds 0 and 1: the held-out seeds 2 and 3 of the
benchmark are not used for choosing.  For each (tol, guard), ramble's
solver runs along the four points as ``ramble hessian`` does (frozen-pattern
products, warm ``v0`` from the previous point) and records the products per
point and the worst relative error of the top 20 against a float64
reference (Lanczos tol 1e-10 on the plain conv model).  Wall times are not
recorded: products and errors do not depend on the machine's load.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from bench_hessian import K, max_rel

from ramble.analysis.hessian import classification_loss, hvp_operator, lanczos, top_eigenpairs, warm_v0
from ramble.analysis.spectra import frozen_pattern_loss
from ramble.models.lenet import LeNetProblem, train_solution
from ramble.models.mnist import load_mnist

TOLS = (1e-3, 3e-3, 1e-2, 2e-2)
GUARDS = (0, 2, 4)
STEPS = (0.0, 0.05, 0.1, 0.15)


def run(seeds: tuple[int, int], data_dir: str | None) -> dict[str, dict[str, list[float]]]:
    """{"tol_guard": {"products": [...], "errors": [...]}} over the points of the seeds' segment."""
    data = load_mnist(data_dir, train_size=100, test_size=1)
    p32 = LeNetProblem(data.train_x, data.train_y, dtype=torch.float32)
    p64 = LeNetProblem(data.train_x, data.train_y, dtype=torch.float64)
    wa, wb = (train_solution(p32, s, lr=0.1, max_epochs=5000)[0] for s in seeds)
    at = frozen_pattern_loss(p32, p32.x, p32.y)
    loss64 = classification_loss(p64.logits, p64.x, p64.y)
    points = [wa + t * (wb - wa) for t in STEPS]
    refs = [top_eigenpairs(loss64, w.double(), K, "LA", 1e-10, guard=4, max_products=4000, return_vectors=False).eigenvalues
            for w in points]
    out = {}
    for tol in TOLS:
        for guard in GUARDS:
            prev, products, errors = None, [], []
            for i, w in enumerate(points):
                start = {} if prev is None else {"v0": warm_v0(prev, seed=i)}
                spec = lanczos(hvp_operator(at(w), w), K, "LA", tol, guard=guard, seed=i, return_vectors=False, **start)
                prev = spec.warm_vectors
                products.append(int(spec.products))
                errors.append(max_rel(spec.eigenvalues, refs[i]))
            out[f"{tol}_{guard}"] = {"products": products, "errors": errors}
            print(f"tol {tol:g} guard {guard}: products {products}, worst error {max(errors):.1e}", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs=2, default=[0, 1], help="training seeds of W_a and W_b (development)")
    ap.add_argument("--data-dir", default=None, help="MNIST folder (default: ramble's search order)")
    ap.add_argument("--out", default="benchmarks/results/hessian_tol_study_dev.json", help="JSON record ('' for none)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    res = run(tuple(args.seeds), args.data_dir)
    if args.out:
        Path(args.out).write_text(json.dumps({"seeds": args.seeds, "steps": STEPS, "results": res}, indent=1))
        print(f"# wrote {args.out}")
    summary = {k: (float(np.mean(v["products"])), max(v["errors"])) for k, v in res.items()}
    print("# mean products, worst error:", json.dumps(summary))


if __name__ == "__main__":
    main()
