"""A rigorous certificate that a straight weight segment of a PyTorch classifier stays inside S.

Given a model, weights ``w0`` and ``w1`` (flat, ``model.named_parameters()``
order, C order per tensor) and the training set (x, y), :func:`certify_torch_segment`
proves, or fails to prove, that every training margin
``logit_y - max_{c != y} logit_c`` is > 0 at every point of
``w(t) = w0 + t (w1 - w0)``, t in [0, 1], in real arithmetic.

Method (docs/certification.md gives the argument in full): on a sub-interval
[a, b] write t = m + r s with s in [-1, 1].  Every weight tensor is then
exactly ``Wc + s Wd`` (Wc = W(m), Wd = r (W1 - W0)), and every activation is
enclosed, element by element, by an *affine form in s*

    z(s) in c + s g + [-E, E]      (c, g, E: tensors of the activation's shape, E >= 0),

propagated through the traced graph in float64:

* linear maps (Linear, Conv2d, average pooling) multiply forms exactly
  (the s^2 term is split into its mean and a half-width);
* ReLU, tanh, sigmoid use a linear relaxation between the element's lower
  and upper bound (exact where the unit does not change regime);
* max pooling passes the one window element that provably dominates,
  else the window's interval;
* margins are bounded directly through the last linear layer, with the
  row differences ``W_y - W_c`` (not as the difference of two logit intervals).

The lower bound of a margin on [a, b] is ``c - |g| - E``.  Samples whose bound
is not positive are re-bounded on the two halves of [a, b], and only they,
down to ``max_depth`` halvings; the segment is refused if some sample is not
certified by then, or if a sample's margin, evaluated at a piece's ends or
midpoint, is <= 0.

Rounding: every step adds to E an allowance for float64 rounding that is at
least twice the worst case of that step (standard dot-product error bounds,
``gamma_n = n u / (1 - n u)``, u = 2^-53), so the bound computed in
floating point is a true lower bound of the real margin.  The argument
assumes dot products and convolutions computed as sums of products (any
order, FMA or not): BLAS GEMM and direct/im2col convolution; cuDNN (which may
use FFT or Winograd) is switched off while certifying on CUDA.
"""

from __future__ import annotations

import contextlib
import math
import operator
import time
import weakref
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from ramble.core.problem import SegmentCertificate
from ramble.core.stopping import check_stop
from ramble.errors import ConfigError

UNIT_ROUNDOFF = 2.0 ** -53
"""u: relative rounding error of one float64 operation (round to nearest)."""

ELEMENTWISE_SLACK = 16 * UNIT_ROUNDOFF
"""Rounding allowance of an elementwise step, relative to the magnitude |c| + |g| + E of its operands."""

LAMBDA_SHRINK = 1.0 - 2.0 ** -40
"""Factor that keeps a computed tanh/sigmoid slope below the true minimum derivative (computed to a few ulp)."""

FUNCTION_SLACK = 64 * UNIT_ROUNDOFF
"""Absolute allowance for one tanh/sigmoid evaluation (values in [-1, 1], accurate to a few ulp)."""

SUPPORTED = "Linear, Conv2d, ReLU, Tanh, Sigmoid, max_pool2d, avg_pool2d, flatten/view/reshape, add/sub"


def dot_slack(n: int) -> float:
    """Rounding allowance of a dot product of length ``n`` (plus a few additions), relative to |W| |z|.

    The worst case is gamma_{n+8} (1 + small) < 1.01 (n + 8) u for (n + 8) u < 0.01; we take 16 (n + 8) u,
    which also covers the rounding of the weights W(m), r (W1 - W0) themselves and of the allowance.
    """
    if (n + 8) * UNIT_ROUNDOFF >= 0.01:
        raise ConfigError(f"a dot product of length {n} is too long for the float64 rounding argument")
    return 16.0 * (n + 8) * UNIT_ROUNDOFF


# ----------------------------------------------------------------------------- affine forms


