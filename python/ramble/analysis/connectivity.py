"""Which solutions of one experiment are connected inside S (issue 7, part 1).

A file with n solutions holds paths for some pairs (``--pairs all|chain|star``).
Each pair has one **outcome**, kept in a symmetric (n, n) int8 matrix:

* ``DIRECT`` (1): a complete path joins the two solutions directly;
* ``ROUTED`` (2): a complete path joins them through other solutions (the
  path's ``via`` attribute is non-empty);
* ``FAILED`` (0): a path was attempted and did not arrive;
* ``NOT_ATTEMPTED`` (-1): no path was stored for the pair.

The diagonal is ``DIRECT`` (a solution is trivially connected to itself).
When both ``i-j`` and ``j-i`` are stored the better outcome counts
(direct > routed > failed).

The **components** are the connected sets of solutions under complete paths
(direct or routed), found by union-find; "one connected set" means a single
component holding every solution.  Because a complete path lies in S, two
solutions in one component are joined by a chain of paths inside S; two
solutions in different components may still be connected in S (a failed or
missing path proves nothing).

:func:`store_connectivity` writes ``/connectivity`` (docs/format.md); the
``ramble connectivity FILE`` command adds it to an existing file.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from typing import Iterable, Mapping, Optional, Sequence, Union

import numpy as np

from ramble.errors import RambleError
from ramble.storage.groups import read_connectivity_group, write_connectivity
from ramble.storage.io import Experiment
from ramble.storage.views import Handle, StoredFile, as_stored

log = logging.getLogger("ramble")

NOT_ATTEMPTED = -1
FAILED = 0
DIRECT = 1
ROUTED = 2
OUTCOME_NAMES = {NOT_ATTEMPTED: "not attempted", FAILED: "failed", DIRECT: "connected directly", ROUTED: "connected through another solution"}
#: Which outcome wins when a pair is stored in both directions.
_RANK = {DIRECT: 3, ROUTED: 2, FAILED: 1, NOT_ATTEMPTED: 0}

Outcome = tuple[int, int, bool, Sequence[int]]
"""One stored path: (from, to, complete, via)."""


@dataclass(frozen=True)
class Connectivity:
    """The outcome matrix of one file, its components, and the statement."""

    matrix: np.ndarray
    components: list[list[int]]

    @property
    def n(self) -> int:
        return int(self.matrix.shape[0])

    @property
    def connected(self) -> bool:
        """True iff every solution is in one component (a file with 0 or 1 solution is trivially connected)."""
        return len(self.components) <= 1

    def counts(self) -> dict[str, int]:
        """Pairs (i < j) per outcome name: ``direct``, ``routed``, ``failed``, ``not_attempted``."""
        iu = np.triu_indices(self.n, k=1)
        v = self.matrix[iu]
        return {"direct": int((v == DIRECT).sum()), "routed": int((v == ROUTED).sum()), "failed": int((v == FAILED).sum()), "not_attempted": int((v == NOT_ATTEMPTED).sum())}

    def statement(self) -> str:
        return statement(self.matrix, self.components)


def matrix_from_outcomes(n: int, outcomes: Iterable[Outcome]) -> np.ndarray:
    """The symmetric (n, n) int8 outcome matrix from stored paths ``(i, j, complete, via)``.

    Raises RambleError when a path names a solution outside ``0 .. n-1``.
    """
    if n < 0:
        raise RambleError(f"number of solutions must be >= 0, got {n}")
    m = np.full((n, n), NOT_ATTEMPTED, dtype=np.int8)
    np.fill_diagonal(m, DIRECT)
    for i, j, complete, via in outcomes:
        i, j = int(i), int(j)
        if not (0 <= i < n and 0 <= j < n):
            raise RambleError(f"path {i}-{j} names a solution outside 0..{n - 1} (the file has {n} solutions)")
        if i == j:
            continue
        v = (ROUTED if len(list(via)) else DIRECT) if complete else FAILED
        if _RANK[v] > _RANK[int(m[i, j])]:
            m[i, j] = m[j, i] = v
    return m


def _via(v: object) -> list[int]:
    """A path's ``via`` attribute as a list (h5py gives a scalar, an array, or a list)."""
    if v is None:
        return []
    if isinstance(v, (int, np.integer)):
        return [int(v)]
    return [int(x) for x in np.atleast_1d(np.asarray(v)).ravel()]


