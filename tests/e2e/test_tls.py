"""TLS end to end: plain text off loopback is refused unless intended; a TLS listener with a
self-signed certificate (made here with the ``openssl`` CLI, which ``.ci/run`` installs) serves the protocol; SIGHUP
reloads the certificate for new connections without dropping the sessions already open."""

from __future__ import annotations

import os
import shutil
import signal
import ssl
import subprocess
import time
from pathlib import Path

from carbonx.gateway.client import Client
from carbonx.gateway.testkit import BROKERS, OPERATOR, ROOT, carbonx_argv, start_server, write_config
from carbonx.gateway.tls import is_loopback, plaintext_refusal


def make_cert(folder: Path, name: str) -> tuple[Path, Path]:
    """A self-signed P-256 certificate for 127.0.0.1/localhost: (cert.pem, key.pem)."""
    cert, key = folder / f"{name}.crt", folder / f"{name}.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1",
         "-subj", f"/CN={name}", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


def trusting(*certs: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    for cert in certs:
        ctx.load_verify_locations(cafile=str(cert))
    return ctx


def peer_cert(c: Client) -> bytes:
    assert c._ws is not None
    der: bytes = c._ws.transport.get_extra_info("ssl_object").getpeercert(binary_form=True)
    return der


def der(cert: Path) -> bytes:
    return ssl.PEM_cert_to_DER_cert(cert.read_text())


def test_the_loopback_rule() -> None:
    assert all(is_loopback(h) for h in ("127.0.0.1", "127.9.9.9", "::1", "[::1]", "localhost"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "", "10.0.0.1", "exchange.example"))
    assert plaintext_refusal({"trading listener": "127.0.0.1", "admin listener": "::1"}, tls=False, allow_plaintext=False) is None
    why = plaintext_refusal({"trading listener": "0.0.0.0", "admin listener": "127.0.0.1"}, tls=False, allow_plaintext=False)
    assert why is not None and "trading listener (0.0.0.0)" in why and "admin" not in why
    assert plaintext_refusal({"t": "0.0.0.0"}, tls=True, allow_plaintext=False) is None
    assert plaintext_refusal({"t": ""}, tls=False, allow_plaintext=True) is None


def test_a_listener_off_loopback_refuses_to_start_in_plain_text(tmp_path: Path) -> None:
    argv = carbonx_argv("serve", "--config", str(ROOT / "deploy" / "demo.toml"), "--data-dir", str(tmp_path / "d"),
                        "--host", "0.0.0.0", "--port", "0", "--admin-port", "0", "--metrics-port", "0")  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARBONX_")}
    run = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env, cwd=ROOT)
    assert run.returncode == 2, run.stderr
    assert "refusing to serve plain text on trading listener (0.0.0.0)" in run.stderr and "carbonx ready" not in run.stdout
    assert not (tmp_path / "d").exists()  # nothing was started, not even the data directory


def test_plain_text_off_loopback_starts_when_the_configuration_says_so(tmp_path: Path) -> None:
    config = write_config(tmp_path / "plain.toml", server={"allow_plaintext": True})
    server = start_server(tmp_path / "data", config=config, extra=("--host", "0.0.0.0"))
    try:
        assert server.trading.startswith("ws://0.0.0.0:")
    finally:
        server.terminate()


async def test_a_tls_listener_serves_and_sighup_reloads_the_certificate_without_dropping_sessions(tmp_path: Path) -> None:
    cert, key = make_cert(tmp_path, "first")
    config = write_config(tmp_path / "tls.toml", server={"tls_cert": str(cert), "tls_key": str(key)})
    server = start_server(tmp_path / "data", config=config, extra=("--host", "0.0.0.0"))  # TLS: off loopback is fine
    try:
        assert server.trading.startswith("wss://") and server.admin.startswith("wss://")
        trading = server.trading.replace("0.0.0.0", "127.0.0.1")
        first = der(cert)
        original = shutil.copy(cert, tmp_path / "original.crt")
        async with Client(trading, ssl=trusting(cert)) as old, Client(server.admin, ssl=trusting(cert)) as op:
            await old.login(*BROKERS["a"])
            await op.login(*OPERATOR)
            assert peer_cert(old) == first
            # a new certificate in the same files, then SIGHUP
            new_cert, new_key = make_cert(tmp_path, "second")
            shutil.copy(new_cert, cert)
            shutil.copy(new_key, key)
            os.kill(server.pid, signal.SIGHUP)
            second = der(new_cert)
            deadline = time.monotonic() + 10
            while True:
                async with Client(trading, ssl=trusting(new_cert, Path(original))) as c:
                    if peer_cert(c) == second:
                        assert (await c.login(*BROKERS["b"]))["member"] == "broker-b"
                        break
                assert time.monotonic() < deadline, "the new certificate was not served after SIGHUP"
            # the sessions opened before the reload are still up, on the old certificate
            assert (await old.ping())["ts"] > 0 and peer_cert(old) == first
            assert "day_open" in await op.call("admin.status")
            # a broken file: the reload is refused, the current certificate stays
            cert.write_text("not a certificate")
            os.kill(server.pid, signal.SIGHUP)
            deadline = time.monotonic() + 10
            while "TLS certificate not reloaded" not in server.log_tail(200):
                assert time.monotonic() < deadline
                time.sleep(0.05)
            async with Client(trading, ssl=trusting(new_cert)) as c:
                assert peer_cert(c) == second
        assert "TLS certificate reloaded" in server.log_tail(200)
    finally:
        server.terminate()
