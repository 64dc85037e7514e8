"""Top-20 Hessian eigenvalues and the trace of LeNet5 on MNIST-100: PyHessian 0.1 vs ramble, in one run.

    OMP_NUM_THREADS=1 PYTHONPATH=python .venv/bin/python benchmarks/bench_hessian.py [--seeds 2 3] [--points 4] \
        [--step 0.05] [--probes 2 10] [--trace-repeats 5] [--threads 1] [--out benchmarks/results/bench_hessian.json] \
        [--skip-pyhessian] [--skip-tcm] [--block-study]

Needs ``pip install pyhessian==0.1`` for the baseline (not a ramble dependency).

Points.  Two solutions W_a, W_b (``--seeds``; default 2 and 3, held out:
the choices in ramble.analysis.hessian and ramble.analysis.spectra were made on seeds 0 and 1)
are trained by full-batch GD, lr 0.1, from Xavier init until 100% training
accuracy on the first 100 MNIST training images.  The points are
W_a + t (W_b - W_a), t = 0, step, 2 step, ... (``--points``): a stand-in for
a path whose stored rows are ``step`` apart.  Every point, in float32 on the
CPU, ``--threads`` torch threads:

* PyHessian: ``hessian(model, CrossEntropyLoss(), data=(x, y), cuda=False)``
  (the gradient graph), ``.eigenvalues(top_n=20)`` (power iteration with
  deflation, maxIter 100, tol 1e-3, largest magnitude) and ``.trace()``
  (Hutchinson, Rademacher, at most 100 probes, stops when the running mean
  moves < 1e-3), products counted by wrapping its ``hessian_vector_product``;
* ramble, as ``ramble hessian`` does it (``along_path``): the gradient graph
  of ``frozen_pattern_loss`` built at the point, ``lanczos(k=20, "LA",
  tol=1e-3, guard=4)`` warm-started by ``warm_v0`` of the previous point,
  then the Hutchinson trace deflated by the Lanczos basis, once for each
  probe count in ``--probes``, and the exact trace of the frozen point
  (``FrozenLeNetPoint.exact_trace``: what ``ramble hessian`` stores for
  LeNet5 on up to 1,000 images; Hutchinson's is its trace beyond that).

References, float64, computed independently of both: the top-20 by
``top_eigenpairs(tol=1e-10)`` on ``LeNetProblem.logits`` (the plain conv
model), LA and LM; the **exact** trace by ``gauss_newton_trace`` (exact for
LeNet5, see docs/hessian.md).  "rel err" = max_i |lambda_i - ref_i| / |ref_i|
over the 20, and |trace - exact| / exact.  Trace accuracy: every trace
estimator (PyHessian's ``trace()`` and ramble's per probe count) is run
``--trace-repeats`` times with fresh probes; the RMS relative error over all
points and repeats is compared (the first run is the timed one).

Wall times: "eigen" counts the gradient graph plus the eigensolver (for
both tools; ramble's point runs before and after PyHessian, and its times
are the mean of the two, so that load drifting within a point hits both);
"trace" counts only the trace's own work (both reuse their graph; ramble's
also reuses the Lanczos basis); "point" is the sum.  The first point has no
warm start; the tables give the mean over all points.  The machine's load
(``os.getloadavg``) is recorded before and after.

``--block-study`` (issue 13): at the first point, the cost per vector of
blocks of products (a loop, ``is_grads_batched``, ``vmap`` of ``jvp(grad)``)
and SciPy's LOBPCG (block k + guard) against ``lanczos``: products, seconds
and error (see :func:`block_study`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch

from ramble.analysis.hessian import (
    classification_loss,
    count_nonzero,
    dense_hessian,
    full_spectrum,
    gauss_newton_trace,
    hutchinson_trace,
    hvp_operator,
    lanczos,
    top_eigenpairs,
    warm_v0,
)
from ramble.analysis.spectra import frozen_pattern_loss, patch_gemm_logits
from ramble.models.lenet import LeNet5, LeNetProblem, load_flat, train_solution
from ramble.models.mnist import load_mnist
from ramble.models.patterns import random_patterns
from ramble.models.tcm import TCMProblem, gaussian_init

K = 20
GUARD = 4  # along_path's default for k = 20


def load_average() -> str:
    try:
        return "%.2f %.2f %.2f" % os.getloadavg()
    except OSError:
        return "n/a"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def max_rel(values: np.ndarray, ref: np.ndarray) -> float:
    """max_i |values_i - ref_i| / |ref_i|, both sorted descending (top-k sets compared as sets)."""
    a = np.sort(np.asarray(values, dtype=np.float64))[::-1]
    b = np.sort(np.asarray(ref, dtype=np.float64))[::-1]
    return float(np.max(np.abs(a - b) / np.abs(b)))


def best_of(fn: Callable[[], Any], repeats: int = 3) -> tuple[float, Any]:
    """Smallest wall time of ``fn`` over ``repeats`` runs, and its last result."""
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def sync(device: torch.device) -> None:
    """Wait for queued CUDA work, so that wall times cover it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def pyhessian_point(w: torch.Tensor, x: torch.Tensor, y: torch.Tensor, seed: int, trace_repeats: int = 1) -> dict[str, Any]:
    """PyHessian's top-20 and trace at flat LeNet5 weights ``w`` (float32, on w's device): values, products, seconds."""
    import pyhessian  # noqa: F401  (registers the submodule)

    ph = sys.modules["pyhessian.hessian"]  # the package re-exports the class under the module's name
    count = [0]
    original = ph.hessian_vector_product

    def counted(*args: Any, **kwargs: Any) -> Any:
        count[0] += 1
        return original(*args, **kwargs)

    model = LeNet5()
    load_flat(model, w.cpu())
    model.to(w.device).eval()
    torch.manual_seed(seed)  # PyHessian draws its vectors from the global generator
    ph.hessian_vector_product = counted
    try:
        t0 = time.perf_counter()
        h = ph.hessian(model, torch.nn.CrossEntropyLoss(), data=(x, y), cuda=w.device.type == "cuda")
        vals, _ = h.eigenvalues(top_n=K)
        t1 = time.perf_counter()
        n_eig = count[0]
        tr = h.trace()
        t2 = time.perf_counter()
        n_tr = count[0] - n_eig
        # more runs of trace() (fresh probes from the global generator), for its error statistics only
        repeats = [float(np.mean(tr))] + [float(np.mean(h.trace())) for _ in range(trace_repeats - 1)]
    finally:
        ph.hessian_vector_product = original
    se = float(np.std(tr, ddof=1) / np.sqrt(len(tr))) if len(tr) > 1 else float("nan")
    return {"eigenvalues": np.sort(np.array(vals, dtype=np.float64))[::-1], "eig_products": n_eig,
            "eig_seconds": t1 - t0, "trace": float(np.mean(tr)), "trace_se": se, "trace_products": n_tr,
            "trace_seconds": t2 - t1, "trace_repeats": repeats}


