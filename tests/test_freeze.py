"""Tests freeze plans (plan_from_model / save / load / apply) and --freeze / --unfreeze globs on a real model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from torch import nn
from torchvision.models import resnet18

import inspectr
from inspectr import InspectrError
from inspectr.core.freeze import (
    PLAN_SCHEMA,
    FreezePlan,
    apply_globs,
    apply_plan,
    load_plan,
    matching_paths,
    plan_from_model,
    save_plan,
)


def flags(model: nn.Module) -> dict[str, bool]:
    return {n: p.requires_grad for n, p in model.named_parameters()}


@pytest.fixture(scope="module")
def fresh_flags() -> dict[str, bool]:
    return flags(resnet18(weights=None))


def frozen_layer1_but_bn() -> nn.Module:
    m = resnet18(weights=None)
    for p in m.layer1.parameters():
        p.requires_grad_(False)
    for p in m.layer1[0].bn1.parameters():
        p.requires_grad_(True)
    return m


def test_plan_round_trip(tmp_path: Path) -> None:
    src = frozen_layer1_but_bn()
    want = flags(src)
    assert not want["layer1.0.conv1.weight"] and want["layer1.0.bn1.weight"] and want["layer2.0.conv1.weight"]
    plan = plan_from_model(src)
    path = save_plan(plan, tmp_path / "plan.json")
    data = json.loads(path.read_text())
    assert data["schema"] == PLAN_SCHEMA
    assert all(set(e) == {"path", "trainable"} for e in data["modules"])
    loaded = load_plan(path)
    assert loaded == plan
    target = resnet18(weights=None)
    apply_plan(target, loaded)
    assert flags(target) == want
    # the plan is smaller than one entry per parameter
    assert len(plan.entries) < sum(1 for n in want if n.startswith("layer1."))


def test_plan_is_small_for_a_whole_frozen_subtree() -> None:
    m = resnet18(weights=None)
    m.layer1.requires_grad_(False)
    assert plan_from_model(m).entries == (("layer1", False),)


def test_plan_of_untouched_model_is_empty(fresh_flags: dict[str, bool]) -> None:
    assert plan_from_model(resnet18(weights=None)).entries == ()


def test_plan_of_fully_frozen_model_round_trips(tmp_path: Path) -> None:
    m = resnet18(weights=None)
    m.requires_grad_(False)
    plan = load_plan(save_plan(plan_from_model(m), tmp_path / "p.json"))
    target = resnet18(weights=None)
    apply_plan(target, plan)
    assert not any(flags(target).values())


def test_plan_later_entries_win_and_parameter_paths() -> None:
    m = resnet18(weights=None)
    apply_plan(m, FreezePlan((("layer1", False), ("layer1.0.bn1", True), ("fc.bias", False))))
    f = flags(m)
    assert f["layer1.0.bn1.weight"] and f["layer1.0.bn1.bias"]
    assert not f["layer1.0.conv1.weight"] and not f["layer1.1.bn2.weight"]
    assert f["fc.weight"] and not f["fc.bias"]
    assert f["layer2.0.conv1.weight"]


def test_plan_naming_unknown_path_is_an_error() -> None:
    with pytest.raises(InspectrError) as info:
        apply_plan(resnet18(weights=None), FreezePlan((("layer9", False),)))
    assert "layer9" in str(info.value)


@pytest.mark.parametrize("content", ["not json", '{"modules": "x"}', '{"modules": [{"path": "fc"}]}', "[]",
                                     '{"modules": [{"path": "fc", "trainable": "no"}]}'])
def test_load_plan_bad_file(tmp_path: Path, content: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(InspectrError) as info:
        load_plan(path)
    assert "bad.json" in str(info.value)


def test_load_plan_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InspectrError):
        load_plan(tmp_path / "none.json")


def test_globs_freeze_then_unfreeze(fresh_flags: dict[str, bool]) -> None:
    m = resnet18(weights=None)
    apply_globs(m, ["layer1.*"], ["*.bn*"])
    f = flags(m)
    for name, on in f.items():
        if name.startswith("layer1.") and ".bn" not in name:
            assert not on, name
        else:
            assert on, name
    assert f["layer1.0.bn1.weight"] and f["layer1.1.bn2.bias"]
    assert not f["layer1.0.conv1.weight"] and not f["layer1.1.conv2.weight"]


def test_globs_bn_matches_nested_not_top_level() -> None:
    m = resnet18(weights=None)
    paths = matching_paths(m, "*.bn*")
    assert "layer1.0.bn1" in paths and "layer4.1.bn2" in paths
    assert "bn1" not in paths  # the glob needs a dot before bn
    apply_globs(m, ["*.bn*"], [])
    f = flags(m)
    assert not f["layer3.1.bn1.weight"] and f["bn1.weight"] and f["layer3.1.conv1.weight"]


def test_glob_star_covers_root() -> None:
    m = nn.Linear(3, 2)  # no submodules: '*' still means everything
    apply_globs(m, ["*"], [])
    assert not any(flags(m).values())


@pytest.mark.parametrize(("freeze", "unfreeze", "flag"), [(["nomatch*"], [], "--freeze"),
                                                          (["layer1.*"], ["zzz"], "--unfreeze")])
def test_glob_matching_nothing_is_an_error(freeze: list[str], unfreeze: list[str], flag: str) -> None:
    with pytest.raises(InspectrError) as info:
        apply_globs(resnet18(weights=None), freeze, unfreeze)
    msg = str(info.value)
    assert flag in msg and (freeze + unfreeze)[-1] in msg


def test_inspect_freeze_option_counts_frozen() -> None:
    total = sum(p.numel() for p in resnet18(weights=None).parameters())
    layer1 = sum(p.numel() for p in resnet18(weights=None).layer1.parameters())
    r = inspectr.inspect("resnet18", freeze=["layer1"], probe=False)
    assert r.model.total_params == total
    assert r.model.frozen_params == layer1
    assert r.module("layer1").trainable == "none" and r.module("").trainable == "partial"


def test_inspect_freeze_plan_option(tmp_path: Path) -> None:
    path = save_plan(plan_from_model(frozen_layer1_but_bn()), tmp_path / "plan.json")
    r = inspectr.inspect("resnet18", freeze_plan=str(path), probe=False)
    assert r.module("layer1").trainable == "partial"
    assert r.module("layer1.0.bn1").trainable == "all"
    assert r.module("layer1.1").trainable == "none"


def test_inspect_freeze_leaves_the_given_model_alone() -> None:
    m = resnet18(weights=None)
    before = flags(m)
    r = inspectr.inspect(m, freeze=["layer1"], probe=False)
    assert r.model.frozen_params > 0
    assert flags(m) == before


def test_public_freeze_module() -> None:
    import inspectr.core.freeze as core
    import inspectr.freeze as public

    for name in ("load_plan", "apply_plan", "save_plan", "plan_from_model", "FreezePlan"):
        assert getattr(public, name) is getattr(core, name)