def connectivity_matrix(e: Experiment) -> np.ndarray:
    """Outcome matrix (n, n) int8 of a loaded experiment; n = the largest solution index + 1."""
    n = max(e.solutions, default=-1) + 1
    return matrix_from_outcomes(n, ((p.source, p.target, p.complete, _via(p.attrs.get("via"))) for p in e.iter_paths()))


def matrix_from_h5(f: Union[Handle, StoredFile]) -> np.ndarray:
    """Outcome matrix read straight from an open file (the solution indices and the paths' attributes only)."""
    v = as_stored(f)
    n = max(v.solution_indices(), default=-1) + 1
    outcomes = []
    for p in v.paths():
        a = p.attrs
        src = int(a.get("from", p.name.split("-")[0]))
        dst = int(a.get("to", p.name.split("-")[1]))
        outcomes.append((src, dst, a.get("status", "") == "complete", _via(a.get("via", []))))
    return matrix_from_outcomes(n, outcomes)


def components(matrix: np.ndarray) -> list[list[int]]:
    """Connected sets of solutions under complete paths (DIRECT or ROUTED), by union-find.

    Each component is sorted; components are ordered by their smallest member.
    """
    m = np.asarray(matrix)
    n = int(m.shape[0])
    parent = list(range(n))

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]  # path halving keeps the trees flat
            a = parent[a]
        return a

    for i, j in zip(*np.nonzero((m == DIRECT) | (m == ROUTED))):
        ri, rj = find(int(i)), find(int(j))
        if ri != rj:
            parent[max(ri, rj)] = min(ri, rj)
    groups: dict[int, list[int]] = {}
    for a in range(n):
        groups.setdefault(find(a), []).append(a)
    return sorted((sorted(g) for g in groups.values()), key=lambda g: g[0])


def statement(matrix: np.ndarray, comps: Optional[Sequence[Sequence[int]]] = None) -> str:
    """One line: do all solutions form one connected set inside S, with the pair counts."""
    m = np.asarray(matrix)
    n = int(m.shape[0])
    comps = components(m) if comps is None else [list(c) for c in comps]
    c = Connectivity(m, comps)
    k = c.counts()
    if n < 2:
        return f"{n} solution(s): nothing to connect"
    attempted = k["direct"] + k["routed"] + k["failed"]
    head = f"all {n} solutions form one connected set inside S: {'yes' if c.connected else 'no'}"
    if not c.connected:
        head += f", {len(comps)} components " + " ".join("{" + ",".join(map(str, g)) + "}" for g in comps)
    tail = f"{k['direct'] + k['routed']}/{attempted} attempted pairs connected inside S: {k['direct']} directly, {k['routed']} through another solution, {k['failed']} failed"
    if k["not_attempted"]:
        tail += f"; {k['not_attempted']} pair(s) not attempted"
    return f"{head} ({tail})"


def analyse(e: Experiment) -> Connectivity:
    """Matrix and components of a loaded experiment."""
    m = connectivity_matrix(e)
    return Connectivity(m, components(m))


def store_connectivity(f: Handle, matrix: Optional[np.ndarray] = None) -> Connectivity:
    """Write ``/connectivity`` into an open, writable file (or group); returns what was written.

    ``matrix``: the outcome matrix; None computes it from the file's own
    ``/solutions`` and ``/paths`` (what the experiment drivers want: call it
    after the last path is written, before ``finish``).  Replaces an earlier
    ``/connectivity``.  Dataset ``matrix`` (n, n) int8; attributes
    ``components`` (JSON list of lists), ``connected`` (bool), ``statement``,
    ``n_solutions``, the pair counts, and ``codes`` (JSON: what each value means).
    """
    m = matrix_from_h5(f) if matrix is None else np.asarray(matrix, dtype=np.int8)
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise RambleError(f"connectivity matrix must be square (n, n), got shape {m.shape}")
    c = Connectivity(m, components(m))
    write_connectivity(f, m, _summary(c))
    return c


