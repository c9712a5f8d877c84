"""The engine's structure stays what docs/engine.md says: an acyclic import graph with the
state at the bottom and the dispatcher (``engine.py``) on top, the only module that
imports the rule modules' ``HANDLERS``; and a handler table that covers every command
type of the schema exactly once."""

from __future__ import annotations

import ast
import typing
from collections import Counter
from pathlib import Path

import pytest

import carbonx.engine as package
from carbonx.engine import access, admin, auction, blocks, gateways, matching, retirement, schema
from carbonx.engine.engine import Engine

ENGINE_DIR = Path(__file__).resolve().parents[2] / "engine"
PREFIX = "carbonx.engine"
RULE_MODULES = {"matching", "admin", "auction", "blocks", "retirement", "risk", "access", "gateways"}
# Below the rule modules: what state.py and checks.py may build on.
BOTTOM = {"schema", "reasons", "units", "ranges", "config", "calendar", "accounts", "book", "desks", "keys"}


def _imports(path: Path) -> list[tuple[str, list[str], bool]]:
    """(imported engine module, names imported from it, at module level?) for every import."""
    tree = ast.parse(path.read_text(), str(path))
    top_level = set()
    for node in tree.body:  # module level, including ``if TYPE_CHECKING:`` blocks
        top_level.add(id(node))
        if isinstance(node, ast.If):
            top_level.update(id(n) for n in node.body)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(PREFIX):
            names = [a.name for a in node.names]
            if node.module == PREFIX:  # from carbonx.engine import a, b: each name is a module
                found += [(name, [], id(node) in top_level) for name in names]
            else:
                found.append((node.module.removeprefix(PREFIX + "."), names, id(node) in top_level))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith(PREFIX + "."):
                    found.append((alias.name.removeprefix(PREFIX + ".").split(".")[0], [], id(node) in top_level))
    return found


MODULES = sorted(p.stem for p in ENGINE_DIR.glob("*.py") if p.stem != "__init__")
GRAPH = {m: _imports(ENGINE_DIR / f"{m}.py") for m in MODULES}


def _edges(module: str) -> set[str]:
    return {target for target, _, _ in GRAPH[module] if target in MODULES}


def test_the_walk_sees_the_engine() -> None:
    assert {"engine", "state", "checks", "matching", "testkit"} <= set(MODULES)
    assert "state" in _edges("matching") and "matching" in _edges("engine")  # the walk finds real edges


def test_import_graph_is_acyclic_even_counting_type_checking_imports() -> None:
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        if module in path:
            pytest.fail(f"import cycle: {' -> '.join([*path[path.index(module) :], module])}")
        if module in done:
            return
        for target in sorted(_edges(module)):
            visit(target, [*path, module])
        done.add(module)

    for module in MODULES:
        visit(module, [])


def test_no_lazy_imports() -> None:
    lazy = [(m, target) for m in MODULES for target, _, top in GRAPH[m] if not top]
    assert lazy == []


def test_only_the_dispatcher_and_the_test_kit_import_engine_py() -> None:
    assert sorted(m for m in MODULES if "engine" in _edges(m)) == ["testkit"]


def test_only_engine_py_takes_the_handlers() -> None:
    takers = {m for m in MODULES for _, names, _ in GRAPH[m] if "HANDLERS" in names}
    for m in MODULES:
        tree = ast.parse((ENGINE_DIR / f"{m}.py").read_text())
        if any(isinstance(n, ast.Attribute) and n.attr == "HANDLERS" for n in ast.walk(tree)):
            takers.add(m)
    assert takers == {"engine"}


def test_layers_state_and_checks_sit_below_the_rules() -> None:
    assert _edges("state") <= BOTTOM
    assert _edges("checks") <= BOTTOM | {"state"}
    for m in BOTTOM:
        assert not _edges(m) & (RULE_MODULES | {"state", "checks", "engine"}), m
    for m in RULE_MODULES:
        assert "engine" not in _edges(m), m


def test_handler_table_covers_every_command_type_exactly_once() -> None:
    commands = set(typing.get_args(schema.AnyCommand))
    tables = [
        matching.HANDLERS,
        admin.HANDLERS,
        auction.HANDLERS,
        blocks.HANDLERS,
        retirement.HANDLERS,
        access.HANDLERS,
        gateways.HANDLERS,
    ]
    counts = Counter(cls for table in tables for cls in table)
    assert [cls.__name__ for cls, n in counts.items() if n > 1] == []
    assert set(counts) == commands
    assert set(Engine.handlers) == commands


def test_the_package_exports_the_embedding_api() -> None:
    for name in package.__all__:
        assert getattr(package, name) is not None, name
    assert package.Engine is Engine
    assert {"Engine", "load_market_text", "MarketConfig", "PlaceOrder", "ExecReport", "Reject", "reasons"} <= set(package.__all__)
    assert {cls.__name__ for cls in typing.get_args(schema.AnyCommand)} <= set(package.__all__)
    assert {cls.__name__ for cls in typing.get_args(schema.AnyEvent)} <= set(package.__all__)
