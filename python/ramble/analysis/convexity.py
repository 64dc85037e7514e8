"""Convexity probe: how much of the convex hull of known solutions lies in S (issue 7, part 3).

The paper hints that the algorithmically accessible part of S (S_algo) might
be convex.  If it were, every convex combination of points known to be in S
(the trained solutions and the points of complete paths) would be in S too.
This module samples such combinations from one complete file and counts how
many are in S; a single point outside refutes convexity of the set spanned by
those points, and the fraction inside measures how far from convex it is.

Kinds of samples (``KINDS``), each drawn with its own seeded generator
(``numpy.random.default_rng([seed, index of the kind])``) so one kind's
numbers do not depend on which other kinds were probed:

* ``solutions`` — Dirichlet(1) weights over all n solutions (n >= 2; for
  n = 2 this is a uniform point of the straight line W_a -> W_b);
* ``path_hull`` — a complete path chosen uniformly, k rows of its stored
  weights chosen uniformly without replacement (k uniform in
  2 .. min(T, ``HULL_POINTS``)), Dirichlet(1) weights over them;
* ``path_segment`` — a complete path chosen uniformly, two distinct stored
  rows, a point at t ~ U(0, 1) on the segment between them;
* ``cross_segment`` — two different complete paths, one stored row of each,
  t ~ U(0, 1) (needs two complete paths).

Only rows whose weights are stored are used (LeNet5 keeps weights at a
stride).  Membership is recomputed from the file alone: the TCM from its
``/data/train`` in torch float64; LeNet5 from the MNIST files ``/data``
refers to (checksums compared, as ``ramble verify`` does), with combinations
formed in float64 and evaluated in float32, the dtype of the stored weights.
A point is in S iff every training margin is > 0.

The fraction inside comes with a Wilson score 95 % interval
(:func:`wilson_interval`).  Results go to ``/convexity/<kind>``
(docs/format.md) through :func:`ramble.storage.io.update`.
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence, Union

import numpy as np

from ramble.errors import ConfigError, RambleError
from ramble.models.registry import model_spec
from ramble.progress import progress_bar
from ramble.storage.groups import ConvexityKind, read_convexity_kinds, write_convexity
from ramble.storage.io import open_checked, update
from ramble.storage.views import Handle, StoredFile, as_stored, open_stored

log = logging.getLogger("ramble")

KINDS: tuple[str, ...] = ("solutions", "path_hull", "path_segment", "cross_segment")
DEFAULT_SAMPLES = 2000
MAX_SAMPLES = 1_000_000
#: Largest number of path rows combined by one ``path_hull`` sample.
HULL_POINTS = 8
#: Two-sided 95 % normal quantile.
Z95 = 1.959963984540054
#: Floats per chunk of sampled points held in memory at once (128 MiB of float64).
CHUNK_FLOATS = 1 << 24

HOW = {
    "solutions": "Dirichlet(1) weights over all {n_solutions} solutions",
    "path_hull": "a complete path chosen uniformly, k rows of its stored weights (k uniform in 2..min(T, {hull})), Dirichlet(1) weights over them",
    "path_segment": "a complete path chosen uniformly, two distinct stored rows, t ~ U(0, 1) on the segment between them",
    "cross_segment": "two different complete paths chosen uniformly, one stored row of each, t ~ U(0, 1) on the segment between them",
}

ErrorCounter = Callable[[np.ndarray], np.ndarray]
"""Weights (R, P) float64 -> training errors per row (R,) int64."""


def wilson_interval(inside: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion ``inside / n`` (default: 95 %).

    Unlike the normal approximation it stays within [0, 1] and is not of
    zero width at 0/n or n/n.  Raises ConfigError for n < 1 or inside outside 0..n.
    """
    if n < 1:
        raise ConfigError(f"the Wilson interval needs n >= 1 samples, got {n}")
    if not 0 <= inside <= n:
        raise ConfigError(f"inside must be in 0..n={n}, got {inside}")
    p = inside / n
    z2 = z * z
    denom = 1.0 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denom
    # exact ends at 0/n and n/n (the formula gives them up to round-off)
    lo = 0.0 if inside == 0 else max(0.0, centre - half)
    hi = 1.0 if inside == n else min(1.0, centre + half)
    return lo, hi


