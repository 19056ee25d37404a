"""Provides the gallery of sample models: the seed tutorials' networks, healthy and sick.

Importing this package registers every family file into ``GALLERY`` (name -> SampleModel).
Every model class defines ``example_input(self, batch_size=4)`` returning a Tensor (one
positional argument), a tuple (positional arguments) or a dict (keyword arguments).
"""

from __future__ import annotations

# Imported for their side effect: each family file registers its models into GALLERY.
from sample_models import (  # noqa: F401
    attention,
    classic,
    config_driven,
    custom_autograd,
    dynamic,
    efficient,
    fx_fused,
    graph,
    recurrent,
    residual,
    sick,
    vision_transformer,
)
from sample_models._gallery import GALLERY, SampleModel, register

__all__ = ["GALLERY", "SampleModel", "register"]
