"""Provides the user's line behind a torch call: the innermost frame outside torch and inspectr,
captured cheaply as (code object, instruction offset) and turned into text only for the one culprit
a report shows, and the name of the call as the user wrote it (``torch.log``, ``Tensor.sqrt``,
``F.linear``, ``/``).
"""

from __future__ import annotations

import dis
import linecache
import os
import re
import sys
from dataclasses import dataclass
from types import CodeType, FrameType, TracebackType
from typing import Any

import torch

CONTEXT_LINES = 3  # lines kept on each side of the culprit's line (the app shows them)

_TORCH_DIR = os.path.dirname(os.path.abspath(torch.__file__)) + os.sep
_INSPECTR_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))) + os.sep

# operator dunders read better as the operator the user wrote
OPERATORS = {"__truediv__": "/", "__rtruediv__": "/", "__rdiv__": "/", "__itruediv__": "/=", "__floordiv__": "//",
             "__rfloordiv__": "//", "__pow__": "**", "__rpow__": "**", "__ipow__": "**=", "__mul__": "*",
             "__rmul__": "*", "__imul__": "*=", "__matmul__": "@", "__rmatmul__": "@", "__add__": "+",
             "__radd__": "+", "__iadd__": "+=", "__sub__": "-", "__rsub__": "-", "__isub__": "-=",
             "__neg__": "unary -", "__getitem__": "[]", "__setitem__": "[]="}
_MODULE_PREFIX = {"torch._C._nn": "F.", "torch.nn.functional": "F.", "torch._C._linalg": "torch.linalg.",
                  "torch._C._special": "torch.special.", "torch._C._fft": "torch.fft.", "torch.functional": "torch.",
                  "torch": "torch."}
_NB_OPS: list[tuple[str, str]] = list(getattr(dis, "_nb_ops", []))  # BINARY_OP's argument -> ("NB_ADD", "+")
_BINARY_OP = dis.opmap.get("BINARY_OP")
_OPCODE_TEXT = {dis.opmap[name]: text for name, text in (("BINARY_SUBSCR", "[]"), ("STORE_SUBSCR", "[]="),
                                                           ("UNARY_NEGATIVE", "unary -")) if name in dis.opmap}

Site = tuple[CodeType, int, int]  # (code object, instruction offset, line): what the hot path keeps


_OURS: dict[str, bool] = {}  # co_filename -> inside torch or inspectr (or a frozen import module)


def _ours(filename: str) -> bool:
    known = _OURS.get(filename)
    if known is None:
        full = os.path.abspath(filename)
        known = _OURS[filename] = (full.startswith(_TORCH_DIR) or full.startswith(_INSPECTR_DIR)
                                   or filename.startswith("<frozen"))
    return known


def user_frame(depth: int = 1) -> Site | None:
    """The innermost frame (``depth`` above the caller) whose file is outside torch and inspectr,
    as (code, f_lasti, f_lineno); None when every frame is torch's or inspectr's."""
    f: FrameType | None = sys._getframe(depth + 1)
    while f is not None:
        if not _ours(f.f_code.co_filename):
            return f.f_code, f.f_lasti, f.f_lineno
        f = f.f_back
    return None


def traceback_site(tb: TracebackType | None) -> Site | None:
    """The innermost frame of a traceback outside torch and inspectr."""
    found: Site | None = None
    while tb is not None:
        code = tb.tb_frame.f_code
        if not _ours(code.co_filename):
            found = (code, tb.tb_lasti, tb.tb_lineno)
        tb = tb.tb_next
    return found


def op_name(func: Any, site: Site | None = None) -> str:
    """The torch call as the user wrote it: an operator (``/``, ``@``, ``[]``) when the user's
    instruction is one, else ``torch.log``, ``Tensor.sqrt``, ``F.linear``, or the function's name."""
    if site is not None:
        written = _operator_at(site[0], site[1])
        if written:
            return written
    name = getattr(func, "__name__", "") or str(func)
    if name == "__get__":  # a property: ``x.T``, ``x.mT``
        return "Tensor." + getattr(getattr(func, "__self__", None), "__name__", "attribute")
    if name in OPERATORS:
        return OPERATORS[name]
    qual = getattr(func, "__qualname__", "") or ""
    if qual.startswith(("TensorBase.", "Tensor.")):
        return "Tensor." + name
    module = getattr(func, "__module__", None) or ""
    if qual.startswith("_VariableFunctionsClass."):
        module = "torch"
    prefix = _MODULE_PREFIX.get(module)
    if prefix is not None:
        return prefix + name
    return f"{module}.{name}" if module.startswith("torch") else name


