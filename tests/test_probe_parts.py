"""The probe's rooms checked against independent computations: batched and immediate statistics,
retained and hooked gradients, leaf FLOPs, the functional watch switched off and on again."""

from __future__ import annotations

import gc
import math
import weakref
from typing import Any

import pytest
import torch
import torchvision
from conftest import live_tensors
from torch import nn

import inspectr
from inspectr.core.probe.backward_seed import seed_gradients
from inspectr.core.probe.options import ProbeOptions
from inspectr.core.probe.run import ProbeCancelled, run_probe
from inspectr.core.probe.saved_bytes import SavedBytes
from inspectr.core.probe.stats import STAT_SAMPLE, OutputStats, StatsAccumulator, finish_stats
from inspectr.core.state import gc_paused


def _outputs_by_module(model: nn.Module, *args: torch.Tensor) -> dict[str, torch.Tensor]:
    """Each module's first output, copied when it is returned: the ground truth."""
    seen: dict[str, torch.Tensor] = {}
    handles = []
    for path, mod in model.named_modules():
        def hook(m, a, out, path=path):
            if isinstance(out, torch.Tensor) and path not in seen:
                seen[path] = out.detach().clone()
        handles.append(mod.register_forward_hook(hook))
    try:
        with torch.no_grad():
            model(*args)
    finally:
        for h in handles:
            h.remove()
    return seen


def _deep_stack(blocks: int) -> nn.Module:
    layers: list[nn.Module] = []
    for _ in range(blocks):
        layers += [nn.Linear(32, 32), nn.LayerNorm(32), nn.GELU(), nn.Dropout(0.1)]
    return nn.Sequential(nn.Sequential(*layers), nn.Linear(32, 10))


def test_every_module_statistics_equal_a_direct_computation():
    # 200 modules of small outputs, batched by shape; outputs freed during the pass give their
    # id and memory to the next ones: each module must get its own numbers (a stale cache hit
    # once gave a Linear the statistics of the GELU before it)
    torch.manual_seed(0)
    model = _deep_stack(50).eval()
    x = torch.randn(4, 32)
    r = inspectr.inspect(model, inputs=x)
    truth = _outputs_by_module(model, x)
    for row in r.modules:
        t = truth[row.path]
        st = row.stats
        assert st.numel == t.numel(), row.path
        assert st.min == pytest.approx(float(t.min()), abs=1e-6), row.path
        assert st.max == pytest.approx(float(t.max()), abs=1e-6), row.path
        assert st.mean == pytest.approx(float(t.mean()), abs=1e-5), row.path
        assert st.std == pytest.approx(float(t.std(unbiased=False)), rel=1e-3, abs=1e-5), row.path
        assert st.zero_fraction == pytest.approx(float((t == 0).float().mean())), row.path


def _check_large(st, t: torch.Tensor, where: str) -> None:
    """The figures of a large output: exact unless ``st.sampled`` names them; a sampled mean and
    std within 5%, a sampled min and max inside the true range (the sample holds real values)."""
    std = float(t.std(unbiased=False))
    lo, hi = float(t.min()), float(t.max())
    assert "std" in st.sampled, where  # every output over STAT_SAMPLE values has a sampled std
    assert set(st.sampled) <= {"mean", "std", "min", "max", "zero_fraction"}, where
    if "min" in st.sampled:
        assert lo <= st.min <= hi, where
    else:
        assert st.min == lo, where
    if "max" in st.sampled:
        assert lo <= st.max <= hi, where
    else:
        assert st.max == hi, where
    if "mean" in st.sampled:
        assert abs(st.mean - float(t.mean())) < 0.05 * std, where
    else:
        assert st.mean == pytest.approx(float(t.mean()), rel=1e-4, abs=1e-6 * std), where
    assert st.std == pytest.approx(std, rel=0.05), where
    zeros = int((t == 0).sum()) / t.numel()
    if "zero_fraction" not in st.sampled:
        assert st.zero_fraction == pytest.approx(zeros, abs=1e-12), where


