"""Sweep scaling: the same fixed sweep on 1 and 2 processes, local pool and Dask LocalCluster.

    python benchmarks/bench_sweep.py [--seeds 101-102] [--gammas 0.01,0.03] [--n-epochs 1,2]
        [--variant repair] [--runs local:1,local:2,dask:1,dask:2] [--repeats 1]
        [--dir /tmp/bench_sweep] [--json benchmarks/results/bench_sweep.json]

The default sweep is TCM at the paper's size (N=300, K=3, M=620), Julia
backend, 2 data sets x 2 gammas x 2 N_epochs of the repair variant, 3
solutions per data set joined as a chain: 8 experiments, 16 paths.  Each
entry of ``--runs`` (engine:workers) runs the whole sweep into a fresh folder
and is timed by the wall clock from the call to :func:`ramble.experiments.sweep.run_sweep`
to its return: process or cluster start-up, each worker's Julia start
(about 2-3 s per process), training, paths, HDF5 writing.  ``--repeats``
repeats the list in the same interleaved order (so drift in the machine's
load hits every configuration alike); the table gives the best and the
median.  The load average (``/proc/loadavg``) is recorded around every run:
on a shared machine the other jobs' load is part of the result.  The files
of every run are checked identical to the first run's (the engines and
worker counts must not change the results).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np


def loadavg() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def cpu_ticks() -> tuple[int, int]:
    """(idle, total) jiffies of all CPUs since boot, from /proc/stat."""
    f = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return f[3] + f[4], sum(f[:8])


def children_cpu() -> float:
    """CPU seconds (user + system) of this process's finished descendants: the sweep's workers once they exit."""
    import resource

    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def machine() -> dict:
    import torch

    cpu = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    try:
        julia = subprocess.run(["julia", "--version"], capture_output=True, text=True, timeout=60).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        julia = "?"
    try:
        import distributed

        dask_version = distributed.__version__
    except ImportError:
        dask_version = "not installed"
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "cores available": len(os.sched_getaffinity(0)),
        "os": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "julia": julia,
        "dask.distributed": dask_version,
        "uptime": subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip(),
    }


def file_digest(folder: Path) -> dict[str, list]:
    """Per file: the checksums of its paths and its solutions' bytes (to compare runs)."""
    out = {}
    for p in sorted(folder.glob("*.h5")):
        with h5py.File(p, "r") as f:
            out[p.name] = [str(g.attrs["sha256"]) for _, g in sorted(f["paths"].items())] + [f["solutions"][k][()].tobytes().hex()[:64] for k in sorted(f["solutions"])]
    return out