def _operator_at(code: CodeType, lasti: int) -> str:
    """The operator an instruction is (``BINARY_OP /``, a subscript), "" for a call or anything else."""
    raw = code.co_code
    if not 0 <= lasti < len(raw) - 1:
        return ""
    op, arg = raw[lasti], raw[lasti + 1]
    if op == _BINARY_OP and arg < len(_NB_OPS):
        return _NB_OPS[arg][1]
    return _OPCODE_TEXT.get(op, "")


@dataclass(frozen=True)
class SourceLine:
    """The user's line that made a call (torch-free): file, line, its text, and where on it."""

    file: str
    line: int
    code: str  # the line, stripped
    function: str = ""
    col: int | None = None  # characters into ``code`` where the call starts (None: unknown)
    end_col: int | None = None  # where it ends on this line
    context_first: int = 0  # the line number of ``context[0]``
    context: tuple[str, ...] = ()  # the lines around it, as written (indentation kept)

    @property
    def short(self) -> str:
        """``model.py:12``."""
        return f"{os.path.basename(self.file)}:{self.line}"

    @property
    def location(self) -> str:
        """``/full/path/model.py:12``."""
        return f"{self.file}:{self.line}"

    @property
    def segment(self) -> str:
        """The call's own text on the line (``x.flatten(1)``), else the whole line."""
        if self.col is not None and self.end_col is not None and self.end_col > self.col:
            return self.code[self.col:self.end_col]
        return self.code

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line, "code": self.code, "function": self.function,
                "col": self.col, "end_col": self.end_col, "context_first": self.context_first,
                "context": list(self.context)}


def resolve(site: Site | None) -> SourceLine | None:
    """The text of a captured site: done only for the culprit a finding shows."""
    if site is None:
        return None
    code, lasti, line = site
    col = end_col = None
    positions = getattr(code, "co_positions", None)  # Python 3.11+: columns of each instruction
    if positions is not None:
        try:
            pos = list(positions())[lasti // 2]
        except (IndexError, ValueError):
            pos = None
        if pos is not None and pos[0] is not None:
            line = pos[0]
            raw = linecache.getline(code.co_filename, line).rstrip("\n")
            if pos[2] is not None:
                col = _chars(raw, pos[2])
                end_col = _chars(raw, pos[3]) if pos[1] == pos[0] and pos[3] is not None else len(raw)
    return source_at(code.co_filename, line, code.co_name, col, end_col)


_STACK_LINE = re.compile(r'File "([^"]+)", line (\d+), in (\S+)')


def stack_source(formatted: list[str] | None) -> SourceLine | None:
    """The innermost frame outside torch and inspectr of a formatted stack (anomaly mode's
    ``traceback_`` metadata of an autograd node), without columns."""
    for entry in reversed(formatted or []):
        m = _STACK_LINE.search(entry)
        if m is not None and not _ours(m.group(1)):
            return source_at(m.group(1), int(m.group(2)), m.group(3))
    return None


def source_at(filename: str, line: int | None, function: str = "", col: int | None = None,
              end_col: int | None = None) -> SourceLine | None:
    """``SourceLine`` for a file and line; ``col``/``end_col`` count characters of the raw line."""
    if line is None:
        return None
    raw = linecache.getline(filename, line).rstrip("\n")
    text = raw.strip()
    if not text:
        return SourceLine(filename, line, "", function)  # the file is gone or changed
    indent = len(raw) - len(raw.lstrip())
    if col is not None:
        col = max(0, col - indent)
        end_col = max(col, (end_col if end_col is not None else len(raw)) - indent)
    first = max(1, line - CONTEXT_LINES)
    context = [linecache.getline(filename, n).rstrip("\n") for n in range(first, line + CONTEXT_LINES + 1)]
    while len(context) > line - first + 1 and not context[-1].strip():
        context.pop()  # blank lines after it, or past the end of the file
    return SourceLine(filename, line, text, function, col, end_col, first, tuple(context))


def _chars(line: str, byte_offset: int) -> int:
    """Python's columns count UTF-8 bytes; the caret counts characters."""
    return len(line.encode("utf-8")[:byte_offset].decode("utf-8", errors="replace"))
