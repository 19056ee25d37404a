"""Provides ``inspect``: spec or model -> structure -> probe -> findings -> ``Report``."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn

from inspectr.core import inputs as inputs_mod
from inspectr.core.findings.rules import SEVERITY_ORDER, find_problems
from inspectr.core.findings.training import end_dead_fraction, frozen_batchnorm, training_problems
from inspectr.core.inspection import Report
from inspectr.core.memory.estimate import batch_size_of, parse_size
from inspectr.core.memory.plan import MemoryRequest, plan_memory
from inspectr.core.optim import DTYPE_CHOICES, OptimizerChoice, choose_optimizer
from inspectr.core.probe.options import ProbeOptions
from inspectr.core.probe.run import run_probe
from inspectr.core.result import ModuleRow, ProbeInfo, TrainingInfo, fast_new
from inspectr.core.sources.base import Inputs, LoadedModel, cast_floats, move_to, param_float_dtype
from inspectr.core.sources.hub import config_inputs
from inspectr.core.sources.loader import load
from inspectr.core.sources.quantized import packed_note
from inspectr.core.state import gc_paused, preserved
from inspectr.core.summary import summarize
from inspectr.core.training.loss import call_target_hook, find_hook
from inspectr.core.training.steps import (
    DEFAULT_STEPS,
    TrainingOptions,
    TrainingRun,
    frozen_batchnorm_in_train,
    train_steps,
)
from inspectr.core.walk import copies_on, first_device, walk
from inspectr.errors import InspectrError

MODES = ("own", "train", "eval")


def resolve_device(device: str | None) -> str:
    """``auto`` -> cuda if available, else mps, else cpu; validates explicit devices."""
    d = (device or "cpu").strip().lower()
    if d == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if d.startswith("cuda"):
        if not torch.cuda.is_available():
            raise InspectrError(f"--device {d}: CUDA is not available on this machine.", "Use --device cpu (or auto).")
        if ":" in d:
            try:
                idx = int(d.split(":", 1)[1])
            except ValueError:
                raise InspectrError(f"--device {d} is not a device name.", "Use cuda or cuda:N.") from None
            if idx >= torch.cuda.device_count():
                raise InspectrError(f"--device {d}: there are only {torch.cuda.device_count()} CUDA devices.", "Use cuda:0 … or auto.")
        return d
    if d == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise InspectrError("--device mps: MPS is not available on this machine.", "Use --device cpu (or auto).")
        return d
    if d in ("cpu", "meta"):
        return d
    raise InspectrError(f"--device {device!r} is not a device inspectr knows.", "Use cpu, cuda, cuda:N, mps, meta or auto.")


def compiled_original(model: nn.Module) -> nn.Module | None:
    """The module a ``torch.compile`` wrapper holds, or None (checked without importing dynamo)."""
    inner = getattr(model, "_orig_mod", None)
    if type(model).__name__ == "OptimizedModule" and isinstance(inner, nn.Module):
        return inner
    return None


def parse_kwargs(text: str | dict[str, Any] | None) -> dict[str, Any]:
    """``--kwargs`` JSON (never eval) -> dict."""
    if text is None or text == "":
        return {}
    if isinstance(text, dict):
        return dict(text)
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InspectrError(
            f"--kwargs is not valid JSON ({exc.msg} at column {exc.colno}): {text!r}.",
            'Write a JSON object with double quotes, e.g. --kwargs \'{"num_classes": 10}\'.',
        ) from None
    if not isinstance(value, dict):
        raise InspectrError(f"--kwargs must be a JSON object, got {type(value).__name__}.", 'E.g. --kwargs \'{"num_classes": 10}\'.')
    return value


def pick_inputs(
    loaded: LoadedModel,
    inputs: Any,
    input_specs: list[Any] | None,
    batch_size: int | None,
    device: str,
) -> tuple[Inputs, str | None]:
    """Choose probe inputs in the documented order; returns (inputs, forced mode or None)."""
    model = loaded.model
    b = batch_size or inputs_mod.DEFAULT_BATCH
    if input_specs:
        specs = [s if isinstance(s, inputs_mod.InputSpec) else inputs_mod.parse_input_spec(s) for s in input_specs]
        return inputs_mod.from_specs(specs), None
    if inputs is not None:
        return inputs_mod.normalize(inputs, "inputs="), None
    try:
        hooked = inputs_mod.from_model_hook(model, b)
    except Exception as exc:
        raise InspectrError(
            f"{type(model).__name__}.example_input() raised {type(exc).__name__}: {exc}.",
            "Fix example_input, or pass --input to bypass it.",
        ) from exc
    if hooked is not None:
        return hooked, None
    fm = loaded.file_module
    if fm is not None and callable(getattr(fm, "example_input", None)):
        try:
            value = inputs_mod.call_example_input(fm.example_input, b)
        except Exception as exc:
            raise InspectrError(
                f"example_input() in {loaded.name.rsplit(':', 1)[0]} raised {type(exc).__name__}: {exc}.",
                "Fix it, or pass --input to bypass it.",
            ) from exc
        return inputs_mod.normalize(value, "example_input() in the model file"), None
    if loaded.example is not None:
        return loaded.example(b), None
    if loaded.source == "torchvision" and loaded.registry_family:
        inp, forced = inputs_mod.torchvision_inputs(loaded.name, loaded.registry_family, batch_size)
        return cast_floats(inp, param_float_dtype(model)), forced
    from_config = config_inputs(model, batch_size, loaded.on_meta or device == "meta")  # Hugging Face, timm
    if from_config is not None:
        return from_config, None
    return guess_inputs(model, b, device, loaded.on_meta), None


def guess_inputs(model: nn.Module, batch_size: int, device: str, on_meta: bool) -> Inputs:
    """Guess from the first layer; several candidate sizes are tried with a quiet forward."""
    required = inputs_mod.required_positional(model)
    if inputs_mod.required_keyword_only(model):
        raise inputs_mod.no_input_error(model, "its forward has keyword-only arguments")
    cands, label = inputs_mod.guess_candidates(model, batch_size)
    dtype = param_float_dtype(model)
    cands = [cast_floats(c, dtype) for c in cands]
    if not cands:
        raise inputs_mod.no_input_error(model, "no first layer inspectr can read a shape from")
    if len(required) > len(cands[0].args):
        raise inputs_mod.no_input_error(model, f"the {label} gives one input, the forward needs {len(required)}")
    if len(cands) == 1:
        return cands[0]
    with preserved(model), torch.no_grad():
        for cand in cands:
            try:
                c = cand.to("meta") if on_meta else cand
                model(*c.args, **c.kwargs)
                return replace(cand, source=f"{cand.source} (guessed; pass --input to override)")
            except Exception:
                continue
    return replace(cands[0], source=f"{cands[0].source} (guessed; no size ran; pass --input)")


def inspect(
    model_or_spec: Any,
    inputs: Any = None,
    *,
    input_specs: list[Any] | None = None,
    kwargs: str | dict[str, Any] | None = None,
    weights: str | None = None,
    pretrained: bool = False,
    trust_pickle: bool = False,
    device: str | None = "cpu",
    batch_size: int | None = None,
    mode: str = "own",
    seed: int = 0,
    backward: bool = True,
    flops: bool = True,
    timing: bool = False,
    histograms: bool = False,
    probe: bool = True,
    freeze: list[str] | None = None,
    unfreeze: list[str] | None = None,
    freeze_plan: str | None = None,
    cancelled: Callable[[], bool] | None = None,
    loaded: LoadedModel | None = None,
    progress: Callable[[str, int, int], None] | None = None,
    optimizer: str | OptimizerChoice | None = None,
    lr: float | None = None,
    momentum: float | None = None,
    dtype: str | None = None,
    fit: int | str | None = None,
    steps: int | bool | None = None,
    loss_fn: Callable[..., Any] | None = None,
    target: Any = None,
    on_step: Callable[[int, int, float], None] | None = None,
) -> Report:
    """See ``inspectr.inspect``. ``loaded`` lets the app reuse a model it already built.

    ``steps``: train that many steps on the probe batch after the probe (True: the model's
    ``example_training["steps"]``, else ``DEFAULT_STEPS``); ``loss_fn``/``target`` as in
    ``inspectr.core.training.loss``; ``on_step(step, steps, loss)`` is told after each step (the app).
    """
    if mode not in MODES:
        raise InspectrError(f"mode {mode!r} is not one of {', '.join(MODES)}.", "Use --train or --eval, or leave the model's own mode.")
    if not 0 <= seed < 2**63:
        raise InspectrError(f"--seed {seed} is out of range.", "Use an integer from 0 to 2**63 - 1.")
    if batch_size is not None and batch_size < 1:
        raise InspectrError(f"--batch-size {batch_size} must be at least 1.", "Use --batch-size 4, for example.")
    dev = resolve_device(device)
    opt = choose_optimizer(optimizer, lr, momentum)
    if dtype is not None and dtype not in DTYPE_CHOICES:
        raise InspectrError(f"--dtype {dtype!r} is not one inspectr estimates.", f"Use one of {', '.join(DTYPE_CHOICES)}.")
    fit_bytes = parse_size(fit) if fit is not None else None
    train = None
    if steps is not None and steps is not False:
        if steps is not True and (not isinstance(steps, int) or steps < 1):
            raise InspectrError(f"--steps {steps} must be a whole number of at least 1.", "Use --steps 20, for example.")
        if not backward:
            raise InspectrError("--steps trains the model, which needs the backward pass that --no-backward turns off.",
                                "Drop --no-backward (or --steps).")
        if not probe:
            raise InspectrError("--steps trains after the probe, which --no-probe turns off.", "Drop --no-probe (or --steps).")
        if loss_fn is not None and not callable(loss_fn):
            raise InspectrError(f"loss_fn must be callable, not {type(loss_fn).__name__}.",
                                "Pass a function loss_fn(output, target) -> scalar tensor.")
        train = TrainRequest(None if steps is True else int(steps), optimizer, lr, momentum, loss_fn, target,
                             on_step)
    if loaded is None:
        from inspectr.core.sources.archives import from_object

        archived = from_object(model_or_spec)  # an ExportedProgram or a ScriptModule
        if archived is not None and (kwargs or weights):
            raise InspectrError("kwargs/weights apply to specs, not to a model object.", "Build the model yourself and pass it.")
        if archived is not None:
            loaded = archived
        elif isinstance(model_or_spec, nn.Module):
            loaded = LoadedModel(model_or_spec, type(model_or_spec).__name__, "object")
            if kwargs or weights or pretrained:
                raise InspectrError("kwargs/weights/pretrained apply to specs, not to a model object.", "Build the model yourself and pass it.")
        elif isinstance(model_or_spec, str):
            if progress is not None:
                progress("loading the model", 0, 0)
            loaded = load(model_or_spec, parse_kwargs(kwargs), weights, trust_pickle, dev, seed, pretrained=pretrained)
        else:
            raise InspectrError(f"inspect() takes an nn.Module, a ScriptModule, an ExportedProgram or a spec string, "
                                f"not {type(model_or_spec).__name__}.", "Pass the model, or a spec such as 'resnet18'.")
    model = loaded.model
    freezing = bool(freeze or unfreeze or freeze_plan)
    # a caller's model: the freeze applies to this report only (nothing else sets requires_grad)
    flags = [(p, p.requires_grad) for p in model.parameters()] if freezing and loaded.source == "object" else []
    try:
        if freezing:
            from inspectr.core.freeze import apply_globs, apply_plan, load_plan

            if freeze_plan:
                apply_plan(model, load_plan(freeze_plan))
            apply_globs(model, freeze or [], unfreeze or [])
        with gc_paused():
            return _inspect_loaded(loaded, dev, inputs, input_specs, batch_size, mode, seed, backward,
                                   flops, timing, histograms, probe, cancelled, progress,
                                   MemoryRequest(opt, dtype, fit_bytes), opt, train)
    finally:
        for p, flag in flags:
            if p.requires_grad != flag:
                p.requires_grad_(flag)


def _inspect_loaded(loaded: LoadedModel, dev: str, inputs: Any, input_specs: list[Any] | None,
                    batch_size: int | None, mode: str, seed: int, backward: bool, flops: bool,
                    timing: bool, histograms: bool, probe: bool,
                    cancelled: Callable[[], bool] | None,
                    progress: Callable[[str, int, int], None] | None = None,
                    memory: MemoryRequest | None = None, opt: OptimizerChoice | None = None,
                    train: TrainRequest | None = None) -> Report:
    notes = list(loaded.notes)
    model = loaded.model
    original = compiled_original(model)
    if original is not None:
        # the probe runs the module itself: a compiled wrapper would trace inspectr's hooks
        model = loaded.model = original
        if loaded.name == "OptimizedModule":
            loaded.name = type(original).__name__
        notes.append("a torch.compile wrapper: inspected the original module, run eagerly")
    tree = walk(model)
    lazy_kind = nn.modules.lazy.LazyModuleMixin
    lazy = [p for p, m in tree.modules if isinstance(m, lazy_kind) and m.has_uninitialized_params()]
    picked = None
    if lazy:
        picked = _pick(loaded, inputs, input_specs, batch_size, dev, seed, lazy)
        model = _materialized(model, picked[0], lazy)
        tree = walk(model)
        notes.append(f"lazy modules ({', '.join(lazy[:3])}{', …' if len(lazy) > 3 else ''}) materialized on a "
                     "copy by one forward with the probe inputs; your model stays lazy")
    own_device = first_device(tree)
    if own_device.type == "meta" and dev != "meta":
        loaded.on_meta = True  # a model built on meta can only be probed for shapes
    if not probe:
        structure = summarize(model, loaded.name, loaded.source, loaded.description, tree)
        packed = packed_note(structure.rows) if structure.packed_names else None
        info = ProbeInfo(ok=True, error=None, ran=False, mode="n/a", device=dev, backward="off",
                         notes=tuple(notes + [packed] if packed else notes))
        return Report(structure.model, (), structure.rows, (), info)
    shape_only = loaded.on_meta or dev == "meta"
    if shape_only and train is not None:
        raise InspectrError(
            f"--steps needs real values, and {loaded.name} is probed on the meta device "
            f"({'--device meta' if dev == 'meta' else 'too large for this machine: built without memory'}).",
            "Drop --steps for the shape-only report, or train a smaller configuration.",
        )
    inp, forced_mode = picked or _pick(loaded, inputs, input_specs, batch_size, dev, seed)
    if forced_mode and mode == "own":
        mode = forced_mode
        notes.append(f"probed in {forced_mode} mode: this model family needs it without targets")
    probe_dev = "meta" if shape_only else dev
    param_map = None
    if torch.device(probe_dev) != own_device and not (probe_dev == "cuda" and own_device.type == "cuda"):
        # probe on copies: the user's model is never moved
        param_map = copies_on(model, probe_dev)
    run_inputs = inp.to(probe_dev)
    opts = ProbeOptions(backward=backward, mode=mode, seed=seed, flops=flops, timing=timing,
                        histograms=histograms, cancelled=cancelled, progress=progress)
    result = run_probe(model, run_inputs.args, run_inputs.kwargs, opts, param_map, tree)
    if shape_only:
        notes.append("shape-only probe on meta tensors: exact counts, shapes and FLOPs; no statistics")
    if result.backward_note:
        notes.append(f"backward skipped: {result.backward_note}" if result.backward == "skipped" else result.backward_note)
    if progress is not None:
        progress("summary and findings", 0, 0)
    structure = summarize(model, loaded.name, loaded.source, loaded.description, tree, result)
    rows = structure.rows
    packed = packed_note(rows) if structure.packed_names else None
    if packed:
        notes.append(packed)
    findings = find_problems(rows, result)  # sorted
    probe_findings = len(findings)
    training = None
    bn_paths = frozen_batchnorm_in_train(tree, mode) if not shape_only else []
    if train is not None:
        if result.backward != "ran":
            why = result.backward_note or "the backward pass did not run"
            notes.append(f"training skipped: {why}" if result.error is None else
                         f"training skipped: the probe's {result.error.phase} pass failed")
        else:
            run, training = _train(loaded, model, tree, run_inputs, param_map, probe_dev, mode, seed, opt, train,
                                   cancelled, progress)
            rows = _with_training(rows, run)
            found = training_problems(rows, run, result.unused_params)
            if any(f.kind == "nonfinite_grad" for f in findings):  # the probe's step-0 finding says it already
                found = [f for f in found if f.kind != "nonfinite_grad"]
            findings += found
            if run.stopped and run.nonfinite_step is None:
                notes.append(f"training stopped: {run.stopped}")
            findings += frozen_batchnorm(rows, bn_paths, run.bn_drift, run.steps_run)
            bn_paths = []
    if bn_paths:
        findings += frozen_batchnorm(rows, bn_paths)
    if len(findings) > probe_findings:
        order = _order(rows)
        findings.sort(key=lambda f: (SEVERITY_ORDER.get(f.severity, 3), order.get(f.module, 10**9)))
    info = ProbeInfo(
        ok=result.error is None,
        error=result.error,
        mode=result.mode,
        device=probe_dev,
        shape_only=shape_only,
        backward=result.backward,
        backward_note=result.backward_note,
        seconds=result.seconds,
        batch_size=batch_size or _batch_of(run_inputs),
        notes=tuple(notes),
    )
    estimate = None
    if result.error is None:
        request = memory or MemoryRequest()
        if progress is not None and (request.fit is not None or request.dtype in ("bf16", "fp16")):
            progress("memory: counting at other batch sizes" if request.fit else "memory: counting under autocast", 0, 0)
        estimate = plan_memory(model, tree, rows, structure.model, run_inputs, info.batch_size,
                               result.mode == "train", result.saved_counted, request,
                               "meta" if shape_only else probe_dev, param_map)
    return Report(structure.model, inp.describe(), rows, tuple(findings), info, estimate, training)


@dataclass(frozen=True)
class TrainRequest:
    """What the caller asked of a training run; None: the model's ``example_training``, else the default."""

    steps: int | None
    optimizer: str | OptimizerChoice | None
    lr: float | None
    momentum: float | None
    loss_fn: Callable[..., Any] | None
    target: Any
    on_step: Callable[[int, int, float], None] | None = None


