"""A real 3-node NATS JetStream cluster on loopback, shared by the cluster tests of one module.

Every module in ``tests/cluster`` marks its tests ``cluster`` (select with ``-m cluster``, skip with
``-m 'not cluster'``). Each test uses a stream of its own, so tests do not see each other's data.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest
from msgspec.structs import replace

from carbonx.gateway.natskit import NatsCluster
from carbonx.gateway.settings import ClusterSettings

_streams = itertools.count(1)


@pytest.fixture(scope="module")
def nats_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsCluster]:
    with NatsCluster(tmp_path_factory.mktemp("nats"), nodes_count=3) as cluster:
        yield cluster


@pytest.fixture
def cluster_settings(nats_cluster: NatsCluster) -> ClusterSettings:
    """Settings for a fresh R3 command stream on the test cluster (its own stream name and subject)."""
    n = next(_streams)
    return replace(
        ClusterSettings(),
        nats_urls=tuple(nats_cluster.urls),
        command_stream=f"CMDS_{n}",
        command_subject=f"carbonx.test{n}.commands",
        replicas=3,
        publish_timeout_s=1.0,
        publish_retry_s=30.0,
    )
