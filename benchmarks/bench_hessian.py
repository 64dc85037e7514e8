"""Top-20 Hessian eigenvalues of LeNet5 on MNIST-100: PyHessian vs ramble.hessian; and the TCM's exact spectrum.

    PYTHONPATH=python .venv/bin/python benchmarks/bench_hessian.py [--threads 1] [--points 5] [--step 0.05] \
        [--tol 1e-3] [--ref-tol 1e-9] [--data-dir DIR] [--skip-pyhessian]

Needs ``pip install pyhessian==0.1`` for the baseline (not a ramble dependency).

LeNet5 part.  Two solutions W_a, W_b (seeds 0 and 1) are trained by
full-batch GD, lr 0.1, from Xavier init until 100% training accuracy on the
first 100 MNIST training images (``ramble.lenet.train_solution``).  The points
are W_a + t (W_b - W_a) for t = 0, step, 2 step, ... (``--points`` of them): a
stand-in for a recorded path with rows ``step`` apart in normalised distance
(20 points on a path are 0.05 apart).  At every point, in float32 on the CPU:

* PyHessian ``hessian(model, CrossEntropyLoss(), data=(x, y), cuda=False)
  .eigenvalues(top_n=20)`` (power iteration with deflation; maxIter 100,
  tol 1e-3; largest magnitude, "LM"), products counted by wrapping its
  ``hessian_vector_product``, torch seeded per point;
* ramble ``top_eigenpairs(..., k=20, which, tol)`` cold (random start), and
  warm (``warm_v0`` of the previous point's tracked Ritz vectors, guard 4);

and a float64 reference ``top_eigenpairs(k=20, tol=--ref-tol)`` on the same
images.  "max rel err" is max_i |lambda_i - ref_i| / |ref_i| over the 20
(both sorted descending) and over the points.

TCM part: the exact 300 x 300 Hessian at N=300, K=3, M=620 (random +-1
patterns, Gaussian weights; the cost does not depend on w) by
``TCMProblem.hessian`` and ``dense_hessian`` (both
torch.autograd.functional.hessian, a backward pass per row), by
``torch.func.hessian`` (forward-over-reverse, for comparison), and
``full_spectrum`` (LAPACK), best of 3.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np
import torch

from ramble.hessian import (
    classification_loss,
    count_nonzero,
    dense_hessian,
    full_spectrum,
    hvp_operator,
    top_eigenpairs,
    warm_v0,
)
from ramble.lenet import LeNet5, LeNetProblem, load_flat, train_solution
from ramble.mnist import load_mnist
from ramble.patterns import random_patterns
from ramble.tcm import TCMProblem, gaussian_init

K = 20


@dataclass
class Row:
    """Per-point results of one method."""

    seconds: list[float] = field(default_factory=list)
    products: list[int] = field(default_factory=list)
    errors: list[float] = field(default_factory=list)


def max_rel(values: np.ndarray, ref: np.ndarray) -> float:
    """max_i |values_i - ref_i| / |ref_i|, both sorted descending (the top-k sets are compared as sets)."""
    a = np.sort(np.asarray(values, dtype=np.float64))[::-1]
    b = np.sort(np.asarray(ref, dtype=np.float64))[::-1]
    return float(np.max(np.abs(a - b) / np.abs(b)))


def pyhessian_top(w: torch.Tensor, x: torch.Tensor, y: torch.Tensor, seed: int) -> tuple[np.ndarray, int, float]:
    """PyHessian's top-20 (eigenvalues, products, seconds) at flat LeNet5 weights ``w`` (float32, CPU)."""
    import pyhessian  # noqa: F401  (registers the submodule)

    ph = sys.modules["pyhessian.hessian"]  # the package re-exports the class under the module's name
    count = [0]
    original = ph.hessian_vector_product

    def counted(*args: Any, **kwargs: Any) -> Any:
        count[0] += 1
        return original(*args, **kwargs)

    model = LeNet5()
    load_flat(model, w)
    model.eval()
    torch.manual_seed(seed)  # PyHessian draws its start vectors from the global generator
    ph.hessian_vector_product = counted
    try:
        t0 = time.perf_counter()
        h = ph.hessian(model, torch.nn.CrossEntropyLoss(), data=(x, y), cuda=False)
        vals, _ = h.eigenvalues(top_n=K)
        seconds = time.perf_counter() - t0
    finally:
        ph.hessian_vector_product = original
    return np.sort(np.array(vals, dtype=np.float64))[::-1], count[0], seconds


