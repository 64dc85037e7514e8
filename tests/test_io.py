"""The HDF5 format: round trip through ExperimentWriter and load, and refusal of bad files."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from ramble.core.path import PathConfig, find_path, straight_line
from ramble.errors import FormatError, RambleError
from ramble.storage import io


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


# ---------------------------------------------------------------- the loaded records (issue 15)
def _written(tmp_path, small_tcm, weight_every: int = 1):
    prob, (w_a, w_b) = small_tcm
    r = find_path(prob, w_a, w_b, PathConfig(weight_every=weight_every))
    out = tmp_path / f"x{weight_every}.h5"
    with io.ExperimentWriter(out, "tcm", "python", {"seed": 7}) as w:
        w.write_solution(0, w_a.numpy(), {})
        w.write_solution(1, w_b.numpy(), {})
        w.write_path(0, 1, r)
        w.finish("complete")
    return out, r


def test_arc_length_of_an_older_file_is_computed_from_its_weights(tmp_path, small_tcm):
    out, r = _written(tmp_path, small_tcm)
    with h5py.File(out, "r+") as f:  # an older file: no arclength dataset
        if "arclength" in f["paths/0-1"]:
            del f["paths/0-1/arclength"]
    p = io.load(out, weights=False).paths["0-1"]
    steps = np.linalg.norm(np.diff(r.weights, axis=0), axis=1)
    assert p.arclength_source == "weights"
    np.testing.assert_allclose(p.arclength, np.concatenate([[0.0], np.cumsum(steps)]))
    assert p.line_length == pytest.approx(float(np.linalg.norm(r.weights[-1] - r.weights[0])))
    assert p.length_ratio == pytest.approx(p.arclength[-1] / p.line_length) and p.length_ratio > 1


def test_arc_length_unknown_when_weights_are_strided_says_why(tmp_path, small_tcm):
    out, _ = _written(tmp_path, small_tcm, weight_every=5)
    with h5py.File(out, "r+") as f:
        if "arclength" in f["paths/0-1"]:
            del f["paths/0-1/arclength"]
    p = io.load(out, weights=False).paths["0-1"]
    assert p.arclength is None and "weights kept for only" in p.arclength_source
    assert np.isnan(p.length_ratio)


def test_short_repr_typed_fields_and_field_docs(tmp_path, small_tcm):
    out, r = _written(tmp_path, small_tcm)
    e = io.load(out)
    text = repr(e) + repr(e.paths["0-1"])
    assert len(text) < 1000 and "array(" in text and "..." not in text  # shapes, not values
    p = e.paths["0-1"]
    assert p.test_error is None and p.test_loss is None  # the TCM has no test set
    doc = io.PathRecord.__dataclass_fields__  # every field is documented in the class body
    import inspect

    source = inspect.getsource(io.PathRecord)
    for name in doc:
        assert f"    {name}:" in source
        after = source.split(f"    {name}:")[1].split("\n")[1].strip()
        assert after.startswith('"""'), f"PathRecord.{name} has no docstring"
    assert "one row per *iteration*" in source


def test_hessian_record_is_typed_and_reads_like_the_old_dict(tmp_path, small_tcm):
    out, _ = _written(tmp_path, small_tcm)
    with io.update(out) as f:
        h = f["paths/0-1"].create_group("hessian")
        h.create_dataset("index", data=np.array([0, 3]))
        h.create_dataset("eigenvalues", data=np.array([[2.0, 1.0], [3.0, 0.5]]))
        h.create_dataset("trace", data=np.array([3.0, 3.5]))
        h.attrs["method"] = "exact"
    hr = io.load(out, weights=False).paths["0-1"].hessian
    assert isinstance(hr, io.HessianRecord)
    np.testing.assert_array_equal(hr.index, [0, 3])
    assert hr.trace[1] == 3.5 and hr.attrs["method"] == "exact"
    assert hr["eigenvalues"].shape == (2, 2) and hr.get("attrs")["method"] == "exact" and "trace" in hr and hr.get("n_nonzero") is None


def test_path_checkpoints_of_versions_2_and_3_are_read_and_others_refused():
    """Version 2 states (saved at iterations' starts) stay readable; an unknown version is one FormatError line."""
    import io as bytes_io

    import torch

    from ramble.storage.checkpoint import decode, encode

    state = {"iteration": 7, "w": torch.arange(3.0)}

    def boxed(version: int) -> np.ndarray:
        buf = bytes_io.BytesIO()
        torch.save({"version": version, "state": state}, buf)
        return np.frombuffer(buf.getvalue(), dtype=np.uint8)

    back = decode(encode(state))
    assert back["iteration"] == 7 and torch.equal(back["w"], state["w"])
    assert decode(boxed(2))["iteration"] == 7
    for version in (1, 4):
        with pytest.raises(FormatError, match=rf"path checkpoint of version {version}; this ramble reads versions 2, 3"):
            decode(boxed(version))
