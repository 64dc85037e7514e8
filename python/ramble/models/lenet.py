"""LeNet5 on MNIST as a :class:`ramble.core.problem.PathProblem`.

The network (61,706 parameters; input (B, 1, 28, 28), output (B, 10) logits)::

    conv1  Conv2d(1, 6, 5, padding=2)  -> ReLU -> MaxPool2d(2)   # (B, 6, 14, 14)
    conv2  Conv2d(6, 16, 5)            -> ReLU -> MaxPool2d(2)   # (B, 16, 5, 5)
    flatten (C-order: channel, row, column)                      # (B, 400)
    fc1    Linear(400, 120) -> ReLU
    fc2    Linear(120, 84)  -> ReLU
    fc3    Linear(84, 10)                                        # logits

A weight vector ``w`` is the flat concatenation of ``model.named_parameters()``
(conv1.weight, conv1.bias, conv2.weight, ..., fc3.bias), each tensor in C
order; :func:`param_spec` lists the names and shapes.  See docs/lenet5.md.
"""

from __future__ import annotations

import math
import os
import time
from typing import Any, Callable, Iterator, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, jvp, vjp, vmap

from ramble.core.problem import Evaluation, SegmentCertificate, flat_groups
from ramble.errors import ConfigError, RambleError

N_CLASSES = 10

# Chunk sizes for passes without a gradient (benchmarks/bench_membership.py):
# on one CPU thread chunks <= 500 images stay in cache and run ~1.7x faster than
# 1000; a GPU wants big chunks.
EVAL_BATCH_CPU = 500
EVAL_BATCH_CUDA = 10_000


class LeNet5(nn.Module):
    """LeNet5 for 28x28 MNIST: (B, 1, 28, 28) float -> (B, 10) logits.

    conv1 1->6 5x5 pad 2, ReLU, maxpool 2; conv2 6->16 5x5, ReLU, maxpool 2;
    fc1 400->120, ReLU; fc2 120->84, ReLU; fc3 84->10.  61,706 parameters.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5, padding=2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, N_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = x.flatten(1)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


# ----------------------------------------------------------------------------- flat parameters


def param_spec(model: nn.Module) -> list[tuple[str, tuple[int, ...]]]:
    """(name, shape) of every parameter, in ``model.named_parameters()`` order (the flattening order)."""
    return [(name, tuple(p.shape)) for name, p in model.named_parameters()]


def flatten(model: nn.Module) -> torch.Tensor:
    """The parameters as one new 1-D tensor of length P (named_parameters order, C order per tensor)."""
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def load_flat(model: nn.Module, w: torch.Tensor) -> None:
    """Copy the flat vector ``w`` (shape (P,)) into ``model``'s parameters, in place."""
    params = list(model.parameters())
    total = sum(p.numel() for p in params)
    if w.ndim != 1 or w.numel() != total:
        raise ValueError(f"flat vector has shape {tuple(w.shape)}, the model needs ({total},)")
    with torch.no_grad():
        start = 0
        for p in params:
            p.copy_(w[start:start + p.numel()].view_as(p))
            start += p.numel()


def init_xavier(model: nn.Module, seed: int) -> nn.Module:
    """Xavier (Glorot) uniform weights, zero biases, drawn from a CPU ``torch.Generator(seed)``.

    Each weight tensor, in named_parameters order, gets
    U(-a, a) with a = sqrt(6 / (fan_in + fan_out)) (fan = channels x kernel
    area for convolutions), the same as ``nn.init.xavier_uniform_``.  Drawing
    on the CPU makes a seed give the same weights on every device.  Returns
    ``model``.
    """
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.zero_()
                continue
            fan_in, fan_out = nn.init._calculate_fan_in_and_fan_out(p)
            bound = math.sqrt(6.0 / (fan_in + fan_out))
            draw = torch.empty(p.shape, dtype=torch.float64).uniform_(-bound, bound, generator=gen)
            p.copy_(draw)
    return model


