"""How the TCM path's cost grows with N at fixed alpha = M / N: iterations, waypoints, cost per iteration.

    PYTHONPATH=python .venv/bin/python benchmarks/bench_scaling.py [--sizes 150 300 600 1200 2400] \
        [--alpha 2.07] [--seeds 11 12 13] [--backends julia python] [--repeats 1] [--timeout 900] \
        [--out benchmarks/results/bench_scaling.json] [--figure docs/figures/scaling.png]

Every (size, backend, seed) is one ``ramble tcm run -N N -M round(alpha N)
-K 3 --backend B --seed S --solutions 2`` in a fresh process with one
thread (``ramble.threads.worker_env(1)``).  The runs of a round go in an
order shuffled by a fixed seed, and the rounds repeat that, so the load of a
shared machine falls on every size alike instead of on the last ones.  A run
past ``--timeout`` seconds is recorded as such and the same size is not
tried again for that backend.

Per path the record keeps the status, iterations, waypoints and the path's
own wall time (``wall_time``; it includes training the waypoints), and
every other timing attribute the file has (e.g. the certificate's).  Cost
per iteration = path wall time / iterations.  The summary fits log-log
slopes of the medians against N (N x M grows as N^2 at fixed alpha) and the
figure shows iterations, cost per iteration and whole-run time against N.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from ramble.storage.io import load
from ramble.threads import worker_env


def load_average() -> str:
    try:
        return "%.2f %.2f %.2f" % os.getloadavg()
    except OSError:
        return "n/a"


def path_rows(file: Path) -> list[dict[str, Any]]:
    """Per path of a finished file: status, iterations, waypoints, wall time and the other timing attributes."""
    e = load(file, weights=False)
    rows = []
    for p in e.iter_paths():
        a = dict(p.attrs)
        timing = {k: float(v) for k, v in a.items()
                  if isinstance(v, (int, float, np.floating, np.integer)) and ("seconds" in k or "time" in k)}
        rows.append({"pair": p.name, "status": p.status, "iterations": int(a.get("iterations", -1)),
                     "waypoints": int(a.get("waypoints", 0)), **timing})
    return rows


def one_run(n: int, m: int, backend: str, seed: int, tmp: Path, timeout: float) -> dict[str, Any]:
    out = tmp / f"n{n}-{backend}-{seed}.h5"
    cmd = [sys.executable, "-m", "ramble.cli", "--quiet", "tcm", "run", "-N", str(n), "-M", str(m), "-K", "3",
           "--backend", backend, "--seed", str(seed), "--solutions", "2", "--out", str(out), "--force"]
    row: dict[str, Any] = {"N": n, "M": m, "backend": backend, "seed": seed, "load_before": load_average()}
    t0 = time.perf_counter()
    try:
        done = subprocess.run(cmd, env=worker_env(1), capture_output=True, text=True, timeout=timeout)
        row["returncode"] = done.returncode
        if done.returncode != 0:
            row["error"] = (done.stderr.strip().splitlines() or ["?"])[-1]
    except subprocess.TimeoutExpired:
        row["returncode"] = None
        row["error"] = f"over {timeout:.0f} s"
    row["run_s"] = time.perf_counter() - t0
    if row.get("returncode") == 0:
        row["paths"] = path_rows(out)
    out.unlink(missing_ok=True)
    return row


def slope(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of log y against log x (nan with fewer than two points)."""
    if len(xs) < 2:
        return float("nan")
    return float(np.polyfit(np.log(xs), np.log(ys), 1)[0])


