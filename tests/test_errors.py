"""Tests every way a request can be wrong (API: InspectrError; CLI: exit 2, one paragraph), and the spec forms that work."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import (
    USER_MODEL,
    USER_MODEL_PARAMS,
    assert_clean_error,
    run_cli,
    strict_json,
    user_model_params,
    write_file,
)
from torch import nn

import inspectr
from inspectr import InspectrError
from inspectr.core.sources.loader import load

# ---------------------------------------------------------------- files with problems

SYNTAX_ERROR = "import torch\nfrom torch import nn\n\ndef broken(:\n    pass\n"
IMPORT_ERROR = "import torch\nimport not_a_real_pkg_xyz\n\nclass Net(torch.nn.Module):\n    pass\n"
NEEDS_ARGS = '''\
from torch import nn


class Needs(nn.Module):
    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        super().__init__()
        self.fc = nn.Linear(in_features, out_features, bias=bias)

    def forward(self, x):
        return self.fc(x)
'''
NOT_A_MODULE = '''\
def make():
    """Returns a dict, not a model."""
    return {"not": "a model"}
'''
EXTRAS = '''

def make_net():
    """A factory function."""
    return Net(hidden=2)


shared = Net(hidden=3)


def example_input():
    return torch.randn(2, 12)
'''


def api_error(spec: str, **options: object) -> InspectrError:
    with pytest.raises(InspectrError) as info:
        inspectr.inspect(spec, **options)
    assert info.value.exit_code == 2
    return info.value


# ---------------------------------------------------------------- missing file


def test_missing_file_api(tmp_path: Path) -> None:
    spec = f"{tmp_path}/nope.py:Net"
    err = api_error(spec)
    assert "nope.py" in str(err) and "does not exist" in str(err)


def test_missing_file_cli(tmp_path: Path) -> None:
    assert_clean_error(run_cli("nope/model.py:Net", "--report", cwd=tmp_path), "nope/model.py", "does not exist")


# ---------------------------------------------------------------- syntax error


def test_syntax_error_api(tmp_path: Path) -> None:
    path = write_file(tmp_path, "broken.py", SYNTAX_ERROR)
    msg = str(api_error(f"{path}:Net"))
    assert f"{path}:4" in msg
    assert "syntax" in msg.lower()


def test_syntax_error_cli(tmp_path: Path) -> None:
    write_file(tmp_path, "broken.py", SYNTAX_ERROR)
    assert_clean_error(run_cli("broken.py:Net", "--report", cwd=tmp_path), "broken.py:4", "syntax")


# ---------------------------------------------------------------- import error in the user's file


def test_import_error_api(tmp_path: Path) -> None:
    path = write_file(tmp_path, "imports.py", IMPORT_ERROR)
    msg = str(api_error(f"{path}:Net"))
    assert "not_a_real_pkg_xyz" in msg
    assert f"{path}:2" in msg  # the line of the failing import


def test_import_error_cli(tmp_path: Path) -> None:
    write_file(tmp_path, "imports.py", IMPORT_ERROR)
    assert_clean_error(run_cli("imports.py:Net", "--report", cwd=tmp_path), "not_a_real_pkg_xyz", "imports.py:2")


# ---------------------------------------------------------------- name not found


def test_name_not_found_lists_candidates_api(tmp_path: Path) -> None:
    path = write_file(tmp_path, "model.py", USER_MODEL + EXTRAS)
    msg = str(api_error(f"{path}:Nope"))
    assert "'Nope'" in msg
    for candidate in ("Net", "make_net", "shared"):
        assert candidate in msg
    # imported names are not candidates (OrderedDict is a class from another module)
    assert "OrderedDict" not in msg
    assert "example_input" not in msg


def test_name_not_found_cli(tmp_path: Path) -> None:
    write_file(tmp_path, "model.py", USER_MODEL + EXTRAS)
    assert_clean_error(run_cli("model.py:Nope", "--report", cwd=tmp_path), "Nope", "Net", "make_net", "shared")


def test_file_without_name_and_two_classes_lists_them(tmp_path: Path) -> None:
    two = USER_MODEL + "\n\nclass Other(nn.Module):\n    def forward(self, x):\n        return x\n"
    path = write_file(tmp_path, "two.py", two)
    msg = str(api_error(str(path)))
    assert "Net" in msg and "Other" in msg


# ---------------------------------------------------------------- constructor arguments


def test_constructor_needs_arguments_api(tmp_path: Path) -> None:
    path = write_file(tmp_path, "needs.py", NEEDS_ARGS)
    msg = str(api_error(f"{path}:Needs"))
    assert "in_features" in msg and "out_features" in msg
    assert "bias" not in msg.split("--kwargs")[0].split("arguments:")[-1]  # has a default: not required
    assert "--kwargs" in msg


def test_constructor_needs_arguments_cli(tmp_path: Path) -> None:
    write_file(tmp_path, "needs.py", NEEDS_ARGS)
    assert_clean_error(run_cli("needs.py:Needs", "--report", cwd=tmp_path), "in_features", "out_features", "--kwargs")


def test_constructor_arguments_given_work(tmp_path: Path) -> None:
    path = write_file(tmp_path, "needs.py", NEEDS_ARGS)
    report = inspectr.inspect(f"{path}:Needs", kwargs='{"in_features": 6, "out_features": 2}')
    assert report.model.total_params == 6 * 2 + 2
    assert report.probe.ok


def test_unknown_kwarg_named(tmp_path: Path) -> None:
    path = write_file(tmp_path, "needs.py", NEEDS_ARGS)
    msg = str(api_error(f"{path}:Needs", kwargs='{"in_features": 6, "out_features": 2, "nope": 1}'))
    assert "nope" in msg


# ---------------------------------------------------------------- factory returning a non-module


def test_factory_returns_non_module_api(tmp_path: Path) -> None:
    path = write_file(tmp_path, "factory.py", NOT_A_MODULE)
    msg = str(api_error(f"{path}:make"))
    assert "dict" in msg and "nn.Module" in msg


def test_factory_returns_non_module_cli(tmp_path: Path) -> None:
    write_file(tmp_path, "factory.py", NOT_A_MODULE)
    assert_clean_error(run_cli("factory.py:make", "--report", cwd=tmp_path), "dict", "nn.Module")


# ---------------------------------------------------------------- bad --input / --kwargs


@pytest.mark.parametrize("bad", ["2,a,3", "float99:2,3", "", "2,3:5..1", "2,3:0..1:7", "-1,3", "int64:"])
def test_bad_input_syntax_api(user_model: Path, bad: str) -> None:
    msg = str(api_error(f"{user_model}:Net", input_specs=[bad]))
    assert "[NAME=][DTYPE:]D1,D2" in msg


def test_bad_input_syntax_cli(user_model: Path) -> None:
    proc = run_cli("model.py:Net", "--report", "--input", "2,3,x4,y", cwd=user_model.parent)
    assert_clean_error(proc, "--input", "[NAME=][DTYPE:]D1,D2")


@pytest.mark.parametrize("bad", ["{num_classes: 3}", "{'num_classes': 3}", "[1, 2]", "3", "{\"a\": 1"])
def test_bad_kwargs_json_api(user_model: Path, bad: str) -> None:
    msg = str(api_error(f"{user_model}:Net", kwargs=bad))
    assert "--kwargs" in msg and "JSON" in msg


def test_bad_kwargs_json_cli(user_model: Path) -> None:
    proc = run_cli("model.py:Net", "--report", "--kwargs", "{num_classes: 3}", cwd=user_model.parent)
    assert_clean_error(proc, "--kwargs", "JSON")


def test_kwargs_never_evaluated(user_model: Path, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    api_error(f"{user_model}:Net", kwargs=f"__import__('pathlib').Path({str(marker)!r}).touch()")
    assert not marker.exists()


# ---------------------------------------------------------------- weights


def _net_state(user_model: Path) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in load(f"{user_model}:Net").model.state_dict().items()}


def _mismatched_weights(user_model: Path, tmp_path: Path) -> Path:
    sd = _net_state(user_model)
    del sd["head.weight"], sd["head.bias"]
    for i in range(7):
        sd[f"junk.{i}.weight"] = torch.zeros(2)
    path = tmp_path / "bad.pth"
    torch.save(sd, path)
    return path


def test_weights_mismatch_api(user_model: Path, tmp_path: Path) -> None:
    path = _mismatched_weights(user_model, tmp_path)
    msg = str(api_error(f"{user_model}:Net", weights=str(path)))
    assert "2 missing" in msg and "head.weight" in msg and "head.bias" in msg
    assert "7 unexpected" in msg and "junk.0.weight" in msg
    assert "2 more" in msg  # only the first five are named


def test_weights_mismatch_cli(user_model: Path, tmp_path: Path) -> None:
    path = _mismatched_weights(user_model, tmp_path)
    proc = run_cli("model.py:Net", "--report", "--weights", path.name, cwd=tmp_path)
    assert_clean_error(proc, "2 missing", "head.weight", "7 unexpected")


def test_weights_wrong_shape_named(user_model: Path, tmp_path: Path) -> None:
    sd = {k: v.clone() for k, v in load(f"{user_model}:Net", kwargs={"num_classes": 7}).model.state_dict().items()}
    path = tmp_path / "shape.pth"
    torch.save(sd, path)
    msg = str(api_error(f"{user_model}:Net", weights=str(path)))
    assert "head.weight" in msg and "(7, 8)" in msg and "(5, 8)" in msg


def test_checkpoint_dict_with_model_state_dict_loads(user_model: Path, tmp_path: Path) -> None:
    sd = {k: torch.full_like(v, 0.5) for k, v in _net_state(user_model).items()}
    path = tmp_path / "ckpt.pth"
    torch.save({"epoch": 3, "model_state_dict": sd, "optimizer_state_dict": {"lr": 0.1}}, path)
    loaded = load(f"{user_model}:Net", weights=str(path))
    for k, v in loaded.model.state_dict().items():
        assert torch.equal(v, sd[k]), k
    report = inspectr.inspect(f"{user_model}:Net", weights=str(path))
    assert report.model.total_params == USER_MODEL_PARAMS
    assert any("weights loaded" in n for n in report.probe.notes)


def test_ddp_module_prefix_loads(user_model: Path, tmp_path: Path) -> None:
    sd = {f"module.{k}": torch.full_like(v, -0.25) for k, v in _net_state(user_model).items()}
    path = tmp_path / "ddp.pth"
    torch.save(sd, path)
    loaded = load(f"{user_model}:Net", weights=str(path))
    for k, v in loaded.model.state_dict().items():
        assert torch.equal(v, sd[f"module.{k}"]), k


def test_weights_file_missing(user_model: Path, tmp_path: Path) -> None:
    msg = str(api_error(f"{user_model}:Net", weights=str(tmp_path / "none.pth")))
    assert "none.pth" in msg


# ---------------------------------------------------------------- whole pickled models


def _pickled(tmp_path: Path) -> Path:
    path = tmp_path / "whole.pt"
    torch.save(nn.Sequential(nn.Linear(6, 3), nn.ReLU()), path)
    return path


def test_pickled_model_needs_trust_api(tmp_path: Path) -> None:
    path = _pickled(tmp_path)
    assert "--trust-pickle" in str(api_error(str(path)))
    report = inspectr.inspect(str(path), trust_pickle=True)
    assert report.model.total_params == 6 * 3 + 3
    assert report.probe.ok


def test_pickled_model_needs_trust_cli(tmp_path: Path) -> None:
    _pickled(tmp_path)
    assert_clean_error(run_cli("whole.pt", "--report", cwd=tmp_path), "--trust-pickle")


def test_pickled_model_with_trust_cli(tmp_path: Path) -> None:
    _pickled(tmp_path)
    proc = run_cli("whole.pt", "--trust-pickle", "--format", "json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert strict_json(proc.stdout)["model"]["total_params"] == 21


def test_pickled_model_given_as_weights_says_trust_pickle(user_model: Path, tmp_path: Path) -> None:
    path = _pickled(tmp_path)
    assert "--trust-pickle" in str(api_error(f"{user_model}:Net", weights=str(path)))


# ---------------------------------------------------------------- registered names


def test_unknown_registered_name_suggests_api() -> None:
    msg = str(api_error("resnet19"))
    assert "resnet19" in msg and "resnet18" in msg


def test_unknown_registered_name_suggests_cli() -> None:
    assert_clean_error(run_cli("resnet19", "--report"), "resnet19", "resnet18", "--list")


def test_unknown_sample_name_suggests() -> None:
    assert "lenet" in str(api_error("sample:lenett"))


def test_unknown_prefix_is_a_clear_error() -> None:
    # `word:Name` reads as an importable module and its attribute
    assert "nosuchsource" in str(api_error("nosuchsource:lenet"))


# ---------------------------------------------------------------- devices


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_cuda_without_cuda_api() -> None:
    assert "CUDA" in str(api_error("sample:lenet", device="cuda"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_cuda_without_cuda_cli() -> None:
    assert_clean_error(run_cli("lenet", "--report", "--device", "cuda"), "CUDA", "--device cpu")


def test_unknown_device() -> None:
    assert "tpu" in str(api_error("sample:lenet", device="tpu"))


# ---------------------------------------------------------------- spec forms that work


def test_module_level_instance_spec(tmp_path: Path) -> None:
    path = write_file(tmp_path, "model.py", USER_MODEL + EXTRAS)
    report = inspectr.inspect(f"{path}:shared")
    assert report.model.total_params == user_model_params(hidden=3)
    assert report.model.class_name == "Net"
    assert report.probe.ok


def test_module_level_instance_rejects_kwargs(tmp_path: Path) -> None:
    path = write_file(tmp_path, "model.py", USER_MODEL + EXTRAS)
    assert "--kwargs" in str(api_error(f"{path}:shared", kwargs={"hidden": 2}))


def test_factory_function_spec(tmp_path: Path) -> None:
    path = write_file(tmp_path, "model.py", USER_MODEL + EXTRAS)
    report = inspectr.inspect(f"{path}:make_net")
    assert report.model.total_params == user_model_params(hidden=2)
    assert report.probe.ok
    assert report.inputs == ("float32[2, 12]",)  # the file's example_input()


def test_file_spec_without_name_uses_the_only_class(user_model: Path) -> None:
    report = inspectr.inspect(str(user_model))
    assert report.model.class_name == "Net"
    assert report.model.total_params == USER_MODEL_PARAMS
    assert report.probe.ok


def test_file_spec_without_name_cli(user_model: Path) -> None:
    proc = run_cli("model.py", "--format", "json", cwd=user_model.parent)
    assert proc.returncode == 0, proc.stderr
    assert strict_json(proc.stdout)["model"]["total_params"] == USER_MODEL_PARAMS


def _package(tmp_path: Path, name: str) -> Path:
    root = tmp_path / "site"
    write_file(root, f"{name}/__init__.py", "")
    write_file(root, f"{name}/nets.py", USER_MODEL + EXTRAS)
    return root


def test_package_module_spec_api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _package(tmp_path, "inspectr_testpkg_api")
    monkeypatch.syspath_prepend(str(root))
    report = inspectr.inspect("inspectr_testpkg_api.nets:Net")
    assert report.model.total_params == USER_MODEL_PARAMS
    assert report.probe.ok
    report = inspectr.inspect("inspectr_testpkg_api.nets:make_net")
    assert report.model.total_params == user_model_params(hidden=2)


def test_package_module_spec_cli(tmp_path: Path) -> None:
    root = _package(tmp_path, "inspectr_testpkg_cli")
    proc = run_cli("inspectr_testpkg_cli.nets:Net", "--format", "json", cwd=tmp_path, env={"PYTHONPATH": str(root)})
    assert proc.returncode == 0, proc.stderr
    assert strict_json(proc.stdout)["model"]["total_params"] == USER_MODEL_PARAMS


def test_package_module_not_importable() -> None:
    assert "inspectr_no_such_pkg" in str(api_error("inspectr_no_such_pkg.nets:Net"))


# ---------------------------------------------------------------- --debug


def test_debug_shows_traceback(tmp_path: Path) -> None:
    write_file(tmp_path, "imports.py", IMPORT_ERROR)
    proc = run_cli("imports.py:Net", "--report", "--debug", cwd=tmp_path)
    assert proc.returncode == 2
    assert "Traceback" in proc.stderr
    assert "not_a_real_pkg_xyz" in proc.stderr
    assert proc.stderr.rstrip().splitlines()[-1].startswith("error:")
