"""Benchmark: first paint of the app on a 20,000-module model, and moving through the tree.

Run by hand:  python benchmarks/app_first_paint.py
Target: first paint under 2 s after the model is built; key presses stay instant.
"""

from __future__ import annotations

import asyncio
import time

from torch import nn

from inspectr.core.sources.base import LoadedModel
from inspectr.tui.app import InspectrApp
from inspectr.tui.widgets.status_bar import StatusBar


async def main() -> None:
    model = nn.Sequential(*[nn.Linear(4, 4) for _ in range(20_000)])
    app = InspectrApp(None, {"probe": False}, loaded=LoadedModel(model, "stack", "object"))
    async with app.run_test(size=(160, 50)) as pilot:
        while "first_paint" not in app.timings:
            await pilot.pause(0.01)
        while app.query_one(StatusBar).probe_state != "off":
            await pilot.pause(0.05)
        t = time.perf_counter()
        for key in ("end", "home", "pagedown", "pagedown", "up", "down"):
            await pilot.press(key)
        keys = (time.perf_counter() - t) / 6
        t = time.perf_counter()
        await pilot.press("space")
        freeze = time.perf_counter() - t
    print(f"first paint {app.timings['first_paint']:.2f} s after the model was built; "
          f"{keys * 1000:.0f} ms per navigation key; {freeze * 1000:.0f} ms to freeze a module and update totals; "
          f"timings: { {k: round(v, 2) for k, v in app.timings.items()} }")


if __name__ == "__main__":
    asyncio.run(main())
