"""Provides the models that are healthy at step 0 and sick once they train (``inspectr NAME --steps``).

Each declares how it is trained (``example_training``: the learning rate that breaks it) and the
finding the training steps must report; ``sick_frozen_bn`` is the seeds' transfer-learning
recipe, which the step-0 probe already flags.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from sample_models._gallery import register
from sample_models.sick import GuardedSqrt


class Exp(nn.Module):
    """``exp(x)``: turns a log-variance into a variance."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.exp(x)


class GaussianHead(nn.Module):
    """Predicts a mean and a variance (the exponential of a predicted log-variance)."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.mean = nn.Linear(hidden, 1)
        self.log_var = nn.Linear(hidden, 1)
        self.variance = Exp()

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.mean(h), self.variance(self.log_var(h))


@register(
    "sick_diverging",
    "Gaussian-NLL regressor trained with SGD at lr 2: exp of the log-variance overflows at step 16",
    "002 PyTorch nn basics: training loop (optimizer lr)",
    healthy=False,
    expected=("diverging", "head.variance"),
    needs_steps=True,
)
class DivergingGaussianRegressor(nn.Module):
    """A heteroscedastic regressor (mean and variance heads, Gaussian negative log-likelihood),
    healthy at step 0, with a learning rate far too high for it (SGD, lr 2).

    The loss falls for a dozen steps while the updates overshoot further and further; at step
    16 the log-variance passes ~88 and ``head.variance`` (``exp``) overflows to inf from finite
    inputs, so the loss turns Inf. ``inspectr sick_diverging --steps`` names that step and module.
    """

    example_training: dict[str, Any] = {"optimizer": "sgd", "lr": 2.0, "steps": 20}

    def __init__(self, in_features: int = 16, hidden: int = 64) -> None:
        super().__init__()
        self.in_features = in_features
        self.body = nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())
        self.head = GaussianHead(hidden)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.head(self.body(x))

    def example_input(self, batch_size: int = 4) -> torch.Tensor:
        return torch.randn(max(batch_size, 32), self.in_features)

    def example_target(self, batch_size: int = 4) -> torch.Tensor:
        return torch.randn(max(batch_size, 32), 1)

    @staticmethod
    def loss_fn(output: tuple[torch.Tensor, torch.Tensor], target: torch.Tensor) -> torch.Tensor:
        mean, variance = output
        return F.gaussian_nll_loss(mean, target, variance)


@register(
    "sick_dying_relu",
    "ReLU MLP trained with SGD at lr 1: one large update kills every unit of act2 by step 4",
    "002 PyTorch nn basics: MLP and training loop",
    healthy=False,
    expected=("dying_units", "act2"),
    needs_steps=True,
)
class DyingReLURegressor(nn.Module):
    """An MLP regressor (seed 002's shape) whose ReLUs are all alive at step 0; SGD at lr 1 makes
    the third update so large that ``fc2``'s pre-activations fall below zero for every sample:
    ``act2`` is dead from then on, ``fc1``/``fc2`` get no more gradient and the loss stalls."""

    example_training: dict[str, Any] = {"optimizer": "sgd", "lr": 1.0, "steps": 20}

    def __init__(self, in_features: int = 16, hidden: int = 64) -> None:
        super().__init__()
        self.in_features = in_features
        self.fc1 = nn.Linear(in_features, hidden)
        self.act1 = nn.ReLU()
        self.fc2 = nn.Linear(hidden, hidden)
        self.act2 = nn.ReLU()
        self.head = nn.Linear(hidden, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.act2(self.fc2(self.act1(self.fc1(x)))))

    def example_input(self, batch_size: int = 4) -> torch.Tensor:
        # at least 16 samples per unit: dead units are judged only then
        return torch.randn(max(batch_size, 32), self.in_features)


@register(
    "sick_nan_grad_training",
    "MLP with a torch.where-guarded sqrt, positive at step 0: a unit crosses zero and gradients turn NaN at step 15",
    "002 PyTorch nn basics: custom nn.Module and training loop",
    healthy=False,
    expected=("nonfinite_grad", "compress"),
    needs_steps=True,
)
class SqrtFeatureRegressor(nn.Module):
    """An MLP regressor that compresses its hidden features with ``GuardedSqrt``
    (``torch.where(x > 0, sqrt(x), 0)``). ``fc2``'s bias starts at 2, so every input of
    ``compress`` is positive and step 0 is healthy; AdamW at lr 0.005 lowers the loss for 14
    steps, then one pre-activation falls below zero, and sqrt's NaN gradient there (the branch
    torch.where did not pick still gets 0 times it) makes ``fc2``'s and ``fc1``'s gradients NaN at
    step 15 while the loss is finite. ``inspectr sick_nan_grad_training --steps`` names the step
    and ``compress``."""

    example_training: dict[str, Any] = {"optimizer": "adamw", "lr": 0.005, "steps": 20}

    def __init__(self, in_features: int = 16, hidden: int = 64) -> None:
        super().__init__()
        self.in_features = in_features
        self.fc1 = nn.Linear(in_features, hidden)
        self.act1 = nn.ReLU()
        self.fc2 = nn.Linear(hidden, hidden)
        self.compress = GuardedSqrt()
        self.head = nn.Linear(hidden, 1)
        with torch.no_grad():
            self.fc2.bias.fill_(2.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.compress(self.fc2(self.act1(self.fc1(x)))))

    def example_input(self, batch_size: int = 4) -> torch.Tensor:
        return torch.randn(max(batch_size, 32), self.in_features)


@register(
    "sick_relu_output",
    "regressor of log-probabilities whose nn.Sequential ends in ReLU: targets below 0, every output unit dies",
    "002 PyTorch nn basics: Sequential and MSELoss",
    healthy=False,
    expected=("dying_units", "net.3"),
    needs_steps=True,
)
class ReLUOutputRegressor(nn.Module):
    """An MLP regressor whose ``nn.Sequential`` repeats ``Linear, ReLU`` once too often: the ReLU
    after the last Linear (``net.3``) clips every output at 0, while its targets, 8
    log-probabilities, are all below 0. One output unit in 8 is 0 for every sample at step 0; AdamW
    at lr 0.003 pushes the others below zero too, where ReLU passes no gradient back: after 20
    steps every output is 0 for every sample, and the loss stays near the mean squared target."""

    example_training: dict[str, Any] = {"optimizer": "adamw", "lr": 0.003, "steps": 20}

    def __init__(self, in_features: int = 16, hidden: int = 64, outputs: int = 8) -> None:
        super().__init__()
        self.in_features = in_features
        self.outputs = outputs
        self.net = nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(), nn.Linear(hidden, outputs), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def example_input(self, batch_size: int = 4) -> torch.Tensor:
        # at least 16 samples per unit: dead units are judged only then
        return torch.randn(max(batch_size, 32), self.in_features)

    def example_target(self, batch_size: int = 4) -> torch.Tensor:
        # log-probabilities: all below 0
        return torch.log(torch.rand(max(batch_size, 32), self.outputs) * 0.9 + 0.05)


@register(
    "sick_not_learning",
    "classifier ending in nn.Softmax, trained with cross-entropy: softmax twice, the loss barely moves",
    "002 PyTorch nn basics: Sequential and CrossEntropyLoss",
    healthy=False,
    expected=("not_learning", "net.5"),
    needs_steps=True,
)
class DoubleSoftmaxClassifier(nn.Module):
    """An MLP classifier whose ``nn.Sequential`` ends in ``nn.Softmax(dim=1)``: trained with
    cross-entropy (which applies its own softmax) its scores live in [0, 1], the gradients are
    tiny and the loss on one batch hardly falls (the raw-logit twin drops well below 90% of its
    start in the same 20 steps)."""

    def __init__(self, in_features: int = 32, hidden: int = 64, num_classes: int = 10) -> None:
        super().__init__()
        self.in_features = in_features
        self.net = nn.Sequential(
            nn.Linear(in_features, hidden), nn.ReLU(),
            nn.Linear(hidden, hidden), nn.ReLU(),
            nn.Linear(hidden, num_classes), nn.Softmax(dim=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def example_input(self, batch_size: int = 4) -> torch.Tensor:
        return torch.randn(max(batch_size, 16), self.in_features)


@register(
    "sick_frozen_bn",
    "the seeds' transfer-learning recipe: ResNet-18 frozen, new fc, trained in train mode (BN stats drift)",
    "001 classic models: 5.2 transfer learning, freeze ResNet-18 and replace fc",
    healthy=False,
    expected=("frozen_batchnorm_updating", ""),
)
def sick_frozen_bn() -> nn.Module:
    """Seed 001's fine-tuning recipe with ``weights=None`` (nothing is downloaded): every
    ResNet-18 parameter gets ``requires_grad = False``, ``fc`` becomes ``nn.Linear(512, 2)``, and
    the model trains in train mode with SGD (lr 0.001, momentum 0.9) on the new head. The
    backbone's 20 BatchNorm layers still run in train mode, so their running statistics follow
    every batch: the "frozen" features drift. The fix is ``model.eval()`` on the backbone (or
    the BatchNorm layers) after ``model.train()``.
    """
    from torchvision.models import resnet18

    model = resnet18(weights=None)
    for param in model.parameters():
        param.requires_grad = False
    model.fc = nn.Linear(model.fc.in_features, 2)
    model.example_input = _small_images  # type: ignore[method-assign]
    model.example_training = {"optimizer": "sgd", "lr": 0.001, "momentum": 0.9, "steps": 20}  # type: ignore[assignment]
    return model


def _small_images(batch_size: int = 4) -> torch.Tensor:
    """112x112 images: the recipe's point needs no 224x224 (and the steps run four times faster)."""
    return torch.randn(batch_size, 3, 112, 112)