def test_sampled_figures_of_large_outputs_are_flagged_close_and_the_rest_exact():
    # outputs over STAT_SAMPLE values: std (and min, max, the mean and the zero fraction where no
    # finding judges them) come from a sample of evenly spaced runs and say so in ``sampled``;
    # channel-wise structure must not bias the sample
    torch.manual_seed(0)
    model = torchvision.models.get_model("resnet18", weights=None).eval()
    x = torch.randn(2, 3, 112, 112)
    r = inspectr.inspect(model, inputs=x, mode="eval", backward=False)
    truth = _outputs_by_module(model, x)
    checked = 0
    for row in r.modules:
        t = truth.get(row.path)
        if t is None or t.numel() <= STAT_SAMPLE or row.calls != 1:  # truth: the first call
            continue
        _check_large(row.stats, t, row.path)
        if row.type == "ReLU":  # rectifiers: the zero fraction is judged, so exact
            assert "zero_fraction" not in row.stats.sampled, row.path
        checked += 1
    assert checked > 20


def test_channels_last_outputs_get_every_statistic():
    # a channels_last model's large outputs are not contiguous: they once got no statistics at all
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
                          nn.Conv2d(32, 32, 3, padding=1)).to(memory_format=torch.channels_last)
    x = torch.randn(2, 3, 48, 48).to(memory_format=torch.channels_last)
    r = inspectr.inspect(model, inputs=x)
    truth = _outputs_by_module(model, x)
    for row in r.modules:
        t = truth[row.path]
        assert not t.is_contiguous() and t.numel() > STAT_SAMPLE
        assert row.stats is not None, row.path
        _check_large(row.stats, t, row.path)
        assert row.grad_norm is not None and row.grad_norm > 0, row.path
    relu = r.module("2").stats
    assert relu.zero_fraction == pytest.approx(int((truth["2"] == 0).sum()) / truth["2"].numel(), abs=1e-12)
    assert relu.dead_fraction == 0.0 and relu.units == 32


def test_large_activation_statistics_and_dead_units_are_exact():
    # 2 x 16 x 64 x 64 = 131,072 values (over STAT_SAMPLE): the immediate path, along the unit layout
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 16, 3, padding=1)
    with torch.no_grad():
        conv.bias[:6] = -100.0  # six channels dead for every input
    model = nn.Sequential(conv, nn.ReLU(), nn.Conv2d(16, 8, 1), nn.GELU()).eval()
    x = torch.randn(2, 3, 64, 64)
    assert 2 * 16 * 64 * 64 > STAT_SAMPLE
    r = inspectr.inspect(model, inputs=x)
    truth = _outputs_by_module(model, x)
    relu = r.module("1").stats
    y = truth["1"]
    assert relu.min == 0.0 and relu.max == pytest.approx(float(y.max()))
    assert relu.zero_fraction == pytest.approx(float((y == 0).float().mean()))
    assert relu.units == 16
    assert relu.dead_fraction == pytest.approx(float(((y.amax(dim=(0, 2, 3))) == 0).float().mean()))
    assert relu.dead_fraction == pytest.approx(6 / 16)
    gelu, g = r.module("3").stats, truth["3"]
    _check_large(gelu, g, "3")
    assert gelu.max == pytest.approx(float(g.max())) and gelu.mean == pytest.approx(float(g.mean()), abs=1e-6)
    assert gelu.dead_fraction == 0.0


def test_a_smooth_activation_with_quiet_units_gets_exact_dead_units_min_and_infinities():
    # every unit positive somewhere: all alive, the min from the sample; a unit never positive
    # is dead when it stays in (-tol, 0] and alive when it dips below; -Inf (no unit maximum
    # shows it) is counted all the same
    torch.manual_seed(0)
    x = torch.randn(2, 8, 64, 64)
    healthy, acc = OutputStats(), StatsAccumulator()
    assert healthy.observe(acc, x, "smooth", False) is False
    st = finish_stats(acc)
    assert st.dead_fraction == 0.0 and "min" in st.sampled and "mean" not in st.sampled
    assert x.min() <= st.min <= x.max() and st.mean == pytest.approx(float(x.mean()), abs=1e-6)
    quiet = x.clone()
    quiet[:, 0] = -1e-8  # dead: inside (-tol, 0]
    quiet[:, 1] = -0.5  # never positive, yet alive: below -tol
    quiet[0, 2, 0, 0] = -3.0
    acc = StatsAccumulator()
    assert OutputStats().observe(acc, quiet, "smooth", False) is False
    st = finish_stats(acc)
    assert st.dead_fraction == pytest.approx(1 / 8) and st.min == float(quiet.min()) and "min" not in st.sampled
    inf = x.clone()
    inf[1, 3, 5, 7] = -math.inf
    acc = StatsAccumulator()
    assert OutputStats().observe(acc, inf, "smooth", False) is True
    st = finish_stats(acc)
    assert (st.inf, st.nan) == (1, 0) and st.min == float(x[inf.isfinite()].min())


