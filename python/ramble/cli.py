"""The ``ramble`` command line.

Errors meant for the user (:class:`ramble.errors.RambleError`) print as one
line, ``error: ...``, and exit with status 1; usage errors exit with 2
(click's convention).  ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import errno
import json
import logging
import platform
import sys
from pathlib import Path
from typing import Any, Optional

import click

from . import __version__
from .errors import RambleError
from .progress import progress_enabled, setup_logging

log = logging.getLogger("ramble")


#: OS errors that are the machine's state, not a bug: a full disk, a file size
#: limit, a quota, no permission, a read-only file system.
_MACHINE_ERRNOS = frozenset({errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS})


class RambleGroup(click.Group):
    """A click group that turns RambleError (and a full disk or a permission error) into a one-line message and exit 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except RambleError as e:
            if ctx.find_root().params.get("debug"):
                raise
            # one line, whatever the message holds (HDF5's OS errors and Julia's carry newlines)
            click.echo("error: " + " ".join(str(e).split()), err=True)
            ctx.exit(1)
        except OSError as e:
            if e.errno not in _MACHINE_ERRNOS or ctx.find_root().params.get("debug"):
                raise
            what = f"{e.filename}: " if e.filename else ""
            click.echo("error: " + " ".join(f"{what}{e.strerror or e}".split()), err=True)
            ctx.exit(1)


@click.group(cls=RambleGroup)
@click.version_option(__version__, prog_name="ramble")
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars; warnings and errors only.")
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
@click.pass_context
def main(ctx: click.Context, debug: bool, quiet: bool, verbose: bool) -> None:
    """ramble: zero-error paths between solutions of a classification problem."""
    setup_logging(quiet=quiet, verbose=verbose)
    ctx.obj = {"quiet": quiet, "debug": debug}


# ---------------------------------------------------------------- tcm
@main.group(cls=RambleGroup)
def tcm() -> None:
    """Tree Committee Machine on random +-1 patterns (paper Sect. 3.1)."""


