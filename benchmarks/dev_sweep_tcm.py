"""Choose the TCM path default on development seeds: candidate PathConfigs on the same trained solutions.

    python benchmarks/dev_sweep_tcm.py --seeds 1-40 --candidates old,mt0.2,g0.03 --dir /tmp/dev_sweep \\
        --json benchmarks/results/dev_sweep_tcm.json

Issue 11 asks for settings chosen on development seeds 1-100 only and reported
once on held-out seeds (``heldout_tcm.py``).  For each seed, at the paper's
size (N=300, K=3, M=620, Julia backend), the 3 solutions are trained once (as
``ramble tcm run`` trains them: ``solve_with_restarts`` with the default
``TrainConfig``; cached in ``--dir``), then every candidate connects every
pair the way ``ramble tcm run`` does (``connect``: waypoints, then the norm
escape; then routing through the third solution).  Per candidate: pairs
connected, every segment certified, waypoints, norm escape, routed,
iterations, path seconds (Julia ``find_path`` time summed over legs) and the
margins at the inner vertices (``heldout_tcm.result_row``).  Seeds are the
outer loop, so an interrupted sweep compares the candidates on the same
seeds; the JSON is rewritten after each seed.  Single-threaded.
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")  # before numpy and torch load (heldout_tcm also sets torch to 1 thread)

import argparse  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from heldout_tcm import result_row, seed_range, summarise  # noqa: E402

from ramble.core.path import PathConfig, PathResult  # noqa: E402
from ramble.experiments.driver import pair_list, reroute  # noqa: E402
from ramble.experiments.tcm_experiment import TCMExperimentConfig  # noqa: E402
from ramble.models.patterns import random_patterns  # noqa: E402
from ramble.models.tcm import TCMProblem, gaussian_init  # noqa: E402
from ramble.models.tcm_backends import TCMBackend, connect, make_backend  # noqa: E402
from ramble.models.tcm_training import TrainConfig, solve_with_restarts  # noqa: E402

# The settings of the default before this sweep (issue 11's held-out run); every candidate changes only what it names.
OLD = dict(gamma=0.01, n_epochs=1, lr=0.01, margin_target=0.1, patience=500, max_waypoints=10, elastic_halvings=0)
CANDIDATES: dict[str, dict] = {
    "old": {},
    "mt0.2": dict(margin_target=0.2),
    "mt0.3": dict(margin_target=0.3),
    "mt0.5": dict(margin_target=0.5),
    "g0.02": dict(gamma=0.02),
    "g0.03": dict(gamma=0.03),
    "g0.03-mt0.3": dict(gamma=0.03, margin_target=0.3),
    "g0.003": dict(gamma=0.003),
    "lr0.1": dict(lr=0.1),
    "lr0": dict(lr=0.0),
    "ne5": dict(n_epochs=5),
    "half6": dict(elastic_halvings=6),
    "pat1000": dict(patience=1000),
    "pat2000": dict(patience=2000),
    "wp20": dict(max_waypoints=20),
}


def candidate_config(name: str) -> PathConfig:
    """The candidate's PathConfig: the old default with the candidate's changes (``a+b`` combines named candidates)."""
    kw = dict(OLD)
    for part in name.split("+"):
        kw.update(CANDIDATES[part])
    return PathConfig(**kw)  # type: ignore[arg-type]


def solutions_of(seed: int, backend: TCMBackend, exp: TCMExperimentConfig, cache: Path) -> list[np.ndarray]:
    """The seed's solutions as ``run_tcm_experiment`` trains them (read from ``cache`` when there)."""
    f = cache / f"solutions-{seed}.npy"
    if f.exists():
        return list(np.load(f))
    scale = exp.train.init_scale / np.sqrt(exp.n_inputs // exp.n_hidden)
    sols = [solve_with_restarts(lambda w0: backend.gd_solve(w0, exp.train), lambda s: gaussian_init(exp.n_inputs, scale, s),
                                seed, i, exp.train).w for i in range(exp.n_solutions)]
    np.save(f, np.stack(sols))
    return sols


def connect_all(backend: TCMBackend, sols: list[np.ndarray], cfg: PathConfig, train: TrainConfig) -> dict[tuple[int, int], PathResult]:
    """Every pair as ``run_tcm_experiment`` connects it: ``connect``, then routing of the failed pairs."""
    results = {(i, j): connect(backend, sols[i], sols[j], cfg, train) for i, j in pair_list(len(sols), "all")}
    for (i, j), _k, routed in reroute(results, sols):
        results[(i, j)] = routed
    return results


def previous(path: Path, configs: dict[str, PathConfig]) -> tuple[dict[str, list[dict]], dict[str, float], dict[str, set[int]]]:
    """Rows, seconds and seeds done per candidate from an earlier sweep's JSON (a candidate counts only with the same config)."""
    old = json.loads(path.read_text()) if path.exists() else {"candidates": {}, "configs": {}}
    rows, seconds, done = {}, {}, {}
    for n, cfg in configs.items():
        stored = old["configs"].get(n)
        same = stored is not None and all(cfg.to_dict().get(k) == v for k, v in stored.items())  # fields added since keep their default
        c = old["candidates"].get(n) if same else None
        rows[n] = list(c["paths"]) if c else []
        seconds[n] = float(c["seconds_total"]) if c else 0.0
        done[n] = set(c.get("seeds", old.get("seeds_done", []))) if c else set()
    return rows, seconds, done


def table(by_candidate: dict[str, list[dict]]) -> str:
    """Markdown: one line per candidate."""
    out = ["| candidate | pairs | connected | certified | waypoints | escape | routed | last resorts | median it | median s | max s "
           "| min vertex margin (median over paths) | median vertex margin | vertices < 0.01 | cert min margin (median) |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, rows in by_candidate.items():
        s = summarise(rows)
        out.append(f"| {name} | {s['pairs']} | {s['connected']} | {s['certified']} | {s['waypoints']} | {s['escape']} | {s['routed']} "
                   f"| {s['last_resorts']} | {s['iterations_median']:g} | {s['seconds_median']:.3f} | {s['seconds_max']:.2f} "
                   f"| {s.get('vertex_min_margin_median', float('nan')):.3g} | {s.get('vertex_median_margin_median', float('nan')):.3g} "
                   f"| {s.get('vertex_frac_below_001_mean', float('nan')):.1%} | {s.get('cert_min_margin_median', float('nan')):.2g} |")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", default="1-40", help="development seeds only (1-100)")
    ap.add_argument("--candidates", default=",".join(CANDIDATES), help=f"comma-separated; '+' combines: {', '.join(CANDIDATES)}")
    ap.add_argument("--dir", type=Path, default=Path("/tmp/dev_sweep_tcm"), help="cache of trained solutions")
    ap.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "dev_sweep_tcm.json")
    ap.add_argument("--resume", action="store_true", help="keep what --json holds for these candidates; run only their missing seeds")
    args = ap.parse_args()
    seeds = seed_range(args.seeds)
    if any(not 1 <= s <= 100 for s in seeds):
        raise SystemExit(f"--seeds must be development seeds 1-100, got {args.seeds}")
    names = args.candidates.split(",")
    configs = {n: candidate_config(n) for n in names}
    args.dir.mkdir(parents=True, exist_ok=True)
    exp = TCMExperimentConfig()
    rows, seconds, done = previous(args.json, configs) if args.resume else ({n: [] for n in names}, {n: 0.0 for n in names}, {n: set() for n in names})
    head = {"command": "python benchmarks/dev_sweep_tcm.py --seeds " + args.seeds + " --candidates " + args.candidates,
            "git": subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True, text=True).stdout.strip(),
            "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "load_1min_start": os.getloadavg()[0]},
            "configs": {n: c.to_dict() for n, c in configs.items()}}
    for seed in seeds:
        patterns = random_patterns(exp.n_inputs, exp.n_patterns, seed)
        backend = make_backend("julia", patterns, exp.n_hidden)
        problem = TCMProblem(patterns, exp.n_hidden)
        sols = solutions_of(seed, backend, exp, args.dir)
        for n, cfg in configs.items():
            if seed in done[n]:
                continue
            t = time.perf_counter()
            results = connect_all(backend, sols, cfg, exp.train)
            seconds[n] += time.perf_counter() - t
            rows[n] += [result_row(seed, f"{i}-{j}", r, problem) for (i, j), r in sorted(results.items())]
            done[n].add(seed)
            print(f"seed {seed} {n}: " + ", ".join(f"{r['pair']} {r['status'][:4]} {r['iterations']} it"
                                                   + (f" wp{r['waypoints']}" if r["waypoints"] else "")
                                                   + (f" esc{r['escape_scale']:g}" if r["escape_scale"] != 1.0 else "")
                                                   + (f" via{r['via']}" if r["via"] else "") for r in rows[n][-3:]), flush=True)
        report = dict(head, date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                      load_1min_now=os.getloadavg()[0],
                      candidates={n: {"seeds": sorted(done[n]), "summary": summarise(rows[n]), "seconds_total": seconds[n], "paths": rows[n]}
                                  for n in names})
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1))
    print()
    print(table(rows))
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
