"""Convexity probe (issue 7, part 3): Wilson intervals, membership, what is provably inside, seeds, refusals, the report."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from ramble.analysis.convexity import KINDS, ProbeResult, Sources, format_line, probe, probe_kind, read_convexity, read_sources, wilson_interval
from ramble.cli import main
from ramble.core.path import PathConfig
from ramble.errors import ConfigError
from ramble.experiments.tcm_experiment import TCMExperimentConfig, run_tcm_experiment, tcm_counter
from ramble.reporting.report import write_report
from ramble.storage.io import load

FAST_PATH = PathConfig(gamma=0.05, tol=0.01)


def run(*args: str):
    return CliRunner().invoke(main, ["--quiet", *args], catch_exceptions=False)


def _make(out: Path, n_inputs: int, n_hidden: int, n_patterns: int, seed: int) -> Path:
    cfg = TCMExperimentConfig(n_inputs=n_inputs, n_hidden=n_hidden, n_patterns=n_patterns, seed=seed, n_solutions=3, backend="python", path=FAST_PATH)
    return run_tcm_experiment(cfg, out, show_progress=False)


@pytest.fixture(scope="module")
def k3(tmp_path_factory) -> Path:
    """K=3, N=30, M=40: a committee machine whose straight lines leave S (seed 101: line 0-1 does)."""
    return _make(tmp_path_factory.mktemp("cvx") / "k3.h5", 30, 3, 40, 101)


@pytest.fixture(scope="module")
def k1(tmp_path_factory) -> Path:
    """K=1: a perceptron; S = {w : sigma_mu xi_mu . w > 0 for all mu} is an open convex cone."""
    return _make(tmp_path_factory.mktemp("cvx") / "k1.h5", 20, 1, 15, 3)


def _copy(src: Path, dst: Path) -> Path:
    dst.write_bytes(src.read_bytes())
    return dst


def test_wilson_interval_known_values() -> None:
    # reference values of the Wilson score interval at 95 %
    assert wilson_interval(8, 10) == pytest.approx((0.4902, 0.9433), abs=1e-4)
    assert wilson_interval(50, 100) == pytest.approx((0.4038, 0.5962), abs=1e-4)
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert wilson_interval(10, 10) == pytest.approx((0.7225, 1.0), abs=1e-4)
    assert wilson_interval(1, 1) == pytest.approx((0.2065, 1.0), abs=1e-4)
    with pytest.raises(ConfigError, match="n >= 1"):
        wilson_interval(0, 0)
    with pytest.raises(ConfigError, match="inside must be in 0..n=5, got 6"):
        wilson_interval(6, 5)


def test_perceptron_every_combination_is_inside(k1: Path) -> None:
    """For K=1 S is convex (and a cone), so every kind must find 100 % inside, rescaled or not."""
    results, skipped = probe(k1, samples=300, seed=1)
    assert skipped == {} and set(results) == set(KINDS)
    for r in results.values():
        assert r.inside == r.n == 300, r.line()
        assert r.extra["rescaled_inside"] == 300
        assert r.ci[1] == 1.0 and r.ci[0] > 0.98


def test_point_on_a_straight_line_that_leaves_s_is_outside(k3: Path) -> None:
    e = load(k3, weights=False)
    line = e.paths["0-1"].linear
    worst = int(np.argmax(line.train_error))
    assert line.train_error[worst] > 0  # the data set is chosen so that this line leaves S
    a = float(line.alpha[worst])
    w = (1 - a) * e.solutions[0] + a * e.solutions[1]
    with h5py.File(k3, "r") as f:
        count, m = tcm_counter(f)
    got = count(np.stack([w, e.solutions[0], e.solutions[1]]))
    assert got[0] == round(line.train_error[worst] * m) > 0
    assert got[1] == got[2] == 0


def test_segment_fraction_matches_the_stored_straight_line(k3: Path) -> None:
    """Dirichlet(1) over two solutions is a uniform point of the line: its fraction inside is the line's."""
    e = load(k3, weights=False)
    with h5py.File(k3, "r") as f:
        src = read_sources(f)
        count, m = tcm_counter(f)
    two = Sources(src.solutions[:2], [], [])
    r = probe_kind("solutions", two, count, m, samples=2000, seed=5)
    grid = float(np.mean(e.paths["0-1"].linear.train_error == 0))
    assert 0 < r.fraction < 1
    assert abs(r.fraction - grid) < 0.05, (r.fraction, grid)