def _path_options(f):
    opts = [
        click.option("--variant", type=click.Choice(["repair", "paper"]), default="repair", show_default=True, help="Path algorithm: 'paper' is Algorithm 1 as printed (reference), 'repair' the default that arrives (docs/path-algorithm.md)."),
        click.option("--gamma", type=float, default=None, help="Elastic constant of Eq. 3, in (0, 1]. Default: 0.01 (repair), 0.001 (paper)."),
        click.option("--n-epochs", type=int, default=None, help="GD epochs per iteration (N_epochs). Default: 1 (repair), 5 (paper)."),
        click.option("--path-lr", type=float, default=None, help="GD learning rate on the path. Default: 0.01 (repair), 0.1 (paper)."),
        click.option("--margin-target", type=float, default=0.1, show_default=True, help="Repair lifts margins below this."),
        click.option("--max-iterations", type=int, default=20_000, show_default=True, help="Iteration limit of one path."),
        click.option("--tol", type=float, default=1e-3, show_default=True, help="Arrival radius as a fraction of |W_a - W_b|."),
        click.option("--max-waypoints", type=int, default=10, show_default=True, help="Solutions a path may go through when a leg stalls (repair variant; 0: none)."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def path_config_from(variant: str, gamma: Optional[float], n_epochs: Optional[int], path_lr: Optional[float], margin_target: float, max_iterations: int, tol: float, max_waypoints: int = 10, **extra: Any):
    from .path import PathConfig

    if variant == "paper":
        base = PathConfig.paper()
    else:
        base = PathConfig()
    return PathConfig(
        variant=variant,  # type: ignore[arg-type]
        gamma=base.gamma if gamma is None else gamma,
        n_epochs=base.n_epochs if n_epochs is None else n_epochs,
        lr=base.lr if path_lr is None else path_lr,
        margin_target=margin_target,
        max_iterations=max_iterations,
        tol=tol,
        max_waypoints=max_waypoints if variant == "repair" else 0,
        **extra,
    )


def _output_options(f):
    f = click.option("--resume", type=click.Path(dir_okay=False), default=None, help="Continue this interrupted run's file: alone, with the settings stored in it; with run options, which must match them.")(f)
    f = click.option("--force", is_flag=True, help="Overwrite --out if it exists.")(f)
    return click.option("--out", "out", type=click.Path(dir_okay=False), default=None, help="Output HDF5 file (required unless --resume).")(f)


def _checkpoint_options(f):
    f = click.option("--checkpoint-iterations", type=int, default=None, help="Also commit a running path's state every this many iterations.")(f)
    return click.option("--checkpoint-every", type=float, default=60.0, show_default=True, help="Commit a running path's state to the file every this many seconds.")(f)


#: Options that say how to run, not what to compute: allowed beside --resume.
RUN_ONLY_OPTIONS = ("resume", "checkpoint_every", "checkpoint_iterations")


def _resumed(ctx: click.Context, out: Optional[str], resume: Optional[str], policy: Any = None) -> tuple[bool, Optional[str]]:
    """Handle ``--resume FILE``: (done, output file).

    Alone, it continues the file with the settings stored in it (done).  Beside
    options that define a run, the run goes on into FILE, and the file's
    stored config must be the one those options give (checked when writing).
    """
    if resume is None:
        if out is None:
            raise RambleError("give --out FILE for a new run, or --resume FILE to continue an interrupted one")
        return False, out
    if out is not None and Path(out) != Path(resume):
        raise RambleError(f"--out {out} and --resume {resume} name different files; --resume continues the file it names")
    given = [p for p, v in ctx.params.items() if p not in RUN_ONLY_OPTIONS and ctx.get_parameter_source(p) is not click.core.ParameterSource.DEFAULT]
    if not given:
        _resume_file(ctx, resume, policy)
        return True, resume
    return False, resume


def _resume_file(ctx: click.Context, file: str, policy: Any = None) -> None:
    from .checkpoint import CheckpointPolicy
    from .resume import resume

    path = resume(file, show_progress=progress_enabled(ctx.obj["quiet"]), checkpoints=policy or CheckpointPolicy())
    click.echo(summary_text(path))


@tcm.command("run")
@click.option("--backend", type=click.Choice(["julia", "python"]), default="julia", show_default=True)
@click.option("--seed", type=int, default=101, show_default=True, help="Seed of the data set; solution seeds derive from it.")
@click.option("--solutions", "n_solutions", type=int, default=3, show_default=True, help="Number of solutions to train.")
@click.option("--pairs", type=click.Choice(["all", "chain", "star"]), default="all", show_default=True, help="Which pairs of solutions to connect.")
@click.option("-N", "n_inputs", type=int, default=300, show_default=True, help="Inputs.")
@click.option("-K", "n_hidden", type=int, default=3, show_default=True, help="Hidden units (must divide N).")
@click.option("-M", "n_patterns", type=int, default=620, show_default=True, help="Training patterns.")
@click.option("--train-lr", type=float, default=0.1, show_default=True, help="GD learning rate for the solutions.")
@click.option("--init-scale", type=float, default=None, help="Std of the initial weights in units of 1/sqrt(N/K).")
@click.option("--max-epochs", type=int, default=None, help="GD epochs per training attempt.")
@click.option("--restarts", type=int, default=None, help="Training attempts per solution.")
@click.option("--polish-margin", type=float, default=None, help="Train on until every margin reaches this.")
@_path_options
@click.option("--linear-points", type=int, default=101, show_default=True, help="Points on the straight line W_a -> W_b.")
@click.option("--hessian-points", type=int, default=0, show_default=True, help="Exact Hessian spectra at this many points of each path (0: none).")
@_output_options
@click.pass_context
def tcm_run(ctx: click.Context, backend: str, seed: int, n_solutions: int, pairs: str, n_inputs: int, n_hidden: int, n_patterns: int, train_lr: float, init_scale: Optional[float], max_epochs: Optional[int], restarts: Optional[int], polish_margin: Optional[float], linear_points: int, hessian_points: int, out: Optional[str], force: bool, resume: Optional[str], **path_kw: Any) -> None:
    """Train solutions on one random data set and connect them by zero-error paths."""
    from .tcm_experiment import TCMExperimentConfig, run_tcm_experiment
    from .training import TrainConfig

    done, out = _resumed(ctx, out, resume)
    if done:
        return

    base = TrainConfig()
    train = TrainConfig(
        lr=train_lr,
        init_scale=base.init_scale if init_scale is None else init_scale,
        max_epochs=base.max_epochs if max_epochs is None else max_epochs,
        restarts=base.restarts if restarts is None else restarts,
        polish_margin=base.polish_margin if polish_margin is None else polish_margin,
    )
    cfg = TCMExperimentConfig(
        n_inputs=n_inputs,
        n_hidden=n_hidden,
        n_patterns=n_patterns,
        seed=seed,
        n_solutions=n_solutions,
        pairs=pairs,
        backend=backend,
        linear_points=linear_points,
        train=train,
        path=path_config_from(**path_kw),
    )
    check_hessian_points(hessian_points)
    path = run_tcm_experiment(cfg, out, force=force, show_progress=progress_enabled(ctx.obj["quiet"]), resume=resume is not None, attrs={"hessian_points": hessian_points})
    add_hessians(path, hessian_points, missing_only=resume is not None)


@tcm.command("crosscheck")
@click.option("--seed", type=int, default=7, show_default=True)
@click.option("-N", "n_inputs", type=int, default=None, help="Inputs (default: the cross-check's small size).")
@click.option("-K", "n_hidden", type=int, default=None, help="Hidden units.")
@click.option("-M", "n_patterns", type=int, default=None, help="Patterns.")
def tcm_crosscheck(seed: int, n_inputs: Optional[int], n_hidden: Optional[int], n_patterns: Optional[int]) -> None:
    """Run the Julia and Python backends on the same data and compare them; non-zero exit on disagreement."""
    from .crosscheck import crosscheck

    kw = {k: v for k, v in dict(n_inputs=n_inputs, n_hidden=n_hidden, n_patterns=n_patterns).items() if v is not None}
    report = crosscheck(seed, **kw)
    click.echo(report.format())
    if not report.ok:
        raise RambleError("the Julia and Python backends disagree beyond the documented tolerances (see the table above)")


def check_hessian_points(n: int) -> None:
    if n < 0 or n == 1:
        raise RambleError(f"--hessian-points must be 0 or >= 2 (both endpoints), got {n}")


def add_hessians(path: Path, n: int, subset: Optional[int] = None, device: str = "auto", missing_only: bool = False) -> None:
    """Spectra at ``n`` points of every path of ``path`` (none when n is 0; ``missing_only``: of paths without), then the summary."""
    if n:
        from .spectra import HessianConfig, compute_and_store

        compute_and_store(path, HessianConfig(points=n, subset=subset), device=device, missing_only=missing_only)
    click.echo(summary_text(path))


# ---------------------------------------------------------------- mnist
@main.group(cls=RambleGroup)
def mnist() -> None:
    """LeNet5 on MNIST (paper Sect. 3.2)."""


@mnist.command("run")
@click.option("--train-size", type=int, default=100, show_default=True, help="First n official training images (100 = MNIST-100, 60000 = all).")
@click.option("--test-size", type=int, default=None, help="First k test images (default: all 10,000).")
@click.option("--solutions", "n_solutions", type=int, default=2, show_default=True)
@click.option("--pairs", type=click.Choice(["all", "chain", "star"]), default="all", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True, help="Experiment seed; solution seeds derive from it.")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None, help="Folder with the four official MNIST IDX files (or set RAMBLE_MNIST_DIR).")
@click.option("--download", is_flag=True, help="Download MNIST through torchvision if no local copy is found (needs internet).")
@click.option("--device", default="auto", show_default=True, help="auto (CUDA when present), cpu, cuda or cuda:N.")
@click.option("--train-lr", type=float, default=0.1, show_default=True, help="SGD learning rate for the solutions.")
@click.option("--max-epochs", type=int, default=2000, show_default=True, help="Training epochs per solution.")
@click.option("--batch-size", type=int, default=128, show_default=True, help="Mini-batch size above 1,000 training images (training and the path's GD epochs).")
@click.option("--polish-margin", type=float, default=0.0, show_default=True, help="Train on until every logit margin reaches this.")
@_path_options
@click.option("--points", type=int, default=200, show_default=True, help="About how many points of each path get train and test metrics.")
@click.option("--weight-rows", type=int, default=100, show_default=True, help="About how many of them keep their weights.")
@click.option("--linear-points", type=int, default=101, show_default=True)
@click.option("--hessian-points", type=int, default=0, show_default=True, help="Top-20 Hessian eigenvalues at this many points of each path (0: none).")
@_output_options
@_checkpoint_options
@click.pass_context
def mnist_run(ctx: click.Context, train_size: int, test_size: Optional[int], n_solutions: int, pairs: str, seed: int, data_dir: Optional[str], download: bool, device: str, train_lr: float, max_epochs: int, batch_size: int, polish_margin: float, points: int, weight_rows: int, linear_points: int, hessian_points: int, out: Optional[str], force: bool, resume: Optional[str], checkpoint_every: float, checkpoint_iterations: Optional[int], **path_kw: Any) -> None:
    """Train LeNet5 solutions on MNIST and connect them by zero-error paths, with test metrics."""
    from .checkpoint import CheckpointPolicy
    from .mnist_experiment import MnistExperimentConfig, paper_path_config, run_mnist_experiment

    policy = CheckpointPolicy(checkpoint_every, checkpoint_iterations)
    done, out = _resumed(ctx, out, resume, policy)
    if done:
        return

    if seed < 0:
        raise RambleError(f"--seed must be >= 0, got {seed}")
    base = paper_path_config(train_size)
    for key, default in (("gamma", base.gamma), ("n_epochs", base.n_epochs), ("path_lr", base.lr)):
        if path_kw[key] is None and path_kw["variant"] == "repair":
            path_kw[key] = default
    cfg = MnistExperimentConfig(
        train_size=train_size,
        test_size=test_size,
        n_solutions=n_solutions,
        pairs=pairs,
        seed=seed,
        device=device,
        train_lr=train_lr,
        max_epochs=max_epochs,
        batch_size=batch_size,
        polish_margin=polish_margin,
        points=points,
        weight_rows=weight_rows,
        linear_points=linear_points,
        data_dir=data_dir,
        download=download,
        path=path_config_from(**path_kw),
    )
    check_hessian_points(hessian_points)
    path = run_mnist_experiment(cfg, out, force=force, show_progress=progress_enabled(ctx.obj["quiet"]), resume=resume is not None, checkpoints=policy, attrs={"hessian_points": hessian_points})
    # Whole-set Hessians over a fixed subset of 1,000 images (docs/hessian.md).
    add_hessians(path, hessian_points, subset=None if train_size <= 1000 else 1000, device=device, missing_only=resume is not None)


# ---------------------------------------------------------------- resume
@main.command("resume")
@click.argument("file", type=click.Path(dir_okay=False))
@_checkpoint_options
@click.pass_context
def resume_cmd(ctx: click.Context, file: str, checkpoint_every: float, checkpoint_iterations: Optional[int]) -> None:
    """Continue an interrupted `tcm run` or `mnist run` from its file (the same as `run --resume FILE`)."""
    from .checkpoint import CheckpointPolicy

    _resume_file(ctx, file, CheckpointPolicy(checkpoint_every, checkpoint_iterations))


@main.command("diff")
@click.argument("first", type=click.Path(dir_okay=False))
@click.argument("second", type=click.Path(dir_okay=False))
def diff_cmd(first: str, second: str) -> None:
    """Compare two experiment files, timings aside; exit 1 if they differ."""
    from .filediff import diff

    lines = diff(first, second)
    for line in lines[:50]:
        click.echo(line)
    if lines:
        raise RambleError(f"{len(lines)} difference(s) between {first} and {second}")
    click.echo("same (timings aside)")


# ---------------------------------------------------------------- info / doctor
def summary_text(path: str | Path) -> str:
    """A few lines describing an experiment file."""
    from .io import load

    e = load(path, weights=False)
    lines = [
        f"{e.path}: ramble format {e.attrs.get('format_version')}, model {e.model}, backend {e.backend}, status {e.status}",
    ]
    if e.status == "failed" and "error" in e.attrs:
        lines.append(f"  error: {e.attrs['error']}")
    if "train_inputs" in e.data:
        m, n = e.data["train_inputs"].shape
        lines.append(f"  data: {m} random +-1 patterns of {n} inputs (seed {e.data.get('seed')})")
    elif e.data:
        lines.append(f"  data: {json.dumps({k: v for k, v in e.data.items() if not hasattr(v, 'shape')})[:200]}")
    lines.append(f"  solutions: {len(e.solutions)}")
    for p in e.iter_paths():
        n_iter = p.attrs.get("iterations", 0)
        acc, rep, ref = (p.attrs.get(k, 0) for k in ("elastic_accepted", "elastic_repaired", "elastic_refused"))
        line_err = f", straight line max train error {p.linear.train_error.max():.3f}" if p.linear is not None else ""
        via = p.attrs.get("via", [])
        via = [via] if isinstance(via, int) else list(via)
        how = (f"; through solution {', '.join(map(str, via))}" if via else "") + (
            f"; at {p.attrs['escape_scale']:g}x the norms" if float(p.attrs.get("escape_scale", 1.0)) != 1.0 else ""
        )
        lines.append(
            f"  path {p.name}: {p.status}{' (' + p.reason + ')' if p.reason else ''}{how}; {len(p.distance)} points, "
            f"{n_iter} iterations, {p.attrs.get('waypoints', 0)} waypoint(s) reached of {p.attrs.get('waypoints_trained', 0)} trained, elastic {acc} accepted / {rep} repaired / {ref} refused, "
            f"{float(p.attrs.get('wall_time', 0.0)):.2f} s{line_err}"
        )
        if p.hessian is not None:
            lines.append(f"    hessian at {len(p.hessian.get('index', []))} points ({p.hessian['attrs'].get('method', '')})")
    if e.status != "complete":
        import h5py

        with h5py.File(e.path, "r") as f:
            for name, g in f.get("checkpoints", {}).items():
                done = g["progress/distance"][-1] if "progress/distance" in g and len(g["progress/distance"]) else float("nan")
                lines.append(f"  path {name}: running; checkpoint at iteration {int(g.attrs.get('iteration', -1))} ({done:.3f} of the way), saved {g.attrs.get('saved', '?')}")
        lines.append(f"  incomplete: continue it with `ramble resume {e.path}`")
    return "\n".join(lines)


@main.command("info")
@click.argument("file", type=click.Path(dir_okay=True))
def info(file: str) -> None:
    """Summarise an experiment file."""
    click.echo(summary_text(file))


@main.command("reproduce")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), required=True, help="Folder for the files, figures and REPORT.md.")
@click.option("--scale", type=click.Choice(["quick", "paper", "tiny"]), default="quick", show_default=True, help="quick: 3 TCM data sets, fewer Hessian points (under 15 min on 2 cores); paper: the paper's 10 data sets; tiny: toy sizes, for tests.")
@click.option("--full-mnist/--no-full-mnist", default=None, help="Also the whole-MNIST path (default: only when CUDA is present).")
@click.option("--tcm-backend", type=click.Choice(["julia", "python"]), default="julia", show_default=True)
@click.option("--jobs", type=int, default=None, help="Experiments at a time (default: the cores available).")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None, help="MNIST folder (or set RAMBLE_MNIST_DIR).")
@click.option("--device", default="auto", show_default=True, help="Device for LeNet5.")
@click.pass_context
def reproduce_cmd(ctx: click.Context, out_dir: str, scale: str, full_mnist: Optional[bool], tcm_backend: str, jobs: Optional[int], data_dir: Optional[str], device: str) -> None:
    """Run the paper's experiments, draw Figures 2-5 and write REPORT.md into --out."""
    from .reproduce import reproduce

    report = reproduce(out_dir, scale=scale, tcm_backend=tcm_backend, full_mnist=full_mnist, jobs=jobs, data_dir=data_dir, device=device, show_progress=not ctx.obj["quiet"])
    click.echo(str(report))


