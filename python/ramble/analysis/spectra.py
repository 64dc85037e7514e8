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
  error (:mod:`ramble.analysis.hessian`).

Stored under ``/paths/<i>-<j>/hessian/`` (docs/format.md): ``index`` (rows
of ``weights``), ``eigenvalues`` (H, k) descending, ``trace`` and the rest.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch

from ramble.analysis.hessian import NONZERO_RTOL, WHICH, along_path, classification_loss, count_nonzero, full_spectrum, select_points, set_threads_to_free_cores, subset_indices
from ramble.errors import ConfigError, FormatError, RambleError
from ramble.models.registry import model_spec
from ramble.storage.groups import write_hessian
from ramble.storage.io import Experiment, PathRecord, load
from ramble.storage.views import read_path_weights

log = logging.getLogger("ramble")


@dataclass(frozen=True)
class HessianConfig:
    """Where and how to compute spectra.

    ``points``: that many points evenly spaced in normalised distance (plus
    both endpoints); or ``every``: every k-th stored weight row (plus the last).
    ``k``/``which``/``tol``: Lanczos settings (LeNet5).  ``subset``: training
    images the LeNet5 Hessian is taken over (None: all of them);
    ``subset_seed`` None takes the first ``subset`` images, an int a seeded
    random sample.  ``trace_samples``: Hutchinson probes (LeNet5 on more than
    FROZEN_MAX_IMAGES images), deflated by the Lanczos basis of each point (10
    give about a 2 % standard error, docs/hessian.md); up to FROZEN_MAX_IMAGES
    images the LeNet5 trace is exact instead; 0 skips the trace either way.
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


def tcm_spectra(e: Experiment, weights: Any, rows: np.ndarray, cfg: HessianConfig, backend: Optional[str] = None,
                callback: Optional[Callable[[int], None]] = None) -> dict[str, Any]:
    """Exact Hessians at ``rows`` of a TCM path's ``weights`` (T, N): full spectra (H, N), traces, non-zero counts; ``callback(r)`` after row r."""
    from ramble.models.patterns import Patterns
    from ramble.models.tcm_backends import make_backend

    name = backend or e.backend
    be = make_backend(name, Patterns(e.data["train_inputs"], e.data["train_labels"], int(e.data.get("seed", 0))), int(e.model_info["K"]))
    n = weights.shape[1]
    eig = np.empty((len(rows), n))
    trace = np.empty(len(rows))
    nnz = np.empty(len(rows), dtype=np.int64)
    loss = np.empty(len(rows))
    secs = np.empty(len(rows))
    for r, row in enumerate(rows):
        t = time.perf_counter()
        w = np.ascontiguousarray(weights[row], dtype=np.float64)
        h = be.hessian(w)
        ev = full_spectrum(h)  # torch's LAPACK: NumPy's OpenBLAS threads spin on a busy CPU
        eig[r] = ev
        trace[r] = float(np.trace(h))
        nnz[r] = count_nonzero(ev, cfg.nonzero_rtol)
        loss[r] = be.loss_and_grad(w)[0]
        secs[r] = time.perf_counter() - t
        if callback is not None:
            callback(r)
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


LENET5_ORDER = ("conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias", "fc1.weight", "fc1.bias",
                "fc2.weight", "fc2.bias", "fc3.weight", "fc3.bias")
# Above this many images the frozen-pattern loss is not used: its selected conv1 patches take
# about 118 KB per image in float32 (docs/hessian.md), and big subsets go through chunked terms.
FROZEN_MAX_IMAGES = 1000


