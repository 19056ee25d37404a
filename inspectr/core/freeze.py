"""Provides freeze plans: which module paths train, as plain data, and applying them to a model."""

from __future__ import annotations

import fnmatch
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from inspectr.errors import InspectrError

PLAN_SCHEMA = "inspectr-freeze/1"


@dataclass(frozen=True)
class FreezePlan:
    """Module path -> trainable (True) or frozen (False); applied in order, so later entries win.

    A path covers its whole subtree: ``{"layer1": False, "layer1.0.bn1": True}`` freezes layer1
    except that one BatchNorm.
    """

    entries: tuple[tuple[str, bool], ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        return {"schema": PLAN_SCHEMA, "modules": [{"path": p, "trainable": t} for p, t in self.entries]}

    @classmethod
    def from_dict(cls, data: Any, where: str = "freeze plan") -> FreezePlan:
        if not isinstance(data, dict) or not isinstance(data.get("modules"), list):
            raise InspectrError(f"{where} is not an inspectr freeze plan (no 'modules' list).",
                                "Save one from the app with `s`, or write {\"modules\": [{\"path\": \"layer1\", \"trainable\": false}]}.")
        entries = []
        for item in data["modules"]:
            if not isinstance(item, dict) or not isinstance(item.get("path"), str) or not isinstance(item.get("trainable"), bool):
                raise InspectrError(f"{where} has a bad entry {item!r}.", "Each entry needs a string 'path' and a boolean 'trainable'.")
            entries.append((item["path"], item["trainable"]))
        return cls(tuple(entries))


def plan_from_model(model: nn.Module) -> FreezePlan:
    """The smallest plan that reproduces the model's current requires_grad flags."""
    entries: list[tuple[str, bool]] = []

    def visit(path: str, mod: nn.Module, inherited: bool | None) -> None:
        params = list(mod.parameters())
        if not params:
            return
        flags = {p.requires_grad for p in params}
        if len(flags) == 1:
            state = flags.pop()
            if state != inherited:
                entries.append((path, state))
            return
        for name, p in mod.named_parameters(recurse=False):
            full = f"{path}.{name}" if path else name
            if p.requires_grad != inherited:
                entries.append((full, p.requires_grad))
        for name, child in mod.named_children():
            visit(f"{path}.{name}" if path else name, child, inherited)

    visit("", model, True)
    return FreezePlan(tuple(entries))


def apply_plan(model: nn.Module, plan: FreezePlan) -> None:
    """Set requires_grad on every parameter the plan covers (in plan order)."""
    mods = dict(model.named_modules())  # once: a plan of a deep model has thousands of entries
    params: dict[str, nn.Parameter] | None = None
    for path, trainable in plan.entries:
        if path in mods:
            targets = list(mods[path].parameters())
        else:
            if params is None:
                params = dict(model.named_parameters())
            if path not in params:
                raise InspectrError(
                    f"The freeze plan names {path!r}, which is neither a module nor a parameter of "
                    f"{type(model).__name__}.", "Check the plan against `inspectr SPEC --report` paths.")
            targets = [params[path]]
        for p in targets:
            p.requires_grad_(trainable)


def load_plan(path: str | Path) -> FreezePlan:
    p = Path(path)
    if not p.exists():
        raise InspectrError(f"The freeze plan {p} does not exist.", "Check the --freeze-plan path.")
    try:
        data = json.loads(p.read_text())
    except json.JSONDecodeError as exc:
        raise InspectrError(f"{p} is not valid JSON ({exc.msg}, line {exc.lineno}).", "Save the plan again from the app.") from None
    return FreezePlan.from_dict(data, str(p))


def save_plan(plan: FreezePlan, path: str | Path) -> Path:
    p = Path(path)
    p.write_text(json.dumps(plan.to_dict(), indent=2) + "\n")
    return p


def matching_paths(model: nn.Module, pattern: str) -> list[str]:
    """Module paths that match a glob (``layer1.*``, ``*.bn*``); ``*`` alone matches everything."""
    return [path for path, _ in model.named_modules() if path and fnmatch.fnmatchcase(path, pattern)] or (
        [""] if pattern in ("*", "") else [])


def apply_globs(model: nn.Module, freeze: list[str], unfreeze: list[str]) -> None:
    """``--freeze GLOB`` then ``--unfreeze GLOB``; a glob that matches nothing is an error."""
    mods = dict(model.named_modules())
    for patterns, state in ((freeze, False), (unfreeze, True)):
        for pat in patterns:
            hits = matching_paths(model, pat)
            if not hits:
                flag = "--freeze" if not state else "--unfreeze"
                raise InspectrError(f"{flag} {pat!r} matches no module of {type(model).__name__}.",
                                    "Globs match module paths as `--report` shows them, e.g. 'layer1.*' or '*.bn*'.")
            for h in hits:
                for p in mods[h].parameters():
                    p.requires_grad_(state)
