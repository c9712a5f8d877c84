"""Operating the process: health endpoints, metrics, operator credentials from the environment."""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from carbonx.gateway.client import Client, RpcError
from carbonx.gateway.testkit import OPERATOR, Server, write_config
from tests.e2e.conftest import broker, operator, running_server


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


async def test_health_ready_and_metrics(clean_books: Server) -> None:
    assert (await asyncio.to_thread(_get, clean_books.metrics + "/healthz"))[0] == 200
    assert (await asyncio.to_thread(_get, clean_books.metrics + "/readyz"))[0] == 200
    assert (await asyncio.to_thread(_get, clean_books.metrics + "/nope"))[0] == 404
    async with broker(clean_books, "a") as a:
        await a.place("A-001", "SHCER", "buy", 1, "19.00")
        with pytest.raises(RpcError):
            await a.place("A-001", "SHCER", "buy", 1, "99.00")
    status, text = await asyncio.to_thread(_get, clean_books.metrics + "/metrics")
    assert status == 200
    samples = {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line and not line.startswith("#")}
    assert samples['carbonx_orders_total{instrument="SHCER"}'] >= 1
    assert samples['carbonx_rejects_total{instrument="SHCER",reason="PRICE_OUT_OF_BAND"}'] >= 1
    assert samples["carbonx_journal_durable_seq"] >= 1
    assert any(k.startswith("carbonx_command_latency_seconds_bucket") for k in samples)


async def test_websocket_only_on_the_v1_path(shared_server: Server) -> None:
    wrong = shared_server.trading.rsplit("/", 1)[0] + "/v2"
    with pytest.raises(InvalidStatus) as info:
        async with connect(wrong, proxy=None):
            pass
    assert info.value.response.status_code == 404


async def test_operator_credentials_from_the_environment(tmp_path: Path) -> None:
    env = {"CARBONX_OPERATOR_KEY_ID": "robot", "CARBONX_OPERATOR_SECRET": "robot-secret-123"}
    with running_server(tmp_path / "data", env_extra=env) as server:
        async with Client(server.admin) as c:
            with pytest.raises(RpcError) as old:
                await c.login(*OPERATOR)
            assert old.value.reason == "NOT_AUTHENTICATED"
            with pytest.raises(RpcError) as wait:  # a failed login backs off its address (docs/protocol.md)
                await c.login("robot", "robot-secret-123")
            assert wait.value.reason == "LOGIN_THROTTLED" and 0 < wait.value.data["retry_after_ms"] <= 1000
            await asyncio.sleep(wait.value.data["retry_after_ms"] / 1000 + 0.05)
            await c.login("robot", "robot-secret-123")
            assert (await c.call("admin.instrument.halt", instrument="CCER")) is not None
        async with broker(server, "a") as a:
            with pytest.raises(RpcError) as halted:
                await a.place("A-001", "CCER", "buy", 1, "80.00")
            assert halted.value.reason == "INSTRUMENT_HALTED"


async def test_operator_orders_channel_sees_every_member(clean_books: Server) -> None:
    async with operator(clean_books) as ops, broker(clean_books, "b") as b:
        await ops.subscribe(["orders"])
        report = await b.place("B-001", "SHCER", "sell", 1, "21.50")
        note = await ops.wait_for(lambda n: n.method == "orders" and n.params.get("order_id") == report["order_id"], 5)
        assert note.params["account"] == "B-001"


def _self_signed(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command to make a test certificate")
async def test_tls_when_a_certificate_is_configured(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    config = write_config(tmp_path / "tls.toml", server={"tls_cert": str(cert), "tls_key": str(key)})
    with running_server(tmp_path / "data", config=config) as server:
        assert server.trading.startswith("wss://") and server.admin.startswith("wss://")
        trust = ssl.create_default_context(cafile=str(cert))
        async with Client(server.trading, ssl=trust) as c:
            await c.login("demo-a", "demo-a-secret")
            assert (await c.place("A-001", "SHEA", "buy", 1, "55.00"))["status"] == "new"
        with pytest.raises(ssl.SSLCertVerificationError):  # an untrusted certificate is refused
            async with Client(server.trading, ssl=ssl.create_default_context()):
                pass
        with pytest.raises(Exception):  # noqa: B017 - plain ws:// to a TLS port never gets a session
            async with Client(server.trading.replace("wss://", "ws://"), open_timeout=3) as plain:
                await plain.ping()