def best_of(fn: Callable[[], Any], repeats: int = 3) -> tuple[float, Any]:
    """Smallest wall time of ``fn`` over ``repeats`` runs, and its last result."""
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def lenet_part(args: argparse.Namespace) -> None:
    data = load_mnist(args.data_dir, train_size=100, test_size=1)
    p32 = LeNetProblem(data.train_x, data.train_y, dtype=torch.float32)
    p64 = LeNetProblem(data.train_x, data.train_y, dtype=torch.float64)
    sols = []
    for seed in (0, 1):
        w, info = train_solution(p32, seed, lr=0.1, max_epochs=5000)
        sols.append(w)
        print(f"# solution seed {seed}: {info['epochs']} full-batch GD epochs, loss {info['loss']:.4f}, "
              f"train error {info['train_error']:.0%}")
    wa, wb = sols
    loss32 = classification_loss(p32.logits, p32.x, p32.y)
    loss64 = classification_loss(p64.logits, p64.x, p64.y)

    op = hvp_operator(loss32, wa)
    v = torch.randn(wa.numel(), 10, generator=torch.Generator().manual_seed(0))
    t_hvp, _ = best_of(lambda: op.matmat(v))
    opb = hvp_operator(loss32, wa, batched=True)
    t_batched, _ = best_of(lambda: opb.matmat(v))
    print(f"# one ramble HVP (double backprop, retained graph, float32, 100 images, best of 3): "
          f"{1000 * t_hvp / 10:.1f} ms in a loop, {1000 * t_batched / 10:.1f} ms batched (block of 10)")

    methods = ["PyHessian (power, LM)"] if not args.skip_pyhessian else []
    methods += [f"ramble cold {wh}" for wh in ("LM", "LA")] + [f"ramble warm {wh}" for wh in ("LM", "LA")]
    rows: dict[str, Row] = {m: Row() for m in methods}
    first: dict[str, tuple[float, int, float]] = {}
    prev: dict[str, Optional[torch.Tensor]] = {"LM": None, "LA": None}
    for i in range(args.points):
        t = i * args.step
        w = wa + t * (wb - wa)
        ev = p32.evaluate(w)
        refs = {wh: top_eigenpairs(loss64, w.double(), K, wh, args.ref_tol, guard=4, max_products=4000)
                for wh in ("LM", "LA")}
        for wh, r in refs.items():
            if not r.converged.all():
                print(f"# warning: the {wh} reference at t={t:g} did not converge (max residual {r.residuals.max():.2e})")
        line = [f"t={t:.3f} (train error {ev.error:.0%}, ref products LM {refs['LM'].products}, LA {refs['LA'].products})"]
        if not args.skip_pyhessian:
            vals, n, sec = pyhessian_top(w, p32.x, p32.y, seed=i)
            _record(rows, first, i, "PyHessian (power, LM)", sec, n, max_rel(vals, refs["LM"].eigenvalues))
            line.append(f"PyHessian {n} products, max rel err {max_rel(vals, refs['LM'].eigenvalues):.1e}")
        for wh in ("LM", "LA"):
            cold = top_eigenpairs(loss32, w, K, wh, args.tol, guard=4, seed=i)
            _record(rows, first, i, f"ramble cold {wh}", cold.seconds, cold.products,
                    max_rel(cold.eigenvalues, refs[wh].eigenvalues))
            if prev[wh] is not None:
                warm = top_eigenpairs(loss32, w, K, wh, args.tol, guard=4, seed=i, v0=warm_v0(prev[wh], seed=i))
                _record(rows, first, i, f"ramble warm {wh}", warm.seconds, warm.products,
                        max_rel(warm.eigenvalues, refs[wh].eigenvalues))
                prev[wh] = warm.warm_vectors
            else:
                prev[wh] = cold.warm_vectors
            line.append(f"{wh}: cold {cold.products}" + (f"/warm {rows[f'ramble warm {wh}'].products[-1]}" if i else ""))
        print("# " + ", ".join(line))

    base = "PyHessian (power, LM)"
    print()
    print(f"### One point (W_a), top-{K}, float32, tol {args.tol}")
    print()
    print("| method | wall s | HVPs | max rel err vs float64 ref | speed-up vs PyHessian (wall / HVPs) |")
    print("|---|---|---|---|---|")
    for m, (sec, n, err) in first.items():
        sp = "" if base not in first else f"{first[base][0] / sec:.1f}x / {first[base][1] / n:.1f}x"
        print(f"| {m} | {sec:.2f} | {n} | {err:.1e} | {sp} |")
    print()
    print(f"### Per point at the {args.points - 1} further points, step {args.step} of |W_b - W_a| "
          "(wall and HVPs: mean per point; error: worst and median point)")
    print()
    print("| method | wall s / point | HVPs / point | max rel err vs float64 ref (worst / median point) "
          "| speed-up vs PyHessian (wall / HVPs) |")
    print("|---|---|---|---|---|")
    for m, r in rows.items():  # rows hold points 1 .. points-1 only
        sec, n = float(np.mean(r.seconds)), float(np.mean(r.products))
        sp = ""
        if base in rows:
            sp = f"{np.mean(rows[base].seconds) / sec:.1f}x / {np.mean(rows[base].products) / n:.1f}x"
        print(f"| {m} | {sec:.2f} | {n:.1f} | {max(r.errors):.1e} / {np.median(r.errors):.1e} | {sp} |")


