"""Provides a model built layer by layer from a list of config dicts, registered once each."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch
from torch import nn

from sample_models._gallery import register

LAYER_TYPES: dict[str, type[nn.Module]] = {
    "conv": nn.Conv2d,
    "bn": nn.BatchNorm2d,
    "relu": nn.ReLU,
    "pool": nn.MaxPool2d,
    "adaptive_pool": nn.AdaptiveAvgPool2d,
    "flatten": nn.Flatten,
    "dropout": nn.Dropout,
    "linear": nn.Linear,
}

DEFAULT_CONFIG: list[dict[str, Any]] = [
    {"type": "conv", "name": "conv1",
     "params": {"in_channels": 3, "out_channels": 32, "kernel_size": 7, "stride": 2, "padding": 3}},
    {"type": "bn", "name": "bn1", "params": {"num_features": 32}},
    {"type": "relu", "name": "relu1", "params": {"inplace": True}},
    {"type": "pool", "name": "pool1", "params": {"kernel_size": 3, "stride": 2}},
    {"type": "conv", "name": "conv2",
     "params": {"in_channels": 32, "out_channels": 64, "kernel_size": 3, "padding": 1}},
    {"type": "bn", "name": "bn2", "params": {"num_features": 64}},
    {"type": "relu", "name": "relu2", "params": {"inplace": True}},
    {"type": "adaptive_pool", "name": "pool2", "params": {"output_size": (2, 2)}},
    {"type": "flatten", "name": "flatten"},
    {"type": "dropout", "name": "dropout", "params": {"p": 0.5}, "condition": True},
    # in_features is left out on purpose: the builder works it out from input_shape.
    {"type": "linear", "name": "fc", "params": {"out_features": 10}},
]


@register(
    "config_driven",
    "CNN built from a list of layer config dicts, in_features inferred, 3x64x64",
    "003 advanced architectures: ConfigDrivenModel",
)
class ConfigDrivenModel(nn.Module):
    """Seed 003's ConfigDrivenModel, correct this time.

    Fixed vs the seed:
      * each layer is registered once, under its config name, in one ``nn.Sequential``
        (the seed did both ``add_module(name, layer)`` and ``self.layers.append(layer)``,
        so every layer had two paths);
      * a ``flatten`` layer type exists and the config uses it before the Linear;
      * a Linear without ``in_features`` gets it from a dry run of the layers before it on
        a zero tensor of ``input_shape`` (the seed hard-coded 1024, which matched nothing).
    """

    def __init__(self, config: list[dict[str, Any]] | None = None,
                 input_shape: tuple[int, ...] = (3, 64, 64)) -> None:
        super().__init__()
        self.input_shape = input_shape
        built: OrderedDict[str, nn.Module] = OrderedDict()
        for i, layer_config in enumerate(DEFAULT_CONFIG if config is None else config):
            if layer_config.get("condition", True) is False:
                continue
            name = layer_config.get("name", f"layer_{i}")
            if name in built:
                raise ValueError(f"layer name {name!r} used twice in the config")
            built[name] = self._parse_layer_config(layer_config, built)
        self.layers = nn.Sequential(built)

    def _parse_layer_config(self, config: dict[str, Any],
                            built: OrderedDict[str, nn.Module]) -> nn.Module:
        layer_type = config.get("type", "conv")
        if layer_type not in LAYER_TYPES:
            raise ValueError(f"Unknown layer type: {layer_type}")
        params = dict(config.get("params", {}))
        if layer_type == "linear" and "in_features" not in params:
            params["in_features"] = self._features_after(built)
        return LAYER_TYPES[layer_type](**params)

    def _features_after(self, built: OrderedDict[str, nn.Module]) -> int:
        prefix = nn.Sequential(*built.values())
        # Eval mode so BatchNorm neither needs a batch > 1 nor moves its running stats.
        prefix.eval()
        with torch.no_grad():
            out = prefix(torch.zeros(1, *self.input_shape))
        prefix.train()
        if out.dim() != 2:
            raise ValueError(
                f"a Linear needs flat features; the layers before it give {tuple(out.shape)}"
            )
        return out.shape[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)

    def example_input(self, batch_size: int = 4) -> torch.Tensor:
        return torch.randn(batch_size, *self.input_shape)
