"""`ramble verify`: checksums and recomputed claims of real files, and files altered by hand."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from ramble.cli import main
from ramble.errors import FormatError
from ramble.io import datasets_sha256
from ramble.verify import verify_file

torch.set_num_threads(1)

FIXTURE = str(Path(__file__).parent / "fixtures" / "mnist")


def _run(args: list[str]):
    return CliRunner().invoke(main, args)


@pytest.fixture(scope="module")
def tcm_file(tmp_path_factory):
    out = tmp_path_factory.mktemp("verify") / "tcm.h5"
    r = CliRunner().invoke(main, ["--quiet", "tcm", "run", "--backend", "python", "-N", "60", "-K", "3", "-M", "100", "--seed", "4", "--solutions", "2", "--out", str(out)], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return out


@pytest.fixture(scope="module")
def mnist_file(tmp_path_factory):
    out = tmp_path_factory.mktemp("verify") / "mnist.h5"
    args = ["--quiet", "mnist", "run", "--train-size", "100", "--test-size", "200", "--data-dir", FIXTURE, "--device", "cpu", "--gamma", "0.1",
            "--n-epochs", "1", "--points", "20", "--weight-rows", "5", "--linear-points", "5", "--solutions", "2", "--out", str(out)]
    r = CliRunner().invoke(main, args, catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return out


def _copy(src: Path, tmp_path: Path) -> Path:
    dst = tmp_path / src.name
    shutil.copy(src, dst)
    return dst


def _failed(report) -> set[str]:
    return {c.name for c in report.failures}


def _middle_row(f: h5py.File) -> int:
    n = f["paths/0-1/weights"].shape[0]
    assert n >= 3
    return n // 2


# ----------------------------------------------------------------------------- files as written


def test_checksum_written_and_covers_the_path_datasets(tcm_file):
    with h5py.File(tcm_file) as f:
        g = f["paths/0-1"]
        assert len(g.attrs["sha256"]) == 64
        assert g.attrs["sha256"] == datasets_sha256(g)
        assert "linear" in g  # written after write_path; not covered, so the checksum still matches


@pytest.mark.parametrize("which", ["tcm_file", "mnist_file"])
def test_verify_passes_on_fresh_files(which, request):
    f = request.getfixturevalue(which)
    r = _run(["verify", str(f)])
    assert r.exit_code == 0, r.output
    assert "all passed" in r.output and "error:" not in r.output
    for needle in ("checksum", "endpoints", "Eq. 4", "in S", "train_error"):
        assert f"path 0-1 {needle}" in r.output
    rep = verify_file(f)
    assert rep.ok and not rep.failures
    assert all(c.result == "ok" for c in rep.checks), rep.format()


def test_verify_after_hessian_is_still_ok(tcm_file, tmp_path):
    f = _copy(tcm_file, tmp_path)
    r = _run(["--quiet", "hessian", str(f), "--points", "3"])
    assert r.exit_code == 0, r.output
    assert verify_file(f).ok


# ----------------------------------------------------------------------------- altered by hand


def test_tcm_small_change_to_a_middle_point_breaks_the_checksum(tcm_file, tmp_path):
    f = _copy(tcm_file, tmp_path)
    with h5py.File(f, "r+") as h:
        t = _middle_row(h)
        h["paths/0-1/weights"][t, 0] += 1e-3
    r = _run(["verify", str(f)])
    assert r.exit_code == 1
    last = r.output.strip().splitlines()[-1]
    assert last.startswith("error: ") and "path 0-1 checksum" in last
    assert "FAIL" in r.output and "sha256 mismatch" in r.output


def test_tcm_point_pushed_out_of_s_is_named(tcm_file, tmp_path):
    f = _copy(tcm_file, tmp_path)
    with h5py.File(f, "r+") as h:
        t = _middle_row(h)
        h["paths/0-1/weights"][t] = -h["paths/0-1/weights"][t]  # the committee's output flips sign: every sample wrong
    rep = verify_file(f)
    assert {"path 0-1 checksum", "path 0-1 in S", "path 0-1 train_error"} <= _failed(rep)
    in_s = next(c for c in rep.checks if c.name == "path 0-1 in S")
    assert f"rows {t}" in in_s.detail and "outside S" in in_s.detail
    r = _run(["verify", str(f)])
    assert r.exit_code == 1
    assert "path 0-1 in S" in r.output.strip().splitlines()[-1]


def test_tcm_point_moved_off_the_norm_surface(tcm_file, tmp_path):
    f = _copy(tcm_file, tmp_path)
    with h5py.File(f, "r+") as h:
        t = _middle_row(h)
        h["paths/0-1/weights"][t] = 1.01 * h["paths/0-1/weights"][t]  # same direction, still in S
        del h["paths/0-1"].attrs["sha256"]
    rep = verify_file(f)
    assert _failed(rep) == {"path 0-1 Eq. 4"}, rep.format()


def test_tcm_altered_endpoint_solution(tcm_file, tmp_path):
    f = _copy(tcm_file, tmp_path)
    with h5py.File(f, "r+") as h:
        h["solutions/1"][0] += 1e-3
    rep = verify_file(f)
    assert "path 0-1 endpoints" in _failed(rep)
    assert "path 0-1 checksum" not in _failed(rep)  # solutions lie outside the path group
    ep = next(c for c in rep.checks if c.name == "path 0-1 endpoints")
    assert "last row differs from solution 1" in ep.detail


def test_no_checksum_still_verifies_membership(tcm_file, tmp_path):
    f = _copy(tcm_file, tmp_path)
    with h5py.File(f, "r+") as h:
        del h["paths/0-1"].attrs["sha256"]
    rep = verify_file(f)
    assert rep.ok, rep.format()
    ck = next(c for c in rep.checks if c.name == "path 0-1 checksum")
    assert ck.skipped and "no checksum" in ck.detail
    # and without a checksum, a point out of S is still found
    with h5py.File(f, "r+") as h:
        t = _middle_row(h)
        h["paths/0-1/weights"][t] = -h["paths/0-1/weights"][t]
    assert "path 0-1 in S" in _failed(verify_file(f))
    r = _run(["verify", str(f)])
    assert r.exit_code == 1 and "no checksum" in r.output


def test_lenet_altered_middle_point(mnist_file, tmp_path):
    f = _copy(mnist_file, tmp_path)
    with h5py.File(f, "r+") as h:
        t = _middle_row(h)
        names = json.loads(h["model"].attrs["param_names"])
        shapes = json.loads(h["model"].attrs["param_shapes"])
        sizes = [int(np.prod(s)) for s in shapes]
        start = sum(sizes[: names.index("fc3.weight")])
        end = start + sizes[names.index("fc3.weight")] + sizes[names.index("fc3.bias")]
        row = h["paths/0-1/weights"][t]
        row[start:end] *= -1  # logits negated: the network now picks its least likely class
        h["paths/0-1/weights"][t] = row
    rep = verify_file(f, sample_rows=3)  # the altered row may not be sampled: the checksum still catches it
    rep_all = verify_file(f, sample_rows=100)
    assert "path 0-1 checksum" in _failed(rep_all) and "path 0-1 in S" in _failed(rep_all), rep_all.format()
    assert "path 0-1 checksum" in _failed(rep)
    r = _run(["verify", str(f), "--sample-rows", "100"])
    assert r.exit_code == 1
    last = r.output.strip().splitlines()[-1]
    assert last.startswith("error: ") and "path 0-1 checksum" in last and "path 0-1 in S" in last


def test_lenet_small_change_and_moved_data(mnist_file, tmp_path):
    f = _copy(mnist_file, tmp_path)
    with h5py.File(f, "r+") as h:
        h["paths/0-1/weights"][_middle_row(h), 7] += 1e-3
    assert "path 0-1 checksum" in _failed(verify_file(f))
    rep = verify_file(mnist_file, data_dir=str(tmp_path / "nowhere"))
    assert "data" in _failed(rep)
    assert any(c.name == "path 0-1 in S" and c.skipped for c in rep.checks)


# ----------------------------------------------------------------------------- not a ramble file


def test_not_a_ramble_file(tmp_path):
    plain = tmp_path / "plain.h5"
    with h5py.File(plain, "w") as h:
        h["x"] = np.arange(3)
    r = _run(["verify", str(plain)])
    assert r.exit_code == 1
    assert r.output.startswith("error: ") and r.output.count("\n") == 1 and "not a ramble file" in r.output
    text = tmp_path / "t.h5"
    text.write_text("hello")
    r = _run(["verify", str(text)])
    assert r.exit_code == 1 and r.output.startswith("error: ") and r.output.count("\n") == 1
    with pytest.raises(FormatError):
        verify_file(tmp_path / "missing.h5")


def test_running_file_fails_status(tcm_file, tmp_path):
    f = _copy(tcm_file, tmp_path)
    with h5py.File(f, "r+") as h:
        h.attrs["status"] = "running"
    rep = verify_file(f)
    assert _failed(rep) == {"status"}
