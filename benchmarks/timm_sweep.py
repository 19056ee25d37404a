"""Sweep a deterministic sample of timm's zoo through the CLI, as a new user would, and count
false alarms (run by hand, not in CI: minutes, and the zoo moves with timm's releases).

    PYTHONPATH=. python benchmarks/timm_sweep.py [--models 40] [--max-params 40e6] [--json out.json]

Every k-th architecture of ``timm.list_models()`` (sorted) whose parameter count, read from a
meta-device build, is under ``--max-params``, until ``--models`` are taken. Each runs as
``inspectr timm:NAME --format json --batch-size 2`` in a fresh process (freshly built,
``pretrained=False``). A warning or error finding on a freshly built model of a well-used zoo
is counted as a false alarm and listed for review; parameter counts are checked against
``sum(p.numel() for p in model.parameters())`` of the meta build.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent


def meta_params(timm: object, name: str) -> int | None:
    try:
        with torch.device("meta"):
            model = timm.create_model(name, pretrained=False)  # type: ignore[attr-defined]
    except Exception:
        return None
    return sum(p.numel() for p in model.parameters())


def sample(timm: object, count: int, max_params: float) -> list[tuple[str, int]]:
    names = sorted(timm.list_models())  # type: ignore[attr-defined]
    step = max(1, len(names) // (count * 3))  # sizes are read lazily: a third of the k-th names are kept
    out: list[tuple[str, int]] = []
    for offset in range(step):
        for name in names[offset::step]:
            if any(n == name for n, _ in out):
                continue
            n = meta_params(timm, name)
            if n is not None and n < max_params:
                out.append((name, n))
                if len(out) == count:
                    return sorted(out)
    return sorted(out)


def run_one(name: str, timeout: float) -> dict[str, object]:
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    start = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, "-m", "inspectr", f"timm:{name}", "--format", "json",
                               "--batch-size", "2"], capture_output=True, text=True, timeout=timeout,
                              env=env, stdin=subprocess.DEVNULL, cwd=REPO)
    except subprocess.TimeoutExpired:
        return {"name": name, "status": "timeout", "seconds": timeout}
    seconds = time.perf_counter() - start
    try:
        data = json.loads(proc.stdout)
    except json.JSONDecodeError:
        return {"name": name, "status": f"exit {proc.returncode}", "seconds": seconds,
                "error": proc.stderr.strip().splitlines()[-1:] if proc.stderr.strip() else []}
    alarms = [f"{f['severity']} {f['kind']} at {f['module'] or '(root)'}: {f['message'][:160]}"
              for f in data["findings"] if f["severity"] in ("warning", "error")]
    return {"name": name, "status": "ok", "seconds": seconds, "params": data["model"]["total_params"],
            "probe_ok": data["probe"]["ok"], "backward": data["probe"]["backward"], "alarms": alarms}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", type=int, default=40)
    ap.add_argument("--max-params", type=float, default=40e6)
    ap.add_argument("--timeout", type=float, default=600)
    ap.add_argument("--json", help="write every result here")
    ap.add_argument("--also", nargs="*", default=[], help="architectures to run besides the sample")
    args = ap.parse_args()
    import timm

    picked = sample(timm, args.models, args.max_params)
    picked += [(n, meta_params(timm, n) or 0) for n in args.also if n not in dict(picked)]
    print(f"timm {timm.__version__} · torch {torch.__version__} · {len(picked)} models under "
          f"{args.max_params:,.0f} parameters", flush=True)
    results = []
    for name, expected in picked:
        r = run_one(name, args.timeout)
        r["expected_params"] = expected
        results.append(r)
        exact = "exact" if r.get("params") == expected else f"COUNT {r.get('params')} != {expected}"
        alarms = r.get("alarms") or []
        state = r["status"] if r["status"] != "ok" else ("probe ok" if r["probe_ok"] else "PROBE FAILED")
        print(f"{name:44s} {expected:>12,} {exact:>6s} {state:10s} {r['seconds']:6.1f} s "
              f"{len(alarms)} alarm(s)", flush=True)
        for a in alarms:
            print(f"    {a}", flush=True)
    ok = [r for r in results if r["status"] == "ok"]
    print(f"\nmodels run {len(ok)}/{len(results)} · exact counts "
          f"{sum(r['params'] == r['expected_params'] for r in ok)} · probes that ran "
          f"{sum(bool(r['probe_ok']) for r in ok)} · backward ran {sum(r['backward'] == 'ran' for r in ok)} · "
          f"models with false alarms {sum(bool(r['alarms']) for r in ok)}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
