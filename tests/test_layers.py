"""The package's layering, checked from its source: folders follow the dataflow, and no
module imports from a layer above its own (in-function imports included) or imports a module
that imports it back. A new module goes in the layer of its folder; a new top-level module
needs a line in LAYERS."""

from __future__ import annotations

import ast
from pathlib import Path

import pmpo_ray

PACKAGE = Path(pmpo_ray.__file__).parent

# Bottom first. The name is a top-level module or a subpackage of pmpo_ray.
LAYERS = [
    ("base", {"errors", "store", "config", "ray_session"}),
    ("tasks", {"tasks"}),
    ("requests", {"requests"}),
    ("engines", {"engines"}),
    ("optimizer", {"pmpo"}),
    ("job configs", {"jobs", "tracking"}),
    ("run folders", {"run_folder"}),
    ("evaluation", {"evaluation"}),
    ("suite", {"suite"}),
    ("reports", {"reports"}),
    ("studies", {"studies"}),
    ("api", {"api"}),
    ("commands", {"commands", "cli"}),
    ("package", {"__init__"}),
]
LAYER_OF = {unit: index for index, (_, units) in enumerate(LAYERS) for unit in units}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def unit_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def project_imports(path: Path) -> set[str]:
    """Every pmpo_ray module `path` imports, at module level or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("pmpo_ray"):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("pmpo_ray"))
    return found


def import_graph() -> dict[str, set[str]]:
    return {module_name(p): project_imports(p) for p in sorted(PACKAGE.rglob("*.py"))}


def test_every_module_has_a_layer():
    assert {unit_of(m) for m in import_graph()} <= set(LAYER_OF)


def test_no_module_imports_from_a_layer_above_its_own():
    upward = [
        f"{module} ({LAYERS[LAYER_OF[unit_of(module)]][0]}) imports {target} "
        f"({LAYERS[LAYER_OF[unit_of(target)]][0]})"
        for module, targets in import_graph().items()
        for target in targets
        if LAYER_OF[unit_of(target)] > LAYER_OF[unit_of(module)]
    ]
    assert upward == []


def test_no_two_modules_import_each_other():
    graph = import_graph()
    mutual = sorted(
        f"{a} <-> {b}"
        for a, targets in graph.items()
        for b in targets
        if a < b and a in graph.get(b, set())
    )
    assert mutual == []
