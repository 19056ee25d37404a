"""Provides the words for a forward that raised inside a torch call: what the call expected, what it
got, and where the offending size came from, e.g. "`classifier` (Linear) expects 512 features and
got 2048: 2048 = 128×4×4 from `x.flatten(1)` at net.py:41".
"""

from __future__ import annotations

import math
import re

from inspectr.core.probe.op_site import OpSite

LINEAR = {"F.linear"}
MATMUL = {"@", "torch.matmul", "Tensor.matmul", "torch.mm", "Tensor.mm", "torch.bmm", "Tensor.bmm"}
CONV = {f"{p}.conv{k}d" for p in ("F", "torch") for k in (1, 2, 3)}
# calls that only rearrange their operand: where a size really came from is one call further back
RESHAPES = {f"Tensor.{n}" for n in ("flatten", "view", "reshape", "squeeze", "unsqueeze", "permute", "transpose",
                                    "contiguous", "expand", "T", "mT")} | {
    f"torch.{n}" for n in ("flatten", "reshape", "squeeze", "unsqueeze", "permute", "transpose")}
_CHANNELS = re.compile(r"to have (\d+) channels, but got (\d+) channels")


def factors(n: int, shape: tuple[int, ...]) -> tuple[int, ...] | None:
    """The run of at least two consecutive dims of ``shape`` whose product is ``n`` (the dims a
    flatten or view merged), preferring one that ends at the last dim and leaves the batch out."""
    best: tuple[int, int] | None = None
    for i in range(len(shape)):
        for j in range(i + 2, len(shape) + 1):
            if math.prod(shape[i:j]) == n:
                key = (int(j == len(shape)) * 2 + int(i > 0), j - i)
                if best is None or key > (int(best[1] == len(shape)) * 2 + int(best[0] > 0), best[1] - best[0]):
                    best = (i, j)
    return tuple(shape[best[0]:best[1]]) if best is not None else None


def _who(site: OpSite) -> str:
    if site.module:
        return f"`{site.module}` ({site.module_type})" if site.module_type else f"`{site.module}`"
    return f"`{site.written}`"


def _dims(shape: tuple[int, ...]) -> str:
    return "[" + ", ".join(map(str, shape)) + "]"


def explain_failure(site: OpSite, origin: OpSite | None, shapes: list[tuple[int, ...]], exc: BaseException,
                    before: OpSite | None = None) -> str:
    """One sentence: the failing call's expectation and what it got, and where that came from.

    Args:
        site: the call that raised.
        origin: the call that made its first tensor operand (None: the model's input, a parameter).
        shapes: the shapes of its tensor operands.
        exc: what it raised.
        before: the call that made ``origin``'s own operand (named when ``origin`` only reshapes).
    """
    got: int | None = None
    head = ""
    x = shapes[0] if shapes else ()
    if site.op in LINEAR and len(shapes) >= 2 and x and len(shapes[1]) == 2 and shapes[1][1] != x[-1]:
        expects, got = shapes[1][1], x[-1]
        head = f"{_who(site)} expects {expects} features and got {got}"
        if len(x) > 2:
            merged = math.prod(x[1:])
            hint = (f"flattening it after the batch (x.flatten(1)) gives {merged}" if merged == expects
                    else "a Linear acts on the last dimension only")
            head += f" (the last dimension of {_dims(x)}: {hint})"
    elif site.op in MATMUL and len(shapes) >= 2 and x and shapes[1]:
        b = shapes[1]
        inner = b[-2] if len(b) >= 2 else b[0]
        if x[-1] != inner:
            got = x[-1]
            head = f"`{site.written}` multiplies {_dims(x)} by {_dims(b)}: {x[-1]} ≠ {inner}"
    elif site.op in CONV and (m := _CHANNELS.search(str(exc))):
        got = int(m.group(2))
        head = f"{_who(site)} expects {m.group(1)} input channels and got {got}"
    if not head:
        head = f"`{site.written}` got operands " + ", ".join(_dims(s) for s in shapes) if shapes else ""
    if origin is None:
        return head
    merged = got is not None and origin.op in RESHAPES and origin.operands
    split = factors(got, tuple(d for d in origin.operands[0] if d != 1)) if merged and got is not None else None
    if split is not None and origin.output is not None and got in origin.output:
        tail = f"{got} = {'×'.join(map(str, split))} from {_call(origin)}"
    else:
        shape = f" {_dims(origin.output)}" if origin.output is not None else ""
        tail = f"the operand{shape} comes from {_call(origin)}"
        if before is not None and origin.op in RESHAPES and origin.operands:
            tail += f", of {_dims(origin.operands[0])} from {_call(before)}"
    return f"{head}: {tail}" if head else tail


def _call(site: OpSite) -> str:
    """`x.flatten(1)` at net.py:41, or `F.dropout` in `drop` (Dropout) at net.py:40 when the line
    is a module call rather than the op itself."""
    at = f" at {site.source.short}" if site.source is not None else ""
    written = site.written
    inside = (f" in `{site.module}` ({site.module_type})"
              if written == site.op and site.module and site.module_type else "")
    return f"`{written}`{inside}{at}"