def _summary(c: Connectivity) -> dict[str, object]:
    """The attributes of ``/connectivity``, in the order they are written."""
    out: dict[str, object] = {"components": json.dumps(c.components), "connected": bool(c.connected), "statement": c.statement(), "n_solutions": c.n}
    out.update({f"pairs_{k}": v for k, v in c.counts().items()})
    out["codes"] = json.dumps({str(k): v for k, v in OUTCOME_NAMES.items()}, sort_keys=True)
    return out


def read_connectivity(f: Handle) -> Optional[Connectivity]:
    """The stored ``/connectivity`` of an open file, or None when the file has none."""
    got = read_connectivity_group(f)
    if got is None:
        return None
    matrix, attrs = got
    return Connectivity(matrix, [list(map(int, c)) for c in json.loads(attrs["components"])])


def connectivity_file(path: Union[str, os.PathLike]) -> Connectivity:
    """Compute the connectivity of a complete file and store it there (all-or-nothing, :func:`ramble.storage.io.update`)."""
    from ramble.storage.io import load, update

    e = load(path, weights=False)
    if e.status != "complete":
        raise RambleError(f"{path} has status {e.status!r}; connectivity is computed only for complete files")
    if not e.solutions:
        raise RambleError(f"{path} holds no solutions: nothing to connect")
    m = connectivity_matrix(e)
    with update(path) as f:
        c = store_connectivity(f, m)
    log.debug("stored /connectivity in %s", path)
    return c


def edge_table(e: Experiment) -> list[dict[str, object]]:
    """One entry per attempted pair (i < j): outcome, via, and the straight line's largest training error (NaN if not stored).

    Used by the connectivity figure; a pair stored in both directions
    contributes the entry of its better path.
    """
    best: dict[tuple[int, int], dict[str, object]] = {}
    for p in e.iter_paths():
        i, j = sorted((p.source, p.target))
        if i == j:
            continue
        via = _via(p.attrs.get("via"))
        outcome = (ROUTED if via else DIRECT) if p.complete else FAILED
        line = float(np.max(p.linear.train_error)) if p.linear is not None and len(p.linear.train_error) else float("nan")
        entry = {"i": i, "j": j, "outcome": outcome, "via": via, "line_max_error": line}
        if (i, j) not in best or _RANK[outcome] > _RANK[int(best[(i, j)]["outcome"])]:  # type: ignore[arg-type]
            best[(i, j)] = entry
    return [best[k] for k in sorted(best)]


def solution_distances(solutions: Mapping[int, np.ndarray]) -> np.ndarray:
    """Euclidean distances (n, n) between the solutions, in index order (float64)."""
    keys = sorted(solutions)
    X = np.stack([np.asarray(solutions[k], dtype=np.float64) for k in keys]) if keys else np.zeros((0, 0))
    sq = np.sum(X * X, axis=1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2.0 * X @ X.T, 0.0)
    np.fill_diagonal(d2, 0.0)
    return np.sqrt(d2)


def classical_mds(d: np.ndarray, dims: int = 2) -> tuple[np.ndarray, float]:
    """Classical (Torgerson) MDS of a distance matrix (n, n): coordinates (n, dims) and the share of variance kept.

    Double-centres -D^2/2 and keeps the ``dims`` largest eigenvalues; the
    share is their sum over the sum of all positive eigenvalues (1.0 when
    the distances are exactly ``dims``-dimensional).  Missing dimensions
    (n <= dims) are zero columns.
    """
    d = np.asarray(d, dtype=np.float64)
    n = d.shape[0]
    if n == 0:
        return np.zeros((0, dims)), 1.0
    J = np.eye(n) - np.full((n, n), 1.0 / n)
    B = -0.5 * J @ (d * d) @ J
    vals, vecs = np.linalg.eigh((B + B.T) / 2)
    order = np.argsort(vals)[::-1]
    vals, vecs = vals[order], vecs[:, order]
    pos = np.clip(vals, 0.0, None)
    X = np.zeros((n, dims))
    k = min(dims, n)
    X[:, :k] = vecs[:, :k] * np.sqrt(pos[:k])
    total = float(pos.sum())
    return X, (float(pos[:k].sum()) / total if total > 0 else 1.0)
