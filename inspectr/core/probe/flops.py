"""Provides FLOP counts for the ops that carry a network's arithmetic, from shapes alone.

Counted at the torch-function level (``F.linear``, ``F.conv2d``, ``torch.matmul``, attention,
RNNs...), inside the probe's ``TorchFunctionMode`` that is already installed, so counting costs
a dict lookup per call instead of a Python dispatch per aten op (``FlopCounterMode`` roughly
doubles the cost of a probe on depthwise-conv networks, and over-counts their backward).

Conventions follow ``torch.utils.flop_counter``: a multiply-add is 2 FLOPs; elementwise ops
count 0. Backward: each of grad-input and grad-weight costs what the forward did, counted
only when that gradient is needed (``requires_grad``); attention backward is 2.5x forward.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from typing import Any

import torch

F = torch.nn.functional

FlopFn = Callable[[tuple[Any, ...], dict[str, Any], Any], "tuple[int, int] | None"]


def _prod(xs: Any) -> int:
    return math.prod(int(v) for v in xs)


def _needs(t: Any) -> bool:
    return isinstance(t, torch.Tensor) and t.requires_grad


def _two_operand(a: Any, b: Any, fwd: int) -> tuple[int, int]:
    return fwd, fwd * (int(_needs(a)) + int(_needs(b)))


def _linear(args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> tuple[int, int] | None:
    x = args[0] if args else kwargs.get("input")
    w = args[1] if len(args) > 1 else kwargs.get("weight")
    if not isinstance(x, torch.Tensor) or not isinstance(w, torch.Tensor):
        return None
    out_f, in_f = (w.shape[0], w.shape[1]) if w.dim() == 2 else (1, w.shape[0])
    rows = x.numel() // max(int(in_f), 1)
    return _two_operand(x, w, 2 * rows * int(in_f) * int(out_f))


def _conv(transposed: bool) -> FlopFn:
    def count(args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> tuple[int, int] | None:
        x = args[0] if args else kwargs.get("input")
        w = args[1] if len(args) > 1 else kwargs.get("weight")
        if not isinstance(out, torch.Tensor) or not isinstance(w, torch.Tensor):
            return None
        # every output (or, transposed, every input) element does prod(w[1:]) multiply-adds
        # w is [Cout, Cin/groups, k...], or [Cin, Cout/groups, k...] when transposed
        per = _prod(w.shape[1:])
        base = x.numel() if transposed and isinstance(x, torch.Tensor) else out.numel()
        return _two_operand(x, w, 2 * base * per)

    return count


def _matmul(args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> tuple[int, int] | None:
    if len(args) < 2 or not isinstance(out, torch.Tensor):
        return None
    a, b = args[0], args[1]
    if not isinstance(a, torch.Tensor) or not isinstance(b, torch.Tensor):
        return None
    k = a.shape[-1] if a.dim() else 1
    return _two_operand(a, b, 2 * out.numel() * int(k))


def _addmm_like(args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> tuple[int, int] | None:
    if len(args) < 3:
        return None
    return _matmul(args[1:3], kwargs, out)


def _einsum(args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> tuple[int, int] | None:
    if not args or not isinstance(args[0], str):
        return None
    eq = args[0].replace(" ", "")
    ops = list(args[1]) if len(args) == 2 and isinstance(args[1], (list, tuple)) else list(args[1:])
    lhs = eq.split("->")[0].split(",")
    if len(ops) != 2 or len(lhs) != 2 or "." in eq:
        return None
    sizes: dict[str, int] = {}
    for spec, t in zip(lhs, ops):
        if not isinstance(t, torch.Tensor) or len(spec) != t.dim():
            return None
        for ch, n in zip(spec, t.shape):
            sizes[ch] = int(n)
    return _two_operand(ops[0], ops[1], 2 * _prod(sizes.values()))


def _sdpa(args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> tuple[int, int] | None:
    q = args[0] if args else kwargs.get("query")
    k = args[1] if len(args) > 1 else kwargs.get("key")
    v = args[2] if len(args) > 2 else kwargs.get("value")
    if not all(isinstance(t, torch.Tensor) for t in (q, k, v)):
        return None
    batch = _prod(q.shape[:-2])
    lq, d = int(q.shape[-2]), int(q.shape[-1])
    lk, dv = int(k.shape[-2]), int(v.shape[-1])
    fwd = 2 * batch * lq * lk * d + 2 * batch * lq * lk * dv
    bwd = int(2.5 * fwd) if any(_needs(t) for t in (q, k, v)) else 0
    return fwd, bwd


def _mha(args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> tuple[int, int] | None:
    q = args[0] if args else kwargs.get("query")
    k = args[1] if len(args) > 1 else kwargs.get("key")
    embed = args[3] if len(args) > 3 else kwargs.get("embed_dim_to_check")
    if not isinstance(q, torch.Tensor) or not isinstance(k, torch.Tensor) or not isinstance(embed, int):
        return None
    # [L, N, E] (or [L, E] unbatched); projections of q, k, v and the output, plus attention
    lq = int(q.shape[0])
    lk = int(k.shape[0])
    n = int(q.shape[1]) if q.dim() == 3 else 1
    proj = 2 * n * (lq + 2 * lk + lq) * embed * embed
    attn = 2 * 2 * n * lq * lk * embed
    weights_need = any(_needs(t) for t in args[4:8] if isinstance(t, torch.Tensor))
    bwd = 0
    if weights_need or _needs(q):
        bwd = 2 * proj + int(2.5 * attn)
    return proj + attn, bwd


def _rnn(gates: int) -> FlopFn:
    def count(args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> tuple[int, int] | None:
        # _VF.lstm(input, hx, flat_weights, has_biases, num_layers, dropout, train, bidirectional,
        #          batch_first) or the packed variant (input, batch_sizes, hx, ...)
        if not args or not isinstance(args[0], torch.Tensor):
            return None
        x = args[0]
        # the flat weight list is the first list of 1-D/2-D tensors (hx, before it, holds 3-D states)
        weights = next((a for a in args[1:5] if isinstance(a, (list, tuple)) and a
                        and all(isinstance(w, torch.Tensor) and w.dim() <= 2 for w in a)
                        and any(w.dim() == 2 for w in a)), None)
        if weights is None:
            return None
        steps_times_batch = x.shape[0] * x.shape[1] if x.dim() == 3 else x.shape[0]
        total = 0
        need = False
        for w in weights:
            if w.dim() == 2:  # w_ih [gates*H, I] and w_hh [gates*H, H]
                total += 2 * int(steps_times_batch) * int(w.shape[0]) * int(w.shape[1])
                need = need or w.requires_grad
        return total, (2 * total if need else 0)

    return count


def _sparse_mm(args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> tuple[int, int] | None:
    if len(args) < 2 or not isinstance(out, torch.Tensor):
        return None
    a, b = args[0], args[1]
    if not isinstance(a, torch.Tensor) or not isinstance(b, torch.Tensor):
        return None
    nnz = a._nnz() if a.is_sparse else a.numel()
    cols = int(b.shape[-1]) if b.dim() > 1 else 1
    return _two_operand(a, b, 2 * int(nnz) * cols)


FLOP_FUNCTIONS: dict[Any, FlopFn] = {
    F.linear: _linear,
    F.conv1d: _conv(False),
    F.conv2d: _conv(False),
    F.conv3d: _conv(False),
    F.conv_transpose1d: _conv(True),
    F.conv_transpose2d: _conv(True),
    F.conv_transpose3d: _conv(True),
    torch.matmul: _matmul,
    torch.Tensor.matmul: _matmul,
    torch.Tensor.__matmul__: _matmul,
    torch.mm: _matmul,
    torch.Tensor.mm: _matmul,
    torch.bmm: _matmul,
    torch.Tensor.bmm: _matmul,
    torch.addmm: _addmm_like,
    torch.Tensor.addmm: _addmm_like,
    torch.Tensor.baddbmm: _addmm_like,
    torch.baddbmm: _addmm_like,
    torch.einsum: _einsum,
    F.scaled_dot_product_attention: _sdpa,
    F.multi_head_attention_forward: _mha,
    torch.sparse.mm: _sparse_mm,
    torch.spmm: _sparse_mm,
}

def _convolution(args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> tuple[int, int] | None:
    """``aten.convolution(input, weight, bias, stride, padding, dilation, transposed, ...)``."""
    return _conv(bool(args[6]) if len(args) > 6 else False)(args, kwargs, out)


# ATen overloads, as an exported program's graph calls them (the watch sees those, not F.*)
_aten = torch.ops.aten
FLOP_FUNCTIONS.update({
    _aten.linear.default: _linear,
    _aten.conv1d.default: _conv(False),
    _aten.conv2d.default: _conv(False),
    _aten.conv3d.default: _conv(False),
    _aten.convolution.default: _convolution,
    _aten.matmul.default: _matmul,
    _aten.mm.default: _matmul,
    _aten.bmm.default: _matmul,
    _aten.addmm.default: _addmm_like,
    _aten.baddbmm.default: _addmm_like,
    _aten.scaled_dot_product_attention.default: _sdpa,
})
for _name, _gates in (("lstm", 4), ("gru", 3), ("rnn_tanh", 1), ("rnn_relu", 1)):
    _fn = getattr(torch._VF, _name, None)
    if _fn is not None:
        FLOP_FUNCTIONS[_fn] = _rnn(_gates)


def count_flops(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> tuple[int, int] | None:
    """(forward, backward) FLOPs of one call, or None when ``func`` carries no counted arithmetic."""
    fn = FLOP_FUNCTIONS.get(func)
    if fn is None:
        return None
    try:
        return fn(args, kwargs or {}, out)
    except Exception:  # an unexpected signature must never break the probe
        return None


# ---------------------------------------------------------------- known leaf modules

LeafFlopFn = Callable[[Any, tuple[Any, ...], Any], "tuple[int, int] | None"]


def _leaf_linear(mod: Any, args: tuple[Any, ...], out: Any) -> tuple[int, int] | None:
    return _linear((args[0], mod.weight), {}, out) if args else None


def _leaf_conv(transposed: bool) -> LeafFlopFn:
    count = _conv(transposed)

    def leaf(mod: Any, args: tuple[Any, ...], out: Any) -> tuple[int, int] | None:
        return count((args[0], mod.weight), {}, out) if args else None

    return leaf


def _leaf_none(mod: Any, args: tuple[Any, ...], out: Any) -> tuple[int, int] | None:
    return None


def _forwards(*classes: type) -> list[Any]:
    return [cls.forward for cls in classes]


_nn = torch.nn
# Leaf modules whose own ``forward`` (not a subclass's override) makes exactly one counted call,
# or none: the probe counts them from the module and its output, and lets them run outside the
# functional watch (a Python dispatch per torch call is most of a probe's cost on deep models).
LEAF_FLOPS: dict[Any, LeafFlopFn] = {
    _nn.Linear.forward: _leaf_linear,
    **{f: _leaf_conv(False) for f in _forwards(_nn.Conv1d, _nn.Conv2d, _nn.Conv3d)},
    **{f: _leaf_conv(True) for f in _forwards(_nn.ConvTranspose1d, _nn.ConvTranspose2d, _nn.ConvTranspose3d)},
    **{f: _leaf_none for f in _forwards(
        _nn.modules.batchnorm._BatchNorm, _nn.LayerNorm, _nn.GroupNorm, _nn.modules.instancenorm._InstanceNorm,
        _nn.RMSNorm, _nn.LocalResponseNorm,
        _nn.ReLU, _nn.ReLU6, _nn.GELU, _nn.SiLU, _nn.Mish, _nn.Sigmoid, _nn.Tanh, _nn.Hardswish,
        _nn.Hardsigmoid, _nn.Hardtanh, _nn.LeakyReLU, _nn.ELU, _nn.SELU, _nn.CELU, _nn.Softplus, _nn.PReLU,
        _nn.Softmax, _nn.LogSoftmax, _nn.GLU, _nn.Threshold,
        _nn.Dropout, _nn.Dropout1d, _nn.Dropout2d, _nn.Dropout3d, _nn.AlphaDropout,
        _nn.Identity, _nn.Flatten, _nn.Unflatten, _nn.Embedding,
        _nn.MaxPool1d, _nn.MaxPool2d, _nn.MaxPool3d, _nn.AvgPool1d, _nn.AvgPool2d, _nn.AvgPool3d,
        _nn.AdaptiveAvgPool1d, _nn.AdaptiveAvgPool2d, _nn.AdaptiveAvgPool3d,
        _nn.AdaptiveMaxPool1d, _nn.AdaptiveMaxPool2d, _nn.AdaptiveMaxPool3d,
        _nn.Upsample, _nn.PixelShuffle, _nn.PixelUnshuffle,
        _nn.modules.padding._ConstantPadNd, _nn.modules.padding._ReflectionPadNd,
        _nn.modules.padding._ReplicationPadNd)},
}


# Leaves of packages inspectr does not import itself (``import torchvision`` costs seconds), known
# once the model's own code has imported them: module -> class names whose forward counts nothing.
# torchvision's StochasticDepth (every EfficientNet block) and timm's DropPath (most timm blocks)
# draw a noise tensor and multiply: four watched calls a block otherwise, at ~27 us each.
_LATER_LEAVES = {"torchvision.ops.stochastic_depth": ("StochasticDepth",), "timm.layers.drop": ("DropPath",)}


def _learn_later_leaves() -> None:
    for name, classes in list(_LATER_LEAVES.items()):
        module = sys.modules.get(name)
        if module is None:
            continue
        for cls_name in classes:
            cls = getattr(module, cls_name, None)
            if cls is not None:
                LEAF_FLOPS[cls.forward] = _leaf_none
        del _LATER_LEAVES[name]


def leaf_flops(mod: Any) -> LeafFlopFn | None:
    """How to count a known leaf module's FLOPs from the module itself, or None when its
    ``forward`` is not one inspectr knows (overridden, or a module with children)."""
    fn = LEAF_FLOPS.get(type(mod).forward)
    if fn is None and _LATER_LEAVES and type(mod).__module__ in _LATER_LEAVES:
        _learn_later_leaves()
        fn = LEAF_FLOPS.get(type(mod).forward)
    if fn is None or any(c is not None for c in mod._modules.values()):
        return None
    return fn