TRAINING_KEYS = ("steps", "optimizer", "lr", "momentum")


def training_defaults(loaded: LoadedModel) -> dict[str, Any]:
    """A model's ``example_training`` (attribute or method on the model, or in its file), checked."""
    hook = find_hook(loaded.model, loaded.file_module, "example_training")
    if hook is None:
        return {}
    value = hook() if callable(hook) else hook
    if not isinstance(value, dict) or set(value) - set(TRAINING_KEYS):
        raise InspectrError(
            f"example_training of {loaded.name} must be a dict with keys from {', '.join(TRAINING_KEYS)}, got {value!r}.",
            'E.g. example_training = {"lr": 0.5, "steps": 20}.',
        )
    return dict(value)


def _train(loaded: LoadedModel, model: nn.Module, tree: Any, run_inputs: Inputs,
           param_map: dict[str, torch.Tensor] | None, probe_dev: str, mode: str, seed: int,
           opt: OptimizerChoice | None, req: TrainRequest, cancelled: Callable[[], bool] | None,
           progress: Callable[[str, int, int], None] | None) -> tuple[TrainingRun, TrainingInfo]:
    """Train after the probe: on the model itself (restored after), or on a copy on the probe device."""
    defaults = training_defaults(loaded)
    steps = req.steps or defaults.get("steps") or DEFAULT_STEPS
    if not isinstance(steps, int) or steps < 1:
        raise InspectrError(f"example_training steps {steps!r} must be a whole number of at least 1.", "E.g. 20.")
    if isinstance(req.optimizer, OptimizerChoice):
        choice = req.optimizer
    else:
        choice = choose_optimizer(req.optimizer or defaults.get("optimizer"),
                                  req.lr if req.lr is not None else defaults.get("lr"),
                                  req.momentum if req.momentum is not None else defaults.get("momentum"))
    loss_fn = req.loss_fn or find_hook(loaded.model, loaded.file_module, "loss_fn")
    target, given = req.target, req.target is not None
    if not given:
        hook = find_hook(loaded.model, loaded.file_module, "example_target")
        if hook is not None:
            try:
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(seed)
                    target = call_target_hook(hook, _batch_of(run_inputs))
            except Exception as exc:
                raise InspectrError(f"example_target() of {loaded.name} raised {type(exc).__name__}: {exc}.",
                                    "Fix it, or pass target= (Python API).") from exc
            given = target is not None
    if given:
        target = move_to(target, probe_dev)
    trained = model
    if param_map is not None:  # the probe ran on copies on another device: train a copy there
        import copy

        trained = copy.deepcopy(model).to(probe_dev)
        tree = walk(trained)
    told = req.on_step
    options = TrainingOptions(steps=steps, optimizer=choice, mode=mode, seed=seed, loss_fn=loss_fn,
                              target=target, target_given=given, cancelled=cancelled, progress=progress,
                              on_step=None if told is None else lambda k, loss: told(k, steps, loss))
    run = train_steps(trained, run_inputs.args, run_inputs.kwargs, options, tree)
    info = TrainingInfo(
        steps=steps, loss=run.loss, grad_norm=run.grad_norm, loss_name=run.loss_name, optimizer=choice.name,
        optimizer_label=choice.label, lr=choice.lr, momentum=choice.momentum, mode=run.mode,
        seconds=run.seconds, stopped=run.stopped, nonfinite_step=run.nonfinite_step,
        nonfinite_module=run.nonfinite_module, ratio_modules=run.ratio_modules, step_ratios=run.step_ratios,
        nonfinite_grad_step=run.nonfinite_grad_step,
        nonfinite_grad_module=run.grad_origin.module if run.grad_origin is not None else None,
        target_range=run.target_range,
    )
    return run, info