def _record(rows: dict[str, Row], first: dict[str, tuple[float, int, float]], i: int, name: str,
            sec: float, n: int, err: float) -> None:
    """Keep one measurement: point 0 goes to the one-point table, later points to the per-point table."""
    if i == 0:
        first[name] = (sec, n, err)
    else:
        rows[name].seconds.append(sec)
        rows[name].products.append(n)
        rows[name].errors.append(err)


def tcm_part(args: argparse.Namespace) -> None:
    n, k, m = 300, 3, 620
    prob = TCMProblem(random_patterns(n, m, 0), k)
    w = torch.from_numpy(gaussian_init(n, 1.0 / np.sqrt(n // k), 0))
    t_ag, h = best_of(lambda: prob.hessian(w))
    t_dense, _ = best_of(lambda: dense_hessian(prob.loss, w))
    t_func, h2 = best_of(lambda: torch.func.hessian(prob.loss)(w))
    t_eig, eigs = best_of(lambda: full_spectrum(h))
    diff = float((h - h2).abs().max() / h.abs().max())
    print()
    print(f"### TCM exact Hessian, N={n}, K={k}, M={m} (float64, best of 3)")
    print()
    print("| step | seconds |")
    print("|---|---|")
    print(f"| Hessian by TCMProblem.hessian (torch.autograd.functional.hessian) | {t_ag:.3f} |")
    print(f"| Hessian by ramble.hessian.dense_hessian (the same, symmetrised) | {t_dense:.3f} |")
    print(f"| Hessian by torch.func.hessian (forward-over-reverse) | {t_func:.3f} |")
    print(f"| full spectrum, 300 eigenvalues (ramble.hessian.full_spectrum, LAPACK syevd) | {t_eig:.4f} |")
    print()
    print(f"# at the Gaussian init (not a solution): the Hessians differ by {diff:.1e} (relative max); "
          f"non-zero eigenvalues (|l| > 1e-8 max): "
          f"{count_nonzero(eigs)} of {n}; smallest {eigs[-1]:.2e}, largest {eigs[0]:.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", default=None, help="MNIST folder (default: ramble's search order)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: fair on a shared CPU)")
    ap.add_argument("--points", type=int, default=5, help="points along the segment, the first is W_a")
    ap.add_argument("--step", type=float, default=0.05, help="spacing of the points as a fraction of |W_b - W_a|")
    ap.add_argument("--tol", type=float, default=1e-3, help="ramble's residual tolerance")
    ap.add_argument("--ref-tol", type=float, default=1e-9, help="tolerance of the float64 reference")
    ap.add_argument("--skip-pyhessian", action="store_true")
    ap.add_argument("--skip-tcm", action="store_true")
    args = ap.parse_args()
    if args.points < 2:
        ap.error("--points must be >= 2")
    torch.set_num_threads(args.threads)
    try:
        load = "%.1f %.1f %.1f" % os.getloadavg()
    except OSError:
        load = "n/a"
    print(f"# torch {torch.__version__}, python {platform.python_version()}, {platform.machine()}, "
          f"{len(os.sched_getaffinity(0))} CPUs usable, torch threads {torch.get_num_threads()}, load average {load}")
    lenet_part(args)
    if not args.skip_tcm:
        tcm_part(args)


if __name__ == "__main__":
    main()
