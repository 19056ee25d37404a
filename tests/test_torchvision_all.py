"""Every torchvision model resolves by bare name, gets a synthesized input, reports cleanly (no
false alarm) and comes out of the probe exactly as it went in. One probe per model serves all
three checks: the sweep is most of the suite's time."""

from __future__ import annotations

import re

import pytest
import torch
from test_state import assert_same, snapshot

import inspectr
from inspectr.core.sources.loader import load

# The slowest first (measured on 2 cores), so the workers finish together instead of one
# starting a 40-second model when the other has nothing left.
SLOWEST = ["regnet_y_128gf", "vit_h_14", "maskrcnn_resnet50_fpn_v2", "swin3d_s", "fasterrcnn_resnet50_fpn_v2",
           "swin_v2_b", "fcos_resnet50_fpn", "maskrcnn_resnet50_fpn", "swin_b", "swin3d_b", "efficientnet_b5",
           "inception_v3", "fasterrcnn_resnet50_fpn", "convnext_large", "mvit_v2_s", "retinanet_resnet50_fpn",
           "fcn_resnet101", "swin_v2_s", "deeplabv3_resnet101", "densenet121", "vit_l_16", "resnext101_64x4d",
           "regnet_x_32gf", "keypointrcnn_resnet50_fpn", "retinanet_resnet50_fpn_v2"]


def _names() -> list[str]:
    import torchvision

    names = torchvision.models.list_models()
    rank = {n: i for i, n in enumerate(SLOWEST)}
    return sorted(names, key=lambda n: (rank.get(n, len(rank)), n))


@pytest.mark.slow
@pytest.mark.parametrize("name", _names())
def test_every_torchvision_model_probes_cleanly_and_is_left_untouched(name):
    loaded = load(name)
    model = loaded.model
    for p in list(model.parameters())[1:3]:  # gradients of the user's own, to be kept
        p.grad = torch.full_like(p, 0.5)
    before = snapshot(model)
    r = inspectr.inspect(name, loaded=loaded)
    assert_same(before, snapshot(model))
    assert r.model.source == "torchvision"
    assert r.inputs, "an input was synthesized"
    assert r.probe.ok, r.probe.error
    assert r.modules[0].output_shapes or r.modules[0].output_structure
    assert r.model.total_params == r.modules[0].params
    # every module returning one float32 tensor with values has statistics (channels_last and
    # permuted outputs once had none: convnext_tiny lacked them on 106 of its 203 modules)
    plain = re.compile(r"Tensor\[[1-9][0-9, ]*\]")
    unmeasured = [row.path for row in r.modules if plain.fullmatch(row.output_structure) and row.stats is None
                  and 0 not in row.output_shapes[0]]
    assert unmeasured == []
    loud = [(f.kind, f.module) for f in r.findings if f.severity in ("error", "warning")]
    assert loud == []
