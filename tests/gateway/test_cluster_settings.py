"""The ``[cluster]`` table (cluster mode on NATS JetStream): typed, ranged, unknown keys refused."""

from __future__ import annotations

import pytest

from carbonx.gateway.settings import ClusterSettings, SettingsError, parse_settings
from tests.conftest import DEMO

DEMO_TEXT = DEMO.read_text()


def test_defaults_when_the_table_is_absent() -> None:
    settings = parse_settings(DEMO_TEXT)
    assert settings.cluster == ClusterSettings()
    assert settings.cluster.replicas == 3 and settings.cluster.command_stream == "CARBONX_COMMANDS"


def test_a_full_table_is_read() -> None:
    text = DEMO_TEXT + (
        '\n[cluster]\nnats_urls = ["nats://10.0.0.1:4222", "nats://10.0.0.2:4222", "tls://nats3.example:4222"]\n'
        'command_stream = "CX_CMDS"\ncommand_subject = "cx.cmds"\nreplicas = 5\nlease_ttl_s = 3.0\n'
        'batch_max_commands = 500\nbatch_max_bytes = 262144\nlinger_ms = 1.5\nsync_interval = "always"\n'
    )
    c = parse_settings(text).cluster
    assert c.nats_urls == ("nats://10.0.0.1:4222", "nats://10.0.0.2:4222", "tls://nats3.example:4222")
    assert (c.command_stream, c.command_subject, c.replicas, c.lease_ttl_s) == ("CX_CMDS", "cx.cmds", 5, 3.0)
    assert (c.batch_max_commands, c.batch_max_bytes, c.linger_ms, c.sync_interval) == (500, 262144, 1.5, "always")


@pytest.mark.parametrize(
    ("snippet", "message"),
    [
        ("replica = 3", "cluster: unknown keys ['replica']"),
        ("replicas = 7", "cluster.replicas: 7 is outside the range 1 to 5"),
        ("replicas = 0", "cluster.replicas: 0 is outside the range 1 to 5"),
        ("lease_ttl_s = 0.1", "cluster.lease_ttl_s: 0.1 is outside the range 0.5 to 300"),
        ("batch_max_bytes = 100", "cluster.batch_max_bytes: 100 is outside the range 1024 to 8388608"),
        ("batch_max_commands = 0", "cluster.batch_max_commands: 0 is outside the range 1 to 100000"),
        ('replicas = "3"', "cluster.replicas"),
        ('nats_urls = ["http://x:4222"]', "cluster.nats_urls[0]"),
        ("nats_urls = []", "cluster.nats_urls: at least one NATS URL is needed"),
        ('command_stream = "a.b"', "cluster.command_stream"),
        ('command_subject = "a.*"', "cluster.command_subject"),
        ('sync_interval = "sometimes"', "cluster.sync_interval"),
        ("duplicate_window_s = 30.0", "cluster: need duplicate_window_s > publish_retry_s + publish_timeout_s"),
        ('gateway_id = "gw.1"', "cluster.gateway_id"),  # a '.' would break the session id <id>.<nonce>.<n>
        ('engine_id = ""', "cluster.engine_id"),
        (f'gateway_id = "{"g" * 33}"', "cluster.gateway_id"),
        ('events_stream = "a.b"', "cluster.events_stream"),
        ("events_max_age_s = 1.0", "cluster.events_max_age_s: 1.0 is outside the range 60 to 2592000"),
        ("snapshot_every = -1", "cluster.snapshot_every: -1 is outside the range 0 to 100000000"),
    ],
)
def test_bad_values_name_the_key(snippet: str, message: str) -> None:
    with pytest.raises(SettingsError) as exc:
        parse_settings(DEMO_TEXT + f"\n[cluster]\n{snippet}\n")
    assert str(exc.value).startswith(message)


def test_the_roles_table_is_read() -> None:
    text = DEMO_TEXT + (
        '\n[cluster]\nevents_stream = "CX_EV"\nevents_subject = "cx.ev"\nkv_bucket = "CX_KV"\n'
        'snapshot_every = 5000\nengine_id = "e-1"\ngateway_id = "gw_2"\n'
    )
    c = parse_settings(text).cluster
    assert (c.events_stream, c.events_subject, c.kv_bucket, c.snapshot_every) == ("CX_EV", "cx.ev", "CX_KV", 5000)
    assert (c.engine_id, c.gateway_id) == ("e-1", "gw_2")


def test_a_bad_role_id_on_the_command_line_is_refused() -> None:
    from carbonx.gateway.cli import main

    assert main(["engine", "--config", str(DEMO), "--id", "bad.id"]) == 2
    assert main(["gateway", "--config", str(DEMO), "--id", "x" * 33]) == 2
