"""Every torchvision model resolves by bare name, gets a synthesized input and reports cleanly."""

from __future__ import annotations

import pytest

import inspectr


def _names() -> list[str]:
    import torchvision

    return torchvision.models.list_models()


@pytest.mark.slow
@pytest.mark.parametrize("name", _names())
def test_every_torchvision_model_probes_without_false_alarm(name):
    r = inspectr.inspect(name)
    assert r.model.source == "torchvision"
    assert r.inputs, "an input was synthesized"
    assert r.probe.ok, r.probe.error
    assert r.modules[0].output_shapes or r.modules[0].output_structure
    assert r.model.total_params == r.modules[0].params
    loud = [(f.kind, f.module) for f in r.findings if f.severity in ("error", "warning")]
    assert loud == []
