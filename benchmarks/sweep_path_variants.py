"""Compare the path algorithm's variants on stored TCM solutions (docs/path-algorithm.md).

For every experiment file given (from ``ramble tcm run``), every pair of its
solutions, and every setting of the grid, run the path algorithm and record
whether it arrived, how far it got, and what it cost.

    python benchmarks/sweep_path_variants.py --backend julia --out benchmarks/results/sweep.json FILE.h5 ...

Prints a markdown table of success rates per setting.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path

import numpy as np

from ramble.backends import make_backend
from ramble.io import load
from ramble.path import PathConfig
from ramble.patterns import Patterns

GRID = {
    "paper": [dict(gamma=g, lr=lr, n_epochs=e) for g, lr, e in itertools.product([0.001, 0.01, 0.1], [0.1, 0.01, 0.001], [5, 1])],
    "repair": [dict(gamma=g, lr=lr, n_epochs=e) for g, lr, e in itertools.product([0.001, 0.01, 0.1], [0.1, 0.01], [5, 1])],
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="+")
    ap.add_argument("--backend", default="julia", choices=["julia", "python"])
    ap.add_argument("--variants", default="paper,repair")
    ap.add_argument("--max-iterations", type=int, default=20_000)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()

    rows = []
    for f in args.files:
        e = load(f)
        pats = Patterns(e.data["train_inputs"], e.data["train_labels"], int(e.data.get("seed", 0)))
        be = make_backend(args.backend, pats, int(e.model_info["K"]))
        for (i, j) in itertools.combinations(sorted(e.solutions), 2):
            for variant in args.variants.split(","):
                for kw in GRID[variant]:
                    cfg = PathConfig(variant=variant, max_iterations=args.max_iterations, **kw)  # type: ignore[arg-type]
                    t = time.perf_counter()
                    r = be.find_path(e.solutions[i], e.solutions[j], cfg)
                    rows.append(
                        dict(
                            file=str(f), pair=f"{i}-{j}", variant=variant, **kw,
                            status=r.status, reason=r.reason, iterations=r.iterations,
                            reached=float(np.max(r.distance)), final=float(r.distance[-1]),
                            accepted=r.elastic_accepted, repaired=r.elastic_repaired, refused=r.elastic_refused,
                            gd_refused=r.gd_refused_total, seconds=time.perf_counter() - t,
                        )
                    )
                    print(json.dumps(rows[-1]), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=1))
    print(table(rows))


def table(rows: list[dict]) -> str:
    """Markdown: one line per (variant, gamma, lr, n_epochs) with arrivals, distance reached, iterations."""
    out = ["| variant | gamma | lr | N_epochs | arrived | mean distance reached | median iterations (arrived) | mean s |", "|---|---|---|---|---|---|---|---|"]
    keys = sorted({(r["variant"], r["gamma"], r["lr"], r["n_epochs"]) for r in rows}, key=lambda k: (k[0], -k[1], -k[2], -k[3]))
    for k in keys:
        rs = [r for r in rows if (r["variant"], r["gamma"], r["lr"], r["n_epochs"]) == k]
        ok = [r for r in rs if r["status"] == "complete"]
        med = f"{np.median([r['iterations'] for r in ok]):.0f}" if ok else "-"
        out.append(
            f"| {k[0]} | {k[1]} | {k[2]} | {k[3]} | {len(ok)}/{len(rs)} | {np.mean([r['reached'] for r in rs]):.2f} | {med} | {np.mean([r['seconds'] for r in rs]):.1f} |"
        )
    return "\n".join(out)


if __name__ == "__main__":
    main()
