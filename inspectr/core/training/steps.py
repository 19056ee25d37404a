"""Provides training steps on one fixed batch, watched layer by layer (``inspectr --steps N``).

The run reuses the probe's rooms: ``state.preserved`` puts back everything the user owns (with
copies of every parameter, which the optimizer changes in place), the probe's ``ModuleHooks``
measure the last step's forward (dead units at the end), and when the loss turns non-finite the
step's forward is replayed by ``run_probe`` with the same seed to name the first module whose
output went non-finite; when the loss is finite but a gradient is not, the step is replayed
under ``grad_origin`` to name the op whose backward made it (the run stops there, before the
update spreads NaN into the weights). Per step, only a handful of ``torch._foreach`` reductions
run over the parameters: gradient norms before the update, update and weight norms after it.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import nn

from inspectr.core.optim import DEFAULT_STEPS, OptimizerChoice
from inspectr.core.probe.culprits import nonfinite_culprit
from inspectr.core.probe.functional import FunctionalWatch
from inspectr.core.probe.grad_origin import GradOrigin, GradOriginTracer
from inspectr.core.probe.hooks import ModuleHooks, ModuleMeasure, ProbeCancelled
from inspectr.core.probe.op_trace import OpTrace, OpTracer
from inspectr.core.probe.options import ProbeOptions
from inspectr.core.probe.run import run_probe
from inspectr.core.state import preserved
from inspectr.core.training.loss import Objective, objective_for
from inspectr.core.walk import ModelWalk, walk
from inspectr.errors import InspectrError

__all__ = ["DEFAULT_STEPS", "TrainingOptions", "TrainingRun", "frozen_batchnorm_in_train", "train_steps"]


@dataclass
class TrainingOptions:
    """What a training run does; mirrors the CLI flags."""

    steps: int = DEFAULT_STEPS
    optimizer: OptimizerChoice = field(default_factory=OptimizerChoice)
    mode: str = "own"  # "own" | "train" | "eval", as for the probe
    seed: int = 0
    loss_fn: Callable[..., Any] | None = None
    target: Any = None
    target_given: bool = False
    cancelled: Callable[[], bool] | None = None
    progress: Callable[[str, int, int], None] | None = None
    on_step: Callable[[int, float], None] | None = None  # (step, loss) after each step (the app)


@dataclass(frozen=True)
class TrainingRun:
    """What N steps on one batch measured (torch-free).

    ``loss[i]`` and ``grad_norm[i]`` belong to step i + 1: the loss of its forward, the global
    gradient norm of its backward (both before its update). Per module (its own parameters):
    ``update_ratio`` is the median over steps of ||dw|| / ||w||, ``step_ratios[i]`` that ratio at
    step i + 1 (module order of ``ratio_modules``), ``distance`` is ||w_end - w_start||.
    """

    loss: tuple[float, ...]
    grad_norm: tuple[float, ...]
    loss_name: str
    steps: int
    mode: str
    seconds: float
    stopped: str = ""  # why the run ended before ``steps`` ("" when it ran them all)
    nonfinite_step: int | None = None
    nonfinite_module: str | None = None  # None: the loss itself, not a module output
    # the torch call and line that made the step's NaN/Inf (in ``nonfinite_module``, else in the loss)
    nonfinite_trace: OpTrace | None = None
    update_ratio: dict[str, float] = field(default_factory=dict)
    distance: dict[str, float] = field(default_factory=dict)
    module_grad_norm: dict[str, float] = field(default_factory=dict)  # median over steps
    ratio_modules: tuple[str, ...] = ()
    step_ratios: tuple[tuple[float, ...], ...] = ()
    end_measures: dict[str, ModuleMeasure] = field(default_factory=dict)
    zero_grad_params: tuple[str, ...] = ()  # trainable, gradient zero (or none) at every step
    unchanged_params: tuple[str, ...] = ()  # trainable, exactly as at the start after the run
    bn_drift: dict[str, float] = field(default_factory=dict)  # frozen BN in train mode -> change
    start_norm: dict[str, float] = field(default_factory=dict)  # ||w|| of its own trainable params
    final_loss: float | None = None  # after the last update, with step 1's dropout masks
    # the first step whose loss was finite but some gradient was not (the run stopped before its
    # update), the modules whose own parameters got NaN/Inf, and where backward made them
    nonfinite_grad_step: int | None = None
    nonfinite_grad_modules: tuple[str, ...] = ()
    grad_origin: GradOrigin | None = None
    target_range: tuple[float, float] | None = None  # the loss's regression target, min and max

    @property
    def steps_run(self) -> int:
        return len(self.loss)


def frozen_batchnorm_in_train(tree: ModelWalk, mode: str) -> list[str]:
    """BatchNorm layers whose parameters are all frozen but that run in train mode (their running
    statistics move with every forward), when some other parameter trains."""
    if not any(p.requires_grad for _, p in tree.params):
        return []
    out = []
    for path, m in tree.modules:
        if not isinstance(m, nn.modules.batchnorm._BatchNorm) or not m.track_running_stats:
            continue
        params = [p for p in m._parameters.values() if p is not None]
        training = m.training if mode == "own" else mode == "train"
        if params and training and not any(p.requires_grad for p in params) and m.running_mean is not None:
            out.append(path)
    return out


def _owner(name: str) -> str:
    return name.rsplit(".", 1)[0] if "." in name else ""


def _running(m: nn.Module) -> torch.Tensor:
    return torch.cat([m.running_mean.detach().float().flatten(), m.running_var.detach().float().flatten()])


def train_steps(model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any],
                options: TrainingOptions, tree: ModelWalk | None = None) -> TrainingRun:
    """Train ``model`` ``options.steps`` steps on one batch and measure every layer; the model
    comes out exactly as it went in (also on error, cancellation or Ctrl-C).

    Raises:
        InspectrError: nothing can be trained (no trainable parameter, no loss), or the user's
            loss_fn failed.
        ProbeCancelled: ``options.cancelled()`` turned true between steps.
    """
    tree = tree or walk(model)
    trainable = [(n, p) for n, p in tree.params if p.requires_grad]
    if not trainable:
        raise InspectrError(
            f"{type(model).__name__} has no trainable parameters: every one has requires_grad=False.",
            "Unfreeze some layers (--unfreeze GLOB) to train them.",
        )
    if any(p.is_meta for _, p in tree.params):
        raise InspectrError("The model lives on the meta device (too large for this machine's memory, or "
                            "--device meta): it has no values to train.",
                            "Train a smaller configuration, or drop --steps for the shape-only report.")
    # the optimizer changes parameters in place: ``preserved`` copies them back from these
    backups = {id(p): (p, p.detach().clone()) for _, p in tree.params}
    with preserved(model, None, backups, tree):
        return _train(model, args, kwargs, options, tree, trainable, backups)


def _train(model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], opts: TrainingOptions,
           tree: ModelWalk, trainable: list[tuple[str, nn.Parameter]],
           backups: dict[int, tuple[torch.Tensor, torch.Tensor]]) -> TrainingRun:
    start = time.perf_counter()
    if opts.mode == "train":
        model.train()
    elif opts.mode == "eval":
        model.eval()
    mode_name = "train" if model.training else "eval"
    bn_paths = frozen_batchnorm_in_train(tree, "own")
    modules = dict(tree.modules)
    bn_start = {p: _running(modules[p]) for p in bn_paths}
    params = [p for _, p in trainable]
    names = [n for n, _ in trainable]
    owners = list(dict.fromkeys(_owner(n) for n in names))
    slot = {o: i for i, o in enumerate(owners)}
    owner_index = torch.tensor([slot[_owner(n)] for n in names], dtype=torch.long)
    optimizer = opts.optimizer.build(params)
    objective: Objective | None = None
    losses: list[float] = []
    grad_rows: list[torch.Tensor] = []  # per step: gradient norm of every trainable parameter
    delta_rows: list[torch.Tensor] = []  # per step: ||dw|| of every trainable parameter
    weight_rows: list[torch.Tensor] = []  # per step: ||w|| before the update
    stopped = ""
    nonfinite_step: int | None = None
    nonfinite_module: str | None = None
    nonfinite_trace: OpTrace | None = None
    grad_step: int | None = None
    grad_origin: GradOrigin | None = None
    end_measures: dict[str, ModuleMeasure] = {}
    device = params[0].device
    n = len(params)
    for step in range(opts.steps):
        if opts.cancelled is not None and opts.cancelled():
            raise ProbeCancelled()
        if opts.progress is not None:
            opts.progress(f"training: step {step + 1} of {opts.steps}", 0, 0)
        seed = opts.seed + step
        _seed(seed, device)
        random.seed(seed)
        output = model(*args, **kwargs)
        if objective is None:
            objective = objective_for(output, opts.loss_fn, opts.target, opts.seed, opts.target_given)
        loss = _compute(objective, output)
        del output
        value = float(loss.detach())
        losses.append(value)
        if not math.isfinite(value):
            nonfinite_step = step + 1
            nonfinite_module, nonfinite_trace = _replay_culprit(model, args, kwargs, opts, seed, tree)
            if nonfinite_module is None and objective is not None:  # the loss made it: trace the loss's calls
                nonfinite_trace = _replay_loss_ops(model, args, kwargs, objective, seed, device, tree)
            stopped = f"the loss turned {'NaN' if math.isnan(value) else 'Inf'} at step {step + 1}"
            grad_rows.append(torch.full((n,), math.nan, device=device))
            break
        loss.backward()
        del loss
        present = [i for i, p in enumerate(params) if p.grad is not None]
        g = torch.zeros(n, device=device)
        if present:
            norms = torch._foreach_norm([params[i].grad for i in present])
            g[torch.tensor(present, device=device)] = torch.stack([x.float().to(device) for x in norms])
        grad_rows.append(g)
        if not bool(torch.isfinite(g).all()):  # one sync, on a vector of norms
            grad_step = step + 1
            grad_origin = _replay_grad_origin(model, args, kwargs, objective, seed, device, tree, params)
            bad = "NaN" if bool(torch.isnan(g).any()) else "Inf"
            stopped = f"the gradients turned {bad} at step {step + 1} (the loss was finite)"
            break
        before = [p.detach().clone() for p in params]
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        weight_rows.append(torch.stack([x.float() for x in torch._foreach_norm(before)]))
        torch._foreach_sub_(before, [p.detach() for p in params])
        delta_rows.append(torch.stack([x.float() for x in torch._foreach_norm(before)]))
        del before
        if opts.on_step is not None:
            opts.on_step(step + 1, value)
    if objective is None:  # zero steps cannot happen (steps >= 1); keeps the types honest
        raise InspectrError("No training step ran.", "Use --steps 1 or more.")
    final_loss: float | None = None
    if not stopped:
        final_loss, end_measures = _final_forward(model, args, kwargs, objective, opts.seed, device, tree)
    run = _summarise(opts, tree, names, owners, owner_index, losses, grad_rows, delta_rows, weight_rows,
                     backups, params, objective.name, mode_name, start, stopped, nonfinite_step,
                     nonfinite_module, end_measures, {p: _running(modules[p]) for p in bn_paths}, bn_start)
    bad = ()
    if grad_step is not None:
        per_owner = torch.zeros(len(owners), dtype=torch.float64).index_add_(
            0, owner_index, grad_rows[-1].double().cpu().square())
        bad = tuple(o for o, v in zip(owners, per_owner.tolist()) if not math.isfinite(v))
    return replace(run, final_loss=final_loss, nonfinite_grad_step=grad_step, nonfinite_grad_modules=bad,
                   grad_origin=grad_origin, target_range=objective.target_range, nonfinite_trace=nonfinite_trace)


def _final_forward(model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], objective: Objective,
                   seed: int, device: torch.device, tree: ModelWalk) -> tuple[float, dict[str, ModuleMeasure]]:
    """One forward after the last update, with step 1's seed (the same dropout masks: the loss
    compares with step 1's without sampling noise), under the probe's hooks: dead units at the end."""
    hooks = ModuleHooks(list(tree.modules), list(tree.params), ProbeOptions(backward=False, flops=False))
    hooks.record_grads = False
    _seed(seed, device)
    random.seed(seed)
    hooks.install()
    try:
        # with autograd on, as in the steps: the loss picks the outputs that have a gradient path
        with FunctionalWatch(hooks):
            output = model(*args, **kwargs)
        hooks.flush()
        value = float(_compute(objective, output).detach())
        del output
    finally:
        hooks.remove()
    return value, hooks.measures()


def _seed(seed: int, device: torch.device) -> None:
    """What ``torch.manual_seed`` does for the generators this run uses (it also walks every other
    device's, 4 ms a step); the replay's ``torch.manual_seed`` then draws the same numbers."""
    torch.default_generator.manual_seed(seed)
    if device.type == "cuda":
        torch.cuda.manual_seed(seed)


def _compute(objective: Objective, output: Any) -> torch.Tensor:
    try:
        return objective.compute(output)
    except (InspectrError, KeyboardInterrupt, ProbeCancelled):
        raise
    except Exception as exc:
        raise InspectrError(
            f"Computing the loss ({objective.name}) raised {type(exc).__name__}: {exc}.",
            "Fix loss_fn / example_target, or leave them out to let inspectr infer the loss.",
        ) from exc


def _replay_culprit(model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any],
                    opts: TrainingOptions, seed: int, tree: ModelWalk) -> tuple[str | None, OpTrace | None]:
    """Replay one step's forward (same parameters, same seed) under the probe: the first module
    whose output is non-finite while its inputs were finite (None: the loss made it), and the
    torch call inside it that made the value."""
    result = run_probe(model, args, kwargs, ProbeOptions(backward=False, mode="own", seed=seed, flops=False),
                       None, tree)
    return nonfinite_culprit(result.measures), result.op_trace


def _replay_loss_ops(model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], objective: Objective,
                     seed: int, device: torch.device, tree: ModelWalk) -> OpTrace | None:
    """Replay one step's forward and loss (autograd on, as in the step: a loss_fn may check it) under
    ``OpTracer``: the first torch call that made a NaN/Inf, when every module output stayed finite."""
    tracer = OpTracer(list(tree.modules), [p for _, p in tree.params], check=True)
    try:
        with preserved(model, [], tracer.guard.backups, tree), torch.enable_grad():
            _seed(seed, device)
            random.seed(seed)
            with tracer.watching():
                _compute(objective, model(*args, **kwargs))
        return tracer.result()
    except (KeyboardInterrupt, ProbeCancelled):
        raise
    except Exception:  # the step itself ran: a replay that cannot is no new finding
        return None


def _replay_grad_origin(model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], objective: Objective,
                        seed: int, device: torch.device, tree: ModelWalk,
                        params: list[nn.Parameter]) -> GradOrigin | None:
    """Replay one step's forward, loss and backward (same parameters, same seed) under
    ``GradOriginTracer``: the op whose backward first turned finite gradients into NaN/Inf
    (None when the replay could not tell). The loss is traced too: a NaN may be born there."""
    for p in params:
        p.grad = None
    tracer = GradOriginTracer(list(tree.modules), [])
    try:
        _seed(seed, device)
        random.seed(seed)
        with tracer.watching():
            output = model(*args, **kwargs)
            loss = _compute(objective, output)
        del output
        loss.backward()
        del loss
    except (KeyboardInterrupt, ProbeCancelled):
        tracer.close()
        raise
    except Exception:  # the step itself ran: a replay that cannot is no new finding
        tracer.close()
        return None
    return tracer.close()


def _median(x: torch.Tensor) -> list[float]:
    """Median over steps (dim 0), ignoring NaN (steps where it is undefined)."""
    return torch.nanmedian(x, dim=0).values.tolist() if x.shape[0] else []


def _summarise(opts: TrainingOptions, tree: ModelWalk, names: list[str], owners: list[str],
               owner_index: torch.Tensor, losses: list[float], grad_rows: list[torch.Tensor],
               delta_rows: list[torch.Tensor], weight_rows: list[torch.Tensor],
               backups: dict[int, tuple[torch.Tensor, torch.Tensor]], params: list[nn.Parameter],
               loss_name: str, mode_name: str, start: float, stopped: str, nonfinite_step: int | None,
               nonfinite_module: str | None, end_measures: dict[str, ModuleMeasure],
               bn_end: dict[str, torch.Tensor], bn_start: dict[str, torch.Tensor]) -> TrainingRun:
    m = len(owners)
    grads = torch.stack(grad_rows).double().cpu() if grad_rows else torch.zeros(0, len(names), dtype=torch.float64)
    per_step_grad = grads.square().sum(1).sqrt().tolist()

    def by_module(rows: torch.Tensor) -> torch.Tensor:
        """[S, P] parameter norms -> [S, M] module norms (own parameters)."""
        out = torch.zeros(rows.shape[0], m, dtype=torch.float64)
        return out.index_add_(1, owner_index, rows.square()).sqrt()

    update_ratio: dict[str, float] = {}
    step_ratios: tuple[tuple[float, ...], ...] = ()
    if delta_rows:
        deltas = by_module(torch.stack(delta_rows).double().cpu())
        weights = by_module(torch.stack(weight_rows).double().cpu())
        ratios = torch.where(weights > 0, deltas / weights.clamp_min(1e-300), torch.full_like(deltas, math.nan))
        step_ratios = tuple(tuple(r) for r in ratios.tolist())
        for path, v in zip(owners, _median(ratios)):
            if math.isfinite(v):
                update_ratio[path] = v
    init_p = torch.stack([x.double().cpu() for x in torch._foreach_norm([backups[id(p)][1] for p in params])])
    start_norm = dict(zip(owners, by_module(init_p.unsqueeze(0))[0].tolist()))
    module_grad: dict[str, float] = {}
    finite = grads[torch.isfinite(grads).all(1)]
    if finite.shape[0]:
        for path, v in zip(owners, _median(by_module(finite))):
            module_grad[path] = v
    now = [p.detach() for p in params]
    init = [backups[id(p)][1] for p in params]
    diffs = torch._foreach_sub(now, init)
    dist_p = torch.stack([x.double().cpu() for x in torch._foreach_norm(diffs)]) if diffs else torch.zeros(0)
    del diffs
    distance = dict(zip(owners, by_module(dist_p.unsqueeze(0))[0].tolist()))
    zero_grad: list[str] = []
    if finite.shape[0]:
        never = (finite.abs().amax(0) == 0).tolist()
        zero_grad = [n for n, z in zip(names, never) if z]
    unchanged = [n for n, d in zip(names, dist_p.tolist()) if d == 0.0] if not stopped else []
    drift = {}
    for path, end in bn_end.items():
        s0 = bn_start[path]
        drift[path] = float((end - s0).norm() / s0.norm().clamp_min(1e-12))
    return TrainingRun(
        loss=tuple(losses),
        grad_norm=tuple(per_step_grad),
        loss_name=loss_name,
        steps=opts.steps,
        mode=mode_name,
        seconds=time.perf_counter() - start,
        stopped=stopped,
        nonfinite_step=nonfinite_step,
        nonfinite_module=nonfinite_module,
        update_ratio=update_ratio,
        distance=distance,
        module_grad_norm=module_grad,
        ratio_modules=tuple(owners),
        step_ratios=step_ratios,
        end_measures=end_measures,
        zero_grad_params=tuple(zero_grad),
        unchanged_params=tuple(unchanged),
        bn_drift=drift,
        start_norm=start_norm,
    )
