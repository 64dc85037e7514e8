"""TCM paths on data seeds never used for a choice: the held-out report of docs/path-algorithm.md.

    python benchmarks/heldout_tcm.py --seeds 1001-1030 --variant repair --dir /tmp/heldout
    python benchmarks/heldout_tcm.py --seeds 1001-1030 --variant paper  --dir /tmp/heldout
    python benchmarks/heldout_tcm.py --seeds 1-40 --variant repair --dir /tmp/dev --json results/dev_tcm_repair.json

Each seed is one ``ramble tcm run`` at the paper's size (N=300, K=3, M=620,
3 solutions, all pairs, Julia backend, the variant's default settings), run
in this process (Julia starts once) with :func:`ramble.experiments.tcm_experiment.run_tcm_experiment`.
From the files it writes: pairs connected, pairs whose every segment was
certified (``segments_certified`` equals the number of stored segments: TCM
files store every vertex), pairs that needed waypoints / the norm escape /
routing through the third solution, iterations, and the path time (the
stored ``wall_time`` of the path: Julia's ``find_path`` time summed over its
legs; the training of waypoint solutions is not included), and how far
each path's inner vertices stay off the wall (their smallest margins).
Single-threaded (OMP/BLAS 1).  Prints a markdown table and writes JSON
(``--json``).  ``--resume`` finishes an interrupted run: seeds whose file is
finished are read back, the others run.
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from dataclasses import replace  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Optional  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from ramble.core.path import PathConfig, PathResult  # noqa: E402
from ramble.errors import RambleError  # noqa: E402
from ramble.experiments.tcm_experiment import TCMExperimentConfig, run_tcm_experiment  # noqa: E402
from ramble.models.patterns import Patterns  # noqa: E402
from ramble.models.tcm import TCMProblem  # noqa: E402
from ramble.storage import io  # noqa: E402

torch.set_num_threads(1)


def seed_range(text: str) -> list[int]:
    """'1001-1030' or '1,5,7' -> list of ints."""
    if "-" in text:
        a, b = text.split("-")
        return list(range(int(a), int(b) + 1))
    return [int(s) for s in text.split(",")]


def vertex_margins(problem: TCMProblem, weights: np.ndarray, chunk: int = 256) -> np.ndarray:
    """Each vertex's smallest margin (sigma * S, model units), (T,) for (T, N) weights: how far it is off the wall."""
    out = []
    with torch.no_grad():
        for i in range(0, len(weights), chunk):
            w = torch.from_numpy(np.ascontiguousarray(weights[i:i + chunk], dtype=np.float64))
            h = torch.einsum("mkn,tkn->tmk", problem.xi, w.view(len(w), problem.n_hidden, problem.n_per_unit))
            out.append((problem.sigma * torch.nn.functional.hardtanh(h).sum(dim=2)).min(dim=1).values.numpy())
    return np.concatenate(out) if out else np.zeros(0)


def result_row(seed: int, pair: str, r: PathResult, problem: Optional[TCMProblem] = None) -> dict:
    """The table's figures for one path (a file's stored path read back, or a run's result).

    With ``problem`` and the path's weights (every vertex: TCM record_every 1),
    also the margins at its inner vertices (endpoints excluded: they are the
    solutions): the smallest, the median of each vertex's smallest, and the
    fraction of vertices whose smallest margin is below 0.01.
    """
    segments = len(r.iteration) - 1
    row = {
        "seed": seed, "pair": pair, "status": r.status, "reason": r.reason,
        "certified": r.status == "complete" and int(r.segments_certified) == segments,
        "segments": segments, "segments_certified": int(r.segments_certified),
        "cert_min_margin": float(r.cert_min_margin),
        "waypoints": len(r.waypoints), "escape_scale": float(r.escape_scale),
        "via": [int(v) for v in r.via],
        "iterations": int(r.iterations), "seconds": float(r.wall_time),
        "cert_seconds": float(r.cert_seconds),
    }
    if problem is not None and r.weights is not None and len(r.weights) > 2:
        m = vertex_margins(problem, r.weights[1:-1])
        row.update(vertex_min_margin=float(m.min()), vertex_median_margin=float(np.median(m)),
                   vertex_frac_below_001=float((m < 0.01).mean()))
    return row


def path_rows(path: Path, seed: int, margins: bool = True) -> list[dict]:
    """One dict per stored path of an experiment file (vertex margins from its weights when ``margins``)."""
    exp = io.load(path, weights=margins)
    problem = TCMProblem(Patterns(exp.data["train_inputs"], exp.data["train_labels"], seed), int(exp.model_info["K"])) if margins else None
    return [result_row(seed, name, io.path_result(p), problem) for name, p in sorted(exp.paths.items())]


def finished(path: Path) -> bool:
    """True if ``path`` is an experiment file whose run finished (not missing, not being written)."""
    try:
        return path.exists() and io.load(path, weights=False).attrs.get("status") == "complete"
    except RambleError:
        return False


