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

from ramble.analysis.verify import VerifyReport, verify_file
from ramble.cli import main
from ramble.errors import FormatError
from ramble.storage.io import datasets_sha256

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
    # 12 iterations keep the test short (every move is certified); the path stops there as failed (no norm escape), with
    # every vertex recorded (--points 100 gives record_every 1) and kept (--weight-rows 100 gives weight_every 1)
    args = ["--quiet", "mnist", "run", "--train-size", "100", "--test-size", "200", "--data-dir", FIXTURE, "--device", "cpu", "--gamma", "0.1",
            "--n-epochs", "1", "--max-iterations", "12", "--no-escape", "--points", "100", "--weight-rows", "100", "--linear-points", "5",
            "--solutions", "2", "--out", str(out)]
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
    assert "error:" not in r.output and "FAIL" not in r.output
    for needle in ("checksum", "endpoints", "Eq. 4", "in S", "train_error", "segments"):
        assert f"path 0-1 {needle}" in r.output
    rep = verify_file(f)
    assert rep.ok and not rep.failures
    if which == "tcm_file":
        assert all(c.result == "ok" for c in rep.checks), rep.format()
    else:  # the LeNet5 path stops at its iteration limit: a failed path's rows are not required in S
        assert {c.name for c in rep.checks if c.result != "ok"} == {"path 0-1 in S"}, rep.format()
        assert "path failed" in next(c.detail for c in rep.checks if c.name == "path 0-1 in S")


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


