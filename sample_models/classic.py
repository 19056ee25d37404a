"""Provides the classic small networks: LeNet, a dropout MLP, a BatchNorm MLP and a CIFAR CNN."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sample_models._gallery import register


@register(
    "lenet",
    "LeNet-5 for 1x32x32 digits, functional relu and max-pool",
    "001 PyTorch classic models: LeNet",
)
class LeNet(nn.Module):
    """LeNet from seed 001, kept as written (functional ``F.relu``/``F.max_pool2d``).

    Fixed vs the seed: ``x.view(-1, 400)`` became ``flatten(1)`` so a wrong input size fails
    in ``fc1`` instead of silently changing the batch size.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)

    def example_input(self, batch_size: int = 4) -> torch.Tensor:
        return torch.randn(batch_size, 1, 32, 32)


@register(
    "mlp",
    "784-128-64-10 MLP with ReLU modules and dropout",
    "002 PyTorch nn basics: MLP",
)
class MLP(nn.Module):
    """The MLP from seed 002.

    Fixed vs the seed: the seed reuses one 128-wide hidden size for both hidden layers;
    this one narrows to 64 as the Sequential example of the same seed does (784-128-64-10).
    """

    def __init__(self, input_size: int = 784, hidden_sizes: tuple[int, int] = (128, 64),
                 output_size: int = 10) -> None:
        super().__init__()
        self.fc1 = nn.Linear(input_size, hidden_sizes[0])
        self.fc2 = nn.Linear(hidden_sizes[0], hidden_sizes[1])
        self.fc3 = nn.Linear(hidden_sizes[1], output_size)
        self.relu = nn.ReLU()
        self.dropout = nn.Dropout(0.2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.dropout(self.relu(self.fc1(x)))
        x = self.dropout(self.relu(self.fc2(x)))
        return self.fc3(x)

    def example_input(self, batch_size: int = 4) -> torch.Tensor:
        return torch.randn(batch_size, 784)


@register(
    "fc_bn",
    "Flatten + Linear + BatchNorm1d + relu on 28x28 images, then a classifier",
    "004 building networks: FCModel",
)
class FCModel(nn.Module):
    """The FCModel from seed 004.

    Fixed vs the seed: the seed stops at the 300-wide hidden layer and returns its ReLU
    output; a classifier Linear(300, 10) now makes it a model you can train.
    """

    def __init__(self, in_dim: int = 784, n_hidden: int = 300, out_dim: int = 10) -> None:
        super().__init__()
        self.flatten = nn.Flatten()
        self.linear1 = nn.Linear(in_dim, n_hidden)
        self.bn1 = nn.BatchNorm1d(n_hidden)
        self.classifier = nn.Linear(n_hidden, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.flatten(x)
        x = F.relu(self.bn1(self.linear1(x)))
        return self.classifier(x)

    def example_input(self, batch_size: int = 4) -> torch.Tensor:
        # BatchNorm1d in training mode needs more than one sample per channel.
        return torch.randn(max(batch_size, 2), 1, 28, 28)


@register(
    "cifar_cnn",
    "three conv-BatchNorm-ReLU-pool blocks with an AdaptiveAvgPool head, 3x32x32",
    "002 PyTorch nn basics: ImageClassifier",
)
class CifarCNN(nn.Module):
    """The ImageClassifier from seed 002, unchanged apart from the class name."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 32, 3, padding=1),
            nn.BatchNorm2d(32),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2, 2),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.BatchNorm2d(64),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2, 2),
            nn.Conv2d(64, 128, 3, padding=1),
            nn.BatchNorm2d(128),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2, 2),
        )
        self.classifier = nn.Sequential(
            nn.AdaptiveAvgPool2d((1, 1)),
            nn.Flatten(),
            nn.Linear(128, 256),
            nn.ReLU(inplace=True),
            nn.Dropout(0.5),
            nn.Linear(256, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))

    def example_input(self, batch_size: int = 4) -> torch.Tensor:
        return torch.randn(batch_size, 3, 32, 32)