@pytest.mark.parametrize("values", [
    [0.0, 1.0, -2.0, 3.5, 0.0, 0.25],
    [float("nan"), 1.0, 0.0, float("inf"), -1.0, 2.0],
    [0.0] * 6,
])
def test_batched_and_immediate_reductions_agree(values):
    small = torch.tensor(values).repeat(4, 1)  # [4, 6]: batched
    big = torch.tensor(values).repeat(STAT_SAMPLE // len(values) + 1, 1)  # immediate
    for t in (small, big):
        out = OutputStats()
        acc = StatsAccumulator()
        bad = out.observe(acc, t, "rectifier", False, tag="call")
        flushed = out.flush()
        st = finish_stats(acc)
        finite = t[torch.isfinite(t)]
        nonfinite = not bool(torch.isfinite(t).all())
        assert (bad is True or flushed == ["call"]) == nonfinite
        assert st.nan == int(torch.isnan(t).sum()) and st.inf == int(torch.isinf(t).sum())
        assert st.min == float(finite.min()) and st.max == float(finite.max())
        # exact on the batched path; the large path estimates the mean from its sample
        assert st.mean == pytest.approx(float(finite.mean()), abs=1e-6 if t is small else 1e-2)
        # NaN and Inf are not zeros
        assert st.zero_fraction == pytest.approx(float((t == 0).float().mean()))
        assert st.units == 6
        # a unit that is all zeros is dead; one of NaN is not (the NaN finding tells that story)
        assert st.dead_fraction == pytest.approx(float((t.abs().amax(0) == 0).float().mean()))


def _output_grad_norms(model: nn.Module, x: torch.Tensor) -> dict[str, float]:
    """Gradient norm at each module's outputs as the module returned them, over all its calls
    (a tensor hook registered at once keeps to that version through later in-place ops)."""
    squares: dict[str, float] = {}
    handles = []
    for path, mod in model.named_modules():
        def hook(m, a, out, path=path):
            if isinstance(out, torch.Tensor) and out.requires_grad:
                out.register_hook(lambda g, path=path: squares.__setitem__(
                    path, squares.get(path, 0.0) + float(g.norm()) ** 2))
        handles.append(mod.register_forward_hook(hook))
    try:
        out = model(x)
        torch.autograd.backward([out], seed_gradients([out], 0))  # the probe's seed 0
    finally:
        for h in handles:
            h.remove()
        model.zero_grad(set_to_none=True)
    return {path: sq ** 0.5 for path, sq in squares.items()}


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v3_small"])
def test_gradient_norms_through_in_place_activations_equal_autograd(name):
    # BatchNorm outputs changed in place by ReLU(inplace=True) / Hardswish(inplace=True): their
    # small gradients are retained, their old versions caught at the node that made them
    torch.manual_seed(0)
    model = torchvision.models.get_model(name, weights=None).eval()
    x = torch.randn(2, 3, 64, 64)
    r = run_probe(model, (x,), {}, ProbeOptions(mode="eval"))
    truth = _output_grad_norms(model, x)
    checked = 0
    for path, norm in truth.items():
        got = r.measures[path].grad_norm
        assert got is not None, path
        rows = r.measures[path].output_shapes
        exact = math.prod(rows[0]) <= 4 * STAT_SAMPLE
        assert got == pytest.approx(norm, rel=1e-4 if exact else 0.1, abs=1e-7), path
        checked += exact
    assert checked > 20


def test_leaf_flops_equal_the_functional_watch_and_flop_counter():
    class WatchedLinear(nn.Linear):  # an overridden forward runs under the functional watch
        def forward(self, x):
            return super().forward(x)

    class WatchedConv(nn.Conv2d):
        def forward(self, x):
            return super().forward(x)

    def build(linear: type, conv: type) -> nn.Module:
        torch.manual_seed(0)
        return nn.Sequential(conv(3, 8, 3, groups=1), nn.BatchNorm2d(8), nn.ReLU(),
                             conv(8, 8, 3, groups=8), nn.Flatten(), linear(8 * 12 * 12, 10))

    x = torch.randn(2, 3, 16, 16)
    known = run_probe(build(nn.Linear, nn.Conv2d), (x,), {}, ProbeOptions())
    watched = run_probe(build(WatchedLinear, WatchedConv), (x,), {}, ProbeOptions())
    assert known.flops_forward == watched.flops_forward
    assert known.flops_backward == watched.flops_backward
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        build(nn.Linear, nn.Conv2d)(x)
    assert known.flops_forward[""] == counter.get_total_flops()


@pytest.mark.parametrize("package", ["torchvision", "timm"])
def test_stochastic_depth_of_model_zoos_runs_as_a_known_leaf_with_the_same_figures(package, monkeypatch):
    # EfficientNet's blocks end in torchvision's StochasticDepth, timm's in DropPath: known once
    # the package is imported, they run outside the functional watch, with the figures the
    # watched run gives
    if package == "torchvision":
        from torchvision.ops import StochasticDepth as Drop

        def drop() -> nn.Module:
            return Drop(0.5, "row")
    else:
        from timm.layers import DropPath as Drop

        def drop() -> nn.Module:
            return Drop(0.5)

    from inspectr.core.probe import flops

    def build() -> nn.Module:
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(3, 8, 3), drop(), nn.Flatten(), nn.Linear(8 * 14 * 14, 4))

    x = torch.randn(6, 3, 16, 16)
    assert flops.leaf_flops(drop()) is not None
    known = inspectr.inspect(build(), inputs=x)
    monkeypatch.delitem(flops.LEAF_FLOPS, Drop.forward)
    assert flops.leaf_flops(drop()) is None
    watched = inspectr.inspect(build(), inputs=x)
    assert known.probe.ok and watched.probe.ok
    for path in ("", "1"):
        a, b = known.module(path), watched.module(path)
        assert (a.flops_forward, a.flops_backward, a.stats, a.grad_norm) == (b.flops_forward, b.flops_backward,
                                                                            b.stats, b.grad_norm), path
    assert known.module("1").stats.zero_fraction > 0  # rows were dropped: the draw happened in both