def summarise(rows: list[dict]) -> dict:
    """The held-out table's figures."""
    n = len(rows)
    last = [r for r in rows if r["escape_scale"] != 1.0 or r["via"]]
    return {
        "pairs": n,
        "connected": sum(r["status"] == "complete" for r in rows),
        "certified": sum(r["certified"] for r in rows),
        "waypoints": sum(r["waypoints"] > 0 for r in rows),
        "escape": sum(r["escape_scale"] != 1.0 for r in rows),
        "routed": sum(bool(r["via"]) for r in rows),
        "last_resorts": len(last),
        "iterations_median": statistics.median(r["iterations"] for r in rows) if rows else 0,
        "iterations_max": max((r["iterations"] for r in rows), default=0),
        "seconds_median": statistics.median(r["seconds"] for r in rows) if rows else 0.0,
        "seconds_max": max((r["seconds"] for r in rows), default=0.0),
        "cert_fraction_of_time": sum(r["cert_seconds"] for r in rows) / max(1e-12, sum(r["seconds"] for r in rows)),
        "smallest_cert_margin": min((r["cert_min_margin"] for r in rows if r["status"] == "complete"), default=float("nan")),
        **margin_summary([r for r in rows if r["status"] == "complete" and "vertex_min_margin" in r]),
    }


def margin_summary(rows: list[dict]) -> dict:
    """Off the wall, over complete paths: median per path of its smallest inner-vertex margin and of its median one."""
    if not rows:
        return {}
    return {
        "vertex_min_margin_median": statistics.median(r["vertex_min_margin"] for r in rows),
        "vertex_median_margin_median": statistics.median(r["vertex_median_margin"] for r in rows),
        "vertex_frac_below_001_mean": statistics.fmean(r["vertex_frac_below_001"] for r in rows),
        "cert_min_margin_median": statistics.median(r["cert_min_margin"] for r in rows),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", default="1001-1030")
    ap.add_argument("--variant", choices=("repair", "paper"), default="repair")
    ap.add_argument("--dir", default="/tmp/heldout_tcm")
    ap.add_argument("--json", default=None)
    ap.add_argument("--from-files", action="store_true",
                    help="run nothing: summarise the files a run already wrote in --dir (seeds without a finished file are skipped)")
    ap.add_argument("--resume", action="store_true",
                    help="read the seeds whose file in --dir is finished, run only the others (runs are deterministic)")
    args = ap.parse_args()
    seeds = seed_range(args.seeds)
    folder = Path(args.dir)
    folder.mkdir(parents=True, exist_ok=True)
    path_cfg = PathConfig() if args.variant == "repair" else PathConfig.paper()
    rows: list[dict] = []
    started = time.perf_counter()
    load1 = os.getloadavg()[0]
    done: list[int] = []
    for seed in seeds:
        cfg = replace(TCMExperimentConfig(), seed=seed, path=path_cfg)
        out = folder / f"tcm-{args.variant}-{seed}.h5"
        if args.from_files:
            if not finished(out):
                continue
        elif not (args.resume and finished(out)):
            run_tcm_experiment(cfg, out, force=True, show_progress=False)
        done.append(seed)
        rows += path_rows(out, seed)
        print(f"seed {seed}: " + ", ".join(f"{r['pair']} {r['status']} {r['iterations']} it {r['seconds']:.3f} s"
                                           + (f" wp{r['waypoints']}" if r["waypoints"] else "")
                                           + (f" esc{r['escape_scale']:g}" if r["escape_scale"] != 1.0 else "")
                                           + (f" via{r['via']}" if r["via"] else "") for r in rows[-3:]), flush=True)
    s = summarise(rows)
    print(f"\nseeds summarised: {len(done)} of {len(seeds)}" + (f" (missing: {sorted(set(seeds) - set(done))})" if len(done) < len(seeds) else ""))
    print("\n| variant | pairs | connected | certified | waypoints | norm escape | routed | median it | median s | max s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    print(f"| {args.variant} | {s['pairs']} | {s['connected']} | {s['certified']} | {s['waypoints']} | {s['escape']} | {s['routed']} "
          f"| {s['iterations_median']:g} | {s['seconds_median']:.3f} | {s['seconds_max']:.2f} |")
    report = {
        "command": f"python benchmarks/heldout_tcm.py --seeds {args.seeds} --variant {args.variant} --dir {args.dir}",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "load_1min_start": load1, "load_1min_end": os.getloadavg()[0]},
        "seeds_done": done, "total_seconds": time.perf_counter() - started, "summary": s, "paths": rows,
    }
    out_json = Path(args.json or Path(__file__).parent / "results" / f"heldout_tcm_{args.variant}.json")
    out_json.write_text(json.dumps(report, indent=1))
    print(f"wrote {out_json}")


if __name__ == "__main__":
    main()
