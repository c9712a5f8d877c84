"""Benchmark: CPU time the exchange process spends per request on the metrics port.

Starts ``carbonx serve`` (the demo configuration, testkit.start_server) on loopback, makes
``--trades`` trades on SHEA through the shipped client (so ``/metrics`` has real series and
``/trades.json`` real rows), then sends sequential requests (one connection each, as
Prometheus and browsers on the page do) to ``/healthz``, ``/metrics``, ``/index.html`` and
``/trades.json?instrument=SHEA`` and reads the server process's user+system CPU time from
/proc before and after each batch. CPU time, not wall time: the machine may be shared.

Usage: python benchmarks/metrics_port.py [--requests N] [--trades N]
The last line of output is one JSON object (microseconds of server CPU per request).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

from carbonx.gateway.client import Client
from carbonx.gateway.testkit import ACCOUNTS, BROKERS, start_server, write_config


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def get(host: str, port: int, target: str) -> int:
    with socket.create_connection((host, port), timeout=10) as s:
        s.sendall(f"GET {target} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(1 << 16):
            data += chunk
    return int(data.split(b" ", 2)[1])


async def trade(url: str, n: int) -> None:
    async with Client(url) as a, Client(url) as b:
        await a.login(*BROKERS["a"])
        await b.login(*BROKERS["b"])
        for _ in range(n):
            await b.place(ACCOUNTS["b"][0], "SHEA", "sell", 1, "60.00")
            await a.place(ACCOUNTS["a"][0], "SHEA", "buy", 1, "60.00")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=500)
    ap.add_argument("--trades", type=int, default=1000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        limits = {"orders_per_s": 1_000_000.0, "order_burst": 1_000_000, "requests_per_s": 1_000_000.0, "request_burst": 1_000_000}
        server = start_server(Path(tmp) / "data", config=write_config(Path(tmp) / "bench.toml", limits=limits))
        try:
            asyncio.run(trade(server.trading, args.trades))
            parts = urlsplit(server.metrics)
            host, port = parts.hostname or "127.0.0.1", parts.port or 9100
            result: dict[str, object] = {"requests": args.requests, "trades": args.trades}
            for name, target in (
                ("healthz", "/healthz"),
                ("metrics", "/metrics"),
                ("page", "/index.html"),
                ("trades_json", "/trades.json?instrument=SHEA"),
            ):
                assert get(host, port, target) == 200, target
                before = cpu_seconds(server.pid)
                for _ in range(args.requests):
                    get(host, port, target)
                spent = cpu_seconds(server.pid) - before
                result[f"{name}_us_cpu_per_request"] = round(spent / args.requests * 1e6, 1)
                print(f"{target}: {result[f'{name}_us_cpu_per_request']} µs server CPU per request")
        finally:
            server.terminate()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
