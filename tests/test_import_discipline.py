"""The layering rules, checked on the source of every module, imports inside functions included.

- `ctrpy.runtime` (all logic) never imports click, rich or ctrpy.commands;
- `ctrpy.commands` (thin CLI) never imports sqlite3;
- only the metadata layer (`ctrpy.runtime.metadata`) imports sqlite3: it is the one owner of SQL.

Parsing the AST catches what importing a module cannot: an import inside a function body that only runs
on some path. A module added later is covered because the package directories are walked.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "ctrpy"

RUNTIME_FORBIDDEN = ("click", "rich", "ctrpy.commands")
COMMANDS_FORBIDDEN = ("sqlite3",)
# Known exceptions (none left: the completion fast path asks ctrpy.runtime.metadata.lookup).
ALLOWED: set[tuple[str, str]] = set()


def module_name(path: Path, top: Path = PACKAGE) -> str:
    parts = path.relative_to(top.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, top: Path = PACKAGE) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import statement in the file, at any depth."""
    name = module_name(path, top)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            out.append((node.lineno, base))
            out.extend((node.lineno, f"{base}.{alias.name}") for alias in node.names if alias.name != "*")
    return out


def violations(directory: str, forbidden: tuple[str, ...], top: Path = PACKAGE) -> list[str]:
    found = []
    for path in sorted((top / directory).rglob("*.py")):
        name = module_name(path, top)
        for line, imported in imports(path, top):
            for bad in forbidden:
                if (imported == bad or imported.startswith(bad + ".")) and (name, bad) not in ALLOWED:
                    found.append(f"{path.relative_to(top.parent)}:{line}: imports {imported}")
    return found


def test_every_module_is_walked() -> None:
    runtime = list((PACKAGE / "runtime").rglob("*.py"))
    assert len(runtime) >= 48
    # Imports inside functions are seen: the client imports its stores lazily.
    lazy = [m for _, m in imports(PACKAGE / "runtime" / "client.py")]
    assert "ctrpy.runtime.metadata.images" in lazy


def test_relative_imports_are_resolved(tmp_path: Path) -> None:
    (tmp_path / "ctrpy" / "runtime" / "sub").mkdir(parents=True)
    mod = tmp_path / "ctrpy" / "runtime" / "sub" / "mod.py"
    mod.write_text("from . import a\nfrom ..x import y\n")
    found = [m for _, m in imports(mod, tmp_path / "ctrpy")]
    assert found == ["ctrpy.runtime.sub", "ctrpy.runtime.sub.a", "ctrpy.runtime.x", "ctrpy.runtime.x.y"]


@pytest.mark.parametrize(("directory", "forbidden"), [("runtime", RUNTIME_FORBIDDEN),
                                                       ("commands", COMMANDS_FORBIDDEN)])
def test_layering(directory: str, forbidden: tuple[str, ...]) -> None:
    assert violations(directory, forbidden) == []


def test_the_check_can_fail(tmp_path: Path) -> None:
    (tmp_path / "ctrpy" / "runtime").mkdir(parents=True)
    bad = tmp_path / "ctrpy" / "runtime" / "_discipline_probe.py"
    bad.write_text("def f():\n    from rich.console import Console\n    import click\n")
    found = violations("runtime", RUNTIME_FORBIDDEN, tmp_path / "ctrpy")
    assert found == ["ctrpy/runtime/_discipline_probe.py:2: imports rich.console",
                     "ctrpy/runtime/_discipline_probe.py:2: imports rich.console.Console",
                     "ctrpy/runtime/_discipline_probe.py:3: imports click"]


def test_sql_only_in_the_metadata_layer() -> None:
    # containerd's model: core/metadata owns the buckets, stores and the collector call its methods.
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        name = module_name(path)
        if name == "ctrpy.runtime.metadata" or name.startswith("ctrpy.runtime.metadata."):
            continue
        found.extend(f"{path.relative_to(PACKAGE.parent)}:{line}: imports {imported}"
                     for line, imported in imports(path) if imported == "sqlite3" or imported.startswith("sqlite3."))
    assert found == []


def test_gc_sweeps_through_the_stores() -> None:
    # No SQL, no recursive deletes, no ingest locks of its own: rows go through ctrpy.runtime.metadata.gc,
    # files through the content store's and the snapshot backends' walk/delete methods.
    found = [m for _, m in imports(PACKAGE / "runtime" / "gc.py") if m.split(".")[0] in ("sqlite3", "shutil", "fcntl")]
    assert found == []