@dataclass
class Form:
    """Elementwise enclosure z(s) in c + s g + [-e, e] for all s in [-1, 1]; float64, leading dim = samples.

    ``g`` or ``e`` None means exactly zero (the network's input).
    """

    c: torch.Tensor
    g: Optional[torch.Tensor] = None
    e: Optional[torch.Tensor] = None

    def magnitude(self) -> torch.Tensor:
        """|c| + |g| + e: a bound on |z(s)| (elementwise, up to rounding)."""
        m = self.c.abs()
        if self.g is not None:
            m = m + self.g.abs()
        if self.e is not None:
            m = m + self.e
        return m

    def bounds(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Elementwise (lower, upper) bounds of z(s) over s in [-1, 1], rounded outward."""
        lo, hi, _ = self.spread()
        return lo, hi

    def spread(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(lower, upper, magnitude): outward-rounded bounds of z(s) over s in [-1, 1] and |c| + |g| + e."""
        width = _add(None if self.g is None else self.g.abs(), self.e)
        if width is None:
            width = torch.zeros_like(self.c)
        mag = self.c.abs() + width
        reach = width + ELEMENTWISE_SLACK * mag
        return self.c - reach, self.c + reach, mag

    def map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> "Form":
        """The same form with a structural (exact) op, e.g. a reshape, applied to every part."""
        return Form(fn(self.c), None if self.g is None else fn(self.g), None if self.e is None else fn(self.e))


def _per_sample_max(t: torch.Tensor) -> torch.Tensor:
    """max over all but the first dimension, shaped (B, 1, ..., 1) to broadcast against ``t``."""
    return t.reshape(t.shape[0], -1).amax(1).reshape((t.shape[0],) + (1,) * (t.dim() - 1))


def _with_slack(c: torch.Tensor, g: Optional[torch.Tensor], e: Optional[torch.Tensor]) -> Form:
    """A form whose error term covers the rounding of an elementwise step that produced (c, g, e)."""
    f = Form(c, g, e)
    extra = ELEMENTWISE_SLACK * f.magnitude()
    return Form(c, g, extra if e is None else e + extra)


def _add(a: Optional[torch.Tensor], b: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    if a is None:
        return b
    return a if b is None else a + b


# ----------------------------------------------------------------------------- weights along the segment


@dataclass
class SegmentWeights:
    """One parameter tensor along the segment: W(t) = w0 + t delta; ``mag`` = |w0| + |w1| bounds |W(t)| on [0, 1]."""

    w0: torch.Tensor
    delta: torch.Tensor
    mag: torch.Tensor

    def on(self, mid: float, radius: float) -> "PieceWeights":
        """W(mid + radius s) = centre + s slope for s in [-1, 1]; mid, radius dyadic (exact)."""
        centre = self.w0 + mid * self.delta
        slope = radius * self.delta
        return PieceWeights(centre, slope, centre.abs() + slope.abs(), self.mag)


@dataclass
class PieceWeights:
    """A parameter on one piece: ``centre + s slope``; ``absolute`` = |centre| + |slope|; ``mag`` as in SegmentWeights."""

    centre: torch.Tensor
    slope: torch.Tensor
    absolute: torch.Tensor
    mag: torch.Tensor


def _linear_map(
    x: Form,
    weight: PieceWeights,
    bias: Optional[PieceWeights],
    apply: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    bias_view: Callable[[torch.Tensor], torch.Tensor],
    fan_in: int,
    row_mag: torch.Tensor,
    stackable: bool = True,
) -> Form:
    """Enclosure of W(s) z(s) + b(s) for a linear op ``apply(z, W)`` (F.linear, F.conv2d, ...).

    (Wc + s Wd)(c + s g + e) = Wc c + s (Wc g + Wd c) + s^2 Wd g + (Wc + s Wd) e, and s^2 in [0, 1] is
    1/2 + [-1/2, 1/2].  ``row_mag``: for each output unit, sum over its inputs of |w0| + |w1|
    (shaped to broadcast over the output); it scales the rounding allowance.  ``stackable``:
    Wc and Wd may be applied as one op with their output units stacked (one im2col for both).
    """
    b = x.c.shape[0]
    inputs = x.c if x.g is None else torch.cat([x.c, x.g])
    if stackable:
        k = weight.centre.shape[0]
        both = apply(inputs, torch.cat([weight.centre, weight.slope]))
        by_c, by_d = both[:, :k], both[:, k:]
    else:
        by_c, by_d = apply(inputs, weight.centre), apply(inputs, weight.slope)
    if x.g is None:
        c, g, e = by_c, by_d, None
    else:
        wd_g = by_d[b:]
        c = by_c[:b] + 0.5 * wd_g
        g = by_c[b:] + by_d[:b]
        e = 0.5 * wd_g.abs()
    if x.e is not None:
        e = _add(e, apply(x.e, weight.absolute))
    allowance = dot_slack(fan_in) * row_mag * _per_sample_max(x.magnitude()).reshape((b,) + (1,) * (c.dim() - 1))
    if bias is not None:
        c = c + bias_view(bias.centre)
        g = g + bias_view(bias.slope)
        allowance = allowance + dot_slack(fan_in) * bias_view(bias.mag)
    return Form(c, g, allowance.expand_as(c) if e is None else e + allowance)


def linear_form(x: Form, weight: PieceWeights, bias: Optional[PieceWeights]) -> Form:
    """Enclosure through F.linear (weight (out, in))."""
    row_mag = weight.mag.sum(1)
    return _linear_map(x, weight, bias, lambda z, w: F.linear(z, w), lambda v: v, weight.mag.shape[1], row_mag)


def conv2d_form(x: Form, weight: PieceWeights, bias: Optional[PieceWeights], stride: Any, padding: Any, dilation: Any, groups: int) -> Form:
    """Enclosure through F.conv2d with zero padding (weight (out, in/groups, kh, kw))."""
    fan_in = int(weight.mag[0].numel())
    row_mag = weight.mag.sum((1, 2, 3)).view(1, -1, 1, 1)
    return _linear_map(
        x, weight, bias,
        lambda z, w: F.conv2d(z, w, None, stride, padding, dilation, groups),
        lambda v: v.view(1, -1, 1, 1), fan_in, row_mag, stackable=groups == 1,
    )


def relu_form(x: Form) -> Form:
    """relu(z) = lam z + d, d in [0, beta], lam = u / (u - l) clamped to [0, 1] (u, l: bounds of z).

    For any lam in [0, 1] and z in [l, u], relu(z) - lam z lies in [0, max(-lam l, (1 - lam) u, 0)],
    so a rounded lam is still sound; units with l >= 0 get lam = 1 (exact), with u <= 0 lam = 0.
    The rounding of this step is below 9 u (|c| + |g| + e + beta); we add 16 u (...).
    """
    lo, hi, mag = x.spread()
    lam = torch.nan_to_num(hi / (hi - lo), nan=0.0).clamp(0.0, 1.0)
    beta = torch.maximum(-lam * lo, (1.0 - lam) * hi).clamp_min(0.0)
    half = 0.5 * beta
    slack = ELEMENTWISE_SLACK * (mag + beta)
    e = half + slack if x.e is None else lam * x.e + half + slack
    return Form(lam * x.c + half, None if x.g is None else lam * x.g, e)


def _sech2(z: torch.Tensor) -> torch.Tensor:
    """tanh'(z) = 1 / cosh(z)^2, accurate to a few ulp (no cancellation; 0 where cosh overflows)."""
    return torch.cosh(z).square().reciprocal()


def smooth_form(x: Form, fn: Callable[[torch.Tensor], torch.Tensor], deriv: Callable[[torch.Tensor], torch.Tensor]) -> Form:
    """Enclosure of fn(z) for a monotone fn whose derivative is largest at 0 and decreases in |z| (tanh, sigmoid).

    lam = min(fn'(l), fn'(u)) is the least slope on [l, u] (the derivative is unimodal), so
    fn(z) - lam z is non-decreasing there and lies in [fn(l) - lam l, fn(u) - lam u].
    """
    lo, hi = x.bounds()
    lam = torch.minimum(deriv(lo), deriv(hi)) * LAMBDA_SHRINK
    h_lo = fn(lo) - lam * lo
    h_hi = fn(hi) - lam * hi
    slack = FUNCTION_SLACK * (1.0 + (lam * lo).abs() + (lam * hi).abs())
    h_lo, h_hi = h_lo - slack, h_hi + slack
    half = 0.5 * (h_hi - h_lo)
    c = lam * x.c + 0.5 * (h_lo + h_hi)
    return _with_slack(c, None if x.g is None else lam * x.g, half if x.e is None else lam * x.e + half)


def tanh_form(x: Form) -> Form:
    return smooth_form(x, torch.tanh, _sech2)


def sigmoid_form(x: Form) -> Form:
    return smooth_form(x, torch.sigmoid, lambda z: 0.25 * _sech2(0.5 * z))


def _pair(v: Any) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


def max_pool_form(x: Form, kernel_size: Any, stride: Any = None, padding: Any = 0, dilation: Any = 1, ceil_mode: bool = False, return_indices: bool = False) -> Form:
    """Enclosure through F.max_pool2d on (B, C, H, W).

    A window whose element j provably dominates (lower bound of j >= upper bound of every other
    element) outputs element j's form exactly; any other window outputs the interval
    [max of lower bounds, max of upper bounds].
    """
    if ceil_mode or return_indices:
        raise ConfigError("cannot certify max_pool2d with ceil_mode=True or return_indices=True; supported: " + SUPPORTED)
    if x.c.dim() != 4:
        raise ConfigError(f"cannot certify max_pool2d on a {x.c.dim()}-d input; it needs (B, C, H, W)")
    k = _pair(kernel_size)
    s = k if stride is None or (not isinstance(stride, int) and len(stride) == 0) else _pair(stride)
    p, d = _pair(padding), _pair(dilation)
    b, ch, h, w = x.c.shape
    out_h = (h + 2 * p[0] - d[0] * (k[0] - 1) - 1) // s[0] + 1
    out_w = (w + 2 * p[1] - d[1] * (k[1] - 1) - 1) // s[1] + 1

    def windows(t: torch.Tensor, fill: float) -> torch.Tensor:
        padded = F.pad(t.reshape(b * ch, 1, h, w), (p[1], p[1], p[0], p[0]), value=fill)
        return F.unfold(padded, k, dilation=d, stride=s)  # (B*C, kh*kw, out_h*out_w)

    lo, hi = x.bounds()
    shape = (b, ch, out_h, out_w)
    if all(s[i] >= d[i] * (k[i] - 1) + 1 for i in range(2)):
        dominated, best, lmax, umax = _pool_disjoint(lo, hi, k, s, p, d)

        def pick(t: Optional[torch.Tensor], fallback: torch.Tensor) -> torch.Tensor:
            chosen = t.flatten(2).gather(2, best).view(shape) if t is not None else torch.zeros_like(fallback)
            return torch.where(dominated, chosen, fallback)
    else:
        def windows(t: torch.Tensor, fill: float) -> torch.Tensor:
            padded = F.pad(t.reshape(b * ch, 1, h, w), (p[1], p[1], p[0], p[0]), value=fill)
            return F.unfold(padded, k, dilation=d, stride=s)  # (B*C, kh*kw, out_h*out_w)

        lo_w, hi_w = windows(lo, -math.inf), windows(hi, -math.inf)
        best_w = lo_w.argmax(1, keepdim=True)
        lmax = lo_w.gather(1, best_w).view(shape)
        others_hi = hi_w.scatter(1, best_w, -math.inf).amax(1).view(shape)
        umax = hi_w.amax(1).view(shape)
        dominated = lmax >= others_hi

        def pick(t: Optional[torch.Tensor], fallback: torch.Tensor) -> torch.Tensor:
            chosen = windows(t, 0.0).gather(1, best_w).view(shape) if t is not None else torch.zeros_like(fallback)
            return torch.where(dominated, chosen, fallback)

    c = pick(x.c, 0.5 * (lmax + umax))
    g = pick(x.g, torch.zeros_like(lmax))
    e = pick(x.e, 0.5 * (umax - lmax))
    return _with_slack(c, g, e)


def _pool_disjoint(lo: torch.Tensor, hi: torch.Tensor, k: tuple, s: tuple, p: tuple, d: tuple) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Max pooling of bounds when windows do not overlap: (dominated, argmax of lo (B, C, L), max lo, max hi).

    Each input element lies in at most one window, so masking every window's best element
    with -inf and pooling again gives each window's largest upper bound among the others.
    """
    lmax, best = F.max_pool2d(lo, k, s, p, d, return_indices=True)
    best = best.flatten(2)
    masked = hi.flatten(2).scatter(2, best, -math.inf).view_as(hi)
    others_hi = F.max_pool2d(masked, k, s, p, d)
    umax = F.max_pool2d(hi, k, s, p, d)
    return lmax >= others_hi, best, lmax, umax


def avg_pool_form(x: Form, kernel_size: Any, stride: Any = None, padding: Any = 0, ceil_mode: bool = False, count_include_pad: bool = True, divisor_override: Optional[int] = None) -> Form:
    """Enclosure through F.avg_pool2d: a linear map with non-negative weights, applied to c, g and E."""
    kh, kw = _pair(kernel_size)

    def pool(t: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(t, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override)

    out = x.map(pool)
    weight_sum = max(1.0, kh * kw / divisor_override) if divisor_override else 1.0
    b = x.c.shape[0]
    allowance = dot_slack(kh * kw) * weight_sum * _per_sample_max(x.magnitude()).reshape((b,) + (1,) * (out.c.dim() - 1))
    return Form(out.c, out.g, allowance if out.e is None else out.e + allowance)


def add_form(a: Any, b: Any, sign: float = 1.0) -> Form:
    """a + sign * b where a, b are forms or constants (tensors / numbers)."""
    if not isinstance(a, Form):
        a = Form(torch.as_tensor(a, dtype=torch.float64, device=b.c.device) + torch.zeros_like(b.c))
    if not isinstance(b, Form):
        b = Form(torch.as_tensor(b, dtype=torch.float64, device=a.c.device) + torch.zeros_like(a.c))
    g_b = None if b.g is None else sign * b.g
    return _with_slack(a.c + sign * b.c, _add(a.g, g_b), _add(a.e, b.e))


# ----------------------------------------------------------------------------- margins


def margin_lower_bounds_linear(x: Form, weight: PieceWeights, bias: Optional[PieceWeights], y: torch.Tensor) -> torch.Tensor:
    """Lower bound over the piece of min_{k != y} (logit_y - logit_k) when the logits are a Linear of ``x``.

    Bounds (W_y - W_k)(s) z(s) + (b_y - b_k)(s) directly, so errors shared by the two logits cancel.
    x: (B, H); weight (K, H); y: (B,) -> (B,).
    """
    def diff(t: torch.Tensor) -> torch.Tensor:  # (K, ...) -> (B, K, ...): row y minus every row
        return t[y].unsqueeze(1) - t.unsqueeze(0)

    a_c, a_d = diff(weight.centre), diff(weight.slope)
    centre = torch.einsum("bkh,bh->bk", a_c, x.c)
    slope = torch.einsum("bkh,bh->bk", a_d, x.c)
    err = torch.zeros_like(centre)
    if x.g is not None:
        ad_g = torch.einsum("bkh,bh->bk", a_d, x.g)
        centre = centre + 0.5 * ad_g
        slope = slope + torch.einsum("bkh,bh->bk", a_c, x.g)
        err = 0.5 * ad_g.abs()
    if x.e is not None:
        err = err + torch.einsum("bkh,bh->bk", a_c.abs() + a_d.abs(), x.e)
    row_mag = weight.mag.sum(1)
    pair_mag = row_mag[y].unsqueeze(1) + row_mag.unsqueeze(0)
    allowance = dot_slack(2 * weight.mag.shape[1]) * pair_mag * _per_sample_max(x.magnitude())
    if bias is not None:
        centre = centre + diff(bias.centre)
        slope = slope + diff(bias.slope)
        allowance = allowance + dot_slack(2) * (bias.mag[y].unsqueeze(1) + bias.mag.unsqueeze(0))
    lower = centre - slope.abs() - err - allowance
    return _min_over_other_classes(lower, y)


def margin_lower_bounds_form(logits: Form, y: torch.Tensor) -> torch.Tensor:
    """Lower bound of min_{k != y} (logit_y - logit_k) from an enclosure of the logits (B, K) -> (B,)."""
    def diff(t: torch.Tensor) -> torch.Tensor:
        return t.gather(1, y[:, None]) - t

    centre = diff(logits.c)
    width = torch.zeros_like(centre) if logits.g is None else diff(logits.g).abs()
    if logits.e is not None:
        width = width + logits.e.gather(1, y[:, None]) + logits.e
    mag = logits.magnitude()
    slack = ELEMENTWISE_SLACK * (mag.gather(1, y[:, None]) + mag)
    return _min_over_other_classes(centre - width - slack, y)


def _min_over_other_classes(values: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    own = F.one_hot(y, values.shape[1]).bool()
    return values.masked_fill(own, math.inf).amin(1)


def point_margins(model: nn.Module, params: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Margins logit_y - max other logit at one weight point (float64 forward pass): (B,)."""
    logits = functional_call(model, params, (x,))
    own = F.one_hot(y, logits.shape[1]).bool()
    return logits.gather(1, y[:, None]).squeeze(1) - logits.masked_fill(own, -math.inf).amax(1)


# ----------------------------------------------------------------------------- the traced network


RELU_FUNCS = {F.relu, torch.relu}
TANH_FUNCS = {torch.tanh, F.tanh}
SIGMOID_FUNCS = {torch.sigmoid, F.sigmoid}
FLATTEN_FUNCS = {torch.flatten}
RESHAPE_FUNCS = {torch.reshape}
ADD_FUNCS = {operator.add, torch.add, operator.iadd}
SUB_FUNCS = {operator.sub, torch.sub}
SHAPE_METHODS = {"size", "dim"}
SUPPORTED_METHODS = {"relu", "tanh", "sigmoid", "flatten", "view", "reshape", "contiguous"} | SHAPE_METHODS
SUPPORTED_MODULES = (nn.Linear, nn.Conv2d, nn.ReLU, nn.Tanh, nn.Sigmoid, nn.MaxPool2d, nn.AvgPool2d, nn.Flatten, nn.Identity)
SUPPORTED_FUNCS = RELU_FUNCS | TANH_FUNCS | SIGMOID_FUNCS | FLATTEN_FUNCS | RESHAPE_FUNCS | ADD_FUNCS | SUB_FUNCS | {
    F.max_pool2d, F.avg_pool2d, F.linear, F.conv2d}


@dataclass
class TracedNetwork:
    """A model's fx graph, checked to use only supported operations, and how its flat vector splits."""

    model: nn.Module
    graph: fx.Graph
    modules: dict[str, nn.Module]
    spec: list[tuple[str, tuple[int, ...]]]
    relu_before_pool: set[fx.Node]
    """ReLU nodes whose only use is a max pool: bounded after the pool instead (the two commute), 4x fewer units."""

    @property
    def n_params(self) -> int:
        return sum(math.prod(s) for _, s in self.spec)


_TRACED: "weakref.WeakKeyDictionary[nn.Module, TracedNetwork]" = weakref.WeakKeyDictionary()


def _describe(node: fx.Node, modules: dict[str, nn.Module]) -> str:
    if node.op == "call_module":
        return f"{node.target} ({type(modules[str(node.target)]).__name__})"
    if node.op == "call_function":
        return getattr(node.target, "__name__", repr(node.target))
    return f".{node.target}()" if node.op == "call_method" else str(node.target)


def trace(model: nn.Module) -> TracedNetwork:
    """Trace ``model`` with torch.fx and check every operation on the data is supported (cached per model).

    Raises ConfigError (one line) naming the first unsupported operation, or why tracing failed.
    """
    cached = _TRACED.get(model)
    if cached is not None:
        return cached
    name = type(model).__name__
    try:
        gm = fx.symbolic_trace(model)
    except Exception as e:  # fx raises many kinds (TraceError, TypeError on data-dependent control flow, ...)
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"cannot certify {name}: torch.fx cannot trace it ({first})") from None
    modules = dict(gm.named_modules())
    params = dict(model.named_parameters())
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    if len(placeholders) != 1:
        raise ConfigError(f"cannot certify {name}: forward must take exactly one input, it takes {len(placeholders)}")
    carries: set[fx.Node] = set(placeholders)
    for node in gm.graph.nodes:
        if node.op == "get_attr" and str(node.target) in params:
            carries.add(node)
            continue
        if node.op not in ("call_module", "call_function", "call_method"):
            continue
        inputs = [a for a in node.all_input_nodes if a in carries]
        if not inputs:
            continue  # shape arithmetic and constants: run as they are
        if node.op == "call_method" and node.target in SHAPE_METHODS:
            continue
        if node.op == "call_function" and node.target is getattr and node.args[1] in ("shape", "ndim"):
            continue
        ok = (
            (node.op == "call_module" and isinstance(modules[str(node.target)], SUPPORTED_MODULES))
            or (node.op == "call_function" and node.target in SUPPORTED_FUNCS)
            or (node.op == "call_method" and node.target in SUPPORTED_METHODS)
        )
        if node.op == "call_module":
            mod = modules[str(node.target)]
            if isinstance(mod, nn.Conv2d) and mod.padding_mode != "zeros":
                ok = False
        if not ok:
            raise ConfigError(f"cannot certify {name}: unsupported operation {_describe(node, modules)} at node {node.name!r}; supported: {SUPPORTED}")
        carries.add(node)
    spec = [(n, tuple(p.shape)) for n, p in model.named_parameters()]
    traced = TracedNetwork(model, gm.graph, modules, spec, _relus_before_pools(gm.graph, modules))
    _TRACED[model] = traced
    return traced


class _Piece:
    """The network on one piece [mid - radius, mid + radius] of the segment: bound propagation."""

    def __init__(self, net: TracedNetwork, weights: dict[str, SegmentWeights], mid: float, radius: float) -> None:
        self.net = net
        self.weights = {name: sw.on(mid, radius) for name, sw in weights.items()}

    def _param(self, module_name: str, attr: str) -> Optional[PieceWeights]:
        key = f"{module_name}.{attr}" if module_name else attr
        if key in self.weights:
            return self.weights[key]
        if getattr(self.net.modules[module_name], attr, None) is None:
            return None
        raise ConfigError(f"cannot certify {type(self.net.model).__name__}: {key} is not a parameter (shared or frozen tensors are not supported)")

    def margin_lower_bounds(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Lower bounds (B,) of each sample's margin over the piece."""
        env: dict[fx.Node, Any] = {}
        output: Optional[fx.Node] = None
        for node in self.net.graph.nodes:
            if node.op == "output":
                output = node
                break
            if node.op == "placeholder":
                env[node] = Form(x)
                continue
            if node is _final_linear(self.net, node) and _feeds_output(node):
                env[node] = node  # bounded together with the margins below
                continue
            if node in self.net.relu_before_pool:
                env[node] = env[node.all_input_nodes[0]]  # relu(maxpool(z)) = maxpool(relu(z))
                continue
            env[node] = self._run(node, env)
            if node.all_input_nodes and node.all_input_nodes[0] in self.net.relu_before_pool:
                env[node] = relu_form(env[node])
        assert output is not None
        result = output.args[0]
        if isinstance(result, fx.Node) and env.get(result) is result:
            inp, weight, bias = self._linear_args(result, env)
            return margin_lower_bounds_linear(inp, weight, bias, y)
        logits = env[result] if isinstance(result, fx.Node) else result
        if not isinstance(logits, Form) or logits.c.dim() != 2:
            raise ConfigError(f"cannot certify {type(self.net.model).__name__}: the output must be one (B, C) tensor of logits")
        return margin_lower_bounds_form(logits, y)

    def _linear_args(self, node: fx.Node, env: dict) -> tuple[Form, PieceWeights, Optional[PieceWeights]]:
        if node.op == "call_module":
            return env[node.args[0]], self._param(str(node.target), "weight"), self._param(str(node.target), "bias")
        args = list(node.args) + [None] * 3
        bias_node = args[2] if args[2] is not None else node.kwargs.get("bias")
        return env[args[0]], self._get(args[1], env), self._get(bias_node, env)

    def _get(self, a: Any, env: dict) -> Any:
        return env[a] if isinstance(a, fx.Node) else a

    def _run(self, node: fx.Node, env: dict) -> Any:
        args = fx.node.map_arg(node.args, lambda n: env[n])
        kwargs = fx.node.map_arg(node.kwargs, lambda n: env[n])
        if node.op == "get_attr":
            key = str(node.target)
            if key in self.weights:
                return self.weights[key]
            return _getattr_path(self.net.model, key)
        carrying = any(isinstance(a, (Form, PieceWeights)) for a in list(args) + list(kwargs.values()))
        if not carrying:  # shape arithmetic, constants
            return _execute(node, args, kwargs, self.net.modules)
        if node.op == "call_module":
            return self._module(str(node.target), args[0])
        if node.op == "call_method":
            return _method(str(node.target), args, kwargs)
        return _function(node.target, args, kwargs)

    def _module(self, name: str, x: Form) -> Form:
        mod = self.net.modules[name]
        if isinstance(mod, nn.Linear):
            return linear_form(x, self._param(name, "weight"), self._param(name, "bias"))
        if isinstance(mod, nn.Conv2d):
            return conv2d_form(x, self._param(name, "weight"), self._param(name, "bias"), mod.stride, mod.padding, mod.dilation, mod.groups)
        if isinstance(mod, nn.ReLU):
            return relu_form(x)
        if isinstance(mod, nn.Tanh):
            return tanh_form(x)
        if isinstance(mod, nn.Sigmoid):
            return sigmoid_form(x)
        if isinstance(mod, nn.MaxPool2d):
            return max_pool_form(x, mod.kernel_size, mod.stride, mod.padding, mod.dilation, mod.ceil_mode, mod.return_indices)
        if isinstance(mod, nn.AvgPool2d):
            return avg_pool_form(x, mod.kernel_size, mod.stride, mod.padding, mod.ceil_mode, mod.count_include_pad, mod.divisor_override)
        if isinstance(mod, nn.Flatten):
            return x.map(lambda t: t.flatten(mod.start_dim, mod.end_dim))
        return x  # nn.Identity


def _getattr_path(obj: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def _execute(node: fx.Node, args: Sequence[Any], kwargs: dict, modules: dict[str, nn.Module]) -> Any:
    """Run a node that touches no form (shape queries and their arithmetic)."""
    if node.op == "call_function":
        return node.target(*args, **kwargs)
    if node.op == "call_method":
        return getattr(args[0], str(node.target))(*args[1:], **kwargs)
    return modules[str(node.target)](*args, **kwargs)


def _method(name: str, args: Sequence[Any], kwargs: dict) -> Any:
    x = args[0]
    if name in SHAPE_METHODS:
        return getattr(x.c, name)(*args[1:], **kwargs)
    if name == "relu":
        return relu_form(x)
    if name == "tanh":
        return tanh_form(x)
    if name == "sigmoid":
        return sigmoid_form(x)
    return x.map(lambda t: getattr(t, name)(*args[1:], **kwargs))  # flatten, view, reshape, contiguous


def _function(fn: Any, args: Sequence[Any], kwargs: dict) -> Any:
    if fn is getattr:
        return getattr(args[0].c, args[1])
    if fn in RELU_FUNCS:
        return relu_form(args[0])
    if fn in TANH_FUNCS:
        return tanh_form(args[0])
    if fn in SIGMOID_FUNCS:
        return sigmoid_form(args[0])
    if fn in FLATTEN_FUNCS or fn in RESHAPE_FUNCS:
        return args[0].map(lambda t: fn(t, *args[1:], **kwargs))
    if fn in ADD_FUNCS or fn in SUB_FUNCS:
        if kwargs.get("alpha", 1) != 1:
            raise ConfigError(f"cannot certify {getattr(fn, '__name__', fn)} with alpha != 1; supported: {SUPPORTED}")
        return add_form(args[0], args[1], 1.0 if fn in ADD_FUNCS else -1.0)
    if fn is F.max_pool2d:
        return max_pool_form(*args, **kwargs)
    if fn is F.avg_pool2d:
        return avg_pool_form(*args, **kwargs)
    if fn is F.linear:
        bias = args[2] if len(args) > 2 else kwargs.get("bias")
        return linear_form(args[0], args[1], bias)
    if fn is F.conv2d:
        names = ("bias", "stride", "padding", "dilation", "groups")
        opts = dict(zip(names, list(args[2:]))) | kwargs
        return conv2d_form(args[0], args[1], opts.get("bias"), opts.get("stride", 1), opts.get("padding", 0), opts.get("dilation", 1), opts.get("groups", 1))
    raise ConfigError(f"cannot certify {getattr(fn, '__name__', fn)}; supported: {SUPPORTED}")


def _is_relu(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    return ((node.op == "call_function" and node.target in RELU_FUNCS) or (node.op == "call_method" and node.target == "relu")
            or (node.op == "call_module" and isinstance(modules.get(str(node.target)), nn.ReLU)))


def _is_max_pool(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    return (node.op == "call_function" and node.target is F.max_pool2d) or (
        node.op == "call_module" and isinstance(modules.get(str(node.target)), nn.MaxPool2d))


def _relus_before_pools(graph: fx.Graph, modules: dict[str, nn.Module]) -> set[fx.Node]:
    """ReLU nodes used only as the input of one max pool (relu and max commute: max is monotone)."""
    out = set()
    for node in graph.nodes:
        users = list(node.users)
        if _is_relu(node, modules) and len(users) == 1 and _is_max_pool(users[0], modules) and users[0].args[0] is node:
            out.add(node)
    return out


def _final_linear(net: TracedNetwork, node: fx.Node) -> Optional[fx.Node]:
    """``node`` if it is a Linear layer (module or F.linear), else None."""
    if node.op == "call_module" and isinstance(net.modules.get(str(node.target)), nn.Linear):
        return node
    if node.op == "call_function" and node.target is F.linear:
        return node
    return None


def _feeds_output(node: fx.Node) -> bool:
    """True when the node's only use is as the graph's output."""
    users = list(node.users)
    return len(users) == 1 and users[0].op == "output" and users[0].args[0] is node


# ----------------------------------------------------------------------------- the certificate


def segment_weights(net: TracedNetwork, w0: torch.Tensor, w1: torch.Tensor, device: torch.device) -> dict[str, SegmentWeights]:
    """Split flat float64 copies of w0 and w1 into named tensors along the segment."""
    n = net.n_params
    for label, w in (("w0", w0), ("w1", w1)):
        if w.dim() != 1 or w.numel() != n:
            raise ConfigError(f"{label} has shape {tuple(w.shape)}, the model {type(net.model).__name__} needs ({n},)")
    a = w0.detach().to(device=device, dtype=torch.float64)
    b = w1.detach().to(device=device, dtype=torch.float64)
    out, start = {}, 0
    for name, shape in net.spec:
        k = math.prod(shape)
        t0, t1 = a[start:start + k].view(shape), b[start:start + k].view(shape)
        out[name] = SegmentWeights(t0, t1 - t0, t0.abs() + t1.abs())
        start += k
    return out


def _points(weights: dict[str, SegmentWeights], t: float) -> dict[str, torch.Tensor]:
    return {name: sw.w0 + t * sw.delta for name, sw in weights.items()}


def _prepare(model: nn.Module, w0: torch.Tensor, w1: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> tuple[TracedNetwork, dict[str, SegmentWeights], torch.Tensor, torch.Tensor]:
    """Trace the model, split the weights, move x and y to w0's device; ConfigError on mismatched shapes."""
    net = trace(model)
    device = w0.device
    weights = segment_weights(net, w0, w1, device)
    if x.shape[0] != y.shape[0] or y.dim() != 1:
        raise ConfigError(f"x has {x.shape[0]} samples but y has shape {tuple(y.shape)}; need labels (M,)")
    return net, weights, x.to(device), y.to(device=device, dtype=torch.int64)


def _float64_kernels(device: torch.device) -> Any:
    """Context for certifying: cuDNN off on CUDA (its FFT/Winograd convolutions fall outside the rounding argument)."""
    return torch.backends.cudnn.flags(enabled=False) if device.type == "cuda" else contextlib.nullcontext()


def _piece_bounds(net: TracedNetwork, weights: dict[str, SegmentWeights], a: float, b: float, x: torch.Tensor, y: torch.Tensor, batch: int) -> torch.Tensor:
    """Margin lower bounds (len(y),) over t in [a, b], ``batch`` samples at a time.

    The piece is written t = mid + radius s with the radius rounded up, so it covers [a, b] whatever the rounding.
    """
    mid = 0.5 * (a + b)
    radius = math.nextafter(max(mid - a, b - mid), math.inf)
    piece = _Piece(net, weights, mid, radius)
    out = []
    for s in range(0, len(y), batch):
        check_stop()  # a piece over whole MNIST takes tens of seconds: a stopping run need not wait for it
        out.append(piece.margin_lower_bounds(x[s:s + batch].to(torch.float64), y[s:s + batch]))
    return torch.cat(out)


def margin_bounds(model: nn.Module, w0: torch.Tensor, w1: torch.Tensor, x: torch.Tensor, y: torch.Tensor, a: float = 0.0, b: float = 1.0, *, batch: int = 1000) -> torch.Tensor:
    """A lower bound (M,) float64 of each sample's margin over t in [a, b] on w(t) = w0 + t (w1 - w0), in one piece.

    Rigorous in real arithmetic (module docstring); no bisection.  Arguments as in
    :func:`certify_torch_segment`.
    """
    if not a <= b:
        raise ConfigError(f"need a <= b, got a={a}, b={b}")
    net, weights, x, y = _prepare(model, w0, w1, x, y)
    with _float64_kernels(x.device), torch.no_grad():
        return _piece_bounds(net, weights, float(a), float(b), x, y, batch)


def certify_torch_segment(
    model: nn.Module,
    w0: torch.Tensor,
    w1: torch.Tensor,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    max_depth: int = 14,
    batch: int = 1000,
    max_pieces: int = 2000,
) -> SegmentCertificate:
    """Prove that every training margin stays > 0 along w(t) = w0 + t (w1 - w0), t in [0, 1].

    ``model``: any nn.Module built from the supported operations (module docstring); its own
    parameters are ignored, ``w0``/``w1`` (flat, named_parameters order, C order per tensor)
    supply them.  ``x``: (M, ...) inputs, ``y``: (M,) int64 labels; computed on w0's device in
    float64 (cuDNN off).  Samples whose lower bound on a piece is not > 0 are bounded again on
    its halves, down to ``max_depth`` halvings (pieces of length 2^-max_depth) and at most
    ``max_pieces`` pieces in all; ``batch`` samples are bounded at a time.

    Returns SegmentCertificate(certified, margin_bound, pieces, seconds): when certified,
    margin_bound is a proven lower bound of min_t min_mu margin; when refused, it is the
    smallest value met (a float64 margin <= 0 at a piece's end or midpoint, or the bound that
    failed at the depth or piece limit).  ``pieces``: pieces bounded; (pieces - 1) / 2 bisections.
    """
    started = time.perf_counter()
    if max_depth < 0 or max_pieces < 1 or batch < 1:
        raise ConfigError(f"max_depth={max_depth}, max_pieces={max_pieces}, batch={batch}: need max_depth >= 0, max_pieces >= 1, batch >= 1")
    net, weights, x, y = _prepare(model, w0, w1, x, y)
    with _float64_kernels(x.device), torch.no_grad():
        certified, bound, pieces = _bisect(net, weights, x, y, max_depth, batch, max_pieces)
    return SegmentCertificate(certified=certified, margin_bound=bound, pieces=pieces, seconds=time.perf_counter() - started)


@dataclass
class _Work:
    """A piece [a, b] of the segment still to bound for ``samples`` (indices into x), ``depth`` halvings deep."""

    a: float
    b: float
    depth: int
    samples: torch.Tensor


def _smallest_point_margin(net: TracedNetwork, weights: dict[str, SegmentWeights], work: _Work, x: torch.Tensor, y: torch.Tensor, batch: int) -> float:
    """Smallest float64 margin of the piece's samples at its midpoint, and at its ends for the whole segment (depth 0).

    A deeper piece's ends are its parent's ends or midpoint, already evaluated for
    the parent's failing samples (a superset of this piece's) and found > 0.
    """
    lowest = math.inf
    mid = 0.5 * (work.a + work.b)
    for t in (work.a, mid, work.b) if work.depth == 0 else (mid,):
        params = _points(weights, t)
        for s in range(0, len(work.samples), batch):
            check_stop()
            idx = work.samples[s:s + batch]
            lowest = min(lowest, float(point_margins(net.model, params, x[idx].to(torch.float64), y[idx]).min()))
    return lowest


def _bisect(net: TracedNetwork, weights: dict[str, SegmentWeights], x: torch.Tensor, y: torch.Tensor, max_depth: int, batch: int, max_pieces: int) -> tuple[bool, float, int]:
    """(certified, margin bound, pieces bounded): depth-first halving of the pieces where some sample fails.

    Only the samples not yet proved on a piece go on to its halves.  A failing piece first
    has its samples' margins evaluated at its midpoint (and the segment's ends): a margin <= 0 there refuses
    the segment at once (it leaves S, up to float64 rounding), without bisecting to the limit.
    """
    stack = [_Work(0.0, 1.0, 0, torch.arange(len(y), device=y.device))]
    pieces = 0
    lowest = math.inf
    while stack:
        work = stack.pop()
        pieces += 1
        idx = work.samples
        lower = _piece_bounds(net, weights, work.a, work.b, x[idx], y[idx], batch)
        proved = lower > 0
        if bool(proved.any()):
            lowest = min(lowest, float(lower[proved].min()))
        if bool(proved.all()):
            continue
        failing = _Work(work.a, work.b, work.depth, idx[~proved])
        witness = _smallest_point_margin(net, weights, failing, x, y, batch)
        if witness <= 0:
            return False, witness, pieces
        if work.depth >= max_depth or pieces + len(stack) + 2 > max_pieces:
            return False, float(lower[~proved].min()), pieces
        mid = 0.5 * (work.a + work.b)
        stack.append(_Work(mid, work.b, work.depth + 1, failing.samples))
        stack.append(_Work(work.a, mid, work.depth + 1, failing.samples))
    return True, lowest, pieces


def network_certifier(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, max_pieces: int) -> Callable[[Any, Any, bool], Any]:
    """``certify(row0, row1, chord)`` for ``ramble verify``: :func:`certify_torch_segment` between two stored weight rows (P,) numpy.

    A path segment gets the limits the run's certificates had (the defaults); a chord (``chord`` True) at most ``max_pieces`` pieces.
    """
    import numpy as np

    def certify(r0: Any, r1: Any, chord: bool) -> Any:
        w0 = torch.from_numpy(np.ascontiguousarray(r0)).to(x.device)
        w1 = torch.from_numpy(np.ascontiguousarray(r1)).to(x.device)
        if chord:
            return certify_torch_segment(model, w0, w1, x, y, max_pieces=max_pieces)
        return certify_torch_segment(model, w0, w1, x, y)

    return certify
