"""What code made an artifact: per-file digests of a stage's module and the project modules it
imports, so a cache key cannot outlive a behaviour change that forgot to bump ``version``.

The closure is found statically (the ``import`` statements of each file, at any depth,
resolved to files of the project packages), never by importing: a digest must not depend on
what happens to be loaded. Third-party and standard-library modules are left out; the host
tool versions in the key cover what runs outside Python.

A file's digest is taken over its syntax tree without docstrings or positions, so an edit to
a comment, a docstring or blank lines keeps every cached artifact, while any change to what
the code does (or the Python grammar that reads it) invalidates those that used it.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import sys
from dataclasses import dataclass, field
from pathlib import Path

PROJECT_PACKAGES = ("builder", "converters")


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant) \
                    and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return tree


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imported_names(tree: ast.Module, module: str, is_package: bool) -> list[str]:
    """Dotted names a module imports (absolute), skipping ``if TYPE_CHECKING:`` blocks, which
    never run."""
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            skip.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    package = module if is_package else module.rpartition(".")[0]
    names: list[str] = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".") if package else []
                base_parts = parts[:len(parts) - (node.level - 1)] if node.level > 1 else parts
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            if base:
                names.append(base)
                # ``from pkg import sub`` may name a submodule; resolution drops it if not
                names += [f"{base}.{a.name}" for a in node.names if a.name != "*"]
    return names


@dataclass
class CodeDigests:
    """Memo of file digests and import closures for one process (held by the Engine; no
    module-level state). ``roots`` limit which top-level packages count as project code."""

    roots: tuple[str, ...] = PROJECT_PACKAGES
    _files: dict[str, tuple[Path, bool] | None] = field(default_factory=dict, repr=False)
    _digest: dict[Path, tuple[str, list[str]]] = field(default_factory=dict, repr=False)
    _closure: dict[str, dict[str, str]] = field(default_factory=dict, repr=False)
    _top_dirs: dict[str, Path | None] = field(default_factory=dict, repr=False)

    def _top_dir(self, top: str) -> Path | None:
        """Where a top-level module or package lives, found without importing it."""
        if top not in self._top_dirs:
            try:
                spec = importlib.util.find_spec(top)
            except (ImportError, ValueError):
                spec = None
            where = None
            if spec is not None and spec.submodule_search_locations:
                where = Path(list(spec.submodule_search_locations)[0])
            elif spec is not None and spec.origin and spec.origin.endswith(".py"):
                where = Path(spec.origin)
            self._top_dirs[top] = where
        return self._top_dirs[top]

    def _file(self, module: str) -> tuple[Path, bool] | None:
        """(source file, is a package) of a dotted module name, or None when it is not a
        source file of the project."""
        if module in self._files:
            return self._files[module]
        top, _, rest = module.partition(".")
        base = self._top_dir(top)
        found = None
        if base is not None:
            if base.is_file():
                found = (base, False) if not rest else None
            else:
                p = base.joinpath(*rest.split(".")) if rest else base
                if (p / "__init__.py").is_file():
                    found = (p / "__init__.py", True)
                elif rest and p.with_suffix(".py").is_file():
                    found = (p.with_suffix(".py"), False)
        self._files[module] = found
        return found

    def _read(self, path: Path, module: str, is_package: bool) -> tuple[str, list[str]]:
        if path not in self._digest:
            tree = ast.parse(path.read_bytes(), filename=str(path))
            imports = _imported_names(tree, module, is_package)
            canon = ast.dump(_strip_docstrings(tree), annotate_fields=False, include_attributes=False)
            self._digest[path] = (hashlib.sha256(canon.encode()).hexdigest(), imports)
        return self._digest[path]

    def closure(self, module: str) -> dict[str, str]:
        """``{file label: digest}`` of ``module`` and every project module it imports, directly
        or not, including the packages' ``__init__`` files that an import runs. Labels are
        paths relative to the package's parent (``builder/stages/disk.py``), sorted."""
        if module in self._closure:
            return dict(self._closure[module])
        roots = set(self.roots) | {module.partition(".")[0]}
        out: dict[str, str] = {}
        seen: set[str] = set()
        todo = [module]
        while todo:
            name = todo.pop()
            if name in seen:
                continue
            seen.add(name)
            parts = name.split(".")
            if parts[0] not in roots:
                continue
            # importing a.b.c runs a/__init__ and a/b/__init__ first
            todo += [".".join(parts[:i]) for i in range(1, len(parts))]
            found = self._file(name)
            if found is None:
                continue
            path, is_package = found
            digest, imports = self._read(path, name, is_package)
            out[self._label(parts[0], path)] = digest
            todo += imports
        result = dict(sorted(out.items()))
        self._closure[module] = result
        return dict(result)

    def _label(self, top: str, path: Path) -> str:
        base = self._top_dir(top)
        anchor = base.parent if base is not None else path.parent
        try:
            return path.relative_to(anchor).as_posix()
        except ValueError:
            return path.as_posix()

    def _main_module(self) -> str | None:
        """A script run directly (``python x.py``) has no importable name: hash it under its
        file's stem, the name it has when imported, so both ways give the same key."""
        main = sys.modules.get("__main__")
        spec = getattr(main, "__spec__", None)
        if spec is not None and spec.name:
            return spec.name
        file = getattr(main, "__file__", None)
        if not file:
            return None
        stem = Path(file).stem
        self._top_dirs.setdefault(stem, Path(file).resolve())
        return stem

    def for_functions(self, *funcs) -> dict[str, str]:
        """The code digests of the modules defining ``funcs`` (a stage's run and pins)."""
        out: dict[str, str] = {}
        for f in funcs:
            mod = getattr(f, "__module__", None)
            if f is None or not mod:
                continue
            if mod == "__main__":
                mod = self._main_module()
                if mod is None:
                    continue
            out.update(self.closure(mod))
        return dict(sorted(out.items()))