def test_functional_watch_is_back_on_after_a_leaf_raised_and_was_caught():
    class Forgiving(nn.Module):
        def __init__(self):
            super().__init__()
            self.bad = nn.Linear(5, 3)  # fed 8 features: raises inside a known leaf
            self.fc = nn.Linear(8, 8)

        def forward(self, x):
            try:
                self.bad(x)
            except RuntimeError:
                pass
            return torch.relu(self.fc(x))  # seen only if the watch is on again

    r = inspectr.inspect(Forgiving(), inputs=torch.randn(32, 8))
    assert r.probe.ok
    assert [f.op for f in r.module("").functional] == ["torch.relu"]
    assert torch._C._is_torch_function_enabled()


def test_functional_watch_is_back_on_after_a_leaf_raised_out_of_the_forward():
    model = nn.Sequential(nn.Linear(8, 4), nn.Linear(5, 2))
    r = inspectr.inspect(model, inputs=torch.randn(2, 8))
    assert r.probe.error.module == "1"
    assert torch._C._is_torch_function_enabled()


def test_gc_paused_restores_the_collector():
    assert gc.isenabled()
    with gc_paused():
        assert not gc.isenabled()
    assert gc.isenabled()
    gc.disable()
    try:
        with gc_paused():
            pass
        assert not gc.isenabled()  # a caller who had it off keeps it off
    finally:
        gc.enable()