def xavier_flat(seed: int, dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu") -> torch.Tensor:
    """The flat weight vector of a Xavier-initialised LeNet5 (shape (61706,))."""
    return flatten(init_xavier(LeNet5(), seed)).to(device=device, dtype=dtype)


# ----------------------------------------------------------------------------- devices


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """"auto" (CUDA when available, else CPU), "cpu", "cuda" or "cuda:N" -> torch.device.

    Raises :class:`ConfigError` for other names and for CUDA on a machine without it.
    """
    if isinstance(name, torch.device):
        name = str(name)
    text = str(name).strip().lower()
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if text == "cpu":
        return torch.device("cpu")
    if text == "cuda" or (text.startswith("cuda:") and text[5:].isdigit()):
        if not torch.cuda.is_available():
            raise ConfigError(f"device {name!r} requested but CUDA is not available here; use --device cpu or auto")
        dev = torch.device(text)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(f"device {name!r} does not exist: {torch.cuda.device_count()} CUDA device(s) here")
        return dev
    raise ConfigError(f"unknown device {name!r}: use auto, cpu, cuda or cuda:N")


def deterministic_cuda(device: torch.device) -> None:
    """Ask PyTorch for reproducible CUDA kernels (no-op on CPU).

    cuDNN's autotuner and atomic-add kernels (convolution weight gradients)
    make CUDA runs differ in the last bits from run to run; these settings
    pick deterministic algorithms instead, at some speed cost.  cuBLAS also
    needs ``CUBLAS_WORKSPACE_CONFIG`` set before CUDA starts, so it is set
    here only if the user has not.  docs/resume.md states what is and is not
    reproducible on each device.
    """
    if device.type != "cuda":
        return
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    torch.use_deterministic_algorithms(True, warn_only=True)


# ----------------------------------------------------------------------------- the problem


def margins_of(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """logit[true] - max over the other classes; (B, 10), (B,) -> (B,)."""
    true = logits.gather(1, y[:, None]).squeeze(1)
    others = logits.masked_fill(F.one_hot(y, logits.shape[1]).bool(), -math.inf)
    return true - others.amax(1)


class LeNetProblem:
    """LeNet5 and a training set, seen through flat weight vectors (implements ``PathProblem``).

    ``train_x`` (M, 1, 28, 28) is moved to ``device`` in ``dtype`` (not copied
    if already there) and ``train_y`` (M,) copied as int64.  ``w`` arguments
    are 1-D tensors of length ``n_params`` (61,706) in that dtype on that device.

    * loss: mean cross-entropy (nats) over the training set;
    * margin of sample mu: logit[true] - max over other classes (correct iff > 0);
    * ``groups``: one slice per parameter tensor (10 groups) for Eq. 4;
    * ``descent_step``: with M <= ``full_batch_max`` one full-batch GD step;
      otherwise one *epoch* = ceil(M / ``batch_size``) SGD steps over
      consecutive batches ``[0:B], [B:2B], ...`` in the training-set order (the
      last one may be smaller), each on its batch's mean loss;
    * forward passes that need no gradient (``margins``, ``contains``,
      ``evaluate``) and full-set gradients run in chunks of ``eval_batch_size``
      images (default 500 on CPU, 10,000 on CUDA), so memory stays bounded
      on the full 60,000 images; ``margin_grads`` takes ``grad_chunk`` samples
      at a time.
    """

    _kept: Optional[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = None
    """(w, w with grad, logits) of the last membership test (see :meth:`_forward_kept`); a class default, so subclasses with their own ``__init__`` have it."""

    def __init__(
        self,
        train_x: torch.Tensor,
        train_y: torch.Tensor,
        *,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        full_batch_max: int = 1000,
        batch_size: int = 128,
        eval_batch_size: int | None = None,
        grad_chunk: int = 64,
    ) -> None:
        if train_x.ndim != 4 or tuple(train_x.shape[1:]) != (1, 28, 28) or train_y.shape != train_x.shape[:1]:
            raise ValueError(f"need train_x (M, 1, 28, 28) and train_y (M,), got {tuple(train_x.shape)}, {tuple(train_y.shape)}")
        self.device = resolve_device(device)
        if eval_batch_size is None:
            eval_batch_size = EVAL_BATCH_CPU if self.device.type == "cpu" else EVAL_BATCH_CUDA
        for arg, v in (("full_batch_max", full_batch_max), ("batch_size", batch_size),
                       ("eval_batch_size", eval_batch_size), ("grad_chunk", grad_chunk)):
            if int(v) < 1:
                raise ConfigError(f"{arg}={v!r} is out of range: must be an integer >= 1")
        self.dtype = dtype
        self.x = train_x.to(device=self.device, dtype=dtype).contiguous()
        # Labels are cloned (cheap); images are not when already on the device in
        # ``dtype`` (the full set is 188 MB), so callers must not modify them in place.
        self.y = train_y.to(device=self.device, dtype=torch.int64).clone()
        self.n_samples = int(self.x.shape[0])
        self.full_batch_max = int(full_batch_max)
        self.batch_size = int(batch_size)
        self.eval_batch_size = int(eval_batch_size)
        self.grad_chunk = int(grad_chunk)
        # A template only: functional_call substitutes the flat vector's views for its parameters.
        self.model = LeNet5().to(device=self.device, dtype=dtype)
        self.spec = param_spec(self.model)
        self.groups = flat_groups([shape for _, shape in self.spec])
        self.n_params = self.groups[-1].stop
        self._classes = torch.arange(N_CLASSES, device=self.device)

    @classmethod
    def from_data(cls, data: Any, **kwargs: Any) -> "LeNetProblem":
        """Build from a :class:`ramble.models.mnist.MnistData` (its training part)."""
        return cls(data.train_x, data.train_y, **kwargs)

    @property
    def full_batch(self) -> bool:
        """True when ``descent_step`` and training use the whole training set as one batch."""
        return self.n_samples <= self.full_batch_max

    def init_weights(self, seed: int) -> torch.Tensor:
        """Xavier-initialised flat weights (see :func:`init_xavier`) on this problem's device and dtype."""
        return xavier_flat(seed, dtype=self.dtype, device=self.device)

    # -- helpers

    def _params(self, w: torch.Tensor) -> dict[str, torch.Tensor]:
        if w.ndim != 1 or w.shape[0] != self.n_params:
            raise ValueError(f"w has shape {tuple(w.shape)}, LeNet5 needs ({self.n_params},)")
        return {name: w[g].view(shape) for (name, shape), g in zip(self.spec, self.groups)}

    def logits(self, w: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Network output at ``w`` for images ``x`` (B, 1, 28, 28) on the device: (B, 10)."""
        return functional_call(self.model, self._params(w), (x,))

    def _chunks(self, n: int, size: int) -> Iterator[slice]:
        return (slice(i, min(i + size, n)) for i in range(0, n, size))

    def _loss_grad_on(self, w: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean cross-entropy on (x, y) and its gradient w.r.t. ``w`` (0-d tensor, (P,))."""
        wg = w.detach().requires_grad_(True)
        loss = F.cross_entropy(self.logits(wg, x), y)
        (g,) = torch.autograd.grad(loss, wg)
        return loss.detach(), g

    # -- PathProblem

    def _one_chunk(self) -> bool:
        """True when the whole training set is one evaluation chunk (then a membership test's forward pass can serve the next gradient)."""
        return self.n_samples <= self.eval_batch_size

    def _forward_kept(self, w: torch.Tensor) -> torch.Tensor:
        """Logits of the whole (one-chunk) training set at ``w``, with the autograd graph kept for :meth:`loss_and_grad` at this same ``w``.

        A path tests a candidate's membership and then, if it is accepted,
        takes the next GD step from it: one forward pass serves both.  The
        values are those of :meth:`_loss_grad_on` on the same chunk, bit for
        bit (same operations, same order).
        """
        wg = w.detach().requires_grad_(True)
        logits = self.logits(wg, self.x)
        self._kept = (w, wg, logits)
        return logits

    def _chunk_loss_grads(self, w: torch.Tensor) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
        """(chunk size, mean loss, gradient) per evaluation chunk at ``w``, reusing a kept forward pass at this ``w``."""
        kept, self._kept = self._kept, None
        if kept is not None and kept[0] is w:
            _, wg, logits = kept
            loss = F.cross_entropy(logits, self.y)
            (g,) = torch.autograd.grad(loss, wg)
            yield self.n_samples, loss.detach(), g
            return
        for s in self._chunks(self.n_samples, self.eval_batch_size):
            loss, g = self._loss_grad_on(w, self.x[s], self.y[s])
            yield s.stop - s.start, loss, g

    def loss_and_grad(self, w: torch.Tensor) -> tuple[float, torch.Tensor]:
        """Mean training loss at ``w`` (nats) and its gradient, shape (P,), over all M samples."""
        total = torch.zeros((), dtype=self.dtype, device=self.device)
        g_sum = torch.zeros_like(w)
        for k, loss, g in self._chunk_loss_grads(w):
            # chunk means -> weighted so the total is the mean over M
            total += loss * k
            g_sum += g * k
        return float(total) / self.n_samples, g_sum / self.n_samples

    def descent_step(self, w: torch.Tensor, lr: float) -> torch.Tensor:
        """One epoch of GD: ``w - lr * grad`` if M <= full_batch_max, else a fixed-order SGD pass (see class doc)."""
        if self.full_batch:
            return w - lr * self.loss_and_grad(w)[1]
        for s in self._chunks(self.n_samples, self.batch_size):
            w = w - lr * self._loss_grad_on(w, self.x[s], self.y[s])[1]
        return w

    def margins(self, w: torch.Tensor) -> torch.Tensor:
        """Per-sample margins, shape (M,): logit[true] - max other logit; correct iff > 0."""
        # no_grad, not inference_mode: callers may use the result in autograd code.
        with torch.no_grad():
            return torch.cat([margins_of(self.logits(w, self.x[s]), self.y[s])
                              for s in self._chunks(self.n_samples, self.eval_batch_size)])

    def contains(self, w: torch.Tensor) -> bool:
        """True iff every training margin is > 0; stops at the first chunk holding an error.

        Computes exactly what :meth:`margins` computes (same chunks), so the
        two always agree.  On a one-chunk training set the forward pass is
        kept for a gradient at the same ``w`` (:meth:`_forward_kept`).
        """
        if self._one_chunk():
            with torch.enable_grad():
                logits = self._forward_kept(w)
            with torch.no_grad():
                return bool((margins_of(logits, self.y) > 0).all())
        with torch.inference_mode():
            for s in self._chunks(self.n_samples, self.eval_batch_size):
                if not bool((margins_of(self.logits(w, self.x[s]), self.y[s]) > 0).all()):
                    return False
        return True

    def _margin_one(self, w: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Margin of one sample x (1, 28, 28), label y (0-d); written to work under vmap."""
        logits = self.logits(w, x.unsqueeze(0)).squeeze(0)
        is_true = self._classes == y
        true = torch.where(is_true, logits, torch.zeros_like(logits)).sum()
        other = torch.where(is_true, torch.full_like(logits, -math.inf), logits).amax()
        return true - other

    def margin_grads(self, w: torch.Tensor, index: torch.Tensor | Sequence[int]) -> torch.Tensor:
        """Gradients of the margins of samples ``index`` w.r.t. ``w``: shape (len(index), P).

        Per-sample gradients via ``vmap(grad(.))`` in chunks of ``grad_chunk``
        samples (memory ~ grad_chunk x the activations of one image).
        """
        idx = torch.as_tensor(index, dtype=torch.int64, device=self.device).reshape(-1)
        if idx.numel() == 0:
            return torch.zeros((0, self.n_params), dtype=self.dtype, device=self.device)
        per_sample = vmap(grad(self._margin_one), in_dims=(None, 0, 0), chunk_size=self.grad_chunk)
        return per_sample(w.detach(), self.x[idx], self.y[idx])

    def margin_products(self, w: torch.Tensor, index: torch.Tensor | Sequence[int]) -> tuple[Callable[[torch.Tensor], torch.Tensor], Callable[[torch.Tensor], torch.Tensor]]:
        """``(u -> G u, a -> G^T a)`` for G = d margins[index] / dw, shape (k, P), never formed.

        ``G u`` (k,) is one forward-mode pass (``torch.func.jvp``) and ``G^T a``
        (P,) one reverse pass (``torch.func.vjp``), each over the k samples in
        chunks of ``eval_batch_size``: memory of one chunk's activations,
        where :meth:`margin_grads` holds k x P numbers.  The repair step uses
        them when many samples are active (:func:`ramble.core.path.repair`).
        """
        idx = torch.as_tensor(index, dtype=torch.int64, device=self.device).reshape(-1)
        w = w.detach()
        chunks = [idx[s] for s in self._chunks(int(idx.numel()), self.eval_batch_size)]

        def margins_at(i: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
            x, y = self.x[i], self.y[i]
            return lambda v: margins_of(self.logits(v, x), y)

        def times(u: torch.Tensor) -> torch.Tensor:
            return torch.cat([jvp(margins_at(i), (w,), (u.to(w.dtype),))[1] for i in chunks])

        def transposed_times(a: torch.Tensor) -> torch.Tensor:
            out = torch.zeros_like(w)
            for i, part in zip(chunks, torch.split(a.to(w.dtype), [len(i) for i in chunks])):
                out += vjp(margins_at(i), w)[1](part)[0]
            return out

        return times, transposed_times

    def certify_segment(self, w0: torch.Tensor, w1: torch.Tensor) -> SegmentCertificate:
        """Prove (or fail to prove) that every training margin is > 0 on the whole segment ``w0 -> w1``.

        Bound propagation in float64 over the segment with bisection
        (:func:`ramble.core.bounds.certify_torch_segment`, docs/certification.md), on
        this problem's device, ``eval_batch_size`` samples at a time.  What is
        certified is the network in real arithmetic; ``contains`` evaluates it
        in ``dtype``, which can disagree only on margins within that dtype's
        rounding of zero.
        """
        from ramble.core.bounds import certify_torch_segment  # torch.fx is imported only when certifying

        return certify_torch_segment(self.model, w0, w1, self.x, self.y, batch=self.eval_batch_size)

    def evaluate(self, w: torch.Tensor) -> Evaluation:
        """Training loss (mean cross-entropy, nats) and error (fraction with margin <= 0) at ``w``."""
        return self.evaluate_on(w, self.x, self.y)

    def evaluate_on(self, w: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> Evaluation:
        """Loss and error of ``w`` on any images ``x`` (N, 1, 28, 28), labels ``y`` (N,), e.g. the test set.

        ``x`` and ``y`` may live on another device; chunks of
        ``eval_batch_size`` are moved to this problem's device one at a time.
        """
        n = int(x.shape[0])
        if n == 0:
            raise ValueError("evaluate_on needs at least one sample")
        loss_sum, errors = 0.0, 0
        with torch.no_grad():
            for s in self._chunks(n, self.eval_batch_size):
                xb = x[s].to(device=self.device, dtype=self.dtype)
                yb = y[s].to(device=self.device, dtype=torch.int64)
                logits = self.logits(w, xb)
                loss_sum += float(F.cross_entropy(logits, yb, reduction="sum"))
                errors += int((margins_of(logits, yb) <= 0).sum())
        return Evaluation(loss=loss_sum / n, error=errors / n)


def evaluate_on(w: torch.Tensor, x: torch.Tensor, y: torch.Tensor, *, batch_size: int = 1000) -> Evaluation:
    """Loss and error of LeNet5 weights ``w`` on images ``x`` (N, 1, 28, 28) and labels ``y`` (N,).

    Runs on ``w``'s device and dtype, ``batch_size`` images at a time.
    """
    problem = LeNetProblem(x[:1], y[:1], device=w.device, dtype=w.dtype, eval_batch_size=batch_size)
    return problem.evaluate_on(w, x, y)


# ----------------------------------------------------------------------------- training a solution


def _shuffle_seed(seed: int) -> int:
    """A seed for the batch order, independent of the init stream of the same ``seed``."""
    return int(np.random.SeedSequence([int(seed), 1]).generate_state(1, dtype=np.uint64)[0] >> 1)


def train_solution(
    problem_or_data: Any,
    seed: int,
    lr: float = 0.1,
    max_epochs: int = 1000,
    batch_size: int | None = None,
    device: str | torch.device | None = None,
    progress: bool = False,
    polish_margin: float = 0.0,
    full_batch_max: int | None = None,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """Train LeNet5 from Xavier init (``seed``) until every training image is classified correctly.

    ``problem_or_data`` is a :class:`LeNetProblem` or a ``MnistData`` (then a
    problem is built on ``device``, default "cpu").  With M <= full_batch_max
    (default: the problem's, 1000) each epoch is one full-batch GD step of size
    ``lr``; otherwise an epoch is one pass of SGD over the training set in
    mini-batches of ``batch_size`` (default: the problem's, 128), reshuffled
    each epoch by a CPU generator derived from ``seed``.  After each epoch
    (and before the first) the membership test runs; training stops when it
    passes and, if ``polish_margin`` > 0, when also the smallest margin is
    >= ``polish_margin``.

    Returns the flat weights (P,) and an info dict: seed, epochs, wall_s,
    loss, train_error, min_margin, lr, mode, batch_size, polish_margin,
    device, n_samples.  Raises :class:`RambleError` if ``max_epochs`` run out.
    """
    problem = _training_problem(problem_or_data, device, batch_size, full_batch_max)
    bs = _check_training_args(problem, lr, max_epochs, batch_size)

    def done(w: torch.Tensor) -> bool:
        if polish_margin <= 0:
            return problem.contains(w)
        return float(problem.margins(w).min()) >= polish_margin

    from tqdm.auto import tqdm  # tqdm is a dependency; imported here to keep module import light

    start = time.perf_counter()
    w = problem.init_weights(seed)
    shuffle = torch.Generator(device="cpu").manual_seed(_shuffle_seed(seed))
    epochs = 0
    with tqdm(total=int(max_epochs), desc=f"train seed {seed}", unit="epoch", disable=not progress, leave=False) as bar:
        while not done(w):
            if epochs >= max_epochs:
                raise _out_of_epochs(problem, w, seed, max_epochs, lr, polish_margin)
            w, loss = _train_epoch(problem, w, lr, bs, shuffle)
            if not math.isfinite(loss):
                raise RambleError(f"training seed {seed} diverged (loss {loss}) at epoch {epochs + 1}; lower lr={lr}")
            epochs += 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4g}")
    return w, _training_info(problem, w, seed, epochs, start, lr, bs, polish_margin)


def _training_problem(problem_or_data: Any, device: str | torch.device | None, batch_size: int | None, full_batch_max: int | None) -> LeNetProblem:
    """The problem to train on: the one given (its device and full-batch limit must match any asked for), or one built on the data."""
    if isinstance(problem_or_data, LeNetProblem):
        problem = problem_or_data
        if device is not None and resolve_device(device) != problem.device:
            raise ConfigError(f"device {device!r} differs from the problem's device {problem.device}")
        if full_batch_max is not None and full_batch_max != problem.full_batch_max:
            raise ConfigError(f"full_batch_max={full_batch_max} differs from the problem's {problem.full_batch_max}")
        return problem
    kwargs: dict[str, Any] = {"device": "cpu" if device is None else device}
    if full_batch_max is not None:
        kwargs["full_batch_max"] = full_batch_max
    if batch_size is not None:
        kwargs["batch_size"] = batch_size
    return LeNetProblem.from_data(problem_or_data, **kwargs)


def _check_training_args(problem: LeNetProblem, lr: float, max_epochs: int, batch_size: int | None) -> int:
    """Refuse a non-positive or non-finite ``lr``, ``max_epochs`` < 1, a batch size < 1; the batch size (default: the problem's)."""
    if not (lr > 0 and math.isfinite(lr)):
        raise ConfigError(f"lr={lr!r} is out of range: must be a finite number > 0")
    if int(max_epochs) < 1:
        raise ConfigError(f"max_epochs={max_epochs!r} is out of range: must be an integer >= 1")
    bs = problem.batch_size if batch_size is None else int(batch_size)
    if bs < 1:
        raise ConfigError(f"batch_size={batch_size!r} is out of range: must be an integer >= 1")
    return bs


def _train_epoch(problem: LeNetProblem, w: torch.Tensor, lr: float, bs: int, shuffle: torch.Generator) -> tuple[torch.Tensor, Any]:
    """One epoch: a full-batch GD step, or SGD over a fresh shuffle in batches of ``bs``; the new weights and the epoch's mean loss."""
    if problem.full_batch:
        loss, g = problem.loss_and_grad(w)
        return w - lr * g, loss
    m = problem.n_samples
    order = torch.randperm(m, generator=shuffle).to(problem.device)
    loss_sum = 0.0
    for s in problem._chunks(m, bs):
        idx = order[s]
        batch_loss, g = problem._loss_grad_on(w, problem.x[idx], problem.y[idx])
        w = w - lr * g
        loss_sum += float(batch_loss) * (s.stop - s.start)
    return w, loss_sum / m


def _out_of_epochs(problem: LeNetProblem, w: torch.Tensor, seed: int, max_epochs: int, lr: float, polish_margin: float) -> RambleError:
    """The error when ``max_epochs`` ran out: the goal missed, the loss and training error reached."""
    ev = problem.evaluate(w)
    goal = "100% training accuracy" + (f" with min margin >= {polish_margin}" if polish_margin > 0 else "")
    return RambleError(
        f"training seed {seed} did not reach {goal} in {max_epochs} epochs (loss {ev.loss:.4g}, "
        f"training error {100 * ev.error:.3g}%); raise max_epochs or change lr={lr}"
    )


def _training_info(problem: LeNetProblem, w: torch.Tensor, seed: int, epochs: int, start: float, lr: float, bs: int, polish_margin: float) -> dict[str, Any]:
    """The info dict of :func:`train_solution` for the trained weights ``w``; ``wall_s`` counts from ``start`` (perf_counter) to after the final evaluation."""
    ev = problem.evaluate(w)
    m = problem.n_samples
    return {
        "seed": int(seed),
        "epochs": epochs,
        "wall_s": time.perf_counter() - start,
        "loss": ev.loss,
        "train_error": ev.error,
        "min_margin": float(problem.margins(w).min()),
        "lr": float(lr),
        "mode": "full-batch" if problem.full_batch else "mini-batch",
        "batch_size": m if problem.full_batch else bs,
        "polish_margin": float(polish_margin),
        "device": str(problem.device),
        "n_samples": m,
    }