def test_a_failed_path_of_several_legs_is_not_held_to_one_norm_frame(tcm_file, tmp_path):
    """A failed path keeps the legs it tried (waypoints attr 0): rows of a waypoint leg are on that leg's Eq. 4 surface, not W_a's."""
    f = _copy(tcm_file, tmp_path)
    with h5py.File(f, "r+") as h:
        g = h["paths/0-1"]
        n = g["weights"].shape[0]
        g["weights"][n // 2:] = 1.01 * g["weights"][n // 2:]  # a second leg, in its own frame
        if "leg" in g:
            del g["leg"]
        g.create_dataset("leg", data=np.array([0] * (n // 2) + [1] * (n - n // 2)))
        g.attrs["status"] = "failed"
        g.attrs["waypoints"] = 0
        del g.attrs["sha256"]
    rep = verify_file(f)
    eq4 = next(c for c in rep.checks if c.name == "path 0-1 Eq. 4")
    assert eq4.skipped and "2 legs" in eq4.detail, rep.format()
    assert "path 0-1 Eq. 4" not in _failed(rep)


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
    rep = verify_file(f, sample_rows=3, segments=False)  # the altered row may not be sampled: the checksum still catches it
    rep_all = verify_file(f, sample_rows=100, segments=False)
    # the fixture's path stopped at its iteration limit, so its rows' errors are checked against the stored train_error
    assert "path 0-1 checksum" in _failed(rep_all) and "path 0-1 train_error" in _failed(rep_all), rep_all.format()
    assert "path 0-1 checksum" in _failed(rep)
    r = _run(["verify", str(f), "--sample-rows", "100", "--no-segments"])
    assert r.exit_code == 1
    last = r.output.strip().splitlines()[-1]
    assert last.startswith("error: ") and "path 0-1 checksum" in last and "path 0-1 train_error" in last


def test_lenet_small_change_and_moved_data(mnist_file, tmp_path):
    f = _copy(mnist_file, tmp_path)
    with h5py.File(f, "r+") as h:
        h["paths/0-1/weights"][_middle_row(h), 7] += 1e-3
    assert "path 0-1 checksum" in _failed(verify_file(f, segments=False))
    rep = verify_file(mnist_file, data_dir=str(tmp_path / "nowhere"))
    assert "data" in _failed(rep)
    assert any(c.name == "path 0-1 in S" and c.skipped for c in rep.checks)
    assert any(c.name == "path 0-1 segments" and c.skipped and "no training data" in c.detail for c in rep.checks)


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


# ----------------------------------------------------------------------------- the summary line (issue 15, bug 4)


def test_summary_counts_a_skipped_check(tcm_file, tmp_path):
    """A skipped check is not "all passed": the summary says how many were skipped."""
    f = _copy(tcm_file, tmp_path)
    with h5py.File(f, "r+") as h:
        del h["paths/0-1"].attrs["sha256"]
    r = _run(["verify", str(f)])
    assert r.exit_code == 0, r.output
    last = r.output.strip().splitlines()[-1]
    assert "all passed" not in last
    assert "1 skipped" in last and "0 failed" in last, last


# ----------------------------------------------------------------------------- certified segments


def _tcm_errors_along(f: Path, w0: np.ndarray, w1: np.ndarray, n: int = 201) -> np.ndarray:
    """Training errors at n evenly spaced points of the segment w0 -> w1 (independent of the certificate)."""
    from ramble.experiments.tcm_experiment import tcm_counter

    with h5py.File(f) as h:
        count, _ = tcm_counter(h)
    ts = np.linspace(0.0, 1.0, n)[:, None]
    return count(w0[None] + ts * (w1 - w0)[None])


def test_tcm_every_stored_segment_is_certified(tcm_file):
    rep = verify_file(tcm_file)
    with h5py.File(tcm_file) as h:
        n_rows = h["paths/0-1/weights"].shape[0]
        assert "segments_certified" in h["paths/0-1"].attrs
    seg = next(c for c in rep.checks if c.name == "path 0-1 segments")
    assert seg.result == "ok" and f"{n_rows - 1} of {n_rows - 1} stored segments certified" in seg.detail
    assert rep.segments_checked == rep.segments_certified == n_rows - 1
    assert f"segments between stored rows: {n_rows - 1} checked, {n_rows - 1} certified" in rep.format()


def _splice_solutions(f: Path) -> int:
    """Make rows t, t + 1 of path 0-1 the two solutions: both in S, on Eq. 4, but the line between them leaves S."""
    with h5py.File(f, "r+") as h:
        t = _middle_row(h)
        a, b = h["solutions/0"][()], h["solutions/1"][()]
        h["paths/0-1/weights"][t] = a
        h["paths/0-1/weights"][t + 1] = b
        del h["paths/0-1"].attrs["sha256"]
    errors = _tcm_errors_along(f, a, b)
    assert errors[0] == errors[-1] == 0 and errors.max() > 0  # the sampled line leaves S: the test is not vacuous
    return t


def test_tcm_segment_leaving_s_between_two_stored_points_fails(tcm_file, tmp_path):
    f = _copy(tcm_file, tmp_path)
    t = _splice_solutions(f)
    rep = verify_file(f)
    assert "path 0-1 segments" in _failed(rep) and "path 0-1 in S" not in _failed(rep), rep.format()
    seg = next(c for c in rep.checks if c.name == "path 0-1 segments")
    assert f"{t}->{t + 1}" in seg.detail and "consecutive vertices" in seg.detail
    r = _run(["verify", str(f)])
    assert r.exit_code == 1 and "path 0-1 segments" in r.output.strip().splitlines()[-1]


def test_file_written_before_certification_warns_instead(tcm_file, tmp_path):
    """Without ``segments_certified`` the file claims S only at its points: an uncertified segment is a warning."""
    f = _copy(tcm_file, tmp_path)
    t = _splice_solutions(f)
    with h5py.File(f, "r+") as h:
        del h["paths/0-1"].attrs["segments_certified"]
    rep = verify_file(f)
    seg = next(c for c in rep.checks if c.name == "path 0-1 segments")
    assert rep.ok and seg.result == "warn", rep.format()
    assert f"{t}->{t + 1}" in seg.detail and "before certification" in seg.detail
    assert "1 warned" in rep.summary()


def _verify_one_by_one(f: Path, monkeypatch) -> VerifyReport:
    """verify_file(f) with the TCM's per-segment certifier instead of its polyline certifier."""
    from dataclasses import replace

    from ramble.experiments.tcm_experiment import TCMSpec

    batched = TCMSpec.verify_setup
    with monkeypatch.context() as m:
        m.setattr(TCMSpec, "verify_setup", lambda self, f, **kw: replace(batched(self, f, **kw), polyline_certifier=None))
        return verify_file(f)


@pytest.mark.parametrize("case", ["as written", "spliced", "spliced, before certification"])
def test_tcm_segments_certified_in_blocks_report_as_one_by_one(tcm_file, tmp_path, monkeypatch, case):
    """The polyline certifier, over blocks of stored rows, gives the report the per-segment certifier gives: same text, counts, smallest bound."""
    import ramble.analysis.verify as verify
    from ramble.experiments.tcm_experiment import SPEC
    from ramble.storage.views import open_stored

    f = _copy(tcm_file, tmp_path)
    if case != "as written":
        _splice_solutions(f)
    if case.endswith("before certification"):
        with h5py.File(f, "r+") as h:
            del h["paths/0-1"].attrs["segments_certified"]
    with open_stored(f) as stored:
        assert stored.path("0-1").weights.shape[0] > 3 * 7  # several blocks of 7 rows
        assert SPEC.verify_setup(stored, data_dir=None, device="cpu", segments=True, max_pieces=200, any_complete=True).polyline_certifier is not None
    one_by_one = _verify_one_by_one(f, monkeypatch)
    for block in (7, verify.SEGMENT_BLOCK):
        monkeypatch.setattr(verify, "SEGMENT_BLOCK", block)
        batched = verify_file(f)
        assert batched.format() == one_by_one.format()
        assert (batched.segments_checked, batched.segments_certified) == (one_by_one.segments_checked, one_by_one.segments_certified)
    seg = next(c for c in one_by_one.checks if c.name == "path 0-1 segments")
    assert seg.result == {"as written": "ok", "spliced": "FAIL", "spliced, before certification": "warn"}[case], seg


def test_lenet_segments_of_a_certified_file_are_certified(mnist_file):
    """Every vertex of the fixture's path is stored, so every stored segment is a certified move: all certified again."""
    rep = verify_file(mnist_file)
    seg = next(c for c in rep.checks if c.name == "path 0-1 segments")
    with h5py.File(mnist_file) as h:
        n = h["paths/0-1/weights"].shape[0] - 1
        assert "weight_index" not in h["paths/0-1"] and h["paths/0-1"].attrs["segments_certified"] >= n
    assert n >= 2 and seg.result == "ok" and f"{n} of {n} stored segments certified" in seg.detail, seg
    assert rep.segments_checked == rep.segments_certified == n


def test_lenet_rows_kept_at_a_stride_are_chords(mnist_file, tmp_path):
    """Rows kept at a stride are joined by chords, not path segments: one that cannot be certified is listed, not failed.

    Every other row is kept, and the second kept row is replaced by solution 1, so the chord from row 0
    (solution 0) to it is the straight line between the two solutions, which leaves S (checked by sampling).
    """
    from ramble.models.lenet import LeNetProblem
    from ramble.models.mnist import load_mnist

    f = _copy(mnist_file, tmp_path)
    with h5py.File(f, "r+") as h:
        g = h["paths/0-1"]
        w = g["weights"][()]
        keep = np.arange(0, len(w), 2)
        kept = w[keep]
        kept[1] = h["solutions/1"][()]
        del g["weights"]
        g["weights"] = kept
        if "weight_index" in g:
            del g["weight_index"]
        g["weight_index"] = keep
        del g.attrs["sha256"]
        a, b = (torch.from_numpy(h[f"solutions/{i}"][()]).float() for i in (0, 1))
    problem = LeNetProblem.from_data(load_mnist(FIXTURE, train_size=100, test_size=1))
    assert not all(problem.contains(a + float(t) * (b - a)) for t in np.linspace(0, 1, 11))
    rep = verify_file(f, max_pieces=20)
    seg = next(c for c in rep.checks if c.name == "path 0-1 segments")
    assert rep.ok and seg.result == "warn", rep.format()
    assert rep.segments_checked == len(keep) - 1 and rep.segments_certified < rep.segments_checked
    assert "0->1" in seg.detail and "not path segments" in seg.detail and "--replay" in seg.detail


def test_replay_reproduces_the_lenet_path_and_catches_an_altered_row(mnist_file, tmp_path):
    rep = verify_file(mnist_file, segments=False, replay=True)
    rp = next(c for c in rep.checks if c.name == "path 0-1 replay")
    assert rp.result == "ok" and "bit for bit" in rp.detail and "moves certified" in rp.detail, rep.format()
    assert rep.ok, rep.format()
    f = _copy(mnist_file, tmp_path)
    with h5py.File(f, "r+") as h:
        t = _middle_row(h)
        h["paths/0-1/weights"][t, 7] += 1e-3
        del h["paths/0-1"].attrs["sha256"]  # only the replay can see it now
    assert verify_file(f, segments=False).ok  # a change this small stays in S and on Eq. 4
    r = _run(["verify", str(f), "--replay", "--no-segments"])
    assert r.exit_code == 1, r.output
    assert f"row {t} differs from the replay" in r.output
    assert "path 0-1 replay" in r.output.strip().splitlines()[-1]
