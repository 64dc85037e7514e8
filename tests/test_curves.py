"""Other methods' curves held against S (ramble.analysis.curves, `ramble curves`): the Bezier curve of Garipov et al. and the straight line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from ramble.analysis.curves import (
    BezierConfig,
    bezier_objective,
    bezier_point,
    evaluate_bezier,
    evaluate_line,
    line_point,
    outside_fraction,
    train_bezier,
)
from ramble.analysis.verify import verify_file
from ramble.cli import main
from ramble.errors import ConfigError
from ramble.storage.io import load

FIXTURE = str(Path(__file__).parent / "fixtures" / "mnist")


def _invoke(args: list[str]):
    return CliRunner().invoke(main, ["--quiet", *args])


# ----------------------------------------------------------------- the curve and its objective
def test_objective_gradient_matches_finite_differences(small_tcm):
    prob, (wa, wb) = small_tcm
    gen = torch.Generator().manual_seed(1)
    theta = 0.5 * (wa + wb) + 0.3 * torch.randn(wa.shape, generator=gen, dtype=torch.float64)
    ts = torch.tensor([0.17, 0.5, 0.83], dtype=torch.float64)
    loss, grad = bezier_objective(prob, wa, theta, wb, ts)
    assert grad.dtype == torch.float64 and grad.shape == wa.shape
    direct = np.mean([prob.evaluate(bezier_point(wa, theta, wb, float(t))).loss for t in ts])
    assert loss == pytest.approx(direct, rel=1e-12)
    eps = 1e-6
    for k in range(4):
        d = torch.randn(wa.shape, generator=gen, dtype=torch.float64)
        d /= d.norm()
        up = bezier_objective(prob, wa, theta + eps * d, wb, ts)[0]
        down = bezier_objective(prob, wa, theta - eps * d, wb, ts)[0]
        fd = (up - down) / (2 * eps)
        assert float(grad @ d) == pytest.approx(fd, rel=1e-5, abs=1e-9), f"direction {k}"


def test_endpoints_are_exactly_the_solutions(small_tcm):
    prob, (wa, wb) = small_tcm
    theta = torch.randn(wa.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64) * 10
    assert torch.equal(bezier_point(wa, theta, wb, 0.0), wa)
    assert torch.equal(bezier_point(wa, theta, wb, 1.0), wb)
    assert torch.equal(line_point(wa, wb, 0.0), wa) and torch.equal(line_point(wa, wb, 1.0), wb)
    # theta at the midpoint: the Bezier curve is the straight line
    mid = 0.5 * (wa + wb)
    for t in (0.1, 0.5, 0.9):
        torch.testing.assert_close(bezier_point(wa, mid, wb, t), line_point(wa, wb, t), rtol=1e-13, atol=1e-13)
    ev = evaluate_bezier(prob, wa, theta, wb, 5)
    np.testing.assert_array_equal(ev.t, [0, 0.25, 0.5, 0.75, 1])
    assert ev.train_error[0] == 0 and ev.train_error[-1] == 0  # both ends are solutions


def test_training_lowers_the_expected_loss_and_is_reproducible(small_tcm):
    prob, (wa, wb) = small_tcm
    cfg = BezierConfig(steps=300, seed=5, points=41)
    res = train_bezier(prob, wa, wb, cfg)
    line = evaluate_line(prob, wa, wb, cfg.points)
    bez = evaluate_bezier(prob, wa, res.theta, wb, cfg.points)
    assert bez.expected_loss < 0.9 * line.expected_loss, (bez.expected_loss, line.expected_loss)
    assert res.loss_history.shape == (300,) and np.all(np.isfinite(res.loss_history))
    h = res.history_summary()
    assert h["loss_last"] < h["loss_first"]
    again = train_bezier(prob, wa, wb, cfg)
    assert torch.equal(again.theta, res.theta)
    other = train_bezier(prob, wa, wb, BezierConfig(steps=300, seed=6, points=41))
    assert not torch.equal(other.theta, res.theta)
    assert bez.outside_fraction == outside_fraction(bez.train_error) == float(np.mean(bez.train_error > 0))
    assert bez.max_train_error == float(bez.train_error.max())


@pytest.mark.parametrize(
    "kw, word",
    [
        (dict(steps=0), "--steps=0"),
        (dict(lr=0.0), "--lr=0.0"),
        (dict(lr=float("nan")), "--lr=nan"),
        (dict(momentum=1.0), "--momentum=1.0"),
        (dict(weight_decay=-1.0), "--weight-decay=-1.0"),
        (dict(t_samples=0), "--t-samples=0"),
        (dict(seed=-1), "--seed=-1"),
        (dict(points=1), "--points=1"),
    ],
)
def test_bad_config_is_refused_in_one_line(kw, word):
    with pytest.raises(ConfigError) as err:
        BezierConfig(**kw)
    msg = str(err.value)
    assert word in msg and "\n" not in msg and "range" in msg


# ----------------------------------------------------------------- the command on files
@pytest.fixture(scope="module")
def tcm_file(tmp_path_factory):
    out = tmp_path_factory.mktemp("tcm") / "t.h5"
    r = _invoke(["tcm", "run", "--backend", "python", "-N", "30", "-K", "3", "-M", "40", "--solutions", "2", "--seed", "4", "--out", str(out)])
    assert r.exit_code == 0, r.output
    r = _invoke(["curves", str(out), "--steps", "60", "--points", "21", "--seed", "4", "--lr", "0.05"])
    assert r.exit_code == 0, r.output
    return out, r.output


def test_cli_stores_curves_that_load_exposes(tcm_file):
    path, output = tcm_file
    e = load(path)
    p = e.paths["0-1"]
    assert set(p.curves) == {"bezier", "linear"}
    b, lin = p.curves["bezier"], p.curves["linear"]
    assert json.loads(b.attrs["config"]) == dict(BezierConfig(steps=60, points=21, seed=4, lr=0.05).to_dict())
    for c in (b, lin):
        np.testing.assert_allclose(c.t, np.linspace(0, 1, 21))
        assert c.attrs["outside_fraction"] == pytest.approx(float(np.mean(c.train_error > 0)))
        assert c.attrs["max_train_error"] == pytest.approx(float(c.train_error.max()))
        assert "test_error" not in c.extra and not c.attrs["has_test"] and "no test" in c.attrs["no_test"]
    assert b.extra["theta"].shape == e.solutions[0].shape and b.extra["loss_history"].shape == (60,)
    # the stored straight line agrees with a recomputation from the file's own data
    from ramble.analysis.curves import problem_from_file

    fp = problem_from_file(e)
    line = evaluate_line(fp.problem, fp.solutions[0], fp.solutions[1], 21)
    np.testing.assert_array_equal(line.train_error, lin.train_error)
    theta = torch.from_numpy(b.extra["theta"])
    bez = evaluate_bezier(fp.problem, fp.solutions[0], theta, fp.solutions[1], 21)
    np.testing.assert_array_equal(bez.train_error, b.train_error)
    # the one-line summary names each curve's fraction outside S
    assert "Bezier curve" in output and "straight line" in output and "outside S" in output
    # adding curves leaves the file's own claims intact (checksums cover the path's datasets)
    assert verify_file(path).ok


def test_figure_from_the_stored_curves(tcm_file, tmp_path):
    path, _ = tcm_file
    r = _invoke(["plot", str(path), "--out", str(tmp_path), "--format", "png"])
    assert r.exit_code == 0, r.output
    fig = tmp_path / f"{Path(path).stem}_curves_0-1.png"
    assert fig.exists() and fig.stat().st_size > 10_000


def test_report_states_each_fraction_outside_s(tcm_file, tmp_path):
    from ramble.reporting.report import curves_lines

    path, _ = tcm_file
    e = load(path, weights=False)
    text = "\n".join(curves_lines([e]))
    assert e.paths["0-1"].curves["linear"].attrs["outside_fraction"] > 0  # this seed's straight line leaves S
    assert "| ramble path | " in text and "**0.0%**" in text
    for key, name in (("bezier", "Bezier curve"), ("linear", "straight line")):
        frac = float(np.mean(e.paths["0-1"].curves[key].train_error > 0))
        assert f"| {name} | 21 | **{100 * frac:.1f}%** |" in text


def test_cli_refusals_are_one_line_with_exit_1(tcm_file, tmp_path):
    path, _ = tcm_file
    for args, word in (
        (["--steps", "0"], "--steps"),
        (["--points", "1"], "--points"),
        (["--momentum", "1.5"], "--momentum"),
        (["--pair", "0-7"], "no path"),
        (["--device", "tpu"], "device"),
    ):
        r = _invoke(["curves", str(path), *args])
        assert r.exit_code == 1, (args, r.output)
        lines = r.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:") and word in lines[0], (args, r.output)
    running = tmp_path / "running.h5"
    running.write_bytes(Path(path).read_bytes())
    with h5py.File(running, "r+") as f:
        f.attrs["status"] = "running"
    before = running.read_bytes()
    r = _invoke(["curves", str(running), "--steps", "5"])
    assert r.exit_code == 1 and "status 'running'" in r.output and len(r.output.strip().splitlines()) == 1
    assert running.read_bytes() == before  # nothing was written


def test_cli_on_mnist_stores_test_error(shared_mnist_file, tmp_path):
    out = tmp_path / "m.h5"
    shutil.copy(shared_mnist_file, out)  # conftest: `mnist run` with MNIST_FAST (two solutions)
    r = _invoke(["curves", str(out), "--steps", "8", "--points", "5", "--device", "cpu", "--data-dir", FIXTURE])
    assert r.exit_code == 0, r.output
    p = load(out).paths["0-1"]
    lin, b = p.curves["linear"], p.curves["bezier"]
    for c in (lin, b):
        assert c.attrs["has_test"] and c.extra["test_error"].shape == (5,) and np.all((c.extra["test_error"] > 0) & (c.extra["test_error"] < 1))
        assert c.extra["test_loss"][0] == pytest.approx(p.extra["test_loss"][0], rel=1e-5)  # t = 0 is W_a, the path's first point
    assert b.extra["theta"].dtype == np.float32 and b.extra["theta"].shape == (61706,)
    # the same 5 points as the run's own straight line (--linear-points 5): the same training errors
    np.testing.assert_array_equal(lin.train_error, p.linear.train_error)
    r = _invoke(["plot", str(out), "--out", str(tmp_path / "fig"), "--format", "png"])
    assert r.exit_code == 0 and (tmp_path / "fig" / "m_curves_0-1.png").exists()
