"""``carbonx admin key ...`` / ``operator ...``: the access commands as an operator runs them
(subprocess, credentials in the environment), including an operator identity's own key."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from carbonx.gateway.client import Client
from carbonx.gateway.testkit import Server
from tests.e2e.conftest import running_server
from tests.e2e.test_admin_cli import ENV, cli, ok_json


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("access-cli") / "data") as srv:
        yield srv


async def test_keys_and_operators_from_the_cli(server: Server) -> None:
    made = await ok_json(
        server, "key", "create", "--member", "broker-b", "--scopes", "read", "--label", "reports", "--allow", "127.0.0.0/8"
    )
    assert (made["scopes"], made["allow"], made["label"]) == (["read"], ["127.0.0.0/8"], "reports") and made["secret"]
    async with Client(server.trading) as c:
        assert (await c.login(made["key_id"], made["secret"]))["scopes"] == ["read"]
    rotated = await ok_json(server, "key", "rotate", made["key_id"], "--grace-s", "60")
    assert rotated["secret"] != made["secret"] and rotated["grace_until"]
    listed = {k["key_id"]: k for k in (await ok_json(server, "key", "list", "--member", "broker-b"))["keys"]}
    assert listed[made["key_id"]]["grace_until"] == rotated["grace_until"] and "secret" not in listed[made["key_id"]]
    assert (await ok_json(server, "key", "revoke", made["key_id"]))["state"] == "revoked"
    refused = await cli(server, "--json", "key", "revoke", made["key_id"])
    assert refused.rc == 1 and "KEY_REVOKED" in refused.err

    alice = await ok_json(server, "operator", "create", "alice", "--role", "operator")
    assert alice["role"] == "operator" and alice["operator"] == "alice"
    ops = (await ok_json(server, "operator", "list"))["operators"]
    assert [(o["operator"], o["role"]) for o in ops][:2] == [("ops", "admin"), ("alice", "operator")]
    as_alice = ENV | {"CARBONX_OPERATOR_KEY_ID": alice["key_id"], "CARBONX_OPERATOR_SECRET": alice["secret"]}
    assert (await ok_json(server, "halt", "CCER", env=as_alice))["halted"] is True
    await ok_json(server, "resume", "CCER", env=as_alice)
    denied = await cli(server, "key", "list", env=as_alice)
    assert denied.rc == 1 and "NOT_AUTHORIZED" in denied.err and "admin role" in denied.err
    audit = (await ok_json(server, "audit", "--operator", "alice"))["entries"]
    assert [(e["method"], e["result"]) for e in audit] == [
        ("admin.instrument.halt", "ok"),
        ("admin.instrument.resume", "ok"),
        ("admin.key.list", "error"),
    ]
    demoted = await ok_json(server, "operator", "role", "alice", "--role", "viewer")
    assert (demoted["role"], demoted["previous"]) == ("viewer", "operator")
    refused = await cli(server, "halt", "CCER", env=as_alice)
    assert refused.rc == 1 and "NOT_AUTHORIZED" in refused.err and "operator role" in refused.err
