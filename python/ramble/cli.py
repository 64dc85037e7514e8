"""The ``ramble`` command line.

Errors meant for the user (:class:`ramble.errors.RambleError`) print as one
line, ``error: ...``, and exit with status 1; usage errors exit with 2
(click's convention).  ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import errno
import inspect
import json
import logging
import platform
import sys
from pathlib import Path
from typing import Any, Optional

import click
import numpy as np

from ramble import __version__
from ramble.errors import RambleError
from ramble.progress import progress_enabled, setup_logging

log = logging.getLogger("ramble")


#: OS errors that are the machine's state, not a bug: a full disk, a file size
#: limit, a quota, no permission, a read-only file system.
_MACHINE_ERRNOS = frozenset({errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS})


def _debug(ctx: click.Context) -> bool:
    """--debug given, before the command or after it."""
    return bool(ctx.find_root().params.get("debug") or (ctx.obj or {}).get("debug"))


def _full_short_help(cmd: click.Command) -> str:
    """The first paragraph of the help, whole: the formatter wraps it rather than cutting it at a "." or a width."""
    if cmd.short_help:
        return cmd.short_help
    return " ".join(inspect.cleandoc(cmd.help or "").split("\n\n")[0].split())


def _late_global(ctx: click.Context, param: click.Parameter, value: bool) -> bool:
    """-q/-v/--debug given after the command: the same as before it."""
    if value:
        ctx.ensure_object(dict)[str(param.name)] = True
        setup_logging(quiet=ctx.obj.get("quiet", False), verbose=ctx.obj.get("verbose", False))
    return value


def _global_options() -> list[click.Option]:
    """The root's -q/-v/--debug, accepted by every command too (``ramble tcm run ... -q``)."""
    return [
        click.Option(["--debug"], is_flag=True, expose_value=False, is_eager=True, callback=_late_global, help="Show tracebacks instead of one-line errors (also: ramble --debug ...)."),
        click.Option(["-q", "--quiet"], is_flag=True, expose_value=False, is_eager=True, callback=_late_global, help="No progress bars; warnings and errors only (also: ramble -q ...)."),
        click.Option(["-v", "--verbose"], is_flag=True, expose_value=False, is_eager=True, callback=_late_global, help="Debug logging (also: ramble -v ...)."),
    ]


