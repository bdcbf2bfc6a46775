#!/usr/bin/env python3
"""Rewrite the imports of `agents`, `broker`, `forecasting`, `ledger` to `wattmesh.<name>`.

Issue 12, "Installed names" (docs/ARCHITECTURE.md): a wheel installs these four as
top-level packages, and `agents` is also the import name of the OpenAI Agents SDK. The
folders stay where the layout has them; `wattmesh/agents` etc. become symbolic links to
them, so the wheel, editable installs, mypy and import-linter all see
`wattmesh.agents`. This script performs the change mechanically and idempotently (a
second run changes nothing); run it at a quiet moment on a clean tree, then
`ruff check --fix . && ruff format .` (import blocks re-sort) and `pip install -e .`:

    python3 scripts/rename_packages.py            # rewrite, print what changed
    python3 scripts/rename_packages.py --dry-run  # print what would change, exit 1 if any

What it does, on every tracked file:

- Python code: `from agents... import` -> `from wattmesh.agents... import`;
  `import agents` -> `from wattmesh import agents` (the name `agents` stays bound);
  `import agents.x as y` -> `import wattmesh.agents.x as y`; a bare `import agents.x`
  would bind `wattmesh`, so it is reported for a person, not rewritten.
- Python strings that are data, not docstrings: the same for code in a string (a probe
  for a child interpreter), and a dotted name whose second part is a module of the
  package on disk (`"agents.outbox"` as a logger name, `resources.files("agents.metering")`)
  -> `wattmesh.agents...`; `"ledger.db"` and a variable's `ledger.store` in code are left
  alone. Docstrings and comments are prose and keep the folder's name (rewriting them
  would push lines past the length limit).
- Markdown and other text files: dotted module names as in strings; folder paths such
  as `agents/agent.py` stay true.
- `wattmesh/<name>` -> `../<name>` symbolic links, added to git.
- pyproject.toml: discovery (`wattmesh*` only), package data, mypy, import-linter (one
  root package; the composition root's modules listed from disk) and a ruff ban of the
  old top-level names (TID251), so an `import agents` left behind fails the lint.

Standard library only.
"""

from __future__ import annotations

import argparse
import io
import re
import subprocess
import sys
import tokenize
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

PACKAGES = ("agents", "broker", "forecasting", "ledger")
ROOT_PACKAGE = "wattmesh"

_PKG = "|".join(PACKAGES)
_DOTTED = r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*"
# `from agents` / `from agents.x` (not `from .agents`, not `from wattmesh.agents`).
# A statement starts a line or follows a `\n` escape inside a string literal.
_STATEMENT_START = r"(?:(?<![\w.])|(?<=\\n))"
_FROM = re.compile(rf"{_STATEMENT_START}(from\s+)({_PKG})(?=[\s.])")
# `import agents.x, broker.y` as a statement inside a string (a probe for a child).
_IMPORT_LIST = re.compile(rf"{_STATEMENT_START}(import\s+)({_DOTTED}(?:\s*,\s*{_DOTTED})*)")
# A dotted path in prose or a string: `agents._outbox`, `ledger.service.LedgerService`.
_MODULE_PATH = re.compile(rf"(?<![\w./-])({_PKG})\.([A-Za-z_][A-Za-z0-9_]*)")


@dataclass(frozen=True)
class Modules:
    """Which names are modules of each package on disk (before or after the move)."""

    children: dict[str, frozenset[str]]

    @classmethod
    def scan(cls, root: Path) -> Modules:
        children: dict[str, frozenset[str]] = {}
        for package in PACKAGES:
            folder = root / package
            names = {p.stem for p in folder.glob("*.py")} | {
                p.name for p in folder.iterdir() if (p / "__init__.py").is_file()
            }
            children[package] = frozenset(names - {"__init__"})
        return cls(children)

    def is_module(self, package: str, child: str) -> bool:
        return child in self.children[package]


def _prefix_module_paths(text: str, modules: Modules) -> str:
    def replace(match: re.Match[str]) -> str:
        package, child = match.group(1), match.group(2)
        if modules.is_module(package, child):
            return f"{ROOT_PACKAGE}.{package}.{child}"
        return match.group(0)

    return _MODULE_PATH.sub(replace, text)


def _prefix_import_list(match: re.Match[str]) -> str:
    names = [name.strip() for name in match.group(2).split(",")]
    rewritten = [
        f"{ROOT_PACKAGE}.{name}" if name.split(".")[0] in PACKAGES else name for name in names
    ]
    if rewritten == names:
        return match.group(0)
    return match.group(1) + ", ".join(rewritten)


def rewrite_embedded(text: str, modules: Modules) -> str:
    """A string or comment: imports of a probe, then dotted module paths."""
    text = _FROM.sub(rf"\1{ROOT_PACKAGE}.\2", text)
    text = _IMPORT_LIST.sub(_prefix_import_list, text)
    return _prefix_module_paths(text, modules)


@dataclass(frozen=True)
class Edit:
    start: tuple[int, int]
    end: tuple[int, int]
    text: str


