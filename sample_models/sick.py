"""Provides the sick models: each carries one defect on purpose, which the probe must locate."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from sample_models._gallery import register

# The seed's config, verbatim: no flatten, and Linear(1024, 10) matches no feature size.
SEED_CONFIG: list[dict[str, Any]] = [
    {"type": "conv",
     "params": {"in_channels": 3, "out_channels": 64, "kernel_size": 7, "stride": 2}},
    {"type": "bn", "params": {"num_features": 64}},
    {"type": "relu", "params": {"inplace": True}},
    {"type": "pool", "params": {"kernel_size": 3, "stride": 2}},
    {"type": "dropout", "params": {"p": 0.5}, "condition": True},
    {"type": "linear", "params": {"in_features": 1024, "out_features": 10}},
]


@register(
    "sick_config_driven",
    "seed's config-driven CNN as written: Linear(1024) on an unflattened map, double registration",
    "003 advanced architectures: ConfigDrivenModel",
    healthy=False,
    expected=("forward_error", "layers.5"),
)
class SeedConfigDrivenModel(nn.Module):
    """Seed 003's ConfigDrivenModel exactly as written, with the seed's config.

    Defects kept: the Linear(1024, 10) follows pooling and dropout with no flatten, so on a
    3x64x64 input it multiplies a [.., 14] last dimension and raises; each layer is
    registered twice (``add_module`` and ``self.layers.append``). ``self.layers`` was
    registered first, so ``named_modules()`` names the Linear ``layers.5``, not ``layer_5``.
    """

    @staticmethod
    def _parse_layer_config(config: dict[str, Any]) -> nn.Module:
        layer_type = config.get("type", "conv")
        params = config.get("params", {})
        layer_map = {
            "conv": nn.Conv2d,
            "bn": nn.BatchNorm2d,
            "relu": nn.ReLU,
            "pool": nn.MaxPool2d,
            "adaptive_pool": nn.AdaptiveAvgPool2d,
            "dropout": nn.Dropout,
            "linear": nn.Linear,
        }
        if layer_type not in layer_map:
            raise ValueError(f"Unknown layer type: {layer_type}")
        return layer_map[layer_type](**params)

    def __init__(self, config: list[dict[str, Any]] | None = None) -> None:
        super().__init__()
        self.layers = nn.ModuleList()
        for i, layer_config in enumerate(SEED_CONFIG if config is None else config):
            condition = layer_config.get("condition", True)
            if isinstance(condition, bool) and not condition:
                continue
            layer = self._parse_layer_config(layer_config)
            name = layer_config.get("name", f"layer_{i}")
            self.add_module(name, layer)
            self.layers.append(layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x

    def example_input(self, batch_size: int = 4) -> torch.Tensor:
        return torch.randn(batch_size, 3, 64, 64)


@register(
    "sick_early_exit",
    "seed's early-exit network as written: exit heads pool features, not the sequence",
    "003 advanced architectures: DynamicDepthNetwork",
    healthy=False,
    expected=("forward_error", "exit_heads.0.2"),
)
class SeedDynamicDepthNetwork(nn.Module):
    """Seed 003's DynamicDepthNetwork as written, at small sizes (feature_dim 32, seq_len 8).

    Defect kept: the exit head ``AdaptiveAvgPool1d(1) -> Flatten -> Linear(feature_dim, 10)``
    pools a [B, T, D] tensor over D, so the Linear receives T = 8 features instead of 32 and
    raises. In training mode (the default) the first head runs after layer 0, so the error
    is in ``exit_heads.0.2``; in eval mode the first head to run is ``exit_heads.2.2``.
    """

    def __init__(self, base_layers: int = 2, max_layers: int = 4, feature_dim: int = 32,
                 early_exit_threshold: float = 0.95) -> None:
        super().__init__()
        self.base_layers = base_layers
        self.max_layers = max_layers
        self.feature_dim = feature_dim
        self.early_exit_threshold = early_exit_threshold
        self.layers = nn.ModuleList()
        for _ in range(max_layers):
            self.layers.append(nn.Sequential(
                nn.Linear(feature_dim, feature_dim * 4),
                nn.ReLU(),
                nn.Dropout(0.1),
                nn.Linear(feature_dim * 4, feature_dim),
                nn.LayerNorm(feature_dim),
            ))
        self.exit_heads = nn.ModuleList()
        for _ in range(max_layers):
            self.exit_heads.append(nn.Sequential(
                nn.AdaptiveAvgPool1d(1),
                nn.Flatten(),
                nn.Linear(feature_dim, 10),
            ))
        self.difficulty_estimator = nn.Sequential(
            nn.Linear(feature_dim, 64),
            nn.ReLU(),
            nn.Linear(64, 1),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, int, list[float]]:
        hidden = x
        difficulty = self.difficulty_estimator(hidden.mean(dim=1)).mean()
        dynamic_max_layers = min(
            self.max_layers,
            max(self.base_layers, int(self.base_layers * (1 + difficulty.item()))),
        )
        confidence_history: list[float] = []
        for layer_idx in range(dynamic_max_layers):
            hidden = self.layers[layer_idx](hidden)
            if self.training or layer_idx >= self.base_layers:
                exit_logits = self.exit_heads[layer_idx](hidden)
                confidence = F.softmax(exit_logits, dim=-1).max(dim=-1)[0].mean()
                confidence_history.append(confidence.item())
                if not self.training and confidence > self.early_exit_threshold:
                    return exit_logits, layer_idx + 1, confidence_history
        final_output = self.exit_heads[dynamic_max_layers - 1](hidden)
        return final_output, dynamic_max_layers, confidence_history

    def example_input(self, batch_size: int = 4) -> torch.Tensor:
        return torch.randn(batch_size, 8, self.feature_dim)


@register(
    "sick_dead_relu",
    "MLP whose second hidden Linear has bias -10, so the ReLU after it is dead",
    "002 PyTorch nn basics: MLP and init_weights",
    healthy=False,
    expected=("dead_units", "act2"),
)
class DeadReLUMLP(nn.Module):
    """An MLP (seed 002) broken by a bad init: ``fc2.bias`` is filled with -10.

    ``fc2``'s pre-activations are a few tenths in size, so with the bias every one is
    negative and ``act2`` outputs zeros for every unit and sample; no gradient reaches
    ``fc1`` or ``fc2.weight``.
    """

    def __init__(self, in_features: int = 64, hidden: int = 128, num_classes: int = 10) -> None:
        super().__init__()
        self.in_features = in_features
        self.fc1 = nn.Linear(in_features, hidden)
        self.act1 = nn.ReLU()
        self.fc2 = nn.Linear(hidden, hidden)
        self.act2 = nn.ReLU()
        self.head = nn.Linear(hidden, num_classes)
        with torch.no_grad():
            self.fc2.bias.fill_(-10.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.act2(self.fc2(self.act1(self.fc1(x)))))

    def example_input(self, batch_size: int = 4) -> torch.Tensor:
        # at least 16 samples: below that a healthy ReLU unit is all-zero too often to judge
        return torch.randn(max(batch_size, 16), self.in_features)


@register(
    "sick_vanishing",
    "20 Linear+Sigmoid layers deep: gradients vanish before reaching the first layers",
    "002 PyTorch nn basics: check_gradients",
    healthy=False,
    expected=("vanishing_gradient", "body"),
)
class VanishingSigmoidMLP(nn.Module):
    """A deep sigmoid MLP: each layer scales the gradient by about 0.25 * 0.58, so after
    20 layers the first layer's gradient is ~1e-17 of the head's."""

    def __init__(self, width: int = 64, depth: int = 20, num_classes: int = 10) -> None:
        super().__init__()
        self.width = width
        layers: list[nn.Module] = []
        for _ in range(depth):
            layers += [nn.Linear(width, width), nn.Sigmoid()]
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))

    def example_input(self, batch_size: int = 4) -> torch.Tensor:
        return torch.randn(batch_size, self.width)


@register(
    "sick_exploding",
    "12 Linear+LeakyReLU layers with N(0, 1) weights: gradients grow ~6x per layer",
    "002 PyTorch nn basics: init_weights",
    healthy=False,
    expected=("exploding_gradient", "body"),
)
class ExplodingLinearStack(nn.Module):
    """A deep stack whose Linear weights are drawn N(0, 1) instead of std 1/sqrt(64).

    Each layer multiplies activations and gradients by about 8 * sqrt(0.52) ~ 5.8, so the
    first layer's gradient is ~1e9 times the head's, while the forward output stays finite
    in float32.
    """

    def __init__(self, width: int = 64, depth: int = 12, num_classes: int = 10) -> None:
        super().__init__()
        self.width = width
        layers: list[nn.Module] = []
        for _ in range(depth):
            linear = nn.Linear(width, width)
            nn.init.normal_(linear.weight, mean=0.0, std=1.0)
            layers += [linear, nn.LeakyReLU(0.2)]
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))

    def example_input(self, batch_size: int = 4) -> torch.Tensor:
        return torch.randn(batch_size, self.width)


class LogScale(nn.Module):
    """Log-domain rescaling: ``log(x)``, which is NaN wherever ``x`` is negative."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.log(x)