def test_reproducible_from_the_seed_and_stored(k3: Path, tmp_path: Path) -> None:
    f = _copy(k3, tmp_path / "k3.h5")
    a, _ = probe(f, samples=200, seed=7)
    b, _ = probe(f, samples=200, seed=7)
    c, _ = probe(f, samples=200, seed=8)
    for k in KINDS:
        np.testing.assert_array_equal(a[k].errors, b[k].errors)
    assert any(not np.array_equal(a[k].errors, c[k].errors) for k in KINDS)
    # one kind alone gives the same numbers as within the full probe (own stream per kind)
    alone, _ = probe(f, samples=200, seed=7, kinds=["path_segment"])
    np.testing.assert_array_equal(alone["path_segment"].errors, a["path_segment"].errors)

    r = run("convexity", str(f), "--samples", "200", "--seed", "7")
    assert r.exit_code == 0, r.output
    stored = read_convexity(f)
    assert list(stored) == list(KINDS)
    for k, at in stored.items():
        assert at["n"] == 200 and at["inside"] == a[k].inside and at["seed"] == 7
        assert at["fraction"] == pytest.approx(a[k].inside / 200)
        assert at["ci_low"] <= at["fraction"] <= at["ci_high"]
        assert format_line(k, at) in r.output
    with h5py.File(f, "r") as h:
        np.testing.assert_array_equal(h["convexity/path_segment/errors"][()], a["path_segment"].errors)
        assert h["convexity/cross_segment/t"].shape == (200,)
    assert run("verify", str(f)).exit_code == 0  # the paths and their checksums are untouched

    # the report states the stored numbers
    report = write_report(tmp_path / "rep", [f], formats=("png",)).read_text()
    assert "all 3 solutions form one connected set inside S:" in report
    for k, at in stored.items():
        assert format_line(k, at) in report
    assert "figures/connectivity_k3.png" in report


def test_kinds_that_cannot_be_sampled_are_skipped(k3: Path, tmp_path: Path) -> None:
    f = _copy(k3, tmp_path / "k3.h5")
    with h5py.File(f, "r+") as h:  # keep one complete path only
        for name in ("0-2", "1-2"):
            h[f"paths/{name}"].attrs["status"] = "failed"
    results, skipped = probe(f, samples=20, seed=0)
    assert set(results) == {"solutions", "path_hull", "path_segment"}
    assert skipped == {"cross_segment": "needs >= 2 complete paths, the file has 1"}
    assert results["path_hull"].extra["paths_used"] == '["0-1"]'


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--samples", "0"], "error: --samples must be an integer in [1, 1000000], got 0"),
        (["--samples", "2000000"], "error: --samples must be an integer in [1, 1000000], got 2000000"),
        (["--seed", "-1"], "error: --seed must be an integer >= 0, got -1"),
    ],
)
def test_cli_refuses_bad_arguments_with_one_line(k3: Path, args: list[str], needle: str) -> None:
    before = k3.read_bytes()
    r = run("convexity", str(k3), *args)
    assert r.exit_code == 1 and r.output.strip() == needle
    assert k3.read_bytes() == before


def test_cli_refuses_missing_and_unfinished_files(tmp_path: Path) -> None:
    r = run("convexity", str(tmp_path / "nope.h5"))
    assert r.exit_code == 1 and "no such file" in r.output and r.output.strip().count("\n") == 0
    with h5py.File(tmp_path / "run.h5", "w") as f:
        f.attrs.update({"format": "ramble", "format_version": 1, "model": "tcm", "status": "running", "config": "{}"})
    r = run("convexity", str(tmp_path / "run.h5"))
    assert r.exit_code == 1 and r.output.strip() == f"error: {tmp_path / 'run.h5'} has status 'running'; the convexity probe needs a complete file"
    assert run("convexity", str(tmp_path / "run.h5"), "--kind", "bogus").exit_code == 2  # usage error (click)


def test_probe_result_attrs_are_consistent() -> None:
    r = ProbeResult("solutions", 0, "how", np.array([0, 0, 3, 0, 1]), n_train=10)
    a = r.attrs()
    assert (a["n"], a["inside"], a["fraction"], a["max_errors"]) == (5, 3, 0.6, 3)
    assert a["mean_train_error_outside"] == pytest.approx(0.2)
    assert (a["ci_low"], a["ci_high"]) == pytest.approx(wilson_interval(3, 5))
