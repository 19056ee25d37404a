"""Provides inspectr's callbacks for training frameworks: ``inspectr.integrations.lightning`` and
``inspectr.integrations.transformers``, each an ``InspectrCallback(run=..., every=..., halt_on=None)``
that drives ``inspectr.watch`` at the framework's own optimizer-step hooks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def lazy_callback(build: Callable[[], Any]) -> Callable[[str], Any]:
    """A module ``__getattr__`` making ``InspectrCallback`` with ``build`` on first use, so the
    framework is imported only then (and only once)."""
    made: list[Any] = []

    def __getattr__(name: str) -> Any:
        if name != "InspectrCallback":
            raise AttributeError(name)
        if not made:
            made.append(build())
        return made[0]

    return __getattr__
