"""The package's layers: every import points down (or within its own sub-package), and no modules
import each other in a circle. Read from the source with `ast`, so imports inside functions count;
imports under `if TYPE_CHECKING:` (annotations only, never run) do not."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "assistant"

# Bottom first. A module may import from its own layer or any layer below it.
LAYERS: list[set[str]] = [
    {"errors", "types", "text_utils"},
    {"dates"},
    {"labels", "sentences", "settings", "assistant"},  # "assistant": the package root (its public names)
    {"backends"},
    {"reading"},
    {"indexing"},
    {"search"},
    {"answering"},
    {"news"},
    {"evaluate"},
    {"interfaces"},
]
LEVEL = {name: n for n, layer in enumerate(LAYERS) for name in layer}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports() -> dict[str, set[str]]:
    """Each module of the package -> the package modules it imports (anywhere in the file)."""
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    out: dict[str, set[str]] = defaultdict(set)
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        tree = ast.parse(path.read_text(encoding="utf-8"))
        typing_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
                       for n in ast.walk(node)}
        for node in ast.walk(tree):
            if id(node) in typing_only:
                continue
            targets: list[str] = []
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[:len(package.split(".")) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                targets = [f"{target}.{a.name}" if f"{target}.{a.name}" in modules else target for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            out[name].update(t for t in targets if t in modules and t != name)
    return out


def layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "assistant"


def test_every_module_sits_in_a_known_layer() -> None:
    assert {layer(m) for m in imports()} | {layer(t) for ts in imports().values() for t in ts} <= set(LEVEL)


def test_no_import_points_up_a_layer() -> None:
    upward = sorted(f"{a} -> {b}" for a, targets in imports().items() for b in targets
                    if LEVEL[layer(b)] > LEVEL[layer(a)])
    assert upward == []


def test_no_modules_import_each_other_in_a_circle() -> None:
    graph = imports()
    # A package's __init__ re-exporting its own modules is not a circle among modules.
    edges = {a: {b for b in ts if not a.startswith(b + ".") and not b.startswith(a + ".")} for a, ts in graph.items()}
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(path[path.index(nxt):] + [nxt] if nxt in path else [node, nxt])
            elif not state.get(nxt):
                visit(nxt, path + [nxt])
        state[node] = 2

    for start in sorted(edges):
        if not state.get(start):
            visit(start, [start])
    assert cycles == []


def test_the_checker_sees_an_upward_import_when_there_is_one(tmp_path: Path) -> None:
    # The rule itself, on a made-up edge: search importing answering is upward.
    assert LEVEL[layer("assistant.answering.ask")] > LEVEL[layer("assistant.search.retrieval")]
    assert "assistant.labels" in imports()["assistant.search.evidence"]
