"""The reproduction report: figures and the claim table, checked against numbers recomputed here from the files."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from ramble.analysis.spectra import HessianConfig, compute_and_store
from ramble.cli import main
from ramble.reporting.report import direction_changes, tally, write_report
from ramble.storage.io import load

FIXTURE = str(Path(__file__).parent / "fixtures" / "mnist")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
CLAIM_IDS = [f"C{i}" for i in range(1, 16)]


def _env():
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    return env


@pytest.fixture(scope="module")
def files(shared_mnist_file, tmp_path_factory):
    d = tmp_path_factory.mktemp("report_files")
    tcm = d / "tcm.h5"
    # The Julia TCM run in its own process (Julia's start-up runs while the MNIST Hessians are computed here).
    proc = subprocess.Popen(
        [sys.executable, "-m", "ramble.cli", "--quiet", "tcm", "run", "--backend", "julia", "-N", "60", "-K", "3", "-M", "100", "--seed", "4", "--solutions", "3", "--hessian-points", "5", "--out", str(tcm)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=_env(),
    )
    mnist = d / "mnist.h5"
    shutil.copy(shared_mnist_file, mnist)  # MNIST-100, two solutions, their certified path (conftest)
    compute_and_store(mnist, HessianConfig(points=3, k=4, trace_samples=5), device="cpu")
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out.decode(errors="replace")
    return tcm, mnist


@pytest.fixture(scope="module")
def report(files, tmp_path_factory):
    tcm, mnist = files
    out = tmp_path_factory.mktemp("report")
    meta = {"python": "3.test", "torch": "9.9", "wall time [s]": {"tcm": 1.5, "mnist": 2.5}}
    path = write_report(out, [tcm], mnist100_file=mnist, meta=meta)
    return path, path.read_text()


def rows(text):
    """Claim id -> (claim, paper, measured, holds) from the report's table."""
    out = {}
    for line in text.splitlines():
        m = re.match(r"^\| (C\d+) \| (.*) \| (.*) \| (.*) \| \*\*(.*)\*\* \|$", line)
        if m:
            out[m.group(1)] = m.groups()[1:]
    return out


def test_report_written_with_every_figure(report):
    path, text = report
    out = path.parent
    assert path.name == "REPORT.md" and path.exists()
    links = re.findall(r"\]\((figures/[^)]+)\)", text)
    assert links, "no figure linked"
    for link in links:
        f = out / link
        assert f.exists() and f.stat().st_size > 1000, link
        assert f.read_bytes()[:8] == PNG_MAGIC
        pdf = f.with_suffix(".pdf")
        assert pdf.exists() and pdf.read_bytes()[:5] == b"%PDF-", pdf
    names = {p.name for p in (out / "figures").iterdir()}
    for stem in ["tcm_summary", "tcm_trace_vs_loss", "fig3_mnist_path_mnist_0-1", "fig4_mnist_hessian_mnist_0-1"] + [f"fig2_tcm_hessian_tcm_{q}" for q in ("0-1", "0-2", "1-2")]:
        for ext in ("png", "pdf"):
            assert f"{stem}.{ext}" in names, (stem, ext, sorted(names))
    for f in (out / "figures").iterdir():
        assert f.stat().st_size > 0, f
    # embedded figures: the summary, Fig. 2, Fig. 3 and Fig. 4 at least
    for stem in ("tcm_summary", "fig2_tcm_hessian_tcm_0-1", "fig3_mnist_path_mnist_0-1", "fig4_mnist_hessian_mnist_0-1"):
        assert f"](figures/{stem}.png)" in text


def test_every_claim_row_present(report):
    _, text = report
    r = rows(text)
    assert list(r) == CLAIM_IDS
    for cid, (_, _, _, holds) in r.items():
        # "not established": a claim whose control was not run on enough pairs (C15)
        assert holds in ("yes", "no", "partly", "not run", "not established"), (cid, holds)
    # no whole-MNIST file: its rows are not run
    for cid in ("C3", "C13", "C14"):
        assert r[cid][3] == "not run"
    claims = json.loads((report[0].parent / "claims.json").read_text())
    assert [c["id"] for c in claims] == CLAIM_IDS


def test_settings_and_provenance(report, files):
    _, text = report
    assert "## Settings and provenance" in text
    for s in ("**python**: 3.test", "**torch**: 9.9", "**tcm**: 1.5", "**mnist**: 2.5"):
        assert s in text
    for f in files:
        e = load(f, weights=False)
        assert f"`{f}`" in text
        for p in e.iter_paths():
            wt = f"{float(p.attrs['wall_time']):.2f}"
            assert re.search(rf"\| `{f.name}` \| {p.name} \| {p.status} \|.*\| {re.escape(wt)} \|", text), (f.name, p.name, wt)
        assert json.dumps(e.config, indent=1, sort_keys=True) in text


