"""Provides importing user code as it lives in repositories, leaving ``sys.path`` and ``sys.modules`` as they were.

A file inside a package (its folder has an ``__init__.py``) is imported as a module of that
package, so relative imports work; the package root's parent and the current directory are
importable meanwhile, so repo-root imports (``from utils import width``) work too. Afterwards the
modules imported from the user's folders are dropped from ``sys.modules`` (the built model keeps
working: its classes and functions hold what they need) and ``sys.path`` is restored. Modules of
installed libraries that the user's code imported stay loaded: an extension module cannot be
imported twice in one process.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib
import importlib.util
import os
import site
import sys
import sysconfig
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

from inspectr.errors import InspectrError


def package_of(path: Path) -> tuple[Path, str] | None:
    """``(package root's parent, dotted module name)`` for a file inside a package, else None.

    Walks up while each folder has an ``__init__.py`` and a name Python can import.
    """
    path = path.resolve()
    folder = path.parent
    if not (folder / "__init__.py").is_file() or not folder.name.isidentifier():
        return None
    root = folder
    while (root.parent / "__init__.py").is_file() and root.parent.name.isidentifier() and root.parent != root:
        root = root.parent
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return root.parent, ".".join(parts)


@functools.lru_cache(maxsize=1)
def library_roots() -> tuple[Path, ...]:
    """Folders of the interpreter and installed packages: modules there are never dropped."""
    found = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        found.add(sysconfig.get_paths().get(key, ""))
    try:
        found.update(site.getsitepackages())
        found.add(site.getusersitepackages())
    except AttributeError:  # site trimmed down by a virtualenv
        pass
    return tuple(Path(p).resolve() for p in found if p)


def _under(path: Path, roots: tuple[Path, ...]) -> bool:
    return any(path == r or r in path.parents for r in roots)


def module_locations(module: ModuleType) -> list[Path]:
    """Where a module's code lives: its file, or a namespace package's folders."""
    out = []
    file = getattr(module, "__file__", None)
    if isinstance(file, str):
        out.append(Path(file))
    else:
        try:
            out.extend(Path(p) for p in list(getattr(module, "__path__", None) or []))
        except TypeError:
            pass
    resolved = []
    for p in out:
        try:
            resolved.append(p.resolve())
        except (OSError, RuntimeError):
            continue
    return resolved


def is_user_module(module: ModuleType, roots: tuple[Path, ...], libraries: tuple[Path, ...]) -> bool:
    """Whether a module was imported from the user's folders (not from an installed library)."""
    where = module_locations(module)
    return bool(where) and all(_under(p, roots) and not _under(p, libraries) for p in where)


def _named(name: str, top: str | None) -> bool:
    return top is not None and (name == top or name.startswith(top + "."))


@contextmanager
def user_imports(roots: list[Path], hide: str | None = None) -> Iterator[None]:
    """Make ``roots`` importable (first on ``sys.path``) while the block runs, then put
    ``sys.path`` and ``sys.modules`` back as they were.

    Modules imported meanwhile from ``roots`` are dropped (those of installed libraries stay:
    an extension module cannot be imported twice). ``hide`` (a top-level package name, with its
    submodules) is set aside during the block, so that the user's package of that name is
    imported rather than one loaded before, and put back afterwards. No ``__pycache__`` is
    written into the user's folders.
    """
    resolved = tuple(dict.fromkeys(r.resolve() for r in roots))
    libraries = library_roots()
    saved_path = list(sys.path)
    saved_modules = dict(sys.modules)
    saved_bytecode = sys.dont_write_bytecode
    for name in [n for n in sys.modules if _named(n, hide)]:
        del sys.modules[name]
    sys.path[:0] = [str(r) for r in resolved]
    sys.dont_write_bytecode = True
    importlib.invalidate_caches()  # files written a moment ago (tests, editors) must be seen
    try:
        yield
    finally:
        sys.dont_write_bytecode = saved_bytecode
        sys.path[:] = saved_path
        for name, module in list(sys.modules.items()):
            before = saved_modules.get(name)
            if before is module or _named(name, "inspectr"):
                continue
            if _named(name, hide) or is_user_module(module, resolved, libraries):
                if before is None:
                    del sys.modules[name]
                else:
                    sys.modules[name] = before
        for name, module in saved_modules.items():
            sys.modules.setdefault(name, module)


def shown(path: str | os.PathLike[str]) -> str:
    """A path as the user would type it: relative to the current directory when under it."""
    p = Path(path)
    try:
        return str(p.resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return str(p)


def user_frame(exc: BaseException, roots: list[Path], fallback: str) -> str:
    """``file:line`` of the innermost traceback frame in the user's folders (not a library's)."""
    resolved = tuple(r.resolve() for r in roots)
    libraries = library_roots()
    for fr in reversed(traceback.extract_tb(exc.__traceback__)):
        path = Path(fr.filename)
        if not path.is_file():
            continue
        path = path.resolve()
        if _under(path, resolved) and not _under(path, libraries):
            return f"{shown(path)}:{fr.lineno}"
    return fallback


def import_file(path_text: str) -> ModuleType:
    """Import a model file: as a module of its package when its folder has an ``__init__.py``.

    Raises:
        InspectrError: a missing file, a syntax error, or an import that fails, naming the file
            and line.
    """
    path = Path(path_text).expanduser()
    if not path.exists():
        raise InspectrError(
            f"The model file {path_text} does not exist.",
            f"Check the path (relative to {Path.cwd()}); the spec form is path/to/model.py:ClassName.",
        )
    if path.is_dir():
        raise InspectrError(f"{path_text} is a directory, not a Python file.", "Point at the .py file: path/to/model.py:ClassName.")
    source = path.read_text(encoding="utf-8", errors="replace")
    try:
        ast.parse(source, filename=str(path))
    except SyntaxError as exc:
        line = (exc.text or "").rstrip()
        raise InspectrError(
            f"{path}:{exc.lineno}: syntax error in the model file: {exc.msg}." + (f" The line reads: {line.strip()!r}." if line else ""),
            "Fix that line and run inspectr again.",
        ) from exc
    package = package_of(path)
    cwd = Path.cwd()
    folder = path.resolve().parent
    if package is not None:
        top, dotted = package
        roots = [top, cwd, folder]
        # an installed package's own file: import it where it is, never a second copy of it
        hide = None if _under(top.resolve(), library_roots()) else dotted.split(".")[0]
        with user_imports(roots, hide=hide):
            module = _run_import(lambda: _import_in_package(path, dotted), path_text, roots, package)
        return module
    digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:10]
    mod_name = f"inspectr_user_{path.stem}_{digest}"
    spec = importlib.util.spec_from_file_location(mod_name, path)
    if spec is None or spec.loader is None:
        raise InspectrError(f"Python cannot import {path}.", "Give a .py file: path/to/model.py:ClassName.")
    module = importlib.util.module_from_spec(spec)
    loader = spec.loader
    roots = [folder, cwd]

    def execute() -> ModuleType:
        sys.modules[mod_name] = module  # dataclasses and typing look the module up while it runs
        loader.exec_module(module)
        return module

    with user_imports(roots):
        return _run_import(execute, path_text, roots, None)


def _import_in_package(path: Path, dotted: str) -> ModuleType:
    if all(part.isidentifier() for part in dotted.split(".")):
        module = importlib.import_module(dotted)
    else:  # a file name Python cannot spell in an import: load it into its package by hand
        parent = dotted.rpartition(".")[0]
        importlib.import_module(parent)
        spec = importlib.util.spec_from_file_location(dotted, path)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot load {path}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[dotted] = module
        spec.loader.exec_module(module)
    got = getattr(module, "__file__", None)
    if not got or Path(got).resolve() != path.resolve():
        raise InspectrError(
            f"Importing {dotted!r} for {path} found {got or 'a module without a file'} instead.",
            "Another package of that name comes first on the path; run inspectr from your repository root.",
        )
    return module


def _run_import(run: Callable[[], ModuleType], path_text: str, roots: list[Path],
                package: tuple[Path, str] | None) -> ModuleType:
    """Run an import, turning every way it fails into one paragraph naming the file and line."""
    try:
        return run()
    except InspectrError:
        raise
    except SyntaxError as exc:
        where = f"{shown(exc.filename)}:{exc.lineno}" if exc.filename else path_text
        raise InspectrError(
            f"{where}: syntax error in a module the model file imports: {exc.msg}.",
            "Fix that line and run inspectr again.",
        ) from exc
    except ImportError as exc:
        where = user_frame(exc, roots, path_text)
        raise InspectrError(f"{where}: the model file's import failed: {exc}.", _import_hint(exc, package)) from exc
    except Exception as exc:
        where = user_frame(exc, roots, path_text)
        raise InspectrError(
            f"{where}: running the model file raised {type(exc).__name__}: {exc}.",
            "Model files are imported as modules: keep training code under `if __name__ == \"__main__\":`.",
        ) from exc


def _import_hint(exc: ImportError, package: tuple[Path, str] | None) -> str:
    text = str(exc)
    if "no known parent package" in text:
        return ("Relative imports need a package: add an empty __init__.py to the model file's folder "
                "(and to each package folder above it), or run inspectr from the repository root "
                "with the module form, e.g. `inspectr models.net:Net`.")
    missing = getattr(exc, "name", None)
    if missing and package is not None and missing.split(".")[0] == package[1].split(".")[0]:
        expected = package[0] / (missing.replace(".", os.sep) + ".py")
        return (f"{missing} would be part of your own package, and there is no {shown(expected)} "
                "(nor a package folder of that name): check the module name in the import.")
    if missing:
        where = f"the current directory ({Path.cwd()})"
        if package is not None and package[0] != Path.cwd().resolve():
            where += f" and the package root's parent ({package[0]})"
        return (f"Install the package that provides {missing!r} in this environment, or fix the import; "
                f"imports from your own code are looked up in {where}, so run inspectr from the folder "
                "your code expects (usually the repository root).")
    return "Fix the import in the model file."


def import_module(dotted: str) -> ModuleType:
    """Import ``package.module`` with the current directory importable (as ``python -m`` would).

    Raises:
        InspectrError: the module is not found, or importing it fails (naming the file and line).
    """
    cwd = Path.cwd()
    with user_imports([cwd]):
        try:
            return importlib.import_module(dotted)
        except SyntaxError as exc:
            raise InspectrError(
                f"{shown(exc.filename) if exc.filename else dotted}:{exc.lineno}: syntax error in the module {dotted!r}: {exc.msg}.",
                "Fix that line and run inspectr again.",
            ) from exc
        except ModuleNotFoundError as exc:
            if exc.name and (dotted == exc.name or dotted.startswith(exc.name + ".")):
                raise InspectrError(
                    f"Cannot import the module {dotted!r}: {exc}; it is neither installed nor a package in "
                    f"the current directory ({cwd}).",
                    "Check the dotted name and run inspectr from the folder that holds the package (the "
                    "repository root), or give a file: path/to/model.py:Name. Registered models take the "
                    "prefixes sample: and torchvision: (see `inspectr --list`).",
                ) from exc
            where = user_frame(exc, [cwd], dotted)
            raise InspectrError(f"{where}: importing the module {dotted!r} failed: {exc}.", _import_hint(exc, None)) from exc
        except ImportError as exc:
            where = user_frame(exc, [cwd], dotted)
            raise InspectrError(f"{where}: importing the module {dotted!r} failed: {exc}.", _import_hint(exc, None)) from exc
        except Exception as exc:
            where = user_frame(exc, [cwd], dotted)
            raise InspectrError(
                f"{where}: importing the module {dotted!r} raised {type(exc).__name__}: {exc}.",
                "Model modules are imported: keep training code under `if __name__ == \"__main__\":`.",
            ) from exc
