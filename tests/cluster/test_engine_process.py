"""One ``carbonx engine`` process alone on a real NATS cluster: it takes the lease, bootstraps
the configured market (one batch, once), serves its metrics, and SIGTERM hands the lease back."""

from __future__ import annotations

import re
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from carbonx.gateway.natskit import NatsCluster
from carbonx.gateway.testkit import DEMO, ROOT, carbonx_argv, write_config

pytestmark = pytest.mark.cluster


def _metrics(url: str) -> dict[str, float]:
    with urllib.request.urlopen(url + "/metrics", timeout=5) as r:
        text = r.read().decode()
    return {line.split()[0]: float(line.split()[1]) for line in text.splitlines() if line and not line.startswith("#")}


def test_a_lone_engine_leads_bootstraps_once_and_reports(tmp_path: Path, nats_cluster: NatsCluster) -> None:
    n = tmp_path.name[-12:].replace("-", "_")
    config = write_config(
        tmp_path / "c.toml",
        DEMO,
        cluster={
            "nats_urls": nats_cluster.urls,
            "command_stream": f"EP_CMDS_{n}",
            "command_subject": f"ep.{n}.commands",
            "events_stream": f"EP_EV_{n}",
            "events_subject": f"ep.{n}.events",
            "kv_bucket": f"EP_KV_{n}",
            "snapshot_bucket": f"EP_SNAP_{n}",
            "lease_ttl_s": 1.5,
        },
    )
    log = (tmp_path / "engine.log").open("wb")
    proc = subprocess.Popen(
        carbonx_argv("engine", "--config", str(config), "--id", "solo", "--metrics-port", "0"),
        stdout=subprocess.PIPE,
        stderr=log,
        cwd=ROOT,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()
        m = re.search(r"metrics=(http://\S+)", line)
        assert line.startswith("carbonx engine ready id=solo") and m, line
        url = m.group(1)
        deadline = time.monotonic() + 20
        while True:
            got = _metrics(url)
            if got.get("carbonx_cluster_engine_active") == 1 and got.get("carbonx_cluster_events_watermark", 0) >= 23:
                break
            assert time.monotonic() < deadline, (got, (tmp_path / "engine.log").read_text())
            time.sleep(0.1)
        time.sleep(1.5)  # a few clock rounds: nothing bootstrapped twice
        got = _metrics(url)
        assert got["carbonx_cluster_engine_seq"] == got["carbonx_cluster_events_watermark"]
        assert 23 <= got["carbonx_cluster_engine_seq"] <= 25  # 3 members, 4 accounts x 5, DayOpen (+ a Tick)
        assert got["carbonx_cluster_lease_acquired_total"] == 1
        with urllib.request.urlopen(url + "/readyz", timeout=5) as r:
            assert r.status == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
