"""Hessian spectra at points of stored paths, written back into the file.

Works on any finished experiment file, after the fact (``ramble hessian``)
or as the last step of a run (``--hessian-points``):

* TCM: the exact Hessian of the mean training loss (N x N) at each point,
  by the file's backend (Julia: analytic second derivatives; Python:
  autograd), its full spectrum, exact trace, and the number of non-zero
  eigenvalues (|lambda| > ``nonzero_rtol`` * max |lambda|);
* LeNet5: the top-k eigenvalues by Lanczos on Hessian-vector products of the
  mean training loss (all of it, or a fixed documented subset), with
  residuals and product counts, and Hutchinson's trace with its standard
  error (:mod:`ramble.hessian`).

Stored under ``/paths/<i>-<j>/hessian/`` (docs/format.md): ``index`` (rows
of ``weights``), ``eigenvalues`` (H, k) descending, ``trace`` and the rest.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import h5py
import numpy as np
import torch

from .errors import ConfigError, FormatError, RambleError
from .hessian import NONZERO_RTOL, WHICH, along_path, classification_loss, count_nonzero, full_spectrum, select_points, set_threads_to_free_cores, subset_indices
from .io import Experiment, PathRecord, load, update

log = logging.getLogger("ramble")


@dataclass(frozen=True)
class HessianConfig:
    """Where and how to compute spectra.

    ``points``: that many points evenly spaced in normalised distance (plus
    both endpoints); or ``every``: every k-th stored weight row (plus the last).
    ``k``/``which``/``tol``: Lanczos settings (LeNet5).  ``subset``: training
    images the LeNet5 Hessian is taken over (None: all of them);
    ``subset_seed`` None takes the first ``subset`` images, an int a seeded
    random sample.  ``trace_samples``: Hutchinson probes (LeNet5), deflated by the
    Lanczos basis of each point (10 give about a 2 % standard error, docs/hessian.md).
    """

    points: Optional[int] = 20
    every: Optional[int] = None
    k: int = 20
    which: str = "LA"
    tol: float = 1e-3
    subset: Optional[int] = None
    subset_seed: Optional[int] = None
    trace_samples: int = 10
    seed: int = 0
    nonzero_rtol: float = NONZERO_RTOL

    def __post_init__(self) -> None:
        if (self.points is None) == (self.every is None):
            raise ConfigError("give exactly one of --points and --every")
        if self.points is not None and self.points < 2:
            raise ConfigError(f"--points must be >= 2 (both endpoints), got {self.points}")
        if self.every is not None and self.every < 1:
            raise ConfigError(f"--every must be >= 1, got {self.every}")
        if self.k < 1:
            raise ConfigError(f"--k must be >= 1, got {self.k}")
        if self.which not in WHICH:
            raise ConfigError(f"--which must be one of {', '.join(WHICH)}, got {self.which!r}")
        if not (0 < self.tol < 1):
            raise ConfigError(f"--tol must be in (0, 1), got {self.tol}")
        if self.subset is not None and self.subset < 1:
            raise ConfigError(f"--subset must be >= 1, got {self.subset}")
        if self.trace_samples < 0:
            raise ConfigError(f"--trace-samples must be >= 0, got {self.trace_samples}")


def choose_rows(p: PathRecord, cfg: HessianConfig) -> np.ndarray:
    """Rows of ``weights`` to analyse: by distance (``points``) or stride (``every``), endpoints included."""
    wi = p.extra.get("weight_index")
    rows_distance = p.distance if wi is None else p.distance[np.asarray(wi, dtype=int)]
    return select_points(rows_distance, n_points=cfg.points, every=cfg.every)


def tcm_spectra(e: Experiment, p: PathRecord, rows: np.ndarray, cfg: HessianConfig, backend: Optional[str] = None) -> dict[str, Any]:
    """Exact Hessians at ``rows`` of a TCM path: full spectra (H, N), traces, non-zero counts."""
    from .backends import make_backend
    from .patterns import Patterns

    name = backend or e.backend
    be = make_backend(name, Patterns(e.data["train_inputs"], e.data["train_labels"], int(e.data.get("seed", 0))), int(e.model_info["K"]))
    n = p.weights.shape[1]
    eig = np.empty((len(rows), n))
    trace = np.empty(len(rows))
    nnz = np.empty(len(rows), dtype=np.int64)
    loss = np.empty(len(rows))
    secs = np.empty(len(rows))
    for r, row in enumerate(rows):
        t = time.perf_counter()
        w = np.ascontiguousarray(p.weights[row], dtype=np.float64)
        h = be.hessian(w)
        ev = full_spectrum(h)  # torch's LAPACK: NumPy's OpenBLAS threads spin on a busy CPU
        eig[r] = ev
        trace[r] = float(np.trace(h))
        nnz[r] = count_nonzero(ev, cfg.nonzero_rtol)
        loss[r] = be.loss_and_grad(w)[0]
        secs[r] = time.perf_counter() - t
    return {
        "index": np.asarray(rows, dtype=np.int64),
        "eigenvalues": eig,
        "trace": trace,
        "trace_se": np.zeros(len(rows)),
        "n_nonzero": nnz,
        "loss": loss,
        "seconds": secs,
        "attrs": {
            "method": "exact",
            "backend": be.name,
            "which": "all",
            "k": n,
            "nonzero_rtol": cfg.nonzero_rtol,
            "kink_convention": "htanh' = 1 on (-1, 1), 0 elsewhere; htanh'' = 0",
        },
    }


def patch_gemm_logits(problem: Any) -> Any:
    """LeNet5 logits ``f(w, x) -> (B, 10)`` for Hessian products, with conv1 as one GEMM over 5x5 patches.

    The same function as ``problem.logits`` (tests/test_hessian.py holds them
    equal in float64), computed differently: conv1 reads the images only, so
    its patches (B * 28 * 28, 25) are unfolded once per image batch and
    cached, and conv1 becomes a matrix product whose double backward is two
    more products.  PyTorch's double backward of a convolution runs a slow
    generic kernel; on one CPU thread this made a Hessian-vector product on
    MNIST-100 1.4-1.6x faster (docs/hessian.md).  The rest is LeNet5's own
    layers, with ``problem.model``'s hyper-parameters.
    """
    import torch.nn.functional as F

    model = problem.model
    c1, c2 = model.conv1, model.conv2
    if c1.stride != (1, 1) or c1.dilation != (1, 1) or c1.groups != 1:
        raise ValueError("patch_gemm_logits needs a stride-1, dilation-1, ungrouped conv1")
    kh, kw = c1.kernel_size
    shapes = {name: shape for name, shape in problem.spec}
    slices = {name: g for (name, _), g in zip(problem.spec, problem.groups)}
    cache: list[torch.Tensor] = []  # [images, their patches]; holding the images keeps the identity test valid

    def patches(x: torch.Tensor) -> torch.Tensor:
        if not cache or cache[0] is not x:  # (B * H * W, C_in * kh * kw), rows in (image, row, column) order
            u = F.unfold(x, (kh, kw), padding=c1.padding)
            cache[:] = [x, u.transpose(1, 2).reshape(-1, u.shape[1]).contiguous()]
        return cache[1]

    def logits(w: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        par = {name: w[slices[name]].view(shapes[name]) for name in shapes}
        b, _, hgt, wid = x.shape
        ho, wo = hgt + 2 * c1.padding[0] - kh + 1, wid + 2 * c1.padding[1] - kw + 1
        h = torch.addmm(par["conv1.bias"], patches(x), par["conv1.weight"].reshape(c1.out_channels, -1).t())
        h = h.view(b, ho, wo, c1.out_channels).permute(0, 3, 1, 2).contiguous()
        a = F.max_pool2d(F.relu(h), 2)
        a = F.max_pool2d(F.relu(F.conv2d(a, par["conv2.weight"], par["conv2.bias"], padding=c2.padding)), 2).flatten(1)
        a = F.relu(F.linear(a, par["fc1.weight"], par["fc1.bias"]))
        a = F.relu(F.linear(a, par["fc2.weight"], par["fc2.bias"]))
        return F.linear(a, par["fc3.weight"], par["fc3.bias"])

    return logits


def lenet_spectra(e: Experiment, p: PathRecord, rows: np.ndarray, cfg: HessianConfig, weights: Any, data_dir: Optional[str] = None, device: str = "auto") -> dict[str, Any]:
    """Top-k eigenvalues and Hutchinson traces at ``rows`` of a LeNet5 path (Lanczos)."""
    from .lenet import LeNetProblem, resolve_device
    from .mnist_experiment import run_data

    data = run_data(e.config, e.data, data_dir)
    dev = resolve_device(device)
    if dev.type == "cpu":
        # oversubscribed threads made every Hessian-vector product 15-25x slower on a shared CPU
        set_threads_to_free_cores(max_threads=torch.get_num_threads())
    problem = LeNetProblem.from_data(data, device=dev)
    idx = subset_indices(problem.n_samples, cfg.subset, cfg.subset_seed)
    x, y = problem.x[idx], problem.y[idx]

    def factory():
        return classification_loss(patch_gemm_logits(problem), x, y, chunk_size=1000 if len(idx) > 1000 else None)

    out = along_path(factory, weights, rows, k=cfg.k, which=cfg.which, tol=cfg.tol, trace_samples=cfg.trace_samples, seed=cfg.seed, dtype=torch.float32, device=dev)
    out["attrs"] = dict(out["attrs"], subset_size=int(len(idx)), subset_seed=-1 if cfg.subset_seed is None else int(cfg.subset_seed), device=str(dev), train_size=int(len(data.train_y)))
    return out


def compute_and_store(path: str | Path, cfg: HessianConfig, only: Optional[str] = None, backend: Optional[str] = None, data_dir: Optional[str] = None, device: str = "auto", missing_only: bool = False) -> list[str]:
    """Spectra for every path of the file (or ``only``), stored in the file; returns the path names done.

    Each path's spectra are one commit.  ``missing_only``: skip paths that
    have spectra already (a resumed run finishing what a kill interrupted).
    """
    e = load(path, weights=False)
    if e.status != "complete":
        raise RambleError(f"{path} has status {e.status!r}; Hessians are computed on finished runs only")
    names = [only] if only else [q.name for q in e.iter_paths() if not (missing_only and q.hessian is not None)]
    done = []
    for name in names:
        if name not in e.paths:
            raise RambleError(f"{path} has no path {name!r}; it has: {', '.join(sorted(e.paths)) or 'none'}")
        p = e.paths[name]
        try:
            with h5py.File(path, "r") as f:
                wds = f[f"paths/{name}/weights"][()]
        except (KeyError, OSError, RuntimeError) as exc:  # a corrupt chunk, a missing dataset
            raise FormatError(f"{path}: damaged ramble file, path {name} weights unreadable ({' '.join(str(exc).split())})") from None
        p.weights = wds
        rows = choose_rows(p, cfg)
        log.info("hessian %s: %d points", name, len(rows))
        if e.model == "tcm":
            out = tcm_spectra(e, p, rows, cfg, backend)
        elif e.model == "lenet5":
            out = lenet_spectra(e, p, rows, cfg, wds, data_dir=data_dir, device=device)
        else:  # every other model through its spec (ramble.model_registry)
            from .model_registry import model_spec

            out = model_spec(e.model).spectra(e, rows, cfg, wds, data_dir=data_dir, device=device)
        store(path, name, out)
        done.append(name)
    return done


def store(path: str | Path, name: str, out: dict[str, Any]) -> None:
    """Replace ``/paths/<name>/hessian`` with ``out`` (arrays) and ``out['attrs']``."""
    with update(path) as f:
        g = f[f"paths/{name}"]
        if "hessian" in g:
            del g["hessian"]
        h = g.create_group("hessian")
        for k, v in out.items():
            if k == "attrs":
                continue
            h.create_dataset(k, data=np.asarray(v))
        for k, v in out.get("attrs", {}).items():
            h.attrs[k] = v if not isinstance(v, (dict, list)) else json.dumps(v)