class RambleCommand(click.Command):
    """A command that also takes the global options and shows its whole first help sentence in listings."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.params.extend(_global_options())

    def get_short_help_str(self, limit: int = 45) -> str:
        return _full_short_help(self)


class RambleGroup(click.Group):
    """A click group that turns RambleError (and a full disk or a permission error) into a one-line message and exit 1."""

    command_class = RambleCommand
    group_class = type  # subgroups are RambleGroups too

    def get_short_help_str(self, limit: int = 45) -> str:
        return _full_short_help(self)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except RambleError as e:
            if _debug(ctx):
                raise
            # one line, whatever the message holds (HDF5's OS errors and Julia's carry newlines)
            click.echo("error: " + " ".join(str(e).split()), err=True)
            ctx.exit(1)
        except OSError as e:
            if e.errno not in _MACHINE_ERRNOS or _debug(ctx):
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
    ctx.obj = {"quiet": quiet, "debug": debug, "verbose": verbose}


# ---------------------------------------------------------------- tcm
@main.group(cls=RambleGroup)
def tcm() -> None:
    """Tree Committee Machine on random +-1 patterns (paper Sect. 3.1)."""


class ConfigOption(click.Option):
    """An option whose default (a callable) and help (``help_fn``) are read from the config dataclasses when needed.

    Defaults are defined once, in :class:`ramble.core.path.PathConfig` and the
    experiment configs; the CLI shows them (``--help``) without importing
    torch at startup.
    """

    def __init__(self, *args: Any, help_fn: Optional[Any] = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.help_fn = help_fn

    def get_default(self, ctx: click.Context, call: bool = True) -> Any:
        return super().get_default(ctx, call=True)  # so --help shows the value, not "(dynamic)"

    def get_help_record(self, ctx: click.Context) -> Optional[tuple[str, str]]:
        if self.help_fn is not None:
            self.help = self.help_fn()
        return super().get_help_record(ctx)


def config_option(*decls: str, default: Any = None, help_fn: Any = None, **kw: Any) -> Any:
    """``click.option`` with a lazily computed default (shown in --help) and/or help text."""
    if callable(default):
        kw.setdefault("show_default", True)
    return click.option(*decls, cls=ConfigOption, default=default, help_fn=help_fn, **kw)


def _path_default(name: str) -> Any:
    from ramble.core.path import PathConfig

    return getattr(PathConfig(), name)


def _network_path_default(name: str) -> Any:
    from ramble.experiments.mnist_experiment import paper_path_config

    return getattr(paper_path_config(100), name)


def _variant_help(what: str, attr: str, mnist: bool) -> Any:
    """Help text naming the default of ``attr`` per variant (TCM) or per training-set size (LeNet5), from the configs."""

    def text() -> str:
        from ramble.core.path import PathConfig

        if mnist:
            from ramble.experiments.mnist_experiment import paper_path_config

            small, whole = getattr(paper_path_config(100), attr), getattr(paper_path_config(60_000), attr)
            when = f"{small:g}" if small == whole else f"{small:g} up to 1,000 training images, {whole:g} above"
            return f"{what} Default: {when} (the paper's MNIST settings, either variant)."
        return f"{what} Default: {getattr(PathConfig(), attr):g} (repair), {getattr(PathConfig.paper(), attr):g} (paper)."

    return text


def _path_options_for(mnist: bool, network: bool) -> Any:
    def decorate(f: Any) -> Any:
        opts = [
            click.option("--variant", type=click.Choice(["repair", "paper"]), default="repair", show_default=True, help="Path algorithm: 'paper' is Algorithm 1 as printed (reference), 'repair' the default that arrives (docs/path-algorithm.md)."),
            config_option("--gamma", type=float, help_fn=_variant_help("Elastic constant of Eq. 3, in (0, 1].", "gamma", mnist)),
            config_option("--n-epochs", type=int, help_fn=_variant_help("GD epochs per iteration (N_epochs).", "n_epochs", mnist)),
            config_option("--path-lr", type=float, help_fn=_variant_help("GD learning rate on the path.", "lr", mnist)),
            config_option("--margin-target", type=float, default=lambda: _path_default("margin_target"), help="Repair lifts margins below this."),
            config_option("--max-iterations", type=int, default=lambda: _path_default("max_iterations"), help="Iteration limit of one path."),
            config_option("--tol", type=float, default=lambda: _path_default("tol"), help="Arrival radius as a fraction of |W_a - W_b|."),
            config_option("--max-waypoints", type=int, default=lambda: _path_default("max_waypoints"), help="Solutions a path may go through when a leg stalls (repair variant; 0: none)."),
            config_option("--elastic-halvings", type=int, default=(lambda: _network_path_default("elastic_halvings")) if network else (lambda: _path_default("elastic_halvings")), help="A refused elastic step is retried at half the pull this many times (0: never)."),
            config_option("--chord-iterations", type=int, default=(lambda: _network_path_default("chord_iterations")) if network else (lambda: _path_default("chord_iterations")), help="Certify lazily: the moves of up to this many iterations are certified as one chord from the last vertex (1: every move as it is made; the Julia backend needs 1). Networks cap it at the iterations between recorded points (--points)." if network else "Certify lazily: the moves of up to this many iterations are certified as one chord from the last vertex (1: every move as it is made; the Julia backend needs 1)."),
            config_option("--patience", type=int, default=lambda: _path_default("patience"), help="A leg stalls when its distance to the target has not shrunk by 1 % in this many iterations (then a waypoint, or failure)."),
            config_option("--escape/--no-escape", default=lambda: _path_default("escape"), help="Repair variant: a path that fails even through waypoints is drawn again at 1.5x and then 2x the endpoints' norms, joined to them by certified radial segments (the norm escape)."),
        ]
        for o in reversed(opts):
            f = o(f)
        return f

    return decorate


#: The path options of ``tcm run`` (defaults per variant); ``mnist run`` uses the paper's MNIST settings.
_path_options = _path_options_for(mnist=False, network=False)
_mnist_path_options = _path_options_for(mnist=True, network=True)
_torch_path_options = _path_options_for(mnist=False, network=True)


def path_config_from(variant: str, gamma: Optional[float], n_epochs: Optional[int], path_lr: Optional[float], margin_target: float, max_iterations: int, tol: float, max_waypoints: int = 10, **extra: Any):
    from ramble.core.path import PathConfig

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
    return click.option("--checkpoint-every", type=float, default=60.0, show_default=True,
                        help="Commit a running path's state to the file every this many seconds, checked after every GD epoch and repair round, so also inside an iteration (a TCM path on the Julia backend is one call: it is drawn again instead).")(f)


#: Options that say how to run, not what to compute: allowed beside --resume.
RUN_ONLY_OPTIONS = ("resume", "checkpoint_every", "checkpoint_iterations", "model_ref", "run_stored_code")  # the last two: where a torch model comes from


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
    from ramble.experiments.resume import resume
    from ramble.storage.checkpoint import CheckpointPolicy

    path = resume(file, show_progress=progress_enabled(ctx.obj["quiet"]), checkpoints=policy or CheckpointPolicy())
    click.echo(summary_text(path))


def _train_default(name: str) -> Any:
    from ramble.models.tcm_training import TrainConfig

    return getattr(TrainConfig(), name)


@tcm.command("run")
@click.option("--backend", type=click.Choice(["julia", "python"]), default="julia", show_default=True)
@click.option("--seed", type=int, default=101, show_default=True, help="Seed of the data set; solution seeds derive from it.")
@click.option("--solutions", "n_solutions", type=int, default=3, show_default=True, help="Number of solutions to train.")
@click.option("--pairs", type=click.Choice(["all", "chain", "star"]), default="all", show_default=True, help="Which pairs of solutions to connect.")
@click.option("-N", "n_inputs", type=int, default=300, show_default=True, help="Inputs.")
@click.option("-K", "n_hidden", type=int, default=3, show_default=True, help="Hidden units (must divide N).")
@click.option("-M", "n_patterns", type=int, default=620, show_default=True, help="Training patterns.")
@config_option("--train-lr", type=float, default=lambda: _train_default("lr"), help="GD learning rate for the solutions.")
@config_option("--init-scale", type=float, default=lambda: _train_default("init_scale"), help="Std of the initial weights in units of 1/sqrt(N/K).")
@config_option("--max-epochs", type=int, default=lambda: _train_default("max_epochs"), help="GD epochs per training attempt.")
@config_option("--restarts", type=int, default=lambda: _train_default("restarts"), help="Training attempts per solution.")
@config_option("--polish-margin", type=float, default=lambda: _train_default("polish_margin"), help="Train on until every margin reaches this.")
@_path_options
@click.option("--linear-points", type=int, default=101, show_default=True, help="Points on the straight line W_a -> W_b.")
@click.option("--hessian-points", type=int, default=0, show_default=True, help="Exact Hessian spectra at this many points of each path (0: none).")
@_output_options
@_checkpoint_options
@click.pass_context
def tcm_run(ctx: click.Context, backend: str, seed: int, n_solutions: int, pairs: str, n_inputs: int, n_hidden: int, n_patterns: int, train_lr: float, init_scale: Optional[float], max_epochs: Optional[int], restarts: Optional[int], polish_margin: Optional[float], linear_points: int, hessian_points: int, out: Optional[str], force: bool, resume: Optional[str], checkpoint_every: float, checkpoint_iterations: Optional[int], **path_kw: Any) -> None:
    """Train solutions on one random data set and connect them by zero-error paths."""
    from ramble.experiments.tcm_experiment import TCMExperimentConfig, run_tcm_experiment
    from ramble.storage.checkpoint import CheckpointPolicy
    from ramble.threads import limit_threads

    limit_threads(1)  # TCM-sized linear algebra gains nothing from threads and loses much on a busy machine
    from ramble.models.tcm_training import TrainConfig

    policy = CheckpointPolicy(checkpoint_every, checkpoint_iterations)
    done, out = _resumed(ctx, out, resume, policy)
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
    path = run_tcm_experiment(cfg, out, force=force, show_progress=progress_enabled(ctx.obj["quiet"]), resume=resume is not None, attrs={"hessian_points": hessian_points}, checkpoints=policy)
    add_hessians(path, hessian_points, missing_only=resume is not None, progress=progress_enabled(ctx.obj["quiet"]))


def _crosscheck_size(name: str) -> int:
    from ramble.julia.crosscheck import DEFAULT_SIZE

    return int(DEFAULT_SIZE[name])


@tcm.command("crosscheck")
@click.option("--seed", type=int, default=7, show_default=True)
@config_option("-N", "n_inputs", type=int, default=lambda: _crosscheck_size("n_inputs"), help="Inputs (the cross-check's small size).")
@config_option("-K", "n_hidden", type=int, default=lambda: _crosscheck_size("n_hidden"), help="Hidden units.")
@config_option("-M", "n_patterns", type=int, default=lambda: _crosscheck_size("n_patterns"), help="Patterns.")
def tcm_crosscheck(seed: int, n_inputs: Optional[int], n_hidden: Optional[int], n_patterns: Optional[int]) -> None:
    """Run the Julia and Python backends on the same data and compare them; non-zero exit on disagreement."""
    from ramble.julia.crosscheck import crosscheck

    kw = {k: v for k, v in dict(n_inputs=n_inputs, n_hidden=n_hidden, n_patterns=n_patterns).items() if v is not None}
    report = crosscheck(seed, **kw)
    click.echo(report.format())
    if not report.ok:
        raise RambleError("the Julia and Python backends disagree beyond the documented tolerances (see the table above)")


def check_hessian_points(n: int) -> None:
    if n < 0 or n == 1:
        raise RambleError(f"--hessian-points must be 0 or >= 2 (both endpoints), got {n}")


def add_hessians(path: Path, n: int, subset: Optional[int] = None, device: str = "auto", missing_only: bool = False, progress: bool = False) -> None:
    """Spectra at ``n`` points of every path of ``path`` (none when n is 0; ``missing_only``: of paths without), then the summary."""
    if n:
        from ramble.analysis.spectra import HessianConfig, compute_and_store

        log.info("hessian: spectra at %d points of each path (TCM: exact; LeNet5: top-20 by Lanczos)", n)
        compute_and_store(path, HessianConfig(points=n, subset=subset), device=device, missing_only=missing_only, progress=progress)
    click.echo(summary_text(path))


# ---------------------------------------------------------------- mnist
@main.group(cls=RambleGroup)
def mnist() -> None:
    """LeNet5 on MNIST (paper Sect. 3.2)."""


def _mnist_default(name: str) -> Any:
    from ramble.experiments.mnist_experiment import MnistExperimentConfig

    return getattr(MnistExperimentConfig(), name)


@mnist.command("run")
@click.option("--train-size", type=int, default=100, show_default=True, help="First n official training images (100 = MNIST-100, 60000 = all).")
@click.option("--test-size", type=int, default=None, help="First k test images (default: all 10,000).")
@click.option("--solutions", "n_solutions", type=int, default=2, show_default=True)
@click.option("--pairs", type=click.Choice(["all", "chain", "star"]), default="all", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True, help="Experiment seed; solution seeds derive from it.")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None, help="Folder with the four official MNIST IDX files (or set RAMBLE_MNIST_DIR).")
@click.option("--download", is_flag=True, help="Download MNIST through torchvision if no local copy is found (needs internet).")
@click.option("--device", default="auto", show_default=True, help="auto (CUDA when present), cpu, cuda or cuda:N.")
@config_option("--train-lr", type=float, default=lambda: _mnist_default("train_lr"), help="SGD learning rate for the solutions.")
@config_option("--max-epochs", type=int, default=lambda: _mnist_default("max_epochs"), help="Training epochs per solution.")
@config_option("--batch-size", type=int, default=lambda: _mnist_default("batch_size"), help="Mini-batch size above 1,000 training images (training and the path's GD epochs).")
@config_option("--polish-margin", type=float, default=lambda: _mnist_default("polish_margin"), help="Train on until every logit margin reaches this.")
@_mnist_path_options
@config_option("--points", type=int, default=lambda: _mnist_default("points"), help="About how many points of each path get train and test metrics.")
@config_option("--weight-rows", type=int, default=lambda: _mnist_default("weight_rows"), help="About how many of them keep their weights (first and last always).")
@config_option("--linear-points", type=int, default=lambda: _mnist_default("linear_points"), help="Points on the straight line W_a -> W_b, with train and test metrics.")
@click.option("--hessian-points", type=int, default=0, show_default=True, help="Top-20 Hessian eigenvalues at this many points of each path (0: none).")
@_output_options
@_checkpoint_options
@click.pass_context
def mnist_run(ctx: click.Context, train_size: int, test_size: Optional[int], n_solutions: int, pairs: str, seed: int, data_dir: Optional[str], download: bool, device: str, train_lr: float, max_epochs: int, batch_size: int, polish_margin: float, points: int, weight_rows: int, linear_points: int, hessian_points: int, out: Optional[str], force: bool, resume: Optional[str], checkpoint_every: float, checkpoint_iterations: Optional[int], **path_kw: Any) -> None:
    """Train LeNet5 solutions on MNIST and connect them by zero-error paths, with test metrics."""
    from ramble.experiments.mnist_experiment import MnistExperimentConfig, paper_path_config, run_mnist_experiment
    from ramble.storage.checkpoint import CheckpointPolicy

    policy = CheckpointPolicy(checkpoint_every, checkpoint_iterations)
    done, out = _resumed(ctx, out, resume, policy)
    if done:
        return

    if seed < 0:
        raise RambleError(f"--seed must be >= 0, got {seed}")
    base = paper_path_config(train_size)  # the paper's MNIST settings, for either variant
    for key, default in (("gamma", base.gamma), ("n_epochs", base.n_epochs), ("path_lr", base.lr)):
        if path_kw[key] is None:
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
    add_hessians(path, hessian_points, subset=None if train_size <= 1000 else 1000, device=device, missing_only=resume is not None, progress=progress_enabled(ctx.obj["quiet"]))


# ---------------------------------------------------------------- torch (your own classifier)
def _choose_model(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """Record --model / --run-stored-code for the analyses of a torch file (ramble.experiments.torch_experiment.choose_model)."""
    from ramble.experiments.torch_experiment import choose_model, chosen_model

    if param.name == "model_ref":
        choose_model(value, chosen_model().run_stored_code)
    else:
        choose_model(chosen_model().ref, bool(value))
    return value


def _model_source_options(f):
    """--model FILE.py:FACTORY and --run-stored-code: how a torch file's model is rebuilt (docs/models.md)."""
    f = click.option("--run-stored-code", is_flag=True, expose_value=False, callback=_choose_model, help="Torch files: run the model source stored in the file (it may come from anyone: only for files you trust).")(f)
    return click.option("--model", "model_ref", default=None, expose_value=False, callback=_choose_model, help="Torch files: the model factory FILE.py:FACTORY the file was made with (checked against its stored sha256).")(f)


