"""Which axes of which parameters a permutation of hidden units acts on, derived from a torch module by torch.fx.

A classifier built as a chain

    (Linear | Conv2d) -> elementwise activation -> [pooling] -> [flatten] -> (Linear | Conv2d) -> ... -> logits

computes the same function when the output units (channels) of every hidden
layer are permuted and the next layer's input weights are permuted the same
way.  A *group* is one hidden layer's units: its size and every (parameter,
axis) the permutation reorders, as Git Re-Basin's permutation specs name them.
A conv channel flattened into a Linear layer owns ``block`` = H x W
consecutive input features of that layer (C order: channel, row, column).

Anything else in the graph (residual adds, concatenation, normalisation,
weight sharing, indexing) is refused in one line: a permutation that is not
known to keep the function is never applied.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from ramble.errors import ConfigError

#: Elementwise maps (act on each unit alone): a permutation of units commutes with them.
ELEMENTWISE_MODULES = (nn.ReLU, nn.Tanh, nn.Sigmoid, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Hardtanh, nn.Softplus, nn.Identity, nn.Dropout)
ELEMENTWISE_FUNCTIONS = {F.relu, torch.relu, torch.tanh, torch.sigmoid, F.tanh, F.sigmoid, F.leaky_relu, F.elu, F.gelu, F.silu, F.hardtanh, F.softplus, F.dropout}
ELEMENTWISE_METHODS = {"relu", "tanh", "sigmoid"}
#: Per-channel pooling: commutes with a permutation of channels.
POOL_MODULES = (nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)
POOL_FUNCTIONS = {F.max_pool1d, F.max_pool2d, F.avg_pool1d, F.avg_pool2d, F.adaptive_avg_pool2d, F.adaptive_max_pool2d}
LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d)


@dataclass(frozen=True)
class Axis:
    """One axis of one parameter reordered by a group: ``shape[axis] == size * block``; unit u owns entries u*block .. (u+1)*block - 1."""

    param: str
    axis: int
    block: int = 1


@dataclass(frozen=True)
class PermGroup:
    """The units of one hidden layer: ``size`` of them; ``axes`` it reorders; ``activation``: fx node whose output (B, size, ...) are the units' activations."""

    name: str
    size: int
    axes: tuple[Axis, ...]
    activation: str


@dataclass(frozen=True)
class PermSpec:
    """The permutation structure of a module: its hidden groups, and its parameters (name, shape) in flattening order."""

    groups: tuple[PermGroup, ...]
    params: tuple[tuple[str, tuple[int, ...]], ...]

    def axes_of(self, param: str) -> list[tuple[PermGroup, Axis]]:
        """Every (group, axis) acting on ``param``."""
        return [(g, a) for g in self.groups for a in g.axes if a.param == param]


# ----------------------------------------------------------------- tracing
@dataclass
class _Units:
    """Where a hidden group sits in a traced tensor: axis 1, either as channels (``block`` 0) or flattened into blocks of ``block`` features."""

    group: int
    block: int = 0


@dataclass
class _Draft:
    name: str
    size: int
    axes: list[Axis] = field(default_factory=list)
    activation: str = ""
    consumed: bool = False


INPUT = "input"  # a tensor no permutation acts on (the network's input and what derives from it alone)
SCALAR = "scalar"  # not a tensor (x.size(0))


