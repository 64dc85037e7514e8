"""Any PyTorch classifier as a :class:`ramble.core.problem.PathProblem`.

The model is any ``nn.Module`` whose output on a batch of inputs (B, ...) is
(B, C) logits, C >= 2 classes; labels are integers in [0, C).  A weight
vector ``w`` is the flat concatenation of ``model.named_parameters()``, each
tensor in C order (the same convention as ``torch.nn.utils.parameters_to_vector``).
Buffers (e.g. BatchNorm running statistics) are not part of ``w``: they keep
the values of the module given, and the model is always run in ``eval()``
mode (dropout off), so a weight vector has one loss and one set of margins.

Everything else (loss = mean cross-entropy in nats, margin = logit[true] -
max other logit, full-batch GD or fixed-order SGD epochs, chunked passes)
is LeNet5's machinery (:class:`ramble.models.lenet.LeNetProblem`), reused here;
docs/models.md says how to bring a model.
"""

from __future__ import annotations

import copy
from typing import Any, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ramble.core.problem import Evaluation, SegmentCertificate, flat_groups
from ramble.errors import ConfigError
from ramble.models.lenet import EVAL_BATCH_CPU, EVAL_BATCH_CUDA, LeNetProblem, margins_of, param_spec, resolve_device
from ramble.models.lenet import train_solution as _train_lenet_style

GroupSpec = Union[None, str, Sequence[Sequence[str]]]
"""Eq. 4 groups: None or "tensor" (one per parameter tensor), "module" (one per
module: weight and bias together), "all" (one group), or lists of parameter
names, each list consecutive in ``named_parameters()`` order, together covering all."""

GROUPINGS = ("tensor", "module", "all")


def check_classifier(model: Any) -> nn.Module:
    """``model`` if it is an ``nn.Module`` with at least one parameter; ConfigError otherwise."""
    if not isinstance(model, nn.Module):
        raise ConfigError(f"the model must be a torch.nn.Module, got {type(model).__name__}")
    if not any(True for _ in model.parameters()):
        raise ConfigError(f"the model {type(model).__name__} has no parameters to move along a path")
    return model


def parameter_groups(spec: Sequence[tuple[str, tuple[int, ...]]], groups: GroupSpec = None) -> list[slice]:
    """Slices of the flat vector (flattening order) for Eq. 4, from a :data:`GroupSpec`.

    ``spec``: (name, shape) of every parameter in ``named_parameters()`` order.
    Raises ConfigError naming the offending group when lists of names do not
    partition the parameters into consecutive runs.
    """
    per_tensor = flat_groups([shape for _, shape in spec])
    names = [name for name, _ in spec]
    if groups is None or groups == "tensor":
        return per_tensor
    if groups == "all":
        return [slice(0, per_tensor[-1].stop)]
    if groups == "module":
        owners = [name.rsplit(".", 1)[0] if "." in name else "" for name in names]
        runs = [[names[0]]]
        for prev, owner, name in zip(owners, owners[1:], names[1:]):
            if owner == prev:
                runs[-1].append(name)
            else:
                runs.append([name])
        groups = runs
    if isinstance(groups, str):
        raise ConfigError(f"parameter groups {groups!r} unknown: use one of {', '.join(GROUPINGS)} or lists of parameter names")
    out, at = [], 0
    for k, group in enumerate(groups):
        group = list(group)
        if not group or names[at : at + len(group)] != group:
            want = names[at] if at < len(names) else "nothing (all parameters are taken)"
            raise ConfigError(f"parameter group {k} {group!r} must be a consecutive run of parameter names starting at {want!r}")
        out.append(slice(per_tensor[at].start, per_tensor[at + len(group) - 1].stop))
        at += len(group)
    if at != len(names):
        raise ConfigError(f"parameter groups leave out {names[at:]!r}: every parameter must be in one group")
    return out


def _as_tensor(a: Any, what: str) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(a)) if not isinstance(a, torch.Tensor) else a
    if t.ndim < 1 or t.shape[0] == 0:
        raise ConfigError(f"{what} must hold at least one sample along its first axis, got shape {tuple(t.shape)}")
    return t


def _as_labels(y: Any, n: int, what: str) -> torch.Tensor:
    t = _as_tensor(y, what)
    if t.ndim != 1 or t.shape[0] != n:
        raise ConfigError(f"{what} must have shape ({n},) to match the inputs, got {tuple(t.shape)}")
    whole = t.is_floating_point() and bool((t == t.round()).all())
    if t.dtype == torch.bool or t.is_complex() or (t.is_floating_point() and not whole):
        raise ConfigError(f"{what} must be integer class indices, got dtype {str(t.dtype).replace('torch.', '')}")
    return t.to(torch.int64)


