"""No module imports from a layer above its own: the table in docs/ARCHITECTURE.md, "Layers", holds."""

import ast
import re
from pathlib import Path

import omnisep

ROOT = Path(omnisep.__file__).parent
DOC = Path(__file__).resolve().parents[1] / "docs" / "ARCHITECTURE.md"


def read_layers(doc: Path = DOC) -> dict[str, int]:
    """``{top-level module: layer}`` from the rows ``| N name | `module`, `package/` | ... |``."""
    section = doc.read_text(encoding="utf-8").split("## Layers", 1)[1].split("\n## ", 1)[0]
    levels = {}
    for row in re.findall(r"^\| (\d+) [^|]*\| ([^|]*)\|", section, flags=re.MULTILINE):
        for name in re.findall(r"`([\w]+)/?`", row[1]):
            levels[name] = int(row[0])
    return levels


LEVEL = {**read_layers(), "__init__": 99, "__main__": 99}  # the package's own entry points sit on top


def test_the_documented_table_is_read():
    assert LEVEL["errors"] == 0 and LEVEL["cli"] == max(v for k, v in LEVEL.items() if not k.startswith("__"))


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
