"""Tests the framework callbacks with the real packages and tiny models: a Lightning Trainer and a
Hugging Face Trainer each record a run whose loss is what the framework logged and whose sampled
modules are the model's, and a NaN planted in one batch is named at its step."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from conftest import REPO
from torch import nn

import inspectr

F = nn.functional


# ----------------------------------------------------------------------------- Lightning
def lightning_fit(folder: Path, steps: int = 20, nan_at: int | None = None, halt_on: str | None = None,
                  accumulate: int = 1):
    import lightning.pytorch as pl

    from inspectr.integrations.lightning import InspectrCallback

    class Classifier(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))
            self.returned: list[float] = []

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(x)

        def training_step(self, batch, batch_idx):
            x, y = batch
            if nan_at is not None and batch_idx == nan_at * accumulate:
                x = x.clone()
                x[0, 0] = float("nan")
            loss = F.cross_entropy(self(x), y)
            self.log("train_loss", loss)
            self.returned.append(float(loss.detach()))
            return loss

        def configure_optimizers(self):
            return torch.optim.AdamW(self.parameters(), 1e-2)

    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(8 * steps * accumulate, 8, generator=g)
    y = (x[:, 0] > 0).long()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=8)
    module = Classifier()
    trainer = pl.Trainer(max_steps=steps, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, accumulate_grad_batches=accumulate,
                         callbacks=[InspectrCallback(run=folder, every=5, halt_on=halt_on)])
    trainer.fit(module, loader)
    return module


def test_lightning_callback_records_the_run(tmp_path: Path) -> None:
    module = lightning_fit(tmp_path / "r", steps=20)
    report = inspectr.load_run(tmp_path / "r")
    assert report.run["status"] == "finished" and report.run["optimizer"] == "AdamW"
    assert [s for s, _ in report.loss] == list(range(20))
    assert [v for _, v in report.loss] == pytest.approx(module.returned, rel=1e-6)
    assert [s for s, _ in report.samples] == [0, 5, 10, 15]
    mods = report.samples[1][1]
    assert mods["net.0"]["update_ratio"] > 0 and mods["net.0"]["param_grad_norm"] > 0
    assert mods["net.1"]["dead_fraction"] is not None  # the forward was seen: the activation hooks fired
    assert report.events == () and report.findings == ()


def test_lightning_callback_with_gradient_accumulation_counts_optimizer_steps(tmp_path: Path) -> None:
    module = lightning_fit(tmp_path / "r", steps=6, accumulate=2)
    report = inspectr.load_run(tmp_path / "r")
    assert [s for s, _ in report.loss] == list(range(6))
    means = [(a + b) / 2 for a, b in zip(module.returned[0::2], module.returned[1::2])]
    assert [v for _, v in report.loss] == pytest.approx(means, rel=1e-6)


def test_lightning_callback_names_a_planted_nan_and_halts(tmp_path: Path) -> None:
    with pytest.raises(inspectr.TrainingProblem) as info:
        lightning_fit(tmp_path / "r", steps=20, nan_at=7, halt_on="error")
    assert info.value.finding.detail["step"] == 7
    report = inspectr.load_run(tmp_path / "r")
    (f,) = [f for f in report.findings if f.kind == "nonfinite"]
    assert (f.detail["step"], f.detail["source"]) == (7, "input")
    assert report.run["status"] == "halted"


# ----------------------------------------------------------------------------- Hugging Face
class Pairs(torch.utils.data.Dataset):
    def __init__(self, n: int) -> None:
        g = torch.Generator().manual_seed(0)
        self.ids = torch.randint(5, 60, (n, 12), generator=g)
        self.labels = (self.ids[:, 0] > 30).long()

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict:
        return {"input_ids": self.ids[i], "labels": self.labels[i]}


def hf_train(folder: Path, steps: int = 10, nan_at: int | None = None, halt_on: str | None = None):
    from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments

    from inspectr.integrations.transformers import InspectrCallback

    torch.manual_seed(0)
    config = BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=16, num_labels=2)
    model = BertForSequenceClassification(config)
    state: dict = {}
    if nan_at is not None:  # the word embeddings turn NaN at that optimizer step's forward
        def poison(module, args, output):
            return output * float("nan") if state["trainer"].state.global_step == nan_at else output
        model.bert.embeddings.word_embeddings.register_forward_hook(poison)

    def collate(rows):
        return {"input_ids": torch.stack([r["input_ids"] for r in rows]),
                "labels": torch.stack([r["labels"] for r in rows])}

    args = TrainingArguments(output_dir=str(folder / "out"), max_steps=steps, per_device_train_batch_size=4,
                             learning_rate=1e-3, logging_steps=1, report_to=[], save_strategy="no",
                             use_cpu=True, disable_tqdm=True, dataloader_num_workers=0, seed=0,
                             logging_nan_inf_filter=False)
    trainer = state["trainer"] = Trainer(model=model, args=args, train_dataset=Pairs(4 * steps),
                                         data_collator=collate, callbacks=[InspectrCallback(run=folder / "run", every=3,
                                                                             halt_on=halt_on)])
    trainer.train()
    return trainer


def test_hugging_face_callback_records_the_run(tmp_path: Path) -> None:
    trainer = hf_train(tmp_path, steps=10)
    report = inspectr.load_run(tmp_path / "run")
    logged = [(h["step"] - 1, h["loss"]) for h in trainer.state.log_history if "loss" in h]
    assert len(logged) == 10
    assert report.loss == logged  # exactly what the Trainer logged, at its step (counted from 0)
    assert [v for _, v in report.scalars["lr"]] == [h["learning_rate"] for h in trainer.state.log_history
                                                   if "loss" in h]
    assert [s for s, _ in report.samples] == [0, 3, 6, 9]
    mods = report.samples[1][1]
    assert mods["bert.encoder.layer.0.attention.self.query"]["update_ratio"] > 0
    assert mods["classifier"]["grad_norm"] > 0  # the output-gradient hooks saw the Trainer's backward
    assert report.run["status"] == "finished" and report.events == () and report.findings == ()


@pytest.mark.parametrize("halt_on", [None, "error"])
def test_hugging_face_callback_names_a_planted_nan_at_its_step(tmp_path: Path, halt_on: str | None) -> None:
    if halt_on:
        with pytest.raises(inspectr.TrainingProblem) as info:
            hf_train(tmp_path, steps=10, nan_at=6, halt_on=halt_on)
        assert info.value.finding.detail["step"] == 6
        report = inspectr.load_run(tmp_path / "run")
        assert report.run["status"] == "halted" and len(report.steps) == 7
        assert nn.modules.module._global_forward_hooks == {}  # the watch let go of the model
        return
    hf_train(tmp_path, steps=10, nan_at=6)
    report = inspectr.load_run(tmp_path / "run")
    (f,) = [f for f in report.findings if f.kind == "nonfinite"]
    assert f.detail["step"] == 6 and f.severity == "error"
    assert f.module == "bert.embeddings.word_embeddings"  # the replay names the module that made it
    assert [s["step"] for s in report.steps if s["nonfinite"]][0] == 6
    assert math.isnan(dict(report.loss)[6])


# ----------------------------------------------------------------------------- a missing package
@pytest.mark.parametrize(("module", "blocked", "extra"), [
    ("inspectr.integrations.lightning", ("lightning", "pytorch_lightning"), "inspectr[lightning]"),
    ("inspectr.integrations.transformers", ("transformers",), "inspectr[hf]"),
])
def test_a_missing_framework_names_the_extra(module: str, blocked: tuple[str, ...], extra: str) -> None:
    script = textwrap.dedent(f"""
        import sys
        for name in {blocked!r}:
            sys.modules[name] = None  # import fails as if not installed
        import inspectr
        try:
            from {module} import InspectrCallback
        except inspectr.InspectrError as err:
            print("ERR", err, "|", err.hint)
    """)
    out = subprocess.run([sys.executable, "-c", script], env=dict(os.environ, PYTHONPATH=str(REPO)),
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("ERR") and f"pip install {extra}" in out.stdout


# ----------------------------------------------------------------------------- the watch driven by hand
def test_a_watch_driven_by_hand_reads_the_step_inside_a_closure(tmp_path: Path) -> None:
    """What Lightning does: forward and backward inside ``optimizer.step(closure)``, after the
    optimizer's step pre-hook. Driven by hand, the watch reads each step's own gradients."""
    from inspectr.core.runs.watch import Watch

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))
    opt = torch.optim.SGD(model.parameters(), 0.1)
    g = torch.Generator().manual_seed(1)
    norms: list[float] = []
    with Watch(model, opt, run=tmp_path / "r", every=2, own_hooks=False) as w:
        for _ in range(6):
            x, y = torch.randn(16, 8, generator=g), torch.randint(0, 2, (16,), generator=g)

            def closure(x: torch.Tensor = x, y: torch.Tensor = y) -> torch.Tensor:
                opt.zero_grad()
                loss = F.cross_entropy(model(x), y)
                loss.backward()
                norms.append(float(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in model.parameters()]))))
                w.before_update()
                return loss

            loss = opt.step(closure)
            w.after_update()
            w.log(loss=loss)
    report = inspectr.load_run(tmp_path / "r")
    assert [s["grad_norm"] for s in report.steps] == pytest.approx(norms, rel=1e-6)
    assert [s for s, _ in report.samples] == [0, 2, 4] and report.samples[1][1]["0"]["update_ratio"] > 0
    assert report.samples[1][1]["1"]["dead_fraction"] is not None  # the closure's forward was sampled