@main.command("sweep")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), required=True, help="Sweep folder: one HDF5 file per experiment, index.json, sweep-success.png/pdf, SWEEP.md.")
@click.option("--seeds", default="101-104", show_default=True, help="Data sets: comma-separated seeds and ranges (101-104,110).")
@click.option("--gammas", default="0.001,0.003,0.01,0.03,0.1", show_default=True, help="Elastic constants, each in (0, 1].")
@click.option("--n-epochs", "n_epochs", default="1,2,5", show_default=True, help="N_epochs values, each >= 0.")
@click.option("--variant", "variants", default="paper", show_default=True, help="paper, repair, or both: paper,repair.")
@click.option("--path-lr", "path_lrs", default=None, help="Path learning rates (eta), comma-separated. Default: the variant's (0.1 paper, 0.01 repair).")
@click.option("--backend", type=click.Choice(["julia", "python"]), default="julia", show_default=True)
@click.option("--solutions", "n_solutions", type=int, default=3, show_default=True, help="Solutions per data set.")
@click.option("--pairs", type=click.Choice(["all", "chain", "star"]), default="all", show_default=True)
@click.option("-N", "n_inputs", type=int, default=300, show_default=True)
@click.option("-K", "n_hidden", type=int, default=3, show_default=True)
@click.option("-M", "n_patterns", type=int, default=620, show_default=True)
@click.option("--train-lr", type=float, default=0.1, show_default=True, help="GD learning rate for the solutions.")
@click.option("--max-iterations", type=int, default=20_000, show_default=True, help="Iteration limit of one path.")
@click.option("--weight-every", type=int, default=1, show_default=True, help="Keep the weights of every k-th point of a path (metrics of all); 10 makes the files about 10x smaller.")
@click.option("--linear-points", type=int, default=101, show_default=True)
@click.option("--engine", type=click.Choice(["local", "dask", "serial"]), default="local", show_default=True, help="local: a process pool here; dask: a Dask cluster (pip install \"ramble[cluster]\"); serial: this process.")
@click.option("--workers", type=int, default=None, help="Processes (local, or a Dask LocalCluster started here). Default: the cores available.")
@click.option("--scheduler", default=None, help="Address of a running Dask scheduler (tcp://host:8786); its workers must see --out at the same path.")
@click.pass_context
def sweep_cmd(ctx: click.Context, out_dir: str, seeds: str, gammas: str, n_epochs: str, variants: str, path_lrs: Optional[str], backend: str, n_solutions: int, pairs: str, n_inputs: int, n_hidden: int, n_patterns: int, train_lr: float, max_iterations: int, weight_every: int, linear_points: int, engine: str, workers: Optional[int], scheduler: Optional[str]) -> None:
    """Run a grid of TCM experiments (seeds x gammas x N_epochs x variants) in parallel; success-rate map and SWEEP.md (docs/sweeps.md)."""
    from .sweep import SweepConfig, parse_float_list, parse_int_list, run_sweep, write_sweep_outputs
    from .training import TrainConfig

    cfg = SweepConfig(
        seeds=parse_int_list(seeds, "--seeds"), gammas=parse_float_list(gammas, "--gammas"), n_epochs=parse_int_list(n_epochs, "--n-epochs"),
        variants=tuple(v.strip() for v in variants.split(",") if v.strip()), lrs=None if path_lrs is None else parse_float_list(path_lrs, "--path-lr"),
        n_inputs=n_inputs, n_hidden=n_hidden, n_patterns=n_patterns, n_solutions=n_solutions, pairs=pairs, backend=backend,
        linear_points=linear_points, max_iterations=max_iterations, weight_every=weight_every, train=TrainConfig(lr=train_lr),
    )
    run = run_sweep(cfg, out_dir, engine=engine, workers=workers, scheduler=scheduler, show_progress=progress_enabled(ctx.obj["quiet"]))
    figs, report = write_sweep_outputs(out_dir)
    click.echo(report.read_text())
    click.echo(f"{run.run} experiment(s) run, {run.skipped} already done, {run.wall_time:.1f} s; {report}, {', '.join(map(str, figs))}")
    if run.failed:
        raise RambleError(f"{len(run.failed)} experiment(s) failed (first: {run.failed[0]}); {Path(out_dir) / 'index.json'} lists them")


