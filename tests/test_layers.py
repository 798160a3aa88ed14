"""The package's floors (docs/ARCHITECTURE.md): every import points down, and no two packages import each other."""

from __future__ import annotations

import ast
from pathlib import Path

import labcon

ROOT = Path(labcon.__file__).parent

# Top floor first. A module may import its own floor or any floor below it, never one above.
FLOORS: list[set[str]] = [
    {"cli"},
    {"tui", "repl"},
    {"remote"},
    {"session"},
    {"commands"},
    {"progress"},
    {"core"},
    {"foundations"},
    {"nn"},
    {"data"},
    {"errors", "fmt"},
]


def _floor(top: str) -> int:
    for i, names in enumerate(FLOORS):
        if top in names:
            return i
    raise AssertionError(f"labcon/{top} is on no floor: add it to FLOORS here and to docs/ARCHITECTURE.md")


def _imports(path: Path) -> list[str]:
    """Every labcon package a module imports (absolute or relative, top level or inside functions)."""
    rel = path.relative_to(ROOT).parts
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ("labcon",) + rel[: len(rel) - node.level]
                out.append(".".join(base + ((node.module,) if node.module else ())))
            else:
                out.append(node.module or "")
    return [m.split(".")[1] for m in out if m.startswith("labcon.")]


def _edges() -> dict[tuple[str, str], str]:
    edges: dict[tuple[str, str], str] = {}
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT)
        if rel.parts == ("__init__.py",) or rel.parts == ("__main__.py",):
            continue  # the lazy public-name table and the entry point sit above every floor
        top = rel.parts[0].removesuffix(".py")
        for target in _imports(path):
            if target != top:
                edges.setdefault((top, target), str(rel))
    return edges


def test_every_import_points_down() -> None:
    upward = [f"{where}: {a} imports {b}" for (a, b), where in _edges().items() if _floor(b) < _floor(a)]
    assert not upward, "imports that run upward between floors:\n" + "\n".join(sorted(upward))


def test_no_package_cycles() -> None:
    edges = _edges()
    pairs = [f"{a} <-> {b}" for (a, b) in edges if (b, a) in edges and a < b]
    assert not pairs, f"packages importing each other: {pairs}"


def test_every_package_has_a_floor() -> None:
    for path in ROOT.iterdir():
        name = path.name.removesuffix(".py")
        if (
            name.startswith("_")
            or path.suffix not in (".py", "")
            or not (path.is_dir() or path.suffix == ".py")
        ):
            continue
        if path.is_dir() and not (path / "__init__.py").exists():
            continue
        _floor(name)
