"""TCM benchmarks at the paper's size (N=300, K=3, M=620): solutions, paths, whole runs.

Four sub-commands (all single-threaded: OMP/BLAS threads 1, torch 1 thread)::

    python benchmarks/bench_tcm.py path  [--seed 101 | --file F.h5] [--repeats 3] [--python-repeats 1]
    python benchmarks/bench_tcm.py runs  --seeds 101-110 [--backend julia] [--dir /tmp/bench_tcm]
    python benchmarks/bench_tcm.py summary FILE.h5 ...
    python benchmarks/bench_tcm.py starts --seeds 101-110 [--starts 10]

``path``: one full TCM path per pair of solutions of one data set, on the
Julia and on the Python backend, from the same data and the same two
solutions, with the default path configuration through
``ramble.models.tcm_backends.connect`` (what ``ramble tcm run`` does).  The solutions
are read from ``--file`` or trained once by the Julia backend for ``--seed``.
Julia's one-time costs are reported separately: starting Julia and loading
``Ramble`` (the first ``make_backend``), and the first path call (which
compiles); the path times are the best of ``--repeats`` warm calls (and of
``--python-repeats`` Python calls), medians printed in brackets.

``runs``: wall clock of the whole ``ramble tcm run --backend B --seed S
--solutions 3`` command (a fresh process: Python start, imports, Julia start
and compilation, training, 3 paths, 3 straight lines, HDF5), per seed, then
``summary`` of the files it wrote.

``summary``: from experiment files, what training cost per solution
(attempts, epochs, kicks, polishing, seconds), how distinct the solutions
are (pairwise distance / norm), and per path: status, iterations, waypoints,
elastic steps accepted/repaired/refused, the straight line's max training
error, wall time.

``starts``: success rate of a single training start (one attempt of
``gd_solve`` with the default ``TrainConfig``) over ``--starts`` Gaussian
draws per data set, with its cost; ``--no-kicks`` and ``--init-scale`` run
the ablations of docs/solutions.md.

Each sub-command prints markdown tables and writes JSON to ``--json``
(default ``benchmarks/results/bench_tcm_<command>.json``).
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse  # noqa: E402
import datetime  # noqa: E402
import itertools  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)

from ramble.core.path import PathConfig  # noqa: E402
from ramble.models.patterns import Patterns, random_patterns  # noqa: E402
from ramble.models.tcm import gaussian_init  # noqa: E402
from ramble.models.tcm_backends import connect, make_backend  # noqa: E402
from ramble.models.tcm_training import TrainConfig, attempt_seed, solve_with_restarts  # noqa: E402
from ramble.storage.io import load  # noqa: E402

N, K, M = 300, 3, 620
RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict:
    """What the figures were measured on."""
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    jl = ""
    exe = shutil.which(os.environ.get("RAMBLE_JULIA", "julia"))
    if exe:
        try:
            jl = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=60).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass
    mem = ""
    try:
        mem = f"{int(Path('/proc/meminfo').read_text().split()[1]) / 2**20:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return dict(
        date=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        cpu=cpu, cores=os.cpu_count(), memory=mem, os=platform.platform(), python=platform.python_version(),
        torch=torch.__version__, numpy=np.__version__, julia=jl, torch_threads=torch.get_num_threads(),
    )


def seeds_arg(s: str) -> list[int]:
    """``101-110`` or ``101,104,108``."""
    out: list[int] = []
    for part in s.split(","):
        if "-" in part:
            a, b = part.split("-")
            out.extend(range(int(a), int(b) + 1))
        else:
            out.append(int(part))
    return out


def write_json(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=1))
    print(f"\n(wrote {path})")


def fmt(x: float, nd: int = 2) -> str:
    return f"{x:.{nd}f}"


# -- path -----------------------------------------------------------------------
def cmd_path(args: argparse.Namespace) -> None:
    info = machine()
    timings: dict = {}
    t = time.perf_counter()
    if args.file:
        e = load(args.file)
        pats = Patterns(e.data["train_inputs"], e.data["train_labels"], int(e.data.get("seed", 0)))
        sols = [e.solutions[i] for i in sorted(e.solutions)]
        seed = int(e.data.get("seed", -1))
    else:
        seed = args.seed
        pats = random_patterns(N, M, seed)
        sols = None
    timings["load_s"] = time.perf_counter() - t

    t = time.perf_counter()
    jl = make_backend("julia", pats, K)
    timings["julia_start_s"] = time.perf_counter() - t  # start Julia, load Ramble, hand over the data
    if sols is None:
        cfg = TrainConfig()
        scale = cfg.init_scale / np.sqrt(N // K)
        t = time.perf_counter()
        sols = [solve_with_restarts(lambda w0: jl.gd_solve(w0, cfg), lambda s: gaussian_init(N, scale, s), seed, i, cfg).w for i in range(3)]
        timings["julia_training_s_incl_compile"] = time.perf_counter() - t
    py = make_backend("python", pats, K)
    pcfg, tcfg = PathConfig(), TrainConfig()
    pairs = list(itertools.combinations(range(len(sols)), 2))
    if args.pairs:
        pairs = [tuple(int(x) for x in p.split("-")) for p in args.pairs.split(",")]  # type: ignore[misc]

    rows = []
    first = True
    for i, j in pairs:
        wa, wb = sols[i], sols[j]
        if first:
            t = time.perf_counter()
            connect(jl, wa, wb, pcfg, tcfg)
            timings["julia_first_path_s"] = time.perf_counter() - t
            first = False
        jt, jr = [], None
        for _ in range(args.repeats):
            t = time.perf_counter()
            jr = connect(jl, wa, wb, pcfg, tcfg)
            jt.append(time.perf_counter() - t)
        pt, pr = [], None
        for _ in range(args.python_repeats):
            t = time.perf_counter()
            pr = connect(py, wa, wb, pcfg, tcfg)
            pt.append(time.perf_counter() - t)
        # best of the repeats (the machine is shared: the minimum is the least disturbed run); medians kept too
        j_s, p_s = min(jt), min(pt)
        rows.append(dict(
            seed=seed, pair=f"{i}-{j}", distance_ab=float(np.linalg.norm(wb - wa)),
            julia_status=jr.status, julia_iterations=jr.iterations, julia_waypoints=len(jr.waypoints), julia_s=j_s, julia_s_median=statistics.median(jt), julia_s_all=jt,
            python_status=pr.status, python_iterations=pr.iterations, python_waypoints=len(pr.waypoints), python_s=p_s, python_s_median=statistics.median(pt), python_s_all=pt,
            julia_us_per_iteration=1e6 * j_s / max(jr.iterations, 1), python_us_per_iteration=1e6 * p_s / max(pr.iterations, 1),
            ratio=p_s / j_s, ratio_per_iteration=(p_s / max(pr.iterations, 1)) / (j_s / max(jr.iterations, 1)),
        ))
        print(json.dumps({k: v for k, v in rows[-1].items() if not k.endswith("_all")}), flush=True)
    if rows:
        timings["julia_compile_s_estimate"] = timings["julia_first_path_s"] - rows[0]["julia_s"]

    print(f"\nMachine: {info['cpu']}, {info['cores']} cores, {info['memory']}; {info['os']}; Python {info['python']}, torch {info['torch']} (1 thread), {info['julia']}; {info['date']}\n")
    print(f"best of {args.repeats} warm Julia calls and {args.python_repeats} Python calls per pair (median in brackets)\n")
    print("| seed | pair | iterations (Julia / Python) | status | Julia s | Python s | Julia us/it | Python us/it | Python / Julia (time) | (per iteration) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['seed']} | {r['pair']} | {r['julia_iterations']} / {r['python_iterations']} | {r['julia_status']} / {r['python_status']} | "
              f"{r['julia_s']:.3f} ({r['julia_s_median']:.3f}) | {r['python_s']:.2f} ({r['python_s_median']:.2f}) | {r['julia_us_per_iteration']:.0f} | {r['python_us_per_iteration']:.0f} | "
              f"{r['ratio']:.0f}x | {r['ratio_per_iteration']:.0f}x |")
    print("\n| one-time cost | s |\n|---|---|")
    for k, v in timings.items():
        print(f"| {k} | {v:.2f} |")
    write_json(args.json or RESULTS / "bench_tcm_path.json", dict(command=" ".join(sys.argv), machine=info, config=pcfg.to_dict(), timings=timings, rows=rows))


# -- runs -----------------------------------------------------------------------
def cmd_runs(args: argparse.Namespace) -> None:
    info = machine()
    exe = Path(sys.executable).with_name("ramble")
    ramble = [str(exe)] if exe.exists() else [sys.executable, "-m", "ramble.cli"]
    d = Path(args.dir)
    d.mkdir(parents=True, exist_ok=True)
    runs = []
    files = []
    for s in seeds_arg(args.seeds):
        out = d / f"tcm-{args.backend}-{s}.h5"
        cmd = ramble + ["--quiet", "tcm", "run", "--backend", args.backend, "--seed", str(s), "--solutions", "3", "--out", str(out), "--force"]
        t = time.perf_counter()
        p = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.perf_counter() - t
        e = load(out, weights=False) if p.returncode == 0 else None
        runs.append(dict(seed=s, backend=args.backend, returncode=p.returncode, wall_s=wall,
                         internal_s=float(e.attrs.get("wall_time", float("nan"))) if e else None,
                         paths_complete=int(e.attrs.get("paths_complete", 0)) if e else None, stderr=p.stderr[-2000:] if p.returncode else ""))
        print(json.dumps({k: v for k, v in runs[-1].items() if k != "stderr"}), flush=True)
        if p.returncode == 0:
            files.append(out)
    walls = [r["wall_s"] for r in runs]
    print(f"\nMachine: {info['cpu']}, {info['cores']} cores; {info['date']}\n")
    print("| seed | backend | `ramble tcm run` wall s | inside the run s | paths complete |\n|---|---|---|---|---|")
    for r in runs:
        print(f"| {r['seed']} | {r['backend']} | {r['wall_s']:.1f} | {r['internal_s']:.1f} | {r['paths_complete']}/3 |")
    print(f"\nwall clock: median {statistics.median(walls):.1f} s, min {min(walls):.1f} s, max {max(walls):.1f} s over {len(walls)} runs\n")
    summ = summarise(files)
    write_json(args.json or RESULTS / f"bench_tcm_runs_{args.backend}.json", dict(command=" ".join(sys.argv), machine=info, runs=runs, summary=summ))


# -- summary --------------------------------------------------------------------
def summarise(files: list) -> dict:
    sol_rows, pair_rows = [], []
    for f in files:
        e = load(f)
        seed = int(e.data.get("seed", -1))
        for i in sorted(e.solutions):
            a = e.solution_attrs[i]
            sol_rows.append(dict(seed=seed, solution=i, norm=float(np.linalg.norm(e.solutions[i])), **{k: a[k] for k in ("attempts", "epochs", "kicks", "polish_epochs", "min_margin", "seconds")}))
        for p in e.iter_paths():
            wa, wb = e.solutions[p.source], e.solutions[p.target]
            d = float(np.linalg.norm(wb - wa))
            a = p.attrs
            legs = int(p.extra["leg"].max()) + 1 if "leg" in p.extra else 1
            pair_rows.append(dict(
                seed=seed, pair=p.name, status=p.status, reason=p.reason, iterations=int(a["iterations"]),
                waypoints=int(a.get("waypoints", 0)), legs=legs,
                accepted=int(a["elastic_accepted"]), repaired=int(a["elastic_repaired"]), refused=int(a["elastic_refused"]),
                gd_refused=int(a["gd_refused_total"]), wall_s=float(a["wall_time"]), reached=float(np.max(p.distance)),
                distance_ab=d, rel_distance=d / (0.5 * (np.linalg.norm(wa) + np.linalg.norm(wb))),
                cosine=float(wa @ wb / np.linalg.norm(wa) / np.linalg.norm(wb)),
                line_max_error=float(np.max(p.linear.train_error)) if p.linear is not None else float("nan"),
            ))
    if not sol_rows:
        return {}

    def stat(xs: list) -> str:
        return f"{np.mean(xs):.3g} / {np.median(xs):.3g} / {np.max(xs):.3g}"

    att = [r["attempts"] for r in sol_rows]
    print(f"Solutions: {len(sol_rows)} from {len(files)} data sets; {len(att)} succeeded after {sum(att)} attempts "
          f"(single-attempt success {len(att)}/{sum(att)} = {len(att) / sum(att):.0%}).\n")
    print("| per solution | mean / median / max |\n|---|---|")
    for k in ("attempts", "epochs", "kicks", "polish_epochs", "seconds", "norm", "min_margin"):
        print(f"| {k} | {stat([r[k] for r in sol_rows])} |")
    rd = [r["rel_distance"] for r in pair_rows]
    print(f"\nPairwise |W_a - W_b| / mean norm: min {min(rd):.2f}, median {np.median(rd):.2f}, max {max(rd):.2f}; "
          f"|W_a - W_b|: {min(r['distance_ab'] for r in pair_rows):.2f} .. {max(r['distance_ab'] for r in pair_rows):.2f}; "
          f"cosine {min(r['cosine'] for r in pair_rows):.2f} .. {max(r['cosine'] for r in pair_rows):.2f}\n")
    print("| seed | pair | status | iterations | waypoints (legs) | accepted / repaired / refused | GD refused | straight line max error | \\|W_a-W_b\\| | cos | reached | s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in pair_rows:
        print(f"| {r['seed']} | {r['pair']} | {r['status']} | {r['iterations']} | {r['waypoints']} ({r['legs']}) | {r['accepted']} / {r['repaired']} / {r['refused']} | "
              f"{r['gd_refused']} | {r['line_max_error']:.3f} | {r['distance_ab']:.2f} | {r['cosine']:.2f} | {r['reached']:.3f} | {r['wall_s']:.2f} |")
    ok = [r for r in pair_rows if r["status"] == "complete"]
    lines_out = sum(r["line_max_error"] > 0 for r in pair_rows)
    print(f"\nPaths complete: {len(ok)}/{len(pair_rows)}; iterations of complete paths: median {np.median([r['iterations'] for r in ok]):.0f}, "
          f"min {min(r['iterations'] for r in ok)}, max {max(r['iterations'] for r in ok)}; "
          f"straight line leaves S in {lines_out}/{len(pair_rows)} pairs (max error {max(r['line_max_error'] for r in pair_rows):.3f})")
    for r in pair_rows:
        if r["status"] != "complete":
            print(f"  FAILED seed {r['seed']} pair {r['pair']}: {r['reason']}")
    return dict(solutions=sol_rows, paths=pair_rows)


def cmd_summary(args: argparse.Namespace) -> None:
    summ = summarise(args.files)
    write_json(args.json or RESULTS / "bench_tcm_summary.json", dict(command=" ".join(sys.argv), files=[str(f) for f in args.files], **summ))


# -- starts ---------------------------------------------------------------------
def cmd_starts(args: argparse.Namespace) -> None:
    info = machine()
    base = TrainConfig()
    cfg = TrainConfig(init_scale=args.init_scale if args.init_scale else base.init_scale,
                      kick_after=base.max_epochs if args.no_kicks else base.kick_after)
    scale = cfg.init_scale / np.sqrt(N // K)
    rows = []
    for s in seeds_arg(args.seeds):
        be = make_backend(args.backend, random_patterns(N, M, s), K)
        if args.backend == "julia" and not rows:
            be.gd_solve(gaussian_init(N, scale, 0), TrainConfig(max_epochs=10, polish_epochs=0))  # compile outside the timings
        sols = []
        for n in range(args.starts):
            seed = attempt_seed(s, n, 0)
            t = time.perf_counter()
            out = be.gd_solve(gaussian_init(N, scale, seed), cfg)
            dt = time.perf_counter() - t
            rows.append(dict(seed=s, start=n, init_seed=seed, solved=out.solved, epochs=out.epochs, kicks=out.kicks, polish_epochs=out.polish_epochs,
                             errors=out.errors, min_margin=out.min_margin, seconds=dt, norm=float(np.linalg.norm(out.w))))
            if out.solved:
                sols.append(out.w)
        rel = [float(np.linalg.norm(a - b) / (0.5 * (np.linalg.norm(a) + np.linalg.norm(b)))) for a, b in itertools.combinations(sols, 2)]
        rs = [r for r in rows if r["seed"] == s]
        ok = [r for r in rs if r["solved"]]
        print(json.dumps(dict(seed=s, solved=len(ok), starts=len(rs), rel_distance_min=min(rel) if rel else None,
                              errors_left=[r["errors"] for r in rs if not r["solved"]])), flush=True)
        for r in rs:
            r["rel_distance_min_in_seed"] = min(rel) if rel else None
    ok = [r for r in rows if r["solved"]]
    bad = [r for r in rows if not r["solved"]]
    print(f"\nMachine: {info['cpu']}; {args.backend} backend; {info['date']}; init_scale {cfg.init_scale}, kicks {'off' if args.no_kicks else 'on'}\n")
    print("| seed | solved / starts | median epochs to S | median kicks | median polish epochs | median s per start | failed starts: errors left |\n|---|---|---|---|---|---|---|")
    for s in seeds_arg(args.seeds):
        rs = [r for r in rows if r["seed"] == s]
        o = [r for r in rs if r["solved"]]
        med = (lambda k: f"{np.median([r[k] for r in o]):.0f}") if o else (lambda k: "-")
        print(f"| {s} | {len(o)}/{len(rs)} | {med('epochs')} | {med('kicks')} | {med('polish_epochs')} | {np.median([r['seconds'] for r in rs]):.2f} | "
              f"{', '.join(str(r['errors']) for r in rs if not r['solved']) or '-'} |")
    okm = (lambda k: f"{np.median([r[k] for r in ok]):.0f}") if ok else (lambda k: "-")
    print(f"| all | {len(ok)}/{len(rows)} ({len(ok) / len(rows):.0%}) | {okm('epochs')} | {okm('kicks')} | "
          f"{okm('polish_epochs')} | {np.median([r['seconds'] for r in rows]):.2f} | {len(bad)} failed |")
    if ok:
        print(f"\nsolved starts: epochs to S mean {np.mean([r['epochs'] for r in ok]):.0f}, max {max(r['epochs'] for r in ok)}; "
              f"kicks mean {np.mean([r['kicks'] for r in ok]):.1f}, max {max(r['kicks'] for r in ok)}; "
              f"seconds mean {np.mean([r['seconds'] for r in ok]):.2f}, max {max(r['seconds'] for r in ok):.2f}"
              + (f"; failed starts take {np.mean([r['seconds'] for r in bad]):.2f} s each" if bad else ""))
    else:
        print("\nno start solved")
    write_json(args.json or RESULTS / "bench_tcm_starts.json", dict(command=" ".join(sys.argv), machine=info, train_config=cfg.to_dict(), rows=rows))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("path", help="one full path per pair, Julia vs Python")
    p.add_argument("--seed", type=int, default=101)
    p.add_argument("--file", help="take data and solutions from this experiment file instead of training them")
    p.add_argument("--pairs", help="e.g. 0-1,1-2 (default: all)")
    p.add_argument("--repeats", type=int, default=3, help="warm Julia calls per pair (best and median reported)")
    p.add_argument("--python-repeats", type=int, default=1, help="Python calls per pair (best and median reported)")
    p.add_argument("--json", type=Path)
    p.set_defaults(fn=cmd_path)
    r = sub.add_parser("runs", help="wall clock of the whole `ramble tcm run` per seed, then summary")
    r.add_argument("--seeds", default="101")
    r.add_argument("--backend", default="julia", choices=["julia", "python"])
    r.add_argument("--dir", default="/tmp/bench_tcm")
    r.add_argument("--json", type=Path)
    r.set_defaults(fn=cmd_runs)
    s = sub.add_parser("summary", help="training cost, distinctness and path statistics from experiment files")
    s.add_argument("files", nargs="+")
    s.add_argument("--json", type=Path)
    s.set_defaults(fn=cmd_summary)
    t = sub.add_parser("starts", help="success rate of a single training start")
    t.add_argument("--seeds", default="101-110")
    t.add_argument("--starts", type=int, default=10)
    t.add_argument("--backend", default="julia", choices=["julia", "python"])
    t.add_argument("--init-scale", type=float, help="Gaussian init std in units of 1/sqrt(N/K) (default: TrainConfig's)")
    t.add_argument("--no-kicks", action="store_true", help="plain GD: no least-action corrections (ablation)")
    t.add_argument("--json", type=Path)
    t.set_defaults(fn=cmd_starts)
    args = ap.parse_args()
    args.fn(args)


if __name__ == "__main__":
    main()