@main.command("hessian")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--points", type=int, default=None, help="Points evenly spaced in normalised distance, endpoints included (default 20).")
@click.option("--every", type=int, default=None, help="Instead: every k-th stored weight row, plus the last.")
@click.option("--path", "only", default=None, help="Only this path (e.g. 0-1); default: every path.")
@click.option("--k", "k", type=int, default=20, show_default=True, help="Top eigenvalues (LeNet5; the TCM stores its full spectrum).")
@click.option("--which", type=click.Choice(["LA", "LM"]), default="LA", show_default=True, help="Largest algebraic or largest magnitude (PyHessian's).")
@click.option("--tol", type=float, default=1e-3, show_default=True, help="Lanczos residual tolerance, relative.")
@click.option("--subset", type=int, default=None, help="LeNet5: Hessian over the first n training images (default: all).")
@click.option("--subset-seed", type=int, default=None, help="LeNet5: a seeded random subset instead of the first n.")
@click.option("--trace-samples", type=int, default=100, show_default=True, help="Hutchinson probes for the trace (LeNet5).")
@click.option("--backend", type=click.Choice(["julia", "python"]), default=None, help="TCM: which backend computes (default: the file's).")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None, help="LeNet5: MNIST folder, if moved since the run.")
@click.option("--device", default="auto", show_default=True)
def hessian_cmd(file: str, points: Optional[int], every: Optional[int], only: Optional[str], k: int, which: str, tol: float, subset: Optional[int], subset_seed: Optional[int], trace_samples: int, backend: Optional[str], data_dir: Optional[str], device: str) -> None:
    """Hessian spectra along the paths of FILE, stored under /paths/<i>-<j>/hessian."""
    from .lenet import resolve_device
    from .spectra import HessianConfig, compute_and_store

    resolve_device(device)  # an unknown device, or CUDA where there is none, is refused whatever the file's model
    if points is None and every is None:
        points = 20
    cfg = HessianConfig(points=points, every=every, k=k, which=which, tol=tol, subset=subset, subset_seed=subset_seed, trace_samples=trace_samples)
    done = compute_and_store(file, cfg, only=only, backend=backend, data_dir=data_dir, device=device)
    click.echo(f"hessian stored for path(s) {', '.join(done)} in {file}")
    click.echo(summary_text(file))


