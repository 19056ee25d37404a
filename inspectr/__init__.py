"""inspectr: a terminal model inspector and debugger for PyTorch.

``import inspectr`` is cheap: torch is imported only when ``inspect`` is called.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from inspectr.errors import InspectrError, TrainingProblem

__version__ = "0.1.0"
__all__ = ["InspectrError", "Report", "RunReport", "TrainingProblem", "__version__", "inspect", "load_run", "watch"]

if TYPE_CHECKING:
    from inspectr.core.inspection import Report
    from inspectr.core.runs.report import RunReport
    from inspectr.core.runs.watch import Watch


def inspect(model_or_spec: Any, inputs: Any = None, **options: Any) -> Report:
    """Inspect a model: structure, a probe forward/backward pass and findings.

    Args:
        model_or_spec: an ``nn.Module`` (never modified) or a spec string such as
            ``"resnet18"``, ``"sample:lenet"``, ``"path/model.py:MyNet"``, a Hugging Face
            folder ``"path/to/folder"`` (or ``"hf:path/to/folder"``) or ``"timm:resnet50"``.
        inputs: a Tensor (one positional argument), a tuple/list (positional arguments)
            or a dict (keyword arguments); synthesized when None.
        **options: the CLI flags: ``device``, ``batch_size``, ``mode`` ("own"/"train"/"eval"),
            ``seed``, ``backward``, ``kwargs``, ``weights``, ``pretrained``, ``input_specs``,
            ``freeze``...

    Returns:
        A frozen ``Report``; ``report.to_dict()`` is the JSON document.
    """
    from inspectr.core.inspect import inspect as _inspect

    return _inspect(model_or_spec, inputs=inputs, **options)


def watch(model: Any, optimizer: Any = None, run: str = "runs/exp1", every: int = 50,
          halt_on: str | None = None) -> Watch:
    """Watch a training run in your own loop; a context manager that records into ``run``.

    Args:
        model: the ``nn.Module`` being trained (never changed: same weights, optimizer state
            and RNG as without the watch).
        optimizer: a ``torch.optim.Optimizer``; its step hooks count the steps and read the
            gradients just before the update (after clipping and AMP unscaling). Without one,
            each ``w.log(...)`` marks the end of a step.
        run: the run folder; it holds one SQLite database (``run.sqlite``); a run already there
            is kept as ``run.1.sqlite`` (the next free number), never deleted.
        every: the sampling period in steps: per-module statistics at steps 0, every, 2*every...
        halt_on: ``"error"`` raises ``inspectr.TrainingProblem`` at the step an error finding
            appears, after the run is saved; None (default) records and lets training go on.

    Returns:
        A ``Watch``: use it as ``with inspectr.watch(...) as w:`` and call ``w.log(loss=...)``.
    """
    from inspectr.core.runs.watch import Watch

    return Watch(model, optimizer, run=run, every=every, halt_on=halt_on)


def load_run(path: Any) -> RunReport:
    """Read a run folder written by ``inspectr.watch`` (also while it is still being written).

    Returns:
        A frozen ``RunReport``; ``.to_dict()`` is the JSON document (schema ``inspectr-run/2``).
    """
    from inspectr.core.runs.report import load_run as _load_run

    return _load_run(path)


def __getattr__(name: str) -> Any:
    if name == "Report":
        from inspectr.core.inspection import Report

        return Report
    if name == "RunReport":
        from inspectr.core.runs.report import RunReport

        return RunReport
    raise AttributeError(name)
