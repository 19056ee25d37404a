"""Provides the runs stage: ``inspectr.watch`` in the user's own training loop (``watch``), the
measurements it takes at sampled steps (``sampler``), the SQLite run store (``store``), the
findings of a run (``findings``) and the frozen ``RunReport`` read back from a store (``report``)."""