@main.command("verify")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--sample-rows", type=click.IntRange(min=2), default=20, show_default=True, help="LeNet5: weight rows (both endpoints included) whose training accuracy is recomputed; the TCM checks every row.")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None, help="LeNet5: MNIST folder, if moved since the run.")
@click.option("--device", default="cpu", show_default=True)
def verify_cmd(file: str, sample_rows: int, data_dir: Optional[str], device: str) -> None:
    """Recompute FILE's claims from its stored data: checksums, endpoints, membership in S, Eq. 4 (docs/verify.md)."""
    from .lenet import resolve_device
    from .verify import verify_or_raise

    resolve_device(device)  # refused up front, even for a TCM file that would not use it
    verify_or_raise(file, echo=click.echo, sample_rows=sample_rows, data_dir=data_dir, device=device)


@main.command("connectivity")
@click.argument("file", type=click.Path(dir_okay=False))
def connectivity_cmd(file: str) -> None:
    """Which solutions of FILE are connected inside S: stores /connectivity and prints the statement (docs/connectivity.md)."""
    from .connectivity import OUTCOME_NAMES, connectivity_file

    c = connectivity_file(file)
    click.echo(f"{file}: {c.statement()}")
    if c.n >= 2:
        click.echo("outcome matrix (" + ", ".join(f"{k}: {v}" for k, v in sorted(OUTCOME_NAMES.items())) + "):")
        for row in c.matrix:
            click.echo("  " + " ".join(f"{int(v):2d}" for v in row))


