"""Provides ``Report``: the frozen result of one inspection (``inspectr.inspect``), made of every
stage's results, and its JSON form (schema ``inspectr/1``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from inspectr.core.result import SCHEMA, Finding, ModelInfo, ModuleRow, ProbeInfo, TrainingInfo

if TYPE_CHECKING:  # a type only: importing Report (the report, the app) costs no torch
    from inspectr.core.memory.estimate import MemoryEstimate


@dataclass(frozen=True)
class Report:
    """The result of ``inspectr.inspect``: plain data, no live torch objects."""

    model: ModelInfo
    inputs: tuple[str, ...]
    modules: tuple[ModuleRow, ...]
    findings: tuple[Finding, ...]
    probe: ProbeInfo
    memory: MemoryEstimate | None = None  # training/inference memory; None without a probe
    training: TrainingInfo | None = None  # set by ``--steps N``

    def module(self, path: str) -> ModuleRow:
        for row in self.modules:
            if row.path == path:
                return row
        raise KeyError(path)

    def findings_for(self, path: str) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.module == path)

    @property
    def has_errors(self) -> bool:
        return not self.probe.ok or any(f.severity == "error" for f in self.findings)

    @property
    def flops_forward(self) -> int | None:
        return self.modules[0].flops_forward if self.modules else None

    def to_dict(self) -> dict[str, Any]:
        m = self.model
        return {
            "schema": SCHEMA,
            "model": {
                "name": m.name,
                "class": m.class_name,
                "source": m.source,
                "description": m.description,
                "total_params": m.total_params,
                "trainable_params": m.trainable_params,
                "frozen_params": m.frozen_params,
                "packed_params": m.packed_params,
                "buffer_elements": m.buffer_elements,
                "param_bytes": m.param_bytes,
                "buffer_bytes": m.buffer_bytes,
                "flops_forward": self.flops_forward,
                "flops_backward": self.modules[0].flops_backward if self.modules else None,
            },
            "inputs": list(self.inputs),
            "modules": [r.to_dict() for r in self.modules],
            "findings": [f.to_dict() for f in self.findings],
            "probe": self.probe.to_dict(),
            "memory": self.memory.to_dict() if self.memory else None,
            "training": self.training.to_dict() if self.training is not None else None,
        }
