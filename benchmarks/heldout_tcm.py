"""TCM paths on data seeds never used for a choice: the held-out report of docs/path-algorithm.md.

    python benchmarks/heldout_tcm.py --seeds 1001-1030 --variant repair --dir /tmp/heldout
    python benchmarks/heldout_tcm.py --seeds 1001-1030 --variant paper  --dir /tmp/heldout
    python benchmarks/heldout_tcm.py --seeds 1-40 --variant repair --dir /tmp/dev --json results/dev_tcm_repair.json

Each seed is one ``ramble tcm run`` at the paper's size (N=300, K=3, M=620,
3 solutions, all pairs, Julia backend, the variant's default settings), run
in this process (Julia starts once) with :func:`ramble.tcm_experiment.run_tcm_experiment`.
From the files it writes: pairs connected, pairs whose every segment was
certified (``segments_certified`` equals the number of stored segments: TCM
files store every vertex), pairs that needed waypoints / the norm escape /
routing through the third solution, iterations, and the path time (the
stored ``wall_time`` of the path: Julia's ``find_path`` time summed over its
legs; the training of waypoint solutions is not included).  Single-threaded
(OMP/BLAS 1).  Prints a markdown table and writes JSON (``--json``).
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

import numpy as np  # noqa: E402
import torch  # noqa: E402

from ramble import io  # noqa: E402
from ramble.errors import RambleError  # noqa: E402
from ramble.path import PathConfig  # noqa: E402
from ramble.tcm_experiment import TCMExperimentConfig, run_tcm_experiment  # noqa: E402

torch.set_num_threads(1)


def seed_range(text: str) -> list[int]:
    """'1001-1030' or '1,5,7' -> list of ints."""
    if "-" in text:
        a, b = text.split("-")
        return list(range(int(a), int(b) + 1))
    return [int(s) for s in text.split(",")]


def path_rows(path: Path, seed: int) -> list[dict]:
    """One dict per stored path of an experiment file."""
    exp = io.load(path, weights=False)
    rows = []
    for name, p in sorted(exp.paths.items()):
        a = p.attrs
        stored_segments = len(p.iteration) - 1
        rows.append({
            "seed": seed, "pair": name, "status": p.status, "reason": p.reason,
            "certified": p.status == "complete" and int(a.get("segments_certified", -1)) == stored_segments,
            "segments": stored_segments, "segments_certified": int(a.get("segments_certified", -1)),
            "cert_min_margin": float(a.get("cert_min_margin", float("nan"))),
            "waypoints": int(a.get("waypoints", 0)), "escape_scale": float(a.get("escape_scale", 1.0)),
            "via": [int(v) for v in np.atleast_1d(a.get("via", []))],
            "iterations": int(a["iterations"]), "seconds": float(a["wall_time"]),
            "cert_seconds": float(a.get("cert_seconds", float("nan"))),
        })
    return rows


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
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", default="1001-1030")
    ap.add_argument("--variant", choices=("repair", "paper"), default="repair")
    ap.add_argument("--dir", default="/tmp/heldout_tcm")
    ap.add_argument("--json", default=None)
    ap.add_argument("--from-files", action="store_true",
                    help="run nothing: summarise the files a run already wrote in --dir (seeds without a finished file are skipped)")
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
        else:
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
