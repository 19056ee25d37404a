"""Tests the memory estimate (issue 10): the formula on a model checked by hand, the peaks
against an independent op-by-op count of live storages, --fit at the batch it returns and the
next one, freezing, meta models, mixed precision, the CLI; and on CUDA, against the allocator."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import run_cli
from torch import nn
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten, tree_map

import inspectr
from inspectr.core.memory.estimate import parse_size
from inspectr.errors import InspectrError


class LiveBytes(TorchDispatchMode):
    """Peak bytes of live tensor storages, op by op: an independent reference that knows
    nothing of modules, autograd or inspectr's formula (what ``max_memory_allocated`` would
    say on an allocator without rounding)."""

    def __init__(self, *existing: list[torch.Tensor]) -> None:
        super().__init__()
        self.live: dict[int, tuple[StorageWeakRef, int]] = {}
        for group in existing:
            for t in group:
                self._add(t)
        self.peak = sum(n for _, n in self.live.values())

    def _add(self, t: object) -> None:
        if isinstance(t, torch.Tensor) and t.device.type != "meta":
            s = t.untyped_storage()
            ref = StorageWeakRef(s)
            self.live.setdefault(ref.cdata, (ref, s.nbytes()))

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        out = func(*args, **(kwargs or {}))
        for key in [k for k, (r, _) in self.live.items() if r.expired()]:
            del self.live[key]
        for t in tree_flatten(out)[0]:
            self._add(t)
        self.peak = max(self.peak, sum(n for _, n in self.live.values()))
        return out


def step_peak(model: nn.Module, x: torch.Tensor, opt: torch.optim.Optimizer) -> int:
    """The live-bytes peak of one training step in steady state (optimizer state exists)."""
    def step() -> None:
        out = model(x)
        loss = nn.functional.cross_entropy(out, torch.zeros(out.shape[0], dtype=torch.long)) \
            if out.dim() == 2 else out.float().pow(2).mean()
        loss.backward()
        opt.step()
        opt.zero_grad()

    step()
    states = [t for st in opt.state.values() for t in st.values() if isinstance(t, torch.Tensor)]
    tracker = LiveBytes(list(model.parameters()), list(model.buffers()), states, [x])
    with tracker:
        step()
    return tracker.peak


def inference_peak(model: nn.Module, x: torch.Tensor) -> int:
    model.eval()
    tracker = LiveBytes(list(model.parameters()), list(model.buffers()), [x])
    with tracker, torch.no_grad():
        model(x)
    return tracker.peak


def mlp(d_in: int = 16, hidden: int = 32, d_out: int = 8) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(d_in, hidden), nn.ReLU(), nn.Linear(hidden, d_out))


# ------------------------------------------------------------------------- the formula by hand


def test_memory_block_of_a_linear_relu_stack_by_hand() -> None:
    r = inspectr.inspect(mlp(), inputs=torch.randn(4, 16), mode="train")
    m = r.memory
    assert m is not None and m.batch_size == 4
    params = (16 * 32 + 32 + 32 * 8 + 8) * 4
    assert (m.param_bytes, m.grad_bytes, m.optimizer_bytes, m.buffer_bytes) == (params, params, 2 * params, 0)
    # the first Linear keeps its input (4x16 floats) for its weight gradient; the ReLU keeps its
    # output (4x32), which the second Linear also needs: one storage, counted once
    assert m.activation_bytes == 4 * 16 * 4 + 4 * 32 * 4
    # steady state: parameters, AdamW's two moments, gradients, two of the largest tensor (the
    # foreach step's temporaries) and the output the loop holds outweigh the tiny backward here
    assert (m.training_peak_bytes, m.peak_phase) == (params * 4 + 2 * 32 * 16 * 4 + 4 * 8 * 4, "optimizer step")
    # inference: the input, then the two largest consecutive outputs (Linear and ReLU, 4x32 each)
    assert m.inference_peak_bytes == params + 4 * 16 * 4 + 2 * 4 * 32 * 4
    assert m.optimizer == "AdamW (lr 0.001)" and m.dtype == "float32" and m.max_batch_size is None


@pytest.mark.parametrize(("optimizer", "momentum", "states"), [("adamw", None, 2), ("adam", None, 2),
                                                               ("sgd", None, 0), ("sgd", 0.9, 1)])
def test_optimizer_state_per_trainable_parameter(optimizer: str, momentum: float | None, states: int) -> None:
    m = inspectr.inspect(mlp(), inputs=torch.randn(4, 16), optimizer=optimizer, momentum=momentum).memory
    assert m is not None and m.optimizer_bytes == states * m.grad_bytes


def test_freezing_lowers_gradient_and_optimizer_bytes() -> None:
    model = mlp()
    full = inspectr.inspect(model, inputs=torch.randn(4, 16)).memory
    frozen = inspectr.inspect(model, inputs=torch.randn(4, 16), freeze=["0"]).memory
    assert full is not None and frozen is not None
    assert frozen.grad_bytes == (32 * 8 + 8) * 4 and frozen.optimizer_bytes == 2 * frozen.grad_bytes
    assert frozen.param_bytes == full.param_bytes
    assert frozen.activation_bytes == 4 * 32 * 4  # nothing before the ReLU needs a gradient
    assert frozen.training_peak_bytes < full.training_peak_bytes
    assert all(p.requires_grad for p in model.parameters())  # the freeze was for the report only


# --------------------------------------------------- against an independent count of live bytes


def _conv_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(inplace=True),
                         nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(32, 10))


def _tiny_gpt() -> nn.Module:
    torch.manual_seed(0)

    class TinyGPT(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(512, 64)
            layer = nn.TransformerEncoderLayer(64, 4, 128, dropout=0.0, batch_first=True)
            self.blocks = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
            self.head = nn.Linear(64, 512)

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            mask = nn.Transformer.generate_square_subsequent_mask(ids.shape[1])
            return self.head(self.blocks(self.embed(ids), mask=mask, is_causal=True)).flatten(0, 1)

    return TinyGPT()


class TiedAndShared(nn.Module):
    """Tied weights (an embedding and the head), a module registered at two paths, a half
    layer, and a frozen one: every way a parameter's trainable bytes can be owned."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(10, 8)
        self.block = nn.Linear(8, 8)
        self.again = self.block
        self.frozen = nn.Linear(8, 8).requires_grad_(False)
        self.low = nn.Linear(8, 8).half()
        self.head = nn.Linear(8, 10, bias=False)
        self.head.weight = self.embed.weight
        self.norm = nn.LayerNorm(8)
        self.norm.bias.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(self.frozen(self.again(self.block(self.embed(x)))))
        return self.head(self.low(h.half()).float())


