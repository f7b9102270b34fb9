"""The house rules a newcomer relies on: layers point one way, no import circle, enqueued task names exist."""

from __future__ import annotations

import ast
from pathlib import Path

from django.test import SimpleTestCase

from config.celery import app
from ml import enqueue as ml_enqueue
from search.indexing import enqueue as search_enqueue

ROOT = Path(__file__).resolve().parents[2]
LAYERS = ["config", "catalog", "ml", "search"]  # each may import those before it, never those after


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _top_level_imports(path: Path) -> set[str]:
    """Project modules imported when the module is imported (not those imported inside functions)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.If) and getattr(node.test, "id", "") == "TYPE_CHECKING":
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            submodules = {f"{base}.{alias.name}" for alias in node.names}
            found |= submodules
            if not any(
                (ROOT / Path(*m.split("."))).with_suffix(".py").exists() or (ROOT / Path(*m.split("."))).is_dir()
                for m in submodules
            ):
                found.add(base)  # names defined in the module `base` itself
    # A package being imported is always there when its own submodules run: not an edge.
    ancestors = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)}
    return {m for m in found - ancestors if m.split(".")[0] in LAYERS}


def _graph() -> dict[str, set[str]]:
    paths = [
        p
        for layer in LAYERS
        for p in (ROOT / layer).rglob("*.py")
        if "tests" not in p.parts and "migrations" not in p.parts
    ]
    modules = {_module_name(p): p for p in paths}
    return {name: {m for m in _top_level_imports(path) if m in modules and m != name} for name, path in modules.items()}


def find_circle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle of the graph (a path back to where it began), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (circle := visit(nxt, [*path, nxt])):
                return circle
        state[node] = 2
        return None

    for module in sorted(graph):
        if module not in state and (circle := visit(module, [module])):
            return circle
    return None


class LayoutTests(SimpleTestCase):
    def test_no_layer_imports_a_higher_one(self):
        for module, imports in _graph().items():
            rank = LAYERS.index(module.split(".")[0])
            for imported in imports:
                with self.subTest(module=module, imported=imported):
                    self.assertLessEqual(LAYERS.index(imported.split(".")[0]), rank)

    def test_no_import_circle(self):
        self.assertIsNone(find_circle(_graph()))

    def test_a_circle_is_found(self):
        self.assertEqual(find_circle({"a": {"b"}, "b": {"c"}, "c": {"a"}}), ["a", "b", "c", "a"])
        self.assertIsNone(find_circle({"a": {"b"}, "b": set()}))

    def test_every_task_name_sent_by_name_is_a_registered_task_on_its_queue(self):
        import ml.tasks  # noqa: F401  (registers the tasks, as a worker's autodiscovery does)
        import search.tasks  # noqa: F401

        queues = {name: "embeddings" for name in search_enqueue.TASK_NAMES} | {
            name: "training" for name in ml_enqueue.TASK_NAMES
        }
        for name, queue in queues.items():
            with self.subTest(task=name):
                self.assertIn(name, app.tasks)
                self.assertEqual(app.amqp.router.route({}, name)["queue"].name, queue)
