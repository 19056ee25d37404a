"""Provides a masked ("sparse") Linear built on a custom autograd Function, and an MLP using it."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from sample_models._gallery import register


class SparseLinearFunction(torch.autograd.Function):
    """Seed 003's sparse linear Function: ``y = x (W * M)^T + b`` with a hand-written backward.

    Fixed vs the seed: the forward is one matmul with the masked weight (the seed's was an
    unfinished element-by-element loop), and the backward masks the weight gradient so
    pruned weights stay pruned.
    """

    @staticmethod
    def forward(ctx: Any, input: torch.Tensor, weight: torch.Tensor,
                bias: torch.Tensor | None, sparsity_mask: torch.Tensor) -> torch.Tensor:
        sparse_weight = weight * sparsity_mask
        ctx.save_for_backward(input, sparse_weight, sparsity_mask)
        ctx.has_bias = bias is not None
        output = input @ sparse_weight.T
        if bias is not None:
            output = output + bias
        return output

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        input, sparse_weight, sparsity_mask = ctx.saved_tensors
        grad_input = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            grad_input = grad_output @ sparse_weight
        if ctx.needs_input_grad[1]:
            grad_weight = (grad_output.T @ input) * sparsity_mask
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_bias = grad_output.sum(dim=0)
        return grad_input, grad_weight, grad_bias, None


class SparseLinear(nn.Module):
    """A Linear whose weight is multiplied by a fixed 0/1 ``sparsity_mask`` buffer."""

    def __init__(self, in_features: int, out_features: int, density: float = 0.3,
                 bias: bool = True) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        reference = nn.Linear(in_features, out_features, bias=bias)
        self.weight = nn.Parameter(reference.weight.detach().clone())
        self.bias = nn.Parameter(reference.bias.detach().clone()) if bias else None
        mask = (torch.rand(out_features, in_features) < density).float()
        self.register_buffer("sparsity_mask", mask)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return SparseLinearFunction.apply(x, self.weight, self.bias, self.sparsity_mask)

    def extra_repr(self) -> str:
        density = self.sparsity_mask.mean().item()
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"density={density:.2f}"
        )


@register(
    "sparse_linear",
    "MLP of masked Linear layers running a custom autograd.Function with its own backward",
    "003 advanced architectures: SparseLinearFunction",
)
class SparseMLP(nn.Module):
    """A 784-256-10 MLP of two SparseLinear layers (30% and 50% dense) on seed 003's Function.

    The seed only has the Function; the module with a ``sparsity_mask`` buffer and the MLP
    around it are added.
    """

    def __init__(self, in_features: int = 784, hidden: int = 256, num_classes: int = 10) -> None:
        super().__init__()
        self.flatten = nn.Flatten()
        self.fc1 = SparseLinear(in_features, hidden, density=0.3)
        self.act = nn.ReLU()
        self.fc2 = SparseLinear(hidden, num_classes, density=0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(self.flatten(x))))

    def example_input(self, batch_size: int = 4) -> torch.Tensor:
        return torch.randn(batch_size, 1, 28, 28)
