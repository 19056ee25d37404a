"""Provides InspectrError, the one error family the CLI maps to exit codes."""

from __future__ import annotations

import sys
from typing import Any

EXIT_OK = 0
EXIT_MODEL_PROBLEM = 1
EXIT_BAD_REQUEST = 2


class InspectrError(Exception):
    """A request inspectr could not carry out, told in one paragraph with the fix.

    Args:
        message: what went wrong, naming the file, module or argument.
        hint: how to fix it (shown after the message).
        exit_code: 2 for a bad request (default), 1 for a problem with the model itself.
    """

    def __init__(self, message: str, hint: str = "", exit_code: int = EXIT_BAD_REQUEST) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.exit_code = exit_code

    def __str__(self) -> str:
        return f"{self.message} {self.hint}".strip()


def print_error(err: InspectrError) -> None:
    """Write ``err`` to stderr as the CLI and the app show it: ``error: message hint``."""
    stream = sys.stderr
    if stream.isatty():
        stream.write(f"\x1b[1;31merror:\x1b[0m {err}\n")
    else:
        stream.write(f"error: {err}\n")


class TrainingProblem(Exception):
    """Raised by ``inspectr.watch(..., halt_on="error")`` at the step an error finding appears,
    after the run is saved; ``.finding`` is the ``Finding`` (kind, module, ``detail["step"]``)."""

    def __init__(self, finding: Any) -> None:
        step = finding.detail.get("step") if isinstance(finding.detail, dict) else None
        where = f" at step {step}" if step is not None else ""
        super().__init__(f"{finding.kind}{where}: {finding.message}")
        self.finding = finding