@dataclass(frozen=True, eq=False)  # tensors: identity, not element-wise ==
class FrozenLeNetPoint:
    """LeNet5 at one point ``w`` with its ReLU masks and max-pool argmaxes frozen (built by :func:`frozen_pattern_loss`).

    Calling it, ``point(v)``, gives the mean cross-entropy of the frozen
    network at flat weights ``v`` (P,), a 0-d tensor; :meth:`exact_trace` gives
    tr(H) at ``w``.  B images; C1, C2 channels; n1, n2 pooled positions per
    channel; K1 = conv1's patch length.  Tensors are detached, on the
    problem's device, in ``w``'s dtype.
    """

    sizes: tuple[int, ...]
    shapes: tuple[tuple[int, ...], ...]
    y: torch.Tensor  # (B,) labels
    sel: torch.Tensor  # (C1, K1, B*n1): conv1's input patch under each pooled output's argmax
    mask1: torch.Tensor  # (C1, 1, B*n1): ReLU mask of conv1's pooled outputs
    pooled_shape: tuple[int, int, int, int]  # (C1, B, h1, w1)
    i2: torch.Tensor  # (B, C2, n2): argmax of each conv2 pooled output in conv2's flattened map
    mask2: torch.Tensor  # (B, C2, n2)
    mask3: torch.Tensor  # (B, fc1 outputs)
    mask4: torch.Tensor  # (B, fc2 outputs)
    conv2_padding: tuple[int, int]
    conv2_out: tuple[int, int]  # conv2's output map (h, w) before pooling
    w: torch.Tensor  # (P,) the point
    a1: torch.Tensor  # (B, C1, h1, w1): conv1's pooled, rectified output at w (conv2's input)
    z2: torch.Tensor  # (B, C2*n2): conv2's pooled, rectified output at w (fc1's input)
    z3: torch.Tensor  # (B, fc1 outputs): fc2's input at w
    z4: torch.Tensor  # (B, fc2 outputs): fc3's input at w
    logits: torch.Tensor  # (B, classes) at w

    def parts(self, v: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Flat weights (P,) as LeNet5's ten tensors, in :data:`LENET5_ORDER` (views by ``torch.split``)."""
        return tuple(t.view(s) for t, s in zip(torch.split(v, self.sizes), self.shapes))

    def __call__(self, v: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy of the frozen network at ``v`` (P,): equal to LeNet5's loss, gradient and Hessian at ``w``."""
        import torch.nn.functional as F

        v1, u1, v2, u2, v3, u3, v4, u4, v5, u5 = self.parts(v)
        ch1 = self.mask1.shape[0]
        a = self.mask1 * torch.baddbmm(u1.view(ch1, 1, 1), v1.reshape(ch1, 1, -1), self.sel)
        a = F.conv2d(a.view(self.pooled_shape).permute(1, 0, 2, 3), v2, u2, padding=self.conv2_padding)
        a = (self.mask2 * a.flatten(2).gather(2, self.i2)).flatten(1)
        a = self.mask3 * F.linear(a, v3, u3)
        a = self.mask4 * F.linear(a, v4, u4)
        return F.cross_entropy(F.linear(a, v5, u5), self.y)

    def exact_trace(self) -> float:
        """tr(H) of the mean cross-entropy at ``w``, exactly: the Gauss-Newton trace (1/B) sum_i tr(A_i J_i J_i^T).

        Exact because every parameter of LeNet5 enters one linear layer of a
        piecewise-linear network, so the second-order term of H has a zero
        diagonal (docs/hessian.md).  With A_i = S_i S_i^T, S_i's column k =
        sqrt(p_ik) (e_k - p_i), the trace is the summed squared per-sample
        gradients of the 10 B scalars S_i[:, k] . f_i: backpropagated through
        the frozen masks as one batch of 10 B, with per-sample weight
        gradients formed only for the convolutions (the linear layers' are
        outer products: |d|^2 |a|^2).  Costs a transposed conv2 over 10 B
        maps, a Gram product per image (conv2) and a batched product (conv1);
        no Hessian-vector product.
        """
        import torch.nn.functional as F

        _, _, w2, _, w3, _, w4, _, w5, _ = self.parts(self.w)
        ch1, k1, _ = self.sel.shape
        _, bsz, h1, wd1 = self.pooled_shape
        n1 = h1 * wd1
        with torch.no_grad():
            p = torch.softmax(self.logits, dim=1)
            # d5[i, k] = S_i[:, k]: the gradient of the k-th scalar with respect to sample i's logits
            d5 = p.sqrt()[:, :, None] * (torch.eye(p.shape[1], dtype=p.dtype, device=p.device) - p[:, None, :])
            total = _sq_linear(d5, self.z4)
            d4 = self.mask4[:, None] * (d5 @ w5)
            total += _sq_linear(d4, self.z3)
            d3 = self.mask3[:, None] * (d4 @ w4)
            total += _sq_linear(d3, self.z2)
            c2, n2 = self.i2.shape[1], self.i2.shape[2]
            d2 = self.mask2[:, None] * (d3 @ w3).view(bsz, -1, c2, n2)  # (B, 10, C2, n2)
            total += self._conv2_term(d2)
            full = torch.zeros((bsz, d2.shape[1], c2, self.conv2_out[0] * self.conv2_out[1]), dtype=d2.dtype, device=d2.device)
            full.scatter_(3, self.i2[:, None].expand_as(d2), d2)
            da1 = F.conv_transpose2d(full.view(-1, c2, *self.conv2_out), w2, padding=self.conv2_padding)
            d1 = da1.view(bsz, -1, ch1, n1) * self.mask1.view(ch1, bsz, n1).permute(1, 0, 2)[:, None]
            g1 = torch.einsum("bkcn,cjbn->bkcj", d1, self.sel.view(ch1, k1, bsz, n1))
            total += g1.square().sum() + d1.sum(3).square().sum()
        return float(total) / bsz

    def _conv2_term(self, d2: torch.Tensor) -> torch.Tensor:
        """conv2's summed squared per-sample gradients (weight and bias) from d2 (B, K, C2, n2), its gradients at the pooled argmaxes.

        Per image b and channel c the weight gradients are D P, with D (K, n2)
        and P (n2, L) the input patches under the argmaxes, and
        sum |D P|^2 = <D^T D, P P^T>.  P P^T is read off the Gram matrix of
        all of b's patches (one batched product), not gathered patch by
        patch: gathering the patches measured slower on one CPU thread.
        """
        import torch.nn.functional as F

        kh, kw = self.shapes[2][2:]
        u = F.unfold(self.a1, (kh, kw), padding=self.conv2_padding)  # (B, L, positions)
        gram = torch.bmm(u.transpose(1, 2), u)  # (B, positions, positions)
        b, c, n = self.i2.shape
        pairs = (self.i2[:, :, :, None] * gram.shape[2] + self.i2[:, :, None, :]).reshape(b, -1)
        q = gram.view(b, -1).gather(1, pairs).view(b * c, n, n)  # P P^T per (image, channel)
        dc = d2.permute(0, 2, 1, 3).reshape(b * c, d2.shape[1], n)
        return (torch.bmm(dc.transpose(1, 2), dc) * q).sum() + d2.sum(3).square().sum()


def _sq_linear(d: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """Summed squared per-sample gradients of a linear layer: sum_ik |d_ik|^2 (|a_i|^2 + 1) (weight and bias); d (B, K, out), a (B, in)."""
    return (d.square().sum(2) * (a.square().sum(1) + 1)[:, None]).sum()


def frozen_pattern_loss(problem: Any, x: torch.Tensor, y: torch.Tensor) -> Callable[[torch.Tensor], FrozenLeNetPoint]:
    """LeNet5's mean cross-entropy on ``(x, y)`` with its ReLU and max-pool patterns frozen at a point.

    Returns ``at(w)``: for flat weights ``w`` (P,) it returns a
    :class:`FrozenLeNetPoint`, a loss closure ``f(v) -> 0-d tensor`` of flat
    weights with :meth:`FrozenLeNetPoint.exact_trace`.  ``f`` keeps every ReLU mask and
    max-pool argmax that LeNet5 has at ``w``; the network is then polynomial
    in the weights, and ``f`` has the same value, gradient and Hessian as
    the real loss **at w** (ReLU'' = 0 and max-pool's derivative through its
    argmax are autograd's conventions too; tests/test_hessian.py holds them
    equal in float64).  Away from ``w`` it is a different function: build
    one per point.  Why: with the patterns known, conv1 needs only the 5x5
    patches under each pooled output's argmax, one small GEMM per channel
    (a quarter of conv1's work, and no ReLU or max-pool pass over its
    (B, 6, 28, 28) output); the ReLUs become products with constant masks.
    A Hessian-vector product on MNIST-100 took 9.2 ms against 13.9 ms for
    :func:`patch_gemm_logits` and 18.3 ms for the plain model (one CPU
    thread, best of 5, same run; docs/hessian.md).  Weights
    are split with ``torch.split`` (one backward copy instead of a P-sized
    zero fill per tensor).  ``x`` (B, 1, H, W) and ``y`` (B,) on the
    problem's device; the two 2x2 max-pools and the layer order are
    LeNet5's (:class:`ramble.models.lenet.LeNet5`).
    """
    import torch.nn.functional as F

    model = problem.model
    c1, c2 = model.conv1, model.conv2
    names = tuple(name for name, _ in problem.spec)
    if names != LENET5_ORDER:
        raise ValueError(f"frozen_pattern_loss needs LeNet5's parameters {LENET5_ORDER}, got {names}")
    for conv in (c1, c2):
        if conv.stride != (1, 1) or conv.dilation != (1, 1) or conv.groups != 1:
            raise ValueError("frozen_pattern_loss needs stride-1, dilation-1, ungrouped convolutions")
    shapes = tuple(tuple(shape) for _, shape in problem.spec)
    sizes = tuple(math.prod(s) for s in shapes)
    b, _, hgt, wid = x.shape
    kh, kw = c1.kernel_size
    ho, wo = hgt + 2 * c1.padding[0] - kh + 1, wid + 2 * c1.padding[1] - kw + 1
    ch1, k1 = c1.out_channels, c1.in_channels * kh * kw
    patches = F.unfold(x, (kh, kw), padding=c1.padding).view(b, k1, ho * wo)  # conv1's input patches, fixed

    def at(w: torch.Tensor) -> FrozenLeNetPoint:
        w1, b1, w2, b2, w3, b3, w4, b4, w5, b5 = (t.view(s) for t, s in zip(torch.split(w.detach(), sizes), shapes))
        with torch.no_grad():
            h1 = torch.einsum("bkp,ck->bcp", patches, w1.reshape(ch1, k1)).view(b, ch1, ho, wo) + b1[:, None, None]
            m1, i1 = F.max_pool2d(h1, 2, return_indices=True)  # i1: argmax in ho*wo per (image, channel)
            n1 = m1.shape[2] * m1.shape[3]
            idx = i1.view(b, ch1, 1, n1).permute(1, 0, 2, 3).expand(ch1, b, k1, n1)
            # (C1, K1, B*n1): the patch under each pooled output's argmax, channel by channel
            sel = patches.unsqueeze(0).expand(ch1, b, k1, ho * wo).gather(3, idx)
            sel = sel.permute(0, 2, 1, 3).reshape(ch1, k1, b * n1).contiguous()
            mask1 = (m1 > 0).to(w.dtype).permute(1, 0, 2, 3).reshape(ch1, 1, b * n1)
            pooled_shape = (ch1, b, m1.shape[2], m1.shape[3])
            a1 = (mask1 * (torch.bmm(w1.reshape(ch1, 1, k1), sel) + b1.view(ch1, 1, 1))).view(pooled_shape).permute(1, 0, 2, 3)
            h2 = F.conv2d(a1, w2, b2, padding=c2.padding)
            m2, i2 = F.max_pool2d(h2, 2, return_indices=True)
            i2 = i2.flatten(2)
            mask2 = (m2 > 0).to(w.dtype).flatten(2)
            a2 = (mask2 * m2.flatten(2)).flatten(1)
            h3 = F.linear(a2, w3, b3)
            mask3 = (h3 > 0).to(w.dtype)
            h4 = F.linear(mask3 * h3, w4, b4)
            mask4 = (h4 > 0).to(w.dtype)
            z4 = mask4 * h4
        return FrozenLeNetPoint(sizes=sizes, shapes=shapes, y=y, sel=sel, mask1=mask1, pooled_shape=pooled_shape, i2=i2,
                                mask2=mask2, mask3=mask3, mask4=mask4, conv2_padding=tuple(c2.padding),
                                conv2_out=(h2.shape[2], h2.shape[3]), w=w.detach(), a1=a1, z2=a2, z3=mask3 * h3,
                                z4=z4, logits=F.linear(z4, w5, b5))

    return at


def lenet_spectra(rows: np.ndarray, cfg: HessianConfig, weights: Any, data: Any, device: str = "auto",
                  callback: Optional[Callable[[int], None]] = None) -> dict[str, Any]:
    """Top-k eigenvalues (Lanczos) and traces at ``rows`` of a LeNet5 path on ``data`` (the run's MnistData); ``callback(j)`` after point j.

    Products go through :func:`frozen_pattern_loss` (up to FROZEN_MAX_IMAGES
    images), and the trace is then exact (:meth:`FrozenLeNetPoint.exact_trace`);
    else products go through :func:`patch_gemm_logits` in chunks of 1,000 and
    the trace is Hutchinson's with ``cfg.trace_samples`` deflated probes.
    """
    from ramble.models.lenet import LeNetProblem, resolve_device

    dev = resolve_device(device)
    if dev.type == "cpu":
        # oversubscribed threads made every Hessian-vector product 15-25x slower on a shared CPU
        set_threads_to_free_cores(max_threads=torch.get_num_threads())
    problem = LeNetProblem.from_data(data, device=dev)
    idx = subset_indices(problem.n_samples, cfg.subset, cfg.subset_seed)
    x, y = problem.x[idx], problem.y[idx]

    def factory():
        return classification_loss(patch_gemm_logits(problem), x, y, chunk_size=1000 if len(idx) > 1000 else None)

    frozen = len(idx) <= FROZEN_MAX_IMAGES
    tick = None if callback is None else (lambda j, _spec: callback(j))
    out = along_path(None if frozen else factory, weights, rows, k=cfg.k, which=cfg.which, tol=cfg.tol, trace_samples=cfg.trace_samples, seed=cfg.seed, dtype=torch.float32, device=dev,
                     point_loss=frozen_pattern_loss(problem, x, y) if frozen else None, callback=tick,
                     trace_method="exact" if frozen else "hutchinson")
    out["attrs"] = dict(out["attrs"], subset_size=int(len(idx)), subset_seed=-1 if cfg.subset_seed is None else int(cfg.subset_seed), device=str(dev), train_size=int(len(data.train_y)),
                        products_via="frozen-pattern" if frozen else "patch-gemm")
    return out


def compute_and_store(path: str | Path, cfg: HessianConfig, only: Optional[str] = None, backend: Optional[str] = None, data_dir: Optional[str] = None, device: str = "auto", missing_only: bool = False,
                      progress: bool = False) -> list[str]:
    """Spectra for every path of the file (or ``only``), stored in the file; returns the path names done.

    Each path's spectra are one commit.  ``missing_only``: skip paths that
    have spectra already (a resumed run finishing what a kill interrupted).
    ``progress``: a bar per path over its points (:mod:`ramble.progress`, stderr).
    """
    from ramble.progress import progress_bar

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
            wds = read_path_weights(path, name)
        except (KeyError, OSError, RuntimeError) as exc:  # a corrupt chunk, a missing dataset
            raise FormatError(f"{path}: damaged ramble file, path {name} weights unreadable ({' '.join(str(exc).split())})") from None
        p.weights = wds
        rows = choose_rows(p, cfg)
        log.info("hessian %s: %d points", name, len(rows))
        bar = progress_bar(total=len(rows), desc=f"hessian {name}", unit="point", disable=not progress)
        try:
            out = model_spec(e.model).spectra(e, rows, cfg, wds, data_dir=data_dir, device=device, backend=backend, callback=lambda _j: bar.update(1))
        finally:
            bar.close()
        store(path, name, out)
        done.append(name)
    return done


def store(path: str | Path, name: str, out: dict[str, Any]) -> None:
    """Replace ``/paths/<name>/hessian`` with ``out`` (arrays) and ``out['attrs']`` (one commit, :func:`ramble.storage.groups.write_hessian`)."""
    write_hessian(path, name, {k: v for k, v in out.items() if k != "attrs"}, out.get("attrs", {}))
