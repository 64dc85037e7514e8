"""Sweeps (ramble.experiments.sweep): validation, engines (Dask LocalCluster, local pool, serial), index, figure, CLI.

One small grid (2 data sets x 2 gammas x 2 variants, 2 solutions each: 8
experiments, 8 paths, N=30, K=3, M=40, Julia backend) is run once per engine;
the tests compare and reuse those folders.  Julia was measured to be about as
fast as the Python backend here including its start in each worker (about
3 s per process), and it exercises the embedded Julia inside Dask workers.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from ramble.cli import main
from ramble.errors import ConfigError, FormatError, RambleError
from ramble.experiments.sweep import (
    INDEX_NAME,
    SweepConfig,
    failure_kind,
    load_sweep,
    parse_float_list,
    parse_int_list,
    run_sweep,
)
from ramble.models.tcm_training import TrainConfig
from ramble.reporting.sweep_outputs import write_sweep_outputs

SMALL = dict(seeds=(1, 2), gammas=(0.01, 0.1), n_epochs=(1,), variants=("paper", "repair"), n_inputs=30, n_hidden=3, n_patterns=40, n_solutions=2, backend="julia", linear_points=11)
CLI_SMALL = ["--seeds", "1-2", "--gammas", "0.01,0.1", "--n-epochs", "1", "--variant", "paper,repair", "-N", "30", "-K", "3", "-M", "40", "--solutions", "2", "--backend", "julia", "--linear-points", "11"]


def small_config(**kw) -> SweepConfig:
    return SweepConfig(**{**SMALL, **kw})


@pytest.fixture(scope="module")
def dask_folder(tmp_path_factory) -> Path:
    # no skip without Dask: scripts/setup.sh installs the cluster extra, and this is the done criterion
    out = tmp_path_factory.mktemp("sweep_dask")
    run = run_sweep(small_config(), out, engine="dask", workers=2, show_progress=False)
    assert run.failed == [] and run.run == 8
    return out


@pytest.fixture(scope="module")
def local_folder(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sweep_local")
    run = run_sweep(small_config(), out, engine="local", workers=2, show_progress=False)
    assert run.failed == [] and run.run == 8
    return out


@pytest.fixture(scope="module")
def serial_folder(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sweep_serial")
    run = run_sweep(small_config(), out, engine="serial", show_progress=False)
    assert run.failed == [] and run.run == 8
    return out


def datasets(path: Path) -> dict[str, np.ndarray]:
    """Every dataset of an HDF5 file, plus every path's stored checksum."""
    out: dict[str, np.ndarray] = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
        for name, g in f["paths"].items():
            out[f"sha256:{name}"] = np.array(g.attrs["sha256"])
    return out


# ----------------------------------------------------------------- config
@pytest.mark.parametrize(
    "kw, message",
    [
        (dict(gammas=(0.0, 0.1)), "--gammas: 0.0 is outside (0, 1]"),
        (dict(gammas=(1.5,)), "--gammas: 1.5 is outside (0, 1]"),
        (dict(gammas=(float("nan"),)), "--gammas: nan is outside (0, 1]"),
        (dict(gammas=()), "--gammas is empty"),
        (dict(seeds=()), "--seeds is empty"),
        (dict(seeds=(-1,)), "--seeds: -1 must be an integer >= 0"),
        (dict(n_epochs=(1, -2)), "--n-epochs: -2 must be an integer >= 0"),
        (dict(n_epochs=(1.5,)), "--n-epochs: 1.5 must be an integer >= 0"),
        (dict(variants=("papr",)), "--variant: 'papr' is not a variant"),
        (dict(lrs=(-0.1,)), "--path-lr: -0.1 must be a finite number >= 0"),
        (dict(gammas=(0.1, 0.1)), "--gammas lists 0.1 twice"),
        (dict(n_solutions=1), "--solutions must be >= 2"),
        (dict(n_inputs=31), "K=3 must divide N=31"),
        (dict(backend="fortran"), "unknown backend 'fortran'"),
        (dict(pairs="some"), "--pairs must be one of"),
        (dict(weight_every=0), "weight_every must be >= 1"),
    ],
)
def test_config_validation(kw, message):
    with pytest.raises(ConfigError) as e:
        small_config(**kw)
    assert message in str(e.value)
    assert "\n" not in str(e.value)


def test_tasks_expand_grid_with_variant_default_lr():
    cfg = small_config(seeds=(3,), gammas=(0.001, 3e-05), n_epochs=(1, 5), variants=("paper", "repair"))
    tasks = cfg.tasks()
    assert len(tasks) == 8 and cfg.n_paths == 8
    assert {t.lr for t in tasks if t.variant == "paper"} == {0.1} and {t.lr for t in tasks if t.variant == "repair"} == {0.01}
    assert len({t.file for t in tasks}) == 8
    t = next(t for t in tasks if t.gamma == 3e-05 and t.variant == "paper" and t.n_epochs == 5)
    assert t.file == "tcm-seed3-paper-lr0.1-gamma3e-05-epochs5.h5"
    c = t.config
    assert (c.path.variant, c.path.gamma, c.path.n_epochs, c.path.lr, c.path.max_waypoints) == ("paper", 3e-05, 5, 0.1, 0)
    assert len(small_config(lrs=(0.1, 0.01)).tasks()) == 2 * 2 * 2 * 2
    assert small_config(weight_every=5).tasks()[0].config.path.weight_every == 5


