"""Edge cases found in review: in-place culprits, exotic outputs, restored state, shared activations."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

import inspectr
from inspectr.core.probe.backward_seed import seed_gradients
from inspectr.core.sources.loader import load_weights


class InPlaceLog(nn.Module):
    def forward(self, x):
        return x.log_()


def test_inplace_nan_maker_first_in_model_is_blamed():
    m = nn.Sequential(InPlaceLog(), nn.Linear(8, 2))
    r = inspectr.inspect(m, inputs=torch.randn(4, 8))
    assert [f.module for f in r.findings if f.kind == "nan"] == ["0"]
    assert r.has_errors


def test_nan_from_functional_op_passed_as_keyword_blames_the_caller():
    class Caller(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(8, 8)
            self.head = nn.Linear(8, 2)

        def forward(self, x):
            return self.head(input=torch.log(self.fc(x)))

    r = inspectr.inspect(Caller(), inputs=torch.randn(4, 8))
    assert [f.module for f in r.findings if f.kind == "nan"] == [""]


def test_sparse_output_is_shown_not_measured():
    class Sparse(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x):
            return self.fc(x).to_sparse()

    r = inspectr.inspect(Sparse(), inputs=torch.randn(2, 4), backward=False)
    assert r.probe.ok, r.probe.error
    assert r.module("").output_shapes == ((2, 4),)


def test_sampled_statistics_are_not_biased_by_image_width():
    torch.manual_seed(0)
    c = nn.Conv2d(16, 64, 3, padding=1)
    with torch.no_grad():
        c.weight.fill_(0.01)
    x = torch.randn(4, 16, 64, 64) + 1
    r = inspectr.inspect(c, inputs=x, backward=False)
    y = c(x).detach()
    assert r.module("").stats.mean == pytest.approx(y.mean().item(), rel=0.02)
    assert r.module("").stats.std == pytest.approx(y.std().item(), rel=0.05)
    # the min of a large conv output comes from the sample (no finding judges it), and says so
    st = r.module("").stats
    assert "min" in st.sampled and y.min().item() <= st.min <= y.max().item()


def test_parameter_changed_in_place_by_forward_is_restored():
    class Clamp(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x):
            with torch.no_grad():
                self.fc.weight.clamp_(-0.01, 0.01)
            return self.fc(x)

    m = Clamp()
    before = m.fc.weight.detach().clone()
    inspectr.inspect(m, inputs=torch.randn(2, 4))
    assert torch.equal(m.fc.weight, before)


def test_buffer_filled_during_forward_is_dropped_again():
    class Cache(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)
            self.register_buffer("cache", None)

        def forward(self, x):
            self.cache = torch.ones(3)
            return self.fc(x)

    m = Cache()
    inspectr.inspect(m, inputs=torch.randn(2, 4))
    assert m.cache is None


def test_shared_relu_does_not_hide_a_dead_call_site():
    class Shared(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = nn.Linear(16, 32)
            self.fc2 = nn.Linear(32, 32)
            self.relu = nn.ReLU()
            with torch.no_grad():
                self.fc1.bias.fill_(-10.0)

        def forward(self, x):
            return self.relu(self.fc2(torch.ones_like(self.relu(self.fc1(x))) + self.fc1.weight.sum()))

    r = inspectr.inspect(Shared(), inputs=torch.randn(32, 16))
    assert ("dead_units", "relu") in [(f.kind, f.module) for f in r.findings]


def test_backward_error_blames_the_module_whose_backward_raised():
    class Boom(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x * 2

        @staticmethod
        def backward(ctx, g):
            raise RuntimeError("bad backward")

    class Mid(nn.Module):
        def forward(self, x):
            return Boom.apply(x)

    m = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), Mid(), nn.Linear(4, 2))
    r = inspectr.inspect(m, inputs=torch.randn(2, 4))
    assert r.probe.error.phase == "backward"
    assert r.probe.error.module == "2"
    assert [f.module for f in r.findings if f.kind == "backward_error"] == ["2"]


def test_half_model_gets_half_inputs():
    m = nn.Sequential(nn.Linear(4, 4)).half()
    r = inspectr.inspect(m, backward=False)
    assert r.probe.ok, r.probe.error
    assert r.inputs[0].startswith("float16")


def test_keyword_only_forward_is_a_clear_error():
    class KW(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x, *, scale):
            return self.fc(x) * scale

    with pytest.raises(inspectr.InspectrError, match="scale="):
        inspectr.inspect(KW())


def test_lazy_module_without_an_input_is_a_clear_error():
    with pytest.raises(inspectr.InspectrError, match="lazy.*--input"):
        inspectr.inspect(nn.Sequential(nn.LazyLinear(4)))


def test_lazy_modules_are_materialized_on_a_copy():
    torch.manual_seed(0)
    m = nn.Sequential(nn.LazyLinear(32), nn.ReLU(), nn.LazyConv1d(8, 3))
    x = torch.randn(4, 6, 20)
    r = inspectr.inspect(m, inputs=x)
    assert r.probe.ok, r.probe.error
    assert r.module("0").params == 20 * 32 + 32 and r.module("2").params == 6 * 8 * 3 + 8
    assert r.model.total_params == r.module("0").params + r.module("2").params
    assert r.module("2").output_shapes == ((4, 8, 30),)
    assert any("lazy modules (0, 2) materialized on a copy" in n for n in r.probe.notes)
    assert m[0].has_uninitialized_params() and m[2].has_uninitialized_params()  # the user's stays lazy


def test_lazy_model_file_with_example_input_reports_from_the_cli(tmp_path):
    from conftest import run_cli, strict_json, write_file

    write_file(tmp_path, "lazy_model.py", """