def _statement_edits(tokens: Sequence[tokenize.TokenInfo], problems: list[str]) -> list[Edit]:
    """Edits of the import statements in code (not in strings)."""
    edits: list[Edit] = []
    significant = [t for t in tokens if t.type not in {tokenize.NL, tokenize.COMMENT}]
    for i, token in enumerate(significant):
        if token.type != tokenize.NAME or token.string not in {"from", "import"}:
            continue
        at_start = i == 0 or significant[i - 1].type in {
            tokenize.NEWLINE,
            tokenize.INDENT,
            tokenize.DEDENT,
        }
        if not at_start and significant[i - 1].string != ":":
            continue  # `from` inside `raise ... from exc`, `yield from`
        following = significant[i + 1] if i + 1 < len(significant) else None
        if following is None or following.type != tokenize.NAME:
            continue
        if following.string not in PACKAGES:
            continue
        if token.string == "from":
            edits.append(Edit(following.start, following.start, f"{ROOT_PACKAGE}."))
            continue
        edits.extend(_import_edits(significant, i, problems))
    return edits


def _import_edits(
    significant: Sequence[tokenize.TokenInfo], at: int, problems: list[str]
) -> list[Edit]:
    """`import a.b [as c], d` statements: one edit per item naming one of the packages."""
    edits: list[Edit] = []
    items: list[list[tokenize.TokenInfo]] = [[]]
    j = at + 1
    while j < len(significant) and significant[j].type not in {
        tokenize.NEWLINE,
        tokenize.ENDMARKER,
    }:
        if significant[j].string == ",":
            items.append([])
        elif significant[j].string != ";":
            items[-1].append(significant[j])
        else:
            break
        j += 1
    single = len(items) == 1
    for item in items:
        if not item or item[0].string not in PACKAGES:
            continue
        words = [t.string for t in item]
        if single and len(words) == 1:
            # `import agents` -> `from wattmesh import agents`: `agents` stays bound.
            keyword = significant[at]
            edits.append(Edit(keyword.start, keyword.start, f"from {ROOT_PACKAGE} "))
            continue
        if "as" not in words:
            problems.append(
                f"line {item[0].start[0]}: `import {''.join(words)}` binds the package name;"
                " rewrite by hand"
            )
            continue
        edits.append(Edit(item[0].start, item[0].start, f"{ROOT_PACKAGE}."))
    return edits


def rewrite_python(source: str, modules: Modules, problems: list[str]) -> str:
    """The source with its imports and embedded module paths renamed."""
    tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    edits = _statement_edits(tokens, problems)
    docstrings = _docstrings(tokens)
    for token in tokens:
        if token.type == tokenize.STRING and token.start in docstrings:
            continue
        if token.type == tokenize.STRING or _is_fstring_middle(token):
            new = rewrite_embedded(token.string, modules)
            if new != token.string:
                edits.append(Edit(token.start, token.end, new))
    return _apply(source, edits)


def _docstrings(tokens: Sequence[tokenize.TokenInfo]) -> set[tuple[int, int]]:
    """Where the strings that are a statement of their own start (docstrings, prose)."""
    significant = [t for t in tokens if t.type not in {tokenize.NL, tokenize.COMMENT}]
    starts = set()
    boundary = {tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT}
    for i, token in enumerate(significant):
        if token.type != tokenize.STRING:
            continue
        before = significant[i - 1].type if i else tokenize.NEWLINE
        after = significant[i + 1].type if i + 1 < len(significant) else tokenize.NEWLINE
        if before in boundary and after in {tokenize.NEWLINE, tokenize.ENDMARKER}:
            starts.add(token.start)
    return starts


def _is_fstring_middle(token: tokenize.TokenInfo) -> bool:
    middle = getattr(tokenize, "FSTRING_MIDDLE", None)  # Python 3.12+
    return middle is not None and token.type == middle


def _apply(source: str, edits: Iterable[Edit]) -> str:
    lines = source.splitlines(keepends=True)
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line))

    def at(position: tuple[int, int]) -> int:
        return offsets[position[0] - 1] + position[1]

    result = source
    for edit in sorted(edits, key=lambda e: at(e.start), reverse=True):
        result = result[: at(edit.start)] + edit.text + result[at(edit.end) :]
    return result


def rewrite_text(text: str, modules: Modules) -> str:
    """Markdown and other prose: dotted module paths (folder paths stay true)."""
    return _prefix_module_paths(text, modules)