def test_parse_lists():
    assert parse_int_list("101-104, 110", "--seeds") == (101, 102, 103, 104, 110)
    assert parse_float_list("1e-3,0.01,", "--gammas") == (0.001, 0.01)
    with pytest.raises(ConfigError, match="--seeds: 'a' is not an integer"):
        parse_int_list("1,a", "--seeds")
    with pytest.raises(ConfigError, match="--gammas: 'inf' is not a finite number"):
        parse_float_list("inf", "--gammas")


def test_failure_kinds():
    assert failure_kind("a gradient-descent step left S at iteration 3 (paper: eta, gamma not properly set)") == "GD step left S"
    assert failure_kind("stalled: no 1% progress toward W_b in 500 iterations, 0.2 of the distance left") == "stalled"
    assert failure_kind("iteration limit 20000 reached, 0.1 of the distance left") == "iteration limit"
    assert failure_kind("something else") == "other"


# ----------------------------------------------------------------- engines
def test_dask_local_cluster_runs_the_sweep(dask_folder):
    """Done criterion of the issue: >= 8 paths through the engine's local cluster, every one recorded."""
    sw = load_sweep(dask_folder)
    assert len(sw.tasks) == 8 and len(sw.paths) >= 8
    assert all(t.status == "done" and t.paths == 1 and t.wall_time > 0 for t in sw.tasks)
    # two worker processes, not this one
    workers = {t.worker for t in sw.tasks}
    assert len(workers) == 2 and all(not w.endswith(f":{os.getpid()}") for w in workers)
    for t in sw.tasks:
        with h5py.File(dask_folder / t.file, "r") as f:
            assert f.attrs["status"] == "complete"
            cfg = json.loads(f.attrs["config"])
            assert (cfg["seed"], cfg["path"]["gamma"], cfg["path"]["variant"]) == (t.seed, t.gamma, t.variant)
    # the repair variant arrives at this size; Algorithm 1 as printed does not (docs/path-algorithm.md)
    assert all(p.complete for p in sw.paths if p.variant == "repair")
    assert not any(p.complete for p in sw.paths if p.variant == "paper")


def test_engines_give_identical_files(dask_folder, local_folder, serial_folder):
    files = sorted(p.name for p in serial_folder.glob("*.h5"))
    assert len(files) == 8
    assert sorted(p.name for p in dask_folder.glob("*.h5")) == files == sorted(p.name for p in local_folder.glob("*.h5"))
    for name in files:
        ref = datasets(serial_folder / name)
        for other in (dask_folder, local_folder):
            got = datasets(other / name)
            assert got.keys() == ref.keys(), name
            for k in ref:
                assert np.array_equal(got[k], ref[k]), f"{other.name}/{name}: {k} differs from the serial run"


