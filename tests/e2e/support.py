"""The server harness shared by the end-to-end tests and ``benchmarks/gateway_load.py``.

``start_server`` runs the real ``carbonx serve`` as a subprocess on loopback with free ports
(port 0) and waits for its single ``carbonx ready ...`` stdout line to learn the actual URLs.
stderr goes to a log file whose tail is attached to start-up failures, so a broken server is
diagnosable from the test output. ``write_config`` derives a configuration from the demo one
with some gateway limits changed (TOML has no "override", so the merged document is written
out again by a minimal emitter covering the value types configuration files use).
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "deploy" / "demo.toml"
READY = re.compile(r"^carbonx ready trading=(wss?://\S+) admin=(wss?://\S+) metrics=(http://\S+)\s*$")

# Demo credentials (deploy/demo.toml, PROTOCOL fixed decisions).
BROKERS = {"a": ("demo-a", "demo-a-secret"), "b": ("demo-b", "demo-b-secret")}
OPERATOR = ("ops", "ops-secret")
ACCOUNTS = {"a": ("A-001", "A-002"), "b": ("B-001", "B-002")}


def carbonx_argv(*args: str) -> list[str]:
    """Run the ``carbonx`` console script's entry point with this interpreter."""
    return [sys.executable, "-c", "import sys; from carbonx.gateway.cli import main; sys.exit(main())", *args]


@dataclass
class Server:
    """A running ``carbonx serve`` subprocess."""

    proc: subprocess.Popen[str]
    data_dir: Path
    log_path: Path
    trading: str = ""
    admin: str = ""
    metrics: str = ""
    stdout_lines: list[str] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def terminate(self, timeout: float = 15) -> int:
        """SIGTERM (graceful: flush the journal, close with 1001) and wait."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
                raise AssertionError(f"server ignored SIGTERM for {timeout}s\n{self.log_tail()}") from None
        return self.proc.returncode

    def kill9(self) -> None:
        """SIGKILL: no flush, no goodbye — a crash."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


def start_server(
    data_dir: Path,
    *,
    fsync: str = "os",
    config: Path = DEMO,
    extra: tuple[str, ...] = (),
    timeout: float = 60,
    env_extra: dict[str, str] | None = None,
) -> Server:
    """Start ``carbonx serve`` and return once it printed its ready line."""
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = data_dir.parent / f"{data_dir.name}-server-{int(time.time() * 1000)}.log"
    argv = carbonx_argv(
        "serve",
        "--config",
        str(config),
        "--data-dir",
        str(data_dir),
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--admin-host",
        "127.0.0.1",
        "--admin-port",
        "0",
        "--metrics-port",
        "0",
        "--fsync-policy",
        fsync,
        *extra,
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARBONX_OPERATOR")}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(env_extra or {})
    with log_path.open("w") as log_file:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=log_file, text=True, cwd=ROOT, env=env)
    server = Server(proc=proc, data_dir=data_dir, log_path=log_path)
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:  # keep draining stdout so the server never blocks on a full pipe
        assert proc.stdout is not None
        for line in proc.stdout:
            server.stdout_lines.append(line.rstrip("\n"))
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        try:
            line = lines.get(timeout=max(remaining, 0.01))
        except queue.Empty:
            proc.kill()
            raise AssertionError(f"server not ready within {timeout}s\n{server.log_tail()}") from None
        if line is None:
            raise AssertionError(f"server exited with {proc.wait()} before ready\n{server.log_tail()}")
        match = READY.match(line.strip())
        if match:
            server.trading, server.admin, server.metrics = match.groups()
            return server


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else _toml_value(key)


def dump_toml(doc: dict[str, Any]) -> str:
    """Top-level scalars, then tables, then arrays of tables (nested values inline)."""
    lines = [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in doc.items() if not isinstance(v, dict | list) or _is_plain_list(v)]
    for key, value in doc.items():
        if isinstance(value, dict):
            lines.append(f"\n[{_toml_key(key)}]")
            lines += [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()]
    for key, value in doc.items():
        if isinstance(value, list) and not _is_plain_list(value):
            for item in value:
                lines.append(f"\n[[{_toml_key(key)}]]")
                lines += [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in item.items()]
    return "\n".join(lines) + "\n"


def _is_plain_list(value: Any) -> bool:
    return isinstance(value, list) and not (value and all(isinstance(v, dict) for v in value))


def write_config(path: Path, base: Path | None = None, **tables: dict[str, Any]) -> Path:
    """``base`` (the demo config) with the keys of ``tables`` (e.g. ``limits={...}``) replaced."""
    doc = tomllib.loads((base or DEMO).read_text())
    for name, values in tables.items():
        doc[name] = {**doc.get(name, {}), **values}
    path.write_text(dump_toml(doc))
    return path
