"""Tests that the app's parts (Loader, Prober, Trainer, Exporter) stay apart: one App, one namespace."""

from __future__ import annotations

import inspect
from types import FunctionType

from inspectr.tui.app import InspectrApp
from inspectr.tui.base import InspectorBase


def own_names(cls: type) -> set[str]:
    """Methods, properties and nested classes written in ``cls`` (not Textual's per-class caches)."""
    return {
        name
        for name, value in vars(cls).items()
        if not name.startswith("__") and isinstance(value, (FunctionType, property, type))
    }


def test_no_part_hides_another_parts_names() -> None:
    # a method or message defined twice resolves by the MRO to one of them, silently:
    # `self.Failed` in the probe worker would build the loader's message
    parts = [c for c in InspectrApp.__mro__ if issubclass(c, InspectorBase) and c is not InspectorBase]
    assert {c.__name__ for c in parts} >= {"InspectrApp", "Loader", "Prober", "Trainer", "Exporter"}
    seen: dict[str, str] = {}
    clashes = []
    for part in parts:
        for name in sorted(own_names(part)):
            if name in seen:
                clashes.append(f"{part.__name__}.{name} and {seen[name]}.{name}")
            seen[name] = part.__name__
    assert clashes == []


def test_every_message_a_part_posts_has_a_handler() -> None:
    from textual.message import Message

    parts = [c for c in InspectrApp.__mro__ if issubclass(c, InspectorBase) and c is not InspectorBase]
    messages = [v for c in parts for v in vars(c).values() if inspect.isclass(v) and issubclass(v, Message)]
    assert len(messages) == 8  # ModelBuilt, StructureReady, LoadFailed, Probe*, Training*
    assert [m.handler_name for m in messages if not hasattr(InspectrApp, m.handler_name)] == []