@main.group("torch", cls=RambleGroup)
def torch_group() -> None:
    """Your own PyTorch classifier on your own data (docs/models.md)."""


@torch_group.command("run")
@click.option("--model", "model_ref", default=None, help="FILE.py:FACTORY: a zero-argument function returning the nn.Module ((B, ...) -> (B, C) logits).")
@click.option("--data", "data", type=click.Path(dir_okay=False), default=None, help=".npz with train_inputs, train_labels and optionally test_inputs, test_labels.")
@click.option("--solutions", "n_solutions", type=int, default=2, show_default=True)
@click.option("--pairs", type=click.Choice(["all", "chain", "star"]), default="all", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True, help="Experiment seed; solution seeds derive from it.")
@click.option("--device", default="auto", show_default=True, help="auto (CUDA when present), cpu, cuda or cuda:N.")
@click.option("--dtype", type=click.Choice(["float32", "float64"]), default="float32", show_default=True)
@click.option("--train-lr", type=float, default=0.1, show_default=True, help="GD/SGD learning rate for the solutions.")
@click.option("--max-epochs", type=int, default=2000, show_default=True, help="Training epochs per solution.")
@click.option("--batch-size", type=int, default=128, show_default=True, help="Mini-batch size above --full-batch-max samples.")
@click.option("--full-batch-max", type=int, default=1000, show_default=True, help="Up to this many samples, full-batch GD.")
@click.option("--polish-margin", type=float, default=0.0, show_default=True, help="Train on until every logit margin reaches this.")
@click.option("--groups", type=click.Choice(["tensor", "module", "all"]), default="tensor", show_default=True, help="Eq. 4 groups: one per parameter tensor, per module, or one for all.")
@_torch_path_options
@click.option("--points", type=int, default=200, show_default=True, help="About how many points of each path get metrics.")
@click.option("--weight-rows", type=int, default=100, show_default=True, help="About how many of them keep their weights.")
@click.option("--linear-points", type=int, default=101, show_default=True)
@click.option("--hessian-points", type=int, default=0, show_default=True, help="Top-20 Hessian eigenvalues at this many points of each path (0: none).")
@click.option("--run-stored-code", is_flag=True, help="With --resume alone: run the model source stored in the file.")
@_output_options
@_checkpoint_options
@click.pass_context
def torch_run(ctx: click.Context, model_ref: Optional[str], data: Optional[str], hessian_points: int, run_stored_code: bool, out: Optional[str], force: bool, resume: Optional[str], checkpoint_every: float, checkpoint_iterations: Optional[int], **kw: Any) -> None:
    """Train solutions of your model on your data and connect them by zero-error paths."""
    from ramble.experiments.torch_experiment import TorchExperimentConfig, choose_model, run_cli
    from ramble.storage.checkpoint import CheckpointPolicy

    choose_model(model_ref, run_stored_code)
    policy = CheckpointPolicy(checkpoint_every, checkpoint_iterations)
    done, out = _resumed(ctx, out, resume, policy)
    if done:
        return
    check_hessian_points(hessian_points)
    path_kw = {k: kw.pop(k) for k in list(kw) if k not in TorchExperimentConfig.__dataclass_fields__}
    path = run_cli(model_ref, data, kw, path_config_from(**path_kw), out, force=force, resume=resume is not None, show_progress=progress_enabled(ctx.obj["quiet"]), checkpoints=policy, hessian_points=hessian_points)
    add_hessians(path, hessian_points, device=kw["device"], missing_only=resume is not None, progress=progress_enabled(ctx.obj["quiet"]))