def rewrite_pyproject(text: str, composition: Sequence[str]) -> str:
    """Discovery, package data, mypy and import-linter for the packages inside wattmesh."""
    quoted = ", ".join(f'"{ROOT_PACKAGE}.{name}"' for name in composition)
    replacements = [
        (
            'include = ["agents*", "broker*", "forecasting*", "ledger*", "wattmesh*"]',
            'include = ["wattmesh*"]',
        ),
        ('"agents.metering" = ["maps/*.toml"]', '"wattmesh.agents.metering" = ["maps/*.toml"]'),
        (
            'packages = ["agents", "broker", "forecasting", "ledger", "wattmesh"]',
            'packages = ["wattmesh"]',
        ),
        (
            'root_packages = ["agents", "broker", "forecasting", "ledger", "wattmesh"]',
            'root_packages = ["wattmesh"]',
        ),
        (
            'forbidden_modules = ["agents", "forecasting", "ledger", "wattmesh"]',
            'forbidden_modules = ["wattmesh.agents", "wattmesh.forecasting", "wattmesh.ledger", '
            f"{quoted}]",
        ),
        (
            'modules = ["agents", "forecasting", "ledger"]',
            'modules = ["wattmesh.agents", "wattmesh.forecasting", "wattmesh.ledger"]',
        ),
        (
            'source_modules = ["agents", "broker", "forecasting", "ledger"]\n'
            'forbidden_modules = ["wattmesh"]',
            'source_modules = ["wattmesh.agents", "wattmesh.broker", "wattmesh.forecasting", '
            f'"wattmesh.ledger"]\nforbidden_modules = [{quoted}]',
        ),
        (
            'source_modules = ["agents", "broker"]',
            'source_modules = ["wattmesh.agents", "wattmesh.broker"]',
        ),
        ('source_modules = ["broker"]', 'source_modules = ["wattmesh.broker"]'),
        (
            'ignore_imports = ["broker.embedded -> amqtt"]',
            'ignore_imports = ["wattmesh.broker.embedded -> amqtt"]',
        ),
    ]
    for old, new in replacements:
        text = text.replace(old, new)
    if BANNED_TABLE not in text:
        text = text.replace(RUFF_PER_FILE, BANNED + RUFF_PER_FILE)
    return text


BANNED_TABLE = "[tool.ruff.lint.flake8-tidy-imports.banned-api]"
BANNED = (
    f"{BANNED_TABLE}\n"
    + "".join(f'"{name}".msg = "import {ROOT_PACKAGE}.{name}"\n' for name in PACKAGES)
    + "\n"
)
RUFF_PER_FILE = "[tool.ruff.lint.per-file-ignores]"


def _composition_modules(root: Path) -> list[str]:
    """The composition root's own modules and sub-packages (what nothing else may import)."""
    folder = root / ROOT_PACKAGE
    names = {p.stem for p in folder.glob("*.py") if p.stem not in {"__init__", "__main__"}}
    names |= {p.name for p in folder.iterdir() if (p / "__init__.py").is_file()}
    return sorted(names - set(PACKAGES))


def _tracked(root: Path) -> list[Path]:
    out = subprocess.run(
        ["git", "ls-files", "-z"], cwd=root, capture_output=True, check=True, text=True
    ).stdout
    return [root / name for name in out.split("\0") if name]


def _link_folders(root: Path, dry_run: bool) -> list[str]:
    """`wattmesh/agents` -> `../agents` for each package, added to git."""
    linked = []
    for package in PACKAGES:
        link = root / ROOT_PACKAGE / package
        if link.is_symlink():
            continue
        linked.append(f"{ROOT_PACKAGE}/{package} -> ../{package}")
        if not dry_run:
            link.symlink_to(Path("..") / package, target_is_directory=True)
            subprocess.run(["git", "add", link.relative_to(root).as_posix()], cwd=root, check=True)
    return linked


# This script and its test hold the old names on purpose.
OWN_FILES = {"rename_packages.py", "test_rename_packages.py"}
TEXT_SUFFIXES = {".md", ".toml", ".service", ".cfg", ".ini", ".txt", ".yml", ".yaml"}


def rename(root: Path, dry_run: bool) -> tuple[list[str], list[str]]:
    """Rewrite the tree under root; the changed files and the problems left for a person."""
    modules = Modules.scan(root)
    changed: list[str] = []
    problems: list[str] = []
    for path in _tracked(root):
        if path.is_symlink() or not path.is_file() or path.name in OWN_FILES:
            continue
        relative = path.relative_to(root).as_posix()
        text = path.read_text(encoding="utf-8")
        file_problems: list[str] = []
        if path.suffix == ".py":
            new = rewrite_python(text, modules, file_problems)
        elif path.name == "pyproject.toml":
            new = rewrite_pyproject(text, _composition_modules(root))
        elif path.suffix in TEXT_SUFFIXES:
            new = rewrite_text(text, modules)
        else:
            continue
        problems += [f"{relative}: {p}" for p in file_problems]
        if new != text:
            changed.append(relative)
            if not dry_run:
                path.write_text(new, encoding="utf-8")
    changed += _link_folders(root, dry_run)
    return changed, problems


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[1])
    parser.add_argument(
        "--dry-run", action="store_true", help="change nothing; exit 1 if a run would"
    )
    args = parser.parse_args(argv)
    changed, problems = rename(args.root, args.dry_run)
    for line in changed:
        print(line)
    for line in problems:
        print(f"by hand: {line}", file=sys.stderr)
    if args.dry_run and changed:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