import torch
from torch import nn


class LazyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.LazyLinear(32), nn.ReLU(), nn.LazyLinear(10))

    def forward(self, x):
        return self.body(x)

    def example_input(self, batch_size=4):
        return torch.randn(batch_size, 20)
""")
    proc = run_cli("lazy_model.py:LazyNet", "--format", "json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    doc = strict_json(proc.stdout)
    assert doc["model"]["total_params"] == (20 * 32 + 32) + (32 * 10 + 10)


def test_model_built_on_meta_gets_a_shape_only_probe():
    with torch.device("meta"):
        m = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
    r = inspectr.inspect(m, inputs=torch.randn(2, 8))
    assert r.probe.shape_only and r.module("").output_shapes == ((2, 2),)


def test_lstm_flops_counted():
    r = inspectr.inspect("lstm_classifier")
    assert r.module("lstm").flops_forward > 0


def test_same_tensor_returned_twice_counts_once():
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x):
            y = self.fc(x)
            return y, y

    r = inspectr.inspect(Twice(), inputs=torch.randn(2, 4))
    # one seed gradient on the 8 values, not two (twice the norm)
    (seed,) = seed_gradients([torch.zeros(2, 4)], 0)
    assert r.module("").grad_norm == pytest.approx(float(seed.norm()))


def test_state_dict_with_extra_state_loads(tmp_path):
    class Extra(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(2, 2)

        def get_extra_state(self):
            return {"v": 1}

        def set_extra_state(self, state):
            self.v = state["v"]

    src = Extra()
    path = tmp_path / "w.pt"
    torch.save({"model_state_dict": src.state_dict()}, path)
    dst = Extra()
    load_weights(dst, str(path))
    assert torch.equal(dst.fc.weight, src.fc.weight)


def test_undocumented_class_has_no_inherited_description(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("import torch.nn as nn\nclass Net(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
                 "        self.fc = nn.Linear(3, 2)\n    def forward(self, x):\n        return self.fc(x)\n")
    r = inspectr.inspect(f"{f}:Net")
    assert "Base class" not in r.model.description


def test_compiled_model_is_inspected_as_its_original_without_tracing(capfd):
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))
    compiled = torch.compile(m)
    r = inspectr.inspect(compiled, inputs=torch.randn(4, 16))
    assert r.probe.ok, r.probe.error
    assert r.model.class_name == "Sequential" and r.model.name == "Sequential"
    assert [row.path for row in r.modules] == ["", "0", "1", "2"]
    assert r.model.total_params == sum(p.numel() for p in m.parameters())
    assert any("torch.compile" in note for note in r.probe.notes)
    assert capfd.readouterr().err == ""  # no dynamo tracing of inspectr's hooks, no warning flood
    assert type(compiled).__name__ == "OptimizedModule"  # the user's wrapper is left as it was


def test_jagged_nested_output_gets_a_report():
    # a nested output has no single shape to draw the backward seed for: it keeps sum()'s ones
    class Jagged(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 3)

        def forward(self, x):
            y = self.fc(x)
            return torch.nested.as_nested_tensor([y[:2], y[2:]], layout=torch.jagged)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nested tensors are a prototype
        r = inspectr.inspect(Jagged(), inputs=torch.randn(5, 3))
    assert r.probe.backward in ("ran", "failed")
