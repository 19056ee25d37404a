"""Provides the hook ``inspectr watch -- COMMAND`` puts into every Python process of COMMAND.

``inspectr watch`` puts this folder first on the command's ``PYTHONPATH``; Python's ``site``
imports this file at start-up. It first imports the ``sitecustomize`` the environment had
before (if any), as if this one were not there. Then, only when ``INSPECTR_WATCH_RUN`` is set,
it puts a finder on ``sys.meta_path`` that waits for ``import torch`` to finish and hands over
to ``inspectr.core.runs.attach``. Nothing here imports torch or inspectr: a Python process that
never imports torch pays one environment lookup and one finder call per import.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from importlib.machinery import ModuleSpec  # already imported by the time site runs
from types import ModuleType

_HERE = os.path.dirname(os.path.abspath(__file__))


def _chain() -> None:
    """Import the ``sitecustomize`` this one hides (later on ``sys.path``), as ``site`` would."""
    import importlib

    me = sys.modules.pop("sitecustomize", None)
    where = [i for i, p in enumerate(sys.path) if os.path.abspath(p or os.curdir) == _HERE]
    for i in reversed(where):
        del sys.path[i]
    try:
        importlib.import_module("sitecustomize")
    except ModuleNotFoundError as exc:
        if exc.name != "sitecustomize":
            _report(exc)
    except Exception as exc:  # site prints such errors and goes on; so do we
        _report(exc)
    finally:
        if where and _HERE not in sys.path:
            sys.path.insert(min(where[0], len(sys.path)), _HERE)
        if "sitecustomize" not in sys.modules and me is not None:
            sys.modules["sitecustomize"] = me


def _report(exc: BaseException) -> None:
    sys.stderr.write(f"Error in sitecustomize; set PYTHONVERBOSE for traceback:\n{type(exc).__name__}: {exc}\n")


class _TorchImported:
    """A meta-path finder that finds nothing itself: when ``torch`` is imported, it wraps the
    real loader so that ``attach.install(torch)`` runs right after ``torch/__init__.py``."""

    def find_spec(self, name: str, path: Sequence[str] | None = None,
                  target: ModuleType | None = None) -> ModuleSpec | None:
        if name != "torch":
            return None
        import importlib.util

        if self in sys.meta_path:
            sys.meta_path.remove(self)
        spec = importlib.util.find_spec("torch")
        loader = getattr(spec, "loader", None)
        if spec is None or loader is None or not hasattr(loader, "exec_module"):
            return spec
        run = loader.exec_module

        def exec_module(module: object) -> None:
            run(module)
            try:
                try:
                    from inspectr.core.runs.attach import install
                except ImportError:  # COMMAND's Python lacks inspectr: use the one that started it
                    sys.path.append(os.path.dirname(os.path.dirname(_HERE)))
                    from inspectr.core.runs.attach import install
                install(module)
            except Exception as exc:  # the user's program goes on without the watch
                sys.stderr.write(f"inspectr watch: could not attach ({type(exc).__name__}: {exc}); "
                                 "the command runs unwatched.\n")

        loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


_chain()
if os.environ.get("INSPECTR_WATCH_RUN") and "torch" not in sys.modules:
    sys.meta_path.insert(0, _TorchImported())