# ---------------------------------------------------------------- resume
@main.command("resume")
@click.argument("file", type=click.Path(dir_okay=False))
@_model_source_options
@_checkpoint_options
@click.pass_context
def resume_cmd(ctx: click.Context, file: str, checkpoint_every: float, checkpoint_iterations: Optional[int]) -> None:
    """Continue an interrupted `tcm run` or `mnist run` from its file (the same as `run --resume FILE`)."""
    from ramble.storage.checkpoint import CheckpointPolicy

    _resume_file(ctx, file, CheckpointPolicy(checkpoint_every, checkpoint_iterations))


@main.command("diff")
@click.argument("first", type=click.Path(dir_okay=False))
@click.argument("second", type=click.Path(dir_okay=False))
def diff_cmd(first: str, second: str) -> None:
    """Compare two experiment files, timings aside; exit 1 if they differ."""
    from ramble.storage.filediff import diff

    lines = diff(first, second)
    for line in lines[:50]:
        click.echo(line)
    if lines:
        raise RambleError(f"{len(lines)} difference(s) between {first} and {second}")
    click.echo("same (timings aside)")


# ---------------------------------------------------------------- info / doctor
def _pct(x: float) -> str:
    return f"{100 * float(x):.2f} %"


def data_line(e: Any) -> str:
    """What the file's data are, in words (no JSON): TCM patterns, or which MNIST images from where."""
    from ramble.models.registry import model_spec

    try:
        own = model_spec(e.model).describe_data(e)
    except RambleError:  # a model this ramble does not know: its /data still say something
        own = None
    if own is not None:
        return own
    source = e.data.get("source")
    try:
        source = json.loads(source) if isinstance(source, str) else dict(source or {})
    except (TypeError, ValueError):
        source = {}
    if e.data.get("kind") == "mnist":
        n_files = len(source.get("files", {}))
        return (f"MNIST training images {e.data.get('train_indices', '?')}, test images {e.data.get('test_indices', '?')} "
                f"({source.get('kind', 'official')} files in {source.get('folder', '?')}, {n_files} sha256 recorded)")
    plain = ", ".join(f"{k} {v}" for k, v in e.data.items() if not hasattr(v, "shape") and k != "source")
    return plain or "(none recorded)"


