"""Provides the dynamic networks: a top-k mixture-of-experts router and an early-exit network."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops.layers.torch import Rearrange
from torch import nn

from sample_models._gallery import register


@register(
    "moe_router",
    "mixture of 4 experts with top-2 gating per token, vectorised dispatch, [B, T, D]",
    "003 advanced architectures: DynamicRouterNetwork",
)
class DynamicRouterNetwork(nn.Module):
    """Seed 003's top-k mixture-of-experts router, vectorised.

    Fixed vs the seed: the seed weights expert outputs in a Python loop over every routed
    token and every top-k slot; here each expert runs once on the tokens routed to it and
    its weighted output is scattered back with ``index_add``. An expert that no token
    picked runs on zero rows, so there is no data-dependent branch. The unused
    ``capacity`` attribute is gone.
    """

    def __init__(self, input_dim: int = 32, expert_dims: tuple[int, int] = (64, 64),
                 num_experts: int = 4, top_k: int = 2) -> None:
        super().__init__()
        self.input_dim = input_dim
        self.num_experts = num_experts
        self.top_k = top_k
        self.gate = nn.Sequential(
            nn.Linear(input_dim, 128),
            nn.ReLU(),
            nn.Dropout(0.1),
            nn.Linear(128, num_experts),
        )
        self.experts = nn.ModuleList(
            nn.Sequential(
                nn.Linear(input_dim, expert_dims[0]),
                nn.ReLU(),
                nn.Dropout(0.1),
                nn.Linear(expert_dims[0], expert_dims[1]),
                nn.ReLU(),
                nn.Linear(expert_dims[1], input_dim),
            )
            for _ in range(num_experts)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch_size, seq_len, feature_dim = x.shape
        tokens = x.reshape(-1, feature_dim)
        gates = self.gate(tokens)
        top_k_vals, top_k_indices = torch.topk(gates, self.top_k, dim=-1)
        top_k_weights = F.softmax(top_k_vals, dim=-1)
        outputs = torch.zeros_like(tokens)
        for expert_idx, expert in enumerate(self.experts):
            token_idx, slot = (top_k_indices == expert_idx).nonzero(as_tuple=True)
            weight = top_k_weights[token_idx, slot].unsqueeze(-1)
            outputs = outputs.index_add(0, token_idx, weight * expert(tokens[token_idx]))
        return outputs.reshape(batch_size, seq_len, feature_dim)

    def example_input(self, batch_size: int = 4) -> torch.Tensor:
        return torch.randn(batch_size, 8, self.input_dim)


@register(
    "early_exit",
    "early-exit network: 4 layers with exit heads, returns (logits, layers used, confidences)",
    "003 advanced architectures: DynamicDepthNetwork",
)
class DynamicDepthNetwork(nn.Module):
    """Seed 003's dynamic-depth network with early exits, fixed.

    Fixed vs the seed:
      * the exit heads pool over the sequence (``b t d -> b d t`` before
        ``AdaptiveAvgPool1d``); the seed pooled over features and fed ``seq_len`` values to
        ``Linear(feature_dim, 10)``;
      * training runs every layer and exit head, and mixes the exits' logits with weights
        set by the difficulty estimator (hard inputs lean on deep exits). In the seed the
        estimator only fed ``.item()``, layers past the sampled depth never ran, and
        intermediate heads only produced floats, so none of them ever got a gradient;
      * confidences and the sampled depth are read from detached tensors.

    Returns ``(logits, used_layers, confidences)``; ``used_layers`` is an int and
    ``confidences`` a list of floats, one per exit head evaluated.
    """

    def __init__(self, base_layers: int = 2, max_layers: int = 4, feature_dim: int = 64,
                 early_exit_threshold: float = 0.95, num_classes: int = 10) -> None:
        super().__init__()
        self.base_layers = base_layers
        self.max_layers = max_layers
        self.feature_dim = feature_dim
        self.early_exit_threshold = early_exit_threshold
        self.layers = nn.ModuleList(
            nn.Sequential(
                nn.Linear(feature_dim, feature_dim * 4),
                nn.ReLU(),
                nn.Dropout(0.1),
                nn.Linear(feature_dim * 4, feature_dim),
                nn.LayerNorm(feature_dim),
            )
            for _ in range(max_layers)
        )
        self.exit_heads = nn.ModuleList(
            nn.Sequential(
                Rearrange("b t d -> b d t"),
                nn.AdaptiveAvgPool1d(1),
                nn.Flatten(),
                nn.Linear(feature_dim, num_classes),
            )
            for _ in range(max_layers)
        )
        self.difficulty_estimator = nn.Sequential(
            nn.Linear(feature_dim, 64),
            nn.ReLU(),
            nn.Linear(64, 1),
            nn.Sigmoid(),
        )
        # Relative depth of each exit, 0 (first) to 1 (last), for the training-time mixture.
        self.register_buffer(
            "exit_depths", torch.linspace(0.0, 1.0, max_layers), persistent=False
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, int, list[float]]:
        difficulty = self.difficulty_estimator(x.mean(dim=1))
        if self.training:
            return self._forward_all_exits(x, difficulty)

        dynamic_max_layers = min(
            self.max_layers,
            max(self.base_layers, int(self.base_layers * (1 + difficulty.mean().item()))),
        )
        hidden = x
        confidences: list[float] = []
        for layer_idx in range(dynamic_max_layers):
            hidden = self.layers[layer_idx](hidden)
            if layer_idx >= self.base_layers:
                exit_logits = self.exit_heads[layer_idx](hidden)
                confidence = F.softmax(exit_logits, dim=-1).max(dim=-1).values.mean()
                confidences.append(confidence.detach().item())
                if confidences[-1] > self.early_exit_threshold:
                    return exit_logits, layer_idx + 1, confidences
        return self.exit_heads[dynamic_max_layers - 1](hidden), dynamic_max_layers, confidences

    def _forward_all_exits(
        self, x: torch.Tensor, difficulty: torch.Tensor
    ) -> tuple[torch.Tensor, int, list[float]]:
        hidden = x
        exit_logits = []
        confidences: list[float] = []
        for layer, head in zip(self.layers, self.exit_heads):
            hidden = layer(hidden)
            logits = head(hidden)
            exit_logits.append(logits)
            confidence = F.softmax(logits.detach(), dim=-1).max(dim=-1).values.mean()
            confidences.append(confidence.item())
        # Each sample's mixture peaks at the exit whose relative depth matches its difficulty.
        mix = F.softmax(-((self.exit_depths - difficulty) ** 2) / 0.1, dim=1)
        logits = torch.einsum("bl,blc->bc", mix, torch.stack(exit_logits, dim=1))
        return logits, self.max_layers, confidences

    def example_input(self, batch_size: int = 4) -> torch.Tensor:
        return torch.randn(batch_size, 16, self.feature_dim)
