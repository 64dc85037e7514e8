"""Connectivity of many solutions (issue 7, part 1): outcome matrix, components, /connectivity, the figure."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from ramble.analysis.connectivity import (
    DIRECT,
    FAILED,
    NOT_ATTEMPTED,
    ROUTED,
    classical_mds,
    components,
    connectivity_matrix,
    matrix_from_h5,
    matrix_from_outcomes,
    read_connectivity,
    solution_distances,
    statement,
    store_connectivity,
)
from ramble.cli import main
from ramble.errors import RambleError
from ramble.reporting.plots import fig_connectivity
from ramble.storage.io import Experiment, LinearRecord, PathRecord, load

# Small and quick: gamma 0.05 and tol 0.01 make each path ~100 iterations.
SMALL = ["--backend", "python", "-N", "30", "-K", "3", "-M", "40", "--seed", "101", "--gamma", "0.05", "--tol", "0.01"]


def run(*args: str):
    return CliRunner().invoke(main, ["--quiet", *args], catch_exceptions=False)


@pytest.fixture(scope="module")
def five(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("conn") / "five.h5"
    r = run("tcm", "run", *SMALL, "--solutions", "5", "--pairs", "all", "--out", str(out))
    assert r.exit_code == 0, r.output
    return out


def test_five_solutions_all_pairs_store_matrix_and_figure(five: Path, tmp_path: Path) -> None:
    e = load(five, weights=False)
    assert e.status == "complete" and len(e.solutions) == 5
    assert sorted(e.paths) == sorted(f"{i}-{j}" for i in range(5) for j in range(i + 1, 5))  # 10 paths
    work = tmp_path / "five.h5"
    work.write_bytes(five.read_bytes())

    r = run("connectivity", str(work))
    assert r.exit_code == 0, r.output
    assert "all 5 solutions form one connected set inside S:" in r.output
    with h5py.File(work, "r") as f:
        c = read_connectivity(f)
        assert c is not None and f["connectivity/matrix"].dtype == np.int8
        stored_connected = bool(f["connectivity"].attrs["connected"])
        assert json.loads(f["connectivity"].attrs["components"]) == c.components
    want = np.full((5, 5), DIRECT, np.int8)
    for p in e.iter_paths():  # the matrix says what the paths say
        v = (ROUTED if len(np.atleast_1d(p.attrs.get("via", []))) else DIRECT) if p.complete else FAILED
        want[p.source, p.target] = want[p.target, p.source] = v
    np.testing.assert_array_equal(c.matrix, want)
    assert stored_connected == (len(c.components) == 1)
    assert ("yes" if stored_connected else "no") in r.output.splitlines()[0]
    # the update left the paths intact: verify still passes
    assert run("verify", str(work)).exit_code == 0

    figs = tmp_path / "figs"
    r = run("plot", str(work), "--out", str(figs), "--format", "png")
    assert r.exit_code == 0, r.output
    png = figs / "five_connectivity.png"
    assert png.exists() and png.stat().st_size > 10_000


def test_matrix_components_and_statement_with_failed_and_routed_pairs() -> None:
    # 0-1 direct, 1-2 failed but 0-2 routed through 1, 3 never attempted, 3-4 direct
    m = matrix_from_outcomes(5, [(0, 1, True, []), (1, 2, False, []), (0, 2, True, [1]), (3, 4, True, [])])
    assert m.dtype == np.int8
    np.testing.assert_array_equal(m, m.T)
    assert m[0, 1] == DIRECT and m[1, 2] == FAILED and m[2, 0] == ROUTED and m[0, 3] == NOT_ATTEMPTED and m[4, 3] == DIRECT
    assert (np.diag(m) == DIRECT).all()
    assert components(m) == [[0, 1, 2], [3, 4]]
    s = statement(m)
    assert s.startswith("all 5 solutions form one connected set inside S: no, 2 components {0,1,2} {3,4}")
    assert "3/4 attempted pairs connected inside S: 2 directly, 1 through another solution, 1 failed; 6 pair(s) not attempted" in s


def test_failed_pair_splits_and_duplicate_direction_keeps_the_better_outcome() -> None:
    m = matrix_from_outcomes(4, [(0, 1, True, []), (2, 3, True, []), (1, 2, False, []), (2, 1, True, [])])
    assert m[1, 2] == m[2, 1] == DIRECT  # 2->1 arrived even though 1->2 failed
    assert components(m) == [[0, 1, 2, 3]]
    m = matrix_from_outcomes(4, [(0, 1, True, []), (2, 3, True, []), (1, 2, False, [])])
    assert components(m) == [[0, 1], [2, 3]]
    assert "yes" in statement(matrix_from_outcomes(3, [(0, 1, True, []), (1, 2, True, [])]))
    assert statement(matrix_from_outcomes(1, [])) == "1 solution(s): nothing to connect"
    with pytest.raises(RambleError, match="path 0-7 names a solution outside 0..3"):
        matrix_from_outcomes(4, [(0, 7, True, [])])


def test_store_and_read_from_raw_groups(tmp_path: Path) -> None:
    """What the drivers call: store_connectivity(f) on an open file, computed from /paths attributes."""
    with h5py.File(tmp_path / "x.h5", "w") as f:
        for i in range(3):
            f.create_dataset(f"solutions/{i}", data=np.zeros(4))
        for (i, j), status, via in (((0, 1), "complete", []), ((1, 2), "failed", []), ((0, 2), "complete", [1])):
            g = f.create_group(f"paths/{i}-{j}")
            g.attrs["from"], g.attrs["to"], g.attrs["status"] = i, j, status
            g.attrs["via"] = np.asarray(via, dtype=np.int64)
        np.testing.assert_array_equal(matrix_from_h5(f), [[1, 1, 2], [1, 1, 0], [2, 0, 1]])
        c = store_connectivity(f)
        c2 = store_connectivity(f)  # replaces, does not fail on the existing group
        assert c.components == c2.components == [[0, 1, 2]]
    with h5py.File(tmp_path / "x.h5", "r") as f:
        assert bool(f["connectivity"].attrs["connected"]) is True
        assert int(f["connectivity"].attrs["pairs_failed"]) == 1 and int(f["connectivity"].attrs["pairs_routed"]) == 1
        np.testing.assert_array_equal(read_connectivity(f).matrix, c.matrix)


def _experiment(outcomes: list[tuple[int, int, bool, list[int], float]], n: int) -> Experiment:
    rng = np.random.default_rng(0)
    sols = {i: rng.normal(size=12) for i in range(n)}
    paths = {}
    for i, j, ok, via, line in outcomes:
        a = {"from": i, "to": j, "status": "complete" if ok else "failed", "via": via}
        lin = LinearRecord(alpha=np.linspace(0, 1, 3), train_loss=np.zeros(3), train_error=np.array([0.0, line, 0.0]))
        z = np.zeros(2)
        paths[f"{i}-{j}"] = PathRecord(f"{i}-{j}", i, j, a["status"], "" if ok else "stalled", a, np.zeros((2, 12)), z, z, z, z, z, {}, lin, None)
    return Experiment(Path("hand.h5"), {}, {"seed": 0}, "tcm", "python", "complete", {}, {}, sols, {i: {} for i in sols}, paths)


def test_figure_of_hand_built_outcomes(tmp_path: Path) -> None:
    e = _experiment([(0, 1, True, [], 0.02), (1, 2, False, [], 0.08), (0, 2, True, [1], 0.05), (2, 3, True, [], 0.0)], n=4)
    m = connectivity_matrix(e)
    assert m[1, 2] == FAILED and m[0, 2] == ROUTED and m[0, 3] == NOT_ATTEMPTED
    out = fig_connectivity(e, tmp_path / "c", formats=("png",))
    assert [p.name for p in out] == ["c.png"] and out[0].stat().st_size > 10_000
    assert fig_connectivity(_experiment([], n=1), tmp_path / "none", formats=("png",)) == []


def test_classical_mds_recovers_planar_distances() -> None:
    pts = np.array([[0.0, 0.0], [3.0, 0.0], [0.0, 4.0], [1.0, 1.0]])
    d = solution_distances({i: np.concatenate([p, np.zeros(5)]) for i, p in enumerate(pts)})
    xy, kept = classical_mds(d)
    assert kept == pytest.approx(1.0)
    np.testing.assert_allclose(solution_distances(dict(enumerate(xy))), d, atol=1e-9)
    # a tetrahedron does not fit in 2-D: part of the variance is lost
    tet = np.eye(4)
    _, kept3 = classical_mds(solution_distances(dict(enumerate(tet))))
    assert kept3 == pytest.approx(2 / 3)


def test_cli_refuses_missing_and_unfinished_files(tmp_path: Path) -> None:
    r = run("connectivity", str(tmp_path / "nope.h5"))
    assert r.exit_code == 1 and r.output.strip().count("\n") == 0 and "no such file" in r.output
    with h5py.File(tmp_path / "run.h5", "w") as f:
        f.attrs.update({"format": "ramble", "format_version": 1, "model": "tcm", "status": "running", "config": "{}"})
    r = run("connectivity", str(tmp_path / "run.h5"))
    assert r.exit_code == 1 and "status 'running'" in r.output and r.output.strip().count("\n") == 0