@dataclass
class ProbeResult:
    """One kind's samples: ``errors`` (n,) training errors at each sampled point; inside S iff 0."""

    kind: str
    seed: int
    how: str
    errors: np.ndarray
    n_train: int
    t: Optional[np.ndarray] = None
    extra: dict[str, Any] = field(default_factory=dict)
    rescaled_errors: Optional[np.ndarray] = None

    @property
    def n(self) -> int:
        return int(len(self.errors))

    @property
    def inside(self) -> int:
        return int((self.errors == 0).sum())

    @property
    def fraction(self) -> float:
        return self.inside / self.n

    @property
    def ci(self) -> tuple[float, float]:
        return wilson_interval(self.inside, self.n)

    def attrs(self) -> dict[str, Any]:
        """What is stored as the attributes of ``/convexity/<kind>``."""
        lo, hi = self.ci
        out = self.errors[self.errors > 0]
        return {
            "n": self.n,
            "inside": self.inside,
            "fraction": self.fraction,
            "ci_low": lo,
            "ci_high": hi,
            "confidence": 0.95,
            "interval": "Wilson score",
            "seed": self.seed,
            "how": self.how,
            "n_train": self.n_train,
            "max_errors": int(self.errors.max()) if self.n else 0,
            "mean_train_error": float(self.errors.mean() / self.n_train) if self.n else 0.0,
            "mean_train_error_outside": float(out.mean() / self.n_train) if len(out) else 0.0,
            **self.extra,
        }

    def line(self) -> str:
        return format_line(self.kind, self.attrs())


# ------------------------------------------------------------------ sampling
@dataclass
class Sources:
    """What the samples are drawn from: solutions (n, P), the stored rows of each complete path, the Eq. 4 groups.

    ``mats[0]`` is the solutions, ``mats[1 + i]`` the i-th complete path;
    ``norms[m]`` (rows, groups) the per-group norms of ``mats[m]``.
    """

    solutions: np.ndarray
    paths: list[np.ndarray]
    path_names: list[str]
    groups: list[slice] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.groups:
            p = self.solutions.shape[1] if self.solutions.size else (self.paths[0].shape[1] if self.paths else 0)
            self.groups = [slice(0, p)]
        self.mats = [self.solutions, *self.paths]
        self.row_norms = [np.linalg.norm(m, axis=1) if len(m) else np.zeros(0) for m in self.mats]
        self.norms = [np.stack([np.linalg.norm(m[:, g], axis=1) for g in self.groups], axis=1) if len(m) else np.zeros((0, len(self.groups))) for m in self.mats]

    @property
    def n_params(self) -> int:
        return int(self.groups[-1].stop)

    def why_not(self, kind: str) -> Optional[str]:
        """None when ``kind`` can be sampled, else why not."""
        if kind == "solutions" and len(self.solutions) < 2:
            return f"needs >= 2 solutions, the file has {len(self.solutions)}"
        if kind in ("path_hull", "path_segment") and not any(len(w) >= 2 for w in self.paths):
            return "needs a complete path with >= 2 stored weight rows"
        if kind == "cross_segment" and len(self.paths) < 2:
            return f"needs >= 2 complete paths, the file has {len(self.paths)}"
        return None


def read_sources(f: Union[Handle, StoredFile]) -> Sources:
    """Solutions in index order, the stored weight rows of every complete path (float64 copies), the Eq. 4 groups."""
    from ramble.core.problem import flat_groups

    v = as_stored(f)
    stored_solutions = v.solutions()
    sols = np.stack([w.astype(np.float64) for w in stored_solutions.values()]) if stored_solutions else np.zeros((0, 0))
    paths, kept = [], []
    for p in v.paths():
        if p.attrs.get("status", "") != "complete":
            continue
        paths.append(p.weights[()].astype(np.float64))
        kept.append(p.name)
    shapes = v.model_attrs().get("param_shapes", "") if v.has_model else ""
    groups = flat_groups(json.loads(shapes)) if shapes else []
    return Sources(sols, paths, kept, groups)


@dataclass(frozen=True)
class Draw:
    """One sampled point: sum of ``coef[r] * mats[mat[r]][row[r]]``; ``t`` on a segment (else NaN)."""

    mat: np.ndarray
    row: np.ndarray
    coef: np.ndarray
    t: float = float("nan")


