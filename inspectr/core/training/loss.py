"""Provides the loss a training run minimises: the user's ``loss_fn``/``example_target``, or one
inferred from the model's output.

Inference (documented in the README): an output carrying a ``loss`` (a Hugging Face
``ModelOutput``, a dict or namedtuple with a ``loss`` entry) uses it; class logits ``[B, C]``
get cross-entropy against fixed random labels; sequence logits ``[B, T, V]`` get token
cross-entropy against fixed random tokens; anything else gets mean squared error towards a
fixed random target of the output's shape. Several tensor outputs each get their rule and the
losses are summed. Targets come from a generator seeded with the run's seed: the global RNG
is never drawn from.
"""

from __future__ import annotations

import inspect as pyinspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from inspectr.core.values import iter_tensors
from inspectr.errors import InspectrError


@dataclass(frozen=True)
class Objective:
    """A loss for one model and batch: ``compute(output) -> scalar tensor`` and its name."""

    compute: Callable[[Any], torch.Tensor]
    name: str
    # (min, max) of the float target the output is regressed toward (given or drawn); None for
    # labels, the model's own loss, or a loss_fn(output) with no target
    target_range: tuple[float, float] | None = None

def find_hook(model: nn.Module, file_module: Any, name: str) -> Any:
    """``name`` on the model (method, callable or value), else module-level in its file."""
    hook = getattr(model, name, None)
    if hook is None and file_module is not None:
        hook = getattr(file_module, name, None)
    return hook


def call_target_hook(hook: Any, batch_size: int | None) -> Any:
    """Call an ``example_target`` hook (with ``batch_size=`` when it takes it), or use its value."""
    if not callable(hook):
        return hook
    try:
        params = pyinspect.signature(hook).parameters
    except (TypeError, ValueError):
        params = {}
    if "batch_size" in params and batch_size is not None:
        return hook(batch_size=batch_size)
    return hook()