class TorchClassifierProblem(LeNetProblem):
    """A classifier ``model`` and its training set, seen through flat weight vectors (a ``PathProblem``).

    ``inputs`` (M, ...) go to ``device`` (floating inputs in ``dtype``;
    integer inputs, e.g. token ids, stay integers), ``labels`` (M,) become
    int64 class indices in [0, C) where C is the model's output width.
    ``groups``: the Eq. 4 groups (:data:`GroupSpec`; default one per
    parameter tensor).  ``descent_step``: one full-batch GD step when
    M <= ``full_batch_max``, else one fixed-order SGD pass in batches of
    ``batch_size`` (see :class:`ramble.models.lenet.LeNetProblem`).  ``model`` is
    copied (then moved to ``device``/``dtype``); the caller's module is
    never changed.  Raises ConfigError for a non-module, mismatched shapes,
    outputs that are not (B, C) logits, or labels out of range.
    """

    def __init__(
        self,
        model: nn.Module,
        inputs: Any,
        labels: Any,
        *,
        groups: GroupSpec = None,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        full_batch_max: int = 1000,
        batch_size: int = 128,
        eval_batch_size: Optional[int] = None,
        grad_chunk: int = 64,
    ) -> None:
        check_classifier(model)
        x = _as_tensor(inputs, "training inputs")
        y = _as_labels(labels, int(x.shape[0]), "training labels")
        self.device = resolve_device(device)
        if eval_batch_size is None:
            eval_batch_size = EVAL_BATCH_CPU if self.device.type == "cpu" else EVAL_BATCH_CUDA
        for arg, v in (("full_batch_max", full_batch_max), ("batch_size", batch_size), ("eval_batch_size", eval_batch_size), ("grad_chunk", grad_chunk)):
            if int(v) < 1:
                raise ConfigError(f"{arg}={v!r} is out of range: must be an integer >= 1")
        self.dtype = dtype
        self.x = self.input_tensor(x)
        self.y = y.to(device=self.device).clone()
        self.n_samples = int(self.x.shape[0])
        self.full_batch_max = int(full_batch_max)
        self.batch_size = int(batch_size)
        self.eval_batch_size = int(eval_batch_size)
        self.grad_chunk = int(grad_chunk)
        # A template only: functional_call substitutes the flat vector's views for its parameters.
        self.model = copy.deepcopy(model).to(device=self.device, dtype=dtype).eval()
        self.spec = param_spec(self.model)
        self.groups = parameter_groups(self.spec, groups)
        self.n_params = self.groups[-1].stop
        self.n_classes = self._output_width()
        self._classes = torch.arange(self.n_classes, device=self.device)
        self.check_labels(self.y, "training labels")

    # -- data checks

    def input_tensor(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` on this problem's device: floating inputs in its dtype, integer inputs unchanged."""
        x = torch.as_tensor(x)
        return (x.to(device=self.device, dtype=self.dtype) if x.is_floating_point() else x.to(self.device)).contiguous()

    def _output_width(self) -> int:
        """C, the model's number of classes, from its output on the first two inputs; ConfigError unless (B, C) logits."""
        probe = self.x[: min(2, self.n_samples)]
        try:
            with torch.no_grad():
                out = self.model(probe)
        except Exception as e:  # noqa: BLE001 - any failure here is the input shape the model rejects
            raise ConfigError(f"the model cannot run on inputs of shape {tuple(self.x.shape[1:])} per sample ({type(e).__name__}: {' '.join(str(e).split())[:200]})") from None
        if not isinstance(out, torch.Tensor) or out.ndim != 2 or out.shape[0] != probe.shape[0] or out.shape[1] < 2:
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ConfigError(f"the model must return (B, C) logits with C >= 2 classes for B inputs; on {probe.shape[0]} inputs it returned {shape}")
        return int(out.shape[1])

    def check_labels(self, y: torch.Tensor, what: str) -> None:
        """ConfigError unless every label in ``y`` is a class index in [0, C)."""
        lo, hi = int(y.min()), int(y.max())
        if lo < 0 or hi >= self.n_classes:
            raise ConfigError(f"{what} must be class indices in [0, {self.n_classes}) for a model with {self.n_classes} outputs, found {lo if lo < 0 else hi}")

    # -- weights

    def _params(self, w: torch.Tensor) -> dict[str, torch.Tensor]:
        if w.ndim != 1 or w.shape[0] != self.n_params:
            raise ValueError(f"w has shape {tuple(w.shape)}, the model needs ({self.n_params},)")
        names = [name for name, _ in self.spec]
        sizes = flat_groups([shape for _, shape in self.spec])
        return {name: w[s].view(shape) for name, (_, shape), s in zip(names, self.spec, sizes)}

    def init_weights(self, seed: int) -> torch.Tensor:
        """The model's own initialisation (every submodule's ``reset_parameters``) drawn with CPU seed ``seed``.

        The torch RNG state of the caller is left untouched; parameters of
        modules without ``reset_parameters`` keep the template's values.
        """
        net = copy.deepcopy(self.model).to(device="cpu", dtype=torch.float64)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            for m in net.modules():
                reset = getattr(m, "reset_parameters", None)
                if callable(reset):
                    reset()
        return self.parameters_to_vector(net)

    def parameters_to_vector(self, source: Union[nn.Module, dict]) -> torch.Tensor:
        """The flat weight vector (P,) of a trained module or a state dict of this architecture."""
        state = source.state_dict() if isinstance(source, nn.Module) else dict(source)
        missing = [name for name, _ in self.spec if name not in state]
        if missing:
            raise ConfigError(f"the weights lack parameter(s) {', '.join(missing[:5])} of this model")
        parts = []
        for name, shape in self.spec:
            t = torch.as_tensor(state[name])
            if tuple(t.shape) != tuple(shape):
                raise ConfigError(f"parameter {name} has shape {tuple(t.shape)}, the model needs {tuple(shape)}")
            parts.append(t.detach().reshape(-1).to(device=self.device, dtype=self.dtype))
        return torch.cat(parts)

    def state_dict(self, w: torch.Tensor) -> dict[str, torch.Tensor]:
        """The parameters at ``w`` as a state dict (name -> tensor, views of ``w``; buffers not included)."""
        return self._params(w)

    def vector_to_module(self, w: torch.Tensor) -> nn.Module:
        """A copy of the model holding the weights ``w`` (in eval mode)."""
        net = copy.deepcopy(self.model)
        net.load_state_dict({k: v.detach().clone() for k, v in self._params(w).items()}, strict=False)
        return net.eval()

    # -- what LeNet5's code would get wrong for other shapes

    def evaluate_on(self, w: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> Evaluation:
        """Loss (mean cross-entropy, nats) and error of ``w`` on any inputs ``x`` (N, ...) and labels ``y`` (N,)."""
        n = int(x.shape[0])
        if n == 0:
            raise ValueError("evaluate_on needs at least one sample")
        loss_sum, errors = 0.0, 0
        with torch.no_grad():
            for s in self._chunks(n, self.eval_batch_size):
                yb = torch.as_tensor(y[s]).to(device=self.device, dtype=torch.int64)
                logits = self.logits(w, self.input_tensor(x[s]))
                loss_sum += float(F.cross_entropy(logits, yb, reduction="sum"))
                errors += int((margins_of(logits, yb) <= 0).sum())
        return Evaluation(loss=loss_sum / n, error=errors / n)

    def certify_segment(self, w0: torch.Tensor, w1: torch.Tensor) -> SegmentCertificate:
        """Prove (or not) that every training margin is > 0 on the segment ``w0 -> w1``.

        Bound propagation in float64 with bisection
        (:func:`ramble.core.bounds.certify_torch_segment`), ``eval_batch_size``
        samples at a time; a model built from operations it does not support
        is refused there with a one-line error naming the operation.
        """
        from ramble.core.bounds import certify_torch_segment  # torch.fx is imported only when certifying

        return certify_torch_segment(self.model, w0, w1, self.x, self.y, batch=self.eval_batch_size)


# ----------------------------------------------------------------------------- training


def train_solution(problem: TorchClassifierProblem, seed: int, lr: float = 0.1, max_epochs: int = 2000, **kw: Any) -> tuple[torch.Tensor, dict[str, Any]]:
    """Train from the model's own initialisation (``seed``) until every training sample is classified correctly.

    Full-batch GD (M <= ``problem.full_batch_max``) or reshuffled SGD epochs,
    exactly as :func:`ramble.models.lenet.train_solution`; returns the flat weights
    (P,) and an info dict.  RambleError when ``max_epochs`` run out (a data
    set no solution of this model fits, or too small a budget).
    """
    return _train_lenet_style(problem, seed, lr=lr, max_epochs=max_epochs, **kw)


__all__ = ["GROUPINGS", "TorchClassifierProblem", "check_classifier", "parameter_groups", "train_solution"]
