"""Tests the layering (core without rich/textual, report without textual) and the cheap imports, in fresh interpreters."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

from conftest import REPO


def loaded_after(code: str, full: bool = False) -> set[str]:
    """Top-level package names (``full``: every module name) in sys.modules after running
    ``code`` in a fresh interpreter."""
    names = "_sys.modules" if full else '{m.split(".")[0] for m in _sys.modules}'
    script = textwrap.dedent(code) + textwrap.dedent(f"""
        import json as _json, sys as _sys
        print("MODULES=" + _json.dumps(sorted({names})))
    """)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("MODULES=")][-1]
    return set(json.loads(line[len("MODULES="):]))


CORE_MODULES = sorted(".".join(p.relative_to(REPO / "inspectr" / "core").with_suffix("").parts)
                      for p in (REPO / "inspectr" / "core").rglob("*.py") if p.stem != "__init__")
# the rooms the probe is made of, which training and memory reuse: none of them reaches up
# into the probe's orchestration (probe.run) or its module hooks (probe.hooks)
PROBE_PARTS = ("probe.activations", "probe.stats", "probe.grad_stats", "probe.flops", "probe.saved_bytes",
               "state", "values", "result")


def test_core_imports_neither_rich_nor_textual() -> None:
    assert {"probe.run", "probe.hooks", "probe.functional", "probe.stats", "state", "values"} <= set(CORE_MODULES)
    mods = loaded_after("import " + ", ".join(f"inspectr.core.{m}" for m in CORE_MODULES))
    assert "torch" in mods  # sanity: the core was really imported
    assert "rich" not in mods
    assert "textual" not in mods


def test_report_imports_no_textual() -> None:
    report = sorted(p.stem for p in (REPO / "inspectr" / "report").glob("*.py") if p.stem != "__init__")
    assert {"render", "formatting", "module_detail"} <= set(report)
    mods = loaded_after("import " + ", ".join(f"inspectr.report.{m}" for m in report))
    assert "rich" in mods
    assert "textual" not in mods


def test_import_inspectr_does_not_import_torch() -> None:
    mods = loaded_after("import inspectr, inspectr.errors; assert inspectr.InspectrError")
    assert "inspectr" in mods
    assert "torch" not in mods
    assert "rich" not in mods and "textual" not in mods


def test_inspecting_a_sample_model_does_not_import_torchvision() -> None:
    mods = loaded_after("""
        import inspectr
        report = inspectr.inspect("sample:lenet")
        assert report.model.total_params == 61706, report.model.total_params
        report = inspectr.inspect("lenet")  # a bare gallery name too
        assert report.probe.ok
    """)
    assert "torch" in mods and "sample_models" in mods
    assert "torchvision" not in mods
    assert "rich" not in mods and "textual" not in mods


def test_probe_parts_do_not_reach_into_the_probe() -> None:
    mods = loaded_after("import " + ", ".join(f"inspectr.core.{m}" for m in PROBE_PARTS), full=True)
    assert "inspectr.core.probe.stats" in mods
    assert not {"inspectr.core.probe.run", "inspectr.core.probe.hooks", "inspectr.core.probe.functional",
                "inspectr.core.inspect"} & mods


def test_no_module_imports_another_modules_private_names() -> None:
    """Rooms talk through their public names only (no ``from inspectr.x import _helper``)."""
    import ast

    offenders = []
    for path in sorted((REPO / "inspectr").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("inspectr"):
                offenders += [f"{path.relative_to(REPO)}: {a.name}" for a in node.names
                              if a.name.startswith("_")]
    assert offenders == []


def test_app_does_not_import_the_cli() -> None:
    mods = loaded_after("import inspectr.tui.app", full=True)
    assert "inspectr.tui.app" in mods
    assert "inspectr.cli" not in mods
