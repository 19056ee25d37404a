"""Provides the gallery record type and the decorator each family file uses to register models."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn


@dataclass(frozen=True)
class SampleModel:
    """One entry of the gallery.

    Attributes:
        name: registry name (``inspectr NAME``); never the name of a torchvision model.
        factory: builds the model with its default arguments (no download, CPU).
        description: one line shown by ``inspectr --list``.
        seed: which seed tutorial the model comes from, in a few words.
        healthy: False for the models that carry a defect on purpose.
        expected: for sick models, the (finding kind, module path) the probe must report.
        needs_steps: the expected finding appears only with training steps (``--steps``); at
            step 0 such a model raises no warning or error.
    """

    name: str
    factory: Callable[[], nn.Module]
    description: str
    seed: str
    healthy: bool = True
    expected: tuple[str, str] | None = None
    needs_steps: bool = False


GALLERY: dict[str, SampleModel] = {}


def register(
    name: str,
    description: str,
    seed: str,
    *,
    healthy: bool = True,
    expected: tuple[str, str] | None = None,
    needs_steps: bool = False,
) -> Callable[[Callable[[], nn.Module]], Callable[[], nn.Module]]:
    """Register a zero-argument factory (a function or an nn.Module class) under ``name``."""

    def decorate(factory: Callable[[], nn.Module]) -> Callable[[], nn.Module]:
        if name in GALLERY:
            raise ValueError(f"sample model {name!r} registered twice")
        GALLERY[name] = SampleModel(name, factory, description, seed, healthy, expected, needs_steps)
        return factory

    return decorate
