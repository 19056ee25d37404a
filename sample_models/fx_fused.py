"""Provides a small CNN traced with torch.fx whose conv-BatchNorm pairs are fused in the graph."""

from __future__ import annotations

import torch
from torch import fx, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from sample_models._gallery import register


class SmallConvBNNet(nn.Module):
    """The network before fusion: two conv-BN-ReLU blocks, pooling and a Linear."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu1 = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(32)
        self.relu2 = nn.ReLU()
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(32, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.relu1(self.bn1(self.conv1(x))))
        x = self.gap(self.relu2(self.bn2(self.conv2(x))))
        return self.fc(torch.flatten(x, 1))


class FusedGraphModule(fx.GraphModule):
    """A GraphModule that keeps ``example_input``.

    A method attached to a plain GraphModule instance is lost by ``copy.deepcopy`` (it
    rebuilds the module from its graph), and the inspector may copy models; a subclass
    survives because GraphModule's copy keeps the instance's class.
    """

    def example_input(self, batch_size: int = 4) -> torch.Tensor:
        return torch.randn(batch_size, 3, 32, 32)


def fuse_conv_bn(traced: fx.GraphModule) -> fx.GraphModule:
    """Fold every BatchNorm2d that directly follows a Conv2d into that conv, in place.

    The conv must have no other user, otherwise its unfused output would still be needed.
    Fusion is only valid in eval mode (it bakes in the running statistics).
    """
    modules = dict(traced.named_modules())
    for node in list(traced.graph.nodes):
        if node.op != "call_module" or not isinstance(modules[node.target], nn.BatchNorm2d):
            continue
        conv_node = node.args[0]
        if (
            not isinstance(conv_node, fx.Node)
            or conv_node.op != "call_module"
            or not isinstance(modules[conv_node.target], nn.Conv2d)
            or len(conv_node.users) != 1
        ):
            continue
        fused = fuse_conv_bn_eval(modules[conv_node.target], modules[node.target])
        parent_name, _, attr = conv_node.target.rpartition(".")
        setattr(traced.get_submodule(parent_name) if parent_name else traced, attr, fused)
        node.replace_all_uses_with(conv_node)
        traced.graph.erase_node(node)
    traced.graph.lint()
    traced.delete_all_unused_submodules()
    traced.recompile()
    return traced


@register(
    "fx_fused",
    "torch.fx GraphModule of a small CNN with conv-BatchNorm fused (eval mode), 3x32x32",
    "003 advanced architectures: fx ModelOptimizer.fuse_conv_bn_relu",
)
def fx_fused() -> nn.Module:
    """Trace SmallConvBNNet with ``fx.symbolic_trace`` and fuse its conv-BN pairs.

    Fixed vs the seed: the seed's ``Fuser`` matches nothing (``match_pattern`` and
    ``call_module`` are ``pass``, so every module call becomes None); this does the fusion
    on the graph with ``fuse_conv_bn_eval``. The result stays in eval mode, as fusion
    requires; the ReLUs are left as modules.
    """
    model = SmallConvBNNet()
    # One batch in training mode gives the BatchNorms real running statistics; with the
    # initial ones (mean 0, var 1) fusion would barely change the conv weights.
    with torch.no_grad():
        model(torch.randn(16, 3, 32, 32))
    model.eval()
    traced = fx.symbolic_trace(model)
    fused = fuse_conv_bn(traced)
    return FusedGraphModule(fused, fused.graph, class_name="FusedSmallConvBNNet").eval()