@main.command("convexity")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--samples", type=int, default=2000, show_default=True, help="Points sampled per kind.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the sampling (each kind draws from its own stream).")
@click.option("--kind", "kinds", multiple=True, type=click.Choice(["solutions", "path_hull", "path_segment", "cross_segment"]), help="Only these kinds (repeatable; default: every kind the file allows).")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None, help="LeNet5: MNIST folder, if moved since the run.")
@click.option("--device", default="auto", show_default=True, help="LeNet5: auto, cpu, cuda or cuda:N.")
@click.pass_context
def convexity_cmd(ctx: click.Context, file: str, samples: int, seed: int, kinds: tuple[str, ...], data_dir: Optional[str], device: str) -> None:
    """Sample convex combinations of FILE's solutions and path points; the fraction in S with a Wilson 95 % interval, stored under /convexity."""
    from .convexity import KINDS, probe_and_store

    results, skipped = probe_and_store(file, samples=samples, seed=seed, kinds=kinds or KINDS, data_dir=data_dir, device=device, show_progress=progress_enabled(ctx.obj["quiet"]))
    click.echo(f"{file}: convexity probe, seed {seed}")
    for r in results.values():
        click.echo("  " + r.line())
    for k, why in skipped.items():
        click.echo(f"  {k}: skipped ({why})")


