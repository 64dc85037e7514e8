"""Permutation matching of two networks (Git Re-Basin, Ainsworth et al., ICLR 2023) and its application to flat weight vectors.

A permutation of group g is an int array ``perm`` of length ``g.size`` with
the convention  pi(W)[unit u] = W[unit perm[u]]:  unit u of the aligned
network is unit ``perm[u]`` of the original.  Applying every group's
permutation to every axis it names (:class:`ramble.analysis.align.spec.Axis`) gives a
network that computes the same function.

* :func:`weight_matching`: maximise sum_l <W_a^l, pi(W_b)^l> over the
  permutations, one group at a time by linear assignment
  (``scipy.optimize.linear_sum_assignment``), the groups visited in a random
  order, sweeps repeated until no group improves (Git Re-Basin's Algorithm 1).
* :func:`activation_matching`: per group, the assignment that maximises the
  summed Pearson correlation between the units' activations of the two
  networks on the same inputs (conv channels: every spatial position is a
  sample), one assignment per group.

Weights are handled as float64 NumPy arrays keyed by parameter name.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Iterator, Mapping

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import fx, nn

from ramble.analysis.align.spec import Axis, PermGroup, PermSpec

Params = dict[str, np.ndarray]
Perms = dict[str, np.ndarray]


# ----------------------------------------------------------------- flat <-> named
def unflatten(w: np.ndarray, spec: PermSpec) -> Params:
    """Split a flat vector (concatenated named_parameters, C order) into named float64 arrays (copies)."""
    w = np.asarray(w, dtype=np.float64).reshape(-1)
    total = sum(int(np.prod(s)) for _, s in spec.params)
    if w.size != total:
        raise ValueError(f"flat vector has {w.size} entries, the model's parameters need {total}")
    out, start = {}, 0
    for name, shape in spec.params:
        n = int(np.prod(shape))
        out[name] = w[start:start + n].reshape(shape).copy()
        start += n
    return out


def flatten(params: Mapping[str, np.ndarray], spec: PermSpec) -> np.ndarray:
    """The inverse of :func:`unflatten`: (P,) float64."""
    return np.concatenate([np.asarray(params[name], dtype=np.float64).reshape(-1) for name, _ in spec.params])


def identity(spec: PermSpec) -> Perms:
    return {g.name: np.arange(g.size) for g in spec.groups}


# ----------------------------------------------------------------- applying
def _split(t: np.ndarray, ax: Axis, size: int) -> np.ndarray:
    """View ``t`` with ``ax.axis`` split into (size, block): the unit index is then axis ``ax.axis``."""
    s = t.shape
    return t.reshape(s[:ax.axis] + (size, ax.block) + s[ax.axis + 1:])


def take_units(t: np.ndarray, ax: Axis, size: int, perm: np.ndarray) -> np.ndarray:
    """``t`` with the units along ``ax`` reordered by ``perm`` (unit u <- unit perm[u])."""
    return np.take(_split(t, ax, size), perm, axis=ax.axis).reshape(t.shape)


def permute(params: Mapping[str, np.ndarray], spec: PermSpec, perms: Mapping[str, np.ndarray], skip: str = "") -> Params:
    """Every group's permutation applied to every axis it names (group ``skip`` left out)."""
    out = {k: np.asarray(v) for k, v in params.items()}
    for g in spec.groups:
        if g.name == skip:
            continue
        for ax in g.axes:
            out[ax.param] = take_units(out[ax.param], ax, g.size, perms[g.name])
    return out


def apply_permutation(w: np.ndarray, spec: PermSpec, perms: Mapping[str, np.ndarray]) -> np.ndarray:
    """pi(w) for a flat vector: (P,) float64; exact (entries are only reordered)."""
    return flatten(permute(unflatten(w, spec), spec, perms), spec)


def check_permutations(spec: PermSpec, perms: Mapping[str, np.ndarray]) -> None:
    """ValueError unless every group has a permutation of 0..size-1."""
    for g in spec.groups:
        p = np.asarray(perms.get(g.name, []))
        if p.shape != (g.size,) or not np.array_equal(np.sort(p), np.arange(g.size)):
            raise ValueError(f"permutation of {g.name} is not a permutation of {g.size} units")