def ramble_point(at: Any, w: torch.Tensor, prev: Optional[torch.Tensor], seed: int, probes: list[int],
                 trace_repeats: int) -> dict[str, Any]:
    """ramble's top-20 and deflated traces at ``w``, the calls ``along_path`` makes (frozen-pattern
    products, warm v0, guard 4); a trace per probe count in ``probes``, each timed on its first run."""
    t0 = time.perf_counter()
    point = at(w)
    op = hvp_operator(point, w)
    start = {} if prev is None else {"v0": warm_v0(prev, seed=seed)}
    spec = lanczos(op, K, "LA", 1e-3, guard=GUARD, seed=seed, return_vectors=False, **start)
    t1 = time.perf_counter()
    out = {"eigenvalues": spec.eigenvalues, "eig_products": spec.products, "eig_seconds": t1 - t0,
           "converged": bool(spec.converged.all()), "warm": spec.warm_vectors, "traces": {}}
    deflate = (spec.subspace, spec.subspace_trace)
    for n in probes:
        t2 = time.perf_counter()
        tr, se, n_tr = hutchinson_trace(op, n_samples=n, seed=0, deflate=deflate)
        t3 = time.perf_counter()
        # the same estimator with other probe seeds, for its error statistics only (not timed)
        repeats = [tr] + [hutchinson_trace(op, n_samples=n, seed=r, deflate=deflate)[0] for r in range(1, trace_repeats)]
        out["traces"][str(n)] = {"trace": tr, "trace_se": se, "trace_products": n_tr, "trace_seconds": t3 - t2,
                                 "trace_repeats": repeats}
    t2 = time.perf_counter()
    tr = point.exact_trace()  # what ramble hessian stores for LeNet5 (no probes, so every repeat is the same)
    t3 = time.perf_counter()
    out["traces"]["exact"] = {"trace": tr, "trace_se": 0.0, "trace_products": 0, "trace_seconds": t3 - t2,
                              "trace_repeats": [tr] * trace_repeats}
    return out