def test_gc_paused_leaves_no_collection_owed_and_garbage_cycles_still_go():
    import weakref

    class Node:
        pass

    with gc_paused():
        keep = [[i] for i in range(5000)]  # a report's worth of live objects
        a, b = Node(), Node()
        a.other, b.other = b, a  # a cycle that becomes garbage while the collector is off
        gone = weakref.ref(a)
        del a, b
    assert gc.get_count()[0] < 700  # no scan of the 5,000 new objects is owed
    assert gone() is not None
    gc.collect()
    assert gone() is None  # the next full collection frees the cycle
    del keep


def test_gc_paused_keeps_objects_the_program_froze_frozen():
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        with gc_paused():
            pass
        assert gc.get_freeze_count() == frozen
    finally:
        gc.unfreeze()


def test_saved_bytes_of_a_linear_relu_stack_by_hand():
    # Linear saves its input (for the weight gradient), ReLU its output; the next Linear's input
    # is that same ReLU output: one allocation, counted once. Parameters never count.
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 20), nn.ReLU(), nn.Linear(20, 5), nn.ReLU())
    r = inspectr.inspect(model, inputs=torch.randn(4, 10))
    saved = {row.path: row.saved_bytes for row in r.modules}
    assert saved == {"": 0, "0": 4 * 10 * 4, "1": 4 * 20 * 4, "2": 0, "3": 4 * 5 * 4}
    assert [row.output_bytes for row in r.modules] == [80, 320, 320, 80, 80]
    doc = r.to_dict()["modules"][1]
    assert doc["saved_bytes"] == 160 and doc["output_bytes"] == 320


@pytest.mark.parametrize("name", ["resnet18", "vit_b_16"])
def test_saved_bytes_add_up_to_what_autograd_saved(name):
    torch.manual_seed(0)
    model = torchvision.models.get_model(name, weights=None)
    size = 224 if name.startswith("vit") else 96
    x = torch.randn(2, 3, size, size)
    r = run_probe(model, (x,), {}, ProbeOptions())
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    storages: dict[int, int] = {}

    def pack(t):
        ptr = t.untyped_storage().data_ptr()
        if ptr not in params:
            storages[ptr] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(x).sum()
    model.zero_grad(set_to_none=True)
    assert sum(m.saved_bytes or 0 for m in r.measures.values()) == sum(storages.values())


class DroppedBranch(nn.Module):
    """Computes a branch three times and drops it (its outputs are too large for the probe to
    retain their gradients): nothing of it is needed by backward."""

    def __init__(self) -> None:
        super().__init__()
        self.aux = nn.Sequential(nn.Linear(64, 4096), nn.ReLU(), nn.Linear(4096, 4096), nn.Tanh())
        self.main = nn.Sequential(nn.Linear(64, 4096), nn.ReLU(), nn.Linear(4096, 8), nn.Tanh())
        self.dropped: list[Any] = []

    def forward(self, x):
        for _ in range(3):
            a = self.aux(x)  # ReLU and Tanh save their own outputs
            self.dropped.append(weakref.ref(a))
            del a
        return self.main(x)


def test_a_dropped_branch_saves_nothing_and_is_freed():
    model = DroppedBranch()
    x = torch.randn(32, 64)
    r = inspectr.inspect(model, inputs=x)
    saved = {row.path: row.saved_bytes for row in r.modules if row.saved_bytes}
    # what backward needs: main.0's input (x), the ReLU output (main.1, saved by it and main.2)
    # and the Tanh output; the dropped branch's storages, freed and their addresses taken again
    # by later tensors, neither count nor hide the later ones
    assert saved == {"main.0": 32 * 64 * 4, "main.1": 32 * 4096 * 4, "main.3": 32 * 8 * 4}
    gc.collect()
    # a node saving its own output held it with its grad_fn: a cycle through C++ that leaked
    # every dropped branch (and every re-probe of the app leaked it again)
    assert model.dropped and all(w() is None for w in model.dropped)


