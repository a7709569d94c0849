"""The layer order of ../shared/ARCHITECTURE.md, read from the imports: no arrow runs back up.

core < data, store < models < extraction, sae < finetuning, analysis < bundle < demo; the commands at the
package root and the app sit on top, and the app's views reach the library only through accessors.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "mammo_sae"

LAYER_RANK = {
    "core": 0,
    "data": 1,
    "store": 1,
    "models": 2,
    "extraction": 3,
    "sae": 3,
    "finetuning": 4,
    "analysis": 4,
    "bundle": 5,
    "demo": 6,
}


def imported_modules(path: Path, root: Path) -> list[str]:
    """Every module ``path`` imports (relative imports resolved against its package), top level or not."""
    here = list(path.relative_to(root).with_suffix("").parts)
    modules = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            modules += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: -node.level]
                modules.append(".".join(base + ([node.module] if node.module else [])))
            elif node.module:
                modules.append(node.module)
    return modules


def layer_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "mammo_sae" and parts[1] in LAYER_RANK else None


def violations(root: Path) -> list[str]:
    """``file -> module`` for every import from a layer at or above the importing file's own layer, and
    every library import of an app view (views go through app/accessors.py)."""
    found = []
    for path in sorted((root / "mammo_sae").rglob("*.py")):
        parts = path.relative_to(root / "mammo_sae").parts
        if len(parts) == 1 or parts[0] not in LAYER_RANK:  # commands at the package root sit on top
            continue
        own = parts[0]
        for module in imported_modules(path, root):
            layer = layer_of(module)
            if layer is not None and layer != own and LAYER_RANK[layer] >= LAYER_RANK[own]:
                found.append(f"{path.relative_to(root)} -> {module}")
    for path in sorted((root / "app" / "views").glob("*.py")):
        found += [
            f"{path.relative_to(root)} -> {module} (views go through accessors)"
            for module in imported_modules(path, root)
            if module.split(".")[0] == "mammo_sae"
        ]
    return found


def test_every_package_is_a_known_layer() -> None:
    packages = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert packages == set(LAYER_RANK), "a new package needs its place in ARCHITECTURE.md's layer order"


def test_no_import_runs_back_up_the_layers() -> None:
    assert violations(ROOT) == []


@pytest.mark.parametrize(
    ("own", "imported", "broken"),
    [
        ("data", "mammo_sae.bundle.live", True),
        ("analysis", "mammo_sae.bundle.format", True),
        ("analysis", "mammo_sae.finetuning.loop", True),  # same rank: neither may import the other
        ("bundle", "mammo_sae.analysis.codes", False),
        ("store", "mammo_sae.core.hashing", False),
    ],
)
def test_the_checker_catches_an_upward_import(tmp_path: Path, own: str, imported: str, broken: bool) -> None:
    module = tmp_path / "mammo_sae" / own / "probe.py"
    module.parent.mkdir(parents=True)
    module.write_text(f"def f():\n    import {imported}\n", encoding="utf-8")
    view = tmp_path / "app" / "views" / "page.py"
    view.parent.mkdir(parents=True)
    view.write_text("import accessors\n", encoding="utf-8")
    assert bool(violations(tmp_path)) is broken