class Mixer(nn.Module):
    """A projection followed by an optional log-domain rescale."""

    def __init__(self, width: int, log_domain: bool) -> None:
        super().__init__()
        self.proj = nn.Linear(width, width)
        self.log_scale: nn.Module = LogScale() if log_domain else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.log_scale(self.proj(x))


class MixBlock(nn.Module):
    """LayerNorm, then a Mixer, with a residual connection."""

    def __init__(self, width: int, log_domain: bool = False) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.mix = Mixer(width, log_domain)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.mix(self.norm(x))


@register(
    "sick_nan",
    "three residual blocks; the second takes log() of a Linear's signed output",
    "002 PyTorch nn basics: custom nn.Module",
    healthy=False,
    expected=("nan", "blocks.1.mix.log_scale"),
)
class NaNBlocks(nn.Module):
    """Residual blocks where ``blocks.1.mix.log_scale`` applies ``log`` to a Linear output
    that is negative about half the time: its input is finite, its output holds NaN, and
    everything downstream inherits it."""

    def __init__(self, width: int = 32, num_classes: int = 10) -> None:
        super().__init__()
        self.width = width
        self.blocks = nn.Sequential(
            MixBlock(width),
            MixBlock(width, log_domain=True),
            MixBlock(width),
        )
        self.head = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(x))

    def example_input(self, batch_size: int = 4) -> torch.Tensor:
        return torch.randn(batch_size, self.width)