def test_a_failing_forward_leaves_nothing_alive():
    # the modules a failed forward left running hold their inputs, hence the graph, whose saved
    # tensors hold the saved-bytes counter, which held the probe's stack of those modules: a
    # cycle through autograd (C++) that gc cannot see, so every failed probe leaked its graph
    model = nn.Sequential(nn.Linear(8, 64), nn.ReLU(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(32, 2))
    x = torch.randn(4, 8)
    r = inspectr.inspect(model, inputs=x)
    assert r.probe.error is not None and r.probe.error.module == "4"
    before = live_tensors()
    for _ in range(3):
        inspectr.inspect(model, inputs=x)
    assert live_tensors() == before


def test_a_cancelled_probe_leaves_nothing_alive():
    # the app cancels a probe made stale by a freeze toggle: the forward stops mid-way
    # blocks, so that the stack the cancel leaves holds a block's input and the graph behind it
    model = nn.Sequential(*[nn.Sequential(nn.Linear(32, 32), nn.ReLU()) for _ in range(40)])
    x = torch.randn(4, 32)
    run_probe(model, (x,), {}, ProbeOptions())
    before = live_tensors()
    for _ in range(2):
        checks = iter(range(100))  # checked before the forward, then every 64 modules: stop mid-way
        with pytest.raises(ProbeCancelled):
            run_probe(model, (x,), {}, ProbeOptions(cancelled=lambda c=checks: next(c) > 0))
    assert live_tensors() == before


def test_double_backward_through_the_counted_saves_gives_the_same_gradients():
    # the counter holds saves detached (no cycle through their node); autograd must still
    # rebuild them for a gradient taken with create_graph inside the forward (a gradient penalty)
    class Penalty(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Linear(4, 8), nn.Linear(8, 1)

        def forward(self, x):
            x = x.detach().requires_grad_()
            y = self.b(torch.tanh(self.a(x))).sum()
            (g,) = torch.autograd.grad(y, x, create_graph=True)
            return (g**2).sum(dim=1)

    torch.manual_seed(0)
    model, x = Penalty(), torch.randn(3, 4)
    model(x).sum().backward()
    plain = [p.grad.clone() for p in (model.a.weight, model.a.bias, model.b.weight)]
    model.zero_grad(set_to_none=True)
    counter = SavedBytes([("",)], list(model.parameters()))
    with counter.counting():
        out = model(x)
    out.sum().backward()
    for want, p in zip(plain, (model.a.weight, model.a.bias, model.b.weight)):
        assert torch.allclose(p.grad, want)
    assert sum(counter.by_module.values()) > 0


def test_saved_bytes_grow_with_the_batch_by_a_fixed_step():
    # a + b * batch: BatchNorm's per-channel statistics are the part that does not grow
    model = torchvision.models.resnet18(weights=None)
    totals = []
    for batch in (2, 4, 6):
        r = run_probe(model, (torch.randn(batch, 3, 64, 64),), {}, ProbeOptions(mode="eval"))
        totals.append(sum(m.saved_bytes or 0 for m in r.measures.values()))
    assert totals[2] - totals[1] == totals[1] - totals[0] > 0
    assert 0 < 2 * totals[0] - totals[1] < totals[0] // 10


def test_a_saved_tensor_changed_in_place_still_fails_backward():
    # saved_tensors_hooks switch off autograd's own version check: inspectr's unpack does it,
    # so a model that would fail in training fails under the probe too
    class Clobber(nn.Module):
        def forward(self, x):
            y = torch.sigmoid(x)  # sigmoid saves its output
            y.mul_(2)  # and this changes it in place
            return y

    model = nn.Sequential(nn.Linear(4, 4), Clobber())
    r = inspectr.inspect(model, inputs=torch.randn(2, 4))
    assert r.probe.error is not None and r.probe.error.phase == "backward"
    assert "modified by an inplace operation" in r.probe.error.message


def test_meta_models_get_saved_bytes_too():
    with torch.device("meta"):
        model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))
    r = inspectr.inspect(model, inputs=torch.randn(4, 8))
    assert r.probe.shape_only
    assert r.module("0").saved_bytes == 4 * 8 * 4 and r.module("1").saved_bytes == 4 * 16 * 4
