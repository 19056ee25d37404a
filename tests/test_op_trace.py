"""The operation and the line (issue 22): every NaN, Inf and forward error traced to the torch call
and the user's source line, in the probe, ``--steps``, the watch, the report and the app.

Each model marks its culprit line with a ``# culprit`` comment; the expected line number is found
from the source (``inspect.getsourcelines``), never written down.
"""

from __future__ import annotations

import inspect as pyinspect
import json
import os
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import inspectr
from inspectr.core.probe.run import run_probe


def line_of(obj: Any, marker: str = "# culprit") -> int:
    """The line number of the first line of ``obj``'s source holding ``marker``."""
    lines, first = pyinspect.getsourcelines(obj)
    return first + next(i for i, text in enumerate(lines) if marker in text)


def the(findings: Any, kind: str) -> Any:
    (f,) = [f for f in findings if f.kind == kind]
    return f


class Log(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc(x)
        y = torch.log(h)  # culprit
        return y * 2.0  # passes the NaN on: not named


class Sqrt(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc(x)
        return h.sqrt() + 1.0  # culprit


class ExpOverflow(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc(x)
        return torch.exp(h * 1000.0)  # culprit


class ZeroOverZero(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc(x)
        centred = h - h
        return centred / centred  # culprit


@pytest.mark.parametrize(("model", "kind", "op", "written"), [
    (Log, "nan", "torch.log", "torch.log(h)"),
    (Sqrt, "nan", "Tensor.sqrt", "h.sqrt()"),
    (ExpOverflow, "inf", "torch.exp", "torch.exp(h * 1000.0)"),
    (ZeroOverZero, "nan", "/", "centred / centred"),
])
def test_forward_nan_and_inf_name_the_call_and_the_line(model: type[nn.Module], kind: str, op: str,
                                                        written: str) -> None:
    torch.manual_seed(0)
    m = model()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    r = inspectr.inspect(m, inputs=torch.randn(4, 8))
    f = the(r.findings, kind)
    d = f.detail
    assert (f.module, d["op"], d["op_created"], d["op_module"]) == ("", op, True, "")
    src = d["source"]
    assert (src["file"], src["line"], src["function"]) == (__file__, line_of(model.forward), "forward")
    assert src["code"][src["col"]:src["end_col"]] == written  # the caret sits under the call
    assert d["operands"][0] == [4, 8]
    assert f"test_op_trace.py:{src['line']}" in f.message and f"`{written}`" in f.message
    # the replay leaves no trace: no hook, no gradient, the same values
    assert all(not x._forward_hooks and not x._forward_pre_hooks for x in m.modules())
    assert all(p.grad is None for p in m.parameters())
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())


class LogModule(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.log(x)  # culprit


class Scale(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 3.0 + torch.exp(x)  # only passes the NaN on


def test_a_nan_made_in_one_module_and_passed_through_the_next_names_only_the_creator() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 8), LogModule(), Scale(), nn.Linear(8, 2))
    r = inspectr.inspect(model, inputs=torch.randn(4, 8))
    assert [(f.kind, f.module) for f in r.findings if f.kind in ("nan", "inf")] == [("nan", "1")]
    d = the(r.findings, "nan").detail
    assert (d["op"], d["op_created"], d["op_module"]) == ("torch.log", True, "1")
    assert d["source"]["line"] == line_of(LogModule.forward)


class MaskedThenLog(nn.Module):
    """A -inf mask that softmax makes finite again, then a log of negatives: the log is named."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scores = x @ x.transpose(-1, -2)
        mask = torch.ones_like(scores, dtype=torch.bool).triu(1)
        p = scores.masked_fill(mask, float("-inf")).softmax(-1)
        return torch.log(p - 0.5)  # culprit


def test_an_inf_that_is_made_finite_again_is_not_the_culprit() -> None:
    r = run_probe(MaskedThenLog(), (torch.randn(2, 5, 4),), {})
    assert r.op_trace is not None and r.op_trace.inf is None
    assert r.op_trace.nan is not None and r.op_trace.nan.op == "torch.log"
    assert r.op_trace.nan.source is not None and r.op_trace.nan.source.line == line_of(MaskedThenLog.forward)


class SoftmaxByHand(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e = torch.exp(x * 200.0)  # makes the Inf
        return e / e.sum(-1, keepdim=True)  # culprit: Inf / Inf


def test_a_nan_made_from_inf_names_both_calls() -> None:
    torch.manual_seed(0)
    r = inspectr.inspect(SoftmaxByHand(), inputs=torch.randn(4, 8), backward=False)
    d = the(r.findings, "nan").detail
    assert (d["op"], d["op_created"], d["source"]["line"]) == ("/", True, line_of(SoftmaxByHand.forward))
    assert d["from_inf"]["op"] == "torch.exp"
    assert d["from_inf"]["source"]["line"] == line_of(SoftmaxByHand.forward, "# makes the Inf")
    assert "from Inf operands" in the(r.findings, "nan").message


def test_a_nan_parameter_is_passed_on_not_created() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU())
    with torch.no_grad():
        model[0].weight[0, 0] = float("nan")
    r = inspectr.inspect(model, inputs=torch.randn(4, 8), backward=False)
    f = the(r.findings, "nan")
    assert (f.module, f.detail["op"], f.detail["op_created"]) == ("0", "F.linear", False)
    assert "already held it" in f.message


class WhereSqrt(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc(x)
        return torch.where(h > 0, torch.sqrt(h), torch.zeros_like(h))  # culprit


class NaNGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        return x.clone()

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> torch.Tensor:
        return g * float("nan")


class HandWritten(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return NaNGrad.apply(x) + 1.0  # culprit


@pytest.mark.parametrize(("model", "module", "op", "node", "written"), [
    (WhereSqrt, "", "torch.sqrt", "SqrtBackward0", "torch.sqrt(h)"),
    (HandWritten, "", "NaNGrad.apply", "NaNGradBackward", None),
])
def test_a_nan_born_in_backward_names_the_forward_call_and_line(model: type[nn.Module], module: str, op: str,
                                                                node: str, written: str | None) -> None:
    torch.manual_seed(0)
    r = inspectr.inspect(model(), inputs=torch.randn(4, 8))
    f = the(r.findings, "nonfinite_grad")
    d = f.detail
    assert (f.module, d["op"], d["node"], d["op_created"]) == (module, op, node, True)
    assert (d["source"]["file"], d["source"]["line"]) == (__file__, line_of(model.forward))
    if written is not None:
        assert d["source"]["code"][d["source"]["col"]:d["source"]["end_col"]] == written
    assert not torch.is_anomaly_enabled()  # the replay's anomaly mode (custom Functions' lines) is put back


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 128, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(4)
        self.classifier = nn.Linear(512, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.conv(x))
        x = x.flatten(1)  # size origin
        return self.classifier(x)  # culprit


def test_a_shape_error_names_the_call_its_operands_and_where_the_size_came_from() -> None:
    model = Net()
    r = inspectr.inspect(model, inputs=torch.randn(2, 3, 8, 8))
    f = the(r.findings, "forward_error")
    d = f.detail
    origin_line = line_of(Net.forward, "# size origin")
    expected = (f"`classifier` (Linear) expects 512 features and got 2048: 2048 = 128×4×4 from `x.flatten(1)` "
                f"at test_op_trace.py:{origin_line}")
    assert d["explanation"] == expected and expected in f.message
    assert (d["op"], d["op_module"], d["operands"]) == ("F.linear", "classifier", [[2, 2048], [10, 512], [10]])
    assert d["source"]["line"] == line_of(Net.forward)
    so = d["size_origin"]
    assert (so["op"], so["operands"], so["source"]["line"]) == ("Tensor.flatten", [[2, 128, 4, 4]], origin_line)
    assert all(not x._forward_hooks and not x._forward_pre_hooks for x in model.modules())


class Matmul(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(6, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.reshape(x.shape[0], -1)  # size origin
        return h @ self.w  # culprit


class Checked(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != 3:
            raise ValueError(f"expected 3 features, got {x.shape[-1]}")  # culprit
        return x


def test_matmul_sizes_and_errors_outside_torch_calls() -> None:
    f = the(inspectr.inspect(Matmul(), inputs=torch.randn(2, 2, 4)).findings, "forward_error")
    origin_line = line_of(Matmul.forward, "# size origin")
    assert f.detail["op"] == "@" and f.detail["source"]["line"] == line_of(Matmul.forward)
    assert f.detail["explanation"] == (f"`h @ self.w` multiplies [2, 8] by [6, 3]: 8 ≠ 6: 8 = 2×4 from "
                                       f"`x.reshape(x.shape[0], -1)` at test_op_trace.py:{origin_line}")
    # a forward that raises in its own Python, not in a torch call: the line, no call
    g = the(inspectr.inspect(Checked(), inputs=torch.randn(2, 4)).findings, "forward_error")
    assert "op" not in g.detail and g.detail["source"]["line"] == line_of(Checked.forward)


def test_a_healthy_probe_traces_nothing_and_its_findings_carry_no_call() -> None:
    torch.manual_seed(0)
    for model, x in ((nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2)), torch.randn(4, 8)),
                     (MaskedSoftmax(), torch.randn(2, 5, 4))):
        r = run_probe(model, (x,), {})
        assert r.op_trace is None and r.grad_origin is None and r.error is None
        rep = inspectr.inspect(model, inputs=x)
        assert not [f for f in rep.findings if f.severity in ("error", "warning")]
        assert not [f for f in rep.findings if "op" in f.detail or "source" in f.detail]


class MaskedSoftmax(nn.Module):
    """Causal attention: -inf inside, every output finite."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scores = x @ x.transpose(-1, -2)
        mask = torch.ones_like(scores, dtype=torch.bool).triu(1)
        return scores.masked_fill(mask, float("-inf")).softmax(-1) @ x


GALLERY_CULPRITS = {  # sick gallery model -> (finding kind, op)
    "sick_nan": ("nan", "torch.log"),
    "sick_overflow": ("inf", "torch.exp"),
    "sick_nan_grad": ("nonfinite_grad", "torch.sqrt"),
    "sick_inf_grad": ("nonfinite_grad", "torch.sqrt"),
    "sick_config_driven": ("forward_error", "F.linear"),
    "sick_early_exit": ("forward_error", "F.linear"),
}


@pytest.mark.parametrize("name", sorted(GALLERY_CULPRITS))
def test_the_gallerys_sick_models_name_their_lines(name: str) -> None:
    import linecache

    from sample_models import GALLERY

    kind, op = GALLERY_CULPRITS[name]
    model = GALLERY[name].factory()
    f = the(inspectr.inspect(model).findings, kind)
    src = f.detail["source"]
    assert f.detail["op"] == op and src["file"] == pyinspect.getfile(type(model))
    assert src["code"] and linecache.getline(src["file"], src["line"]).strip() == src["code"]
    assert op.rsplit(".", 1)[-1] in src["code"] or kind == "forward_error"


def test_steps_name_the_call_in_the_module_and_in_the_loss() -> None:
    r = inspectr.inspect("sick_diverging", steps=True)
    f = the(r.findings, "diverging")
    from sample_models.sick_training import Exp

    assert (f.module, f.detail["op"], f.detail["source"]["line"]) == (
        "head.variance", "torch.exp", pyinspect.getsourcelines(Exp.forward)[1] + 1)

    def bad_loss(out: torch.Tensor) -> torch.Tensor:
        return torch.log(out - 100.0).mean()  # culprit

    from sample_models.sick import GuardedSqrt

    f = the(inspectr.inspect("sick_nan_grad_training", steps=True).findings, "nonfinite_grad")
    assert (f.module, f.detail["step"], f.detail["op"], f.detail["op_created"]) == ("compress", 15, "torch.sqrt", True)
    assert f.detail["source"]["line"] == pyinspect.getsourcelines(GuardedSqrt.forward)[1] + 1

    torch.manual_seed(0)
    r = inspectr.inspect(nn.Linear(4, 2), inputs=torch.randn(3, 4), steps=2, loss_fn=bad_loss)
    f = the(r.findings, "diverging")
    assert (f.module, f.detail["op"], f.detail["op_module"]) == ("", "torch.log", None)
    assert f.detail["source"]["line"] == line_of(bad_loss)


class Exp(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.exp(x)  # culprit


def test_the_watch_names_the_call_of_the_first_nonfinite_step(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 8), Exp(), nn.Linear(8, 2))
    opt = torch.optim.SGD(model.parameters(), 1e-3)
    with inspectr.watch(model, opt, run=tmp_path / "r", every=4) as w:
        for i in range(6):
            x = torch.randn(4, 8) * (1e4 if i == 3 else 1.0)
            loss = model(x).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
            w.log(loss=loss)
    (f,) = [f for f in inspectr.load_run(tmp_path / "r").findings if f.kind == "nonfinite"]
    d = f.detail
    assert (f.module, d["step"], d["source"], d["op"], d["op_created"]) == ("1", 3, "module", "torch.exp", True)
    assert (d["op_source"]["file"], d["op_source"]["line"]) == (__file__, line_of(Exp.forward))


def test_the_cli_report_shows_file_line_the_code_and_a_caret() -> None:
    from conftest import run_cli

    from sample_models.sick import LogScale

    line = pyinspect.getsourcelines(LogScale.forward)[1] + 1
    proc = run_cli("sick_nan", "--width", "160")
    assert proc.returncode == 1, proc.stderr
    out = proc.stdout.splitlines()
    at = next(i for i, text in enumerate(out) if f"at sick.py:{line} in forward" in text)
    assert f"{line} │ return torch.log(x)" in out[at + 1]
    code_col = out[at + 1].index("return torch.log(x)")
    caret = out[at + 2]
    assert caret.index("^") == code_col + len("return ") and caret.count("^") == len("torch.log(x)")
    doc = json.loads(run_cli("sick_config_driven", "--format", "json").stdout)
    (f,) = [f for f in doc["findings"] if f["kind"] == "forward_error"]
    assert f["detail"]["op"] == "F.linear" and f["detail"]["source"]["file"].endswith(os.path.join("sample_models",
                                                                                                   "sick.py"))
    assert "expects 1024 features and got 14" in f["message"]
    md = run_cli("sick_nan", "--format", "markdown").stdout
    assert f"at sick.py:{line} in forward" in md and "^^^^^^^^^^^^" in md


def test_the_apps_detail_pane_shows_the_source_around_the_line() -> None:
    from rich.syntax import Syntax
    from test_app import detail_text, drive, settle

    from inspectr.tui.app import InspectrApp
    from inspectr.tui.widgets.findings_list import FindingsList
    from sample_models.sick import LogScale

    line = pyinspect.getsourcelines(LogScale.forward)[1] + 1
    app = InspectrApp("sample:sick_nan", {})

    async def script(pilot: Any) -> None:
        await settle(pilot)
        findings = app.query_one(FindingsList)
        nan = next(f for f in findings.findings if f.kind == "nan")
        findings.focus()
        findings.highlighted = list(findings.findings).index(nan)
        await pilot.press("enter")
        await pilot.pause()
        body = app.query_one("#detail-body").content
        syntaxes = [r for r in _walk(body) if isinstance(r, Syntax)]
        assert syntaxes and syntaxes[0].highlight_lines == {line}
        text = detail_text(app)
        assert f"sick.py:{line}" in text and "return torch.log(x)" in text and f"{line - 1} " in text

    drive(app, script)


def _walk(renderable: Any) -> list[Any]:
    out = [renderable]
    for child in getattr(renderable, "renderables", []) or []:
        out += _walk(child)
    return out


def test_the_size_factors() -> None:
    from inspectr.core.probe.size_origin import factors

    assert factors(2048, (8, 128, 4, 4)) == (128, 4, 4)
    assert factors(16, (4, 4, 4)) == (4, 4)
    assert factors(7, (2, 3)) is None


class Doubled(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 16, 3)
        self.b = nn.Conv2d(16, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.a(x)
        h = torch.cat([h, h], 1)  # size origin
        return self.b(h)  # culprit


def test_conv_channels_and_a_reshape_traced_one_call_further_back() -> None:
    f = the(inspectr.inspect(Doubled(), inputs=torch.randn(2, 3, 16, 16)).findings, "forward_error")
    origin = line_of(Doubled.forward, "# size origin")
    assert f.detail["explanation"] == ("`b` (Conv2d) expects 16 input channels and got 32: the operand "
                                       f"[2, 32, 14, 14] comes from `torch.cat([h, h], 1)` at test_op_trace.py:{origin}")
    assert f.detail["source"]["line"] == line_of(Doubled.forward)
    # the seed's early-exit head pools over the features: the Flatten only passes the pool's [4, 8, 1] on
    g = the(inspectr.inspect("sick_early_exit").findings, "forward_error")
    assert ("expects 32 features and got 8: the operand [4, 8] comes from `Tensor.flatten` in `exit_heads.0.1` "
            "(Flatten)") in g.detail["explanation"]
    assert "of [4, 8, 1] from `torch.adaptive_avg_pool1d` in `exit_heads.0.0` (AdaptiveAvgPool1d)" in g.message


def test_the_watch_names_the_backward_call_of_a_nan_born_in_backward(tmp_path: Path) -> None:
    # the forward stays finite (torch.where masks the sqrt of negatives); the gradient does not
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 8), WhereSqrt(), nn.Linear(8, 2))
    opt = torch.optim.SGD(model.parameters(), 1e-3)
    with inspectr.watch(model, opt, run=tmp_path / "r", every=4) as w:
        for _ in range(3):
            loss = model(torch.randn(4, 8)).square().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            w.log(loss=loss)
    (f,) = [f for f in inspectr.load_run(tmp_path / "r").findings if f.kind == "nonfinite"]
    d = f.detail
    assert (f.module, d["step"], d["source"], d["op"], d["op_created"]) == ("1", 0, "backward", "torch.sqrt", True)
    assert (d["op_source"]["file"], d["op_source"]["line"]) == (__file__, line_of(WhereSqrt.forward))
    assert "Replayed, the backward first turned finite gradients into NaN in 1 at `torch.sqrt`" in f.message