def main() -> None:
    from ramble.experiments.sweep import SweepConfig, load_sweep, parse_float_list, parse_int_list, run_sweep
    from ramble.progress import setup_logging

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", default="101-102")
    ap.add_argument("--gammas", default="0.01,0.03")
    ap.add_argument("--n-epochs", default="1,2")
    ap.add_argument("--variant", default="repair")
    ap.add_argument("--solutions", type=int, default=3)
    ap.add_argument("--pairs", default="chain")
    ap.add_argument("--backend", default="julia")
    ap.add_argument("-N", type=int, default=300)
    ap.add_argument("-K", type=int, default=3)
    ap.add_argument("-M", type=int, default=620)
    ap.add_argument("--runs", default="local:1,local:2,dask:1,dask:2", help="engine:workers, comma-separated")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--dir", default="/tmp/bench_sweep")
    ap.add_argument("--json", default="benchmarks/results/bench_sweep.json")
    a = ap.parse_args()
    setup_logging(quiet=True)

    cfg = SweepConfig(
        seeds=parse_int_list(a.seeds, "--seeds"), gammas=parse_float_list(a.gammas, "--gammas"), n_epochs=parse_int_list(a.n_epochs, "--n-epochs"),
        variants=tuple(a.variant.split(",")), n_inputs=a.N, n_hidden=a.K, n_patterns=a.M, n_solutions=a.solutions, pairs=a.pairs, backend=a.backend,
    )
    runs = [(r.split(":")[0], int(r.split(":")[1])) for r in a.runs.split(",")]
    root = Path(a.dir)
    shutil.rmtree(root, ignore_errors=True)
    results = []
    reference = None
    print(f"sweep: {len(cfg.tasks())} experiments, {cfg.n_paths} paths; runs {a.runs} x {a.repeats}", flush=True)
    for rep in range(a.repeats):
        for engine, workers in runs:
            folder = root / f"{engine}-{workers}-{rep}"
            before, ticks0, cpu0 = loadavg(), cpu_ticks(), children_cpu()
            t = time.perf_counter()
            run = run_sweep(cfg, folder, engine=engine, workers=workers, show_progress=False)
            wall = time.perf_counter() - t
            after, ticks1 = loadavg(), cpu_ticks()
            time.sleep(1.0)  # let the last workers exit and be reaped, so their CPU time is counted
            cpu = children_cpu() - cpu0
            idle = (ticks1[0] - ticks0[0]) / max(1, ticks1[1] - ticks0[1])
            sw = load_sweep(folder)
            digest = file_digest(folder)
            if reference is None:
                reference = digest
            task_time = sum(x.wall_time or 0.0 for x in sw.tasks)
            task_cpu = sum(float(x.get("cpu_time") or 0.0) for x in sw.index["tasks"])
            # each worker's first task includes starting its Julia (and compiling)
            firsts: dict[str, float] = {}
            for x in sorted(sw.index["tasks"], key=lambda x: x.get("started", "")):
                firsts.setdefault(x.get("worker", ""), float(x.get("wall_time") or 0.0))
            row = {
                "workers_cpu_s": cpu, "sum_task_cpu_s": task_cpu, "cores_used": cpu / wall, "machine_idle_fraction": idle,
                "first_task_per_worker_s": sorted(firsts.values()), "median_task_s": statistics.median(x.wall_time or 0.0 for x in sw.tasks),
                "engine": engine, "workers": workers, "repeat": rep, "wall_s": wall, "sum_task_s": task_time,
                "paths": len(sw.paths), "paths_complete": sum(p.complete for p in sw.paths), "failed_tasks": len(run.failed),
                "identical_to_first_run": digest == reference, "loadavg_before": before, "loadavg_after": after,
                "worker_processes": len({x.worker for x in sw.tasks}),
            }
            results.append(row)
            print(f"{engine}:{workers} repeat {rep}: {wall:.1f} s wall, {task_time:.1f} s in tasks (median {row['median_task_s']:.2f} s, first per worker {[round(v, 1) for v in row['first_task_per_worker_s']]}), "
                  f"{task_cpu:.1f} CPU s in tasks, workers {cpu:.1f} CPU s = {cpu / wall:.2f} cores, machine idle {100 * idle:.0f} %, {row['paths_complete']}/{row['paths']} paths, identical {row['identical_to_first_run']}, load {before} -> {after}", flush=True)

    summary = {}
    for engine, workers in runs:
        ws = [r["wall_s"] for r in results if (r["engine"], r["workers"]) == (engine, workers)]
        summary[f"{engine}:{workers}"] = {"best_s": min(ws), "median_s": statistics.median(ws)}
    speedups = {}
    for engine in dict.fromkeys(e for e, _ in runs):
        one, two = summary.get(f"{engine}:1"), summary.get(f"{engine}:2")
        if one and two:
            speedups[engine] = {"best": one["best_s"] / two["best_s"], "median": one["median_s"] / two["median_s"]}
    print("\n| engine | workers | best s | median s |\n|---|---|---|---|")
    for k, v in summary.items():
        e, w = k.split(":")
        print(f"| {e} | {w} | {v['best_s']:.1f} | {v['median_s']:.1f} |")
    for e, s in speedups.items():
        print(f"speed-up 1 -> 2 {e}: {s['best']:.2f}x (best), {s['median']:.2f}x (median)")
    doc = {
        "command": " ".join(["benchmarks/bench_sweep.py", *sys.argv[1:]]),
        "machine": machine(),
        "sweep": {"tasks": len(cfg.tasks()), "paths": cfg.n_paths, "fixed": json.loads(json.dumps(cfg.fixed())), "axes": cfg.axes()},
        "runs": results, "summary": summary, "speedup_1_to_2": speedups,
    }
    Path(a.json).parent.mkdir(parents=True, exist_ok=True)
    Path(a.json).write_text(json.dumps(doc, indent=1))
    print(f"wrote {a.json}")


if __name__ == "__main__":  # spawn-started workers import this file: nothing may run at import
    main()