@pytest.mark.parametrize("case", ["tied", "mlp", "conv"])
def test_trainable_bytes_from_the_tensors_match_the_rows(case: str) -> None:
    from inspectr.core.memory.estimate import _trainable_of_rows, trainable_of
    from inspectr.core.walk import walk

    model, x = {"tied": (TiedAndShared(), torch.randint(0, 10, (4, 3))), "mlp": (mlp(), torch.randn(4, 16)),
                "conv": (_conv_net(), torch.randn(2, 3, 16, 16))}[case]
    report = inspectr.inspect(model, inputs=x)
    grads, largest, dtypes = trainable_of(walk(model).params)
    assert (grads, largest) == _trainable_of_rows(report.modules)
    assert report.memory is not None and report.memory.grad_bytes == sum(grads.values())
    if case == "tied":
        assert dtypes == {torch.float32, torch.float16}
        assert set(grads) == {"embed", "block", "low", "norm"}  # the head's weight is the embedding's
        assert grads["norm"] == 8 * 4 and grads["low"] == (8 * 8 + 8) * 2


@pytest.mark.parametrize("case", ["mlp-activations", "conv", "resnet18", "gpt", "sgd-momentum"])
def test_training_and_inference_peaks_match_live_bytes(case: str) -> None:
    optimizer, momentum = "adamw", None
    if case == "mlp-activations":
        model, x = mlp(256, 1024, 10), torch.randn(512, 256)
    elif case == "conv":
        model, x = _conv_net(), torch.randn(8, 3, 48, 48)
    elif case == "resnet18":
        import torchvision

        torch.manual_seed(0)
        model, x = torchvision.models.resnet18(weights=None), torch.randn(4, 3, 64, 64)
    elif case == "gpt":
        model, x = _tiny_gpt(), torch.randint(0, 512, (4, 64))
    else:
        model, x, optimizer, momentum = mlp(64, 512, 10), torch.randn(64, 64), "sgd", 0.9
    est = inspectr.inspect(model, inputs=x, mode="train", optimizer=optimizer, momentum=momentum).memory
    assert est is not None
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9) if optimizer == "sgd" \
        else torch.optim.AdamW(model.parameters(), lr=1e-3)
    real = step_peak(model, x, opt)
    assert abs(est.training_peak_bytes - real) <= 0.10 * real, (est.training_peak_bytes, real, est.peak_phase)
    real_inf = inference_peak(model, x)
    assert abs(est.inference_peak_bytes - real_inf) <= 0.10 * real_inf, (est.inference_peak_bytes, real_inf)


