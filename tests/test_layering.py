"""Tests the layering (core without rich/textual, report without textual) and the cheap imports, in fresh interpreters."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

from conftest import REPO


def loaded_after(code: str) -> set[str]:
    """Top-level package names in sys.modules after running ``code`` in a fresh interpreter."""
    script = textwrap.dedent(code) + textwrap.dedent("""
        import json as _json, sys as _sys
        print("MODULES=" + _json.dumps(sorted({m.split(".")[0] for m in _sys.modules})))
    """)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("MODULES=")][-1]
    return set(json.loads(line[len("MODULES="):]))


def test_core_imports_neither_rich_nor_textual() -> None:
    mods = loaded_after("import inspectr.core.inspect, inspectr.core.probe, inspectr.core.findings, inspectr.core.loader")
    assert "torch" in mods  # sanity: the core was really imported
    assert "rich" not in mods
    assert "textual" not in mods


def test_report_imports_no_textual() -> None:
    mods = loaded_after("import inspectr.report.render")
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