def _takes_one_argument(fn: Callable[..., Any]) -> bool:
    try:
        params = [p for p in pyinspect.signature(fn).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty]
        var = any(p.kind == p.VAR_POSITIONAL for p in pyinspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return False
    return len(params) == 1 and not var


def own_loss(output: Any) -> torch.Tensor | None:
    """The loss a model returns itself (``output.loss``, ``output["loss"]``), if any."""
    if isinstance(output, dict):
        value = output.get("loss")
    else:
        value = getattr(output, "loss", None) if not isinstance(output, torch.Tensor) else None
    if isinstance(value, torch.Tensor) and value.numel() == 1 and value.requires_grad:
        return value
    return None


def trainable_outputs(output: Any) -> list[torch.Tensor]:
    """The floating-point output tensors with a gradient path (``logits`` alone when named)."""
    if isinstance(output, dict) or hasattr(output, "logits"):
        logits = output.get("logits") if isinstance(output, dict) else output.logits
        if isinstance(logits, torch.Tensor) and logits.is_floating_point() and logits.requires_grad:
            return [logits]
    seen: dict[int, torch.Tensor] = {}
    for t in iter_tensors(output):
        if (t.is_floating_point() or t.is_complex()) and t.requires_grad and t.layout == torch.strided:
            seen.setdefault(id(t), t)
    return list(seen.values())


def _rule(t: torch.Tensor, gen: torch.Generator) -> tuple[str, Any]:
    """(kind, random target) for one output tensor."""
    if t.is_complex():
        return "mse", torch.randn(torch.view_as_real(t).shape, generator=gen).to(t.device, torch.view_as_real(t).dtype)
    if t.dim() == 2 and t.shape[1] >= 2:
        return "ce", torch.randint(0, t.shape[1], (t.shape[0],), generator=gen).to(t.device)
    if t.dim() == 3 and t.shape[2] >= 2:
        return "token_ce", torch.randint(0, t.shape[2], tuple(t.shape[:2]), generator=gen).to(t.device)
    return "mse", torch.randn(tuple(t.shape), generator=gen).to(t.device, t.dtype)


def _apply(kind: str, t: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    if kind == "ce":
        return F.cross_entropy(t.float(), target)
    if kind == "token_ce":
        return F.cross_entropy(t.float().reshape(-1, t.shape[-1]), target.reshape(-1))
    if t.is_complex():
        t = torch.view_as_real(t)
    return F.mse_loss(t.float(), target.float())


_NAMES = {"ce": "cross-entropy over {n} classes against fixed random labels",
          "token_ce": "token cross-entropy over {n} classes against fixed random tokens",
          "mse": "mean squared error to a fixed random target"}


def _kind_of_target(t: torch.Tensor, target: Any) -> str | None:
    """Which loss fits a user target for output ``t`` (None: none does)."""
    if not isinstance(target, torch.Tensor):
        return None
    if not target.is_floating_point() and not target.is_complex():
        if t.dim() == 2 and tuple(target.shape) == (t.shape[0],):
            return "ce"
        if t.dim() == 3 and tuple(target.shape) == tuple(t.shape[:2]):
            return "token_ce"
        return None
    return "mse" if tuple(target.shape) == tuple(t.shape) else None


def objective_for(output: Any, loss_fn: Callable[..., Any] | None, target: Any,
                  seed: int, target_given: bool) -> Objective:
    """The loss for ``output`` (the first step's): see the module docstring.

    Args:
        output: the model's output on the fixed batch.
        loss_fn: ``loss_fn(output, target)`` (or ``loss_fn(output)``) from the user, or None.
        target: the user's target (``target=`` / ``example_target``), or None.
        seed: seeds the generator of random targets.
        target_given: whether ``target`` came from the user (None may be a real target).

    Raises:
        InspectrError: no output can be trained on, or a target does not fit the output.
    """
    gen = torch.Generator().manual_seed(seed)
    if loss_fn is not None:
        name = getattr(loss_fn, "__qualname__", None) or type(loss_fn).__name__
        if _takes_one_argument(loss_fn):
            return Objective(lambda out: _check_scalar(loss_fn(out), name), f"{name}(output)")
        if not target_given:
            outs = trainable_outputs(output)
            if not outs:
                raise _no_output(output)
            target = _rule(outs[0], gen)[1]
            name_t = f"{name}(output, random target)"
        else:
            name_t = f"{name}(output, target)"
        fixed = target
        return Objective(lambda out: _check_scalar(loss_fn(out, fixed), name), name_t, _range([fixed]))
    if not target_given and own_loss(output) is not None:
        return Objective(lambda out: _own_or_fail(out), "the model's own loss (output.loss)")
    outs = trainable_outputs(output)
    if not outs:
        raise _no_output(output)
    if target_given:
        kind = _kind_of_target(outs[0], target) if len(outs) == 1 else None
        if kind is None:
            shapes = ", ".join(str(list(t.shape)) for t in outs)
            tshape = list(target.shape) if isinstance(target, torch.Tensor) else type(target).__name__
            raise InspectrError(
                f"The target ({tshape}) does not fit the model's output ({shapes}): inspectr knows "
                "integer labels [B] for logits [B, C], integer tokens [B, T] for [B, T, V], and a "
                "float target of the output's shape.",
                "Give a loss_fn(output, target) with it (loss_fn= or a loss_fn in the model's file).",
            )
        fixed = target
        first_kind = kind

        def with_target(out: Any) -> torch.Tensor:
            return _apply(first_kind, _first(out), fixed)

        n = outs[0].shape[-1]
        return Objective(with_target, _NAMES[kind].format(n=n).replace("fixed random labels", "the given target")
                         .replace("fixed random tokens", "the given target")
                         .replace("a fixed random target", "the given target"),
                         _range([fixed]) if kind == "mse" else None)
    rules = [_rule(t, gen) for t in outs]
    names = []
    for (kind, _), t in zip(rules, outs):
        names.append(_NAMES[kind].format(n=t.shape[-1]))
    name = names[0] if len(set(names)) == 1 else "; ".join(dict.fromkeys(names))
    if len(outs) > 1:
        name += f" (summed over {len(outs)} outputs)"

    def inferred(out: Any) -> torch.Tensor:
        now = trainable_outputs(out)
        if len(now) != len(rules):
            raise InspectrError(
                f"The model returned {len(now)} trainable outputs on a later step, {len(rules)} on the first.",
                "Give a loss_fn(output, target) that picks what to train on.",
            )
        total = _apply(rules[0][0], now[0], rules[0][1])
        for (kind, tgt), t in zip(rules[1:], now[1:]):
            total = total + _apply(kind, t, tgt)
        return total

    kinds = {kind for kind, _ in rules}
    return Objective(inferred, name, _range([tgt for _, tgt in rules]) if kinds == {"mse"} else None)


def _range(targets: list[Any]) -> tuple[float, float] | None:
    """(min, max) over real floating-point targets; None when any is not one (labels, complex)."""
    if not targets or not all(isinstance(t, torch.Tensor) and t.is_floating_point() and t.numel()
                              for t in targets):
        return None
    return min(float(t.min()) for t in targets), max(float(t.max()) for t in targets)


def _first(out: Any) -> torch.Tensor:
    return trainable_outputs(out)[0]


def _own_or_fail(out: Any) -> torch.Tensor:
    loss = own_loss(out)
    if loss is None:
        raise InspectrError("The model returned a loss on the first step and none on a later one.",
                            "Give a loss_fn(output, target).")
    return loss


def _check_scalar(value: Any, name: str) -> torch.Tensor:
    if not isinstance(value, torch.Tensor) or value.numel() != 1:
        what = list(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
        raise InspectrError(f"loss_fn {name} returned {what}, not a scalar tensor.",
                            "Return one number, e.g. loss.mean().")
    if not value.requires_grad:
        raise InspectrError(f"loss_fn {name} returned a tensor without a gradient path to the model.",
                            "Compute it from the output with torch operations (no .item(), .detach() or numpy).")
    return value.reshape(())


def _no_output(output: Any) -> InspectrError:
    from inspectr.core.values import structure

    return InspectrError(
        f"No floating-point output has a gradient path (the model returned {structure(output)}), "
        "so there is no loss to train on.",
        "Give a loss_fn(output, target), or run the model in the mode that returns scores (--train/--eval).",
    )
