"""Tests the house by stage: every module of inspectr belongs to one stage, imports (typing and
function-level ones included) only go down the stage order, no import cycle exists, and a spec
run through the CLI calls down the stages, never back up."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from conftest import REPO

PACKAGE = REPO / "inspectr"

# The stages in the order the data flows; a module may import its own stage and the ones before
# it. Training and memory are peers: both build on the probe, neither imports the other.
STAGES: tuple[tuple[str, int, tuple[str, ...]], ...] = (
    # shared: errors, result types, state preservation, the module walk, value pictures,
    # optimizer choices, freeze plans
    ("shared", 0, ("inspectr.errors", "inspectr.core", "inspectr.core.result", "inspectr.core.state",
                   "inspectr.core.walk", "inspectr.core.values", "inspectr.core.optim", "inspectr.core.freeze")),
    ("sources", 1, ("inspectr.core.sources",)),
    ("inputs", 2, ("inspectr.core.inputs", "inspectr.core.summary")),
    ("probe", 3, ("inspectr.core.probe",)),
    ("training", 4, ("inspectr.core.training",)),
    ("memory", 4, ("inspectr.core.memory",)),
    ("findings", 5, ("inspectr.core.findings",)),
    # inspectr.watch in the user's own loop, its run store and the RunReport read back from it
    ("runs", 6, ("inspectr.core.runs",)),
    # the training frameworks' callbacks (Lightning, Hugging Face) driving inspectr.watch
    ("integrations", 7, ("inspectr.integrations",)),
    ("inspect", 7, ("inspectr.core.inspect", "inspectr.core.inspection")),
    ("report", 8, ("inspectr.report",)),
    ("tui", 9, ("inspectr.tui",)),
    # `inspectr watch -- COMMAND`: the launcher and the sitecustomize it puts into COMMAND's processes
    ("launch", 9, ("inspectr.launch", "inspectr._attach")),
    ("entry", 10, ("inspectr", "inspectr.cli", "inspectr.__main__", "inspectr.freeze")),
)


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def stage_of(module: str) -> tuple[str, int]:
    """The stage a module belongs to: the longest prefix named in STAGES."""
    best: tuple[int, str, int] | None = None
    for name, rank, prefixes in STAGES:
        for prefix in prefixes:
            exact = module == prefix
            if exact or module.startswith(prefix + "."):
                # a package prefix claims its submodules; an exact name always wins over it
                key = (len(prefix) + (1000 if exact else 0), name, rank)
                if best is None or key > best:
                    best = key
    assert best is not None, f"{module} belongs to no stage: add it to STAGES in {__file__}"
    return best[1], best[2]


def imports_of(module: str) -> set[str]:
    """Every inspectr module ``module`` imports anywhere (top level, functions, TYPE_CHECKING)."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            # ``from inspectr.core.sources import hub`` imports the submodule hub
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        else:
            continue
        for name in names:
            while name and name not in MODULES:  # ``import inspectr.core.x.y`` -> the module
                name = name.rpartition(".")[0]
            if name.startswith("inspectr") and name != module:
                out.add(name)
    return out


GRAPH = {m: imports_of(m) for m in MODULES}


def test_every_module_has_a_stage_and_imports_go_down_the_stages() -> None:
    wrong = []
    for module, deps in GRAPH.items():
        stage, rank = stage_of(module)
        for dep in deps:
            dstage, drank = stage_of(dep)
            if dep == "inspectr" and stage != "entry":
                wrong.append(f"{module} ({stage}) imports the top package")
            elif drank > rank or (drank == rank and dstage != stage):
                wrong.append(f"{module} ({stage}) imports {dep} ({dstage})")
    assert wrong == []


def test_no_import_cycles() -> None:
    """Tarjan's strongly connected components over every import, typing-only ones included."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in GRAPH[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in GRAPH:
        if v not in index:
            visit(v)
    assert cycles == []


def test_the_stage_table_is_honest() -> None:
    """The checks above can fail: an upward import and a cycle are both caught."""
    assert stage_of("inspectr.core.probe.hooks") == ("probe", 3)
    assert stage_of("inspectr.core.probe.op_trace") == ("probe", 3)  # issue 22: the op/line replay
    assert stage_of("inspectr.core.findings.op_culprit") == ("findings", 5)
    assert stage_of("inspectr.core.inspect") == ("inspect", 7)
    assert stage_of("inspectr.core.runs.watch") == ("runs", 6)
    assert stage_of("inspectr.core.inputs") == ("inputs", 2)
    assert "inspectr.core.sources.base" in GRAPH["inspectr.core.sources.hub"]
    assert "inspectr.core.sources.loader" not in GRAPH["inspectr.core.sources.hub"]
    assert "inspectr.core.probe.run" in GRAPH["inspectr.core.training.steps"]


def test_no_file_over_600_lines() -> None:
    long = {m: n for m, p in MODULES.items() if (n := len(p.read_text(encoding="utf-8").splitlines())) > 600}
    assert long == {}


def test_a_spec_walks_from_the_cli_down_the_stages() -> None:
    """Run ``inspectr lenet --format json`` with a profiler that records every call from one
    inspectr function into another: none goes from a stage to a later one's code, except the
    callbacks a caller hands down (progress, cancel), which this CLI run passes none of."""
    script = textwrap.dedent(f"""
        import json, sys
        from inspectr import cli
        calls = set()
        def prof(frame, event, arg):
            if event != "call":
                return
            callee = frame.f_globals.get("__name__", "")
            caller = frame.f_back.f_globals.get("__name__", "") if frame.f_back else ""
            if callee.startswith("inspectr") and caller.startswith("inspectr") and callee != caller:
                calls.add((caller, callee, frame.f_code.co_name))
        sys.setprofile(prof)
        code = cli.main(["lenet", "--format", "json", "-o", {str(os.devnull)!r}])
        sys.setprofile(None)
        print("CALLS=" + json.dumps(sorted(calls)))
        sys.exit(code)
    """)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("CALLS=")][-1]
    calls = [tuple(c) for c in json.loads(line[len("CALLS="):])]
    stages_seen = {stage_of(callee)[0] for _, callee, _ in calls}
    assert {"sources", "inputs", "probe", "memory", "findings", "inspect", "report"} <= stages_seen
    upward = []
    for caller, callee, fn in calls:
        if caller not in MODULES or callee not in MODULES:
            continue
        (cstage, crank), (dstage, drank) = stage_of(caller), stage_of(callee)
        if drank > crank or (drank == crank and dstage != cstage):
            upward.append(f"{caller} ({cstage}) -> {callee}.{fn} ({dstage})")
    assert upward == []
