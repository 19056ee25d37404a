"""Provides ``OpSite``: one torch call of a forward, as a culprit is reported (torch-free)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from inspectr.core.probe.source_line import SourceLine


@dataclass(frozen=True)
class OpSite:
    """One torch call of the forward (torch-free): what it was, where, on what."""

    op: str  # as the user wrote it: "torch.log", "Tensor.sqrt", "F.linear", "/"
    created: bool  # made the NaN/Inf from inputs free of it (False: passed on what an operand held)
    module: str | None  # the innermost module running ("" the root, None: outside every module)
    module_type: str | None
    operands: tuple[tuple[int, ...], ...]  # shapes of its tensor operands, in order
    output: tuple[int, ...] | None  # shape of its (first) tensor output
    source: SourceLine | None
    inputs_finite: bool = True  # False: a NaN made from Inf operands (inf - inf, 0 * inf)

    @property
    def written(self) -> str:
        """The call's text on the user's line (``x.flatten(1)``) when it is this op, else the op."""
        seg = self.source.segment if self.source is not None else ""
        tail = self.op.rsplit(".", 1)[-1]
        return seg if seg and (tail in seg or self.op in seg) and len(seg) <= 80 else self.op

    def detail(self) -> dict[str, Any]:
        """The keys a finding's detail carries (documented in the README, "Reading a culprit")."""
        return {"op": self.op, "op_created": self.created, "op_module": self.module,
                "operands": [list(s) for s in self.operands],
                "source": self.source.to_dict() if self.source is not None else None}