@main.command("curves")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--pair", default=None, help="Only this path (e.g. 0-1); default: every path of FILE.")
@click.option("--steps", type=int, default=None, help="SGD steps on the Bezier control point (default 1000).")
@click.option("--lr", type=float, default=None, help="SGD learning rate (default 0.05).")
@click.option("--momentum", type=float, default=None, help="SGD momentum in [0, 1) (default 0.9).")
@click.option("--weight-decay", type=float, default=None, help="L2 weight decay on the control point (default 0).")
@click.option("--t-samples", type=int, default=None, help="Values of t per SGD step (default 1).")
@click.option("--seed", type=int, default=None, help="Seed of the t samples (default 0).")
@click.option("--points", type=int, default=None, help="Evenly spaced t at which both curves are evaluated, endpoints included (default 61).")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None, help="LeNet5: MNIST folder, if moved since the run.")
@click.option("--device", default="auto", show_default=True, help="LeNet5: auto, cpu, cuda or cuda:N (the TCM runs on the CPU in float64).")
@click.pass_context
def curves_cmd(ctx: click.Context, file: str, pair: Optional[str], data_dir: Optional[str], device: str, **settings: Optional[float]) -> None:
    """Garipov et al.'s Bezier curve and the straight line between FILE's solutions, held against S; stored under /paths/<i>-<j>/curves (docs/curves.md)."""
    from .curves import BezierConfig, run_curves, summary_lines
    from .lenet import resolve_device

    cfg = BezierConfig(**{k: v for k, v in settings.items() if v is not None})
    resolve_device(device)  # refused up front, before any training
    outcomes = run_curves(file, cfg, pair=pair, data_dir=data_dir, device=device, progress=progress_enabled(ctx.obj["quiet"]))
    click.echo(f"{file}: curves stored ({json.dumps(cfg.to_dict(), sort_keys=True)})")
    for line in summary_lines(outcomes):
        click.echo(line)


