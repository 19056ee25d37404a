"""Provides the freeze-plan API for training scripts: ``load_plan(path)`` and ``apply_plan(model, plan)``."""

from inspectr.core.freeze import FreezePlan, apply_plan, load_plan, plan_from_model, save_plan

__all__ = ["FreezePlan", "apply_plan", "load_plan", "plan_from_model", "save_plan"]
