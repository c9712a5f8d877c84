"""The cluster process kit's own parts that need no roles: NATS up, the shared configuration."""

from __future__ import annotations

from pathlib import Path

import pytest

from carbonx.gateway.cluster.testkit import ClusterKit, http_status
from carbonx.gateway.settings import load_settings

pytestmark = pytest.mark.cluster


def test_the_kit_config_is_one_the_roles_accept_and_points_at_its_nats(tmp_path: Path) -> None:
    with ClusterKit(tmp_path, engines_count=0, gateways_count=0, cluster={"lease_ttl_s": 2.0}) as kit:
        settings = load_settings(kit.config_path)
        assert list(settings.cluster.nats_urls) == kit.nats.urls and len(kit.nats.urls) == 3
        assert settings.cluster.command_stream == f"CMDS_{kit.run_id}" and settings.cluster.lease_ttl_s == 2.0
        assert settings.cluster.snapshot_bucket == f"SNAP_{kit.run_id}" and settings.cluster.replicas == 3
        assert settings.market.instruments, "the demo market"
        assert kit.lease_holder() is None and kit.active_engine() is None, "no engine: no lease"
        assert http_status(f"http://127.0.0.1:{kit.nats.nodes[0].http_port}/healthz") == 200
    assert http_status(f"http://127.0.0.1:{kit.nats.nodes[0].http_port}/healthz") == 0, "stopped"