def test_rerun_skips_finished_and_redoes_missing(dask_folder, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(dask_folder, out)
    stamps = {p.name: p.stat().st_mtime_ns for p in out.glob("*.h5")}
    run = run_sweep(small_config(), out, engine="serial", show_progress=False)
    assert (run.run, run.skipped) == (0, 8)
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.h5")} == stamps
    # a lost file and an unfinished one are run again; an extended grid runs only its new tasks
    names = sorted(stamps)
    (out / names[0]).unlink()
    with h5py.File(out / names[1], "r+") as f:
        f.attrs["status"] = "running"
    run = run_sweep(small_config(gammas=(0.01, 0.1, 0.03)), out, engine="serial", show_progress=False)
    assert (run.run, run.skipped) == (2 + 4, 6)
    # the unfinished file was resumed (its stored paths kept), not started again
    from ramble.storage.filediff import diff

    with h5py.File(out / names[1], "r") as f:
        assert f.attrs["status"] == "complete" and f.attrs["resumes"] == 1
    assert diff(dask_folder / names[1], out / names[1]) == []
    sw = load_sweep(out / INDEX_NAME)
    assert len(sw.tasks) == 12 and all(t.status == "done" for t in sw.tasks)
    assert sorted({t.gamma for t in sw.tasks}) == [0.01, 0.03, 0.1]
    assert [r["to_run"] for r in sw.index["runs"]] == [8, 0, 6]


def test_folder_of_another_sweep_is_refused(dask_folder, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(dask_folder, out)
    with pytest.raises(RambleError, match="holds a sweep with other settings .*n_patterns"):
        run_sweep(small_config(n_patterns=41), out, engine="serial", show_progress=False)
    # a file of another experiment under a task's name is not overwritten
    (out / INDEX_NAME).unlink()
    bad = small_config().tasks()[0]
    shutil.copy(out / small_config().tasks()[1].file, out / bad.file)
    with pytest.raises(RambleError, match=f"{bad.file} holds a different experiment"):
        run_sweep(small_config(), out, engine="serial", show_progress=False)


def test_failed_experiment_is_recorded_and_the_sweep_goes_on(tmp_path):
    # one GD epoch and one attempt cannot solve M=40: training fails with a RambleError
    cfg = small_config(seeds=(1,), gammas=(0.1,), variants=("repair",), train=TrainConfig(max_epochs=1, restarts=1, polish_margin=0.0))
    run = run_sweep(cfg, tmp_path, engine="serial", show_progress=False)
    assert run.run == 1 and len(run.failed) == 1
    sw = load_sweep(tmp_path)
    assert sw.tasks[0].status == "failed" and "restarts" in sw.tasks[0].error
    assert sw.paths == [] and sw.success()[0].task_errors == 1
    # a failed experiment is not finished: the rerun tries it again
    assert run_sweep(cfg, tmp_path, engine="serial", show_progress=False).run == 1


# ----------------------------------------------------------------- analysis
def test_load_sweep_reads_the_index(dask_folder):
    sw = load_sweep(dask_folder)
    files = load_sweep(dask_folder, from_files=True)
    assert [(p.file, p.pair, p.status, p.reason) for p in sw.paths] == [(p.file, p.pair, p.status, p.reason) for p in files.paths]
    assert sw.fixed["n_inputs"] == 30 and sw.index["axes"]["gammas"] == [0.01, 0.1]
    a = sw.paths_array()
    assert a.shape == (8,) and a.dtype.names[:6] == ("file", "seed", "variant", "lr", "gamma", "n_epochs")
    assert int(a["complete"].sum()) == sum(p.complete for p in sw.paths) == 4
    assert np.all(a["reached"][a["complete"]] == 1.0) and np.all(a["reached"][~a["complete"]] < 1.0)
    assert np.all(a["elastic_accepted"] + a["elastic_refused"] > 0)
    cells = {(c.variant, c.gamma): c for c in sw.success()}
    assert len(cells) == 4 and all(c.paths == 2 for c in cells.values())
    assert cells[("repair", 0.1)].rate == 1.0 and cells[("paper", 0.01)].rate == 0.0
    assert sum(cells[("paper", 0.01)].failures.values()) == 2


def test_load_sweep_refuses_other_files(tmp_path):
    (tmp_path / "x.json").write_text('{"format": "something"}')
    with pytest.raises(FormatError, match="not a ramble sweep index"):
        load_sweep(tmp_path / "x.json")
    with pytest.raises(FormatError, match="no such sweep index"):
        load_sweep(tmp_path)


def test_figure_and_report(dask_folder, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(dask_folder, out)
    figs, report = write_sweep_outputs(out)
    assert [p.name for p in figs] == ["sweep-success.png", "sweep-success.pdf"]
    assert all(p.stat().st_size > 5000 for p in figs)
    text = report.read_text()
    assert "**4/8 paths complete**" in text
    assert "## paper variant, path lr 0.1: 0/4 paths complete" in text
    assert "## repair variant, path lr 0.01: 4/4 paths complete" in text
    assert "| 1 | 2/2 (100 %) | 2/2 (100 %) |" in text


# ----------------------------------------------------------------- CLI
def test_cli_reruns_a_finished_sweep_and_draws(dask_folder, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(dask_folder, out)
    (out / "sweep-success.png").unlink(missing_ok=True)
    r = CliRunner().invoke(main, ["--quiet", "sweep", "--out", str(out), *CLI_SMALL, "--engine", "serial"])
    assert r.exit_code == 0, r.output
    assert "0 experiment(s) run, 8 already done" in r.output
    assert (out / "sweep-success.png").exists() and (out / "SWEEP.md").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--gammas", "0.1,2"], "error: --gammas: 2.0 is outside (0, 1]"),
        (["--gammas", ","], "error: --gammas is empty: give at least one value"),
        (["--n-epochs", "one"], "error: --n-epochs: 'one' is not an integer or a range like 101-104"),
        (["--seeds", "9-3"], "error: --seeds: range '9-3' runs backwards"),
        (["--variant", "paper,fast"], "error: --variant: 'fast' is not a variant (expected paper or repair)"),
        (["--path-lr", "x"], "error: --path-lr: 'x' is not a number"),
        (["--engine", "local", "--workers", "0"], "error: --workers must be >= 1, got 0"),
        (["--engine", "serial", "--scheduler", "tcp://127.0.0.1:8786"], "error: --scheduler is for --engine dask, not serial"),
    ],
)
def test_cli_one_line_errors(tmp_path, args, message):
    r = CliRunner().invoke(main, ["sweep", "--out", str(tmp_path / "s"), *CLI_SMALL, *args])
    assert r.exit_code == 1, r.output
    assert r.output.strip().splitlines()[-1] == message


def test_cli_without_dask_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed -> ImportError
    r = CliRunner().invoke(main, ["sweep", "--out", str(tmp_path / "s"), *CLI_SMALL, "--engine", "dask"])
    assert r.exit_code == 1
    assert r.output.strip() == 'error: --engine dask needs dask.distributed, which is not installed: pip install "ramble[cluster]"'
    assert not (tmp_path / "s").exists()
