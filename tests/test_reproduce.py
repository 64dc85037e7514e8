"""`ramble reproduce --scale tiny`: every experiment, figure and report row from real runs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
from click.testing import CliRunner

from ramble.cli import main
from ramble.experiments.reproduce import EXAMPLE_JOB, SCALE_SETTINGS, plan, run_job
from ramble.storage.io import load

FIXTURE = str(Path(__file__).parent / "fixtures" / "mnist")


def _align_section(report: str) -> str:
    return report.split("## Aligned solutions")[1].split("\n## ")[0]


def test_reproduce_tiny(tmp_path, monkeypatch):
    out = tmp_path / "r"
    r = CliRunner().invoke(main, ["--quiet", "reproduce", "--out", str(out), "--scale", "tiny", "--data-dir", FIXTURE, "--device", "cpu", "--jobs", "2"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    report = out / "REPORT.md"
    assert report.exists()
    tcm = load(out / "tcm" / "tcm-4.h5")
    mnist = load(out / "mnist" / "mnist-100.h5")
    assert tcm.status == mnist.status == "complete"
    assert all(p.hessian is not None for p in tcm.iter_paths())
    assert mnist.paths["0-1"].hessian["eigenvalues"].shape[0] == 3
    text = report.read_text()
    # every figure the report links to exists and is non-empty
    links = re.findall(r"\]\((figures/[^)]+\.png)\)", text)
    assert links, "the report embeds no figure"
    for link in links:
        assert (out / link).stat().st_size > 1000, link
    for stem in ("fig2_tcm_hessian", "fig3_mnist_path", "fig4_mnist_hessian", "tcm_summary"):
        assert any(stem in link for link in links), stem
    # the claim rows reflect these files, not fixed numbers
    n_complete = sum(p.complete for p in tcm.iter_paths())
    assert f"{n_complete}/{len(tcm.paths)}" in text
    claims = json.loads((out / "claims.json").read_text())
    assert len(claims) >= 10
    # beyond the paper: many solutions (connectivity), convexity probes, Bezier curves, all from the files
    many = load(out / "beyond" / "many-tcm-4.h5")
    assert len(many.paths) == 6 and many.status == "complete"
    import h5py

    with h5py.File(out / "beyond" / "many-tcm-4.h5", "r") as f:
        statement = f["connectivity"].attrs["statement"]
        assert "convexity" in f
    assert statement in text and "## Connectivity and convexity" in text
    assert tcm.paths["0-1"].curves and mnist.paths["0-1"].curves
    assert "Bezier" in text or "bezier" in text
    assert any("connectivity" in link for link in links)
    # beyond the paper: the examples' MLP through `ramble torch run`, its pair aligned (with the aligned ramble path), reported beside MNIST-100's
    mlp = load(out / "examples" / "example-mlp.h5")
    assert (mlp.model, mlp.status) == ("torch", "complete")
    a = mlp.paths["0-1"].align["weights"]
    np.testing.assert_array_equal(a.line.t, mlp.paths["0-1"].linear.alpha)
    assert a.path_attrs["status"] == "complete" and np.all(a.path["train_error"] == 0)
    assert "weights" in mnist.paths["0-1"].align
    section = _align_section(text)
    assert "`mnist-100.h5`" in section and "`example-mlp.h5`" in section
    assert section.count("is the aligned straight line W_0 -> pi(W_1) inside S?") == 2
    assert f"{a.path_attrs['unaligned_iterations']} / {a.path_attrs['iterations']} (complete)" in section  # the side-by-side table row
    for stem in ("align_weights_mnist-100_0-1", "align_weights_example-mlp_0-1"):
        assert any(stem in link for link in links), stem
    # a second run finds everything done and only redraws the report
    r2 = CliRunner().invoke(main, ["reproduce", "--out", str(out), "--scale", "tiny", "--data-dir", FIXTURE, "--device", "cpu"], catch_exceptions=False)
    assert r2.exit_code == 0 and "already done" in r2.output
    assert np.array_equal(load(out / "tcm" / "tcm-4.h5").solutions[0], tcm.solutions[0])
    # an interrupted experiment is resumed, not started again: its finished paths are kept as they are
    import h5py

    from ramble.storage.filediff import diff

    finished = tmp_path / "tcm-4-finished.h5"
    finished.write_bytes((out / "tcm" / "tcm-4.h5").read_bytes())
    with h5py.File(out / "tcm" / "tcm-4.h5", "r+") as f:
        f.attrs["status"] = "running"
        del f["paths/1-2"]
        for p in f["paths"].values():
            p.attrs["wall_time"] = -1.0  # marks the paths the resumed run must keep
    # ... and the examples' MLP, not found (as from an installed package), is skipped with its reason in meta.json and the report
    (out / "examples" / "example-mlp.h5").unlink()
    monkeypatch.setattr("ramble.experiments.reproduce.checkout_examples", lambda: tmp_path / "no-checkout" / "examples")
    r3 = CliRunner().invoke(main, ["--quiet", "reproduce", "--out", str(out), "--scale", "tiny", "--data-dir", FIXTURE, "--device", "cpu"], catch_exceptions=False)
    assert r3.exit_code == 0, r3.output
    assert not (out / "examples" / "example-mlp.h5").exists()
    why = json.loads((out / "meta.json").read_text())["skipped experiments"][EXAMPLE_JOB]
    assert str(tmp_path / "no-checkout" / "examples" / "own_model.py") + " not found" in why
    assert why in _align_section((out / "REPORT.md").read_text())
    assert "--resume" in (out / "logs" / "tcm-4.log").read_text()
    resumed = load(out / "tcm" / "tcm-4.h5")
    assert resumed.status == "complete" and resumed.paths["0-1"].attrs["wall_time"] == -1.0
    assert resumed.paths["1-2"].attrs["wall_time"] > 0 and resumed.paths["1-2"].hessian is not None
    assert diff(finished, out / "tcm" / "tcm-4.h5") == []


def test_c15_seeds_add_mnist_runs_with_their_controls(tmp_path):
    """The extra MNIST-100 runs C15 counts (the paper scale's seeds 1-3; none at the tiny scale, which the test above runs)."""
    jobs = {j.name: j for j in plan(tmp_path, SCALE_SETTINGS["tiny"], "python", False, None, "cpu", c15_seeds=(5, 6))}
    main_run = jobs["mnist-100"]

    def without(args: list[str], option: str) -> list[str]:
        i = args.index(option)
        return args[:i] + args[i + 2:]

    for seed in (5, 6):
        job = jobs[f"c15-mnist-100-seed-{seed}"]
        assert job.args[job.args.index("--seed") + 1] == str(seed)
        assert without(job.args, "--seed") == without(main_run.args, "--hessian-points")  # the main run's settings, no Hessians
        assert job.analyses == (main_run.analyses[-1],) and job.analyses[0][1][0] == "controls"  # the main run's controls, nothing else
    assert SCALE_SETTINGS["paper"].c15_seeds == (1, 2, 3) and not any(n.startswith("c15-") for n in (j.name for j in plan(tmp_path, SCALE_SETTINGS["tiny"], "python", False, None, "cpu")))


def _example_job(tmp_path: Path, examples_dir: Path):
    jobs = plan(tmp_path / "out", SCALE_SETTINGS["tiny"], "python", False, None, "cpu", examples_dir=examples_dir)
    return next(j for j in jobs if j.name == EXAMPLE_JOB)


def test_example_job_needs_scikit_learn(tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "sklearn" else real(name, *a))
    job = _example_job(tmp_path, Path(__file__).resolve().parents[1] / "examples")
    assert job.skipped.startswith("scikit-learn is not installed")


def test_example_job_fails_in_one_line_when_its_data_cannot_be_made(tmp_path):
    examples = tmp_path / "examples"
    examples.mkdir()
    (examples / "own_model.py").write_text("raise RuntimeError('no digits here')\n")
    job = _example_job(tmp_path, examples)
    assert job.skipped == ""
    run_job(job, tmp_path / "out")
    assert job.status == "failed"
    assert job.error == f"error: preparing {EXAMPLE_JOB} failed: RuntimeError: no digits here"
    assert not job.out.exists()