class ExpEnergy(nn.Module):
    """Energy with a steep temperature: ``exp(100 x)`` overflows float32 once x > ~0.89."""

    def __init__(self, sharpness: float = 100.0) -> None:
        super().__init__()
        self.sharpness = sharpness

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.exp(x * self.sharpness)


class EnergyHead(nn.Module):
    """A projection to class scores followed by the exponential energy."""

    def __init__(self, width: int, num_classes: int) -> None:
        super().__init__()
        self.proj = nn.Linear(width, num_classes)
        self.energy = ExpEnergy()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.energy(self.proj(x))


@register(
    "sick_overflow",
    "classifier whose head computes exp(100 * score), overflowing to inf",
    "002 PyTorch nn basics: custom nn.Module",
    healthy=False,
    expected=("inf", "head.energy"),
)
class OverflowEnergyNet(nn.Module):
    """A small MLP whose ``head.energy`` turns finite scores of order 1 into inf."""

    def __init__(self, in_features: int = 32, hidden: int = 64, num_classes: int = 10) -> None:
        super().__init__()
        self.in_features = in_features
        self.body = nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU())
        self.head = EnergyHead(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))

    def example_input(self, batch_size: int = 4) -> torch.Tensor:
        # Scaled so every batch has scores above the ~0.89 overflow point.
        return 3.0 * torch.randn(batch_size, self.in_features)


