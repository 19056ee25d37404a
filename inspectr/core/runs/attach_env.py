"""Provides the environment variables ``inspectr watch -- COMMAND`` passes its settings in, read
by ``attach`` inside COMMAND's Python processes (a module of names only: no torch to import)."""

from __future__ import annotations

ENV_RUN = "INSPECTR_WATCH_RUN"  # the run folder, absolute; the watch is attached only when it is set
ENV_EVERY = "INSPECTR_WATCH_EVERY"  # the sampling period in steps
ENV_HALT_ON = "INSPECTR_WATCH_HALT_ON"  # "error" or unset
ENV_STATUS = "INSPECTR_WATCH_STATUS"  # "1": stderr is a terminal, show the status line there
ENV_COMMAND = "INSPECTR_WATCH_COMMAND"  # the command as a JSON list, kept in the run's meta