def _with_training(rows: tuple[ModuleRow, ...], run: TrainingRun) -> tuple[ModuleRow, ...]:
    out = []
    for r in rows:
        values = dict(update_ratio=run.update_ratio.get(r.path), distance_from_init=run.distance.get(r.path),
                      train_grad_norm=run.module_grad_norm.get(r.path),
                      end_dead_fraction=end_dead_fraction(run, r.path))
        out.append(fast_new(ModuleRow, **{**r.__dict__, **values}))
    return tuple(out)


def _order(rows: tuple[ModuleRow, ...]) -> dict[str, int]:
    return {r.path: (r.order if r.order is not None else 10**9) for r in rows}


def _pick(loaded: LoadedModel, inputs: Any, input_specs: list[Any] | None, batch_size: int | None,
          dev: str, seed: int, lazy: list[str] | None = None) -> tuple[Inputs, str | None]:
    """``pick_inputs`` with the seed, leaving the user's RNG stream where it was. With ``lazy``
    modules only an input the user gave counts: a first layer of unknown size guesses nothing."""
    fm = loaded.file_module
    if lazy and not (input_specs or inputs is not None or hasattr(loaded.model, "example_input")
                     or (fm is not None and hasattr(fm, "example_input"))):
        raise InspectrError(
            f"{type(loaded.model).__name__} has lazy modules that are not initialised yet "
            f"({', '.join(lazy[:3])}): their sizes come from a first forward, and inspectr has no "
            "input to run one with.",
            "Give one with --input (or an example_input method on the model); your model stays lazy.",
        )
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)  # fork_rng keeps only the CPU's: seed only it
        return pick_inputs(loaded, inputs, input_specs, batch_size, dev)


def _materialized(model: nn.Module, inp: Inputs, lazy: list[str]) -> nn.Module:
    """A copy of a model with lazy modules, initialised by one forward on ``inp``."""
    import copy

    twin = copy.deepcopy(model)
    try:
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            twin(*inp.args, **inp.kwargs)
    except Exception as exc:
        raise InspectrError(
            f"The forward that sizes the lazy modules ({', '.join(lazy[:3])}) failed on a copy of "
            f"{type(model).__name__}: {type(exc).__name__}: {exc}",
            "Check the input shapes (--input) against the model.",
        ) from exc
    return twin


def _batch_of(inp: Inputs) -> int | None:
    return batch_size_of((inp.args, inp.kwargs))