def _draw(kind: str, src: Sources, rng: np.random.Generator) -> Draw:
    """One sample of ``kind`` (see the module docstring)."""
    if kind == "solutions":
        n = len(src.solutions)
        return Draw(np.zeros(n, int), np.arange(n), rng.dirichlet(np.ones(n)))
    if kind in ("path_hull", "path_segment"):
        usable = [i for i, w in enumerate(src.paths) if len(w) >= 2]
        m = 1 + usable[int(rng.integers(len(usable)))]
        t_rows = len(src.mats[m])
        if kind == "path_hull":
            k = int(rng.integers(2, min(t_rows, HULL_POINTS) + 1))
            return Draw(np.full(k, m), rng.choice(t_rows, size=k, replace=False), rng.dirichlet(np.ones(k)))
        rows = rng.choice(t_rows, size=2, replace=False)
        t = float(rng.random())
        return Draw(np.full(2, m), rows, np.array([1 - t, t]), t)
    if kind == "cross_segment":
        i, j = rng.choice(len(src.paths), size=2, replace=False)
        a, b = int(rng.integers(len(src.paths[int(i)]))), int(rng.integers(len(src.paths[int(j)])))
        t = float(rng.random())
        return Draw(np.array([1 + int(i), 1 + int(j)]), np.array([a, b]), np.array([1 - t, t]), t)
    raise ConfigError(f"unknown kind {kind!r}; expected one of: {', '.join(KINDS)}")


def build(draws: Sequence[Draw], src: Sources, rescale: bool = False) -> np.ndarray:
    """The points (R, P) float64 of ``draws``.

    ``rescale``: each Eq. 4 group of a point is scaled to the same
    combination of its constituents' group norms (the norm a path between
    them would keep), so only the direction is a convex combination.
    """
    out = np.empty((len(draws), src.n_params))
    for r, d in enumerate(draws):
        x = np.zeros(src.n_params)
        for m, row, c in zip(d.mat, d.row, d.coef):
            x += c * src.mats[int(m)][int(row)]
        if rescale:
            want = sum(c * src.norms[int(m)][int(row)] for m, row, c in zip(d.mat, d.row, d.coef))
            for g, target in zip(src.groups, want):
                have = np.linalg.norm(x[g])
                if have > 0:
                    x[g] *= target / have
        out[r] = x
    return out


