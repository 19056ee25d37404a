"""Provides ``TrainableState``: which parameters train, as the app wants them, by module path.

The app toggles freezing here first (cheap, UI thread) and applies the flags to the live model
only while it holds the model lock, so a probe running in a worker never sees a flag change
half-way and never restores a stale flag over the user's choice.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from inspectr.core.inspection import Report
from inspectr.core.result import ModelInfo, ModuleRow, ProbeInfo
from inspectr.core.summary import trainable_state

if TYPE_CHECKING:
    from torch import nn


class TrainableState:
    """Per-parameter requires_grad flags plus module path -> parameter indices.

    Built once from the live model (in the load worker); afterwards only ``apply`` touches the
    model, so reading counts never races with a probe that swaps tensors in and out.
    """

    def __init__(self, model: nn.Module) -> None:
        params = list(model.parameters())  # each tensor once, however often it is tied
        index = {id(p): i for i, p in enumerate(params)}
        self._params = params
        self.numel: list[int] = [p.numel() for p in params]
        self._bytes = sum(n * p.element_size() for n, p in zip(self.numel, params))
        self.types: dict[str, str] = {}  # path -> class name, in named_modules() order
        self.aliases: dict[str, list[str]] = {}  # first path -> other paths of the same module
        self.flags: list[bool] = [p.requires_grad for p in params]
        self.version = 0
        self._own: dict[str, tuple[int, ...]] = {}
        self._own_names: dict[str, tuple[str, ...]] = {}
        self._children: dict[str, list[str]] = {}
        first: dict[int, str] = {}
        for path, mod in model.named_modules(remove_duplicate=False):
            key = id(mod)
            parent = path.rsplit(".", 1)[0] if "." in path else ""
            if path:
                # a shared module's alias path resolves to its first path
                self._children.setdefault(parent, []).append(first.get(key, path))
            if key in first:
                if first[key] != path and not path.startswith(first[key] + "."):
                    self.aliases.setdefault(first[key], []).append(path)
                continue
            first[key] = path
            self.types[path] = type(mod).__name__
            own = [(n, p) for n, p in mod._parameters.items() if p is not None]
            self._own[path] = tuple(index[id(p)] for _, p in own)
            self._own_names[path] = tuple(n for n, _ in own)
        self._subtree: dict[str, tuple[int, ...]] = {}
        self._counts: dict[str, tuple[int, int, int]] = {}  # path -> (version, total, trainable)

    def params_of(self, path: str) -> list[tuple[str, nn.Parameter]]:
        """The module's own (name, parameter) pairs, in registration order."""
        return [
            (n, self._params[i])
            for n, i in zip(self._own_names.get(path, ()), self._own.get(path, ()))
        ]

    def subtree(self, path: str) -> tuple[int, ...]:
        """Indices of every parameter of the module and its descendants, each once."""
        hit = self._subtree.get(path)
        if hit is not None:
            return hit
        seen: dict[int, None] = dict.fromkeys(self._own.get(path, ()))
        for child in self._children.get(path, ()):
            if child != path:
                seen.update(dict.fromkeys(self.subtree(child)))
        out = tuple(seen)
        self._subtree[path] = out
        return out

    def counts(self, path: str) -> tuple[int, int]:
        """(total, trainable) parameter elements of the module's subtree."""
        hit = self._counts.get(path)
        if hit is not None and hit[0] == self.version:
            return hit[1], hit[2]
        idx = self.subtree(path)
        numel, flags = self.numel, self.flags
        total = sum(numel[i] for i in idx)
        trainable = sum(numel[i] for i in idx if flags[i])
        self._counts[path] = (self.version, total, trainable)
        return total, trainable

    def state(self, path: str) -> str:
        return trainable_state(*self.counts(path))

    def toggle(self, path: str) -> bool | None:
        """Freeze the subtree unless it is wholly frozen, then unfreeze it.

        Returns:
            The new requires_grad of the subtree, or None when it has no parameters.
        """
        idx = self.subtree(path)
        if not idx:
            return None
        new = not any(self.flags[i] for i in idx)
        for i in idx:
            self.flags[i] = new
        self.version += 1
        return new

    def apply(self) -> bool:
        """Write the flags into the live model; call only while holding the model lock.

        Returns:
            True when some parameter changed.
        """
        changed = False
        for p, flag in zip(self._params, self.flags):
            if p.requires_grad != flag:
                p.requires_grad_(flag)
                changed = True
        return changed

    def row_view(self, row: ModuleRow) -> ModuleRow:
        """The row with the current trainable counts and requires_grad flags."""
        total, trainable = self.counts(row.path)
        own = self._own.get(row.path, ())
        params = row.parameters
        if len(own) == len(params):
            params = tuple(
                p if p.requires_grad == self.flags[i] else replace(p, requires_grad=self.flags[i])
                for p, i in zip(params, own)
            )
        if trainable == row.trainable_params and params is row.parameters:
            return row
        return replace(
            row,
            trainable_params=trainable,
            trainable=trainable_state(total, trainable),
            parameters=params,
        )

    def model_info(self, info: ModelInfo) -> ModelInfo:
        total, trainable = self.counts("")
        return (
            info
            if trainable == info.trainable_params
            else replace(info, trainable_params=trainable)
        )

    def report_view(self, report: Report) -> Report:
        """The report with the current freeze state (what an export written now should say)."""
        from inspectr.core.memory.estimate import refrozen

        rows = tuple(self.row_view(r) for r in report.modules)
        memory = refrozen(report.memory, rows) if report.memory is not None else None
        return replace(report, model=self.model_info(report.model), modules=rows, memory=memory)

    def skeleton_row(self, path: str) -> ModuleRow:
        """A structure-only row from what this state already knows (no extra_repr, no parameter table)."""
        total, trainable = self.counts(path)
        return ModuleRow(
            path=path,
            type=self.types.get(path, "Module"),
            depth=path.count(".") + 1 if path else 0,
            params=total,
            own_params=sum(self.numel[i] for i in dict.fromkeys(self._own.get(path, ()))),
            trainable_params=trainable,
            trainable=trainable_state(total, trainable),
            buffers=0,
            aliases=tuple(self.aliases.get(path, ())),
            is_leaf=not self._children.get(path),
        )

    def skeleton(self, name: str, source: str, description: str, device: str) -> Report:
        """A report with totals and no rows: what the app shows before ``summarize`` has run.

        Cheaper than ``summarize`` by far, so a 20,000-module tree paints at once; the rows come
        from ``skeleton_row`` on demand and the full structure replaces them a moment later.
        """
        total, trainable = self.counts("")
        info = ModelInfo(
            name,
            self.types.get("", "Module"),
            source,
            total,
            trainable,
            0,
            self._bytes,
            0,
            description,
        )
        probe = ProbeInfo(ok=True, error=None, ran=False, mode="n/a", device=device, backward="off")
        return Report(info, (), (), (), probe)