# ----------------------------------------------------------------------------------- --fit


class CrossBatch(nn.Module):
    """Attention across the batch: what it saves grows with the square of the batch."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(32, 32)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.proj(x)
        return (h @ h.T).softmax(-1) @ h


@pytest.mark.parametrize("case", ["linear", "quadratic"])
def test_fit_agrees_with_the_estimate_at_its_batch_and_the_next(case: str) -> None:
    model = mlp(64, 256, 10) if case == "linear" else CrossBatch()
    d = 64 if case == "linear" else 32
    limit = parse_size("3MiB")
    est = inspectr.inspect(model, inputs=torch.randn(4, d), fit=limit).memory
    assert est is not None and est.fit_bytes == limit
    b = est.max_batch_size
    assert b is not None and b > 4
    assert est.linear is (case == "linear")
    if case == "quadratic":
        assert any("not linear in the batch" in n for n in est.notes)
    at_b = inspectr.inspect(model, inputs=torch.randn(b, d)).memory
    at_next = inspectr.inspect(model, inputs=torch.randn(b + 1, d)).memory
    assert at_b is not None and at_next is not None
    assert at_b.training_peak_bytes <= limit < at_next.training_peak_bytes


def test_the_fit_search_line_matches_the_interpolated_footprint() -> None:
    import random

    from inspectr.core.memory.estimate import Footprint, ModelBytes, PeakLine, training_peak
    from inspectr.core.optim import OptimizerChoice

    rng = random.Random(0)
    for _ in range(300):
        paths = [f"m{i}" for i in range(rng.randint(0, 12))]
        grads = {p: rng.randint(1, 10**6) for p in paths if rng.random() < 0.5}
        mb = ModelBytes(rng.randint(0, 10**7), rng.randint(0, 999), sum(grads.values()), max(grads.values(), default=0),
                        grads, tuple(rng.sample(paths, rng.randint(0, len(paths)))))
        b0 = rng.choice([1, 2, 3, 4])

        def counted(b: int, paths: list[str] = paths) -> Footprint:  # odd bytes make the line round
            saved = {p: rng.randint(0, 10**5) * b + rng.randint(0, 999) for p in [*paths, "elsewhere"] if rng.random() < 0.7}
            outputs = {p: rng.randint(0, 10**4) * b + rng.randint(0, 3) for p in paths if rng.random() < 0.7}
            return Footprint(b, saved, outputs, rng.randint(0, 10**3) * b)

        one, two = counted(b0), counted(2 * b0)
        for opt in (OptimizerChoice(), OptimizerChoice(name="sgd")):
            line = PeakLine(mb, opt, one, two)
            for b in (1, 2, 3, 7, 100, 12_345, 2**33 + 1):
                assert line(b) == training_peak(mb, one.at(two, b), opt)[0]


def test_fit_says_when_not_even_batch_one_fits() -> None:
    est = inspectr.inspect(mlp(), inputs=torch.randn(4, 16), fit=1000).memory
    assert est is not None and est.max_batch_size == 0 and "not even batch 1 fits" in " ".join(est.notes)


def test_parse_size_units_and_errors() -> None:
    assert parse_size("24GiB") == 24 * 2**30
    assert parse_size("80GB") == 80 * 10**9
    assert parse_size("1.5G") == int(1.5 * 2**30)
    assert parse_size(123) == 123
    for bad in ("lots", "12parsecs", "0GB", "-3GB"):
        with pytest.raises(InspectrError, match="--fit"):
            parse_size(bad)


# ------------------------------------------- where the --fit passes run: meta copies or the device


def _count_on_device(monkeypatch: pytest.MonkeyPatch, on: bool) -> None:
    from inspectr.core.memory import plan as memory_plan

    monkeypatch.setattr(memory_plan, "device_is_cheaper", lambda *a, **k: on)


@pytest.mark.parametrize("case", ["linear", "quadratic", "conv"])
def test_fit_counts_the_same_on_meta_copies_and_on_the_device(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if case == "linear":
        model, x = mlp(64, 256, 10), torch.randn(4, 64)
    elif case == "quadratic":
        model, x = CrossBatch(), torch.randn(4, 32)
    else:
        model, x = _conv_net(), torch.randn(4, 3, 16, 16)
    answers = []
    for on_device in (False, True):
        _count_on_device(monkeypatch, on_device)
        est = inspectr.inspect(model, inputs=x, fit="3MiB", mode="train").memory
        assert est is not None and est.max_batch_size
        answers.append((est.max_batch_size, est.linear, est.activation_per_sample, est.notes))
    assert answers[0] == answers[1]


class KeepsPositive(nn.Module):
    """Boolean-mask indexing: an output size only the values decide, which meta cannot count."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(16, 16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.proj(x)
        return h * h[h > 0].mean()