def test_tcm_numbers_match_the_files(report, files):
    _, text = report
    r = rows(text)
    e = load(files[0], weights=False)
    ps = list(e.iter_paths())
    found = sum(p.complete and p.train_error.max() == 0 for p in ps)
    assert f"{found}/{len(ps)} pairs" in r["C1"][2]
    assert r["C1"][3] == ("yes" if found == len(ps) else ("no" if found == 0 else "partly"))
    # straight lines: count the ones with a training error
    leave = sum(p.linear.train_error.max() > 0 for p in ps)
    assert f"TCM {leave}/{len(ps)}" in r["C4"][2]
    # non-zero eigenvalues recomputed from the stored spectra
    counts = []
    for p in ps:
        ev = p.hessian["eigenvalues"]
        counts += list((np.abs(ev) > 1e-8 * np.abs(ev).max(axis=1, keepdims=True)).sum(axis=1))
    counts = np.array(counts)
    assert f"min {counts.min()} / median {np.median(counts):g} / max {counts.max()}" in r["C5"][2]
    assert r["C5"][3] == ("yes" if (counts == 3).all() else ("partly" if (counts == 3).any() else "no"))
    # the correlation of the trace with the training loss recorded on the path, per path
    rs, ends = [], 0
    for p in ps:
        idx = p.hessian["index"]  # TCM: every recorded point keeps its weights
        tr = p.hessian["trace"]
        rs.append(np.corrcoef(tr, p.train_loss[idx])[0, 1])
        ends += int(tr[0] < tr[1]) + int(tr[-1] < tr[-2])
    assert f"min {min(rs):.3f} / median {np.median(rs):.3f} / max {max(rs):.3f}" in r["C8"][2]
    assert f"{ends}/{2 * len(ps)} path endpoints" in r["C9"][2]
    neg = sum(int(((p.hessian["eigenvalues"] < 0) & (np.abs(p.hessian["eigenvalues"]) > 1e-8 * np.abs(p.hessian["eigenvalues"]).max(axis=1, keepdims=True))).sum()) for p in ps)
    assert f"{neg} negative non-zero eigenvalues" in r["C7"][2]


def test_mnist_numbers_match_the_file(report, files):
    _, text = report
    r = rows(text)
    e = load(files[1], weights=False)
    p = e.paths["0-1"]
    assert ("1/1 pair(s)" in r["C2"][2]) == (p.complete and p.train_error.max() == 0)
    ev = p.hessian["eigenvalues"]
    assert f"smallest of the top-{ev.shape[1]} {ev.min():.3g}" in r["C10"][2]
    assert r["C10"][3] == ("yes" if ev.min() > 0 else "no")
    te = p.extra["test_error"]
    k = int(np.argmin(te))
    assert f"best test error {100 * te[k]:.2f}% at {p.distance[k]:.2f}" in r["C15"][2]
    assert f"endpoints {100 * te[0]:.2f}% / {100 * te[-1]:.2f}%" in r["C15"][2]
    better = round((min(te[0], te[-1]) - te[k]) * 200) > 1
    # without controls on 3 pairs the claim is not decided, whatever the endpoints say
    assert r["C15"][3] == "not established"
    assert f"below both endpoints (no control) in {int(better)}/1 pair(s)" in r["C15"][2]
    r_le = np.corrcoef(p.extra["test_loss"], te)[0, 1]
    assert f"r(test loss, test error) = {r_le:.3f}" in r["C12"][2]
    assert "MNIST-100 1/1" in r["C4"][2] or p.linear.train_error.max() == 0


def test_whole_mnist_rows_run_when_given(files, tmp_path):
    tcm, mnist = files
    path = write_report(tmp_path, [tcm], mnist100_file=None, full_mnist_file=mnist, formats=("png",))
    r = rows(path.read_text())
    assert r["C2"][3] == "not run" and r["C10"][3] == "not run"
    for cid in ("C3", "C13", "C14"):
        assert r[cid][3] != "not run", cid
    assert (tmp_path / "figures" / "fig5_mnist_path_mnist_0-1.png").exists()


def test_no_files_at_all_is_not_run(tmp_path):
    path = write_report(tmp_path, [], formats=("png",))
    r = rows(path.read_text())
    assert list(r) == CLAIM_IDS
    assert all(v[3] == "not run" for v in r.values())


