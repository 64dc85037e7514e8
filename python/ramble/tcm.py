"""Tree Committee Machine in PyTorch float64 (paper Eq. 7): the Python backend.

The network has N inputs and K hidden units; unit k sees only inputs
``k*N/K .. (k+1)*N/K - 1`` through its own N/K weights.  With the flat weight
vector ``w`` (length N, unit k's weights at entries ``k*N/K .. (k+1)*N/K - 1``,
aligned with its inputs):

    h_k(xi)  = sum_j w[k*n + j] * xi[k*n + j]            (n = N/K)
    S(xi)    = sum_k htanh(h_k(xi))                      in [-K, K]
    yhat(xi) = tanh(S(xi))                               (Eq. 7)

Classification is ``sign(S)``; a pattern is correct iff its margin
``sigma * S > 0`` (a zero committee sum counts as an error).

Loss: binary cross-entropy on ``p = (1 + yhat) / 2`` with target
``(1 + sigma) / 2``, averaged over the M patterns.  Since
``(1 + tanh S) / 2 = logistic(2 S)`` this equals, exactly,

    L(w) = mean_mu log(1 + exp(-2 sigma_mu S_mu))

which is how it is computed (no log of 0 when tanh saturates).

The derivative of htanh is taken as 1 on the open interval (-1, 1) and 0
elsewhere, the kinks included (PyTorch's convention, and the Julia backend's):
the kinks have measure zero and a finite-difference check never lands on one.

Gradients and Hessians here come from autograd on purpose: the Julia backend
uses the analytic derivatives, and the cross-check holds one against the other.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .errors import ConfigError
from .patterns import Patterns
from .problem import Evaluation


def check_shape(n_inputs: int, n_hidden: int) -> None:
    """Raise ConfigError unless N and K are positive and K divides N."""
    if n_inputs < 1:
        raise ConfigError(f"N must be a positive integer, got {n_inputs}")
    if n_hidden < 1:
        raise ConfigError(f"K must be a positive integer, got {n_hidden}")
    if n_inputs % n_hidden != 0:
        raise ConfigError(f"K={n_hidden} must divide N={n_inputs} (each hidden unit sees N/K inputs)")


class TCMProblem:
    """A TCM and its training set, as a :class:`ramble.problem.PathProblem`.

    Weight vectors are flat float64 tensors of length N (see module docstring).
    """

    def __init__(self, patterns: Patterns, n_hidden: int) -> None:
        m, n_in = patterns.inputs.shape
        check_shape(n_in, n_hidden)
        self.n_inputs = int(n_in)
        self.n_hidden = int(n_hidden)
        self.n_per_unit = self.n_inputs // self.n_hidden
        self.n_samples = int(m)
        # (M, K, N/K): unit k's receptive field, aligned with w.view(K, N/K).
        self.xi = torch.from_numpy(patterns.inputs.astype(np.float64)).view(m, self.n_hidden, self.n_per_unit)
        self.sigma = torch.from_numpy(patterns.labels.astype(np.float64))
        self.groups: Sequence[slice] = [slice(0, self.n_inputs)]

    # -- forward ---------------------------------------------------------
    def fields(self, w: torch.Tensor) -> torch.Tensor:
        """Hidden-unit fields h, shape (M, K)."""
        return torch.einsum("mkn,kn->mk", self.xi, w.view(self.n_hidden, self.n_per_unit))

    def committee(self, w: torch.Tensor) -> torch.Tensor:
        """Committee sums S = sum_k htanh(h_k), shape (M,)."""
        return F.hardtanh(self.fields(w)).sum(dim=1)

    def loss(self, w: torch.Tensor) -> torch.Tensor:
        """Mean BCE as a 0-d tensor (differentiable)."""
        return F.softplus(-2.0 * self.sigma * self.committee(w)).mean()

    # -- PathProblem -----------------------------------------------------
    def loss_and_grad(self, w: torch.Tensor) -> tuple[float, torch.Tensor]:
        x = w.detach().clone().requires_grad_(True)
        value = self.loss(x)
        (grad,) = torch.autograd.grad(value, x)
        return float(value.detach()), grad

    def descent_step(self, w: torch.Tensor, lr: float) -> torch.Tensor:
        """One full-batch gradient-descent step ``w - lr * grad L(w)``."""
        _, grad = self.loss_and_grad(w)
        return w - lr * grad

    def margins(self, w: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.sigma * self.committee(w)

    def contains(self, w: torch.Tensor) -> bool:
        return bool((self.margins(w) > 0).all())

    def margin_grads(self, w: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """d(sigma_mu S_mu)/dw = sigma_mu * htanh'(h_mu,k) * xi_mu,k,j, shape (len(index), N)."""
        xi = self.xi[index]
        h = torch.einsum("mkn,kn->mk", xi, w.view(self.n_hidden, self.n_per_unit))
        active = ((h > -1.0) & (h < 1.0)).to(w.dtype)
        g = (self.sigma[index].view(-1, 1) * active).unsqueeze(-1) * xi
        return g.reshape(len(index), self.n_inputs)

    def evaluate(self, w: torch.Tensor) -> Evaluation:
        with torch.no_grad():
            s = self.committee(w)
            loss = F.softplus(-2.0 * self.sigma * s).mean()
            err = (self.sigma * s <= 0).double().mean()
        return Evaluation(loss=float(loss), error=float(err))

    # -- curvature -------------------------------------------------------
    def hessian(self, w: torch.Tensor) -> torch.Tensor:
        """Exact Hessian of the mean training loss, (N, N), by autograd."""
        return torch.autograd.functional.hessian(self.loss, w.detach().clone())


def gaussian_init(n_inputs: int, scale: float, seed: int) -> np.ndarray:
    """Initial weights ~ N(0, scale^2), shape (N,), from ``numpy.random.default_rng(seed)``.

    Drawn in NumPy so both backends start from identical numbers.
    """
    if not scale > 0:
        raise ConfigError(f"init scale must be positive, got {scale}")
    return np.random.default_rng(seed).normal(0.0, scale, size=n_inputs)