def one_product_times(loss_plain: Any, loss_gemm: Any, at: Any, w: torch.Tensor) -> dict[str, float]:
    """ms per Hessian-vector product: plain conv model, patch-GEMM, frozen patterns; interleaved, best of 5."""
    ops = {"conv": hvp_operator(loss_plain, w), "patch_gemm": hvp_operator(loss_gemm, w),
           "frozen": hvp_operator(at(w), w)}
    v = torch.randn(w.numel(), 1, generator=torch.Generator().manual_seed(0)).to(w.device)
    best = {k: float("inf") for k in ops}
    for _ in range(5):
        for k, op in ops.items():
            sync(w.device)
            t0 = time.perf_counter()
            op.matmat(v)
            sync(w.device)
            best[k] = min(best[k], time.perf_counter() - t0)
    return {k: 1000 * v for k, v in best.items()}


def block_study(at: Any, w: torch.Tensor, ref_la: np.ndarray, blocks: tuple[int, ...] = (1, 8, 24)) -> dict[str, Any]:
    """Blocks of products and block eigensolvers at ``w`` (float32, frozen patterns), for issue 13.

    ms per vector of a (P, b) block: a loop of single products, one backward with
    ``is_grads_batched`` (``hvp_operator(batched=True)``) and ``torch.func.vmap`` of the
    forward-over-reverse ``jvp(grad(f))``; interleaved, best of 3.  Then SciPy's LOBPCG (block 24 = k + guard,
    tol 1e-2 and 1e-3, the frozen-pattern operator) against ``lanczos`` (tol 1e-3, guard 4, cold):
    products, seconds, max relative error of the top-20 against the float64 reference ``ref_la``.
    """
    from scipy.sparse.linalg import lobpcg
    from torch.func import grad, jvp, vmap

    f = at(w)
    loop, batched = hvp_operator(f, w), hvp_operator(f, w, batched=True)
    fwd_rev = vmap(lambda v: jvp(grad(f), (w,), (v,))[1], in_dims=1, out_dims=1)
    ways = {"loop": loop.matmat, "is_grads_batched": batched.matmat, "vmap_jvp_grad": fwd_rev}
    ms: dict[str, dict[str, float]] = {name: {} for name in ways}
    for b in blocks:
        v = torch.randn(w.numel(), b, generator=torch.Generator().manual_seed(b)).to(w.device)
        for _ in range(3):
            for name, mm in ways.items():
                t0 = time.perf_counter()
                mm(v)
                ms[name][str(b)] = min(ms[name].get(str(b), float("inf")), 1000 * (time.perf_counter() - t0) / b)
    print("# ms per vector in blocks " + json.dumps(ms), flush=True)
    solvers: dict[str, Any] = {}
    op = hvp_operator(f, w)
    t0 = time.perf_counter()
    spec = lanczos(op, K, "LA", 1e-3, guard=GUARD, seed=0, return_vectors=False)
    solvers["lanczos"] = {"products": spec.products, "seconds": time.perf_counter() - t0,
                          "rel_err": max_rel(spec.eigenvalues, ref_la)}
    for tol in (1e-2, 1e-3):
        op = hvp_operator(f, w)
        x0 = np.random.default_rng(0).standard_normal((w.numel(), K + GUARD))
        t0 = time.perf_counter()
        vals, _ = lobpcg(op.as_linear_operator(), x0, tol=tol, maxiter=100, largest=True)
        solvers[f"lobpcg_tol{tol:g}"] = {"products": op.n_products, "seconds": time.perf_counter() - t0,
                                         "rel_err": max_rel(np.sort(vals)[::-1][:K], ref_la)}
    print("# block eigensolvers " + json.dumps(solvers), flush=True)
    return {"ms_per_vector": ms, "solvers": solvers}


