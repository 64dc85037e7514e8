"""Compare the path algorithm's variants on stored TCM solutions (docs/path-algorithm.md).

For every experiment file given (from ``ramble tcm run``), every pair of its
solutions, and every setting of the grid, run one leg of the path algorithm
(``backend.find_path``: no waypoints) and record whether it arrived, how far
it got, why it stopped and what it cost.  With ``--connect`` (default on) the
default configuration is also run the way ``ramble tcm run`` runs it, through
``ramble.models.tcm_backends.connect`` (waypoints when a leg stalls).

    python benchmarks/sweep_path_variants.py --backend julia --out benchmarks/results/sweep.json FILE.h5 ...

Grid (``--grid full``, the default):

* paper:  gamma {0.001, 0.01, 0.1} x lr {0.1, 0.01, 0.001} x N_epochs {5, 1}
* repair: gamma {0.001, 0.01, 0.1} x lr {0.1, 0.01} x N_epochs {5, 1}

``--grid small`` keeps each variant's own default and the other variant's
default (4 settings).  Prints markdown tables: one line per setting (arrivals,
why the others stopped, distance reached, iterations), then one line per pair
for the default configuration.  Every run goes to ``--out`` as JSON as soon
as it finishes (the file is rewritten after each pair), so an interrupted
sweep keeps what it did.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import time
from pathlib import Path

import numpy as np

from ramble.core.path import PathConfig
from ramble.models.patterns import Patterns
from ramble.models.tcm_backends import connect, make_backend
from ramble.models.tcm_training import TrainConfig
from ramble.storage.io import load

GRID = {
    "paper": [dict(gamma=g, lr=lr, n_epochs=e) for g, lr, e in itertools.product([0.001, 0.01, 0.1], [0.1, 0.01, 0.001], [5, 1])],
    "repair": [dict(gamma=g, lr=lr, n_epochs=e) for g, lr, e in itertools.product([0.001, 0.01, 0.1], [0.1, 0.01], [5, 1])],
}
_P, _R = PathConfig.paper(), PathConfig()
SMALL = {
    "paper": [dict(gamma=_P.gamma, lr=_P.lr, n_epochs=_P.n_epochs), dict(gamma=_R.gamma, lr=_R.lr, n_epochs=_R.n_epochs)],
    "repair": [dict(gamma=_P.gamma, lr=_P.lr, n_epochs=_P.n_epochs), dict(gamma=_R.gamma, lr=_R.lr, n_epochs=_R.n_epochs)],
}


def outcome(status: str, reason: str) -> str:
    """Short code for why a run stopped: arrived, gd-left-S, stalled, limit, waypoint-failed."""
    if status == "complete":
        return "arrived"
    if reason.startswith("a gradient-descent step left S"):
        return "gd-left-S"
    if "no waypoint solution" in reason:
        return "waypoint-failed"
    if reason.startswith("stalled"):
        return "stalled"
    if reason.startswith("iteration limit"):
        return "limit"
    return "other"


def row_of(r, **head) -> dict:
    return dict(
        **head,
        status=r.status, outcome=outcome(r.status, r.reason), reason=r.reason, iterations=int(r.iterations),
        reached=float(np.max(r.distance)), final=float(r.distance[-1]),
        accepted=int(r.elastic_accepted), repaired=int(r.elastic_repaired), refused=int(r.elastic_refused),
        gd_accepted=int(r.gd_accepted), gd_refused=int(r.gd_refused_total),
        waypoints=len(getattr(r, "waypoints", [])),
        legs=int(r.extra["leg"].max()) + 1 if "leg" in getattr(r, "extra", {}) else 1,
        max_train_error=float(np.max(r.train_error)),
        path_seconds=float(r.wall_time),
    )


def rounded(row: dict) -> dict:
    """Floats to 5 significant digits (keeps the JSON small)."""
    return {k: float(f"{v:.5g}") if isinstance(v, float) else v for k, v in row.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="+")
    ap.add_argument("--backend", default="julia", choices=["julia", "python"])
    ap.add_argument("--variants", default="paper,repair")
    ap.add_argument("--grid", default="full", choices=["full", "small"])
    ap.add_argument("--max-iterations", type=int, default=20_000)
    ap.add_argument("--patience", type=int, default=PathConfig().patience,
                    help="iterations without 1%% progress before a leg counts as stalled (the paper has no such rule: "
                         "pass --patience equal to --max-iterations to switch it off)")
    ap.add_argument("--no-connect", dest="connect", action="store_false", help="skip the default configuration through connect() (waypoints)")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)
    grid = GRID if args.grid == "full" else SMALL

    rows: list[dict] = []
    args.out.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    for f in args.files:
        e = load(f)
        pats = Patterns(e.data["train_inputs"], e.data["train_labels"], int(e.data.get("seed", 0)))
        be = make_backend(args.backend, pats, int(e.model_info["K"]))
        seed = int(e.data.get("seed", -1))
        for (i, j) in itertools.combinations(sorted(e.solutions), 2):
            wa, wb = e.solutions[i], e.solutions[j]
            line = be.straight_line(wa, wb, 101)
            pair = dict(file=str(f), seed=seed, pair=f"{i}-{j}", distance_ab=float(np.linalg.norm(wb - wa)),
                        line_max_error=float(np.max(line["train_error"])))
            for variant in args.variants.split(","):
                for kw in grid[variant]:
                    cfg = PathConfig(variant=variant, max_iterations=args.max_iterations, patience=args.patience, **kw)  # type: ignore[arg-type]
                    t = time.perf_counter()
                    r = be.find_path(wa, wb, cfg)
                    rows.append(row_of(r, **pair, mode="leg", variant=variant, **kw, seconds=time.perf_counter() - t))
                    print(json.dumps({k: v for k, v in rows[-1].items() if k not in ("file", "reason")}), flush=True)
            if args.connect:
                cfg = PathConfig(max_iterations=args.max_iterations, patience=args.patience)
                t = time.perf_counter()
                r = connect(be, wa, wb, cfg, TrainConfig())
                rows.append(row_of(r, **pair, mode="connect", variant=cfg.variant, gamma=cfg.gamma, lr=cfg.lr, n_epochs=cfg.n_epochs,
                                   seconds=time.perf_counter() - t))
                print(json.dumps({k: v for k, v in rows[-1].items() if k not in ("file", "reason")}), flush=True)
            args.out.write_text("[\n" + ",\n".join(json.dumps(rounded(r)) for r in rows) + "\n]\n")  # one run per line
    print(f"\n{len(rows)} runs in {time.perf_counter() - started:.0f} s on the {args.backend} backend\n")
    print(table(rows))
    print()
    print(pair_table(rows))


def table(rows: list[dict]) -> str:
    """Markdown: one line per (variant, gamma, lr, n_epochs) of single legs, and one for connect()."""
    out = [
        "| mode | variant | gamma | lr | N_epochs | arrived | GD step left S | stalled | iteration limit | mean distance reached | median iterations (arrived) | median iterations (all) | refused elastic steps (median) | mean s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    keys = sorted({(r["mode"], r["variant"], r["gamma"], r["lr"], r["n_epochs"]) for r in rows}, key=lambda k: (k[0] != "leg", k[1], k[2], -k[3], -k[4]))
    for k in keys:
        rs = [r for r in rows if (r["mode"], r["variant"], r["gamma"], r["lr"], r["n_epochs"]) == k]
        ok = [r for r in rs if r["status"] == "complete"]
        n = len(rs)
        cnt = {c: sum(r["outcome"] == c for r in rs) for c in ("gd-left-S", "stalled", "limit")}
        med = f"{np.median([r['iterations'] for r in ok]):.0f}" if ok else "-"
        out.append(
            f"| {k[0]} | {k[1]} | {k[2]} | {k[3]} | {k[4]} | {len(ok)}/{n} | {cnt['gd-left-S']} | {cnt['stalled']} | {cnt['limit']} | "
            f"{np.mean([r['reached'] for r in rs]):.2f} | {med} | {np.median([r['iterations'] for r in rs]):.0f} | "
            f"{np.median([r['refused'] for r in rs]):.0f} | {np.mean([r['seconds'] for r in rs]):.2f} |"
        )
    return "\n".join(out)


def pair_table(rows: list[dict]) -> str:
    """Markdown: per pair, the straight line and the default configuration as one leg and through connect()."""
    d = PathConfig()
    out = [
        "| seed | pair | \\|W_a-W_b\\| | straight line max error | default, one leg | reached | default via connect | waypoints | iterations | accepted / repaired / refused | s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    pairs = sorted({(r["seed"], r["pair"]) for r in rows})
    for s, p in pairs:
        rs = [r for r in rows if (r["seed"], r["pair"]) == (s, p)]
        leg = [r for r in rs if r["mode"] == "leg" and r["variant"] == "repair" and (r["gamma"], r["lr"], r["n_epochs"]) == (d.gamma, d.lr, d.n_epochs)]
        con = [r for r in rs if r["mode"] == "connect"]
        lg = f"{leg[0]['outcome']} ({leg[0]['iterations']} it)" if leg else "-"
        reached = f"{leg[0]['reached']:.3f}" if leg else "-"
        if con:
            c = con[0]
            cs = f"{c['outcome']}" + ("" if c["status"] == "complete" else f" at {c['reached']:.3f}")
            extra = f"{c['waypoints']} ({c['legs']} legs) | {c['iterations']} | {c['accepted']} / {c['repaired']} / {c['refused']} | {c['seconds']:.2f}"
        else:
            cs, extra = "-", "- | - | - | -"
        out.append(f"| {s} | {p} | {rs[0]['distance_ab']:.2f} | {rs[0]['line_max_error']:.3f} | {lg} | {reached} | {cs} | {extra} |")
    return "\n".join(out)


if __name__ == "__main__":
    main()