def probe_kind(kind: str, src: Sources, count: ErrorCounter, n_train: int, samples: int, seed: int, show_progress: bool = False) -> ProbeResult:
    """Draw ``samples`` points of ``kind`` and count the training errors at each, as drawn and norm-rescaled.

    Every random number is drawn before any point is evaluated, so the
    result depends on (seed, kind, samples, the file) only, not on chunking.
    """
    rng = np.random.default_rng([int(seed), KINDS.index(kind)])
    draws = [_draw(kind, src, rng) for _ in range(samples)]
    chunk = max(1, min(256, CHUNK_FLOATS // max(1, src.n_params)))
    errors = np.empty(samples, dtype=np.int64)
    rescaled = np.empty(samples, dtype=np.int64)
    shrink = np.empty(samples)
    bar = progress_bar(total=samples, desc=f"convexity {kind}", disable=not show_progress)
    for s in range(0, samples, chunk):
        part = draws[s : s + chunk]
        pts = build(part, src)
        errors[s : s + len(pts)] = count(pts)
        rescaled[s : s + len(pts)] = count(build(part, src, rescale=True))
        want = np.array([sum(c * src.row_norms[int(m)][int(r)] for m, r, c in zip(d.mat, d.row, d.coef)) for d in part])
        shrink[s : s + len(pts)] = np.linalg.norm(pts, axis=1) / want
        bar.update(len(pts))
    bar.close()
    t = np.array([d.t for d in draws], dtype=np.float64) if kind.endswith("segment") else None
    how = HOW[kind].format(n_solutions=len(src.solutions), hull=HULL_POINTS)
    lo, hi = wilson_interval(int((rescaled == 0).sum()), samples)
    extra: dict[str, Any] = {
        "rescaled_inside": int((rescaled == 0).sum()),
        "rescaled_fraction": float((rescaled == 0).mean()),
        "rescaled_ci_low": lo,
        "rescaled_ci_high": hi,
        "norm_ratio_median": float(np.median(shrink)),
    }
    if kind != "solutions":
        extra["paths_used"] = json.dumps(src.path_names)
    return ProbeResult(kind=kind, seed=int(seed), how=how, errors=errors, n_train=n_train, t=t, extra=extra, rescaled_errors=rescaled)


def check_arguments(samples: int, seed: int, kinds: Sequence[str]) -> None:
    """Raise ConfigError (one line, naming the value and the range) for bad probe arguments."""
    if isinstance(samples, bool) or not isinstance(samples, (int, np.integer)) or not 1 <= samples <= MAX_SAMPLES:
        raise ConfigError(f"--samples must be an integer in [1, {MAX_SAMPLES}], got {samples!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"--seed must be an integer >= 0, got {seed!r}")
    if not kinds:
        raise ConfigError(f"no kinds to probe; expected some of: {', '.join(KINDS)}")
    bad = [k for k in kinds if k not in KINDS]
    if bad:
        raise ConfigError(f"unknown kind {bad[0]!r}; expected one of: {', '.join(KINDS)}")


def probe(
    path: Union[str, os.PathLike],
    samples: int = DEFAULT_SAMPLES,
    seed: int = 0,
    kinds: Sequence[str] = KINDS,
    data_dir: Optional[str] = None,
    device: str = "auto",
    show_progress: bool = False,
) -> tuple[dict[str, ProbeResult], dict[str, str]]:
    """Probe a complete file without writing it: (results by kind, skipped kinds with the reason).

    Raises RambleError when the file is not complete, when its solutions are
    not in S under the rebuilt problem (wrong data), or when no requested
    kind can be sampled.
    """
    check_arguments(samples, seed, kinds)
    with open_stored(path) as f:
        status = str(f.attrs.get("status", ""))
        if status != "complete":
            raise RambleError(f"{path} has status {status!r}; the convexity probe needs a complete file")
        model = str(f.attrs.get("model", ""))
        src = read_sources(f)
        skipped = {k: why for k in kinds if (why := src.why_not(k)) is not None}
        todo = [k for k in kinds if k not in skipped]
        if not todo:
            raise RambleError(f"{path}: nothing to probe (" + "; ".join(f"{k}: {w}" for k, w in skipped.items()) + ")")
        count, n_train = model_spec(model).error_counter(path, data_dir=data_dir, device=device)
    if len(src.solutions):
        bad = np.flatnonzero(count(src.solutions) > 0)
        if len(bad):
            raise RambleError(f"{path}: solution(s) {', '.join(map(str, bad))} are not in S under the rebuilt training set; the data do not match the run's")
    results = {k: probe_kind(k, src, count, n_train, samples, seed, show_progress) for k in todo}
    for k, why in skipped.items():
        log.info("convexity %s skipped: %s", k, why)
    return results, skipped


def store(f: Handle, results: dict[str, ProbeResult]) -> None:
    """Write (replacing) ``/convexity/<kind>`` for each result; other kinds already stored are kept."""
    write_convexity(f, {kind: ConvexityKind(r.attrs(), r.errors, r.rescaled_errors, r.t) for kind, r in results.items()})


def probe_and_store(path: Union[str, os.PathLike], **kwargs: Any) -> tuple[dict[str, ProbeResult], dict[str, str]]:
    """:func:`probe`, then store the results in ``path`` all-or-nothing (:func:`ramble.storage.io.update`)."""
    results, skipped = probe(path, **kwargs)
    with update(path) as f:
        store(f, results)
    return results, skipped


def read_convexity(path_or_file: Union[str, os.PathLike, Handle]) -> dict[str, dict[str, Any]]:
    """The stored ``/convexity/<kind>`` attributes of a file, by kind in ``KINDS`` order, others after by name (empty when never probed)."""
    if isinstance(path_or_file, (str, os.PathLike)):
        with open_checked(path_or_file) as f:
            kinds = read_convexity_kinds(f)
    else:
        kinds = read_convexity_kinds(path_or_file)
    order = {k: i for i, k in enumerate(KINDS)}
    return {k: kinds[k] for k in sorted(kinds, key=lambda k: (order.get(k, len(KINDS)), k))}


def format_line(kind: str, a: dict[str, Any]) -> str:
    """One stored kind as text: inside/n, fraction and its 95 % interval; the same after norm rescaling when stored."""
    out = f"{kind}: {a['inside']}/{a['n']} inside S = {100 * float(a['fraction']):.1f} % (95 % CI {100 * float(a['ci_low']):.1f}-{100 * float(a['ci_high']):.1f} %)"
    same = a.get("rescaled_inside") == a.get("inside") and a.get("rescaled_ci_low") == a.get("ci_low")
    if "rescaled_fraction" in a and same:
        out += f"; the same after rescaling to the interpolated norms (median norm ratio {float(a['norm_ratio_median']):.3f})"
    elif "rescaled_fraction" in a:
        out += (
            f"; rescaled to the interpolated norms: {a['rescaled_inside']}/{a['n']} = {100 * float(a['rescaled_fraction']):.1f} %"
            f" (95 % CI {100 * float(a['rescaled_ci_low']):.1f}-{100 * float(a['rescaled_ci_high']):.1f} %); median norm ratio {float(a['norm_ratio_median']):.3f}"
        )
    return out
