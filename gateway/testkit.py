"""Test kit of the gateway: what the end-to-end tests, the journal tests and the benchmarks share.

Runs from a source checkout (it reads ``deploy/demo.toml``); nothing in the exchange imports it.

**Server harness** (end-to-end tests, ``benchmarks/gateway_load.py``, ``benchmarks/soak.py``).

``start_server`` runs the real ``carbonx serve`` as a subprocess on loopback with free ports
(port 0) and waits for its single ``carbonx ready ...`` stdout line to learn the actual URLs.
stderr goes to a log file whose tail is attached to start-up failures, so a broken server is
diagnosable from the test output. ``write_config`` derives a configuration from the demo one
with some gateway limits changed (TOML has no "override", so the merged document is written
out again by a minimal emitter covering the value types configuration files use).

**Journal workload** (journal tests, ``benchmarks/journal_throughput.py``):A realistic, seeded command stream for journal tests and benchmarks.

Everything from an empty engine on is a command (members, accounts, deposits, the day
opening, then limit orders and cancels by client order id), so the stream can be
journaled and replayed from empty. Orders straddle the reference price: some rest,
some trade, some cancels miss (already filled) and are rejected - like real flow.
"""

from __future__ import annotations

import os
import queue
import random
import re
import signal
import subprocess
import sys
import threading
import time
import tomllib
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from carbonx.engine.config import MarketConfig, load_market_text
from carbonx.engine.schema import AnyCommand, CancelOrder, CreateAccount, CreateMember, DayOpen, Deposit, PlaceOrder, Side

ROOT = Path(__file__).resolve().parents[1]  # the source checkout (gateway/ is one level down)
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


# The listeners of a process under test (serve, a cluster gateway): loopback, any free port.
LOOPBACK_ANY_PORT = ("--host", "127.0.0.1", "--port", "0", "--admin-host", "127.0.0.1", "--admin-port", "0", "--metrics-port", "0")


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
        *LOOPBACK_ANY_PORT,
        "--fsync-policy",
        fsync,
        *extra,
    )
    return spawn_until_ready(argv, data_dir, log_path, timeout=timeout, env_extra=env_extra)


def spawn_until_ready(
    argv: list[str], data_dir: Path, log_path: Path, *, timeout: float = 60, env_extra: dict[str, str] | None = None
) -> Server:
    """Start a process that prints the ``carbonx ready ...`` line (``serve``, ``gateway``) and
    return once it did; stderr goes to ``log_path``, whose tail a start-up failure shows."""
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


# ----------------------------------------------------------------------------- process probes (Linux /proc)


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """CPU seconds all processes of the machine spent busy (idle and iowait excluded)."""
    ticks = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return (sum(ticks[:8]) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    """Resident set size of a process in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def scrape(server: Server) -> dict[str, float]:
    """Every sample of the server's ``/metrics`` as ``{"name{labels}": value}``."""
    with urllib.request.urlopen(server.metrics + "/metrics", timeout=5) as response:
        text = response.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


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


# --------------------------------------------------------------------------- journal workload

T0 = 1_764_043_200_000_000_000  # 2025-11-25 12:00 local (UTC+8), a Tuesday

JOURNAL_ACCOUNTS = (("A1", "M1", "institution"), ("A2", "M1", "covered_entity"), ("B1", "M2", "covered_entity"), ("B2", "M2", "individual"))


def demo_config() -> MarketConfig:
    return load_market_text(DEMO.read_text())


def setup_commands(config: MarketConfig, cash: int = 10**13, tonnes: int = 10**8) -> list[AnyCommand]:
    """Two members, four accounts funded with ``cash`` fen and ``tonnes`` of every
    instrument, and the trading day opened (the ``funded_engine`` pattern, as commands)."""
    cmds: list[AnyCommand] = [CreateMember(ts=T0, member=m, key_id=f"key-{m}", secret_hash="x") for m in ("M1", "M2")]
    for acct, member, kind in JOURNAL_ACCOUNTS:
        cmds.append(CreateAccount(ts=T0, account=acct, member=member, type=kind))  # type: ignore[arg-type]
        cmds.append(Deposit(ts=T0, account=acct, cash=cash))
        for sym, spec in config.instruments.items():
            cmds.append(Deposit(ts=T0, account=acct, instrument=sym, quantity=tonnes, vintage=2025 if spec.vintages else None))
    cmds.append(DayOpen(ts=T0))
    return cmds


def trading_commands(n: int, seed: int = 1, start_ts: int = T0 + 1) -> Iterator[AnyCommand]:
    """``n`` limit orders (about 55 %) and cancels of earlier orders (about 45 %, some of them already filled) on SHEA."""
    rng = random.Random(seed)
    recent: list[tuple[str, str, str]] = []  # (member, account, client_order_id), live or not
    for i in range(n):
        ts = start_ts + i * 1_000
        if recent and rng.random() < 0.45:
            j = rng.randrange(len(recent))
            recent[j], recent[-1] = recent[-1], recent[j]
            member, account, coid = recent.pop()
            yield CancelOrder(ts=ts, member=member, account=account, client_order_id=coid)
            continue
        account, member, _ = JOURNAL_ACCOUNTS[rng.randrange(len(JOURNAL_ACCOUNTS))]
        side: Side = "buy" if rng.random() < 0.5 else "sell"
        skew = -10 if side == "buy" else 10  # most orders rest; the overlap trades
        price = 6000 + skew + rng.randint(-30, 30)
        coid = f"o{i}"
        yield PlaceOrder(
            ts=ts,
            member=member,
            account=account,
            instrument="SHEA",
            side=side,
            price=price,
            quantity=rng.randint(1, 50),
            client_order_id=coid,
        )
        recent.append((member, account, coid))


def workload(config: MarketConfig, n: int, seed: int = 1) -> list[AnyCommand]:
    """Setup commands followed by ``n`` trading commands."""
    return setup_commands(config) + list(trading_commands(n, seed))