def length_text(p: Any) -> str:
    """The path's length against the straight line's, or why it is not known."""
    if p.arclength is None:
        return f"length unknown ({p.arclength_source})"
    ratio = p.length_ratio
    how = "" if p.arclength_source == "stored" else " (from the stored points)"
    return f"length {float(p.arclength[-1]):.4g} = {ratio:.2f}x the straight line{how}"


def test_error_text(p: Any) -> str:
    """Test error at both endpoints and at the best recorded point (percent), for paths with test metrics."""
    te = p.test_error
    if te is None or not len(te):
        return ""
    k = int(np.argmin(te))
    return f"test error {_pct(te[0])} at W_a, {_pct(te[-1])} at the end, best {_pct(te[k])} at distance {float(p.distance[k]):.2f}"


def summary_text(path: str | Path) -> str:
    """A few lines describing an experiment file; errors and rates in percent."""
    from ramble.storage.io import load

    e = load(path, weights=False)
    lines = [
        f"{e.path}: ramble format {e.attrs.get('format_version')}, model {e.model}, backend {e.backend}, status {e.status}"
        + (f", {float(e.attrs['wall_time']):.1f} s in all" if "wall_time" in e.attrs else ""),
    ]
    if e.status == "failed" and "error" in e.attrs:
        lines.append(f"  error: {e.attrs['error']}")
    lines.append(f"  data: {data_line(e)}")
    lines.append(f"  solutions: {len(e.solutions)}")
    for i in sorted(e.solution_attrs):
        te = e.solution_attrs[i].get("test_error")
        if te is not None:
            lines.append(f"    solution {i}: test error {_pct(te)}, {e.solution_attrs[i].get('epochs', '?')} epochs")
    for p in e.iter_paths():
        n_iter = p.attrs.get("iterations", 0)
        acc, rep, ref = (p.attrs.get(k, 0) for k in ("elastic_accepted", "elastic_repaired", "elastic_refused"))
        line_err = f", straight line max train error {_pct(p.linear.train_error.max())}" if p.linear is not None else ""
        via = p.attrs.get("via", [])
        via = [via] if isinstance(via, int) else list(via)
        how = (f"; through solution {', '.join(map(str, via))}" if via else "") + (
            f"; at {p.attrs['escape_scale']:g}x the norms" if float(p.attrs.get("escape_scale", 1.0)) != 1.0 else ""
        )
        lines.append(
            f"  path {p.name}: {p.status}{' (' + p.reason + ')' if p.reason else ''}{how}; {len(p.distance)} points, "
            f"{n_iter} iterations, {p.attrs.get('waypoints', 0)} waypoint(s) reached of {p.attrs.get('waypoints_trained', 0)} trained, elastic {acc} accepted / {rep} repaired / {ref} refused, "
            f"path {float(p.attrs.get('wall_time', 0.0)):.2f} s{line_err}"
        )
        lines.append(f"    {length_text(p)}")
        if test_error_text(p):
            lines.append(f"    {test_error_text(p)}")
        if p.hessian is not None:
            lines.append(f"    hessian at {len(p.hessian.index)} points ({p.hessian.attrs.get('method', '')})")
        if p.controls is not None:
            from ramble.analysis.controls import read_controls, verdict_line

            lines.append(f"    controls: {verdict_line(read_controls(p) or {})}")
    if e.status != "complete":
        from ramble.storage.views import checkpoint_summaries

        for c in checkpoint_summaries(e.path):
            where = "inside" if c.inside else "at"
            # + 0.0: a point a rounding error behind W_a reads 0.000, not -0.000
            lines.append(f"  path {c.unit}: running; checkpoint {where} iteration {c.iteration} ({round(c.distance, 3) + 0.0:.3f} of the way), saved {c.saved}")
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
@click.option("--c15-seeds", default=None, help="Seeds of extra MNIST-100 runs whose controls C15 counts, comma-separated (default: the scale's: none for quick, 1,2,3 for paper; C15 needs 3 pairs with controls).")
@click.pass_context
def reproduce_cmd(ctx: click.Context, out_dir: str, scale: str, full_mnist: Optional[bool], tcm_backend: str, jobs: Optional[int], data_dir: Optional[str], device: str, c15_seeds: Optional[str]) -> None:
    """Run the paper's experiments, draw Figures 2-5 and write REPORT.md into --out."""
    from ramble.experiments.reproduce import reproduce
    from ramble.experiments.sweep import parse_int_list

    seeds = None if c15_seeds is None else (tuple(parse_int_list(c15_seeds, "--c15-seeds")) if c15_seeds.strip() else ())
    report = reproduce(out_dir, scale=scale, tcm_backend=tcm_backend, full_mnist=full_mnist, jobs=jobs, data_dir=data_dir, device=device, show_progress=not ctx.obj["quiet"], c15_seeds=seeds)
    click.echo(str(report))