def permutation_spec(model: nn.Module, example: torch.Tensor) -> PermSpec:
    """Trace ``model`` on ``example`` (a batch of inputs) and derive its permutation groups; ConfigError (one line) on unsupported graphs."""
    try:
        gm = fx.symbolic_trace(model)
    except Exception as e:  # noqa: BLE001 - any trace failure means: not a graph we can reason about
        raise ConfigError(f"cannot align {type(model).__name__}: torch.fx cannot trace it ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None
    ShapeProp(gm).propagate(example)
    state: dict[str, Any] = {}
    drafts: list[_Draft] = []
    used_layers: set[str] = set()
    what = type(model).__name__
    for node in gm.graph.nodes:
        if node.op == "placeholder":
            state[node.name] = INPUT
        elif node.op == "output":
            _check_output(node, state, drafts, what)
        elif node.op == "call_module":
            state[node.name] = _module_node(gm, node, state, drafts, used_layers, what)
        elif node.op == "call_function":
            state[node.name] = _function_node(node, state, drafts, what)
        elif node.op == "call_method":
            state[node.name] = _method_node(node, state, drafts, what)
        else:
            raise ConfigError(f"cannot align {what}: unsupported graph node {node.op} {node.target!r} (only Linear/Conv layers, elementwise activations, pooling and flatten are)")
    params = tuple((n, tuple(p.shape)) for n, p in model.named_parameters())
    covered = {a.param for d in drafts for a in d.axes} | {f"{m}.{k}" for m in used_layers for k in ("weight", "bias")}
    stray = [n for n, _ in params if n not in covered]
    if stray:
        raise ConfigError(f"cannot align {what}: parameter {stray[0]} does not belong to a Linear or Conv layer of the traced graph")
    groups = tuple(PermGroup(d.name, d.size, tuple(d.axes), d.activation) for d in drafts if d.consumed)
    return PermSpec(groups, params)


def _state_of(arg: Any, state: dict[str, Any], what: str) -> Any:
    if isinstance(arg, fx.Node):
        return state[arg.name]
    return SCALAR


def _tensor_args(node: fx.Node) -> list[fx.Node]:
    return [a for a in list(node.args) + list(node.kwargs.values()) if isinstance(a, fx.Node)]


def _shape(node: fx.Node) -> tuple[int, ...]:
    meta = node.meta.get("tensor_meta")
    return tuple(meta.shape) if meta is not None and hasattr(meta, "shape") else ()


def _layer(gm: fx.GraphModule, node: fx.Node, mod: nn.Module, inp: Any, drafts: list[_Draft], what: str) -> _Units:
    """A Linear/Conv layer: its input axis joins the incoming group; its outputs start a new group."""
    if isinstance(mod, (nn.Conv1d, nn.Conv2d)) and mod.groups != 1:
        raise ConfigError(f"cannot align {what}: {node.target} is a grouped convolution (groups={mod.groups})")
    if isinstance(inp, _Units):
        d = drafts[inp.group]
        if d.consumed:
            raise ConfigError(f"cannot align {what}: the units of {d.name} feed more than one layer ({node.target} too)")
        in_size = mod.in_features if isinstance(mod, nn.Linear) else mod.in_channels
        block = inp.block or 1
        if isinstance(mod, nn.Linear) and inp.block == 0 and len(_shape(node.args[0])) != 2:
            raise ConfigError(f"cannot align {what}: {node.target} is applied to a tensor with spatial axes; flatten it first")
        if in_size != d.size * block:
            raise ConfigError(f"cannot align {what}: {node.target} takes {in_size} inputs, {d.name} gives {d.size} units x {block}")
        d.axes.append(Axis(f"{node.target}.weight", 1, block))
        d.consumed = True
    elif inp is not INPUT:
        raise ConfigError(f"cannot align {what}: the input of {node.target} is not a tensor the permutation structure follows")
    size = mod.out_features if isinstance(mod, nn.Linear) else mod.out_channels
    axes = [Axis(f"{node.target}.weight", 0)] + ([Axis(f"{node.target}.bias", 0)] if mod.bias is not None else [])
    drafts.append(_Draft(str(node.target), int(size), axes, activation=node.name))
    return _Units(len(drafts) - 1)


def _module_node(gm: fx.GraphModule, node: fx.Node, state: dict[str, Any], drafts: list[_Draft], used: set[str], what: str) -> Any:
    mod = gm.get_submodule(str(node.target))
    inp = _state_of(node.args[0], state, what) if node.args else SCALAR
    if isinstance(mod, LAYERS):
        if node.target in used:
            raise ConfigError(f"cannot align {what}: layer {node.target} is used twice (shared weights)")
        used.add(str(node.target))
        return _layer(gm, node, mod, inp, drafts, what)
    if any(True for _ in mod.parameters(recurse=True)):
        raise ConfigError(f"cannot align {what}: layer {node.target} ({type(mod).__name__}) has parameters and is not a Linear or Conv layer")
    if isinstance(mod, ELEMENTWISE_MODULES):
        return _elementwise(node, inp, drafts)
    if isinstance(mod, POOL_MODULES):
        return _pool(node, inp, what)
    if isinstance(mod, nn.Flatten):
        return _flatten(node, inp, mod.start_dim, mod.end_dim, what)
    raise ConfigError(f"cannot align {what}: unsupported layer {node.target} ({type(mod).__name__})")


def _function_node(node: fx.Node, state: dict[str, Any], drafts: list[_Draft], what: str) -> Any:
    fn = node.target
    args = _tensor_args(node)
    inp = _state_of(node.args[0], state, what) if node.args else SCALAR
    if fn in ELEMENTWISE_FUNCTIONS and len(args) == 1:
        return _elementwise(node, inp, drafts)
    if fn in POOL_FUNCTIONS and len(args) == 1:
        return _pool(node, inp, what)
    if fn is torch.flatten and len(args) == 1:
        start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
        end = node.args[2] if len(node.args) > 2 else node.kwargs.get("end_dim", -1)
        return _flatten(node, inp, start, end, what)
    if fn is operator.getitem and inp is SCALAR:
        return SCALAR
    if all(_state_of(a, state, what) in (INPUT, SCALAR) for a in args):
        return INPUT if any(_state_of(a, state, what) is INPUT for a in args) else SCALAR  # no hidden units involved
    raise ConfigError(f"cannot align {what}: unsupported operation {getattr(fn, '__name__', fn)} on hidden units (node {node.name})")


def _method_node(node: fx.Node, state: dict[str, Any], drafts: list[_Draft], what: str) -> Any:
    inp = _state_of(node.args[0], state, what)
    name = str(node.target)
    if name == "size" or name == "dim":
        return SCALAR
    if name in ELEMENTWISE_METHODS:
        return _elementwise(node, inp, drafts)
    if name == "flatten":
        start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
        end = node.args[2] if len(node.args) > 2 else node.kwargs.get("end_dim", -1)
        return _flatten(node, inp, start, end, what)
    if name in ("view", "reshape"):
        before, after = _shape(node.args[0]), _shape(node)
        if inp is INPUT:
            return INPUT
        if len(after) == 2 and len(before) >= 2 and after[0] == before[0]:
            return _flatten(node, inp, 1, -1, what)
        raise ConfigError(f"cannot align {what}: {name} to {after} mixes hidden units (node {node.name}); only (batch, -1) is supported")
    if inp is INPUT:
        return INPUT
    raise ConfigError(f"cannot align {what}: unsupported tensor method .{name}() on hidden units (node {node.name})")


def _elementwise(node: fx.Node, inp: Any, drafts: list[_Draft]) -> Any:
    if isinstance(inp, _Units) and inp.block == 0:
        drafts[inp.group].activation = node.name  # the post-activation values are what activation matching compares
    return inp


def _pool(node: fx.Node, inp: Any, what: str) -> Any:
    if isinstance(inp, _Units) and inp.block != 0:
        raise ConfigError(f"cannot align {what}: pooling after flatten (node {node.name})")
    return inp


def _flatten(node: fx.Node, inp: Any, start: Any, end: Any, what: str) -> Any:
    if not isinstance(inp, _Units):
        return inp
    shape = _shape(node.args[0])
    if start != 1 or end not in (-1, len(shape) - 1):
        raise ConfigError(f"cannot align {what}: flatten({start}, {end}) at node {node.name}; only flatten(1) over the channel and spatial axes is supported")
    if inp.block != 0 or len(shape) <= 2:
        return inp
    block = 1
    for n in shape[2:]:
        block *= int(n)
    return _Units(inp.group, block)


def _check_output(node: fx.Node, state: dict[str, Any], drafts: list[_Draft], what: str) -> None:
    out = node.args[0]
    if not isinstance(out, fx.Node):
        raise ConfigError(f"cannot align {what}: its forward must return one tensor of logits")
    s = state[out.name]
    if not (isinstance(s, _Units) and s.block == 0 and len(_shape(out)) == 2):
        raise ConfigError(f"cannot align {what}: its output is not the (batch, classes) output of a Linear layer")
    drafts[s.group].consumed = False  # the logits' units are the classes: never permuted


def describe(spec: PermSpec) -> str:
    """One line: the groups and their sizes, e.g. ``conv1 (6), conv2 (16), fc1 (120), fc2 (84)``."""
    return ", ".join(f"{g.name} ({g.size})" for g in spec.groups) or "no hidden units"


def find_group(spec: PermSpec, name: str) -> Optional[PermGroup]:
    return next((g for g in spec.groups if g.name == name), None)