class GuardedSqrt(nn.Module):
    """Square-root feature compression, "made safe" for negative inputs with ``torch.where``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.where(x > 0, torch.sqrt(x), torch.zeros_like(x))


@register(
    "sick_nan_grad",
    "MLP compressing features with torch.where(x > 0, sqrt(x), 0): finite forward, NaN gradients",
    "002 PyTorch nn basics: custom nn.Module",
    healthy=False,
    expected=("nonfinite_grad", "compress"),
)
class SqrtFeatureMLP(nn.Module):
    """An MLP whose ``compress`` (GuardedSqrt) takes the square root of a Linear's signed output
    where it is positive and returns 0 elsewhere. The forward is finite, but ``torch.where``
    differentiates both branches: sqrt's gradient at the negative inputs is NaN, multiplied by
    the zero gradient of the branch not taken it stays NaN, and ``fc``, ``fc.weight`` and the
    input end all get NaN gradients."""

    def __init__(self, in_features: int = 32, hidden: int = 64, num_classes: int = 10) -> None:
        super().__init__()
        self.in_features = in_features
        self.fc = nn.Linear(in_features, hidden)
        self.compress = GuardedSqrt()
        self.head = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.compress(self.fc(x)))

    def example_input(self, batch_size: int = 4) -> torch.Tensor:
        return torch.randn(batch_size, self.in_features)


class GatedBranch(nn.Module):
    """A residual branch scaled by a learned non-negative gain, written ``sqrt(gain_sq)`` and
    started at 0 so that the branch starts switched off (ReZero's idea)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.branch = nn.Sequential(nn.Linear(width, width), nn.Tanh())
        self.gain_sq = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + torch.sqrt(self.gain_sq) * self.branch(x)


@register(
    "sick_inf_grad",
    "residual MLP whose branch gain is sqrt(gain_sq) with gain_sq initialised to 0: Inf gradient",
    "002 PyTorch nn basics: custom nn.Module and init_weights",
    healthy=False,
    expected=("nonfinite_grad", "gated"),
)
class GatedResidualMLP(nn.Module):
    """An MLP with a gated residual block. ``gated.gain_sq`` starts at exactly 0, where the
    forward is finite (sqrt(0) = 0, the block passes its input through) but the derivative of
    sqrt is infinite: ``gated.gain_sq`` gets an Inf gradient at the first backward, and one
    optimizer step makes it Inf or NaN."""

    def __init__(self, in_features: int = 32, hidden: int = 64, num_classes: int = 10) -> None:
        super().__init__()
        self.in_features = in_features
        self.embed = nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU())
        self.gated = GatedBranch(hidden)
        self.head = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.gated(self.embed(x)))

    def example_input(self, batch_size: int = 4) -> torch.Tensor:
        return torch.randn(batch_size, self.in_features)


@register(
    "sick_unused",
    "classifier with an auxiliary head that is built but never called",
    "002 PyTorch nn basics: custom nn.Module",
    healthy=False,
    expected=("unused_parameters", "aux_head"),
)
class UnusedAuxHead(nn.Module):
    """A CNN whose ``aux_head`` (a deep-supervision head someone forgot to wire in) has
    parameters but never runs, so they get no gradient."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.classifier = nn.Linear(32, num_classes)
        self.aux_head = nn.Sequential(
            nn.Linear(32, 64),
            nn.ReLU(),
            nn.Linear(64, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))

    def example_input(self, batch_size: int = 4) -> torch.Tensor:
        return torch.randn(batch_size, 3, 16, 16)