@main.command("sweep")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), required=True, help="Sweep folder: one HDF5 file per experiment, index.json, sweep-success.png/pdf, SWEEP.md.")
@click.option("--seeds", default="101-104", show_default=True, help="Data sets: comma-separated seeds and ranges (101-104,110).")
@click.option("--gammas", default="0.001,0.003,0.01,0.03,0.1", show_default=True, help="Elastic constants, each in (0, 1].")
@click.option("--n-epochs", "n_epochs", default="1,2,5", show_default=True, help="N_epochs values, each >= 0.")
@click.option("--variant", "variants", default="repair", show_default=True, help="repair, paper, or both: paper,repair.")
@config_option("--path-lr", "path_lrs", default=None, help_fn=_variant_help("Path learning rates (eta), comma-separated.", "lr", mnist=False))
@click.option("--backend", type=click.Choice(["julia", "python"]), default="julia", show_default=True)
@click.option("--solutions", "n_solutions", type=int, default=3, show_default=True, help="Solutions per data set.")
@click.option("--pairs", type=click.Choice(["all", "chain", "star"]), default="all", show_default=True)
@click.option("-N", "n_inputs", type=int, default=300, show_default=True)
@click.option("-K", "n_hidden", type=int, default=3, show_default=True)
@click.option("-M", "n_patterns", type=int, default=620, show_default=True)
@config_option("--train-lr", type=float, default=lambda: _train_default("lr"), help="GD learning rate for the solutions.")
@click.option("--max-iterations", type=int, default=20_000, show_default=True, help="Iteration limit of one path.")
@click.option("--weight-every", type=int, default=1, show_default=True, help="Keep the weights of every k-th point of a path (metrics of all); 10 makes the files about 10x smaller.")
@click.option("--linear-points", type=int, default=101, show_default=True)
@click.option("--engine", type=click.Choice(["local", "dask", "serial"]), default="local", show_default=True, help="local: a process pool here; dask: a Dask cluster (pip install \"ramble[cluster]\"); serial: this process.")
@click.option("--workers", type=int, default=None, help="Processes (local, or a Dask LocalCluster started here). Default: the cores available.")
@click.option("--scheduler", default=None, help="Address of a running Dask scheduler (tcp://host:8786); its workers must see --out at the same path.")
@click.pass_context
def sweep_cmd(ctx: click.Context, out_dir: str, seeds: str, gammas: str, n_epochs: str, variants: str, path_lrs: Optional[str], backend: str, n_solutions: int, pairs: str, n_inputs: int, n_hidden: int, n_patterns: int, train_lr: float, max_iterations: int, weight_every: int, linear_points: int, engine: str, workers: Optional[int], scheduler: Optional[str]) -> None:
    """Run a grid of TCM experiments (seeds x gammas x N_epochs x variants) in parallel; success-rate map and SWEEP.md (docs/sweeps.md)."""
    from ramble.experiments.sweep import SweepConfig, parse_float_list, parse_int_list, run_sweep
    from ramble.models.tcm_training import TrainConfig
    from ramble.reporting.sweep_outputs import write_sweep_outputs

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
@_model_source_options
@click.option("--points", type=int, default=None, help="Points evenly spaced in normalised distance, endpoints included (default 20).")
@click.option("--every", type=int, default=None, help="Instead: every k-th stored weight row, plus the last.")
@click.option("--path", "only", default=None, help="Only this path (e.g. 0-1); default: every path.")
@click.option("--k", "k", type=int, default=20, show_default=True, help="Top eigenvalues (LeNet5; the TCM stores its full spectrum).")
@click.option("--which", type=click.Choice(["LA", "LM"]), default="LA", show_default=True, help="Largest algebraic or largest magnitude (PyHessian's).")
@click.option("--tol", type=float, default=1e-3, show_default=True, help="Lanczos residual tolerance, relative.")
@click.option("--subset", type=int, default=None, help="LeNet5: Hessian over the first n training images (default: all).")
@click.option("--subset-seed", type=int, default=None, help="LeNet5: a seeded random subset instead of the first n.")
@click.option("--trace-samples", type=int, default=10, show_default=True, help="Hutchinson probes for the trace, deflated by the Lanczos basis (LeNet5 on more than 1,000 images; up to 1,000 the trace is exact; 0 skips it; docs/hessian.md).")
@click.option("--backend", type=click.Choice(["julia", "python"]), default=None, help="TCM: which backend computes (default: the file's).")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None, help="LeNet5: MNIST folder, if moved since the run.")
@click.option("--device", default="auto", show_default=True)
@click.pass_context
def hessian_cmd(ctx: click.Context, file: str, points: Optional[int], every: Optional[int], only: Optional[str], k: int, which: str, tol: float, subset: Optional[int], subset_seed: Optional[int], trace_samples: int, backend: Optional[str], data_dir: Optional[str], device: str) -> None:
    """Hessian spectra along the paths of FILE, stored under /paths/<i>-<j>/hessian."""
    from ramble.analysis.spectra import HessianConfig, compute_and_store
    from ramble.models.lenet import resolve_device

    resolve_device(device)  # an unknown device, or CUDA where there is none, is refused whatever the file's model
    if points is None and every is None:
        points = 20
    cfg = HessianConfig(points=points, every=every, k=k, which=which, tol=tol, subset=subset, subset_seed=subset_seed, trace_samples=trace_samples)
    done = compute_and_store(file, cfg, only=only, backend=backend, data_dir=data_dir, device=device, progress=progress_enabled(ctx.obj["quiet"]))
    click.echo(f"hessian stored for path(s) {', '.join(done)} in {file}")
    click.echo(summary_text(file))