# ----------------------------------------------------------------- weight matching
def _units_first(t: np.ndarray, ax: Axis, size: int) -> np.ndarray:
    """(size, rest): each unit's entries along ``ax`` and every other axis, as one row."""
    return np.moveaxis(_split(t, ax, size), ax.axis, 0).reshape(size, -1)


def weight_cost(spec: PermSpec, group: PermGroup, a: Params, b: Params, perms: Perms) -> np.ndarray:
    """C[u, v] = sum over the group's axes of <unit u of W_a, unit v of W_b>, W_b's other groups permuted by ``perms``: (size, size)."""
    b_other = permute({ax.param: b[ax.param] for ax in group.axes}, _restricted(spec, group), perms, skip=group.name)
    cost = np.zeros((group.size, group.size))
    for ax in group.axes:
        cost += _units_first(a[ax.param], ax, group.size) @ _units_first(b_other[ax.param], ax, group.size).T
    return cost


def _restricted(spec: PermSpec, group: PermGroup) -> PermSpec:
    """The spec limited to the parameters ``group`` touches (other groups act on them too)."""
    names = {ax.param for ax in group.axes}
    groups = tuple(PermGroup(g.name, g.size, tuple(ax for ax in g.axes if ax.param in names), g.activation) for g in spec.groups)
    return PermSpec(groups, tuple(p for p in spec.params if p[0] in names))


@dataclass
class Matching:
    """Permutations found, and how: ``sweeps`` over the groups (weight matching; 1 for activation matching), ``converged``, ``objective`` sum_l <W_a, pi(W_b)> (weights) or summed correlation (activations)."""

    perms: Perms
    sweeps: int
    converged: bool
    objective: float


def weight_matching(spec: PermSpec, w_a: np.ndarray, w_b: np.ndarray, seed: int = 0, max_sweeps: int = 100) -> Matching:
    """Git Re-Basin weight matching: the permutation of W_b's units that best matches W_a (module doc).

    Each step solves one group's assignment exactly with the others fixed, so
    the objective never decreases; the sweeps stop when a whole sweep improves
    no group by more than 1e-12 relative.  ``seed`` fixes the random group
    order (``numpy.random.default_rng``).
    """
    a, b = unflatten(w_a, spec), unflatten(w_b, spec)
    perms = identity(spec)
    rng = np.random.default_rng(seed)
    rows = {g.name: np.arange(g.size) for g in spec.groups}
    sweeps, converged = 0, not spec.groups
    while sweeps < max_sweeps and not converged:
        sweeps += 1
        improved = False
        for k in rng.permutation(len(spec.groups)):
            g = spec.groups[k]
            cost = weight_cost(spec, g, a, b, perms)
            _, cols = linear_sum_assignment(cost, maximize=True)
            old, new = cost[rows[g.name], perms[g.name]].sum(), cost[rows[g.name], cols].sum()
            if new > old + 1e-12 * max(1.0, abs(old)):
                improved = True
                perms[g.name] = cols
        converged = not improved
    objective = float(flatten(a, spec) @ apply_permutation(w_b, spec, perms))
    return Matching(perms, sweeps, converged, objective)


# ----------------------------------------------------------------- activation matching
class _Capture(fx.Interpreter):
    """Runs a traced module and keeps the outputs of the named nodes."""

    def __init__(self, gm: fx.GraphModule, names: set[str]) -> None:
        super().__init__(gm)
        self.names = names
        self.seen: dict[str, torch.Tensor] = {}

    def run_node(self, n: fx.Node):  # type: ignore[override]
        out = super().run_node(n)
        if n.name in self.names:
            self.seen[n.name] = out
        return out


def traced_with(model: nn.Module, params: Params) -> fx.GraphModule:
    """A float64 traced copy of ``model`` on the CPU holding ``params`` (by name)."""
    gm = fx.symbolic_trace(copy.deepcopy(model).cpu()).double()
    with torch.no_grad():
        for name, v in params.items():
            gm.get_parameter(name).copy_(torch.from_numpy(v))
    return gm


def activations(model: nn.Module, params: Params, spec: PermSpec, x: torch.Tensor, chunk: int = 500) -> Iterator[dict[str, np.ndarray]]:
    """Per chunk of ``x``: each group's activations as (samples, size) float64 (conv: batch x positions rows)."""
    gm = traced_with(model, params)
    names = {g.activation for g in spec.groups}
    for s in range(0, int(x.shape[0]), chunk):
        # no_grad only around the pass: a generator suspended inside it would leave gradients off for its caller
        with torch.no_grad():
            cap = _Capture(gm, names)
            cap.run(x[s:s + chunk].to(torch.float64))
        yield {g.name: torch.movedim(cap.seen[g.activation], 1, -1).reshape(-1, g.size).cpu().numpy() for g in spec.groups}


