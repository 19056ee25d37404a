"""Report output on long tables: the fast module table and JSON writer give rich's and json's text."""

from __future__ import annotations

import io
import json

import pytest
import torch
from rich.console import Console
from rich.table import Table
from torch import nn

import inspectr
import inspectr.report.render as render
from inspectr.report.json_text import json_text


class Odd(nn.Module):
    """Rows the fast path must hand back to rich: a folded output, a cut name, shared modules."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 8))
        self.a_module_name_long_enough_to_be_cut_with_an_ellipsis_in_the_module_column = nn.ReLU()
        self.again = self.body
        self.frozen = nn.Linear(8, 8).requires_grad_(False)

    def forward(self, x):
        y = self.frozen(self.body(x))
        y = self.a_module_name_long_enough_to_be_cut_with_an_ellipsis_in_the_module_column(y)
        return {"first": y, "all": [y * i for i in range(6)], "sum": y.sum(), "tuple": (y, y)}


def _exports(report: inspectr.Report) -> list[str]:
    out = []
    for width in (60, 100, 160):
        for depth in (None, 1):
            out.append(render.export(report, "text", depth, width))
            console = Console(width=width, record=True, force_terminal=True, color_system="truecolor",
                              highlight=False, file=io.StringIO())
            for part in render.report_renderables(report, depth, width):
                console.print(part)
            out += [console.file.getvalue(), console.export_html(inline_styles=True), console.export_svg(title="t")]
    return out


@pytest.mark.parametrize("spec", ["sick_unused", "early_exit", "odd"])
def test_module_table_is_drawn_as_rich_draws_it(spec, monkeypatch):
    report = inspectr.inspect(Odd(), inputs=torch.randn(2, 8)) if spec == "odd" else inspectr.inspect(spec)
    fast = _exports(report)
    monkeypatch.setattr(render, "LongTable", Table)
    assert fast == _exports(report)


def test_json_text_is_json_dumps_with_indent():
    class Name(str):
        pass

    values = [
        inspectr.inspect("sick_nan").to_dict(),
        {"a": [1, 2.5, -0.0, 1e300, float("nan"), float("inf"), -float("inf"), True, False, None],
         "é\n\"": {"": [], "x": {}, 7: (1, [2, [3]]), 2.5: "ß", None: Name("s"), True: [{}], False: 0}},
        [], {}, "just a string", 3, [[[]]],
    ]
    for value in values:
        assert json_text(value) == json.dumps(value, indent=2)
    with pytest.raises(TypeError):
        json_text({"x": object()})
