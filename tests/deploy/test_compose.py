"""deploy/compose.yaml, cross-checked without a Docker engine: the YAML is read and every service
checked against the files and configurations it names — 3 NATS nodes with JetStream routed to
each other and named in the cluster configuration, 2 engines and 2 gateways running the image
with the documented commands and a configuration that exists, host ports unique (admin on
loopback only), every bind mount present in the repository and every volume declared,
Prometheus scraping each carbonx container on its metrics port with the alert rules next to
its configuration (``promtool check config``) and Alertmanager wired (``amtool check-config``),
Grafana given the provisioning and the dashboards where the provider looks."""

from __future__ import annotations

import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from carbonx.gateway.settings import load_settings
from carbonx.gateway.testkit import ROOT

DEPLOY = ROOT / "deploy"
COMPOSE: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
CLUSTER_TOML = DEPLOY / "compose" / "cluster.toml"
CLUSTER = tomllib.loads(CLUSTER_TOML.read_text())
NATS = ["nats-1", "nats-2", "nats-3"]
ENGINES = ["engine-1", "engine-2"]
GATEWAYS = ["gateway-1", "gateway-2"]
CARBONX = ENGINES + GATEWAYS


def flag(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


def mounts(service: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """(source, target, read_only) of every volume entry (short syntax)."""
    out = []
    for entry in service.get("volumes", []):
        source, target, *mode = entry.split(":")
        out.append((source, target, mode == ["ro"]))
    return out


def bind_source(source: str) -> Path | None:
    """A bind mount's path (relative to compose.yaml's folder), None for a named volume."""
    return (DEPLOY / source).resolve() if source.startswith((".", "/")) else None


def test_the_cluster_is_all_there() -> None:
    assert set(SERVICES) == {*NATS, *ENGINES, *GATEWAYS, "prometheus", "alertmanager", "grafana"}


def test_nats_nodes_form_one_jetstream_cluster_that_carbonx_is_told_about() -> None:
    names = set()
    for node in NATS:
        cmd = SERVICES[node]["command"]
        assert "--jetstream" in cmd and flag(cmd, "--store_dir") == "/data"
        assert (f"{node}:/data", True) in {(f"{s}:{t}", s in COMPOSE["volumes"]) for s, t, _ in mounts(SERVICES[node])}
        assert flag(cmd, "--cluster_name") == "carbonx" and flag(cmd, "--cluster") == "nats://0.0.0.0:6222"
        assert set(flag(cmd, "--routes").split(",")) == {f"nats://{other}:6222" for other in NATS if other != node}
        names.add(flag(cmd, "--name"))
    assert names == set(NATS)
    assert CLUSTER["cluster"]["nats_urls"] == [f"nats://{node}:4222" for node in NATS]
    assert CLUSTER["cluster"]["replicas"] == len(NATS)
    for service in CARBONX:
        assert set(SERVICES[service]["depends_on"]) == set(NATS)


def test_engines_and_gateways_run_the_image_with_the_documented_commands() -> None:
    for service in CARBONX:
        spec = SERVICES[service]
        build = spec["build"]
        assert (DEPLOY / build["context"] / build["dockerfile"]).resolve() == DEPLOY / "Dockerfile"
        role = "engine" if service in ENGINES else "gateway"
        cmd = spec["command"]
        assert cmd[:2] == ["carbonx", role]
        config = flag(cmd, "--config")
        (source,) = [s for s, t, ro in mounts(spec) if t == config and ro]
        assert bind_source(source) == CLUSTER_TOML
        data = [s for s, t, _ in mounts(spec) if t == CLUSTER["server"]["data_dir"]]
        assert data == [service], "each container keeps its state in a volume of its own"
        (env_file,) = spec["env_file"]
        keys = {line.split("=", 1)[0] for line in (DEPLOY / env_file).read_text().splitlines() if line and not line.startswith("#")}
        assert keys == {"CARBONX_OPERATOR_KEY_ID", "CARBONX_OPERATOR_SECRET"}
        assert not any("SECRET" in part for part in cmd), "secrets never on the command line"


def test_the_cluster_configuration_is_the_demo_listening_on_the_container() -> None:
    demo = tomllib.loads((DEPLOY / "demo.toml").read_text())
    overrides = {
        "host": "0.0.0.0",
        "admin_host": "0.0.0.0",
        "metrics_host": "0.0.0.0",
        "data_dir": "/var/lib/carbonx",
        "allow_plaintext": True,
    }
    assert CLUSTER["server"] == demo["server"] | overrides
    assert {k: v for k, v in CLUSTER.items() if k not in ("server", "cluster")} == {k: v for k, v in demo.items() if k != "server"}
    settings = load_settings(CLUSTER_TOML)  # the exchange's own checks accept it
    assert settings.cluster.nats_urls == tuple(CLUSTER["cluster"]["nats_urls"])


def published(service: dict[str, Any]) -> list[tuple[str, int, int]]:
    """(host address, host port, container port) of each ``ports`` entry."""
    out = []
    for entry in service.get("ports", []):
        parts = entry.split(":")
        host = parts[0] if len(parts) == 3 else "0.0.0.0"
        out.append((host, int(parts[-2]), int(parts[-1])))
    return out


def test_host_ports_are_unique_and_the_admin_listener_stays_on_loopback() -> None:
    ports = [(name, port) for name, spec in SERVICES.items() for _, port, _ in published(spec)]
    assert len({p for _, p in ports}) == len(ports), ports
    server = CLUSTER["server"]
    for gateway in GATEWAYS:
        by_container = {container: host for host, _, container in published(SERVICES[gateway])}
        assert set(by_container) == {server["port"], server["admin_port"], server["metrics_port"]}
        assert by_container[server["admin_port"]] == "127.0.0.1"


def test_every_bind_mount_exists_and_every_volume_is_declared_and_used() -> None:
    used = set()
    for name, spec in SERVICES.items():
        for source, _, _ in mounts(spec):
            path = bind_source(source)
            if path is None:
                assert source in COMPOSE["volumes"], f"{name}: volume {source} is not declared"
                used.add(source)
            else:
                assert path.exists() and DEPLOY in path.parents, f"{name}: {source} is not in deploy/"
    assert used == set(COMPOSE["volumes"])


def test_prometheus_scrapes_every_carbonx_container_with_the_alert_rules(tmp_path: Path) -> None:
    spec = SERVICES["prometheus"]
    config_target = flag([a for part in spec["command"] for a in part.split("=", 1)], "--config.file")
    by_target = {t: bind_source(s) for s, t, _ in mounts(spec)}
    config_path = by_target[config_target]
    assert config_path is not None
    config = yaml.safe_load(config_path.read_text())
    targets = {t for job in config["scrape_configs"] for group in job["static_configs"] for t in group["targets"]}
    assert targets == {f"{s}:{CLUSTER['server']['metrics_port']}" for s in CARBONX}
    (rules,) = config["rule_files"]
    assert by_target[str(Path(config_target).parent / rules)] == DEPLOY / "prometheus" / "alerts.yml"
    (manager,) = [t for am in config["alerting"]["alertmanagers"] for group in am["static_configs"] for t in group["targets"]]
    host, port = manager.split(":")
    assert host in SERVICES and int(port) in {c for _, _, c in published(SERVICES[host])}
    if shutil.which("promtool") is None:
        pytest.skip("promtool not installed (Debian's prometheus package; .ci/run installs it)")
    shutil.copy(config_path, tmp_path / "prometheus.yml")  # laid out as in the container
    shutil.copy(DEPLOY / "prometheus" / "alerts.yml", tmp_path / rules)
    run = subprocess.run(["promtool", "check", "config", str(tmp_path / "prometheus.yml")], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr


def test_alertmanager_configuration_is_valid() -> None:
    spec = SERVICES["alertmanager"]
    (source,) = [s for s, t, _ in mounts(spec) if t == spec["command"][0].split("=", 1)[1]]
    path = bind_source(source)
    assert path is not None and path.exists()
    if shutil.which("amtool") is None:
        pytest.skip("amtool not installed (Debian's prometheus-alertmanager package; .ci/run installs it)")
    run = subprocess.run(["amtool", "check-config", str(path)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and "SUCCESS" in run.stdout, run.stdout + run.stderr


def test_grafana_gets_the_provisioning_and_the_dashboards() -> None:
    spec = SERVICES["grafana"]
    by_target = {t: bind_source(s) for s, t, _ in mounts(spec)}
    assert by_target["/etc/grafana/provisioning"] == DEPLOY / "grafana" / "provisioning"
    provider = yaml.safe_load((DEPLOY / "grafana" / "provisioning" / "dashboards" / "carbonx.yml").read_text())["providers"][0]
    assert by_target[provider["options"]["path"]] == DEPLOY / "grafana" / "dashboards"
    url = spec["environment"]["CARBONX_PROMETHEUS_URL"]
    datasource = (DEPLOY / "grafana" / "provisioning" / "datasources" / "carbonx.yml").read_text()
    assert "${CARBONX_PROMETHEUS_URL}" in datasource
    assert url == "http://prometheus:9090" and 9090 in {c for _, _, c in published(SERVICES["prometheus"])}
