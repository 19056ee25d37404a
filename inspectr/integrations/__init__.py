"""Provides inspectr's callbacks for training frameworks: ``inspectr.integrations.lightning`` and
``inspectr.integrations.transformers``, each an ``InspectrCallback(run=..., every=..., halt_on=None)``
that drives ``inspectr.watch`` at the framework's own optimizer-step hooks."""
