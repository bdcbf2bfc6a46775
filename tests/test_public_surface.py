"""Product packages import from each other only what the imported package declares public.

Issue 12, "No marked public surface": a package's ``__init__`` names in ``__all__`` the
modules other packages may import (a subpackage such as ``ledger.mechanisms`` names its
own), and each of those modules names in its ``__all__`` what they may import from it.
Everything else is the package's own. The check reads the source (ast), so it sees
imports inside functions too; tests, bench and scripts may reach inside and are not
walked. Packages are named by their import name (``__name__``), so the check reads the
same once they install as ``wattmesh.agents`` etc. (scripts/rename_packages.py).
"""

from __future__ import annotations

import ast
import textwrap
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import wattmesh
from wattmesh import agents, broker, dashboard, forecasting, ledger

PRODUCT = (agents, broker, dashboard, forecasting, ledger, wattmesh)


def _declared(source: Path) -> frozenset[str] | None:
    """The names in the module's top-level ``__all__`` (a literal), or None without one."""
    for node in ast.parse(source.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets = [node.target]
        else:
            continue
        if any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets):
            return frozenset(ast.literal_eval(node.value))
    return None


@dataclass(frozen=True)
class Surface:
    """The product packages by import name and folder; what each declares public."""

    packages: Mapping[str, Path]

    def owner(self, module: str) -> str | None:
        """The product package a dotted module name belongs to (the longest prefix)."""
        owners = [p for p in self.packages if module == p or module.startswith(p + ".")]
        return max(owners, key=len, default=None)

    def source(self, module: str) -> Path | None:
        """The file of a product module: ``x.py`` or ``x/__init__.py``; None if absent."""
        package = self.owner(module)
        if package is None:
            return None
        base = self.packages[package].joinpath(*module.split(".")[package.count(".") + 1 :])
        for candidate in (base / "__init__.py", base.with_suffix(".py")):
            if candidate.is_file():
                return candidate
        return None

    def modules(self, package: str) -> Iterator[tuple[str, Path]]:
        """Every module of a package, by dotted name (other product packages left out)."""
        root = self.packages[package]
        for path in sorted(root.rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            inside = parts[:-1] if parts[-1] == "__init__" else parts
            name = ".".join((package, *inside))
            if self.owner(name) == package:
                yield name, path

    def _missing(self, module: str, name: str | None) -> str | None:
        """Why ``module`` (and ``name`` from it) is not public, or None if it is."""
        package = self.owner(module)
        assert package is not None
        parts = module.split(".")
        for depth in range(package.count(".") + 1, len(parts)):
            parent = ".".join(parts[:depth])
            source = self.source(parent)
            if source is None or parts[depth] not in (_declared(source) or ()):
                return f"{parent}.__all__ does not name the module {parts[depth]!r}"
        if name is None:
            return None
        source = self.source(module)
        if source is None:
            return f"{module} is not a module of {package}"
        if name not in (_declared(source) or ()):
            return f"{module}.__all__ does not name {name!r}"
        return None

    def violations(self, importer: str, tree: ast.Module) -> Iterator[str]:
        """Each import of another product package that is not in its declared surface."""
        own = self.owner(importer)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                wanted = [(node.module, alias.name) for alias in node.names]
            elif isinstance(node, ast.Import):
                wanted = [(alias.name, None) for alias in node.names]
            else:
                continue
            for module, name in wanted:
                target = self.owner(module)
                if target is None or target == own:
                    continue
                why = self._missing(module, name)
                if why is not None:
                    shown = f"from {module} import {name}" if name else f"import {module}"
                    yield f"{importer}:{node.lineno}: {shown}: {why}"

    def all_violations(self) -> list[str]:
        found: list[str] = []
        for package in self.packages:
            for name, path in self.modules(package):
                tree = ast.parse(path.read_text(encoding="utf-8"))
                found.extend(self.violations(name, tree))
        return found


def _product() -> Surface:
    return Surface({p.__name__: Path(p.__file__ or "").parent for p in PRODUCT})


def test_product_packages_import_only_the_declared_surface() -> None:
    assert _product().all_violations() == []


def _bound(source: Path) -> set[str]:
    """The names a module's top level imports or assigns."""
    names: set[str] = set()
    for node in ast.parse(source.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(t.id for t in targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
    return names


def test_every_package_declares_modules_that_exist() -> None:
    """Each of agents, broker, forecasting and ledger (and their subpackages) declares
    its public modules; every name a package's ``__all__`` holds is a module there or a
    name it binds (ruff checks a plain module's ``__all__``)."""
    surface = _product()
    for package in surface.packages:
        for name, path in surface.modules(package):
            if path.name != "__init__.py":
                continue
            declared = _declared(path)
            if package != wattmesh.__name__:
                assert declared, f"{name}/__init__.py declares no public modules"
            for child in declared or ():
                found = surface.source(f"{name}.{child}") is not None or child in _bound(path)
                assert found, f"{name}.__all__ names {child!r}, which is not there"


def _write(root: Path, files: Mapping[str, str]) -> None:
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")


def test_the_check_finds_each_kind_of_reach_inside(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "alpha/__init__.py": '__all__ = ["pub", "sub"]\n',
            "alpha/pub.py": '__all__ = ["Ok"]\nOk = 1\nHidden = 2\n',
            "alpha/inner.py": "X = 1\n",
            "alpha/sub/__init__.py": '__all__ = ["deep"]\n',
            "alpha/sub/deep.py": '__all__ = ["Fine"]\nFine = 1\n',
            "alpha/sub/hidden.py": "Y = 1\n",
            "alpha/uses_itself.py": "from alpha.inner import X\n",
            "beta/__init__.py": "__all__: list[str] = []\n",
            "beta/user.py": """\
                from alpha.pub import Ok
                from alpha.sub.deep import Fine
                from alpha import pub
                import alpha.sub.deep
                import alpha
                from beta.user import Ok as Again
                from alpha.pub import Hidden
                from alpha.inner import X
                from alpha import inner
                import alpha.inner


                def later() -> None:
                    from alpha.sub.hidden import Y
                """,
        },
    )
    surface = Surface({"alpha": tmp_path / "alpha", "beta": tmp_path / "beta"})
    assert surface.all_violations() == [
        "beta.user:7: from alpha.pub import Hidden: alpha.pub.__all__ does not name 'Hidden'",
        "beta.user:8: from alpha.inner import X: alpha.__all__ does not name the module 'inner'",
        "beta.user:9: from alpha import inner: alpha.__all__ does not name 'inner'",
        "beta.user:10: import alpha.inner: alpha.__all__ does not name the module 'inner'",
        "beta.user:14: from alpha.sub.hidden import Y: "
        "alpha.sub.__all__ does not name the module 'hidden'",
    ]
