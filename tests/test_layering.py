"""No module imports from a layer above its own (docs/ARCHITECTURE.md, "Layers")."""

import ast
from pathlib import Path

import omnisep

# Lowest first; a module may import from its own layer and the ones below.
LAYERS = [
    {"errors", "spectral", "modalities", "heap", "fileio"},
    {"audio", "images", "queries"},
    {"models", "encoders"},
    {"data", "states", "pretrained", "apply"},
    {"scan", "api", "training"},
    {"evaluation", "plotting"},
    {"demo", "cli"},
    {"__init__", "__main__"},
]
LEVEL = {name: level for level, names in enumerate(LAYERS) for name in names}
ROOT = Path(omnisep.__file__).parent


def _imports(path: Path):
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("omnisep."):
            yield node.module
        elif isinstance(node, ast.ImportFrom) and node.module == "omnisep":
            yield from (f"omnisep.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names if alias.name.startswith("omnisep."))


def test_every_top_level_module_has_a_layer():
    tops = {path.stem if path.is_file() else path.name for path in ROOT.iterdir()
            if (path.suffix == ".py") or (path.is_dir() and (path / "__init__.py").exists())}
    assert tops <= set(LEVEL), f"give these a layer: {sorted(tops - set(LEVEL))}"


def test_no_import_against_the_layering():
    upward = []
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT).parts
        own = parts[0].removesuffix(".py")
        for module in _imports(path):
            other = module.split(".")[1]
            if other != own and LEVEL.get(other, -1) > LEVEL[own]:
                upward.append(f"{'/'.join(parts)} imports {module}")
    assert not upward, "\n".join(upward)