@main.command("plot")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="figures", show_default=True, help="Folder for the figures.")
@click.option("--format", "formats", type=click.Choice(["png", "pdf"]), multiple=True, default=("png", "pdf"), show_default=True)
def plot(files: tuple[str, ...], out_dir: str, formats: tuple[str, ...]) -> None:
    """Draw the figures of experiment files (from the stored data only)."""
    from .plots import plot_file

    for f in files:
        for p in plot_file(f, out_dir, formats):
            click.echo(str(p))


@main.command("doctor")
def doctor() -> None:
    """Report Python, torch, CUDA, the Julia found and the bridge used, and where MNIST is."""
    import numpy
    import torch

    click.echo(f"ramble {__version__}")
    click.echo(f"python {platform.python_version()} ({sys.executable})")
    click.echo(f"numpy {numpy.__version__}, torch {torch.__version__}, threads {torch.get_num_threads()}")
    cuda = torch.cuda.is_available()
    click.echo(f"cuda: {'available: ' + torch.cuda.get_device_name(0) if cuda else 'not available (CPU only)'}")
    try:
        from .julia_bridge import bridge_info

        click.echo("julia:")
        for k, v in bridge_info().items():
            click.echo(f"  {k}: {v}")
    except RambleError as e:
        click.echo(f"julia: not usable: {e}")
    try:
        from .mnist import find_mnist_dir

        click.echo(f"mnist: {find_mnist_dir()}")
    except (ImportError, AttributeError):
        click.echo("mnist: loader not available")
    except RambleError as e:
        click.echo(f"mnist: {e}")


if __name__ == "__main__":  # pragma: no cover
    main()
