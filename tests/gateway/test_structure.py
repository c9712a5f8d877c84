"""The gateway's structure, checked: only the sequencer applies commands to the engine, and the
method table holds every handler as a function of the domain module it belongs to."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

from carbonx.gateway import rpc
from carbonx.gateway.protocol.params import Params
from carbonx.gateway.rpc.registry import ADMIN_METHODS, TRADING_METHODS

GATEWAY = Path(rpc.__file__).resolve().parents[1]


def _apply_calls(path: Path) -> list[str]:
    """Where ``path`` calls ``<anything>.apply(...)`` or takes ``<anything>.apply`` as a value."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Attribute) and node.attr == "apply":
            found.append(f"{path.relative_to(GATEWAY)}:{node.lineno}")
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "getattr"
            and any(isinstance(a, ast.Constant) and a.value == "apply" for a in node.args)
        ):
            found.append(f"{path.relative_to(GATEWAY)}:{node.lineno} (getattr)")
    return found


def test_only_the_sequencer_applies_commands() -> None:
    files = sorted(GATEWAY.rglob("*.py"))
    assert GATEWAY / "sequencer.py" in files
    outside = [hit for f in files if f.name != "sequencer.py" or f.parent != GATEWAY for hit in _apply_calls(f)]
    assert outside == [], f"only gateway/sequencer.py may call Engine.apply: {outside}"
    assert _apply_calls(GATEWAY / "sequencer.py"), "the sequencer applies commands (this test would be vacuous otherwise)"


def test_every_handler_is_a_function_of_its_domain_module_with_a_params_struct() -> None:
    domains = {
        m.__name__ for m in (rpc.access, rpc.admin, rpc.auctions, rpc.blocks, rpc.orders, rpc.retirement, rpc.session, rpc.supervision)
    }
    for table in (TRADING_METHODS, ADMIN_METHODS):
        for name, m in table.items():
            assert m.name == name
            assert inspect.isfunction(m.handler), name
            assert m.handler.__module__ in domains, f"{name}: handler in {m.handler.__module__}"
            assert issubclass(m.params, Params), name
            hints = inspect.signature(m.handler).parameters
            assert list(hints) == ["call", "p"], f"{name}: handlers take (call, p)"
    assert all(m.access == "operator" for m in ADMIN_METHODS.values() if m.name.startswith("admin."))
    assert not any(m.access == "operator" for m in TRADING_METHODS.values()), "operator methods live on the admin listener only"
