"""Held-out data sets at the paper's size (N=300, K=3, M=620, 3 solutions): seeds 101-113 connect, and `ramble verify` certifies every stored segment.

Seed 108 is the hardest of them: with only stored points checked every pair
connected (one by the norm escape, one routed); with every segment certified
and earlier defaults, pairs 0-1 and 1-2 stalled even through waypoints, the
norm escape and routing; with today's defaults all three connect
(docs/verify.md, benchmarks/results/verify_seeds_101_113.txt).  Seeds 108,
111 and 113 take most of this file's time (their paths have 60k-140k stored
segments).
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from click.testing import CliRunner

from ramble.cli import main
from ramble.storage.views import open_stored

SEEDS = tuple(range(101, 114))


def run(*args: str):
    return CliRunner().invoke(main, ["--quiet", *args], catch_exceptions=False)


def segments_line(output: str) -> tuple[int, int]:
    """(checked, certified) from verify's "segments between stored rows: X checked, Y certified inside S" line."""
    m = re.search(r"segments between stored rows: (\d+) checked, (\d+) certified inside S", output)
    assert m, output
    return int(m.group(1)), int(m.group(2))


@pytest.mark.parametrize("seed", SEEDS)
def test_paper_size_seed_connects_and_every_segment_is_certified(tmp_path, seed):
    out = tmp_path / f"s{seed}.h5"
    r = run("tcm", "run", "--backend", "julia", "--seed", str(seed), "--solutions", "3", "--out", str(out))
    assert r.exit_code == 0, r.output
    with open_stored(out) as f:
        solutions = f.solutions()
        names = f.path_names()
        assert sorted(names) == ["0-1", "0-2", "1-2"]
        stored_segments = 0
        for name in names:
            p = f.path(name)
            assert p.attrs["status"] == "complete", (name, p.attrs.get("reason"))
            np.testing.assert_array_equal(p.weights[0], solutions[int(p.attrs["from"])])
            np.testing.assert_array_equal(p.weights[-1], solutions[int(p.attrs["to"])])
            stored_segments += int(p.weights.shape[0]) - 1
    v = run("verify", str(out))
    assert v.exit_code == 0, v.output
    checked, certified = segments_line(v.output)
    assert checked == certified == stored_segments > 0, v.output
    for name in names:  # every stored row recomputed in S from the stored data alone, endpoints the solutions
        for check in ("endpoints", "in S", "segments"):
            assert re.search(rf"^path {name} {check} +ok ", v.output, re.M), v.output
    out.unlink()  # up to 250 MB (seed 108); pytest keeps the folders of its last runs
