"""Tests the command line as a subprocess: reports, JSON, exports, flags, --list, --check, exit codes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import USER_MODEL_PARAMS, assert_clean_error, run_cli, strict_json, write_file
from torch import nn

import inspectr

LENET_PARAMS = 61_706
LENET_CONV_PARAMS = 156 + 2_416

FAILING_FORWARD = '''\
import torch
from torch import nn


class Broken(nn.Module):
    """fc2 expects 5 features but fc1 gives 8."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(6, 8)
        self.fc2 = nn.Linear(5, 2)

    def forward(self, x):
        return self.fc2(self.fc1(x))

    def example_input(self, batch_size=4):
        return torch.randn(batch_size, 6)
'''


def lenet_params() -> int:
    from sample_models import GALLERY

    return sum(p.numel() for p in GALLERY["lenet"].factory().parameters())


@pytest.fixture(scope="module")
def lenet_json() -> dict:
    proc = run_cli("lenet", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    return strict_json(proc.stdout)


# ---------------------------------------------------------------- text report


def test_report_lenet() -> None:
    proc = run_cli("lenet", "--report")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert lenet_params() == LENET_PARAMS
    assert "(root)" in out and "LeNet" in out
    for child in ("├─ conv1", "├─ conv2", "├─ fc1", "├─ fc2", "└─ fc3"):
        assert child in out, child
    assert "Total params" in out
    assert "61,706" in out
    assert "48,120" in out  # fc1, with its thousands separator
    assert "[4, 10]" in out  # the root's output shape
    assert "\x1b[" not in out  # plain text when not a terminal


# ---------------------------------------------------------------- JSON


def test_json_documented_keys(lenet_json: dict) -> None:
    d = lenet_json
    assert d["schema"] == "inspectr/1"
    assert {"name", "class", "total_params", "trainable_params", "frozen_params"} <= set(d["model"])
    assert d["model"]["class"] == "LeNet"
    assert d["model"]["name"] == "lenet"
    assert isinstance(d["inputs"], list) and d["inputs"] == ["float32[4, 1, 32, 32]"]
    row_keys = {"path", "type", "depth", "params", "own_params", "trainable", "calls", "input_shapes", "output_shapes"}
    for row in d["modules"]:
        assert row_keys <= set(row), row.keys()
        assert row["trainable"] in ("all", "none", "partial", "n/a")
        assert all(isinstance(s, list) for s in row["output_shapes"])
    assert isinstance(d["findings"], list)
    assert {"ok", "error"} <= set(d["probe"])
    assert d["probe"]["ok"] is True and d["probe"]["error"] is None


def test_json_rows_and_totals(lenet_json: dict) -> None:
    d = lenet_json
    rows = {r["path"]: r for r in d["modules"]}
    root = d["modules"][0]
    assert root["path"] == "" and root["depth"] == 0 and root["type"] == "LeNet"
    assert d["model"]["total_params"] == lenet_params() == root["params"]
    assert d["model"]["trainable_params"] == LENET_PARAMS and d["model"]["frozen_params"] == 0
    assert sum(r["own_params"] for r in d["modules"]) == LENET_PARAMS
    assert rows["conv1"]["depth"] == 1 and rows["conv1"]["type"] == "Conv2d"
    assert rows["conv1"]["params"] == rows["conv1"]["own_params"] == 156
    assert rows["conv1"]["calls"] == 1
    assert rows["conv1"]["output_shapes"] == [[4, 6, 28, 28]]
    assert rows["fc3"]["output_shapes"] == [[4, 10]]
    assert root["output_shapes"] == [[4, 10]]
    assert rows["fc1"]["trainable"] == "all"


def test_json_findings_keys_and_no_nan_literals_for_sick_nan() -> None:
    proc = run_cli("sick_nan", "--format", "json")
    assert proc.returncode in (0, 1), proc.stderr
    d = strict_json(proc.stdout)  # raises on NaN / Infinity literals
    assert d["findings"], "sick_nan should have findings"
    for f in d["findings"]:
        assert {"kind", "severity", "module", "message"} <= set(f)
        assert f["severity"] in ("error", "warning", "info")
    assert any(f["kind"] == "nan" for f in d["findings"])
    assert proc.returncode == 1  # a nan is an error finding


# ---------------------------------------------------------------- -o FILE


@pytest.mark.parametrize("fmt", ["text", "markdown", "json", "html", "svg"])
def test_output_file_each_format(tmp_path: Path, fmt: str) -> None:
    out = tmp_path / f"report.{fmt}"
    proc = run_cli("lenet", "--format", fmt, "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert out.exists()
    text = out.read_text(encoding="utf-8")
    assert proc.stdout.strip() == ""  # the report went to the file
    if fmt == "json":
        assert strict_json(text)["model"]["total_params"] == LENET_PARAMS
    elif fmt == "html":
        assert "<html" in text.lower() and "61,706" in text
    elif fmt == "svg":
        assert text.lstrip().startswith("<svg") and "</svg>" in text
    elif fmt == "markdown":
        assert "| Module |" in text and "61,706" in text and "conv1" in text
    else:
        assert "Total params" in text and "61,706" in text and "├─ conv1" in text


# ---------------------------------------------------------------- --depth, user files


def test_user_file_report_guessed_input(user_model: Path) -> None:
    proc = run_cli("model.py:Net", "--report", cwd=user_model.parent)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "Net" in out and f"{USER_MODEL_PARAMS:,}" in out
    assert "float32[4, 12]" in out  # guessed from the first Linear
    assert "deep_fc" in out and "deep_act" in out  # full depth by default


def test_user_file_report_example_input_and_depth(user_model_with_example: Path) -> None:
    proc = run_cli(f"{user_model_with_example}:Net", "--report", "--depth", "1")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "float32[4, 3, 12]" in out  # from Net.example_input
    assert "body" in out and "head" in out
    assert "deep_fc" not in out and "deep_act" not in out  # folded under body
    assert f"{USER_MODEL_PARAMS:,}" in out  # totals still count everything


# ---------------------------------------------------------------- --list, --check, exit codes


def test_list() -> None:
    proc = run_cli("--list")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "sample gallery: healthy" in out
    assert "sample gallery: sick" in out
    assert out.index("sample gallery: healthy") < out.index("sample gallery: sick")
    assert "torchvision" in out
    for family in ("classification:", "video:", "detection:", "segmentation:"):
        assert family in out, family
    assert "resnet18" in out and "lenet" in out
    # lenet is healthy: listed before the sick section; sick_nan after it
    assert out.index("lenet") < out.index("sample gallery: sick") < out.index("sick_nan")


def test_check_sick_exits_1() -> None:
    proc = run_cli("sick_config_driven", "--check")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "FAIL" in proc.stdout
    assert "layers.5" in proc.stdout


def test_check_healthy_exits_0() -> None:
    proc = run_cli("lenet", "--check")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "PASS" in proc.stdout and "61,706" in proc.stdout


def test_failing_forward_exits_1_and_names_module(tmp_path: Path) -> None:
    write_file(tmp_path, "broken.py", FAILING_FORWARD)
    proc = run_cli("broken.py:Broken", "--format", "json", cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    d = strict_json(proc.stdout)
    assert d["probe"]["ok"] is False
    err = d["probe"]["error"]
    assert err["module"] == "fc2" and err["exception"] == "RuntimeError"
    assert err["message"]
    rows = {r["path"]: r for r in d["modules"]}
    assert rows["fc1"]["calls"] == 1 and rows["fc1"]["output_shapes"] == [[4, 8]]  # what ran is kept
    assert "Traceback" not in proc.stderr


# ---------------------------------------------------------------- probe flags


def test_flags_eval_no_backward_batch_size_seed() -> None:
    proc = run_cli("lenet", "--format", "json", "--eval", "--no-backward", "--batch-size", "2", "--seed", "7")
    assert proc.returncode == 0, proc.stderr
    d = strict_json(proc.stdout)
    assert d["probe"]["mode"] == "eval"
    assert d["probe"]["backward"] == "off"
    assert d["probe"]["batch_size"] == 2
    assert d["inputs"] == ["float32[2, 1, 32, 32]"]
    assert all(r["grad_norm"] is None for r in d["modules"])


def test_flags_train_and_input() -> None:
    proc = run_cli("lenet", "--format", "json", "--train", "--input", "3x1x32x32")
    assert proc.returncode == 0, proc.stderr
    d = strict_json(proc.stdout)
    assert d["probe"]["mode"] == "train"
    assert d["probe"]["backward"] == "ran"
    assert d["inputs"] == ["float32[3, 1, 32, 32]"]
    assert d["modules"][0]["output_shapes"] == [[3, 10]]


def test_train_and_eval_are_exclusive() -> None:
    proc = run_cli("lenet", "--report", "--train", "--eval")
    assert proc.returncode == 2
    assert "not allowed with" in proc.stderr


def test_freeze_glob_shows_frozen_totals() -> None:
    proc = run_cli("lenet", "--format", "json", "--freeze", "conv*")
    assert proc.returncode == 0, proc.stderr
    d = strict_json(proc.stdout)
    assert d["model"]["total_params"] == LENET_PARAMS
    assert d["model"]["frozen_params"] == LENET_CONV_PARAMS
    assert d["model"]["trainable_params"] == LENET_PARAMS - LENET_CONV_PARAMS
    rows = {r["path"]: r for r in d["modules"]}
    assert rows["conv1"]["trainable"] == "none" and rows["conv2"]["trainable"] == "none"
    assert rows["fc1"]["trainable"] == "all"
    assert rows[""]["trainable"] == "partial"


def test_help_documents_input_syntax() -> None:
    proc = run_cli("--help")
    assert proc.returncode == 0
    out = proc.stdout
    assert "--input" in out
    assert "[NAME=][DTYPE:]D1,D2,...[:LOW..HIGH]" in out
    assert "int64:2,16:0..1000" in out


# ---------------------------------------------------------------- API-level checks of the same promises


def test_same_seed_same_report_in_process() -> None:
    """The CLI's --seed must make a report reproducible; the API shows it in one process."""

    def stats(**kw: object) -> list:
        d = inspectr.inspect("sample:lenet", **kw).to_dict()
        return [(r["stats"], r["grad_norm"], r["param_grad_norm"]) for r in d["modules"]]

    assert stats(seed=1) == stats(seed=1)


def test_seed_changes_synthesized_inputs() -> None:
    """--help: 'random seed for inputs and the probe'."""
    from sample_models import GALLERY

    model = GALLERY["lenet"].factory()

    def first_stats(seed: int) -> dict:
        return inspectr.inspect(model, seed=seed).to_dict()["modules"][1]["stats"]

    assert first_stats(1) == first_stats(1)
    assert first_stats(1) != first_stats(2)


def test_same_seed_same_input_noise_for_input_specs() -> None:
    model = nn.Sequential(nn.Linear(8, 4), nn.Tanh())

    def stats() -> dict:
        return inspectr.inspect(model, input_specs=["4,8"], seed=3).to_dict()["modules"][1]["stats"]

    assert stats() == stats()


def test_healthy_small_cnn_on_224_images_has_no_error_finding() -> None:
    """A conv, global average pooling and a head: healthy, but RMS through the pooling is ~1/50,000."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 5))
    report = inspectr.inspect(model, inputs=torch.randn(4, 3, 224, 224))
    assert [f.kind for f in report.findings if f.severity == "error"] == []


def test_output_into_a_missing_folder_creates_it(tmp_path) -> None:
    out = tmp_path / "reports" / "today" / "lenet.json"
    proc = run_cli("lenet", "--format", "json", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert strict_json(out.read_text(encoding="utf-8"))["model"]["total_params"] == 61706


def test_output_that_cannot_be_written_is_a_clean_error(tmp_path) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder", encoding="utf-8")
    proc = run_cli("lenet", "-o", str(blocker / "report.txt"))
    assert_clean_error(proc, "-o", "could not be written")
    assert blocker.read_text(encoding="utf-8") == "not a folder"


def test_progress_reaches_the_api_caller_phase_by_phase() -> None:
    import torch
    from torch import nn

    import inspectr

    calls: list[tuple[str, int, int]] = []
    inspectr.inspect("sample:lenet", progress=lambda phase, k, n: calls.append((phase, k, n)))
    assert calls[0] == ("loading the model", 0, 0)
    calls.clear()
    model = nn.Sequential(*[nn.Sequential(nn.Linear(8, 8), nn.ReLU()) for _ in range(100)])  # 301 modules
    inspectr.inspect(model, inputs=torch.randn(2, 8), progress=lambda phase, k, n: calls.append((phase, k, n)))
    phases = [c[0] for c in calls]
    assert phases[-1] == "summary and findings"
    assert phases.index("probe: forward") < phases.index("probe: backward")
    forward = [(k, n) for phase, k, n in calls if phase == "probe: forward"]
    assert forward[0] == (0, 301) and all(0 <= k <= n == 301 for k, n in forward)
    assert [k for k, _ in forward[1:]] == [64, 128, 192, 256]  # told every 64 modules


def test_progress_line_on_a_terminal_and_nothing_on_a_pipe(tmp_path) -> None:
    import os
    import pty
    import subprocess
    import sys

    from conftest import REPO

    main_fd, sub_fd = pty.openpty()
    env = dict(os.environ, PYTHONPATH=str(REPO), COLUMNS="120")
    proc = subprocess.run([sys.executable, "-m", "inspectr", "lenet", "--report", "--depth", "0"],
                          stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=sub_fd, env=env,
                          timeout=180)
    os.close(sub_fd)
    seen = b""
    while True:
        try:
            chunk = os.read(main_fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    os.close(main_fd)
    assert proc.returncode == 0
    text = seen.decode("utf-8", "replace")
    assert "inspectr: loading the model" in text and "inspectr: probe: forward" in text
    assert text.endswith("\r\x1b[2K")  # wiped before the report
    assert b"inspectr:" not in proc.stdout
    piped = run_cli("lenet", "--report", "--depth", "0")
    assert piped.returncode == 0 and "inspectr:" not in piped.stderr


def test_memory_column_when_wide_and_memory_block_always() -> None:
    wide = run_cli("lenet", "--report", env={"COLUMNS": "120"})
    narrow = run_cli("lenet", "--report", env={"COLUMNS": "80"})
    assert wide.returncode == narrow.returncode == 0
    head_wide = wide.stdout.splitlines()[3]
    head_narrow = narrow.stdout.splitlines()[3]
    assert "Memory" in head_wide and "Memory" not in head_narrow
    assert "[4, 10]" in narrow.stdout  # shapes keep their line at 80 columns
    for out in (wide.stdout, narrow.stdout):
        assert "saved for backward at batch 4 (196,160 B)" in out
        assert "Memory  estimate · AdamW (lr 0.001) · float32 · batch 4" in out