def test_fit_moves_to_the_device_when_meta_cannot_run_the_model(monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    model, x = KeepsPositive(), torch.randn(4, 16)
    _count_on_device(monkeypatch, False)
    on_meta = inspectr.inspect(model, inputs=x, fit="1MiB").memory
    _count_on_device(monkeypatch, True)
    on_device = inspectr.inspect(model, inputs=x, fit="1MiB").memory
    assert on_meta is not None and on_device is not None
    assert any("meta failed" in n for n in on_meta.notes) and not any("meta failed" in n for n in on_device.notes)
    assert on_meta.max_batch_size == on_device.max_batch_size > 4
    # counted where passes are dear: two sizes, no third to check the line
    assert on_meta.linear is None and on_device.linear is True


class ClampsItsWeights(nn.Module):
    """Keeps its weights in [-0.1, 0.1] by clamping them in place in its forward, with batch
    statistics and dropout: what a pass on the model's own tensors could change."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(16, 16)
        self.bn = nn.BatchNorm1d(16)
        self.drop = nn.Dropout(0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            self.lin.weight.clamp_(-0.1, 0.1)
        return self.drop(self.bn(self.lin(x)))


@pytest.mark.parametrize("on_device", [False, True])
def test_fit_passes_leave_the_model_untouched(on_device: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    from test_state import assert_same, snapshot
    from torch.nn.modules import module as nn_module

    torch.manual_seed(0)
    model = ClampsItsWeights()
    model.bn.eval()  # a mixed-mode model: the passes set one mode, and put each back
    x = torch.randn(4, 16)
    hooks = (len(nn_module._global_forward_pre_hooks), len(nn_module._global_forward_hooks))
    before = snapshot(model)
    version = model.bn.weight._version
    _count_on_device(monkeypatch, on_device)
    est = inspectr.inspect(model, inputs=x, fit="1MiB", mode="train").memory
    assert est is not None and est.max_batch_size and est.linear is True
    assert_same(before, snapshot(model))
    assert model.bn.weight._version == version  # weights no forward changed are not written
    assert (len(nn_module._global_forward_pre_hooks), len(nn_module._global_forward_hooks)) == hooks


# ------------------------------------------------------------------ meta models, mixed precision


def test_meta_models_get_activation_memory() -> None:
    with torch.device("meta"):
        big = mlp(256, 1024, 10)
    on_cpu = inspectr.inspect(mlp(256, 1024, 10), inputs=torch.randn(8, 256)).memory
    on_meta = inspectr.inspect(big, inputs=torch.randn(8, 256)).memory
    assert on_cpu is not None and on_meta is not None
    assert on_meta.activation_bytes == on_cpu.activation_bytes > 0
    assert on_meta.training_peak_bytes == on_cpu.training_peak_bytes
    fit = inspectr.inspect(big, inputs=torch.randn(8, 256), fit="1GiB").memory
    assert fit is not None and fit.max_batch_size and fit.linear is True


class GatedByItself(nn.Module):
    """Squares a layer's output and scales it by a detached copy of it: autograd saves one storage
    twice, once through an alias that is no view (``detach``)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(16, 16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc(x)
        return h.pow(2) * h.detach()


def test_a_storage_saved_through_a_detached_alias_counts_once_on_meta_as_on_the_device() -> None:
    on_cpu = inspectr.inspect(GatedByItself(), inputs=torch.randn(4, 16)).memory
    with torch.device("meta"):
        model = GatedByItself()
    on_meta = inspectr.inspect(model, inputs=torch.randn(4, 16)).memory
    assert on_cpu is not None and on_meta is not None
    assert on_cpu.activation_bytes == 2 * 4 * 16 * 4  # fc's input, and h once
    assert on_meta.activation_bytes == on_cpu.activation_bytes


class Wrapped(torch.Tensor):
    """A wrapper subclass (as DTensor, NestedTensor, float8 tensors are): its storage holds no
    data, the tensor it wraps does."""

    @staticmethod
    def __new__(cls, inner: torch.Tensor) -> Wrapped:
        return torch.Tensor._make_wrapper_subclass(cls, inner.shape, dtype=inner.dtype, device=inner.device,
                                                   strides=inner.stride(), requires_grad=inner.requires_grad)

    def __init__(self, inner: torch.Tensor) -> None:
        self.inner = inner

    @classmethod
    def __torch_dispatch__(cls, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN206
        def unwrap(x: object) -> object:
            return x.inner if isinstance(x, Wrapped) else x

        out = func(*tree_map(unwrap, args), **tree_map(unwrap, kwargs or {}))
        return tree_map(lambda x: Wrapped(x) if isinstance(x, torch.Tensor) else x, out)


class WrapsItsInput(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 8)
        self.out = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.fc(Wrapped(x)).inner)


def test_saved_wrapper_subclass_tensors_are_counted_by_their_size() -> None:
    r = inspectr.inspect(WrapsItsInput(), inputs=torch.randn(4, 8))
    assert r.probe.error is None
    saved = {m.path: m.saved_bytes for m in r.modules}
    assert saved["fc"] == saved["out"] == 4 * 8 * 4  # each Linear's input


def test_bf16_autocast_counts_activations_in_low_precision_and_keeps_fp32_weights() -> None:
    model = _conv_net()
    x = torch.randn(4, 3, 32, 32)
    fp32 = inspectr.inspect(model, inputs=x).memory
    bf16 = inspectr.inspect(model, inputs=x, dtype="bf16").memory
    assert fp32 is not None and bf16 is not None
    assert bf16.dtype.startswith("bf16 autocast") and fp32.dtype == "float32"
    assert bf16.param_bytes == fp32.param_bytes and bf16.optimizer_bytes == fp32.optimizer_bytes
    assert bf16.activation_bytes < fp32.activation_bytes
    with torch.device("meta"):
        big = _conv_net()
    meta = inspectr.inspect(big, inputs=x, dtype="bf16").memory
    assert meta is not None and any("autocast cannot run on meta" in n for n in meta.notes)
    assert meta.activation_bytes < fp32.activation_bytes


def test_memory_accounting_leaves_the_model_untouched() -> None:
    from test_state import assert_same, snapshot

    model = _conv_net()
    x = torch.randn(2, 3, 16, 16)
    before = snapshot(model)
    inspectr.inspect(model, inputs=x, fit="64MiB", dtype="bf16")
    assert_same(before, snapshot(model))


# ------------------------------------------------------------------------------------- CLI


def test_cli_memory_block_fit_and_json() -> None:
    text = run_cli("lenet", "--report", "--fit", "1GiB", "--optimizer", "sgd", "--momentum", "0.9")
    assert text.returncode == 0, text.stderr
    assert "Memory  estimate · SGD (lr 0.001, momentum 0.9) · float32 · batch 4" in text.stdout
    assert "Fits 1.0 GiB" in text.stdout and "Training peak" in text.stdout
    js = run_cli("lenet", "--format", "json", "--fit", "1GiB", "--dtype", "bf16")
    mem = json.loads(js.stdout)["memory"]
    assert set(mem) >= {"param_bytes", "grad_bytes", "optimizer_bytes", "buffer_bytes", "activation_bytes",
                        "training_peak_bytes", "inference_peak_bytes", "batch_size", "optimizer",
                        "max_batch_size"}
    assert mem["max_batch_size"] > 4 and mem["dtype"].startswith("bf16 autocast")
    bad = run_cli("lenet", "--report", "--fit", "12parsecs")
    assert bad.returncode == 2 and "--fit '12parsecs' is not a memory size" in bad.stderr
    assert "Traceback" not in bad.stderr


# ------------------------------------------------------------------------------------- CUDA


def _cuda_step_peak(model: nn.Module, x: torch.Tensor) -> int:
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step() -> None:
        out = model(x)
        loss = nn.functional.cross_entropy(out, torch.zeros(out.shape[0], dtype=torch.long, device=x.device))
        loss.backward()
        opt.step()
        opt.zero_grad()

    step()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    step()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("name", ["resnet50", "vit_b_16", "gpt"])
def test_cuda_training_peak_within_ten_percent_of_the_allocator(name: str) -> None:
    import torchvision

    if name == "gpt":
        model, x = _tiny_gpt(), torch.randint(0, 512, (16, 256))
    else:
        model = getattr(torchvision.models, name)(weights=None)
        x = torch.randn(32, 3, 224, 224)
    est = inspectr.inspect(model, inputs=x, mode="train").memory
    assert est is not None
    real = _cuda_step_peak(model.cuda(), x.cuda())
    print(f"{name}: estimate {est.training_peak_bytes / 2**20:.1f} MiB, allocator {real / 2**20:.1f} MiB")
    assert abs(est.training_peak_bytes - real) <= 0.10 * real