@main.command("verify")
@click.argument("file", type=click.Path(dir_okay=False))
@_model_source_options
@click.option("--sample-rows", type=click.IntRange(min=2), default=20, show_default=True, help="LeNet5: weight rows (both endpoints included) whose training accuracy is recomputed; the TCM checks every row.")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None, help="LeNet5: MNIST folder, if moved since the run.")
@click.option("--device", default="cpu", show_default=True)
@click.option("--segments/--no-segments", default=True, show_default=True, help="Certify the straight segment between every two consecutive stored weight rows (TCM exactly, networks by bound propagation).")
@click.option("--max-pieces", type=click.IntRange(min=1), default=200, show_default=True, help="Networks: bounded pieces per chord (stored rows that are not consecutive vertices) before it is reported as not certified; path segments get the run's limits.")
@click.option("--replay", is_flag=True, help="LeNet5 and torch files: rerun every path on --device from the stored config and endpoints, every move certified, and check the stored rows bit for bit.")
def verify_cmd(file: str, sample_rows: int, data_dir: Optional[str], device: str, segments: bool, max_pieces: int, replay: bool) -> None:
    """Recompute FILE's claims from its stored data: checksums, endpoints, membership in S, Eq. 4, certified segments (docs/verify.md)."""
    from ramble.analysis.verify import verify_or_raise
    from ramble.models.lenet import resolve_device

    resolve_device(device)  # refused up front, even for a TCM file that would not use it
    verify_or_raise(file, echo=click.echo, sample_rows=sample_rows, data_dir=data_dir, device=device, segments=segments, max_pieces=max_pieces, replay=replay)


@main.command("connectivity")
@click.argument("file", type=click.Path(dir_okay=False))
def connectivity_cmd(file: str) -> None:
    """Which solutions of FILE are connected inside S: stores /connectivity and prints the statement (docs/connectivity.md)."""
    from ramble.analysis.connectivity import OUTCOME_NAMES, connectivity_file

    c = connectivity_file(file)
    click.echo(f"{file}: {c.statement()}")
    if c.n >= 2:
        click.echo("outcome matrix (" + ", ".join(f"{k}: {v}" for k, v in sorted(OUTCOME_NAMES.items())) + "):")
        for row in c.matrix:
            click.echo("  " + " ".join(f"{int(v):2d}" for v in row))


@main.command("convexity")
@click.argument("file", type=click.Path(dir_okay=False))
@_model_source_options
@click.option("--samples", type=int, default=2000, show_default=True, help="Points sampled per kind.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the sampling (each kind draws from its own stream).")
@click.option("--kind", "kinds", multiple=True, type=click.Choice(["solutions", "path_hull", "path_segment", "cross_segment"]), help="Only these kinds (repeatable; default: every kind the file allows).")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None, help="LeNet5: MNIST folder, if moved since the run.")
@click.option("--device", default="auto", show_default=True, help="LeNet5: auto, cpu, cuda or cuda:N.")
@click.pass_context
def convexity_cmd(ctx: click.Context, file: str, samples: int, seed: int, kinds: tuple[str, ...], data_dir: Optional[str], device: str) -> None:
    """Sample convex combinations of FILE's solutions and path points; the fraction in S with a Wilson 95 % interval, stored under /convexity."""
    from ramble.analysis.convexity import KINDS, probe_and_store

    results, skipped = probe_and_store(file, samples=samples, seed=seed, kinds=kinds or KINDS, data_dir=data_dir, device=device, show_progress=progress_enabled(ctx.obj["quiet"]))
    click.echo(f"{file}: convexity probe, seed {seed}")
    for r in results.values():
        click.echo("  " + r.line())
    for k, why in skipped.items():
        click.echo(f"  {k}: skipped ({why})")


