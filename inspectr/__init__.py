"""inspectr: a terminal model inspector and debugger for PyTorch.

``import inspectr`` is cheap: torch is imported only when ``inspect`` is called.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from inspectr.errors import InspectrError

__version__ = "0.1.0"
__all__ = ["InspectrError", "Report", "__version__", "inspect"]

if TYPE_CHECKING:
    from inspectr.core.inspection import Report


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


def __getattr__(name: str) -> Any:
    if name == "Report":
        from inspectr.core.inspection import Report

        return Report
    raise AttributeError(name)