def rel_err(value: float, exact: float) -> float:
    return abs(value - exact) / abs(exact)


def trace_stats(repeats: list[float], exact: float) -> dict[str, float]:
    """RMS and worst relative error of repeated trace estimates against the exact trace."""
    e = np.array([rel_err(v, exact) for v in repeats])
    return {"rms_rel_err": float(np.sqrt(np.mean(e ** 2))), "max_rel_err": float(e.max()), "n": int(e.size)}


def lenet_part(args: argparse.Namespace) -> dict[str, Any]:
    data = load_mnist(args.data_dir, train_size=100, test_size=1)
    p32 = LeNetProblem(data.train_x, data.train_y, dtype=torch.float32, device=args.device)
    p64 = LeNetProblem(data.train_x, data.train_y, dtype=torch.float64, device=args.device)
    sols = []
    for seed in args.seeds:
        w, info = train_solution(p32, seed, lr=0.1, max_epochs=5000)
        sols.append(w)
        print(f"# solution seed {seed}: {info['epochs']} full-batch GD epochs, loss {info['loss']:.4f}, "
              f"train error {info['train_error']:.0%}", flush=True)
    wa, wb = sols
    loss_plain = classification_loss(p32.logits, p32.x, p32.y)
    loss_gemm = classification_loss(patch_gemm_logits(p32), p32.x, p32.y)
    at = frozen_pattern_loss(p32, p32.x, p32.y)
    loss64 = classification_loss(p64.logits, p64.x, p64.y)
    hvp_ms = one_product_times(loss_plain, loss_gemm, at, wa)
    print("# one HVP, float32, 100 images, best of 5: " + ", ".join(f"{k} {v:.1f} ms" for k, v in hvp_ms.items()),
          flush=True)

    points = []
    prev: Optional[torch.Tensor] = None
    for i in range(args.points):
        t = i * args.step
        w = wa + t * (wb - wa)
        ref = {wh: top_eigenpairs(loss64, w.double(), K, wh, 1e-10, guard=4, max_products=4000, return_vectors=False)
               for wh in ("LA", "LM")}
        exact_trace = gauss_newton_trace(p64.logits, p64.x, p64.y, w.double())
        row: dict[str, Any] = {"t": t, "ref_products": {wh: r.products for wh, r in ref.items()},
                               "ref_converged": all(bool(r.converged.all()) for r in ref.values()),
                               "ref_la_vs_lm": max_rel(ref["LA"].eigenvalues, ref["LM"].eigenvalues),
                               "exact_trace": exact_trace}
        # ramble runs before and after PyHessian (the same computation twice) and its times are
        # the mean of the two: on a shared machine the load drifts within a point
        rb = ramble_point(at, w, prev, seed=i, probes=args.probes, trace_repeats=args.trace_repeats)
        if not args.skip_pyhessian:
            ph = pyhessian_point(w, p32.x, p32.y, seed=i, trace_repeats=args.trace_repeats)
            row["pyhessian"] = {k: v for k, v in ph.items() if k != "eigenvalues"}
            row["pyhessian"]["eig_rel_err"] = max_rel(ph["eigenvalues"], ref["LM"].eigenvalues)
            row["pyhessian"]["trace_rel_err"] = rel_err(ph["trace"], exact_trace)
            row["pyhessian"]["trace_stats"] = trace_stats(ph["trace_repeats"], exact_trace)
            again = ramble_point(at, w, prev, seed=i, probes=args.probes, trace_repeats=1)
            assert again["eig_products"] == rb["eig_products"], "the repeat must be the same computation"
            rb["eig_seconds_runs"] = [rb["eig_seconds"], again["eig_seconds"]]
            rb["eig_seconds"] = float(np.mean(rb["eig_seconds_runs"]))
            for n, tr in rb["traces"].items():
                tr["trace_seconds_runs"] = [tr["trace_seconds"], again["traces"][n]["trace_seconds"]]
                tr["trace_seconds"] = float(np.mean(tr["trace_seconds_runs"]))
        prev = rb.pop("warm")
        row["ramble"] = {k: v for k, v in rb.items() if k != "eigenvalues"}
        row["ramble"]["eig_rel_err"] = max_rel(rb["eigenvalues"], ref["LA"].eigenvalues)
        for tr in row["ramble"]["traces"].values():
            tr["trace_rel_err"] = rel_err(tr["trace"], exact_trace)
            tr["trace_stats"] = trace_stats(tr["trace_repeats"], exact_trace)
        points.append(row)
        print("# " + json.dumps(row, default=float), flush=True)
        if args.block_study and i == 0:
            study = block_study(at, w, ref["LA"].eigenvalues)
    out = {"hvp_ms": hvp_ms, "points": points}
    if args.block_study:
        out["block_study"] = study
    return out