@dataclass
class _Moments:
    n: int = 0
    sa: np.ndarray = None  # type: ignore[assignment]
    sb: np.ndarray = None  # type: ignore[assignment]
    saa: np.ndarray = None  # type: ignore[assignment]
    sbb: np.ndarray = None  # type: ignore[assignment]
    sab: np.ndarray = None  # type: ignore[assignment]

    def add(self, xa: np.ndarray, xb: np.ndarray) -> None:
        if self.sa is None:
            k = xa.shape[1]
            self.sa, self.sb, self.saa, self.sbb, self.sab = np.zeros(k), np.zeros(k), np.zeros(k), np.zeros(k), np.zeros((k, k))
        self.n += xa.shape[0]
        self.sa += xa.sum(0)
        self.sb += xb.sum(0)
        self.saa += (xa * xa).sum(0)
        self.sbb += (xb * xb).sum(0)
        self.sab += xa.T @ xb

    def correlation(self) -> np.ndarray:
        """Pearson correlation (size, size) between units of a (rows) and b (columns); 0 for a unit that never varies."""
        ma, mb = self.sa / self.n, self.sb / self.n
        cov = self.sab / self.n - np.outer(ma, mb)
        sd_a = np.sqrt(np.maximum(self.saa / self.n - ma * ma, 0.0))
        sd_b = np.sqrt(np.maximum(self.sbb / self.n - mb * mb, 0.0))
        return cov / (np.outer(sd_a, sd_b) + 1e-12)

    def constant(self) -> tuple[np.ndarray, np.ndarray]:
        """Boolean masks of the units of a and of b whose activation never varies on the inputs (e.g. dead ReLUs)."""
        ma, mb = self.sa / self.n, self.sb / self.n
        return self.saa / self.n - ma * ma <= 1e-24 * np.maximum(1.0, ma * ma), self.sbb / self.n - mb * mb <= 1e-24 * np.maximum(1.0, mb * mb)


def activation_matching(model: nn.Module, spec: PermSpec, w_a: np.ndarray, w_b: np.ndarray, x: torch.Tensor, chunk: int = 500) -> Matching:
    """Per group, the assignment of W_b's units to W_a's that maximises their summed activation correlation on inputs ``x``."""
    moments = {g.name: _Moments() for g in spec.groups}
    acts_b = activations(model, unflatten(w_b, spec), spec, x, chunk)
    for chunk_a in activations(model, unflatten(w_a, spec), spec, x, chunk):
        chunk_b = next(acts_b)
        for g in spec.groups:
            moments[g.name].add(chunk_a[g.name], chunk_b[g.name])
    perms: Perms = {}
    total = 0.0
    for g in spec.groups:
        corr = moments[g.name].correlation()
        rows, cols = linear_sum_assignment(corr, maximize=True)
        perms[g.name] = cols
        total += float(corr[rows, cols].sum())
    a, b = unflatten(w_a, spec), unflatten(w_b, spec)
    for g in spec.groups:
        const_a, const_b = moments[g.name].constant()
        perms[g.name] = match_constant_units(spec, g, a, b, perms, const_a, const_b)
    return Matching(perms, 1, True, total)


def match_constant_units(spec: PermSpec, group: PermGroup, a: Params, b: Params, perms: Perms, const_a: np.ndarray, const_b: np.ndarray) -> np.ndarray:
    """Re-pair the units that are constant on the inputs in both networks by their weights; the group's new permutation.

    Their correlation with every unit is 0, so any pairing among them scores
    the same and the data cannot tell them apart; the weight-matching cost
    (other groups fixed at ``perms``) picks the pairing instead.  The summed
    correlation is unchanged.
    """
    perm = perms[group.name].copy()
    pairs = np.flatnonzero(const_a & const_b[perm])
    if len(pairs) < 2:
        return perm
    cost = weight_cost(spec, group, a, b, perms)[np.ix_(pairs, perm[pairs])]
    _, cols = linear_sum_assignment(cost, maximize=True)
    perm[pairs] = perm[pairs][cols]
    return perm
