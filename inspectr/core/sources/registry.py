"""Provides the registry of named models: the sample gallery and every torchvision model.

torchvision is imported only when a name is not found in the gallery (or ``--list`` asks):
``import torchvision`` costs seconds. Gallery names never collide with torchvision's (a test
checks), so a gallery hit needs no torchvision import.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from inspectr.errors import InspectrError

SOURCES = ("sample", "torchvision")


@dataclass(frozen=True)
class Entry:
    """A registered model: how to build it and what to feed it."""

    name: str
    source: str  # "sample" | "torchvision"
    description: str
    build: Callable[[dict[str, Any]], Any]  # kwargs -> nn.Module
    family: str = ""  # torchvision: classification, video, detection, segmentation, optical_flow, quantization
    healthy: bool = True
    expected: tuple[str, str] | None = None
    needs_steps: bool = False  # the expected finding shows with ``--steps`` only

    @property
    def qualified(self) -> str:
        return f"{self.source}:{self.name}"


def sample_entries() -> dict[str, Entry]:
    import sample_models

    out = {}
    for name, sm in sample_models.GALLERY.items():

        def build(kwargs: dict[str, Any], _f: Any = sm.factory) -> Any:
            return _f(**kwargs)

        out[name] = Entry(name, "sample", sm.description, build, "sample", sm.healthy, sm.expected,
                          sm.needs_steps)
    return out


TORCHVISION_FAMILIES = ("classification", "video", "detection", "segmentation", "optical_flow", "quantization")


def torchvision_entries() -> dict[str, Entry]:
    import torchvision
    from torchvision import models

    family_of: dict[str, str] = {}
    for fam, mod in (
        ("video", models.video),
        ("detection", models.detection),
        ("segmentation", models.segmentation),
        ("optical_flow", models.optical_flow),
        ("quantization", models.quantization),
    ):
        for n in models.list_models(module=mod):
            family_of[n] = fam
    out = {}
    for name in models.list_models():
        fam = family_of.get(name, "classification")

        def build(kwargs: dict[str, Any], _n: str = name, _fam: str = fam) -> Any:
            return models.get_model(_n, **torchvision_kwargs(_fam, kwargs))

        out[name] = Entry(name, "torchvision", f"torchvision {fam} model (weights=None)", build, fam)
    del torchvision
    return out


def torchvision_kwargs(family: str, kwargs: dict[str, Any], weights: Any = None) -> dict[str, Any]:
    """A torchvision builder's arguments: ``weights`` is None (never download) unless the caller
    supplies weights it reads itself (``--pretrained``, from the local hub cache)."""
    kw = dict(kwargs)
    kw["weights"] = weights
    if family == "quantization":
        kw.setdefault("quantize", weights is not None)  # quantized weights fit only a quantized model
    if family in ("detection", "segmentation"):
        kw.setdefault("weights_backbone", None)
    if family == "segmentation" and weights is None:
        kw.setdefault("aux_loss", False)  # with weights, torchvision requires the aux head they hold
    return kw


def all_entries() -> dict[str, dict[str, Entry]]:
    """Every registered model grouped by source."""
    return {"sample": sample_entries(), "torchvision": torchvision_entries()}


def lookup(spec: str) -> Entry:
    """Find a registered model by ``name``, ``sample:name`` or ``torchvision:name``.

    Raises:
        InspectrError: unknown name (with the closest names) or an ambiguous bare name.
    """
    source, _, name = spec.rpartition(":")
    if source and source not in SOURCES:
        raise InspectrError(
            f"Unknown model source {source!r} in {spec!r}.",
            f"Use one of {', '.join(s + ':' for s in SOURCES)}, timm:NAME, hf:FOLDER or a file spec like "
            "path/to/model.py:MyNet.",
        )
    samples = sample_entries()
    if source in ("", "sample") and name in samples:
        return samples[name]
    tv: dict[str, Entry] = {}
    if source in ("", "torchvision"):
        tv = torchvision_entries()
        if name in tv:
            return tv[name]
    pool = {**(samples if source in ("", "sample") else {}), **tv}
    close = difflib.get_close_matches(name, list(pool), n=5, cutoff=0.5)
    if not close:
        close = [n for n in pool if name.lower() in n.lower()][:5]
    hint = f"Did you mean: {', '.join(close)}? " if close else ""
    if not source and _timm_has(name):
        hint = f"timm has a model of that name: `inspectr timm:{name}`. "
    raise InspectrError(
        f"No registered model is called {spec!r}.",
        hint + "Run `inspectr --list` to see every registered model, or give a file: "
        "`inspectr path/to/model.py:MyNet`.",
    )


def _timm_has(name: str) -> bool:
    """Whether an installed timm defines ``name`` (asked only once a name is unknown: import timm is slow)."""
    import importlib.util

    if importlib.util.find_spec("timm") is None:
        return False
    try:
        import timm
    except ImportError:
        return False
    return bool(timm.is_model(name))