def trace_name(key: str) -> str:
    """A row name for ramble's trace estimator ``key`` (a probe count, or "exact")."""
    return "ramble, exact (frozen-pattern Gauss-Newton)" if key == "exact" else f"ramble, {key} deflated probes"


def summarise(res: dict[str, Any]) -> None:
    pts = res["points"]
    probes = list(pts[0]["ramble"]["traces"])

    def mean(get: Callable[[dict[str, Any]], float]) -> float:
        return float(np.mean([get(p) for p in pts]))

    def worst(get: Callable[[dict[str, Any]], float]) -> float:
        return float(np.max([get(p) for p in pts]))

    def rms(get: Callable[[dict[str, Any]], dict[str, float]]) -> float:
        """RMS relative error over all points and repeats."""
        return float(np.sqrt(np.mean([get(p)["rms_rel_err"] ** 2 for p in pts])))

    print()
    print(f"### LeNet5, MNIST-100, top-{K}, float32, {len(pts)} points (means per point)")
    print()
    print("| tool | eigen s | eigen HVPs | eigen max rel err |")
    print("|---|---|---|---|")
    tools = [t for t in ("pyhessian", "ramble") if t in pts[0]]
    for tool in tools:
        print(f"| {tool} | {mean(lambda p: p[tool]['eig_seconds']):.3f} | {mean(lambda p: p[tool]['eig_products']):.1f} | "
              f"{worst(lambda p: p[tool]['eig_rel_err']):.1e} |")
    print()
    print("### trace (after each tool's eigensolver, reusing its graph; ramble's also the Lanczos basis)")
    print()
    print("| estimator | trace s | trace HVPs | RMS rel err vs exact (all repeats) | worst rel err |")
    print("|---|---|---|---|---|")
    rows = []
    if "pyhessian" in tools:
        rows.append(("pyhessian trace()", lambda p: p["pyhessian"]))
    rows += [(trace_name(n), lambda p, n=n: p["ramble"]["traces"][n]) for n in probes]
    for name, get in rows:
        print(f"| {name} | {mean(lambda p: get(p)['trace_seconds']):.3f} | {mean(lambda p: get(p)['trace_products']):.1f} | "
              f"{rms(lambda p: get(p)['trace_stats']):.1e} | {worst(lambda p: get(p)['trace_stats']['max_rel_err']):.1e} |")
    if len(tools) == 2:
        ph_eig = mean(lambda p: p["pyhessian"]["eig_seconds"])
        ph_tr = mean(lambda p: p["pyhessian"]["trace_seconds"])
        ph_rms = rms(lambda p: p["pyhessian"]["trace_stats"])
        rb_eig = mean(lambda p: p["ramble"]["eig_seconds"])
        ratios: dict[str, Any] = {
            "eigen_wall": ph_eig / rb_eig,
            "eigen_products": mean(lambda p: p["pyhessian"]["eig_products"]) / mean(lambda p: p["ramble"]["eig_products"]),
            "trace_wall": {}, "trace_rms_err_ratio": {}, "point_wall": {},
        }
        for n in probes:
            rb_tr = mean(lambda p, n=n: p["ramble"]["traces"][n]["trace_seconds"])
            ratios["trace_wall"][n] = ph_tr / rb_tr
            ratios["trace_rms_err_ratio"][n] = rms(lambda p, n=n: p["ramble"]["traces"][n]["trace_stats"]) / ph_rms
            ratios["point_wall"][n] = (ph_eig + ph_tr) / (rb_eig + rb_tr)
        res["ratios"] = ratios
        print()
        print(f"ratios PyHessian / ramble: top-{K} wall {ratios['eigen_wall']:.1f}x, products {ratios['eigen_products']:.1f}x")
        for n in probes:
            print(f"  {trace_name(n)}: trace wall {ratios['trace_wall'][n]:.1f}x at {ratios['trace_rms_err_ratio'][n]:.2f}x "
                  f"PyHessian's RMS error; point (top-{K} + trace) {ratios['point_wall'][n]:.1f}x")