def test_plot_command_still_draws(files, tmp_path):
    res = CliRunner().invoke(main, ["plot", str(files[0]), "--out", str(tmp_path), "--format", "png"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    written = [Path(x) for x in res.output.split()]
    assert any("hessian" in w.name for w in written) and any("summary" in w.name for w in written)
    assert all(w.exists() and w.read_bytes()[:8] == PNG_MAGIC for w in written)


@pytest.mark.parametrize(
    "y, thr, n",
    [
        ([0, 1, 2, 3, 4], 0.5, 0),  # monotonic
        ([0, 2, 4, 3, 1], 0.5, 1),  # bi-tonic
        ([0, 2, 1, 3, 1, 4], 0.5, 4),
        ([0, 1, 0.9, 2, 1.95, 3], 0.2, 0),  # wiggles below the threshold are noise
        ([5, 5, 5], 0.0, 0),
        ([3, 1, 2], 0.5, 1),
    ],
)
def test_direction_changes(y, thr, n):
    assert direction_changes(y, thr) == n


def test_tally():
    assert tally([]) == "not run"
    assert tally([True, True]) == "yes"
    assert tally([True, False]) == "partly"
    assert tally([False]) == "no"


def _pair(best: float, controls: tuple[float, float, float, float], seed: int) -> dict:
    sm, tm, sc, tc = controls
    c = {"best_test_error": best, "best_epochs": 345, "best_train_loss": 5e-4,
         "source_matched_test_error": sm, "target_matched_test_error": tm, "source_converged_test_error": sc, "target_converged_test_error": tc,
         "source_converged_reached": True, "target_converged_reached": True}
    return {"path": "0-1", "seed": seed, "found": True, "best_at": 0.1, "best_at_range": [0.1, 0.1], "best_test_error": best, "endpoint_test_errors": [0.25, 0.26],
            "better_than_endpoints_by_samples": int(round((0.25 - best) * 10000)), "best_train_loss": 5e-4, "endpoint_train_losses": [0.1, 0.1], "controls": c}


def test_c15_verdict_rests_on_controls_over_three_pairs():
    from ramble.reporting.report import _better_than_sgd

    beats = _pair(0.2400, (0.2450, 0.2500, 0.2420, 0.2480), 1)  # 20 test samples below the best control
    loses = _pair(0.2400, (0.2390, 0.2500, 0.2420, 0.2480), 2)  # a control is better
    s = lambda *qs: {"test_samples": 10000, "paths": list(qs)}  # noqa: E731
    two = _better_than_sgd("C15", [("MNIST-100", s(beats)), ("more", s(beats))])
    assert two.holds == "not established" and "controls on 2 of the 3 pairs needed" in two.measured
    three = _better_than_sgd("C15", [("MNIST-100", s(beats)), ("more", s(beats, loses))])
    assert three.holds == "partly" and "path beats all controls in 2/3 pair(s)" in three.measured
    assert "+0.20 to" not in three.measured and "-0.10 to +0.20" in three.measured  # the spread over pairs, in points
    all3 = _better_than_sgd("C15", [("a", s(beats, beats, beats))])
    assert all3.holds == "yes"
    none = _better_than_sgd("C15", [("a", s(loses, loses, loses))])
    assert none.holds == "no"


def test_convexity_line_omits_rescaled_numbers_equal_to_raw():
    from ramble.analysis.convexity import format_line

    a = dict(inside=5, n=10, fraction=0.5, ci_low=0.2, ci_high=0.8, rescaled_inside=5, rescaled_fraction=0.5, rescaled_ci_low=0.2, rescaled_ci_high=0.8, norm_ratio_median=1.0)
    line = format_line("solutions", a)
    assert line.count("5/10") == 1 and "the same after rescaling" in line
    b = dict(a, rescaled_inside=7, rescaled_fraction=0.7, rescaled_ci_low=0.4, rescaled_ci_high=0.9)
    assert "7/10" in format_line("solutions", b)


def test_pearson_on_few_points_says_how_few():
    from ramble.reporting.plots import pearson_text

    x = np.array([1.0, 2.0, 3.0, 4.0, 5.5])
    text = pearson_text(x, x ** 2)
    assert "n = 5" in text and "95 % CI" in text
    r = np.corrcoef(x, x ** 2)[0, 1]
    lo, hi = np.tanh(np.arctanh(r) + np.array([-1, 1]) * 1.959964 / np.sqrt(2))
    assert f"{lo:.2f} to {hi:.2f}" in text
    assert "too few" in pearson_text(x[:3], x[:3] ** 2)


def test_paths_say_whether_they_are_certified_as_continuous(report):
    """REPORT.md's paths table says, per path, how it is certified inside S."""
    _, text = report
    assert "| certified inside S |" in text
    assert re.search(r"\| every segment \(\d+ moves certified, smallest margin bound [0-9.e+-]+\) \|", text)


def test_older_files_are_certified_only_at_stored_points():
    from types import SimpleNamespace

    from ramble.reporting.report import certification_cell

    assert certification_cell(SimpleNamespace(attrs={}, complete=True)).startswith("stored points only")
    new = SimpleNamespace(attrs={"segments_certified": 12, "cert_min_margin": 0.25}, complete=True)
    assert certification_cell(new) == "every segment (12 moves certified, smallest margin bound 0.25)"
    assert certification_cell(SimpleNamespace(attrs={"segments_certified": 3}, complete=False)) == "n/a (incomplete)"