@main.command("curves")
@click.argument("file", type=click.Path(dir_okay=False))
@_model_source_options
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
    from ramble.analysis.curves import BezierConfig, run_curves, summary_lines
    from ramble.models.lenet import resolve_device

    cfg = BezierConfig(**{k: v for k, v in settings.items() if v is not None})
    resolve_device(device)  # refused up front, before any training
    outcomes = run_curves(file, cfg, pair=pair, data_dir=data_dir, device=device, progress=progress_enabled(ctx.obj["quiet"]))
    click.echo(f"{file}: curves stored ({json.dumps(cfg.to_dict(), sort_keys=True)})")
    for line in summary_lines(outcomes):
        click.echo(line)


@main.command("align")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--pair", default=None, help="Only this pair (e.g. 0-1); default: every path of FILE.")
@click.option("--method", type=click.Choice(["weights", "activations"]), default="weights", show_default=True, help="Git Re-Basin weight matching, or activation matching on the training inputs.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of weight matching's random layer order.")
@click.option("--no-path", is_flag=True, help="Skip ramble's path W_i -> pi(W_j) (the slow part).")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None, help="LeNet5: MNIST folder, if moved since the run.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@_model_source_options
@click.pass_context
def align_cmd(ctx: click.Context, file: str, pair: Optional[str], method: str, seed: int, no_path: bool, data_dir: Optional[str], device: str) -> None:
    """Align W_j's hidden units to W_i's (Git Re-Basin) and hold the aligned line and path against S; stored under /paths/<i>-<j>/align (docs/align.md)."""
    from ramble.analysis.align import align_file, summary_lines
    from ramble.models.lenet import resolve_device

    resolve_device(device)  # refused up front
    outcomes = align_file(file, pair, method, data_dir=data_dir, device=device, seed=seed, with_path=not no_path, progress=progress_enabled(ctx.obj["quiet"]))
    click.echo(f"{file}: alignment stored ({method} matching)")
    for line in summary_lines(file, [o.name for o in outcomes], method):
        click.echo(line)


@main.command("plot")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="figures", show_default=True, help="Folder for the figures.")
@click.option("--format", "formats", type=click.Choice(["png", "pdf"]), multiple=True, default=("png", "pdf"), show_default=True)
@click.option("--x", "x_axis", type=click.Choice(["distance", "arclength"]), default="distance", show_default=True, help="x axis of the path figures: the paper's normalised distance 1 - |w - W_b| / |W_a - W_b|, or the path's arc length in units of |W_a - W_b| (the straight line ends at 1).")
def plot(files: tuple[str, ...], out_dir: str, formats: tuple[str, ...], x_axis: str) -> None:
    """Draw the figures of experiment files (from the stored data only)."""
    from ramble.reporting.plots import plot_file

    for f in files:
        for p in plot_file(f, out_dir, formats, x_axis=x_axis):
            click.echo(str(p))


@main.command("controls")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--pair", default=None, help="Only this path (e.g. 0-1); default: every complete path.")
@config_option("--max-epochs", type=int, default=lambda: _control_default("max_epochs"), help="Cap on the epochs of the converged control (training on until the loss of the path's best point).")
@config_option("--evaluations", type=int, default=lambda: _control_default("evaluations"), help="Test evaluations along each continued training.")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None, help="MNIST folder, if moved since the run.")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda or cuda:N.")
@click.pass_context
def controls_cmd(ctx: click.Context, file: str, pair: Optional[str], max_epochs: int, evaluations: int, data_dir: Optional[str], device: str) -> None:
    """Train each endpoint of FILE's LeNet5 paths on, as controls for the path's best test error; stored under /paths/<i>-<j>/controls (docs/report.md, C15)."""
    from ramble.analysis.controls import ControlConfig, run_controls, verdict_line

    done = run_controls(file, ControlConfig(max_epochs=max_epochs, evaluations=evaluations), pair=pair, data_dir=data_dir, device=device, progress=progress_enabled(ctx.obj["quiet"]))
    for name, summary in done.items():
        click.echo(f"{file} path {name}: {verdict_line(summary)}")


def _control_default(name: str) -> Any:
    from ramble.analysis.controls import ControlConfig

    return getattr(ControlConfig(), name)


@main.group("config")
def config_group() -> None:
    """Per-user settings (~/.config/ramble/config.json), e.g. where MNIST is."""


@config_group.command("set")
@click.argument("key", type=click.Choice(["mnist-dir"]))
@click.argument("value")
def config_set(key: str, value: str) -> None:
    """Store a setting: `ramble config set mnist-dir DIR` makes every command find MNIST in DIR, from any folder."""
    from ramble.userconfig import set_value

    where = set_value(key, value)
    click.echo(f"{key} = {json.loads(where.read_text())[key]} (in {where})")


@config_group.command("show")
def config_show() -> None:
    """Print the stored settings and the file that holds them."""
    from ramble.userconfig import config_path, read_config

    data = read_config()
    click.echo(f"{config_path()}{'' if data else ' (no settings)'}")
    for k, v in sorted(data.items()):
        click.echo(f"  {k} = {v}")


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
        from ramble.julia.bridge import bridge_info

        click.echo("julia:")
        for k, v in bridge_info().items():
            click.echo(f"  {k}: {v}")
    except RambleError as e:
        click.echo(f"julia: not usable: {e}")
    try:
        from ramble.models.mnist import locate_mnist

        folder, how = locate_mnist()
        click.echo(f"mnist: {folder} (found by: {how})")
    except (ImportError, AttributeError):
        click.echo("mnist: loader not available")
    except RambleError as e:
        click.echo(f"mnist: {e}")


if __name__ == "__main__":  # pragma: no cover
    main()