def tcm_part() -> dict[str, float]:
    n, k, m = 300, 3, 620
    prob = TCMProblem(random_patterns(n, m, 0), k)
    w = torch.from_numpy(gaussian_init(n, 1.0 / np.sqrt(n // k), 0))
    t_ag, h = best_of(lambda: prob.hessian(w))
    t_dense, _ = best_of(lambda: dense_hessian(prob.loss, w))
    t_eig, eigs = best_of(lambda: full_spectrum(h))
    print()
    print(f"### TCM exact Hessian, N={n}, K={k}, M={m} (float64, best of 3): TCMProblem.hessian {t_ag:.3f} s, "
          f"dense_hessian {t_dense:.3f} s, full_spectrum {t_eig:.4f} s; non-zero eigenvalues {count_nonzero(eigs)}")
    return {"tcm_hessian_s": t_ag, "dense_hessian_s": t_dense, "full_spectrum_s": t_eig}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", default=None, help="MNIST folder (default: ramble's search order)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: fair on a shared CPU)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (both tools run there)")
    ap.add_argument("--seeds", type=int, nargs=2, default=[2, 3], help="training seeds of W_a and W_b")
    ap.add_argument("--points", type=int, default=4, help="points along the segment, the first is W_a")
    ap.add_argument("--step", type=float, default=0.05, help="spacing of the points as a fraction of |W_b - W_a|")
    ap.add_argument("--probes", type=int, nargs="+", default=[2, 10],
                    help="ramble's deflated Hutchinson probe counts, each timed (10: ramble hessian's default)")
    ap.add_argument("--trace-repeats", type=int, default=5,
                    help="runs of each trace estimator (fresh probes) for its error statistics; the first is timed")
    ap.add_argument("--out", default="benchmarks/results/bench_hessian.json", help="JSON record ('' for none)")
    ap.add_argument("--skip-pyhessian", action="store_true")
    ap.add_argument("--skip-tcm", action="store_true")
    ap.add_argument("--block-study", action="store_true",
                    help="at the first point: blocks of products and LOBPCG against Lanczos (see block_study)")
    args = ap.parse_args()
    if args.points < 1:
        ap.error("--points must be >= 1")
    torch.set_num_threads(args.threads)
    record: dict[str, Any] = {
        "command": " ".join([Path(sys.executable).name] + sys.argv),
        "machine": f"{cpu_model()}, {len(os.sched_getaffinity(0))} CPUs usable, {platform.machine()}",
        "torch": torch.__version__, "python": platform.python_version(), "threads": torch.get_num_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS", "unset"),
        "load_before": load_average(), "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "device": args.device if args.device == "cpu" else torch.cuda.get_device_name(torch.device(args.device)),
    }
    if not args.skip_pyhessian:
        from importlib.metadata import version

        record["pyhessian"] = version("pyhessian")
    print("# " + json.dumps(record))
    record.update(lenet_part(args))
    summarise(record)
    if not args.skip_tcm:
        record["tcm"] = tcm_part()
    record["load_after"] = load_average()
    print(f"# load average before {record['load_before']}, after {record['load_after']}")
    if args.out:
        Path(args.out).write_text(json.dumps(record, indent=1, default=float) + "\n")
        print(f"# wrote {args.out}")


if __name__ == "__main__":
    main()
