"""The import graph matches the intended layers: arena -> trainer -> core, no cycles anywhere.

Every import counts, including those inside functions (a lazy import still ties two modules
together); only ``if TYPE_CHECKING:`` blocks are left out, since they never run.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("arena", "trainer", "core")


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            parts = path.relative_to(REPO).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and _is_type_checking(node) for n in ast.walk(node)}
    targets = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
        for name in names:
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name:
                targets.add(name)
    return targets


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        # a package's __init__ is imported with any of its modules: an edge to it is no cycle
        graph[name] = {t for t in _imports(path, modules) if t != name and not name.startswith(t + ".")}
    return graph


def test_layers_point_one_way():
    wrong = []
    for name, targets in _graph().items():
        top = name.split(".")[0]
        for target in targets:
            other = target.split(".")[0]
            if top == "core" and other != "core" and name != "core.train":
                wrong.append(f"{name} -> {target} (core/ is the lowest layer; only core/train.py, the entry, may reach up)")
            if top == "trainer" and other == "arena":
                wrong.append(f"{name} -> {target} (the daemon builds on the trainer, not the other way)")
    assert not wrong, "\n".join(sorted(wrong))


def test_trainer_layers():
    """Within trainer/: config is below everything but the option models it validates
    (trainer.methods, trainer.optim, trainer.judges and trainer.callbacks register them) and the
    light tracker table (trainer.trackers); data, models and profiles never reach up into the engine."""
    graph = _graph()
    wrong = []
    for name, targets in graph.items():
        for target in targets:
            if name.startswith("trainer.config") and target.startswith("trainer.") and not target.startswith(
                ("trainer.config", "trainer.methods", "trainer.optim", "trainer.judges", "trainer.trackers", "trainer.callbacks")
            ):
                wrong.append(f"{name} -> {target}")
            if name.startswith(("trainer.data", "trainer.models", "trainer.profiles")) and target.startswith(
                ("trainer.core", "trainer.methods", "trainer.dashboard", "trainer.cli_main")
            ):
                wrong.append(f"{name} -> {target}")
            if name.startswith("trainer.core") and target.startswith("trainer.dashboard"):
                wrong.append(f"{name} -> {target}")
    assert not wrong, "\n".join(sorted(wrong))


def test_no_import_cycles():
    graph = _graph()
    cycles, state = [], {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = "open"
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == "open":
                cycles.append(" -> ".join(stack[stack.index(target):] + [target]))
            elif target not in state:
                visit(target, stack)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [])
    assert not cycles, "\n".join(cycles)
