"""Provides ``inspectr --list`` and the compact ``--check`` summary."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table
from rich.text import Text

from inspectr.core.inspection import Report
from inspectr.report.formatting import SEVERITY_MARK, SEVERITY_STYLE


def print_list(console: Console | None = None) -> None:
    """Registered models grouped by source: the gallery (healthy, sick) and torchvision by family."""
    from inspectr.core.sources.registry import sample_entries, torchvision_entries

    c = console or Console(highlight=False, soft_wrap=True)
    samples = sample_entries()
    for title, healthy in (("sample gallery: healthy", True), ("sample gallery: sick on purpose", False)):
        t = Table(title=title, title_justify="left", show_header=False, box=None, pad_edge=False)
        t.add_column(style="bold", no_wrap=True)
        t.add_column()
        for e in samples.values():
            if e.healthy == healthy:
                extra = (f"  [expect {e.expected[0]} at {e.expected[1] or '(root)'}"
                         f"{' with --steps' if e.needs_steps else ''}]" if e.expected else "")
                t.add_row(e.name, Text(e.description) + Text(extra, style="dim"))
        c.print(t)
        c.print()
    tv = torchvision_entries()
    families: dict[str, list[str]] = {}
    for e in tv.values():
        families.setdefault(e.family, []).append(e.name)
    c.print(Text(f"torchvision (weights=None): {len(tv)} models", style="italic"))
    for fam, names in families.items():
        c.print(Text(f"  {fam}: ", style="bold") + Text(", ".join(sorted(names))))
    print_timm(c)


def print_timm(console: Console) -> None:
    """timm's models by defining module (``timm:NAME``), or how to get timm when it is missing."""
    from inspectr.core.sources.hub import TIMM_INSTALL, timm_families

    c = console
    c.print()
    families = timm_families()
    if families is None:
        c.print(Text(f"timm: not installed; {TIMM_INSTALL} to inspect timm:NAME models", style="italic"))
        return
    total = sum(len(names) for names in families.values())
    c.print(Text(f"timm (timm:NAME, pretrained=False): {total} models", style="italic"))
    for module, names in families.items():
        c.print(Text(f"  {module}: ", style="bold") + Text(", ".join(names)))
    c.print()
    c.print(Text("Hugging Face: give a folder saved with save_pretrained (config.json, weights), "
                 "e.g. `inspectr path/to/model` or `inspectr hf:path/to/model`", style="italic"))


def print_check(report: Report, console: Console | None = None) -> None:
    """One line per finding plus a verdict: what a CI log needs."""
    c = console or Console(highlight=False, soft_wrap=True)
    m = report.model
    c.print(f"{m.name}: {m.total_params:,} params ({m.trainable_params:,} trainable) · probe "
            f"{'ok' if report.probe.ok else 'FAILED'} · {len(report.findings)} finding(s)")
    tr = report.training
    if tr is not None and tr.loss:
        c.print(f"  training: {tr.steps_run} of {tr.steps} steps · {tr.optimizer_label} · loss "
                f"{tr.loss[0]:.4g} → {tr.loss[-1]:.4g} ({tr.loss_name})")
    for f in report.findings:
        # messages name their module already
        c.print(Text(f"  {SEVERITY_MARK[f.severity]} {f.severity:7s} {f.kind:20s} ",
                     style=SEVERITY_STYLE[f.severity]) + Text(f.message))
    c.print("FAIL" if report.has_errors else "PASS", style="bold red" if report.has_errors else "bold green")