def summarise(runs: list[dict[str, Any]], backends: list[str], sizes: list[int]) -> dict[str, Any]:
    table: dict[str, Any] = {}
    print("| backend | N | M | runs ok | iterations (median per path) | waypoints (median) | path s (median) "
          "| per iteration ms (median) | whole run s (median) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for b in backends:
        xs, its, costs, whole = [], [], [], []
        for n in sizes:
            ok = [r for r in runs if r["backend"] == b and r["N"] == n and r.get("returncode") == 0]
            paths = [p for r in ok for p in r["paths"] if p["status"] == "complete" and p["iterations"] > 0]
            if not paths:
                continue
            it = statistics.median(p["iterations"] for p in paths)
            wp = statistics.median(p["waypoints"] for p in paths)
            ps = statistics.median(p.get("wall_time", float("nan")) for p in paths)
            per = statistics.median(1000 * p.get("wall_time", float("nan")) / p["iterations"] for p in paths)
            run_s = statistics.median(r["run_s"] for r in ok)
            m = ok[0]["M"]
            print(f"| {b} | {n} | {m} | {len(ok)} | {it:.0f} | {wp:.0f} | {ps:.2f} | {per:.3f} | {run_s:.1f} |")
            xs.append(n)
            its.append(it)
            costs.append(per)
            whole.append(run_s)
        table[b] = {"N": xs, "iterations": its, "ms_per_iteration": costs, "run_s": whole,
                    "slope_iterations": slope(xs, its), "slope_ms_per_iteration": slope(xs, costs),
                    "slope_run_s": slope(xs, whole)}
    print()
    for b, t in table.items():
        print(f"{b}: log-log slopes vs N: iterations {t['slope_iterations']:.2f} (goal <= 1), "
              f"cost per iteration {t['slope_ms_per_iteration']:.2f} (goal <= 2 = N x M), whole run {t['slope_run_s']:.2f}")
    return table


def figure(table: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    for b, t in table.items():
        for ax, key, label in zip(axes, ("iterations", "ms_per_iteration", "run_s"),
                                  ("iterations per path", "ms per iteration", "whole run, s")):
            if t["N"]:
                ax.loglog(t["N"], t[key], "o-", label=b)
                ax.set_xlabel("N (M = alpha N)")
                ax.set_ylabel(label)
    for ax, power in zip(axes, (1, 2, 2)):
        xs = np.array([150, 2400])
        lines = [ln for ln in ax.get_lines()]
        if lines:
            y0 = float(lines[0].get_ydata()[0])
            ax.loglog(xs, y0 * (xs / xs[0]) ** power, "k:", label=f"~ N^{power}")
        ax.legend(fontsize=8)
        sizes = sorted({n for t in table.values() for n in t["N"]})
        ax.set_xticks(sizes, [str(n) for n in sizes])
        ax.minorticks_off()  # log-scale minor labels overlap the sizes
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    print(f"# wrote {path}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[150, 300, 600, 1200, 2400])
    ap.add_argument("--alpha", type=float, default=2.07)
    ap.add_argument("--seeds", type=int, nargs="+", default=[11, 12, 13])
    ap.add_argument("--backends", nargs="+", default=["julia", "python"], choices=["julia", "python"])
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds per run; a size past it is not tried again")
    ap.add_argument("--out", default="benchmarks/results/bench_scaling.json")
    ap.add_argument("--figure", default="docs/figures/scaling.png", help="log-log figure ('' for none)")
    args = ap.parse_args()
    if any(n % 3 for n in args.sizes):
        ap.error("every size must be divisible by K = 3")
    record: dict[str, Any] = {
        "command": " ".join([Path(sys.executable).name] + sys.argv),
        "machine": f"{platform.machine()}, {len(os.sched_getaffinity(0))} CPUs usable, {platform.platform()}",
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "load_before": load_average(), "runs": [],
    }
    too_slow: set[tuple[str, int]] = set()
    order = [(n, b, s) for n in args.sizes for b in args.backends for s in args.seeds]
    with tempfile.TemporaryDirectory(prefix="ramble-scaling-") as tmp:
        for r in range(args.repeats):
            random.Random(r).shuffle(order)
            for n, b, s in order:
                if any(bb == b and n >= nn for bb, nn in too_slow):
                    continue
                row = one_run(n, round(args.alpha * n), b, s, Path(tmp), args.timeout)
                row["round"] = r
                record["runs"].append(row)
                print(json.dumps({k: v for k, v in row.items() if k != "paths"}), flush=True)
                if row.get("returncode") is None:
                    too_slow.add((b, n))
    record["load_after"] = load_average()
    print()
    record["summary"] = summarise(record["runs"], args.backends, sorted(args.sizes))
    print(f"# load average before {record['load_before']}, after {record['load_after']}")
    if args.out:
        Path(args.out).write_text(json.dumps(record, indent=1, default=float) + "\n")
        print(f"# wrote {args.out}")
    if args.figure:
        figure(record["summary"], Path(args.figure))


def figure_from(record_file: str, path: str) -> None:
    """Draw the figure again from a saved record (``python -c 'import bench_scaling as b; b.figure_from(JSON, PNG)'``)."""
    figure(json.loads(Path(record_file).read_text())["summary"], Path(path))


if __name__ == "__main__":
    main()
