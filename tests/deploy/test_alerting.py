"""The operator's alert path end to end: a real exchange, a real Prometheus with
deploy/prometheus/ (scrape configuration and alert rules) and a real Alertmanager routing to a
webhook that this test serves. Prometheus scrapes the exchange (target up), the exchange is
stopped, and CarbonxExchangeDown arrives at the webhook as a firing alert.

Only the timings are shortened (scrape/evaluation every second, every rule's ``for:`` 1 s,
Alertmanager's group wait 1 s), so the test takes seconds; the rules' own durations are
unit-tested by ``promtool test rules`` (deploy/prometheus/tests.yml, in .ci/run)."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from carbonx.gateway.testkit import ROOT, start_server

PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
# Debian names the binary prometheus-alertmanager; upstream builds call it alertmanager.
ALERTMANAGER = shutil.which("alertmanager") or shutil.which("prometheus-alertmanager")
pytestmark = pytest.mark.skipif(
    shutil.which("prometheus") is None or ALERTMANAGER is None,
    reason="prometheus / alertmanager not installed (Debian's prometheus and prometheus-alertmanager; .ci/run installs them)",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Webhook:
    """An Alertmanager webhook receiver: every POSTed notification, decoded."""

    def __init__(self) -> None:
        received: list[dict[str, Any]] = []
        self.received = received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append(json.loads(body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alerts"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def firing(self, alertname: str) -> list[dict[str, Any]]:
        return [a for n in self.received for a in n["alerts"] if a["status"] == "firing" and a["labels"]["alertname"] == alertname]


def wait_for(what: str, check: Any, timeout: float, proc_logs: list[Path]) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.25)
    logs = "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-2000:]}" for p in proc_logs if p.exists())
    raise AssertionError(f"timed out waiting for {what}\n{logs}")


def get_json(url: str) -> Any:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return json.loads(response.read())
    except OSError:
        return None


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


def test_stopping_the_exchange_fires_carbonx_exchange_down_at_the_receiver(
    tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    exchange = start_server(tmp_path / "data")
    metrics_target = exchange.metrics.removeprefix("http://")
    webhook = Webhook()
    am_port, prom_port = free_port(), free_port()

    # Alertmanager: everything to the webhook, without delay.
    am_config = {
        "route": {"receiver": "test", "group_by": ["alertname"], "group_wait": "1s", "group_interval": "1s", "repeat_interval": "1h"},
        "receivers": [{"name": "test", "webhook_configs": [{"url": webhook.url, "send_resolved": True}]}],
    }
    (tmp_path / "alertmanager.yml").write_text(yaml.safe_dump(am_config))
    am_log = tmp_path / "alertmanager.log"
    with am_log.open("wb") as log:
        processes.append(subprocess.Popen(
            [str(ALERTMANAGER), f"--config.file={tmp_path / 'alertmanager.yml'}", f"--storage.path={tmp_path / 'am'}",
             f"--web.listen-address=127.0.0.1:{am_port}", "--cluster.listen-address="],
            stdout=log, stderr=subprocess.STDOUT,
        ))  # fmt: skip

    # Prometheus: the shipped configuration and rules, aimed at this exchange and this Alertmanager.
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "carbonx"]
    job["static_configs"][0]["targets"] = [metrics_target]
    config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{am_port}"]}]}]}
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    (rules,) = config["rule_files"]
    alerts = re.sub(r"(?m)^(\s+for:) \S+$", r"\1 1s", (PROMETHEUS_DIR / rules).read_text())
    assert "CarbonxExchangeDown" in alerts
    (tmp_path / rules).write_text(alerts)
    prom_log = tmp_path / "prometheus.log"
    with prom_log.open("wb") as log:
        processes.append(subprocess.Popen(
            ["prometheus", f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{prom_port}"],
            stdout=log, stderr=subprocess.STDOUT,
        ))  # fmt: skip
    logs = [am_log, prom_log, exchange.log_path]
    api = f"http://127.0.0.1:{prom_port}/api/v1"

    def target_health() -> str | None:
        doc = get_json(f"{api}/targets")
        active = doc["data"]["activeTargets"] if doc else []
        return active[0]["health"] if active else None

    wait_for("Prometheus to scrape the exchange", lambda: target_health() == "up", 60, logs)
    ready = get_json(f"{api}/query?query=carbonx_ready")
    assert ready["data"]["result"][0]["value"][1] == "1"
    assert not webhook.firing("CarbonxExchangeDown")

    assert exchange.terminate() == 0
    (alert,) = wait_for("CarbonxExchangeDown at the webhook", lambda: webhook.firing("CarbonxExchangeDown"), 90, logs)[:1]
    assert alert["labels"]["severity"] == "critical" and alert["labels"]["instance"] == metrics_target
    assert "is down" in alert["annotations"]["summary"] and alert["annotations"]["runbook"].endswith("#carbonxexchangedown")
