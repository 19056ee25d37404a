"""Provides the gallery of sample models: the seed tutorials' networks, healthy and sick.

Importing this package registers every family file into ``GALLERY`` (name -> SampleModel).
Every model class defines ``example_input(self, batch_size=4)`` returning a Tensor (one
positional argument), a tuple (positional arguments) or a dict (keyword arguments).
A model may also say how ``--steps`` trains it: ``example_training`` (a dict with ``steps``,
``optimizer``, ``lr``, ``momentum``; the command line's flags win), ``example_target`` and
``loss_fn(output, target)``.
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
    sick_training,
    vision_transformer,
    zero_init,
)
from sample_models._gallery import GALLERY, SampleModel, register

__all__ = ["GALLERY", "SampleModel", "register"]
