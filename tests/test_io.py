"""The HDF5 format: round trip through ExperimentWriter and load, and refusal of bad files."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from ramble import io
from ramble.errors import FormatError, RambleError
from ramble.path import PathConfig, find_path, straight_line


def test_round_trip(tmp_path, small_tcm):
    prob, (w_a, w_b) = small_tcm
    r = find_path(prob, w_a, w_b, PathConfig())
    line = straight_line(prob, w_a, w_b, 21)
    out = tmp_path / "x.h5"
    with io.ExperimentWriter(out, "tcm", "python", {"seed": 7}) as w:
        assert h5py.File(out, "r").attrs["status"] == "running"
        w.write_tcm_data(np.ones((3, 6), np.int8), -np.ones(3, np.int8), 7)
        w.write_solution(0, w_a.numpy(), {"attempts": 1})
        w.write_solution(1, w_b.numpy(), {"attempts": 2})
        w.write_path(0, 1, r)
        w.write_arrays("paths/0-1/linear", line)
        w.finish("complete")
    e = io.load(out)
    assert e.status == "complete" and e.model == "tcm" and e.backend == "python"
    assert e.config == {"seed": 7}
    assert e.attrs["format"] == "ramble" and e.attrs["format_version"] == 1
    np.testing.assert_array_equal(e.solutions[0], w_a.numpy())
    assert e.solution_attrs[1]["attempts"] == 2
    p = e.paths["0-1"]
    assert p.status == r.status and p.source == 0 and p.target == 1
    np.testing.assert_array_equal(p.weights, r.weights)
    np.testing.assert_array_equal(p.distance, r.distance)
    np.testing.assert_array_equal(p.decisions, r.decisions)
    np.testing.assert_array_equal(p.linear.alpha, line["alpha"])
    assert e.data["train_inputs"].dtype == np.int8


def test_exception_marks_file_failed(tmp_path):
    out = tmp_path / "y.h5"
    with pytest.raises(RuntimeError):
        with io.ExperimentWriter(out, "tcm", "python", {}):
            raise RuntimeError("boom")
    e = io.load(out)
    assert e.status == "failed" and "boom" in e.attrs["error"]


def test_existing_output_is_refused_without_force(tmp_path):
    out = tmp_path / "z.h5"
    out.write_bytes(b"")
    with pytest.raises(RambleError, match="exists"):
        io.ExperimentWriter(out, "tcm", "python", {})
    with io.ExperimentWriter(out, "tcm", "python", {}, force=True) as w:
        w.finish("complete")


def test_missing_output_folder(tmp_path):
    with pytest.raises(RambleError, match="does not exist"):
        io.ExperimentWriter(tmp_path / "nope" / "z.h5", "tcm", "python", {})


def test_bad_files_are_refused(tmp_path):
    text = tmp_path / "a.h5"
    text.write_text("not hdf5")
    with pytest.raises(FormatError, match="not a readable HDF5"):
        io.load(text)
    other = tmp_path / "b.h5"
    with h5py.File(other, "w") as f:
        f.attrs["format"] = "something"
    with pytest.raises(FormatError, match="not a ramble file"):
        io.load(other)
    newer = tmp_path / "c.h5"
    with h5py.File(newer, "w") as f:
        f.attrs["format"] = "ramble"
        f.attrs["format_version"] = 99
    with pytest.raises(FormatError, match="version 99"):
        io.load(newer)
    with pytest.raises(FormatError, match="no such file"):
        io.load(tmp_path / "missing.h5")


def test_truncated_file_is_refused(tmp_path):
    good = tmp_path / "g.h5"
    with io.ExperimentWriter(good, "tcm", "python", {}) as w:
        w.write_solution(0, np.arange(1000.0), {})
        w.finish("complete")
    data = good.read_bytes()
    bad = tmp_path / "t.h5"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(FormatError):
        io.load(bad)


def test_checkpoint_progress_grows_and_restarts_with_a_new_leg(tmp_path, small_tcm):
    prob, (w_a, w_b) = small_tcm
    out = tmp_path / "c.h5"
    with io.ExperimentWriter(out, "lenet5", "torch", {}) as w:
        w.save_checkpoint("0-1", np.arange(5, dtype=np.uint8), {"iteration": 3}, {"distance": np.array([0.0, 0.1])})
        w.save_checkpoint("0-1", np.arange(6, dtype=np.uint8), {"iteration": 7}, {"distance": np.array([0.0, 0.1, 0.3])})
        with h5py.File(out, "r") as f:
            d = f["checkpoints/0-1/progress/distance"]
            assert d.maxshape == (None,) and list(d[()]) == [0.0, 0.1, 0.3]
            assert f["checkpoints/0-1"].attrs["iteration"] == 7
        assert list(w.load_checkpoint("0-1")) == list(range(6))
        # a new leg: fewer, different points replace the old ones
        w.save_checkpoint("0-1", np.arange(2, dtype=np.uint8), {"iteration": 9}, {"distance": np.array([0.5])})
        with h5py.File(out, "r") as f:
            assert list(f["checkpoints/0-1/progress/distance"][()]) == [0.5]
        w.write_path(0, 1, find_path(prob, w_a, w_b, PathConfig()))
        with h5py.File(out, "r") as f:
            assert "checkpoints" not in f  # dropped in the commit that stores the finished path
